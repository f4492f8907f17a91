//! Reading the logs back: the CSV records both log families share, their files in date order,
//! and the protocol log's sessions for Toolbox › Protocol Logs.
//!
//! Everything here is bounded: a record longer than its cap is skipped (never buffered whole),
//! files of days outside the asked time range are not opened, and a protocol-log search returns
//! at most a capped number of sessions and lines, saying when there were more.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use super::protocol::LogKind;

/// The directory a protocol log family is written to.
pub fn protocol_dir(data_dir: &Path, kind: LogKind) -> PathBuf {
    data_dir
        .join("logs")
        .join("ProtocolLog")
        .join(kind.directory())
}

/// `<prefix>yyyymmdd-n.LOG` as (day, n), so `-10` sorts after `-9`.
pub(crate) fn file_sort_key(prefix: &str, name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix(prefix)?.strip_suffix(".LOG")?;
    let (day, index) = rest.split_once('-')?;
    if day.len() != 8 || !day.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((day.parse().ok()?, index.parse().ok()?))
}

fn day_key(d: Date) -> u32 {
    // Years are four digits in these names; the arithmetic cannot overflow for them.
    (d.year().clamp(0, 9999) as u32) * 10_000
        + u32::from(u8::from(d.month())) * 100
        + u32::from(d.day())
}

/// The log's files ordered by day, then by sequence number; files of days wholly outside
/// `[start, end)` are left out (each file holds one UTC day's lines, as the writer names them).
pub(crate) fn log_files(
    dir: &Path,
    prefix: &str,
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let first = start.map(|t| day_key(t.to_offset(time::UtcOffset::UTC).date()));
    let last = end.map(|t| day_key(t.to_offset(time::UtcOffset::UTC).date()));
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(key) = file_sort_key(prefix, name) else {
            continue;
        };
        if first.is_some_and(|f| key.0 < f) || last.is_some_and(|l| key.0 > l) {
            continue;
        }
        files.push((key, entry.path()));
    }
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// Opens a listed file; `None` when age-based cleanup removed it since it was listed.
pub(crate) fn open(path: &Path) -> io::Result<Option<BufReader<File>>> {
    match File::open(path) {
        Ok(f) => Ok(Some(BufReader::new(f))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// One CSV record of a log file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Line(String),
    /// Longer than the reader's cap: skipped, never held in memory whole.
    TooLong,
}

/// Splits a log file into CSV records; a quoted cell may span lines, so a record ends at the
/// first line break outside quotes.
pub(crate) struct Records<R> {
    reader: R,
    buf: Vec<u8>,
    max: usize,
}

impl<R: BufRead> Records<R> {
    /// `max`: the longest record kept, in bytes.
    pub(crate) fn new(reader: R, max: usize) -> Records<R> {
        Records {
            reader,
            buf: Vec::new(),
            max,
        }
    }

    /// The next record; `None` at the end, including before a last line without its line break
    /// (one still being written: the next search will see it whole).
    pub(crate) fn next_record(&mut self) -> io::Result<Option<Record>> {
        self.buf.clear();
        let mut too_long = false;
        let mut quotes = 0usize;
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                return Ok(None);
            }
            let (chunk, line_end) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..=i], true),
                None => (available, false),
            };
            // Parity is counted even over a skipped record so that the next one starts right.
            quotes += chunk.iter().filter(|&&b| b == b'"').count();
            if !too_long {
                if self.buf.len() + chunk.len() > self.max {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            let used = chunk.len();
            self.reader.consume(used);
            if line_end && quotes.is_multiple_of(2) {
                break;
            }
        }
        if too_long {
            return Ok(Some(Record::TooLong));
        }
        let mut end = self.buf.len() - 1;
        if end > 0 && self.buf[end - 1] == b'\r' {
            end -= 1;
        }
        Ok(Some(Record::Line(
            String::from_utf8_lossy(&self.buf[..end]).into_owned(),
        )))
    }
}

/// RFC 4180: cells separated by commas, quoted cells with `""` for a quote.
pub(crate) fn parse_record(record: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = record.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => cell.push(c),
            (false, '"') => in_quotes = true,
            (false, ',') => cells.push(std::mem::take(&mut cell)),
            (false, c) => cell.push(c),
        }
    }
    cells.push(cell);
    cells
}

/// Where each column is, from a file's own `#Fields:` line.
pub(crate) struct Columns {
    names: Vec<String>,
}

impl Columns {
    pub(crate) fn from_header(fields: &str) -> Columns {
        Columns {
            names: fields.split(',').map(|f| f.trim().to_string()).collect(),
        }
    }

    /// The named cell, or "" when the file has no such column or the line is short.
    pub(crate) fn get<'a>(&self, cells: &'a [String], name: &str) -> &'a str {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| cells.get(i))
            .map_or("", String::as_str)
    }
}

/// A protocol log record longer than this is not an SMTP line hubgate wrote; it is skipped.
const MAX_PROTOCOL_RECORD: usize = 64 * 1024;
/// The data shown per line; SMTP lines are far shorter (RFC 5321: 512 octets for commands).
pub const MAX_DATA_SHOWN: usize = 2048;
/// Lines kept over all sessions of one search, whatever the per-session cap.
pub const MAX_LINES_TOTAL: usize = 20_000;
/// Once the session cap is reached, how many more records are read to finish the conversations
/// already shown (their last lines may come after other sessions' first lines).
const FINISH_BUDGET: usize = 50_000;
/// The most sessions a search may skip (page through); beyond it, narrow the time range.
pub const MAX_SKIP: usize = 100_000;

/// What Toolbox › Protocol Logs searches for.
#[derive(Clone, Debug)]
pub struct ProtocolQuery {
    pub kind: LogKind,
    /// The connector-id column (`HUB1\Default HUB1` on receive, the connector name on send);
    /// compared case-insensitively. `None`: every connector.
    pub connector: Option<String>,
    /// The remote endpoint's address, and its port when given.
    pub remote: Option<Remote>,
    /// Sessions whose first line in the range is at or after this (inclusive).
    pub start: Option<OffsetDateTime>,
    /// Sessions that begin before this (exclusive); their later lines are still shown.
    pub end: Option<OffsetDateTime>,
    /// Matching sessions passed over before the first one returned (paging).
    pub skip: usize,
    pub max_sessions: usize,
    pub max_lines_per_session: usize,
}

/// A remote address as an administrator types it: `192.0.2.7`, `192.0.2.7:25`, `[2001:db8::1]:25`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    Ip(IpAddr),
    Endpoint(SocketAddr),
}

impl std::str::FromStr for Remote {
    type Err = ();
    fn from_str(s: &str) -> Result<Remote, ()> {
        let s = s.trim();
        if let Ok(ip) = s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(Remote::Ip(ip.to_canonical()));
        }
        s.parse::<SocketAddr>()
            .map(|a| Remote::Endpoint(SocketAddr::new(a.ip().to_canonical(), a.port())))
            .map_err(|_| ())
    }
}

impl Remote {
    fn matches(&self, endpoint: &str) -> bool {
        let Ok(addr) = endpoint.parse::<SocketAddr>() else {
            return false;
        };
        let ip = addr.ip().to_canonical();
        match self {
            Remote::Ip(want) => ip == *want,
            Remote::Endpoint(want) => ip == want.ip() && addr.port() == want.port(),
        }
    }
}

/// One line of a session's conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolLine {
    pub date_time: OffsetDateTime,
    pub sequence: u64,
    /// `+` connect, `-` disconnect, `>` sent, `<` received, `*` information.
    pub event: String,
    pub data: String,
    /// Cut to [`MAX_DATA_SHOWN`] bytes.
    pub data_cut: bool,
    pub context: String,
}

/// One SMTP session: its lines in the order written.
#[derive(Clone, Debug, PartialEq)]
pub struct ProtocolSession {
    pub session_id: String,
    pub connector_id: String,
    pub local_endpoint: String,
    pub remote_endpoint: String,
    pub lines: Vec<ProtocolLine>,
    /// Lines of the session past the per-session cap (or the search's total), not returned.
    pub lines_not_shown: u64,
    /// The first line returned is not the session's first (it began before the range).
    pub began_earlier: bool,
    /// The disconnect line was seen.
    pub ended: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProtocolPage {
    pub sessions: Vec<ProtocolSession>,
    /// Further matching sessions exist after the last one returned.
    pub more: bool,
}

struct Cols {
    date_time: usize,
    connector: usize,
    session: usize,
    sequence: usize,
    local: usize,
    remote: usize,
    event: usize,
    data: usize,
    context: usize,
}

impl Cols {
    fn from_header(fields: &str) -> Option<Cols> {
        let names: Vec<&str> = fields.split(',').map(str::trim).collect();
        let at = |n: &str| names.iter().position(|x| *x == n);
        Some(Cols {
            date_time: at("date-time")?,
            connector: at("connector-id")?,
            session: at("session-id")?,
            sequence: at("sequence-number")?,
            local: at("local-endpoint")?,
            remote: at("remote-endpoint")?,
            event: at("event")?,
            data: at("data")?,
            context: at("context")?,
        })
    }
}

/// Reads the protocol log of `q.kind` under `data_dir` in file order and groups its lines by
/// session id, in the order each session first appears. A missing directory is an empty log;
/// lines that do not parse are skipped.
pub fn protocol_sessions(data_dir: &Path, q: &ProtocolQuery) -> io::Result<ProtocolPage> {
    let mut page = ProtocolPage::default();
    if q.skip > MAX_SKIP {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot skip more than {MAX_SKIP} sessions; narrow the time range"),
        ));
    }
    if q.max_sessions == 0 {
        return Ok(page);
    }
    let dir = protocol_dir(data_dir, q.kind);
    let prefix = q.kind.file_prefix();
    // Session id → index in `page.sessions`; skipped ones are remembered so their later lines
    // do not count as new sessions.
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut skipped: HashSet<String> = HashSet::new();
    let mut total_lines = 0usize;
    let mut budget: Option<usize> = None;
    for path in log_files(&dir, prefix, q.start, None)? {
        let Some(reader) = open(&path)? else { continue };
        let mut cols = Cols::from_header(super::protocol::FIELDS);
        let mut records = Records::new(reader, MAX_PROTOCOL_RECORD);
        while let Some(record) = records.next_record()? {
            if let Some(b) = budget.as_mut() {
                if *b == 0 || page.sessions.iter().all(|s| s.ended) {
                    return Ok(page);
                }
                *b -= 1;
            }
            let Record::Line(record) = record else {
                tracing::debug!(file = %path.display(), "skipping an over-long protocol log line");
                continue;
            };
            if let Some(fields) = record.strip_prefix("#Fields:") {
                cols = Cols::from_header(fields);
                continue;
            }
            if record.starts_with('#') {
                continue;
            }
            let Some(c) = cols.as_ref() else { continue };
            let cells = parse_record(&record);
            let cell = |i: usize| cells.get(i).map_or("", String::as_str);
            let Ok(date_time) = OffsetDateTime::parse(cell(c.date_time), &Rfc3339) else {
                continue;
            };
            let Ok(sequence) = cell(c.sequence).parse::<u64>() else {
                continue;
            };
            let session_id = cell(c.session);
            if session_id.is_empty() {
                continue;
            }
            let at = match index.get(session_id) {
                Some(&i) => i,
                None => {
                    if q.end.is_some_and(|e| date_time >= e) {
                        // Past the range: only the conversations already begun still matter.
                        if page.sessions.is_empty() {
                            return Ok(page);
                        }
                        budget.get_or_insert(FINISH_BUDGET);
                        continue;
                    }
                    if skipped.contains(session_id) || q.start.is_some_and(|s| date_time < s) {
                        continue;
                    }
                    let connector = cell(c.connector);
                    if q.connector
                        .as_deref()
                        .is_some_and(|want| !want.eq_ignore_ascii_case(connector))
                    {
                        continue;
                    }
                    if q.remote.is_some_and(|r| !r.matches(cell(c.remote))) {
                        continue;
                    }
                    if skipped.len() < q.skip {
                        skipped.insert(session_id.to_string());
                        continue;
                    }
                    if page.sessions.len() >= q.max_sessions {
                        page.more = true;
                        budget.get_or_insert(FINISH_BUDGET);
                        continue;
                    }
                    index.insert(session_id.to_string(), page.sessions.len());
                    page.sessions.push(ProtocolSession {
                        session_id: session_id.to_string(),
                        connector_id: connector.to_string(),
                        local_endpoint: cell(c.local).to_string(),
                        remote_endpoint: cell(c.remote).to_string(),
                        lines: Vec::new(),
                        lines_not_shown: 0,
                        began_earlier: sequence != 0,
                        ended: false,
                    });
                    page.sessions.len() - 1
                }
            };
            let s = &mut page.sessions[at];
            let event = cell(c.event);
            if event == "-" {
                s.ended = true;
            }
            if s.lines.len() >= q.max_lines_per_session || total_lines >= MAX_LINES_TOTAL {
                s.lines_not_shown = s.lines_not_shown.saturating_add(1);
                continue;
            }
            let (data, data_cut) = cut(cell(c.data), MAX_DATA_SHOWN);
            s.lines.push(ProtocolLine {
                date_time,
                sequence,
                event: event.to_string(),
                data,
                data_cut,
                context: cut(cell(c.context), MAX_DATA_SHOWN).0,
            });
            total_lines += 1;
        }
    }
    Ok(page)
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s.to_string(), false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (s[..end].to_string(), true)
}

#[cfg(test)]
mod tests;
