//! Which servers outbound TLS trusts, and the two rustls client configurations: a validating one
//! (RequireTLS with certificate and domain validation) and one that accepts any certificate
//! (Exchange's opportunistic TLS, where encryption without authentication beats plain text).
//!
//! Reads administrator-supplied PEM files from `<data_dir>/certs/trusted/`; a bad file or
//! certificate is logged and skipped, never fatal, so one typo cannot stop all outbound mail.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Bounds the directory scan; nobody pins this many private CAs.
const MAX_TRUSTED_FILES: usize = 1000;

/// The system's trust store plus every certificate in `<data_dir>/certs/trusted/*.pem|*.crt`,
/// so that two gateways with private CAs can validate each other.
pub fn load_trust(data_dir: &Path) -> Arc<RootCertStore> {
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
    add_trusted_dir(&mut roots, &data_dir.join("certs").join("trusted"));
    Arc::new(roots)
}

fn add_trusted_dir(roots: &mut RootCertStore, dir: &Path) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!("reading {}: {e}", dir.display());
            return;
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
    for path in paths {
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
}
