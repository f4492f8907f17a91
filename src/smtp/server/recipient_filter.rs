//! The Recipient Filter agent at RCPT: BlockedRecipients, and recipient validation for every
//! accepted domain type whose AddressBookEnabled is set (reference §5).
//!
//! Authoritative domains know their recipients (the directory). Relay domains learn them from
//! an imported list or by callout to their next hop (`transport::recipient_callout`); when
//! nobody can answer, the RCPT gets a 4xx so that the sender tries again: a backup MX must not
//! take a message it may later have to bounce (backscatter).

use super::agent_log::AgentDecision;
use super::session::Session;
use crate::org::DomainType;
use crate::org::accepted_domain;
use crate::smtp::proto::Reply;
use crate::transport::categorizer;
use crate::transport::recipient_callout::{Known, Source};

pub const AGENT: &str = "Recipient Filter Agent";

/// Recipient callouts one session may cause: a client walking a list of guessed addresses
/// costs the next hop a bounded number of probes per connection.
pub const MAX_CALLOUTS_PER_SESSION: u32 = 20;

/// Exchange's reply to a recipient on BlockedRecipients (**INFERRED**: the agent's text is not
/// in the reference; 5.7.1 is Exchange's code for every agent's policy refusal).
pub fn blocked_reply() -> Reply {
    Reply::new(550, "5.7.1", "Recipient not authorized")
}

/// The Edge Recipient Filter's reply to an unknown recipient (reference §7, RcptNotFound).
pub fn unknown_reply() -> Reply {
    Reply::new(550, "5.1.1", "User unknown")
}

/// Nobody could say whether the recipient exists: 451 4.4.0, what Exchange answers when it
/// cannot safely take a message because another server did not answer (reference §1.4, `451
/// 4.4.0 Message failed to be made redundant`): a network/routing condition (X.4.x), transient,
/// so the sender keeps the message and retries. 4.7.1 would call it a policy refusal.
pub fn no_answer_reply() -> Reply {
    Reply::new(
        451,
        "4.4.0",
        "Unable to verify the recipient with the next hop, try again later",
    )
}

impl Session {
    /// The agent's refusal of a RCPT, logged to the protocol and tracking logs; None when the
    /// recipient may go on to the categorizer.
    pub async fn recipient_filter(&mut self, to: &str) -> Option<Reply> {
        let org = self.org.clone();
        let cfg = &org.recipient_filter;
        let active = cfg.block_list_enabled || cfg.recipient_validation_enabled;
        if !active || !self.agent_applies(cfg.scope()) {
            return None;
        }
        if cfg.block_list_enabled && cfg.blocks(to) {
            return Some(self.agent_decision(
                "FAIL",
                to,
                blocked_reply(),
                "on BlockedRecipients".into(),
            ));
        }
        if !cfg.recipient_validation_enabled {
            return None;
        }
        let domain = categorizer::domain_of(to, &org.accepted_domains)?;
        let accepted = accepted_domain::find(&org.accepted_domains, domain)?;
        if !accepted.address_book_enabled {
            return None;
        }
        let full = if to.contains('@') {
            to.to_string()
        } else {
            format!("{to}@{domain}")
        };
        let kind = accepted.kind();
        if kind != DomainType::ExternalRelay {
            match self.gw.directory.recipient(&full).await {
                Ok(Some(_)) => return None,
                Ok(None) if kind == DomainType::Authoritative => {
                    return Some(self.agent_decision(
                        "FAIL",
                        to,
                        unknown_reply(),
                        "not in the directory".into(),
                    ));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!("recipient filter: {e}");
                    return Some(Reply::new(451, "4.3.2", "Service not available"));
                }
            }
        }
        let may_call_out = self.callouts < MAX_CALLOUTS_PER_SESSION;
        let (known, called) = self
            .gw
            .directory
            .relay_recipient(&org, &full, may_call_out)
            .await;
        if called {
            self.callouts = self.callouts.saturating_add(1);
        }
        match known {
            Known::Valid(source) => {
                let why = format!("valid recipient, from {}", source.describe());
                if source == Source::ExpiredCache {
                    // Accepted on old knowledge: worth a line the console counts.
                    self.agent_decision(
                        "AGENTINFO",
                        to,
                        Reply::new(250, "2.1.5", "Recipient OK"),
                        why,
                    );
                } else {
                    self.log_event('*', &format!("{why}: {to}"), AGENT);
                }
                None
            }
            Known::Unknown(source) => Some(self.agent_decision(
                "FAIL",
                to,
                unknown_reply(),
                format!("unknown recipient, from {}", source.describe()),
            )),
            Known::NoAnswer(why) => Some(self.agent_decision(
                "DEFER",
                to,
                no_answer_reply(),
                format!("no answer for the recipient ({why})"),
            )),
        }
    }

    /// Logs one of the agent's decisions on `to` (protocol log with the agent's name, tracking
    /// log with source AGENT) and returns its reply.
    fn agent_decision(&mut self, event_id: &str, to: &str, reply: Reply, why: String) -> Reply {
        self.record_agent_decision(
            &format!("{event_id} {to}: {why}"),
            None,
            &AgentDecision {
                agent: AGENT,
                event_id,
                reply: &reply,
                reason: Some(&why),
                recipients: &[to],
            },
        );
        reply
    }
}
