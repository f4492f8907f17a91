//! The categorizer at RCPT: recipient -> accepted domain -> local mailbox or relay, or a rejection.
//!
//! Rules (reference §5): Authoritative needs the recipient in the directory; InternalRelay delivers
//! known recipients locally and routes the rest out; ExternalRelay routes out without a lookup;
//! any other domain needs ms-Exch-SMTP-Accept-Any-Recipient (the relay right).

use sqlx::PgPool;

use crate::org::accepted_domain::{self, DomainType};
use crate::org::{AcceptedDomain, ExtendedRight, OrgError, Recipient, Rights};
use crate::smtp::proto::Reply;
use crate::transport::queue::store::Disposition;

#[derive(Debug)]
pub enum Verdict {
    Accept(Disposition),
    Reject(Reply),
}

/// The domain part of an address; a bare `postmaster` belongs to the default accepted domain.
pub fn domain_of<'a>(address: &'a str, domains: &'a [AcceptedDomain]) -> Option<&'a str> {
    match address.rsplit_once('@') {
        Some((_, d)) => Some(d),
        None => domains
            .iter()
            .find(|d| d.is_default)
            .map(|d| d.domain_name.as_str()),
    }
}

pub async fn categorize(
    pool: &PgPool,
    domains: &[AcceptedDomain],
    address: &str,
    rights: Rights,
) -> Result<Verdict, OrgError> {
    let Some(domain) = domain_of(address, domains) else {
        return Ok(Verdict::Reject(Reply::new(550, "5.1.1", "User unknown")));
    };
    let full = if address.contains('@') {
        address.to_string()
    } else {
        format!("{address}@{domain}")
    };
    let Some(accepted) = accepted_domain::find(domains, domain) else {
        return Ok(if rights.has(ExtendedRight::AcceptAnyRecipient) {
            Verdict::Accept(Disposition::Relay)
        } else {
            Verdict::Reject(Reply::new(550, "5.7.1", "Unable to relay"))
        });
    };
    Ok(match accepted.kind() {
        DomainType::ExternalRelay => Verdict::Accept(Disposition::Relay),
        DomainType::InternalRelay => match Recipient::find_by_address(pool, &full).await? {
            Some(r) if r.recipient_type == "Mailbox" => Verdict::Accept(Disposition::Mailbox),
            _ => Verdict::Accept(Disposition::Relay),
        },
        DomainType::Authoritative => match Recipient::find_by_address(pool, &full).await? {
            Some(r) if r.recipient_type == "Mailbox" => Verdict::Accept(Disposition::Mailbox),
            // Contacts and mail users forward to their external address.
            Some(_) => Verdict::Accept(Disposition::Relay),
            // Recipient validation at RCPT is AddressBookEnabled's job (reference §5); without it
            // the message is accepted and the categorizer NDRs the recipient after DATA.
            None if accepted.address_book_enabled => {
                Verdict::Reject(Reply::new(550, "5.1.1", "User unknown"))
            }
            None => Verdict::Accept(Disposition::Relay),
        },
    })
}

/// What the categorizer decided for a recipient after acceptance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A mailbox on this server.
    Local,
    /// Out through routing, to this address (the recipient's own, or a contact's external one).
    Route(String),
    /// NDR now.
    Fail(Reply),
}

/// How many contact-to-contact forwards are followed before calling it a loop.
const MAX_FORWARDS: usize = 8;

/// Categorizes an accepted recipient (reference §5): Authoritative needs it in the directory,
/// InternalRelay delivers the known ones locally and routes the rest, ExternalRelay and foreign
/// domains route without a lookup; mail contacts and mail users forward to their external address.
pub async fn resolve(
    pool: &PgPool,
    domains: &[AcceptedDomain],
    address: &str,
) -> Result<Resolution, OrgError> {
    let mut current = address.to_string();
    for _ in 0..MAX_FORWARDS {
        let Some(domain) = domain_of(&current, domains) else {
            return Ok(Resolution::Fail(not_found()));
        };
        let full = if current.contains('@') {
            current.clone()
        } else {
            format!("{current}@{domain}")
        };
        let kind = accepted_domain::find(domains, domain).map(|d| d.kind());
        let internal = matches!(
            kind,
            Some(DomainType::Authoritative | DomainType::InternalRelay)
        );
        if !internal {
            return Ok(Resolution::Route(full));
        }
        match Recipient::find_by_address(pool, &full).await? {
            Some(r) if r.recipient_type == "Mailbox" => return Ok(Resolution::Local),
            Some(r) => match r.external_email_address.as_deref().map(strip_smtp_prefix) {
                Some(ext) if !ext.is_empty() => current = ext.to_string(),
                _ => return Ok(Resolution::Fail(not_found())),
            },
            None if kind == Some(DomainType::InternalRelay) => {
                return Ok(Resolution::Route(full));
            }
            None => return Ok(Resolution::Fail(not_found())),
        }
    }
    Ok(Resolution::Fail(Reply::new(
        550,
        "5.4.6",
        "RESOLVER.FWD.Loop; there is a forwarding loop configured in the directory",
    )))
}

fn not_found() -> Reply {
    Reply::new(550, "5.1.1", "RESOLVER.ADR.RecipNotFound; not found")
}

fn strip_smtp_prefix(a: &str) -> &str {
    let a = a.trim();
    match a.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("smtp:") => &a[5..],
        _ => a,
    }
}

/// Is the sender's domain one of ours (Authoritative or InternalRelay)? Decides which sender right applies.
pub fn is_internal_sender(domains: &[AcceptedDomain], sender: &str) -> bool {
    sender
        .rsplit_once('@')
        .and_then(|(_, d)| accepted_domain::find(domains, d))
        .is_some_and(|d| d.kind() != DomainType::ExternalRelay)
}
