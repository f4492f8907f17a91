//! Delayed acknowledgement (reference §1.6): an SMTP session that holds back its final 250 waits
//! here until the message it just made durable has reached its next hop.
//!
//! A waiter is registered before the message is submitted, so no outcome can slip past it, and
//! it deregisters itself when dropped: a session that gives up (timeout, client gone) leaves
//! nothing behind, whatever happens to the message later.

use super::*;

/// Sessions waiting on their message, by message id. At most one per message: only the session
/// that received it waits.
pub(super) type AckWaiters = Arc<Mutex<HashMap<Uuid, oneshot::Sender<()>>>>;

fn lock(w: &AckWaiters) -> MutexGuard<'_, HashMap<Uuid, oneshot::Sender<()>>> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

/// A session's wait for its message's next hop.
pub struct AckWaiter {
    id: Uuid,
    rx: oneshot::Receiver<()>,
    waiters: AckWaiters,
}

impl AckWaiter {
    /// Resolves when every recipient of the message has reached its next hop: delivered, relayed
    /// and accepted there, or failed for good. Callers bound it with their own timeout.
    pub async fn reached(&mut self) {
        if (&mut self.rx).await.is_err() {
            // Never sent: the registry lost it (it cannot, short of a shutdown). Nothing says the
            // message arrived, so only the caller's timeout ends the wait.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for AckWaiter {
    fn drop(&mut self) {
        lock(&self.waiters).remove(&self.id);
    }
}

/// Nothing of the message is waiting for delivery any more. A recipient whose NDR is not queued
/// yet (Reporting) has failed for good: the sender hears of it by NDR, not by a longer wait. A
/// shadow copy (Shadow) reached a next hop that accepted it.
pub(super) fn settled(m: &Msg) -> bool {
    m.rcpts
        .iter()
        .all(|r| matches!(r.state, RState::Done | RState::Reporting | RState::Shadow))
}

impl QueueManager {
    /// Registers a wait for message `id`; call it before the message is submitted.
    pub fn watch_next_hop(&self, id: Uuid) -> AckWaiter {
        let (tx, rx) = oneshot::channel();
        let mut waiters = lock(&self.inner.acks);
        // A stopping node delivers nothing more: holding the 250 back would only keep the
        // session past the drain (`stop`).
        if self.stopping() {
            let _ = tx.send(());
        } else {
            waiters.insert(id, tx);
        }
        drop(waiters);
        AckWaiter {
            id,
            rx,
            waiters: self.inner.acks.clone(),
        }
    }

    /// The node stops delivering: every held 250 goes out now. The flag is set under the
    /// waiters' lock, so no waiter registers after this and waits out its whole delay.
    pub(super) fn release_all_acks(&self) {
        let waiters: Vec<_> = {
            let mut w = lock(&self.inner.acks);
            self.inner
                .stopping
                .store(true, std::sync::atomic::Ordering::SeqCst);
            w.drain().map(|(_, tx)| tx).collect()
        };
        for tx in waiters {
            let _ = tx.send(());
        }
    }

    /// Message `id` is no longer waiting for delivery (settled, or gone from memory): its
    /// session, if one is waiting, may answer.
    pub(super) fn release_ack(&self, id: Uuid) {
        if let Some(tx) = lock(&self.inner.acks).remove(&id) {
            let _ = tx.send(());
        }
    }
}
