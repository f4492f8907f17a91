//! The console's listener: HTTPS (or plain HTTP on loopback), one task per connection, each with
//! its handshake, header and lifetime bounded.
//!
//! hyper is driven directly rather than through `axum::serve`, which neither speaks TLS nor
//! bounds a connection that trickles its request line; and the TLS configuration is read from a
//! watch channel per connection, so that what serves the certificate (today the STARTTLS files,
//! later ACME) can be swapped while the console runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// A request head (or the next one on a kept-alive connection) must arrive within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// No connection lives longer, however busy: a browser simply opens another.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// Bytes hyper buffers for one request head.
const MAX_HEAD: usize = 64 * 1024;

/// Where the console's TLS configuration comes from: a new value applies to new connections.
pub type TlsSource = watch::Receiver<Arc<rustls::ServerConfig>>;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("console cannot listen on {bind}: {source}")]
    Bind {
        bind: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the console serves plain HTTP only on a loopback address, and {bind} is {addr}: use HTTPS (unset HUBGATE_CONSOLE_PLAIN_HTTP) or bind the console to 127.0.0.1 / ::1"
    )]
    PlainHttpNotLoopback { bind: String, addr: SocketAddr },
}

/// Opens the console's socket, refusing plain HTTP anywhere but loopback.
pub async fn listen(bind: &str, plain_http: bool) -> Result<TcpListener, ListenError> {
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| ListenError::Bind {
            bind: bind.to_string(),
            source,
        })?;
    if plain_http {
        let addr = listener.local_addr().map_err(|source| ListenError::Bind {
            bind: bind.to_string(),
            source,
        })?;
        if !addr.ip().is_loopback() {
            return Err(ListenError::PlainHttpNotLoopback {
                bind: bind.to_string(),
                addr,
            });
        }
    }
    Ok(listener)
}

/// Accepts connections until the task is aborted.
pub async fn run(listener: TcpListener, tls: Option<TlsSource>, app: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Waiting for a slot before accepting leaves the excess in the backlog, not in memory.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!("console: accept: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let config = tls.as_ref().map(|rx| rx.borrow().clone());
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match config {
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        // A TLS-ALPN-01 validation ends with its handshake (RFC 8737).
                        Ok(Ok(stream))
                            if stream.get_ref().1.alpn_protocol()
                                == Some(crate::tls::store::ACME_TLS_ALPN) => {}
                        Ok(Ok(stream)) => serve_connection(stream, peer, app).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "console: TLS handshake: {e}"),
                        Err(_) => tracing::debug!(%peer, "console: TLS handshake timed out"),
                    }
                }
                None => serve_connection(tcp, peer, app).await,
            }
        });
    }
}

async fn serve_connection<S>(stream: S, peer: SocketAddr, app: Router)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, "console connection: {e}"),
        Err(_) => tracing::debug!(%peer, "console connection closed at its lifetime limit"),
    }
}
