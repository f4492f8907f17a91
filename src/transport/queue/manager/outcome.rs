//! What a job's outcome does to the state: delivered recipients are done, failed ones reported
//! (NDR) and done, deferred ones wait for their retry; a job dropped unreported goes back.

use super::*;
use crate::monitor;
use crate::transport::stats::Event;

impl QueueManager {
    /// A job was dropped unfinished. After a panic in its delivery the message counts a crash,
    /// and at PoisonThreshold crashes it goes to the Poison queue (permanently suspended until an
    /// administrator releases it); otherwise its recipients are ready again.
    pub(super) fn return_job(&self, message: Uuid, ordinals: &[i32], panicked: bool) {
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
                    self.release_ack(message);
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

    /// Records the outcome of one job. Permanent failures are reported (NDR) before they are
    /// written as final, so a crash in between repeats the NDR rather than losing it; when the
    /// NDR cannot be queued they are not final yet (Reporting) and the timers try again.
    pub async fn finish(&self, job: &Job, results: Vec<(i32, Outcome)>, attempt: &Attempt) {
        let now = self.now();
        let org = self.inner.org.borrow().clone();
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
        // The primary's shadow queue, made before the state is locked. Without it (a database
        // error) the copy cannot be kept: the primary has the message, so it counts as delivered.
        let mut shadow_queue = None;
        let shadow_primary = results.iter().find_map(|(_, o)| match o {
            Outcome::Shadowed { primary, .. } => Some(primary.clone()),
            _ => None,
        });
        let shadow_key = shadow_primary.as_ref().map(|p| p.key());
        if let Some(p) = shadow_primary {
            match self.shadow_queue(&p).await {
                Ok(q) => shadow_queue = Some(q),
                Err(e) => tracing::error!("creating the shadow queue of {}: {e}", p.fqdn),
            }
        }
        let mut writes = Vec::new();
        let mut events = Vec::new();
        let received_at;
        let connector;
        {
            let mut st = self.state();
            let st = &mut *st;
            // The primary may have reported the message done already (another session's
            // XQDISCARD): then there is no copy to keep.
            let discarded = shadow_key
                .as_ref()
                .is_some_and(|k| shadow::take_early_discard(st, job.message, k));
            connector = job_connector(st, job);
            received_at = st.messages.get(&job.message).map(|m| m.meta.received_at);
            let Some(m) = st.messages.get_mut(&job.message) else {
                return;
            };
            let first_try = m.rcpts.iter().all(|r| r.retry_count == 0);
            for (ordinal, outcome) in results {
                let Some(r) = m.rcpts.iter_mut().find(|r| r.ordinal == ordinal) else {
                    continue;
                };
                let (status, reply) = match outcome {
                    Outcome::Shadowed { reply, .. }
                        if let Some(q) = shadow_queue
                            && !discarded =>
                    {
                        r.state = RState::Shadow;
                        r.queue = shadow_queue;
                        if let Some(p) = st.primaries.get_mut(&q) {
                            p.copies.insert(job.message);
                        }
                        r.last_error = None;
                        if attempt.host.is_some() {
                            r.remote_mta = attempt.host.clone();
                        }
                        events.push((
                            RecipientStatus::Delivered,
                            r.route_address.clone().unwrap_or(r.address.clone()),
                            reply.one_line(),
                        ));
                        writes.push(Write::Routed(RoutedRow {
                            message: job.message,
                            ordinal,
                            queue_id: shadow_queue,
                            route_address: r.route_address.clone(),
                        }));
                        writes.push(Write::Recipient(recipient_row(
                            job.message,
                            r,
                            RecipientStatus::Shadow,
                            now,
                        )));
                        continue;
                    }
                    Outcome::Delivered { reply } | Outcome::Shadowed { reply, .. } => {
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
                        timers::defer(r, &org.server, now);
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
            if ack::settled(m) {
                self.release_ack(job.message);
            }
            if m.rcpts.iter().all(|r| r.state == RState::Done) {
                st.messages.remove(&job.message);
                writes.retain(|w| !matches!(w, Write::Recipient(_) | Write::Attempt(_)));
                writes.push(Write::Delete(job.message));
            } else if shadow_queue.is_some()
                && m.rcpts
                    .iter()
                    .all(|r| matches!(r.state, RState::Done | RState::Shadow))
            {
                // Nothing is left to deliver here: when this node is itself the primary for the
                // message, its own shadow may discard its copy now (the next primary holds it).
                writes.push(Write::ShadowDiscard(job.message));
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
            self.inner.stats.count(match status {
                RecipientStatus::Delivered => Event::Delivered,
                RecipientStatus::Failed => Event::Failed,
                _ => Event::Deferred,
            });
            monitor::delivery(
                match status {
                    RecipientStatus::Delivered => monitor::Delivery::Delivered,
                    RecipientStatus::Failed => monitor::Delivery::Failed,
                    _ => monitor::Delivery::Deferred,
                },
                &connector,
            );
            if status == RecipientStatus::Delivered
                && let Some(at) = received_at
            {
                monitor::delivery_latency((now - at).as_seconds_f64());
            }
            let local = attempt.ip.is_none();
            let (event_id, source) = match status {
                RecipientStatus::Delivered if local => ("DELIVER", "STOREDRIVER"),
                RecipientStatus::Delivered => ("SEND", "SMTP"),
                RecipientStatus::Failed => ("FAIL", "SMTP"),
                _ => ("DEFER", "SMTP"),
            };
            tracking.record(&TrackingEvent {
                message_id: job.internet_message_id.as_deref(),
                recipients: &recipients,
                recipient_status: &statuses,
                total_bytes: job.size,
                subject: job.subject.as_deref(),
                sender: &job.from,
                return_path: &job.from,
                ..self.hop_event(event_id, source, attempt, job.internal_id)
            });
        }
        job.guard.disarm();
        self.inner.wake.notify_one();
    }
}

/// The `connector` label of a job's outcomes: its queue's send connector, or the DeliveryType
/// where no connector routes (local mailboxes).
pub(super) fn job_connector(st: &State, job: &Job) -> String {
    let Some(m) = st.messages.get(&job.message) else {
        return String::new();
    };
    let queue = m
        .rcpts
        .iter()
        .filter(|r| job.recipients.iter().any(|j| j.ordinal == r.ordinal))
        .find_map(|r| r.queue.and_then(|q| st.queues.get(&q)));
    match queue {
        Some(q) => match &q.route {
            Some(route) => route.connector_name.clone(),
            None => q.key.delivery_type.name().to_string(),
        },
        None => String::new(),
    }
}
