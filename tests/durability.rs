//! Nothing acknowledged is lost: SIGKILL while clients are sending.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Eight threads send numbered messages until the gateway disappears; each 250 is printed.
/// Every third message is larger than a body kept in the queue database, so both kinds of
/// body (a `message_body` row, a spool file) are acknowledged when the plug is pulled.
const SENDERS: &str = r#"
import smtplib, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
lock = threading.Lock()
def worker(t):
    for i in range(400):
        marker = "m-%d-%d" % (t, i)
        lines = 800 if i % 3 == 0 else 200
        body = "Subject: %s\r\n\r\n" % marker + ("line %s\r\n" % marker) * lines + "end-of-%s\r\n" % marker
        try:
            s = smtplib.SMTP(host, port, timeout=10)
            s.sendmail("load@example.org", ["administrator@contoso.test"], body.encode())
        except Exception:
            return
        with lock:
            print("OK " + marker, flush=True)
        try:
            s.quit()
        except Exception:
            return
threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
for th in threads: th.start()
for th in threads: th.join()
"#;

#[tokio::test]
async fn sigkill_while_sending_loses_no_acknowledged_message() {
    let mut gw = Setup::new().await.start().await;
    let mut senders = Command::new("python3")
        .arg("-c")
        .arg(SENDERS)
        .arg(gw.smtp().ip().to_string())
        .arg(gw.smtp().port().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = senders.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(m) = line.strip_prefix("OK ") {
                let _ = tx.send(m.to_string());
            }
        }
    });
    // Let a good number of messages through, then pull the plug mid-stream.
    let mut acked = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 150 && Instant::now() < deadline {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(100)) {
            acked.insert(m);
        }
    }
    gw.kill();
    let _ = senders.wait();
    while let Ok(m) = rx.try_recv() {
        acked.insert(m);
    }
    assert!(
        acked.len() >= 150,
        "only {} messages were acknowledged before the kill",
        acked.len()
    );

    // After the restart everything queued is delivered to the mailbox; every acknowledged
    // message must arrive there whole, and the spool must end empty (no orphan bodies).
    gw.spawn().await;
    let mut drained = false;
    for _ in 0..600 {
        if gw.message_count().await == 0 {
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(drained, "the queue did not drain after the restart");
    let maildir = gw
        .data_dir()
        .join("mailboxes/administrator@contoso.test/new");
    let mut delivered = HashSet::new();
    for entry in std::fs::read_dir(&maildir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let marker = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap()
            .to_string();
        assert!(
            text.replace("\r\n", "\n")
                .ends_with(&format!("end-of-{marker}\n")),
            "delivered copy of {marker} is incomplete"
        );
        delivered.insert(marker);
    }
    for m in &acked {
        assert!(
            delivered.contains(m),
            "acknowledged message {m} was lost across the kill"
        );
    }
    let spool = gw.data_dir().join("spool");
    // Bodies, that is: `spool/free/` keeps removed bodies' files for reuse, at most 64.
    let files = std::fs::read_dir(&spool)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count();
    assert_eq!(
        files, 0,
        "spool files left behind after every message was delivered"
    );
    let kept = std::fs::read_dir(spool.join("free")).unwrap().count();
    assert!(kept <= 64, "{kept} files kept for reuse");
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM message_body")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0, "bodies left in the queue database");
}
