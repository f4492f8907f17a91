//! Toolbox › Outage in a real browser: a primary (aiosmtpd on 127.0.0.x) down, mail for it held;
//! the view shows its queue in Retry with the error, the counts, the oldest message's age and
//! the delay DSN and expiry times its accepted domain's overrides give; Suspend holds it; a bad
//! rate is refused with its reason and changes nothing; "Resume at N messages per minute" once
//! the primary is back releases the backlog at that pace. A message held for the primary and for
//! a second next hop that stays down then shows, in its properties opened from the Queue Viewer,
//! the primary's recipient Delivered with the refused attempt before the 250, and its tracking
//! events DEFER before SEND. Forged posts to Suspend and Resume change nothing. Screenshots
//! `outage-view` and `queue-viewer-properties-after-release`.

mod common;

use common::browser::Browser;
use common::console::*;
use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;
use fantoccini::Locator;

const PRIMARY: &str = "127.0.0.96";
/// A second next hop where nothing listens for the whole test.
const SECOND: &str = "127.0.0.97";

type QueueState = (i64, String, bool, Option<i32>, i64);

async fn primary_queue(pool: &sqlx::PgPool) -> Option<QueueState> {
    sqlx::query_as(
        "SELECT q.id, q.status, q.suspended, q.release_rate,
                (SELECT count(*) FROM message_recipient r
                  WHERE r.queue_id = q.id AND r.status NOT IN ('Delivered', 'Failed'))
           FROM delivery_queue q WHERE q.next_hop_domain = $1",
    )
    .bind(PRIMARY)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// The second hop's queue id once it holds its one recipient in Retry.
async fn second_queue(pool: &sqlx::PgPool) -> Option<i64> {
    sqlx::query_as::<_, (i64,)>(
        "SELECT q.id FROM delivery_queue q
          WHERE q.next_hop_domain = $1 AND q.status = 'Retry'
            AND (SELECT count(*) FROM message_recipient r
                  WHERE r.queue_id = q.id AND r.status = 'Retry') = 1",
    )
    .bind(SECOND)
    .fetch_optional(pool)
    .await
    .unwrap()
    .map(|(id,)| id)
}

/// The outage view's rows of one queue (`HUB1\<id>`, the backslash escaped for CSS).
fn outage_row(id: i64) -> String {
    format!("tbody.outage[data-identity='{SERVER}\\\\{id}']")
}

/// The cells' texts of each row `css` matches.
async fn rows(b: &Browser, css: &str) -> Vec<Vec<String>> {
    let mut out = vec![];
    for row in b.client.find_all(Locator::Css(css)).await.unwrap() {
        let mut cells = vec![];
        for cell in row.find_all(Locator::Css("td")).await.unwrap() {
            cells.push(cell.text().await.unwrap());
        }
        out.push(cells);
    }
    out
}

/// Waits (bounded) until the view, reloaded by the form's redirect, shows `want` in a cell.
async fn cell_becomes(b: &Browser, row: &str, class: &str, want: &str) {
    let css = format!("{row} td.{class}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = b.text(&css).await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css} shows {got:?}, not {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_outage_view_shows_the_failing_next_hop_and_releases_it_at_a_rate() {
    let port = peer_port();
    let mut primary = Sink::down(addr(PRIMARY, port), SinkOptions::default());
    let s = setup().await;
    configure(
        &s,
        &[
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:15:00 -OutboundConnectionFailureRetryInterval 00:15:00",
            // The customer's own timers: the view must show these, not the server's.
            "New-AcceptedDomain Primary -DomainName primary.example -DomainType ExternalRelay -MessageExpirationTimeout 3.00:00:00 -DelayNotificationTimeout 02:00:00",
            &format!(
                "New-SendConnector -Name Primary -AddressSpaces 'primary.example' -DNSRoutingEnabled $false -SmartHosts '{PRIMARY}' -Port {port}"
            ),
            "New-AcceptedDomain Second -DomainName second.example -DomainType ExternalRelay",
            &format!(
                "New-SendConnector -Name Second -AddressSpaces 'second.example' -DNSRoutingEnabled $false -SmartHosts '{SECOND}' -Port {}",
                peer_port()
            ),
        ],
    )
    .await;
    let console = Console::start(s, &[]).await;
    let pool = console.setup.pool.clone();
    let smtp = console.setup.smtp();
    // Four messages, five recipients at the primary; the first also for the second hop.
    send_to(smtp, "a@primary.example,z@second.example", "held 0");
    send_to(smtp, "b@primary.example,u1@primary.example", "held 1");
    for i in 2..4 {
        send_to(smtp, &format!("u{i}@primary.example"), &format!("held {i}"));
    }
    within(
        60,
        "the primary's queue in Retry with 5 recipients",
        || async {
            primary_queue(&pool)
                .await
                .is_some_and(|(_, st, _, _, n)| st == "Retry" && n == 5)
        },
    )
    .await;
    within(60, "the second hop's queue in Retry", || async {
        second_queue(&pool).await.is_some()
    })
    .await;
    let second = second_queue(&pool).await.unwrap();
    let (id, ..) = primary_queue(&pool).await.unwrap();
    let row = outage_row(id);
    let (last_error,): (String,) =
        sqlx::query_as("SELECT last_error FROM delivery_queue WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();

    // A forged post (no token) acts on nothing.
    let c = console.client();
    let cookie = session_cookie(&sign_in(&c, "Administrator", ADMIN_PASSWORD).await.unwrap());
    let r = c
        .post_form(
            "/toolbox/outage/suspend",
            &[
                ("Cookie", &cookie),
                ("Origin", &c.origin()),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            &[("identity", &format!("HUB1\\{id}"))],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        !primary_queue(&pool).await.unwrap().2,
        "a forged post suspended the queue"
    );

    let b = Browser::start(&c.origin()).await;
    b.goto("/toolbox").await;
    b.log_on("Administrator", ADMIN_PASSWORD).await;
    b.wait_for_path("the toolbox", |p| p == "/toolbox").await;
    b.click("#tool-outage").await;
    b.wait_for_path("the outage view", |p| p == "/toolbox/outage")
        .await;
    b.wait_for(&row).await;
    b.wait_for(&outage_row(second)).await;
    let cell = |c: &'static str| {
        let (b, row) = (&b, &row);
        async move { b.text(&format!("{row} td.{c}")).await }
    };
    assert_eq!(cell("next-hop").await, PRIMARY);
    assert_eq!(cell("status").await, "Retry");
    assert_eq!(cell("messages").await, "4");
    assert_eq!(cell("recipients").await, "5");
    assert_eq!(cell("last-error").await, last_error);
    assert!(
        cell("since").await.ends_with(" ago)"),
        "{}",
        cell("since").await
    );
    assert!(cell("oldest").await.ends_with(" s") || cell("oldest").await.ends_with(" min"));
    assert!(
        cell("next-retry").await.contains("(in 1"),
        "{}",
        cell("next-retry").await
    );
    // The accepted domain's 2 h and 3 days, not the server's 4 h and 2 days.
    let dsn = cell("delay-dsn").await;
    assert!(
        dsn.contains("(in 1 h 5") || dsn.contains("(in 2 h 0 min)"),
        "{dsn}"
    );
    let expiry = cell("expiry").await;
    assert!(
        expiry.contains("(in 2 d 23 h)") || expiry.contains("(in 3 d 0 h)"),
        "{expiry}"
    );
    b.screenshot("outage-view").await;

    // Suspend from the view.
    b.click(&format!("{row} form.suspend button")).await;
    within(30, "the queue suspended", || async {
        primary_queue(&pool).await.unwrap().2
    })
    .await;
    b.wait_for_path("back at the view", |p| p == "/toolbox/outage")
        .await;
    cell_becomes(&b, &row, "status", "Suspended").await;

    // Forged posts to Resume (at a rate, or plainly): no token or a wrong one, nothing resumed.
    let identity = format!("{SERVER}\\{id}");
    for token in [None, Some("not-the-token")] {
        for rate in [Some("12"), None] {
            let mut form = vec![("identity", identity.as_str())];
            form.extend(rate.map(|r| ("rate", r)));
            form.extend(token.map(|t| ("csrf", t)));
            let r = c
                .post_form(
                    "/toolbox/outage/resume",
                    &[
                        ("Cookie", &cookie),
                        ("Origin", &c.origin()),
                        ("Sec-Fetch-Site", "same-origin"),
                    ],
                    &form,
                )
                .await;
            assert_eq!(r.status, 403, "{token:?} {rate:?}: {}", r.body);
        }
    }
    let (_, _, suspended, rate, _) = primary_queue(&pool).await.unwrap();
    assert_eq!(
        (suspended, rate),
        (true, None),
        "a forged post resumed the queue"
    );

    // A bad rate: the reason on the page, nothing changed.
    b.fill(&format!("{row} form.resume-at-rate input[name=rate]"), "0")
        .await;
    b.click(&format!("{row} form.resume-at-rate button")).await;
    let e = b.text("#outage-error").await;
    assert!(
        e.contains("-MessagesPerMinute must be a whole number from 1 to 10000"),
        "{e}"
    );
    let (_, _, suspended, rate, held) = primary_queue(&pool).await.unwrap();
    assert_eq!((suspended, rate, held), (true, None, 5));

    // The primary is back: resume at 12 a minute (one message every 5 s).
    primary.restart();
    b.fill(&format!("{row} form.resume-at-rate input[name=rate]"), "12")
        .await;
    b.click(&format!("{row} form.resume-at-rate button")).await;
    b.wait_for_path("back at the view", |p| p == "/toolbox/outage")
        .await;
    // The release shows while it runs (4 messages at one every 5 s).
    cell_becomes(&b, &row, "rate", "12 per minute").await;
    within(30, "the release rate on the queue", || async {
        primary_queue(&pool).await.unwrap().3 == Some(12)
    })
    .await;
    within(120, "every held message at the primary", || async {
        primary.received().len() >= 4
    })
    .await;
    let mut times: Vec<f64> = primary.received().iter().map(|r| r.started).collect();
    times.sort_by(f64::total_cmp);
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= 4.0,
            "arrivals closer than 12 a minute allows: {times:?}"
        );
    }
    assert_eq!(primary.recipients().len(), 5);
    within(30, "the release over and the rate cleared", || async {
        primary_queue(&pool)
            .await
            .is_some_and(|(_, _, _, rate, n)| rate.is_none() && n == 0)
    })
    .await;
    // The primary's row is gone; the second hop, still down, stays in the view.
    b.goto("/toolbox/outage").await;
    b.wait_for(&outage_row(second)).await;
    assert!(
        b.client
            .find_all(Locator::Css(&row))
            .await
            .unwrap()
            .is_empty(),
        "the primary still shown as failing"
    );

    // The message held for both, from the Queue Viewer as an administrator finds it: the second
    // hop's queue, View Messages, the message.
    b.goto("/toolbox").await;
    b.click("#tool-queue-viewer").await;
    b.wait_for_path("the Queues tab", |p| p == "/toolbox/queue-viewer")
        .await;
    b.click(&format!("#queues a[href$='selected={SERVER}%5C{second}']"))
        .await;
    b.click("aside.actions a[href^='/toolbox/queue-viewer/messages']")
        .await;
    b.wait_for_path("View Messages", |p| {
        p.starts_with("/toolbox/queue-viewer/messages")
    })
    .await;
    b.click("#messages td.name a").await;
    b.wait_for("#message-properties").await;
    let envelope = b.text("#envelope").await;
    assert!(envelope.contains("held 0"), "{envelope}");
    assert!(envelope.contains("Expiration Time"), "{envelope}");
    let pending = b.text("table.recipients").await;
    assert!(
        pending.contains("z@second.example") && pending.contains("Retry"),
        "{pending}"
    );

    // The primary's recipient: Delivered, the refused attempt strictly before the 250.
    let finished = rows(&b, "#finished-recipients tr.finished").await;
    assert_eq!(finished.len(), 1, "{finished:?}");
    assert_eq!(
        finished[0][..2],
        ["a@primary.example", "Delivered"],
        "{finished:?}"
    );
    let attempts = rows(&b, "#finished-recipients table.attempts tbody tr").await;
    let (last, failed) = attempts.split_last().expect("attempts shown");
    assert!(
        !failed.is_empty(),
        "no failed attempt before the success: {attempts:?}"
    );
    for a in failed {
        assert!(a[3].contains("4.2.1 Unable to connect"), "{attempts:?}");
        assert_eq!(a[1], PRIMARY, "{attempts:?}");
    }
    assert!(last[3].starts_with("250"), "{attempts:?}");
    assert_eq!(last[2], PRIMARY, "{attempts:?}");
    // Times as the viewer writes them (UTC, to the second) sort as text.
    for w in attempts.windows(2) {
        assert!(w[0][0] <= w[1][0], "attempts out of order: {attempts:?}");
    }
    assert!(failed.last().unwrap()[0] < last[0], "{attempts:?}");

    // Its tracking events, in order: DEFER for the primary's recipient before its SEND.
    let events = rows(&b, "#tracking-events tbody tr").await;
    let of = |id: &str| {
        events
            .iter()
            .position(|e| e[1] == id && e[3].contains("a@primary.example"))
            .unwrap_or_else(|| panic!("no {id} for a@primary.example: {events:?}"))
    };
    let (defer, send) = (of("DEFER"), of("SEND"));
    assert!(defer < send, "{events:?}");
    assert!(events[send][4].starts_with("250"), "{events:?}");
    assert!(events[defer][4].contains("4.2.1"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e[1] == "DEFER" && e[3].contains("z@second.example")),
        "{events:?}"
    );
    for w in events.windows(2) {
        assert!(w[0][0] <= w[1][0], "events out of order: {events:?}");
    }
    // The attempts and the events in view together.
    b.client
        .execute(
            "document.getElementById('finished-recipients').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    b.screenshot("queue-viewer-properties-after-release").await;
    b.close().await;
}
