//! Accounts: console administrators and SMTP AUTH identities (argon2id hashes).

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use sqlx::PgPool;
use uuid::Uuid;

use super::OrgError;

pub const ORGANIZATION_MANAGEMENT: &str = "Organization Management";
pub const EXCHANGE_SERVERS: &str = "Exchange Servers";
pub const PARTNER_SERVERS: &str = "Partner Servers";

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Account {
    pub id: Uuid,
    pub name: String,
    pub password_hash: String,
    pub member_of: Vec<String>,
}

pub fn hash_password(password: &str) -> Result<String, OrgError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h: PasswordHash| h.to_string())
        .map_err(|e| OrgError::Invalid(format!("password hash: {e}")))
}

impl Account {
    pub async fn create(
        pool: &PgPool,
        name: &str,
        password: &str,
        member_of: &[&str],
    ) -> Result<Account, OrgError> {
        let account = Account {
            id: Uuid::new_v4(),
            name: name.to_string(),
            password_hash: hash_password(password)?,
            member_of: member_of.iter().map(|s| s.to_string()).collect(),
        };
        sqlx::query(
            "INSERT INTO account (id, name, password_hash, member_of) VALUES ($1, $2, $3, $4)",
        )
        .bind(account.id)
        .bind(&account.name)
        .bind(&account.password_hash)
        .bind(&account.member_of)
        .execute(pool)
        .await
        .map_err(|e| OrgError::from_unique(e, "Account", name))?;
        Ok(account)
    }

    pub async fn find(pool: &PgPool, name: &str) -> Result<Option<Account>, OrgError> {
        Ok(
            sqlx::query_as::<_, Account>("SELECT * FROM account WHERE lower(name) = lower($1)")
                .bind(name)
                .fetch_optional(pool)
                .await?,
        )
    }

    /// argon2 is deliberately slow, so callers run this on the blocking pool.
    pub fn verify(&self, password: &str) -> bool {
        PasswordHash::new(&self.password_hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    }

    pub fn is_member(&self, group: &str) -> bool {
        self.member_of.iter().any(|g| g.eq_ignore_ascii_case(group))
    }
}
