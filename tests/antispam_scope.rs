//! Which sessions the anti-spam agents act on, as Exchange decides it, against the real binary:
//! ExternalMailEnabled for anonymous sessions (mail from outside), InternalMailEnabled for
//! authenticated ones (the organisation's own and its partners'), none for a session holding
//! ms-Exch-Bypass-Anti-Spam. The account here is denied that right on the connector (as a
//! Partners-only connector would leave it without), so that only InternalMailEnabled keeps the
//! agents off its sessions. The IP Block List, the Sender Filter and the Recipient Filter; the IP
//! Block List providers' switches are tested in antispam_dnsbl.rs.

mod common;

use common::antispam::{authenticated, authenticated_rcpt, internal_sender, rcpts};
use common::mail::{configure, run, setup};
use common::*;

const SOURCE: &str = "127.0.0.150";

/// A gateway whose account Sender has no anti-spam bypass, with `lines` configured; no tarpit,
/// so that the polls below do not wait on it.
async fn gateway(lines: &[&str]) -> Gateway {
    let s = setup().await;
    s.sql("UPDATE receive_connector SET tarpit_interval = 0")
        .await;
    internal_sender(&s).await;
    configure(&s, lines).await;
    s.start().await
}

/// An anonymous RCPT TO:<to> from SOURCE; its reply.
async fn anonymous_rcpt(gw: &Gateway, to: &str) -> String {
    let mut r = rcpts(gw.smtp(), Some(SOURCE), "client.example", &[to]).await;
    r.pop().unwrap()
}

/// MAIL FROM:<sender@contoso.test> of an anonymous or an authenticated session; its reply, and
/// whether the gateway closed the connection after it.
async fn mail_as_sender(gw: &Gateway, signed_in: bool) -> (String, bool) {
    let mut c = if signed_in {
        authenticated(gw, Some(SOURCE)).await
    } else {
        let mut c = Raw::connect_from(gw.smtp(), Some(SOURCE)).await;
        assert!(c.reply().await.starts_with("220 "));
        assert!(c.cmd("EHLO client.example").await.starts_with("250-"));
        c
    };
    let r = c.cmd("MAIL FROM:<sender@contoso.test>").await;
    if r.starts_with("250 ") {
        c.cmd("QUIT").await;
        return (r, false);
    }
    (r, c.closed().await)
}

/// The switches of the agent `set` (its Set- cmdlet) over an anonymous and an internal RCPT
/// TO:<to>, which it refuses with `refusal`: Exchange's defaults (anonymous sessions filtered,
/// internal ones not), then InternalMailEnabled $true, then ExternalMailEnabled $false.
async fn switches_over_rcpt(g: &Gateway, set: &str, to: &str, refusal: &str) {
    assert_eq!(anonymous_rcpt(g, to).await, refusal);
    let r = authenticated_rcpt(g, Some(SOURCE), to).await;
    assert!(r.starts_with("250 "), "{r}");

    run(g, &format!("{set} -InternalMailEnabled $true")).await;
    eventually("internal sessions filtered", || async move {
        authenticated_rcpt(g, Some(SOURCE), to).await == refusal
    })
    .await;
    run(g, &format!("{set} -ExternalMailEnabled $false")).await;
    eventually("anonymous sessions no longer filtered", || async move {
        anonymous_rcpt(g, to).await.starts_with("250 ")
    })
    .await;
    assert_eq!(authenticated_rcpt(g, Some(SOURCE), to).await, refusal);
    let fl = run(g, &format!("{} | fl", set.replacen("Set-", "Get-", 1))).await;
    assert_eq!(shown(&fl, "InternalMailEnabled"), "True");
    assert_eq!(shown(&fl, "ExternalMailEnabled"), "False");
}

#[tokio::test]
async fn the_ip_block_list_follows_its_internal_and_external_switches() {
    let gw = gateway(&[&format!("Add-IPBlockListEntry -IPAddress {SOURCE}")]).await;
    let g = &gw;
    let blocked = format!(
        "550 5.7.1 External client with IP address {SOURCE} does not have permissions to submit to this server\r\n"
    );
    let to = "sender@contoso.test";
    switches_over_rcpt(g, "Set-IPBlockListConfig", to, &blocked).await;
    let fl = run(g, "Get-IPBlockListConfig | fl").await;
    assert!(!fl.contains("not enforced"), "{fl}");

    // With ms-Exch-Bypass-Anti-Spam back, the session is left alone whatever the switches say.
    run(
        g,
        "Get-ReceiveConnector 'Default HUB1' | Remove-ADPermission -User Sender -ExtendedRights ms-Exch-Bypass-Anti-Spam -Deny",
    )
    .await;
    eventually("the bypass honoured", || async move {
        authenticated_rcpt(g, Some(SOURCE), to)
            .await
            .starts_with("250 ")
    })
    .await;
}

#[tokio::test]
async fn the_sender_filter_follows_its_internal_and_external_switches() {
    let gw = gateway(&["Set-SenderFilterConfig -BlockedSenders sender@contoso.test"]).await;
    let g = &gw;
    const DENIED: &str = "554 5.1.0 Sender Denied\r\n";

    assert_eq!(mail_as_sender(g, false).await, (DENIED.to_string(), true));
    let (r, _) = mail_as_sender(g, true).await;
    assert!(r.starts_with("250 "), "{r}");

    run(g, "Set-SenderFilterConfig -InternalMailEnabled $true").await;
    eventually("internal sessions filtered", || async move {
        mail_as_sender(g, true).await == (DENIED.to_string(), true)
    })
    .await;
    run(g, "Set-SenderFilterConfig -ExternalMailEnabled $false").await;
    eventually("anonymous sessions no longer filtered", || async move {
        mail_as_sender(g, false).await.0.starts_with("250 ")
    })
    .await;

    let fl = run(g, "Get-SenderFilterConfig | fl").await;
    assert_eq!(shown(&fl, "ExternalMailEnabled"), "False");
    assert_eq!(shown(&fl, "InternalMailEnabled"), "True");
    let export = run(g, "Get-SenderFilterConfig | Export-Cmdlet").await;
    assert!(
        export.contains("-ExternalMailEnabled $false")
            && export.contains("-InternalMailEnabled $true"),
        "{export}"
    );
}

#[tokio::test]
async fn the_recipient_filter_follows_its_internal_and_external_switches() {
    let gw = gateway(&[
        "New-Mailbox -Name Trap -PrimarySmtpAddress trap@contoso.test",
        "Set-RecipientFilterConfig -BlockListEnabled $true -BlockedRecipients trap@contoso.test",
    ])
    .await;
    switches_over_rcpt(
        &gw,
        "Set-RecipientFilterConfig",
        "trap@contoso.test",
        "550 5.7.1 Recipient not authorized\r\n",
    )
    .await;
}
