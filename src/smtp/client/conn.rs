//! The I/O half of a client connection: a TCP stream that may turn into TLS after STARTTLS,
//! writes under a deadline, and replies read through the sans-I/O `ResponseReader`.
//!
//! Reads untrusted input (server replies); every wait is bounded by the inactivity timeout and
//! every reply by the reader's line limits. Once anything fails the connection is marked broken
//! and never used again, since the reply stream cannot be resynchronised.
//!
//! With a protocol log, every command line and reply passes through here and is logged; the
//! message body is written with `write`, which logs nothing.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ClientError;
use crate::logs::protocol::{SessionLog, event, join_reply_lines};
use crate::smtp::proto::{Reply, ResponseReader};

const READ_CHUNK: usize = 8 * 1024;

/// QUIT is a courtesy: never wait the full inactivity timeout for its answer.
const QUIT_WAIT: Duration = Duration::from_secs(5);

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Left behind by a failed TLS upgrade: the plain socket was consumed by the handshake.
    Gone,
}

pub(super) struct Conn {
    stream: Stream,
    reader: ResponseReader,
    /// ConnectionInactivityTimeOut: the longest we wait for one reply or one write.
    timeout: Duration,
    broken: bool,
    /// The server ended the connection (EOF or reset), for the disconnect line's context.
    closed_by_remote: bool,
    read_buf: Box<[u8]>,
    log: Option<SessionLog>,
}

impl Conn {
    /// `log` is the session's protocol log, its connect line already written.
    pub(super) fn new(tcp: TcpStream, timeout: Duration, log: Option<SessionLog>) -> Conn {
        Conn {
            stream: Stream::Plain(tcp),
            reader: ResponseReader::new(),
            timeout,
            broken: false,
            closed_by_remote: false,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            log,
        }
    }

    pub(super) fn log_event(&mut self, event: char, data: &str, context: &str) {
        if let Some(log) = &mut self.log {
            log.event(event, data, context);
        }
    }

    /// Logs the error that broke the connection, once: what follows is a consequence of it.
    fn log_failure(&mut self, e: &ClientError) {
        if self.broken {
            return;
        }
        if matches!(e, ClientError::Closed | ClientError::Io(_)) {
            self.closed_by_remote = true;
        }
        self.log_event(event::INFORMATION, &e.to_string(), "");
    }

    pub(super) fn is_usable(&self) -> bool {
        !self.broken
    }

    pub(super) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Reads one whole reply. A 421 is turned into an error because the server closes the
    /// connection right after it, whatever command it answered.
    pub(super) async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        let result = self.read_reply_inner().await;
        if let Ok(r) = &result
            && self.log.is_some()
        {
            self.log_event(event::RECEIVED, &join_reply_lines(&r.to_wire()), "");
        }
        match result {
            Ok(r) if r.code == 421 => {
                // The server closes right after a 421, whatever we do.
                self.closed_by_remote = true;
                self.broken = true;
                Err(ClientError::ServiceUnavailable(r))
            }
            Err(e) => {
                self.log_failure(&e);
                self.broken = true;
                Err(e)
            }
            ok => ok,
        }
    }

    async fn read_reply_inner(&mut self) -> Result<Reply, ClientError> {
        if self.broken {
            return Err(ClientError::Closed);
        }
        // One deadline for the whole reply, so a server dribbling a byte at a time cannot stretch
        // a 400 KB reply over many timeouts.
        let deadline = Instant::now() + self.timeout;
        // Bounded: each pass either returns or appends at least one byte, and the reader fails
        // once its line or line-count limit is reached.
        loop {
            if let Some(reply) = self.reader.next_reply()? {
                return Ok(reply);
            }
            let n = match &mut self.stream {
                Stream::Plain(s) => timeout_at(deadline, s.read(&mut self.read_buf)).await,
                Stream::Tls(s) => timeout_at(deadline, s.read(&mut self.read_buf)).await,
                Stream::Gone => return Err(ClientError::Closed),
            }
            .map_err(|_| ClientError::Timeout)??;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.reader.push(&self.read_buf[..n]);
        }
    }

    /// Writes without logging: for the message body, which never goes into the protocol log.
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let result = self.write_inner(bytes).await;
        if let Err(e) = &result {
            self.log_failure(e);
            self.broken = true;
        }
        result
    }

    /// Writes one or more command lines, each ending in CRLF, and logs each one once it is out.
    pub(super) async fn write_commands(&mut self, lines: &str) -> Result<(), ClientError> {
        self.write(lines.as_bytes()).await?;
        if self.log.is_some() {
            for line in lines.split_terminator("\r\n") {
                self.log_event(event::SENT, line, "");
            }
        }
        Ok(())
    }

    async fn write_inner(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Closed);
        }
        let deadline = Instant::now() + self.timeout;
        let io = async {
            match &mut self.stream {
                Stream::Plain(s) => s.write_all(bytes).await,
                Stream::Tls(s) => {
                    s.write_all(bytes).await?;
                    // rustls buffers records; without the flush a command could sit unsent.
                    s.flush().await
                }
                Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
            }
        };
        timeout_at(deadline, io)
            .await
            .map_err(|_| ClientError::Timeout)??;
        Ok(())
    }

    /// Sends one command line (CRLF included) and reads its reply.
    pub(super) async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.write_commands(line).await?;
        self.read_reply().await
    }

    /// Like `command` for a line carrying credentials: `shown` is logged in its place.
    pub(super) async fn secret_command(
        &mut self,
        line: &str,
        shown: &str,
    ) -> Result<Reply, ClientError> {
        self.write(line.as_bytes()).await?;
        self.log_event(event::SENT, shown, "");
        self.read_reply().await
    }

    /// Runs the client side of the TLS handshake after a 220 to STARTTLS.
    pub(super) async fn upgrade(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<(), ClientError> {
        // Bytes read together with the 220 were sent before the handshake, so nothing protects
        // them; acting on them would let a man in the middle inject replies (CVE-2011-0411).
        if self.reader.has_buffered() {
            let e = ClientError::Protocol("the server sent data after its STARTTLS reply".into());
            self.log_failure(&e);
            self.broken = true;
            return Err(e);
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            let e = ClientError::Protocol("TLS is already active".into());
            self.log_failure(&e);
            self.broken = true;
            return Err(e);
        };
        let deadline = Instant::now() + self.timeout;
        let handshake = TlsConnector::from(config).connect(name, tcp);
        let result = match timeout_at(deadline, handshake).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                let version = self.tls_version().unwrap_or("TLS");
                self.log_event(event::INFORMATION, version, "TLS negotiation succeeded");
                return Ok(());
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the TLS handshake timed out".to_string(),
        };
        // Same context text as the receive side, so one search finds both directions' failures.
        self.log_event(event::INFORMATION, &result, "TLS negotiation failed");
        self.broken = true;
        Err(ClientError::Tls(result))
    }

    pub(super) fn tls_version(&self) -> Option<&'static str> {
        match &self.stream {
            Stream::Tls(s) => s.get_ref().1.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLS1.3",
                rustls::ProtocolVersion::TLSv1_2 => "TLS1.2",
                _ => "TLS",
            }),
            _ => None,
        }
    }

    /// QUIT and close, ignoring every error: the outcome of the work is already known.
    pub(super) async fn quit(mut self) {
        if !self.broken {
            self.timeout = self.timeout.min(QUIT_WAIT);
            let _ = self.command("QUIT\r\n").await;
        }
        let deadline = Instant::now() + QUIT_WAIT;
        let _ = match &mut self.stream {
            Stream::Plain(s) => timeout_at(deadline, s.shutdown()).await,
            Stream::Tls(s) => timeout_at(deadline, s.shutdown()).await,
            Stream::Gone => return,
        };
    }
}

/// The disconnect line goes out however the connection ends, including when its task is
/// cancelled or the `Client` is dropped without `quit`.
impl Drop for Conn {
    fn drop(&mut self) {
        let by = if self.closed_by_remote {
            "Remote"
        } else {
            "Local"
        };
        self.log_event(event::DISCONNECT, "", by);
    }
}
