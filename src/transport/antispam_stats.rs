//! The Anti-spam tab's per-agent counts: how many decisions each anti-spam agent made, by
//! tracking event (FAIL, DEFER, AGENTINFO), one `antispam_statistics` row per node, minute,
//! agent and event.
//!
//! Every agent decision is a tracking log event with source AGENT and the agent's name as
//! source-context, so the counting is done where the tracking log is written
//! (`TrackingLog::record`): an agent cannot forget it and no agent keeps counters of its own.
//! The agents are a closed set, so the counters are a fixed array of atomics (an unknown name
//! counts as "Other"); one task adds them to the minute's rows when the minute ends, and once
//! more at shutdown, as `transport::stats` does for the dashboard.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::stats::{MinuteWriter, minute_of, prune_minutes};
use crate::org::Org;

/// The agents counted, by their Exchange names (the tracking log's source-context); the last
/// one takes any other name.
pub const AGENTS: [&str; 7] = [
    "Connection Filtering Agent",
    "Recipient Filter Agent",
    "Sender Filter Agent",
    "Sender Id Agent",
    "Content Filter Agent",
    "Protocol Analysis Agent",
    OTHER,
];

/// What an agent name outside [`AGENTS`] is counted as.
pub const OTHER: &str = "Other";

/// The tracking events an agent's decision is recorded as: a refusal, a 4xx, an informational
/// decision.
pub const EVENTS: [&str; 3] = ["FAIL", "DEFER", "AGENTINFO"];

/// The source the tracking log names for an agent's event.
pub const SOURCE: &str = "AGENT";

/// One count: an agent's events of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Count {
    pub agent: String,
    pub event: String,
    pub count: u64,
}

#[derive(Debug, Default)]
struct Counters([[AtomicU64; EVENTS.len()]; AGENTS.len()]);

/// This node's per-agent counters since the last write; cheap to clone and to count with.
#[derive(Clone, Default, Debug)]
pub struct AgentCounts(Arc<Counters>);

fn agent_index(agent: &str) -> usize {
    AGENTS
        .iter()
        .position(|a| a.eq_ignore_ascii_case(agent))
        .unwrap_or(AGENTS.len() - 1)
}

fn event_index(event: &str) -> Option<usize> {
    EVENTS.iter().position(|e| e.eq_ignore_ascii_case(event))
}

impl AgentCounts {
    /// Counts a tracking event if it is an agent's decision (source AGENT, one of [`EVENTS`]).
    pub fn observe(&self, source: &str, source_context: Option<&str>, event_id: &str) {
        if !source.eq_ignore_ascii_case(SOURCE) {
            return;
        }
        let Some(e) = event_index(event_id) else {
            return;
        };
        let a = agent_index(source_context.unwrap_or(OTHER));
        // Saturating: a counter that cannot grow stays at its maximum instead of wrapping to 0.
        let _ =
            self.0.0[a][e].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1));
    }

    fn collect(&self, read: impl Fn(&AtomicU64) -> u64) -> Vec<Count> {
        let mut out = vec![];
        for (a, agent) in AGENTS.iter().enumerate() {
            for (e, event) in EVENTS.iter().enumerate() {
                let n = read(&self.0.0[a][e]);
                if n > 0 {
                    out.push(Count {
                        agent: agent.to_string(),
                        event: event.to_string(),
                        count: n,
                    });
                }
            }
        }
        out
    }

    /// What has been counted and not written yet (the current minute), non-zero counts only.
    pub fn pending(&self) -> Vec<Count> {
        self.collect(|c| c.load(Ordering::Relaxed))
    }

    /// Takes the counts for a write, leaving zero.
    fn take(&self) -> Vec<Count> {
        self.collect(|c| c.swap(0, Ordering::Relaxed))
    }

    /// Counts whose write failed go back, to be written with the next minute's.
    fn give_back(&self, counts: &[Count]) {
        for c in counts {
            let Some(e) = event_index(&c.event) else {
                continue;
            };
            let a = agent_index(&c.agent);
            let _ = self.0.0[a][e].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(c.count))
            });
        }
    }
}

/// Adds `counts` to `server`'s rows of `minute`. The sums are made in numeric and capped, so
/// that no count can make the write fail.
pub async fn write(
    pool: &PgPool,
    server: &str,
    minute: OffsetDateTime,
    counts: &[Count],
) -> Result<(), sqlx::Error> {
    if counts.is_empty() {
        return Ok(());
    }
    let agents: Vec<&str> = counts.iter().map(|c| c.agent.as_str()).collect();
    let events: Vec<&str> = counts.iter().map(|c| c.event.as_str()).collect();
    let ns: Vec<i64> = counts
        .iter()
        .map(|c| i64::try_from(c.count).unwrap_or(i64::MAX))
        .collect();
    sqlx::query(
        "INSERT INTO antispam_statistics (server, minute, agent, event, count)
         SELECT $1, $2, a, e, n FROM unnest($3::text[], $4::text[], $5::bigint[]) AS u(a, e, n)
         ON CONFLICT (server, minute, agent, event) DO UPDATE
            SET count = LEAST(antispam_statistics.count::numeric + EXCLUDED.count,
                              9223372036854775807)::bigint",
    )
    .bind(server)
    .bind(minute_of(minute))
    .bind(&agents)
    .bind(&events)
    .bind(&ns)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes `server`'s rows older than `max_age_secs`; how many went.
pub async fn prune(pool: &PgPool, server: &str, max_age_secs: i64) -> Result<u64, sqlx::Error> {
    prune_minutes(pool, "antispam_statistics", server, max_age_secs).await
}

/// Every node's counts from `since` on, summed per agent and event.
pub async fn read(
    conn: &mut sqlx::PgConnection,
    since: OffsetDateTime,
) -> Result<Vec<Count>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT agent, event, LEAST(sum(count), 9223372036854775807)::bigint
           FROM antispam_statistics WHERE minute >= $1 GROUP BY agent, event",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(agent, event, n)| Count {
            agent,
            event,
            count: n.max(0) as u64,
        })
        .collect())
}

/// The writer of this node's counts.
pub struct Writer {
    pub counts: AgentCounts,
    pub pool: PgPool,
    pub server: String,
    pub org: watch::Receiver<Arc<Org>>,
}

impl MinuteWriter for Writer {
    async fn flush(&self, minute: OffsetDateTime) {
        let c = self.counts.take();
        if let Err(e) = write(&self.pool, &self.server, minute, &c).await {
            tracing::warn!("writing the anti-spam counts: {e}");
            self.counts.give_back(&c);
        }
    }

    async fn prune(&self) {
        let max_age = self.org.borrow().server.server_statistics_max_age;
        if let Err(e) = prune(&self.pool, &self.server, max_age).await {
            tracing::warn!("pruning the anti-spam counts: {e}");
        }
    }

    fn org(&self) -> &watch::Receiver<Arc<Org>> {
        &self.org
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(agent: &str, event: &str, n: u64) -> Count {
        Count {
            agent: agent.into(),
            event: event.into(),
            count: n,
        }
    }

    #[test]
    fn only_agent_decisions_are_counted_and_unknown_agents_are_other() {
        let c = AgentCounts::default();
        c.observe("AGENT", Some("Connection Filtering Agent"), "FAIL");
        c.observe("AGENT", Some("connection filtering agent"), "FAIL");
        c.observe("AGENT", Some("Sender Id Agent"), "AGENTINFO");
        c.observe("AGENT", Some("Someone Else's Agent"), "DEFER");
        c.observe("AGENT", None, "FAIL");
        // Not an agent's decision, or not a decision.
        c.observe("SMTP", Some("Connection Filtering Agent"), "FAIL");
        c.observe("AGENT", Some("Connection Filtering Agent"), "RECEIVE");
        assert_eq!(
            c.pending(),
            vec![
                count("Connection Filtering Agent", "FAIL", 2),
                count("Sender Id Agent", "AGENTINFO", 1),
                count(OTHER, "FAIL", 1),
                count(OTHER, "DEFER", 1),
            ]
        );
    }

    #[test]
    fn counts_are_taken_once_given_back_on_failure_and_saturate() {
        let c = AgentCounts::default();
        c.observe("AGENT", Some("Recipient Filter Agent"), "FAIL");
        let taken = c.take();
        assert_eq!(taken, vec![count("Recipient Filter Agent", "FAIL", 1)]);
        assert!(c.pending().is_empty());
        c.observe("AGENT", Some("Recipient Filter Agent"), "FAIL");
        c.give_back(&taken);
        assert_eq!(
            c.pending(),
            vec![count("Recipient Filter Agent", "FAIL", 2)]
        );
        c.give_back(&[count("Recipient Filter Agent", "FAIL", u64::MAX)]);
        c.observe("AGENT", Some("Recipient Filter Agent"), "FAIL");
        assert_eq!(
            c.pending(),
            vec![count("Recipient Filter Agent", "FAIL", u64::MAX)]
        );
    }
}
