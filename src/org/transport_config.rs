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
    /// The organisation's settings with the schema's (Exchange 2010) defaults, not yet stored.
    pub fn with_defaults() -> TransportConfig {
        TransportConfig {
            shadow_redundancy_enabled: true,
            shadow_heartbeat_timeout_interval: 900,
            shadow_heartbeat_retry_count: 12,
            shadow_message_auto_discard_interval: 172800,
            max_receive_size: Some(10485760),
            max_send_size: Some(10485760),
            max_recipient_envelope_limit: Some(5000),
            generate_copy_of_dsn_for: ["5.4.8", "5.4.6", "5.4.4", "5.2.4", "5.2.0", "5.1.4"]
                .map(String::from)
                .to_vec(),
            tls_receive_domain_secure_list: vec![],
            tls_send_domain_secure_list: vec![],
        }
    }

    pub async fn load(pool: &PgPool) -> Result<TransportConfig, OrgError> {
        let mut conn = pool.acquire().await?;
        Self::load_in(&mut conn).await
    }

    pub async fn load_in(conn: &mut sqlx::PgConnection) -> Result<TransportConfig, OrgError> {
        Ok(sqlx::query_as::<_, TransportConfig>(
            "SELECT shadow_redundancy_enabled, shadow_heartbeat_timeout_interval, shadow_heartbeat_retry_count,
                    shadow_message_auto_discard_interval, max_receive_size, max_send_size, max_recipient_envelope_limit,
                    generate_copy_of_dsn_for, tls_receive_domain_secure_list, tls_send_domain_secure_list
             FROM transport_config",
        )
        .fetch_one(&mut *conn)
        .await?)
    }

    pub fn validate(&self) -> Result<(), OrgError> {
        for (param, list) in [
            (
                "TLSReceiveDomainSecureList",
                &self.tls_receive_domain_secure_list,
            ),
            ("TLSSendDomainSecureList", &self.tls_send_domain_secure_list),
        ] {
            if let Some(d) = list
                .iter()
                .find(|d| !super::accepted_domain::valid_domain_name(d))
            {
                return Err(super::invalid(
                    param,
                    format!("'{d}' is not a valid SMTP domain."),
                ));
            }
        }
        Ok(())
    }

    pub async fn update(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        self.validate()?;
        sqlx::query(
            "UPDATE transport_config SET shadow_redundancy_enabled = $1, shadow_heartbeat_timeout_interval = $2,
               shadow_heartbeat_retry_count = $3, shadow_message_auto_discard_interval = $4, max_receive_size = $5,
               max_send_size = $6, max_recipient_envelope_limit = $7, generate_copy_of_dsn_for = $8,
               tls_receive_domain_secure_list = $9, tls_send_domain_secure_list = $10",
        )
        .bind(self.shadow_redundancy_enabled)
        .bind(self.shadow_heartbeat_timeout_interval)
        .bind(self.shadow_heartbeat_retry_count)
        .bind(self.shadow_message_auto_discard_interval)
        .bind(self.max_receive_size)
        .bind(self.max_send_size)
        .bind(self.max_recipient_envelope_limit)
        .bind(&self.generate_copy_of_dsn_for)
        .bind(&self.tls_receive_domain_secure_list)
        .bind(&self.tls_send_domain_secure_list)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
