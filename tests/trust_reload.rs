//! Trust without a restart: a partner's private CA dropped into `certs/trusted/` of a running
//! gateway validates a real Postfix next hop, and taking it out stops trusting it again; the
//! gateway's own STARTTLS certificate replaced on disk is served without a restart.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mail::*;
use common::*;

/// Debian's Postfix as a next hop: its own configuration directory, queue and data directory
/// under a temporary directory, smtpd on one 127.0.0.x address with STARTTLS and the given
/// certificate. Every message it accepts goes to its hold queue, where the test counts it.
struct Postfix {
    dir: tempfile::TempDir,
}

impl Postfix {
    fn start(addr: SocketAddr, cert_pem: &str, key_pem: &str) -> Postfix {
        // master(8) refuses to start unless it is root (the caller checked); it then runs its
        // daemons as `postfix`.
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for d in ["conf", "queue", "data"] {
            std::fs::create_dir(base.join(d)).unwrap();
        }
        // The postfix user must reach its queue; the configuration must be root's and not
        // writable by others, or Postfix refuses it.
        chmod(base, 0o755);
        chmod(&base.join("conf"), 0o755);
        let status = Command::new("chown")
            .arg("postfix")
            .arg(base.join("data"))
            .status()
            .unwrap();
        assert!(status.success(), "chown postfix on the data directory");
        std::fs::write(base.join("conf/cert.pem"), cert_pem).unwrap();
        std::fs::write(base.join("conf/key.pem"), key_pem).unwrap();
        chmod(&base.join("conf/key.pem"), 0o600);
        let b = base.display();
        std::fs::write(
            base.join("conf/main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {b}/queue
data_directory = {b}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.fabrikam.test
mydomain = fabrikam.test
mydestination =
relay_domains = fabrikam.test
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_tls_cert_file = {b}/conf/cert.pem
smtpd_tls_key_file = {b}/conf/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_recipient_restrictions = check_recipient_access static:HOLD
alias_maps =
alias_database =
maillog_file = {b}/maillog
maillog_file_prefixes = {b}
"
            ),
        )
        .unwrap();
        // Only what an smtpd with a queue needs; nothing is chrooted, nothing delivered.
        let services = "pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
";
        std::fs::write(
            base.join("conf/master.cf"),
            format!("{addr} inet n - n - - smtpd\n{services}"),
        )
        .unwrap();
        let pf = Postfix { dir };
        let out = pf.postfix("start");
        assert!(
            out.status.success(),
            "postfix start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            pf.log()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "Postfix is not listening on {addr}:\n{}",
                pf.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pf
    }

    fn postfix(&self, verb: &str) -> std::process::Output {
        Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path().join("conf"))
            .arg(verb)
            .output()
            .expect("postfix is installed (apt-get install postfix)")
    }

    /// Messages Postfix accepted (all of them are held).
    fn held(&self) -> usize {
        let hold = self.dir.path().join("queue/hold");
        std::fs::read_dir(hold).map(|d| d.count()).unwrap_or(0)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// How many handshakes Postfix saw the client abort because it did not know the CA.
    fn unknown_ca_alerts(&self) -> usize {
        self.log().matches("alert unknown ca").count()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.postfix("stop");
        // Wait for master to let go of its queue before the directory is removed.
        let pid = self.dir.path().join("queue/pid/master.pid");
        let deadline = Instant::now() + Duration::from_secs(15);
        while pid.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn trusted_dir(gw: &Gateway) -> PathBuf {
    gw.data_dir().join("certs").join("trusted")
}

async fn last_errors(gw: &Gateway) -> Vec<String> {
    sqlx::query_scalar::<_, Option<String>>("SELECT last_error FROM delivery_queue")
        .fetch_all(gw.pool())
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .collect()
}

#[tokio::test]
async fn a_partner_ca_dropped_into_a_running_gateway_validates_postfix_and_removing_it_stops() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: a real Postfix's master must be started as root");
        return;
    }
    let (ca, leaves) = private_ca(&["mx.fabrikam.test"]);
    let (cert, key) = &leaves[0];
    // A per-test address: nothing else in the suite uses it, so the fixed port cannot collide.
    let peer = Postfix::start(addr("127.0.0.211", 2625), cert, key);

    let s = setup().await;
    configure(
        &s,
        &[
            // The sending server validates the receiving server's certificate (seed 001).
            "New-SendConnector -Name Fabrikam -AddressSpaces fabrikam.test -DNSRoutingEnabled $false -SmartHosts 127.0.0.211 -Port 2625 -RequireTLS $true -TlsAuthLevel DomainValidation -TlsDomain mx.fabrikam.test",
            // Retry quickly, so each change shows at the next attempt.
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:01 -TransientFailureRetryCount 15 -OutboundConnectionFailureRetryInterval 00:00:01",
        ],
    )
    .await;
    let gw = s.start().await;

    // Before: the partner's CA is unknown, so the handshake fails and nothing is delivered.
    send(&gw, &["bob@fabrikam.test"], "before the CA");
    within(60, "delivery refused for an unknown CA", || async {
        last_errors(&gw)
            .await
            .iter()
            .any(|e| e.contains("UnknownIssuer"))
            && peer.unknown_ca_alerts() > 0
    })
    .await;
    assert_eq!(peer.held(), 0, "delivered without a trusted CA");

    // The administrator drops the partner's CA in; the gateway keeps running.
    let pid = gw.pid();
    std::fs::create_dir_all(trusted_dir(&gw)).unwrap();
    std::fs::write(trusted_dir(&gw).join("fabrikam-ca.pem"), &ca).unwrap();
    within(60, "delivered to Postfix over validated TLS", || async {
        peer.held() == 1 && gw.message_count().await == 0
    })
    .await;
    assert_eq!(gw.pid(), pid, "the gateway was restarted");
    let log = peer.log();
    assert!(
        log.contains("Anonymous TLS connection established from")
            || log.contains("TLS connection established from"),
        "{log}"
    );

    // Taking the CA out stops trusting it again, still without a restart.
    let alerts = peer.unknown_ca_alerts();
    std::fs::remove_file(trusted_dir(&gw).join("fabrikam-ca.pem")).unwrap();
    // The gateway's documented bound: a connection that starts this long after a change to the
    // directory uses the new contents (sooner ones may still use the previous snapshot).
    tokio::time::sleep(hubgate::smtp::client::trust::RESCAN_INTERVAL + Duration::from_secs(1))
        .await;
    send(&gw, &["carol@fabrikam.test"], "after the CA is gone");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let errors = last_errors(&gw).await;
        if peer.unknown_ca_alerts() > alerts && errors.iter().any(|e| e.contains("UnknownIssuer")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not refused again within 60 s of removing the CA: held {}, queue errors {errors:?}, messages {}\n{}",
            peer.held(),
            gw.message_count().await,
            peer.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(peer.held(), 1, "delivered after the CA was removed");
    assert_eq!(gw.message_count().await, 1);
}

const STARTTLS_VERIFY: &str = r#"
import smtplib, ssl, sys
host, port, cafile, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = smtplib.SMTP(host, port, local_hostname="client.example", timeout=30)
# The certificate names the gateway's FQDN, which only this test knows is the loopback address.
s._host = name
s.ehlo()
try:
    s.starttls(context=ssl.create_default_context(cafile=cafile))
except ssl.SSLCertVerificationError as e:
    print("UNVERIFIED", e.verify_message)
    sys.exit(0)
s.ehlo()
s.quit()
print("VERIFIED")
"#;

#[tokio::test]
async fn a_new_starttls_certificate_is_served_without_a_restart() {
    let (ca, leaves) = private_ca(&[FQDN]);
    let (cert, key) = &leaves[0];
    let s = Setup::new().await;
    let gw = s.start().await;
    let certs = tempfile::tempdir().unwrap();
    let ca_file = certs.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let host = gw.smtp().ip().to_string();
    let port = gw.smtp().port().to_string();
    let ca_arg = ca_file.to_string_lossy().into_owned();
    let client = || python(STARTTLS_VERIFY, &[&host, &port, &ca_arg, FQDN]);

    // The self-signed certificate of the first start does not chain to the new CA.
    let (ok, out) = client();
    assert!(ok && out.contains("UNVERIFIED"), "{out}");

    // The administrator installs a CA-signed pair in place of the generated one.
    let dir = gw.data_dir().join("certs");
    let replace = |name: String, pem: &str| {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    };
    replace(format!("{FQDN}.key"), key);
    replace(format!("{FQDN}.crt"), cert);
    let pid = gw.pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out) = client();
        assert!(ok, "{out}");
        if out.contains("VERIFIED") && !out.contains("UNVERIFIED") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 60 s: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(gw.pid(), pid, "the gateway was restarted");
}
