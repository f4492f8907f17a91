//! Recipient Configuration: the Mailbox and Mail Contact lists (the directory that Authoritative
//! and InternalRelay domains look recipients up in), with New and Remove.

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use sqlx::PgConnection;

use super::object::{
    Creatable, Managed, Params, id_param, new_routes, object_actions, object_routes,
};
use super::org_hub::{Selected, id_of};
use super::view::{Action, Frame, ListPage, Node, Row, Table};
use super::{PageResult, page};
use crate::console::session::Admin;
use crate::console::state::ConsoleState;
use crate::ops::props::{Object, Values};
use crate::ops::recipient::{self, R, Type};
use crate::ops::{OpError, one};

pub const MAILBOXES: &str = "/recipients/mailbox";
pub const CONTACTS: &str = "/recipients/mail-contact";

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route(MAILBOXES, get(list::<Mailbox>))
        .route(CONTACTS, get(list::<Contact>))
        .merge(object_routes::<Mailbox>("/mailboxes/{id}"))
        .merge(new_routes::<Mailbox>("/mailboxes/new"))
        .merge(object_routes::<Contact>("/mail-contacts/{id}"))
        .merge(new_routes::<Contact>("/mail-contacts/new"))
}

/// A recipient type's pages.
pub trait Kind: Creatable<T = R> {
    const TYPE: Type;
    const LIST: &'static str;
    const NODE_NAME: &'static str;
    const NEW_LINK: &'static str;
    /// Where its objects' pages are (`/mailboxes`); without the slash, its list's element id.
    const BASE: &'static str;
    const NEW_LABEL: &'static str;
    const COLUMNS: [&'static str; 2];
    fn address(r: &R) -> String;
}

macro_rules! recipient_kind {
    ($t:ident, $type:expr, $node:expr, $list:expr, $base:literal, $name:literal, $new:literal,
     $cols:expr, $addr:expr) => {
        pub struct $t;

        impl Managed for $t {
            type T = R;
            const NODE: Node = $node;
            fn object() -> &'static Object<R> {
                $type.object()
            }
            fn title(t: &R) -> String {
                t.0.name.clone()
            }
            fn url(t: &R) -> String {
                format!("{}/{}", $base, t.0.id)
            }
            fn list_url(t: &R) -> String {
                format!("{}?selected={}", $list, t.0.id)
            }
            async fn load(
                _: &ConsoleState,
                tx: &mut PgConnection,
                p: &Params,
            ) -> Result<R, OpError> {
                Ok(one(
                    recipient::get(tx, $type, Some(&id_param(p)?), false).await?
                ))
            }
            async fn set(
                _: &ConsoleState,
                tx: &mut PgConnection,
                t: &R,
                v: &Values,
            ) -> Result<(), OpError> {
                recipient::set(tx, $type, &id_of(t.0.id, &t.0.name), v).await?;
                Ok(())
            }
            async fn remove(_: &ConsoleState, tx: &mut PgConnection, t: &R) -> Result<(), OpError> {
                recipient::remove(tx, $type, &id_of(t.0.id, &t.0.name)).await?;
                Ok(())
            }
        }

        impl Creatable for $t {
            const NEW_TITLE: &'static str = $new;
            fn cancel(_: &Params) -> String {
                $list.into()
            }
            async fn create(
                _: &ConsoleState,
                tx: &mut PgConnection,
                _: &Params,
                v: &Values,
            ) -> Result<R, OpError> {
                recipient::new(tx, $type, v).await
            }
        }

        impl Kind for $t {
            const TYPE: Type = $type;
            const LIST: &'static str = $list;
            const NODE_NAME: &'static str = $name;
            const NEW_LINK: &'static str = concat!($base, "/new");
            const BASE: &'static str = $base;
            const NEW_LABEL: &'static str = concat!($new, "...");
            const COLUMNS: [&'static str; 2] = $cols;
            fn address(r: &R) -> String {
                $addr(r)
            }
        }
    };
}

recipient_kind!(
    Mailbox,
    Type::Mailbox,
    Node::Mailbox,
    MAILBOXES,
    "/mailboxes",
    "Mailbox",
    "New Mailbox",
    ["Display Name", "Primary SMTP Address"],
    |r: &R| r.0.primary_smtp_address.clone()
);

recipient_kind!(
    Contact,
    Type::MailContact,
    Node::MailContact,
    CONTACTS,
    "/mail-contacts",
    "Mail Contact",
    "New Mail Contact",
    ["Display Name", "External E-Mail Address"],
    |r: &R| r.0.external_email_address.clone().unwrap_or_default()
);

async fn list<K: Kind>(
    State(st): State<ConsoleState>,
    admin: Admin,
    Query(sel): Query<Selected>,
) -> PageResult {
    let mut tx = st.pool.begin().await?;
    let all = recipient::get(&mut tx, K::TYPE, None, true).await?;
    let is = |r: &R| sel.selected.as_deref() == Some(r.0.id.to_string().as_str());
    let mut frame = Frame::new(&admin, K::NODE, K::NODE_NAME).actions(
        K::NODE_NAME,
        vec![
            Action::get(K::NEW_LABEL, K::NEW_LINK),
            Action::get("Refresh", K::LIST),
        ],
    );
    if let Some(r) = all.iter().find(|r| is(r)) {
        frame = frame.actions(r.0.name.clone(), object_actions::<K>(r));
    }
    let rows = all
        .iter()
        .map(|r| Row {
            href: K::list_url(r),
            selected: is(r),
            cells: vec![r.0.name.clone(), K::address(r)],
        })
        .collect();
    page(&ListPage {
        frame,
        tables: vec![Table {
            id: K::BASE.trim_start_matches('/'),
            caption: String::new(),
            columns: K::COLUMNS.to_vec(),
            rows,
        }],
    })
}
