//! The server dashboard's per-minute counts: messages received, delivered, deferred and failed,
//! and the queue length, one `server_statistics` row per node and minute.
//!
//! The hot paths only add to atomics (the receive path when a message is accepted, the queue
//! manager when an attempt's outcome is recorded); one task writes the minute's counts with one
//! upsert when the minute ends, and once more at shutdown, so a restart loses nothing it had
//! counted. A count that could not be written is kept for the next minute's write rather than
//! lost. Rows older than the node's ServerStatisticsMaxAge are pruned.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::org::Org;

/// What one count is of. One message counts once per outcome of an attempt, as the tracking log
/// writes one line per event: a message delivered to two recipients in one connection is one
/// delivery, a message with one recipient delivered and one deferred counts in both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Received,
    Delivered,
    Deferred,
    Failed,
}

/// The counts of one minute (or of the part of it not written yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub received: u64,
    pub delivered: u64,
    pub deferred: u64,
    pub failed: u64,
}

impl Counts {
    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

#[derive(Default, Debug)]
struct Counters {
    received: AtomicU64,
    delivered: AtomicU64,
    deferred: AtomicU64,
    failed: AtomicU64,
}

/// This node's counters since the last write; cheap to clone and to count with.
#[derive(Clone, Default, Debug)]
pub struct Stats(Arc<Counters>);

impl Stats {
    fn counter(&self, e: Event) -> &AtomicU64 {
        match e {
            Event::Received => &self.0.received,
            Event::Delivered => &self.0.delivered,
            Event::Deferred => &self.0.deferred,
            Event::Failed => &self.0.failed,
        }
    }

    pub fn count(&self, e: Event) {
        // Saturating: a counter that cannot grow stays at its maximum instead of wrapping to 0.
        let _ = self
            .counter(e)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    /// What has been counted and not written yet (the dashboard's current minute).
    pub fn pending(&self) -> Counts {
        Counts {
            received: self.0.received.load(Ordering::Relaxed),
            delivered: self.0.delivered.load(Ordering::Relaxed),
            deferred: self.0.deferred.load(Ordering::Relaxed),
            failed: self.0.failed.load(Ordering::Relaxed),
        }
    }

    /// Takes the counts for a write, leaving zero.
    fn take(&self) -> Counts {
        Counts {
            received: self.0.received.swap(0, Ordering::Relaxed),
            delivered: self.0.delivered.swap(0, Ordering::Relaxed),
            deferred: self.0.deferred.swap(0, Ordering::Relaxed),
            failed: self.0.failed.swap(0, Ordering::Relaxed),
        }
    }

    /// Counts whose write failed go back, to be written with the next minute's.
    fn give_back(&self, c: Counts) {
        for (e, n) in [
            (Event::Received, c.received),
            (Event::Delivered, c.delivered),
            (Event::Deferred, c.deferred),
            (Event::Failed, c.failed),
        ] {
            let _ = self
                .counter(e)
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_add(n))
                });
        }
    }
}

/// The start of the minute `t` falls in.
pub fn minute_of(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_second(0)
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(t)
}

/// A count as PostgreSQL's bigint holds it (a count past it stays at its maximum).
fn db_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Adds `c` to the row of (`server`, `minute`) and sets its queue length. The sums are made in
/// numeric and capped, so that no count can make the write fail.
pub async fn write(
    pool: &PgPool,
    server: &str,
    minute: OffsetDateTime,
    c: Counts,
    queue_length: u64,
) -> Result<(), sqlx::Error> {
    const CAP: &str = "9223372036854775807";
    let add = |col: &str| {
        format!("{col} = LEAST(server_statistics.{col}::numeric + EXCLUDED.{col}, {CAP})::bigint")
    };
    sqlx::query(&format!(
        "INSERT INTO server_statistics (server, minute, received, delivered, deferred, failed, queue_length)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (server, minute) DO UPDATE SET {}, {}, {}, {}, queue_length = EXCLUDED.queue_length",
        add("received"),
        add("delivered"),
        add("deferred"),
        add("failed"),
    ))
    .bind(server)
    .bind(minute_of(minute))
    .bind(db_count(c.received))
    .bind(db_count(c.delivered))
    .bind(db_count(c.deferred))
    .bind(db_count(c.failed))
    .bind(db_count(queue_length))
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes `server`'s rows older than `max_age_secs`; how many went.
pub async fn prune(pool: &PgPool, server: &str, max_age_secs: i64) -> Result<u64, sqlx::Error> {
    prune_minutes(pool, "server_statistics", server, max_age_secs).await
}

/// Deletes `server`'s rows of `table` (one of the per-minute tables, keyed by server and
/// minute) older than `max_age_secs`; how many went.
pub(super) async fn prune_minutes(
    pool: &PgPool,
    table: &'static str,
    server: &str,
    max_age_secs: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(&format!(
        "DELETE FROM {table}
          WHERE server = $1 AND minute < now() - make_interval(secs => $2::double precision)"
    ))
    .bind(server)
    .bind(max_age_secs.max(0) as f64)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// One stored minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct MinuteRow {
    pub minute: OffsetDateTime,
    pub received: i64,
    pub delivered: i64,
    pub deferred: i64,
    pub failed: i64,
    pub queue_length: i64,
}

/// `server`'s rows from `since` on, oldest first.
pub async fn read(
    conn: &mut sqlx::PgConnection,
    server: &str,
    since: OffsetDateTime,
) -> Result<Vec<MinuteRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT minute, received, delivered, deferred, failed, queue_length FROM server_statistics
          WHERE lower(server) = lower($1) AND minute >= $2 ORDER BY minute",
    )
    .bind(server)
    .bind(since)
    .fetch_all(&mut *conn)
    .await
}

/// A task that writes a minute's counts when the minute ends: the dashboard's and the
/// Anti-spam tab's counts are kept the same way, each in its own table.
pub trait MinuteWriter: Send + Sync + Sized + 'static {
    /// Writes what was counted into `minute`'s rows; what could not be written is kept for the
    /// next write.
    fn flush(&self, minute: OffsetDateTime) -> impl Future<Output = ()> + Send;
    /// Deletes the rows older than ServerStatisticsMaxAge.
    fn prune(&self) -> impl Future<Output = ()> + Send;
    /// The configuration, watched for ServerStatisticsMaxAge.
    fn org(&self) -> &watch::Receiver<Arc<Org>>;

    /// Writes each minute's counts when it ends, and prunes at start, after each write and as
    /// soon as ServerStatisticsMaxAge changes. Runs until aborted; the caller flushes once more at
    /// shutdown.
    fn run(self: Arc<Self>) -> impl Future<Output = ()> + Send {
        async move {
            self.prune().await;
            let mut org = self.org().clone();
            let mut max_age = org.borrow().server.server_statistics_max_age;
            let mut watching = true;
            loop {
                let now = OffsetDateTime::now_utc();
                let ends = minute_of(now) + Duration::from_secs(60);
                let wait = Duration::try_from(ends - now).unwrap_or(Duration::ZERO);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {
                        self.flush(ends - Duration::from_secs(60)).await;
                        self.prune().await;
                    }
                    changed = org.changed(), if watching => {
                        // The configuration watch gone (shutdown): keep writing minutes.
                        if changed.is_err() {
                            watching = false;
                            continue;
                        }
                        let now_max = org.borrow_and_update().server.server_statistics_max_age;
                        if now_max != max_age {
                            max_age = now_max;
                            self.prune().await;
                        }
                    }
                }
            }
        }
    }
}

/// What the writer needs from the node.
pub struct Writer {
    pub stats: Stats,
    pub pool: PgPool,
    pub server: String,
    pub org: watch::Receiver<Arc<Org>>,
    /// The queue length now (the queue manager's messages not yet done).
    pub queue_length: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl MinuteWriter for Writer {
    /// Writes what was counted into `minute`'s row; on an error the counts wait for the next
    /// write.
    async fn flush(&self, minute: OffsetDateTime) {
        let c = self.stats.take();
        let q = (self.queue_length)();
        if let Err(e) = write(&self.pool, &self.server, minute, c, q).await {
            tracing::warn!("writing the dashboard's counts: {e}");
            self.stats.give_back(c);
        }
    }

    async fn prune(&self) {
        let max_age = self.org.borrow().server.server_statistics_max_age;
        if let Err(e) = prune(&self.pool, &self.server, max_age).await {
            tracing::warn!("pruning the dashboard's counts: {e}");
        }
    }

    fn org(&self) -> &watch::Receiver<Arc<Org>> {
        &self.org
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_taken_once_and_given_back_on_failure() {
        let s = Stats::default();
        s.count(Event::Received);
        s.count(Event::Received);
        s.count(Event::Failed);
        let c = s.take();
        assert_eq!(
            c,
            Counts {
                received: 2,
                failed: 1,
                ..Counts::default()
            }
        );
        assert!(s.pending().is_zero());
        s.count(Event::Delivered);
        s.give_back(c);
        assert_eq!(
            s.pending(),
            Counts {
                received: 2,
                delivered: 1,
                failed: 1,
                deferred: 0
            }
        );
    }

    #[test]
    fn counters_saturate() {
        let s = Stats::default();
        s.give_back(Counts {
            deferred: u64::MAX,
            ..Counts::default()
        });
        s.count(Event::Deferred);
        s.give_back(Counts {
            deferred: 5,
            ..Counts::default()
        });
        assert_eq!(s.pending().deferred, u64::MAX);
        assert_eq!(db_count(u64::MAX), i64::MAX);
    }

    #[test]
    fn minutes_start_at_second_zero_utc() {
        let t = time::macros::datetime!(2026-12-02 07:13:59.999 +02:00);
        assert_eq!(
            minute_of(t),
            time::macros::datetime!(2026-12-02 05:13:00 UTC)
        );
    }
}
