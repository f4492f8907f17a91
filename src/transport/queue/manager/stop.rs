//! The queue's part of a graceful stop: no new deliveries, the running ones finish (or are
//! left to the next start, their rows unchanged), and every outcome reaches the database before
//! the pool closes, so that a message delivered just before SIGTERM is not delivered again.

use std::sync::atomic::Ordering;

use super::*;

impl QueueManager {
    /// From now on no delivery starts and no running one takes another message; what is not
    /// taken stays queued (in the database) for the next start. Sessions holding back a 250
    /// for delivery get it now.
    pub fn stop_delivering(&self) {
        self.release_all_acks();
    }

    pub(super) fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Delivery connections still running.
    pub fn deliveries(&self) -> usize {
        self.state().queues.values().map(|q| q.connections).sum()
    }

    /// Connections the dispatcher planned but may not start any more: uncounted again.
    pub(super) fn unplan(&self, starts: &[(i64, Target)]) {
        let mut st = self.state();
        let st = &mut *st;
        for (queue_id, _) in starts {
            if let Some(q) = st.queues.get_mut(queue_id) {
                q.connections = q.connections.saturating_sub(1);
                if q.key.delivery_type != DeliveryType::MapiDelivery {
                    st.outbound = st.outbound.saturating_sub(1);
                }
            }
        }
    }

    /// Waits (at most `limit`) until every write queued so far is in the database. False when
    /// the limit passed first: those rows still show the old state, and the next start redoes
    /// what they describe.
    pub async fn flush_writes(&self, limit: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        self.write(Write::Flush(tx));
        matches!(tokio::time::timeout(limit, rx).await, Ok(Ok(())))
    }
}
