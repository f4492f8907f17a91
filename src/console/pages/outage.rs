//! Toolbox › Outage: each failing next hop, what it holds and since when, the last error, when
//! the senders get their delay DSN and when the first message expires; Suspend, and "Resume at N
//! messages per minute" to release the backlog gradually once the next hop is back. Read and
//! acted on through the queue operations the shell runs (`ops::outage`, `ops::command`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Form, Router};
use time::OffsetDateTime;

use super::view::{Frame, Node};
use super::{FormData, PageResult, see_other};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::transport::queue::ops::QueueError;
use crate::transport::queue::ops::command::{self, QueueCommand, Verb};
use crate::transport::queue::ops::outage::{self, Outage};
use crate::transport::queue::ops::rate::ReleaseRate;

pub const OUTAGE: &str = "/toolbox/outage";

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route(OUTAGE, get(view))
        .route("/toolbox/outage/suspend", post(suspend))
        .route("/toolbox/outage/resume", post(resume))
}

/// One failing next hop as the page shows it.
pub struct Row {
    pub identity: String,
    pub next_hop_domain: String,
    pub delivery_type: String,
    pub status: String,
    pub suspended: bool,
    pub failing_since: String,
    pub messages: i64,
    pub recipients: i64,
    pub oldest_age: String,
    pub last_error: String,
    pub next_retry: String,
    pub delay_dsn: String,
    pub expiry: String,
    pub rate: String,
}

#[derive(askama::Template)]
#[template(path = "console/outage.html")]
pub struct OutagePage {
    pub frame: Frame,
    pub rows: Vec<Row>,
    pub error: Option<String>,
    /// The rate the form showed when it was refused, to correct in place.
    pub typed: String,
    pub typed_for: String,
}

/// `2026-12-02 07:30:05 UTC`: the console's times are the database's, in UTC.
fn when(t: Option<OffsetDateTime>) -> String {
    t.map(|t| {
        let t = t.to_offset(time::UtcOffset::UTC);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    })
    .unwrap_or_default()
}

/// A span as an administrator reads it: `45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
fn span(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A time to come, with how far off it is (or that it is due).
fn ahead(t: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    match t {
        None => "—".into(),
        Some(t) if t <= now => format!("{} (due)", when(Some(t))),
        Some(t) => format!("{} (in {})", when(Some(t)), span(t - now)),
    }
}

fn row(o: Outage, now: OffsetDateTime) -> Row {
    Row {
        identity: o.identity.to_string(),
        next_hop_domain: o.next_hop_domain,
        delivery_type: o.delivery_type,
        status: o.status.to_string(),
        suspended: o.status == crate::transport::queue::QueueStatus::Suspended,
        failing_since: match o.failing_since {
            Some(t) => format!("{} ({} ago)", when(Some(t)), span(now - t)),
            None => "—".into(),
        },
        messages: o.messages,
        recipients: o.recipients,
        oldest_age: o
            .oldest_received
            .map_or_else(|| "—".into(), |t| span(now - t)),
        last_error: o.last_error.unwrap_or_default(),
        next_retry: ahead(o.next_retry_time, now),
        delay_dsn: ahead(o.next_delay_dsn, now),
        expiry: ahead(o.first_expiry, now),
        rate: o
            .messages_per_minute
            .map_or_else(String::new, |r| format!("{r} per minute")),
    }
}

async fn render(
    st: &ConsoleState,
    admin: &Admin,
    error: Option<String>,
    typed: (&str, &str),
) -> PageResult {
    let mut conn = st.pool.acquire().await?;
    let (rows, error) = match outage::list_outages(&mut conn, &st.server).await {
        Ok(found) => {
            let now = OffsetDateTime::now_utc();
            (found.into_iter().map(|o| row(o, now)).collect(), error)
        }
        Err(e) => (vec![], Some(e.to_string())),
    };
    let refused = error.is_some();
    let mut resp = super::page(&OutagePage {
        frame: Frame::new(admin, Node::Toolbox, "Outage"),
        rows,
        error,
        typed: typed.1.to_string(),
        typed_for: typed.0.to_string(),
    })?;
    if refused {
        // A refused action shows the page again with the reason, and nothing was changed.
        *resp.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(resp.into_response())
}

async fn view(State(st): State<ConsoleState>, admin: Admin) -> PageResult {
    render(&st, &admin, None, ("", "")).await
}

/// Checks and runs one queue command as the shell would; the refusal's text on failure.
async fn run(st: &ConsoleState, cmd: Result<QueueCommand, QueueError>) -> Result<(), String> {
    let cmd = cmd.map_err(|e| e.to_string())?;
    command::execute(&st.pool, &cmd)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn suspend(
    State(st): State<ConsoleState>,
    admin: Admin,
    Form(form): Form<FormData>,
) -> PageResult {
    let identity = form.one("identity").unwrap_or_default();
    let cmd = QueueCommand::parse(Verb::SuspendQueue, identity, &st.server, false);
    match run(&st, cmd).await {
        Ok(()) => see_other(OUTAGE),
        Err(e) => render(&st, &admin, Some(e), ("", "")).await,
    }
}

async fn resume(
    State(st): State<ConsoleState>,
    admin: Admin,
    Form(form): Form<FormData>,
) -> PageResult {
    let identity = form.one("identity").unwrap_or_default();
    let typed = form.one("rate").unwrap_or_default();
    let cmd = ReleaseRate::parse(typed)
        .and_then(|rate| QueueCommand::resume_at_rate(identity, &st.server, rate));
    match run(&st, cmd).await {
        Ok(()) => see_other(OUTAGE),
        Err(e) => render(&st, &admin, Some(e), (identity, typed)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_an_administrator_says_them() {
        assert_eq!(span(time::Duration::seconds(45)), "45 s");
        assert_eq!(span(time::Duration::seconds(750)), "12 min");
        assert_eq!(span(time::Duration::seconds(3 * 3600 + 300)), "3 h 5 min");
        assert_eq!(
            span(time::Duration::seconds(2 * 86_400 + 4 * 3600)),
            "2 d 4 h"
        );
        assert_eq!(span(time::Duration::seconds(-5)), "0 s");
    }
}
