//! The console's router driven request by request, as a signed-in administrator would.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hubgate::console::pages;
use hubgate::console::session::TEST_ADMIN_HEADER;
use hubgate::console::state::ConsoleState;
use hubgate::shell::Shell;
use tower::ServiceExt;

use crate::common::*;

pub struct Console {
    pub app: Router,
    pub sh: Shell,
    pub pool: sqlx::PgPool,
    pub ip: std::net::Ipv4Addr,
    pub smtp: std::net::SocketAddr,
    /// The database and data directory live as long as the console (None: a gateway holds them).
    _setup: Option<Setup>,
}

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
        let mut c = Console::on(&setup);
        c._setup = Some(setup);
        c
    }

    /// The pages over `setup`'s database (also while its gateway runs).
    pub fn on(setup: &Setup) -> Console {
        let app = pages::routes().with_state(ConsoleState {
            pool: setup.pool.clone(),
            server: SERVER.into(),
            fqdn: FQDN.into(),
        });
        Console {
            app,
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
    pub async fn get(&self, path: &str) -> String {
        let r = self
            .send(
                Request::get(path)
                    .header(TEST_ADMIN_HEADER, "Administrator")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}: {}", r.body);
        r.body
    }

    pub async fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let mut all = vec![("csrf", "stand-in")];
        all.extend_from_slice(pairs);
        self.send(
            Request::post(path)
                .header(TEST_ADMIN_HEADER, "Administrator")
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
