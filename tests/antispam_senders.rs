//! The Sender Filter agent (Set-SenderFilterConfig) and source throttling, against the real
//! binary: blocked senders, domains and subdomains refused at MAIL, blank senders, the bypass of
//! an authenticated session, bad input, the tarpit on 5xx RCPT replies, and the connection rate
//! per source address.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::antispam::{authenticated_rcpt, sender_account};
use common::mail::{configure, fails, run, setup};
use common::pair::tracking_has;
use common::*;
use hubgate::org::Account;

const DENIED: &str = "554 5.1.0 Sender Denied\r\n";

/// One anonymous session from `source`: EHLO, then MAIL FROM:<from>; the MAIL reply. A refusal
/// ends the session (checked); an accepted sender is followed by QUIT.
async fn mail_from(gw: &Gateway, source: &str, from: &str) -> String {
    let mut c = Raw::connect_from(gw.smtp(), Some(source)).await;
    assert!(c.reply().await.starts_with("220 "));
    assert!(c.cmd("EHLO client.example").await.starts_with("250-"));
    let r = c.cmd(&format!("MAIL FROM:<{from}>")).await;
    if r.starts_with("250 ") {
        c.cmd("QUIT").await;
    } else {
        assert!(c.closed().await, "the session outlived the refusal {r}");
    }
    r
}

#[tokio::test]
async fn blocked_senders_and_domains_are_refused_at_mail() {
    let s = setup().await;
    s.sql("UPDATE receive_connector SET protocol_logging_level = 'Verbose'")
        .await;
    configure(
        &s,
        &["Set-SenderFilterConfig -BlockedSenders Spam@Example.NET,other@spam.example -BlockedDomains bad.example -BlockedDomainsAndSubdomains worse.example"],
    )
    .await;
    let gw = s.start().await;
    let src = "127.0.0.40";

    assert_eq!(mail_from(&gw, src, "spam@example.net").await, DENIED);
    assert_eq!(mail_from(&gw, src, "SPAM@example.NET").await, DENIED);
    assert!(
        mail_from(&gw, src, "ham@example.net")
            .await
            .starts_with("250 ")
    );
    // BlockedDomains is the domain alone; BlockedDomainsAndSubdomains its subdomains too.
    assert_eq!(mail_from(&gw, src, "x@bad.example").await, DENIED);
    assert!(
        mail_from(&gw, src, "x@sub.bad.example")
            .await
            .starts_with("250 ")
    );
    assert_eq!(mail_from(&gw, src, "x@worse.example").await, DENIED);
    assert_eq!(mail_from(&gw, src, "x@a.b.worse.example").await, DENIED);
    assert!(
        mail_from(&gw, src, "x@notworse.example")
            .await
            .starts_with("250 ")
    );

    // As Exchange's agent does, the refusal closes the connection: a client cannot go on to try
    // another sender in the same session.
    let mut c = greeted(&gw, src).await;
    assert_eq!(c.cmd("MAIL FROM:<x@bad.example>").await, DENIED);
    assert!(c.closed().await, "the session ends with Sender Denied");

    let fl = run(&gw, "Get-SenderFilterConfig | fl").await;
    assert_eq!(
        shown(&fl, "BlockedSenders"),
        "{spam@example.net, other@spam.example}"
    );
    assert_eq!(shown(&fl, "BlockedDomains"), "{bad.example}");
    assert_eq!(shown(&fl, "BlockedDomainsAndSubdomains"), "{worse.example}");
    assert_eq!(shown(&fl, "Action"), "Reject");
    assert_eq!(shown(&fl, "BlankSenderBlockingEnabled"), "False");
    assert_eq!(shown(&fl, "Enabled"), "True");

    let g = &gw;
    eventually("the agent's protocol log line", || async move {
        receive_log(g).contains("Sender Filter Agent")
    })
    .await;
    eventually("the agent's tracking FAIL", || async move {
        tracking_has(
            g,
            &[
                "FAIL",
                "AGENT",
                "Sender Filter Agent",
                "554 5.1.0 Sender Denied",
                "x@bad.example",
            ],
        )
    })
    .await;
}

#[tokio::test]
async fn blank_sender_is_refused_only_when_enabled() {
    let s = setup().await;
    let gw = s.start().await;
    let src = "127.0.0.41";
    assert!(mail_from(&gw, src, "").await.starts_with("250 "));

    run(
        &gw,
        "Set-SenderFilterConfig -BlankSenderBlockingEnabled $true",
    )
    .await;
    let g = &gw;
    eventually("the blank sender refused", || async move {
        mail_from(g, src, "").await == DENIED
    })
    .await;
    // A sender with an address is not affected.
    assert!(
        mail_from(&gw, src, "ham@example.net")
            .await
            .starts_with("250 ")
    );

    // Enabled $false turns the whole agent off.
    run(&gw, "Set-SenderFilterConfig -Enabled $false").await;
    eventually("the agent off", || async move {
        mail_from(g, src, "").await.starts_with("250 ")
    })
    .await;
}

#[tokio::test]
async fn an_authenticated_session_is_not_filtered() {
    let s = setup().await;
    sender_account(&s).await;
    configure(
        &s,
        &["Set-SenderFilterConfig -BlockedSenders sender@contoso.test"],
    )
    .await;
    let gw = s.start().await;
    assert_eq!(
        mail_from(&gw, "127.0.0.42", "sender@contoso.test").await,
        DENIED
    );

    let r = authenticated_rcpt(&gw, Some("127.0.0.42"), "sender@contoso.test").await;
    assert!(r.starts_with("250 "), "{r}");
}

#[tokio::test]
async fn bad_input_is_refused_and_stores_nothing() {
    let s = setup().await;
    let gw = s.start().await;
    let before = run(&gw, "Get-SenderFilterConfig | fl").await;
    for (line, says) in [
        (
            "Set-SenderFilterConfig -BlockedSenders not-an-address",
            "'not-an-address' is not a valid SMTP address",
        ),
        (
            "Set-SenderFilterConfig -BlockedSenders 'ok@example.net','@example.net'",
            "'@example.net' is not a valid SMTP address",
        ),
        (
            "Set-SenderFilterConfig -BlockedDomains user@bad.example",
            "'user@bad.example' is not a valid SMTP domain",
        ),
        (
            "Set-SenderFilterConfig -BlockedDomainsAndSubdomains 'bad domain.example'",
            "is not a valid SMTP domain",
        ),
        (
            "Set-SenderFilterConfig -Action StampStatus",
            "StampStatus is not supported",
        ),
        (
            "Set-SenderFilterConfig -Action Drop",
            "Cannot bind parameter 'Action'",
        ),
    ] {
        let e = fails(&gw, line).await;
        assert!(e.contains(says), "{line}: {e}");
    }
    assert_eq!(run(&gw, "Get-SenderFilterConfig | fl").await, before);
    // -WhatIf checks and stores nothing either.
    run(
        &gw,
        "Set-SenderFilterConfig -BlockedSenders spam@example.net -WhatIf",
    )
    .await;
    assert_eq!(run(&gw, "Get-SenderFilterConfig | fl").await, before);
}

/// A session from `source` past its banner and EHLO, whatever they say.
async fn greeted(gw: &Gateway, source: &str) -> Raw {
    let mut c = Raw::connect_from(gw.smtp(), Some(source)).await;
    c.reply().await;
    c.cmd("EHLO client.example").await;
    c
}

/// The time from sending `line` to its reply.
async fn timed(c: &mut Raw, line: &str) -> (String, Duration) {
    let t = Instant::now();
    let r = c.cmd(line).await;
    (r, t.elapsed())
}

#[tokio::test]
async fn the_tarpit_delays_5xx_rcpt_replies_of_anonymous_sessions_only() {
    // No relay right for anonymous senders: a foreign recipient is refused at RCPT.
    let s = Setup::new().await;
    s.sql("UPDATE receive_connector SET tarpit_interval = 3, protocol_logging_level = 'Verbose', auth_mechanism = '{Tls,BasicAuth}'")
        .await;
    configure(
        &s,
        &[
            "New-Mailbox -Name Sender -PrimarySmtpAddress sender@contoso.test",
            "Add-IPBlockListEntry -IPAddress 127.0.0.44",
            "Set-SenderFilterConfig -BlockedDomains spam.example",
        ],
    )
    .await;
    Account::create(&s.pool, "Sender", "Partner-pw-1", &[])
        .await
        .unwrap();
    let gw = s.start().await;
    let interval = Duration::from_secs(3);

    // Relay denied, for an anonymous session.
    let mut c = greeted(&gw, "127.0.0.43").await;
    assert!(c.cmd("MAIL FROM:<a@example.org>").await.starts_with("250 "));
    let (r, took) = timed(&mut c, "RCPT TO:<someone@fabrikam.example>").await;
    assert!(r.starts_with("550 5.7.1 "), "{r}");
    assert!(took >= interval, "relay denied after {took:?}");
    c.cmd("QUIT").await;

    // The Connection Filtering agent's refusal.
    let mut c = greeted(&gw, "127.0.0.44").await;
    assert!(c.cmd("MAIL FROM:<a@example.org>").await.starts_with("250 "));
    let (r, took) = timed(&mut c, "RCPT TO:<sender@contoso.test>").await;
    assert!(r.starts_with("550 5.7.1 External client"), "{r}");
    assert!(took >= interval, "IP Block List refusal after {took:?}");
    c.cmd("QUIT").await;

    // The Sender Filter agent's refusal at MAIL too, and then the connection is closed.
    let mut c = greeted(&gw, "127.0.0.43").await;
    let (r, took) = timed(&mut c, "MAIL FROM:<a@spam.example>").await;
    assert_eq!(r, DENIED);
    assert!(took >= interval, "Sender Denied after {took:?}");
    assert!(
        c.closed().await,
        "the session ends after the tarpit and the 554"
    );

    // An authenticated session's 5xx RCPT reply is not tarpitted: its session log has no
    // Tarpit line, where the anonymous sessions' have one for each refusal.
    let mut c = greeted(&gw, "127.0.0.45").await;
    let auth = B64.encode("\0Sender\0Partner-pw-1");
    assert!(
        c.cmd(&format!("AUTH PLAIN {auth}"))
            .await
            .starts_with("235 ")
    );
    assert!(
        c.cmd("MAIL FROM:<sender@contoso.test>")
            .await
            .starts_with("250 ")
    );
    let r = c.cmd("RCPT TO:<nobody@contoso.test>").await;
    assert_eq!(r, "550 5.1.1 User unknown\r\n");
    c.cmd("QUIT").await;
    let log = receive_log(&gw);
    assert_eq!(log.matches("Tarpit for '0.00:00:03").count(), 3, "{log}");
    let authenticated: Vec<&str> = log.lines().filter(|l| l.contains("127.0.0.45:")).collect();
    assert!(
        !authenticated.is_empty(),
        "no log of the authenticated session"
    );
    assert!(
        !authenticated.iter().any(|l| l.contains("Tarpit for")),
        "{authenticated:#?}"
    );
}

/// Connects from `source`; the banner (a 220 or the refusal), then QUIT.
async fn banner_from(gw: &Gateway, source: &str) -> String {
    let mut c = Raw::connect_from(gw.smtp(), Some(source)).await;
    let b = c.reply().await;
    if b.starts_with("220 ") {
        c.cmd("QUIT").await;
    }
    b
}

const RATE_REFUSAL: &str = "421 4.3.2 The maximum connection rate per minute from this source has exceeded a limit, closing transmission channel\r\n";

#[tokio::test]
async fn a_burst_from_one_source_is_cut_at_its_rate_while_others_are_served() {
    let s = setup().await;
    s.sql("UPDATE receive_connector SET protocol_logging_level = 'Verbose'")
        .await;
    configure(
        &s,
        &[
            "Set-TransportServer HUB1 -MaxConnectionRatePerMinutePerSource 3",
            "Add-IPAllowListEntry -IPAddress 127.0.0.47 -Comment 'backup MX'",
        ],
    )
    .await;
    let gw = s.start().await;

    const BURST: usize = 8;
    let started = Instant::now();
    let mut served = 0usize;
    let mut refused = 0usize;
    for _ in 0..BURST {
        let b = banner_from(&gw, "127.0.0.46").await;
        if b.starts_with("220 ") {
            served += 1;
        } else {
            assert_eq!(b, RATE_REFUSAL);
            refused += 1;
        }
    }
    // Three a minute: the bucket holds three and gains one every 20 s of the burst.
    let refills = (started.elapsed().as_secs() / 20) as usize;
    assert!(served >= 3, "served {served}");
    assert!(
        served <= 3 + refills,
        "served {served} in {:?}",
        started.elapsed()
    );
    assert!(refused >= BURST - 3 - refills, "refused {refused}");

    // Another source is served; an allow-listed one is exempt.
    assert!(banner_from(&gw, "127.0.0.48").await.starts_with("220 "));
    for _ in 0..BURST {
        assert!(banner_from(&gw, "127.0.0.47").await.starts_with("220 "));
    }

    let out = run(&gw, "Get-TransportServer HUB1 | fl").await;
    assert_eq!(shown(&out, "MaxConnectionRatePerMinutePerSource"), "3");
    // The flood is logged once per dry spell, not once per connection.
    let log = receive_log(&gw);
    let lines = log
        .lines()
        .filter(|l| l.contains("MaxConnectionRatePerMinutePerSource"))
        .count();
    assert!((1..=1 + refills).contains(&lines), "{lines} lines:\n{log}");
    let g = &gw;
    eventually("the tracking DEFER", || async move {
        tracking_has(
            g,
            &["DEFER", "AGENT", "Connection Filtering Agent", "127.0.0.46"],
        )
    })
    .await;

    // Unlimited again: the source is served at once.
    run(
        &gw,
        "Set-TransportServer HUB1 -MaxConnectionRatePerMinutePerSource unlimited",
    )
    .await;
    eventually("the limit lifted", || async move {
        banner_from(g, "127.0.0.46").await.starts_with("220 ")
    })
    .await;
    let e = fails(
        &gw,
        "Set-TransportServer HUB1 -MaxConnectionRatePerMinutePerSource 0",
    )
    .await;
    assert!(e.contains("MaxConnectionRatePerMinutePerSource"), "{e}");
}
