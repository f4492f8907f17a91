//! Poison messages (reference §6.1, PoisonThreshold): a message whose delivery panics is given
//! back to its queue, and after PoisonThreshold panics it goes to the Poison queue and stays
//! there. The queue manager runs in-process against a real PostgreSQL; the panic is a real
//! unwinding through a held job.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use common::mail::*;
use common::*;
use hubgate::logs::tracking::TrackingLog;
use hubgate::org::Org;
use hubgate::transport::clock::SystemClock;
use hubgate::transport::delivery::Agents;
use hubgate::transport::queue::manager::{self, QueueManager, Submitted};
use hubgate::transport::queue::{self, Disposition, Envelope, EnvelopeRecipient, Spool};

#[tokio::test]
async fn a_message_that_panics_delivery_twice_is_poison() {
    let port = peer_port();
    let s = setup().await;
    configure(
        &s,
        &[
            // Nothing listens there, and the next retry is an hour away: the queue holds the
            // message and only this test takes it.
            &format!(
                "New-SendConnector -Name Down -AddressSpaces 'down.example' -DNSRoutingEnabled $false -SmartHosts '127.0.0.70' -Port {port}"
            ),
            "Set-TransportServer HUB1 -TransientFailureRetryInterval 01:00:00",
        ],
    )
    .await;
    hubgate::tls::install_crypto_provider();
    let spool = Spool::open(s.data_dir.path()).unwrap();
    let org = Org::load(&s.pool, SERVER).await.unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(org));
    let agents = Agents::new(
        s.data_dir.path(),
        FQDN,
        spool.clone(),
        rx.clone(),
        s.pool.clone(),
    );
    let qm = QueueManager::start(
        s.pool.clone(),
        spool.clone(),
        rx,
        manager::Settings {
            server_name: SERVER.into(),
            fqdn: FQDN.into(),
            clock: SystemClock::shared(),
        },
        TrackingLog::disabled(),
        agents,
        Some(manager::claim(&s.pool, &s.db_url, SERVER).await.unwrap()),
    )
    .await
    .unwrap();
    let env = Envelope {
        id: uuid::Uuid::now_v7(),
        server: SERVER.into(),
        from: SENDER.into(),
        recipients: vec![EnvelopeRecipient {
            address: "r@down.example".into(),
            orcpt: None,
            notify: None,
            disposition: Disposition::Relay,
        }],
        source_ip: "127.0.0.1".parse().unwrap(),
        receive_connector: "HUB1\\Default HUB1".into(),
        helo: "test".into(),
        auth_user: None,
        internet_message_id: Some("<poison@test>".into()),
        subject: Some("poison".into()),
        env_id: None,
        ret: None,
        body_type: None,
        smtp_utf8: false,
        shadow: None,
    };
    let body = b"Subject: poison\r\n\r\nbody\r\n".to_vec();
    let size = body.len() as u64;
    let internal_id = queue::accept(&s.pool, &spool, &env, Vec::new(), body)
        .await
        .unwrap();
    qm.submit(Submitted::accepted(&env, internal_id, size));

    let pool = s.pool.clone();
    within(
        20,
        "the queue in Retry after the failed connection",
        || async {
            sqlx::query_as::<_, (String,)>(
                "SELECT status FROM delivery_queue WHERE next_hop_domain = '127.0.0.70'",
            )
            .fetch_optional(&pool)
            .await
            .unwrap()
            .is_some_and(|(st,)| st == "Retry")
        },
    )
    .await;
    let (q,): (i64,) =
        sqlx::query_as("SELECT id FROM delivery_queue WHERE next_hop_domain = '127.0.0.70'")
            .fetch_one(&s.pool)
            .await
            .unwrap();

    for crash in 1..=2 {
        let job = qm.take_job(q).expect("the message is ready in its queue");
        assert_eq!(job.message, env.id);
        let unwound = catch_unwind(AssertUnwindSafe(move || {
            let _held = job;
            panic!("delivery crashed on this message ({crash})");
        }));
        assert!(unwound.is_err());
        // The batched writer records the crash; the count and the poison flag are written
        // together, so once the count shows this crash the flag is final.
        let row = || async {
            sqlx::query_as::<_, (i32, bool)>(
                "SELECT crash_count, poison FROM message WHERE id = $1",
            )
            .bind(env.id)
            .fetch_one(&pool)
            .await
            .unwrap()
        };
        within(20, "the crash recorded on the message", || async {
            row().await.0 >= crash
        })
        .await;
        let (count, poison) = row().await;
        assert_eq!(count, crash);
        assert_eq!(poison, crash == 2, "PoisonThreshold is 2");
    }
    assert!(
        qm.take_job(q).is_none(),
        "a poison message is not delivered"
    );
    let mut shell = hubgate::shell::Shell::new(s.pool.clone(), FQDN);
    let queues = shell.run_line("Get-Queue HUB1\\Poison").await.unwrap();
    let line = queues
        .lines()
        .find(|l| l.contains("HUB1\\Poison"))
        .unwrap_or_else(|| panic!("{queues}"));
    assert!(line.contains(" 1 "), "{queues}");

    // Resume-Message releases it: the running manager loads it again and it is deliverable.
    shell
        .run_line(&format!("Resume-Message HUB1\\Poison\\{internal_id}"))
        .await
        .unwrap();
    let again = std::sync::Mutex::new(None);
    within(20, "the released message back in its queue", || async {
        let job = qm.take_job(q);
        let found = job.is_some();
        *again.lock().unwrap() = job;
        found
    })
    .await;
    let job = again.into_inner().unwrap().unwrap();
    assert_eq!(job.message, env.id);
}
