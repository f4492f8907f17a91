//! `openssl s_client`, the TLS client a partner's admin would check a gateway with.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Connects to `addr` asking for `servername`, verifying against `ca` for that name, with
/// `extra` options (`-starttls smtp`); bounded to 60 s.
pub fn s_client(extra: &[&str], addr: std::net::SocketAddr, servername: &str, ca: &Path) -> Output {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .args(extra)
        .arg("-connect")
        .arg(addr.to_string())
        .args([
            "-servername",
            servername,
            "-verify_hostname",
            servername,
            "-CAfile",
        ])
        .arg(ca)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("openssl s_client hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Whether s_client's output says the chain verified.
pub fn verified(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stdout).contains("Verify return code: 0 (ok)")
}
