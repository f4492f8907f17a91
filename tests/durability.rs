//! Nothing acknowledged is lost: SIGKILL while clients are sending.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Eight threads send numbered messages until the gateway disappears; each 250 is printed.
const SENDERS: &str = r#"
import smtplib, sys, threading
port = int(sys.argv[1])
lock = threading.Lock()
def worker(t):
    for i in range(400):
        marker = "m-%d-%d" % (t, i)
        body = "Subject: %s\r\n\r\n" % marker + ("line %s\r\n" % marker) * 200 + "end-of-%s\r\n" % marker
        try:
            s = smtplib.SMTP("127.0.0.1", port, timeout=10)
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
        .arg(gw.setup.smtp_port.to_string())
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

    gw.spawn().await;
    let rows: Vec<(uuid::Uuid, Option<String>)> = sqlx::query_as("SELECT id, subject FROM message")
        .fetch_all(gw.pool())
        .await
        .unwrap();
    let stored: HashSet<String> = rows.iter().filter_map(|(_, s)| s.clone()).collect();
    for m in &acked {
        assert!(
            stored.contains(m),
            "acknowledged message {m} is missing after the restart"
        );
    }
    // Every row has its whole body, and no body is left without a row.
    let spool = gw.data_dir().join("spool");
    for (id, subject) in &rows {
        let body = std::fs::read_to_string(spool.join(format!("{id}.eml"))).unwrap();
        let marker = subject.clone().unwrap();
        assert!(
            body.ends_with(&format!("end-of-{marker}\r\n")),
            "body of {marker} is incomplete"
        );
    }
    let files = std::fs::read_dir(&spool).unwrap().count();
    assert_eq!(files, rows.len(), "spool files without rows after recovery");
}
