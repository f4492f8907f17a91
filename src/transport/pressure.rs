//! Back pressure and readiness: what this node's resources allow right now.
//!
//! Exchange's resource monitor watches several resources and, past a threshold, refuses new mail
//! with `452 4.3.1 Insufficient system resources` until the resource recovers, coming back only
//! some way under the threshold (a gap, so the state does not flap at its edge). hubgate watches
//! the two that can fill up here: the free space of the spool's disk and the number of messages
//! this node holds (Set-TransportServer BackPressureDiskFreeSpaceLimit and
//! BackPressureQueueLengthLimit). Apart from them, a node whose database does not answer cannot
//! make a message durable, so it refuses new mail with `451 4.3.2` until it answers again.
//!
//! One [`Pressure`] per node, shared by the sessions (which read it on every MAIL, RCPT and DATA,
//! so reads are one atomic load), the console's `/readyz` and dashboard, and [`monitor`], the
//! task that samples the resources.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::org::Org;
use crate::smtp::proto::Reply;

/// How often the monitor samples the database, the disk and the queue.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The longest a probe waits for PostgreSQL; no answer by then counts as no database.
pub const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// The default BackPressureDiskFreeSpaceLimit: 500 MB, the fixed margin Exchange 2010 leaves
/// free on the queue database's disk.
pub const DEFAULT_DISK_FREE_SPACE_LIMIT: i64 = 500 * 1024 * 1024;

/// Where the monitor's writability probe goes, in the spool directory; not a `.eml`, so the
/// spool's own listing never takes it for a message.
const PROBE_FILE: &str = ".hubgate-ready-probe";

/// The thresholds, from the node's TransportServer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// Messages held; None: no limit.
    pub queue_length: Option<u64>,
    /// Bytes that must stay free on the spool's disk; 0: no limit.
    pub disk_free: u64,
}

impl Thresholds {
    pub fn of(server: &crate::org::TransportServer) -> Thresholds {
        Thresholds {
            queue_length: server
                .back_pressure_queue_length_limit
                .and_then(|n| u64::try_from(n).ok()),
            disk_free: u64::try_from(server.back_pressure_disk_free_space_limit).unwrap_or(0),
        }
    }
}

/// The last sample and what it means.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub thresholds: Thresholds,
    /// Messages held; counted only while BackPressureQueueLengthLimit is set (else 0).
    pub queue_length: u64,
    /// None: statvfs failed (the last judgement of the disk stands).
    pub disk_free: Option<u64>,
    pub queue_high: bool,
    pub disk_high: bool,
}

impl State {
    pub fn is_high(&self) -> bool {
        self.queue_high || self.disk_high
    }

    /// What the dashboard shows: `Normal`, or `High (why)`.
    pub fn describe(&self) -> String {
        let mut why = Vec::new();
        if self.queue_high {
            why.push(format!(
                "{} messages queued, BackPressureQueueLengthLimit {}",
                self.queue_length,
                self.thresholds.queue_length.unwrap_or(0)
            ));
        }
        if self.disk_high {
            why.push(format!(
                "{} free on the spool's disk, BackPressureDiskFreeSpaceLimit {}",
                bytes(self.disk_free),
                bytes(Some(self.thresholds.disk_free)),
            ));
        }
        if why.is_empty() {
            "Normal".into()
        } else {
            format!("High ({})", why.join("; "))
        }
    }
}

/// A size as Exchange prints it; None: unknown.
fn bytes(n: Option<u64>) -> String {
    match n {
        Some(n) => crate::shell::parse::format_bytes(Some(i64::try_from(n).unwrap_or(i64::MAX))),
        None => "unknown".into(),
    }
}

/// The gap under (queue) or over (disk) a threshold a resource must reach before the state goes
/// back to Normal: a tenth of the threshold, at least one unit.
fn recovery_gap(threshold: u64) -> u64 {
    (threshold / 10).max(1)
}

/// The next state from the last one and a fresh sample.
pub fn next(prev: &State, queue_length: u64, disk_free: Option<u64>, t: Thresholds) -> State {
    let queue_high = match t.queue_length {
        None => false,
        Some(limit) if queue_length >= limit => true,
        Some(limit) if prev.queue_high => queue_length.saturating_add(recovery_gap(limit)) > limit,
        Some(_) => false,
    };
    let disk_high = match disk_free {
        _ if t.disk_free == 0 => false,
        None => prev.disk_high,
        Some(free) if free < t.disk_free => true,
        Some(free) if prev.disk_high => {
            free < t.disk_free.saturating_add(recovery_gap(t.disk_free))
        }
        Some(_) => false,
    };
    State {
        thresholds: t,
        queue_length,
        disk_free,
        queue_high,
        disk_high,
    }
}

/// This node's health, shared. The default is a node with a database and no pressure (the
/// session fuzz target, tests that build a gateway by hand).
#[derive(Clone, Default)]
pub struct Pressure {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// A connection of the probes' own: a pool busy with sessions' commits must not read as a
    /// database that does not answer.
    probe: Option<PgPool>,
    database_down: AtomicBool,
    high: AtomicBool,
    state: Mutex<State>,
    /// Enabled receive connectors' bindings that are not listening, with the reason.
    unbound: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pressure {
    /// A node's: its probes use one connection of their own to `url`, made when first needed.
    pub fn for_database(url: &str) -> Result<Pressure, sqlx::Error> {
        let probe = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(DATABASE_TIMEOUT)
            .connect_lazy(url)?;
        Ok(Pressure {
            inner: Arc::new(Inner {
                probe: Some(probe),
                ..Inner::default()
            }),
        })
    }

    /// The pool the probes use: their own, else the one given.
    fn probe_pool<'a>(&'a self, fallback: &'a PgPool) -> &'a PgPool {
        self.inner.probe.as_ref().unwrap_or(fallback)
    }

    pub fn database_down(&self) -> bool {
        self.inner.database_down.load(Ordering::Relaxed)
    }

    pub fn set_database(&self, up: bool) {
        let was_down = self.inner.database_down.swap(!up, Ordering::Relaxed);
        if was_down == up {
            if up {
                tracing::warn!("PostgreSQL answers again: accepting mail");
            } else {
                tracing::error!("PostgreSQL does not answer: new mail is refused (451 4.3.2)");
            }
        }
    }

    pub fn is_high(&self) -> bool {
        self.inner.high.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> State {
        lock(&self.inner.state).clone()
    }

    /// Takes a sample; returns the new state.
    pub fn update(&self, queue_length: u64, disk_free: Option<u64>, t: Thresholds) -> State {
        let mut st = lock(&self.inner.state);
        let new = next(&st, queue_length, disk_free, t);
        if new.is_high() != st.is_high() {
            tracing::warn!("back pressure: {}", new.describe());
        }
        self.inner.high.store(new.is_high(), Ordering::Relaxed);
        // Exchange's levels: hubgate has no Medium, so High is 2 as in the resource monitor.
        crate::monitor::set_back_pressure(if new.is_high() { 2 } else { 0 });
        *st = new.clone();
        new
    }

    pub fn set_unbound(&self, unbound: Vec<String>) {
        *lock(&self.inner.unbound) = unbound;
    }

    pub fn unbound(&self) -> Vec<String> {
        lock(&self.inner.unbound).clone()
    }

    /// The refusal of a new MAIL, RCPT or DATA, if one is due.
    pub fn refusal(&self) -> Option<Reply> {
        if self.database_down() {
            Some(database_refusal())
        } else if self.is_high() {
            Some(Reply::new(452, "4.3.1", "Insufficient system resources"))
        } else {
            None
        }
    }
}

/// What a sender is told while the database does not answer.
pub fn database_refusal() -> Reply {
    Reply::new(
        451,
        "4.3.2",
        "System not accepting network messages, try again later",
    )
}

/// Whether a failed acceptance means the database cannot be reached (rather than a full disk,
/// or a commit whose outcome is unknown).
pub fn lost_database(e: &crate::transport::queue::AcceptError) -> bool {
    use crate::transport::queue::AcceptError;
    matches!(
        e,
        AcceptError::Db(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed)
    )
}

/// Whether PostgreSQL answers within [`DATABASE_TIMEOUT`]; the error says why not.
pub async fn probe_database(pool: &PgPool) -> Result<(), String> {
    match tokio::time::timeout(DATABASE_TIMEOUT, sqlx::query("SELECT 1").execute(pool)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", DATABASE_TIMEOUT.as_secs())),
    }
}

/// Bytes available to this (unprivileged) process on the file system holding `dir`.
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a NUL byte in the spool's path"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` is written by statvfs before it is read.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Creates, syncs and removes a small file in `dir`: the spool can take a message.
pub fn probe_writable(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(PROBE_FILE);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        f.write_all(b"ready\n")?;
        f.sync_data()
    })();
    let removed = std::fs::remove_file(&path);
    result.and(removed)
}

/// What `/readyz` checks, each fresh: PostgreSQL answers, the spool is writable with free space
/// above BackPressureDiskFreeSpaceLimit, every enabled receive connector's binding listens.
/// Returns what is not ready, empty when all is.
pub async fn readiness(p: &Pressure, pool: &PgPool, spool: Option<PathBuf>) -> Vec<String> {
    let mut problems = Vec::new();
    let db = probe_database(p.probe_pool(pool)).await;
    p.set_database(db.is_ok());
    if let Err(e) = db {
        problems.push(format!("PostgreSQL: {e}"));
    }
    if let Some(dir) = spool {
        let floor = p.state().thresholds.disk_free;
        let shown = dir.display().to_string();
        let checked = tokio::task::spawn_blocking(move || {
            probe_writable(&dir)?;
            free_space(&dir)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match checked {
            Err(e) => problems.push(format!("spool {shown}: not writable: {e}")),
            Ok(free) if free < floor => problems.push(format!(
                "spool {shown}: {} free, under BackPressureDiskFreeSpaceLimit {}",
                bytes(Some(free)),
                bytes(Some(floor)),
            )),
            Ok(_) => {}
        }
    }
    problems.extend(p.unbound());
    problems
}

/// Samples the database, the spool's disk and the queue every [`PROBE_INTERVAL`], until
/// aborted.
pub async fn monitor(
    p: Pressure,
    pool: PgPool,
    spool: PathBuf,
    queue_length: Arc<dyn Fn() -> u64 + Send + Sync>,
    org: watch::Receiver<Arc<Org>>,
) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        p.set_database(probe_database(p.probe_pool(&pool)).await.is_ok());
        let dir = spool.clone();
        let free = match tokio::task::spawn_blocking(move || free_space(&dir)).await {
            Ok(Ok(n)) => Some(n),
            Ok(Err(e)) => {
                tracing::warn!("reading the spool disk's free space: {e}");
                None
            }
            Err(_) => None,
        };
        let t = Thresholds::of(&org.borrow().server);
        // Counting walks every message under the queue manager's lock: only when it matters.
        let held = if t.queue_length.is_some() {
            queue_length()
        } else {
            0
        };
        p.update(held, free, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(queue: Option<u64>, disk: u64) -> Thresholds {
        Thresholds {
            queue_length: queue,
            disk_free: disk,
        }
    }

    #[test]
    fn queue_length_engages_at_the_limit_and_recovers_a_tenth_under_it() {
        let limits = t(Some(100), 0);
        let s = next(&State::default(), 99, Some(1 << 40), limits);
        assert!(!s.is_high());
        let s = next(&s, 100, Some(1 << 40), limits);
        assert!(s.queue_high);
        // Under the limit but not a tenth under: still High.
        let s = next(&s, 95, Some(1 << 40), limits);
        assert!(s.queue_high);
        let s = next(&s, 90, Some(1 << 40), limits);
        assert!(!s.queue_high);
        // Without a limit, never.
        assert!(!next(&s, u64::MAX, None, t(None, 0)).is_high());
        // A limit of 1: High with one message, Normal with none.
        let s = next(&State::default(), 1, None, t(Some(1), 0));
        assert!(s.queue_high);
        assert!(!next(&s, 0, None, t(Some(1), 0)).queue_high);
    }

    #[test]
    fn disk_engages_under_the_floor_and_recovers_a_tenth_over_it() {
        let limits = t(None, 1000);
        let s = next(&State::default(), 0, Some(999), limits);
        assert!(s.disk_high);
        let s = next(&s, 0, Some(1050), limits);
        assert!(s.disk_high, "within the gap");
        // An unreadable disk keeps the last judgement.
        let s = next(&s, 0, None, limits);
        assert!(s.disk_high);
        let s = next(&s, 0, Some(1100), limits);
        assert!(!s.disk_high);
        assert!(!next(&s, 0, Some(0), t(None, 0)).is_high(), "0: no limit");
    }

    #[test]
    fn the_dashboard_line_says_why() {
        let s = next(&State::default(), 5, Some(1024), t(Some(3), 2048));
        let d = s.describe();
        assert!(d.starts_with("High ("), "{d}");
        assert!(
            d.contains("5 messages queued, BackPressureQueueLengthLimit 3"),
            "{d}"
        );
        assert!(d.contains("BackPressureDiskFreeSpaceLimit"), "{d}");
        assert_eq!(State::default().describe(), "Normal");
    }

    #[test]
    fn refusals_put_the_database_first() {
        let p = Pressure::default();
        assert!(p.refusal().is_none());
        p.update(5, None, t(Some(1), 0));
        assert_eq!(p.refusal().unwrap().code, 452);
        p.set_database(false);
        assert_eq!(p.refusal().unwrap().code, 451);
        p.set_database(true);
        p.update(0, None, t(Some(1), 0));
        assert!(p.refusal().is_none());
    }

    #[test]
    fn only_an_unreachable_database_counts_as_lost() {
        use crate::transport::queue::AcceptError;
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(lost_database(&AcceptError::Db(sqlx::Error::Io(io()))));
        assert!(lost_database(&AcceptError::Db(sqlx::Error::PoolTimedOut)));
        // A full disk, or a commit that may have happened, is no reason to refuse at MAIL.
        assert!(!lost_database(&AcceptError::Io(io())));
        assert!(!lost_database(&AcceptError::CommitUnknown(
            sqlx::Error::PoolTimedOut
        )));
        assert!(!lost_database(&AcceptError::TooLarge(1)));
    }

    #[test]
    fn the_spool_probe_writes_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        probe_writable(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(free_space(dir.path()).unwrap() > 0);
        assert!(probe_writable(&dir.path().join("missing")).is_err());
    }
}
