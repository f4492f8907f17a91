#![no_main]

//! A whole inbound SMTP session, greeting to close, over an in-memory pipe: arbitrary client
//! bytes against the real session code, with the directory and the queue replaced by in-memory
//! stand-ins behind the gateway's seam. No network, no database. The client ends its side when
//! its bytes are sent and the tarpit is off, so a session never waits on the clock: one that
//! does not end promptly is a defect.
//!
//! Input: one byte of connector settings, one byte that chooses how the client's bytes are cut
//! into writes, then the client's bytes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use hubgate::logs::protocol::{LogKind, ProtocolLog};
use hubgate::logs::tracking::TrackingLog;
use hubgate::org::rights::{Permission, PermissionGroup, Rights};
use hubgate::org::{
    AcceptedDomain, Account, DomainType, ExtendedRight, Org, OrgError, ReceiveConnector, Recipient,
    TransportConfig, TransportServer,
};
use hubgate::smtp::proto::Reply;
use hubgate::smtp::server::Gateway;
use hubgate::smtp::server::backend::{BoxFuture, Directory, Intake};
use hubgate::smtp::server::limits::ConnectionLimits;
use hubgate::smtp::server::session::Session;
use hubgate::smtp::server::stream::Stream;
use hubgate::transport::categorizer::Verdict;
use hubgate::transport::queue::{AcceptError, Disposition, Envelope, Incoming, Spool, Submitted};
use hubgate::transport::shadow::primary::ShadowError;

const FQDN: &str = "hub1.contoso.test";
const DOMAIN: &str = "contoso.test";

/// Nobody has an account (so no argon2 work per input); recipients in the accepted domain exist;
/// `dberr...` addresses stand for a database that fails.
struct MemDirectory;

impl Directory for MemDirectory {
    fn account<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<Option<Account>, OrgError>> {
        Box::pin(async { Ok(None) })
    }

    fn recipient<'a>(
        &'a self,
        _address: &'a str,
    ) -> BoxFuture<'a, Result<Option<Recipient>, OrgError>> {
        Box::pin(async { Ok(None) })
    }

    fn categorize<'a>(
        &'a self,
        domains: &'a [AcceptedDomain],
        address: &'a str,
        rights: Rights,
    ) -> BoxFuture<'a, Result<Verdict, OrgError>> {
        Box::pin(async move {
            if address.starts_with("dberr") {
                return Err(OrgError::Invalid("stand-in database failure".into()));
            }
            let domain = address.rsplit_once('@').map_or(DOMAIN, |(_, d)| d);
            if domains.iter().any(|d| d.matches(domain)) {
                Ok(Verdict::Accept(Disposition::Mailbox))
            } else if rights.has(ExtendedRight::AcceptAnyRecipient) {
                Ok(Verdict::Accept(Disposition::Relay))
            } else {
                Ok(Verdict::Reject(Reply::new(550, "5.7.1", "Unable to relay")))
            }
        })
    }
}

/// Takes every message (bar senders named `fail...`) and forgets it.
struct MemIntake;

impl Intake for MemIntake {
    fn accept<'a>(
        &'a self,
        env: &'a Envelope,
        body: Incoming,
    ) -> BoxFuture<'a, Result<i64, AcceptError>> {
        Box::pin(async move {
            if env.from.starts_with("fail") {
                return Err(AcceptError::Io(std::io::Error::other("stand-in disk full")));
            }
            assert!(
                !env.recipients.is_empty(),
                "a message without recipients was accepted"
            );
            // Dropped unkept, the body leaves no spool file behind.
            Ok(1 + body.len() as i64)
        })
    }

    fn submit(&self, _m: Submitted) {}

    fn queue_database_id<'a>(
        &'a self,
        _server: &'a str,
    ) -> BoxFuture<'a, Result<uuid::Uuid, ShadowError>> {
        Box::pin(async { Ok(uuid::Uuid::from_u128(0x0123_4567_89ab_cdef)) })
    }

    /// One event, so that both XQDISCARD replies (ids, none) are reachable.
    fn take_discard_events<'a>(
        &'a self,
        _server: &'a str,
        context: &'a str,
        max: i64,
    ) -> BoxFuture<'a, Result<Vec<String>, ShadowError>> {
        Box::pin(async move {
            assert!((1..=1000).contains(&max), "XQDISCARD count {max} out of range");
            Ok(if context.len() % 2 == 0 {
                vec![uuid::Uuid::nil().hyphenated().to_string()]
            } else {
                Vec::new()
            })
        })
    }
}

struct World {
    rt: tokio::runtime::Runtime,
    plain: Arc<Gateway>,
    with_tls: Arc<Gateway>,
    server: TransportServer,
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hubgate-fuzz-session-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn gateway(
    dir: &std::path::Path,
    tls: Option<Arc<hubgate::tls::store::CertStore>>,
) -> Arc<Gateway> {
    let server = TransportServer::with_defaults("HUB1", FQDN);
    let org = empty_org(server);
    let (_tx, rx) = watch::channel(Arc::new(org));
    Arc::new(Gateway {
        directory: Arc::new(MemDirectory),
        intake: Arc::new(MemIntake),
        org: rx,
        tls,
        spool: Spool::open(dir).expect("spool"),
        receive_log: ProtocolLog::new(dir, LogKind::Receive),
        limits: ConnectionLimits::default(),
        auth_throttle: Default::default(),
        tracking: TrackingLog::new(dir, false, false),
        drain: Default::default(),
        pressure: Default::default(),
        dnsbl: Default::default(),
    })
}

fn empty_org(server: TransportServer) -> Org {
    Org {
        server,
        config: TransportConfig {
            shadow_redundancy_enabled: false,
            shadow_heartbeat_timeout_interval: 300,
            shadow_heartbeat_retry_count: 12,
            shadow_message_auto_discard_interval: 172800,
            max_receive_size: None,
            max_send_size: None,
            max_recipient_envelope_limit: None,
            generate_copy_of_dsn_for: vec![],
            tls_receive_domain_secure_list: vec![],
            tls_send_domain_secure_list: vec![],
        },
        accepted_domains: vec![AcceptedDomain::new(
            DOMAIN,
            DOMAIN,
            DomainType::Authoritative,
        )],
        receive_connectors: vec![],
        send_connectors: vec![],
        permissions: vec![],
        ip_lists: Vec::new(),
        sender_filter: Default::default(),
        recipient_filter: Default::default(),
        ip_block_lists: Default::default(),
        valid_recipients: Default::default(),
        local_fqdns: vec![FQDN.to_string()],
    }
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        hubgate::tls::install_crypto_provider();
        let dir = scratch_dir();
        let tls = hubgate::tls::store::CertStore::open(&dir, FQDN).expect("certificate");
        World {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            plain: gateway(&dir, None),
            with_tls: gateway(&dir, Some(tls)),
            server: TransportServer::with_defaults("HUB1", FQDN),
        }
    })
}

/// The connector and its ACL as the settings byte chooses them.
fn connector(flags: u8) -> (ReceiveConnector, Vec<Permission>) {
    let mut rc = ReceiveConnector::new("HUB1", "Default HUB1", FQDN);
    rc.tarpit_interval = 0;
    let mut auth = vec!["Tls".to_string()];
    if flags & 0x02 != 0 {
        auth.push("BasicAuth".into());
    }
    if flags & 0x04 != 0 {
        auth.push("BasicAuthRequireTLS".into());
    }
    rc.auth_mechanism = auth;
    rc.chunking_enabled = flags & 0x08 != 0;
    rc.require_ehlo_domain = flags & 0x10 != 0;
    rc.require_tls = flags & 0x20 != 0;
    if flags & 0x40 != 0 {
        // Small limits, so the fuzzer reaches them with small inputs.
        rc.max_message_size = 300;
        rc.max_header_size = 100;
        rc.max_recipients_per_message = 2;
        rc.max_protocol_errors = Some(2);
    }
    let mut groups = vec![PermissionGroup::ExchangeUsers];
    if flags & 0x80 != 0 {
        groups.push(PermissionGroup::AnonymousUsers);
        groups.push(PermissionGroup::Partners);
    }
    let acl = groups
        .into_iter()
        .flat_map(|g| {
            g.entries()
                .into_iter()
                .map(move |(principal, right, deny)| Permission {
                    connector_id: rc_id(),
                    principal: principal.to_string(),
                    extended_right: right.ad_name().to_string(),
                    deny,
                    permission_group: Some(g.name().to_string()),
                })
        })
        .collect();
    rc.id = rc_id();
    (rc, acl)
}

fn rc_id() -> uuid::Uuid {
    uuid::Uuid::from_u128(0x5e55_10)
}

/// Checks the server's side of the conversation: well-formed replies only, a greeting first, and
/// nothing after a closing reply.
fn check_replies(out: &[u8]) {
    let mut rest = out;
    let mut first = true;
    let mut closed = false;
    // True until the greeting's last line has been read.
    let mut greeting = true;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("reply without CRLF: {:?}", String::from_utf8_lossy(rest)));
        let line = &rest[..end];
        rest = &rest[end + 2..];
        assert!(
            !closed,
            "reply after the closing one: {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit),
            "not a reply: {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            line.len() == 3 || line[3] == b' ' || line[3] == b'-',
            "bad separator: {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "CR or LF inside a reply line: {:?}",
            String::from_utf8_lossy(line)
        );
        let code: u16 = std::str::from_utf8(&line[..3]).unwrap().parse().unwrap();
        assert!((200..600).contains(&code), "reply code {code}");
        if first {
            assert_eq!(code, 220, "the greeting comes first");
            first = false;
        }
        let last_line = line.len() == 3 || line[3] == b' ';
        if last_line && (code == 221 || code == 421) {
            closed = true;
        }
        // A 220 after the greeting answers STARTTLS: what follows is TLS records (a handshake
        // alert for the fuzzer's bytes), not replies.
        if last_line && code == 220 && !greeting {
            return;
        }
        if last_line {
            greeting = false;
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let [flags, cut, script @ ..] = input else {
        return;
    };
    let w = world();
    let (rc, acl) = connector(*flags);
    let gw = if flags & 0x01 != 0 {
        w.with_tls.clone()
    } else {
        w.plain.clone()
    };
    let mut org = empty_org(w.server.clone());
    org.receive_connectors = vec![rc.clone()];
    org.permissions = acl;
    let org = Arc::new(org);
    // Writes of 1..=64 bytes, or the whole script at once.
    let step = match cut {
        0 => script.len().max(1),
        n => usize::from(n % 64) + 1,
    };
    let local: SocketAddr = "127.0.0.1:25".parse().unwrap();
    let remote: SocketAddr = "127.0.0.2:40000".parse().unwrap();
    let out = w.rt.block_on(async move {
        let (client, server) = tokio::io::duplex(16 * 1024);
        let session = Session::new(gw, org, rc, Stream::plain(server), local, remote);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let write = async move {
            for chunk in script.chunks(step) {
                if to_server.write_all(chunk).await.is_err() {
                    return;
                }
            }
            let _ = to_server.shutdown().await;
        };
        let read = async move {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match from_server.read(&mut buf).await {
                    Ok(0) | Err(_) => return out,
                    Ok(n) => {
                        // Bounded: keep what the checks need, count the rest.
                        if out.len() < 1 << 20 {
                            out.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
        };
        let all = async { tokio::join!(session.run(), write, read).2 };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("the session never ended")
    });
    if out.len() < 1 << 20 {
        check_replies(&out);
    }
});
