//! The seam between an SMTP session and the database: everything a session asks of the
//! directory (accounts, recipients) and hands to the queue goes through these two traits, so a
//! session can run against an in-memory stand-in (the session fuzz target) as well as PostgreSQL.

use std::future::Future;
use std::pin::Pin;

use sqlx::PgPool;
use uuid::Uuid;

use crate::org::rights::Rights;
use crate::org::{AcceptedDomain, Account, Org, OrgError, Recipient};
use crate::transport::categorizer::{self, Verdict};
use crate::transport::queue::manager::AckWaiter;
use crate::transport::queue::{
    self, AcceptError, Committer, Envelope, Incoming, QueueManager, Submitted,
};
use crate::transport::recipient_callout::{Callouts, Known};
use crate::transport::shadow::primary::{self, ShadowError};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who exists: the lookups of AUTH, MAIL and RCPT.
pub trait Directory: Send + Sync {
    fn account<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Account>, OrgError>>;

    fn recipient<'a>(
        &'a self,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Option<Recipient>, OrgError>>;

    /// The categorizer's verdict on one RCPT address.
    fn categorize<'a>(
        &'a self,
        domains: &'a [AcceptedDomain],
        address: &'a str,
        rights: Rights,
    ) -> BoxFuture<'a, Result<Verdict, OrgError>>;

    /// The Recipient Filter agent's look-up of a relay domain's recipient (imported list, then
    /// callouts, `transport::recipient_callout`), and whether it called out; `may_call_out` is
    /// false once the session's callouts are spent. A stand-in without one knows nobody.
    fn relay_recipient<'a>(
        &'a self,
        _org: &'a Org,
        _address: &'a str,
        _may_call_out: bool,
    ) -> BoxFuture<'a, (Known, bool)> {
        Box::pin(async { (Known::NoAnswer("no recipient look-up".into()), false) })
    }
}

/// Where accepted mail goes.
pub trait Intake: Send + Sync {
    /// Makes the message durable and returns its InternalId; only then may the 250 be sent.
    fn accept<'a>(
        &'a self,
        env: &'a Envelope,
        body: Incoming,
    ) -> BoxFuture<'a, Result<i64, AcceptError>>;

    /// Hands a durable message to the queues.
    fn submit(&self, m: Submitted);

    /// A wait for durable message `id` to reach its next hop (delayed acknowledgement), taken
    /// before it is submitted. None where nothing delivers (the session fuzz target): no wait.
    fn watch_next_hop(&self, _id: Uuid) -> Option<AckWaiter> {
        None
    }

    /// This node's queue database id, the XSHADOW reply (reference §1.2).
    fn queue_database_id<'a>(&'a self, server: &'a str)
    -> BoxFuture<'a, Result<Uuid, ShadowError>>;

    /// Takes (and forgets) up to `max` discard events for a shadow server's context, oldest
    /// first: the XQDISCARD reply.
    fn take_discard_events<'a>(
        &'a self,
        server: &'a str,
        context: &'a str,
        max: i64,
    ) -> BoxFuture<'a, Result<Vec<String>, ShadowError>>;
}

/// The directory in PostgreSQL.
pub struct PgDirectory(pub PgPool);

impl Directory for PgDirectory {
    fn account<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Account>, OrgError>> {
        Box::pin(Account::find(&self.0, name))
    }

    fn recipient<'a>(
        &'a self,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Option<Recipient>, OrgError>> {
        Box::pin(Recipient::find_by_address(&self.0, address))
    }

    fn categorize<'a>(
        &'a self,
        domains: &'a [AcceptedDomain],
        address: &'a str,
        rights: Rights,
    ) -> BoxFuture<'a, Result<Verdict, OrgError>> {
        Box::pin(categorizer::categorize(&self.0, domains, address, rights))
    }
}

/// The PostgreSQL directory with the relay domains' recipient look-ups.
pub struct PgValidatingDirectory {
    pub directory: PgDirectory,
    pub callouts: Callouts,
}

impl Directory for PgValidatingDirectory {
    fn account<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Account>, OrgError>> {
        self.directory.account(name)
    }

    fn recipient<'a>(
        &'a self,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Option<Recipient>, OrgError>> {
        self.directory.recipient(address)
    }

    fn categorize<'a>(
        &'a self,
        domains: &'a [AcceptedDomain],
        address: &'a str,
        rights: Rights,
    ) -> BoxFuture<'a, Result<Verdict, OrgError>> {
        self.directory.categorize(domains, address, rights)
    }

    fn relay_recipient<'a>(
        &'a self,
        org: &'a Org,
        address: &'a str,
        may_call_out: bool,
    ) -> BoxFuture<'a, (Known, bool)> {
        Box::pin(self.callouts.check(org, address, may_call_out))
    }
}

/// The queue: rows in PostgreSQL, then the queue manager.
pub struct PgIntake {
    pub pool: PgPool,
    pub queue: QueueManager,
    /// Commits accepted messages' rows in shared transactions (`queue::commit`).
    pub committer: Committer,
}

impl Intake for PgIntake {
    fn accept<'a>(
        &'a self,
        env: &'a Envelope,
        body: Incoming,
    ) -> BoxFuture<'a, Result<i64, AcceptError>> {
        Box::pin(queue::accept_incoming(&self.committer, env, body))
    }

    fn submit(&self, m: Submitted) {
        // Here and not in the queue manager's `submit`, which DSNs go through too.
        self.queue
            .stats()
            .count(crate::transport::stats::Event::Received);
        self.queue.submit(m);
    }

    fn watch_next_hop(&self, id: Uuid) -> Option<AckWaiter> {
        Some(self.queue.watch_next_hop(id))
    }

    fn queue_database_id<'a>(
        &'a self,
        server: &'a str,
    ) -> BoxFuture<'a, Result<Uuid, ShadowError>> {
        Box::pin(primary::queue_database_id(&self.pool, server))
    }

    fn take_discard_events<'a>(
        &'a self,
        server: &'a str,
        context: &'a str,
        max: i64,
    ) -> BoxFuture<'a, Result<Vec<String>, ShadowError>> {
        Box::pin(primary::take_discard_events(
            &self.pool, server, context, max,
        ))
    }
}
