//! The server dashboard (Server Configuration › Hub Transport › a server › Dashboard) on a
//! running gateway: its per-minute counts move as mail is received, delivered, deferred and
//! refused; they survive a restart; old rows are pruned after ServerStatisticsMaxAge.

mod common;

use common::browser::Browser;
use common::console::*;
use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;
use hubgate::shell::Shell;

const UP: &str = "127.0.0.81";
const DASHBOARD: &str = "/server/hub/HUB1/dashboard";

/// The connections cell of a receive connector in the dashboard's table.
fn connections(html: &str, connector: &str) -> Option<String> {
    let table = &html[html.find("id=\"connections\"")?..];
    let row = &table[table.find(&format!("<td>{connector}</td>"))?..];
    let row = &row[row.find("</td>")? + 5..];
    cell(&format!("id=\"x\">{}", row.strip_prefix("<td>")?), "x")
}

struct Signed {
    console: Console,
    client: common::https::Client,
    cookie: String,
}

impl Signed {
    async fn start(setup: Setup) -> Signed {
        let console = Console::start(setup, &[]).await;
        let (client, cookie) = administrator(&console).await;
        Signed {
            console,
            client,
            cookie,
        }
    }

    async fn get(&self, path: &str) -> String {
        let r = self.client.get(path, &[("Cookie", &self.cookie)]).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    }

    /// Polls the dashboard until `ok` holds for it (bounded), and returns it.
    async fn dashboard_until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let page = self.get(DASHBOARD).await;
            if ok(&page) {
                return page;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waiting for the dashboard to show {what}; it shows received {}, delivered {}, deferred {}, failed {}, queued {}",
                number(&page, "hour-messages-received"),
                number(&page, "hour-messages-delivered"),
                number(&page, "hour-messages-deferred"),
                number(&page, "hour-messages-failed"),
                number(&page, "live-queued"),
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
}

fn totals(page: &str, window: &str) -> [u64; 4] {
    ["received", "delivered", "deferred", "failed"]
        .map(|k| number(page, &format!("{window}-messages-{k}")))
}

#[tokio::test]
async fn the_dashboard_counts_mail_as_it_flows() {
    let port = peer_port();
    let sink = Sink::with(
        addr(UP, port),
        SinkOptions {
            refuse: vec!["refused@up.example".into()],
            tempfail: vec!["later@up.example".into()],
            ..SinkOptions::default()
        },
    );
    let s = setup().await;
    let hostile_port = s.another_port();
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Up -AddressSpaces 'up.example' -DNSRoutingEnabled $false -SmartHosts '{UP}' -Port {port}"
            ),
            &format!(
                "New-ReceiveConnector '<img src=x onerror=alert(1)>' -Bindings 127.0.0.1:{hostile_port} -RemoteIPRanges 10.9.0.0/16"
            ),
        ],
    )
    .await;
    let smtp = s.smtp();
    let c = Signed::start(s).await;

    // Only for a signed-in administrator.
    let r = c.client.get(DASHBOARD, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        r.header("location")
            .is_some_and(|l| l.starts_with("/logon")),
        "{:?}",
        r.header("location")
    );
    assert_eq!(
        c.client
            .get("/server/hub/NOSUCH/dashboard", &[("Cookie", &c.cookie)])
            .await
            .status,
        404
    );

    // The server's page links its dashboard as a result-pane tab, beside Receive Connectors.
    let server_page = c.get("/server/hub/HUB1").await;
    assert!(
        server_page.contains(&format!("href=\"{DASHBOARD}\">Dashboard</a>")),
        "{server_page}"
    );

    let page = c.get(DASHBOARD).await;
    assert_eq!(
        totals(&page, "hour"),
        [0; 4],
        "a new server has counted nothing"
    );
    assert_eq!(totals(&page, "day"), [0; 4]);
    assert_eq!(number(&page, "live-queued"), 0);
    assert!(page.contains("<svg"), "the charts are drawn on the server");
    assert!(page.contains("id=\"hour-queue\"") && page.contains("id=\"day-messages\""));
    assert_eq!(connections(&page, "Default HUB1").as_deref(), Some("0"));
    // A connector's name is text, never markup.
    assert!(!page.contains("<img"), "{page}");
    assert_eq!(
        connections(&page, "&#60;img src=x onerror=alert(1)&#62;").as_deref(),
        Some("0"),
        "{page}"
    );

    // A client connected now is counted on its connector.
    let mut raw = Raw::connect(smtp).await;
    assert!(raw.reply().await.starts_with("220"));
    let page = c
        .dashboard_until("one connection on Default HUB1", |p| {
            connections(p, "Default HUB1").as_deref() == Some("1")
        })
        .await;
    assert_eq!(connections(&page, "Client HUB1").as_deref(), Some("0"));
    raw.cmd("QUIT").await;

    // Two delivered, one refused by the next hop (its NDR is delivered to the sender's
    // mailbox: a delivery too), one deferred.
    send_to(smtp, "a@up.example", "one");
    send_to(smtp, "b@up.example", "two");
    send_to(smtp, "refused@up.example", "three");
    send_to(smtp, "later@up.example", "four");
    within(60, "the sink received two", || async {
        sink.received().len() == 2
    })
    .await;
    let page = c
        .dashboard_until("4 received, 3 delivered, 1 failed, a deferral", |p| {
            let [r, d, def, f] = totals(p, "hour");
            // The deferred message waits for its retry, as Get-Message shows it.
            r == 4
                && d == 3
                && f == 1
                && def >= 1
                && number(p, "live-queued") == 1
                && number(p, "live-retry") == 1
        })
        .await;
    assert_eq!(number(&page, "live-poison"), 0);
    assert_eq!(totals(&page, "day")[0], 4, "the day includes the hour");
    assert!(number(&page, "hour-queue-queue") >= 1);
    assert_eq!(mailbox(c.console.setup.data_dir.path(), SENDER).len(), 1);

    // In Chromium: the charts as the administrator sees them.
    let b = Browser::start(&c.client.origin()).await;
    b.goto(DASHBOARD).await;
    b.log_on("Administrator", ADMIN_PASSWORD).await;
    b.wait_for_path("the dashboard", |p| p == DASHBOARD).await;
    b.wait_for("#hour-messages svg polyline.received").await;
    assert_eq!(b.text("#hour-messages-received").await, "4");
    assert_eq!(b.text("#hour-messages-failed").await, "1");
    assert_eq!(b.text("#live-queued").await, "1");
    b.screenshot("dashboard").await;
    b.close().await;
}

#[tokio::test]
async fn the_counts_survive_a_restart() {
    let s = setup().await;
    let smtp = s.smtp();
    let mut c = Signed::start(s).await;
    send_to(smtp, SENDER, "kept 1");
    send_to(smtp, SENDER, "kept 2");
    c.dashboard_until("2 received and delivered", |p| {
        totals(p, "hour") == [2, 2, 0, 0]
    })
    .await;

    // Both delivered and their rows gone (the queue's writer is asynchronous): the restart
    // must not find them again.
    let pool = c.console.setup.pool.clone();
    within(30, "the delivered messages' rows removed", || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM message")
            .fetch_one(&pool)
            .await
            .unwrap();
        n == 0
    })
    .await;
    c.console.restart().await;
    // The counts were in memory only (unless a minute ended meanwhile): the stop wrote them.
    let (received, delivered): (i64, i64) = sqlx::query_as(
        "SELECT coalesce(sum(received), 0)::bigint, coalesce(sum(delivered), 0)::bigint FROM server_statistics WHERE server = 'HUB1'",
    )
    .fetch_one(&c.console.setup.pool)
    .await
    .unwrap();
    assert_eq!((received, delivered), (2, 2));
    c.cookie = session_cookie(
        &sign_in(&c.client, "Administrator", ADMIN_PASSWORD)
            .await
            .unwrap_or_else(|r| panic!("sign-in refused: {}", r.body)),
    );
    let page = c.get(DASHBOARD).await;
    assert_eq!(totals(&page, "hour"), [2, 2, 0, 0]);

    // And counting goes on after it.
    send_to(smtp, SENDER, "after");
    c.dashboard_until("3 received and delivered", |p| {
        totals(p, "hour") == [3, 3, 0, 0]
    })
    .await;
}

async fn rows(pool: &sqlx::PgPool) -> Vec<i64> {
    let r: Vec<(i64,)> = sqlx::query_as(
        "SELECT received FROM server_statistics WHERE server = 'HUB1' ORDER BY minute",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    r.into_iter().map(|(n,)| n).collect()
}

#[tokio::test]
async fn rows_older_than_server_statistics_max_age_are_pruned() {
    let s = Setup::new().await;
    // Marked by their counts: 8 and 6 days old, and one an hour old.
    for (days, mark) in [("8 days", 800), ("6 days", 600), ("1 hour", 1)] {
        s.sql(&format!(
            "INSERT INTO server_statistics (server, minute, received)
             VALUES ('HUB1', date_trunc('minute', now() - interval '{days}'), {mark})"
        ))
        .await;
    }
    let gw = s.start().await;
    // The default keeps 7 days: the 8-day-old row goes when the node starts.
    within(60, "the 8-day-old row pruned", || async {
        rows(gw.pool()).await == vec![600, 1]
    })
    .await;

    let mut sh = Shell::new(gw.pool().clone(), FQDN);
    let fl = sh
        .run_line("Get-TransportServer HUB1 | Format-List ServerStatisticsMaxAge")
        .await
        .unwrap();
    assert!(fl.contains("ServerStatisticsMaxAge : 7.00:00:00"), "{fl}");
    // Out of range: refused, nothing changes.
    let e = sh
        .run_line("Set-TransportServer HUB1 -ServerStatisticsMaxAge 00:10:00")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("ServerStatisticsMaxAge"), "{e}");
    assert_eq!(rows(gw.pool()).await, vec![600, 1]);

    // A shorter age applies at once (the node reloads its configuration), not at the next minute.
    sh.run_line("Set-TransportServer HUB1 -ServerStatisticsMaxAge 5.00:00:00")
        .await
        .unwrap();
    within(30, "the 6-day-old row pruned", || async {
        rows(gw.pool()).await == vec![1]
    })
    .await;
}
