//! The Recipient Filter agent's organisation-wide settings (Set-RecipientFilterConfig), hubgate's
//! imported valid recipients of relay domains, and the stored results of recipient callouts.

use std::collections::{HashMap, HashSet};

use futures_util::TryStreamExt;
use sqlx::PgPool;
use time::OffsetDateTime;

use super::OrgError;

/// Exchange accepts at most this many BlockedRecipients.
pub const MAX_BLOCKED_RECIPIENTS: usize = 800;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RecipientFilterConfig {
    pub enabled: bool,
    /// The agent acts on anonymous (external) sessions.
    pub external_mail_enabled: bool,
    /// The agent acts on authenticated (internal) sessions too.
    pub internal_mail_enabled: bool,
    pub recipient_validation_enabled: bool,
    pub block_list_enabled: bool,
    pub blocked_recipients: Vec<String>,
    /// hubgate's: whether a relay domain without an imported list is validated by callout.
    pub recipient_callout_enabled: bool,
    /// hubgate's: the whole callout (connect, EHLO, MAIL, RCPT) in seconds.
    pub recipient_callout_timeout: i64,
    /// hubgate's: how long a callout's "valid" and "unknown" answers are used without asking again.
    pub recipient_callout_valid_cache_timeout: i64,
    pub recipient_callout_unknown_cache_timeout: i64,
}

impl Default for RecipientFilterConfig {
    /// Exchange's defaults: the agent on, validation and the block list off.
    fn default() -> Self {
        RecipientFilterConfig {
            enabled: true,
            external_mail_enabled: true,
            internal_mail_enabled: false,
            recipient_validation_enabled: false,
            block_list_enabled: false,
            blocked_recipients: Vec::new(),
            recipient_callout_enabled: true,
            recipient_callout_timeout: 10,
            recipient_callout_valid_cache_timeout: 7 * 86400,
            recipient_callout_unknown_cache_timeout: 2 * 3600,
        }
    }
}

const COLUMNS: &str =
    "enabled, external_mail_enabled, internal_mail_enabled, recipient_validation_enabled, block_list_enabled,
    blocked_recipients, recipient_callout_enabled, recipient_callout_timeout,
    recipient_callout_valid_cache_timeout, recipient_callout_unknown_cache_timeout";

impl RecipientFilterConfig {
    pub async fn load(pool: &PgPool) -> Result<Self, OrgError> {
        let mut conn = pool.acquire().await?;
        Self::load_in(&mut conn).await
    }

    pub async fn load_in(conn: &mut sqlx::PgConnection) -> Result<Self, OrgError> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM recipient_filter_config"))
                .fetch_one(&mut *conn)
                .await?,
        )
    }

    /// Is `address` on BlockedRecipients (compared without case)?
    pub fn blocks(&self, address: &str) -> bool {
        self.blocked_recipients
            .iter()
            .any(|b| b.eq_ignore_ascii_case(address.trim()))
    }

    pub fn validate(&self) -> Result<(), OrgError> {
        if self.blocked_recipients.len() > MAX_BLOCKED_RECIPIENTS {
            return Err(super::invalid(
                "BlockedRecipients",
                format!(
                    "BlockedRecipients holds at most {MAX_BLOCKED_RECIPIENTS} addresses; {} were given.",
                    self.blocked_recipients.len()
                ),
            ));
        }
        if let Some(bad) = self
            .blocked_recipients
            .iter()
            .find(|a| parse_address(a).is_err())
        {
            return Err(super::invalid(
                "BlockedRecipients",
                format!("\"{bad}\" is not a valid SMTP address."),
            ));
        }
        Ok(())
    }

    pub async fn update(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        self.validate()?;
        sqlx::query(
            "UPDATE recipient_filter_config SET enabled = $1, external_mail_enabled = $2,
               recipient_validation_enabled = $3, block_list_enabled = $4, blocked_recipients = $5,
               recipient_callout_enabled = $6, recipient_callout_timeout = $7,
               recipient_callout_valid_cache_timeout = $8, recipient_callout_unknown_cache_timeout = $9,
               internal_mail_enabled = $10",
        )
        .bind(self.enabled)
        .bind(self.external_mail_enabled)
        .bind(self.recipient_validation_enabled)
        .bind(self.block_list_enabled)
        .bind(&self.blocked_recipients)
        .bind(self.recipient_callout_enabled)
        .bind(self.recipient_callout_timeout)
        .bind(self.recipient_callout_valid_cache_timeout)
        .bind(self.recipient_callout_unknown_cache_timeout)
        .bind(self.internal_mail_enabled)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// An SMTP address as the valid-recipient list and BlockedRecipients take it: `local@domain`, with
/// a plain local part and a valid domain; returned lower-cased with its domain.
pub fn parse_address(s: &str) -> Result<(String, String), String> {
    let a = s.trim();
    let bad = || format!("\"{s}\" is not a valid SMTP address.");
    let (local, domain) = a.rsplit_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    if !local_ok || domain.starts_with("*.") || !super::accepted_domain::valid_domain_name(domain) {
        return Err(bad());
    }
    Ok((a.to_ascii_lowercase(), domain.to_ascii_lowercase()))
}

/// One stored callout result.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CalloutResult {
    pub address: String,
    pub valid: bool,
    /// The next hop's reply to RCPT, for the logs.
    pub reply: String,
    pub checked_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl CalloutResult {
    /// The `max` most recent results, for the in-memory cache at start.
    pub async fn load_recent(pool: &PgPool, max: i64) -> Result<Vec<CalloutResult>, OrgError> {
        Ok(sqlx::query_as(
            "SELECT address, valid, reply, checked_at, expires_at FROM recipient_callout
             ORDER BY checked_at DESC LIMIT $1",
        )
        .bind(max)
        .fetch_all(pool)
        .await?)
    }

    pub async fn save(&self, pool: &PgPool) -> Result<(), OrgError> {
        sqlx::query(
            "INSERT INTO recipient_callout (address, valid, reply, checked_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (address) DO UPDATE SET valid = $2, reply = $3, checked_at = $4, expires_at = $5",
        )
        .bind(&self.address)
        .bind(self.valid)
        .bind(&self.reply)
        .bind(self.checked_at)
        .bind(self.expires_at)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Keeps the table to the `max` most recent rows: unknown addresses are the client's to
    /// choose, so what they may make us store is bounded.
    pub async fn prune(pool: &PgPool, max: i64) -> Result<u64, OrgError> {
        let done = sqlx::query(
            "DELETE FROM recipient_callout WHERE address IN (
                SELECT address FROM recipient_callout ORDER BY checked_at DESC OFFSET $1)",
        )
        .bind(max)
        .execute(pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// hubgate's imported valid recipients of relay domains as the gateway holds them: each listed
/// domain with its addresses' local parts. Read whole at start and again whenever the list
/// changes (the configuration reload on NOTIFY, on every node), so a RCPT costs no query; the
/// memory it takes grows with the list alone.
#[derive(Default)]
pub struct ValidRecipients {
    by_domain: HashMap<Box<str>, HashSet<Box<str>>>,
    count: usize,
}

impl std::fmt::Debug for ValidRecipients {
    // The addresses themselves stay out of debug output (a snapshot may be logged whole).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidRecipients")
            .field("domains", &self.by_domain.len())
            .field("addresses", &self.count)
            .finish()
    }
}

impl ValidRecipients {
    /// The whole `valid_recipient` table, streamed (not collected into rows first).
    pub async fn load(pool: &PgPool) -> Result<ValidRecipients, OrgError> {
        let mut rows =
            sqlx::query_as::<_, (String, String)>("SELECT address, domain FROM valid_recipient")
                .fetch(pool);
        let mut list = ValidRecipients::default();
        while let Some((address, domain)) = rows.try_next().await? {
            list.insert(&address, &domain);
        }
        Ok(list)
    }

    /// Adds `address` (lower case, as stored) of `domain`.
    pub fn insert(&mut self, address: &str, domain: &str) {
        let local = local_part(address);
        let added = match self.by_domain.get_mut(domain) {
            Some(set) => set.insert(local.into()),
            None => {
                let set = HashSet::from([Box::<str>::from(local)]);
                self.by_domain.insert(domain.into(), set);
                true
            }
        };
        if added {
            self.count += 1;
        }
    }

    /// What the list says of `address` (lower-cased) of `domain`: None when the domain has no
    /// list (it is then validated otherwise).
    pub fn lookup(&self, address: &str, domain: &str) -> Option<bool> {
        self.by_domain
            .get(domain)
            .map(|set| set.contains(local_part(address)))
    }

    /// How many addresses are held.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

fn local_part(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(local, _)| local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            parse_address(" Bob.Smith@Primary.Example ").unwrap(),
            ("bob.smith@primary.example".into(), "primary.example".into())
        );
        for bad in [
            "bob",
            "@primary.example",
            "bob@",
            "bob@*.primary.example",
            "b ob@primary.example",
            "bob..x@primary.example",
            "bob@primary..example",
            "<bob@primary.example>",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_imported_list_answers_for_its_domains_only() {
        let mut list = ValidRecipients::default();
        list.insert("alice@primary.example", "primary.example");
        list.insert("bob@primary.example", "primary.example");
        list.insert("bob@primary.example", "primary.example");
        list.insert("carol@other.example", "other.example");
        assert_eq!(list.len(), 3);
        let at = |a: &str, d: &str| list.lookup(a, d);
        assert_eq!(at("alice@primary.example", "primary.example"), Some(true));
        assert_eq!(at("carol@primary.example", "primary.example"), Some(false));
        assert_eq!(at("carol@other.example", "other.example"), Some(true));
        assert_eq!(at("alice@unlisted.example", "unlisted.example"), None);
        assert!(!format!("{list:?}").contains("alice"));
    }

    #[test]
    fn blocked_recipients_compare_without_case() {
        let c = RecipientFilterConfig {
            blocked_recipients: vec!["Trap@Primary.Example".into()],
            ..Default::default()
        };
        assert!(c.blocks("trap@primary.example"));
        assert!(!c.blocks("other@primary.example"));
        let too_many = RecipientFilterConfig {
            blocked_recipients: (0..801).map(|i| format!("u{i}@x.example")).collect(),
            ..Default::default()
        };
        assert!(too_many.validate().is_err());
    }
}
