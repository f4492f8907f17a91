//! Group commit (transport/queue/commit.rs): messages whose sessions commit at the same time share
//! one transaction, each is answered only once its rows are committed, and a message PostgreSQL
//! refuses fails alone. A real PostgreSQL; the batch is made for real by holding a lock on the
//! message table while the sessions arrive.

mod common;

use common::held::Held;
use common::*;
use hubgate::transport::queue::{self, AcceptError, Committer, Envelope, Spool};
use sqlx::Connection;
use uuid::Uuid;

/// A message to two recipients, the second with an ORCPT and NOTIFY, each row of the recipient
/// table filled.
fn envelope(subject: &str) -> Envelope {
    let held = Held {
        subject: Some(subject),
        ..Held::offer("sender@example.org", &["a@example.net", "b@example.net"])
    };
    let mut env = held.envelope(Uuid::now_v7());
    env.recipients[1].orcpt = Some("rfc822;b@example.net".into());
    env.recipients[1].notify = Some("NEVER".into());
    env
}

type Accepted = tokio::task::JoinHandle<Result<i64, AcceptError>>;

fn accept(committer: &Committer, spool: &Spool, env: Envelope) -> Accepted {
    let committer = committer.clone();
    let body = spool.incoming_from(env.id, format!("Subject: x\r\n\r\n{}\r\n", env.id).into());
    tokio::spawn(async move { queue::accept_incoming(&committer, &env, body).await })
}

/// Holds the message table against inserts until the connection is closed: the committer's
/// first batch waits for it, and what arrives meanwhile gathers for the next.
async fn hold_inserts(s: &Setup) -> sqlx::PgConnection {
    let mut lock = sqlx::PgConnection::connect(&s.db_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("LOCK TABLE message IN EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    lock
}

async fn waiting_for_the_lock(s: &Setup) -> bool {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_locks
          WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND relation = 'message'::regclass AND NOT granted",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    n > 0
}

/// Starts `first`, waits until the committer is blocked on it, then starts `rest` and waits until
/// all of them wait in the committer's queue.
async fn gather(
    s: &Setup,
    committer: &Committer,
    spool: &Spool,
    first: Envelope,
    rest: Vec<Envelope>,
) -> (Accepted, Vec<Accepted>) {
    let first = accept(committer, spool, first);
    eventually("the first commit waits for the lock", || {
        waiting_for_the_lock(s)
    })
    .await;
    let n = rest.len();
    let rest: Vec<Accepted> = rest
        .into_iter()
        .map(|e| accept(committer, spool, e))
        .collect();
    eventually("every later message waits for the committer", || async {
        committer.queued() == n
    })
    .await;
    (first, rest)
}

async fn count(s: &Setup, sql: &str, ids: &[Uuid]) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .bind(ids)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    n
}

async fn xmins(s: &Setup, ids: &[Uuid]) -> Vec<String> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT DISTINCT xmin::text FROM message WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&s.pool)
            .await
            .unwrap();
    rows.into_iter().map(|(x,)| x).collect()
}

/// A node's database and spool, a committer on them, and the message table held.
async fn start() -> (Setup, Spool, Committer, sqlx::PgConnection) {
    let s = Setup::new().await;
    let spool = Spool::open(s.data_dir.path()).unwrap();
    let committer = Committer::start(s.pool.clone());
    let lock = hold_inserts(&s).await;
    (s, spool, committer, lock)
}

#[tokio::test]
async fn sessions_that_commit_together_share_one_transaction() {
    let (s, spool, committer, lock) = start().await;
    let envs: Vec<Envelope> = (0..9).map(|i| envelope(&format!("later{i}"))).collect();
    let later_ids: Vec<Uuid> = envs.iter().map(|e| e.id).collect();
    let (first, rest) = gather(&s, &committer, &spool, envelope("first"), envs).await;
    // Nobody has an answer while the rows cannot be committed.
    assert!(!first.is_finished() && rest.iter().all(|t| !t.is_finished()));
    lock.close().await.unwrap();

    first
        .await
        .unwrap()
        .expect("the first message is committed");
    let mut internal_ids = Vec::new();
    for t in rest {
        internal_ids.push(t.await.unwrap().expect("a later message is committed"));
    }
    internal_ids.sort();
    internal_ids.dedup();
    assert_eq!(internal_ids.len(), 9, "each message has its own InternalId");
    // Rows written by one transaction carry its id.
    assert_eq!(
        xmins(&s, &later_ids).await.len(),
        1,
        "one transaction for the nine"
    );
    let rows = "SELECT count(*) FROM message_recipient WHERE message_id = ANY($1)";
    assert_eq!(count(&s, rows, &later_ids).await, 18);
    let orcpts = "SELECT count(orcpt) FROM message_recipient WHERE message_id = ANY($1)";
    assert_eq!(count(&s, orcpts, &later_ids).await, 9);
    for id in later_ids {
        assert!(
            spool.path(id).exists(),
            "a committed message keeps its body"
        );
    }
}

#[tokio::test]
async fn a_message_the_database_refuses_fails_alone() {
    let (s, spool, committer, lock) = start().await;
    // PostgreSQL's text cannot hold NUL: the statement carrying this subject is refused.
    let bad = envelope("bad\0subject");
    let (good1, good2) = (envelope("good1"), envelope("good2"));
    let (bad_id, good_ids) = (bad.id, [good1.id, good2.id]);
    let (first, rest) = gather(
        &s,
        &committer,
        &spool,
        envelope("first"),
        vec![good1, bad, good2],
    )
    .await;
    lock.close().await.unwrap();

    first
        .await
        .unwrap()
        .expect("the first message is committed");
    let results: Vec<_> = futures_util::future::join_all(rest).await;
    assert!(results[0].as_ref().unwrap().is_ok(), "{:?}", results[0]);
    assert!(
        matches!(results[1].as_ref().unwrap(), Err(AcceptError::Db(_))),
        "{:?}",
        results[1]
    );
    assert!(results[2].as_ref().unwrap().is_ok(), "{:?}", results[2]);
    let stored = "SELECT count(*) FROM message WHERE id = ANY($1)";
    let stored = count(&s, stored, &[bad_id, good_ids[0], good_ids[1]]).await;
    assert_eq!(
        stored, 2,
        "the two good messages are stored, the refused one is not"
    );
    assert!(
        !spool.path(bad_id).exists(),
        "the refused message leaves no body"
    );
    assert!(good_ids.iter().all(|id| spool.path(*id).exists()));
}

#[tokio::test]
async fn a_small_body_is_committed_in_its_row_and_a_larger_one_is_a_file() {
    use hubgate::transport::queue::spool::INLINE_MAX;
    let s = Setup::new().await;
    let spool = Spool::open(s.data_dir.path())
        .unwrap()
        .with_database(s.pool.clone());
    let committer = Committer::start(s.pool.clone());
    let mut sizes = Vec::new();
    for (subject, len) in [("small", INLINE_MAX), ("large", INLINE_MAX + 1)] {
        let env = envelope(subject);
        let mut bytes = format!("Subject: {subject}\r\n\r\n").into_bytes();
        bytes.resize(len, b'z');
        let body = spool.incoming_from(env.id, bytes.clone());
        queue::accept_incoming(&committer, &env, body)
            .await
            .expect("committed");
        sizes.push((env.id, bytes));
    }
    let [(small, small_bytes), (large, large_bytes)] = <[_; 2]>::try_from(sizes).unwrap();

    let in_row = |id: Uuid| {
        let pool = s.pool.clone();
        async move {
            let body: Option<(Vec<u8>,)> =
                sqlx::query_as("SELECT body FROM message_body WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
            body.map(|(b,)| b)
        }
    };
    assert_eq!(in_row(small).await.as_deref(), Some(&small_bytes[..]));
    assert!(!spool.path(small).exists(), "no file for a body in its row");
    assert_eq!(in_row(large).await, None);
    assert_eq!(std::fs::read(spool.path(large)).unwrap(), large_bytes);

    // Held in memory for delivery, and read back from the row by a spool that never held it
    // (a restarted gateway).
    assert_eq!(&*spool.body(small).await.unwrap(), &small_bytes[..]);
    let fresh = Spool::open(s.data_dir.path())
        .unwrap()
        .with_database(s.pool.clone());
    assert_eq!(&*fresh.body(small).await.unwrap(), &small_bytes[..]);
    assert_eq!(&*fresh.body(large).await.unwrap(), &large_bytes[..]);

    // Gone with its rows (as the queue writer deletes them).
    sqlx::query(
        "WITH body AS (DELETE FROM message_body WHERE id = ANY($1))
         DELETE FROM message WHERE id = ANY($1)",
    )
    .bind([small, large])
    .execute(&s.pool)
    .await
    .unwrap();
    spool.remove(small).unwrap();
    spool.remove(large).unwrap();
    for id in [small, large] {
        let e = spool.body(id).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
