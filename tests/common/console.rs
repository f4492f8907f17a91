//! A gateway started for console tests, and signing in to it as a browser does.

use std::process::{Child, Stdio};

use super::https;
use super::*;

pub const SESSION: &str = "__Host-hubgate-session";
pub const LOGON: &str = "__Host-hubgate-logon";
/// Where `/` leads a signed-in administrator: Organization Configuration › Hub Transport.
pub const HOME: &str = "/org/hub/accepted-domains";

/// A running gateway with its console; its log (stdout and stderr) goes to a file the test can
/// read.
pub struct Console {
    pub setup: Setup,
    child: Child,
    env: Vec<(String, String)>,
    log: std::path::PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Console {
    pub async fn start(setup: Setup, env: &[(&str, &str)]) -> Console {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("hubgate.log");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = Console::spawn(&setup, &env, &log).await;
        Console {
            setup,
            child,
            env,
            log,
            _log_dir: log_dir,
        }
    }

    pub async fn spawn(setup: &Setup, env: &[(String, String)], log: &std::path::Path) -> Child {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap()
        };
        let mut cmd = serve_command(setup, setup.data_dir.path());
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(open());
        let mut child = cmd.spawn().expect("spawn hubgate");
        // The log is on stdout, after the ready line's wait as before it.
        wait_ready_logging(&mut child, Some(open())).await;
        child
    }

    /// SIGTERM, wait for the exit, start again with the same settings.
    pub async fn restart(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "hubgate did not stop");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.child = Console::spawn(&self.setup, &self.env, &self.log).await;
    }

    pub fn client(&self) -> https::Client {
        https::Client::new(
            std::net::SocketAddr::from((self.setup.ip, self.setup.console_port)),
            self.setup.data_dir.path(),
            FQDN,
        )
    }

    /// The gateway's log so far, without the terminal colour codes.
    pub fn log_text(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ ... final byte in @..~
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) && d != '[' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    pub async fn sessions(&self) -> i64 {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM console_session")
            .fetch_one(&self.setup.pool)
            .await
            .unwrap();
        n
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs in as a browser would (logon page, then its form): the session cookie, or the refusal.
pub async fn sign_in(
    c: &https::Client,
    user: &str,
    password: &str,
) -> Result<String, https::Response> {
    let page = c.get("/logon", &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let pre = page.set_cookie(LOGON).expect("the logon cookie");
    let csrf = page.hidden("csrf").expect("the logon form's token");
    let r = c
        .post_form(
            "/logon",
            &[
                ("Cookie", &format!("{LOGON}={pre}")),
                ("Origin", &c.origin()),
                ("Sec-Fetch-Site", "same-origin"),
            ],
            &[
                ("csrf", &csrf),
                ("username", user),
                ("password", password),
                ("next", "/"),
            ],
        )
        .await;
    match (r.status, r.set_cookie(SESSION)) {
        (303, Some(s)) if !s.is_empty() => Ok(s),
        _ => Err(r),
    }
}

pub fn session_cookie(s: &str) -> String {
    format!("{SESSION}={s}")
}

/// Signs in to `console` as the Administrator: a client and its session's Cookie header value.
pub async fn administrator(console: &Console) -> (https::Client, String) {
    let client = console.client();
    let cookie = session_cookie(
        &sign_in(&client, "Administrator", ADMIN_PASSWORD)
            .await
            .unwrap_or_else(|r| panic!("sign-in refused: {}", r.body)),
    );
    (client, cookie)
}

/// The headers of a form the console's own page posts: the session, and the same origin.
pub fn same_origin<'a>(cookie: &'a str, origin: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("Cookie", cookie),
        ("Origin", origin),
        ("Sec-Fetch-Site", "same-origin"),
    ]
}

/// The text of the element with `id` in `html` (a cell: no markup inside).
pub fn cell(html: &str, id: &str) -> Option<String> {
    let key = format!("id=\"{id}\">");
    let at = html.find(&key)? + key.len();
    let end = html[at..].find('<')? + at;
    Some(html[at..end].to_string())
}

/// The count in the cell, "1,234" read as 1234.
pub fn number(html: &str, id: &str) -> u64 {
    let text = cell(html, id).unwrap_or_else(|| panic!("no #{id} in the page:\n{html}"));
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("#{id} is {text:?}"))
}
