//! A connection that starts in plain text and may switch to TLS after STARTTLS.
//!
//! The transport underneath is any byte stream (a TCP socket in production, an in-memory pipe in
//! the session fuzz target), boxed so the session need not be generic over it. Every operation
//! takes a deadline: a peer that stops reading or stops answering the handshake cannot hold the
//! session past it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// What a session can run over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Transport for T {}

pub enum Stream {
    Plain(Box<dyn Transport>),
    Tls(Box<TlsStream<Box<dyn Transport>>>),
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl Stream {
    pub fn plain(io: impl Transport) -> Stream {
        Stream::Plain(Box::new(io))
    }

    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    /// Writes everything within `limit`; a client that does not read its replies is not waited
    /// for longer than that.
    pub async fn write_all(&mut self, buf: &[u8], limit: Duration) -> io::Result<()> {
        let write = async {
            match self {
                Stream::Plain(s) => s.write_all(buf).await,
                Stream::Tls(s) => {
                    s.write_all(buf).await?;
                    s.flush().await
                }
            }
        };
        tokio::time::timeout(limit, write)
            .await
            .map_err(|_| timed_out("write"))?
    }

    /// Closes the connection, waiting at most `limit` for a TLS close_notify to go out.
    pub async fn shutdown(&mut self, limit: Duration) {
        let close = async {
            let _ = match self {
                Stream::Plain(s) => s.shutdown().await,
                Stream::Tls(s) => s.shutdown().await,
            };
        };
        let _ = tokio::time::timeout(limit, close).await;
    }

    /// Runs the server side of the TLS handshake on a plain connection, within `limit`.
    pub async fn upgrade(
        self,
        config: Arc<rustls::ServerConfig>,
        limit: Duration,
    ) -> io::Result<Stream> {
        match self {
            Stream::Plain(io) => {
                let accept = TlsAcceptor::from(config).accept(io);
                let tls = tokio::time::timeout(limit, accept)
                    .await
                    .map_err(|_| timed_out("TLS handshake"))??;
                Ok(Stream::Tls(Box::new(tls)))
            }
            Stream::Tls(_) => Err(io::Error::other("TLS is already active")),
        }
    }

    /// `TLS1_3` / `TLS1_2`, for logs and the Received header.
    pub fn tls_version(&self) -> Option<&'static str> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => s.get_ref().1.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_3 => "TLS1_3",
                rustls::ProtocolVersion::TLSv1_2 => "TLS1_2",
                _ => "TLS",
            }),
        }
    }
}
