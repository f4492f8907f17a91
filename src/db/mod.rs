//! The PostgreSQL pool, migrations, and the private cluster used when DATABASE_URL is unset.

pub mod kept;
pub mod managed;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::Settings;
use managed::{ManagedCluster, ManagedError};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Managed(#[from] ManagedError),
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("applying migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// An open database, and the private cluster behind it when hubgate runs one.
pub struct Database {
    pub pool: PgPool,
    pub url: String,
    pub managed: Option<ManagedCluster>,
}

impl Database {
    /// Connects (starting the private cluster when needed) and applies migrations.
    pub async fn open(settings: &Settings) -> Result<Database, DbError> {
        let (url, managed) = match &settings.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let cluster = ManagedCluster::start(&settings.data_dir.join("pgsql")).await?;
                cluster.ensure_database("hubgate").await?;
                (cluster.url("hubgate"), Some(cluster))
            }
        };
        let pool = connect(&url).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Database { pool, url, managed })
    }

    pub async fn close(self) {
        self.pool.close().await;
        if let Some(m) = self.managed
            && let Err(e) = m.stop().await
        {
            tracing::warn!("stopping the private PostgreSQL cluster: {e}");
        }
    }
}

pub async fn connect(url: &str) -> Result<PgPool, DbError> {
    // Many sessions commit at once so PostgreSQL can group their WAL flushes.
    PgPoolOptions::new()
        .max_connections(40)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .map_err(|source| DbError::Connect {
            url: redact(url),
            source,
        })
}

/// Hides a password in a URL before it reaches a log or an error message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
