//! Queue commands (ops::command): the manager applies each to its in-memory queues and writes
//! the rows through its writer; it alone writes queue and recipient state while it runs.
//!
//! A command runs after every write queued before it (a flush), and its result is recorded after
//! its own writes, so the caller that reads the queues after the reply sees what it did.

use sqlx::PgConnection;

use super::*;
use crate::transport::queue::ops::QueueError;
use crate::transport::queue::ops::command::{self, Prepared, Verb};

/// What commands asked of a message the submitter has not filed yet (accepted a moment ago),
/// applied when it is.
#[derive(Debug, Default)]
pub(super) struct Held {
    pub(super) suspended: Option<bool>,
    /// (ordinal, with NDR)
    pub(super) remove: Vec<(i32, bool)>,
}

impl Held {
    /// Applies what was held to the message as it is filed.
    pub(super) fn apply(self, m: &mut Submitted) {
        if let Some(s) = self.suspended {
            m.suspended = s;
        }
        for (ordinal, with_ndr) in self.remove {
            if let Some(r) = m.recipients.iter_mut().find(|r| r.ordinal == ordinal) {
                r.remove_with_ndr = Some(with_ndr);
            }
        }
    }
}

/// Remove-Message's reason, in the NDR and the history.
pub(super) fn removal_reply() -> Reply {
    Reply::new(
        550,
        "4.3.2",
        "QUEUE.Admin; message deleted by administrative action",
    )
}

/// Where a message named by a command is.
pub(super) enum Place {
    Memory,
    Poison,
    /// In the database, not filed by the submitter yet.
    Arriving,
}

impl QueueManager {
    /// Waits until every write queued so far is written.
    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.write(Write::Flush(tx));
        let _ = rx.await;
    }

    /// Runs the recorded commands of this server, in order.
    pub(super) async fn run_commands(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        for _ in 0..10_000 {
            let Some(rec) = command::next_pending(conn, &self.inner.server).await? else {
                return Ok(());
            };
            self.flush().await;
            let outcome = self.apply_command(&rec.command).await;
            self.flush().await;
            command::finish(conn, &rec, &outcome, "Gateway").await?;
            self.prune_held().await;
        }
        Ok(())
    }

    /// Forgets what was held for messages that are gone without being filed (finished between
    /// the command's check and its run), so the map stays small.
    async fn prune_held(&self) {
        let ids: Vec<Uuid> = {
            let st = self.state();
            if st.held.len() < 64 {
                return;
            }
            st.held.keys().copied().collect()
        };
        let present: Result<Vec<(Uuid,)>, _> =
            sqlx::query_as("SELECT id FROM message WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(&self.inner.pool)
                .await;
        if let Ok(present) = present {
            let present: HashSet<Uuid> = present.into_iter().map(|(id,)| id).collect();
            let asked: HashSet<Uuid> = ids.into_iter().collect();
            // Entries held since the question was asked stay.
            self.state()
                .held
                .retain(|id, _| present.contains(id) || !asked.contains(id));
        }
    }

    /// Applies one command; returns the messages and recipients it changed.
    pub(super) async fn apply_command(&self, p: &Prepared) -> Result<(u32, u32), QueueError> {
        if !p.batch.is_empty() {
            return self.message_batch(p).await;
        }
        match p.verb {
            Verb::SuspendQueue | Verb::ResumeQueue | Verb::ResumeQueueAtRate => {
                let suspend = p.verb == Verb::SuspendQueue;
                let id = match p.queue_id {
                    Some(id) => id,
                    // Unreachable has no row until first needed; a suspension must outlive that.
                    None if suspend => self.queue_for(&NextHopKey::unreachable(), None).await?,
                    None => return Ok((0, 0)),
                };
                let (counts, retried) = {
                    let mut st = self.state();
                    if let Some(q) = st.queues.get_mut(&id) {
                        q.suspended = suspend;
                        // Resume-Queue sets the pace or, without one, ends a controlled release.
                        if !suspend {
                            q.release = p.rate.map(Release::new);
                        }
                    }
                    // A rate means "the next hop is back": a queue waiting for its retry
                    // starts now, at that pace.
                    let retried = match p.verb {
                        Verb::ResumeQueueAtRate => retry_in(&mut st, id).map(|(row, _)| row),
                        _ => None,
                    };
                    (queue_counts(&st, id), retried)
                };
                self.write(Write::Admin(AdminRow::QueueSuspended {
                    id,
                    suspended: suspend,
                }));
                if !suspend {
                    self.write(Write::Admin(AdminRow::QueueReleaseRate {
                        id,
                        rate: p.rate.map(|r| r.stored()),
                    }));
                }
                if let Some(row) = retried {
                    self.write(Write::Queue(row));
                }
                self.inner.wake.notify_one();
                Ok(counts)
            }
            Verb::RetryQueue if p.flag => Ok(self.resubmit(p.queue_id)),
            Verb::RetryQueue => self.retry_now(p),
            Verb::SuspendMessage | Verb::ResumeMessage | Verb::RemoveMessage => {
                self.message_command(p).await
            }
        }
    }

    /// Retry-Queue -Resubmit: the queue's waiting recipients go back through categorization and
    /// routing.
    fn resubmit(&self, queue: Option<i64>) -> (u32, u32) {
        let Some(qid) = queue else {
            return (0, 0);
        };
        let shadow = self
            .state()
            .queues
            .get(&qid)
            .is_some_and(|q| q.key.delivery_type == DeliveryType::ShadowRedundancy);
        if shadow {
            return self.shadow_resubmit(qid, shadow::ResubmitReason::Admin);
        }
        let (rows, moved) = resubmit_in(&mut self.state(), qid);
        let recipients = rows.len() as u32;
        for r in rows {
            self.write(Write::Admin(r));
        }
        for id in &moved {
            let _ = self.inner.submissions.send(Submission::Reroute(*id));
        }
        (moved.len() as u32, recipients)
    }

    /// Retry-Queue: a queue in Retry connects now.
    fn retry_now(&self, p: &Prepared) -> Result<(u32, u32), QueueError> {
        let not_in_retry = || QueueError::NotInRetry(p.identity.clone());
        let qid = p.queue_id.ok_or_else(not_in_retry)?;
        let (row, counts) = retry_in(&mut self.state(), qid).ok_or_else(not_in_retry)?;
        self.write(Write::Queue(row));
        self.inner.wake.notify_one();
        Ok(counts)
    }

    async fn place(&self, id: Uuid, identity: &str) -> Result<Place, QueueError> {
        {
            let st = self.state();
            if st.messages.contains_key(&id) {
                return Ok(Place::Memory);
            }
            if st.poisoned.contains(&id) {
                return Ok(Place::Poison);
            }
        }
        let row: Option<(bool,)> = sqlx::query_as("SELECT poison FROM message WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await?;
        match row {
            None => Err(QueueError::MessageNotFound(identity.to_string())),
            Some((true,)) => Ok(Place::Poison),
            Some((false,)) => Ok(Place::Arriving),
        }
    }

    pub(super) async fn message_command(&self, p: &Prepared) -> Result<(u32, u32), QueueError> {
        let id = p
            .message_id
            .ok_or_else(|| QueueError::MessageNotFound(p.identity.clone()))?;
        let place = self.place(id, &p.identity).await?;
        match p.verb {
            Verb::SuspendMessage | Verb::ResumeMessage => {
                let suspend = p.verb == Verb::SuspendMessage;
                if !suspend && matches!(place, Place::Poison) {
                    return self.release(id).await;
                }
                {
                    let mut st = self.state();
                    let st = &mut *st;
                    match place {
                        Place::Memory => {
                            if let Some(m) = st.messages.get_mut(&id) {
                                let resumed = m.suspended && !suspend;
                                m.suspended = suspend;
                                // Its ready recipients wait in their queues again.
                                for r in m.rcpts.iter().filter(|r| r.state == RState::Ready) {
                                    if let Some(q) = r.queue.and_then(|q| st.queues.get_mut(&q))
                                        && resumed
                                    {
                                        q.push(id);
                                    }
                                }
                            }
                        }
                        Place::Arriving => {
                            st.held.entry(id).or_default().suspended = Some(suspend);
                        }
                        Place::Poison => {}
                    }
                }
                self.write(Write::Admin(AdminRow::MessageSuspended {
                    message: id,
                    suspended: suspend,
                }));
                self.inner.wake.notify_one();
                Ok((1, 0))
            }
            _ => self.remove(p, id, place).await,
        }
    }

    /// Resume-Message on a poison message: back to Submission, loaded from what is stored.
    async fn release(&self, id: Uuid) -> Result<(u32, u32), QueueError> {
        self.state().poisoned.remove(&id);
        self.write(Write::Admin(AdminRow::Released(id)));
        self.flush().await;
        let list = load_pending(&self.inner.pool, &self.inner.server, Some(&[id])).await?;
        let recipients = list.iter().map(|m| m.recipients.len() as u32).sum();
        for m in list {
            self.submit(m);
        }
        Ok((1, recipients))
    }

    /// Remove-Message: waiting recipients are finalised now, with an NDR or silently; one in
    /// flight is finalised if its attempt does not deliver it; one not filed yet is when it is.
    async fn remove(&self, p: &Prepared, id: Uuid, place: Place) -> Result<(u32, u32), QueueError> {
        let with_ndr = p.flag;
        let mut rows = Vec::new();
        let mut now = Vec::new();
        let mut job = None;
        {
            let mut st = self.state();
            match place {
                Place::Memory => {
                    (rows, now) = remove_in(&mut st, id, &p.ordinals, with_ndr);
                    if !now.is_empty()
                        && let Some(m) = st.messages.get(&id)
                    {
                        job = Some(Job::new(self.give_back(), &m.meta, Vec::new()));
                    }
                }
                Place::Arriving | Place::Poison => {
                    for o in &p.ordinals {
                        rows.push(AdminRow::RemoveMarked {
                            message: id,
                            ordinal: *o,
                            with_ndr,
                        });
                    }
                    if matches!(place, Place::Arriving) {
                        let held = st.held.entry(id).or_default();
                        held.remove
                            .extend(p.ordinals.iter().map(|o| (*o, with_ndr)));
                    }
                }
            }
        }
        let recipients = rows.len() as u32;
        for r in rows {
            self.write(Write::Admin(r));
        }
        if let Some(job) = job {
            self.finish(&job, now, &Attempt::default()).await;
        }
        self.inner.wake.notify_one();
        Ok((1, recipients))
    }
}

/// Resubmit in memory: the waiting recipients of queue `qid` leave it for Submission. Those
/// in flight finish where they are; those pending removal stay. Returns the rows to write and
/// the messages to route again.
fn resubmit_in(st: &mut State, qid: i64) -> (Vec<AdminRow>, Vec<Uuid>) {
    let mut rows = Vec::new();
    let mut moved = Vec::new();
    for (id, m) in st.messages.iter_mut() {
        let before = rows.len();
        for r in m.rcpts.iter_mut().filter(|r| {
            r.queue == Some(qid)
                && matches!(r.state, RState::Ready | RState::Retry)
                && r.remove_with_ndr.is_none()
        }) {
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
            moved.push(*id);
        }
    }
    (rows, moved)
}

/// Retry in memory: queue `qid`, if it is in Retry (and not suspended), and its recipients
/// waiting for their retry time are due now. Returns its row and (messages, recipients) made
/// ready; None when it is not in Retry.
fn retry_in(st: &mut State, qid: i64) -> Option<(QueueRow, (u32, u32))> {
    let q = st.queues.get_mut(&qid)?;
    if q.suspended || q.next_retry.is_none() {
        return None;
    }
    q.next_retry = None;
    q.failures = 0;
    let row = queue_row(qid, q);
    let mut due = Vec::new();
    let mut recipients = 0;
    for (id, m) in st.messages.iter_mut() {
        let mut any = false;
        for r in m.rcpts.iter_mut() {
            if r.queue == Some(qid) && r.state == RState::Retry {
                r.state = RState::Ready;
                r.next_retry = None;
                recipients += 1;
                any = true;
            }
        }
        if any {
            due.push(*id);
        }
    }
    let messages = due.len() as u32;
    if let Some(q) = st.queues.get_mut(&qid) {
        for id in due {
            q.push(id);
        }
    }
    Some((row, (messages, recipients)))
}

/// Remove-Message in memory, on the recipients `ordinals` of message `id`: each is marked (no
/// delivery task takes it again). Waiting ones are returned to be finalised now (held in flight
/// until then, so the timers leave them alone); one in flight is finalised by the timers if its
/// attempt does not deliver it; a delivered one is left alone. Without an NDR nobody is told.
pub(super) fn remove_in(
    st: &mut State,
    id: Uuid,
    ordinals: &[i32],
    with_ndr: bool,
) -> (Vec<AdminRow>, Vec<(i32, Outcome)>) {
    let mut rows = Vec::new();
    let mut now = Vec::new();
    let Some(m) = st.messages.get_mut(&id) else {
        return (rows, now);
    };
    for r in m.rcpts.iter_mut().filter(|r| ordinals.contains(&r.ordinal)) {
        match r.state {
            RState::Done => continue,
            // Its NDR is on its way: only -WithNDR $false changes that (the administrator
            // gives up on telling the sender).
            RState::Reporting if with_ndr => continue,
            RState::Ready | RState::Retry => {
                r.state = RState::InFlight;
                now.push((
                    r.ordinal,
                    Outcome::Failed {
                        reply: removal_reply(),
                    },
                ));
            }
            RState::InFlight | RState::Reporting => {}
            // The primary has the message; its copy here only waits for the primary's word.
            RState::Shadow => continue,
        }
        r.remove_with_ndr = Some(with_ndr);
        if !with_ndr {
            r.notify = Some("NEVER".into());
        }
        rows.push(AdminRow::RemoveMarked {
            message: id,
            ordinal: r.ordinal,
            with_ndr,
        });
    }
    (rows, now)
}

/// Messages and recipients not final in queue `id`.
fn queue_counts(st: &State, id: i64) -> (u32, u32) {
    let mut messages = 0;
    let mut recipients = 0;
    for m in st.messages.values() {
        let n = m
            .rcpts
            .iter()
            .filter(|r| r.queue == Some(id) && r.state != RState::Done)
            .count() as u32;
        if n > 0 {
            messages += 1;
            recipients += n;
        }
    }
    (messages, recipients)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in super::super) fn rcpt(ordinal: i32, queue: Option<i64>, state: RState) -> Rcpt {
        Rcpt {
            ordinal,
            address: format!("r{ordinal}@fabrikam.test"),
            route_address: None,
            orcpt: None,
            notify: None,
            queue,
            state,
            retry_count: 0,
            last_error: None,
            next_retry: None,
            delay_notified: false,
            remove_with_ndr: None,
            timeouts: None,
            remote_mta: None,
            dsn_failures: 0,
            dsn_due: None,
            final_reply: None,
            submit_failures: 0,
        }
    }

    pub(in super::super) fn message(id: Uuid, rcpts: Vec<Rcpt>) -> Msg {
        Msg {
            meta: Submitted {
                id,
                internal_id: 1,
                from: "a@contoso.test".into(),
                size: 10,
                received_at: OffsetDateTime::now_utc(),
                env_id: None,
                ret: None,
                body_8bit: false,
                smtp_utf8: false,
                subject: None,
                internet_message_id: None,
                source_ip: None,
                authenticated: false,
                suspended: false,
                crash_count: 0,
                recipients: vec![],
                body_lost: false,
            },
            suspended: false,
            crashes: 0,
            rcpts,
        }
    }

    fn queue(next_retry: Option<OffsetDateTime>) -> Queue {
        Queue {
            key: NextHopKey {
                delivery_type: DeliveryType::DnsConnectorDelivery,
                next_hop_domain: "fabrikam.test".into(),
                connector_id: None,
            },
            route: None,
            suspended: false,
            status: QueueStatus::Ready,
            last_error: None,
            last_retry: None,
            next_retry,
            failures: 1,
            connections: 0,
            ready: VecDeque::new(),
            pending: HashSet::new(),
            release: None,
        }
    }

    fn states(st: &State, id: Uuid) -> Vec<(RState, Option<i64>, Option<bool>)> {
        st.messages[&id]
            .rcpts
            .iter()
            .map(|r| (r.state, r.queue, r.remove_with_ndr))
            .collect()
    }

    #[test]
    fn remove_finalises_waiting_recipients_marks_those_in_flight_and_spares_the_delivered() {
        let id = Uuid::new_v4();
        let mut st = State::default();
        st.messages.insert(
            id,
            message(
                id,
                vec![
                    rcpt(0, Some(3), RState::Ready),
                    rcpt(1, Some(3), RState::InFlight),
                    rcpt(2, Some(3), RState::Done),
                    rcpt(3, Some(3), RState::Retry),
                    rcpt(4, Some(4), RState::Ready),
                ],
            ),
        );
        let (rows, now) = remove_in(&mut st, id, &[0, 1, 2, 3], false);
        let finalised: Vec<i32> = now.iter().map(|(o, _)| *o).collect();
        assert_eq!(finalised, [0, 3]);
        assert!(now.iter().all(|(_, o)| matches!(o, Outcome::Failed { reply } if reply.one_line().contains("QUEUE.Admin"))));
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(
            states(&st, id),
            [
                (RState::InFlight, Some(3), Some(false)),
                (RState::InFlight, Some(3), Some(false)),
                (RState::Done, Some(3), None),
                (RState::InFlight, Some(3), Some(false)),
                (RState::Ready, Some(4), None),
            ]
        );
        // Without an NDR nobody hears of it, even if the attempt in flight fails for good.
        let m = &st.messages[&id];
        assert_eq!(m.rcpts[1].notify.as_deref(), Some("NEVER"));
        assert_eq!(m.rcpts[4].notify, None);
    }

    #[test]
    fn remove_with_ndr_leaves_an_ndr_on_its_way_and_without_ndr_silences_it() {
        let id = Uuid::new_v4();
        let mut st = State::default();
        st.messages
            .insert(id, message(id, vec![rcpt(0, Some(3), RState::Reporting)]));
        let (rows, now) = remove_in(&mut st, id, &[0], true);
        assert!(rows.is_empty() && now.is_empty());
        let (rows, now) = remove_in(&mut st, id, &[0], false);
        assert_eq!(rows.len(), 1);
        assert!(now.is_empty(), "the timers report it, once");
        assert_eq!(st.messages[&id].rcpts[0].notify.as_deref(), Some("NEVER"));
        // A message that is gone changes nothing.
        assert_eq!(remove_in(&mut st, Uuid::new_v4(), &[0], true).0, vec![]);
    }

    #[test]
    fn resubmit_moves_waiting_recipients_only() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut st = State::default();
        let mut marked = rcpt(2, Some(3), RState::Ready);
        marked.remove_with_ndr = Some(true);
        let mut waiting = rcpt(3, Some(3), RState::Retry);
        waiting.next_retry = Some(OffsetDateTime::now_utc());
        st.messages.insert(
            a,
            message(
                a,
                vec![
                    rcpt(0, Some(3), RState::Ready),
                    rcpt(1, Some(3), RState::InFlight),
                    marked,
                    waiting,
                ],
            ),
        );
        st.messages
            .insert(b, message(b, vec![rcpt(0, Some(4), RState::Ready)]));
        let (rows, moved) = resubmit_in(&mut st, 3);
        assert_eq!(moved, [a]);
        assert_eq!(
            rows,
            [
                AdminRow::Resubmitted {
                    message: a,
                    ordinal: 0
                },
                AdminRow::Resubmitted {
                    message: a,
                    ordinal: 3
                }
            ]
        );
        assert_eq!(
            states(&st, a),
            [
                (RState::Ready, None, None),
                (RState::InFlight, Some(3), None),
                (RState::Ready, Some(3), Some(true)),
                (RState::Ready, None, None),
            ]
        );
        assert_eq!(st.messages[&a].rcpts[3].next_retry, None);
        assert_eq!(states(&st, b), [(RState::Ready, Some(4), None)]);
    }

    #[test]
    fn retry_only_a_queue_in_retry_and_its_waiting_recipients_are_due() {
        let id = Uuid::new_v4();
        let later = OffsetDateTime::now_utc() + Duration::from_secs(600);
        let mut st = State::default();
        st.queues.insert(3, queue(Some(later)));
        st.queues.insert(4, queue(None));
        let mut waiting = rcpt(0, Some(3), RState::Retry);
        waiting.next_retry = Some(later);
        st.messages.insert(
            id,
            message(id, vec![waiting, rcpt(1, Some(3), RState::InFlight)]),
        );
        assert!(retry_in(&mut st, 4).is_none(), "Ready is not Retry");
        assert!(retry_in(&mut st, 99).is_none());
        st.queues.get_mut(&3).unwrap().suspended = true;
        assert!(retry_in(&mut st, 3).is_none(), "Suspended is not Retry");
        st.queues.get_mut(&3).unwrap().suspended = false;
        let (row, counts) = retry_in(&mut st, 3).unwrap();
        assert_eq!(counts, (1, 1));
        assert_eq!((row.id, row.next_retry), (3, None));
        let q = &st.queues[&3];
        assert_eq!((q.failures, q.next_retry), (0, None));
        assert_eq!(q.ready.iter().copied().collect::<Vec<_>>(), [id]);
        assert_eq!(
            states(&st, id),
            [
                (RState::Ready, Some(3), None),
                (RState::InFlight, Some(3), None)
            ]
        );
    }
}
