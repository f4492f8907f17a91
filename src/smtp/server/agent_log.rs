//! How an anti-spam agent's decision goes on record: one protocol-log line naming the agent and
//! one tracking event with source AGENT and the agent as its source context, which is what the
//! console's Anti-spam tab counts. Every agent records through here so that the fields the tab
//! and the tests read cannot drift apart between agents.

use std::net::SocketAddr;

use super::Gateway;
use super::session::Session;
use crate::logs::tracking::TrackingEvent;
use crate::org::ReceiveConnector;
use crate::smtp::proto::Reply;

/// One decision: which agent, FAIL / DEFER / AGENTINFO, the reply given, and the reason kept in
/// the tracking log's message_info.
pub struct AgentDecision<'a> {
    pub agent: &'a str,
    pub event_id: &'a str,
    pub reply: &'a Reply,
    pub reason: Option<&'a str>,
    pub recipients: &'a [&'a str],
}

/// Where the decision was taken; a session knows all of it, a connection refused before any
/// session exists knows all but the HELO name.
pub struct AgentSite<'a> {
    pub gw: &'a Gateway,
    pub connector: &'a ReceiveConnector,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub helo: Option<&'a str>,
    pub sender: &'a str,
}

/// The tracking event for `d` taken at `site`.
pub fn track_agent_decision(site: &AgentSite<'_>, d: &AgentDecision<'_>) {
    let status = d.reply.to_wire();
    site.gw.tracking.record(&TrackingEvent {
        event_id: d.event_id,
        source: "AGENT",
        client_ip: Some(site.remote.ip()),
        client_hostname: site.helo,
        server_ip: Some(site.local.ip()),
        server_hostname: Some(&site.connector.fqdn),
        source_context: Some(d.agent),
        connector_id: Some(&site.connector.identity()),
        internal_message_id: 0,
        message_id: None,
        recipients: d.recipients,
        recipient_status: &[status.trim_end()],
        total_bytes: 0,
        related_recipient_address: None,
        reference: None,
        subject: None,
        sender: site.sender,
        return_path: site.sender,
        message_info: d.reason,
        directionality: Some("Incoming"),
    });
}

impl Session {
    /// Puts `d` on record: `log_line` in the protocol log under the agent's name, and the
    /// tracking event. `sender` is the envelope sender when the decision comes before the
    /// transaction holds it (MAIL FROM); None takes the open transaction's, or none.
    pub fn record_agent_decision(
        &mut self,
        log_line: &str,
        sender: Option<&str>,
        d: &AgentDecision<'_>,
    ) {
        self.log_event('*', log_line, d.agent);
        let sender = sender
            .or_else(|| self.tx.as_ref().map(|t| t.from.as_str()))
            .unwrap_or("");
        let site = AgentSite {
            gw: &self.gw,
            connector: &self.connector,
            local: self.local,
            remote: self.remote,
            helo: self.helo.as_deref(),
            sender,
        };
        track_agent_decision(&site, d);
    }
}
