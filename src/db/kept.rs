//! A pooled connection that a busy task keeps between its uses.
//!
//! The pool checks a connection with a round trip to PostgreSQL when it hands it out and again
//! when it gets it back. For the tasks that write the queue (the group committer, the queue
//! writer), which run hundreds of short transactions a second, those checks cost as much as the
//! statements. Such a task keeps its connection instead, and gives it back after [`IDLE`]
//! without use, so that an idle node holds nothing and a stop's close of the pool is not held
//! up. After any error the connection is dropped (the pool checks it on its way back), and the
//! next use takes a fresh, checked one.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::mpsc;

/// How long a kept connection may go unused before it goes back to the pool.
pub const IDLE: Duration = Duration::from_secs(1);

pub struct KeptConnection {
    pool: PgPool,
    conn: Option<PoolConnection<Postgres>>,
}

impl KeptConnection {
    pub fn new(pool: PgPool) -> KeptConnection {
        KeptConnection { pool, conn: None }
    }

    /// The kept connection, or one from the pool; the flag says whether it was already kept
    /// (and so was not checked just now).
    pub async fn get(&mut self) -> Result<(&mut PgConnection, bool), sqlx::Error> {
        let kept = self.conn.is_some();
        let conn = match self.conn.take() {
            Some(c) => c,
            None => self.pool.acquire().await?,
        };
        Ok((&mut **self.conn.insert(conn), kept))
    }

    /// Drops the connection after an error: the next use takes another.
    pub fn failed(&mut self) {
        self.conn = None;
    }

    /// The next message of `rx`, giving the connection back to the pool if none comes within
    /// [`IDLE`]; None when every sender is gone.
    pub async fn recv<T>(&mut self, rx: &mut mpsc::UnboundedReceiver<T>) -> Option<T> {
        if self.conn.is_some() {
            match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(next) => return next,
                Err(_) => self.conn = None,
            }
        }
        rx.recv().await
    }
}
