//! The queue cmdlets (reference §6.2) over `transport::queue::ops`, and Get-MessageTrackingLog
//! over `logs::tracking` (§8.2); one declarative entry each: the name, what it does, and its
//! parameter table.

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::bind::{Arg, Bound, Param, Ty, at, m, p};
use super::{Obj, Shell, ShellError};
use crate::logs::tracking::{self, TrackingQuery};
use crate::transport::queue::ops::command::{self, Applied, QueueCommand, Verb};
use crate::transport::queue::ops::filter::{self as qfilter};
use crate::transport::queue::ops::rate::ReleaseRate;
use crate::transport::queue::ops::{self, MessageFilter};

/// What a queue cmdlet does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    GetQueue,
    SuspendQueue,
    ResumeQueue,
    RetryQueue,
    GetMessage,
    SuspendMessage,
    ResumeMessage,
    RemoveMessage,
    ExportMessage,
    AssembleMessage,
    GetMessageTrackingLog,
}

pub struct Cmdlet {
    pub name: &'static str,
    pub op: Op,
    pub params: &'static [Param],
}

const ID: Param = at(p("Identity", Ty::Identity), 0);
const ID_M: Param = at(m("Identity", Ty::Identity), 0);
const SERVER: Param = p("Server", Ty::Str);
// The OPATH text, in braces or quotes; `ops::filter` parses it.
const FILTER: Param = p("Filter", Ty::Str);
// The actions take -Identity or -Filter (Exchange's two parameter sets), so neither is
// mandatory to the binder; `target` asks for one.
const ID_OR_FILTER: Param = ID;

pub const CMDLETS: &[Cmdlet] = &[
    Cmdlet {
        name: "Get-Queue",
        op: Op::GetQueue,
        params: &[
            ID,
            SERVER,
            FILTER,
            p("Include", Ty::Unsupported),
            p("Exclude", Ty::Unsupported),
            p("SortOrder", Ty::Unsupported),
            p("ResultSize", Ty::Int),
        ],
    },
    Cmdlet {
        name: "Suspend-Queue",
        op: Op::SuspendQueue,
        params: &[ID_OR_FILTER, SERVER, FILTER],
    },
    Cmdlet {
        name: "Resume-Queue",
        op: Op::ResumeQueue,
        // -MessagesPerMinute is hubgate's: a controlled release after an outage.
        params: &[
            ID_OR_FILTER,
            SERVER,
            FILTER,
            p("MessagesPerMinute", Ty::Str),
        ],
    },
    Cmdlet {
        name: "Retry-Queue",
        op: Op::RetryQueue,
        params: &[ID_OR_FILTER, p("Resubmit", Ty::Bool), SERVER, FILTER],
    },
    Cmdlet {
        name: "Get-Message",
        op: Op::GetMessage,
        params: &[
            ID,
            // A queue object binds here by name in Exchange; hubgate's pipeline binds to
            // -Identity, and Get-Message reads a queue object there as -Queue.
            p("Queue", Ty::Identity),
            SERVER,
            p("IncludeRecipientInfo", Ty::Switch),
            FILTER,
            p("SortOrder", Ty::List),
            p("ResultSize", Ty::Int),
            p("BookmarkObject", Ty::Identity),
            p("IncludeBookmark", Ty::Bool),
        ],
    },
    Cmdlet {
        name: "Suspend-Message",
        op: Op::SuspendMessage,
        params: &[ID_OR_FILTER, SERVER, FILTER],
    },
    Cmdlet {
        name: "Resume-Message",
        op: Op::ResumeMessage,
        params: &[ID_OR_FILTER, SERVER, FILTER],
    },
    Cmdlet {
        name: "Remove-Message",
        op: Op::RemoveMessage,
        params: &[ID_OR_FILTER, p("WithNDR", Ty::Bool), SERVER, FILTER],
    },
    Cmdlet {
        name: "Export-Message",
        op: Op::ExportMessage,
        // -Path is hubgate's shortcut for Exchange's `Export-Message | AssembleMessage -Path`.
        params: &[ID_M, p("Path", Ty::Str), SERVER],
    },
    Cmdlet {
        name: "AssembleMessage",
        op: Op::AssembleMessage,
        params: &[m("Identity", Ty::Identity), at(m("Path", Ty::Str), 0)],
    },
    Cmdlet {
        name: "Get-MessageTrackingLog",
        op: Op::GetMessageTrackingLog,
        params: &[
            p("Sender", Ty::Str),
            p("Recipients", Ty::List),
            p("EventId", Ty::Str),
            p("MessageId", Ty::Str),
            p("InternalMessageId", Ty::Str),
            p("Start", Ty::Str),
            p("End", Ty::Str),
            p("ResultSize", Ty::Int),
            SERVER,
            p("MessageSubject", Ty::Unsupported),
            p("Reference", Ty::Unsupported),
        ],
    },
];

pub fn find(name: &str) -> Option<&'static Cmdlet> {
    CMDLETS.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

pub(super) fn server_of(sh: &Shell, b: &Bound) -> String {
    b.str("Server").unwrap_or_else(|| sh.server.clone())
}

pub(super) fn wrong_input(cmdlet: &str) -> ShellError {
    ShellError::BadPipelineInput(cmdlet.to_string())
}

/// A queue identity from text or a Get-Queue object.
fn queue_id(a: &Arg, cmdlet: &str) -> Result<String, ShellError> {
    match a {
        Arg::Str(s) => Ok(s.clone()),
        Arg::Obj(Obj::Queue(q)) => Ok(q.identity.to_string()),
        _ => Err(wrong_input(cmdlet)),
    }
}

/// A message identity from text or a Get-Message object.
pub(super) fn message_id(a: &Arg, cmdlet: &str) -> Result<String, ShellError> {
    match a {
        Arg::Str(s) => Ok(s.clone()),
        Arg::Obj(Obj::Message(m)) => Ok(m.identity.to_string()),
        _ => Err(wrong_input(cmdlet)),
    }
}

pub(super) fn whatif(b: &Bound, text: &mut String, action: String) -> bool {
    if b.switch("WhatIf") {
        text.push_str(&format!("What if: {action}.\n"));
        return true;
    }
    false
}

/// Queue commands for the queue manager of the server they name, one per identity. All are
/// checked in the line's transaction first (so -WhatIf refuses what the real run would refuse,
/// and one bad target stops the line before any is sent), then run outside it: the manager
/// applies each as soon as it is recorded, and a later failing stage cannot take it back.
pub(super) async fn commands(
    sh: &mut Shell,
    tx: &mut PgConnection,
    server: &str,
    verb: Verb,
    identities: &[String],
    flag: bool,
    whatif: bool,
) -> Result<(), ShellError> {
    let make = |identity: &str, local: &str| QueueCommand::parse(verb, identity, local, flag);
    commands_of(sh, tx, server, identities, make, whatif).await
}

/// `commands`, each identity's command made by `make` (identity, this server's name).
async fn commands_of(
    sh: &mut Shell,
    tx: &mut PgConnection,
    server: &str,
    identities: &[String],
    make: impl Fn(&str, &str) -> Result<QueueCommand, ops::QueueError>,
    whatif: bool,
) -> Result<(), ShellError> {
    let local = ops::resolve_server(&mut *tx, server).await?;
    let mut prepared = Vec::with_capacity(identities.len());
    for identity in identities {
        let cmd = make(identity, &local)?;
        prepared.push(command::prepare(&mut *tx, &cmd).await?);
    }
    if whatif {
        return Ok(());
    }
    for p in &prepared {
        let reply = command::submit(&sh.pool, p).await?;
        if reply.applied != Applied::Now {
            sh.warnings.push(reply.to_string());
        }
    }
    Ok(())
}

/// What an action cmdlet acts on: its -Identity, or every object its -Filter matches (`None`
/// when the filter is given).
fn target<'a>(b: &'a Bound, name: &str) -> Result<Option<&'a Arg>, ShellError> {
    match (b.get("Identity"), b.str("Filter")) {
        (Some(_), Some(_)) => Err(ShellError::Parse(format!(
            "Parameter set cannot be resolved using the specified named parameters: give {name} -Identity or -Filter, not both."
        ))),
        (Some(a), None) => Ok(Some(a)),
        (None, Some(_)) => Ok(None),
        (None, None) => Err(ShellError::MissingMandatory("Identity".into())),
    }
}

pub(super) fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

fn data_dir(sh: &Shell) -> Result<&std::path::Path, ShellError> {
    sh.data_dir.as_deref().ok_or_else(|| {
        ShellError::Parse(
            "The shell doesn't know the gateway's data directory (HUBGATE_DATA_DIR), so it can't read the spool.".into(),
        )
    })
}

pub async fn run(
    sh: &mut Shell,
    tx: &mut PgConnection,
    c: &Cmdlet,
    b: &Bound,
    text: &mut String,
) -> Result<Vec<Obj>, ShellError> {
    let name = c.name;
    let server = server_of(sh, b);
    let identity = b.get("Identity");
    match c.op {
        Op::GetQueue => {
            let limit = page_size(b)?;
            let mut queues = match (identity, b.str("Filter")) {
                (Some(_), Some(_)) => {
                    return Err(ShellError::Parse(
                        "Parameter set cannot be resolved using the specified named parameters: give Get-Queue -Identity or -Filter, not both.".into(),
                    ));
                }
                (None, Some(f)) => {
                    let f = qfilter::parse_queue_filter(&f)?;
                    qfilter::filter_queues(&mut *tx, &server, &f).await?
                }
                (None, None) => ops::list_queues(&mut *tx, &server).await?,
                (Some(a), None) => {
                    vec![ops::get_queue(&mut *tx, &server, &queue_id(a, name)?).await?]
                }
            };
            // A server has a handful of queues: cutting the list here costs nothing.
            if let Some(n) = limit
                && queues.len() > n as usize
            {
                queues.truncate(n as usize);
                sh.warnings.push(more_results(b));
            }
            Ok(queues.into_iter().map(Obj::Queue).collect())
        }
        Op::SuspendQueue | Op::ResumeQueue | Op::RetryQueue => {
            let resubmit = matches!(b.get("Resubmit"), Some(Arg::Bool(true)));
            // Checked before anything is looked up or changed.
            let rate = b
                .str("MessagesPerMinute")
                .map(|t| ReleaseRate::parse(&t))
                .transpose()?;
            let (verb, action, done) = match c.op {
                Op::SuspendQueue => (Verb::SuspendQueue, "Suspending", "Suspended"),
                Op::ResumeQueue => (Verb::ResumeQueue, "Resuming", "Resumed"),
                _ if resubmit => (
                    Verb::RetryQueue,
                    "Resubmitting the messages of",
                    "Resubmitted the messages of",
                ),
                _ => (Verb::RetryQueue, "Retrying", "Retried"),
            };
            let ids = match target(b, name)? {
                Some(a) => vec![queue_id(a, name)?],
                None => {
                    let f = qfilter::parse_queue_filter(&b.str("Filter").unwrap_or_default())?;
                    qfilter::filter_queues(&mut *tx, &server, &f)
                        .await?
                        .into_iter()
                        .map(|q| q.identity.to_string())
                        .collect()
                }
            };
            let whatif_any = b.switch("WhatIf");
            for id in &ids {
                whatif(b, text, format!("{action} queue \"{id}\""));
            }
            match rate {
                Some(r) => {
                    let make = |id: &str, local: &str| QueueCommand::resume_at_rate(id, local, r);
                    commands_of(sh, tx, &server, &ids, make, whatif_any).await?
                }
                None => commands(sh, tx, &server, verb, &ids, resubmit, whatif_any).await?,
            }
            if b.get("Identity").is_none() && !whatif_any {
                text.push_str(&format!(
                    "{done} {} matching the filter.\n",
                    plural(ids.len(), "queue")
                ));
            }
            Ok(vec![])
        }
        Op::GetMessage => {
            let queue = match (identity, b.get("Queue")) {
                (Some(_), Some(_)) => {
                    return Err(ShellError::Parse(
                        "Parameter set cannot be resolved using the specified named parameters: give -Identity or -Queue, not both.".into(),
                    ));
                }
                (Some(Arg::Obj(Obj::Queue(q))), None) => Some(q.identity.to_string()),
                (None, Some(a)) => Some(queue_id(a, name)?),
                _ => None,
            };
            let message = match (&queue, identity) {
                (None, Some(a)) => Some(message_id(a, name)?),
                _ => None,
            };
            let filter = match (&queue, &message) {
                (Some(q), _) => MessageFilter::Queue(q),
                (None, Some(m)) => MessageFilter::Message(m),
                (None, None) => MessageFilter::All,
            };
            let page = message_page(b, name)?;
            let (found, more) = match b.str("Filter") {
                Some(f) => {
                    // The filter is evaluated over the loaded rows (transport::queue::ops::filter),
                    // so it pages by cutting, without a sort order or a bookmark of its own.
                    if page.bookmark.is_some() || !page.order.is_empty() {
                        return Err(ShellError::Parse(format!(
                            "{name}: -Filter cannot be combined with -SortOrder or -BookmarkObject yet; page by -Identity or -Queue instead."
                        )));
                    }
                    let f = qfilter::parse_message_filter(&f)?;
                    let mut all = qfilter::filter_messages(&mut *tx, &server, filter, &f).await?;
                    let more = page.limit.is_some_and(|n| all.len() > n as usize);
                    if let Some(n) = page.limit {
                        all.truncate(n as usize);
                    }
                    (all, more)
                }
                None => ops::list_messages_page(&mut *tx, &server, filter, &page).await?,
            };
            if more {
                sh.warnings.push(more_results(b));
            }
            Ok(found.into_iter().map(Obj::Message).collect())
        }
        Op::SuspendMessage | Op::ResumeMessage | Op::RemoveMessage => {
            let (by_filter, ids) = match target(b, name)? {
                Some(a) => (false, vec![message_id(a, name)?]),
                None => {
                    let f = qfilter::parse_message_filter(&b.str("Filter").unwrap_or_default())?;
                    let mut ids: Vec<String> =
                        qfilter::filter_messages(&mut *tx, &server, MessageFilter::All, &f)
                            .await?
                            .into_iter()
                            .map(|m| m.identity.to_string())
                            .collect();
                    ids.dedup();
                    (true, ids)
                }
            };
            super::queue_action::message_action(sh, tx, c, b, &ids, by_filter, text).await?;
            Ok(vec![])
        }
        Op::ExportMessage => {
            let id = message_id(identity.ok_or_else(|| wrong_input(name))?, name)?;
            let dir = data_dir(sh)?.to_path_buf();
            match b.str("Path") {
                Some(path) => {
                    if whatif(b, text, format!("Exporting message \"{id}\" to \"{path}\"")) {
                        // Still refuse what the real run would refuse.
                        ops::read_message(&mut *tx, &server, &dir, &id).await?;
                    } else {
                        ops::export_message(&mut *tx, &server, &dir, &id, path.as_ref()).await?;
                    }
                    Ok(vec![])
                }
                None => {
                    let (identity, bytes) = ops::read_message(&mut *tx, &server, &dir, &id).await?;
                    Ok(vec![Obj::ExportedMessage {
                        identity: identity.to_string(),
                        bytes,
                    }])
                }
            }
        }
        Op::GetMessageTrackingLog => {
            // Each node keeps its own log files; this shell reads the local node's only.
            if let Some(other) = b.str("Server") {
                let short = crate::org::bootstrap::server_name_from_fqdn(&other);
                if !short.eq_ignore_ascii_case(&sh.server) {
                    return Err(ShellError::Parse(format!(
                        "The message tracking log of \"{other}\" is on that server; run Get-MessageTrackingLog there."
                    )));
                }
            }
            let q = tracking_query(b)?;
            let dir = data_dir(sh)?.to_path_buf();
            let found = tokio::task::spawn_blocking(move || tracking::search(&dir, &q))
                .await
                .map_err(std::io::Error::other)??;
            Ok(found.into_iter().map(Obj::TrackingEntry).collect())
        }
        Op::AssembleMessage => {
            let Some(Arg::Obj(Obj::ExportedMessage { identity, bytes })) = identity else {
                return Err(wrong_input(name));
            };
            let path = b.str("Path").unwrap_or_default();
            if !whatif(
                b,
                text,
                format!("Writing message \"{identity}\" to \"{path}\""),
            ) {
                tokio::fs::write(&path, bytes).await?;
            }
            Ok(vec![])
        }
    }
}

fn bad_value(param: &str, value: &str, ty: &'static str, hint: &str) -> ShellError {
    ShellError::BadValue {
        param: param.to_string(),
        value: value.to_string(),
        ty,
        hint: hint.to_string(),
    }
}

/// `-ResultSize N|Unlimited` as Exchange's Unlimited[UInt32]: Some(N), None for Unlimited, and
/// Exchange's default of 1000 when it is not given.
fn page_size(b: &Bound) -> Result<Option<u32>, ShellError> {
    match b.get("ResultSize") {
        Some(Arg::Int(Some(n))) => u32::try_from(*n).map(Some).map_err(|_| {
            bad_value(
                "ResultSize",
                &n.to_string(),
                "Microsoft.Exchange.Data.Unlimited[System.UInt32]",
                "Specify a number from 0 to 4294967295, or Unlimited.",
            )
        }),
        Some(Arg::Int(None)) => Ok(None),
        _ => Ok(Some(ops::DEFAULT_RESULT_SIZE)),
    }
}

/// The warning when -ResultSize left messages or queues out (Exchange's wording, as its shell
/// prints it; the reference has no text for it).
fn more_results(b: &Bound) -> String {
    if b.has("ResultSize") {
        "There are more results available than are currently displayed. To view them, increase the value for the ResultSize parameter.".into()
    } else {
        format!(
            "By default, only the first {} items are returned. Use the ResultSize parameter to specify the number of items returned. To return all items, specify \"-ResultSize Unlimited\".",
            ops::DEFAULT_RESULT_SIZE
        )
    }
}

/// Get-Message's -ResultSize, -SortOrder, -BookmarkObject and -IncludeBookmark.
fn message_page(b: &Bound, cmdlet: &str) -> Result<ops::Page, ShellError> {
    let order = match b.get("SortOrder") {
        Some(Arg::List(l)) => ops::parse_sort_order(l)?,
        _ => vec![],
    };
    let bookmark = match b.get("BookmarkObject") {
        None | Some(Arg::Null) => None,
        Some(Arg::Obj(Obj::Message(m))) => Some(m.clone()),
        Some(_) => {
            return Err(ShellError::Parse(format!(
                "{cmdlet}: -BookmarkObject takes a message object from Get-Message (for example $b = Get-Message -Queue HUB1\\3 -ResultSize 100 | Select-Object -Last 1)."
            )));
        }
    };
    let include_bookmark = match b.get("IncludeBookmark") {
        Some(Arg::Bool(v)) => {
            if bookmark.is_none() {
                return Err(ShellError::Parse(format!(
                    "{cmdlet}: -IncludeBookmark needs -BookmarkObject."
                )));
            }
            *v
        }
        // Exchange's default: the page starts at the bookmark.
        _ => true,
    };
    Ok(ops::Page {
        limit: page_size(b)?,
        order,
        bookmark,
        include_bookmark,
        prefilter: None,
        offset: 0,
        skip_attempts: false,
    })
}

fn tracking_query(b: &Bound) -> Result<TrackingQuery, ShellError> {
    let date = |name: &str| -> Result<Option<OffsetDateTime>, ShellError> {
        b.str(name)
            .map(|v| {
                parse_datetime(&v).ok_or_else(|| {
                    bad_value(
                        name,
                        &v,
                        "System.DateTime",
                        "Specify a date such as \"1/25/2019 10:00 AM\", 2019-01-25 or 2019-01-25T10:00:00Z (UTC unless an offset is given).",
                    )
                })
            })
            .transpose()
    };
    let internal_message_id = b
        .str("InternalMessageId")
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                bad_value(
                    "InternalMessageId",
                    &v,
                    "System.String",
                    "An InternalMessageId is a whole number.",
                )
            })
        })
        .transpose()?;
    let result_size = match b.get("ResultSize") {
        Some(Arg::Int(Some(n))) if *n >= 0 => Some(usize::try_from(*n).unwrap_or(usize::MAX)),
        Some(Arg::Int(Some(n))) => {
            return Err(bad_value(
                "ResultSize",
                &n.to_string(),
                "Microsoft.Exchange.Data.Unlimited[System.UInt32]",
                "Specify a positive number or Unlimited.",
            ));
        }
        Some(Arg::Int(None)) => Some(usize::MAX),
        _ => None,
    };
    Ok(TrackingQuery {
        sender: b.str("Sender"),
        recipients: match b.get("Recipients") {
            Some(Arg::List(l)) => l.clone(),
            _ => vec![],
        },
        event_id: b.str("EventId"),
        message_id: b.str("MessageId"),
        internal_message_id,
        start: date("Start")?,
        end: date("End")?,
        result_size,
    })
}

/// The DateTime forms administrators type: en-US as Exchange's shell takes them
/// (`1/25/2019`, `1/25/2019 10:00`, `1/25/2019 10:00:00 PM`) and ISO 8601 (`2019-01-25`,
/// `2019-01-25 10:00`, `2019-01-25T10:00:00Z`, with an offset). Without an offset: UTC, the
/// zone the shell prints and the logs are written in.
pub fn parse_datetime(s: &str) -> Option<OffsetDateTime> {
    use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t);
    }
    let (date, rest) = match s.split_once([' ', 'T']) {
        Some((d, r)) => (d, r.trim()),
        None => (s, ""),
    };
    let (y, mo, d) = if let Some((m, rest)) = date.split_once('/') {
        let (d, y) = rest.split_once('/')?;
        (y, m, d)
    } else {
        let mut it = date.splitn(3, '-');
        (it.next()?, it.next()?, it.next()?)
    };
    let year: i32 = y.parse().ok()?;
    if !(1000..=9999).contains(&year) {
        return None;
    }
    let date = Date::from_calendar_date(
        year,
        Month::try_from(mo.parse::<u8>().ok()?).ok()?,
        d.parse().ok()?,
    )
    .ok()?;
    let rest = rest.trim_end_matches(['Z', 'z']).trim();
    let (clock, ampm) = match rest.rsplit_once(' ') {
        Some((c, ap)) if ap.eq_ignore_ascii_case("AM") || ap.eq_ignore_ascii_case("PM") => {
            (c.trim(), Some(ap.eq_ignore_ascii_case("PM")))
        }
        _ => (rest, None),
    };
    let time = if clock.is_empty() {
        Time::MIDNIGHT
    } else {
        let parts: Vec<&str> = clock.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return None;
        }
        let mut h: u8 = parts[0].parse().ok()?;
        let m: u8 = parts[1].parse().ok()?;
        let sec: u8 = match parts.get(2) {
            Some(x) => x.parse().ok()?,
            None => 0,
        };
        match ampm {
            Some(_) if !(1..=12).contains(&h) => return None,
            Some(true) if h < 12 => h += 12,
            Some(false) if h == 12 => h = 0,
            _ => {}
        }
        Time::from_hms(h, m, sec).ok()?
    };
    Some(PrimitiveDateTime::new(date, time).assume_offset(UtcOffset::UTC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn datetimes() {
        let cases = [
            ("1/25/2019", datetime!(2019-01-25 00:00 UTC)),
            ("1/25/2019 10:05", datetime!(2019-01-25 10:05 UTC)),
            ("01/25/2019 10:05:07 PM", datetime!(2019-01-25 22:05:07 UTC)),
            ("1/25/2019 12:00:00 AM", datetime!(2019-01-25 00:00 UTC)),
            ("1/25/2019 12:30 pm", datetime!(2019-01-25 12:30 UTC)),
            ("2019-01-25", datetime!(2019-01-25 00:00 UTC)),
            ("2019-01-25 10:05", datetime!(2019-01-25 10:05 UTC)),
            ("2019-01-25T10:05:07Z", datetime!(2019-01-25 10:05:07 UTC)),
            (
                "2019-01-25T10:05:07+02:00",
                datetime!(2019-01-25 08:05:07 UTC),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_datetime(text), Some(want), "{text}");
        }
        for bad in [
            "",
            "yesterday",
            "13/1/2019",
            "1/25/19",
            "2019-02-30",
            "1/25/2019 13:00 PM",
            "1/25/2019 10",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_op_has_one_cmdlet() {
        for c in CMDLETS {
            assert_eq!(
                CMDLETS.iter().filter(|x| x.op == c.op).count(),
                1,
                "{}",
                c.name
            );
            assert!(find(&c.name.to_ascii_lowercase()).is_some());
        }
    }
}
