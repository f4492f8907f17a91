//! The controlled release after an outage: a primary (a real aiosmtpd next hop on 127.0.0.x)
//! down, mail for it held in Retry, then `Resume-Queue … -MessagesPerMinute N` once it is back:
//! the primary sees the backlog arrive spread at that pace, every message of it; bad rates are
//! refused with a clear error and change nothing.

mod common;

use common::mail::*;
use common::peers::{Sink, SinkOptions};
use common::*;

const PRIMARY: &str = "127.0.0.94";
const HELD: usize = 12;
const RATE: usize = 12;

fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(" : ")?;
            (k.trim() == name).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
}

#[tokio::test]
async fn resume_at_a_rate_spreads_the_backlog_and_bad_rates_change_nothing() {
    let port = peer_port();
    let mut primary = Sink::down(addr(PRIMARY, port), SinkOptions::default());
    let s = setup().await;
    configure(
        &s,
        &[
            // Long retry intervals: only the administrator's Resume-Queue releases the queue
            // within the test.
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:15:00 -OutboundConnectionFailureRetryInterval 00:15:00",
            &format!(
                "New-SendConnector -Name Primary -AddressSpaces 'primary.example' -DNSRoutingEnabled $false -SmartHosts '{PRIMARY}' -Port {port}"
            ),
        ],
    )
    .await;
    let gw = s.start().await;
    for i in 0..HELD {
        send(
            &gw,
            &[&format!("u{i}@primary.example")],
            &format!("held {i}"),
        );
    }
    within(
        60,
        "the primary's queue in Retry holding every message",
        || async {
            smart_host_queue(&gw)
                .await
                .is_some_and(|(_, st, _, n)| st == "Retry" && n == HELD as i64)
        },
    )
    .await;
    let (id, _, _, _) = smart_host_queue(&gw).await.unwrap();
    let identity = format!("HUB1\\{id}");

    // Bad rates: a clear error, and the queue stays as it was.
    for bad in ["0", "10001", "-5", "abc", "2.5", "99999999999999999999"] {
        let e = fails(
            &gw,
            &format!("Resume-Queue {identity} -MessagesPerMinute '{bad}'"),
        )
        .await;
        assert!(
            e.contains("-MessagesPerMinute must be a whole number from 1 to 10000")
                && e.contains(&format!("\"{bad}\"")),
            "{bad}: {e}"
        );
    }
    let e = fails(&gw, "Resume-Queue HUB1\\Unreachable -MessagesPerMinute 5").await;
    assert!(e.contains("there is nothing to pace"), "{e}");
    let (_, status, rate, held) = smart_host_queue(&gw).await.unwrap();
    assert_eq!(
        (status.as_str(), rate, held),
        ("Retry", None, HELD as i64),
        "a refused rate changed the queue"
    );
    let out = run(&gw, &format!("Get-Queue {identity} | Format-List")).await;
    assert_eq!(field(&out, "MessagesPerMinute"), "");
    assert_eq!(field(&out, "Status"), "Retry");

    // The primary is back: release the backlog at RATE per minute, from the binary's shell.
    primary.restart();
    let released = std::time::Instant::now();
    shell_c(
        &gw,
        &format!("Resume-Queue {identity} -MessagesPerMinute {RATE}"),
    )
    .await;
    let out = run(&gw, &format!("Get-Queue {identity} | Format-List")).await;
    assert_eq!(field(&out, "MessagesPerMinute"), RATE.to_string(), "{out}");

    // HELD at RATE a minute takes (HELD - 1) intervals; generous for a loaded machine.
    let interval = 60.0 / RATE as f64;
    let budget = (interval * HELD as f64) as u64 + 120;
    within(budget, "every held message at the primary", || async {
        primary.received().len() >= HELD
    })
    .await;
    let got = primary.received();
    assert_eq!(got.len(), HELD, "each held message once");
    let mut times: Vec<f64> = got.iter().map(|r| r.started).collect();
    times.sort_by(f64::total_cmp);
    // Per window of 15 s: no more than the rate allows, with one of tolerance (a window's edge
    // can hold one more arrival than its share).
    let window = 15.0;
    let allowed = (RATE as f64 * window / 60.0).ceil() as usize + 1;
    for (i, t) in times.iter().enumerate() {
        let n = times[i..].iter().take_while(|u| **u < t + window).count();
        assert!(
            n <= allowed,
            "{n} arrivals within {window} s from {t} (at most {allowed} at {RATE}/min): {times:?}"
        );
    }
    // And spread over the whole release, not bunched at its end.
    let span = times[HELD - 1] - times[0];
    assert!(
        span >= interval * (HELD - 1) as f64 * 0.8,
        "the release took {span:.1} s, under {RATE}/min allows: {times:?}"
    );
    assert!(released.elapsed().as_secs_f64() >= span);

    // The queue emptied: the rate is cleared, in the row and in Get-Queue.
    within(
        30,
        "the release rate cleared once the queue emptied",
        || async {
            smart_host_queue(&gw)
                .await
                .is_some_and(|(_, _, rate, n)| rate.is_none() && n == 0)
        },
    )
    .await;
    let out = run(&gw, &format!("Get-Queue {identity} | Format-List")).await;
    assert_eq!(field(&out, "MessagesPerMinute"), "");
}

#[tokio::test]
async fn resume_without_a_rate_ends_a_release_and_a_suspension_keeps_it() {
    let port = peer_port();
    let _primary = Sink::down(addr("127.0.0.95", port), SinkOptions::default());
    let s = setup().await;
    configure(
        &s,
        &[
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 00:15:00 -OutboundConnectionFailureRetryInterval 00:15:00",
            &format!(
                "New-SendConnector -Name Primary -AddressSpaces 'primary.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.95' -Port {port}"
            ),
        ],
    )
    .await;
    let gw = s.start().await;
    send(&gw, &["a@primary.example"], "held");
    within(60, "the primary's queue in Retry", || async {
        smart_host_queue(&gw)
            .await
            .is_some_and(|(_, st, _, n)| st == "Retry" && n == 1)
    })
    .await;
    let (id, _, _, _) = smart_host_queue(&gw).await.unwrap();
    // Suspended first, as the outage view offers; the rate comes with the Resume.
    run(&gw, &format!("Suspend-Queue HUB1\\{id}")).await;
    run(
        &gw,
        &format!("Resume-Queue HUB1\\{id} -MessagesPerMinute 3"),
    )
    .await;
    let rate = |gw: &Gateway| {
        let pool = gw.pool().clone();
        async move {
            sqlx::query_as::<_, (Option<i32>, bool)>(
                "SELECT release_rate, suspended FROM delivery_queue WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(rate(&gw).await, (Some(3), false));
    run(&gw, &format!("Suspend-Queue HUB1\\{id}")).await;
    assert_eq!(rate(&gw).await, (Some(3), true));
    run(&gw, &format!("Resume-Queue HUB1\\{id}")).await;
    assert_eq!(rate(&gw).await, (None, false));
}
