//! The scheduler: retry, delay DSN and expiry timers, and starting delivery tasks.

use super::*;

impl QueueManager {
    /// One pass of the timers and the dispatcher.
    /// Starts delivery tasks where the caps allow; with `scan_timers`, first runs the timers over
    /// every queued recipient (retry due, delay DSN, expiry). The scan is O(queued recipients),
    /// so it runs every TICK, not on every outcome.
    pub(super) async fn tick(&self, scan_timers: bool) {
        let now = OffsetDateTime::now_utc();
        let org = self.inner.org.borrow().clone();
        let mut expired: Vec<(Uuid, Vec<(i32, Outcome)>)> = Vec::new();
        let mut delayed: Vec<(Uuid, Vec<i32>, OffsetDateTime)> = Vec::new();
        let mut spawn: Vec<(i64, Option<Route>, DeliveryType)> = Vec::new();
        let mut reports: Vec<(Uuid, Vec<(i32, Outcome)>)> = Vec::new();
        let mut resubmit: Vec<Uuid> = Vec::new();
        let mut writes = Vec::new();
        {
            let mut st = self.state();
            let st = &mut *st;
            for (id, m) in st.messages.iter_mut().filter(|_| scan_timers) {
                let mut exp = Vec::new();
                let mut del = Vec::new();
                let mut until = now;
                let mut rep = Vec::new();
                let mut unrouted = false;
                // Exchange decides delay DSNs by the sender: one of ours (InternalDelayDsnEnabled)
                // or anyone else (ExternalDelayDsnEnabled).
                let delay_dsn =
                    if categorizer::is_internal_sender(&org.accepted_domains, &m.meta.from) {
                        org.server.internal_delay_dsn_enabled
                    } else {
                        org.server.external_delay_dsn_enabled
                    };
                for r in m.rcpts.iter_mut() {
                    if r.state == RState::Reporting {
                        if r.dsn_due.is_none_or(|t| t <= now)
                            && let Some(reply) = r.final_reply.clone()
                        {
                            rep.push((r.ordinal, Outcome::Failed { reply }));
                        }
                        continue;
                    }
                    if matches!(r.state, RState::Done | RState::InFlight) {
                        continue;
                    }
                    // Remove-Message on a recipient that was in flight (and not delivered), or
                    // loaded marked: finalised here, once (in flight until then).
                    if r.remove_with_ndr.is_some() {
                        r.state = RState::InFlight;
                        exp.push((
                            r.ordinal,
                            Outcome::Failed {
                                reply: super::admin::removal_reply(),
                            },
                        ));
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
                        && delay_dsn
                        && r.dsn_due.is_none_or(|t| t <= now)
                    {
                        r.delay_notified = true;
                        del.push(r.ordinal);
                        until = until.max(expires);
                        writes.push(Write::Recipient(recipient_row(
                            *id,
                            r,
                            if r.retry_count > 0 {
                                RecipientStatus::Retry
                            } else {
                                RecipientStatus::Ready
                            },
                            now,
                        )));
                    }
                    if r.state == RState::Retry && r.next_retry.is_none_or(|t| t <= now) {
                        r.state = RState::Ready;
                        match r.queue.and_then(|q| st.queues.get_mut(&q)) {
                            Some(q) => q.push(*id),
                            // Still in Submission after a categorizer or routing error: again.
                            None => unrouted = true,
                        }
                    }
                }
                if !exp.is_empty() {
                    expired.push((*id, exp));
                }
                if !rep.is_empty() {
                    reports.push((*id, rep));
                }
                if unrouted {
                    resubmit.push(*id);
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
                if q.connections > 0 && q.status != QueueStatus::Active && !q.suspended {
                    q.status = QueueStatus::Active;
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
        for id in resubmit {
            let _ = self.inner.submissions.send(Submission::Retry(id));
        }
        for (id, results) in expired.into_iter().chain(reports) {
            self.finish_without_job(id, results).await;
        }
        for (id, ordinals, until) in delayed {
            self.report_delay(id, &ordinals, until).await;
        }
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

pub(super) async fn scheduler(qm: QueueManager) {
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
}
