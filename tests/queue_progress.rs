//! How far the gateway has got with a message action the console stopped waiting for: the
//! messages it names that are already as it asks (removed, suspended, resumed), out of all it
//! names, read from the real database the gateway writes.

mod common;

use common::held::Held;
use common::*;
use hubgate::transport::queue::ops::progress::{Progress, progress};
use uuid::Uuid;

/// A message accepted through the queue's store, waiting in Submission (no gateway runs).
async fn accept(setup: &Setup, from: &str) -> Uuid {
    Held::offer(from, &["x@fabrikam.example"])
        .accept(setup)
        .await
}

/// A message action recorded and not run yet, as the gateway finds it.
async fn recorded(setup: &Setup, verb: &str, ids: &[Uuid]) -> i64 {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO queue_command (server, verb, identity, message_ids)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(SERVER)
    .bind(verb)
    .bind(format!("{} message(s)", ids.len()))
    .bind(ids)
    .fetch_one(&setup.pool)
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn a_recorded_message_action_reports_how_many_of_its_messages_are_done() {
    let setup = Setup::new().await;
    let (a, b, c) = (
        accept(&setup, "spammer@spam.example").await,
        accept(&setup, "spammer@spam.example").await,
        accept(&setup, "good@example.org").await,
    );
    let pending = |applied, total| Progress {
        done: false,
        applied,
        total,
    };

    // Remove-Message naming a and b (b twice, one entry per recipient): neither is gone yet.
    let remove = recorded(&setup, "RemoveMessage", &[a, b, b]).await;
    assert_eq!(
        progress(&setup.pool, SERVER, remove).await.unwrap(),
        Some(pending(0, 2))
    );
    // The gateway has finalised a: its rows are gone.
    setup
        .sql(&format!("DELETE FROM message WHERE id = '{a}'"))
        .await;
    assert_eq!(
        progress(&setup.pool, "hub1", remove).await.unwrap(),
        Some(pending(1, 2)),
        "the server's name is matched as Exchange matches it, case aside"
    );

    let suspend = recorded(&setup, "SuspendMessage", &[b, c]).await;
    setup
        .sql(&format!(
            "UPDATE message SET suspended = true WHERE id = '{c}'"
        ))
        .await;
    assert_eq!(
        progress(&setup.pool, SERVER, suspend).await.unwrap(),
        Some(pending(1, 2))
    );
    let resume = recorded(&setup, "ResumeMessage", &[b, c]).await;
    assert_eq!(
        progress(&setup.pool, SERVER, resume).await.unwrap(),
        Some(pending(1, 2))
    );

    // Another server's command, a queue command or no command: nothing to report.
    assert_eq!(progress(&setup.pool, "HUB2", remove).await.unwrap(), None);
    assert_eq!(
        progress(&setup.pool, SERVER, resume + 100).await.unwrap(),
        None
    );

    // The gateway finished the removal: b's rows are gone too, and the command says so.
    setup
        .sql(&format!("DELETE FROM message WHERE id = '{b}'"))
        .await;
    setup
        .sql(&format!(
            "UPDATE queue_command SET done_at = now(), applied_by = 'Gateway' WHERE id = {remove}"
        ))
        .await;
    assert_eq!(
        progress(&setup.pool, SERVER, remove).await.unwrap(),
        Some(Progress {
            done: true,
            applied: 2,
            total: 2
        })
    );
}
