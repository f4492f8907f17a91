//! No backscatter, the SPF rule, against the real binary, a real DNS server (hickory, in
//! process) and a real next hop (aiosmtpd): the NDR for a message whose sender's domain has a
//! `-all` SPF record that fails for the client's address is not sent, and a tracking event says
//! why; with `~all`, or from an address the record allows, the NDR goes as before.

mod common;

use common::dns::{Dns, Zone};
use common::mail::*;
use common::pair::tracking_has;
use common::peers::{Sink, SinkOptions};
use common::*;

const REFUSED: &str = "gone@customer.example";

/// The account a test submits with, allowed to send as any sender.
const ACCOUNTS: &[(&str, &str)] = &[("Relay", "Relay-pw-1")];

/// A gateway relaying customer.example to a next hop that refuses REFUSED with 550, and
/// *.spf.example (where NDRs go) to the same sink; SPF looked up in the test's DNS.
async fn backup_mx(sink_ip: &str) -> (Gateway, Sink, Dns) {
    backup_mx_with(sink_ip, &[]).await
}

/// `backup_mx`, with these shell lines run before it starts.
async fn backup_mx_with(sink_ip: &str, more: &[&str]) -> (Gateway, Sink, Dns) {
    let dns = Dns::start_with_txt(
        "spf.example",
        Zone::default(),
        &[
            ("hard.spf.example", "v=spf1 ip4:192.0.2.1 -all"),
            ("soft.spf.example", "v=spf1 ip4:192.0.2.1 ~all"),
            (
                "pass.spf.example",
                "v=spf1 ip4:192.0.2.1 ip4:127.0.0.0/8 -all",
            ),
        ],
    )
    .await;
    let port = peer_port();
    let sink = Sink::with(
        addr(sink_ip, port),
        SinkOptions {
            refuse: vec![REFUSED.into()],
            ..SinkOptions::default()
        },
    );
    let s = setup().await;
    configure(
        &s,
        &[
            "New-AcceptedDomain -Name Customer -DomainName customer.example -DomainType ExternalRelay",
            &format!(
                "New-SendConnector -Name Customer -AddressSpaces 'customer.example','*.spf.example' -DNSRoutingEnabled $false -SmartHosts '{sink_ip}' -Port {port}"
            ),
            &format!("Set-TransportServer HUB1 -ExternalDNSServers '{}'", dns.addr),
        ],
    )
    .await;
    configure(&s, more).await;
    for (name, password) in ACCOUNTS {
        hubgate::org::Account::create(&s.pool, name, password, &[])
            .await
            .unwrap();
    }
    (s.start().await, sink, dns)
}

/// The one message to REFUSED from `from`, accepted.
fn send_refused(gw: &Gateway, from: &str, subject: &str) {
    send_from(gw.smtp(), from, REFUSED, subject);
}

#[tokio::test]
async fn no_ndr_to_a_sender_whose_spf_fails_hard() {
    let (gw, sink, _dns) = backup_mx("127.0.0.110").await;
    send_refused(&gw, "forged@hard.spf.example", "forged");

    let g = &gw;
    within(60, "the Sender Id Agent's AGENTINFO", || async move {
        tracking_has(
            g,
            &[
                "AGENTINFO",
                "Sender Id Agent",
                "SPF of hard.spf.example fails for",
                REFUSED,
            ],
        )
    })
    .await;
    // The recipient was failed without a DSN: nothing queued for the forged sender, nothing
    // sent to its domain.
    assert!(!tracking_has(&gw, &[",DSN,DSN,"]));
    let nulls: i64 = sqlx::query_scalar("SELECT count(*) FROM message WHERE from_address = ''")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert_eq!(nulls, 0);
    assert!(
        sink.received()
            .iter()
            .all(|m| !m.rcpt_tos.iter().any(|r| r.ends_with("spf.example"))),
        "{:?}",
        sink.recipients()
    );
}

#[tokio::test]
async fn the_ndr_goes_with_softfail_or_a_passing_address() {
    let (gw, sink, _dns) = backup_mx("127.0.0.111").await;
    send_refused(&gw, "someone@soft.spf.example", "softfail");
    send_refused(&gw, "someone@pass.spf.example", "pass");

    within_now(60, "both NDRs at the sink", || {
        let got = sink.recipients();
        got.iter().any(|r| r == "someone@soft.spf.example")
            && got.iter().any(|r| r == "someone@pass.spf.example")
    })
    .await;
    let ndrs: Vec<_> = sink
        .received()
        .into_iter()
        .filter(|m| m.rcpt_tos.iter().any(|r| r.ends_with("spf.example")))
        .collect();
    assert_eq!(ndrs.len(), 2, "{ndrs:?}");
    assert!(ndrs.iter().all(|m| m.mail_from == "<>"), "{ndrs:?}");
    assert_eq!(
        gw_dsn_events(&gw),
        2,
        "one tracking DSN event per NDR queued"
    );
    assert!(!tracking_has(&gw, &["AGENTINFO", "Sender Id Agent"]));
}

/// The tracking log's DSN events (an NDR queued).
fn gw_dsn_events(gw: &Gateway) -> usize {
    let dir = gw.data_dir().join("logs").join("MessageTracking");
    std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .map(|t| t.lines().filter(|l| l.contains(",DSN,DSN,")).count())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_message_from_an_authenticated_session_keeps_its_ndr() {
    let (gw, sink, _dns) = backup_mx_with(
        "127.0.0.112",
        &["Get-ReceiveConnector 'Default HUB1' | Add-ADPermission -User Relay -ExtendedRights ms-Exch-SMTP-Accept-Any-Sender"],
    )
    .await;
    sqlx::query("UPDATE receive_connector SET auth_mechanism = '{Tls,BasicAuth}'")
        .execute(gw.pool())
        .await
        .unwrap();
    let g = &gw;
    eventually("AUTH offered", || async move {
        let mut c = Raw::connect(g.smtp()).await;
        c.reply().await;
        let ehlo = c.cmd("EHLO client.example").await;
        c.cmd("QUIT").await;
        ehlo.contains("AUTH")
    })
    .await;
    let server = gw.smtp().to_string();
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--auth",
        "PLAIN",
        "--auth-user",
        "Relay",
        "--auth-password",
        "Relay-pw-1",
        "--from",
        "someone@hard.spf.example",
        "--to",
        REFUSED,
        "--header",
        "Subject: authenticated",
    ]);
    assert!(ok, "swaks failed: {out}");
    within_now(60, "the NDR at the sink", || {
        sink.recipients()
            .iter()
            .any(|r| r == "someone@hard.spf.example")
    })
    .await;
    assert!(!tracking_has(&gw, &["AGENTINFO", "Sender Id Agent"]));
}
