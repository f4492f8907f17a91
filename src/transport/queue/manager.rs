//! The queue manager: Submission, one delivery queue per next hop, Unreachable; Exchange's queue
//! states and the Limits tab's timers (reference §6).
//!
//! Ready work lives in memory: accepted messages arrive through `submit` (no database poll),
//! a restart loads what the database still holds. One scheduler task runs the timers and starts
//! delivery tasks within the connection caps; delivery tasks take messages from their queue until
//! it is empty or the connector's SmtpMaxMessagesPerConnection is reached, and report outcomes
//! here. Everything that must survive a restart goes to `writer` in batches.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use uuid::Uuid;

use super::writer::{self, AdminState, AttemptRow, QueueRow, RecipientRow, RoutedRow, Write};
use super::{Disposition, Envelope, EnvelopeRecipient, Spool};
use crate::logs::tracking::{TrackingEvent, TrackingLog};
use crate::org::{Org, TransportServer};
use crate::smtp::proto::Reply;
use crate::transport::categorizer::{self, Resolution};
use crate::transport::delivery::mailbox::Mailboxes;
use crate::transport::dsn::{self, Original, RecipientOutcome, Reporter};
use crate::transport::routing::{
    Decision, DeliveryType, EffectiveTimeouts, NextHopKey, Route, RoutingTable, effective_timeouts,
};

/// How often the timers run when nothing wakes the scheduler sooner.
const TICK: Duration = Duration::from_millis(500);
/// Messages categorized per submission batch.
const SUBMIT_BATCH: usize = 256;

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
    fn original<'a>(&'a self, content: &'a [u8]) -> Original<'a> {
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
    guard: JobGuard,
}

impl Job {
    fn new(qm: &QueueManager, meta: &Submitted, recipients: Vec<JobRecipient>) -> Job {
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

struct JobGuard {
    qm: Option<QueueManager>,
    finished: std::sync::atomic::AtomicBool,
}

impl JobGuard {
    fn new(qm: &QueueManager) -> JobGuard {
        JobGuard {
            qm: Some(qm.clone()),
            finished: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn disarm(&self) {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RState {
    Ready,
    Retry,
    InFlight,
    Done,
}

#[derive(Debug)]
struct Rcpt {
    ordinal: i32,
    address: String,
    route_address: Option<String>,
    orcpt: Option<String>,
    notify: Option<String>,
    queue: Option<i64>,
    state: RState,
    retry_count: i32,
    last_error: Option<String>,
    next_retry: Option<OffsetDateTime>,
    delay_notified: bool,
    remove_with_ndr: Option<bool>,
    timeouts: Option<EffectiveTimeouts>,
    /// The last remote host that answered, for the NDR.
    remote_mta: Option<String>,
}

#[derive(Debug)]
struct Msg {
    meta: Submitted,
    suspended: bool,
    /// Delivery panics so far (message.crash_count).
    crashes: i32,
    rcpts: Vec<Rcpt>,
}

#[derive(Debug)]
struct Queue {
    key: NextHopKey,
    route: Option<Route>,
    suspended: bool,
    status: &'static str,
    last_error: Option<String>,
    last_retry: Option<OffsetDateTime>,
    next_retry: Option<OffsetDateTime>,
    /// Consecutive connection failures: TransientFailureRetryCount of them are retried at
    /// TransientFailureRetryInterval, the rest at OutboundConnectionFailureRetryInterval.
    failures: u32,
    connections: usize,
    ready: VecDeque<Uuid>,
    pending: HashSet<Uuid>,
}

impl Queue {
    fn push(&mut self, id: Uuid) {
        if self.pending.insert(id) {
            self.ready.push_back(id);
        }
    }

    fn shown_status(&self) -> &'static str {
        if self.suspended {
            "Suspended"
        } else if self.connections > 0 {
            "Active"
        } else if self.next_retry.is_some() {
            "Retry"
        } else {
            "Ready"
        }
    }
}

#[derive(Default)]
struct State {
    messages: HashMap<Uuid, Msg>,
    queues: HashMap<i64, Queue>,
    by_key: HashMap<NextHopKey, i64>,
    outbound: usize,
    /// Messages in the Poison queue: not held here, but watched for Resume-Message.
    poisoned: HashSet<Uuid>,
}

pub struct Settings {
    pub server_name: String,
    pub fqdn: String,
    pub data_dir: std::path::PathBuf,
}

struct Inner {
    pool: PgPool,
    spool: Spool,
    org: watch::Receiver<Arc<Org>>,
    server: String,
    fqdn: String,
    mailboxes: Mailboxes,
    tracking: TrackingLog,
    delivery: crate::transport::delivery::smtp::Context,
    state: Mutex<State>,
    wake: Notify,
    writes: mpsc::UnboundedSender<Write>,
    submissions: mpsc::UnboundedSender<Submission>,
}

enum Submission {
    New(Submitted),
    /// Recipients whose queue an administrator cleared (Retry-Queue -Resubmit).
    Reroute(Uuid),
}

/// The handle the SMTP server, the DSN path and the admin listener use.
#[derive(Clone)]
pub struct QueueManager {
    inner: Arc<Inner>,
}

impl QueueManager {
    /// Loads what the database holds for this server and starts the manager's tasks.
    pub async fn start(
        pool: PgPool,
        spool: Spool,
        org: watch::Receiver<Arc<Org>>,
        settings: Settings,
        tracking: TrackingLog,
        db_url: Option<String>,
    ) -> Result<QueueManager, sqlx::Error> {
        let (wtx, wrx) = mpsc::unbounded_channel();
        let (stx, srx) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(
            pool.clone(),
            spool.clone(),
            settings.server_name.clone(),
            wrx,
        ));
        let inner = Arc::new(Inner {
            mailboxes: Mailboxes::new(&settings.data_dir, &settings.fqdn),
            delivery: crate::transport::delivery::smtp::Context::new(&settings.data_dir),
            pool: pool.clone(),
            spool,
            org,
            server: settings.server_name.clone(),
            fqdn: settings.fqdn.clone(),
            tracking,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            writes: wtx,
            submissions: stx,
        });
        let qm = QueueManager { inner };
        let poisoned: Vec<(Uuid,)> =
            sqlx::query_as("SELECT id FROM message WHERE server = $1 AND poison")
                .bind(&settings.server_name)
                .fetch_all(&pool)
                .await?;
        qm.state().poisoned = poisoned.into_iter().map(|(id,)| id).collect();
        for m in load_pending(&pool, &settings.server_name, None).await? {
            let _ = qm.inner.submissions.send(Submission::New(m));
        }
        tokio::spawn(submitter(qm.clone(), srx));
        tokio::spawn(scheduler(qm.clone()));
        if let Some(url) = db_url {
            tokio::spawn(admin_listener(qm.clone(), url));
        }
        Ok(qm)
    }

    /// Hands an accepted (durable) message to the queues.
    pub fn submit(&self, m: Submitted) {
        let _ = self.inner.submissions.send(Submission::New(m));
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, w: Write) {
        let _ = self.inner.writes.send(w);
    }

    /// The next message of `queue_id` for a delivery task, its recipients marked in flight.
    pub fn take_job(&self, queue_id: i64) -> Option<Job> {
        let mut st = self.state();
        let st = &mut *st;
        let q = st.queues.get_mut(&queue_id)?;
        if q.suspended {
            return None;
        }
        while let Some(id) = q.ready.pop_front() {
            q.pending.remove(&id);
            let Some(m) = st.messages.get_mut(&id) else {
                continue;
            };
            if m.suspended {
                continue;
            }
            let mut recipients = Vec::new();
            for r in m.rcpts.iter_mut() {
                if r.queue == Some(queue_id)
                    && r.state == RState::Ready
                    && r.remove_with_ndr.is_none()
                {
                    r.state = RState::InFlight;
                    recipients.push(JobRecipient {
                        ordinal: r.ordinal,
                        address: r.route_address.clone().unwrap_or_else(|| r.address.clone()),
                        notify: r.notify.clone(),
                        orcpt: r.orcpt.clone(),
                    });
                }
            }
            if recipients.is_empty() {
                continue;
            }
            return Some(Job::new(self, &m.meta, recipients));
        }
        None
    }

    /// A delivery task could not reach any host of the queue's next hop: the queue goes to Retry.
    /// `jobs` are the messages it had taken (they go back), and every waiting recipient shows the error.
    pub fn connection_failed(
        &self,
        queue_id: i64,
        reply: &Reply,
        attempt: &Attempt,
        jobs: Vec<Job>,
    ) {
        let now = OffsetDateTime::now_utc();
        let org = self.inner.org.borrow().clone();
        let text = reply.one_line();
        for job in &jobs {
            job.guard.disarm();
        }
        let mut writes = Vec::new();
        {
            let mut st = self.state();
            let st = &mut *st;
            for job in &jobs {
                if let Some(m) = st.messages.get_mut(&job.message) {
                    for r in m.rcpts.iter_mut().filter(|r| r.state == RState::InFlight) {
                        if job.recipients.iter().any(|j| j.ordinal == r.ordinal) {
                            r.state = RState::Ready;
                        }
                    }
                }
                if let Some(q) = st.queues.get_mut(&queue_id) {
                    q.push(job.message);
                }
            }
            let Some(q) = st.queues.get_mut(&queue_id) else {
                return;
            };
            q.failures += 1;
            let next = now + connection_retry_interval(&org.server, q.failures);
            q.last_error = Some(text.clone());
            q.last_retry = Some(now);
            q.next_retry = Some(next);
            writes.push(Write::Queue(queue_row(queue_id, q)));
            let waiting: Vec<Uuid> = q.ready.iter().copied().collect();
            for id in waiting {
                let Some(m) = st.messages.get_mut(&id) else {
                    continue;
                };
                for r in m.rcpts.iter_mut() {
                    if r.queue == Some(queue_id) && r.state == RState::Ready {
                        r.retry_count += 1;
                        r.last_error = Some(text.clone());
                        r.next_retry = Some(next);
                        writes.push(Write::Recipient(recipient_row(id, r, "Retry", now)));
                        writes.push(Write::Attempt(attempt_row(
                            id, r.ordinal, now, attempt, &text,
                        )));
                    }
                }
            }
        }
        for w in writes {
            self.write(w);
        }
    }

    fn track_admin(&self, event_id: &str, source: &str, m: &Submitted) {
        let recipients: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
        self.inner.tracking.record(&TrackingEvent {
            event_id,
            source,
            client_ip: None,
            client_hostname: None,
            server_ip: None,
            server_hostname: Some(&self.inner.fqdn),
            source_context: None,
            connector_id: None,
            internal_message_id: m.internal_id,
            message_id: m.internet_message_id.as_deref(),
            recipients: &recipients,
            recipient_status: &[],
            total_bytes: m.size,
            related_recipient_address: None,
            reference: None,
            subject: m.subject.as_deref(),
            sender: &m.from,
            return_path: &m.from,
            message_info: None,
            directionality: None,
        });
    }

    /// A job was dropped unfinished. After a panic in its delivery the message counts a crash,
    /// and at PoisonThreshold crashes it goes to the Poison queue (permanently suspended until an
    /// administrator releases it); otherwise its recipients are ready again.
    fn abandoned(&self, message: Uuid, ordinals: &[i32], panicked: bool) {
        let org = self.inner.org.borrow().clone();
        let mut write = None;
        {
            let mut st = self.state();
            let st = &mut *st;
            let Some(m) = st.messages.get_mut(&message) else {
                return;
            };
            if panicked {
                m.crashes += 1;
                let poison = org.server.poison_message_detection_enabled
                    && m.crashes >= org.server.poison_threshold;
                write = Some(Write::Crashed {
                    message,
                    crash_count: m.crashes,
                    poison,
                });
                if poison {
                    self.track_admin("POISONMESSAGE", "POISONMESSAGE", &m.meta);
                    tracing::error!(
                        "message {message} crashed delivery {} times: moved to the Poison queue",
                        m.crashes
                    );
                    st.messages.remove(&message);
                    st.poisoned.insert(message);
                }
            }
            if let Some(m) = st.messages.get_mut(&message) {
                for r in m.rcpts.iter_mut() {
                    if r.state == RState::InFlight && ordinals.contains(&r.ordinal) {
                        r.state = RState::Ready;
                        if let Some(q) = r.queue.and_then(|q| st.queues.get_mut(&q)) {
                            q.push(message);
                        }
                    }
                }
            }
        }
        if let Some(w) = write {
            self.write(w);
        }
        self.inner.wake.notify_one();
    }

    /// A delivery task reached the next hop: the queue's failure count starts again.
    pub fn connected(&self, queue_id: i64) {
        let mut st = self.state();
        if let Some(q) = st.queues.get_mut(&queue_id)
            && (q.failures > 0 || q.next_retry.is_some())
        {
            q.failures = 0;
            q.next_retry = None;
            q.last_error = None;
            let row = queue_row(queue_id, q);
            drop(st);
            self.write(Write::Queue(row));
        }
    }

    /// Records the outcome of one job. Permanent failures are reported (NDR) before they are
    /// written as final, so a crash in between repeats the NDR rather than losing it.
    pub async fn finish(&self, job: &Job, results: Vec<(i32, Outcome)>, attempt: &Attempt) {
        let now = OffsetDateTime::now_utc();
        let org = self.inner.org.borrow().clone();
        let retry = Duration::from_secs(org.server.message_retry_interval.max(1) as u64);
        let mut failed = Vec::new();
        for (ordinal, outcome) in &results {
            if let Outcome::Failed { reply } = outcome {
                failed.push((*ordinal, reply.clone()));
            }
        }
        if !failed.is_empty() {
            self.report_failures(job.message, &failed, attempt.host.clone())
                .await;
        }
        let mut writes = Vec::new();
        let mut events = Vec::new();
        {
            let mut st = self.state();
            let st = &mut *st;
            let Some(m) = st.messages.get_mut(&job.message) else {
                return;
            };
            let first_try = m.rcpts.iter().all(|r| r.retry_count == 0);
            for (ordinal, outcome) in results {
                let Some(r) = m.rcpts.iter_mut().find(|r| r.ordinal == ordinal) else {
                    continue;
                };
                let (status, reply) = match outcome {
                    Outcome::Delivered { reply } => {
                        r.state = RState::Done;
                        ("Delivered", reply)
                    }
                    Outcome::Failed { reply } => {
                        r.state = RState::Done;
                        ("Failed", reply)
                    }
                    Outcome::Deferred { reply } => {
                        r.state = RState::Retry;
                        r.retry_count += 1;
                        r.next_retry = Some(now + retry);
                        ("Retry", reply)
                    }
                };
                let text = reply.one_line();
                r.last_error = (status != "Delivered").then(|| text.clone());
                if attempt.host.is_some() {
                    r.remote_mta = attempt.host.clone();
                }
                events.push((
                    status,
                    r.route_address.clone().unwrap_or(r.address.clone()),
                    text.clone(),
                ));
                writes.push(Write::Recipient(recipient_row(job.message, r, status, now)));
                if !(first_try && status == "Delivered") {
                    writes.push(Write::Attempt(attempt_row(
                        job.message,
                        ordinal,
                        now,
                        attempt,
                        &text,
                    )));
                }
            }
            if m.rcpts.iter().all(|r| r.state == RState::Done) {
                st.messages.remove(&job.message);
                writes.retain(|w| !matches!(w, Write::Recipient(_) | Write::Attempt(_)));
                writes.push(Write::Delete(job.message));
            }
        }
        for w in writes {
            self.write(w);
        }
        // One tracking line per event of this attempt, its recipients `;`-joined, as Exchange
        // writes them.
        let tracking = &self.inner.tracking;
        for status in ["Delivered", "Failed", "Retry"] {
            let (recipients, statuses): (Vec<&str>, Vec<&str>) = events
                .iter()
                .filter(|(s, _, _)| *s == status)
                .map(|(_, a, t)| (a.as_str(), t.as_str()))
                .unzip();
            if recipients.is_empty() {
                continue;
            }
            let local = attempt.ip.is_none();
            let (event_id, source) = match status {
                "Delivered" if local => ("DELIVER", "STOREDRIVER"),
                "Delivered" => ("SEND", "SMTP"),
                "Failed" => ("FAIL", "SMTP"),
                _ => ("DEFER", "SMTP"),
            };
            tracking.record(&TrackingEvent {
                event_id,
                source,
                client_ip: None,
                client_hostname: Some(&self.inner.fqdn),
                server_ip: attempt.ip,
                server_hostname: attempt.host.as_deref(),
                source_context: None,
                connector_id: None,
                internal_message_id: job.internal_id,
                message_id: job.internet_message_id.as_deref(),
                recipients: &recipients,
                recipient_status: &statuses,
                total_bytes: job.size,
                related_recipient_address: None,
                reference: None,
                subject: job.subject.as_deref(),
                sender: &job.from,
                return_path: &job.from,
                message_info: None,
                directionality: None,
            });
        }
        job.guard.disarm();
        self.inner.wake.notify_one();
    }

    /// Builds and queues the NDR for `failed` recipients of `message` (if its sender and their
    /// NOTIFY want one). A DSN that cannot be built or queued is logged and dropped.
    async fn report_failures(
        &self,
        message: Uuid,
        failed: &[(i32, Reply)],
        remote: Option<String>,
    ) {
        let Some((meta, outcomes)) = self.outcomes_for(message, failed, remote) else {
            return;
        };
        let org = self.inner.org.borrow().clone();
        let content = match self.read_body(message).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reading {message} for its NDR: {e}");
                return;
            }
        };
        let original = meta.original(&content);
        let Some(ndr) = dsn::build_ndr(
            &reporter(&org, &self.inner.fqdn),
            &original,
            &outcomes,
            OffsetDateTime::now_utc(),
        ) else {
            return;
        };
        self.queue_dsn(&meta, ndr).await;
    }

    fn outcomes_for(
        &self,
        message: Uuid,
        list: &[(i32, Reply)],
        remote: Option<String>,
    ) -> Option<(Submitted, Vec<RecipientOutcome>)> {
        let st = self.state();
        let m = st.messages.get(&message)?;
        let outcomes = list
            .iter()
            .filter_map(|(ordinal, reply)| {
                let r = m.rcpts.iter().find(|r| r.ordinal == *ordinal)?;
                Some(RecipientOutcome {
                    address: r.address.clone(),
                    orcpt: r.orcpt.clone(),
                    notify: r.notify.clone(),
                    reply: reply.clone(),
                    remote_mta: remote.clone().or_else(|| r.remote_mta.clone()),
                })
            })
            .collect();
        Some((m.meta.clone(), outcomes))
    }

    async fn read_body(&self, id: Uuid) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(self.inner.spool.path(id)).await
    }

    /// Accepts a DSN as a new message from the null sender, durably, and queues it.
    async fn queue_dsn(&self, original: &Submitted, d: dsn::Dsn) {
        let env = Envelope {
            id: Uuid::now_v7(),
            server: self.inner.server.clone(),
            from: String::new(),
            recipients: vec![EnvelopeRecipient {
                address: d.envelope_to.clone(),
                orcpt: None,
                notify: None,
                disposition: Disposition::Relay,
            }],
            source_ip: IpAddr::from([127, 0, 0, 1]),
            receive_connector: "DSN".into(),
            helo: self.inner.fqdn.clone(),
            auth_user: None,
            internet_message_id: None,
            subject: None,
            env_id: None,
            ret: None,
            body_type: None,
            smtp_utf8: false,
        };
        let size = d.message.len() as u64;
        match super::accept(
            &self.inner.pool,
            &self.inner.spool,
            &env,
            Vec::new(),
            d.message,
        )
        .await
        {
            Ok(internal_id) => {
                self.inner.tracking.record(&TrackingEvent {
                    event_id: "DSN",
                    source: "DSN",
                    client_ip: None,
                    client_hostname: None,
                    server_ip: None,
                    server_hostname: Some(&self.inner.fqdn),
                    source_context: None,
                    connector_id: None,
                    internal_message_id: internal_id,
                    message_id: None,
                    recipients: &[d.envelope_to.as_str()],
                    recipient_status: &[],
                    total_bytes: size,
                    related_recipient_address: None,
                    reference: original.internet_message_id.as_deref(),
                    subject: None,
                    sender: "",
                    return_path: "",
                    message_info: None,
                    directionality: None,
                });
                self.submit(Submitted::accepted(&env, internal_id, size));
            }
            Err(e) => tracing::error!("queueing a DSN to {}: {e}", d.envelope_to),
        }
    }

    /// Files a submitted message's recipients into queues (categorizer + routing).
    async fn categorize(&self, items: Vec<Submission>) {
        let mut org = self.inner.org.borrow().clone();
        // A resubmit usually follows a configuration change (a new connector) whose NOTIFY may
        // not have been applied yet: route it with the configuration as it is now.
        if items.iter().any(|i| matches!(i, Submission::Reroute(_)))
            && let Some(fresh) = self.reload_org().await
        {
            org = fresh;
        }
        let table = RoutingTable::build(&org.send_connectors, &org.server.name, &org.server.fqdn);
        let mut failures: Vec<(Uuid, Vec<(i32, Reply)>)> = Vec::new();
        for item in items {
            let (id, todo) = match item {
                Submission::New(m) => {
                    let id = m.id;
                    let rcpts: Vec<Rcpt> = m
                        .recipients
                        .iter()
                        .map(|r| Rcpt {
                            ordinal: r.ordinal,
                            address: r.address.clone(),
                            route_address: None,
                            orcpt: r.orcpt.clone(),
                            notify: r.notify.clone(),
                            queue: None,
                            state: if r.next_retry.is_some_and(|t| t > OffsetDateTime::now_utc()) {
                                RState::Retry
                            } else {
                                RState::Ready
                            },
                            retry_count: r.retry_count,
                            last_error: r.last_error.clone(),
                            next_retry: r.next_retry,
                            delay_notified: r.delay_notified,
                            remove_with_ndr: r.remove_with_ndr,
                            timeouts: None,
                            remote_mta: None,
                        })
                        .collect();
                    let todo: Vec<(i32, String)> = rcpts
                        .iter()
                        .map(|r| (r.ordinal, r.address.clone()))
                        .collect();
                    let suspended = m.suspended;
                    let crashes = m.crash_count;
                    self.state().messages.insert(
                        id,
                        Msg {
                            meta: m,
                            suspended,
                            crashes,
                            rcpts,
                        },
                    );
                    (id, todo)
                }
                Submission::Reroute(id) => {
                    let st = self.state();
                    let Some(m) = st.messages.get(&id) else {
                        continue;
                    };
                    self.track_admin("RESUBMIT", "ADMIN", &m.meta);
                    let Some(m) = st.messages.get(&id) else {
                        continue;
                    };
                    let todo = m
                        .rcpts
                        .iter()
                        .filter(|r| {
                            r.queue.is_none()
                                && r.state != RState::Done
                                && r.state != RState::InFlight
                        })
                        .map(|r| (r.ordinal, r.address.clone()))
                        .collect();
                    (id, todo)
                }
            };
            let size = self
                .state()
                .messages
                .get(&id)
                .map(|m| m.meta.size)
                .unwrap_or(0);
            let mut failed = Vec::new();
            for (ordinal, address) in todo {
                let placed =
                    match categorizer::resolve(&self.inner.pool, &org.accepted_domains, &address)
                        .await
                    {
                        Ok(Resolution::Local) => {
                            let key = NextHopKey {
                                delivery_type: DeliveryType::MapiDelivery,
                                next_hop_domain: self.inner.fqdn.to_lowercase(),
                                connector_id: None,
                            };
                            Some((key, None, None))
                        }
                        Ok(Resolution::Route(to)) => {
                            let domain = to
                                .rsplit_once('@')
                                .map(|(_, d)| d)
                                .unwrap_or("")
                                .to_string();
                            let forwarded =
                                (!to.eq_ignore_ascii_case(&address)).then(|| to.clone());
                            match table.route(&domain, size) {
                                Decision::Route(route) => {
                                    Some((route.next_hop_key(), Some(route), forwarded))
                                }
                                Decision::Unroutable => {
                                    Some((NextHopKey::unreachable(), None, forwarded))
                                }
                                Decision::TooLarge { .. } => {
                                    failed.push((ordinal, Decision::size_limit_reply()));
                                    None
                                }
                            }
                        }
                        Ok(Resolution::Fail(reply)) => {
                            failed.push((ordinal, reply));
                            None
                        }
                        Err(e) => {
                            // The directory is unreachable: leave the recipient in Submission and
                            // try again on the next resubmit or restart.
                            tracing::warn!("categorizing {address}: {e}");
                            None
                        }
                    };
                let Some((key, route, forwarded)) = placed else {
                    continue;
                };
                let queue_id = match self.queue_for(&key, route.clone()).await {
                    Ok(q) => q,
                    Err(e) => {
                        tracing::error!("creating the queue for {}: {e}", key.next_hop_domain);
                        continue;
                    }
                };
                let domain = forwarded.as_deref().unwrap_or(&address);
                let domain = domain.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                let connector = route
                    .as_ref()
                    .and_then(|r| org.send_connectors.iter().find(|c| c.id == r.connector_id));
                let timeouts =
                    effective_timeouts(&org.server, &org.accepted_domains, connector, domain);
                let mut st = self.state();
                let st = &mut *st;
                let Some(m) = st.messages.get_mut(&id) else {
                    continue;
                };
                let Some(r) = m.rcpts.iter_mut().find(|r| r.ordinal == ordinal) else {
                    continue;
                };
                r.queue = Some(queue_id);
                r.route_address = forwarded.clone();
                r.timeouts = Some(timeouts);
                let mut held = None;
                if let Some(q) = st.queues.get_mut(&queue_id) {
                    q.push(id);
                    // Joining a queue that waits for its next retry: the recipient waits too, and
                    // the queue viewer says why.
                    if let (Some(next), Some(err)) = (q.next_retry, &q.last_error)
                        && r.retry_count == 0
                    {
                        r.last_error = Some(err.clone());
                        r.next_retry = Some(next);
                        held = Some(recipient_row(id, r, "Retry", OffsetDateTime::now_utc()));
                    }
                }
                let _ = self.inner.writes.send(Write::Routed(RoutedRow {
                    message: id,
                    ordinal,
                    queue_id: Some(queue_id),
                    route_address: forwarded,
                }));
                if let Some(row) = held {
                    let _ = self.inner.writes.send(Write::Recipient(row));
                }
            }
            if !failed.is_empty() {
                failures.push((id, failed));
            }
        }
        self.inner.wake.notify_one();
        for (id, failed) in failures {
            let results = failed
                .into_iter()
                .map(|(o, reply)| (o, Outcome::Failed { reply }))
                .collect();
            self.finish_without_job(id, results).await;
        }
    }

    /// Like `finish` for recipients no delivery task holds (categorizer, timers, admin).
    async fn finish_without_job(&self, id: Uuid, results: Vec<(i32, Outcome)>) {
        let job = {
            let mut st = self.state();
            let Some(m) = st.messages.get_mut(&id) else {
                return;
            };
            for r in m.rcpts.iter_mut() {
                if results.iter().any(|(o, _)| *o == r.ordinal) {
                    r.state = RState::InFlight;
                }
            }
            Job::new(self, &m.meta, Vec::new())
        };
        self.finish(&job, results, &Attempt::default()).await;
    }

    /// The queue for `key`, created in the database (for its identity number) on first use.
    async fn queue_for(&self, key: &NextHopKey, route: Option<Route>) -> Result<i64, sqlx::Error> {
        if let Some(id) = self.state().by_key.get(key) {
            return Ok(*id);
        }
        let (id, suspended): (i64, bool) = sqlx::query_as(
            "INSERT INTO delivery_queue (server, delivery_type, next_hop_domain, connector_id)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (server, delivery_type, next_hop_domain, connector_id)
             DO UPDATE SET server = EXCLUDED.server
             RETURNING id, suspended",
        )
        .bind(&self.inner.server)
        .bind(key.delivery_type.name())
        .bind(&key.next_hop_domain)
        .bind(key.connector_id)
        .fetch_one(&self.inner.pool)
        .await?;
        let mut st = self.state();
        st.by_key.insert(key.clone(), id);
        st.queues.entry(id).or_insert_with(|| Queue {
            key: key.clone(),
            route,
            suspended,
            status: "Ready",
            last_error: None,
            last_retry: None,
            next_retry: None,
            failures: 0,
            connections: 0,
            ready: VecDeque::new(),
            pending: HashSet::new(),
        });
        Ok(id)
    }

    /// A delivery task of `queue_id` ended.
    pub fn worker_done(&self, queue_id: i64) {
        let mut st = self.state();
        let st = &mut *st;
        if let Some(q) = st.queues.get_mut(&queue_id) {
            q.connections = q.connections.saturating_sub(1);
            if q.key.delivery_type != DeliveryType::MapiDelivery {
                st.outbound = st.outbound.saturating_sub(1);
            }
        }
        self.inner.wake.notify_one();
    }

    pub fn org(&self) -> Arc<Org> {
        self.inner.org.borrow().clone()
    }

    /// The configuration as the database holds it now, for the rare caller that cannot wait for
    /// the NOTIFY-driven snapshot.
    pub async fn reload_org(&self) -> Option<Arc<Org>> {
        match Org::load(&self.inner.pool, &self.inner.server).await {
            Ok(org) => Some(Arc::new(org)),
            Err(e) => {
                tracing::warn!("reloading the configuration: {e}");
                None
            }
        }
    }

    pub fn spool(&self) -> &Spool {
        &self.inner.spool
    }

    pub fn mailboxes(&self) -> &Mailboxes {
        &self.inner.mailboxes
    }

    pub fn delivery_context(&self) -> &crate::transport::delivery::smtp::Context {
        &self.inner.delivery
    }

    pub fn fqdn(&self) -> &str {
        &self.inner.fqdn
    }

    /// One pass of the timers and the dispatcher.
    /// Starts delivery tasks where the caps allow; with `scan_timers`, first runs the timers over
    /// every queued recipient (retry due, delay DSN, expiry). The scan is O(queued recipients),
    /// so it runs every TICK, not on every outcome.
    async fn tick(&self, scan_timers: bool) {
        let now = OffsetDateTime::now_utc();
        let org = self.inner.org.borrow().clone();
        let mut expired: Vec<(Uuid, Vec<(i32, Outcome)>)> = Vec::new();
        let mut delayed: Vec<(Uuid, Vec<i32>, OffsetDateTime)> = Vec::new();
        let mut spawn: Vec<(i64, Option<Route>, DeliveryType)> = Vec::new();
        let mut writes = Vec::new();
        {
            let mut st = self.state();
            let st = &mut *st;
            for (id, m) in st.messages.iter_mut().filter(|_| scan_timers) {
                let mut exp = Vec::new();
                let mut del = Vec::new();
                let mut until = now;
                for r in m.rcpts.iter_mut() {
                    if matches!(r.state, RState::Done | RState::InFlight) {
                        continue;
                    }
                    let Some(t) = r.timeouts else { continue };
                    let expires = m.meta.received_at + t.message_expiration_timeout;
                    if now >= expires {
                        let unreachable = r
                            .queue
                            .and_then(|q| st.queues.get(&q))
                            .is_some_and(|q| q.key.delivery_type == DeliveryType::Unreachable);
                        let reply = if unreachable {
                            Decision::no_next_hop_reply()
                        } else {
                            Reply::new(550, "4.4.7", "QUEUE.Expired; message expired")
                        };
                        exp.push((r.ordinal, Outcome::Failed { reply }));
                        continue;
                    }
                    let delay_due = m.meta.received_at + t.delay_notification_timeout;
                    if !r.delay_notified
                        && now >= delay_due
                        && org.server.external_delay_dsn_enabled
                    {
                        r.delay_notified = true;
                        del.push(r.ordinal);
                        until = until.max(expires);
                        writes.push(Write::Recipient(recipient_row(
                            *id,
                            r,
                            if r.retry_count > 0 { "Retry" } else { "Ready" },
                            now,
                        )));
                    }
                    if r.state == RState::Retry && r.next_retry.is_none_or(|t| t <= now) {
                        r.state = RState::Ready;
                        if let Some(q) = r.queue.and_then(|q| st.queues.get_mut(&q)) {
                            q.push(*id);
                        }
                    }
                }
                if !exp.is_empty() {
                    expired.push((*id, exp));
                }
                if !del.is_empty() {
                    delayed.push((*id, del, until));
                }
            }
            let max_total = org
                .server
                .max_outbound_connections
                .map(|n| n as usize)
                .unwrap_or(usize::MAX);
            let per_domain = org
                .server
                .max_per_domain_outbound_connections
                .map(|n| n as usize)
                .unwrap_or(usize::MAX);
            let mailbox_cap = org.server.max_concurrent_mailbox_deliveries.max(1) as usize;
            for (id, q) in st.queues.iter_mut() {
                let status = q.shown_status();
                if status != q.status {
                    q.status = status;
                    writes.push(Write::Queue(queue_row(*id, q)));
                }
                if q.suspended
                    || q.ready.is_empty()
                    || q.key.delivery_type == DeliveryType::Unreachable
                {
                    continue;
                }
                if q.next_retry.is_some_and(|t| t > now) {
                    continue;
                }
                let local = q.key.delivery_type == DeliveryType::MapiDelivery;
                let cap = if local {
                    mailbox_cap
                } else if q.failures > 0 || q.next_retry.is_some() {
                    1
                } else {
                    per_domain
                };
                let want = q.ready.len().min(cap);
                while q.connections < want && (local || st.outbound < max_total) {
                    q.connections += 1;
                    if !local {
                        st.outbound += 1;
                    }
                    spawn.push((*id, q.route.clone(), q.key.delivery_type));
                }
                if q.connections > 0 && q.status != "Active" && !q.suspended {
                    q.status = "Active";
                    writes.push(Write::Queue(queue_row(*id, q)));
                }
            }
        }
        for w in writes {
            self.write(w);
        }
        for (queue_id, route, kind) in spawn {
            let qm = self.clone();
            tokio::spawn(async move {
                // The delivery runs in a task of its own so that a panic in it still ends with
                // worker_done (the Job's guard has already given its recipients back).
                let worker = qm.clone();
                let run = tokio::spawn(async move {
                    if kind == DeliveryType::MapiDelivery {
                        crate::transport::delivery::local::run(&worker, queue_id).await;
                    } else if let Some(route) = route {
                        crate::transport::delivery::smtp::run(&worker, queue_id, route).await;
                    }
                });
                if let Err(e) = run.await {
                    tracing::error!("a delivery task of queue {queue_id} failed: {e}");
                }
                qm.worker_done(queue_id);
            });
        }
        for (id, results) in expired {
            self.finish_without_job(id, results).await;
        }
        for (id, ordinals, until) in delayed {
            self.report_delay(id, &ordinals, until).await;
        }
    }

    async fn report_delay(&self, message: Uuid, ordinals: &[i32], until: OffsetDateTime) {
        let list: Vec<(i32, Reply)> = {
            let st = self.state();
            let Some(m) = st.messages.get(&message) else {
                return;
            };
            ordinals
                .iter()
                .filter_map(|o| m.rcpts.iter().find(|r| r.ordinal == *o))
                .map(|r| {
                    let reply = r
                        .last_error
                        .as_deref()
                        .and_then(reply_from_text)
                        .unwrap_or_else(|| Reply::new(400, "4.4.7", "Message delayed"));
                    (r.ordinal, reply)
                })
                .collect()
        };
        let Some((meta, outcomes)) = self.outcomes_for(message, &list, None) else {
            return;
        };
        let org = self.inner.org.borrow().clone();
        let Ok(content) = self.read_body(message).await else {
            return;
        };
        let original = meta.original(&content);
        if let Some(d) = dsn::build_delay(
            &reporter(&org, &self.inner.fqdn),
            &original,
            &outcomes,
            until,
            OffsetDateTime::now_utc(),
        ) {
            self.queue_dsn(&meta, d).await;
        }
    }

    /// Applies what an administrator changed in the database (shell or console).
    async fn reconcile(&self) {
        let (tx, rx) = oneshot::channel();
        self.write(Write::ReadAdmin(tx));
        let Ok(admin) = rx.await else {
            return;
        };
        let (removals, reroutes, released) = self.apply_admin(admin);
        if !released.is_empty() {
            match load_pending(&self.inner.pool, &self.inner.server, Some(&released)).await {
                Ok(list) => {
                    for m in list {
                        self.submit(m);
                    }
                }
                Err(e) => tracing::warn!("loading released poison messages: {e}"),
            }
        }
        for (id, results) in removals {
            self.finish_without_job(id, results).await;
        }
        if !reroutes.is_empty() {
            for id in reroutes {
                let _ = self.inner.submissions.send(Submission::Reroute(id));
            }
        }
        self.inner.wake.notify_one();
    }

    #[allow(clippy::type_complexity)]
    fn apply_admin(
        &self,
        admin: AdminState,
    ) -> (Vec<(Uuid, Vec<(i32, Outcome)>)>, Vec<Uuid>, Vec<Uuid>) {
        let mut released = Vec::new();
        let now = OffsetDateTime::now_utc();
        let mut removals: HashMap<Uuid, Vec<(i32, Outcome)>> = HashMap::new();
        let mut silent: HashSet<(Uuid, i32)> = HashSet::new();
        let mut reroutes = HashSet::new();
        let mut st = self.state();
        let st = &mut *st;
        for (id, suspended) in admin.queues {
            if let Some(q) = st.queues.get_mut(&id) {
                q.suspended = suspended;
            }
        }
        for a in admin.recipients {
            // Resume-Message released a poison message: only ids this manager put in Poison,
            // so a message still on its way through Submission is never loaded twice.
            if !a.poison && st.poisoned.remove(&a.message) {
                released.push(a.message);
                continue;
            }
            let Some(m) = st.messages.get_mut(&a.message) else {
                continue;
            };
            let resumed = m.suspended && !a.message_suspended;
            m.suspended = a.message_suspended;
            let Some(r) = m.rcpts.iter_mut().find(|r| r.ordinal == a.ordinal) else {
                continue;
            };
            if r.state == RState::InFlight || r.state == RState::Done {
                continue;
            }
            if let Some(with_ndr) = a.remove_with_ndr {
                let reply = Reply::new(
                    550,
                    "4.3.2",
                    "QUEUE.Admin; message deleted by administrative action",
                );
                if !with_ndr {
                    silent.insert((a.message, a.ordinal));
                }
                removals
                    .entry(a.message)
                    .or_default()
                    .push((a.ordinal, Outcome::Failed { reply }));
                continue;
            }
            if a.queue_id.is_none() && r.queue.is_some() {
                r.queue = None;
                r.state = RState::Ready;
                r.next_retry = None;
                reroutes.insert(a.message);
                continue;
            }
            if r.state == RState::Retry && a.next_retry.is_some_and(|t| t <= now) {
                r.state = RState::Ready;
                r.next_retry = None;
            }
            let pushable = r.state == RState::Ready || resumed;
            if pushable && let Some(q) = r.queue.and_then(|q| st.queues.get_mut(&q)) {
                q.push(a.message);
                if a.next_retry.is_some_and(|t| t <= now) {
                    q.next_retry = None;
                    q.failures = 0;
                }
            }
        }
        // Removed without NDR: tell nobody (the NOTIFY list is emptied for this report).
        for ((id, ordinal), _) in silent.iter().map(|k| (*k, ())) {
            if let Some(m) = st.messages.get_mut(&id)
                && let Some(r) = m.rcpts.iter_mut().find(|r| r.ordinal == ordinal)
            {
                r.notify = Some("NEVER".into());
            }
        }
        (
            removals.into_iter().collect(),
            reroutes.into_iter().collect(),
            released,
        )
    }
}

/// How long a queue waits after its `failures`-th consecutive connection failure (reference
/// §6.1): TransientFailureRetryCount tries at TransientFailureRetryInterval, then
/// OutboundConnectionFailureRetryInterval.
pub fn connection_retry_interval(server: &TransportServer, failures: u32) -> Duration {
    let secs = if failures <= server.transient_failure_retry_count.max(0) as u32 {
        server.transient_failure_retry_interval
    } else {
        server.outbound_connection_failure_retry_interval
    };
    Duration::from_secs(secs.max(1) as u64)
}

fn reporter(org: &Org, fqdn: &str) -> Reporter {
    let domain = org
        .accepted_domains
        .iter()
        .find(|d| d.is_default)
        .map(|d| d.domain_name.trim_start_matches("*.").to_string())
        .unwrap_or_else(|| fqdn.to_string());
    Reporter {
        fqdn: fqdn.to_string(),
        postmaster: format!("postmaster@{domain}"),
        max_returned_size: dsn::DEFAULT_MAX_RETURNED_SIZE,
    }
}

/// Turns a stored `451 4.4.0 text` back into a Reply for a delay DSN.
fn reply_from_text(s: &str) -> Option<Reply> {
    let (code, rest) = s.split_once(' ')?;
    let code: u16 = code.parse().ok()?;
    let (enhanced, text) = match rest.split_once(' ') {
        Some((e, t))
            if e.split('.').count() == 3 && e.chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            (e, t)
        }
        _ => ("", rest),
    };
    Some(Reply::new(code, enhanced, text))
}

fn queue_row(id: i64, q: &Queue) -> QueueRow {
    QueueRow {
        id,
        status: q.shown_status(),
        last_error: q.last_error.clone(),
        last_retry: q.last_retry,
        next_retry: q.next_retry,
    }
}

fn recipient_row(
    message: Uuid,
    r: &Rcpt,
    status: &'static str,
    now: OffsetDateTime,
) -> RecipientRow {
    RecipientRow {
        message,
        ordinal: r.ordinal,
        status,
        retry_count: r.retry_count,
        last_error: r.last_error.clone(),
        last_retry: Some(now),
        next_retry: if status == "Retry" {
            r.next_retry
        } else {
            None
        },
        delay_notified: r.delay_notified,
    }
}

fn attempt_row(
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

async fn submitter(qm: QueueManager, mut rx: mpsc::UnboundedReceiver<Submission>) {
    while let Some(first) = rx.recv().await {
        let mut items = vec![first];
        while items.len() < SUBMIT_BATCH {
            match rx.try_recv() {
                Ok(i) => items.push(i),
                Err(_) => break,
            }
        }
        qm.categorize(items).await;
    }
}

async fn scheduler(qm: QueueManager) {
    let mut last_scan = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = qm.inner.wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        let scan = last_scan.elapsed() >= TICK;
        if scan {
            last_scan = tokio::time::Instant::now();
        }
        qm.tick(scan).await;
    }
}

/// Administrative queue operations arrive as NOTIFY hubgate_queue.
async fn admin_listener(qm: QueueManager, url: String) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("queue listener: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen("hubgate_queue").await {
            tracing::warn!("LISTEN hubgate_queue: {e}");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        qm.reconcile().await;
        while listener.recv().await.is_ok() {
            while listener.next_buffered().is_some() {}
            qm.reconcile().await;
        }
    }
}

/// Every message of `server` with a recipient still to deliver, as the database holds it.
/// `only`: just these messages (released from Poison).
async fn load_pending(
    pool: &PgPool,
    server: &str,
    only: Option<&[Uuid]>,
) -> Result<Vec<Submitted>, sqlx::Error> {
    type MRow = (
        Uuid,
        i64,
        String,
        i64,
        OffsetDateTime,
        Option<String>,
        Option<String>,
        Option<String>,
        bool,
        Option<String>,
        Option<String>,
        String,
        bool,
        i32,
    );
    let rows: Vec<MRow> = sqlx::query_as(
        "SELECT id, internal_id, from_address, size, received_at, env_id, ret, body_type, smtp_utf8,
                subject, internet_message_id, source_ip, suspended, crash_count
         FROM message m WHERE server = $1 AND NOT poison AND ($2::uuid[] IS NULL OR id = ANY($2))
           AND EXISTS (SELECT 1 FROM message_recipient r WHERE r.message_id = m.id AND r.status IN ('Ready', 'Retry'))
         ORDER BY received_at",
    )
    .bind(server)
    .bind(only)
    .fetch_all(pool)
    .await?;
    type RRow = (
        Uuid,
        i32,
        String,
        Option<String>,
        Option<String>,
        i32,
        Option<String>,
        Option<OffsetDateTime>,
        bool,
        Option<bool>,
    );
    let rcpts: Vec<RRow> = sqlx::query_as(
        "SELECT r.message_id, r.ordinal, r.address, r.orcpt, r.notify, r.retry_count, r.last_error,
                r.next_retry_time, r.delay_notified, r.remove_with_ndr
         FROM message_recipient r JOIN message m ON m.id = r.message_id
         WHERE m.server = $1 AND NOT m.poison AND r.status IN ('Ready', 'Retry')
           AND ($2::uuid[] IS NULL OR m.id = ANY($2))
         ORDER BY r.message_id, r.ordinal",
    )
    .bind(server)
    .bind(only)
    .fetch_all(pool)
    .await?;
    let mut by_message: HashMap<Uuid, Vec<SubmittedRecipient>> = HashMap::new();
    for (
        m,
        ordinal,
        address,
        orcpt,
        notify,
        retry_count,
        last_error,
        next_retry,
        delay_notified,
        remove,
    ) in rcpts
    {
        by_message.entry(m).or_default().push(SubmittedRecipient {
            ordinal,
            address,
            orcpt,
            notify,
            retry_count,
            last_error,
            next_retry,
            delay_notified,
            remove_with_ndr: remove,
        });
    }
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                internal_id,
                from,
                size,
                received_at,
                env_id,
                ret,
                body_type,
                smtp_utf8,
                subject,
                mid,
                ip,
                suspended,
                crash_count,
            )| {
                Submitted {
                    id,
                    internal_id,
                    from,
                    size: size as u64,
                    received_at,
                    env_id,
                    ret,
                    body_8bit: body_type.as_deref() == Some("8BITMIME"),
                    smtp_utf8,
                    subject,
                    internet_message_id: mid,
                    source_ip: ip.parse().ok(),
                    suspended,
                    crash_count,
                    recipients: by_message.remove(&id).unwrap_or_default(),
                }
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(count: i32) -> TransportServer {
        let mut s = TransportServer::with_defaults("HUB1", "hub1.contoso.test");
        s.transient_failure_retry_count = count;
        s.transient_failure_retry_interval = 300;
        s.outbound_connection_failure_retry_interval = 600;
        s
    }

    #[test]
    fn transient_retries_then_the_outbound_connection_failure_interval() {
        let s = server(6);
        for n in 1..=6 {
            assert_eq!(
                connection_retry_interval(&s, n),
                Duration::from_secs(300),
                "try {n}"
            );
        }
        assert_eq!(connection_retry_interval(&s, 7), Duration::from_secs(600));
        // TransientFailureRetryCount 0: straight to the long interval.
        assert_eq!(
            connection_retry_interval(&server(0), 1),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn stored_errors_parse_back_into_replies() {
        let r = reply_from_text("451 4.4.0 DNS query failed").unwrap();
        assert_eq!((r.code, r.enhanced.as_deref()), (451, Some("4.4.0")));
        assert_eq!(r.one_line(), "451 4.4.0 DNS query failed");
        let plain = reply_from_text("421 Service not available").unwrap();
        assert_eq!(plain.code, 421);
        assert!(reply_from_text("garbage").is_none());
    }
}
