//! Certificates for SMTP STARTTLS and the console's HTTPS (served from `store`).
//!
//! A gateway must offer STARTTLS from its first start, before anyone has installed a real
//! certificate, so a missing certificate is replaced by a self-signed one that is kept on disk:
//! regenerating it on every start would change the fingerprint that peers may have pinned.
//!
//! The certificate files are watched while the gateway runs: an administrator who installs a
//! real certificate (or renews one) replaces the two files and new STARTTLS handshakes use it,
//! without a restart and without dropping sessions in progress.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub mod acme;
pub mod info;
pub mod store;

/// How often the certificate files are looked at again (a stat of two files).
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}: no PEM certificate found")]
    NoCertificate(PathBuf),
    #[error("{0}: no PEM private key found")]
    NoPrivateKey(PathBuf),
    #[error("certificate {cert} exists but its key {key} does not")]
    MissingKey { cert: PathBuf, key: PathBuf },
    #[error("{0:?} cannot name a certificate file: expected a host name")]
    InvalidName(String),
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("building the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the certificate cannot be read: {0}")]
    Unreadable(String),
}

/// The process-wide default provider matters only to code that builds rustls configs without
/// naming a provider (e.g. sqlx or an HTTP client); ours always passes ring explicitly.
pub fn install_crypto_provider() {
    // Err means some provider is already installed, which is all this call wants to ensure.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub struct TlsMaterial {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Made by this call (the first start), not found on disk.
    pub generated: bool,
}

/// What tells a file changed without reading it: a replacement by rename changes the inode, an
/// edit in place the modification time or the size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FileStamp {
    path: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    /// None when the file cannot be looked at (absent, or no permission).
    pub(crate) fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        // Follows symlinks: a link to a certificate renewed elsewhere changes with its target.
        let meta = fs::metadata(path).ok()?;
        Some(FileStamp {
            path: path.to_path_buf(),
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        })
    }
}

impl std::fmt::Debug for TlsMaterial {
    // The derived form would print the private key into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("certs", &self.certs.len())
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// Loads `<data_dir>/certs/<fqdn>.crt` and `.key`, or creates a self-signed pair for `fqdn` (and
/// `localhost`) there when the certificate does not exist yet.
pub fn load_or_create(data_dir: &Path, fqdn: &str) -> Result<TlsMaterial, TlsError> {
    check_file_name(fqdn)?;
    let dir = data_dir.join("certs");
    let cert_path = dir.join(format!("{fqdn}.crt"));
    let key_path = dir.join(format!("{fqdn}.key"));
    // The certificate is written last, so its presence means the pair is complete; an orphaned
    // key from an interrupted run is simply overwritten.
    if cert_path.exists() {
        if !key_path.exists() {
            return Err(TlsError::MissingKey {
                cert: cert_path,
                key: key_path,
            });
        }
        return load_pem(&cert_path, &key_path);
    }

    let (cert_pem, key_pem) = generate(fqdn)?;
    crate::fsmode::private_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    write_atomically(&key_path, key_pem.as_bytes(), 0o600)?;
    write_atomically(&cert_path, cert_pem.as_bytes(), 0o600)?;
    let dir_handle = File::open(&dir).map_err(|e| io_err(&dir, e))?;
    dir_handle.sync_all().map_err(|e| io_err(&dir, e))?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate for {fqdn}");
    let mut m = load_pem(&cert_path, &key_path)?;
    m.generated = true;
    Ok(m)
}

pub fn load_pem(cert: &Path, key: &Path) -> Result<TlsMaterial, TlsError> {
    let file = File::open(cert).map_err(|e| io_err(cert, e))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io_err(cert, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let file = File::open(key).map_err(|e| io_err(key, e))?;
    let key_der = rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| io_err(key, e))?
        .ok_or_else(|| TlsError::NoPrivateKey(key.to_path_buf()))?;
    Ok(TlsMaterial {
        certs,
        key: key_der,
        cert_path: cert.to_path_buf(),
        key_path: key.to_path_buf(),
        generated: false,
    })
}

pub(crate) fn generate(fqdn: &str) -> Result<(String, String), TlsError> {
    let mut names = vec![fqdn.to_string()];
    if !fqdn.eq_ignore_ascii_case("localhost") {
        names.push("localhost".to_string());
    }
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, fqdn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    // A backdated start tolerates peers whose clocks run slow; ten years keeps an unattended
    // appliance from suddenly failing handshakes with peers that do check validity.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Readers must never see a half-written key or certificate, even after a crash.
pub(crate) fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let _ = fs::remove_file(&tmp);
    // The mode is set at creation so the key is never readable by others, not even briefly.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, e))?;
    file.write_all(contents).map_err(|e| io_err(&tmp, e))?;
    file.sync_all().map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))
}

/// The name becomes part of a path, so anything that could leave the certs directory is refused.
fn check_file_name(fqdn: &str) -> Result<(), TlsError> {
    let ok = !fqdn.is_empty()
        && !fqdn.starts_with('.')
        && fqdn
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if ok {
        Ok(())
    } else {
        Err(TlsError::InvalidName(fqdn.to_string()))
    }
}

pub(crate) fn io_err(path: &Path, source: io::Error) -> TlsError {
    TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::ServerConfig;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A fresh folder of its own for one unit test (the store's tests use it too).
    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("hubgate-tls-{tag}-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn generates_once_then_loads_the_same_pair() {
        let dir = temp_dir("reload");
        let first = load_or_create(&dir, "mx.example.test").unwrap();
        assert_eq!(first.cert_path, dir.join("certs/mx.example.test.crt"));
        let key_mode = fs::metadata(dir.join("certs/mx.example.test.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);

        let second = load_or_create(&dir, "mx.example.test").unwrap();
        assert_eq!(first.certs, second.certs);
        assert_eq!(first.key.secret_der(), second.key.secret_der());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_names_that_would_escape_the_directory() {
        let dir = temp_dir("names");
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(matches!(
                load_or_create(&dir, bad),
                Err(TlsError::InvalidName(_))
            ));
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_certificate_without_its_key_is_an_error_not_a_silent_regeneration() {
        let dir = temp_dir("orphan");
        load_or_create(&dir, "mx.example.test").unwrap();
        fs::remove_file(dir.join("certs/mx.example.test.key")).unwrap();
        assert!(matches!(
            load_or_create(&dir, "mx.example.test"),
            Err(TlsError::MissingKey { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    async fn handshake(material: &TlsMaterial, server_name: &'static str) -> Result<(), String> {
        let dir = material.cert_path.parent().unwrap().parent().unwrap();
        let store = store::CertStore::open(dir, "mx.example.test").unwrap();
        let config = store.smtp_config("mx.example.test").unwrap();
        handshake_with(config, &material.certs[0], server_name).await
    }

    /// A client trusting only `trusted` talks to a server with `config`.
    async fn handshake_with(
        config: Arc<ServerConfig>,
        trusted: &CertificateDer<'static>,
        server_name: &'static str,
    ) -> Result<(), String> {
        let server = tokio_rustls::TlsAcceptor::from(config);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(trusted.clone()).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = tokio_rustls::TlsConnector::from(Arc::new(client_config));

        let (client_io, server_io) = tokio::io::duplex(16 * 1024);
        let server_task = tokio::spawn(async move {
            let mut tls = server.accept(server_io).await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            tls.write_all(&buf).await.map_err(|e| e.to_string())?;
            tls.shutdown().await.map_err(|e| e.to_string())
        });
        let name = rustls::pki_types::ServerName::try_from(server_name).unwrap();
        let mut tls = client
            .connect(name, client_io)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"EHLO").await.map_err(|e| e.to_string())?;
        let mut echoed = Vec::new();
        tls.read_to_end(&mut echoed)
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(echoed, b"EHLO");
        server_task.await.unwrap()
    }

    #[tokio::test]
    async fn a_client_trusting_the_generated_certificate_completes_a_handshake() {
        let dir = temp_dir("handshake");
        let material = load_or_create(&dir, "mx.example.test").unwrap();
        handshake(&material, "mx.example.test").await.unwrap();
        handshake(&material, "localhost").await.unwrap();
        let wrong = handshake(&material, "other.example.test").await;
        assert!(wrong.is_err(), "a name outside the SANs must be rejected");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_certificate_replaced_on_disk_is_served_without_a_restart() {
        let dir = temp_dir("renew");
        let first = load_or_create(&dir, "mx.example.test").unwrap();
        let store =
            store::CertStore::open_with_rescan(&dir, "mx.example.test", Duration::ZERO).unwrap();
        let config = store.smtp_config("").unwrap();
        handshake_with(config.clone(), &first.certs[0], "mx.example.test")
            .await
            .unwrap();

        // The administrator installs a new pair, key first, each file replaced whole.
        let (cert_pem, key_pem) = generate("mx.example.test").unwrap();
        write_atomically(&first.key_path, key_pem.as_bytes(), 0o600).unwrap();
        write_atomically(&first.cert_path, cert_pem.as_bytes(), 0o644).unwrap();
        let second = load_pem(&first.cert_path, &first.key_path).unwrap();
        assert_ne!(first.certs, second.certs);
        handshake_with(config.clone(), &second.certs[0], "mx.example.test")
            .await
            .unwrap();
        let stale = handshake_with(config.clone(), &first.certs[0], "mx.example.test").await;
        assert!(stale.is_err(), "the old certificate is still served");

        // A certificate whose key is not (yet) there: the previous pair stays in service.
        let (other_cert, _) = generate("mx.example.test").unwrap();
        write_atomically(&first.cert_path, other_cert.as_bytes(), 0o644).unwrap();
        handshake_with(config.clone(), &second.certs[0], "mx.example.test")
            .await
            .unwrap();
        fs::remove_file(&first.cert_path).unwrap();
        handshake_with(config, &second.certs[0], "mx.example.test")
            .await
            .unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
