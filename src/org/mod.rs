//! The organisation: Exchange's configuration objects, their validation, load and save.
//!
//! The console and the shell are two faces of the operations over these objects (`ops`). A
//! model's `validate` holds its rules across properties; each property's own range and values
//! are in its table (`ops::props`), checked by the operations.

pub mod accepted_domain;
pub mod account;
pub mod bootstrap;
pub mod ip_block_list;
pub mod ip_list;
pub mod network;
pub mod org_key;
pub mod receive_connector;
pub mod recipient;
pub mod recipient_filter;
pub mod rights;
pub mod send_connector;
pub mod sender_filter;
pub mod transport_config;
pub mod transport_server;

use std::sync::Arc;

use sqlx::PgPool;

pub use accepted_domain::{AcceptedDomain, DomainType};
pub use account::Account;
pub use receive_connector::{AuthMechanism, ReceiveConnector};
pub use recipient::Recipient;
pub use rights::{ExtendedRight, Permission, PermissionGroup, Rights};
pub use send_connector::SendConnector;
pub use transport_config::TransportConfig;
pub use transport_server::TransportServer;

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("{0}")]
    Invalid(String),
    /// A value refused because of one parameter, named so a form can show it beside its field.
    #[error("{message}")]
    Param {
        param: &'static str,
        message: String,
    },
    #[error("The {kind} \"{name}\" already exists.")]
    Duplicate { kind: &'static str, name: String },
    #[error("The TransportServer \"{0}\" does not exist.")]
    NoServer(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Key(#[from] org_key::KeyError),
}

impl OrgError {
    /// Turns a unique-constraint violation into the duplicate-object error an admin understands.
    pub fn from_unique(e: sqlx::Error, kind: &'static str, name: &str) -> OrgError {
        match &e {
            sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
                OrgError::Duplicate {
                    kind,
                    name: name.to_string(),
                }
            }
            sqlx::Error::Database(d) if d.code().as_deref() == Some("23514") => {
                OrgError::Invalid(format!(
                    "a value of {kind} \"{name}\" is out of range ({})",
                    d.message()
                ))
            }
            _ => OrgError::Db(e),
        }
    }
}

/// Checks that `value` of parameter `param` lies in `min..=max`, with Exchange's wording.
pub fn check_range(param: &'static str, value: i64, min: i64, max: i64) -> Result<(), OrgError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(OrgError::Param {
        param,
        message: format!(
            "The value {value} of {param} is out of range. It must be between {min} and {max}."
        ),
    })
}

/// Like `check_range`, for TimeSpans held in seconds, printed as `d.hh:mm:ss`.
pub fn check_span(param: &'static str, secs: i64, min: i64, max: i64) -> Result<(), OrgError> {
    if (min..=max).contains(&secs) {
        return Ok(());
    }
    Err(OrgError::Param {
        param,
        message: format!(
            "The value {} of {param} is out of range. It must be between {} and {}.",
            timespan(secs),
            timespan(min),
            timespan(max)
        ),
    })
}

/// An error about one parameter.
pub fn invalid(param: &'static str, message: impl Into<String>) -> OrgError {
    OrgError::Param {
        param,
        message: message.into(),
    }
}

/// Exchange's TimeSpan text: `d.hh:mm:ss`, days only when non-zero.
pub fn timespan(secs: i64) -> String {
    let (d, r) = (secs / 86400, secs % 86400);
    let hms = format!("{:02}:{:02}:{:02}", r / 3600, (r % 3600) / 60, r % 60);
    if d > 0 { format!("{d}.{hms}") } else { hms }
}

/// Checks that `value` of `param` is one of `allowed` (exact spelling, as stored).
pub fn check_one_of(param: &'static str, value: &str, allowed: &[&str]) -> Result<(), OrgError> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(OrgError::Param {
        param,
        message: format!(
            "'{value}' is not a valid {param}. Valid values: {}.",
            allowed.join(", ")
        ),
    })
}

/// An anti-spam agent's Enabled, ExternalMailEnabled and InternalMailEnabled: whether it acts,
/// and on which sessions (`smtp::server::Session::agent_applies` decides, as Exchange does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentScope {
    pub enabled: bool,
    /// Anonymous sessions: mail from outside the organisation.
    pub external: bool,
    /// Authenticated (or Externally Secured) sessions: mail from inside or from partners.
    pub internal: bool,
}

/// `scope()` for the settings objects that carry the three switches.
macro_rules! agent_scope {
    ($($t:ty),*) => {$(
        impl $t {
            /// Which sessions the agent acts on.
            pub fn scope(&self) -> AgentScope {
                AgentScope {
                    enabled: self.enabled,
                    external: self.external_mail_enabled,
                    internal: self.internal_mail_enabled,
                }
            }
        }
    )*};
}

agent_scope!(
    sender_filter::SenderFilterConfig,
    recipient_filter::RecipientFilterConfig,
    ip_block_list::ProvidersConfig,
    ip_block_list::BlockListConfig
);

/// A consistent snapshot of everything the transport needs, reloaded on every change.
#[derive(Clone, Debug)]
pub struct Org {
    pub server: TransportServer,
    pub config: TransportConfig,
    pub accepted_domains: Vec<AcceptedDomain>,
    pub receive_connectors: Vec<ReceiveConnector>,
    pub send_connectors: Vec<SendConnector>,
    pub permissions: Vec<Permission>,
    /// The IP Allow and IP Block lists (expired entries included: a session decides at its time).
    pub ip_lists: Vec<ip_list::IpListEntry>,
    /// Set-SenderFilterConfig: the Sender Filter agent's blocked senders and domains.
    pub sender_filter: sender_filter::SenderFilterConfig,
    /// The Recipient Filter agent's settings (Set-RecipientFilterConfig).
    pub recipient_filter: recipient_filter::RecipientFilterConfig,
    /// The IP Block List providers (DNSBLs) in Priority order, with their settings objects.
    pub ip_block_lists: ip_block_list::BlockLists,
    /// The relay domains' imported valid recipients, shared by the snapshots: a configuration
    /// change does not read the list again, and a change of the list reads nothing else.
    pub valid_recipients: Arc<recipient_filter::ValidRecipients>,
    /// Lower-cased FQDNs of every transport server and receive connector of the organisation: a
    /// Received field `by` one of them is a local hop (MaxLocalHopCount).
    pub local_fqdns: Vec<String>,
}

impl Org {
    pub async fn load(pool: &PgPool, server: &str) -> Result<Org, OrgError> {
        let recipients = recipient_filter::ValidRecipients::load(pool).await?;
        Org::load_with(pool, server, Arc::new(recipients)).await
    }

    /// This snapshot's configuration read again, its imported valid recipients kept.
    pub async fn reloaded(&self, pool: &PgPool) -> Result<Org, OrgError> {
        Org::load_with(pool, &self.server.name, self.valid_recipients.clone()).await
    }

    /// This snapshot with the imported valid recipients read again, the rest kept.
    pub async fn with_recipients_reloaded(&self, pool: &PgPool) -> Result<Org, OrgError> {
        let recipients = recipient_filter::ValidRecipients::load(pool).await?;
        Ok(Org {
            valid_recipients: Arc::new(recipients),
            ..self.clone()
        })
    }

    /// Everything but the imported valid recipients, which are `valid_recipients`.
    async fn load_with(
        pool: &PgPool,
        server: &str,
        valid_recipients: Arc<recipient_filter::ValidRecipients>,
    ) -> Result<Org, OrgError> {
        let server_row = TransportServer::load(pool, server)
            .await?
            .ok_or_else(|| OrgError::NoServer(server.to_string()))?;
        Ok(Org {
            config: TransportConfig::load(pool).await?,
            accepted_domains: AcceptedDomain::load_all(pool).await?,
            receive_connectors: ReceiveConnector::load_for_server(pool, &server_row.name).await?,
            send_connectors: SendConnector::load_all(pool).await?,
            permissions: sqlx::query_as::<_, Permission>(
                "SELECT connector_id, principal, extended_right, deny, permission_group FROM connector_permission ORDER BY id",
            )
            .fetch_all(pool)
            .await?,
            ip_lists: ip_list::IpListEntry::load_all(pool).await?,
            sender_filter: sender_filter::SenderFilterConfig::load(pool).await?,
            recipient_filter: recipient_filter::RecipientFilterConfig::load(pool).await?,
            ip_block_lists: ip_block_list::BlockLists::load(pool).await?,
            valid_recipients,
            local_fqdns: sqlx::query_scalar(
                "SELECT lower(rtrim(fqdn, '.')) FROM transport_server
                 UNION SELECT lower(rtrim(fqdn, '.')) FROM receive_connector",
            )
            .fetch_all(pool)
            .await?,
            server: server_row,
        })
    }

    pub fn acl(&self, connector_id: uuid::Uuid) -> Vec<Permission> {
        self.permissions
            .iter()
            .filter(|p| p.connector_id == connector_id)
            .cloned()
            .collect()
    }
}
