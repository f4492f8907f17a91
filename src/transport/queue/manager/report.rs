//! NDRs and delay DSNs: built from the spooled original and queued as new messages.

use super::*;
use crate::transport::backscatter;

impl QueueManager {
    /// Builds and queues the NDR for `failed` recipients of `message` (if its sender and their
    /// NOTIFY want one). Ok when it is durably queued or nobody is to be told; on an error the
    /// caller keeps the recipients and tries again later.
    pub(super) async fn report_failures(
        &self,
        message: Uuid,
        failed: &[(i32, Reply)],
        remote: Option<String>,
    ) -> Result<(), DsnError> {
        let Some((meta, outcomes)) = self.outcomes_for(message, failed, remote) else {
            return Ok(());
        };
        // Nobody to tell (null sender, NOTIFY=NEVER, Remove-Message -WithNDR $false): the body
        // is not read at all, which keeps a bulk removal cheap.
        if dsn::is_null_sender(&meta.from)
            || !outcomes
                .iter()
                .any(|o| dsn::should_notify(o.notify.as_deref(), dsn::DsnKind::Failure))
        {
            return Ok(());
        }
        let org = self.inner.org.borrow().clone();
        if self.backscatter(&org, &meta, &outcomes).await {
            return Ok(());
        }
        let (content, lost) = self.original_content(&meta).await?;
        let mut original = meta.original(&content);
        if lost {
            original.ret = Some("HDRS");
        }
        let Some(ndr) = dsn::build_ndr(
            &reporter(&org, &self.inner.fqdn),
            &original,
            &outcomes,
            self.now(),
        ) else {
            return Ok(());
        };
        self.queue_dsn(&meta, ndr).await?;
        crate::monitor::dsn_sent("failure");
        Ok(())
    }

    /// Whether the DSN about `meta` is dropped by the backscatter rule (`transport::backscatter`);
    /// the decision is tracked with its reason.
    async fn backscatter(
        &self,
        org: &Org,
        meta: &Submitted,
        outcomes: &[RecipientOutcome],
    ) -> bool {
        let origin = backscatter::Origin {
            sender: &meta.from,
            client_ip: meta.source_ip,
            authenticated: meta.authenticated,
        };
        let Some(reason) = backscatter::suppressed(org, &origin).await else {
            return false;
        };
        tracing::info!("message {}: {reason}", meta.id);
        let recipients: Vec<&str> = outcomes.iter().map(|o| o.address.as_str()).collect();
        let statuses: Vec<String> = outcomes.iter().map(|o| o.reply.one_line()).collect();
        let statuses: Vec<&str> = statuses.iter().map(String::as_str).collect();
        self.inner.tracking.record(&TrackingEvent {
            client_ip: meta.source_ip,
            source_context: Some(backscatter::AGENT),
            recipients: &recipients,
            recipient_status: &statuses,
            total_bytes: meta.size,
            message_id: meta.internet_message_id.as_deref(),
            subject: meta.subject.as_deref(),
            sender: &meta.from,
            return_path: &meta.from,
            message_info: Some(&reason),
            directionality: Some("Incoming"),
            ..self.own_event("AGENTINFO", "AGENT", meta.internal_id)
        });
        true
    }

    /// The spooled message for a DSN, and whether its body is gone for good: then only a header
    /// rebuilt from what the queue stored (so the sender still learns which message it was).
    /// Any other read error is transient (permissions, I/O) and the DSN waits for it.
    pub(super) async fn original_content(
        &self,
        meta: &Submitted,
    ) -> Result<(Vec<u8>, bool), DsnError> {
        match self.read_body(meta.id).await {
            Ok(c) => Ok((c, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut h = String::new();
                let clean = |v: &str| v.replace(['\r', '\n'], " ");
                if !dsn::is_null_sender(&meta.from) {
                    h.push_str(&format!("From: <{}>\r\n", clean(&meta.from)));
                }
                if let Some(s) = &meta.subject {
                    h.push_str(&format!("Subject: {}\r\n", clean(s)));
                }
                if let Some(id) = &meta.internet_message_id {
                    h.push_str(&format!("Message-ID: {}\r\n", clean(id)));
                }
                h.push_str("\r\n");
                Ok((h.into_bytes(), true))
            }
            Err(e) => Err(DsnError::Body(e)),
        }
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
        Ok(self.inner.spool.body(id).await?.to_vec())
    }

    /// Accepts a DSN as a new message from the null sender, durably, and queues it.
    pub(super) async fn queue_dsn(
        &self,
        original: &Submitted,
        d: dsn::Dsn,
    ) -> Result<(), DsnError> {
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
            shadow: None,
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
                    recipients: &[d.envelope_to.as_str()],
                    total_bytes: size,
                    reference: original.internet_message_id.as_deref(),
                    ..self.own_event("DSN", "DSN", internal_id)
                });
                // Its expiry and delay DSN run from the manager's time, like every other timer.
                let mut dsn = Submitted::accepted(&env, internal_id, size);
                dsn.received_at = self.now();
                self.submit(dsn);
                Ok(())
            }
            Err(e) => Err(DsnError::Queue(e)),
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
        if self.backscatter(&org, &meta, &outcomes).await {
            return;
        }
        let result = async {
            let (content, lost) = self.original_content(&meta).await?;
            let mut original = meta.original(&content);
            if lost {
                original.ret = Some("HDRS");
            }
            match dsn::build_delay(
                &reporter(&org, &self.inner.fqdn),
                &original,
                &outcomes,
                until,
                self.now(),
            ) {
                Some(d) => {
                    self.queue_dsn(&meta, d).await?;
                    crate::monitor::dsn_sent("delay");
                    Ok::<(), DsnError>(())
                }
                None => Ok(()),
            }
        }
        .await;
        if let Err(e) = result {
            tracing::error!("the delay DSN for {message} was not queued, it will be retried: {e}");
            self.delay_dsn_failed(message, ordinals);
        }
    }

    /// The delay DSN could not be queued: its recipients are due for one again after a backoff.
    fn delay_dsn_failed(&self, message: Uuid, ordinals: &[i32]) {
        let now = self.now();
        let mut writes = Vec::new();
        {
            let mut st = self.state();
            let Some(m) = st.messages.get_mut(&message) else {
                return;
            };
            for r in m.rcpts.iter_mut().filter(|r| ordinals.contains(&r.ordinal)) {
                r.delay_notified = false;
                r.dsn_failures = r.dsn_failures.saturating_add(1);
                r.dsn_due = Some(now + dsn_backoff(r.dsn_failures));
                let status = if r.retry_count > 0 {
                    RecipientStatus::Retry
                } else {
                    RecipientStatus::Ready
                };
                writes.push(Write::Recipient(recipient_row(message, r, status, now)));
            }
        }
        for w in writes {
            self.write(w);
        }
    }
}

/// Why a DSN is not queued yet.
#[derive(Debug, thiserror::Error)]
pub(super) enum DsnError {
    #[error("reading the original message: {0}")]
    Body(std::io::Error),
    #[error("queueing the DSN: {0}")]
    Queue(#[from] AcceptError),
}

/// How long a DSN that could not be queued waits before its `failures`-th retry: doubling from
/// 2 s, at most 5 minutes, so a short outage costs seconds and a long one little load.
pub(super) fn dsn_backoff(failures: u32) -> Duration {
    backoff(failures, Duration::from_secs(2), Duration::from_secs(300))
}

/// `first`, doubled for each failure after the first, capped at `max`.
pub(super) fn backoff(failures: u32, first: Duration, max: Duration) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    first.saturating_mul(1 << shift).min(max)
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
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(dsn_backoff(1), Duration::from_secs(2));
        assert_eq!(dsn_backoff(2), Duration::from_secs(4));
        assert_eq!(dsn_backoff(8), Duration::from_secs(256));
        assert_eq!(dsn_backoff(9), Duration::from_secs(300));
        assert_eq!(dsn_backoff(u32::MAX), Duration::from_secs(300));
    }

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
