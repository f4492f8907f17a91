//! -Filter pushed down into SQL keeps exactly what the filter alone keeps: each filter below
//! runs through `filter_messages` (SQL condition, then the exact filter) and through the exact
//! filter over every message, on messages made to catch a careless pushdown: NULL and non-ASCII
//! subjects, SQL wildcard characters in the data, case, and sizes either side of a bound.

mod common;

use std::net::IpAddr;

use common::*;
use hubgate::ops::filter::Filter;
use hubgate::transport::queue::ops::filter::{filter_messages, parse_message_filter};
use hubgate::transport::queue::ops::{MessageFilter, list_messages};
use hubgate::transport::queue::store::Disposition;
use hubgate::transport::queue::{self, Envelope, EnvelopeRecipient, Spool};
use uuid::Uuid;

async fn accept(setup: &Setup, from: &str, subject: Option<&str>, body_len: usize) {
    let id = Uuid::new_v4();
    let env = Envelope {
        id,
        server: SERVER.into(),
        from: from.into(),
        recipients: vec![EnvelopeRecipient {
            address: "r@fabrikam.example".into(),
            orcpt: None,
            notify: None,
            disposition: Disposition::Relay,
        }],
        source_ip: "192.0.2.10".parse::<IpAddr>().unwrap(),
        receive_connector: "HUB1\\Default HUB1".into(),
        helo: "client.example".into(),
        auth_user: None,
        internet_message_id: Some(format!("<{id}@example.org>")),
        subject: subject.map(String::from),
        env_id: None,
        ret: None,
        body_type: None,
        smtp_utf8: false,
        shadow: None,
    };
    let spool = Spool::open(setup.data_dir.path()).unwrap();
    queue::accept(
        &setup.pool,
        &spool,
        &env,
        b"\r\n".to_vec(),
        vec![b'x'; body_len],
    )
    .await
    .unwrap();
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
