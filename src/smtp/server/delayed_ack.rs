//! Delayed acknowledgement (reference §1.6): a sender that keeps no shadow copy of its message
//! gets the final 250 only once the message has reached its next hop, or once
//! MaxAcknowledgementDelay has passed, so a sender whose MTA deletes its copy on the 250 keeps it
//! while this node is the only one holding the message. The message is durable before the wait
//! begins: the wait only postpones the answer.

use std::time::{Duration, Instant};

use super::auth::span_text;
use super::session::Session;
use crate::transport::queue::manager::AckWaiter;

/// Kept back from ConnectionTimeout for writing the 250 itself: a wait that used the whole of it
/// would leave the durable message unacknowledged, and the sender would send it again.
const WRITE_MARGIN: Duration = Duration::from_secs(5);

/// The wait, as the protocol log's context field names its end.
enum Ended {
    /// Every recipient reached its next hop (Exchange's word).
    Delivered,
    /// MaxAcknowledgementDelay passed first. The reference quotes only `Delivered`; hubgate
    /// writes `Expired` for this case.
    Expired,
    ClientGone,
}

impl Session {
    /// How long the 250 may be held back now: the connector's MaxAcknowledgementDelay as the
    /// current configuration has it (Set-ReceiveConnector applies to open sessions too), within
    /// what ConnectionTimeout leaves of the session. Zero: no wait.
    pub fn ack_delay(&self) -> Duration {
        let org = self.gw.org();
        let secs = org
            .receive_connectors
            .iter()
            .find(|c| c.id == self.connector.id)
            .map_or(self.connector.max_acknowledgement_delay, |c| {
                c.max_acknowledgement_delay
            });
        let max = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
        max.min(self.time_left().saturating_sub(WRITE_MARGIN))
    }

    /// Holds back the final 250 until `waiter` says the message reached its next hop, or `limit`
    /// passed. The client's connection is watched meanwhile: one that closes it ends the wait
    /// (and the session) at once, so it does not hold its connection slot for nothing; the
    /// message stays queued. Returns false when the client went away.
    pub async fn delay_ack(
        &mut self,
        mut waiter: AckWaiter,
        limit: Duration,
        buf: &mut [u8],
    ) -> bool {
        if !self.flush().await {
            return false;
        }
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + limit;
        // Until the client sends something (a pipelined command), a read can only end in its
        // close; after that the rest of the input waits for the session to read it.
        let mut watching = true;
        let ended = loop {
            let Some(stream) = self.stream.as_mut() else {
                break Ended::ClientGone;
            };
            let read = tokio::select! {
                _ = waiter.reached() => break Ended::Delivered,
                _ = tokio::time::sleep_until(deadline) => break Ended::Expired,
                r = stream.read(buf), if watching => r,
            };
            match read {
                Ok(n) if n > 0 => {
                    self.reader.push(&buf[..n]);
                    watching = false;
                }
                _ => break Ended::ClientGone,
            }
        };
        drop(waiter);
        let waited = span_text(started.elapsed());
        let context = match ended {
            Ended::Delivered => "Delivered",
            Ended::Expired => "Expired",
            Ended::ClientGone => {
                self.stream = None;
                self.log_event(
                    '*',
                    &format!("Tarpit for '{waited}' due to 'DelayedAck'"),
                    "Client disconnected",
                );
                return false;
            }
        };
        self.log_event(
            '*',
            &format!("Tarpit for '{waited}' due to 'DelayedAck'"),
            context,
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_is_written_as_exchange_writes_it() {
        assert_eq!(span_text(Duration::from_millis(25_639)), "0.00:00:25.639");
        assert_eq!(span_text(Duration::ZERO), "0.00:00:00.000");
        assert_eq!(
            span_text(Duration::from_millis(90_061_005)),
            "1.01:01:01.005"
        );
    }
}
