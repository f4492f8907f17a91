//! The Messages tab's unfiltered totals from what the manager holds, so that a page of a
//! 100,000-message backlog is not counted by scanning every held recipient on each view.

use super::state::{Msg, RState};
use crate::transport::queue::ops::HeldEntries;

/// Get-Message entries in the delivery queues (queue rows: next hops, Unreachable, shadow
/// queues) of the messages held, as the SQL count of a scope sees them: `Some(q)` for one queue
/// row, `None` for every queue row of this server. A message is one entry per queue where one
/// of its recipients is not final; `spanning` says some message is in several queues, or also
/// in Submission (a recipient without a queue), where entries and messages differ and the
/// caller counts in SQL. Messages with no recipient in a queue row are left to that SQL count
/// (Submission), as are poison messages, which the manager does not hold.
pub(super) fn held_entries<'a>(
    messages: impl Iterator<Item = &'a Msg>,
    queue: Option<i64>,
) -> HeldEntries {
    let mut out = HeldEntries::default();
    for m in messages {
        let mut open = m.rcpts.iter().filter(|r| r.state != RState::Done);
        let counted = match queue {
            Some(q) => open.any(|r| r.queue == Some(q)),
            None => {
                let Some(first) = open.next() else { continue };
                let mut queued = first.queue.is_some();
                for r in open {
                    queued |= r.queue.is_some();
                    if r.queue != first.queue {
                        out.spanning = true;
                    }
                }
                queued
            }
        };
        if counted {
            out.messages += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::admin::tests::{message, rcpt};
    use super::*;
    use uuid::Uuid;

    fn entries(ms: &[Msg], queue: Option<i64>) -> (i64, bool) {
        let h = held_entries(ms.iter(), queue);
        (h.messages, h.spanning)
    }

    #[test]
    fn one_entry_per_message_and_queue_with_a_recipient_not_final() {
        let ms = vec![
            message(Uuid::new_v4(), vec![rcpt(0, Some(1), RState::Retry)]),
            message(
                Uuid::new_v4(),
                vec![
                    rcpt(0, Some(1), RState::InFlight),
                    rcpt(1, Some(1), RState::Reporting),
                ],
            ),
            // Delivered everywhere but its shadow copy: in the shadow queue.
            message(
                Uuid::new_v4(),
                vec![
                    rcpt(0, Some(2), RState::Done),
                    rcpt(1, Some(7), RState::Shadow),
                ],
            ),
            // Final: in no queue.
            message(Uuid::new_v4(), vec![rcpt(0, Some(1), RState::Done)]),
            // In Submission only: counted in SQL.
            message(Uuid::new_v4(), vec![rcpt(0, None, RState::Ready)]),
        ];
        assert_eq!(entries(&ms, None), (3, false));
        assert_eq!(entries(&ms, Some(1)), (2, false));
        assert_eq!(entries(&ms, Some(2)), (0, false));
        assert_eq!(entries(&ms, Some(7)), (1, false));
    }

    #[test]
    fn a_message_in_two_queues_or_in_a_queue_and_submission_spans() {
        let two = vec![message(
            Uuid::new_v4(),
            vec![
                rcpt(0, Some(1), RState::Retry),
                rcpt(1, Some(2), RState::Ready),
            ],
        )];
        assert_eq!(entries(&two, None), (1, true));
        assert_eq!(entries(&two, Some(2)), (1, false));
        let routed_in_part = vec![message(
            Uuid::new_v4(),
            vec![
                rcpt(0, None, RState::Ready),
                rcpt(1, Some(2), RState::Retry),
            ],
        )];
        assert_eq!(entries(&routed_in_part, None), (1, true));
        // A final recipient elsewhere does not make an entry.
        let done_elsewhere = vec![message(
            Uuid::new_v4(),
            vec![
                rcpt(0, Some(1), RState::Done),
                rcpt(1, Some(2), RState::Retry),
            ],
        )];
        assert_eq!(entries(&done_elsewhere, None), (1, false));
    }
}
