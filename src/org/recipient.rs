//! The directory: mailboxes (delivered locally) and mail contacts / mail users (forwarded).

use sqlx::PgPool;
use uuid::Uuid;

use super::OrgError;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Recipient {
    pub id: Uuid,
    pub name: String,
    pub recipient_type: String,
    pub primary_smtp_address: String,
    pub external_email_address: Option<String>,
}

impl Recipient {
    pub fn mailbox(name: &str, address: &str) -> Recipient {
        Recipient {
            id: Uuid::new_v4(),
            name: name.to_string(),
            recipient_type: "Mailbox".into(),
            primary_smtp_address: address.to_string(),
            external_email_address: None,
        }
    }

    /// `insert_in` in a transaction of its own.
    pub async fn insert(&self, pool: &PgPool, extra_addresses: &[String]) -> Result<(), OrgError> {
        let mut tx = pool.begin().await?;
        self.insert_in(&mut tx, extra_addresses).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Looks a recipient up by any of its SMTP addresses.
    pub async fn find_by_address(
        pool: &PgPool,
        address: &str,
    ) -> Result<Option<Recipient>, OrgError> {
        Ok(sqlx::query_as::<_, Recipient>(
            "SELECT r.* FROM recipient r JOIN recipient_address a ON a.recipient_id = r.id WHERE a.address = lower($1)",
        )
        .bind(address)
        .fetch_optional(pool)
        .await?)
    }

    pub fn mail_contact(name: &str, external: &str) -> Recipient {
        Recipient {
            id: Uuid::new_v4(),
            name: name.to_string(),
            recipient_type: "MailContact".into(),
            primary_smtp_address: external.to_string(),
            external_email_address: Some(external.to_string()),
        }
    }

    pub fn validate(&self, extra_addresses: &[String]) -> Result<(), OrgError> {
        if self.name.trim().is_empty() || self.name.len() > 64 {
            return Err(super::invalid("Name", "Name must be 1 to 64 characters."));
        }
        let addresses = std::iter::once(("PrimarySmtpAddress", &self.primary_smtp_address))
            .chain(
                self.external_email_address
                    .iter()
                    .map(|a| ("ExternalEmailAddress", a)),
            )
            .chain(extra_addresses.iter().map(|a| ("EmailAddresses", a)));
        for (param, a) in addresses {
            let ok = a.rsplit_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && super::accepted_domain::valid_domain_name(domain)
                    && !domain.starts_with("*.")
            });
            if !ok {
                return Err(super::invalid(
                    param,
                    format!("'{a}' is not a valid SMTP address."),
                ));
            }
        }
        Ok(())
    }

    /// Inserts inside the caller's transaction, with the primary and extra proxy addresses.
    pub async fn insert_in(
        &self,
        conn: &mut sqlx::PgConnection,
        extra_addresses: &[String],
    ) -> Result<(), OrgError> {
        self.validate(extra_addresses)?;
        sqlx::query(
            "INSERT INTO recipient (id, name, recipient_type, primary_smtp_address, external_email_address)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(self.id)
        .bind(&self.name)
        .bind(&self.recipient_type)
        .bind(&self.primary_smtp_address)
        .bind(&self.external_email_address)
        .execute(&mut *conn)
        .await
        .map_err(|e| OrgError::from_unique(e, "Recipient", &self.name))?;
        let mut all = vec![self.primary_smtp_address.to_lowercase()];
        for a in extra_addresses {
            if !all.contains(&a.to_lowercase()) {
                all.push(a.to_lowercase());
            }
        }
        for a in all {
            sqlx::query("INSERT INTO recipient_address (address, recipient_id) VALUES ($1, $2)")
                .bind(&a)
                .bind(self.id)
                .execute(&mut *conn)
                .await
                .map_err(|e| OrgError::from_unique(e, "EmailAddress", &a))?;
        }
        Ok(())
    }

    /// Saves the recipient and replaces its proxy addresses.
    pub async fn update(
        &self,
        conn: &mut sqlx::PgConnection,
        extra_addresses: &[String],
    ) -> Result<(), OrgError> {
        self.validate(extra_addresses)?;
        self.delete(conn).await?;
        self.insert_in(conn, extra_addresses).await
    }

    pub async fn delete(&self, conn: &mut sqlx::PgConnection) -> Result<(), OrgError> {
        sqlx::query("DELETE FROM recipient WHERE id = $1")
            .bind(self.id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Every recipient with its proxy addresses other than the primary one.
    pub async fn load_all(
        conn: &mut sqlx::PgConnection,
    ) -> Result<Vec<(Recipient, Vec<String>)>, OrgError> {
        let rs = sqlx::query_as::<_, Recipient>("SELECT * FROM recipient ORDER BY name")
            .fetch_all(&mut *conn)
            .await?;
        let addrs: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT recipient_id, address FROM recipient_address ORDER BY address")
                .fetch_all(&mut *conn)
                .await?;
        Ok(rs
            .into_iter()
            .map(|r| {
                let extra = addrs
                    .iter()
                    .filter(|(id, a)| {
                        *id == r.id && !a.eq_ignore_ascii_case(&r.primary_smtp_address)
                    })
                    .map(|(_, a)| a.clone())
                    .collect();
                (r, extra)
            })
            .collect())
    }
}
