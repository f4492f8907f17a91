//! `-Filter` on the queue cmdlets: the properties Get-Queue and Get-Message show, typed, for
//! `ops::filter`, and the reads that keep only the matching rows.
//!
//! The filter is evaluated in memory over the rows the read loads: a server's queues (few), or
//! the messages of the scope asked for, where the query itself first keeps only the messages
//! the filter's message-level comparisons allow (`pushdown`), so a filter on a big queue reads
//! only what it may match.

use sqlx::{Acquire, Postgres};

use super::page::Page;
use super::pushdown::Prefilter;
use super::window::PageRequest;
use super::{MessageFilter, MessageInfo, QueueError, QueueInfo, list_messages_page, list_queues};
use crate::ops::filter::{FValue, Filter, Kind, Record};

const QUEUE_STATUS: &[&str] = &["Active", "Ready", "Retry", "Suspended"];
const MESSAGE_STATUS: &[&str] = &["Ready", "Retry", "Suspended", "PendingRemove"];

/// Get-Queue's properties and their types, in Format-List order.
pub const QUEUE_SCHEMA: &[(&str, Kind)] = &[
    ("Identity", Kind::Str),
    ("DeliveryType", Kind::Str),
    ("Status", Kind::Enum(QUEUE_STATUS)),
    ("MessageCount", Kind::Num),
    ("NextHopDomain", Kind::Str),
    ("NextHopConnector", Kind::Str),
    ("LastError", Kind::Str),
    ("LastRetryTime", Kind::Date),
    ("NextRetryTime", Kind::Date),
];

/// Get-Message's properties and their types, in Format-List order.
pub const MESSAGE_SCHEMA: &[(&str, Kind)] = &[
    ("Identity", Kind::Str),
    ("Subject", Kind::Str),
    ("InternetMessageId", Kind::Str),
    ("FromAddress", Kind::Str),
    ("Status", Kind::Enum(MESSAGE_STATUS)),
    ("Size", Kind::Num),
    ("MessageSourceName", Kind::Str),
    ("SourceIP", Kind::Str),
    ("SCL", Kind::Num),
    ("DateReceived", Kind::Date),
    ("ExpirationTime", Kind::Date),
    ("LastError", Kind::Str),
    ("RetryCount", Kind::Num),
    ("Queue", Kind::Str),
];

fn names(schema: &[(&'static str, Kind)]) -> Vec<&'static str> {
    schema.iter().map(|(n, _)| *n).collect()
}

fn s(v: impl ToString) -> FValue {
    FValue::Str(v.to_string())
}
fn opt_s(v: &Option<String>) -> FValue {
    v.as_ref().map(s).unwrap_or(FValue::Null)
}

impl Record for QueueInfo {
    fn property_names(&self) -> Vec<&'static str> {
        names(QUEUE_SCHEMA)
    }
    fn property(&self, name: &str) -> Option<FValue> {
        let (name, _) = QUEUE_SCHEMA
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(match *name {
            "Identity" => s(&self.identity),
            "DeliveryType" => s(&self.delivery_type),
            "Status" => s(self.status),
            // Counts far below 2^53: exact as f64.
            "MessageCount" => FValue::Num(self.message_count as f64),
            "NextHopDomain" => s(&self.next_hop_domain),
            "NextHopConnector" => self.next_hop_connector.map(s).unwrap_or(FValue::Null),
            "LastError" => opt_s(&self.last_error),
            "LastRetryTime" => self
                .last_retry_time
                .map(FValue::Date)
                .unwrap_or(FValue::Null),
            "NextRetryTime" => self
                .next_retry_time
                .map(FValue::Date)
                .unwrap_or(FValue::Null),
            _ => return None,
        })
    }
}

impl Record for MessageInfo {
    fn property_names(&self) -> Vec<&'static str> {
        names(MESSAGE_SCHEMA)
    }
    fn property(&self, name: &str) -> Option<FValue> {
        let (name, _) = MESSAGE_SCHEMA
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(match *name {
            "Identity" => s(&self.identity),
            "Subject" => opt_s(&self.subject),
            "InternetMessageId" => opt_s(&self.internet_message_id),
            "FromAddress" => s(&self.from_address),
            "Status" => s(self.status),
            // Bytes, as `Size -gt 1MB` compares them.
            "Size" => FValue::Num(self.size as f64),
            "MessageSourceName" => s(&self.message_source_name),
            "SourceIP" => s(&self.source_ip),
            "SCL" => self
                .scl
                .map(|n| FValue::Num(n.into()))
                .unwrap_or(FValue::Null),
            "DateReceived" => FValue::Date(self.date_received),
            "ExpirationTime" => FValue::Date(self.expiration_time),
            "LastError" => opt_s(&self.last_error),
            "RetryCount" => FValue::Num(self.retry_count.into()),
            "Queue" => s(&self.queue),
            _ => return None,
        })
    }
}

/// Parses a queue filter and checks its properties and values before anything is read.
pub fn parse_queue_filter(text: &str) -> Result<Filter, QueueError> {
    let f = Filter::parse(text)?;
    f.check_schema(QUEUE_SCHEMA)?;
    Ok(f)
}

pub fn parse_message_filter(text: &str) -> Result<Filter, QueueError> {
    let f = Filter::parse(text)?;
    f.check_schema(MESSAGE_SCHEMA)?;
    Ok(f)
}

fn keep<T: Record>(rows: Vec<T>, f: &Filter) -> Result<Vec<T>, QueueError> {
    let mut out = Vec::new();
    for r in rows {
        if f.matches(&r)? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Get-Queue -Filter: the server's queues that match.
pub async fn filter_queues<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    f: &Filter,
) -> Result<Vec<QueueInfo>, QueueError> {
    keep(list_queues(db, server).await?, f)
}

/// Get-Message -Filter: the entries of `scope` that match.
pub async fn filter_messages<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    scope: MessageFilter<'_>,
    f: &Filter,
) -> Result<Vec<MessageInfo>, QueueError> {
    let page = Page {
        prefilter: Prefilter::of_message_filter(f),
        ..Page::default()
    };
    keep(list_messages_page(db, server, scope, &page).await?.0, f)
}

/// One page of a listing the Queue Viewer shows: the entries of `scope` that `f` (if any)
/// keeps, in `order`, `size` of them from `offset`, with how many match in all (the total the
/// viewer shows and "all N matching" acts on).
pub async fn filtered_page(
    db: &sqlx::PgPool,
    server: &str,
    scope: MessageFilter<'_>,
    f: Option<&Filter>,
    order: Vec<(super::SortKey, bool)>,
    offset: usize,
    size: usize,
) -> Result<(Vec<MessageInfo>, usize), QueueError> {
    let req = PageRequest {
        order,
        offset,
        size,
        ..PageRequest::default()
    };
    filtered_page_at(db, server, scope, f, &req).await
}

/// `filtered_page` as the viewer asks for it: possibly next to a message it showed, and in the
/// gateway with an unfiltered total's queue rows counted by the queue manager of `server`
/// (`req.held`) rather than by a scan of every held recipient.
pub async fn filtered_page_at(
    db: &sqlx::PgPool,
    server: &str,
    scope: MessageFilter<'_>,
    f: Option<&Filter>,
    req: &PageRequest<'_>,
) -> Result<(Vec<MessageInfo>, usize), QueueError> {
    let mut conn = db.acquire().await?;
    // No filter, or one SQL can test exactly: counted and cut in SQL.
    let exact = f.map(Prefilter::exact);
    if !matches!(exact, Some(None))
        && let Some(window) =
            super::window::window(&mut conn, server, scope, exact.flatten(), req).await?
    {
        return Ok(window);
    }
    drop(conn);
    // The full listing is cut by the offset alone; it is what the anchor's message numbers.
    let all = matching(db, server, scope, f, req.order.clone()).await?;
    let total = all.len();
    let mut page: Vec<MessageInfo> = all.into_iter().skip(req.offset).take(req.size).collect();
    super::read::attach_attempts(&mut *db.acquire().await?, &mut page).await?;
    Ok((page, total))
}

/// Every entry of `scope` that `f` keeps, in `order`: what a filtered action acts on. Without
/// the attempt history, which no filter reads.
pub async fn matching<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    scope: MessageFilter<'_>,
    f: Option<&Filter>,
    order: Vec<(super::SortKey, bool)>,
) -> Result<Vec<MessageInfo>, QueueError> {
    let page = Page {
        order,
        prefilter: f.and_then(Prefilter::of_message_filter),
        skip_attempts: true,
        ..Page::default()
    };
    let rows = list_messages_page(db, server, scope, &page).await?.0;
    match f {
        Some(f) => keep(rows, f),
        None => Ok(rows),
    }
}
