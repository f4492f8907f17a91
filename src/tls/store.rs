//! The one certificate store that SMTP STARTTLS and the console's HTTPS both serve from.
//!
//! Every certificate is a PEM pair in `<data_dir>/certs/`: `<name>.crt` (the chain) and
//! `<name>.key`. The self-signed certificate of the first start, pairs the administrator drops
//! in or imports, and certificates obtained by ACME all live there, so there is one place to
//! look, one way to replace a certificate (replace its files) and one listing
//! (Get-ExchangeCertificate). The services each certificate is enabled for are in
//! `<data_dir>/certs/services`, one `THUMBPRINT SERVICES` line per certificate.
//!
//! The folder is looked at again at most every `rescan` while handshakes arrive; a pair that
//! stops loading (half-written, mismatched, deleted) keeps its previous contents in service and
//! is logged, so a botched renewal cannot turn TLS off.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;

use super::info::{CertInfo, Service, Services};
use super::{FileStamp, TlsError, io_err, load_pem};

/// The file of services per thumbprint, inside the certificates folder.
pub const SERVICES_FILE: &str = "services";
/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// Configurations kept for connector FQDNs; a handful of connectors is the norm, so reaching
/// this only means names churned, and the cache starts over.
const MAX_CONFIGS: usize = 256;

/// A certificate in service, with what Get-ExchangeCertificate shows of it.
pub struct Installed {
    pub info: CertInfo,
    pub services: Services,
    /// The file name without `.crt`.
    pub stem: String,
    pub key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for Installed {
    // The derived form would print the private key into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed")
            .field("info", &self.info)
            .field("services", &self.services)
            .field("stem", &self.stem)
            .finish_non_exhaustive()
    }
}

pub struct CertStore {
    dir: PathBuf,
    server_fqdn: String,
    provider: Arc<CryptoProvider>,
    rescan: Duration,
    state: Mutex<State>,
    configs: Mutex<HashMap<String, Arc<ServerConfig>>>,
    /// Answers TLS-ALPN-01 challenges on the console's listener while ACME runs.
    challenge: RwLock<Option<Arc<dyn ResolvesServerCert>>>,
}

struct State {
    certs: Vec<Arc<Installed>>,
    seen: Vec<FileStamp>,
    checked: Instant,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The certificates folder of a data directory.
pub fn folder(data_dir: &Path) -> PathBuf {
    data_dir.join("certs")
}

impl CertStore {
    /// The store of `data_dir`, with the self-signed certificate for `fqdn` made first if the
    /// folder has none for it yet.
    pub fn open(data_dir: &Path, fqdn: &str) -> Result<Arc<CertStore>, TlsError> {
        Self::open_with_rescan(data_dir, fqdn, super::RESCAN_INTERVAL)
    }

    pub fn open_with_rescan(
        data_dir: &Path,
        fqdn: &str,
        rescan: Duration,
    ) -> Result<Arc<CertStore>, TlsError> {
        let first = super::load_or_create(data_dir, fqdn)?;
        let dir = folder(data_dir);
        if first.generated {
            // Exchange's own self-signed certificate starts enabled, so STARTTLS and the console
            // work from the first start.
            let info = CertInfo::read(&first.certs[0])?;
            enable(&dir, &info.thumbprint, Services::BOTH)?;
        }
        let store = CertStore {
            dir,
            server_fqdn: fqdn.to_string(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            rescan,
            state: Mutex::new(State {
                certs: vec![],
                seen: vec![],
                checked: Instant::now(),
            }),
            configs: Mutex::new(HashMap::new()),
            challenge: RwLock::new(None),
        };
        let (certs, seen) = load_folder(&store.dir, &store.provider, &[])?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate(store.dir.clone()));
        }
        {
            let mut s = store.state.lock().unwrap_or_else(|p| p.into_inner());
            s.certs = certs;
            s.seen = seen;
        }
        Ok(Arc::new(store))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn server_fqdn(&self) -> &str {
        &self.server_fqdn
    }

    /// The certificates in service now (the folder looked at again if it is time).
    pub fn certificates(&self) -> Vec<Arc<Installed>> {
        self.refresh();
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .certs
            .clone()
    }

    /// The certificate for `host` (else the server's FQDN) for `service`: among those naming the
    /// host, one enabled for the service, then one not self-signed, then one valid now, then the
    /// latest to expire. With none naming either, any certificate: a client that does not check
    /// names still gets TLS.
    pub fn select(&self, host: Option<&str>, service: Service) -> Option<Arc<Installed>> {
        let certs = self.certificates();
        let now = OffsetDateTime::now_utc();
        let rank = |c: &&Arc<Installed>| {
            (
                c.services.has(service),
                !c.info.self_signed,
                c.info.valid_at(now),
                c.info.not_after,
            )
        };
        let best_for = |name: &str| {
            certs
                .iter()
                .filter(|c| c.info.covers(name))
                .max_by_key(rank)
                .cloned()
        };
        host.filter(|h| !h.is_empty())
            .and_then(best_for)
            .or_else(|| best_for(&self.server_fqdn))
            .or_else(|| certs.iter().max_by_key(rank).cloned())
    }

    /// The STARTTLS configuration of a receive connector whose FQDN is `connector_fqdn`.
    pub fn smtp_config(
        self: &Arc<Self>,
        connector_fqdn: &str,
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let name = connector_fqdn.trim().to_ascii_lowercase();
        let mut configs = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = configs.get(&name) {
            return Ok(c.clone());
        }
        if configs.len() >= MAX_CONFIGS {
            configs.clear();
        }
        let resolver = Selector {
            store: self.clone(),
            name: Some(name.clone()).filter(|n| !n.is_empty()),
            service: Service::Smtp,
        };
        let config = Arc::new(self.config_with(resolver)?);
        configs.insert(name, config.clone());
        Ok(config)
    }

    /// The console's configuration: the certificate for the name the browser asked for (SNI),
    /// else the server's FQDN; `acme-tls/1` is offered so that TLS-ALPN-01 can be answered.
    pub fn https_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let resolver = Selector {
            store: self.clone(),
            name: None,
            service: Service::Iis,
        };
        let mut config = self.config_with(resolver)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        Ok(Arc::new(config))
    }

    fn config_with(&self, resolver: Selector) -> Result<ServerConfig, TlsError> {
        Ok(ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver)))
    }

    /// Who answers TLS-ALPN-01 challenges (the ACME client), or nobody.
    pub fn set_challenge_responder(&self, r: Option<Arc<dyn ResolvesServerCert>>) {
        *self.challenge.write().unwrap_or_else(|p| p.into_inner()) = r;
    }

    fn refresh(&self) {
        let seen = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.checked.elapsed() < self.rescan {
                return;
            }
            // Claimed: concurrent handshakes keep the current certificates meanwhile.
            s.checked = Instant::now();
            s.seen.clone()
        };
        let now = stamps(&self.dir);
        if now == seen {
            return;
        }
        let previous = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .certs
            .clone();
        match load_folder(&self.dir, &self.provider, &previous) {
            Ok((certs, seen)) if !certs.is_empty() => {
                tracing::info!(
                    dir = %self.dir.display(),
                    "the certificates changed on disk; new TLS sessions use them"
                );
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                s.certs = certs;
                s.seen = seen;
            }
            Ok((_, seen)) => {
                tracing::warn!(
                    "{}: no certificate left; TLS keeps the previous ones",
                    self.dir.display()
                );
                self.state.lock().unwrap_or_else(|p| p.into_inner()).seen = seen;
            }
            Err(e) => {
                tracing::warn!("{e}; TLS keeps the previous certificates");
                self.state.lock().unwrap_or_else(|p| p.into_inner()).seen = now;
            }
        }
    }
}

/// Every certificate of a certificates folder, read without making anything (the shell's view).
pub fn read_folder(dir: &Path) -> Result<Vec<Arc<Installed>>, TlsError> {
    let provider = rustls::crypto::ring::default_provider();
    Ok(load_folder(dir, &provider, &[])?.0)
}

/// Reads every pair of the folder. A pair that does not load keeps its `previous` contents (and
/// is logged); a pair whose files are both gone is dropped.
fn load_folder(
    dir: &Path,
    provider: &CryptoProvider,
    previous: &[Arc<Installed>],
) -> Result<(Vec<Arc<Installed>>, Vec<FileStamp>), TlsError> {
    // Stamps first: a change made while the files are read is noticed at the next look.
    let seen = stamps(dir);
    let services = read_services(dir)?;
    let mut stems: Vec<String> = list(dir)?
        .into_iter()
        .filter_map(|n| {
            n.strip_suffix(".crt")
                .or_else(|| n.strip_suffix(".key"))
                .map(str::to_string)
        })
        .collect();
    stems.sort();
    stems.dedup();
    let mut certs = Vec::new();
    for stem in stems {
        let crt = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        let loaded = load_pem(&crt, &key).and_then(|m| {
            let info = CertInfo::read(&m.certs[0])?;
            let key = CertifiedKey::from_der(m.certs, m.key, provider)?;
            Ok((info, key))
        });
        match loaded {
            Ok((info, key)) => {
                let services = services.get(&info.thumbprint).copied().unwrap_or_default();
                certs.push(Arc::new(Installed {
                    info,
                    services,
                    stem,
                    key: Arc::new(key),
                }));
            }
            Err(e) => match previous.iter().find(|p| p.stem == stem) {
                Some(p) => {
                    tracing::warn!("{e}; the previous {stem} certificate stays in service");
                    certs.push(Arc::new(Installed {
                        info: p.info.clone(),
                        services: services
                            .get(&p.info.thumbprint)
                            .copied()
                            .unwrap_or_default(),
                        stem,
                        key: p.key.clone(),
                    }));
                }
                None => tracing::warn!("{e}; not in service"),
            },
        }
    }
    Ok((certs, seen))
}

/// The certificate and key file names of the folder (nothing if it does not exist).
fn list(dir: &Path) -> Result<Vec<String>, TlsError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io_err(dir, e)),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(|e| io_err(dir, e))?;
        if let Some(n) = e.file_name().to_str()
            && (n.ends_with(".crt") || n.ends_with(".key"))
            && !n.starts_with('.')
        {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// What tells the folder changed: every pair's files and the services file.
fn stamps(dir: &Path) -> Vec<FileStamp> {
    let mut names = list(dir).unwrap_or_default();
    names.push(SERVICES_FILE.to_string());
    names
        .iter()
        .filter_map(|n| FileStamp::of(&dir.join(n)))
        .collect()
}

/// The services file: `THUMBPRINT SERVICES` lines; unknown lines are skipped with a warning.
pub fn read_services(dir: &Path) -> Result<HashMap<String, Services>, TlsError> {
    let path = dir.join(SERVICES_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(io_err(&path, e)),
    };
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (thumb, services) = line.split_once(' ').unwrap_or((line, ""));
        match Services::parse(services) {
            Ok(s) => {
                out.insert(thumb.to_ascii_uppercase(), s);
            }
            Err(word) => tracing::warn!("{}: unknown service {word:?}", path.display()),
        }
    }
    Ok(out)
}

/// Adds `services` to those the certificate `thumbprint` is enabled for.
pub fn enable(dir: &Path, thumbprint: &str, services: Services) -> Result<Services, TlsError> {
    let mut all = read_services(dir)?;
    let thumbprint = thumbprint.to_ascii_uppercase();
    // Lines of certificates no longer in the folder (each ACME renewal leaves one) are dropped;
    // the one being enabled stays even before its files arrive.
    let present: Vec<String> = read_folder(dir)?
        .iter()
        .map(|c| c.info.thumbprint.clone())
        .collect();
    all.retain(|t, _| *t == thumbprint || present.contains(t));
    let now = all
        .get(&thumbprint)
        .copied()
        .unwrap_or_default()
        .union(services);
    all.insert(thumbprint, now);
    let mut lines: Vec<String> = all
        .iter()
        .map(|(t, s)| {
            let mut words = vec![];
            if s.iis {
                words.push("IIS");
            }
            if s.smtp {
                words.push("SMTP");
            }
            format!("{t} {}\n", words.join(","))
        })
        .collect();
    lines.sort();
    crate::fsmode::private_dir_all(dir).map_err(|e| io_err(dir, e))?;
    super::write_atomically(&dir.join(SERVICES_FILE), lines.concat().as_bytes(), 0o600)?;
    Ok(now)
}

/// The store seen from one listener: a fixed name (a connector's FQDN) or the client's SNI.
struct Selector {
    store: Arc<CertStore>,
    name: Option<String>,
    service: Service,
}

impl std::fmt::Debug for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selector")
            .field("name", &self.name)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Selector {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // Only the console's listener is where a CA validates (STARTTLS offers no ALPN).
        let challenge = self.service == Service::Iis
            && hello
                .alpn()
                .is_some_and(|mut a| a.any(|p| p == ACME_TLS_ALPN));
        if challenge {
            let responder = self
                .store
                .challenge
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            // A challenge handshake gets the challenge certificate or nothing: serving the
            // real certificate there would only fail the validation later, and less clearly.
            return responder.and_then(|r| r.resolve(hello));
        }
        let host = match &self.name {
            Some(n) => Some(n.clone()),
            None => hello.server_name().map(str::to_string),
        };
        self.store
            .select(host.as_deref(), self.service)
            .map(|c| c.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::temp_dir;
    use super::*;

    fn add(dir: &Path, stem: &str, name: &str) -> String {
        let (cert, key) = super::super::generate(name).unwrap();
        let certs = folder(dir);
        super::super::write_atomically(&certs.join(format!("{stem}.key")), key.as_bytes(), 0o600)
            .unwrap();
        super::super::write_atomically(&certs.join(format!("{stem}.crt")), cert.as_bytes(), 0o600)
            .unwrap();
        let der = rustls_pemfile::certs(&mut cert.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        CertInfo::read(&der).unwrap().thumbprint
    }

    #[test]
    fn the_connector_name_then_the_service_then_the_server_name_choose() {
        let dir = temp_dir("select");
        let store = CertStore::open_with_rescan(&dir, "mx.example.test", Duration::ZERO).unwrap();
        let own = store
            .select(None, Service::Smtp)
            .unwrap()
            .info
            .thumbprint
            .clone();
        let a = add(&dir, "a", "mail.fabrikam.test");
        let b = add(&dir, "b", "mail.fabrikam.test");
        let chosen =
            |host: &str, s: Service| store.select(Some(host), s).unwrap().info.thumbprint.clone();

        // A name no certificate carries gets the server's.
        assert_eq!(chosen("other.example.test", Service::Smtp), own);
        // Of two for the name, the one enabled for the service.
        enable(
            store.dir(),
            &b,
            Services {
                iis: false,
                smtp: true,
            },
        )
        .unwrap();
        assert_eq!(chosen("mail.fabrikam.test", Service::Smtp), b);
        enable(
            store.dir(),
            &a,
            Services {
                iis: true,
                smtp: false,
            },
        )
        .unwrap();
        assert_eq!(chosen("mail.fabrikam.test", Service::Iis), a);
        assert_eq!(chosen("mail.fabrikam.test", Service::Smtp), b);
        assert_eq!(read_services(store.dir()).unwrap().len(), 3);
        fs::remove_dir_all(&dir).unwrap();
    }
}
