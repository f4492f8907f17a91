//! Hostile clients on the DATA/BDAT path: size arithmetic, CHUNKING off, one content policy for
//! DATA and BDAT, bodies streamed to disk, MaxLocalHopCount, and a commit whose outcome is unknown.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "administrator@contoso.test";
const MIB: usize = 1024 * 1024;

async fn ehlo(c: &mut Raw) -> String {
    let banner = c.reply().await;
    assert!(banner.starts_with("220 "), "{banner}");
    let r = c.cmd("EHLO client.example").await;
    assert!(r.starts_with("250-"), "{r}");
    r
}

async fn transaction(c: &mut Raw) {
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org>").await,
        "250 2.1.0 Sender OK\r\n"
    );
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{ADMIN}>")).await,
        "250 2.1.5 Recipient OK\r\n"
    );
}

/// Keeps delivered-to-mailbox messages in the queue (as Suspend-Queue leaves it), so their
/// bodies stay in the spool and delivery does not read them while memory is measured.
async fn suspend_mailbox_delivery(setup: &Setup) {
    setup
        .sql(&format!(
            "INSERT INTO delivery_queue (server, delivery_type, next_hop_domain, suspended)
             VALUES ('{SERVER}', 'MapiDelivery', '{FQDN}', true)"
        ))
        .await;
}

/// Bodies on disk (not the removed ones' files kept in `spool/free/` for reuse).
fn spool_files(gw: &Gateway) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(gw.data_dir().join("spool")) {
        Ok(dir) => dir
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Sends a whole message with DATA and returns the reply to its end.
async fn send_data(c: &mut Raw, message: &[u8]) -> String {
    transaction(c).await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send(message).await;
    c.reply().await
}

/// Sends one BDAT chunk and returns the reply.
async fn bdat_chunk(c: &mut Raw, chunk: &[u8], last: bool) -> String {
    let last = if last { " LAST" } else { "" };
    c.send(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes())
        .await;
    c.send(chunk).await;
    c.reply().await
}

/// Sends a whole message as one BDAT LAST chunk and returns the reply.
async fn send_bdat(c: &mut Raw, message: &[u8]) -> String {
    transaction(c).await;
    bdat_chunk(c, message, true).await
}

#[tokio::test]
async fn a_wrapping_bdat_size_is_refused_and_memory_stays_flat() {
    let gw = Setup::new().await.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    transaction(&mut c).await;
    c.send(b"BDAT 1\r\nS").await;
    assert_eq!(c.reply().await, "250 2.0.0 1 bytes received\r\n");
    let before = gw.peak_rss_kib();

    // 1 + (2^64 - 1) wraps to 0 in unchecked arithmetic.
    let Raw { reader, mut writer } = c;
    let replies = tokio::spawn(async move {
        let mut reader = reader;
        let mut all = String::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(120), reader.read_to_string(&mut all)).await;
        all
    });
    writer
        .write_all(b"BDAT 18446744073709551615 LAST\r\n")
        .await
        .unwrap();
    let piece = vec![b'x'; MIB];
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut sent = 0usize;
    while sent < 512 * MIB && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(30), writer.write_all(&piece)).await {
            Ok(Ok(())) => sent += MIB,
            _ => break,
        }
    }
    drop(writer);
    let replies = replies.await.unwrap();
    assert_eq!(
        replies,
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert!(
        sent < 512 * MIB,
        "the server read {sent} bytes of a refused chunk"
    );
    let grown = gw.peak_rss_kib().saturating_sub(before);
    assert!(grown < 20 * 1024, "peak RSS grew by {grown} KiB");
    assert_eq!(gw.message_count().await, 0);

    // A chunk within the limit that takes the message over it is read and dropped: the session
    // goes on.
    gw.setup
        .sql("UPDATE receive_connector SET max_message_size = 65536")
        .await;
    eventually("the smaller size limit", || async {
        let mut c = Raw::connect(gw.smtp()).await;
        ehlo(&mut c).await.contains("250-SIZE 65536\r\n")
    })
    .await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    transaction(&mut c).await;
    let chunk = vec![b'a'; 40_000];
    assert_eq!(
        bdat_chunk(&mut c, &chunk, false).await,
        "250 2.0.0 40000 bytes received\r\n"
    );
    assert_eq!(
        bdat_chunk(&mut c, &chunk, true).await,
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");
    // Not LAST: the transaction is still a BDAT one, refused, and DATA is out of sequence in it.
    transaction(&mut c).await;
    assert_eq!(
        bdat_chunk(&mut c, &chunk, false).await,
        "250 2.0.0 40000 bytes received\r\n"
    );
    assert_eq!(
        bdat_chunk(&mut c, &chunk, false).await,
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    assert_eq!(
        c.cmd("DATA").await,
        "503 5.5.1 Bad sequence of commands\r\n"
    );
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Resetting\r\n");
    assert_eq!(gw.message_count().await, 0);
    assert!(spool_files(&gw).is_empty(), "{:?}", spool_files(&gw));
}

#[tokio::test]
async fn bdat_is_an_unrecognized_command_when_chunking_is_disabled() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET chunking_enabled = false, max_protocol_errors = 2")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    let ehlo_reply = ehlo(&mut c).await;
    assert!(!ehlo_reply.contains("CHUNKING"), "{ehlo_reply}");
    assert!(!ehlo_reply.contains("BINARYMIME"), "{ehlo_reply}");
    transaction(&mut c).await;
    // The chunk's octets are not a chunk here: they are read as a command line.
    c.send(b"BDAT 6 LAST\r\nhello\r\n").await;
    assert_eq!(c.reply().await, "500 5.3.3 Unrecognized command\r\n");
    assert_eq!(c.reply().await, "500 5.3.3 Unrecognized command\r\n");
    // Errors are counted: past MaxProtocolErrors the session ends.
    assert_eq!(
        c.cmd("BDAT 1 LAST").await,
        "500 5.3.3 Unrecognized command\r\n"
    );
    assert_eq!(
        c.reply().await,
        "421 4.7.0 Too many errors on this connection, closing transmission channel\r\n"
    );
    assert!(c.closed().await);
    assert_eq!(gw.message_count().await, 0);
}

#[tokio::test]
async fn nul_bytes_and_bare_line_ends_are_refused_over_data_and_bdat() {
    let setup = Setup::new().await;
    suspend_mailbox_delivery(&setup).await;
    let gw = setup.start().await;
    let nul = "554 5.6.0 Invalid message content, contains NUL characters\r\n";
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    // The sequences a public SMTP smuggling scanner reports as accepted.
    for seq in [&b"\r\n\x00.\r\n"[..], b"\r\n.\x00\r\n"] {
        let mut m = b"Subject: nul\r\n\r\nbefore".to_vec();
        m.extend_from_slice(seq);
        m.extend_from_slice(b"MAIL FROM:<evil@example.org>\r\n\r\n.\r\n");
        assert_eq!(send_data(&mut c, &m).await, nul, "DATA {seq:?}");
        let m = &m[..m.len() - 3];
        assert_eq!(send_bdat(&mut c, m).await, nul, "BDAT {seq:?}");
    }
    // BDAT content passes the same bare CR / bare LF policy as DATA.
    assert_eq!(
        send_bdat(&mut c, b"Subject: lf\r\n\r\nbefore\n.\nafter\r\n").await,
        "554 5.6.0 Invalid message content, contains bare linefeeds\r\n"
    );
    assert_eq!(
        send_bdat(&mut c, b"Subject: cr\r\n\r\nbefore\r.\rafter\r\n").await,
        "554 5.6.0 Invalid message content, contains bare carriage returns\r\n"
    );
    // The same policy across chunks: a CR ending one chunk pairs with the next chunk's LF.
    transaction(&mut c).await;
    c.send(b"BDAT 21\r\nSubject: split\r\n\r\nab\r").await;
    assert_eq!(c.reply().await, "250 2.0.0 21 bytes received\r\n");
    c.send(b"BDAT 3 LAST\r\n\ncd").await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.6.0 "), "{r}");
    assert_eq!(gw.message_count().await, 1);
}

#[tokio::test]
async fn a_cr_in_a_header_cannot_smuggle_an_organization_header_over_bdat() {
    let setup = Setup::new().await;
    suspend_mailbox_delivery(&setup).await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    // A next hop that ends lines at a lone CR reads two fields here, the second one an
    // organisation header that this anonymous session may not bring in.
    let smuggled = b"Subject: hi\rX-MS-Exchange-Organization-SCL: -1\r\n\r\nbody\r\n";
    assert_eq!(
        send_bdat(&mut c, smuggled).await,
        "554 5.6.0 Invalid message content, contains bare carriage returns\r\n"
    );
    assert_eq!(gw.message_count().await, 0);
    // On a line of its own over BDAT, the firewall drops it.
    let plain = b"X-MS-Exchange-Organization-SCL: -1\r\nSubject: ok\r\n\r\nbody\r\n";
    let r = send_bdat(&mut c, plain).await;
    assert!(r.starts_with("250 2.6.0 "), "{r}");
    let (id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM message")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    let stored = String::from_utf8(gw.stored_body(id).await.unwrap()).unwrap();
    assert!(!stored.contains("X-MS-Exchange-Organization"), "{stored}");
    assert!(stored.contains("\r\nSubject: ok\r\n"), "{stored}");
    assert!(
        stored.starts_with("Received: from client.example"),
        "{stored}"
    );
}

#[tokio::test]
async fn a_50_mb_message_is_streamed_to_disk_with_flat_memory() {
    let setup = Setup::new().await;
    suspend_mailbox_delivery(&setup).await;
    setup
        .sql("UPDATE receive_connector SET max_message_size = 67108864")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    transaction(&mut c).await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    let before = gw.peak_rss_kib();
    c.send(b"Subject: large\r\n\r\n").await;
    let mut line = vec![b'y'; 1022];
    line.extend_from_slice(b"\r\n");
    let piece = line.repeat(1024);
    for _ in 0..50 {
        c.send(&piece).await;
    }
    c.send(b".\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.6.0 "), "{r}");
    let grown = gw.peak_rss_kib().saturating_sub(before);
    assert!(grown < 20 * 1024, "peak RSS grew by {grown} KiB");

    let (id, size): (uuid::Uuid, i64) = sqlx::query_as("SELECT id, size FROM message")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    let path = gw.data_dir().join("spool").join(format!("{id}.eml"));
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert_eq!(on_disk, size as u64);
    assert!(on_disk > 50 * MIB as u64, "{on_disk}");
    let stored = std::fs::read(&path).unwrap();
    assert!(stored.starts_with(b"Received: from client.example"));
    assert!(stored.ends_with(&line));
    let body_at = stored.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(stored.len() - body_at, 50 * 1024 * 1024);
    drop(stored);

    // BDAT takes the same path: 20 chunks of 1 MiB.
    transaction(&mut c).await;
    c.send(b"BDAT 20\r\nSubject: chunked\r\n\r\n").await;
    assert_eq!(c.reply().await, "250 2.0.0 20 bytes received\r\n");
    for i in 0..20 {
        let r = bdat_chunk(&mut c, &piece, i == 19).await;
        assert!(r.starts_with("250 "), "{r}");
    }
    let grown = gw.peak_rss_kib().saturating_sub(before);
    assert!(grown < 20 * 1024, "peak RSS grew by {grown} KiB");
    assert_eq!(gw.message_count().await, 2);
}

#[tokio::test]
async fn refused_and_aborted_messages_leave_no_file() {
    let gw = Setup::new().await.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    // Large enough to have gone to disk before the bare LF at its end refuses it.
    let mut m = b"Subject: refused\r\n\r\n".to_vec();
    m.extend_from_slice(&b"z\r\n".repeat(200_000));
    m.extend_from_slice(b"bare\n\r\n.\r\n");
    assert_eq!(
        send_data(&mut c, &m).await,
        "554 5.6.0 Invalid message content, contains bare linefeeds\r\n"
    );
    assert!(spool_files(&gw).is_empty(), "{:?}", spool_files(&gw));

    transaction(&mut c).await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send(&m[..500_000]).await;
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !spool_files(&gw).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spool_files(&gw).is_empty(), "{:?}", spool_files(&gw));
    assert_eq!(gw.message_count().await, 0);
}

fn with_received(by: &[&str]) -> Vec<u8> {
    let mut m = Vec::new();
    for host in by {
        m.extend_from_slice(
            format!(
                "Received: from relay.example ([192.0.2.1]) by {host} ([192.0.2.2]) with ESMTP;\r\n Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            )
            .as_bytes(),
        );
    }
    m.extend_from_slice(b"Subject: hops\r\n\r\nbody\r\n.\r\n");
    m
}

#[tokio::test]
async fn max_local_hop_count_refuses_a_loop_through_the_organization() {
    let setup = Setup::new().await;
    suspend_mailbox_delivery(&setup).await;
    setup
        .sql("UPDATE receive_connector SET max_local_hop_count = 2")
        .await;
    let gw = setup.start().await;
    let loop_reply = "554 5.4.6 Hop count exceeded - possible mail loop\r\n";
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    // Three passes through this organisation's server (its FQDN in any case, with a final dot).
    let ours = with_received(&[FQDN, "HUB1.Contoso.Test.", FQDN]);
    assert_eq!(send_data(&mut c, &ours).await, loop_reply);
    let n = send_bdat(&mut c, &ours[..ours.len() - 3]).await;
    assert_eq!(n, loop_reply);
    // Two local hops are allowed, and hops elsewhere are not local.
    let r = send_data(&mut c, &with_received(&[FQDN, "mx.fabrikam.test", FQDN])).await;
    assert!(r.starts_with("250 2.6.0 "), "{r}");
    let r = send_data(
        &mut c,
        &with_received(&["a.example", "b.example", "c.example"]),
    )
    .await;
    assert!(r.starts_with("250 2.6.0 "), "{r}");
    assert_eq!(gw.message_count().await, 2);
    drop(c);

    // 0 turns the check off.
    gw.setup
        .sql("UPDATE receive_connector SET max_local_hop_count = 0")
        .await;
    eventually("MaxLocalHopCount 0 in effect", || async {
        let mut c = Raw::connect(gw.smtp()).await;
        ehlo(&mut c).await;
        send_data(&mut c, &ours).await.starts_with("250 2.6.0 ")
    })
    .await;
}

/// A TCP proxy in front of the test PostgreSQL that can cut the connections whose COMMIT is
/// under way (sent, not yet answered), as a network failure at that moment would.
struct PgProxy {
    addr: SocketAddr,
    conns: Arc<Mutex<HashMap<u64, ProxyConn>>>,
}

struct ProxyConn {
    commit_pending: Arc<AtomicBool>,
    tasks: [tokio::task::AbortHandle; 2],
}

enum Upstream {
    Unix(std::path::PathBuf),
    Tcp(String),
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

impl PgProxy {
    /// Starts the proxy for `url`; returns it and the URL to reach the same database through it.
    async fn start(url: &str) -> (PgProxy, String) {
        let rest = url.split_once("://").unwrap().1;
        let (authority, path) = rest.split_once('/').unwrap();
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap();
        let (db, query) = path.split_once('?').unwrap_or((path, ""));
        let port = hostport.rsplit_once(':').map_or("5432", |(_, p)| p);
        let mut kept = Vec::new();
        let mut socket_dir = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("host", v)) if percent_decode(v).starts_with('/') => {
                    socket_dir = Some(percent_decode(v))
                }
                _ => kept.push(pair),
            }
        }
        let upstream = match socket_dir {
            Some(dir) => Upstream::Unix(format!("{dir}/.s.PGSQL.{port}").into()),
            None => Upstream::Tcp(hostport.to_string()),
        };
        let upstream = Arc::new(upstream);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<HashMap<u64, ProxyConn>>> = Arc::default();
        let table = conns.clone();
        tokio::spawn(async move {
            for n in 0u64.. {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (ur, uw): (
                    Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                    Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                ) = match &*upstream {
                    Upstream::Unix(p) => {
                        let s = tokio::net::UnixStream::connect(p).await.unwrap();
                        let (r, w) = s.into_split();
                        (Box::new(r), Box::new(w))
                    }
                    Upstream::Tcp(a) => {
                        let s = tokio::net::TcpStream::connect(a).await.unwrap();
                        let (r, w) = s.into_split();
                        (Box::new(r), Box::new(w))
                    }
                };
                let pending = Arc::new(AtomicBool::new(false));
                let up = tokio::spawn(pipe(cr, uw, pending.clone(), true));
                let down = tokio::spawn(pipe(ur, cw, pending.clone(), false));
                table.lock().unwrap().insert(
                    n,
                    ProxyConn {
                        commit_pending: pending,
                        tasks: [up.abort_handle(), down.abort_handle()],
                    },
                );
            }
        });
        let q = if kept.is_empty() {
            String::new()
        } else {
            format!("?{}", kept.join("&"))
        };
        let proxied = format!("postgres://{userinfo}@{addr}/{db}{q}");
        (PgProxy { addr, conns }, proxied)
    }

    /// Closes every connection whose COMMIT is waiting for its answer; returns how many.
    fn cut_pending_commits(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let cut: Vec<u64> = conns
            .iter()
            .filter(|(_, c)| c.commit_pending.load(Ordering::SeqCst))
            .map(|(n, _)| *n)
            .collect();
        for n in &cut {
            if let Some(c) = conns.remove(n) {
                for t in c.tasks {
                    t.abort();
                }
            }
        }
        cut.len()
    }
}

/// Copies one direction; client-to-server marks a COMMIT as pending, any answer clears it.
async fn pipe(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    pending: Arc<AtomicBool>,
    client_to_server: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if client_to_server {
            if buf[..n]
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"COMMIT"))
            {
                pending.store(true, Ordering::SeqCst);
            }
        } else {
            pending.store(false, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn a_commit_whose_outcome_is_unknown_keeps_the_body() {
    let mut setup = Setup::new().await;
    suspend_mailbox_delivery(&setup).await;
    // COMMIT of this one message takes a while, so the connection can be cut while it runs.
    setup
        .sql(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.subject = 'commit-cut' THEN PERFORM pg_sleep(4); END IF;
               RETURN NULL;
             END $$",
        )
        .await;
    setup
        .sql(
            "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON message
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()",
        )
        .await;
    let (proxy, proxied) = PgProxy::start(&setup.db_url).await;
    setup.db_url = proxied;
    let gw = setup.start().await;
    assert!(!proxy.conns.lock().unwrap().is_empty(), "{}", proxy.addr);

    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    transaction(&mut c).await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c.send(b"Subject: commit-cut\r\n\r\nkept body\r\n.\r\n")
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (sleeping,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query ILIKE 'COMMIT%'",
        )
        .fetch_one(gw.pool())
        .await
        .unwrap();
        if sleeping > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the COMMIT never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.cut_pending_commits(), 1);
    assert_eq!(
        c.reply().await,
        "452 4.3.1 Insufficient system resources\r\n"
    );
    // The server finishes the COMMIT the client never heard about.
    let mut id = None;
    for _ in 0..300 {
        id = sqlx::query_as::<_, (uuid::Uuid,)>(
            "SELECT id FROM message WHERE subject = 'commit-cut'",
        )
        .fetch_optional(gw.pool())
        .await
        .unwrap();
        if id.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (id,) = id.expect("the message row was committed");
    let body = gw.stored_body(id).await;
    let body = String::from_utf8(body.expect("the body of a committed message is kept")).unwrap();
    assert!(body.ends_with("\r\n\r\nkept body\r\n"), "{body}");
}
