//! DATA and BDAT: reading the message, the checks at its end, and durable acceptance.

use uuid::Uuid;

use super::session::{Next, Session};
use crate::logs::tracking::TrackingEvent;
use crate::org::rights::ExtendedRight;
use crate::smtp::proto::{Body, DataOutcome, DataReader, Reply, header_section_len};
use crate::transport::headers::{self, Firewall};
use crate::transport::queue::{Envelope, Submitted};

impl Session {
    pub fn data_command(&mut self) -> Next {
        match &self.tx {
            None => self.protocol_error(Reply::new(503, "5.5.2", "Need mail command")),
            Some(tx) if tx.chunks.is_some() => {
                self.protocol_error(Reply::new(503, "5.5.1", "Bad sequence of commands"))
            }
            Some(tx) if tx.recipients.is_empty() => {
                self.protocol_error(Reply::new(503, "5.5.2", "Need rcpt command"))
            }
            Some(_) => {
                self.reply(Reply::new(
                    354,
                    "",
                    "Start mail input; end with <CRLF>.<CRLF>",
                ));
                Next::Data
            }
        }
    }

    fn size_limit(&self) -> u64 {
        if self
            .identity
            .rights
            .has(ExtendedRight::BypassMessageSizeLimit)
        {
            i32::MAX as u64
        } else {
            self.connector.max_message_size as u64
        }
    }

    /// Reads the message after 354. Returns false when the client went away mid-DATA, in which
    /// case nothing was queued.
    pub async fn receive_data(&mut self, buf: &mut [u8]) -> bool {
        let mut reader = DataReader::new(self.size_limit(), self.connector.max_header_size as u64);
        let mut body = Vec::new();
        let mut input = self.reader.take_buffered();
        loop {
            if let Some(consumed) = reader.feed(&input, &mut body) {
                self.reader.push(&input[consumed..]);
                break;
            }
            match self.read_chunk(buf).await {
                Some(n) => input = buf[..n].to_vec(),
                None => {
                    self.tx = None;
                    return false;
                }
            }
        }
        let outcome = reader.outcome();
        self.finish_message(body, Some(outcome)).await;
        true
    }

    pub fn bdat_command(&mut self, size: u64, last: bool) -> Next {
        Next::Bdat { size, last }
    }

    /// Reads one BDAT chunk (RFC 3030). The octets are always consumed, even when the command is
    /// refused, so they are never taken for commands.
    pub async fn receive_bdat(&mut self, size: u64, last: bool, buf: &mut [u8]) -> bool {
        let limit = self.size_limit();
        let refusal = match &self.tx {
            None => Some(Reply::new(503, "5.5.2", "Need mail command")),
            Some(tx) if tx.recipients.is_empty() => {
                Some(Reply::new(503, "5.5.2", "Need rcpt command"))
            }
            _ => None,
        };
        let mut keep = refusal.is_none();
        if let Some(tx) = &mut self.tx
            && keep
        {
            let have = tx.chunks.as_ref().map_or(0, |c| c.len() as u64);
            if tx.chunk_failure.is_none() && have + size > limit {
                tx.chunk_failure = Some(Reply::new(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed maximum message size",
                ));
                tx.chunks = Some(Vec::new());
            }
            keep = tx.chunk_failure.is_none();
        }
        let mut chunk = Vec::new();
        let mut remaining = size;
        let mut buffered = self.reader.take_buffered();
        loop {
            let take = remaining.min(buffered.len() as u64) as usize;
            if keep {
                chunk.extend_from_slice(&buffered[..take]);
            }
            remaining -= take as u64;
            if remaining == 0 {
                self.reader.push(&buffered[take..]);
                break;
            }
            match self.read_chunk(buf).await {
                Some(n) => buffered = buf[..n].to_vec(),
                None => {
                    self.tx = None;
                    return false;
                }
            }
        }
        if let Some(r) = refusal {
            self.protocol_error(r);
            return true;
        }
        let Some(tx) = &mut self.tx else { return true };
        let chunks = tx.chunks.get_or_insert_with(Vec::new);
        chunks.extend_from_slice(&chunk);
        if !last {
            match tx.chunk_failure.clone() {
                Some(r) => self.reply(r),
                None => self.reply(Reply::new(250, "2.0.0", format!("{size} bytes received"))),
            }
            return true;
        }
        if let Some(r) = tx.chunk_failure.clone() {
            self.tx = None;
            self.reply(r);
            return true;
        }
        let body = std::mem::take(chunks);
        let header_too_large =
            header_section_len(&body) as u64 > self.connector.max_header_size as u64;
        let outcome = DataOutcome {
            size: body.len() as u64,
            too_large: false,
            header_too_large,
            bare_lf: false,
            bare_cr: false,
        };
        self.finish_message(body, Some(outcome)).await;
        true
    }

    /// The end-of-data checks, then the queue. The 250 goes out only after the queue made the
    /// message durable.
    async fn finish_message(&mut self, body: Vec<u8>, outcome: Option<DataOutcome>) {
        let Some(tx) = self.tx.take() else { return };
        if let Some(r) = outcome.as_ref().and_then(DataOutcome::rejection) {
            self.reply_tarpit(r).await;
            return;
        }
        let (header, rest) = headers::split(&body);
        if headers::hop_count(header) > self.connector.max_hop_count as usize {
            self.reply_tarpit(Reply::new(
                554,
                "5.4.6",
                "Hop count exceeded - possible mail loop",
            ))
            .await;
            return;
        }
        let rights = self.identity.rights;
        let mut new_header = headers::apply_firewall(
            header,
            &Firewall {
                routing: rights.has(ExtendedRight::AcceptRoutingHeaders),
                organization: rights.has(ExtendedRight::AcceptOrganizationHeaders),
                forest: rights.has(ExtendedRight::AcceptForestHeaders),
            },
        );
        let id = Uuid::now_v7();
        let message_id = match headers::value(header, "Message-ID") {
            Some(m) if !m.is_empty() => m,
            _ => {
                // Exchange stamps a Message-ID on mail that arrives without one.
                let m = format!("<{}@{}>", id.simple(), self.connector.fqdn);
                let mut h = format!("Message-ID: {m}\r\n").into_bytes();
                h.extend_from_slice(&new_header);
                new_header = h;
                m
            }
        };
        let subject = headers::value(header, "Subject");
        let received = self.received_header(id);
        let mut full_header = received.into_bytes();
        full_header.extend_from_slice(&new_header);
        let payload = rest.to_vec();
        let envelope = Envelope {
            id,
            server: self.org.server.name.clone(),
            from: tx.from.clone(),
            recipients: tx.recipients,
            source_ip: self.remote.ip(),
            receive_connector: self.connector.identity(),
            helo: self.helo.clone().unwrap_or_default(),
            auth_user: self.identity.account.clone(),
            internet_message_id: Some(message_id.clone()),
            subject,
            env_id: tx.params.envid.clone(),
            ret: tx.params.ret.map(|r| format!("{r:?}").to_ascii_uppercase()),
            body_type: tx.params.body.map(|b| {
                match b {
                    Body::SevenBit => "7BIT",
                    Body::EightBitMime => "8BITMIME",
                    Body::BinaryMime => "BINARYMIME",
                }
                .to_string()
            }),
            smtp_utf8: tx.params.smtputf8,
        };
        self.log_event(
            '*',
            &format!("{id};{}", envelope.recipients.len()),
            "receiving message",
        );
        let size = (full_header.len() + payload.len()) as u64;
        match self
            .gw
            .intake
            .accept(&self.gw.spool, &envelope, full_header, payload)
            .await
        {
            Ok(internal_id) => {
                self.track_receive(&envelope, internal_id, size);
                self.gw
                    .intake
                    .submit(Submitted::accepted(&envelope, internal_id, size));
                self.reply(Reply::new(
                    250,
                    "2.6.0",
                    format!("{message_id} [InternalId={internal_id}] Queued mail for delivery"),
                ))
            }
            Err(e) => {
                tracing::error!("queueing message {id}: {e}");
                self.reply(Reply::new(452, "4.3.1", "Insufficient system resources"));
            }
        }
    }

    fn track_receive(&self, env: &Envelope, internal_id: i64, size: u64) {
        let recipients: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
        self.gw.tracking.record(&TrackingEvent {
            event_id: "RECEIVE",
            source: "SMTP",
            client_ip: Some(self.remote.ip()),
            client_hostname: self.helo.as_deref(),
            server_ip: Some(self.local.ip()),
            server_hostname: Some(&self.connector.fqdn),
            source_context: None,
            connector_id: Some(&env.receive_connector),
            internal_message_id: internal_id,
            message_id: env.internet_message_id.as_deref(),
            recipients: &recipients,
            recipient_status: &[],
            total_bytes: size,
            related_recipient_address: None,
            reference: None,
            subject: env.subject.as_deref(),
            sender: &env.from,
            return_path: &env.from,
            message_info: None,
            directionality: Some(if self.identity.is_authenticated() {
                "Originating"
            } else {
                "Incoming"
            }),
        });
    }

    fn received_header(&self, id: Uuid) -> String {
        let with = match (self.is_tls(), self.identity.is_authenticated(), self.esmtp) {
            (_, _, false) => "SMTP",
            (true, true, _) => "ESMTPSA",
            (true, false, _) => "ESMTPS",
            (false, true, _) => "ESMTPA",
            (false, false, _) => "ESMTP",
        };
        let tls = self
            .stream
            .as_ref()
            .and_then(|s| s.tls_version())
            .map(|v| format!(" ({v})"))
            .unwrap_or_default();
        format!(
            "Received: from {} ([{}]) by {} ([{}]) with {}{} id {};\r\n {}\r\n",
            self.helo.as_deref().unwrap_or("unknown"),
            self.remote.ip(),
            self.connector.fqdn,
            self.local.ip(),
            with,
            tls,
            id.simple(),
            super::session::rfc2822_now()
        )
    }
}
