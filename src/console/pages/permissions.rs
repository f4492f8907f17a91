//! A connector's Permissions page: its ACL entries (explicit, or from a permission group) with
//! Add and Remove doing what Add-ADPermission and Remove-ADPermission do.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::routing::{get, post};

use super::object::{Managed, Params};
use super::view::{Frame, Link, Opt};
use super::{FormData, PageResult, page, see_other};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::ops::OpError;
use crate::ops::permission::{self, AddADPermission, Connector, RIGHTS};
use crate::org::rights::ExtendedRight;

/// A connector: a managed object with an ACL.
pub trait HasAcl: Managed {
    fn connector(t: &Self::T) -> Connector;
}

pub fn url<M: Managed>(t: &M::T) -> String {
    format!("{}/permissions", M::url(t))
}

pub fn routes<M: HasAcl>(base: &str) -> axum::Router<ConsoleState> {
    axum::Router::new()
        .route(
            &format!("{base}/permissions"),
            get(show::<M>).post(add::<M>),
        )
        .route(&format!("{base}/permissions/remove"), post(remove::<M>))
}

pub struct EntryView {
    pub user: String,
    pub right: String,
    pub access: &'static str,
    /// The permission group it comes from, or "Explicit".
    pub source: String,
    pub explicit: bool,
    pub deny: bool,
}

#[derive(Template)]
#[template(path = "console/permissions.html")]
pub struct PermissionsPage {
    pub frame: Frame,
    pub heading: String,
    pub back: String,
    pub post: String,
    pub remove: String,
    pub entries: Vec<EntryView>,
    pub rights: Vec<Opt>,
    pub user: String,
    pub deny: bool,
    pub error: Option<String>,
    pub field: String,
}

async fn render<M: HasAcl>(
    st: &ConsoleState,
    admin: &Admin,
    t: &M::T,
    form: Option<&FormData>,
    error: Option<&OpError>,
) -> PageResult {
    let c = M::connector(t);
    let mut tx = st.pool.begin().await?;
    let acl = permission::get(&mut tx, &c, None).await?;
    let chosen = form.map(|f| f.all("ExtendedRights")).unwrap_or_default();
    let heading = format!("Permissions on {}", c.identity);
    page(&PermissionsPage {
        frame: Frame::new(admin, M::NODE, &heading).tabs(vec![Link::new(
            "Permissions",
            url::<M>(t),
            true,
        )]),
        heading,
        back: M::list_url(t),
        post: url::<M>(t),
        remove: format!("{}/remove", url::<M>(t)),
        entries: acl
            .into_iter()
            .map(|e| EntryView {
                access: if e.deny { "Deny" } else { "Allow" },
                explicit: e.permission_group.is_none(),
                source: e.permission_group.unwrap_or_else(|| "Explicit".into()),
                user: e.principal,
                right: e.extended_right,
                deny: e.deny,
            })
            .collect(),
        rights: RIGHTS
            .iter()
            .map(|r| Opt {
                value: r.to_string(),
                selected: chosen.iter().any(|c| c == r),
            })
            .collect(),
        user: form
            .and_then(|f| f.one("User"))
            .unwrap_or_default()
            .to_string(),
        deny: form.is_some_and(|f| f.one("Deny").is_some()),
        error: error.map(|e| e.to_string()),
        field: error
            .and_then(|e| e.param())
            .unwrap_or_default()
            .to_string(),
    })
}

async fn show<M: HasAcl>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(p): Path<Params>,
) -> PageResult {
    let t = {
        let mut tx = st.pool.begin().await?;
        M::load(&st, &mut tx, &p).await?
    };
    render::<M>(&st, &admin, &t, None, None).await
}

/// The request a form makes; a right hubgate does not know is refused by name.
fn request(c: Connector, form: &FormData) -> Result<AddADPermission, OpError> {
    let user = form.one("User").unwrap_or("").trim().to_string();
    if user.is_empty() {
        return Err(OpError::invalid("User", "Enter the user or group."));
    }
    let names = form.all("ExtendedRights");
    if let Some(bad) = names.iter().find(|n| ExtendedRight::parse(n).is_none()) {
        return Err(OpError::invalid(
            "ExtendedRights",
            format!("'{bad}' is not an extended right of a connector."),
        ));
    }
    Ok(AddADPermission {
        connector: c,
        user,
        rights: permission::rights_of(&names)?,
        deny: form.one("Deny").is_some(),
    })
}

async fn change<M: HasAcl>(
    st: ConsoleState,
    admin: Admin,
    p: Params,
    form: FormData,
    adding: bool,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let t = M::load(&st, &mut tx, &p).await?;
    let done = match request(M::connector(&t), &form) {
        Ok(req) if adding => permission::add(&mut tx, &req).await.map(|_| ()),
        Ok(req) => permission::remove(&mut tx, &req).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => {
            tx.commit().await?;
            see_other(&url::<M>(&t))
        }
        Err(e) => {
            drop(tx);
            render::<M>(&st, &admin, &t, adding.then_some(&form), Some(&e)).await
        }
    }
}

async fn add<M: HasAcl>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(p): Path<Params>,
    Form(form): Form<FormData>,
) -> PageResult {
    change::<M>(st, admin, p, form, true).await
}

async fn remove<M: HasAcl>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(p): Path<Params>,
    Form(form): Form<FormData>,
) -> PageResult {
    change::<M>(st, admin, p, form, false).await
}
