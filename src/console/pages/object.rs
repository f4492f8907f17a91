//! What every object's pages share: the Properties dialog (GET a tab, POST OK or Apply), the
//! Remove confirmation, Enable/Disable and the New form, generic over [`Managed`].

use std::collections::HashMap;
use std::future::Future;

use axum::Form;
use axum::extract::{Path, Query, State};
use sqlx::PgConnection;

use super::fields::{self, Errors};
use super::view::{Action, ConfirmPage, FieldView, Frame, Link, Node, PropsPage};
use super::{FormData, PageError, PageResult, page, see_other, slug, target};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::ops::OpError;
use crate::ops::props::{Object, Value, Values};

/// The path's parameters (`id`, `server`, `tab`).
pub type Params = HashMap<String, String>;

/// An object the console shows and changes through its operations.
pub trait Managed: Send + Sync + 'static {
    type T: Clone + Send + Sync + 'static;
    const NODE: Node;
    fn object() -> &'static Object<Self::T>;
    /// The name the dialog and the confirmation show.
    fn title(t: &Self::T) -> String;
    /// The object's own URL; its pages live under it.
    fn url(t: &Self::T) -> String;
    /// The list it is shown in, with it selected.
    fn list_url(t: &Self::T) -> String;
    fn load(
        st: &ConsoleState,
        tx: &mut PgConnection,
        p: &Params,
    ) -> impl Future<Output = Result<Self::T, OpError>> + Send;
    fn set(
        st: &ConsoleState,
        tx: &mut PgConnection,
        t: &Self::T,
        v: &Values,
    ) -> impl Future<Output = Result<(), OpError>> + Send;
    fn remove(
        st: &ConsoleState,
        tx: &mut PgConnection,
        t: &Self::T,
    ) -> impl Future<Output = Result<(), OpError>> + Send;

    /// A tab's inputs; the server's Limits tab draws its own.
    fn fields(t: &Self::T, tab: &str, form: Option<&FormData>) -> Vec<FieldView> {
        fields::tab_fields(Self::object(), t, tab, form)
    }
    fn values(t: &Self::T, tab: &str, form: &FormData) -> Result<Values, Errors> {
        fields::tab_values(Self::object(), t, tab, form)
    }
}

/// The id in the path as an operation takes it.
pub fn id_param(p: &Params) -> Result<crate::ops::Identity, OpError> {
    let raw = p.get("id").map(String::as_str).unwrap_or("");
    let id = uuid::Uuid::parse_str(raw).map_err(|_| OpError::NotFound(raw.to_string()))?;
    Ok(crate::ops::Identity::Id {
        id,
        shown: raw.to_string(),
    })
}

fn tab_of<M: Managed>(p: &Params) -> Result<&'static str, PageError> {
    let want = p.get("tab").map(String::as_str).unwrap_or("");
    M::object()
        .tabs
        .iter()
        .map(|(n, _)| *n)
        .find(|n| slug(n) == want)
        .ok_or(PageError::NoPage)
}

/// The Properties URL of `t` on `tab`.
pub fn props_url<M: Managed>(t: &M::T, tab: &str) -> String {
    format!("{}/properties/{}", M::url(t), slug(tab))
}

/// The first tab's URL: what "Properties" opens.
pub fn properties<M: Managed>(t: &M::T) -> String {
    props_url::<M>(t, M::object().tabs.first().map(|(n, _)| *n).unwrap_or(""))
}

/// The selected object's actions, as the EMC lists them.
pub fn object_actions<M: Managed>(t: &M::T) -> Vec<Action> {
    let mut a = vec![];
    if let Some(Value::Bool(on)) = M::object()
        .prop("Enabled")
        .and_then(|p| p.get)
        .map(|g| g(t))
    {
        a.push(if on {
            Action::post("Disable", format!("{}/disable", M::url(t)))
        } else {
            Action::post("Enable", format!("{}/enable", M::url(t)))
        });
    }
    a.push(Action::get("Remove", format!("{}/remove", M::url(t))));
    a.push(Action::get("Properties", properties::<M>(t)));
    a
}

fn dialog<M: Managed>(
    admin: &Admin,
    t: &M::T,
    tab: &str,
    mut fields: Vec<FieldView>,
    errors: &Errors,
) -> PageResult {
    errors.apply(&mut fields);
    let title = format!("{} Properties", M::title(t));
    let dialog_tabs = M::object()
        .tabs
        .iter()
        .map(|(n, _)| Link::new(*n, props_url::<M>(t, n), *n == tab))
        .collect();
    page(&PropsPage {
        frame: Frame::new(admin, M::NODE, &title),
        heading: title,
        dialog_tabs,
        post: props_url::<M>(t, tab),
        cancel: M::list_url(t),
        fields,
        error: errors.general(),
        new: false,
    })
}

pub async fn props_get<M: Managed>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(p): Path<Params>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let t = M::load(&st, &mut tx, &p).await?;
    let tab = tab_of::<M>(&p)?;
    dialog::<M>(
        &admin,
        &t,
        tab,
        M::fields(&t, tab, None),
        &Errors::default(),
    )
}

/// OK saves and closes, Apply saves and stays; a refusal shows the tab again with the message
/// beside its field and nothing saved.
pub async fn props_post<M: Managed>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(p): Path<Params>,
    Form(form): Form<FormData>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let t = M::load(&st, &mut tx, &p).await?;
    let tab = tab_of::<M>(&p)?;
    let shown = M::fields(&t, tab, Some(&form));
    let values = match M::values(&t, tab, &form) {
        Ok(v) => v,
        Err(e) => return dialog::<M>(&admin, &t, tab, shown, &e),
    };
    if !values.0.is_empty() {
        if let Err(e) = M::set(&st, &mut tx, &t, &values).await {
            let errors = Errors::from_op(&e, &shown);
            return dialog::<M>(&admin, &t, tab, shown, &errors);
        }
        tx.commit().await?;
    }
    // Reload: a rename changes nothing in the URL (ids), but the list selects by id too.
    if form.one("action") == Some("apply") {
        see_other(&props_url::<M>(&t, tab))
    } else {
        see_other(&M::list_url(&t))
    }
}

pub async fn remove_get<M: Managed>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(p): Path<Params>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let t = M::load(&st, &mut tx, &p).await?;
    confirm::<M>(&admin, &t, None)
}

fn confirm<M: Managed>(admin: &Admin, t: &M::T, error: Option<String>) -> PageResult {
    page(&ConfirmPage {
        frame: Frame::new(admin, M::NODE, "Microsoft Exchange"),
        question: format!(
            "Are you sure you want to remove {} '{}'?",
            M::object().noun.to_lowercase(),
            M::title(t)
        ),
        post: format!("{}/remove", M::url(t)),
        cancel: M::list_url(t),
        error,
    })
}

pub async fn remove_post<M: Managed>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(p): Path<Params>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let t = M::load(&st, &mut tx, &p).await?;
    if let Err(e) = M::remove(&st, &mut tx, &t).await {
        return confirm::<M>(&admin, &t, Some(e.to_string()));
    }
    tx.commit().await?;
    let list = M::list_url(&t);
    see_other(list.split('?').next().unwrap_or(&list))
}

async fn enabled<M: Managed>(st: &ConsoleState, p: &Params, on: bool) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let t = M::load(st, &mut tx, p).await?;
    M::set(
        st,
        &mut tx,
        &t,
        &Values::default().with("Enabled", Value::Bool(on)),
    )
    .await?;
    tx.commit().await?;
    see_other(&M::list_url(&t))
}

pub async fn enable<M: Managed>(
    State(st): State<ConsoleState>,
    _: Admin,
    Path(p): Path<Params>,
) -> PageResult {
    enabled::<M>(&st, &p, true).await
}

pub async fn disable<M: Managed>(
    State(st): State<ConsoleState>,
    _: Admin,
    Path(p): Path<Params>,
) -> PageResult {
    enabled::<M>(&st, &p, false).await
}

/// An object New- makes with a plain form of the operation (mailboxes and mail contacts; the
/// accepted domain and the connectors have the EMC's wizards, `console::wizard`).
pub trait Creatable: Managed {
    /// "New Accepted Domain".
    const NEW_TITLE: &'static str;
    fn cancel(p: &Params) -> String;
    fn defaults(_: &ConsoleState, _: &Params) -> Vec<(&'static str, String)> {
        vec![]
    }
    fn create(
        st: &ConsoleState,
        tx: &mut PgConnection,
        p: &Params,
        v: &Values,
    ) -> impl Future<Output = Result<Self::T, OpError>> + Send;
}

fn new_page<M: Creatable>(
    st: &ConsoleState,
    admin: &Admin,
    p: &Params,
    path: &str,
    form: Option<&FormData>,
    errors: &Errors,
) -> PageResult {
    let params = M::object().params(true);
    let mut fields = fields::new_fields(&params, &M::defaults(st, p), form);
    errors.apply(&mut fields);
    page(&PropsPage {
        frame: Frame::new(admin, M::NODE, M::NEW_TITLE),
        heading: M::NEW_TITLE.into(),
        dialog_tabs: vec![],
        post: path.to_string(),
        cancel: M::cancel(p),
        fields,
        error: errors.general(),
        new: true,
    })
}

/// The New form; its query names what the form starts from (`?server=HUB1`).
pub async fn new_get<M: Creatable>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(p): Query<Params>,
    uri: axum::http::Uri,
) -> PageResult {
    new_page::<M>(&st, &admin, &p, &target(&uri), None, &Errors::default())
}

pub async fn new_post<M: Creatable>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(p): Query<Params>,
    uri: axum::http::Uri,
    Form(form): Form<FormData>,
) -> PageResult {
    let params = M::object().params(true);
    let values = match fields::new_values(&params, &form) {
        Ok(v) => v,
        Err(e) => return new_page::<M>(&st, &admin, &p, &target(&uri), Some(&form), &e),
    };
    let mut tx = st.pool.begin().await?;
    match M::create(&st, &mut tx, &p, &values).await {
        Ok(t) => {
            tx.commit().await?;
            see_other(&M::list_url(&t))
        }
        Err(e) => {
            let shown = fields::new_fields(&params, &[], None);
            let errors = Errors::from_op(&e, &shown);
            new_page::<M>(&st, &admin, &p, &target(&uri), Some(&form), &errors)
        }
    }
}

/// The routes every managed object has under `base` (`/accepted-domains/{id}`).
pub fn object_routes<M: Managed>(base: &str) -> axum::Router<ConsoleState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            &format!("{base}/properties/{{tab}}"),
            get(props_get::<M>).post(props_post::<M>),
        )
        .route(
            &format!("{base}/remove"),
            get(remove_get::<M>).post(remove_post::<M>),
        )
        .route(&format!("{base}/enable"), post(enable::<M>))
        .route(&format!("{base}/disable"), post(disable::<M>))
}

/// The New form's routes at `path`.
pub fn new_routes<M: Creatable>(path: &str) -> axum::Router<ConsoleState> {
    axum::Router::new().route(path, axum::routing::get(new_get::<M>).post(new_post::<M>))
}
