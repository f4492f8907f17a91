//! Prometheus metrics: the series the node exports on `/metrics` (see `http`).
//!
//! Counting goes through the `metrics` facade, so the transport code only calls the small
//! functions below at the places it writes the tracking log; until [`install`] runs (the shell,
//! unit tests) they cost a no-op. Queue lengths are not counted as they change: they are read
//! from the queue manager's in-memory state at each scrape, so they can never drift from it.

pub mod http;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ipnet::IpNet;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use http::{AllowList, MetricsError};

const RECEIVED: &str = "hubgate_messages_received_total";
const DELIVERED: &str = "hubgate_messages_delivered_total";
const DEFERRED: &str = "hubgate_messages_deferred_total";
const FAILED: &str = "hubgate_messages_failed_total";
const QUEUE_LENGTH: &str = "hubgate_queue_length";
const SHADOW_QUEUE_LENGTH: &str = "hubgate_shadow_queue_length";
const CONNECTIONS: &str = "hubgate_connections";
const CONNECTIONS_TOTAL: &str = "hubgate_connections_total";
const CONNECTIONS_REFUSED: &str = "hubgate_connections_refused_total";
const DSN_SENT: &str = "hubgate_dsn_sent_total";
const LATENCY: &str = "hubgate_delivery_latency_seconds";
const BACK_PRESSURE: &str = "hubgate_back_pressure";

/// From a local delivery (well under a second) to a message that waited out a long outage.
const LATENCY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0,
    172800.0,
];

/// Messages per queue as the queue manager holds them at a scrape.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct QueueLengths {
    /// (queue: its NextHopDomain, or Submission / Poison; DeliveryType, messages)
    pub queues: Vec<(String, &'static str, u64)>,
    /// Messages with a shadow copy held here for a primary.
    pub shadow: u64,
}

type QueueSource = Arc<dyn Fn() -> QueueLengths + Send + Sync>;

/// The installed recorder, with what a scrape reads besides it.
pub struct Exporter {
    handle: PrometheusHandle,
    queues: OnceLock<QueueSource>,
    /// Queue label sets set at an earlier scrape: a queue that has gone reads 0 rather than its
    /// last length.
    seen: Mutex<HashSet<(String, &'static str)>>,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Installs the process's recorder (once; later calls return the same exporter). The gauges
/// that need no event start at 0, so that the first scrape already shows them.
pub fn install() -> Result<&'static Exporter, MetricsError> {
    if let Some(e) = EXPORTER.get() {
        return Ok(e);
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(LATENCY.into()), LATENCY_BUCKETS)
        .map_err(|e| MetricsError::Recorder(e.to_string()))?
        .install_recorder()
        .map_err(|e| MetricsError::Recorder(e.to_string()))?;
    describe();
    gauge!(BACK_PRESSURE).set(0.0);
    gauge!(SHADOW_QUEUE_LENGTH).set(0.0);
    let exporter = EXPORTER.get_or_init(|| Exporter {
        handle,
        queues: OnceLock::new(),
        seen: Mutex::new(HashSet::new()),
    });
    // Histogram samples wait in per-thread buffers until upkeep folds them in; without it they
    // would only grow between scrapes.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                exporter.handle.run_upkeep();
            }
        });
    }
    Ok(exporter)
}

/// The exporter, when [`install`] has run in this process.
pub fn exporter() -> Option<&'static Exporter> {
    EXPORTER.get()
}

impl Exporter {
    /// Where a scrape reads the queue lengths from (the queue manager, once it runs).
    pub fn set_queue_source(&self, f: impl Fn() -> QueueLengths + Send + Sync + 'static) {
        let _ = self.queues.set(Arc::new(f));
    }

    /// The Prometheus text exposition of every series, queue lengths read now.
    pub fn render(&self) -> String {
        if let Some(source) = self.queues.get() {
            let now = source();
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let mut current = HashSet::new();
            for (queue, delivery_type, n) in &now.queues {
                gauge!(QUEUE_LENGTH, "queue" => queue.clone(), "delivery_type" => *delivery_type)
                    .set(*n as f64);
                current.insert((queue.clone(), *delivery_type));
            }
            for (queue, delivery_type) in seen.difference(&current) {
                gauge!(QUEUE_LENGTH, "queue" => queue.clone(), "delivery_type" => *delivery_type)
                    .set(0.0);
            }
            seen.extend(current);
            gauge!(SHADOW_QUEUE_LENGTH).set(now.shadow as f64);
        }
        self.handle.run_upkeep();
        self.handle.render()
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        RECEIVED,
        "Messages accepted (RECEIVE in the tracking log), by receive connector."
    );
    describe_counter!(
        DELIVERED,
        "Messages delivered or sent on (DELIVER/SEND), by send connector or delivery type."
    );
    describe_counter!(
        DEFERRED,
        "Messages whose delivery was deferred (DEFER), by send connector or delivery type."
    );
    describe_counter!(
        FAILED,
        "Messages whose delivery failed for good (FAIL), by send connector or delivery type."
    );
    describe_gauge!(
        QUEUE_LENGTH,
        "Messages in each queue, by queue (NextHopDomain) and DeliveryType."
    );
    describe_gauge!(
        SHADOW_QUEUE_LENGTH,
        "Messages whose shadow copy this node holds for a primary."
    );
    describe_gauge!(CONNECTIONS, "Open SMTP connections, by receive connector.");
    describe_counter!(
        CONNECTIONS_TOTAL,
        "SMTP connections admitted to a session, by receive connector."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "SMTP connections refused at connect with a 421 (connection limits and rates), by receive connector."
    );
    describe_counter!(
        DSN_SENT,
        "DSNs queued by this node, by kind (failure, delay)."
    );
    describe_histogram!(
        LATENCY,
        metrics::Unit::Seconds,
        "From acceptance to delivery, per delivered message event."
    );
    describe_gauge!(
        BACK_PRESSURE,
        "Back pressure: 0 Normal, 1 Medium, 2 High (Exchange's resource pressure levels)."
    );
}

/// A message accepted on a receive connector (with its RECEIVE line).
pub fn received(connector: &str) {
    counter!(RECEIVED, "connector" => connector.to_string()).increment(1);
}

/// What one delivery attempt did to one message, as its tracking line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    Deferred,
    Failed,
}

/// One message's tracking line of a delivery attempt (DELIVER/SEND, DEFER, FAIL).
pub fn delivery(outcome: Delivery, connector: &str) {
    let name = match outcome {
        Delivery::Delivered => DELIVERED,
        Delivery::Deferred => DEFERRED,
        Delivery::Failed => FAILED,
    };
    counter!(name, "connector" => connector.to_string()).increment(1);
}

/// How long a delivered message took from its acceptance.
pub fn delivery_latency(seconds: f64) {
    histogram!(LATENCY).record(seconds.max(0.0));
}

/// A DSN queued: `failure` (an NDR) or `delay`.
pub fn dsn_sent(kind: &'static str) {
    counter!(DSN_SENT, "kind" => kind).increment(1);
}

/// Back pressure as the resource monitor sees it: 0 Normal, 1 Medium, 2 High.
pub fn set_back_pressure(level: u8) {
    gauge!(BACK_PRESSURE).set(f64::from(level));
}

/// Counts an SMTP connection on `connector` while it lives.
pub fn connection(connector: &str) -> ConnectionGuard {
    let connector = connector.to_string();
    counter!(CONNECTIONS_TOTAL, "connector" => connector.clone()).increment(1);
    gauge!(CONNECTIONS, "connector" => connector.clone()).increment(1.0);
    ConnectionGuard { connector }
}

/// Counts a connection refused before its session began (a 421 at connect).
pub fn connection_refused(connector: &str) {
    counter!(CONNECTIONS_REFUSED, "connector" => connector.to_string()).increment(1);
}

/// Ends one connection's count when dropped (also when its task panics).
pub struct ConnectionGuard {
    connector: String,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        gauge!(CONNECTIONS, "connector" => std::mem::take(&mut self.connector)).decrement(1.0);
    }
}

/// The default sources allowed to read `/metrics`: loopback only.
pub fn default_allow() -> Vec<IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("a valid network"),
        "::1/128".parse().expect("a valid network"),
    ]
}
