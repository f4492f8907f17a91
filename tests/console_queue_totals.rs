//! The Messages tab's unfiltered totals in `hubgate serve` come from the queue manager's memory
//! (all queues, one queue), not from a scan of every held recipient: on a real backlog in two
//! down next hops, with a message held for both (one message, two entries), each total must be
//! the SQL count a shell or a console built by hand gives, before and after that message goes.

mod common;

use common::console::*;
use common::mail::*;
use common::*;
use hubgate::transport::queue::ops::MessageFilter;
use hubgate::transport::queue::ops::filter::filtered_page;

const DOWN1: &str = "127.0.0.197";
const DOWN2: &str = "127.0.0.198";

/// down1.example and down2.example each go to an address where nothing listens.
async fn two_down_setup() -> Setup {
    let s = setup().await;
    let port = peer_port();
    configure(
        &s,
        &[
            &format!(
                "New-SendConnector -Name Down1 -AddressSpaces 'down1.example' -DNSRoutingEnabled $false -SmartHosts '{DOWN1}' -Port {port}"
            ),
            &format!(
                "New-SendConnector -Name Down2 -AddressSpaces 'down2.example' -DNSRoutingEnabled $false -SmartHosts '{DOWN2}' -Port {port}"
            ),
        ],
    )
    .await;
    s
}

/// `n` messages to `rcpts` (comma-separated), subject `subject`, over a few connections.
fn send(setup: &Setup, rcpts: &str, subject: &str, n: usize) {
    let script = r#"
import smtplib, sys
host, port, rcpts, subject, n = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(','), sys.argv[4], int(sys.argv[5])
i = 0
while i < n:
    s = smtplib.SMTP(host, port, timeout=60)
    for _ in range(min(10, n - i)):
        s.sendmail('sender@contoso.test', rcpts,
                   'From: sender@contoso.test\r\nSubject: %s\r\n\r\nbody %d\r\n' % (subject, i))
        i += 1
    s.quit()
"#;
    let (ok, out) = python(
        script,
        &[
            &setup.ip.to_string(),
            &setup.smtp_port.to_string(),
            rcpts,
            subject,
            &n.to_string(),
        ],
    );
    assert!(ok, "python smtplib: {out}");
}

/// Each down queue's identity, once both are in Retry holding `want` (queue 1, queue 2)
/// messages waiting for their retry.
async fn held(pool: &sqlx::PgPool, want: (i64, i64)) -> (String, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT q.id, q.next_hop_domain, q.status,
                    (SELECT count(DISTINCT message_id) FROM message_recipient r
                      WHERE r.queue_id = q.id AND r.status = 'Retry')
               FROM delivery_queue q WHERE q.next_hop_domain IN ($1, $2)
              ORDER BY q.next_hop_domain",
        )
        .bind(DOWN1)
        .bind(DOWN2)
        .fetch_all(pool)
        .await
        .unwrap();
        if let [(q1, _, s1, n1), (q2, _, s2, n2)] = rows.as_slice()
            && s1 == "Retry"
            && s2 == "Retry"
            && (*n1, *n2) == want
        {
            return (format!("{SERVER}\\{q1}"), format!("{SERVER}\\{q2}"));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the down queues never held {want:?}: {rows:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The total the SQL count gives (what the shell and a console built by hand show).
async fn sql_total(pool: &sqlx::PgPool, scope: MessageFilter<'_>) -> usize {
    filtered_page(pool, SERVER, scope, None, vec![], 0, 50)
        .await
        .unwrap()
        .1
}

#[tokio::test]
async fn the_gateways_message_totals_are_the_sql_counts_with_a_message_in_two_queues() {
    let console = Console::start(two_down_setup().await, &[]).await;
    let setup = &console.setup;
    send(setup, "p@down1.example", "one", 12);
    send(setup, "p@down2.example", "two", 8);
    send(setup, "p@down1.example,q@down2.example", "both", 1);
    let (q1, q2) = held(&setup.pool, (13, 9)).await;

    let c = console.client();
    let session = sign_in(&c, "Administrator", ADMIN_PASSWORD)
        .await
        .expect("signed in");
    let cookie = session_cookie(&session);
    let total = |query: String| {
        let c = &c;
        let cookie = cookie.clone();
        async move {
            let path = format!("/toolbox/queue-viewer/messages?size=5{query}");
            let r = c.get(&path, &[("Cookie", &cookie)]).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            let at = r.body.find("id=\"total\">").expect("a total") + "id=\"total\">".len();
            let n = &r.body[at..at + r.body[at..].find('<').unwrap()];
            n.parse::<usize>().unwrap_or_else(|_| panic!("{n}"))
        }
    };
    let queue = |q: &str| format!("&queue={}", q.replace('\\', "%5C"));

    // The message held for both next hops is an entry in each.
    let all = total(String::new()).await;
    assert_eq!(all, 22);
    assert_eq!(all, sql_total(&setup.pool, MessageFilter::All).await);
    for (q, n) in [(&q1, 13), (&q2, 9)] {
        let shown = total(queue(q)).await;
        assert_eq!(shown, n, "{q}");
        assert_eq!(shown, sql_total(&setup.pool, MessageFilter::Queue(q)).await);
    }

    // Without it, every message is in one queue: the manager's count stands alone.
    configure(
        setup,
        &["Get-Message -Filter {Subject -eq \"both\"} | Remove-Message -WithNDR $false"],
    )
    .await;
    held(&setup.pool, (12, 8)).await;
    let all = total(String::new()).await;
    assert_eq!(all, 20);
    assert_eq!(all, sql_total(&setup.pool, MessageFilter::All).await);
    for (q, n) in [(&q1, 12), (&q2, 8)] {
        let shown = total(queue(q)).await;
        assert_eq!(shown, n, "{q}");
        assert_eq!(shown, sql_total(&setup.pool, MessageFilter::Queue(q)).await);
    }
    // The Submission and Poison queues hold nothing here, and say so.
    for q in ["Submission", "Poison"] {
        assert_eq!(total(queue(&format!("{SERVER}\\{q}"))).await, 0, "{q}");
    }
}
