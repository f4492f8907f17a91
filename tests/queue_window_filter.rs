//! A filtered Queue Viewer page is counted and cut in SQL when the filter is one SQL tests
//! exactly (message columns only, ASCII): every window and total must be what the exact filter
//! over the full listing gives, also when a message has several recipients (counted by groups)
//! or a compared column is not ASCII (where Unicode case rules decide and the page is listed in
//! full instead).

mod common;

use common::held::Held;
use common::*;
use hubgate::transport::queue::ops::MessageFilter;
use hubgate::transport::queue::ops::filter::{filtered_page, matching, parse_message_filter};
use hubgate::transport::queue::ops::page::parse_sort_order;

async fn accept(setup: &Setup, from: &str, subject: &str, rcpts: usize, body_len: usize) {
    let to = (0..rcpts)
        .map(|i| format!("r{i}@fabrikam.example"))
        .collect();
    Held::sized(from, to, Some(subject), body_len)
        .accept(setup)
        .await;
}

/// Every window of `filter` over every message: what the exact filter over the full listing
/// holds there, with the same total.
async fn same_windows(setup: &Setup, filter: &str) {
    let f = parse_message_filter(filter).unwrap();
    for sort in [
        vec![],
        vec!["-Size".to_string()],
        vec!["+FromAddress".into()],
    ] {
        let order = parse_sort_order(&sort).unwrap();
        let all = matching(
            &setup.pool,
            SERVER,
            MessageFilter::All,
            Some(&f),
            order.clone(),
        )
        .await
        .unwrap();
        for (offset, size) in [(0, 4), (4, 4), (9, 50), (400, 4)] {
            let (page, total) = filtered_page(
                &setup.pool,
                SERVER,
                MessageFilter::All,
                Some(&f),
                order.clone(),
                offset,
                size,
            )
            .await
            .unwrap();
            assert_eq!(total, all.len(), "{filter} {sort:?}");
            let want: Vec<String> = all
                .iter()
                .skip(offset)
                .take(size)
                .map(|m| m.identity.to_string())
                .collect();
            let got: Vec<String> = page.iter().map(|m| m.identity.to_string()).collect();
            assert_eq!(got, want, "{filter} {sort:?} {offset}+{size}");
        }
    }
}

#[tokio::test]
async fn filtered_windows_in_sql_hold_what_the_exact_filter_keeps() {
    let setup = Setup::new().await;
    for i in 0..14 {
        let from = match i % 3 {
            0 => "Spammer@Spam.Example",
            1 => "other@SPAM.example",
            _ => "good@example.org",
        };
        accept(&setup, from, &format!("offer {i}"), 1, 40 + i * 7).await;
    }
    let filters = [
        "FromAddress -like '*@spam.example'",
        "FromAddress -eq 'GOOD@example.org'",
        "FromAddress -like '*@spam.example' -and Size -gt 80",
        "FromAddress -like 'good*' -or Subject -eq 'offer 3'",
        "Subject -like 'offer 1?'",
        "Size -eq 60.5",
    ];
    for f in filters {
        same_windows(&setup, f).await;
    }

    // A message with two recipients in Submission: one entry, counted by groups.
    accept(&setup, "two@spam.example", "offer two", 2, 10).await;
    for f in filters {
        same_windows(&setup, f).await;
    }
    // Its first recipient delivered: still one entry, by its second.
    sqlx::query(
        "UPDATE message_recipient SET status = 'Delivered' WHERE ordinal = 0
            AND message_id = (SELECT id FROM message WHERE from_address = 'two@spam.example')",
    )
    .execute(&setup.pool)
    .await
    .unwrap();
    same_windows(&setup, "FromAddress -like '*@spam.example'").await;

    // A Kelvin sign: Unicode folds it to "k", the SQL's ASCII folding does not; the exact filter
    // keeps it, so the page must too...
    accept(&setup, "\u{212a}@spam.example", "kelvin", 1, 10).await;
    same_windows(&setup, "FromAddress -like 'k@spam.example'").await;
    // ...and SQL lets it through every comparison on its address, where the filter may not.
    for f in filters {
        same_windows(&setup, f).await;
    }
    let f = parse_message_filter("FromAddress -like 'k@spam.example'").unwrap();
    let (page, total) = filtered_page(
        &setup.pool,
        SERVER,
        MessageFilter::All,
        Some(&f),
        vec![],
        0,
        10,
    )
    .await
    .unwrap();
    assert_eq!((page.len(), total), (1, 1));
}
