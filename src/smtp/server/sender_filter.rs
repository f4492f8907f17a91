//! The Sender Filter agent: MAIL FROM checked against Set-SenderFilterConfig's blocked senders,
//! domains and blank sender, where Exchange's agent acts (OnMailCommand).
//!
//! Sessions the anti-spam agents leave alone (`Session::antispam_bypassed`) are not filtered.
//! The session stays open after the refusal, so the client may RSET or QUIT (RFC 5321 §4.1.1.2).

use super::agent_log::AgentDecision;
use super::session::Session;
use crate::smtp::proto::Reply;

pub const AGENT: &str = "Sender Filter Agent";

/// Exchange's reply to a blocked sender.
pub fn denied() -> Reply {
    Reply::new(554, "5.1.0", "Sender Denied")
}

impl Session {
    /// The refusal for MAIL FROM:<from> when the organisation blocks it, logged to the protocol
    /// and tracking logs; None when the sender may go on.
    pub fn sender_filter(&mut self, from: &str) -> Option<Reply> {
        let blocked = self.org.sender_filter.blocks(from)?;
        if self.antispam_bypassed() {
            return None;
        }
        let reply = denied();
        self.record_agent_decision(
            &format!("Rejected <{from}>: {blocked}"),
            Some(from),
            &AgentDecision {
                agent: AGENT,
                event_id: "FAIL",
                reply: &reply,
                reason: Some(&blocked.to_string()),
                recipients: &[],
            },
        );
        Some(reply)
    }
}
