//! Toolbox › Queue Viewer, the Messages tab: the messages of a queue (or of every queue) that a
//! filter keeps, sorted and paged, and the message actions on a selection or on every message
//! the filter matches, sent as the one filtered Suspend-/Resume-/Remove-Message command the shell
//! sends. The filter is the shell's own OPATH filter: the rows built here become its text and are
//! parsed by it, so a mistake is refused in the shell's words. (Properties and Export Message:
//! queue_message.rs.)

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::routing::{get, post};

use super::queue_viewer::{MESSAGES, refresh_of, tabs, when};
use super::view::{Frame, Node};
use super::{FormData, PageResult, page, see_other, seg};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::ops::filter::{Filter, Kind};
use crate::transport::queue::ops::command::{self, Verb};
use crate::transport::queue::ops::filter::{MESSAGE_SCHEMA, filtered_page_at, matching};
use crate::transport::queue::ops::{
    self, Anchor, MessageFilter, MessageIdentity, MessageInfo, PageRequest, QueueError,
    parse_sort_order,
};

const ACTION: &str = "/toolbox/queue-viewer/messages/action";
/// The query parameter naming a message action still being applied.
const APPLYING: &str = "applying";
const MESSAGE: &str = "/toolbox/queue-viewer/message";
pub(super) const EXPORT: &str = "/toolbox/queue-viewer/export";

/// Create Filter rows a page offers.
const FILTER_ROWS: usize = 3;
const PAGE_SIZES: [usize; 3] = [50, 200, 1000];
/// The operators Create Filter offers, with what they are in OPATH.
const OPERATORS: &[(&str, &str)] = &[
    ("Equals", "-eq"),
    ("Does Not Equal", "-ne"),
    ("Contains", "contains"),
    ("Matches (wildcards)", "-like"),
    ("Does Not Match", "-notlike"),
    ("Greater Than", "-gt"),
    ("Less Than", "-lt"),
];
/// The fields the quick filter box searches.
const QUICK_FIELDS: [&str; 2] = ["FromAddress", "Subject"];
/// The columns, with the Get-Message property each sorts on (None: not sortable).
const COLUMNS: &[(&str, Option<&str>)] = &[
    ("Identity", Some("Identity")),
    ("From Address", Some("FromAddress")),
    ("Status", None),
    ("Size (KB)", Some("Size")),
    ("SCL", None),
    ("Queue ID", None),
    ("Message Source Name", Some("MessageSourceName")),
    ("Source IP", Some("SourceIP")),
    ("Last Error", None),
    ("Subject", Some("Subject")),
    ("Date Received", Some("DateReceived")),
    ("Expiration Time", None),
    ("Internet Message ID", Some("InternetMessageId")),
];

pub fn routes() -> axum::Router<ConsoleState> {
    axum::Router::new()
        .route(MESSAGES, get(messages))
        .route(ACTION, post(action))
        .route(MESSAGE, get(super::queue_message::properties))
        .route(EXPORT, get(super::queue_message::export))
}

/// What the Messages tab shows: every choice lives in its URL.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub queue: String,
    /// Create Filter rows: (field, operator, value).
    pub rows: Vec<(String, String, String)>,
    pub quick_field: String,
    pub quick: String,
    pub sort: String,
    pub size: usize,
    pub offset: usize,
    /// The message the page follows or precedes (set by the Next and Previous links); `offset`
    /// still numbers the page's rows.
    pub anchor: Option<Anchor>,
    pub refresh: u32,
    /// Every checkbox on the page starts checked ("Select all on this page").
    pub check_all: bool,
}

impl View {
    pub fn of(q: &FormData) -> View {
        let text = |n: &str| q.one(n).unwrap_or("").trim().to_string();
        let rows = (0..FILTER_ROWS)
            .map(|i| {
                (
                    text(&format!("f{i}")),
                    text(&format!("o{i}")),
                    text(&format!("v{i}")),
                )
            })
            .collect();
        let size = q
            .one("size")
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|s| PAGE_SIZES.contains(s))
            .unwrap_or(PAGE_SIZES[0]);
        View {
            queue: text("queue"),
            rows,
            quick_field: text("qf"),
            quick: text("q"),
            sort: text("sort"),
            size,
            // An offset that is no number starts at the beginning; a large one shows an empty page.
            offset: q.one("offset").and_then(|s| s.parse().ok()).unwrap_or(0),
            anchor: match (q.one("after"), q.one("before")) {
                (Some(a), _) if !a.trim().is_empty() => Some(Anchor::After(a.trim().to_string())),
                (_, Some(b)) if !b.trim().is_empty() => Some(Anchor::Before(b.trim().to_string())),
                _ => None,
            },
            refresh: refresh_of(q),
            check_all: q.one("check") == Some("all"),
        }
    }

    /// The query string for this view (without the leading `?`).
    pub fn qs(&self) -> String {
        let mut parts = vec![];
        let mut add = |k: &str, v: &str| {
            if !v.is_empty() {
                parts.push(format!("{k}={}", seg(v)));
            }
        };
        add("queue", &self.queue);
        for (i, (f, o, v)) in self.rows.iter().enumerate() {
            if !f.is_empty() {
                add(&format!("f{i}"), f);
                add(&format!("o{i}"), o);
                add(&format!("v{i}"), v);
            }
        }
        add("qf", &self.quick_field);
        add("q", &self.quick);
        add("sort", &self.sort);
        add("size", &self.size.to_string());
        if self.offset > 0 {
            add("offset", &self.offset.to_string());
            match &self.anchor {
                Some(Anchor::After(id)) => add("after", id),
                Some(Anchor::Before(id)) => add("before", id),
                None => {}
            }
        }
        if self.refresh > 0 {
            add("refresh", &self.refresh.to_string());
        }
        parts.join("&")
    }

    fn url(&self) -> String {
        format!("{MESSAGES}?{}", self.qs())
    }

    fn with(&self, change: impl FnOnce(&mut View)) -> String {
        let mut v = self.clone();
        v.check_all = false;
        change(&mut v);
        v.url()
    }

    /// The OPATH text of the Create Filter rows and the quick filter, combined with -and.
    pub fn filter_text(&self) -> String {
        let mut terms: Vec<String> = self
            .rows
            .iter()
            .filter(|(f, _, _)| !f.is_empty())
            .map(|(f, o, v)| term(f, o, v))
            .collect();
        if !self.quick.is_empty() {
            let field = if QUICK_FIELDS.contains(&self.quick_field.as_str()) {
                self.quick_field.as_str()
            } else {
                QUICK_FIELDS[0]
            };
            terms.push(term(field, "contains", &self.quick));
        }
        terms.join(" -and ")
    }

    /// The parsed filter; None when there is none.
    pub fn filter(&self) -> Result<Option<Filter>, QueueError> {
        let text = self.filter_text();
        if text.is_empty() {
            return Ok(None);
        }
        ops::filter::parse_message_filter(&text).map(Some)
    }

    fn scope(&self) -> MessageFilter<'_> {
        if self.queue.is_empty() {
            MessageFilter::All
        } else {
            MessageFilter::Queue(&self.queue)
        }
    }

    fn order(&self) -> Result<Vec<(ops::SortKey, bool)>, QueueError> {
        let sort = if self.sort.is_empty() {
            "+DateReceived"
        } else {
            &self.sort
        };
        parse_sort_order(&[sort.to_string()])
    }
}

/// One comparison in OPATH: the value quoted (a quote doubled) unless a number is compared
/// with a number property; "contains" is -like with wildcards around the value.
fn term(field: &str, op: &str, value: &str) -> String {
    let numeric = MESSAGE_SCHEMA
        .iter()
        .any(|(n, k)| n.eq_ignore_ascii_case(field) && matches!(k, Kind::Num));
    let (op, value) = match op {
        "contains" => ("-like", format!("*{value}*")),
        // An operator the page does not offer is passed on for the filter to refuse by name.
        "" => ("-eq", value.to_string()),
        o => (o, value.to_string()),
    };
    if numeric && value.parse::<f64>().is_ok() {
        format!("{field} {op} {value}")
    } else {
        format!("{field} {op} '{}'", value.replace('\'', "''"))
    }
}

/// A message action on many messages: one command to the queue manager, checked as the shell's
/// filtered actions are.
pub async fn batch(
    st: &ConsoleState,
    verb: Verb,
    ids: &[MessageIdentity],
    with_ndr: bool,
) -> Result<(), QueueError> {
    batch_pending(st, verb, ids, with_ndr).await.map(|_| ())
}

/// `batch`, with the command's number if the gateway is still applying it.
async fn batch_pending(
    st: &ConsoleState,
    verb: Verb,
    ids: &[MessageIdentity],
    with_ndr: bool,
) -> Result<Option<i64>, QueueError> {
    if ids.is_empty() {
        return Ok(None);
    }
    let prepared = {
        let mut conn = st.pool.acquire().await?;
        command::prepare_batch(&mut conn, verb, ids, with_ndr).await?
    };
    Ok(match prepared {
        Some(p) => submit(st, &p).await?,
        None => None,
    })
}

/// Records the command and waits (bounded) for the gateway: the command's number when the wait
/// ended before the gateway finished it, so the page can say how far it got.
async fn submit(st: &ConsoleState, p: &command::Prepared) -> Result<Option<i64>, QueueError> {
    let (id, reply) = command::submit_tracked(&st.pool, p).await?;
    Ok(matches!(reply.applied, command::Applied::Pending).then_some(id))
}

/// "All N matching": the entries just listed are the targets, not read again.
async fn batch_of_entries(
    st: &ConsoleState,
    verb: Verb,
    entries: &[MessageInfo],
    with_ndr: bool,
) -> Result<Option<i64>, QueueError> {
    let prepared = {
        let mut conn = st.pool.acquire().await?;
        command::prepare_batch_of_entries(&mut conn, verb, entries, with_ndr).await?
    };
    Ok(match prepared {
        Some(p) => submit(st, &p).await?,
        None => None,
    })
}

pub struct Header {
    pub label: &'static str,
    /// Where clicking the header sorts to; empty when the column does not sort.
    pub href: String,
    /// ▲ or ▼ on the column the page is sorted by.
    pub mark: &'static str,
}

pub struct MessageRow {
    pub identity: String,
    pub href: String,
    pub cells: Vec<String>,
}

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub struct FilterRow {
    pub index: usize,
    pub fields: Vec<Choice>,
    pub operators: Vec<Choice>,
    pub value: String,
}

#[derive(Template)]
#[template(path = "console/queue_messages.html")]
pub struct MessagesPage {
    pub frame: Frame,
    pub view_queue: String,
    pub headers: Vec<Header>,
    pub rows: Vec<MessageRow>,
    pub total: usize,
    pub first: usize,
    pub last: usize,
    pub prev: String,
    pub next: String,
    pub sizes: Vec<Choice>,
    pub refreshes: Vec<Choice>,
    pub filter_rows: Vec<FilterRow>,
    pub quick_fields: Vec<Choice>,
    pub quick: String,
    pub filter_text: String,
    pub sort: String,
    pub check_all: bool,
    pub check_all_href: String,
    pub action: String,
    pub error: Option<String>,
    /// How far a message action the gateway is still applying has got.
    pub notice: Option<String>,
    pub refresh: u32,
}

fn choices<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>, chosen: &str) -> Vec<Choice> {
    items
        .into_iter()
        .map(|(value, label)| Choice {
            value: value.to_string(),
            label: label.to_string(),
            selected: value == chosen,
        })
        .collect()
}

pub(super) fn kb(size: i64) -> String {
    // Rounded up, as the EMC shows a 1-byte message as 1 KB.
    size.saturating_add(1023).div_euclid(1024).to_string()
}

fn cells(e: &MessageInfo) -> Vec<String> {
    vec![
        e.identity.to_string(),
        e.from_address.clone(),
        e.status.to_string(),
        kb(e.size),
        e.scl.map(|n| n.to_string()).unwrap_or_default(),
        e.queue.to_string(),
        e.message_source_name.clone(),
        e.source_ip.clone(),
        e.last_error.clone().unwrap_or_default(),
        e.subject.clone().unwrap_or_default(),
        when(Some(e.date_received)),
        when(Some(e.expiration_time)),
        e.internet_message_id.clone().unwrap_or_default(),
    ]
}

/// `applying`: a message action the gateway had not finished when its POST answered.
async fn render(
    st: &ConsoleState,
    admin: &Admin,
    v: &View,
    error: Option<String>,
    applying: Option<i64>,
) -> PageResult {
    let mut error = error;
    let progress = match applying {
        Some(id) => ops::progress::progress(&st.pool, &st.server, id)
            .await
            .map_err(super::queue_viewer::op_error)?,
        None => None,
    };
    let notice = progress.map(|p| {
        if p.done {
            format!(
                "The gateway has finished this action: {} of {} message(s) done.",
                p.applied, p.total
            )
        } else {
            format!(
                "The gateway is still applying this action: {} of {} message(s) done so far.",
                p.applied, p.total
            )
        }
    });
    // Until it is done, the page shows its progress again every few seconds.
    let refresh = match progress {
        Some(p) if !p.done && v.refresh == 0 => 5,
        _ => v.refresh,
    };
    let listed = async {
        let f = v.filter()?;
        let order = v.order()?;
        // In the gateway the queue manager counts its queues; a console built by hand (tests)
        // counts in PostgreSQL.
        let held = st.live.as_ref().map(|live| {
            let queues = live.queues.clone();
            move |q: Option<i64>| queues.held_entries(q)
        });
        let req = PageRequest {
            order,
            offset: v.offset,
            size: v.size,
            anchor: v.anchor.clone(),
            held: held.as_ref().map(|h| h as _),
        };
        filtered_page_at(&st.pool, &st.server, v.scope(), f.as_ref(), &req).await
    }
    .await;
    let (entries, total) = match listed {
        Ok(found) => found,
        Err(QueueError::Db(e)) => return Err(e.into()),
        Err(e) => {
            error.get_or_insert(e.to_string());
            (vec![], 0)
        }
    };
    let sort_key = v.sort.trim_start_matches(['+', '-']);
    let descending = v.sort.starts_with('-');
    let headers = COLUMNS
        .iter()
        .map(|(label, key)| match key {
            Some(k) => {
                let here =
                    k.eq_ignore_ascii_case(sort_key) || (v.sort.is_empty() && *k == "DateReceived");
                let next = if here && !descending {
                    format!("-{k}")
                } else {
                    format!("+{k}")
                };
                Header {
                    label,
                    href: v.with(|w| {
                        w.sort = next;
                        w.offset = 0;
                    }),
                    mark: match (here, descending) {
                        (false, _) => "",
                        (true, false) => " ▲",
                        (true, true) => " ▼",
                    },
                }
            }
            None => Header {
                label,
                href: String::new(),
                mark: "",
            },
        })
        .collect();
    let rows = entries
        .iter()
        .map(|e| MessageRow {
            identity: e.identity.to_string(),
            href: format!("{MESSAGE}?id={}", seg(&e.identity.to_string())),
            cells: cells(e),
        })
        .collect::<Vec<_>>();
    let first = if rows.is_empty() { 0 } else { v.offset + 1 };
    let last = v.offset.saturating_add(rows.len());
    // Next and Previous name the message at the page's edge, so the page they open is read
    // from there rather than counted to; the first page needs no anchor.
    let prev = match entries.first() {
        _ if v.offset == 0 => String::new(),
        Some(e) if v.offset > v.size => v.with(|w| {
            w.offset -= w.size;
            w.anchor = Some(Anchor::Before(e.identity.to_string()));
        }),
        _ => v.with(|w| {
            w.offset = w.offset.saturating_sub(w.size);
            w.anchor = None;
        }),
    };
    let next = match entries.last() {
        Some(e) if last < total => v.with(|w| {
            w.offset = last;
            w.anchor = Some(Anchor::After(e.identity.to_string()));
        }),
        _ => String::new(),
    };
    let sizes: Vec<String> = PAGE_SIZES.iter().map(|s| s.to_string()).collect();
    let filter_rows = v
        .rows
        .iter()
        .enumerate()
        .map(|(index, (f, o, value))| FilterRow {
            index,
            fields: std::iter::once(Choice {
                value: String::new(),
                label: "(none)".into(),
                selected: f.is_empty(),
            })
            .chain(choices(MESSAGE_SCHEMA.iter().map(|(n, _)| (*n, *n)), f))
            .collect(),
            operators: choices(OPERATORS.iter().map(|(l, o)| (*o, *l)), o),
            value: value.clone(),
        })
        .collect();
    let title = if v.queue.is_empty() {
        "Queue Viewer".to_string()
    } else {
        format!("Queue Viewer - {}", v.queue)
    };
    page(&MessagesPage {
        frame: Frame::new(admin, Node::Toolbox, title).tabs(tabs(true)),
        view_queue: v.queue.clone(),
        headers,
        rows,
        total,
        first,
        last,
        prev,
        next,
        sizes: choices(
            sizes.iter().map(|s| (s.as_str(), s.as_str())),
            &v.size.to_string(),
        ),
        refreshes: choices(
            [("0", "Off"), ("5", "5 seconds"), ("30", "30 seconds")],
            &v.refresh.to_string(),
        ),
        filter_rows,
        quick_fields: choices(QUICK_FIELDS.iter().map(|f| (*f, *f)), &v.quick_field),
        quick: v.quick.clone(),
        filter_text: v.filter_text(),
        sort: v.sort.clone(),
        check_all: v.check_all,
        check_all_href: format!("{}&check=all", v.url()),
        action: format!("{ACTION}?{}", v.qs()),
        refresh: if error.is_some() { 0 } else { refresh },
        error,
        notice,
    })
}

async fn messages(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(q): Query<FormData>,
) -> PageResult {
    let applying = q.one(APPLYING).and_then(|n| n.parse().ok());
    render(&st, &admin, &View::of(&q), None, applying).await
}

/// What a message action is told: which action, and the selected rows or every match.
async fn run_action(
    st: &ConsoleState,
    v: &View,
    form: &FormData,
) -> Result<Option<i64>, QueueError> {
    let (verb, with_ndr) = match form.one("do").unwrap_or("") {
        "suspend" => (Verb::SuspendMessage, false),
        "resume" => (Verb::ResumeMessage, false),
        "remove-with-ndr" => (Verb::RemoveMessage, true),
        "remove-without-ndr" => (Verb::RemoveMessage, false),
        other => {
            return Err(QueueError::Failed(format!(
                "\"{other}\" is not an action of the Queue Viewer."
            )));
        }
    };
    let ids: Vec<MessageIdentity> = if form.one("scope") == Some("all") {
        let f = v.filter()?;
        let entries = matching(&st.pool, &st.server, v.scope(), f.as_ref(), v.order()?).await?;
        return batch_of_entries(st, verb, &entries, with_ndr).await;
    } else {
        let picked = form.all("id");
        if picked.is_empty() {
            return Err(QueueError::Failed(
                "Select one or more messages, or choose all the messages matching the filter."
                    .into(),
            ));
        }
        picked
            .iter()
            .map(|id| MessageIdentity::parse(id, &st.server))
            .collect::<Result<_, _>>()?
    };
    batch_pending(st, verb, &ids, with_ndr).await
}

async fn action(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(q): Query<FormData>,
    Form(form): Form<FormData>,
) -> PageResult {
    let v = View::of(&q);
    match run_action(&st, &v, &form).await {
        Ok(None) => see_other(&v.url()),
        // The bounded wait ended first: the page then says how far the gateway has got.
        Ok(Some(id)) => see_other(&format!("{}&{APPLYING}={id}", v.url())),
        Err(QueueError::Db(e)) => Err(e.into()),
        Err(e) => render(&st, &admin, &v, Some(e.to_string()), None).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_rows_become_the_shells_filter_text() {
        let q = FormData(vec![
            ("f0".into(), "FromAddress".into()),
            ("o0".into(), "-like".into()),
            ("v0".into(), "*@spammer.example".into()),
            ("f1".into(), "Size".into()),
            ("o1".into(), "-gt".into()),
            ("v1".into(), "1024".into()),
            ("qf".into(), "Subject".into()),
            ("q".into(), "it's".into()),
        ]);
        let v = View::of(&q);
        assert_eq!(
            v.filter_text(),
            "FromAddress -like '*@spammer.example' -and Size -gt 1024 -and Subject -like '*it''s*'"
        );
        assert!(v.filter().unwrap().is_some());
        // The view survives its own URL.
        let back = View::of(&FormData(
            v.qs()
                .split('&')
                .map(|kv| {
                    let (k, val) = kv.split_once('=').unwrap();
                    (k.to_string(), percent_decode(val))
                })
                .collect(),
        ));
        assert_eq!(back.filter_text(), v.filter_text());
        let bad = View::of(&FormData(vec![
            ("f0".into(), "Colour".into()),
            ("o0".into(), "-eq".into()),
            ("v0".into(), "red".into()),
        ]));
        assert!(bad.filter().unwrap_err().to_string().contains("Colour"));
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }
}
