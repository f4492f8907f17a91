//! The console's pages without a browser: the router driven request by request against the real
//! PostgreSQL, every change read back through the shell as an admin would (Get-* | Format-List).
//! (The browser tests over HTTPS arrive with the console server; these drive the same routes.)

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use hubgate::console::pages;
use hubgate::console::session::TEST_ADMIN_HEADER;
use hubgate::console::state::ConsoleState;
use hubgate::shell::Shell;
use tower::ServiceExt;

struct Console {
    app: Router,
    sh: Shell,
    pool: sqlx::PgPool,
    ip: std::net::Ipv4Addr,
    smtp: std::net::SocketAddr,
    /// The database and data directory live as long as the console (None: a gateway holds them).
    _setup: Option<Setup>,
}

struct Reply {
    status: StatusCode,
    body: String,
    location: Option<String>,
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Console {
    async fn new() -> Console {
        let setup = Setup::new().await;
        let mut c = Console::on(&setup);
        c._setup = Some(setup);
        c
    }

    /// The pages over `setup`'s database (also while its gateway runs).
    fn on(setup: &Setup) -> Console {
        let app = pages::routes().with_state(ConsoleState {
            pool: setup.pool.clone(),
            server: SERVER.into(),
            fqdn: FQDN.into(),
        });
        Console {
            app,
            sh: Shell::new(setup.pool.clone(), FQDN),
            pool: setup.pool.clone(),
            ip: setup.ip,
            smtp: setup.smtp(),
            _setup: None,
        }
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap();
        Reply {
            status,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
            location,
        }
    }

    /// A page that must render.
    async fn get(&self, path: &str) -> String {
        let r = self
            .send(
                Request::get(path)
                    .header(TEST_ADMIN_HEADER, "Administrator")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.body);
        r.body
    }

    async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let mut all = vec![("csrf", "stand-in")];
        all.extend_from_slice(pairs);
        self.send(
            Request::post(path)
                .header(TEST_ADMIN_HEADER, "Administrator")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form_encode(&all)))
                .unwrap(),
        )
        .await
    }

    /// A POST the page accepts: it redirects (303) to a GET.
    async fn saved(&self, path: &str, pairs: &[(&str, &str)]) -> String {
        let r = self.post(path, pairs).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "POST {path}: {}", r.body);
        r.location.unwrap()
    }

    /// A POST the page refuses: the form again, with the message beside `field`.
    async fn refused(&self, path: &str, pairs: &[(&str, &str)], field: &str, want: &str) {
        let r = self.post(path, pairs).await;
        assert_eq!(r.status, StatusCode::OK, "POST {path} should be refused");
        let at = r
            .body
            .find(&format!("id=\"field-{field}\""))
            .unwrap_or_else(|| panic!("no field {field}: {}", r.body));
        let rest = &r.body[at..];
        let end = rest[1..]
            .find("class=\"field")
            .map_or(rest.len(), |e| e + 1);
        let block = &rest[..end];
        assert!(
            block.contains("class=\"error\"") && block.contains(want),
            "{field} should show {want:?}: {block}"
        );
    }

    async fn shell(&mut self, line: &str) -> String {
        self.sh
            .run_line(line)
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// One property as Format-List prints it.
    async fn fl(&mut self, get: &str, prop: &str) -> String {
        let out = self.shell(&format!("{get} | Format-List {prop}")).await;
        out.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(" : ")?;
                // hubgate's "(not enforced: ...)" caveat after a value is not the value.
                let v = v.split(" (not enforced").next().unwrap_or(v);
                (k.trim() == prop).then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("{get}: no {prop} in {out}"))
    }

    async fn id(&self, table: &str, name: &str) -> String {
        let (id,): (uuid::Uuid,) =
            sqlx::query_as(&format!("SELECT id FROM {table} WHERE name = $1"))
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .unwrap();
        id.to_string()
    }
}

#[tokio::test]
async fn every_list_renders_its_rows_in_the_emc_frame() {
    let mut c = Console::new().await;
    c.shell("New-AcceptedDomain Fabrikam -DomainName fabrikam.test -DomainType InternalRelay")
        .await;
    c.shell("New-SendConnector Internet -Internet -AddressSpaces '*'")
        .await;
    c.shell("New-Mailbox Kim -PrimarySmtpAddress kim@contoso.test")
        .await;
    c.shell("New-MailContact Lee -ExternalEmailAddress lee@partner.test")
        .await;

    let p = c.get("/org/hub/accepted-domains").await;
    for want in [
        "Microsoft Exchange",
        "Organization Configuration",
        "Server Configuration",
        "Recipient Configuration",
        "Mail Contact",
        "Toolbox",
        "Accepted Domains",
        "Send Connectors",
        "Global Settings",
        "Accepted Domain Name",
        "<td>fabrikam.test</td>",
        "<td>InternalRelay</td>",
        "New Accepted Domain...",
    ] {
        assert!(p.contains(want), "{want}: {p}");
    }
    let p = c.get("/org/hub/send-connectors").await;
    for want in [
        "Address Spaces",
        "Cost",
        ">Internet</a>",
        "<td>Enabled</td>",
        "SMTP:*;1",
    ] {
        assert!(p.contains(want), "{want}: {p}");
    }
    let p = c.get("/server/hub").await;
    assert!(p.contains(">HUB1</a>") && p.contains(FQDN), "{p}");
    let p = c.get("/server/hub/HUB1").await;
    let binding = c.smtp.to_string();
    for want in [
        "Receive Connectors",
        ">Default HUB1</a>",
        binding.as_str(),
        "Bindings",
    ] {
        assert!(p.contains(want), "{want}: {p}");
    }
    let p = c.get("/recipients/mailbox").await;
    assert!(p.contains("kim@contoso.test"), "{p}");
    let p = c.get("/recipients/mail-contact").await;
    assert!(p.contains("lee@partner.test"), "{p}");
    c.get("/org/hub/global-settings").await;
    c.get("/toolbox").await;

    // A selected object has its own URL and its actions in the action pane.
    let id = c.id("send_connector", "Internet").await;
    let p = c
        .get(&format!("/org/hub/send-connectors?selected={id}"))
        .await;
    for want in [
        "class=\"selected\"",
        &format!("/send-connectors/{id}/disable"),
        &format!("/send-connectors/{id}/remove"),
        &format!("/send-connectors/{id}/properties/general"),
        &format!("/send-connectors/{id}/permissions"),
    ] {
        assert!(p.contains(want), "{want}: {p}");
    }
}

#[tokio::test]
async fn each_tab_shows_current_values_and_saves_what_the_shell_reads_back() {
    let mut c = Console::new().await;
    c.shell("New-AcceptedDomain Fabrikam -DomainName fabrikam.test")
        .await;
    c.shell("New-SendConnector Internet -Internet -AddressSpaces '*'")
        .await;
    c.shell("New-Mailbox Kim -PrimarySmtpAddress kim@contoso.test")
        .await;

    // Accepted domain, General.
    let d = format!(
        "/accepted-domains/{}/properties/general",
        c.id("accepted_domain", "Fabrikam").await
    );
    let p = c.get(&d).await;
    assert!(
        p.contains("fabrikam.test") && p.contains("<option value=\"Authoritative\" selected>"),
        "{p}"
    );
    c.saved(
        &d,
        &[
            ("DomainType", "InternalRelay"),
            ("Name", "Fabrikam"),
            ("action", "ok"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-AcceptedDomain Fabrikam", "DomainType").await,
        "InternalRelay"
    );

    // Send connector: General, Address Space, Network, Source Server.
    let s = c.id("send_connector", "Internet").await;
    let tab = |t: &str| format!("/send-connectors/{s}/properties/{t}");
    let p = c.get(&tab("general")).await;
    assert!(p.contains("value=\"10 MB (10,485,760 bytes)\""), "{p}");
    c.saved(
        &tab("general"),
        &[
            ("Name", "Internet"),
            ("MaxMessageSize", "20MB"),
            ("Enabled", "true"),
            ("action", "apply"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-SendConnector Internet", "MaxMessageSize").await,
        "20 MB (20,971,520 bytes)"
    );
    let p = c.get(&tab("address-space")).await;
    assert!(p.contains(">SMTP:*;1</textarea>"), "{p}");
    let p = c.get(&tab("network")).await;
    assert!(
        p.contains("name=\"DNSRoutingEnabled\" value=\"true\" checked"),
        "{p}"
    );
    assert!(
        p.contains("Route mail through the following smart hosts:"),
        "{p}"
    );
    c.saved(
        &tab("network"),
        &[
            ("DNSRoutingEnabled", "true"),
            ("Port", "2525"),
            ("SmartHosts", ""),
        ],
    )
    .await;
    assert_eq!(c.fl("Get-SendConnector Internet", "Port").await, "2525");
    let p = c.get(&tab("source-server")).await;
    assert!(p.contains(">HUB1</textarea>"), "{p}");
    c.saved(
        &tab("source-server"),
        &[("SourceTransportServers", "HUB1\nHUB1")],
    )
    .await;

    // Receive connector: General, Network, Authentication, Permission Groups.
    let r = c.id("receive_connector", "Default HUB1").await;
    let tab = |t: &str| format!("/receive-connectors/{r}/properties/{t}");
    let p = c.get(&tab("general")).await;
    assert!(p.contains("HUB1\\Default HUB1"), "{p}");
    c.saved(
        &tab("general"),
        &[
            ("Name", "Default HUB1"),
            ("Enabled", "true"),
            ("Banner", "220 console banner"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-ReceiveConnector 'Default HUB1'", "Banner").await,
        "220 console banner"
    );
    let port = gateway_port();
    let binding = format!("{}:{port}", c.ip);
    c.saved(
        &tab("network"),
        &[
            ("Bindings", &binding),
            ("RemoteIPRanges", "0.0.0.0-255.255.255.255"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-ReceiveConnector 'Default HUB1'", "Bindings")
            .await,
        format!("{{{binding}}}")
    );
    let p = c.get(&tab("authentication")).await;
    assert!(
        p.contains("name=\"AuthMechanism\" value=\"Tls\" checked"),
        "{p}"
    );
    c.saved(
        &tab("authentication"),
        &[("AuthMechanism", "Tls"), ("AuthMechanism", "BasicAuth")],
    )
    .await;
    assert_eq!(
        c.fl("Get-ReceiveConnector 'Default HUB1'", "AuthMechanism")
            .await,
        "Tls, BasicAuth"
    );
    c.saved(
        &tab("permission-groups"),
        &[
            ("PermissionGroups", "AnonymousUsers"),
            ("PermissionGroups", "ExchangeUsers"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-ReceiveConnector 'Default HUB1'", "PermissionGroups")
            .await,
        "AnonymousUsers, ExchangeUsers"
    );

    // Server: General, Limits, Log Settings.
    let p = c.get("/servers/HUB1/properties/general").await;
    assert!(p.contains(FQDN), "{p}");
    c.saved(
        "/servers/HUB1/properties/general",
        &[
            ("PoisonThreshold", "3"),
            ("PoisonMessageDetectionEnabled", "true"),
            ("ExternalDelayDsnEnabled", "true"),
            ("InternalDelayDsnEnabled", "true"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-TransportServer HUB1", "PoisonThreshold").await,
        "3"
    );
    let p = c.get("/servers/HUB1/properties/limits").await;
    for want in [
        "Outbound connection failure retry interval (minutes):",
        "Transient failure retry interval (seconds):",
        "Transient failure retry attempts:",
        "Maximum time since submission (days):",
        "Notify sender when message is delayed more than (hours):",
        "name=\"MessageExpirationTimeout\" value=\"2\"",
        "name=\"DelayNotificationTimeout\" value=\"4\"",
        "name=\"OutboundConnectionFailureRetryInterval\" value=\"10\"",
        "name=\"MaxOutboundConnections\" value=\"1000\"",
    ] {
        assert!(p.contains(want), "{want}: {p}");
    }
    c.saved(
        "/servers/HUB1/properties/limits",
        &[
            ("TransientFailureRetryCount", "4"),
            ("MaxPerDomainOutboundConnections", "unlimited"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-TransportServer HUB1", "TransientFailureRetryCount")
            .await,
        "4"
    );
    assert_eq!(
        c.fl(
            "Get-TransportServer HUB1",
            "MaxPerDomainOutboundConnections"
        )
        .await,
        "Unlimited"
    );
    c.saved(
        "/servers/HUB1/properties/log-settings",
        &[
            ("MessageTrackingLogEnabled", "true"),
            ("IntraOrgConnectorProtocolLoggingLevel", "Verbose"),
        ],
    )
    .await;
    assert_eq!(
        c.fl(
            "Get-TransportServer HUB1",
            "MessageTrackingLogSubjectLoggingEnabled"
        )
        .await,
        "False"
    );
    // Format-List adds hubgate's caveat after the value.
    assert!(
        c.fl(
            "Get-TransportServer HUB1",
            "IntraOrgConnectorProtocolLoggingLevel"
        )
        .await
        .starts_with("Verbose")
    );

    // Transport Settings, each tab.
    let t = "/transport-settings/properties";
    c.saved(&format!("{t}/general"), &[("MaxReceiveSize", "20MB")])
        .await;
    assert_eq!(
        c.fl("Get-TransportConfig", "MaxReceiveSize").await,
        "20 MB (20,971,520 bytes)"
    );
    c.saved(
        &format!("{t}/message-delivery"),
        &[("GenerateCopyOfDSNFor", "5.4.8\n5.1.4")],
    )
    .await;
    assert_eq!(
        c.fl("Get-TransportConfig", "GenerateCopyOfDSNFor").await,
        "{5.4.8, 5.1.4}"
    );
    c.saved(
        &format!("{t}/shadow-redundancy"),
        &[
            ("ShadowHeartbeatRetryCount", "5"),
            ("ShadowRedundancyEnabled", "true"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-TransportConfig", "ShadowHeartbeatRetryCount")
            .await,
        "5"
    );
    c.saved(
        &format!("{t}/domain-security"),
        &[("TLSSendDomainSecureList", "partner.test")],
    )
    .await;
    assert_eq!(
        c.fl("Get-TransportConfig", "TLSSendDomainSecureList").await,
        "{partner.test}"
    );

    // Mailbox, General.
    let m = c.id("recipient", "Kim").await;
    c.saved(
        &format!("/mailboxes/{m}/properties/general"),
        &[
            ("Name", "Kim"),
            ("PrimarySmtpAddress", "kim.lee@contoso.test"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-Mailbox Kim", "PrimarySmtpAddress").await,
        "kim.lee@contoso.test"
    );
}

#[tokio::test]
async fn an_invalid_value_is_refused_beside_its_field_and_nothing_changes() {
    let mut c = Console::new().await;
    c.shell("New-SendConnector Internet -Internet -AddressSpaces '*'")
        .await;
    let limits = "/servers/HUB1/properties/limits";
    for (days, want) in [
        ("3.5", "whole number of days from 1 to 90"),
        ("91", "from 1 to 90"),
        ("99999999999999999999", "from 1 to 90"),
    ] {
        // The valid field beside the bad one is not saved either.
        c.refused(
            limits,
            &[
                ("MessageExpirationTimeout", days),
                ("DelayNotificationTimeout", "64"),
            ],
            "MessageExpirationTimeout",
            want,
        )
        .await;
    }
    assert_eq!(
        c.fl("Get-TransportServer HUB1", "MessageExpirationTimeout")
            .await,
        "2.00:00:00"
    );
    assert_eq!(
        c.fl("Get-TransportServer HUB1", "DelayNotificationTimeout")
            .await,
        "04:00:00"
    );

    // Refused by the operation: its message beside the parameter it names.
    let r = c.id("receive_connector", "Default HUB1").await;
    c.refused(
        &format!("/receive-connectors/{r}/properties/general"),
        &[
            ("Name", "Default HUB1"),
            ("Enabled", "true"),
            ("MaxMessageSize", "1KB"),
            ("Banner", "220 changed"),
        ],
        "MaxMessageSize",
        "between",
    )
    .await;
    assert_eq!(
        c.fl("Get-ReceiveConnector 'Default HUB1'", "Banner").await,
        ""
    );
    let s = c.id("send_connector", "Internet").await;
    c.refused(
        &format!("/send-connectors/{s}/properties/network"),
        &[("DNSRoutingEnabled", "true"), ("Port", "70000")],
        "Port",
        "between 0 and 65535",
    )
    .await;
    c.refused(
        &format!("/send-connectors/{s}/properties/address-space"),
        &[("AddressSpaces", "*contoso.test")],
        "AddressSpaces",
        "",
    )
    .await;
    assert_eq!(c.fl("Get-SendConnector Internet", "Port").await, "25");
    assert_eq!(
        c.fl("Get-SendConnector Internet", "AddressSpaces").await,
        "{SMTP:*;1}"
    );

    // Two connectors of one server on the same binding and range: the second is refused on its
    // Network tab.
    let other = gateway_port();
    c.shell(&format!(
        "New-ReceiveConnector Other -Bindings {}:{other} -RemoteIPRanges 0.0.0.0-255.255.255.255",
        c.ip
    ))
    .await;
    let o = c.id("receive_connector", "Other").await;
    c.refused(
        &format!("/receive-connectors/{o}/properties/network"),
        &[
            ("Bindings", &c.smtp.to_string()),
            ("RemoteIPRanges", "0.0.0.0-255.255.255.255"),
        ],
        "Bindings",
        "unique combination",
    )
    .await;

    // A New form missing a mandatory value.
    c.refused(
        "/accepted-domains/new",
        &[("Name", "Nope")],
        "DomainName",
        "DomainName",
    )
    .await;
    c.shell("Get-AcceptedDomain").await;
    assert!(!c.shell("Get-AcceptedDomain").await.contains("Nope"));
}

#[tokio::test]
async fn seed_004_limits_step_and_the_star_connector_cost_read_back_through_the_shell() {
    let mut c = Console::new().await;
    c.shell("New-SendConnector Internet -Internet -AddressSpaces '*'")
        .await;
    // Step 4-6: Maximum time since submission 2 → 3 days, delay notice 4 → 64 hours, OK.
    let next = c
        .saved(
            "/servers/HUB1/properties/limits",
            &[
                ("OutboundConnectionFailureRetryInterval", "10"),
                ("TransientFailureRetryInterval", "300"),
                ("TransientFailureRetryCount", "6"),
                ("MessageExpirationTimeout", "3"),
                ("DelayNotificationTimeout", "64"),
                ("MaxOutboundConnections", "1000"),
                ("MaxPerDomainOutboundConnections", "20"),
                ("action", "ok"),
            ],
        )
        .await;
    assert_eq!(next, "/server/hub/HUB1");
    assert_eq!(
        c.fl("Get-TransportServer HUB1", "MessageExpirationTimeout")
            .await,
        "3.00:00:00"
    );
    assert_eq!(
        c.fl("Get-TransportServer HUB1", "DelayNotificationTimeout")
            .await,
        "2.16:00:00"
    );
    assert_eq!(
        c.fl("Get-TransportServer HUB1", "TransientFailureRetryInterval")
            .await,
        "00:05:00"
    );
    let p = c.get("/servers/HUB1/properties/limits").await;
    assert!(
        p.contains("name=\"MessageExpirationTimeout\" value=\"3\""),
        "{p}"
    );
    assert!(
        p.contains("name=\"DelayNotificationTimeout\" value=\"64\""),
        "{p}"
    );

    // The `*` connector's cost raised to 2 on its Address Space tab.
    let s = c.id("send_connector", "Internet").await;
    c.saved(
        &format!("/send-connectors/{s}/properties/address-space"),
        &[("AddressSpaces", "SMTP:*;2"), ("action", "ok")],
    )
    .await;
    assert_eq!(
        c.fl("Get-SendConnector Internet", "AddressSpaces").await,
        "{SMTP:*;2}"
    );
    let p = c.get("/org/hub/send-connectors").await;
    assert!(
        p.contains("<td>SMTP:*;2</td>") && p.contains("<td>2</td>"),
        "{p}"
    );
}

#[tokio::test]
async fn seed_000_permission_entries_made_on_the_permissions_page_are_seen_by_get_adpermission() {
    let mut c = Console::new().await;
    c.shell("New-SendConnector 'To Org2' -AddressSpaces org2.test -SmartHosts hub.org2.test -DNSRoutingEnabled $false")
        .await;
    let s = c.id("send_connector", "To Org2").await;
    let page = format!("/send-connectors/{s}/permissions");
    c.saved(
        &page,
        &[
            ("User", "MS Exchange\\Externally Secured Servers"),
            ("ExtendedRights", "ms-Exch-SMTP-Send-XShadow"),
        ],
    )
    .await;
    let acl = c.shell("Get-ADPermission 'To Org2' -User 'MS Exchange\\Externally Secured Servers' | Format-List").await;
    assert!(acl.contains("ms-Exch-SMTP-Send-XShadow"), "{acl}");
    let p = c.get(&page).await;
    assert!(
        p.contains("<td>MS Exchange\\Externally Secured Servers</td>")
            && p.contains("<td>Explicit</td>"),
        "{p}"
    );

    // The receive side: Accept-XShadow beside the entries its permission groups grant.
    let r = c.id("receive_connector", "Default HUB1").await;
    let page = format!("/receive-connectors/{r}/permissions");
    let p = c.get(&page).await;
    assert!(
        p.contains("<td>ExchangeServers</td>") || p.contains("ExchangeUsers"),
        "{p}"
    );
    c.saved(
        &page,
        &[
            ("User", "MS Exchange\\Externally Secured Servers"),
            ("ExtendedRights", "ms-Exch-SMTP-Accept-XShadow"),
        ],
    )
    .await;
    let acl = c.shell("Get-ADPermission 'HUB1\\Default HUB1' -User 'MS Exchange\\Externally Secured Servers' | Format-List").await;
    assert!(acl.contains("ms-Exch-SMTP-Accept-XShadow"), "{acl}");

    // Remove takes it away again; a missing user is refused and adds nothing.
    c.saved(
        &format!("{page}/remove"),
        &[
            ("User", "MS Exchange\\Externally Secured Servers"),
            ("ExtendedRights", "ms-Exch-SMTP-Accept-XShadow"),
        ],
    )
    .await;
    let acl = c.shell("Get-ADPermission 'HUB1\\Default HUB1' -User 'MS Exchange\\Externally Secured Servers' | Format-List").await;
    assert!(!acl.contains("ms-Exch-SMTP-Accept-XShadow"), "{acl}");
    let r = c
        .post(
            &page,
            &[
                ("User", " "),
                ("ExtendedRights", "ms-Exch-SMTP-Accept-XShadow"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("data-field=\"User\"") && r.body.contains("Enter the user or group."),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn new_remove_enable_disable_act_through_the_operations() {
    let mut c = Console::new().await;
    let next = c
        .saved(
            "/accepted-domains/new",
            &[
                ("Name", "Fabrikam"),
                ("DomainName", "fabrikam.test"),
                ("DomainType", "ExternalRelay"),
                ("AddressBookEnabled", ""),
            ],
        )
        .await;
    assert!(
        next.starts_with("/org/hub/accepted-domains?selected="),
        "{next}"
    );
    assert_eq!(
        c.fl("Get-AcceptedDomain Fabrikam", "DomainType").await,
        "ExternalRelay"
    );
    c.saved(
        "/send-connectors/new",
        &[
            ("Name", "Internet"),
            ("Usage", "Internet"),
            ("AddressSpaces", "*"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-SendConnector Internet", "Usage").await,
        "Internet"
    );
    c.saved(
        "/mailboxes/new",
        &[("Name", "Kim"), ("PrimarySmtpAddress", "kim@contoso.test")],
    )
    .await;
    c.saved(
        "/mail-contacts/new",
        &[
            ("Name", "Lee"),
            ("ExternalEmailAddress", "lee@partner.test"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-MailContact Lee", "ExternalEmailAddress").await,
        "lee@partner.test"
    );
    let port = gateway_port();
    c.saved(
        "/receive-connectors/new?server=HUB1",
        &[
            ("Name", "Partner"),
            ("Usage", "Partner"),
            ("Bindings", &format!("{}:{port}", c.ip)),
            ("RemoteIPRanges", "192.0.2.1"),
        ],
    )
    .await;
    assert_eq!(
        c.fl("Get-ReceiveConnector Partner", "PermissionGroups")
            .await,
        "Partners"
    );

    let s = c.id("send_connector", "Internet").await;
    c.saved(&format!("/send-connectors/{s}/disable"), &[]).await;
    assert_eq!(c.fl("Get-SendConnector Internet", "Enabled").await, "False");
    c.saved(&format!("/send-connectors/{s}/enable"), &[]).await;
    assert_eq!(c.fl("Get-SendConnector Internet", "Enabled").await, "True");

    // Remove asks first, naming the object.
    let p = c.get(&format!("/send-connectors/{s}/remove")).await;
    assert!(
        p.contains("Are you sure you want to remove send connector &#39;Internet&#39;?")
            || p.contains("remove send connector &#x27;Internet&#x27;?"),
        "{p}"
    );
    c.saved(&format!("/send-connectors/{s}/remove"), &[]).await;
    assert!(c.sh.run_line("Get-SendConnector Internet").await.is_err());
    let m = c.id("recipient", "Kim").await;
    c.saved(&format!("/mailboxes/{m}/remove"), &[]).await;
    assert!(c.sh.run_line("Get-Mailbox Kim").await.is_err());
}

#[tokio::test]
async fn a_connector_named_with_markup_is_shown_as_text() {
    let mut c = Console::new().await;
    let name = "<img src=x onerror=alert(1)>";
    c.shell(&format!(
        "New-SendConnector '{name}' -AddressSpaces evil.test"
    ))
    .await;
    c.shell(&format!("New-ReceiveConnector '{name}' -Bindings {}:{} -RemoteIPRanges 192.0.2.9 -Banner '220 <script>alert(2)</script>'", c.ip, gateway_port()))
        .await;
    let s = c.id("send_connector", name).await;
    let r = c.id("receive_connector", name).await;
    for path in [
        "/org/hub/send-connectors".to_string(),
        format!("/org/hub/send-connectors?selected={s}"),
        format!("/send-connectors/{s}/properties/general"),
        format!("/send-connectors/{s}/permissions"),
        format!("/send-connectors/{s}/remove"),
        format!("/server/hub/HUB1?selected={r}"),
        format!("/receive-connectors/{r}/properties/general"),
    ] {
        let p = c.get(&path).await;
        assert!(
            !p.contains("<img") && !p.contains("<script>alert"),
            "{path}: {p}"
        );
        assert!(
            p.contains("&#60;img src=x onerror=alert(1)&#62;")
                || p.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{path}: {p}"
        );
    }
}

#[tokio::test]
async fn a_binding_changed_on_the_network_tab_listens_without_a_restart_and_one_in_use_is_reported()
{
    let gw = Setup::new().await.start().await;
    let mut c = Console::on(&gw.setup);
    let r = c.id("receive_connector", "Default HUB1").await;
    let network = format!("/receive-connectors/{r}/properties/network");
    let moved = std::net::SocketAddr::from((c.ip, gateway_port()));
    c.saved(&network, &[("Bindings", &moved.to_string())]).await;
    eventually("the new binding answers SMTP", || async move {
        match tokio::net::TcpStream::connect(moved).await {
            Ok(s) => {
                drop(s);
                true
            }
            Err(_) => false,
        }
    })
    .await;
    let mut raw = Raw::connect(moved).await;
    assert!(raw.reply().await.starts_with("220 "));

    // A port someone else holds: the connector's General tab says so, the gateway runs on.
    let holder = std::net::TcpListener::bind((c.ip, gateway_port())).unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    c.saved(&network, &[("Bindings", &taken)]).await;
    let general = format!("/receive-connectors/{r}/properties/general");
    let app = c.app.clone();
    eventually("the binding error on the General tab", || {
        let (app, general, taken) = (app.clone(), general.clone(), taken.clone());
        async move {
            let req = Request::get(&general)
                .header(TEST_ADMIN_HEADER, "Administrator")
                .body(Body::empty())
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
                .await
                .unwrap();
            let body = String::from_utf8_lossy(&body);
            body.contains(&format!("{taken}: Address already in use"))
        }
    })
    .await;
    assert!(
        c.shell("Get-ReceiveConnector")
            .await
            .contains("Default HUB1")
    );
    drop(holder);
}
