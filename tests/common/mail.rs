//! Mail-flow helpers shared by the delivery tests: configure through the shell, send with swaks,
//! wait, read local Maildirs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hubgate::shell::Shell;

use super::*;

/// The sender every test uses: a mailbox here, so NDRs and delay DSNs land in a Maildir.
pub const SENDER: &str = "sender@contoso.test";

pub async fn configure(setup: &Setup, lines: &[&str]) {
    let mut shell = Shell::new(setup.pool.clone(), &setup.fqdn);
    for l in lines {
        shell
            .run_line(l)
            .await
            .unwrap_or_else(|e| panic!("{l}: {e}"));
    }
}

/// The shell on a running gateway, with its data directory (for the log cmdlets).
pub fn shell(gw: &Gateway) -> Shell {
    Shell::new(gw.pool().clone(), FQDN).with_data_dir(gw.data_dir())
}

/// One shell line that must succeed; its output.
pub async fn run(gw: &Gateway, line: &str) -> String {
    shell(gw)
        .run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// One shell line that must fail; its error text.
pub async fn fails(gw: &Gateway, line: &str) -> String {
    match shell(gw).run_line(line).await {
        Ok(out) => panic!("{line} should fail, printed: {out}"),
        Err(e) => e.to_string(),
    }
}

/// A fresh gateway whose anonymous senders may relay (as on a partner-facing gateway), with a
/// mailbox for the test sender.
pub async fn setup() -> Setup {
    let s = Setup::new().await;
    configure(
        &s,
        &[
            "Get-ReceiveConnector 'Default HUB1' | Add-ADPermission -User 'NT AUTHORITY\\ANONYMOUS LOGON' -ExtendedRights ms-Exch-SMTP-Accept-Any-Recipient",
            "New-Mailbox -Name Sender -PrimarySmtpAddress sender@contoso.test",
        ],
    )
    .await;
    s
}

pub fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

/// Sends one message with swaks; panics unless it was accepted.
pub fn send(gw: &Gateway, to: &[&str], subject: &str) {
    let server = gw.smtp().to_string();
    let to = to.join(",");
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--from",
        SENDER,
        "--to",
        &to,
        "--header",
        &format!("Subject: {subject}"),
        "--body",
        "hello from the route tests",
    ]);
    assert!(ok, "swaks failed: {out}");
}

/// Sends one message from SENDER to `to` (one or more addresses, comma-separated) through the
/// listener at `smtp`; panics unless it was accepted.
pub fn send_to(smtp: SocketAddr, to: &str, subject: &str) {
    send_from(smtp, SENDER, to, subject);
}

/// Sends one message from `from` to `to` through the listener at `smtp`; panics unless it was
/// accepted.
pub fn send_from(smtp: SocketAddr, from: &str, to: &str, subject: &str) {
    let server = smtp.to_string();
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--from",
        from,
        "--to",
        to,
        "--header",
        &format!("Subject: {subject}"),
    ]);
    assert!(ok, "swaks failed: {out}");
}

/// Waits up to `secs` seconds for `f` (polled every 100 ms).
pub async fn within<F, Fut>(secs: u64, what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if !holds_within(secs, f).await {
        panic!("timed out after {secs} s waiting for: {what}");
    }
}

/// `within` for a check that needs no waiting of its own (a sink's mailbox, a child's state).
pub async fn within_now(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    within(secs, what, || std::future::ready(f())).await
}

/// Whether `f` holds within `secs` seconds (polled every 100 ms).
pub async fn holds_within<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 10 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A smart-host queue's id, status, release rate, and the recipients it still holds.
pub type SmartHostQueue = (i64, String, Option<i32>, i64);

/// The gateway's queue to a smart host (the tests' primary), once there is one.
pub async fn smart_host_queue(gw: &Gateway) -> Option<SmartHostQueue> {
    sqlx::query_as(
        "SELECT q.id, q.status, q.release_rate,
                (SELECT count(*) FROM message_recipient r
                  WHERE r.queue_id = q.id AND r.status NOT IN ('Delivered', 'Failed'))
           FROM delivery_queue q WHERE q.delivery_type = 'SmartHostConnectorDelivery'",
    )
    .fetch_optional(gw.pool())
    .await
    .unwrap()
}

/// Every message in a local mailbox's Maildir (new/), as text.
pub fn mailbox(data_dir: &Path, address: &str) -> Vec<String> {
    let dir: PathBuf = data_dir.join("mailboxes").join(address).join("new");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect()
}

/// One line through the binary, as an administrator types it: `hubgate shell -c '…'`.
pub async fn shell_c(gw: &Gateway, line: &str) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hubgate"));
    cmd.args(["shell", "-c", line])
        .env("DATABASE_URL", &gw.setup.db_url)
        .env("HUBGATE_DATA_DIR", gw.data_dir())
        .env("HUBGATE_SERVER_NAME", &gw.setup.fqdn)
        .env("HUBGATE_LOG", "warn")
        .stdin(std::process::Stdio::null());
    let line = line.to_string();
    let (status, out, err) = tokio::task::spawn_blocking(move || {
        run_to_exit(&mut cmd, &format!("hubgate shell -c {line:?} hung"))
    })
    .await
    .unwrap();
    assert!(status.success(), "{err}");
    out
}
