//! Anti-spam › Recipient Filtering and Sender Filtering › Properties: the EMC's tabs of each
//! (Blocked Recipients, Recipient Lookup; Blocked Senders), a checkbox for each Boolean setting
//! and a list with Add and Remove for each multi-valued one. A tab is saved as one call of the
//! feature's Set- operation (Set-RecipientFilterConfig, Set-SenderFilterConfig), which checks
//! every value, so a refusal changes nothing and is shown beside the list or box it names.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Form, Router};
use futures_util::future::BoxFuture;
use sqlx::PgConnection;

use super::antispam::{ANTISPAM, back_to, dialog_frame, refused_status, settled};
use super::view::Link;
use super::{FormData, PageError, PageResult, see_other, slug};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::ops::OpError;
use crate::ops::props::{Value, Values};
use crate::ops::{recipient_filter, sender_filter};

/// What a tab shows, in order.
pub enum Item {
    /// A Boolean setting: (property, the EMC's label).
    Check(&'static str, &'static str),
    /// A multi-valued setting with Add and Remove.
    List {
        prop: &'static str,
        label: &'static str,
        column: &'static str,
        hint: &'static str,
    },
    /// A paragraph, with a link to another tab of the dialog (label, href).
    Note(&'static str, Option<(&'static str, &'static str)>),
}

/// A settings object's properties as the tabs read them, and its Set- operation.
pub struct Settings {
    pub load: for<'a> fn(&'a mut PgConnection) -> BoxFuture<'a, Result<Values, OpError>>,
    pub save: for<'a> fn(&'a mut PgConnection, &'a Values) -> BoxFuture<'a, Result<(), OpError>>,
}

/// A Settings over a config object's Get- and Set- operations and its property table.
macro_rules! settings {
    ($get:path, $set:path, $table:path) => {{
        fn load(tx: &mut PgConnection) -> BoxFuture<'_, Result<Values, OpError>> {
            Box::pin(async move {
                let c = $get(tx).await?;
                Ok(Values(
                    $table
                        .props
                        .iter()
                        .filter_map(|p| p.get.map(|g| (p.name, g(&c))))
                        .collect(),
                ))
            })
        }
        fn save<'a>(tx: &'a mut PgConnection, v: &'a Values) -> BoxFuture<'a, Result<(), OpError>> {
            Box::pin(async move { $set(tx, v).await.map(|_| ()) })
        }
        Settings { load, save }
    }};
}

/// One feature's Properties dialog.
pub struct Dialog {
    /// The feature's slug on the Anti-spam tab.
    pub feature: &'static str,
    pub heading: &'static str,
    pub tabs: &'static [(&'static str, &'static [Item])],
    /// Tabs another module draws (label, URL).
    pub more_tabs: &'static [(&'static str, &'static str)],
    pub settings: Settings,
}

pub const RECIPIENT_FILTERING: &str =
    "/org/hub/anti-spam/recipient-filtering/properties/blocked-recipients";
pub const SENDER_FILTERING: &str = "/org/hub/anti-spam/sender-filtering/properties/blocked-senders";
/// Recipient Filtering's Recipient Lookup tab.
pub const RECIPIENT_LOOKUP: &str =
    "/org/hub/anti-spam/recipient-filtering/properties/recipient-lookup";

pub const DIALOGS: &[Dialog] = &[
    Dialog {
        feature: "recipient-filtering",
        heading: "Recipient Filtering Properties",
        tabs: &[
            (
                "Blocked Recipients",
                &[
                    Item::Check("BlockListEnabled", "Block the following recipients:"),
                    Item::List {
                        prop: "BlockedRecipients",
                        label: "Recipients",
                        column: "Recipient",
                        hint: "An SMTP address, e.g. trap@contoso.com; several separated by commas.",
                    },
                ],
            ),
            (
                "Recipient Lookup",
                &[
                    Item::Check(
                        "RecipientValidationEnabled",
                        "Block messages sent to recipients that do not exist in the directory",
                    ),
                    Item::Note(
                        "For a relay domain whose AddressBookEnabled is set, the directory is its \
                         imported valid recipients, or else what its next hop answers to a \
                         recipient callout.",
                        Some(("Valid recipients", super::antispam_import::VALID_RECIPIENTS)),
                    ),
                ],
            ),
        ],
        more_tabs: &[("Valid Recipients", super::antispam_import::VALID_RECIPIENTS)],
        settings: settings!(
            recipient_filter::get_config,
            recipient_filter::set_config,
            recipient_filter::CONFIG
        ),
    },
    Dialog {
        feature: "sender-filtering",
        heading: "Sender Filtering Properties",
        tabs: &[(
            "Blocked Senders",
            &[
                Item::List {
                    prop: "BlockedSenders",
                    label: "Block messages from the following senders:",
                    column: "Sender",
                    hint: "An SMTP address, e.g. spammer@fabrikam.com.",
                },
                Item::List {
                    prop: "BlockedDomains",
                    label: "Block messages from the following domains:",
                    column: "Domain",
                    hint: "A domain, e.g. fabrikam.com (its subdomains are not blocked).",
                },
                Item::List {
                    prop: "BlockedDomainsAndSubdomains",
                    label: "Block messages from the following domains and all their subdomains:",
                    column: "Domain",
                    hint: "A domain, e.g. fabrikam.com (blocks mail.fabrikam.com too).",
                },
                Item::Check(
                    "BlankSenderBlockingEnabled",
                    "Block messages from senders that don't have sender information",
                ),
            ],
        )],
        more_tabs: &[],
        settings: settings!(
            sender_filter::get_config,
            sender_filter::set_config,
            sender_filter::CONFIG
        ),
    },
];

pub fn routes() -> Router<ConsoleState> {
    // `{name}`: the Anti-spam tab's routes use that name at this position.
    Router::new().route(
        "/org/hub/anti-spam/{name}/properties/{tab}",
        get(tab_get).post(tab_post),
    )
}

fn props_url(d: &Dialog, tab: &str) -> String {
    format!("{ANTISPAM}/{}/properties/{}", d.feature, slug(tab))
}

fn find(feature: &str, tab: &str) -> Result<(&'static Dialog, usize), PageError> {
    let d = DIALOGS
        .iter()
        .find(|d| d.feature == feature)
        .ok_or(PageError::NoPage)?;
    let at = d
        .tabs
        .iter()
        .position(|(n, _)| slug(n) == tab)
        .ok_or(PageError::NoPage)?;
    Ok((d, at))
}

/// One item as the page draws it.
pub struct ItemView {
    /// check, list or note.
    pub kind: &'static str,
    pub prop: &'static str,
    pub label: &'static str,
    pub column: &'static str,
    pub hint: &'static str,
    pub checked: bool,
    pub entries: Vec<String>,
    /// The Add box as typed (kept beside a refusal).
    pub typed: String,
    pub error: Option<String>,
    pub link: Option<(&'static str, &'static str)>,
}

#[derive(Template)]
#[template(path = "console/antispam_filter.html")]
pub struct FilterPage {
    pub frame: super::Frame,
    pub heading: &'static str,
    pub dialog_tabs: Vec<Link>,
    pub post: String,
    pub back: String,
    pub items: Vec<ItemView>,
    pub error: Option<String>,
}

/// The dialog tabs of `d`, `current` marked.
pub fn dialog_tabs(d: &Dialog, current: &str) -> Vec<Link> {
    d.tabs
        .iter()
        .map(|(n, _)| (*n, props_url(d, n)))
        .chain(d.more_tabs.iter().map(|(n, u)| (*n, u.to_string())))
        .map(|(n, u)| Link::new(n, u, n == current))
        .collect()
}

/// The dialog of feature `name`, for other tabs drawn elsewhere (Valid Recipients).
pub fn dialog(name: &str) -> &'static Dialog {
    DIALOGS
        .iter()
        .find(|d| d.feature == name)
        .expect("a dialog of DIALOGS")
}

fn list_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::List(l)) => l.clone(),
        _ => vec![],
    }
}

/// The tab drawn from the stored `values`, with what was posted (`form`) and the refusal
/// (`error`) when it is shown again.
fn views(
    items: &[Item],
    values: &Values,
    form: Option<&FormData>,
    error: Option<&OpError>,
) -> (Vec<ItemView>, Option<String>) {
    let mut general = error.map(|e| e.to_string());
    let views = items
        .iter()
        .map(|item| {
            let mut v = ItemView {
                kind: "note",
                prop: "",
                label: "",
                column: "",
                hint: "",
                checked: false,
                entries: vec![],
                typed: String::new(),
                error: None,
                link: None,
            };
            match *item {
                Item::Check(prop, label) => {
                    v.kind = "check";
                    v.prop = prop;
                    v.label = label;
                    v.checked = match form {
                        Some(f) => f.one(prop).is_some(),
                        None => values.get(prop) == Some(&Value::Bool(true)),
                    };
                }
                Item::List {
                    prop,
                    label,
                    column,
                    hint,
                } => {
                    v.kind = "list";
                    v.prop = prop;
                    v.label = label;
                    v.column = column;
                    v.hint = hint;
                    v.entries = list_of(values.get(prop));
                    v.typed = form
                        .and_then(|f| f.one(&format!("add-{prop}")))
                        .unwrap_or_default()
                        .to_string();
                }
                Item::Note(text, link) => {
                    v.label = text;
                    v.link = link;
                }
            }
            if !v.prop.is_empty()
                && let Some(e) = error
                && e.param().is_some_and(|p| p.eq_ignore_ascii_case(v.prop))
            {
                v.error = general.take();
            }
            v
        })
        .collect();
    (views, general)
}

async fn render(
    st: &ConsoleState,
    admin: &Admin,
    d: &'static Dialog,
    at: usize,
    form: Option<&FormData>,
    error: Option<&OpError>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let values = (d.settings.load)(&mut tx).await?;
    let (name, items) = &d.tabs[at];
    let refused = error.is_some();
    let (items, error) = views(items, &values, form, error);
    let post = props_url(d, name);
    let back = back_to(d.feature);
    let html = FilterPage {
        frame: dialog_frame(admin, &post, &back),
        heading: d.heading,
        dialog_tabs: dialog_tabs(d, name),
        post,
        back,
        items,
        error,
    }
    .render()?;
    Ok((refused_status(refused), Html(html)).into_response())
}

async fn tab_get(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path((name, tab)): Path<(String, String)>,
) -> PageResult {
    let (d, at) = find(&name, &tab)?;
    render(&st, &admin, d, at, None, None).await
}

/// What the form asks of a tab: each box as posted, and each list as stored less what a Remove
/// button names plus what the Add box holds (several separated by commas, semicolons or space).
fn changes(items: &[Item], stored: &Values, form: &FormData) -> Values {
    let mut out = Values::default();
    for item in items {
        match *item {
            Item::Check(prop, _) => out.0.push((prop, Value::Bool(form.one(prop).is_some()))),
            Item::List { prop, .. } => {
                let removed = form.one(&format!("remove-{prop}"));
                let mut list: Vec<String> = list_of(stored.get(prop))
                    .into_iter()
                    .filter(|e| removed.is_none_or(|r| !e.eq_ignore_ascii_case(r)))
                    .collect();
                let typed = form.one(&format!("add-{prop}")).unwrap_or_default();
                for t in typed.split([',', ';', ' ', '\t', '\r', '\n']) {
                    let t = t.trim();
                    if !t.is_empty() && !list.iter().any(|e| e.eq_ignore_ascii_case(t)) {
                        list.push(t.to_string());
                    }
                }
                out.0.push((prop, Value::List(list)));
            }
            Item::Note(..) => {}
        }
    }
    out
}

/// OK saves and goes back to the Anti-spam tab; Apply, Add and Remove save and stay. A
/// refusal shows the tab again with what was typed, nothing saved.
async fn tab_post(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path((name, tab)): Path<(String, String)>,
    Form(form): Form<FormData>,
) -> PageResult {
    let (d, at) = find(&name, &tab)?;
    let outcome = async {
        let mut tx = st.pool.begin().await?;
        let stored = (d.settings.load)(&mut tx).await?;
        let values = changes(d.tabs[at].1, &stored, &form);
        (d.settings.save)(&mut tx, &values).await?;
        Ok(tx.commit().await?)
    }
    .await;
    match settled(outcome)? {
        Ok(()) if form.one("action") == Some("ok") => see_other(&back_to(d.feature)),
        Ok(()) => see_other(&props_url(d, d.tabs[at].0)),
        Err(e) => render(&st, &admin, d, at, Some(&form), Some(&e)).await,
    }
}
