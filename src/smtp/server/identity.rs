//! Who an inbound session is, and what its connector's ACL lets it do (identity-and-rights.md).

use crate::org::account::{Account, EXCHANGE_SERVERS, ORGANIZATION_MANAGEMENT, PARTNER_SERVERS};
use crate::org::rights::{ExtendedRight, Permission, Rights, principal, session_rights};
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
        let mut identity = Identity::of(ps, Some(account.name.clone()), acl);
        // An administrator's password opens the console; whoever learns it must not also get an
        // open relay. The group's Authenticated Users right to relay is withheld unless an
        // ADPermission names the account itself.
        if account.is_member(ORGANIZATION_MANAGEMENT)
            && !granted_by_name(acl, &account.name, ExtendedRight::AcceptAnyRecipient)
        {
            identity.rights.remove(ExtendedRight::AcceptAnyRecipient);
        }
        identity
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

/// Whether an entry for `account` by name (Add-ADPermission -User <account>) allows `right`,
/// and none denies it.
fn granted_by_name(acl: &[Permission], account: &str, right: ExtendedRight) -> bool {
    session_rights(acl, &[account]).has(right)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::rights::PermissionGroup;

    fn acl(extra: &[(&str, ExtendedRight)]) -> Vec<Permission> {
        let entry = |p: &str, r: ExtendedRight, deny| Permission {
            connector_id: uuid::Uuid::nil(),
            principal: p.to_string(),
            extended_right: r.ad_name().to_string(),
            deny,
            permission_group: None,
        };
        PermissionGroup::ExchangeUsers
            .entries()
            .into_iter()
            .map(|(p, r, d)| entry(p, r, d))
            .chain(extra.iter().map(|(p, r)| entry(p, *r, false)))
            .collect()
    }

    fn account(name: &str, groups: &[&str]) -> Account {
        Account {
            id: uuid::Uuid::nil(),
            name: name.into(),
            password_hash: String::new(),
            member_of: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn an_administrator_relays_only_when_named_in_the_acl() {
        let admin = account("Administrator", &[ORGANIZATION_MANAGEMENT]);
        let user = account("relay", &[]);
        let plain = acl(&[]);
        assert!(
            Identity::authenticated(&user, &plain)
                .rights
                .has(ExtendedRight::AcceptAnyRecipient)
        );
        let id = Identity::authenticated(&admin, &plain);
        assert!(!id.rights.has(ExtendedRight::AcceptAnyRecipient));
        assert!(id.rights.has(ExtendedRight::Submit));
        let granted = acl(&[("administrator", ExtendedRight::AcceptAnyRecipient)]);
        assert!(
            Identity::authenticated(&admin, &granted)
                .rights
                .has(ExtendedRight::AcceptAnyRecipient)
        );
    }
}
