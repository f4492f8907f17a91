//! Queue commands through the queue manager, the one writer of queue state: issued through the
//! shell while a few hundred messages are delivered to a real next hop, they never lose,
//! duplicate or resurrect a recipient; issued while the gateway is stopped, they say so and
//! apply when it starts.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::time::Duration;

use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;

/// This file's next hops listen on 127.0.0.19x, on this port.
const PEER_PORT: u16 = 2525;

/// Sends `n` one-recipient messages (`m<first + i>@load.example`) over raw SMTP connections of
/// ten messages each.
async fn send_many(to: std::net::SocketAddr, first: usize, n: usize) {
    let mut i = 0;
    while i < n {
        let mut c = Raw::connect(to).await;
        let greeting = c.reply().await;
        assert!(greeting.starts_with("220"), "{greeting}");
        let ehlo = c.cmd("EHLO load.client").await;
        assert!(ehlo.starts_with("250"), "{ehlo}");
        for _ in 0..10 {
            if i >= n {
                break;
            }
            let k = first + i;
            let r = c.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
            assert!(r.starts_with("250"), "MAIL: {r}");
            let r = c.cmd(&format!("RCPT TO:<m{k}@load.example>")).await;
            assert!(r.starts_with("250"), "RCPT: {r}");
            let r = c.cmd("DATA").await;
            assert!(r.starts_with("354"), "DATA: {r}");
            c.send(
                format!(
                    "From: <{SENDER}>\r\nTo: <m{k}@load.example>\r\nSubject: load {k}\r\n\r\nbody {k}\r\n.\r\n"
                )
                .as_bytes(),
            )
            .await;
            let r = c.reply().await;
            assert!(r.starts_with("250"), "end of DATA: {r}");
            i += 1;
        }
        c.cmd("QUIT").await;
    }
}

/// The Get-Message identities (`HUB1\<queue>\<n>`) in a listing, with their recipient.
async fn waiting(gw: &Gateway) -> Vec<(String, String)> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT m.internal_id, r.address FROM message m JOIN message_recipient r ON r.message_id = m.id
          WHERE r.status NOT IN ('Delivered', 'Failed') AND m.from_address <> '' ORDER BY m.internal_id",
    )
    .fetch_all(gw.pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, a)| (format!("HUB1\\*\\{id}"), a.to_lowercase()))
        .collect()
}

/// The recipients named in the NDRs in the sender's mailbox, each as often as it was reported.
fn reported(gw: &Gateway) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for m in mailbox(&gw.data_dir(), SENDER) {
        assert!(
            m.contains("QUEUE.Admin"),
            "an NDR for something other than a removal:\n{m}"
        );
        let mut seen = HashSet::new();
        for w in m.split(|c: char| c.is_whitespace() || "<>;:\"".contains(c)) {
            let w = w.to_lowercase();
            if w.ends_with("@load.example") && seen.insert(w.clone()) {
                *n.entry(w).or_insert(0) += 1;
            }
        }
    }
    n
}

#[tokio::test]
async fn queue_commands_under_load_never_lose_duplicate_or_resurrect_a_recipient() {
    const TOTAL: usize = 300;
    let sink = Sink::with(
        addr("127.0.0.191", PEER_PORT),
        SinkOptions {
            // A slow next hop keeps deliveries in flight while the commands run.
            delay: Some(0.02),
            ..Default::default()
        },
    );
    let s = setup().await;
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Load -AddressSpaces 'load.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.191' -Port {PEER_PORT}"
            ),
            "Set-TransportServer HUB1 -MaxPerDomainOutboundConnections 3",
        ],
    )
    .await;
    let gw = s.start().await;
    let to = gw.smtp();
    let senders: Vec<_> = (0..3)
        .map(|k| tokio::spawn(send_many(to, k * TOTAL / 3, TOTAL / 3)))
        .collect();

    // Commands interleaved with the deliveries, through the shell.
    let mut with_ndr: HashSet<String> = HashSet::new();
    let mut without_ndr: HashSet<String> = HashSet::new();
    let mut queue = None;
    for round in 0..40 {
        if queue.is_none() {
            let q: Option<(i64,)> = sqlx::query_as(
                "SELECT id FROM delivery_queue WHERE next_hop_domain = '127.0.0.191'",
            )
            .fetch_optional(gw.pool())
            .await
            .unwrap();
            queue = q.map(|(id,)| id);
        }
        let list = waiting(&gw).await;
        if let Some(q) = queue {
            match round % 4 {
                0 => {
                    run(&gw, &format!("Suspend-Queue HUB1\\{q}")).await;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    run(&gw, &format!("Resume-Queue HUB1\\{q}")).await;
                }
                1 => {
                    run(&gw, &format!("Retry-Queue HUB1\\{q} -Resubmit $true")).await;
                }
                2 => {
                    if let Some((id, _)) = list.get(list.len() / 2) {
                        // Gone by now is fine; a message that is still there must take it.
                        let mut sh = shell(&gw);
                        if sh.run_line(&format!("Suspend-Message {id}")).await.is_ok() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let _ = sh.run_line(&format!("Resume-Message {id}")).await;
                        }
                    }
                }
                _ => {}
            }
        }
        // Removals: one with an NDR, one without, from the front (likely in flight) and the
        // back (likely waiting) of what is queued.
        let picks = [
            (list.first(), true),
            (list.last(), false),
            (list.get(list.len() / 3), round % 2 == 0),
        ];
        for (pick, ndr) in picks {
            let Some((id, address)) = pick else { continue };
            if with_ndr.contains(address) || without_ndr.contains(address) {
                continue;
            }
            let line = format!(
                "Remove-Message {id} -WithNDR {}",
                if ndr { "$true" } else { "$false" }
            );
            // Delivered a moment ago: "not found", and nothing was removed.
            if shell(&gw).run_line(&line).await.is_ok() {
                if ndr {
                    with_ndr.insert(address.clone());
                } else {
                    without_ndr.insert(address.clone());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in senders {
        t.await.unwrap();
    }

    within(180, "every queue drained", || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM message_recipient")
            .fetch_one(gw.pool())
            .await
            .unwrap();
        n == 0
    })
    .await;
    assert!(
        !with_ndr.is_empty() && !without_ndr.is_empty(),
        "the test removed nothing: with NDR {with_ndr:?}, without {without_ndr:?}"
    );

    let delivered = sink.recipients();
    let mut times: HashMap<String, usize> = HashMap::new();
    for r in &delivered {
        *times.entry(r.clone()).or_insert(0) += 1;
    }
    let duplicated: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "delivered twice: {duplicated:?}");
    // The NDRs may still be on their way to the sender's mailbox.
    let expected_ndrs = with_ndr.iter().filter(|a| !times.contains_key(*a)).count();
    within(60, "one NDR per recipient removed with an NDR", || async {
        reported(&gw).values().sum::<usize>() >= expected_ndrs
    })
    .await;
    let ndrs = reported(&gw);
    eprintln!(
        "delivered {}, removed with NDR {} ({} NDRs), without {}",
        delivered.len(),
        with_ndr.len(),
        ndrs.len(),
        without_ndr.len()
    );
    for k in 0..TOTAL {
        let a = format!("m{k}@load.example");
        let sent = times.contains_key(&a);
        let ndr = ndrs.get(&a).copied().unwrap_or(0);
        assert!(ndr <= 1, "{a}: {ndr} NDRs");
        if sent {
            // In flight when it was removed and delivered: no one reports it removed.
            assert_eq!(ndr, 0, "{a} was delivered and reported removed");
        } else if with_ndr.contains(&a) {
            assert_eq!(ndr, 1, "{a} removed with an NDR, but no NDR");
        } else {
            assert!(
                without_ndr.contains(&a),
                "{a} was lost: not delivered, not removed"
            );
            assert_eq!(ndr, 0, "{a} removed without an NDR, yet reported");
        }
    }
    assert_eq!(
        delivered.len()
            + with_ndr
                .iter()
                .chain(&without_ndr)
                .filter(|a| !times.contains_key(*a))
                .count(),
        TOTAL
    );
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM message")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "messages left in the database");
}

/// `hubgate shell -c line` as a process, with the node's environment: (ok, stdout, stderr).
fn shell_process(s: &Setup, line: &str) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubgate"));
    cmd.args(["shell", "-c", line])
        .env("DATABASE_URL", &s.db_url)
        .env("HUBGATE_DATA_DIR", s.data_dir.path())
        .env("HUBGATE_SERVER_NAME", FQDN)
        .env("HUBGATE_LOG", "warn");
    let (status, out, err) = run_to_exit(&mut cmd, &format!("shell -c {line:?} hung"));
    (status.success(), out, err)
}

#[tokio::test]
async fn a_command_issued_while_the_gateway_is_stopped_says_so_and_applies_when_it_starts() {
    let s = setup().await;
    // Nothing listens there: the messages wait in their queue, in Retry.
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Down -AddressSpaces 'down.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.192' -Port {PEER_PORT}"
            ),
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:02 -OutboundConnectionFailureRetryInterval 00:00:02",
        ],
    )
    .await;
    let mut gw = s.start().await;
    send(&gw, &["gone@down.example"], "removed while stopped");
    send(&gw, &["kept@down.example"], "held while stopped");
    within(30, "both waiting in the queue", || async {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM message_recipient WHERE queue_id IS NOT NULL AND status = 'Retry'",
        )
        .fetch_one(gw.pool())
        .await
        .unwrap();
        n == 2
    })
    .await;
    gw.stop();

    let (q,): (i64,) =
        sqlx::query_as("SELECT id FROM delivery_queue WHERE next_hop_domain = '127.0.0.192'")
            .fetch_one(gw.pool())
            .await
            .unwrap();
    let (gone,): (i64,) = sqlx::query_as(
        "SELECT m.internal_id FROM message m JOIN message_recipient r ON r.message_id = m.id
          WHERE r.address = 'gone@down.example'",
    )
    .fetch_one(gw.pool())
    .await
    .unwrap();
    let (ok, out, err) = shell_process(&gw.setup, &format!("Remove-Message HUB1\\{q}\\{gone}"));
    assert!(ok, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains("WARNING: The transport service isn't running")
            && err.contains("takes effect when the service starts"),
        "{err}"
    );
    let (ok, _, err) = shell_process(&gw.setup, &format!("Suspend-Queue HUB1\\{q}"));
    assert!(
        ok && err.contains("takes effect when the service starts"),
        "{err}"
    );

    gw.spawn().await;
    let dir = gw.data_dir();
    within(60, "the removal done and reported at start", || async {
        mailbox(&dir, SENDER)
            .iter()
            .any(|m| m.contains("QUEUE.Admin") && m.contains("gone@down.example"))
    })
    .await;
    within(30, "only the held message left", || async {
        let left: Vec<(String,)> = sqlx::query_as("SELECT address FROM message_recipient")
            .fetch_all(gw.pool())
            .await
            .unwrap();
        left == [("kept@down.example".to_string(),)]
    })
    .await;
    let out = run(&gw, &format!("Get-Queue HUB1\\{q}")).await;
    assert!(out.contains("Suspended"), "{out}");
    // The running gateway answers itself: no warning.
    let (ok, _, err) = shell_process(&gw.setup, &format!("Resume-Queue HUB1\\{q}"));
    assert!(ok && !err.contains("WARNING"), "{err}");
}

#[tokio::test]
async fn a_recipient_removed_in_flight_is_removed_when_its_attempt_does_not_deliver_it() {
    let sink = Sink::with(
        addr("127.0.0.193", PEER_PORT),
        SinkOptions {
            // A long DATA keeps both recipients in flight while the removal arrives.
            delay: Some(3.0),
            tempfail: vec!["later@slow.example".into()],
            ..Default::default()
        },
    );
    let s = setup().await;
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Slow -AddressSpaces 'slow.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.193' -Port {PEER_PORT}"
            ),
            "Set-TransportServer HUB1 -MessageRetryInterval 00:00:01",
        ],
    )
    .await;
    let gw = s.start().await;
    send(
        &gw,
        &["now@slow.example", "later@slow.example"],
        "in flight",
    );
    within(30, "the attempt under way", || async {
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM delivery_queue WHERE status = 'Active'")
                .fetch_one(gw.pool())
                .await
                .unwrap();
        n == 1
    })
    .await;
    let (id,): (i64,) = sqlx::query_as("SELECT internal_id FROM message")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    run(&gw, &format!("Remove-Message HUB1\\*\\{id}")).await;
    // The attempt delivers one recipient and is deferred for the other: the deferred one is
    // removed (and reported), not retried.
    let dir = gw.data_dir();
    within(
        60,
        "the deferred recipient removed and reported",
        || async {
            mailbox(&dir, SENDER)
                .iter()
                .any(|m| m.contains("QUEUE.Admin") && m.contains("later@slow.example"))
        },
    )
    .await;
    within(30, "nothing left in the queues", || async {
        gw.message_count().await == 0
    })
    .await;
    assert_eq!(sink.recipients(), ["now@slow.example"]);
    let ndrs = mailbox(&dir, SENDER);
    assert_eq!(ndrs.len(), 1, "{ndrs:?}");
    // It reports the removed recipient only (the returned original still names both).
    assert!(
        ndrs[0].contains("Final-Recipient: rfc822;later@slow.example")
            && !ndrs[0].contains("Final-Recipient: rfc822;now@slow.example"),
        "{}",
        ndrs[0]
    );
}
