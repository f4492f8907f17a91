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
    b.wait_for_path("the tab after Apply", |p| p == tab).await;
    assert_eq!(
        fl(&mut sh, "Get-SendConnector Internet", "AddressSpaces").await,
        "{SMTP:*;2}"
    );
    b.goto("/org/hub/send-connectors").await;
    let cost = b.text("#send-connectors tbody tr td:nth-child(4)").await;
    assert_eq!(cost, "2");
    b.screenshot("list-send-connectors-cost-2").await;
    b.close().await;
}
