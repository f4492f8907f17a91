//! The EMC frame and every configuration page: the console tree, the result pane's lists and
//! tabs, the action pane, and each object's Properties dialog drawn from its property table
//! (`ops::props`). Pages change objects only through the typed operations (`ops`), one
//! transaction per form, so an operation that fails changes nothing.
//!
//! Every page and selected object has its own URL (GET); every change is a plain HTML form POST
//! that redirects to a GET (so Back and Refresh never resubmit). The server checks the CSRF token
//! these forms carry.

mod antispam;
mod antispam_filters;
mod antispam_import;
mod antispam_providers;
mod certificates;
mod chart;
mod dashboard;
pub mod fields;
mod labels;
mod limits;
mod object;
pub mod org_hub;
mod outage;
mod permissions;
mod protocol_logs;
mod queue_message;
mod queue_messages;
mod queue_viewer;
mod recipients;
pub mod server_hub;
mod tracking;
mod view;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;

use super::state::ConsoleState;
use crate::ops::OpError;

pub use view::{Action, ActionGroup, Frame, Node};

/// The pages, nested at `/` behind the session check.
pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/", get(|| async { Redirect::to(org_hub::DOMAINS) }))
        .merge(org_hub::routes())
        .merge(server_hub::routes())
        .merge(recipients::routes())
        .merge(queue_viewer::routes())
        .merge(tracking::routes())
        .merge(protocol_logs::routes())
        .merge(dashboard::routes())
        .merge(outage::routes())
        .route("/toolbox", get(view::toolbox))
}

/// The routes whose bodies may be larger than a form's (file uploads), each with its own limit.
pub fn upload_routes() -> Router<ConsoleState> {
    antispam_import::upload_routes()
}

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{0}")]
    Op(#[from] OpError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("template: {0}")]
    Template(#[from] askama::Error),
    #[error("There is no such page.")]
    NoPage,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = match &self {
            PageError::Op(OpError::NotFound(_)) | PageError::NoPage => StatusCode::NOT_FOUND,
            PageError::Op(OpError::Db(_)) | PageError::Db(_) | PageError::Template(_) => {
                tracing::error!("console: {self}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            PageError::Op(_) => StatusCode::BAD_REQUEST,
        };
        // The message is plain text: the browser shows it as is, never as markup.
        (status, self.to_string()).into_response()
    }
}

pub type PageResult = Result<Response, PageError>;

/// A rendered page.
pub fn page(t: &impl askama::Template) -> PageResult {
    Ok(Html(t.render()?).into_response())
}

/// After a change: back to a page by GET (303), so a reload does not post again.
pub fn see_other(to: &str) -> PageResult {
    Ok(Redirect::to(to).into_response())
}

/// A form as posted: every name/value pair in order (checkbox groups repeat a name).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Where a form posts: the page's own path and query.
pub fn target(uri: &axum::http::Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string())
}

/// A URL path segment for any name (connector names may hold `/`, `\`, `?` or markup).
pub fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL form of a tab's name ("Address Space" → `address-space`).
pub fn slug(s: &str) -> String {
    s.to_ascii_lowercase().replace(' ', "-")
}
