//! Accepting a message: spool the body durably, then commit its rows in one transaction.

use std::net::IpAddr;

use sqlx::PgPool;
use uuid::Uuid;

use super::Spool;

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("spool: {0}")]
    Io(#[from] std::io::Error),
    #[error("queue database: {0}")]
    Db(#[from] sqlx::Error),
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
}

/// Makes the message durable; returns its InternalId. Only after this returns may the 250 be sent.
pub async fn accept(
    pool: &PgPool,
    spool: &Spool,
    env: &Envelope,
    header: Vec<u8>,
    body: Vec<u8>,
) -> Result<i64, AcceptError> {
    let size = (header.len() + body.len()) as i64;
    let id = env.id;
    {
        let spool = spool.clone();
        tokio::task::spawn_blocking(move || spool.write_durable(id, &[&header, &body]))
            .await
            .map_err(|e| AcceptError::Io(std::io::Error::other(e)))??;
    }
    match commit_rows(pool, env, size).await {
        Ok(internal_id) => Ok(internal_id),
        Err(e) => {
            let _ = spool.remove(id);
            Err(e.into())
        }
    }
}

async fn commit_rows(pool: &PgPool, env: &Envelope, size: i64) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (internal_id,): (i64,) = sqlx::query_as(
        "INSERT INTO message (id, server, from_address, size, source_ip, receive_connector, helo, auth_user,
                              internet_message_id, subject, env_id, ret, body_type, smtp_utf8)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) RETURNING internal_id",
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
    .fetch_one(&mut *tx)
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
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(internal_id)
}
