//! The browser console: sign-in, sessions and the guards in front of every page, served over
//! HTTPS with the certificate STARTTLS uses (see `server`).

pub mod guard;
pub mod logon;
pub mod pages;
pub mod server;
pub mod session;
pub mod state;
pub mod wizard;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tokio::task::JoinHandle;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use server::{ListenError, TlsSource};
pub use state::ConsoleState;

/// How the console is served.
pub struct ConsoleSettings {
    pub bind: String,
    /// Plain HTTP instead of HTTPS; only on a loopback address.
    pub plain_http: bool,
    pub idle_timeout: Duration,
    pub static_dir: PathBuf,
}

/// A handler that takes longer than this answers 408; nothing a page does should.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The Content-Security-Policy of every response: scripts and styles only from the console's
/// own files, so an injected `<script>` or `onerror=` does not run; no framing, no foreign forms.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The static files: /usr/share/hubgate/static when installed there, else the source tree's.
pub fn default_static_dir() -> PathBuf {
    let installed = Path::new("/usr/share/hubgate/static");
    if installed.is_dir() {
        installed.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("static")
    }
}

/// Opens the console's socket (an error stops the start) and serves it in a task.
/// `tls` is required unless `plain_http`.
pub async fn spawn(
    settings: &ConsoleSettings,
    state: ConsoleState,
    tls: Option<TlsSource>,
) -> Result<JoinHandle<()>, ListenError> {
    let listener = server::listen(&settings.bind, settings.plain_http).await?;
    let tls = if settings.plain_http { None } else { tls };
    let app = router(state, &settings.static_dir);
    Ok(tokio::spawn(server::run(listener, tls, app)))
}

/// Every route of the console with its middleware.
pub fn router(state: ConsoleState, static_dir: &Path) -> Router {
    let pages =
        pages::routes().route_layer(from_fn_with_state(state.clone(), guard::require_admin));
    let forms = Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(crate::monitor::http::on_console))
        .route("/readyz", get(ready))
        .route("/logon", get(logon::show).post(logon::submit))
        .route("/logoff", post(logon::logoff))
        .merge(pages)
        .layer(RequestBodyLimitLayer::new(guard::MAX_FORM_BODY));
    // The uploads (a CSV of valid recipients) carry their own, larger limit; the guard reads
    // only the head of their bodies before the token is checked.
    let uploads =
        pages::upload_routes().route_layer(from_fn_with_state(state.clone(), guard::require_admin));
    let dynamic = forms
        .merge(uploads)
        .layer(from_fn_with_state(state.clone(), guard::csrf_guard))
        // Pages show configuration and carry the session's token: never kept by a cache.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    // Versioned file names (htmx-2.0.11.min.js) never change; the rest is checked each time.
    let vendor = Router::new()
        .nest_service("/static/vendor", ServeDir::new(static_dir.join("vendor")))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ));
    let files = Router::new()
        .nest_service("/static", ServeDir::new(static_dir))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ));
    let static_files = vendor
        .merge(files)
        .layer(CompressionLayer::new())
        .layer(RequestBodyLimitLayer::new(guard::MAX_FORM_BODY));
    dynamic
        .merge(static_files)
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Not no-referrer: with it browsers send `Origin: null` on the console's own forms.
        .layer(security_header(header::REFERRER_POLICY, "same-origin"))
        .layer(security_header(
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}

/// Liveness: the process answers. Whether it can take mail is `/readyz`'s question; a node
/// restarted for a database outage would only lose its queue's place in memory.
async fn health() -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok\n")
}

/// Readiness: 200 `ready`, or 503 with one line per thing that is not.
async fn ready(State(state): State<ConsoleState>) -> (StatusCode, String) {
    let spool = state.data_dir.as_ref().map(|d| d.join("spool"));
    let problems = match &state.live {
        Some(live) => {
            crate::transport::pressure::readiness(&live.pressure, &state.pool, spool).await
        }
        None => {
            let p = crate::transport::pressure::Pressure::default();
            crate::transport::pressure::readiness(&p, &state.pool, None).await
        }
    };
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        let mut body = String::from("not ready\n");
        for p in problems {
            body.push_str(&p);
            body.push('\n');
        }
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}
