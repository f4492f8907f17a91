//! Hostile connections: clients that hold a session without talking or without reading, floods
//! of new connections, and greetings that name no domain.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The connectors' timeouts in these tests: small, so a drop is seen quickly.
const INACTIVITY_SECS: u64 = 2;
const CONNECTION_SECS: u64 = 6;

async fn with_short_timeouts() -> Setup {
    let setup = Setup::new().await;
    setup
        .sql(&format!(
            "UPDATE receive_connector SET connection_inactivity_timeout = {INACTIVITY_SECS}, connection_timeout = {CONNECTION_SECS}"
        ))
        .await;
    setup
}

/// Reads until the server closes the connection; returns how long that took, or None if it was
/// still open after `limit`.
async fn time_to_close(c: &mut Raw, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match tokio::time::timeout(limit - start.elapsed(), c.reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
    None
}

#[tokio::test]
async fn a_client_silent_after_starttls_is_dropped_within_the_timeout() {
    let setup = with_short_timeouts().await;
    // One connection per source, so a held session would also lock the client out.
    setup
        .sql("UPDATE receive_connector SET max_inbound_connection_per_source = 1, max_inbound_connection_percentage_per_source = 100")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    assert!(c.reply().await.starts_with("220 "));
    assert!(c.cmd("EHLO client.example").await.contains("STARTTLS"));
    assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 SMTP server ready\r\n");
    // No ClientHello ever comes.
    let waited = time_to_close(&mut c, Duration::from_secs(60))
        .await
        .expect("the silent STARTTLS client was never dropped");
    assert!(
        waited < Duration::from_secs(INACTIVITY_SECS + 8),
        "dropped only after {waited:?}"
    );
    // Its connection slot is free again (bounded retries: the slot is released just after close).
    let mut banner = String::new();
    for _ in 0..50 {
        let mut next = Raw::connect(gw.smtp()).await;
        banner = next.reply().await;
        if banner.starts_with("220 ") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(banner.starts_with("220 "), "{banner}");
}

#[tokio::test]
async fn a_pipelining_client_that_never_reads_is_dropped_with_memory_bounded() {
    let gw = with_short_timeouts().await.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    assert!(c.reply().await.starts_with("220 "));
    let before = gw.peak_rss_kib();
    // Each 21-byte EHLO asks for a reply ten times its size; the client never reads one.
    let chunk = "EHLO client.example\r\n".repeat(3000).into_bytes();
    let start = Instant::now();
    let deadline = Duration::from_secs(60);
    let mut sent = 0usize;
    let dropped = loop {
        let left = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, c.writer.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
        // Bounded: a server that kept reading forever would be a failure too.
        if sent > 512 * 1024 * 1024 {
            break false;
        }
    };
    let waited = start.elapsed();
    assert!(
        dropped,
        "not dropped after {waited:?} ({sent} bytes accepted)"
    );
    assert!(
        waited < Duration::from_secs(INACTIVITY_SECS + 15),
        "dropped only after {waited:?}"
    );
    let grown = gw.peak_rss_kib().saturating_sub(before);
    assert!(grown < 20 * 1024, "gateway peak RSS grew by {grown} KiB");
    // The gateway still serves others.
    let mut other = Raw::connect(gw.smtp()).await;
    assert!(other.reply().await.starts_with("220 "));
}

#[tokio::test]
async fn connections_beyond_max_connection_rate_per_minute_are_refused() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE transport_server SET max_connection_rate_per_minute = 3")
        .await;
    let gw = setup.start().await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Raw::connect(gw.smtp()).await;
        assert!(c.reply().await.starts_with("220 "));
        held.push(c);
    }
    let mut c = Raw::connect(gw.smtp()).await;
    assert_eq!(
        c.reply().await,
        "421 4.3.2 The maximum connection rate per minute has exceeded a limit, closing transmission channel\r\n"
    );
    assert!(c.closed().await);
    // The sessions already admitted go on.
    assert_eq!(held[0].cmd("NOOP").await, "250 2.0.0 OK\r\n");
    // A scraper tells the sessions from the refusal.
    let series = |name: &str| format!("{name}{{connector=\"Default HUB1\"}}");
    assert_eq!(
        gw.metric(&series("hubgate_connections_total")).await,
        Some(3.0)
    );
    assert_eq!(gw.metric(&series("hubgate_connections")).await, Some(3.0));
    assert_eq!(
        gw.metric(&series("hubgate_connections_refused_total"))
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn require_ehlo_domain_refuses_greetings_without_a_domain() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET require_ehlo_domain = true, max_protocol_errors = 20 WHERE name LIKE 'Default %'")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    c.reply().await;
    for hello in [
        "EHLO client",
        "HELO MY_PC.corp.local",
        "EHLO 10.1.2.3",
        "EHLO bücher.example",
    ] {
        assert_eq!(
            c.cmd(hello).await,
            "501 5.5.4 Invalid domain name\r\n",
            "{hello}"
        );
    }
    // The refused greetings set nothing.
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org>").await,
        "503 5.5.2 Send hello first\r\n"
    );
    assert!(c.cmd("EHLO [127.0.0.1]").await.starts_with("250-"));
    assert!(c.cmd("HELO mx.example.org.").await.starts_with("250 "));

    // A connector without RequireEHLODomain keeps taking single-label names.
    let mut other = Raw::connect(gw.client_addr()).await;
    other.reply().await;
    assert!(other.cmd("EHLO client").await.starts_with("250-"));
}

#[tokio::test]
async fn refused_bdat_chunks_count_towards_max_protocol_errors_and_close() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET max_protocol_errors = 1")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    c.reply().await;
    c.cmd("EHLO client.example").await;
    // BDAT without a transaction: its octets are read and refused, and the error counts.
    c.send(b"BDAT 3\r\nabc").await;
    assert_eq!(c.reply().await, "503 5.5.2 Need mail command\r\n");
    c.send(b"BDAT 3\r\nabcNOOP\r\n").await;
    assert_eq!(c.reply().await, "503 5.5.2 Need mail command\r\n");
    assert_eq!(
        c.reply().await,
        "421 4.7.0 Too many errors on this connection, closing transmission channel\r\n"
    );
    // Nothing after the 421 is read: the NOOP gets no reply, the connection ends.
    assert!(c.closed().await);
}
