//! Toolbox › Message Tracking and Toolbox › Protocol Logs in a real browser against `hubgate
//! serve`: mail sent with swaks through the gateway to an aiosmtpd next hop that accepts one
//! recipient and refuses another, found again by Message-ID and by recipient with its events in
//! order; an SMTP session's whole conversation read back from the receive and send protocol
//! logs; hostile HELO names and subjects shown as text.

mod common;

use common::browser::Browser;
use common::console::*;
use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;
use hubgate::logs::protocol::LogKind;
use hubgate::logs::read::{self, ProtocolQuery};
use hubgate::logs::tracking::{self, TrackingQuery};
use hubgate::org::bootstrap::{self, FirstStart};

const DELIVERED_ID: &str = "<delivered-14@contoso.test>";
const FAILED_ID: &str = "<failed-14@contoso.test>";
const HOSTILE_SUBJECT: &str = "<script>document.title='owned'</script> & \"quotes\"";
const HOSTILE_HELO: &str = "<script>alert(1)</script>";
const RECEIVE_ID: &str = "receive:HUB1\\Default HUB1";

/// A gateway logging every session, whose Partner connector leads to a sink on `sink_ip`
/// refusing `gone@partner.example`; and a browser signed in to its console.
async fn started(sink_ip: &str) -> (Console, Browser, Sink) {
    let port = peer_port();
    let sink = Sink::with(
        addr(sink_ip, port),
        SinkOptions {
            refuse: vec!["gone@partner.example".into()],
            ..SinkOptions::default()
        },
    );
    let s = setup().await;
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Partner -AddressSpaces 'partner.example' -DNSRoutingEnabled $false -SmartHosts '{sink_ip}' -Port {port} -ProtocolLoggingLevel Verbose"
            ),
            "Set-ReceiveConnector 'Default HUB1' -ProtocolLoggingLevel Verbose",
        ],
    )
    .await;
    let console = Console::start(s, &[]).await;
    let b = Browser::start(&console.client().origin()).await;
    b.goto("/toolbox").await;
    b.log_on("Administrator", ADMIN_PASSWORD).await;
    b.wait_for_path("the toolbox", |p| p == "/toolbox").await;
    (console, b, sink)
}

/// Sends one message through the gateway with swaks from `source`.
fn send_from(console: &Console, source: &str, to: &str, message_id: &str, subject: &str) {
    let server = console.setup.smtp().to_string();
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--local-interface",
        source,
        "--from",
        SENDER,
        "--to",
        to,
        "--header",
        &format!("Message-Id: {message_id}"),
        "--header",
        &format!("Subject: {subject}"),
        "--body",
        "tracked by the console test",
    ]);
    assert!(ok, "swaks failed: {out}");
}

/// The texts of the elements `css` matches.
async fn texts(b: &Browser, css: &str) -> Vec<String> {
    b.wait_for(css).await;
    let mut out = Vec::new();
    for e in b
        .client
        .find_all(fantoccini::Locator::Css(css))
        .await
        .unwrap()
    {
        out.push(e.text().await.unwrap());
    }
    out
}

/// The event ids the tracking log holds for a Message-ID, read as the shell reads them.
fn events(console: &Console, message_id: &str) -> Vec<String> {
    tracking::search(
        console.setup.data_dir.path(),
        &TrackingQuery {
            message_id: Some(message_id.into()),
            ..TrackingQuery::default()
        },
    )
    .unwrap()
    .into_iter()
    .map(|e| e.event_id)
    .collect()
}

async fn search_tracking(b: &Browser, field: &str, value: &str) -> Vec<String> {
    b.goto("/toolbox/message-tracking").await;
    b.fill(&format!("#in-{field}"), value).await;
    b.click("#search").await;
    b.wait_for_path("the search", |p| p.contains("message_id="))
        .await;
    texts(b, "#tracking-results td.event").await
}

#[tokio::test]
async fn message_tracking_finds_a_delivered_and_a_failed_message_and_shows_their_events() {
    let (console, b, sink) = started("127.0.0.151").await;
    send_from(
        &console,
        "127.0.0.153",
        "ok@partner.example",
        DELIVERED_ID,
        "delivered",
    );
    send_from(
        &console,
        "127.0.0.153",
        "gone@partner.example",
        FAILED_ID,
        HOSTILE_SUBJECT,
    );
    within(60, "both messages' last events are logged", || async {
        events(&console, DELIVERED_ID).contains(&"SEND".to_string())
            && events(&console, FAILED_ID).contains(&"FAIL".to_string())
    })
    .await;
    assert_eq!(sink.recipients(), ["ok@partner.example"]);

    // The Toolbox lists the tool.
    b.goto("/toolbox").await;
    b.click("#tools a[href='/toolbox/message-tracking']").await;
    b.wait_for("#tracking-search").await;

    // By Message-ID, with or without the angle brackets.
    assert_eq!(
        search_tracking(&b, "message_id", DELIVERED_ID).await,
        ["RECEIVE", "SEND"]
    );
    assert_eq!(
        search_tracking(&b, "message_id", "failed-14@contoso.test").await,
        ["RECEIVE", "FAIL"]
    );
    // By recipient.
    assert_eq!(
        search_tracking(&b, "recipient", "OK@partner.example").await,
        ["RECEIVE", "SEND"]
    );
    let failed = search_tracking(&b, "recipient", "gone@partner.example").await;
    assert_eq!(failed, ["RECEIVE", "FAIL"]);
    // The hostile subject is text in the page, never markup.
    let subjects = texts(&b, "#tracking-results td.subject").await;
    assert!(
        subjects.iter().all(|s| s == HOSTILE_SUBJECT),
        "{subjects:?}"
    );
    let source = b.source().await;
    assert!(!source.contains("<script>document"), "unescaped: {source}");
    assert!(source.contains("&lt;script&gt;document"), "{source}");
    assert_ne!(b.client.title().await.unwrap(), "owned");
    b.screenshot("tracking-search").await;

    // By sender and event: both messages' RECEIVE, in the order received.
    b.goto("/toolbox/message-tracking").await;
    b.fill("#in-sender", SENDER).await;
    b.wait_for("#in-event_id")
        .await
        .select_by_value("RECEIVE")
        .await
        .unwrap();
    b.click("#search").await;
    b.wait_for_path("the search", |p| p.contains("event_id=RECEIVE"))
        .await;
    let ids = texts(&b, "#tracking-results td.message-id").await;
    assert_eq!(ids, [DELIVERED_ID, FAILED_ID]);

    // One message: its events in order, the refusal beside its recipient.
    search_tracking(&b, "recipient", "gone@partner.example").await;
    b.click("#tracking-results td.message-id a").await;
    b.wait_for_path("the message", |p| {
        p.starts_with("/toolbox/message-tracking/message?")
    })
    .await;
    assert_eq!(
        texts(&b, "#message-events td.event").await,
        ["RECEIVE", "FAIL"]
    );
    let status = texts(&b, "#message-events td.status").await;
    assert!(status[1].contains("550"), "{status:?}");
    assert_eq!(b.text("#message-subject").await, HOSTILE_SUBJECT);
    assert!(!b.source().await.contains("<script>document"));
    b.screenshot("tracking-message").await;

    // Paging: 26 more messages in one SMTP session make 54 events for ok@partner.example, more
    // than the smallest page holds.
    let (ok, out) = python(
        r#"
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
with smtplib.SMTP(host, port, timeout=60) as s:
    for i in range(26):
        s.sendmail(sys.argv[3], ["ok@partner.example"],
                   "Subject: page %d\r\nMessage-Id: <page-%d@contoso.test>\r\n\r\nbody\r\n" % (i, i))
"#,
        &[
            &console.setup.ip.to_string(),
            &console.setup.smtp_port.to_string(),
            SENDER,
        ],
    );
    assert!(ok, "{out}");
    within(120, "the 26 messages are sent on", || async {
        tracking::search(
            console.setup.data_dir.path(),
            &TrackingQuery {
                recipients: vec!["ok@partner.example".into()],
                event_id: Some("SEND".into()),
                ..TrackingQuery::default()
            },
        )
        .unwrap()
        .len()
            == 27
    })
    .await;
    assert_eq!(
        search_tracking(&b, "recipient", "ok@partner.example")
            .await
            .len(),
        50
    );
    let count = b.text("#tracking-count").await;
    assert!(count.starts_with("Events 1 to 50; more follow."), "{count}");
    let mut shown = texts(&b, "#tracking-results td.message-id").await;
    b.click("#next").await;
    b.wait_for_path("page 2", |p| p.contains("page=2")).await;
    let rest = texts(&b, "#tracking-results td.message-id").await;
    assert_eq!(rest.len(), 4, "{rest:?}");
    // The two pages hold every event once: each message's RECEIVE and SEND. (Which event comes
    // last is not fixed: a message may be received before the one before it is sent on.)
    shown.extend(rest);
    for i in 0..26 {
        let id = format!("<page-{i}@contoso.test>");
        assert_eq!(
            shown.iter().filter(|s| **s == id).count(),
            2,
            "{id}: {shown:?}"
        );
    }
    let first: Vec<&String> = shown.iter().filter(|s| !s.starts_with("<page-")).collect();
    assert!(first.len() == 2 && first[0] == first[1], "{shown:?}");
    assert!(
        b.text("#tracking-count")
            .await
            .starts_with("Events 51 to 54.")
    );
    b.click("#previous").await;
    b.wait_for_path("page 1", |p| p.contains("page=1")).await;

    // A page size that is not offered is refused with its reason.
    b.goto("/toolbox/message-tracking?size=7").await;
    let error = b.text("p.error").await;
    assert!(error.contains("Page size"), "{error}");

    // Another node's log is not readable from here: said plainly.
    b.goto("/toolbox/message-tracking?server=HUB2").await;
    let error = b.text("#unavailable").await;
    assert!(error.contains("no server named \"HUB2\""), "{error}");
    b.close().await;
}

/// The sessions of the receive log from `remote`, as the console reads them.
fn sessions(console: &Console, kind: LogKind, remote: &str) -> Vec<read::ProtocolSession> {
    read::protocol_sessions(
        console.setup.data_dir.path(),
        &ProtocolQuery {
            kind,
            connector: None,
            remote: remote.parse().ok(),
            start: None,
            end: None,
            skip: 0,
            max_sessions: 10,
            max_lines_per_session: 100,
        },
    )
    .unwrap()
    .sessions
}

#[tokio::test]
async fn protocol_logs_show_a_whole_session_and_hostile_helo_names_as_text() {
    let (console, b, _sink) = started("127.0.0.152").await;
    send_from(
        &console,
        "127.0.0.154",
        "ok@partner.example",
        "<proto-14@contoso.test>",
        "protocol log",
    );
    let mut raw = Raw::connect_from(console.setup.smtp(), Some("127.0.0.155")).await;
    raw.reply().await;
    raw.cmd(&format!("EHLO {HOSTILE_HELO}")).await;
    raw.cmd("QUIT").await;
    within(
        60,
        "both sessions and the delivery are logged whole",
        || async {
            let ended = |kind, remote| sessions(&console, kind, remote).iter().any(|s| s.ended);
            ended(LogKind::Receive, "127.0.0.154")
                && ended(LogKind::Receive, "127.0.0.155")
                && ended(LogKind::Send, "127.0.0.152")
        },
    )
    .await;

    b.goto("/toolbox").await;
    b.click("#tools a[href='/toolbox/protocol-logs']").await;
    b.wait_for("#protocol-search").await;
    // By XPath: a CSS attribute selector would need the connector's backslash escaped.
    b.client
        .find(fantoccini::Locator::XPath(&format!(
            "//select[@id='in-connector']/option[@value='{RECEIVE_ID}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.fill("#in-remote", "127.0.0.154").await;
    b.click("#search").await;
    b.wait_for_path("the search", |p| p.contains("remote=127.0.0.154"))
        .await;
    let shown = texts(&b, "section.session h2").await;
    assert_eq!(shown.len(), 1, "{shown:?}");
    let events = texts(&b, "section.session td.event").await;
    let data = texts(&b, "section.session td.data").await;
    assert_eq!(events.first().map(String::as_str), Some("+"));
    assert_eq!(events.last().map(String::as_str), Some("-"));
    // The conversation in order, EHLO to QUIT, both sides.
    let at = |prefix: &str| {
        data.iter()
            .position(|d| d.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {data:?}"))
    };
    let order = [
        at("220 "),
        at("EHLO "),
        at("250-"),
        at("MAIL FROM:"),
        at("RCPT TO:<ok@partner.example>"),
        at("DATA"),
        at("354 "),
        at("QUIT"),
        at("221 "),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{data:?}");
    let info = b.text("section.session p.session-info").await;
    assert!(
        info.contains("HUB1\\Default HUB1") && info.contains("127.0.0.154"),
        "{info}"
    );
    b.screenshot("protocol-log-session").await;

    // A hostile HELO name: text, not markup.
    b.goto("/toolbox/protocol-logs?connector=receive%3A&remote=127.0.0.155")
        .await;
    let data = texts(&b, "section.session td.data").await;
    assert!(
        data.iter().any(|d| d == &format!("EHLO {HOSTILE_HELO}")),
        "{data:?}"
    );
    let source = b.source().await;
    assert!(!source.contains(HOSTILE_HELO), "unescaped: {source}");

    // The send side: the delivery to the next hop, from connect to disconnect.
    b.goto("/toolbox/protocol-logs").await;
    b.wait_for("#in-connector")
        .await
        .select_by_value("send:Partner")
        .await
        .unwrap();
    b.fill("#in-remote", "127.0.0.152").await;
    b.click("#search").await;
    b.wait_for_path("the search", |p| p.contains("connector=send"))
        .await;
    let data = texts(&b, "section.session td.data").await;
    assert!(
        data.iter()
            .any(|d| d.starts_with("RCPT TO:<ok@partner.example>")),
        "{data:?}"
    );
    let info = b.text("section.session p.session-info").await;
    assert!(info.starts_with("Partner"), "{info}");

    // Signed out, neither tool shows anything: the sign-in page instead.
    let c = console.client();
    for path in [
        "/toolbox/protocol-logs?remote=127.0.0.155",
        "/toolbox/message-tracking",
        "/toolbox/message-tracking/message?id=x",
    ] {
        let r = c.get(path, &[]).await;
        assert_eq!(r.status, 303, "{path}: {}", r.body);
        assert!(
            r.header("location")
                .unwrap_or("")
                .starts_with("/logon?next=")
        );
        assert!(!r.body.contains("EHLO"), "{}", r.body);
    }

    // A second node of the organisation: listed, but its logs are on it, and the page says so.
    let (ip, port) = (console.setup.ip, console.setup.another_port());
    bootstrap::ensure_server(
        &console.setup.pool,
        &FirstStart {
            server_name: "HUB2",
            fqdn: "hub2.contoso.test",
            default_bindings: Some(vec![format!("{ip}:{port}")]),
            client_bindings: Some(vec![format!("{ip}:{port}")]),
            admin_password: None,
        },
    )
    .await
    .unwrap();
    b.goto("/toolbox/protocol-logs").await;
    b.wait_for("#in-server")
        .await
        .select_by_value("HUB2")
        .await
        .unwrap();
    b.click("#search").await;
    let error = b.text("#unavailable").await;
    assert!(
        error.contains("of HUB2 is kept on HUB2 itself") && error.contains("runs on HUB1"),
        "{error}"
    );
    let shown = b
        .client
        .find_all(fantoccini::Locator::Css("section.session"))
        .await
        .unwrap();
    assert!(shown.is_empty(), "nothing is searched");

    // A remote address that is not one: refused with its reason, nothing searched.
    b.goto("/toolbox/protocol-logs?remote=mail.example").await;
    let error = b.text("p.error").await;
    assert!(error.contains("is not an IP address"), "{error}");
    b.close().await;
}
