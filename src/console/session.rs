//! The signed-in administrator. A stand-in in the pages branch: the sign-in work replaces it at
//! merge with the session-backed extractor of the same name and fields. Here the account comes
//! from a request header so the pages can be driven without a sign-in.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::state::ConsoleState;

/// The header the stand-in reads the account from.
pub const TEST_ADMIN_HEADER: &str = "x-hubgate-test-admin";

#[derive(Clone, Debug)]
pub struct Admin {
    pub account: String,
    /// The session's CSRF token, which every form carries back.
    pub csrf: String,
}

impl FromRequestParts<ConsoleState> for Admin {
    type Rejection = StatusCode;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let account = parts
            .headers
            .get(TEST_ADMIN_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(StatusCode::UNAUTHORIZED)?;
        Ok(Admin {
            account: account.to_string(),
            csrf: "stand-in".into(),
        })
    }
}
