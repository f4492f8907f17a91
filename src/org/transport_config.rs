//! TransportConfig: organisation-wide transport settings (Set-TransportConfig).

use sqlx::PgPool;

use super::OrgError;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TransportConfig {
    pub shadow_redundancy_enabled: bool,
    pub shadow_heartbeat_timeout_interval: i64,
    pub shadow_heartbeat_retry_count: i32,
    pub shadow_message_auto_discard_interval: i64,
    pub max_receive_size: Option<i64>,
    pub max_send_size: Option<i64>,
    pub max_recipient_envelope_limit: Option<i32>,
    pub generate_copy_of_dsn_for: Vec<String>,
    pub tls_receive_domain_secure_list: Vec<String>,
    pub tls_send_domain_secure_list: Vec<String>,
}

impl TransportConfig {
    pub async fn load(pool: &PgPool) -> Result<TransportConfig, OrgError> {
        Ok(sqlx::query_as::<_, TransportConfig>(
            "SELECT shadow_redundancy_enabled, shadow_heartbeat_timeout_interval, shadow_heartbeat_retry_count,
                    shadow_message_auto_discard_interval, max_receive_size, max_send_size, max_recipient_envelope_limit,
                    generate_copy_of_dsn_for, tls_receive_domain_secure_list, tls_send_domain_secure_list
             FROM transport_config",
        )
        .fetch_one(pool)
        .await?)
    }
}
