//! With DATABASE_URL unset, `hubgate serve` runs its own PostgreSQL under the data directory.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn serve_without_database_url_runs_and_stops_a_private_cluster() {
    // The cluster runs as the postgres user, which must be able to reach the data directory.
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("private-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711)).unwrap();
    let ip = gateway_ip();
    let port = gateway_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("HUBGATE_DATA_DIR", &base)
        .env("HUBGATE_SERVER_NAME", FQDN)
        .env(
            "HUBGATE_DEFAULT_BINDINGS",
            format!("{ip}:{port},Client={ip}:{}", gateway_port()),
        )
        .env("HUBGATE_CONSOLE_BIND", format!("{ip}:{}", gateway_port()))
        .env("HUBGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut password_shown = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(Instant::now() < deadline, "hubgate did not become ready");
        let line = lines.next().expect("hubgate exited").unwrap();
        password_shown |= line.starts_with("Administrator password (shown once): ");
        if line.starts_with("hubgate ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(
        password_shown,
        "a generated Administrator password is printed on first start"
    );
    let (ok, out) = swaks(&[
        "--server",
        &ip.to_string(),
        "--port",
        &port.to_string(),
        "--from",
        "a@example.org",
        "--to",
        "administrator@contoso.test",
    ]);
    assert!(ok, "{out}");
    // The shell shares the gateway's private cluster and must leave it running for the gateway
    // (a regression: it used to stop the cluster on exit).
    let shell = Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .args([
            "shell",
            "-c",
            "New-AcceptedDomain -Name Fabrikam -DomainName fabrikam.test -DomainType ExternalRelay",
        ])
        .env_remove("DATABASE_URL")
        .env("HUBGATE_DATA_DIR", &base)
        .env("HUBGATE_SERVER_NAME", FQDN)
        .env("HUBGATE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        shell.status.success(),
        "{}",
        String::from_utf8_lossy(&shell.stderr)
    );
    let mut relayed = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let mut c = Raw::connect(SocketAddr::from((ip, port))).await;
        c.reply().await;
        c.cmd("EHLO client.example").await;
        c.cmd("MAIL FROM:<a@example.org>").await;
        if c.cmd("RCPT TO:<someone@fabrikam.test>").await == "250 2.1.5 Recipient OK\r\n" {
            relayed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        relayed,
        "the running gateway did not pick up the shell's accepted domain"
    );
    let pid_file = base.join("pgsql/data/postmaster.pid");
    assert!(
        pid_file.exists(),
        "the private cluster runs under the data directory"
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !pid_file.exists(),
        "the private cluster is stopped with hubgate"
    );
    let _ = std::fs::remove_dir_all(&base);
}
