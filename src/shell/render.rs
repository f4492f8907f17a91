//! Writes objects back as the cmdlets that create them: the console's wizard Completion pages
//! and configuration export both use this. Running the output on an empty organisation
//! re-creates an identical object.

use sqlx::PgConnection;

use super::parse::format_timespan;
use super::{Obj, ShellError};
use crate::org::{
    AcceptedDomain, DomainType, ReceiveConnector, Recipient, SendConnector, TransportConfig,
    TransportServer,
};

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
fn ql(v: &[String]) -> String {
    if v.is_empty() {
        return "$null".into();
    }
    v.iter().map(|s| q(s)).collect::<Vec<_>>().join(",")
}
fn bl(b: bool) -> &'static str {
    if b { "$true" } else { "$false" }
}

/// Collects ` -Name value` pairs.
struct Line(String);

impl Line {
    fn new(cmdlet: &str) -> Line {
        Line(cmdlet.to_string())
    }
    fn arg(&mut self, name: &str, value: String) -> &mut Self {
        self.0.push_str(&format!(" -{name} {value}"));
        self
    }
    fn arg_if(&mut self, cond: bool, name: &str, value: String) -> &mut Self {
        if cond {
            self.arg(name, value);
        }
        self
    }
    fn done(&self) -> String {
        format!("{}\n", self.0)
    }
}

fn int_or_unlimited(v: Option<i32>) -> String {
    v.map(|n| n.to_string())
        .unwrap_or_else(|| "unlimited".into())
}
fn bytes_or_unlimited(v: Option<i64>) -> String {
    v.map(|n| n.to_string())
        .unwrap_or_else(|| "unlimited".into())
}

/// The variable a rendered send connector's credential is kept in.
fn cred_var(name: &str) -> String {
    let clean: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("$cred{clean}")
}

/// The cmdlet (or, for a credential, the lines) that creates `o`.
pub fn new_cmdlet(o: &Obj) -> String {
    match o {
        Obj::AcceptedDomain(d) => accepted_domain(d),
        Obj::SendConnector(c) => send_connector(c),
        Obj::ReceiveConnector(c) => receive_connector(c),
        Obj::TransportServer(s) => transport_server(s),
        Obj::TransportConfig(c) => transport_config(c),
        Obj::AdPermission(id, p) => {
            let mut l = Line::new("Add-ADPermission");
            l.arg("Identity", q(id))
                .arg("User", q(&p.principal))
                .arg("ExtendedRights", q(&p.extended_right));
            if p.deny {
                l.0.push_str(" -Deny");
            }
            l.done()
        }
        Obj::Recipient(r, extra) => recipient(r, extra),
        // The password is never printed: Get-Credential asks for it when the line runs.
        Obj::Credential { user, .. } => format!("Get-Credential -UserName {}\n", q(user)),
        // Queues and messages are state, not configuration: nothing creates them from a line.
        Obj::Queue(_) | Obj::Message(_) | Obj::ExportedMessage { .. } | Obj::TrackingEntry(_) => {
            String::new()
        }
    }
}

fn accepted_domain(d: &AcceptedDomain) -> String {
    let mut l = Line::new("New-AcceptedDomain");
    l.arg("Name", q(&d.name))
        .arg("DomainName", q(&d.domain_name))
        .arg("DomainType", d.domain_type.clone())
        .arg_if(
            d.address_book_enabled != (d.kind() == DomainType::Authoritative),
            "AddressBookEnabled",
            bl(d.address_book_enabled).into(),
        );
    if let Some(v) = d.message_expiration_timeout {
        l.arg("MessageExpirationTimeout", format_timespan(v));
    }
    if let Some(v) = d.delay_notification_timeout {
        l.arg("DelayNotificationTimeout", format_timespan(v));
    }
    let mut out = l.done();
    if d.is_default {
        out.push_str(&format!(
            "Set-AcceptedDomain {} -MakeDefault $true\n",
            q(&d.name)
        ));
    }
    out
}

fn send_connector(c: &SendConnector) -> String {
    let base = SendConnector::new("", &[], "");
    let mut out = String::new();
    let mut l = Line::new("New-SendConnector");
    l.arg("Name", q(&c.name))
        .arg("Usage", c.usage.clone())
        .arg("AddressSpaces", ql(&c.address_spaces))
        .arg_if(c.is_scoped_connector, "IsScopedConnector", "$true".into())
        .arg("DNSRoutingEnabled", bl(c.dns_routing_enabled).into())
        .arg_if(!c.smart_hosts.is_empty(), "SmartHosts", ql(&c.smart_hosts))
        .arg_if(
            c.smart_host_auth_mechanism != base.smart_host_auth_mechanism,
            "SmartHostAuthMechanism",
            c.smart_host_auth_mechanism.clone(),
        );
    if let Some(user) = &c.auth_username {
        // An export is read, pasted and kept: the password stays out of it, and Get-Credential
        // asks for it when the script runs.
        out.push_str(&format!(
            "# The password of {} is not exported: Get-Credential asks for it.\n{} = Get-Credential -UserName {}\n",
            q(&c.name),
            cred_var(&c.name),
            q(user),
        ));
        l.arg("AuthenticationCredential", cred_var(&c.name));
    }
    l.arg_if(c.port != base.port, "Port", c.port.to_string())
        .arg_if(c.require_tls, "RequireTLS", "$true".into())
        .arg_if(c.ignore_starttls, "IgnoreSTARTTLS", "$true".into())
        .arg_if(
            c.tls_auth_level.is_some(),
            "TlsAuthLevel",
            c.tls_auth_level.clone().unwrap_or_default(),
        )
        .arg_if(
            c.tls_domain.is_some(),
            "TlsDomain",
            q(c.tls_domain.as_deref().unwrap_or("")),
        )
        .arg_if(
            c.max_message_size != base.max_message_size,
            "MaxMessageSize",
            bytes_or_unlimited(c.max_message_size),
        )
        .arg_if(
            c.connection_inactivity_timeout != base.connection_inactivity_timeout,
            "ConnectionInactivityTimeOut",
            format_timespan(c.connection_inactivity_timeout),
        )
        .arg_if(c.force_helo, "ForceHELO", "$true".into())
        .arg_if(c.fqdn.is_some(), "Fqdn", q(c.fqdn.as_deref().unwrap_or("")))
        .arg_if(
            c.use_external_dns_servers_enabled,
            "UseExternalDNSServersEnabled",
            "$true".into(),
        )
        .arg("SourceTransportServers", ql(&c.source_transport_servers))
        .arg_if(!c.enabled, "Enabled", "$false".into())
        .arg_if(
            c.protocol_logging_level != base.protocol_logging_level,
            "ProtocolLoggingLevel",
            c.protocol_logging_level.clone(),
        )
        .arg_if(
            c.error_policies != base.error_policies,
            "ErrorPolicies",
            c.error_policies.clone(),
        )
        .arg_if(
            c.domain_secure_enabled,
            "DomainSecureEnabled",
            "$true".into(),
        )
        .arg_if(
            c.smtp_max_messages_per_connection != base.smtp_max_messages_per_connection,
            "SmtpMaxMessagesPerConnection",
            c.smtp_max_messages_per_connection.to_string(),
        )
        .arg_if(
            c.comment.is_some(),
            "Comment",
            q(c.comment.as_deref().unwrap_or("")),
        );
    if let Some(v) = c.message_expiration_timeout {
        l.arg("MessageExpirationTimeout", format_timespan(v));
    }
    if let Some(v) = c.delay_notification_timeout {
        l.arg("DelayNotificationTimeout", format_timespan(v));
    }
    out.push_str(&l.done());
    out
}

fn receive_connector(c: &ReceiveConnector) -> String {
    let d = ReceiveConnector::new("", "", "");
    let mut l = Line::new("New-ReceiveConnector");
    let groups = if c.permission_groups.is_empty() {
        "None".to_string()
    } else {
        c.permission_groups.join(",")
    };
    l.arg("Name", q(&c.name))
        .arg("Server", q(&c.server))
        .arg("Bindings", ql(&c.bindings))
        .arg("RemoteIPRanges", ql(&c.remote_ip_ranges))
        .arg("Fqdn", q(&c.fqdn))
        .arg("AuthMechanism", c.auth_mechanism.join(","))
        .arg("PermissionGroups", groups)
        .arg_if(
            c.banner.is_some(),
            "Banner",
            q(c.banner.as_deref().unwrap_or("")),
        )
        .arg_if(
            c.comment.is_some(),
            "Comment",
            q(c.comment.as_deref().unwrap_or("")),
        )
        .arg_if(!c.enabled, "Enabled", "$false".into());
    macro_rules! diff {
        ($field:ident, $name:literal, $fmt:expr) => {
            if c.$field != d.$field {
                l.arg($name, $fmt(&c.$field));
            }
        };
    }
    let num = |v: &i64| v.to_string();
    let int = |v: &i32| v.to_string();
    let span = |v: &i64| format_timespan(*v);
    let unl = |v: &Option<i32>| int_or_unlimited(*v);
    let boolean = |v: &bool| bl(*v).to_string();
    let text = |v: &String| v.clone();
    diff!(max_message_size, "MaxMessageSize", num);
    diff!(max_header_size, "MaxHeaderSize", num);
    diff!(max_recipients_per_message, "MaxRecipientsPerMessage", int);
    diff!(max_inbound_connection, "MaxInboundConnection", unl);
    diff!(
        max_inbound_connection_per_source,
        "MaxInboundConnectionPerSource",
        unl
    );
    diff!(
        max_inbound_connection_percentage_per_source,
        "MaxInboundConnectionPercentagePerSource",
        int
    );
    diff!(connection_timeout, "ConnectionTimeout", span);
    diff!(
        connection_inactivity_timeout,
        "ConnectionInactivityTimeout",
        span
    );
    diff!(max_hop_count, "MaxHopCount", int);
    diff!(max_local_hop_count, "MaxLocalHopCount", int);
    diff!(max_logon_failures, "MaxLogonFailures", int);
    diff!(max_protocol_errors, "MaxProtocolErrors", unl);
    diff!(message_rate_limit, "MessageRateLimit", unl);
    diff!(message_rate_source, "MessageRateSource", text);
    diff!(tarpit_interval, "TarpitInterval", span);
    diff!(max_acknowledgement_delay, "MaxAcknowledgementDelay", span);
    diff!(protocol_logging_level, "ProtocolLoggingLevel", text);
    diff!(require_tls, "RequireTLS", boolean);
    diff!(require_ehlo_domain, "RequireEHLODomain", boolean);
    diff!(orar_enabled, "OrarEnabled", boolean);
    diff!(enable_auth_gssapi, "EnableAuthGSSAPI", boolean);
    diff!(size_enabled, "SizeEnabled", text);
    diff!(domain_secure_enabled, "DomainSecureEnabled", boolean);
    diff!(pipelining_enabled, "PipeliningEnabled", boolean);
    diff!(dsn_enabled, "DeliveryStatusNotificationEnabled", boolean);
    diff!(
        enhanced_status_codes_enabled,
        "EnhancedStatusCodesEnabled",
        boolean
    );
    diff!(eight_bit_mime_enabled, "EightBitMimeEnabled", boolean);
    diff!(binary_mime_enabled, "BinaryMimeEnabled", boolean);
    diff!(chunking_enabled, "ChunkingEnabled", boolean);
    diff!(smtp_utf8_enabled, "SmtpUtf8Enabled", boolean);
    l.done()
}

fn transport_server(s: &TransportServer) -> String {
    let mut l = Line::new("Set-TransportServer");
    l.arg("Identity", q(&s.name))
        .arg(
            "MessageExpirationTimeout",
            format_timespan(s.message_expiration_timeout),
        )
        .arg(
            "DelayNotificationTimeout",
            format_timespan(s.delay_notification_timeout),
        )
        .arg(
            "MessageRetryInterval",
            format_timespan(s.message_retry_interval),
        )
        .arg(
            "TransientFailureRetryCount",
            s.transient_failure_retry_count.to_string(),
        )
        .arg(
            "TransientFailureRetryInterval",
            format_timespan(s.transient_failure_retry_interval),
        )
        .arg(
            "OutboundConnectionFailureRetryInterval",
            format_timespan(s.outbound_connection_failure_retry_interval),
        )
        .arg(
            "MaxOutboundConnections",
            int_or_unlimited(s.max_outbound_connections),
        )
        .arg(
            "MaxPerDomainOutboundConnections",
            int_or_unlimited(s.max_per_domain_outbound_connections),
        )
        .arg(
            "MaxConcurrentMailboxDeliveries",
            s.max_concurrent_mailbox_deliveries.to_string(),
        )
        .arg(
            "MaxConcurrentMailboxSubmissions",
            s.max_concurrent_mailbox_submissions.to_string(),
        )
        .arg(
            "MaxConnectionRatePerMinute",
            s.max_connection_rate_per_minute.to_string(),
        )
        .arg("QueueMaxIdleTime", format_timespan(s.queue_max_idle_time))
        .arg(
            "PoisonMessageDetectionEnabled",
            bl(s.poison_message_detection_enabled).into(),
        )
        .arg("PoisonThreshold", s.poison_threshold.to_string())
        .arg(
            "ExternalDelayDsnEnabled",
            bl(s.external_delay_dsn_enabled).into(),
        )
        .arg(
            "InternalDelayDsnEnabled",
            bl(s.internal_delay_dsn_enabled).into(),
        )
        .arg("ExternalDNSServers", ql(&s.external_dns_servers))
        .arg(
            "MessageTrackingLogEnabled",
            bl(s.message_tracking_log_enabled).into(),
        )
        .arg(
            "MessageTrackingLogSubjectLoggingEnabled",
            bl(s.message_tracking_log_subject_logging_enabled).into(),
        )
        .arg(
            "IntraOrgConnectorProtocolLoggingLevel",
            s.intra_org_connector_protocol_logging_level.clone(),
        );
    l.done()
}

fn transport_config(c: &TransportConfig) -> String {
    let mut l = Line::new("Set-TransportConfig");
    l.arg(
        "ShadowRedundancyEnabled",
        bl(c.shadow_redundancy_enabled).into(),
    )
    .arg(
        "ShadowHeartbeatTimeoutInterval",
        format_timespan(c.shadow_heartbeat_timeout_interval),
    )
    .arg(
        "ShadowHeartbeatRetryCount",
        c.shadow_heartbeat_retry_count.to_string(),
    )
    .arg(
        "ShadowMessageAutoDiscardInterval",
        format_timespan(c.shadow_message_auto_discard_interval),
    )
    .arg("MaxReceiveSize", bytes_or_unlimited(c.max_receive_size))
    .arg("MaxSendSize", bytes_or_unlimited(c.max_send_size))
    .arg(
        "MaxRecipientEnvelopeLimit",
        int_or_unlimited(c.max_recipient_envelope_limit),
    )
    .arg("GenerateCopyOfDSNFor", ql(&c.generate_copy_of_dsn_for))
    .arg(
        "TLSReceiveDomainSecureList",
        ql(&c.tls_receive_domain_secure_list),
    )
    .arg(
        "TLSSendDomainSecureList",
        ql(&c.tls_send_domain_secure_list),
    );
    l.done()
}

fn recipient(r: &Recipient, extra: &[String]) -> String {
    let mut addrs = vec![format!("SMTP:{}", r.primary_smtp_address)];
    addrs.extend(extra.iter().map(|a| format!("smtp:{a}")));
    let mut l;
    if r.recipient_type == "Mailbox" {
        l = Line::new("New-Mailbox");
        l.arg("Name", q(&r.name))
            .arg("PrimarySmtpAddress", q(&r.primary_smtp_address));
    } else {
        l = Line::new("New-MailContact");
        l.arg("Name", q(&r.name)).arg(
            "ExternalEmailAddress",
            q(r.external_email_address.as_deref().unwrap_or("")),
        );
    }
    l.arg_if(!extra.is_empty(), "EmailAddresses", ql(&addrs));
    l.done()
}

/// The whole organisation as a script: objects first, then the ACL entries added by hand.
pub async fn organisation_script(conn: &mut PgConnection) -> Result<String, ShellError> {
    let mut out = String::from("# hubgate organisation export\n");
    for d in AcceptedDomain::load_all_in(conn).await? {
        out.push_str(&accepted_domain(&d));
    }
    for (r, extra) in Recipient::load_all(conn).await? {
        out.push_str(&recipient(&r, &extra));
    }
    out.push_str(&transport_config(&TransportConfig::load_in(conn).await?));
    for s in TransportServer::load_all(conn).await? {
        out.push_str(&transport_server(&s));
    }
    let mut connectors: Vec<(uuid::Uuid, String)> = vec![];
    for c in SendConnector::load_all_in(conn).await? {
        out.push_str(&send_connector(&c));
        connectors.push((c.id, c.name.clone()));
    }
    for c in ReceiveConnector::load_all(conn).await? {
        out.push_str(&receive_connector(&c));
        connectors.push((c.id, c.identity()));
    }
    for (id, identity) in connectors {
        for p in crate::org::rights::load_acl(conn, id).await? {
            if p.permission_group.is_none() {
                out.push_str(&new_cmdlet(&Obj::AdPermission(identity.clone(), p)));
            }
        }
    }
    Ok(out)
}
