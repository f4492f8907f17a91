//! The Connection Filtering agent's IP Block List providers (DNSBLs) and the two settings objects
//! beside them (Set-IPBlockListProvidersConfig, Set-IPBlockListConfig); what a provider's answer
//! means (BitmaskMatch, IPAddressesMatch, AnyMatch) and the name a source is looked up under
//! (RFC 5782), as pure functions.

use std::net::{IpAddr, Ipv4Addr};

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{OrgError, invalid};

/// Exchange's text when a provider has no RejectionResponse.
pub const DEFAULT_REJECTION: &str =
    "Recipient not authorized, your IP has been found on a block list";

/// RejectionResponse is an AsciiString of at most 240 characters in Exchange.
pub const MAX_RESPONSE: usize = 240;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct IpBlockListProvider {
    pub id: Uuid,
    pub name: String,
    pub lookup_domain: String,
    /// 1 is asked first; 1..n without gaps.
    pub priority: i32,
    pub enabled: bool,
    pub any_match: bool,
    /// An IPv4 address whose last three octets are ANDed with an answer's.
    pub bitmask_match: Option<String>,
    /// Answers (IPv4 addresses) that count as a listing.
    pub ip_addresses_match: Vec<String>,
    pub rejection_response: Option<String>,
}

const COLUMNS: &str = "id, name, lookup_domain, priority, enabled, any_match, bitmask_match, \
                       ip_addresses_match, rejection_response";

/// A rejection text goes into an SMTP reply: printable ASCII, one line, bounded.
pub fn check_response(param: &'static str, s: &str) -> Result<(), OrgError> {
    if s.len() > MAX_RESPONSE {
        return Err(invalid(
            param,
            format!("The {param} is longer than {MAX_RESPONSE} characters."),
        ));
    }
    if !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(invalid(
            param,
            format!("The {param} must be printable ASCII text on one line."),
        ));
    }
    Ok(())
}

fn ipv4(param: &'static str, s: &str) -> Result<Ipv4Addr, OrgError> {
    s.trim().parse().map_err(|_| {
        invalid(
            param,
            format!("\"{s}\" is not a valid IPv4 address (expected a.b.c.d, e.g. 127.0.0.2)."),
        )
    })
}

impl IpBlockListProvider {
    pub fn new(name: &str, lookup_domain: &str) -> IpBlockListProvider {
        IpBlockListProvider {
            id: Uuid::new_v4(),
            name: name.to_string(),
            lookup_domain: lookup_domain.to_string(),
            priority: 1,
            enabled: true,
            any_match: false,
            bitmask_match: None,
            ip_addresses_match: vec![],
            rejection_response: None,
        }
    }

    pub fn validate(&self) -> Result<(), OrgError> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(invalid(
                "Name",
                "The Name must be between 1 and 64 characters long.",
            ));
        }
        let d = &self.lookup_domain;
        if d.starts_with("*.")
            || !d.is_ascii()
            || !d.contains('.')
            || !super::accepted_domain::valid_domain_name(d)
        {
            return Err(invalid(
                "LookupDomain",
                format!(
                    "'{d}' is not a valid LookupDomain: use the block list's DNS zone, such as zen.spamhaus.org."
                ),
            ));
        }
        if let Some(b) = &self.bitmask_match {
            ipv4("BitmaskMatch", b)?;
        }
        for a in &self.ip_addresses_match {
            ipv4("IPAddressesMatch", a)?;
        }
        if let Some(r) = &self.rejection_response {
            check_response("RejectionResponse", r)?;
        }
        Ok(())
    }

    /// The text of the 550 5.7.1 a listed source gets.
    pub fn rejection(&self) -> &str {
        self.rejection_response
            .as_deref()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or(DEFAULT_REJECTION)
    }

    /// Whether the provider's A records for a source say it is listed. With no criterion at all
    /// any answer in 127.0.0.0/8 counts (RFC 5782 §2.1: that is how a list says "listed"), but
    /// 127.255.255.0/24, which lists such as Spamhaus use for "query refused" and other errors:
    /// taken as listings they would refuse every source.
    pub fn matches(&self, answers: &[Ipv4Addr]) -> bool {
        if self.any_match {
            return !answers.is_empty();
        }
        let mask = self
            .bitmask_match
            .as_deref()
            .and_then(|m| m.trim().parse::<Ipv4Addr>().ok());
        let listed: Vec<Ipv4Addr> = self
            .ip_addresses_match
            .iter()
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        if mask.is_none() && listed.is_empty() {
            return answers
                .iter()
                .any(|a| matches!(a.octets(), [127, x, y, _] if (x, y) != (255, 255)));
        }
        answers.iter().any(|a| {
            // The first octet is the list's 127: only the bits after it carry codes.
            let bits = mask.is_some_and(|m| u32::from(*a) & u32::from(m) & 0x00ff_ffff != 0);
            bits || listed.contains(a)
        })
    }

    pub async fn load_all(conn: &mut PgConnection) -> Result<Vec<IpBlockListProvider>, OrgError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM ip_block_list_provider ORDER BY priority, name"
        ))
        .fetch_all(&mut *conn)
        .await?)
    }

    pub async fn insert(&self, conn: &mut PgConnection) -> Result<(), OrgError> {
        self.write(
            conn,
            "INSERT INTO ip_block_list_provider (id, name, lookup_domain, priority, enabled, any_match,
                bitmask_match, ip_addresses_match, rejection_response)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await
    }

    pub async fn update(&self, conn: &mut PgConnection) -> Result<(), OrgError> {
        self.write(
            conn,
            "UPDATE ip_block_list_provider SET name = $2, lookup_domain = $3, priority = $4,
                enabled = $5, any_match = $6, bitmask_match = $7, ip_addresses_match = $8,
                rejection_response = $9
             WHERE id = $1",
        )
        .await
    }

    /// Runs `sql` (an INSERT or UPDATE taking the columns in COLUMNS' order as $1..$9) for the
    /// provider once it validates.
    async fn write(&self, conn: &mut PgConnection, sql: &str) -> Result<(), OrgError> {
        self.validate()?;
        sqlx::query(sql)
            .bind(self.id)
            .bind(&self.name)
            .bind(&self.lookup_domain)
            .bind(self.priority)
            .bind(self.enabled)
            .bind(self.any_match)
            .bind(&self.bitmask_match)
            .bind(&self.ip_addresses_match)
            .bind(&self.rejection_response)
            .execute(&mut *conn)
            .await
            .map_err(|e| OrgError::from_unique(e, "IP Block list provider", &self.name))?;
        Ok(())
    }
}

/// Set-IPBlockListProvidersConfig: what applies to every provider.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ProvidersConfig {
    pub enabled: bool,
    pub external_mail_enabled: bool,
    pub internal_mail_enabled: bool,
    /// Recipients for whom the providers' verdicts are ignored (lower case).
    pub bypassed_recipients: Vec<String>,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            enabled: true,
            external_mail_enabled: true,
            internal_mail_enabled: false,
            bypassed_recipients: vec![],
        }
    }
}

impl ProvidersConfig {
    pub async fn load_in(conn: &mut PgConnection) -> Result<ProvidersConfig, OrgError> {
        Ok(sqlx::query_as(
            "SELECT enabled, external_mail_enabled, internal_mail_enabled, bypassed_recipients
             FROM ip_block_list_providers_config",
        )
        .fetch_one(&mut *conn)
        .await?)
    }

    pub fn validate(&self) -> Result<(), OrgError> {
        for r in &self.bypassed_recipients {
            let ok = r.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !local.contains(char::is_whitespace)
                    && super::accepted_domain::valid_domain_name(domain)
                    && !domain.starts_with("*.")
            });
            if !ok {
                return Err(invalid(
                    "BypassedRecipients",
                    format!("'{r}' is not a valid SMTP address."),
                ));
            }
        }
        Ok(())
    }

    pub async fn update(&self, conn: &mut PgConnection) -> Result<(), OrgError> {
        self.validate()?;
        let bypassed: Vec<String> = self
            .bypassed_recipients
            .iter()
            .map(|r| r.trim().to_ascii_lowercase())
            .collect();
        sqlx::query(
            "UPDATE ip_block_list_providers_config SET enabled = $1, external_mail_enabled = $2,
                internal_mail_enabled = $3, bypassed_recipients = $4",
        )
        .bind(self.enabled)
        .bind(self.external_mail_enabled)
        .bind(self.internal_mail_enabled)
        .bind(&bypassed)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    pub fn bypasses(&self, recipient: &str) -> bool {
        self.bypassed_recipients
            .iter()
            .any(|r| r.eq_ignore_ascii_case(recipient.trim()))
    }
}

/// Set-IPBlockListConfig: the static IP Block List's switches and replies.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct BlockListConfig {
    pub enabled: bool,
    pub external_mail_enabled: bool,
    pub internal_mail_enabled: bool,
    pub machine_entry_rejection_response: Option<String>,
    pub static_entry_rejection_response: Option<String>,
}

impl Default for BlockListConfig {
    fn default() -> Self {
        BlockListConfig {
            enabled: true,
            external_mail_enabled: true,
            internal_mail_enabled: false,
            machine_entry_rejection_response: None,
            static_entry_rejection_response: None,
        }
    }
}

impl BlockListConfig {
    pub async fn load_in(conn: &mut PgConnection) -> Result<BlockListConfig, OrgError> {
        Ok(sqlx::query_as(
            "SELECT enabled, external_mail_enabled, internal_mail_enabled,
                    machine_entry_rejection_response, static_entry_rejection_response
             FROM ip_block_list_config",
        )
        .fetch_one(&mut *conn)
        .await?)
    }

    pub fn validate(&self) -> Result<(), OrgError> {
        if let Some(r) = &self.machine_entry_rejection_response {
            check_response("MachineEntryRejectionResponse", r)?;
        }
        if let Some(r) = &self.static_entry_rejection_response {
            check_response("StaticEntryRejectionResponse", r)?;
        }
        Ok(())
    }

    pub async fn update(&self, conn: &mut PgConnection) -> Result<(), OrgError> {
        self.validate()?;
        sqlx::query(
            "UPDATE ip_block_list_config SET enabled = $1, external_mail_enabled = $2,
                internal_mail_enabled = $3, machine_entry_rejection_response = $4,
                static_entry_rejection_response = $5",
        )
        .bind(self.enabled)
        .bind(self.external_mail_enabled)
        .bind(self.internal_mail_enabled)
        .bind(&self.machine_entry_rejection_response)
        .bind(&self.static_entry_rejection_response)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// What the Org snapshot holds for the agent's block lists.
#[derive(Clone, Debug, Default)]
pub struct BlockLists {
    /// In Priority order.
    pub providers: Vec<IpBlockListProvider>,
    pub providers_config: ProvidersConfig,
    pub config: BlockListConfig,
}

impl BlockLists {
    pub async fn load(pool: &PgPool) -> Result<BlockLists, OrgError> {
        let mut conn = pool.acquire().await?;
        Ok(BlockLists {
            providers: IpBlockListProvider::load_all(&mut conn).await?,
            providers_config: ProvidersConfig::load_in(&mut conn).await?,
            config: BlockListConfig::load_in(&mut conn).await?,
        })
    }
}

/// The name under `zone` a DNSBL is asked about `ip` (RFC 5782 §2.1, §2.4): IPv4 octets
/// reversed; IPv6 as 32 nibbles reversed. An IPv4-mapped IPv6 source is asked as IPv4.
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    let v6 = match ip {
        IpAddr::V4(v) => return reversed_v4(v, zone),
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => return reversed_v4(v4, zone),
            None => v,
        },
    };
    let mut out = String::with_capacity(64 + zone.len());
    for byte in v6.octets().iter().rev() {
        for nibble in [byte & 0x0f, byte >> 4] {
            out.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
            out.push('.');
        }
    }
    out.push_str(zone);
    out
}

fn reversed_v4(v: Ipv4Addr, zone: &str) -> String {
    let [a, b, c, d] = v.octets();
    format!("{d}.{c}.{b}.{a}.{zone}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_reversed_per_rfc_5782() {
        assert_eq!(
            query_name("192.0.2.99".parse().unwrap(), "bl.example."),
            "99.2.0.192.bl.example"
        );
        // RFC 5782 §2.4's example.
        assert_eq!(
            query_name("2001:db8:1:2:3:4:567:89ab".parse().unwrap(), "bl.example"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example"
        );
        assert_eq!(
            query_name("::ffff:127.0.0.2".parse().unwrap(), "bl.example"),
            "2.0.0.127.bl.example"
        );
    }

    fn ans(s: &str) -> Vec<Ipv4Addr> {
        vec![s.parse().unwrap()]
    }

    #[test]
    fn answers_match_per_bitmask_list_or_any() {
        let mut p = IpBlockListProvider::new("p", "bl.example");
        // No criterion: any 127/8 answer.
        assert!(p.matches(&ans("127.0.0.2")));
        assert!(!p.matches(&[]));
        assert!(!p.matches(&ans("127.255.255.254")));
        assert!(!p.matches(&ans("10.0.0.2")));
        p.bitmask_match = Some("127.0.0.4".into());
        assert!(p.matches(&ans("127.0.0.6")));
        assert!(!p.matches(&ans("127.0.0.2")));
        p.bitmask_match = Some("127.1.0.1".into());
        assert!(p.matches(&ans("127.1.0.0")));
        assert!(!p.matches(&ans("127.0.0.2")));
        p.bitmask_match = None;
        p.ip_addresses_match = vec!["127.0.0.10".into(), "127.0.0.11".into()];
        assert!(p.matches(&ans("127.0.0.11")));
        assert!(!p.matches(&ans("127.0.0.2")));
        p.any_match = true;
        assert!(p.matches(&ans("127.0.0.2")));
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let mut p = IpBlockListProvider::new("p", "bad domain");
        assert!(matches!(
            p.validate(),
            Err(OrgError::Param {
                param: "LookupDomain",
                ..
            })
        ));
        p.lookup_domain = "bl.example".into();
        p.bitmask_match = Some("127.0.0".into());
        assert!(matches!(
            p.validate(),
            Err(OrgError::Param {
                param: "BitmaskMatch",
                ..
            })
        ));
        p.bitmask_match = None;
        p.rejection_response = Some("x".repeat(241));
        assert!(p.validate().is_err());
        p.rejection_response = Some("Listed at bl.example".into());
        assert!(p.validate().is_ok());
        assert_eq!(p.rejection(), "Listed at bl.example");
    }
}
