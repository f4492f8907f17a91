//! NDRs and delay DSNs: built from the spooled original and queued as new messages.

use super::*;

impl QueueManager {
    /// Builds and queues the NDR for `failed` recipients of `message` (if its sender and their
    /// NOTIFY want one). A DSN that cannot be built or queued is logged and dropped.
    pub(super) async fn report_failures(
        &self,
        message: Uuid,
        failed: &[(i32, Reply)],
        remote: Option<String>,
    ) {
        let Some((meta, outcomes)) = self.outcomes_for(message, failed, remote) else {
            return;
        };
        let org = self.inner.org.borrow().clone();
        let content = match self.read_body(message).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reading {message} for its NDR: {e}");
                return;
            }
        };
        let original = meta.original(&content);
        let Some(ndr) = dsn::build_ndr(
            &reporter(&org, &self.inner.fqdn),
            &original,
            &outcomes,
            OffsetDateTime::now_utc(),
        ) else {
            return;
        };
        self.queue_dsn(&meta, ndr).await;
    }

    pub(super) fn outcomes_for(
        &self,
        message: Uuid,
        list: &[(i32, Reply)],
        remote: Option<String>,
    ) -> Option<(Submitted, Vec<RecipientOutcome>)> {
        let st = self.state();
        let m = st.messages.get(&message)?;
        let outcomes = list
            .iter()
            .filter_map(|(ordinal, reply)| {
                let r = m.rcpts.iter().find(|r| r.ordinal == *ordinal)?;
                Some(RecipientOutcome {
                    address: r.address.clone(),
                    orcpt: r.orcpt.clone(),
                    notify: r.notify.clone(),
                    reply: reply.clone(),
                    remote_mta: remote.clone().or_else(|| r.remote_mta.clone()),
                })
            })
            .collect();
        Some((m.meta.clone(), outcomes))
    }

    pub(super) async fn read_body(&self, id: Uuid) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(self.inner.spool.path(id)).await
    }

    /// Accepts a DSN as a new message from the null sender, durably, and queues it.
    pub(super) async fn queue_dsn(&self, original: &Submitted, d: dsn::Dsn) {
        let env = Envelope {
            id: Uuid::now_v7(),
            server: self.inner.server.clone(),
            from: String::new(),
            recipients: vec![EnvelopeRecipient {
                address: d.envelope_to.clone(),
                orcpt: None,
                notify: None,
                disposition: Disposition::Relay,
            }],
            source_ip: IpAddr::from([127, 0, 0, 1]),
            receive_connector: "DSN".into(),
            helo: self.inner.fqdn.clone(),
            auth_user: None,
            internet_message_id: None,
            subject: None,
            env_id: None,
            ret: None,
            body_type: None,
            smtp_utf8: false,
        };
        let size = d.message.len() as u64;
        match crate::transport::queue::accept(
            &self.inner.pool,
            &self.inner.spool,
            &env,
            Vec::new(),
            d.message,
        )
        .await
        {
            Ok(internal_id) => {
                self.inner.tracking.record(&TrackingEvent {
                    event_id: "DSN",
                    source: "DSN",
                    client_ip: None,
                    client_hostname: None,
                    server_ip: None,
                    server_hostname: Some(&self.inner.fqdn),
                    source_context: None,
                    connector_id: None,
                    internal_message_id: internal_id,
                    message_id: None,
                    recipients: &[d.envelope_to.as_str()],
                    recipient_status: &[],
                    total_bytes: size,
                    related_recipient_address: None,
                    reference: original.internet_message_id.as_deref(),
                    subject: None,
                    sender: "",
                    return_path: "",
                    message_info: None,
                    directionality: None,
                });
                self.submit(Submitted::accepted(&env, internal_id, size));
            }
            Err(e) => tracing::error!("queueing a DSN to {}: {e}", d.envelope_to),
        }
    }

    pub(super) async fn report_delay(
        &self,
        message: Uuid,
        ordinals: &[i32],
        until: OffsetDateTime,
    ) {
        let list: Vec<(i32, Reply)> = {
            let st = self.state();
            let Some(m) = st.messages.get(&message) else {
                return;
            };
            ordinals
                .iter()
                .filter_map(|o| m.rcpts.iter().find(|r| r.ordinal == *o))
                .map(|r| {
                    let reply = r
                        .last_error
                        .as_deref()
                        .and_then(reply_from_text)
                        .unwrap_or_else(|| Reply::new(400, "4.4.7", "Message delayed"));
                    (r.ordinal, reply)
                })
                .collect()
        };
        let Some((meta, outcomes)) = self.outcomes_for(message, &list, None) else {
            return;
        };
        let org = self.inner.org.borrow().clone();
        let Ok(content) = self.read_body(message).await else {
            return;
        };
        let original = meta.original(&content);
        if let Some(d) = dsn::build_delay(
            &reporter(&org, &self.inner.fqdn),
            &original,
            &outcomes,
            until,
            OffsetDateTime::now_utc(),
        ) {
            self.queue_dsn(&meta, d).await;
        }
    }
}

pub(super) fn reporter(org: &Org, fqdn: &str) -> Reporter {
    let domain = org
        .accepted_domains
        .iter()
        .find(|d| d.is_default)
        .map(|d| d.domain_name.trim_start_matches("*.").to_string())
        .unwrap_or_else(|| fqdn.to_string());
    Reporter {
        fqdn: fqdn.to_string(),
        postmaster: format!("postmaster@{domain}"),
        max_returned_size: dsn::DEFAULT_MAX_RETURNED_SIZE,
    }
}

/// Turns a stored `451 4.4.0 text` back into a Reply for a delay DSN.
pub(super) fn reply_from_text(s: &str) -> Option<Reply> {
    let (code, rest) = s.split_once(' ')?;
    let code: u16 = code.parse().ok()?;
    let (enhanced, text) = match rest.split_once(' ') {
        Some((e, t))
            if e.split('.').count() == 3 && e.chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            (e, t)
        }
        _ => ("", rest),
    };
    Some(Reply::new(code, enhanced, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_errors_parse_back_into_replies() {
        let r = reply_from_text("451 4.4.0 DNS query failed").unwrap();
        assert_eq!((r.code, r.enhanced.as_deref()), (451, Some("4.4.0")));
        assert_eq!(r.one_line(), "451 4.4.0 DNS query failed");
        let plain = reply_from_text("421 Service not available").unwrap();
        assert_eq!(plain.code, 421);
        assert!(reply_from_text("garbage").is_none());
    }
}
