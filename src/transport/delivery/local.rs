//! The mailbox delivery queue (MapiDelivery): one task writes one message at a time to the
//! recipients' Maildirs; MaxConcurrentMailboxDeliveries tasks run side by side.

use super::Agents;
use crate::smtp::proto::Reply;
use crate::transport::queue::manager::{Attempt, Delivered, Lane, Outcome, body_lost_reply};

pub(super) async fn run(agents: &Agents, lane: &dyn Lane) {
    while let Some(job) = lane.next_job() {
        let mailboxes = agents.mailboxes.clone();
        let path = agents.spool.path(job.message);
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
        lane.delivered(Delivered {
            job,
            results,
            attempt: Attempt::default(),
        })
        .await;
    }
}
