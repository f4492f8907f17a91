//! New Receive Connector: Introduction (name, intended use and the preset it applies) → Local
//! Network settings (bindings and FQDN; not for Internal) → Remote Network settings (remote
//! ranges; not for Internet) → New Connector → Completion, opened from a server's page
//! (`?server=HUB1`).
//!
//! Internal has no Local Network settings page (seed 001), so it listens where the server's
//! `Default <SERVER>` connector listens: that is the EMC's `0.0.0.0:25` on a server installed
//! with Exchange's defaults, and on a gateway bound elsewhere it is the address its peers
//! already send to, which cannot clash with the listener the server holds. With no Default
//! connector the operation's preset (`0.0.0.0:25`) applies.

use std::net::IpAddr;

use sqlx::PgConnection;

use super::{Created, Dialog, Draft, Errors, Params, WField, Wizard, page_errors};
use crate::console::pages::server_hub::SERVERS;
use crate::console::pages::{Node, PageError, seg};
use crate::console::state::ConsoleState;
use crate::ops::props::{Value, Values};
use crate::ops::{OpError, receive_connector};
use crate::org::network::{Binding, IpRange};
use crate::org::{ReceiveConnector, timespan};
use crate::shell::Obj;

const INTRO: &str = "Introduction";
const LOCAL: &str = "Local Network settings";
const REMOTE: &str = "Remote Network settings";
const NEW: &str = "New Connector";

/// The EMC's start values: every address on port 25, from anywhere.
const ALL_BINDING: &str = "0.0.0.0:25";
const ALL_RANGE: &str = "0.0.0.0-255.255.255.255";
/// Posted by the Local Network settings page: the use its bindings were shown for.
const BINDINGS_FOR: &str = "BindingsFor";

pub struct NewReceiveConnector;

/// The intended use the draft holds (Custom when it holds none the operation knows).
fn usage(d: &Draft) -> &'static str {
    let u = d.text("Usage");
    receive_connector::USAGE
        .iter()
        .find(|x| x.eq_ignore_ascii_case(&u))
        .copied()
        .unwrap_or("Custom")
}

fn has_local(usage: &str) -> bool {
    usage != "Internal"
}

fn has_remote(usage: &str) -> bool {
    usage != "Internet"
}

/// The inputs each page holds, for placing an operation's error beside one.
fn inputs(step: &str) -> &'static [&'static str] {
    match step {
        INTRO => &["Name", "Usage", "Server"],
        LOCAL => &["Bindings", "Fqdn"],
        REMOTE => &["RemoteIPRanges"],
        _ => &[],
    }
}

fn preset_connector(usage: &str) -> ReceiveConnector {
    let mut c = ReceiveConnector::new("", "", "");
    receive_connector::preset(&mut c, Some(usage));
    c
}

/// The MaxAcknowledgementDelay `usage` sets: none for Internet, hubgate's difference from
/// Exchange, so the wizard says it.
fn ack_delay(usage: &str) -> String {
    timespan(preset_connector(usage).max_acknowledgement_delay)
}

/// The PermissionGroups and AuthMechanism `usage` sets, as the operation's preset makes them.
fn preset(usage: &str) -> (String, String) {
    let c = preset_connector(usage);
    let groups = if c.permission_groups.is_empty() {
        "None".to_string()
    } else {
        c.permission_groups.join(", ")
    };
    (groups, c.auth_mechanism.join(", "))
}

fn server(d: &Draft, st: &ConsoleState) -> String {
    match d.text("Server") {
        s if s.is_empty() => st.server.clone(),
        s => s,
    }
}

/// A binding as the EMC lists it: `(All Available)` for every address, and the port.
fn binding_cells(b: &str) -> Vec<String> {
    match b.parse::<Binding>() {
        Ok(Binding(a)) if a.ip().is_unspecified() && a.is_ipv4() => {
            vec!["(All Available)".into(), a.port().to_string()]
        }
        Ok(Binding(a)) if a.ip().is_unspecified() => {
            vec!["(All Available IPv6)".into(), a.port().to_string()]
        }
        Ok(Binding(a)) => vec![a.ip().to_string(), a.port().to_string()],
        Err(_) => vec![b.to_string(), String::new()],
    }
}

/// The bindings a use starts with: its preset's (Client's `0.0.0.0:587`), else the EMC's
/// `0.0.0.0:25`.
fn start_bindings(usage: &str) -> Vec<String> {
    let b = preset_connector(usage).bindings;
    if b.is_empty() {
        vec![ALL_BINDING.to_string()]
    } else {
        b
    }
}

/// The Local Network settings' bindings: the use's start value until that page has been
/// shown (or bindings given), and again after the use changes if they were left as they started.
fn bindings(d: &Draft) -> Vec<String> {
    let u = usage(d);
    let given = d.all("Bindings");
    match d.one(BINDINGS_FOR) {
        Some(f) if !f.eq_ignore_ascii_case(u) && given == start_bindings(f) => start_bindings(u),
        None if given.is_empty() => start_bindings(u),
        _ => given,
    }
}

/// The bindings of the server's `Default <SERVER>` connector, where Internal listens.
async fn default_bindings(
    tx: &mut PgConnection,
    server: &str,
) -> Result<Option<Vec<String>>, OpError> {
    let name = format!("Default {server}");
    Ok(ReceiveConnector::load_all(tx)
        .await?
        .into_iter()
        .find(|c| c.server.eq_ignore_ascii_case(server) && c.name.eq_ignore_ascii_case(&name))
        .map(|c| c.bindings))
}

/// The draft as New-ReceiveConnector's parameters: only those of the pages this use has.
async fn values(
    st: &ConsoleState,
    tx: &mut PgConnection,
    d: &Draft,
) -> Result<Result<Values, Errors>, OpError> {
    let name = d.text("Name");
    if name.is_empty() {
        // What the shell says when a mandatory parameter is left out.
        return Ok(Err(Errors::one(
            "Name",
            OpError::MissingMandatory(vec!["Name"]).to_string(),
        )));
    }
    let u = usage(d);
    let server = server(d, st);
    let mut v = Values::default()
        .with("Name", Value::Str(name))
        .with("Server", Value::Str(server.clone()))
        .with("Usage", Value::Str(u.into()));
    if has_local(u) {
        v = v.with("Bindings", Value::List(bindings(d)));
        let fqdn = d.text("Fqdn");
        if !fqdn.is_empty() {
            v = v.with("Fqdn", Value::Str(fqdn));
        }
    } else if let Some(b) = default_bindings(tx, &server).await? {
        v = v.with("Bindings", Value::List(b));
    }
    if has_remote(u) {
        v = v.with("RemoteIPRanges", Value::List(d.all("RemoteIPRanges")));
    }
    Ok(Ok(v))
}

fn binding_fields(item: Option<&str>) -> Vec<WField> {
    let (which, address, port) = match item.and_then(|b| b.parse::<Binding>().ok()) {
        Some(Binding(a)) if a.ip().is_unspecified() => ("All", String::new(), a.port()),
        Some(Binding(a)) => ("Specific", a.ip().to_string(), a.port()),
        None => ("All", String::new(), 25),
    };
    vec![
        WField::radio(
            "Which",
            "Local IP address:",
            &[
                ("All", "Use all IP addresses available on this server"),
                ("Specific", "Specify an IP address:"),
            ],
            which,
        ),
        WField::text("Address", "IP address:", address)
            .indented()
            .hint("For example 192.168.1.10 or 2001:db8::10."),
        WField::text("Port", "Port:", port.to_string()),
    ]
}

/// The binding the dialog's inputs make, refused in the words of the binding's own check,
/// beside the input at fault.
fn binding_item(i: &Draft) -> Result<String, Errors> {
    let port = i.text("Port");
    let address = if i.one("Which") == Some("Specific") {
        i.text("Address")
    } else {
        "0.0.0.0".into()
    };
    let text = match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) => format!("[{a}]:{port}"),
        _ => format!("{address}:{port}"),
    };
    match text.parse::<Binding>() {
        Ok(b) => Ok(b.to_string()),
        Err(e) if address.parse::<IpAddr>().is_err() => Err(Errors::one("Address", e.to_string())),
        Err(e) => Err(Errors::one("Port", e.to_string())),
    }
}

fn range_fields(item: Option<&str>) -> Vec<WField> {
    vec![
        WField::text("Range", "Address or address range:", item.unwrap_or("")).hint(
            "An IP address (192.168.1.10), a range (192.168.1.10-192.168.1.20) or an address with a subnet mask length (192.168.1.0/24); IPv4 or IPv6.",
        ),
    ]
}

fn range_item(i: &Draft) -> Result<String, Errors> {
    let t = i.text("Range");
    match t.parse::<IpRange>() {
        Ok(_) => Ok(t),
        Err(e) => Err(Errors::one("Range", e.to_string())),
    }
}

impl Wizard for NewReceiveConnector {
    const TITLE: &'static str = "New Receive Connector";
    const NODE: Node = Node::ServerHub;

    fn cancel(p: &Params) -> String {
        match p.get("server") {
            Some(s) => format!("{SERVERS}/{}", seg(s)),
            None => SERVERS.into(),
        }
    }

    fn start(st: &ConsoleState, p: &Params) -> Draft {
        let server = p
            .get("server")
            .cloned()
            .unwrap_or_else(|| st.server.clone());
        let mut d = Draft::default()
            .with("Server", server.clone())
            .with("Usage", "Custom")
            .with("RemoteIPRanges", ALL_RANGE);
        // Another server's FQDN is not known here; left empty, the operation gives it.
        if server.eq_ignore_ascii_case(&st.server) {
            d.set("Fqdn", st.fqdn.clone());
        }
        d
    }

    fn steps(d: &Draft) -> Vec<&'static str> {
        let u = usage(d);
        let mut s = vec![INTRO];
        if has_local(u) {
            s.push(LOCAL);
        }
        if has_remote(u) {
            s.push(REMOTE);
        }
        s.extend([NEW, super::COMPLETION]);
        s
    }

    fn intro(step: &str) -> &'static str {
        match step {
            INTRO => {
                "This wizard helps you create a new Receive connector. A Receive connector accepts SMTP connections from the remote servers and clients you allow, on the local addresses and ports you choose."
            }
            LOCAL => {
                "Use these local IP addresses to receive mail. The FQDN is what this connector gives in its banner and in its reply to HELO or EHLO."
            }
            REMOTE => {
                "Specify the IP address(es) of the remote servers this connector receives mail from."
            }
            NEW => "The wizard will create the Receive connector with these settings. Click New.",
            _ => "",
        }
    }

    fn fields(_: &ConsoleState, d: &Draft, step: &str) -> Vec<WField> {
        let u = usage(d);
        match step {
            INTRO => {
                let (groups, auth) = preset(u);
                let choices: Vec<(&str, &str)> =
                    receive_connector::USAGE.iter().map(|x| (*x, *x)).collect();
                vec![
                    WField::draft_text(d, "Name", "Name:"),
                    WField::select(
                        "Usage",
                        "Select the intended use for this Receive connector:",
                        &choices,
                        u,
                    )
                    .redraws(),
                    WField::readonly("PermissionGroups", "Permission groups:", groups).indented(),
                    WField::readonly("AuthMechanism", "Authentication mechanisms:", auth)
                        .indented(),
                    WField::readonly(
                        "MaxAcknowledgementDelay",
                        "Maximum acknowledgement delay:",
                        ack_delay(u),
                    )
                    .indented(),
                ]
            }
            LOCAL => vec![
                WField::list(
                    "Bindings",
                    "Use these local IP addresses to receive mail:",
                    &["IP Address(es)", "Port"],
                    bindings(d)
                        .into_iter()
                        .map(|b| {
                            let cells = binding_cells(&b);
                            (b, cells)
                        })
                        .collect(),
                ),
                WField::draft_text(
                    d,
                    "Fqdn",
                    "Specify the FQDN this connector will provide in response to HELO or EHLO:",
                ),
                WField::hidden(BINDINGS_FOR, u),
            ],
            REMOTE => {
                let mut f = vec![WField::list(
                    "RemoteIPRanges",
                    "Receive mail from remote servers that have these IP addresses:",
                    &["IP Address(es)"],
                    d.all("RemoteIPRanges")
                        .into_iter()
                        .map(|r| (r.clone(), vec![r]))
                        .collect(),
                )];
                if !has_local(u) {
                    f.push(WField::note(
                        "InternalBindings",
                        "An Internal connector listens where the server's Default connector does (0.0.0.0:25 on a server without one).",
                    ));
                }
                f
            }
            _ => vec![],
        }
    }

    fn dialog(list: &str) -> Option<Dialog> {
        match list {
            "Bindings" => Some(Dialog {
                title: "Add Receive Connector Binding",
                fields: binding_fields,
                item: binding_item,
            }),
            "RemoteIPRanges" => Some(Dialog {
                title: "Add IP Address(es) of Remote Servers",
                fields: range_fields,
                item: range_item,
            }),
            _ => None,
        }
    }

    async fn check(
        st: &ConsoleState,
        tx: &mut PgConnection,
        d: &Draft,
        step: &str,
    ) -> Result<Errors, PageError> {
        let v = match values(st, tx, d).await? {
            Ok(v) => v,
            Err(e) => return Ok(e),
        };
        let steps = Self::steps(d);
        let at = steps.iter().position(|s| *s == step).unwrap_or(0);
        let later: Vec<&str> = steps[at + 1..]
            .iter()
            .flat_map(|s| inputs(s).iter().copied())
            .collect();
        Ok(match receive_connector::new(tx, &st.server, &v).await {
            Ok(_) => Errors::default(),
            Err(e @ OpError::Db(_)) => return Err(e.into()),
            // A pair another connector has can be changed on either page: the later one says so.
            Err(e) if e.to_string().starts_with(receive_connector::CONFLICT) => {
                if later.contains(&"RemoteIPRanges") {
                    Errors::default()
                } else if step == REMOTE {
                    Errors::one("RemoteIPRanges", e.to_string())
                } else {
                    page_errors(&e, inputs(step), &later)
                }
            }
            Err(e) => page_errors(&e, inputs(step), &later),
        })
    }

    fn summary(d: &Draft) -> Vec<String> {
        let u = usage(d);
        let (groups, auth) = preset(u);
        let mut s = vec![
            format!("Name: {}", d.text("Name")),
            format!("Intended use: {u}"),
            format!("Server: {}", d.text("Server")),
        ];
        if has_local(u) {
            s.push(format!("Bindings: {}", bindings(d).join(", ")));
            let fqdn = d.text("Fqdn");
            if !fqdn.is_empty() {
                s.push(format!("FQDN: {fqdn}"));
            }
        } else {
            s.push("Bindings: those of the server's Default connector".into());
        }
        let ranges = if has_remote(u) {
            d.all("RemoteIPRanges")
        } else {
            preset_connector(u).remote_ip_ranges
        };
        s.push(format!("Remote IP ranges: {}", ranges.join(", ")));
        s.push(format!("Permission groups: {groups}"));
        s.push(format!("Authentication mechanisms: {auth}"));
        s.push(format!("Maximum acknowledgement delay: {}", ack_delay(u)));
        s
    }

    async fn create(
        st: &ConsoleState,
        tx: &mut PgConnection,
        d: &Draft,
    ) -> Result<Created, OpError> {
        let v = values(st, tx, d).await?.map_err(|e| OpError::Invalid {
            param: None,
            message: e.0.into_values().next().unwrap_or_default(),
        })?;
        let made = receive_connector::new(tx, &st.server, &v).await?.after;
        let obj = Obj::ReceiveConnector(made.clone());
        let mut summary = vec![
            made.identity(),
            format!("Bindings: {}", made.bindings.join(", ")),
            format!("Remote IP ranges: {}", made.remote_ip_ranges.join(", ")),
            format!("FQDN: {}", made.fqdn),
            format!("Permission groups: {}", made.permission_groups.join(", ")),
            format!(
                "Authentication mechanisms: {}",
                made.auth_mechanism.join(", ")
            ),
        ];
        summary.extend(crate::shell::unenforced::warnings(&obj));
        Ok(Created {
            cmdlet: crate::shell::render::new_cmdlet(&obj),
            finish: format!("{SERVERS}/{}?selected={}", seg(&made.server), made.id),
            summary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_internet_connectors_hold_back_no_acknowledgement() {
        let line = |u: &str| {
            NewReceiveConnector::summary(&Draft::default().with("Usage", u))
                .into_iter()
                .find(|l| l.starts_with("Maximum acknowledgement delay: "))
                .unwrap()
        };
        // hubgate's difference from Exchange (30 s everywhere), shown before New is clicked.
        assert_eq!(line("Internet"), "Maximum acknowledgement delay: 00:00:00");
        assert_eq!(line("Internal"), "Maximum acknowledgement delay: 00:00:30");
        assert_eq!(line("Client"), "Maximum acknowledgement delay: 00:00:30");
    }
}
