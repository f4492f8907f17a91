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

/// One viewer page of every queue: `size` entries from `offset`, or next to `anchor`; the
/// identities and the total.
async fn page_at(
    setup: &Setup,
    f: Option<&hubgate::ops::filter::Filter>,
    order: &[(hubgate::transport::queue::ops::SortKey, bool)],
    offset: usize,
    anchor: Option<hubgate::transport::queue::ops::Anchor>,
) -> (Vec<String>, usize) {
    use hubgate::transport::queue::ops::PageRequest;
    use hubgate::transport::queue::ops::filter::filtered_page_at;
    let req = PageRequest {
        order: order.to_vec(),
        offset,
        size: 3,
        anchor,
        held: None,
    };
    let (page, total) = filtered_page_at(&setup.pool, SERVER, MessageFilter::All, f, &req)
        .await
        .unwrap();
    (page.iter().map(|m| m.identity.to_string()).collect(), total)
}

/// The Queue Viewer's Next and Previous links name the message at the page's edge: walking
/// forward by `After` and back by `Before` gives exactly the pages the offsets give, in every
/// order (ties on the sort keys included, and keys in mixed directions), with a filter or not.
#[tokio::test]
async fn next_and_previous_read_from_the_message_at_the_edge() {
    use hubgate::transport::queue::ops::Anchor;

    let setup = Setup::new().await;
    for i in 0..11 {
        let from = if i % 2 == 0 {
            "a@spam.example"
        } else {
            "b@example.org"
        };
        // Sizes repeat, so the identity has to break ties.
        accept(&setup, from, &format!("offer {i}"), 1, 40 + (i % 4) * 10).await;
    }
    let size = 3;
    for filter in [None, Some("FromAddress -like '*@spam.example'")] {
        let f = filter.map(|t| parse_message_filter(t).unwrap());
        let f = f.as_ref();
        for sort in [
            vec![],
            vec!["-Size"],
            vec!["+FromAddress"],
            vec!["-Size", "+FromAddress"],
        ] {
            let order =
                parse_sort_order(&sort.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
            let (_, total) = page_at(&setup, f, &order, 0, None).await;
            assert!(total > size, "{filter:?}");
            let mut pages = vec![];
            for offset in (0..total).step_by(size) {
                pages.push(page_at(&setup, f, &order, offset, None).await.0);
            }
            // Forward: each page after the last message of the one before.
            let mut here = pages[0].clone();
            for (n, want) in pages.iter().enumerate().skip(1) {
                let last = Anchor::After(here.last().unwrap().clone());
                let (page, t) = page_at(&setup, f, &order, n * size, Some(last)).await;
                assert_eq!(t, total);
                assert_eq!(&page, want, "{filter:?} {sort:?} page {n} forward");
                here = page;
            }
            // Back: each page before the first message of the one after.
            for n in (0..pages.len() - 1).rev() {
                let first = Anchor::Before(here.first().unwrap().clone());
                here = page_at(&setup, f, &order, n * size, Some(first)).await.0;
                assert_eq!(here, pages[n], "{filter:?} {sort:?} page {n} back");
            }
            // An anchor that names no message any more falls back to the offset.
            let gone = Some(Anchor::After("NOSUCH\\999999".into()));
            assert_eq!(page_at(&setup, f, &order, size, gone).await.0, pages[1]);
        }
    }

    // A message of the first page delivered meanwhile: Next still opens on the message after
    // the one the admin saw last, where the offset alone would skip one.
    let first = page_at(&setup, None, &[], 0, None).await.0;
    let second = page_at(&setup, None, &[], size, None).await.0;
    sqlx::query(
        "UPDATE message_recipient SET status = 'Delivered'
          WHERE message_id = (SELECT id FROM message ORDER BY received_at, internal_id LIMIT 1)",
    )
    .execute(&setup.pool)
    .await
    .unwrap();
    let after = Anchor::After(first[size - 1].clone());
    let next = page_at(&setup, None, &[], size, Some(after)).await.0;
    assert_eq!(next, second, "Next after the page's last message");
    let moved = page_at(&setup, None, &[], size, None).await.0;
    assert_ne!(moved, second, "the offset alone moves");
    let before = Anchor::Before(second[0].clone());
    let back = page_at(&setup, None, &[], 0, Some(before)).await.0;
    assert_eq!(
        back,
        first[1..].to_vec(),
        "Previous before the next page's first message"
    );
}
