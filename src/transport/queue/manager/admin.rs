//! Administrative changes (shell, console) read back from the database and applied.

use super::*;

impl QueueManager {
    /// Applies what an administrator changed in the database (shell or console).
    pub(super) async fn reconcile(&self) {
        let (tx, rx) = oneshot::channel();
        self.write(Write::ReadAdmin(tx));
        let Ok(admin) = rx.await else {
            return;
        };
        let (removals, reroutes, released) = self.apply_admin(admin);
        if !released.is_empty() {
            match load_pending(&self.inner.pool, &self.inner.server, Some(&released)).await {
                Ok(list) => {
                    for m in list {
                        self.submit(m);
                    }
                }
                Err(e) => tracing::warn!("loading released poison messages: {e}"),
            }
        }
        for (id, results) in removals {
            self.finish_without_job(id, results).await;
        }
        if !reroutes.is_empty() {
            for id in reroutes {
                let _ = self.inner.submissions.send(Submission::Reroute(id));
            }
        }
        self.inner.wake.notify_one();
    }

    #[allow(clippy::type_complexity)]
    pub(super) fn apply_admin(
        &self,
        admin: AdminState,
    ) -> (Vec<(Uuid, Vec<(i32, Outcome)>)>, Vec<Uuid>, Vec<Uuid>) {
        let mut released = Vec::new();
        let now = self.now();
        let mut removals: HashMap<Uuid, Vec<(i32, Outcome)>> = HashMap::new();
        let mut silent: HashSet<(Uuid, i32)> = HashSet::new();
        let mut reroutes = HashSet::new();
        let mut st = self.state();
        let st = &mut *st;
        for (id, suspended) in admin.queues {
            if let Some(q) = st.queues.get_mut(&id) {
                q.suspended = suspended;
            }
        }
        for a in admin.recipients {
            // Resume-Message released a poison message: only ids this manager put in Poison,
            // so a message still on its way through Submission is never loaded twice.
            if !a.poison && st.poisoned.remove(&a.message) {
                released.push(a.message);
                continue;
            }
            let Some(m) = st.messages.get_mut(&a.message) else {
                continue;
            };
            let resumed = m.suspended && !a.message_suspended;
            m.suspended = a.message_suspended;
            let Some(r) = m.rcpts.iter_mut().find(|r| r.ordinal == a.ordinal) else {
                continue;
            };
            if r.state == RState::InFlight || r.state == RState::Done {
                continue;
            }
            // Its NDR is waiting to be queued: only Remove-Message -WithNDR $false changes that
            // (the administrator gives up on telling the sender).
            if r.state == RState::Reporting && a.remove_with_ndr != Some(false) {
                continue;
            }
            if let Some(with_ndr) = a.remove_with_ndr {
                let reply = Reply::new(
                    550,
                    "4.3.2",
                    "QUEUE.Admin; message deleted by administrative action",
                );
                if !with_ndr {
                    silent.insert((a.message, a.ordinal));
                }
                removals
                    .entry(a.message)
                    .or_default()
                    .push((a.ordinal, Outcome::Failed { reply }));
                continue;
            }
            if a.queue_id.is_none() && r.queue.is_some() {
                r.queue = None;
                r.state = RState::Ready;
                r.next_retry = None;
                reroutes.insert(a.message);
                continue;
            }
            if r.state == RState::Retry && a.next_retry.is_some_and(|t| t <= now) {
                r.state = RState::Ready;
                r.next_retry = None;
            }
            let pushable = r.state == RState::Ready || resumed;
            if pushable && let Some(q) = r.queue.and_then(|q| st.queues.get_mut(&q)) {
                q.push(a.message);
                if a.next_retry.is_some_and(|t| t <= now) {
                    q.next_retry = None;
                    q.failures = 0;
                }
            }
        }
        // Removed without NDR: tell nobody (the NOTIFY list is emptied for this report).
        for ((id, ordinal), _) in silent.iter().map(|k| (*k, ())) {
            if let Some(m) = st.messages.get_mut(&id)
                && let Some(r) = m.rcpts.iter_mut().find(|r| r.ordinal == ordinal)
            {
                r.notify = Some("NEVER".into());
            }
        }
        (
            removals.into_iter().collect(),
            reroutes.into_iter().collect(),
            released,
        )
    }
}

/// Administrative queue operations arrive as NOTIFY hubgate_queue.
pub(super) async fn admin_listener(qm: QueueManager, url: String) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("queue listener: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen("hubgate_queue").await {
            tracing::warn!("LISTEN hubgate_queue: {e}");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        qm.reconcile().await;
        while listener.recv().await.is_ok() {
            while listener.next_buffered().is_some() {}
            qm.reconcile().await;
        }
    }
}
