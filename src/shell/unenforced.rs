//! Parameters hubgate accepts and stores, so that an Exchange script or export runs unchanged, but
//! does not act on (yet). An admin who sets one must not believe it acts: New-/Set- print a
//! warning when a command gives it a value that asks for the missing behaviour, and every view of
//! the object shows that value with its caveat. One table, so that a parameter leaves it (and
//! its caveat disappears everywhere) the day it is implemented.

use super::bind::Bound;
use super::{Obj, format};
use crate::org::{
    AuthMechanism, ReceiveConnector, SendConnector, TransportConfig, TransportServer,
};

/// One stored-but-ignored parameter.
pub struct Unenforced {
    /// The property name, as Format-List shows it and the cmdlets take it.
    pub param: &'static str,
    /// Does this object's value ask for something hubgate does not do? `None`: another object
    /// type, which never has this property.
    pub counts: fn(&Obj) -> Option<bool>,
    /// Why it does nothing, said after "not enforced: ".
    pub reason: &'static str,
}

const DOMAIN_SECURE: &str = "hubgate does not implement domain-secure mutual TLS yet";

fn rc(o: &Obj, f: fn(&ReceiveConnector) -> bool) -> Option<bool> {
    match o {
        Obj::ReceiveConnector(c) => Some(f(c)),
        _ => None,
    }
}
fn sc(o: &Obj, f: fn(&SendConnector) -> bool) -> Option<bool> {
    match o {
        Obj::SendConnector(c) => Some(f(c)),
        _ => None,
    }
}
fn ts(o: &Obj, f: fn(&TransportServer) -> bool) -> Option<bool> {
    match o {
        Obj::TransportServer(s) => Some(f(s)),
        _ => None,
    }
}
fn tc(o: &Obj, f: fn(&TransportConfig) -> bool) -> Option<bool> {
    match o {
        Obj::TransportConfig(c) => Some(f(c)),
        _ => None,
    }
}

/// Booleans and limits count when they ask for the behaviour (a limit is a promise even at its
/// default); tuning values of a missing feature count when they differ from Exchange's default.
pub const TABLE: &[Unenforced] = &[
    Unenforced {
        param: "DomainSecureEnabled",
        counts: |o| rc(o, |c| c.domain_secure_enabled),
        reason: DOMAIN_SECURE,
    },
    Unenforced {
        param: "DomainSecureEnabled",
        counts: |o| sc(o, |c| c.domain_secure_enabled),
        reason: DOMAIN_SECURE,
    },
    Unenforced {
        param: "TLSReceiveDomainSecureList",
        counts: |o| tc(o, |c| !c.tls_receive_domain_secure_list.is_empty()),
        reason: DOMAIN_SECURE,
    },
    Unenforced {
        param: "TLSSendDomainSecureList",
        counts: |o| tc(o, |c| !c.tls_send_domain_secure_list.is_empty()),
        reason: DOMAIN_SECURE,
    },
    Unenforced {
        param: "AuthMechanism",
        counts: |o| rc(o, |c| c.has_auth(AuthMechanism::Integrated)),
        reason: "hubgate offers no Integrated (NTLM or Kerberos) authentication; clients authenticate with BasicAuth",
    },
    Unenforced {
        param: "EnableAuthGSSAPI",
        counts: |o| rc(o, |c| c.enable_auth_gssapi),
        reason: "hubgate offers no Integrated (NTLM or Kerberos) authentication; clients authenticate with BasicAuth",
    },
    Unenforced {
        param: "SmartHostAuthMechanism",
        counts: |o| sc(o, |c| c.smart_host_auth_mechanism == "ExchangeServer"),
        reason: "hubgate sends no credential for ExchangeServer (no Kerberos); to log on to another gateway as a server, use BasicAuthRequireTLS with an account in Exchange Servers",
    },
    Unenforced {
        param: "ErrorPolicies",
        counts: |o| sc(o, |c| c.error_policies == "DowngradeAuthFailures"),
        reason: "hubgate already treats every authentication failure at a smart host as transient and retries, whatever ErrorPolicies says",
    },
    Unenforced {
        param: "MaxConcurrentMailboxSubmissions",
        counts: |o| ts(o, |s| s.max_concurrent_mailbox_submissions != 20),
        reason: "hubgate has no mailbox store that submits mail; clients submit over SMTP",
    },
    Unenforced {
        param: "QueueMaxIdleTime",
        counts: |o| ts(o, |s| s.queue_max_idle_time != 180),
        reason: "hubgate does not delete idle delivery queues yet",
    },
    Unenforced {
        param: "IntraOrgConnectorProtocolLoggingLevel",
        counts: |o| {
            ts(o, |s| {
                s.intra_org_connector_protocol_logging_level != "None"
            })
        },
        reason: "hubgate has no intra-organization connector; set ProtocolLoggingLevel on the send connectors",
    },
    Unenforced {
        param: "MaxReceiveSize",
        counts: |o| tc(o, |c| c.max_receive_size.is_some()),
        reason: "hubgate does not check the organization's size limits yet; set MaxMessageSize on the connectors",
    },
    Unenforced {
        param: "MaxSendSize",
        counts: |o| tc(o, |c| c.max_send_size.is_some()),
        reason: "hubgate does not check the organization's size limits yet; set MaxMessageSize on the connectors",
    },
    Unenforced {
        param: "MaxRecipientEnvelopeLimit",
        counts: |o| tc(o, |c| c.max_recipient_envelope_limit.is_some()),
        reason: "hubgate does not check the organization's recipient limit yet; set MaxRecipientsPerMessage on the receive connectors",
    },
    Unenforced {
        param: "GenerateCopyOfDSNFor",
        counts: |o| tc(o, |c| !c.generate_copy_of_dsn_for.is_empty()),
        reason: "hubgate sends no copies of NDRs to the postmaster yet",
    },
];

/// The reason `param` of `o` is not enforced, when its value asks for what hubgate lacks.
pub fn caveat(o: &Obj, param: &str) -> Option<&'static str> {
    TABLE
        .iter()
        .find(|u| u.param == param && (u.counts)(o) == Some(true))
        .map(|u| u.reason)
}

/// The reason a property named `param` is not enforced, whatever its value: the console shows it
/// beside the input, where an admin could turn the behaviour on.
pub fn field_caveat(param: &str) -> Option<&'static str> {
    TABLE.iter().find(|u| u.param == param).map(|u| u.reason)
}

/// A value as every view shows it: with its caveat when it counts.
pub fn shown(o: &Obj, param: &str, value: String) -> String {
    match caveat(o, param) {
        Some(reason) => format!("{value} (not enforced: {reason})"),
        None => value,
    }
}

/// PowerShell's warning stream for one New-/Set- of `after` (from `before`: the stored object, or
/// a fresh one with the defaults for New-): a line for each table parameter that the command gave
/// (by name, or through a preset such as `-Partner`) a value that counts. A line already in
/// `text` (an earlier object of the same pipeline) is not repeated.
pub fn warn(text: &mut String, b: &Bound, before: &Obj, after: &Obj) {
    let old = format::raw_properties(before);
    let new = format::raw_properties(after);
    let value = |props: &[(&str, String)], p: &str| {
        props.iter().find(|(n, _)| *n == p).map(|(_, v)| v.clone())
    };
    for u in TABLE {
        if (u.counts)(after) != Some(true) {
            continue;
        }
        if !b.has(u.param) && value(&old, u.param) == value(&new, u.param) {
            continue;
        }
        let line = warning(u.param, u.reason);
        if !text.contains(&line) {
            text.push_str(&line);
        }
    }
}

/// Add-ADPermission on a send connector: its ACL is stored; ms-Exch-SMTP-Send-XShadow gates
/// shadow redundancy, but nothing sending mail reads the other rights (Send-Headers, Exch50).
pub const SEND_CONNECTOR_PERMISSIONS: &str = "hubgate checks only ms-Exch-SMTP-Send-XShadow on a send connector (not the Send-Headers rights)";

pub fn warn_send_connector_permission(text: &mut String) {
    let line = warning(
        "A send connector's ExtendedRights",
        SEND_CONNECTOR_PERMISSIONS,
    );
    if !text.contains(&line) {
        text.push_str(&line);
    }
}

/// The warnings a wizard's completion page shows for the object it made: one per parameter whose
/// value counts (a preset such as Partner's DomainSecureEnabled included).
pub fn warnings(o: &Obj) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for u in TABLE.iter().filter(|u| (u.counts)(o) == Some(true)) {
        let line = warning(u.param, u.reason).trim_end().to_string();
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines
}

/// The warning line for `param`.
pub fn warning(param: &str, reason: &str) -> String {
    format!("WARNING: {param} is saved but not enforced: {reason}.\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_default_object() -> Vec<Obj> {
        vec![
            Obj::ReceiveConnector(ReceiveConnector::new("HUB1", "R", "hub1.contoso.test")),
            Obj::SendConnector(SendConnector::new("S", &["*"], "HUB1")),
            Obj::TransportServer(TransportServer::with_defaults("HUB1", "hub1.contoso.test")),
        ]
    }

    #[test]
    fn every_parameter_is_a_property_of_its_object() {
        // A misspelt name would never match the view nor the cmdlet's parameter.
        let mut objs = every_default_object();
        objs.push(Obj::TransportConfig(TransportConfig::with_defaults()));
        for u in TABLE {
            let owner = objs
                .iter()
                .find(|o| (u.counts)(o).is_some())
                .unwrap_or_else(|| panic!("{}: no object type", u.param));
            assert!(
                format::raw_properties(owner)
                    .iter()
                    .any(|(n, _)| *n == u.param),
                "{} is not a property of its object",
                u.param
            );
            assert!(
                !u.reason.ends_with('.'),
                "{}: the line adds the stop",
                u.param
            );
        }
    }

    #[test]
    fn exchange_defaults_that_hubgate_honours_count_for_nothing() {
        let rc = Obj::ReceiveConnector(ReceiveConnector::new("HUB1", "R", "hub1.contoso.test"));
        let sc = Obj::SendConnector(SendConnector::new("S", &["*"], "HUB1"));
        let ts = Obj::TransportServer(TransportServer::with_defaults("HUB1", "h"));
        for o in [&rc, &sc, &ts] {
            for u in TABLE {
                assert_ne!((u.counts)(o), Some(true), "{}", u.param);
            }
        }
    }

    #[test]
    fn a_value_that_counts_is_shown_with_its_reason_and_warned_about_once() {
        let before = SendConnector::new("S", &["*"], "HUB1");
        let mut after = before.clone();
        after.domain_secure_enabled = true;
        after.error_policies = "DowngradeAuthFailures".into();
        let (before, after) = (Obj::SendConnector(before), Obj::SendConnector(after));
        assert_eq!(
            shown(&after, "DomainSecureEnabled", "True".into()),
            "True (not enforced: hubgate does not implement domain-secure mutual TLS yet)"
        );
        assert_eq!(
            shown(&before, "DomainSecureEnabled", "False".into()),
            "False"
        );
        // The receive connector's entry of the same name never applies to a send connector.
        assert_eq!(caveat(&after, "AuthMechanism"), None);

        let mut text = String::new();
        let none = Bound::default();
        warn(&mut text, &none, &before, &after);
        warn(&mut text, &none, &before, &after);
        assert_eq!(
            text,
            "WARNING: DomainSecureEnabled is saved but not enforced: hubgate does not implement domain-secure mutual TLS yet.\n\
             WARNING: ErrorPolicies is saved but not enforced: hubgate already treats every authentication failure at a smart host as transient and retries, whatever ErrorPolicies says.\n"
        );
        // The console's completion page: every counting value, once each.
        assert_eq!(
            warnings(&after),
            [
                "WARNING: DomainSecureEnabled is saved but not enforced: hubgate does not implement domain-secure mutual TLS yet.",
                "WARNING: ErrorPolicies is saved but not enforced: hubgate already treats every authentication failure at a smart host as transient and retries, whatever ErrorPolicies says.",
            ]
        );
        assert!(warnings(&before).is_empty());
        assert_eq!(
            field_caveat("TLSReceiveDomainSecureList"),
            Some(DOMAIN_SECURE)
        );
        assert_eq!(field_caveat("Banner"), None);
        // Unchanged and not named by the command: nothing to say.
        let mut text = String::new();
        warn(&mut text, &none, &after, &after);
        assert_eq!(text, "");
    }
}
