//! What stands in front of every console request: the cross-site request check on anything that
//! changes state, and the sign-in check on the pages.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{FromRequest, FromRequestParts, Multipart, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::session::{self, Admin};
use super::state::ConsoleState;

/// The largest form body read for its `csrf` field; the body limit layer refuses larger ones.
pub const MAX_FORM_BODY: usize = 256 * 1024;

/// Form field and header that carry the token.
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Every request but GET and HEAD must come from this console's own pages: the browser says where
/// it comes from (Origin, Sec-Fetch-Site), and it carries the session's token, which a page of
/// another site cannot read. Either missing is a 403, before any handler runs.
pub async fn csrf_guard(State(state): State<ConsoleState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    if let Err(why) = same_origin(req.headers(), state.https) {
        tracing::warn!(path = %req.uri().path(), "console: cross-site request refused: {why}");
        return refused();
    }
    let (mut parts, body) = req.into_parts();
    let expected = if parts.uri.path() == "/logon" {
        session::cookie(&parts.headers, session::logon_cookie_name(state.https)).map(str::to_string)
    } else {
        match session::admin_of(&parts, &state).await {
            Ok(Some(admin)) => {
                let csrf = admin.csrf.clone();
                parts.extensions.insert(admin);
                Some(csrf)
            }
            Ok(None) => None,
            Err(e) => return e.into_response(),
        }
    };
    let Some(expected) = expected else {
        tracing::warn!(path = %parts.uri.path(), "console: state-changing request without a session refused");
        return refused();
    };
    let (presented, body) = match presented_token(&parts.headers, body).await {
        Ok(found) => found,
        Err(status) => return status.into_response(),
    };
    match presented {
        Some(t) if session::tokens_match(&t, &expected) => {
            next.run(Request::from_parts(parts, body)).await
        }
        _ => {
            tracing::warn!(path = %parts.uri.path(), "console: request without the session's token refused");
            refused()
        }
    }
}

fn refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        "The request was refused: it did not come from this console's own pages. Nothing was changed.\n",
    )
        .into_response()
}

/// Browsers name the page a request comes from; anything but this console itself is refused.
/// A client that sends neither header is no browser, and so cannot be made to forge a request.
fn same_origin(headers: &HeaderMap, https: bool) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !matches!(site, "same-origin" | "none") {
            return Err(format!("Sec-Fetch-Site: {site}"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let scheme = if https { "https" } else { "http" };
        let expected = format!("{scheme}://{host}");
        if host.is_empty() || !origin.eq_ignore_ascii_case(&expected) {
            return Err(format!("Origin {origin} is not {expected}"));
        }
    }
    Ok(())
}

/// How much of a multipart body is read for its first part, the token: the part is a hundred
/// bytes or so; a body that does not start with it whole within this is refused.
const MULTIPART_HEAD: usize = 16 * 1024;

/// The token from the header, from the `csrf` field of a urlencoded body, or from the first part
/// of a multipart one (an upload form puts its token first); the body is handed on unchanged.
async fn presented_token(
    headers: &HeaderMap,
    body: Body,
) -> Result<(Option<String>, Body), StatusCode> {
    if let Some(t) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return Ok((Some(t.to_string()), body));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("multipart/form-data") {
        return multipart_token(content_type, body).await;
    }
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Ok((None, body));
    }
    let bytes = to_bytes(body, MAX_FORM_BODY)
        .await
        .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)?;
    let token = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    Ok((token, Body::from(bytes)))
}

/// The first part of a multipart body, when it is the token: only the body's head is read (an
/// upload may be large, and nobody's until the token is checked), then put back in front of the
/// rest.
async fn multipart_token(
    content_type: &str,
    body: Body,
) -> Result<(Option<String>, Body), StatusCode> {
    let mut rest = body.into_data_stream();
    let mut head = Vec::new();
    while head.len() < MULTIPART_HEAD {
        match rest.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(_)) => return Err(StatusCode::BAD_REQUEST),
            None => break,
        }
    }
    let head = Bytes::from(head);
    let token = first_part(content_type, head.clone()).await;
    let whole = futures_util::stream::once(async move { Ok::<_, axum::Error>(head) }).chain(rest);
    Ok((token, Body::from_stream(whole)))
}

/// The text of `head`'s first part when it is named `csrf` and ends within `head`.
async fn first_part(content_type: &str, head: Bytes) -> Option<String> {
    let req = Request::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(head))
        .ok()?;
    let mut parts = Multipart::from_request(req, &()).await.ok()?;
    let field = parts.next_field().await.ok()??;
    if field.name() != Some(CSRF_FIELD) {
        return None;
    }
    field.text().await.ok()
}

/// The pages need a signed-in administrator: anyone else is sent to the sign-in page.
pub async fn require_admin(
    State(state): State<ConsoleState>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    match Admin::from_request_parts(&mut parts, &state).await {
        Ok(admin) => {
            parts.extensions.insert(admin);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(not_signed_in) => not_signed_in.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_the_console_itself_is_the_same_origin() {
        let host = ("host", "mx.contoso.test:8080");
        assert!(
            same_origin(
                &headers(&[host, ("origin", "https://mx.contoso.test:8080")]),
                true
            )
            .is_ok()
        );
        assert!(same_origin(&headers(&[host, ("sec-fetch-site", "same-origin")]), true).is_ok());
        // Not a browser: nothing to forge, the token still decides.
        assert!(same_origin(&headers(&[host]), true).is_ok());
        for bad in [
            vec![host, ("origin", "https://attacker.example")],
            vec![host, ("origin", "http://mx.contoso.test:8080")],
            vec![host, ("origin", "null")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![("origin", "https://mx.contoso.test:8080")],
        ] {
            assert!(same_origin(&headers(&bad), true).is_err(), "{bad:?}");
        }
    }
}
