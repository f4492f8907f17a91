//! Toolbox › Queue Viewer, a message's properties (envelope, headers, every recipient with its
//! status, attempts and delay DSN time, "shadow copy" in a Shadow Redundancy queue) and Export
//! Message, the .eml download Export-Message gives (only of a suspended message).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;

use super::queue_messages::{EXPORT, kb};
use super::queue_viewer::{MESSAGES, op_error, tabs, when};
use super::view::{Frame, Node};
use super::{FormData, PageResult, page, seg};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::transport::queue::RecipientStatus;
use crate::transport::queue::ops::notify::{self, DelayNotification};
use crate::transport::queue::ops::{self, MessageFilter, MessageInfo};

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
    let id = e.id;
    let bytes = tokio::task::spawn_blocking(move || {
        crate::transport::queue::Spool::open(&dir).and_then(|s| s.read(id))
    })
    .await
    .ok()
    .and_then(|r| r.ok())
    .unwrap_or_default();
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
                .map(|r| RecipientView {
                    address: r.address.clone(),
                    status: r.status.to_string(),
                    retry_count: r.retry_count,
                    last_error: r.last_error.clone().unwrap_or_default(),
                    next_retry: when(r.next_retry_time),
                    delay_dsn: delay_of(i, r.ordinal),
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
                })
                .collect(),
        })
        .collect();
    let shadow = views.iter().any(|e| e.shadow);
    page(&PropertiesPage {
        frame: Frame::new(&admin, Node::Toolbox, format!("Message {id}")).tabs(tabs(true)),
        envelope,
        headers,
        shadow,
        entries: views,
        export: format!("{EXPORT}?id={}", seg(&id)),
        back: format!("{MESSAGES}?queue={}", seg(&first.queue.to_string())),
        identity: id,
    })
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
