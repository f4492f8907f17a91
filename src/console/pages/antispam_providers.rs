//! Anti-spam › IP Block List Providers › Properties: the Providers tab (the providers in the
//! order they are asked, with New, Edit, Remove, Move up and Move down) and the provider dialog
//! of the EMC (Provider name, Lookup domain, the return status codes that count as a listing,
//! the custom error message). Every change is Add-, Set- or Remove-IPBlockListProvider's own
//! operation (`ops::ip_block_list`), so the shell and the console refuse the same values.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use axum::{Form, Router};

use super::antispam::{back_to, dialog_frame, refused_status, settled};
use super::object::{Params, id_param};
use super::{FormData, PageError, PageResult, see_other};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::ops::OpError;
use crate::ops::ip_block_list;
use crate::ops::props::{Value, Values};
use crate::org::ip_block_list::IpBlockListProvider;

/// The feature's slug on the Anti-spam tab, and its Properties.
const FEATURE: &str = "ip-block-list-providers";
pub const PROVIDERS: &str = "/org/hub/anti-spam/ip-block-list-providers";
const NEW: &str = "/org/hub/anti-spam/ip-block-list-providers/new";

/// A provider's own pages: `{PROVIDERS}/provider/<id>`.
fn provider_url(p: &IpBlockListProvider) -> String {
    format!("{PROVIDERS}/provider/{}", p.id)
}

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route(PROVIDERS, get(list))
        .route(NEW, get(new_get).post(new_post))
        .route(
            "/org/hub/anti-spam/ip-block-list-providers/provider/{id}",
            get(edit_get).post(edit_post),
        )
        .route(
            "/org/hub/anti-spam/ip-block-list-providers/provider/{id}/remove",
            post(remove),
        )
        .route(
            "/org/hub/anti-spam/ip-block-list-providers/provider/{id}/move-up",
            post(move_up),
        )
        .route(
            "/org/hub/anti-spam/ip-block-list-providers/provider/{id}/move-down",
            post(move_down),
        )
}

pub struct ProviderRow {
    pub id: String,
    pub priority: i32,
    pub name: String,
    pub lookup_domain: String,
    pub enabled: &'static str,
    pub url: String,
    pub first: bool,
    pub last: bool,
}

#[derive(Template)]
#[template(path = "console/antispam_providers.html")]
pub struct ProvidersPage {
    pub frame: super::Frame,
    pub providers: Vec<ProviderRow>,
    pub new: &'static str,
    pub back: String,
    pub error: Option<String>,
}

async fn render_list(st: &ConsoleState, admin: &Admin, error: Option<String>) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let all = ip_block_list::get(&mut tx, None, true).await?;
    let n = all.len();
    let providers = all
        .into_iter()
        .enumerate()
        .map(|(i, p)| ProviderRow {
            id: p.id.to_string(),
            priority: p.priority,
            enabled: if p.enabled { "True" } else { "False" },
            url: provider_url(&p),
            first: i == 0,
            last: i + 1 == n,
            name: p.name,
            lookup_domain: p.lookup_domain,
        })
        .collect();
    let back = back_to(FEATURE);
    let html = ProvidersPage {
        frame: dialog_frame(admin, PROVIDERS, &back),
        providers,
        new: NEW,
        back,
        error: error.clone(),
    }
    .render()?;
    Ok((refused_status(error.is_some()), Html(html)).into_response())
}

async fn list(State(st): State<ConsoleState>, admin: Admin) -> PageResult {
    render_list(&st, &admin, None).await
}

/// The dialog's inputs as typed (or as stored, when it opens on a provider).
#[derive(Default)]
pub struct Typed {
    pub name: String,
    pub lookup_domain: String,
    pub enabled: bool,
    pub any_match: bool,
    pub bitmask_match: String,
    pub ip_addresses_match: String,
    pub rejection_response: String,
}

impl Typed {
    fn of(p: &IpBlockListProvider) -> Typed {
        Typed {
            name: p.name.clone(),
            lookup_domain: p.lookup_domain.clone(),
            enabled: p.enabled,
            any_match: p.any_match,
            bitmask_match: p.bitmask_match.clone().unwrap_or_default(),
            ip_addresses_match: p.ip_addresses_match.join("\n"),
            rejection_response: p.rejection_response.clone().unwrap_or_default(),
        }
    }

    fn posted(f: &FormData) -> Typed {
        let text = |n: &str| f.one(n).unwrap_or_default().to_string();
        Typed {
            name: text("Name"),
            lookup_domain: text("LookupDomain"),
            enabled: f.one("Enabled").is_some(),
            any_match: f.one("Match") == Some("any"),
            bitmask_match: text("BitmaskMatch"),
            ip_addresses_match: text("IPAddressesMatch"),
            rejection_response: text("RejectionResponse"),
        }
    }

    /// The values Add- or Set-IPBlockListProvider takes: every input, an empty text clearing
    /// its property. With "Match any return code" chosen the mask and responses are still
    /// stored (and checked), as the shell would store them beside -AnyMatch $true.
    fn values(&self) -> Values {
        let optional = |s: &str| match s.trim() {
            "" => Value::Null,
            t => Value::Str(t.to_string()),
        };
        Values(vec![
            ("Name", Value::Str(self.name.trim().to_string())),
            (
                "LookupDomain",
                Value::Str(self.lookup_domain.trim().to_string()),
            ),
            ("Enabled", Value::Bool(self.enabled)),
            ("AnyMatch", Value::Bool(self.any_match)),
            ("BitmaskMatch", optional(&self.bitmask_match)),
            (
                "IPAddressesMatch",
                Value::List(
                    self.ip_addresses_match
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect(),
                ),
            ),
            ("RejectionResponse", optional(&self.rejection_response)),
        ])
    }
}

/// The inputs a refusal can be shown beside; any other refusal is shown above them.
const FIELDS: &[&str] = &[
    "Name",
    "LookupDomain",
    "BitmaskMatch",
    "IPAddressesMatch",
    "RejectionResponse",
];

/// A refusal, beside the input it names.
#[derive(Default)]
pub struct Refusal {
    pub field: Option<&'static str>,
    pub message: String,
}

impl Refusal {
    fn of(e: &OpError) -> Refusal {
        Refusal {
            field: e
                .param()
                .and_then(|p| FIELDS.iter().find(|f| f.eq_ignore_ascii_case(p)).copied()),
            message: e.to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/antispam_provider.html")]
pub struct ProviderPage {
    pub frame: super::Frame,
    pub heading: &'static str,
    pub post: String,
    pub cancel: &'static str,
    pub typed: Typed,
    pub refusal: Option<Refusal>,
}

impl ProviderPage {
    /// The refusal's message when it belongs beside `field` ("" : above the inputs).
    pub fn error_for(&self, field: &str) -> Option<&str> {
        let r = self.refusal.as_ref()?;
        let at = r.field.unwrap_or("");
        (at == field).then_some(r.message.as_str())
    }
}

fn dialog(
    admin: &Admin,
    heading: &'static str,
    post: String,
    typed: Typed,
    refusal: Option<Refusal>,
) -> PageResult {
    let status = refused_status(refusal.is_some());
    let html = ProviderPage {
        frame: dialog_frame(admin, &post, &back_to(FEATURE)),
        heading,
        post,
        cancel: PROVIDERS,
        typed,
        refusal,
    }
    .render()?;
    Ok((status, Html(html)).into_response())
}

const ADD_HEADING: &str = "Add IP Block List Provider";
const EDIT_HEADING: &str = "Edit IP Block List Provider";

async fn new_get(admin: Admin) -> PageResult {
    let typed = Typed {
        enabled: true,
        ..Typed::default()
    };
    dialog(&admin, ADD_HEADING, NEW.into(), typed, None)
}

/// After an operation on the dialog: back to the providers, or the dialog again with the
/// refusal beside its input and what was typed kept (nothing was saved).
fn answer(
    admin: &Admin,
    heading: &'static str,
    post: String,
    typed: Typed,
    outcome: Result<(), OpError>,
) -> PageResult {
    match settled(outcome)? {
        Ok(()) => see_other(PROVIDERS),
        Err(e) => dialog(admin, heading, post, typed, Some(Refusal::of(&e))),
    }
}

async fn new_post(
    State(st): State<ConsoleState>,
    admin: Admin,
    Form(form): Form<FormData>,
) -> PageResult {
    let typed = Typed::posted(&form);
    let outcome = async {
        let mut tx = st.pool.begin().await?;
        ip_block_list::add(&mut tx, &typed.values()).await?;
        Ok(tx.commit().await?)
    }
    .await;
    answer(&admin, ADD_HEADING, NEW.into(), typed, outcome)
}

async fn load(st: &ConsoleState, p: &Params) -> Result<IpBlockListProvider, PageError> {
    let id = id_param(p)?;
    let mut tx = st.pool.begin().await?;
    Ok(crate::ops::one(
        ip_block_list::get(&mut tx, Some(&id), false).await?,
    ))
}

async fn edit_get(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(p): Path<Params>,
) -> PageResult {
    let provider = load(&st, &p).await?;
    dialog(
        &admin,
        EDIT_HEADING,
        provider_url(&provider),
        Typed::of(&provider),
        None,
    )
}

async fn edit_post(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(p): Path<Params>,
    Form(form): Form<FormData>,
) -> PageResult {
    let typed = Typed::posted(&form);
    let id = id_param(&p)?;
    let outcome = async {
        let mut tx = st.pool.begin().await?;
        ip_block_list::set(&mut tx, &id, &typed.values()).await?;
        Ok(tx.commit().await?)
    }
    .await;
    let post = format!("{PROVIDERS}/provider/{}", p.get("id").map_or("", |s| s));
    answer(&admin, EDIT_HEADING, post, typed, outcome)
}

/// What the providers' list changes.
#[derive(Clone, Copy)]
enum ListChange {
    Remove,
    /// Set-IPBlockListProvider -Priority one up (`-1`) or down (`+1`): the operation moves the
    /// provider that held that priority the other way.
    Move(i64),
}

async fn change(
    tx: &mut sqlx::PgConnection,
    id: &crate::ops::Identity,
    what: ListChange,
) -> Result<(), OpError> {
    match what {
        ListChange::Remove => ip_block_list::remove(tx, id).await.map(|_| ()),
        ListChange::Move(by) => {
            let now = crate::ops::one(ip_block_list::get(tx, Some(id), false).await?);
            let to = i64::from(now.priority) + by;
            let values = Values(vec![("Priority", Value::Int(to))]);
            ip_block_list::set(tx, id, &values).await.map(|_| ())
        }
    }
}

/// A change made from the providers' list: the list again, with a refusal above it.
async fn on_list(st: &ConsoleState, admin: &Admin, p: &Params, what: ListChange) -> PageResult {
    let id = id_param(p)?;
    let outcome = async {
        let mut tx = st.pool.begin().await?;
        change(&mut tx, &id, what).await?;
        Ok(tx.commit().await?)
    }
    .await;
    match settled(outcome)? {
        Ok(()) => see_other(PROVIDERS),
        Err(e) => render_list(st, admin, Some(e.to_string())).await,
    }
}

async fn remove(State(st): State<ConsoleState>, admin: Admin, Path(p): Path<Params>) -> PageResult {
    on_list(&st, &admin, &p, ListChange::Remove).await
}

async fn move_up(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(p): Path<Params>,
) -> PageResult {
    on_list(&st, &admin, &p, ListChange::Move(-1)).await
}

async fn move_down(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(p): Path<Params>,
) -> PageResult {
    on_list(&st, &admin, &p, ListChange::Move(1)).await
}
