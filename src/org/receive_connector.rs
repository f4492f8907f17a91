//! ReceiveConnector: how a connection is received (bindings, remote ranges, auth, limits).

use std::net::SocketAddr;

use sqlx::PgPool;
use uuid::Uuid;

use super::OrgError;
use super::network::{Binding, IpRange};
use super::rights::PermissionGroup;

/// `-AuthMechanism` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMechanism {
    None,
    Tls,
    Integrated,
    BasicAuth,
    BasicAuthRequireTls,
    ExchangeServer,
    ExternalAuthoritative,
}

impl AuthMechanism {
    pub const ALL: [AuthMechanism; 7] = [
        AuthMechanism::None,
        AuthMechanism::Tls,
        AuthMechanism::Integrated,
        AuthMechanism::BasicAuth,
        AuthMechanism::BasicAuthRequireTls,
        AuthMechanism::ExchangeServer,
        AuthMechanism::ExternalAuthoritative,
    ];
    pub fn name(self) -> &'static str {
        match self {
            AuthMechanism::None => "None",
            AuthMechanism::Tls => "Tls",
            AuthMechanism::Integrated => "Integrated",
            AuthMechanism::BasicAuth => "BasicAuth",
            AuthMechanism::BasicAuthRequireTls => "BasicAuthRequireTLS",
            AuthMechanism::ExchangeServer => "ExchangeServer",
            AuthMechanism::ExternalAuthoritative => "ExternalAuthoritative",
        }
    }
    pub fn parse(s: &str) -> Option<AuthMechanism> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ReceiveConnector {
    pub id: Uuid,
    pub server: String,
    pub name: String,
    pub enabled: bool,
    pub bindings: Vec<String>,
    pub remote_ip_ranges: Vec<String>,
    pub fqdn: String,
    pub banner: Option<String>,
    pub comment: Option<String>,
    pub auth_mechanism: Vec<String>,
    pub permission_groups: Vec<String>,
    pub max_message_size: i64,
    pub max_header_size: i64,
    pub max_recipients_per_message: i32,
    pub max_inbound_connection: Option<i32>,
    pub max_inbound_connection_per_source: Option<i32>,
    pub max_inbound_connection_percentage_per_source: i32,
    pub connection_timeout: i64,
    pub connection_inactivity_timeout: i64,
    pub max_hop_count: i32,
    pub max_local_hop_count: i32,
    pub max_logon_failures: i32,
    pub max_protocol_errors: Option<i32>,
    pub message_rate_limit: Option<i32>,
    pub message_rate_source: String,
    pub tarpit_interval: i64,
    pub max_acknowledgement_delay: i64,
    pub protocol_logging_level: String,
    pub require_tls: bool,
    pub require_ehlo_domain: bool,
    pub orar_enabled: bool,
    pub enable_auth_gssapi: bool,
    pub size_enabled: String,
    pub domain_secure_enabled: bool,
    pub pipelining_enabled: bool,
    pub dsn_enabled: bool,
    pub enhanced_status_codes_enabled: bool,
    pub eight_bit_mime_enabled: bool,
    pub binary_mime_enabled: bool,
    pub chunking_enabled: bool,
    pub smtp_utf8_enabled: bool,
    /// `address: error` for each of this connector's bindings that its server could not listen
    /// on (see `record_binding_errors`); filled by `load_all`, never saved with the connector.
    #[sqlx(skip)]
    pub binding_errors: Vec<String>,
}

impl ReceiveConnector {
    /// A connector with Exchange 2010's New-ReceiveConnector defaults.
    pub fn new(server: &str, name: &str, fqdn: &str) -> ReceiveConnector {
        ReceiveConnector {
            id: Uuid::new_v4(),
            server: server.to_string(),
            name: name.to_string(),
            enabled: true,
            bindings: vec![],
            remote_ip_ranges: vec!["0.0.0.0-255.255.255.255".into()],
            fqdn: fqdn.to_string(),
            banner: None,
            comment: None,
            auth_mechanism: vec!["Tls".into()],
            permission_groups: vec![],
            max_message_size: 10 * 1024 * 1024,
            max_header_size: 65536,
            max_recipients_per_message: 200,
            max_inbound_connection: Some(5000),
            max_inbound_connection_per_source: Some(20),
            max_inbound_connection_percentage_per_source: 2,
            connection_timeout: 600,
            connection_inactivity_timeout: 300,
            max_hop_count: 30,
            max_local_hop_count: 8,
            max_logon_failures: 3,
            max_protocol_errors: Some(5),
            message_rate_limit: None,
            message_rate_source: "IPAddress".into(),
            tarpit_interval: 5,
            max_acknowledgement_delay: 30,
            protocol_logging_level: "None".into(),
            require_tls: false,
            require_ehlo_domain: false,
            orar_enabled: false,
            enable_auth_gssapi: false,
            size_enabled: "Enabled".into(),
            domain_secure_enabled: false,
            pipelining_enabled: true,
            dsn_enabled: true,
            enhanced_status_codes_enabled: true,
            eight_bit_mime_enabled: true,
            binary_mime_enabled: true,
            chunking_enabled: true,
            smtp_utf8_enabled: true,
            binding_errors: vec![],
        }
    }

    /// `SERVER\Name`, the identity Exchange shows and logs.
    pub fn identity(&self) -> String {
        format!("{}\\{}", self.server, self.name)
    }

    pub fn has_auth(&self, m: AuthMechanism) -> bool {
        self.auth_mechanism
            .iter()
            .any(|s| AuthMechanism::parse(s) == Some(m))
    }

    pub fn parsed_bindings(&self) -> Vec<Binding> {
        self.bindings
            .iter()
            .filter_map(|b| b.parse().ok())
            .collect()
    }

    pub fn parsed_ranges(&self) -> Vec<IpRange> {
        self.remote_ip_ranges
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect()
    }

    pub fn protocol_logging(&self) -> bool {
        self.protocol_logging_level.eq_ignore_ascii_case("Verbose")
    }

    /// Checks every rule that Exchange enforces when the object is saved.
    pub fn validate(&self) -> Result<(), OrgError> {
        let invalid = |param: &'static str, msg: String| Err(super::invalid(param, msg));
        if self.name.trim().is_empty() || self.name.len() > 64 {
            return invalid("Name", "Name must be 1 to 64 characters.".into());
        }
        if self.bindings.is_empty() {
            return invalid(
                "Bindings",
                "Bindings must contain at least one IP:port.".into(),
            );
        }
        for b in &self.bindings {
            b.parse::<Binding>()
                .map_err(|e| super::invalid("Bindings", e.to_string()))?;
        }
        if self.remote_ip_ranges.is_empty() {
            return invalid(
                "RemoteIPRanges",
                "RemoteIPRanges must contain at least one range.".into(),
            );
        }
        let ranges: Vec<IpRange> = self
            .remote_ip_ranges
            .iter()
            .map(|r| {
                r.parse().map_err(|e: super::network::NetworkError| {
                    super::invalid("RemoteIPRanges", e.to_string())
                })
            })
            .collect::<Result<_, _>>()?;
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                let overlap = a.contains(b.start) || a.contains(b.end) || b.contains(a.start);
                let nested = (a.contains(b.start) && a.contains(b.end))
                    || (b.contains(a.start) && b.contains(a.end));
                if overlap && !nested {
                    return invalid(
                        "RemoteIPRanges",
                        format!(
                            "The remote IP ranges {a} and {b} overlap; ranges may overlap only when one contains the other."
                        ),
                    );
                }
            }
        }
        for m in &self.auth_mechanism {
            if AuthMechanism::parse(m).is_none() {
                return invalid(
                    "AuthMechanism",
                    format!(
                        "'{m}' is not a valid AuthMechanism. Valid values: None, Tls, Integrated, BasicAuth, BasicAuthRequireTLS, ExchangeServer, ExternalAuthoritative."
                    ),
                );
            }
        }
        for g in &self.permission_groups {
            if PermissionGroup::parse(g).is_none() {
                return invalid(
                    "PermissionGroups",
                    format!(
                        "'{g}' is not a valid PermissionGroups value. Valid values: None, AnonymousUsers, ExchangeUsers, ExchangeServers, ExchangeLegacyServers, Partners."
                    ),
                );
            }
        }
        if self.has_auth(AuthMechanism::BasicAuthRequireTls)
            && !(self.has_auth(AuthMechanism::BasicAuth) && self.has_auth(AuthMechanism::Tls))
        {
            return invalid(
                "AuthMechanism",
                "BasicAuthRequireTLS requires BasicAuth and Tls.".into(),
            );
        }
        if self.has_auth(AuthMechanism::ExternalAuthoritative) {
            if !self.has_auth(AuthMechanism::Tls) && self.auth_mechanism.len() > 1 {
                return invalid(
                    "AuthMechanism",
                    "ExternalAuthoritative can only be combined with Tls.".into(),
                );
            }
            if !self
                .permission_groups
                .iter()
                .any(|g| PermissionGroup::parse(g) == Some(PermissionGroup::ExchangeServers))
            {
                return invalid(
                    "PermissionGroups",
                    "The ExternalAuthoritative authentication mechanism requires the ExchangeServers permission group.".into(),
                );
            }
        }
        if let Some(b) = &self.banner
            && !b.starts_with("220 ")
        {
            return invalid("Banner", "A custom Banner must start with \"220 \".".into());
        }
        if self.connection_timeout <= self.connection_inactivity_timeout {
            return invalid(
                "ConnectionTimeout",
                "ConnectionTimeout must be greater than ConnectionInactivityTimeout.".into(),
            );
        }
        Ok(())
    }

    /// Inserts the connector and the ACL entries of its permission groups in one transaction.
    pub async fn insert(&self, pool: &PgPool) -> Result<(), OrgError> {
        let mut tx = pool.begin().await?;
        self.insert_in(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts inside the caller's transaction, so one shell line is applied whole or not at all.
    pub async fn insert_in(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        self.validate()?;
        self.insert_row(conn).await?;
        write_group_permissions(conn, self.id, &self.permission_groups).await
    }

    /// Saves every field; PermissionGroups rewrites the group entries of the ACL, entries added
    /// with Add-ADPermission stay.
    pub async fn update(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        self.validate()?;
        // Replacing the row keeps a single column list for insert and update; the ACL is keyed
        // by the connector id, which stays.
        sqlx::query("DELETE FROM receive_connector WHERE id = $1")
            .bind(self.id)
            .execute(&mut *conn)
            .await?;
        self.insert_row(conn).await?;
        write_group_permissions(conn, self.id, &self.permission_groups).await
    }

    /// Removes the connector and its whole ACL.
    pub async fn delete(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        super::rights::delete_connector(conn, super::rights::ConnectorTable::Receive, self.id)
            .await?;
        Ok(())
    }

    /// Every server's connectors, ordered as Get-ReceiveConnector lists them, with the binding
    /// errors their servers recorded.
    pub async fn load_all(
        conn: &mut sqlx::PgConnection,
    ) -> Result<Vec<ReceiveConnector>, OrgError> {
        let mut all = sqlx::query_as::<_, ReceiveConnector>(
            "SELECT * FROM receive_connector ORDER BY server, name",
        )
        .fetch_all(&mut *conn)
        .await?;
        let errors: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT server, address, error FROM receive_binding_error ORDER BY server, address",
        )
        .fetch_all(&mut *conn)
        .await?;
        for c in all.iter_mut().filter(|c| c.enabled) {
            let bindings = c.parsed_bindings();
            c.binding_errors = errors
                .iter()
                .filter(|(server, _, _)| server.eq_ignore_ascii_case(&c.server))
                .filter_map(|(_, address, error)| {
                    let tried: SocketAddr = address.parse().ok()?;
                    bindings
                        .iter()
                        .any(|b| listened_by(tried, b))
                        .then(|| format!("{address}: {error}"))
                })
                .collect();
        }
        Ok(all)
    }

    async fn insert_row(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        sqlx::query(
            "INSERT INTO receive_connector (id, server, name, enabled, bindings, remote_ip_ranges, fqdn, banner, comment,
               auth_mechanism, permission_groups, max_message_size, max_header_size, max_recipients_per_message,
               max_inbound_connection, max_inbound_connection_per_source, max_inbound_connection_percentage_per_source,
               connection_timeout, connection_inactivity_timeout, max_hop_count, max_local_hop_count, max_logon_failures,
               max_protocol_errors, message_rate_limit, message_rate_source, tarpit_interval, max_acknowledgement_delay,
               protocol_logging_level, require_tls, require_ehlo_domain, orar_enabled, enable_auth_gssapi, size_enabled,
               domain_secure_enabled, pipelining_enabled, dsn_enabled, enhanced_status_codes_enabled, eight_bit_mime_enabled,
               binary_mime_enabled, chunking_enabled, smtp_utf8_enabled)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,
                     $28,$29,$30,$31,$32,$33,$34,$35,$36,$37,$38,$39,$40,$41)",
        )
        .bind(self.id)
        .bind(&self.server)
        .bind(&self.name)
        .bind(self.enabled)
        .bind(&self.bindings)
        .bind(&self.remote_ip_ranges)
        .bind(&self.fqdn)
        .bind(&self.banner)
        .bind(&self.comment)
        .bind(&self.auth_mechanism)
        .bind(&self.permission_groups)
        .bind(self.max_message_size)
        .bind(self.max_header_size)
        .bind(self.max_recipients_per_message)
        .bind(self.max_inbound_connection)
        .bind(self.max_inbound_connection_per_source)
        .bind(self.max_inbound_connection_percentage_per_source)
        .bind(self.connection_timeout)
        .bind(self.connection_inactivity_timeout)
        .bind(self.max_hop_count)
        .bind(self.max_local_hop_count)
        .bind(self.max_logon_failures)
        .bind(self.max_protocol_errors)
        .bind(self.message_rate_limit)
        .bind(&self.message_rate_source)
        .bind(self.tarpit_interval)
        .bind(self.max_acknowledgement_delay)
        .bind(&self.protocol_logging_level)
        .bind(self.require_tls)
        .bind(self.require_ehlo_domain)
        .bind(self.orar_enabled)
        .bind(self.enable_auth_gssapi)
        .bind(&self.size_enabled)
        .bind(self.domain_secure_enabled)
        .bind(self.pipelining_enabled)
        .bind(self.dsn_enabled)
        .bind(self.enhanced_status_codes_enabled)
        .bind(self.eight_bit_mime_enabled)
        .bind(self.binary_mime_enabled)
        .bind(self.chunking_enabled)
        .bind(self.smtp_utf8_enabled)
        .execute(&mut *conn)
        .await
        .map_err(|e| OrgError::from_unique(e, "ReceiveConnector", &self.identity()))?;
        Ok(())
    }

    pub async fn load_for_server(
        pool: &PgPool,
        server: &str,
    ) -> Result<Vec<ReceiveConnector>, OrgError> {
        Ok(sqlx::query_as::<_, ReceiveConnector>(
            "SELECT * FROM receive_connector WHERE lower(server) = lower($1) ORDER BY name",
        )
        .bind(server)
        .fetch_all(pool)
        .await?)
    }
}

/// Whether the socket `tried` is the one a node opens for `binding`: the binding itself, or the
/// wildcard of its family and port that stands for it (see `listener::plan`).
fn listened_by(tried: SocketAddr, binding: &Binding) -> bool {
    tried == binding.0
        || (tried.ip().is_unspecified()
            && tried.port() == binding.0.port()
            && tried.is_ipv4() == binding.0.is_ipv4())
}

/// Replaces the binding errors recorded for `server` with `errors` (socket, reason): what the
/// node could not listen on as of now. Not configuration: no reload is triggered.
pub async fn record_binding_errors(
    pool: &PgPool,
    server: &str,
    errors: &[(SocketAddr, String)],
) -> Result<(), OrgError> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM receive_binding_error WHERE server = $1")
        .bind(server)
        .execute(&mut *tx)
        .await?;
    for (address, error) in errors {
        sqlx::query(
            "INSERT INTO receive_binding_error (server, address, error) VALUES ($1, $2, $3)",
        )
        .bind(server)
        .bind(address.to_string())
        .bind(error)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Rewrites the ACL entries that come from permission groups, as Exchange does when
/// PermissionGroups is saved; entries added with Add-ADPermission stay.
pub async fn write_group_permissions(
    tx: &mut sqlx::PgConnection,
    connector_id: Uuid,
    groups: &[String],
) -> Result<(), OrgError> {
    sqlx::query(
        "DELETE FROM connector_permission WHERE connector_id = $1 AND permission_group IS NOT NULL",
    )
    .bind(connector_id)
    .execute(&mut *tx)
    .await?;
    for g in groups.iter().filter_map(|g| PermissionGroup::parse(g)) {
        for (principal, right, deny) in g.entries() {
            sqlx::query(
                "INSERT INTO connector_permission (connector_id, principal, extended_right, deny, permission_group)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(connector_id)
            .bind(principal)
            .bind(right.ad_name())
            .bind(deny)
            .bind(g.name())
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(())
}

/// Picks the receive connector for a connection (reference §3.2): among connectors bound to the
/// exact local IP:port, the smallest matching remote range; among wildcard-bound ones likewise; the
/// wildcard winner is used only when its range is strictly smaller.
pub fn select<'a>(
    connectors: &'a [ReceiveConnector],
    local: SocketAddr,
    remote: SocketAddr,
) -> Option<&'a ReceiveConnector> {
    let best = |wildcard: bool| -> Option<(u128, &'a ReceiveConnector)> {
        connectors
            .iter()
            .filter(|c| c.enabled)
            .filter(|c| {
                c.parsed_bindings()
                    .iter()
                    .any(|b| b.is_wildcard() == wildcard && b.covers(local))
            })
            .filter_map(|c| {
                c.parsed_ranges()
                    .iter()
                    .filter(|r| r.contains(remote.ip()))
                    .map(|r| r.span())
                    .min()
                    .map(|span| (span, c))
            })
            .min_by_key(|(span, _)| *span)
    };
    match (best(false), best(true)) {
        (Some((s, c)), Some((w, wc))) => Some(if w < s { wc } else { c }),
        (Some((_, c)), None) | (None, Some((_, c))) => Some(c),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(name: &str, binding: &str, range: &str) -> ReceiveConnector {
        let mut c = ReceiveConnector::new("HUB", name, "hub.test");
        c.bindings = vec![binding.into()];
        c.remote_ip_ranges = vec![range.into()];
        c
    }

    #[test]
    fn smallest_range_wins_and_specific_binding_wins_ties() {
        let cs = vec![
            conn("Default", "0.0.0.0:25", "0.0.0.0-255.255.255.255"),
            conn("Partner", "0.0.0.0:25", "127.0.0.3"),
            conn("Specific", "127.0.0.1:25", "0.0.0.0-255.255.255.255"),
        ];
        let l = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            select(&cs, l("127.0.0.9:25"), l("127.0.0.3:5000"))
                .unwrap()
                .name,
            "Partner"
        );
        assert_eq!(
            select(&cs, l("127.0.0.9:25"), l("127.0.0.2:5000"))
                .unwrap()
                .name,
            "Default"
        );
        assert_eq!(
            select(&cs, l("127.0.0.1:25"), l("127.0.0.2:5000"))
                .unwrap()
                .name,
            "Specific"
        );
        assert!(select(&cs, l("127.0.0.1:26"), l("127.0.0.2:5000")).is_none());
    }

    #[test]
    fn validation_rejects_partial_overlap_and_bad_banner() {
        let mut c = conn("X", "0.0.0.0:25", "10.0.0.0-10.0.0.20");
        c.remote_ip_ranges.push("10.0.0.10-10.0.0.30".into());
        assert!(c.validate().is_err());
        c.remote_ip_ranges = vec!["10.0.0.0/8".into(), "10.1.0.0/16".into()];
        assert!(c.validate().is_ok());
        c.banner = Some("hello".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_failed_wildcard_socket_is_the_error_of_every_binding_it_stands_for() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let b = |s: &str| s.parse::<Binding>().unwrap();
        assert!(listened_by(a("0.0.0.0:25"), &b("0.0.0.0:25")));
        assert!(listened_by(a("0.0.0.0:25"), &b("127.0.0.5:25")));
        assert!(listened_by(a("127.0.0.5:25"), &b("127.0.0.5:25")));
        assert!(!listened_by(a("0.0.0.0:25"), &b("127.0.0.5:587")));
        assert!(!listened_by(a("127.0.0.6:25"), &b("127.0.0.5:25")));
        assert!(!listened_by(a("[::]:25"), &b("127.0.0.5:25")));
    }
}
