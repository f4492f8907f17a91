//! The Recipient Filter agent on a backup MX (seed 004), against the real binary and a real
//! primary (an aiosmtpd sink on 127.0.0.x that refuses the recipients it does not have): valid
//! recipients of a relay domain from an imported list, or learned by callout and kept while the
//! primary is down, a 4xx when nobody can say, BlockedRecipients, the defaults, the bypass for an
//! authenticated session, bad input, no backscatter, and the imported list held in memory and
//! following the shell's changes without a restart.

mod common;

use std::net::SocketAddr;

use common::antispam::{authenticated_rcpt, backup_mx, rcpt_to, sender_account};
use common::mail::{configure, fails, run, smart_host_queue, within, within_now};
use common::peers::{Sink, SinkOptions};
use common::*;

const UNKNOWN: &str = "550 5.1.1 User unknown\r\n";
const NO_ANSWER: &str =
    "451 4.4.0 Unable to verify the recipient with the next hop, try again later\r\n";
const ALICE: &str = "alice@primary.example";

/// The primary: only `users` exist there.
fn primary(ip: &str, users: &[&str]) -> (SocketAddr, SinkOptions) {
    let opts = SinkOptions {
        only: users.iter().map(|u| u.to_string()).collect(),
        ..SinkOptions::default()
    };
    (common::mail::addr(ip, peer_port()), opts)
}

/// An anonymous transaction from the Internet up to its RCPT; the RCPT reply.
async fn rcpt(gw: &Gateway, to: &str) -> String {
    rcpt_to(gw, None, to).await
}

/// One whole message from the Internet with swaks; whether it was accepted.
fn send(gw: &Gateway, to: &[&str]) -> (bool, String) {
    swaks(&[
        "--server",
        &gw.smtp().to_string(),
        "--from",
        "someone@example.net",
        "--to",
        &to.join(","),
        "--header",
        "Subject: for the primary",
        "--body",
        "held by the backup MX",
    ])
}

/// The agent's tracking lines with this event id, for this recipient.
fn agent_events(gw: &Gateway, event_id: &str, to: &str) -> usize {
    tracking_log(gw)
        .lines()
        .filter(|l| {
            l.contains(",Recipient Filter Agent,")
                && l.contains(&format!(",AGENT,{event_id},"))
                && l.contains(to)
        })
        .count()
}

/// Messages with the null sender: NDRs and DSNs.
async fn dsn_count(gw: &Gateway) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM message WHERE from_address = ''")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn an_imported_list_decides_at_rcpt_and_nothing_is_queued() {
    // No primary runs at all: the list alone answers.
    let (addr, _) = primary("127.0.0.141", &[]);
    let s = backup_mx(addr, true, &[]).await;
    let csv = s.data_dir.path().join("valid.csv");
    std::fs::write(
        &csv,
        "#TYPE Deserialized.Recipient\n\"Name\",\"Address\"\n\"Alice\",\"Alice@Primary.Example\"\n\"Bob, Jr\",\"bob@primary.example\"\n",
    )
    .unwrap();
    configure(
        &s,
        &[&format!("Import-ValidRecipient -Path '{}'", csv.display())],
    )
    .await;
    let gw = s.start().await;

    assert!(rcpt(&gw, ALICE).await.starts_with("250 "));
    assert!(rcpt(&gw, "BOB@primary.example").await.starts_with("250 "));
    assert_eq!(rcpt(&gw, "mallory@primary.example").await, UNKNOWN);
    let (ok, out) = send(&gw, &["mallory@primary.example", "eve@primary.example"]);
    assert!(!ok, "{out}");
    assert_eq!(gw.message_count().await, 0);
    assert_eq!(agent_events(&gw, "FAIL", "mallory@primary.example"), 2);
    assert!(receive_log(&gw).contains("Recipient Filter Agent"));

    let listed = run(&gw, "Get-ValidRecipient -Domain primary.example").await;
    assert!(
        listed.contains(ALICE) && listed.contains("bob@primary.example"),
        "{listed}"
    );
    // The running gateway follows the shell's changes (its copy of the list is reloaded).
    run(&gw, "Add-ValidRecipient carol@primary.example").await;
    run(&gw, "Remove-ValidRecipient bob@primary.example").await;
    let g = &gw;
    within(30, "carol valid, bob unknown", || async move {
        rcpt(g, "carol@primary.example").await.starts_with("250 ")
            && rcpt(g, "bob@primary.example").await == UNKNOWN
    })
    .await;
}

#[tokio::test]
async fn the_imported_list_is_held_in_memory_and_follows_the_shell_without_a_restart() {
    let (addr, _) = primary("127.0.0.149", &[]);
    let s = backup_mx(addr, true, &["Add-ValidRecipient alice@primary.example"]).await;
    // No tarpit: the bound below is about the look-up, not the delay of a refusal.
    s.sql("UPDATE receive_connector SET tarpit_interval = 0")
        .await;
    let gw = s.start().await;
    let g = &gw;
    assert!(rcpt(g, ALICE).await.starts_with("250 "));
    assert_eq!(rcpt(g, "dave@primary.example").await, UNKNOWN);

    // Changed through the shell, and through an import, while the gateway runs.
    run(g, "Add-ValidRecipient dave@primary.example").await;
    run(g, "Remove-ValidRecipient alice@primary.example").await;
    let csv = g.data_dir().join("more.csv");
    std::fs::write(&csv, "Address\nerin@primary.example\n").unwrap();
    run(
        g,
        &format!("Import-ValidRecipient -Path '{}'", csv.display()),
    )
    .await;
    within(30, "the changes honoured at RCPT", || async move {
        rcpt(g, "dave@primary.example").await.starts_with("250 ")
            && rcpt(g, "erin@primary.example").await.starts_with("250 ")
            && rcpt(g, ALICE).await == UNKNOWN
    })
    .await;

    // No RCPT reads the table: with it locked against every reader, RCPTs are still answered.
    let mut lock = g.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE valid_recipient IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let answered = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        (rcpt(g, "dave@primary.example").await, rcpt(g, ALICE).await)
    })
    .await;
    lock.rollback().await.unwrap();
    let (dave, alice) = answered.expect("RCPTs answered while valid_recipient was locked");
    assert!(dave.starts_with("250 "), "{dave}");
    assert_eq!(alice, UNKNOWN);
}

#[tokio::test]
async fn a_bad_import_is_refused_with_its_line_and_stores_nothing() {
    let (addr, _) = primary("127.0.0.142", &[]);
    let s = backup_mx(addr, true, &[]).await;
    let gw = s.start().await;
    let csv = gw.data_dir().join("bad.csv");
    std::fs::write(
        &csv,
        "Address\nalice@primary.example\nbob@primary.example\nnot an address\ncarol@primary.example\n",
    )
    .unwrap();
    let e = fails(
        &gw,
        &format!("Import-ValidRecipient -Path '{}'", csv.display()),
    )
    .await;
    assert!(
        e.contains("Line 4") && e.contains("not a valid SMTP address"),
        "{e}"
    );
    std::fs::write(&csv, "Name\nalice\n").unwrap();
    let e = fails(
        &gw,
        &format!("Import-ValidRecipient -Path '{}'", csv.display()),
    )
    .await;
    assert!(e.contains("Address column"), "{e}");
    let e = fails(&gw, "Import-ValidRecipient -Path '/nonexistent/valid.csv'").await;
    assert!(e.contains("Cannot read"), "{e}");
    let e = fails(&gw, "Add-ValidRecipient 'no at sign'").await;
    assert!(e.contains("not a valid SMTP address"), "{e}");
    assert_eq!(run(&gw, "Get-ValidRecipient").await.trim(), "");
    for (line, says) in [
        (
            "Set-RecipientFilterConfig -BlockedRecipients 'trap@contoso.test', 'not an address'",
            "not a valid SMTP address",
        ),
        (
            "Set-RecipientFilterConfig -RecipientCalloutTimeout 00:10:00",
            "out of range",
        ),
    ] {
        let e = fails(&gw, line).await;
        assert!(e.contains(says), "{line}: {e}");
    }
    let cfg = run(&gw, "Get-RecipientFilterConfig | fl").await;
    assert_eq!(shown(&cfg, "BlockedRecipients"), "{}");
    assert_eq!(shown(&cfg, "RecipientCalloutTimeout"), "00:00:10");
}

#[tokio::test]
async fn callouts_learn_from_the_primary_and_the_cache_answers_while_it_is_down() {
    let (addr, opts) = primary("127.0.0.143", &[ALICE]);
    let mut primary = Sink::with(addr, opts);
    // The results expire at once: while the primary is down, expired ones must still answer.
    let s = backup_mx(
        addr,
        true,
        &["Set-RecipientFilterConfig -RecipientCalloutValidCacheTimeout 00:00:01 -RecipientCalloutUnknownCacheTimeout 00:00:01"],
    )
    .await;
    let mut gw = s.start().await;

    // The primary up: it says who exists.
    assert!(rcpt(&gw, ALICE).await.starts_with("250 "));
    assert_eq!(rcpt(&gw, "bob@primary.example").await, UNKNOWN);
    assert_eq!(agent_events(&gw, "FAIL", "bob@primary.example"), 1);
    assert!(primary.received().is_empty(), "a callout never sends DATA");
    let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM recipient_callout")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert_eq!(stored, 2);

    // The primary goes down, and the gateway restarts: what it learned was persisted.
    primary.stop();
    gw.restart().await;
    let pool = gw.pool().clone();
    within(30, "the callout results past their TTL", || {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM recipient_callout WHERE expires_at < now()")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            n == 2
        }
    })
    .await;
    assert!(rcpt(&gw, ALICE).await.starts_with("250 "));
    assert_eq!(rcpt(&gw, "bob@primary.example").await, UNKNOWN);
    assert!(agent_events(&gw, "AGENTINFO", ALICE) >= 1);

    // Seed 004's outage hold: the valid recipient's mail waits in the queue for the primary.
    let (ok, out) = send(&gw, &[ALICE, "bob@primary.example"]);
    assert!(ok, "{out}");
    let g = &gw;
    within(
        60,
        "the message held in Retry for the primary",
        || async move {
            smart_host_queue(g)
                .await
                .is_some_and(|(_, st, _, n)| st == "Retry" && n == 1)
        },
    )
    .await;
    assert_eq!(gw.message_count().await, 1);

    // Back up, the primary gets it: the one valid recipient.
    primary.restart();
    let (id, ..) = smart_host_queue(&gw).await.unwrap();
    run(&gw, &format!("Retry-Queue 'HUB1\\{id}'")).await;
    let p = &primary;
    within_now(60, "the held message at the primary", || {
        p.recipients() == vec![ALICE.to_string()]
    })
    .await;
    assert_eq!(dsn_count(&gw).await, 0);
}

#[tokio::test]
async fn a_cold_cache_with_the_primary_down_defers_and_queues_nothing() {
    let (addr, opts) = primary("127.0.0.144", &[ALICE]);
    let _down = Sink::down(addr, opts);
    let s = backup_mx(addr, true, &[]).await;
    let gw = s.start().await;
    assert_eq!(rcpt(&gw, ALICE).await, NO_ANSWER);
    let (ok, out) = send(&gw, &[ALICE]);
    assert!(!ok, "{out}");
    assert!(out.contains("451 4.4.0"), "{out}");
    assert_eq!(gw.message_count().await, 0);
    assert!(agent_events(&gw, "DEFER", ALICE) >= 2);
    let (stored,): (i64,) = sqlx::query_as("SELECT count(*) FROM recipient_callout")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0, "no answer is not an answer");
}

#[tokio::test]
async fn blocked_recipients_are_refused_when_the_block_list_is_enabled() {
    let s = Setup::new().await;
    configure(
        &s,
        &[
            "New-Mailbox -Name Ceo -PrimarySmtpAddress ceo@contoso.test",
            "New-Mailbox -Name Sales -PrimarySmtpAddress sales@contoso.test",
            "Set-RecipientFilterConfig -BlockedRecipients 'CEO@contoso.test'",
        ],
    )
    .await;
    let gw = s.start().await;
    // BlockedRecipients apply only with BlockListEnabled, as in Exchange.
    assert!(rcpt(&gw, "ceo@contoso.test").await.starts_with("250 "));
    run(&gw, "Set-RecipientFilterConfig -BlockListEnabled $true").await;
    let g = &gw;
    within(30, "the block list applied", || async move {
        rcpt(g, "ceo@contoso.test").await == "550 5.7.1 Recipient not authorized\r\n"
    })
    .await;
    assert!(rcpt(&gw, "sales@contoso.test").await.starts_with("250 "));
    assert!(agent_events(&gw, "FAIL", "ceo@contoso.test") >= 1);
    let cfg = run(&gw, "Get-RecipientFilterConfig | fl").await;
    assert_eq!(shown(&cfg, "BlockListEnabled"), "True");
    assert_eq!(shown(&cfg, "BlockedRecipients"), "{CEO@contoso.test}");
    let export = run(&gw, "Get-RecipientFilterConfig | Export-Cmdlet").await;
    assert!(export.starts_with("Set-RecipientFilterConfig "), "{export}");
    assert!(
        export.contains("-BlockedRecipients 'CEO@contoso.test'"),
        "{export}"
    );
}

#[tokio::test]
async fn validation_is_off_by_default_for_relay_domains() {
    // The primary is down and never asked: an unknown recipient is taken as before.
    let (addr, _) = primary("127.0.0.145", &[]);
    let s = backup_mx(addr, false, &[]).await;
    let gw = s.start().await;
    let cfg = run(&gw, "Get-RecipientFilterConfig | fl").await;
    assert_eq!(shown(&cfg, "Enabled"), "True");
    assert_eq!(shown(&cfg, "RecipientValidationEnabled"), "False");
    assert_eq!(shown(&cfg, "BlockListEnabled"), "False");
    let d = run(&gw, "Get-AcceptedDomain Primary | fl").await;
    assert_eq!(shown(&d, "AddressBookEnabled"), "False");
    assert!(
        rcpt(&gw, "anyone@primary.example")
            .await
            .starts_with("250 ")
    );
    // Validation on, but the relay domain's AddressBookEnabled still off: still taken.
    run(
        &gw,
        "Set-RecipientFilterConfig -RecipientValidationEnabled $true",
    )
    .await;
    assert!(
        rcpt(&gw, "anyone@primary.example")
            .await
            .starts_with("250 ")
    );
    // With it on, the same recipient waits for an answer nobody can give.
    run(&gw, "Set-AcceptedDomain Primary -AddressBookEnabled $true").await;
    let g = &gw;
    within(30, "validation applied", || async move {
        rcpt(g, "anyone@primary.example").await == NO_ANSWER
    })
    .await;
}

#[tokio::test]
async fn an_authenticated_session_is_not_filtered() {
    let (addr, _) = primary("127.0.0.146", &[]);
    let s = backup_mx(addr, true, &[]).await;
    configure(
        &s,
        &["New-Mailbox -Name Sender -PrimarySmtpAddress sender@contoso.test"],
    )
    .await;
    sender_account(&s).await;
    let gw = s.start().await;
    assert_eq!(rcpt(&gw, "anyone@primary.example").await, NO_ANSWER);

    let r = authenticated_rcpt(&gw, None, "anyone@primary.example").await;
    assert!(r.starts_with("250 "), "{r}");
}

#[tokio::test]
async fn no_backscatter_for_recipients_the_primary_does_not_have() {
    let (addr, opts) = primary("127.0.0.147", &[ALICE]);
    let primary = Sink::with(addr, opts);
    let s = backup_mx(addr, true, &[]).await;
    let gw = s.start().await;
    let unknown: Vec<String> = (0..5)
        .map(|i| format!("guess{i}@primary.example"))
        .collect();
    let mut to: Vec<&str> = unknown.iter().map(String::as_str).collect();
    // Only unknown recipients: the whole transaction is refused, nothing is queued.
    let (ok, out) = send(&gw, &to);
    assert!(!ok, "{out}");
    assert_eq!(gw.message_count().await, 0);
    // One valid among them: only it is taken, and delivered.
    to.push(ALICE);
    let (ok, out) = send(&gw, &to);
    assert!(ok, "{out}");
    let p = &primary;
    within_now(60, "the message at the primary", || {
        p.recipients() == vec![ALICE.to_string()]
    })
    .await;
    // Delivered messages leave the queue; an NDR would stay (its sender's domain has no route).
    let g = &gw;
    within(
        30,
        "the delivered message gone from the queue",
        || async move { g.message_count().await == 0 },
    )
    .await;
    assert_eq!(
        dsn_count(&gw).await,
        0,
        "no NDR for a recipient refused at RCPT"
    );
    assert!(!tracking_log(&gw).contains(",DSN,"));
    for u in &unknown {
        assert!(agent_events(&gw, "FAIL", u) >= 1, "{u}");
    }
}

#[tokio::test]
async fn an_internal_relay_domain_knows_its_mailboxes_and_asks_the_primary_for_the_rest() {
    let (addr, opts) = primary("127.0.0.148", &["shared@shared.example"]);
    let _primary = Sink::with(addr, opts);
    let s = Setup::new().await;
    let connector = format!(
        "New-SendConnector -Name Shared -AddressSpaces 'shared.example' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {}",
        addr.ip(),
        addr.port()
    );
    configure(
        &s,
        &[
            "New-AcceptedDomain -Name Shared -DomainName shared.example -DomainType InternalRelay",
            "Set-AcceptedDomain Shared -AddressBookEnabled $true",
            "New-Mailbox -Name Local -PrimarySmtpAddress local@shared.example",
            &connector,
            "Set-RecipientFilterConfig -RecipientValidationEnabled $true",
        ],
    )
    .await;
    let gw = s.start().await;
    assert!(rcpt(&gw, "local@shared.example").await.starts_with("250 "));
    assert!(rcpt(&gw, "shared@shared.example").await.starts_with("250 "));
    assert_eq!(rcpt(&gw, "nobody@shared.example").await, UNKNOWN);
    // The directory answered for the local mailbox: the primary was asked only about the others.
    let asked: Vec<(String,)> =
        sqlx::query_as("SELECT address FROM recipient_callout ORDER BY address")
            .fetch_all(gw.pool())
            .await
            .unwrap();
    let asked: Vec<String> = asked.into_iter().map(|(a,)| a).collect();
    assert_eq!(asked, ["nobody@shared.example", "shared@shared.example"]);
}
