//! The browser console: the EMC frame, lists and property pages (`pages`), behind a session.

pub mod pages;
pub mod session;
pub mod state;

use axum::Router;
use axum::routing::get;
use tokio::task::JoinHandle;

pub async fn spawn(bind: &str, pool: sqlx::PgPool) -> anyhow::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("console cannot listen on {bind}: {e}"))?;
    let app = Router::new()
        .route("/healthz", get(health))
        .with_state(pool);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("console: {e}");
        }
    }))
}

async fn health(
    axum::extract::State(pool): axum::extract::State<sqlx::PgPool>,
) -> (axum::http::StatusCode, &'static str) {
    match sqlx::query("SELECT 1").execute(&pool).await {
        Ok(_) => (axum::http::StatusCode::OK, "ok\n"),
        Err(_) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable\n",
        ),
    }
}
