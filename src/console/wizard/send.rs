//! New SMTP Send Connector: Introduction → Address space → Network settings → (with smart
//! hosts) Configure smart host authentication settings → Source Server → New Connector →
//! Completion, every page checked by New-SendConnector's own operation.

use sqlx::PgConnection;

use super::send_pages::{self, AUTH, INTRO, NETWORK, NEW, SOURCE, SPACE};
use super::{Created, Dialog, Draft, Errors, Offers, Params, WField, Wizard, page_errors};
use crate::console::pages::org_hub::SENDS;
use crate::console::pages::{Node, PageError};
use crate::console::state::ConsoleState;
use crate::ops::props::{Value, Values};
use crate::ops::{OpError, send_connector};
use crate::org::TransportServer;
use crate::shell::Obj;

pub struct NewSendConnector;

/// The pages with inputs in order, and the operation's parameters each one sets.
const PAGES: &[(&str, &[&str])] = &[
    (INTRO, &["Name", "Usage"]),
    (SPACE, &["AddressSpaces", "IsScopedConnector"]),
    (
        NETWORK,
        &[
            "DNSRoutingEnabled",
            "SmartHosts",
            "UseExternalDNSServersEnabled",
        ],
    ),
    (
        AUTH,
        &["SmartHostAuthMechanism", "AuthenticationCredential"],
    ),
    (SOURCE, &["SourceTransportServers"]),
];

/// The page's index in `PAGES`; the pages after them (New Connector) are past the end.
fn page_index(step: &str) -> usize {
    PAGES
        .iter()
        .position(|(s, _)| *s == step)
        .unwrap_or(PAGES.len())
}

/// New-SendConnector's parameters from the pages up to `upto` (an index in `PAGES`, or past
/// it for all of them); the later
/// pages' are stood in for by values the operation accepts, so a page is refused only for
/// what it and the pages before it hold.
fn values(st: &ConsoleState, d: &Draft, upto: usize) -> Values {
    let mut v = Values::default();
    let name = d.text("Name");
    if !name.is_empty() {
        v = v.with("Name", Value::Str(name));
    }
    v = v.with("Usage", Value::Str(send_pages::usage(d)));
    let spaces = if upto >= 1 {
        d.all("AddressSpaces")
    } else {
        vec!["SMTP:*;1".into()]
    };
    v = v.with("AddressSpaces", Value::List(spaces));
    if upto >= 1 {
        v = v.with(
            "IsScopedConnector",
            Value::Bool(d.flag("IsScopedConnector")),
        );
    }
    let smart = upto >= 2 && send_pages::smart_hosts(d);
    if upto >= 2 {
        v = v.with("DNSRoutingEnabled", Value::Bool(!smart)).with(
            "UseExternalDNSServersEnabled",
            Value::Bool(d.flag("UseExternalDNSServersEnabled")),
        );
        if smart {
            v = v.with("SmartHosts", Value::List(d.all("SmartHosts")));
        }
    }
    if upto >= 3 && smart {
        let m = send_pages::mechanism(d);
        if send_pages::is_basic(&m) {
            v = v.with(
                "AuthenticationCredential",
                Value::Cred {
                    user: d.text("UserName"),
                    password: d.one("Password").unwrap_or("").to_string(),
                },
            );
        }
        v = v.with("SmartHostAuthMechanism", Value::Str(m));
    }
    let servers = if upto >= 4 {
        d.all("SourceTransportServers")
    } else {
        vec![st.server.clone()]
    };
    v.with("SourceTransportServers", Value::List(servers))
}

/// The operation's error beside the input that holds what it names.
fn beside(e: &OpError, d: &Draft, at: usize) -> Errors {
    let inputs = PAGES.get(at).map_or(&[][..], |(_, i)| *i);
    let mut errors = page_errors(e, inputs, &[]);
    let rename = |errors: &mut Errors, from: &str, to: &str| {
        if let Some(m) = errors.0.remove(from) {
            errors.0.insert(to.to_string(), m);
        }
    };
    rename(&mut errors, "DNSRoutingEnabled", "Routing");
    let credential_input = if d.text("UserName").is_empty() {
        "UserName"
    } else {
        "Password"
    };
    rename(&mut errors, "AuthenticationCredential", credential_input);
    errors
}

impl Wizard for NewSendConnector {
    const TITLE: &'static str = "New SMTP Send Connector";
    const NODE: Node = Node::OrgHub;
    const SECRETS: &'static [&'static str] = &["Password"];

    fn cancel(_: &Params) -> String {
        SENDS.into()
    }

    fn start(st: &ConsoleState, _: &Params) -> Draft {
        Draft::default()
            .with("Usage", "Custom")
            .with("SourceTransportServers", st.server.clone())
    }

    fn steps(d: &Draft) -> Vec<&'static str> {
        let mut s = vec![INTRO, SPACE, NETWORK];
        if send_pages::smart_hosts(d) {
            s.push(AUTH);
        }
        s.extend([SOURCE, NEW, super::COMPLETION]);
        s
    }

    fn intro(step: &str) -> &'static str {
        send_pages::intro(step)
    }

    fn fields(_: &ConsoleState, d: &Draft, step: &str) -> Vec<WField> {
        send_pages::fields(d, step, &Offers::new())
    }

    async fn offers(st: &ConsoleState) -> Result<Offers, PageError> {
        let mut conn = st.pool.acquire().await?;
        let servers = TransportServer::load_all(&mut conn)
            .await
            .map_err(OpError::from)?;
        let mut o = Offers::new();
        o.insert(
            "SourceTransportServers",
            servers
                .into_iter()
                .map(|s| {
                    let label = format!("{} ({})", s.name, s.fqdn);
                    (s.name, label)
                })
                .collect(),
        );
        Ok(o)
    }

    fn offered_fields(_: &ConsoleState, d: &Draft, step: &str, offers: &Offers) -> Vec<WField> {
        send_pages::fields(d, step, offers)
    }

    fn dialog(list: &str) -> Option<Dialog> {
        send_pages::dialog(list)
    }

    async fn check(
        st: &ConsoleState,
        tx: &mut PgConnection,
        d: &Draft,
        step: &str,
    ) -> Result<Errors, PageError> {
        let at = page_index(step);
        let v = values(st, d, at);
        Ok(
            match send_connector::new(tx, &st.server, &v, st.org_key.as_deref()).await {
                Ok(_) => Errors::default(),
                Err(e @ OpError::Db(_)) => return Err(e.into()),
                Err(e) => beside(&e, d, at),
            },
        )
    }

    fn summary(d: &Draft) -> Vec<String> {
        send_pages::summary(d)
    }

    async fn create(
        st: &ConsoleState,
        tx: &mut PgConnection,
        d: &Draft,
    ) -> Result<Created, OpError> {
        let v = values(st, d, PAGES.len());
        let made = send_connector::new(tx, &st.server, &v, st.org_key.as_deref())
            .await?
            .after;
        let obj = Obj::SendConnector(made.clone());
        let mut summary = send_pages::summary(d);
        summary.extend(crate::shell::unenforced::warnings(&obj));
        Ok(Created {
            cmdlet: crate::shell::render::new_cmdlet(&obj),
            finish: format!("{SENDS}?selected={}", made.id),
            summary,
        })
    }
}
