//! Accepting a message: spool the body durably, then commit its rows (in a transaction shared
//! with the other sessions committing meanwhile, `commit.rs`).

use std::net::IpAddr;

use sqlx::PgPool;
use uuid::Uuid;

use super::Spool;
use super::commit::{CommitError, Committer, commit_one};
use super::spool::Incoming;

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("spool: {0}")]
    Io(#[from] std::io::Error),
    #[error("queue database: {0}")]
    Db(#[from] sqlx::Error),
    /// The connection failed while COMMIT was under way: the rows may or may not be stored, so
    /// the body was kept (start-up reconciliation settles which).
    #[error("queue database: outcome of the commit unknown: {0}")]
    CommitUnknown(sqlx::Error),
    #[error("message of {0} bytes is too large to queue")]
    TooLarge(u64),
}

/// Where the categorizer sent a recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    Mailbox,
    Relay,
}

impl Disposition {
    pub fn name(self) -> &'static str {
        match self {
            Disposition::Mailbox => "Mailbox",
            Disposition::Relay => "Relay",
        }
    }
}

#[derive(Clone, Debug)]
pub struct EnvelopeRecipient {
    pub address: String,
    pub orcpt: Option<String>,
    pub notify: Option<String>,
    pub disposition: Disposition,
}

/// Everything about a message except its body.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub id: Uuid,
    pub server: String,
    pub from: String,
    pub recipients: Vec<EnvelopeRecipient>,
    pub source_ip: IpAddr,
    pub receive_connector: String,
    pub helo: String,
    pub auth_user: Option<String>,
    pub internet_message_id: Option<String>,
    pub subject: Option<String>,
    pub env_id: Option<String>,
    pub ret: Option<String>,
    pub body_type: Option<String>,
    pub smtp_utf8: bool,
    /// Set when a shadow server keeps a copy until this node is done with the message.
    pub shadow: Option<ShadowOrigin>,
}

/// The shadow server of a message this node is the primary for (reference §1.1): the id it gave
/// the message (MAIL XSHADOW=) and its XSHADOW context. When the message leaves the queue, the
/// database queues a discard event for that context (migration 0009).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowOrigin {
    pub message_id: String,
    pub context: String,
}

/// Makes a message whole in memory durable (a DSN), its rows committed in a transaction of
/// their own; returns its InternalId.
pub async fn accept(
    pool: &PgPool,
    spool: &Spool,
    env: &Envelope,
    header: Vec<u8>,
    body: Vec<u8>,
) -> Result<i64, AcceptError> {
    let bytes = if header.is_empty() {
        body
    } else {
        let mut all = header;
        all.extend_from_slice(&body);
        all
    };
    let mut body = spool.incoming_from(env.id, bytes);
    let size = make_durable(env, &mut body).await?;
    settle(commit_one(pool, env, size, body.inline()).await, body)
}

/// Makes a received body durable, then commits the message's rows with those of the other
/// sessions committing meanwhile (`Committer`); returns its InternalId. Only after this returns
/// may the 250 be sent.
pub async fn accept_incoming(
    committer: &Committer,
    env: &Envelope,
    mut body: Incoming,
) -> Result<i64, AcceptError> {
    let size = make_durable(env, &mut body).await?;
    committer.commit(env, size, body).await
}

/// The body on disk and fsynced, or left for the row (small); returns its size for the row.
async fn make_durable(env: &Envelope, body: &mut Incoming) -> Result<i64, AcceptError> {
    debug_assert_eq!(body.id(), env.id);
    let size = i64::try_from(body.len()).map_err(|_| AcceptError::TooLarge(body.len()))?;
    body.make_durable().await?;
    Ok(size)
}

/// The body after the commit: removed when nothing was committed, and kept when the rows are
/// committed or the commit's outcome is unknown: deleting it then could leave a committed
/// message without a body.
pub(super) fn settle(
    committed: Result<i64, CommitError>,
    body: Incoming,
) -> Result<i64, AcceptError> {
    match committed {
        Ok(internal_id) => {
            body.keep(true);
            Ok(internal_id)
        }
        Err(CommitError::Definite(e)) => Err(e.into()),
        Err(CommitError::Unknown(e)) => {
            body.keep(false);
            Err(AcceptError::CommitUnknown(e))
        }
    }
}
