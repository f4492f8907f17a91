//! Routing: a relayed recipient's domain -> the send connector and next hop (reference §4.2).
//!
//! Pure functions over the organisation's send connectors; no I/O, no DNS. The queue manager
//! calls `RoutingTable::route` per recipient domain and files the recipient under the returned
//! next hop, or in the Unreachable queue.
//!
//! Selection (reference §4.2, seed 002):
//! 1. keep connectors that are enabled, usable by this server (SourceTransportServers lists it by
//!    name or FQDN, or is empty), have an SMTP address space matching the domain, and whose
//!    MaxMessageSize (None = unlimited) is at least the message size;
//! 2. the most specific address space wins (`sales.contoso.com` > `*.contoso.com` > `*`);
//! 3. then the lowest address-space cost;
//! 4. then the alphanumerically lowest connector name.
//!
//! hubgate has one AD site, so IsScopedConnector narrows nothing beyond SourceTransportServers,
//! and the site-link part of Exchange's aggregate cost is always zero.
//!
//! Reads only configuration; the recipient domain comes from an envelope and is only compared.

use std::time::Duration;

use uuid::Uuid;

use crate::org::accepted_domain;
use crate::org::send_connector::AddressSpace;
use crate::org::{AcceptedDomain, Org, SendConnector, TransportServer};
use crate::smtp::client::Myself;
use crate::smtp::proto::Reply;

/// Where a route leaves this server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextHop {
    /// DNSRoutingEnabled: MX lookup of the recipient domain.
    Dns { domain: String },
    /// Tried in order with failover.
    SmartHosts { hosts: Vec<String>, port: u16 },
}

/// Exchange's DeliveryType as the queue viewer shows it (reference §6.2; Exchange 2010 names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryType {
    DnsConnectorDelivery,
    /// Local mailbox delivery; Exchange 2010 called its store delivery queue MapiDelivery.
    MapiDelivery,
    SmartHostConnectorDelivery,
    Unreachable,
    /// Shadow copies of messages handed to a primary (one queue per primary and connector).
    ShadowRedundancy,
}

impl DeliveryType {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryType::DnsConnectorDelivery => "DnsConnectorDelivery",
            DeliveryType::MapiDelivery => "MapiDelivery",
            DeliveryType::SmartHostConnectorDelivery => "SmartHostConnectorDelivery",
            DeliveryType::Unreachable => "Unreachable",
            DeliveryType::ShadowRedundancy => "ShadowRedundancy",
        }
    }
}

impl std::fmt::Display for DeliveryType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What identifies one delivery queue: Exchange keys its queues by (type, next-hop domain, connector).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NextHopKey {
    pub delivery_type: DeliveryType,
    pub next_hop_domain: String,
    pub connector_id: Option<Uuid>,
}

impl NextHopKey {
    /// The queue of recipients no connector can take (NextHopDomain as Exchange shows it).
    pub fn unreachable() -> NextHopKey {
        NextHopKey {
            delivery_type: DeliveryType::Unreachable,
            next_hop_domain: "Unreachable Domain".into(),
            connector_id: None,
        }
    }
}

/// The chosen send connector and where it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub connector_id: Uuid,
    pub connector_name: String,
    pub next_hop: NextHop,
    /// The address space that won, as `SMTP:<space>;<cost>`, for the tracking log and console.
    pub address_space: String,
}

impl Route {
    pub fn delivery_type(&self) -> DeliveryType {
        match self.next_hop {
            NextHop::Dns { .. } => DeliveryType::DnsConnectorDelivery,
            NextHop::SmartHosts { .. } => DeliveryType::SmartHostConnectorDelivery,
        }
    }

    /// DNS routes queue per recipient domain; smart-host routes share one queue per connector,
    /// shown under the smart-host list (**INFERRED** comma-joined when there are several).
    pub fn next_hop_domain(&self) -> String {
        match &self.next_hop {
            NextHop::Dns { domain } => domain.clone(),
            NextHop::SmartHosts { hosts, .. } => hosts.join(","),
        }
    }

    pub fn next_hop_key(&self) -> NextHopKey {
        NextHopKey {
            delivery_type: self.delivery_type(),
            next_hop_domain: self.next_hop_domain(),
            connector_id: Some(self.connector_id),
        }
    }
}

/// The outcome of routing one recipient domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Route(Route),
    /// No connector matches: the recipient waits in the Unreachable queue until expiry or a
    /// resubmit after a connector is added.
    Unroutable,
    /// Connectors match the domain but every one is too small for the message: NDR now.
    TooLarge {
        largest_limit: u64,
    },
}

impl Decision {
    /// The NDR diagnostic for a recipient that cannot be routed (reference §4.2, §7).
    pub fn no_next_hop_reply() -> Reply {
        Reply::new(550, "5.4.4", "ROUTING.NoNextHop; unable to route")
    }

    pub fn size_limit_reply() -> Reply {
        Reply::new(
            550,
            "5.3.4",
            "ROUTING.SizeLimit; message size exceeds fixed maximum size for route",
        )
    }
}

/// How specific an address-space match is. Ordered so that larger is more specific: a longer
/// domain beats a shorter one, and at equal length an exact space beats `*.` of the same domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity {
    matched_len: usize,
    exact: bool,
}

/// One SMTP address space, lowered once so that routing does no parsing per recipient.
#[derive(Clone, Debug)]
struct Space {
    pattern: Pattern,
    cost: u8,
    display: String,
}

#[derive(Clone, Debug)]
enum Pattern {
    Any,
    DomainAndSubdomains(String),
    Exact(String),
}

impl Space {
    fn from_address_space(space: &AddressSpace) -> Option<Space> {
        // Non-SMTP spaces (X400 and the like) can never carry an SMTP recipient.
        if !space.address_type.eq_ignore_ascii_case("SMTP") {
            return None;
        }
        let domain = normalize_domain(&space.domain);
        let pattern = if domain == "*" {
            Pattern::Any
        } else if let Some(base) = domain.strip_prefix("*.") {
            Pattern::DomainAndSubdomains(base.to_string())
        } else {
            Pattern::Exact(domain)
        };
        Some(Space {
            pattern,
            cost: space.cost,
            display: space.to_string(),
        })
    }

    fn matches(&self, domain: &str) -> Option<Specificity> {
        match &self.pattern {
            Pattern::Any => Some(Specificity {
                matched_len: 0,
                exact: false,
            }),
            Pattern::Exact(d) => (d == domain).then_some(Specificity {
                matched_len: d.len(),
                exact: true,
            }),
            Pattern::DomainAndSubdomains(base) => {
                let sub = domain
                    .strip_suffix(base.as_str())
                    .is_some_and(|head| head.is_empty() || head.ends_with('.'));
                sub.then_some(Specificity {
                    matched_len: base.len(),
                    exact: false,
                })
            }
        }
    }
}

/// A connector this server may use, with its address spaces parsed.
#[derive(Clone, Debug)]
struct Candidate {
    id: Uuid,
    name: String,
    spaces: Vec<Space>,
    max_message_size: Option<u64>,
    next_hop: Hop,
}

#[derive(Clone, Debug)]
enum Hop {
    Dns,
    SmartHosts { hosts: Vec<String>, port: u16 },
}

/// The routing view of the organisation for one server; rebuild it when configuration changes.
#[derive(Clone, Debug, Default)]
pub struct RoutingTable {
    candidates: Vec<Candidate>,
}

impl RoutingTable {
    /// Keeps the enabled connectors that `server_name` / `server_fqdn` may use.
    pub fn build(connectors: &[SendConnector], server_name: &str, server_fqdn: &str) -> Self {
        let candidates = connectors
            .iter()
            .filter(|c| c.enabled && usable_by(c, server_name, server_fqdn))
            .map(|c| Candidate {
                id: c.id,
                name: c.name.clone(),
                spaces: c
                    .parsed_address_spaces()
                    .iter()
                    .filter_map(Space::from_address_space)
                    .collect(),
                max_message_size: c.max_message_size.map(|m| u64::try_from(m).unwrap_or(0)),
                next_hop: if c.dns_routing_enabled {
                    Hop::Dns
                } else {
                    Hop::SmartHosts {
                        hosts: c.smart_hosts.clone(),
                        port: u16::try_from(c.port).unwrap_or(25),
                    }
                },
            })
            .collect();
        RoutingTable { candidates }
    }

    /// Picks the connector for a recipient in `domain` carrying a message of `size` bytes.
    pub fn route(&self, domain: &str, size: u64) -> Decision {
        let domain = normalize_domain(domain);
        let mut best: Option<(&Candidate, &Space, Specificity)> = None;
        let mut largest_refused: Option<u64> = None;
        for cand in &self.candidates {
            let Some((space, spec)) = best_space(&cand.spaces, &domain) else {
                continue;
            };
            if let Some(limit) = cand.max_message_size.filter(|&limit| size > limit) {
                largest_refused = largest_refused.max(Some(limit));
                continue;
            }
            if best.is_none_or(|b| better(cand, space, spec, b)) {
                best = Some((cand, space, spec));
            }
        }
        match (best, largest_refused) {
            (Some((cand, space, _)), _) => Decision::Route(Route {
                connector_id: cand.id,
                connector_name: cand.name.clone(),
                next_hop: match &cand.next_hop {
                    Hop::Dns => NextHop::Dns { domain },
                    Hop::SmartHosts { hosts, port } => NextHop::SmartHosts {
                        hosts: hosts.clone(),
                        port: *port,
                    },
                },
                address_space: space.display.clone(),
            }),
            (None, Some(largest_limit)) => Decision::TooLarge { largest_limit },
            (None, None) => Decision::Unroutable,
        }
    }
}

/// This server for an MX look-up: `fqdn` and where its enabled receive connectors listen, from
/// the configuration snapshot (no database query per look-up), so that neither a delivery nor a
/// recipient callout goes to a domain's MX host that is this server (RFC 5321 §5.1).
pub fn myself(fqdn: &str, org: &Org, port: u16) -> Myself {
    let bindings = org
        .receive_connectors
        .iter()
        .filter(|c| c.enabled)
        .flat_map(|c| c.parsed_bindings())
        .map(|b| b.0)
        .collect();
    Myself::here(fqdn, bindings, port)
}

/// One-shot form of `RoutingTable::build(..).route(..)`, for callers that route once.
pub fn select_route(
    connectors: &[SendConnector],
    server_name: &str,
    server_fqdn: &str,
    domain: &str,
    size: u64,
) -> Decision {
    RoutingTable::build(connectors, server_name, server_fqdn).route(domain, size)
}

fn usable_by(c: &SendConnector, server_name: &str, server_fqdn: &str) -> bool {
    c.source_transport_servers.is_empty()
        || c.source_transport_servers.iter().any(|s| {
            let s = s.trim();
            s.eq_ignore_ascii_case(server_name) || s.eq_ignore_ascii_case(server_fqdn)
        })
}

/// A connector's own best space for the domain: most specific, then cheapest.
fn best_space<'a>(spaces: &'a [Space], domain: &str) -> Option<(&'a Space, Specificity)> {
    spaces
        .iter()
        .filter_map(|s| s.matches(domain).map(|spec| (s, spec)))
        .min_by(|(a, sa), (b, sb)| sb.cmp(sa).then(a.cost.cmp(&b.cost)))
}

fn better(
    cand: &Candidate,
    space: &Space,
    spec: Specificity,
    (best, best_space, best_spec): (&Candidate, &Space, Specificity),
) -> bool {
    spec.cmp(&best_spec)
        .reverse()
        .then(space.cost.cmp(&best_space.cost))
        .then_with(|| name_order(&cand.name, &best.name))
        .is_lt()
}

/// Names differing only in case still need a fixed order, so that every node picks the same one.
fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.to_lowercase()
        .cmp(&b.to_lowercase())
        .then_with(|| a.cmp(b))
}

fn normalize_domain(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_lowercase()
}

/// The Limits-tab timers that apply to one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveTimeouts {
    pub message_expiration_timeout: Duration,
    pub delay_notification_timeout: Duration,
}

/// Resolves MessageExpirationTimeout and DelayNotificationTimeout for a recipient.
///
/// Exchange has only the server's Limits tab. hubgate adds per-domain and per-connector overrides
/// (issue 4, from the backup-MX article in seed 004), resolved for each timer on its own:
/// 1. the accepted domain that covers the recipient's domain (most specific entry), if it sets one;
/// 2. else the send connector the recipient was routed through, if any and if it sets one;
/// 3. else the TransportServer's value.
///
/// The accepted domain comes first because it names whose mail it is (one customer's domain on a
/// backup MX), while a connector may carry many customers' mail.
pub fn effective_timeouts(
    server: &TransportServer,
    accepted_domains: &[AcceptedDomain],
    connector: Option<&SendConnector>,
    recipient_domain: &str,
) -> EffectiveTimeouts {
    let domain = accepted_domain::find(accepted_domains, &normalize_domain(recipient_domain));
    let pick = |from_domain: Option<i64>, from_connector: Option<i64>, server: i64| {
        seconds(from_domain.or(from_connector).unwrap_or(server))
    };
    EffectiveTimeouts {
        message_expiration_timeout: pick(
            domain.and_then(|d| d.message_expiration_timeout),
            connector.and_then(|c| c.message_expiration_timeout),
            server.message_expiration_timeout,
        ),
        delay_notification_timeout: pick(
            domain.and_then(|d| d.delay_notification_timeout),
            connector.and_then(|c| c.delay_notification_timeout),
            server.delay_notification_timeout,
        ),
    }
}

/// Durations are whole seconds in the schema, checked positive there.
fn seconds(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

#[cfg(test)]
mod tests;
