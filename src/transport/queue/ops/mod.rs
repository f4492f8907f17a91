//! Administrative queue operations (reference §6.2): what Get-Queue, Get-Message and the Queue
//! Viewer's actions do, written once for the shell and the console.
//!
//! `read` answers Get-Queue, Get-Message and Export-Message from the database. `command` turns
//! Suspend/Resume/Retry-Queue and Suspend/Resume/Remove-Message into typed commands for the
//! queue manager, the one writer of queue and recipient state: nothing here writes those rows.

use std::fmt;

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{QueueStatus, RecipientStatus};

mod batch;
pub mod command;
pub mod filter;
pub mod finished;
pub mod notify;
pub mod outage;
pub mod page;
pub mod progress;
pub mod pushdown;
mod queues;
pub mod rate;
pub mod read;
mod scope;
pub mod totals;
mod window;

pub use command::{Applied, CommandReply, QueueCommand, execute, prepare};
pub use page::{DEFAULT_RESULT_SIZE, Page, SortKey, parse_sort_order};
pub use queues::{list_queues, list_queues_held};
pub use read::{export_message, get_queue, list_messages, list_messages_page, read_message};
pub use window::{Anchor, Held, HeldEntries, PageRequest};

/// The channel on which what a queue command did is announced (the console refreshes on it).
pub const CHANNEL: &str = "hubgate_queue";

/// Recipient statuses that end a recipient's life in the queue.
pub(crate) const FINAL: &str = "('Delivered', 'Failed')";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(
        "\"{0}\" isn't a valid queue identity. Use SERVER\\<number>, SERVER\\Submission, SERVER\\Unreachable or SERVER\\Poison."
    )]
    BadQueueIdentity(String),
    #[error(
        "\"{0}\" isn't a valid message identity. Use SERVER\\<queue>\\<number>, SERVER\\*\\<number> or <number>."
    )]
    BadMessageIdentity(String),
    #[error("The TransportServer \"{0}\" does not exist.")]
    NoServer(String),
    #[error("The queue \"{0}\" was not found.")]
    QueueNotFound(String),
    #[error("The message \"{0}\" was not found.")]
    MessageNotFound(String),
    #[error(
        "The queue \"{0}\" isn't in Retry status, so it can't be retried. To send its messages through routing again, use Retry-Queue -Resubmit $true."
    )]
    NotInRetry(String),
    #[error("{action} can't be used on the queue \"{queue}\": {why}")]
    NotSupported {
        action: &'static str,
        queue: String,
        why: &'static str,
    },
    #[error(
        "The message \"{0}\" can't be exported because it isn't suspended. Suspend it with Suspend-Message first."
    )]
    NotSuspended(String),
    #[error(
        "-SortOrder can't sort on '{property}'. Specify +Property or -Property with one of: {valid}."
    )]
    BadSortOrder { property: String, valid: String },
    #[error(
        "-MessagesPerMinute must be a whole number from 1 to 10000 (messages handed to delivery per minute); \"{0}\" isn't."
    )]
    BadReleaseRate(String),
    /// The queue manager could not apply a command (its reason, as it gave it).
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Filter(#[from] crate::ops::filter::FilterError),
    #[error("spool: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Org(#[from] crate::org::OrgError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The queue part of an identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueName {
    /// A delivery_queue row: the `<n>` of `SERVER\<n>`.
    Delivery(i64),
    Submission,
    Unreachable,
    Poison,
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueName::Delivery(n) => write!(f, "{n}"),
            QueueName::Submission => f.write_str("Submission"),
            QueueName::Unreachable => f.write_str("Unreachable"),
            QueueName::Poison => f.write_str("Poison"),
        }
    }
}

impl QueueName {
    fn parse(s: &str) -> Option<QueueName> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().ok().filter(|n| *n > 0).map(QueueName::Delivery);
        }
        [
            QueueName::Submission,
            QueueName::Unreachable,
            QueueName::Poison,
        ]
        .into_iter()
        .find(|q| q.to_string().eq_ignore_ascii_case(s))
    }
}

/// `SERVER\<queue>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueueIdentity {
    pub server: String,
    pub queue: QueueName,
}

impl fmt::Display for QueueIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\\{}", self.server, self.queue)
    }
}

/// Identities name servers by their short name, but an administrator may type the FQDN.
fn server_part(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() || s.contains(char::is_whitespace) {
        return None;
    }
    Some(crate::org::bootstrap::server_name_from_fqdn(s))
}

impl QueueIdentity {
    /// `SERVER\<n>`, `SERVER\Submission`, `SERVER\Unreachable`, `SERVER\Poison`, or the queue
    /// part alone for `local_server`.
    pub fn parse(s: &str, local_server: &str) -> Result<QueueIdentity, QueueError> {
        let bad = || QueueError::BadQueueIdentity(s.to_string());
        let (server, queue) = match s.trim().split_once('\\') {
            Some((server, queue)) => (server_part(server).ok_or_else(bad)?, queue),
            None => (local_server.to_ascii_uppercase(), s),
        };
        Ok(QueueIdentity {
            server,
            queue: QueueName::parse(queue).ok_or_else(bad)?,
        })
    }
}

/// `SERVER\<queue>\<internal id>`; `queue` None stands for Exchange's `SERVER\*\<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageIdentity {
    pub server: String,
    pub queue: Option<QueueName>,
    pub internal_id: i64,
}

impl fmt::Display for MessageIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.queue {
            Some(q) => write!(f, "{}\\{}\\{}", self.server, q, self.internal_id),
            None => write!(f, "{}\\*\\{}", self.server, self.internal_id),
        }
    }
}

impl MessageIdentity {
    /// `SERVER\<queue>\<id>`, `SERVER\*\<id>`, `<queue>\<id>` or `<id>` (the local server's).
    pub fn parse(s: &str, local_server: &str) -> Result<MessageIdentity, QueueError> {
        let bad = || QueueError::BadMessageIdentity(s.to_string());
        let parts: Vec<&str> = s.trim().split('\\').collect();
        let (server, queue, id) = match parts.as_slice() {
            [id] => (local_server.to_ascii_uppercase(), "*", *id),
            [queue, id] => (local_server.to_ascii_uppercase(), *queue, *id),
            [server, queue, id] => (server_part(server).ok_or_else(bad)?, *queue, *id),
            _ => return Err(bad()),
        };
        let queue = match queue.trim() {
            "*" => None,
            q => Some(QueueName::parse(q).ok_or_else(bad)?),
        };
        let id = id.trim();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(MessageIdentity {
            server,
            queue,
            internal_id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// One line of Get-Queue.
#[derive(Clone, Debug)]
pub struct QueueInfo {
    pub identity: QueueIdentity,
    pub delivery_type: String,
    /// Active, Ready, Retry or Suspended.
    pub status: QueueStatus,
    pub message_count: i64,
    pub next_hop_domain: String,
    pub next_hop_connector: Option<Uuid>,
    pub last_error: Option<String>,
    pub last_retry_time: Option<OffsetDateTime>,
    pub next_retry_time: Option<OffsetDateTime>,
    /// Resume-Queue -MessagesPerMinute: the pace of a controlled release, until the queue empties.
    pub messages_per_minute: Option<rate::ReleaseRate>,
}

/// Get-Message's Status. Active is not tracked in the database, so a message being sent shows
/// the status it had before the attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageStatus {
    Ready,
    Retry,
    Suspended,
    PendingRemove,
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageStatus::Ready => "Ready",
            MessageStatus::Retry => "Retry",
            MessageStatus::Suspended => "Suspended",
            MessageStatus::PendingRemove => "PendingRemove",
        })
    }
}

/// One delivery_attempt row.
#[derive(Clone, Debug)]
pub struct AttemptInfo {
    pub time: OffsetDateTime,
    pub next_hop: Option<String>,
    pub remote_ip: Option<String>,
    pub reply: String,
    pub tls_version: Option<String>,
}

/// A recipient of a message in one queue.
#[derive(Clone, Debug)]
pub struct RecipientInfo {
    pub ordinal: i32,
    pub address: String,
    /// A mail contact's external address, where the recipient is really sent.
    pub route_address: Option<String>,
    /// Ready or Retry (final recipients are not in any queue).
    pub status: RecipientStatus,
    pub retry_count: i32,
    pub last_error: Option<String>,
    pub last_retry_time: Option<OffsetDateTime>,
    pub next_retry_time: Option<OffsetDateTime>,
    /// Remove-Message was run: Some(true) with NDR, Some(false) without.
    pub remove_with_ndr: Option<bool>,
    pub attempts: Vec<AttemptInfo>,
}

/// One line of Get-Message: a message as it sits in one queue.
#[derive(Clone, Debug)]
pub struct MessageInfo {
    pub identity: MessageIdentity,
    /// message.id: the spool file's name.
    pub id: Uuid,
    pub from_address: String,
    pub status: MessageStatus,
    pub size: i64,
    /// hubgate has no content filter; Exchange shows an empty SCL then.
    pub scl: Option<i32>,
    pub queue: QueueIdentity,
    pub message_source_name: String,
    pub source_ip: String,
    pub subject: Option<String>,
    pub internet_message_id: Option<String>,
    pub date_received: OffsetDateTime,
    pub expiration_time: OffsetDateTime,
    pub retry_count: i32,
    pub last_error: Option<String>,
    pub recipients: Vec<RecipientInfo>,
}

/// What Get-Message lists.
#[derive(Clone, Copy, Debug)]
pub enum MessageFilter<'a> {
    /// Every message of the server.
    All,
    /// The messages in one queue (a queue identity).
    Queue(&'a str),
    /// One message (a message identity); with `*` or no queue, its entry in every queue.
    Message(&'a str),
}

/// The server's name for a name or FQDN.
pub async fn resolve_server(conn: &mut PgConnection, server: &str) -> Result<String, QueueError> {
    let found: Option<(String,)> = sqlx::query_as(
        "SELECT name FROM transport_server WHERE lower(name) = lower($1) OR lower(fqdn) = lower($1)",
    )
    .bind(server.trim())
    .fetch_optional(&mut *conn)
    .await?;
    found
        .map(|(n,)| n)
        .ok_or_else(|| QueueError::NoServer(server.to_string()))
}

pub(crate) async fn server_exists(
    conn: &mut PgConnection,
    server: &str,
) -> Result<bool, QueueError> {
    Ok(resolve_server(conn, server).await.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_identities() {
        let ok = [
            ("HUB1\\3", "HUB1", QueueName::Delivery(3)),
            ("3", "HUB1", QueueName::Delivery(3)),
            ("hub1\\submission", "HUB1", QueueName::Submission),
            ("Unreachable", "HUB1", QueueName::Unreachable),
            ("EDGE2\\Poison", "EDGE2", QueueName::Poison),
            ("edge2.contoso.test\\12", "EDGE2", QueueName::Delivery(12)),
        ];
        for (text, server, queue) in ok {
            let id = QueueIdentity::parse(text, "hub1").unwrap();
            assert_eq!(
                id,
                QueueIdentity {
                    server: server.into(),
                    queue
                }
            );
        }
        assert_eq!(
            QueueIdentity::parse("unreachable", "HUB1")
                .unwrap()
                .to_string(),
            "HUB1\\Unreachable"
        );
        for bad in [
            "",
            "HUB1\\",
            "\\3",
            "HUB1\\0",
            "HUB1\\-3",
            "HUB1\\Shadow",
            "a\\b\\c",
            "x y\\3",
        ] {
            let e = QueueIdentity::parse(bad, "HUB1").unwrap_err();
            assert!(matches!(e, QueueError::BadQueueIdentity(_)), "{bad}");
        }
    }

    #[test]
    fn message_identities() {
        let cases = [
            ("HUB1\\3\\17", "HUB1\\3\\17"),
            ("HUB1\\*\\17", "HUB1\\*\\17"),
            ("17", "HUB1\\*\\17"),
            ("3\\17", "HUB1\\3\\17"),
            ("*\\17", "HUB1\\*\\17"),
            ("hub1\\Unreachable\\5", "HUB1\\Unreachable\\5"),
            ("HUB1\\poison\\5", "HUB1\\Poison\\5"),
        ];
        for (text, shown) in cases {
            assert_eq!(
                MessageIdentity::parse(text, "HUB1").unwrap().to_string(),
                shown
            );
        }
        for bad in [
            "",
            "x",
            "HUB1\\3\\",
            "HUB1\\3\\x",
            "HUB1\\Nope\\3",
            "a\\b\\c\\4",
            "HUB1\\3\\-1",
        ] {
            let e = MessageIdentity::parse(bad, "HUB1").unwrap_err();
            assert!(matches!(e, QueueError::BadMessageIdentity(_)), "{bad}");
        }
        assert_eq!(
            QueueError::MessageNotFound("HUB1\\3\\17".into()).to_string(),
            "The message \"HUB1\\3\\17\" was not found."
        );
    }
}
