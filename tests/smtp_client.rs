//! The outbound SMTP client against real peers: Python aiosmtpd servers (plain, STARTTLS with
//! rcgen certificates, AUTH, DSN) and an in-process hickory DNS server for MX look-ups.
//!
//! Every peer listens on 127.0.0.1 with a port the OS picks; every wait is bounded.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hubgate::logs::protocol::{LogKind, ProtocolLog};
use hubgate::smtp::client::{
    Client, ClientConfig, ClientError, Credentials, DnsError, OutboundEnvelope, OutboundRecipient,
    Resolver, SendLog, Target, TlsPolicy,
};
use rustls::RootCertStore;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The peer: aiosmtpd with a handler that records what arrives (one tab-separated line per
/// event on stdout) and refuses recipients by their local part (reject* → 550, tempfail* → 451)
/// and senders starting with refuse@ (550). It also notes whether MAIL arrived together with the
/// following commands, which is what PIPELINING looks like from the server's side.
const PEER_PY: &str = r#"
import argparse, asyncio, base64, ssl, sys
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

def emit(*fields):
    print("\t".join(str(f) for f in fields), flush=True)

def strip_params(arg, names):
    parts = (arg or "").split(" ")
    kept = [parts[0]] + [p for p in parts[1:] if p.split("=")[0].upper() not in names]
    return " ".join(kept)

class Peer(SMTP):
    # aiosmtpd 1.4 knows no DSN: record the raw line, then hide the DSN parameters from it.
    async def smtp_MAIL(self, arg):
        pipelined = len(self._reader._buffer) > 0
        emit("MAIL", "pipelined" if pipelined else "lockstep", arg or "")
        await super().smtp_MAIL(strip_params(arg, ("RET", "ENVID")))

    async def smtp_RCPT(self, arg):
        emit("RCPT", arg or "")
        await super().smtp_RCPT(strip_params(arg, ("NOTIFY", "ORCPT")))

    async def smtp_RSET(self, arg):
        emit("RSET")
        await super().smtp_RSET(arg)

class Handler:
    def __init__(self, args):
        self.args = args

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        extra = []
        if self.args.pipelining:
            extra.append("250-PIPELINING")
        if self.args.dsn:
            extra.append("250-DSN")
        emit("EHLO", hostname, "tls" if session.ssl else "plain")
        return responses[:-1] + extra + responses[-1:]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address.lower().startswith("refuse@"):
            return "550 5.7.1 Sender refused"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 No such user"
        if local.startswith("tempfail"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content or b""
        emit("DATA", envelope.mail_from, ",".join(envelope.rcpt_tos),
             "tls" if session.ssl else "plain", base64.b64encode(content).decode())
        return "250 2.6.0 Queued"

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--pipelining", action="store_true")
    p.add_argument("--dsn", action="store_true")
    p.add_argument("--no-smtputf8", action="store_true")
    p.add_argument("--size", type=int, default=33554432)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--require-starttls", action="store_true")
    p.add_argument("--auth")
    p.add_argument("--auth-login-only", action="store_true")
    args = p.parse_args()

    async def serve():
        loop = asyncio.get_running_loop()
        handler = Handler(args)
        kwargs = dict(hostname="peer.test", data_size_limit=args.size,
                      enable_SMTPUTF8=not args.no_smtputf8, loop=loop)
        if args.cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(args.cert, args.key)
            kwargs.update(tls_context=ctx, require_starttls=args.require_starttls)
        if args.auth:
            user, password = args.auth.split(":", 1)
            def authenticator(server, session, envelope, mechanism, data):
                ok = (isinstance(data, LoginPassword) and data.login.decode() == user
                      and data.password.decode() == password)
                emit("AUTH", mechanism, data.login.decode() if isinstance(data, LoginPassword) else "",
                     "ok" if ok else "fail")
                # handled=False: without it aiosmtpd sends no reply to a failure.
                return AuthResult(success=ok, handled=False)
            kwargs.update(authenticator=authenticator, auth_require_tls=bool(args.cert))
            if args.auth_login_only:
                kwargs.update(auth_exclude_mechanism=["PLAIN"])
        server = await loop.create_server(lambda: Peer(handler, **kwargs), args.host, 0)
        emit("READY", server.sockets[0].getsockname()[1])
        # The test holds our stdin: when it goes away, so do we.
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(serve())

main()
"#;

const MESSAGE: &[u8] = b"From: a@contoso.test\r\nTo: b@fabrikam.test\r\nSubject: test\r\n\r\n\
line one\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n";

#[derive(Default)]
struct PeerOpts {
    pipelining: bool,
    dsn: bool,
    no_smtputf8: bool,
    size: Option<u64>,
    tls: Option<(PathBuf, PathBuf)>,
    require_starttls: bool,
    auth: Option<(&'static str, &'static str)>,
    /// Offer AUTH LOGIN only, where the password travels as a line of its own.
    auth_login_only: bool,
}

struct Peer {
    _child: Child,
    addr: SocketAddr,
    lines: Arc<Mutex<Vec<Vec<String>>>>,
    _dir: tempfile::TempDir,
}

impl Peer {
    async fn start(opts: PeerOpts) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("peer.py");
        std::fs::write(&script, PEER_PY).unwrap();
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(&script);
        let flags = [
            (opts.pipelining, "--pipelining"),
            (opts.dsn, "--dsn"),
            (opts.no_smtputf8, "--no-smtputf8"),
            (opts.require_starttls, "--require-starttls"),
            (opts.auth_login_only, "--auth-login-only"),
        ];
        for (on, flag) in flags {
            if on {
                cmd.arg(flag);
            }
        }
        if let Some(size) = opts.size {
            cmd.arg("--size").arg(size.to_string());
        }
        if let Some((cert, key)) = &opts.tls {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some((user, password)) = opts.auth {
            cmd.arg("--auth").arg(format!("{user}:{password}"));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .expect("start /usr/bin/python3 (python3-aiosmtpd)");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
            .await
            .expect("aiosmtpd did not start within 20 s")
            .unwrap()
            .expect("aiosmtpd exited before listening");
        let port: u16 = ready
            .strip_prefix("READY\t")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {ready:?}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                let fields = line.split('\t').map(str::to_string).collect();
                sink.lock().unwrap().push(fields);
            }
        });
        Peer {
            _child: child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            lines,
            _dir: dir,
        }
    }

    fn events(&self, kind: &str) -> Vec<Vec<String>> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l[0] == kind).cloned().collect()
    }

    /// The peer prints before it replies, but its stdout reaches us on another path than the
    /// reply, so wait a little for the line.
    async fn wait_events(&self, kind: &str, count: usize) -> Vec<Vec<String>> {
        for _ in 0..100 {
            let got = self.events(kind);
            if got.len() >= count {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {count} {kind} events, got {:?}",
            self.lines.lock().unwrap()
        );
    }
}

fn config(tls: TlsPolicy) -> ClientConfig {
    ClientConfig {
        helo_name: "hub1.contoso.test".into(),
        force_helo: false,
        tls,
        auth: None,
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        trust: Arc::new(RootCertStore::empty()),
        log: None,
    }
}

fn rcpts(addresses: &[&str]) -> Vec<OutboundRecipient> {
    addresses
        .iter()
        .map(|a| OutboundRecipient {
            address: a.to_string(),
            notify: None,
            orcpt: None,
        })
        .collect()
}

fn envelope<'a>(from: &'a str, recipients: &'a [OutboundRecipient]) -> OutboundEnvelope<'a> {
    OutboundEnvelope {
        from,
        recipients,
        size: MESSAGE.len() as u64,
        body_8bit: false,
        smtp_utf8: false,
        env_id: None,
        ret: None,
        log_id: None,
    }
}

fn codes(replies: &[hubgate::smtp::proto::Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.code).collect()
}

fn content(data_event: &[String]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(&data_event[4])
        .unwrap()
}

#[tokio::test]
async fn pipelined_transaction_reports_each_recipient() {
    let peer = Peer::start(PeerOpts {
        pipelining: true,
        ..Default::default()
    })
    .await;
    let mut client = Client::connect(peer.addr, "peer.test", &config(TlsPolicy::Never))
        .await
        .unwrap();
    let to = rcpts(&[
        "ok1@fabrikam.test",
        "reject@fabrikam.test",
        "tempfail@fabrikam.test",
        "ok2@fabrikam.test",
    ]);
    let replies = client
        .send(&envelope("a@contoso.test", &to), MESSAGE)
        .await
        .unwrap();
    assert_eq!(codes(&replies), [250, 550, 451, 250], "{replies:?}");
    assert_eq!(replies[1].one_line(), "550 5.1.1 No such user");
    assert_eq!(replies[0].one_line(), "250 2.6.0 Queued");

    let data = peer.wait_events("DATA", 1).await;
    assert_eq!(data[0][1], "a@contoso.test");
    assert_eq!(data[0][2], "ok1@fabrikam.test,ok2@fabrikam.test");
    assert_eq!(data[0][3], "plain");
    assert_eq!(
        content(&data[0]),
        MESSAGE,
        "dot-stuffing must be transparent"
    );
    let mail = peer.wait_events("MAIL", 1).await;
    assert_eq!(
        mail[0][1], "pipelined",
        "MAIL, RCPT and DATA go in one write"
    );
    assert!(
        mail[0][2].contains(&format!("SIZE={}", MESSAGE.len())),
        "{mail:?}"
    );
    assert!(client.is_usable());
    assert_eq!(client.tls_version(), None);
    assert_eq!(client.remote(), peer.addr);
    assert_eq!(client.host(), "peer.test");
    client.quit().await;
}

#[tokio::test]
async fn hundreds_of_recipients_are_pipelined_in_groups() {
    let peer = Peer::start(PeerOpts {
        pipelining: true,
        ..Default::default()
    })
    .await;
    let mut client = Client::connect(peer.addr, "peer.test", &config(TlsPolicy::Never))
        .await
        .unwrap();
    let addresses: Vec<String> = (0..250)
        .map(|i| {
            let local = if i % 7 == 3 { "reject" } else { "user" };
            format!("{local}{i}@fabrikam.test")
        })
        .collect();
    let to = rcpts(&addresses.iter().map(String::as_str).collect::<Vec<_>>());
    let replies = client
        .send(&envelope("a@contoso.test", &to), MESSAGE)
        .await
        .unwrap();
    let want: Vec<u16> = (0..250)
        .map(|i| if i % 7 == 3 { 550 } else { 250 })
        .collect();
    assert_eq!(codes(&replies), want);
    let data = peer.wait_events("DATA", 1).await;
    let accepted: Vec<&str> = addresses
        .iter()
        .filter(|a| a.starts_with("user"))
        .map(String::as_str)
        .collect();
    assert_eq!(data[0][2], accepted.join(","));
    assert!(client.is_usable());
    client.quit().await;
}

#[tokio::test]
async fn lock_step_without_pipelining() {
    let peer = Peer::start(PeerOpts::default()).await;
    let mut client = Client::connect(peer.addr, "peer.test", &config(TlsPolicy::Never))
        .await
        .unwrap();
    let to = rcpts(&["reject@fabrikam.test", "ok@fabrikam.test"]);
    let replies = client
        .send(&envelope("a@contoso.test", &to), MESSAGE)
        .await
        .unwrap();
    assert_eq!(codes(&replies), [550, 250]);
    assert_eq!(peer.wait_events("MAIL", 1).await[0][1], "lockstep");
    let data = peer.wait_events("DATA", 1).await;
    assert_eq!(content(&data[0]), MESSAGE);
    client.quit().await;
}

#[tokio::test]
async fn one_connection_carries_several_transactions() {
    let peer = Peer::start(PeerOpts {
        pipelining: true,
        ..Default::default()
    })
    .await;
    let mut client = Client::connect(peer.addr, "peer.test", &config(TlsPolicy::Never))
        .await
        .unwrap();

    // Nobody accepted: the pipelined DATA is refused and the transaction reset.
    let refused = rcpts(&["reject1@fabrikam.test", "tempfail@fabrikam.test"]);
    let replies = client
        .send(&envelope("a@contoso.test", &refused), MESSAGE)
        .await
        .unwrap();
    assert_eq!(codes(&replies), [550, 451]);
    peer.wait_events("RSET", 1).await;

    // A refused MAIL is every recipient's outcome.
    let to = rcpts(&["x@fabrikam.test", "y@fabrikam.test"]);
    let replies = client
        .send(&envelope("refuse@contoso.test", &to), MESSAGE)
        .await
        .unwrap();
    assert_eq!(codes(&replies), [550, 550]);
    assert_eq!(replies[0].one_line(), "550 5.7.1 Sender refused");
    peer.wait_events("RSET", 2).await;

    for n in 0..2 {
        let to = rcpts(&["ok@fabrikam.test"]);
        let replies = client
            .send(&envelope("a@contoso.test", &to), MESSAGE)
            .await
            .unwrap();
        assert_eq!(codes(&replies), [250], "message {n}");
    }
    assert_eq!(peer.wait_events("DATA", 2).await.len(), 2);
    assert_eq!(peer.events("EHLO").len(), 1, "all on one session");
    assert!(client.is_usable());
    client.quit().await;
}

#[tokio::test]
async fn local_refusals_from_the_ehlo_answer() {
    let peer = Peer::start(PeerOpts {
        size: Some(100),
        no_smtputf8: true,
        ..Default::default()
    })
    .await;
    let mut client = Client::connect(peer.addr, "peer.test", &config(TlsPolicy::Never))
        .await
        .unwrap();
    let to = rcpts(&["a@fabrikam.test", "b@fabrikam.test"]);
    let replies = client
        .send(&envelope("a@contoso.test", &to), MESSAGE)
        .await
        .unwrap();
    assert_eq!(
        replies[1].one_line(),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    let utf8 = OutboundEnvelope {
        smtp_utf8: true,
        size: 10,
        ..envelope("a@contoso.test", &to)
    };
    let replies = client.send(&utf8, MESSAGE).await.unwrap();
    assert_eq!(codes(&replies), [550, 550]);
    assert_eq!(replies[0].enhanced.as_deref(), Some("5.6.7"));
    client.quit().await;
    assert!(
        peer.events("MAIL").is_empty(),
        "nothing may reach the server"
    );
}

#[tokio::test]
async fn dsn_parameters_only_to_servers_that_offer_dsn() {
    let to = vec![OutboundRecipient {
        address: "ok@fabrikam.test".into(),
        notify: Some("SUCCESS,FAILURE".into()),
        orcpt: Some("rfc822;Orig+1@fabrikam.test".into()),
    }];
    let env = OutboundEnvelope {
        env_id: Some("QQ 314"),
        ret: Some("HDRS"),
        body_8bit: true,
        ..envelope("a@contoso.test", &to)
    };
    for dsn in [true, false] {
        let peer = Peer::start(PeerOpts {
            dsn,
            pipelining: true,
            ..Default::default()
        })
        .await;
        let mut client = Client::connect(peer.addr, "peer.test", &config(TlsPolicy::Never))
            .await
            .unwrap();
        let replies = client.send(&env, MESSAGE).await.unwrap();
        assert_eq!(codes(&replies), [250], "dsn {dsn}: {replies:?}");
        let mail = &peer.wait_events("MAIL", 1).await[0][2];
        let rcpt = &peer.wait_events("RCPT", 1).await[0][1];
        if dsn {
            assert_eq!(
                mail,
                &format!(
                    "FROM:<a@contoso.test> SIZE={} BODY=8BITMIME RET=HDRS ENVID=QQ+20314",
                    MESSAGE.len()
                )
            );
            assert_eq!(
                rcpt,
                "TO:<ok@fabrikam.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Orig+2B1@fabrikam.test"
            );
        } else {
            assert!(!mail.contains("RET=") && !mail.contains("ENVID="), "{mail}");
            assert_eq!(rcpt, "TO:<ok@fabrikam.test>");
        }
        client.quit().await;
    }
}

#[tokio::test]
async fn require_tls_fails_when_starttls_is_not_offered() {
    let peer = Peer::start(PeerOpts::default()).await;
    for policy in [
        TlsPolicy::Required,
        TlsPolicy::RequiredValidated {
            name: "smarthost.test".into(),
        },
    ] {
        let err = Client::connect(peer.addr, "peer.test", &config(policy.clone()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{policy:?} connected without TLS"));
        assert!(matches!(err, ClientError::TlsNotOffered), "{err:?}");
        assert_eq!(
            err.reply().one_line(),
            "451 5.7.3 STARTTLS is required to send mail"
        );
        assert!(!err.is_permanent());
    }
    assert!(peer.events("MAIL").is_empty());
}

/// A CA, and leaves it signed for the names asked for, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hubgate test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Pki {
            dir,
            ca_der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn leaf(&self, name: &str) -> (PathBuf, PathBuf) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = self.dir.path().join(format!("{name}.crt"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn trust(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        Arc::new(roots)
    }
}

async fn tls_peer(cert: (PathBuf, PathBuf)) -> Peer {
    Peer::start(PeerOpts {
        pipelining: true,
        tls: Some(cert),
        require_starttls: true,
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn validated_tls_with_a_matching_certificate() {
    let pki = Pki::new();
    let peer = tls_peer(pki.leaf("smarthost.test")).await;
    let cfg = ClientConfig {
        trust: pki.trust(),
        ..config(TlsPolicy::RequiredValidated {
            name: "smarthost.test".into(),
        })
    };
    let mut client = Client::connect(peer.addr, "127.0.0.1", &cfg).await.unwrap();
    assert_eq!(client.tls_version(), Some("TLS1.3"));
    let to = rcpts(&["ok@fabrikam.test"]);
    let replies = client
        .send(&envelope("a@contoso.test", &to), MESSAGE)
        .await
        .unwrap();
    assert_eq!(codes(&replies), [250]);
    let data = peer.wait_events("DATA", 1).await;
    assert_eq!(data[0][3], "tls");
    assert_eq!(content(&data[0]), MESSAGE);
    let ehlo = peer.wait_events("EHLO", 2).await;
    assert_eq!(ehlo[1][2], "tls", "EHLO is repeated after STARTTLS");
    client.quit().await;
}

#[tokio::test]
async fn validated_tls_refuses_a_wrong_name_or_an_unknown_issuer() {
    let pki = Pki::new();
    let peer = tls_peer(pki.leaf("other.test")).await;
    let cfg = ClientConfig {
        trust: pki.trust(),
        ..config(TlsPolicy::RequiredValidated {
            name: "smarthost.test".into(),
        })
    };
    let err = Client::connect(peer.addr, "other.test", &cfg)
        .await
        .err()
        .expect("a certificate for other.test must not pass for smarthost.test");
    assert!(
        matches!(&err, ClientError::Tls(m) if m.contains("not valid for name")),
        "{err:?}"
    );
    assert!(
        err.reply().one_line().starts_with("451 4.7.5 "),
        "{}",
        err.reply()
    );
    assert!(!err.is_permanent());

    let matching = Pki::new();
    let peer = tls_peer(matching.leaf("smarthost.test")).await;
    let untrusted = config(TlsPolicy::RequiredValidated {
        name: "smarthost.test".into(),
    });
    let err = Client::connect(peer.addr, "smarthost.test", &untrusted)
        .await
        .err()
        .expect("a certificate from an unknown CA must be refused");
    assert!(
        matches!(&err, ClientError::Tls(m) if m.to_lowercase().contains("unknown")),
        "{err:?}"
    );
    assert!(peer.events("MAIL").is_empty());
}

#[tokio::test]
async fn opportunistic_tls_takes_any_certificate() {
    let pki = Pki::new();
    let peer = tls_peer(pki.leaf("other.test")).await;
    for policy in [TlsPolicy::Opportunistic, TlsPolicy::Required] {
        let mut client = Client::connect(peer.addr, "mx.fabrikam.test", &config(policy))
            .await
            .unwrap();
        assert!(client.tls_version().is_some());
        let to = rcpts(&["ok@fabrikam.test"]);
        let replies = client
            .send(&envelope("a@contoso.test", &to), MESSAGE)
            .await
            .unwrap();
        assert_eq!(codes(&replies), [250]);
        client.quit().await;
    }
    let data = peer.wait_events("DATA", 2).await;
    assert!(data.iter().all(|d| d[3] == "tls"), "{data:?}");
}

#[tokio::test]
async fn auth_plain_after_starttls() {
    let pki = Pki::new();
    let peer = Peer::start(PeerOpts {
        tls: Some(pki.leaf("smarthost.test")),
        auth: Some(("relay", "Corr3ct-Horse")),
        ..Default::default()
    })
    .await;
    let with = |password: &str| ClientConfig {
        auth: Some(Credentials {
            username: "relay".into(),
            password: password.into(),
        }),
        ..config(TlsPolicy::Opportunistic)
    };

    let mut client = Client::connect(peer.addr, "smarthost.test", &with("Corr3ct-Horse"))
        .await
        .unwrap();
    let to = rcpts(&["ok@fabrikam.test"]);
    let replies = client
        .send(&envelope("a@contoso.test", &to), MESSAGE)
        .await
        .unwrap();
    assert_eq!(codes(&replies), [250]);
    client.quit().await;
    let auth = peer.wait_events("AUTH", 1).await;
    assert_eq!(auth[0][1..], ["PLAIN", "relay", "ok"]);

    let err = Client::connect(peer.addr, "smarthost.test", &with("wrong"))
        .await
        .err()
        .expect("a wrong password must be refused");
    let ClientError::Auth(reply) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(reply.code, 535);
    assert!(err.is_permanent(), "a 535 is final for this host");
    assert_eq!(peer.wait_events("AUTH", 2).await[1][3], "fail");
}

fn send_log_files(data_dir: &Path) -> Vec<PathBuf> {
    let dir = data_dir.join("logs/ProtocolLog/SmtpSend");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// One RFC 4180 row: the log quotes fields that hold commas or quotes.
fn csv_row(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(String::new()),
            (c, _) => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[tokio::test]
async fn verbose_send_protocol_log_records_the_session_but_no_secrets() {
    const PASSWORD: &str = "Corr3ct-Horse";
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let pki = Pki::new();
    for login_only in [false, true] {
        let peer = Peer::start(PeerOpts {
            pipelining: !login_only,
            tls: Some(pki.leaf("smarthost.test")),
            auth: Some(("relay", PASSWORD)),
            auth_login_only: login_only,
            ..Default::default()
        })
        .await;
        let data_dir = tempfile::tempdir().unwrap();
        let cfg = ClientConfig {
            auth: Some(Credentials {
                username: "relay".into(),
                password: PASSWORD.into(),
            }),
            log: Some(SendLog::new(
                ProtocolLog::new(data_dir.path(), LogKind::Send),
                "Internet Mail",
            )),
            ..config(TlsPolicy::Opportunistic)
        };
        let mut client = Client::connect(peer.addr, "smarthost.test", &cfg)
            .await
            .unwrap();
        let to = rcpts(&["ok@fabrikam.test", "reject@fabrikam.test"]);
        let env = OutboundEnvelope {
            log_id: Some("msg-1"),
            ..envelope("a@contoso.test", &to)
        };
        let replies = client.send(&env, MESSAGE).await.unwrap();
        assert_eq!(codes(&replies), [250, 550]);
        client.quit().await;
        let mechanism = if login_only { "LOGIN" } else { "PLAIN" };
        assert_eq!(
            peer.wait_events("AUTH", 1).await[0][1..],
            [mechanism, "relay", "ok"]
        );

        let files = send_log_files(data_dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
        let digits = name
            .strip_prefix("SEND")
            .and_then(|n| n.strip_suffix("-1.LOG"))
            .unwrap_or_else(|| panic!("{name}"));
        assert!(
            digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()),
            "{name}"
        );
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            text.starts_with("#Software: Microsoft Exchange Server\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\n#Log-type: SMTP Send Protocol Log\r\n"));
        assert!(text.contains(
            "\r\n#Fields: date-time,connector-id,session-id,sequence-number,\
             local-endpoint,remote-endpoint,event,data,context\r\n"
        ));

        for secret in [
            PASSWORD.to_string(),
            b64(PASSWORD),
            b64(&format!("\0relay\0{PASSWORD}")),
        ] {
            assert!(!text.contains(&secret), "{secret} is in the log:\n{text}");
        }
        for content in ["Subject: test", "line one", "leading dot"] {
            assert!(
                !text.contains(content),
                "message content in the log:\n{text}"
            );
        }

        let rows: Vec<Vec<String>> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(csv_row)
            .collect();
        let session = rows[0][2].clone();
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), 9, "{row:?}");
            assert_eq!(row[1], "Internet Mail", "{row:?}");
            assert_eq!(row[2], session, "one session: {row:?}");
            assert_eq!(row[3], i.to_string(), "{row:?}");
            let local: SocketAddr = row[4].parse().unwrap();
            assert_eq!(local.ip(), peer.addr.ip());
            assert_eq!(row[5], peer.addr.to_string());
        }
        assert!(
            session.len() == 16 && session.bytes().all(|b| b.is_ascii_hexdigit()),
            "{session}"
        );
        let events = |e: &str| -> Vec<(String, String)> {
            rows.iter()
                .filter(|r| r[6] == e)
                .map(|r| (r[7].clone(), r[8].clone()))
                .collect()
        };
        assert_eq!(rows[0][6..], ["+", "", ""]);
        assert_eq!(rows.last().unwrap()[6..], ["-", "", "Local"]);

        let sent: Vec<String> = events(">").into_iter().map(|(d, _)| d).collect();
        let mut want = vec![
            "EHLO hub1.contoso.test",
            "STARTTLS",
            "EHLO hub1.contoso.test",
        ];
        if login_only {
            want.extend([
                "AUTH LOGIN",
                "<authentication response>",
                "<authentication response>",
            ]);
        } else {
            want.push("AUTH PLAIN");
        }
        let mail = format!("MAIL FROM:<a@contoso.test> SIZE={}", MESSAGE.len());
        want.extend([
            mail.as_str(),
            "RCPT TO:<ok@fabrikam.test>",
            "RCPT TO:<reject@fabrikam.test>",
            "DATA",
            "QUIT",
        ]);
        assert_eq!(sent, want, "{text}");

        let received: Vec<String> = events("<").into_iter().map(|(d, _)| d).collect();
        assert!(received[0].starts_with("220 "), "{received:?}");
        // The EHLO answer is one line, its continuation lines joined without their codes.
        assert!(
            received
                .iter()
                .any(|r| r.starts_with("250-peer.test ") && r.contains(" SIZE 33554432 ")),
            "{received:?}"
        );
        for reply in [
            "235 2.7.0 Authentication successful",
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "550 5.1.1 No such user",
            "250 2.6.0 Queued",
        ] {
            assert!(received.iter().any(|r| r == reply), "{reply}: {received:?}");
        }
        assert!(
            received.iter().any(|r| r.starts_with("354 ")),
            "{received:?}"
        );
        assert!(received.last().unwrap().starts_with("221 "), "{received:?}");

        let info = events("*");
        for (data, context) in [
            ("TLS1.3", "TLS negotiation succeeded"),
            ("relay", "authenticated"),
            ("msg-1;2", "sending message"),
        ] {
            assert!(
                info.iter().any(|(d, c)| d == data && c == context),
                "{data},{context}: {info:?}"
            );
        }
    }
}

#[tokio::test]
async fn no_send_protocol_log_without_verbose_logging() {
    let peer = Peer::start(PeerOpts::default()).await;
    let data_dir = tempfile::tempdir().unwrap();
    // As the delivery context holds it: created for the process, handed to no connector.
    let _send_log = ProtocolLog::new(data_dir.path(), LogKind::Send);
    let mut client = Client::connect(peer.addr, "peer.test", &config(TlsPolicy::Never))
        .await
        .unwrap();
    let to = rcpts(&["ok@fabrikam.test"]);
    let env = OutboundEnvelope {
        log_id: Some("msg-1"),
        ..envelope("a@contoso.test", &to)
    };
    assert_eq!(codes(&client.send(&env, MESSAGE).await.unwrap()), [250]);
    client.quit().await;
    assert!(send_log_files(data_dir.path()).is_empty());
    assert!(!data_dir.path().join("logs").exists());
}

#[tokio::test]
async fn connection_refused_is_a_transient_error() {
    // A port this test holds bound but never listens on: the kernel refuses every connection to
    // it, and nobody else can listen there meanwhile.
    let held = tokio::net::TcpSocket::new_v4().unwrap();
    held.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = held.local_addr().unwrap();
    let err = Client::connect(addr, "nowhere.test", &config(TlsPolicy::Opportunistic))
        .await
        .err()
        .expect("nothing listens there");
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert_eq!(err.reply().one_line(), "421 4.2.1 Unable to connect");
    assert!(!err.is_permanent());
}

mod dns {
    use super::*;
    use hickory_server::Server;
    use hickory_server::net::runtime::TokioRuntimeProvider;
    use hickory_server::proto::rr::rdata::{A, AAAA, MX, SOA, TXT};
    use hickory_server::proto::rr::{LowerName, Name, RData, Record};
    use hickory_server::store::in_memory::InMemoryZoneHandler;
    use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn zone() -> InMemoryZoneHandler<TokioRuntimeProvider> {
        let origin = name("test.");
        let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        let soa = SOA::new(
            name("ns.test."),
            name("hostmaster.test."),
            1,
            3600,
            600,
            86400,
            60,
        );
        let records: Vec<(&str, RData)> = vec![
            ("test.", RData::SOA(soa)),
            (
                "two-mx.test.",
                RData::MX(MX::new(20, name("mx-b.two-mx.test."))),
            ),
            (
                "two-mx.test.",
                RData::MX(MX::new(10, name("mx-a.two-mx.test."))),
            ),
            (
                "mx-a.two-mx.test.",
                RData::AAAA(AAAA("::1".parse().unwrap())),
            ),
            ("mx-a.two-mx.test.", RData::A(A([127, 0, 0, 11].into()))),
            ("mx-b.two-mx.test.", RData::A(A([127, 0, 0, 12].into()))),
            ("a-only.test.", RData::A(A([127, 0, 0, 13].into()))),
            ("null-mx.test.", RData::MX(MX::new(0, Name::root()))),
            (
                "dangling-mx.test.",
                RData::MX(MX::new(10, name("missing.test."))),
            ),
            (
                "half-dangling.test.",
                RData::MX(MX::new(5, name("missing.test."))),
            ),
            (
                "half-dangling.test.",
                RData::MX(MX::new(10, name("mx-b.two-mx.test."))),
            ),
            (
                "txt-only.test.",
                RData::TXT(TXT::new(vec!["v=spf1 -all".into()])),
            ),
        ];
        for (owner, data) in records {
            zone.upsert_mut(Record::from_rdata(name(owner), 60, data), 1);
        }
        zone
    }

    async fn start() -> (Server<Catalog>, SocketAddr) {
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&name("test.")), vec![Arc::new(zone())]);
        let mut server = Server::new(catalog);
        // UDP and TCP on the same port; a few attempts in case the TCP port is taken.
        for _ in 0..10 {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 4096);
                return (server, addr);
            }
        }
        panic!("no free UDP+TCP port pair on 127.0.0.1");
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn mx_targets_from_a_dns_server() {
        let (mut server, addr) = start().await;
        let resolver = Resolver::with_servers(&[addr]).unwrap();

        let got = resolver.mx_targets("two-mx.test").await.unwrap();
        let want = vec![
            Target {
                host: "mx-a.two-mx.test".into(),
                addrs: ips(&["127.0.0.11", "::1"]),
            },
            Target {
                host: "mx-b.two-mx.test".into(),
                addrs: ips(&["127.0.0.12"]),
            },
        ];
        assert_eq!(got, want, "sorted by preference, IPv4 first");

        let got = resolver.mx_targets("a-only.test").await.unwrap();
        assert_eq!(
            got,
            vec![Target {
                host: "a-only.test".into(),
                addrs: ips(&["127.0.0.13"]),
            }],
            "implicit MX"
        );

        let got = resolver.mx_targets("half-dangling.test").await.unwrap();
        assert_eq!(got.len(), 1, "the unresolvable MX host is skipped: {got:?}");
        assert_eq!(got[0].host, "mx-b.two-mx.test");

        let err = resolver.mx_targets("nothing.test").await.unwrap_err();
        assert_eq!(err, DnsError::NonExistentDomain("nothing.test".into()));
        assert_eq!(
            err.reply().one_line(),
            "554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain"
        );
        assert!(err.is_permanent());

        let err = resolver.mx_targets("null-mx.test").await.unwrap_err();
        assert!(matches!(err, DnsError::NullMx(_)), "{err:?}");
        assert!(err.is_permanent());

        let err = resolver.mx_targets("dangling-mx.test").await.unwrap_err();
        assert!(matches!(err, DnsError::Transient { .. }), "{err:?}");
        assert_eq!(err.reply().code, 451);

        let err = resolver.mx_targets("txt-only.test").await.unwrap_err();
        assert!(matches!(err, DnsError::NonExistentDomain(_)), "{err:?}");

        server.shutdown_gracefully().await.unwrap();
    }

    #[tokio::test]
    async fn smart_host_addresses() {
        let (mut server, addr) = start().await;
        let resolver = Resolver::with_servers(&[addr]).unwrap();
        assert_eq!(
            resolver.host_addrs("mx-a.two-mx.test").await.unwrap(),
            ips(&["127.0.0.11", "::1"])
        );
        for literal in ["[127.0.0.9]", "127.0.0.9"] {
            assert_eq!(
                resolver.host_addrs(literal).await.unwrap(),
                ips(&["127.0.0.9"])
            );
        }
        assert!(matches!(
            resolver.host_addrs("nothing.test").await,
            Err(DnsError::NonExistentDomain(_))
        ));
        server.shutdown_gracefully().await.unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_dns_server_is_a_transient_failure() {
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let resolver = Resolver::with_servers(&[SocketAddr::from(([127, 0, 0, 1], port))]).unwrap();
        let result =
            tokio::time::timeout(Duration::from_secs(60), resolver.mx_targets("two-mx.test"))
                .await
                .expect("the resolver gives up by itself");
        let err = result.unwrap_err();
        assert!(matches!(err, DnsError::Transient { .. }), "{err:?}");
        assert_eq!(err.reply().one_line(), "451 4.4.0 DNS query failed");
    }
}
