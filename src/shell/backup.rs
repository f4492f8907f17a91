//! `hubgate backup`: the whole configuration as a script of the shell's own lines, written by the
//! same renderer as Export-Cmdlet (`render`), so that what a backup says is what the shell takes.
//!
//! Secrets stay out unless asked for. When asked, each one is carried sealed with the
//! organisation key under a purpose of its own (the stored form is sealed for its row, and a
//! restored row has a new id), so the script is only useful to a node holding the same key.

use std::path::Path;

use sqlx::PgConnection;

use super::{Obj, ShellError, render};
use crate::ops::props::quote as q;
use crate::org::org_key::OrganizationKey;
use crate::org::{
    AcceptedDomain, OrgError, ReceiveConnector, Recipient, SendConnector, TransportConfig,
    TransportServer,
};

/// What a backed-up smart-host password is sealed for (and nothing else opens it as).
pub fn credential_purpose(user: &str) -> Vec<u8> {
    format!("hubgate backup: credential {}", user.to_ascii_lowercase()).into_bytes()
}

/// What a backed-up account hash is sealed for.
pub fn account_purpose(name: &str) -> Vec<u8> {
    format!("hubgate backup: account {}", name.to_ascii_lowercase()).into_bytes()
}

/// The whole configuration as a script; `secrets` seals smart-host passwords and account hashes
/// into it. `data_dir` adds this node's certificate settings.
pub async fn script(
    conn: &mut PgConnection,
    data_dir: Option<&Path>,
    secrets: Option<&OrganizationKey>,
) -> Result<String, ShellError> {
    let mut out = String::from(
        "# hubgate configuration backup: run it with `hubgate restore FILE`.\n\
         # Objects that exist already are updated to what these lines say; nothing is removed.\n",
    );
    if secrets.is_none() {
        out.push_str("# Secrets are not included: each smart-host credential is asked for.\n");
    }
    out.push_str(&render::new_cmdlet(&Obj::TransportConfig(
        TransportConfig::load_in(conn).await?,
    )));
    out.push_str(&render::new_cmdlet(&Obj::SenderFilterConfig(
        crate::org::sender_filter::SenderFilterConfig::load_in(conn).await?,
    )));
    out.push_str(&render::new_cmdlet(&Obj::RecipientFilterConfig(
        crate::org::recipient_filter::RecipientFilterConfig::load_in(conn).await?,
    )));
    for s in TransportServer::load_all(conn).await? {
        out.push_str(&render::new_cmdlet(&Obj::TransportServer(s)));
    }
    for d in AcceptedDomain::load_all_in(conn).await? {
        out.push_str(&render::new_cmdlet(&Obj::AcceptedDomain(d)));
    }
    for (r, extra) in Recipient::load_all(conn).await? {
        out.push_str(&render::new_cmdlet(&Obj::Recipient(r, extra)));
    }
    for v in crate::ops::recipient_filter::get(conn, None, None).await? {
        out.push_str(&render::new_cmdlet(&Obj::ValidRecipient(v)));
    }
    out.push_str(&accounts(conn, secrets).await?);
    let mut connectors: Vec<(uuid::Uuid, String)> = vec![];
    for c in SendConnector::load_all_in(conn).await? {
        out.push_str(&send_connector(&c, secrets)?);
        connectors.push((c.id, c.name.clone()));
    }
    for c in ReceiveConnector::load_all(conn).await? {
        connectors.push((c.id, c.identity()));
        out.push_str(&render::new_cmdlet(&Obj::ReceiveConnector(c)));
    }
    // The entries the permission groups imply come back with the connectors' PermissionGroups.
    for (id, identity) in connectors {
        for p in crate::org::rights::load_acl(conn, id).await? {
            if p.permission_group.is_none() {
                out.push_str(&render::new_cmdlet(&Obj::AdPermission(identity.clone(), p)));
            }
        }
    }
    out.push_str(&ip_lists(conn).await?);
    if let Some(dir) = data_dir {
        out.push_str(&certificates(dir)?);
    }
    Ok(out)
}

/// The connector's line; its credential either asked for when the script runs, or sealed.
fn send_connector(
    c: &SendConnector,
    secrets: Option<&OrganizationKey>,
) -> Result<String, ShellError> {
    let text = render::new_cmdlet(&Obj::SendConnector(c.clone()));
    let (Some(key), Some(user)) = (secrets, &c.auth_username) else {
        return Ok(text);
    };
    let password = c
        .password(Some(key))
        .map_err(OrgError::from)?
        .unwrap_or_default();
    let sealed = key
        .seal(&credential_purpose(user), &password)
        .map_err(OrgError::from)?;
    let ask = format!("Get-Credential -UserName {}\n", q(user));
    let carried = format!(
        "Get-Credential -UserName {} -EncryptedPassword {}\n",
        q(user),
        q(&sealed)
    );
    // The renderer's comment says the password is asked for; here it is not.
    Ok(text
        .lines()
        .filter(|l| !l.starts_with("# The password of"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace(&ask, &carried))
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    name: String,
    password_hash: String,
    member_of: Vec<String>,
}

/// The accounts: console administrators and SMTP AUTH identities, hashes only when sealed.
async fn accounts(
    conn: &mut PgConnection,
    secrets: Option<&OrganizationKey>,
) -> Result<String, ShellError> {
    let rows: Vec<AccountRow> =
        sqlx::query_as("SELECT name, password_hash, member_of FROM account ORDER BY lower(name)")
            .fetch_all(&mut *conn)
            .await?;
    let mut out = String::new();
    for a in rows {
        let mut line = format!("New-User -Name {}", q(&a.name));
        if !a.member_of.is_empty() {
            let groups: Vec<String> = a.member_of.iter().map(|g| q(g)).collect();
            line.push_str(&format!(" -MemberOf {}", groups.join(",")));
        }
        if let Some(key) = secrets {
            let sealed = key
                .seal(&account_purpose(&a.name), &a.password_hash)
                .map_err(OrgError::from)?;
            line.push_str(&format!(" -EncryptedPassword {}", q(&sealed)));
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// The IP Allow List and IP Block List entries (Add-IP*ListEntry lines). An entry that has
/// expired is left out: it no longer does anything, and its ExpirationTime would be refused.
async fn ip_lists(conn: &mut PgConnection) -> Result<String, ShellError> {
    use crate::org::ip_list::IpList;
    let now = time::OffsetDateTime::now_utc();
    let mut out = String::new();
    for list in [IpList::Allow, IpList::Block] {
        for e in crate::ops::ip_list::get(conn, list, None, None).await? {
            if !e.has_expired(now) {
                out.push_str(&render::new_cmdlet(&Obj::IpListEntry(e)));
            }
        }
    }
    Ok(out)
}

/// This node's certificate settings: the services each certificate serves, and ACME's.
fn certificates(data_dir: &Path) -> Result<String, ShellError> {
    let mut out = String::new();
    let installed = if crate::tls::store::folder(data_dir).is_dir() {
        crate::ops::certificate::list(data_dir)?
    } else {
        vec![]
    };
    for c in installed {
        let mut services = vec![];
        if c.services.smtp {
            services.push("SMTP");
        }
        if c.services.iis {
            services.push("IIS");
        }
        if !services.is_empty() {
            out.push_str(&format!(
                "Enable-ExchangeCertificate -Thumbprint {} -Services {}\n",
                c.info.thumbprint,
                services.join(",")
            ));
        }
    }
    let (acme, _) = crate::ops::certificate::acme_config(data_dir)?;
    if acme != crate::tls::acme::AcmeSettings::default() {
        let mut line = format!(
            "Set-AcmeConfig -Enabled {} -DirectoryUrl {}",
            if acme.enabled { "$true" } else { "$false" },
            q(&acme.directory_url)
        );
        for (name, l) in [("Contact", &acme.contact), ("Domains", &acme.domains)] {
            if !l.is_empty() {
                let items: Vec<String> = l.iter().map(|s| q(s)).collect();
                line.push_str(&format!(" -{name} {}", items.join(",")));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}
