//! SenderFilterConfig: the Sender Filter agent's organisation-wide settings
//! (Set-SenderFilterConfig), and the match of a MAIL FROM address against them.

use super::OrgError;

/// Exchange's BlockedSenderAction values; hubgate carries out Reject only (StampStatus feeds the
/// Content Filter agent's SCL, which hubgate does not have).
pub const ACTIONS: &[&str] = &["Reject", "StampStatus"];

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SenderFilterConfig {
    pub enabled: bool,
    /// The agent acts on anonymous (external) sessions.
    pub external_mail_enabled: bool,
    /// The agent acts on authenticated (internal) sessions too.
    pub internal_mail_enabled: bool,
    pub blocked_senders: Vec<String>,
    pub blocked_domains: Vec<String>,
    pub blocked_domains_and_subdomains: Vec<String>,
    pub blank_sender_blocking_enabled: bool,
    pub action: String,
}

impl Default for SenderFilterConfig {
    /// Exchange's defaults: enabled, nothing blocked, blank senders accepted, Reject.
    fn default() -> Self {
        SenderFilterConfig {
            enabled: true,
            external_mail_enabled: true,
            internal_mail_enabled: false,
            blocked_senders: vec![],
            blocked_domains: vec![],
            blocked_domains_and_subdomains: vec![],
            blank_sender_blocking_enabled: false,
            action: "Reject".into(),
        }
    }
}

/// Why a sender is refused: what the logs say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    Blank,
    Sender(String),
    Domain(String),
    DomainOrSubdomain(String),
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Blocked::Blank => write!(f, "blank sender (BlankSenderBlockingEnabled)"),
            Blocked::Sender(s) => write!(f, "{s} is in BlockedSenders"),
            Blocked::Domain(d) => write!(f, "{d} is in BlockedDomains"),
            Blocked::DomainOrSubdomain(d) => {
                write!(f, "{d} is in BlockedDomainsAndSubdomains")
            }
        }
    }
}

/// Is `s` an SMTP address as BlockedSenders takes it (local@domain, no wildcard)?
fn valid_address(s: &str) -> bool {
    s.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !local.contains(['<', '>', ' ', ',']) && valid_domain(domain)
    })
}

/// Is `s` an SMTP domain as BlockedDomains takes it (no `@`, no wildcard)?
fn valid_domain(s: &str) -> bool {
    !s.starts_with("*.") && super::accepted_domain::valid_domain_name(s)
}

impl SenderFilterConfig {
    pub async fn load_in(conn: &mut sqlx::PgConnection) -> Result<SenderFilterConfig, OrgError> {
        Ok(sqlx::query_as::<_, SenderFilterConfig>(
            "SELECT enabled, external_mail_enabled, internal_mail_enabled, blocked_senders,
                    blocked_domains, blocked_domains_and_subdomains, blank_sender_blocking_enabled,
                    action
             FROM sender_filter_config",
        )
        .fetch_one(&mut *conn)
        .await?)
    }

    pub async fn load(pool: &sqlx::PgPool) -> Result<SenderFilterConfig, OrgError> {
        let mut conn = pool.acquire().await?;
        Self::load_in(&mut conn).await
    }

    /// Every address and domain checked and put in lower case; StampStatus refused.
    pub fn normalize(&mut self) -> Result<(), OrgError> {
        if self.action == "StampStatus" {
            return Err(super::invalid(
                "Action",
                "Action StampStatus is not supported: hubgate has no Content Filter agent to \
                 weigh the stamp. Use Reject.",
            ));
        }
        for s in &mut self.blocked_senders {
            *s = s.trim().to_ascii_lowercase();
            if !valid_address(s) {
                return Err(super::invalid(
                    "BlockedSenders",
                    format!("'{s}' is not a valid SMTP address."),
                ));
            }
        }
        for (param, list) in [
            ("BlockedDomains", &mut self.blocked_domains),
            (
                "BlockedDomainsAndSubdomains",
                &mut self.blocked_domains_and_subdomains,
            ),
        ] {
            for d in list.iter_mut() {
                *d = d.trim().trim_end_matches('.').to_ascii_lowercase();
                if !valid_domain(d) {
                    return Err(super::invalid(
                        param,
                        format!("'{d}' is not a valid SMTP domain."),
                    ));
                }
            }
        }
        Ok(())
    }

    pub async fn update(&mut self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        self.normalize()?;
        sqlx::query(
            "UPDATE sender_filter_config SET enabled = $1, blocked_senders = $2, blocked_domains = $3,
               blocked_domains_and_subdomains = $4, blank_sender_blocking_enabled = $5, action = $6,
               external_mail_enabled = $7, internal_mail_enabled = $8",
        )
        .bind(self.enabled)
        .bind(&self.blocked_senders)
        .bind(&self.blocked_domains)
        .bind(&self.blocked_domains_and_subdomains)
        .bind(self.blank_sender_blocking_enabled)
        .bind(&self.action)
        .bind(self.external_mail_enabled)
        .bind(self.internal_mail_enabled)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// The reason `from` (the MAIL FROM address, empty for `<>`) is blocked, if it is.
    pub fn blocks(&self, from: &str) -> Option<Blocked> {
        if !self.enabled {
            return None;
        }
        if from.is_empty() {
            return self.blank_sender_blocking_enabled.then_some(Blocked::Blank);
        }
        let from = from.to_ascii_lowercase();
        if self.blocked_senders.contains(&from) {
            return Some(Blocked::Sender(from));
        }
        let domain = from.rsplit_once('@')?.1.trim_end_matches('.');
        if self.blocked_domains.iter().any(|d| d == domain) {
            return Some(Blocked::Domain(domain.to_string()));
        }
        self.blocked_domains_and_subdomains
            .iter()
            .find(|d| {
                domain == d.as_str()
                    || domain
                        .strip_suffix(d.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            })
            .map(|d| Blocked::DomainOrSubdomain(d.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SenderFilterConfig {
        SenderFilterConfig {
            blocked_senders: vec!["spam@example.net".into()],
            blocked_domains: vec!["bad.example".into()],
            blocked_domains_and_subdomains: vec!["worse.example".into()],
            ..SenderFilterConfig::default()
        }
    }

    #[test]
    fn matches_as_exchange_does() {
        let c = config();
        assert!(matches!(
            c.blocks("Spam@Example.NET"),
            Some(Blocked::Sender(_))
        ));
        assert_eq!(c.blocks("other@example.net"), None);
        assert!(matches!(
            c.blocks("x@bad.example"),
            Some(Blocked::Domain(_))
        ));
        assert_eq!(c.blocks("x@sub.bad.example"), None);
        assert!(c.blocks("x@worse.example").is_some());
        assert!(c.blocks("x@a.b.worse.example").is_some());
        assert_eq!(c.blocks("x@notworse.example"), None);
        assert_eq!(c.blocks(""), None);
        let blank = SenderFilterConfig {
            blank_sender_blocking_enabled: true,
            ..config()
        };
        assert_eq!(blank.blocks(""), Some(Blocked::Blank));
        let off = SenderFilterConfig {
            enabled: false,
            ..blank
        };
        assert_eq!(off.blocks("spam@example.net"), None);
        assert_eq!(off.blocks(""), None);
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        for (c, param) in [
            (
                SenderFilterConfig {
                    blocked_senders: vec!["not-an-address".into()],
                    ..Default::default()
                },
                "BlockedSenders",
            ),
            (
                SenderFilterConfig {
                    blocked_domains: vec!["user@bad.example".into()],
                    ..Default::default()
                },
                "BlockedDomains",
            ),
            (
                SenderFilterConfig {
                    blocked_domains_and_subdomains: vec!["*.bad.example".into()],
                    ..Default::default()
                },
                "BlockedDomainsAndSubdomains",
            ),
            (
                SenderFilterConfig {
                    action: "StampStatus".into(),
                    ..Default::default()
                },
                "Action",
            ),
        ] {
            let mut c = c;
            match c.normalize() {
                Err(OrgError::Param { param: p, .. }) => assert_eq!(p, param),
                other => panic!("{param}: {other:?}"),
            }
        }
    }
}
