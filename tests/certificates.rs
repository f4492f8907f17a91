//! Certificates: one store for STARTTLS and the console, chosen by the connector's FQDN, shown
//! and managed with Exchange's certificate cmdlets.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mail::*;
use common::*;

const SECOND: &str = "mail.fabrikam.test";

/// `openssl s_client -starttls smtp` against `addr` asking for `servername`, trusting `ca`:
/// (the subject line of the certificate served, whether it verified for `servername`).
fn starttls_subject(
    addr: std::net::SocketAddr,
    servername: &str,
    ca: &std::path::Path,
) -> (String, bool) {
    let mut child = Command::new("openssl")
        .args(["s_client", "-starttls", "smtp", "-connect"])
        .arg(addr.to_string())
        .args([
            "-servername",
            servername,
            "-verify_hostname",
            servername,
            "-CAfile",
        ])
        .arg(ca)
        .args(["-name", "client.example"])
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
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let subject = text
        .lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or_else(|| {
            panic!(
                "no certificate in {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .to_string();
    (subject, text.contains("Verify return code: 0 (ok)"))
}

fn write_pair(dir: &std::path::Path, stem: &str, cert: &str, key: &str) {
    // Key first, then the certificate, each replaced whole, as an administrator's script does.
    for (file, pem) in [(format!("{stem}.key"), key), (format!("{stem}.crt"), cert)] {
        let tmp = dir.join(format!(".{file}.new"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(&file)).unwrap();
    }
}

#[tokio::test]
async fn a_connector_with_a_second_fqdn_serves_the_certificate_for_that_name() {
    let setup = Setup::new().await;
    let port = setup.another_port();
    configure(
        &setup,
        &[&format!(
            "New-ReceiveConnector -Name Fabrikam -Bindings {}:{port} -RemoteIPRanges 127.0.0.0/8 -Fqdn {SECOND}",
            setup.ip
        )],
    )
    .await;
    let gw = setup.start().await;
    let second = std::net::SocketAddr::from((gw.setup.ip, port));
    let (ca, leaves) = private_ca(&[SECOND]);
    let ca_file = gw.data_dir().join("test-ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();

    // Dropped in while the gateway runs: picked up without a restart.
    write_pair(
        &gw.data_dir().join("certs"),
        "fabrikam",
        &leaves[0].0,
        &leaves[0].1,
    );
    let second_ca = ca_file.clone();
    eventually(
        "the Fabrikam connector to serve its own certificate",
        || {
            let ca = second_ca.clone();
            async move {
                let (subject, verified) =
                    tokio::task::spawn_blocking(move || starttls_subject(second, SECOND, &ca))
                        .await
                        .unwrap();
                subject.contains(SECOND) && verified
            }
        },
    )
    .await;

    // The Default connector keeps the server's own certificate, whatever name the client asks
    // for: the choice follows the connector's FQDN, as Exchange's does.
    let default = gw.smtp();
    let (subject, verified) =
        tokio::task::spawn_blocking(move || starttls_subject(default, SECOND, &ca_file))
            .await
            .unwrap();
    assert!(subject.contains(FQDN), "{subject}");
    assert!(
        !verified,
        "the server's self-signed certificate verified against the private CA"
    );
}
