//! One inbound SMTP session: reading commands, writing replies, timeouts and error limits.
//!
//! Replies are collected and flushed when no further pipelined command is waiting, so a
//! PIPELINING client gets its replies in one write, as RFC 2920 intends. The collected replies
//! are bounded: past OUT_HIGH_WATER they are written before another command is read, so a client
//! that pipelines without reading its replies is held back by its own unread replies, and then
//! dropped when the write times out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::Gateway;
use super::drain::{Phase, shutting_down};
use super::identity::Identity;
use super::stream::Stream;
use crate::logs::protocol::{SessionLog, join_reply_lines};
use crate::org::rights::Permission;
use crate::org::{Org, ReceiveConnector};
use crate::smtp::proto::{Command, Line, LineReader, MailParams, Reply};
use crate::transport::queue::EnvelopeRecipient;

/// The longest command line accepted (RFC 5321 allows 512; AUTH responses need more).
pub const MAX_LINE: usize = 4096;

/// Replies waiting to be written past which no further command is dispatched until they are.
pub const OUT_HIGH_WATER: usize = 16 * 1024;

/// The longest wait for a TLS close_notify to go out at the end of a session.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);

/// What the dispatcher wants the I/O loop to do next.
pub enum Next {
    Continue,
    Data,
    Bdat { size: u64, last: bool },
    StartTls,
    Close,
}

/// An open mail transaction.
pub struct Transaction {
    pub from: String,
    pub params: MailParams,
    pub recipients: Vec<EnvelopeRecipient>,
    /// The message BDAT chunks are building.
    pub chunks: Option<super::data::Receiving>,
    /// Set when a BDAT chunk broke a limit: the rest is read and discarded, then this reply is sent.
    pub chunk_failure: Option<Reply>,
    /// A shadow server keeps a copy of this message (its MAIL carried an XSHADOW= id this node
    /// keeps, `params.xshadow`): it needs no delayed acknowledgement.
    pub shadowed: bool,
}

pub struct Session {
    pub gw: Arc<Gateway>,
    pub org: Arc<Org>,
    pub connector: ReceiveConnector,
    pub acl: Vec<Permission>,
    pub stream: Option<Stream>,
    pub reader: LineReader,
    out: Vec<u8>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub helo: Option<String>,
    pub esmtp: bool,
    pub identity: Identity,
    pub logon_failures: u32,
    pub protocol_errors: u32,
    pub tx: Option<Transaction>,
    /// The shadow server's context, once its XSHADOW was accepted: this node is then the
    /// primary for the messages it marks with XSHADOW=.
    pub shadow_context: Option<String>,
    /// Recipient callouts this session caused (`recipient_filter`), bounded.
    pub callouts: u32,
    pub log: Option<SessionLog>,
    /// The IP Block List providers' look-up of the source, from the first MAIL on.
    pub dnsbl: Option<super::dnsbl::State>,
    started: Instant,
    /// Set once the 421 for too many errors is queued: nothing more is read, whichever path
    /// counted the last error.
    closing: bool,
}

enum ReadOutcome {
    Data(usize),
    Closed,
    TimedOut,
    /// The process is stopping: see `drain`.
    ShuttingDown,
}

impl Session {
    pub fn new(
        gw: Arc<Gateway>,
        org: Arc<Org>,
        connector: ReceiveConnector,
        stream: Stream,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Session {
        let acl = org.acl(connector.id);
        let identity = Identity::at_connect(&connector, &acl);
        let log = connector.protocol_logging().then(|| {
            gw.receive_log.session(
                connector.identity(),
                crate::logs::protocol::new_session_id(),
                local,
                remote,
            )
        });
        Session {
            gw,
            org,
            acl,
            identity,
            connector,
            stream: Some(stream),
            reader: LineReader::new(MAX_LINE),
            out: Vec::new(),
            local,
            remote,
            helo: None,
            esmtp: false,
            logon_failures: 0,
            protocol_errors: 0,
            tx: None,
            shadow_context: None,
            callouts: 0,
            log,
            dnsbl: None,
            started: Instant::now(),
            closing: false,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Stream::Tls(_)))
    }

    pub fn log_event(&mut self, event: char, data: &str, context: &str) {
        if let Some(log) = &mut self.log {
            log.event(event, data, context);
        }
    }

    pub fn log_permissions(&mut self) {
        let line = self.identity.rights.log_line();
        self.log_event('*', &line, "Set Session Permissions");
    }

    /// How long the next read, write or handshake may take: ConnectionInactivityTimeout, cut
    /// short by what is left of ConnectionTimeout.
    pub fn io_limit(&self) -> Duration {
        let inactivity = Duration::from_secs(self.connector.connection_inactivity_timeout as u64);
        let total = Duration::from_secs(self.connector.connection_timeout as u64);
        inactivity.min(total.saturating_sub(self.started.elapsed()))
    }

    /// What ConnectionTimeout leaves of this session.
    pub fn time_left(&self) -> Duration {
        let total = Duration::from_secs(self.connector.connection_timeout as u64);
        total.saturating_sub(self.started.elapsed())
    }

    /// Queues a reply for the next flush.
    pub fn reply(&mut self, r: Reply) {
        let wire = r.to_wire();
        self.log_event('>', &join_reply_lines(&wire), "");
        self.out.extend_from_slice(wire.as_bytes());
    }

    /// A 5xx reply to an untrusted session waits TarpitInterval first, to slow down harvesting.
    pub async fn reply_tarpit(&mut self, r: Reply) {
        if r.code >= 500 && !self.identity.is_trusted() && self.connector.tarpit_interval > 0 {
            let d = Duration::from_secs(self.connector.tarpit_interval as u64);
            self.flush().await;
            self.log_event('*', &format!("Tarpit for '{}'", tarpit_text(d)), "");
            tokio::time::sleep(d).await;
        }
        self.reply(r);
    }

    /// Counts a protocol error; past MaxProtocolErrors the session ends.
    pub fn protocol_error(&mut self, r: Reply) -> Next {
        self.reply(r);
        self.protocol_errors = self.protocol_errors.saturating_add(1);
        match self.connector.max_protocol_errors {
            Some(max) if self.protocol_errors > max as u32 => {
                self.reply(Reply::new(
                    421,
                    "4.7.0",
                    "Too many errors on this connection, closing transmission channel",
                ));
                self.closing = true;
                Next::Close
            }
            _ => Next::Continue,
        }
    }

    /// Writes the queued replies. False when the client is gone or did not take them within
    /// the I/O limit; the session then ends without writing anything more.
    pub async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let out = std::mem::take(&mut self.out);
        let limit = self.io_limit();
        let Some(s) = &mut self.stream else {
            return false;
        };
        match s.write_all(&out, limit).await {
            Ok(()) => true,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    self.log_event('*', "", "Timeout writing to the client");
                }
                // A half-written reply stream cannot be resumed: nothing more goes out.
                self.stream = None;
                false
            }
        }
    }

    fn banner(&self) -> Reply {
        match &self.connector.banner {
            Some(b) => {
                let text = b.strip_prefix("220 ").unwrap_or(b);
                Reply::new(220, "", text)
            }
            None => Reply::new(
                220,
                "",
                format!(
                    "{} Microsoft ESMTP MAIL Service ready at {}",
                    self.connector.fqdn,
                    rfc2822_now()
                ),
            ),
        }
    }

    /// Reads more input, bounded by ConnectionInactivityTimeout and ConnectionTimeout, and by
    /// a stop: between transactions the session ends as soon as the process drains, inside
    /// one only when the drain's bound cuts it.
    async fn read_more(&mut self, buf: &mut [u8]) -> ReadOutcome {
        let limit = self.io_limit();
        let stop = if self.tx.is_none() {
            Phase::Draining
        } else {
            Phase::Cut
        };
        let drain = self.gw.drain.clone();
        let Some(stream) = &mut self.stream else {
            return ReadOutcome::Closed;
        };
        tokio::select! {
            r = tokio::time::timeout(limit, stream.read(buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) => ReadOutcome::Closed,
                Ok(Ok(n)) => ReadOutcome::Data(n),
                Err(_) => ReadOutcome::TimedOut,
            },
            _ = drain.reached(stop) => ReadOutcome::ShuttingDown,
        }
    }

    fn timeout_reply(&self) -> Reply {
        let total = Duration::from_secs(self.connector.connection_timeout as u64);
        if self.started.elapsed() >= total {
            Reply::new(421, "4.4.1", "Connection timed out")
        } else {
            Reply::new(451, "4.7.0", "Timeout waiting for client input")
        }
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        self.log_event('+', "", "");
        self.log_permissions();
        let banner = self.banner();
        self.reply(banner);
        let mut buf = vec![0u8; 64 * 1024];
        let closed_by = 'session: loop {
            // Dispatch every complete line already buffered before reading again.
            while let Some(line) = self.reader.next_line() {
                let next = match line {
                    Line::TooLong => {
                        self.log_event('<', "(line too long)", "");
                        self.protocol_error(Reply::new(500, "5.5.2", "Line too long"))
                    }
                    Line::Complete(bytes) => self.dispatch(&bytes).await,
                };
                match next {
                    Next::Continue => {
                        if self.out.len() >= OUT_HIGH_WATER && !self.flush().await {
                            break 'session "Remote";
                        }
                    }
                    Next::Close => {
                        self.flush().await;
                        break 'session "Local";
                    }
                    Next::StartTls => {
                        if !self.start_tls().await {
                            break 'session "Local";
                        }
                    }
                    Next::Data => {
                        if !self.flush().await || !self.receive_data(&mut buf).await {
                            break 'session "Remote";
                        }
                    }
                    Next::Bdat { size, last } => {
                        if let Err(by) = self.receive_bdat(size, last, &mut buf).await {
                            break 'session by;
                        }
                        if self.out.len() >= OUT_HIGH_WATER && !self.flush().await {
                            break 'session "Remote";
                        }
                    }
                }
                // A refused BDAT chunk counts its error after its octets are read, where no
                // Next::Close can be returned.
                if self.closing {
                    self.flush().await;
                    break 'session "Local";
                }
            }
            if !self.flush().await {
                break 'session "Remote";
            }
            match self.read_more(&mut buf).await {
                ReadOutcome::Data(n) => self.reader.push(&buf[..n]),
                ReadOutcome::Closed => break 'session "Remote",
                ReadOutcome::TimedOut => {
                    let r = self.timeout_reply();
                    self.reply(r);
                    self.flush().await;
                    break 'session "Local";
                }
                ReadOutcome::ShuttingDown => {
                    self.reply(shutting_down());
                    self.flush().await;
                    break 'session "Local";
                }
            }
        };
        let limit = self.io_limit().min(SHUTDOWN_LIMIT);
        if let Some(s) = &mut self.stream {
            s.shutdown(limit).await;
        }
        self.log_event('-', "", closed_by);
    }

    /// Reads input for the DATA/BDAT phases, honouring the same timeouts. Returns None on close/timeout.
    pub async fn read_chunk(&mut self, buf: &mut [u8]) -> Option<usize> {
        match self.read_more(buf).await {
            ReadOutcome::Data(n) => Some(n),
            ReadOutcome::Closed => None,
            ReadOutcome::TimedOut => {
                let r = self.timeout_reply();
                self.reply(r);
                self.flush().await;
                None
            }
            ReadOutcome::ShuttingDown => {
                self.reply(shutting_down());
                self.flush().await;
                None
            }
        }
    }

    async fn dispatch(&mut self, line: &[u8]) -> Next {
        let cmd = crate::smtp::proto::parse_command(line);
        let shown = log_form(line, &cmd);
        self.log_event('<', &shown, "");
        let cmd = match cmd {
            Ok(c) => c,
            Err(e) => return self.protocol_error(e.reply()),
        };
        match cmd {
            Command::Ehlo(host) => self.ehlo(host, true),
            Command::Helo(host) => self.ehlo(host, false),
            Command::StartTls => self.starttls_command(),
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial).await,
            Command::Mail { from, params } => self.mail(from, params).await,
            Command::Rcpt { to, params } => self.rcpt(to, params).await,
            Command::Data => self.data_command(),
            Command::Bdat { size, last } => self.bdat_command(size, last),
            Command::Rset => {
                self.tx = None;
                self.reply(Reply::new(250, "2.0.0", "Resetting"));
                Next::Continue
            }
            Command::Noop => {
                self.reply(Reply::new(250, "2.0.0", "OK"));
                Next::Continue
            }
            Command::Quit => {
                self.reply(Reply::new(
                    221,
                    "2.0.0",
                    "Service closing transmission channel",
                ));
                Next::Close
            }
            Command::Help => {
                self.reply(Reply::multi(
                    214,
                    vec![
                        "This server supports the following commands:".into(),
                        "HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP AUTH BDAT".into(),
                    ],
                ));
                Next::Continue
            }
            Command::Vrfy(_) => {
                self.reply(Reply::new(252, "2.1.5", "Cannot VRFY user"));
                Next::Continue
            }
            Command::XShadow(context) => self.xshadow_command(context).await,
            Command::XQDiscard(count) => self.xqdiscard_command(count).await,
            Command::Expn(_) => {
                self.protocol_error(Reply::new(502, "5.3.3", "Command not implemented"))
            }
        }
    }

    fn starttls_command(&mut self) -> Next {
        if self.helo.is_none() {
            return self.protocol_error(Reply::new(503, "5.5.2", "Send hello first"));
        }
        if !self.starttls_offered() {
            return self.protocol_error(Reply::new(500, "5.3.3", "Unrecognized command"));
        }
        if self.tx.is_some() {
            return self.protocol_error(Reply::new(503, "5.5.1", "Bad sequence of commands"));
        }
        self.reply(Reply::new(220, "2.0.0", "SMTP server ready"));
        Next::StartTls
    }

    pub fn starttls_offered(&self) -> bool {
        !self.is_tls()
            && self.gw.tls.is_some()
            && self.connector.has_auth(crate::org::AuthMechanism::Tls)
    }

    /// Switches to TLS. Anything the client pipelined after STARTTLS was sent in clear text and
    /// is thrown away (the STARTTLS command-injection flaw, CVE-2011-0411 and kin).
    async fn start_tls(&mut self) -> bool {
        if !self.flush().await {
            return false;
        }
        let injected = self.reader.take_buffered();
        if !injected.is_empty() {
            self.log_event(
                '*',
                &format!(
                    "{} bytes pipelined after STARTTLS discarded",
                    injected.len()
                ),
                "",
            );
        }
        let limit = self.io_limit();
        let Some(store) = self.gw.tls.clone() else {
            return false;
        };
        // seed 001: the certificate carrying the connector's FQDN, else the server's.
        let config = match store.smtp_config(&self.connector.fqdn) {
            Ok(c) => c,
            Err(e) => {
                self.log_event('*', &e.to_string(), "TLS negotiation failed");
                return false;
            }
        };
        let Some(stream) = self.stream.take() else {
            return false;
        };
        match stream.upgrade(config, limit).await {
            Ok(tls) => {
                self.stream = Some(tls);
                // RFC 3207: the session starts over, and the client must EHLO again.
                self.helo = None;
                self.esmtp = false;
                self.tx = None;
                self.shadow_context = None;
                self.log_event('*', "", "TLS negotiation succeeded");
                true
            }
            Err(e) => {
                self.log_event('*', &e.to_string(), "TLS negotiation failed");
                false
            }
        }
    }

    pub fn now_rfc2822() -> String {
        rfc2822_now()
    }
}

fn log_form(line: &[u8], cmd: &Result<Command, crate::smtp::proto::ProtoError>) -> String {
    // Credentials never reach the protocol log, whether or not their line parsed.
    if let Some(masked) = super::auth::masked_log_form(line, cmd.is_ok()) {
        return masked;
    }
    String::from_utf8_lossy(line).into_owned()
}

/// `Wed, 11 Jan 2023 16:59:51 +0100`, the date form of the banner and Received headers.
pub fn rfc2822_now() -> String {
    let now = OffsetDateTime::now_local().unwrap_or_else(|_| OffsetDateTime::now_utc());
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day padding:none] [month repr:short] [year] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    now.format(&fmt).unwrap_or_default()
}

/// Exchange writes tarpit delays as `d.hh:mm:ss.fff`, e.g. `0.00:00:05`.
fn tarpit_text(d: Duration) -> String {
    let s = d.as_secs();
    format!(
        "{}.{:02}:{:02}:{:02}",
        s / 86400,
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}
