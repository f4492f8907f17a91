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

pub use super::retention::DEFAULT_MAX_FILE_SIZE;
use super::retention::{self, Family, Limits, Retention};

/// The event column's values.
pub mod event {
    pub const CONNECT: char = '+';
    pub const DISCONNECT: char = '-';
    pub const SENT: char = '>';
    pub const RECEIVED: char = '<';
    pub const INFORMATION: char = '*';
}

pub(crate) const FIELDS: &str = "date-time,connector-id,session-id,sequence-number,local-endpoint,\
                      remote-endpoint,event,data,context";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Receive,
    Send,
}

impl LogKind {
    fn family(self) -> Family {
        match self {
            LogKind::Receive => Family::ReceiveProtocol,
            LogKind::Send => Family::SendProtocol,
        }
    }

    pub(crate) fn directory(self) -> &'static str {
        match self {
            LogKind::Receive => "SmtpReceive",
            LogKind::Send => "SmtpSend",
        }
    }

    /// `RECV` or `SEND`, the files' name prefix.
    pub(crate) fn file_prefix(self) -> &'static str {
        self.format().file_prefix
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
/// day and before a line would take the current one past MaxFileSize, and then prunes the
/// directory by MaxDirectorySize and MaxAge.
pub(crate) struct RotatingLog {
    dir: PathBuf,
    format: LogFormat,
    limits: Limits,
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
    /// Holds a line (not only its header): only then may the next line start another file.
    has_lines: bool,
}

impl ProtocolLog {
    /// Logs to `<data_dir>/logs/ProtocolLog/SmtpReceive` (or `SmtpSend`); nothing is created
    /// until the first event.
    /// Its limits are the process's for `kind` (Set-TransportServer's, see `retention`).
    pub fn new(data_dir: &Path, kind: LogKind) -> ProtocolLog {
        ProtocolLog::with_limits(
            data_dir,
            kind,
            retention::shared(kind.family()),
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
        let limits = Arc::new(std::sync::RwLock::new(Retention::file_size(max_file_size)));
        ProtocolLog::with_limits(data_dir, kind, limits, clock)
    }

    /// Like [`ProtocolLog::new`] with limits and a clock of its own.
    pub fn with_limits(
        data_dir: &Path,
        kind: LogKind,
        limits: Limits,
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
                limits,
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
        limits: Limits,
        clock: Clock,
    ) -> RotatingLog {
        RotatingLog {
            dir,
            format,
            limits,
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
        let limits = retention::read(&self.limits);
        let max = limits.max_file_size.unwrap_or(u64::MAX);
        let next_index = match &state.current {
            Some(open) if open.day != day => Some(1),
            Some(open) if open.has_lines && open.size.saturating_add(line.len() as u64) > max => {
                Some(open.index + 1)
            }
            Some(_) => None,
            None => Some(1),
        };
        if let Some(min_index) = next_index {
            state.current = None;
            state.current = Some(self.open(now, min_index, max)?);
            // The file just closed may now be the oldest one to go; failing to prune must not
            // stop the log.
            let reserve = limits.max_file_size.unwrap_or(0);
            let prefix = self.format.file_prefix;
            if let Err(e) = retention::prune(
                &self.dir,
                prefix,
                &limits,
                reserve,
                std::time::SystemTime::now(),
            ) {
                tracing::warn!(dir = %self.dir.display(), "pruning the {}: {e}", self.format.log_type);
            }
        }
        let Some(open) = state.current.as_mut() else {
            unreachable!("a file was opened above");
        };
        // One write per complete line: with O_APPEND nothing interleaves inside a line, and no
        // buffered remainder can be lost when the process dies.
        open.file.write_all(line)?;
        open.size += line.len() as u64;
        open.has_lines = true;
        Ok(())
    }

    /// Opens the file to write to for `now`'s day: the last existing one if it still has room
    /// (after a restart), otherwise a new one.
    fn open(
        &self,
        now: OffsetDateTime,
        min_index: u32,
        max_file_size: u64,
    ) -> io::Result<OpenFile> {
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
                    has_lines: false,
                });
            }
            if size < max_file_size {
                return Ok(OpenFile {
                    file,
                    day,
                    index,
                    size,
                    has_lines: true,
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
mod tests;
