//! The Sender Filter agent: MAIL FROM checked against Set-SenderFilterConfig's blocked senders,
//! domains and blank sender, where Exchange's agent acts (OnMailCommand).
//!
//! Which sessions it acts on is `Session::agent_applies`'s decision (ExternalMailEnabled,
//! InternalMailEnabled, the bypasses). As Exchange's agent does with Action Reject ("rejects the
//! SMTP request with a 554 5.1.0 Sender Denied SMTP session error and closes the connection",
//! Microsoft's *Sender filtering*), the refusal ends the session: after the tarpit, the 554 is
//! sent and the connection closed, so a client cannot try sender after sender on one connection.

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
        let config = &self.org.sender_filter;
        let blocked = config.blocks(from)?;
        if !self.agent_applies(config.scope()) {
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
