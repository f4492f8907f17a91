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
use crate::org::{AcceptedDomain, Org, SendConnector, TransportServer};
use crate::smtp::proto::Reply;
use crate::transport::categorizer::{self, Resolution};
use crate::transport::clock::Clock;
use crate::transport::dsn::{self, Original, RecipientOutcome, Reporter};
use crate::transport::routing::{
    Decision, DeliveryType, EffectiveTimeouts, NextHopKey, Route, RoutingTable, effective_timeouts,
};

/// How often the timers run when nothing wakes the scheduler sooner.
const TICK: Duration = Duration::from_millis(500);
/// Messages categorized per submission batch.
const SUBMIT_BATCH: usize = 256;

mod ack;
mod admin;
mod bulk;
mod categorize;
mod dispatch;
mod gauges;
mod held;
mod job;
mod listener;
mod load;
mod outcome;
mod report;
mod shadow;
mod state;
mod stop;
mod stored;
#[cfg(test)]
mod timer_tests;
mod timers;

pub use ack::AckWaiter;
use categorize::submitter;
use dispatch::plan_dispatch;
use job::GiveBack;
pub use job::{
    Attempt, BoxFuture, ConnectionFailed, Deliver, Delivered, Job, JobRecipient, Lane, Outcome,
    ShadowBook, Submitted, SubmittedRecipient, Target, body_lost_reply,
};
use listener::command_listener;
pub use listener::{ClaimError, ServerClaim, claim};
use load::load_pending;
pub use shadow::{HeartbeatDue, Primary, ResubmitReason, shadow_key};
use state::*;
pub(crate) use stored::run_stored;
pub use timers::connection_retry_interval;
use timers::scheduler;

pub struct Settings {
    pub server_name: String,
    pub fqdn: String,
    pub clock: Arc<dyn Clock>,
}

struct Inner {
    pool: PgPool,
    spool: Spool,
    org: watch::Receiver<Arc<Org>>,
    server: String,
    fqdn: String,
    tracking: TrackingLog,
    /// How queues are delivered: the manager hands them jobs, never speaks to a next hop.
    agents: Arc<dyn Deliver>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    wake: Notify,
    writes: mpsc::UnboundedSender<Write>,
    submissions: mpsc::UnboundedSender<Submission>,
    /// Sessions holding back their 250 until their message reaches its next hop.
    acks: ack::AckWaiters,
    /// The dashboard's per-minute counts (`transport::stats`).
    stats: crate::transport::stats::Stats,
    /// The process is stopping: no delivery starts or takes another message (`stop`).
    stopping: std::sync::atomic::AtomicBool,
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
        agents: Arc<dyn Deliver>,
        claim: Option<ServerClaim>,
    ) -> Result<QueueManager, sqlx::Error> {
        let (wtx, wrx) = mpsc::unbounded_channel();
        let (stx, srx) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(pool.clone(), spool.clone(), wrx));
        let inner = Arc::new(Inner {
            agents,
            clock: settings.clock.clone(),
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
            acks: Default::default(),
            stats: Default::default(),
            stopping: Default::default(),
        });
        let qm = QueueManager { inner };
        // The queue writer's lock says this gateway runs; commands recorded while it did not
        // are applied to the stored state before it is loaded.
        let (mut lock, db_url) = match claim {
            Some(c) => (Some(c.conn), Some(c.url)),
            None => (None, None),
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
        qm.load_shadow_queues().await?;
        // Bodies kept in their rows (spool.rs); every other body must be on disk.
        let in_row: Vec<(Uuid,)> =
            sqlx::query_as("SELECT id FROM message JOIN message_body USING (id) WHERE server = $1")
                .bind(&settings.server_name)
                .fetch_all(&pool)
                .await?;
        let in_row: std::collections::HashSet<Uuid> = in_row.into_iter().map(|(id,)| id).collect();
        for mut m in load_pending(&pool, &settings.server_name, None).await? {
            // Rows committed without a body (a commit whose outcome was unknown and whose body
            // was lost, or disk damage): they can only be reported, never delivered.
            m.body_lost = !in_row.contains(&m.id)
                && !tokio::fs::try_exists(qm.inner.spool.path(m.id))
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

    /// The counters the receive path and the outcomes of delivery add to.
    pub fn stats(&self) -> &crate::transport::stats::Stats {
        &self.inner.stats
    }

    /// The queue length the dashboard charts: messages with a recipient still to be delivered
    /// or reported (Submission, the delivery queues, Unreachable; not Poison, not shadow copies).
    pub fn queue_length(&self) -> u64 {
        let st = self.state();
        st.messages
            .values()
            .filter(|m| {
                m.rcpts
                    .iter()
                    .any(|r| !matches!(r.state, RState::Done | RState::Shadow))
            })
            .count() as u64
    }

    /// Each delivery queue's MessageCount as Get-Queue counts it (a message once in every queue
    /// where one of its recipients is not final, shadow copies included, Poison apart), from
    /// memory: the manager writes those rows, so what it holds is what they will say, and the
    /// console's Queues tab need not group every held recipient on each view.
    pub fn held_per_queue(&self) -> HashMap<i64, i64> {
        let st = self.state();
        let mut counts: HashMap<i64, i64> = HashMap::with_capacity(st.queues.len());
        let mut seen: Vec<i64> = Vec::new();
        for m in st.messages.values() {
            seen.clear();
            for r in &m.rcpts {
                if let Some(q) = r.queue
                    && r.state != RState::Done
                    && !seen.contains(&q)
                {
                    seen.push(q);
                    *counts.entry(q).or_insert(0) += 1;
                }
            }
        }
        counts
    }

    /// The Messages tab's unfiltered total of one queue row (`Some`) or of every queue row of
    /// this server (`None`), from memory, as `held_per_queue` counts; see `held::held_entries`.
    pub fn held_entries(&self, queue: Option<i64>) -> crate::transport::queue::ops::HeldEntries {
        held::held_entries(self.state().messages.values(), queue)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, w: Write) {
        let _ = self.inner.writes.send(w);
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

    /// An event of a delivery attempt to a next hop (SEND, DEFER, FAIL, DELIVER): this server
    /// as the client, the next hop as the server.
    fn hop_event<'a>(
        &'a self,
        event_id: &'a str,
        source: &'a str,
        attempt: &'a Attempt,
        internal_id: i64,
    ) -> TrackingEvent<'a> {
        TrackingEvent {
            client_hostname: Some(&self.inner.fqdn),
            server_ip: attempt.ip,
            server_hostname: attempt.host.as_deref(),
            ..self.own_event(event_id, source, internal_id)
        }
    }

    pub fn org(&self) -> Arc<Org> {
        self.inner.org.borrow().clone()
    }

    /// The configuration as the database holds it now, for the rare caller that cannot wait for
    /// the NOTIFY-driven snapshot.
    pub async fn reload_org(&self) -> Option<Arc<Org>> {
        match self.org().reloaded(&self.inner.pool).await {
            Ok(org) => Some(Arc::new(org)),
            Err(e) => {
                tracing::warn!("reloading the configuration: {e}");
                None
            }
        }
    }

    /// The time every timer decision reads.
    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }
}
