//! The contract between the queue manager and delivery: submitted messages, the jobs a delivery
//! agent takes from a queue's `Lane`, and the per-recipient outcomes it hands back. Delivery
//! sees only this file; the manager sees only `Deliver` and `Target`, never how a hop is spoken.

use std::future::Future;
use std::pin::Pin;

use super::*;

/// A message as the queue manager knows it.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub id: Uuid,
    pub internal_id: i64,
    pub from: String,
    pub size: u64,
    pub received_at: OffsetDateTime,
    pub env_id: Option<String>,
    pub ret: Option<String>,
    pub body_8bit: bool,
    pub smtp_utf8: bool,
    pub subject: Option<String>,
    pub internet_message_id: Option<String>,
    pub source_ip: Option<IpAddr>,
    /// Received from an authenticated session: the backscatter rule leaves its DSNs alone.
    pub authenticated: bool,
    pub suspended: bool,
    pub crash_count: i32,
    pub recipients: Vec<SubmittedRecipient>,
    /// Its rows were committed but its body is not in the spool (found at start-up).
    pub body_lost: bool,
}

#[derive(Clone, Debug)]
pub struct SubmittedRecipient {
    pub ordinal: i32,
    pub address: String,
    pub orcpt: Option<String>,
    pub notify: Option<String>,
    pub retry_count: i32,
    pub last_error: Option<String>,
    pub next_retry: Option<OffsetDateTime>,
    pub delay_notified: bool,
    pub remove_with_ndr: Option<bool>,
    /// A shadow copy (loaded at start): the shadow queue it waits in.
    pub shadow_queue: Option<i64>,
}

impl Submitted {
    /// The message as a DSN reports on it.
    pub(super) fn original<'a>(&'a self, content: &'a [u8]) -> Original<'a> {
        Original {
            sender: &self.from,
            env_id: self.env_id.as_deref(),
            ret: self.ret.as_deref(),
            arrival_date: self.received_at,
            content,
        }
    }

    /// The message just accepted by the SMTP server.
    pub fn accepted(env: &Envelope, internal_id: i64, size: u64) -> Submitted {
        Submitted {
            id: env.id,
            internal_id,
            from: env.from.clone(),
            size,
            received_at: OffsetDateTime::now_utc(),
            env_id: env.env_id.clone(),
            ret: env.ret.clone(),
            body_8bit: env.body_type.as_deref() == Some("8BITMIME"),
            smtp_utf8: env.smtp_utf8,
            subject: env.subject.clone(),
            internet_message_id: env.internet_message_id.clone(),
            source_ip: Some(env.source_ip),
            authenticated: env.auth_user.is_some(),
            suspended: false,
            crash_count: 0,
            body_lost: false,
            recipients: env
                .recipients
                .iter()
                .enumerate()
                .map(|(i, r)| SubmittedRecipient {
                    ordinal: i as i32,
                    address: r.address.clone(),
                    orcpt: r.orcpt.clone(),
                    notify: r.notify.clone(),
                    retry_count: 0,
                    last_error: None,
                    next_retry: None,
                    delay_notified: false,
                    remove_with_ndr: None,
                    shadow_queue: None,
                })
                .collect(),
        }
    }
}

/// What a delivery task got for one recipient.
#[derive(Clone, Debug)]
pub enum Outcome {
    Delivered {
        reply: Reply,
    },
    /// Permanent: NDR.
    Failed {
        reply: Reply,
    },
    /// Transient: try again after MessageRetryInterval.
    Deferred {
        reply: Reply,
    },
    /// Accepted by a primary in a shadowed session: kept here as a shadow copy until the
    /// primary reports the message done.
    Shadowed {
        reply: Reply,
        primary: Arc<super::shadow::Primary>,
    },
}

/// Where an attempt went, for the history and the NDR's Remote-MTA.
#[derive(Clone, Debug, Default)]
pub struct Attempt {
    pub host: Option<String>,
    pub ip: Option<IpAddr>,
    pub tls_version: Option<String>,
}

/// One message's recipients handed to a delivery task. Dropping it without reporting it (a
/// panic in the delivery code, a cancelled task) gives its recipients back; a panic also counts
/// as a crash towards PoisonThreshold.
#[derive(Debug)]
pub struct Job {
    pub message: Uuid,
    pub internal_id: i64,
    pub from: String,
    pub size: u64,
    pub body_8bit: bool,
    pub smtp_utf8: bool,
    pub env_id: Option<String>,
    pub ret: Option<String>,
    pub subject: Option<String>,
    pub internet_message_id: Option<String>,
    pub recipients: Vec<JobRecipient>,
    pub(super) guard: JobGuard,
}

impl Job {
    pub(super) fn new(
        back: Arc<dyn GiveBack>,
        meta: &Submitted,
        recipients: Vec<JobRecipient>,
    ) -> Job {
        Job {
            message: meta.id,
            internal_id: meta.internal_id,
            from: meta.from.clone(),
            size: meta.size,
            body_8bit: meta.body_8bit,
            smtp_utf8: meta.smtp_utf8,
            env_id: meta.env_id.clone(),
            ret: meta.ret.clone(),
            subject: meta.subject.clone(),
            internet_message_id: meta.internet_message_id.clone(),
            recipients,
            guard: JobGuard::new(back),
        }
    }

    /// The same outcome for every recipient of the job.
    pub fn all(&self, outcome: impl Fn() -> Outcome) -> Vec<(i32, Outcome)> {
        self.recipients
            .iter()
            .map(|r| (r.ordinal, outcome()))
            .collect()
    }
}

#[cfg(test)]
impl Job {
    /// A job no manager handed out, for testing a delivery agent alone: dropping it gives
    /// nothing back.
    pub(crate) fn detached(message: Uuid, from: &str, recipients: Vec<JobRecipient>) -> Job {
        Job {
            message,
            internal_id: 0,
            from: from.to_string(),
            size: 0,
            body_8bit: false,
            smtp_utf8: false,
            env_id: None,
            ret: None,
            subject: None,
            internet_message_id: None,
            recipients,
            guard: JobGuard {
                back: None,
                finished: std::sync::atomic::AtomicBool::new(false),
            },
        }
    }
}

/// Where an unreported job's recipients go back to (the manager that handed it out).
pub(super) trait GiveBack: Send + Sync {
    fn abandoned(&self, message: Uuid, ordinals: &[i32], panicked: bool);
}

pub(super) struct JobGuard {
    back: Option<Arc<dyn GiveBack>>,
    finished: std::sync::atomic::AtomicBool,
}

impl JobGuard {
    fn new(back: Arc<dyn GiveBack>) -> JobGuard {
        JobGuard {
            back: Some(back),
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(super) fn disarm(&self) {
        self.finished
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl std::fmt::Debug for JobGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobGuard")
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self
            .guard
            .finished
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        if let Some(back) = self.guard.back.take() {
            let ordinals: Vec<i32> = self.recipients.iter().map(|r| r.ordinal).collect();
            back.abandoned(self.message, &ordinals, std::thread::panicking());
        }
    }
}

#[derive(Clone, Debug)]
pub struct JobRecipient {
    pub ordinal: i32,
    /// Where it really goes: a contact's external address or the address itself.
    pub address: String,
    pub notify: Option<String>,
    pub orcpt: Option<String>,
}

/// What a delivery queue delivers to: the manager names it, a delivery agent knows how.
#[derive(Clone, Debug)]
pub enum Target {
    /// MapiDelivery: this server's mailboxes.
    Mailbox,
    /// A next hop reached over SMTP through a send connector.
    Smtp(Route),
}

/// One job's per-recipient outcomes and where the attempt went.
#[derive(Debug)]
pub struct Delivered {
    pub job: Job,
    pub results: Vec<(i32, Outcome)>,
    pub attempt: Attempt,
}

/// No host of the next hop could be reached: the queue waits for its retry, the `jobs` taken
/// for this connection go back, and every waiting recipient shows `reply`.
#[derive(Debug)]
pub struct ConnectionFailed {
    pub reply: Reply,
    pub attempt: Attempt,
    pub jobs: Vec<Job>,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One delivery queue as a delivery agent sees it: where it takes the next message (so one
/// connection carries several, up to SmtpMaxMessagesPerConnection) and reports what happened.
pub trait Lane: Send + Sync {
    /// The next message of this queue, its recipients marked in flight; None when nothing is
    /// ready (or the queue is suspended).
    fn next_job(&self) -> Option<Job>;
    /// The agent reached the next hop: the queue's connection failures are over.
    fn connected(&self);
    fn connection_failed(&self, failure: ConnectionFailed);
    /// Recorded (and any NDR queued) before it returns, so the next job sees the outcome.
    fn delivered(&self, outcome: Delivered) -> BoxFuture<'_, ()>;
    /// Where a shadowed session reports what the primary said (its dbid, its discards); None
    /// where nothing stands behind the lane to keep shadow copies.
    fn shadow_book(&self) -> Option<Arc<dyn ShadowBook>> {
        None
    }
}

/// The shadow copies of each primary, as a session to that primary sees them (reference §1.2,
/// §1.3). The queue manager keeps them; a session only reports.
pub trait ShadowBook: Send + Sync {
    /// The primary accepted XSHADOW with `p.dbid`: it is alive, and a dbid other than the one
    /// its copies were made with resubmits them (ShadowStateChange).
    fn contact<'a>(&'a self, p: &'a super::shadow::Primary) -> BoxFuture<'a, ()>;
    /// False while the primary of `key` is distrusted (it broke the XQDISCARD contract): the
    /// session then keeps no copies with it.
    fn trusted(&self, key: &NextHopKey) -> bool;
    /// Copies are held for the primary of `key`.
    fn holds(&self, key: &NextHopKey) -> bool;
    /// XQDISCARD named these ids; returns whether copies remain.
    fn discarded(&self, key: &NextHopKey, ids: &[String]) -> bool;
    /// An empty or over-long discard id: the copies are resubmitted, the primary distrusted.
    fn violation(&self, key: &NextHopKey);
}

impl ShadowBook for QueueManager {
    fn contact<'a>(&'a self, p: &'a super::shadow::Primary) -> BoxFuture<'a, ()> {
        Box::pin(self.shadow_contact(p))
    }

    fn trusted(&self, key: &NextHopKey) -> bool {
        self.shadow_trusted(key)
    }

    fn holds(&self, key: &NextHopKey) -> bool {
        self.shadow_holds(key)
    }

    fn discarded(&self, key: &NextHopKey, ids: &[String]) -> bool {
        self.shadow_discarded(key, ids)
    }

    fn violation(&self, key: &NextHopKey) {
        self.shadow_violation(key);
    }
}

/// The delivery agents (SMTP, mailbox; shadow next): one call runs one connection or one
/// mailbox worker for a queue, taking jobs from `lane` until it has none or must stop.
pub trait Deliver: Send + Sync + 'static {
    fn run(self: Arc<Self>, target: Target, lane: Box<dyn Lane>) -> BoxFuture<'static, ()>;
}

/// The NDR reason for a message whose body was lost from the spool.
pub fn body_lost_reply() -> Reply {
    Reply::new(
        550,
        "5.3.0",
        "QUEUE.BodyLost; message body lost from the queue and cannot be delivered",
    )
}
