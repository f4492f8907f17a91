//! Graceful drain: SIGTERM closes the listeners, lets sessions finish their transaction and
//! deliveries their message within HUBGATE_DRAIN_TIMEOUT, then `421 4.3.2 Service shutting
//! down`; the queue's last outcomes are written before the exit; a second SIGTERM exits at once.
//! Nothing that got its 250 is lost on any path.
//!
//! Real `hubgate serve`, real PostgreSQL, real clients (raw sockets, python smtplib threads,
//! swaks) and a real aiosmtpd next hop.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::mail::*;
use common::pair::{final_subjects as delivered, protocol_log, retry_now};
use common::peers::{Sink, SinkOptions};
use common::*;

/// Where the tests relay to, through a send connector whose smart host is the sink.
const REMOTE: &str = "someone@fabrikam.example";

/// A relaying gateway's configuration (not started): a send connector for fabrikam.example to
/// `next_hop`, quick retries, and `extra` lines.
async fn relay(next_hop: std::net::SocketAddr, extra: &[&str]) -> Setup {
    let s = setup().await;
    let mut lines = vec![
        format!(
            "New-SendConnector -Name Fabrikam -AddressSpaces 'fabrikam.example' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {} -ProtocolLoggingLevel Verbose",
            next_hop.ip(),
            next_hop.port()
        ),
        "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01 -MessageRetryInterval 00:00:01".into(),
    ];
    lines.extend(extra.iter().map(|l| l.to_string()));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    configure(&s, &lines).await;
    s
}

/// `hubgate serve` with a drain bound of `bound` seconds, its stderr kept for the checks.
struct Node {
    child: Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Node {
    async fn start(s: &Setup, bound: u64) -> Node {
        let mut child = serve_command(s, s.data_dir.path())
            .env("HUBGATE_DRAIN_TIMEOUT", bound.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hubgate");
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        wait_ready(&mut child).await;
        Node {
            child,
            stderr: Some(stderr),
        }
    }

    fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (at most `limit`) for the exit: its status and how long it took.
    async fn exit_within(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("hubgate did not exit within {limit:?}");
    }

    /// What the process wrote to stderr; call after the exit.
    fn stderr(&mut self) -> String {
        self.stderr.take().unwrap().join().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A session that has given RCPT and waits inside its transaction.
async fn in_transaction(addr: std::net::SocketAddr, to: &str) -> Raw {
    let mut c = Raw::connect(addr).await;
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO client.example").await.starts_with("250"));
    let r = c.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
    assert!(r.starts_with("250"), "{r}");
    let r = c.cmd(&format!("RCPT TO:<{to}>")).await;
    assert!(r.starts_with("250"), "{r}");
    c
}

/// A session in DATA with part of its message sent.
async fn mid_data(addr: std::net::SocketAddr, to: &str, subject: &str) -> Raw {
    let mut c = in_transaction(addr, to).await;
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(format!("Subject: {subject}\r\n\r\nthe first part\r\n").as_bytes())
        .await;
    c
}

/// A session between transactions (after EHLO).
async fn idle(addr: std::net::SocketAddr) -> Raw {
    let mut c = Raw::connect(addr).await;
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO client.example").await.starts_with("250"));
    c
}

const SHUTTING_DOWN: &str = "421 4.3.2 Service not available";

/// Senders on threads, each sending messages (several per connection) until the gateway stops
/// listening. One line per message: `OK subject`, `TEMP subject code stage`, `GONE subject
/// stage` (the connection ended without a reply) or `PERM subject code stage`.
const LOAD: &str = r#"
import smtplib, socket, sys, threading, time
host, port, threads, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
lock = threading.Lock()
def say(*words):
    with lock:
        print(" ".join(str(w) for w in words), flush=True)
def check(stage, reply):
    code, text = reply
    if code >= 400:
        raise smtplib.SMTPResponseException(code, stage.encode())
def worker(t):
    n = 0
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            s = smtplib.SMTP(host, port, timeout=60)
        except (ConnectionRefusedError, smtplib.SMTPConnectError, OSError):
            return
        stage, subject = "ehlo", "%s-%d-none" % (prefix, t)
        try:
            check("ehlo", s.ehlo("load.example"))
            for _ in range(5):
                n += 1
                subject = "%s-%d-%d" % (prefix, t, n)
                stage = "mail"
                check(stage, s.mail("sender@contoso.test"))
                stage = "rcpt"
                check(stage, s.rcpt("someone@fabrikam.example"))
                stage = "data"
                body = "Subject: %s\r\n\r\n%s" % (subject, ("x" * 70 + "\r\n") * 40)
                check(stage, s.data(body.encode()))
                say("OK", subject)
            stage = "quit"
            s.quit()
        except smtplib.SMTPResponseException as e:
            kind = "TEMP" if 400 <= e.smtp_code < 500 else "PERM"
            say(kind, subject, e.smtp_code, stage)
            s.close()
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            say("GONE", subject, stage)
            s.close()
ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
for x in ts: x.start()
for x in ts: x.join()
say("DONE")
"#;

/// Concurrent senders, one session mid-DATA, SIGTERM under that load: the process exits within
/// the bound, every message that got 250 is delivered exactly once after a restart (the drain
/// wrote every outcome, so nothing is sent twice), the mid-DATA session got its 250 and then
/// 421, no client was left without a reply inside a transaction, and the queue writer did not
/// retry on a closed pool.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_loses_nothing_and_exits_within_the_bound() {
    let sink = Sink::start(addr("127.0.0.1", peer_port()));
    let s = relay(sink.addr, &[]).await;
    const BOUND: u64 = 20;
    let mut node = Node::start(&s, BOUND).await;

    let mut load = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(LOAD)
        .args([&s.ip.to_string(), &s.smtp_port.to_string(), "6", "load"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let out = load.stdout.take().unwrap();
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let lines = {
        let said = said.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                said.lock().unwrap().push(l);
            }
        })
    };
    let mut c = mid_data(s.smtp(), REMOTE, "middata").await;
    let first = Instant::now() + Duration::from_secs(90);
    while sink.received().len() < 40 {
        if Instant::now() > first {
            let queues = hubgate::shell::Shell::new(s.pool.clone(), FQDN)
                .run_line("Get-Queue | Format-List")
                .await;
            let said = said.lock().unwrap();
            panic!(
                "the load's first deliveries: {} delivered; the senders said {:?} (of {}); queues {queues:?}; send log {}",
                sink.received().len(),
                &said[..said.len().min(20)],
                said.len(),
                protocol_log(s.data_dir.path(), "SmtpSend")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    node.signal(libc::SIGTERM);
    let stopped = Instant::now();
    // The session in DATA may finish its message; the next thing it hears is the 421.
    c.send(b"the rest\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("250"), "the mid-DATA message: {r}");
    let r = c.reply().await;
    assert!(r.starts_with(SHUTTING_DOWN), "after the transaction: {r}");

    let (status, _) = node.exit_within(Duration::from_secs(BOUND + 15)).await;
    let took = stopped.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(BOUND + 15), "took {took:?}");
    let stderr = node.stderr();
    assert!(
        !stderr.contains("writing queue state") && !stderr.contains("queue state not written"),
        "the queue writer failed at the stop:\n{stderr}"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    while load.try_wait().unwrap().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = load.kill();
    let _ = load.wait();
    lines.join().unwrap();
    let lines = said.lock().unwrap().clone();
    assert_eq!(lines.last().map(String::as_str), Some("DONE"), "{lines:?}");
    let mut accepted: Vec<String> = vec!["middata".into()];
    for l in &lines[..lines.len() - 1] {
        let w: Vec<&str> = l.split(' ').collect();
        match w[0] {
            "OK" => accepted.push(w[1].to_string()),
            "TEMP" => {}
            // Between transactions a client may find its connection closed under the 421 it has
            // not read yet (a reset drops what it had not read): nothing of a message was given.
            "GONE" if matches!(w[2], "ehlo" | "mail" | "quit") => {}
            _ => panic!(
                "a sender was refused for good or lost its reply mid-transaction: {l}\n{lines:?}"
            ),
        }
    }
    assert!(accepted.len() > 40, "{lines:?}");
    let kinds = |k: &str| lines.iter().filter(|l| l.starts_with(k)).count();
    eprintln!(
        "under load at SIGTERM: {} accepted, {} told 4xx, {} closed between transactions",
        accepted.len(),
        kinds("TEMP"),
        kinds("GONE")
    );

    let gw = s.start().await;
    let wanted: HashSet<String> = accepted.iter().cloned().collect();
    within_now(90, "every accepted message delivered", || {
        let got: HashSet<String> = delivered(&sink).into_iter().collect();
        wanted.is_subset(&got)
    })
    .await;
    eventually("the queue empty", || async {
        gw.message_count().await == 0
    })
    .await;
    let got = delivered(&sink);
    let mut distinct = got.clone();
    distinct.dedup();
    assert_eq!(
        got.len(),
        distinct.len(),
        "a message was delivered twice: {got:?}"
    );
}

/// A session idle between transactions is told 421 when the drain starts; sessions inside a
/// transaction (after RCPT, and in the middle of DATA) are told 421 at the bound, and the process
/// exits then, keeping nothing of the cut message.
#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_past_the_bound_is_cut_with_421() {
    let s = setup().await;
    const BOUND: u64 = 4;
    let mut node = Node::start(&s, BOUND).await;
    let mut between = idle(s.smtp()).await;
    let mut rcpt = in_transaction(s.smtp(), SENDER).await;
    let mut data = mid_data(s.smtp(), SENDER, "cut").await;

    node.signal(libc::SIGTERM);
    let stopped = Instant::now();
    let r = between.reply().await;
    assert!(r.starts_with(SHUTTING_DOWN), "between transactions: {r}");
    let early = stopped.elapsed();
    assert!(node.running(), "the drain waits for the open transactions");

    let r = rcpt.reply().await;
    assert!(r.starts_with(SHUTTING_DOWN), "after RCPT: {r}");
    let cut = stopped.elapsed();
    let r = data.reply().await;
    assert!(r.starts_with(SHUTTING_DOWN), "in DATA: {r}");
    assert!(rcpt.closed().await && data.closed().await);
    assert!(
        early < cut && cut >= Duration::from_secs(BOUND - 1),
        "told 421 between transactions after {early:?}, inside them after {cut:?}"
    );

    let (status, _) = node.exit_within(Duration::from_secs(BOUND + 15)).await;
    assert!(status.success(), "exit status {status:?}");
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM message")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "a cut message was kept");
}

/// A second SIGTERM during the drain ends the process at once (status 1); a message accepted
/// before, still queued for a next hop that is down, is delivered after the restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_exits_at_once() {
    let port = peer_port();
    let mut sink = Sink::down(addr("127.0.0.1", port), SinkOptions::default());
    let s = relay(
        sink.addr,
        &["Set-ReceiveConnector 'Default HUB1' -MaxAcknowledgementDelay 00:00:00"],
    )
    .await;
    let mut node = Node::start(&s, 120).await;
    send_to(s.smtp(), REMOTE, "queued");
    let mut open = in_transaction(s.smtp(), REMOTE).await;
    let mut between = idle(s.smtp()).await;

    node.signal(libc::SIGTERM);
    let r = between.reply().await;
    assert!(r.starts_with(SHUTTING_DOWN), "{r}");
    assert!(node.running(), "the drain waits for the open transaction");
    node.signal(libc::SIGTERM);
    let (status, took) = node.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        open.closed().await,
        "the open session ends with the process"
    );

    sink.restart();
    let gw = s.start().await;
    retry_now(&gw).await;
    within_now(60, "the queued message delivered", || {
        delivered(&sink) == vec!["queued".to_string()]
    })
    .await;
}

/// A delivery under way at SIGTERM finishes before the process exits, and its outcome is
/// written: the sink has the message by the exit, the queue no longer holds it, and a restart
/// does not send it again.
#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_under_way_finishes_and_is_not_redone() {
    let sink = Sink::with(
        addr("127.0.0.1", peer_port()),
        SinkOptions {
            delay: Some(3.0),
            ..Default::default()
        },
    );
    let s = relay(
        sink.addr,
        &["Set-ReceiveConnector 'Default HUB1' -MaxAcknowledgementDelay 00:00:00"],
    )
    .await;
    let mut node = Node::start(&s, 30).await;
    send_to(s.smtp(), REMOTE, "under way");
    let dir = s.data_dir.path().to_path_buf();
    // The next hop has the whole message and takes its time to answer.
    within_now(60, "the delivery's DATA sent", || {
        protocol_log(&dir, "SmtpSend").contains("354")
    })
    .await;

    node.signal(libc::SIGTERM);
    let (status, _) = node.exit_within(Duration::from_secs(45)).await;
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(delivered(&sink), vec!["under way".to_string()]);
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM message")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "the delivered message's outcome was not written");

    let gw = s.start().await;
    // A second copy would be sent right after the load; the queue stays empty instead.
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM message")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(delivered(&sink), vec!["under way".to_string()]);
}

/// A session holding back its 250 for delivery (MaxAcknowledgementDelay) while the next hop is
/// down gets the 250 as soon as the drain starts, not after the delay, and then the 421.
#[tokio::test(flavor = "multi_thread")]
async fn a_held_acknowledgement_is_given_at_the_stop() {
    let sink = Sink::down(addr("127.0.0.1", peer_port()), SinkOptions::default());
    let s = relay(
        sink.addr,
        &["Set-ReceiveConnector 'Default HUB1' -MaxAcknowledgementDelay 00:00:30"],
    )
    .await;
    let mut node = Node::start(&s, 20).await;
    let mut c = mid_data(s.smtp(), REMOTE, "held").await;
    c.send(b".\r\n").await;
    // Committed, and its first attempt failed: the session now waits for a delivery that
    // cannot happen before the delay.
    eventually("the held message waiting in Retry", || async {
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM message_recipient WHERE status = 'Retry'")
                .fetch_one(&s.pool)
                .await
                .unwrap();
        n == 1
    })
    .await;

    node.signal(libc::SIGTERM);
    let stopped = Instant::now();
    let r = c.reply().await;
    assert!(r.starts_with("250"), "{r}");
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "the 250 came {:?} after the SIGTERM",
        stopped.elapsed()
    );
    let r = c.reply().await;
    assert!(r.starts_with(SHUTTING_DOWN), "{r}");
    let (status, _) = node.exit_within(Duration::from_secs(35)).await;
    assert!(status.success(), "exit status {status:?}");
    drop(sink);
}

/// A drain bound out of range is refused with the setting's name before anything starts.
#[tokio::test]
async fn a_bad_drain_bound_is_refused() {
    let s = setup().await;
    for bad in ["5000", "-1", "soon"] {
        let (status, _, err) = run_to_exit(
            serve_command(&s, s.data_dir.path()).env("HUBGATE_DRAIN_TIMEOUT", bad),
            "hubgate with a bad drain bound did not exit",
        );
        assert!(!status.success(), "{bad}: {status:?}");
        assert!(err.contains("drain-timeout"), "{bad}: {err}");
    }
    assert!(
        std::fs::read_dir(s.data_dir.path())
            .unwrap()
            .next()
            .is_none(),
        "a refused start changed the data directory"
    );
}
