//! `hubgate restore`: a backup script run in restore mode, and the lines only a backup writes.
//!
//! A restore follows a first start (the node's own server, its default connectors, the
//! Administrator), so a New- line may meet its object already there. It then makes the object
//! what the line says: a connector or recipient is removed and created again inside the same
//! transaction (so properties the line leaves at their defaults are reset too); an accepted
//! domain, which may be the default and cannot be removed, is Set. Nothing the script does not
//! name is removed. Lines about another server, or a certificate this node does not hold, are
//! skipped with a warning: a restore on that node (the same script) applies them.

use sqlx::PgConnection;
use uuid::Uuid;

use super::bind::{Arg, Bound};
use super::cmdlets::{Cmdlet, Op};
use super::{Obj, Shell, ShellError};
use crate::ops::{Identity, accepted_domain, receive_connector, recipient, send_connector};
use crate::org::OrgError;
use crate::org::account::hash_password;

/// What restore mode does with one stage-0 cmdlet before it runs.
pub enum Before {
    /// Run it as written.
    Run,
    /// Done here (or skipped): these objects are its output.
    Done(Vec<Obj>),
}

async fn id_where(
    tx: &mut PgConnection,
    sql: &str,
    binds: &[&str],
) -> Result<Option<Uuid>, ShellError> {
    let mut q = sqlx::query_scalar::<_, Uuid>(sql);
    for b in binds {
        q = q.bind(*b);
    }
    Ok(q.fetch_optional(&mut *tx).await?)
}

async fn server_exists(tx: &mut PgConnection, server: &str) -> Result<bool, ShellError> {
    let short = crate::org::bootstrap::server_name_from_fqdn(server);
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transport_server WHERE lower(name) = lower($1)")
            .bind(&short)
            .fetch_one(&mut *tx)
            .await?;
    Ok(n > 0)
}

fn skip(sh: &mut Shell, why: String) -> Before {
    sh.warnings.push(why);
    Before::Done(vec![])
}

fn another_server(server: &str) -> String {
    format!(
        "Server \"{server}\" is not in this organization yet: its lines were skipped. Run the same restore on that node to apply them."
    )
}

/// Restore mode's look at a stage-0 cmdlet: make room for a New- whose object exists, Set an
/// accepted domain that exists, skip what belongs to a server or certificate not here.
pub async fn before(
    sh: &mut Shell,
    tx: &mut PgConnection,
    c: &Cmdlet,
    b: &Bound,
) -> Result<Before, ShellError> {
    let name = b.str("Name").unwrap_or_default();
    match c.op {
        Op::NewAcceptedDomain => {
            let sql = "SELECT id FROM accepted_domain WHERE lower(name) = lower($1)";
            if let Some(id) = id_where(tx, sql, &[&name]).await? {
                let set = super::cmdlets::find("Set-AcceptedDomain")
                    .ok_or_else(|| ShellError::UnknownCmdlet("Set-AcceptedDomain".into()))?;
                let values = super::config::values(b, &set.params);
                let target = Identity::Id { id, shown: name };
                accepted_domain::set(tx, &target, &values).await?;
                return Ok(Before::Done(vec![]));
            }
        }
        Op::NewSendConnector => {
            let sql = "SELECT id FROM send_connector WHERE lower(name) = lower($1)";
            if let Some(id) = id_where(tx, sql, &[&name]).await? {
                send_connector::remove(tx, &Identity::Id { id, shown: name }).await?;
            }
        }
        Op::NewReceiveConnector => {
            let server = b
                .str("Server")
                .map(|s| crate::org::bootstrap::server_name_from_fqdn(&s))
                .unwrap_or_else(|| sh.server.clone());
            if !server_exists(tx, &server).await? {
                return Ok(skip(sh, another_server(&server)));
            }
            let sql = "SELECT id FROM receive_connector WHERE lower(server) = lower($1) AND lower(name) = lower($2)";
            if let Some(id) = id_where(tx, sql, &[&server, &name]).await? {
                let target = Identity::Id { id, shown: name };
                receive_connector::remove(tx, &sh.server, &target).await?;
            }
        }
        Op::NewRecipient(t) => {
            let sql =
                "SELECT id FROM recipient WHERE lower(name) = lower($1) AND recipient_type = $2";
            if let Some(id) = id_where(tx, sql, &[&name, t.name()]).await? {
                recipient::remove(tx, t, &Identity::Id { id, shown: name }).await?;
            }
        }
        Op::SetTransportServer => {
            if let Some(Arg::Str(server)) = b.get("Identity")
                && !server_exists(tx, server).await?
            {
                return Ok(skip(sh, another_server(server)));
            }
        }
        Op::AddADPermission => {
            if let Some(Arg::Str(id)) = b.get("Identity")
                && let Some((server, _)) = id.split_once('\\')
                && !server_exists(tx, server).await?
            {
                return Ok(skip(sh, another_server(server)));
            }
        }
        Op::Certificate(super::certificate::Op::Enable) => {
            let thumbprint = b.str("Thumbprint").unwrap_or_default();
            let dir = sh.data_dir.clone();
            let held = dir.is_some_and(|d| crate::ops::certificate::get(&d, &thumbprint).is_ok());
            if !held {
                return Ok(skip(
                    sh,
                    format!(
                        "Certificate {thumbprint} is not in this node's data directory: Import-ExchangeCertificate it, then run Enable-ExchangeCertificate -Thumbprint {thumbprint} -Services as the backup says."
                    ),
                ));
            }
        }
        Op::IpList(super::ip_list::Op {
            verb: super::ip_list::Verb::Add,
            allow,
        }) => return ip_list_entry(sh, tx, b, allow).await,
        _ => {}
    }
    Ok(Before::Run)
}

/// An Add-IP*ListEntry line: skipped when the same entry is there already (so that a restore
/// can be run again without doubling the lists), or when its ExpirationTime has passed since
/// the backup (the entry would no longer do anything, and the operation refuses a past time).
async fn ip_list_entry(
    sh: &mut Shell,
    tx: &mut PgConnection,
    b: &Bound,
    allow: bool,
) -> Result<Before, ShellError> {
    use crate::org::ip_list::{IpList, parse_address, parse_range};
    let list = if allow { IpList::Allow } else { IpList::Block };
    let parsed = match (b.str("IPAddress"), b.str("IPRange")) {
        (Some(a), None) => parse_address(&a).ok(),
        (None, Some(r)) => parse_range(&r).ok(),
        _ => None,
    };
    // Anything the operation would refuse is left to it, so that the restore stops with its error.
    let Some((range, _, _)) = parsed else {
        return Ok(Before::Run);
    };
    let expires = match b.str("ExpirationTime") {
        None => None,
        Some(s) => match super::queue::parse_datetime(&s) {
            Some(t) => Some(t),
            None => return Ok(Before::Run),
        },
    };
    if let Some(t) = expires
        && t <= time::OffsetDateTime::now_utc()
    {
        return Ok(skip(
            sh,
            format!(
                "The IP {} List entry {range} expired at {}: it was not restored.",
                list.as_str(),
                super::format::datetime(t)
            ),
        ));
    }
    let comment = b.str("Comment");
    let same: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ip_list_entry WHERE list = $1 AND ip_range = $2
            AND expiration_time IS NOT DISTINCT FROM $3 AND comment IS NOT DISTINCT FROM $4",
    )
    .bind(list.as_str())
    .bind(&range)
    .bind(expires)
    .bind(&comment)
    .fetch_one(&mut *tx)
    .await?;
    if same > 0 {
        return Ok(Before::Done(vec![]));
    }
    Ok(Before::Run)
}

/// New-User (hubgate's: Exchange's accounts were Active Directory's): a console administrator
/// or SMTP AUTH identity. Without a password it cannot sign in until one is given. In restore
/// mode an existing account is updated: its groups, and its password when the line has one.
pub async fn new_user(
    sh: &mut Shell,
    tx: &mut PgConnection,
    b: &Bound,
) -> Result<Vec<Obj>, ShellError> {
    let name = b.str("Name").unwrap_or_default();
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(ShellError::BadValue {
            param: "Name".into(),
            value: name,
            ty: "System.String",
            hint: "A user name must not be empty.".into(),
        });
    }
    let member_of = match b.get("MemberOf") {
        Some(Arg::List(l)) => l.clone(),
        Some(Arg::Str(s)) => vec![s.clone()],
        _ => vec![],
    };
    let hash = match (b.str("Password"), b.str("EncryptedPassword")) {
        (Some(_), Some(_)) => {
            return Err(ShellError::Parse(
                "New-User takes -Password or -EncryptedPassword, not both.".into(),
            ));
        }
        (Some(p), None) if p.is_empty() => {
            return Err(ShellError::BadValue {
                param: "Password".into(),
                value: String::new(),
                ty: "System.String",
                hint: "A password must not be empty.".into(),
            });
        }
        (Some(p), None) => Some(hash_password(&p)?),
        (None, Some(sealed)) => {
            let key = sh.organization_key().await?;
            let h = key
                .open(
                    &super::backup::account_purpose(&name),
                    &sealed,
                    &format!("password of user \"{name}\""),
                )
                .map_err(OrgError::from)?;
            // What opens is a stored hash; a malformed one would lock the account silently.
            argon2::PasswordHash::new(&h).map_err(|_| ShellError::BadValue {
                param: "EncryptedPassword".into(),
                value: String::new(),
                ty: "System.String",
                hint: "It does not hold a password hash.".into(),
            })?;
            Some(h)
        }
        (None, None) => None,
    };
    let existing: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM account WHERE lower(name) = lower($1)")
            .bind(&name)
            .fetch_optional(&mut *tx)
            .await?;
    match existing {
        Some(id) if sh.restore => {
            sqlx::query(
                "UPDATE account SET member_of = $2, password_hash = coalesce($3, password_hash) WHERE id = $1",
            )
            .bind(id)
            .bind(&member_of)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        }
        Some(_) => {
            return Err(OrgError::Duplicate { kind: "User", name }.into());
        }
        None => {
            let hash = match hash {
                Some(h) => h,
                None => {
                    sh.warnings.push(format!(
                        "User \"{name}\" has no password: it cannot sign in until it is given one (New-User -Password in a restore, or re-create it)."
                    ));
                    // A hash of a secret nobody holds: the account exists, and opens to nothing.
                    let secret: [u8; 32] = rand::random();
                    hash_password(
                        &secret
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>(),
                    )?
                }
            };
            sqlx::query(
                "INSERT INTO account (id, name, password_hash, member_of) VALUES ($1, $2, $3, $4)",
            )
            .bind(Uuid::new_v4())
            .bind(&name)
            .bind(&hash)
            .bind(&member_of)
            .execute(&mut *tx)
            .await?;
        }
    }
    Ok(vec![])
}

/// Get-Credential -EncryptedPassword: a smart-host password a backup carried sealed.
pub async fn open_credential(
    sh: &mut Shell,
    user: &str,
    sealed: &str,
) -> Result<String, ShellError> {
    let key = sh.organization_key().await?;
    Ok(key
        .open(
            &super::backup::credential_purpose(user),
            sealed,
            &format!("password of credential \"{user}\""),
        )
        .map_err(OrgError::from)?)
}
