//! What Get-ExchangeCertificate shows of a certificate, read from its DER form.

use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use super::TlsError;

/// The services a certificate is enabled for, as Enable-ExchangeCertificate sets them. hubgate
/// has two: SMTP (STARTTLS on the receive connectors) and IIS (the console's HTTPS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Services {
    pub iis: bool,
    pub smtp: bool,
}

/// One service, for choosing the certificate a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Smtp,
    Iis,
}

impl Services {
    pub const BOTH: Services = Services {
        iis: true,
        smtp: true,
    };

    pub fn has(self, s: Service) -> bool {
        match s {
            Service::Smtp => self.smtp,
            Service::Iis => self.iis,
        }
    }

    pub fn union(self, o: Services) -> Services {
        Services {
            iis: self.iis || o.iis,
            smtp: self.smtp || o.smtp,
        }
    }

    /// Exchange's names, comma separated (`IIS,SMTP`, `None`); case and spaces ignored.
    pub fn parse(text: &str) -> Result<Services, String> {
        let mut s = Services::default();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word.to_ascii_uppercase().as_str() {
                "SMTP" => s.smtp = true,
                "IIS" => s.iis = true,
                "NONE" => {}
                _ => return Err(word.to_string()),
            }
        }
        Ok(s)
    }
}

impl std::fmt::Display for Services {
    /// Exchange's order and form: `IIS, SMTP`, or `None`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.iis, self.smtp) {
            (true, true) => f.write_str("IIS, SMTP"),
            (true, false) => f.write_str("IIS"),
            (false, true) => f.write_str("SMTP"),
            (false, false) => f.write_str("None"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-1 of the DER certificate in upper-case hex, as Exchange identifies certificates.
    pub thumbprint: String,
    pub subject: String,
    pub issuer: String,
    /// The DNS names of the subject alternative names, else the common name.
    pub domains: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub self_signed: bool,
}

impl CertInfo {
    pub fn read(der: &CertificateDer<'_>) -> Result<CertInfo, TlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| TlsError::Unreadable(e.to_string()))?;
        let mut domains: Vec<String> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect(),
            Ok(None) => vec![],
            Err(e) => return Err(TlsError::Unreadable(e.to_string())),
        };
        if domains.is_empty() {
            // Certificates from before SANs were usual name their host in the CN alone.
            domains.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_string),
            );
        }
        let at = |t: &x509_parser::time::ASN1Time| {
            OffsetDateTime::from_unix_timestamp(t.timestamp())
                .map_err(|e| TlsError::Unreadable(e.to_string()))
        };
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der.as_ref());
        Ok(CertInfo {
            thumbprint: digest.as_ref().iter().map(|b| format!("{b:02X}")).collect(),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            domains,
            not_before: at(&cert.validity().not_before)?,
            not_after: at(&cert.validity().not_after)?,
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
        })
    }

    /// Whether the certificate names `host` (case-insensitive; `*.d` covers one label of `d`).
    pub fn covers(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.domains.iter().any(|d| name_matches(d, host))
    }

    pub fn valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

fn name_matches(pattern: &str, host: &str) -> bool {
    if pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(suffix), Some((label, rest))) => {
            !label.is_empty() && !label.contains('*') && suffix.eq_ignore_ascii_case(rest)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label_only() {
        assert!(name_matches("*.example.test", "mx.example.test"));
        assert!(!name_matches("*.example.test", "a.mx.example.test"));
        assert!(!name_matches("*.example.test", "example.test"));
        assert!(name_matches("MX.Example.Test", "mx.example.test"));
    }

    #[test]
    fn services_read_and_print_as_exchange_does() {
        assert_eq!(Services::parse("smtp, IIS").unwrap(), Services::BOTH);
        assert_eq!(Services::BOTH.to_string(), "IIS, SMTP");
        assert_eq!(Services::parse("None").unwrap().to_string(), "None");
        assert_eq!(Services::parse("POP").unwrap_err(), "POP");
    }
}
