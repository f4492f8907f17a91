//! Certificates from an ACME CA (rustls-acme, TLS-ALPN-01 answered on the console's listener).
//!
//! The settings (Set-AcmeConfig) are a file of the node's data directory, as its certificates
//! are: `<data_dir>/acme/config`. The account key is cached beside it (0600) and the certificate
//! goes into the certificates folder as `acme-<first domain>.crt` and `.key`, enabled for SMTP
//! and IIS, so the store serves it like any other pair and Get-ExchangeCertificate lists it.
//! rustls-acme renews at two thirds of the validity; until a renewal succeeds the files, and so
//! the certificate served, stay as they are. Every outcome goes to the log and to
//! `<data_dir>/acme/status`, which Get-AcmeConfig shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use time::OffsetDateTime;

use super::info::{CertInfo, Services};
use super::store::{self, CertStore};
use super::{FileStamp, TlsError, io_err, write_atomically};

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// How often the settings file is looked at for a change made by the shell.
const SETTINGS_RESCAN: Duration = Duration::from_secs(2);
/// The largest settings or status file read: a few lines.
const MAX_FILE: u64 = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeSettings {
    pub enabled: bool,
    pub directory_url: String,
    /// E-mail addresses for the CA's notices (`mailto:` is added when sent).
    pub contact: Vec<String>,
    /// The names the certificate carries; empty means the server's FQDN.
    pub domains: Vec<String>,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            enabled: false,
            directory_url: LETS_ENCRYPT.to_string(),
            contact: vec![],
            domains: vec![],
        }
    }
}

/// What the last attempts came to, for Get-AcmeConfig.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcmeStatus {
    pub last_issued: Option<OffsetDateTime>,
    pub last_error_time: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

pub fn folder(data_dir: &Path) -> PathBuf {
    data_dir.join("acme")
}

fn read_small(path: &Path) -> Result<Option<String>, TlsError> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let mut text = String::new();
    file.take(MAX_FILE)
        .read_to_string(&mut text)
        .map_err(|e| io_err(path, e))?;
    Ok(Some(text))
}

fn lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl AcmeSettings {
    pub fn load(data_dir: &Path) -> Result<AcmeSettings, TlsError> {
        let mut s = AcmeSettings::default();
        let Some(text) = read_small(&folder(data_dir).join("config"))? else {
            return Ok(s);
        };
        for (k, v) in lines(&text) {
            match k {
                "Enabled" => s.enabled = v.eq_ignore_ascii_case("true"),
                "DirectoryUrl" => s.directory_url = v.to_string(),
                "Contact" => s.contact = list(v),
                "Domains" => s.domains = list(v),
                _ => {}
            }
        }
        Ok(s)
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), TlsError> {
        let dir = folder(data_dir);
        crate::fsmode::private_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let text = format!(
            "Enabled={}\nDirectoryUrl={}\nContact={}\nDomains={}\n",
            self.enabled,
            self.directory_url,
            self.contact.join(","),
            self.domains.join(",")
        );
        write_atomically(&dir.join("config"), text.as_bytes(), 0o600)
    }

    /// The names to ask for: those set, else the server's FQDN.
    pub fn names(&self, fqdn: &str) -> Vec<String> {
        if self.domains.is_empty() {
            vec![fqdn.to_string()]
        } else {
            self.domains.clone()
        }
    }
}

impl AcmeStatus {
    pub fn load(data_dir: &Path) -> AcmeStatus {
        let mut s = AcmeStatus::default();
        let text = read_small(&folder(data_dir).join("status"))
            .ok()
            .flatten()
            .unwrap_or_default();
        let at =
            |v: &str| OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok();
        for (k, v) in lines(&text) {
            match k {
                "LastIssued" => s.last_issued = at(v),
                "LastErrorTime" => s.last_error_time = at(v),
                "LastError" => s.last_error = Some(v.to_string()).filter(|v| !v.is_empty()),
                _ => {}
            }
        }
        s
    }

    fn save(&self, data_dir: &Path) {
        let fmt = |t: Option<OffsetDateTime>| {
            t.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
        };
        let text = format!(
            "LastIssued={}\nLastErrorTime={}\nLastError={}\n",
            fmt(self.last_issued),
            fmt(self.last_error_time),
            // One line: the file is read line by line.
            self.last_error
                .as_deref()
                .unwrap_or("")
                .replace(['\r', '\n'], " ")
        );
        let dir = folder(data_dir);
        let written = crate::fsmode::private_dir_all(&dir)
            .map_err(|e| io_err(&dir, e))
            .and_then(|_| write_atomically(&dir.join("status"), text.as_bytes(), 0o600));
        if let Err(e) = written {
            tracing::warn!("ACME: recording the status: {e}");
        }
    }
}

/// Runs ACME for as long as the gateway runs, following the settings file: started when
/// enabled, restarted when changed, stopped when disabled.
pub fn spawn(data_dir: PathBuf, store: Arc<CertStore>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let path = folder(&data_dir).join("config");
        let mut seen: Option<Option<FileStamp>> = None;
        let mut running: Option<tokio::task::JoinHandle<()>> = None;
        let mut tick = tokio::time::interval(SETTINGS_RESCAN);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Some(FileStamp::of(&path));
            if now == seen {
                continue;
            }
            seen = now;
            if let Some(r) = running.take() {
                r.abort();
                store.set_challenge_responder(None);
            }
            match AcmeSettings::load(&data_dir) {
                Ok(s) if s.enabled => {
                    running = Some(tokio::spawn(run(s, data_dir.clone(), store.clone())));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("ACME settings: {e}"),
            }
        }
    })
}

async fn run(settings: AcmeSettings, data_dir: PathBuf, store: Arc<CertStore>) {
    let domains = settings.names(store.server_fqdn());
    // The CA's API is trusted as outbound SMTP trusts servers: the system's roots plus
    // `certs/trusted/` (a private or test CA goes there).
    let roots = crate::smtp::client::trust::load_trust(&data_dir);
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    let client = match client {
        Ok(c) => Arc::new(c),
        Err(e) => {
            tracing::error!("ACME: building the client's TLS configuration: {e}");
            return;
        }
    };
    let contact: Vec<String> = settings
        .contact
        .iter()
        .map(|c| {
            if c.starts_with("mailto:") {
                c.clone()
            } else {
                format!("mailto:{c}")
            }
        })
        .collect();
    let cache = FolderCache {
        certs: store.dir().to_path_buf(),
        acme: folder(&data_dir),
    };
    let mut state = rustls_acme::AcmeConfig::new_with_client_config(domains.clone(), client)
        .directory(&settings.directory_url)
        .contact(contact)
        .cache(cache)
        .state();
    store.set_challenge_responder(Some(state.resolver()));
    tracing::info!(
        "ACME: certificates for {} from {}",
        domains.join(", "),
        settings.directory_url
    );
    let mut status = AcmeStatus::load(&data_dir);
    while let Some(event) = state.next().await {
        match event {
            Ok(rustls_acme::EventOk::DeployedNewCert) => {
                tracing::info!("ACME: a new certificate for {}", domains.join(", "));
                status.last_issued = Some(OffsetDateTime::now_utc());
                // A failure before this success is over: the console stops flagging it.
                status.last_error = None;
                status.last_error_time = None;
                status.save(&data_dir);
            }
            Ok(ev) => tracing::debug!("ACME: {ev:?}"),
            Err(e) => {
                // The certificate in service is untouched; rustls-acme tries again with backoff.
                tracing::error!(
                    "ACME: obtaining the certificate for {} failed: {e}; the current certificate stays in service",
                    domains.join(", ")
                );
                status.last_error = Some(e.to_string());
                status.last_error_time = Some(OffsetDateTime::now_utc());
                status.save(&data_dir);
            }
        }
    }
}

/// rustls-acme's cache, in hubgate's folders: the certificate as a pair of the store.
struct FolderCache {
    certs: PathBuf,
    acme: PathBuf,
}

impl FolderCache {
    fn stem(domains: &[String]) -> String {
        let first = domains.first().map(String::as_str).unwrap_or("default");
        // The name is part of a path: anything but a host name's characters is replaced.
        let safe: String = first
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("acme-{}", safe.trim_start_matches('.'))
    }

    fn account_file(&self, contact: &[String], directory_url: &str) -> PathBuf {
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        h.update(directory_url.as_bytes());
        for c in contact {
            h.update(b"\0");
            h.update(c.as_bytes());
        }
        let hex: String = h.finish().as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.acme.join(format!("account-{hex}.key"))
    }
}

#[async_trait::async_trait]
impl rustls_acme::CertCache for FolderCache {
    type EC = TlsError;

    async fn load_cert(
        &self,
        domains: &[String],
        _directory_url: &str,
    ) -> Result<Option<Vec<u8>>, TlsError> {
        let stem = Self::stem(domains);
        let (crt, key) = (
            self.certs.join(format!("{stem}.crt")),
            self.certs.join(format!("{stem}.key")),
        );
        let (Some(cert_pem), Some(key_pem)) = (read_small(&crt)?, read_small(&key)?) else {
            return Ok(None);
        };
        // A certificate for other names (the settings changed) is ordered anew.
        let m = super::load_pem(&crt, &key)?;
        let info = CertInfo::read(&m.certs[0])?;
        if !domains.iter().all(|d| info.covers(d)) {
            return Ok(None);
        }
        Ok(Some(format!("{key_pem}\n{cert_pem}").into_bytes()))
    }

    async fn store_cert(
        &self,
        domains: &[String],
        _directory_url: &str,
        cert: &[u8],
    ) -> Result<(), TlsError> {
        // rustls-acme's form: the private key's PEM block first, then the chain.
        let text = String::from_utf8_lossy(cert);
        let end = "-----END PRIVATE KEY-----";
        let split = text
            .find(end)
            .map(|i| i + end.len())
            .ok_or_else(|| TlsError::Unreadable("the ACME certificate has no key".into()))?;
        let (key_pem, chain_pem) = text.split_at(split);
        let first = rustls_pemfile::certs(&mut chain_pem.as_bytes())
            .next()
            .ok_or_else(|| TlsError::Unreadable("the ACME certificate has no chain".into()))?
            .map_err(|e| TlsError::Unreadable(e.to_string()))?;
        let info = CertInfo::read(&first)?;
        let stem = Self::stem(domains);
        crate::fsmode::private_dir_all(&self.certs).map_err(|e| io_err(&self.certs, e))?;
        // Enabled first, so the pair is a full candidate the moment the store sees it.
        store::enable(&self.certs, &info.thumbprint, Services::BOTH)?;
        write_atomically(
            &self.certs.join(format!("{stem}.key")),
            format!("{}\n", key_pem.trim()).as_bytes(),
            0o600,
        )?;
        write_atomically(
            &self.certs.join(format!("{stem}.crt")),
            format!("{}\n", chain_pem.trim()).as_bytes(),
            0o600,
        )?;
        tracing::info!(
            "ACME: certificate {} for {} installed",
            info.thumbprint,
            info.domains.join(", ")
        );
        Ok(())
    }
}

#[async_trait::async_trait]
impl rustls_acme::AccountCache for FolderCache {
    type EA = TlsError;

    async fn load_account(
        &self,
        contact: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, TlsError> {
        let path = self.account_file(contact, directory_url);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    async fn store_account(
        &self,
        contact: &[String],
        directory_url: &str,
        account: &[u8],
    ) -> Result<(), TlsError> {
        crate::fsmode::private_dir_all(&self.acme).map_err(|e| io_err(&self.acme, e))?;
        write_atomically(&self.account_file(contact, directory_url), account, 0o600)
    }
}
