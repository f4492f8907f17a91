//! Shadow redundancy between two organisations' gateways, as ../shared/seeds/000 tells it:
//! org1's HUBORG1 hands mail for org2.test to org2's HUBORG2, which relays it to a final
//! server. Each node has its own database, spool and 127.x address; the final server is a real
//! aiosmtpd. Configured with the article's cmdlets.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use common::mail::*;
use common::peers::Sink;
use common::*;
use hubgate::shell::Shell;

const ORG1: (&str, &str) = ("HUBORG1", "huborg1.org1.test");
const ORG2: (&str, &str) = ("HUBORG2", "huborg2.org2.test");
const FROM_ORG1: &str = "From Org1";
const TO_ORG2: &str = "To Org2";
const ANONYMOUS: &str = "NT AUTHORITY\\ANONYMOUS LOGON";
const EXTERNALLY_SECURED: &str = "MS Exchange\\Externally Secured Servers";

async fn sh(gw: &Gateway, line: &str) -> String {
    Shell::new(gw.pool().clone(), &gw.setup.fqdn)
        .with_data_dir(gw.data_dir())
        .run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{}: {line}: {e}", gw.setup.fqdn))
}

/// The node's SMTP Send or Receive protocol logs, all files in order.
fn protocol_log(data_dir: &Path, kind: &str) -> String {
    let dir = data_dir.join("logs/ProtocolLog").join(kind);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return String::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect()
}

fn send_log(gw: &Gateway) -> String {
    protocol_log(&gw.data_dir(), "SmtpSend")
}

/// A message from org1's user to an org2 user (whose mailbox is behind the final server; the
/// first start made org2's administrator a mailbox on org2 itself), through org1.
fn send_to_org2(org1: &Gateway, subject: &str) {
    let server = org1.smtp().to_string();
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--from",
        "user1@org1.test",
        "--to",
        "user2@org2.test",
        "--header",
        &format!("Subject: {subject}"),
    ]);
    assert!(ok, "swaks failed: {out}");
}

/// org1's recipients held as shadow copies.
async fn shadow_copies(gw: &Gateway) -> i64 {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM message_recipient r JOIN delivery_queue q ON q.id = r.queue_id
          WHERE q.delivery_type = 'ShadowRedundancy' AND r.status = 'Shadow'",
    )
    .fetch_one(gw.pool())
    .await
    .unwrap();
    n
}

/// Subjects the final server received, sorted (duplicates kept).
fn final_subjects(sink: &Sink) -> Vec<String> {
    let mut v: Vec<String> = sink
        .received()
        .iter()
        .filter_map(|r| {
            r.data
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        })
        .collect();
    v.sort();
    v
}

/// org1: relays anonymous mail from the test client (as a partner-facing gateway does);
/// heartbeats every 2 s.
async fn org1(retry_count: u32) -> Setup {
    let s = Setup::node(0, ORG1.0, ORG1.1).await;
    configure(
        &s,
        &[
            &format!("Get-ReceiveConnector 'Default {}' | Add-ADPermission -User '{ANONYMOUS}' -ExtendedRights ms-Exch-SMTP-Accept-Any-Recipient", ORG1.0),
            &format!("Set-TransportConfig -ShadowHeartbeatTimeoutInterval 00:00:02 -ShadowHeartbeatRetryCount {retry_count}"),
        ],
    )
    .await;
    s
}

/// An org2 node on node address `n`: org2.test is an Internal Relay domain sent on to the final
/// server; "From Org1" listens on `port` for org1 with AuthMechanism ExternalAuthoritative, as
/// the article sets it, and Accept-XShadow for `grant`.
async fn org2(n: u8, port: u16, final_addr: SocketAddr, grant: &str) -> Setup {
    let s = Setup::node(n, ORG2.0, ORG2.1).await;
    configure(
        &s,
        &[
            // First start made org2.test Authoritative (the FQDN's domain); org2's mailboxes are
            // behind the final server.
            "Get-AcceptedDomain | Set-AcceptedDomain -DomainType InternalRelay",
            &format!(
                "New-SendConnector -Name 'To Final' -AddressSpaces 'org2.test' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {}",
                final_addr.ip(),
                final_addr.port()
            ),
            &format!("Set-TransportServer {} -TransientFailureRetryInterval 00:00:02", ORG2.0),
            &format!(
                "New-ReceiveConnector -Name '{FROM_ORG1}' -Server {} -Bindings '{}:{port}' -RemoteIPRanges 127.0.0.0/8 -PermissionGroups AnonymousUsers,ExchangeServers -AuthMechanism ExternalAuthoritative -ProtocolLoggingLevel Verbose",
                ORG2.0, s.ip
            ),
            &format!("Get-ReceiveConnector '{FROM_ORG1}' | Add-ADPermission -User '{grant}' -ExtendedRights ms-Exch-SMTP-Accept-XShadow"),
        ],
    )
    .await;
    s
}

/// org1's "To Org2": the article's smart-host connector, to `hosts` on `port`, Send-XShadow
/// granted to `grant`.
async fn to_org2(org1: &Gateway, hosts: &[Ipv4Addr], port: u16, grant: &str) {
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    sh(org1, &format!(
        "New-SendConnector -Name '{TO_ORG2}' -AddressSpaces 'org2.test' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {port} -SourceTransportServers {} -ProtocolLoggingLevel Verbose",
        hosts.join(","), ORG1.0
    )).await;
    sh(org1, &format!("Get-SendConnector '{TO_ORG2}' | Add-ADPermission -User '{grant}' -ExtendedRights ms-Exch-SMTP-Send-XShadow")).await;
}

/// What both nodes hold and why, for a failed wait's message.
async fn state(nodes: &[&Gateway]) -> String {
    let mut out = String::new();
    for gw in nodes {
        out.push_str(&format!(
            "== {}\n{}{}-- send log\n{}\n-- receive log\n{}\n",
            gw.setup.fqdn,
            sh(gw, "Get-Queue").await,
            sh(gw, "Get-Message | Format-List Queue,Status,LastError").await,
            send_log(gw),
            protocol_log(&gw.data_dir(), "SmtpReceive")
        ));
    }
    out
}

/// Waits up to `secs` for `f`; on timeout the panic shows both nodes' queues and logs.
async fn until<F, Fut>(secs: u64, what: &str, nodes: &[&Gateway], mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 10 {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "timed out after {secs} s waiting for: {what}\n{}",
        state(nodes).await
    );
}

/// Waits until the running node has reloaded every change committed so far: a banner set after
/// them shows on a new connection only once a reload read it, and a reload reads everything.
async fn applied(gw: &Gateway, marker: &str) {
    let server = gw.setup.fqdn.split('.').next().unwrap().to_uppercase();
    sh(
        gw,
        &format!("Set-ReceiveConnector 'Default {server}' -Banner '220 {marker}'"),
    )
    .await;
    within(
        30,
        &format!("{marker} applied on {}", gw.setup.fqdn),
        || async {
            let mut c = Raw::connect(gw.smtp()).await;
            let banner = c.reply().await;
            c.send(b"QUIT\r\n").await;
            banner.contains(marker)
        },
    )
    .await;
}

async fn listening(addr: SocketAddr) {
    within(30, &format!("{addr} listening"), || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn the_articles_three_attempts() {
    let final_addr = addr("127.0.0.91", peer_port());
    let mut last = Sink::start(final_addr);
    let port = gateway_port();
    let org1 = org1(12).await.start().await;
    let org2 = org2(1, port, final_addr, ANONYMOUS).await.start().await;
    let primary = SocketAddr::from((org2.setup.ip, port));
    listening(primary).await;

    // Attempt 1: Send-XShadow and Accept-XShadow both for ANONYMOUS LOGON. org1 is anonymous,
    // so it may send XSHADOW; on an ExternalAuthoritative connector org2 sees an Externally
    // Secured session, which lacks Accept-XShadow.
    to_org2(&org1, &[org2.setup.ip], port, ANONYMOUS).await;
    applied(&org1, "attempt 1").await;
    applied(&org2, "attempt 1").await;
    send_to_org2(&org1, "attempt 1");
    until(60, "attempt 1 delivered", &[&org1, &org2], || async {
        final_subjects(&last) == ["attempt 1"]
    })
    .await;
    let log = send_log(&org1);
    assert!(log.contains(">,XSHADOW "), "{log}");
    assert!(log.contains("<,550 5.7.1 Not authorized"), "{log}");
    assert_eq!(shadow_copies(&org1).await, 0);
    let xshadows = log.matches(">,XSHADOW ").count();
    let sessions = log.matches(",+,,").count();

    // Attempt 2: both connectors made again, the rights for Externally Secured Servers. org1's
    // session is still anonymous, so it has no Send-XShadow: no XSHADOW at all.
    sh(
        &org1,
        &format!("Remove-SendConnector '{TO_ORG2}' -Confirm:$false"),
    )
    .await;
    sh(
        &org2,
        &format!("Remove-ReceiveConnector '{FROM_ORG1}' -Confirm:$false"),
    )
    .await;
    sh(&org2, &format!(
        "New-ReceiveConnector -Name '{FROM_ORG1}' -Server {} -Bindings '{}:{port}' -RemoteIPRanges 127.0.0.0/8 -PermissionGroups AnonymousUsers,ExchangeServers -AuthMechanism ExternalAuthoritative -ProtocolLoggingLevel Verbose",
        ORG2.0, org2.setup.ip
    )).await;
    sh(&org2, &format!("Get-ReceiveConnector '{FROM_ORG1}' | Add-ADPermission -User '{EXTERNALLY_SECURED}' -ExtendedRights ms-Exch-SMTP-Accept-XShadow")).await;
    listening(primary).await;
    to_org2(&org1, &[org2.setup.ip], port, EXTERNALLY_SECURED).await;
    applied(&org1, "attempt 2").await;
    applied(&org2, "attempt 2").await;
    send_to_org2(&org1, "attempt 2");
    until(60, "attempt 2 delivered", &[&org1, &org2], || async {
        final_subjects(&last) == ["attempt 1", "attempt 2"]
    })
    .await;
    let log = send_log(&org1);
    assert!(
        log.matches(",+,,").count() > sessions,
        "attempt 2's session is logged"
    );
    assert_eq!(log.matches(">,XSHADOW ").count(), xshadows, "{log}");
    assert_eq!(shadow_copies(&org1).await, 0);

    // Attempt 3: org1 authenticates as Externally Secured. XSHADOW is accepted; with the final
    // server down org2 holds the message and org1 keeps its shadow copy in a Shadow Redundancy
    // queue for huborg2.org2.test, until org2 has delivered it and XQDISCARD says so.
    last.stop();
    sh(
        &org1,
        &format!("Set-SendConnector '{TO_ORG2}' -SmartHostAuthMechanism ExternalAuthoritative"),
    )
    .await;
    // Reference §1.2: the primary keeps a message's XSHADOW= id (and so ever reports it done)
    // only for a session with the organisation-headers right, which Externally Secured Servers
    // lack (§2.2). The article does not show its receive-side commands; this grant is the one
    // the rule needs. Without it org1's copy would wait for a discard that never comes.
    sh(&org2, &format!("Get-ReceiveConnector '{FROM_ORG1}' | Add-ADPermission -User '{EXTERNALLY_SECURED}' -ExtendedRights ms-Exch-Accept-Headers-Organization")).await;
    applied(&org1, "attempt 3").await;
    applied(&org2, "attempt 3").await;
    send_to_org2(&org1, "attempt 3");
    until(60, "a shadow copy on org1", &[&org1, &org2], || async {
        shadow_copies(&org1).await == 1
    })
    .await;
    let queues = sh(
        &org1,
        "Get-Queue | Format-List DeliveryType,NextHopDomain,MessageCount",
    )
    .await;
    assert!(
        queues.contains("ShadowRedundancy") && queues.contains(ORG2.1),
        "{queues}"
    );
    let log = send_log(&org1);
    let after = log
        .split(">,XSHADOW ")
        .nth(xshadows + 1)
        .expect("a new XSHADOW");
    assert!(after.contains("XSHADOW="), "{after}");
    assert_eq!(
        org2.message_count().await,
        1,
        "org2 holds it for the final server"
    );
    last.restart();
    sh(
        &org2,
        "Get-Queue -Filter {Status -eq 'Retry'} | Retry-Queue",
    )
    .await;
    until(
        60,
        "attempt 3 delivered by org2",
        &[&org1, &org2],
        || async { final_subjects(&last).len() == 3 },
    )
    .await;
    until(60, "org1's copy discarded", &[&org1, &org2], || async {
        shadow_copies(&org1).await == 0 && org1.message_count().await == 0
    })
    .await;
    let log = send_log(&org1);
    assert!(log.contains(">,XQDISCARD 50"), "{log}");
    assert_eq!(
        final_subjects(&last),
        ["attempt 1", "attempt 2", "attempt 3"]
    );
}
