//! The Sender Filter agent: MAIL FROM checked against Set-SenderFilterConfig's blocked senders,
//! domains and blank sender, where Exchange's agent acts (OnMailCommand).
//!
//! Sessions the anti-spam agents leave alone (`Session::antispam_bypassed`) are not filtered.
//! The session stays open after the refusal, so the client may RSET or QUIT (RFC 5321 §4.1.1.2).

use super::session::Session;
use crate::logs::tracking::TrackingEvent;
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
        self.log_event('*', &format!("Rejected <{from}>: {blocked}"), AGENT);
        let status = reply.to_wire();
        let status = status.trim_end();
        self.gw.tracking.record(&TrackingEvent {
            event_id: "FAIL",
            source: "AGENT",
            client_ip: Some(self.remote.ip()),
            client_hostname: self.helo.as_deref(),
            server_ip: Some(self.local.ip()),
            server_hostname: Some(&self.connector.fqdn),
            source_context: Some(AGENT),
            connector_id: Some(&self.connector.identity()),
            internal_message_id: 0,
            message_id: None,
            recipients: &[],
            recipient_status: &[status],
            total_bytes: 0,
            related_recipient_address: None,
            reference: None,
            subject: None,
            sender: from,
            return_path: from,
            message_info: Some(&blocked.to_string()),
            directionality: Some("Incoming"),
        });
        Some(reply)
    }
}
