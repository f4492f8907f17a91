//! Submission: the categorizer and routing file each recipient into a delivery queue.

use super::*;
use crate::transport::queue::ops::rate::ReleaseRate;

impl QueueManager {
    /// Files a submitted message's recipients into queues (categorizer + routing).
    pub(super) async fn categorize(&self, items: Vec<Submission>) {
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
                Submission::New(mut m) => {
                    let id = m.id;
                    if let Some(held) = self.state().held.remove(&id) {
                        held.apply(&mut m);
                    }
                    // A copy whose shadow queue did not load (its primary's row is gone) cannot
                    // be heartbeaten: it goes through routing again instead.
                    let shadow_queues: HashSet<i64> =
                        self.state().primaries.keys().copied().collect();
                    for r in m.recipients.iter_mut() {
                        if r.shadow_queue.is_some_and(|q| !shadow_queues.contains(&q)) {
                            r.shadow_queue = None;
                        }
                    }
                    let rcpts: Vec<Rcpt> = m
                        .recipients
                        .iter()
                        .map(|r| Rcpt {
                            ordinal: r.ordinal,
                            address: r.address.clone(),
                            route_address: None,
                            orcpt: r.orcpt.clone(),
                            // Removed without an NDR: nobody is told, whatever happens.
                            notify: if r.remove_with_ndr == Some(false) {
                                Some("NEVER".into())
                            } else {
                                r.notify.clone()
                            },
                            queue: r.shadow_queue,
                            state: if r.shadow_queue.is_some() {
                                RState::Shadow
                            } else if r.next_retry.is_some_and(|t| t > self.now()) {
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
                            dsn_failures: 0,
                            dsn_due: None,
                            final_reply: None,
                            submit_failures: 0,
                        })
                        .collect();
                    let todo: Vec<(i32, String)> = if m.body_lost {
                        // Committed rows whose body is gone (found at start): nothing can be
                        // delivered, so every recipient is reported to the sender at once.
                        Vec::new()
                    } else {
                        rcpts
                            .iter()
                            .filter(|r| r.state != RState::Shadow)
                            .map(|r| (r.ordinal, r.address.clone()))
                            .collect()
                    };
                    if m.body_lost {
                        let lost: Vec<(i32, Reply)> = rcpts
                            .iter()
                            .map(|r| (r.ordinal, body_lost_reply()))
                            .collect();
                        failures.push((id, lost));
                    }
                    let suspended = m.suspended;
                    let crashes = m.crash_count;
                    for q in rcpts
                        .iter()
                        .filter(|r| r.state == RState::Shadow)
                        .filter_map(|r| r.queue)
                    {
                        if let Some(p) = self.state().primaries.get_mut(&q) {
                            p.copies.insert(id);
                        }
                    }
                    self.state().messages.insert(
                        id,
                        Msg {
                            meta: *m,
                            suspended,
                            crashes,
                            rcpts,
                        },
                    );
                    (id, todo)
                }
                Submission::Reroute(id) | Submission::Retry(id) => {
                    let st = self.state();
                    let Some(m) = st.messages.get(&id) else {
                        continue;
                    };
                    if matches!(item, Submission::Reroute(_)) {
                        self.track_admin("RESUBMIT", "ADMIN", &m.meta);
                    }
                    let todo = m
                        .rcpts
                        .iter()
                        .filter(|r| r.queue.is_none() && r.state == RState::Ready)
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
                            tracing::warn!("categorizing {address}: {e}");
                            self.submission_failed(id, ordinal, &org, &address);
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
                        self.submission_failed(id, ordinal, &org, &address);
                        continue;
                    }
                };
                let timeouts = timers::timeouts_for(
                    &org.server,
                    &org.accepted_domains,
                    &org.send_connectors,
                    route.as_ref(),
                    forwarded.as_deref().unwrap_or(&address),
                );
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
                r.submit_failures = 0;
                if let Some(q) = st.queues.get_mut(&queue_id) {
                    // A recipient still waiting for its retry time (loaded after a restart) joins
                    // the queue when the timer makes it ready, not before.
                    if r.state == RState::Ready {
                        q.push(id);
                    }
                    // Joining a queue that waits for its next retry: the recipient waits too, and
                    // the queue viewer says why.
                    if let (Some(next), Some(err)) = (q.next_retry, &q.last_error)
                        && r.retry_count == 0
                    {
                        r.last_error = Some(err.clone());
                        r.next_retry = Some(next);
                        held = Some(recipient_row(id, r, RecipientStatus::Retry, self.now()));
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

    /// Categorizing or routing a recipient hit a database error: it stays in Submission, is
    /// tried again after a backoff (the timers resubmit it), and its message's expiry and delay
    /// DSN run meanwhile on the server's timeouts.
    fn submission_failed(&self, id: Uuid, ordinal: i32, org: &Org, address: &str) {
        let now = self.now();
        let timeouts = timers::timeouts_for(&org.server, &org.accepted_domains, &[], None, address);
        let row = {
            let mut st = self.state();
            let Some(m) = st.messages.get_mut(&id) else {
                return;
            };
            let Some(r) = m.rcpts.iter_mut().find(|r| r.ordinal == ordinal) else {
                return;
            };
            r.submit_failures = r.submit_failures.saturating_add(1);
            r.state = RState::Retry;
            r.next_retry = Some(now + submission_backoff(r.submit_failures));
            r.last_error = Some(submission_error_reply().one_line());
            r.timeouts.get_or_insert(timeouts);
            recipient_row(id, r, RecipientStatus::Retry, now)
        };
        self.write(Write::Recipient(row));
    }

    /// Like `finish` for recipients no delivery task holds (categorizer, timers, admin).
    pub(super) async fn finish_without_job(&self, id: Uuid, results: Vec<(i32, Outcome)>) {
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
            Job::new(self.give_back(), &m.meta, Vec::new())
        };
        self.finish(&job, results, &Attempt::default()).await;
    }

    /// The queue for `key`, created in the database (for its identity number) on first use.
    pub(super) async fn queue_for(
        &self,
        key: &NextHopKey,
        route: Option<Route>,
    ) -> Result<i64, sqlx::Error> {
        if let Some(id) = self.state().by_key.get(key) {
            return Ok(*id);
        }
        type Row = (
            i64,
            bool,
            Option<String>,
            Option<OffsetDateTime>,
            Option<OffsetDateTime>,
            Option<i32>,
        );
        let (id, suspended, last_error, last_retry, next_retry, release_rate): Row =
            sqlx::query_as(
                "INSERT INTO delivery_queue (server, delivery_type, next_hop_domain, connector_id)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (server, delivery_type, next_hop_domain, connector_id)
             DO UPDATE SET server = EXCLUDED.server
             RETURNING id, suspended, last_error, last_retry_time, next_retry_time, release_rate",
            )
            .bind(&self.inner.server)
            .bind(key.delivery_type.name())
            .bind(&key.next_hop_domain)
            .bind(key.connector_id)
            .fetch_one(&self.inner.pool)
            .await?;
        // A queue that was waiting for its next retry when the gateway stopped (or was killed)
        // keeps waiting: Retry with its NextRetryTime, and no connection before then.
        let waiting = next_retry.is_some() && last_error.is_some();
        // A controlled release in progress when the gateway stopped goes on at its pace.
        let release_rate = ReleaseRate::from_stored(release_rate);
        let mut st = self.state();
        st.by_key.insert(key.clone(), id);
        st.queues.entry(id).or_insert_with(|| Queue {
            key: key.clone(),
            route,
            suspended,
            status: QueueStatus::Ready,
            last_error: last_error.filter(|_| waiting),
            last_retry: last_retry.filter(|_| waiting),
            next_retry: next_retry.filter(|_| waiting),
            failures: u32::from(waiting),
            connections: 0,
            ready: VecDeque::new(),
            pending: HashSet::new(),
            release: release_rate.map(Release::new),
        });
        Ok(id)
    }
}

/// How long a recipient waits in Submission after its `failures`-th categorizer or routing
/// error: doubling from 2 s, at most a minute (a directory back up is used within a minute).
fn submission_backoff(failures: u32) -> Duration {
    report::backoff(failures, Duration::from_secs(2), Duration::from_secs(60))
}

/// What the queue viewer shows for a recipient waiting in Submission after such an error.
fn submission_error_reply() -> Reply {
    Reply::new(
        451,
        "4.3.0",
        "CAT.Error; the directory or the queue database could not be read, will retry",
    )
}

pub(super) async fn submitter(qm: QueueManager, mut rx: mpsc::UnboundedReceiver<Submission>) {
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
