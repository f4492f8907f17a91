//! Toolbox › Message Tracking: the node's tracking log searched by sender, recipient,
//! Message-ID, event id and time range, a page at a time, and one message's events in order.
//! It reads through `logs::tracking::search_page`, the reader behind Get-MessageTrackingLog, so
//! the console and the shell find the same entries.

use std::collections::HashMap;
use std::path::PathBuf;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use time::OffsetDateTime;

use super::view::{Frame, Node};
use super::{PageResult, page, seg};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::logs::tracking::{self, TrackingEntry, TrackingQuery};
use crate::ops::transport;

pub const TRACKING: &str = "/toolbox/message-tracking";
pub const MESSAGE: &str = "/toolbox/message-tracking/message";

/// Exchange 2010's tracking event ids.
const EVENT_IDS: &[&str] = &[
    "BADMAIL",
    "DEFER",
    "DELIVER",
    "DSN",
    "EXPAND",
    "FAIL",
    "POISONMESSAGE",
    "RECEIVE",
    "REDIRECT",
    "RESOLVE",
    "RESUBMIT",
    "SEND",
    "SUBMIT",
    "TRANSFER",
];
pub(super) const PAGE_SIZES: &[usize] = &[50, 200, 1000];
/// The events of one message shown at most; a message has a handful.
const MESSAGE_EVENTS: usize = 1000;
/// Longer than any address, Message-ID or date an administrator types.
pub(super) const MAX_INPUT: usize = 1000;
/// Entries passed over to reach a page; further on, narrow the search instead.
const MAX_SKIP: usize = 1_000_000;

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route(TRACKING, get(search))
        .route(MESSAGE, get(message))
}

/// A page's query string.
pub(super) type Params = HashMap<String, String>;

pub(super) fn param<'a>(p: &'a Params, name: &str) -> &'a str {
    p.get(name).map_or("", |v| v.trim())
}

/// The servers an administrator may pick, and where the chosen one's logs are: this node's data
/// directory, or why they cannot be read from here.
pub(super) struct LogSource {
    pub servers: Vec<String>,
    pub server: String,
    pub dir: Result<PathBuf, String>,
}

pub(super) async fn source(
    st: &ConsoleState,
    chosen: &str,
    what: &str,
) -> Result<LogSource, super::PageError> {
    let mut tx = st.pool.begin().await?;
    let servers: Vec<String> = transport::get_servers(&mut tx, None, true)
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    let server = if chosen.is_empty() {
        st.server.clone()
    } else {
        chosen.to_string()
    };
    let dir = if !server.eq_ignore_ascii_case(&st.server) {
        Err(if servers.iter().any(|s| s.eq_ignore_ascii_case(&server)) {
            format!(
                "The {what} of {server} is kept on {server} itself, and this console runs on {}: it cannot be read from here. Open {server}'s console to search it.",
                st.server
            )
        } else {
            format!("There is no server named \"{server}\" in the organisation.")
        })
    } else {
        st.data_dir.clone().ok_or_else(|| {
            "This console doesn't know the gateway's data directory (HUBGATE_DATA_DIR), so it can't read the logs.".to_string()
        })
    };
    Ok(LogSource {
        servers,
        server,
        dir,
    })
}

/// A date as the shell's -Start/-End take it (UTC unless an offset is given).
pub(super) fn date(
    p: &Params,
    name: &str,
    label: &str,
    errors: &mut Vec<String>,
) -> Option<OffsetDateTime> {
    let v = param(p, name);
    if v.is_empty() {
        return None;
    }
    let t = crate::shell::queue::parse_datetime(v);
    if t.is_none() {
        errors.push(format!(
            "{label}: \"{v}\" is not a date. Use a form such as 2019-01-25 10:00 (UTC) or 1/25/2019 10:00 AM."
        ));
    }
    t
}

/// `page` (from 1) and `size` (one of `sizes`): the entries to skip, and the size.
pub(super) fn paging(
    p: &Params,
    sizes: &[usize],
    max_skip: usize,
    errors: &mut Vec<String>,
) -> (usize, usize, usize) {
    let size = match param(p, "size") {
        "" => sizes[0],
        v => match v.parse::<usize>() {
            Ok(n) if sizes.contains(&n) => n,
            _ => {
                errors.push(format!("Page size: \"{v}\" is not one of {sizes:?}."));
                sizes[0]
            }
        },
    };
    let number = match param(p, "page") {
        "" => 1,
        v => match v.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => {
                errors.push(format!("Page: \"{v}\" is not a page number."));
                1
            }
        },
    };
    let skip = (number - 1).checked_mul(size).filter(|s| *s <= max_skip);
    match skip {
        Some(skip) => (number, size, skip),
        None => {
            errors.push(format!(
                "Page {number} is too far in; narrow the search (a shorter time range) instead."
            ));
            (1, size, 0)
        }
    }
}

/// `p` with `page` replaced, as a query string for the pager links.
pub(super) fn with_page(p: &Params, keys: &[&str], page: usize) -> String {
    let mut q: Vec<String> = keys
        .iter()
        .filter(|k| !param(p, k).is_empty())
        .map(|k| format!("{k}={}", seg(param(p, k))))
        .collect();
    q.push(format!("page={page}"));
    q.join("&")
}

const KEYS: &[&str] = &[
    "server",
    "sender",
    "recipient",
    "message_id",
    "event_id",
    "start",
    "end",
    "size",
];

/// One result row.
pub struct EntryRow {
    pub time: String,
    pub event_id: String,
    pub source: String,
    pub sender: String,
    pub recipients: String,
    pub recipient_status: String,
    pub subject: String,
    pub message_id: String,
    pub href: String,
    pub server_hostname: String,
    pub server_ip: String,
    pub message_info: String,
}

fn row(server: &str, e: &TrackingEntry) -> EntryRow {
    let href = match &e.message_id {
        Some(id) => format!("{MESSAGE}?server={}&id={}", seg(server), seg(id)),
        None => format!(
            "{MESSAGE}?server={}&internal={}",
            seg(server),
            e.internal_message_id
        ),
    };
    EntryRow {
        time: crate::logs::protocol::timestamp(e.timestamp.to_offset(time::UtcOffset::UTC)),
        event_id: e.event_id.clone(),
        source: e.source.clone(),
        sender: e.sender.clone(),
        recipients: e.recipients.join("; "),
        recipient_status: e.recipient_status.join("; "),
        subject: e.message_subject.clone().unwrap_or_default(),
        message_id: e
            .message_id
            .clone()
            .unwrap_or_else(|| format!("(internal {})", e.internal_message_id)),
        href,
        server_hostname: e.server_hostname.clone().unwrap_or_default(),
        server_ip: e.server_ip.clone().unwrap_or_default(),
        message_info: e.message_info.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "console/tracking.html")]
pub struct TrackingPage {
    pub frame: Frame,
    pub servers: Vec<String>,
    pub server: String,
    pub sender: String,
    pub recipient: String,
    pub message_id: String,
    pub event_id: String,
    pub event_ids: &'static [&'static str],
    pub start: String,
    pub end: String,
    pub size: usize,
    pub sizes: &'static [usize],
    pub unavailable: Option<String>,
    pub note: Option<String>,
    pub errors: Vec<String>,
    pub rows: Vec<EntryRow>,
    pub first: usize,
    pub previous: Option<String>,
    pub next: Option<String>,
}

fn text(p: &Params, name: &str, label: &str, errors: &mut Vec<String>) -> Option<String> {
    let v = param(p, name);
    if v.chars().count() > MAX_INPUT {
        errors.push(format!("{label}: longer than {MAX_INPUT} characters."));
        return None;
    }
    (!v.is_empty()).then(|| v.to_string())
}

async fn search(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(p): Query<Params>,
) -> PageResult {
    let src = source(&st, param(&p, "server"), "message tracking log").await?;
    let mut errors = Vec::new();
    let sender = text(&p, "sender", "Sender", &mut errors);
    let recipients: Vec<String> = text(&p, "recipient", "Recipients", &mut errors)
        .map(|r| {
            r.split([',', ';'])
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let message_id = text(&p, "message_id", "Message ID", &mut errors);
    let event_id = match param(&p, "event_id") {
        "" => None,
        v => match EVENT_IDS.iter().find(|e| e.eq_ignore_ascii_case(v)) {
            Some(e) => Some(e.to_string()),
            None => {
                errors.push(format!(
                    "Event ID: \"{v}\" is not a message tracking event (one of {}).",
                    EVENT_IDS.join(", ")
                ));
                None
            }
        },
    };
    let start = date(&p, "start", "Start", &mut errors);
    let end = date(&p, "end", "End", &mut errors);
    let (number, size, skip) = paging(&p, PAGE_SIZES, MAX_SKIP, &mut errors);
    let mut note = None;
    let mut rows = Vec::new();
    let (mut previous, mut next) = (None, None);
    if let (Ok(dir), true) = (&src.dir, errors.is_empty()) {
        note = tracking_disabled(&st).await?;
        let q = TrackingQuery {
            sender,
            recipients,
            event_id,
            message_id,
            start,
            end,
            ..TrackingQuery::default()
        };
        let dir = dir.clone();
        let found =
            tokio::task::spawn_blocking(move || tracking::search_page(&dir, &q, skip, size))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
        match found {
            Ok(found) => {
                rows = found.entries.iter().map(|e| row(&src.server, e)).collect();
                if number > 1 {
                    previous = Some(format!("{TRACKING}?{}", with_page(&p, KEYS, number - 1)));
                }
                if found.more {
                    next = Some(format!("{TRACKING}?{}", with_page(&p, KEYS, number + 1)));
                }
            }
            Err(e) => errors.push(format!("The message tracking log could not be read: {e}")),
        }
    }
    page(&TrackingPage {
        frame: Frame::new(&admin, Node::Toolbox, "Message Tracking"),
        servers: src.servers,
        server: src.server,
        sender: param(&p, "sender").to_string(),
        recipient: param(&p, "recipient").to_string(),
        message_id: param(&p, "message_id").to_string(),
        event_id: param(&p, "event_id").to_ascii_uppercase(),
        event_ids: EVENT_IDS,
        start: param(&p, "start").to_string(),
        end: param(&p, "end").to_string(),
        size,
        sizes: PAGE_SIZES,
        unavailable: src.dir.err(),
        note,
        errors,
        first: skip + 1,
        rows,
        previous,
        next,
    })
}

/// A note when this node writes no tracking log (so an empty result is no surprise).
async fn tracking_disabled(st: &ConsoleState) -> Result<Option<String>, super::PageError> {
    let mut tx = st.pool.begin().await?;
    let here = transport::get_servers(
        &mut tx,
        Some(&crate::ops::Identity::Name(st.server.clone())),
        false,
    )
    .await?;
    Ok(here
        .first()
        .filter(|s| !s.message_tracking_log_enabled)
        .map(|s| {
            format!(
                "Message tracking is turned off on {} (MessageTrackingLogEnabled is False): no new events are logged.",
                s.name
            )
        }))
}

#[derive(Template)]
#[template(path = "console/tracking_message.html")]
pub struct MessagePage {
    pub frame: Frame,
    pub server: String,
    pub message_id: String,
    pub subject: String,
    pub sender: String,
    pub unavailable: Option<String>,
    pub errors: Vec<String>,
    pub rows: Vec<EntryRow>,
    pub more: bool,
    pub back: String,
}

async fn message(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(p): Query<Params>,
) -> PageResult {
    let src = source(&st, param(&p, "server"), "message tracking log").await?;
    let mut errors = Vec::new();
    let message_id = text(&p, "id", "Message ID", &mut errors);
    let internal = match param(&p, "internal") {
        "" => None,
        v => match v.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(format!(
                    "Internal message ID: \"{v}\" is not a whole number."
                ));
                None
            }
        },
    };
    if message_id.is_none() && internal.is_none() && errors.is_empty() {
        errors.push("Say which message: a Message ID (id=...) or an internal message ID.".into());
    }
    let (mut rows, mut more) = (Vec::new(), false);
    let (mut subject, mut sender) = (String::new(), String::new());
    if let (Ok(dir), true) = (&src.dir, errors.is_empty()) {
        let q = TrackingQuery {
            message_id: message_id.clone(),
            internal_message_id: internal,
            ..TrackingQuery::default()
        };
        let dir = dir.clone();
        let found =
            tokio::task::spawn_blocking(move || tracking::search_page(&dir, &q, 0, MESSAGE_EVENTS))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
        match found {
            Ok(found) => {
                more = found.more;
                if let Some(e) = found.entries.iter().find(|e| e.message_subject.is_some()) {
                    subject = e.message_subject.clone().unwrap_or_default();
                }
                if let Some(e) = found.entries.first() {
                    sender = e.sender.clone();
                }
                rows = found.entries.iter().map(|e| row(&src.server, e)).collect();
            }
            Err(e) => errors.push(format!("The message tracking log could not be read: {e}")),
        }
    }
    page(&MessagePage {
        frame: Frame::new(&admin, Node::Toolbox, "Message Tracking"),
        back: format!("{TRACKING}?server={}", seg(&src.server)),
        server: src.server,
        message_id: message_id.unwrap_or_else(|| format!("(internal {})", param(&p, "internal"))),
        subject,
        sender,
        unavailable: src.dir.err(),
        errors,
        rows,
        more,
    })
}
