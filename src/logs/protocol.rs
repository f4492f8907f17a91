//! SMTP protocol log in the Exchange 2010 `SmtpReceive`/`SmtpSend` CSV format.
//!
//! Administrators coming from Exchange feed these files to the tools they already have (Log
//! Parser, `Import-Csv`, their SIEM's Exchange parser), so the header, file names and field
//! formats follow Exchange exactly. Lines end in CRLF as in Exchange's files and RFC 4180.
//!
//! Logging is best effort: a full disk must not turn into failed SMTP sessions, so write errors
//! are reported through `tracing` and otherwise dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use time::{Date, OffsetDateTime};

/// Exchange's default `ReceiveProtocolLogMaxFileSize` / `SendProtocolLogMaxFileSize`.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// The event column's values.
pub mod event {
    pub const CONNECT: char = '+';
    pub const DISCONNECT: char = '-';
    pub const SENT: char = '>';
    pub const RECEIVED: char = '<';
    pub const INFORMATION: char = '*';
}

const FIELDS: &str = "date-time,connector-id,session-id,sequence-number,local-endpoint,\
                      remote-endpoint,event,data,context";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Receive,
    Send,
}

impl LogKind {
    fn directory(self) -> &'static str {
        match self {
            LogKind::Receive => "SmtpReceive",
            LogKind::Send => "SmtpSend",
        }
    }

    fn format(self) -> LogFormat {
        match self {
            LogKind::Receive => LogFormat {
                file_prefix: "RECV",
                log_type: "SMTP Receive Protocol Log",
                fields: FIELDS,
            },
            LogKind::Send => LogFormat {
                file_prefix: "SEND",
                log_type: "SMTP Send Protocol Log",
                fields: FIELDS,
            },
        }
    }
}

/// Source of the current time; injectable so tests can cross midnight on demand.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// One log directory (receive or send), shared by all sessions of that direction.
#[derive(Clone)]
pub struct ProtocolLog {
    inner: Option<Arc<RotatingLog>>,
}

/// What sets one Exchange log family's files apart from another's; the rest of the format
/// (header lines, date-named files, CSV) is common to all of them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogFormat {
    pub(crate) file_prefix: &'static str,
    pub(crate) log_type: &'static str,
    pub(crate) fields: &'static str,
}

/// An append-only directory of `<prefix>yyyymmdd-n.LOG` files that starts a new file each UTC
/// day and whenever the current one passes the size limit.
pub(crate) struct RotatingLog {
    dir: PathBuf,
    format: LogFormat,
    max_file_size: u64,
    clock: Clock,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<OpenFile>,
    /// Set after a failure has been reported, so a full disk yields one warning, not one per line.
    warned: bool,
}

struct OpenFile {
    file: File,
    day: Date,
    index: u32,
    size: u64,
}

impl ProtocolLog {
    /// Logs to `<data_dir>/logs/ProtocolLog/SmtpReceive` (or `SmtpSend`); nothing is created
    /// until the first event.
    pub fn new(data_dir: &Path, kind: LogKind) -> ProtocolLog {
        ProtocolLog::with_settings(
            data_dir,
            kind,
            DEFAULT_MAX_FILE_SIZE,
            Arc::new(OffsetDateTime::now_utc),
        )
    }

    /// Like [`ProtocolLog::new`] with a different file size limit and clock.
    pub fn with_settings(
        data_dir: &Path,
        kind: LogKind,
        max_file_size: u64,
        clock: Clock,
    ) -> ProtocolLog {
        let dir = data_dir
            .join("logs")
            .join("ProtocolLog")
            .join(kind.directory());
        ProtocolLog {
            inner: Some(Arc::new(RotatingLog::new(
                dir,
                kind.format(),
                max_file_size,
                clock,
            ))),
        }
    }

    /// A log that discards everything, for connectors with protocol logging off.
    pub fn disabled() -> ProtocolLog {
        ProtocolLog { inner: None }
    }

    pub fn session(
        &self,
        connector_id: String,
        session_id: u64,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> SessionLog {
        // Everything between the timestamp and the sequence number is fixed for the session.
        let fixed = format!(
            "{},{session_id:016X},",
            csv_field(&connector_id),
            session_id = session_id
        );
        let endpoints = format!("{},{}", endpoint(local), endpoint(remote));
        SessionLog {
            log: self.clone(),
            session_id,
            fixed,
            endpoints,
            sequence: 0,
        }
    }
}

impl RotatingLog {
    /// Nothing is created until the first line.
    pub(crate) fn new(
        dir: PathBuf,
        format: LogFormat,
        max_file_size: u64,
        clock: Clock,
    ) -> RotatingLog {
        RotatingLog {
            dir,
            format,
            max_file_size,
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// Appends `<date-time>,<rest_of_line>` CRLF; `rest_of_line` must already be CSV-quoted.
    pub(crate) fn write_line(&self, rest_of_line: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock so that lines appear in time order and never straddle a rollover.
        let now = (self.clock)().to_offset(time::UtcOffset::UTC);
        let line = format!("{},{rest_of_line}\r\n", timestamp(now));
        match self.append(&mut state, now, line.as_bytes()) {
            Ok(()) => state.warned = false,
            Err(e) => {
                // Reopen on the next event: the file may have been removed or the disk freed.
                state.current = None;
                if !state.warned {
                    state.warned = true;
                    tracing::warn!(
                        dir = %self.dir.display(),
                        "cannot write the {}; events are dropped until it works again: {e}",
                        self.format.log_type
                    );
                }
            }
        }
    }

    fn append(&self, state: &mut State, now: OffsetDateTime, line: &[u8]) -> io::Result<()> {
        let day = now.date();
        let next_index = match &state.current {
            Some(open) if open.day != day => Some(1),
            Some(open) if open.size >= self.max_file_size => Some(open.index + 1),
            Some(_) => None,
            None => Some(1),
        };
        if let Some(min_index) = next_index {
            state.current = None;
            state.current = Some(self.open(now, min_index)?);
        }
        let Some(open) = state.current.as_mut() else {
            unreachable!("a file was opened above");
        };
        // One write per complete line: with O_APPEND nothing interleaves inside a line, and no
        // buffered remainder can be lost when the process dies.
        open.file.write_all(line)?;
        open.size += line.len() as u64;
        Ok(())
    }

    /// Opens the file to write to for `now`'s day: the last existing one if it still has room
    /// (after a restart), otherwise a new one.
    fn open(&self, now: OffsetDateTime, min_index: u32) -> io::Result<OpenFile> {
        crate::fsmode::private_dir_all(&self.dir)?;
        let day = now.date();
        let mut index = self.last_index(day)?.unwrap_or(1).max(min_index);
        loop {
            let path = self
                .dir
                .join(file_name(self.format.file_prefix, day, index));
            let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
            let size = file.metadata()?.len();
            if size == 0 {
                let header = header(&self.format, now);
                file.write_all(header.as_bytes())?;
                return Ok(OpenFile {
                    file,
                    day,
                    index,
                    size: header.len() as u64,
                });
            }
            if size < self.max_file_size {
                return Ok(OpenFile {
                    file,
                    day,
                    index,
                    size,
                });
            }
            index += 1;
        }
    }

    fn last_index(&self, day: Date) -> io::Result<Option<u32>> {
        let prefix = file_name_prefix(self.format.file_prefix, day);
        let mut last = None;
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            let index = name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".LOG"))
                .and_then(|n| n.parse::<u32>().ok());
            if index > last {
                last = index;
            }
        }
        Ok(last)
    }
}

/// The log of one SMTP session; sequence numbers count from 0.
pub struct SessionLog {
    log: ProtocolLog,
    session_id: u64,
    fixed: String,
    endpoints: String,
    sequence: u64,
}

impl SessionLog {
    /// Appends one line. `event` is one of the [`event`] characters; a multi-line reply must be
    /// joined first (see [`join_reply_lines`]).
    pub fn event(&mut self, event: char, data: &str, context: &str) {
        let sequence = self.sequence;
        self.sequence += 1;
        let Some(inner) = &self.log.inner else { return };
        let rest = format!(
            "{}{sequence},{},{event},{},{}",
            self.fixed,
            self.endpoints,
            csv_field(data),
            csv_field(context)
        );
        inner.write_line(&rest);
    }

    pub fn session_id(&self) -> u64 {
        self.session_id
    }
}

/// Joins a multi-line SMTP reply the way Exchange logs it: the first line whole, then the text
/// of each following line without its code, separated by spaces
/// (`250-mx Hello [10.0.0.1] SIZE 37748736 PIPELINING`).
pub fn join_reply_lines(reply: &str) -> String {
    let mut joined = String::new();
    for (i, line) in reply.lines().filter(|l| !l.is_empty()).enumerate() {
        if i == 0 {
            joined.push_str(line);
            continue;
        }
        joined.push(' ');
        joined.push_str(strip_reply_code(line));
    }
    joined
}

fn strip_reply_code(line: &str) -> &str {
    let bytes = line.as_bytes();
    let has_code = bytes.len() >= 3 && bytes[..3].iter().all(u8::is_ascii_digit);
    if !has_code {
        return line;
    }
    match bytes.get(3) {
        None => "",
        Some(b'-' | b' ') => &line[4..],
        Some(_) => line,
    }
}

/// Session ids in the style of Exchange's, which are .NET ticks (100 ns since 0001-01-01):
/// they sort by start time and a restarted process does not reuse the ids of the last run.
/// Within a process each call returns a larger value than the one before.
pub fn new_session_id() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    const UNIX_EPOCH_TICKS: u64 = 621_355_968_000_000_000;
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let now = UNIX_EPOCH_TICKS + (since_epoch.as_nanos() / 100) as u64;
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let id = now.max(last + 1);
        match LAST.compare_exchange_weak(last, id, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return id,
            Err(actual) => last = actual,
        }
    }
}

fn header(format: &LogFormat, now: OffsetDateTime) -> String {
    format!(
        "#Software: Microsoft Exchange Server\r\n\
         #Version: 14.0.0.0\r\n\
         #Log-type: {}\r\n\
         #Date: {}\r\n\
         #Fields: {}\r\n",
        format.log_type,
        timestamp(now),
        format.fields
    )
}

fn file_name_prefix(file_prefix: &str, day: Date) -> String {
    format!(
        "{file_prefix}{:04}{:02}{:02}-",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn file_name(file_prefix: &str, day: Date, index: u32) -> String {
    format!("{}{index}.LOG", file_name_prefix(file_prefix, day))
}

/// `yyyy-MM-ddTHH:mm:ss.fffZ`; `now` must already be in UTC.
pub(crate) fn timestamp(now: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

/// A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`; Exchange, and whoever greps
/// these logs for an address, expects the plain IPv4 form.
fn endpoint(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())).to_string(),
            None => addr.to_string(),
        },
        SocketAddr::V4(_) => addr.to_string(),
    }
}

/// RFC 4180 quoting.
pub(crate) fn csv_field(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\"")).into()
    } else {
        value.into()
    }
}

#[cfg(test)]
mod tests {
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
}
