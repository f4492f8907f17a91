//! Receiving: durable acceptance, every rejection of reference §2.4/§3.5 with its exact reply.

mod common;

use common::mail::{mailbox, within_now};
use common::*;

const ADMIN: &str = "administrator@contoso.test";

async fn ehlo(c: &mut Raw) {
    let banner = c.reply().await;
    assert!(banner.starts_with("220 "), "{banner}");
    let r = c.cmd("EHLO client.example").await;
    assert!(r.starts_with("250-"), "{r}");
}

/// The mailbox delivery queue suspended (as Suspend-Queue leaves it), so that an accepted
/// message stays queued, rows and spool file, for a test to look at instead of being delivered
/// (and removed) at any moment.
async fn hold_mailbox_queue(setup: &Setup) {
    setup
        .sql(&format!(
            "INSERT INTO delivery_queue (server, delivery_type, next_hop_domain, suspended)
             VALUES ('{SERVER}', 'MapiDelivery', '{FQDN}', true)"
        ))
        .await;
}

#[tokio::test]
async fn accepted_message_survives_a_restart_with_body_and_rows() {
    let setup = Setup::new().await;
    hold_mailbox_queue(&setup).await;
    let mut gw = setup.start().await;
    let ip = gw.smtp().ip().to_string();
    let port = gw.smtp().port().to_string();
    let (ok, out) = swaks(&[
        "--server",
        &ip,
        "--port",
        &port,
        "--from",
        "sender@example.org",
        "--to",
        ADMIN,
        "--header",
        "Subject: durability check",
        "--body",
        "the body line 42",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("250 2.6.0 <") && out.contains("[InternalId="),
        "{out}"
    );
    assert!(out.contains("Queued mail for delivery"), "{out}");

    gw.restart().await;
    let (id, from, subject, connector): (uuid::Uuid, String, Option<String>, String) =
        sqlx::query_as("SELECT id, from_address, subject, receive_connector FROM message")
            .fetch_one(gw.pool())
            .await
            .unwrap();
    assert_eq!(from, "sender@example.org");
    assert_eq!(subject.as_deref(), Some("durability check"));
    assert_eq!(connector, "HUB1\\Default HUB1");
    let (addr, disposition): (String, String) =
        sqlx::query_as("SELECT address, disposition FROM message_recipient WHERE message_id = $1")
            .bind(id)
            .fetch_one(gw.pool())
            .await
            .unwrap();
    assert_eq!(addr, ADMIN);
    assert_eq!(disposition, "Mailbox");
    let body = String::from_utf8(gw.stored_body(id).await.unwrap()).unwrap();
    assert!(body.starts_with("Received: from "), "{body}");
    assert!(body.contains("by hub1.contoso.test"), "{body}");
    assert!(body.contains("the body line 42\r\n"), "{body}");

    // And the restarted gateway still takes mail.
    let (ok, out) = swaks(&[
        "--server",
        &ip,
        "--port",
        &port,
        "--from",
        "a@example.org",
        "--to",
        ADMIN,
    ]);
    assert!(ok, "{out}");
    assert_eq!(gw.message_count().await, 2);
}

#[tokio::test]
async fn banner_ehlo_and_fixed_replies() {
    let gw = Setup::new().await.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    let banner = c.reply().await;
    assert!(
        banner.starts_with("220 hub1.contoso.test Microsoft ESMTP MAIL Service ready at "),
        "{banner}"
    );
    let ehlo = c.cmd("EHLO client.example").await;
    let lines: Vec<&str> = ehlo.lines().collect();
    assert_eq!(lines[0], "250-hub1.contoso.test Hello [127.0.0.1]");
    let keywords: Vec<String> = lines[1..].iter().map(|l| l[4..].to_string()).collect();
    assert_eq!(
        keywords,
        vec![
            "SIZE 10485760",
            "PIPELINING",
            "DSN",
            "ENHANCEDSTATUSCODES",
            "STARTTLS",
            "8BITMIME",
            "BINARYMIME",
            "CHUNKING",
            "SMTPUTF8",
            // Default has ExchangeServer and ShadowRedundancyEnabled is on (reference §1.2).
            "XSHADOW"
        ],
        "AUTH must wait for STARTTLS on Default (BasicAuthRequireTLS)"
    );
    assert_eq!(c.cmd("NOOP").await, "250 2.0.0 OK\r\n");
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 Resetting\r\n");
    assert_eq!(
        c.cmd("HELP").await,
        "214-This server supports the following commands:\r\n214 HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP AUTH BDAT\r\n"
    );
    assert_eq!(c.cmd("FOO").await, "500 5.3.3 Unrecognized command\r\n");
    assert_eq!(
        c.cmd("QUIT").await,
        "221 2.0.0 Service closing transmission channel\r\n"
    );
    assert!(c.closed().await);
}

#[tokio::test]
async fn sequence_errors_and_syntax_replies() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET max_protocol_errors = 20")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    c.reply().await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org>").await,
        "503 5.5.2 Send hello first\r\n"
    );
    assert_eq!(
        c.cmd("EHLO").await,
        "501 5.0.0 HELO requires domain address\r\n"
    );
    c.cmd("EHLO client.example").await;
    assert_eq!(
        c.cmd("RCPT TO:<administrator@contoso.test>").await,
        "503 5.5.2 Need mail command\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<not an address>").await,
        "501 5.1.7 Invalid address\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org> FOO=BAR").await,
        "501 5.5.4 Unrecognized parameter\r\n"
    );
    assert_eq!(
        c.cmd("EHLO bad..name").await,
        "501 5.5.4 Invalid domain name\r\n"
    );
    assert_eq!(
        c.cmd("AUTH CRAM-MD5").await,
        "530 5.7.0 Must issue a STARTTLS command first\r\n"
    );
    c.cmd("EHLO client.example").await;
    assert_eq!(
        c.cmd("MAIL FROM:<jörg@example.org>").await,
        "553 5.6.7 Non-ASCII addresses require the SMTPUTF8 parameter\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<jörg@example.org> SMTPUTF8").await,
        "250 2.1.0 Sender OK\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<administrator@contoso.test>").await,
        "250 2.1.5 Recipient OK\r\n"
    );
}

#[tokio::test]
async fn rcpt_rejections_unknown_user_relay_and_too_many() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET max_recipients_per_message = 2")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    assert_eq!(c.cmd("DATA").await, "503 5.5.2 Need mail command\r\n");
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org>").await,
        "250 2.1.0 Sender OK\r\n"
    );
    assert_eq!(c.cmd("DATA").await, "503 5.5.2 Need rcpt command\r\n");
    assert_eq!(
        c.cmd("MAIL FROM:<b@example.org>").await,
        "503 5.5.1 Sender already specified\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<nobody@contoso.test>").await,
        "550 5.1.1 User unknown\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<someone@elsewhere.example>").await,
        "550 5.7.1 Unable to relay\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<administrator@contoso.test>").await,
        "250 2.1.5 Recipient OK\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<postmaster@contoso.test>").await,
        "250 2.1.5 Recipient OK\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<administrator@contoso.test>").await,
        "452 4.5.3 Too many recipients\r\n"
    );
}

#[tokio::test]
async fn size_limits_at_mail_and_during_data_and_header_size() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET max_message_size = 65536, max_header_size = 1024")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org> SIZE=70000").await,
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );
    c.cmd("MAIL FROM:<a@example.org>").await;
    c.cmd("RCPT TO:<administrator@contoso.test>").await;
    assert!(c.cmd("DATA").await.starts_with("354 "));
    let line = format!("{}\r\n", "x".repeat(998));
    let mut big = String::from("Subject: big\r\n\r\n");
    for _ in 0..70 {
        big.push_str(&line);
    }
    big.push_str(".\r\n");
    c.send(big.as_bytes()).await;
    assert_eq!(
        c.reply().await,
        "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    );

    c.cmd("MAIL FROM:<a@example.org>").await;
    c.cmd("RCPT TO:<administrator@contoso.test>").await;
    c.cmd("DATA").await;
    let header = format!("Subject: {}\r\n\r\nbody\r\n.\r\n", "h".repeat(1100));
    c.send(header.as_bytes()).await;
    assert_eq!(
        c.reply().await,
        "552 5.3.4 Header size exceeds fixed maximum size\r\n"
    );
    assert_eq!(gw.message_count().await, 0);
}

#[tokio::test]
async fn hop_count_over_max_is_refused() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET max_hop_count = 2")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    c.cmd("MAIL FROM:<a@example.org>").await;
    c.cmd("RCPT TO:<administrator@contoso.test>").await;
    c.cmd("DATA").await;
    c.send(b"Received: from a by b\r\nReceived: from b by c\r\nReceived: from c by d\r\nSubject: loop\r\n\r\nx\r\n.\r\n")
        .await;
    assert_eq!(
        c.reply().await,
        "554 5.4.6 Hop count exceeded - possible mail loop\r\n"
    );
    c.cmd("MAIL FROM:<a@example.org>").await;
    c.cmd("RCPT TO:<administrator@contoso.test>").await;
    c.cmd("DATA").await;
    c.send(b"Received: from a by b\r\nReceived: from b by c\r\nSubject: ok\r\n\r\nx\r\n.\r\n")
        .await;
    assert!(c.reply().await.starts_with("250 2.6.0 "));
    // The accepted message may already be delivered (and its queue rows gone) when the 250
    // arrives, or not yet: wait for its delivery rather than count rows at once.
    let dir = gw.data_dir();
    let delivered = || mailbox(&dir, ADMIN);
    within_now(30, "the accepted message in the mailbox", || {
        !delivered().is_empty()
    })
    .await;
    let got = delivered();
    assert_eq!(got.len(), 1, "only the message within the hop count");
    // Maildir holds LF line ends.
    assert!(got[0].contains("\nSubject: ok\n"), "{}", got[0]);
}

#[tokio::test]
async fn submit_and_sender_rights() {
    let setup = Setup::new().await;
    // Take Accept-Authoritative-Domain-Sender away from anonymous (the anti-spoofing step).
    setup
        .sql(
            "DELETE FROM connector_permission WHERE principal = 'NT AUTHORITY\\ANONYMOUS LOGON'
             AND extended_right = 'ms-Exch-SMTP-Accept-Authoritative-Domain-Sender'",
        )
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    assert_eq!(
        c.cmd("MAIL FROM:<administrator@contoso.test>").await,
        "550 5.7.1 Anonymous client does not have permissions to send as this sender\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<x@example.org>").await,
        "250 2.1.0 Sender OK\r\n"
    );

    // The Client connector grants nothing to anonymous sessions.
    let mut c = Raw::connect(gw.client_addr()).await;
    ehlo(&mut c).await;
    assert_eq!(
        c.cmd("MAIL FROM:<x@example.org>").await,
        "530 5.7.1 Client was not authenticated\r\n"
    );
}

#[tokio::test]
async fn bare_line_feeds_are_refused() {
    let gw = Setup::new().await.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    c.cmd("MAIL FROM:<a@example.org>").await;
    c.cmd("RCPT TO:<administrator@contoso.test>").await;
    c.cmd("DATA").await;
    c.send(b"Subject: lf\r\n\r\nline one\nline two\r\n.\r\n")
        .await;
    assert_eq!(
        c.reply().await,
        "554 5.6.0 Invalid message content, contains bare linefeeds\r\n"
    );
    assert_eq!(gw.message_count().await, 0);
}

#[tokio::test]
async fn protocol_error_limit_closes_the_session() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET max_protocol_errors = 2")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    c.reply().await;
    assert_eq!(c.cmd("BOGUS").await, "500 5.3.3 Unrecognized command\r\n");
    assert_eq!(c.cmd("BOGUS").await, "500 5.3.3 Unrecognized command\r\n");
    let last = c.cmd("BOGUS").await;
    assert_eq!(last, "500 5.3.3 Unrecognized command\r\n");
    assert_eq!(
        c.reply().await,
        "421 4.7.0 Too many errors on this connection, closing transmission channel\r\n"
    );
    assert!(c.closed().await);
}

#[tokio::test]
async fn connection_limits_per_source_and_per_connector() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET max_inbound_connection_per_source = 1, max_inbound_connection_percentage_per_source = 100")
        .await;
    let gw = setup.start().await;
    let mut first = Raw::connect(gw.smtp()).await;
    assert!(first.reply().await.starts_with("220 "));
    let mut second = Raw::connect(gw.smtp()).await;
    assert_eq!(
        second.reply().await,
        "421 4.3.2 The maximum number of concurrent connections has exceeded a limit, closing transmission channel\r\n"
    );
    let mut other_source = Raw::connect_from(gw.smtp(), Some("127.0.0.2")).await;
    assert!(other_source.reply().await.starts_with("220 "));

    gw.setup
        .sql("UPDATE receive_connector SET max_inbound_connection = 2, max_inbound_connection_per_source = 5")
        .await;
    let addr = gw.smtp();
    eventually("the new MaxInboundConnection", || async move {
        let mut third = Raw::connect_from(addr, Some("127.0.0.3")).await;
        third.reply().await
            == "421 4.3.2 The maximum number of concurrent server connections has exceeded a limit, closing transmission channel\r\n"
    })
    .await;
}

#[tokio::test]
async fn inactivity_and_connection_timeouts() {
    let setup = Setup::new().await;
    setup.sql("UPDATE receive_connector SET connection_inactivity_timeout = 1, connection_timeout = 3").await;
    let gw = setup.start().await;
    let mut idle = Raw::connect(gw.smtp()).await;
    idle.reply().await;
    assert_eq!(
        idle.reply().await,
        "451 4.7.0 Timeout waiting for client input\r\n"
    );
    assert!(idle.closed().await);

    // A client that keeps talking, but for longer than ConnectionTimeout: it is never idle for
    // anything near the inactivity timeout, and it talks until the gateway ends the session.
    let started = std::time::Instant::now();
    let mut busy = Raw::connect(gw.smtp()).await;
    busy.reply().await;
    let deadline = started + std::time::Duration::from_secs(30);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        last = busy.cmd("NOOP").await;
        if !last.starts_with("250") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(last, "421 4.4.1 Connection timed out\r\n");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(3),
        "ended before ConnectionTimeout"
    );
}

#[tokio::test]
async fn tarpit_delays_rejections_for_anonymous_sessions() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET tarpit_interval = 2")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    c.cmd("MAIL FROM:<a@example.org>").await;
    let started = std::time::Instant::now();
    assert_eq!(
        c.cmd("RCPT TO:<nobody@contoso.test>").await,
        "550 5.1.1 User unknown\r\n"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "the 5xx reply was not tarpitted"
    );
    let started = std::time::Instant::now();
    assert_eq!(
        c.cmd("RCPT TO:<administrator@contoso.test>").await,
        "250 2.1.5 Recipient OK\r\n"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "a 250 must not be tarpitted"
    );
}

#[tokio::test]
async fn require_tls_refuses_mail_in_clear() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET require_tls = true")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org>").await,
        "530 5.7.0 Must issue a STARTTLS command first\r\n"
    );
}

#[tokio::test]
async fn message_rate_limit_per_source() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET message_rate_limit = 1")
        .await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org>").await,
        "250 2.1.0 Sender OK\r\n"
    );
    c.cmd("RSET").await;
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org>").await,
        "421 4.4.2 Message submission rate for this client has exceeded the configured limit\r\n"
    );
}

#[tokio::test]
async fn bdat_chunks_are_accepted() {
    let setup = Setup::new().await;
    hold_mailbox_queue(&setup).await;
    let gw = setup.start().await;
    let mut c = Raw::connect(gw.smtp()).await;
    ehlo(&mut c).await;
    c.cmd("MAIL FROM:<a@example.org> BODY=BINARYMIME").await;
    c.cmd("RCPT TO:<administrator@contoso.test>").await;
    let part1 = b"Subject: chunks\r\n\r\nfirst ";
    let part2 = b"second\r\n";
    c.send(format!("BDAT {}\r\n", part1.len()).as_bytes()).await;
    c.send(part1).await;
    assert!(c.reply().await.starts_with("250 "));
    c.send(format!("BDAT {} LAST\r\n", part2.len()).as_bytes())
        .await;
    c.send(part2).await;
    let r = c.reply().await;
    assert!(r.starts_with("250 2.6.0 "), "{r}");
    // Held in the suspended queue: its rows and body stay for the look below.
    let (id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM message")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    let body = String::from_utf8(gw.stored_body(id).await.unwrap()).unwrap();
    assert!(body.ends_with("\r\n\r\nfirst second\r\n"), "{body}");
}

#[tokio::test]
async fn protocol_log_records_the_session_in_exchange_format() {
    let setup = Setup::new().await;
    setup
        .sql("UPDATE receive_connector SET protocol_logging_level = 'Verbose'")
        .await;
    let gw = setup.start().await;
    let ip = gw.smtp().ip().to_string();
    let port = gw.smtp().port().to_string();
    let (ok, out) = swaks(&[
        "--server",
        &ip,
        "--port",
        &port,
        "--from",
        "a@example.org",
        "--to",
        ADMIN,
    ]);
    assert!(ok, "{out}");
    let dir = gw.data_dir().join("logs/ProtocolLog/SmtpReceive");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("RECV") && name.ends_with("-1.LOG"),
        "{name}"
    );
    let log = std::fs::read_to_string(&file).unwrap();
    assert!(log.starts_with("#Software: Microsoft Exchange Server\r\n#Version: 14.0.0.0\r\n#Log-type: SMTP Receive Protocol Log\r\n")
        || log.starts_with("#Software: Microsoft Exchange Server\n#Version: 14.0.0.0\n#Log-type: SMTP Receive Protocol Log\n"), "{log}");
    assert!(log.contains("#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context"));
    assert!(log.contains("HUB1\\Default HUB1,"), "{log}");
    assert!(log.contains(",*,SMTPSubmit SMTPAcceptAnySender SMTPAcceptAuthoritativeDomainSender AcceptRoutingHeaders,Set Session Permissions"), "{log}");
    assert!(log.contains(",<,MAIL FROM:<a@example.org>,"), "{log}");
    assert!(log.contains(",>,250 2.6.0 "), "{log}");
}
