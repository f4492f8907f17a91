//! The EMC wizards in a real browser over HTTPS against `hubgate serve`: every page, every
//! refusal beside its field, Back and Next keeping what was typed, Cancel making nothing, the
//! Completion page's shell line making the identical object on an empty organisation, and the
//! seeds' walk-throughs proven over SMTP. Each page is written to target/console-screenshots/.

mod common;
#[path = "console_wizards/domain.rs"]
mod domain;
#[path = "console_wizards/receive.rs"]
mod receive;
#[path = "console_wizards/seeds.rs"]
mod seeds;
#[path = "console_wizards/send.rs"]
mod send;

use common::browser::Browser;
use common::console::*;
use common::*;

/// A gateway (from `setup`) and a browser signed in to its console.
pub async fn signed_in(setup: Setup) -> (Console, Browser) {
    let console = Console::start(setup, &[]).await;
    let b = Browser::start(&console.client().origin()).await;
    b.goto(HOME).await;
    b.log_on("Administrator", ADMIN_PASSWORD).await;
    b.wait_for_path("the console", |p| p == HOME).await;
    (console, b)
}

/// How many rows `table` has whose `name` column is `name`.
pub async fn count(pool: &sqlx::PgPool, table: &str, name: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM {table} WHERE name = $1"))
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap();
    n
}
