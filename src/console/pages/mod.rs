//! The console's pages. A stand-in until the EMC frame lands: a landing page for the signed-in
//! administrator, listing this server's receive connectors.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::session::Admin;
use super::state::ConsoleState;
use crate::org::ReceiveConnector;

pub fn routes() -> Router<ConsoleState> {
    Router::new().route("/", get(landing))
}

#[derive(Template, WebTemplate)]
#[template(path = "console/landing.html")]
struct Landing {
    account: String,
    csrf: String,
    server: String,
    connectors: Vec<String>,
}

async fn landing(State(state): State<ConsoleState>, admin: Admin) -> Response {
    let connectors = match ReceiveConnector::load_for_server(&state.pool, &state.server).await {
        Ok(cs) => cs.into_iter().map(|c| c.name).collect(),
        Err(e) => {
            tracing::error!("console: {e}");
            Vec::new()
        }
    };
    Landing {
        account: admin.account,
        csrf: admin.csrf,
        server: state.server.clone(),
        connectors,
    }
    .into_response()
}
