//! RFC 5321 §5.1 against a real DNS server: the gateway discards its own MX record and every
//! record of equal or greater preference. Seed 004's backup MX (the customer's MX list names the
//! primary at 10 and this gateway at 20) holds the mail while the primary is down instead of
//! handing it to itself; a domain whose best MX is the gateway gets the loop NDR.

mod common;

use std::net::Ipv4Addr;

use common::dns::{Dns, Zone};
use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;

async fn queue_state(gw: &Gateway, next_hop: &str) -> Option<(String, Option<String>)> {
    sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT status, last_error FROM delivery_queue WHERE next_hop_domain = $1",
    )
    .bind(next_hop)
    .fetch_optional(gw.pool())
    .await
    .unwrap()
}

/// Every delivery attempt's (next hop, remote IP).
async fn attempts(gw: &Gateway) -> Vec<(Option<String>, Option<String>)> {
    sqlx::query_as("SELECT next_hop, remote_ip FROM delivery_attempt ORDER BY id")
        .fetch_all(gw.pool())
        .await
        .unwrap()
}

/// How many messages the gateway received (the tracking log's RECEIVE events): a message that
/// went to the gateway itself would be received again.
fn receives(gw: &Gateway) -> usize {
    let q = hubgate::logs::tracking::TrackingQuery::default();
    hubgate::logs::tracking::search(&gw.data_dir(), &q)
        .unwrap()
        .iter()
        .filter(|e| e.event_id == "RECEIVE")
        .count()
}

/// The gateway listens on `port` too (the send connector's port), so an MX pointing at its
/// address would reach it: without RFC 5321's rule, the message would loop.
fn listen_also_on(s: &Setup, port: u16) -> String {
    format!(
        "Set-ReceiveConnector 'Default HUB1' -Bindings '{}:{}','{}:{port}'",
        s.ip, s.smtp_port, s.ip
    )
}

fn internet_connector(port: u16, dns: &Dns) -> [String; 2] {
    [
        format!(
            "New-SendConnector -Name Internet -Usage Internet -AddressSpaces '*' -DNSRoutingEnabled $true -UseExternalDNSServersEnabled $true -Port {port}"
        ),
        format!(
            "Set-TransportServer HUB1 -ExternalDNSServers '{}' -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01 -MessageRetryInterval 00:00:01",
            dns.addr
        ),
    ]
}

#[tokio::test]
async fn a_backup_mx_holds_the_mail_for_the_primary_and_never_sends_it_to_itself() {
    let port = peer_port();
    let primary_ip: Ipv4Addr = "127.0.0.65".parse().unwrap();
    let mut primary = Sink::down(addr("127.0.0.65", port), SinkOptions::default());
    let s = setup().await;
    // Seed 004: the customer's MX list is its own server (10), then this gateway (20).
    let dns = Dns::start(
        DOMAIN,
        Zone {
            mx: vec![
                ("customer.contoso.test", 10, "primary.contoso.test"),
                ("customer.contoso.test", 20, FQDN),
            ],
            a: vec![("primary.contoso.test", primary_ip), (FQDN, s.ip)],
        },
    )
    .await;
    let [connector, server] = internet_connector(port, &dns);
    configure(
        &s,
        &[
            "New-AcceptedDomain -Name 'Backup email for customer.contoso.test' -DomainName customer.contoso.test -DomainType ExternalRelay",
            &listen_also_on(&s, port),
            &connector,
            &server,
        ],
    )
    .await;
    let gw = s.start().await;
    send(
        &gw,
        &["boss@customer.contoso.test"],
        "while the primary is down",
    );

    within(
        60,
        "the queue in Retry with the primary's connection error, twice",
        || async {
            let retry = matches!(
                queue_state(&gw, "customer.contoso.test").await,
                Some((st, Some(e))) if st == "Retry" && e.contains("421 4.2.1 Unable to connect")
            );
            retry && attempts(&gw).await.len() >= 2
        },
    )
    .await;
    let primary_only = |list: &[(Option<String>, Option<String>)]| {
        list.iter().all(|(hop, ip)| {
            hop.as_deref() == Some("primary.contoso.test")
                && ip.as_deref() == Some(primary_ip.to_string().as_str())
        })
    };
    let tried = attempts(&gw).await;
    assert!(primary_only(&tried), "only the primary is tried: {tried:?}");
    assert_eq!(
        receives(&gw),
        1,
        "the gateway never received its own message"
    );

    primary.restart();
    within(30, "delivered once the primary is back", || async {
        primary.recipients() == vec!["boss@customer.contoso.test".to_string()]
    })
    .await;
    let got = &primary.received()[0];
    let hops = got
        .data
        .lines()
        .filter(|l| l.starts_with("Received:"))
        .count();
    assert_eq!(hops, 1, "one pass through the gateway:\n{}", got.data);
    within(10, "the queue emptied", || async {
        gw.message_count().await == 0
    })
    .await;
    let tried = attempts(&gw).await;
    assert!(
        primary_only(&tried),
        "only the primary was tried: {tried:?}"
    );
    assert_eq!(receives(&gw), 1);
}

#[tokio::test]
async fn a_domain_whose_best_mx_is_the_gateway_gets_the_loop_ndr() {
    const LOOP_NDR: &str =
        "554 5.4.4 SMTPSEND.DNS.MxLoopback; DNS records for this domain are configured in a loop";
    let port = peer_port();
    // An SMTP server that must never hear from the gateway: each of its names is either behind
    // the gateway's own MX record or the gateway's own name.
    let decoy_ip: Ipv4Addr = "127.0.0.66".parse().unwrap();
    let decoy = Sink::start(addr("127.0.0.66", port));
    let s = setup().await;
    let dns = Dns::start(
        DOMAIN,
        Zone {
            mx: vec![
                // The gateway by address only (another name for it), with a worse MX behind it.
                ("byaddress.contoso.test", 10, "alias.contoso.test"),
                ("byaddress.contoso.test", 20, "other.contoso.test"),
                // The gateway by name only: its name resolves elsewhere, the name still decides.
                ("byname.contoso.test", 10, FQDN),
            ],
            a: vec![
                ("alias.contoso.test", s.ip),
                ("other.contoso.test", decoy_ip),
                (FQDN, decoy_ip),
            ],
        },
    )
    .await;
    let [connector, server] = internet_connector(port, &dns);
    configure(&s, &[&listen_also_on(&s, port), &connector, &server]).await;
    let gw = s.start().await;
    // One message each: an NDR quotes its message's headers, which would name both.
    let rcpts = ["a@byaddress.contoso.test", "b@byname.contoso.test"];
    for rcpt in rcpts {
        send(&gw, &[rcpt], "nowhere to go");
    }

    let dir = gw.data_dir();
    for rcpt in rcpts {
        within(30, &format!("the loop NDR for {rcpt}"), || async {
            mailbox(&dir, SENDER)
                .iter()
                .any(|m| m.contains(LOOP_NDR) && m.contains(rcpt))
        })
        .await;
    }
    within(10, "the queue emptied", || async {
        gw.message_count().await == 0
    })
    .await;
    assert!(decoy.received().is_empty(), "{:?}", decoy.recipients());
    assert_eq!(
        receives(&gw),
        2,
        "the gateway never received its own messages"
    );
}
