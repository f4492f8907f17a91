//! The queue cmdlets and Get-MessageTrackingLog through `hubgate shell -c`, over queue state
//! built the way the gateway builds it: bodies accepted through the real spool and store code,
//! then the delivery_queue / message_recipient / delivery_attempt rows the queue manager writes.

mod common;

use std::io::Read;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hubgate::logs::tracking::{TrackingEvent, TrackingLog};
use hubgate::transport::queue::store::Disposition;
use hubgate::transport::queue::{self, Envelope, EnvelopeRecipient, Spool};
use sqlx::postgres::PgListener;
use uuid::Uuid;

/// Runs one shell line as a process, bounded by a deadline: (ok, stdout, stderr).
fn run_shell_blocking(
    db_url: &str,
    data_dir: &std::path::Path,
    line: &str,
) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .args(["shell", "-c", line])
        .env("DATABASE_URL", db_url)
        .env("HUBGATE_DATA_DIR", data_dir)
        .env("HUBGATE_SERVER_NAME", FQDN)
        .env("HUBGATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hubgate shell");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hubgate shell -c {line:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.success(), out.join().unwrap(), err.join().unwrap())
}

async fn shell(setup: &Setup, line: &str) -> (bool, String, String) {
    let url = setup.db_url.clone();
    let dir = setup.data_dir.path().to_path_buf();
    let line = line.to_string();
    tokio::task::spawn_blocking(move || run_shell_blocking(&url, &dir, &line))
        .await
        .unwrap()
}

/// A line that must succeed; returns its output.
async fn ok(setup: &Setup, line: &str) -> String {
    let (ok, out, err) = shell(setup, line).await;
    assert!(ok, "{line} failed: {err}");
    out
}

/// A line that must fail; returns its error text.
async fn fails(setup: &Setup, line: &str) -> String {
    let (ok, out, err) = shell(setup, line).await;
    assert!(!ok, "{line} should fail, printed: {out}");
    err
}

/// The value of `name` in a Format-List block (the first one that has it).
fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(" : ")?;
            (n.trim_end() == name).then(|| v.to_string())
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
}

/// The continuation lines that follow `name`'s first line in a Format-List block.
fn continued(out: &str, name: &str) -> Vec<String> {
    let mut lines = out.lines().skip_while(|l| {
        l.split_once(" : ")
            .is_none_or(|(n, _)| n.trim_end() != name)
    });
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"));
    let indent = first.find(" : ").unwrap() + 3;
    lines
        .take_while(|l| l.len() > indent && l[..indent].trim().is_empty())
        .map(|l| l[indent..].to_string())
        .collect()
}

/// The whitespace-separated cells of the table row that starts with `first`.
fn row(out: &str, first: &str) -> Vec<String> {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first} in:\n{out}"))
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn rows_starting(out: &str, prefix: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with(prefix))
        .map(String::from)
        .collect()
}

async fn listen(setup: &Setup) -> PgListener {
    let mut l = PgListener::connect(&setup.db_url).await.unwrap();
    l.listen("hubgate_queue").await.unwrap();
    l
}

async fn notified(l: &mut PgListener) -> String {
    tokio::time::timeout(Duration::from_secs(10), l.recv())
        .await
        .expect("no NOTIFY on hubgate_queue within 10 s")
        .unwrap()
        .payload()
        .to_string()
}

/// Nothing has been notified: a notification this test sends now arrives first. NOTIFY is
/// delivered in commit order, and every command before this call has finished, so anything it
/// notified would come before the marker.
async fn quiet(l: &mut PgListener) {
    let marker = format!("quiet check {}", uuid::Uuid::new_v4());
    sqlx::query("SELECT pg_notify('hubgate_queue', $1)")
        .bind(&marker)
        .execute(&mut *l)
        .await
        .unwrap();
    assert_eq!(notified(l).await, marker, "an unexpected NOTIFY came first");
}

/// Every column an administrative operation may write, as one comparable string.
async fn snapshot(setup: &Setup) -> String {
    let (s,): (String,) = sqlx::query_as(
        "SELECT coalesce((SELECT string_agg(format('%s|%s|%s|%s|%s', id, suspended, status, next_retry_time, last_error), ',' ORDER BY id) FROM delivery_queue), '')
         || '#' || coalesce((SELECT string_agg(format('%s|%s|%s|%s', id, suspended, poison, crash_count), ',' ORDER BY id) FROM message), '')
         || '#' || coalesce((SELECT string_agg(format('%s|%s|%s|%s|%s|%s', message_id, ordinal, queue_id, status, next_retry_time, remove_with_ndr), ',' ORDER BY message_id, ordinal) FROM message_recipient), '')",
    )
    .fetch_one(&setup.pool)
    .await
    .unwrap();
    s
}

const RETRY_ERROR: &str = "451 4.4.0 Primary target IP address responded with: \"421 4.2.1 Unable to connect.\" Attempted failover to alternate host, but that did not succeed.";

struct Msg {
    id: Uuid,
    internal_id: i64,
    bytes: Vec<u8>,
}

/// Accepts a message through the queue's store, as the SMTP server does at end of DATA.
async fn accept(setup: &Setup, from: &str, rcpts: &[&str], subject: &str) -> Msg {
    let id = Uuid::new_v4();
    let env = Envelope {
        id,
        server: SERVER.into(),
        from: from.into(),
        recipients: rcpts
            .iter()
            .map(|r| EnvelopeRecipient {
                address: r.to_string(),
                orcpt: None,
                notify: None,
                disposition: Disposition::Relay,
            })
            .collect(),
        source_ip: "192.0.2.10".parse::<IpAddr>().unwrap(),
        receive_connector: "HUB1\\Default HUB1".into(),
        helo: "client.example".into(),
        auth_user: None,
        internet_message_id: Some(format!("<{id}@example.org>")),
        subject: Some(subject.into()),
        env_id: None,
        ret: None,
        body_type: None,
        smtp_utf8: false,
        shadow: None,
    };
    let header = format!(
        "Received: from client.example ([192.0.2.10]) by hub1.contoso.test\r\n\
         From: <{from}>\r\nTo: <{}>\r\nSubject: {subject}\r\nMessage-ID: <{id}@example.org>\r\n\r\n",
        rcpts.join(">, <")
    )
    .into_bytes();
    let body = b"First line of the body.\r\n.Dot-started line, kept as sent.\r\n".to_vec();
    let bytes = [header.clone(), body.clone()].concat();
    let spool = Spool::open(setup.data_dir.path()).unwrap();
    let internal_id = queue::accept(&setup.pool, &spool, &env, header, body)
        .await
        .unwrap();
    sqlx::query("UPDATE message SET received_at = '2019-01-25 00:03:58+00' WHERE id = $1")
        .bind(id)
        .execute(&setup.pool)
        .await
        .unwrap();
    Msg {
        id,
        internal_id,
        bytes,
    }
}

/// The queue state the manager would have written:
/// - queue `dns` (fabrikam.test through "To Fabrikam", in Retry): A's bob (Retry, two attempts)
///   and D's gina (Ready); D's frank is Delivered;
/// - Submission: A's carol;
/// - Unreachable: B's dave;
/// - Poison: C.
struct World {
    dns: i64,
    unreachable: i64,
    connector: Uuid,
    a: Msg,
    b: Msg,
    c: Msg,
    d: Msg,
}

async fn world(setup: &Setup) -> World {
    let connector = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO send_connector (id, name, address_spaces, message_expiration_timeout)
         VALUES ($1, 'To Fabrikam', '{SMTP:fabrikam.test;1}', 86400)",
    )
    .bind(connector)
    .execute(&setup.pool)
    .await
    .unwrap();
    let (dns,): (i64,) = sqlx::query_as(
        "INSERT INTO delivery_queue (server, delivery_type, next_hop_domain, connector_id, status,
                                     last_error, last_retry_time, next_retry_time)
         VALUES ('HUB1', 'DnsConnectorDelivery', 'fabrikam.test', $1, 'Retry', $2,
                 '2019-01-25 00:10:00+00', '2019-01-25 00:20:00+00') RETURNING id",
    )
    .bind(connector)
    .bind(RETRY_ERROR)
    .fetch_one(&setup.pool)
    .await
    .unwrap();
    let (unreachable,): (i64,) = sqlx::query_as(
        "INSERT INTO delivery_queue (server, delivery_type, next_hop_domain, status)
         VALUES ('HUB1', 'Unreachable', 'Unreachable Domain', 'Ready') RETURNING id",
    )
    .fetch_one(&setup.pool)
    .await
    .unwrap();
    let a = accept(
        setup,
        "alice@example.org",
        &["bob@fabrikam.test", "carol@contoso.test"],
        "Quarterly report",
    )
    .await;
    let b = accept(setup, "bert@example.org", &["dave@nowhere.test"], "Lost").await;
    let c = accept(
        setup,
        "mallory@example.org",
        &["erin@fabrikam.test"],
        "Crasher",
    )
    .await;
    let d = accept(
        setup,
        "dora@example.org",
        &["frank@fabrikam.test", "gina@fabrikam.test"],
        "Half done",
    )
    .await;
    for q in [
        format!(
            "UPDATE message_recipient SET queue_id = {dns}, status = 'Retry', retry_count = 2,
                    last_error = '{}', last_retry_time = '2019-01-25 00:10:00+00',
                    next_retry_time = '2019-01-25 00:20:00+00'
              WHERE message_id = '{}' AND ordinal = 0",
            RETRY_ERROR.replace('\'', "''"),
            a.id
        ),
        format!(
            "INSERT INTO delivery_attempt (message_id, ordinal, attempted_at, next_hop, remote_ip, reply, tls_version) VALUES
             ('{0}', 0, '2019-01-25 00:05:00+00', 'mx1.fabrikam.test', '192.0.2.25', '421 4.2.1 Unable to connect', NULL),
             ('{0}', 0, '2019-01-25 00:10:00+00', 'mx2.fabrikam.test', '192.0.2.26', '451 4.7.1 Greylisted, try again later', 'TLSv1.3')",
            a.id
        ),
        format!(
            "UPDATE message_recipient SET queue_id = {unreachable}, last_error = '550 5.4.4 ROUTING.NoNextHop; unable to route'
              WHERE message_id = '{}'",
            b.id
        ),
        format!(
            "UPDATE message SET poison = true, crash_count = 2 WHERE id = '{}'",
            c.id
        ),
        format!(
            "UPDATE message_recipient SET status = 'Delivered', queue_id = {dns} WHERE message_id = '{}' AND ordinal = 0",
            d.id
        ),
        format!(
            "UPDATE message_recipient SET queue_id = {dns} WHERE message_id = '{}' AND ordinal = 1",
            d.id
        ),
    ] {
        setup.sql(&q).await;
    }
    World {
        dns,
        unreachable,
        connector,
        a,
        b,
        c,
        d,
    }
}

#[tokio::test]
async fn get_queue_shows_every_queue_with_counts_and_details() {
    let setup = Setup::new().await;
    let w = world(&setup).await;

    let out = ok(&setup, "Get-Queue").await;
    let header: Vec<&str> = out
        .lines()
        .find(|l| !l.is_empty())
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "Identity",
            "DeliveryType",
            "Status",
            "MessageCount",
            "NextHopDomain"
        ]
    );
    let dns = format!("HUB1\\{}", w.dns);
    assert_eq!(
        row(&out, &dns),
        [
            dns.as_str(),
            "DnsConnectorDelivery",
            "Retry",
            "2",
            "fabrikam.test"
        ]
    );
    assert_eq!(
        row(&out, "HUB1\\Submission"),
        ["HUB1\\Submission", "Undefined", "Ready", "1", "Submission"]
    );
    assert_eq!(
        row(&out, "HUB1\\Unreachable"),
        [
            "HUB1\\Unreachable",
            "Unreachable",
            "Ready",
            "1",
            "Unreachable",
            "Domain"
        ]
    );
    assert_eq!(
        row(&out, "HUB1\\Poison"),
        [
            "HUB1\\Poison",
            "Undefined",
            "Ready",
            "1",
            "Poison",
            "Message"
        ]
    );
    // Exchange's order: numbered queues, then Submission, Unreachable, Poison.
    let order: Vec<String> = rows_starting(&out, "HUB1\\")
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(
        order,
        [
            dns.clone(),
            "HUB1\\Submission".into(),
            "HUB1\\Unreachable".into(),
            "HUB1\\Poison".into()
        ]
    );
    assert!(!out.contains(&format!("HUB1\\{} ", w.unreachable)), "{out}");

    // Format-List: every property, by identity in its several spellings.
    for id in [
        dns.clone(),
        w.dns.to_string(),
        format!("hub1.contoso.test\\{}", w.dns),
    ] {
        let out = ok(&setup, &format!("Get-Queue {id} | Format-List")).await;
        assert_eq!(field(&out, "Identity"), dns);
        assert_eq!(field(&out, "DeliveryType"), "DnsConnectorDelivery");
        assert_eq!(field(&out, "Status"), "Retry");
        assert_eq!(field(&out, "MessageCount"), "2");
        assert_eq!(field(&out, "NextHopDomain"), "fabrikam.test");
        assert_eq!(field(&out, "NextHopConnector"), w.connector.to_string());
        assert_eq!(field(&out, "LastError"), RETRY_ERROR);
        assert_eq!(field(&out, "LastRetryTime"), "1/25/2019 12:10:00 AM");
        assert_eq!(field(&out, "NextRetryTime"), "1/25/2019 12:20:00 AM");
    }
    let out = ok(&setup, "Get-Queue -Identity Submission | fl").await;
    assert_eq!(
        field(&out, "NextHopConnector"),
        "00000000-0000-0000-0000-000000000000"
    );
    let out = ok(
        &setup,
        "Get-Queue -Server hub1.contoso.test | ft Identity,MessageCount",
    )
    .await;
    assert_eq!(row(&out, "HUB1\\Poison"), ["HUB1\\Poison", "1"]);

    let e = fails(&setup, "Get-Queue HUB1\\999").await;
    assert!(e.contains("The queue \"HUB1\\999\" was not found."), "{e}");
    let e = fails(&setup, "Get-Queue HUB1\\Shadow").await;
    assert!(e.contains("isn't a valid queue identity"), "{e}");
    let e = fails(&setup, "Get-Queue -Server HUB9").await;
    assert!(
        e.contains("The TransportServer \"HUB9\" does not exist."),
        "{e}"
    );
    let e = fails(&setup, "Get-Queue -Filter 'MessageCont -gt 0'").await;
    assert!(
        e.contains("\"MessageCont\" is not a recognized filterable property"),
        "{e}"
    );
}

#[tokio::test]
async fn empty_server_still_shows_submission_unreachable_and_poison() {
    let setup = Setup::new().await;
    let out = ok(&setup, "Get-Queue").await;
    assert_eq!(rows_starting(&out, "HUB1\\").len(), 3, "{out}");
    assert_eq!(
        row(&out, "HUB1\\Unreachable"),
        [
            "HUB1\\Unreachable",
            "Unreachable",
            "Ready",
            "0",
            "Unreachable",
            "Domain"
        ]
    );
    assert_eq!(ok(&setup, "Get-Message").await.trim(), "");
    assert_eq!(
        ok(&setup, "Get-Message -Queue HUB1\\Unreachable")
            .await
            .trim(),
        ""
    );
}

#[tokio::test]
async fn get_message_lists_one_entry_per_queue_with_recipients_and_history() {
    let setup = Setup::new().await;
    let w = world(&setup).await;
    let (a, b, c, d) = (
        w.a.internal_id,
        w.b.internal_id,
        w.c.internal_id,
        w.d.internal_id,
    );
    let dns = format!("HUB1\\{}", w.dns);

    let out = ok(&setup, "Get-Message").await;
    let header: Vec<&str> = out
        .lines()
        .find(|l| !l.is_empty())
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["Identity", "FromAddress", "Status", "Queue", "Subject"]
    );
    // A is in two queues, so it is listed twice, as Exchange lists it.
    let ids: Vec<String> = rows_starting(&out, "HUB1\\")
        .iter()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        [
            format!("HUB1\\Submission\\{a}"),
            format!("{dns}\\{a}"),
            format!("HUB1\\Unreachable\\{b}"),
            format!("HUB1\\Poison\\{c}"),
            format!("{dns}\\{d}"),
        ]
    );
    assert_eq!(
        row(&out, &format!("{dns}\\{a}")),
        [
            format!("{dns}\\{a}").as_str(),
            "alice@example.org",
            "Retry",
            dns.as_str(),
            "Quarterly",
            "report"
        ]
    );
    assert_eq!(row(&out, &format!("HUB1\\Submission\\{a}"))[2], "Ready");
    assert_eq!(row(&out, &format!("HUB1\\Poison\\{c}"))[2], "Suspended");
    assert_eq!(row(&out, &format!("{dns}\\{d}"))[2], "Ready");

    // By queue, by pipeline from Get-Queue, by message identity in its spellings.
    for line in [
        format!("Get-Message -Queue {dns}"),
        format!("Get-Queue {dns} | Get-Message"),
        format!("Get-Message -Queue {}", w.dns),
    ] {
        let out = ok(&setup, &line).await;
        assert_eq!(rows_starting(&out, "HUB1\\").len(), 2, "{line}: {out}");
        assert!(out.contains(&format!("{dns}\\{a} ")) && out.contains(&format!("{dns}\\{d} ")));
    }
    let out = ok(&setup, "Get-Message -Queue Poison").await;
    assert_eq!(rows_starting(&out, "HUB1\\").len(), 1, "{out}");
    for id in [format!("HUB1\\*\\{a}"), a.to_string(), format!("*\\{a}")] {
        let out = ok(&setup, &format!("Get-Message {id}")).await;
        assert_eq!(rows_starting(&out, "HUB1\\").len(), 2, "{id}: {out}");
    }

    // Format-List: the whole entry, with its recipients in that queue and their history.
    let out = ok(
        &setup,
        &format!("Get-Message {dns}\\{a} -IncludeRecipientInfo | Format-List"),
    )
    .await;
    assert_eq!(field(&out, "Identity"), format!("{dns}\\{a}"));
    assert_eq!(field(&out, "Subject"), "Quarterly report");
    assert_eq!(
        field(&out, "InternetMessageId"),
        format!("<{}@example.org>", w.a.id)
    );
    assert_eq!(field(&out, "FromAddress"), "alice@example.org");
    assert_eq!(field(&out, "Status"), "Retry");
    let size = w.a.bytes.len();
    assert!(
        field(&out, "Size").contains(&format!("({size} bytes)")),
        "{out}"
    );
    assert_eq!(field(&out, "MessageSourceName"), "HUB1\\Default HUB1");
    assert_eq!(field(&out, "SourceIP"), "192.0.2.10");
    assert_eq!(field(&out, "SCL"), "");
    assert_eq!(field(&out, "DateReceived"), "1/25/2019 12:03:58 AM");
    // The queue's connector sets a one-day MessageExpirationTimeout.
    assert_eq!(field(&out, "ExpirationTime"), "1/26/2019 12:03:58 AM");
    assert_eq!(field(&out, "LastError"), RETRY_ERROR);
    assert_eq!(field(&out, "RetryCount"), "2");
    assert_eq!(field(&out, "Queue"), dns);
    let recipients = field(&out, "Recipients");
    assert!(
        recipients
            .starts_with("bob@fabrikam.test; Status: Retry; RetryCount: 2; LastError: 451 4.4.0"),
        "{out}"
    );
    assert!(!out.contains("carol@"), "carol is in Submission: {out}");
    let history = continued(&out, "Recipients");
    assert_eq!(
        history,
        [
            "  1/25/2019 12:05:00 AM; NextHop: mx1.fabrikam.test; IP: 192.0.2.25; Reply: 421 4.2.1 Unable to connect",
            "  1/25/2019 12:10:00 AM; NextHop: mx2.fabrikam.test; IP: 192.0.2.26; TLS: TLSv1.3; Reply: 451 4.7.1 Greylisted, try again later",
        ]
    );
    // Submission has no connector: the server's two days.
    let out = ok(&setup, &format!("Get-Message HUB1\\Submission\\{a} | fl")).await;
    assert_eq!(field(&out, "ExpirationTime"), "1/27/2019 12:03:58 AM");
    assert_eq!(
        field(&out, "Recipients"),
        "carol@contoso.test; Status: Ready; RetryCount: 0"
    );
    // D: its delivered recipient is no longer in any queue.
    let out = ok(&setup, &format!("Get-Message {dns}\\{d} | fl")).await;
    assert!(!out.contains("frank@"), "{out}");

    for (line, want) in [
        (
            format!("Get-Message {dns}\\{b}"),
            format!("The message \"{dns}\\{b}\" was not found."),
        ),
        (
            "Get-Message 999999".into(),
            "The message \"HUB1\\*\\999999\" was not found.".into(),
        ),
        (
            "Get-Message HUB1\\3\\x".into(),
            "isn't a valid message identity".into(),
        ),
        (
            "Get-Message -Queue HUB1\\999".into(),
            "The queue \"HUB1\\999\" was not found.".into(),
        ),
        (
            format!("Get-Message {a} -Queue Submission"),
            "Parameter set cannot be resolved".into(),
        ),
    ] {
        let e = fails(&setup, &line).await;
        assert!(e.contains(&want), "{line}: {e}");
    }
}

#[tokio::test]
async fn queue_actions_set_the_rows_and_notify_the_gateway() {
    let setup = Setup::new().await;
    let w = world(&setup).await;
    let mut l = listen(&setup).await;
    let dns = format!("HUB1\\{}", w.dns);
    let suspended = |id: i64| {
        let pool = setup.pool.clone();
        async move {
            let (s,): (bool,) =
                sqlx::query_as("SELECT suspended FROM delivery_queue WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            s
        }
    };

    assert_eq!(ok(&setup, &format!("Suspend-Queue {dns}")).await, "");
    assert!(suspended(w.dns).await);
    assert_eq!(notified(&mut l).await, format!("Suspend-Queue {dns}"));
    let out = ok(&setup, &format!("Get-Queue {dns}")).await;
    assert_eq!(row(&out, &dns)[2], "Suspended");
    // A suspended queue is not in Retry status.
    let e = fails(&setup, &format!("Retry-Queue {dns}")).await;
    assert!(
        e.contains(&format!("The queue \"{dns}\" isn't in Retry status")),
        "{e}"
    );
    quiet(&mut l).await;

    ok(&setup, &format!("Get-Queue {dns} | Resume-Queue")).await;
    assert!(!suspended(w.dns).await);
    assert_eq!(notified(&mut l).await, format!("Resume-Queue {dns}"));

    // Retry: the queue and its Retry recipients are due now; Ready ones are untouched.
    ok(&setup, &format!("Retry-Queue -Identity {dns}")).await;
    assert_eq!(notified(&mut l).await, format!("Retry-Queue {dns}"));
    let (due,): (bool,) = sqlx::query_as(
        "SELECT next_retry_time > now() - interval '1 minute' FROM delivery_queue WHERE id = $1",
    )
    .bind(w.dns)
    .fetch_one(&setup.pool)
    .await
    .unwrap();
    assert!(due);
    let rcpts: Vec<(String, Option<bool>)> = sqlx::query_as(
        "SELECT address, next_retry_time > now() - interval '1 minute' FROM message_recipient
          WHERE queue_id = $1 AND status <> 'Delivered' ORDER BY address",
    )
    .bind(w.dns)
    .fetch_all(&setup.pool)
    .await
    .unwrap();
    assert_eq!(
        rcpts,
        [
            ("bob@fabrikam.test".to_string(), Some(true)),
            ("gina@fabrikam.test".to_string(), None)
        ]
    );

    // Unreachable is Ready, not Retry: only a resubmit moves its messages, back to Submission.
    let e = fails(&setup, "Retry-Queue HUB1\\Unreachable").await;
    assert!(
        e.contains("isn't in Retry status") && e.contains("-Resubmit $true"),
        "{e}"
    );
    ok(&setup, "Retry-Queue HUB1\\Unreachable -Resubmit $true").await;
    assert_eq!(
        notified(&mut l).await,
        "Retry-Queue -Resubmit HUB1\\Unreachable"
    );
    let (queue_id, status, next): (Option<i64>, String, Option<time::OffsetDateTime>) =
        sqlx::query_as(
            "SELECT queue_id, status, next_retry_time FROM message_recipient WHERE message_id = $1",
        )
        .bind(w.b.id)
        .fetch_one(&setup.pool)
        .await
        .unwrap();
    assert_eq!((queue_id, status.as_str(), next), (None, "Ready", None));
    let out = ok(&setup, "Get-Queue").await;
    assert_eq!(row(&out, "HUB1\\Submission")[3], "2");
    assert_eq!(row(&out, "HUB1\\Unreachable")[3], "0");

    // Resubmitting a numbered queue: its live recipients leave it, the delivered one stays put.
    ok(&setup, &format!("Retry-Queue {dns} -Resubmit:$true")).await;
    notified(&mut l).await;
    let (left,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM message_recipient WHERE queue_id = $1 AND status NOT IN ('Delivered', 'Failed')",
    )
    .bind(w.dns)
    .fetch_one(&setup.pool)
    .await
    .unwrap();
    assert_eq!(left, 0);

    // Suspend-Queue on Unreachable works whether or not the manager has made its row yet.
    ok(&setup, "Suspend-Queue Unreachable").await;
    assert!(suspended(w.unreachable).await);
    notified(&mut l).await;
    setup
        .sql("DELETE FROM delivery_queue WHERE delivery_type = 'Unreachable'")
        .await;
    ok(&setup, "Suspend-Queue HUB1\\Unreachable").await;
    notified(&mut l).await;
    let out = ok(&setup, "Get-Queue HUB1\\Unreachable").await;
    assert_eq!(row(&out, "HUB1\\Unreachable")[2], "Suspended");

    // Submission and Poison are not delivery queues.
    for (line, want) in [
        (
            "Suspend-Queue HUB1\\Submission",
            "Suspend-Queue can't be used on the queue \"HUB1\\Submission\"",
        ),
        (
            "Retry-Queue Submission -Resubmit $true",
            "can't be used on the queue \"HUB1\\Submission\"",
        ),
        (
            "Resume-Queue HUB1\\Poison",
            "Resume-Queue can't be used on the queue \"HUB1\\Poison\"",
        ),
        ("Retry-Queue Poison", "Resume-Message"),
    ] {
        let e = fails(&setup, line).await;
        assert!(e.contains(want), "{line}: {e}");
    }
    quiet(&mut l).await;
}

#[tokio::test]
async fn message_actions_suspend_resume_and_remove_with_or_without_ndr() {
    let setup = Setup::new().await;
    let w = world(&setup).await;
    let mut l = listen(&setup).await;
    let dns = format!("HUB1\\{}", w.dns);
    let (a, d) = (w.a.internal_id, w.d.internal_id);
    let flags = |id: Uuid| {
        let pool = setup.pool.clone();
        async move {
            let (s, p): (bool, bool) =
                sqlx::query_as("SELECT suspended, poison FROM message WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (s, p)
        }
    };
    let removal = |id: Uuid| {
        let pool = setup.pool.clone();
        async move {
            let v: Vec<(String, Option<bool>)> = sqlx::query_as(
                "SELECT address, remove_with_ndr FROM message_recipient WHERE message_id = $1 ORDER BY ordinal",
            )
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
            v
        }
    };

    ok(&setup, &format!("Suspend-Message {dns}\\{a}")).await;
    assert_eq!(flags(w.a.id).await, (true, false));
    assert_eq!(
        notified(&mut l).await,
        format!("Suspend-Message {dns}\\{a}")
    );
    // hubgate suspends the message as a whole: both of its entries show it.
    let out = ok(&setup, &format!("Get-Message HUB1\\*\\{a}")).await;
    assert_eq!(row(&out, &format!("{dns}\\{a}"))[2], "Suspended");
    assert_eq!(row(&out, &format!("HUB1\\Submission\\{a}"))[2], "Suspended");
    // Both entries flow down the pipeline as one command to the queue manager: the message
    // is resumed once, with one notification.
    ok(&setup, &format!("Get-Message {a} | Resume-Message")).await;
    assert_eq!(flags(w.a.id).await, (false, false));
    assert_eq!(notified(&mut l).await, "Resume-Message 1 message(s)");
    quiet(&mut l).await;

    // Remove-Message defaults to an NDR, and touches only the recipients in the named queue.
    ok(&setup, &format!("Remove-Message {dns}\\{a}")).await;
    assert_eq!(
        removal(w.a.id).await,
        [
            ("bob@fabrikam.test".into(), Some(true)),
            ("carol@contoso.test".into(), None)
        ]
    );
    assert_eq!(
        notified(&mut l).await,
        format!("Remove-Message {dns}\\{a} with NDR")
    );
    let out = ok(&setup, &format!("Get-Message {a}")).await;
    assert_eq!(row(&out, &format!("{dns}\\{a}"))[2], "PendingRemove");
    assert_eq!(row(&out, &format!("HUB1\\Submission\\{a}"))[2], "Ready");
    let out = ok(&setup, &format!("Get-Message {dns}\\{a} | fl Recipients")).await;
    assert!(
        field(&out, "Recipients").contains("PendingRemove: with NDR"),
        "{out}"
    );

    // Without NDR, for every queue of the message; the delivered recipient is left alone.
    ok(
        &setup,
        &format!("Remove-Message -Identity HUB1\\*\\{d} -WithNDR $false"),
    )
    .await;
    assert_eq!(
        removal(w.d.id).await,
        [
            ("frank@fabrikam.test".into(), None),
            ("gina@fabrikam.test".into(), Some(false))
        ]
    );
    assert_eq!(
        notified(&mut l).await,
        format!("Remove-Message HUB1\\*\\{d} without NDR")
    );

    // A pipeline is one transaction: one statement, one notification per message.
    ok(&setup, "Get-Message -Queue Unreachable | Suspend-Message").await;
    assert_eq!(flags(w.b.id).await, (true, false));
    assert!(
        notified(&mut l)
            .await
            .starts_with("Suspend-Message HUB1\\Unreachable\\")
    );
    quiet(&mut l).await;
}

#[tokio::test]
async fn resume_message_releases_a_poison_message_to_submission() {
    let setup = Setup::new().await;
    let w = world(&setup).await;
    let mut l = listen(&setup).await;
    let c = w.c.internal_id;
    // Recorded where it was when it crashed the gateway.
    setup
        .sql(&format!(
            "UPDATE message_recipient SET queue_id = {}, status = 'Retry', next_retry_time = now() WHERE message_id = '{}'",
            w.dns, w.c.id
        ))
        .await;
    let out = ok(&setup, "Get-Message -Queue HUB1\\Poison").await;
    assert_eq!(row(&out, &format!("HUB1\\Poison\\{c}"))[2], "Suspended");
    let out = ok(&setup, &format!("Get-Queue HUB1\\{}", w.dns)).await;
    assert_eq!(
        row(&out, &format!("HUB1\\{}", w.dns))[3],
        "2",
        "poison is counted in Poison only"
    );

    ok(&setup, &format!("Resume-Message HUB1\\Poison\\{c}")).await;
    assert_eq!(
        notified(&mut l).await,
        format!("Resume-Message HUB1\\Poison\\{c}")
    );
    let (poison, crashes, suspended): (bool, i32, bool) =
        sqlx::query_as("SELECT poison, crash_count, suspended FROM message WHERE id = $1")
            .bind(w.c.id)
            .fetch_one(&setup.pool)
            .await
            .unwrap();
    assert_eq!((poison, crashes, suspended), (false, 0, false));
    let (queue_id, status, next): (Option<i64>, String, Option<time::OffsetDateTime>) =
        sqlx::query_as(
            "SELECT queue_id, status, next_retry_time FROM message_recipient WHERE message_id = $1",
        )
        .bind(w.c.id)
        .fetch_one(&setup.pool)
        .await
        .unwrap();
    assert_eq!((queue_id, status.as_str(), next), (None, "Ready", None));
    let out = ok(&setup, "Get-Queue").await;
    assert_eq!(row(&out, "HUB1\\Poison")[3], "0");
    assert_eq!(row(&out, "HUB1\\Submission")[3], "2");
}

#[tokio::test]
async fn export_message_writes_the_exact_spooled_bytes_only_when_suspended() {
    let setup = Setup::new().await;
    let w = world(&setup).await;
    let out_dir = tempfile::tempdir().unwrap();
    let target = out_dir.path().join("a.eml");
    let dns = format!("HUB1\\{}", w.dns);
    let a = w.a.internal_id;
    let id = format!("{dns}\\{a}");

    let e = fails(
        &setup,
        &format!("Export-Message {id} -Path '{}'", target.display()),
    )
    .await;
    assert!(
        e.contains(&format!(
            "The message \"{id}\" can't be exported because it isn't suspended."
        )),
        "{e}"
    );
    assert!(!target.exists());

    ok(&setup, &format!("Suspend-Message {id}")).await;
    ok(
        &setup,
        &format!("Export-Message {id} -Path '{}' -WhatIf", target.display()),
    )
    .await;
    assert!(!target.exists(), "-WhatIf wrote the file");
    assert_eq!(
        ok(
            &setup,
            &format!("Export-Message -Identity {id} -Path '{}'", target.display())
        )
        .await,
        ""
    );
    assert_eq!(std::fs::read(&target).unwrap(), w.a.bytes);
    let spooled = std::fs::read(
        setup
            .data_dir
            .path()
            .join("spool")
            .join(format!("{}.eml", w.a.id)),
    )
    .unwrap();
    assert_eq!(spooled, w.a.bytes);

    // Exchange's own form, and the queue-less identity.
    let piped = out_dir.path().join("piped.eml");
    ok(
        &setup,
        &format!(
            "Export-Message HUB1\\*\\{a} | AssembleMessage -Path '{}'",
            piped.display()
        ),
    )
    .await;
    assert_eq!(std::fs::read(&piped).unwrap(), w.a.bytes);
    let piped = out_dir.path().join("from-get.eml");
    ok(
        &setup,
        &format!(
            "Get-Message {id} | Export-Message | AssembleMessage '{}'",
            piped.display()
        ),
    )
    .await;
    assert_eq!(std::fs::read(&piped).unwrap(), w.a.bytes);

    // A poison message is suspended by nature.
    let poison = out_dir.path().join("poison.eml");
    ok(
        &setup,
        &format!(
            "Export-Message HUB1\\Poison\\{} -Path '{}'",
            w.c.internal_id,
            poison.display()
        ),
    )
    .await;
    assert_eq!(std::fs::read(&poison).unwrap(), w.c.bytes);

    // The library call the console uses.
    let direct = out_dir.path().join("direct.eml");
    let n = hubgate::transport::queue::ops::export_message(
        &setup.pool,
        SERVER,
        setup.data_dir.path(),
        &id,
        &direct,
    )
    .await
    .unwrap();
    assert_eq!(n as usize, w.a.bytes.len());
    assert_eq!(std::fs::read(&direct).unwrap(), w.a.bytes);

    let e = fails(
        &setup,
        &format!("Export-Message {}\\{} -Path x.eml", dns, w.b.internal_id),
    )
    .await;
    assert!(e.contains("was not found"), "{e}");
}

#[tokio::test]
async fn unknown_identities_fail_change_nothing_and_send_no_notify() {
    let setup = Setup::new().await;
    let w = world(&setup).await;
    let mut l = listen(&setup).await;
    let before = snapshot(&setup).await;
    let dns = format!("HUB1\\{}", w.dns);
    let a = w.a.internal_id;
    let cases = [
        (
            "Suspend-Queue HUB1\\99999".to_string(),
            "The queue \"HUB1\\99999\" was not found.".to_string(),
        ),
        (
            "Resume-Queue 99999".into(),
            "The queue \"HUB1\\99999\" was not found.".into(),
        ),
        (
            "Retry-Queue HUB9\\Unreachable -Resubmit $true".into(),
            "The queue \"HUB9\\Unreachable\" was not found.".into(),
        ),
        (
            format!("Suspend-Queue HUB9\\{}", w.dns),
            format!("The queue \"HUB9\\{}\" was not found.", w.dns),
        ),
        (
            "Suspend-Queue HUB1\\Nope".into(),
            "isn't a valid queue identity".into(),
        ),
        (
            format!("Suspend-Message {dns}\\999999"),
            format!("The message \"{dns}\\999999\" was not found."),
        ),
        (
            format!("Resume-Message HUB1\\Unreachable\\{a}"),
            format!("The message \"HUB1\\Unreachable\\{a}\" was not found."),
        ),
        (
            format!("Remove-Message HUB1\\Poison\\{a}"),
            format!("The message \"HUB1\\Poison\\{a}\" was not found."),
        ),
        (
            format!("Remove-Message HUB1\\{a}\\x -WithNDR $false"),
            "isn't a valid message identity".into(),
        ),
        (
            format!("Remove-Message {dns}\\{a} -WithNDR maybe"),
            "Use $true or $false.".into(),
        ),
        (
            "Suspend-Message".into(),
            "missing mandatory parameters: Identity".into(),
        ),
        (
            "Suspend-Message -Filter \"FromAddress -lik '*@example.org'\"".into(),
            "at position 13: '-lik' is not a valid operator".into(),
        ),
        (
            "Get-Queue | Suspend-Message".into(),
            "The input object cannot be bound to any parameters of Suspend-Message.".into(),
        ),
    ];
    for (line, want) in &cases {
        let e = fails(&setup, line).await;
        assert!(e.contains(want.as_str()), "{line}: {e}");
        assert_eq!(snapshot(&setup).await, before, "{line} changed rows");
    }
    // -WhatIf says what it would do and does nothing.
    let out = ok(&setup, &format!("Suspend-Queue {dns} -WhatIf")).await;
    assert!(
        out.contains(&format!("What if: Suspending queue \"{dns}\".")),
        "{out}"
    );
    let out = ok(
        &setup,
        &format!("Remove-Message {dns}\\{a} -WithNDR $false -WhatIf"),
    )
    .await;
    assert!(
        out.contains("What if: Removing (without NDR) message"),
        "{out}"
    );
    assert_eq!(snapshot(&setup).await, before);
    quiet(&mut l).await;
}

#[tokio::test]
async fn get_message_tracking_log_filters_and_views() {
    let setup = Setup::new().await;
    let at = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let times = std::sync::Mutex::new(vec![
        at("2019-01-25T00:03:58Z"),
        at("2019-01-25T00:04:10Z"),
        at("2019-01-25T09:30:00Z"),
    ]);
    let clock: hubgate::logs::protocol::Clock = Arc::new(move || {
        let mut t = times.lock().unwrap();
        if t.len() > 1 { t.remove(0) } else { t[0] }
    });
    let log = TrackingLog::with_settings(setup.data_dir.path(), true, 10 << 20, clock);
    let event = |event_id: &'static str,
                 source: &'static str,
                 internal: i64,
                 rcpts: &'static [&'static str],
                 status: &'static [&'static str]| TrackingEvent {
        event_id,
        source,
        client_ip: Some("192.0.2.10".parse().unwrap()),
        client_hostname: Some("client.example"),
        server_ip: Some("127.0.0.1".parse().unwrap()),
        server_hostname: Some("hub1.contoso.test"),
        source_context: None,
        connector_id: Some("HUB1\\Default HUB1"),
        internal_message_id: internal,
        message_id: Some("<m1@example.org>"),
        recipients: rcpts,
        recipient_status: status,
        total_bytes: 1234,
        related_recipient_address: None,
        reference: None,
        subject: Some("Quarterly report"),
        sender: "alice@example.org",
        return_path: "alice@example.org",
        message_info: None,
        directionality: Some("Incoming"),
    };
    log.record(&event(
        "RECEIVE",
        "SMTP",
        7,
        &["bob@fabrikam.test", "carol@contoso.test"],
        &[],
    ));
    log.record(&event(
        "SEND",
        "SMTP",
        7,
        &["bob@fabrikam.test"],
        &["250 2.0.0 OK"],
    ));
    log.record(&event(
        "FAIL",
        "SMTP",
        8,
        &["dave@nowhere.test"],
        &["550 5.1.1 User unknown"],
    ));

    let out = ok(&setup, "Get-MessageTrackingLog").await;
    let header: Vec<&str> = out
        .lines()
        .find(|l| !l.is_empty())
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "EventId",
            "Source",
            "Sender",
            "Recipients",
            "MessageSubject"
        ]
    );
    assert_eq!(
        row(&out, "RECEIVE"),
        [
            "RECEIVE",
            "SMTP",
            "alice@example.org",
            "{bob@fabrikam.test,",
            "carol@contoso.test}",
            "Quarterly",
            "report"
        ]
    );
    assert_eq!(rows_starting(&out, "SEND").len(), 1);
    assert_eq!(rows_starting(&out, "FAIL").len(), 1);

    let count = |out: &str| {
        out.lines()
            .filter(|l| ["RECEIVE", "SEND", "FAIL"].iter().any(|e| l.starts_with(e)))
            .count()
    };
    for (line, n) in [
        ("Get-MessageTrackingLog -EventId send", 1),
        (
            "Get-MessageTrackingLog -Recipients dave@nowhere.test, nobody@x.test",
            1,
        ),
        (
            "Get-MessageTrackingLog -Sender ALICE@example.org -InternalMessageId 7",
            2,
        ),
        (
            "Get-MessageTrackingLog -MessageId m1@example.org -ResultSize 2",
            2,
        ),
        ("Get-MessageTrackingLog -ResultSize Unlimited", 3),
        (
            "Get-MessageTrackingLog -Start '1/25/2019 12:04 AM' -End '1/25/2019 9:30 AM'",
            1,
        ),
        ("Get-MessageTrackingLog -Start 2019-01-25T09:00:00Z", 1),
        ("Get-MessageTrackingLog -End 2019-01-24", 0),
        (
            "Get-MessageTrackingLog -Server hub1.contoso.test -EventId FAIL",
            1,
        ),
    ] {
        let out = ok(&setup, line).await;
        assert_eq!(count(&out), n, "{line}: {out}");
    }
    let out = ok(&setup, "Get-MessageTrackingLog -EventId FAIL | Format-List").await;
    assert_eq!(field(&out, "Timestamp"), "1/25/2019 9:30:00 AM");
    assert_eq!(field(&out, "ClientIp"), "192.0.2.10");
    assert_eq!(field(&out, "ConnectorId"), "HUB1\\Default HUB1");
    assert_eq!(field(&out, "InternalMessageId"), "8");
    assert_eq!(field(&out, "RecipientStatus"), "{550 5.1.1 User unknown}");
    assert_eq!(field(&out, "TotalBytes"), "1234");
    assert_eq!(field(&out, "RecipientCount"), "1");
    assert_eq!(field(&out, "Directionality"), "Incoming");

    for (line, want) in [
        (
            "Get-MessageTrackingLog -Start yesterday",
            "Cannot convert value \"yesterday\" to type System.DateTime",
        ),
        (
            "Get-MessageTrackingLog -InternalMessageId x7",
            "whole number",
        ),
        (
            "Get-MessageTrackingLog -Server EDGE2",
            "run Get-MessageTrackingLog there",
        ),
        (
            "Get-MessageTrackingLog -MessageSubject x",
            "'MessageSubject' of Get-MessageTrackingLog",
        ),
    ] {
        let e = fails(&setup, line).await;
        assert!(e.contains(want), "{line}: {e}");
    }
}
