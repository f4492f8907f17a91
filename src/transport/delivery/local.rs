//! The mailbox delivery queue (MapiDelivery): one task writes one message at a time to the
//! recipients' Maildirs; MaxConcurrentMailboxDeliveries tasks run side by side.

use crate::smtp::proto::Reply;
use crate::transport::queue::manager::{Attempt, Outcome, QueueManager, body_lost_reply};

pub async fn run(qm: &QueueManager, queue_id: i64) {
    while let Some(job) = qm.take_job(queue_id) {
        let mailboxes = qm.mailboxes().clone();
        let path = qm.spool().path(job.message);
        let from = job.from.clone();
        let recipients = job.recipients.clone();
        let results = tokio::task::spawn_blocking(move || {
            let content = match std::fs::read(&path) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("reading {}: {e}", path.display());
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
        qm.finish(&job, results, &Attempt::default()).await;
    }
}
