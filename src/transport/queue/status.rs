//! Queue and recipient statuses as Exchange shows them; strings only at the database's edge.

use std::fmt;

/// A delivery queue's Status (Get-Queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueStatus {
    Active,
    Ready,
    Retry,
    Suspended,
}

/// A recipient's status in message_recipient.status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecipientStatus {
    Ready,
    Retry,
    Delivered,
    Failed,
    /// Handed to a primary that accepted XSHADOW: kept in that primary's Shadow Redundancy
    /// queue until it reports the message done (XQDISCARD) or stops answering (resubmitted).
    Shadow,
}

const QUEUE: [(QueueStatus, &str); 4] = [
    (QueueStatus::Active, "Active"),
    (QueueStatus::Ready, "Ready"),
    (QueueStatus::Retry, "Retry"),
    (QueueStatus::Suspended, "Suspended"),
];

const RECIPIENT: [(RecipientStatus, &str); 5] = [
    (RecipientStatus::Ready, "Ready"),
    (RecipientStatus::Retry, "Retry"),
    (RecipientStatus::Delivered, "Delivered"),
    (RecipientStatus::Failed, "Failed"),
    (RecipientStatus::Shadow, "Shadow"),
];

impl QueueStatus {
    pub fn as_str(self) -> &'static str {
        QUEUE
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("", |(_, t)| t)
    }

    /// The database's text; None for anything the schema does not allow.
    pub fn parse(s: &str) -> Option<QueueStatus> {
        QUEUE.iter().find(|(_, t)| *t == s).map(|(q, _)| *q)
    }
}

impl RecipientStatus {
    pub fn as_str(self) -> &'static str {
        RECIPIENT
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("", |(_, t)| t)
    }

    pub fn parse(s: &str) -> Option<RecipientStatus> {
        RECIPIENT.iter().find(|(_, t)| *t == s).map(|(r, _)| *r)
    }

    /// Delivered and Failed end a recipient's life in the queue.
    pub fn is_final(self) -> bool {
        matches!(self, RecipientStatus::Delivered | RecipientStatus::Failed)
    }
}

impl fmt::Display for QueueStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RecipientStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_database_text() {
        for (s, t) in QUEUE {
            assert_eq!(QueueStatus::parse(t), Some(s));
            assert_eq!(s.to_string(), t);
        }
        for (s, t) in RECIPIENT {
            assert_eq!(RecipientStatus::parse(t), Some(s));
            assert_eq!(s.to_string(), t);
        }
        assert_eq!(QueueStatus::parse("ready"), None);
        assert_eq!(RecipientStatus::parse("Expanded"), None);
        assert!(RecipientStatus::Failed.is_final() && !RecipientStatus::Retry.is_final());
    }
}
