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

    /// Inserts the recipient with its primary and extra proxy addresses.
    pub async fn insert(&self, pool: &PgPool, extra_addresses: &[String]) -> Result<(), OrgError> {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO recipient (id, name, recipient_type, primary_smtp_address, external_email_address)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(self.id)
        .bind(&self.name)
        .bind(&self.recipient_type)
        .bind(&self.primary_smtp_address)
        .bind(&self.external_email_address)
        .execute(&mut *tx)
        .await
        .map_err(|e| OrgError::from_unique(e, "Recipient", &self.name))?;
        let mut all = vec![self.primary_smtp_address.clone()];
        all.extend(extra_addresses.iter().cloned());
        for a in all {
            sqlx::query("INSERT INTO recipient_address (address, recipient_id) VALUES ($1, $2)")
                .bind(a.to_lowercase())
                .bind(self.id)
                .execute(&mut *tx)
                .await
                .map_err(|e| OrgError::from_unique(e, "EmailAddress", &a))?;
        }
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
}
