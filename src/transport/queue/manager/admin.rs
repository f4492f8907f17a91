//! Queue commands (ops::command): the manager applies each to its in-memory queues and writes
//! the rows through its writer; it alone writes queue and recipient state while it runs.
//!
//! A command runs after every write queued before it (a flush), and its result is recorded after
//! its own writes, so the caller that reads the queues after the reply sees what it did.

use sqlx::PgConnection;

use super::*;
use crate::transport::queue::ops::QueueError;
use crate::transport::queue::ops::command::{self, COMMAND_CHANNEL, Prepared, Verb};

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
enum Place {
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
        }
        Ok(())
    }

    /// Applies one command; returns the messages and recipients it changed.
    pub(super) async fn apply_command(&self, p: &Prepared) -> Result<(u32, u32), QueueError> {
        match p.verb {
            Verb::SuspendQueue | Verb::ResumeQueue => {
                let suspend = p.verb == Verb::SuspendQueue;
                let id = match p.queue_id {
                    Some(id) => id,
                    // Unreachable has no row until first needed; a suspension must outlive that.
                    None if suspend => self.queue_for(&NextHopKey::unreachable(), None).await?,
                    None => return Ok((0, 0)),
                };
                let counts = {
                    let mut st = self.state();
                    if let Some(q) = st.queues.get_mut(&id) {
                        q.suspended = suspend;
                    }
                    queue_counts(&st, id)
                };
                self.write(Write::Admin(AdminRow::QueueSuspended {
                    id,
                    suspended: suspend,
                }));
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
    /// routing. Recipients in flight finish where they are; those pending removal stay.
    fn resubmit(&self, queue: Option<i64>) -> (u32, u32) {
        let Some(qid) = queue else {
            return (0, 0);
        };
        let mut rows = Vec::new();
        let mut moved = Vec::new();
        {
            let mut st = self.state();
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
        }
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
        let (row, counts) = {
            let mut st = self.state();
            let st = &mut *st;
            let q = st.queues.get_mut(&qid).ok_or_else(not_in_retry)?;
            if q.suspended || q.next_retry.is_none() {
                return Err(not_in_retry());
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
            (row, (messages, recipients))
        };
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

    async fn message_command(&self, p: &Prepared) -> Result<(u32, u32), QueueError> {
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
                    if let Some(m) = st.messages.get_mut(&id) {
                        for r in m
                            .rcpts
                            .iter_mut()
                            .filter(|r| p.ordinals.contains(&r.ordinal))
                        {
                            match r.state {
                                RState::Done => continue,
                                // Its NDR is on its way: only -WithNDR $false changes that (the
                                // administrator gives up on telling the sender).
                                RState::Reporting if with_ndr => continue,
                                RState::Ready | RState::Retry => {
                                    // No delivery task takes it, and the timers leave it alone:
                                    // it is finalised below, once.
                                    r.state = RState::InFlight;
                                    now.push((
                                        r.ordinal,
                                        Outcome::Failed {
                                            reply: removal_reply(),
                                        },
                                    ));
                                }
                                RState::InFlight | RState::Reporting => {}
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
                        if !now.is_empty() {
                            job = Some(Job::new(self, &m.meta, Vec::new()));
                        }
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

/// The queue writer's lock for this gateway, on a connection of its own. Another holder (a
/// shell applying a command to the stored state) lets go within moments; a gateway already
/// running for the same server does not, and then this one runs without it, saying so.
pub(super) async fn take_writer_lock(pool: &PgPool, server: &str) -> Option<PgConnection> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match command::try_writer_lock(pool, server).await {
            Ok(Some(conn)) => return Some(conn),
            Ok(None) => {}
            Err(e) => tracing::warn!("taking the queue writer's lock: {e}"),
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::error!(
                "another process holds the queue writer's lock of {server}: queue commands wait for it"
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs queue commands as they are recorded (NOTIFY hubgate_queue_command), holding the queue
/// writer's lock for as long as the gateway runs.
pub(super) async fn command_listener(qm: QueueManager, url: String, lock: Option<PgConnection>) {
    let mut lock = lock;
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("queue command listener: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(COMMAND_CHANNEL).await {
            tracing::warn!("LISTEN {COMMAND_CHANNEL}: {e}");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        loop {
            if lock.is_none() {
                lock = command::try_writer_lock(&qm.inner.pool, &qm.inner.server)
                    .await
                    .ok()
                    .flatten();
            }
            if let Some(conn) = lock.as_mut()
                && let Err(e) = qm.run_commands(conn).await
            {
                // The lock went with its connection, if that is what failed.
                tracing::warn!("running queue commands: {e}");
                lock = None;
            }
            match tokio::time::timeout(Duration::from_secs(5), listener.recv()).await {
                Ok(Ok(_)) => while listener.next_buffered().is_some() {},
                Ok(Err(e)) => {
                    tracing::warn!("queue command listener: {e}");
                    break;
                }
                Err(_) => {
                    if let Some(conn) = lock.as_mut()
                        && sqlx::query("SELECT 1").execute(&mut *conn).await.is_err()
                    {
                        lock = None;
                    }
                }
            }
        }
    }
}
