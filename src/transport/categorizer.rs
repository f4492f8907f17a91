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
            None => Verdict::Reject(Reply::new(550, "5.1.1", "User unknown")),
        },
    })
}

/// Is the sender's domain one of ours (Authoritative or InternalRelay)? Decides which sender right applies.
pub fn is_internal_sender(domains: &[AcceptedDomain], sender: &str) -> bool {
    sender
        .rsplit_once('@')
        .and_then(|(_, d)| accepted_domain::find(domains, d))
        .is_some_and(|d| d.kind() != DomainType::ExternalRelay)
}
