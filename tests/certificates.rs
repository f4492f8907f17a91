//! Certificates: one store for STARTTLS and the console, chosen by the connector's FQDN, shown
//! and managed with Exchange's certificate cmdlets.

mod common;

use common::mail::*;
use common::*;

const SECOND: &str = "mail.fabrikam.test";

/// `openssl s_client -starttls smtp` against `addr` asking for `servername`, trusting `ca`:
/// (the subject line of the certificate served, whether it verified for `servername`).
fn starttls_subject(
    addr: std::net::SocketAddr,
    servername: &str,
    ca: &std::path::Path,
) -> (String, bool) {
    s_client(
        &["-starttls", "smtp", "-name", "client.example"],
        addr,
        servername,
        ca,
    )
}

/// `openssl s_client` straight into TLS (the console's HTTPS).
fn https_subject(
    addr: std::net::SocketAddr,
    servername: &str,
    ca: &std::path::Path,
) -> (String, bool) {
    s_client(&[], addr, servername, ca)
}

fn s_client(
    extra: &[&str],
    addr: std::net::SocketAddr,
    servername: &str,
    ca: &std::path::Path,
) -> (String, bool) {
    let out = common::openssl::s_client(extra, addr, servername, ca);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let subject = text
        .lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or_else(|| {
            panic!(
                "no certificate in {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .to_string();
    (subject, common::openssl::verified(&out))
}

fn write_pair(dir: &std::path::Path, stem: &str, cert: &str, key: &str) {
    // Key first, then the certificate, each replaced whole, as an administrator's script does.
    for (file, pem) in [(format!("{stem}.key"), key), (format!("{stem}.crt"), cert)] {
        let tmp = dir.join(format!(".{file}.new"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(&file)).unwrap();
    }
}

/// A running gateway with a second receive connector, Fabrikam, whose FQDN is [`SECOND`]; its
/// port.
async fn with_fabrikam() -> (Gateway, u16) {
    let setup = Setup::new().await;
    let port = setup.another_port();
    configure(
        &setup,
        &[&format!(
            "New-ReceiveConnector -Name Fabrikam -Bindings {}:{port} -RemoteIPRanges 127.0.0.0/8 -Fqdn {SECOND}",
            setup.ip
        )],
    )
    .await;
    (setup.start().await, port)
}

#[tokio::test]
async fn a_connector_with_a_second_fqdn_serves_the_certificate_for_that_name() {
    let (gw, port) = with_fabrikam().await;
    let second = std::net::SocketAddr::from((gw.setup.ip, port));
    let (ca, leaves) = private_ca(&[SECOND]);
    let ca_file = gw.data_dir().join("test-ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();

    // Dropped in while the gateway runs: picked up without a restart.
    write_pair(
        &gw.data_dir().join("certs"),
        "fabrikam",
        &leaves[0].0,
        &leaves[0].1,
    );
    let second_ca = ca_file.clone();
    eventually(
        "the Fabrikam connector to serve its own certificate",
        || {
            let ca = second_ca.clone();
            async move {
                let (subject, verified) =
                    tokio::task::spawn_blocking(move || starttls_subject(second, SECOND, &ca))
                        .await
                        .unwrap();
                subject.contains(SECOND) && verified
            }
        },
    )
    .await;

    // The Default connector keeps the server's own certificate, whatever name the client asks
    // for: the choice follows the connector's FQDN, as Exchange's does.
    let default = gw.smtp();
    let (subject, verified) =
        tokio::task::spawn_blocking(move || starttls_subject(default, SECOND, &ca_file))
            .await
            .unwrap();
    assert!(subject.contains(FQDN), "{subject}");
    assert!(
        !verified,
        "the server's self-signed certificate verified against the private CA"
    );
}

#[tokio::test]
async fn certificates_are_listed_imported_and_enabled_like_exchanges() {
    let (gw, port) = with_fabrikam().await;

    // The first start's own certificate, enabled for both services.
    let out = run(&gw, "Get-ExchangeCertificate | Format-List").await;
    assert_eq!(shown(&out, "Subject"), format!("CN={FQDN}"), "{out}");
    assert_eq!(shown(&out, "Services"), "IIS, SMTP", "{out}");
    assert_eq!(shown(&out, "IsSelfSigned"), "True", "{out}");
    assert!(shown(&out, "CertificateDomains").contains(FQDN), "{out}");
    let own = shown(&out, "Thumbprint");
    assert_eq!(own.len(), 40, "{out}");

    let (ca, leaves) = private_ca(&[SECOND, "other.fabrikam.test"]);
    let files = tempfile::tempdir().unwrap();
    let pem = |name: &str, text: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let cert = pem("fabrikam.crt", &leaves[0].0);
    let key = pem("fabrikam.key", &leaves[0].1);
    let wrong_key = pem("other.key", &leaves[1].1);
    let ca_file = std::path::PathBuf::from(pem("ca.pem", &ca));
    let certs_dir = gw.data_dir().join("certs");
    let before = std::fs::read_dir(&certs_dir).unwrap().count();

    // A key that is not the certificate's: refused, nothing written.
    let err = fails(
        &gw,
        &format!("Import-ExchangeCertificate -Path {cert} -KeyPath {wrong_key}"),
    )
    .await;
    assert!(err.contains("does not belong to the certificate"), "{err}");
    let err = fails(&gw, &format!("Import-ExchangeCertificate -Path {cert}")).await;
    assert!(err.contains("holds no PEM private key"), "{err}");
    assert_eq!(std::fs::read_dir(&certs_dir).unwrap().count(), before);

    // Through the binary, as an administrator types it.
    let out = shell_c(
        &gw,
        &format!("Import-ExchangeCertificate -Path {cert} -KeyPath {key} | Format-List"),
    )
    .await;
    let imported = shown(&out, "Thumbprint");
    assert_eq!(shown(&out, "Services"), "None", "{out}");
    assert_eq!(shown(&out, "Issuer"), "CN=Fabrikam Private CA", "{out}");
    assert_eq!(shown(&out, "CertificateDomains"), SECOND, "{out}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(certs_dir.join(format!("{imported}.key")))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let err = fails(
        &gw,
        &format!("Import-ExchangeCertificate -Path {cert} -KeyPath {key}"),
    )
    .await;
    assert!(err.contains("already exists"), "{err}");

    // The Fabrikam connector serves it (its FQDN is on it) without a restart.
    let second = std::net::SocketAddr::from((gw.setup.ip, port));
    let ca = ca_file.clone();
    eventually("the imported certificate on the Fabrikam connector", || {
        let ca = ca.clone();
        async move {
            tokio::task::spawn_blocking(move || starttls_subject(second, SECOND, &ca))
                .await
                .unwrap()
                .1
        }
    })
    .await;

    // Services refused by name; the real ones enabled and shown.
    let err = fails(
        &gw,
        &format!("Enable-ExchangeCertificate -Thumbprint {imported} -Services POP"),
    )
    .await;
    assert!(err.contains("no POP service"), "{err}");
    run(
        &gw,
        &format!("Enable-ExchangeCertificate -Thumbprint {imported} -Services SMTP,IIS"),
    )
    .await;
    let table = run(&gw, "Get-ExchangeCertificate").await;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("Thumbprint") && l.contains("Services")),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with(&imported))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("IIS, SMTP") && row.contains(&format!("CN={SECOND}")),
        "{row}"
    );
    assert!(table.lines().any(|l| l.starts_with(&own)), "{table}");
    let out = run(
        &gw,
        &format!("Get-ExchangeCertificate {imported} | fl Services"),
    )
    .await;
    assert_eq!(shown(&out, "Services"), "IIS, SMTP", "{out}");
    let out = run(
        &gw,
        &format!("Get-ExchangeCertificate -DomainName {SECOND}"),
    )
    .await;
    assert!(!out.contains(&own) && out.contains(&imported), "{out}");
    let err = fails(&gw, "Get-ExchangeCertificate -Thumbprint 00FF").await;
    assert!(err.contains("couldn't be found"), "{err}");

    // The console serves it to a browser that asks for that name.
    let console = gw.console_addr();
    let (subject, verified) =
        tokio::task::spawn_blocking(move || https_subject(console, SECOND, &ca_file))
            .await
            .unwrap();
    assert!(subject.contains(SECOND) && verified, "{subject}");
}

/// seed 001's "Basic authentication over TLS": a hubgate sending to a partner hubgate with
/// BasicAuthRequireTLS validates the certificate of the partner's receive connector, which
/// carries that connector's FQDN (not the partner server's own).
#[tokio::test]
async fn a_sender_with_basic_auth_require_tls_validates_the_connectors_certificate() {
    use common::dns::{Dns, Zone};
    use hubgate::org::{Account, Recipient};
    let (ca, leaves) = private_ca(&[SECOND]);

    // The partner: its own server name, and a connector for cross-forest mail named SECOND.
    let partner = Setup::node(1, "HUB2", "hub2.fabrikam.test").await;
    let port = partner.another_port();
    configure(
        &partner,
        &[&format!(
            "New-ReceiveConnector -Name Forest -Bindings {}:{port} -RemoteIPRanges 127.0.0.0/8 -Fqdn {SECOND} -AuthMechanism Tls,BasicAuth,BasicAuthRequireTLS -PermissionGroups ExchangeUsers",
            partner.ip
        )],
    )
    .await;
    Account::create(&partner.pool, "forest", "F0rest-pw", &[])
        .await
        .unwrap();
    // seed 001: the other forest's account may send as its own organisation's senders.
    configure(
        &partner,
        &["Get-ReceiveConnector 'HUB2\\Forest' | Add-ADPermission -User forest -ExtendedRights ms-Exch-SMTP-Accept-Any-Sender"],
    )
    .await;
    Recipient::mailbox("bob", "bob@fabrikam.test")
        .insert(&partner.pool, &[])
        .await
        .unwrap();
    let partner_certs = partner.data_dir.path().join("certs");
    std::fs::create_dir_all(&partner_certs).unwrap();
    write_pair(&partner_certs, "forest", &leaves[0].0, &leaves[0].1);
    let partner_ip = partner.ip;
    let partner = partner.start().await;

    // The sender finds SECOND in DNS and trusts the partner's CA.
    let dns = Dns::start(
        "fabrikam.test",
        Zone {
            mx: vec![],
            a: vec![(SECOND, partner_ip)],
        },
    )
    .await;
    let s = setup().await;
    let trusted = s.data_dir.path().join("certs/trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::write(trusted.join("fabrikam-ca.pem"), &ca).unwrap();
    let mut sh = hubgate::shell::Shell::new(s.pool.clone(), FQDN)
        .with_data_dir(s.data_dir.path().to_path_buf());
    sh.run_line(&format!(
        "$cred = Get-Credential -UserName forest -Password F0rest-pw; New-SendConnector -Name Forest -AddressSpaces fabrikam.test -DNSRoutingEnabled $false -SmartHosts {SECOND} -Port {port} -SmartHostAuthMechanism BasicAuthRequireTLS -AuthenticationCredential $cred -UseExternalDNSServersEnabled $true; Set-TransportServer HUB1 -ExternalDNSServers '{}' -TransientFailureRetryInterval 00:00:01",
        dns.addr
    ))
    .await
    .unwrap();
    let gw = s.start().await;
    send(&gw, &["bob@fabrikam.test"], "across the forests");
    let partner_dir = partner.data_dir();
    let delivered = holds_within(60, || {
        let d = partner_dir.clone();
        async move { !mailbox(&d, "bob@fabrikam.test").is_empty() }
    })
    .await;
    if !delivered {
        let errors: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT next_hop_domain, last_error FROM delivery_queue")
                .fetch_all(gw.pool())
                .await
                .unwrap();
        panic!(
            "not delivered to the partner over validated TLS: {errors:?}\n{:?}\n{}",
            mailbox(&gw.data_dir(), SENDER),
            receive_log(&partner)
        );
    }
    let got = mailbox(&partner_dir, "bob@fabrikam.test").remove(0);
    assert!(got.contains("across the forests"), "{got}");
}

/// The server's page lists this node's certificates, with a warning 30 days before expiry.
#[tokio::test]
async fn the_server_page_lists_the_certificates_and_warns_before_expiry() {
    use common::console::{Console, session_cookie, sign_in};
    let console = Console::start(Setup::new().await, &[]).await;
    // A pair that expires in ten days, dropped in while the gateway runs.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["soon.fabrikam.test".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "soon.fabrikam.test");
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(10);
    let cert = params.self_signed(&key).unwrap();
    write_pair(
        &console.setup.data_dir.path().join("certs"),
        "soon",
        &cert.pem(),
        &key.serialize_pem(),
    );

    let c = console.client();
    let cookie = session_cookie(&sign_in(&c, "Administrator", ADMIN_PASSWORD).await.unwrap());
    let page = c.get("/server/hub/HUB1", &[("Cookie", &cookie)]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let section = page
        .body
        .split("id=\"certificates\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no certificates table: {}", page.body));
    assert!(section.contains(&format!("CN={FQDN}")), "{section}");
    assert!(section.contains("IIS, SMTP"), "{section}");
    let soon = section
        .split("<tr")
        .find(|r| r.contains("soon.fabrikam.test"))
        .unwrap_or_else(|| panic!("{section}"));
    assert!(
        soon.contains("Warning: expires in 9 days") || soon.contains("Warning: expires in 10 days"),
        "{soon}"
    );
    let own = section
        .split("<tr")
        .find(|r| r.contains(&format!("CN={FQDN}")))
        .unwrap();
    assert!(!own.contains("Warning"), "{own}");
}
