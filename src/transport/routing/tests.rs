use super::*;
use crate::org::DomainType;

const SERVER: &str = "HUB01";
const FQDN: &str = "hub01.contoso.com";
const MB: u64 = 1024 * 1024;

fn conn(name: &str, spaces: &[&str]) -> SendConnector {
    SendConnector::new(name, spaces, SERVER)
}

fn smart(name: &str, spaces: &[&str], hosts: &[&str]) -> SendConnector {
    let mut c = conn(name, spaces);
    c.dns_routing_enabled = false;
    c.smart_hosts = hosts.iter().map(|h| h.to_string()).collect();
    c
}

fn with<F: FnOnce(&mut SendConnector)>(mut c: SendConnector, f: F) -> SendConnector {
    f(&mut c);
    c
}

fn routed(d: &Decision) -> &str {
    match d {
        Decision::Route(r) => &r.connector_name,
        Decision::Unroutable => "<unroutable>",
        Decision::TooLarge { .. } => "<too large>",
    }
}

/// (case, connectors, recipient domain, size, expected connector or outcome)
#[test]
fn selection_rules() {
    let cases: Vec<(&str, Vec<SendConnector>, &str, u64, &str)> = vec![
        (
            "seed 002: the * connector is processed last",
            vec![conn("Internet", &["*"]), conn("Partner", &["fabrikam.com"])],
            "fabrikam.com",
            1000,
            "Partner",
        ),
        (
            "* catches what nothing else matches",
            vec![conn("Internet", &["*"]), conn("Partner", &["fabrikam.com"])],
            "example.org",
            1000,
            "Internet",
        ),
        (
            "seed 004: cost 1 beats cost 2 at equal specificity",
            vec![
                conn("Expensive", &["SMTP:cryer.co.uk;2"]),
                conn("Backup", &["cryer.co.uk;1"]),
            ],
            "cryer.co.uk",
            1000,
            "Backup",
        ),
        (
            "seed 004: the domain connector beats the * connector whatever the cost",
            vec![
                conn("Internet", &["*;1"]),
                conn("Send connector for cryer.co.uk", &["cryer.co.uk;100"]),
            ],
            "cryer.co.uk",
            1000,
            "Send connector for cryer.co.uk",
        ),
        (
            "equal cost: alphanumerically lowest name",
            vec![
                conn("Zeta", &["contoso.com"]),
                conn("alpha", &["contoso.com"]),
            ],
            "contoso.com",
            1000,
            "alpha",
        ),
        (
            "seed 002: a disabled connector is skipped",
            vec![
                with(conn("Partner", &["fabrikam.com"]), |c| c.enabled = false),
                conn("Internet", &["*;10"]),
            ],
            "fabrikam.com",
            1000,
            "Internet",
        ),
        (
            "exact beats *.domain beats *",
            vec![
                conn("Any", &["*"]),
                conn("Wild", &["*.contoso.com"]),
                conn("Exact", &["marketing.contoso.com"]),
            ],
            "marketing.contoso.com",
            1000,
            "Exact",
        ),
        (
            "exact and *. of the same domain: exact wins even at higher cost",
            vec![
                conn("Wild", &["*.contoso.com;1"]),
                conn("Exact", &["contoso.com;50"]),
            ],
            "contoso.com",
            1000,
            "Exact",
        ),
        (
            "*.domain covers the domain itself",
            vec![conn("Wild", &["*.contoso.com"])],
            "contoso.com",
            1000,
            "Wild",
        ),
        (
            "*.domain covers deep subdomains",
            vec![conn("Wild", &["*.contoso.com"]), conn("Any", &["*"])],
            "a.b.contoso.com",
            1000,
            "Wild",
        ),
        (
            "*.domain does not cover a domain that only ends in the same letters",
            vec![conn("Wild", &["*.contoso.com"]), conn("Any", &["*"])],
            "notcontoso.com",
            1000,
            "Any",
        ),
        (
            "an exact space does not cover subdomains",
            vec![conn("Exact", &["contoso.com"])],
            "sales.contoso.com",
            1000,
            "<unroutable>",
        ),
        (
            "the longer wildcard is more specific",
            vec![
                conn("Short", &["*.contoso.com"]),
                conn("Long", &["*.sales.contoso.com;9"]),
            ],
            "eu.sales.contoso.com",
            1000,
            "Long",
        ),
        (
            "domain matching ignores case and a trailing dot",
            vec![conn("Partner", &["Fabrikam.COM"]), conn("Any", &["*"])],
            "FABRIKAM.com.",
            1000,
            "Partner",
        ),
        (
            "non-SMTP address spaces never match",
            vec![conn("X400", &["X400:c=US;a= ;p=Contoso;1"])],
            "contoso.com",
            1000,
            "<unroutable>",
        ),
        (
            "a connector's best space counts (more specific of its own spaces)",
            vec![
                conn("Multi", &["*;1", "fabrikam.com;5"]),
                conn("Other", &["fabrikam.com;3"]),
            ],
            "fabrikam.com",
            1000,
            "Other",
        ),
        (
            "no connector: unroutable",
            vec![conn("Partner", &["fabrikam.com"])],
            "example.org",
            1000,
            "<unroutable>",
        ),
        (
            "no connectors at all: unroutable",
            vec![],
            "example.org",
            1000,
            "<unroutable>",
        ),
        (
            "source server: another server's connector is not usable here",
            vec![
                with(conn("Remote", &["fabrikam.com"]), |c| {
                    c.source_transport_servers = vec!["HUB02".into()]
                }),
                conn("Internet", &["*"]),
            ],
            "fabrikam.com",
            1000,
            "Internet",
        ),
        (
            "source server: listed by FQDN, any case",
            vec![with(conn("Partner", &["fabrikam.com"]), |c| {
                c.source_transport_servers = vec!["HUB02".into(), "Hub01.Contoso.COM".into()]
            })],
            "fabrikam.com",
            1000,
            "Partner",
        ),
        (
            "source server: listed by name, any case",
            vec![with(conn("Partner", &["fabrikam.com"]), |c| {
                c.source_transport_servers = vec!["hub01".into()]
            })],
            "fabrikam.com",
            1000,
            "Partner",
        ),
        (
            "source server: an empty list means any server",
            vec![with(conn("Partner", &["fabrikam.com"]), |c| {
                c.source_transport_servers = vec![]
            })],
            "fabrikam.com",
            1000,
            "Partner",
        ),
        (
            "seed 002: a scoped connector of another server is not usable here",
            vec![
                with(conn("Scoped", &["fabrikam.com"]), |c| {
                    c.is_scoped_connector = true;
                    c.source_transport_servers = vec!["HUB02".into()];
                }),
                conn("Internet", &["*"]),
            ],
            "fabrikam.com",
            1000,
            "Internet",
        ),
        (
            "seed 002: a scoped connector of this server is usable",
            vec![
                with(conn("Scoped", &["fabrikam.com"]), |c| {
                    c.is_scoped_connector = true
                }),
                conn("Internet", &["*"]),
            ],
            "fabrikam.com",
            1000,
            "Scoped",
        ),
        (
            "size: a too-small specific connector falls back to a bigger one",
            vec![
                with(conn("Small", &["fabrikam.com"]), |c| {
                    c.max_message_size = Some(MB as i64)
                }),
                with(conn("Internet", &["*"]), |c| c.max_message_size = None),
            ],
            "fabrikam.com",
            2 * MB,
            "Internet",
        ),
        (
            "size: exactly MaxMessageSize fits",
            vec![with(conn("Small", &["fabrikam.com"]), |c| {
                c.max_message_size = Some(MB as i64)
            })],
            "fabrikam.com",
            MB,
            "Small",
        ),
        (
            "size: None is unlimited",
            vec![with(conn("Big", &["*"]), |c| c.max_message_size = None)],
            "fabrikam.com",
            u64::MAX,
            "Big",
        ),
        (
            "size: only size excluded the matches",
            vec![
                with(conn("Small", &["fabrikam.com"]), |c| {
                    c.max_message_size = Some(MB as i64)
                }),
                conn("Other", &["example.org"]),
            ],
            "fabrikam.com",
            MB + 1,
            "<too large>",
        ),
        (
            "size: a disabled big connector does not turn TooLarge into a route",
            vec![
                with(conn("Small", &["*"]), |c| c.max_message_size = Some(10)),
                with(conn("Big", &["*"]), |c| {
                    c.max_message_size = None;
                    c.enabled = false;
                }),
            ],
            "fabrikam.com",
            11,
            "<too large>",
        ),
    ];
    for (case, connectors, domain, size, want) in cases {
        let got = select_route(&connectors, SERVER, FQDN, domain, size);
        assert_eq!(routed(&got), want, "{case}: got {got:?}");
    }
}

#[test]
fn too_large_reports_the_largest_refusing_limit() {
    let cs = vec![
        with(conn("A", &["*"]), |c| c.max_message_size = Some(100)),
        with(conn("B", &["*"]), |c| c.max_message_size = Some(300)),
    ];
    assert_eq!(
        select_route(&cs, SERVER, FQDN, "x.org", 1000),
        Decision::TooLarge { largest_limit: 300 }
    );
}

#[test]
fn dns_route_queues_per_domain() {
    let cs = vec![conn("Internet", &["*"])];
    let Decision::Route(r) = select_route(&cs, SERVER, FQDN, "Fabrikam.com", 1) else {
        panic!("not routed");
    };
    assert_eq!(
        r.next_hop,
        NextHop::Dns {
            domain: "fabrikam.com".into()
        }
    );
    assert_eq!(r.delivery_type().name(), "DnsConnectorDelivery");
    assert_eq!(r.next_hop_domain(), "fabrikam.com");
    assert_eq!(r.address_space, "SMTP:*;1");
    assert_eq!(r.connector_id, cs[0].id);
    assert_eq!(
        r.next_hop_key(),
        NextHopKey {
            delivery_type: DeliveryType::DnsConnectorDelivery,
            next_hop_domain: "fabrikam.com".into(),
            connector_id: Some(cs[0].id),
        }
    );
}

#[test]
fn smart_host_route_queues_per_connector() {
    let cs = vec![with(
        smart("Outbound", &["*"], &["relay1.isp.net", "[192.0.2.7]"]),
        |c| c.port = 587,
    )];
    let table = RoutingTable::build(&cs, SERVER, FQDN);
    let (Decision::Route(a), Decision::Route(b)) =
        (table.route("a.org", 1), table.route("b.org", 1))
    else {
        panic!("not routed");
    };
    assert_eq!(
        a.next_hop,
        NextHop::SmartHosts {
            hosts: vec!["relay1.isp.net".into(), "[192.0.2.7]".into()],
            port: 587
        }
    );
    assert_eq!(a.delivery_type(), DeliveryType::SmartHostConnectorDelivery);
    assert_eq!(a.next_hop_domain(), "relay1.isp.net,[192.0.2.7]");
    assert_eq!(a.next_hop_key(), b.next_hop_key());
}

#[test]
fn ndr_texts_are_exchanges() {
    assert_eq!(
        Decision::no_next_hop_reply().one_line(),
        "550 5.4.4 ROUTING.NoNextHop; unable to route"
    );
    assert_eq!(
        Decision::size_limit_reply().one_line(),
        "550 5.3.4 ROUTING.SizeLimit; message size exceeds fixed maximum size for route"
    );
    assert_eq!(
        NextHopKey::unreachable().next_hop_domain,
        "Unreachable Domain"
    );
}

fn server() -> TransportServer {
    TransportServer::with_defaults(SERVER, FQDN)
}

fn domain(name: &str, exp: Option<i64>, delay: Option<i64>) -> AcceptedDomain {
    let mut d = AcceptedDomain::new(name, name, DomainType::ExternalRelay);
    d.message_expiration_timeout = exp;
    d.delay_notification_timeout = delay;
    d
}

#[test]
fn timeout_precedence() {
    const H: u64 = 3600;
    let days5 = Some(5 * 86400);
    let h64 = Some(64 * 3600);
    let backup = with(conn("Backup", &["cryer.co.uk"]), |c| {
        c.message_expiration_timeout = Some(3 * 86400);
        c.delay_notification_timeout = Some(8 * 3600);
    });
    let plain = conn("Internet", &["*"]);
    // (case, accepted domains, connector, recipient domain, want expiration h, want delay h)
    type Case<'a> = (
        &'a str,
        Vec<AcceptedDomain>,
        Option<&'a SendConnector>,
        &'a str,
        u64,
        u64,
    );
    let cases: Vec<Case> = vec![
        ("server default", vec![], None, "x.org", 48, 4),
        (
            "server default through a plain connector",
            vec![],
            Some(&plain),
            "x.org",
            48,
            4,
        ),
        (
            "connector override",
            vec![],
            Some(&backup),
            "cryer.co.uk",
            72,
            8,
        ),
        (
            "accepted domain beats connector",
            vec![domain("cryer.co.uk", days5, h64)],
            Some(&backup),
            "cryer.co.uk",
            120,
            64,
        ),
        (
            "each timer resolves on its own",
            vec![domain("cryer.co.uk", days5, None)],
            Some(&backup),
            "cryer.co.uk",
            120,
            8,
        ),
        (
            "accepted domain without connector (local or unreachable)",
            vec![domain("cryer.co.uk", None, h64)],
            None,
            "CRYER.co.uk",
            48,
            64,
        ),
        (
            "another domain keeps the default",
            vec![domain("cryer.co.uk", days5, h64)],
            Some(&plain),
            "fabrikam.com",
            48,
            4,
        ),
        (
            "*.domain override covers subdomains",
            vec![domain("*.cryer.co.uk", days5, None)],
            None,
            "mail.cryer.co.uk",
            120,
            4,
        ),
        (
            "the most specific accepted domain decides",
            vec![
                domain("*.cryer.co.uk", days5, None),
                domain("mail.cryer.co.uk", None, None),
            ],
            None,
            "mail.cryer.co.uk",
            48,
            4,
        ),
    ];
    for (case, domains, connector, rcpt_domain, exp_h, delay_h) in cases {
        let got = effective_timeouts(&server(), &domains, connector, rcpt_domain);
        let want = EffectiveTimeouts {
            message_expiration_timeout: Duration::from_secs(exp_h * H),
            delay_notification_timeout: Duration::from_secs(delay_h * H),
        };
        assert_eq!(got, want, "{case}");
    }
}
