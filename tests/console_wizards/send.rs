//! New SMTP Send Connector: seed 004's Internet (DNS MX) connector and seed 001's cross-forest
//! one (Internal, two smart hosts, Basic Authentication over TLS), every refusal beside its
//! field, Back and Next keeping every value, Cancel, Internal's smart-host-only routing, and
//! the Completion line re-run on an empty organisation.

use crate::common::browser::Browser;
use crate::common::wizard::*;
use crate::common::*;
use crate::{count, signed_in};

const SHOT: &str = "wizard-send-connector";

async fn prop(b: &Browser, css: &str, name: &str) -> bool {
    b.wait_for(css).await.prop(name).await.unwrap().as_deref() == Some("true")
}

async fn checked(b: &Browser, css: &str) -> bool {
    prop(b, css, "checked").await
}

/// The values the list `name` carries, in order.
async fn rows(b: &Browser, name: &str) -> Vec<String> {
    let mut out = vec![];
    for e in b
        .client
        .find_all(fantoccini::Locator::Css(&format!(
            "#list-{name} input[type=hidden][name={name}]"
        )))
        .await
        .unwrap()
    {
        out.push(e.attr("value").await.unwrap().unwrap_or_default());
    }
    out
}

/// Opens `list`'s dialog, fills it, and presses OK.
async fn dialog(b: &Browser, list: &str, fill: &[(&str, &str)]) {
    press(b, &format!("button[value='add:{list}']")).await;
    fill_dialog(b, fill).await;
}

async fn fill_dialog(b: &Browser, fill: &[(&str, &str)]) {
    for (name, v) in fill {
        match *name {
            "Kind" => b.click(&format!("input[name=dlg-Kind][value={v}]")).await,
            "IncludeSubdomains" => {
                if checked(b, "#in-dlg-IncludeSubdomains").await != (*v == "true") {
                    b.click("#in-dlg-IncludeSubdomains").await;
                }
            }
            _ => b.fill(&format!("#in-dlg-{name}"), v).await,
        }
    }
    press(b, "#dialog-ok").await;
}

/// A dialog refusal: the message beside `field`, the dialog still open.
async fn refused_in_dialog(b: &Browser, fill: &[(&str, &str)], field: &str, want: &str) {
    fill_dialog(b, fill).await;
    let e = error_beside(b, &format!("dlg-{field}")).await;
    assert!(e.contains(want), "{fill:?}: {e:?} {}", b.source().await);
}

async fn next_to(b: &Browser, page: &str) {
    press(b, "#next").await;
    assert_eq!(step(b).await, page, "{}", b.source().await);
}

async fn back_to(b: &Browser, page: &str) {
    press(b, "#back").await;
    assert_eq!(step(b).await, page);
}

async fn refused_on_next(b: &Browser, page: &str, field: &str, want: &str) {
    press(b, "#next").await;
    assert_eq!(step(b).await, page);
    let e = error_beside(b, field).await;
    assert!(e.contains(want), "{field}: {e:?} {}", b.source().await);
}

#[tokio::test]
async fn new_send_connector_internet_dns_end_to_end() {
    let (console, b) = signed_in(Setup::new().await).await;
    let pool = console.setup.pool.clone();
    let name = "Send connector for cryer.test";

    // Cancel on a middle page makes nothing.
    b.goto("/org/hub/send-connectors").await;
    b.click("aside.actions a[href='/send-connectors/new']")
        .await;
    assert_eq!(step(&b).await, "Introduction");
    b.fill("#in-Name", name).await;
    next_to(&b, "Address space").await;
    dialog(&b, "AddressSpaces", &[("Address", "cryer.test")]).await;
    next_to(&b, "Network settings").await;
    b.click("#cancel").await;
    b.wait_for_path("the list", |p| p == "/org/hub/send-connectors")
        .await;
    assert_eq!(count(&pool, "send_connector", name).await, 0);

    // Introduction: the four uses, Custom to start with, what the chosen one does.
    b.goto("/send-connectors/new").await;
    let (pages, current) = steps(&b).await;
    assert_eq!(
        pages,
        [
            "Introduction",
            "Address space",
            "Network settings",
            "Source Server",
            "New Connector",
            "Completion"
        ]
    );
    assert_eq!(current, "Introduction");
    assert_eq!(value(&b, "#in-Usage").await, "Custom");
    assert!(b.text("#note-Usage").await.starts_with("Custom"));
    b.screenshot(&format!("{SHOT}-1-introduction")).await;
    refused_on_next(
        &b,
        "Introduction",
        "Name",
        "Name must be 1 to 64 characters",
    )
    .await;
    b.fill("#in-Name", name).await;
    b.click("#in-Usage option[value=Internet]").await;
    // The line under the choice follows it at once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !b.text("#note-Usage").await.contains("DNS MX") {
        assert!(
            std::time::Instant::now() < deadline,
            "the note stays on Custom"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    next_to(&b, "Address space").await;

    // Address space: an empty list, then every bad entry refused in the dialog.
    b.screenshot(&format!("{SHOT}-2-address-space")).await;
    refused_on_next(&b, "Address space", "AddressSpaces", "must not be empty").await;
    press(&b, "button[value='add:AddressSpaces']").await;
    assert_eq!(value(&b, "#in-dlg-Cost").await, "1");
    b.screenshot(&format!("{SHOT}-2-smtp-address-space")).await;
    let space = "is not a valid address space";
    refused_in_dialog(&b, &[("Address", "*contoso.com")], "Address", space).await;
    refused_in_dialog(&b, &[("Address", "")], "Address", space).await;
    let cost = "the cost must be a number from 1 to 100";
    for bad in ["0", "101", "abc"] {
        refused_in_dialog(
            &b,
            &[("Address", "cryer.test"), ("Cost", bad)],
            "Cost",
            cost,
        )
        .await;
        assert_eq!(value(&b, "#in-dlg-Address").await, "cryer.test");
    }
    fill_dialog(&b, &[("Cost", "1")]).await;
    assert_eq!(rows(&b, "AddressSpaces").await, ["SMTP:cryer.test;1"]);
    // A second one with its subdomains, edited, then removed.
    dialog(
        &b,
        "AddressSpaces",
        &[
            ("Address", "sub.test"),
            ("IncludeSubdomains", "true"),
            ("Cost", "5"),
        ],
    )
    .await;
    assert_eq!(
        rows(&b, "AddressSpaces").await,
        ["SMTP:cryer.test;1", "SMTP:*.sub.test;5"]
    );
    b.click("input[name=sel-AddressSpaces][value='1']").await;
    press(&b, "button[value='edit:AddressSpaces']").await;
    assert_eq!(value(&b, "#in-dlg-Address").await, "sub.test");
    assert!(checked(&b, "#in-dlg-IncludeSubdomains").await);
    assert_eq!(value(&b, "#in-dlg-Cost").await, "5");
    fill_dialog(&b, &[("Cost", "3")]).await;
    assert_eq!(
        rows(&b, "AddressSpaces").await,
        ["SMTP:cryer.test;1", "SMTP:*.sub.test;3"]
    );
    b.click("input[name=sel-AddressSpaces][value='1']").await;
    press(&b, "button[value='remove:AddressSpaces']").await;
    assert_eq!(rows(&b, "AddressSpaces").await, ["SMTP:cryer.test;1"]);
    b.click("#in-IsScopedConnector").await;
    next_to(&b, "Network settings").await;

    // Network settings: Internet starts on DNS; smart hosts with none given is refused.
    assert!(checked(&b, "input[name=Routing][value=DNS]").await);
    assert!(!prop(&b, "input[name=Routing][value=DNS]", "disabled").await);
    b.screenshot(&format!("{SHOT}-3-network-settings")).await;
    b.click("input[name=Routing][value=SmartHosts]").await;
    refused_on_next(
        &b,
        "Network settings",
        "SmartHosts",
        "SmartHosts must be given",
    )
    .await;
    b.click("input[name=Routing][value=DNS]").await;
    b.click("#in-UseExternalDNSServersEnabled").await;
    next_to(&b, "Source Server").await;

    // Source Server: this node ticked; none ticked is refused.
    let hub = "input[name=SourceTransportServers][value=HUB1]";
    assert!(checked(&b, hub).await);
    b.screenshot(&format!("{SHOT}-5-source-server")).await;
    b.click(hub).await;
    refused_on_next(
        &b,
        "Source Server",
        "SourceTransportServers",
        "SourceTransportServers must not be empty",
    )
    .await;
    assert_eq!(count(&pool, "send_connector", name).await, 0);

    // Back from each page and Next again keeps every value.
    back_to(&b, "Network settings").await;
    assert!(checked(&b, "input[name=Routing][value=DNS]").await);
    assert!(checked(&b, "#in-UseExternalDNSServersEnabled").await);
    back_to(&b, "Address space").await;
    assert_eq!(rows(&b, "AddressSpaces").await, ["SMTP:cryer.test;1"]);
    assert!(checked(&b, "#in-IsScopedConnector").await);
    back_to(&b, "Introduction").await;
    assert_eq!(value(&b, "#in-Name").await, name);
    assert_eq!(value(&b, "#in-Usage").await, "Internet");
    assert!(b.text("#note-Usage").await.contains("DNS MX"));
    next_to(&b, "Address space").await;
    // Seed 004 leaves "Scoped send connector" and the External DNS Lookup unticked.
    b.click("#in-IsScopedConnector").await;
    next_to(&b, "Network settings").await;
    assert!(checked(&b, "#in-UseExternalDNSServersEnabled").await);
    b.click("#in-UseExternalDNSServersEnabled").await;
    next_to(&b, "Source Server").await;
    assert!(!checked(&b, hub).await);
    b.click(hub).await;
    next_to(&b, "New Connector").await;
    let summary = b.text("#summary").await;
    for want in [
        name,
        "Intended use: Internet",
        "Address space: SMTP:cryer.test;1",
        "Scoped send connector: False",
        "MX",
        "Source servers: HUB1",
    ] {
        assert!(summary.contains(want), "{want}: {summary}");
    }
    b.screenshot(&format!("{SHOT}-6-new-connector")).await;
    back_to(&b, "Source Server").await;
    assert!(checked(&b, hub).await);
    next_to(&b, "New Connector").await;

    press(&b, "#new").await;
    assert_eq!(step(&b).await, "Completion");
    b.screenshot(&format!("{SHOT}-7-completion")).await;
    let line = cmdlet(&b).await;
    for want in [
        "New-SendConnector",
        "-Usage Internet",
        "SMTP:cryer.test;1",
        "-DNSRoutingEnabled $true",
        "HUB1",
    ] {
        assert!(line.contains(want), "{want}: {line}");
    }
    let (want, got) =
        rerun_on_empty_org(&pool, &line, &format!("Get-SendConnector '{name}'"), None).await;
    assert_eq!(want, got);
    assert!(want.contains("cryer.test"), "{want}");

    b.click("#finish").await;
    let at = b
        .wait_for_path("the list", |p| {
            p.starts_with("/org/hub/send-connectors?selected=")
        })
        .await;
    let (id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM send_connector WHERE name = $1")
        .bind(name)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(at.ends_with(&id.to_string()), "{at}");

    // A second one with the same Name is refused on the Introduction page.
    b.goto("/send-connectors/new").await;
    b.fill("#in-Name", name).await;
    refused_on_next(&b, "Introduction", "Name", "already exists").await;
    assert_eq!(count(&pool, "send_connector", name).await, 1);
    b.close().await;
}

#[tokio::test]
async fn new_send_connector_internal_smart_hosts_basic_over_tls() {
    let (console, b) = signed_in(Setup::new().await).await;
    let pool = console.setup.pool.clone();
    let name = "Cross-Forest";
    let password = "Fourth-Coffee-7";

    b.goto("/send-connectors/new").await;
    b.fill("#in-Name", name).await;
    b.click("#in-Usage option[value=Internal]").await;
    next_to(&b, "Address space").await;
    dialog(&b, "AddressSpaces", &[("Address", "fourthcoffee.test")]).await;
    next_to(&b, "Network settings").await;

    // Internal: only smart hosts can be chosen, and the authentication page joins the pages.
    assert!(prop(&b, "input[name=Routing][value=DNS]", "disabled").await);
    assert!(checked(&b, "input[name=Routing][value=SmartHosts]").await);
    let (pages, _) = steps(&b).await;
    assert!(
        pages.contains(&"Configure smart host authentication settings".to_string()),
        "{pages:?}"
    );
    refused_on_next(
        &b,
        "Network settings",
        "SmartHosts",
        "SmartHosts must be given",
    )
    .await;
    press(&b, "button[value='add:SmartHosts']").await;
    b.screenshot(&format!("{SHOT}-3-add-smart-host")).await;
    refused_in_dialog(
        &b,
        &[("Kind", "IP"), ("Address", "300.1.1.1")],
        "Address",
        "is not a valid IP address",
    )
    .await;
    refused_in_dialog(
        &b,
        &[("Kind", "IP"), ("Address", "hub1.fourthcoffee.test")],
        "Address",
        "is not a valid IP address",
    )
    .await;
    refused_in_dialog(
        &b,
        &[("Kind", "FQDN"), ("Address", "bad_host!")],
        "Address",
        "is not a valid fully qualified domain name",
    )
    .await;
    refused_in_dialog(
        &b,
        &[("Kind", "FQDN"), ("Address", "10.0.0.1")],
        "Address",
        "is not a valid fully qualified domain name",
    )
    .await;
    fill_dialog(
        &b,
        &[("Kind", "FQDN"), ("Address", "hub1.fourthcoffee.test")],
    )
    .await;
    dialog(
        &b,
        "SmartHosts",
        &[("Kind", "FQDN"), ("Address", "hub2.fourthcoffee.test")],
    )
    .await;
    assert_eq!(
        rows(&b, "SmartHosts").await,
        ["hub1.fourthcoffee.test", "hub2.fourthcoffee.test"]
    );
    b.screenshot(&format!("{SHOT}-3-network-settings-smart-hosts"))
        .await;
    next_to(&b, "Configure smart host authentication settings").await;

    // Basic without a user name, then without a password, is refused beside the field.
    assert!(checked(&b, "input[name=SmartHostAuthMechanism][value=None]").await);
    b.screenshot(&format!("{SHOT}-4-smart-host-authentication"))
        .await;
    b.click("input[name=SmartHostAuthMechanism][value=BasicAuth]")
        .await;
    b.click("#in-BasicAuthRequireTLS").await;
    let auth = "Configure smart host authentication settings";
    refused_on_next(&b, auth, "UserName", "user name must not be empty").await;
    b.fill("#in-UserName", "FOURTHCOFFEE\\relay").await;
    refused_on_next(&b, auth, "Password", "password must not be empty").await;
    b.fill("#in-Password", password).await;
    next_to(&b, "Source Server").await;
    assert_eq!(count(&pool, "send_connector", name).await, 0);

    // Back to the first page and Next again: every value kept.
    back_to(&b, auth).await;
    assert!(checked(&b, "input[name=SmartHostAuthMechanism][value=BasicAuth]").await);
    assert!(checked(&b, "#in-BasicAuthRequireTLS").await);
    assert_eq!(value(&b, "#in-UserName").await, "FOURTHCOFFEE\\relay");
    assert_eq!(value(&b, "#in-Password").await, password);
    back_to(&b, "Network settings").await;
    assert!(checked(&b, "input[name=Routing][value=SmartHosts]").await);
    assert_eq!(
        rows(&b, "SmartHosts").await,
        ["hub1.fourthcoffee.test", "hub2.fourthcoffee.test"]
    );
    back_to(&b, "Address space").await;
    assert_eq!(
        rows(&b, "AddressSpaces").await,
        ["SMTP:fourthcoffee.test;1"]
    );
    back_to(&b, "Introduction").await;
    assert_eq!(value(&b, "#in-Name").await, name);
    assert_eq!(value(&b, "#in-Usage").await, "Internal");
    next_to(&b, "Address space").await;
    next_to(&b, "Network settings").await;
    next_to(&b, auth).await;
    assert_eq!(value(&b, "#in-Password").await, password);
    next_to(&b, "Source Server").await;
    next_to(&b, "New Connector").await;
    let summary = b.text("#summary").await;
    for want in [
        "Intended use: Internal",
        "Smart hosts: hub1.fourthcoffee.test, hub2.fourthcoffee.test",
        "Basic Authentication over TLS (user name: FOURTHCOFFEE\\relay)",
    ] {
        assert!(summary.contains(want), "{want}: {summary}");
    }

    press(&b, "#new").await;
    let line = cmdlet(&b).await;
    for want in [
        "-Usage Internal",
        "-DNSRoutingEnabled $false",
        "-SmartHosts",
        "-SmartHostAuthMechanism BasicAuthRequireTLS",
        "Get-Credential -UserName",
    ] {
        assert!(line.contains(want), "{want}: {line}");
    }
    assert!(!line.contains(password), "{line}");
    // The password is sealed with the organisation key, never stored in clear.
    let (stored,): (Option<String>,) =
        sqlx::query_as("SELECT auth_password FROM send_connector WHERE name = $1")
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
    let stored = stored.expect("a sealed password");
    assert!(!stored.contains(password), "{stored}");
    let (want, got) = rerun_on_empty_org(
        &pool,
        &line,
        &format!("Get-SendConnector '{name}'"),
        Some(password),
    )
    .await;
    assert_eq!(want, got);
    assert!(want.contains("BasicAuthRequireTLS"), "{want}");
    b.click("#finish").await;
    b.wait_for_path("the list", |p| {
        p.starts_with("/org/hub/send-connectors?selected=")
    })
    .await;
    b.close().await;
}
