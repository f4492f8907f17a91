//! The recipients of a queued message that are already done (Delivered or Failed). Get-Message
//! lists a message only in the queues that still hold it for someone, so its entries leave these
//! out; a message's properties show every recipient, and for a recipient delivered after
//! failures, the attempts that led there.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::*;

/// A recipient whose life in the queue is over, with the queue that delivered (or failed) it.
#[derive(Clone, Debug)]
pub struct FinishedRecipient {
    /// None when it never reached a delivery queue (failed in routing).
    pub queue: Option<QueueIdentity>,
    pub next_hop_domain: Option<String>,
    pub recipient: RecipientInfo,
}

#[derive(sqlx::FromRow)]
struct Row {
    ordinal: i32,
    address: String,
    route_address: Option<String>,
    status: String,
    retry_count: i32,
    last_error: Option<String>,
    last_retry_time: Option<OffsetDateTime>,
    next_retry_time: Option<OffsetDateTime>,
    queue_id: Option<i64>,
    queue_server: Option<String>,
    delivery_type: Option<String>,
    next_hop_domain: Option<String>,
}

/// The finished recipients of `message` (message.id, as in [`MessageInfo::id`]) in ordinal
/// order, each with its attempts in the order they were made. A message delivered to everyone
/// is deleted, so this only ever answers for a message still queued for someone else.
pub async fn finished_recipients(
    conn: &mut PgConnection,
    message: Uuid,
) -> Result<Vec<FinishedRecipient>, QueueError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT r.ordinal, r.address, r.route_address, r.status, r.retry_count, r.last_error,
                r.last_retry_time, r.next_retry_time, r.queue_id,
                q.server AS queue_server, q.delivery_type, q.next_hop_domain
           FROM message_recipient r LEFT JOIN delivery_queue q ON q.id = r.queue_id
          WHERE r.message_id = $1 AND r.status IN {FINAL}
          ORDER BY r.ordinal"
    ))
    .bind(message)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let mut attempts = super::read::load_attempts(conn, &[message]).await?;
    rows.into_iter()
        .map(|r| {
            let queue = match (r.queue_id, r.queue_server, r.delivery_type.as_deref()) {
                (Some(_), Some(server), Some("Unreachable")) => Some(QueueIdentity {
                    server,
                    queue: QueueName::Unreachable,
                }),
                (Some(n), Some(server), _) => Some(QueueIdentity {
                    server,
                    queue: QueueName::Delivery(n),
                }),
                _ => None,
            };
            Ok(FinishedRecipient {
                queue,
                next_hop_domain: r.next_hop_domain,
                recipient: RecipientInfo {
                    ordinal: r.ordinal,
                    status: super::read::stored_status(&r.status)?,
                    address: r.address,
                    route_address: r.route_address,
                    retry_count: r.retry_count,
                    last_error: r.last_error,
                    last_retry_time: r.last_retry_time,
                    next_retry_time: r.next_retry_time,
                    remove_with_ndr: None,
                    attempts: attempts.remove(&(message, r.ordinal)).unwrap_or_default(),
                },
            })
        })
        .collect()
}
