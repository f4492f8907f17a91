//! The Anti-spam tab's per-agent counts on a running gateway: mail refused by an IP Block List
//! entry moves the Connection Filtering Agent's counts as the console reads them (the current,
//! unwritten minute included), and they survive a restart.

mod common;

use common::antispam::rcpts;
use common::console::*;
use common::mail::*;
use common::*;

const TAB: &str = "/org/hub/anti-spam";
const BLOCKED: &str = "127.0.0.201";
const SERVED: &str = "127.0.0.202";

/// The block list's row and the agent's refusals, for the last hour and day.
fn figures(page: &str) -> [u64; 4] {
    [
        "ip-block-list-hour",
        "ip-block-list-day",
        "connection-filtering-agent-hour-fail",
        "connection-filtering-agent-day-fail",
    ]
    .map(|id| number(page, id))
}

/// One anonymous session from `from` with `n` RCPTs; their replies.
async fn rcpts_from(smtp: std::net::SocketAddr, from: &str, n: usize) -> Vec<String> {
    rcpts(smtp, Some(from), "client.example", &vec![SENDER; n]).await
}

/// The tab as the signed-in administrator sees it.
async fn tab(console: &Console) -> String {
    let (client, cookie) = administrator(console).await;
    let r = client.get(TAB, &[("Cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn stored(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(count), 0)::bigint FROM antispam_statistics
          WHERE agent = 'Connection Filtering Agent' AND event = 'FAIL'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn refusals_move_the_connection_filtering_agents_counts_and_survive_a_restart() {
    let s = setup().await;
    configure(
        &s,
        &[
            &format!("Add-IPBlockListEntry -IPAddress {BLOCKED} -Comment 'spam run'"),
            // Refusals are tarpitted; the test needs none of that delay.
            "Set-ReceiveConnector 'Default HUB1' -TarpitInterval 00:00:00",
        ],
    )
    .await;
    let mut console = Console::start(s, &[]).await;
    let (client, cookie) = administrator(&console).await;
    let get = |path: &'static str| {
        let (client, cookie) = (&client, &cookie);
        async move {
            let r = client.get(path, &[("Cookie", cookie)]).await;
            assert_eq!(r.status, 200, "GET {path}: {}", r.body);
            r.body
        }
    };
    let page = get(TAB).await;
    assert_eq!(figures(&page), [0, 0, 0, 0]);
    assert_eq!(
        cell(&page, "ip-block-list-status").as_deref(),
        Some("Enabled")
    );
    assert_eq!(
        cell(&page, "ip-allow-list-status").as_deref(),
        Some("Enabled")
    );

    // Well inside a minute, so that the page is read before the minute's counts are written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while time::OffsetDateTime::now_utc().second() >= 40 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let minute = time::OffsetDateTime::now_utc().minute();
    let smtp = console.setup.smtp();
    for r in rcpts_from(smtp, BLOCKED, 3).await {
        assert!(r.starts_with("550 5.7.1 External client"), "{r}");
    }
    // A source the list does not name is served, and moves nothing.
    for r in rcpts_from(smtp, SERVED, 1).await {
        assert!(r.starts_with("250 "), "{r}");
    }
    let page = get(TAB).await;
    let written = stored(&console.setup.pool).await;
    assert_eq!(figures(&page), [3, 3, 3, 3], "{page}");
    if time::OffsetDateTime::now_utc().minute() == minute {
        assert_eq!(
            written, 0,
            "the minute's counts were written before it ended"
        );
    }

    // A clean stop writes what was counted; the restarted node reads it back.
    console.restart().await;
    assert_eq!(stored(&console.setup.pool).await, 3);
    let page = tab(&console).await;
    assert_eq!(figures(&page), [3, 3, 3, 3], "{page}");
}

async fn stored_marks(pool: &sqlx::PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT count FROM antispam_statistics ORDER BY minute")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn stored_counts_are_read_by_window_and_pruned_after_server_statistics_max_age() {
    let s = Setup::new().await;
    // Marked by their counts: 8 and 6 days old, and two hours old.
    for (age, mark) in [("8 days", 800), ("6 days", 600), ("2 hours", 2)] {
        s.sql(&format!(
            "INSERT INTO antispam_statistics (server, minute, agent, event, count)
             VALUES ('HUB1', date_trunc('minute', now() - interval '{age}'),
                     'Connection Filtering Agent', 'FAIL', {mark})"
        ))
        .await;
    }
    let console = Console::start(s, &[]).await;
    let pool = console.setup.pool.clone();
    // The default keeps 7 days: the 8-day-old row goes when the node starts.
    within(60, "the 8-day-old row pruned", || async {
        stored_marks(&pool).await == vec![600, 2]
    })
    .await;
    // The two-hour-old row is in the last 24 hours, not in the last hour; the 6-day-old in
    // neither.
    let page = tab(&console).await;
    assert_eq!(figures(&page), [0, 2, 0, 2], "{page}");

    // A shorter age applies at once (the node reloads its configuration), not at the next minute.
    configure(
        &console.setup,
        &["Set-TransportServer HUB1 -ServerStatisticsMaxAge 5.00:00:00"],
    )
    .await;
    within(30, "the 6-day-old row pruned", || async {
        stored_marks(&pool).await == vec![2]
    })
    .await;
}
