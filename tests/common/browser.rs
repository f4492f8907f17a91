//! A real browser for the console tests: Debian's `chromium`, headless, driven through
//! `chromedriver` (WebDriver) with fantoccini. Every wait is bounded; nothing sleeps and hopes.
//!
//! Each browser has a profile of its own (no cookie or cache carries over between tests) and
//! accepts the gateway's self-signed certificate, as an administrator clicking through the
//! warning on first contact would. Screenshots go to `target/console-screenshots/<name>.png`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

/// How long any single wait for the page may take on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Browser {
    pub client: Client,
    /// `https://<console address>`.
    pub base: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Where screenshots are written: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent()
        .map(|t| t.join("console-screenshots"))
        .unwrap_or_else(|| tmp.join("console-screenshots"))
}

impl Browser {
    /// Starts chromedriver and a fresh headless chromium aimed at `base`.
    pub async fn start(base: &str) -> Browser {
        let port = super::peer_port();
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // A group of its own: chromium and its helpers go with chromedriver when it is stopped.
            .process_group(0)
            .spawn()
            .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
        let webdriver = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = driver.try_wait() {
                panic!("chromedriver exited: {status}");
            }
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
            "--window-size=1280,900".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-first-run".into(),
            "--disable-extensions".into(),
            "--disable-background-networking".into(),
            "--disable-sync".into(),
            "--disable-component-update".into(),
            "--no-proxy-server".into(),
        ];
        // Chromium's sandbox refuses to run as root (CI containers).
        if unsafe { libc::getuid() } == 0 {
            args.push("--no-sandbox".into());
        }
        let caps = serde_json::json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let connect = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&webdriver)
            .await;
        let client = match connect {
            Ok(c) => c,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("starting chromium through chromedriver: {e}");
            }
        };
        client
            .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                Some(WAIT),
                Some(WAIT),
                Some(Duration::ZERO),
            ))
            .await
            .expect("set WebDriver timeouts");
        Browser {
            client,
            base: base.trim_end_matches('/').to_string(),
            driver,
            _profile: profile,
        }
    }

    /// Opens a path of the console (bounded by the page-load timeout).
    pub async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The element, once it is there (at most [`WAIT`]).
    pub async fn wait_for(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
    }

    /// Waits until the current URL's path (and query) satisfies `ok`.
    pub async fn wait_for_path(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.client.current_url().await.expect("current URL");
            let here = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            };
            if ok(&here) {
                return here;
            }
            assert!(Instant::now() < deadline, "waiting for {what}; at {here}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types into the field (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.wait_for(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap();
    }

    /// The visible text of the element.
    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap()
    }

    /// The page's HTML as the browser holds it.
    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// Signs in on the logon page the browser is at (or is sent to).
    pub async fn log_on(&self, user: &str, password: &str) {
        self.fill("#username", user).await;
        self.fill("#password", password).await;
        self.click("#logon").await;
    }

    /// Writes a PNG of the page to `target/console-screenshots/<name>.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the WebDriver session and chromedriver.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.client.clone().close()).await;
        self.stop_driver();
    }

    fn stop_driver(&mut self) {
        // The group is chromedriver's own (see `start`): chromedriver and what it started.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test does not leave chromedriver (and with it chromium) running.
        self.stop_driver();
    }
}
