//! Health and back pressure against `hubgate serve`: `/healthz` and `/readyz` for a plain curl
//! (an unbound receive connector makes the node unready), back pressure on the queue length
//! (a next hop that is down) and on the spool disk's free space, refusing with
//! `452 4.3.1 Insufficient system resources` and recovering, shown on the dashboard; and the
//! loss of PostgreSQL under a load of senders (the test's own cluster, stopped and started):
//! `/readyz` 503 and 4xx to new mail meanwhile, then ready again, and every message that had its
//! 250 delivered to the next hop.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::console::{session_cookie, sign_in};
use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;
use hubgate::db::managed::ManagedCluster;
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// (status, headers and body) of a GET with curl, as a monitoring probe sends it: no cookie,
/// no Origin, the console's self-signed certificate not checked.
fn curl(console: SocketAddr, path: &str) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sk", "-i", "--max-time", "20"])
        .arg(format!("https://{console}{path}"))
        .output()
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

async fn curl_async(console: SocketAddr, path: &'static str) -> (u16, String, String) {
    tokio::task::spawn_blocking(move || curl(console, path))
        .await
        .unwrap()
}

/// The reply to MAIL FROM on a fresh connection (then QUIT).
async fn mail_reply(smtp: SocketAddr) -> String {
    let mut c = Raw::connect(smtp).await;
    c.reply().await;
    c.cmd("EHLO probe.contoso.test").await;
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
    c.cmd("QUIT").await;
    r
}

async fn mail_reply_becomes(smtp: SocketAddr, want: &str) {
    let mut last = String::new();
    for _ in 0..120 {
        last = mail_reply(smtp).await;
        if last.starts_with(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("MAIL FROM never answered {want:?}; last: {last:?}");
}

async fn readyz_becomes(console: SocketAddr, status: u16, body_has: &str) -> String {
    let mut last = (0, String::new(), String::new());
    for _ in 0..120 {
        last = curl_async(console, "/readyz").await;
        if last.0 == status && last.2.contains(body_has) {
            return last.2;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!(
        "/readyz never answered {status} with {body_has:?}; last: {} {:?}",
        last.0, last.2
    );
}

#[tokio::test]
async fn healthz_and_readyz_answer_a_plain_curl_and_name_an_unbound_connector() {
    let s = Setup::new().await;
    // Something else holds the address a new connector wants.
    let port = s.another_port();
    let _squatter = std::net::TcpListener::bind((s.ip, port)).unwrap();
    configure(
        &s,
        &[&format!(
            "New-ReceiveConnector -Name Taken -Bindings {}:{port} -RemoteIPRanges 10.9.0.0/16",
            s.ip
        )],
    )
    .await;
    let gw = s.start().await;
    let console = gw.console_addr();

    let (status, head, body) = curl_async(console, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(head.contains("content-type: text/plain"), "{head}");

    let (status, head, body) = curl_async(console, "/readyz").await;
    assert_eq!(status, 503, "{head}{body}");
    assert!(head.contains("content-type: text/plain"), "{head}");
    assert!(body.starts_with("not ready\n"), "{body}");
    assert!(
        body.contains(&format!(
            "receive connector Taken: cannot listen on {}:{port}",
            gw.setup.ip
        )),
        "{body}"
    );
    assert!(!body.contains("PostgreSQL"), "{body}");
    assert!(!body.contains("spool"), "{body}");

    // Disabled, the connector no longer needs its address: ready.
    run(&gw, "Set-ReceiveConnector Taken -Enabled $false").await;
    let body = readyz_becomes(console, 200, "ready").await;
    assert_eq!(body, "ready\n");
}

/// Signs in to the console of `gw`: a client and its session cookie header.
async fn signed_in(gw: &Gateway) -> (https::Client, String) {
    let client = https::Client::new(gw.console_addr(), &gw.data_dir(), FQDN);
    let cookie = session_cookie(
        &sign_in(&client, "Administrator", ADMIN_PASSWORD)
            .await
            .unwrap_or_else(|r| panic!("sign-in refused: {}", r.body)),
    );
    (client, cookie)
}

/// The dashboard's back-pressure line once it contains `want` (bounded).
async fn back_pressure_line(client: &https::Client, cookie: &str, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..120 {
        let r = client
            .get("/server/hub/HUB1/dashboard", &[("Cookie", cookie)])
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let line = r
            .body
            .split("id=\"back-pressure\">")
            .nth(1)
            .and_then(|rest| rest.split("</p>").next())
            .unwrap_or_default()
            .to_string();
        if line.contains(want) {
            return line;
        }
        last = line;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the dashboard never showed {want:?}; last: {last:?}");
}

#[tokio::test]
async fn a_long_queue_refuses_new_mail_until_it_drains() {
    let s = setup().await;
    let down = addr("127.0.0.61", peer_port());
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Down -AddressSpaces 'down.example' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {}",
                down.ip(),
                down.port()
            ),
            "Set-TransportServer HUB1 -BackPressureQueueLengthLimit 2",
        ],
    )
    .await;
    let gw = s.start().await;
    let fl = run(
        &gw,
        "Get-TransportServer HUB1 | Format-List BackPressureQueueLengthLimit,BackPressureDiskFreeSpaceLimit",
    )
    .await;
    assert!(fl.contains("BackPressureQueueLengthLimit   : 2"), "{fl}");
    assert!(
        fl.contains("BackPressureDiskFreeSpaceLimit : 500 MB (524,288,000 bytes)"),
        "{fl}"
    );
    let (client, cookie) = signed_in(&gw).await;
    assert_eq!(
        back_pressure_line(&client, &cookie, "Normal").await,
        "Back pressure: Normal"
    );

    let smtp = gw.smtp();
    tokio::task::spawn_blocking(move || {
        send_to(smtp, "a@down.example", "held 1");
        send_to(smtp, "b@down.example", "held 2");
    })
    .await
    .unwrap();
    mail_reply_becomes(smtp, "452 4.3.1 Insufficient system resources").await;
    let line = back_pressure_line(&client, &cookie, "High").await;
    assert_eq!(
        line,
        "Back pressure: High (2 messages queued, BackPressureQueueLengthLimit 2)"
    );
    assert_eq!(
        back_pressure_gauge(&client).await,
        "hubgate_back_pressure 2"
    );
    // Refused while High, also for a client that does not pipeline its way past MAIL.
    let (ok, out) = tokio::task::spawn_blocking(move || {
        swaks(&[
            "--server",
            &smtp.to_string(),
            "--from",
            SENDER,
            "--to",
            "c@down.example",
        ])
    })
    .await
    .unwrap();
    assert!(!ok, "{out}");
    assert!(
        out.contains("452 4.3.1 Insufficient system resources"),
        "{out}"
    );

    // The next hop comes back and the queue drains: mail is taken again.
    let mut sink = Sink::down(down, SinkOptions::default());
    sink.restart();
    run(
        &gw,
        &format!(
            "Get-Queue -Filter {{NextHopDomain -eq \"{}\"}} | Retry-Queue",
            down.ip()
        ),
    )
    .await;
    within(120, "the held messages reach the next hop", || async {
        sink.received().len() == 2
    })
    .await;
    mail_reply_becomes(smtp, "250 2.1.0 Sender OK").await;
    assert_eq!(
        back_pressure_line(&client, &cookie, "Normal").await,
        "Back pressure: Normal"
    );
    assert_eq!(
        back_pressure_gauge(&client).await,
        "hubgate_back_pressure 0"
    );
}

/// The back-pressure series as a scraper on loopback reads it from /metrics.
async fn back_pressure_gauge(client: &https::Client) -> String {
    let r = client.get("/metrics", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .find(|l| l.starts_with("hubgate_back_pressure "))
        .unwrap_or("hubgate_back_pressure missing")
        .to_string()
}

#[tokio::test]
async fn a_spool_disk_under_its_floor_refuses_new_mail_until_the_floor_is_lowered() {
    let gw = setup().await.start().await;
    let smtp = gw.smtp();
    let console = gw.console_addr();
    assert!(mail_reply(smtp).await.starts_with("250 2.1.0"));
    readyz_becomes(console, 200, "ready").await;

    // Bad values are refused and change nothing.
    let e = fails(
        &gw,
        "Set-TransportServer HUB1 -BackPressureDiskFreeSpaceLimit unlimited",
    )
    .await;
    assert!(e.contains("BackPressureDiskFreeSpaceLimit"), "{e}");
    let e = fails(
        &gw,
        "Set-TransportServer HUB1 -BackPressureQueueLengthLimit 0",
    )
    .await;
    assert!(e.contains("BackPressureQueueLengthLimit"), "{e}");

    // More than this disk has free.
    run(
        &gw,
        "Set-TransportServer HUB1 -BackPressureDiskFreeSpaceLimit 1000TB",
    )
    .await;
    mail_reply_becomes(smtp, "452 4.3.1 Insufficient system resources").await;
    let body = readyz_becomes(console, 503, "BackPressureDiskFreeSpaceLimit").await;
    assert!(body.contains("spool "), "{body}");
    assert!(!body.contains("PostgreSQL"), "{body}");
    let (client, cookie) = signed_in(&gw).await;
    let line = back_pressure_line(&client, &cookie, "High").await;
    assert!(
        line.contains("BackPressureDiskFreeSpaceLimit 1000 TB"),
        "{line}"
    );

    run(
        &gw,
        "Set-TransportServer HUB1 -BackPressureDiskFreeSpaceLimit 1MB",
    )
    .await;
    mail_reply_becomes(smtp, "250 2.1.0 Sender OK").await;
    readyz_becomes(console, 200, "ready").await;
    send_to(smtp, "sender@contoso.test", "after the floor");
    within(60, "the message reaches the mailbox", || async {
        mailbox(&gw.data_dir(), SENDER).len() == 1
    })
    .await;
}

/// Like `Setup::new`, on a database of the test's own cluster.
async fn setup_on(cluster: &ManagedCluster) -> Setup {
    cluster.ensure_database("hubgate").await.unwrap();
    Setup::on(cluster.url("hubgate"), gateway_ip(), SERVER, FQDN).await
}

/// What the senders saw.
#[derive(Default)]
struct Seen {
    /// Subjects that had their 250 after the message.
    accepted: Vec<String>,
    /// 4xx replies (to any command).
    deferred: Vec<String>,
    /// Anything else: a 5xx, a reply that never came, a connection refused.
    wrong: Vec<String>,
}

type Reader = BufReader<tokio::io::ReadHalf<tokio::net::TcpStream>>;

/// Well past any reply the gateway should take, well under the connector's timeouts.
const REPLY: Duration = Duration::from_secs(60);

async fn read_reply(r: &mut Reader) -> Result<String, String> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(REPLY, r.read_line(&mut line))
            .await
            .map_err(|_| format!("no reply within {REPLY:?} after {all:?}"))?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("closed after {all:?}"));
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return Ok(all);
        }
    }
}

/// One transaction, its outcome recorded in `seen`.
async fn send_one(smtp: SocketAddr, subject: &str, seen: &Mutex<Seen>) {
    let result: Result<Option<String>, String> = async {
        let stream = tokio::time::timeout(REPLY, tokio::net::TcpStream::connect(smtp))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let (r, mut w) = tokio::io::split(stream);
        let mut r = BufReader::new(r);
        read_reply(&mut r).await?;
        let steps = [
            "EHLO load.contoso.test\r\n".to_string(),
            format!("MAIL FROM:<{SENDER}>\r\n"),
            "RCPT TO:<load@sink.example>\r\n".to_string(),
            "DATA\r\n".to_string(),
            format!("From: {SENDER}\r\nSubject: {subject}\r\n\r\nunder load\r\n.\r\n"),
        ];
        for step in steps {
            w.write_all(step.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let got = read_reply(&mut r).await?;
            match got.as_bytes()[0] {
                b'2' | b'3' => {}
                b'4' => {
                    let _ = w.write_all(b"QUIT\r\n").await;
                    return Ok(Some(got));
                }
                _ => return Err(format!("{step:?} answered {got:?}")),
            }
        }
        let _ = w.write_all(b"QUIT\r\n").await;
        Ok(None)
    }
    .await;
    let mut seen = seen.lock().unwrap();
    match result {
        Ok(None) => seen.accepted.push(subject.to_string()),
        Ok(Some(r)) => seen.deferred.push(r),
        Err(e) => seen.wrong.push(e),
    }
}

fn counts(seen: &Mutex<Seen>) -> (usize, usize) {
    let s = seen.lock().unwrap();
    (s.accepted.len(), s.deferred.len())
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn remove_cluster(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// A gateway on a PostgreSQL cluster of the test's own (which the test stops and starts), open
/// to anonymous relay to `sink.example` through a smart host on `ip` (nothing listens yet).
async fn outage_setup(ip: &str) -> (std::path::PathBuf, ManagedCluster, Setup, SocketAddr) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("health-pgsql-{}", uuid::Uuid::new_v4().simple()));
    let cluster = ManagedCluster::start(&dir)
        .await
        .expect("start the test's own cluster");
    let s = setup_on(&cluster).await;
    let next_hop = addr(ip, peer_port());
    configure(
        &s,
        &[
            "Get-ReceiveConnector 'Default HUB1' | Add-ADPermission -User 'NT AUTHORITY\\ANONYMOUS LOGON' -ExtendedRights ms-Exch-SMTP-Accept-Any-Recipient",
            &format!(
                "New-SendConnector -Name Sink -AddressSpaces 'sink.example' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {}",
                next_hop.ip(),
                next_hop.port()
            ),
        ],
    )
    .await;
    (dir, cluster, s, next_hop)
}

#[tokio::test]
async fn losing_postgresql_defers_new_mail_and_loses_nothing_accepted() {
    let (dir, cluster, s, next_hop) = outage_setup("127.0.0.62").await;
    // The harness's pool would only hold connections the stop breaks.
    s.pool.close().await;
    let sink = Sink::start(next_hop);
    let gw = s.start().await;
    let smtp = gw.smtp();
    let console = gw.console_addr();
    readyz_becomes(console, 200, "ready").await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4)
        .map(|n| {
            let (seen, stop) = (seen.clone(), stop.clone());
            tokio::spawn(async move {
                for i in 0..10_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    send_one(smtp, &format!("load {n}-{i}"), &seen).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    wait_for("mail accepted before the outage", 60, || {
        counts(&seen).0 >= 8
    })
    .await;

    cluster.stop().await.expect("stop PostgreSQL");
    let body = readyz_becomes(console, 503, "PostgreSQL").await;
    assert!(body.starts_with("not ready\n"), "{body}");
    mail_reply_becomes(smtp, "451 4.3.2 System not accepting network messages").await;
    // Held down until the senders themselves have been refused at MAIL a few times.
    let refused_at_mail = |seen: &Mutex<Seen>| {
        let s = seen.lock().unwrap();
        s.deferred
            .iter()
            .filter(|r| r.starts_with("451 4.3.2 System not accepting network messages"))
            .count()
    };
    let before = refused_at_mail(&seen);
    wait_for(
        "senders refused with 451 4.3.2 during the outage",
        60,
        || refused_at_mail(&seen) >= before + 8,
    )
    .await;

    let cluster = ManagedCluster::start(&dir)
        .await
        .expect("start PostgreSQL again");
    readyz_becomes(console, 200, "ready").await;
    // The configuration is followed again (its LISTEN connection came back).
    let pool = PgPool::connect(&cluster.url("hubgate")).await.unwrap();
    hubgate::shell::Shell::new(pool.clone(), FQDN)
        .run_line("Set-ReceiveConnector 'Default HUB1' -Banner '220 back after the outage'")
        .await
        .unwrap();
    pool.close().await;
    let mut banner = String::new();
    for _ in 0..240 {
        let mut c = Raw::connect(smtp).await;
        banner = c.reply().await;
        c.cmd("QUIT").await;
        if banner.starts_with("220 back after the outage") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(banner.starts_with("220 back after the outage"), "{banner}");
    let accepted_after = counts(&seen).0;
    wait_for("mail accepted again after the outage", 90, || {
        counts(&seen).0 >= accepted_after + 8
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        tokio::time::timeout(Duration::from_secs(120), s)
            .await
            .expect("a sender hung")
            .unwrap();
    }

    let (accepted, deferred, wrong) = {
        let s = seen.lock().unwrap();
        (s.accepted.clone(), s.deferred.clone(), s.wrong.clone())
    };
    eprintln!(
        "{} accepted, {} deferred, {} neither",
        accepted.len(),
        deferred.len(),
        wrong.len()
    );
    assert!(wrong.is_empty(), "neither 4xx nor 250: {wrong:#?}");
    assert!(
        deferred.iter().all(|r| r.starts_with("45")),
        "{deferred:#?}"
    );
    let subject = |d: &str| {
        d.lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .map(|s| s.trim().to_string())
    };
    let mut missing = Vec::new();
    for _ in 0..1200 {
        let delivered: std::collections::HashSet<String> = sink
            .received()
            .iter()
            .filter_map(|r| subject(&r.data))
            .collect();
        missing = accepted
            .iter()
            .filter(|a| !delivered.contains(*a))
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        missing.is_empty(),
        "{} of {} accepted messages never reached the next hop: {missing:?}",
        missing.len(),
        accepted.len()
    );

    drop(gw);
    cluster.stop().await.unwrap();
    remove_cluster(&dir);
}

/// A delivery that ends while PostgreSQL is down is written once it is back: the delivered
/// message's rows go, so the next start does not send it a second time.
#[tokio::test]
async fn a_delivery_finished_during_an_outage_is_recorded_when_postgresql_returns() {
    let (dir, cluster, s, next_hop) = outage_setup("127.0.0.63").await;
    s.pool.close().await;
    // The next hop holds the DATA a while, so the delivery is still under way when PostgreSQL
    // stops, and ends during the outage.
    let opts = SinkOptions {
        delay: Some(6.0),
        ..SinkOptions::default()
    };
    let sink = Sink::with(next_hop, opts);
    let gw = s.start().await;
    let seen = Mutex::new(Seen::default());
    send_one(gw.smtp(), "delivered during the outage", &seen).await;
    assert_eq!(counts(&seen), (1, 0), "accepted before the outage");
    // Routed (the row says so) means the delivery is dispatched and needs no database.
    let pool = PgPool::connect(&cluster.url("hubgate")).await.unwrap();
    let mut routed = false;
    for _ in 0..600 {
        routed = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM message_recipient WHERE queue_id IS NOT NULL)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if routed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(routed, "the message was never routed");
    pool.close().await;
    cluster.stop().await.expect("stop PostgreSQL");
    wait_for("the next hop took the message", 60, || {
        sink.received().len() == 1
    })
    .await;
    // The outage goes on after the delivery, for longer than a few quick retries.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cluster = ManagedCluster::start(&dir)
        .await
        .expect("start PostgreSQL again");
    let pool = PgPool::connect(&cluster.url("hubgate")).await.unwrap();
    let mut left = -1i64;
    for _ in 0..300 {
        left = sqlx::query_scalar("SELECT count(*) FROM message")
            .fetch_one(&pool)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        left, 0,
        "the delivered message is still queued in PostgreSQL: the next start would send it again"
    );
    assert_eq!(sink.received().len(), 1);
    pool.close().await;
    drop(gw);
    cluster.stop().await.unwrap();
    remove_cluster(&dir);
}
