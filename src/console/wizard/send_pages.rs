//! The New SMTP Send Connector wizard's pages as drawn: their inputs, the two list dialogs
//! ("SMTP Address Space", "Add Smart Host") and the configuration summary.

use super::{Dialog, Draft, Errors, Offers, WField};
use crate::ops::OpError;
use crate::org::send_connector::{AddressSpace, AddressSpacePart, smart_host_fqdn, smart_host_ip};

pub const INTRO: &str = "Introduction";
pub const SPACE: &str = "Address space";
pub const NETWORK: &str = "Network settings";
pub const AUTH: &str = "Configure smart host authentication settings";
pub const SOURCE: &str = "Source Server";
pub const NEW: &str = "New Connector";

/// The intended uses, each with what it does (shown under the choice).
pub const USES: &[(&str, &str)] = &[
    (
        "Custom",
        "Custom: a connector you set up yourself, for the address spaces you give.",
    ),
    (
        "Internal",
        "Internal: routes mail through smart hosts (the transport servers of another forest or an internal relay).",
    ),
    (
        "Internet",
        "Internet: routes mail to the Internet by looking up each domain's DNS MX records.",
    ),
    (
        "Partner",
        "Partner: sends mail to a partner's domain over TLS with domain security.",
    ),
];

const DNS_LABEL: &str = "Use domain name system (DNS) \"MX\" records to route mail automatically";
const SMART_LABEL: &str = "Route mail through the following smart hosts:";
const EXTERNAL_DNS_LABEL: &str = "Use the External DNS Lookup settings on the transport server";

/// Basic Authentication last, so that its options drawn under the choices sit under it.
const MECHANISMS: &[(&str, &str)] = &[
    ("None", "None"),
    ("ExchangeServer", "Exchange Server Authentication"),
    (
        "ExternalAuthoritative",
        "Externally Secured (for example, with IPsec)",
    ),
    ("BasicAuth", "Basic Authentication"),
];

/// The intended use chosen (Custom until one is).
pub fn usage(d: &Draft) -> String {
    match d.text("Usage") {
        u if u.is_empty() => "Custom".into(),
        u => u,
    }
}

/// Whether mail goes through smart hosts: always with Internal (the EMC offers nothing else),
/// otherwise as chosen, DNS MX until a choice is made.
pub fn smart_hosts(d: &Draft) -> bool {
    usage(d) == "Internal" || d.one("Routing") == Some("SmartHosts")
}

/// The chosen -SmartHostAuthMechanism: Basic with "over TLS" ticked is BasicAuthRequireTLS.
pub fn mechanism(d: &Draft) -> String {
    match d.text("SmartHostAuthMechanism").as_str() {
        "" => "None".into(),
        "BasicAuth" if d.flag("BasicAuthRequireTLS") => "BasicAuthRequireTLS".into(),
        m => m.to_string(),
    }
}

pub fn is_basic(mechanism: &str) -> bool {
    mechanism.starts_with("BasicAuth")
}

fn label(choices: &[(&str, &str)], value: &str) -> String {
    choices
        .iter()
        .find(|(v, _)| *v == value)
        .map_or(value, |(_, l)| l)
        .to_string()
}

fn space_cells(value: &str) -> Vec<String> {
    match AddressSpace::parse(value) {
        Ok(a) => vec![a.address_type, a.domain, a.cost.to_string()],
        Err(_) => vec![String::new(), value.to_string(), String::new()],
    }
}

pub fn fields(d: &Draft, step: &str, offers: &Offers) -> Vec<WField> {
    match step {
        INTRO => {
            let u = usage(d);
            let choices: Vec<(&str, &str)> = USES.iter().map(|(v, _)| (*v, *v)).collect();
            vec![
                WField::draft_text(d, "Name", "Name:"),
                WField::select(
                    "Usage",
                    "Select the intended use for this Send connector:",
                    &choices,
                    &u,
                )
                .notes(USES),
            ]
        }
        SPACE => vec![
            WField::list(
                "AddressSpaces",
                "Specify the address space(s) to which this connector will route mail:",
                &["Type", "Address", "Cost"],
                d.all("AddressSpaces")
                    .into_iter()
                    .map(|v| {
                        let cells = space_cells(&v);
                        (v, cells)
                    })
                    .collect(),
            ),
            WField::checkbox(
                "IsScopedConnector",
                "Scoped send connector",
                d.flag("IsScopedConnector"),
            ),
        ],
        NETWORK => {
            let smart = smart_hosts(d);
            let mut routing = WField::radio(
                "Routing",
                "Select how to send e-mail with this connector:",
                &[("DNS", DNS_LABEL), ("SmartHosts", SMART_LABEL)],
                if smart { "SmartHosts" } else { "DNS" },
            );
            if usage(d) == "Internal" {
                routing = routing.disable("DNS");
            }
            // The lookup setting applies to both: smart hosts' names are looked up too.
            vec![
                routing,
                WField::list(
                    "SmartHosts",
                    "Smart hosts:",
                    &["Smart host"],
                    d.all("SmartHosts")
                        .into_iter()
                        .map(|h| (h.clone(), vec![h]))
                        .collect(),
                )
                .indented(),
                WField::checkbox(
                    "UseExternalDNSServersEnabled",
                    EXTERNAL_DNS_LABEL,
                    d.flag("UseExternalDNSServersEnabled"),
                ),
            ]
        }
        AUTH => {
            let m = d.text("SmartHostAuthMechanism");
            let chosen = if m.is_empty() { "None" } else { m.as_str() };
            vec![
                WField::radio(
                    "SmartHostAuthMechanism",
                    "Select the authentication the smart hosts require:",
                    MECHANISMS,
                    chosen,
                ),
                WField::checkbox(
                    "BasicAuthRequireTLS",
                    "Basic Authentication over TLS",
                    d.flag("BasicAuthRequireTLS"),
                )
                .indented(),
                WField::draft_text(d, "UserName", "User name:").indented(),
                WField::password("Password", "Password:", d.one("Password").unwrap_or(""))
                    .indented(),
            ]
        }
        SOURCE => {
            let servers = offers
                .get("SourceTransportServers")
                .cloned()
                .unwrap_or_default();
            vec![WField::checks(
                "SourceTransportServers",
                "Associate this connector with the following transport servers:",
                &servers,
                &d.all("SourceTransportServers"),
            )]
        }
        _ => vec![],
    }
}

pub fn intro(step: &str) -> &'static str {
    match step {
        INTRO => {
            "This wizard helps you create a new Send connector. A Send connector sends mail to the address spaces it lists, through DNS MX records or smart hosts."
        }
        SPACE => "Specify the address space(s) to which this connector will route mail.",
        AUTH => "The smart hosts may require this connector to authenticate.",
        SOURCE => {
            "The transport servers ticked here send mail through this connector; this server is ticked to start with."
        }
        NEW => "Review the configuration summary, then click New to create the Send connector.",
        _ => "",
    }
}

/// The configuration summary, from the draft.
pub fn summary(d: &Draft) -> Vec<String> {
    let mut out = vec![
        format!("Name: {}", d.text("Name")),
        format!("Intended use: {}", usage(d)),
        format!("Address space: {}", d.all("AddressSpaces").join(", ")),
        format!(
            "Scoped send connector: {}",
            if d.flag("IsScopedConnector") {
                "True"
            } else {
                "False"
            }
        ),
    ];
    if smart_hosts(d) {
        out.push(format!("Smart hosts: {}", d.all("SmartHosts").join(", ")));
        let m = mechanism(d);
        let shown = match m.as_str() {
            "BasicAuthRequireTLS" => "Basic Authentication over TLS".to_string(),
            m => label(MECHANISMS, m),
        };
        if is_basic(&m) {
            out.push(format!(
                "Smart host authentication: {shown} (user name: {})",
                d.text("UserName")
            ));
        } else {
            out.push(format!("Smart host authentication: {shown}"));
        }
    } else {
        out.push(DNS_LABEL.to_string());
    }
    out.push(format!(
        "{EXTERNAL_DNS_LABEL}: {}",
        if d.flag("UseExternalDNSServersEnabled") {
            "True"
        } else {
            "False"
        }
    ));
    out.push(format!(
        "Source servers: {}",
        d.all("SourceTransportServers").join(", ")
    ));
    out
}

pub fn dialog(list: &str) -> Option<Dialog> {
    match list {
        "AddressSpaces" => Some(Dialog {
            title: "SMTP Address Space",
            fields: space_fields,
            item: space_item,
        }),
        "SmartHosts" => Some(Dialog {
            title: "Add Smart Host",
            fields: host_fields,
            item: host_item,
        }),
        _ => None,
    }
}

fn space_fields(item: Option<&str>) -> Vec<WField> {
    let (address, all, cost) = match item.and_then(|i| AddressSpace::parse(i).ok()) {
        Some(a) => match a.domain.strip_prefix("*.") {
            Some(d) => (d.to_string(), true, a.cost.to_string()),
            None => (a.domain.clone(), false, a.cost.to_string()),
        },
        None => (String::new(), false, "1".to_string()),
    };
    vec![
        WField::text("Address", "Address:", address)
            .hint("For example contoso.com, or * for every domain."),
        WField::checkbox("IncludeSubdomains", "Include all subdomains", all),
        WField::text("Cost", "Cost:", cost),
    ]
}

/// The dialog's entry as -AddressSpaces takes it, checked by the operation's own parsing.
fn space_item(d: &Draft) -> Result<String, Errors> {
    let address = d.text("Address");
    let domain = if d.flag("IncludeSubdomains") && address != "*" && !address.starts_with("*.") {
        format!("*.{address}")
    } else {
        address
    };
    match AddressSpace::parse_located(&format!("SMTP:{domain};{}", d.text("Cost"))) {
        Ok(a) => Ok(a.to_string()),
        Err((part, e)) => {
            let at = match part {
                AddressSpacePart::Address => "Address",
                AddressSpacePart::Cost => "Cost",
            };
            Err(Errors::one(at, OpError::from(e).to_string()))
        }
    }
}

fn host_fields(item: Option<&str>) -> Vec<WField> {
    let kind = match item {
        Some(h) if smart_host_ip(h).is_err() => "FQDN",
        _ => "IP",
    };
    vec![
        WField::radio(
            "Kind",
            "Specify the smart host by:",
            &[
                ("IP", "IP address:"),
                ("FQDN", "Fully qualified domain name (FQDN):"),
            ],
            kind,
        ),
        WField::text("Address", "IP address or FQDN:", item.unwrap_or("")),
    ]
}

/// The dialog's entry as -SmartHosts takes it, checked by the operation's own rules for the
/// kind chosen.
fn host_item(d: &Draft) -> Result<String, Errors> {
    let address = d.text("Address");
    let checked = if d.one("Kind") == Some("FQDN") {
        smart_host_fqdn(&address)
    } else {
        smart_host_ip(&address).map(|_| ())
    };
    checked
        .map(|()| address)
        .map_err(|e| Errors::one("Address", OpError::from(e).to_string()))
}
