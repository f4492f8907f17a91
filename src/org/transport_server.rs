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
    /// hubgate's own: connections per minute from one source (an IPv6 /64); None: unlimited.
    pub max_connection_rate_per_minute_per_source: Option<i32>,
    pub queue_max_idle_time: i64,
    pub poison_message_detection_enabled: bool,
    pub poison_threshold: i32,
    pub external_delay_dsn_enabled: bool,
    pub internal_delay_dsn_enabled: bool,
    pub external_dns_servers: Vec<String>,
    pub message_tracking_log_enabled: bool,
    pub message_tracking_log_subject_logging_enabled: bool,
    pub intra_org_connector_protocol_logging_level: String,
    /// hubgate's own: how long the dashboard's per-minute counts are kept (seconds).
    pub server_statistics_max_age: i64,
    /// The Exchange-format logs' limits (`logs::retention`): sizes in bytes (`None`:
    /// unlimited), ages in seconds (0: no removal by age).
    pub receive_protocol_log_max_file_size: Option<i64>,
    pub receive_protocol_log_max_directory_size: Option<i64>,
    pub receive_protocol_log_max_age: i64,
    pub send_protocol_log_max_file_size: Option<i64>,
    pub send_protocol_log_max_directory_size: Option<i64>,
    pub send_protocol_log_max_age: i64,
    pub message_tracking_log_max_file_size: Option<i64>,
    pub message_tracking_log_max_directory_size: Option<i64>,
    pub message_tracking_log_max_age: i64,
    /// hubgate's own back pressure thresholds (`transport::pressure`): messages held (None:
    /// Unlimited) and bytes kept free on the spool's disk (0: no limit).
    pub back_pressure_queue_length_limit: Option<i32>,
    pub back_pressure_disk_free_space_limit: i64,
}

impl TransportServer {
    /// A server with the schema's (Exchange 2010 Hub) defaults, not yet stored.
    pub fn with_defaults(name: &str, fqdn: &str) -> TransportServer {
        TransportServer {
            name: name.into(),
            fqdn: fqdn.into(),
            database_id: Uuid::nil(),
            message_expiration_timeout: 2 * 86400,
            delay_notification_timeout: 4 * 3600,
            message_retry_interval: 60,
            transient_failure_retry_count: 6,
            transient_failure_retry_interval: 300,
            outbound_connection_failure_retry_interval: 600,
            max_outbound_connections: Some(1000),
            max_per_domain_outbound_connections: Some(20),
            max_concurrent_mailbox_deliveries: 20,
            max_concurrent_mailbox_submissions: 20,
            max_connection_rate_per_minute: 1200,
            max_connection_rate_per_minute_per_source: None,
            queue_max_idle_time: 180,
            poison_message_detection_enabled: true,
            poison_threshold: 2,
            external_delay_dsn_enabled: true,
            internal_delay_dsn_enabled: true,
            external_dns_servers: vec![],
            message_tracking_log_enabled: true,
            message_tracking_log_subject_logging_enabled: true,
            intra_org_connector_protocol_logging_level: "None".into(),
            server_statistics_max_age: 7 * 86400,
            receive_protocol_log_max_file_size: Some(10 * 1024 * 1024),
            receive_protocol_log_max_directory_size: Some(250 * 1024 * 1024),
            receive_protocol_log_max_age: 30 * 86400,
            send_protocol_log_max_file_size: Some(10 * 1024 * 1024),
            send_protocol_log_max_directory_size: Some(250 * 1024 * 1024),
            send_protocol_log_max_age: 30 * 86400,
            message_tracking_log_max_file_size: Some(10 * 1024 * 1024),
            message_tracking_log_max_directory_size: Some(1024 * 1024 * 1024),
            message_tracking_log_max_age: 30 * 86400,
            back_pressure_queue_length_limit: None,
            back_pressure_disk_free_space_limit:
                crate::transport::pressure::DEFAULT_DISK_FREE_SPACE_LIMIT,
        }
    }

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

    pub async fn load_all(conn: &mut sqlx::PgConnection) -> Result<Vec<TransportServer>, OrgError> {
        Ok(
            sqlx::query_as::<_, TransportServer>("SELECT * FROM transport_server ORDER BY name")
                .fetch_all(&mut *conn)
                .await?,
        )
    }

    /// The rules across the Limits tab's values; each value's range (reference §6.1) is in its
    /// property table (`ops::transport::SERVER`).
    pub fn validate(&self) -> Result<(), OrgError> {
        if let Some(v) = self.max_per_domain_outbound_connections
            && let Some(total) = self.max_outbound_connections
            && v > total
        {
            return Err(super::invalid(
                "MaxPerDomainOutboundConnections",
                format!(
                    "MaxPerDomainOutboundConnections ({v}) cannot be greater than MaxOutboundConnections ({total})."
                ),
            ));
        }
        self.validate_log_limits()?;
        // hubgate also takes `ip:port` (`[v6]:port`), for resolvers off port 53.
        for ip in &self.external_dns_servers {
            if crate::smtp::client::parse_dns_server(ip).is_none() {
                return Err(super::invalid(
                    "ExternalDNSServers",
                    format!("'{ip}' is not a valid IP address (or IP address and port)."),
                ));
            }
        }
        Ok(())
    }

    /// A log's files cannot be larger than its directory.
    fn validate_log_limits(&self) -> Result<(), OrgError> {
        for (prefix, file, dir) in [
            (
                "ReceiveProtocolLog",
                self.receive_protocol_log_max_file_size,
                self.receive_protocol_log_max_directory_size,
            ),
            (
                "SendProtocolLog",
                self.send_protocol_log_max_file_size,
                self.send_protocol_log_max_directory_size,
            ),
            (
                "MessageTrackingLog",
                self.message_tracking_log_max_file_size,
                self.message_tracking_log_max_directory_size,
            ),
        ] {
            let file_param = match prefix {
                "ReceiveProtocolLog" => "ReceiveProtocolLogMaxFileSize",
                "SendProtocolLog" => "SendProtocolLogMaxFileSize",
                _ => "MessageTrackingLogMaxFileSize",
            };
            let shown = crate::shell::parse::format_bytes;
            let too_big = match (file, dir) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(f), Some(d)) => f > d,
            };
            if too_big {
                return Err(super::invalid(
                    file_param,
                    format!(
                        "{prefix}MaxFileSize ({}) cannot be greater than {prefix}MaxDirectorySize ({}).",
                        shown(file),
                        shown(dir)
                    ),
                ));
            }
        }
        Ok(())
    }

    pub async fn update(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        self.validate()?;
        sqlx::query(
            "UPDATE transport_server SET message_expiration_timeout = $2, delay_notification_timeout = $3,
               message_retry_interval = $4, transient_failure_retry_count = $5, transient_failure_retry_interval = $6,
               outbound_connection_failure_retry_interval = $7, max_outbound_connections = $8,
               max_per_domain_outbound_connections = $9, max_concurrent_mailbox_deliveries = $10,
               max_concurrent_mailbox_submissions = $11, max_connection_rate_per_minute = $12, queue_max_idle_time = $13,
               poison_message_detection_enabled = $14, poison_threshold = $15, external_delay_dsn_enabled = $16,
               internal_delay_dsn_enabled = $17, external_dns_servers = $18, message_tracking_log_enabled = $19,
               message_tracking_log_subject_logging_enabled = $20, intra_org_connector_protocol_logging_level = $21,
               server_statistics_max_age = $22, back_pressure_queue_length_limit = $23,
               back_pressure_disk_free_space_limit = $24, max_connection_rate_per_minute_per_source = $25
             WHERE name = $1",
        )
        .bind(&self.name)
        .bind(self.message_expiration_timeout)
        .bind(self.delay_notification_timeout)
        .bind(self.message_retry_interval)
        .bind(self.transient_failure_retry_count)
        .bind(self.transient_failure_retry_interval)
        .bind(self.outbound_connection_failure_retry_interval)
        .bind(self.max_outbound_connections)
        .bind(self.max_per_domain_outbound_connections)
        .bind(self.max_concurrent_mailbox_deliveries)
        .bind(self.max_concurrent_mailbox_submissions)
        .bind(self.max_connection_rate_per_minute)
        .bind(self.queue_max_idle_time)
        .bind(self.poison_message_detection_enabled)
        .bind(self.poison_threshold)
        .bind(self.external_delay_dsn_enabled)
        .bind(self.internal_delay_dsn_enabled)
        .bind(&self.external_dns_servers)
        .bind(self.message_tracking_log_enabled)
        .bind(self.message_tracking_log_subject_logging_enabled)
        .bind(&self.intra_org_connector_protocol_logging_level)
        .bind(self.server_statistics_max_age)
        .bind(self.back_pressure_queue_length_limit)
        .bind(self.back_pressure_disk_free_space_limit)
        .bind(self.max_connection_rate_per_minute_per_source)
        .execute(&mut *conn)
        .await?;
        self.update_log_limits(conn).await
    }

    async fn update_log_limits(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        sqlx::query(
            "UPDATE transport_server SET receive_protocol_log_max_file_size = $2,
               receive_protocol_log_max_directory_size = $3, receive_protocol_log_max_age = $4,
               send_protocol_log_max_file_size = $5, send_protocol_log_max_directory_size = $6,
               send_protocol_log_max_age = $7, message_tracking_log_max_file_size = $8,
               message_tracking_log_max_directory_size = $9, message_tracking_log_max_age = $10
             WHERE name = $1",
        )
        .bind(&self.name)
        .bind(self.receive_protocol_log_max_file_size)
        .bind(self.receive_protocol_log_max_directory_size)
        .bind(self.receive_protocol_log_max_age)
        .bind(self.send_protocol_log_max_file_size)
        .bind(self.send_protocol_log_max_directory_size)
        .bind(self.send_protocol_log_max_age)
        .bind(self.message_tracking_log_max_file_size)
        .bind(self.message_tracking_log_max_directory_size)
        .bind(self.message_tracking_log_max_age)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
