//! Which recipients of a relay domain exist, for the Recipient Filter agent: the imported list
//! (`valid_recipient`, held in the configuration snapshot), else what a recipient callout to the
//! domain's next hop learned.
//!
//! A callout is `MAIL FROM:<>` and `RCPT TO:<address>` (no DATA) to the host the message itself
//! would go to: the send connector routing picks for the domain, its smart hosts or the domain's
//! MX. Its answers are kept with their TTLs, in memory (bounded; loaded at start) and in
//! PostgreSQL, so that while the primary is down validation still answers from what was learned
//! before, even past the TTL. Concurrent RCPTs for one address share one callout.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::org::recipient_filter::CalloutResult;
use crate::org::{Org, OrgError};
use crate::smtp::client::{Client, ClientConfig, Resolver, TlsPolicy};
use crate::smtp::proto::Reply;
use crate::transport::routing::{self, Decision, NextHop};

/// The most callout results kept, in memory and in the table.
pub const MAX_CACHED: usize = 100_000;
/// The table is pruned back to MAX_CACHED rows after this many new results.
const PRUNE_EVERY: u64 = 1024;
/// Hosts tried per callout (smart hosts in order, or MX hosts by preference).
const MAX_HOSTS: usize = 3;

/// Where an answer came from, for the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    ImportedList,
    /// Recipient callouts are off: a relay domain without a list has no one to ask.
    NoList,
    Cache,
    /// The next hop did not answer; a result older than its TTL answered instead.
    ExpiredCache,
    Callout,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::ImportedList => "the imported valid recipients",
            Source::NoList => "no imported list and callouts off",
            Source::Cache => "a cached callout result",
            Source::ExpiredCache => "an expired callout result (the next hop did not answer)",
            Source::Callout => "a callout to the next hop",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    Valid(Source),
    Unknown(Source),
    /// Nobody could say: the sender should try again later. Why, for the logs.
    NoAnswer(String),
}

/// A callout's outcome, with the next hop's reply (or why there was none).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Probe {
    Valid(String),
    Unknown(String),
    NoAnswer(String),
}

#[derive(Clone, Copy, Debug)]
struct Cached {
    valid: bool,
    checked_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

pub struct Callouts {
    pool: PgPool,
    cache: Mutex<HashMap<String, Cached>>,
    in_flight: Mutex<HashMap<String, Arc<OnceCell<Probe>>>>,
    saved: AtomicU64,
    resolver: Mutex<Option<(Vec<String>, Resolver)>>,
}

impl Callouts {
    /// The stored results (the most recent MAX_CACHED) into memory.
    pub async fn load(pool: PgPool) -> Result<Callouts, OrgError> {
        CalloutResult::prune(&pool, MAX_CACHED as i64).await?;
        let rows = CalloutResult::load_recent(&pool, MAX_CACHED as i64).await?;
        let cache = rows
            .into_iter()
            .map(|r| {
                (
                    r.address,
                    Cached {
                        valid: r.valid,
                        checked_at: r.checked_at,
                        expires_at: r.expires_at,
                    },
                )
            })
            .collect();
        Ok(Callouts {
            pool,
            cache: Mutex::new(cache),
            in_flight: Mutex::new(HashMap::new()),
            saved: AtomicU64::new(0),
            resolver: Mutex::new(None),
        })
    }

    /// What is known of `address` (a relay domain's recipient), and whether a callout was made
    /// for it (`may_call_out` false: the session's callouts are spent).
    pub async fn check(&self, org: &Org, address: &str, may_call_out: bool) -> (Known, bool) {
        let address = address.trim().to_ascii_lowercase();
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        // The snapshot's copy of the list: no query per RCPT.
        if let Some(listed) = org.valid_recipients.lookup(&address, domain) {
            let k = if listed {
                Known::Valid(Source::ImportedList)
            } else {
                Known::Unknown(Source::ImportedList)
            };
            return (k, false);
        }
        if !org.recipient_filter.recipient_callout_enabled {
            // As Exchange's directory look-up: nothing in the list, nobody known.
            return (Known::Unknown(Source::NoList), false);
        }
        let now = OffsetDateTime::now_utc();
        let cached = lock(&self.cache).get(&address).copied();
        if let Some(c) = cached
            && c.expires_at > now
        {
            return (answer(c.valid, Source::Cache), false);
        }
        let stale = |why: String| match cached {
            Some(c) => answer(c.valid, Source::ExpiredCache),
            None => Known::NoAnswer(why),
        };
        if !may_call_out {
            return (
                stale("this session's recipient callouts are spent".into()),
                false,
            );
        }
        let probe = self.probe_once(org, &address).await;
        let (valid, reply) = match probe {
            Probe::Valid(r) => (true, r),
            Probe::Unknown(r) => (false, r),
            Probe::NoAnswer(why) => return (stale(why), true),
        };
        let cfg = &org.recipient_filter;
        let ttl = if valid {
            cfg.recipient_callout_valid_cache_timeout
        } else {
            cfg.recipient_callout_unknown_cache_timeout
        };
        let now = OffsetDateTime::now_utc();
        let result = CalloutResult {
            address: address.clone(),
            valid,
            reply,
            checked_at: now,
            expires_at: now + time::Duration::seconds(ttl.max(1)),
        };
        self.remember(&result);
        // Written through: a restart (the primary may be down by then) keeps what was learned.
        if let Err(e) = result.save(&self.pool).await {
            tracing::warn!("storing the callout result for {address}: {e}");
        } else if self.saved.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1
            && let Err(e) = CalloutResult::prune(&self.pool, MAX_CACHED as i64).await
        {
            tracing::warn!("pruning the callout results: {e}");
        }
        (answer(valid, Source::Callout), true)
    }

    fn remember(&self, r: &CalloutResult) {
        let mut cache = lock(&self.cache);
        if cache.len() >= MAX_CACHED && !cache.contains_key(&r.address) {
            // Only when full: the oldest result makes room.
            if let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, c)| c.checked_at)
                .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(
            r.address.clone(),
            Cached {
                valid: r.valid,
                checked_at: r.checked_at,
                expires_at: r.expires_at,
            },
        );
    }

    /// One callout per address at a time: later RCPTs for it wait for the first one's answer.
    async fn probe_once(&self, org: &Org, address: &str) -> Probe {
        let cell = lock(&self.in_flight)
            .entry(address.to_string())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let probe = cell
            .get_or_init(|| self.callout(org, address))
            .await
            .clone();
        let mut in_flight = lock(&self.in_flight);
        if in_flight
            .get(address)
            .is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            in_flight.remove(address);
        }
        probe
    }

    async fn callout(&self, org: &Org, address: &str) -> Probe {
        let secs = org.recipient_filter.recipient_callout_timeout.clamp(1, 120) as u64;
        let total = Duration::from_secs(secs);
        match tokio::time::timeout(total, self.call(org, address, total)).await {
            Ok(p) => p,
            Err(_) => Probe::NoAnswer(format!("no answer within {secs} s")),
        }
    }

    /// The route's resolver: ExternalDNSServers when its connector says
    /// UseExternalDNSServersEnabled (and some are set), else the system's; kept until the
    /// choice changes.
    fn resolver(&self, org: &Org, external: bool) -> Option<Resolver> {
        let servers: &[String] = if external {
            &org.server.external_dns_servers
        } else {
            &[]
        };
        let mut held = lock(&self.resolver);
        if let Some((key, r)) = held.as_ref()
            && key.as_slice() == servers
        {
            return Some(r.clone());
        }
        match Resolver::configured(servers, |_| {}) {
            Ok(r) => {
                *held = Some((servers.to_vec(), r.clone()));
                Some(r)
            }
            Err(e) => {
                tracing::warn!("recipient callouts: {e}");
                None
            }
        }
    }

    async fn call(&self, org: &Org, address: &str, total: Duration) -> Probe {
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let route = match routing::select_route(
            &org.send_connectors,
            &org.server.name,
            &org.server.fqdn,
            domain,
            0,
        ) {
            Decision::Route(r) => r,
            _ => return Probe::NoAnswer("no send connector routes the domain".into()),
        };
        let Some(connector) = org
            .send_connectors
            .iter()
            .find(|c| c.id == route.connector_id)
        else {
            return Probe::NoAnswer("the route's send connector is gone".into());
        };
        let Some(resolver) = self.resolver(org, connector.use_external_dns_servers_enabled) else {
            return Probe::NoAnswer("no DNS resolver".into());
        };
        let port = match &route.next_hop {
            NextHop::SmartHosts { port, .. } => *port,
            NextHop::Dns { .. } => u16::try_from(connector.port).unwrap_or(25),
        };
        let mut targets: Vec<(String, IpAddr)> = Vec::new();
        match &route.next_hop {
            NextHop::Dns { domain } => {
                match resolver
                    .mx_targets_except(domain, &routing::myself(&org.server.fqdn, org, port))
                    .await
                {
                    Ok(ts) => {
                        for t in ts {
                            targets.extend(t.addrs.iter().map(|ip| (t.host.clone(), *ip)));
                        }
                    }
                    Err(e) => return Probe::NoAnswer(e.to_string()),
                }
            }
            NextHop::SmartHosts { hosts, .. } => {
                for h in hosts {
                    if let Ok(addrs) = resolver.host_addrs(h).await {
                        let host = h.trim_matches(['[', ']']).to_string();
                        targets.extend(addrs.into_iter().map(|ip| (host.clone(), ip)));
                    }
                }
            }
        }
        let cfg = ClientConfig {
            helo_name: connector
                .fqdn
                .clone()
                .unwrap_or_else(|| org.server.fqdn.clone()),
            force_helo: connector.force_helo,
            tls: if connector.ignore_starttls {
                TlsPolicy::Never
            } else if connector.require_tls {
                TlsPolicy::Required
            } else {
                TlsPolicy::Opportunistic
            },
            // A primary takes mail for its own domain without a credential; the smart host's
            // password stays with deliveries.
            auth: None,
            timeout: total,
            connect_timeout: total,
            trust: Arc::new(rustls::RootCertStore::empty()),
            log: None,
        };
        let mut last = "no address to connect to".to_string();
        for (host, ip) in targets.into_iter().take(MAX_HOSTS) {
            let addr = SocketAddr::new(ip, port);
            match Client::connect(addr, &host, &cfg).await {
                Ok(mut client) => {
                    let r = client.probe_recipient(address).await;
                    client.quit().await;
                    match r {
                        Ok(reply) => return classify(&reply),
                        Err(e) => last = format!("{addr}: {e}"),
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        Probe::NoAnswer(last)
    }
}

fn answer(valid: bool, source: Source) -> Known {
    if valid {
        Known::Valid(source)
    } else {
        Known::Unknown(source)
    }
}

/// 2xx: the recipient exists; 550/551/553 with a 5.1.x code: it does not; anything else (a
/// policy refusal, a 4xx) says nothing about the recipient.
fn classify(r: &Reply) -> Probe {
    let line = r.one_line();
    let addressing = r.enhanced.as_deref().is_some_and(|e| e.starts_with("5.1."));
    match r.code {
        200..=299 => Probe::Valid(line),
        550 | 551 | 553 if addressing => Probe::Unknown(line),
        _ => Probe::NoAnswer(line),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// A next hop on loopback that takes `rcpt_delay` to answer each RCPT (250), counting its
    /// connections.
    async fn next_hop(rcpt_delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 primary.example ready\r\n").await;
                    while let Ok(Some(l)) = lines.next_line().await {
                        let verb = l.split_whitespace().next().unwrap_or("").to_uppercase();
                        if verb == "RCPT" {
                            tokio::time::sleep(rcpt_delay).await;
                        }
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" => b"250 primary.example\r\n",
                            "QUIT" => b"221 2.0.0 Bye\r\n",
                            _ => b"250 2.0.0 OK\r\n",
                        };
                        if w.write_all(reply).await.is_err() || verb == "QUIT" {
                            break;
                        }
                    }
                });
            }
        });
        (addr, connections)
    }

    fn org(next_hop: SocketAddr, timeout: i64) -> Org {
        let mut c = crate::org::SendConnector::new("Primary", &["primary.example"], "HUB1");
        c.dns_routing_enabled = false;
        c.smart_hosts = vec![next_hop.ip().to_string()];
        c.port = i32::from(next_hop.port());
        Org {
            server: crate::org::TransportServer::with_defaults("HUB1", "hub1.contoso.test"),
            config: crate::org::TransportConfig::with_defaults(),
            accepted_domains: Vec::new(),
            receive_connectors: Vec::new(),
            send_connectors: vec![c],
            permissions: Vec::new(),
            ip_lists: Vec::new(),
            sender_filter: Default::default(),
            ip_block_lists: Default::default(),
            valid_recipients: Default::default(),
            recipient_filter: crate::org::recipient_filter::RecipientFilterConfig {
                recipient_callout_timeout: timeout,
                ..Default::default()
            },
            local_fqdns: Vec::new(),
        }
    }

    /// Callouts whose database is never reached (`probe_once` does not use it).
    fn callouts() -> Callouts {
        Callouts {
            pool: PgPool::connect_lazy("postgres://127.0.0.1:1/unused").unwrap(),
            cache: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            saved: AtomicU64::new(0),
            resolver: Mutex::new(None),
        }
    }

    #[tokio::test]
    async fn concurrent_rcpts_for_one_address_share_one_callout() {
        let (addr, connections) = next_hop(Duration::from_millis(300)).await;
        let org = org(addr, 10);
        let c = callouts();
        let a = "alice@primary.example";
        let (p1, p2, p3) = tokio::join!(
            c.probe_once(&org, a),
            c.probe_once(&org, a),
            c.probe_once(&org, a)
        );
        for p in [p1, p2, p3] {
            assert!(matches!(p, Probe::Valid(_)), "{p:?}");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert!(lock(&c.in_flight).is_empty());
        // Another address is another callout.
        assert!(matches!(
            c.probe_once(&org, "bob@primary.example").await,
            Probe::Valid(_)
        ));
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_next_hop_slower_than_the_timeout_is_no_answer() {
        let (addr, _) = next_hop(Duration::from_secs(30)).await;
        let org = org(addr, 1);
        let started = std::time::Instant::now();
        let p = callouts().probe_once(&org, "alice@primary.example").await;
        assert!(matches!(p, Probe::NoAnswer(_)), "{p:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn replies_classify() {
        let p = |code, e: &str| classify(&Reply::new(code, e, "x"));
        assert!(matches!(p(250, "2.1.5"), Probe::Valid(_)));
        assert!(matches!(p(550, "5.1.1"), Probe::Unknown(_)));
        assert!(matches!(p(553, "5.1.3"), Probe::Unknown(_)));
        // A policy refusal or a temporary failure says nothing about the mailbox.
        assert!(matches!(p(550, "5.7.1"), Probe::NoAnswer(_)));
        assert!(matches!(p(550, ""), Probe::NoAnswer(_)));
        assert!(matches!(p(451, "4.3.0"), Probe::NoAnswer(_)));
    }
}
