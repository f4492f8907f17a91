//! Connector ACLs: Add/Remove/Get-ADPermission and Enable-CrossForestConnector.

use sqlx::PgConnection;
use uuid::Uuid;

use super::props::{Export, Kind, Object, Prop, Value};
use super::{Identity, OpError, one};
use crate::org::rights::{self, ExtendedRight, principal};
use crate::org::{Permission, SendConnector};

pub const RIGHTS: &[&str] = &[
    "ms-Exch-SMTP-Submit",
    "ms-Exch-SMTP-Submit-For-MLS",
    "ms-Exch-SMTP-Accept-Any-Recipient",
    "ms-Exch-SMTP-Accept-Authentication-Flag",
    "ms-Exch-SMTP-Accept-Any-Sender",
    "ms-Exch-SMTP-Accept-Authoritative-Domain-Sender",
    "ms-Exch-Bypass-Anti-Spam",
    "ms-Exch-Bypass-Message-Size-Limit",
    "ms-Exch-SMTP-Send-Exch50",
    "ms-Exch-SMTP-Accept-Exch50",
    "ms-Exch-Accept-Headers-Routing",
    "ms-Exch-Accept-Headers-Forest",
    "ms-Exch-Accept-Headers-Organization",
    "ms-Exch-Send-Headers-Routing",
    "ms-Exch-Send-Headers-Forest",
    "ms-Exch-Send-Headers-Organization",
    "Send-As",
    "ms-Exch-SMTP-Send-XShadow",
    "ms-Exch-SMTP-Accept-XShadow",
];

/// One ACL entry with the identity of its connector.
pub type Entry = (String, Permission);

/// An ACL entry's view and the Add-ADPermission line that re-creates it; entries are added and
/// removed whole, never set.
pub static OBJECT: Object<Entry> = Object {
    props: &[
        Prop::read("Identity", Kind::Identity, |(id, _): &Entry| {
            Value::Str(id.clone())
        })
        .export(Export::Always),
        Prop::read("User", Kind::Str, |(_, p): &Entry| {
            Value::Str(p.principal.clone())
        })
        .export(Export::Always),
        Prop::read("ExtendedRights", Kind::Str, |(_, p): &Entry| {
            Value::Str(p.extended_right.clone())
        })
        .export(Export::Always),
        Prop::read("Deny", Kind::Switch, |(_, p): &Entry| Value::Bool(p.deny))
            .export(Export::IfChanged),
        // hubgate's connector ACLs have no inheritance.
        Prop::read("Inherited", Kind::Bool, |_: &Entry| Value::Bool(false)),
        Prop::read("PermissionGroup", Kind::Str, |(_, p): &Entry| {
            p.permission_group
                .clone()
                .map(Value::Str)
                .unwrap_or(Value::Null)
        }),
    ],
    new_extra: &[],
    export_cmdlet: "Add-ADPermission",
    export_first: &[],
    base: |(id, p)| {
        (
            id.clone(),
            Permission {
                deny: false,
                ..p.clone()
            },
        )
    },
    noun: "ADPermission",
    name: |(id, _)| id.clone(),
    unsupported_new: &[],
    unsupported_set: &[],
    tabs: &[],
};

/// The connector an ACL belongs to.
#[derive(Clone, Debug)]
pub struct Connector {
    pub id: Uuid,
    /// Its identity as Exchange shows it (`Name`, `SERVER\Name`).
    pub identity: String,
    pub is_send: bool,
}

/// The connector `identity` names: a send connector by name, a receive connector as
/// Get-ReceiveConnector finds it (`local` for a bare name); a name both answer to is ambiguous.
pub async fn connector(
    tx: &mut PgConnection,
    local: &str,
    identity: &Identity,
) -> Result<Connector, OpError> {
    let s = match identity {
        Identity::Id { .. } => {
            return Err(OpError::invalid(
                "Identity",
                "Give the connector by name, or pipe the connector itself.",
            ));
        }
        Identity::Name(s) => s,
    };
    let sends: Vec<SendConnector> = SendConnector::load_all_in(tx)
        .await?
        .into_iter()
        .filter(|c| c.name.eq_ignore_ascii_case(s.trim()))
        .collect();
    let recvs = match super::receive_connector::get(tx, local, Some(identity), false).await {
        Ok(r) => r,
        Err(OpError::NotFound(_)) => vec![],
        Err(e) => return Err(e),
    };
    match (sends.as_slice(), recvs.as_slice()) {
        ([c], []) => Ok(Connector {
            id: c.id,
            identity: c.name.clone(),
            is_send: true,
        }),
        ([], [c]) => Ok(Connector {
            id: c.id,
            identity: c.identity(),
            is_send: false,
        }),
        ([], []) => Err(OpError::NotFound(s.clone())),
        _ => Err(OpError::Ambiguous(s.clone())),
    }
}

/// The rights a request names; a connector ACL holds extended rights only.
pub fn rights_of(names: &[String]) -> Result<Vec<ExtendedRight>, OpError> {
    if names.is_empty() {
        return Err(OpError::invalid(
            "ExtendedRights",
            "hubgate connector ACLs hold extended rights only: give -ExtendedRights.",
        ));
    }
    Ok(names
        .iter()
        .filter_map(|r| ExtendedRight::parse(r))
        .collect())
}

pub struct AddADPermission {
    pub connector: Connector,
    pub user: String,
    pub rights: Vec<ExtendedRight>,
    pub deny: bool,
}

/// Adds one explicit entry per right; returns the entries (an entry already there stays one).
pub async fn add(tx: &mut PgConnection, req: &AddADPermission) -> Result<Vec<Permission>, OpError> {
    let user = rights::resolve_principal(&req.user);
    let mut out = vec![];
    for r in &req.rights {
        rights::add_permission(tx, req.connector.id, &user, *r, req.deny).await?;
        out.push(Permission {
            connector_id: req.connector.id,
            principal: user.clone(),
            extended_right: r.ad_name().into(),
            deny: req.deny,
            permission_group: None,
        });
    }
    Ok(out)
}

/// Removes the entries; one that does not exist is an error, and nothing is removed then (the
/// caller's transaction is rolled back).
pub async fn remove(tx: &mut PgConnection, req: &AddADPermission) -> Result<(), OpError> {
    let user = rights::resolve_principal(&req.user);
    for r in &req.rights {
        if rights::remove_permission(tx, req.connector.id, &user, *r, req.deny).await? == 0 {
            return Err(OpError::invalid(
                "ExtendedRights",
                format!(
                    "The access control entry \"{r}\" for \"{user}\" on \"{}\" doesn't exist.",
                    req.connector.identity
                ),
            ));
        }
    }
    Ok(())
}

/// Get-ADPermission: the connector's ACL, or the entries of one user.
pub async fn get(
    tx: &mut PgConnection,
    connector: &Connector,
    user: Option<&str>,
) -> Result<Vec<Permission>, OpError> {
    Ok(rights::load_acl(tx, connector.id)
        .await?
        .into_iter()
        .filter(|e| {
            user.is_none_or(|u| principal::same(&rights::resolve_principal(u), &e.principal))
        })
        .collect())
}

/// The 2007 script's grant: the same set with or without -genericMTA (the switch only told it
/// the far side was not Exchange 2007).
pub const CROSS_FOREST_GRANTS: [ExtendedRight; 4] = [
    ExtendedRight::SendRoutingHeaders,
    ExtendedRight::SendForestHeaders,
    ExtendedRight::SendOrganizationHeaders,
    ExtendedRight::SendExch50,
];

/// Enable-CrossForestConnector: grants `user` the cross-forest send rights on a send connector;
/// returns the connector and the user's entries.
pub async fn enable_cross_forest(
    tx: &mut PgConnection,
    connector: &str,
    user: &str,
) -> Result<(SendConnector, Vec<Permission>), OpError> {
    let c = one(super::send_connector::get(tx, Some(&Identity::from(connector)), false).await?);
    let user = rights::resolve_principal(user);
    for r in CROSS_FOREST_GRANTS {
        rights::add_permission(tx, c.id, &user, r, false).await?;
    }
    let target = Connector {
        id: c.id,
        identity: c.name.clone(),
        is_send: true,
    };
    let acl = get(tx, &target, Some(&user)).await?;
    Ok((c, acl))
}
