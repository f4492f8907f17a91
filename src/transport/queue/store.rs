//! Accepting a message: spool the body durably, then commit its rows in one transaction.

use std::net::IpAddr;

use sqlx::PgPool;
use uuid::Uuid;

use super::Spool;
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

/// Why the rows were not committed.
enum CommitError {
    /// Nothing was committed: the statement failed, or the server refused the COMMIT.
    Definite(sqlx::Error),
    /// The COMMIT was sent and no answer came back.
    Unknown(sqlx::Error),
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

/// Makes a message whole in memory durable (a DSN); returns its InternalId.
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
    accept_incoming(pool, env, spool.incoming_from(env.id, bytes)).await
}

/// Makes a received body durable, then commits the message's rows in one transaction; returns
/// its InternalId. Only after this returns may the 250 be sent. The body is removed when nothing
/// was committed, and kept when the commit's outcome is unknown: deleting it then could leave a
/// committed message without a body.
pub async fn accept_incoming(
    pool: &PgPool,
    env: &Envelope,
    mut body: Incoming,
) -> Result<i64, AcceptError> {
    debug_assert_eq!(body.id(), env.id);
    let size = i64::try_from(body.len()).map_err(|_| AcceptError::TooLarge(body.len()))?;
    body.make_durable().await?;
    match commit_rows(pool, env, size).await {
        Ok(internal_id) => {
            body.keep();
            Ok(internal_id)
        }
        Err(CommitError::Definite(e)) => Err(e.into()),
        Err(CommitError::Unknown(e)) => {
            body.keep();
            Err(AcceptError::CommitUnknown(e))
        }
    }
}

async fn commit_rows(pool: &PgPool, env: &Envelope, size: i64) -> Result<i64, CommitError> {
    let mut tx = pool.begin().await.map_err(CommitError::Definite)?;
    let internal_id = insert_rows(&mut tx, env, size)
        .await
        .map_err(CommitError::Definite)?;
    match tx.commit().await {
        Ok(()) => Ok(internal_id),
        // The server answered: the transaction was rolled back.
        Err(e @ sqlx::Error::Database(_)) => Err(CommitError::Definite(e)),
        // The connection failed with the COMMIT sent or on its way.
        Err(e) => Err(CommitError::Unknown(e)),
    }
}

/// The message and recipient rows, in the caller's transaction. An error here is definite: the
/// transaction is never committed.
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    env: &Envelope,
    size: i64,
) -> Result<i64, sqlx::Error> {
    let (internal_id,): (i64,) = sqlx::query_as(
        "INSERT INTO message (id, server, from_address, size, source_ip, receive_connector, helo, auth_user,
                              internet_message_id, subject, env_id, ret, body_type, smtp_utf8,
                              shadow_message_id, shadow_context)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16) RETURNING internal_id",
    )
    .bind(env.id)
    .bind(&env.server)
    .bind(&env.from)
    .bind(size)
    .bind(env.source_ip.to_string())
    .bind(&env.receive_connector)
    .bind(&env.helo)
    .bind(&env.auth_user)
    .bind(&env.internet_message_id)
    .bind(&env.subject)
    .bind(&env.env_id)
    .bind(&env.ret)
    .bind(&env.body_type)
    .bind(env.smtp_utf8)
    .bind(env.shadow.as_ref().map(|s| s.message_id.as_str()))
    .bind(env.shadow.as_ref().map(|s| s.context.as_str()))
    .fetch_one(&mut **tx)
    .await?;
    let ordinals: Vec<i32> = (0..env.recipients.len() as i32).collect();
    let addresses: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
    let orcpts: Vec<Option<&str>> = env.recipients.iter().map(|r| r.orcpt.as_deref()).collect();
    let notifies: Vec<Option<&str>> = env.recipients.iter().map(|r| r.notify.as_deref()).collect();
    let dispositions: Vec<&str> = env
        .recipients
        .iter()
        .map(|r| r.disposition.name())
        .collect();
    sqlx::query(
        "INSERT INTO message_recipient (message_id, ordinal, address, orcpt, notify, disposition)
         SELECT $1, * FROM UNNEST($2::int4[], $3::text[], $4::text[], $5::text[], $6::text[])",
    )
    .bind(env.id)
    .bind(&ordinals)
    .bind(&addresses)
    .bind(&orcpts)
    .bind(&notifies)
    .bind(&dispositions)
    .execute(&mut **tx)
    .await?;
    Ok(internal_id)
}
