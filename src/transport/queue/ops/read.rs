//! The read side: Get-Queue, Get-Message and Export-Message, straight from the database.

use std::collections::HashMap;
use std::path::Path;

use sqlx::{Acquire, PgConnection, Postgres};
use time::OffsetDateTime;
use uuid::Uuid;

use super::page::Value as PageValue;
use super::scope::{Scope, queue_scope};
use super::*;
use crate::org::{AcceptedDomain, SendConnector, TransportServer};
use crate::transport::queue::{QueueStatus, RecipientStatus, Spool};
use crate::transport::routing::effective_timeouts;

#[derive(sqlx::FromRow)]
pub(crate) struct QueueRow {
    pub(crate) id: i64,
    pub(crate) server: String,
    pub(crate) delivery_type: String,
    pub(crate) next_hop_domain: String,
    pub(crate) connector_id: Option<Uuid>,
    pub(crate) suspended: bool,
    pub(crate) status: String,
    pub(crate) last_error: Option<String>,
    pub(crate) last_retry_time: Option<OffsetDateTime>,
    pub(crate) next_retry_time: Option<OffsetDateTime>,
    pub(crate) message_count: i64,
    pub(crate) release_rate: Option<i32>,
}

const QUEUE_SELECT: &str = "SELECT q.id, q.server, q.delivery_type, q.next_hop_domain, q.connector_id, q.suspended,
        q.status, q.last_error, q.last_retry_time, q.next_retry_time, q.release_rate,
        (SELECT count(DISTINCT r.message_id) FROM message_recipient r JOIN message m ON m.id = r.message_id
          WHERE r.queue_id = q.id AND r.status NOT IN ('Delivered', 'Failed') AND NOT m.poison) AS message_count
   FROM delivery_queue q";

impl QueueRow {
    pub(super) fn info(self) -> QueueInfo {
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
                QueueStatus::Suspended
            } else {
                // The schema's CHECK allows nothing else.
                QueueStatus::parse(&self.status).unwrap_or(QueueStatus::Ready)
            },
            message_count: self.message_count,
            next_hop_domain: self.next_hop_domain,
            next_hop_connector: self.connector_id,
            last_error: self.last_error,
            last_retry_time: self.last_retry_time,
            next_retry_time: self.next_retry_time,
            messages_per_minute: super::rate::ReleaseRate::from_stored(self.release_rate),
        }
    }
}

/// The delivery_queue row an identity names, if the queue is a row.
pub(crate) async fn queue_row(
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
pub(super) fn empty_unreachable(server: &str) -> QueueInfo {
    QueueInfo {
        identity: QueueIdentity {
            server: server.to_string(),
            queue: QueueName::Unreachable,
        },
        delivery_type: "Unreachable".into(),
        status: QueueStatus::Ready,
        message_count: 0,
        next_hop_domain: "Unreachable Domain".into(),
        next_hop_connector: None,
        last_error: None,
        last_retry_time: None,
        next_retry_time: None,
        messages_per_minute: None,
    }
}

/// Submission and Poison are not rows: Submission holds the recipients not yet routed, Poison
/// the messages marked poison. Exchange shows both with DeliveryType Undefined.
pub(super) async fn virtual_queue(
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
        status: QueueStatus::Ready,
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
        messages_per_minute: None,
    })
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

pub(crate) async fn find_queue(
    conn: &mut PgConnection,
    id: &QueueIdentity,
) -> Result<QueueInfo, QueueError> {
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

/// The message entries in scope, one per (message, queue), in message order. `details` adds the
/// attempt history and the expiration time, which only listings need.
async fn entries(
    conn: &mut PgConnection,
    scope: &Scope,
    details: bool,
) -> Result<Vec<MessageInfo>, QueueError> {
    Ok(entries_page(conn, scope, details, &Page::default())
        .await?
        .0)
}

/// `entries`, one page of them: the entries of at most `page.limit` messages, in the page's
/// order, and whether more messages follow.
pub(super) async fn entries_page(
    conn: &mut PgConnection,
    scope: &Scope,
    details: bool,
    page: &Page,
) -> Result<(Vec<MessageInfo>, bool), QueueError> {
    let (cond, server, numbers) = scope.condition();
    let paged = page.sql(4);
    let (cond, pre_values) = match &page.prefilter {
        Some(pre) => {
            let (sql, values) = pre.sql(4 + paged.values.len());
            (format!("{cond} AND {sql}"), values)
        }
        None => (cond.to_string(), vec![]),
    };
    // The page is chosen among messages (one more than asked, to tell whether more exist), so a
    // message is never split across pages; its rows then come in the page's order.
    let (page_cte, in_page) = if page.limit.is_some() || paged.after.is_some() || page.offset > 0 {
        (
            format!(
                "WITH page AS (
                   SELECT m.id FROM message m
                    WHERE EXISTS (SELECT 1 FROM message_recipient r
                                   WHERE r.message_id = m.id AND r.status NOT IN {FINAL} AND {cond})
                      AND {after}
                    ORDER BY {order}
                    LIMIT $3 OFFSET {offset})",
                after = paged.after.as_deref().unwrap_or("true"),
                order = paged.order_by,
                offset = page.offset,
            ),
            " AND m.id IN (SELECT id FROM page)",
        )
    } else {
        (String::new(), "")
    };
    let sql = format!(
        "{page_cte}
         SELECT m.id, m.internal_id, m.server, m.from_address, m.size, m.source_ip, m.receive_connector,
                m.subject, m.internet_message_id, m.received_at, m.suspended, m.poison,
                r.ordinal, r.address, r.route_address, r.status, r.queue_id, r.retry_count, r.last_error,
                r.last_retry_time, r.next_retry_time, r.remove_with_ndr,
                q.server AS queue_server, q.delivery_type, q.connector_id
           FROM message m
           JOIN message_recipient r ON r.message_id = m.id
           LEFT JOIN delivery_queue q ON q.id = r.queue_id
          WHERE r.status NOT IN {FINAL} AND {cond}{in_page}
          ORDER BY {order}, r.queue_id NULLS FIRST, r.ordinal",
        order = paged.order_by,
    );
    let limit = page.limit.map(|n| i64::from(n) + 1);
    let mut query = sqlx::query_as::<_, EntryRow>(&sql)
        .bind(server)
        .bind(numbers)
        .bind(limit);
    for v in paged.values.into_iter().chain(pre_values) {
        query = match v {
            PageValue::Int(n) => query.bind(n),
            PageValue::Text(t) => query.bind(t),
            PageValue::Time(t) => query.bind(t),
        };
    }
    let mut rows: Vec<EntryRow> = query.fetch_all(&mut *conn).await?;
    let mut more = false;
    if let Some(n) = page.limit {
        // The rows of the one message past the limit only say that more exist.
        let mut seen = 0u32;
        let mut last = None;
        let cut = rows.iter().position(|r| {
            if last != Some(r.id) {
                last = Some(r.id);
                seen += 1;
            }
            seen > n
        });
        if let Some(at) = cut {
            rows.truncate(at);
            more = true;
        }
    }
    if rows.is_empty() {
        return Ok((vec![], more));
    }

    let mut attempts: HashMap<(Uuid, i32), Vec<AttemptInfo>> = HashMap::new();
    let mut org = None;
    if details {
        if !page.skip_attempts {
            let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            attempts = load_attempts(conn, &ids).await?;
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
            status: stored_status(&r.status)?,
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
    Ok((out, more))
}

/// The delivery attempts of these messages, per (message, recipient ordinal), oldest first.
pub(super) async fn load_attempts(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<(Uuid, i32), Vec<AttemptInfo>>, QueueError> {
    let history: Vec<AttemptRow> = sqlx::query_as(
        "SELECT message_id, ordinal, attempted_at, next_hop, remote_ip, reply, tls_version
           FROM delivery_attempt WHERE message_id = ANY($1) ORDER BY attempted_at, id",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut attempts: HashMap<(Uuid, i32), Vec<AttemptInfo>> = HashMap::new();
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
    Ok(attempts)
}

/// Adds the attempt history to entries listed with `Page::skip_attempts` (a page cut from a
/// long filtered listing reads the history of its own messages only).
pub(super) async fn attach_attempts(
    conn: &mut PgConnection,
    entries: &mut [MessageInfo],
) -> Result<(), QueueError> {
    let ids: Vec<Uuid> = entries.iter().map(|e| e.id).collect();
    let mut attempts = load_attempts(conn, &ids).await?;
    for e in entries.iter_mut() {
        for r in &mut e.recipients {
            r.attempts = attempts.remove(&(e.id, r.ordinal)).unwrap_or_default();
        }
    }
    Ok(())
}

/// A recipient's status as stored (the schema's CHECK allows only known ones).
pub(super) fn stored_status(s: &str) -> Result<RecipientStatus, QueueError> {
    RecipientStatus::parse(s).ok_or_else(|| {
        QueueError::Failed(format!("message_recipient holds an unknown status \"{s}\""))
    })
}

/// The entry's status, retry count and last error, from its recipients.
fn summarise(e: &mut MessageInfo) {
    if e.recipients.iter().any(|r| r.remove_with_ndr.is_some()) {
        // The administrator's latest word on the message wins over its suspension.
        e.status = MessageStatus::PendingRemove;
    } else if e.status != MessageStatus::Suspended
        && e.recipients
            .iter()
            .any(|r| r.status == RecipientStatus::Retry)
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

pub(crate) async fn message_entries(
    conn: &mut PgConnection,
    id: &MessageIdentity,
    details: bool,
) -> Result<Vec<MessageInfo>, QueueError> {
    let all = entries(
        conn,
        &Scope::Messages(id.server.clone(), vec![id.internal_id]),
        details,
    )
    .await?;
    named_entries(id, all)
}

/// The entries of `all` that identity `id` names (its queue, or every queue for `*`).
fn named_entries(
    id: &MessageIdentity,
    all: impl IntoIterator<Item = MessageInfo>,
) -> Result<Vec<MessageInfo>, QueueError> {
    let hits: Vec<MessageInfo> = all
        .into_iter()
        .filter(|e| e.identity.internal_id == id.internal_id)
        .filter(|e| id.queue.is_none_or(|q| e.queue.queue == q))
        .collect();
    if hits.is_empty() {
        return Err(QueueError::MessageNotFound(id.to_string()));
    }
    Ok(hits)
}

/// `message_entries` for each of many identities (a filtered action's targets) in one query per
/// server; the first identity that names nothing is the error.
pub(crate) async fn message_entries_many(
    conn: &mut PgConnection,
    ids: &[MessageIdentity],
) -> Result<Vec<Vec<MessageInfo>>, QueueError> {
    let mut by_server: HashMap<String, Vec<i64>> = HashMap::new();
    for id in ids {
        by_server
            .entry(id.server.to_lowercase())
            .or_default()
            .push(id.internal_id);
    }
    let mut found: HashMap<(String, i64), Vec<MessageInfo>> = HashMap::new();
    for (server, numbers) in by_server {
        for e in entries(conn, &Scope::Messages(server.clone(), numbers), false).await? {
            found
                .entry((server.clone(), e.identity.internal_id))
                .or_default()
                .push(e);
        }
    }
    ids.iter()
        .map(|id| {
            let all = found
                .get(&(id.server.to_lowercase(), id.internal_id))
                .cloned()
                .unwrap_or_default();
            named_entries(id, all)
        })
        .collect()
}

/// Get-Message: the entries the filter selects (an unknown queue or message is an error).
pub async fn list_messages<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    filter: MessageFilter<'_>,
) -> Result<Vec<MessageInfo>, QueueError> {
    Ok(list_messages_page(db, server, filter, &Page::default())
        .await?
        .0)
}

/// Get-Message with -ResultSize, -SortOrder and a bookmark: one page of the entries the filter
/// selects, and whether more messages follow it. A single message (`MessageFilter::Message`)
/// is not paged.
pub async fn list_messages_page<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    filter: MessageFilter<'_>,
    page: &Page,
) -> Result<(Vec<MessageInfo>, bool), QueueError> {
    let mut conn = db.acquire().await?;
    let local = resolve_server(&mut conn, server).await?;
    match filter {
        MessageFilter::All => entries_page(&mut conn, &Scope::Server(local), true, page).await,
        MessageFilter::Queue(q) => match queue_scope(&mut conn, &local, q).await? {
            Some(scope) => entries_page(&mut conn, &scope, true, page).await,
            None => Ok((vec![], false)),
        },
        MessageFilter::Message(m) => {
            let id = MessageIdentity::parse(m, &local)?;
            Ok((message_entries(&mut conn, &id, true).await?, false))
        }
    }
}

/// The message an identity names, with its entries (at least one).
pub(crate) async fn named_message(
    conn: &mut PgConnection,
    server: &str,
    identity: &str,
) -> Result<(MessageIdentity, Vec<MessageInfo>), QueueError> {
    let local = resolve_server(conn, server).await?;
    let id = MessageIdentity::parse(identity, &local)?;
    let entries = message_entries(conn, &id, false).await?;
    Ok((id, entries))
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
    let (suspended, in_row): (bool, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT suspended OR poison, (SELECT body FROM message_body b WHERE b.id = m.id)
             FROM message m WHERE id = $1",
    )
    .bind(message)
    .fetch_one(&mut *conn)
    .await?;
    if !suspended {
        return Err(QueueError::NotSuspended(id.to_string()));
    }
    if let Some(bytes) = in_row {
        return Ok((id, bytes));
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
