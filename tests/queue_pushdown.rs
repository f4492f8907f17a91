//! -Filter pushed down into SQL keeps exactly what the filter alone keeps: each filter below
//! runs through `filter_messages` (SQL condition, then the exact filter) and through the exact
//! filter over every message, on messages made to catch a careless pushdown: NULL and non-ASCII
//! subjects, SQL wildcard characters in the data, case, and sizes either side of a bound.

mod common;

use common::held::Held;
use common::*;
use hubgate::ops::filter::Filter;
use hubgate::transport::queue::ops::filter::{filter_messages, parse_message_filter};
use hubgate::transport::queue::ops::{MessageFilter, list_messages};

async fn accept(setup: &Setup, from: &str, subject: Option<&str>, body_len: usize) {
    let to = vec!["r@fabrikam.example".to_string()];
    Held::sized(from, to, subject, body_len).accept(setup).await;
}

#[tokio::test]
async fn pushed_down_filters_keep_exactly_what_the_filter_keeps() {
    let setup = Setup::new().await;
    let subjects = [
        Some("Offer"),
        Some("OFFER now"),
        Some("50% off_today"),
        Some("5000 off"),
        Some("CAF\u{c9} latte"),
        Some("caf\u{e9}"),
        Some("\u{212a}elvin"),
        None,
        Some(""),
    ];
    for (i, subject) in subjects.iter().enumerate() {
        let from = if i % 2 == 0 {
            "Spammer@Spam.Example"
        } else {
            "good@example.org"
        };
        accept(&setup, from, *subject, 100 + i * 10).await;
    }
    let filters = [
        "FromAddress -like '*@spam.example'",
        "FromAddress -eq 'SPAMMER@spam.example'",
        "Subject -like 'offer*'",
        "Subject -like '*'",
        "Subject -eq ''",
        "Subject -like '50% off*'",
        "Subject -like '5_% off*'",
        "Subject -like '50?? off*'",
        "Subject -like 'caf*'",
        "Subject -like 'kelvin'",
        "Subject -eq 'caf\u{c9}'",
        "Subject -like 'o[f]fer'",
        "Size -gt 130",
        "Size -ge 130.5",
        "Size -le 150 -and FromAddress -like '*spam*'",
        "Size -eq 140",
        "Size -eq 140.5",
        "Subject -like 'offer*' -or Size -lt 125",
        "Subject -like 'offer*' -or Status -eq 'Ready'",
        "-not (Subject -like 'offer*')",
        "Subject -ne 'Offer' -and FromAddress -like '*example.org'",
        "$false -or Subject -eq 'offer'",
    ];
    let mut conn = setup.pool.acquire().await.unwrap();
    let all = list_messages(&mut *conn, SERVER, MessageFilter::All)
        .await
        .unwrap();
    assert_eq!(all.len(), subjects.len());
    for text in filters {
        let f: Filter = parse_message_filter(text).unwrap();
        let mut want: Vec<i64> = all
            .iter()
            .filter(|m| f.matches(*m).unwrap())
            .map(|m| m.identity.internal_id)
            .collect();
        let mut got: Vec<i64> = filter_messages(&mut *conn, SERVER, MessageFilter::All, &f)
            .await
            .unwrap()
            .iter()
            .map(|m| m.identity.internal_id)
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{text}");
    }
    // The cases above are not vacuous: some filters keep several messages, some none.
    let f = parse_message_filter("Subject -like '*'").unwrap();
    let n = filter_messages(&mut *conn, SERVER, MessageFilter::All, &f)
        .await
        .unwrap()
        .len();
    assert_eq!(n, subjects.len(), "a NULL subject is '' to -like");
}

/// The Queue Viewer's pages without a filter are cut in SQL (count, OFFSET, LIMIT): every window
/// must hold exactly what the in-memory listing holds there, in every order, with the same
/// total; and a server-wide listing where one message sits in two queues (two entries) still
/// pages by entries.
#[tokio::test]
async fn sql_windows_hold_what_the_full_listing_holds() {
    use hubgate::transport::queue::ops::filter::{filtered_page, matching};
    use hubgate::transport::queue::ops::page::parse_sort_order;

    let setup = Setup::new().await;
    for i in 0..23 {
        let from = format!("s{:02}@example.org", (i * 7) % 23);
        accept(
            &setup,
            &from,
            Some(&format!("m{}", i % 5)),
            50 + (i * 13) % 40,
        )
        .await;
    }
    let server = SERVER;
    let identities = |v: &[hubgate::transport::queue::ops::MessageInfo]| {
        v.iter().map(|m| m.identity.to_string()).collect::<Vec<_>>()
    };
    let check = |scope: String| {
        let pool = setup.pool.clone();
        async move {
            let scope = scope.as_str();
            for sort in [
                vec![],
                vec!["-Size".to_string()],
                vec!["+FromAddress".into(), "-Subject".into()],
            ] {
                let order = parse_sort_order(&sort).unwrap();
                let filter = || {
                    if scope.is_empty() {
                        MessageFilter::All
                    } else {
                        MessageFilter::Queue(scope)
                    }
                };
                let all = matching(&pool, server, filter(), None, order.clone())
                    .await
                    .unwrap();
                for (offset, size) in [(0, 5), (5, 5), (20, 5), (22, 50), (23, 5), (400, 5), (0, 0)]
                {
                    let (page, total) =
                        filtered_page(&pool, server, filter(), None, order.clone(), offset, size)
                            .await
                            .unwrap();
                    assert_eq!(total, all.len(), "{scope} {sort:?}");
                    let want: Vec<_> = all.iter().skip(offset).take(size).cloned().collect();
                    assert_eq!(
                        identities(&page),
                        identities(&want),
                        "{scope} {sort:?} {offset}+{size}"
                    );
                }
            }
        }
    };
    check(String::new()).await;
    check(format!("{server}\\Submission")).await;

    // One message with a second recipient in a delivery queue: two entries server-wide.
    let (queue,): (i64,) = sqlx::query_as(
        "INSERT INTO delivery_queue (server, delivery_type, next_hop_domain)
         VALUES ($1, 'SmartHostConnectorDelivery', '127.0.0.9') RETURNING id",
    )
    .bind(server)
    .fetch_one(&setup.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO message_recipient (message_id, ordinal, address, disposition, queue_id)
         SELECT id, 1, 'second@fabrikam.example', 'Relay', $1 FROM message
          ORDER BY internal_id OFFSET 3 LIMIT 1",
    )
    .bind(queue)
    .execute(&setup.pool)
    .await
    .unwrap();
    let all = matching(&setup.pool, server, MessageFilter::All, None, vec![])
        .await
        .unwrap();
    assert_eq!(all.len(), 24, "the message counts once per queue");

    // A page carries its messages' attempts, filtered or not (a filtered action never needs them).
    sqlx::query(
        "INSERT INTO delivery_attempt (message_id, ordinal, next_hop, reply)
         SELECT id, 1, '127.0.0.9', '421 4.4.1 refused' FROM message
          ORDER BY internal_id OFFSET 3 LIMIT 1",
    )
    .execute(&setup.pool)
    .await
    .unwrap();
    let in_queue = format!("{server}\\{queue}");
    let size = Filter::parse("Size -ge 0").unwrap();
    for f in [None, Some(&size)] {
        let (page, _) = filtered_page(
            &setup.pool,
            server,
            MessageFilter::Queue(&in_queue),
            f,
            vec![],
            0,
            10,
        )
        .await
        .unwrap();
        let replies: Vec<_> = page[0].recipients[0]
            .attempts
            .iter()
            .map(|a| a.reply.as_str())
            .collect();
        assert_eq!(replies, ["421 4.4.1 refused"], "filter {f:?}");
    }
    check(String::new()).await;
    check(format!("{server}\\{queue}")).await;
}
