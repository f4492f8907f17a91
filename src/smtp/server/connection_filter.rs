//! The Connection Filtering agent's IP Allow List and IP Block List, as a session applies them.
//!
//! As in Exchange, a blocked source is refused at RCPT (not at connect), so the sender and the
//! recipient it tried are on record; authenticated sessions and those holding
//! ms-Exch-Bypass-Anti-Spam are not filtered, and an allow-listed source bypasses the other
//! anti-spam checks (`Session::antispam_bypassed`).

use time::OffsetDateTime;

use super::agent_log::AgentDecision;
use super::session::Session;
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

    /// Whether the anti-spam agents leave this session alone: authenticated, holding
    /// ms-Exch-Bypass-Anti-Spam, or on the IP Allow List.
    pub fn antispam_bypassed(&self) -> bool {
        self.identity.is_authenticated()
            || self.identity.rights.has(ExtendedRight::BypassAntiSpam)
            || matches!(
                self.ip_listed(OffsetDateTime::now_utc()),
                Listed::Allowed(_)
            )
    }

    /// The refusal for a RCPT from a blocked source, logged to the protocol and tracking logs;
    /// None when the source may go on.
    pub fn connection_filter(&mut self, to: &str) -> Option<Reply> {
        if self.identity.is_authenticated()
            || self.identity.rights.has(ExtendedRight::BypassAntiSpam)
        {
            return None;
        }
        // Set-IPBlockListConfig: the list can be switched off, and its reply replaced.
        let config = &self.org.ip_block_lists.config;
        if !config.enabled || !config.external_mail_enabled {
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
