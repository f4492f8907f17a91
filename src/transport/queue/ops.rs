//! Administrative queue operations (reference §6.2): what Get-Queue, Get-Message and the Queue
//! Viewer's actions do, written once for the shell and the console.
//!
//! The running gateway keeps ready work in memory, so these operations never move work
//! themselves: they write the rows the queue manager reconciles from (delivery_queue.suspended,
//! message.suspended, message_recipient.remove_with_ndr, queue_id reset to NULL, next_retry_time)
//! and NOTIFY `hubgate_queue` in the same transaction, so the manager hears of a change only
//! once it is committed, and never of one that was rolled back.
//!
//! Every function takes anything that can lend a connection (`&PgPool`, `&mut PgConnection`, a
//! transaction). Inside a caller's transaction the mutation becomes a savepoint, so the shell's
//! `-WhatIf` and a failing pipeline stage still roll everything back.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use sqlx::{Acquire, PgConnection, Postgres};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::org::{AcceptedDomain, SendConnector, TransportServer};
use crate::transport::routing::effective_timeouts;

use super::Spool;

/// The channel the queue manager listens on.
pub const CHANNEL: &str = "hubgate_queue";

/// Recipient statuses that end a recipient's life in the queue.
const FINAL: &str = "('Delivered', 'Failed')";

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
    pub status: String,
    pub message_count: i64,
    pub next_hop_domain: String,
    pub next_hop_connector: Option<Uuid>,
    pub last_error: Option<String>,
    pub last_retry_time: Option<OffsetDateTime>,
    pub next_retry_time: Option<OffsetDateTime>,
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
    pub status: String,
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
async fn resolve_server(conn: &mut PgConnection, server: &str) -> Result<String, QueueError> {
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

async fn server_exists(conn: &mut PgConnection, server: &str) -> Result<bool, QueueError> {
    Ok(resolve_server(conn, server).await.is_ok())
}

#[derive(sqlx::FromRow)]
struct QueueRow {
    id: i64,
    server: String,
    delivery_type: String,
    next_hop_domain: String,
    connector_id: Option<Uuid>,
    suspended: bool,
    status: String,
    last_error: Option<String>,
    last_retry_time: Option<OffsetDateTime>,
    next_retry_time: Option<OffsetDateTime>,
    message_count: i64,
}

const QUEUE_SELECT: &str = "SELECT q.id, q.server, q.delivery_type, q.next_hop_domain, q.connector_id, q.suspended,
        q.status, q.last_error, q.last_retry_time, q.next_retry_time,
        (SELECT count(DISTINCT r.message_id) FROM message_recipient r JOIN message m ON m.id = r.message_id
          WHERE r.queue_id = q.id AND r.status NOT IN ('Delivered', 'Failed') AND NOT m.poison) AS message_count
   FROM delivery_queue q";

impl QueueRow {
    fn info(self) -> QueueInfo {
        let queue = if self.delivery_type == "Unreachable" {
            QueueName::Unreachable
        } else {
            QueueName::Delivery(self.id)
        };
        QueueInfo {
            identity: QueueIdentity {
                server: self.server,
                queue,
            },
            delivery_type: self.delivery_type,
            status: if self.suspended {
                "Suspended".into()
            } else {
                self.status
            },
            message_count: self.message_count,
            next_hop_domain: self.next_hop_domain,
            next_hop_connector: self.connector_id,
            last_error: self.last_error,
            last_retry_time: self.last_retry_time,
            next_retry_time: self.next_retry_time,
        }
    }
}

/// The delivery_queue row an identity names, if the queue is a row.
async fn queue_row(
    conn: &mut PgConnection,
    id: &QueueIdentity,
) -> Result<Option<QueueRow>, QueueError> {
    let row = match id.queue {
        QueueName::Delivery(n) => {
            sqlx::query_as::<_, QueueRow>(&format!(
                "{QUEUE_SELECT} WHERE q.id = $1 AND lower(q.server) = lower($2)"
            ))
            .bind(n)
            .bind(&id.server)
            .fetch_optional(&mut *conn)
            .await?
        }
        QueueName::Unreachable => {
            sqlx::query_as::<_, QueueRow>(&format!(
            "{QUEUE_SELECT} WHERE q.delivery_type = 'Unreachable' AND lower(q.server) = lower($1)
                 ORDER BY q.id LIMIT 1"
        ))
            .bind(&id.server)
            .fetch_optional(&mut *conn)
            .await?
        }
        QueueName::Submission | QueueName::Poison => None,
    };
    Ok(row)
}

/// Exchange always shows Unreachable; hubgate creates its row only when it first needs it.
fn empty_unreachable(server: &str) -> QueueInfo {
    QueueInfo {
        identity: QueueIdentity {
            server: server.to_string(),
            queue: QueueName::Unreachable,
        },
        delivery_type: "Unreachable".into(),
        status: "Ready".into(),
        message_count: 0,
        next_hop_domain: "Unreachable Domain".into(),
        next_hop_connector: None,
        last_error: None,
        last_retry_time: None,
        next_retry_time: None,
    }
}

/// Submission and Poison are not rows: Submission holds the recipients not yet routed, Poison
/// the messages marked poison. Exchange shows both with DeliveryType Undefined.
async fn virtual_queue(
    conn: &mut PgConnection,
    server: &str,
    queue: QueueName,
) -> Result<QueueInfo, QueueError> {
    let (count,): (i64,) = if queue == QueueName::Poison {
        sqlx::query_as("SELECT count(*) FROM message WHERE lower(server) = lower($1) AND poison")
            .bind(server)
            .fetch_one(&mut *conn)
            .await?
    } else {
        sqlx::query_as(&format!(
            "SELECT count(DISTINCT m.id) FROM message m JOIN message_recipient r ON r.message_id = m.id
              WHERE lower(m.server) = lower($1) AND NOT m.poison AND r.queue_id IS NULL
                AND r.status NOT IN {FINAL}"
        ))
        .bind(server)
        .fetch_one(&mut *conn)
        .await?
    };
    Ok(QueueInfo {
        identity: QueueIdentity {
            server: server.to_string(),
            queue,
        },
        delivery_type: "Undefined".into(),
        status: "Ready".into(),
        message_count: count,
        next_hop_domain: if queue == QueueName::Poison {
            "Poison Message".into()
        } else {
            "Submission".into()
        },
        next_hop_connector: None,
        last_error: None,
        last_retry_time: None,
        next_retry_time: None,
    })
}

/// Get-Queue -Server: the numbered delivery queues in creation order, then Submission,
/// Unreachable and Poison, as Exchange lists them.
pub async fn list_queues<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
) -> Result<Vec<QueueInfo>, QueueError> {
    let mut conn = db.acquire().await?;
    let server = resolve_server(&mut conn, server).await?;
    let rows: Vec<QueueRow> = sqlx::query_as(&format!(
        "{QUEUE_SELECT} WHERE lower(q.server) = lower($1) ORDER BY q.id"
    ))
    .bind(&server)
    .fetch_all(&mut *conn)
    .await?;
    let (unreachable, numbered): (Vec<QueueRow>, Vec<QueueRow>) = rows
        .into_iter()
        .partition(|r| r.delivery_type == "Unreachable");
    let mut out: Vec<QueueInfo> = numbered.into_iter().map(QueueRow::info).collect();
    out.push(virtual_queue(&mut conn, &server, QueueName::Submission).await?);
    out.push(match unreachable.into_iter().next() {
        Some(r) => r.info(),
        None => empty_unreachable(&server),
    });
    out.push(virtual_queue(&mut conn, &server, QueueName::Poison).await?);
    Ok(out)
}

/// Get-Queue -Identity.
pub async fn get_queue<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    identity: &str,
) -> Result<QueueInfo, QueueError> {
    let mut conn = db.acquire().await?;
    let local = resolve_server(&mut conn, server).await?;
    let id = QueueIdentity::parse(identity, &local)?;
    find_queue(&mut conn, &id).await
}

async fn find_queue(conn: &mut PgConnection, id: &QueueIdentity) -> Result<QueueInfo, QueueError> {
    let not_found = || QueueError::QueueNotFound(id.to_string());
    if let Some(row) = queue_row(conn, id).await? {
        return Ok(row.info());
    }
    let server = resolve_server(conn, &id.server)
        .await
        .map_err(|_| not_found())?;
    match id.queue {
        QueueName::Delivery(_) => Err(not_found()),
        QueueName::Unreachable => Ok(empty_unreachable(&server)),
        q => virtual_queue(conn, &server, q).await,
    }
}

#[derive(sqlx::FromRow)]
struct EntryRow {
    id: Uuid,
    internal_id: i64,
    server: String,
    from_address: String,
    size: i64,
    source_ip: String,
    receive_connector: String,
    subject: Option<String>,
    internet_message_id: Option<String>,
    received_at: OffsetDateTime,
    suspended: bool,
    poison: bool,
    ordinal: i32,
    address: String,
    route_address: Option<String>,
    status: String,
    queue_id: Option<i64>,
    retry_count: i32,
    last_error: Option<String>,
    last_retry_time: Option<OffsetDateTime>,
    next_retry_time: Option<OffsetDateTime>,
    remove_with_ndr: Option<bool>,
    queue_server: Option<String>,
    delivery_type: Option<String>,
    connector_id: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    message_id: Uuid,
    /// The recipient's ordinal in message_recipient.
    ordinal: i32,
    attempted_at: OffsetDateTime,
    next_hop: Option<String>,
    remote_ip: Option<String>,
    reply: String,
    tls_version: Option<String>,
}

/// Which recipients an entry query selects, beyond "not final".
enum Scope {
    Server(String),
    /// A delivery_queue row.
    QueueRow(i64),
    Submission(String),
    Poison(String),
    Message(String, i64),
}

/// The message entries in scope, one per (message, queue), in message order. `details` adds the
/// attempt history and the expiration time, which only listings need.
async fn entries(
    conn: &mut PgConnection,
    scope: &Scope,
    details: bool,
) -> Result<Vec<MessageInfo>, QueueError> {
    let (cond, server, number) = match scope {
        Scope::Server(s) => ("lower(m.server) = lower($1)", Some(s.as_str()), None),
        Scope::QueueRow(n) => ("r.queue_id = $2 AND NOT m.poison", None, Some(*n)),
        Scope::Submission(s) => (
            "lower(m.server) = lower($1) AND r.queue_id IS NULL AND NOT m.poison",
            Some(s.as_str()),
            None,
        ),
        Scope::Poison(s) => (
            "lower(m.server) = lower($1) AND m.poison",
            Some(s.as_str()),
            None,
        ),
        Scope::Message(s, id) => (
            "lower(m.server) = lower($1) AND m.internal_id = $2",
            Some(s.as_str()),
            Some(*id),
        ),
    };
    let rows: Vec<EntryRow> = sqlx::query_as(&format!(
        "SELECT m.id, m.internal_id, m.server, m.from_address, m.size, m.source_ip, m.receive_connector,
                m.subject, m.internet_message_id, m.received_at, m.suspended, m.poison,
                r.ordinal, r.address, r.route_address, r.status, r.queue_id, r.retry_count, r.last_error,
                r.last_retry_time, r.next_retry_time, r.remove_with_ndr,
                q.server AS queue_server, q.delivery_type, q.connector_id
           FROM message m
           JOIN message_recipient r ON r.message_id = m.id
           LEFT JOIN delivery_queue q ON q.id = r.queue_id
          WHERE r.status NOT IN {FINAL} AND {cond}
          ORDER BY m.internal_id, r.queue_id NULLS FIRST, r.ordinal"
    ))
    .bind(server)
    .bind(number)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(vec![]);
    }

    let mut attempts: HashMap<(Uuid, i32), Vec<AttemptInfo>> = HashMap::new();
    let mut org = None;
    if details {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let history: Vec<AttemptRow> = sqlx::query_as(
            "SELECT message_id, ordinal, attempted_at, next_hop, remote_ip, reply, tls_version
               FROM delivery_attempt WHERE message_id = ANY($1) ORDER BY attempted_at, id",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        for a in history {
            attempts
                .entry((a.message_id, a.ordinal))
                .or_default()
                .push(AttemptInfo {
                    time: a.attempted_at,
                    next_hop: a.next_hop,
                    remote_ip: a.remote_ip,
                    reply: a.reply,
                    tls_version: a.tls_version,
                });
        }
        org = Some((
            TransportServer::load_all(conn).await?,
            AcceptedDomain::load_all_in(conn).await?,
            SendConnector::load_all_in(conn).await?,
        ));
    }

    let mut out: Vec<MessageInfo> = Vec::new();
    let mut connectors_of: Vec<Option<Uuid>> = Vec::new();
    for r in rows {
        let queue = if r.poison {
            QueueName::Poison
        } else {
            match (r.queue_id, r.delivery_type.as_deref()) {
                (None, _) => QueueName::Submission,
                (Some(_), Some("Unreachable")) => QueueName::Unreachable,
                (Some(n), _) => QueueName::Delivery(n),
            }
        };
        let recipient = RecipientInfo {
            ordinal: r.ordinal,
            address: r.address,
            route_address: r.route_address,
            status: r.status,
            retry_count: r.retry_count,
            last_error: r.last_error,
            last_retry_time: r.last_retry_time,
            next_retry_time: r.next_retry_time,
            remove_with_ndr: r.remove_with_ndr,
            attempts: attempts.remove(&(r.id, r.ordinal)).unwrap_or_default(),
        };
        // Rows come ordered by message then queue, so an entry's recipients are adjacent.
        if let Some(last) = out.last_mut()
            && last.id == r.id
            && last.queue.queue == queue
        {
            last.recipients.push(recipient);
            continue;
        }
        let queue_server = r.queue_server.unwrap_or_else(|| r.server.clone());
        out.push(MessageInfo {
            identity: MessageIdentity {
                server: queue_server.clone(),
                queue: Some(queue),
                internal_id: r.internal_id,
            },
            id: r.id,
            from_address: r.from_address,
            status: if r.poison || r.suspended {
                MessageStatus::Suspended
            } else {
                MessageStatus::Ready
            },
            size: r.size,
            scl: None,
            queue: QueueIdentity {
                server: queue_server,
                queue,
            },
            message_source_name: r.receive_connector,
            source_ip: r.source_ip,
            subject: r.subject,
            internet_message_id: r.internet_message_id,
            date_received: r.received_at,
            expiration_time: r.received_at,
            retry_count: 0,
            last_error: None,
            recipients: vec![recipient],
        });
        connectors_of.push(r.connector_id);
    }

    for (e, connector) in out.iter_mut().zip(connectors_of) {
        summarise(e);
        if let Some((servers, domains, connectors)) = &org {
            e.expiration_time = expiration(e, servers, domains, connectors, connector);
        }
    }
    Ok(out)
}

/// The entry's status, retry count and last error, from its recipients.
fn summarise(e: &mut MessageInfo) {
    if e.recipients.iter().any(|r| r.remove_with_ndr.is_some()) {
        // The administrator's latest word on the message wins over its suspension.
        e.status = MessageStatus::PendingRemove;
    } else if e.status != MessageStatus::Suspended
        && e.recipients.iter().any(|r| r.status == "Retry")
    {
        e.status = MessageStatus::Retry;
    }
    e.retry_count = e
        .recipients
        .iter()
        .map(|r| r.retry_count)
        .max()
        .unwrap_or(0);
    e.last_error = e
        .recipients
        .iter()
        .filter(|r| r.last_error.is_some())
        .max_by_key(|r| r.last_retry_time)
        .and_then(|r| r.last_error.clone());
}

/// DateReceived plus the earliest MessageExpirationTimeout among the entry's recipients: the
/// accepted domain's, the queue's connector's, else the server's (routing::effective_timeouts).
fn expiration(
    e: &MessageInfo,
    servers: &[TransportServer],
    domains: &[AcceptedDomain],
    connectors: &[SendConnector],
    connector: Option<Uuid>,
) -> OffsetDateTime {
    let connector = connector.and_then(|id| connectors.iter().find(|c| c.id == id));
    let server = servers
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(&e.queue.server));
    let timeout = e
        .recipients
        .iter()
        .map(|r| {
            let address = r.route_address.as_deref().unwrap_or(&r.address);
            let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            match server {
                Some(s) => {
                    effective_timeouts(s, domains, connector, domain).message_expiration_timeout
                }
                // The schema's default, for a message whose server row is gone.
                None => std::time::Duration::from_secs(172_800),
            }
        })
        .min()
        .unwrap_or_default();
    e.date_received + timeout
}

async fn message_entries(
    conn: &mut PgConnection,
    id: &MessageIdentity,
    details: bool,
) -> Result<Vec<MessageInfo>, QueueError> {
    let all = entries(
        conn,
        &Scope::Message(id.server.clone(), id.internal_id),
        details,
    )
    .await?;
    let hits: Vec<MessageInfo> = all
        .into_iter()
        .filter(|e| id.queue.is_none_or(|q| e.queue.queue == q))
        .collect();
    if hits.is_empty() {
        return Err(QueueError::MessageNotFound(id.to_string()));
    }
    Ok(hits)
}

/// Get-Message: the entries the filter selects (an unknown queue or message is an error).
pub async fn list_messages<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    filter: MessageFilter<'_>,
) -> Result<Vec<MessageInfo>, QueueError> {
    let mut conn = db.acquire().await?;
    let local = resolve_server(&mut conn, server).await?;
    match filter {
        MessageFilter::All => entries(&mut conn, &Scope::Server(local), true).await,
        MessageFilter::Queue(q) => {
            let id = QueueIdentity::parse(q, &local)?;
            let queue = find_queue(&mut conn, &id).await?;
            let scope = match (id.queue, queue_row(&mut conn, &id).await?) {
                (_, Some(row)) => Scope::QueueRow(row.id),
                (QueueName::Poison, None) => Scope::Poison(queue.identity.server),
                (QueueName::Submission, None) => Scope::Submission(queue.identity.server),
                // Unreachable without a row holds nothing yet.
                _ => return Ok(vec![]),
            };
            entries(&mut conn, &scope, true).await
        }
        MessageFilter::Message(m) => {
            let id = MessageIdentity::parse(m, &local)?;
            message_entries(&mut conn, &id, true).await
        }
    }
}

async fn notify(conn: &mut PgConnection, what: &str) -> Result<(), QueueError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(what)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A queue that is a delivery_queue row, for the queue actions; Submission and Poison are not.
async fn actionable_queue(
    conn: &mut PgConnection,
    local: &str,
    identity: &str,
    action: &'static str,
) -> Result<(QueueIdentity, Option<QueueRow>), QueueError> {
    let id = QueueIdentity::parse(identity, local)?;
    let why = match id.queue {
        QueueName::Submission => Some(
            "the Submission queue hands every message to routing at once; use Suspend-Message or Remove-Message on its messages.",
        ),
        QueueName::Poison => Some(
            "messages in the Poison queue stay suspended until Resume-Message releases them or Remove-Message deletes them.",
        ),
        _ => None,
    };
    if let Some(why) = why {
        if !server_exists(conn, &id.server).await? {
            return Err(QueueError::QueueNotFound(id.to_string()));
        }
        return Err(QueueError::NotSupported {
            action,
            queue: id.to_string(),
            why,
        });
    }
    let row = queue_row(conn, &id).await?;
    match (&row, id.queue) {
        (None, QueueName::Delivery(_)) => Err(QueueError::QueueNotFound(id.to_string())),
        (None, _) if !server_exists(conn, &id.server).await? => {
            Err(QueueError::QueueNotFound(id.to_string()))
        }
        _ => Ok((id, row)),
    }
}

/// Suspend-Queue: messages stop leaving; the queue still takes new ones.
pub async fn suspend_queue<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    identity: &str,
) -> Result<QueueIdentity, QueueError> {
    let mut tx = db.begin().await?;
    let local = resolve_server(&mut tx, server).await?;
    let (id, row) = actionable_queue(&mut tx, &local, identity, "Suspend-Queue").await?;
    match row {
        Some(row) => {
            sqlx::query("UPDATE delivery_queue SET suspended = true WHERE id = $1")
                .bind(row.id)
                .execute(&mut *tx)
                .await?;
        }
        // Unreachable has no row until the manager first needs one; the suspension must
        // outlive that, so the row is made here with the key the manager uses.
        None => {
            // The manager keys rows by the server's name exactly as transport_server spells it.
            let name = resolve_server(&mut tx, &id.server).await?;
            sqlx::query(
                "INSERT INTO delivery_queue (server, delivery_type, next_hop_domain, suspended)
                 VALUES ($1, 'Unreachable', 'Unreachable Domain', true)
                 ON CONFLICT (server, delivery_type, next_hop_domain, connector_id)
                 DO UPDATE SET suspended = true",
            )
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        }
    }
    notify(&mut tx, &format!("Suspend-Queue {id}")).await?;
    tx.commit().await?;
    Ok(id)
}

/// Resume-Queue.
pub async fn resume_queue<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    identity: &str,
) -> Result<QueueIdentity, QueueError> {
    let mut tx = db.begin().await?;
    let local = resolve_server(&mut tx, server).await?;
    let (id, row) = actionable_queue(&mut tx, &local, identity, "Resume-Queue").await?;
    if let Some(row) = row {
        sqlx::query("UPDATE delivery_queue SET suspended = false WHERE id = $1")
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
    }
    notify(&mut tx, &format!("Resume-Queue {id}")).await?;
    tx.commit().await?;
    Ok(id)
}

/// Retry-Queue: connect now, which Exchange allows only for a queue in Retry status; with
/// `resubmit` (Retry-Queue -Resubmit $true), its messages go back through categorization and
/// routing, e.g. out of Unreachable after a send connector was added.
pub async fn retry_queue<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    identity: &str,
    resubmit: bool,
) -> Result<QueueIdentity, QueueError> {
    let mut tx = db.begin().await?;
    let local = resolve_server(&mut tx, server).await?;
    let (id, row) = actionable_queue(&mut tx, &local, identity, "Retry-Queue").await?;
    match (row, resubmit) {
        (Some(row), true) => {
            // Recipients pending removal stay for the manager to finalise; poison messages
            // leave the Poison queue only through Resume-Message.
            sqlx::query(&format!(
                "UPDATE message_recipient r SET queue_id = NULL, status = 'Ready', next_retry_time = NULL
                   FROM message m
                  WHERE m.id = r.message_id AND r.queue_id = $1 AND r.status NOT IN {FINAL}
                    AND r.remove_with_ndr IS NULL AND NOT m.poison"
            ))
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        }
        (None, true) => {}
        (Some(row), false) => {
            // The status test is part of the update, so a queue the manager has just moved out
            // of Retry is not touched.
            let n = sqlx::query(
                "UPDATE delivery_queue SET next_retry_time = now()
                  WHERE id = $1 AND status = 'Retry' AND NOT suspended",
            )
            .bind(row.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(QueueError::NotInRetry(id.to_string()));
            }
            sqlx::query(
                "UPDATE message_recipient SET next_retry_time = now()
                  WHERE queue_id = $1 AND status = 'Retry'",
            )
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        }
        (None, false) => return Err(QueueError::NotInRetry(id.to_string())),
    }
    let verb = if resubmit {
        "Retry-Queue -Resubmit"
    } else {
        "Retry-Queue"
    };
    notify(&mut tx, &format!("{verb} {id}")).await?;
    tx.commit().await?;
    Ok(id)
}

/// The message an identity names, with its entries (at least one).
async fn named_message(
    conn: &mut PgConnection,
    server: &str,
    identity: &str,
) -> Result<(MessageIdentity, Vec<MessageInfo>), QueueError> {
    let local = resolve_server(conn, server).await?;
    let id = MessageIdentity::parse(identity, &local)?;
    let entries = message_entries(conn, &id, false).await?;
    Ok((id, entries))
}

/// Suspend-Message. hubgate suspends a message as a whole, in every queue it is in.
pub async fn suspend_message<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    identity: &str,
) -> Result<MessageIdentity, QueueError> {
    let mut tx = db.begin().await?;
    let (id, entries) = named_message(&mut tx, server, identity).await?;
    sqlx::query("UPDATE message SET suspended = true WHERE id = $1")
        .bind(entries[0].id)
        .execute(&mut *tx)
        .await?;
    notify(&mut tx, &format!("Suspend-Message {id}")).await?;
    tx.commit().await?;
    Ok(id)
}

/// Resume-Message. A poison message is released as Exchange releases it: back to Submission,
/// with its crash count cleared.
pub async fn resume_message<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    identity: &str,
) -> Result<MessageIdentity, QueueError> {
    let mut tx = db.begin().await?;
    let (id, entries) = named_message(&mut tx, server, identity).await?;
    let message = entries[0].id;
    let (poison,): (bool,) = sqlx::query_as("SELECT poison FROM message WHERE id = $1 FOR UPDATE")
        .bind(message)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE message SET suspended = false, poison = false,
                crash_count = CASE WHEN poison THEN 0 ELSE crash_count END
          WHERE id = $1",
    )
    .bind(message)
    .execute(&mut *tx)
    .await?;
    if poison {
        sqlx::query(&format!(
            "UPDATE message_recipient SET queue_id = NULL, status = 'Ready', next_retry_time = NULL
              WHERE message_id = $1 AND status NOT IN {FINAL} AND remove_with_ndr IS NULL"
        ))
        .bind(message)
        .execute(&mut *tx)
        .await?;
    }
    notify(&mut tx, &format!("Resume-Message {id}")).await?;
    tx.commit().await?;
    Ok(id)
}

/// Remove-Message: marks the message's recipients (in the named queue, else in every queue) for
/// the manager to finalise, with an NDR (`550 4.3.2 QUEUE.Admin; message deleted by
/// administrative action`) or silently. The manager sends no NDR for an NDR.
pub async fn remove_message<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    identity: &str,
    with_ndr: bool,
) -> Result<MessageIdentity, QueueError> {
    let mut tx = db.begin().await?;
    let (id, entries) = named_message(&mut tx, server, identity).await?;
    let ordinals: Vec<i32> = entries
        .iter()
        .flat_map(|e| e.recipients.iter().map(|r| r.ordinal))
        .collect();
    sqlx::query(&format!(
        "UPDATE message_recipient SET remove_with_ndr = $3
          WHERE message_id = $1 AND ordinal = ANY($2) AND status NOT IN {FINAL}"
    ))
    .bind(entries[0].id)
    .bind(&ordinals)
    .bind(with_ndr)
    .execute(&mut *tx)
    .await?;
    let how = if with_ndr { "with NDR" } else { "without NDR" };
    notify(&mut tx, &format!("Remove-Message {id} {how}")).await?;
    tx.commit().await?;
    Ok(id)
}

/// The spooled message (headers and body, CRLF, exactly as it will be sent). Exchange exports
/// only suspended messages, which also guarantees the body is not delivered and unlinked while
/// it is read; a poison message is suspended by nature.
pub async fn read_message<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    data_dir: &Path,
    identity: &str,
) -> Result<(MessageIdentity, Vec<u8>), QueueError> {
    let mut conn = db.acquire().await?;
    let (id, entries) = named_message(&mut conn, server, identity).await?;
    let message = entries[0].id;
    let (suspended,): (bool,) =
        sqlx::query_as("SELECT suspended OR poison FROM message WHERE id = $1")
            .bind(message)
            .fetch_one(&mut *conn)
            .await?;
    if !suspended {
        return Err(QueueError::NotSuspended(id.to_string()));
    }
    let data_dir = data_dir.to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || Spool::open(&data_dir)?.read(message))
        .await
        .map_err(std::io::Error::other)??;
    Ok((id, bytes))
}

/// Export-Message: writes the spooled message to `path` as an .eml file; returns its size.
pub async fn export_message<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    data_dir: &Path,
    identity: &str,
    path: &Path,
) -> Result<u64, QueueError> {
    let (_, bytes) = read_message(db, server, data_dir, identity).await?;
    let n = bytes.len() as u64;
    tokio::fs::write(path, bytes).await?;
    Ok(n)
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
