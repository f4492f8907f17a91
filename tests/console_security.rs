//! The console's security, over HTTPS against a real `hubgate serve`: sign-in and Log Off in a
//! real browser, idle expiry, who may sign in, password guessing, cross-site requests, escaping
//! and the security headers; and the Administrator's password is no key to relay through SMTP.

mod common;

use common::browser::Browser;
use common::console::*;
use common::https;
use common::*;
use hubgate::org::Account;
use hubgate::org::account::PARTNER_SERVERS;
use hubgate::shell::Shell;

#[tokio::test]
async fn sign_in_and_log_off_in_the_browser() {
    let console = Console::start(Setup::new().await, &[]).await;
    let b = Browser::start(&console.client().origin()).await;

    b.goto("/").await;
    let at = b
        .wait_for_path("the sign-in page", |p| p.starts_with("/logon"))
        .await;
    assert_eq!(at, "/logon?next=%2F");
    assert_eq!(b.text("label[for=username]").await, "User name:");
    assert_eq!(b.text("label[for=password]").await, "Password:");
    assert_eq!(b.text("#logon").await, "Log On");
    b.screenshot("logon").await;

    b.log_on("Administrator", "not the password").await;
    let error = b.text("#logon-error").await;
    assert!(error.contains("isn't correct"), "{error}");
    b.screenshot("logon-failed").await;
    assert_eq!(console.sessions().await, 0);

    b.log_on("Administrator", ADMIN_PASSWORD).await;
    b.wait_for_path("the console", |p| p == HOME).await;
    assert_eq!(b.text("#signed-in-as").await, "Administrator");
    assert_eq!(console.sessions().await, 1);
    b.screenshot("signed-in").await;

    b.click("#logoff").await;
    b.wait_for_path("the sign-in page after Log Off", |p| {
        p.starts_with("/logon")
    })
    .await;
    assert_eq!(
        console.sessions().await,
        0,
        "Log Off ends the session on the server"
    );
    b.goto("/").await;
    b.wait_for_path("the sign-in page again", |p| p.starts_with("/logon"))
        .await;
    b.close().await;
}

#[tokio::test]
async fn an_idle_session_expires() {
    let console =
        Console::start(Setup::new().await, &[("HUBGATE_CONSOLE_IDLE_TIMEOUT", "2")]).await;
    let c = console.client();
    let s = sign_in(&c, "Administrator", ADMIN_PASSWORD)
        .await
        .expect("signed in");
    let page = c.get(HOME, &[("Cookie", &session_cookie(&s))]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Administrator"));

    // Idle for longer than the timeout, as the database's clock tells it.
    let pool = console.setup.pool.clone();
    eventually("the session to be idle for 2 s", || {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM console_session WHERE last_seen < now() - interval '2.2 seconds'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            n == 1
        }
    })
    .await;
    let page = c.get("/", &[("Cookie", &session_cookie(&s))]).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.header("location"), Some("/logon?next=%2F"));
}

#[tokio::test]
async fn an_smtp_only_account_is_refused() {
    let setup = Setup::new().await;
    Account::create(
        &setup.pool,
        "fabrikam-relay",
        "Partner-Pa55word",
        &[PARTNER_SERVERS],
    )
    .await
    .unwrap();
    let console = Console::start(setup, &[]).await;
    let c = console.client();
    let r = sign_in(&c, "fabrikam-relay", "Partner-Pa55word")
        .await
        .expect_err("a relay account may not use the console");
    assert_eq!(r.status, 403);
    assert!(r.body.contains("Access denied"), "{}", r.body);
    assert_eq!(console.sessions().await, 0);
    // The Administrator still signs in from the same place.
    sign_in(&c, "Administrator", ADMIN_PASSWORD)
        .await
        .expect("signed in");
}

/// One SMTP AUTH relay attempt on the Default connector (STARTTLS first, as it requires): the
/// reply to RCPT for a domain the organisation does not accept (after the AUTH reply).
fn relay_attempt(smtp: std::net::SocketAddr, user: &str, password: &str, from: &str) -> String {
    let server = smtp.to_string();
    let (_, out) = swaks(&[
        "--server",
        &server,
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        user,
        "--auth-password",
        password,
        "--from",
        from,
        "--to",
        "someone@tailspin.example",
        "--quit-after",
        "RCPT",
    ]);
    let auth = out
        .lines()
        .find(|l| l.contains("235 ") || l.contains("535 "))
        .unwrap_or("no AUTH reply");
    let rcpt = out
        .lines()
        .skip_while(|l| !l.contains("RCPT TO"))
        .nth(1)
        .unwrap_or("no RCPT reply");
    format!("{auth}\n{rcpt}\n---\n{out}")
}

#[tokio::test]
async fn the_administrator_relays_through_smtp_auth_only_when_granted() {
    let setup = Setup::new().await;
    Account::create(&setup.pool, "relay-user", "Relay-Pa55word", &[])
        .await
        .unwrap();
    // Its own mailbox, so that it may send as that address (Send-As).
    hubgate::org::Recipient::mailbox("relay-user", "relay-user@contoso.test")
        .insert(&setup.pool, &[])
        .await
        .unwrap();
    let console = Console::start(setup, &[]).await;
    let smtp = console.setup.smtp();

    // An ordinary account relays on the Default connector (ExchangeUsers).
    let out = relay_attempt(
        smtp,
        "relay-user",
        "Relay-Pa55word",
        "relay-user@contoso.test",
    );
    assert!(out.starts_with("<~  235 2.7.0"), "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("<~  250"), "{out}");

    let out = relay_attempt(
        smtp,
        "Administrator",
        ADMIN_PASSWORD,
        "administrator@contoso.test",
    );
    assert!(out.starts_with("<~  235 2.7.0"), "{out}");
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .contains("550 5.7.1 Unable to relay"),
        "{out}"
    );

    let mut sh = Shell::new(console.setup.pool.clone(), FQDN);
    sh.run_line("Get-ReceiveConnector 'Default HUB1' | Add-ADPermission -User Administrator -ExtendedRights ms-Exch-SMTP-Accept-Any-Recipient")
        .await
        .unwrap();
    eventually("the grant to reach the running gateway", || async move {
        let out = relay_attempt(
            smtp,
            "Administrator",
            ADMIN_PASSWORD,
            "administrator@contoso.test",
        );
        out.lines().nth(1).unwrap().starts_with("<~  250")
    })
    .await;
}

const LIMITS_TAB: &str = "/servers/HUB1/properties/limits";

/// The server's Limits tab as its form posts it, with the expiry raised from 2 to 3 days.
const LIMITS_3_DAYS: [(&str, &str); 8] = [
    ("OutboundConnectionFailureRetryInterval", "10"),
    ("TransientFailureRetryInterval", "300"),
    ("TransientFailureRetryCount", "6"),
    ("MessageExpirationTimeout", "3"),
    ("DelayNotificationTimeout", "4"),
    ("MaxOutboundConnections", "1000"),
    ("MaxPerDomainOutboundConnections", "20"),
    ("action", "ok"),
];

#[tokio::test]
async fn a_cross_site_post_with_the_admins_cookie_changes_nothing() {
    let console = Console::start(Setup::new().await, &[]).await;
    let c = console.client();
    let s = sign_in(&c, "Administrator", ADMIN_PASSWORD)
        .await
        .expect("signed in");
    let cookie = session_cookie(&s);
    let page = c.get(HOME, &[("Cookie", &cookie)]).await;
    let csrf = page.hidden("csrf").expect("the page's token");

    let evil = "https://attacker.example";
    let origin = c.origin();
    type Pairs<'a> = Vec<(&'a str, &'a str)>;
    let attempts: [(&str, Pairs, Pairs); 4] = [
        // Another site's form: the browser names its origin, and it cannot know the token.
        (
            "cross-site, no token",
            vec![
                ("Cookie", &cookie),
                ("Origin", evil),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            vec![],
        ),
        // Even a leaked token does not make another origin's request acceptable.
        (
            "cross-site, with the token",
            vec![
                ("Cookie", &cookie),
                ("Origin", evil),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            vec![("csrf", &csrf)],
        ),
        (
            "same-site sibling, with the token",
            vec![("Cookie", &cookie), ("Sec-Fetch-Site", "same-site")],
            vec![("csrf", &csrf)],
        ),
        (
            "same origin, wrong token",
            vec![("Cookie", &cookie), ("Origin", &origin)],
            vec![("csrf", "AAAA")],
        ),
    ];
    let mut sh = Shell::new(console.setup.pool.clone(), FQDN);
    let expiry = "Get-TransportServer | Format-List MessageExpirationTimeout";
    let before = sh.run_line(expiry).await.unwrap();
    for (what, headers, fields) in &attempts {
        let r = c.post_form("/logoff", headers, fields).await;
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert!(r.body.contains("Nothing was changed"), "{what}: {}", r.body);
        assert_eq!(console.sessions().await, 1, "{what} changed something");
        assert_eq!(c.get(HOME, &[("Cookie", &cookie)]).await.status, 200);

        // A configuration change: the server's Limits tab saved with OK.
        let mut limits = fields.clone();
        limits.extend(LIMITS_3_DAYS);
        let r = c.post_form(LIMITS_TAB, headers, &limits).await;
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert!(r.body.contains("Nothing was changed"), "{what}: {}", r.body);
        assert_eq!(sh.run_line(expiry).await.unwrap(), before, "{what}");
    }
    // The same save from the console's own page takes effect: the refusals above were the guard's.
    let mut limits = vec![("csrf", csrf.as_str())];
    limits.extend(LIMITS_3_DAYS);
    let own = [
        ("Cookie", cookie.as_str()),
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let r = c.post_form(LIMITS_TAB, &own, &limits).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        sh.run_line(expiry)
            .await
            .unwrap()
            .contains("MessageExpirationTimeout : 3.00:00:00"),
        "{before}"
    );
    // A sign-in posted from elsewhere (to slip the admin into someone else's session) too.
    let r = c
        .post_form(
            "/logon",
            &[("Origin", evil)],
            &[("username", "Administrator"), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(console.sessions().await, 1);

    // The same request from the console's own page does what it says.
    let r = c
        .post_form(
            "/logoff",
            &[
                ("Cookie", &cookie),
                ("Origin", &c.origin()),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(console.sessions().await, 0);
}

#[tokio::test]
async fn guessing_locks_out_the_source_but_not_the_account_elsewhere() {
    let console = Console::start(Setup::new().await, &[]).await;
    let guesser = console.client().with_source("127.0.0.71");
    for i in 1..=5 {
        let r = sign_in(&guesser, "Administrator", &format!("guess-{i}"))
            .await
            .expect_err("a wrong password");
        if i < 5 {
            assert_eq!(r.status, 401, "attempt {i}: {}", r.body);
            assert!(
                r.body.contains("correct. Try entering it again"),
                "{}",
                r.body
            );
        } else {
            assert_eq!(r.status, 429, "attempt {i}: {}", r.body);
            assert!(
                r.body.contains("blocked after repeated failed attempts"),
                "{}",
                r.body
            );
        }
    }
    // Now even the right password is refused from there, and the page says why.
    let r = sign_in(&guesser, "Administrator", ADMIN_PASSWORD)
        .await
        .expect_err("locked out");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("Try again in 1 minute"), "{}", r.body);
    assert_eq!(console.sessions().await, 0);

    // The administrator, elsewhere, is not locked out.
    sign_in(
        &console.client().with_source("127.0.0.72"),
        "Administrator",
        ADMIN_PASSWORD,
    )
    .await
    .expect("another source signs in");
    assert_eq!(console.sessions().await, 1);

    let log = console.log_text();
    let failures = log
        .lines()
        .filter(|l| l.contains("sign-in failed") && l.contains("source=127.0.0.71"))
        .count();
    assert_eq!(failures, 4, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("locked") && l.contains("source=127.0.0.71")),
        "{log}"
    );
}

#[tokio::test]
async fn a_connector_named_like_markup_is_shown_as_text() {
    let setup = Setup::new().await;
    let name = "<img src=x onerror=alert(1)>";
    let port = setup.another_port();
    let mut sh = Shell::new(setup.pool.clone(), FQDN);
    sh.run_line(&format!(
        "New-ReceiveConnector -Name '{name}' -Bindings {}:{port} -RemoteIPRanges 10.9.0.0/16",
        setup.ip
    ))
    .await
    .unwrap();
    let console = Console::start(setup, &[]).await;
    let b = Browser::start(&console.client().origin()).await;
    // The receive connector list, in the result pane under the server.
    b.goto(&format!("/server/hub/{SERVER}")).await;
    b.log_on("Administrator", ADMIN_PASSWORD).await;
    b.wait_for_path("the server's connectors", |p| {
        p == format!("/server/hub/{SERVER}")
    })
    .await;
    b.wait_for("#receive-connectors td.name").await;
    let cells = b
        .client
        .find_all(fantoccini::Locator::Css("#receive-connectors td.name"))
        .await
        .unwrap();
    let mut names = Vec::new();
    for c in cells {
        names.push(c.text().await.unwrap());
    }
    assert!(names.iter().any(|n| n == name), "{names:?}");
    let images = b
        .client
        .find_all(fantoccini::Locator::Css("#receive-connectors img"))
        .await
        .unwrap();
    assert!(images.is_empty(), "the name became an element");
    assert!(b.client.get_alert_text().await.is_err(), "a script ran");
    let source = b.source().await;
    assert!(
        source.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{source}"
    );
    b.screenshot("receive-connectors-escaped").await;
    b.close().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let console = Console::start(Setup::new().await, &[]).await;
    let c = console.client();

    let logon = c.get("/logon", &[]).await;
    let s = sign_in(&c, "Administrator", ADMIN_PASSWORD)
        .await
        .expect("signed in");
    let page = c.get(HOME, &[("Cookie", &session_cookie(&s))]).await;
    assert_eq!(page.status, 200);
    for (what, r) in [("logon", &logon), ("signed-in page", &page)] {
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{what}: {csp}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{what}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{what}");
        assert!(!r.body.contains("<script>"), "{what}: an inline script");
    }

    // The session cookie: HTTPS only, out of scripts' reach, never sent cross-site.
    let r = c.get("/logon", &[]).await;
    let token = r.hidden("csrf").unwrap();
    let pre = r.set_cookie(LOGON).unwrap();
    let r = c
        .post_form(
            "/logon",
            &[
                ("Cookie", &format!("{LOGON}={pre}")),
                ("Origin", &c.origin()),
            ],
            &[
                ("csrf", &token),
                ("username", "Administrator"),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    let set = r
        .all("set-cookie")
        .into_iter()
        .find(|v| v.starts_with(SESSION))
        .expect("a session cookie")
        .to_string();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.split("; ").any(|a| a == attr), "{attr} missing: {set}");
    }

    // Static files: cached, compressed, and /healthz needs no session.
    let js = c
        .get(
            "/static/vendor/htmx-2.0.11.min.js",
            &[("Accept-Encoding", "gzip")],
        )
        .await;
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-encoding"), Some("gzip"));
    assert!(
        js.header("cache-control")
            .unwrap_or_default()
            .contains("immutable")
    );
    assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
    let health = c.get("/healthz", &[]).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
}

#[tokio::test]
async fn plain_http_is_refused_off_loopback() {
    let setup = Setup::new().await;
    let mut cmd = serve_command(&setup, setup.data_dir.path());
    cmd.env("HUBGATE_CONSOLE_PLAIN_HTTP", "true")
        .env("HUBGATE_CONSOLE_BIND", "0.0.0.0:0");
    let (status, _, err) = run_to_exit(&mut cmd, "hubgate did not stop");
    assert!(!status.success());
    assert!(
        err.contains("plain HTTP only on a loopback address"),
        "{err}"
    );
}

#[tokio::test]
async fn a_session_outlives_a_restart() {
    let mut console = Console::start(Setup::new().await, &[]).await;
    let c = console.client();
    let s = sign_in(&c, "Administrator", ADMIN_PASSWORD)
        .await
        .expect("signed in");
    console.restart().await;
    let page = c.get(HOME, &[("Cookie", &session_cookie(&s))]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Administrator"));
}

#[tokio::test]
async fn a_certificate_installed_while_running_is_served_by_the_console() {
    let console = Console::start(Setup::new().await, &[]).await;
    let (ca, leaves) = private_ca(&["localhost"]);
    let (cert, key) = &leaves[0];
    let certs = console.setup.data_dir.path().join("certs");
    // Key first, then the certificate, each replaced whole, as a renewal script does.
    for (file, pem) in [(format!("{FQDN}.key"), key), (format!("{FQDN}.crt"), cert)] {
        let tmp = certs.join(format!("{file}.new"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, certs.join(&file)).unwrap();
    }
    let addr = std::net::SocketAddr::from((console.setup.ip, console.setup.console_port));
    let c = https::Client::trusting(addr, ca.as_bytes());
    eventually("the console to present the new certificate", || {
        let c = &c;
        async move {
            c.try_request("GET", "/healthz", &[], None)
                .await
                .is_ok_and(|r| r.status == 200)
        }
    })
    .await;
}

#[tokio::test]
async fn plain_http_on_loopback_serves_the_console() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let console = Console::start(
        Setup::new().await,
        &[("HUBGATE_CONSOLE_PLAIN_HTTP", "true")],
    )
    .await;
    let addr = std::net::SocketAddr::from((console.setup.ip, console.setup.console_port));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET /logon HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tcp.read_to_end(&mut raw),
    )
    .await
    .expect("response timeout")
    .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // Without HTTPS the cookie cannot be Secure, nor carry the __Host- prefix.
    let cookie = text
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: hubgate-logon=")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(!cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn signed_out_requests_are_sent_to_the_sign_in_page() {
    let console = Console::start(Setup::new().await, &[]).await;
    let c = console.client();
    let r = c.get("/?view=1", &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/logon?next=%2F%3Fview%3D1"));
    // htmx would swap the sign-in page into a part of the frame: it is told to go there instead.
    let r = c.get("/", &[("HX-Request", "true")]).await;
    assert_eq!(r.header("hx-redirect"), Some("/logon?next=%2F"));

    // A second sign-in tab keeps the browser's token, so the first tab's form still works.
    let first = c.get("/logon", &[]).await;
    let pre = first.set_cookie(LOGON).unwrap();
    let second = c
        .get("/logon", &[("Cookie", &format!("{LOGON}={pre}"))])
        .await;
    assert_eq!(second.hidden("csrf"), first.hidden("csrf"));
    let r = c
        .post_form(
            "/logon",
            &[
                ("Cookie", &format!("{LOGON}={pre}")),
                ("Origin", &c.origin()),
            ],
            &[
                ("csrf", &first.hidden("csrf").unwrap()),
                ("username", "Administrator"),
                ("password", ADMIN_PASSWORD),
                ("next", "/?view=1"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/?view=1"));
}
