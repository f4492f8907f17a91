//! Stopping `serve`: SIGTERM (or Ctrl-C) drains, a second one ends the process at once.
//!
//! The drain: the listeners are already closed by the caller; sessions between transactions are
//! told `421 4.3.2` and those inside one may finish it; deliveries finish their current message
//! and take no other; then the queue writer is flushed, so every outcome reached is written
//! before the pool closes. At the bound the sessions still open are told `421 4.3.2` and closed,
//! and deliveries still running are left to the next start (their rows still say Ready/Retry).
//! Nothing accepted is lost on any path: a 250 is only sent after the message's commit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

use crate::smtp::server::drain::{DrainControl, Phase};
use crate::transport::queue::QueueManager;

/// How long sessions told 421 at the bound get to take it and close.
const CUT_GRACE: Duration = Duration::from_secs(3);
/// The longest wait for the queue writer's last batch.
const FLUSH_LIMIT: Duration = Duration::from_secs(10);
/// The exit status of a stop cut short by a second signal.
pub const CUT_SHORT: i32 = 1;

/// Watches for SIGTERM and SIGINT: the first answers the receiver, a second exits the process
/// at once. The handlers are installed before this returns, so a signal that comes before the
/// caller first waits is not lost to the default action.
pub fn signals() -> std::io::Result<oneshot::Receiver<()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = tx.send(());
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::warn!(
            "second stop signal: exiting now; deliveries in progress are redone at the next start"
        );
        std::process::exit(CUT_SHORT);
    });
    Ok(rx)
}

/// Runs the drain to its end (see the module's comment), at most `bound` plus the grace for
/// the 421s and the final write.
pub async fn drain(
    control: &DrainControl,
    sessions: &AtomicUsize,
    queue: &QueueManager,
    bound: Duration,
) {
    control.set(Phase::Draining);
    queue.stop_delivering();
    let idle = || sessions.load(Ordering::SeqCst) == 0 && queue.deliveries() == 0;
    if !until(Instant::now() + bound, idle).await {
        tracing::warn!(
            "drain bound of {} s reached with {} sessions and {} deliveries open: ending them",
            bound.as_secs(),
            sessions.load(Ordering::SeqCst),
            queue.deliveries()
        );
        control.set(Phase::Cut);
        until(Instant::now() + CUT_GRACE, || {
            sessions.load(Ordering::SeqCst) == 0
        })
        .await;
    }
    if !queue.flush_writes(FLUSH_LIMIT).await {
        tracing::error!("the queue's last writes did not finish; the next start redoes them");
    }
}

/// Polls `done` until it holds or `deadline` passes; whether it held.
async fn until(deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
