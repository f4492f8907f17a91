//! TransportServer: one running node and its Limits tab.

use sqlx::PgPool;
use uuid::Uuid;

use super::OrgError;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TransportServer {
    pub name: String,
    pub fqdn: String,
    pub database_id: Uuid,
    pub message_expiration_timeout: i64,
    pub delay_notification_timeout: i64,
    pub message_retry_interval: i64,
    pub transient_failure_retry_count: i32,
    pub transient_failure_retry_interval: i64,
    pub outbound_connection_failure_retry_interval: i64,
    pub max_outbound_connections: Option<i32>,
    pub max_per_domain_outbound_connections: Option<i32>,
    pub max_concurrent_mailbox_deliveries: i32,
    pub max_concurrent_mailbox_submissions: i32,
    pub max_connection_rate_per_minute: i32,
    pub queue_max_idle_time: i64,
    pub poison_message_detection_enabled: bool,
    pub poison_threshold: i32,
    pub external_delay_dsn_enabled: bool,
    pub internal_delay_dsn_enabled: bool,
    pub external_dns_servers: Vec<String>,
    pub message_tracking_log_enabled: bool,
    pub message_tracking_log_subject_logging_enabled: bool,
    pub intra_org_connector_protocol_logging_level: String,
}

impl TransportServer {
    pub async fn load(pool: &PgPool, name: &str) -> Result<Option<TransportServer>, OrgError> {
        Ok(sqlx::query_as::<_, TransportServer>(
            "SELECT * FROM transport_server WHERE lower(name) = lower($1)",
        )
        .bind(name)
        .fetch_optional(pool)
        .await?)
    }

    /// Creates the row with every Limits-tab default from the schema.
    pub async fn create(
        tx: &mut sqlx::PgConnection,
        name: &str,
        fqdn: &str,
    ) -> Result<(), OrgError> {
        sqlx::query("INSERT INTO transport_server (name, fqdn, database_id) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(fqdn)
            .bind(Uuid::new_v4())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
