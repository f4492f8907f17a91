//! Route: the queue manager and the SMTP client against real next hops (aiosmtpd on 127.0.0.x),
//! configured through the management shell as an administrator would.

mod common;

use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;
use hubgate::shell::Shell;

async fn queue_error(gw: &Gateway, next_hop: &str) -> Option<(String, Option<String>)> {
    sqlx::query_as::<_, (String, Option<String>)>(
        "SELECT status, last_error FROM delivery_queue WHERE next_hop_domain = $1",
    )
    .bind(next_hop)
    .fetch_optional(gw.pool())
    .await
    .unwrap()
}

#[tokio::test]
async fn connector_selection_specific_then_cost_then_star_and_disabled_skipped() {
    let port = peer_port();
    let a = Sink::start(addr("127.0.0.21", port));
    let b = Sink::start(addr("127.0.0.22", port));
    let c = Sink::start(addr("127.0.0.23", port));
    let s = setup().await;
    let conn = |name: &str, space: &str, host: &str| {
        format!(
            "New-SendConnector -Name '{name}' -AddressSpaces '{space}' -DNSRoutingEnabled $false -SmartHosts '{host}' -Port {port}"
        )
    };
    let lines = [
        conn("Specific", "sales.contoso.example", "127.0.0.21"),
        conn("Wild", "*.contoso.example", "127.0.0.22"),
        conn("Star", "*", "127.0.0.23"),
        conn("Dear", "fabrikam.example;5", "127.0.0.21"),
        conn("Cheap", "fabrikam.example;2", "127.0.0.22"),
        conn("Off", "northwind.example", "127.0.0.21"),
        "Set-SendConnector Off -Enabled $false".to_string(),
    ];
    configure(&s, &lines.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let gw = s.start().await;
    send(
        &gw,
        &[
            "u1@sales.contoso.example",
            "u2@hr.contoso.example",
            "u3@fabrikam.example",
            "u4@northwind.example",
            "u5@elsewhere.example",
        ],
        "selection",
    );
    within(20, "all five recipients delivered", || async {
        a.recipients().len() + b.recipients().len() + c.recipients().len() == 5
    })
    .await;
    assert_eq!(a.recipients(), vec!["u1@sales.contoso.example"]);
    let mut at_b = b.recipients();
    at_b.sort();
    assert_eq!(at_b, vec!["u2@hr.contoso.example", "u3@fabrikam.example"]);
    let mut at_c = c.recipients();
    at_c.sort();
    assert_eq!(at_c, vec!["u4@northwind.example", "u5@elsewhere.example"]);
    // The message went through unchanged apart from our Received header.
    let got = &b.received()[0];
    assert_eq!(got.mail_from, SENDER);
    assert!(got.data.contains("Subject: selection"), "{}", got.data);
    assert!(got.data.starts_with("Received: from"), "{}", got.data);
    within(10, "delivered messages leave the queue", || async {
        gw.message_count().await == 0
    })
    .await;
    // The tracking log: one RECEIVE, and one SEND per transaction with its recipients together
    // (Wild and Cheap share a smart host but not a queue; Star's queue carries two domains).
    let q = hubgate::logs::tracking::TrackingQuery::default();
    let log = hubgate::logs::tracking::search(&gw.data_dir(), &q).unwrap();
    let receive: Vec<_> = log.iter().filter(|e| e.event_id == "RECEIVE").collect();
    assert_eq!(receive.len(), 1, "{log:?}");
    assert_eq!(receive[0].recipients.len(), 5);
    let sends: Vec<Vec<String>> = log
        .iter()
        .filter(|e| e.event_id == "SEND")
        .map(|e| {
            let mut r = e.recipients.clone();
            r.sort();
            r
        })
        .collect();
    assert_eq!(sends.len(), 4, "{sends:?}");
    assert!(sends.contains(&vec![
        "u4@northwind.example".to_string(),
        "u5@elsewhere.example".to_string()
    ]));
}

#[tokio::test]
async fn smart_host_failover_to_the_second_host() {
    let port = peer_port();
    // Nothing listens on 127.0.0.31: the first smart host is down.
    let second = Sink::start(addr("127.0.0.32", port));
    let s = setup().await;
    configure(
        &s,
        &[&format!(
            "New-SendConnector -Name Pair -AddressSpaces 'pair.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.31','127.0.0.32' -Port {port}"
        )],
    )
    .await;
    let gw = s.start().await;
    send(&gw, &["x@pair.example"], "failover");
    within(20, "delivery through the second smart host", || async {
        second.recipients() == vec!["x@pair.example".to_string()]
    })
    .await;
}

#[tokio::test]
async fn require_tls_refuses_a_host_without_starttls() {
    let port = peer_port();
    let plain = Sink::start(addr("127.0.0.33", port));
    let s = setup().await;
    configure(
        &s,
        &[&format!(
            "New-SendConnector -Name Strict -AddressSpaces 'strict.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.33' -Port {port} -RequireTLS $true"
        )],
    )
    .await;
    let gw = s.start().await;
    send(&gw, &["x@strict.example"], "must be encrypted");
    within(20, "the queue in Retry with 451 5.7.3", || async {
        matches!(queue_error(&gw, "127.0.0.33").await,
            Some((status, Some(e))) if status == "Retry" && e.contains("451 5.7.3 STARTTLS is required to send mail"))
    })
    .await;
    assert!(plain.received().is_empty(), "sent in clear text");
    let (last,): (Option<String>,) = sqlx::query_as("SELECT last_error FROM message_recipient")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert!(last.unwrap().contains("5.7.3"));
}

#[tokio::test]
async fn shared_namespace_internal_relay_then_authoritative() {
    let port = peer_port();
    let other = Sink::start(addr("127.0.0.34", port));
    let s = setup().await;
    configure(
        &s,
        &[
            "New-AcceptedDomain -Name Shared -DomainName shared.example -DomainType InternalRelay",
            "New-Mailbox -Name Alice -PrimarySmtpAddress alice@shared.example",
            &format!(
                "New-SendConnector -Name 'Other system' -AddressSpaces 'shared.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.34' -Port {port}"
            ),
        ],
    )
    .await;
    let mut gw = s.start().await;
    send(
        &gw,
        &["alice@shared.example", "bob@shared.example"],
        "shared",
    );
    let dir = gw.data_dir();
    within(20, "alice local, bob forwarded", || async {
        mailbox(&dir, "alice@shared.example").len() == 1
            && other.recipients() == vec!["bob@shared.example".to_string()]
    })
    .await;
    assert!(mailbox(&dir, "alice@shared.example")[0].contains("Subject: shared"));

    // The same namespace as Authoritative: bob is unknown here, so he gets an NDR (recipient
    // validation at RCPT is off, as on a Hub without Edge recipient filtering).
    configure(
        &gw.setup,
        &["Set-AcceptedDomain Shared -DomainType Authoritative -AddressBookEnabled $false"],
    )
    .await;
    gw.restart().await;
    send(&gw, &["bob@shared.example"], "authoritative now");
    within(20, "the 5.1.1 NDR back to the sender", || async {
        mailbox(&dir, SENDER)
            .iter()
            .any(|m| m.contains("550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"))
    })
    .await;
    assert_eq!(other.recipients().len(), 1, "nothing more forwarded");
}

#[tokio::test]
async fn backup_mx_holds_mail_sends_delay_dsn_then_delivers() {
    let port = peer_port();
    let primary_addr = addr("127.0.0.35", port);
    let s = setup().await;
    configure(
        &s,
        &[
            "New-AcceptedDomain -Name Customer -DomainName customer.example -DomainType ExternalRelay",
            &format!(
                "New-SendConnector -Name 'Customer primary' -AddressSpaces 'customer.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.35' -Port {port}"
            ),
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01 -MessageRetryInterval 00:00:01 -DelayNotificationTimeout 00:00:03",
        ],
    )
    .await;
    let gw = s.start().await;
    send(&gw, &["boss@customer.example"], "while you were down");
    within(
        20,
        "the queue in Retry with the connection error",
        || async {
            matches!(queue_error(&gw, "127.0.0.35").await, Some((st, Some(_))) if st == "Retry")
        },
    )
    .await;
    // What the administrator sees: the queue in Retry, and why.
    let mut shell = Shell::new(gw.pool().clone(), FQDN);
    let queue = shell.run_line("Get-Queue | Format-List").await.unwrap();
    assert!(queue.contains("127.0.0.35"), "{queue}");
    assert!(queue.contains("Retry"), "{queue}");
    assert!(queue.contains("421 4.2.1 Unable to connect"), "{queue}");
    let msg = shell.run_line("Get-Message | Format-List").await.unwrap();
    assert!(msg.contains("while you were down"), "{msg}");
    assert!(msg.contains("421 4.2.1 Unable to connect"), "{msg}");
    let dir = gw.data_dir();
    within(20, "the delay DSN", || async {
        mailbox(&dir, SENDER)
            .iter()
            .any(|m| m.contains("Delivery delayed") || m.contains("Delivery is delayed"))
    })
    .await;
    let (history,): (i64,) = sqlx::query_as("SELECT count(*) FROM delivery_attempt")
        .fetch_one(gw.pool())
        .await
        .unwrap();
    assert!(history >= 1, "attempts are kept");
    let primary = Sink::start(primary_addr);
    within(30, "delivered once the primary is back", || async {
        primary.recipients() == vec!["boss@customer.example".to_string()]
    })
    .await;
    within(10, "the queue emptied", || async {
        gw.message_count().await == 0
    })
    .await;
}

#[tokio::test]
async fn backup_mx_expiry_ndrs_but_an_override_keeps_one_domain() {
    let port = peer_port();
    let s = setup().await;
    configure(
        &s,
        &[
            "New-AcceptedDomain -Name Drop -DomainName drop.example -DomainType ExternalRelay",
            "New-AcceptedDomain -Name Keep -DomainName keep.example -DomainType ExternalRelay -MessageExpirationTimeout 5.00:00:00",
            &format!(
                "New-SendConnector -Name Primaries -AddressSpaces 'drop.example','keep.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.36' -Port {port}"
            ),
            "Set-TransportServer HUB1 -MessageExpirationTimeout 00:00:05 -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01",
        ],
    )
    .await;
    let gw = s.start().await;
    send(&gw, &["a@drop.example"], "drops");
    send(&gw, &["b@keep.example"], "keeps");
    let dir = gw.data_dir();
    within(30, "the expiry NDR for drop.example", || async {
        mailbox(&dir, SENDER).iter().any(|m| {
            m.contains("550 4.4.7 QUEUE.Expired; message expired") && m.contains("a@drop.example")
        })
    })
    .await;
    // The NDR is in the mailbox before its own row is gone (the file first, then the outcome).
    let waiting = || async {
        sqlx::query_as::<_, (String,)>(
            "SELECT address FROM message_recipient WHERE status IN ('Ready', 'Retry')",
        )
        .fetch_all(gw.pool())
        .await
        .unwrap()
    };
    within(10, "only keep.example's recipient waiting", || async {
        waiting().await.len() == 1
    })
    .await;
    assert_eq!(waiting().await, vec![("b@keep.example".to_string(),)]);
    assert!(
        !mailbox(&dir, SENDER)
            .iter()
            .any(|m| m.contains("b@keep.example") && m.contains("QUEUE.Expired")),
        "keep.example's mail expired despite its override"
    );
}

#[tokio::test]
async fn killed_mid_delivery_every_message_arrives_after_restart() {
    let port = peer_port();
    let sink_addr = addr("127.0.0.37", port);
    let s = setup().await;
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Sink -AddressSpaces 'sink.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.37' -Port {port} -SmtpMaxMessagesPerConnection 5"
            ),
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01 -MaxPerDomainOutboundConnections 1",
        ],
    )
    .await;
    let mut gw = s.start().await;
    // The next hop is down while 60 messages queue up.
    const N: usize = 60;
    let server = gw.smtp();
    let script = r#"
import smtplib, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with smtplib.SMTP(host, port, timeout=30) as s:
    for i in range(n):
        s.sendmail("sender@contoso.test", ["r@sink.example"],
                   f"Subject: m{i}\r\nMessage-ID: <m{i}@test>\r\n\r\nbody {i}\r\n")
print("sent")
"#;
    let (ok, out) = python(
        script,
        &[
            &server.ip().to_string(),
            &server.port().to_string(),
            &N.to_string(),
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(gw.message_count().await, N as i64);
    let sink = Sink::start(sink_addr);
    within(30, "deliveries under way", || async {
        !sink.received().is_empty()
    })
    .await;
    gw.kill();
    let before = sink.received().len();
    gw.spawn().await;
    within(60, "every message delivered after the restart", || async {
        let mut subjects: Vec<String> = sink
            .received()
            .iter()
            .filter_map(|r| {
                r.data
                    .lines()
                    .find(|l| l.starts_with("Subject: "))
                    .map(str::to_string)
            })
            .collect();
        subjects.sort();
        subjects.dedup();
        subjects.len() == N
    })
    .await;
    within(10, "the queue emptied", || async {
        gw.message_count().await == 0
    })
    .await;
    eprintln!(
        "{before} of {N} delivered before the kill; {} deliveries in all",
        sink.received().len()
    );
}

#[tokio::test]
async fn mx_preference_fallback_implicit_mx_and_nonexistent_domain() {
    use common::dns::{Dns, Zone};
    let port = peer_port();
    let mut mx1 = Sink::start(addr("127.0.0.41", port));
    let mx2 = Sink::start(addr("127.0.0.42", port));
    let implicit = Sink::start(addr("127.0.0.43", port));
    let dns = Dns::start(
        "zone.example",
        Zone {
            mx: vec![
                ("hasmx.zone.example", 20, "mx2.zone.example"),
                ("hasmx.zone.example", 10, "mx1.zone.example"),
            ],
            a: vec![
                ("mx1.zone.example", "127.0.0.41".parse().unwrap()),
                ("mx2.zone.example", "127.0.0.42".parse().unwrap()),
                ("aonly.zone.example", "127.0.0.43".parse().unwrap()),
            ],
        },
    )
    .await;
    let s = setup().await;
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Internet -Usage Internet -AddressSpaces '*' -DNSRoutingEnabled $true -UseExternalDNSServersEnabled $true -Port {port}"
            ),
            &format!("Set-TransportServer HUB1 -ExternalDNSServers '{}' -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01", dns.addr),
        ],
    )
    .await;
    let gw = s.start().await;
    send(&gw, &["first@hasmx.zone.example"], "preference");
    within(20, "the preferred MX (10) took it", || async {
        mx1.recipients() == vec!["first@hasmx.zone.example".to_string()]
    })
    .await;
    assert!(mx2.received().is_empty());

    mx1.stop();
    send(&gw, &["second@hasmx.zone.example"], "fallback");
    within(20, "the second MX (20) took it", || async {
        mx2.recipients() == vec!["second@hasmx.zone.example".to_string()]
    })
    .await;

    send(&gw, &["third@aonly.zone.example"], "implicit");
    within(20, "the A record took it (implicit MX)", || async {
        implicit.recipients() == vec!["third@aonly.zone.example".to_string()]
    })
    .await;

    send(&gw, &["fourth@gone.zone.example"], "nowhere");
    let dir = gw.data_dir();
    within(20, "the NDR for a nonexistent domain", || async {
        mailbox(&dir, SENDER).iter().any(|m| {
            m.contains("554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain")
                && m.contains("fourth@gone.zone.example")
        })
    })
    .await;
}

#[tokio::test]
async fn basic_auth_require_tls_checks_the_smart_host_certificate() {
    use common::dns::{Dns, Zone};
    let port = peer_port();
    let certs = tempfile::tempdir().unwrap();
    let (ca, leaves) = private_ca(&["good.hosts.example", "someone-else.hosts.example"]);
    let mut paths = Vec::new();
    for (i, (cert, key)) in leaves.iter().enumerate() {
        let c = certs.path().join(format!("{i}.crt"));
        let k = certs.path().join(format!("{i}.key"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        paths.push((c, k));
    }
    let opts = |i: usize| SinkOptions {
        tls: Some(paths[i].clone()),
        require_tls: true,
        auth: Some("relay:s3cret".into()),
        ..Default::default()
    };
    let good = Sink::with(addr("127.0.0.51", port), opts(0));
    let bad = Sink::with(addr("127.0.0.52", port), opts(1));
    let dns = Dns::start(
        "hosts.example",
        Zone {
            mx: vec![],
            a: vec![
                ("good.hosts.example", "127.0.0.51".parse().unwrap()),
                ("bad.hosts.example", "127.0.0.52".parse().unwrap()),
            ],
        },
    )
    .await;
    let s = setup().await;
    // The administrator adds the partner's private CA to hubgate's trusted certificates.
    let trusted = s.data_dir.path().join("certs").join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::write(trusted.join("partner-ca.pem"), &ca).unwrap();
    let conn = |name: &str, space: &str, host: &str| {
        format!(
            "New-SendConnector -Name {name} -AddressSpaces '{space}' -DNSRoutingEnabled $false -SmartHosts '{host}' -Port {port} -SmartHostAuthMechanism BasicAuthRequireTLS -AuthenticationCredential $cred -UseExternalDNSServersEnabled $true"
        )
    };
    // The credential is sealed with the organisation key the gateway will find there.
    let mut shell = Shell::new(s.pool.clone(), FQDN).with_data_dir(s.data_dir.path().to_path_buf());
    shell
        .run_line(&format!(
            "$cred = Get-Credential -UserName relay -Password s3cret; {}; {}; Set-TransportServer HUB1 -ExternalDNSServers '{}' -TransientFailureRetryInterval 00:00:01",
            conn("Good", "good-partner.example", "good.hosts.example"),
            conn("Bad", "bad-partner.example", "bad.hosts.example"),
            dns.addr
        ))
        .await
        .unwrap();
    let gw = s.start().await;
    send(
        &gw,
        &["x@good-partner.example", "y@bad-partner.example"],
        "tls",
    );
    within(20, "delivered over validated TLS with AUTH", || async {
        good.recipients() == vec!["x@good-partner.example".to_string()]
    })
    .await;
    let got = &good.received()[0];
    assert!(got.tls, "not over TLS");
    assert_eq!(got.auth.as_deref(), Some("relay"));
    within(20, "the mismatching certificate refused", || async {
        matches!(queue_error(&gw, "bad.hosts.example").await,
            Some((st, Some(e))) if st == "Retry" && e.to_lowercase().contains("certificate"))
    })
    .await;
    assert!(bad.received().is_empty());
}

#[tokio::test]
async fn mail_contact_forwards_to_its_external_address() {
    let port = peer_port();
    let outside = Sink::start(addr("127.0.0.38", port));
    let s = setup().await;
    configure(
        &s,
        &[
            "New-MailContact -Name 'Carol Outside' -ExternalEmailAddress 'SMTP:carol@outside.example' -EmailAddresses 'SMTP:carol@contoso.test'",
            &format!(
                "New-SendConnector -Name Outside -AddressSpaces 'outside.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.38' -Port {port}"
            ),
        ],
    )
    .await;
    let gw = s.start().await;
    send(&gw, &["carol@contoso.test"], "for carol");
    within(
        20,
        "forwarded to the contact's external address",
        || async { outside.recipients() == vec!["carol@outside.example".to_string()] },
    )
    .await;
    // The envelope changes, the message does not.
    assert!(
        outside.received()[0]
            .data
            .contains("To: carol@contoso.test")
    );
}

/// The SMTP agent takes its queue's next message through its lane on the open connection, up
/// to the connector's SmtpMaxMessagesPerConnection, then opens a new one.
#[tokio::test]
async fn a_connection_carries_up_to_smtp_max_messages_per_connection() {
    let port = peer_port();
    let sink = Sink::with(
        addr("127.0.0.38", port),
        SinkOptions {
            // A slow next hop: the queue fills while the first message is in DATA.
            delay: Some(0.2),
            ..Default::default()
        },
    );
    let s = setup().await;
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Three -AddressSpaces 'three.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.38' -Port {port} -SmtpMaxMessagesPerConnection 3"
            ),
            "Set-TransportServer HUB1 -MaxPerDomainOutboundConnections 1",
        ],
    )
    .await;
    let gw = s.start().await;
    let server = gw.smtp();
    const N: usize = 10;
    let script = r#"
import smtplib, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with smtplib.SMTP(host, port, timeout=30) as s:
    for i in range(n):
        s.sendmail("sender@contoso.test", ["r@three.example"], f"Subject: t{i}\r\n\r\nbody\r\n")
"#;
    let (ok, out) = python(
        script,
        &[
            &server.ip().to_string(),
            &server.port().to_string(),
            &N.to_string(),
        ],
    );
    assert!(ok, "{out}");
    within(60, "every message delivered", || async {
        sink.received().len() == N
    })
    .await;
    let mut per_connection: std::collections::HashMap<u16, usize> = Default::default();
    for r in sink.received() {
        *per_connection.entry(r.peer.1).or_default() += 1;
    }
    let most = per_connection.values().copied().max().unwrap_or(0);
    assert!(
        most <= 3,
        "a connection carried {most} messages: {per_connection:?}"
    );
    assert!(
        most > 1,
        "no connection carried more than one message: {per_connection:?}"
    );
}
