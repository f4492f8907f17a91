//! When a sending session may ask its peer to become the primary (reference §1.2,
//! identity-and-rights.md "Send side"): ShadowRedundancyEnabled, and the send connector's ACL
//! grants ms-Exch-SMTP-Send-XShadow to the session's outbound identity. The peer's XSHADOW offer
//! is checked by the client; every route a send connector serves is shadowable (DNS or smart
//! host delivery; local mailbox delivery never comes here).

use base64::Engine;

use crate::org::rights::{ExtendedRight, principal, session_rights};
use crate::org::{Org, SendConnector};

/// The principal a send connector's ACL is checked against, from its SmartHostAuthMechanism.
pub fn outbound_principal(smart_host_auth_mechanism: &str) -> &'static str {
    match smart_host_auth_mechanism {
        "ExternalAuthoritative" => principal::EXTERNALLY_SECURED_SERVERS,
        "ExchangeServer" => principal::EXCHANGE_SERVERS,
        // None, BasicAuth, BasicAuthRequireTLS: anonymous as far as the ACL goes.
        _ => principal::ANONYMOUS,
    }
}

/// The XSHADOW argument for sessions of `connector`, or None when this node must not shadow
/// through it: Base64 of `{connector id}@{server name}@{TLS domain or empty}`.
pub fn shadow_context(org: &Org, connector: &SendConnector) -> Option<String> {
    if !org.config.shadow_redundancy_enabled {
        return None;
    }
    let who = outbound_principal(&connector.smart_host_auth_mechanism);
    let rights = session_rights(&org.acl(connector.id), &[who]);
    if !rights.has(ExtendedRight::SendXShadow) {
        return None;
    }
    let raw = format!(
        "{}@{}@{}",
        connector.id,
        org.server.name,
        connector.tls_domain.as_deref().unwrap_or("")
    );
    Some(base64::engine::general_purpose::STANDARD.encode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_identities_follow_the_smart_host_auth_mechanism() {
        for (mech, who) in [
            ("None", principal::ANONYMOUS),
            ("BasicAuth", principal::ANONYMOUS),
            ("BasicAuthRequireTLS", principal::ANONYMOUS),
            (
                "ExternalAuthoritative",
                principal::EXTERNALLY_SECURED_SERVERS,
            ),
            ("ExchangeServer", principal::EXCHANGE_SERVERS),
        ] {
            assert_eq!(outbound_principal(mech), who, "{mech}");
        }
    }
}
