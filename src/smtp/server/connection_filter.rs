//! The Connection Filtering agent's IP Allow List and IP Block List, as a session applies them.
//!
//! As in Exchange, a blocked source is refused at RCPT (not at connect), so the sender and the
//! recipient it tried are on record. Which sessions every agent acts on is decided here
//! (`Session::agent_applies`): none holding ms-Exch-Bypass-Anti-Spam or from an allow-listed
//! source; the others by the agent's ExternalMailEnabled and InternalMailEnabled.

use time::OffsetDateTime;

use super::agent_log::AgentDecision;
use super::session::Session;
use crate::org::AgentScope;
use crate::org::ip_list::{self, Listed};
use crate::org::rights::ExtendedRight;
use crate::smtp::proto::Reply;

pub const AGENT: &str = "Connection Filtering Agent";

/// Exchange's reply to a source on the IP Block List.
pub fn block_reply(ip: std::net::IpAddr) -> Reply {
    Reply::new(
        550,
        "5.7.1",
        format!(
            "External client with IP address {ip} does not have permissions to submit to this server"
        ),
    )
}

impl Session {
    /// The lists' verdict on this session's source at `now`.
    pub fn ip_listed(&self, now: OffsetDateTime) -> Listed {
        ip_list::lookup(&self.org.ip_lists, self.remote.ip(), now)
    }

    /// Whether every anti-spam agent leaves this session alone: it holds
    /// ms-Exch-Bypass-Anti-Spam (Exchange's servers and, through the ExchangeUsers permission
    /// group, authenticated users), or its source is on the IP Allow List.
    pub fn antispam_bypassed(&self) -> bool {
        self.identity.rights.has(ExtendedRight::BypassAntiSpam)
            || matches!(
                self.ip_listed(OffsetDateTime::now_utc()),
                Listed::Allowed(_)
            )
    }

    /// Whether an agent with these switches acts on this session, as Exchange decides: not when
    /// it is off or the session bypasses anti-spam; on an internal session (authenticated, or
    /// Externally Secured: the organisation's own and its partners') when InternalMailEnabled;
    /// on any other, from outside, when ExternalMailEnabled.
    pub fn agent_applies(&self, scope: AgentScope) -> bool {
        if !scope.enabled || self.antispam_bypassed() {
            return false;
        }
        if self.identity.is_trusted() {
            scope.internal
        } else {
            scope.external
        }
    }

    /// The refusal for a RCPT from a blocked source, logged to the protocol and tracking logs;
    /// None when the source may go on.
    pub fn connection_filter(&mut self, to: &str) -> Option<Reply> {
        // Set-IPBlockListConfig: the list can be switched off, and its reply replaced.
        let config = &self.org.ip_block_lists.config;
        if !self.agent_applies(config.scope()) {
            return None;
        }
        let custom = config
            .static_entry_rejection_response
            .clone()
            .filter(|t| !t.trim().is_empty());
        let ip = self.remote.ip();
        let Listed::Blocked(id) = self.ip_listed(OffsetDateTime::now_utc()) else {
            return None;
        };
        let reply = match custom {
            Some(text) => Reply::new(550, "5.7.1", text),
            None => block_reply(ip),
        };
        self.record_agent_decision(
            &format!("Rejected by the IP Block List (entry {id}): {ip}"),
            None,
            &AgentDecision {
                agent: AGENT,
                event_id: "FAIL",
                reply: &reply,
                reason: None,
                recipients: &[to],
            },
        );
        Some(reply)
    }
}
