//! Resume at N messages per minute: the pace at which a queue's messages are handed to delivery
//! when its next hop comes back after an outage, so a primary that was down for hours is not
//! flooded with the whole backlog at once.

use std::fmt;
use std::time::Duration;

use sqlx::PgConnection;

use super::{QueueCommand, QueueError, QueueIdentity, QueueName, read, server_exists};

/// Messages handed to delivery per minute from one queue, 1..=10000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReleaseRate(u32);

impl ReleaseRate {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = 10_000;

    /// A rate as an administrator typed it (`-MessagesPerMinute`, the outage view's form).
    pub fn parse(text: &str) -> Result<ReleaseRate, QueueError> {
        let t = text.trim();
        let bad = || QueueError::BadReleaseRate(t.to_string());
        // Digits only: "+5", "5.0" and "0x5" are not what an administrator means by a count.
        if t.is_empty() || t.len() > 12 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u64 = t.parse().map_err(|_| bad())?;
        u32::try_from(n)
            .ok()
            .and_then(ReleaseRate::new)
            .ok_or_else(bad)
    }

    pub fn new(n: u32) -> Option<ReleaseRate> {
        (Self::MIN..=Self::MAX)
            .contains(&n)
            .then_some(ReleaseRate(n))
    }

    /// A stored rate (delivery_queue.release_rate, queue_command.rate); out of range reads as none.
    pub fn from_stored(n: Option<i32>) -> Option<ReleaseRate> {
        n.and_then(|n| u32::try_from(n).ok())
            .and_then(ReleaseRate::new)
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// As stored: the bounds fit an i32.
    pub fn stored(self) -> i32 {
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }

    /// The spacing between two messages: the bucket holds one token, refilled every
    /// minute / N, so the messages are spread evenly and never burst.
    pub fn interval(self) -> Duration {
        // 60_000 ms / 10_000 = 6 ms at most N; the bounds keep this exact enough and non-zero.
        Duration::from_micros(
            60_000_000u64
                .checked_div(u64::from(self.0))
                .unwrap_or(60_000_000),
        )
    }
}

impl fmt::Display for ReleaseRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A queue whose messages are delivered, for a rate: Unreachable and Shadow Redundancy queues
/// hand nothing to delivery.
pub(super) async fn paced_queue(
    conn: &mut PgConnection,
    id: &QueueIdentity,
    row: Option<&read::QueueRow>,
) -> Result<(), QueueError> {
    let held = matches!(id.queue, QueueName::Unreachable)
        || row.is_some_and(|r| {
            r.delivery_type == "Unreachable" || r.delivery_type == "ShadowRedundancy"
        });
    if held {
        if !server_exists(conn, &id.server).await? {
            return Err(QueueError::QueueNotFound(id.to_string()));
        }
        return Err(QueueError::NotSupported {
            action: "Resume-Queue -MessagesPerMinute",
            queue: id.to_string(),
            why: "its messages aren't delivered from it (Unreachable waits for a route, Shadow Redundancy for its primary), so there is nothing to pace.",
        });
    }
    Ok(())
}

impl QueueCommand {
    /// Resume-Queue -MessagesPerMinute on `identity`, read for the local server.
    pub fn resume_at_rate(
        identity: &str,
        local_server: &str,
        rate: ReleaseRate,
    ) -> Result<QueueCommand, QueueError> {
        Ok(QueueCommand::ResumeQueueAtRate {
            id: QueueIdentity::parse(identity, local_server)?,
            rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_numbers_within_bounds() {
        assert_eq!(ReleaseRate::parse("6").unwrap().get(), 6);
        assert_eq!(ReleaseRate::parse(" 10000 ").unwrap().get(), 10_000);
        assert_eq!(
            ReleaseRate::parse("1").unwrap().interval(),
            Duration::from_secs(60)
        );
        assert_eq!(
            ReleaseRate::parse("6").unwrap().interval(),
            Duration::from_secs(10)
        );
        for bad in [
            "",
            "0",
            "-5",
            "10001",
            "abc",
            "5.5",
            "+5",
            "99999999999999999999",
            "4294967302",
        ] {
            let e = ReleaseRate::parse(bad).unwrap_err();
            assert!(matches!(e, QueueError::BadReleaseRate(_)), "{bad}");
        }
        assert_eq!(
            QueueError::BadReleaseRate("0".into()).to_string(),
            "-MessagesPerMinute must be a whole number from 1 to 10000 (messages handed to delivery per minute); \"0\" isn't."
        );
        assert_eq!(ReleaseRate::from_stored(Some(0)), None);
        assert_eq!(
            ReleaseRate::from_stored(Some(20)).map(ReleaseRate::get),
            Some(20)
        );
    }
}
