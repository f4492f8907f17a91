//! The console in a real browser over HTTPS against `hubgate serve`: every list and every
//! Properties tab opened as an administrator would, edits saved with the dialog's buttons and
//! read back through the shell, a bad value refused beside its field. Each page is written to
//! target/console-screenshots/ (the README names it).

mod common;

use common::browser::Browser;
use common::console::*;
use common::*;
use hubgate::shell::Shell;

/// A gateway with one object of each type, and a browser signed in to its console.
async fn signed_in() -> (Console, Browser, Shell) {
    let setup = Setup::new().await;
    let mut sh = Shell::new(setup.pool.clone(), FQDN);
    for line in [
        "New-AcceptedDomain Fabrikam -DomainName fabrikam.test -DomainType InternalRelay",
        "New-SendConnector Internet -Internet -AddressSpaces '*'",
        "New-Mailbox Kim -PrimarySmtpAddress kim@contoso.test",
        "New-MailContact Lee -ExternalEmailAddress lee@partner.test",
    ] {
        sh.run_line(line)
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let console = Console::start(setup, &[]).await;
    let b = Browser::start(&console.client().origin()).await;
    b.goto(HOME).await;
    b.log_on("Administrator", ADMIN_PASSWORD).await;
    b.wait_for_path("the console", |p| p == HOME).await;
    (console, b, sh)
}

async fn id(console: &Console, table: &str, name: &str) -> String {
    let (id,): (uuid::Uuid,) = sqlx::query_as(&format!("SELECT id FROM {table} WHERE name = $1"))
        .bind(name)
        .fetch_one(&console.setup.pool)
        .await
        .unwrap();
    id.to_string()
}

/// The texts of the elements `css` matches.
async fn texts(b: &Browser, css: &str) -> Vec<String> {
    b.wait_for(css).await;
    let mut out = Vec::new();
    for e in b
        .client
        .find_all(fantoccini::Locator::Css(css))
        .await
        .unwrap()
    {
        out.push(e.text().await.unwrap());
    }
    out
}

/// One property as Format-List prints it (without hubgate's "(not enforced ...)" caveat).
async fn fl(sh: &mut Shell, get: &str, prop: &str) -> String {
    let out = sh
        .run_line(&format!("{get} | Format-List {prop}"))
        .await
        .unwrap_or_else(|e| panic!("{get}: {e}"));
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(" : ")?;
            let v = v.split(" (not enforced").next().unwrap_or(v);
            (k.trim() == prop).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("{get}: no {prop} in {out}"))
}

#[tokio::test]
async fn every_list_in_the_browser() {
    let (console, b, _) = signed_in().await;
    let lists = [
        ("/org/hub/accepted-domains", "accepted-domains", "Fabrikam"),
        ("/org/hub/send-connectors", "send-connectors", "Internet"),
        (
            "/org/hub/global-settings",
            "global-settings",
            "Transport Settings",
        ),
        ("/server/hub", "servers", SERVER),
        ("/server/hub/HUB1", "receive-connectors", "Default HUB1"),
        ("/recipients/mailbox", "mailboxes", "Kim"),
        ("/recipients/mail-contact", "mail-contacts", "Lee"),
    ];
    for (path, table, row) in lists {
        b.goto(path).await;
        let names = texts(&b, &format!("#{table} td.name")).await;
        assert!(names.iter().any(|n| n == row), "{path}: {names:?}");
        assert_eq!(b.text("#signed-in-as").await, "Administrator");
        b.screenshot(&format!("list-{table}")).await;
    }
    b.goto("/toolbox").await;
    b.wait_for("main.result h1").await;
    b.screenshot("toolbox").await;

    // Selecting a row: its own URL, its actions in the action pane.
    b.goto("/org/hub/send-connectors").await;
    b.click("#send-connectors td.name a").await;
    let s = id(&console, "send_connector", "Internet").await;
    b.wait_for_path("the selected connector", |p| {
        p == format!("/org/hub/send-connectors?selected={s}")
    })
    .await;
    let actions = texts(&b, "aside.actions li").await;
    for want in ["Properties", "Disable", "Remove", "Manage Permissions"] {
        assert!(actions.iter().any(|a| a == want), "{want}: {actions:?}");
    }
    b.screenshot("list-send-connectors-selected").await;
    b.close().await;
}

#[tokio::test]
async fn every_properties_tab_in_the_browser() {
    let (console, b, _) = signed_in().await;
    let d = id(&console, "accepted_domain", "Fabrikam").await;
    let s = id(&console, "send_connector", "Internet").await;
    let r = id(&console, "receive_connector", "Default HUB1").await;
    let m = id(&console, "recipient", "Kim").await;
    let c = id(&console, "recipient", "Lee").await;
    // Each object's dialog and the EMC's tabs on it.
    let objects: [(&str, String, &[&str]); 7] = [
        ("ad", format!("/accepted-domains/{d}"), &["General"]),
        (
            "sc",
            format!("/send-connectors/{s}"),
            &["General", "Address Space", "Network", "Source Server"],
        ),
        (
            "rc",
            format!("/receive-connectors/{r}"),
            &["General", "Network", "Authentication", "Permission Groups"],
        ),
        (
            "server",
            "/servers/HUB1".to_string(),
            &["General", "Limits", "Log Settings"],
        ),
        (
            "transport-settings",
            "/transport-settings".to_string(),
            &[
                "General",
                "Message Delivery",
                "Shadow Redundancy",
                "Domain Security",
            ],
        ),
        (
            "mailbox",
            format!("/mailboxes/{m}"),
            &["General", "E-Mail Addresses"],
        ),
        (
            "contact",
            format!("/mail-contacts/{c}"),
            &["General", "E-Mail Addresses"],
        ),
    ];
    for (short, base, tabs) in objects {
        b.goto(&format!("{base}/properties/general")).await;
        let shown = texts(&b, ".dialog-tabs a").await;
        // A dialog with one tab may draw no tab strip.
        if !(tabs.len() == 1 && shown.is_empty()) {
            assert_eq!(shown, tabs.to_vec(), "{base}");
        }
        for tab in tabs {
            let slug = tab.to_ascii_lowercase().replace(' ', "-");
            b.goto(&format!("{base}/properties/{slug}")).await;
            b.wait_for(".dialog form button[value=ok]").await;
            b.screenshot(&format!("{short}-{slug}")).await;
        }
    }
    for (short, base) in [
        ("sc", format!("/send-connectors/{s}")),
        ("rc", format!("/receive-connectors/{r}")),
    ] {
        b.goto(&format!("{base}/permissions")).await;
        b.wait_for("main.result table").await;
        b.screenshot(&format!("{short}-permissions")).await;
    }
    b.close().await;
}

#[tokio::test]
async fn seed_004_limits_and_the_star_cost_saved_in_the_browser_read_back_by_the_shell() {
    let (console, b, mut sh) = signed_in().await;
    let limits = "/servers/HUB1/properties/limits";

    // A bad value: refused beside its field, and the good one beside it is not saved either.
    b.goto(limits).await;
    b.fill("#in-MessageExpirationTimeout", "91").await;
    b.fill("#in-DelayNotificationTimeout", "64").await;
    b.click("button[value=ok]").await;
    let error = b.text("#field-MessageExpirationTimeout p.error").await;
    assert!(error.contains("from 1 to 90"), "{error}");
    b.screenshot("server-limits-refused").await;
    let server = "Get-TransportServer HUB1";
    assert_eq!(
        fl(&mut sh, server, "MessageExpirationTimeout").await,
        "2.00:00:00"
    );
    assert_eq!(
        fl(&mut sh, server, "DelayNotificationTimeout").await,
        "04:00:00"
    );

    // Seed 004: expiry 2 → 3 days, delay notice 4 → 64 hours, OK.
    b.goto(limits).await;
    b.fill("#in-MessageExpirationTimeout", "3").await;
    b.fill("#in-DelayNotificationTimeout", "64").await;
    b.click("button[value=ok]").await;
    b.wait_for_path("the server after OK", |p| p == "/server/hub/HUB1")
        .await;
    assert_eq!(
        fl(&mut sh, server, "MessageExpirationTimeout").await,
        "3.00:00:00"
    );
    assert_eq!(
        fl(&mut sh, server, "DelayNotificationTimeout").await,
        "2.16:00:00"
    );

    // The `*` connector's cost raised to 2 on its Address Space tab, with Apply: the dialog stays.
    let s = id(&console, "send_connector", "Internet").await;
    let tab = format!("/send-connectors/{s}/properties/address-space");
    b.goto(&tab).await;
    b.fill("#in-AddressSpaces", "SMTP:*;2").await;
    b.click("button[value=apply]").await;
    // Apply comes back to the same URL: the shell says when the save is in.
    let pool = console.setup.pool.clone();
    eventually("the cost of 2 in Get-SendConnector", || {
        let pool = pool.clone();
        async move {
            let mut sh = Shell::new(pool, FQDN);
            fl(&mut sh, "Get-SendConnector Internet", "AddressSpaces").await == "{SMTP:*;2}"
        }
    })
    .await;
    b.wait_for_path("the tab after Apply", |p| p == tab).await;
    b.wait_for("#in-AddressSpaces").await;
    b.goto("/org/hub/send-connectors").await;
    let cost = b.text("#send-connectors tbody tr td:nth-child(4)").await;
    assert_eq!(cost, "2");
    b.screenshot("list-send-connectors-cost-2").await;
    b.close().await;
}

/// How a test changes one field of a tab.
enum Edit {
    /// Clears the input and types.
    Fill(&'static str, &'static str),
    /// Types at the end of what the input holds.
    Append(&'static str, &'static str),
    Select(&'static str, &'static str),
    /// Toggles a checkbox of a flags field: (name, value).
    Toggle(&'static str, &'static str),
}

/// What Format-List shows after the save.
enum Want {
    Is(&'static str),
    Has(&'static str),
    Lacks(&'static str),
}

#[tokio::test]
async fn an_edit_on_every_tab_in_the_browser_is_read_back_by_the_shell() {
    use Edit::*;
    use Want::*;
    let (console, b, mut sh) = signed_in().await;
    let d = id(&console, "accepted_domain", "Fabrikam").await;
    let s = id(&console, "send_connector", "Internet").await;
    let r = id(&console, "receive_connector", "Default HUB1").await;
    let m = id(&console, "recipient", "Kim").await;
    let c = id(&console, "recipient", "Lee").await;
    let ad = format!("/accepted-domains/{d}/properties");
    let sc = format!("/send-connectors/{s}/properties");
    let rc = format!("/receive-connectors/{r}/properties");
    let sv = "/servers/HUB1/properties".to_string();
    let ts = "/transport-settings/properties".to_string();
    let mb = format!("/mailboxes/{m}/properties");
    let ct = format!("/mail-contacts/{c}/properties");
    let (get_ad, get_sc, get_rc) = (
        "Get-AcceptedDomain Fabrikam",
        "Get-SendConnector Internet",
        "Get-ReceiveConnector 'Default HUB1'",
    );
    let (get_sv, get_ts, get_mb, get_ct) = (
        "Get-TransportServer HUB1",
        "Get-TransportConfig",
        "Get-Mailbox Kim",
        "Get-MailContact Lee",
    );
    // (dialog, tab, edit, cmdlet, property, expected); the Source Server tab can only name HUB1
    // again (one server), so its save is checked for being accepted, not for a change.
    let edits = [
        (
            &ad,
            "general",
            Select("#in-DomainType", "Authoritative"),
            get_ad,
            "DomainType",
            Is("Authoritative"),
        ),
        (
            &sc,
            "general",
            Fill("#in-MaxMessageSize", "20MB"),
            get_sc,
            "MaxMessageSize",
            Is("20 MB (20,971,520 bytes)"),
        ),
        (
            &sc,
            "address-space",
            Fill("#in-AddressSpaces", "SMTP:*;2"),
            get_sc,
            "AddressSpaces",
            Is("{SMTP:*;2}"),
        ),
        (
            &sc,
            "network",
            Fill("#in-Port", "2525"),
            get_sc,
            "Port",
            Is("2525"),
        ),
        (
            &sc,
            "source-server",
            Fill("#in-SourceTransportServers", "HUB1"),
            get_sc,
            "SourceTransportServers",
            Is("{HUB1}"),
        ),
        (
            &rc,
            "general",
            Fill("#in-Banner", "220 set in the browser"),
            get_rc,
            "Banner",
            Is("220 set in the browser"),
        ),
        (
            &rc,
            "network",
            Fill("#in-RemoteIPRanges", "127.0.0.0/8"),
            get_rc,
            "RemoteIPRanges",
            Is("{127.0.0.0/8}"),
        ),
        (
            &rc,
            "authentication",
            Toggle("AuthMechanism", "ExchangeServer"),
            get_rc,
            "AuthMechanism",
            Lacks("ExchangeServer"),
        ),
        (
            &rc,
            "permission-groups",
            Toggle("PermissionGroups", "ExchangeLegacyServers"),
            get_rc,
            "PermissionGroups",
            Lacks("ExchangeLegacyServers"),
        ),
        (
            &sv,
            "general",
            Fill("#in-PoisonThreshold", "3"),
            get_sv,
            "PoisonThreshold",
            Is("3"),
        ),
        (
            &sv,
            "limits",
            Fill("#in-TransientFailureRetryCount", "4"),
            get_sv,
            "TransientFailureRetryCount",
            Is("4"),
        ),
        (
            &sv,
            "log-settings",
            Select("#in-IntraOrgConnectorProtocolLoggingLevel", "Verbose"),
            get_sv,
            "IntraOrgConnectorProtocolLoggingLevel",
            Has("Verbose"),
        ),
        (
            &ts,
            "general",
            Fill("#in-MaxReceiveSize", "20MB"),
            get_ts,
            "MaxReceiveSize",
            Is("20 MB (20,971,520 bytes)"),
        ),
        (
            &ts,
            "message-delivery",
            Fill("#in-GenerateCopyOfDSNFor", "5.4.8"),
            get_ts,
            "GenerateCopyOfDSNFor",
            Is("{5.4.8}"),
        ),
        (
            &ts,
            "shadow-redundancy",
            Fill("#in-ShadowHeartbeatRetryCount", "5"),
            get_ts,
            "ShadowHeartbeatRetryCount",
            Is("5"),
        ),
        (
            &ts,
            "domain-security",
            Fill("#in-TLSSendDomainSecureList", "partner.test"),
            get_ts,
            "TLSSendDomainSecureList",
            Is("{partner.test}"),
        ),
        (
            &mb,
            "general",
            Fill("#in-PrimarySmtpAddress", "kim.lee@contoso.test"),
            get_mb,
            "PrimarySmtpAddress",
            Is("kim.lee@contoso.test"),
        ),
        (
            &mb,
            "e-mail-addresses",
            Append("#in-EmailAddresses", "\nsmtp:kim2@contoso.test"),
            get_mb,
            "EmailAddresses",
            Has("kim2@contoso.test"),
        ),
        (
            &ct,
            "general",
            Fill("#in-ExternalEmailAddress", "lee@fabrikam.test"),
            get_ct,
            "ExternalEmailAddress",
            Has("lee@fabrikam.test"),
        ),
        (
            &ct,
            "e-mail-addresses",
            Append("#in-EmailAddresses", "\nsmtp:lee2@partner.test"),
            get_ct,
            "EmailAddresses",
            Has("lee2@partner.test"),
        ),
    ];
    for (dialog, tab, edit, get, prop, want) in edits {
        let url = format!("{dialog}/{tab}");
        let before = fl(&mut sh, get, prop).await;
        b.goto(&url).await;
        match edit {
            Fill(css, v) => b.fill(css, v).await,
            Append(css, v) => b.wait_for(css).await.send_keys(v).await.unwrap(),
            Select(css, v) => b.wait_for(css).await.select_by_value(v).await.unwrap(),
            Toggle(name, v) => {
                b.click(&format!("input[name={name}][value={v}]")).await;
            }
        }
        b.screenshot(&format!("edit-{}-{tab}", dialog.split('/').nth(1).unwrap()))
            .await;
        b.click("button[value=ok]").await;
        // OK goes back to the list; a refusal stays on the dialog with the reason.
        let left = b
            .wait_for_path(&format!("{url} saved"), |p| !p.contains("/properties/"))
            .await;
        let after = fl(&mut sh, get, prop).await;
        match want {
            Is(v) => assert_eq!(after, v, "{url} → {left}"),
            Has(v) => assert!(after.contains(v), "{url}: {after}"),
            Lacks(v) => assert!(!after.contains(v), "{url}: {after}"),
        }
        if tab != "source-server" {
            assert_ne!(after, before, "{url} changed nothing");
        }
    }
    b.close().await;
}

/// Get-ADPermission's entries for the Externally Secured Servers group on a connector.
async fn xshadow_acl(pool: &sqlx::PgPool, connector: &str) -> String {
    let mut sh = Shell::new(pool.clone(), FQDN);
    sh.run_line(&format!(
        "Get-ADPermission '{connector}' -User 'MS Exchange\\Externally Secured Servers' | Format-List"
    ))
    .await
    .unwrap_or_default()
}

#[tokio::test]
async fn seed_000_permission_entries_made_in_the_browser_are_seen_by_get_adpermission() {
    let (console, b, mut sh) = signed_in().await;
    sh.run_line("New-SendConnector 'To Org2' -AddressSpaces org2.test -SmartHosts hub.org2.test -DNSRoutingEnabled $false")
        .await
        .unwrap();
    let s = id(&console, "send_connector", "To Org2").await;
    let r = id(&console, "receive_connector", "Default HUB1").await;
    let pool = console.setup.pool.clone();
    for (page, connector, right, shot) in [
        (
            format!("/send-connectors/{s}/permissions"),
            "To Org2",
            "ms-Exch-SMTP-Send-XShadow",
            "sc-permissions-added",
        ),
        (
            format!("/receive-connectors/{r}/permissions"),
            "HUB1\\Default HUB1",
            "ms-Exch-SMTP-Accept-XShadow",
            "rc-permissions-added",
        ),
    ] {
        assert!(!xshadow_acl(&pool, connector).await.contains(right));
        b.goto(&page).await;
        b.fill("#in-User", "MS Exchange\\Externally Secured Servers")
            .await;
        b.click(&format!("input[name=ExtendedRights][value={right}]"))
            .await;
        b.click("section.dialog > form button[type=submit]").await;
        let pool = pool.clone();
        eventually(&format!("{right} in Get-ADPermission"), || {
            let pool = pool.clone();
            async move { xshadow_acl(&pool, connector).await.contains(right) }
        })
        .await;
        b.goto(&page).await;
        let users = texts(&b, "section.dialog tbody td:first-child").await;
        assert!(
            users
                .iter()
                .any(|u| u == "MS Exchange\\Externally Secured Servers"),
            "{users:?}"
        );
        b.screenshot(shot).await;
    }
    b.close().await;
}

#[tokio::test]
async fn a_binding_changed_in_the_browser_listens_without_a_restart_and_one_in_use_is_shown() {
    let (console, b, _) = signed_in().await;
    let r = id(&console, "receive_connector", "Default HUB1").await;
    let network = format!("/receive-connectors/{r}/properties/network");
    let ip = console.setup.ip;

    let moved = std::net::SocketAddr::from((ip, gateway_port()));
    b.goto(&network).await;
    b.fill("#in-Bindings", &moved.to_string()).await;
    b.click("button[value=ok]").await;
    b.wait_for_path("the server after OK", |p| !p.contains("/properties/"))
        .await;
    eventually("the new binding to answer", || async move {
        tokio::net::TcpStream::connect(moved).await.is_ok()
    })
    .await;
    let mut smtp = Raw::connect(moved).await;
    assert!(smtp.reply().await.starts_with("220 "));

    // A port another program holds: the connector's General tab says so; the gateway runs on.
    let holder = std::net::TcpListener::bind((ip, gateway_port())).unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    b.goto(&network).await;
    b.fill("#in-Bindings", &taken).await;
    b.click("button[value=ok]").await;
    b.wait_for_path("the server after OK", |p| !p.contains("/properties/"))
        .await;
    let general = format!("/receive-connectors/{r}/properties/general");
    let want = format!("{taken}: Address already in use");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        b.goto(&general).await;
        b.wait_for("#field-BindingErrors").await;
        if b.text("#field-BindingErrors").await.contains(&want) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{want} on the General tab"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    b.screenshot("rc-general-binding-in-use").await;
    assert_eq!(console.client().get("/healthz", &[]).await.status, 200);
    drop(holder);
    b.close().await;
}
