//! Several nodes on one database: two `hubgate serve` processes with different
//! HUBGATE_SERVER_NAME on one PostgreSQL. Each owns its receive connectors, spool and queues;
//! the organisation objects are shared; both show in Get-TransportServer and in the console's
//! Server Configuration.
//!
//! Real `hubgate serve` (two), real PostgreSQL (one database), real aiosmtpd next hops (one per
//! node), real clients (swaks, raw sockets, the console over HTTPS).

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::console::{session_cookie, sign_in};
use common::mail::*;
use common::pair::{applied, final_subjects as subjects};
use common::peers::{Sink, SinkOptions};
use common::*;
use hubgate::shell::Shell;

const FQDN2: &str = "hub2.contoso.test";
const REMOTE: &str = "someone@fabrikam.example";

/// One line of the shell on the node named `fqdn`.
async fn sh_on(pool: &sqlx::PgPool, fqdn: &str, line: &str) -> String {
    Shell::new(pool.clone(), fqdn)
        .run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{fqdn}: {line}: {e}"))
}

/// The RCPT reply an anonymous client gets for `to` on `node`.
async fn rcpt_reply(node: std::net::SocketAddr, to: &str) -> String {
    let mut c = Raw::connect(node).await;
    c.reply().await;
    c.cmd("EHLO client.example").await;
    c.cmd(&format!("MAIL FROM:<{SENDER}>")).await;
    let r = c.cmd(&format!("RCPT TO:<{to}>")).await;
    c.cmd("QUIT").await;
    r
}

/// The second node's first start on the organisation's database: the stdout lines before its
/// ready line. It is stopped again (SIGTERM) before this returns.
async fn first_start(b: &Setup) -> Vec<String> {
    let mut child = serve_command(b, b.data_dir.path())
        .env("HUBGATE_DEFAULT_BINDINGS", b.default_bindings())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hubgate");
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for l in BufReader::new(stdout).lines().take(50) {
            let Ok(l) = l else { break };
            let ready = l.starts_with("hubgate ready");
            seen.push(l);
            if ready {
                break;
            }
        }
        seen
    })
    .await
    .unwrap();
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the second node did not stop");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lines
}

/// The Server Configuration page of the console on `gw` (signed in as the Administrator).
async fn server_configuration(gw: &Gateway) -> String {
    let c = https::Client::new(gw.console_addr(), &gw.data_dir(), &gw.setup.fqdn);
    let session = sign_in(&c, "Administrator", ADMIN_PASSWORD)
        .await
        .unwrap_or_else(|r| panic!("sign-in refused: {} {}", r.status, r.body));
    let page = c
        .get("/server/hub", &[("Cookie", &session_cookie(&session))])
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_on_one_database_share_the_organisation_and_keep_their_own_queues() {
    let sink_a = Sink::start(addr("127.0.0.1", peer_port()));
    let mut sink_b = Sink::down(addr("127.0.0.1", peer_port()), SinkOptions::default());

    // HUB1 as the organisation's first node.
    let a = Setup::new().await;
    let b = a.join(1, FQDN2);
    configure(
        &a,
        &[
            &format!(
                "New-SendConnector -Name 'To A' -AddressSpaces 'fabrikam.example' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {} -SourceTransportServers HUB1",
                sink_a.addr.ip(),
                sink_a.addr.port()
            ),
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01 -MessageRetryInterval 00:00:01",
        ],
    )
    .await;
    let mut a = a.start().await;
    b.share_key(&a.data_dir());

    // HUB2's first start leaves the shared objects as they were, and shows no made-up
    // Administrator password (the account is the organisation's, made by HUB1).
    let admin = "SELECT password_hash FROM account WHERE name = 'Administrator'";
    let (hash,): (String,) = sqlx::query_as(admin).fetch_one(a.pool()).await.unwrap();
    let domains = sh_on(a.pool(), FQDN, "Get-AcceptedDomain | Format-List").await;
    let lines = first_start(&b).await;
    assert!(
        lines.last().is_some_and(|l| l.contains("server HUB2")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("Administrator password")),
        "a password that opens nothing was shown: {lines:?}"
    );
    let (after,): (String,) = sqlx::query_as(admin).fetch_one(a.pool()).await.unwrap();
    assert_eq!(hash, after, "the second node changed the Administrator");
    assert_eq!(
        domains,
        sh_on(a.pool(), FQDN, "Get-AcceptedDomain | Format-List").await
    );

    // HUB2's own objects, made while it is stopped.
    configure(
        &b,
        &[
            &format!(
                "New-SendConnector -Name 'To B' -AddressSpaces 'fabrikam.example' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {} -SourceTransportServers HUB2",
                sink_b.addr.ip(),
                sink_b.addr.port()
            ),
            "Set-TransportServer HUB2 -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01 -MessageRetryInterval 00:00:01",
        ],
    )
    .await;
    let mut b = b.start().await;

    // Both servers, in the shell and in the console of either node.
    let servers = sh_on(a.pool(), FQDN, "Get-TransportServer").await;
    assert!(
        servers.contains("HUB1") && servers.contains("HUB2"),
        "{servers}"
    );
    for gw in [&a, &b] {
        let page = server_configuration(gw).await;
        assert!(
            page.contains("HUB1") && page.contains("HUB2"),
            "{}: {page}",
            gw.setup.fqdn
        );
    }

    // Set-TransportServer on one leaves the other alone.
    let before = sh_on(
        a.pool(),
        FQDN2,
        "Get-TransportServer HUB2 | Format-List MaxOutboundConnections",
    )
    .await;
    sh_on(
        a.pool(),
        FQDN,
        "Set-TransportServer HUB1 -MaxOutboundConnections 77",
    )
    .await;
    let one = sh_on(
        a.pool(),
        FQDN,
        "Get-TransportServer HUB1 | Format-List MaxOutboundConnections",
    )
    .await;
    assert_eq!(shown(&one, "MaxOutboundConnections"), "77");
    let other = sh_on(
        a.pool(),
        FQDN2,
        "Get-TransportServer HUB2 | Format-List MaxOutboundConnections",
    )
    .await;
    assert_eq!(before, other);
    assert_ne!(shown(&other, "MaxOutboundConnections"), "77");

    // An accepted domain made on HUB1 is used by HUB2 after its configuration reload.
    let r = rcpt_reply(b.smtp(), REMOTE).await;
    assert!(r.starts_with("550"), "relay before the domain: {r}");
    sh_on(
        a.pool(),
        FQDN,
        "New-AcceptedDomain -Name Fabrikam -DomainName fabrikam.example -DomainType InternalRelay",
    )
    .await;
    applied(&b, "fabrikam").await;
    let r = rcpt_reply(b.smtp(), REMOTE).await;
    assert!(
        r.starts_with("250"),
        "HUB2 after HUB1 added the domain: {r}"
    );

    // HUB2 takes a message while its next hop is down, then stops; HUB1 restarts and delivers
    // its own mail, never HUB2's.
    send_to(b.smtp(), REMOTE, "b-held");
    eventually("HUB2's message waiting in Retry", || async {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM message m JOIN message_recipient r ON r.message_id = m.id
              WHERE m.server = 'HUB2' AND r.status = 'Retry'",
        )
        .fetch_one(b.pool())
        .await
        .unwrap();
        n == 1
    })
    .await;
    b.stop();
    a.restart().await;
    for i in 1..=3 {
        send_to(a.smtp(), REMOTE, &format!("a-{i}"));
    }
    within_now(60, "HUB1's messages at its next hop", || {
        subjects(&sink_a).len() >= 3
    })
    .await;
    assert_eq!(subjects(&sink_a), ["a-1", "a-2", "a-3"]);
    let (server,): (String,) = sqlx::query_as(
        "SELECT server FROM message m JOIN message_recipient r ON r.message_id = m.id
          WHERE r.status = 'Retry'",
    )
    .fetch_one(a.pool())
    .await
    .unwrap();
    assert_eq!(server, "HUB2", "HUB2's message is still HUB2's");
    // Either node's shell lists the other's queues on request, its own by default.
    let theirs = sh_on(a.pool(), FQDN, "Get-Queue -Server HUB2 | Format-List").await;
    assert!(
        theirs.contains("HUB2\\") && theirs.contains("Retry"),
        "{theirs}"
    );
    let own = sh_on(a.pool(), FQDN, "Get-Queue | Format-List").await;
    assert!(own.contains("HUB1\\") && !own.contains("HUB2\\"), "{own}");

    // HUB2 back, with its next hop: it delivers its own, there only.
    sink_b.restart();
    b.spawn().await;
    send_to(b.smtp(), REMOTE, "b-1");
    within_now(60, "HUB2's messages at its next hop", || {
        subjects(&sink_b).len() >= 2
    })
    .await;
    assert_eq!(subjects(&sink_b), ["b-1", "b-held"]);
    eventually("both queues empty", || async {
        a.message_count().await == 0
    })
    .await;
    assert_eq!(subjects(&sink_a), ["a-1", "a-2", "a-3"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_under_a_running_nodes_name_refuses_to_start_and_touches_nothing() {
    let mut sink = Sink::down(addr("127.0.0.1", peer_port()), SinkOptions::default());
    let a = Setup::new().await;
    configure(
        &a,
        &[
            &format!(
                "New-SendConnector -Name 'To A' -AddressSpaces 'fabrikam.example' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {}",
                sink.addr.ip(),
                sink.addr.port()
            ),
            "New-AcceptedDomain -Name Fabrikam -DomainName fabrikam.example -DomainType InternalRelay",
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01 -MessageRetryInterval 00:00:01",
        ],
    )
    .await;
    let a = a.start().await;
    send_to(a.smtp(), REMOTE, "held");
    eventually("the message waiting in Retry", || async {
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM message_recipient WHERE status = 'Retry'")
                .fetch_one(a.pool())
                .await
                .unwrap();
        n == 1
    })
    .await;

    // The same server name again, with a spool of its own (another machine, or a copy of the
    // container): it would deliver HUB1's queue a second time and find none of its bodies.
    let twin = a.setup.join(2, FQDN);
    twin.share_key(&a.data_dir());
    let (status, out, err) = run_to_exit(
        serve_command(&twin, twin.data_dir.path())
            .env("HUBGATE_DEFAULT_BINDINGS", twin.default_bindings()),
        "a second HUB1 kept running",
    );
    assert_eq!(status.code(), Some(1), "stdout: {out}\nstderr: {err}");
    assert!(!out.contains("hubgate ready"), "{out}");
    assert!(
        err.contains("another hubgate process is serving as HUB1 on this database")
            && err.contains("HUBGATE_SERVER_NAME"),
        "{err}"
    );

    // HUB1 kept its message whole: no report of a lost body, delivered once its next hop is up.
    let (dsns,): (i64,) = sqlx::query_as("SELECT count(*) FROM message WHERE from_address = ''")
        .fetch_one(a.pool())
        .await
        .unwrap();
    assert_eq!(dsns, 0, "a DSN was made");
    sink.restart();
    within_now(60, "the held message at the next hop", || {
        !subjects(&sink).is_empty()
    })
    .await;
    assert_eq!(subjects(&sink), ["held"]);
    eventually("the queue empty", || async { a.message_count().await == 0 }).await;
}
