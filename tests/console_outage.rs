//! Toolbox › Outage in a real browser: a primary (aiosmtpd on 127.0.0.x) down, mail for it held;
//! the view shows its queue in Retry with the error, the counts, the oldest message's age and
//! the delay DSN and expiry times its accepted domain's overrides give; Suspend holds it; a bad
//! rate is refused with its reason and changes nothing; "Resume at N messages per minute" once
//! the primary is back releases the backlog at that pace. Screenshot `outage-view`.

mod common;

use common::browser::Browser;
use common::console::*;
use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;

const PRIMARY: &str = "127.0.0.96";

type QueueState = (i64, String, bool, Option<i32>, i64);

async fn primary_queue(pool: &sqlx::PgPool) -> Option<QueueState> {
    sqlx::query_as(
        "SELECT q.id, q.status, q.suspended, q.release_rate,
                (SELECT count(*) FROM message_recipient r
                  WHERE r.queue_id = q.id AND r.status NOT IN ('Delivered', 'Failed'))
           FROM delivery_queue q WHERE q.delivery_type = 'SmartHostConnectorDelivery'",
    )
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// Waits (bounded) until the view, reloaded by the form's redirect, shows `want` in a cell.
async fn cell_becomes(b: &Browser, class: &str, want: &str) {
    let css = format!("tbody.outage td.{class}");
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
        ],
    )
    .await;
    let console = Console::start(s, &[]).await;
    let pool = console.setup.pool.clone();
    let smtp = console.setup.smtp();
    send_to(smtp, "a@primary.example,b@primary.example", "held 0");
    for i in 1..4 {
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
    let (id, ..) = primary_queue(&pool).await.unwrap();
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
    b.wait_for("table#outages tbody.outage").await;
    let cell = |c: &'static str| {
        let b = &b;
        async move { b.text(&format!("tbody.outage td.{c}")).await }
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
    b.click("tbody.outage form.suspend button").await;
    within(30, "the queue suspended", || async {
        primary_queue(&pool).await.unwrap().2
    })
    .await;
    b.wait_for_path("back at the view", |p| p == "/toolbox/outage")
        .await;
    cell_becomes(&b, "status", "Suspended").await;

    // A bad rate: the reason on the page, nothing changed.
    b.fill("tbody.outage form.resume-at-rate input[name=rate]", "0")
        .await;
    b.click("tbody.outage form.resume-at-rate button").await;
    let e = b.text("#outage-error").await;
    assert!(
        e.contains("-MessagesPerMinute must be a whole number from 1 to 10000"),
        "{e}"
    );
    let (_, _, suspended, rate, held) = primary_queue(&pool).await.unwrap();
    assert_eq!((suspended, rate, held), (true, None, 5));

    // The primary is back: resume at 12 a minute (one message every 5 s).
    primary.restart();
    b.fill("tbody.outage form.resume-at-rate input[name=rate]", "12")
        .await;
    b.click("tbody.outage form.resume-at-rate button").await;
    b.wait_for_path("back at the view", |p| p == "/toolbox/outage")
        .await;
    // The release shows while it runs (4 messages at one every 5 s).
    cell_becomes(&b, "rate", "12 per minute").await;
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
    b.goto("/toolbox/outage").await;
    b.wait_for("#no-outage").await;
    b.close().await;
}
