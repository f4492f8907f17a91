//! The runbook idioms on a running gateway with held mail (next hops that are down):
//! `-Filter {…}` on Get-Queue / Get-Message and the actions, `Where-Object {…}`, and the
//! positioned errors of bad filters, which change nothing.

mod common;

use common::mail::*;
use common::peers::Sink;
use common::*;

const DOWN: &str = "127.0.0.71";
const OTHER: &str = "127.0.0.72";
const UP: &str = "127.0.0.73";
const SPAMMER: &str = "spammer@spam.example";

/// The Get-Queue table row of the queue to a next hop.
async fn queue_row(gw: &Gateway, next_hop: &str) -> String {
    run(gw, "Get-Queue")
        .await
        .lines()
        .find(|l| l.trim_end().ends_with(next_hop))
        .unwrap_or_default()
        .to_string()
}

async fn status_of(gw: &Gateway) -> Vec<(String, String)> {
    sqlx::query_as("SELECT next_hop_domain, status FROM delivery_queue ORDER BY next_hop_domain")
        .fetch_all(gw.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn filters_select_exactly_the_matching_queues_and_messages() {
    let port = peer_port();
    let up = Sink::start(addr(UP, port));
    let s = setup().await;
    let mut lines = vec![
        // The spammer's domain is ours, so an NDR to it would land in a Maildir we can read.
        "New-AcceptedDomain -Name Spam -DomainName spam.example".to_string(),
        format!("New-Mailbox -Name Spammer -PrimarySmtpAddress {SPAMMER}"),
        "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:30".into(),
    ];
    for (name, space, ip) in [
        ("Down", "down.example", DOWN),
        ("Other", "other.example", OTHER),
        ("Up", "up.example", UP),
    ] {
        lines.push(format!(
            "New-SendConnector -Name {name} -AddressSpaces '{space}' -DNSRoutingEnabled $false -SmartHosts '{ip}' -Port {port}"
        ));
    }
    configure(&s, &lines.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let gw = s.start().await;

    // A queue that delivered: Ready, never matched by Status -eq "Retry".
    send_from(gw.smtp(), SENDER, "u@up.example", "up");
    within(30, "the up queue delivered", || async {
        up.received().len() == 1
    })
    .await;
    for i in 0..3 {
        send_from(gw.smtp(), SPAMMER, "x@down.example", &format!("spam {i}"));
    }
    send_from(gw.smtp(), SENDER, "y1@down.example", "good 1");
    send_from(gw.smtp(), SENDER, "y2@down.example", "good 2");
    send_from(gw.smtp(), SENDER, "z@other.example", "other");
    within(60, "six messages held in two Retry queues", || async {
        let st = status_of(&gw).await;
        gw.message_count().await == 6
            && st.iter().filter(|(_, s)| s == "Retry").count() == 2
            && run(&gw, "Get-Message").await.matches("Retry").count() >= 6
    })
    .await;

    // Where-Object over Get-Queue's objects: only the queue holding more than one message.
    let out = shell_c(&gw, "Get-Queue | Where-Object {$_.MessageCount -gt 1}").await;
    assert!(out.contains(DOWN), "{out}");
    assert!(!out.contains(OTHER) && !out.contains(UP), "{out}");
    assert!(!out.contains("Submission"), "{out}");
    let out = run(
        &gw,
        "Get-Queue | ? {$_.NextHopDomain -like '127.0.0.7[23]'}",
    )
    .await;
    assert!(
        out.contains(OTHER) && out.contains(UP) && !out.contains(DOWN),
        "{out}"
    );
    // -Filter in braces and in quotes reads the same.
    let braces = run(
        &gw,
        "Get-Message -Filter {FromAddress -like \"*@SPAM.example\"}",
    )
    .await;
    let quotes = run(
        &gw,
        "Get-Message -Filter \"FromAddress -like '*@spam.example'\"",
    )
    .await;
    assert_eq!(braces, quotes);
    assert_eq!(braces.matches(SPAMMER).count(), 3, "{braces}");

    // Bad filters: positioned errors, and nothing changes.
    let held = status_of(&gw).await;
    let cases = [
        (
            "Get-Message -Filter {FromAdress -like \"*@spam.example\"} | Remove-Message -WithNDR $false",
            "\"FromAdress\" is not a recognized filterable property. Valid properties are: Identity, Subject",
        ),
        (
            "Remove-Message -Filter {FromAddress -likee \"*@spam.example\"} -WithNDR $false",
            "at position 13: '-likee' is not a valid operator",
        ),
        (
            "Suspend-Queue -Filter {Status -eq \"Retry\" -and}",
            "at position 24: a property name is missing",
        ),
        (
            "Suspend-Queue -Filter {MessageCount -gt many}",
            "at position 18: the value \"many\" can't be compared with the property MessageCount",
        ),
        (
            "Suspend-Queue -Filter {Status -eq 'Retyr'}",
            "at position 12: the value \"Retyr\" can't be compared with the property Status (valid values are: Active, Ready, Retry, Suspended)",
        ),
        (
            "Retry-Queue -Filter {(NextHopDomain -eq \"x\"}",
            "missing closing ')'",
        ),
        (
            "Suspend-Queue -Filter {Status -eq 'Retry'} -Identity HUB1\\1",
            "-Identity or -Filter, not both",
        ),
    ];
    for (line, want) in cases {
        let e = fails(&gw, line).await;
        assert!(e.contains(want), "{line}: {e}");
        assert_eq!(gw.message_count().await, 6, "{line} removed mail");
        assert_eq!(status_of(&gw).await, held, "{line} changed a queue");
    }

    // One target the queue manager would refuse (the Ready queue is not in Retry) stops the
    // whole line before any command is sent.
    let e = fails(
        &gw,
        "Retry-Queue -Filter {MessageCount -ge 0 -and DeliveryType -ne 'Unreachable'}",
    )
    .await;
    assert!(e.contains("isn't in Retry status"), "{e}");
    assert_eq!(status_of(&gw).await, held);
    let out = run(&gw, "Suspend-Queue -Filter {Status -eq 'Retry'} -WhatIf").await;
    assert_eq!(out.matches("What if: Suspending queue").count(), 2, "{out}");
    assert_eq!(status_of(&gw).await, held);

    // The filtered removal: exactly the spammer's three, without NDR, as one command to the
    // queue manager that says how many messages it touched.
    let out = run(
        &gw,
        "Get-Message -Filter {FromAddress -like \"*@spam.example\"} | Remove-Message -WithNDR $false",
    )
    .await;
    assert!(
        out.contains("Removed (without NDR) 3 messages matching the filter."),
        "{out}"
    );
    type Command = (String, i32, Option<i32>, Option<String>, bool);
    let commands: Vec<Command> = sqlx::query_as(
        "SELECT verb, cardinality(message_ids), messages, applied_by, flag FROM queue_command
          WHERE verb LIKE '%Message' ORDER BY id",
    )
    .fetch_all(gw.pool())
    .await
    .unwrap();
    assert_eq!(
        commands,
        [(
            "RemoveMessage".into(),
            3,
            Some(3),
            Some("Gateway".into()),
            false
        )]
    );
    within(30, "the three spam messages removed", || async {
        gw.message_count().await == 3
    })
    .await;
    let left = run(&gw, "Get-Message").await;
    assert!(!left.contains(SPAMMER), "{left}");
    assert_eq!(left.matches(SENDER).count(), 3, "{left}");

    // The next hop returns; Retry-Queue by filter retries exactly that queue.
    let down = Sink::start(addr(DOWN, port));
    run(
        &gw,
        &format!("Get-Queue -Filter {{NextHopDomain -eq \"{DOWN}\"}} | Retry-Queue"),
    )
    .await;
    within(30, "the two good messages delivered", || async {
        down.received().len() == 2
    })
    .await;
    let mut got = down.recipients();
    got.sort();
    assert_eq!(got, ["y1@down.example", "y2@down.example"]);
    within(30, "the delivered queue leaves Retry", || async {
        !queue_row(&gw, DOWN).await.contains("Retry")
    })
    .await;
    // The two delivered messages' rows go with the writer's next batch; the other queue's
    // message stays.
    within(30, "only the other queue's message left", || async {
        gw.message_count().await == 1
    })
    .await;
    assert!(
        queue_row(&gw, OTHER).await.contains("Retry"),
        "the other queue was retried too"
    );

    // Suspend-Queue by filter: the one queue still in Retry, no other.
    let out = run(&gw, "Suspend-Queue -Filter {Status -eq \"Retry\"}").await;
    assert!(
        out.contains("Suspended 1 queue matching the filter."),
        "{out}"
    );
    within(10, "the queue shows Suspended", || async {
        queue_row(&gw, OTHER).await.contains("Suspended")
    })
    .await;
    for ip in [DOWN, UP] {
        let row = queue_row(&gw, ip).await;
        assert!(!row.contains("Suspended"), "{ip}: {row}");
    }

    // Everything else still goes out once its next hop is back; no NDR reached the spammer.
    let other = Sink::start(addr(OTHER, port));
    let out = run(&gw, "Resume-Queue -Filter {Status -eq 'Suspended'}").await;
    assert!(
        out.contains("Resumed 1 queue matching the filter."),
        "{out}"
    );
    run(
        &gw,
        &format!("Retry-Queue -Filter {{Status -eq 'Retry' -and NextHopDomain -eq '{OTHER}'}}"),
    )
    .await;
    within(90, "the other queue's message delivered", || async {
        other.received().len() == 1
    })
    .await;
    within(30, "nothing left queued", || async {
        gw.message_count().await == 0
    })
    .await;
    assert!(
        mailbox(&gw.data_dir(), SPAMMER).is_empty(),
        "an NDR was sent"
    );
    assert_eq!(down.received().len(), 2);
}

/// A filtered removal with NDR on a running gateway: each matching message's sender gets one
/// NDR naming the administrative action; the others stay queued, and nobody else hears.
#[tokio::test]
async fn a_filtered_removal_with_ndr_reports_each_matching_message_once() {
    const HELD: &str = "127.0.0.74";
    let s = setup().await;
    let port = peer_port();
    configure(
        &s,
        &[
            "New-AcceptedDomain -Name Spam -DomainName spam.example",
            &format!("New-Mailbox -Name Spammer -PrimarySmtpAddress {SPAMMER}"),
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:30",
            &format!(
                "New-SendConnector -Name Held -AddressSpaces 'held.example' -DNSRoutingEnabled $false -SmartHosts '{HELD}' -Port {port}"
            ),
        ],
    )
    .await;
    let gw = s.start().await;
    for i in 0..3 {
        send_from(
            gw.smtp(),
            SPAMMER,
            &format!("r{i}@held.example"),
            &format!("bounce {i}"),
        );
    }
    send_from(gw.smtp(), SPAMMER, "keep@held.example", "keep");
    within(60, "four messages held", || async {
        gw.message_count().await == 4 && run(&gw, "Get-Message").await.matches("Retry").count() >= 4
    })
    .await;

    let out = run(
        &gw,
        "Remove-Message -Filter {Subject -like 'bounce*'} -WithNDR $true",
    )
    .await;
    assert!(
        out.contains("Removed (with NDR) 3 messages matching the filter."),
        "{out}"
    );
    within(
        30,
        "three NDRs delivered to the sender's mailbox",
        || async { mailbox(&gw.data_dir(), SPAMMER).len() == 3 },
    )
    .await;
    let ndrs = mailbox(&gw.data_dir(), SPAMMER);
    for i in 0..3 {
        let n = ndrs
            .iter()
            .filter(|n| n.contains(&format!("r{i}@held.example")))
            .count();
        assert_eq!(n, 1, "r{i}: {ndrs:?}");
    }
    assert!(
        ndrs.iter()
            .all(|n| n.contains("QUEUE.Admin") && !n.contains("keep@held.example")),
        "{ndrs:?}"
    );
    within(30, "only the kept message left", || async {
        gw.message_count().await == 1
    })
    .await;
    let kept = run(&gw, "Get-Message -Filter {Subject -eq 'keep'}").await;
    assert_eq!(kept.matches(SPAMMER).count(), 1, "{kept}");
    assert_eq!(mailbox(&gw.data_dir(), SPAMMER).len(), 3, "a fourth NDR");
}
