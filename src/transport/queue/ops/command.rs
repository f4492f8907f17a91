//! Suspend/Resume/Retry-Queue and Suspend/Resume/Remove-Message as typed commands to the queue
//! manager of the server they name, the only writer of queue and recipient state.
//!
//! A caller (the shell, the console, on any process) checks the command against the database
//! (`prepare`: the errors an administrator must see at once), records it in queue_command and
//! NOTIFYs `hubgate_queue_command`. The running gateway holds the queue writer's advisory lock;
//! it applies the command to its in-memory queues, writes the rows through its writer and records
//! the result, which the caller waits for (bounded). When no gateway holds the lock, the caller
//! takes it and applies the recorded commands, in order, to the stored queue state
//! (`manager::run_stored`), exactly as a gateway does when it starts; the reply says the change takes
//! effect when the gateway starts. Either way one process at a time writes the queue rows.

use std::fmt;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

pub use super::batch::{prepare_batch, prepare_batch_of_entries};
use super::rate::ReleaseRate;
use super::read::{message_entries, queue_row};
use super::*;

/// The channel a recorded command is announced on; the payload is the server that runs it.
pub const COMMAND_CHANNEL: &str = "hubgate_queue_command";

/// The advisory lock class of the queue writer; the object is the hash of the server's name.
const LOCK_CLASS: i32 = 0x6867_7175;

/// How long a caller waits for the running gateway's result.
const REPLY_WAIT: Duration = Duration::from_secs(30);

/// An administrator's queue operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueCommand {
    SuspendQueue(QueueIdentity),
    ResumeQueue(QueueIdentity),
    /// Resume-Queue -MessagesPerMinute: resumed (and retried now if in Retry), its messages
    /// handed to delivery at that pace until the queue empties.
    ResumeQueueAtRate {
        id: QueueIdentity,
        rate: ReleaseRate,
    },
    /// Retry-Queue; with `resubmit`, its messages go back through categorization and routing.
    RetryQueue {
        id: QueueIdentity,
        resubmit: bool,
    },
    SuspendMessage(MessageIdentity),
    ResumeMessage(MessageIdentity),
    RemoveMessage {
        id: MessageIdentity,
        with_ndr: bool,
    },
}

/// What a command does, as stored in queue_command.verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    SuspendQueue,
    ResumeQueue,
    ResumeQueueAtRate,
    RetryQueue,
    SuspendMessage,
    ResumeMessage,
    RemoveMessage,
}

const VERBS: [(Verb, &str, &str); 7] = [
    (Verb::SuspendQueue, "SuspendQueue", "Suspend-Queue"),
    (Verb::ResumeQueue, "ResumeQueue", "Resume-Queue"),
    (Verb::ResumeQueueAtRate, "ResumeQueueAtRate", "Resume-Queue"),
    (Verb::RetryQueue, "RetryQueue", "Retry-Queue"),
    (Verb::SuspendMessage, "SuspendMessage", "Suspend-Message"),
    (Verb::ResumeMessage, "ResumeMessage", "Resume-Message"),
    (Verb::RemoveMessage, "RemoveMessage", "Remove-Message"),
];

impl Verb {
    pub fn as_str(self) -> &'static str {
        VERBS.iter().find(|v| v.0 == self).map_or("", |v| v.1)
    }

    pub fn parse(s: &str) -> Option<Verb> {
        VERBS.iter().find(|v| v.1 == s).map(|v| v.0)
    }

    /// The cmdlet's name.
    pub fn cmdlet(self) -> &'static str {
        VERBS.iter().find(|v| v.0 == self).map_or("", |v| v.2)
    }
}

impl QueueCommand {
    /// The command an administrator typed: `identity` as text, read for the local server.
    /// A rate is not a flag: `Verb::ResumeQueueAtRate` reads as Resume-Queue here, and
    /// `resume_at_rate` makes it.
    pub fn parse(
        verb: Verb,
        identity: &str,
        local_server: &str,
        flag: bool,
    ) -> Result<QueueCommand, QueueError> {
        let queue = || QueueIdentity::parse(identity, local_server);
        let message = || MessageIdentity::parse(identity, local_server);
        Ok(match verb {
            Verb::SuspendQueue => QueueCommand::SuspendQueue(queue()?),
            Verb::ResumeQueue | Verb::ResumeQueueAtRate => QueueCommand::ResumeQueue(queue()?),
            Verb::RetryQueue => QueueCommand::RetryQueue {
                id: queue()?,
                resubmit: flag,
            },
            Verb::SuspendMessage => QueueCommand::SuspendMessage(message()?),
            Verb::ResumeMessage => QueueCommand::ResumeMessage(message()?),
            Verb::RemoveMessage => QueueCommand::RemoveMessage {
                id: message()?,
                with_ndr: flag,
            },
        })
    }

    pub fn verb(&self) -> Verb {
        match self {
            QueueCommand::SuspendQueue(_) => Verb::SuspendQueue,
            QueueCommand::ResumeQueue(_) => Verb::ResumeQueue,
            QueueCommand::ResumeQueueAtRate { .. } => Verb::ResumeQueueAtRate,
            QueueCommand::RetryQueue { .. } => Verb::RetryQueue,
            QueueCommand::SuspendMessage(_) => Verb::SuspendMessage,
            QueueCommand::ResumeMessage(_) => Verb::ResumeMessage,
            QueueCommand::RemoveMessage { .. } => Verb::RemoveMessage,
        }
    }
}

/// A command checked against the database, with what it names resolved: what the queue manager
/// runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub verb: Verb,
    /// The server whose queue manager runs it, as transport_server spells it.
    pub server: String,
    /// The identity as shown: `HUB1\3`, `HUB1\*\17`.
    pub identity: String,
    /// Queue commands: the delivery_queue row; None for an Unreachable queue not made yet.
    pub queue_id: Option<i64>,
    /// Message commands.
    pub message_id: Option<Uuid>,
    /// Remove-Message: the message's recipients in the named queue (every queue for `*`).
    pub ordinals: Vec<i32>,
    /// Retry-Queue -Resubmit, Remove-Message -WithNDR.
    pub flag: bool,
    /// Resume-Queue -MessagesPerMinute.
    pub rate: Option<ReleaseRate>,
    /// A filtered message action, run as one command: the messages it acts on (for
    /// Remove-Message one entry per recipient, parallel to `ordinals`). Empty for a one-message
    /// command, which names its message in `message_id`.
    pub batch: Vec<Uuid>,
}

impl Prepared {
    /// What happened, as announced on `hubgate_queue`.
    pub fn description(&self) -> String {
        match self.verb {
            Verb::RetryQueue if self.flag => format!("Retry-Queue -Resubmit {}", self.identity),
            Verb::ResumeQueueAtRate => format!(
                "Resume-Queue {} -MessagesPerMinute {}",
                self.identity,
                self.rate.map_or(0, ReleaseRate::get)
            ),
            Verb::RemoveMessage => format!(
                "Remove-Message {} {}",
                self.identity,
                if self.flag { "with NDR" } else { "without NDR" }
            ),
            v => format!("{} {}", v.cmdlet(), self.identity),
        }
    }
}

/// A recorded command, as its queue manager reads it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub id: i64,
    pub command: Prepared,
}

/// Where a command stands when its reply is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The running gateway applied it.
    Now,
    /// The gateway is not running: the stored queue state was changed, and the gateway acts on
    /// it when it starts.
    AtStart,
    /// Recorded, but the gateway did not answer in time: it applies it when it gets to it.
    Pending,
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandReply {
    pub identity: String,
    pub applied: Applied,
    /// Messages and recipients the command changed.
    pub messages: u32,
    pub recipients: u32,
}

impl fmt::Display for CommandReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.applied {
            Applied::Now => write!(
                f,
                "\"{}\": {} message(s), {} recipient(s) changed.",
                self.identity, self.messages, self.recipients
            ),
            Applied::AtStart => write!(
                f,
                "The transport service isn't running, so \"{}\" was changed in the stored queues; the change takes effect when the service starts.",
                self.identity
            ),
            Applied::Pending => write!(
                f,
                "The transport service hasn't answered yet; the operation on \"{}\" is recorded and will be applied.",
                self.identity
            ),
        }
    }
}

/// A queue that is a delivery_queue row, for the queue actions; Submission and Poison are not.
async fn actionable_queue(
    conn: &mut PgConnection,
    id: &QueueIdentity,
    action: &'static str,
) -> Result<Option<read::QueueRow>, QueueError> {
    let why = match id.queue {
        QueueName::Submission => Some(
            "the Submission queue hands every message to routing at once; use Suspend-Message or Remove-Message on its messages.",
        ),
        QueueName::Poison => Some(
            "messages in the Poison queue stay suspended until Resume-Message releases them or Remove-Message deletes them.",
        ),
        _ => None,
    };
    if let Some(why) = why {
        if !server_exists(conn, &id.server).await? {
            return Err(QueueError::QueueNotFound(id.to_string()));
        }
        return Err(QueueError::NotSupported {
            action,
            queue: id.to_string(),
            why,
        });
    }
    let row = queue_row(conn, id).await?;
    match (&row, id.queue) {
        (None, QueueName::Delivery(_)) => Err(QueueError::QueueNotFound(id.to_string())),
        (None, _) if !server_exists(conn, &id.server).await? => {
            Err(QueueError::QueueNotFound(id.to_string()))
        }
        _ => Ok(row),
    }
}

/// Checks a command against the database and resolves what it names. Changes nothing, so
/// `-WhatIf` stops here and still refuses what the real run would refuse.
pub async fn prepare(conn: &mut PgConnection, cmd: &QueueCommand) -> Result<Prepared, QueueError> {
    let verb = cmd.verb();
    match cmd {
        QueueCommand::SuspendQueue(id)
        | QueueCommand::ResumeQueue(id)
        | QueueCommand::ResumeQueueAtRate { id, .. }
        | QueueCommand::RetryQueue { id, .. } => {
            let row = actionable_queue(conn, id, verb.cmdlet()).await?;
            let rate = match cmd {
                QueueCommand::ResumeQueueAtRate { rate, .. } => {
                    super::rate::paced_queue(conn, id, row.as_ref()).await?;
                    Some(*rate)
                }
                _ => None,
            };
            let flag = matches!(cmd, QueueCommand::RetryQueue { resubmit: true, .. });
            // Exchange retries only a queue in Retry status; the gateway checks again when it
            // runs the command.
            if verb == Verb::RetryQueue
                && !flag
                && !row
                    .as_ref()
                    .is_some_and(|r| r.status == "Retry" && !r.suspended)
            {
                return Err(QueueError::NotInRetry(id.to_string()));
            }
            let server = match &row {
                Some(r) => r.server.clone(),
                None => resolve_server(conn, &id.server).await?,
            };
            Ok(Prepared {
                verb,
                server,
                identity: id.to_string(),
                queue_id: row.map(|r| r.id),
                message_id: None,
                ordinals: vec![],
                flag,
                rate,
                batch: vec![],
            })
        }
        QueueCommand::SuspendMessage(id)
        | QueueCommand::ResumeMessage(id)
        | QueueCommand::RemoveMessage { id, .. } => {
            let entries = message_entries(conn, id, false).await?;
            let server = resolve_server(conn, &id.server).await?;
            let with_ndr = matches!(cmd, QueueCommand::RemoveMessage { with_ndr: true, .. });
            Ok(message_prepared(verb, id, server, &entries, with_ndr))
        }
    }
}

/// A message command on the entries its identity names.
pub(super) fn message_prepared(
    verb: Verb,
    id: &MessageIdentity,
    server: String,
    entries: &[MessageInfo],
    with_ndr: bool,
) -> Prepared {
    let ordinals = if verb == Verb::RemoveMessage {
        entries
            .iter()
            .flat_map(|e| e.recipients.iter().map(|r| r.ordinal))
            .collect()
    } else {
        vec![]
    };
    Prepared {
        verb,
        server,
        identity: id.to_string(),
        queue_id: None,
        message_id: entries.first().map(|e| e.id),
        ordinals,
        flag: with_ndr,
        rate: None,
        batch: vec![],
    }
}

/// Checks, records and runs a command; returns when it ran (or the bounded wait ended).
pub async fn execute(pool: &PgPool, cmd: &QueueCommand) -> Result<CommandReply, QueueError> {
    let prepared = {
        let mut conn = pool.acquire().await?;
        prepare(&mut conn, cmd).await?
    };
    submit(pool, &prepared).await
}

/// Records a prepared command for its server's queue manager and waits for the result.
pub async fn submit(pool: &PgPool, p: &Prepared) -> Result<CommandReply, QueueError> {
    Ok(submit_tracked(pool, p).await?.1)
}

/// `submit`, with the recorded command's number (for `progress` when the reply is Pending).
pub async fn submit_tracked(
    pool: &PgPool,
    p: &Prepared,
) -> Result<(i64, CommandReply), QueueError> {
    let id = record(pool, p).await?;
    let reply = wait_for(pool, id, p).await?;
    Ok((id, reply))
}

async fn wait_for(pool: &PgPool, id: i64, p: &Prepared) -> Result<CommandReply, QueueError> {
    let deadline = Instant::now() + REPLY_WAIT;
    let mut lock_tried: Option<Instant> = None;
    loop {
        if let Some(reply) = result(pool, id, p).await? {
            return reply;
        }
        // No gateway holds the writer's lock: this caller is the writer for a moment and runs
        // what is recorded, in order (its own command among them).
        if lock_tried.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            lock_tried = Some(Instant::now());
            if let Some(mut conn) = try_writer_lock(pool, &p.server).await? {
                crate::transport::queue::manager::run_stored(&mut conn, &p.server).await?;
                // Closing the connection releases the lock.
                let _ = conn.close().await;
                continue;
            }
        }
        if Instant::now() >= deadline {
            return Ok(CommandReply {
                identity: p.identity.clone(),
                applied: Applied::Pending,
                messages: 0,
                recipients: 0,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn record(pool: &PgPool, p: &Prepared) -> Result<i64, QueueError> {
    let mut tx = pool.begin().await?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO queue_command (server, verb, identity, queue_id, message_id, ordinals, flag, message_ids, rate)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(&p.server)
    .bind(p.verb.as_str())
    .bind(&p.identity)
    .bind(p.queue_id)
    .bind(p.message_id)
    .bind(&p.ordinals)
    .bind(p.flag)
    .bind(&p.batch)
    .bind(p.rate.map(ReleaseRate::stored))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(COMMAND_CHANNEL)
        .bind(&p.server)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(id)
}

type ResultRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<i32>,
);

/// The command's reply once it ran.
async fn result(
    pool: &PgPool,
    id: i64,
    p: &Prepared,
) -> Result<Option<Result<CommandReply, QueueError>>, QueueError> {
    let row: Option<ResultRow> = sqlx::query_as(
        "SELECT applied_by, error, error_text, messages, recipients FROM queue_command
          WHERE id = $1 AND done_at IS NOT NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some((by, error, text, messages, recipients)) = row else {
        return Ok(None);
    };
    if let Some(kind) = error {
        return Ok(Some(Err(error_from(&kind, text, &p.identity))));
    }
    Ok(Some(Ok(CommandReply {
        identity: p.identity.clone(),
        applied: if by.as_deref() == Some("Stored") {
            Applied::AtStart
        } else {
            Applied::Now
        },
        messages: messages.unwrap_or(0).max(0) as u32,
        recipients: recipients.unwrap_or(0).max(0) as u32,
    })))
}

fn error_kind(e: &QueueError) -> &'static str {
    match e {
        QueueError::QueueNotFound(_) => "QueueNotFound",
        QueueError::NotInRetry(_) => "NotInRetry",
        QueueError::MessageNotFound(_) => "MessageNotFound",
        _ => "Failed",
    }
}

fn error_from(kind: &str, text: Option<String>, identity: &str) -> QueueError {
    match kind {
        "QueueNotFound" => QueueError::QueueNotFound(identity.to_string()),
        "NotInRetry" => QueueError::NotInRetry(identity.to_string()),
        "MessageNotFound" => QueueError::MessageNotFound(identity.to_string()),
        _ => QueueError::Failed(text.unwrap_or_default()),
    }
}

/// A connection of its own holding the queue writer's lock of `server`, if no one holds it.
/// The lock lives as long as the connection.
pub async fn try_writer_lock(
    pool: &PgPool,
    server: &str,
) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1, hashtext(lower($2)))")
        .bind(LOCK_CLASS)
        .bind(server)
        .fetch_one(&mut *conn)
        .await?;
    // Not got: the connection goes back to the pool holding nothing. Got: it leaves the pool,
    // so the lock ends with it and never with a pooled connection someone else reuses.
    Ok(got.then(|| conn.detach()))
}

/// The oldest command of `server` not run yet.
pub async fn next_pending(
    conn: &mut PgConnection,
    server: &str,
) -> Result<Option<Recorded>, sqlx::Error> {
    type Row = (
        i64,
        String,
        String,
        String,
        Option<i64>,
        Option<Uuid>,
        Vec<i32>,
        bool,
        Vec<Uuid>,
        Option<i32>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, server, verb, identity, queue_id, message_id, ordinals, flag, message_ids, rate FROM queue_command
          WHERE lower(server) = lower($1) AND done_at IS NULL ORDER BY id LIMIT 1",
    )
    .bind(server)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.and_then(
        |(id, server, verb, identity, queue_id, message_id, ordinals, flag, batch, rate)| {
            Some(Recorded {
                id,
                command: Prepared {
                    verb: Verb::parse(&verb)?,
                    server,
                    identity,
                    queue_id,
                    message_id,
                    ordinals,
                    flag,
                    rate: ReleaseRate::from_stored(rate),
                    batch,
                },
            })
        },
    ))
}

/// Records what a command did and, when it did something, announces it on `hubgate_queue`.
pub async fn finish(
    conn: &mut PgConnection,
    rec: &Recorded,
    outcome: &Result<(u32, u32), QueueError>,
    by: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    let (kind, text, m, r) = match outcome {
        Ok((m, r)) => (None, None, Some(*m as i32), Some(*r as i32)),
        Err(e) => (Some(error_kind(e)), Some(e.to_string()), None, None),
    };
    sqlx::query(
        "UPDATE queue_command SET done_at = now(), applied_by = $2, error = $3, error_text = $4,
                messages = $5, recipients = $6
          WHERE id = $1",
    )
    .bind(rec.id)
    .bind(by)
    .bind(kind)
    .bind(text)
    .bind(m)
    .bind(r)
    .execute(&mut *tx)
    .await?;
    if outcome.is_ok() {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(rec.command.description())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_round_trip_and_name_their_cmdlets() {
        for (verb, text, cmdlet) in VERBS {
            assert_eq!(Verb::parse(text), Some(verb));
            assert_eq!(verb.as_str(), text);
            assert_eq!(verb.cmdlet(), cmdlet);
        }
        assert_eq!(Verb::parse("Suspend-Queue"), None);
    }

    #[test]
    fn commands_parse_their_identities_for_the_local_server() {
        let cmd = QueueCommand::parse(Verb::RetryQueue, "3", "hub1", true).unwrap();
        assert_eq!(
            cmd,
            QueueCommand::RetryQueue {
                id: QueueIdentity {
                    server: "HUB1".into(),
                    queue: QueueName::Delivery(3),
                },
                resubmit: true,
            }
        );
        let cmd = QueueCommand::parse(Verb::RemoveMessage, "17", "HUB1", false).unwrap();
        assert_eq!(cmd.verb(), Verb::RemoveMessage);
        assert!(matches!(
            QueueCommand::parse(Verb::SuspendMessage, "HUB1\\Nope\\3", "HUB1", false),
            Err(QueueError::BadMessageIdentity(_))
        ));
        assert!(matches!(
            QueueCommand::parse(Verb::SuspendQueue, "HUB1\\Shadow", "HUB1", false),
            Err(QueueError::BadQueueIdentity(_))
        ));
    }

    #[test]
    fn what_a_command_did_is_announced_as_before() {
        let p = |verb, identity: &str, flag| Prepared {
            verb,
            server: "HUB1".into(),
            identity: identity.into(),
            queue_id: None,
            message_id: None,
            ordinals: vec![],
            flag,
            rate: None,
            batch: vec![],
        };
        let cases = [
            (
                p(Verb::SuspendQueue, "HUB1\\3", false),
                "Suspend-Queue HUB1\\3",
            ),
            (p(Verb::RetryQueue, "HUB1\\3", false), "Retry-Queue HUB1\\3"),
            (
                p(Verb::RetryQueue, "HUB1\\Unreachable", true),
                "Retry-Queue -Resubmit HUB1\\Unreachable",
            ),
            (
                p(Verb::RemoveMessage, "HUB1\\*\\5", true),
                "Remove-Message HUB1\\*\\5 with NDR",
            ),
            (
                p(Verb::RemoveMessage, "HUB1\\3\\5", false),
                "Remove-Message HUB1\\3\\5 without NDR",
            ),
            (
                p(Verb::ResumeMessage, "HUB1\\Poison\\5", false),
                "Resume-Message HUB1\\Poison\\5",
            ),
        ];
        for (prepared, text) in cases {
            assert_eq!(prepared.description(), text);
        }
    }

    #[test]
    fn errors_come_back_typed_from_their_recorded_kind() {
        for e in [
            QueueError::QueueNotFound("HUB1\\3".into()),
            QueueError::NotInRetry("HUB1\\3".into()),
            QueueError::MessageNotFound("HUB1\\3".into()),
        ] {
            let back = error_from(error_kind(&e), Some(e.to_string()), "HUB1\\3");
            assert_eq!(back.to_string(), e.to_string());
        }
        let failed = error_from("Failed", Some("database: gone".into()), "HUB1\\3");
        assert_eq!(failed.to_string(), "database: gone");
    }
}
