//! The queue manager's only path to PostgreSQL after acceptance: outcomes written in batches.
//!
//! Delivery tasks never wait for the database. They send what happened here; one task drains
//! the channel and writes everything it holds in one transaction (one statement per kind of
//! row), then unlinks the bodies of the messages it deleted. While PostgreSQL cannot be reached
//! a batch is retried until it can (the gateway refuses new mail meanwhile, so what waits is
//! bounded by the deliveries under way): a delivery recorded during an outage must not be redone
//! after the next start. A batch PostgreSQL refuses for what it holds is retried a few times and
//! then dropped: the rows it would have changed still say "Ready"/"Retry", so the worst case
//! after a crash is a second delivery, never a lost message.
//!
//! The queue manager's administrative changes (queue commands) are rows here too, each written
//! in a batch of its own so that it lands in order between the outcomes around it; a `Flush`
//! answers once everything queued before it is written.

use std::time::Duration;

use sqlx::{Connection, PgPool};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{QueueStatus, RecipientStatus, Spool};
use crate::db::kept::KeptConnection;

/// Most writes gathered into one transaction.
const MAX_BATCH: usize = 2048;
const ATTEMPTS: u32 = 5;

/// A recipient's queue assignment after categorizing and routing.
#[derive(Debug)]
pub struct RoutedRow {
    pub message: Uuid,
    pub ordinal: i32,
    pub queue_id: Option<i64>,
    pub route_address: Option<String>,
}

/// A recipient's state after an attempt or a timer.
#[derive(Debug)]
pub struct RecipientRow {
    pub message: Uuid,
    pub ordinal: i32,
    pub status: RecipientStatus,
    pub retry_count: i32,
    pub last_error: Option<String>,
    pub last_retry: Option<OffsetDateTime>,
    pub next_retry: Option<OffsetDateTime>,
    pub delay_notified: bool,
}

/// One delivery attempt, kept for the queue viewer's history.
#[derive(Debug)]
pub struct AttemptRow {
    pub message: Uuid,
    pub ordinal: i32,
    pub at: OffsetDateTime,
    pub next_hop: Option<String>,
    pub remote_ip: Option<String>,
    pub reply: String,
    pub tls_version: Option<String>,
}

/// A delivery queue's shown state.
#[derive(Debug)]
pub struct QueueRow {
    pub id: i64,
    pub status: QueueStatus,
    pub last_error: Option<String>,
    pub last_retry: Option<OffsetDateTime>,
    pub next_retry: Option<OffsetDateTime>,
}

/// What a queue command changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRow {
    /// Suspend-Queue, Resume-Queue.
    QueueSuspended { id: i64, suspended: bool },
    /// Resume-Queue sets or clears the release rate; the manager clears it when the queue empties.
    QueueReleaseRate { id: i64, rate: Option<i32> },
    /// Suspend-Message, Resume-Message.
    MessageSuspended { message: Uuid, suspended: bool },
    /// Remove-Message on a recipient the manager finalises later (in flight, or not loaded).
    RemoveMarked {
        message: Uuid,
        ordinal: i32,
        with_ndr: bool,
    },
    /// Retry-Queue -Resubmit: back to Submission.
    Resubmitted { message: Uuid, ordinal: i32 },
    /// Resume-Message on a poison message: back to Submission, its crash count cleared.
    Released(Uuid),
}

#[derive(Debug)]
pub enum Write {
    Routed(RoutedRow),
    Recipient(RecipientRow),
    Attempt(AttemptRow),
    Queue(QueueRow),
    /// Every recipient is final: the message and its body go.
    Delete(Uuid),
    /// A delivery panicked on this message; at PoisonThreshold it is marked poison.
    Crashed {
        message: Uuid,
        crash_count: i32,
        poison: bool,
    },
    Admin(AdminRow),
    /// The message's last recipients went to a further primary as shadow copies: the discard
    /// event for the shadow server that gave it to us is queued (once), in this batch's
    /// transaction.
    ShadowDiscard(Uuid),
    /// Answered once every write queued before it is written (or dropped after its retries).
    Flush(oneshot::Sender<()>),
}

impl Write {
    fn is_admin(&self) -> bool {
        matches!(self, Write::Admin(_))
    }
}

#[derive(Default)]
struct Batch {
    routed: Vec<RoutedRow>,
    recipients: Vec<RecipientRow>,
    attempts: Vec<AttemptRow>,
    queues: Vec<QueueRow>,
    deletes: Vec<Uuid>,
    crashes: Vec<(Uuid, i32, bool)>,
    admin: Vec<AdminRow>,
    shadow_discards: Vec<Uuid>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn add(&mut self, w: Write) {
        match w {
            Write::Routed(r) => self.routed.push(r),
            Write::Recipient(r) => self.recipients.push(r),
            Write::Attempt(a) => self.attempts.push(a),
            Write::Queue(q) => self.queues.push(q),
            Write::Delete(id) => self.deletes.push(id),
            Write::Crashed {
                message,
                crash_count,
                poison,
            } => self.crashes.push((message, crash_count, poison)),
            Write::Admin(a) => self.admin.push(a),
            Write::ShadowDiscard(id) => self.shadow_discards.push(id),
            Write::Flush(tx) => self.flushes.push(tx),
        }
    }

    fn has_writes(&self) -> bool {
        !(self.routed.is_empty()
            && self.recipients.is_empty()
            && self.attempts.is_empty()
            && self.queues.is_empty()
            && self.deletes.is_empty()
            && self.crashes.is_empty()
            && self.admin.is_empty()
            && self.shadow_discards.is_empty())
    }
}

/// Runs until every sender is gone.
pub async fn run(pool: PgPool, spool: Spool, mut rx: mpsc::UnboundedReceiver<Write>) {
    // The bodies of deleted messages are unlinked by a task of their own, after their rows are
    // committed, so that a bulk removal's next batch of rows is written while the last one's
    // files go: a flush (a queue command's end) waits for rows, not files. They are all gone
    // before this task ends.
    let (unlink, mut bodies) = mpsc::unbounded_channel::<Vec<Uuid>>();
    let unlinker = tokio::task::spawn_blocking(move || {
        while let Some(ids) = bodies.blocking_recv() {
            for id in ids {
                if let Err(e) = spool.remove(id) {
                    tracing::warn!("removing the body of {id}: {e}");
                }
            }
        }
    });
    let mut carried: Option<Write> = None;
    let mut conn = KeptConnection::new(pool.clone());
    loop {
        let first = match carried.take() {
            Some(w) => w,
            None => match conn.recv(&mut rx).await {
                Some(w) => w,
                None => break,
            },
        };
        let mut batch = Batch::default();
        // Administrative changes are batched only with each other, so each is written after
        // the writes queued before it and before the ones after (a resubmit's cleared queue
        // before the new routing).
        let admin = first.is_admin();
        batch.add(first);
        let mut n = 1;
        while n < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) if w.is_admin() != admin => {
                    carried = Some(w);
                    break;
                }
                Ok(w) => {
                    let flush = matches!(w, Write::Flush(_));
                    batch.add(w);
                    n += 1;
                    if flush {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        if batch.has_writes() {
            write_with_retries(&mut conn, &unlink, &batch).await;
        }
        for tx in batch.flushes.drain(..) {
            let _ = tx.send(());
        }
    }
    drop(unlink);
    let _ = unlinker.await;
}

async fn write_with_retries(
    conn: &mut KeptConnection,
    unlink: &mpsc::UnboundedSender<Vec<Uuid>>,
    batch: &Batch,
) {
    let mut refused = 0u32;
    for attempt in 1u64.. {
        let e = match write(conn, batch).await {
            Ok(()) => {
                if attempt > 1 {
                    tracing::info!("queue state written after {attempt} attempts");
                }
                if !batch.deletes.is_empty() {
                    let _ = unlink.send(batch.deletes.clone());
                }
                return;
            }
            // The pool is closed only at the end of a stop, after the final flush: a write
            // that comes later (a delivery cut by the drain's bound) is redone at the next
            // start, and retrying it would only delay the exit.
            Err(sqlx::Error::PoolClosed) => {
                tracing::info!("queue state after the stop not written, the next start redoes it");
                return;
            }
            Err(e) => {
                conn.failed();
                e
            }
        };
        if !unreachable(&e) {
            refused += 1;
            if refused >= ATTEMPTS {
                tracing::error!("queue state not written, it will be redone: {e}");
                return;
            }
        }
        // Once a minute is enough to say an outage goes on.
        if attempt == 1 || attempt % 60 == 0 {
            tracing::warn!("writing queue state (attempt {attempt}): {e}");
        }
        tokio::time::sleep(Duration::from_millis(200 * attempt.min(5))).await;
    }
}

/// Whether `e` says PostgreSQL could not be reached or is restarting, rather than that it
/// refused what the batch holds.
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        // Connection exceptions (08), shutdown and start-up (57P01–57P03), resources (53).
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")),
        _ => false,
    }
}

async fn write(conn: &mut KeptConnection, b: &Batch) -> Result<(), sqlx::Error> {
    let mut tx = conn.get().await?.0.begin().await?;
    if !b.routed.is_empty() {
        sqlx::query(
            "UPDATE message_recipient r SET queue_id = u.q, route_address = u.ra
             FROM UNNEST($1::uuid[], $2::int4[], $3::int8[], $4::text[]) AS u(m, o, q, ra)
             WHERE r.message_id = u.m AND r.ordinal = u.o",
        )
        .bind(b.routed.iter().map(|r| r.message).collect::<Vec<_>>())
        .bind(b.routed.iter().map(|r| r.ordinal).collect::<Vec<_>>())
        .bind(b.routed.iter().map(|r| r.queue_id).collect::<Vec<_>>())
        .bind(
            b.routed
                .iter()
                .map(|r| r.route_address.clone())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await?;
    }
    if !b.recipients.is_empty() {
        let r = &b.recipients;
        sqlx::query(
            "UPDATE message_recipient r SET status = u.s, retry_count = u.rc, last_error = u.le,
                    last_retry_time = u.lr, next_retry_time = u.nr, delay_notified = u.dn,
                    remove_with_ndr = CASE WHEN u.s IN ('Delivered', 'Failed') THEN NULL ELSE r.remove_with_ndr END
             FROM UNNEST($1::uuid[], $2::int4[], $3::text[], $4::int4[], $5::text[],
                         $6::timestamptz[], $7::timestamptz[], $8::bool[]) AS u(m, o, s, rc, le, lr, nr, dn)
             WHERE r.message_id = u.m AND r.ordinal = u.o",
        )
        .bind(r.iter().map(|x| x.message).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.ordinal).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.status.as_str()).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.retry_count).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.last_error.clone()).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.last_retry).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.next_retry).collect::<Vec<_>>())
        .bind(r.iter().map(|x| x.delay_notified).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    if !b.attempts.is_empty() {
        let a = &b.attempts;
        // A message deleted by an earlier batch takes its history with it.
        sqlx::query(
            "INSERT INTO delivery_attempt (message_id, ordinal, attempted_at, next_hop, remote_ip, reply, tls_version)
             SELECT u.* FROM UNNEST($1::uuid[], $2::int4[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[])
                  AS u(m, o, at, nh, ip, re, tls)
             WHERE EXISTS (SELECT 1 FROM message WHERE id = u.m)",
        )
        .bind(a.iter().map(|x| x.message).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.ordinal).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.at).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.next_hop.clone()).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.remote_ip.clone()).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.reply.clone()).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.tls_version.clone()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    for q in &b.queues {
        sqlx::query(
            "UPDATE delivery_queue SET status = $2, last_error = $3, last_retry_time = $4, next_retry_time = $5
             WHERE id = $1",
        )
        .bind(q.id)
        .bind(q.status.as_str())
        .bind(&q.last_error)
        .bind(q.last_retry)
        .bind(q.next_retry)
        .execute(&mut *tx)
        .await?;
    }
    for (id, count, poison) in &b.crashes {
        sqlx::query("UPDATE message SET crash_count = $2, poison = $3 WHERE id = $1")
            .bind(id)
            .bind(count)
            .bind(poison)
            .execute(&mut *tx)
            .await?;
    }
    write_admin_rows(&mut tx, &b.admin).await?;
    if !b.shadow_discards.is_empty() {
        // Only for a message this node is the primary of, and only once however it ends (the
        // delete trigger of 0009 checks the same flag).
        sqlx::query(
            "WITH marked AS (
                 UPDATE message SET shadow_discard_queued = true
                  WHERE id = ANY($1) AND shadow_message_id IS NOT NULL
                    AND shadow_context IS NOT NULL AND NOT shadow_discard_queued
              RETURNING server, shadow_context, shadow_message_id)
             INSERT INTO shadow_discard (server, context, shadow_message_id)
             SELECT server, shadow_context, shadow_message_id FROM marked",
        )
        .bind(&b.shadow_discards)
        .execute(&mut *tx)
        .await?;
    }
    if !b.deletes.is_empty() {
        sqlx::query(
            "WITH body AS (DELETE FROM message_body WHERE id = ANY($1))
             DELETE FROM message WHERE id = ANY($1)",
        )
        .bind(&b.deletes)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// The rows of queue commands, in order; a run of removal marks or of message suspensions (a
/// filtered action on thousands of messages) is one statement.
async fn write_admin_rows(
    tx: &mut sqlx::PgConnection,
    rows: &[AdminRow],
) -> Result<(), sqlx::Error> {
    let mut i = 0;
    while i < rows.len() {
        let run = rows[i..]
            .iter()
            .take_while(|r| std::mem::discriminant(*r) == std::mem::discriminant(&rows[i]))
            .count();
        let group = &rows[i..i + run];
        match &rows[i] {
            AdminRow::RemoveMarked { .. } if run > 1 => {
                let (mut ids, mut ordinals, mut flags) = (vec![], vec![], vec![]);
                for r in group {
                    if let AdminRow::RemoveMarked {
                        message,
                        ordinal,
                        with_ndr,
                    } = r
                    {
                        ids.push(*message);
                        ordinals.push(*ordinal);
                        flags.push(*with_ndr);
                    }
                }
                sqlx::query(
                    "UPDATE message_recipient r SET remove_with_ndr = u.w
                       FROM UNNEST($1::uuid[], $2::int4[], $3::bool[]) AS u(m, o, w)
                      WHERE r.message_id = u.m AND r.ordinal = u.o
                        AND r.status NOT IN ('Delivered', 'Failed')",
                )
                .bind(ids)
                .bind(ordinals)
                .bind(flags)
                .execute(&mut *tx)
                .await?;
            }
            AdminRow::MessageSuspended { .. } if run > 1 => {
                let (mut ids, mut flags) = (vec![], vec![]);
                for r in group {
                    if let AdminRow::MessageSuspended { message, suspended } = r {
                        ids.push(*message);
                        flags.push(*suspended);
                    }
                }
                // A message named twice keeps the last word, as one by one would.
                sqlx::query(
                    "UPDATE message m SET suspended = u.s
                       FROM (SELECT DISTINCT ON (id) id, s
                               FROM UNNEST($1::uuid[], $2::bool[]) WITH ORDINALITY AS x(id, s, n)
                              ORDER BY id, n DESC) AS u
                      WHERE m.id = u.id",
                )
                .bind(ids)
                .bind(flags)
                .execute(&mut *tx)
                .await?;
            }
            _ => {
                for r in group {
                    write_admin(&mut *tx, r).await?;
                }
            }
        }
        i += run;
    }
    Ok(())
}

async fn write_admin(tx: &mut sqlx::PgConnection, a: &AdminRow) -> Result<(), sqlx::Error> {
    let q = match a {
        AdminRow::QueueSuspended { id, suspended } => {
            sqlx::query("UPDATE delivery_queue SET suspended = $2 WHERE id = $1")
                .bind(id)
                .bind(suspended)
        }
        AdminRow::QueueReleaseRate { id, rate } => {
            sqlx::query("UPDATE delivery_queue SET release_rate = $2 WHERE id = $1")
                .bind(id)
                .bind(rate)
        }
        AdminRow::MessageSuspended { message, suspended } => {
            sqlx::query("UPDATE message SET suspended = $2 WHERE id = $1")
                .bind(message)
                .bind(suspended)
        }
        AdminRow::RemoveMarked {
            message,
            ordinal,
            with_ndr,
        } => sqlx::query(
            "UPDATE message_recipient SET remove_with_ndr = $3
              WHERE message_id = $1 AND ordinal = $2 AND status NOT IN ('Delivered', 'Failed')",
        )
        .bind(message)
        .bind(ordinal)
        .bind(with_ndr),
        AdminRow::Resubmitted { message, ordinal } => sqlx::query(
            "UPDATE message_recipient SET queue_id = NULL, route_address = NULL, status = 'Ready',
                    next_retry_time = NULL
              WHERE message_id = $1 AND ordinal = $2 AND status NOT IN ('Delivered', 'Failed')",
        )
        .bind(message)
        .bind(ordinal),
        AdminRow::Released(message) => {
            sqlx::query(
                "UPDATE message SET suspended = false, poison = false, crash_count = 0 WHERE id = $1",
            )
            .bind(message)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE message_recipient SET queue_id = NULL, status = 'Ready', next_retry_time = NULL
                  WHERE message_id = $1 AND status NOT IN ('Delivered', 'Failed') AND remove_with_ndr IS NULL",
            )
            .bind(message)
        }
    };
    q.execute(&mut *tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At the end of a stop the pool is closed: a write that comes later is left to the next
    /// start at once, not retried for seconds against a pool that cannot come back.
    #[tokio::test]
    async fn a_closed_pool_is_not_retried() {
        let (unlink, _bodies) = mpsc::unbounded_channel::<Vec<Uuid>>();
        let pool = PgPool::connect_lazy("postgres://127.0.0.1:1/unused").unwrap();
        pool.close().await;
        let mut batch = Batch::default();
        batch.add(Write::Delete(Uuid::now_v7()));
        let started = std::time::Instant::now();
        write_with_retries(&mut KeptConnection::new(pool), &unlink, &batch).await;
        assert!(
            started.elapsed() < Duration::from_millis(150),
            "took {:?}",
            started.elapsed()
        );
    }
}
