//! The Connection Filtering agent's IP Block List providers (DNSBLs), against the real binary and
//! a real DNS server (hickory-server in-process, tests/common/dns.rs) serving the lists' zones:
//! a listed source refused at RCPT with the provider's text, an unlisted one served, BitmaskMatch
//! and IPAddressesMatch, Priority order, a provider that never answers failing open within its
//! bound, answers cached, authenticated sessions bypassing, InternalMailEnabled and
//! ExternalMailEnabled, and bad cmdlet input.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::antispam::{authenticated_rcpt, internal_sender, rcpt_to, sender_account};
use common::dns::{Dns, Zone};
use common::mail::{configure, fails, run, setup};
use common::*;

const DEFAULT_TEXT: &str = "Recipient not authorized, your IP has been found on a block list";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn dns_servers(dns: &Dns) -> String {
    format!(
        "Set-TransportServer HUB1 -ExternalDNSServers '{}'",
        dns.addr
    )
}

/// One anonymous transaction from `from` up to its RCPT; the RCPT reply.
async fn rcpt_from(gw: &Gateway, from: &str) -> String {
    rcpt_to(gw, Some(from), "sender@contoso.test").await
}

/// A DNS server for bl.test whose zone lists each of `listed` (name, answer).
async fn block_lists(listed: Vec<(&'static str, Ipv4Addr)>) -> Dns {
    Dns::start(
        "bl.test",
        Zone {
            a: listed,
            ..Default::default()
        },
    )
    .await
}

/// `s` asks the provider Zen (zen.bl.test, its default text) at `dns`, then takes `extra`.
async fn asking_zen(s: &Setup, dns: &Dns, extra: &[&str]) {
    let servers = dns_servers(dns);
    let mut lines = vec![
        servers.as_str(),
        "Add-IPBlockListProvider -Name Zen -LookupDomain zen.bl.test",
    ];
    lines.extend_from_slice(extra);
    configure(s, &lines).await;
}

fn refused(text: &str) -> String {
    format!("550 5.7.1 {text}\r\n")
}

#[tokio::test]
async fn a_listed_source_is_refused_with_the_providers_text_and_an_unlisted_one_is_served() {
    let dns = block_lists(vec![("50.0.0.127.zen.bl.test", ip("127.0.0.2"))]).await;
    let s = setup().await;
    s.sql("UPDATE receive_connector SET protocol_logging_level = 'Verbose'")
        .await;
    configure(
        &s,
        &[
            &dns_servers(&dns),
            "Add-IPBlockListProvider -Name 'Zen' -LookupDomain zen.bl.test -RejectionResponse 'Source IP address is listed at zen.bl.test'",
        ],
    )
    .await;
    let gw = s.start().await;

    assert_eq!(
        rcpt_from(&gw, "127.0.0.50").await,
        refused("Source IP address is listed at zen.bl.test")
    );
    assert!(rcpt_from(&gw, "127.0.0.51").await.starts_with("250 "));

    let g = &gw;
    eventually("the agent's line in the protocol log", || async move {
        let log = receive_log(g);
        log.contains("Connection Filtering Agent") && log.contains("provider 'Zen'")
    })
    .await;
    eventually("the agent's FAIL in the tracking log", || async move {
        let fail = run(g, "Get-MessageTrackingLog -EventId FAIL | fl").await;
        fail.contains("Connection Filtering Agent")
            && fail.contains("provider 'Zen'")
            && fail.lines().any(|l| {
                l.split_once(':')
                    .is_some_and(|(k, v)| k.trim() == "Source" && v.trim() == "AGENT")
            })
    })
    .await;

    let listed = run(&gw, "Get-IPBlockListProvider Zen | fl").await;
    assert_eq!(shown(&listed, "LookupDomain"), "zen.bl.test");
    assert_eq!(shown(&listed, "Priority"), "1");
    assert_eq!(shown(&listed, "Enabled"), "True");

    // Disabled, the provider is not asked: the listed source is served once the gateway reloads.
    run(&gw, "Set-IPBlockListProvider Zen -Enabled $false").await;
    eventually("the disabled provider no longer applies", || async move {
        rcpt_from(g, "127.0.0.50").await.starts_with("250 ")
    })
    .await;
}

#[tokio::test]
async fn bitmask_and_address_matches_in_priority_order() {
    let dns = block_lists(vec![
        ("61.0.0.127.bits.bl.test", ip("127.0.0.6")),
        ("62.0.0.127.bits.bl.test", ip("127.0.0.2")),
        ("63.0.0.127.codes.bl.test", ip("127.0.0.11")),
        ("64.0.0.127.codes.bl.test", ip("127.0.0.2")),
        ("65.0.0.127.bits.bl.test", ip("127.0.0.4")),
        ("65.0.0.127.codes.bl.test", ip("127.0.0.10")),
    ])
    .await;
    let s = setup().await;
    configure(
        &s,
        &[
            &dns_servers(&dns),
            "Add-IPBlockListProvider -Name Bits -LookupDomain bits.bl.test -BitmaskMatch 127.0.0.4",
            // Inserted before Bits, which moves to 2, as Exchange does.
            "Add-IPBlockListProvider -Name Codes -LookupDomain codes.bl.test -IPAddressesMatch 127.0.0.10,127.0.0.11 -Priority 1 -RejectionResponse 'Listed by Codes'",
        ],
    )
    .await;
    let gw = s.start().await;
    let order = run(&gw, "Get-IPBlockListProvider").await;
    let codes = order.find("Codes").unwrap();
    let bits = order.find("Bits").unwrap();
    assert!(codes < bits, "{order}");
    assert_eq!(
        shown(
            &run(&gw, "Get-IPBlockListProvider Bits | fl").await,
            "Priority"
        ),
        "2"
    );

    // 127.0.0.6 has the 4 bit; 127.0.0.2 has not.
    assert_eq!(rcpt_from(&gw, "127.0.0.61").await, refused(DEFAULT_TEXT));
    assert!(rcpt_from(&gw, "127.0.0.62").await.starts_with("250 "));
    // 127.0.0.11 is in the list; 127.0.0.2 is not.
    assert_eq!(
        rcpt_from(&gw, "127.0.0.63").await,
        refused("Listed by Codes")
    );
    assert!(rcpt_from(&gw, "127.0.0.64").await.starts_with("250 "));
    // Listed by both: the first in Priority order gives the reply.
    assert_eq!(
        rcpt_from(&gw, "127.0.0.65").await,
        refused("Listed by Codes")
    );

    // Moved back to priority 2, Codes gives way to Bits for the source both list.
    run(&gw, "Set-IPBlockListProvider Codes -Priority 2").await;
    let g = &gw;
    eventually("Bits first", || async move {
        rcpt_from(g, "127.0.0.65").await == refused(DEFAULT_TEXT)
    })
    .await;
    // A recipient in BypassedRecipients is not refused.
    run(
        &gw,
        "Set-IPBlockListProvidersConfig -BypassedRecipients sender@contoso.test",
    )
    .await;
    eventually("the bypassed recipient served", || async move {
        rcpt_from(g, "127.0.0.61").await.starts_with("250 ")
    })
    .await;
}

#[tokio::test]
async fn a_provider_that_never_answers_fails_open_within_its_bound() {
    // A DNS server that reads and never replies, on UDP and TCP.
    // The same port on both, on an address of this test's own; another process may hold the
    // TCP side of a port the UDP side got, so a few ports are tried.
    let (_udp, _tcp, silent) = (0..20)
        .find_map(|_| {
            let udp = std::net::UdpSocket::bind("127.0.0.57:0").ok()?;
            let at = udp.local_addr().ok()?;
            let tcp = std::net::TcpListener::bind(at).ok()?;
            Some((udp, tcp, at))
        })
        .expect("a port free on UDP and TCP");
    let s = setup().await;
    s.sql("UPDATE receive_connector SET protocol_logging_level = 'Verbose'")
        .await;
    configure(
        &s,
        &[
            &format!("Set-TransportServer HUB1 -ExternalDNSServers '{silent}'"),
            "Add-IPBlockListProvider -Name Silent -LookupDomain silent.bl.test",
        ],
    )
    .await;
    let gw = s.start().await;

    let mut c = Raw::connect_from(gw.smtp(), Some("127.0.0.70")).await;
    assert!(c.reply().await.starts_with("220 "));
    assert!(c.cmd("EHLO client.example").await.starts_with("250-"));
    let started = Instant::now();
    let mail = c.cmd("MAIL FROM:<someone@example.net>").await;
    assert!(mail.starts_with("250 "), "{mail}");
    let r = c.cmd("RCPT TO:<sender@contoso.test>").await;
    let took = started.elapsed();
    assert!(r.starts_with("250 "), "{r}");
    // The per-query bound is 2 s; generous for a loaded machine, far below the client's wait.
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert!(c.cmd("DATA").await.starts_with("354 "));
    let end = c
        .cmd("Subject: while the list is down\r\n\r\nhello\r\n.")
        .await;
    assert!(end.starts_with("250 "), "the mail is accepted: {end}");
    c.cmd("QUIT").await;
    let g = &gw;
    eventually("the failure in the protocol log", || async move {
        receive_log(g).contains("IP Block List provider 'Silent' failed")
    })
    .await;
}

#[tokio::test]
async fn a_cached_answer_is_reused() {
    let dns = block_lists(vec![("80.0.0.127.zen.bl.test", ip("127.0.0.2"))]).await;
    let s = setup().await;
    asking_zen(&s, &dns, &[]).await;
    let gw = s.start().await;
    assert_eq!(rcpt_from(&gw, "127.0.0.80").await, refused(DEFAULT_TEXT));
    let after_first = dns.queries();
    assert!(after_first >= 1, "the provider was asked");
    assert_eq!(rcpt_from(&gw, "127.0.0.80").await, refused(DEFAULT_TEXT));
    assert_eq!(rcpt_from(&gw, "127.0.0.80").await, refused(DEFAULT_TEXT));
    assert_eq!(dns.queries(), after_first, "answered from the cache");
    // A source the list does not hold: asked once, then the negative answer is cached too.
    assert!(rcpt_from(&gw, "127.0.0.81").await.starts_with("250 "));
    let after_miss = dns.queries();
    assert!(after_miss > after_first);
    assert!(rcpt_from(&gw, "127.0.0.81").await.starts_with("250 "));
    assert_eq!(dns.queries(), after_miss, "the negative answer cached");
}

#[tokio::test]
async fn an_authenticated_session_is_not_filtered() {
    let dns = block_lists(vec![("90.0.0.127.zen.bl.test", ip("127.0.0.2"))]).await;
    let s = setup().await;
    sender_account(&s).await;
    asking_zen(&s, &dns, &[]).await;
    let gw = s.start().await;
    assert_eq!(rcpt_from(&gw, "127.0.0.90").await, refused(DEFAULT_TEXT));

    let before = dns.queries();
    let r = authenticated_rcpt(&gw, Some("127.0.0.90"), "sender@contoso.test").await;
    assert!(r.starts_with("250 "), "{r}");
    assert_eq!(
        dns.queries(),
        before,
        "no look-up for an authenticated session"
    );
}

#[tokio::test]
async fn the_providers_follow_their_internal_and_external_switches() {
    let dns = block_lists(vec![("91.0.0.127.zen.bl.test", ip("127.0.0.2"))]).await;
    let s = setup().await;
    internal_sender(&s).await;
    s.sql("UPDATE receive_connector SET tarpit_interval = 0")
        .await;
    asking_zen(&s, &dns, &[]).await;
    let gw = s.start().await;
    let g = &gw;
    let src = Some("127.0.0.91");
    let to = "sender@contoso.test";

    // Exchange's defaults: an internal session is not looked up, even without the bypass.
    assert_eq!(rcpt_from(g, "127.0.0.91").await, refused(DEFAULT_TEXT));
    let before = dns.queries();
    let r = authenticated_rcpt(g, src, to).await;
    assert!(r.starts_with("250 "), "{r}");
    assert_eq!(dns.queries(), before, "no look-up for an internal session");

    run(
        g,
        "Set-IPBlockListProvidersConfig -InternalMailEnabled $true",
    )
    .await;
    eventually("internal sessions filtered", || async move {
        authenticated_rcpt(g, src, to).await == refused(DEFAULT_TEXT)
    })
    .await;
    run(
        g,
        "Set-IPBlockListProvidersConfig -ExternalMailEnabled $false",
    )
    .await;
    eventually("anonymous sessions no longer filtered", || async move {
        rcpt_from(g, "127.0.0.91").await.starts_with("250 ")
    })
    .await;
    let fl = run(g, "Get-IPBlockListProvidersConfig | fl").await;
    assert_eq!(shown(&fl, "InternalMailEnabled"), "True");
    assert!(!fl.contains("not enforced"), "{fl}");
}

#[tokio::test]
async fn the_ip_block_list_comes_first_with_its_configured_text() {
    let dns = block_lists(vec![("95.0.0.127.zen.bl.test", ip("127.0.0.2"))]).await;
    let s = setup().await;
    asking_zen(
        &s,
        &dns,
        &[
            "Add-IPBlockListEntry -IPAddress 127.0.0.95",
            "Set-IPBlockListConfig -StaticEntryRejectionResponse 'Blocked here'",
            "Add-IPAllowListEntry -IPAddress 127.0.0.96",
        ],
    )
    .await;
    let gw = s.start().await;
    assert_eq!(rcpt_from(&gw, "127.0.0.95").await, refused("Blocked here"));
    let out = run(&gw, "Get-IPBlockListConfig").await;
    assert_eq!(shown(&out, "StaticEntryRejectionResponse"), "Blocked here");
    // Allow-listed: not looked up at all.
    let before = dns.queries();
    assert!(rcpt_from(&gw, "127.0.0.96").await.starts_with("250 "));
    assert_eq!(dns.queries(), before);
}

#[tokio::test]
async fn bad_input_is_refused_and_stores_nothing() {
    let s = setup().await;
    let gw = s.start().await;
    run(
        &gw,
        "Add-IPBlockListProvider -Name Zen -LookupDomain zen.bl.test",
    )
    .await;
    for (line, says) in [
        (
            "Add-IPBlockListProvider -Name Bad -LookupDomain 'not a domain'",
            "not a valid LookupDomain",
        ),
        (
            "Add-IPBlockListProvider -Name Bad -LookupDomain bl.test -BitmaskMatch 127.0.0",
            "not a valid IPv4 address",
        ),
        (
            "Add-IPBlockListProvider -Name Bad -LookupDomain bl.test -IPAddressesMatch 127.0.0.2,x",
            "\"x\" is not a valid IPv4 address",
        ),
        (
            "Add-IPBlockListProvider -Name zen -LookupDomain other.bl.test",
            "already exists",
        ),
        (
            "Add-IPBlockListProvider -Name Bad -LookupDomain bl.test -Priority 5",
            "must be between 1 and 2",
        ),
        (
            "Add-IPBlockListProvider -Name Bad -LookupDomain bl.test -RejectionResponse 'caf\u{e9}'",
            "printable ASCII",
        ),
        (
            "Add-IPBlockListProvider -Name Bad",
            "missing mandatory parameters: LookupDomain",
        ),
        ("Set-IPBlockListProvider Zen -Priority 0", "out of range"),
        ("Remove-IPBlockListProvider Nope", "couldn't be found"),
        (
            "Set-IPBlockListProvidersConfig -BypassedRecipients 'no address'",
            "not a valid SMTP address",
        ),
    ] {
        let e = fails(&gw, line).await;
        assert!(e.contains(says), "{line}: {e}");
    }
    let all = run(&gw, "Get-IPBlockListProvider").await;
    assert!(!all.contains("Bad"), "{all}");
    let zen = run(&gw, "Get-IPBlockListProvider Zen | fl").await;
    assert_eq!(shown(&zen, "Priority"), "1");
    let config = run(&gw, "Get-IPBlockListProvidersConfig").await;
    assert_eq!(shown(&config, "BypassedRecipients"), "{}");

    // Export writes the line that re-creates the provider; -WhatIf stores nothing.
    let export = run(&gw, "Get-IPBlockListProvider Zen | Export-Cmdlet").await;
    assert!(
        export.starts_with("Add-IPBlockListProvider -Name 'Zen' -LookupDomain 'zen.bl.test'"),
        "{export}"
    );
    run(
        &gw,
        "Add-IPBlockListProvider -Name Other -LookupDomain other.bl.test -WhatIf",
    )
    .await;
    assert!(!run(&gw, "Get-IPBlockListProvider").await.contains("Other"));
    run(&gw, "Remove-IPBlockListProvider Zen").await;
    assert_eq!(run(&gw, "Get-IPBlockListProvider").await.trim(), "");
}
