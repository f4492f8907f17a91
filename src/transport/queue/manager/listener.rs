//! The gateway's side of the queue writer's lock, and the task that runs queue commands as they
//! are recorded.

use sqlx::PgConnection;

use super::*;
use crate::transport::queue::ops::command::{self, COMMAND_CHANNEL};

/// The queue writer's lock for this gateway, on a connection of its own. Another holder (a
/// shell applying a command to the stored state) lets go within moments; a gateway already
/// running for the same server does not, and then this one runs without it, saying so.
pub(super) async fn take_writer_lock(pool: &PgPool, server: &str) -> Option<PgConnection> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match command::try_writer_lock(pool, server).await {
            Ok(Some(conn)) => return Some(conn),
            Ok(None) => {}
            Err(e) => tracing::warn!("taking the queue writer's lock: {e}"),
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::error!(
                "another process holds the queue writer's lock of {server}: queue commands wait for it"
            );
            return None;
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
