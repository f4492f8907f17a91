//! How far the running gateway has got with a recorded message action whose result the caller
//! stopped waiting for (the console's "still being applied: N of M").

use sqlx::PgPool;

use super::{FINAL, QueueError};

/// A recorded message action: whether the gateway has finished it, and how many of the
/// messages it names are in the state it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub done: bool,
    pub applied: i64,
    pub total: i64,
}

/// The progress of command `id` of `server`; None for a number that is no message action of
/// that server.
pub async fn progress(
    pool: &PgPool,
    server: &str,
    id: i64,
) -> Result<Option<Progress>, QueueError> {
    // A removed message has no recipient left to deliver (its rows go with the last one); a
    // suspended or resumed one says so on its row.
    let row: Option<(bool, i64, i64)> = sqlx::query_as(&format!(
        "WITH c AS (SELECT done_at IS NOT NULL AS done, verb, message_ids FROM queue_command
                     WHERE id = $1 AND lower(server) = lower($2)
                       AND verb IN ('RemoveMessage', 'SuspendMessage', 'ResumeMessage')
                       AND cardinality(message_ids) > 0),
              t AS (SELECT DISTINCT u.id FROM c, unnest(c.message_ids) AS u(id))
         SELECT c.done, (SELECT count(*) FROM t WHERE CASE c.verb
                   WHEN 'RemoveMessage' THEN NOT EXISTS (SELECT 1 FROM message_recipient r
                        WHERE r.message_id = t.id AND r.status NOT IN {FINAL})
                   WHEN 'SuspendMessage' THEN EXISTS (SELECT 1 FROM message m
                        WHERE m.id = t.id AND m.suspended)
                   ELSE NOT EXISTS (SELECT 1 FROM message m WHERE m.id = t.id AND m.suspended)
                   END),
                (SELECT count(*) FROM t)
           FROM c"
    ))
    .bind(id)
    .bind(server)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(done, applied, total)| Progress {
        done,
        applied,
        total,
    }))
}
