//! First start: create what Exchange creates on a new Hub Transport server.

use sqlx::PgPool;

use super::account::{Account, ORGANIZATION_MANAGEMENT};
use super::{AcceptedDomain, DomainType, OrgError, ReceiveConnector, Recipient, TransportServer};

/// What the operator chose for the first start.
pub struct FirstStart<'a> {
    pub server_name: &'a str,
    pub fqdn: &'a str,
    /// Replaces `0.0.0.0:25` on `Default <SERVER>`.
    pub default_bindings: Option<Vec<String>>,
    /// Replaces `0.0.0.0:587` on `Client <SERVER>`.
    pub client_bindings: Option<Vec<String>>,
    pub admin_password: Option<&'a str>,
}

/// The generated administrator password, when one had to be made up.
pub struct Created {
    pub generated_password: Option<String>,
}

/// The server's short name as Exchange shows it in `SERVER\Connector`: the first label of the FQDN.
pub fn server_name_from_fqdn(fqdn: &str) -> String {
    fqdn.split('.').next().unwrap_or(fqdn).to_ascii_uppercase()
}

/// The organisation's first domain: the FQDN without its host label, when it has one.
fn organisation_domain(fqdn: &str) -> String {
    match fqdn.split_once('.') {
        Some((_, rest)) if rest.contains('.') || !rest.is_empty() => rest.to_ascii_lowercase(),
        _ => fqdn.to_ascii_lowercase(),
    }
}

/// Creates the server row and its defaults unless the server already exists. Idempotent.
pub async fn ensure_server(
    pool: &PgPool,
    first: &FirstStart<'_>,
) -> Result<Option<Created>, OrgError> {
    if TransportServer::load(pool, first.server_name)
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let mut tx = pool.begin().await?;
    TransportServer::create(&mut tx, first.server_name, first.fqdn).await?;
    tx.commit().await?;

    let server = first.server_name;
    let mut default = ReceiveConnector::new(server, &format!("Default {server}"), first.fqdn);
    default.bindings = first
        .default_bindings
        .clone()
        .unwrap_or_else(|| vec!["0.0.0.0:25".into()]);
    default.remote_ip_ranges = vec!["0.0.0.0-255.255.255.255".into(), "::/0".into()];
    default.auth_mechanism = ["Tls", "BasicAuth", "BasicAuthRequireTLS", "ExchangeServer"]
        .map(String::from)
        .to_vec();
    default.permission_groups = [
        "AnonymousUsers",
        "ExchangeUsers",
        "ExchangeServers",
        "ExchangeLegacyServers",
    ]
    .map(String::from)
    .to_vec();
    // Internet-facing: no delayed acknowledgement, unlike Exchange (see the Internet preset).
    default.max_acknowledgement_delay = 0;
    default.insert(pool).await?;

    let mut client = ReceiveConnector::new(server, &format!("Client {server}"), first.fqdn);
    client.bindings = first
        .client_bindings
        .clone()
        .unwrap_or_else(|| vec!["0.0.0.0:587".into()]);
    client.remote_ip_ranges = vec!["0.0.0.0-255.255.255.255".into(), "::/0".into()];
    client.auth_mechanism = ["Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS"]
        .map(String::from)
        .to_vec();
    client.permission_groups = vec!["ExchangeUsers".into()];
    client.enable_auth_gssapi = true;
    client.insert(pool).await?;

    let generated = match first.admin_password {
        Some(_) => None,
        None => Some(generate_password()),
    };
    let password = first
        .admin_password
        .map(str::to_string)
        .or_else(|| generated.clone())
        .unwrap_or_default();
    // A further node of the organisation finds the Administrator made by the first: a password
    // made up here would open nothing, so it is not shown.
    let generated = if Account::find(pool, "Administrator").await?.is_none() {
        Account::create(pool, "Administrator", &password, &[ORGANIZATION_MANAGEMENT]).await?;
        generated
    } else {
        None
    };

    // A gateway with no accepted domain takes no mail at all; Exchange starts with the forest's
    // domain as the default Authoritative one, and an Administrator mailbox in it.
    if AcceptedDomain::load_all(pool).await?.is_empty() {
        let domain = organisation_domain(first.fqdn);
        let mut d = AcceptedDomain::new(&domain, &domain, DomainType::Authoritative);
        d.is_default = true;
        d.insert(pool).await?;
        if Recipient::find_by_address(pool, &format!("administrator@{domain}"))
            .await?
            .is_none()
        {
            Recipient::mailbox("Administrator", &format!("administrator@{domain}"))
                .insert(pool, &[format!("postmaster@{domain}")])
                .await?;
        }
    }
    Ok(Some(Created {
        generated_password: generated,
    }))
}

fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_fqdn() {
        assert_eq!(server_name_from_fqdn("hub01.contoso.com"), "HUB01");
        assert_eq!(organisation_domain("hub01.contoso.com"), "contoso.com");
        assert_eq!(organisation_domain("localhost"), "localhost");
        assert_eq!(generate_password().len(), 20);
    }
}
