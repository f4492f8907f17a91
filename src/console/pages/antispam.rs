//! Organization Configuration › Hub Transport › Anti-spam: the anti-spam features hubgate has,
//! each with its Status, its agent's decisions over the last hour and the last 24 hours
//! (`ops::antispam`), Properties, and Enable/Disable where the feature has an Enabled setting;
//! below them, each agent's decisions by kind. The IP Allow List's and IP Block List's Properties
//! list their entries with Add and Remove, through the shell's own operations (`ops::ip_list`);
//! the other features' Properties are antispam_providers.rs, antispam_filters.rs and
//! antispam_import.rs.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Form, Router};
use futures_util::future::BoxFuture;
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::chart::grouped;
use super::view::{Action, Frame, Node};
use super::{FormData, PageError, PageResult, page, see_other, slug};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::ops::OpError;
use crate::ops::antispam::{Decisions, agent_figures};
use crate::ops::ip_list::{self, AddEntry};
use crate::ops::props::{Value, Values};
use crate::ops::{ip_block_list, recipient_filter, sender_filter};
use crate::org::ip_list::{IpList, IpListEntry};

pub const ANTISPAM: &str = "/org/hub/anti-spam";

const CONNECTION_FILTERING: &str = crate::smtp::server::connection_filter::AGENT;

/// An Enabled setting as the tab reads and writes it, through the feature's own operations.
pub struct Toggle {
    pub get: for<'a> fn(&'a mut PgConnection) -> BoxFuture<'a, Result<bool, OpError>>,
    pub set: for<'a> fn(&'a mut PgConnection, bool) -> BoxFuture<'a, Result<(), OpError>>,
}

/// One row of the tab.
pub struct Feature {
    /// The EMC's name for it.
    pub name: &'static str,
    /// The agent whose decisions the row counts (the tracking log's source-context); None: the
    /// feature makes no decisions of its own (the IP Allow List exempts, it does not refuse).
    pub agent: Option<&'static str>,
    /// Its Properties page.
    pub properties: Option<&'static str>,
    /// Its Enabled setting; None: always on, without Enable/Disable.
    pub enabled: Option<Toggle>,
}

/// `-Enabled $true` or `$false`, as the feature's Set- cmdlet takes it.
fn enabled(on: bool) -> Values {
    Values(vec![("Enabled", Value::Bool(on))])
}

/// A Toggle over a settings object's `enabled`: its Get- and Set- operations.
macro_rules! toggle {
    ($get:path, $set:path) => {{
        fn get(tx: &mut PgConnection) -> BoxFuture<'_, Result<bool, OpError>> {
            Box::pin(async move { Ok($get(tx).await?.enabled) })
        }
        fn set(tx: &mut PgConnection, on: bool) -> BoxFuture<'_, Result<(), OpError>> {
            Box::pin(async move { $set(tx, &enabled(on)).await.map(|_| ()) })
        }
        Toggle { get, set }
    }};
}

/// The features, in the EMC's order. A feature's row is one entry here. The IP Block List and
/// its providers are one agent's (Connection Filtering), so their rows count the same decisions;
/// the agents' table below the features tells them apart by kind.
pub const FEATURES: &[Feature] = &[
    Feature {
        name: "IP Allow List",
        agent: None,
        properties: Some(ALLOW_LIST),
        enabled: None,
    },
    Feature {
        name: "IP Block List",
        agent: Some(CONNECTION_FILTERING),
        properties: Some(BLOCK_LIST),
        enabled: Some(toggle!(
            ip_block_list::get_block_list_config,
            ip_block_list::set_block_list_config
        )),
    },
    Feature {
        name: "IP Block List Providers",
        agent: Some(CONNECTION_FILTERING),
        properties: Some(super::antispam_providers::PROVIDERS),
        enabled: Some(toggle!(
            ip_block_list::get_providers_config,
            ip_block_list::set_providers_config
        )),
    },
    Feature {
        name: "Recipient Filtering",
        agent: Some(crate::smtp::server::recipient_filter::AGENT),
        properties: Some(super::antispam_filters::RECIPIENT_FILTERING),
        enabled: Some(toggle!(
            recipient_filter::get_config,
            recipient_filter::set_config
        )),
    },
    Feature {
        name: "Sender Filtering",
        agent: Some(crate::smtp::server::sender_filter::AGENT),
        properties: Some(super::antispam_filters::SENDER_FILTERING),
        enabled: Some(toggle!(
            sender_filter::get_config,
            sender_filter::set_config
        )),
    },
];

const ALLOW_LIST: &str = "/org/hub/anti-spam/ip-allow-list";
const BLOCK_LIST: &str = "/org/hub/anti-spam/ip-block-list";

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route(ANTISPAM, get(tab))
        // One parameter name: the router takes one name per position.
        .route("/org/hub/anti-spam/{name}/enable", post(enable))
        .route("/org/hub/anti-spam/{name}/disable", post(disable))
        .route("/org/hub/anti-spam/{name}", get(list_page))
        .route("/org/hub/anti-spam/{name}/add", post(add))
        .route("/org/hub/anti-spam/{name}/remove", post(remove))
        .merge(super::antispam_providers::routes())
        .merge(super::antispam_filters::routes())
        .merge(super::antispam_import::routes())
}

#[derive(serde::Deserialize)]
pub struct Selected {
    pub selected: Option<String>,
}

fn feature(slug_: &str) -> Result<&'static Feature, PageError> {
    FEATURES
        .iter()
        .find(|f| slug(f.name) == slug_)
        .ok_or(PageError::NoPage)
}

pub struct FeatureRow {
    pub slug: String,
    pub name: &'static str,
    pub status: &'static str,
    pub hour: String,
    pub day: String,
    pub selected: bool,
}

pub struct AgentRow {
    pub slug: String,
    pub agent: &'static str,
    pub hour: [String; 3],
    pub day: [String; 3],
}

#[derive(Template)]
#[template(path = "console/antispam.html")]
pub struct AntispamPage {
    pub frame: Frame,
    pub features: Vec<FeatureRow>,
    pub agents: Vec<AgentRow>,
}

fn decisions(d: &Decisions) -> [String; 3] {
    [grouped(d.fail), grouped(d.defer), grouped(d.info)]
}

async fn status(f: &Feature, tx: &mut PgConnection) -> Result<bool, OpError> {
    match &f.enabled {
        Some(t) => (t.get)(tx).await,
        None => Ok(true),
    }
}

pub async fn tab(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(sel): Query<Selected>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let pending = st
        .live
        .as_ref()
        .map(|l| l.antispam.pending())
        .unwrap_or_default();
    let figures = agent_figures(&mut tx, &pending, OffsetDateTime::now_utc()).await?;
    let of = |agent: &str| figures.iter().find(|f| f.agent == agent);
    let mut frame = Frame::new(&admin, Node::OrgHub, "Hub Transport")
        .tabs(super::org_hub::tabs(ANTISPAM))
        .actions("Hub Transport", vec![Action::get("Refresh", ANTISPAM)]);
    let mut features = vec![];
    for f in FEATURES {
        let s = slug(f.name);
        let on = status(f, &mut tx).await?;
        let selected = sel.selected.as_deref() == Some(s.as_str());
        if selected {
            let mut actions = vec![];
            if let Some(p) = f.properties {
                actions.push(Action::get("Properties", p));
            }
            if f.enabled.is_some() {
                let verb = if on { "disable" } else { "enable" };
                actions.push(Action::post(
                    if on { "Disable" } else { "Enable" },
                    format!("{ANTISPAM}/{s}/{verb}"),
                ));
            }
            frame = frame.actions(f.name, actions);
        }
        let (hour, day) = match f.agent.and_then(of) {
            Some(a) => (grouped(a.hour.total()), grouped(a.day.total())),
            None => ("-".into(), "-".into()),
        };
        features.push(FeatureRow {
            name: f.name,
            status: if on { "Enabled" } else { "Disabled" },
            hour,
            day,
            selected,
            slug: s,
        });
    }
    // Every agent a feature names, and any other that decided something today.
    let agents = figures
        .iter()
        .filter(|a| FEATURES.iter().any(|f| f.agent == Some(a.agent)) || a.day.total() > 0)
        .map(|a| AgentRow {
            slug: slug(a.agent),
            agent: a.agent,
            hour: decisions(&a.hour),
            day: decisions(&a.day),
        })
        .collect();
    page(&AntispamPage {
        frame,
        features,
        agents,
    })
}

async fn toggle(st: ConsoleState, name: &str, on: bool) -> PageResult {
    let f = feature(name)?;
    let Some(t) = &f.enabled else {
        return Err(PageError::NoPage);
    };
    let mut tx = st.pool.begin().await?;
    (t.set)(&mut tx, on).await?;
    tx.commit().await?;
    see_other(&back_to(name))
}

async fn enable(State(st): State<ConsoleState>, _: Admin, Path(f): Path<String>) -> PageResult {
    toggle(st, &f, true).await
}

async fn disable(State(st): State<ConsoleState>, _: Admin, Path(f): Path<String>) -> PageResult {
    toggle(st, &f, false).await
}

/// The tab with a feature selected: where a feature's Properties go back to.
pub fn back_to(feature: &str) -> String {
    format!("{ANTISPAM}?selected={feature}")
}

/// The frame of a feature's Properties pages: the Anti-spam tab's, with Refresh (`url`) and the
/// way back to the tab (`back`).
pub fn dialog_frame(admin: &Admin, url: &str, back: &str) -> Frame {
    Frame::new(admin, Node::OrgHub, "Hub Transport")
        .tabs(super::org_hub::tabs(ANTISPAM))
        .actions(
            "Hub Transport",
            vec![Action::get("Refresh", url), Action::get("Anti-spam", back)],
        )
}

/// A page shown again with a refusal answers 400, so that a client sees it was not done.
pub fn refused_status(error: bool) -> StatusCode {
    if error {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    }
}

/// A change's outcome as a page shows it: done or refused (the form again, the refusal beside
/// its field), or a database failure, which is the page's error.
pub fn settled<T>(outcome: Result<T, OpError>) -> Result<Result<T, OpError>, PageError> {
    match outcome {
        Err(OpError::Db(e)) => Err(PageError::Db(e)),
        other => Ok(other),
    }
}

fn list_of(path: &str) -> Result<(IpList, &'static str, &'static str), PageError> {
    match path {
        "ip-allow-list" => Ok((IpList::Allow, "IP Allow List Properties", ALLOW_LIST)),
        "ip-block-list" => Ok((IpList::Block, "IP Block List Properties", BLOCK_LIST)),
        _ => Err(PageError::NoPage),
    }
}

pub struct EntryRow {
    pub id: i64,
    pub range: String,
    pub expires: String,
    pub comment: String,
}

/// What was typed into the Add form, shown again beside a refusal.
#[derive(Default)]
pub struct Typed {
    pub range: String,
    pub expiration: String,
    pub comment: String,
}

#[derive(Template)]
#[template(path = "console/antispam_ip_list.html")]
pub struct IpListPage {
    pub frame: Frame,
    pub heading: &'static str,
    pub entries: Vec<EntryRow>,
    pub add: String,
    pub remove: String,
    pub back: String,
    pub typed: Typed,
    pub error: Option<String>,
}

fn entry_row(e: IpListEntry) -> EntryRow {
    EntryRow {
        id: e.id,
        range: e.ip_range,
        expires: e
            .expiration_time
            .map(crate::shell::format::datetime)
            .unwrap_or_else(|| "Never".into()),
        comment: e.comment.unwrap_or_default(),
    }
}

async fn render_list(
    st: &ConsoleState,
    admin: &Admin,
    path: &str,
    typed: Typed,
    error: Option<String>,
) -> PageResult {
    let (list, heading, url) = list_of(path)?;
    let mut tx = st.pool.begin().await?;
    let entries = ip_list::get(&mut tx, list, None, None)
        .await?
        .into_iter()
        .map(entry_row)
        .collect();
    let back = back_to(path);
    let frame = dialog_frame(admin, url, &back);
    let status = refused_status(error.is_some());
    let html = IpListPage {
        frame,
        heading,
        entries,
        add: format!("{url}/add"),
        remove: format!("{url}/remove"),
        back,
        typed,
        error,
    }
    .render()?;
    Ok((status, axum::response::Html(html)).into_response())
}

async fn list_page(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(list): Path<String>,
) -> PageResult {
    render_list(&st, &admin, &list, Typed::default(), None).await
}

/// The form's one address field as Add-IP*ListEntry's parameters: a range or CIDR is -IPRange,
/// anything else -IPAddress, so that the refusal names the parameter the shell would.
fn request(f: &FormData) -> Result<AddEntry, OpError> {
    let text = |n: &str| {
        f.one(n)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let range = text("IPRange");
    let expiration_time = match text("ExpirationTime") {
        None => None,
        Some(s) => Some(crate::shell::queue::parse_datetime(&s).ok_or_else(|| {
            OpError::invalid(
                "ExpirationTime",
                format!(
                    "\"{s}\" is not a valid ExpirationTime (a date and time, e.g. 12/31/2026 23:59)."
                ),
            )
        })?),
    };
    let is_range = range.as_deref().is_some_and(|r| r.contains(['-', '/']));
    Ok(AddEntry {
        ip_address: range.clone().filter(|_| !is_range),
        ip_range: range.filter(|_| is_range),
        expiration_time,
        comment: text("Comment"),
    })
}

/// After a list operation: the list again when it was done, else the form shown with the
/// refusal (what the admin typed kept), or the page error for a failure that is not a refusal.
async fn answer(
    st: &ConsoleState,
    admin: &Admin,
    path: &str,
    url: &'static str,
    typed: Typed,
    outcome: Result<(), OpError>,
) -> PageResult {
    match settled(outcome)? {
        Ok(()) => see_other(url),
        Err(refused) => render_list(st, admin, path, typed, Some(refused.to_string())).await,
    }
}

async fn add(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(path): Path<String>,
    Form(form): Form<FormData>,
) -> PageResult {
    let (list, _, url) = list_of(&path)?;
    let typed = Typed {
        range: form.one("IPRange").unwrap_or_default().to_string(),
        expiration: form.one("ExpirationTime").unwrap_or_default().to_string(),
        comment: form.one("Comment").unwrap_or_default().to_string(),
    };
    let outcome = async {
        let req = request(&form)?;
        let mut tx = st.pool.begin().await?;
        ip_list::add(&mut tx, list, &req, OffsetDateTime::now_utc()).await?;
        Ok(tx.commit().await?)
    }
    .await;
    answer(&st, &admin, &path, url, typed, outcome).await
}

async fn remove(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(path): Path<String>,
    Form(form): Form<FormData>,
) -> PageResult {
    let (list, _, url) = list_of(&path)?;
    let outcome = async {
        let id = ip_list::identity(form.one("id").unwrap_or_default())?;
        let mut tx = st.pool.begin().await?;
        ip_list::remove(&mut tx, list, id).await?;
        Ok(tx.commit().await?)
    }
    .await;
    answer(&st, &admin, &path, url, Typed::default(), outcome).await
}
