//! A send connector's smart-host credential: sent to its smart hosts only, never in clear with
//! BasicAuthRequireTLS, never printed by Export-Cmdlet, and sealed at rest with the organisation
//! key that every node must be given.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::dns::{Dns, Zone};
use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;
use hubgate::shell::Shell;

const PASSWORD: &str = "S3cret-Relay-pw";

/// A sink that offers AUTH without asking for it, so it shows whether a password was sent.
fn telling_sink(ip: &str, port: u16) -> Sink {
    Sink::with(
        addr(ip, port),
        SinkOptions {
            auth: Some(format!("relay:{PASSWORD}")),
            auth_optional: true,
            ..Default::default()
        },
    )
}

/// A shell on the test gateway's data directory, where the organisation key is made, with the
/// smart-host credential in `$cred`.
async fn admin_with_cred(s: &Setup) -> Shell {
    let mut sh = Shell::new(s.pool.clone(), FQDN).with_data_dir(s.data_dir.path().to_path_buf());
    run(
        &mut sh,
        &format!("$cred = Get-Credential -UserName relay -Password {PASSWORD}"),
    )
    .await;
    sh
}

async fn run(sh: &mut Shell, line: &str) -> String {
    sh.run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

async fn stored_passwords(pool: &sqlx::PgPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT name, auth_password FROM send_connector WHERE auth_password IS NOT NULL ORDER BY name")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn last_error(gw: &Gateway, next_hop: &str) -> Option<String> {
    sqlx::query_as::<_, (Option<String>,)>(
        "SELECT last_error FROM delivery_queue WHERE next_hop_domain = $1",
    )
    .bind(next_hop)
    .fetch_optional(gw.pool())
    .await
    .unwrap()
    .and_then(|(e,)| e)
}

#[tokio::test]
async fn the_credential_goes_to_smart_hosts_only_never_to_an_mx() {
    let port = free_port();
    let smart_host = telling_sink("127.0.0.161", port);
    let mx = telling_sink("127.0.0.162", port);
    let dns = Dns::start(
        "mx.example",
        Zone {
            mx: vec![("mx.example", 10, "mx1.mx.example")],
            a: vec![("mx1.mx.example", "127.0.0.162".parse().unwrap())],
        },
    )
    .await;
    let s = setup().await;
    let mut sh = admin_with_cred(&s).await;
    run(&mut sh, &format!(
        "New-SendConnector -Name Partner -AddressSpaces 'partner.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.161' -Port {port} -SmartHostAuthMechanism BasicAuth -AuthenticationCredential $cred"
    )).await;
    // The same credential on a connector that routes by MX: whoever the domain names as its
    // MX must not get it.
    run(&mut sh, &format!(
        "New-SendConnector -Name Internet -AddressSpaces 'mx.example' -DNSRoutingEnabled $true -UseExternalDNSServersEnabled $true -Port {port} -SmartHostAuthMechanism BasicAuth -AuthenticationCredential $cred"
    )).await;
    run(&mut sh, &format!(
        "Set-TransportServer HUB1 -ExternalDNSServers '{}' -TransientFailureRetryInterval 00:00:01",
        dns.addr
    )).await;

    // At rest: sealed, the key file private.
    for (name, stored) in stored_passwords(&s.pool).await {
        assert!(
            stored.starts_with("hgv1:") && !stored.contains(PASSWORD),
            "{name}: {stored}"
        );
    }
    let key_file = s.data_dir.path().join("organization.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key_file.display());

    let gw = s.start().await;
    send(&gw, &["a@partner.example", "b@mx.example"], "credentials");
    within(30, "both next hops took their message", || async {
        smart_host.recipients() == vec!["a@partner.example".to_string()]
            && mx.recipients() == vec!["b@mx.example".to_string()]
    })
    .await;
    assert_eq!(smart_host.received()[0].auth.as_deref(), Some("relay"));
    assert_eq!(mx.received()[0].auth, None, "the MX was given the password");
}

#[tokio::test]
async fn a_plaintext_password_is_sealed_at_start_and_still_authenticates() {
    let port = free_port();
    let smart_host = telling_sink("127.0.0.163", port);
    let s = setup().await;
    let mut sh = admin_with_cred(&s).await;
    run(&mut sh, &format!(
        "New-SendConnector -Name Partner -AddressSpaces 'partner.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.163' -Port {port} -SmartHostAuthMechanism BasicAuth -AuthenticationCredential $cred"
    )).await;
    // As migration 0003 leaves a password stored before it.
    s.sql(&format!(
        "UPDATE send_connector SET auth_password = 'plain:{PASSWORD}'"
    ))
    .await;
    let gw = s.start().await;
    let stored = stored_passwords(gw.pool()).await;
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0].1.starts_with("hgv1:") && !stored[0].1.contains(PASSWORD),
        "{stored:?}"
    );
    send(&gw, &["a@partner.example"], "sealed at start");
    within(30, "delivered with AUTH", || async {
        !smart_host.received().is_empty()
    })
    .await;
    assert_eq!(smart_host.received()[0].auth.as_deref(), Some("relay"));
}

/// `line` must fail for asking BasicAuthRequireTLS together with IgnoreSTARTTLS.
async fn refused_in_clear(sh: &mut Shell, line: &str) {
    let err = sh.run_line(line).await.unwrap_err().to_string();
    assert!(
        err.contains("BasicAuthRequireTLS") && err.contains("IgnoreSTARTTLS"),
        "{line}: {err}"
    );
}

#[tokio::test]
async fn basic_auth_require_tls_never_goes_out_in_clear() {
    let s = setup().await;
    let mut sh = admin_with_cred(&s).await;
    refused_in_clear(&mut sh, "New-SendConnector -Name Clear -AddressSpaces 'clear.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.164' -SmartHostAuthMechanism BasicAuthRequireTLS -AuthenticationCredential $cred -IgnoreSTARTTLS $true").await;
    assert!(stored_passwords(&s.pool).await.is_empty());

    let port = free_port();
    let sink = telling_sink("127.0.0.164", port);
    run(&mut sh, &format!(
        "New-SendConnector -Name Partner -AddressSpaces 'partner.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.164' -Port {port} -SmartHostAuthMechanism BasicAuthRequireTLS -AuthenticationCredential $cred"
    )).await;
    let before = run(&mut sh, "Get-SendConnector Partner | fl").await;
    refused_in_clear(&mut sh, "Set-SendConnector Partner -IgnoreSTARTTLS $true").await;
    assert_eq!(run(&mut sh, "Get-SendConnector Partner | fl").await, before);

    // A connector stored that way all the same (an older version, a hand edit) holds its mail
    // rather than send the password to a server without TLS.
    s.sql("UPDATE send_connector SET ignore_starttls = true WHERE name = 'Partner'")
        .await;
    let gw = s.start().await;
    send(&gw, &["a@partner.example"], "no clear text");
    within(30, "the queue shows the configuration error", || async {
        last_error(&gw, "127.0.0.164")
            .await
            .is_some_and(|e| e.starts_with("451 4.3.5 "))
    })
    .await;
    assert!(sink.received().is_empty(), "{:?}", sink.received());
}

#[tokio::test]
async fn export_cmdlet_never_prints_the_password() {
    let s = Setup::new().await;
    let mut sh = admin_with_cred(&s).await;
    run(&mut sh, "New-SendConnector -Name Partner -AddressSpaces 'partner.example' -DNSRoutingEnabled $false -SmartHosts 'relay.partner.example' -SmartHostAuthMechanism BasicAuth -AuthenticationCredential $cred").await;
    for line in [
        "Get-SendConnector Partner | Export-Cmdlet".to_string(),
        format!("Get-Credential -UserName relay -Password {PASSWORD} | Export-Cmdlet"),
    ] {
        let out = run(&mut sh, &line).await;
        assert!(!out.contains(PASSWORD), "{line}:\n{out}");
        assert!(
            out.contains("Get-Credential -UserName 'relay'"),
            "{line}:\n{out}"
        );
    }
}

/// Runs `hubgate serve` with extra environment and expects it to refuse to start: (stderr).
fn failed_start(s: &Setup, data_dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let mut cmd = serve_command(s, data_dir);
    cmd.env("HUBGATE_SERVER_NAME", "hub2.contoso.test")
        .env(
            "HUBGATE_CONSOLE_BIND",
            format!("{}:{}", s.ip, gateway_port()),
        )
        .env(
            "HUBGATE_DEFAULT_BINDINGS",
            format!("127.0.0.165:{}", free_port()),
        )
        .env_remove("HUBGATE_ORGANIZATION_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, _, err) = run_to_exit(
        &mut cmd,
        "hubgate started (or hung) with the wrong organisation key",
    );
    assert!(!status.success(), "{err}");
    err
}

#[tokio::test]
async fn a_node_without_the_organisation_key_says_so_and_changes_nothing() {
    let s = Setup::new().await;
    let mut sh = admin_with_cred(&s).await;
    run(&mut sh, "New-SendConnector -Name Partner -AddressSpaces 'partner.example' -DNSRoutingEnabled $false -SmartHosts 'relay.partner.example' -SmartHostAuthMechanism BasicAuth -AuthenticationCredential $cred").await;
    let before = stored_passwords(&s.pool).await;

    // HubB, given another key.
    let other = tempfile::tempdir().unwrap();
    let (_, wrong) = hubgate::org::org_key::OrganizationKey::generate("test").unwrap();
    let err = failed_start(&s, other.path(), &[("HUBGATE_ORGANIZATION_KEY", &wrong)]);
    assert!(
        err.contains("HUBGATE_ORGANIZATION_KEY")
            && err.contains("is not the key this organization's secrets are encrypted with"),
        "{err}"
    );
    // HubB, given none: it must not make its own.
    let err = failed_start(&s, other.path(), &[]);
    assert!(
        err.contains("has no organization key") && err.contains("organization.key"),
        "{err}"
    );
    assert!(!other.path().join("organization.key").exists());
    assert_eq!(stored_passwords(&s.pool).await, before);

    // Given the same key as HubA, it starts.
    std::fs::copy(
        s.data_dir.path().join("organization.key"),
        other.path().join("organization.key"),
    )
    .unwrap();
    let gw_b = Setup {
        db_url: s.db_url.clone(),
        pool: s.pool.clone(),
        data_dir: other,
        ip: s.ip,
        smtp_port: s.smtp_port,
        client_port: s.client_port,
        console_port: gateway_port(),
        fqdn: s.fqdn.clone(),
    };
    let _running = gw_b.start().await;
}
