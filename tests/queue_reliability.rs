//! Nothing accepted is lost, nothing stuck: DSNs that cannot be queued, categorizer and routing
//! database errors, bodies lost while the gateway was stopped, and a queue in Retry across a
//! SIGKILL. Failures are injected for real (PostgreSQL triggers, a deleted spool file, a peer
//! that refuses service), never mocked.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;
use hubgate::shell::Shell;
use hubgate::transport::queue::{self, Disposition, Envelope, EnvelopeRecipient, Spool};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

/// Every peer listens on an address only its test uses (127.0.0.18x), on this port.
const PEER_PORT: u16 = 2525;

/// How many times an injected failure fired (a sequence: its increments survive the rollback
/// of the transaction that the failure aborts).
async fn fired(pool: &sqlx::PgPool, sequence: &str) -> i64 {
    let (n, called): (i64, bool) =
        sqlx::query_as(&format!("SELECT last_value, is_called FROM {sequence}"))
            .fetch_one(pool)
            .await
            .unwrap();
    if called { n } else { 0 }
}

async fn recipient_state(
    pool: &sqlx::PgPool,
) -> Vec<(String, String, Option<i64>, Option<String>)> {
    sqlx::query_as(
        "SELECT address, status, queue_id, last_error FROM message_recipient ORDER BY address",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The database refuses every message from the null sender: no DSN can be queued.
async fn refuse_dsns(s: &Setup) {
    s.sql("CREATE SEQUENCE ndr_refused").await;
    s.sql(
        "CREATE FUNCTION refuse_dsn() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.from_address = '' THEN
                 PERFORM nextval('ndr_refused');
                 RAISE EXCEPTION 'injected failure: no room for DSNs';
             END IF;
             RETURN NEW;
         END $$",
    )
    .await;
    s.sql("CREATE TRIGGER refuse_dsn BEFORE INSERT ON message FOR EACH ROW EXECUTE FUNCTION refuse_dsn()")
        .await;
}

#[tokio::test]
async fn a_delay_dsn_that_cannot_be_queued_is_tried_again() {
    let s = setup().await;
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Slow -AddressSpaces 'slow.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.186' -Port {PEER_PORT}"
            ),
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 01:00:00 -DelayNotificationTimeout 00:00:02",
        ],
    )
    .await;
    refuse_dsns(&s).await;
    let gw = s.start().await;
    send(&gw, &["d@slow.example"], "late");
    within(60, "the delay DSN refused, then tried again", || async {
        fired(gw.pool(), "ndr_refused").await >= 2
    })
    .await;
    gw.setup.sql("DROP TRIGGER refuse_dsn ON message").await;
    let dir = gw.data_dir();
    within(60, "the delay DSN delivered to the sender", || async {
        mailbox(&dir, SENDER)
            .iter()
            .any(|m| m.contains("Delivery delayed: late") && m.contains("d@slow.example"))
    })
    .await;
    within(
        20,
        "the delay DSN gone from the queue, the original still waiting",
        || async { gw.message_count().await == 1 },
    )
    .await;
}

#[tokio::test]
async fn an_ndr_that_cannot_be_queued_keeps_the_recipient_until_it_is() {
    // An address of this test's own, so the port cannot collide with another test's.
    let port = PEER_PORT;
    let sink = Sink::with(
        addr("127.0.0.181", port),
        SinkOptions {
            refuse: vec!["gone@refuse.example".into()],
            ..Default::default()
        },
    );
    let s = setup().await;
    configure(
        &s,
        &[&format!(
            "New-SendConnector -Name Refuse -AddressSpaces 'refuse.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.181' -Port {port}"
        )],
    )
    .await;
    refuse_dsns(&s).await;
    let gw = s.start().await;
    send(&gw, &["gone@refuse.example"], "bounce me");
    within(60, "the NDR refused, then tried again", || async {
        fired(gw.pool(), "ndr_refused").await >= 2
    })
    .await;
    // The failed recipient and its message are still there, waiting for their NDR.
    assert_eq!(gw.message_count().await, 1);
    let rows = recipient_state(gw.pool()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1, "Retry", "{rows:?}");
    assert!(
        rows[0].3.as_deref().unwrap_or("").contains("550 5.1.1"),
        "{rows:?}"
    );
    let dir = gw.data_dir();
    assert!(mailbox(&dir, SENDER).is_empty(), "an NDR arrived anyway");

    gw.setup.sql("DROP TRIGGER refuse_dsn ON message").await;
    within(60, "the NDR delivered to the sender", || async {
        mailbox(&dir, SENDER)
            .iter()
            .any(|m| m.contains("gone@refuse.example") && m.contains("550 5.1.1 No such user here"))
    })
    .await;
    within(
        20,
        "the original and the NDR gone from the queue",
        || async { gw.message_count().await == 0 },
    )
    .await;
    assert_eq!(mailbox(&dir, SENDER).len(), 1, "exactly one NDR");
    assert!(sink.received().is_empty());
}

/// A trigger that makes creating any remote delivery queue fail, as a routing database error.
async fn break_routing(s: &Setup) {
    s.sql("CREATE SEQUENCE routing_refused").await;
    s.sql(
        "CREATE FUNCTION refuse_queue() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM nextval('routing_refused');
             RAISE EXCEPTION 'injected failure: delivery_queue unavailable';
         END $$",
    )
    .await;
    s.sql(
        "CREATE TRIGGER refuse_queue BEFORE INSERT ON delivery_queue FOR EACH ROW
         WHEN (NEW.delivery_type <> 'MapiDelivery') EXECUTE FUNCTION refuse_queue()",
    )
    .await;
}

#[tokio::test]
async fn a_routing_database_error_is_retried_until_it_clears() {
    // An address of this test's own, so the port cannot collide with another test's.
    let port = PEER_PORT;
    let sink = Sink::start(addr("127.0.0.182", port));
    let s = setup().await;
    configure(
        &s,
        &[&format!(
            "New-SendConnector -Name Later -AddressSpaces 'later.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.182' -Port {port}"
        )],
    )
    .await;
    break_routing(&s).await;
    let gw = s.start().await;
    send(&gw, &["a@later.example"], "route me later");
    within(60, "routing failed and was tried again", || async {
        fired(gw.pool(), "routing_refused").await >= 2
    })
    .await;
    // Still in Submission (no queue), waiting for a retry, and saying why.
    let rows = recipient_state(gw.pool()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].1.as_str(), rows[0].2), ("Retry", None), "{rows:?}");
    assert!(
        rows[0].3.as_deref().unwrap_or("").contains("451 4.3.0"),
        "{rows:?}"
    );
    assert!(sink.received().is_empty());

    gw.setup
        .sql("DROP TRIGGER refuse_queue ON delivery_queue")
        .await;
    within(60, "delivered once the database works again", || async {
        sink.recipients() == vec!["a@later.example".to_string()]
    })
    .await;
    within(20, "the queue emptied", || async {
        gw.message_count().await == 0
    })
    .await;
}

#[tokio::test]
async fn a_categorizer_database_error_is_retried_until_it_clears() {
    let s = setup().await;
    configure(
        &s,
        &["New-Mailbox -Name Later -PrimarySmtpAddress later@contoso.test"],
    )
    .await;
    let mut gw = s.start().await;
    gw.stop();
    // Accepted while the gateway was down (as a restart finds it), for a mailbox the
    // categorizer has to look up in a directory that is unreadable for a while.
    let spool = Spool::open(&gw.data_dir()).unwrap();
    let env = Envelope {
        id: uuid::Uuid::now_v7(),
        server: SERVER.into(),
        from: SENDER.into(),
        recipients: vec![EnvelopeRecipient {
            address: "later@contoso.test".into(),
            orcpt: None,
            notify: None,
            disposition: Disposition::Mailbox,
        }],
        source_ip: "127.0.0.1".parse().unwrap(),
        receive_connector: "HUB1\\Default HUB1".into(),
        helo: "test".into(),
        auth_user: None,
        internet_message_id: Some("<later@test>".into()),
        subject: Some("categorize me later".into()),
        env_id: None,
        ret: None,
        body_type: None,
        smtp_utf8: false,
        shadow: None,
    };
    let body = b"Subject: categorize me later\r\n\r\nbody\r\n".to_vec();
    queue::accept(gw.pool(), &spool, &env, Vec::new(), body)
        .await
        .unwrap();
    gw.setup
        .sql("ALTER TABLE recipient_address RENAME TO recipient_address_away")
        .await;
    gw.spawn().await;
    within(
        60,
        "the recipient waiting in Submission for a retry",
        || async {
            recipient_state(gw.pool()).await.iter().any(|r| {
                r.1 == "Retry"
                    && r.2.is_none()
                    && r.3.as_deref().unwrap_or("").contains("451 4.3.0")
            })
        },
    )
    .await;
    gw.setup
        .sql("ALTER TABLE recipient_address_away RENAME TO recipient_address")
        .await;
    let dir = gw.data_dir();
    within(60, "delivered once the directory is back", || async {
        mailbox(&dir, "later@contoso.test")
            .iter()
            .any(|m| m.contains("Subject: categorize me later"))
    })
    .await;
    within(20, "the queue emptied", || async {
        gw.message_count().await == 0
    })
    .await;
}

#[tokio::test]
async fn a_recipient_stuck_in_submission_still_expires() {
    let s = setup().await;
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Never -AddressSpaces 'never.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.183' -Port {PEER_PORT}"
            ),
            "Set-TransportServer HUB1 -MessageExpirationTimeout 00:00:05",
        ],
    )
    .await;
    break_routing(&s).await;
    let gw = s.start().await;
    send(&gw, &["b@never.example"], "expire me");
    let dir = gw.data_dir();
    within(60, "the expiry NDR", || async {
        mailbox(&dir, SENDER).iter().any(|m| {
            m.contains("b@never.example") && m.contains("550 4.4.7 QUEUE.Expired; message expired")
        })
    })
    .await;
    within(20, "the expired message gone", || async {
        gw.message_count().await == 0
    })
    .await;
}

#[tokio::test]
async fn a_body_lost_while_stopped_is_reported_at_restart() {
    let s = setup().await;
    configure(
        &s,
        &[
            // Nothing listens there and the next try is an hour away: the message waits.
            &format!(
                "New-SendConnector -Name Down -AddressSpaces 'down.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.184' -Port {PEER_PORT}"
            ),
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 01:00:00",
        ],
    )
    .await;
    let mut gw = s.start().await;
    send(&gw, &["c@down.example"], "body goes missing");
    within(60, "the message waiting for its retry", || async {
        recipient_state(gw.pool())
            .await
            .iter()
            .any(|r| r.1 == "Retry")
    })
    .await;
    let (id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM message")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    gw.stop();
    // Lost wherever it was kept: its spool file, or its row (a small body).
    let file = gw.data_dir().join("spool").join(format!("{id}.eml"));
    let _ = std::fs::remove_file(&file);
    sqlx::query("DELETE FROM message_body WHERE id = $1")
        .bind(id)
        .execute(gw.pool())
        .await
        .unwrap();
    assert!(gw.stored_body(id).await.is_none());
    gw.spawn().await;
    let dir = gw.data_dir();
    within(60, "the NDR for the lost body", || async {
        mailbox(&dir, SENDER).iter().any(|m| {
            m.contains("c@down.example")
                && m.contains("550 5.3.0 QUEUE.BodyLost")
                && m.contains("Undeliverable: body goes missing")
        })
    })
    .await;
    within(20, "the rows without a body gone", || async {
        gw.message_count().await == 0
    })
    .await;
}

/// A next hop that answers every connection with 421 and counts them.
async fn refusing_peer(ip: &str) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = conn
                .write_all(b"421 4.3.2 Service not available, try later\r\n")
                .await;
            let _ = conn.shutdown().await;
        }
    });
    (port, count)
}

async fn queue_row(pool: &sqlx::PgPool) -> (String, Option<OffsetDateTime>) {
    sqlx::query_as(
        "SELECT status, next_retry_time FROM delivery_queue WHERE next_hop_domain = '127.0.0.185'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn after_sigkill_a_queue_in_retry_waits_for_its_retry_time() {
    let (port, connections) = refusing_peer("127.0.0.185").await;
    let s = setup().await;
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Busy -AddressSpaces 'busy.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.185' -Port {port}"
            ),
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:45",
        ],
    )
    .await;
    let mut gw = s.start().await;
    for i in 0..3 {
        send(
            &gw,
            &[&format!("u{i}@busy.example")],
            &format!("backlog {i}"),
        );
    }
    within(
        60,
        "the queue in Retry with every message waiting",
        || async {
            queue_row(gw.pool()).await.0 == "Retry"
                && recipient_state(gw.pool())
                    .await
                    .iter()
                    .filter(|r| r.1 == "Retry")
                    .count()
                    == 3
        },
    )
    .await;
    gw.kill();
    let before = connections.load(Ordering::SeqCst);
    assert!(before >= 1);
    gw.spawn().await;

    let (status, next) = queue_row(gw.pool()).await;
    let next = next.expect("NextRetryTime kept");
    assert_eq!(status, "Retry");
    let mut shell = Shell::new(gw.pool().clone(), FQDN);
    let shown = shell.run_line("Get-Queue | Format-List").await.unwrap();
    assert!(
        shown.contains("127.0.0.185") && shown.contains("Retry"),
        "{shown}"
    );
    // Until the retry time, the restarted node leaves the next hop alone and the queue stays
    // in Retry (observed until a second before the time it shows).
    let quiet_until = next - time::Duration::seconds(1);
    let mut polls = 0;
    while OffsetDateTime::now_utc() < quiet_until && polls < 600 {
        assert_eq!(
            connections.load(Ordering::SeqCst),
            before,
            "connected before NextRetryTime {next}"
        );
        let (status, shown_next) = queue_row(gw.pool()).await;
        assert_eq!(status, "Retry");
        assert_eq!(shown_next, Some(next));
        tokio::time::sleep(Duration::from_millis(100)).await;
        polls += 1;
    }
    assert!(polls > 10, "the restart took until the retry time itself");
    // And at the retry time it tries again.
    within(60, "a connection once the retry time came", || async {
        connections.load(Ordering::SeqCst) > before
    })
    .await;
}
