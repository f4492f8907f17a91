//! Which servers outbound TLS trusts, and the two rustls client configurations: a validating one
//! (RequireTLS with certificate and domain validation) and one that accepts any certificate
//! (Exchange's opportunistic TLS, where encryption without authentication beats plain text).
//!
//! Reads administrator-supplied PEM files from `<data_dir>/certs/trusted/`; a bad file or
//! certificate is logged and skipped, never fatal, so one typo cannot stop all outbound mail.
//! The directory is watched while the gateway runs (see `TrustStore`): a partner's CA dropped in,
//! replaced or removed takes effect without a restart.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::tls::FileStamp;

/// Bounds the directory scan; nobody pins this many private CAs.
const MAX_TRUSTED_FILES: usize = 1000;

/// How often the trusted directory is looked at again. Stat-ing a handful of files this often
/// costs nothing, and an administrator who just dropped a CA in waits only this long.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(2);

/// The roots for validated TLS: the system's trust store (read once; it changes with OS updates
/// that restart services anyway) plus `<data_dir>/certs/trusted/`, re-read whenever a file there
/// is added, changed or removed.
pub struct TrustStore {
    dir: PathBuf,
    system: RootCertStore,
    rescan: Duration,
    state: Mutex<Snapshot>,
}

struct Snapshot {
    roots: Arc<RootCertStore>,
    seen: Vec<FileStamp>,
    /// None forces the next `current()` to look at the directory.
    checked: Option<Instant>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl TrustStore {
    /// Reads the system store and `<data_dir>/certs/trusted/` now.
    pub fn load(data_dir: &Path) -> TrustStore {
        TrustStore::with_rescan(data_dir, RESCAN_INTERVAL)
    }

    pub fn with_rescan(data_dir: &Path, rescan: Duration) -> TrustStore {
        let system = system_roots();
        let dir = data_dir.join("certs").join("trusted");
        let seen = stamps(&dir);
        let roots = Arc::new(build(&system, &dir));
        TrustStore {
            dir,
            system,
            rescan,
            state: Mutex::new(Snapshot {
                roots,
                seen,
                checked: Some(Instant::now()),
            }),
        }
    }

    /// The roots as the directory holds them now (at most `rescan` old). A connection takes one
    /// snapshot for its whole life, so a change never affects a handshake in progress.
    pub fn current(&self) -> Arc<RootCertStore> {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.checked.is_some_and(|t| t.elapsed() < self.rescan) {
                return s.roots.clone();
            }
            // Claim this scan so that concurrent deliveries keep using the snapshot instead of
            // all stat-ing the directory at once.
            s.checked = Some(Instant::now());
        }
        let now = stamps(&self.dir);
        {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.seen == now {
                return s.roots.clone();
            }
        }
        // Built outside the lock: reading and parsing files must not stall other deliveries.
        let roots = Arc::new(build(&self.system, &self.dir));
        tracing::info!(
            "{}: trusted certificates changed; {} roots now trusted",
            self.dir.display(),
            roots.len()
        );
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.roots = roots.clone();
        s.seen = now;
        roots
    }
}

/// The system's trust store plus every certificate in `<data_dir>/certs/trusted/*.pem|*.crt`,
/// so that two gateways with private CAs can validate each other. A snapshot: see `TrustStore`
/// for one that follows the directory.
pub fn load_trust(data_dir: &Path) -> Arc<RootCertStore> {
    Arc::new(build(
        &system_roots(),
        &data_dir.join("certs").join("trusted"),
    ))
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!("loading the system trust store: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::warn!("{ignored} system CA certificates could not be parsed");
    }
    tracing::debug!("{added} system CA certificates trusted");
    roots
}

fn build(system: &RootCertStore, dir: &Path) -> RootCertStore {
    let mut roots = system.clone();
    add_trusted_dir(&mut roots, dir);
    roots
}

/// The certificate files of the trusted directory, sorted, at most `MAX_TRUSTED_FILES`.
fn trusted_files(dir: &Path) -> Vec<PathBuf> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return vec![],
        Err(e) => {
            tracing::warn!("reading {}: {e}", dir.display());
            return vec![];
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("pem") || x.eq_ignore_ascii_case("crt"))
        })
        .take(MAX_TRUSTED_FILES)
        .collect();
    paths.sort();
    paths
}

fn stamps(dir: &Path) -> Vec<FileStamp> {
    trusted_files(dir)
        .iter()
        .filter_map(|p| FileStamp::of(p))
        .collect()
}

fn add_trusted_dir(roots: &mut RootCertStore, dir: &Path) {
    for path in trusted_files(dir) {
        match read_certs(&path) {
            Ok(certs) => {
                let (added, ignored) = roots.add_parsable_certificates(certs);
                if ignored > 0 {
                    tracing::warn!("{}: {ignored} certificates ignored", path.display());
                }
                tracing::info!("{}: {added} certificates trusted", path.display());
            }
            Err(e) => tracing::warn!("{}: {e}", path.display()),
        }
    }
}

fn read_certs(path: &Path) -> std::io::Result<Vec<CertificateDer<'static>>> {
    let file = File::open(path)?;
    rustls_pemfile::certs(&mut BufReader::new(file)).collect()
}

fn ring() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks the chain against `trust` and the name the caller passes to the handshake.
pub fn validating_tls_config(
    trust: Arc<RootCertStore>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(trust)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any certificate. Shared by every connection so that its session cache lets repeat
/// connections to the same next hop resume TLS sessions.
pub fn opportunistic_tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = ring();
            let verifier = Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            });
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// Skips certificate validation but still checks the handshake signatures: without them the
/// peer would not even have to hold the key of the certificate it presents.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn administrator_certificates_are_added_and_junk_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = dir.path().join("certs/trusted");
        fs::create_dir_all(&trusted).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["peer.test".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        fs::write(trusted.join("peer.pem"), cert.pem()).unwrap();
        fs::write(trusted.join("junk.crt"), "not a certificate").unwrap();
        fs::write(trusted.join("ignored.txt"), cert.pem()).unwrap();

        let without = load_trust(&dir.path().join("nowhere")).len();
        let with = load_trust(dir.path()).len();
        assert_eq!(with, without + 1);
    }

    fn ca(name: &str) -> rcgen::Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.self_signed(&key).unwrap()
    }

    /// The trust anchor subjects, to tell which CA a store holds.
    fn subjects(roots: &RootCertStore) -> Vec<Vec<u8>> {
        roots
            .roots
            .iter()
            .map(|t| t.subject.as_ref().to_vec())
            .collect()
    }

    fn subject_of(cert: &rcgen::Certificate) -> Vec<u8> {
        let mut one = RootCertStore::empty();
        one.add(cert.der().clone()).unwrap();
        subjects(&one).remove(0)
    }

    #[test]
    fn added_changed_and_removed_cas_are_followed_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = dir.path().join("certs/trusted");
        let store = TrustStore::with_rescan(dir.path(), Duration::ZERO);
        let base = store.current().len();
        let (a, b, c) = (ca("Partner A"), ca("Partner B"), ca("Partner C"));

        // The directory need not exist at start.
        fs::create_dir_all(&trusted).unwrap();
        fs::write(trusted.join("partner.pem"), a.pem()).unwrap();
        let now = store.current();
        assert_eq!(now.len(), base + 1);
        assert!(subjects(&now).contains(&subject_of(&a)));

        fs::write(trusted.join("other.crt"), b.pem()).unwrap();
        assert_eq!(store.current().len(), base + 2);

        // Replaced the way tools replace files: a new file renamed over the old one.
        fs::write(trusted.join("partner.pem.new"), c.pem()).unwrap();
        fs::rename(trusted.join("partner.pem.new"), trusted.join("partner.pem")).unwrap();
        let now = store.current();
        assert_eq!(now.len(), base + 2);
        assert!(subjects(&now).contains(&subject_of(&c)));
        assert!(!subjects(&now).contains(&subject_of(&a)));

        fs::remove_file(trusted.join("partner.pem")).unwrap();
        let now = store.current();
        assert_eq!(now.len(), base + 1);
        assert!(!subjects(&now).contains(&subject_of(&c)));
    }

    #[test]
    fn the_directory_is_not_read_again_within_the_rescan_interval() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = dir.path().join("certs/trusted");
        fs::create_dir_all(&trusted).unwrap();
        let store = TrustStore::with_rescan(dir.path(), Duration::from_secs(3600));
        let before = store.current();
        fs::write(trusted.join("partner.pem"), ca("Partner").pem()).unwrap();
        // The same snapshot, not merely an equal one.
        assert!(Arc::ptr_eq(&before, &store.current()));
    }
}
