//! Receive connector bindings and remote IP ranges, in Exchange's syntax.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("'{0}' is not a valid binding; use IP:port, e.g. 0.0.0.0:25 or [::]:25")]
    Binding(String),
    #[error("'{0}' is not a valid binding; the port must be 1 to 65535")]
    Port(String),
    #[error(
        "'{0}' is not a valid remote IP range; use an address, a range a.b.c.d-w.x.y.z, or CIDR a.b.c.d/n"
    )]
    Range(String),
}

/// `IP:port` a receive connector listens on; 0.0.0.0 / :: mean every local address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Binding(pub SocketAddr);

impl Binding {
    pub fn is_wildcard(&self) -> bool {
        self.0.ip().is_unspecified()
    }
    /// Does a connection that arrived on `local` come in through this binding?
    pub fn covers(&self, local: SocketAddr) -> bool {
        self.0.port() == local.port()
            && (self.0.ip() == local.ip()
                || (self.is_wildcard() && self.0.is_ipv4() == canonical(local.ip()).is_ipv4()))
    }
}

impl FromStr for Binding {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let a = s
            .trim()
            .parse::<SocketAddr>()
            .map_err(|_| NetworkError::Binding(s.to_string()))?;
        // Port 0 would make the system pick a port nobody can be told about.
        if a.port() == 0 {
            return Err(NetworkError::Port(s.to_string()));
        }
        Ok(Binding(a))
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    pub start: IpAddr,
    pub end: IpAddr,
}

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) are compared as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.start.is_ipv4()
            && as_u128(self.start) <= as_u128(ip)
            && as_u128(ip) <= as_u128(self.end)
    }
    /// Number of addresses minus one, so the whole IPv6 space still fits in a u128.
    pub fn span(&self) -> u128 {
        as_u128(self.end) - as_u128(self.start)
    }
}

impl FromStr for IpRange {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NetworkError::Range(s.to_string());
        let t = s.trim();
        if let Some((a, b)) = t.split_once('-') {
            let start = canonical(a.trim().parse::<IpAddr>().map_err(|_| bad())?);
            let end = canonical(b.trim().parse::<IpAddr>().map_err(|_| bad())?);
            if start.is_ipv4() != end.is_ipv4() || as_u128(start) > as_u128(end) {
                return Err(bad());
            }
            return Ok(IpRange { start, end });
        }
        if let Some((a, n)) = t.split_once('/') {
            let base = canonical(a.trim().parse::<IpAddr>().map_err(|_| bad())?);
            let bits: u32 = n.trim().parse().map_err(|_| bad())?;
            let width = if base.is_ipv4() { 32 } else { 128 };
            if bits > width {
                return Err(bad());
            }
            let host_bits = width - bits;
            let mask: u128 = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            let start = as_u128(base) & !mask;
            let end = start | mask;
            let to_ip = |v: u128| -> IpAddr {
                if base.is_ipv4() {
                    IpAddr::V4(Ipv4Addr::from(v as u32))
                } else {
                    IpAddr::V6(Ipv6Addr::from(v))
                }
            };
            return Ok(IpRange {
                start: to_ip(start),
                end: to_ip(end),
            });
        }
        let ip = canonical(t.parse::<IpAddr>().map_err(|_| bad())?);
        Ok(IpRange { start: ip, end: ip })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            return write!(f, "{}", self.start);
        }
        // IPv6 ranges that are exact prefixes print as CIDR, which is how admins write them.
        if self.start.is_ipv6() {
            let span = self.span();
            if span == u128::MAX || (span.wrapping_add(1)).is_power_of_two() {
                let host_bits = if span == u128::MAX {
                    128
                } else {
                    (span + 1).trailing_zeros()
                };
                if as_u128(self.start) & span == 0 {
                    return write!(f, "{}/{}", self.start, 128 - host_bits);
                }
            }
        }
        write!(f, "{}-{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exchange_range_forms() {
        let all: IpRange = "0.0.0.0-255.255.255.255".parse().unwrap();
        assert!(all.contains("10.1.2.3".parse().unwrap()));
        assert!(!all.contains("::1".parse().unwrap()));
        assert!(all.contains("::ffff:10.1.2.3".parse().unwrap()));
        let one: IpRange = "127.0.0.2".parse().unwrap();
        assert_eq!(one.span(), 0);
        let cidr: IpRange = "192.168.1.77/24".parse().unwrap();
        assert_eq!(cidr.to_string(), "192.168.1.0-192.168.1.255");
        let v6: IpRange = "::/0".parse().unwrap();
        assert_eq!(v6.to_string(), "::/0");
        assert!("10.0.0.9-10.0.0.1".parse::<IpRange>().is_err());
        assert!("10.0.0.0/33".parse::<IpRange>().is_err());
        assert!("mail.contoso.com".parse::<IpRange>().is_err());
    }

    #[test]
    fn bindings_cover_local_addresses() {
        let any: Binding = "0.0.0.0:25".parse().unwrap();
        assert!(any.covers("127.0.0.5:25".parse().unwrap()));
        assert!(!any.covers("127.0.0.5:26".parse().unwrap()));
        let one: Binding = "127.0.0.2:25".parse().unwrap();
        assert!(!one.covers("127.0.0.3:25".parse().unwrap()));
        assert!("25".parse::<Binding>().is_err());
    }

    #[test]
    fn a_binding_needs_a_port_from_1_to_65535() {
        assert_eq!(
            "0.0.0.0:0".parse::<Binding>(),
            Err(NetworkError::Port("0.0.0.0:0".into()))
        );
        assert!("0.0.0.0:65536".parse::<Binding>().is_err());
        assert!("[::]:65535".parse::<Binding>().is_ok());
    }
}
