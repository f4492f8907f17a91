//! Sessions and set-ups the anti-spam agents' tests share: a backup MX for a relay domain, an
//! anonymous transaction up to its RCPTs, and one authenticated as the mailbox Sender, which every
//! agent must let through unchecked.

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hubgate::org::Account;

use super::mail::configure;
use super::*;

/// A backup MX for primary.example (seed 004: an ExternalRelay domain and a send connector to the
/// primary), with the Recipient Filter agent validating its recipients (`validate`).
pub async fn backup_mx(primary: SocketAddr, validate: bool, extra: &[&str]) -> Setup {
    let s = Setup::new().await;
    s.sql("UPDATE receive_connector SET protocol_logging_level = 'Verbose'")
        .await;
    let connector = format!(
        "New-SendConnector -Name Primary -AddressSpaces 'primary.example' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {}",
        primary.ip(),
        primary.port()
    );
    let mut lines = vec![
        // Held mail stays in Retry for the whole test (seed 004's outage hold).
        "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:15:00 -OutboundConnectionFailureRetryInterval 00:15:00",
        "New-AcceptedDomain -Name Primary -DomainName primary.example -DomainType ExternalRelay",
        &connector,
    ];
    if validate {
        lines.push("Set-AcceptedDomain Primary -AddressBookEnabled $true");
        lines.push("Set-RecipientFilterConfig -RecipientValidationEnabled $true");
    }
    lines.extend_from_slice(extra);
    configure(&s, &lines).await;
    s
}

/// One anonymous session from `source` (None: the harness's own address): EHLO `helo`, MAIL
/// FROM:<someone@example.net>, then one RCPT for each of `to`; the RCPT replies.
pub async fn rcpts(smtp: SocketAddr, source: Option<&str>, helo: &str, to: &[&str]) -> Vec<String> {
    let mut c = Raw::connect_from(smtp, source).await;
    assert!(c.reply().await.starts_with("220 "));
    assert!(c.cmd(&format!("EHLO {helo}")).await.starts_with("250-"));
    let mail = c.cmd("MAIL FROM:<someone@example.net>").await;
    assert!(mail.starts_with("250 "), "{mail}");
    let mut out = Vec::with_capacity(to.len());
    for t in to {
        out.push(c.cmd(&format!("RCPT TO:<{t}>")).await);
    }
    c.cmd("QUIT").await;
    out
}

/// `rcpts` with one recipient, as client.example; the RCPT reply.
pub async fn rcpt_to(gw: &Gateway, source: Option<&str>, to: &str) -> String {
    let mut replies = rcpts(gw.smtp(), source, "client.example", &[to]).await;
    replies.pop().expect("one RCPT reply")
}

/// Basic authentication on the Default connector and an account for the mailbox Sender (which
/// the test creates), so that a session may send as sender@contoso.test.
pub async fn sender_account(s: &Setup) {
    s.sql("UPDATE receive_connector SET auth_mechanism = '{Tls,BasicAuth}'")
        .await;
    Account::create(&s.pool, "Sender", "Partner-pw-1", &[])
        .await
        .unwrap();
}

/// `sender_account`, with ms-Exch-Bypass-Anti-Spam denied to the account on the Default
/// connector: an authenticated (internal) session that only the agents' InternalMailEnabled
/// keeps from being filtered.
pub async fn internal_sender(s: &Setup) {
    sender_account(s).await;
    super::mail::configure(
        s,
        &["Get-ReceiveConnector 'Default HUB1' | Add-ADPermission -User Sender -ExtendedRights ms-Exch-Bypass-Anti-Spam -Deny"],
    )
    .await;
}

/// A session from `source`, past EHLO and authenticated as Sender (see `sender_account`).
pub async fn authenticated(gw: &Gateway, source: Option<&str>) -> Raw {
    let mut c = Raw::connect_from(gw.smtp(), source).await;
    assert!(c.reply().await.starts_with("220 "));
    assert!(c.cmd("EHLO client.example").await.starts_with("250-"));
    let auth = B64.encode("\0Sender\0Partner-pw-1");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {auth}")).await,
        "235 2.7.0 Authentication successful\r\n"
    );
    c
}

/// A session from `source` authenticated as Sender (see `sender_account`), MAIL
/// FROM:<sender@contoso.test>, then RCPT TO:<to>; the RCPT reply.
pub async fn authenticated_rcpt(gw: &Gateway, source: Option<&str>, to: &str) -> String {
    let mut c = authenticated(gw, source).await;
    let mail = c.cmd("MAIL FROM:<sender@contoso.test>").await;
    assert!(mail.starts_with("250 "), "{mail}");
    c.cmd(&format!("RCPT TO:<{to}>")).await
}
