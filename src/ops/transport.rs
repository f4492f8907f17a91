//! TransportServer and TransportConfig: their property tables and Get-/Set- operations.

use sqlx::PgConnection;

use super::props::{Ctx, Export, Kind, Object, Prop, Value, Values};
use super::{Change, Identity, OpError, pick};
use crate::field;
use crate::org::{TransportConfig, TransportServer};

pub const LOGGING: &[&str] = &["None", "Verbose"];

type S = TransportServer;

/// Export writes every value: Set-TransportServer has no bare object to compare with.
pub static SERVER: Object<S> = Object {
    props: &[
        Prop::read("Identity", Kind::Identity, |s: &S| {
            Value::Str(s.name.clone())
        })
        .export(Export::Always),
        Prop::read("Name", Kind::Str, |s: &S| Value::Str(s.name.clone())),
        Prop::read("Fqdn", Kind::Str, |s: &S| Value::Str(s.fqdn.clone())),
        field!(
            S,
            "MessageExpirationTimeout",
            Kind::TimeSpan,
            message_expiration_timeout
        )
        .range(5, 7776000)
        .export(Export::Always),
        field!(
            S,
            "DelayNotificationTimeout",
            Kind::TimeSpan,
            delay_notification_timeout
        )
        .range(1, 2592000)
        .export(Export::Always),
        field!(
            S,
            "MessageRetryInterval",
            Kind::TimeSpan,
            message_retry_interval
        )
        .range(1, 86400)
        .export(Export::Always),
        field!(
            S,
            "TransientFailureRetryCount",
            Kind::Int,
            transient_failure_retry_count
        )
        .range(0, 15)
        .export(Export::Always),
        field!(
            S,
            "TransientFailureRetryInterval",
            Kind::TimeSpan,
            transient_failure_retry_interval
        )
        .range(1, 43200)
        .export(Export::Always),
        field!(
            S,
            "OutboundConnectionFailureRetryInterval",
            Kind::TimeSpan,
            outbound_connection_failure_retry_interval
        )
        .range(1, 1728000)
        .export(Export::Always),
        field!(
            S,
            "MaxOutboundConnections",
            Kind::Unlimited,
            max_outbound_connections
        )
        .range(1, 2147483647)
        .export(Export::Always),
        field!(
            S,
            "MaxPerDomainOutboundConnections",
            Kind::Unlimited,
            max_per_domain_outbound_connections
        )
        .range(1, 2147483647)
        .export(Export::Always),
        field!(
            S,
            "MaxConcurrentMailboxDeliveries",
            Kind::Int,
            max_concurrent_mailbox_deliveries
        )
        .range(1, 256)
        .export(Export::Always),
        field!(
            S,
            "MaxConcurrentMailboxSubmissions",
            Kind::Int,
            max_concurrent_mailbox_submissions
        )
        .range(1, 256)
        .export(Export::Always),
        field!(
            S,
            "MaxConnectionRatePerMinute",
            Kind::Int,
            max_connection_rate_per_minute
        )
        .range(1, 2147483647)
        .export(Export::Always),
        // hubgate's own (Exchange has none): the same rate per source address, IPv6 per /64.
        field!(
            S,
            "MaxConnectionRatePerMinutePerSource",
            Kind::Unlimited,
            max_connection_rate_per_minute_per_source
        )
        .range(1, 2147483647)
        .export(Export::Always),
        field!(S, "QueueMaxIdleTime", Kind::TimeSpan, queue_max_idle_time)
            .range(5, 3600)
            .export(Export::Always),
        field!(
            S,
            "PoisonMessageDetectionEnabled",
            Kind::Bool,
            poison_message_detection_enabled
        )
        .export(Export::Always),
        field!(S, "PoisonThreshold", Kind::Int, poison_threshold)
            .range(1, 10)
            .export(Export::Always),
        field!(
            S,
            "ExternalDelayDsnEnabled",
            Kind::Bool,
            external_delay_dsn_enabled
        )
        .export(Export::Always),
        field!(
            S,
            "InternalDelayDsnEnabled",
            Kind::Bool,
            internal_delay_dsn_enabled
        )
        .export(Export::Always),
        field!(S, "ExternalDNSServers", Kind::List, external_dns_servers).export(Export::Always),
        field!(
            S,
            "MessageTrackingLogEnabled",
            Kind::Bool,
            message_tracking_log_enabled
        )
        .export(Export::Always),
        field!(
            S,
            "MessageTrackingLogSubjectLoggingEnabled",
            Kind::Bool,
            message_tracking_log_subject_logging_enabled
        )
        .export(Export::Always),
        field!(
            S,
            "IntraOrgConnectorProtocolLoggingLevel",
            Kind::Enum(LOGGING),
            intra_org_connector_protocol_logging_level
        )
        .export(Export::Always),
        // hubgate's own (Exchange kept performance counters): how long the server dashboard's
        // per-minute counts are kept.
        field!(
            S,
            "ServerStatisticsMaxAge",
            Kind::TimeSpan,
            server_statistics_max_age
        )
        .range(3600, 31536000)
        .export(Export::Always),
        // The Exchange-format logs' files: a new one at MaxFileSize, the oldest removed past
        // MaxDirectorySize or MaxAge (00:00:00: never by age).
        field!(
            S,
            "ReceiveProtocolLogMaxAge",
            Kind::TimeSpan,
            receive_protocol_log_max_age
        )
        .range(0, 2147483647)
        .export(Export::Always),
        field!(
            S,
            "ReceiveProtocolLogMaxDirectorySize",
            Kind::ByteSize,
            receive_protocol_log_max_directory_size
        )
        .range(1024, 1099511627776)
        .export(Export::Always),
        field!(
            S,
            "ReceiveProtocolLogMaxFileSize",
            Kind::ByteSize,
            receive_protocol_log_max_file_size
        )
        .range(1024, 1099511627776)
        .export(Export::Always),
        field!(
            S,
            "SendProtocolLogMaxAge",
            Kind::TimeSpan,
            send_protocol_log_max_age
        )
        .range(0, 2147483647)
        .export(Export::Always),
        field!(
            S,
            "SendProtocolLogMaxDirectorySize",
            Kind::ByteSize,
            send_protocol_log_max_directory_size
        )
        .range(1024, 1099511627776)
        .export(Export::Always),
        field!(
            S,
            "SendProtocolLogMaxFileSize",
            Kind::ByteSize,
            send_protocol_log_max_file_size
        )
        .range(1024, 1099511627776)
        .export(Export::Always),
        field!(
            S,
            "MessageTrackingLogMaxAge",
            Kind::TimeSpan,
            message_tracking_log_max_age
        )
        .range(0, 2147483647)
        .export(Export::Always),
        field!(
            S,
            "MessageTrackingLogMaxDirectorySize",
            Kind::ByteSize,
            message_tracking_log_max_directory_size
        )
        .range(1024, 1099511627776)
        .export(Export::Always),
        field!(
            S,
            "MessageTrackingLogMaxFileSize",
            Kind::ByteSize,
            message_tracking_log_max_file_size
        )
        .range(1024, 1099511627776)
        .export(Export::Always),
        // hubgate's own (Exchange kept these in EdgeTransport.exe.config): back pressure, see
        // `transport::pressure`.
        field!(
            S,
            "BackPressureQueueLengthLimit",
            Kind::Unlimited,
            back_pressure_queue_length_limit
        )
        .range(1, 2147483647)
        .export(Export::Always),
        field!(
            S,
            "BackPressureDiskFreeSpaceLimit",
            Kind::ByteSize,
            back_pressure_disk_free_space_limit
        )
        .range(0, 1125899906842624)
        .export(Export::Always),
    ],
    new_extra: &[],
    export_cmdlet: "Set-TransportServer",
    export_first: &[],
    base: S::clone,
    noun: "Transport server",
    name: |s| s.name.clone(),
    unsupported_new: &[],
    unsupported_set: &[
        "InternalDNSServers",
        "ReceiveProtocolLogPath",
        "SendProtocolLogPath",
        "MessageTrackingLogPath",
        "PickupDirectoryPath",
        "ReplayDirectoryPath",
        "ConnectivityLogEnabled",
        "AntispamAgentsEnabled",
    ],
    tabs: &[
        (
            "General",
            &[
                "Name",
                "Fqdn",
                "MessageRetryInterval",
                "MaxConcurrentMailboxDeliveries",
                "MaxConcurrentMailboxSubmissions",
                "MaxConnectionRatePerMinute",
                "MaxConnectionRatePerMinutePerSource",
                "QueueMaxIdleTime",
                "PoisonMessageDetectionEnabled",
                "PoisonThreshold",
                "ExternalDelayDsnEnabled",
                "InternalDelayDsnEnabled",
                "ExternalDNSServers",
                "BackPressureQueueLengthLimit",
                "BackPressureDiskFreeSpaceLimit",
            ],
        ),
        // The console draws this tab in the EMC's units (minutes, days, hours).
        (
            "Limits",
            &[
                "OutboundConnectionFailureRetryInterval",
                "TransientFailureRetryInterval",
                "TransientFailureRetryCount",
                "MessageExpirationTimeout",
                "DelayNotificationTimeout",
                "MaxOutboundConnections",
                "MaxPerDomainOutboundConnections",
            ],
        ),
        (
            "Log Settings",
            &[
                "MessageTrackingLogEnabled",
                "MessageTrackingLogSubjectLoggingEnabled",
                "IntraOrgConnectorProtocolLoggingLevel",
                "ServerStatisticsMaxAge",
                "ReceiveProtocolLogMaxAge",
                "ReceiveProtocolLogMaxDirectorySize",
                "ReceiveProtocolLogMaxFileSize",
                "SendProtocolLogMaxAge",
                "SendProtocolLogMaxDirectorySize",
                "SendProtocolLogMaxFileSize",
                "MessageTrackingLogMaxAge",
                "MessageTrackingLogMaxDirectorySize",
                "MessageTrackingLogMaxFileSize",
            ],
        ),
    ],
};

type C = TransportConfig;

pub static CONFIG: Object<C> = Object {
    props: &[
        field!(
            C,
            "ShadowRedundancyEnabled",
            Kind::Bool,
            shadow_redundancy_enabled
        )
        .export(Export::Always),
        field!(
            C,
            "ShadowHeartbeatTimeoutInterval",
            Kind::TimeSpan,
            shadow_heartbeat_timeout_interval
        )
        .range(1, 86400)
        .export(Export::Always),
        field!(
            C,
            "ShadowHeartbeatRetryCount",
            Kind::Int,
            shadow_heartbeat_retry_count
        )
        .range(1, 15)
        .export(Export::Always),
        field!(
            C,
            "ShadowMessageAutoDiscardInterval",
            Kind::TimeSpan,
            shadow_message_auto_discard_interval
        )
        .range(5, 7776000)
        .export(Export::Always),
        field!(C, "MaxReceiveSize", Kind::ByteSize, max_receive_size)
            .range(0, 2147483647)
            .export(Export::Always),
        field!(C, "MaxSendSize", Kind::ByteSize, max_send_size)
            .range(0, 2147483647)
            .export(Export::Always),
        field!(
            C,
            "MaxRecipientEnvelopeLimit",
            Kind::Unlimited,
            max_recipient_envelope_limit
        )
        .range(0, 2147483647)
        .export(Export::Always),
        field!(
            C,
            "GenerateCopyOfDSNFor",
            Kind::List,
            generate_copy_of_dsn_for
        )
        .export(Export::Always),
        field!(
            C,
            "TLSReceiveDomainSecureList",
            Kind::List,
            tls_receive_domain_secure_list
        )
        .export(Export::Always),
        field!(
            C,
            "TLSSendDomainSecureList",
            Kind::List,
            tls_send_domain_secure_list
        )
        .export(Export::Always),
    ],
    new_extra: &[],
    export_cmdlet: "Set-TransportConfig",
    export_first: &[],
    base: C::clone,
    noun: "Transport configuration",
    name: |_| String::new(),
    unsupported_new: &[],
    unsupported_set: &[
        "MaxDumpsterSizePerDatabase",
        "MaxDumpsterTime",
        "Xexch50Enabled",
        "InternalSMTPServers",
        "JournalingReportNdrTo",
        "ClearCategories",
    ],
    tabs: &[
        (
            "General",
            &["MaxReceiveSize", "MaxSendSize", "MaxRecipientEnvelopeLimit"],
        ),
        ("Message Delivery", &["GenerateCopyOfDSNFor"]),
        (
            "Shadow Redundancy",
            &[
                "ShadowRedundancyEnabled",
                "ShadowHeartbeatTimeoutInterval",
                "ShadowHeartbeatRetryCount",
                "ShadowMessageAutoDiscardInterval",
            ],
        ),
        (
            "Domain Security",
            &["TLSReceiveDomainSecureList", "TLSSendDomainSecureList"],
        ),
    ],
};

/// Get-TransportServer: every server, or those `identity` names (by name or FQDN).
pub async fn get_servers(
    tx: &mut PgConnection,
    identity: Option<&Identity>,
    many: bool,
) -> Result<Vec<S>, OpError> {
    let all = TransportServer::load_all(tx).await?;
    match identity {
        None => Ok(all),
        Some(Identity::Id { shown, .. }) => pick(all, shown, false, |x, eq| eq(&x.name)),
        Some(Identity::Name(id)) => pick(all, id, many, |s, eq| eq(&s.name) || eq(&s.fqdn)),
    }
}

/// Set-TransportServer on the one server `identity` names.
pub async fn set_server(
    tx: &mut PgConnection,
    identity: &Identity,
    values: &Values,
) -> Result<Change<S>, OpError> {
    let before = super::one(get_servers(tx, Some(identity), false).await?);
    let mut after = before.clone();
    SERVER.apply(&mut after, values, false, &Ctx::default())?;
    SERVER.validate(&after)?;
    after.update(tx).await?;
    Ok(Change { before, after })
}

pub async fn get_config(tx: &mut PgConnection) -> Result<C, OpError> {
    super::org_config::get(tx).await
}

pub async fn set_config(tx: &mut PgConnection, values: &Values) -> Result<Change<C>, OpError> {
    super::org_config::set_validated(tx, &CONFIG, values).await
}
