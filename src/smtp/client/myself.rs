//! RFC 5321 §5.1: "If the SMTP client finds its own host name among the MX records, it MUST
//! discard that record and any records of equal or greater preference value". A backup MX (the
//! domain's MX list names the primary and then this gateway) would otherwise hand the message
//! to itself whenever the primary is down, and loop until the hop count runs out.
//!
//! A host is this gateway when its name is the server's FQDN, or when connecting to one of its
//! addresses on the send connector's port would reach one of this server's receive connectors.
//! The port matters: another SMTP server on the same machine (a different port) is a different
//! mail host, not a loop. A wildcard binding (0.0.0.0, ::) listens on every local address: the
//! addresses of the local interfaces (getifaddrs) and the whole loopback range, which Linux
//! delivers locally although the interface carries only 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Who "this server" is for one delivery attempt's MX look-up.
#[derive(Debug, Clone, Default)]
pub struct Myself {
    /// Lower case, without the trailing dot; empty matches no host.
    fqdn: String,
    /// Where this server's enabled receive connectors listen.
    bindings: Vec<SocketAddr>,
    /// The port the send connector connects to.
    port: u16,
    /// The local interfaces' addresses, for the wildcard bindings.
    interfaces: Vec<IpAddr>,
}

impl Myself {
    /// `interfaces` lists the local addresses a wildcard binding covers besides loopback.
    pub fn new(fqdn: &str, bindings: Vec<SocketAddr>, port: u16, interfaces: Vec<IpAddr>) -> Self {
        Myself {
            fqdn: normalize(fqdn),
            bindings,
            port,
            interfaces: interfaces.into_iter().map(|ip| ip.to_canonical()).collect(),
        }
    }

    /// This machine now: the interfaces are read only when a wildcard binding is on `port`
    /// (they can change while the server runs, so they are read per attempt, not cached).
    pub fn here(fqdn: &str, bindings: Vec<SocketAddr>, port: u16) -> Self {
        let wildcard = bindings
            .iter()
            .any(|b| b.port() == port && b.ip().is_unspecified());
        let interfaces = if wildcard {
            interface_addrs()
        } else {
            Vec::new()
        };
        Myself::new(fqdn, bindings, port, interfaces)
    }

    /// Nobody: no MX host is discarded (the plain RFC 5321 look-up).
    pub fn nobody() -> Self {
        Myself::default()
    }

    /// Is the MX host `host`, with `addrs`, this server?
    pub fn is_me(&self, host: &str, addrs: &[IpAddr]) -> bool {
        (!self.fqdn.is_empty() && normalize(host) == self.fqdn)
            || addrs.iter().any(|ip| self.listens_on(*ip))
    }

    fn listens_on(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.bindings.iter().any(|b| {
            let bound = b.ip().to_canonical();
            b.port() == self.port
                && if bound.is_unspecified() {
                    bound.is_ipv4() == ip.is_ipv4()
                        && (ip.is_loopback() || self.interfaces.contains(&ip))
                } else {
                    bound == ip
                }
        })
    }
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// One MX host of a domain with its look-up's outcome: its addresses, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub preference: u16,
    pub host: String,
    pub addrs: Result<Vec<IpAddr>, String>,
}

/// The MX list after RFC 5321 §5.1's rule, most preferred first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// What remains to try (possibly nothing, when no host resolved at all).
    Hosts(Vec<Candidate>),
    /// This server has the best preference: the domain's mail would loop back here.
    Loop,
}

/// Discards every host that is this server and every host of equal or greater preference.
pub fn without_me(candidates: Vec<Candidate>, me: &Myself) -> Kept {
    let cut = candidates
        .iter()
        .filter(|c| me.is_me(&c.host, c.addrs.as_deref().unwrap_or(&[])))
        .map(|c| c.preference)
        .min();
    let Some(cut) = cut else {
        return Kept::Hosts(candidates);
    };
    let kept: Vec<Candidate> = candidates
        .into_iter()
        .filter(|c| c.preference < cut)
        .collect();
    if kept.is_empty() {
        Kept::Loop
    } else {
        Kept::Hosts(kept)
    }
}

/// Every address of every local interface; empty (loopback is still local) if the system will
/// not say.
fn interface_addrs() -> Vec<IpAddr> {
    // A machine with more interfaces than this is not a mail gateway's; the bound keeps the walk
    // finite whatever the list holds.
    const MAX_ENTRIES: usize = 4096;
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list it allocated, or fails and leaves it alone.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        tracing::warn!(
            "reading the local interfaces' addresses: {}",
            std::io::Error::last_os_error()
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = head;
    for _ in 0..MAX_ENTRIES {
        if cur.is_null() {
            break;
        }
        // SAFETY: `cur` is a non-null node of the list getifaddrs returned, not yet freed; its
        // `ifa_addr`, when set, points to a sockaddr of the family it names.
        unsafe {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = ifa.ifa_next;
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn socks(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn cand(preference: u16, host: &str, addrs: &[&str]) -> Candidate {
        Candidate {
            preference,
            host: host.into(),
            addrs: Ok(ips(addrs)),
        }
    }

    fn hosts(k: Kept) -> Vec<String> {
        match k {
            Kept::Hosts(h) => h.into_iter().map(|c| c.host).collect(),
            Kept::Loop => panic!("unexpected loop"),
        }
    }

    #[test]
    fn the_servers_own_name_in_any_case_and_with_a_trailing_dot() {
        let me = Myself::new("Hub1.Contoso.Test.", vec![], 25, vec![]);
        for name in [
            "hub1.contoso.test",
            "HUB1.CONTOSO.TEST.",
            "hub1.contoso.test.",
        ] {
            assert!(me.is_me(name, &[]), "{name}");
        }
        assert!(!me.is_me("hub2.contoso.test", &ips(&["192.0.2.1"])));
        assert!(!me.is_me("hub1.contoso.test.example", &[]));
        assert!(!Myself::nobody().is_me("", &ips(&["127.0.0.1"])));
    }

    #[test]
    fn an_address_a_specific_binding_listens_on_with_the_send_port() {
        let me = Myself::new(
            "hub1.contoso.test",
            socks(&["192.0.2.10:25", "[2001:db8::10]:25", "192.0.2.11:587"]),
            25,
            vec![],
        );
        assert!(me.is_me("mx.example", &ips(&["198.51.100.1", "192.0.2.10"])));
        assert!(me.is_me("mx.example", &ips(&["2001:db8::10"])));
        assert!(me.is_me("mx.example", &ips(&["::ffff:192.0.2.10"])));
        assert!(!me.is_me("mx.example", &ips(&["192.0.2.12"])));
        // Listening there, but not on the port the connector sends to: another mail host.
        assert!(!me.is_me("mx.example", &ips(&["192.0.2.11"])));
        // A specific binding does not make the rest of loopback local.
        let lo = Myself::new("", socks(&["127.0.0.1:25"]), 25, vec![]);
        assert!(lo.is_me("x", &ips(&["127.0.0.1"])));
        assert!(!lo.is_me("x", &ips(&["127.0.0.2"])));
    }

    #[test]
    fn a_wildcard_binding_covers_the_interfaces_and_loopback_of_its_family() {
        let v4 = Myself::new(
            "",
            socks(&["0.0.0.0:25"]),
            25,
            ips(&["127.0.0.1", "203.0.113.5", "2001:db8::5"]),
        );
        assert!(v4.is_me("x", &ips(&["203.0.113.5"])));
        assert!(v4.is_me("x", &ips(&["127.0.0.1"])));
        assert!(v4.is_me("x", &ips(&["127.45.0.9"])));
        assert!(!v4.is_me("x", &ips(&["203.0.113.6"])));
        assert!(!v4.is_me("x", &ips(&["2001:db8::5", "::1"])));
        let v6 = Myself::new("", socks(&["[::]:25"]), 25, ips(&["2001:db8::5"]));
        assert!(v6.is_me("x", &ips(&["2001:db8::5"])));
        assert!(v6.is_me("x", &ips(&["::1"])));
        assert!(!v6.is_me("x", &ips(&["203.0.113.5"])));
        let other_port = Myself::new("", socks(&["0.0.0.0:2525"]), 25, ips(&["203.0.113.5"]));
        assert!(!other_port.is_me("x", &ips(&["203.0.113.5", "127.0.0.1"])));
    }

    #[test]
    fn this_machine_has_loopback_among_its_interfaces() {
        let me = Myself::here("", socks(&["0.0.0.0:25"]), 25);
        assert!(
            me.interfaces.contains(&"127.0.0.1".parse().unwrap()),
            "{:?}",
            me.interfaces
        );
        // Without a wildcard binding on the port, nothing needs them.
        assert!(
            Myself::here("", socks(&["0.0.0.0:587"]), 25)
                .interfaces
                .is_empty()
        );
    }

    #[test]
    fn drops_me_and_every_mx_of_equal_or_greater_preference() {
        let me = Myself::new("hub1.contoso.test", socks(&["192.0.2.10:25"]), 25, vec![]);
        // Seed 004: the primary, then this gateway as the backup.
        let list = vec![
            cand(10, "primary.example", &["198.51.100.1"]),
            cand(20, "hub1.contoso.test", &["192.0.2.10"]),
        ];
        assert_eq!(hosts(without_me(list, &me)), ["primary.example"]);
        // Found by address alone; its peers at the same preference and worse ones go too.
        let list = vec![
            cand(5, "a.example", &["198.51.100.1"]),
            cand(10, "b.example", &["198.51.100.2"]),
            cand(20, "backup.example", &["192.0.2.10"]),
            cand(20, "c.example", &["198.51.100.3"]),
            cand(30, "d.example", &["198.51.100.4"]),
        ];
        assert_eq!(hosts(without_me(list, &me)), ["a.example", "b.example"]);
        // By name alone, even when it does not resolve or resolves elsewhere.
        let list = vec![
            cand(10, "a.example", &["198.51.100.1"]),
            Candidate {
                preference: 10,
                host: "HUB1.contoso.test".into(),
                addrs: Err("nonexistent".into()),
            },
        ];
        assert_eq!(without_me(list, &me), Kept::Loop);
        // Not me: the list is left as it is, unresolvable hosts included.
        let list = vec![
            Candidate {
                preference: 10,
                host: "a.example".into(),
                addrs: Err("timeout".into()),
            },
            cand(20, "b.example", &["198.51.100.2"]),
        ];
        assert_eq!(without_me(list.clone(), &me), Kept::Hosts(list));
        assert_eq!(without_me(vec![], &me), Kept::Hosts(vec![]));
    }

    #[test]
    fn me_at_the_best_preference_is_a_loop() {
        let me = Myself::new("hub1.contoso.test", socks(&["192.0.2.10:25"]), 25, vec![]);
        let list = vec![
            cand(10, "hub1.contoso.test", &["192.0.2.99"]),
            cand(20, "b.example", &["198.51.100.2"]),
        ];
        assert_eq!(without_me(list, &me), Kept::Loop);
        let list = vec![cand(0, "[192.0.2.10]", &["192.0.2.10"])];
        assert_eq!(without_me(list, &me), Kept::Loop);
        // An unresolvable better host is kept: it is a DNS problem that may heal, not a loop.
        let list = vec![
            Candidate {
                preference: 10,
                host: "primary.example".into(),
                addrs: Err("SERVFAIL".into()),
            },
            cand(20, "backup.example", &["192.0.2.10"]),
        ];
        assert_eq!(hosts(without_me(list, &me)), ["primary.example"]);
    }
}
