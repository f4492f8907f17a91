//! The certificates of this node (Get-, Import-, Enable-ExchangeCertificate).
//!
//! Certificates are files of the node's data directory, not organisation configuration: each
//! node serves its own (`tls::store`), as each Exchange server had its own certificate store.
//! These operations change the files; the running gateway picks the change up by itself.

use std::path::{Path, PathBuf};

use rustls::pki_types::PrivateKeyDer;
use rustls::sign::CertifiedKey;

use super::OpError;
use crate::tls::acme::{AcmeSettings, AcmeStatus};
use crate::tls::info::{CertInfo, Services};
use crate::tls::store::{self, Installed};
use crate::tls::{TlsError, write_atomically};

/// One certificate as Get-ExchangeCertificate shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    pub info: CertInfo,
    pub services: Services,
    /// Where its files are: `<folder>/<file>.crt` and `.key`.
    pub file: String,
}

impl From<&Installed> for Certificate {
    fn from(i: &Installed) -> Certificate {
        Certificate {
            info: i.info.clone(),
            services: i.services,
            file: i.stem.clone(),
        }
    }
}

/// The largest PEM file Import-ExchangeCertificate reads: a long chain is a few kilobytes.
const MAX_PEM: u64 = 1024 * 1024;

fn tls_error(param: &'static str, e: TlsError) -> OpError {
    OpError::invalid(param, e.to_string())
}

/// Every certificate of the node with `data_dir`, by thumbprint.
pub fn list(data_dir: &Path) -> Result<Vec<Certificate>, OpError> {
    let mut certs: Vec<Certificate> = store::read_folder(&store::folder(data_dir))
        .map_err(|e| tls_error("Identity", e))?
        .iter()
        .map(|i| Certificate::from(&**i))
        .collect();
    certs.sort_by(|a, b| a.info.thumbprint.cmp(&b.info.thumbprint));
    certs.dedup_by(|a, b| a.info.thumbprint == b.info.thumbprint);
    Ok(certs)
}

/// The certificate whose thumbprint is `thumbprint` (Exchange also accepts `SERVER\thumbprint`).
pub fn get(data_dir: &Path, thumbprint: &str) -> Result<Certificate, OpError> {
    let wanted = thumbprint
        .rsplit('\\')
        .next()
        .unwrap_or(thumbprint)
        .trim()
        .to_ascii_uppercase();
    list(data_dir)?
        .into_iter()
        .find(|c| c.info.thumbprint == wanted)
        .ok_or_else(|| OpError::NotFound(thumbprint.to_string()))
}

/// Installs the PEM chain at `path` with the private key in `key_path` (or in the same file),
/// as `<thumbprint>.crt` and `.key` of the certificates folder. Nothing is written unless the
/// key belongs to the certificate.
pub fn import(
    data_dir: &Path,
    path: &Path,
    key_path: Option<&Path>,
) -> Result<Certificate, OpError> {
    let cert_pem = read_pem(path, "Path")?;
    let key_param = if key_path.is_some() {
        "KeyPath"
    } else {
        "Path"
    };
    let key_pem = match key_path {
        Some(k) => read_pem(k, "KeyPath")?,
        None => cert_pem.clone(),
    };
    let certs = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| OpError::invalid("Path", format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(OpError::invalid(
            "Path",
            format!(
                "{} holds no PEM certificate. hubgate imports PEM files; convert a PFX with `openssl pkcs12 -in file.pfx -out file.pem -nodes`.",
                path.display()
            ),
        ));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .ok()
        .flatten()
        .ok_or_else(|| {
            let shown = key_path.unwrap_or(path);
            OpError::invalid(
                key_param,
                format!(
                    "{} holds no PEM private key; give the key's file with -KeyPath.",
                    shown.display()
                ),
            )
        })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs.clone(), key.clone_key(), &provider).map_err(|e| {
        OpError::invalid(
            key_param,
            format!("The private key does not belong to the certificate: {e}"),
        )
    })?;
    let info = CertInfo::read(&certs[0]).map_err(|e| tls_error("Path", e))?;
    let dir = store::folder(data_dir);
    if list(data_dir)?
        .iter()
        .any(|c| c.info.thumbprint == info.thumbprint)
    {
        return Err(OpError::Duplicate {
            kind: "certificate",
            name: info.thumbprint,
        });
    }
    crate::fsmode::private_dir_all(&dir).map_err(|e| OpError::invalid("Path", e.to_string()))?;
    let stem = info.thumbprint.clone();
    let key_file = dir.join(format!("{stem}.key"));
    let cert_file = dir.join(format!("{stem}.crt"));
    // Only the PEM blocks read above are written: whatever else the files held stays out.
    let label = match &key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    let key_out = pem_block(label, key.secret_der());
    let cert_out: String = certs
        .iter()
        .map(|c| pem_block("CERTIFICATE", c.as_ref()))
        .collect();
    // The key first: the certificate's arrival is what makes the pair a candidate.
    write_atomically(&key_file, key_out.as_bytes(), 0o600).map_err(|e| tls_error("Path", e))?;
    write_atomically(&cert_file, cert_out.as_bytes(), 0o600).map_err(|e| tls_error("Path", e))?;
    Ok(Certificate {
        info,
        services: Services::default(),
        file: stem,
    })
}

/// Enables the certificate for `services` (added to those it has), as
/// Enable-ExchangeCertificate does; returns it as it now is.
pub fn enable(
    data_dir: &Path,
    thumbprint: &str,
    services: Services,
) -> Result<Certificate, OpError> {
    let mut cert = get(data_dir, thumbprint)?;
    cert.services = store::enable(&store::folder(data_dir), &cert.info.thumbprint, services)
        .map_err(|e| tls_error("Services", e))?;
    Ok(cert)
}

/// Get-AcmeConfig: the settings, and what the running node's last attempts came to.
pub fn acme_config(data_dir: &Path) -> Result<(AcmeSettings, AcmeStatus), OpError> {
    let s = AcmeSettings::load(data_dir).map_err(|e| tls_error("Identity", e))?;
    Ok((s, AcmeStatus::load(data_dir)))
}

/// Set-AcmeConfig: the changes given, checked; the running node follows within seconds.
pub fn set_acme_config(
    data_dir: &Path,
    enabled: Option<bool>,
    directory_url: Option<&str>,
    contact: Option<Vec<String>>,
    domains: Option<Vec<String>>,
) -> Result<AcmeSettings, OpError> {
    let mut s = AcmeSettings::load(data_dir).map_err(|e| tls_error("Identity", e))?;
    if let Some(e) = enabled {
        s.enabled = e;
    }
    if let Some(url) = directory_url {
        let url = url.trim();
        if !url.starts_with("https://") || url.contains(char::is_whitespace) {
            return Err(OpError::invalid(
                "DirectoryUrl",
                format!("\"{url}\" is not an https:// URL of an ACME directory."),
            ));
        }
        s.directory_url = url.to_string();
    }
    if let Some(c) = contact {
        for a in &c {
            let addr = a.strip_prefix("mailto:").unwrap_or(a);
            let plausible = addr.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.contains('@')
            }) && !addr
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == ',');
            if !plausible {
                return Err(OpError::invalid(
                    "Contact",
                    format!("\"{a}\" is not an e-mail address."),
                ));
            }
        }
        s.contact = c;
    }
    if let Some(d) = domains {
        for name in &d {
            let ok = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if !ok {
                return Err(OpError::invalid(
                    "Domains",
                    format!("\"{name}\" is not a host name a certificate can carry."),
                ));
            }
        }
        s.domains = d;
    }
    s.save(data_dir).map_err(|e| tls_error("Identity", e))?;
    Ok(s)
}

fn read_pem(path: &Path, param: &'static str) -> Result<Vec<u8>, OpError> {
    use std::io::Read;
    let shown = PathBuf::from(path);
    let file = std::fs::File::open(path)
        .map_err(|e| OpError::invalid(param, format!("{}: {e}", shown.display())))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| OpError::invalid(param, format!("{}: {e}", shown.display())))?;
    if bytes.len() as u64 > MAX_PEM {
        return Err(OpError::invalid(
            param,
            format!(
                "{} is larger than {MAX_PEM} bytes: not a certificate file.",
                shown.display()
            ),
        ));
    }
    Ok(bytes)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
