//! The gateway's side of the queue writer's lock, and the task that runs queue commands as they
//! are recorded.

use sqlx::PgConnection;

use super::*;
use crate::transport::queue::ops::command::{self, COMMAND_CHANNEL};

/// This gateway's claim on its server name: the queue writer's lock, on a connection of its
/// own, held for as long as the gateway runs.
pub struct ServerClaim {
    pub(super) conn: PgConnection,
    pub(super) url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "another hubgate process is serving as {0} on this database (it holds the queue writer's lock): \
         stop it, or give this node its own HUBGATE_SERVER_NAME"
    )]
    Taken(String),
    #[error("taking the queue writer's lock of {0}: {1}")]
    Database(String, sqlx::Error),
}

/// Claims `server` for this process. Another holder (a shell applying a command to the stored
/// state, or a gateway killed a moment ago whose connection PostgreSQL has not reaped yet) lets
/// go within moments; a gateway still running under the same name does not, and then this one
/// must not start: it would deliver the other's queues a second time, and report as lost every
/// message whose body is in the other's spool.
pub async fn claim(pool: &PgPool, url: &str, server: &str) -> Result<ServerClaim, ClaimError> {
    const PATIENCE: Duration = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match command::try_writer_lock(pool, server).await {
            Ok(Some(conn)) => {
                return Ok(ServerClaim {
                    conn,
                    url: url.to_string(),
                });
            }
            Ok(None) => {}
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(ClaimError::Database(server.to_string(), e));
            }
            Err(e) => tracing::warn!("taking the queue writer's lock: {e}"),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ClaimError::Taken(server.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs queue commands as they are recorded (NOTIFY hubgate_queue_command), holding the queue
/// writer's lock for as long as the gateway runs.
pub(super) async fn command_listener(qm: QueueManager, url: String, lock: Option<PgConnection>) {
    let mut lock = lock;
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("queue command listener: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(COMMAND_CHANNEL).await {
            tracing::warn!("LISTEN {COMMAND_CHANNEL}: {e}");
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        loop {
            if lock.is_none() {
                lock = command::try_writer_lock(&qm.inner.pool, &qm.inner.server)
                    .await
                    .ok()
                    .flatten();
            }
            if let Some(conn) = lock.as_mut()
                && let Err(e) = qm.run_commands(conn).await
            {
                // The lock went with its connection, if that is what failed.
                tracing::warn!("running queue commands: {e}");
                lock = None;
            }
            match tokio::time::timeout(Duration::from_secs(5), listener.recv()).await {
                Ok(Ok(_)) => while listener.next_buffered().is_some() {},
                Ok(Err(e)) => {
                    tracing::warn!("queue command listener: {e}");
                    break;
                }
                Err(_) => {
                    if let Some(conn) = lock.as_mut()
                        && sqlx::query("SELECT 1").execute(&mut *conn).await.is_err()
                    {
                        lock = None;
                    }
                }
            }
        }
    }
}
