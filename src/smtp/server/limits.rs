//! Connection and message-rate limits of receive connectors, and the server's connection rate.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::org::ReceiveConnector;
use crate::smtp::proto::Reply;

#[derive(Default, Debug)]
struct Counts {
    total: u32,
    per_source: HashMap<IpAddr, u32>,
}

/// How far back MessageRateLimit looks.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The most rate sources tracked at once. Sources idle for a minute are dropped first; past the
/// cap (that many sources all active within the minute) the least recently active one is.
pub const MAX_RATE_SOURCES: usize = 100_000;

/// Message times in the last minute, per connector and rate source. Without pruning it would
/// keep one entry for every source address ever seen.
#[derive(Debug)]
struct RateWindows {
    windows: HashMap<(Uuid, String), VecDeque<Instant>>,
    cap: usize,
    last_prune: Option<Instant>,
}

impl Default for RateWindows {
    fn default() -> Self {
        RateWindows {
            windows: HashMap::new(),
            cap: MAX_RATE_SOURCES,
            last_prune: None,
        }
    }
}

impl RateWindows {
    /// Records a message from `key` at `now` unless `limit` were already sent in the minute.
    fn allow(&mut self, key: (Uuid, String), limit: usize, now: Instant) -> bool {
        let due = self
            .last_prune
            .is_none_or(|t| now.saturating_duration_since(t) >= RATE_WINDOW);
        if due || (self.windows.len() >= self.cap && !self.windows.contains_key(&key)) {
            self.prune(now);
        }
        let window = self.windows.entry(key).or_default();
        while window
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= RATE_WINDOW)
        {
            window.pop_front();
        }
        if window.len() >= limit {
            return false;
        }
        window.push_back(now);
        true
    }

    fn prune(&mut self, now: Instant) {
        self.last_prune = Some(now);
        self.windows.retain(|_, w| {
            w.back()
                .is_some_and(|t| now.saturating_duration_since(*t) < RATE_WINDOW)
        });
        while self.windows.len() >= self.cap {
            let Some(oldest) = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.back().copied())
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.windows.remove(&oldest);
        }
    }
}

/// A token bucket for MaxConnectionRatePerMinute: full at a minute's worth of connections,
/// refilled continuously, so bursts up to the limit pass and a sustained flood is held to it.
#[derive(Debug)]
struct ConnectionRate {
    tokens: f64,
    last: Instant,
}

#[derive(Clone, Default, Debug)]
pub struct ConnectionLimits {
    counts: Arc<Mutex<HashMap<Uuid, Counts>>>,
    messages: Arc<Mutex<RateWindows>>,
    connection_rate: Arc<Mutex<Option<ConnectionRate>>>,
    source_rates: Arc<Mutex<super::source_rate::SourceRates>>,
}

/// Held for the life of a connection; releases its slot when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: ConnectionLimits,
    connector: Uuid,
    source: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut map = self.limits.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get_mut(&self.connector) {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_source.get_mut(&self.source) {
                *n -= 1;
                if *n == 0 {
                    c.per_source.remove(&self.source);
                }
            }
        }
    }
}

impl ConnectionLimits {
    /// MaxInboundConnection, MaxInboundConnectionPerSource and
    /// MaxInboundConnectionPercentagePerSource, checked when a connection arrives.
    pub fn acquire(&self, rc: &ReceiveConnector, source: IpAddr) -> Result<ConnectionSlot, Reply> {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let c = map.entry(rc.id).or_default();
        if let Some(max) = rc.max_inbound_connection
            && c.total >= max as u32
        {
            return Err(Reply::new(
                421,
                "4.3.2",
                "The maximum number of concurrent server connections has exceeded a limit, closing transmission channel",
            ));
        }
        let from_source = c.per_source.get(&source).copied().unwrap_or(0);
        let mut per_source_cap = rc.max_inbound_connection_per_source.map(|n| n as u32);
        if let Some(max) = rc.max_inbound_connection {
            // The percentage applies to the connections still available on the connector.
            let remaining = (max as u32).saturating_sub(c.total) as u64;
            let pct =
                (remaining * rc.max_inbound_connection_percentage_per_source as u64).div_ceil(100);
            let pct = pct.max(1) as u32;
            per_source_cap = Some(per_source_cap.map_or(pct, |cap| cap.min(pct)));
        }
        if let Some(cap) = per_source_cap
            && from_source >= cap
        {
            return Err(Reply::new(
                421,
                "4.3.2",
                "The maximum number of concurrent connections has exceeded a limit, closing transmission channel",
            ));
        }
        c.total += 1;
        *c.per_source.entry(source).or_insert(0) += 1;
        Ok(ConnectionSlot {
            limits: self.clone(),
            connector: rc.id,
            source,
        })
    }

    /// The connections each receive connector holds now (the dashboard's live counts).
    pub fn connections(&self) -> HashMap<Uuid, u32> {
        let map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(_, c)| c.total > 0)
            .map(|(id, c)| (*id, c.total))
            .collect()
    }

    /// MessageRateLimit per MessageRateSource: may this source submit another message now?
    pub fn message_allowed(&self, rc: &ReceiveConnector, ip: IpAddr, user: Option<&str>) -> bool {
        let Some(limit) = rc.message_rate_limit else {
            return true;
        };
        let key = match rc.message_rate_source.as_str() {
            "None" => return true,
            "User" => match user {
                Some(u) => format!("user:{u}"),
                None => return true,
            },
            "All" => format!("{}|{}", ip, user.unwrap_or("")),
            _ => format!("ip:{ip}"),
        };
        let mut windows = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        windows.allow((rc.id, key), limit.max(0) as usize, Instant::now())
    }

    /// MaxConnectionRatePerMinutePerSource: may `source` open another connection now?
    pub fn source_connection(
        &self,
        per_minute: i32,
        source: IpAddr,
    ) -> super::source_rate::Verdict {
        let mut rates = self.source_rates.lock().unwrap_or_else(|e| e.into_inner());
        rates.take(per_minute, source, Instant::now())
    }

    /// MaxConnectionRatePerMinute of the transport server: may another connection be taken now?
    pub fn connection_allowed(&self, per_minute: i32) -> bool {
        self.connection_allowed_at(per_minute, Instant::now())
    }

    fn connection_allowed_at(&self, per_minute: i32, now: Instant) -> bool {
        let capacity = f64::from(per_minute.max(1));
        let mut rate = self
            .connection_rate
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let bucket = rate.get_or_insert(ConnectionRate {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * capacity / 60.0).min(capacity);
        bucket.last = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_source_and_total_caps() {
        let limits = ConnectionLimits::default();
        let mut rc = ReceiveConnector::new("S", "C", "s.test");
        rc.max_inbound_connection = Some(3);
        rc.max_inbound_connection_per_source = Some(2);
        rc.max_inbound_connection_percentage_per_source = 100;
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let s1 = limits.acquire(&rc, a).unwrap();
        let _s2 = limits.acquire(&rc, a).unwrap();
        assert!(
            limits
                .acquire(&rc, a)
                .unwrap_err()
                .to_wire()
                .contains("concurrent connections")
        );
        let _s3 = limits.acquire(&rc, b).unwrap();
        assert!(
            limits
                .acquire(&rc, b)
                .unwrap_err()
                .to_wire()
                .contains("concurrent server connections")
        );
        drop(s1);
        // One slot is free again; the percentage rule caps each source at that remaining slot.
        let c: IpAddr = "127.0.0.4".parse().unwrap();
        assert!(limits.acquire(&rc, c).is_ok());
    }

    #[test]
    fn message_rate_window() {
        let limits = ConnectionLimits::default();
        let mut rc = ReceiveConnector::new("S", "C", "s.test");
        rc.message_rate_limit = Some(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(limits.message_allowed(&rc, a, None));
        assert!(limits.message_allowed(&rc, a, None));
        assert!(!limits.message_allowed(&rc, a, None));
    }

    fn key(i: u32) -> (Uuid, String) {
        (Uuid::nil(), format!("ip:10.0.{}.{}", i / 256, i % 256))
    }

    #[test]
    fn idle_rate_sources_are_pruned() {
        let mut w = RateWindows::default();
        let t0 = Instant::now();
        for i in 0..1000 {
            assert!(w.allow(key(i), 5, t0));
        }
        assert_eq!(w.windows.len(), 1000);
        // A minute later every one of them is idle: the next message sweeps them out.
        assert!(w.allow(key(5000), 5, t0 + RATE_WINDOW));
        assert_eq!(w.windows.len(), 1);
    }

    #[test]
    fn rate_sources_are_capped() {
        let mut w = RateWindows {
            cap: 10,
            ..RateWindows::default()
        };
        let t0 = Instant::now();
        for i in 0..50 {
            assert!(w.allow(key(i), 2, t0 + Duration::from_millis(i as u64)));
            assert!(w.windows.len() <= 10);
        }
        // The newest sources are the ones kept, with their counts intact.
        let t = t0 + Duration::from_millis(60);
        assert!(w.allow(key(49), 2, t));
        assert!(!w.allow(key(49), 2, t));
        assert!(w.windows.len() <= 10);
    }

    #[test]
    fn connection_rate_bucket() {
        let limits = ConnectionLimits::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limits.connection_allowed_at(3, t0));
        }
        assert!(!limits.connection_allowed_at(3, t0));
        // Three a minute: one more about twenty seconds later.
        assert!(!limits.connection_allowed_at(3, t0 + Duration::from_secs(15)));
        assert!(limits.connection_allowed_at(3, t0 + Duration::from_secs(21)));
        assert!(!limits.connection_allowed_at(3, t0 + Duration::from_secs(21)));
    }
}
