//! Who an inbound session is, and what its connector's ACL lets it do (identity-and-rights.md).

use crate::org::account::{Account, EXCHANGE_SERVERS, PARTNER_SERVERS};
use crate::org::rights::{Permission, Rights, principal, session_rights};
use crate::org::{AuthMechanism, ReceiveConnector};

#[derive(Clone, Debug)]
pub struct Identity {
    pub principals: Vec<String>,
    /// The account name once AUTH succeeded.
    pub account: Option<String>,
    pub rights: Rights,
}

impl Identity {
    /// At connect: anonymous, or Externally Secured on an ExternalAuthoritative connector.
    pub fn at_connect(connector: &ReceiveConnector, acl: &[Permission]) -> Identity {
        let p = if connector.has_auth(AuthMechanism::ExternalAuthoritative) {
            principal::EXTERNALLY_SECURED_SERVERS
        } else {
            principal::ANONYMOUS
        };
        Identity::of(vec![p.to_string()], None, acl)
    }

    /// After AUTH: the account, Authenticated Users, and the groups it is a member of.
    pub fn authenticated(account: &Account, acl: &[Permission]) -> Identity {
        let mut ps = vec![
            account.name.clone(),
            principal::AUTHENTICATED_USERS.to_string(),
        ];
        if account.is_member(EXCHANGE_SERVERS) {
            ps.push(principal::EXCHANGE_SERVERS.to_string());
        }
        if account.is_member(PARTNER_SERVERS) {
            ps.push(principal::PARTNER_SERVERS.to_string());
        }
        Identity::of(ps, Some(account.name.clone()), acl)
    }

    fn of(principals: Vec<String>, account: Option<String>, acl: &[Permission]) -> Identity {
        let refs: Vec<&str> = principals.iter().map(String::as_str).collect();
        let rights = session_rights(acl, &refs);
        Identity {
            principals,
            account,
            rights,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.account.is_some()
    }

    /// Externally Secured sessions are trusted like authenticated ones: never tarpitted.
    pub fn is_trusted(&self) -> bool {
        self.is_authenticated()
            || self
                .principals
                .iter()
                .any(|p| principal::same(p, principal::EXTERNALLY_SECURED_SERVERS))
    }
}
