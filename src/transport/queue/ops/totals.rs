//! Figures over a server's queues that a page shows without listing the messages: how many
//! Get-Message entries are in Retry, by the rule Get-Message's Status follows.

use sqlx::{Acquire, Postgres};

use super::{FINAL, QueueError, resolve_server};

/// The entries (a message in one queue) Get-Message would show with Status Retry: not
/// suspended, no removal pending, and a recipient waiting for its retry. Poison messages are
/// not in a delivery queue's count.
pub async fn messages_in_retry<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    server: &str,
) -> Result<i64, QueueError> {
    let mut conn = db.acquire().await?;
    let server = resolve_server(&mut conn, server).await?;
    let (n,): (i64,) = sqlx::query_as(&format!(
        "SELECT count(*) FROM (
            SELECT 1 FROM message m JOIN message_recipient r ON r.message_id = m.id
             WHERE m.server = $1 AND NOT m.poison AND NOT m.suspended AND r.status NOT IN {FINAL}
             GROUP BY m.id, r.queue_id
            HAVING bool_or(r.status = 'Retry') AND NOT bool_or(r.remove_with_ndr IS NOT NULL)
         ) e"
    ))
    .bind(&server)
    .fetch_one(&mut *conn)
    .await?;
    Ok(n)
}
