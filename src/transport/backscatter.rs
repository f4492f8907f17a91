//! No backscatter, the SPF rule: an NDR or delay DSN is not sent to a sender whose domain's SPF
//! fails (RFC 7208 "fail", as a `-all` record gives) for the address the message came from. The
//! sender was forged; the DSN would go to an innocent third party. Anything short of a definite
//! fail (softfail `~all`, neutral, none, errors, a look-up that times out) sends the DSN as
//! before. Messages received from authenticated sessions are not checked.
//!
//! The decision is the manager's (no SMTP session is involved): it is logged to the message
//! tracking log only, as the Sender Id Agent's AGENTINFO with the reason.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::rr::{Name, RData};

use super::spf::{self, Dns, Lookup, LookupError, SpfResult};
use crate::org::Org;

pub const AGENT: &str = "Sender Id Agent";

/// The whole evaluation's bound: the manager waits on it before queueing a DSN.
const EVALUATION_LIMIT: Duration = Duration::from_secs(15);

/// The message a DSN is about, as far as the rule needs it.
pub struct Origin<'a> {
    pub sender: &'a str,
    pub client_ip: Option<IpAddr>,
    pub authenticated: bool,
}

/// Why the DSN for `origin` is not sent, or None to send it.
pub async fn suppressed(org: &Org, origin: &Origin<'_>) -> Option<String> {
    if origin.authenticated {
        return None;
    }
    let ip = origin.client_ip?;
    let (_, domain) = origin.sender.rsplit_once('@')?;
    let dns = HickoryDns(resolver(&org.server.external_dns_servers)?);
    let result = tokio::time::timeout(EVALUATION_LIMIT, spf::check_host(&dns, ip, domain))
        .await
        .unwrap_or(SpfResult::TempError);
    match result {
        SpfResult::Fail(term) => Some(format!(
            "SPF of {domain} fails for {ip} ({term}): the DSN to {} is not sent (backscatter)",
            origin.sender
        )),
        _ => None,
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
    let built = if servers.is_empty() {
        crate::smtp::client::Resolver::system()
    } else {
        let addrs: Vec<SocketAddr> = servers
            .iter()
            .filter_map(|s| crate::smtp::client::parse_dns_server(s))
            .collect();
        crate::smtp::client::Resolver::with_servers(&addrs)
    };
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
