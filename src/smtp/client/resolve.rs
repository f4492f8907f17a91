//! Finding the next hop in DNS: MX records with the implicit-MX fallback (RFC 5321 §5.1), null
//! MX (RFC 7505), and address look-ups for smart hosts.
//!
//! Reads untrusted input (DNS answers). The number of MX hosts followed and of addresses kept per
//! host is capped, so a hostile zone cannot make one delivery attempt unbounded.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData};
use rand::seq::SliceRandom;

use super::ClientError;
use super::myself::{Candidate, Kept, Myself, without_me};
use crate::smtp::proto::Reply;

/// Postfix follows at most 5 MX addresses per delivery; a few more hosts keep failover useful
/// without letting a zone with hundreds of MX records fan out into hundreds of queries.
const MAX_MX_HOSTS: usize = 10;
const MAX_ADDRS_PER_HOST: usize = 8;
const DNS_PORT: u16 = 53;

/// One host to try, with its addresses in the order to try them (IPv4 first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Without the trailing dot; used for logs and as the TLS server name.
    pub host: String,
    pub addrs: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN, or a domain with neither MX nor address records.
    #[error("{0}: nonexistent domain")]
    NonExistentDomain(String),
    /// RFC 7505: the domain declares that it accepts no mail.
    #[error("{0}: the domain publishes a null MX and accepts no mail")]
    NullMx(String),
    /// RFC 5321 §5.1: this server is the domain's most preferred MX host.
    #[error("{0}: the MX records lead back to this server")]
    MxLoopback(String),
    #[error("{domain}: invalid DNS data: {detail}")]
    InvalidData { domain: String, detail: String },
    /// Timeouts, SERVFAIL, REFUSED, unreachable servers, every MX host unresolvable.
    #[error("{domain}: DNS query failed: {detail}")]
    Transient { domain: String, detail: String },
}

impl DnsError {
    /// Exchange's texts (reference §7) where Exchange has one.
    pub fn reply(&self) -> Reply {
        match self {
            DnsError::NonExistentDomain(_) => Reply::new(
                554,
                "5.4.4",
                "SMTPSEND.DNS.NonExistentDomain; nonexistent domain",
            ),
            // RFC 7505 §4.2 names this code; Exchange 2010 predates null MX.
            DnsError::NullMx(_) => Reply::new(556, "5.1.10", "Recipient address has null MX"),
            DnsError::MxLoopback(_) => Reply::new(
                554,
                "5.4.4",
                "SMTPSEND.DNS.MxLoopback; DNS records for this domain are configured in a loop",
            ),
            DnsError::InvalidData { .. } => Reply::new(
                554,
                "5.4.4",
                "SMTPSEND.DNS.InvalidData; DNS returned an invalid response for this domain",
            ),
            DnsError::Transient { .. } => Reply::new(451, "4.4.0", "DNS query failed"),
        }
    }

    pub fn is_permanent(&self) -> bool {
        !matches!(self, DnsError::Transient { .. })
    }
}

/// How one hickory look-up ended, reduced to what the MX algorithm needs.
enum Failure {
    NxDomain,
    /// The name exists but has no record of the type asked for.
    NoData,
    Invalid(String),
    Transient(String),
}

fn classify(e: &NetError) -> Failure {
    match e {
        NetError::Dns(HickoryDnsError::NoRecordsFound(nr)) => match nr.response_code {
            ResponseCode::NXDomain => Failure::NxDomain,
            ResponseCode::NoError => Failure::NoData,
            _ => Failure::Transient(e.to_string()),
        },
        // Encoding and decoding errors: a response that does not parse, or a name that cannot be
        // a domain. Neither improves on retry.
        NetError::Proto(_) => Failure::Invalid(e.to_string()),
        // SERVFAIL, REFUSED, timeouts, I/O and anything added later: temporary by default.
        _ => Failure::Transient(e.to_string()),
    }
}

/// Parses one ExternalDNSServers entry: `ip`, `ip:port` or `[ipv6]:port`; the port defaults to 53.
pub fn parse_dns_server(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, DNS_PORT));
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, DNS_PORT));
    }
    s.parse::<SocketAddr>().ok().filter(|a| a.port() != 0)
}

/// An IP literal as written for a smart host or in a domain literal: `1.2.3.4`, `[1.2.3.4]`,
/// `[IPv6:2001:db8::1]` or `2001:db8::1`.
fn ip_literal(s: &str) -> Option<IpAddr> {
    let inner = match s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(inner) => inner,
        None => return s.parse().ok(),
    };
    let inner = match inner.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("IPv6:") => &inner[5..],
        _ => inner,
    };
    inner.parse().ok()
}

/// Absolute, so that resolv.conf's search list is never appended to a mail domain.
fn absolute_name(domain: &str) -> Result<Name, DnsError> {
    let invalid = |detail: String| DnsError::InvalidData {
        domain: domain.to_string(),
        detail,
    };
    if domain.is_empty() || domain.starts_with('.') || domain.contains("..") {
        return Err(invalid("not a domain name".into()));
    }
    let mut name = Name::from_utf8(domain).map_err(|e| invalid(e.to_string()))?;
    name.set_fqdn(true);
    Ok(name)
}

fn display_name(name: &Name) -> String {
    let s = name.to_utf8();
    s.strip_suffix('.').unwrap_or(&s).to_string()
}

/// The system's or the TransportServer's DNS servers (ExternalDNSServers).
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    /// The servers of /etc/resolv.conf.
    pub fn system() -> Result<Resolver, ClientError> {
        Resolver::build(&[], |_| {})
    }

    /// Explicit servers, each asked over UDP and, for truncated answers, TCP. /etc/hosts is not
    /// consulted: an administrator who names DNS servers expects only them to answer.
    pub fn with_servers(servers: &[SocketAddr]) -> Result<Resolver, ClientError> {
        if servers.is_empty() {
            return Err(ClientError::Config("no DNS servers given".into()));
        }
        Resolver::build(servers, |_| {})
    }

    /// The one set-up every DNS user of the gateway shares: the TransportServer's
    /// ExternalDNSServers as stored (`ip`, `ip:port`, `[ipv6]:port`), or the system's servers
    /// when there are none. `tune` adjusts what a caller needs of its own (a look-up's timeout,
    /// the cache) after the defaults are set.
    pub fn configured(
        servers: &[String],
        tune: impl FnOnce(&mut ResolverOpts),
    ) -> Result<Resolver, ClientError> {
        let addrs: Vec<SocketAddr> = servers.iter().filter_map(|s| parse_dns_server(s)).collect();
        if addrs.is_empty() && !servers.is_empty() {
            // Set-TransportServer refuses such entries; a row written by other means must not
            // quietly fall back to resolvers the administrator did not choose.
            return Err(ClientError::Config(format!(
                "no usable DNS server in ExternalDNSServers ({})",
                servers.join(", ")
            )));
        }
        Resolver::build(&addrs, tune)
    }

    /// `servers`, or the system's when empty; then `tune`.
    fn build(
        servers: &[SocketAddr],
        tune: impl FnOnce(&mut ResolverOpts),
    ) -> Result<Resolver, ClientError> {
        let mut builder = if servers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| ClientError::Config(format!("reading the system DNS settings: {e}")))?
        } else {
            let name_servers = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            let config = ResolverConfig::from_name_servers(name_servers);
            let mut builder =
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
            let opts = builder.options_mut();
            opts.use_hosts_file = ResolveHosts::Never;
            opts.timeout = Duration::from_secs(5);
            builder
        };
        let opts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        tune(opts);
        let inner = builder
            .build()
            .map_err(|e| ClientError::Config(format!("building the DNS resolver: {e}")))?;
        Ok(Resolver { inner })
    }

    /// The hickory resolver underneath, for look-ups other than the next hop's (SPF).
    pub fn hickory(&self) -> &TokioResolver {
        &self.inner
    }

    /// The hosts to try for `domain`, most preferred first. Equal preferences are shuffled
    /// (RFC 5321 §5.1 asks for load spreading among them). MX hosts that do not resolve are
    /// skipped; when none resolves the error is transient.
    pub async fn mx_targets(&self, domain: &str) -> Result<Vec<Target>, DnsError> {
        self.mx_targets_except(domain, &Myself::nobody()).await
    }

    /// As [`Resolver::mx_targets`], without `me` and every MX host of equal or greater
    /// preference (RFC 5321 §5.1). When `me` is the most preferred host, the domain's mail
    /// would come back here: `MxLoopback`. The implicit MX and an IP literal count as one host
    /// of preference 0, so a domain whose address is this server loops too.
    pub async fn mx_targets_except(
        &self,
        domain: &str,
        me: &Myself,
    ) -> Result<Vec<Target>, DnsError> {
        let candidates = if let Some(ip) = ip_literal(domain) {
            vec![Candidate {
                preference: 0,
                host: domain.to_string(),
                addrs: Ok(vec![ip]),
            }]
        } else {
            let name = absolute_name(domain)?;
            let hosts = match self.inner.mx_lookup(name.clone()).await {
                Ok(lookup) => mx_hosts(domain, lookup.answers().iter().map(|r| &r.data))?,
                Err(e) => match classify(&e) {
                    Failure::NoData => Vec::new(),
                    Failure::NxDomain => {
                        return Err(DnsError::NonExistentDomain(domain.to_string()));
                    }
                    Failure::Invalid(detail) => return Err(invalid(domain, detail)),
                    Failure::Transient(detail) => return Err(transient(domain, detail)),
                },
            };
            if hosts.is_empty() {
                let implicit = self.implicit_mx(domain, name).await?;
                vec![Candidate {
                    preference: 0,
                    host: implicit.host,
                    addrs: Ok(implicit.addrs),
                }]
            } else {
                self.resolve_hosts(hosts).await
            }
        };
        match without_me(candidates, me) {
            Kept::Loop => Err(DnsError::MxLoopback(domain.to_string())),
            Kept::Hosts(kept) => targets(domain, kept),
        }
    }

    /// RFC 5321 §5.1: without MX records the domain itself is the mail host.
    async fn implicit_mx(&self, domain: &str, name: Name) -> Result<Target, DnsError> {
        match self.addrs(name).await {
            Ok(addrs) if !addrs.is_empty() => Ok(Target {
                host: domain.trim_end_matches('.').to_string(),
                addrs,
            }),
            Ok(_) | Err(Failure::NoData) | Err(Failure::NxDomain) => {
                Err(DnsError::NonExistentDomain(domain.to_string()))
            }
            Err(Failure::Invalid(detail)) => Err(invalid(domain, detail)),
            Err(Failure::Transient(detail)) => Err(transient(domain, detail)),
        }
    }

    /// Every MX host's addresses, or why it has none, in the order given.
    async fn resolve_hosts(&self, hosts: Vec<(u16, Name)>) -> Vec<Candidate> {
        // In parallel: one dead MX host must not add its full timeout to every other look-up.
        let mut set = tokio::task::JoinSet::new();
        for (i, (_, host)) in hosts.iter().enumerate() {
            let resolver = self.clone();
            let host = host.clone();
            set.spawn(async move { (i, resolver.addrs(host).await) });
        }
        let mut results: Vec<Result<Vec<IpAddr>, String>> =
            vec![Err("the look-up task failed".to_string()); hosts.len()];
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, Ok(addrs))) => results[i] = Ok(addrs),
                Ok((i, Err(f))) => {
                    results[i] = Err(match f {
                        Failure::NxDomain => "nonexistent".to_string(),
                        Failure::NoData => "no address".to_string(),
                        Failure::Invalid(d) | Failure::Transient(d) => d,
                    })
                }
                Err(e) => tracing::warn!("an MX host look-up task failed: {e}"),
            }
        }
        hosts
            .iter()
            .zip(results)
            .map(|((preference, h), addrs)| Candidate {
                preference: *preference,
                host: display_name(h),
                addrs,
            })
            .collect()
    }

    /// A smart host's addresses; an IP literal is used as is, without DNS.
    pub async fn host_addrs(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![ip]);
        }
        let name = absolute_name(host)?;
        match self.addrs(name).await {
            Ok(addrs) if !addrs.is_empty() => Ok(addrs),
            Ok(_) | Err(Failure::NoData) | Err(Failure::NxDomain) => {
                Err(DnsError::NonExistentDomain(host.to_string()))
            }
            Err(Failure::Invalid(detail)) => Err(invalid(host, detail)),
            Err(Failure::Transient(detail)) => Err(transient(host, detail)),
        }
    }

    /// A and AAAA, IPv4 first (most next hops are reachable over IPv4; a broken IPv6 route
    /// would otherwise cost a connect timeout per message), deduplicated and capped.
    async fn addrs(&self, name: Name) -> Result<Vec<IpAddr>, Failure> {
        let lookup = self.inner.lookup_ip(name).await.map_err(|e| classify(&e))?;
        let mut addrs: Vec<IpAddr> = Vec::new();
        for ip in lookup.iter() {
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
        addrs.sort_by_key(|ip| ip.is_ipv6());
        addrs.truncate(MAX_ADDRS_PER_HOST);
        Ok(addrs)
    }
}

/// MX answers to (preference, host name) in the order to try them. Only a lone `.` exchange is
/// a null MX; mixed with real hosts it is a misconfiguration and skipped.
fn mx_hosts<'a>(
    domain: &str,
    answers: impl Iterator<Item = &'a RData>,
) -> Result<Vec<(u16, Name)>, DnsError> {
    let mut mx: Vec<(u16, Name)> = answers
        .filter_map(|d| match d {
            RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
            _ => None,
        })
        .collect();
    if !mx.is_empty() && mx.iter().all(|(_, h)| h.is_root()) {
        return Err(DnsError::NullMx(domain.to_string()));
    }
    mx.retain(|(_, h)| !h.is_root());
    mx.shuffle(&mut rand::rng());
    // Stable, so the shuffle decides only among equal preferences.
    mx.sort_by_key(|(pref, _)| *pref);
    // A host listed twice keeps its best preference (the list is sorted).
    let mut hosts: Vec<(u16, Name)> = Vec::new();
    for (pref, h) in mx {
        if !hosts.iter().any(|(_, seen)| *seen == h) {
            hosts.push((pref, h));
        }
    }
    hosts.truncate(MAX_MX_HOSTS);
    Ok(hosts)
}

/// The candidates that resolved; none is a transient failure naming the last reason.
fn targets(domain: &str, candidates: Vec<Candidate>) -> Result<Vec<Target>, DnsError> {
    let mut last_error = String::from("no MX host has an address");
    let mut out = Vec::new();
    for c in candidates {
        match c.addrs {
            Ok(addrs) if !addrs.is_empty() => out.push(Target {
                host: c.host,
                addrs,
            }),
            Ok(_) => last_error = format!("{}: no address", c.host),
            Err(why) => last_error = format!("{}: {why}", c.host),
        }
    }
    if out.is_empty() {
        return Err(transient(domain, last_error));
    }
    Ok(out)
}

fn invalid(domain: &str, detail: String) -> DnsError {
    DnsError::InvalidData {
        domain: domain.to_string(),
        detail,
    }
}

fn transient(domain: &str, detail: String) -> DnsError {
    DnsError::Transient {
        domain: domain.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::MX;

    #[test]
    fn dns_server_entries() {
        let cases: &[(&str, Option<&str>)] = &[
            ("192.0.2.1", Some("192.0.2.1:53")),
            (" 192.0.2.1:5353 ", Some("192.0.2.1:5353")),
            ("2001:db8::1", Some("[2001:db8::1]:53")),
            ("[2001:db8::1]", Some("[2001:db8::1]:53")),
            ("[2001:db8::1]:54", Some("[2001:db8::1]:54")),
            ("192.0.2.1:0", None),
            ("192.0.2.1:70000", None),
            ("dns.example", None),
            ("", None),
        ];
        for (input, want) in cases {
            let got = parse_dns_server(input);
            let want = want.map(|w| w.parse::<SocketAddr>().unwrap());
            assert_eq!(got, want, "input {input:?}");
        }
    }

    #[test]
    fn ip_literals() {
        let cases: &[(&str, Option<&str>)] = &[
            ("192.0.2.7", Some("192.0.2.7")),
            ("[192.0.2.7]", Some("192.0.2.7")),
            ("[IPv6:2001:db8::7]", Some("2001:db8::7")),
            ("[ipv6:2001:db8::7]", Some("2001:db8::7")),
            ("2001:db8::7", Some("2001:db8::7")),
            ("smarthost.example", None),
            ("[smarthost.example]", None),
        ];
        for (input, want) in cases {
            let want = want.map(|w| w.parse::<IpAddr>().unwrap());
            assert_eq!(ip_literal(input), want, "input {input:?}");
        }
    }

    fn mx(pref: u16, host: &str) -> RData {
        RData::MX(MX::new(pref, Name::from_utf8(host).unwrap()))
    }

    fn names(hosts: &[(u16, Name)]) -> Vec<String> {
        hosts.iter().map(|(_, h)| display_name(h)).collect()
    }

    #[test]
    fn mx_order_and_null_mx() {
        let answers = [
            mx(20, "b.example."),
            mx(10, "a.example."),
            mx(30, "c.example."),
            mx(10, "a.example."),
        ];
        let got = mx_hosts("example", answers.iter()).unwrap();
        assert_eq!(names(&got), ["a.example", "b.example", "c.example"]);

        let null = [mx(0, ".")];
        assert_eq!(
            mx_hosts("example", null.iter()),
            Err(DnsError::NullMx("example".into()))
        );
        let mixed = [mx(0, "."), mx(10, "a.example.")];
        assert_eq!(
            names(&mx_hosts("example", mixed.iter()).unwrap()),
            ["a.example"]
        );
        assert!(mx_hosts("example", [].iter()).unwrap().is_empty());

        let many: Vec<RData> = (0..50).map(|i| mx(i, &format!("h{i}.example."))).collect();
        assert_eq!(
            mx_hosts("example", many.iter()).unwrap().len(),
            MAX_MX_HOSTS
        );
    }

    #[test]
    fn each_host_keeps_its_best_preference() {
        let answers = [
            mx(30, "b.example."),
            mx(20, "a.example."),
            mx(10, "b.example."),
        ];
        let got = mx_hosts("example", answers.iter()).unwrap();
        let prefs: Vec<(u16, String)> = got.iter().map(|(p, h)| (*p, display_name(h))).collect();
        assert_eq!(prefs, [(10, "b.example".into()), (20, "a.example".into())]);
    }

    #[test]
    fn equal_preferences_are_shuffled_but_stay_behind_better_ones() {
        let answers: Vec<RData> = std::iter::once(mx(5, "first.example."))
            .chain((0..8).map(|i| mx(10, &format!("h{i}.example."))))
            .collect();
        let mut orders = std::collections::HashSet::new();
        for _ in 0..20 {
            let got = names(&mx_hosts("example", answers.iter()).unwrap());
            assert_eq!(got[0], "first.example");
            orders.insert(got);
        }
        assert!(orders.len() > 1, "20 draws of 8! orders were all equal");
    }

    #[test]
    fn dns_error_replies() {
        let cases = [
            (
                DnsError::NonExistentDomain("x".into()),
                "554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain",
                true,
            ),
            (
                invalid("x", "bad".into()),
                "554 5.4.4 SMTPSEND.DNS.InvalidData; DNS returned an invalid response for this domain",
                true,
            ),
            (
                transient("x", "timeout".into()),
                "451 4.4.0 DNS query failed",
                false,
            ),
            (
                DnsError::NullMx("x".into()),
                "556 5.1.10 Recipient address has null MX",
                true,
            ),
            (
                DnsError::MxLoopback("x".into()),
                "554 5.4.4 SMTPSEND.DNS.MxLoopback; DNS records for this domain are configured in a loop",
                true,
            ),
        ];
        for (e, want, permanent) in cases {
            assert_eq!(e.reply().one_line(), want);
            assert_eq!(e.is_permanent(), permanent, "{e:?}");
        }
    }

    #[test]
    fn names_are_made_absolute_and_junk_refused() {
        assert!(absolute_name("example.test").unwrap().is_fqdn());
        assert!(absolute_name("example.test.").unwrap().is_fqdn());
        for bad in ["", ".example", "a..b"] {
            assert!(
                matches!(absolute_name(bad), Err(DnsError::InvalidData { .. })),
                "{bad:?}"
            );
        }
    }
}
