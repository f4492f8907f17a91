//! Server Configuration › Hub Transport: the servers sharing the database, and the selected
//! server's Receive Connectors.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use sqlx::PgConnection;

use super::fields::Errors;
use super::object::{Managed, Params, id_param, object_actions, object_routes, properties};
use super::org_hub::{Selected, id_of};
use super::view::{Action, FieldView, Frame, Link, ListPage, Node, Row, Table};
use super::{FormData, PageError, PageResult, limits, page, permissions, seg};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::ops::props::{Object, Values};
use crate::ops::{Identity, OpError, one, receive_connector, transport};
use crate::org::{ReceiveConnector, TransportServer};

pub const SERVERS: &str = "/server/hub";

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route(SERVERS, get(servers))
        .route("/server/hub/{server}", get(server))
        .merge(object_routes::<Server>("/servers/{server}"))
        .merge(object_routes::<Receive>("/receive-connectors/{id}"))
        .merge(crate::console::wizard::routes::<
            crate::console::wizard::receive::NewReceiveConnector,
        >("/receive-connectors/new"))
        .merge(permissions::routes::<Receive>("/receive-connectors/{id}"))
}

pub struct Server;

impl Managed for Server {
    type T = TransportServer;
    const NODE: Node = Node::ServerHub;
    fn object() -> &'static Object<TransportServer> {
        &transport::SERVER
    }
    fn title(t: &TransportServer) -> String {
        t.name.clone()
    }
    fn url(t: &TransportServer) -> String {
        format!("/servers/{}", seg(&t.name))
    }
    fn list_url(t: &TransportServer) -> String {
        format!("{SERVERS}/{}", seg(&t.name))
    }
    async fn load(
        _: &ConsoleState,
        tx: &mut PgConnection,
        p: &Params,
    ) -> Result<TransportServer, OpError> {
        let name = p.get("server").cloned().unwrap_or_default();
        // A name, never a pattern: `*` in a URL names no server.
        if name.contains(['*', '?']) {
            return Err(OpError::NotFound(name));
        }
        Ok(one(transport::get_servers(
            tx,
            Some(&Identity::Name(name)),
            false,
        )
        .await?))
    }
    async fn set(
        _: &ConsoleState,
        tx: &mut PgConnection,
        t: &TransportServer,
        v: &Values,
    ) -> Result<(), OpError> {
        transport::set_server(tx, &Identity::Name(t.name.clone()), v).await?;
        Ok(())
    }
    async fn remove(
        _: &ConsoleState,
        _: &mut PgConnection,
        _: &TransportServer,
    ) -> Result<(), OpError> {
        Err(OpError::invalid(
            "Identity",
            "A transport server leaves the organisation when it is uninstalled, not from here.",
        ))
    }
    fn fields(t: &TransportServer, tab: &str, form: Option<&FormData>) -> Vec<FieldView> {
        if tab == "Limits" {
            limits::fields(t, form)
        } else {
            super::fields::tab_fields(&transport::SERVER, t, tab, form)
        }
    }
    fn values(t: &TransportServer, tab: &str, form: &FormData) -> Result<Values, Errors> {
        if tab == "Limits" {
            limits::values(t, form)
        } else {
            super::fields::tab_values(&transport::SERVER, t, tab, form)
        }
    }
}

pub struct Receive;

impl Managed for Receive {
    type T = ReceiveConnector;
    const NODE: Node = Node::ServerHub;
    fn object() -> &'static Object<ReceiveConnector> {
        &receive_connector::OBJECT
    }
    fn title(t: &ReceiveConnector) -> String {
        t.identity()
    }
    fn url(t: &ReceiveConnector) -> String {
        format!("/receive-connectors/{}", t.id)
    }
    fn list_url(t: &ReceiveConnector) -> String {
        format!("{SERVERS}/{}?selected={}", seg(&t.server), t.id)
    }
    async fn load(
        st: &ConsoleState,
        tx: &mut PgConnection,
        p: &Params,
    ) -> Result<ReceiveConnector, OpError> {
        Ok(one(receive_connector::get(
            tx,
            &st.server,
            Some(&id_param(p)?),
            false,
        )
        .await?))
    }
    async fn set(
        st: &ConsoleState,
        tx: &mut PgConnection,
        t: &ReceiveConnector,
        v: &Values,
    ) -> Result<(), OpError> {
        receive_connector::set(tx, &st.server, &id_of(t.id, &t.identity()), v).await?;
        Ok(())
    }
    async fn remove(
        st: &ConsoleState,
        tx: &mut PgConnection,
        t: &ReceiveConnector,
    ) -> Result<(), OpError> {
        receive_connector::remove(tx, &st.server, &id_of(t.id, &t.identity())).await?;
        Ok(())
    }
}

impl permissions::HasAcl for Receive {
    fn connector(t: &ReceiveConnector) -> crate::ops::permission::Connector {
        crate::ops::permission::Connector {
            id: t.id,
            identity: t.identity(),
            is_send: false,
        }
    }
}

pub(super) fn server_rows(all: &[TransportServer], selected: Option<&str>) -> Table {
    Table {
        id: "servers",
        caption: String::new(),
        columns: vec!["Name", "Role", "FQDN"],
        rows: all
            .iter()
            .map(|s| Row {
                href: Server::list_url(s),
                selected: selected.is_some_and(|n| n.eq_ignore_ascii_case(&s.name)),
                cells: vec![s.name.clone(), "Hub Transport".into(), s.fqdn.clone()],
            })
            .collect(),
    }
}

pub(super) fn frame(admin: &Admin) -> Frame {
    Frame::new(admin, Node::ServerHub, "Hub Transport")
        .actions("Hub Transport", vec![Action::get("Refresh", SERVERS)])
}

pub async fn servers(State(st): State<ConsoleState>, admin: Admin) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let all = transport::get_servers(&mut tx, None, true).await?;
    page(&ListPage {
        frame: frame(&admin),
        tables: vec![server_rows(&all, None)],
    })
}

/// Every server, and which of them `name` names (case-insensitively); no page for none.
pub(super) async fn servers_with(
    tx: &mut PgConnection,
    name: &str,
) -> Result<(Vec<TransportServer>, usize), PageError> {
    let all = transport::get_servers(tx, None, true).await?;
    let i = all
        .iter()
        .position(|s| s.name.eq_ignore_ascii_case(name))
        .ok_or(PageError::NoPage)?;
    Ok((all, i))
}

/// The server list with `server` selected, and its receive connectors below.
pub async fn server(
    State(st): State<ConsoleState>,
    admin: Admin,
    Path(name): Path<String>,
    Query(sel): Query<Selected>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let (all, i) = servers_with(&mut tx, &name).await?;
    let s = &all[i];
    let connectors = receive_connector::on_server(
        receive_connector::get(&mut tx, &st.server, None, true).await?,
        Some(&s.name),
    );
    let mut frame = frame(&admin)
        .tabs(vec![
            Link::new("Receive Connectors", Server::list_url(s), true),
            Link::new("Dashboard", super::dashboard::url(&s.name), false),
        ])
        .actions(
            s.name.clone(),
            vec![
                Action::get(
                    "New Receive Connector...",
                    format!("/receive-connectors/new?server={}", seg(&s.name)),
                ),
                Action::get("Properties", properties::<Server>(s)),
            ],
        );
    let is = |c: &ReceiveConnector| sel.selected.as_deref() == Some(c.id.to_string().as_str());
    if let Some(c) = connectors.iter().find(|c| is(c)) {
        let mut actions = object_actions::<Receive>(c);
        actions.insert(
            actions.len() - 1,
            Action::get("Manage Permissions", permissions::url::<Receive>(c)),
        );
        frame = frame.actions(c.name.clone(), actions);
    }
    let rows = connectors
        .iter()
        .map(|c| Row {
            href: Receive::list_url(c),
            selected: is(c),
            cells: vec![
                c.name.clone(),
                if c.enabled { "Enabled" } else { "Disabled" }.into(),
                c.bindings.join(", "),
            ],
        })
        .collect();
    let mut tables = vec![
        server_rows(&all, Some(&s.name)),
        Table {
            id: "receive-connectors",
            caption: format!("Receive Connectors of {}", s.name),
            columns: vec!["Name", "Status", "Bindings"],
            rows,
        },
    ];
    tables.extend(super::certificates::table(
        &st,
        &s.name,
        &Server::list_url(s),
    ));
    page(&ListPage { frame, tables })
}
