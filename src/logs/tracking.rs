//! Message tracking log in the Exchange 2010 `MessageTracking` CSV format, and the search behind
//! `Get-MessageTrackingLog`.
//!
//! The files are what Exchange administrators parse with their own tools, so the header, file
//! names and columns follow Exchange; they share the protocol log's writer (UTF-8, CRLF, RFC 4180
//! quoting, a new file per UTC day and per 10 MB). Like the protocol log it is best effort: a
//! full disk must not fail deliveries, so write errors are reported through `tracing` only.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::protocol::{Clock, LogFormat, RotatingLog, csv_field};
use super::read::{Columns, Record, Records, log_files, open, parse_record};
use super::retention::{self, Family, Limits, Retention};
use crate::transport::antispam_stats::AgentCounts;

pub(crate) const FILE_PREFIX: &str = "MSGTRK";

/// The E12 columns, then E14's additions (directionality .. original-server-ip) and 2010 SP1's
/// `custom-data`.
const FIELDS: &str = "date-time,client-ip,client-hostname,server-ip,server-hostname,\
                      source-context,connector-id,source,event-id,internal-message-id,message-id,\
                      recipient-address,recipient-status,total-bytes,recipient-count,\
                      related-recipient-address,reference,message-subject,sender-address,\
                      return-path,message-info,directionality,tenant-id,original-client-ip,\
                      original-server-ip,custom-data";

const FORMAT: LogFormat = LogFormat {
    file_prefix: FILE_PREFIX,
    log_type: "Message Tracking Log",
    fields: FIELDS,
};

/// `Get-MessageTrackingLog`'s default `-ResultSize`.
pub const DEFAULT_RESULT_SIZE: usize = 1000;

/// Multi-valued columns (recipients, their statuses) hold their values in one cell.
const LIST_SEPARATOR: char = ';';

/// One event as the transport code reports it; borrowed so that recording costs no copies
/// beyond the line itself.
#[derive(Debug, Clone, Copy)]
pub struct TrackingEvent<'a> {
    /// RECEIVE, SEND, DELIVER, FAIL, DSN, DEFER, RESUBMIT, POISONMESSAGE, ...
    pub event_id: &'a str,
    /// SMTP, STOREDRIVER, DSN, ADMIN, ROUTING, QUEUE, ...
    pub source: &'a str,
    pub client_ip: Option<IpAddr>,
    pub client_hostname: Option<&'a str>,
    pub server_ip: Option<IpAddr>,
    pub server_hostname: Option<&'a str>,
    pub source_context: Option<&'a str>,
    pub connector_id: Option<&'a str>,
    pub internal_message_id: i64,
    pub message_id: Option<&'a str>,
    pub recipients: &'a [&'a str],
    pub recipient_status: &'a [&'a str],
    pub total_bytes: u64,
    pub related_recipient_address: Option<&'a str>,
    pub reference: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub sender: &'a str,
    pub return_path: &'a str,
    pub message_info: Option<&'a str>,
    /// Incoming / Originating
    pub directionality: Option<&'a str>,
}

/// The node's tracking log; cheap to clone, one writer shared by every task.
#[derive(Clone)]
pub struct TrackingLog {
    inner: Option<Arc<Inner>>,
    /// The anti-spam agents' decisions, counted here where every one of them is recorded (even
    /// with the log itself disabled) for the console's Anti-spam tab.
    agents: AgentCounts,
}

struct Inner {
    log: RotatingLog,
    subject_logging: bool,
}

/// `<data_dir>/logs/MessageTracking`, where `MSGTRKyyyymmdd-n.LOG` files are written.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs").join("MessageTracking")
}

impl TrackingLog {
    /// `enabled` and `subject_logging` are the TransportServer's `MessageTrackingLogEnabled` and
    /// `MessageTrackingLogSubjectLoggingEnabled`. Nothing is created until the first event.
    pub fn new(data_dir: &Path, enabled: bool, subject_logging: bool) -> TrackingLog {
        if !enabled {
            return TrackingLog::disabled();
        }
        TrackingLog::with_limits(
            data_dir,
            subject_logging,
            retention::shared(Family::MessageTracking),
            Arc::new(OffsetDateTime::now_utc),
        )
    }

    /// An enabled log with a different file size limit and clock.
    pub fn with_settings(
        data_dir: &Path,
        subject_logging: bool,
        max_file_size: u64,
        clock: Clock,
    ) -> TrackingLog {
        let limits = Arc::new(std::sync::RwLock::new(Retention::file_size(max_file_size)));
        TrackingLog::with_limits(data_dir, subject_logging, limits, clock)
    }

    /// An enabled log with limits and a clock of its own.
    pub fn with_limits(
        data_dir: &Path,
        subject_logging: bool,
        limits: Limits,
        clock: Clock,
    ) -> TrackingLog {
        TrackingLog {
            inner: Some(Arc::new(Inner {
                log: RotatingLog::new(dir(data_dir), FORMAT, limits, clock),
                subject_logging,
            })),
            agents: AgentCounts::default(),
        }
    }

    pub fn disabled() -> TrackingLog {
        TrackingLog {
            inner: None,
            agents: AgentCounts::default(),
        }
    }

    /// The anti-spam agents' decisions recorded through this log (and its clones).
    pub fn agent_counts(&self) -> &AgentCounts {
        &self.agents
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Appends one line, written through to the file before returning (no fsync: losing the
    /// last lines in a crash is acceptable for a log, unlike for the queue).
    pub fn record(&self, e: &TrackingEvent<'_>) {
        self.agents.observe(e.source, e.source_context, e.event_id);
        let Some(inner) = &self.inner else { return };
        let subject = if inner.subject_logging {
            e.subject
        } else {
            None
        };
        let cells: [&str; 25] = [
            &ip(e.client_ip),
            opt(e.client_hostname),
            &ip(e.server_ip),
            opt(e.server_hostname),
            opt(e.source_context),
            opt(e.connector_id),
            e.source,
            e.event_id,
            &e.internal_message_id.to_string(),
            opt(e.message_id),
            &join(e.recipients),
            &join(e.recipient_status),
            &e.total_bytes.to_string(),
            &e.recipients.len().to_string(),
            opt(e.related_recipient_address),
            opt(e.reference),
            opt(subject),
            e.sender,
            e.return_path,
            opt(e.message_info),
            opt(e.directionality),
            // tenant-id, original-client-ip, original-server-ip, custom-data: not produced by a
            // single-tenant Hub without agents.
            "",
            "",
            "",
            "",
        ];
        let mut line = String::with_capacity(256);
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&csv_field(cell));
        }
        inner.log.write_line(&line);
    }
}

fn opt(value: Option<&str>) -> &str {
    value.unwrap_or("")
}

/// A dual-stack listener reports IPv4 peers as `::ffff:a.b.c.d`; searches and administrators
/// expect the plain IPv4 form.
fn ip(addr: Option<IpAddr>) -> String {
    addr.map(|a| a.to_canonical().to_string())
        .unwrap_or_default()
}

fn join(values: &[&str]) -> String {
    let mut joined = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            joined.push(LIST_SEPARATOR);
        }
        joined.push_str(v);
    }
    joined
}

/// One line of the log, as `Get-MessageTrackingLog` returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackingEntry {
    pub timestamp: OffsetDateTime,
    pub client_ip: Option<String>,
    pub client_hostname: Option<String>,
    pub server_ip: Option<String>,
    pub server_hostname: Option<String>,
    pub source_context: Option<String>,
    pub connector_id: Option<String>,
    pub source: String,
    pub event_id: String,
    pub internal_message_id: i64,
    pub message_id: Option<String>,
    pub recipients: Vec<String>,
    pub recipient_status: Vec<String>,
    pub total_bytes: u64,
    pub recipient_count: u32,
    pub related_recipient_address: Option<String>,
    pub reference: Option<String>,
    pub message_subject: Option<String>,
    pub sender: String,
    pub return_path: String,
    pub message_info: Option<String>,
    pub directionality: Option<String>,
}

/// `Get-MessageTrackingLog`'s filters; every string compares case-insensitively and unset
/// filters match everything.
#[derive(Clone, Debug, Default)]
pub struct TrackingQuery {
    pub sender: Option<String>,
    /// An entry matches when any of its recipients is any of these.
    pub recipients: Vec<String>,
    pub event_id: Option<String>,
    /// With or without the angle brackets.
    pub message_id: Option<String>,
    pub internal_message_id: Option<i64>,
    /// Inclusive.
    pub start: Option<OffsetDateTime>,
    /// Exclusive, so that consecutive windows never report an event twice.
    pub end: Option<OffsetDateTime>,
    /// [`DEFAULT_RESULT_SIZE`] when unset, as in Exchange; `Some(usize::MAX)` is `Unlimited`.
    pub result_size: Option<usize>,
}

impl TrackingQuery {
    fn matches(&self, e: &TrackingEntry) -> bool {
        let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        if let Some(sender) = &self.sender
            && !eq(sender, &e.sender)
        {
            return false;
        }
        if !self.recipients.is_empty()
            && !e
                .recipients
                .iter()
                .any(|r| self.recipients.iter().any(|q| eq(q, r)))
        {
            return false;
        }
        if let Some(event_id) = &self.event_id
            && !eq(event_id, &e.event_id)
        {
            return false;
        }
        if let Some(message_id) = &self.message_id {
            let bare = |s: &str| {
                s.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            };
            match &e.message_id {
                Some(id) if eq(&bare(message_id), &bare(id)) => {}
                _ => return false,
            }
        }
        if self
            .internal_message_id
            .is_some_and(|id| id != e.internal_message_id)
        {
            return false;
        }
        if self.start.is_some_and(|start| e.timestamp < start) {
            return false;
        }
        if self.end.is_some_and(|end| e.timestamp >= end) {
            return false;
        }
        true
    }
}

/// A record longer than this is skipped rather than held: generous enough for a message with
/// thousands of recipients in one cell.
const MAX_RECORD: usize = 4 * 1024 * 1024;

/// One page of a search, for the console.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackingPage {
    pub entries: Vec<TrackingEntry>,
    /// Further matching entries exist after the last one returned.
    pub more: bool,
}

/// Reads every `MSGTRK*.LOG` under [`dir`]`(data_dir)`, oldest file first, and returns the
/// matching entries in the order they were written, up to the query's result size. A missing
/// directory is an empty log; lines that do not parse (a foreign or truncated line) are skipped.
pub fn search(data_dir: &Path, q: &TrackingQuery) -> io::Result<Vec<TrackingEntry>> {
    let limit = q.result_size.unwrap_or(DEFAULT_RESULT_SIZE);
    Ok(scan(data_dir, q, 0, limit, false)?.entries)
}

/// The matching entries after the first `skip`, at most `take` of them (the query's result
/// size is not used), and whether more follow. Only the page is held in memory.
pub fn search_page(
    data_dir: &Path,
    q: &TrackingQuery,
    skip: usize,
    take: usize,
) -> io::Result<TrackingPage> {
    scan(data_dir, q, skip, take, true)
}

fn scan(
    data_dir: &Path,
    q: &TrackingQuery,
    mut skip: usize,
    take: usize,
    look_ahead: bool,
) -> io::Result<TrackingPage> {
    let mut page = TrackingPage::default();
    if take == 0 && !look_ahead {
        return Ok(page);
    }
    for path in log_files(&dir(data_dir), FILE_PREFIX, q.start, q.end)? {
        let Some(reader) = open(&path)? else { continue };
        let mut columns = Columns::from_header(FIELDS);
        let mut records = Records::new(reader, MAX_RECORD);
        while let Some(record) = records.next_record()? {
            let Record::Line(record) = record else {
                tracing::debug!(file = %path.display(), "skipping an over-long tracking log line");
                continue;
            };
            if let Some(fields) = record.strip_prefix("#Fields:") {
                columns = Columns::from_header(fields);
                continue;
            }
            if record.starts_with('#') {
                continue;
            }
            let Some(entry) = entry(&columns, &parse_record(&record)) else {
                tracing::debug!(file = %path.display(), "skipping a tracking log line that does not parse");
                continue;
            };
            if !q.matches(&entry) {
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if page.entries.len() >= take {
                page.more = true;
                return Ok(page);
            }
            page.entries.push(entry);
            if !look_ahead && page.entries.len() >= take {
                return Ok(page);
            }
        }
    }
    Ok(page)
}

#[cfg(test)]
fn file_sort_key(name: &str) -> Option<(u32, u32)> {
    super::read::file_sort_key(FILE_PREFIX, name)
}

/// The entry a line's cells make, read by the names in its file's `#Fields:` line so that files
/// written with another column set (an older or newer version) still read correctly.
fn entry(columns: &Columns, cells: &[String]) -> Option<TrackingEntry> {
    let get = |name: &str| -> &str { columns.get(cells, name) };
    let opt = |name: &str| {
        Some(get(name))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let list = |name: &str| -> Vec<String> {
        match get(name) {
            "" => Vec::new(),
            v => v.split(LIST_SEPARATOR).map(str::to_string).collect(),
        }
    };
    let number = |name: &str| -> Option<u64> {
        match get(name) {
            "" => Some(0),
            v => v.parse().ok(),
        }
    };
    let event_id = get("event-id");
    if event_id.is_empty() {
        return None;
    }
    Some(TrackingEntry {
        timestamp: OffsetDateTime::parse(get("date-time"), &Rfc3339).ok()?,
        client_ip: opt("client-ip"),
        client_hostname: opt("client-hostname"),
        server_ip: opt("server-ip"),
        server_hostname: opt("server-hostname"),
        source_context: opt("source-context"),
        connector_id: opt("connector-id"),
        source: get("source").to_string(),
        event_id: event_id.to_string(),
        internal_message_id: match get("internal-message-id") {
            "" => 0,
            v => v.parse().ok()?,
        },
        message_id: opt("message-id"),
        recipients: list("recipient-address"),
        recipient_status: list("recipient-status"),
        total_bytes: number("total-bytes")?,
        recipient_count: u32::try_from(number("recipient-count")?).ok()?,
        related_recipient_address: opt("related-recipient-address"),
        reference: opt("reference"),
        message_subject: opt("message-subject"),
        sender: get("sender-address").to_string(),
        return_path: get("return-path").to_string(),
        message_info: opt("message-info"),
        directionality: opt("directionality"),
    })
}

#[cfg(test)]
mod tests;
