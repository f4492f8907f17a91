//! Toolbox › Queue Viewer against `hubgate serve` with mail held for a next hop where nothing
//! listens: the Queues tab in a real browser (Retry, its error and next retry time), View
//! Messages, a filtered selection removed without NDR as one queue command, message properties,
//! hostile subjects and senders shown as text; over HTTP the paging and totals, the CSRF
//! refusals, an action's refusal in the operation's words and Export Message.

mod common;

use common::browser::Browser;
use common::console::*;
use common::mail::*;
use common::*;
use fantoccini::Locator;

const SPAMMER: &str = "spammer@spam.example";
const HOSTILE_FROM: &str = "\"<img src=x onerror=alert(1)>\"@hostile.example";
const HOSTILE_SUBJECT: &str = "<script>alert('queue')</script> & <b>bold</b>";

/// A gateway whose mail for down.example goes to `down` (an address where nothing listens).
async fn held_setup(down: &str) -> Setup {
    let s = setup().await;
    let port = peer_port();
    configure(
        &s,
        &[
            // The spammer's domain is ours, so an NDR to it would land in a Maildir we can read.
            "New-AcceptedDomain -Name Spam -DomainName spam.example",
            &format!("New-Mailbox -Name Spammer -PrimarySmtpAddress {SPAMMER}"),
            &format!(
                "New-SendConnector -Name Down -AddressSpaces 'down.example' -DNSRoutingEnabled $false -SmartHosts '{down}' -Port {port}"
            ),
        ],
    )
    .await;
    s
}

/// `n` messages over a few connections (a receive connector limits messages per connection).
fn send_many(setup: &Setup, n: usize) {
    let script = r#"
import smtplib, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
i = 0
while i < n:
    s = smtplib.SMTP(host, port, timeout=60)
    for _ in range(min(10, n - i)):
        s.sendmail('sender@contoso.test', ['p@down.example'],
                   'From: sender@contoso.test\r\nSubject: bulk %03d\r\n\r\nbody %d\r\n' % (i, i))
        i += 1
    s.quit()
"#;
    let (ok, out) = python(
        script,
        &[
            &setup.ip.to_string(),
            &setup.smtp_port.to_string(),
            &n.to_string(),
        ],
    );
    assert!(ok, "python smtplib: {out}");
}

/// The queue to `down`: its identity once it is in Retry holding `n` messages.
async fn held_queue(pool: &sqlx::PgPool, down: &str, n: i64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let row: Option<(i64, String, i64)> = sqlx::query_as(
            "SELECT q.id, q.status, (SELECT count(DISTINCT message_id) FROM message_recipient r
                                       WHERE r.queue_id = q.id AND r.status = 'Retry')
               FROM delivery_queue q WHERE q.next_hop_domain = $1",
        )
        .bind(down)
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some((q, status, count)) = &row
            && status == "Retry"
            && *count == n
        {
            return format!("{SERVER}\\{q}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} messages held in Retry for {down}: {row:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// What any queue or message action would change.
async fn state(pool: &sqlx::PgPool) -> (i64, i64, i64, i64, i64, Option<String>) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM message), (SELECT count(*) FROM message WHERE suspended),
                (SELECT count(*) FROM message_recipient WHERE remove_with_ndr IS NOT NULL),
                (SELECT count(*) FROM queue_command), (SELECT count(*) FROM delivery_attempt),
                (SELECT string_agg(format('%s %s %s %s', id, status, suspended, next_retry_time), '; '
                                   ORDER BY id) FROM delivery_queue)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.unwrap();
    n
}

/// The texts of the cells `css` matches in each row of `table` whose text contains `needle`.
async fn row_cells(b: &Browser, table: &str, needle: &str) -> Vec<(String, String)> {
    b.wait_for(&format!("#{table} tbody tr")).await;
    for row in b
        .client
        .find_all(Locator::Css(&format!("#{table} tbody tr")))
        .await
        .unwrap()
    {
        if !row.text().await.unwrap().contains(needle) {
            continue;
        }
        let mut out = vec![];
        for class in ["status", "count", "next-retry", "last-error"] {
            let cell = row
                .find(Locator::Css(&format!("td.{class}")))
                .await
                .unwrap();
            out.push((class.to_string(), cell.text().await.unwrap()));
        }
        return out;
    }
    panic!("no row of #{table} holds {needle}");
}

async fn wait_text(b: &Browser, css: &str, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        // The page may be replaced between finding the element and reading it.
        let got = match b.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{css}: {got:?}, not {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn held_mail_in_the_queue_viewer_and_a_senders_messages_removed_without_ndr() {
    let down = "127.0.0.161";
    let s = held_setup(down).await;
    let console = Console::start(s, &[]).await;
    let setup = &console.setup;
    for i in 0..3 {
        send_from(
            setup.smtp(),
            SPAMMER,
            "x@down.example",
            &format!("spam {i}"),
        );
    }
    send_from(setup.smtp(), SENDER, "y1@down.example", "good 1");
    send_from(setup.smtp(), SENDER, "y2@down.example", HOSTILE_SUBJECT);
    send_from(
        setup.smtp(),
        HOSTILE_FROM,
        "y3@down.example",
        "from a hostile sender",
    );
    let queue = held_queue(&setup.pool, down, 6).await;

    let b = Browser::start(&console.client().origin()).await;
    b.goto(HOME).await;
    b.log_on("Administrator", ADMIN_PASSWORD).await;
    b.wait_for_path("the console", |p| p == HOME).await;
    b.goto("/toolbox").await;
    b.click("#tool-queue-viewer").await;
    b.wait_for_path("the Queues tab", |p| p == "/toolbox/queue-viewer")
        .await;

    // The Queues tab: the held queue in Retry, with its message count, error and next retry.
    let cells = row_cells(&b, "queues", down).await;
    let cell = |name: &str| {
        cells
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    assert_eq!(cell("status"), "Retry", "{cells:?}");
    assert_eq!(cell("count"), "6", "{cells:?}");
    assert!(cell("next-retry").ends_with("UTC"), "{cells:?}");
    assert!(!cell("last-error").is_empty(), "{cells:?}");
    let text = b.text("#queues").await;
    for q in ["Submission", "Unreachable", "Poison"] {
        assert!(text.contains(&format!("{SERVER}\\{q}")), "{text}");
    }
    // Selecting it offers the queue actions; View Messages lists its messages.
    b.click(&format!(
        "#queues a[href$='{}']",
        queue.replace('\\', "%5C")
    ))
    .await;
    b.wait_for("aside.actions h3").await;
    assert_eq!(b.text("aside.actions h3").await, queue);
    let actions = b.text("aside.actions").await;
    for a in [
        "View Messages",
        "Suspend",
        "Resume",
        "Retry",
        "Remove messages (with NDR)",
        "Remove messages (without sending NDR)",
    ] {
        assert!(actions.contains(a), "{actions}");
    }
    b.screenshot("queue-viewer-queues").await;
    b.click("aside.actions a[href^='/toolbox/queue-viewer/messages']")
        .await;
    wait_text(&b, "#total", "6").await;
    assert_eq!(b.text("#view-queue").await, queue);

    // Hostile subjects and senders are text, never markup.
    let html = b.source().await;
    assert!(html.contains("&lt;script&gt;alert"), "subject not shown");
    assert!(!html.contains("<script>alert"), "subject became markup");
    assert!(html.contains("&lt;img src=x"), "sender not shown");
    assert!(!html.contains("<img src=x"), "sender became markup");
    b.screenshot("queue-viewer-messages").await;

    // Create Filter (the sender's domain) and the quick filter (Subject contains), combined
    // with -and into the shell's filter; then every match removed without NDR in one command.
    b.wait_for("#f0")
        .await
        .select_by_value("FromAddress")
        .await
        .unwrap();
    b.wait_for("#o0")
        .await
        .select_by_value("-like")
        .await
        .unwrap();
    b.fill("#v0", "*@spam.example").await;
    b.wait_for("#qf")
        .await
        .select_by_value("Subject")
        .await
        .unwrap();
    b.fill("#quick", "spam").await;
    b.click("#apply-filter").await;
    wait_text(&b, "#total", "3").await;
    assert_eq!(
        b.text("#filter-text").await,
        "FromAddress -like '*@spam.example' -and Subject -like '*spam*'"
    );
    b.screenshot("queue-viewer-filter").await;
    b.click("#scope-all").await;
    b.click("#do-remove-without-ndr").await;
    wait_text(&b, "#total", "0").await;
    type Command = (String, i32, Option<i32>, bool);
    let commands: Vec<Command> = sqlx::query_as(
        "SELECT verb, cardinality(message_ids), messages, flag FROM queue_command ORDER BY id",
    )
    .fetch_all(&setup.pool)
    .await
    .unwrap();
    assert_eq!(
        commands,
        [("RemoveMessage".into(), 3, Some(3), false)],
        "one queue command for the three"
    );
    within(30, "the spammer's messages gone", || async {
        count(&setup.pool, "SELECT count(*) FROM message").await == 3
    })
    .await;
    assert_eq!(
        count(
            &setup.pool,
            "SELECT count(*) FROM message WHERE from_address LIKE 'spammer@%'"
        )
        .await,
        0
    );
    assert!(
        mailbox(setup.data_dir.path(), SPAMMER).is_empty(),
        "an NDR was sent"
    );

    // Retry from the queue's actions: the three left are tried again (and fail again).
    b.goto(&format!(
        "/toolbox/queue-viewer?selected={}",
        queue.replace('\\', "%5C")
    ))
    .await;
    b.click("aside.actions form[action$='do=retry'] button")
        .await;
    within(60, "an attempt recorded for each message left", || async {
        count(
            &setup.pool,
            "SELECT count(DISTINCT message_id) FROM delivery_attempt",
        )
        .await
            == 3
    })
    .await;

    // The others stay, and a message's properties show its recipients and failed attempts.
    b.goto(&format!(
        "/toolbox/queue-viewer/messages?queue={}",
        queue.replace('\\', "%5C")
    ))
    .await;
    wait_text(&b, "#total", "3").await;
    b.click("#messages td.name a").await;
    b.wait_for("#message-properties").await;
    let props = b.text("#message-properties").await;
    assert!(props.contains("@down.example"), "{props}");
    assert!(props.contains("Retry"), "{props}");
    assert!(props.contains("Expiration Time"), "{props}");
    b.wait_for("table.attempts td.reply").await;
    assert!(!b.text("table.attempts td.reply").await.is_empty());
    assert!(b.text("#headers").await.contains("Subject:"));
    // The sender hears of the delay after DelayNotificationTimeout (4 hours by default).
    assert!(b.text("td.delay-dsn").await.ends_with("UTC"));
    b.screenshot("queue-viewer-properties").await;

    // The hostile subject and sender in the properties, tracking events included, as text.
    let properties = |column: &str, value: &str| {
        let (b, pool, queue) = (&b, &setup.pool, &queue);
        let sql = format!("SELECT internal_id FROM message WHERE {column} = $1");
        let value = value.to_string();
        async move {
            let (internal,): (i64,) = sqlx::query_as(&sql)
                .bind(&value)
                .fetch_one(pool)
                .await
                .unwrap();
            b.goto(&format!(
                "/toolbox/queue-viewer/message?id={}%5C{internal}",
                queue.replace('\\', "%5C")
            ))
            .await;
            b.wait_for("#tracking-events td.event").await;
        }
    };
    properties("subject", HOSTILE_SUBJECT).await;
    let subjects = b.text("#tracking-events td.subject").await;
    assert_eq!(subjects, HOSTILE_SUBJECT, "the tracking event's subject");
    let html = b.source().await;
    assert!(html.contains("&lt;script&gt;alert"), "subject not shown");
    assert!(!html.contains("<script>alert"), "subject became markup");
    properties("from_address", HOSTILE_FROM).await;
    let sender = b.text("#tracking-events td.sender").await;
    assert!(sender.contains("<img src=x onerror=alert(1)>"), "{sender}");
    let html = b.source().await;
    assert!(html.contains("&lt;img src=x"), "sender not shown");
    assert!(!html.contains("<img src=x"), "sender became markup");
    b.close().await;
}

#[tokio::test]
async fn pages_totals_csrf_refusals_and_export() {
    let down = "127.0.0.162";
    let s = held_setup(down).await;
    let console = Console::start(s, &[]).await;
    let setup = &console.setup;
    send_many(setup, 120);
    let queue = held_queue(&setup.pool, down, 120).await;
    let q = queue.replace('\\', "%5C");

    let c = console.client();
    let session = sign_in(&c, "Administrator", ADMIN_PASSWORD)
        .await
        .expect("signed in");
    let cookie = session_cookie(&session);
    let get = |path: String| {
        let c = &c;
        let cookie = cookie.clone();
        async move {
            let r = c.get(&path, &[("Cookie", &cookie)]).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            r
        }
    };

    // 120 messages, 50 a page: the total, the range, and the links on.
    let messages = format!("/toolbox/queue-viewer/messages?queue={q}");
    let first = get(format!("{messages}&size=50")).await;
    assert!(first.body.contains("id=\"total\">120<"), "{}", first.body);
    assert!(first.body.contains("id=\"page-range\">1–50<"));
    assert_eq!(first.body.matches("data-message=").count(), 50);
    assert!(first.body.contains("id=\"next-page\""));
    assert!(!first.body.contains("id=\"prev-page\""));
    let second = get(format!("{messages}&size=50&offset=50")).await;
    assert!(second.body.contains("id=\"page-range\">51–100<"));
    assert!(second.body.contains("id=\"prev-page\"") && second.body.contains("id=\"next-page\""));
    let last = get(format!("{messages}&size=50&offset=100")).await;
    assert!(last.body.contains("id=\"page-range\">101–120<"));
    assert_eq!(last.body.matches("data-message=").count(), 20);
    assert!(!last.body.contains("id=\"next-page\""));
    // Next and Previous name the message at the page's edge: the pages they open are the ones
    // the offsets give.
    let link = |body: &str, id: &str| {
        let at = body.find(&format!("id=\"{id}\"")).expect(id);
        let start = body[..at].rfind("href=\"").expect("href") + 6;
        let end = start + body[start..].find('"').unwrap();
        body[start..end].replace("&#38;", "&").replace("&amp;", "&")
    };
    let rows = |body: &str| {
        body.split("data-message=\"")
            .skip(1)
            .map(|s| s[..s.find('"').unwrap()].to_string())
            .collect::<Vec<_>>()
    };
    let next = link(&first.body, "next-page");
    assert!(
        next.contains("offset=50") && next.contains("after="),
        "{next}"
    );
    let by_next = get(next).await;
    assert!(by_next.body.contains("id=\"page-range\">51–100<"));
    assert_eq!(rows(&by_next.body), rows(&second.body));
    let prev = link(&last.body, "prev-page");
    assert!(
        prev.contains("offset=50") && prev.contains("before="),
        "{prev}"
    );
    assert_eq!(rows(&get(prev).await.body), rows(&second.body));
    let picked = get(format!("{messages}&size=50&check=all")).await;
    assert_eq!(picked.body.matches("name=\"id\"").count(), 50);
    assert_eq!(
        picked.body.matches(" checked>").count(),
        50 + 1,
        "the page's rows and the scope"
    );
    // The quick filter: Subject contains "bulk 11" (110 to 119).
    let quick = get(format!("{messages}&qf=Subject&q=bulk%2011")).await;
    assert!(quick.body.contains("id=\"total\">10<"), "{}", quick.body);
    let all = get(format!("{messages}&size=200&refresh=5")).await;
    assert!(
        all.body
            .contains("<meta http-equiv=\"refresh\" content=\"5\">")
    );
    assert!(!first.body.contains("http-equiv=\"refresh\""));
    assert_eq!(all.body.matches("data-message=").count(), 120);
    // Sorted on a column, in SQL: the subjects descending.
    let sorted = get(format!("{messages}&size=50&sort=-Subject")).await;
    let at = |s: &str| sorted.body.find(s).unwrap_or_else(|| panic!("{s}"));
    assert!(at("bulk 119") < at("bulk 118") && at("bulk 118") < at("bulk 070"));
    assert!(!sorted.body.contains("bulk 069"));
    // A filter the shell would refuse is refused in its words, and lists nothing.
    let bad = get(format!("{messages}&f0=Size&o0=-gt&v0=many")).await;
    assert!(
        bad.body
            .contains("can&#x27;t be compared with the property Size")
            || bad
                .body
                .contains("can&#39;t be compared with the property Size"),
        "{}",
        bad.body
    );

    // Export Message: only a suspended message, as Export-Message.
    let (internal,): (i64,) = sqlx::query_as("SELECT min(internal_id) FROM message")
        .fetch_one(&setup.pool)
        .await
        .unwrap();
    let message = format!("{queue}\\{internal}");
    let export = format!(
        "/toolbox/queue-viewer/export?id={}",
        message.replace('\\', "%5C")
    );
    let r = c.get(&export, &[("Cookie", &cookie)]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("isn't suspended"), "{}", r.body);

    let origin = c.origin();
    let own = [
        ("Cookie", cookie.as_str()),
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let page = get(messages.clone()).await;
    let csrf = page.hidden("csrf").expect("the page's token");
    let action = format!("/toolbox/queue-viewer/messages/action?queue={q}");

    // Without the token, or with another: every action refused before anything runs.
    let before = state(&setup.pool).await;
    for token in [None, Some("not-the-token")] {
        for verb in [
            "suspend",
            "resume",
            "retry",
            "resubmit",
            "remove-with-ndr",
            "remove-without-ndr",
        ] {
            let forged = format!("/toolbox/queue-viewer/queue-action?queue={q}&do={verb}");
            let form: Vec<(&str, &str)> = token.map(|t| ("csrf", t)).into_iter().collect();
            let r = c.post_form(&forged, &own, &form).await;
            assert_eq!(r.status, 403, "queue {verb} {token:?}: {}", r.body);
        }
        for verb in ["suspend", "resume", "remove-with-ndr", "remove-without-ndr"] {
            for scope in [("scope", "all"), ("id", message.as_str())] {
                let mut form = vec![("do", verb), scope];
                form.extend(token.map(|t| ("csrf", t)));
                let r = c.post_form(&action, &own, &form).await;
                assert_eq!(r.status, 403, "messages {verb} {token:?}: {}", r.body);
            }
        }
    }
    assert_eq!(
        state(&setup.pool).await,
        before,
        "a forged post changed the queue"
    );
    let queue_action = format!("/toolbox/queue-viewer/queue-action?queue={q}&do=suspend");
    assert_eq!(
        count(&setup.pool, "SELECT count(*) FROM message").await,
        120
    );
    assert_eq!(
        count(
            &setup.pool,
            "SELECT count(*) FROM delivery_queue WHERE suspended"
        )
        .await,
        0
    );
    assert_eq!(
        count(&setup.pool, "SELECT count(*) FROM queue_command").await,
        0
    );

    // With it: the one message suspended, then exported.
    let r = c
        .post_form(
            &action,
            &own,
            &[
                ("csrf", &csrf),
                ("scope", "selected"),
                ("id", &message),
                ("do", "suspend"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = c.get(&export, &[("Cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Subject: bulk 000"), "{}", r.body);
    assert!(
        r.header("content-disposition")
            .is_some_and(|d| d.contains(".eml")),
        "{:?}",
        r.header("content-disposition")
    );

    // The queue suspended from its action; Retry on it now refused in Retry-Queue's words.
    let r = c.post_form(&queue_action, &own, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    within(30, "the queue suspended", || async {
        count(
            &setup.pool,
            "SELECT count(*) FROM delivery_queue WHERE suspended",
        )
        .await
            == 1
    })
    .await;
    let retry = format!("/toolbox/queue-viewer/queue-action?queue={q}&do=retry");
    let r = c.post_form(&retry, &own, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("isn&#x27;t in Retry status")
            || r.body.contains("isn&#39;t in Retry status"),
        "{}",
        r.body
    );

    // Remove messages (without sending NDR) from the queue's actions: all 120, in one command.
    let remove = format!("/toolbox/queue-viewer/queue-action?queue={q}&do=remove-without-ndr");
    let r = c.post_form(&remove, &own, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    within(60, "the queue emptied", || async {
        count(&setup.pool, "SELECT count(*) FROM message").await == 0
    })
    .await;
    assert_eq!(
        count(
            &setup.pool,
            "SELECT count(*) FROM queue_command WHERE verb = 'RemoveMessage' AND NOT flag
                AND cardinality(message_ids) = 120"
        )
        .await,
        1
    );
}

/// Seed 000's attempt 3: org1's Queues tab shows the Shadow Redundancy queue for the primary
/// with the message, whose properties say it is a shadow copy; empty after the primary's
/// XQDISCARD.
#[tokio::test]
async fn a_shadow_redundancy_queue_and_its_shadow_copy() {
    use common::pair::*;
    use common::peers::Sink;
    let final_addr = addr("127.0.0.163", peer_port());
    let mut last = Sink::start(final_addr);
    last.stop();
    let port = gateway_port();
    let org2 = org2(1, ORG2, port, final_addr, SHADOWING)
        .await
        .start()
        .await;
    let primary = std::net::SocketAddr::from((org2.setup.ip, port));
    listening(primary).await;
    let org1 = org1_shadowing(12, &[org2.setup.ip], port).await;
    applied(&org2, "shadowing").await;
    send_to_org2(&org1, "shadowed");
    until(60, "a shadow copy on org1", &[&org1, &org2], || async {
        shadow_copies(&org1).await == 1
    })
    .await;

    let c = https::Client::new(org1.console_addr(), &org1.data_dir(), ORG1.1);
    let b = Browser::start(&c.origin()).await;
    b.goto(HOME).await;
    b.log_on("Administrator", ADMIN_PASSWORD).await;
    b.wait_for_path("the console", |p| p == HOME).await;
    b.goto("/toolbox/queue-viewer").await;
    let cells = row_cells(&b, "queues", "ShadowRedundancy").await;
    assert_eq!(
        cells[1],
        ("count".to_string(), "1".to_string()),
        "{cells:?}"
    );
    assert!(b.text("#queues").await.contains(ORG2.1));
    b.screenshot("queue-viewer-shadow").await;
    let (queue,): (i64,) =
        sqlx::query_as("SELECT id FROM delivery_queue WHERE delivery_type = 'ShadowRedundancy'")
            .fetch_one(org1.pool())
            .await
            .unwrap();
    b.goto(&format!(
        "/toolbox/queue-viewer/messages?queue={}%5C{queue}",
        ORG1.0
    ))
    .await;
    wait_text(&b, "#total", "1").await;
    b.click("#messages td.name a").await;
    b.wait_for("#shadow-copy").await;
    assert!(b.text("#message-properties").await.contains("Shadow"));
    assert_eq!(b.text("td.delay-dsn").await, "Sent by the primary server");
    b.screenshot("queue-viewer-shadow-copy").await;

    // The primary delivers and says so: the copy is discarded and the queue shows empty.
    last.restart();
    retry_now(&org2).await;
    until(60, "org1's copy discarded", &[&org1, &org2], || async {
        shadow_copies(&org1).await == 0
    })
    .await;
    b.goto("/toolbox/queue-viewer").await;
    let cells = row_cells(&b, "queues", "ShadowRedundancy").await;
    assert_eq!(
        cells[1],
        ("count".to_string(), "0".to_string()),
        "{cells:?}"
    );
    b.close().await;
}
