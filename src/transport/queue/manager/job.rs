//! What the queue manager hands out and takes back: submitted messages, delivery jobs, outcomes.

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
}

/// Where an attempt went, for the history and the NDR's Remote-MTA.
#[derive(Clone, Debug, Default)]
pub struct Attempt {
    pub host: Option<String>,
    pub ip: Option<IpAddr>,
    pub tls_version: Option<String>,
}

/// One message's recipients handed to a delivery task. Dropping it without `finish` (a panic
/// in the delivery code, a cancelled task) gives its recipients back; a panic also counts as a
/// crash towards PoisonThreshold.
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
    pub(super) fn new(qm: &QueueManager, meta: &Submitted, recipients: Vec<JobRecipient>) -> Job {
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
            guard: JobGuard::new(qm),
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

pub(super) struct JobGuard {
    pub(super) qm: Option<QueueManager>,
    pub(super) finished: std::sync::atomic::AtomicBool,
}

impl JobGuard {
    pub(super) fn new(qm: &QueueManager) -> JobGuard {
        JobGuard {
            qm: Some(qm.clone()),
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
        if let Some(qm) = self.guard.qm.take() {
            let ordinals: Vec<i32> = self.recipients.iter().map(|r| r.ordinal).collect();
            qm.abandoned(self.message, &ordinals, std::thread::panicking());
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
