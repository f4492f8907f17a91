//! New Receive Connector: each intended use's pages, every refusal beside its field, Back and
//! Next keeping values, Cancel, the Completion line re-run on an empty organisation, the new
//! connector answering SMTP without a restart, and seed 001's Cross-Forest connector proven by
//! the rights its sessions are given in the protocol log.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::browser::Browser;
use crate::common::wizard::*;
use crate::common::*;
use crate::{count, signed_in};

const NEW: &str = "/receive-connectors/new?server=HUB1";
const ALL_PAGES: [&str; 5] = [
    "Introduction",
    "Local Network settings",
    "Remote Network settings",
    "New Connector",
    "Completion",
];

/// Opens the wizard as the EMC did: the server's page, then "New Receive Connector...".
async fn open(b: &Browser) {
    b.goto("/server/hub/HUB1").await;
    b.click(&format!("aside.actions a[href='{NEW}']")).await;
    assert_eq!(step(b).await, "Introduction");
}

async fn render_id(b: &Browser) -> Option<String> {
    b.wait_for("#wizard").await.attr("data-render").await.ok()?
}

/// Chooses an intended use; the page is drawn again with that use's preset under it.
async fn choose_usage(b: &Browser, usage: &str) {
    let before = render_id(b).await;
    b.wait_for("#in-Usage")
        .await
        .select_by_value(usage)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while render_id(b).await == before {
        assert!(
            Instant::now() < deadline,
            "no redraw after choosing {usage}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(value(b, "#in-Usage").await, usage);
}

/// Adds a row through a list's dialog; `fill` types into the dialog.
async fn add_range(b: &Browser, range: &str) {
    press(b, "button[value='add:RemoteIPRanges']").await;
    b.fill("#in-dlg-Range", range).await;
    press(b, "#dialog-ok").await;
}

/// Fills the binding dialog with a specific address and a port, and presses OK.
async fn binding_dialog(b: &Browser, address: &str, port: &str) {
    b.click("input[name='dlg-Which'][value=Specific]").await;
    b.fill("#in-dlg-Address", address).await;
    b.fill("#in-dlg-Port", port).await;
    press(b, "#dialog-ok").await;
}

async fn rows(b: &Browser, list: &str) -> String {
    b.text(&format!("#list-{list} tbody")).await
}

/// The Completion page's Finish: the server's receive connectors with the new one selected.
async fn finish(b: &Browser, name: &str) {
    b.click("#finish").await;
    b.wait_for_path("the server's connectors", |p| {
        p.starts_with("/server/hub/HUB1?selected=")
    })
    .await;
    let sel = b.text("#receive-connectors tr.selected").await;
    assert!(sel.contains(name), "{sel}");
}

/// Connects until `addr` answers (bounded), and returns its banner.
async fn banner_within_seconds(addr: SocketAddr) -> String {
    let since = Instant::now();
    eventually(&format!("{addr} to accept connections"), || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let mut smtp = Raw::connect(addr).await;
    let banner = smtp.reply().await;
    assert!(since.elapsed() < Duration::from_secs(30));
    banner
}

#[tokio::test]
async fn new_receive_connector_custom_end_to_end() {
    let (console, b) = signed_in(Setup::new().await).await;
    let pool = console.setup.pool.clone();
    let ip = console.setup.ip;
    let default = console.setup.smtp();
    let port = gateway_port();

    // Cancel makes nothing.
    open(&b).await;
    b.fill("#in-Name", "Partner Relay").await;
    press(&b, "#next").await;
    b.click("#cancel").await;
    b.wait_for_path("the server", |p| p == "/server/hub/HUB1")
        .await;
    assert_eq!(count(&pool, "receive_connector", "Partner Relay").await, 0);

    open(&b).await;
    let (pages, current) = steps(&b).await;
    assert_eq!(pages, ALL_PAGES);
    assert_eq!(current, "Introduction");
    assert_eq!(value(&b, "#in-Usage").await, "Custom");
    // The preset Custom applies, as the operation makes it.
    assert_eq!(b.text("#in-PermissionGroups").await, "None");
    assert_eq!(b.text("#in-AuthMechanism").await, "Tls");
    b.screenshot("wizard-receive-connector-1-introduction")
        .await;
    press(&b, "#next").await;
    assert!(
        error_beside(&b, "Name").await.contains("Name"),
        "{}",
        b.source().await
    );
    assert_eq!(step(&b).await, "Introduction");
    b.fill("#in-Name", "Partner Relay").await;
    press(&b, "#next").await;

    // Local Network settings: (All Available):25 and the server's FQDN to start with.
    assert_eq!(step(&b).await, "Local Network settings");
    let r = rows(&b, "Bindings").await;
    assert!(r.contains("(All Available)") && r.contains("25"), "{r}");
    assert_eq!(value(&b, "#in-Fqdn").await, FQDN);
    b.screenshot("wizard-receive-connector-2-local-network-settings")
        .await;
    press(&b, "button[value='remove:Bindings']").await;
    press(&b, "#next").await;
    assert!(
        error_beside(&b, "Bindings")
            .await
            .contains("at least one IP:port"),
        "{}",
        b.source().await
    );
    press(&b, "button[value='add:Bindings']").await;
    assert_eq!(value(&b, "#in-dlg-Port").await, "25");
    b.screenshot("wizard-receive-connector-3-add-binding").await;
    binding_dialog(&b, "127.0.0.300", "25").await;
    assert!(
        error_beside(&b, "dlg-Address")
            .await
            .contains("not a valid binding"),
        "{}",
        b.source().await
    );
    for bad in ["0", "70000", "x"] {
        binding_dialog(&b, &ip.to_string(), bad).await;
        assert!(
            error_beside(&b, "dlg-Port")
                .await
                .contains("not a valid binding"),
            "port {bad}: {}",
            b.source().await
        );
    }
    b.screenshot("wizard-receive-connector-3-add-binding-refused")
        .await;
    // The Default connector's own address: refused where the pair can be changed.
    binding_dialog(&b, &ip.to_string(), &default.port().to_string()).await;
    let r = rows(&b, "Bindings").await;
    assert!(r.contains(&ip.to_string()), "{r}");
    b.fill("#in-Fqdn", "relay.contoso.test").await;
    press(&b, "#next").await;

    assert_eq!(step(&b).await, "Remote Network settings");
    assert!(
        rows(&b, "RemoteIPRanges")
            .await
            .contains("0.0.0.0-255.255.255.255")
    );
    b.screenshot("wizard-receive-connector-4-remote-network-settings")
        .await;
    press(&b, "#next").await;
    let e = error_beside(&b, "RemoteIPRanges").await;
    assert!(e.contains("conflict") && e.contains("Default HUB1"), "{e}");
    assert_eq!(count(&pool, "receive_connector", "Partner Relay").await, 0);

    // Back keeps what was typed; the binding is edited to a port of its own.
    press(&b, "#back").await;
    assert_eq!(step(&b).await, "Local Network settings");
    assert_eq!(value(&b, "#in-Fqdn").await, "relay.contoso.test");
    press(&b, "button[value='edit:Bindings']").await;
    assert_eq!(value(&b, "#in-dlg-Address").await, ip.to_string());
    b.fill("#in-dlg-Port", &port.to_string()).await;
    press(&b, "#dialog-ok").await;
    let r = rows(&b, "Bindings").await;
    assert!(r.contains(&port.to_string()), "{r}");
    press(&b, "#next").await;

    assert_eq!(step(&b).await, "Remote Network settings");
    press(&b, "button[value='remove:RemoteIPRanges']").await;
    press(&b, "#next").await;
    assert!(
        error_beside(&b, "RemoteIPRanges")
            .await
            .contains("at least one range"),
        "{}",
        b.source().await
    );
    press(&b, "button[value='add:RemoteIPRanges']").await;
    b.screenshot("wizard-receive-connector-5-add-remote-range")
        .await;
    for bad in ["10.0.0.9-10.0.0.1", "10.0.0.0/33", "fourthcoffee"] {
        b.fill("#in-dlg-Range", bad).await;
        press(&b, "#dialog-ok").await;
        assert!(
            error_beside(&b, "dlg-Range")
                .await
                .contains("not a valid remote IP range"),
            "{bad}: {}",
            b.source().await
        );
    }
    b.screenshot("wizard-receive-connector-5-add-remote-range-refused")
        .await;
    press(&b, "#dialog-cancel").await;
    add_range(&b, "127.0.0.0/8").await;
    add_range(&b, "::1").await;
    add_range(&b, "192.0.2.10-192.0.2.20").await;
    let r = rows(&b, "RemoteIPRanges").await;
    assert!(r.contains("127.0.0.0/8") && r.contains("::1"), "{r}");
    press(&b, "#next").await;

    assert_eq!(step(&b).await, "New Connector");
    let summary = b.text("#summary").await;
    assert!(summary.contains(&format!("{ip}:{port}")), "{summary}");
    assert!(summary.contains("Permission groups: None"), "{summary}");
    b.screenshot("wizard-receive-connector-6-new-connector")
        .await;
    // Back to the start and forward again: every page kept its values.
    press(&b, "#back").await;
    press(&b, "#back").await;
    press(&b, "#back").await;
    assert_eq!(step(&b).await, "Introduction");
    assert_eq!(value(&b, "#in-Name").await, "Partner Relay");
    press(&b, "#next").await;
    assert_eq!(value(&b, "#in-Fqdn").await, "relay.contoso.test");
    press(&b, "#next").await;
    assert!(
        rows(&b, "RemoteIPRanges")
            .await
            .contains("192.0.2.10-192.0.2.20")
    );
    press(&b, "#next").await;
    assert_eq!(count(&pool, "receive_connector", "Partner Relay").await, 0);

    press(&b, "#new").await;
    assert_eq!(step(&b).await, "Completion");
    b.screenshot("wizard-receive-connector-7-completion").await;
    let line = cmdlet(&b).await;
    assert!(line.contains("New-ReceiveConnector"), "{line}");
    assert!(line.contains(&format!("{ip}:{port}")), "{line}");
    let (want, got) = rerun_on_empty_org(
        &pool,
        &line,
        "Get-ReceiveConnector 'HUB1\\Partner Relay'",
        None,
    )
    .await;
    assert_eq!(want, got);
    assert!(want.contains("relay.contoso.test"), "{want}");
    finish(&b, "Partner Relay").await;

    // Listening on its binding within seconds, with its own FQDN, no restart.
    let banner = banner_within_seconds(SocketAddr::from((ip, port))).await;
    assert!(banner.starts_with("220 relay.contoso.test "), "{banner}");
    b.close().await;
}

#[tokio::test]
async fn new_receive_connector_pages_follow_the_intended_use() {
    let (console, b) = signed_in(Setup::new().await).await;
    let pool = console.setup.pool.clone();
    let ip = console.setup.ip;
    let default = console.setup.smtp();
    open(&b).await;
    b.fill("#in-Name", "Internet Mail").await;
    let pages = |local: bool, remote: bool| {
        ALL_PAGES
            .iter()
            .filter(|p| (local || **p != ALL_PAGES[1]) && (remote || **p != ALL_PAGES[2]))
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
    };
    for (usage, local, remote, groups, auth) in [
        (
            "Internal",
            false,
            true,
            "ExchangeServers, ExchangeLegacyServers",
            "Tls, ExchangeServer",
        ),
        (
            "Client",
            true,
            true,
            "ExchangeUsers",
            "Tls, Integrated, BasicAuth, BasicAuthRequireTLS",
        ),
        ("Partner", true, true, "Partners", "Tls"),
        ("Internet", true, false, "AnonymousUsers", "Tls"),
    ] {
        choose_usage(&b, usage).await;
        // The preset is shown as soon as the use is chosen, as the operation makes it.
        assert_eq!(b.text("#in-PermissionGroups").await, groups, "{usage}");
        assert_eq!(b.text("#in-AuthMechanism").await, auth, "{usage}");
        assert_eq!(value(&b, "#in-Name").await, "Internet Mail");
        press(&b, "#next").await;
        let (all, current) = steps(&b).await;
        assert_eq!(all, pages(local, remote), "{usage}");
        let first = if local {
            "Local Network settings"
        } else {
            "Remote Network settings"
        };
        assert_eq!(current, first, "{usage}");
        if local {
            // Client starts on the submission port its preset gives; the others on 25.
            let port = if usage == "Client" { "587" } else { "25" };
            let r = rows(&b, "Bindings").await;
            assert!(
                r.contains("(All Available)") && r.contains(port),
                "{usage}: {r}"
            );
            b.screenshot(&format!(
                "wizard-receive-connector-{}-local-network-settings",
                usage.to_lowercase()
            ))
            .await;
        }
        press(&b, "#back").await;
        assert_eq!(value(&b, "#in-Usage").await, usage);
        assert_eq!(b.text("#in-PermissionGroups").await, groups, "{usage}");
        assert_eq!(b.text("#in-AuthMechanism").await, auth, "{usage}");
    }
    b.screenshot("wizard-receive-connector-internet-1-introduction")
        .await;

    // Internet: Local Network settings, then New Connector.
    press(&b, "#next").await;
    assert_eq!(step(&b).await, "Local Network settings");
    press(&b, "button[value='remove:Bindings']").await;
    press(&b, "button[value='add:Bindings']").await;
    binding_dialog(&b, &ip.to_string(), &default.port().to_string()).await;
    press(&b, "#next").await;
    // Without a Remote page, the pair the Default connector has is refused here.
    let e = error_beside(&b, "Bindings").await;
    assert!(e.contains("conflict") && e.contains("Default HUB1"), "{e}");
    b.screenshot("wizard-receive-connector-internet-2-local-network-settings")
        .await;
    let port = gateway_port();
    press(&b, "button[value='edit:Bindings']").await;
    b.fill("#in-dlg-Port", &port.to_string()).await;
    press(&b, "#dialog-ok").await;
    press(&b, "#next").await;
    assert_eq!(step(&b).await, "New Connector");
    let summary = b.text("#summary").await;
    assert!(
        summary.contains("Remote IP ranges: 0.0.0.0-255.255.255.255"),
        "{summary}"
    );
    b.screenshot("wizard-receive-connector-internet-3-new-connector")
        .await;
    press(&b, "#new").await;
    b.screenshot("wizard-receive-connector-internet-4-completion")
        .await;
    let line = cmdlet(&b).await;
    let (want, got) = rerun_on_empty_org(
        &pool,
        &line,
        "Get-ReceiveConnector 'HUB1\\Internet Mail'",
        None,
    )
    .await;
    assert_eq!(want, got);
    assert!(want.contains("AnonymousUsers"), "{want}");
    assert!(want.contains("0.0.0.0-255.255.255.255"), "{want}");
    finish(&b, "Internet Mail").await;
    assert_eq!(count(&pool, "receive_connector", "Internet Mail").await, 1);

    // Anonymous Internet mail is taken on the new binding at once.
    let addr = SocketAddr::from((ip, port));
    assert!(banner_within_seconds(addr).await.starts_with("220 "));
    let mut smtp = Raw::connect(addr).await;
    smtp.reply().await;
    assert!(smtp.cmd("EHLO mx.fabrikam.test").await.starts_with("250"));
    let r = smtp.cmd("MAIL FROM:<a@fabrikam.test>").await;
    assert!(r.starts_with("250 2.1.0"), "{r}");
    b.close().await;
}

/// The protocol log lines of `connector` written so far.
fn log_lines(dir: &std::path::Path, connector: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out = vec![];
    for e in entries.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        out.extend(
            text.lines()
                .filter(|l| l.contains(&format!(",{connector},")))
                .map(str::to_string),
        );
    }
    out
}

#[tokio::test]
async fn seed_001_cross_forest_receive_connector_in_the_browser() {
    let (console, b) = signed_in(Setup::new().await).await;
    let pool = console.setup.pool.clone();
    let default = console.setup.smtp();
    // Fourth Coffee's Hub Transport server: the address the test's sessions come from.
    let partner = "127.0.0.77";

    open(&b).await;
    b.fill("#in-Name", "Cross-Forest").await;
    choose_usage(&b, "Internal").await;
    press(&b, "#next").await;
    // Internal goes straight to the Remote Network settings.
    assert_eq!(step(&b).await, "Remote Network settings");
    b.screenshot("wizard-receive-connector-internal-1-remote-network-settings")
        .await;
    press(&b, "button[value='remove:RemoteIPRanges']").await;
    press(&b, "button[value='add:RemoteIPRanges']").await;
    b.fill("#in-dlg-Range", partner).await;
    b.screenshot("wizard-receive-connector-internal-2-add-remote-range")
        .await;
    press(&b, "#dialog-ok").await;
    press(&b, "#next").await;
    assert_eq!(step(&b).await, "New Connector");
    b.screenshot("wizard-receive-connector-internal-3-new-connector")
        .await;
    press(&b, "#new").await;
    b.screenshot("wizard-receive-connector-internal-4-completion")
        .await;
    let line = cmdlet(&b).await;
    // It listens where the Default connector does, for the partner alone.
    assert!(line.contains(&default.to_string()), "{line}");
    assert!(line.contains(partner), "{line}");
    let (want, got) = rerun_on_empty_org(
        &pool,
        &line,
        "Get-ReceiveConnector 'HUB1\\Cross-Forest'",
        None,
    )
    .await;
    assert_eq!(want, got);
    finish(&b, "Cross-Forest").await;

    // Properties: protocol logging on; Authentication: Externally Secured instead of TLS and
    // Exchange Server authentication; Permission Groups: Exchange servers only.
    let (id,): (uuid::Uuid,) =
        sqlx::query_as("SELECT id FROM receive_connector WHERE name = 'Cross-Forest'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let props = format!("/receive-connectors/{id}/properties");
    b.goto(&format!("{props}/general")).await;
    b.wait_for("#in-ProtocolLoggingLevel")
        .await
        .select_by_value("Verbose")
        .await
        .unwrap();
    b.click("button[value=ok]").await;
    b.wait_for_path("General saved", |p| !p.contains("/properties/"))
        .await;
    b.goto(&format!("{props}/authentication")).await;
    for m in ["Tls", "ExchangeServer", "ExternalAuthoritative"] {
        b.click(&format!("input[name=AuthMechanism][value={m}]"))
            .await;
    }
    b.screenshot("wizard-receive-connector-internal-5-authentication")
        .await;
    b.click("button[value=ok]").await;
    b.wait_for_path("Authentication saved", |p| !p.contains("/properties/"))
        .await;
    b.goto(&format!("{props}/permission-groups")).await;
    b.click("input[name=PermissionGroups][value=ExchangeLegacyServers]")
        .await;
    b.click("button[value=ok]").await;
    b.wait_for_path("Permission Groups saved", |p| !p.contains("/properties/"))
        .await;
    let mut sh = hubgate::shell::Shell::new(pool.clone(), FQDN);
    let fl = sh
        .run_line("Get-ReceiveConnector 'HUB1\\Cross-Forest' | Format-List AuthMechanism,PermissionGroups,ProtocolLoggingLevel")
        .await
        .unwrap();
    assert!(fl.contains("ExternalAuthoritative"), "{fl}");
    assert!(!fl.contains("ExchangeLegacyServers"), "{fl}");
    assert!(fl.contains("Verbose"), "{fl}");

    // A session from the partner's address is Externally Secured from connect time: the E12
    // rights without the forest and organization header rights.
    let dir = console
        .setup
        .data_dir
        .path()
        .join("logs/ProtocolLog/SmtpReceive");
    let deadline = Instant::now() + Duration::from_secs(60);
    let rights = loop {
        let mut smtp = Raw::connect_from(default, Some(partner)).await;
        assert!(smtp.reply().await.starts_with("220 "));
        assert!(
            smtp.cmd("EHLO hub.fourthcoffee.test")
                .await
                .starts_with("250")
        );
        let r = smtp.cmd("MAIL FROM:<kim@fourthcoffee.test>").await;
        smtp.cmd("QUIT").await;
        let found = eventually_lines(&dir, "HUB1\\Cross-Forest").await;
        if let Some(l) = found {
            assert!(r.starts_with("250 2.1.0"), "{r}");
            break l;
        }
        // The gateway may still hold the old settings for a moment; a new session sees them.
        assert!(Instant::now() < deadline, "no Cross-Forest session logged");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // As Exchange logs them, in the order of their bits.
    assert!(
        rights.ends_with(
            ",*,SMTPSubmit SMTPAcceptAnyRecipient SMTPAcceptAuthenticationFlag SMTPAcceptAnySender SMTPAcceptAuthoritativeDomainSender BypassAntiSpam BypassMessageSizeLimit SMTPAcceptEXCH50 AcceptRoutingHeaders,Set Session Permissions"
        ),
        "{rights}"
    );
    assert!(
        rights.contains(&format!(",{default},{partner}:")),
        "{rights}"
    );
    b.close().await;
}

/// The `Set Session Permissions` line of a session on `connector` whose connector was already
/// Externally Secured, once the log has it (bounded).
async fn eventually_lines(dir: &std::path::Path, connector: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = log_lines(dir, connector)
            .into_iter()
            .filter(|l| l.ends_with(",Set Session Permissions"))
            .find(|l| l.contains("SMTPAcceptAuthenticationFlag"));
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
