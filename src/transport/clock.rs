//! The time every transport timer decision reads: retry schedules, delay DSNs, expiry, the
//! scheduler's tick (and shadow heartbeats next). Production runs on the system clock; tests
//! drive a `ManualClock` so a two-day expiry is a call, not a wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time: what retry times, expiry and DSN dates are stated in.
    fn now(&self) -> OffsetDateTime;
    /// Time since the clock started, never going back (a wall clock set back by an hour must
    /// not stall the scheduler for an hour).
    fn monotonic(&self) -> Duration;
    /// Resolves once `d` of this clock's time has passed.
    fn sleep(&self, d: Duration) -> Sleep;
}

/// The real clock.
pub struct SystemClock {
    start: std::time::Instant,
}

impl SystemClock {
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(SystemClock {
            start: std::time::Instant::now(),
        })
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn monotonic(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told to (`advance`); its sleepers wake when it passes their
/// deadline.
pub struct ManualClock {
    start: OffsetDateTime,
    elapsed: watch::Sender<Duration>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            start,
            elapsed: watch::Sender::new(Duration::ZERO),
        })
    }

    pub fn advance(&self, d: Duration) {
        self.elapsed.send_modify(|e| *e = e.saturating_add(d));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.start + *self.elapsed.borrow()
    }

    fn monotonic(&self) -> Duration {
        *self.elapsed.borrow()
    }

    fn sleep(&self, d: Duration) -> Sleep {
        let deadline = self.monotonic().saturating_add(d);
        let mut rx = self.elapsed.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; a dropped clock never wakes its sleepers.
            if rx.wait_for(|e| *e >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_moves_and_wakes_only_when_advanced() {
        let t0 = time::macros::datetime!(2026-01-05 08:00 UTC);
        let clock = ManualClock::new(t0);
        let mut sleep = clock.sleep(Duration::from_secs(60));
        let poll = |s: &mut Sleep| {
            let waker = std::task::Waker::noop();
            s.as_mut()
                .poll(&mut std::task::Context::from_waker(waker))
                .is_ready()
        };
        assert!(!poll(&mut sleep));
        clock.advance(Duration::from_secs(59));
        assert!(!poll(&mut sleep));
        assert_eq!(clock.now(), t0 + Duration::from_secs(59));
        clock.advance(Duration::from_secs(1));
        assert!(poll(&mut sleep));
        assert_eq!(clock.monotonic(), Duration::from_secs(60));
    }
}
