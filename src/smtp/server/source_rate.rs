//! MaxConnectionRatePerMinutePerSource (hubgate's own, on Set-TransportServer): a connection
//! rate per source address, checked at connect before the server-wide
//! MaxConnectionRatePerMinute, so that one flooding source cannot spend the whole server's
//! rate and lock the others out.
//!
//! IPv6 sources are counted per /64: one host usually holds a whole /64, and counting single
//! addresses would let it rotate through them. Allow-listed sources are exempt (the caller
//! checks). Memory is bounded: an entry whose bucket has refilled is the same as no entry and is
//! pruned; past `MAX_SOURCES` the least recently seen tenth goes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::Gateway;
use super::agent_log::{AgentDecision, AgentSite, track_agent_decision};
use super::connection_filter::AGENT;
use crate::org::ReceiveConnector;
use crate::smtp::proto::Reply;

/// The most sources tracked at once.
pub const MAX_SOURCES: usize = 100_000;

/// A bucket refills completely within this time, after which its entry carries nothing.
const REFILL: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Set at the first refusal of a dry spell, so a flood is logged once, not per connection.
    refusing: bool,
}

/// The verdict on one connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the rate; `first` for the first refusal since the source was last allowed.
    Refused {
        first: bool,
    },
}

#[derive(Debug)]
pub struct SourceRates {
    buckets: HashMap<IpAddr, Bucket>,
    cap: usize,
    last_prune: Option<Instant>,
}

impl Default for SourceRates {
    fn default() -> Self {
        SourceRates {
            buckets: HashMap::new(),
            cap: MAX_SOURCES,
            last_prune: None,
        }
    }
}

/// The key a source is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

impl SourceRates {
    /// Takes one connection from `ip`'s bucket at `now`, `per_minute` being its size and its
    /// refill per minute.
    pub fn take(&mut self, per_minute: i32, ip: IpAddr, now: Instant) -> Verdict {
        let k = key(ip);
        let due = self
            .last_prune
            .is_none_or(|t| now.saturating_duration_since(t) >= REFILL);
        if due || (self.buckets.len() >= self.cap && !self.buckets.contains_key(&k)) {
            self.prune(now);
        }
        let capacity = f64::from(per_minute.max(1));
        let b = self.buckets.entry(k).or_insert(Bucket {
            tokens: capacity,
            last: now,
            refusing: false,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * capacity / REFILL.as_secs_f64()).min(capacity);
        b.last = now;
        if b.tokens < 1.0 {
            let first = !b.refusing;
            b.refusing = true;
            return Verdict::Refused { first };
        }
        b.tokens -= 1.0;
        b.refusing = false;
        Verdict::Allowed
    }

    fn prune(&mut self, now: Instant) {
        self.last_prune = Some(now);
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.last) < REFILL);
        if self.buckets.len() < self.cap {
            return;
        }
        // Every source active within the minute: the least recently seen tenth goes at once,
        // so that a stream of new sources costs one scan per `cap / 10` of them.
        let mut lasts: Vec<Instant> = self.buckets.values().map(|b| b.last).collect();
        if lasts.is_empty() {
            return;
        }
        let cut = (self.cap / 10).max(1).min(lasts.len() - 1);
        let (_, nth, _) = lasts.select_nth_unstable(cut);
        let nth = *nth;
        self.buckets.retain(|_, b| b.last > nth);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// The refusal of a connection over its source's rate.
pub fn refusal() -> Reply {
    Reply::new(
        421,
        "4.3.2",
        "The maximum connection rate per minute from this source has exceeded a limit, closing transmission channel",
    )
}

/// The first refusal of a dry spell on record: a protocol log line (when the connector logs)
/// and a tracking DEFER naming the Connection Filtering Agent.
pub fn log_refusal(
    gw: &Gateway,
    connector: &ReceiveConnector,
    local: SocketAddr,
    remote: SocketAddr,
    per_minute: i32,
) {
    let reason = format!(
        "Connection rate of {} over MaxConnectionRatePerMinutePerSource ({per_minute}); refused until it slows down",
        key(remote.ip())
    );
    if connector.protocol_logging() {
        let mut log = gw.receive_log.session(
            connector.identity(),
            crate::logs::protocol::new_session_id(),
            local,
            remote,
        );
        log.event('*', &reason, AGENT);
    }
    let site = AgentSite {
        gw,
        connector,
        local,
        remote,
        helo: None,
        sender: "",
    };
    track_agent_decision(
        &site,
        &AgentDecision {
            agent: AGENT,
            event_id: "DEFER",
            reply: &refusal(),
            reason: Some(&reason),
            recipients: &[],
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_is_cut_at_the_rate_and_refills() {
        let mut r = SourceRates::default();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(r.take(3, a, t0), Verdict::Allowed);
        }
        assert_eq!(r.take(3, a, t0), Verdict::Refused { first: true });
        assert_eq!(r.take(3, a, t0), Verdict::Refused { first: false });
        // Another source has its own bucket.
        assert_eq!(r.take(3, ip("192.0.2.2"), t0), Verdict::Allowed);
        // Three a minute: one more twenty seconds later, and a new dry spell is reported again.
        let t1 = t0 + Duration::from_secs(21);
        assert_eq!(r.take(3, a, t1), Verdict::Allowed);
        assert_eq!(r.take(3, a, t1), Verdict::Refused { first: true });
    }

    #[test]
    fn ipv6_counts_per_64() {
        let mut r = SourceRates::default();
        let t0 = Instant::now();
        assert_eq!(r.take(1, ip("2001:db8:1:2::1"), t0), Verdict::Allowed);
        assert!(matches!(
            r.take(1, ip("2001:db8:1:2::ffff"), t0),
            Verdict::Refused { .. }
        ));
        assert_eq!(r.take(1, ip("2001:db8:1:3::1"), t0), Verdict::Allowed);
        assert_eq!(r.take(1, ip("::ffff:192.0.2.9"), t0), Verdict::Allowed);
        assert!(matches!(
            r.take(1, ip("192.0.2.9"), t0),
            Verdict::Refused { .. }
        ));
    }

    #[test]
    fn entries_are_pruned_and_capped() {
        let mut r = SourceRates {
            cap: 100,
            ..SourceRates::default()
        };
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            r.take(5, a, t0 + Duration::from_millis(i.into()));
            assert!(r.len() <= 100, "{}", r.len());
        }
        // A minute on, every bucket has refilled: the next connection sweeps them out.
        r.take(5, ip("192.0.2.1"), t0 + Duration::from_secs(62));
        assert_eq!(r.len(), 1);
    }
}
