//! Get-Queue -Server: a server's queues. The shell counts each queue's messages in PostgreSQL;
//! the console, running inside the gateway, takes the counts the queue manager keeps, so its
//! Queues tab reads a few hundred queue rows instead of grouping every held recipient.

use std::collections::HashMap;

use sqlx::{Acquire, PgConnection, Postgres};

use super::read::{QueueRow, empty_unreachable, virtual_queue};
use super::{FINAL, QueueError, QueueInfo, QueueName, resolve_server};

/// The numbered delivery queues in creation order, then Submission, Unreachable and Poison, as
/// Exchange lists them.
pub async fn list_queues<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
) -> Result<Vec<QueueInfo>, QueueError> {
    let mut conn = db.acquire().await?;
    listing(&mut conn, server, None).await
}

/// The same list, with each delivery queue's MessageCount from `held` (queue id → messages, as
/// the queue manager of `server` counts them; a queue absent holds none).
pub async fn list_queues_held<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
    held: &HashMap<i64, i64>,
) -> Result<Vec<QueueInfo>, QueueError> {
    let mut conn = db.acquire().await?;
    listing(&mut conn, server, Some(held)).await
}

async fn listing(
    conn: &mut PgConnection,
    server: &str,
    held: Option<&HashMap<i64, i64>>,
) -> Result<Vec<QueueInfo>, QueueError> {
    let server = resolve_server(conn, server).await?;
    // Every queue's count from one pass over the recipients, not one look-up per queue: a few
    // hundred next hops holding 100,000 messages must list at once.
    let counts = if held.is_some() {
        "SELECT NULL::bigint AS queue_id, 0::bigint AS n WHERE false".to_string()
    } else {
        format!(
            "SELECT queue_id, count(*) AS n FROM (
               SELECT DISTINCT r.queue_id, r.message_id
                 FROM message_recipient r JOIN message m ON m.id = r.message_id
                WHERE r.queue_id IS NOT NULL AND r.status NOT IN {FINAL} AND NOT m.poison) e
              GROUP BY queue_id"
        )
    };
    let mut rows: Vec<QueueRow> = sqlx::query_as(&format!(
        "WITH counts AS ({counts})
         SELECT q.id, q.server, q.delivery_type, q.next_hop_domain, q.connector_id, q.suspended,
                q.status, q.last_error, q.last_retry_time, q.next_retry_time, q.release_rate,
                coalesce(c.n, 0) AS message_count
           FROM delivery_queue q LEFT JOIN counts c ON c.queue_id = q.id
          WHERE lower(q.server) = lower($1) ORDER BY q.id"
    ))
    .bind(&server)
    .fetch_all(&mut *conn)
    .await?;
    if let Some(held) = held {
        for r in &mut rows {
            r.message_count = held.get(&r.id).copied().unwrap_or(0);
        }
    }
    let (unreachable, numbered): (Vec<QueueRow>, Vec<QueueRow>) = rows
        .into_iter()
        .partition(|r| r.delivery_type == "Unreachable");
    let mut out: Vec<QueueInfo> = numbered.into_iter().map(QueueRow::info).collect();
    out.push(virtual_queue(conn, &server, QueueName::Submission).await?);
    out.push(match unreachable.into_iter().next() {
        Some(r) => r.info(),
        None => empty_unreachable(&server),
    });
    out.push(virtual_queue(conn, &server, QueueName::Poison).await?);
    Ok(out)
}
