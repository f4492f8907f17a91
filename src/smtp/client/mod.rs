//! The send side: one outbound SMTP connection at a time (RFC 5321 client, RFC 3207 STARTTLS,
//! RFC 4954 AUTH, RFC 2920 PIPELINING, RFC 3461 DSN parameters), plus the DNS look-ups that find
//! the next hop (RFC 5321 §5.1, RFC 7505 null MX) and the trust store for validated TLS.
//!
//! Reads untrusted input: the replies of remote servers and DNS answers. Every read is bounded in
//! time (the connector's inactivity timeout) and size (`ResponseReader`'s limits).
//! Never touches the spool or the queue: the caller passes the message bytes in and gets one
//! final reply per recipient back, and decides retries and failover itself.

mod conn;
pub mod myself;
pub mod resolve;
pub mod session;
mod transaction;
pub mod trust;

use std::net::SocketAddr;

use crate::smtp::proto::{Reply, ResponseError};

pub use myself::Myself;
pub use resolve::{DnsError, Resolver, Target, parse_dns_server};
pub use session::{
    Client, ClientConfig, Credentials, Discards, MAX_SHADOW_ID, OutboundEnvelope,
    OutboundRecipient, SendLog, TlsPolicy,
};
pub use trust::{TrustStore, load_trust, opportunistic_tls_config, validating_tls_config};

/// Remote texts end up in queue rows and NDRs; a hostile server must not be able to fill those
/// with its 400 KB maximum reply.
const MAX_QUOTED_REPLY: usize = 512;

/// Why a connection or a transaction failed as a whole (per-recipient refusals are not errors:
/// `Client::send` returns them as replies).
///
/// `is_permanent` speaks for the host that was tried only: a 5xx greeting or AUTH refusal from
/// one MX says nothing about the next one, so the caller decides whether to fail over to another
/// address before turning a permanent error into an NDR.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out")]
    ConnectTimeout { addr: SocketAddr },
    /// The greeting, EHLO or HELO was refused; the reply says whether for good.
    #[error("the server refused the session: {0}")]
    Refused(Reply),
    #[error("STARTTLS is required but the server does not offer it")]
    TlsNotOffered,
    #[error("TLS negotiation failed: {0}")]
    Tls(String),
    #[error("authentication refused: {0}")]
    Auth(Reply),
    #[error("the server offers no AUTH mechanism we support (PLAIN, LOGIN)")]
    AuthUnsupported,
    /// 421: the server is closing the connection.
    #[error("service not available: {0}")]
    ServiceUnavailable(Reply),
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("the server closed the connection")]
    Closed,
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed reply: {0}")]
    Response(#[from] ResponseError),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Our own configuration cannot work (bad EHLO name, unreadable resolv.conf, ...).
    #[error("configuration error: {0}")]
    Config(String),
}

impl ClientError {
    /// The reply the queue shows as LastError and an NDR quotes. Connection-level problems are
    /// 4xx so that the message waits for the next retry rather than bouncing.
    pub fn reply(&self) -> Reply {
        match self {
            ClientError::Connect { .. } => Reply::new(421, "4.2.1", "Unable to connect"),
            ClientError::ConnectTimeout { .. } => Reply::new(421, "4.4.1", "Connection timed out"),
            ClientError::Refused(r) | ClientError::ServiceUnavailable(r) => {
                responded_with(r, "4.4.0", "5.4.0")
            }
            ClientError::TlsNotOffered => {
                Reply::new(451, "5.7.3", "STARTTLS is required to send mail")
            }
            ClientError::Tls(reason) => Reply::new(
                451,
                "4.7.5",
                format!("TLS negotiation failed: {}", clip(reason)),
            ),
            ClientError::Auth(r) => responded_with(r, "4.7.0", "5.7.0"),
            ClientError::AuthUnsupported => Reply::new(
                451,
                "4.7.0",
                "The remote server offers no supported authentication mechanism",
            ),
            ClientError::Timeout => Reply::new(421, "4.4.1", "Timed out waiting for the server"),
            ClientError::Closed | ClientError::Io(_) => {
                Reply::new(421, "4.4.2", "Connection dropped")
            }
            ClientError::Response(_) | ClientError::Protocol(_) => {
                Reply::new(451, "4.5.0", "The remote server violated the SMTP protocol")
            }
            ClientError::Config(_) => {
                Reply::new(451, "4.3.5", "Send connector configuration error")
            }
        }
    }

    /// True when this host refused for good (a 5xx greeting, EHLO/HELO or AUTH reply).
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Refused(r) | ClientError::Auth(r) => r.code >= 500,
            _ => false,
        }
    }
}

/// Exchange's `Primary target IP address responded with: "..."`, keeping the remote reply's
/// class: a 5xx stays permanent, anything else becomes a 451.
fn responded_with(remote: &Reply, transient: &str, permanent: &str) -> Reply {
    let text = format!(
        "Primary target IP address responded with: \"{}\"",
        clip(&remote.one_line())
    );
    if remote.code >= 500 {
        Reply::new(554, permanent, text)
    } else {
        Reply::new(451, transient, text)
    }
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_REPLY) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies() {
        let addr: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let cases: Vec<(ClientError, &str, bool)> = vec![
            (
                ClientError::ConnectTimeout { addr },
                "421 4.4.1 Connection timed out",
                false,
            ),
            (
                ClientError::Refused(Reply::new(554, "5.7.1", "go away")),
                "554 5.4.0 Primary target IP address responded with: \"554 5.7.1 go away\"",
                true,
            ),
            (
                ClientError::Refused(Reply::new(421, "", "busy")),
                "451 4.4.0 Primary target IP address responded with: \"421 busy\"",
                false,
            ),
            (
                ClientError::TlsNotOffered,
                "451 5.7.3 STARTTLS is required to send mail",
                false,
            ),
            (
                ClientError::Auth(Reply::new(535, "5.7.8", "bad")),
                "554 5.7.0 Primary target IP address responded with: \"535 5.7.8 bad\"",
                true,
            ),
            (
                ClientError::Auth(Reply::new(454, "4.7.0", "later")),
                "451 4.7.0 Primary target IP address responded with: \"454 4.7.0 later\"",
                false,
            ),
            (
                ClientError::Tls("invalid peer certificate: certificate not valid for name".into()),
                "451 4.7.5 TLS negotiation failed: invalid peer certificate: certificate not valid for name",
                false,
            ),
            (ClientError::Closed, "421 4.4.2 Connection dropped", false),
        ];
        for (err, want, permanent) in cases {
            assert_eq!(err.reply().one_line(), want, "{err:?}");
            assert_eq!(err.is_permanent(), permanent, "{err:?}");
        }
    }

    #[test]
    fn long_remote_replies_are_clipped() {
        let long = Reply::new(554, "", "x".repeat(10_000));
        let text = ClientError::Refused(long).reply().one_line();
        assert!(text.len() < MAX_QUOTED_REPLY + 100, "{}", text.len());
        assert!(text.ends_with("...\""), "{text}");
    }
}
