//! Organization Configuration › Hub Transport: Accepted Domains, Send Connectors and Global
//! Settings (Transport Settings); the Anti-spam tab is `antispam.rs`.

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use sqlx::PgConnection;

use super::object::{Managed, Params, id_param, object_actions, object_routes, properties};
use super::view::{Action, Frame, Link, ListPage, Node, Row, Table};
use super::{PageResult, page, permissions};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::ops::props::{Object, Values};
use crate::ops::{OpError, accepted_domain, one, send_connector, transport};
use crate::org::{AcceptedDomain, SendConnector, TransportConfig};

pub const DOMAINS: &str = "/org/hub/accepted-domains";
pub const SENDS: &str = "/org/hub/send-connectors";
pub const GLOBAL: &str = "/org/hub/global-settings";

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route(DOMAINS, get(domains))
        .route(SENDS, get(sends))
        .route(GLOBAL, get(global))
        .merge(object_routes::<Domain>("/accepted-domains/{id}"))
        .route(
            "/accepted-domains/{id}/set-as-default",
            axum::routing::post(set_as_default),
        )
        .merge(crate::console::wizard::routes::<
            crate::console::wizard::domain::NewAcceptedDomain,
        >("/accepted-domains/new"))
        .merge(object_routes::<Send>("/send-connectors/{id}"))
        .merge(crate::console::wizard::routes::<
            crate::console::wizard::send::NewSendConnector,
        >("/send-connectors/new"))
        .merge(permissions::routes::<Send>("/send-connectors/{id}"))
        .merge(object_routes::<Config>("/transport-settings"))
        .merge(super::antispam::routes())
}

pub fn tabs(at: &str) -> Vec<Link> {
    [
        ("Accepted Domains", DOMAINS),
        ("Send Connectors", SENDS),
        ("Global Settings", GLOBAL),
        ("Anti-spam", super::antispam::ANTISPAM),
    ]
    .into_iter()
    .map(|(l, h)| Link::new(l, h, h == at))
    .collect()
}

#[derive(serde::Deserialize)]
pub struct Selected {
    pub selected: Option<String>,
}

fn is(sel: &Selected, id: &uuid::Uuid) -> bool {
    sel.selected.as_deref() == Some(id.to_string().as_str())
}

pub struct Domain;

impl Managed for Domain {
    type T = AcceptedDomain;
    const NODE: Node = Node::OrgHub;
    fn object() -> &'static Object<AcceptedDomain> {
        &accepted_domain::OBJECT
    }
    fn title(t: &AcceptedDomain) -> String {
        t.name.clone()
    }
    fn url(t: &AcceptedDomain) -> String {
        format!("/accepted-domains/{}", t.id)
    }
    fn list_url(t: &AcceptedDomain) -> String {
        format!("{DOMAINS}?selected={}", t.id)
    }
    async fn load(
        _: &ConsoleState,
        tx: &mut PgConnection,
        p: &Params,
    ) -> Result<AcceptedDomain, OpError> {
        Ok(one(
            accepted_domain::get(tx, Some(&id_param(p)?), false).await?
        ))
    }
    async fn set(
        _: &ConsoleState,
        tx: &mut PgConnection,
        t: &AcceptedDomain,
        v: &Values,
    ) -> Result<(), OpError> {
        accepted_domain::set(tx, &id_of(t.id, &t.name), v).await?;
        Ok(())
    }
    async fn remove(
        _: &ConsoleState,
        tx: &mut PgConnection,
        t: &AcceptedDomain,
    ) -> Result<(), OpError> {
        accepted_domain::remove(tx, &id_of(t.id, &t.name)).await?;
        Ok(())
    }
}

pub fn id_of(id: uuid::Uuid, shown: &str) -> crate::ops::Identity {
    crate::ops::Identity::Id {
        id,
        shown: shown.to_string(),
    }
}

pub struct Send;

impl Managed for Send {
    type T = SendConnector;
    const NODE: Node = Node::OrgHub;
    fn object() -> &'static Object<SendConnector> {
        &send_connector::OBJECT
    }
    fn title(t: &SendConnector) -> String {
        t.name.clone()
    }
    fn url(t: &SendConnector) -> String {
        format!("/send-connectors/{}", t.id)
    }
    fn list_url(t: &SendConnector) -> String {
        format!("{SENDS}?selected={}", t.id)
    }
    async fn load(
        _: &ConsoleState,
        tx: &mut PgConnection,
        p: &Params,
    ) -> Result<SendConnector, OpError> {
        Ok(one(
            send_connector::get(tx, Some(&id_param(p)?), false).await?
        ))
    }
    async fn set(
        _: &ConsoleState,
        tx: &mut PgConnection,
        t: &SendConnector,
        v: &Values,
    ) -> Result<(), OpError> {
        // The console does not hold the organisation key: AuthenticationCredential is shown,
        // not set, here (Set-SendConnector in the shell sets it).
        send_connector::set(tx, &id_of(t.id, &t.name), v, None).await?;
        Ok(())
    }
    async fn remove(
        _: &ConsoleState,
        tx: &mut PgConnection,
        t: &SendConnector,
    ) -> Result<(), OpError> {
        send_connector::remove(tx, &id_of(t.id, &t.name)).await?;
        Ok(())
    }
}

impl permissions::HasAcl for Send {
    fn connector(t: &SendConnector) -> crate::ops::permission::Connector {
        crate::ops::permission::Connector {
            id: t.id,
            identity: t.name.clone(),
            is_send: true,
        }
    }
}

/// Transport Settings (Set-TransportConfig): one object for the organisation.
pub struct Config;

impl Managed for Config {
    type T = TransportConfig;
    const NODE: Node = Node::OrgHub;
    fn object() -> &'static Object<TransportConfig> {
        &transport::CONFIG
    }
    fn title(_: &TransportConfig) -> String {
        "Transport Settings".into()
    }
    fn url(_: &TransportConfig) -> String {
        "/transport-settings".into()
    }
    fn list_url(_: &TransportConfig) -> String {
        GLOBAL.into()
    }
    async fn load(
        _: &ConsoleState,
        tx: &mut PgConnection,
        _: &Params,
    ) -> Result<TransportConfig, OpError> {
        transport::get_config(tx).await
    }
    async fn set(
        _: &ConsoleState,
        tx: &mut PgConnection,
        _: &TransportConfig,
        v: &Values,
    ) -> Result<(), OpError> {
        transport::set_config(tx, v).await?;
        Ok(())
    }
    async fn remove(
        _: &ConsoleState,
        _: &mut PgConnection,
        _: &TransportConfig,
    ) -> Result<(), OpError> {
        Err(OpError::invalid(
            "Identity",
            "The transport settings cannot be removed.",
        ))
    }
}

/// Set-AcceptedDomain -MakeDefault $true.
async fn set_as_default(
    State(st): State<ConsoleState>,
    _: Admin,
    axum::extract::Path(p): axum::extract::Path<Params>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let d = Domain::load(&st, &mut tx, &p).await?;
    let v = Values::default().with("MakeDefault", crate::ops::props::Value::Bool(true));
    Domain::set(&st, &mut tx, &d, &v).await?;
    tx.commit().await?;
    super::see_other(&Domain::list_url(&d))
}

fn refresh(list: &str) -> Action {
    Action::get("Refresh", list)
}

pub async fn domains(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(sel): Query<Selected>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let all = accepted_domain::get(&mut tx, None, true).await?;
    let mut frame = Frame::new(&admin, Node::OrgHub, "Hub Transport")
        .tabs(tabs(DOMAINS))
        .actions(
            "Hub Transport",
            vec![
                Action::get("New Accepted Domain...", "/accepted-domains/new"),
                refresh(DOMAINS),
            ],
        );
    if let Some(d) = all.iter().find(|d| is(&sel, &d.id)) {
        let mut actions = object_actions::<Domain>(d);
        if !d.is_default {
            actions.insert(
                0,
                Action::post(
                    "Set as Default",
                    format!("{}/set-as-default", Domain::url(d)),
                ),
            );
        }
        frame = frame.actions(d.name.clone(), actions);
    }
    let rows = all
        .iter()
        .map(|d| Row {
            href: Domain::list_url(d),
            selected: is(&sel, &d.id),
            cells: vec![
                d.name.clone(),
                d.domain_name.clone(),
                d.domain_type.clone(),
                if d.is_default { "True" } else { "False" }.into(),
            ],
        })
        .collect();
    page(&ListPage {
        frame,
        tables: vec![Table {
            id: "accepted-domains",
            caption: String::new(),
            columns: vec!["Name", "Accepted Domain Name", "Domain Type", "Default"],
            rows,
        }],
    })
}

/// An address space's cost (`SMTP:*;1` → `1`).
fn cost(space: &str) -> String {
    space
        .rsplit_once(';')
        .map(|(_, c)| c.to_string())
        .unwrap_or_else(|| "1".into())
}

pub async fn sends(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(sel): Query<Selected>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let all = send_connector::get(&mut tx, None, true).await?;
    let mut frame = Frame::new(&admin, Node::OrgHub, "Hub Transport")
        .tabs(tabs(SENDS))
        .actions(
            "Hub Transport",
            vec![
                Action::get("New Send Connector...", "/send-connectors/new"),
                refresh(SENDS),
            ],
        );
    if let Some(c) = all.iter().find(|c| is(&sel, &c.id)) {
        let mut actions = object_actions::<Send>(c);
        actions.insert(
            actions.len() - 1,
            Action::get("Manage Permissions", permissions::url::<Send>(c)),
        );
        frame = frame.actions(c.name.clone(), actions);
    }
    let rows = all
        .iter()
        .map(|c| Row {
            href: Send::list_url(c),
            selected: is(&sel, &c.id),
            cells: vec![
                c.name.clone(),
                if c.enabled { "Enabled" } else { "Disabled" }.into(),
                c.address_spaces.join(", "),
                c.address_spaces
                    .iter()
                    .map(|s| cost(s))
                    .collect::<Vec<_>>()
                    .join(", "),
            ],
        })
        .collect();
    page(&ListPage {
        frame,
        tables: vec![Table {
            id: "send-connectors",
            caption: String::new(),
            columns: vec!["Name", "Status", "Address Spaces", "Cost"],
            rows,
        }],
    })
}

pub async fn global(State(st): State<ConsoleState>, admin: Admin) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let c = transport::get_config(&mut tx).await?;
    let frame = Frame::new(&admin, Node::OrgHub, "Hub Transport")
        .tabs(tabs(GLOBAL))
        .actions("Hub Transport", vec![refresh(GLOBAL)])
        .actions(
            "Transport Settings",
            vec![Action::get("Properties", properties::<Config>(&c))],
        );
    page(&ListPage {
        frame,
        tables: vec![Table {
            id: "global-settings",
            caption: String::new(),
            columns: vec!["Name", "Description"],
            rows: vec![Row {
                href: properties::<Config>(&c),
                selected: true,
                cells: vec![
                    "Transport Settings".into(),
                    "Organization-wide transport settings (Set-TransportConfig)".into(),
                ],
            }],
        }],
    })
}
