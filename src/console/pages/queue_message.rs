//! Toolbox › Queue Viewer, a message's properties (envelope, headers, every recipient with its
//! status, attempts and delay DSN time, those already delivered or failed with the attempts
//! before, the message's tracking events, "shadow copy" in a Shadow Redundancy queue) and Export
//! Message, the .eml download Export-Message gives (only of a suspended message).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;

use super::queue_messages::{EXPORT, kb};
use super::queue_viewer::{MESSAGES, op_error, tabs, when};
use super::tracking;
use super::view::{Frame, Node};
use super::{FormData, PageResult, page, seg};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::logs::tracking::{TrackingQuery, search_page};
use crate::transport::queue::RecipientStatus;
use crate::transport::queue::ops::notify::{self, DelayNotification};
use crate::transport::queue::ops::{self, MessageFilter, MessageInfo, RecipientInfo, finished};

/// The events of one message shown at most; a message has a handful, a long outage a few
/// dozen DEFERs.
const MESSAGE_EVENTS: usize = 500;

pub struct AttemptView {
    pub time: String,
    pub next_hop: String,
    pub ip: String,
    pub reply: String,
    pub tls: String,
}

pub struct RecipientView {
    pub address: String,
    pub status: String,
    pub retry_count: i32,
    pub last_error: String,
    pub next_retry: String,
    /// When the sender is told the message is delayed.
    pub delay_dsn: String,
    pub attempts: Vec<AttemptView>,
}

/// A recipient already delivered or failed, and the queue it left from.
pub struct FinishedView {
    pub queue: String,
    pub recipient: RecipientView,
}

/// One message tracking event of the message, as Get-MessageTrackingLog reports it.
pub struct EventView {
    pub time: String,
    pub event_id: String,
    pub source: String,
    pub recipients: String,
    pub recipient_status: String,
    pub server: String,
    pub sender: String,
    pub subject: String,
}

/// The message's tracking events, or why they cannot be shown.
pub struct Tracking {
    pub server: String,
    pub events: Vec<EventView>,
    /// The log holds more events than are shown.
    pub more: bool,
    pub unavailable: Option<String>,
    pub href: String,
}

pub struct EntryView {
    pub queue: String,
    pub status: String,
    pub shadow: bool,
    pub recipients: Vec<RecipientView>,
}

#[derive(Template)]
#[template(path = "console/queue_message.html")]
pub struct PropertiesPage {
    pub frame: Frame,
    pub identity: String,
    pub envelope: Vec<(&'static str, String)>,
    pub headers: String,
    pub entries: Vec<EntryView>,
    pub finished: Vec<FinishedView>,
    pub tracking: Tracking,
    pub shadow: bool,
    pub export: String,
    pub back: String,
}

/// The header section of a spooled message, at most 64 KiB of it; empty when the message left
/// the spool (delivered) while the page was drawn.
async fn header_text(st: &ConsoleState, e: &MessageInfo) -> String {
    let Some(dir) = st.data_dir.clone() else {
        return String::new();
    };
    let bytes = match crate::transport::queue::Spool::open(&dir) {
        Ok(spool) => spool.with_database(st.pool.clone()).body(e.id).await.ok(),
        Err(_) => None,
    };
    let bytes = bytes.as_deref().unwrap_or_default();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len())
        .min(64 * 1024);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

pub(super) async fn properties(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(q): Query<FormData>,
) -> PageResult {
    let id = q.one("id").unwrap_or("").to_string();
    let entries = ops::list_messages(&st.pool, &st.server, MessageFilter::Message(&id))
        .await
        .map_err(op_error)?;
    let Some(first) = entries.first() else {
        return Err(super::PageError::NoPage);
    };
    let envelope = vec![
        ("Identity", first.identity.to_string()),
        ("From Address", first.from_address.clone()),
        ("Subject", first.subject.clone().unwrap_or_default()),
        (
            "Internet Message ID",
            first.internet_message_id.clone().unwrap_or_default(),
        ),
        ("Size (KB)", kb(first.size)),
        ("Message Source Name", first.message_source_name.clone()),
        ("Source IP", first.source_ip.clone()),
        ("Date Received", when(Some(first.date_received))),
        ("Expiration Time", when(Some(first.expiration_time))),
    ];
    let headers = header_text(&st, first).await;
    let mut delays = Vec::new();
    {
        let mut conn = st.pool.acquire().await?;
        for e in &entries {
            delays.push(
                notify::delay_notifications(&mut conn, e)
                    .await
                    .map_err(op_error)?,
            );
        }
    }
    let delay_of = |i: usize, ordinal: i32| match delays[i]
        .iter()
        .find(|(o, _)| *o == ordinal)
        .map(|(_, d)| *d)
    {
        Some(DelayNotification::At(t)) => when(Some(t)),
        Some(DelayNotification::Sent) => "Sent".to_string(),
        Some(DelayNotification::Disabled) => "Not sent for this sender".to_string(),
        Some(DelayNotification::Primary) => "Sent by the primary server".to_string(),
        None => String::new(),
    };
    let views: Vec<EntryView> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| EntryView {
            queue: e.queue.to_string(),
            status: e.status.to_string(),
            shadow: e
                .recipients
                .iter()
                .any(|r| r.status == RecipientStatus::Shadow),
            recipients: e
                .recipients
                .iter()
                .map(|r| recipient_view(r, delay_of(i, r.ordinal)))
                .collect(),
        })
        .collect();
    let finished = {
        let mut conn = st.pool.acquire().await?;
        finished::finished_recipients(&mut conn, first.id)
            .await
            .map_err(op_error)?
    };
    let finished = finished
        .iter()
        .map(|f| FinishedView {
            queue: match (&f.queue, &f.next_hop_domain) {
                (Some(q), Some(hop)) => format!("{q} ({hop})"),
                (Some(q), None) => q.to_string(),
                (None, _) => String::new(),
            },
            recipient: recipient_view(&f.recipient, String::new()),
        })
        .collect();
    let tracking = tracking_events(&st, &first.identity.server, first.identity.internal_id).await?;
    let shadow = views.iter().any(|e| e.shadow);
    page(&PropertiesPage {
        frame: Frame::new(&admin, Node::Toolbox, format!("Message {id}")).tabs(tabs(true)),
        envelope,
        headers,
        shadow,
        entries: views,
        finished,
        tracking,
        export: format!("{EXPORT}?id={}", seg(&id)),
        back: format!("{MESSAGES}?queue={}", seg(&first.queue.to_string())),
        identity: id,
    })
}

fn recipient_view(r: &RecipientInfo, delay_dsn: String) -> RecipientView {
    RecipientView {
        address: r.address.clone(),
        status: r.status.to_string(),
        retry_count: r.retry_count,
        last_error: r.last_error.clone().unwrap_or_default(),
        next_retry: when(r.next_retry_time),
        delay_dsn,
        attempts: r
            .attempts
            .iter()
            .map(|a| AttemptView {
                time: when(Some(a.time)),
                next_hop: a.next_hop.clone().unwrap_or_default(),
                ip: a.remote_ip.clone().unwrap_or_default(),
                reply: a.reply.clone(),
                tls: a.tls_version.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// The message's events in the tracking log of the server that holds it, read as
/// Get-MessageTrackingLog -InternalMessageId reads them; another server's log is not readable
/// from this node, and the page says so as Message Tracking does.
async fn tracking_events(
    st: &ConsoleState,
    server: &str,
    internal_id: i64,
) -> Result<Tracking, super::PageError> {
    let src = tracking::source(st, server, "message tracking log").await?;
    let mut out = Tracking {
        href: format!(
            "{}?server={}&internal={internal_id}",
            tracking::MESSAGE,
            seg(&src.server)
        ),
        server: src.server,
        events: Vec::new(),
        more: false,
        unavailable: None,
    };
    let dir = match src.dir {
        Ok(dir) => dir,
        Err(why) => {
            out.unavailable = Some(why);
            return Ok(out);
        }
    };
    let q = TrackingQuery {
        internal_message_id: Some(internal_id),
        ..TrackingQuery::default()
    };
    let found = tokio::task::spawn_blocking(move || search_page(&dir, &q, 0, MESSAGE_EVENTS))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    match found {
        Ok(found) => {
            out.more = found.more;
            out.events = found
                .entries
                .into_iter()
                .map(|e| EventView {
                    time: crate::logs::protocol::timestamp(
                        e.timestamp.to_offset(time::UtcOffset::UTC),
                    ),
                    event_id: e.event_id,
                    source: e.source,
                    recipients: e.recipients.join("; "),
                    recipient_status: e.recipient_status.join("; "),
                    // A smart host named by its address would show it twice.
                    server: match (e.server_hostname, e.server_ip) {
                        (Some(h), Some(ip)) if h != ip => format!("{h} {ip}"),
                        (Some(h), _) => h,
                        (None, ip) => ip.unwrap_or_default(),
                    },
                    sender: e.sender,
                    subject: e.message_subject.unwrap_or_default(),
                })
                .collect();
        }
        Err(e) => {
            out.unavailable = Some(format!("The message tracking log could not be read: {e}"))
        }
    }
    Ok(out)
}

/// Export Message: the .eml download; refused, in Export-Message's words, unless suspended.
pub(super) async fn export(
    State(st): State<ConsoleState>,
    _admin: Admin,
    Query(q): Query<FormData>,
) -> PageResult {
    let id = q.one("id").unwrap_or("");
    let Some(dir) = st.data_dir.clone() else {
        return Err(super::PageError::NoPage);
    };
    let (identity, bytes) = ops::read_message(&st.pool, &st.server, &dir, id)
        .await
        .map_err(op_error)?;
    let name = format!("message-{}.eml", identity.internal_id);
    Ok((
        [
            (header::CONTENT_TYPE, "message/rfc822".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
