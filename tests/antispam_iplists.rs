//! The Connection Filtering agent's IP Allow List and IP Block List, against the real binary:
//! Add-/Remove-/Get-IP*ListEntry through the shell, the refusal at RCPT for a blocked source,
//! the allow list winning, authenticated sessions bypassing, expiry, and bad input.

mod common;

use common::antispam::{authenticated_rcpt, rcpt_to, sender_account};
use common::mail::{configure, fails, run, setup};
use common::*;

const BLOCKED: &str = "does not have permissions to submit to this server";

fn refusal(ip: &str) -> String {
    format!("550 5.7.1 External client with IP address {ip} {BLOCKED}\r\n")
}

/// One anonymous transaction from `from` up to its RCPT; the RCPT reply.
async fn rcpt_from(gw: &Gateway, from: &str) -> String {
    rcpt_to(gw, Some(from), "sender@contoso.test").await
}

#[tokio::test]
async fn blocked_cidr_is_refused_at_rcpt_and_another_source_is_served() {
    let s = setup().await;
    s.sql("UPDATE receive_connector SET protocol_logging_level = 'Verbose'")
        .await;
    configure(
        &s,
        &["Add-IPBlockListEntry -IPRange 127.0.0.48/29 -Comment 'spam run'"],
    )
    .await;
    let gw = s.start().await;

    // The connection and MAIL are served: Exchange's agent refuses at RCPT.
    assert_eq!(rcpt_from(&gw, "127.0.0.50").await, refusal("127.0.0.50"));
    assert!(rcpt_from(&gw, "127.0.0.60").await.starts_with("250 "));

    let listed = run(&gw, "Get-IPBlockListEntry").await;
    assert!(listed.contains("127.0.0.48/29"), "{listed}");
    assert!(listed.contains("spam run"), "{listed}");
    let covering = run(&gw, "Get-IPBlockListEntry -IPAddress 127.0.0.50 | fl").await;
    assert_eq!(shown(&covering, "IPRange"), "127.0.0.48/29");
    assert_eq!(shown(&covering, "ExpirationTime"), "12/31/9999 11:59:59 PM");
    assert_eq!(shown(&covering, "HasExpired"), "False");
    assert_eq!(
        run(&gw, "Get-IPBlockListEntry -IPAddress 127.0.0.60")
            .await
            .trim(),
        ""
    );
    assert_eq!(run(&gw, "Get-IPAllowListEntry").await.trim(), "");

    let g = &gw;
    eventually("the agent's line in the protocol log", || async move {
        receive_log(g).contains("Connection Filtering Agent")
    })
    .await;

    // Removed by its integer identity, the source is served again once the gateway reloads.
    let id = shown(&covering, "Identity");
    run(&gw, &format!("Remove-IPBlockListEntry {id}")).await;
    assert_eq!(run(&gw, "Get-IPBlockListEntry").await.trim(), "");
    eventually("the removed entry no longer applies", || async move {
        rcpt_from(g, "127.0.0.50").await.starts_with("250 ")
    })
    .await;
}

#[tokio::test]
async fn an_allow_entry_wins_over_a_block_entry() {
    let s = setup().await;
    configure(
        &s,
        &[
            "Add-IPBlockListEntry -IPRange 127.0.0.64-127.0.0.79",
            "Add-IPAllowListEntry -IPAddress 127.0.0.66 -Comment 'backup MX'",
        ],
    )
    .await;
    let gw = s.start().await;
    assert!(rcpt_from(&gw, "127.0.0.66").await.starts_with("250 "));
    assert_eq!(rcpt_from(&gw, "127.0.0.67").await, refusal("127.0.0.67"));

    let allowed = run(&gw, "Get-IPAllowListEntry | fl").await;
    assert_eq!(shown(&allowed, "IPRange"), "127.0.0.66");
    assert_eq!(shown(&allowed, "Comment"), "backup MX");
    run(&gw, "Get-IPAllowListEntry | Remove-IPAllowListEntry").await;
    let g = &gw;
    eventually(
        "the block entry once the allow entry is gone",
        || async move { rcpt_from(g, "127.0.0.66").await == refusal("127.0.0.66") },
    )
    .await;
}

#[tokio::test]
async fn an_authenticated_session_is_not_filtered() {
    let s = setup().await;
    // The mailbox Sender's own account, so it may send as sender@contoso.test.
    sender_account(&s).await;
    configure(&s, &["Add-IPBlockListEntry -IPRange 127.0.0.80/30"]).await;
    let gw = s.start().await;
    assert_eq!(rcpt_from(&gw, "127.0.0.81").await, refusal("127.0.0.81"));

    let r = authenticated_rcpt(&gw, Some("127.0.0.81"), "sender@contoso.test").await;
    assert!(r.starts_with("250 "), "{r}");
}

#[tokio::test]
async fn an_entry_expires_while_the_gateway_runs() {
    let s = setup().await;
    let gw = s.start().await;
    // Far enough ahead for the reload on a loaded machine; the poll below is bounded.
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(20);
    let at = format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    run(
        &gw,
        &format!("Add-IPBlockListEntry -IPAddress 127.0.0.90 -ExpirationTime '{at}'"),
    )
    .await;
    let g = &gw;
    eventually("the new entry applies", || async move {
        rcpt_from(g, "127.0.0.90").await == refusal("127.0.0.90")
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if rcpt_from(&gw, "127.0.0.90").await.starts_with("250 ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the entry never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let out = run(&gw, "Get-IPBlockListEntry | fl").await;
    assert_eq!(shown(&out, "HasExpired"), "True");
}

#[tokio::test]
async fn bad_input_is_refused_and_stores_nothing() {
    let s = setup().await;
    let gw = s.start().await;
    for (line, says) in [
        (
            "Add-IPBlockListEntry -IPRange 10.0.0.0/33",
            "not a valid CIDR",
        ),
        (
            "Add-IPBlockListEntry -IPRange 10.0.0.9-10.0.0.1",
            "is reversed",
        ),
        (
            "Add-IPBlockListEntry -IPRange 10.0.0.1-::1",
            "mixes IPv4 and IPv6",
        ),
        (
            "Add-IPAllowListEntry -IPAddress 10.0.0.0/8",
            "not a valid IP address",
        ),
        (
            "Add-IPBlockListEntry -IPAddress 10.0.0.1 -ExpirationTime '1/1/2020 10:00'",
            "must be in the future",
        ),
        (
            "Add-IPBlockListEntry -IPAddress 10.0.0.1 -ExpirationTime 'tomorrow'",
            "not a valid ExpirationTime",
        ),
        (
            "Add-IPBlockListEntry -IPAddress 10.0.0.1 -IPRange 10.0.0.0/8",
            "not both",
        ),
        (
            "Add-IPBlockListEntry -Comment x",
            "missing mandatory parameters: IPAddress",
        ),
        ("Remove-IPBlockListEntry 999", "couldn't be found"),
        ("Remove-IPBlockListEntry abc", "positive integer"),
    ] {
        let e = fails(&gw, line).await;
        assert!(e.contains(says), "{line}: {e}");
    }
    assert_eq!(run(&gw, "Get-IPBlockListEntry").await.trim(), "");
    assert_eq!(run(&gw, "Get-IPAllowListEntry").await.trim(), "");
    // IPv6 entries are taken, and the WhatIf of one stores nothing.
    run(&gw, "Add-IPBlockListEntry -IPRange 2001:db8::/32 -WhatIf").await;
    assert_eq!(run(&gw, "Get-IPBlockListEntry").await.trim(), "");
    run(&gw, "Add-IPBlockListEntry -IPRange 2001:db8::/32").await;
    let out = run(&gw, "Get-IPBlockListEntry -IPAddress 2001:db8:5::1 | fl").await;
    assert_eq!(shown(&out, "IPRange"), "2001:db8::/32");
}
