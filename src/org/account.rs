//! Accounts: console administrators and SMTP AUTH identities (argon2id hashes).

use std::sync::OnceLock;

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

fn verify_hash(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash nobody knows the password of, made with the same parameters as real ones (it is made
/// by `hash_password`, so it follows them if the defaults change).
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let secret: [u8; 32] = rand::random();
        let text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        // The default parameters cannot fail to hash; the fallback only keeps this total.
        hash_password(&text).unwrap_or_default()
    })
}

/// Checks `password` against the account's hash, or against `dummy_hash` when there is no such
/// account, so that an unknown name takes as long to refuse as a wrong password and timing does
/// not tell which accounts exist. Runs argon2: call it on the blocking pool.
pub fn verify_or_dummy(account: Option<&Account>, password: &str) -> bool {
    match account {
        Some(a) => a.verify(password),
        None => {
            verify_hash(dummy_hash(), password);
            false
        }
    }
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
        verify_hash(&self.password_hash, password)
    }

    pub fn is_member(&self, group: &str) -> bool {
        self.member_of.iter().any(|g| g.eq_ignore_ascii_case(group))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal cost is what makes the two refusals take equally long.
    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let real = hash_password("a real password").unwrap();
        let real = PasswordHash::new(&real).unwrap();
        let dummy = PasswordHash::new(dummy_hash()).unwrap();
        assert_eq!(real.algorithm, dummy.algorithm);
        assert_eq!(real.version, dummy.version);
        assert_eq!(real.params, dummy.params);
        assert!(!verify_or_dummy(None, ""));
    }
}
