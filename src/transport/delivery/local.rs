//! The mailbox delivery queue (MapiDelivery): one task writes one message at a time to the
//! recipients' Maildirs; MaxConcurrentMailboxDeliveries tasks run side by side.

use super::mailbox::Mailboxes;
use crate::smtp::proto::Reply;
use crate::transport::queue::Spool;
use crate::transport::queue::manager::{Attempt, Delivered, Lane, Outcome, body_lost_reply};

/// Delivers the lane's messages from `spool` to `mailboxes` until the lane has none.
pub(super) async fn run(mailboxes: &Mailboxes, spool: &Spool, lane: &dyn Lane) {
    while let Some(job) = lane.next_job() {
        let mailboxes = mailboxes.clone();
        let from = job.from.clone();
        let recipients = job.recipients.clone();
        let id = job.message;
        let content = spool.body(id).await;
        let results = tokio::task::spawn_blocking(move || {
            let content = match content {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("reading the body of {id}: {e}");
                    // A body missing for good is reported; any other read error may pass.
                    let lost = e.kind() == std::io::ErrorKind::NotFound;
                    let reply = if lost {
                        body_lost_reply()
                    } else {
                        Reply::new(451, "4.3.0", "The queued message could not be read")
                    };
                    return recipients
                        .iter()
                        .map(|r| {
                            let reply = reply.clone();
                            let outcome = if lost {
                                Outcome::Failed { reply }
                            } else {
                                Outcome::Deferred { reply }
                            };
                            (r.ordinal, outcome)
                        })
                        .collect::<Vec<_>>();
                }
            };
            recipients
                .iter()
                .map(|r| {
                    let outcome = match mailboxes.deliver(&from, &r.address, &content) {
                        Ok(_) => Outcome::Delivered {
                            reply: Reply::new(250, "2.0.0", "Delivered to the mailbox"),
                        },
                        Err(e) => {
                            tracing::warn!("delivering to {}: {e}", r.address);
                            let reply = e.reply();
                            if reply.code >= 500 {
                                Outcome::Failed { reply }
                            } else {
                                Outcome::Deferred { reply }
                            }
                        }
                    };
                    (r.ordinal, outcome)
                })
                .collect()
        })
        .await;
        let results = match results {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("mailbox delivery task: {e}");
                let reply = Reply::new(451, "4.3.0", "Local mailbox delivery failed");
                job.all(|| Outcome::Deferred {
                    reply: reply.clone(),
                })
            }
        };
        lane.delivered(Delivered {
            job,
            results,
            attempt: Attempt::default(),
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use uuid::Uuid;

    use super::*;
    use crate::transport::queue::manager::{BoxFuture, ConnectionFailed, Job, JobRecipient};

    type Results = Vec<(i32, Outcome)>;

    /// A queue of ready jobs, and what the agent reported for them.
    #[derive(Default)]
    struct Recorder {
        jobs: Mutex<VecDeque<Job>>,
        delivered: Mutex<Vec<(Uuid, Results)>>,
    }

    impl Lane for Recorder {
        fn next_job(&self) -> Option<Job> {
            self.jobs.lock().unwrap().pop_front()
        }

        fn connected(&self) {}

        fn connection_failed(&self, f: ConnectionFailed) {
            panic!("a mailbox has no connection to fail: {f:?}");
        }

        fn delivered(&self, d: Delivered) -> BoxFuture<'_, ()> {
            self.delivered
                .lock()
                .unwrap()
                .push((d.job.message, d.results));
            Box::pin(async {})
        }
    }

    fn rcpt(ordinal: i32, address: &str) -> JobRecipient {
        JobRecipient {
            ordinal,
            address: address.into(),
            notify: None,
            orcpt: None,
        }
    }

    #[tokio::test]
    async fn each_job_in_gives_its_recipients_outcomes_out() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mailboxes = Mailboxes::new(dir.path(), "hub1.contoso.test");
        let (kept, lost) = (Uuid::now_v7(), Uuid::now_v7());
        std::fs::write(spool.path(kept), b"Subject: hi\r\n\r\nbody\r\n").unwrap();
        let lane = Recorder::default();
        lane.jobs.lock().unwrap().extend([
            Job::detached(
                kept,
                "a@fabrikam.test",
                vec![rcpt(0, "u@contoso.test"), rcpt(2, "v@contoso.test")],
            ),
            Job::detached(lost, "a@fabrikam.test", vec![rcpt(0, "w@contoso.test")]),
        ]);
        run(&mailboxes, &spool, &lane).await;
        let got: Vec<(Uuid, Vec<(i32, String)>)> = lane
            .delivered
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|(id, results)| {
                let shown = results
                    .into_iter()
                    .map(|(o, outcome)| {
                        let (kind, reply) = match outcome {
                            Outcome::Delivered { reply } => ("delivered", reply),
                            Outcome::Failed { reply } => ("failed", reply),
                            Outcome::Deferred { reply } => ("deferred", reply),
                            Outcome::Shadowed { reply, .. } => ("shadowed", reply),
                        };
                        (o, format!("{kind} {}", reply.one_line()))
                    })
                    .collect();
                (id, shown)
            })
            .collect();
        let delivered = "delivered 250 2.0.0 Delivered to the mailbox".to_string();
        let body_lost = format!("failed {}", body_lost_reply().one_line());
        assert_eq!(
            got,
            [
                (kept, vec![(0, delivered.clone()), (2, delivered)]),
                (lost, vec![(0, body_lost)]),
            ]
        );
        for who in ["u@contoso.test", "v@contoso.test"] {
            let new = mailboxes.maildir(who).unwrap().join("new");
            assert_eq!(std::fs::read_dir(new).unwrap().count(), 1, "{who}");
        }
    }
}
