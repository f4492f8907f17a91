//! The manager's in-memory state: messages, recipients and queues, and their database rows.

use super::*;
use crate::transport::queue::ops::rate::ReleaseRate;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RState {
    Ready,
    Retry,
    InFlight,
    /// Final (failed), but its NDR could not be queued yet: kept, with its message, until it is.
    Reporting,
    Done,
    /// Handed to a primary that keeps it; this node holds the shadow copy in the primary's
    /// Shadow Redundancy queue (no timer touches it).
    Shadow,
}

#[derive(Debug)]
pub(super) struct Rcpt {
    pub(super) ordinal: i32,
    pub(super) address: String,
    pub(super) route_address: Option<String>,
    pub(super) orcpt: Option<String>,
    pub(super) notify: Option<String>,
    pub(super) queue: Option<i64>,
    pub(super) state: RState,
    pub(super) retry_count: i32,
    pub(super) last_error: Option<String>,
    pub(super) next_retry: Option<OffsetDateTime>,
    pub(super) delay_notified: bool,
    pub(super) remove_with_ndr: Option<bool>,
    pub(super) timeouts: Option<EffectiveTimeouts>,
    /// The last remote host that answered, for the NDR.
    pub(super) remote_mta: Option<String>,
    /// Consecutive failures to queue this recipient's DSN (NDR or delay), for the backoff.
    pub(super) dsn_failures: u32,
    /// When the DSN that could not be queued is tried again.
    pub(super) dsn_due: Option<OffsetDateTime>,
    /// Reporting: the final reply its NDR will carry.
    pub(super) final_reply: Option<Reply>,
    /// Consecutive categorizer or routing failures (database errors), for the backoff.
    pub(super) submit_failures: u32,
}

#[derive(Debug)]
pub(super) struct Msg {
    pub(super) meta: Submitted,
    pub(super) suspended: bool,
    /// Delivery panics so far (message.crash_count).
    pub(super) crashes: i32,
    pub(super) rcpts: Vec<Rcpt>,
}

#[derive(Debug)]
pub(super) struct Queue {
    pub(super) key: NextHopKey,
    pub(super) route: Option<Route>,
    pub(super) suspended: bool,
    pub(super) status: QueueStatus,
    pub(super) last_error: Option<String>,
    pub(super) last_retry: Option<OffsetDateTime>,
    pub(super) next_retry: Option<OffsetDateTime>,
    /// Consecutive connection failures: TransientFailureRetryCount of them are retried at
    /// TransientFailureRetryInterval, the rest at OutboundConnectionFailureRetryInterval.
    pub(super) failures: u32,
    pub(super) connections: usize,
    pub(super) ready: VecDeque<Uuid>,
    pub(super) pending: HashSet<Uuid>,
    /// Resume-Queue -MessagesPerMinute: a controlled release, until the queue empties.
    pub(super) release: Option<Release>,
}

/// A token bucket of depth one: a message may be handed to delivery at `next`, and each one
/// handed moves `next` one interval (a minute / N) on, so a returning next hop sees the backlog
/// evenly spread and never a burst.
#[derive(Debug, Clone, Copy)]
pub(super) struct Release {
    pub(super) rate: ReleaseRate,
    pub(super) next: Option<OffsetDateTime>,
}

impl Release {
    pub(super) fn new(rate: ReleaseRate) -> Release {
        Release { rate, next: None }
    }

    pub(super) fn due(&self, now: OffsetDateTime) -> bool {
        self.next.is_none_or(|t| t <= now)
    }

    /// One message was handed to delivery at `now`.
    pub(super) fn took(&mut self, now: OffsetDateTime) {
        self.next = now.checked_add(self.rate.interval().try_into().unwrap_or_default());
    }
}

impl Queue {
    pub(super) fn push(&mut self, id: Uuid) {
        if self.pending.insert(id) {
            self.ready.push_back(id);
        }
    }

    pub(super) fn shown_status(&self) -> QueueStatus {
        if self.suspended {
            QueueStatus::Suspended
        } else if self.connections > 0 {
            QueueStatus::Active
        } else if self.next_retry.is_some() {
            QueueStatus::Retry
        } else {
            QueueStatus::Ready
        }
    }
}

#[derive(Default)]
pub(super) struct State {
    pub(super) messages: HashMap<Uuid, Msg>,
    pub(super) queues: HashMap<i64, Queue>,
    pub(super) by_key: HashMap<NextHopKey, i64>,
    pub(super) outbound: usize,
    /// Messages in the Poison queue: not held here, but watched for Resume-Message.
    pub(super) poisoned: HashSet<Uuid>,
    /// Queue commands on messages accepted but not filed by the submitter yet.
    pub(super) held: HashMap<Uuid, super::admin::Held>,
    /// The primary of each shadow queue.
    pub(super) primaries: HashMap<i64, super::shadow::PrimaryState>,
    /// Primaries that broke the XQDISCARD contract, not trusted with copies until then: their
    /// resubmitted copies would otherwise go back to them, be shadowed and resubmitted again.
    pub(super) distrusted: HashMap<NextHopKey, OffsetDateTime>,
    /// Discard ids a primary returned for a message of ours before its copy was filed (another
    /// session's XQDISCARD can beat the outcome of the one that handed it over): the copy is
    /// final as soon as it is filed.
    pub(super) early_discards: HashMap<Uuid, (NextHopKey, OffsetDateTime)>,
}

pub(super) fn queue_row(id: i64, q: &Queue) -> QueueRow {
    QueueRow {
        id,
        status: q.shown_status(),
        last_error: q.last_error.clone(),
        last_retry: q.last_retry,
        next_retry: q.next_retry,
    }
}

pub(super) fn recipient_row(
    message: Uuid,
    r: &Rcpt,
    status: RecipientStatus,
    now: OffsetDateTime,
) -> RecipientRow {
    RecipientRow {
        message,
        ordinal: r.ordinal,
        status,
        retry_count: r.retry_count,
        last_error: r.last_error.clone(),
        last_retry: Some(now),
        next_retry: if status == RecipientStatus::Retry {
            r.next_retry
        } else {
            None
        },
        delay_notified: r.delay_notified,
    }
}

pub(super) fn attempt_row(
    message: Uuid,
    ordinal: i32,
    now: OffsetDateTime,
    a: &Attempt,
    reply: &str,
) -> AttemptRow {
    AttemptRow {
        message,
        ordinal,
        at: now,
        next_hop: a.host.clone(),
        remote_ip: a.ip.map(|ip| ip.to_string()),
        reply: reply.to_string(),
        tls_version: a.tls_version.clone(),
    }
}
