//! Console sessions: a random 256-bit id in a cookie, the session itself in PostgreSQL (so every
//! node and a restart know it), signed off after `idle_timeout` without a request.

use std::net::IpAddr;

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use super::state::ConsoleState;
use crate::org::account::ORGANIZATION_MANAGEMENT;

/// The signed-in administrator.
#[derive(Clone, Debug)]
pub struct Admin {
    pub account: String,
    /// This session's token, which every form posts back as `csrf`.
    pub csrf: String,
}

/// The cookie's name: with HTTPS the `__Host-` prefix, which browsers accept only from a secure
/// origin, for path `/` and without a Domain, so no other site or subdomain can plant it.
pub fn cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-hubgate-session"
    } else {
        "hubgate-session"
    }
}

/// The pre-sign-in cookie that binds the logon form to the browser that fetched it.
pub fn logon_cookie_name(https: bool) -> &'static str {
    if https {
        "__Host-hubgate-logon"
    } else {
        "hubgate-logon"
    }
}

/// `name=value` for the response, with the attributes every console cookie has.
pub fn set_cookie(name: &str, value: &str, https: bool, max_age: Option<u64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if https {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    // Both parts are ours (a fixed name, base64url): always a valid header value.
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Removes a cookie from the browser.
pub fn clear_cookie(name: &str, https: bool) -> HeaderValue {
    set_cookie(name, "", https, Some(0))
}

/// A cookie's value from the request's Cookie headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// 256 random bits, base64url.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `t` looks like one of `random_token`'s: 43 base64url characters.
pub fn is_token(t: &str) -> bool {
    t.len() == 43
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What is stored for a session id: its SHA-256, so the table does not hold live cookies.
fn id_hash(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// Equal lengths compared without an early exit, so timing does not tell how much matched.
pub fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Starts a session for `account_id`; returns the cookie value.
pub async fn create(
    pool: &sqlx::PgPool,
    account_id: Uuid,
    source: IpAddr,
    idle_timeout: std::time::Duration,
) -> Result<String, sqlx::Error> {
    // Sessions nobody came back to are removed here rather than by a timer: sign-ins are rare.
    sqlx::query("DELETE FROM console_session WHERE last_seen < now() - make_interval(secs => $1)")
        .bind(idle_timeout.as_secs_f64())
        .execute(pool)
        .await?;
    let token = random_token();
    sqlx::query(
        "INSERT INTO console_session (id_hash, account_id, csrf, source) VALUES ($1, $2, $3, $4)",
    )
    .bind(id_hash(&token))
    .bind(account_id)
    .bind(random_token())
    .bind(ipnet::IpNet::from(source))
    .execute(pool)
    .await?;
    Ok(token)
}

/// The administrator of a live session, which this request keeps alive. A session whose account
/// has since left Organization Management, or was removed, is no longer one.
pub async fn lookup(state: &ConsoleState, token: &str) -> Result<Option<Admin>, sqlx::Error> {
    let row: Option<(String, String, Vec<String>)> = sqlx::query_as(
        "UPDATE console_session s SET last_seen = now() FROM account a
          WHERE s.id_hash = $1 AND a.id = s.account_id
            AND s.last_seen >= now() - make_interval(secs => $2)
          RETURNING a.name, s.csrf, a.member_of",
    )
    .bind(id_hash(token))
    .bind(state.idle_timeout.as_secs_f64())
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.and_then(|(account, csrf, groups)| {
        groups
            .iter()
            .any(|g| g.eq_ignore_ascii_case(ORGANIZATION_MANAGEMENT))
            .then_some(Admin { account, csrf })
    }))
}

/// Log Off: the session is gone, whatever copy of the cookie anyone kept.
pub async fn remove(pool: &sqlx::PgPool, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM console_session WHERE id_hash = $1")
        .bind(id_hash(token))
        .execute(pool)
        .await?;
    Ok(())
}

/// The administrator of this request, looked up once (by the session middleware or here).
pub async fn admin_of(parts: &Parts, state: &ConsoleState) -> Result<Option<Admin>, SessionError> {
    if let Some(a) = parts.extensions.get::<Admin>() {
        return Ok(Some(a.clone()));
    }
    let Some(token) = cookie(&parts.headers, cookie_name(state.https)) else {
        return Ok(None);
    };
    Ok(lookup(state, token).await?)
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the session store: {0}")]
    Db(#[from] sqlx::Error),
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        tracing::error!("console: {self}");
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "The configuration database is not available.\n",
        )
            .into_response()
    }
}

/// Why a request has no administrator: where to sign in, or a database failure.
pub enum NotSignedIn {
    /// The sign-in page's URL; `htmx`: the request came from htmx, which is told to load it as a
    /// whole page rather than swap it into a part of one.
    Logon {
        location: String,
        htmx: bool,
    },
    Unavailable(SessionError),
}

impl IntoResponse for NotSignedIn {
    fn into_response(self) -> Response {
        match self {
            NotSignedIn::Logon {
                location,
                htmx: true,
            } => match HeaderValue::from_str(&location) {
                Ok(v) => ([("hx-redirect", v)], "").into_response(),
                Err(_) => Redirect::to("/logon").into_response(),
            },
            NotSignedIn::Logon { location, .. } => Redirect::to(&location).into_response(),
            NotSignedIn::Unavailable(e) => e.into_response(),
        }
    }
}

/// `/logon?next=<this page>`, so that signing in comes back here.
pub fn logon_location(path_and_query: &str) -> String {
    let next: String = form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect();
    format!("/logon?next={next}")
}

impl FromRequestParts<ConsoleState> for Admin {
    type Rejection = NotSignedIn;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Admin, NotSignedIn> {
        match admin_of(parts, state).await {
            Ok(Some(a)) => Ok(a),
            Ok(None) => {
                // Nested routers see their own part of the path; the original is where to return.
                let uri = parts
                    .extensions
                    .get::<OriginalUri>()
                    .map(|u| u.0.clone())
                    .unwrap_or_else(|| parts.uri.clone());
                let here = uri.path_and_query().map_or("/", |p| p.as_str());
                Err(NotSignedIn::Logon {
                    location: logon_location(here),
                    htmx: parts.headers.contains_key("hx-request"),
                })
            }
            Err(e) => Err(NotSignedIn::Unavailable(e)),
        }
    }
}

/// Only a path on this console: `//evil.example` or `/\evil` would leave it.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control())
                && !n.starts_with("/logon") =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_console() {
        assert_eq!(safe_next(Some("/servers/HUB1")), "/servers/HUB1");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/x\r\nSet-Cookie: a=b")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; hubgate-session=xyz"),
        );
        assert_eq!(cookie(&h, "hubgate-session"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
    }
}
