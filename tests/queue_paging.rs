//! Select-Object, Sort-Object and Get-Message's paging (-ResultSize, -SortOrder,
//! -BookmarkObject/-IncludeBookmark) through the shell, on a running gateway whose next hop is
//! down, so the messages wait in its queue.

mod common;

use std::collections::{HashMap, HashSet};

use common::mail::*;
use common::*;
use hubgate::shell::Shell;

/// Nothing listens there: the messages wait in Retry.
const DOWN_PORT: u16 = 2525;

fn shell(gw: &Gateway) -> Shell {
    Shell::new(gw.pool().clone(), FQDN).with_data_dir(gw.data_dir())
}

async fn run(sh: &mut Shell, line: &str) -> String {
    sh.run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

async fn fails(sh: &mut Shell, line: &str) -> String {
    match sh.run_line(line).await {
        Ok(out) => panic!("{line} succeeded: {out}"),
        Err(e) => e.to_string(),
    }
}

/// The first column of a table's rows (after the header and its underline).
fn first_column(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with("--"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// One message for the Raw connection: (from, to, subject, body padding).
struct Mail {
    from: String,
    to: String,
    subject: String,
    pad: usize,
}

/// Sends the messages over raw SMTP, 100 to a connection.
async fn send_all(to: std::net::SocketAddr, mails: Vec<Mail>) {
    for chunk in mails.chunks(100) {
        let mut c = Raw::connect(to).await;
        let greeting = c.reply().await;
        assert!(greeting.starts_with("220"), "{greeting}");
        let ehlo = c.cmd("EHLO paging.client").await;
        assert!(ehlo.starts_with("250"), "{ehlo}");
        for m in chunk {
            let r = c.cmd(&format!("MAIL FROM:<{}>", m.from)).await;
            assert!(r.starts_with("250"), "MAIL: {r}");
            let r = c.cmd(&format!("RCPT TO:<{}>", m.to)).await;
            assert!(r.starts_with("250"), "RCPT: {r}");
            let r = c.cmd("DATA").await;
            assert!(r.starts_with("354"), "DATA: {r}");
            c.send(
                format!(
                    "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\n\r\n{}\r\n.\r\n",
                    m.from,
                    m.to,
                    m.subject,
                    "x".repeat(m.pad)
                )
                .as_bytes(),
            )
            .await;
            let r = c.reply().await;
            assert!(r.starts_with("250"), "end of DATA: {r}");
        }
        c.cmd("QUIT").await;
    }
}

/// A gateway whose connector for `domain` points at `ip`, where nothing listens.
async fn held_gateway(ip: &str, domain: &str) -> Gateway {
    let s = setup().await;
    configure(
        &s,
        &[&format!(
            "New-SendConnector -Name Down -AddressSpaces '{domain}' -DNSRoutingEnabled $false -SmartHosts '{ip}' -Port {DOWN_PORT}"
        )],
    )
    .await;
    s.start().await
}

/// Waits until `n` messages wait in the connector's queue; returns the queue's number.
async fn held(gw: &Gateway, ip: &str, n: i64) -> i64 {
    let secs = 60 + u64::try_from(n).unwrap() / 20;
    within(secs, &format!("{n} messages held for {ip}"), || async {
        let (k,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM message_recipient r JOIN delivery_queue q ON q.id = r.queue_id
              WHERE q.next_hop_domain = $1 AND r.status NOT IN ('Delivered', 'Failed')",
        )
        .bind(ip)
        .fetch_one(gw.pool())
        .await
        .unwrap();
        k == n
    })
    .await;
    let (q,): (i64,) = sqlx::query_as("SELECT id FROM delivery_queue WHERE next_hop_domain = $1")
        .bind(ip)
        .fetch_one(gw.pool())
        .await
        .unwrap();
    q
}

/// internal_id → (size, lower-case sender), from the database.
async fn messages(gw: &Gateway) -> HashMap<i64, (i64, String)> {
    let rows: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT internal_id, size, lower(from_address) FROM message")
            .fetch_all(gw.pool())
            .await
            .unwrap();
    rows.into_iter().map(|(id, s, f)| (id, (s, f))).collect()
}

fn internal_id(identity: &str) -> i64 {
    identity.rsplit('\\').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn select_and_sort_object_give_the_expected_rows_and_result_size_cuts_with_a_warning() {
    const IP: &str = "127.0.0.221";
    let gw = held_gateway(IP, "sort.example").await;
    // Subjects in mixed case, sizes whose text order is not their numeric order
    // ("1.17 KB" < "900 B" as text), two messages from the same sender.
    let mails = [
        ("b@senders.example", "beta", 100),
        ("a@senders.example", "Alpha", 1200),
        ("c@senders.example", "gamma", 900),
        ("a@senders.example", "DELTA", 10),
        ("d@senders.example", "epsilon", 3000),
    ];
    send_all(
        gw.smtp(),
        mails
            .iter()
            .enumerate()
            .map(|(i, (from, subject, pad))| Mail {
                from: from.to_string(),
                to: format!("r{i}@sort.example"),
                subject: subject.to_string(),
                pad: *pad,
            })
            .collect(),
    )
    .await;
    let q = held(&gw, IP, 5).await;
    let ids: Vec<i64> = {
        let mut v: Vec<i64> = messages(&gw).await.into_keys().collect();
        v.sort();
        v
    };
    assert_eq!(ids.len(), 5);
    let id = |k: usize| format!("HUB1\\{q}\\{}", ids[k]);
    let mut sh = shell(&gw);

    // By size, numerically, largest first; then the first two.
    let out = run(
        &mut sh,
        &format!(
            "Get-Message -Queue HUB1\\{q} | Sort-Object Size -Descending | Format-Table Identity"
        ),
    )
    .await;
    assert_eq!(
        first_column(&out),
        [id(4), id(1), id(2), id(0), id(3)],
        "{out}"
    );
    let out = run(
        &mut sh,
        &format!(
            "Get-Message -Queue HUB1\\{q} | Sort-Object -Property Size -Descending | Select-Object -First 2 | Format-Table Identity"
        ),
    )
    .await;
    assert_eq!(first_column(&out), [id(4), id(1)], "{out}");
    // Text case-insensitively.
    let out = run(
        &mut sh,
        &format!("Get-Message -Queue HUB1\\{q} | Sort-Object Subject | Format-Table Identity"),
    )
    .await;
    assert_eq!(
        first_column(&out),
        [id(1), id(0), id(3), id(4), id(2)],
        "{out}"
    );
    // Stable: the two messages from a@ keep their order (1 before 3), also descending.
    let out = run(
        &mut sh,
        &format!("Get-Message -Queue HUB1\\{q} | Sort-Object FromAddress | Format-Table Identity"),
    )
    .await;
    assert_eq!(
        first_column(&out),
        [id(1), id(3), id(0), id(2), id(4)],
        "{out}"
    );
    let out = run(
        &mut sh,
        &format!(
            "Get-Message -Queue HUB1\\{q} | Sort-Object FromAddress -Descending | Format-Table Identity"
        ),
    )
    .await;
    assert_eq!(
        first_column(&out),
        [id(4), id(2), id(0), id(1), id(3)],
        "{out}"
    );
    // Dates as dates: one received on 9/30/2019, the others today (later, though "9/30/2019"
    // sorts after them as text in any month but September).
    sqlx::query("UPDATE message SET received_at = '2019-09-30 10:00:00+00' WHERE internal_id = $1")
        .bind(ids[2])
        .execute(gw.pool())
        .await
        .unwrap();
    let out = run(
        &mut sh,
        &format!(
            "Get-Message -Queue HUB1\\{q} | Sort-Object DateReceived -Descending | Select-Object -Last 1 | Format-Table Identity"
        ),
    )
    .await;
    assert_eq!(first_column(&out), [id(2)], "{out}");
    // Any cmdlet's objects: the queues by MessageCount, as numbers.
    let out = run(
        &mut sh,
        "Get-Queue | Sort-Object MessageCount -Descending | Select-Object -First 1 | Format-Table Identity",
    )
    .await;
    assert_eq!(first_column(&out), [format!("HUB1\\{q}")], "{out}");

    // Bad arguments.
    let e = fails(
        &mut sh,
        &format!("Get-Message -Queue HUB1\\{q} | Select-Object -First -1"),
    )
    .await;
    assert!(
        e.contains("'First'") && e.contains("cannot be negative"),
        "{e}"
    );
    let e = fails(
        &mut sh,
        &format!("Get-Message -Queue HUB1\\{q} | Sort-Object Colour"),
    )
    .await;
    assert!(
        e.contains("'Colour'") && e.contains("FromAddress") && e.contains("DateReceived"),
        "{e}"
    );

    // -ResultSize: N rows and Exchange's warning when more exist; none when all fit.
    let out = run(
        &mut sh,
        &format!("Get-Message -Queue HUB1\\{q} -ResultSize 3 | Format-Table Identity"),
    )
    .await;
    assert_eq!(first_column(&out), [id(0), id(1), id(2)], "{out}");
    let w = sh.take_warnings();
    assert_eq!(
        w,
        [
            "WARNING: There are more results available than are currently displayed. To view them, increase the value for the ResultSize parameter."
        ]
    );
    for line in [
        format!("Get-Message -Queue HUB1\\{q} -ResultSize 5"),
        format!("Get-Message -Queue HUB1\\{q} -ResultSize Unlimited"),
        format!("Get-Message -Queue HUB1\\{q}"),
    ] {
        let out = run(&mut sh, &format!("{line} | Format-Table Identity")).await;
        assert_eq!(first_column(&out).len(), 5, "{line}: {out}");
        assert!(sh.take_warnings().is_empty(), "{line}");
    }
    let out = run(&mut sh, "Get-Queue -ResultSize 2 | Format-Table Identity").await;
    assert_eq!(first_column(&out).len(), 2, "{out}");
    assert_eq!(sh.take_warnings().len(), 1);
    // -SortOrder in SQL, and its errors.
    let out = run(
        &mut sh,
        &format!(
            "Get-Message -Queue HUB1\\{q} -SortOrder:-Size -ResultSize 2 | Format-Table Identity"
        ),
    )
    .await;
    assert_eq!(first_column(&out), [id(4), id(1)], "{out}");
    let out = run(
        &mut sh,
        &format!(
            "Get-Message -Queue HUB1\\{q} -SortOrder +FromAddress,-DateReceived | Format-Table Identity"
        ),
    )
    .await;
    assert_eq!(
        first_column(&out),
        [id(3), id(1), id(0), id(2), id(4)],
        "{out}"
    );
    let e = fails(
        &mut sh,
        &format!("Get-Message -Queue HUB1\\{q} -SortOrder:-Colour"),
    )
    .await;
    assert!(e.contains("'Colour'") && e.contains("DateReceived"), "{e}");
    let e = fails(
        &mut sh,
        &format!("Get-Message -Queue HUB1\\{q} -ResultSize -5"),
    )
    .await;
    assert!(e.contains("ResultSize") && e.contains("-5"), "{e}");
    let e = fails(
        &mut sh,
        &format!("Get-Message -Queue HUB1\\{q} -BookmarkObject 'HUB1\\{q}\\1'"),
    )
    .await;
    assert!(e.contains("message object"), "{e}");
}

#[tokio::test]
async fn result_size_and_bookmarks_page_through_5000_messages_once_each_in_sort_order() {
    const IP: &str = "127.0.0.222";
    const TOTAL: usize = 5000;
    const PAGE: usize = 700;
    let gw = held_gateway(IP, "page.example").await;
    let mails = |first: usize, n: usize| -> Vec<Mail> {
        (first..first + n)
            .map(|k| Mail {
                // Few senders and sizes, so the sort keys tie often and the keyset must break
                // ties on the identity.
                from: format!("s{}@senders.example", k % 7),
                to: format!("m{k}@page.example"),
                subject: format!("page {k}"),
                pad: (k * 37) % 5 * 50,
            })
            .collect()
    };
    let senders: Vec<_> = (0..5)
        .map(|i| tokio::spawn(send_all(gw.smtp(), mails(i * TOTAL / 5, TOTAL / 5))))
        .collect();
    for t in senders {
        t.await.unwrap();
    }
    let q = held(&gw, IP, TOTAL as i64).await;
    let db = messages(&gw).await;
    assert_eq!(db.len(), TOTAL);
    let mut sh = shell(&gw);

    // The default is 1000, with Exchange's warning.
    let out = run(
        &mut sh,
        &format!("Get-Message -Queue HUB1\\{q} | Format-Table Identity"),
    )
    .await;
    assert_eq!(first_column(&out).len(), 1000);
    let w = sh.take_warnings();
    assert!(
        w.len() == 1
            && w[0].contains("only the first 1000 items")
            && w[0].contains("-ResultSize Unlimited"),
        "{w:?}"
    );

    for (sort, key_of) in [
        (
            "",
            Box::new(|id: i64, _: &(i64, String)| (0i64, String::new(), id))
                as Box<dyn Fn(i64, &(i64, String)) -> (i64, String, i64)>,
        ),
        (
            " -SortOrder:-Size,+FromAddress",
            Box::new(|id: i64, (size, from): &(i64, String)| (-size, from.clone(), id)),
        ),
    ] {
        let base = format!("Get-Message -Queue HUB1\\{q} -ResultSize {PAGE}{sort}");
        let mut seen: Vec<i64> = Vec::new();
        let mut bookmark = false;
        for round in 0..TOTAL / PAGE + 2 {
            let line = if bookmark {
                format!("{base} -BookmarkObject $b -IncludeBookmark $false")
            } else {
                base.clone()
            };
            let page: Vec<i64> =
                first_column(&run(&mut sh, &format!("{line} | Format-Table Identity")).await)
                    .iter()
                    .map(|i| internal_id(i))
                    .collect();
            let more = !sh.take_warnings().is_empty();
            assert!(page.len() <= PAGE, "round {round}: {} rows", page.len());
            if more {
                assert_eq!(page.len(), PAGE, "round {round}: a short page, yet more");
            }
            seen.extend(&page);
            if !more {
                break;
            }
            run(&mut sh, &format!("$b = {line} | Select-Object -Last 1")).await;
            sh.take_warnings();
            bookmark = true;
        }
        let distinct: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            seen.len(),
            "{sort}: a message was listed twice"
        );
        assert_eq!(distinct.len(), TOTAL, "{sort}: messages were missed");
        let keys: Vec<_> = seen.iter().map(|id| key_of(*id, &db[id])).collect();
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "{sort}: the pages are not in the sort order"
        );

        // -IncludeBookmark $true (the default) starts the next page at the bookmark itself.
        run(&mut sh, &format!("$b = {base} | Select-Object -Last 1")).await;
        let out = run(
            &mut sh,
            &format!("{base} -BookmarkObject $b | Select-Object -First 1 | Format-Table Identity"),
        )
        .await;
        assert_eq!(
            first_column(&out)
                .iter()
                .map(|i| internal_id(i))
                .collect::<Vec<_>>(),
            [seen[PAGE - 1]],
            "{out}"
        );
        sh.take_warnings();
    }
}
