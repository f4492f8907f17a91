use super::*;
use time::macros::datetime;

struct TestLog {
    dir: PathBuf,
    log: ProtocolLog,
    now: Arc<Mutex<OffsetDateTime>>,
}

impl TestLog {
    fn new(tag: &str, kind: LogKind, max_file_size: u64) -> TestLog {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "hubgate-protolog-{tag}-{}-{nanos}",
            std::process::id()
        ));
        let now = Arc::new(Mutex::new(datetime!(2019-01-25 00:03:58.478 UTC)));
        let log = TestLog::open(&dir, kind, max_file_size, &now);
        TestLog { dir, log, now }
    }

    fn open(
        dir: &Path,
        kind: LogKind,
        max_file_size: u64,
        now: &Arc<Mutex<OffsetDateTime>>,
    ) -> ProtocolLog {
        let clock_now = now.clone();
        let clock: Clock = Arc::new(move || *clock_now.lock().unwrap());
        ProtocolLog::with_settings(dir, kind, max_file_size, clock)
    }

    fn set_time(&self, t: OffsetDateTime) {
        *self.now.lock().unwrap() = t;
    }

    fn sub(&self, kind: &str) -> PathBuf {
        self.dir.join("logs/ProtocolLog").join(kind)
    }

    fn read(&self, kind: &str, name: &str) -> String {
        fs::read_to_string(self.sub(kind).join(name)).unwrap()
    }

    fn files(&self, kind: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.sub(kind))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TestLog {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn session(log: &ProtocolLog) -> SessionLog {
    log.session(
        r"TAIL-EXCH-1\Internet Mail".to_string(),
        0x08D6_75E5_8CA1_DA38,
        "10.0.0.6:25".parse().unwrap(),
        "185.234.217.220:61061".parse().unwrap(),
    )
}

#[test]
fn reproduces_exchange_lines_and_header() {
    let t = TestLog::new("header", LogKind::Receive, DEFAULT_MAX_FILE_SIZE);
    let mut s = session(&t.log);
    s.event(event::CONNECT, "", "");
    t.set_time(datetime!(2019-01-25 00:03:58.494 UTC));
    s.event(
        event::INFORMATION,
        "SMTPSubmit SMTPAcceptAnySender SMTPAcceptAuthoritativeDomainSender AcceptRoutingHeaders",
        "Set Session Permissions",
    );
    let expected = "#Software: Microsoft Exchange Server\r\n\
        #Version: 14.0.0.0\r\n\
        #Log-type: SMTP Receive Protocol Log\r\n\
        #Date: 2019-01-25T00:03:58.478Z\r\n\
        #Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context\r\n\
        2019-01-25T00:03:58.478Z,TAIL-EXCH-1\\Internet Mail,08D675E58CA1DA38,0,10.0.0.6:25,185.234.217.220:61061,+,,\r\n\
        2019-01-25T00:03:58.494Z,TAIL-EXCH-1\\Internet Mail,08D675E58CA1DA38,1,10.0.0.6:25,185.234.217.220:61061,*,SMTPSubmit SMTPAcceptAnySender SMTPAcceptAuthoritativeDomainSender AcceptRoutingHeaders,Set Session Permissions\r\n";
    assert_eq!(t.read("SmtpReceive", "RECV20190125-1.LOG"), expected);
}

#[test]
fn send_logs_have_their_own_directory_prefix_and_type() {
    let t = TestLog::new("send", LogKind::Send, DEFAULT_MAX_FILE_SIZE);
    session(&t.log).event(event::CONNECT, "", "");
    let text = t.read("SmtpSend", "SEND20190125-1.LOG");
    assert!(text.contains("#Log-type: SMTP Send Protocol Log\r\n"));
}

#[test]
fn quotes_fields_as_rfc_4180_requires() {
    assert_eq!(csv_field("plain text"), "plain text");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("two\r\nlines"), "\"two\r\nlines\"");
    assert_eq!(csv_field(""), "");

    let t = TestLog::new("quote", LogKind::Receive, DEFAULT_MAX_FILE_SIZE);
    session(&t.log).event(
        event::SENT,
        "220 mx Microsoft ESMTP MAIL Service ready at Fri, 25 Jan 2019 00:03:58 +0000",
        "",
    );
    let text = t.read("SmtpReceive", "RECV20190125-1.LOG");
    assert!(text.ends_with(
        ",>,\"220 mx Microsoft ESMTP MAIL Service ready at Fri, 25 Jan 2019 00:03:58 +0000\",\r\n"
    ));
}

#[test]
fn sequence_numbers_count_per_session() {
    let t = TestLog::new("seq", LogKind::Receive, DEFAULT_MAX_FILE_SIZE);
    let mut a = t
        .log
        .session("S\\A".into(), 1, ep("[::1]:25"), ep("[::1]:4000"));
    let mut b = t
        .log
        .session("S\\A".into(), 2, ep("[::1]:25"), ep("[::1]:4001"));
    a.event(event::CONNECT, "", "");
    b.event(event::CONNECT, "", "");
    a.event(event::RECEIVED, "EHLO x", "");
    a.event(event::DISCONNECT, "", "Local");
    b.event(event::DISCONNECT, "", "Remote");
    let lines: Vec<(String, String)> = t
        .read("SmtpReceive", "RECV20190125-1.LOG")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].to_string(), f[3].to_string())
        })
        .collect();
    let expected = [
        ("0000000000000001", "0"),
        ("0000000000000002", "0"),
        ("0000000000000001", "1"),
        ("0000000000000001", "2"),
        ("0000000000000002", "1"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(s, n)| (s.to_string(), n.to_string()))
        .collect();
    assert_eq!(lines, expected);
}

fn ep(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn formats_endpoints_like_exchange() {
    assert_eq!(endpoint(ep("[::1]:25")), "[::1]:25");
    assert_eq!(endpoint(ep("[::ffff:192.0.2.7]:2525")), "192.0.2.7:2525");
    assert_eq!(endpoint(ep("192.0.2.7:25")), "192.0.2.7:25");
}

#[test]
fn starts_a_new_file_each_utc_day() {
    let t = TestLog::new("day", LogKind::Receive, DEFAULT_MAX_FILE_SIZE);
    let mut s = session(&t.log);
    t.set_time(datetime!(2019-01-25 23:59:59.999 UTC));
    s.event(event::CONNECT, "", "");
    // Local midnight elsewhere must not matter: only the UTC date names the file.
    t.set_time(datetime!(2019-01-26 01:00:00.000 +02:00));
    s.event(event::DISCONNECT, "", "");
    t.set_time(datetime!(2019-01-26 00:00:00.001 UTC));
    s.event(event::DISCONNECT, "", "");
    assert_eq!(
        t.files("SmtpReceive"),
        ["RECV20190125-1.LOG", "RECV20190126-1.LOG"]
    );
    let second = t.read("SmtpReceive", "RECV20190126-1.LOG");
    assert!(second.contains("#Date: 2019-01-26T00:00:00.001Z\r\n"));
    assert_eq!(second.lines().filter(|l| !l.starts_with('#')).count(), 1);
}

#[test]
fn rolls_over_to_numbered_files_when_one_passes_the_size_limit() {
    let t = TestLog::new("size", LogKind::Receive, 400);
    let mut s = session(&t.log);
    for _ in 0..6 {
        s.event(event::RECEIVED, "RCPT TO:<someone@example.com>", "");
    }
    let files = t.files("SmtpReceive");
    assert!(files.len() >= 3, "{files:?}");
    for (i, name) in files.iter().enumerate() {
        assert_eq!(name, &format!("RECV20190125-{}.LOG", i + 1));
        let text = t.read("SmtpReceive", name);
        assert!(text.starts_with("#Software: Microsoft Exchange Server\r\n"));
    }
    let lines: usize = files
        .iter()
        .map(|n| {
            t.read("SmtpReceive", n)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .count()
        })
        .sum();
    assert_eq!(lines, 6);
}

#[test]
fn after_a_restart_appends_to_the_last_file_of_the_day_without_a_second_header() {
    let t = TestLog::new("restart", LogKind::Receive, DEFAULT_MAX_FILE_SIZE);
    session(&t.log).event(event::CONNECT, "", "");
    let again = TestLog::open(&t.dir, LogKind::Receive, DEFAULT_MAX_FILE_SIZE, &t.now);
    session(&again).event(event::CONNECT, "", "");
    assert_eq!(t.files("SmtpReceive"), ["RECV20190125-1.LOG"]);
    let text = t.read("SmtpReceive", "RECV20190125-1.LOG");
    assert_eq!(text.matches("#Software").count(), 1);
    assert_eq!(text.lines().count(), 7);
}

#[test]
fn an_unwritable_directory_never_panics_and_recovers() {
    let t = TestLog::new("unwritable", LogKind::Receive, DEFAULT_MAX_FILE_SIZE);
    // A file where the logs directory should be makes every open fail.
    fs::create_dir_all(&t.dir).unwrap();
    fs::write(t.dir.join("logs"), b"").unwrap();
    let mut s = session(&t.log);
    s.event(event::CONNECT, "", "");
    s.event(event::DISCONNECT, "", "");
    fs::remove_file(t.dir.join("logs")).unwrap();
    s.event(event::INFORMATION, "recovered", "");
    let text = t.read("SmtpReceive", "RECV20190125-1.LOG");
    assert!(text.contains(",2,10.0.0.6:25,185.234.217.220:61061,*,recovered,\r\n"));
}

#[test]
fn a_disabled_log_writes_nothing() {
    // `t.dir` is the data directory; nothing exists there until a log writes. A one-byte
    // size limit would make a writing log open a new file for every line.
    let t = TestLog::new("disabled", LogKind::Receive, 1);
    let log = ProtocolLog::disabled();
    // Every write goes through the shared file; a disabled log must not hold one.
    assert!(
        log.inner.is_none(),
        "a disabled log holds a file to write to"
    );
    let mut s = session(&log);
    s.event(event::CONNECT, "", "");
    s.event(event::SENT, "220 mx ready", "");
    s.event(event::RECEIVED, "EHLO client.example", "");
    s.event(event::INFORMATION, "", "Set Session Permissions");
    s.event(event::DISCONNECT, "", "Local");
    assert!(
        !t.dir.exists(),
        "a disabled log created {}",
        t.dir.display()
    );
}

#[test]
fn joins_multi_line_replies_as_exchange_does() {
    let reply = "250-mx.example.com Hello [10.0.0.1]\r\n250-SIZE 37748736\r\n\
                 250-PIPELINING\r\n250 STARTTLS\r\n";
    assert_eq!(
        join_reply_lines(reply),
        "250-mx.example.com Hello [10.0.0.1] SIZE 37748736 PIPELINING STARTTLS"
    );
    assert_eq!(join_reply_lines("221 2.0.0 Bye\r\n"), "221 2.0.0 Bye");
    assert_eq!(
        join_reply_lines("250-first\n250 second"),
        "250-first second"
    );
}

#[test]
fn session_ids_look_like_exchange_ticks_and_never_repeat() {
    let ids: Vec<u64> = (0..1000).map(|_| new_session_id()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // Ticks of the 2020s–2030s start with 08D or 08E, as in real Exchange logs.
    let hex = format!("{:016X}", ids[0]);
    assert!(hex.starts_with("08D") || hex.starts_with("08E"), "{hex}");
}
