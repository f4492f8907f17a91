//! The cmdlets: parameter tables and what each does over `org`.

use sqlx::PgConnection;

use super::bind::{self, Arg, Bound, Param, Ty, at, m, p};
use super::parse::Command;
use super::{Obj, Shell, ShellError, format, queue, render, unenforced};
use crate::org::rights::{self, ExtendedRight, principal};
use crate::org::{
    AcceptedDomain, DomainType, OrgError, ReceiveConnector, Recipient, SendConnector,
    TransportConfig, TransportServer,
};

const AUTH: &[&str] = &[
    "None",
    "Tls",
    "Integrated",
    "BasicAuth",
    "BasicAuthRequireTLS",
    "ExchangeServer",
    "ExternalAuthoritative",
];
const GROUPS: &[&str] = &[
    "None",
    "AnonymousUsers",
    "ExchangeUsers",
    "ExchangeServers",
    "ExchangeLegacyServers",
    "Partners",
    "Custom",
];
const RC_USAGE: &[&str] = &["Custom", "Internet", "Internal", "Client", "Partner"];
const SC_USAGE: &[&str] = &["Custom", "Internal", "Internet", "Partner"];
const SC_AUTH: &[&str] = &[
    "None",
    "BasicAuth",
    "BasicAuthRequireTLS",
    "ExchangeServer",
    "ExternalAuthoritative",
];
const LOGGING: &[&str] = &["None", "Verbose"];
const DOMAIN_TYPES: &[&str] = &["Authoritative", "InternalRelay", "ExternalRelay"];
const RIGHTS: &[&str] = &[
    "ms-Exch-SMTP-Submit",
    "ms-Exch-SMTP-Submit-For-MLS",
    "ms-Exch-SMTP-Accept-Any-Recipient",
    "ms-Exch-SMTP-Accept-Authentication-Flag",
    "ms-Exch-SMTP-Accept-Any-Sender",
    "ms-Exch-SMTP-Accept-Authoritative-Domain-Sender",
    "ms-Exch-Bypass-Anti-Spam",
    "ms-Exch-Bypass-Message-Size-Limit",
    "ms-Exch-SMTP-Send-Exch50",
    "ms-Exch-SMTP-Accept-Exch50",
    "ms-Exch-Accept-Headers-Routing",
    "ms-Exch-Accept-Headers-Forest",
    "ms-Exch-Accept-Headers-Organization",
    "ms-Exch-Send-Headers-Routing",
    "ms-Exch-Send-Headers-Forest",
    "ms-Exch-Send-Headers-Organization",
    "Send-As",
    "ms-Exch-SMTP-Send-XShadow",
    "ms-Exch-SMTP-Accept-XShadow",
];

const ID: Param = at(p("Identity", Ty::Identity), 0);
const ID_M: Param = at(m("Identity", Ty::Identity), 0);

const AD_NEW: &[Param] = &[
    at(m("Name", Ty::Str), 0),
    m("DomainName", Ty::Str),
    p("DomainType", Ty::Enum(DOMAIN_TYPES)),
    p("AddressBookEnabled", Ty::Bool),
    p("MessageExpirationTimeout", Ty::Span),
    p("DelayNotificationTimeout", Ty::Span),
    p("Organization", Ty::Unsupported),
    p("OutboundOnly", Ty::Unsupported),
];
const AD_SET: &[Param] = &[
    ID_M,
    p("Name", Ty::Str),
    p("DomainType", Ty::Enum(DOMAIN_TYPES)),
    p("MakeDefault", Ty::Bool),
    p("AddressBookEnabled", Ty::Bool),
    p("MessageExpirationTimeout", Ty::Span),
    p("DelayNotificationTimeout", Ty::Span),
    p("OutboundOnly", Ty::Unsupported),
    p("PendingRemoval", Ty::Unsupported),
];

macro_rules! rc_params {
    ($($head:expr),*) => {
        &[
            $($head,)*
            p("Bindings", Ty::List),
            p("RemoteIPRanges", Ty::List),
            p("Fqdn", Ty::Str),
            p("Banner", Ty::Str),
            p("Comment", Ty::Str),
            p("AuthMechanism", Ty::EnumList(AUTH)),
            p("PermissionGroups", Ty::EnumList(GROUPS)),
            p("Enabled", Ty::Bool),
            p("MaxMessageSize", Ty::Bytes),
            p("MaxHeaderSize", Ty::Bytes),
            p("MaxRecipientsPerMessage", Ty::Int),
            p("MaxInboundConnection", Ty::Int),
            p("MaxInboundConnectionPerSource", Ty::Int),
            p("MaxInboundConnectionPercentagePerSource", Ty::Int),
            p("ConnectionTimeout", Ty::Span),
            p("ConnectionInactivityTimeout", Ty::Span),
            p("MaxHopCount", Ty::Int),
            p("MaxLocalHopCount", Ty::Int),
            p("MaxLogonFailures", Ty::Int),
            p("MaxProtocolErrors", Ty::Int),
            p("MessageRateLimit", Ty::Int),
            p("MessageRateSource", Ty::Enum(&["None", "IPAddress", "User", "All"])),
            p("TarpitInterval", Ty::Span),
            p("MaxAcknowledgementDelay", Ty::Span),
            p("ProtocolLoggingLevel", Ty::Enum(LOGGING)),
            p("RequireTLS", Ty::Bool),
            p("RequireEHLODomain", Ty::Bool),
            p("OrarEnabled", Ty::Bool),
            p("EnableAuthGSSAPI", Ty::Bool),
            p("SizeEnabled", Ty::Enum(&["Enabled", "Disabled", "EnabledWithoutValue"])),
            p("DomainSecureEnabled", Ty::Bool),
            p("PipeliningEnabled", Ty::Bool),
            p("DeliveryStatusNotificationEnabled", Ty::Bool),
            p("EnhancedStatusCodesEnabled", Ty::Bool),
            p("EightBitMimeEnabled", Ty::Bool),
            p("BinaryMimeEnabled", Ty::Bool),
            p("ChunkingEnabled", Ty::Bool),
            p("SmtpUtf8Enabled", Ty::Bool),
            p("DefaultDomain", Ty::Unsupported),
            p("LongAddressesEnabled", Ty::Unsupported),
            p("SuppressXAnonymousTls", Ty::Unsupported),
            p("ExtendedProtectionPolicy", Ty::Unsupported),
            p("TlsDomainCapabilities", Ty::Unsupported),
            p("TlsCertificateName", Ty::Unsupported),
            p("TransportRole", Ty::Unsupported),
        ]
    };
}
const RC_NEW: &[Param] = rc_params!(
    at(m("Name", Ty::Str), 0),
    p("Server", Ty::Str),
    p("Usage", Ty::Enum(RC_USAGE)),
    p("Custom", Ty::Switch),
    p("Internet", Ty::Switch),
    p("Internal", Ty::Switch),
    p("Client", Ty::Switch),
    p("Partner", Ty::Switch)
);
const RC_SET: &[Param] = rc_params!(ID_M, p("Name", Ty::Str));

macro_rules! sc_params {
    ($($head:expr),*) => {
        &[
            $($head,)*
            p("AddressSpaces", Ty::List),
            p("IsScopedConnector", Ty::Bool),
            p("DNSRoutingEnabled", Ty::Bool),
            p("SmartHosts", Ty::List),
            p("SmartHostAuthMechanism", Ty::Enum(SC_AUTH)),
            p("AuthenticationCredential", Ty::Cred),
            p("Port", Ty::Int),
            p("RequireTLS", Ty::Bool),
            p("IgnoreSTARTTLS", Ty::Bool),
            p("TlsAuthLevel", Ty::Enum(&["EncryptionOnly", "CertificateValidation", "DomainValidation"])),
            p("TlsDomain", Ty::Str),
            p("MaxMessageSize", Ty::Bytes),
            p("ConnectionInactivityTimeOut", Ty::Span),
            p("ForceHELO", Ty::Bool),
            p("Fqdn", Ty::Str),
            p("UseExternalDNSServersEnabled", Ty::Bool),
            p("SourceTransportServers", Ty::List),
            p("Enabled", Ty::Bool),
            p("ProtocolLoggingLevel", Ty::Enum(LOGGING)),
            p("ErrorPolicies", Ty::Enum(&["Default", "DowngradeAuthFailures", "DowngradeDnsFailures"])),
            p("DomainSecureEnabled", Ty::Bool),
            p("SmtpMaxMessagesPerConnection", Ty::Int),
            p("Comment", Ty::Str),
            p("MessageExpirationTimeout", Ty::Span),
            p("DelayNotificationTimeout", Ty::Span),
            p("LinkedReceiveConnector", Ty::Unsupported),
            p("SourceIPAddress", Ty::Unsupported),
            p("RequireOorg", Ty::Unsupported),
            p("TlsCertificateName", Ty::Unsupported),
            p("FrontendProxyEnabled", Ty::Unsupported),
            p("CloudServicesMailEnabled", Ty::Unsupported),
        ]
    };
}
const SC_NEW: &[Param] = sc_params!(
    at(m("Name", Ty::Str), 0),
    p("Usage", Ty::Enum(SC_USAGE)),
    p("Custom", Ty::Switch),
    p("Internal", Ty::Switch),
    p("Internet", Ty::Switch),
    p("Partner", Ty::Switch)
);
const SC_SET: &[Param] = sc_params!(ID_M, p("Name", Ty::Str));

const TS_SET: &[Param] = &[
    ID,
    p("MessageExpirationTimeout", Ty::Span),
    p("DelayNotificationTimeout", Ty::Span),
    p("MessageRetryInterval", Ty::Span),
    p("TransientFailureRetryCount", Ty::Int),
    p("TransientFailureRetryInterval", Ty::Span),
    p("OutboundConnectionFailureRetryInterval", Ty::Span),
    p("MaxOutboundConnections", Ty::Int),
    p("MaxPerDomainOutboundConnections", Ty::Int),
    p("MaxConcurrentMailboxDeliveries", Ty::Int),
    p("MaxConcurrentMailboxSubmissions", Ty::Int),
    p("MaxConnectionRatePerMinute", Ty::Int),
    p("QueueMaxIdleTime", Ty::Span),
    p("PoisonMessageDetectionEnabled", Ty::Bool),
    p("PoisonThreshold", Ty::Int),
    p("ExternalDelayDsnEnabled", Ty::Bool),
    p("InternalDelayDsnEnabled", Ty::Bool),
    p("ExternalDNSServers", Ty::List),
    p("MessageTrackingLogEnabled", Ty::Bool),
    p("MessageTrackingLogSubjectLoggingEnabled", Ty::Bool),
    p("IntraOrgConnectorProtocolLoggingLevel", Ty::Enum(LOGGING)),
    p("InternalDNSServers", Ty::Unsupported),
    p("ReceiveProtocolLogPath", Ty::Unsupported),
    p("SendProtocolLogPath", Ty::Unsupported),
    p("MessageTrackingLogPath", Ty::Unsupported),
    p("PickupDirectoryPath", Ty::Unsupported),
    p("ReplayDirectoryPath", Ty::Unsupported),
    p("ConnectivityLogEnabled", Ty::Unsupported),
    p("AntispamAgentsEnabled", Ty::Unsupported),
];
const TC_SET: &[Param] = &[
    p("ShadowRedundancyEnabled", Ty::Bool),
    p("ShadowHeartbeatTimeoutInterval", Ty::Span),
    p("ShadowHeartbeatRetryCount", Ty::Int),
    p("ShadowMessageAutoDiscardInterval", Ty::Span),
    p("MaxReceiveSize", Ty::Bytes),
    p("MaxSendSize", Ty::Bytes),
    p("MaxRecipientEnvelopeLimit", Ty::Int),
    p("GenerateCopyOfDSNFor", Ty::List),
    p("TLSReceiveDomainSecureList", Ty::List),
    p("TLSSendDomainSecureList", Ty::List),
    p("MaxDumpsterSizePerDatabase", Ty::Unsupported),
    p("MaxDumpsterTime", Ty::Unsupported),
    p("Xexch50Enabled", Ty::Unsupported),
    p("InternalSMTPServers", Ty::Unsupported),
    p("JournalingReportNdrTo", Ty::Unsupported),
    p("ClearCategories", Ty::Unsupported),
];
const PERM: &[Param] = &[
    ID_M,
    at(m("User", Ty::Str), 1),
    p("ExtendedRights", Ty::EnumList(RIGHTS)),
    p("AccessRights", Ty::EnumList(&["ExtendedRight"])),
    p("Deny", Ty::Switch),
    p("InheritanceType", Ty::Unsupported),
    p("Owner", Ty::Unsupported),
    p("Properties", Ty::Unsupported),
    p("ChildObjectTypes", Ty::Unsupported),
    p("InheritedObjectType", Ty::Unsupported),
];
const PERM_GET: &[Param] = &[ID_M, p("User", Ty::Str), p("Owner", Ty::Unsupported)];
const MBX_NEW: &[Param] = &[
    at(m("Name", Ty::Str), 0),
    m("PrimarySmtpAddress", Ty::Str),
    p("EmailAddresses", Ty::List),
    p("UserPrincipalName", Ty::Unsupported),
    p("Password", Ty::Unsupported),
    p("Alias", Ty::Unsupported),
    p("Database", Ty::Unsupported),
    p("OrganizationalUnit", Ty::Unsupported),
    p("DisplayName", Ty::Unsupported),
];
const MBX_SET: &[Param] = &[
    ID_M,
    p("Name", Ty::Str),
    p("PrimarySmtpAddress", Ty::Str),
    p("EmailAddresses", Ty::List),
    p("EmailAddressPolicyEnabled", Ty::Unsupported),
    p("DisplayName", Ty::Unsupported),
];
const CONTACT_NEW: &[Param] = &[
    at(m("Name", Ty::Str), 0),
    m("ExternalEmailAddress", Ty::Str),
    p("EmailAddresses", Ty::List),
    p("Alias", Ty::Unsupported),
    p("OrganizationalUnit", Ty::Unsupported),
    p("DisplayName", Ty::Unsupported),
];
const CONTACT_SET: &[Param] = &[
    ID_M,
    p("Name", Ty::Str),
    p("ExternalEmailAddress", Ty::Str),
    p("EmailAddresses", Ty::List),
    p("DisplayName", Ty::Unsupported),
];
const GET_RC: &[Param] = &[ID, p("Server", Ty::Str)];
const ONLY_ID: &[Param] = &[ID];
const ONLY_ID_M: &[Param] = &[ID_M];
const CROSS_FOREST: &[Param] = &[
    m("Connector", Ty::Str),
    m("User", Ty::Str),
    p("genericMTA", Ty::Switch),
];
const CREDENTIAL: &[Param] = &[
    at(p("UserName", Ty::Str), 0),
    p("Password", Ty::Str),
    p("Message", Ty::Str),
    p("Credential", Ty::Unsupported),
];
const FORMAT: &[Param] = &[at(p("Property", Ty::List), 0)];
const NONE: &[Param] = &[];

/// Every cmdlet the shell knows, with its parameters (for binding and Tab completion).
pub const CMDLETS: &[(&str, &[Param])] = &[
    ("New-AcceptedDomain", AD_NEW),
    ("Get-AcceptedDomain", ONLY_ID),
    ("Set-AcceptedDomain", AD_SET),
    ("Remove-AcceptedDomain", ONLY_ID_M),
    ("New-SendConnector", SC_NEW),
    ("Get-SendConnector", ONLY_ID),
    ("Set-SendConnector", SC_SET),
    ("Remove-SendConnector", ONLY_ID_M),
    ("New-ReceiveConnector", RC_NEW),
    ("Get-ReceiveConnector", GET_RC),
    ("Set-ReceiveConnector", RC_SET),
    ("Remove-ReceiveConnector", ONLY_ID_M),
    ("Get-TransportServer", ONLY_ID),
    ("Set-TransportServer", TS_SET),
    ("Get-TransportConfig", NONE),
    ("Set-TransportConfig", TC_SET),
    ("Add-ADPermission", PERM),
    ("Remove-ADPermission", PERM),
    ("Get-ADPermission", PERM_GET),
    ("Enable-CrossForestConnector", CROSS_FOREST),
    ("Get-Credential", CREDENTIAL),
    ("New-Mailbox", MBX_NEW),
    ("Get-Mailbox", ONLY_ID),
    ("Set-Mailbox", MBX_SET),
    ("Remove-Mailbox", ONLY_ID_M),
    ("New-MailContact", CONTACT_NEW),
    ("Get-MailContact", ONLY_ID),
    ("Set-MailContact", CONTACT_SET),
    ("Remove-MailContact", ONLY_ID_M),
    ("Format-List", FORMAT),
    ("Format-Table", FORMAT),
    ("Export-Cmdlet", NONE),
];

const ALIASES: &[(&str, &str)] = &[("fl", "Format-List"), ("ft", "Format-Table")];

pub fn lookup(name: &str) -> Option<(&'static str, &'static [Param])> {
    let name = ALIASES
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
        .unwrap_or(name);
    CMDLETS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .copied()
        .or_else(|| queue::find(name).map(|c| (c.name, c.params)))
}

/// Every cmdlet name with its parameters, for Tab completion.
pub fn all() -> impl Iterator<Item = (&'static str, &'static [Param])> {
    CMDLETS
        .iter()
        .copied()
        .chain(queue::CMDLETS.iter().map(|c| (c.name, c.params)))
}

pub struct Outcome {
    pub objects: Vec<Obj>,
    pub text: String,
    pub whatif: bool,
}

/// Runs a pipeline inside `tx`. Objects flow from each stage into the next one's -Identity.
pub async fn run_pipeline(
    sh: &mut Shell,
    tx: &mut PgConnection,
    cmds: &[Command],
) -> Result<Outcome, ShellError> {
    let mut out = Outcome {
        objects: vec![],
        text: String::new(),
        whatif: false,
    };
    for (stage, cmd) in cmds.iter().enumerate() {
        let (name, params) =
            lookup(&cmd.name).ok_or_else(|| ShellError::UnknownCmdlet(cmd.name.clone()))?;
        let eval = |v: &super::parse::Value| sh.eval(v);
        if matches!(name, "Format-List" | "Format-Table" | "Export-Cmdlet") {
            let b = bind::bind(name, params, &cmd.elements, None, &eval)?;
            let props = match b.get("Property") {
                Some(Arg::List(l)) => l.clone(),
                _ => vec![],
            };
            let objs = std::mem::take(&mut out.objects);
            out.text.push_str(&match name {
                "Format-List" => format::list(&objs, &props),
                "Format-Table" => format::table(&objs, &props),
                _ => objs
                    .iter()
                    .map(render::new_cmdlet)
                    .collect::<Vec<_>>()
                    .join(""),
            });
            continue;
        }
        if stage == 0 {
            let b = bind::bind(name, params, &cmd.elements, None, &eval)?;
            out.whatif |= b.switch("WhatIf");
            out.objects = run(sh, tx, name, &b, &mut out.text).await?;
        } else {
            let input = std::mem::take(&mut out.objects);
            for obj in &input {
                let b = bind::bind(name, params, &cmd.elements, Some(obj), &|v| sh.eval(v))?;
                out.whatif |= b.switch("WhatIf");
                let produced = run(sh, tx, name, &b, &mut out.text).await?;
                out.objects.extend(produced);
            }
        }
    }
    Ok(out)
}

/// PowerShell-style wildcard match (`*`, `?`), case-insensitive.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b) && go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

/// Picks the objects an identity names; wildcards are allowed only where `many` is.
fn pick<T: Clone>(
    all: Vec<T>,
    id: &str,
    many: bool,
    matches: impl Fn(&T, &dyn Fn(&str) -> bool) -> bool,
) -> Result<Vec<T>, ShellError> {
    let wild = id.contains('*') || id.contains('?');
    let hits: Vec<T> = all
        .into_iter()
        .filter(|o| {
            matches(o, &|s: &str| {
                if wild {
                    glob(id, s)
                } else {
                    s.eq_ignore_ascii_case(id.trim())
                }
            })
        })
        .collect();
    if hits.is_empty() {
        return Err(ShellError::NotFound(id.to_string()));
    }
    if hits.len() > 1 && !many {
        return Err(ShellError::Ambiguous(id.to_string()));
    }
    Ok(hits)
}

fn wrong_input(cmdlet: &str) -> ShellError {
    ShellError::BadPipelineInput(cmdlet.to_string())
}

async fn accepted_domains(
    tx: &mut PgConnection,
    b: &Bound,
    many: bool,
    cmdlet: &str,
) -> Result<Vec<AcceptedDomain>, ShellError> {
    let all = AcceptedDomain::load_all_in(tx).await?;
    match b.get("Identity") {
        None => Ok(all),
        Some(Arg::Obj(Obj::AcceptedDomain(d))) => {
            pick(all, &d.id.to_string(), false, |x, _| x.id == d.id)
        }
        Some(Arg::Str(s)) => pick(all, s, many, |d, eq| eq(&d.name) || eq(&d.domain_name)),
        _ => Err(wrong_input(cmdlet)),
    }
}

async fn send_connectors(
    tx: &mut PgConnection,
    b: &Bound,
    many: bool,
    cmdlet: &str,
) -> Result<Vec<SendConnector>, ShellError> {
    let all = SendConnector::load_all_in(tx).await?;
    match b.get("Identity") {
        None => Ok(all),
        Some(Arg::Obj(Obj::SendConnector(c))) => pick(all, &c.name, false, |x, _| x.id == c.id),
        Some(Arg::Str(s)) => pick(all, s, many, |c, eq| eq(&c.name)),
        _ => Err(wrong_input(cmdlet)),
    }
}

/// `SERVER\Name`, or a bare name on the local server.
async fn receive_connectors(
    sh: &Shell,
    tx: &mut PgConnection,
    id: Option<&Arg>,
    many: bool,
    cmdlet: &str,
) -> Result<Vec<ReceiveConnector>, ShellError> {
    let all = ReceiveConnector::load_all(tx).await?;
    match id {
        None => Ok(all),
        Some(Arg::Obj(Obj::ReceiveConnector(c))) => {
            pick(all, &c.identity(), false, |x, _| x.id == c.id)
        }
        Some(Arg::Str(s)) => match s.split_once('\\') {
            Some(_) => pick(all, s, many, |c, eq| eq(&c.identity())),
            None => pick(all, s, many, |c, eq| {
                c.server.eq_ignore_ascii_case(&sh.server) && eq(&c.name)
            }),
        },
        _ => Err(wrong_input(cmdlet)),
    }
}

async fn recipients(
    tx: &mut PgConnection,
    b: &Bound,
    kind: &str,
    many: bool,
    cmdlet: &str,
) -> Result<Vec<(Recipient, Vec<String>)>, ShellError> {
    let all: Vec<_> = Recipient::load_all(tx)
        .await?
        .into_iter()
        .filter(|(r, _)| r.recipient_type == kind)
        .collect();
    match b.get("Identity") {
        None => Ok(all),
        Some(Arg::Obj(Obj::Recipient(r, _))) => pick(all, &r.name, false, |(x, _), _| x.id == r.id),
        Some(Arg::Str(s)) => pick(all, s, many, |(r, extra), eq| {
            eq(&r.name) || eq(&r.primary_smtp_address) || extra.iter().any(|a| eq(a))
        }),
        _ => Err(wrong_input(cmdlet)),
    }
}

/// The connector an ADPermission cmdlet works on: (id, identity, is_send).
async fn connector_for_acl(
    sh: &Shell,
    tx: &mut PgConnection,
    id: &Arg,
    cmdlet: &str,
) -> Result<(uuid::Uuid, String, bool), ShellError> {
    match id {
        Arg::Obj(Obj::SendConnector(c)) => Ok((c.id, c.name.clone(), true)),
        Arg::Obj(Obj::ReceiveConnector(c)) => Ok((c.id, c.identity(), false)),
        Arg::Str(s) => {
            let sends: Vec<SendConnector> = SendConnector::load_all_in(tx)
                .await?
                .into_iter()
                .filter(|c| c.name.eq_ignore_ascii_case(s.trim()))
                .collect();
            let recvs = match receive_connectors(sh, tx, Some(id), false, cmdlet).await {
                Ok(r) => r,
                Err(ShellError::NotFound(_)) => vec![],
                Err(e) => return Err(e),
            };
            match (sends.as_slice(), recvs.as_slice()) {
                ([c], []) => Ok((c.id, c.name.clone(), true)),
                ([], [c]) => Ok((c.id, c.identity(), false)),
                ([], []) => Err(ShellError::NotFound(s.clone())),
                _ => Err(ShellError::Ambiguous(s.clone())),
            }
        }
        _ => Err(wrong_input(cmdlet)),
    }
}

fn whatif(b: &Bound, text: &mut String, action: String) {
    if b.switch("WhatIf") {
        text.push_str(&format!("What if: {action}.\n"));
    }
}

fn secs_opt(a: &Arg) -> Option<i64> {
    match a {
        Arg::Span(s) => Some(*s),
        _ => None,
    }
}

fn as_i32(name: &str, v: i64) -> Result<i32, ShellError> {
    i32::try_from(v).map_err(|_| {
        OrgError::Invalid(format!(
            "The value {v} of {name} is out of range. It must be between {} and {}.",
            i32::MIN,
            i32::MAX
        ))
        .into()
    })
}

/// Sets a field from a bound parameter when it was given.
macro_rules! set {
    ($b:expr, $name:literal, $field:expr, Bool) => {
        if let Some(Arg::Bool(v)) = $b.get($name) {
            $field = *v;
        }
    };
    ($b:expr, $name:literal, $field:expr, Str) => {
        if let Some(Arg::Str(v)) = $b.get($name) {
            $field = v.clone();
        }
    };
    ($b:expr, $name:literal, $field:expr, OptStr) => {
        match $b.get($name) {
            Some(Arg::Str(v)) if !v.is_empty() => $field = Some(v.clone()),
            Some(Arg::Str(_)) | Some(Arg::Null) => $field = None,
            _ => {}
        }
    };
    ($b:expr, $name:literal, $field:expr, List) => {
        if let Some(Arg::List(v)) = $b.get($name) {
            $field = v.clone();
        }
    };
    ($b:expr, $name:literal, $field:expr, Span) => {
        if let Some(Arg::Span(v)) = $b.get($name) {
            $field = *v;
        }
    };
    ($b:expr, $name:literal, $field:expr, OptSpan) => {
        match $b.get($name) {
            Some(a @ Arg::Span(_)) => $field = secs_opt(a),
            Some(Arg::Null) => $field = None,
            _ => {}
        }
    };
    ($b:expr, $name:literal, $field:expr, Int) => {
        match $b.get($name) {
            Some(Arg::Int(Some(v))) => $field = as_i32($name, *v)?,
            Some(Arg::Int(None)) => {
                return Err(OrgError::Invalid(format!("{} cannot be unlimited.", $name)).into())
            }
            _ => {}
        }
    };
    ($b:expr, $name:literal, $field:expr, OptInt) => {
        match $b.get($name) {
            Some(Arg::Int(Some(v))) => $field = Some(as_i32($name, *v)?),
            Some(Arg::Int(None)) | Some(Arg::Null) => $field = None,
            _ => {}
        }
    };
    ($b:expr, $name:literal, $field:expr, Bytes) => {
        match $b.get($name) {
            Some(Arg::Bytes(Some(v))) => $field = *v,
            Some(Arg::Bytes(None)) => {
                return Err(OrgError::Invalid(format!("{} cannot be unlimited.", $name)).into())
            }
            _ => {}
        }
    };
    ($b:expr, $name:literal, $field:expr, OptBytes) => {
        match $b.get($name) {
            Some(Arg::Bytes(v)) => $field = *v,
            Some(Arg::Null) => $field = None,
            _ => {}
        }
    };
}

fn apply_accepted_domain(d: &mut AcceptedDomain, b: &Bound) -> Result<(), ShellError> {
    set!(b, "Name", d.name, Str);
    set!(b, "DomainType", d.domain_type, Str);
    set!(b, "AddressBookEnabled", d.address_book_enabled, Bool);
    set!(
        b,
        "MessageExpirationTimeout",
        d.message_expiration_timeout,
        OptSpan
    );
    set!(
        b,
        "DelayNotificationTimeout",
        d.delay_notification_timeout,
        OptSpan
    );
    if let Some(Arg::Bool(v)) = b.get("MakeDefault") {
        if !*v && d.is_default {
            return Err(OrgError::Invalid(
                "MakeDefault $false is not allowed: make another accepted domain the default instead."
                    .into(),
            )
            .into());
        }
        d.is_default |= *v;
    }
    Ok(())
}

fn apply_receive_connector(c: &mut ReceiveConnector, b: &Bound) -> Result<(), ShellError> {
    set!(b, "Name", c.name, Str);
    set!(b, "Bindings", c.bindings, List);
    set!(b, "RemoteIPRanges", c.remote_ip_ranges, List);
    set!(b, "Fqdn", c.fqdn, Str);
    set!(b, "Banner", c.banner, OptStr);
    set!(b, "Comment", c.comment, OptStr);
    if let Some(Arg::List(v)) = b.get("AuthMechanism") {
        c.auth_mechanism = if v.iter().all(|m| m == "None") {
            vec!["None".into()]
        } else {
            v.iter().filter(|m| *m != "None").cloned().collect()
        };
    }
    if let Some(Arg::List(v)) = b.get("PermissionGroups") {
        if v.iter().any(|g| g == "Custom") {
            return Err(OrgError::Invalid(
                "PermissionGroups Custom cannot be set; it is reported when the ACL matches no predefined group. Use Add-ADPermission instead."
                    .into(),
            )
            .into());
        }
        c.permission_groups = v.iter().filter(|g| *g != "None").cloned().collect();
    }
    set!(b, "Enabled", c.enabled, Bool);
    set!(b, "MaxMessageSize", c.max_message_size, Bytes);
    set!(b, "MaxHeaderSize", c.max_header_size, Bytes);
    set!(
        b,
        "MaxRecipientsPerMessage",
        c.max_recipients_per_message,
        Int
    );
    set!(b, "MaxInboundConnection", c.max_inbound_connection, OptInt);
    set!(
        b,
        "MaxInboundConnectionPerSource",
        c.max_inbound_connection_per_source,
        OptInt
    );
    set!(
        b,
        "MaxInboundConnectionPercentagePerSource",
        c.max_inbound_connection_percentage_per_source,
        Int
    );
    set!(b, "ConnectionTimeout", c.connection_timeout, Span);
    set!(
        b,
        "ConnectionInactivityTimeout",
        c.connection_inactivity_timeout,
        Span
    );
    set!(b, "MaxHopCount", c.max_hop_count, Int);
    set!(b, "MaxLocalHopCount", c.max_local_hop_count, Int);
    set!(b, "MaxLogonFailures", c.max_logon_failures, Int);
    set!(b, "MaxProtocolErrors", c.max_protocol_errors, OptInt);
    set!(b, "MessageRateLimit", c.message_rate_limit, OptInt);
    set!(b, "MessageRateSource", c.message_rate_source, Str);
    set!(b, "TarpitInterval", c.tarpit_interval, Span);
    set!(
        b,
        "MaxAcknowledgementDelay",
        c.max_acknowledgement_delay,
        Span
    );
    set!(b, "ProtocolLoggingLevel", c.protocol_logging_level, Str);
    set!(b, "RequireTLS", c.require_tls, Bool);
    set!(b, "RequireEHLODomain", c.require_ehlo_domain, Bool);
    set!(b, "OrarEnabled", c.orar_enabled, Bool);
    set!(b, "EnableAuthGSSAPI", c.enable_auth_gssapi, Bool);
    set!(b, "SizeEnabled", c.size_enabled, Str);
    set!(b, "DomainSecureEnabled", c.domain_secure_enabled, Bool);
    set!(b, "PipeliningEnabled", c.pipelining_enabled, Bool);
    set!(b, "DeliveryStatusNotificationEnabled", c.dsn_enabled, Bool);
    set!(
        b,
        "EnhancedStatusCodesEnabled",
        c.enhanced_status_codes_enabled,
        Bool
    );
    set!(b, "EightBitMimeEnabled", c.eight_bit_mime_enabled, Bool);
    set!(b, "BinaryMimeEnabled", c.binary_mime_enabled, Bool);
    set!(b, "ChunkingEnabled", c.chunking_enabled, Bool);
    set!(b, "SmtpUtf8Enabled", c.smtp_utf8_enabled, Bool);
    Ok(())
}

/// The organisation key when this command stores a credential. Fetched before the statement
/// touches any connector row, since sealing passwords left in plaintext locks those rows.
async fn key_for_credential(
    sh: &mut Shell,
    b: &Bound,
) -> Result<Option<crate::org::org_key::OrganizationKey>, ShellError> {
    use crate::org::org_key::OrganizationKey;
    match b.get("AuthenticationCredential") {
        // -WhatIf rolls the statement back: it must not make or check the real key either.
        Some(Arg::Cred(..)) if b.switch("WhatIf") => Ok(Some(
            OrganizationKey::generate("-WhatIf")
                .map_err(OrgError::from)?
                .0,
        )),
        Some(Arg::Cred(..)) => Ok(Some(sh.organization_key().await?)),
        _ => Ok(None),
    }
}

fn apply_send_connector(
    c: &mut SendConnector,
    b: &Bound,
    key: Option<&crate::org::org_key::OrganizationKey>,
) -> Result<(), ShellError> {
    set!(b, "Name", c.name, Str);
    set!(b, "AddressSpaces", c.address_spaces, List);
    set!(b, "IsScopedConnector", c.is_scoped_connector, Bool);
    set!(b, "DNSRoutingEnabled", c.dns_routing_enabled, Bool);
    set!(b, "SmartHosts", c.smart_hosts, List);
    set!(
        b,
        "SmartHostAuthMechanism",
        c.smart_host_auth_mechanism,
        Str
    );
    match b.get("AuthenticationCredential") {
        Some(Arg::Cred(u, pw)) => {
            let key = key.ok_or(OrgError::Key(crate::org::org_key::KeyError::NotGiven))?;
            c.auth_username = Some(u.clone());
            c.set_password(key, pw).map_err(OrgError::from)?;
        }
        Some(Arg::Null) => {
            c.auth_username = None;
            c.auth_password = None;
        }
        _ => {}
    }
    set!(b, "Port", c.port, Int);
    set!(b, "RequireTLS", c.require_tls, Bool);
    set!(b, "IgnoreSTARTTLS", c.ignore_starttls, Bool);
    set!(b, "TlsAuthLevel", c.tls_auth_level, OptStr);
    set!(b, "TlsDomain", c.tls_domain, OptStr);
    set!(b, "MaxMessageSize", c.max_message_size, OptBytes);
    set!(
        b,
        "ConnectionInactivityTimeOut",
        c.connection_inactivity_timeout,
        Span
    );
    set!(b, "ForceHELO", c.force_helo, Bool);
    set!(b, "Fqdn", c.fqdn, OptStr);
    set!(
        b,
        "UseExternalDNSServersEnabled",
        c.use_external_dns_servers_enabled,
        Bool
    );
    set!(
        b,
        "SourceTransportServers",
        c.source_transport_servers,
        List
    );
    set!(b, "Enabled", c.enabled, Bool);
    set!(b, "ProtocolLoggingLevel", c.protocol_logging_level, Str);
    set!(b, "ErrorPolicies", c.error_policies, Str);
    set!(b, "DomainSecureEnabled", c.domain_secure_enabled, Bool);
    set!(
        b,
        "SmtpMaxMessagesPerConnection",
        c.smtp_max_messages_per_connection,
        Int
    );
    set!(b, "Comment", c.comment, OptStr);
    set!(
        b,
        "MessageExpirationTimeout",
        c.message_expiration_timeout,
        OptSpan
    );
    set!(
        b,
        "DelayNotificationTimeout",
        c.delay_notification_timeout,
        OptSpan
    );
    // A smart-host list means smart-host routing unless the admin said otherwise.
    if b.has("SmartHosts") && !b.has("DNSRoutingEnabled") && !c.smart_hosts.is_empty() {
        c.dns_routing_enabled = false;
    }
    // Address spaces are kept in the canonical `SMTP:domain;cost` form.
    c.address_spaces = c
        .address_spaces
        .iter()
        .map(|s| crate::org::send_connector::AddressSpace::parse(s).map(|a| a.to_string()))
        .collect::<Result<_, _>>()?;
    Ok(())
}

fn apply_transport_server(s: &mut TransportServer, b: &Bound) -> Result<(), ShellError> {
    set!(
        b,
        "MessageExpirationTimeout",
        s.message_expiration_timeout,
        Span
    );
    set!(
        b,
        "DelayNotificationTimeout",
        s.delay_notification_timeout,
        Span
    );
    set!(b, "MessageRetryInterval", s.message_retry_interval, Span);
    set!(
        b,
        "TransientFailureRetryCount",
        s.transient_failure_retry_count,
        Int
    );
    set!(
        b,
        "TransientFailureRetryInterval",
        s.transient_failure_retry_interval,
        Span
    );
    set!(
        b,
        "OutboundConnectionFailureRetryInterval",
        s.outbound_connection_failure_retry_interval,
        Span
    );
    set!(
        b,
        "MaxOutboundConnections",
        s.max_outbound_connections,
        OptInt
    );
    set!(
        b,
        "MaxPerDomainOutboundConnections",
        s.max_per_domain_outbound_connections,
        OptInt
    );
    set!(
        b,
        "MaxConcurrentMailboxDeliveries",
        s.max_concurrent_mailbox_deliveries,
        Int
    );
    set!(
        b,
        "MaxConcurrentMailboxSubmissions",
        s.max_concurrent_mailbox_submissions,
        Int
    );
    set!(
        b,
        "MaxConnectionRatePerMinute",
        s.max_connection_rate_per_minute,
        Int
    );
    set!(b, "QueueMaxIdleTime", s.queue_max_idle_time, Span);
    set!(
        b,
        "PoisonMessageDetectionEnabled",
        s.poison_message_detection_enabled,
        Bool
    );
    set!(b, "PoisonThreshold", s.poison_threshold, Int);
    set!(
        b,
        "ExternalDelayDsnEnabled",
        s.external_delay_dsn_enabled,
        Bool
    );
    set!(
        b,
        "InternalDelayDsnEnabled",
        s.internal_delay_dsn_enabled,
        Bool
    );
    set!(b, "ExternalDNSServers", s.external_dns_servers, List);
    set!(
        b,
        "MessageTrackingLogEnabled",
        s.message_tracking_log_enabled,
        Bool
    );
    set!(
        b,
        "MessageTrackingLogSubjectLoggingEnabled",
        s.message_tracking_log_subject_logging_enabled,
        Bool
    );
    set!(
        b,
        "IntraOrgConnectorProtocolLoggingLevel",
        s.intra_org_connector_protocol_logging_level,
        Str
    );
    Ok(())
}

fn apply_transport_config(c: &mut TransportConfig, b: &Bound) -> Result<(), ShellError> {
    set!(
        b,
        "ShadowRedundancyEnabled",
        c.shadow_redundancy_enabled,
        Bool
    );
    set!(
        b,
        "ShadowHeartbeatTimeoutInterval",
        c.shadow_heartbeat_timeout_interval,
        Span
    );
    set!(
        b,
        "ShadowHeartbeatRetryCount",
        c.shadow_heartbeat_retry_count,
        Int
    );
    set!(
        b,
        "ShadowMessageAutoDiscardInterval",
        c.shadow_message_auto_discard_interval,
        Span
    );
    set!(b, "MaxReceiveSize", c.max_receive_size, OptBytes);
    set!(b, "MaxSendSize", c.max_send_size, OptBytes);
    set!(
        b,
        "MaxRecipientEnvelopeLimit",
        c.max_recipient_envelope_limit,
        OptInt
    );
    set!(b, "GenerateCopyOfDSNFor", c.generate_copy_of_dsn_for, List);
    set!(
        b,
        "TLSReceiveDomainSecureList",
        c.tls_receive_domain_secure_list,
        List
    );
    set!(
        b,
        "TLSSendDomainSecureList",
        c.tls_send_domain_secure_list,
        List
    );
    Ok(())
}

/// `-EmailAddresses` as Exchange takes it: `SMTP:` marks the primary, `smtp:` or nothing a proxy.
fn email_addresses(r: &mut Recipient, extra: &mut Vec<String>, list: &[String]) {
    extra.clear();
    for a in list {
        if let Some(primary) = a.strip_prefix("SMTP:") {
            r.primary_smtp_address = primary.to_string();
        } else {
            let plain = a
                .strip_prefix("smtp:")
                .or_else(|| a.strip_prefix("Smtp:"))
                .unwrap_or(a);
            extra.push(plain.to_string());
        }
    }
    let primary = r.primary_smtp_address.to_ascii_lowercase();
    extra.retain(|a| a.to_ascii_lowercase() != primary);
}

fn apply_recipient(
    r: &mut Recipient,
    extra: &mut Vec<String>,
    b: &Bound,
) -> Result<(), ShellError> {
    set!(b, "Name", r.name, Str);
    if let Some(Arg::List(l)) = b.get("EmailAddresses") {
        email_addresses(r, extra, l);
    }
    if let Some(Arg::Str(p)) = b.get("PrimarySmtpAddress") {
        let old = std::mem::replace(&mut r.primary_smtp_address, p.clone());
        if !old.eq_ignore_ascii_case(p) && !extra.iter().any(|a| a.eq_ignore_ascii_case(&old)) {
            extra.push(old);
        }
        extra.retain(|a| !a.eq_ignore_ascii_case(p));
    }
    if let Some(Arg::Str(e)) = b.get("ExternalEmailAddress") {
        let e = e
            .strip_prefix("SMTP:")
            .or_else(|| e.strip_prefix("smtp:"))
            .unwrap_or(e);
        // The external address is also the primary one unless -EmailAddresses named a primary.
        if r.external_email_address.as_deref() == Some(r.primary_smtp_address.as_str())
            || r.primary_smtp_address.is_empty()
        {
            r.primary_smtp_address = e.to_string();
        }
        r.external_email_address = Some(e.to_string());
    }
    Ok(())
}

/// Applies a receive connector's `-Usage` preset (reference §3.1) before explicit parameters.
fn receive_usage_preset(c: &mut ReceiveConnector, usage: Option<&str>) {
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

/// `-Usage X` or one of the `-Internet`-style switches.
fn usage_of(b: &Bound, values: &[&str]) -> Result<Option<String>, ShellError> {
    let mut found = b.str("Usage");
    for v in values {
        if b.switch(v) {
            if found.as_deref().is_some_and(|f| f != *v) {
                return Err(OrgError::Invalid(
                    "Parameter set cannot be resolved using the specified named parameters: give one usage only.".into(),
                )
                .into());
            }
            found = Some(v.to_string());
        }
    }
    Ok(found)
}

fn rights_of(b: &Bound) -> Result<Vec<ExtendedRight>, ShellError> {
    match b.get("ExtendedRights") {
        Some(Arg::List(l)) if !l.is_empty() => {
            Ok(l.iter().filter_map(|r| ExtendedRight::parse(r)).collect())
        }
        _ => Err(OrgError::Invalid(
            "hubgate connector ACLs hold extended rights only: give -ExtendedRights.".into(),
        )
        .into()),
    }
}

async fn acl_objects(
    tx: &mut PgConnection,
    id: uuid::Uuid,
    identity: &str,
    user: Option<&str>,
) -> Result<Vec<Obj>, ShellError> {
    Ok(rights::load_acl(tx, id)
        .await?
        .into_iter()
        .filter(|e| {
            user.is_none_or(|u| principal::same(&rights::resolve_principal(u), &e.principal))
        })
        .map(|e| Obj::AdPermission(identity.to_string(), e))
        .collect())
}

async fn run(
    sh: &mut Shell,
    tx: &mut PgConnection,
    name: &str,
    b: &Bound,
    text: &mut String,
) -> Result<Vec<Obj>, ShellError> {
    match name {
        "Get-AcceptedDomain" => Ok(accepted_domains(tx, b, true, name)
            .await?
            .into_iter()
            .map(Obj::AcceptedDomain)
            .collect()),
        "New-AcceptedDomain" => {
            let domain_type = b
                .str("DomainType")
                .unwrap_or_else(|| "Authoritative".into());
            let mut d = AcceptedDomain::new(
                "",
                &b.str("DomainName").unwrap_or_default(),
                DomainType::parse(&domain_type).unwrap_or(DomainType::Authoritative),
            );
            apply_accepted_domain(&mut d, b)?;
            whatif(b, text, format!("Creating Accepted Domain \"{}\"", d.name));
            d.insert_in(tx).await?;
            // Read back: the first accepted domain becomes the default as it is saved.
            let saved = AcceptedDomain::load_all_in(tx).await?;
            Ok(saved
                .into_iter()
                .filter(|x| x.id == d.id)
                .map(Obj::AcceptedDomain)
                .collect())
        }
        "Set-AcceptedDomain" => {
            for mut d in accepted_domains(tx, b, false, name).await? {
                whatif(b, text, format!("Setting Accepted Domain \"{}\"", d.name));
                apply_accepted_domain(&mut d, b)?;
                d.update(tx).await?;
            }
            Ok(vec![])
        }
        "Remove-AcceptedDomain" => {
            for d in accepted_domains(tx, b, false, name).await? {
                whatif(b, text, format!("Removing Accepted Domain \"{}\"", d.name));
                d.delete(tx).await?;
            }
            Ok(vec![])
        }
        "Get-SendConnector" => Ok(send_connectors(tx, b, true, name)
            .await?
            .into_iter()
            .map(Obj::SendConnector)
            .collect()),
        "New-SendConnector" => {
            let key = key_for_credential(sh, b).await?;
            let mut c = SendConnector::new("", &[], &sh.server);
            let fresh = Obj::SendConnector(c.clone());
            c.usage = usage_of(b, SC_USAGE)?.unwrap_or_else(|| "Custom".into());
            apply_send_connector(&mut c, b, key.as_ref())?;
            whatif(b, text, format!("Creating Send connector \"{}\"", c.name));
            unenforced::warn(text, b, &fresh, &Obj::SendConnector(c.clone()));
            c.insert_in(tx).await?;
            Ok(vec![Obj::SendConnector(c)])
        }
        "Set-SendConnector" => {
            let key = key_for_credential(sh, b).await?;
            for mut c in send_connectors(tx, b, false, name).await? {
                whatif(b, text, format!("Setting Send connector \"{}\"", c.name));
                let before = Obj::SendConnector(c.clone());
                apply_send_connector(&mut c, b, key.as_ref())?;
                unenforced::warn(text, b, &before, &Obj::SendConnector(c.clone()));
                c.update(tx).await?;
            }
            Ok(vec![])
        }
        "Remove-SendConnector" => {
            for c in send_connectors(tx, b, false, name).await? {
                whatif(b, text, format!("Removing Send connector \"{}\"", c.name));
                c.delete(tx).await?;
            }
            Ok(vec![])
        }
        "Get-ReceiveConnector" => {
            let server = b.str("Server");
            Ok(receive_connectors(sh, tx, b.get("Identity"), true, name)
                .await?
                .into_iter()
                .filter(|c| {
                    server.as_deref().is_none_or(|s| {
                        c.server
                            .eq_ignore_ascii_case(&crate::org::bootstrap::server_name_from_fqdn(s))
                    })
                })
                .map(Obj::ReceiveConnector)
                .collect())
        }
        "New-ReceiveConnector" => {
            let server = match b.str("Server") {
                Some(s) => crate::org::bootstrap::server_name_from_fqdn(&s),
                None => sh.server.clone(),
            };
            let ts = TransportServer::load_all(tx)
                .await?
                .into_iter()
                .find(|t| t.name.eq_ignore_ascii_case(&server))
                .ok_or_else(|| OrgError::NoServer(server.clone()))?;
            let mut c = ReceiveConnector::new(&ts.name, "", &ts.fqdn);
            let fresh = Obj::ReceiveConnector(c.clone());
            c.bindings = vec![];
            let usage = usage_of(b, RC_USAGE)?;
            receive_usage_preset(&mut c, usage.as_deref());
            let needs: &[&str] = match usage.as_deref() {
                Some("Custom") | Some("Partner") => &["Bindings", "RemoteIPRanges"],
                Some("Internet") => &["Bindings"],
                Some("Internal") | Some("Client") => &["RemoteIPRanges"],
                _ => &["Bindings"],
            };
            let missing: Vec<&str> = needs.iter().copied().filter(|n| !b.has(n)).collect();
            if !missing.is_empty() {
                return Err(ShellError::MissingMandatory(missing.join(", ")));
            }
            apply_receive_connector(&mut c, b)?;
            whatif(
                b,
                text,
                format!("Creating Receive connector \"{}\"", c.identity()),
            );
            // A preset (-Partner turns DomainSecureEnabled on by itself) warns too: that is when
            // an admin most needs to hear it.
            unenforced::warn(text, b, &fresh, &Obj::ReceiveConnector(c.clone()));
            c.insert_in(tx).await?;
            Ok(vec![Obj::ReceiveConnector(c)])
        }
        "Set-ReceiveConnector" => {
            for mut c in receive_connectors(sh, tx, b.get("Identity"), false, name).await? {
                whatif(
                    b,
                    text,
                    format!("Setting Receive connector \"{}\"", c.identity()),
                );
                let before = Obj::ReceiveConnector(c.clone());
                apply_receive_connector(&mut c, b)?;
                unenforced::warn(text, b, &before, &Obj::ReceiveConnector(c.clone()));
                c.update(tx).await?;
            }
            Ok(vec![])
        }
        "Remove-ReceiveConnector" => {
            for c in receive_connectors(sh, tx, b.get("Identity"), false, name).await? {
                whatif(
                    b,
                    text,
                    format!("Removing Receive connector \"{}\"", c.identity()),
                );
                c.delete(tx).await?;
            }
            Ok(vec![])
        }
        "Get-TransportServer" | "Set-TransportServer" => {
            let all = TransportServer::load_all(tx).await?;
            let servers = match b.get("Identity") {
                None if name == "Get-TransportServer" => all,
                None => pick(all, &sh.server.clone(), false, |s, eq| eq(&s.name))?,
                Some(Arg::Obj(Obj::TransportServer(s))) => {
                    pick(all, &s.name, false, |x, eq| eq(&x.name))?
                }
                Some(Arg::Str(id)) => pick(all, id, name == "Get-TransportServer", |s, eq| {
                    eq(&s.name) || eq(&s.fqdn)
                })?,
                _ => return Err(wrong_input(name)),
            };
            if name == "Get-TransportServer" {
                return Ok(servers.into_iter().map(Obj::TransportServer).collect());
            }
            for mut s in servers {
                whatif(b, text, format!("Setting Transport server \"{}\"", s.name));
                let before = Obj::TransportServer(s.clone());
                apply_transport_server(&mut s, b)?;
                unenforced::warn(text, b, &before, &Obj::TransportServer(s.clone()));
                s.update(tx).await?;
            }
            Ok(vec![])
        }
        "Get-TransportConfig" => Ok(vec![Obj::TransportConfig(
            TransportConfig::load_in(tx).await?,
        )]),
        "Set-TransportConfig" => {
            let mut c = TransportConfig::load_in(tx).await?;
            whatif(b, text, "Setting Transport configuration".into());
            let before = Obj::TransportConfig(c.clone());
            apply_transport_config(&mut c, b)?;
            unenforced::warn(text, b, &before, &Obj::TransportConfig(c.clone()));
            c.update(tx).await?;
            Ok(vec![])
        }
        "Add-ADPermission" | "Remove-ADPermission" => {
            let id = b.get("Identity").ok_or_else(|| wrong_input(name))?;
            let (cid, identity, is_send) = connector_for_acl(sh, tx, id, name).await?;
            let user = rights::resolve_principal(&b.str("User").unwrap_or_default());
            let deny = b.switch("Deny");
            if is_send && name == "Add-ADPermission" {
                unenforced::warn_send_connector_permission(text);
            }
            let mut out = vec![];
            for r in rights_of(b)? {
                if name == "Add-ADPermission" {
                    whatif(
                        b,
                        text,
                        format!(
                            "Adding Active Directory permission \"{r}\" for \"{user}\" on \"{identity}\""
                        ),
                    );
                    rights::add_permission(tx, cid, &user, r, deny).await?;
                    out.push(Obj::AdPermission(
                        identity.clone(),
                        crate::org::Permission {
                            connector_id: cid,
                            principal: user.clone(),
                            extended_right: r.ad_name().into(),
                            deny,
                            permission_group: None,
                        },
                    ));
                } else {
                    whatif(
                        b,
                        text,
                        format!(
                            "Removing Active Directory permission \"{r}\" for \"{user}\" on \"{identity}\""
                        ),
                    );
                    if rights::remove_permission(tx, cid, &user, r, deny).await? == 0 {
                        return Err(OrgError::Invalid(format!(
                            "The access control entry \"{r}\" for \"{user}\" on \"{identity}\" doesn't exist."
                        ))
                        .into());
                    }
                }
            }
            Ok(out)
        }
        "Get-ADPermission" => {
            let id = b.get("Identity").ok_or_else(|| wrong_input(name))?;
            let (cid, identity, _) = connector_for_acl(sh, tx, id, name).await?;
            acl_objects(tx, cid, &identity, b.str("User").as_deref()).await
        }
        "Enable-CrossForestConnector" => {
            let connector = b.str("Connector").unwrap_or_default();
            let c = send_connectors(
                tx,
                &Bound {
                    args: vec![("Identity", Arg::Str(connector))],
                },
                false,
                name,
            )
            .await?
            .remove(0);
            let user = rights::resolve_principal(&b.str("User").unwrap_or_default());
            // The 2007 script grants the same set with or without -genericMTA; the switch only
            // told it the far side was not Exchange 2007.
            let grants = [
                ExtendedRight::SendRoutingHeaders,
                ExtendedRight::SendForestHeaders,
                ExtendedRight::SendOrganizationHeaders,
                ExtendedRight::SendExch50,
            ];
            whatif(
                b,
                text,
                format!(
                    "Granting cross-forest send rights to \"{user}\" on \"{}\"",
                    c.name
                ),
            );
            for r in grants {
                rights::add_permission(tx, c.id, &user, r, false).await?;
            }
            acl_objects(tx, c.id, &c.name, Some(&user)).await
        }
        "Get-Credential" => {
            let (user, password) = match (b.str("UserName"), b.str("Password")) {
                (Some(u), Some(p)) => (u, p),
                (u, _) => sh.read_credential(u)?,
            };
            Ok(vec![Obj::Credential { user, password }])
        }
        "Get-Mailbox" | "Get-MailContact" => {
            let kind = if name == "Get-Mailbox" {
                "Mailbox"
            } else {
                "MailContact"
            };
            Ok(recipients(tx, b, kind, true, name)
                .await?
                .into_iter()
                .map(|(r, e)| Obj::Recipient(r, e))
                .collect())
        }
        "New-Mailbox" | "New-MailContact" => {
            let mut r = if name == "New-Mailbox" {
                Recipient::mailbox("", &b.str("PrimarySmtpAddress").unwrap_or_default())
            } else {
                Recipient::mail_contact("", "")
            };
            r.external_email_address = None;
            let mut extra = vec![];
            apply_recipient(&mut r, &mut extra, b)?;
            whatif(
                b,
                text,
                format!("Creating {} \"{}\"", r.recipient_type, r.name),
            );
            r.insert_in(tx, &extra).await?;
            Ok(vec![Obj::Recipient(r, extra)])
        }
        "Set-Mailbox" | "Set-MailContact" | "Remove-Mailbox" | "Remove-MailContact" => {
            let kind = if name.ends_with("Mailbox") {
                "Mailbox"
            } else {
                "MailContact"
            };
            for (mut r, mut extra) in recipients(tx, b, kind, false, name).await? {
                if name.starts_with("Set") {
                    whatif(b, text, format!("Setting {kind} \"{}\"", r.name));
                    apply_recipient(&mut r, &mut extra, b)?;
                    r.update(tx, &extra).await?;
                } else {
                    whatif(b, text, format!("Removing {kind} \"{}\"", r.name));
                    r.delete(tx).await?;
                }
            }
            Ok(vec![])
        }
        other => match queue::find(other) {
            Some(c) => queue::run(sh, tx, c, b, text).await,
            None => Err(ShellError::UnknownCmdlet(other.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_lookup() {
        assert!(glob("*Forest", "Cross-Forest"));
        assert!(glob("hub1\\def*", "HUB1\\Default HUB1"));
        assert!(!glob("Cross", "Cross-Forest"));
        assert_eq!(lookup("fl").unwrap().0, "Format-List");
        assert_eq!(lookup("new-sendconnector").unwrap().0, "New-SendConnector");
        assert_eq!(lookup("get-queue").unwrap().0, "Get-Queue");
        assert!(lookup("Get-MailboxDatabase").is_none());
    }

    #[test]
    fn every_parameter_table_is_unambiguous() {
        for (name, params) in all() {
            let mut seen = std::collections::HashSet::new();
            for p in params.iter().chain(bind::COMMON) {
                assert!(
                    seen.insert(p.name.to_ascii_lowercase()),
                    "{name}: {}",
                    p.name
                );
            }
        }
    }
}
