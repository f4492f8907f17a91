//! One outbound SMTP connection: connect, greeting, EHLO (HELO as fallback or when forced),
//! STARTTLS per the send connector's TLS policy (RFC 3207), AUTH PLAIN or LOGIN (RFC 4954),
//! then any number of transactions (see `transaction.rs`) and QUIT.
//!
//! Reads untrusted input (the server's replies and EHLO keywords). Never decides retries or
//! failover: errors say whether they are permanent for this host, the caller does the rest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::conn::Conn;
use super::{ClientError, transaction, trust};
use crate::logs::protocol::{ProtocolLog, event, new_session_id};
use crate::smtp::proto::{Reply, encode_base64_text, parse_ehlo_keywords};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The EHLO argument: the send connector's Fqdn, else the server's FQDN.
    pub helo_name: String,
    /// ForceHELO: HELO only, so no extensions (no STARTTLS, AUTH or PIPELINING).
    pub force_helo: bool,
    pub tls: TlsPolicy,
    /// The connector's AuthenticationCredential; PLAIN is preferred, else LOGIN.
    pub auth: Option<Credentials>,
    /// ConnectionInactivityTimeOut: the longest wait for any one reply or write.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Roots for `TlsPolicy::RequiredValidated` (see `trust::load_trust`).
    pub trust: Arc<RootCertStore>,
    /// Set when the connector's ProtocolLoggingLevel is Verbose.
    pub log: Option<SendLog>,
}

/// Where a send connector's sessions go in the SmtpSend protocol log.
#[derive(Clone)]
pub struct SendLog {
    log: ProtocolLog,
    connector: String,
}

impl SendLog {
    /// `connector` fills the connector-id column; Exchange uses the bare connector name on the
    /// send side (the receive side prefixes the server).
    pub fn new(log: ProtocolLog, connector: impl Into<String>) -> SendLog {
        SendLog {
            log,
            connector: connector.into(),
        }
    }
}

impl std::fmt::Debug for SendLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendLog")
            .field("connector", &self.connector)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsPolicy {
    /// STARTTLS when offered, certificate not checked (Exchange's opportunistic TLS). Not
    /// offered, or refused with a 4xx/5xx, means plain text; a failed handshake fails the
    /// connection, since the socket cannot go back to plain text.
    Opportunistic,
    /// IgnoreSTARTTLS.
    Never,
    /// RequireTLS: STARTTLS must be offered and succeed; the certificate is not validated.
    Required,
    /// BasicAuthRequireTLS, or TlsAuthLevel CertificateValidation/DomainValidation: the
    /// certificate must chain to `ClientConfig::trust` and be valid for `name`.
    RequiredValidated { name: String },
}

#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // The derived form would print the password into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRecipient {
    pub address: String,
    /// The NOTIFY value as received, e.g. `SUCCESS,FAILURE`.
    pub notify: Option<String>,
    /// `addr-type;address` with the address xtext-decoded (`rfc822;bob@example`); a value
    /// without `;` is taken as an rfc822 address.
    pub orcpt: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct OutboundEnvelope<'a> {
    /// The reverse path; empty for the null sender.
    pub from: &'a str,
    pub recipients: &'a [OutboundRecipient],
    /// The spooled size, announced with SIZE= and checked against the server's limit.
    pub size: u64,
    /// The message was received with BODY=8BITMIME.
    pub body_8bit: bool,
    pub smtp_utf8: bool,
    /// ENVID, xtext-decoded.
    pub env_id: Option<&'a str>,
    /// RET: `FULL` or `HDRS`.
    pub ret: Option<&'a str>,
    /// Names the message in the protocol log, so that a session can be matched with the queue
    /// and the message tracking log.
    pub log_id: Option<&'a str>,
}

/// What the server's EHLO answer offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Extensions {
    pub(super) pipelining: bool,
    /// SIZE's argument; `Some(0)` means no fixed limit.
    pub(super) size: Option<u64>,
    pub(super) eight_bit_mime: bool,
    pub(super) smtputf8: bool,
    pub(super) dsn: bool,
    pub(super) starttls: bool,
    /// Upper-cased mechanism names.
    pub(super) auth: Vec<String>,
    /// XSHADOW: the server can be the primary for messages this node shadows.
    pub(super) xshadow: bool,
}

impl Extensions {
    fn from_ehlo(reply: &Reply) -> Extensions {
        let mut ext = Extensions::default();
        for (keyword, args) in parse_ehlo_keywords(reply) {
            match keyword.as_str() {
                "PIPELINING" => ext.pipelining = true,
                "SIZE" => ext.size = Some(args.parse().unwrap_or(0)),
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "DSN" => ext.dsn = true,
                "STARTTLS" => ext.starttls = true,
                "XSHADOW" => ext.xshadow = true,
                "AUTH" => ext.auth.extend(
                    args.split_ascii_whitespace()
                        .take(32)
                        .map(str::to_ascii_uppercase),
                ),
                _ => {}
            }
        }
        ext
    }
}

pub struct Client {
    conn: Conn,
    ext: Extensions,
    remote: SocketAddr,
    host: String,
    /// The name the server gave in its EHLO (else greeting) reply: the primary's FQDN.
    peer_name: String,
    /// The server accepted XSHADOW and answered this queue-database id (Base64).
    shadow_dbid: Option<String>,
}

/// The longest XSHADOW dbid and XQDISCARD id accepted from a primary (reference §1.2).
pub const MAX_SHADOW_ID: usize = 255;

/// What a primary's XQDISCARD answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discards {
    /// The ids of the shadow messages it is done with (possibly none: `251`).
    Ids(Vec<String>),
    /// An empty or over-long id: the primary broke the contract, so nothing it says about its
    /// state can be trusted.
    Violation(String),
}

impl Client {
    /// Connects to `addr` (the address of `host`, which names the peer in TLS when no validated
    /// name is configured), reads the greeting, says EHLO, runs STARTTLS per `cfg.tls` (then EHLO
    /// again) and authenticates when credentials are configured.
    pub async fn connect(
        addr: SocketAddr,
        host: &str,
        cfg: &ClientConfig,
    ) -> Result<Client, ClientError> {
        Self::connect_shadowing(addr, host, cfg, None).await
    }

    /// Like `connect`; with `shadow_context` (the caller checked the Send-XShadow right and
    /// that the next hop is shadowable), also `XSHADOW <context>` when the server offers it
    /// (reference §1.2). Any reply but a well-formed `250 <dbid>` leaves the session unshadowed.
    pub async fn connect_shadowing(
        addr: SocketAddr,
        host: &str,
        cfg: &ClientConfig,
        shadow_context: Option<&str>,
    ) -> Result<Client, ClientError> {
        check_helo_name(&cfg.helo_name)?;
        let tcp = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(source)) => return Err(ClientError::Connect { addr, source }),
            Err(_) => return Err(ClientError::ConnectTimeout { addr }),
        };
        // Commands go out in whole batches; Nagle would only delay each batch by a round trip.
        let _ = tcp.set_nodelay(true);
        let log = cfg.log.as_ref().map(|l| {
            // Without a local address the line still says which session and peer it was.
            let local = tcp
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let mut session = l
                .log
                .session(l.connector.clone(), new_session_id(), local, addr);
            session.event(event::CONNECT, "", "");
            session
        });
        let mut conn = Conn::new(tcp, cfg.timeout, log);
        let (ext, peer_name) = match Self::handshake(&mut conn, addr, host, cfg).await {
            Ok(v) => v,
            Err(e) => {
                conn.quit().await;
                return Err(e);
            }
        };
        let shadow_dbid = match shadow_context {
            Some(context) if ext.xshadow => match xshadow(&mut conn, context).await {
                Ok(dbid) => dbid,
                Err(e) => {
                    conn.quit().await;
                    return Err(e);
                }
            },
            _ => None,
        };
        Ok(Client {
            conn,
            ext,
            remote: addr,
            host: host.to_string(),
            peer_name,
            shadow_dbid,
        })
    }

    async fn handshake(
        conn: &mut Conn,
        addr: SocketAddr,
        host: &str,
        cfg: &ClientConfig,
    ) -> Result<(Extensions, String), ClientError> {
        let greeting = conn.read_reply().await?;
        if greeting.code != 220 {
            return Err(ClientError::Refused(greeting));
        }
        let mut name = first_word_name(&greeting);
        let (mut ext, mut ehlo_name) = hello(conn, cfg).await?;
        if starttls(conn, &ext, addr, host, cfg).await? {
            (ext, ehlo_name) = hello(conn, cfg).await?;
        }
        if let Some(creds) = &cfg.auth {
            authenticate(conn, &ext, creds).await?;
        }
        if ehlo_name.is_some() {
            name = ehlo_name;
        }
        let name = name.unwrap_or_else(|| host.trim_matches(['[', ']']).to_ascii_lowercase());
        Ok((ext, name))
    }

    /// One transaction. Returns one final reply per recipient, in order: the RCPT reply when it
    /// was not 2xx, else the reply to the end of DATA. A refused MAIL (or a refusal decided
    /// locally: SIZE over the server's limit, SMTPUTF8 not offered) is given to every recipient.
    /// `Err` means the connection failed and no recipient's outcome is known.
    pub async fn send(
        &mut self,
        env: &OutboundEnvelope<'_>,
        message: &[u8],
    ) -> Result<Vec<Reply>, ClientError> {
        transaction::send(&mut self.conn, &self.ext, env, message, None).await
    }

    /// `send` with `XSHADOW=<shadow_id>` on the MAIL command when this session is shadowed
    /// (the primary accepted XSHADOW); otherwise exactly `send`.
    pub async fn send_shadowed(
        &mut self,
        env: &OutboundEnvelope<'_>,
        message: &[u8],
        shadow_id: &str,
    ) -> Result<Vec<Reply>, ClientError> {
        let id = self.shadow_dbid.is_some().then_some(shadow_id);
        transaction::send(&mut self.conn, &self.ext, env, message, id).await
    }

    /// The primary's queue-database id when it accepted XSHADOW in this session.
    pub fn shadow_dbid(&self) -> Option<&str> {
        self.shadow_dbid.as_deref()
    }

    /// The server's own name (from its EHLO reply, else its greeting, else the host dialled),
    /// lower-cased: a shadow queue's NextHopDomain.
    pub fn peer_name(&self) -> &str {
        &self.peer_name
    }

    /// `XQDISCARD <max>` (reference §1.2): the ids of shadow messages the primary is done with.
    /// Any reply but `250` lines or `251` is an error (the heartbeat counts it as failed).
    pub async fn xqdiscard(&mut self, max: u32) -> Result<Discards, ClientError> {
        let reply = self.conn.command(&format!("XQDISCARD {max}\r\n")).await?;
        match reply.code {
            251 => Ok(Discards::Ids(Vec::new())),
            250 => {
                let mut ids = Vec::with_capacity(reply.lines.len());
                for line in &reply.lines {
                    let id = line.split_ascii_whitespace().next().unwrap_or("");
                    if id.is_empty() || id.len() > MAX_SHADOW_ID {
                        return Ok(Discards::Violation(format!(
                            "the primary returned a discard id of {} characters",
                            id.len()
                        )));
                    }
                    ids.push(id.to_string());
                }
                Ok(Discards::Ids(ids))
            }
            _ => Err(ClientError::Protocol(format!(
                "XQDISCARD refused: {}",
                reply.one_line()
            ))),
        }
    }

    /// A recipient callout: `MAIL FROM:<>`, `RCPT TO:<rcpt>`, `RSET`, and never DATA. The RCPT
    /// reply, or the MAIL reply when the null sender was refused.
    pub async fn probe_recipient(&mut self, rcpt: &str) -> Result<Reply, ClientError> {
        if !rcpt
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
        {
            return Err(ClientError::Protocol(format!(
                "not an address to probe: {rcpt:?}"
            )));
        }
        let mail = self.conn.command("MAIL FROM:<>\r\n").await?;
        if mail.code / 100 != 2 {
            return Ok(mail);
        }
        let reply = self.conn.command(&format!("RCPT TO:<{rcpt}>\r\n")).await?;
        // The answer is known; a failed RSET only costs the connection, which ends anyway.
        let _ = self.conn.command("RSET\r\n").await;
        Ok(reply)
    }

    /// QUIT and close; errors are ignored since every outcome is already known.
    pub async fn quit(self) {
        self.conn.quit().await;
    }

    /// `TLS1.2` / `TLS1.3` once STARTTLS succeeded.
    pub fn tls_version(&self) -> Option<&'static str> {
        self.conn.tls_version()
    }

    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// False after an I/O error, a timeout, a malformed reply or a 421: the connection must not
    /// be cached for another message.
    pub fn is_usable(&self) -> bool {
        self.conn.is_usable()
    }
}

/// The name goes on the EHLO line verbatim.
fn check_helo_name(name: &str) -> Result<(), ClientError> {
    let ok = !name.is_empty() && name.len() <= 255 && name.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ClientError::Config(format!(
            "{name:?} is not a valid EHLO name"
        )))
    }
}

/// EHLO, or HELO when forced or when EHLO is refused with a 5xx (an RFC 821 server); with the
/// name the server gave in its reply.
async fn hello(
    conn: &mut Conn,
    cfg: &ClientConfig,
) -> Result<(Extensions, Option<String>), ClientError> {
    if !cfg.force_helo {
        let reply = conn.command(&format!("EHLO {}\r\n", cfg.helo_name)).await?;
        if reply.code == 250 {
            return Ok((Extensions::from_ehlo(&reply), first_word_name(&reply)));
        }
        if reply.code < 500 {
            return Err(ClientError::Refused(reply));
        }
    }
    let reply = conn.command(&format!("HELO {}\r\n", cfg.helo_name)).await?;
    if reply.code != 250 {
        return Err(ClientError::Refused(reply));
    }
    Ok((Extensions::default(), first_word_name(&reply)))
}

/// The first word of a reply's first line when it looks like a host name (it ends up as a
/// queue's NextHopDomain), lower-cased.
fn first_word_name(reply: &Reply) -> Option<String> {
    let word = reply.lines.first()?.split_ascii_whitespace().next()?;
    let ok = word.len() <= 255
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    ok.then(|| word.trim_end_matches('.').to_ascii_lowercase())
        .filter(|w| !w.is_empty())
}

/// `XSHADOW <context>`: the dbid when the server answered `250 <dbid>` with a Base64 first word
/// of at most 255 characters; None for any other answer (the session goes on unshadowed).
/// Only a broken connection is an error.
async fn xshadow(conn: &mut Conn, context: &str) -> Result<Option<String>, ClientError> {
    let reply = conn.command(&format!("XSHADOW {context}\r\n")).await?;
    if reply.code != 250 {
        return Ok(None);
    }
    let dbid = parse_dbid(&reply);
    if dbid.is_none() {
        conn.log_event(
            event::INFORMATION,
            &reply.one_line(),
            "XSHADOW reply is not a queue database id; not shadowing",
        );
    }
    Ok(dbid)
}

fn parse_dbid(reply: &Reply) -> Option<String> {
    use base64::Engine;
    let word = reply.lines.first()?.split_ascii_whitespace().next()?;
    if word.len() > MAX_SHADOW_ID {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(word)
        .ok()
        .filter(|b| !b.is_empty())?;
    Some(word.to_string())
}

/// Returns whether TLS is now active (so that EHLO must be repeated, RFC 3207 §4.2).
async fn starttls(
    conn: &mut Conn,
    ext: &Extensions,
    addr: SocketAddr,
    host: &str,
    cfg: &ClientConfig,
) -> Result<bool, ClientError> {
    let policy = &cfg.tls;
    let required = match policy {
        TlsPolicy::Never => return Ok(false),
        TlsPolicy::Opportunistic => false,
        TlsPolicy::Required | TlsPolicy::RequiredValidated { .. } => true,
    };
    if !ext.starttls {
        return if required {
            Err(ClientError::TlsNotOffered)
        } else {
            Ok(false)
        };
    }
    let (config, name) = match policy {
        TlsPolicy::RequiredValidated { name } => {
            let config = trust::validating_tls_config(cfg.trust.clone())
                .map_err(|e| ClientError::Config(e.to_string()))?;
            let name = ServerName::try_from(name.clone()).map_err(|_| {
                ClientError::Config(format!("{name:?} is not a valid TLS server name"))
            })?;
            (config, name)
        }
        _ => (trust::opportunistic_tls_config(), peer_name(host, addr)),
    };
    let reply = conn.command("STARTTLS\r\n").await?;
    if reply.code != 220 {
        if required {
            return Err(ClientError::Tls(format!(
                "the server refused STARTTLS: {}",
                reply.one_line()
            )));
        }
        return Ok(false);
    }
    conn.upgrade(config, name).await?;
    Ok(true)
}

/// The name to present in SNI and, for opportunistic TLS, nothing more: the MX host name when it
/// is one, else the address.
fn peer_name(host: &str, addr: SocketAddr) -> ServerName<'static> {
    let host = host.trim_end_matches('.');
    match ServerName::try_from(host.to_string()) {
        Ok(name @ ServerName::DnsName(_)) => name,
        _ => ServerName::IpAddress(addr.ip().into()),
    }
}

/// AUTH PLAIN with an initial response, else AUTH LOGIN.
async fn authenticate(
    conn: &mut Conn,
    ext: &Extensions,
    creds: &Credentials,
) -> Result<(), ClientError> {
    let offers = |m: &str| ext.auth.iter().any(|a| a == m);
    let reply = if offers("PLAIN") {
        let token = encode_base64_text(&format!("\0{}\0{}", creds.username, creds.password));
        let reply = conn
            .secret_command(&format!("AUTH PLAIN {token}\r\n"), "AUTH PLAIN")
            .await?;
        // A server that ignores the initial response asks for it with an empty challenge.
        if reply.code == 334 {
            conn.secret_command(&format!("{token}\r\n"), AUTH_RESPONSE)
                .await?
        } else {
            reply
        }
    } else if offers("LOGIN") {
        auth_login(conn, creds).await?
    } else {
        return Err(ClientError::AuthUnsupported);
    };
    if reply.code == 235 {
        conn.log_event(event::INFORMATION, &creds.username, "authenticated");
        Ok(())
    } else {
        Err(ClientError::Auth(reply))
    }
}

async fn auth_login(conn: &mut Conn, creds: &Credentials) -> Result<Reply, ClientError> {
    let reply = conn.command("AUTH LOGIN\r\n").await?;
    if reply.code != 334 {
        return Ok(reply);
    }
    let user = encode_base64_text(&creds.username);
    let reply = conn
        .secret_command(&format!("{user}\r\n"), AUTH_RESPONSE)
        .await?;
    if reply.code != 334 {
        return Ok(reply);
    }
    let password = encode_base64_text(&creds.password);
    conn.secret_command(&format!("{password}\r\n"), AUTH_RESPONSE)
        .await
}

/// What the protocol log shows for a SASL response line: the line is there, so the exchange can
/// be followed, but base64 is no protection for a password.
const AUTH_RESPONSE: &str = "<authentication response>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_from_ehlo() {
        let reply = Reply::multi(
            250,
            [
                "mx.example Hello",
                "PIPELINING",
                "SIZE 10240000",
                "8BITMIME",
                "smtputf8",
                "DSN",
                "STARTTLS",
                "AUTH login PLAIN",
                "AUTH=LOGIN",
            ]
            .map(String::from)
            .to_vec(),
        );
        let got = Extensions::from_ehlo(&reply);
        let want = Extensions {
            pipelining: true,
            size: Some(10_240_000),
            eight_bit_mime: true,
            smtputf8: true,
            dsn: true,
            starttls: true,
            auth: vec!["LOGIN".into(), "PLAIN".into()],
            xshadow: false,
        };
        assert_eq!(got, want);
        let bare = Reply::multi(250, vec!["mx".into(), "SIZE".into()]);
        assert_eq!(Extensions::from_ehlo(&bare).size, Some(0));
    }

    #[test]
    fn xshadow_offer_and_dbid_replies() {
        let reply = Reply::multi(
            250,
            ["hub2.org2.test Hello", "XSHADOW"]
                .map(String::from)
                .to_vec(),
        );
        assert!(Extensions::from_ehlo(&reply).xshadow);
        assert_eq!(first_word_name(&reply).as_deref(), Some("hub2.org2.test"));
        let dbid = |text: &str| parse_dbid(&Reply::new(250, "", text));
        assert_eq!(
            dbid("q83vEjRWeJCrze8SNFZ4kA==").as_deref(),
            Some("q83vEjRWeJCrze8SNFZ4kA==")
        );
        assert_eq!(
            dbid("q83vEjRWeJCrze8SNFZ4kA== trailing words").as_deref(),
            Some("q83vEjRWeJCrze8SNFZ4kA==")
        );
        for bad in ["not*base64!", "", "abc", &"QUFB".repeat(64)] {
            assert_eq!(dbid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn helo_names() {
        for good in ["hub1.contoso.test", "[192.0.2.1]"] {
            assert!(check_helo_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a\r\nRSET", "ü.example"] {
            assert!(check_helo_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tls_peer_names() {
        let addr: SocketAddr = "192.0.2.1:25".parse().unwrap();
        assert_eq!(
            peer_name("mx.example.", addr),
            ServerName::try_from("mx.example").unwrap()
        );
        for host in ["[192.0.2.1]", "192.0.2.1", ""] {
            assert_eq!(
                peer_name(host, addr),
                ServerName::IpAddress(addr.ip().into()),
                "{host:?}"
            );
        }
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = Credentials {
            username: "relay".into(),
            password: "s3cret".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("relay") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
