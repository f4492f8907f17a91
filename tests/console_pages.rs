//! The console's pages without a browser: the router driven request by request against the real
//! PostgreSQL, every change read back through the shell as an admin would (Get-* | Format-List).
//! The whole console router, behind a real session and its CSRF token, driven without a listener;
//! tests/console_security.rs drives the same router over HTTPS in a browser.

mod common;
#[path = "console_pages/support.rs"]
mod support;
#[path = "console_pages/tabs.rs"]
mod tabs;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use support::Console;

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
        .completed(
            "/accepted-domains/new",
            "New Accepted Domain",
            &[
                ("Name", "Fabrikam"),
                ("DomainName", "fabrikam.test"),
                ("DomainType", "ExternalRelay"),
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
    let d = c.id("accepted_domain", "Fabrikam").await;
    let p = c
        .get(&format!("/org/hub/accepted-domains?selected={d}"))
        .await;
    assert!(p.contains("Set as Default"), "{p}");
    c.saved(&format!("/accepted-domains/{d}/set-as-default"), &[])
        .await;
    assert_eq!(c.fl("Get-AcceptedDomain Fabrikam", "Default").await, "True");
    let next = c
        .completed(
            "/send-connectors/new",
            "New Connector",
            &[
                ("Name", "Internet"),
                ("Usage", "Internet"),
                ("AddressSpaces", "*"),
                ("Routing", "DNS"),
                ("SourceTransportServers", "HUB1"),
            ],
        )
        .await;
    assert!(
        next.starts_with("/org/hub/send-connectors?selected="),
        "{next}"
    );
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
    let mut c = Console::on(&gw.setup).await;
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
    let want = format!("{taken}: Address already in use");
    let console = &c;
    eventually("the binding error on the General tab", || async {
        let r = console.send(console.get_request(&general)).await;
        r.body.contains(&want)
    })
    .await;
    assert!(
        c.shell("Get-ReceiveConnector")
            .await
            .contains("Default HUB1")
    );
    drop(holder);
}

#[tokio::test]
async fn an_unknown_object_or_tab_is_not_found_and_a_page_needs_an_admin() {
    let c = Console::new().await;
    let r = c.id("receive_connector", "Default HUB1").await;
    let missing = uuid::Uuid::new_v4();
    for path in [
        format!("/send-connectors/{missing}/properties/general"),
        "/send-connectors/not-an-id/properties/general".to_string(),
        format!("/receive-connectors/{r}/properties/limits"),
        "/servers/NOPE/properties/general".to_string(),
        "/servers/*/properties/general".to_string(),
        "/server/hub/NOPE".to_string(),
    ] {
        let reply = c.send(c.get_request(&path)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let reply = c
        .send(
            Request::get("/org/hub/accepted-domains")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    // Without a session: to the sign-in page, which comes back here afterwards.
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        reply.location.as_deref(),
        Some("/logon?next=%2Forg%2Fhub%2Faccepted-domains")
    );
}
