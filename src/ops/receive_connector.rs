//! ReceiveConnector: its property table, its usage presets and New/Get/Set/Remove-ReceiveConnector.

use sqlx::PgConnection;

use super::props::{Ctx, Export, Kind, Object, Prop, Value, Values, Verb};
use super::send_connector::usage;
use super::{Change, Identity, OpError, one, pick};
use crate::field;
use crate::org::bootstrap::server_name_from_fqdn;
use crate::org::{OrgError, ReceiveConnector, TransportServer};

pub const AUTH: &[&str] = &[
    "None",
    "Tls",
    "Integrated",
    "BasicAuth",
    "BasicAuthRequireTLS",
    "ExchangeServer",
    "ExternalAuthoritative",
];
pub const GROUPS: &[&str] = &[
    "None",
    "AnonymousUsers",
    "ExchangeUsers",
    "ExchangeServers",
    "ExchangeLegacyServers",
    "Partners",
    "Custom",
];
pub const USAGE: &[&str] = &["Custom", "Internet", "Internal", "Client", "Partner"];
const LOGGING: &[&str] = &["None", "Verbose"];
const RATE_SOURCE: &[&str] = &["None", "IPAddress", "User", "All"];
const SIZE: &[&str] = &["Enabled", "Disabled", "EnabledWithoutValue"];

type R = ReceiveConnector;

pub static OBJECT: Object<R> = Object {
    props: &[
        Prop::read("Identity", Kind::Identity, |c: &R| Value::Str(c.identity())),
        field!(R, "Name", Kind::Str, name)
            .new_as(Verb::First)
            .export(Export::Always),
        Prop::read("Server", Kind::Str, |c: &R| Value::Str(c.server.clone()))
            .export(Export::Always),
        field!(R, "Bindings", Kind::List, bindings).export(Export::Always),
        field!(R, "RemoteIPRanges", Kind::List, remote_ip_ranges).export(Export::Always),
        field!(R, "Enabled", Kind::Bool, enabled),
        field!(R, "Fqdn", Kind::Str, fqdn).export(Export::Always),
        field!(R, "Banner", Kind::Str, banner),
        field!(R, "Comment", Kind::Str, comment),
        Prop::rw(
            "AuthMechanism",
            Kind::Flags(AUTH),
            |c: &R| Value::List(c.auth_mechanism.clone()),
            set_auth,
        )
        .export(Export::Always),
        Prop::rw(
            "PermissionGroups",
            Kind::Flags(GROUPS),
            |c: &R| Value::List(c.permission_groups.clone()),
            set_groups,
        )
        .export(Export::Always),
        field!(R, "MaxMessageSize", Kind::ByteSize, max_message_size).range(65536, 2147483647),
        field!(R, "MaxHeaderSize", Kind::ByteSize, max_header_size).range(1, 2147483647),
        field!(
            R,
            "MaxRecipientsPerMessage",
            Kind::Int,
            max_recipients_per_message
        )
        .range(1, 512000),
        field!(
            R,
            "MaxInboundConnection",
            Kind::Unlimited,
            max_inbound_connection
        )
        .range(1, 2147483647),
        field!(
            R,
            "MaxInboundConnectionPerSource",
            Kind::Unlimited,
            max_inbound_connection_per_source
        )
        .range(1, 10000),
        field!(
            R,
            "MaxInboundConnectionPercentagePerSource",
            Kind::Int,
            max_inbound_connection_percentage_per_source
        )
        .range(1, 100),
        field!(R, "ConnectionTimeout", Kind::TimeSpan, connection_timeout).range(1, 86400),
        field!(
            R,
            "ConnectionInactivityTimeout",
            Kind::TimeSpan,
            connection_inactivity_timeout
        )
        .range(1, 86400),
        field!(R, "MaxHopCount", Kind::Int, max_hop_count).range(1, 500),
        field!(R, "MaxLocalHopCount", Kind::Int, max_local_hop_count).range(0, 50),
        field!(R, "MaxLogonFailures", Kind::Int, max_logon_failures).range(0, 10),
        field!(R, "MaxProtocolErrors", Kind::Unlimited, max_protocol_errors).range(0, 2147483647),
        field!(R, "MessageRateLimit", Kind::Unlimited, message_rate_limit).range(1, 2147483647),
        field!(
            R,
            "MessageRateSource",
            Kind::Enum(RATE_SOURCE),
            message_rate_source
        ),
        field!(R, "TarpitInterval", Kind::TimeSpan, tarpit_interval).range(0, 600),
        field!(
            R,
            "MaxAcknowledgementDelay",
            Kind::TimeSpan,
            max_acknowledgement_delay
        )
        .range(0, 600),
        field!(
            R,
            "ProtocolLoggingLevel",
            Kind::Enum(LOGGING),
            protocol_logging_level
        ),
        field!(R, "RequireTLS", Kind::Bool, require_tls),
        field!(R, "RequireEHLODomain", Kind::Bool, require_ehlo_domain),
        field!(R, "OrarEnabled", Kind::Bool, orar_enabled),
        field!(R, "EnableAuthGSSAPI", Kind::Bool, enable_auth_gssapi),
        field!(R, "SizeEnabled", Kind::Enum(SIZE), size_enabled),
        field!(R, "DomainSecureEnabled", Kind::Bool, domain_secure_enabled),
        field!(R, "PipeliningEnabled", Kind::Bool, pipelining_enabled),
        field!(
            R,
            "DeliveryStatusNotificationEnabled",
            Kind::Bool,
            dsn_enabled
        ),
        field!(
            R,
            "EnhancedStatusCodesEnabled",
            Kind::Bool,
            enhanced_status_codes_enabled
        ),
        field!(R, "EightBitMimeEnabled", Kind::Bool, eight_bit_mime_enabled),
        field!(R, "BinaryMimeEnabled", Kind::Bool, binary_mime_enabled),
        field!(R, "ChunkingEnabled", Kind::Bool, chunking_enabled),
        field!(R, "SmtpUtf8Enabled", Kind::Bool, smtp_utf8_enabled),
        // hubgate's own: the bindings its server could not listen on (address in use...).
        Prop::read("BindingErrors", Kind::List, |c: &R| {
            Value::List(c.binding_errors.clone())
        }),
    ],
    new_extra: &[
        ("Server", Kind::Str),
        ("Usage", Kind::Enum(USAGE)),
        ("Custom", Kind::Switch),
        ("Internet", Kind::Switch),
        ("Internal", Kind::Switch),
        ("Client", Kind::Switch),
        ("Partner", Kind::Switch),
    ],
    export_cmdlet: "New-ReceiveConnector",
    export_first: &[
        "Name",
        "Server",
        "Bindings",
        "RemoteIPRanges",
        "Fqdn",
        "AuthMechanism",
        "PermissionGroups",
        "Banner",
        "Comment",
        "Enabled",
    ],
    base: |_| ReceiveConnector::new("", "", ""),
    noun: "Receive connector",
    name: |c| c.identity(),
    unsupported_new: UNSUPPORTED,
    unsupported_set: UNSUPPORTED,
    tabs: &[
        (
            "General",
            &[
                "Name",
                "Server",
                "Enabled",
                "ProtocolLoggingLevel",
                "Fqdn",
                "Banner",
                "Comment",
                "MaxMessageSize",
                "BindingErrors",
            ],
        ),
        ("Network", &["Bindings", "RemoteIPRanges"]),
        (
            "Authentication",
            &["AuthMechanism", "RequireTLS", "DomainSecureEnabled"],
        ),
        ("Permission Groups", &["PermissionGroups"]),
    ],
};

const UNSUPPORTED: &[&str] = &[
    "DefaultDomain",
    "LongAddressesEnabled",
    "SuppressXAnonymousTls",
    "ExtendedProtectionPolicy",
    "TlsDomainCapabilities",
    "TlsCertificateName",
    "TransportRole",
];

/// `None` alone means no mechanism; beside others it is dropped.
fn set_auth(c: &mut R, v: Value, _: &Ctx) -> Result<(), OpError> {
    let Value::List(v) = v else {
        return Err(OpError::invalid(
            "AuthMechanism",
            "Give a list of mechanisms.",
        ));
    };
    c.auth_mechanism = if v.iter().all(|m| m == "None") {
        vec!["None".into()]
    } else {
        v.into_iter().filter(|m| m != "None").collect()
    };
    Ok(())
}

fn set_groups(c: &mut R, v: Value, _: &Ctx) -> Result<(), OpError> {
    let Value::List(v) = v else {
        return Err(OpError::invalid(
            "PermissionGroups",
            "Give a list of groups.",
        ));
    };
    if v.iter().any(|g| g == "Custom") {
        return Err(OpError::invalid(
            "PermissionGroups",
            "PermissionGroups Custom cannot be set; it is reported when the ACL matches no predefined group. Use Add-ADPermission instead.",
        ));
    }
    c.permission_groups = v.into_iter().filter(|g| g != "None").collect();
    Ok(())
}

/// A `-Usage` preset (reference §3.1), applied before the explicit parameters.
pub fn preset(c: &mut R, usage: Option<&str>) {
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match usage {
        Some("Custom") => {
            c.permission_groups = vec![];
            c.auth_mechanism = v(&["Tls"]);
        }
        Some("Internet") => {
            c.permission_groups = v(&["AnonymousUsers"]);
            c.auth_mechanism = v(&["Tls"]);
            c.remote_ip_ranges = v(&["0.0.0.0-255.255.255.255"]);
            // Unlike Exchange (30 s): a backup MX whose primary is down would hold every
            // Internet sender, and its connection slot, for the whole delay.
            c.max_acknowledgement_delay = 0;
        }
        Some("Internal") => {
            c.permission_groups = v(&["ExchangeServers", "ExchangeLegacyServers"]);
            c.auth_mechanism = v(&["Tls", "ExchangeServer"]);
            c.bindings = v(&["0.0.0.0:25"]);
            c.size_enabled = "EnabledWithoutValue".into();
            c.max_inbound_connection_percentage_per_source = 100;
        }
        Some("Client") => {
            c.permission_groups = v(&["ExchangeUsers"]);
            c.auth_mechanism = v(&["Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS"]);
            c.bindings = v(&["0.0.0.0:587"]);
        }
        Some("Partner") => {
            c.permission_groups = v(&["Partners"]);
            c.auth_mechanism = v(&["Tls"]);
            c.domain_secure_enabled = true;
        }
        _ => {
            c.permission_groups = v(&["ExchangeUsers", "ExchangeServers", "ExchangeLegacyServers"]);
            c.auth_mechanism = v(&[
                "Tls",
                "Integrated",
                "BasicAuth",
                "BasicAuthRequireTLS",
                "ExchangeServer",
            ]);
        }
    }
}

/// The parameters a usage needs from the admin (its preset does not supply them).
pub fn required(usage: Option<&str>) -> &'static [&'static str] {
    match usage {
        Some("Custom") | Some("Partner") => &["Bindings", "RemoteIPRanges"],
        Some("Internet") => &["Bindings"],
        Some("Internal") | Some("Client") => &["RemoteIPRanges"],
        _ => &["Bindings"],
    }
}

/// `SERVER\Name`, or a bare name on `local` (the shell's own server).
pub async fn get(
    tx: &mut PgConnection,
    local: &str,
    identity: Option<&Identity>,
    many: bool,
) -> Result<Vec<R>, OpError> {
    let all = ReceiveConnector::load_all(tx).await?;
    match identity {
        None => Ok(all),
        Some(Identity::Id { id, shown }) => pick(all, shown, false, |x, _| x.id == *id),
        Some(Identity::Name(s)) => match s.split_once('\\') {
            Some(_) => pick(all, s, many, |c, eq| eq(&c.identity())),
            None => pick(all, s, many, |c, eq| {
                c.server.eq_ignore_ascii_case(local) && eq(&c.name)
            }),
        },
    }
}

/// Get-ReceiveConnector with `-Server`: only that server's connectors.
pub fn on_server(all: Vec<R>, server: Option<&str>) -> Vec<R> {
    all.into_iter()
        .filter(|c| server.is_none_or(|s| c.server.eq_ignore_ascii_case(&server_name_from_fqdn(s))))
        .collect()
}

/// New-ReceiveConnector on `-Server` (else `local`): the usage's preset, then its required
/// parameters, then the values given.
pub async fn new(
    tx: &mut PgConnection,
    local: &str,
    values: &Values,
) -> Result<Change<R>, OpError> {
    let server = match values.str("Server") {
        Some(s) => server_name_from_fqdn(&s),
        None => local.to_string(),
    };
    let ts = TransportServer::load_all(tx)
        .await?
        .into_iter()
        .find(|t| t.name.eq_ignore_ascii_case(&server))
        .ok_or_else(|| OrgError::NoServer(server.clone()))?;
    let before = ReceiveConnector::new(&ts.name, "", &ts.fqdn);
    let mut c = before.clone();
    c.bindings = vec![];
    let usage = usage(values, USAGE)?;
    preset(&mut c, usage.as_deref());
    let missing: Vec<&'static str> = required(usage.as_deref())
        .iter()
        .copied()
        .filter(|n| !values.has(n))
        .collect();
    if !missing.is_empty() {
        return Err(OpError::MissingMandatory(missing));
    }
    OBJECT.apply(&mut c, values, true, &Ctx::default())?;
    OBJECT.validate(&c)?;
    unique_on_server(tx, &c).await?;
    c.insert_in(tx).await?;
    Ok(Change { before, after: c })
}

pub async fn set(
    tx: &mut PgConnection,
    local: &str,
    identity: &Identity,
    values: &Values,
) -> Result<Change<R>, OpError> {
    let before = one(get(tx, local, Some(identity), false).await?);
    let mut after = before.clone();
    OBJECT.apply(&mut after, values, false, &Ctx::default())?;
    OBJECT.validate(&after)?;
    unique_on_server(tx, &after).await?;
    after.update(tx).await?;
    Ok(Change { before, after })
}

/// How the refusal of a Bindings and RemoteIPRanges pair another connector of the server has
/// begins: a form may show it where either of the two can be changed.
pub const CONFLICT: &str =
    "The values that you specified for the Bindings and RemoteIPRanges parameters conflict";

/// Two connectors of one server that listen on the same IP:port for the same remote range would
/// leave the choice between them to chance, so Exchange refuses the second one.
async fn unique_on_server(tx: &mut PgConnection, c: &R) -> Result<(), OpError> {
    let bindings = c.parsed_bindings();
    let ranges = c.parsed_ranges();
    for other in ReceiveConnector::load_all(tx).await? {
        if other.id == c.id || !other.server.eq_ignore_ascii_case(&c.server) {
            continue;
        }
        let binding = bindings
            .iter()
            .find(|b| other.parsed_bindings().contains(b));
        let range = ranges.iter().find(|r| other.parsed_ranges().contains(r));
        if let (Some(b), Some(r)) = (binding, range) {
            return Err(OpError::Invalid {
                param: Some("Bindings"),
                message: format!(
                    "{CONFLICT} with the settings on Receive connector \"{}\": both listen on {b} for {r}. Receive connectors on the same server need a unique combination of Bindings and RemoteIPRanges.",
                    other.identity()
                ),
            });
        }
    }
    Ok(())
}

pub async fn remove(tx: &mut PgConnection, local: &str, identity: &Identity) -> Result<R, OpError> {
    let c = one(get(tx, local, Some(identity), false).await?);
    c.delete(tx).await?;
    Ok(c)
}
