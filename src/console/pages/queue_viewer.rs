//! Toolbox › Queue Viewer, the Queues tab: every queue of this server as Get-Queue lists it
//! (delivery queues, Shadow Redundancy queues, Submission, Unreachable, Poison) and the queue
//! actions, each the typed queue command Suspend-/Resume-/Retry-Queue sends, or for "Remove
//! messages" the one filtered Remove-Message command the shell sends for a queue's messages.

use askama::Template;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use time::OffsetDateTime;

use super::view::{Action, Frame, Link, Node};
use super::{FormData, PageResult, page, see_other, seg};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::transport::queue::ops::command::{self, Verb};
use crate::transport::queue::ops::{
    self, MessageFilter, QueueCommand, QueueError, QueueIdentity, QueueInfo, QueueName,
};

pub const QUEUES: &str = "/toolbox/queue-viewer";
pub const MESSAGES: &str = "/toolbox/queue-viewer/messages";
const QUEUE_ACTION: &str = "/toolbox/queue-viewer/queue-action";

pub fn routes() -> axum::Router<ConsoleState> {
    axum::Router::new()
        .route(QUEUES, get(queues))
        .route(QUEUE_ACTION, post(queue_action))
        .merge(super::queue_messages::routes())
}

/// A time as the viewer shows it (UTC, to the second); empty when there is none.
pub fn when(t: Option<OffsetDateTime>) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.and_then(|t| t.to_offset(time::UtcOffset::UTC).format(fmt).ok())
        .map(|s| format!("{s} UTC"))
        .unwrap_or_default()
}

/// The auto-refresh choice (off, 5 s, 30 s): anything else is off.
pub fn refresh_of(form: &FormData) -> u32 {
    match form.one("refresh") {
        Some("5") => 5,
        Some("30") => 30,
        _ => 0,
    }
}

/// The two tabs, with the current one marked.
pub fn tabs(messages: bool) -> Vec<Link> {
    vec![
        Link::new("Queues", QUEUES, !messages),
        Link::new("Messages", MESSAGES, messages),
    ]
}

pub struct QueueRowView {
    pub identity: String,
    pub href: String,
    pub selected: bool,
    pub next_hop_domain: String,
    pub delivery_type: String,
    pub status: String,
    pub message_count: i64,
    pub next_retry_time: String,
    pub last_retry_time: String,
    pub last_error: String,
}

#[derive(Template)]
#[template(path = "console/queue_viewer.html")]
pub struct QueuesPage {
    pub frame: Frame,
    pub rows: Vec<QueueRowView>,
    pub error: Option<String>,
    pub refresh: u32,
    pub selected: String,
}

fn action_url(queue: &str, verb: &str) -> String {
    format!("{QUEUE_ACTION}?queue={}&do={verb}", seg(queue))
}

/// The actions the EMC offers on a queue; Resubmit only where Retry-Queue -Resubmit is meant.
fn queue_actions(q: &QueueInfo) -> Vec<Action> {
    let id = q.identity.to_string();
    let mut items = vec![
        Action::get("View Messages", format!("{MESSAGES}?queue={}", seg(&id))),
        Action::post("Suspend", action_url(&id, "suspend")),
        Action::post("Resume", action_url(&id, "resume")),
        Action::post("Retry", action_url(&id, "retry")),
        Action::post(
            "Remove messages (with NDR)",
            action_url(&id, "remove-with-ndr"),
        ),
        Action::post(
            "Remove messages (without sending NDR)",
            action_url(&id, "remove-without-ndr"),
        ),
    ];
    if matches!(q.identity.queue, QueueName::Unreachable | QueueName::Poison) {
        items.push(Action::post("Resubmit", action_url(&id, "resubmit")));
    }
    items
}

async fn render(
    st: &ConsoleState,
    admin: &Admin,
    selected: &str,
    refresh: u32,
    error: Option<String>,
) -> PageResult {
    // In the gateway, the counts its queue manager keeps; a console built by hand (tests)
    // counts in PostgreSQL.
    let list = match &st.live {
        Some(live) => {
            let held = live.queues.held_per_queue();
            ops::list_queues_held(&st.pool, &st.server, &held).await
        }
        None => ops::list_queues(&st.pool, &st.server).await,
    }
    .map_err(op_error)?;
    let mut frame = Frame::new(admin, Node::Toolbox, "Queue Viewer").tabs(tabs(false));
    if let Some(q) = list
        .iter()
        .find(|q| q.identity.to_string().eq_ignore_ascii_case(selected))
    {
        frame = frame.actions(q.identity.to_string(), queue_actions(q));
    }
    let rows = list
        .into_iter()
        .map(|q| {
            let identity = q.identity.to_string();
            QueueRowView {
                href: format!("{QUEUES}?selected={}", seg(&identity)),
                selected: identity.eq_ignore_ascii_case(selected),
                identity,
                next_hop_domain: q.next_hop_domain,
                delivery_type: q.delivery_type,
                status: q.status.to_string(),
                message_count: q.message_count,
                next_retry_time: when(q.next_retry_time),
                last_retry_time: when(q.last_retry_time),
                last_error: q.last_error.unwrap_or_default(),
            }
        })
        .collect();
    page(&QueuesPage {
        frame,
        rows,
        error,
        refresh,
        selected: selected.to_string(),
    })
}

/// A read that failed: the operation's own words, as a page error.
pub fn op_error(e: QueueError) -> super::PageError {
    match e {
        QueueError::Db(e) => super::PageError::Db(e),
        e => super::PageError::Op(crate::ops::OpError::Invalid {
            param: None,
            message: e.to_string(),
        }),
    }
}

async fn queues(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(q): Query<FormData>,
) -> PageResult {
    let selected = q.one("selected").unwrap_or("").to_string();
    render(&st, &admin, &selected, refresh_of(&q), None).await
}

/// Runs one queue action; the refusal (or the failure) in the operation's words.
async fn run_queue_action(st: &ConsoleState, queue: &str, verb: &str) -> Result<(), QueueError> {
    let cmd = |v: Verb, flag: bool| QueueCommand::parse(v, queue, &st.server, flag);
    let command = match verb {
        "suspend" => cmd(Verb::SuspendQueue, false)?,
        "resume" => cmd(Verb::ResumeQueue, false)?,
        "retry" => cmd(Verb::RetryQueue, false)?,
        "resubmit" => cmd(Verb::RetryQueue, true)?,
        "remove-with-ndr" | "remove-without-ndr" => {
            let id = QueueIdentity::parse(queue, &st.server)?;
            let ids: Vec<_> =
                ops::list_messages(&st.pool, &st.server, MessageFilter::Queue(&id.to_string()))
                    .await?
                    .into_iter()
                    .map(|e| e.identity)
                    .collect();
            return super::queue_messages::batch(
                st,
                Verb::RemoveMessage,
                &ids,
                verb == "remove-with-ndr",
            )
            .await;
        }
        other => {
            return Err(QueueError::Failed(format!(
                "\"{other}\" is not an action of the Queue Viewer."
            )));
        }
    };
    command::execute(&st.pool, &command).await?;
    Ok(())
}

async fn queue_action(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(q): Query<FormData>,
) -> PageResult {
    let queue = q.one("queue").unwrap_or("").to_string();
    let verb = q.one("do").unwrap_or("");
    match run_queue_action(&st, &queue, verb).await {
        Ok(()) => see_other(&format!("{QUEUES}?selected={}", seg(&queue))),
        Err(QueueError::Db(e)) => Err(e.into()),
        Err(e) => render(&st, &admin, &queue, 0, Some(e.to_string())).await,
    }
}
