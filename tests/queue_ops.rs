//! Queue operations on a running gateway: the shell changes the database, NOTIFY tells the
//! gateway, and the gateway's queues follow (Suspend/Resume/Retry -Resubmit/Remove-Message), plus
//! connection caps, connection reuse, NOTIFY=NEVER and the null sender, and the tracking log.

mod common;

use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;

async fn queue_id(gw: &Gateway, next_hop: &str) -> i64 {
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM delivery_queue WHERE next_hop_domain = $1")
        .bind(next_hop)
        .fetch_one(gw.pool())
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn unreachable_until_a_connector_exists_then_resubmitted() {
    let port = peer_port();
    let sink = Sink::start(addr("127.0.0.61", port));
    let gw = setup().await.start().await;
    send(&gw, &["lost@nowhere.example"], "no route yet");
    within(20, "the recipient waits in Unreachable", || async {
        run(&gw, "Get-Queue").await.lines().any(|l| {
            l.contains("HUB1\\Unreachable") && l.contains("Unreachable Domain") && l.contains(" 1 ")
        })
    })
    .await;
    run(
        &gw,
        &format!(
            "New-SendConnector -Name Late -AddressSpaces 'nowhere.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.61' -Port {port}"
        ),
    )
    .await;
    // A new connector alone does not move queued mail; Exchange needs Retry-Queue -Resubmit.
    run(
        &gw,
        "Retry-Queue -Identity HUB1\\Unreachable -Resubmit $true",
    )
    .await;
    within(20, "delivered after the resubmit", || async {
        sink.recipients() == vec!["lost@nowhere.example".to_string()]
    })
    .await;
    let log = run(
        &gw,
        "Get-MessageTrackingLog -Recipients lost@nowhere.example",
    )
    .await;
    assert!(log.contains("RECEIVE"), "{log}");
    assert!(log.contains("SEND"), "{log}");
}

#[tokio::test]
async fn suspend_queue_holds_mail_and_resume_releases_it() {
    let port = peer_port();
    let sink = Sink::start(addr("127.0.0.62", port));
    let other = Sink::start(addr("127.0.0.66", port));
    let s = setup().await;
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Partner -AddressSpaces 'partner.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.62' -Port {port}"
            ),
            &format!(
                "New-SendConnector -Name Other -AddressSpaces 'other.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.66' -Port {port}"
            ),
        ],
    )
    .await;
    let gw = s.start().await;
    send(&gw, &["one@partner.example"], "first");
    within(20, "first delivered", || async {
        sink.received().len() == 1
    })
    .await;
    let q = queue_id(&gw, "127.0.0.62").await;
    run(&gw, &format!("Suspend-Queue HUB1\\{q}")).await;
    within(10, "the gateway shows the queue suspended", || async {
        run(&gw, "Get-Queue").await.contains("Suspended")
    })
    .await;
    send(&gw, &["two@partner.example"], "second");
    within(20, "the second message in the suspended queue", || async {
        run(&gw, &format!("Get-Message -Queue HUB1\\{q}"))
            .await
            .contains("sender@contoso.test")
    })
    .await;
    // Proof that the gateway had its chance to deliver from the suspended queue: a message
    // queued after it, in a queue that is not suspended, reaches its next hop.
    send(&gw, &["three@other.example"], "third");
    within(
        20,
        "the third message delivered by another queue",
        || async { other.received().len() == 1 },
    )
    .await;
    assert_eq!(sink.received().len(), 1, "a suspended queue delivered");
    run(&gw, &format!("Resume-Queue HUB1\\{q}")).await;
    within(20, "second delivered after Resume-Queue", || async {
        sink.received().len() == 2
    })
    .await;
}

#[tokio::test]
async fn remove_message_with_and_without_ndr() {
    let port = peer_port();
    let s = setup().await;
    configure(
        &s,
        &[
            // Nothing listens there: the mail waits in Retry.
            &format!(
                "New-SendConnector -Name Down -AddressSpaces 'down.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.63' -Port {port}"
            ),
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:30",
        ],
    )
    .await;
    let gw = s.start().await;
    send(&gw, &["a@down.example"], "remove me with NDR");
    send(&gw, &["b@down.example"], "remove me quietly");
    within(20, "both in Retry", || async {
        let out = run(&gw, "Get-Message").await;
        out.matches("Retry").count() >= 2
    })
    .await;
    let ids: Vec<(i64, String)> = sqlx::query_as(
        "SELECT m.internal_id, r.address FROM message m JOIN message_recipient r ON r.message_id = m.id ORDER BY r.address",
    )
    .fetch_all(gw.pool())
    .await
    .unwrap();
    let q = queue_id(&gw, "127.0.0.63").await;
    run(
        &gw,
        &format!(
            "Remove-Message -Identity HUB1\\{q}\\{} -WithNDR $true",
            ids[0].0
        ),
    )
    .await;
    run(
        &gw,
        &format!(
            "Remove-Message -Identity HUB1\\{q}\\{} -WithNDR $false",
            ids[1].0
        ),
    )
    .await;
    within(20, "both removed from the queue", || async {
        gw.message_count().await == 0
    })
    .await;
    let dir = gw.data_dir();
    let inbox = mailbox(&dir, SENDER);
    assert_eq!(inbox.len(), 1, "exactly one NDR: {inbox:?}");
    assert!(
        inbox[0].contains("550 4.3.2 QUEUE.Admin; message deleted by administrative action"),
        "{}",
        inbox[0]
    );
    assert!(inbox[0].contains("a@down.example"));
}

#[tokio::test]
async fn per_domain_connection_cap_and_connection_reuse() {
    let port = peer_port();
    let sink = Sink::with(
        addr("127.0.0.64", port),
        SinkOptions {
            delay: Some(0.2),
            ..Default::default()
        },
    );
    let s = setup().await;
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Capped -AddressSpaces 'capped.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.64' -Port {port}"
            ),
            "Set-TransportServer HUB1 -MaxPerDomainOutboundConnections 2",
        ],
    )
    .await;
    let gw = s.start().await;
    let server = gw.smtp();
    let script = r#"
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
with smtplib.SMTP(host, port, timeout=30) as s:
    for i in range(12):
        s.sendmail("sender@contoso.test", ["r@capped.example"], f"Subject: c{i}\r\n\r\nbody\r\n")
"#;
    let (ok, out) = python(
        script,
        &[&server.ip().to_string(), &server.port().to_string()],
    );
    assert!(ok, "{out}");
    within(30, "all twelve delivered", || async {
        sink.received().len() == 12
    })
    .await;
    let overlap = sink.max_overlap();
    assert!(overlap <= 2, "{overlap} connections at once, cap is 2");
    let mut ports: Vec<u16> = sink.received().iter().map(|r| r.peer.1).collect();
    ports.sort();
    ports.dedup();
    assert!(
        ports.len() < 12,
        "every message had its own connection ({} connections)",
        ports.len()
    );
}

#[tokio::test]
async fn no_ndr_to_the_null_sender_or_for_notify_never() {
    let port = peer_port();
    let sink = Sink::with(
        addr("127.0.0.65", port),
        SinkOptions {
            refuse: vec!["nobody@refuse.example".into()],
            ..Default::default()
        },
    );
    let s = setup().await;
    configure(
        &s,
        &[&format!(
            "New-SendConnector -Name Refuser -AddressSpaces 'refuse.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.65' -Port {port}"
        )],
    )
    .await;
    let gw = s.start().await;
    let server = gw.smtp().to_string();
    // A bounce (null sender) that bounces: dropped, never looped.
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--from",
        "<>",
        "--to",
        "nobody@refuse.example",
    ]);
    assert!(ok, "{out}");
    // NOTIFY=NEVER: the sender asked not to be told; the second message asks by default.
    let script = r#"
import smtplib, sys
host, port = sys.argv[1], int(sys.argv[2])
with smtplib.SMTP(host, port, timeout=30) as s:
    s.ehlo()
    s.sendmail("sender@contoso.test", ["nobody@refuse.example"], "Subject: never\r\n\r\nx\r\n",
               rcpt_options=["NOTIFY=NEVER"])
    s.sendmail("sender@contoso.test", ["nobody@refuse.example"], "Subject: tell me\r\n\r\nx\r\n")
"#;
    let addr = gw.smtp();
    let (ok, out) = python(script, &[&addr.ip().to_string(), &addr.port().to_string()]);
    assert!(ok, "{out}");
    let dir = gw.data_dir();
    within(20, "the one NDR that was asked for", || async {
        mailbox(&dir, SENDER)
            .iter()
            .any(|m| m.contains("Subject: tell me"))
    })
    .await;
    within(10, "everything final", || async {
        gw.message_count().await == 0
    })
    .await;
    let inbox = mailbox(&dir, SENDER);
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(inbox[0].contains("550 5.1.1"), "{}", inbox[0]);
    assert!(sink.received().is_empty());
}
