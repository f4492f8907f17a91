//! SendConnector: its property table and New/Get/Set/Remove-SendConnector.

use sqlx::PgConnection;

use super::props::{Ctx, Export, Kind, Object, Prop, Value, Values, Verb};
use super::{Change, Identity, OpError, one, resolve};
use crate::field;
use crate::org::org_key::{KeyError, OrganizationKey};
use crate::org::send_connector::AddressSpace;
use crate::org::{OrgError, SendConnector};

pub const USAGE: &[&str] = &["Custom", "Internal", "Internet", "Partner"];
pub const AUTH: &[&str] = &[
    "None",
    "BasicAuth",
    "BasicAuthRequireTLS",
    "ExchangeServer",
    "ExternalAuthoritative",
];
pub const LOGGING: &[&str] = &["None", "Verbose"];
const TLS_AUTH_LEVEL: &[&str] = &[
    "EncryptionOnly",
    "CertificateValidation",
    "DomainValidation",
];
const ERROR_POLICIES: &[&str] = &["Default", "DowngradeAuthFailures", "DowngradeDnsFailures"];

type C = SendConnector;

pub static OBJECT: Object<C> = Object {
    props: &[
        Prop::read("Identity", Kind::Identity, |c: &C| {
            Value::Str(c.name.clone())
        }),
        field!(C, "Name", Kind::Str, name)
            .new_as(Verb::First)
            .export(Export::Always),
        field!(C, "AddressSpaces", Kind::List, address_spaces).export(Export::Always),
        field!(C, "Enabled", Kind::Bool, enabled),
        field!(C, "Usage", Kind::Enum(USAGE), usage)
            .set_as(Verb::No)
            .export(Export::Always),
        field!(C, "IsScopedConnector", Kind::Bool, is_scoped_connector),
        field!(C, "DNSRoutingEnabled", Kind::Bool, dns_routing_enabled).export(Export::Always),
        field!(C, "SmartHosts", Kind::List, smart_hosts),
        field!(
            C,
            "SmartHostAuthMechanism",
            Kind::Enum(AUTH),
            smart_host_auth_mechanism
        ),
        Prop::rw(
            "AuthenticationCredential",
            Kind::Credential,
            |c: &C| {
                c.auth_username
                    .clone()
                    .map(Value::Str)
                    .unwrap_or(Value::Null)
            },
            set_credential,
        )
        .export(Export::Credential),
        field!(C, "Port", Kind::Int, port).range(0, 65535),
        field!(C, "RequireTLS", Kind::Bool, require_tls),
        field!(C, "IgnoreSTARTTLS", Kind::Bool, ignore_starttls),
        field!(
            C,
            "TlsAuthLevel",
            Kind::Enum(TLS_AUTH_LEVEL),
            tls_auth_level
        ),
        field!(C, "TlsDomain", Kind::Str, tls_domain),
        field!(C, "MaxMessageSize", Kind::ByteSize, max_message_size).range(0, 2147483647),
        field!(
            C,
            "ConnectionInactivityTimeOut",
            Kind::TimeSpan,
            connection_inactivity_timeout
        )
        .range(1, 86400),
        field!(C, "ForceHELO", Kind::Bool, force_helo),
        field!(C, "Fqdn", Kind::Str, fqdn),
        field!(
            C,
            "UseExternalDNSServersEnabled",
            Kind::Bool,
            use_external_dns_servers_enabled
        ),
        field!(
            C,
            "SourceTransportServers",
            Kind::List,
            source_transport_servers
        )
        .export(Export::Always),
        field!(
            C,
            "ProtocolLoggingLevel",
            Kind::Enum(LOGGING),
            protocol_logging_level
        ),
        field!(
            C,
            "ErrorPolicies",
            Kind::Enum(ERROR_POLICIES),
            error_policies
        ),
        field!(C, "DomainSecureEnabled", Kind::Bool, domain_secure_enabled),
        field!(
            C,
            "SmtpMaxMessagesPerConnection",
            Kind::Int,
            smtp_max_messages_per_connection
        )
        .range(1, 2147483647),
        field!(C, "Comment", Kind::Str, comment),
        field!(
            C,
            "MessageExpirationTimeout",
            Kind::TimeSpan,
            message_expiration_timeout
        )
        .range(5, 7776000),
        field!(
            C,
            "DelayNotificationTimeout",
            Kind::TimeSpan,
            delay_notification_timeout
        )
        .range(1, 2592000),
    ],
    new_extra: &[
        ("Custom", Kind::Switch),
        ("Internal", Kind::Switch),
        ("Internet", Kind::Switch),
        ("Partner", Kind::Switch),
    ],
    export_cmdlet: "New-SendConnector",
    export_first: &["Name", "Usage"],
    base: |_| SendConnector::new("", &[], ""),
    noun: "Send connector",
    name: |c| c.name.clone(),
    unsupported_new: UNSUPPORTED,
    unsupported_set: UNSUPPORTED,
    tabs: &[
        (
            "General",
            &[
                "Name",
                "Usage",
                "Enabled",
                "ProtocolLoggingLevel",
                "Fqdn",
                "MaxMessageSize",
                "Comment",
                "ForceHELO",
                "ConnectionInactivityTimeOut",
                "SmtpMaxMessagesPerConnection",
                "ErrorPolicies",
                "MessageExpirationTimeout",
                "DelayNotificationTimeout",
            ],
        ),
        ("Address Space", &["AddressSpaces", "IsScopedConnector"]),
        (
            "Network",
            &[
                "DNSRoutingEnabled",
                "UseExternalDNSServersEnabled",
                "SmartHosts",
                "SmartHostAuthMechanism",
                "AuthenticationCredential",
                "Port",
                "RequireTLS",
                "IgnoreSTARTTLS",
                "TlsAuthLevel",
                "TlsDomain",
                "DomainSecureEnabled",
            ],
        ),
        ("Source Server", &["SourceTransportServers"]),
    ],
};

const UNSUPPORTED: &[&str] = &[
    "LinkedReceiveConnector",
    "SourceIPAddress",
    "RequireOorg",
    "TlsCertificateName",
    "FrontendProxyEnabled",
    "CloudServicesMailEnabled",
];

/// The password is sealed with the organisation key as it is set; it is never stored in clear.
fn set_credential(c: &mut C, v: Value, ctx: &Ctx) -> Result<(), OpError> {
    match v {
        Value::Cred { user, password } => {
            // A credential the smart host could never accept is refused now, not at delivery.
            if user.trim().is_empty() {
                return Err(OpError::invalid(
                    "AuthenticationCredential",
                    "The credential's user name must not be empty.",
                ));
            }
            if password.is_empty() {
                return Err(OpError::invalid(
                    "AuthenticationCredential",
                    "The credential's password must not be empty.",
                ));
            }
            let key = ctx.key.ok_or(OrgError::Key(KeyError::NotGiven))?;
            c.auth_username = Some(user);
            c.set_password(key, &password).map_err(OrgError::from)?;
        }
        Value::Null => {
            c.auth_username = None;
            c.auth_password = None;
        }
        _ => {
            return Err(OpError::invalid(
                "AuthenticationCredential",
                "Use a credential from Get-Credential.",
            ));
        }
    }
    Ok(())
}

/// `-Usage X` or one of the `-Internet`-style switches; giving two different ones is refused.
pub fn usage(values: &Values, allowed: &[&str]) -> Result<Option<String>, OpError> {
    let mut found = values.str("Usage");
    for v in allowed {
        if values.get(v) == Some(&Value::Bool(true)) {
            if found.as_deref().is_some_and(|f| f != *v) {
                return Err(OpError::invalid(
                    "Usage",
                    "Parameter set cannot be resolved using the specified named parameters: give one usage only.",
                ));
            }
            found = Some(v.to_string());
        }
    }
    Ok(found)
}

/// The rules a send connector's values follow beyond their own checks.
fn settle(c: &mut C, values: &Values) -> Result<(), OpError> {
    // A smart-host list means smart-host routing unless the admin said otherwise.
    if values.has("SmartHosts") && !values.has("DNSRoutingEnabled") && !c.smart_hosts.is_empty() {
        c.dns_routing_enabled = false;
    }
    // Address spaces are kept in the canonical `SMTP:domain;cost` form.
    c.address_spaces = c
        .address_spaces
        .iter()
        .map(|s| AddressSpace::parse(s).map(|a| a.to_string()))
        .collect::<Result<_, _>>()?;
    Ok(())
}

pub async fn get(
    tx: &mut PgConnection,
    identity: Option<&Identity>,
    many: bool,
) -> Result<Vec<C>, OpError> {
    resolve(
        SendConnector::load_all_in(tx).await?,
        identity,
        many,
        |c| c.id,
        |c, eq| eq(&c.name),
    )
}

/// New-SendConnector on `server` (its first source transport server). `key` seals a credential.
pub async fn new(
    tx: &mut PgConnection,
    server: &str,
    values: &Values,
    key: Option<&OrganizationKey>,
) -> Result<Change<C>, OpError> {
    let before = SendConnector::new("", &[], server);
    let mut c = before.clone();
    // -Usage or one of its switches; the table's setter then finds the same value.
    c.usage = usage(values, USAGE)?.unwrap_or_else(|| "Custom".into());
    OBJECT.apply(&mut c, values, true, &Ctx { key })?;
    settle(&mut c, values)?;
    OBJECT.validate(&c)?;
    c.insert_in(tx).await?;
    Ok(Change { before, after: c })
}

pub async fn set(
    tx: &mut PgConnection,
    identity: &Identity,
    values: &Values,
    key: Option<&OrganizationKey>,
) -> Result<Change<C>, OpError> {
    let before = one(get(tx, Some(identity), false).await?);
    let mut after = before.clone();
    OBJECT.apply(&mut after, values, false, &Ctx { key })?;
    settle(&mut after, values)?;
    OBJECT.validate(&after)?;
    after.update(tx).await?;
    Ok(Change { before, after })
}

pub async fn remove(tx: &mut PgConnection, identity: &Identity) -> Result<C, OpError> {
    let c = one(get(tx, Some(identity), false).await?);
    c.delete(tx).await?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_needs_a_user_name_and_a_password() {
        let mut c = SendConnector::new("x", &["*"], "HUB1");
        let ctx = Ctx { key: None };
        let cred = |user: &str, password: &str| Value::Cred {
            user: user.into(),
            password: password.into(),
        };
        let e = set_credential(&mut c, cred(" ", "pw"), &ctx).unwrap_err();
        assert!(e.to_string().contains("user name must not be empty"), "{e}");
        assert_eq!(e.param(), Some("AuthenticationCredential"));
        let e = set_credential(&mut c, cred("relay", ""), &ctx).unwrap_err();
        assert!(e.to_string().contains("password must not be empty"), "{e}");
        assert!(c.auth_username.is_none());
    }
}
