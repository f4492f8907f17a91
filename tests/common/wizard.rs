//! Driving the console's wizards in the browser, and checking a Completion page's shell line
//! on an empty organisation.

use std::time::{Duration, Instant};

use super::browser::{Browser, WAIT};
use super::{FQDN, Setup};
use hubgate::shell::Shell;

async fn render_id(b: &Browser) -> Option<String> {
    let e = b
        .client
        .find(fantoccini::Locator::Css("#wizard"))
        .await
        .ok()?;
    e.attr("data-render").await.ok().flatten()
}

/// Clicks a wizard button (`#next`, `#back`, `#new`, `#dialog-ok`, a list's
/// `button[value='add:AddressSpaces']`, ...) and waits for the page the server draws in reply.
pub async fn press(b: &Browser, css: &str) {
    let before = render_id(b).await;
    b.click(css).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let now = render_id(b).await;
        if now.is_some() && now != before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no new wizard page after clicking {css}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The current page's title (`Introduction`, `Completion`, ...).
pub async fn step(b: &Browser) -> String {
    b.text("#step-title").await
}

/// The names of the pages the left-hand list shows, and which one is highlighted.
pub async fn steps(b: &Browser) -> (Vec<String>, String) {
    let mut all = vec![];
    for e in b
        .client
        .find_all(fantoccini::Locator::Css(".wizard-steps li"))
        .await
        .unwrap()
    {
        all.push(e.text().await.unwrap());
    }
    let current = b.text(".wizard-steps li.current").await;
    (all, current)
}

/// The message shown beside input `name` (`dlg-Address` in a dialog).
pub async fn error_beside(b: &Browser, name: &str) -> String {
    b.text(&format!("#field-{name} .error")).await
}

/// The value an input holds now.
pub async fn value(b: &Browser, css: &str) -> String {
    b.wait_for(css)
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

/// The Completion page's shell line.
pub async fn cmdlet(b: &Browser) -> String {
    assert_eq!(b.text("#status").await, "Completed", "{}", b.source().await);
    value(b, "#cmdlet").await
}

/// Runs a Completion page's shell line on a fresh organisation and returns Format-List of
/// `get` there and in the organisation the wizard changed (`pool`), which must be equal.
/// `password` answers the Get-Credential line a credential's export starts with.
pub async fn rerun_on_empty_org(
    pool: &sqlx::PgPool,
    line: &str,
    get: &str,
    password: Option<&str>,
) -> (String, String) {
    let mut here = Shell::new(pool.clone(), FQDN);
    let want = here
        .run_line(&format!("{get} | Format-List"))
        .await
        .unwrap_or_else(|e| panic!("{get}: {e}"));
    let empty = Setup::new().await;
    let mut sh =
        Shell::new(empty.pool.clone(), FQDN).with_data_dir(empty.data_dir.path().to_path_buf());
    for l in line.lines().map(str::trim) {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = match password {
            Some(p) if l.contains("Get-Credential") => format!("{l} -Password '{p}'"),
            _ => l.to_string(),
        };
        sh.run_line(&l).await.unwrap_or_else(|e| panic!("{l}: {e}"));
    }
    let got = sh
        .run_line(&format!("{get} | Format-List"))
        .await
        .unwrap_or_else(|e| panic!("{get} on the empty organisation: {e}"));
    (want, got)
}
