//! Toolbox › Protocol Logs: a connector's SMTP sessions from the node's SmtpReceive or SmtpSend
//! protocol log, each conversation in order (lines grouped by session id), for a time range and
//! a remote address. The reading is `logs::read::protocol_sessions`, which caps what it returns.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;

use super::tracking::{LogSource, Params, date, paging, param, source, with_page};
use super::view::{Frame, Node};
use super::{PageResult, page};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::logs::protocol::LogKind;
use crate::logs::read::{self, ProtocolQuery, ProtocolSession, Remote};
use crate::ops::{receive_connector, send_connector};

pub const PROTOCOL_LOGS: &str = "/toolbox/protocol-logs";
const SESSION_PAGE_SIZES: &[usize] = &[20, 100, 500];
const LINES_PER_SESSION: usize = 1000;
const KEYS: &[&str] = &["server", "connector", "start", "end", "remote", "size"];

pub fn routes() -> Router<ConsoleState> {
    Router::new().route(PROTOCOL_LOGS, get(logs))
}

/// An entry of the connector list: `receive:<connector-id>` or `send:<name>`, empty after the
/// colon for all of that direction's connectors.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
    /// The connector writes no protocol log (ProtocolLoggingLevel None).
    pub off: bool,
}

pub struct LineView {
    pub time: String,
    pub sequence: u64,
    pub event: String,
    /// What the event means, for readers new to the format.
    pub meaning: &'static str,
    pub data: String,
    pub cut: bool,
    pub context: String,
}

pub struct SessionView {
    pub id: String,
    pub connector: String,
    pub local: String,
    pub remote: String,
    pub lines: Vec<LineView>,
    pub not_shown: u64,
    pub began_earlier: bool,
    pub ended: bool,
}

#[derive(Template)]
#[template(path = "console/protocol_logs.html")]
pub struct LogsPage {
    pub frame: Frame,
    pub servers: Vec<String>,
    pub server: String,
    pub choices: Vec<Choice>,
    pub start: String,
    pub end: String,
    pub remote: String,
    pub size: usize,
    pub sizes: &'static [usize],
    pub unavailable: Option<String>,
    pub note: Option<String>,
    pub errors: Vec<String>,
    pub sessions: Vec<SessionView>,
    pub first: usize,
    pub previous: Option<String>,
    pub next: Option<String>,
}

fn meaning(kind: LogKind, event: &str) -> &'static str {
    match (kind, event) {
        (_, "+") => "Connect",
        (_, "-") => "Disconnect",
        (_, "*") => "Information",
        (LogKind::Receive, ">") => "Sent to the client",
        (LogKind::Receive, "<") => "Received from the client",
        (LogKind::Send, ">") => "Sent to the server",
        (LogKind::Send, "<") => "Received from the server",
        _ => "",
    }
}

fn view(kind: LogKind, s: ProtocolSession) -> SessionView {
    SessionView {
        lines: s
            .lines
            .into_iter()
            .map(|l| LineView {
                time: crate::logs::protocol::timestamp(l.date_time.to_offset(time::UtcOffset::UTC)),
                sequence: l.sequence,
                meaning: meaning(kind, &l.event),
                event: l.event,
                data: l.data,
                cut: l.data_cut,
                context: l.context,
            })
            .collect(),
        id: s.session_id,
        connector: s.connector_id,
        local: s.local_endpoint,
        remote: s.remote_endpoint,
        not_shown: s.lines_not_shown,
        began_earlier: s.began_earlier,
        ended: s.ended,
    }
}

async fn logs(State(st): State<ConsoleState>, admin: Admin, Query(p): Query<Params>) -> PageResult {
    let LogSource {
        servers,
        server,
        dir,
    } = source(&st, param(&p, "server"), "protocol log").await?;
    let mut errors = Vec::new();
    let chosen = match param(&p, "connector") {
        "" => "receive:",
        v => v,
    };
    let (kind, connector) = match chosen.split_once(':') {
        Some(("receive", c)) => (LogKind::Receive, c),
        Some(("send", c)) => (LogKind::Send, c),
        _ => {
            errors.push(format!(
                "Connector: \"{chosen}\" is not one of the listed connectors."
            ));
            (LogKind::Receive, "")
        }
    };
    if connector.chars().count() > super::tracking::MAX_INPUT {
        errors.push("Connector: the name is too long.".into());
    }
    let remote = match param(&p, "remote") {
        "" => None,
        v => match v.parse::<Remote>() {
            Ok(r) => Some(r),
            Err(()) => {
                errors.push(format!(
                    "Remote address: \"{}\" is not an IP address (such as 192.0.2.7 or 192.0.2.7:25).",
                    v.chars().take(100).collect::<String>()
                ));
                None
            }
        },
    };
    let start = date(&p, "start", "Start", &mut errors);
    let end = date(&p, "end", "End", &mut errors);
    let (number, size, skip) = paging(&p, SESSION_PAGE_SIZES, read::MAX_SKIP, &mut errors);

    // The connectors to pick from, with whether each logs at all.
    let mut tx = st.pool.begin().await?;
    let receive = receive_connector::on_server(
        receive_connector::get(&mut tx, &st.server, None, true).await?,
        Some(&server),
    );
    let send = send_connector::get(&mut tx, None, true).await?;
    drop(tx);
    let mut choices = vec![Choice {
        value: "receive:".into(),
        label: "All Receive connectors".into(),
        selected: chosen == "receive:",
        off: false,
    }];
    let mut note = None;
    for c in &receive {
        let value = format!("receive:{}", c.identity());
        let selected = value.eq_ignore_ascii_case(chosen);
        let off = !c.protocol_logging();
        if selected && off {
            note = Some(format!(
                "Protocol logging is off on the Receive connector {} (ProtocolLoggingLevel None): its new sessions are not logged.",
                c.identity()
            ));
        }
        choices.push(Choice {
            label: format!("Receive: {}", c.identity()),
            value,
            selected,
            off,
        });
    }
    choices.push(Choice {
        value: "send:".into(),
        label: "All Send connectors".into(),
        selected: chosen == "send:",
        off: false,
    });
    for c in &send {
        let value = format!("send:{}", c.name);
        let selected = value.eq_ignore_ascii_case(chosen);
        let off = !c.protocol_logging_level.eq_ignore_ascii_case("Verbose");
        if selected && off {
            note = Some(format!(
                "Protocol logging is off on the Send connector {} (ProtocolLoggingLevel None): its new sessions are not logged.",
                c.name
            ));
        }
        choices.push(Choice {
            label: format!("Send: {}", c.name),
            value,
            selected,
            off,
        });
    }
    if !choices.iter().any(|c| c.selected) && errors.is_empty() {
        // A connector removed since its sessions were logged: still searchable by URL.
        choices.push(Choice {
            value: chosen.to_string(),
            label: chosen.to_string(),
            selected: true,
            off: false,
        });
    }

    let mut sessions = Vec::new();
    let (mut previous, mut next) = (None, None);
    if let (Ok(dir), true) = (&dir, errors.is_empty()) {
        let q = ProtocolQuery {
            kind,
            connector: (!connector.is_empty()).then(|| connector.to_string()),
            remote,
            start,
            end,
            skip,
            max_sessions: size,
            max_lines_per_session: LINES_PER_SESSION,
        };
        let dir = dir.clone();
        let found = tokio::task::spawn_blocking(move || read::protocol_sessions(&dir, &q))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        match found {
            Ok(found) => {
                if number > 1 {
                    previous = Some(format!(
                        "{PROTOCOL_LOGS}?{}",
                        with_page(&p, KEYS, number - 1)
                    ));
                }
                if found.more {
                    next = Some(format!(
                        "{PROTOCOL_LOGS}?{}",
                        with_page(&p, KEYS, number + 1)
                    ));
                }
                sessions = found.sessions.into_iter().map(|s| view(kind, s)).collect();
            }
            Err(e) => errors.push(format!("The protocol log could not be read: {e}")),
        }
    }
    page(&LogsPage {
        frame: Frame::new(&admin, Node::Toolbox, "Protocol Logs"),
        servers,
        server,
        choices,
        start: param(&p, "start").to_string(),
        end: param(&p, "end").to_string(),
        remote: param(&p, "remote").to_string(),
        size,
        sizes: SESSION_PAGE_SIZES,
        unavailable: dir.err(),
        note,
        errors,
        first: skip + 1,
        sessions,
        previous,
        next,
    })
}
