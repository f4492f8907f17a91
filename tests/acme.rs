//! ACME against a real local CA: Debian's pebble, with pebble-challtestsrv answering DNS on
//! loopback. hubgate obtains a certificate by TLS-ALPN-01 on its console's listener, serves it on
//! STARTTLS and the console, renews it without a restart, and keeps it when a renewal fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::mail::*;
use common::*;

/// Short, so that renewal (at two thirds) comes within the test.
const VALIDITY_SECS: u64 = 36;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is not installed: the ACME test needs Debian's pebble package (apt-get install pebble; .ci/run installs it)"
    );
}

/// Pebble and its DNS stand-in, pointing every name at `gateway_ip`, validating on `tls_port`.
struct Pebble {
    dir: tempfile::TempDir,
    directory: String,
    management: u16,
    /// The CA of pebble's own HTTPS listener, for hubgate's ACME client.
    listener_ca: String,
    pebble: Option<Killed>,
    _dns: Killed,
}

impl Pebble {
    async fn start(gateway_ip: std::net::Ipv4Addr, tls_port: u16) -> Pebble {
        require("pebble");
        require("pebble-challtestsrv");
        let dir = tempfile::tempdir().unwrap();
        let (ca, leaves) = private_ca(&["127.0.0.1"]);
        std::fs::write(dir.path().join("cert.pem"), &leaves[0].0).unwrap();
        std::fs::write(dir.path().join("key.pem"), &leaves[0].1).unwrap();
        let (listen, management, dns, dns_management, http) = (
            peer_port(),
            peer_port(),
            peer_port(),
            peer_port(),
            peer_port(),
        );
        let config = format!(
            r#"{{"pebble": {{
  "listenAddress": "127.0.0.1:{listen}",
  "managementListenAddress": "127.0.0.1:{management}",
  "certificate": "{dir}/cert.pem",
  "privateKey": "{dir}/key.pem",
  "httpPort": {http},
  "tlsPort": {tls_port},
  "ocspResponderURL": "",
  "externalAccountBindingRequired": false,
  "certificateValidityPeriod": {VALIDITY_SECS}
}}}}"#,
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("pebble.json"), config).unwrap();
        let dns_child = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", &gateway_ip.to_string(), "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv");
        let dns_child = Killed(dns_child);
        let mut p = Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            listener_ca: ca,
            pebble: None,
            _dns: dns_child,
            dir,
        };
        let child = Command::new("pebble")
            .args(["-config"])
            .arg(p.dir.path().join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            // Every order is validated again, so each renewal answers TLS-ALPN-01 too.
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble");
        p.pebble = Some(Killed(child));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], listen));
        eventually("pebble to listen", || async move {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
        p
    }

    /// Pebble's issuing root (made afresh at each start), PEM.
    fn root(&self) -> PathBuf {
        let ca = self.dir.path().join("listener-ca.pem");
        std::fs::write(&ca, &self.listener_ca).unwrap();
        let root = self.dir.path().join("root.pem");
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "--cacert"])
            .arg(&ca)
            .arg(format!("https://127.0.0.1:{}/roots/0", self.management))
            .arg("-o")
            .arg(&root)
            .output()
            .expect("curl is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        root
    }

    fn stop(&mut self) {
        self.pebble.take();
    }
}

/// The leaf certificate (PEM) a TLS client is given at `addr`, with `extra` s_client options
/// (`-starttls smtp`), and whether it verified against `root` for the gateway's FQDN.
fn served(extra: &[&str], addr: std::net::SocketAddr, root: &Path) -> (String, bool) {
    let out = common::openssl::s_client(extra, addr, FQDN, root);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let leaf = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|r| r.split("-----END CERTIFICATE-----").next())
        .unwrap_or_default()
        .to_string();
    (leaf, common::openssl::verified(&out))
}

async fn served_async(
    extra: &'static [&'static str],
    addr: std::net::SocketAddr,
    root: PathBuf,
) -> (String, bool) {
    tokio::task::spawn_blocking(move || served(extra, addr, &root))
        .await
        .unwrap()
}

const STARTTLS: &[&str] = &["-starttls", "smtp", "-name", "client.example"];

/// Polls `f` until it holds, for up to `secs` (renewals take their validity's two thirds).
async fn until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    for _ in 0..(secs * 2) {
        if f().await {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

#[tokio::test]
async fn a_certificate_from_a_real_acme_ca_is_served_renewed_and_kept_when_renewal_fails() {
    let setup = Setup::new().await;
    let mut pebble = Pebble::start(setup.ip, setup.console_port).await;
    let gw = setup.start().await;
    // hubgate's ACME client trusts what outbound TLS trusts: pebble's listener CA goes there.
    let trusted = gw.data_dir().join("certs/trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::write(trusted.join("pebble-listener.pem"), &pebble.listener_ca).unwrap();
    let root = pebble.root();
    let (self_signed, _) = served_async(STARTTLS, gw.smtp(), root.clone()).await;

    // Turned on while the gateway runs.
    run(
        &gw,
        &format!(
            "Set-AcmeConfig -Enabled $true -DirectoryUrl {} -Contact postmaster@contoso.test",
            pebble.directory
        ),
    )
    .await;
    let out = run(&gw, "Get-AcmeConfig").await;
    assert_eq!(shown(&out, "Enabled"), "True", "{out}");
    assert_eq!(shown(&out, "DirectoryUrl"), pebble.directory, "{out}");

    // Issued, and served (verified against pebble's root) on STARTTLS and on the console.
    let (smtp, console) = (gw.smtp(), gw.console_addr());
    let r = root.clone();
    until(90, "STARTTLS to serve pebble's certificate", || {
        let r = r.clone();
        async move { served_async(STARTTLS, smtp, r).await.1 }
    })
    .await;
    let (first, _) = served_async(STARTTLS, smtp, root.clone()).await;
    assert_ne!(first, self_signed);
    let (on_console, verified) = served_async(&[], console, root.clone()).await;
    assert!(verified, "the console does not serve the ACME certificate");
    assert_eq!(on_console, first);

    let out = run(
        &gw,
        &format!("Get-ExchangeCertificate -DomainName {FQDN} | fl"),
    )
    .await;
    assert!(out.contains("Issuer") && out.contains("Pebble"), "{out}");
    let certs = gw.data_dir().join("certs");
    for f in [format!("acme-{FQDN}.key"), format!("acme-{FQDN}.crt")] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(certs.join(&f)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let accounts: Vec<_> = std::fs::read_dir(gw.data_dir().join("acme"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("account-"))
        .collect();
    assert_eq!(accounts.len(), 1);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&accounts[0].metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // Renewed before it expires, without a restart.
    let pid = gw.pid();
    let (r, f) = (root.clone(), first.clone());
    until(
        VALIDITY_SECS * 3,
        "a renewed certificate on STARTTLS",
        || {
            let (r, f) = (r.clone(), f.clone());
            async move {
                let (now, ok) = served_async(STARTTLS, smtp, r).await;
                ok && now != f
            }
        },
    )
    .await;
    assert_eq!(gw.pid(), pid);
    let (renewed, _) = served_async(STARTTLS, smtp, root.clone()).await;

    // The CA goes away: the next renewal fails, is reported, and the renewed certificate stays.
    pebble.stop();
    let g = &gw;
    until(
        VALIDITY_SECS * 3,
        "the failed renewal to be reported",
        || async move {
            let out = run(g, "Get-AcmeConfig").await;
            !shown(&out, "LastError").is_empty()
        },
    )
    .await;
    let out = run(&gw, "Get-AcmeConfig").await;
    assert!(!shown(&out, "LastErrorTime").is_empty(), "{out}");
    let (still, _) = served_async(STARTTLS, smtp, root.clone()).await;
    assert_eq!(
        still, renewed,
        "a failed renewal changed the certificate served"
    );
    let (on_console, _) = served_async(&[], console, root).await;
    assert_eq!(on_console, renewed);
}

#[tokio::test]
async fn set_acme_config_refuses_bad_values_and_changes_nothing() {
    let gw = Setup::new().await.start().await;
    for (line, says) in [
        (
            "Set-AcmeConfig -DirectoryUrl http://ca.example/dir",
            "not an https:// URL",
        ),
        (
            "Set-AcmeConfig -Contact 'not an address'",
            "not an e-mail address",
        ),
        ("Set-AcmeConfig -Domains 'bad name!'", "not a host name"),
    ] {
        let err = fails(&gw, line).await;
        assert!(err.contains(says), "{line}: {err}");
    }
    let out = run(&gw, "Get-AcmeConfig").await;
    assert_eq!(shown(&out, "Enabled"), "False", "{out}");
    assert_eq!(
        shown(&out, "DirectoryUrl"),
        "https://acme-v02.api.letsencrypt.org/directory"
    );
    assert!(!gw.data_dir().join("acme/config").exists());
}
