//! The receive side's part of a graceful stop: which sessions may go on, and when they must end.
//!
//! On SIGTERM the process moves from `Running` to `Draining` (a session with no open transaction
//! is told 421 at its next read; one inside a transaction may finish it) and, at the drain bound,
//! to `Cut` (every session still reading is told 421 and closed). Nothing a session has not
//! answered with 250 is committed, so a cut session loses nothing: its client sends again.

use tokio::sync::watch;

use crate::smtp::proto::Reply;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    Draining,
    Cut,
}

/// What a session watches. The default never leaves `Running` (a gateway without a stop, such
/// as the session fuzz target's).
#[derive(Clone)]
pub struct Drain(watch::Receiver<Phase>);

impl Default for Drain {
    fn default() -> Drain {
        // With the sender gone the phase can never move, and `reached` waits for ever.
        Drain(watch::channel(Phase::Running).1)
    }
}

/// The process's side: moves every session's `Drain` on.
pub struct DrainControl(watch::Sender<Phase>);

impl DrainControl {
    pub fn new() -> (DrainControl, Drain) {
        let (tx, rx) = watch::channel(Phase::Running);
        (DrainControl(tx), Drain(rx))
    }

    pub fn set(&self, phase: Phase) {
        self.0.send_if_modified(|p| {
            let moved = *p < phase;
            if moved {
                *p = phase;
            }
            moved
        });
    }
}

impl Drain {
    /// Resolves once the stop has reached `phase`; never, if it does not.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.0.clone();
        if rx.wait_for(|p| *p >= phase).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub fn phase(&self) -> Phase {
        *self.0.borrow()
    }
}

/// Exchange's reply to a session it ends because the service stops.
pub fn shutting_down() -> Reply {
    Reply::new(421, "4.3.2", "Service not available")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_phases_only_move_on() {
        let (control, drain) = DrainControl::new();
        let cut = tokio::spawn({
            let d = drain.clone();
            async move { d.reached(Phase::Cut).await }
        });
        control.set(Phase::Draining);
        drain.reached(Phase::Draining).await;
        control.set(Phase::Running);
        assert_eq!(drain.phase(), Phase::Draining);
        assert!(!cut.is_finished());
        control.set(Phase::Cut);
        tokio::time::timeout(Duration::from_secs(5), cut)
            .await
            .expect("the cut reached")
            .unwrap();
    }

    #[tokio::test]
    async fn a_gateway_without_a_stop_never_drains() {
        let drain = Drain::default();
        let waited =
            tokio::time::timeout(Duration::from_millis(50), drain.reached(Phase::Draining)).await;
        assert!(waited.is_err());
    }
}
