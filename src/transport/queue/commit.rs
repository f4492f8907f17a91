//! Group commit of accepted messages: the rows of every message whose body is durable and whose
//! session waits for its 250 go to PostgreSQL together, one statement and one WAL flush for all
//! of them, instead of a transaction (four round trips and a flush) per message.
//!
//! Sessions hand their message to one committer task and wait for its answer. The task takes
//! whatever has gathered since its last commit (so a busy gateway batches many messages, an
//! idle one commits each at once, with no timer), commits them in one transaction and answers
//! each session with its InternalId. A session's 250 still comes only after its own rows are
//! committed: the rule is unchanged, only the transaction is shared.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{Connection, PgPool, Postgres, Transaction};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::Envelope;
use super::spool::Incoming;
use super::store::{AcceptError, settle};
use crate::db::kept::KeptConnection;

/// Most messages committed in one transaction.
const MAX_BATCH: usize = 128;

/// Why the rows were not committed.
#[derive(Debug)]
pub(super) enum CommitError {
    /// Nothing was committed: the statement failed, or the server refused the COMMIT.
    Definite(sqlx::Error),
    /// The COMMIT was sent and no answer came back.
    Unknown(sqlx::Error),
}

/// The handle sessions commit through; the task ends when the last handle is dropped.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Pending>,
    /// Messages handed over and not yet taken into a batch.
    queued: Arc<AtomicUsize>,
}

/// A message handed over with its durable body: the task keeps or removes the body by the
/// commit's outcome, so a session that goes away meanwhile cannot take the body of a
/// committed message with it.
struct Pending {
    env: Envelope,
    size: i64,
    body: Incoming,
    done: oneshot::Sender<Result<i64, AcceptError>>,
}

impl Committer {
    /// Starts the committer task (on the current Tokio runtime).
    pub fn start(pool: PgPool) -> Committer {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(pool, rx, queued.clone()));
        Committer { tx, queued }
    }

    /// How many messages wait for the commit under way to end (the next batch).
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Commits one message's rows, in a transaction shared with the messages that arrive
    /// meanwhile, and keeps its durable `body` (removes it when nothing was committed);
    /// returns its InternalId once the rows are committed.
    pub(super) async fn commit(
        &self,
        env: &Envelope,
        size: i64,
        body: Incoming,
    ) -> Result<i64, AcceptError> {
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            env: env.clone(),
            size,
            body,
            done,
        };
        self.queued.fetch_add(1, Ordering::SeqCst);
        if let Err(mpsc::error::SendError(p)) = self.tx.send(pending) {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            // Nothing was sent to the database.
            return settle(Err(CommitError::Definite(sqlx::Error::PoolClosed)), p.body);
        }
        // The task dropped the answer only by panicking, perhaps with the COMMIT sent.
        answer.await.unwrap_or_else(|_| {
            Err(AcceptError::CommitUnknown(sqlx::Error::Protocol(
                "the group committer stopped".into(),
            )))
        })
    }
}

async fn run(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Pending>, queued: Arc<AtomicUsize>) {
    let mut conn = KeptConnection::new(pool.clone());
    while let Some(first) = conn.recv(&mut rx).await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len(), Ordering::SeqCst);
        commit_batch(&pool, &mut conn, batch).await;
    }
}

async fn commit_batch(pool: &PgPool, conn: &mut KeptConnection, batch: Vec<Pending>) {
    let rows: Vec<Row> = batch
        .iter()
        .map(|p| (&p.env, p.size, p.body.inline()))
        .collect();
    match commit_rows(conn, &rows).await {
        Ok(ids) => {
            for p in batch {
                let id = ids.iter().find(|(id, _)| *id == p.env.id).map(|(_, i)| *i);
                let _ = p.done.send(settle(returned(id), p.body));
            }
        }
        // The server refused the batch for what it holds: one message's rows may be at fault,
        // so each is tried alone and only that one fails, as without batching.
        Err(CommitError::Definite(sqlx::Error::Database(_))) if batch.len() > 1 => {
            for p in batch {
                let alone = commit_one(pool, &p.env, p.size, p.body.inline()).await;
                let _ = p.done.send(settle(alone, p.body));
            }
        }
        Err(e) => {
            for p in batch {
                let copied = match &e {
                    CommitError::Definite(e) => CommitError::Definite(copy(e)),
                    CommitError::Unknown(e) => CommitError::Unknown(copy(e)),
                };
                let _ = p.done.send(settle(Err(copied), p.body));
            }
        }
    }
}

/// A committed message's InternalId as the statement returned it. Every row inserted comes
/// back; a missing one would be a bug, and its session must then not say 250 (its rows are
/// committed, so its body stays).
fn returned(id: Option<i64>) -> Result<i64, CommitError> {
    id.ok_or_else(|| {
        CommitError::Unknown(sqlx::Error::Protocol(
            "the message's row was not returned".into(),
        ))
    })
}

/// One message's rows in a transaction of their own; returns its InternalId.
pub(super) async fn commit_one(
    pool: &PgPool,
    env: &Envelope,
    size: i64,
    body: Option<&[u8]>,
) -> Result<i64, CommitError> {
    let ids = commit_rows(&mut KeptConnection::new(pool.clone()), &[(env, size, body)]).await?;
    returned(ids.first().map(|(_, i)| *i))
}

/// One error for each session of a failed batch, keeping what `pressure::lost_database` reads
/// (an unreachable database) and the text.
fn copy(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// A message to commit: its envelope, its size, and its body when the row keeps it.
type Row<'a> = (&'a Envelope, i64, Option<&'a [u8]>);

/// Commits the rows of `rows` in one transaction; returns each message's id with its
/// InternalId.
async fn commit_rows(
    kept: &mut KeptConnection,
    rows: &[Row<'_>],
) -> Result<Vec<(Uuid, i64)>, CommitError> {
    let result = commit_on(kept, rows).await;
    if result.is_err() {
        kept.failed();
    }
    result
}

async fn commit_on(
    kept: &mut KeptConnection,
    rows: &[Row<'_>],
) -> Result<Vec<(Uuid, i64)>, CommitError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let (conn, reused) = kept.get().await.map_err(CommitError::Definite)?;
        let begun = conn.begin().await;
        // A kept connection that broke while it waited (PostgreSQL restarted): nothing was
        // written, so the batch goes again on a fresh one.
        if begun.is_err() && reused && tries == 1 {
            drop(begun);
            kept.failed();
            continue;
        }
        let mut tx = begun.map_err(CommitError::Definite)?;
        let ids = insert_rows(&mut tx, rows)
            .await
            .map_err(CommitError::Definite)?;
        return match tx.commit().await {
            Ok(()) => Ok(ids),
            // The server answered: the transaction was rolled back.
            Err(e @ sqlx::Error::Database(_)) => Err(CommitError::Definite(e)),
            // The connection failed with the COMMIT sent or on its way.
            Err(e) => Err(CommitError::Unknown(e)),
        };
    }
}

/// The message and recipient rows of every message, in one statement in the caller's
/// transaction. An error here is definite: the transaction is never committed.
async fn insert_rows(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[Row<'_>],
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let envs = || rows.iter().map(|(e, _, _)| *e);
    let text = |f: fn(&Envelope) -> Option<&str>| envs().map(f).collect::<Vec<_>>();
    let recipients = || envs().flat_map(|e| e.recipients.iter().map(move |r| (e.id, r)));
    let ordinals: Vec<i32> = envs()
        .flat_map(|e| 0..i32::try_from(e.recipients.len()).unwrap_or(i32::MAX))
        .collect();
    // The recipient rows' foreign key is checked at the statement's end, when the message rows
    // of the same statement are in place.
    sqlx::query_as(
        "WITH m AS (
             INSERT INTO message (id, server, from_address, size, source_ip, receive_connector,
                                  helo, auth_user, internet_message_id, subject, env_id, ret,
                                  body_type, smtp_utf8, shadow_message_id, shadow_context)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                                  $11::text[], $12::text[], $13::text[], $14::bool[], $15::text[],
                                  $16::text[])
             RETURNING id, internal_id),
         b AS (
             INSERT INTO message_body (id, body)
             SELECT id, body FROM UNNEST($1::uuid[], $23::bytea[]) AS u(id, body)
             WHERE body IS NOT NULL),
         r AS (
             INSERT INTO message_recipient (message_id, ordinal, address, orcpt, notify, disposition)
             SELECT * FROM UNNEST($17::uuid[], $18::int4[], $19::text[], $20::text[], $21::text[],
                                  $22::text[]))
         SELECT id, internal_id FROM m",
    )
    .bind(envs().map(|e| e.id).collect::<Vec<_>>())
    .bind(text(|e| Some(e.server.as_str())))
    .bind(text(|e| Some(e.from.as_str())))
    .bind(rows.iter().map(|(_, size, _)| *size).collect::<Vec<_>>())
    .bind(envs().map(|e| e.source_ip.to_string()).collect::<Vec<_>>())
    .bind(text(|e| Some(e.receive_connector.as_str())))
    .bind(text(|e| Some(e.helo.as_str())))
    .bind(text(|e| e.auth_user.as_deref()))
    .bind(text(|e| e.internet_message_id.as_deref()))
    .bind(text(|e| e.subject.as_deref()))
    .bind(text(|e| e.env_id.as_deref()))
    .bind(text(|e| e.ret.as_deref()))
    .bind(text(|e| e.body_type.as_deref()))
    .bind(envs().map(|e| e.smtp_utf8).collect::<Vec<_>>())
    .bind(text(|e| e.shadow.as_ref().map(|s| s.message_id.as_str())))
    .bind(text(|e| e.shadow.as_ref().map(|s| s.context.as_str())))
    .bind(recipients().map(|(id, _)| id).collect::<Vec<_>>())
    .bind(ordinals)
    .bind(recipients().map(|(_, r)| r.address.as_str()).collect::<Vec<_>>())
    .bind(recipients().map(|(_, r)| r.orcpt.as_deref()).collect::<Vec<_>>())
    .bind(recipients().map(|(_, r)| r.notify.as_deref()).collect::<Vec<_>>())
    .bind(
        recipients()
            .map(|(_, r)| r.disposition.name())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|(_, _, body)| *body).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await
}
