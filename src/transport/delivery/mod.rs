//! Delivery: handing a queued message to its next hop. `mailbox` writes local Maildir++ folders,
//! `local` runs the mailbox delivery queue over it, `smtp` runs a remote delivery queue over the
//! SMTP client. The queue manager reaches them only through the `Deliver` contract: it hands a
//! queue's `Target` and `Lane` to `Agents`, which take jobs from the lane and report outcomes.

use std::path::Path;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::org::Org;
use crate::transport::queue::Spool;
use crate::transport::queue::manager::{BoxFuture, Deliver, Lane, Target};

pub mod local;
pub mod mailbox;
pub mod smtp;

/// What every delivery agent shares: the spool it reads bodies from, the mailboxes, the SMTP
/// client's trust store, resolvers and SmtpSend log, and the configuration.
pub struct Agents {
    spool: Spool,
    mailboxes: mailbox::Mailboxes,
    smtp: smtp::Context,
    fqdn: String,
    org: watch::Receiver<Arc<Org>>,
    pool: PgPool,
}

impl Agents {
    pub fn new(
        data_dir: &Path,
        fqdn: &str,
        spool: Spool,
        org: watch::Receiver<Arc<Org>>,
        pool: PgPool,
    ) -> Arc<Agents> {
        Arc::new(Agents {
            spool,
            mailboxes: mailbox::Mailboxes::new(data_dir, fqdn),
            smtp: smtp::Context::new(data_dir),
            fqdn: fqdn.to_string(),
            org,
            pool,
        })
    }

    fn org(&self) -> Arc<Org> {
        self.org.borrow().clone()
    }

    /// The configuration as the database holds it now, for a queue routed with configuration
    /// fresher than the NOTIFY-driven snapshot.
    async fn reload_org(&self) -> Option<Arc<Org>> {
        match self.org().reloaded(&self.pool).await {
            Ok(org) => Some(Arc::new(org)),
            Err(e) => {
                tracing::warn!("reloading the configuration: {e}");
                None
            }
        }
    }
}

impl Deliver for Agents {
    fn run(self: Arc<Self>, target: Target, lane: Box<dyn Lane>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            match target {
                Target::Mailbox => local::run(&self.mailboxes, &self.spool, lane.as_ref()).await,
                Target::Smtp(route) => smtp::run(&self, lane.as_ref(), route).await,
            }
        })
    }
}
