//! The queue manager: Submission, one delivery queue per next hop, Unreachable; Exchange's queue
//! states and the Limits tab's timers (reference §6).
//!
//! Ready work lives in memory: accepted messages arrive through `submit` (no database poll),
//! a restart loads what the database still holds. One scheduler task runs the timers and starts
//! delivery tasks within the connection caps; delivery tasks take messages from their queue until
//! it is empty or the connector's SmtpMaxMessagesPerConnection is reached, and report outcomes
//! here. Everything that must survive a restart goes to `writer` in batches.
//!
//! Nothing accepted is dropped on an error of our own: a recipient whose NDR cannot be queued
//! stays (with its message) until a retry queues it, a delay DSN that cannot be queued is due
//! again, and a recipient the categorizer or routing could not place (database error) waits in
//! Submission for a retry, each with a backoff, while its expiry keeps running. A restart keeps
//! a queue that was waiting for its retry time in Retry, and reports (NDR) committed messages
//! whose body is no longer in the spool.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use uuid::Uuid;

use super::writer::{self, AdminRow, AttemptRow, QueueRow, RecipientRow, RoutedRow, Write};
use super::{
    AcceptError, Disposition, Envelope, EnvelopeRecipient, QueueStatus, RecipientStatus, Spool,
};
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

mod admin;
mod categorize;
mod job;
mod listener;
mod load;
mod report;
mod state;
mod stored;
mod timers;

pub use categorize::body_lost_reply;
use categorize::submitter;
pub use job::{Attempt, Job, JobRecipient, Outcome, Submitted, SubmittedRecipient};
use listener::command_listener;
use load::load_pending;
use state::*;
pub(crate) use stored::run_stored;
pub use timers::connection_retry_interval;
use timers::scheduler;

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
    New(Box<Submitted>),
    /// Recipients whose queue an administrator cleared (Retry-Queue -Resubmit).
    Reroute(Uuid),
    /// Recipients left in Submission by a categorizer or routing error, due again.
    Retry(Uuid),
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
        tokio::spawn(writer::run(pool.clone(), spool.clone(), wrx));
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
        // The queue writer's lock says this gateway runs; commands recorded while it did not
        // are applied to the stored state before it is loaded.
        let mut lock = match &db_url {
            Some(_) => listener::take_writer_lock(&pool, &settings.server_name).await,
            None => None,
        };
        if let Some(conn) = lock.as_mut()
            && let Err(e) = run_stored(conn, &settings.server_name).await
        {
            tracing::warn!("applying the recorded queue commands: {e}");
        }
        let poisoned: Vec<(Uuid,)> =
            sqlx::query_as("SELECT id FROM message WHERE server = $1 AND poison")
                .bind(&settings.server_name)
                .fetch_all(&pool)
                .await?;
        qm.state().poisoned = poisoned.into_iter().map(|(id,)| id).collect();
        for mut m in load_pending(&pool, &settings.server_name, None).await? {
            // Rows committed without a body (a commit whose outcome was unknown and whose body
            // was lost, or disk damage): they can only be reported, never delivered.
            m.body_lost = !tokio::fs::try_exists(qm.inner.spool.path(m.id))
                .await
                .unwrap_or(true);
            if m.body_lost {
                tracing::error!(
                    "message {} has no body in the spool: its recipients are reported as failed",
                    m.id
                );
            }
            let _ = qm.inner.submissions.send(Submission::New(Box::new(m)));
        }
        tokio::spawn(submitter(qm.clone(), srx));
        tokio::spawn(scheduler(qm.clone()));
        if let Some(url) = db_url {
            tokio::spawn(command_listener(qm.clone(), url, lock));
        }
        Ok(qm)
    }

    /// Hands an accepted (durable) message to the queues.
    pub fn submit(&self, m: Submitted) {
        let _ = self.inner.submissions.send(Submission::New(Box::new(m)));
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
                        writes.push(Write::Recipient(recipient_row(
                            id,
                            r,
                            RecipientStatus::Retry,
                            now,
                        )));
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
            message_id: m.internet_message_id.as_deref(),
            recipients: &recipients,
            total_bytes: m.size,
            subject: m.subject.as_deref(),
            sender: &m.from,
            return_path: &m.from,
            ..self.own_event(event_id, source, m.internal_id)
        });
    }

    /// A tracking event this node raises by itself (an administrator's action, a DSN it makes):
    /// no client and no connector, this node as the server. Callers fill in the message.
    fn own_event<'a>(
        &'a self,
        event_id: &'a str,
        source: &'a str,
        internal_id: i64,
    ) -> TrackingEvent<'a> {
        TrackingEvent {
            event_id,
            source,
            client_ip: None,
            client_hostname: None,
            server_ip: None,
            server_hostname: Some(&self.inner.fqdn),
            source_context: None,
            connector_id: None,
            internal_message_id: internal_id,
            message_id: None,
            recipients: &[],
            recipient_status: &[],
            total_bytes: 0,
            related_recipient_address: None,
            reference: None,
            subject: None,
            sender: "",
            return_path: "",
            message_info: None,
            directionality: None,
        }
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
    /// written as final, so a crash in between repeats the NDR rather than losing it; when the
    /// NDR cannot be queued they are not final yet (Reporting) and the timers try again.
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
        // An NDR that cannot be queued (database down, disk full) keeps its recipients, and so
        // the message, until a later try queues it: the sender must hear, and nothing is lost.
        let mut report_pending = false;
        if !failed.is_empty()
            && let Err(e) = self
                .report_failures(job.message, &failed, attempt.host.clone())
                .await
        {
            tracing::error!(
                "the NDR for message {} was not queued, it will be retried: {e}",
                job.message
            );
            report_pending = true;
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
                        (RecipientStatus::Delivered, reply)
                    }
                    Outcome::Failed { reply } if report_pending => {
                        let retried = r.dsn_failures > 0;
                        r.state = RState::Reporting;
                        r.dsn_failures = r.dsn_failures.saturating_add(1);
                        r.dsn_due = Some(now + report::dsn_backoff(r.dsn_failures));
                        r.final_reply = Some(reply.clone());
                        r.last_error = Some(reply.one_line());
                        if attempt.host.is_some() {
                            r.remote_mta = attempt.host.clone();
                        }
                        // Shown (and kept across a restart) as waiting for a retry: after a
                        // restart the recipient is tried again and fails again, or is delivered.
                        r.next_retry = r.dsn_due;
                        writes.push(Write::Recipient(recipient_row(
                            job.message,
                            r,
                            RecipientStatus::Retry,
                            now,
                        )));
                        if !retried {
                            writes.push(Write::Attempt(attempt_row(
                                job.message,
                                ordinal,
                                now,
                                attempt,
                                &reply.one_line(),
                            )));
                        }
                        continue;
                    }
                    Outcome::Failed { reply } => {
                        r.state = RState::Done;
                        (RecipientStatus::Failed, reply)
                    }
                    Outcome::Deferred { reply } => {
                        r.state = RState::Retry;
                        r.retry_count += 1;
                        r.next_retry = Some(now + retry);
                        (RecipientStatus::Retry, reply)
                    }
                };
                let text = reply.one_line();
                r.last_error = (status != RecipientStatus::Delivered).then(|| text.clone());
                if attempt.host.is_some() {
                    r.remote_mta = attempt.host.clone();
                }
                events.push((
                    status,
                    r.route_address.clone().unwrap_or(r.address.clone()),
                    text.clone(),
                ));
                writes.push(Write::Recipient(recipient_row(job.message, r, status, now)));
                // A DSN retry's attempt was recorded when the recipient failed.
                let dsn_retry = status == RecipientStatus::Failed && r.dsn_failures > 0;
                if !(dsn_retry || first_try && status == RecipientStatus::Delivered) {
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
        for status in [
            RecipientStatus::Delivered,
            RecipientStatus::Failed,
            RecipientStatus::Retry,
        ] {
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
                RecipientStatus::Delivered if local => ("DELIVER", "STOREDRIVER"),
                RecipientStatus::Delivered => ("SEND", "SMTP"),
                RecipientStatus::Failed => ("FAIL", "SMTP"),
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
}
