//! Shadow redundancy, the send side (reference §1.2, §1.3, §1.5; identity-and-rights.md): a
//! real `hubgate serve` hands messages to a scripted primary (tests/peers/primary.py, speaking
//! the reference's wire format and misbehaving on request) and keeps shadow copies until the
//! primary discards them; heartbeats, resubmission and broken peers. Nothing here may lose a
//! message: each one ends delivered (discarded) or still queued.

mod common;
#[path = "peers/primary.rs"]
mod primary;

use base64::Engine;
use common::mail::*;
use common::pair::tracking_has;
use common::*;
use primary::{PRIMARY_NAME, Primary};

/// A connector to org2.test through `hosts` (one port), whose anonymous sessions may shadow
/// (attempt 3 of the seed, with the right given to the identity the session really has).
fn connector(name: &str, space: &str, hosts: &str, port: u16, grant: bool) -> Vec<String> {
    let mut lines = vec![format!(
        "New-SendConnector -Name '{name}' -AddressSpaces '{space}' -DNSRoutingEnabled $false -SmartHosts {hosts} -Port {port}"
    )];
    if grant {
        lines.push(format!(
            "Get-SendConnector '{name}' | Add-ADPermission -User 'NT AUTHORITY\\ANONYMOUS LOGON' -ExtendedRights ms-Exch-SMTP-Send-XShadow"
        ));
    }
    lines
}

async fn gateway(lines: &[String]) -> Gateway {
    let s = setup().await;
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    configure(&s, &refs).await;
    s.start().await
}

/// (message id, recipient status, delivery type of its queue) for every recipient row.
async fn recipients(gw: &Gateway) -> Vec<(uuid::Uuid, String, Option<String>)> {
    sqlx::query_as(
        "SELECT r.message_id, r.status, q.delivery_type FROM message_recipient r
           LEFT JOIN delivery_queue q ON q.id = r.queue_id ORDER BY r.message_id",
    )
    .fetch_all(gw.pool())
    .await
    .unwrap()
}

async fn shadow_count(gw: &Gateway) -> usize {
    recipients(gw)
        .await
        .iter()
        .filter(|(_, s, t)| s == "Shadow" && t.as_deref() == Some("ShadowRedundancy"))
        .count()
}

async fn body_exists(gw: &Gateway, id: uuid::Uuid) -> bool {
    gw.stored_body(id).await.is_some()
}

/// Sends `n` messages over one SMTP session (Python smtplib).
fn send_many(gw: &Gateway, to: &str, n: usize) {
    let script = r#"
import smtplib, sys
host, port, to, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
with smtplib.SMTP(host, port, timeout=60) as s:
    for i in range(n):
        s.sendmail("sender@contoso.test", [to], f"Subject: batch {i}\r\n\r\nmessage {i}\r\n")
"#;
    let smtp = gw.smtp();
    let (ok, out) = python(
        script,
        &[
            &smtp.ip().to_string(),
            &smtp.port().to_string(),
            to,
            &n.to_string(),
        ],
    );
    assert!(ok, "{out}");
}

#[tokio::test]
async fn the_shadow_queue_holds_the_copy_until_the_primary_discards_it() {
    let port = peer_port();
    let primary = Primary::start(addr("127.0.0.131", port), &["--hold"]);
    let mut lines = connector("To Org2", "org2.test", "'127.0.0.131'", port, true);
    lines.push("Set-SendConnector 'To Org2' -ProtocolLoggingLevel Verbose".into());
    let gw = gateway(&lines).await;
    send(&gw, &["administrator@org2.test"], "shadowed");

    within(30, "a shadow copy on this node", || async {
        shadow_count(&gw).await == 1
    })
    .await;
    let rows = recipients(&gw).await;
    let id = rows[0].0;
    assert!(body_exists(&gw, id).await, "the body stays with the copy");

    // The wire: XSHADOW with this node's context, then XSHADOW=<message id> on MAIL, after SIZE.
    let connector_id: (uuid::Uuid,) =
        sqlx::query_as("SELECT id FROM send_connector WHERE name = 'To Org2'")
            .fetch_one(gw.pool())
            .await
            .unwrap();
    let xshadow = primary.commands("XSHADOW");
    assert_eq!(xshadow.len(), 1, "{:?}", primary.log());
    let context = xshadow[0].split_whitespace().nth(2).unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(context)
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        format!("{}@{SERVER}@", connector_id.0)
    );
    let got = primary.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["xshadow"], id.hyphenated().to_string());
    let mail = got[0]["mail_line"].as_str().unwrap();
    // Exchange's parameter order: SIZE, (AUTH,) XSHADOW, then ENVID/RET/BODY.
    let size = mail.find(" SIZE=").expect(mail);
    let xshadow_at = mail
        .find(&format!(" XSHADOW={}", id.hyphenated()))
        .expect(mail);
    assert!(size < xshadow_at, "{mail}");
    let log = primary.log();
    let pos = |verb: &str| log.iter().position(|l| l.contains(verb)).unwrap();
    assert!(pos("XSHADOW ") < pos("MAIL FROM"), "{log:?}");
    assert!(pos("MAIL FROM") < pos("XQDISCARD 50"), "{log:?}");

    // The queue viewer shows the shadow queue under the primary's name, and its message.
    let queues = run(&gw, "Get-Queue").await;
    assert!(
        queues.lines().any(|l| l.contains("ShadowRedundancy")
            && l.contains(PRIMARY_NAME)
            && l.contains(" 1 ")),
        "{queues}"
    );
    let fl = run(
        &gw,
        "Get-Queue | Where-Object {$_.DeliveryType -eq 'ShadowRedundancy'} | Format-List",
    )
    .await;
    assert!(
        fl.contains("NextHopDomain") && fl.contains(PRIMARY_NAME),
        "{fl}"
    );
    let messages = run(&gw, "Get-Message").await;
    assert!(messages.contains("shadowed"), "{messages}");

    // Idle: heartbeats every 2 s; the primary returns the id, and the copy goes with its body.
    run(
        &gw,
        "Set-TransportConfig -ShadowHeartbeatTimeoutInterval 00:00:02",
    )
    .await;
    primary.release();
    within(60, "the copy discarded", || async {
        gw.message_count().await == 0
    })
    .await;
    // The body goes right after the row's delete commits.
    within(10, "the body gone", || async {
        !body_exists(&gw, id).await
    })
    .await;
    let queues = run(&gw, "Get-Queue").await;
    assert!(
        !queues
            .lines()
            .any(|l| l.contains("ShadowRedundancy") && !l.contains(" 0 ")),
        "{queues}"
    );
    // Heartbeat sessions: XSHADOW, XQDISCARD, QUIT and no mail.
    assert!(
        primary.commands("XSHADOW").len() >= 2,
        "{:?}",
        primary.log()
    );
    assert_eq!(primary.received().len(), 1);
    // The SmtpSend protocol log shows the conversation as the seed prints it.
    let send_log = protocol_log(&gw, "SmtpSend");
    for want in [
        ",XSHADOW ".to_string(),
        format!("XSHADOW={}", id.hyphenated()),
        ",XQDISCARD 50,".to_string(),
        ",\"251 OK, no discard events\",".to_string(),
        format!(",250 {}", id.hyphenated()),
    ] {
        assert!(send_log.contains(&want), "{want} in\n{send_log}");
    }
}

/// Every line of this node's protocol logs of `kind`.
fn protocol_log(gw: &Gateway, kind: &str) -> String {
    let dir = gw.data_dir().join("logs").join("ProtocolLog").join(kind);
    let mut text = String::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    text
}

#[tokio::test]
async fn no_xshadow_without_the_right_the_offer_or_the_setting() {
    let port = peer_port();
    let no_right = Primary::start(addr("127.0.0.132", port), &[]);
    let no_offer = Primary::start(addr("127.0.0.133", port), &["--no-xshadow"]);
    let disabled = Primary::start(addr("127.0.0.134", port), &[]);
    // The control: granted and offered, so shadowed while the setting is on.
    let allowed = Primary::start(addr("127.0.0.146", port), &["--hold"]);
    // Attempt 3 of the seed: ExternalAuthoritative, so the session is Externally Secured.
    let secured = Primary::start(addr("127.0.0.148", port), &["--hold"]);
    let mut lines = connector("A", "a.org2.test", "'127.0.0.132'", port, false);
    lines.extend(connector("Y", "y.org2.test", "'127.0.0.146'", port, true));
    lines.extend(connector("S", "s.org2.test", "'127.0.0.148'", port, false));
    lines.push("Set-SendConnector S -SmartHostAuthMechanism ExternalAuthoritative".into());
    lines.push("Get-SendConnector S | Add-ADPermission -User 'MS Exchange\\Externally Secured Servers' -ExtendedRights ms-Exch-SMTP-Send-XShadow".into());
    lines.extend(connector("B", "b.org2.test", "'127.0.0.133'", port, true));
    lines.extend(connector("C", "c.org2.test", "'127.0.0.134'", port, true));
    // Attempt 2 of the seed: the right granted to Externally Secured, the session anonymous.
    lines.push("Get-SendConnector A | Add-ADPermission -User 'MS Exchange\\Externally Secured Servers' -ExtendedRights ms-Exch-SMTP-Send-XShadow".into());
    let mut gw = gateway(&lines).await;
    send(&gw, &["x@a.org2.test"], "no right");
    send(&gw, &["x@b.org2.test"], "no offer");
    send(&gw, &["x@y.org2.test"], "allowed");
    send(&gw, &["x@s.org2.test"], "externally secured");
    within(
        30,
        "the unshadowed two delivered, the granted two shadowed",
        || async { gw.message_count().await == 2 && shadow_count(&gw).await == 2 },
    )
    .await;
    assert_eq!(allowed.commands("XSHADOW").len(), 1, "{:?}", allowed.log());
    assert_eq!(secured.commands("XSHADOW").len(), 1, "{:?}", secured.log());
    run(&gw, "Set-TransportConfig -ShadowRedundancyEnabled $false").await;
    // A restart makes sure the node holds the new setting (no waiting on NOTIFY timing).
    gw.restart().await;
    send(&gw, &["x@c.org2.test"], "disabled");
    within(30, "delivered", || async { disabled.received().len() == 1 }).await;
    for (p, what) in [
        (&no_right, "no right"),
        (&no_offer, "no offer"),
        (&disabled, "disabled"),
    ] {
        assert!(p.commands("XSHADOW").is_empty(), "{what}: {:?}", p.log());
        let got = p.received();
        assert_eq!(got.len(), 1, "{what}");
        assert!(
            got[0]["xshadow"].is_null(),
            "{what}: {}",
            got[0]["mail_line"]
        );
    }
    assert_eq!(
        shadow_count(&gw).await,
        2,
        "only the granted sessions' copies"
    );
}

#[tokio::test]
async fn discards_page_while_a_reply_is_full() {
    let port = peer_port();
    let primary = Primary::start(addr("127.0.0.135", port), &["--hold"]);
    let gw = gateway(&connector(
        "To Org2",
        "org2.test",
        "'127.0.0.135'",
        port,
        true,
    ))
    .await;
    send_many(&gw, "administrator@org2.test", 60);
    within(90, "60 shadow copies", || async {
        shadow_count(&gw).await == 60
    })
    .await;
    primary.release();
    run(
        &gw,
        "Set-TransportConfig -ShadowHeartbeatTimeoutInterval 00:00:02",
    )
    .await;
    within(90, "every copy discarded", || async {
        gw.message_count().await == 0
    })
    .await;
    // One session asked twice in a row: the first reply held 50 ids.
    let log = primary.log();
    let paged = log.windows(2).any(|w| {
        let (a, b) = (&w[0], &w[1]);
        a.ends_with("XQDISCARD 50")
            && b.ends_with("XQDISCARD 50")
            && a.split(' ').next() == b.split(' ').next()
    });
    assert!(paged, "{log:?}");
    assert_eq!(primary.received().len(), 60);
}

#[tokio::test]
async fn failed_heartbeats_resubmit_through_the_second_smart_host() {
    let port = peer_port();
    let mut first = Primary::start(addr("127.0.0.136", port), &["--hold"]);
    let second = Primary::start(addr("127.0.0.137", port), &[]);
    let mut lines = connector(
        "To Org2",
        "org2.test",
        "'127.0.0.136','127.0.0.137'",
        port,
        true,
    );
    lines.push(
        "Set-TransportConfig -ShadowHeartbeatTimeoutInterval 00:00:02 -ShadowHeartbeatRetryCount 2"
            .into(),
    );
    let gw = gateway(&lines).await;
    send(&gw, &["administrator@org2.test"], "failover");
    within(30, "a shadow copy", || async {
        shadow_count(&gw).await == 1
    })
    .await;
    assert_eq!(first.received().len(), 1);
    // The primary dies with the message.
    first.stop();
    within(
        60,
        "resubmitted and discarded by the second smart host",
        || async { gw.message_count().await == 0 },
    )
    .await;
    let got = second.received();
    assert_eq!(
        got.len(),
        1,
        "the second smart host received the message once"
    );
    assert!(got[0]["data"].as_str().unwrap().contains("failover"));
    within(10, "the RESUBMIT event with its reason", || async {
        tracking_has(&gw, &["RESUBMIT", "ShadowHeartbeatFailure"])
    })
    .await;
}

#[tokio::test]
async fn a_new_queue_database_id_resubmits_at_once() {
    let port = peer_port();
    let dbid_one = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
    let dbid_two = base64::engine::general_purpose::STANDARD.encode([2u8; 16]);
    let mut primary = Primary::start(addr("127.0.0.138", port), &["--hold", "--dbid", &dbid_one]);
    let mut lines = connector("To Org2", "org2.test", "'127.0.0.138'", port, true);
    // Failures alone would take 15 heartbeats (30 s) to resubmit.
    lines.push("Set-TransportConfig -ShadowHeartbeatTimeoutInterval 00:00:02 -ShadowHeartbeatRetryCount 15".into());
    let gw = gateway(&lines).await;
    send(&gw, &["administrator@org2.test"], "new database");
    within(30, "a shadow copy", || async {
        shadow_count(&gw).await == 1
    })
    .await;
    // The primary comes back with a new queue database: it lost the message.
    primary.restart_with(&["--dbid", &dbid_two]);
    within(60, "sent again and discarded", || async {
        gw.message_count().await == 0
    })
    .await;
    assert_eq!(
        primary.received().len(),
        2,
        "the lost message was sent again"
    );
    assert!(tracking_has(&gw, &["RESUBMIT", "ShadowStateChange"]));
}

#[tokio::test]
async fn broken_xshadow_replies_and_dropped_sessions_lose_nothing() {
    let port = peer_port();
    let malformed = Primary::start(
        addr("127.0.0.139", port),
        &["--xshadow-reply", "250 not*base64!"],
    );
    let refused = Primary::start(
        addr("127.0.0.140", port),
        &["--xshadow-reply", "550 5.7.1 Not authorized"],
    );
    let dropping = Primary::start(addr("127.0.0.141", port), &["--drop-on-xshadow"]);
    let mut lines = connector("M", "m.org2.test", "'127.0.0.139'", port, true);
    lines.extend(connector("R", "r.org2.test", "'127.0.0.140'", port, true));
    lines.extend(connector("D", "d.org2.test", "'127.0.0.141'", port, true));
    let gw = gateway(&lines).await;
    send(&gw, &["x@m.org2.test"], "malformed");
    send(&gw, &["x@r.org2.test"], "refused");
    send(&gw, &["x@d.org2.test"], "dropped");
    within(
        30,
        "the first two delivered without shadow, the third tried",
        || async {
            malformed.received().len() == 1
                && refused.received().len() == 1
                && !dropping.commands("XSHADOW").is_empty()
        },
    )
    .await;
    for p in [&malformed, &refused] {
        assert!(p.received()[0]["xshadow"].is_null(), "{:?}", p.log());
    }
    // The dropped session's message is still queued, waiting for its retry, with no copy. The
    // routing row is written by the queue writer, which may commit the other two messages'
    // deletes first: wait for the state, then check it.
    within(30, "only the dropped one left, routed", || async {
        gw.message_count().await == 1
            && recipients(&gw).await.first().is_some_and(|r| r.2.is_some())
    })
    .await;
    let rows = recipients(&gw).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(matches!(rows[0].1.as_str(), "Ready" | "Retry"), "{rows:?}");
    assert_eq!(rows[0].2.as_deref(), Some("SmartHostConnectorDelivery"));
    assert!(body_exists(&gw, rows[0].0).await);
}

#[tokio::test]
async fn empty_or_over_long_discard_ids_resubmit_and_lose_nothing() {
    let port = peer_port();
    let empty = Primary::start(addr("127.0.0.142", port), &["--discard-reply", "empty"]);
    let long = Primary::start(addr("127.0.0.143", port), &["--discard-reply", "long"]);
    let mut lines = connector("E", "e.org2.test", "'127.0.0.142'", port, true);
    lines.extend(connector("L", "l.org2.test", "'127.0.0.143'", port, true));
    let gw = gateway(&lines).await;
    send(&gw, &["x@e.org2.test"], "empty id");
    send(&gw, &["x@l.org2.test"], "long id");
    // Shadowed, the reply breaks the contract, the copy is resubmitted and sent again, this
    // time without a copy (the primary is not trusted with one for a while).
    within(60, "both delivered", || async {
        gw.message_count().await == 0
    })
    .await;
    for p in [&empty, &long] {
        let got = p.received();
        assert_eq!(got.len(), 2, "{:?}", p.log());
        assert!(!got[0]["xshadow"].is_null());
        assert!(got[1]["xshadow"].is_null());
    }
    assert!(tracking_has(&gw, &["RESUBMIT", "ShadowStateChange"]));
}

#[tokio::test]
async fn ids_never_given_are_ignored() {
    let port = peer_port();
    let primary = Primary::start(
        addr("127.0.0.144", port),
        &["--discard-reply", "foreign", "--hold"],
    );
    let mut lines = connector("To Org2", "org2.test", "'127.0.0.144'", port, true);
    lines.push("Set-TransportConfig -ShadowHeartbeatTimeoutInterval 00:00:02".into());
    let gw = gateway(&lines).await;
    send(&gw, &["administrator@org2.test"], "foreign ids");
    within(30, "a shadow copy", || async {
        shadow_count(&gw).await == 1
    })
    .await;
    // Heartbeats bring only ids it never gave: the copy stays.
    within(30, "two heartbeats answered", || async {
        primary.commands("XQDISCARD").len() >= 3
    })
    .await;
    assert_eq!(shadow_count(&gw).await, 1);
    primary.release();
    within(60, "discarded once its own id comes", || async {
        gw.message_count().await == 0
    })
    .await;
    assert_eq!(primary.received().len(), 1);
}

#[tokio::test]
async fn copies_survive_a_restart_and_an_administrator_can_resubmit_them() {
    let port = peer_port();
    let primary = Primary::start(addr("127.0.0.145", port), &["--hold"]);
    let mut gw = gateway(&connector(
        "To Org2",
        "org2.test",
        "'127.0.0.145'",
        port,
        true,
    ))
    .await;
    send(&gw, &["administrator@org2.test"], "restart");
    within(30, "a shadow copy", || async {
        shadow_count(&gw).await == 1
    })
    .await;
    gw.restart().await;
    let queues = run(&gw, "Get-Queue").await;
    assert!(
        queues.lines().any(|l| l.contains("ShadowRedundancy")
            && l.contains(PRIMARY_NAME)
            && l.contains(" 1 ")),
        "{queues}"
    );
    assert_eq!(shadow_count(&gw).await, 1);
    // Retry-Queue -Resubmit on the shadow queue: sent again (reason Admin), shadowed again.
    let (qid,): (i64,) =
        sqlx::query_as("SELECT id FROM delivery_queue WHERE delivery_type = 'ShadowRedundancy'")
            .fetch_one(gw.pool())
            .await
            .unwrap();
    run(
        &gw,
        &format!("Retry-Queue -Identity {SERVER}\\{qid} -Resubmit $true"),
    )
    .await;
    within(30, "sent again", || async { primary.received().len() == 2 }).await;
    within(30, "shadowed again", || async {
        shadow_count(&gw).await == 1
    })
    .await;
    assert!(tracking_has(&gw, &["RESUBMIT", "Admin"]));
    run(
        &gw,
        "Set-TransportConfig -ShadowHeartbeatTimeoutInterval 00:00:02",
    )
    .await;
    primary.release();
    within(60, "discarded", || async { gw.message_count().await == 0 }).await;
}

#[tokio::test]
async fn a_primary_whose_last_recipients_become_copies_queues_its_discard_event() {
    let port = peer_port();
    let mut primary = Primary::start(addr("127.0.0.147", port), &["--hold"]);
    primary.stop();
    let mut lines = connector("To Org2", "org2.test", "'127.0.0.147'", port, true);
    lines.push("Set-TransportServer HUB1 -TransientFailureRetryInterval 01:00:00".into());
    let gw = gateway(&lines).await;
    send(&gw, &["administrator@org2.test"], "two hops");
    within(30, "waiting for its retry", || async {
        recipients(&gw).await.iter().any(|(_, s, _)| s == "Retry")
    })
    .await;
    // This node is itself the primary for the message (an upstream shadow gave it to us).
    gw.setup
        .sql("UPDATE message SET shadow_message_id = 'upstream-id', shadow_context = 'upstream-context'")
        .await;
    primary.restart_with(&["--hold"]);
    let (qid,): (i64,) = sqlx::query_as(
        "SELECT id FROM delivery_queue WHERE delivery_type = 'SmartHostConnectorDelivery'",
    )
    .fetch_one(gw.pool())
    .await
    .unwrap();
    run(&gw, &format!("Retry-Queue -Identity {SERVER}\\{qid}")).await;
    within(30, "a shadow copy", || async {
        shadow_count(&gw).await == 1
    })
    .await;
    within(10, "the upstream discard event queued once", || async {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT context, shadow_message_id FROM shadow_discard")
                .fetch_all(gw.pool())
                .await
                .unwrap();
        rows == vec![("upstream-context".to_string(), "upstream-id".to_string())]
    })
    .await;
    let (queued,): (bool,) = sqlx::query_as("SELECT shadow_discard_queued FROM message")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert!(queued);
    // When the copy is discarded and the message row goes, no second event is queued.
    run(
        &gw,
        "Set-TransportConfig -ShadowHeartbeatTimeoutInterval 00:00:02",
    )
    .await;
    primary.release();
    within(60, "discarded", || async { gw.message_count().await == 0 }).await;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM shadow_discard")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert_eq!(n, 1);
}
