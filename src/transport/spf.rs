//! A small SPF evaluator (RFC 7208's check_host) for the no-backscatter rule: ip4, ip6, a, mx,
//! include, redirect and all, with the limit of 10 DNS-querying terms (§4.6.4) and at most 10 MX
//! names per `mx`. Whatever it does not evaluate (macros, `exists`, `ptr`) makes the result
//! Neutral, so that a doubt always lets the DSN go.
//!
//! Reads untrusted input (DNS answers): records are bounded in length, every look-up counts
//! against the limit, and the caller bounds the whole evaluation in time.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

/// RFC 7208 §2.6's results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpfResult {
    None,
    Neutral,
    Pass,
    /// The matched term (usually `-all`), as written in the record.
    Fail(String),
    SoftFail,
    TempError,
    PermError,
}

/// Why a look-up found nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// NXDOMAIN or no record of the type asked for.
    NotFound,
    /// Timeouts, SERVFAIL and the like.
    Temporary(String),
}

pub type Lookup<'a, T> = Pin<Box<dyn Future<Output = Result<T, LookupError>> + Send + 'a>>;

/// The DNS look-ups SPF needs; `name` is a domain without the trailing dot.
pub trait Dns: Sync {
    /// Each TXT record's strings joined (RFC 7208 §3.3).
    fn txt<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>>;
    /// A (`v6` false) or AAAA records.
    fn addrs<'a>(&'a self, name: &'a str, v6: bool) -> Lookup<'a, Vec<IpAddr>>;
    /// The MX exchanges' names.
    fn mx<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>>;
}

/// §4.6.4: DNS-querying terms per evaluation, and MX names per `mx`.
const MAX_LOOKUPS: u32 = 10;
const MAX_MX: usize = 10;
/// Longer than any sane record; a longer one is refused rather than parsed.
const MAX_RECORD: usize = 4096;

/// check_host(ip, domain): the SPF result of `domain` for a message from `ip`.
pub async fn check_host(dns: &dyn Dns, ip: IpAddr, domain: &str) -> SpfResult {
    let mut lookups = 0;
    check(dns, ip, domain.trim_end_matches('.'), &mut lookups).await
}

fn check<'a>(
    dns: &'a dyn Dns,
    ip: IpAddr,
    domain: &'a str,
    lookups: &'a mut u32,
) -> Pin<Box<dyn Future<Output = SpfResult> + Send + 'a>> {
    Box::pin(async move {
        if !plain_domain(domain) {
            return SpfResult::None;
        }
        let record = match record(dns, domain).await {
            Ok(Some(r)) => r,
            Ok(None) => return SpfResult::None,
            Err(e) => return e,
        };
        let terms: Vec<&str> = record.split_ascii_whitespace().skip(1).collect();
        let has_all = terms.iter().any(|t| {
            t.trim_start_matches(['+', '-', '~', '?'])
                .eq_ignore_ascii_case("all")
        });
        let mut redirect = None;
        for term in &terms {
            if let Some((name, value)) = term.split_once('=')
                && !name.contains(':')
            {
                if name.eq_ignore_ascii_case("redirect") {
                    redirect = Some(value);
                }
                // Other modifiers (exp, unknown ones) do not change the result (§6).
                continue;
            }
            let (qualifier, mechanism) = match term.as_bytes()[0] {
                b'+' | b'-' | b'~' | b'?' => (term.as_bytes()[0], &term[1..]),
                _ => (b'+', *term),
            };
            match matches(dns, ip, domain, mechanism, lookups).await {
                Ok(false) => {}
                Ok(true) => {
                    return match qualifier {
                        b'-' => SpfResult::Fail((*term).to_string()),
                        b'~' => SpfResult::SoftFail,
                        b'?' => SpfResult::Neutral,
                        _ => SpfResult::Pass,
                    };
                }
                Err(r) => return r,
            }
        }
        // §6.1: redirect applies only when nothing matched and the record has no "all".
        match redirect {
            Some(target) if !has_all => {
                if !count(lookups) {
                    return SpfResult::PermError;
                }
                if target.contains('%') {
                    return SpfResult::Neutral;
                }
                match check(dns, ip, target, lookups).await {
                    SpfResult::None => SpfResult::PermError,
                    r => r,
                }
            }
            _ => SpfResult::Neutral,
        }
    })
}

/// The domain's one SPF record; Err with the result when there is none to evaluate.
async fn record(dns: &dyn Dns, domain: &str) -> Result<Option<String>, SpfResult> {
    let txt = match dns.txt(domain).await {
        Ok(t) => t,
        Err(LookupError::NotFound) => return Ok(None),
        Err(LookupError::Temporary(_)) => return Err(SpfResult::TempError),
    };
    let mut spf = txt.into_iter().filter(|t| {
        let lower = t.get(..6).map(|p| p.eq_ignore_ascii_case("v=spf1"));
        lower == Some(true) && t[6..].chars().next().is_none_or(|c| c == ' ')
    });
    match (spf.next(), spf.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(SpfResult::PermError),
        (Some(r), None) if r.len() > MAX_RECORD || !r.is_ascii() => Err(SpfResult::PermError),
        (Some(r), None) => Ok(Some(r)),
    }
}

/// Counts one DNS-querying term; false past the limit.
fn count(lookups: &mut u32) -> bool {
    *lookups += 1;
    *lookups <= MAX_LOOKUPS
}

/// Whether one mechanism matches `ip`; Err with the result that ends the evaluation.
async fn matches(
    dns: &dyn Dns,
    ip: IpAddr,
    domain: &str,
    mechanism: &str,
    lookups: &mut u32,
) -> Result<bool, SpfResult> {
    let (name, arg) = match mechanism.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => match mechanism.split_once('/') {
            Some((n, _)) => (n, None),
            None => (mechanism, None),
        },
    };
    let name = name.to_ascii_lowercase();
    // A macro in any argument: not evaluated here.
    if arg.is_some_and(|a| a.contains('%')) {
        return Err(SpfResult::Neutral);
    }
    match name.as_str() {
        "all" if arg.is_none() => Ok(true),
        "ip4" | "ip6" => {
            let arg = arg.ok_or(SpfResult::PermError)?;
            let net: ipnet::IpNet = match arg.split_once('/') {
                Some(_) => arg.parse().map_err(|_| SpfResult::PermError)?,
                None => {
                    ipnet::IpNet::from(arg.parse::<IpAddr>().map_err(|_| SpfResult::PermError)?)
                }
            };
            if matches!(net, ipnet::IpNet::V4(_)) != (name == "ip4") {
                return Err(SpfResult::PermError);
            }
            Ok(net.contains(&unmapped(ip)))
        }
        "a" | "mx" => {
            if !count(lookups) {
                return Err(SpfResult::PermError);
            }
            let (target, v4_len, v6_len) = dual_cidr(domain, mechanism)?;
            let hosts = if name == "mx" {
                match dns.mx(&target).await {
                    Ok(h) if h.len() > MAX_MX => return Err(SpfResult::PermError),
                    Ok(h) => h,
                    Err(LookupError::NotFound) => return Ok(false),
                    Err(LookupError::Temporary(_)) => return Err(SpfResult::TempError),
                }
            } else {
                vec![target]
            };
            let ip = unmapped(ip);
            let (v6, len) = match ip {
                IpAddr::V4(_) => (false, v4_len),
                IpAddr::V6(_) => (true, v6_len),
            };
            for h in hosts {
                let addrs = match dns.addrs(h.trim_end_matches('.'), v6).await {
                    Ok(a) => a,
                    Err(LookupError::NotFound) => continue,
                    Err(LookupError::Temporary(_)) => return Err(SpfResult::TempError),
                };
                for a in addrs {
                    if let Ok(net) = ipnet::IpNet::new(a, len)
                        && net.trunc().contains(&ip)
                    {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        }
        "include" => {
            if !count(lookups) {
                return Err(SpfResult::PermError);
            }
            let target = arg.ok_or(SpfResult::PermError)?;
            // §5.2: only the included record's Pass matches; its errors are this record's.
            match check(dns, ip, target, lookups).await {
                SpfResult::Pass => Ok(true),
                SpfResult::Fail(_) | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                SpfResult::TempError => Err(SpfResult::TempError),
                SpfResult::None | SpfResult::PermError => Err(SpfResult::PermError),
            }
        }
        // Known, but not evaluated here: the doubt lets the DSN go.
        "exists" | "ptr" => Err(SpfResult::Neutral),
        _ => Err(SpfResult::PermError),
    }
}

/// `a` and `mx`'s target domain and prefix lengths: `a`, `a:d`, `a/24`, `a:d/24//64`, `a//64`.
fn dual_cidr(domain: &str, mechanism: &str) -> Result<(String, u8, u8), SpfResult> {
    let rest = match mechanism.find([':', '/']) {
        Some(i) => &mechanism[i..],
        None => "",
    };
    let (target, cidr) = match rest.strip_prefix(':') {
        Some(r) => match r.find('/') {
            Some(i) => (&r[..i], &r[i..]),
            None => (r, ""),
        },
        None => (domain, rest),
    };
    let (v4, v6) = match cidr.split_once("//") {
        Some((v4, v6)) => (v4, Some(v6)),
        None => (cidr, None),
    };
    let len = |s: &str, max: u8| -> Result<u8, SpfResult> {
        match s.strip_prefix('/').unwrap_or(s) {
            "" => Ok(max),
            n => match n.parse::<u8>() {
                Ok(l) if l <= max => Ok(l),
                _ => Err(SpfResult::PermError),
            },
        }
    };
    let v4_len = len(v4, 32)?;
    let v6_len = match v6 {
        Some(s) => len(s, 128)?,
        None => 128,
    };
    if target.is_empty() || !plain_domain(target) {
        return Err(SpfResult::PermError);
    }
    Ok((target.to_string(), v4_len, v6_len))
}

/// An IPv4-mapped IPv6 address is checked as the IPv4 address it carries.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A domain this evaluator looks up: ASCII labels, no empty label, at most 253 characters.
fn plain_domain(d: &str) -> bool {
    let d = d.trim_end_matches('.');
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Records by name: "txt", "a", "aaaa" or "mx" and the name.
    #[derive(Default)]
    struct Zone(HashMap<(&'static str, String), Vec<String>>);

    impl Zone {
        fn with(mut self, kind: &'static str, name: &str, values: &[&str]) -> Zone {
            self.0.insert(
                (kind, name.to_string()),
                values.iter().map(|s| s.to_string()).collect(),
            );
            self
        }
        fn get(&self, kind: &'static str, name: &str) -> Result<Vec<String>, LookupError> {
            if name.starts_with("tempfail") {
                return Err(LookupError::Temporary("SERVFAIL".into()));
            }
            self.0
                .get(&(kind, name.to_string()))
                .cloned()
                .ok_or(LookupError::NotFound)
        }
    }

    impl Dns for Zone {
        fn txt<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>> {
            Box::pin(async move { self.get("txt", name) })
        }
        fn addrs<'a>(&'a self, name: &'a str, v6: bool) -> Lookup<'a, Vec<IpAddr>> {
            Box::pin(async move {
                let kind = if v6 { "aaaa" } else { "a" };
                Ok(self
                    .get(kind, name)?
                    .iter()
                    .map(|s| s.parse().unwrap())
                    .collect())
            })
        }
        fn mx<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>> {
            Box::pin(async move { self.get("mx", name) })
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    async fn spf(zone: &Zone, from: &str, domain: &str) -> SpfResult {
        check_host(zone, ip(from), domain).await
    }

    #[tokio::test]
    async fn ip4_ip6_and_all() {
        let z = Zone::default()
            .with(
                "txt",
                "d.example",
                &["v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all"],
            )
            .with("txt", "soft.example", &["v=spf1 ip4:192.0.2.1 ~all"])
            .with("txt", "open.example", &["v=spf1 +all"])
            .with("txt", "none.example", &["google-site-verification=x"]);
        assert_eq!(spf(&z, "192.0.2.9", "d.example").await, SpfResult::Pass);
        assert_eq!(spf(&z, "2001:db8::1", "d.example").await, SpfResult::Pass);
        assert_eq!(
            spf(&z, "::ffff:192.0.2.9", "d.example").await,
            SpfResult::Pass
        );
        assert_eq!(
            spf(&z, "198.51.100.1", "d.example").await,
            SpfResult::Fail("-all".into())
        );
        assert_eq!(
            spf(&z, "198.51.100.1", "soft.example").await,
            SpfResult::SoftFail
        );
        assert_eq!(
            spf(&z, "198.51.100.1", "open.example").await,
            SpfResult::Pass
        );
        assert_eq!(
            spf(&z, "198.51.100.1", "none.example").await,
            SpfResult::None
        );
        assert_eq!(
            spf(&z, "198.51.100.1", "missing.example").await,
            SpfResult::None
        );
        assert_eq!(
            spf(&z, "198.51.100.1", "tempfail.example").await,
            SpfResult::TempError
        );
    }

    #[tokio::test]
    async fn a_mx_include_and_redirect() {
        let z = Zone::default()
            .with(
                "txt",
                "d.example",
                &["v=spf1 a mx/24 include:other.example -all"],
            )
            .with("a", "d.example", &["192.0.2.1"])
            .with("mx", "d.example", &["mx.d.example"])
            .with("a", "mx.d.example", &["198.51.100.7"])
            .with(
                "txt",
                "other.example",
                &["v=spf1 a:host.other.example ?all"],
            )
            .with("a", "host.other.example", &["203.0.113.5"])
            .with("txt", "r.example", &["v=spf1 redirect=d.example"])
            .with("txt", "r2.example", &["v=spf1 redirect=nothing.example"]);
        assert_eq!(spf(&z, "192.0.2.1", "d.example").await, SpfResult::Pass);
        assert_eq!(
            spf(&z, "198.51.100.200", "d.example").await,
            SpfResult::Pass
        );
        assert_eq!(spf(&z, "203.0.113.5", "d.example").await, SpfResult::Pass);
        // The include's ?all does not match: the outer -all decides.
        assert_eq!(
            spf(&z, "192.0.2.2", "d.example").await,
            SpfResult::Fail("-all".into())
        );
        assert_eq!(
            spf(&z, "192.0.2.2", "r.example").await,
            SpfResult::Fail("-all".into())
        );
        assert_eq!(
            spf(&z, "192.0.2.2", "r2.example").await,
            SpfResult::PermError
        );
    }

    #[tokio::test]
    async fn limits_and_what_is_not_evaluated() {
        let mut z = Zone::default();
        // A chain of 12 includes: past the 10-lookup limit.
        for i in 0..12 {
            let next = format!("v=spf1 include:l{}.example -all", i + 1);
            z = z.with("txt", &format!("l{i}.example"), &[next.as_str()]);
        }
        let z = z
            .with("txt", "two.example", &["v=spf1 -all", "v=spf1 +all"])
            .with("txt", "macro.example", &["v=spf1 a:%{i}.x.example -all"])
            .with("txt", "exists.example", &["v=spf1 exists:x.example -all"])
            .with("txt", "loop.example", &["v=spf1 include:loop.example -all"])
            .with("txt", "bad.example", &["v=spf1 ip4:300.1.1.1 -all"]);
        assert_eq!(
            spf(&z, "192.0.2.1", "l0.example").await,
            SpfResult::PermError
        );
        assert_eq!(
            spf(&z, "192.0.2.1", "two.example").await,
            SpfResult::PermError
        );
        assert_eq!(
            spf(&z, "192.0.2.1", "macro.example").await,
            SpfResult::Neutral
        );
        assert_eq!(
            spf(&z, "192.0.2.1", "exists.example").await,
            SpfResult::Neutral
        );
        assert_eq!(
            spf(&z, "192.0.2.1", "loop.example").await,
            SpfResult::PermError
        );
        assert_eq!(
            spf(&z, "192.0.2.1", "bad.example").await,
            SpfResult::PermError
        );
    }

    #[test]
    fn dual_cidr_forms() {
        assert_eq!(dual_cidr("d", "a").unwrap(), ("d".into(), 32, 128));
        assert_eq!(dual_cidr("d", "a/24").unwrap(), ("d".into(), 24, 128));
        assert_eq!(
            dual_cidr("d", "mx:e.example/24//64").unwrap(),
            ("e.example".into(), 24, 64)
        );
        assert_eq!(dual_cidr("d", "a//64").unwrap(), ("d".into(), 32, 64));
        assert!(dual_cidr("d", "a/33").is_err());
        assert!(dual_cidr("d", "a:").is_err());
    }
}
