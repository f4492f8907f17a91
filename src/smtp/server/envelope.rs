//! MAIL and RCPT: the rights checks of reference §2.4 and the categorizer's verdict.

use super::session::{Next, Session, Transaction};
use crate::org::rights::ExtendedRight;
use crate::smtp::proto::{MailParams, RcptParams, Reply};
use crate::transport::categorizer::{self, Verdict};
use crate::transport::queue::EnvelopeRecipient;

impl Session {
    pub async fn mail(&mut self, from: String, params: MailParams) -> Next {
        if self.helo.is_none() {
            return self.protocol_error(Reply::new(503, "5.5.2", "Send hello first"));
        }
        if self.tx.is_some() {
            return self.protocol_error(Reply::new(503, "5.5.1", "Sender already specified"));
        }
        if self.connector.require_tls && !self.is_tls() {
            return self.protocol_error(Reply::new(
                530,
                "5.7.0",
                "Must issue a STARTTLS command first",
            ));
        }
        // Before the rights checks, which may need the database.
        if let Some(r) = self.gw.pressure.refusal() {
            self.reply(r);
            return Next::Continue;
        }
        let utf8_ok = params.smtputf8 && self.connector.smtp_utf8_enabled;
        if !from.is_ascii() && !utf8_ok {
            return self.protocol_error(Reply::new(
                553,
                "5.6.7",
                "Non-ASCII addresses require the SMTPUTF8 parameter",
            ));
        }
        let rights = self.identity.rights;
        if !rights.has(ExtendedRight::Submit) {
            let r = if self.identity.is_authenticated() {
                Reply::new(
                    550,
                    "5.7.1",
                    "Client does not have permissions to submit to this server",
                )
            } else {
                Reply::new(530, "5.7.1", "Client was not authenticated")
            };
            self.reply_tarpit(r).await;
            return Next::Continue;
        }
        if !rights.has(ExtendedRight::BypassMessageSizeLimit)
            && params
                .size
                .is_some_and(|s| s > self.connector.max_message_size as u64)
        {
            self.reply_tarpit(Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            ))
            .await;
            return Next::Continue;
        }
        if !self.sender_allowed(&from).await {
            let r = if self.identity.is_authenticated() {
                Reply::new(
                    550,
                    "5.7.1",
                    "Client does not have permissions to send as this sender",
                )
            } else {
                Reply::new(
                    550,
                    "5.7.1",
                    "Anonymous client does not have permissions to send as this sender",
                )
            };
            self.reply_tarpit(r).await;
            return Next::Continue;
        }
        if let Some(r) = self.sender_filter(&from) {
            // Exchange's agent ends the session with its refusal (`sender_filter`).
            self.reply_tarpit(r).await;
            return Next::Close;
        }
        let user = self.identity.account.clone();
        if !self
            .gw
            .limits
            .message_allowed(&self.connector, self.remote.ip(), user.as_deref())
        {
            self.reply(Reply::new(
                421,
                "4.4.2",
                "Message submission rate for this client has exceeded the configured limit",
            ));
            return Next::Close;
        }
        let shadowed = self.shadow_accepted(&params);
        self.tx = Some(Transaction {
            from,
            params,
            recipients: Vec::new(),
            chunks: None,
            chunk_failure: None,
            shadowed,
        });
        self.dnsbl_start();
        self.reply(Reply::new(250, "2.1.0", "Sender OK"));
        Next::Continue
    }

    /// Internal senders need Accept-Authoritative-Domain-Sender, others Accept-Any-Sender; an
    /// authenticated account may always send as its own mailbox's addresses (AD Send-As).
    async fn sender_allowed(&self, from: &str) -> bool {
        let rights = self.identity.rights;
        let needed = if categorizer::is_internal_sender(&self.org.accepted_domains, from) {
            ExtendedRight::AcceptAuthoritativeDomainSender
        } else {
            ExtendedRight::AcceptAnySender
        };
        if rights.has(needed) {
            return true;
        }
        let Some(account) = &self.identity.account else {
            return false;
        };
        match self.gw.directory.recipient(from).await {
            Ok(Some(r)) => r.name.eq_ignore_ascii_case(account),
            _ => false,
        }
    }

    pub async fn rcpt(&mut self, to: String, params: RcptParams) -> Next {
        let Some(tx) = &self.tx else {
            return self.protocol_error(Reply::new(503, "5.5.2", "Need mail command"));
        };
        if !to.is_ascii() && !tx.params.smtputf8 {
            return self.protocol_error(Reply::new(
                553,
                "5.6.7",
                "Non-ASCII addresses require the SMTPUTF8 parameter",
            ));
        }
        if let Some(r) = self.connection_filter(&to) {
            self.reply_tarpit(r).await;
            return Next::Continue;
        }
        if let Some(r) = self.dnsbl_filter(&to).await {
            self.reply_tarpit(r).await;
            return Next::Continue;
        }
        let Some(tx) = &self.tx else {
            return Next::Continue;
        };
        let rights = self.identity.rights;
        if !rights.has(ExtendedRight::BypassMessageSizeLimit)
            && tx.recipients.len() >= self.connector.max_recipients_per_message as usize
        {
            self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
            return Next::Continue;
        }
        // The state may have changed since MAIL; the categorizer needs the database.
        if let Some(r) = self.gw.pressure.refusal() {
            self.reply(r);
            return Next::Continue;
        }
        if let Some(r) = self.recipient_filter(&to).await {
            self.reply_tarpit(r).await;
            return Next::Continue;
        }
        let verdict = self
            .gw
            .directory
            .categorize(&self.org.accepted_domains, &to, rights)
            .await;
        match verdict {
            Ok(Verdict::Accept(disposition)) => {
                let notify = params.notify.as_ref().map(|n| {
                    n.iter()
                        .map(|x| format!("{x:?}").to_ascii_uppercase())
                        .collect::<Vec<_>>()
                        .join(",")
                });
                let orcpt = params.orcpt.as_ref().map(|(t, a)| format!("{t};{a}"));
                if let Some(tx) = &mut self.tx {
                    tx.recipients.push(EnvelopeRecipient {
                        address: to,
                        orcpt,
                        notify,
                        disposition,
                    });
                }
                self.reply(Reply::new(250, "2.1.5", "Recipient OK"));
            }
            Ok(Verdict::Reject(r)) => self.reply_tarpit(r).await,
            Err(e) => {
                tracing::error!("categorizer: {e}");
                self.reply(Reply::new(451, "4.3.2", "Service not available"));
            }
        }
        Next::Continue
    }
}
