//! Seeds 004 (a backup MX for another site's domain) and 001 (a cross-forest send connector
//! with Basic Authentication over TLS) done click by click in the browser, then proven over
//! SMTP against real next hops: aiosmtpd on 127.0.0.x, found through the tests' DNS server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::browser::Browser;
use crate::common::dns::{Dns, Zone};
use crate::common::mail::{SENDER, addr, setup};
use crate::common::peers::{Sink, SinkOptions};
use crate::common::wizard::*;
use crate::common::*;
use crate::signed_in;
use hubgate::shell::Shell;

const SENDS: &str = "/org/hub/send-connectors";

const BACKUP_DOMAIN: &str = "cryer.test";
const PRIMARY_IP: &str = "127.0.0.81";
const OTHER_MAIL_IP: &str = "127.0.0.82";

const PARTNER_DOMAIN: &str = "fourthcoffee.test";
const HUB1_IP: &str = "127.0.0.91";
const HUB2_IP: &str = "127.0.0.92";
const XFOREST_USER: &str = "FOURTHCOFFEE\\CrossForest";
const XFOREST_PASSWORD: &str = "Xf0rest-Relay-pw";

async fn shell(s: &Setup, lines: &[&str]) {
    let mut sh = Shell::new(s.pool.clone(), FQDN).with_data_dir(s.data_dir.path().to_path_buf());
    for l in lines {
        sh.run_line(l).await.unwrap_or_else(|e| panic!("{l}: {e}"));
    }
}

async fn run(pool: &sqlx::PgPool, line: &str) -> String {
    Shell::new(pool.clone(), FQDN)
        .run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// The blocks of a Format-List output, each as name -> value (continuation lines dropped).
fn blocks(out: &str) -> Vec<HashMap<String, String>> {
    out.split("\n\n")
        .map(|b| {
            b.lines()
                .filter_map(|l| l.split_once(" : "))
                .filter(|(n, _)| !n.trim().is_empty())
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .collect::<HashMap<_, _>>()
        })
        .filter(|b| !b.is_empty())
        .collect()
}

/// Polls `f` every 200 ms until it gives a value, for at most `secs` seconds.
async fn until<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    for _ in 0..secs * 5 {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

/// Sends one message to the gateway's Default connector, as another site's server would.
fn send_to(s: &Setup, from: &str, to: &str, subject: &str) {
    let server = s.smtp().to_string();
    let (ok, out) = swaks(&[
        "--server",
        &server,
        "--from",
        from,
        "--to",
        to,
        "--header",
        &format!("Subject: {subject}"),
        "--body",
        "sent through the gateway by the seeds' tests",
    ]);
    assert!(ok, "swaks failed: {out}");
}

/// Finish: back on the send connectors with the new one selected; its id.
async fn finished_at(b: &Browser) -> String {
    let at = b
        .wait_for_path("the send connectors", |p| {
            p.starts_with(&format!("{SENDS}?selected="))
        })
        .await;
    at.rsplit_once("selected=").unwrap().1.to_string()
}

/// A send connector's Properties: one input of `tab` changed, then OK (back to the list).
async fn edit_tab(b: &Browser, id: &str, tab: &str, css: &str, value: &str, shot: &str) {
    let url = format!("/send-connectors/{id}/properties/{tab}");
    b.goto(&url).await;
    b.fill(css, value).await;
    b.screenshot(shot).await;
    b.click("button[value=ok]").await;
    b.wait_for_path(&format!("{url} saved"), |p| !p.contains("/properties/"))
        .await;
}

/// Picks `value` in the select `css`.
async fn choose(b: &Browser, css: &str, value: &str) {
    b.wait_for(css)
        .await
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("{css} = {value}: {e}"));
}

/// Whether the checkbox, radio button or option is ticked.
async fn ticked(b: &Browser, css: &str) -> bool {
    b.wait_for(css).await.is_selected().await.unwrap()
}

/// Get-SendConnector's Format-List of `name`.
async fn connector(pool: &sqlx::PgPool, name: &str) -> HashMap<String, String> {
    let out = run(pool, &format!("Get-SendConnector '{name}' | Format-List")).await;
    blocks(&out)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{out}"))
}

/// Waits until the running gateway has loaded every configuration change made so far: it
/// reloads the whole organisation on each change, so once the Default connector's banner shows
/// a new marker, the earlier changes (the connectors the wizard made) are in force too.
async fn gateway_caught_up(s: &Setup, marker: &str) {
    shell(
        s,
        &[&format!(
            "Set-ReceiveConnector 'Default HUB1' -Banner '220 {marker}'"
        )],
    )
    .await;
    let smtp = s.smtp();
    until(
        30,
        "the gateway loaded the new configuration",
        || async move {
            let mut c = Raw::connect(smtp).await;
            let greeting = c.reply().await;
            c.cmd("QUIT").await;
            greeting.contains(marker).then_some(())
        },
    )
    .await;
}

fn parse_time(s: &str) -> time::PrimitiveDateTime {
    let f = time::macros::format_description!(
        "[month padding:none]/[day padding:none]/[year] [hour repr:12 padding:none]:[minute]:[second] [period]"
    );
    time::PrimitiveDateTime::parse(s, &f).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Seed 004, "Configure the backup email server to accept emails for the domain": New Accepted
/// Domain, External Relay. The article's three days of message expiration are the domain's own
/// override here (the article wished Exchange 2007 had one: its setting was server-wide).
async fn backup_accepted_domain(b: &Browser) {
    b.goto("/org/hub/accepted-domains").await;
    b.click("aside.actions a[href='/accepted-domains/new']")
        .await;
    assert_eq!(step(b).await, "New Accepted Domain");
    b.fill("#in-Name", &format!("Backup email for {BACKUP_DOMAIN}"))
        .await;
    b.fill("#in-DomainName", BACKUP_DOMAIN).await;
    b.click("input[name=DomainType][value=ExternalRelay]").await;
    b.fill("#in-MessageExpirationTimeout", "3.00:00:00").await;
    b.screenshot("seed004-1-new-accepted-domain").await;
    press(b, "#new").await;
    assert_eq!(step(b).await, "Completion");
    let line = cmdlet(b).await;
    assert!(line.contains("-DomainType ExternalRelay"), "{line}");
    b.screenshot("seed004-2-accepted-domain-completion").await;
    b.click("#finish").await;
    b.wait_for_path("the accepted domains", |p| {
        p.starts_with("/org/hub/accepted-domains?selected=")
    })
    .await;
}

/// Seed 004, "To create a new send connector": Internet, the domain at cost 1 without its
/// subdomains, not scoped, DNS MX, this server as the source, New, Finish.
async fn backup_send_connector(s: &Setup, b: &Browser, port: u16) {
    let name = format!("Send connector for {BACKUP_DOMAIN}");
    b.goto(SENDS).await;
    b.click("aside.actions a[href='/send-connectors/new']")
        .await;
    assert_eq!(step(b).await, "Introduction");
    b.fill("#in-Name", &name).await;
    choose(b, "#in-Usage", "Internet").await;
    b.screenshot("seed004-3-introduction").await;
    press(b, "#next").await;

    assert_eq!(step(b).await, "Address space");
    press(b, "button[value='add:AddressSpaces']").await;
    b.fill("#in-dlg-Address", BACKUP_DOMAIN).await;
    assert_eq!(value(b, "#in-dlg-Cost").await, "1", "the cost starts at 1");
    assert!(!ticked(b, "#in-dlg-IncludeSubdomains").await);
    b.screenshot("seed004-4-smtp-address-space").await;
    press(b, "#dialog-ok").await;
    let list = b.text("#list-AddressSpaces").await;
    assert!(list.contains(BACKUP_DOMAIN), "{list}");
    assert!(!ticked(b, "#in-IsScopedConnector").await);
    b.screenshot("seed004-5-address-space").await;
    press(b, "#next").await;

    assert_eq!(step(b).await, "Network settings");
    assert!(
        ticked(b, "input[name=Routing][value=DNS]").await,
        "Internet starts on DNS MX"
    );
    // The article leaves this unticked: its server's own DNS finds the primary's MX. Here the
    // tests' DNS server stands for the Internet's, and the gateway asks it as its External DNS
    // Lookup server.
    b.click("#in-UseExternalDNSServersEnabled").await;
    b.screenshot("seed004-6-network-settings").await;
    press(b, "#next").await;

    // DNS MX: no smart host authentication page.
    assert_eq!(step(b).await, "Source Server");
    assert!(
        ticked(b, "input[name=SourceTransportServers][value=HUB1]").await,
        "this server is preselected"
    );
    b.screenshot("seed004-7-source-server").await;
    press(b, "#next").await;

    assert_eq!(step(b).await, "New Connector");
    let summary = b.text("#summary").await;
    assert!(summary.contains(BACKUP_DOMAIN), "{summary}");
    b.screenshot("seed004-8-new-connector").await;
    press(b, "#new").await;
    assert_eq!(step(b).await, "Completion");
    let line = cmdlet(b).await;
    assert!(line.contains("New-SendConnector"), "{line}");
    b.screenshot("seed004-9-completion").await;
    b.click("#finish").await;
    let id = finished_at(b).await;

    let made = connector(&s.pool, &name).await;
    assert_eq!(made["AddressSpaces"], format!("{{SMTP:{BACKUP_DOMAIN};1}}"));
    assert_eq!(made["DNSRoutingEnabled"], "True");
    assert_eq!(made["UseExternalDNSServersEnabled"], "True");
    assert_eq!(made["IsScopedConnector"], "False");
    assert_eq!(made["SourceTransportServers"], "{HUB1}");
    // The EMC's wizard has no port (the primary listens on the sink's): set afterwards on the
    // connector's Properties, Network tab.
    edit_tab(
        b,
        &id,
        "network",
        "#in-Port",
        &port.to_string(),
        "seed004-10-properties-port",
    )
    .await;
    assert_eq!(connector(&s.pool, &name).await["Port"], port.to_string());
}

/// Seed 004 in the browser, then over SMTP: mail for the domain is held while the primary is
/// down (queued in Retry, seen with Get-Queue and Get-Message, expiring after the domain's three
/// days) and delivered by MX once the primary is back; the server's other connector (a smart
/// host for everything else, cost 2 as the article asks) never sees it.
#[tokio::test]
async fn seed004_backup_mx_holds_mail_while_the_primary_is_down() {
    let port = peer_port();
    let mut primary = Sink::down(addr(PRIMARY_IP, port), SinkOptions::default());
    let other_mail = Sink::start(addr(OTHER_MAIL_IP, port));
    let dns = Dns::start(
        BACKUP_DOMAIN,
        Zone {
            // The article's last step: this gateway published as the domain's backup MX, with a
            // higher preference value than the primary's; the gateway drops itself from the list.
            mx: vec![
                (BACKUP_DOMAIN, 10, "mail.cryer.test"),
                (BACKUP_DOMAIN, 20, FQDN),
            ],
            a: vec![("mail.cryer.test", PRIMARY_IP.parse().unwrap())],
        },
    )
    .await;
    let s = Setup::new().await;
    shell(
        &s,
        &[
            // The server's existing route for everything else, through a smart host.
            &format!(
                "New-SendConnector -Name 'All other mail' -AddressSpaces '*' -SmartHosts '{OTHER_MAIL_IP}' -Port {port}"
            ),
            // The tests' DNS server stands for the Internet's; retries shortened for the test.
            &format!(
                "Set-TransportServer HUB1 -ExternalDNSServers '{}' -TransientFailureRetryInterval 00:00:02 -OutboundConnectionFailureRetryInterval 00:00:02",
                dns.addr
            ),
        ],
    )
    .await;
    let (console, b) = signed_in(s).await;
    let s = &console.setup;
    let pool = s.pool.clone();

    backup_accepted_domain(&b).await;
    backup_send_connector(s, &b, port).await;
    // "edit the existing send connector and ensure that the Cost associated with it is greater
    // than 1": its Address Space tab.
    let other = connector(&pool, "All other mail").await;
    assert_eq!(other["AddressSpaces"], "{SMTP:*;1}");
    let (other_id,): (uuid::Uuid,) =
        sqlx::query_as("SELECT id FROM send_connector WHERE name = 'All other mail'")
            .fetch_one(&pool)
            .await
            .unwrap();
    edit_tab(
        &b,
        &other_id.to_string(),
        "address-space",
        "#in-AddressSpaces",
        "SMTP:*;2",
        "seed004-11-other-connector-cost-2",
    )
    .await;
    assert_eq!(
        connector(&pool, "All other mail").await["AddressSpaces"],
        "{SMTP:*;2}"
    );
    gateway_caught_up(s, "backup ready").await;

    // "A simple test is to send an email directly to the backup email server".
    let to = format!("bob@{BACKUP_DOMAIN}");
    send_to(s, "alice@northwind.test", &to, "while the primary is down");

    let queue = until(
        60,
        "the message held in a Retry queue for the domain",
        || {
            let pool = pool.clone();
            async move {
                let out = run(&pool, "Get-Queue | Format-List").await;
                blocks(&out).into_iter().find(|q| {
                    q.get("NextHopDomain").map(String::as_str) == Some(BACKUP_DOMAIN)
                        && q.get("Status").map(String::as_str) == Some("Retry")
                        && q.get("MessageCount").map(String::as_str) == Some("1")
                        && q.get("LastError").is_some_and(|e| !e.is_empty())
                })
            }
        },
    )
    .await;
    let id = queue["Identity"].clone();
    assert_eq!(queue["DeliveryType"], "DnsConnectorDelivery", "{queue:?}");
    // Held across attempts: still there after a second failed one.
    let message = until(
        60,
        "a second failed attempt, the message still held",
        || {
            let (pool, id) = (pool.clone(), id.clone());
            async move {
                let out = run(&pool, &format!("Get-Message -Queue '{id}' | Format-List")).await;
                let m = blocks(&out).into_iter().next()?;
                let tries: u32 = m.get("RetryCount")?.parse().ok()?;
                let waiting = m.get("Status").map(String::as_str) == Some("Retry");
                (tries >= 2 && waiting).then_some(m)
            }
        },
    )
    .await;
    // The primary refuses connections: Exchange's words for it.
    assert!(
        message["LastError"].contains("Unable to connect"),
        "{message:?}"
    );
    assert_eq!(message["FromAddress"], "alice@northwind.test");
    assert_eq!(message["Subject"], "while the primary is down");
    let held_for = parse_time(&message["ExpirationTime"]) - parse_time(&message["DateReceived"]);
    assert_eq!(held_for, time::Duration::days(3), "{message:?}");
    assert!(primary.received().is_empty());
    assert!(
        other_mail.received().is_empty(),
        "went through the other connector"
    );
    b.close().await;

    // The primary returns: the next retry delivers through its MX.
    primary.restart();
    until(60, "delivered to the primary once it is back", || async {
        (primary.recipients() == vec![to.clone()]).then_some(())
    })
    .await;
    let got = &primary.received()[0];
    assert_eq!(got.mail_from, "alice@northwind.test");
    assert!(got.data.contains("Subject: while the primary is down"));
    until(30, "the queue emptied", || {
        let (pool, id) = (pool.clone(), id.clone());
        async move {
            let out = run(&pool, "Get-Queue | Format-List").await;
            let left = blocks(&out).into_iter().any(|q| {
                q.get("Identity") == Some(&id)
                    && q.get("MessageCount").map(String::as_str) != Some("0")
            });
            (!left).then_some(())
        }
    })
    .await;
    assert!(other_mail.received().is_empty());
}

/// Seed 001's New SMTP Send Connector wizard: Internal, the partner's domain, two smart hosts
/// by FQDN (Basic Authentication over TLS needs names, not addresses), Basic Authentication
/// over TLS with the cross-forest account, this server as the source, New, Finish.
async fn cross_forest_send_connector(s: &Setup, b: &Browser, port: u16) {
    b.goto(SENDS).await;
    b.click("aside.actions a[href='/send-connectors/new']")
        .await;
    assert_eq!(step(b).await, "Introduction");
    b.fill("#in-Name", "Cross-Forest").await;
    choose(b, "#in-Usage", "Internal").await;
    b.screenshot("seed001-1-introduction").await;
    press(b, "#next").await;

    assert_eq!(step(b).await, "Address space");
    press(b, "button[value='add:AddressSpaces']").await;
    b.fill("#in-dlg-Address", PARTNER_DOMAIN).await;
    b.screenshot("seed001-2-smtp-address-space").await;
    press(b, "#dialog-ok").await;
    b.screenshot("seed001-3-address-space").await;
    press(b, "#next").await;

    // "only the Route all mail through the following smart hosts: setting can be selected".
    assert_eq!(step(b).await, "Network settings");
    let dns = b.wait_for("input[name=Routing][value=DNS]").await;
    assert!(!dns.is_enabled().await.unwrap(), "Internal offers DNS MX");
    assert!(ticked(b, "input[name=Routing][value=SmartHosts]").await);
    for (i, host) in ["hub1", "hub2"].iter().enumerate() {
        press(b, "button[value='add:SmartHosts']").await;
        b.click("input[name=dlg-Kind][value=FQDN]").await;
        b.fill("#in-dlg-Address", &format!("{host}.{PARTNER_DOMAIN}"))
            .await;
        b.screenshot(&format!("seed001-{}-add-smart-host", 4 + i))
            .await;
        press(b, "#dialog-ok").await;
    }
    // The partner forest's names are in the tests' DNS server, which the gateway asks as its
    // External DNS Lookup server (the seed's own servers would find them in their DNS).
    b.click("#in-UseExternalDNSServersEnabled").await;
    let list = b.text("#list-SmartHosts").await;
    assert!(
        list.contains("hub1.fourthcoffee.test") && list.contains("hub2.fourthcoffee.test"),
        "{list}"
    );
    b.screenshot("seed001-6-network-settings").await;
    press(b, "#next").await;

    assert_eq!(
        step(b).await,
        "Configure smart host authentication settings"
    );
    b.click("input[name=SmartHostAuthMechanism][value=BasicAuth]")
        .await;
    b.click("#in-BasicAuthRequireTLS").await;
    b.fill("#in-UserName", XFOREST_USER).await;
    b.fill("#in-Password", XFOREST_PASSWORD).await;
    b.screenshot("seed001-7-smart-host-authentication").await;
    press(b, "#next").await;

    assert_eq!(step(b).await, "Source Server");
    assert!(ticked(b, "input[name=SourceTransportServers][value=HUB1]").await);
    b.screenshot("seed001-8-source-server").await;
    press(b, "#next").await;

    assert_eq!(step(b).await, "New Connector");
    let summary = b.text("#summary").await;
    assert!(
        summary.contains("Basic Authentication over TLS"),
        "{summary}"
    );
    assert!(!summary.contains(XFOREST_PASSWORD), "{summary}");
    b.screenshot("seed001-9-new-connector").await;
    press(b, "#new").await;
    assert_eq!(step(b).await, "Completion");
    let line = cmdlet(b).await;
    assert!(line.contains("BasicAuthRequireTLS"), "{line}");
    assert!(
        !line.contains(XFOREST_PASSWORD),
        "the password in the shell line: {line}"
    );
    b.screenshot("seed001-10-completion").await;
    b.click("#finish").await;
    let id = finished_at(b).await;

    let made = connector(&s.pool, "Cross-Forest").await;
    assert_eq!(made["Usage"], "Internal");
    assert_eq!(
        made["AddressSpaces"],
        format!("{{SMTP:{PARTNER_DOMAIN};1}}")
    );
    assert_eq!(made["DNSRoutingEnabled"], "False");
    assert_eq!(
        made["SmartHosts"],
        "{hub1.fourthcoffee.test, hub2.fourthcoffee.test}"
    );
    assert_eq!(made["SmartHostAuthMechanism"], "BasicAuthRequireTLS");
    assert_eq!(made["SourceTransportServers"], "{HUB1}");
    let (stored,): (String,) =
        sqlx::query_as("SELECT auth_password FROM send_connector WHERE name = 'Cross-Forest'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert!(
        stored.starts_with("hgv1:") && !stored.contains(XFOREST_PASSWORD),
        "the password is not sealed at rest: {stored}"
    );
    assert_eq!(made["UseExternalDNSServersEnabled"], "True");
    // The EMC's wizard has no port (the partner's servers listen on the sinks'): set
    // afterwards on the connector's Properties, Network tab.
    edit_tab(
        b,
        &id,
        "network",
        "#in-Port",
        &port.to_string(),
        "seed001-11-properties-port",
    )
    .await;
    assert_eq!(
        connector(&s.pool, "Cross-Forest").await["Port"],
        port.to_string()
    );
}

/// Seed 001 in the browser, then against the partner forest's two hub servers: real SMTP
/// servers that require STARTTLS before AUTH, with certificates from the partner's private CA
/// (trusted by the gateway). The message arrives over TLS, authenticated as the cross-forest
/// account; with the first smart host down the second one takes the next message.
#[tokio::test]
async fn seed001_cross_forest_connector_authenticates_over_tls_to_either_smart_host() {
    let port = peer_port();
    let hub1 = format!("hub1.{PARTNER_DOMAIN}");
    let hub2 = format!("hub2.{PARTNER_DOMAIN}");
    let certs = tempfile::tempdir().unwrap();
    let (ca, leaves) = private_ca(&[&hub1, &hub2]);
    let mut paths = Vec::new();
    for (i, (cert, key)) in leaves.iter().enumerate() {
        let c = certs.path().join(format!("hub{}.crt", i + 1));
        let k = certs.path().join(format!("hub{}.key", i + 1));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        paths.push((c, k));
    }
    let opts = |i: usize| SinkOptions {
        tls: Some(paths[i].clone()),
        require_tls: true,
        auth: Some(format!("{XFOREST_USER}:{XFOREST_PASSWORD}")),
        ..Default::default()
    };
    let mut first = Sink::with(addr(HUB1_IP, port), opts(0));
    let second = Sink::with(addr(HUB2_IP, port), opts(1));
    let dns = Dns::start(
        PARTNER_DOMAIN,
        Zone {
            mx: vec![],
            a: vec![
                ("hub1.fourthcoffee.test", HUB1_IP.parse().unwrap()),
                ("hub2.fourthcoffee.test", HUB2_IP.parse().unwrap()),
            ],
        },
    )
    .await;
    // An organisation whose Default connector relays for anonymous senders (as a hub behind
    // the organisation's own servers would), with a mailbox for the sender.
    let s = setup().await;
    let trusted = s.data_dir.path().join("certs").join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::write(trusted.join("fourthcoffee-ca.pem"), &ca).unwrap();
    shell(
        &s,
        &[&format!(
            "Set-TransportServer HUB1 -ExternalDNSServers '{}' -TransientFailureRetryInterval 00:00:01 -OutboundConnectionFailureRetryInterval 00:00:01",
            dns.addr
        )],
    )
    .await;
    let (console, b) = signed_in(s).await;
    let s = &console.setup;

    cross_forest_send_connector(s, &b, port).await;
    gateway_caught_up(s, "cross-forest ready").await;
    b.close().await;

    send_to(
        s,
        SENDER,
        &format!("ann@{PARTNER_DOMAIN}"),
        "across forests",
    );
    until(60, "delivered to the first smart host", || async {
        (first.recipients() == vec![format!("ann@{PARTNER_DOMAIN}")]).then_some(())
    })
    .await;
    let got = &first.received()[0];
    assert!(got.tls, "not over TLS");
    assert_eq!(got.auth.as_deref(), Some(XFOREST_USER));
    assert!(second.received().is_empty());

    // The first hub server goes down: the second smart host takes the next message.
    first.stop();
    send_to(s, SENDER, &format!("ben@{PARTNER_DOMAIN}"), "hub1 is down");
    until(60, "delivered to the second smart host", || async {
        (second.recipients() == vec![format!("ben@{PARTNER_DOMAIN}")]).then_some(())
    })
    .await;
    let got = &second.received()[0];
    assert!(got.tls, "not over TLS");
    assert_eq!(got.auth.as_deref(), Some(XFOREST_USER));
    assert_eq!(first.received().len(), 1);
}
