//! The Anti-spam tab's Properties beyond the IP lists: IP Block List Providers (New, Edit,
//! Remove, Move up/down), Recipient Filtering and Sender Filtering (their EMC tabs), and the
//! upload of a CSV of valid recipients. Every change is checked through the shell (the same
//! operations); refused input shows the operation's error beside its field and changes nothing;
//! a post without the page's token is refused; hostile values are shown as text. In a real
//! browser: a CSV uploaded through the page, after which the backup MX refuses an unknown
//! recipient at RCPT with 550 5.1.1 and takes a listed one.

mod common;

use common::antispam::{backup_mx, rcpts};
use common::browser::Browser;
use common::console::*;
use common::https::{Client, Response};
use common::mail::setup;
use common::*;

const TAB: &str = "/org/hub/anti-spam";
const PROVIDERS: &str = "/org/hub/anti-spam/ip-block-list-providers";
const RECIPIENTS: &str = "/org/hub/anti-spam/recipient-filtering/properties/blocked-recipients";
const LOOKUP: &str = "/org/hub/anti-spam/recipient-filtering/properties/recipient-lookup";
const SENDERS: &str = "/org/hub/anti-spam/sender-filtering/properties/blocked-senders";
const VALID: &str = "/org/hub/anti-spam/recipient-filtering/properties/valid-recipients";
const IMPORT: &str = "/org/hub/anti-spam/recipient-filtering/properties/valid-recipients/import";
const HOSTILE: &str = "<script>alert(1)</script>";

async fn run_shell(console: &Console, line: &str) -> String {
    let mut sh = hubgate::shell::Shell::new(console.setup.pool.clone(), FQDN);
    sh.run_line(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// A signed-in administrator: the client, the headers of the console's own forms, the token.
struct Admin {
    c: Client,
    cookie: String,
    origin: String,
    csrf: String,
}

impl Admin {
    async fn new(console: &Console) -> Admin {
        let (c, cookie) = administrator(console).await;
        let origin = c.origin();
        let page = c.get(PROVIDERS, &[("Cookie", &cookie)]).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.hidden("csrf").expect("the page's token");
        Admin {
            c,
            cookie,
            origin,
            csrf,
        }
    }

    async fn get(&self, path: &str) -> Response {
        self.c.get(path, &[("Cookie", &self.cookie)]).await
    }

    /// The form posted with the page's token.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// The form posted as it is (a token or not).
    async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        let own = same_origin(&self.cookie, &self.origin);
        self.c.post_form(path, &own, fields).await
    }

    async fn upload(&self, parts: &[(&str, Option<&str>, &[u8])]) -> Response {
        let own = same_origin(&self.cookie, &self.origin);
        self.c.post_multipart(IMPORT, &own, parts).await
    }

    async fn upload_csv(&self, csv: &[u8]) -> Response {
        self.upload(&[
            ("csrf", None, self.csrf.as_bytes()),
            ("Path", Some("valid.csv"), csv),
        ])
        .await
    }
}

/// The element with `id` (a field's div) carries the `invalid` class and the message.
fn refused_beside(page: &Response, id: &str, message: &str) {
    assert_eq!(page.status, 400, "{}", page.body);
    let at = page
        .body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}: {}", page.body));
    let tag = &page.body[page.body[..at].rfind('<').unwrap()..at];
    assert!(tag.contains("invalid"), "#{id} is not marked: {tag}");
    // The field runs to the next field, or the buttons.
    let rest = &page.body[at..];
    let end = rest[1..]
        .find(" id=\"field-")
        .or_else(|| rest.find("class=\"buttons\""))
        .unwrap_or(rest.len());
    assert!(
        rest[..end].contains(message),
        "#{id} does not say {message:?}: {}",
        &rest[..end]
    );
}

/// No markup of a hostile value reached the page: it is there escaped, and never raw.
fn escaped(page: &Response) {
    assert!(!page.body.contains(HOSTILE), "raw markup: {}", page.body);
    assert!(
        page.body.contains("&lt;script&gt;") || page.body.contains("&#60;script&#62;"),
        "the value is not shown: {}",
        page.body
    );
}

/// `s` as the page shows it: askama writes `<` and `>` as numeric references.
fn as_shown(s: &str) -> String {
    s.replace('<', "&#60;").replace('>', "&#62;")
}

/// The id in the row of the provider whose name cell shows `name`.
fn row_id(page: &Response, name: &str) -> String {
    let cell = format!("<td class=\"name\">{}</td>", as_shown(name));
    let at = page
        .body
        .find(&cell)
        .unwrap_or_else(|| panic!("no provider {name}: {}", page.body));
    let row = page.body[..at].rfind("<tr id=\"provider-").unwrap();
    let id = &page.body[row + "<tr id=\"provider-".len()..];
    id[..id.find('"').unwrap()].to_string()
}

/// A provider's Priority, as the shell shows it.
async fn priority(console: &Console, name: &str) -> String {
    let fl = run_shell(console, &format!("Get-IPBlockListProvider '{name}' | fl")).await;
    shown(&fl, "Priority")
}

#[tokio::test]
async fn providers_are_added_edited_moved_and_removed_as_the_shell_sees_them() {
    let console = Console::start(setup().await, &[]).await;
    let a = Admin::new(&console).await;
    let new = format!("{PROVIDERS}/new");
    let none = || async { run_shell(&console, "Get-IPBlockListProvider").await };
    assert_eq!(none().await.trim(), "");

    // The tab links the Properties.
    let tab = a
        .get(&format!("{TAB}?selected=ip-block-list-providers"))
        .await;
    assert!(
        tab.body.contains(&format!("href=\"{PROVIDERS}\"")),
        "{}",
        tab.body
    );
    let form = a.get(&new).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("Match any return code"), "{}", form.body);

    let zen = [
        ("Name", "Zen"),
        ("LookupDomain", "Zen.BL.example."),
        ("Enabled", "true"),
        ("Match", "specific"),
        ("BitmaskMatch", "127.0.0.4"),
        ("IPAddressesMatch", "127.0.0.2\r\n127.0.0.3\r\n"),
        ("RejectionResponse", "Listed at zen.bl.example"),
    ];
    // Without the token: refused before anything runs.
    let r = a.post_raw(&new, &zen).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(none().await.trim(), "");

    // Bad fields: the operation's words beside the field, what was typed kept, nothing added.
    for (field, value, message) in [
        (
            "LookupDomain",
            "not a domain",
            "is not a valid LookupDomain",
        ),
        ("BitmaskMatch", "127.0.0", "is not a valid IPv4 address"),
        (
            "IPAddressesMatch",
            "127.0.0.2\n127.0.0.300",
            "is not a valid IPv4 address",
        ),
        ("RejectionResponse", "Listed\u{e9}", "printable ASCII"),
        ("Name", "", "between 1 and 64 characters"),
    ] {
        let mut fields = zen.to_vec();
        fields.retain(|(n, _)| *n != field);
        fields.push((field, value));
        let r = a.post(&new, &fields).await;
        refused_beside(&r, &format!("field-{field}"), message);
        assert!(r.body.contains("Zen.BL.example.") || field == "LookupDomain");
        assert_eq!(none().await.trim(), "", "{field}");
    }

    let r = a.post(&new, &zen).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let fl = run_shell(&console, "Get-IPBlockListProvider Zen | fl").await;
    assert_eq!(shown(&fl, "LookupDomain"), "zen.bl.example");
    assert_eq!(shown(&fl, "Priority"), "1");
    assert_eq!(shown(&fl, "AnyMatch"), "False");
    assert_eq!(shown(&fl, "BitmaskMatch"), "127.0.0.4");
    assert_eq!(shown(&fl, "IPAddressesMatch"), "{127.0.0.2, 127.0.0.3}");
    assert_eq!(shown(&fl, "RejectionResponse"), "Listed at zen.bl.example");

    // A second one, named with markup, goes last; the list shows it as text.
    let hostile = format!("Spam {HOSTILE}");
    let r = a
        .post(
            &new,
            &[
                ("Name", &hostile),
                ("LookupDomain", "bl.spam.example"),
                ("Match", "any"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let fl = run_shell(
        &console,
        &format!("Get-IPBlockListProvider '{hostile}' | fl"),
    )
    .await;
    assert_eq!(shown(&fl, "Name"), hostile);
    assert_eq!(shown(&fl, "Priority"), "2");
    assert_eq!(shown(&fl, "AnyMatch"), "True");
    assert_eq!(shown(&fl, "Enabled"), "False");
    let list = a.get(PROVIDERS).await;
    escaped(&list);
    let zen_id = row_id(&list, "Zen");
    let spam_id = row_id(&list, &hostile);
    let zen_url = format!("{PROVIDERS}/provider/{zen_id}");
    let spam_url = format!("{PROVIDERS}/provider/{spam_id}");

    // Edit: the dialog opens on what is stored; a name another provider has is refused.
    let dialog = a.get(&spam_url).await;
    assert_eq!(dialog.status, 200, "{}", dialog.body);
    escaped(&dialog);
    assert!(
        dialog.body.contains("value=\"any\" checked"),
        "{}",
        dialog.body
    );
    let r = a
        .post(
            &spam_url,
            &[
                ("Name", "zen"),
                ("LookupDomain", "bl.spam.example"),
                ("Match", "any"),
            ],
        )
        .await;
    refused_beside(&r, "field-Name", "already exists");
    let r = a
        .post(
            &spam_url,
            &[
                ("Name", "Spamhaus"),
                ("LookupDomain", "bl.spam.example"),
                ("Enabled", "true"),
                ("Match", "specific"),
                ("IPAddressesMatch", "127.0.0.10"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let fl = run_shell(&console, "Get-IPBlockListProvider Spamhaus | fl").await;
    assert_eq!(shown(&fl, "AnyMatch"), "False");
    assert_eq!(shown(&fl, "Enabled"), "True");
    assert_eq!(shown(&fl, "IPAddressesMatch"), "{127.0.0.10}");

    // Move up (Priority): Spamhaus first, Zen second; the first cannot go further up.
    let r = a.post_raw(&format!("{spam_url}/move-up"), &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = a.post(&format!("{spam_url}/move-up"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(priority(&console, "Spamhaus").await, "1");
    assert_eq!(priority(&console, "Zen").await, "2");
    let r = a.post(&format!("{spam_url}/move-up"), &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("out of range"), "{}", r.body);
    let r = a.post(&format!("{zen_url}/move-up"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(priority(&console, "Zen").await, "1");

    // Remove: refused without the token, done with it; the other closes the gap.
    let r = a.post_raw(&format!("{zen_url}/remove"), &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = a.post(&format!("{zen_url}/remove"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let all = none().await;
    assert!(!all.contains("Zen"), "{all}");
    assert_eq!(priority(&console, "Spamhaus").await, "1");
    let r = a.get(&zen_url).await;
    assert_eq!(r.status, 404, "{}", r.body);
}

#[tokio::test]
async fn recipient_and_sender_filtering_tabs_save_through_their_set_cmdlets() {
    let console = Console::start(setup().await, &[]).await;
    let a = Admin::new(&console).await;
    let recipients = || async { run_shell(&console, "Get-RecipientFilterConfig | fl").await };
    let senders = || async { run_shell(&console, "Get-SenderFilterConfig | fl").await };
    for (slug, url) in [
        ("recipient-filtering", RECIPIENTS),
        ("sender-filtering", SENDERS),
    ] {
        let tab = a.get(&format!("{TAB}?selected={slug}")).await;
        assert!(
            tab.body.contains(&format!("href=\"{url}\"")),
            "{slug}: {}",
            tab.body
        );
    }

    // Blocked Recipients: the box and an address, in one Set-RecipientFilterConfig.
    let page = a.get(RECIPIENTS).await;
    assert!(
        page.body.contains("Block the following recipients:"),
        "{}",
        page.body
    );
    let r = a
        .post_raw(
            RECIPIENTS,
            &[
                ("BlockListEnabled", "true"),
                ("add-BlockedRecipients", "trap@contoso.test"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(shown(&recipients().await, "BlockListEnabled"), "False");
    let r = a
        .post(
            RECIPIENTS,
            &[
                ("BlockListEnabled", "true"),
                (
                    "add-BlockedRecipients",
                    "Trap@contoso.test, ceo@contoso.test",
                ),
                ("action", "add"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some(RECIPIENTS));
    let cfg = recipients().await;
    assert_eq!(shown(&cfg, "BlockListEnabled"), "True");
    assert_eq!(
        shown(&cfg, "BlockedRecipients"),
        "{Trap@contoso.test, ceo@contoso.test}"
    );

    // A bad address (markup): refused beside the list, shown as text, nothing saved, not even
    // the box that was cleared with it.
    let bad = format!("{HOSTILE}@contoso.test");
    let r = a
        .post(
            RECIPIENTS,
            &[("add-BlockedRecipients", &bad), ("action", "apply")],
        )
        .await;
    refused_beside(&r, "field-BlockedRecipients", "is not a valid SMTP address");
    escaped(&r);
    assert_eq!(recipients().await, cfg);

    // Remove one.
    let r = a
        .post(
            RECIPIENTS,
            &[
                ("BlockListEnabled", "true"),
                ("remove-BlockedRecipients", "trap@contoso.test"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        shown(&recipients().await, "BlockedRecipients"),
        "{ceo@contoso.test}"
    );

    // Recipient Lookup; OK goes back to the tab.
    let r = a
        .post(
            LOOKUP,
            &[("RecipientValidationEnabled", "true"), ("action", "ok")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        r.header("location"),
        Some("/org/hub/anti-spam?selected=recipient-filtering")
    );
    let cfg = recipients().await;
    assert_eq!(shown(&cfg, "RecipientValidationEnabled"), "True");
    assert_eq!(
        shown(&cfg, "BlockListEnabled"),
        "True",
        "another tab's box kept"
    );

    // Blocked Senders: three lists and the blank-sender box.
    let page = a.get(SENDERS).await;
    assert!(
        page.body
            .contains("Block messages from senders that don&#39;t have sender information")
            || page
                .body
                .contains("Block messages from senders that don&#x27;t have sender information"),
        "{}",
        page.body
    );
    let r = a
        .post(
            SENDERS,
            &[
                ("add-BlockedSenders", "Spam@Example.NET"),
                ("add-BlockedDomains", "bad.example"),
                ("add-BlockedDomainsAndSubdomains", "worse.example"),
                ("BlankSenderBlockingEnabled", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let cfg = senders().await;
    assert_eq!(shown(&cfg, "BlockedSenders"), "{spam@example.net}");
    assert_eq!(shown(&cfg, "BlockedDomains"), "{bad.example}");
    assert_eq!(
        shown(&cfg, "BlockedDomainsAndSubdomains"),
        "{worse.example}"
    );
    assert_eq!(shown(&cfg, "BlankSenderBlockingEnabled"), "True");
    let page = a.get(SENDERS).await;
    assert!(
        page.body.contains("<td class=\"entry\">worse.example</td>"),
        "{}",
        page.body
    );

    // A wildcard is not a BlockedDomains value: refused beside that list, nothing saved.
    let r = a
        .post(SENDERS, &[("add-BlockedDomains", "*.bad.example")])
        .await;
    refused_beside(&r, "field-BlockedDomains", "is not a valid SMTP domain");
    assert_eq!(senders().await, cfg);
    let r = a
        .post(
            SENDERS,
            &[
                ("remove-BlockedDomainsAndSubdomains", "worse.example"),
                ("BlankSenderBlockingEnabled", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(shown(&senders().await, "BlockedDomainsAndSubdomains"), "{}");
}

#[tokio::test]
async fn an_uploaded_csv_imports_every_address_or_none() {
    let console = Console::start(setup().await, &[]).await;
    configure_relay(&console).await;
    let a = Admin::new(&console).await;
    let count = || async {
        run_shell(&console, "Get-ValidRecipient")
            .await
            .lines()
            .filter(|l| l.contains('@'))
            .count()
    };
    let page = a.get(VALID).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("enctype=\"multipart/form-data\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<td class=\"domain\">primary.example</td>"),
        "{}",
        page.body
    );

    let good = b"\xef\xbb\xbf#TYPE Deserialized.Recipient\r\n\"Name\",\"Address\"\r\n\"Alice\",\"Alice@Primary.Example\"\r\n\"Bob, Jr\",\"bob@primary.example\"\r\n";
    // Without the token, or with it after the file: refused, nothing imported.
    let r = a
        .upload(&[("Path", Some("valid.csv"), good.as_slice())])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = a
        .upload(&[
            ("Path", Some("valid.csv"), good.as_slice()),
            ("csrf", None, a.csrf.as_bytes()),
        ])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = a
        .upload(&[
            ("csrf", None, b"AAAA".as_slice()),
            ("Path", Some("valid.csv"), good.as_slice()),
        ])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(count().await, 0);

    // A bad line refuses the file, naming the line; nothing of it is imported. A hostile
    // value in it is shown as text.
    let bad = format!(
        "Address\nalice@primary.example\nbob@primary.example\n{HOSTILE}@primary.example\ncarol@primary.example\n"
    );
    let r = a.upload_csv(bad.as_bytes()).await;
    refused_beside(&r, "field-Path", "Line 4: ");
    escaped(&r);
    assert_eq!(count().await, 0);
    let r = a
        .upload_csv(b"Address\nalice@primary.example\n\xff@primary.example\n")
        .await;
    refused_beside(&r, "field-Path", "Line 3: the file is not UTF-8");
    let r = a.upload_csv(b"Name\nalice\n").await;
    refused_beside(&r, "field-Path", "Address column");
    let r = a
        .upload(&[
            ("csrf", None, a.csrf.as_bytes()),
            ("Path", Some(""), b"".as_slice()),
        ])
        .await;
    refused_beside(&r, "field-Path", "Choose a CSV file");
    assert_eq!(count().await, 0);

    // A good file: every address, as the cmdlet imports it.
    let r = a.upload_csv(good).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some(&*format!("{VALID}?imported=2")));
    let listed = run_shell(&console, "Get-ValidRecipient -Domain primary.example").await;
    assert!(
        listed.contains("alice@primary.example") && listed.contains("bob@primary.example"),
        "{listed}"
    );
    let page = a.get(&format!("{VALID}?imported=2")).await;
    assert!(
        page.body.contains("2 valid recipients added."),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("<td class=\"count\">2</td>"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<td class=\"address\">alice@primary.example</td>")
    );
    // Again: already listed addresses are kept, none added twice.
    let r = a.upload_csv(good).await;
    assert_eq!(r.header("location"), Some(&*format!("{VALID}?imported=0")));
    assert_eq!(count().await, 2);
}

async fn configure_relay(console: &Console) {
    run_shell(
        console,
        "New-AcceptedDomain -Name Primary -DomainName primary.example -DomainType ExternalRelay",
    )
    .await;
}

/// Seed 004's backup MX with recipient validation on and no list yet: its primary is down, so an
/// unlisted recipient cannot be checked (451). The admin uploads the primary's recipients
/// through the page; from then on the list decides at RCPT.
#[tokio::test]
async fn a_csv_uploaded_in_the_browser_decides_at_rcpt() {
    // Nothing listens at the primary's address: callouts get no answer.
    let primary = common::mail::addr("127.0.0.147", peer_port());
    let setup = backup_mx(
        primary,
        true,
        // Refusals are tarpitted; the test needs none of that delay.
        &["Set-ReceiveConnector 'Default HUB1' -TarpitInterval 00:00:00"],
    )
    .await;
    let console = Console::start(setup, &[]).await;
    let smtp = console.setup.smtp();
    let rcpt = |to: &'static str| async move {
        let mut replies = rcpts(smtp, None, "client.example", &[to]).await;
        replies.pop().expect("one RCPT reply")
    };
    let cold = rcpt("alice@primary.example").await;
    assert!(cold.starts_with("451 4.4.0"), "{cold}");

    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("primary-recipients.csv");
    std::fs::write(
        &csv,
        "\"DisplayName\",\"Address\"\r\n\"Alice\",\"alice@primary.example\"\r\n\"Bob\",\"bob@primary.example\"\r\n",
    )
    .unwrap();

    let b = Browser::start(&console.client().origin()).await;
    b.goto(HOME).await;
    b.log_on("Administrator", ADMIN_PASSWORD).await;
    b.wait_for_path("the console", |p| p == HOME).await;
    b.click(&format!("ul.tabs a[href=\"{TAB}\"]")).await;
    b.click("#select-recipient-filtering").await;
    b.click(&format!("aside.actions a[href=\"{RECIPIENTS}\"]"))
        .await;
    assert_eq!(
        b.text("#dialog-heading").await,
        "Recipient Filtering Properties"
    );
    b.click(&format!("ul.dialog-tabs a[href=\"{VALID}\"]"))
        .await;
    b.wait_for("#import-form").await;
    b.wait_for("#in-Path")
        .await
        .send_keys(&csv.display().to_string())
        .await
        .unwrap();
    b.click("#import").await;
    assert_eq!(b.text("#notice").await, "2 valid recipients added.");
    assert_eq!(b.text("#relay-domains td.count").await, "2");
    b.screenshot("antispam-valid-recipients").await;
    // The other dialogs, for the eye.
    for (path, form, name) in [
        (
            format!("{PROVIDERS}/new"),
            "#provider-form",
            "antispam-provider-dialog",
        ),
        (
            SENDERS.to_string(),
            "#filter-form",
            "antispam-sender-filtering",
        ),
    ] {
        b.goto(&path).await;
        b.wait_for(form).await;
        b.screenshot(name).await;
    }
    b.close().await;

    assert_eq!(
        rcpt("mallory@primary.example").await,
        "550 5.1.1 User unknown\r\n"
    );
    let ok = rcpt("alice@primary.example").await;
    assert!(ok.starts_with("250 "), "{ok}");
    let ok = rcpt("BOB@primary.example").await;
    assert!(ok.starts_with("250 "), "{ok}");
}
