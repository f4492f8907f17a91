//! The Anti-spam tab's figures: each anti-spam agent's decisions (tracking events FAIL, DEFER
//! and AGENTINFO) over the last hour and the last 24 hours, from every node's stored minutes
//! plus what the node asking counted and has not written yet.

use sqlx::PgConnection;
use time::{Duration, OffsetDateTime};

use super::OpError;
use crate::transport::antispam_stats::{self, AGENTS, Count};
use crate::transport::stats::minute_of;

/// One agent's decisions in a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Refused (FAIL).
    pub fail: u64,
    /// Deferred with a 4xx (DEFER).
    pub defer: u64,
    /// Informational (AGENTINFO).
    pub info: u64,
}

impl Decisions {
    pub fn total(&self) -> u64 {
        self.fail
            .saturating_add(self.defer)
            .saturating_add(self.info)
    }

    fn add(&mut self, c: &Count) {
        let slot = match c.event.as_str() {
            "FAIL" => &mut self.fail,
            "DEFER" => &mut self.defer,
            "AGENTINFO" => &mut self.info,
            _ => return,
        };
        *slot = slot.saturating_add(c.count);
    }
}

/// One agent's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentFigures {
    /// The agent's Exchange name, as the tracking log's source-context has it.
    pub agent: &'static str,
    /// The current minute and the 59 before it.
    pub hour: Decisions,
    /// The current minute and the 1439 before it.
    pub day: Decisions,
}

/// Every counted agent's figures at `now`, in [`AGENTS`]' order; `pending` is what this node
/// counted and has not written (empty when the caller is not a running node).
pub async fn agent_figures(
    conn: &mut PgConnection,
    pending: &[Count],
    now: OffsetDateTime,
) -> Result<Vec<AgentFigures>, OpError> {
    let current = minute_of(now);
    let hour = antispam_stats::read(conn, current - Duration::minutes(59)).await?;
    let day = antispam_stats::read(conn, current - Duration::minutes(24 * 60 - 1)).await?;
    let mut out: Vec<AgentFigures> = AGENTS
        .iter()
        .map(|a| AgentFigures {
            agent: a,
            hour: Decisions::default(),
            day: Decisions::default(),
        })
        .collect();
    // AGENTS ends with the bucket every other name is counted in.
    let slot = |agent: &str| {
        AGENTS
            .iter()
            .position(|a| a.eq_ignore_ascii_case(agent))
            .unwrap_or(AGENTS.len() - 1)
    };
    for c in hour.iter().chain(pending) {
        out[slot(&c.agent)].hour.add(c);
    }
    for c in day.iter().chain(pending) {
        out[slot(&c.agent)].day.add(c);
    }
    Ok(out)
}
