//! New Accepted Domain: one page (Name, Accepted Domain, the three domain types, and hubgate's
//! optional expiry and delay overrides), `New`, then Completion.

use sqlx::PgConnection;

use super::{Created, Draft, Errors, Params, WField, Wizard, page_errors};
use crate::console::pages::org_hub::DOMAINS;
use crate::console::pages::{Node, PageError, fields};
use crate::console::state::ConsoleState;
use crate::ops::props::{Kind, Value, Values};
use crate::ops::{OpError, accepted_domain};
use crate::org::AcceptedDomain;
use crate::shell::Obj;

const PAGE: &str = "New Accepted Domain";

/// The EMC's three choices, in hubgate's words.
const TYPES: &[(&str, &str)] = &[
    (
        "Authoritative",
        "Authoritative Domain. E-mail is delivered to a recipient in this organization.",
    ),
    (
        "InternalRelay",
        "Internal Relay Domain. E-mail is delivered to recipients in this organization or relayed to an e-mail server at another physical location.",
    ),
    (
        "ExternalRelay",
        "External Relay Domain. E-mail is relayed to an e-mail server at another physical location by this gateway.",
    ),
];

const INPUTS: &[&str] = &[
    "Name",
    "DomainName",
    "DomainType",
    "MessageExpirationTimeout",
    "DelayNotificationTimeout",
];

pub struct NewAcceptedDomain;

/// The draft as New-AcceptedDomain's parameters; a value that does not parse is reported
/// beside its input.
fn values(d: &Draft) -> Result<Values, Errors> {
    let mut v = Values::default();
    let mut errors = Errors::default();
    for name in ["Name", "DomainName", "DomainType"] {
        let t = d.text(name);
        if !t.is_empty() {
            v = v.with(name, Value::Str(t));
        } else if name != "DomainType" {
            // What the shell says when a mandatory parameter is left out.
            errors.0.insert(
                name.into(),
                OpError::MissingMandatory(vec![name]).to_string(),
            );
        }
    }
    for name in ["MessageExpirationTimeout", "DelayNotificationTimeout"] {
        let t = d.text(name);
        if t.is_empty() {
            continue;
        }
        match fields::parse(Kind::TimeSpan, &t) {
            Ok(x) => v = v.with(name, x),
            Err(m) => {
                errors.0.insert(name.into(), m);
            }
        }
    }
    if errors.is_empty() {
        Ok(v)
    } else {
        Err(errors)
    }
}

impl Wizard for NewAcceptedDomain {
    const TITLE: &'static str = "New Accepted Domain";
    const NODE: Node = Node::OrgHub;

    fn cancel(_: &Params) -> String {
        DOMAINS.into()
    }

    fn start(_: &ConsoleState, _: &Params) -> Draft {
        Draft::default().with("DomainType", "Authoritative")
    }

    fn steps(_: &Draft) -> Vec<&'static str> {
        vec![PAGE, super::COMPLETION]
    }

    fn intro(_: &str) -> &'static str {
        "This wizard helps you create a new accepted domain. An accepted domain is an SMTP namespace for which this organization sends and receives e-mail."
    }

    fn fields(_: &ConsoleState, d: &Draft, _: &str) -> Vec<WField> {
        vec![
            WField::draft_text(d, "Name", "Name:"),
            WField::draft_text(d, "DomainName", "Accepted Domain:").hint(
                "For example contoso.com, or *.contoso.com for the domain and its subdomains.",
            ),
            WField::radio(
                "DomainType",
                "This accepted domain is:",
                TYPES,
                d.one("DomainType").unwrap_or("Authoritative"),
            ),
            WField::note(
                "overrides",
                "Beyond the EMC: hold mail for this domain longer or shorter than the server does (empty: the server's Limits apply).",
            ),
            WField::draft_text(d, "MessageExpirationTimeout", "Message expiration:")
                .hint("d.hh:mm:ss, for example 3.00:00:00"),
            WField::draft_text(d, "DelayNotificationTimeout", "Delay notification:")
                .hint("d.hh:mm:ss, for example 1.00:00:00"),
        ]
    }

    async fn check(
        _: &ConsoleState,
        tx: &mut PgConnection,
        d: &Draft,
        _: &str,
    ) -> Result<Errors, PageError> {
        let v = match values(d) {
            Ok(v) => v,
            Err(e) => return Ok(e),
        };
        Ok(match accepted_domain::new(tx, &v).await {
            Ok(_) => Errors::default(),
            Err(e @ OpError::Db(_)) => return Err(e.into()),
            Err(e) => page_errors(&e, INPUTS, &[]),
        })
    }

    async fn create(
        _: &ConsoleState,
        tx: &mut PgConnection,
        d: &Draft,
    ) -> Result<Created, OpError> {
        let v = values(d).map_err(|e| OpError::Invalid {
            param: None,
            message: e.0.into_values().next().unwrap_or_default(),
        })?;
        let made: AcceptedDomain = accepted_domain::new(tx, &v).await?;
        Ok(Created {
            cmdlet: crate::shell::render::new_cmdlet(&Obj::AcceptedDomain(made.clone())),
            finish: format!("{DOMAINS}?selected={}", made.id),
            summary: vec![
                made.name.clone(),
                format!("Accepted Domain: {}", made.domain_name),
                format!("Domain type: {}", made.domain_type),
            ],
        })
    }
}
