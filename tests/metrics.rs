//! /metrics: Prometheus text read the way a scraper reads it, before and after real mail flows
//! through the gateway to an aiosmtpd next hop; and who may read it.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::console::Console;
use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The source the tests let read /metrics, and one they do not.
const SCRAPER: &str = "127.0.0.232";
const STRANGER: &str = "127.0.0.233";
const SINK: &str = "127.0.0.231";

/// Every sample of a scrape: `name{labels}` → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(console: &Console) -> HashMap<String, f64> {
    let r = console
        .client()
        .with_source(SCRAPER)
        .get("/metrics", &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    samples(&r.body)
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_by_exactly_what_flowed_and_only_allowed_sources_read_them() {
    let port = peer_port();
    let sink = Sink::with(
        addr(SINK, port),
        SinkOptions {
            refuse: vec!["bad@partner.example".into()],
            ..Default::default()
        },
    );
    let s = setup().await;
    configure(
        &s,
        &[&format!(
            "New-SendConnector -Name Partner -AddressSpaces 'partner.example' -DNSRoutingEnabled $false -SmartHosts '{SINK}' -Port {port}"
        )],
    )
    .await;
    let smtp = s.smtp();
    let console = Console::start(s, &[("HUBGATE_METRICS_ALLOW", SCRAPER)]).await;

    // Not on the list: refused, and nothing of the metrics shows.
    let refused = console
        .client()
        .with_source(STRANGER)
        .get("/metrics", &[])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(!refused.body.contains("hubgate_"), "{}", refused.body);

    let before = scrape(&console).await;
    assert_eq!(get(&before, "hubgate_back_pressure"), 0.0, "{before:?}");
    assert!(
        before
            .contains_key("hubgate_queue_length{queue=\"Submission\",delivery_type=\"Undefined\"}"),
        "{before:?}"
    );

    send_to(smtp, "good@partner.example", "metrics good");
    within(30, "the good recipient at the sink", || async {
        sink.recipients() == vec!["good@partner.example".to_string()]
    })
    .await;
    send_to(smtp, "bad@partner.example", "metrics bad");
    // The refused recipient fails for good, and its NDR is delivered to the sender's mailbox.
    let ndr_delivered = "hubgate_messages_delivered_total{connector=\"MapiDelivery\"}";
    let mut after = HashMap::new();
    for _ in 0..300 {
        after = scrape(&console).await;
        if get(&after, ndr_delivered) - get(&before, ndr_delivered) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved = |series: &str| get(&after, series) - get(&before, series);
    let expect = [
        (
            "hubgate_messages_received_total{connector=\"Default HUB1\"}",
            2.0,
        ),
        ("hubgate_connections_total{connector=\"Default HUB1\"}", 2.0),
        (
            "hubgate_messages_delivered_total{connector=\"Partner\"}",
            1.0,
        ),
        ("hubgate_messages_failed_total{connector=\"Partner\"}", 1.0),
        (
            "hubgate_messages_deferred_total{connector=\"Partner\"}",
            0.0,
        ),
        (ndr_delivered, 1.0),
        ("hubgate_dsn_sent_total{kind=\"failure\"}", 1.0),
        ("hubgate_dsn_sent_total{kind=\"delay\"}", 0.0),
        // The SEND and the NDR's DELIVER.
        ("hubgate_delivery_latency_seconds_count", 2.0),
    ];
    for (series, n) in expect {
        assert_eq!(
            moved(series),
            n,
            "{series}\nbefore {before:?}\nafter {after:?}"
        );
    }
    // Both sessions have ended, and the queues are empty again.
    assert_eq!(
        get(&after, "hubgate_connections{connector=\"Default HUB1\"}"),
        0.0
    );
    assert_eq!(
        get(
            &after,
            "hubgate_queue_length{queue=\"partner.example\",delivery_type=\"SmartHostConnectorDelivery\"}"
        ),
        0.0,
        "{after:?}"
    );
    assert_eq!(get(&after, "hubgate_shadow_queue_length"), 0.0);

    // The counts are the tracking log's.
    let log = hubgate::logs::tracking::search(
        console.setup.data_dir.path(),
        &hubgate::logs::tracking::TrackingQuery::default(),
    )
    .unwrap();
    let events = |id: &str| log.iter().filter(|e| e.event_id == id).count() as f64;
    assert_eq!(events("RECEIVE"), 2.0, "{log:?}");
    assert_eq!(events("SEND"), 1.0, "{log:?}");
    assert_eq!(events("FAIL"), 1.0, "{log:?}");
    assert_eq!(events("DSN"), 1.0, "{log:?}");
    assert_eq!(events("DELIVER"), 1.0, "{log:?}");
}

#[tokio::test]
async fn a_next_hop_that_is_down_shows_as_a_deferral_a_queue_length_and_a_delay_dsn() {
    let port = peer_port();
    let s = setup().await;
    configure(
        &s,
        &[
            // Nothing listens on 127.0.0.234. The next try is far off, so the counts hold still.
            &format!(
                "New-SendConnector -Name Down -AddressSpaces 'down.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.234' -Port {port}"
            ),
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:05:00 -OutboundConnectionFailureRetryInterval 00:05:00 -MessageRetryInterval 00:05:00 -DelayNotificationTimeout 00:00:02",
        ],
    )
    .await;
    let smtp = s.smtp();
    let console = Console::start(s, &[("HUBGATE_METRICS_ALLOW", SCRAPER)]).await;
    let before = scrape(&console).await;
    send_to(smtp, "someone@down.example", "metrics down");
    let delay = "hubgate_dsn_sent_total{kind=\"delay\"}";
    let ndr_delivered = "hubgate_messages_delivered_total{connector=\"MapiDelivery\"}";
    let mut after = HashMap::new();
    for _ in 0..600 {
        after = scrape(&console).await;
        if get(&after, delay) >= 1.0 && get(&after, ndr_delivered) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved = |series: &str| get(&after, series) - get(&before, series);
    assert_eq!(moved(delay), 1.0, "{after:?}");
    assert_eq!(
        moved("hubgate_messages_deferred_total{connector=\"Down\"}"),
        1.0,
        "{after:?}"
    );
    assert_eq!(
        moved("hubgate_messages_delivered_total{connector=\"Down\"}"),
        0.0
    );
    assert_eq!(moved("hubgate_dsn_sent_total{kind=\"failure\"}"), 0.0);
    // The delay DSN went to the sender's mailbox; the message itself still waits.
    assert_eq!(moved(ndr_delivered), 1.0, "{after:?}");
    assert_eq!(
        get(
            &after,
            "hubgate_queue_length{queue=\"127.0.0.234\",delivery_type=\"SmartHostConnectorDelivery\"}"
        ),
        1.0,
        "{after:?}"
    );
    let log = hubgate::logs::tracking::search(
        console.setup.data_dir.path(),
        &hubgate::logs::tracking::TrackingQuery::default(),
    )
    .unwrap();
    assert_eq!(
        log.iter().filter(|e| e.event_id == "DEFER").count(),
        1,
        "{log:?}"
    );
}

/// A plain HTTP GET from `source`: (status, body).
async fn http_get(addr: std::net::SocketAddr, source: &str, path: &str) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut tcp = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut raw))
        .await
        .expect("response timed out")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn metrics_on_a_listener_of_their_own_and_not_on_the_console() {
    let s = Setup::new().await;
    let bind = std::net::SocketAddr::from((s.ip, s.another_port()));
    let console = Console::start(
        s,
        &[
            ("HUBGATE_METRICS_BIND", &bind.to_string()),
            ("HUBGATE_METRICS_ALLOW", &format!("{SCRAPER},10.0.0.0/8")),
        ],
    )
    .await;
    let (status, body) = http_get(bind, SCRAPER, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hubgate_back_pressure 0"), "{body}");
    let (status, body) = http_get(bind, STRANGER, "/metrics").await;
    assert_eq!(status, 403, "{body}");
    // Served there, so not on the console's listener, even to an allowed source.
    let r = console
        .client()
        .with_source(SCRAPER)
        .get("/metrics", &[])
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test]
async fn a_bad_allow_list_stops_the_start_with_the_reason() {
    let s = Setup::new().await;
    let mut cmd = serve_command(&s, s.data_dir.path());
    cmd.env("HUBGATE_METRICS_ALLOW", "127.0.0.1,localhost");
    let (status, _, err) = run_to_exit(&mut cmd, "hubgate started with a bad allow list");
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("HUBGATE_METRICS_ALLOW: 'localhost' is not an IP address or network"),
        "{err}"
    );
}
