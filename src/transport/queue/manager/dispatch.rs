//! Dispatch: starting delivery agents within the connection caps, and the `Lane` through which
//! an agent takes a queue's messages and reports what happened. The manager knows a queue's
//! `Target`, never how an agent talks to it.

use super::*;

impl QueueManager {
    /// Starts one agent per planned connection. Each runs in a task of its own so that a panic
    /// in it still ends with `worker_done` (the Job's guard has already given its recipients
    /// back).
    pub(super) fn start_agents(&self, starts: Vec<(i64, Target)>) {
        if self.stopping() {
            self.unplan(&starts);
            return;
        }
        for (queue_id, target) in starts {
            let qm = self.clone();
            let agents = self.inner.agents.clone();
            tokio::spawn(async move {
                let lane = Box::new(QueueLane {
                    qm: qm.clone(),
                    queue_id,
                });
                if let Err(e) = tokio::spawn(agents.run(target, lane)).await {
                    tracing::error!("a delivery task of queue {queue_id} failed: {e}");
                }
                qm.worker_done(queue_id);
            });
        }
    }

    /// The next message of `queue_id` for a delivery task, its recipients marked in flight
    /// (what a `Lane` hands its agent).
    pub fn take_job(&self, queue_id: i64) -> Option<Job> {
        if self.stopping() {
            return None;
        }
        let now = self.now();
        let mut st = self.state();
        let st = &mut *st;
        let q = st.queues.get_mut(&queue_id)?;
        if q.suspended {
            return None;
        }
        // A controlled release: the connection ends here and the scheduler opens the next one
        // when the bucket has a token again.
        if q.release.is_some_and(|r| !r.due(now)) {
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
            if let Some(r) = q.release.as_mut() {
                r.took(now);
            }
            return Some(Job::new(self.give_back(), &m.meta, recipients));
        }
        None
    }

    pub(super) fn give_back(&self) -> Arc<dyn GiveBack> {
        Arc::new(self.clone())
    }

    /// A delivery task could not reach any host of the queue's next hop: the queue goes to Retry.
    /// `jobs` are the messages it had taken (they go back), and every waiting recipient shows the error.
    fn connection_failed(&self, queue_id: i64, f: ConnectionFailed) {
        let now = self.now();
        let org = self.inner.org.borrow().clone();
        for job in &f.jobs {
            job.guard.disarm();
        }
        let taken: Vec<(Uuid, Vec<i32>)> = f
            .jobs
            .iter()
            .map(|j| (j.message, j.recipients.iter().map(|r| r.ordinal).collect()))
            .collect();
        let (writes, deferred) = {
            let mut st = self.state();
            let writes = fail_connection(
                &mut st,
                queue_id,
                &taken,
                &org.server,
                &f.reply,
                &f.attempt,
                now,
            );
            // Read whether or not the tracking log is on: /metrics counts the same DEFERs.
            let deferred = deferred_messages(&st, &writes);
            let connector = st.queues.get(&queue_id).map(|q| match &q.route {
                Some(route) => route.connector_name.clone(),
                None => q.key.delivery_type.name().to_string(),
            });
            (writes, (deferred, connector.unwrap_or_default()))
        };
        let (deferred, connector) = deferred;
        for w in writes {
            self.write(w);
        }
        for _ in &deferred {
            crate::monitor::delivery(crate::monitor::Delivery::Deferred, &connector);
        }
        self.track_deferred(&deferred, &f.reply.one_line(), &f.attempt);
    }

    /// A DEFER line for each message whose recipients wait again after a connection failure, as
    /// after a 4xx reply: the tracking log then shows why a message was late before its SEND.
    fn track_deferred(&self, deferred: &[Deferred], text: &str, attempt: &Attempt) {
        for d in deferred {
            let recipients: Vec<&str> = d.recipients.iter().map(String::as_str).collect();
            let statuses = vec![text; recipients.len()];
            self.inner.tracking.record(&TrackingEvent {
                message_id: d.message_id.as_deref(),
                recipients: &recipients,
                recipient_status: &statuses,
                total_bytes: d.size,
                subject: d.subject.as_deref(),
                sender: &d.from,
                return_path: &d.from,
                ..self.hop_event("DEFER", "SMTP", attempt, d.internal_id)
            });
        }
    }

    /// A delivery task reached the next hop: the queue's failure count starts again.
    fn connected(&self, queue_id: i64) {
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

    /// A delivery task of `queue_id` ended.
    fn worker_done(&self, queue_id: i64) {
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
}

impl GiveBack for QueueManager {
    fn abandoned(&self, message: Uuid, ordinals: &[i32], panicked: bool) {
        self.return_job(message, ordinals, panicked);
    }
}

/// A delivery agent's handle on one queue.
struct QueueLane {
    qm: QueueManager,
    queue_id: i64,
}

impl Lane for QueueLane {
    fn next_job(&self) -> Option<Job> {
        self.qm.take_job(self.queue_id)
    }

    fn connected(&self) {
        self.qm.connected(self.queue_id);
    }

    fn connection_failed(&self, failure: ConnectionFailed) {
        self.qm.connection_failed(self.queue_id, failure);
    }

    fn delivered(&self, d: Delivered) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.qm.finish(&d.job, d.results, &d.attempt).await })
    }

    fn shadow_book(&self) -> Option<Arc<dyn ShadowBook>> {
        Some(Arc::new(self.qm.clone()))
    }
}

/// Which queues get a new connection at `now`, within MaxOutboundConnections,
/// MaxPerDomainOutboundConnections (one while a queue is in Retry) and
/// MaxConcurrentMailboxDeliveries; the connections are counted as started. Also brings each
/// queue's shown status up to date.
pub(super) fn plan_dispatch(
    st: &mut State,
    server: &TransportServer,
    now: OffsetDateTime,
) -> (Vec<Write>, Vec<(i64, Target)>) {
    let mut writes = Vec::new();
    let mut starts = Vec::new();
    let max_total = server
        .max_outbound_connections
        .map(|n| n as usize)
        .unwrap_or(usize::MAX);
    let per_domain = server
        .max_per_domain_outbound_connections
        .map(|n| n as usize)
        .unwrap_or(usize::MAX);
    let mailbox_cap = server.max_concurrent_mailbox_deliveries.max(1) as usize;
    for (id, q) in st.queues.iter_mut() {
        let status = q.shown_status();
        if status != q.status {
            q.status = status;
            writes.push(Write::Queue(queue_row(*id, q)));
        }
        if q.release.is_some()
            && q.ready.is_empty()
            && q.connections == 0
            && !holds_any(&st.messages, *id)
        {
            // The release is over: the next backlog is the administrator's call again.
            q.release = None;
            writes.push(Write::Admin(AdminRow::QueueReleaseRate {
                id: *id,
                rate: None,
            }));
        }
        if q.release.is_some_and(|r| !r.due(now)) {
            continue;
        }
        if q.suspended || q.ready.is_empty() || q.key.delivery_type == DeliveryType::Unreachable {
            continue;
        }
        if q.next_retry.is_some_and(|t| t > now) {
            continue;
        }
        let local = q.key.delivery_type == DeliveryType::MapiDelivery;
        let target = match (&q.route, local) {
            (_, true) => Target::Mailbox,
            (Some(route), false) => Target::Smtp(route.clone()),
            (None, false) => continue,
        };
        let cap = if local {
            mailbox_cap
        } else if q.failures > 0 || q.next_retry.is_some() || q.release.is_some() {
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
            starts.push((*id, target.clone()));
        }
        if q.connections > 0 && q.status != QueueStatus::Active && !q.suspended {
            q.status = QueueStatus::Active;
            writes.push(Write::Queue(queue_row(*id, q)));
        }
    }
    (writes, starts)
}

/// Whether any recipient still waits in (or is being sent from) queue `id`.
fn holds_any(messages: &HashMap<Uuid, Msg>, id: i64) -> bool {
    messages.values().any(|m| {
        m.rcpts
            .iter()
            .any(|r| r.queue == Some(id) && !matches!(r.state, RState::Done | RState::Shadow))
    })
}

/// A message some of whose recipients a failed connection left waiting, for its DEFER line.
pub(super) struct Deferred {
    internal_id: i64,
    message_id: Option<String>,
    subject: Option<String>,
    from: String,
    size: u64,
    recipients: Vec<String>,
}

/// The messages and recipients `fail_connection`'s attempt rows name, in their order; taken
/// under the state lock so that the log is written after it is released.
fn deferred_messages(st: &State, writes: &[Write]) -> Vec<Deferred> {
    let mut out: Vec<(Uuid, Deferred)> = Vec::new();
    for w in writes {
        let Write::Attempt(a) = w else { continue };
        let Some(m) = st.messages.get(&a.message) else {
            continue;
        };
        let Some(r) = m.rcpts.iter().find(|r| r.ordinal == a.ordinal) else {
            continue;
        };
        let address = r.route_address.clone().unwrap_or(r.address.clone());
        match out.last_mut() {
            Some((id, d)) if *id == a.message => d.recipients.push(address),
            _ => out.push((
                a.message,
                Deferred {
                    internal_id: m.meta.internal_id,
                    message_id: m.meta.internet_message_id.clone(),
                    subject: m.meta.subject.clone(),
                    from: m.meta.from.clone(),
                    size: m.meta.size,
                    recipients: vec![address],
                },
            )),
        }
    }
    out.into_iter().map(|(_, d)| d).collect()
}

/// No host of `queue_id`'s next hop answered at `now`: the recipients the connection had taken
/// are ready again, the queue waits for its retry (TransientFailureRetryInterval, then
/// OutboundConnectionFailureRetryInterval), and every recipient waiting in it shows the error.
pub(super) fn fail_connection(
    st: &mut State,
    queue_id: i64,
    taken: &[(Uuid, Vec<i32>)],
    server: &TransportServer,
    reply: &Reply,
    attempt: &Attempt,
    now: OffsetDateTime,
) -> Vec<Write> {
    let text = reply.one_line();
    let mut writes = Vec::new();
    for (message, ordinals) in taken {
        if let Some(m) = st.messages.get_mut(message) {
            for r in m.rcpts.iter_mut().filter(|r| r.state == RState::InFlight) {
                if ordinals.contains(&r.ordinal) {
                    r.state = RState::Ready;
                }
            }
        }
        if let Some(q) = st.queues.get_mut(&queue_id) {
            q.push(*message);
        }
    }
    let Some(q) = st.queues.get_mut(&queue_id) else {
        return writes;
    };
    q.failures = q.failures.saturating_add(1);
    let next = now + connection_retry_interval(server, q.failures);
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
    writes
}
