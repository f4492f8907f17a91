use super::*;
use crate::logs::protocol::{Clock, ProtocolLog, event};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use time::macros::datetime;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Dir(std::env::temp_dir().join(format!("hubgate-read-{tag}-{}-{nanos}", std::process::id())))
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A receive log whose clock the test moves.
fn log(dir: &Path, now: &Arc<Mutex<OffsetDateTime>>) -> ProtocolLog {
    let n = now.clone();
    let clock: Clock = Arc::new(move || *n.lock().unwrap());
    ProtocolLog::with_settings(dir, LogKind::Receive, 10 * 1024 * 1024, clock)
}

fn query() -> ProtocolQuery {
    ProtocolQuery {
        kind: LogKind::Receive,
        connector: None,
        remote: None,
        start: None,
        end: None,
        skip: 0,
        max_sessions: 100,
        max_lines_per_session: 1000,
    }
}

fn records(text: &str, max: usize) -> Vec<Record> {
    let mut r = Records::new(Cursor::new(text.as_bytes().to_vec()), max);
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push(rec);
    }
    out
}

#[test]
fn records_follow_rfc_4180_quoting_across_lines() {
    let got = records("a,\"b\r\nc\",d\r\n\"x\"\"y\",z\r\nunfinished", 1024);
    assert_eq!(
        got,
        [
            Record::Line("a,\"b\r\nc\",d".into()),
            Record::Line("\"x\"\"y\",z".into())
        ]
    );
    assert_eq!(
        parse_record("a,\"b\r\nc\",\"<script>\"\"x\"\"</script>\""),
        ["a", "b\r\nc", "<script>\"x\"</script>"]
    );
}

#[test]
fn an_over_long_record_is_skipped_without_being_held_and_the_next_one_reads() {
    // The long record holds a quoted line break: parity keeps the reader in step past it.
    let long = format!(
        "\"{}\r\n{}\",x\r\nnext,1\r\n",
        "a".repeat(300),
        "b".repeat(300)
    );
    let mut r = Records::new(
        BufReader::with_capacity(16, Cursor::new(long.into_bytes())),
        64,
    );
    assert_eq!(r.next_record().unwrap(), Some(Record::TooLong));
    assert!(r.buf.capacity() <= 64, "held {} bytes", r.buf.capacity());
    assert_eq!(
        r.next_record().unwrap(),
        Some(Record::Line("next,1".into()))
    );
    assert_eq!(r.next_record().unwrap(), None);
}

#[test]
fn groups_interleaved_sessions_in_order_with_hostile_data_intact() {
    let d = Dir::new("group");
    let now = Arc::new(Mutex::new(datetime!(2026-01-05 10:00:00 UTC)));
    let l = log(&d.0, &now);
    let local: SocketAddr = "127.0.0.1:25".parse().unwrap();
    let mut a = l.session(
        r"HUB1\Default HUB1".into(),
        1,
        local,
        "127.0.0.5:4000".parse().unwrap(),
    );
    let mut b = l.session(
        r"HUB1\Other".into(),
        2,
        local,
        "127.0.0.6:4001".parse().unwrap(),
    );
    a.event(event::CONNECT, "", "");
    b.event(event::CONNECT, "", "");
    a.event(event::RECEIVED, "EHLO <script>alert(1)</script>", "");
    b.event(event::RECEIVED, "HELO b, \"quoted\"", "");
    a.event(event::RECEIVED, "QUIT", "");
    a.event(event::DISCONNECT, "", "Local");
    b.event(event::DISCONNECT, "", "Remote");

    let page = protocol_sessions(&d.0, &query()).unwrap();
    assert!(!page.more);
    assert_eq!(page.sessions.len(), 2);
    let s = &page.sessions[0];
    assert_eq!(s.session_id, "0000000000000001");
    assert_eq!(s.connector_id, r"HUB1\Default HUB1");
    assert_eq!(s.remote_endpoint, "127.0.0.5:4000");
    assert!(s.ended && !s.began_earlier);
    let conv: Vec<(&str, &str)> = s
        .lines
        .iter()
        .map(|l| (l.event.as_str(), l.data.as_str()))
        .collect();
    assert_eq!(
        conv,
        [
            ("+", ""),
            ("<", "EHLO <script>alert(1)</script>"),
            ("<", "QUIT"),
            ("-", "")
        ]
    );
    assert_eq!(page.sessions[1].lines[1].data, "HELO b, \"quoted\"");

    let only = |f: fn(&mut ProtocolQuery)| {
        let mut q = query();
        f(&mut q);
        protocol_sessions(&d.0, &q)
            .unwrap()
            .sessions
            .iter()
            .map(|s| s.session_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        only(|q| q.connector = Some(r"hub1\other".into())),
        ["0000000000000002"]
    );
    assert_eq!(
        only(|q| q.remote = "127.0.0.5".parse().ok()),
        ["0000000000000001"]
    );
    assert_eq!(
        only(|q| q.remote = "127.0.0.6:4001".parse().ok()),
        ["0000000000000002"]
    );
    assert!(only(|q| q.remote = "127.0.0.6:4000".parse().ok()).is_empty());
    assert!(only(|q| q.kind = LogKind::Send).is_empty());
}

#[test]
fn caps_sessions_and_lines_and_says_more_exist_then_pages_on() {
    let d = Dir::new("caps");
    let now = Arc::new(Mutex::new(datetime!(2026-01-05 10:00:00 UTC)));
    let l = log(&d.0, &now);
    let local: SocketAddr = "127.0.0.1:25".parse().unwrap();
    for id in 1..=5u64 {
        let mut s = l.session("C".into(), id, local, "127.0.0.5:4000".parse().unwrap());
        for i in 0..10 {
            s.event(event::RECEIVED, &format!("line {i}"), "");
        }
        s.event(event::DISCONNECT, "", "");
    }
    let mut q = query();
    q.max_sessions = 2;
    q.max_lines_per_session = 4;
    let page = protocol_sessions(&d.0, &q).unwrap();
    assert!(page.more);
    assert_eq!(page.sessions.len(), 2);
    assert_eq!(page.sessions[0].lines.len(), 4);
    assert_eq!(page.sessions[0].lines_not_shown, 7);
    assert!(
        page.sessions[0].ended,
        "the disconnect is seen even past the cap"
    );
    q.skip = 4;
    let last = protocol_sessions(&d.0, &q).unwrap();
    assert!(!last.more);
    assert_eq!(last.sessions.len(), 1);
    assert_eq!(last.sessions[0].session_id, "0000000000000005");
}

#[test]
fn a_time_range_picks_sessions_by_start_and_skips_other_days_files() {
    let d = Dir::new("range");
    let now = Arc::new(Mutex::new(datetime!(2026-01-04 23:59:59 UTC)));
    let l = log(&d.0, &now);
    let local: SocketAddr = "127.0.0.1:25".parse().unwrap();
    let remote: SocketAddr = "127.0.0.5:4000".parse().unwrap();
    let mut early = l.session("C".into(), 1, local, remote);
    early.event(event::CONNECT, "", "");
    *now.lock().unwrap() = datetime!(2026-01-05 10:00:00 UTC);
    early.event(event::RECEIVED, "QUIT", "");
    let mut inside = l.session("C".into(), 2, local, remote);
    inside.event(event::CONNECT, "", "");
    *now.lock().unwrap() = datetime!(2026-01-05 12:00:00 UTC);
    // After the range ends: still part of a session that began inside it.
    inside.event(event::DISCONNECT, "", "");
    let mut late = l.session("C".into(), 3, local, remote);
    late.event(event::CONNECT, "", "");

    let mut q = query();
    q.start = Some(datetime!(2026-01-05 09:00:00 UTC));
    q.end = Some(datetime!(2026-01-05 11:00:00 UTC));
    let page = protocol_sessions(&d.0, &q).unwrap();
    let ids: Vec<&str> = page
        .sessions
        .iter()
        .map(|s| s.session_id.as_str())
        .collect();
    // The session begun the day before shows from its first line in range, marked so.
    assert_eq!(ids, ["0000000000000001", "0000000000000002"]);
    assert!(page.sessions[0].began_earlier);
    assert_eq!(page.sessions[1].lines.len(), 2);
    assert!(page.sessions[1].ended);
    assert!(!page.more);

    assert_eq!(
        log_files(&protocol_dir(&d.0, LogKind::Receive), "RECV", q.start, None)
            .unwrap()
            .len(),
        1,
        "the day before is not opened"
    );
}

#[test]
fn over_long_data_is_cut_on_a_character_boundary() {
    let (s, cut_) = cut(&"é".repeat(MAX_DATA_SHOWN), MAX_DATA_SHOWN + 1);
    assert!(cut_);
    assert_eq!(s.len(), MAX_DATA_SHOWN);
    assert_eq!(cut("short", 10), ("short".to_string(), false));
}

#[test]
fn remote_addresses_parse_as_administrators_type_them() {
    assert_eq!(
        "192.0.2.7".parse::<Remote>(),
        Ok(Remote::Ip("192.0.2.7".parse().unwrap()))
    );
    assert_eq!(
        "[2001:db8::1]".parse::<Remote>(),
        Ok(Remote::Ip("2001:db8::1".parse().unwrap()))
    );
    assert!(matches!(
        "[2001:db8::1]:25".parse::<Remote>(),
        Ok(Remote::Endpoint(_))
    ));
    assert!("mail.example".parse::<Remote>().is_err());
    assert!(Remote::Ip("192.0.2.7".parse().unwrap()).matches("192.0.2.7:1234"));
    assert!(!Remote::Ip("192.0.2.7".parse().unwrap()).matches("garbage"));
}
