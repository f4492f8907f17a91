//! A filtered message action is one command to the queue manager: here with no gateway running,
//! so the shell applies it to the stored queue state (set-based, in one transaction), and the
//! queue_command table shows one row per line, carrying every matching message.

mod common;

use common::held::Held;
use common::*;
use hubgate::shell::Shell;
use uuid::Uuid;

const SPAMMER: &str = "spammer@spam.example";

/// Accepts a message through the queue's store, as the SMTP server does at end of DATA; it
/// waits in Submission, as it would for a gateway that is not running.
async fn accept(setup: &Setup, from: &str, rcpts: &[&str]) -> Uuid {
    Held::offer(from, rcpts).accept(setup).await
}

async fn run(setup: &Setup, line: &str) -> String {
    Shell::new(setup.pool.clone(), FQDN)
        .with_data_dir(setup.data_dir.path().to_path_buf())
        .run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

type CommandRow = (String, i32, i32, Option<i32>, Option<i32>, Option<String>);

/// verb, messages named, ordinals, messages and recipients changed, applied by.
async fn commands(setup: &Setup) -> Vec<CommandRow> {
    sqlx::query_as(
        "SELECT verb, cardinality(message_ids), cardinality(ordinals), messages, recipients,
                applied_by
           FROM queue_command ORDER BY id",
    )
    .fetch_all(&setup.pool)
    .await
    .unwrap()
}

async fn suspended(setup: &Setup, ids: &[Uuid]) -> Vec<bool> {
    let mut out = Vec::new();
    for id in ids {
        let (s,): (bool,) = sqlx::query_as("SELECT suspended FROM message WHERE id = $1")
            .bind(id)
            .fetch_one(&setup.pool)
            .await
            .unwrap();
        out.push(s);
    }
    out
}

#[tokio::test]
async fn a_filtered_message_action_is_one_command_carrying_every_matching_message() {
    let setup = Setup::new().await;
    let mut spam = Vec::new();
    for i in 0..3 {
        let to = format!("u{i}@fabrikam.test");
        let v = format!("v{i}@fabrikam.test");
        spam.push(accept(&setup, SPAMMER, &[&to, &v]).await);
    }
    let good = accept(&setup, "alice@example.org", &["bob@fabrikam.test"]).await;
    let all = [spam.clone(), vec![good]].concat();

    // -WhatIf lists each target and records nothing.
    let out = run(
        &setup,
        "Suspend-Message -Filter {FromAddress -like '*@spam.example'} -WhatIf",
    )
    .await;
    assert_eq!(
        out.matches("What if: Suspending message").count(),
        3,
        "{out}"
    );
    assert!(commands(&setup).await.is_empty());

    let out = run(
        &setup,
        "Suspend-Message -Filter {FromAddress -like '*@spam.example'}",
    )
    .await;
    assert!(
        out.contains("Suspended 3 messages matching the filter."),
        "{out}"
    );
    assert_eq!(suspended(&setup, &all).await, [true, true, true, false]);
    assert_eq!(
        commands(&setup).await,
        [(
            "SuspendMessage".into(),
            3,
            0,
            Some(3),
            Some(0),
            Some("Stored".into())
        )]
    );

    // The pipeline idiom: one command for the three messages, their six recipients.
    let out = run(
        &setup,
        "Get-Message -Filter {FromAddress -like \"*@spam.example\"} | Remove-Message -WithNDR $false",
    )
    .await;
    assert!(
        out.contains("Removed (without NDR) 3 messages matching the filter."),
        "{out}"
    );
    let marks: Vec<(Uuid, Option<bool>)> = sqlx::query_as(
        "SELECT message_id, remove_with_ndr FROM message_recipient ORDER BY message_id, ordinal",
    )
    .fetch_all(&setup.pool)
    .await
    .unwrap();
    for (id, mark) in &marks {
        let want = if *id == good { None } else { Some(false) };
        assert_eq!(*mark, want, "{id}");
    }
    assert_eq!(marks.len(), 7);
    let cmds = commands(&setup).await;
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert_eq!(
        cmds[1],
        (
            "RemoveMessage".into(),
            6,
            6,
            Some(3),
            Some(6),
            Some("Stored".into())
        )
    );

    // Resume by filter: the same three, back in one command.
    let out = run(
        &setup,
        "Resume-Message -Filter {FromAddress -like '*@spam.example'}",
    )
    .await;
    assert!(
        out.contains("Resumed 3 messages matching the filter."),
        "{out}"
    );
    assert_eq!(suspended(&setup, &all).await, [false; 4]);
    assert_eq!(commands(&setup).await.len(), 3);
}
