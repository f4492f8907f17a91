//! The scheduler: retry, delay DSN and expiry timers, as pure functions of (state, now,
//! settings) and the tick that runs them on the manager's clock.

use super::*;

impl QueueManager {
    /// One pass of the timers and the dispatcher.
    /// Starts delivery tasks where the caps allow; with `scan_timers`, first runs the timers over
    /// every queued recipient (retry due, delay DSN, expiry). The scan is O(queued recipients),
    /// so it runs every TICK, not on every outcome.
    pub(super) async fn tick(&self, scan_timers: bool) {
        let now = self.now();
        let org = self.inner.org.borrow().clone();
        let mut due: Vec<(Uuid, Due)> = Vec::new();
        let (writes, starts) = {
            let mut st = self.state();
            let st = &mut *st;
            let mut writes = Vec::new();
            for (id, m) in st.messages.iter_mut().filter(|_| scan_timers) {
                let mut d = scan_message(
                    *id,
                    m,
                    &mut st.queues,
                    &org.server,
                    &org.accepted_domains,
                    now,
                );
                writes.append(&mut d.writes);
                if !d.is_empty() {
                    due.push((*id, d));
                }
            }
            let (mut w, starts) = plan_dispatch(st, &org.server, now);
            writes.append(&mut w);
            (writes, starts)
        };
        for w in writes {
            self.write(w);
        }
        self.start_agents(starts);
        for (id, d) in &due {
            if d.unrouted {
                let _ = self.inner.submissions.send(Submission::Retry(*id));
            }
        }
        let expired: Vec<_> = due
            .iter_mut()
            .map(|(id, d)| (*id, std::mem::take(&mut d.expired)))
            .collect();
        let reports: Vec<_> = due
            .iter_mut()
            .map(|(id, d)| (*id, std::mem::take(&mut d.reports)))
            .collect();
        for (id, results) in expired.into_iter().chain(reports) {
            if !results.is_empty() {
                self.finish_without_job(id, results).await;
            }
        }
        for (id, d) in due {
            if !d.delayed.is_empty() {
                self.report_delay(id, &d.delayed, d.until).await;
            }
        }
    }
}

/// What the timers found due for one message.
#[derive(Debug)]
pub(super) struct Due {
    /// Recipients past their MessageExpirationTimeout, failed with the reply their NDR carries.
    pub(super) expired: Vec<(i32, Outcome)>,
    /// Failed recipients whose NDR could not be queued, due to be tried again.
    pub(super) reports: Vec<(i32, Outcome)>,
    /// Recipients past their DelayNotificationTimeout, owed a delay DSN...
    pub(super) delayed: Vec<i32>,
    /// ...which says they are tried until this (their latest expiry).
    pub(super) until: OffsetDateTime,
    /// A recipient still in Submission (a categorizer or routing error) is due again.
    pub(super) unrouted: bool,
    /// Rows to persist (a delay DSN sent).
    pub(super) writes: Vec<Write>,
}

impl Due {
    fn is_empty(&self) -> bool {
        self.expired.is_empty()
            && self.reports.is_empty()
            && self.delayed.is_empty()
            && !self.unrouted
    }
}

/// The timers of one message at `now`: expiry, delay DSN, retry due (the recipient is ready
/// again and rejoins its queue). The expiry and delay times are the recipient's own, resolved at
/// routing from the AcceptedDomain, the SendConnector and the TransportServer.
pub(super) fn scan_message(
    id: Uuid,
    m: &mut Msg,
    queues: &mut HashMap<i64, Queue>,
    server: &TransportServer,
    accepted_domains: &[AcceptedDomain],
    now: OffsetDateTime,
) -> Due {
    let mut due = Due {
        expired: Vec::new(),
        reports: Vec::new(),
        delayed: Vec::new(),
        until: now,
        unrouted: false,
        writes: Vec::new(),
    };
    // Exchange decides delay DSNs by the sender: one of ours (InternalDelayDsnEnabled) or anyone
    // else (ExternalDelayDsnEnabled). Looked up only when a delay DSN falls due: the scan runs
    // over every held message each tick, and matching the sender against every accepted domain
    // for each of them held the state lock for most of the tick with a big backlog.
    let mut delay_dsn = None;
    let mut delay_dsn_for = |from: &str| {
        *delay_dsn.get_or_insert_with(|| {
            if categorizer::is_internal_sender(accepted_domains, from) {
                server.internal_delay_dsn_enabled
            } else {
                server.external_delay_dsn_enabled
            }
        })
    };
    for r in m.rcpts.iter_mut() {
        if r.state == RState::Reporting {
            if r.dsn_due.is_none_or(|t| t <= now)
                && let Some(reply) = r.final_reply.clone()
            {
                due.reports.push((r.ordinal, Outcome::Failed { reply }));
            }
            continue;
        }
        if matches!(r.state, RState::Done | RState::InFlight | RState::Shadow) {
            continue;
        }
        // Remove-Message on a recipient that was in flight (and not delivered), or loaded
        // marked: finalised here, once (in flight until then).
        if r.remove_with_ndr.is_some() {
            r.state = RState::InFlight;
            due.expired.push((
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
                .and_then(|q| queues.get(&q))
                .is_some_and(|q| q.key.delivery_type == DeliveryType::Unreachable);
            let reply = if unreachable {
                Decision::no_next_hop_reply()
            } else {
                Reply::new(550, "4.4.7", "QUEUE.Expired; message expired")
            };
            due.expired.push((r.ordinal, Outcome::Failed { reply }));
            continue;
        }
        let delay_due = m.meta.received_at + t.delay_notification_timeout;
        if !r.delay_notified
            && now >= delay_due
            && r.dsn_due.is_none_or(|t| t <= now)
            && delay_dsn_for(&m.meta.from)
        {
            r.delay_notified = true;
            due.delayed.push(r.ordinal);
            due.until = due.until.max(expires);
            due.writes.push(Write::Recipient(recipient_row(
                id,
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
            match r.queue.and_then(|q| queues.get_mut(&q)) {
                Some(q) => q.push(id),
                None => due.unrouted = true,
            }
        }
    }
    due
}

/// The expiry and delay DSN times of a recipient: its AcceptedDomain's, else the SendConnector's
/// that routes it, else the TransportServer's. `address` is where it really goes (a contact's
/// external address).
pub(super) fn timeouts_for(
    server: &TransportServer,
    accepted_domains: &[AcceptedDomain],
    connectors: &[SendConnector],
    route: Option<&Route>,
    address: &str,
) -> EffectiveTimeouts {
    let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    let connector = route.and_then(|r| connectors.iter().find(|c| c.id == r.connector_id));
    effective_timeouts(server, accepted_domains, connector, domain)
}

/// A transient failure of one recipient (a 4xx, a dropped connection): it is tried again after
/// MessageRetryInterval.
pub(super) fn defer(r: &mut Rcpt, server: &TransportServer, now: OffsetDateTime) {
    r.state = RState::Retry;
    r.retry_count += 1;
    r.next_retry = Some(now + Duration::from_secs(server.message_retry_interval.max(1) as u64));
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
    let clock = qm.inner.clock.clone();
    let mut last_scan = clock.monotonic();
    loop {
        tokio::select! {
            _ = qm.inner.wake.notified() => {}
            _ = clock.sleep(TICK) => {}
        }
        let scan = clock.monotonic().saturating_sub(last_scan) >= TICK;
        if scan {
            last_scan = clock.monotonic();
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
