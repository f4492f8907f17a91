//! DATA and BDAT: reading the message, the checks at its end, and durable acceptance.
//!
//! The body is streamed to its spool file as it arrives. Only the header section is held in
//! memory (bounded by MaxHeaderSize): when its end arrives the hop counts are checked, the header
//! firewall applied and the Received header (and a missing Message-ID) prepended, and the rest
//! goes through a fixed buffer to the file. DATA and BDAT share one content policy
//! ([`ContentCheck`]).

use std::time::Duration;

use uuid::Uuid;

use super::session::{Next, Session};
use crate::logs::tracking::TrackingEvent;
use crate::org::rights::ExtendedRight;
use crate::smtp::proto::{Body, ContentCheck, DataOutcome, DataReader, Reply};
use crate::transport::headers::{self, Firewall};
use crate::transport::queue::{Envelope, Incoming, ShadowOrigin, Submitted};

/// A message being received, over DATA or BDAT.
pub struct Receiving {
    /// The content policy for BDAT chunks; DATA's is judged inside its [`DataReader`].
    check: Option<ContentCheck>,
    /// The header section collected so far (only in [`Stage::Header`]).
    header: Vec<u8>,
    max_header: usize,
    stage: Stage,
}

enum Stage {
    Header,
    /// The header section was processed; the rest goes to the spool.
    Body {
        sink: Incoming,
        message_id: String,
        subject: Option<String>,
    },
    /// The message will be refused: its remaining bytes are read and dropped.
    Refused(Reply),
}

impl Receiving {
    fn new(check: Option<ContentCheck>, max_header: u64) -> Receiving {
        Receiving {
            check,
            header: Vec::new(),
            max_header: usize::try_from(max_header).unwrap_or(usize::MAX),
            stage: Stage::Header,
        }
    }

    /// Message bytes received so far (BDAT).
    fn received(&self) -> u64 {
        self.check.as_ref().map_or(0, |c| c.outcome().size)
    }

    /// Appends to the header section; returns the body bytes that followed its end, once it
    /// ended. The section ends at the first empty line, as [`headers::split`] reads it.
    fn collect_header(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let from = self.header.len().saturating_sub(3);
        self.header.extend_from_slice(bytes);
        let end = if self.header.starts_with(b"\r\n") {
            Some(2)
        } else {
            self.header[from..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|p| from + p + 4)
        };
        match end {
            Some(end) => Some(self.header.split_off(end)),
            None => {
                // A header within MaxHeaderSize has ended by now (its last line's CRLF and the
                // empty line come on top of the limit).
                if self.header.len() > self.max_header.saturating_add(4) {
                    self.header = Vec::new();
                    self.stage = Stage::Refused(Reply::new(
                        552,
                        "5.3.4",
                        "Header size exceeds fixed maximum size",
                    ));
                }
                None
            }
        }
    }
}

/// What the end of a BDAT chunk means for the session.
pub type BdatResult = Result<(), &'static str>;

impl Session {
    pub fn data_command(&mut self) -> Next {
        match &self.tx {
            None => self.protocol_error(Reply::new(503, "5.5.2", "Need mail command")),
            Some(tx) if tx.chunks.is_some() || tx.chunk_failure.is_some() => {
                self.protocol_error(Reply::new(503, "5.5.1", "Bad sequence of commands"))
            }
            Some(tx) if tx.recipients.is_empty() => {
                self.protocol_error(Reply::new(503, "5.5.2", "Need rcpt command"))
            }
            Some(_) => {
                if let Some(r) = self.gw.pressure.refusal() {
                    self.reply(r);
                    return Next::Continue;
                }
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
            u64::try_from(self.connector.max_message_size).unwrap_or(0)
        }
    }

    fn header_limit(&self) -> u64 {
        u64::try_from(self.connector.max_header_size).unwrap_or(0)
    }

    /// Reads the message after 354. Returns false when the client went away mid-DATA, in which
    /// case nothing was queued.
    pub async fn receive_data(&mut self, buf: &mut [u8]) -> bool {
        let mut reader = DataReader::new(self.size_limit(), self.header_limit());
        let mut rx = Receiving::new(None, self.header_limit());
        let mut out = Vec::with_capacity(buf.len());
        let input = self.reader.take_buffered();
        let mut done = reader.feed(&input, &mut out);
        self.absorb(&mut rx, &out).await;
        if let Some(consumed) = done {
            self.reader.push(&input[consumed..]);
        }
        drop(input);
        while done.is_none() {
            let Some(n) = self.read_chunk(buf).await else {
                self.tx = None;
                return false;
            };
            out.clear();
            done = reader.feed(&buf[..n], &mut out);
            self.absorb(&mut rx, &out).await;
            if let Some(consumed) = done {
                self.reader.push(&buf[consumed..n]);
            }
        }
        self.finish_message(rx, reader.outcome(), buf).await
    }

    pub fn bdat_command(&mut self, size: u64, last: bool) -> Next {
        if !self.connector.chunking_enabled {
            // CHUNKING is not advertised, so BDAT is no command here, as in Exchange; what the
            // client sends next is read as commands, and errors are counted.
            return self.protocol_error(Reply::new(500, "5.3.3", "Unrecognized command"));
        }
        Next::Bdat { size, last }
    }

    /// Reads one BDAT chunk (RFC 3030). Its octets are consumed even when the chunk is refused,
    /// so they are never taken for commands, with one exception: a chunk that is not going to be
    /// kept and is larger than the message size limit. Reading (up to 2^64) octets only to drop
    /// them would let a client hold the session for as long as it likes, and without reading
    /// them the session cannot find the next command; so the refusal is sent and the connection
    /// closed (`Err` names who closed it). A client that respects the advertised SIZE never sees
    /// this.
    pub async fn receive_bdat(&mut self, size: u64, last: bool, buf: &mut [u8]) -> BdatResult {
        let limit = self.size_limit();
        let too_large = || {
            Reply::new(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            )
        };
        let refusal = match &self.tx {
            None => Some(Reply::new(503, "5.5.2", "Need mail command")),
            Some(tx) if tx.recipients.is_empty() => {
                Some(Reply::new(503, "5.5.2", "Need rcpt command"))
            }
            _ => None,
        };
        let mut rx = None;
        if let Some(tx) = &mut self.tx
            && refusal.is_none()
        {
            let have = tx.chunks.as_ref().map_or(0, Receiving::received);
            let over = have.checked_add(size).is_none_or(|total| total > limit);
            if tx.chunk_failure.is_none() && over {
                tx.chunk_failure = Some(too_large());
                tx.chunks = None;
            }
            if tx.chunk_failure.is_none() {
                let max_header = self.connector.max_header_size;
                let max_header = u64::try_from(max_header).unwrap_or(0);
                rx = Some(tx.chunks.take().unwrap_or_else(|| {
                    Receiving::new(Some(ContentCheck::new(limit, max_header)), max_header)
                }));
            }
        }
        if rx.is_none() && size > limit {
            let r = refusal.unwrap_or_else(too_large);
            self.tx = None;
            self.reply_tarpit(r).await;
            self.log_event('*', "", "BDAT chunk larger than the size limit not read");
            self.flush().await;
            return Err("Local");
        }
        let mut remaining = size;
        let input = self.reader.take_buffered();
        let take = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
        if let Some(rx) = &mut rx {
            self.absorb(rx, &input[..take]).await;
        }
        remaining -= take as u64;
        if remaining == 0 {
            self.reader.push(&input[take..]);
        }
        drop(input);
        while remaining > 0 {
            let Some(n) = self.read_chunk(buf).await else {
                self.tx = None;
                return Err("Remote");
            };
            let take = usize::try_from(remaining).map_or(n, |r| r.min(n));
            if let Some(rx) = &mut rx {
                self.absorb(rx, &buf[..take]).await;
            }
            remaining -= take as u64;
            if remaining == 0 {
                self.reader.push(&buf[take..n]);
            }
        }
        if let Some(r) = refusal {
            self.protocol_error(r);
            return Ok(());
        }
        let Some(tx) = &mut self.tx else {
            return Ok(());
        };
        if !last {
            match tx.chunk_failure.clone() {
                Some(r) => self.reply(r),
                None => {
                    tx.chunks = rx;
                    self.reply(Reply::new(250, "2.0.0", format!("{size} bytes received")))
                }
            }
            return Ok(());
        }
        if let Some(r) = tx.chunk_failure.clone() {
            self.tx = None;
            self.reply(r);
            return Ok(());
        }
        if let Some(rx) = rx {
            let outcome = rx.check.as_ref().map(ContentCheck::outcome);
            if !self
                .finish_message(rx, outcome.unwrap_or_default(), buf)
                .await
            {
                return Err("Remote");
            }
        }
        Ok(())
    }

    /// Takes message bytes: the header section until it ends, then the spool file.
    async fn absorb(&mut self, rx: &mut Receiving, bytes: &[u8]) {
        if let Some(check) = &mut rx.check {
            check.feed(bytes);
        }
        let rest = match &mut rx.stage {
            Stage::Refused(_) => return,
            Stage::Body { sink, .. } => return sink.write(bytes).await,
            Stage::Header => match rx.collect_header(bytes) {
                Some(rest) => rest,
                None => return,
            },
        };
        self.start_body(rx).await;
        if let Stage::Body { sink, .. } = &mut rx.stage {
            sink.write(&rest).await;
        }
    }

    /// The header section is complete: check it, rewrite it and start the spool file with it.
    async fn start_body(&mut self, rx: &mut Receiving) {
        let header = std::mem::take(&mut rx.header);
        let org = &self.org;
        if headers::hop_count(&header) > self.connector.max_hop_count as usize
            || (self.connector.max_local_hop_count > 0
                && headers::local_hop_count(&header, |h| org.local_fqdns.iter().any(|l| l == h))
                    > self.connector.max_local_hop_count as usize)
        {
            rx.stage = Stage::Refused(Reply::new(
                554,
                "5.4.6",
                "Hop count exceeded - possible mail loop",
            ));
            return;
        }
        let rights = self.identity.rights;
        let mut new_header = headers::apply_firewall(
            &header,
            &Firewall {
                routing: rights.has(ExtendedRight::AcceptRoutingHeaders),
                organization: rights.has(ExtendedRight::AcceptOrganizationHeaders),
                forest: rights.has(ExtendedRight::AcceptForestHeaders),
            },
        );
        let id = Uuid::now_v7();
        let message_id = match headers::value(&header, "Message-ID") {
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
        let subject = headers::value(&header, "Subject");
        let mut sink = self.gw.spool.incoming(id);
        sink.write(self.received_header(id).as_bytes()).await;
        sink.write(&new_header).await;
        rx.stage = Stage::Body {
            sink,
            message_id,
            subject,
        };
    }

    /// The end-of-data checks, then the queue. The 250 goes out only after the queue made the
    /// message durable, and, unless the sender keeps a shadow copy, after the delayed
    /// acknowledgement. Returns false when the client went away while it waited.
    async fn finish_message(
        &mut self,
        mut rx: Receiving,
        outcome: DataOutcome,
        buf: &mut [u8],
    ) -> bool {
        let Some(tx) = self.tx.take() else {
            return true;
        };
        if let Some(r) = outcome.rejection() {
            self.reply_tarpit(r).await;
            return true;
        }
        if let Stage::Header = rx.stage {
            // No empty line: the whole message is header.
            self.start_body(&mut rx).await;
        }
        let (sink, message_id, subject) = match rx.stage {
            Stage::Body {
                sink,
                message_id,
                subject,
            } => (sink, message_id, subject),
            Stage::Refused(r) => {
                self.reply_tarpit(r).await;
                return true;
            }
            Stage::Header => return true,
        };
        let id = sink.id();
        let shadow = match (tx.shadowed, &tx.params.xshadow, &self.shadow_context) {
            (true, Some(message_id), Some(context)) => Some(ShadowOrigin {
                message_id: message_id.clone(),
                context: context.clone(),
            }),
            _ => None,
        };
        // A sender that shadows the message (XSHADOW= honoured) keeps its copy until this node
        // reports it delivered, so it needs no delayed acknowledgement.
        let shadowed = shadow.is_some();
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
            shadow,
        };
        self.log_event(
            '*',
            &format!("{id};{}", envelope.recipients.len()),
            "receiving message",
        );
        let size = sink.len();
        // Without a database the message cannot be made durable: say so at once rather than
        // after the pool's connect timeout. The body's file goes with the sink.
        if self.gw.pressure.database_down() {
            self.reply(crate::transport::pressure::database_refusal());
            return true;
        }
        // The one durable step: after it, the message is the queue's.
        let accepted = self.gw.intake.accept(&envelope, sink).await;
        match accepted {
            Ok(internal_id) => {
                self.track_receive(&envelope, internal_id, size);
                let delay = if shadowed {
                    Duration::ZERO
                } else {
                    self.ack_delay()
                };
                // Taken before the submit, so the message cannot reach its next hop unseen.
                let waiter = (!delay.is_zero())
                    .then(|| self.gw.intake.watch_next_hop(id))
                    .flatten();
                self.gw
                    .intake
                    .submit(Submitted::accepted(&envelope, internal_id, size));
                if let Some(waiter) = waiter
                    && !self.delay_ack(waiter, delay, buf).await
                {
                    return false;
                }
                self.reply(Reply::new(
                    250,
                    "2.6.0",
                    format!("{message_id} [InternalId={internal_id}] Queued mail for delivery"),
                ));
            }
            Err(e) => {
                tracing::error!("queueing message {id}: {e}");
                if crate::transport::pressure::lost_database(&e) {
                    // Sessions refuse at MAIL from now on, not only after the monitor's probe.
                    self.gw.pressure.set_database(false);
                    self.reply(crate::transport::pressure::database_refusal());
                } else {
                    self.reply(Reply::new(452, "4.3.1", "Insufficient system resources"));
                }
            }
        }
        true
    }

    fn track_receive(&self, env: &Envelope, internal_id: i64, size: u64) {
        crate::monitor::received(&self.connector.name);
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
