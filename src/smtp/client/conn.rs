//! The I/O half of a client connection: a TCP stream that may turn into TLS after STARTTLS,
//! writes under a deadline, and replies read through the sans-I/O `ResponseReader`.
//!
//! Reads untrusted input (server replies); every wait is bounded by the inactivity timeout and
//! every reply by the reader's line limits. Once anything fails the connection is marked broken
//! and never used again, since the reply stream cannot be resynchronised.

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
    read_buf: Box<[u8]>,
}

impl Conn {
    pub(super) fn new(tcp: TcpStream, timeout: Duration) -> Conn {
        Conn {
            stream: Stream::Plain(tcp),
            reader: ResponseReader::new(),
            timeout,
            broken: false,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
        }
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
        match result {
            Ok(r) if r.code == 421 => {
                self.broken = true;
                Err(ClientError::ServiceUnavailable(r))
            }
            Err(e) => {
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

    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let result = self.write_inner(bytes).await;
        if result.is_err() {
            self.broken = true;
        }
        result
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
        self.write(line.as_bytes()).await?;
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
            self.broken = true;
            return Err(ClientError::Protocol(
                "the server sent data after its STARTTLS reply".into(),
            ));
        }
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            self.broken = true;
            return Err(ClientError::Protocol("TLS is already active".into()));
        };
        let deadline = Instant::now() + self.timeout;
        let handshake = TlsConnector::from(config).connect(name, tcp);
        match timeout_at(deadline, handshake).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
            Ok(Err(e)) => {
                self.broken = true;
                Err(ClientError::Tls(e.to_string()))
            }
            Err(_) => {
                self.broken = true;
                Err(ClientError::Tls("the TLS handshake timed out".into()))
            }
        }
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
