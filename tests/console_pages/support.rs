//! The console's router driven request by request, as a signed-in administrator would.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hubgate::console::state::ConsoleState;
use hubgate::console::{self, session};
use hubgate::org::Account;
use hubgate::shell::Shell;
use tower::ServiceExt;

use crate::common::*;

pub struct Console {
    /// The console's whole router: the session check and the cross-site guard in front.
    pub app: Router,
    /// The Administrator's session cookie (`name=value`) and its CSRF token.
    pub cookie: String,
    pub csrf: String,
    pub sh: Shell,
    pub pool: sqlx::PgPool,
    pub ip: std::net::Ipv4Addr,
    pub smtp: std::net::SocketAddr,
    /// The database and data directory live as long as the console (None: a gateway holds them).
    _setup: Option<Setup>,
}

/// The console's host as the browser names it (Host, and Origin with `https://`).
pub const ORIGIN_HOST: &str = "hub1.contoso.test:8443";

pub struct Reply {
    pub status: StatusCode,
    pub body: String,
    pub location: Option<String>,
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Console {
    pub async fn new() -> Console {
        let setup = Setup::new().await;
        let mut c = Console::on(&setup).await;
        c._setup = Some(setup);
        c
    }

    /// The console over `setup`'s database (also while its gateway runs), with a session for
    /// the Administrator made as a sign-in makes it.
    pub async fn on(setup: &Setup) -> Console {
        let state = ConsoleState::new(setup.pool.clone(), SERVER, FQDN);
        let admin = Account::find(&setup.pool, "Administrator")
            .await
            .unwrap()
            .expect("the Administrator account");
        let token = session::create(
            &setup.pool,
            admin.id,
            std::net::IpAddr::from([127, 0, 0, 1]),
            state.idle_timeout,
        )
        .await
        .unwrap();
        let csrf = session::lookup(&state, &token)
            .await
            .unwrap()
            .expect("the new session")
            .csrf;
        let cookie = format!("{}={token}", session::cookie_name(state.https));
        let app = console::router(state, &console::default_static_dir());
        Console {
            app,
            cookie,
            csrf,
            sh: Shell::new(setup.pool.clone(), FQDN),
            pool: setup.pool.clone(),
            ip: setup.ip,
            smtp: setup.smtp(),
            _setup: None,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .unwrap();
        Reply {
            status,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
            location,
        }
    }

    /// A page that must render.
    /// A GET as the signed-in Administrator's browser sends it.
    pub fn get_request(&self, path: &str) -> Request<Body> {
        Request::get(path)
            .header(header::HOST, ORIGIN_HOST)
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap()
    }

    /// A page that must render.
    pub async fn get(&self, path: &str) -> String {
        let r = self.send(self.get_request(path)).await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.body);
        r.body
    }

    /// A form post from the console's own page: the session's cookie and token, same origin.
    pub async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        self.post_from(
            path,
            pairs,
            &format!("https://{ORIGIN_HOST}"),
            "same-origin",
        )
        .await
    }

    /// A form post with the admin's cookie and token from the page at `origin`.
    pub async fn post_from(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        origin: &str,
        fetch_site: &str,
    ) -> Reply {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(pairs);
        self.send(
            Request::post(path)
                .header(header::HOST, ORIGIN_HOST)
                .header(header::ORIGIN, origin)
                .header("sec-fetch-site", fetch_site)
                .header(header::COOKIE, &self.cookie)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form_encode(&all)))
                .unwrap(),
        )
        .await
    }

    /// A POST the page accepts: it redirects (303) to a GET.
    pub async fn saved(&self, path: &str, pairs: &[(&str, &str)]) -> String {
        let r = self.post(path, pairs).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "POST {path}: {}", r.body);
        r.location.unwrap()
    }

    /// A wizard's New, posted with every page's values: the Completion page, which must say
    /// Completed; returns where its Finish goes.
    pub async fn completed(&self, path: &str, step: &str, pairs: &[(&str, &str)]) -> String {
        let mut all = vec![("step", step), ("action", "new")];
        all.extend_from_slice(pairs);
        let r = self.post(path, &all).await;
        assert_eq!(r.status, StatusCode::OK, "POST {path}: {}", r.body);
        assert!(
            r.body
                .contains("id=\"status\" class=\"status ok\">Completed<"),
            "POST {path} should complete: {}",
            r.body
        );
        let at = r.body.find("id=\"finish\"").expect("Finish");
        let href = r.body[..at].rfind("href=\"").expect("Finish's href") + 6;
        let end = r.body[href..].find('"').unwrap() + href;
        r.body[href..end]
            .replace("&#x3d;", "=")
            .replace("&#61;", "=")
    }

    /// A POST the page refuses: the form again, with the message beside `field`.
    pub async fn refused(&self, path: &str, pairs: &[(&str, &str)], field: &str, want: &str) {
        let r = self.post(path, pairs).await;
        assert_eq!(r.status, StatusCode::OK, "POST {path} should be refused");
        let at = r
            .body
            .find(&format!("id=\"field-{field}\""))
            .unwrap_or_else(|| panic!("no field {field}: {}", r.body));
        let rest = &r.body[at..];
        let end = rest[1..]
            .find("class=\"field")
            .map_or(rest.len(), |e| e + 1);
        let block = &rest[..end];
        assert!(
            block.contains("class=\"error\"") && block.contains(want),
            "{field} should show {want:?}: {block}"
        );
    }

    pub async fn shell(&mut self, line: &str) -> String {
        self.sh
            .run_line(line)
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    /// One property as Format-List prints it.
    pub async fn fl(&mut self, get: &str, prop: &str) -> String {
        let out = self.shell(&format!("{get} | Format-List {prop}")).await;
        out.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(" : ")?;
                // hubgate's "(not enforced: ...)" caveat after a value is not the value.
                let v = v.split(" (not enforced").next().unwrap_or(v);
                (k.trim() == prop).then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("{get}: no {prop} in {out}"))
    }

    pub async fn id(&self, table: &str, name: &str) -> String {
        let (id,): (uuid::Uuid,) =
            sqlx::query_as(&format!("SELECT id FROM {table} WHERE name = $1"))
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .unwrap();
        id.to_string()
    }
}
