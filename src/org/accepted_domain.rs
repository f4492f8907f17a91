//! AcceptedDomain: the SMTP namespaces this organisation takes mail for.

use sqlx::PgPool;
use uuid::Uuid;

use super::OrgError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainType {
    Authoritative,
    InternalRelay,
    ExternalRelay,
}

impl DomainType {
    pub fn name(self) -> &'static str {
        match self {
            DomainType::Authoritative => "Authoritative",
            DomainType::InternalRelay => "InternalRelay",
            DomainType::ExternalRelay => "ExternalRelay",
        }
    }
    pub fn parse(s: &str) -> Option<DomainType> {
        [
            DomainType::Authoritative,
            DomainType::InternalRelay,
            DomainType::ExternalRelay,
        ]
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AcceptedDomain {
    pub id: Uuid,
    pub name: String,
    pub domain_name: String,
    pub domain_type: String,
    pub is_default: bool,
    pub address_book_enabled: bool,
    pub message_expiration_timeout: Option<i64>,
    pub delay_notification_timeout: Option<i64>,
}

/// Is `s` an SMTP domain (optionally `*.`-prefixed) as New-AcceptedDomain takes it?
pub fn valid_domain_name(s: &str) -> bool {
    let body = s.strip_prefix("*.").unwrap_or(s);
    !body.is_empty()
        && s.len() <= 256
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

impl AcceptedDomain {
    pub fn new(name: &str, domain_name: &str, domain_type: DomainType) -> AcceptedDomain {
        AcceptedDomain {
            id: Uuid::new_v4(),
            name: name.to_string(),
            domain_name: domain_name.to_ascii_lowercase(),
            domain_type: domain_type.name().to_string(),
            is_default: false,
            address_book_enabled: domain_type == DomainType::Authoritative,
            message_expiration_timeout: None,
            delay_notification_timeout: None,
        }
    }

    pub fn kind(&self) -> DomainType {
        DomainType::parse(&self.domain_type).unwrap_or(DomainType::Authoritative)
    }

    /// Does this accepted domain cover `domain` (exactly, or as a subdomain of a `*.` entry)?
    pub fn matches(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        match self.domain_name.strip_prefix("*.") {
            Some(base) => d == base || d.ends_with(&format!(".{base}")),
            None => d == self.domain_name,
        }
    }

    pub fn validate(&self) -> Result<(), OrgError> {
        if !valid_domain_name(&self.domain_name) {
            return Err(super::invalid(
                "DomainName",
                format!(
                    "'{}' is not a valid SMTP domain. Use a domain such as contoso.com, or *.contoso.com for the domain and all its subdomains.",
                    self.domain_name
                ),
            ));
        }
        if DomainType::parse(&self.domain_type).is_none() {
            return Err(super::invalid(
                "DomainType",
                format!(
                    "'{}' is not a valid DomainType. Valid values: Authoritative, InternalRelay, ExternalRelay.",
                    self.domain_type
                ),
            ));
        }
        if self.name.trim().is_empty() || self.name.len() > 64 {
            return Err(super::invalid("Name", "Name must be 1 to 64 characters."));
        }
        Ok(())
    }

    /// Inserts inside the caller's transaction; the first domain becomes the default.
    pub async fn insert_in(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        self.validate()?;
        let any: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM accepted_domain LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
        let mut d = self.clone();
        d.is_default = self.is_default || any.is_none();
        d.save(conn, false).await
    }

    /// Saves every field. Making a domain the default takes the flag from the previous one.
    pub async fn update(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        self.validate()?;
        self.save(conn, true).await
    }

    async fn save(&self, conn: &mut sqlx::PgConnection, existing: bool) -> Result<(), OrgError> {
        if self.is_default {
            sqlx::query(
                "UPDATE accepted_domain SET is_default = false WHERE is_default AND id <> $1",
            )
            .bind(self.id)
            .execute(&mut *conn)
            .await?;
        }
        if existing {
            sqlx::query("DELETE FROM accepted_domain WHERE id = $1")
                .bind(self.id)
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query(
            "INSERT INTO accepted_domain (id, name, domain_name, domain_type, is_default, address_book_enabled,
                                          message_expiration_timeout, delay_notification_timeout)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(self.id)
        .bind(&self.name)
        .bind(&self.domain_name)
        .bind(&self.domain_type)
        .bind(self.is_default)
        .bind(self.address_book_enabled)
        .bind(self.message_expiration_timeout)
        .bind(self.delay_notification_timeout)
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            // Two unique columns: say which one collided (the name's constraint,
            // accepted_domain_name_key, also contains "domain_name").
            let on_domain = matches!(&e, sqlx::Error::Database(d)
                if d.constraint() == Some("accepted_domain_domain_name_key"));
            if on_domain {
                super::invalid(
                    "DomainName",
                    format!(
                        "The domain \"{}\" is already an accepted domain.",
                        self.domain_name
                    ),
                )
            } else {
                OrgError::from_unique(e, "AcceptedDomain", &self.name)
            }
        })?;
        Ok(())
    }

    /// Exchange refuses to remove the default accepted domain.
    pub async fn delete(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        if self.is_default {
            return Err(super::invalid(
                "Identity",
                format!(
                    "The accepted domain \"{}\" is the default domain and cannot be removed. Make another accepted domain the default first.",
                    self.name
                ),
            ));
        }
        sqlx::query("DELETE FROM accepted_domain WHERE id = $1")
            .bind(self.id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    pub async fn load_all_in(
        conn: &mut sqlx::PgConnection,
    ) -> Result<Vec<AcceptedDomain>, OrgError> {
        Ok(
            sqlx::query_as::<_, AcceptedDomain>("SELECT * FROM accepted_domain ORDER BY name")
                .fetch_all(&mut *conn)
                .await?,
        )
    }

    /// `insert_in` in a transaction of its own.
    pub async fn insert(&self, pool: &PgPool) -> Result<(), OrgError> {
        let mut tx = pool.begin().await?;
        self.insert_in(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn load_all(pool: &PgPool) -> Result<Vec<AcceptedDomain>, OrgError> {
        Ok(
            sqlx::query_as::<_, AcceptedDomain>("SELECT * FROM accepted_domain ORDER BY name")
                .fetch_all(pool)
                .await?,
        )
    }
}

/// The accepted domain that covers `domain`; the most specific entry wins (exact over `*.`, longer over shorter).
pub fn find<'a>(domains: &'a [AcceptedDomain], domain: &str) -> Option<&'a AcceptedDomain> {
    domains
        .iter()
        .filter(|d| d.matches(domain))
        .max_by_key(|d| {
            (
                !d.domain_name.starts_with("*."),
                d.domain_name.trim_start_matches("*.").len(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_and_exact_matching() {
        let ds = vec![
            AcceptedDomain::new("a", "*.contoso.com", DomainType::ExternalRelay),
            AcceptedDomain::new("b", "sales.contoso.com", DomainType::Authoritative),
        ];
        assert_eq!(find(&ds, "CONTOSO.com").unwrap().name, "a");
        assert_eq!(find(&ds, "x.y.contoso.com").unwrap().name, "a");
        assert_eq!(find(&ds, "sales.contoso.com").unwrap().name, "b");
        assert!(find(&ds, "notcontoso.com").is_none());
        assert!(valid_domain_name("*.contoso.com"));
        assert!(!valid_domain_name("a.*.contoso.com"));
        assert!(!valid_domain_name("contoso..com"));
    }
}
