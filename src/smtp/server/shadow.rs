//! XSHADOW and XQDISCARD: this node as the primary for a shadow server (reference §1.2), and
//! which MAIL XSHADOW= ids it keeps.

use super::session::{Next, Session};
use crate::org::AuthMechanism;
use crate::org::rights::ExtendedRight;
use crate::smtp::proto::{MailParams, Reply};
use crate::transport::shadow::primary::{self, ArgumentError};

impl Session {
    /// XSHADOW is advertised, and its commands answered, when the organisation has shadow
    /// redundancy on and the connector is one transport servers use (identity-and-rights.md).
    pub fn xshadow_offered(&self) -> bool {
        self.org.config.shadow_redundancy_enabled
            && (self.connector.has_auth(AuthMechanism::ExchangeServer)
                || self
                    .connector
                    .has_auth(AuthMechanism::ExternalAuthoritative))
    }

    /// Whether this MAIL's XSHADOW= id is kept: only after this session's XSHADOW succeeded, and
    /// only for a session trusted with organisation headers, as Exchange does. An id that is not
    /// a GUID is ignored, and the message is accepted without it.
    pub fn shadow_accepted(&self, params: &MailParams) -> bool {
        self.shadow_context.is_some()
            && self
                .identity
                .rights
                .has(ExtendedRight::AcceptOrganizationHeaders)
            && params
                .xshadow
                .as_deref()
                .is_some_and(primary::valid_shadow_message_id)
    }

    /// `XSHADOW <context>`: `250 <dbid>`, after which this session's messages may carry
    /// XSHADOW= ids and its XQDISCARD commands are answered for that context.
    pub async fn xshadow_command(&mut self, context: Option<String>) -> Next {
        if !self.xshadow_offered() {
            return self.protocol_error(Reply::new(502, "5.3.3", "Command not implemented"));
        }
        if self.helo.is_none() || !self.esmtp {
            return self.protocol_error(Reply::new(503, "5.5.2", "Send EHLO first"));
        }
        if self.tx.is_some() || self.shadow_context.is_some() {
            return self.protocol_error(Reply::new(503, "5.5.1", "Bad sequence of commands"));
        }
        let context = match primary::parse_context(context.as_deref()) {
            Ok(c) => c.to_string(),
            Err(ArgumentError::Missing) => {
                return self.protocol_error(Reply::new(
                    501,
                    "5.0.0",
                    "XSHADOW requires Shadow server's context",
                ));
            }
            Err(ArgumentError::Invalid) => {
                return self.protocol_error(Reply::new(501, "5.5.4", "Invalid arguments"));
            }
        };
        if !self.identity.rights.has(ExtendedRight::AcceptXShadow) {
            self.reply_tarpit(Reply::new(550, "5.7.1", "Not authorized"))
                .await;
            return Next::Continue;
        }
        let server = self.org.server.name.clone();
        match self.gw.intake.queue_database_id(&server).await {
            Ok(id) => {
                self.shadow_context = Some(context);
                self.reply(Reply::new(250, "", primary::dbid_text(id)));
            }
            Err(e) => {
                tracing::error!("XSHADOW: {e}");
                self.reply(Reply::new(451, "4.3.2", "Service not available"));
            }
        }
        Next::Continue
    }

    /// `XQDISCARD <n>`: the ids of up to n messages this node is done with, for the context of
    /// this session's XSHADOW, each handed out once.
    pub async fn xqdiscard_command(&mut self, count: Option<String>) -> Next {
        if !self.xshadow_offered() {
            return self.protocol_error(Reply::new(502, "5.3.3", "Command not implemented"));
        }
        let max = match primary::parse_discard_count(count.as_deref()) {
            Ok(n) => n,
            Err(ArgumentError::Missing) => {
                return self.protocol_error(Reply::new(
                    501,
                    "5.0.0",
                    "XQDISCARD requires maximum discard events count",
                ));
            }
            Err(ArgumentError::Invalid) => {
                return self.protocol_error(Reply::new(501, "5.5.4", "Invalid arguments"));
            }
        };
        let Some(context) = self.shadow_context.clone() else {
            return self.protocol_error(Reply::new(503, "5.5.1", "Bad sequence of commands"));
        };
        let server = self.org.server.name.clone();
        match self
            .gw
            .intake
            .take_discard_events(&server, &context, max)
            .await
        {
            Ok(ids) if ids.is_empty() => {
                self.reply(Reply::new(251, "", "OK, no discard events"));
            }
            Ok(ids) => self.reply(Reply::multi(250, ids)),
            Err(e) => {
                tracing::error!("XQDISCARD: {e}");
                self.reply(Reply::new(451, "4.3.2", "Service not available"));
            }
        }
        Next::Continue
    }
}
