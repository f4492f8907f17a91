//! Delayed acknowledgement (reference §1.6): a sender that keeps no shadow copy gets its final 250
//! only once the message reached its next hop, or after MaxAcknowledgementDelay; 0 disables it.
//! hubgate's Internet-facing connectors default to 0, the others to Exchange's 30 s.
//!
//! Real `hubgate serve`, real PostgreSQL, a real aiosmtpd next hop (tests/peers/sink.py).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;
use hubgate::shell::Shell;

/// Where the tests relay to, through a send connector whose smart host is the sink.
const REMOTE: &str = "someone@fabrikam.example";

/// A relaying gateway (see [`setup`]) with a send connector for fabrikam.example to `next_hop`,
/// quick retries, and the Default connector logging and holding back its 250 for `delay`.
async fn gateway(next_hop: std::net::SocketAddr, delay: &str, extra: &[&str]) -> Gateway {
    let s = setup().await;
    let mut lines = vec![
        format!(
            "New-SendConnector -Name Fabrikam -AddressSpaces 'fabrikam.example' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {}",
            next_hop.ip(),
            next_hop.port()
        ),
        "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01 -MessageRetryInterval 00:00:01".into(),
        format!(
            "Set-ReceiveConnector 'Default HUB1' -ProtocolLoggingLevel Verbose -MaxAcknowledgementDelay {delay}"
        ),
    ];
    lines.extend(extra.iter().map(|l| l.to_string()));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    configure(&s, &lines).await;
    s.start().await
}

/// Sends one message up to its final dot: the reply to the dot is the client's to read.
async fn up_to_the_dot(gw: &Gateway, subject: &str) -> Raw {
    let mut c = Raw::connect(gw.smtp()).await;
    c.reply().await;
    assert!(c.cmd("EHLO client.example").await.starts_with("250"));
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd(&format!("RCPT TO:<{REMOTE}>")).await;
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(format!("Subject: {subject}\r\n\r\nhello\r\n.\r\n").as_bytes())
        .await;
    c
}

/// The reply to the dot, and how long it took from the dot.
async fn timed_ack(gw: &Gateway, subject: &str) -> (String, Duration) {
    let mut c = up_to_the_dot(gw, subject).await;
    let sent = Instant::now();
    let r = c.reply().await;
    let took = sent.elapsed();
    c.cmd("QUIT").await;
    (r, took)
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The protocol log's DelayedAck lines, once `n` of them are written.
async fn delayed_ack_lines(gw: &Gateway, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    eventually("the DelayedAck lines in the protocol log", || {
        lines = receive_log(gw)
            .lines()
            .filter(|l| l.contains("due to 'DelayedAck'"))
            .map(str::to_string)
            .collect();
        std::future::ready(lines.len() >= n)
    })
    .await;
    lines
}

/// The seconds of a `Tarpit for 'd.hh:mm:ss.fff'` line.
fn tarpit_seconds(line: &str) -> f64 {
    let text = line
        .split("Tarpit for '")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .unwrap_or_else(|| panic!("no delay in {line}"));
    let (days, rest) = text.split_once('.').unwrap();
    let parts: Vec<f64> = rest.split(':').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "{text}");
    days.parse::<f64>().unwrap() * 86400.0 + parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[tokio::test]
async fn the_250_waits_until_the_next_hop_has_accepted_the_message() {
    // A slow next hop: it answers the end of DATA 2 s after it began.
    let next_hop = addr("127.0.0.141", peer_port());
    let sink = Sink::with(
        next_hop,
        SinkOptions {
            delay: Some(2.0),
            ..Default::default()
        },
    );
    let gw = gateway(next_hop, "00:00:30", &[]).await;

    let (reply, took) = timed_ack(&gw, "acknowledged late").await;
    let acked_at = epoch_now();
    assert!(reply.starts_with("250 2.6.0 "), "{reply}");
    // The next hop's record is written before its 250: it is there when the client has its own.
    let got = sink.received();
    assert_eq!(
        got.len(),
        1,
        "the 250 came before the next hop had the message"
    );
    assert_eq!(got[0].rcpt_tos, [REMOTE]);
    assert!(got[0].ended <= acked_at, "{} > {acked_at}", got[0].ended);
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(
        took < Duration::from_secs(25),
        "waited to the limit: {took:?}"
    );

    let lines = delayed_ack_lines(&gw, 1).await;
    assert!(
        lines[0].contains(",*,Tarpit for '0.00:00:0") && lines[0].ends_with(",Delivered"),
        "{lines:?}"
    );
    let logged = tarpit_seconds(&lines[0]);
    assert!((2.0..25.0).contains(&logged), "{lines:?}");
    // The line comes just before the final 250.
    let log = receive_log(&gw);
    let after = &log[log.find("due to 'DelayedAck'").unwrap()..];
    let next = after.lines().nth(1).unwrap_or_default();
    assert!(next.contains(",>,250 2.6.0 "), "{after}");
}

#[tokio::test]
async fn with_the_next_hop_down_the_250_comes_after_max_acknowledgement_delay() {
    // Nothing listens there: the message waits for a retry.
    let next_hop = addr("127.0.0.142", peer_port());
    let _down = Sink::down(next_hop, SinkOptions::default());
    let gw = gateway(next_hop, "00:00:03", &[]).await;

    let (reply, took) = timed_ack(&gw, "next hop down").await;
    assert!(reply.starts_with("250 2.6.0 "), "{reply}");
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    // Acknowledged, so queued: it is still here, waiting for its next hop.
    assert_eq!(gw.message_count().await, 1);
    let status: String = sqlx::query_scalar("SELECT status FROM message_recipient")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert!(status == "Retry" || status == "Ready", "{status}");

    let lines = delayed_ack_lines(&gw, 1).await;
    assert!(lines[0].ends_with(",Expired"), "{lines:?}");
    let logged = tarpit_seconds(&lines[0]);
    assert!((2.9..20.0).contains(&logged), "{lines:?}");
}

#[tokio::test]
async fn the_wait_ends_before_connection_timeout_does() {
    let next_hop = addr("127.0.0.143", peer_port());
    let _down = Sink::down(next_hop, SinkOptions::default());
    // A minute's delay on an eight-second connection: the 250 still goes out in time.
    let gw = gateway(
        next_hop,
        "00:01:00",
        &["Set-ReceiveConnector 'Default HUB1' -ConnectionInactivityTimeout 00:00:05 -ConnectionTimeout 00:00:08"],
    )
    .await;
    let (reply, took) = timed_ack(&gw, "short connection").await;
    assert!(reply.starts_with("250 2.6.0 "), "{reply}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(took >= Duration::from_secs(1), "no wait at all: {took:?}");
    let lines = delayed_ack_lines(&gw, 1).await;
    assert!(lines[0].ends_with(",Expired"), "{lines:?}");
}

#[tokio::test]
async fn zero_answers_at_once_and_a_new_delay_applies_to_a_running_gateway() {
    let next_hop = addr("127.0.0.144", peer_port());
    let _down = Sink::down(next_hop, SinkOptions::default());
    let gw = gateway(next_hop, "00:00:00", &[]).await;

    let (reply, took) = timed_ack(&gw, "no delay").await;
    assert!(reply.starts_with("250 2.6.0 "), "{reply}");
    // Far below any delay: Exchange's 30 s would be waited here if 0 did not disable it.
    assert!(took < Duration::from_secs(10), "{took:?}");
    configure(
        &gw.setup,
        &["Set-ReceiveConnector 'Default HUB1' -MaxAcknowledgementDelay 00:00:02"],
    )
    .await;
    // The change reaches the gateway by NOTIFY: the first message after it waits.
    let mut waited = None;
    for i in 0..20 {
        let (reply, took) = timed_ack(&gw, &format!("after the change {i}")).await;
        assert!(reply.starts_with("250 2.6.0 "), "{reply}");
        if took >= Duration::from_millis(1900) {
            waited = Some(took);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waited = waited.expect("the new MaxAcknowledgementDelay never applied");
    assert!(waited < Duration::from_secs(20), "{waited:?}");
    let lines = delayed_ack_lines(&gw, 1).await;
    assert_eq!(lines.len(), 1, "the message sent with 0 waited: {lines:?}");
    assert!(lines[0].ends_with(",Expired"), "{lines:?}");
}

#[tokio::test]
async fn a_client_that_leaves_during_the_wait_still_has_its_message_delivered() {
    let next_hop = addr("127.0.0.145", peer_port());
    let mut sink = Sink::down(next_hop, SinkOptions::default());
    let gw = gateway(next_hop, "00:01:00", &[]).await;

    let c = up_to_the_dot(&gw, "left early").await;
    // The message is durable before the wait begins.
    within(30, "the message is queued", || async {
        gw.message_count().await == 1
    })
    .await;
    drop(c);
    // The session notices at once, long before the minute is up, and frees its slot.
    let left = Instant::now();
    let lines = delayed_ack_lines(&gw, 1).await;
    assert!(lines[0].ends_with(",Client disconnected"), "{lines:?}");
    assert!(left.elapsed() < Duration::from_secs(30));
    assert!(tarpit_seconds(&lines[0]) < 30.0, "{lines:?}");

    sink.restart();
    within(60, "the message at the next hop", || async {
        sink.recipients() == [REMOTE]
    })
    .await;
    within(30, "the delivered message leaves the queue", || async {
        gw.message_count().await == 0
    })
    .await;
}

async fn delay(sh: &mut Shell, identity: &str) -> String {
    let line = format!("Get-ReceiveConnector '{identity}' | Format-List MaxAcknowledgementDelay");
    let out = sh
        .run_line(&line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"));
    shown(&out, "MaxAcknowledgementDelay")
}

#[tokio::test]
async fn internet_facing_connectors_default_to_no_delay_and_the_others_to_30_seconds() {
    let s = Setup::new().await;
    let mut sh = Shell::new(s.pool.clone(), FQDN);
    // The first start's connectors: Default faces the Internet, Client takes authenticated users.
    assert_eq!(delay(&mut sh, "Default HUB1").await, "00:00:00");
    assert_eq!(delay(&mut sh, "Client HUB1").await, "00:00:30");

    for (name, usage, args, expected) in [
        ("Mx", "Internet", "-Bindings 127.0.0.1:2601", "00:00:00"),
        ("Org", "Internal", "-RemoteIPRanges 10.1.0.0/16", "00:00:30"),
        ("Sub", "Client", "-RemoteIPRanges 10.2.0.0/16", "00:00:30"),
        (
            "Own",
            "Custom",
            "-Bindings 127.0.0.1:2602 -RemoteIPRanges 10.3.0.0/16",
            "00:00:30",
        ),
        (
            "Partner",
            "Partner",
            "-Bindings 127.0.0.1:2603 -RemoteIPRanges 10.4.0.0/16",
            "00:00:30",
        ),
    ] {
        let line = format!("New-ReceiveConnector -Name {name} -Usage {usage} {args}");
        sh.run_line(&line)
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(
            delay(&mut sh, &format!("HUB1\\{name}")).await,
            expected,
            "{usage}"
        );
    }
    // An explicit value beats the preset, and 0 exports as such (Exchange's default is 30 s).
    let out = sh
        .run_line("New-ReceiveConnector -Name Mx2 -Usage Internet -Bindings 127.0.0.1:2604 -MaxAcknowledgementDelay 00:00:15")
        .await
        .unwrap();
    assert!(!out.contains("WARNING"), "{out}");
    assert_eq!(delay(&mut sh, "HUB1\\Mx2").await, "00:00:15");
    let out = sh
        .run_line("Get-ReceiveConnector 'HUB1\\Mx' | Export-Cmdlet")
        .await
        .unwrap();
    assert!(out.contains("-MaxAcknowledgementDelay 00:00:00"), "{out}");
}
