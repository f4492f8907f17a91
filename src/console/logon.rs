//! The sign-in page, Log Off, and the guard against password guessing.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{self, Admin};
use super::state::ConsoleState;
use crate::org::Account;
use crate::org::account::{self, ORGANIZATION_MANAGEMENT};
use crate::smtp::server::auth_throttle::{AuthThrottle, Policy, Thresholds, Verdict};

/// Failed sign-ins after which a source, or an account from that source, is refused: for
/// `first_lockout`, doubling with every further failure. Other sources are not affected, so
/// nobody can lock the administrator out of the console from elsewhere.
pub const REFUSE_AFTER: u32 = 5;

pub fn throttle() -> AuthThrottle {
    let t = Thresholds {
        slow_after: REFUSE_AFTER,
        refuse_after: REFUSE_AFTER,
    };
    AuthThrottle::new(Policy {
        source: t,
        pair: t,
        first_lockout: Duration::from_secs(60),
        max_lockout: Duration::from_secs(3600),
        ..Policy::default()
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "console/logon.html")]
struct LogonPage {
    csrf: String,
    next: String,
    username: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct LogonQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct LogonForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// The form, with a pre-sign-in token in a cookie and in the form: a logon posted from another
/// site (to sign the victim into the attacker's session) lacks the pair. The browser's current
/// token is kept, so that two sign-in tabs do not invalidate each other.
fn page(
    state: &ConsoleState,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    username: &str,
    error: Option<String>,
) -> Response {
    let token = session::cookie(headers, session::logon_cookie_name(state.https))
        .filter(|t| session::is_token(t))
        .map(str::to_string)
        .unwrap_or_else(session::random_token);
    let cookie = session::set_cookie(
        session::logon_cookie_name(state.https),
        &token,
        state.https,
        None,
    );
    let body = LogonPage {
        csrf: token,
        next: next.to_string(),
        username: username.to_string(),
        error,
    };
    (status, [(header::SET_COOKIE, cookie)], body).into_response()
}

pub async fn show(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<LogonQuery>,
) -> Response {
    page(
        &state,
        &headers,
        StatusCode::OK,
        &session::safe_next(q.next.as_deref()),
        "",
        None,
    )
}

pub async fn submit(
    State(state): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LogonForm>,
) -> Response {
    let next = session::safe_next(form.next.as_deref());
    let source = peer.ip();
    let user = form.username.trim();
    if user.is_empty() || user.len() > 256 || form.password.len() > 1024 {
        return page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            &next,
            "",
            Some(INCORRECT.into()),
        );
    }
    let outcome = check(&state, source, user, &form.password).await;
    let refusal = match outcome {
        Outcome::Admin(acc) => {
            return match session::create(&state.pool, acc.id, source, state.idle_timeout).await {
                Ok(token) => {
                    tracing::info!(%source, account = %acc.name, "console: signed in");
                    let https = state.https;
                    let mut out = HeaderMap::new();
                    out.append(
                        header::SET_COOKIE,
                        session::set_cookie(session::cookie_name(https), &token, https, None),
                    );
                    out.append(
                        header::SET_COOKIE,
                        session::clear_cookie(session::logon_cookie_name(https), https),
                    );
                    (out, Redirect::to(&next)).into_response()
                }
                Err(e) => session::SessionError::from(e).into_response(),
            };
        }
        Outcome::NotAdmin => {
            tracing::warn!(%source, account = %user, "console: sign-in refused: not a member of {ORGANIZATION_MANAGEMENT}");
            (
                StatusCode::FORBIDDEN,
                format!(
                    "Access denied. {user} is not a member of {ORGANIZATION_MANAGEMENT}, and only its members can use the console."
                ),
            )
        }
        Outcome::Wrong => {
            tracing::warn!(%source, account = %user, "console: sign-in failed: wrong user name or password");
            (StatusCode::UNAUTHORIZED, INCORRECT.to_string())
        }
        Outcome::Locked(left) => {
            tracing::warn!(%source, account = %user, "console: sign-in refused: locked for {}s after repeated failures", left.as_secs());
            (
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Sign-in from your address is blocked after repeated failed attempts. Try again in {}.",
                    minutes_text(left)
                ),
            )
        }
        Outcome::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins are in progress. Try again in a moment.".to_string(),
        ),
    };
    page(&state, &headers, refusal.0, &next, user, Some(refusal.1))
}

const INCORRECT: &str =
    "The user name or password you entered isn't correct. Try entering it again.";

enum Outcome {
    Admin(Account),
    NotAdmin,
    Wrong,
    Locked(Duration),
    Busy,
}

/// The password checked under the throttle, as SMTP AUTH does: one attempt per source at a time
/// (so parallel guesses see each other's outcome), a locked source or pair refused without its
/// password being looked at, argon2 on the blocking pool within the verification slots.
async fn check(state: &ConsoleState, source: IpAddr, user: &str, password: &str) -> Outcome {
    let throttle = &state.logon_throttle;
    let Some(_turn) = throttle.source_turn(source).await else {
        return Outcome::Busy;
    };
    match throttle.check(source, user) {
        Verdict::Refuse(left) => return Outcome::Locked(left),
        Verdict::Delay(d) => tokio::time::sleep(d).await,
        Verdict::Proceed => {}
    }
    let Some(slot) = throttle.verification_slot().await else {
        return Outcome::Busy;
    };
    let found = match Account::find(&state.pool, user).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("console: looking up {user}: {e}");
            return Outcome::Busy;
        }
    };
    let pw = password.to_string();
    let acc = found.clone();
    let ok = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        account::verify_or_dummy(acc.as_ref(), &pw)
    })
    .await
    .unwrap_or(false);
    match found.filter(|_| ok) {
        Some(acc) => {
            throttle.succeeded(source, user);
            if acc.is_member(ORGANIZATION_MANAGEMENT) {
                Outcome::Admin(acc)
            } else {
                Outcome::NotAdmin
            }
        }
        None => {
            throttle.failed(source, user);
            // The failure that locks says so at once, not only at the next attempt.
            match throttle.check(source, user) {
                Verdict::Refuse(left) => Outcome::Locked(left),
                _ => Outcome::Wrong,
            }
        }
    }
}

/// "2 minutes", rounded up: a lockout is never shorter than it says.
fn minutes_text(d: Duration) -> String {
    let m = d.as_secs().div_ceil(60).max(1);
    if m == 1 {
        "1 minute".into()
    } else {
        format!("{m} minutes")
    }
}

/// Log Off: the session ends on the server, and the browser forgets its cookie.
pub async fn logoff(
    State(state): State<ConsoleState>,
    admin: Admin,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = session::cookie(&headers, session::cookie_name(state.https))
        && let Err(e) = session::remove(&state.pool, token).await
    {
        return session::SessionError::from(e).into_response();
    }
    tracing::info!(account = %admin.account, "console: logged off");
    (
        [(
            header::SET_COOKIE,
            session::clear_cookie(session::cookie_name(state.https), state.https),
        )],
        Redirect::to("/logon"),
    )
        .into_response()
}
