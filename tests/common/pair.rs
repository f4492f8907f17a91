//! Two organisations' gateways for the shadow redundancy tests (../shared/seeds/000): org1's
//! HUBORG1 hands mail for org2.test to org2's node(s), which relay it to a final server. Each
//! node has its own database, spool and 127.x address.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use hubgate::shell::Shell;

use super::mail::*;
use super::peers::Sink;
use super::*;

pub const ORG1: (&str, &str) = ("HUBORG1", "huborg1.org1.test");
pub const ORG2: (&str, &str) = ("HUBORG2", "huborg2.org2.test");
pub const FROM_ORG1: &str = "From Org1";
pub const TO_ORG2: &str = "To Org2";
pub const ANONYMOUS: &str = "NT AUTHORITY\\ANONYMOUS LOGON";
pub const EXTERNALLY_SECURED: &str = "MS Exchange\\Externally Secured Servers";

pub async fn sh(gw: &Gateway, line: &str) -> String {
    Shell::new(gw.pool().clone(), &gw.setup.fqdn)
        .with_data_dir(gw.data_dir())
        .run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{}: {line}: {e}", gw.setup.fqdn))
}

/// Retries the node's queues in Retry now. A queue may leave Retry by itself between the
/// listing and the command (its retry time came): that refusal is fine, the queue is trying.
pub async fn retry_now(gw: &Gateway) {
    let line = "Get-Queue -Filter {Status -eq 'Retry'} | Retry-Queue";
    let result = Shell::new(gw.pool().clone(), &gw.setup.fqdn)
        .with_data_dir(gw.data_dir())
        .run_line(line)
        .await;
    if let Err(e) = result
        && !e.to_string().contains("isn't in Retry status")
    {
        panic!("{}: {line}: {e}", gw.setup.fqdn);
    }
}

/// The node's SMTP Send or Receive protocol logs, all files in order.
pub fn protocol_log(data_dir: &Path, kind: &str) -> String {
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

pub fn send_log(gw: &Gateway) -> String {
    protocol_log(&gw.data_dir(), "SmtpSend")
}

/// A message from org1's user to an org2 user (whose mailbox is behind the final server; the
/// first start made org2's administrator a mailbox on org2 itself), through org1.
pub fn send_to_org2(org1: &Gateway, subject: &str) {
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
pub async fn shadow_copies(gw: &Gateway) -> i64 {
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
pub fn final_subjects(sink: &Sink) -> Vec<String> {
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
pub async fn org1(retry_count: u32) -> Setup {
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

/// The rights "From Org1" grants an Externally Secured org1 for shadowing: Accept-XShadow, and
/// the organisation-headers right without which a primary ignores XSHADOW= (reference §1.2).
pub const SHADOWING: &[(&str, &str)] = &[
    (EXTERNALLY_SECURED, "ms-Exch-SMTP-Accept-XShadow"),
    (EXTERNALLY_SECURED, "ms-Exch-Accept-Headers-Organization"),
];

/// An org2 node `name` on node address `n`: org2.test is an Internal Relay domain sent on to
/// the final server; "From Org1" listens on `port` for org1 with AuthMechanism
/// ExternalAuthoritative, as the article sets it, and the `grants` (user, right).
pub async fn org2(
    n: u8,
    name: (&str, &str),
    port: u16,
    final_addr: SocketAddr,
    grants: &[(&str, &str)],
) -> Setup {
    let s = Setup::node(n, name.0, name.1).await;
    let mut lines = vec![
        // First start made org2.test Authoritative (the FQDN's domain); org2's mailboxes are
        // behind the final server.
        "Get-AcceptedDomain | Set-AcceptedDomain -DomainType InternalRelay".to_string(),
        format!(
            "New-SendConnector -Name 'To Final' -AddressSpaces 'org2.test' -DNSRoutingEnabled $false -SmartHosts '{}' -Port {}",
            final_addr.ip(),
            final_addr.port()
        ),
        format!(
            "Set-TransportServer {} -TransientFailureRetryInterval 00:00:02",
            name.0
        ),
        from_org1(name.0, s.ip, port),
    ];
    for (user, right) in grants {
        lines.push(format!(
            "Get-ReceiveConnector '{FROM_ORG1}' | Add-ADPermission -User '{user}' -ExtendedRights {right}"
        ));
    }
    configure(&s, &lines.iter().map(String::as_str).collect::<Vec<_>>()).await;
    s
}

/// The article's receive connector on org2's `server`.
pub fn from_org1(server: &str, ip: Ipv4Addr, port: u16) -> String {
    format!(
        "New-ReceiveConnector -Name '{FROM_ORG1}' -Server {server} -Bindings '{ip}:{port}' -RemoteIPRanges 127.0.0.0/8 -PermissionGroups AnonymousUsers,ExchangeServers -AuthMechanism ExternalAuthoritative -ProtocolLoggingLevel Verbose"
    )
}

/// org1's "To Org2": the article's smart-host connector, to `hosts` on `port`, Send-XShadow
/// granted to `grant`.
pub async fn to_org2(org1: &Gateway, hosts: &[Ipv4Addr], port: u16, grant: &str) {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("'{h}'")).collect();
    sh(org1, &format!(
        "New-SendConnector -Name '{TO_ORG2}' -AddressSpaces 'org2.test' -DNSRoutingEnabled $false -SmartHosts {} -Port {port} -SourceTransportServers {} -ProtocolLoggingLevel Verbose",
        hosts.join(","), ORG1.0
    )).await;
    sh(org1, &format!("Get-SendConnector '{TO_ORG2}' | Add-ADPermission -User '{grant}' -ExtendedRights ms-Exch-SMTP-Send-XShadow")).await;
}

/// What both nodes hold and why, for a failed wait's message.
pub async fn state(nodes: &[&Gateway]) -> String {
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
pub async fn until<F, Fut>(secs: u64, what: &str, nodes: &[&Gateway], f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if holds_within(secs, f).await {
        return;
    }
    panic!(
        "timed out after {secs} s waiting for: {what}\n{}",
        state(nodes).await
    );
}

/// Waits until the running node has reloaded every change committed so far: a banner set after
/// them shows on a new connection only once a reload read it, and a reload reads everything.
pub async fn applied(gw: &Gateway, marker: &str) {
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

pub async fn listening(addr: SocketAddr) {
    within(30, &format!("{addr} listening"), || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
}

/// org1 running, its "To Org2" to `hosts` on `port` as the article's third attempt has it:
/// authenticated as Externally Secured, which holds Send-XShadow.
pub async fn org1_shadowing(retry_count: u32, hosts: &[Ipv4Addr], port: u16) -> Gateway {
    let org1 = org1(retry_count).await.start().await;
    to_org2(&org1, hosts, port, EXTERNALLY_SECURED).await;
    sh(
        &org1,
        &format!("Set-SendConnector '{TO_ORG2}' -SmartHostAuthMechanism ExternalAuthoritative"),
    )
    .await;
    applied(&org1, "shadowing").await;
    org1
}

/// The failed heartbeats org1 has counted for its primaries.
pub async fn heartbeat_failures(org1: &Gateway) -> i64 {
    let (n,): (Option<i64>,) =
        sqlx::query_as("SELECT max(heartbeat_failures)::int8 FROM shadow_primary")
            .fetch_one(org1.pool())
            .await
            .unwrap();
    n.unwrap_or(0)
}

/// Whether a line of the node's message tracking log holds every one of `what`.
pub fn tracking_has(gw: &Gateway, what: &[&str]) -> bool {
    let dir = gw.data_dir().join("logs").join("MessageTracking");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return false;
    };
    entries.filter_map(|e| e.ok()).any(|e| {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        text.lines().any(|l| what.iter().all(|w| l.contains(w)))
    })
}

/// How many of the final server's messages are second copies of one it already had.
pub fn duplicates(subjects: &[String]) -> usize {
    let mut distinct = subjects.to_vec();
    distinct.dedup();
    subjects.len() - distinct.len()
}
