//! Hostile input: smuggling, STARTTLS injection, oversized lines and headers, abandoned DATA.

mod common;

use common::*;

async fn open_transaction(gw: &Gateway) -> Raw {
    let mut c = Raw::connect(gw.smtp()).await;
    c.reply().await;
    c.cmd("EHLO client.example").await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org>").await,
        "250 2.1.0 Sender OK\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<administrator@contoso.test>").await,
        "250 2.1.5 Recipient OK\r\n"
    );
    assert!(c.cmd("DATA").await.starts_with("354 "));
    c
}

#[tokio::test]
async fn smuggling_sequences_are_rejected_and_nothing_is_smuggled() {
    let gw = Setup::new().await.start().await;
    let smuggled = "MAIL FROM:<evil@example.org>\r\nRCPT TO:<administrator@contoso.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n";
    for (fake_end, reply) in [
        (
            "\n.\r\n",
            "554 5.6.0 Invalid message content, contains bare linefeeds\r\n",
        ),
        (
            "\r\n.\n",
            "554 5.6.0 Invalid message content, contains bare linefeeds\r\n",
        ),
        (
            "\n.\n",
            "554 5.6.0 Invalid message content, contains bare linefeeds\r\n",
        ),
        (
            "\r.\r\n",
            "554 5.6.0 Invalid message content, contains bare carriage returns\r\n",
        ),
    ] {
        let mut c = open_transaction(&gw).await;
        let payload = format!("Subject: carrier\r\n\r\nhello{fake_end}{smuggled}");
        c.send(payload.as_bytes()).await;
        assert_eq!(c.reply().await, reply, "fake end {fake_end:?}");
        // The smuggled commands were body text, so the next reply is to this QUIT.
        assert_eq!(
            c.cmd("QUIT").await,
            "221 2.0.0 Service closing transmission channel\r\n"
        );
    }
    assert_eq!(gw.message_count().await, 0);
}

const STARTTLS_INJECTION: &str = r#"
import socket, ssl, sys
host, port, cafile, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port), timeout=30)
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        l = f.readline()
        lines.append(l)
        if len(l) < 4 or l[3:4] != b"-":
            return b"".join(lines)
reply()
s.sendall(b"EHLO client.example\r\n"); reply()
# The injected NOOP travels in clear text in the same packet as STARTTLS.
s.sendall(b"STARTTLS\r\nNOOP\r\n")
r = reply()
assert r == b"220 2.0.0 SMTP server ready\r\n", r
ctx = ssl.create_default_context(cafile=cafile)
t = ctx.wrap_socket(s, server_hostname=name)
tf = t.makefile("rb")
t.sendall(b"EHLO client.example\r\n")
first = tf.readline()
assert first.startswith(b"250-hub1.contoso.test Hello"), "injected command was answered: %r" % first
print("OK")
"#;

#[tokio::test]
async fn commands_pipelined_after_starttls_are_discarded() {
    let gw = Setup::new().await.start().await;
    let cert = gw.data_dir().join("certs").join(format!("{FQDN}.crt"));
    let (ok, out) = python(
        STARTTLS_INJECTION,
        &[
            &gw.smtp().ip().to_string(),
            &gw.smtp().port().to_string(),
            &cert.to_string_lossy(),
            FQDN,
        ],
    );
    assert!(ok && out.contains("OK"), "{out}");
}

#[tokio::test]
async fn oversized_lines_and_headers_are_refused_in_bounded_memory() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET max_header_size = 65536, max_message_size = 1048576")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    c.reply().await;
    let baseline = gw.peak_rss_kib();
    // 64 MiB on one command line, no line end until the last byte.
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..64 {
        c.send(&chunk).await;
    }
    assert_eq!(c.cmd("").await, "500 5.5.2 Line too long\r\n");
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");

    // A 64 MiB header section in DATA.
    c.cmd("EHLO client.example").await;
    c.cmd("MAIL FROM:<a@example.org>").await;
    c.cmd("RCPT TO:<administrator@contoso.test>").await;
    c.cmd("DATA").await;
    c.send(b"X-Long: ").await;
    let folded = [b"a".repeat(998), b"\r\n ".to_vec()].concat();
    let mut sent = 0;
    while sent < 64 << 20 {
        c.send(&folded).await;
        sent += folded.len();
    }
    c.send(b"end\r\n\r\nbody\r\n.\r\n").await;
    let r = c.reply().await;
    assert!(r.starts_with("552 5.3.4 "), "{r}");
    let grown = gw.peak_rss_kib().saturating_sub(baseline);
    assert!(
        grown < 32 * 1024,
        "memory grew by {grown} KiB for 64 MiB of hostile input"
    );
    assert_eq!(gw.message_count().await, 0);
}

#[tokio::test]
async fn a_client_that_stops_mid_data_leaves_no_message() {
    let gw = Setup::new().await.start().await;
    let mut c = open_transaction(&gw).await;
    c.send(b"Subject: half\r\n\r\nthe first half of a messa")
        .await;
    drop(c);
    // A complete message afterwards proves the gateway finished with the abandoned one.
    let mut d = open_transaction(&gw).await;
    d.send(b"Subject: whole\r\n\r\nok\r\n.\r\n").await;
    assert!(d.reply().await.starts_with("250 2.6.0 "));
    let subjects: Vec<(Option<String>,)> = sqlx::query_as("SELECT subject FROM message")
        .fetch_all(gw.pool())
        .await
        .unwrap();
    assert_eq!(subjects, vec![(Some("whole".to_string()),)]);
    // The whole one is small, kept in its row; the abandoned one left no file.
    let (id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM message")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert!(gw.stored_body(id).await.is_some());
    let files = std::fs::read_dir(gw.data_dir().join("spool"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count();
    assert_eq!(files, 0);
}
