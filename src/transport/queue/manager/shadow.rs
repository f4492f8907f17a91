//! Shadow copies (reference §1.3, §1.5): recipients handed to a primary that accepted XSHADOW
//! stay here, in that primary's Shadow Redundancy queue, until the primary names their message
//! in an XQDISCARD reply (then they are Delivered) or this node stops trusting it (heartbeats
//! failed, a new queue database, a broken reply, an administrator): then they are resubmitted
//! through routing, so they may leave through another smart host.
//!
//! The manager owns this state like every other queue state; delivery and the heartbeat only
//! report what a primary said.

use super::*;

/// The primary a shadowed session handed messages to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Primary {
    /// Its name from its EHLO reply: the shadow queue's NextHopDomain.
    pub fqdn: String,
    /// The send connector the session used (its port, TLS and auth serve the heartbeat).
    pub connector_id: Uuid,
    /// The host dialled and its port.
    pub host: String,
    pub port: u16,
    /// Its answer to XSHADOW (Base64 queue-database id).
    pub dbid: String,
}

impl Primary {
    pub fn key(&self) -> NextHopKey {
        shadow_key(&self.fqdn, self.connector_id)
    }
}

/// The identity of a primary's shadow queue.
pub fn shadow_key(fqdn: &str, connector_id: Uuid) -> NextHopKey {
    NextHopKey {
        delivery_type: DeliveryType::ShadowRedundancy,
        next_hop_domain: fqdn.to_ascii_lowercase(),
        connector_id: Some(connector_id),
    }
}

/// Why shadow copies go back to routing; the tracking log's RESUBMIT event says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResubmitReason {
    /// Retry-Queue -Resubmit $true on a shadow queue.
    Admin,
    /// ShadowHeartbeatRetryCount heartbeats in a row failed.
    ShadowHeartbeatFailure,
    /// The primary answered a new queue-database id, or broke the XQDISCARD contract.
    ShadowStateChange,
}

impl ResubmitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResubmitReason::Admin => "Admin",
            ResubmitReason::ShadowHeartbeatFailure => "ShadowHeartbeatFailure",
            ResubmitReason::ShadowStateChange => "ShadowStateChange",
        }
    }
}

/// What the manager keeps per shadow queue about its primary.
#[derive(Clone, Debug)]
pub(super) struct PrimaryState {
    pub(super) connector_id: Option<Uuid>,
    pub(super) fqdn: String,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) dbid: Option<String>,
    /// Consecutive failed heartbeats.
    pub(super) failures: u32,
    /// The last session (of any kind) that heard the primary, or the last heartbeat tried.
    pub(super) last_contact: OffsetDateTime,
    /// A heartbeat session is running for it.
    pub(super) beating: bool,
    /// The messages with copies in its queue, so that nothing about one primary scans every
    /// queued message (an entry may outlive its message: it is skipped, and dropped then).
    pub(super) copies: HashSet<Uuid>,
}

/// A primary due for a heartbeat, as the heartbeat task needs it.
#[derive(Clone, Debug)]
pub struct HeartbeatDue {
    pub queue_id: i64,
    pub fqdn: String,
    pub connector_id: Uuid,
    pub host: String,
    pub port: u16,
}

impl QueueManager {
    /// The shadow queue for `p`, created on first use, with its primary recorded (how to reach
    /// it, the dbid it answered).
    pub(super) async fn shadow_queue(&self, p: &Primary) -> Result<i64, sqlx::Error> {
        let qid = self.queue_for(&p.key(), None).await?;
        let known = self
            .state()
            .primaries
            .get(&qid)
            .is_some_and(|s| s.dbid.as_deref() == Some(&p.dbid) && s.host == p.host);
        if !known {
            sqlx::query(
                "INSERT INTO shadow_primary (queue_id, connector_id, host, port, dbid, heartbeat_failures)
                 VALUES ($1, $2, $3, $4, $5, 0)
                 ON CONFLICT (queue_id) DO UPDATE SET connector_id = $2, host = $3, port = $4,
                        dbid = $5, heartbeat_failures = 0, last_contact = now()",
            )
            .bind(qid)
            .bind(p.connector_id)
            .bind(&p.host)
            .bind(i32::from(p.port))
            .bind(&p.dbid)
            .execute(&self.inner.pool)
            .await?;
        }
        let now = self.now();
        let mut st = self.state();
        let s = st.primaries.entry(qid).or_insert_with(|| PrimaryState {
            connector_id: Some(p.connector_id),
            fqdn: p.fqdn.clone(),
            host: p.host.clone(),
            port: p.port,
            dbid: None,
            failures: 0,
            last_contact: now,
            beating: false,
            copies: HashSet::new(),
        });
        s.connector_id = Some(p.connector_id);
        s.host = p.host.clone();
        s.port = p.port;
        s.dbid = Some(p.dbid.clone());
        s.failures = 0;
        s.last_contact = now;
        Ok(qid)
    }

    /// A session to `p` answered XSHADOW: the primary is alive. When it answered another
    /// queue-database id than the copies were made with, it lost them: they are resubmitted now.
    pub async fn shadow_contact(&self, p: &Primary) {
        let now = self.now();
        let changed = {
            let mut st = self.state();
            let Some(qid) = st.by_key.get(&p.key()).copied() else {
                return;
            };
            let Some(s) = st.primaries.get_mut(&qid) else {
                return;
            };
            s.failures = 0;
            s.last_contact = now;
            let changed = s.dbid.as_deref().is_some_and(|d| d != p.dbid);
            changed.then_some(qid)
        };
        if let Some(qid) = changed {
            tracing::warn!(
                "primary {} answered a new queue database id: its shadow copies are resubmitted",
                p.fqdn
            );
            self.shadow_resubmit(qid, ResubmitReason::ShadowStateChange);
        }
        let _ = self.record_primary(&p.key(), Some(&p.dbid)).await;
    }

    /// Persists a primary's dbid, failure count and contact time.
    async fn record_primary(
        &self,
        key: &NextHopKey,
        dbid: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let row = {
            let mut st = self.state();
            let Some(qid) = st.by_key.get(key).copied() else {
                return Ok(());
            };
            let Some(s) = st.primaries.get_mut(&qid) else {
                return Ok(());
            };
            if let Some(d) = dbid {
                s.dbid = Some(d.to_string());
            }
            (qid, s.dbid.clone(), s.failures as i32, s.last_contact)
        };
        sqlx::query(
            "UPDATE shadow_primary SET dbid = $2, heartbeat_failures = $3, last_contact = $4
              WHERE queue_id = $1",
        )
        .bind(row.0)
        .bind(row.1)
        .bind(row.2)
        .bind(row.3)
        .execute(&self.inner.pool)
        .await?;
        Ok(())
    }

    /// Whether this node holds shadow copies for the primary of `key`.
    pub fn shadow_holds(&self, key: &NextHopKey) -> bool {
        let st = self.state();
        st.by_key
            .get(key)
            .and_then(|q| st.primaries.get(q))
            .is_some_and(|p| !p.copies.is_empty())
    }

    /// The primary is done with the messages `ids` names (XQDISCARD): their copies in its
    /// queue are final (Delivered), and a message whose recipients are all final goes with its
    /// body. Ids this node never gave, or gave to another primary, change nothing. Returns
    /// whether copies remain for that primary.
    pub fn shadow_discarded(&self, key: &NextHopKey, ids: &[String]) -> bool {
        let now = self.now();
        let mut writes = Vec::new();
        let remain = {
            let mut st = self.state();
            let st = &mut *st;
            note_early_discards(st, key, ids, now);
            let Some(qid) = st.by_key.get(key).copied() else {
                return false;
            };
            let Some(copies) = st.primaries.get_mut(&qid).map(|p| &mut p.copies) else {
                return false;
            };
            for id in ids {
                let Ok(id) = Uuid::parse_str(id) else {
                    continue;
                };
                if !copies.remove(&id) {
                    continue;
                }
                st.early_discards.remove(&id);
                let Some(m) = st.messages.get_mut(&id) else {
                    continue;
                };
                let mut changed = false;
                for r in m.rcpts.iter_mut() {
                    if r.queue == Some(qid) && r.state == RState::Shadow {
                        r.state = RState::Done;
                        r.last_error = None;
                        writes.push(Write::Recipient(recipient_row(
                            id,
                            r,
                            RecipientStatus::Delivered,
                            now,
                        )));
                        changed = true;
                    }
                }
                if changed && m.rcpts.iter().all(|r| r.state == RState::Done) {
                    st.messages.remove(&id);
                    writes.retain(|w| !matches!(w, Write::Recipient(r) if r.message == id));
                    writes.push(Write::Delete(id));
                }
            }
            !copies.is_empty()
        };
        for w in writes {
            self.write(w);
        }
        remain
    }

    /// Every shadow copy of queue `qid` goes back to routing (Ready, no queue), with a RESUBMIT
    /// tracking event giving `reason`. Nothing is lost: the rows say Ready before anything else
    /// happens to them.
    pub fn shadow_resubmit(&self, qid: i64, reason: ResubmitReason) -> (u32, u32) {
        let mut rows = Vec::new();
        let mut moved = Vec::new();
        {
            let mut st = self.state();
            let st = &mut *st;
            let copies = match st.primaries.get_mut(&qid) {
                Some(p) => {
                    p.failures = 0;
                    std::mem::take(&mut p.copies)
                }
                None => HashSet::new(),
            };
            for id in &copies {
                let Some(m) = st.messages.get_mut(id) else {
                    continue;
                };
                let before = rows.len();
                for r in m
                    .rcpts
                    .iter_mut()
                    .filter(|r| r.queue == Some(qid) && r.state == RState::Shadow)
                {
                    r.queue = None;
                    r.route_address = None;
                    r.state = RState::Ready;
                    r.next_retry = None;
                    rows.push(AdminRow::Resubmitted {
                        message: *id,
                        ordinal: r.ordinal,
                    });
                }
                if rows.len() > before {
                    moved.push((*id, m.meta.clone()));
                }
            }
        }
        let recipients = rows.len() as u32;
        for r in rows {
            self.write(Write::Admin(r));
        }
        for (id, meta) in &moved {
            let addresses: Vec<&str> = meta.recipients.iter().map(|r| r.address.as_str()).collect();
            self.inner.tracking.record(&TrackingEvent {
                message_id: meta.internet_message_id.as_deref(),
                recipients: &addresses,
                total_bytes: meta.size,
                subject: meta.subject.as_deref(),
                sender: &meta.from,
                return_path: &meta.from,
                source_context: Some(reason.as_str()),
                ..self.own_event("RESUBMIT", "REDUNDANCY", meta.internal_id)
            });
            let _ = self.inner.submissions.send(Submission::Retry(*id));
        }
        self.inner.wake.notify_one();
        (moved.len() as u32, recipients)
    }

    /// The primary of `key` broke the XQDISCARD contract: its copies are resubmitted, and for
    /// the worst-case heartbeat delay (ShadowHeartbeatTimeoutInterval x ShadowHeartbeatRetryCount,
    /// at least a minute) sessions to it keep no copies, so the resubmitted messages reach it (or
    /// another host) once instead of going round.
    pub fn shadow_violation(&self, key: &NextHopKey) {
        let config = self.org().config.clone();
        let secs = config
            .shadow_heartbeat_timeout_interval
            .max(1)
            .saturating_mul(i64::from(config.shadow_heartbeat_retry_count.max(1)))
            .clamp(60, 86_400);
        let until = self.now() + Duration::from_secs(secs as u64);
        let qid = {
            let mut st = self.state();
            st.distrusted.insert(key.clone(), until);
            st.by_key.get(key).copied()
        };
        if let Some(qid) = qid {
            self.shadow_resubmit(qid, ResubmitReason::ShadowStateChange);
        }
    }

    /// May a session to the primary of `key` leave shadow copies with it?
    pub fn shadow_trusted(&self, key: &NextHopKey) -> bool {
        let now = self.now();
        let mut st = self.state();
        match st.distrusted.get(key) {
            Some(until) if *until > now => false,
            Some(_) => {
                st.distrusted.remove(key);
                true
            }
            None => true,
        }
    }

    /// Primaries holding copies that no session has heard for `interval`, marked as being
    /// heartbeaten (until `heartbeat_done`).
    pub fn heartbeats_due(&self, interval: Duration) -> Vec<HeartbeatDue> {
        let now = self.now();
        let mut st = self.state();
        let st = &mut *st;
        let mut due = Vec::new();
        for (qid, s) in st.primaries.iter_mut() {
            if s.beating || s.copies.is_empty() || now - s.last_contact < interval {
                continue;
            }
            // Copies gone another way (a message moved to Poison) need no heartbeat.
            let messages = &st.messages;
            s.copies.retain(|id| {
                messages.get(id).is_some_and(|m| {
                    m.rcpts
                        .iter()
                        .any(|r| r.queue == Some(*qid) && r.state == RState::Shadow)
                })
            });
            if s.copies.is_empty() {
                continue;
            }
            let Some(connector_id) = s.connector_id else {
                continue;
            };
            s.beating = true;
            due.push(HeartbeatDue {
                queue_id: *qid,
                fqdn: s.fqdn.clone(),
                connector_id,
                host: s.host.clone(),
                port: s.port,
            });
        }
        due
    }

    /// A heartbeat of queue `qid`'s primary ended. A failure counts; at `retry_count` failures
    /// in a row the copies are resubmitted (ShadowHeartbeatFailure).
    pub async fn heartbeat_done(&self, qid: i64, ok: bool, retry_count: u32) {
        let now = self.now();
        let give_up = {
            let mut st = self.state();
            let Some(s) = st.primaries.get_mut(&qid) else {
                return;
            };
            s.beating = false;
            s.last_contact = now;
            if ok {
                s.failures = 0;
                false
            } else {
                s.failures = s.failures.saturating_add(1);
                s.failures >= retry_count.max(1)
            }
        };
        if give_up {
            tracing::warn!("shadow queue {qid}: its primary missed its heartbeats, resubmitting");
            self.shadow_resubmit(qid, ResubmitReason::ShadowHeartbeatFailure);
        }
        let key = self.state().queues.get(&qid).map(|q| q.key.clone());
        if let Some(key) = key {
            let _ = self.record_primary(&key, None).await;
        }
    }

    /// Loads this server's shadow queues and their primaries (at start, before the messages).
    pub(super) async fn load_shadow_queues(&self) -> Result<(), sqlx::Error> {
        type Row = (
            i64,
            String,
            Option<Uuid>,
            bool,
            String,
            i32,
            Option<String>,
            i32,
            OffsetDateTime,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT q.id, q.next_hop_domain, q.connector_id, q.suspended, p.host, p.port, p.dbid,
                    p.heartbeat_failures, p.last_contact
               FROM delivery_queue q JOIN shadow_primary p ON p.queue_id = q.id
              WHERE q.server = $1 AND q.delivery_type = 'ShadowRedundancy'",
        )
        .bind(&self.inner.server)
        .fetch_all(&self.inner.pool)
        .await?;
        let mut st = self.state();
        for (id, fqdn, connector_id, suspended, host, port, dbid, failures, last_contact) in rows {
            let key = NextHopKey {
                delivery_type: DeliveryType::ShadowRedundancy,
                next_hop_domain: fqdn.clone(),
                connector_id,
            };
            st.by_key.insert(key.clone(), id);
            st.queues.entry(id).or_insert_with(|| Queue {
                key,
                route: None,
                suspended,
                status: QueueStatus::Ready,
                last_error: None,
                last_retry: None,
                next_retry: None,
                failures: 0,
                connections: 0,
                ready: VecDeque::new(),
                pending: HashSet::new(),
                release: None,
            });
            st.primaries.insert(
                id,
                PrimaryState {
                    connector_id,
                    fqdn,
                    host,
                    port: u16::try_from(port).unwrap_or(25),
                    dbid,
                    failures: u32::try_from(failures).unwrap_or(0),
                    last_contact,
                    beating: false,
                    copies: HashSet::new(),
                },
            );
        }
        Ok(())
    }
}

/// How long a discard id that came before its copy was filed is kept for it.
const EARLY_DISCARD_KEEP: time::Duration = time::Duration::minutes(10);

/// Keeps the ids of `ids` that name a message of ours with no copy filed for `key` yet: the
/// session that handed it over may not have reported its outcome. Only messages in memory are
/// kept (so a hostile primary cannot grow the map beyond the queue), for a bounded time.
pub(super) fn note_early_discards(
    st: &mut State,
    key: &NextHopKey,
    ids: &[String],
    now: OffsetDateTime,
) {
    st.early_discards
        .retain(|id, (_, at)| st.messages.contains_key(id) && now - *at < EARLY_DISCARD_KEEP);
    let filed = st
        .by_key
        .get(key)
        .and_then(|q| st.primaries.get(q))
        .map(|p| &p.copies);
    for id in ids.iter().filter_map(|i| Uuid::parse_str(i).ok()) {
        if st.messages.contains_key(&id) && !filed.is_some_and(|c| c.contains(&id)) {
            st.early_discards.insert(id, (key.clone(), now));
        }
    }
}

/// Whether the primary of `key` already reported message `id` done before its copy was filed;
/// the entry is used up.
pub(super) fn take_early_discard(st: &mut State, id: Uuid, key: &NextHopKey) -> bool {
    match st.early_discards.get(&id) {
        Some((k, _)) if k == key => {
            st.early_discards.remove(&id);
            true
        }
        _ => false,
    }
}
