//! Organization Configuration › Hub Transport › Anti-spam in a real browser: seed 004's step
//! taken on the primary's side (the backup MX's address added to the IP Allow List, after which
//! its mail is taken), and the tab's counts moving as a blocked source sends mail. Without the
//! browser: a form posted without the session's token changes nothing, and a hostile comment is
//! shown as text.

mod common;

use common::antispam::rcpts;
use common::browser::Browser;
use common::console::*;
use common::mail::*;
use common::*;

const TAB: &str = "/org/hub/anti-spam";
const ALLOW: &str = "/org/hub/anti-spam/ip-allow-list";
const BLOCK: &str = "/org/hub/anti-spam/ip-block-list";
/// The backup MX, inside a range the primary blocks.
const BACKUP: &str = "127.0.0.205";
/// Another source in that range, which stays blocked.
const SPAMMER: &str = "127.0.0.206";
const HOSTILE: &str = "backup MX <script>alert(1)</script>";

/// One anonymous transaction from `from` up to its RCPT; the RCPT reply.
async fn rcpt_from(smtp: std::net::SocketAddr, from: &str) -> String {
    let mut replies = rcpts(smtp, Some(from), "backup.example", &[SENDER]).await;
    replies.pop().expect("one RCPT reply")
}

async fn blocked_range() -> Setup {
    let s = setup().await;
    configure(
        &s,
        &[
            "Add-IPBlockListEntry -IPRange 127.0.0.204/30 -Comment 'spam run'",
            // Refusals are tarpitted; the test needs none of that delay.
            "Set-ReceiveConnector 'Default HUB1' -TarpitInterval 00:00:00",
        ],
    )
    .await;
    s
}

async fn count_in(b: &Browser, id: &str) -> u64 {
    let text = b.text(&format!("#{id}")).await;
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("#{id} is {text:?}"))
}

#[tokio::test]
async fn seed004_the_backup_mx_is_allow_listed_and_the_counts_move() {
    let console = Console::start(blocked_range().await, &[]).await;
    let smtp = console.setup.smtp();
    let refused = rcpt_from(smtp, BACKUP).await;
    assert!(
        refused.starts_with("550 5.7.1 External client"),
        "{refused}"
    );

    let b = Browser::start(&console.client().origin()).await;
    b.goto(HOME).await;
    b.log_on("Administrator", ADMIN_PASSWORD).await;
    b.wait_for_path("the console", |p| p == HOME).await;

    // Anti-spam, the IP Allow List selected, its Properties.
    b.click(&format!("ul.tabs a[href=\"{TAB}\"]")).await;
    b.wait_for("#anti-spam").await;
    assert_eq!(b.text("#ip-allow-list-status").await, "Enabled");
    assert_eq!(b.text("#ip-block-list-status").await, "Enabled");
    b.click("#select-ip-allow-list").await;
    b.wait_for_path("the IP Allow List selected", |p| {
        p.ends_with("selected=ip-allow-list")
    })
    .await;
    b.click(&format!("aside.actions a[href=\"{ALLOW}\"]")).await;
    assert_eq!(b.text("#dialog-heading").await, "IP Allow List Properties");

    // A reversed range is refused with the operation's words, and nothing is added.
    b.fill("#in-IPRange", "127.0.0.209-127.0.0.205").await;
    b.click("#add").await;
    let error = b.text("#error").await;
    assert!(error.contains("is reversed"), "{error}");
    b.screenshot("antispam-ip-allow-list-refused").await;
    assert_eq!(run_shell(&console, "Get-IPAllowListEntry").await.trim(), "");

    // The backup MX's address, with a comment that is markup.
    b.fill("#in-IPRange", BACKUP).await;
    b.fill("#in-Comment", HOSTILE).await;
    b.click("#add").await;
    b.wait_for_path("the list again", |p| p == ALLOW).await;
    assert_eq!(b.text("#ip-list-entries td.range").await, BACKUP);
    assert_eq!(b.text("#ip-list-entries td.comment").await, HOSTILE);
    let scripts = b
        .client
        .find_all(fantoccini::Locator::Css("#ip-list-entries script"))
        .await
        .unwrap();
    assert!(scripts.is_empty(), "the comment became markup");
    b.screenshot("antispam-ip-allow-list").await;
    let listed = run_shell(&console, "Get-IPAllowListEntry | fl").await;
    assert_eq!(shown(&listed, "IPRange"), BACKUP);
    assert_eq!(shown(&listed, "Comment"), HOSTILE);

    // The gateway follows the change: the backup MX is served, the rest of the range is not.
    eventually("the backup MX served once allow-listed", || async move {
        rcpt_from(smtp, BACKUP).await.starts_with("250 ")
    })
    .await;
    let r = rcpt_from(smtp, SPAMMER).await;
    assert!(r.starts_with("550 5.7.1 External client"), "{r}");

    // The tab's counts move as the blocked source keeps sending.
    b.goto(TAB).await;
    let before = count_in(&b, "ip-block-list-hour").await;
    assert!(before >= 2, "two refusals so far, the tab shows {before}");
    for _ in 0..3 {
        let r = rcpt_from(smtp, SPAMMER).await;
        assert!(r.starts_with("550 "), "{r}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        b.goto(&format!("{TAB}?selected=ip-block-list")).await;
        let now = count_in(&b, "ip-block-list-hour").await;
        if now >= before + 3 {
            assert_eq!(count_in(&b, "ip-block-list-day").await, now);
            assert_eq!(
                count_in(&b, "connection-filtering-agent-hour-fail").await,
                now
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tab still shows {now} refusals (before: {before})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    b.screenshot("antispam-tab").await;
    b.close().await;
}

async fn run_shell(console: &Console, line: &str) -> String {
    let mut sh = hubgate::shell::Shell::new(console.setup.pool.clone(), FQDN);
    sh.run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[tokio::test]
async fn a_post_without_the_token_changes_nothing_and_markup_is_text() {
    let console = Console::start(setup().await, &[]).await;
    let (c, cookie) = administrator(&console).await;
    let page = c.get(BLOCK, &[("Cookie", &cookie)]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.hidden("csrf").expect("the page's token");
    let origin = c.origin();
    let own = same_origin(&cookie, &origin);
    let entry = [("IPRange", "192.0.2.0/24"), ("Comment", HOSTILE)];

    for (what, token) in [("no token", None), ("a wrong token", Some("AAAA"))] {
        let mut fields: Vec<(&str, &str)> = entry.to_vec();
        if let Some(t) = token {
            fields.push(("csrf", t));
        }
        let r = c.post_form(&format!("{BLOCK}/add"), &own, &fields).await;
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert!(r.body.contains("Nothing was changed"), "{what}: {}", r.body);
        assert_eq!(
            run_shell(&console, "Get-IPBlockListEntry").await.trim(),
            "",
            "{what}"
        );
    }

    // Bad input: the operation's refusal on the page, nothing stored.
    let mut fields: Vec<(&str, &str)> = vec![("csrf", &csrf), ("IPRange", "192.0.2.0/33")];
    let r = c.post_form(&format!("{BLOCK}/add"), &own, &fields).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("is not a valid CIDR range"), "{}", r.body);
    fields[1] = ("IPRange", "192.0.2.1");
    fields.push(("ExpirationTime", "1/1/2001 10:00"));
    let r = c.post_form(&format!("{BLOCK}/add"), &own, &fields).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("must be in the future"), "{}", r.body);
    assert_eq!(run_shell(&console, "Get-IPBlockListEntry").await.trim(), "");

    // With the page's token it is added, and the comment is shown as text.
    let mut fields: Vec<(&str, &str)> = entry.to_vec();
    fields.push(("csrf", &csrf));
    let r = c.post_form(&format!("{BLOCK}/add"), &own, &fields).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let listed = run_shell(&console, "Get-IPBlockListEntry | fl").await;
    assert_eq!(shown(&listed, "Comment"), HOSTILE);
    let id = shown(&listed, "Identity");
    let page = c.get(BLOCK, &[("Cookie", &cookie)]).await;
    assert!(
        page.body
            .contains("backup MX &lt;script&gt;alert(1)&lt;/script&gt;")
            || page
                .body
                .contains("backup MX &#60;script&#62;alert(1)&#60;/script&#62;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>alert"), "{}", page.body);

    // Remove without the token: refused, the entry stays; with it: gone.
    let r = c
        .post_form(&format!("{BLOCK}/remove"), &own, &[("id", &id)])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        run_shell(&console, "Get-IPBlockListEntry")
            .await
            .contains("192.0.2.0/24")
    );
    let r = c
        .post_form(
            &format!("{BLOCK}/remove"),
            &own,
            &[("csrf", &csrf), ("id", &id)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(run_shell(&console, "Get-IPBlockListEntry").await.trim(), "");
}

/// Each feature with an Enabled setting is switched off and on again from the tab, through the
/// feature's own Set- operation (what the shell shows), and only with the page's token.
#[tokio::test]
async fn enable_and_disable_switch_each_feature_through_its_own_setting() {
    let console = Console::start(setup().await, &[]).await;
    let (c, cookie) = administrator(&console).await;
    let origin = c.origin();
    let own = same_origin(&cookie, &origin);
    for (slug, get) in [
        ("ip-block-list", "Get-IPBlockListConfig"),
        ("ip-block-list-providers", "Get-IPBlockListProvidersConfig"),
        ("recipient-filtering", "Get-RecipientFilterConfig"),
        ("sender-filtering", "Get-SenderFilterConfig"),
    ] {
        let enabled = || async {
            shown(
                &run_shell(&console, &format!("{get} | fl")).await,
                "Enabled",
            )
        };
        let page = c
            .get(&format!("{TAB}?selected={slug}"), &[("Cookie", &cookie)])
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body.contains(&format!("{TAB}/{slug}/disable")),
            "{slug}: no Disable action: {}",
            page.body
        );
        let csrf = page.hidden("csrf").expect("the page's token");
        let r = c
            .post_form(&format!("{TAB}/{slug}/disable"), &own, &[])
            .await;
        assert_eq!(r.status, 403, "{slug} without the token: {}", r.body);
        assert_eq!(enabled().await, "True", "{slug}");
        let r = c
            .post_form(&format!("{TAB}/{slug}/disable"), &own, &[("csrf", &csrf)])
            .await;
        assert_eq!(r.status, 303, "{slug}: {}", r.body);
        assert_eq!(enabled().await, "False", "{slug}");
        let page = c
            .get(&format!("{TAB}?selected={slug}"), &[("Cookie", &cookie)])
            .await;
        assert!(
            page.body.contains(&format!("{TAB}/{slug}/enable")),
            "{slug}: no Enable action once disabled"
        );
        let r = c
            .post_form(&format!("{TAB}/{slug}/enable"), &own, &[("csrf", &csrf)])
            .await;
        assert_eq!(r.status, 303, "{slug}: {}", r.body);
        assert_eq!(enabled().await, "True", "{slug}");
    }
}
