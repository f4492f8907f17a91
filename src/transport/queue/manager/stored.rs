//! Queue commands applied to the stored queue state: the queue manager's writing for a gateway
//! that is not running. The holder of the queue writer's lock runs it: the gateway itself as it
//! starts (before it loads its queues), or, while no gateway runs, the shell or console that
//! records a command (ops::command), which is then the one writer for that moment.

use sqlx::{Connection, PgConnection};

use crate::transport::queue::ops::command::{Prepared, Verb, finish, next_pending};
use crate::transport::queue::ops::{FINAL, QueueError};

/// Applies `p` in the caller's transaction; returns the messages and recipients it changed.
async fn apply(tx: &mut PgConnection, p: &Prepared) -> Result<(u32, u32), QueueError> {
    let queue_gone = || QueueError::QueueNotFound(p.identity.clone());
    let message_gone = || QueueError::MessageNotFound(p.identity.clone());
    if !p.batch.is_empty() {
        return apply_batch(tx, p).await;
    }
    match (p.verb, p.queue_id, p.message_id) {
        (Verb::SuspendQueue | Verb::ResumeQueue | Verb::ResumeQueueAtRate, Some(q), _) => {
            // Resume-Queue sets the release rate or clears it; Suspend-Queue keeps it for the
            // Resume that follows. A rate also ends the wait for the next retry, as the running
            // gateway does.
            let n = sqlx::query(
                "UPDATE delivery_queue SET suspended = $2,
                        release_rate = CASE WHEN $2 THEN release_rate ELSE $3 END,
                        next_retry_time = CASE WHEN $3 IS NULL THEN next_retry_time END,
                        status = CASE WHEN $3 IS NULL THEN status ELSE 'Ready' END
                  WHERE id = $1",
            )
            .bind(q)
            .bind(p.verb == Verb::SuspendQueue)
            .bind(p.rate.map(|r| r.stored()))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(queue_gone());
            }
            queue_counts(tx, q).await
        }
        // Unreachable has no row until the manager first needs one; the suspension must outlive
        // that, so the row is made here with the key the manager uses.
        (Verb::SuspendQueue, None, _) => {
            sqlx::query(
                "INSERT INTO delivery_queue (server, delivery_type, next_hop_domain, suspended)
                 VALUES ($1, 'Unreachable', 'Unreachable Domain', true)
                 ON CONFLICT (server, delivery_type, next_hop_domain, connector_id)
                 DO UPDATE SET suspended = true",
            )
            .bind(&p.server)
            .execute(&mut *tx)
            .await?;
            Ok((0, 0))
        }
        (Verb::ResumeQueue | Verb::ResumeQueueAtRate, None, _) => Ok((0, 0)),
        (Verb::RetryQueue, Some(q), _) if p.flag => {
            // Recipients pending removal stay for the manager to finalise; poison messages
            // leave the Poison queue only through Resume-Message.
            let moved: Vec<(uuid::Uuid,)> = sqlx::query_as(&format!(
                "UPDATE message_recipient r SET queue_id = NULL, status = 'Ready', next_retry_time = NULL
                   FROM message m
                  WHERE m.id = r.message_id AND r.queue_id = $1 AND r.status NOT IN {FINAL}
                    AND r.remove_with_ndr IS NULL AND NOT m.poison
                  RETURNING r.message_id"
            ))
            .bind(q)
            .fetch_all(&mut *tx)
            .await?;
            Ok(counts(&moved))
        }
        (Verb::RetryQueue, None, _) if p.flag => Ok((0, 0)),
        (Verb::RetryQueue, Some(q), _) => {
            // The status test is part of the update: only a queue in Retry is retried.
            let n = sqlx::query(
                "UPDATE delivery_queue SET next_retry_time = now()
                  WHERE id = $1 AND status = 'Retry' AND NOT suspended",
            )
            .bind(q)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(QueueError::NotInRetry(p.identity.clone()));
            }
            let moved: Vec<(uuid::Uuid,)> = sqlx::query_as(
                "UPDATE message_recipient SET next_retry_time = now()
                  WHERE queue_id = $1 AND status = 'Retry' RETURNING message_id",
            )
            .bind(q)
            .fetch_all(&mut *tx)
            .await?;
            Ok(counts(&moved))
        }
        (Verb::RetryQueue, None, _) => Err(QueueError::NotInRetry(p.identity.clone())),
        (Verb::SuspendMessage, _, Some(m)) => {
            let n = sqlx::query("UPDATE message SET suspended = true WHERE id = $1")
                .bind(m)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(message_gone());
            }
            Ok((1, 0))
        }
        (Verb::ResumeMessage, _, Some(m)) => {
            // A poison message is released as Exchange releases it: back to Submission, with
            // its crash count cleared.
            let poison: Option<(bool,)> =
                sqlx::query_as("SELECT poison FROM message WHERE id = $1 FOR UPDATE")
                    .bind(m)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((poison,)) = poison else {
                return Err(message_gone());
            };
            sqlx::query(
                "UPDATE message SET suspended = false, poison = false,
                        crash_count = CASE WHEN poison THEN 0 ELSE crash_count END
                  WHERE id = $1",
            )
            .bind(m)
            .execute(&mut *tx)
            .await?;
            let mut n = 0;
            if poison {
                n = sqlx::query(&format!(
                    "UPDATE message_recipient SET queue_id = NULL, status = 'Ready', next_retry_time = NULL
                      WHERE message_id = $1 AND status NOT IN {FINAL} AND remove_with_ndr IS NULL"
                ))
                .bind(m)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            Ok((1, n as u32))
        }
        (Verb::RemoveMessage, _, Some(m)) => {
            // Marked for the manager to finalise when it loads them: with an NDR (`550 4.3.2
            // QUEUE.Admin; message deleted by administrative action`) or silently.
            let n = sqlx::query(&format!(
                "UPDATE message_recipient SET remove_with_ndr = $3
                  WHERE message_id = $1 AND ordinal = ANY($2) AND status NOT IN {FINAL}"
            ))
            .bind(m)
            .bind(&p.ordinals)
            .bind(p.flag)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 0 {
                return Err(message_gone());
            }
            Ok((1, n as u32))
        }
        (Verb::SuspendMessage | Verb::ResumeMessage | Verb::RemoveMessage, _, None) => {
            Err(message_gone())
        }
    }
}

/// A filtered message action: one statement per step over every message it names. Messages
/// gone since the caller checked them are passed over.
async fn apply_batch(tx: &mut PgConnection, p: &Prepared) -> Result<(u32, u32), QueueError> {
    match p.verb {
        Verb::SuspendMessage => {
            let n = sqlx::query("UPDATE message SET suspended = true WHERE id = ANY($1)")
                .bind(&p.batch)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            Ok((n as u32, 0))
        }
        Verb::ResumeMessage => {
            // Poison messages go back to Submission, as Resume-Message releases one; their
            // recipients move before the poison mark is cleared, which selects them.
            let n = sqlx::query(&format!(
                "UPDATE message_recipient r SET queue_id = NULL, status = 'Ready', next_retry_time = NULL
                   FROM message m
                  WHERE m.id = r.message_id AND m.id = ANY($1) AND m.poison
                    AND r.status NOT IN {FINAL} AND r.remove_with_ndr IS NULL"
            ))
            .bind(&p.batch)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let m = sqlx::query(
                "UPDATE message SET suspended = false, poison = false,
                        crash_count = CASE WHEN poison THEN 0 ELSE crash_count END
                  WHERE id = ANY($1)",
            )
            .bind(&p.batch)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok((m as u32, n as u32))
        }
        Verb::RemoveMessage => {
            let rows: Vec<(uuid::Uuid,)> = sqlx::query_as(&format!(
                "UPDATE message_recipient r SET remove_with_ndr = $3
                   FROM unnest($1::uuid[], $2::integer[]) AS t(message_id, ordinal)
                  WHERE r.message_id = t.message_id AND r.ordinal = t.ordinal
                    AND r.status NOT IN {FINAL}
                  RETURNING r.message_id"
            ))
            .bind(&p.batch)
            .bind(&p.ordinals)
            .bind(p.flag)
            .fetch_all(&mut *tx)
            .await?;
            Ok(counts(&rows))
        }
        _ => Err(QueueError::Failed(format!(
            "{} does not act on a set of messages",
            p.verb.cmdlet()
        ))),
    }
}

/// (messages, recipients) of the rows a statement returned, one per recipient.
fn counts(rows: &[(uuid::Uuid,)]) -> (u32, u32) {
    let mut ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.0).collect();
    let recipients = ids.len() as u32;
    ids.sort_unstable();
    ids.dedup();
    (ids.len() as u32, recipients)
}

/// The messages and recipients waiting in a queue.
async fn queue_counts(tx: &mut PgConnection, q: i64) -> Result<(u32, u32), QueueError> {
    let (m, r): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(DISTINCT message_id), count(*) FROM message_recipient
          WHERE queue_id = $1 AND status NOT IN {FINAL}"
    ))
    .bind(q)
    .fetch_one(&mut *tx)
    .await?;
    Ok((m as u32, r as u32))
}

/// Runs the recorded commands of `server` on the stored queue state, in order. Only the holder
/// of the queue writer's lock calls this: a caller when no gateway runs, and the gateway itself
/// when it starts, before it loads its queues.
pub async fn run_stored(conn: &mut PgConnection, server: &str) -> Result<(), QueueError> {
    // The record of what ran is kept a week, for an administrator who asks what happened.
    sqlx::query(
        "DELETE FROM queue_command WHERE lower(server) = lower($1) AND done_at < now() - interval '7 days'",
    )
    .bind(server)
    .execute(&mut *conn)
    .await?;
    // Bounded: each pass finishes one command, and callers record one at a time.
    for _ in 0..10_000 {
        let Some(rec) = next_pending(conn, server).await? else {
            return Ok(());
        };
        let outcome = {
            let mut tx = conn.begin().await?;
            let outcome = apply(&mut tx, &rec.command).await;
            match &outcome {
                Err(QueueError::Db(_)) => tx.rollback().await?,
                _ => tx.commit().await?,
            }
            outcome
        };
        if let Err(QueueError::Db(e)) = outcome {
            return Err(QueueError::Db(e));
        }
        finish(conn, &rec, &outcome, "Stored").await?;
    }
    Ok(())
}
