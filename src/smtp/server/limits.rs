//! Connection and message-rate limits of receive connectors.

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

/// Message times in the last minute, per connector and rate source.
type RateWindows = HashMap<(Uuid, String), VecDeque<Instant>>;

#[derive(Clone, Default, Debug)]
pub struct ConnectionLimits {
    counts: Arc<Mutex<HashMap<Uuid, Counts>>>,
    messages: Arc<Mutex<RateWindows>>,
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
        let mut map = self.messages.lock().unwrap_or_else(|e| e.into_inner());
        let window = map.entry((rc.id, key)).or_default();
        let now = Instant::now();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            return false;
        }
        window.push_back(now);
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
}
