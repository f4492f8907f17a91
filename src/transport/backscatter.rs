//! No backscatter, the SPF rule: an NDR or delay DSN is not sent to a sender whose domain's SPF
//! fails (RFC 7208 "fail", as a `-all` record gives) for the address the message came from. The
//! sender was forged; the DSN would go to an innocent third party. Anything short of a definite
//! fail (softfail `~all`, neutral, none, errors, a look-up that times out) sends the DSN as
//! before. Messages received from authenticated sessions are not checked.
//!
//! The decision is the manager's (no SMTP session is involved): it is logged to the message
//! tracking log only, as the Sender Id Agent's AGENTINFO with the reason. A DSN to one of the
//! organisation's own domains is not backscatter and is not checked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::rr::{Name, RData};

use super::spf::{self, Dns, Lookup, LookupError, SpfResult};
use crate::org::Org;

pub const AGENT: &str = "Sender Id Agent";

/// The whole evaluation's bound: the manager waits on it before queueing a DSN.
const EVALUATION_LIMIT: Duration = Duration::from_secs(10);

/// The message a DSN is about, as far as the rule needs it.
pub struct Origin<'a> {
    pub sender: &'a str,
    pub client_ip: Option<IpAddr>,
    pub authenticated: bool,
}

/// Why the DSN for `origin` is not sent, or None to send it. A DSN to one of the organisation's
/// own domains (Authoritative, InternalRelay) stays inside it and is never backscatter.
pub async fn suppressed(org: &Org, origin: &Origin<'_>) -> Option<String> {
    if origin.authenticated
        || crate::transport::categorizer::is_internal_sender(&org.accepted_domains, origin.sender)
    {
        return None;
    }
    let ip = origin.client_ip?;
    let (_, domain) = origin.sender.rsplit_once('@')?;
    let domain = domain.to_ascii_lowercase();
    let key = (domain.clone(), ip);
    if let Some(verdict) = VERDICTS.get(&key) {
        return verdict.map(|term| reason(&domain, ip, &term, origin.sender));
    }
    let dns = HickoryDns(resolver(&org.server.external_dns_servers)?);
    let result = tokio::time::timeout(EVALUATION_LIMIT, spf::check_host(&dns, ip, &domain))
        .await
        .unwrap_or(SpfResult::TempError);
    let verdict = match result {
        SpfResult::Fail(term) => Some(term),
        _ => None,
    };
    VERDICTS.put(key, verdict.clone());
    verdict.map(|term| reason(&domain, ip, &term, origin.sender))
}

fn reason(domain: &str, ip: IpAddr, term: &str, sender: &str) -> String {
    format!(
        "SPF of {domain} fails for {ip} ({term}): the DSN to {sender} is not sent (backscatter)"
    )
}

/// Recent verdicts per (domain, client address), so that a run of DSNs for one source (or a DNS
/// outage, each look-up waiting out its timeout) costs one evaluation, not one per DSN.
struct Verdicts(Mutex<HashMap<VerdictKey, (Instant, Option<String>)>>);

/// The sender's domain (lower case) and the client address.
type VerdictKey = (String, IpAddr);

/// How long a verdict is reused, and how many are kept.
const VERDICT_TTL: Duration = Duration::from_secs(300);
const MAX_VERDICTS: usize = 10_000;

static VERDICTS: std::sync::LazyLock<Verdicts> =
    std::sync::LazyLock::new(|| Verdicts(Mutex::new(HashMap::new())));

impl Verdicts {
    fn get(&self, key: &VerdictKey) -> Option<Option<String>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < VERDICT_TTL)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: VerdictKey, verdict: Option<String>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_VERDICTS {
            map.retain(|_, (at, _)| at.elapsed() < VERDICT_TTL);
            if map.len() >= MAX_VERDICTS {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), verdict));
    }
}

/// The system's resolver, or ExternalDNSServers' when the transport server names some; built
/// once per set of servers.
fn resolver(servers: &[String]) -> Option<Arc<TokioResolver>> {
    static CACHE: Mutex<Option<HashMap<Vec<String>, Arc<TokioResolver>>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(r) = cache.get(servers) {
        return Some(r.clone());
    }
    let built = crate::smtp::client::Resolver::configured(servers, |_| {});
    match built {
        Ok(r) => {
            let r = Arc::new(r.hickory().clone());
            // One entry per configuration seen; a changed setting replaces the others.
            cache.clear();
            cache.insert(servers.to_vec(), r.clone());
            Some(r)
        }
        Err(e) => {
            tracing::warn!("SPF for the backscatter rule: no resolver: {e}");
            None
        }
    }
}

struct HickoryDns(Arc<TokioResolver>);

fn absolute(name: &str) -> Result<Name, LookupError> {
    let mut n = Name::from_ascii(name).map_err(|_| LookupError::NotFound)?;
    n.set_fqdn(true);
    Ok(n)
}

fn failure(e: NetError) -> LookupError {
    match &e {
        NetError::Dns(HickoryDnsError::NoRecordsFound(_)) => LookupError::NotFound,
        _ => LookupError::Temporary(e.to_string()),
    }
}

impl Dns for HickoryDns {
    fn txt<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>> {
        Box::pin(async move {
            let lookup = self.0.txt_lookup(absolute(name)?).await.map_err(failure)?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect())
        })
    }

    fn addrs<'a>(&'a self, name: &'a str, v6: bool) -> Lookup<'a, Vec<IpAddr>> {
        Box::pin(async move {
            let name = absolute(name)?;
            let lookup = if v6 {
                self.0.ipv6_lookup(name).await
            } else {
                self.0.ipv4_lookup(name).await
            }
            .map_err(failure)?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect())
        })
    }

    fn mx<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>> {
        Box::pin(async move {
            let lookup = self.0.mx_lookup(absolute(name)?).await.map_err(failure)?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some(mx.exchange.to_ascii()),
                    _ => None,
                })
                .collect())
        })
    }
}
