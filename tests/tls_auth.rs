//! STARTTLS, AUTH, identities and rights: relay, connector selection by remote IP.

mod common;

use common::*;
use hubgate::org::{Account, ReceiveConnector, Recipient};

const TLS_LOGIN: &str = r#"
import smtplib, ssl, sys
tls_name, host, port, cafile, user, password, rcpt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
s = smtplib.SMTP(host, port, local_hostname="client.example", timeout=30)
# The certificate names the gateway's FQDN, which only this test knows resolves to the gateway.
s._host = tls_name
s.ehlo()
assert not s.has_extn("auth"), "AUTH offered before STARTTLS: %r" % s.esmtp_features
code, msg = s.docmd("AUTH", "PLAIN AGFsaWNlAHB3")
assert (code, msg) == (530, b"5.7.0 Must issue a STARTTLS command first"), (code, msg)
ctx = ssl.create_default_context(cafile=cafile)
s.starttls(context=ctx)
s.ehlo()
assert "PLAIN" in s.esmtp_features.get("auth", ""), s.esmtp_features
try:
    s.login(user, "wrong-password")
    raise SystemExit("a wrong password was accepted")
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535 and e.smtp_error == b"5.7.3 Authentication unsuccessful", e
s.login(user, password)
refused = s.sendmail("alice@contoso.test", [rcpt], b"Subject: over tls\r\n\r\nhello\r\n")
assert refused == {}, refused
s.quit()
print("OK")
"#;

async fn add_alice(pool: &sqlx::PgPool) {
    Account::create(pool, "alice", "Alice-pw-1", &[])
        .await
        .unwrap();
    Recipient::mailbox("alice", "alice@contoso.test")
        .insert(pool, &[])
        .await
        .unwrap();
}

fn cert_path(gw: &Gateway) -> String {
    gw.data_dir()
        .join("certs")
        .join(format!("{FQDN}.crt"))
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn starttls_then_auth_and_auth_only_after_starttls() {
    let setup = Setup::new().await;
    add_alice(&setup.pool).await;
    let gw = setup.start().await;
    let (ok, out) = python(
        TLS_LOGIN,
        &[
            FQDN,
            &gw.smtp().ip().to_string(),
            &gw.smtp().port().to_string(),
            &cert_path(&gw),
            "alice",
            "Alice-pw-1",
            "someone@elsewhere.example",
        ],
    );
    assert!(ok && out.contains("OK"), "{out}");
    let (auth_user, disposition): (Option<String>, String) = sqlx::query_as(
        "SELECT m.auth_user, r.disposition FROM message m JOIN message_recipient r ON r.message_id = m.id",
    )
    .fetch_one(gw.pool())
    .await
    .unwrap();
    assert_eq!(auth_user.as_deref(), Some("alice"));
    assert_eq!(disposition, "Relay");
}

#[tokio::test]
async fn swaks_starttls_auth_login() {
    let setup = Setup::new().await;
    add_alice(&setup.pool).await;
    let gw = setup.start().await;
    let ip = gw.smtp().ip().to_string();
    let port = gw.smtp().port().to_string();
    let (ok, out) = swaks(&[
        "--server",
        &ip,
        "--port",
        &port,
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "Alice-pw-1",
        "--from",
        "alice@contoso.test",
        "--to",
        "bob@fabrikam.example",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("235 2.7.0 Authentication successful"), "{out}");
    assert!(out.contains("250 2.6.0 "), "{out}");
}

#[tokio::test]
async fn open_relay_refused_for_anonymous_allowed_for_authenticated() {
    let setup = Setup::new().await;
    add_alice(&setup.pool).await;
    let gw = setup.start().await;
    let ip = gw.smtp().ip().to_string();
    let port = gw.smtp().port().to_string();
    let (ok, out) = swaks(&[
        "--server",
        &ip,
        "--port",
        &port,
        "--from",
        "spam@example.org",
        "--to",
        "victim@elsewhere.example",
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("550 5.7.1 Unable to relay"), "{out}");
    assert_eq!(gw.message_count().await, 0);
    let (ok, out) = swaks(&[
        "--server",
        &ip,
        "--port",
        &port,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "Alice-pw-1",
        "--from",
        "alice@contoso.test",
        "--to",
        "victim@elsewhere.example",
    ]);
    assert!(ok, "{out}");
    assert_eq!(gw.message_count().await, 1);
    // Authenticated, but not as the owner of the sender address, and without Accept-Any-Sender.
    let (ok, out) = swaks(&[
        "--server",
        &ip,
        "--port",
        &port,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "Alice-pw-1",
        "--from",
        "ceo@example.org",
        "--to",
        "victim@elsewhere.example",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("550 5.7.1 Client does not have permissions to send as this sender"),
        "{out}"
    );
}

#[tokio::test]
async fn authenticated_without_submit_right_is_refused_at_mail() {
    let setup = Setup::new().await;
    add_alice(&setup.pool).await;
    setup
        .sql("DELETE FROM connector_permission WHERE principal = 'NT AUTHORITY\\Authenticated Users' AND extended_right = 'ms-Exch-SMTP-Submit'")
        .await;
    let gw = setup.start().await;
    let ip = gw.smtp().ip().to_string();
    let port = gw.smtp().port().to_string();
    let (ok, out) = swaks(&[
        "--server",
        &ip,
        "--port",
        &port,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "Alice-pw-1",
        "--from",
        "alice@contoso.test",
        "--to",
        "administrator@contoso.test",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("550 5.7.1 Client does not have permissions to submit to this server"),
        "{out}"
    );
}

#[tokio::test]
async fn connector_is_chosen_by_remote_ip() {
    let setup = Setup::new().await;
    for (name, ip, banner) in [
        ("From Two", "127.0.0.2", "220 connector for two"),
        ("From Three", "127.0.0.3", "220 connector for three"),
    ] {
        let mut rc = ReceiveConnector::new(SERVER, name, FQDN);
        rc.bindings = vec![setup.smtp().to_string()];
        rc.remote_ip_ranges = vec![ip.into()];
        rc.banner = Some(banner.into());
        rc.permission_groups = vec!["AnonymousUsers".into()];
        rc.insert(&setup.pool).await.unwrap();
    }
    let gw = setup.start().await;
    let ip = gw.smtp().ip().to_string();
    let port = gw.smtp().port().to_string();
    let (ok, out) = swaks(&[
        "--server",
        &ip,
        "--port",
        &port,
        "--local-interface",
        "127.0.0.2",
        "--from",
        "a@example.org",
        "--to",
        "administrator@contoso.test",
        "--quit-after",
        "EHLO",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("<~  220 connector for two") || out.contains("<-  220 connector for two"),
        "{out}"
    );
    let mut three = Raw::connect_from(gw.smtp(), Some("127.0.0.3")).await;
    assert_eq!(three.reply().await, "220 connector for three\r\n");
    let mut one = Raw::connect_from(gw.smtp(), Some("127.0.0.1")).await;
    assert!(
        one.reply()
            .await
            .starts_with("220 hub1.contoso.test Microsoft ESMTP MAIL Service ready")
    );
    // The connector the message came in on is recorded with it.
    let (ok, out) = swaks(&[
        "--server",
        &ip,
        "--port",
        &port,
        "--local-interface",
        "127.0.0.3",
        "--from",
        "a@example.org",
        "--to",
        "administrator@contoso.test",
    ]);
    assert!(ok, "{out}");
    // Read from the tracking log's RECEIVE, written before the 250: the message row itself is
    // gone as soon as the local delivery finishes, which may be before a query here.
    let mut sh = hubgate::shell::Shell::new(gw.pool().clone(), FQDN).with_data_dir(gw.data_dir());
    let out = sh
        .run_line("Get-MessageTrackingLog -EventId RECEIVE | Format-List ConnectorId")
        .await
        .unwrap();
    assert!(out.contains("ConnectorId : HUB1\\From Three"), "{out}");
}
