//! A backup MX under abuse (issue #17's abuse test), against the real binary and a real primary
//! (an aiosmtpd sink on 127.0.0.x that has only the recipients it lists): one source bursts
//! connections and unknown recipients at the backup MX while a second source sends as usual. The
//! burst is throttled as configured (connections per minute from that source, and every refused
//! RCPT tarpitted), the second source is served, the valid mail reaches the primary, and no NDR
//! leaves the gateway for any recipient it refused.

mod common;

use std::time::{Duration, Instant};

use common::mail::{addr, configure, within};
use common::pair::tracking_has;
use common::peers::{Sink, SinkOptions};
use common::*;

const ABUSER: &str = "127.0.0.152";
const NEIGHBOUR: &str = "127.0.0.153";
const ALICE: &str = "alice@primary.example";
const UNKNOWN: &str = "550 5.1.1 User unknown\r\n";
const RATE_REFUSAL: &str = "421 4.3.2 The maximum connection rate per minute from this source has exceeded a limit, closing transmission channel\r\n";
/// Connections per minute one source may open.
const RATE: usize = 4;
/// The burst: connections the abuser tries, and unknown recipients in each it gets.
const BURST: usize = 10;
const UNKNOWN_PER_SESSION: usize = 3;

/// One session from `source`: the banner, then (if served) MAIL from a forged sender, each
/// recipient in `to` with its reply, and DATA when one was accepted. The replies in order.
async fn session(gw: &Gateway, source: &str, to: &[String]) -> Vec<String> {
    let mut c = Raw::connect_from(gw.smtp(), Some(source)).await;
    let banner = c.reply().await;
    let mut replies = vec![banner.clone()];
    if !banner.starts_with("220 ") {
        return replies;
    }
    assert!(c.cmd("EHLO client.example").await.starts_with("250-"));
    let mail = c.cmd("MAIL FROM:<forged@victim.example>").await;
    assert!(mail.starts_with("250 "), "{mail}");
    let mut accepted = false;
    for rcpt in to {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>")).await;
        accepted |= r.starts_with("250 ");
        replies.push(r);
    }
    if accepted {
        assert!(c.cmd("DATA").await.starts_with("354 "));
        let end = c
            .cmd(&format!(
                "From: <forged@victim.example>\r\nSubject: from {source}\r\n\r\nfor the primary\r\n."
            ))
            .await;
        replies.push(end);
    }
    c.cmd("QUIT").await;
    replies
}

#[tokio::test]
async fn a_burst_from_one_source_is_throttled_the_neighbour_served_and_no_ndr_leaves() {
    let primary = addr("127.0.0.151", peer_port());
    let sink = Sink::with(
        primary,
        SinkOptions {
            only: vec![ALICE.to_string()],
            ..SinkOptions::default()
        },
    );
    let s = Setup::new().await;
    let connector = format!(
        "New-SendConnector -Name Primary -AddressSpaces 'primary.example' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {}",
        primary.ip(),
        primary.port()
    );
    configure(
        &s,
        &[
            "New-AcceptedDomain -Name Primary -DomainName primary.example -DomainType ExternalRelay",
            &connector,
            "Set-AcceptedDomain Primary -AddressBookEnabled $true",
            "Set-RecipientFilterConfig -RecipientValidationEnabled $true",
            &format!("Add-ValidRecipient -Address {ALICE}"),
            &format!("Set-TransportServer HUB1 -MaxConnectionRatePerMinutePerSource {RATE}"),
            "Set-ReceiveConnector 'Default HUB1' -TarpitInterval 00:00:01",
        ],
    )
    .await;
    let gw = s.start().await;

    // The neighbour sends while the burst goes on.
    let neighbour = {
        let gw = &gw;
        async move { session(gw, NEIGHBOUR, &[ALICE.to_string()]).await }
    };
    let burst = async {
        let started = Instant::now();
        let mut served = vec![];
        let mut refused = 0usize;
        for n in 0..BURST {
            let mut to: Vec<String> = (0..UNKNOWN_PER_SESSION)
                .map(|i| format!("nobody{n}.{i}@primary.example"))
                .collect();
            // The first session also carries one real recipient, beside the invented ones.
            if n == 0 {
                to.push(ALICE.to_string());
            }
            let t = Instant::now();
            let replies = session(&gw, ABUSER, &to).await;
            if replies[0].starts_with("220 ") {
                served.push((replies, t.elapsed()));
            } else {
                assert_eq!(replies[0], RATE_REFUSAL);
                refused += 1;
            }
        }
        (served, refused, started.elapsed())
    };
    let (neighbour, (served, refused, took)) = tokio::join!(neighbour, burst);

    // The neighbour was served: its message was taken.
    assert!(neighbour[0].starts_with("220 "), "{neighbour:?}");
    assert!(neighbour[1].starts_with("250 "), "{neighbour:?}");
    assert!(neighbour[2].starts_with("250 "), "{neighbour:?}");

    // The abuser: RATE connections a minute (the bucket refills one every 60/RATE s).
    let refills = (took.as_secs() as usize) / (60 / RATE);
    assert!(served.len() >= RATE, "served {}", served.len());
    assert!(
        served.len() <= RATE + refills,
        "served {} in {took:?}",
        served.len()
    );
    assert_eq!(served.len() + refused, BURST);
    assert!(refused >= BURST - RATE - refills, "refused {refused}");
    // Every invented recipient refused at RCPT, each refusal tarpitted.
    for (replies, elapsed) in &served {
        let unknown = replies.iter().filter(|r| r.as_str() == UNKNOWN).count();
        assert_eq!(unknown, UNKNOWN_PER_SESSION, "{replies:?}");
        assert!(
            *elapsed >= Duration::from_secs(UNKNOWN_PER_SESSION as u64),
            "{UNKNOWN_PER_SESSION} refusals in {elapsed:?}: not tarpitted"
        );
    }
    assert!(
        served[0].0.last().unwrap().starts_with("250 "),
        "{served:?}"
    );

    // The two real messages reach the primary, and then nothing is left: no NDR was made for
    // any recipient refused (the forged sender would have been its victim).
    within(
        60,
        "both messages delivered and the queue empty",
        || async { sink.received().len() == 2 && gw.message_count().await == 0 },
    )
    .await;
    let received = sink.received();
    assert!(
        received
            .iter()
            .all(|r| r.mail_from == "forged@victim.example"),
        "only the two messages, no DSN: {:?}",
        received.iter().map(|r| &r.mail_from).collect::<Vec<_>>()
    );
    assert!(
        !tracking_has(&gw, &[",DSN,"]),
        "a DSN event in the tracking log"
    );
    assert!(tracking_has(
        &gw,
        &[
            "FAIL",
            "AGENT",
            "Recipient Filter Agent",
            "nobody0.0@primary.example"
        ]
    ));
}
