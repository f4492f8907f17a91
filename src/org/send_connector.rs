//! SendConnector: how mail leaves (address spaces with cost, DNS MX or smart hosts, TLS, auth).

use sqlx::PgPool;
use uuid::Uuid;

use super::OrgError;
use super::org_key::{KeyError, OrganizationKey};
use super::rights::send_connector_default_entries;

/// One `-AddressSpaces` entry: `[<Type>:]<space>[;<cost>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressSpace {
    pub address_type: String,
    pub domain: String,
    pub cost: u8,
}

/// Which input of the EMC's "SMTP Address Space" dialog an address-space refusal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSpacePart {
    Address,
    Cost,
}

impl AddressSpace {
    pub fn parse(s: &str) -> Result<AddressSpace, OrgError> {
        AddressSpace::parse_located(s).map_err(|(_, e)| e)
    }

    /// `parse`, saying which part a refusal is about, so a dialog can show it beside that input.
    pub fn parse_located(s: &str) -> Result<AddressSpace, (AddressSpacePart, OrgError)> {
        let bad = |part: AddressSpacePart, why: &str| {
            (
                part,
                super::invalid(
                    "AddressSpaces",
                    format!("'{s}' is not a valid address space: {why}"),
                ),
            )
        };
        let bad_cost = || {
            bad(
                AddressSpacePart::Cost,
                "the cost must be a number from 1 to 100",
            )
        };
        let (typed, cost) = match s.trim().rsplit_once(';') {
            Some((a, c)) => {
                let cost: u8 = c.trim().parse().map_err(|_| bad_cost())?;
                if !(1..=100).contains(&cost) {
                    return Err(bad_cost());
                }
                (a.trim(), cost)
            }
            None => (s.trim(), 1),
        };
        let (address_type, domain) = match typed.split_once(':') {
            Some((t, d)) => (t.trim().to_string(), d.trim().to_string()),
            None => ("SMTP".to_string(), typed.to_string()),
        };
        if address_type.eq_ignore_ascii_case("SMTP") {
            let body = domain.strip_prefix("*.").unwrap_or(&domain);
            if domain != "*"
                && (body.contains('*') || !super::accepted_domain::valid_domain_name(body))
            {
                return Err(bad(
                    AddressSpacePart::Address,
                    "use a domain, *.domain or *",
                ));
            }
        }
        Ok(AddressSpace {
            address_type: if address_type.eq_ignore_ascii_case("SMTP") {
                "SMTP".into()
            } else {
                address_type
            },
            domain: domain.to_ascii_lowercase(),
            cost,
        })
    }
}

/// One -SmartHosts entry as an IP address (`10.0.0.1`, `[10.0.0.1]`, `::1`).
pub fn smart_host_ip(s: &str) -> Result<std::net::IpAddr, OrgError> {
    let t = s.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(t);
    t.parse().map_err(|_| {
        super::invalid(
            "SmartHosts",
            format!("'{s}' is not a valid IP address for a smart host."),
        )
    })
}

/// One -SmartHosts entry as a fully qualified domain name. A name ending in a numeric label is
/// refused: it is a mistyped IP address, not a host name.
pub fn smart_host_fqdn(s: &str) -> Result<(), OrgError> {
    let t = s.trim().strip_suffix('.').unwrap_or(s.trim());
    let numeric_tld = t
        .rsplit('.')
        .next()
        .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    if t.contains('*') || numeric_tld || !super::accepted_domain::valid_domain_name(t) {
        return Err(super::invalid(
            "SmartHosts",
            format!("'{s}' is not a valid fully qualified domain name for a smart host."),
        ));
    }
    Ok(())
}

/// One -SmartHosts entry: an IP address or a fully qualified domain name.
pub fn check_smart_host(s: &str) -> Result<(), OrgError> {
    if smart_host_ip(s).is_ok() || smart_host_fqdn(s).is_ok() {
        return Ok(());
    }
    Err(super::invalid(
        "SmartHosts",
        format!(
            "'{s}' is not a valid smart host: give an IP address or a fully qualified domain name."
        ),
    ))
}

impl std::fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{};{}", self.address_type, self.domain, self.cost)
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SendConnector {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub usage: String,
    pub address_spaces: Vec<String>,
    pub is_scoped_connector: bool,
    pub dns_routing_enabled: bool,
    pub smart_hosts: Vec<String>,
    pub smart_host_auth_mechanism: String,
    pub auth_username: Option<String>,
    /// Sealed with the organisation key (`org_key`); see `password` and `set_password`.
    pub auth_password: Option<String>,
    pub port: i32,
    pub require_tls: bool,
    pub ignore_starttls: bool,
    pub tls_auth_level: Option<String>,
    pub tls_domain: Option<String>,
    pub max_message_size: Option<i64>,
    pub connection_inactivity_timeout: i64,
    pub force_helo: bool,
    pub fqdn: Option<String>,
    pub use_external_dns_servers_enabled: bool,
    pub source_transport_servers: Vec<String>,
    pub protocol_logging_level: String,
    pub error_policies: String,
    pub domain_secure_enabled: bool,
    pub smtp_max_messages_per_connection: i32,
    pub comment: Option<String>,
    pub message_expiration_timeout: Option<i64>,
    pub delay_notification_timeout: Option<i64>,
}

impl SendConnector {
    pub fn new(name: &str, address_spaces: &[&str], source_server: &str) -> SendConnector {
        SendConnector {
            id: Uuid::new_v4(),
            name: name.to_string(),
            enabled: true,
            usage: "Custom".into(),
            address_spaces: address_spaces.iter().map(|s| s.to_string()).collect(),
            is_scoped_connector: false,
            dns_routing_enabled: true,
            smart_hosts: vec![],
            smart_host_auth_mechanism: "None".into(),
            auth_username: None,
            auth_password: None,
            port: 25,
            require_tls: false,
            ignore_starttls: false,
            tls_auth_level: None,
            tls_domain: None,
            max_message_size: Some(10 * 1024 * 1024),
            connection_inactivity_timeout: 600,
            force_helo: false,
            fqdn: None,
            use_external_dns_servers_enabled: false,
            source_transport_servers: vec![source_server.to_string()],
            protocol_logging_level: "None".into(),
            error_policies: "Default".into(),
            domain_secure_enabled: false,
            smtp_max_messages_per_connection: 20,
            comment: None,
            message_expiration_timeout: None,
            delay_notification_timeout: None,
        }
    }

    pub fn parsed_address_spaces(&self) -> Vec<AddressSpace> {
        self.address_spaces
            .iter()
            .filter_map(|s| AddressSpace::parse(s).ok())
            .collect()
    }

    pub fn validate(&self) -> Result<(), OrgError> {
        if self.address_spaces.is_empty() {
            return Err(super::invalid(
                "AddressSpaces",
                "AddressSpaces must not be empty.",
            ));
        }
        for s in &self.address_spaces {
            AddressSpace::parse(s)?;
        }
        if self.dns_routing_enabled && !self.smart_hosts.is_empty() {
            return Err(super::invalid(
                "DNSRoutingEnabled",
                "DNSRoutingEnabled must be $false when SmartHosts are given.",
            ));
        }
        if !self.dns_routing_enabled && self.smart_hosts.is_empty() {
            return Err(super::invalid(
                "SmartHosts",
                "SmartHosts must be given when DNSRoutingEnabled is $false.",
            ));
        }
        for h in &self.smart_hosts {
            check_smart_host(h)?;
        }
        if self.source_transport_servers.is_empty() {
            return Err(super::invalid(
                "SourceTransportServers",
                "SourceTransportServers must not be empty: give at least one transport server.",
            ));
        }
        let basic = matches!(
            self.smart_host_auth_mechanism.as_str(),
            "BasicAuth" | "BasicAuthRequireTLS"
        );
        if basic && self.auth_username.is_none() {
            return Err(super::invalid(
                "AuthenticationCredential",
                format!(
                    "SmartHostAuthMechanism {} requires AuthenticationCredential.",
                    self.smart_host_auth_mechanism
                ),
            ));
        }
        if self.name.trim().is_empty() || self.name.len() > 64 {
            return Err(super::invalid("Name", "Name must be 1 to 64 characters."));
        }
        if self.smart_host_auth_mechanism == "BasicAuthRequireTLS" && self.ignore_starttls {
            return Err(super::invalid(
                "IgnoreSTARTTLS",
                "SmartHostAuthMechanism BasicAuthRequireTLS cannot be used when IgnoreSTARTTLS is \
                 $true: the credential would be sent without TLS. Set IgnoreSTARTTLS to $false, or \
                 choose another SmartHostAuthMechanism.",
            ));
        }
        if self.require_tls && self.ignore_starttls {
            return Err(super::invalid(
                "IgnoreSTARTTLS",
                "RequireTLS cannot be $true when IgnoreSTARTTLS is $true.",
            ));
        }
        Ok(())
    }

    /// Seals `password` as this connector's smart-host password.
    pub fn set_password(&mut self, key: &OrganizationKey, password: &str) -> Result<(), KeyError> {
        self.auth_password = Some(key.seal(&password_purpose(self.id), password)?);
        Ok(())
    }

    /// The smart-host password in clear, for the AUTH exchange; needs the organisation key.
    pub fn password(&self, key: Option<&OrganizationKey>) -> Result<Option<String>, KeyError> {
        let Some(stored) = &self.auth_password else {
            return Ok(None);
        };
        let key = key.ok_or(KeyError::NotGiven)?;
        key.open(&password_purpose(self.id), stored, &self.password_what())
            .map(Some)
    }

    fn password_what(&self) -> String {
        format!("smart-host password of send connector \"{}\"", self.name)
    }

    /// Inserts the connector with the default send-connector ACL (reference §2.3).
    pub async fn insert(&self, pool: &PgPool) -> Result<(), OrgError> {
        let mut tx = pool.begin().await?;
        self.insert_in(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts inside the caller's transaction, with the default ACL.
    pub async fn insert_in(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        self.validate()?;
        self.insert_row(conn).await?;
        for (principal, right) in send_connector_default_entries() {
            sqlx::query(
                "INSERT INTO connector_permission (connector_id, principal, extended_right, deny, permission_group)
                 VALUES ($1, $2, $3, false, 'Default')",
            )
            .bind(self.id)
            .bind(principal)
            .bind(right.ad_name())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Saves every field; the ACL is keyed by the id and stays as it is.
    pub async fn update(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        self.validate()?;
        // Replacing the row keeps a single column list for insert and update.
        sqlx::query("DELETE FROM send_connector WHERE id = $1")
            .bind(self.id)
            .execute(&mut *conn)
            .await?;
        self.insert_row(conn).await
    }

    /// Removes the connector and its whole ACL.
    pub async fn delete(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        super::rights::delete_connector(conn, super::rights::ConnectorTable::Send, self.id).await?;
        Ok(())
    }

    pub async fn load_all_in(
        conn: &mut sqlx::PgConnection,
    ) -> Result<Vec<SendConnector>, OrgError> {
        Ok(
            sqlx::query_as::<_, SendConnector>("SELECT * FROM send_connector ORDER BY name")
                .fetch_all(&mut *conn)
                .await?,
        )
    }

    async fn insert_row(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        sqlx::query(
            "INSERT INTO send_connector (id, name, enabled, usage, address_spaces, is_scoped_connector, dns_routing_enabled,
               smart_hosts, smart_host_auth_mechanism, auth_username, auth_password, port, require_tls, ignore_starttls,
               tls_auth_level, tls_domain, max_message_size, connection_inactivity_timeout, force_helo, fqdn,
               use_external_dns_servers_enabled, source_transport_servers, protocol_logging_level, error_policies,
               domain_secure_enabled, smtp_max_messages_per_connection, comment, message_expiration_timeout,
               delay_notification_timeout)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29)",
        )
        .bind(self.id)
        .bind(&self.name)
        .bind(self.enabled)
        .bind(&self.usage)
        .bind(&self.address_spaces)
        .bind(self.is_scoped_connector)
        .bind(self.dns_routing_enabled)
        .bind(&self.smart_hosts)
        .bind(&self.smart_host_auth_mechanism)
        .bind(&self.auth_username)
        .bind(&self.auth_password)
        .bind(self.port)
        .bind(self.require_tls)
        .bind(self.ignore_starttls)
        .bind(&self.tls_auth_level)
        .bind(&self.tls_domain)
        .bind(self.max_message_size)
        .bind(self.connection_inactivity_timeout)
        .bind(self.force_helo)
        .bind(&self.fqdn)
        .bind(self.use_external_dns_servers_enabled)
        .bind(&self.source_transport_servers)
        .bind(&self.protocol_logging_level)
        .bind(&self.error_policies)
        .bind(self.domain_secure_enabled)
        .bind(self.smtp_max_messages_per_connection)
        .bind(&self.comment)
        .bind(self.message_expiration_timeout)
        .bind(self.delay_notification_timeout)
        .execute(&mut *conn)
        .await
        .map_err(|e| OrgError::from_unique(e, "SendConnector", &self.name))?;
        Ok(())
    }

    pub async fn load_all(pool: &PgPool) -> Result<Vec<SendConnector>, OrgError> {
        Ok(
            sqlx::query_as::<_, SendConnector>("SELECT * FROM send_connector ORDER BY name")
                .fetch_all(pool)
                .await?,
        )
    }
}

/// Binds a sealed password to its connector: copied into another row, it does not open.
fn password_purpose(id: Uuid) -> Vec<u8> {
    let mut p = b"send_connector.auth_password ".to_vec();
    p.extend_from_slice(id.as_bytes());
    p
}

/// Seals the passwords still stored in plaintext (written before migration 0003).
pub async fn seal_stored_passwords(pool: &PgPool, key: &OrganizationKey) -> Result<(), KeyError> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT id, name, auth_password FROM send_connector WHERE auth_password LIKE 'plain:%'
         FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (id, name, stored) in &rows {
        let what = format!("smart-host password of send connector \"{name}\"");
        let plain = key.open(&password_purpose(*id), stored, &what)?;
        sqlx::query("UPDATE send_connector SET auth_password = $2 WHERE id = $1")
            .bind(id)
            .bind(key.seal(&password_purpose(*id), &plain)?)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    if !rows.is_empty() {
        tracing::info!(
            "sealed {} smart-host password(s) with the organization key",
            rows.len()
        );
    }
    Ok(())
}

/// Opens every sealed password, so that a node given the wrong key says so at start.
pub async fn check_stored_passwords(pool: &PgPool, key: &OrganizationKey) -> Result<(), KeyError> {
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT id, name, auth_password FROM send_connector WHERE auth_password IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    for (id, name, stored) in rows {
        let what = format!("smart-host password of send connector \"{name}\"");
        key.open(&password_purpose(id), &stored, &what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_space_forms_are_equivalent() {
        let a = AddressSpace::parse("SMTP:contoso.com;1").unwrap();
        let b = AddressSpace::parse("contoso.com;1").unwrap();
        let c = AddressSpace::parse("contoso.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(AddressSpace::parse("*").unwrap().domain, "*");
        assert_eq!(AddressSpace::parse("*.contoso.com;5").unwrap().cost, 5);
        assert!(AddressSpace::parse("*contoso.com").is_err());
        assert!(AddressSpace::parse("contoso.com;0").is_err());
        assert!(AddressSpace::parse("contoso.com;101").is_err());
    }

    #[test]
    fn address_space_refusals_name_their_part() {
        let part = |s: &str| AddressSpace::parse_located(s).unwrap_err().0;
        assert_eq!(part("SMTP:*contoso.com;1"), AddressSpacePart::Address);
        assert_eq!(part("SMTP:;1"), AddressSpacePart::Address);
        assert_eq!(part("SMTP:contoso.com;0"), AddressSpacePart::Cost);
        assert_eq!(part("SMTP:contoso.com;abc"), AddressSpacePart::Cost);
    }

    #[test]
    fn smart_hosts_are_ip_addresses_or_fqdns() {
        for ok in [
            "10.0.0.1",
            "[10.0.0.1]",
            "::1",
            "hub1.fourthcoffee.com",
            "relay",
        ] {
            assert!(check_smart_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "300.1.1.1",
            "",
            "bad host",
            "*.contoso.com",
            "a..b",
            "-a.com",
        ] {
            assert!(check_smart_host(bad).is_err(), "{bad}");
        }
        assert!(smart_host_ip("hub1.contoso.com").is_err());
        assert!(smart_host_fqdn("10.0.0.1").is_err());
        let mut c = SendConnector::new("x", &["*"], "HUB1");
        c.dns_routing_enabled = false;
        c.smart_hosts = vec!["hub1.contoso.com".into(), "300.1.1.1".into()];
        assert!(c.validate().is_err());
        c.smart_hosts.pop();
        assert!(c.validate().is_ok());
        c.source_transport_servers.clear();
        assert!(c.validate().is_err());
    }
}
