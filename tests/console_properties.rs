//! A message's properties read from a console of another node of the organisation: HUB1 and
//! HUB2 share the database, a message is held on HUB2; HUB1's Queue Viewer shows the message but
//! says its tracking events are in HUB2's log, kept on HUB2, while HUB2's own console lists them.

mod common;

use common::console::*;
use common::mail::*;
use common::*;
use hubgate::org::bootstrap::{self, FirstStart};

const HUB2_FQDN: &str = "hub2.contoso.test";

#[tokio::test]
async fn another_nodes_message_says_where_its_tracking_events_are() {
    let s = setup().await;
    // No connector leads to held.example, so the message waits in HUB2's Unreachable queue.
    configure(
        &s,
        &["New-AcceptedDomain Held -DomainName held.example -DomainType ExternalRelay"],
    )
    .await;
    let (ip, smtp_port, client_port) = (s.ip, s.another_port(), s.another_port());
    bootstrap::ensure_server(
        &s.pool,
        &FirstStart {
            server_name: "HUB2",
            fqdn: HUB2_FQDN,
            default_bindings: Some(vec![format!("{ip}:{smtp_port}")]),
            client_bindings: Some(vec![format!("{ip}:{client_port}")]),
            admin_password: None,
        },
    )
    .await
    .unwrap();
    let hub2 = Setup {
        db_url: s.db_url.clone(),
        pool: s.pool.clone(),
        data_dir: tempfile::tempdir().unwrap(),
        ip,
        smtp_port,
        client_port,
        console_port: s.another_port(),
        fqdn: HUB2_FQDN.into(),
    };
    let console = Console::start(s, &[]).await;
    // As an administrator adds a node: the organisation's key copied from the first.
    let key = hub2.data_dir.path().join("organization.key");
    std::fs::copy(console.setup.data_dir.path().join("organization.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let hub2 = hub2.start().await;
    send_to(hub2.smtp(), "x@held.example", "held on HUB2");
    let pool = console.setup.pool.clone();
    within(60, "the message queued on HUB2", || async {
        sqlx::query_as::<_, (i64,)>(
            "SELECT count(*) FROM message m JOIN message_recipient r ON r.message_id = m.id
              WHERE m.server = 'HUB2' AND r.queue_id IS NOT NULL",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
        .0 == 1
    })
    .await;
    let (internal,): (i64,) = sqlx::query_as("SELECT internal_id FROM message")
        .fetch_one(&pool)
        .await
        .unwrap();
    let path = format!("/toolbox/queue-viewer/message?id=HUB2%5C*%5C{internal}");

    // HUB1's console: the message, and where its events are.
    let c = console.client();
    let cookie = session_cookie(&sign_in(&c, "Administrator", ADMIN_PASSWORD).await.unwrap());
    let r = c.get(&path, &[("Cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("held on HUB2"), "{}", r.body);
    assert!(r.body.contains("id=\"tracking-unavailable\""), "{}", r.body);
    assert!(
        r.body.contains("of HUB2 is kept on HUB2 itself") && r.body.contains("runs on HUB1"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("id=\"tracking-events\""), "{}", r.body);

    // HUB2's console reads its own log.
    let c2 = https::Client::new(hub2.console_addr(), &hub2.data_dir(), HUB2_FQDN);
    let cookie2 = session_cookie(&sign_in(&c2, "Administrator", ADMIN_PASSWORD).await.unwrap());
    let r = c2.get(&path, &[("Cookie", &cookie2)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("tracking-unavailable"), "{}", r.body);
    assert!(
        r.body.contains("<td class=\"event\">RECEIVE</td>"),
        "{}",
        r.body
    );
}
