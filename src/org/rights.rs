//! Extended rights, security principals and permission groups (reference §2, identity-and-rights.md).
//!
//! A connector's ACL is a list of (principal, right, allow/deny) entries. Permission groups are
//! shorthand for the entries listed in §2.2; sessions get the union of the Allow entries for their
//! principals minus the Deny entries.

use std::fmt;

/// The extended rights, in the bit order Exchange prints them in protocol logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExtendedRight {
    Submit,
    SubmitForMls,
    AcceptAnyRecipient,
    AcceptAuthenticationFlag,
    AcceptAnySender,
    AcceptAuthoritativeDomainSender,
    BypassAntiSpam,
    BypassMessageSizeLimit,
    SendExch50,
    AcceptExch50,
    AcceptRoutingHeaders,
    AcceptForestHeaders,
    AcceptOrganizationHeaders,
    SendRoutingHeaders,
    SendForestHeaders,
    SendOrganizationHeaders,
    SendAs,
    SendXShadow,
    AcceptXShadow,
}

use ExtendedRight::*;

impl ExtendedRight {
    pub const ALL: [ExtendedRight; 19] = [
        Submit,
        SubmitForMls,
        AcceptAnyRecipient,
        AcceptAuthenticationFlag,
        AcceptAnySender,
        AcceptAuthoritativeDomainSender,
        BypassAntiSpam,
        BypassMessageSizeLimit,
        SendExch50,
        AcceptExch50,
        AcceptRoutingHeaders,
        AcceptForestHeaders,
        AcceptOrganizationHeaders,
        SendRoutingHeaders,
        SendForestHeaders,
        SendOrganizationHeaders,
        SendAs,
        SendXShadow,
        AcceptXShadow,
    ];

    /// The AD name an admin types in `-ExtendedRights`.
    pub fn ad_name(self) -> &'static str {
        match self {
            Submit => "ms-Exch-SMTP-Submit",
            SubmitForMls => "ms-Exch-SMTP-Submit-For-MLS",
            AcceptAnyRecipient => "ms-Exch-SMTP-Accept-Any-Recipient",
            AcceptAuthenticationFlag => "ms-Exch-SMTP-Accept-Authentication-Flag",
            AcceptAnySender => "ms-Exch-SMTP-Accept-Any-Sender",
            AcceptAuthoritativeDomainSender => "ms-Exch-SMTP-Accept-Authoritative-Domain-Sender",
            BypassAntiSpam => "ms-Exch-Bypass-Anti-Spam",
            BypassMessageSizeLimit => "ms-Exch-Bypass-Message-Size-Limit",
            SendExch50 => "ms-Exch-SMTP-Send-Exch50",
            AcceptExch50 => "ms-Exch-SMTP-Accept-Exch50",
            AcceptRoutingHeaders => "ms-Exch-Accept-Headers-Routing",
            AcceptForestHeaders => "ms-Exch-Accept-Headers-Forest",
            AcceptOrganizationHeaders => "ms-Exch-Accept-Headers-Organization",
            SendRoutingHeaders => "ms-Exch-Send-Headers-Routing",
            SendForestHeaders => "ms-Exch-Send-Headers-Forest",
            SendOrganizationHeaders => "ms-Exch-Send-Headers-Organization",
            SendAs => "Send-As",
            SendXShadow => "ms-Exch-SMTP-Send-XShadow",
            AcceptXShadow => "ms-Exch-SMTP-Accept-XShadow",
        }
    }

    /// The enum name Exchange writes in `Set Session Permissions` protocol-log lines.
    pub fn log_name(self) -> &'static str {
        match self {
            Submit => "SMTPSubmit",
            SubmitForMls => "SMTPSubmitForMLS",
            AcceptAnyRecipient => "SMTPAcceptAnyRecipient",
            AcceptAuthenticationFlag => "SMTPAcceptAuthenticationFlag",
            AcceptAnySender => "SMTPAcceptAnySender",
            AcceptAuthoritativeDomainSender => "SMTPAcceptAuthoritativeDomainSender",
            BypassAntiSpam => "BypassAntiSpam",
            BypassMessageSizeLimit => "BypassMessageSizeLimit",
            SendExch50 => "SMTPSendEXCH50",
            AcceptExch50 => "SMTPAcceptEXCH50",
            AcceptRoutingHeaders => "AcceptRoutingHeaders",
            AcceptForestHeaders => "AcceptForestHeaders",
            AcceptOrganizationHeaders => "AcceptOrganizationHeaders",
            SendRoutingHeaders => "SendRoutingHeaders",
            SendForestHeaders => "SendForestHeaders",
            SendOrganizationHeaders => "SendOrganizationHeaders",
            SendAs => "SendAs",
            SendXShadow => "SMTPSendXShadow",
            AcceptXShadow => "SMTPAcceptXShadow",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// Accepts the AD name case-insensitively, as the shell does for PowerShell arguments.
    pub fn parse(s: &str) -> Option<ExtendedRight> {
        Self::ALL
            .into_iter()
            .find(|r| r.ad_name().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for ExtendedRight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.ad_name())
    }
}

/// A set of extended rights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rights(u32);

impl Rights {
    pub fn of(rights: &[ExtendedRight]) -> Rights {
        Rights(rights.iter().fold(0, |acc, r| acc | r.bit()))
    }
    pub fn has(self, r: ExtendedRight) -> bool {
        self.0 & r.bit() != 0
    }
    pub fn insert(&mut self, r: ExtendedRight) {
        self.0 |= r.bit();
    }
    pub fn remove(&mut self, r: ExtendedRight) {
        self.0 &= !r.bit();
    }
    pub fn iter(self) -> impl Iterator<Item = ExtendedRight> {
        ExtendedRight::ALL.into_iter().filter(move |r| self.has(*r))
    }
    /// `SMTPSubmit SMTPAcceptAnySender ...` as in the protocol log.
    pub fn log_line(self) -> String {
        self.iter()
            .map(ExtendedRight::log_name)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Well-known principals, spelled as an admin types them in `-User`.
pub mod principal {
    pub const ANONYMOUS: &str = "NT AUTHORITY\\ANONYMOUS LOGON";
    pub const AUTHENTICATED_USERS: &str = "NT AUTHORITY\\Authenticated Users";
    pub const HUB_TRANSPORT_SERVERS: &str = "MS Exchange\\Hub Transport Servers";
    pub const EDGE_TRANSPORT_SERVERS: &str = "MS Exchange\\Edge Transport Servers";
    pub const EXTERNALLY_SECURED_SERVERS: &str = "MS Exchange\\Externally Secured Servers";
    pub const PARTNER_SERVERS: &str = "MS Exchange\\Partner Servers";
    pub const LEGACY_EXCHANGE_SERVERS: &str = "MS Exchange\\Legacy Exchange Servers";
    /// `<Domain>\Exchange Servers`: hubgate's organisation has no AD domain, so it is named HUBGATE.
    pub const EXCHANGE_SERVERS: &str = "HUBGATE\\Exchange Servers";
    pub const EXCHANGE_LEGACY_INTEROP: &str = "HUBGATE\\ExchangeLegacyInterop";

    /// Principal names compare case-insensitively; `<Domain>\Exchange Servers` matches whatever
    /// domain an admin typed, because runbooks name their own AD domain.
    pub fn same(a: &str, b: &str) -> bool {
        if a.eq_ignore_ascii_case(b) {
            return true;
        }
        let tail = |s: &str| s.rsplit_once('\\').map(|(_, t)| t.to_ascii_lowercase());
        let domain_scoped = ["exchange servers", "exchangelegacyinterop"];
        match (tail(a), tail(b)) {
            (Some(x), Some(y)) => x == y && domain_scoped.contains(&x.as_str()),
            _ => false,
        }
    }
}

/// Receive connector permission groups (`-PermissionGroups`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PermissionGroup {
    AnonymousUsers,
    ExchangeUsers,
    ExchangeServers,
    ExchangeLegacyServers,
    Partners,
}

impl PermissionGroup {
    pub const ALL: [PermissionGroup; 5] = [
        PermissionGroup::AnonymousUsers,
        PermissionGroup::ExchangeUsers,
        PermissionGroup::ExchangeServers,
        PermissionGroup::ExchangeLegacyServers,
        PermissionGroup::Partners,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PermissionGroup::AnonymousUsers => "AnonymousUsers",
            PermissionGroup::ExchangeUsers => "ExchangeUsers",
            PermissionGroup::ExchangeServers => "ExchangeServers",
            PermissionGroup::ExchangeLegacyServers => "ExchangeLegacyServers",
            PermissionGroup::Partners => "Partners",
        }
    }

    pub fn parse(s: &str) -> Option<PermissionGroup> {
        Self::ALL
            .into_iter()
            .find(|g| g.name().eq_ignore_ascii_case(s.trim()))
    }

    /// The ACL entries the group stands for (reference §2.2): (principal, right, deny).
    pub fn entries(self) -> Vec<(&'static str, ExtendedRight, bool)> {
        // The E12 set plus Accept-XShadow, which Exchange 2010 added for its own servers.
        const E14: [ExtendedRight; 12] = [
            Submit,
            AcceptAnyRecipient,
            AcceptAuthenticationFlag,
            AcceptAnySender,
            AcceptAuthoritativeDomainSender,
            BypassAntiSpam,
            BypassMessageSizeLimit,
            AcceptExch50,
            AcceptRoutingHeaders,
            AcceptForestHeaders,
            AcceptOrganizationHeaders,
            AcceptXShadow,
        ];
        let externally_secured: Vec<ExtendedRight> = E14
            .into_iter()
            .filter(|r| {
                !matches!(
                    r,
                    AcceptForestHeaders | AcceptOrganizationHeaders | AcceptXShadow
                )
            })
            .collect();
        let allow =
            |p: &'static str, rs: &[ExtendedRight]| -> Vec<(&'static str, ExtendedRight, bool)> {
                rs.iter().map(|r| (p, *r, false)).collect()
            };
        match self {
            PermissionGroup::AnonymousUsers => allow(
                principal::ANONYMOUS,
                &[
                    Submit,
                    AcceptAnySender,
                    AcceptAuthoritativeDomainSender,
                    AcceptRoutingHeaders,
                ],
            ),
            PermissionGroup::ExchangeUsers => allow(
                principal::AUTHENTICATED_USERS,
                &[
                    Submit,
                    AcceptAnyRecipient,
                    BypassAntiSpam,
                    AcceptRoutingHeaders,
                ],
            ),
            PermissionGroup::ExchangeServers => {
                let mut v = allow(principal::HUB_TRANSPORT_SERVERS, &E14);
                v.extend(allow(principal::EDGE_TRANSPORT_SERVERS, &E14));
                v.extend(allow(principal::EXCHANGE_SERVERS, &E14));
                v.extend(allow(
                    principal::EXTERNALLY_SECURED_SERVERS,
                    &externally_secured,
                ));
                v
            }
            PermissionGroup::ExchangeLegacyServers => {
                let mut v = allow(principal::EXCHANGE_LEGACY_INTEROP, &externally_secured);
                v.push((
                    principal::EXCHANGE_LEGACY_INTEROP,
                    AcceptForestHeaders,
                    true,
                ));
                v.push((
                    principal::EXCHANGE_LEGACY_INTEROP,
                    AcceptOrganizationHeaders,
                    true,
                ));
                v
            }
            PermissionGroup::Partners => {
                allow(principal::PARTNER_SERVERS, &[Submit, AcceptRoutingHeaders])
            }
        }
    }
}

/// The default ACL of every send connector (reference §2.3).
pub fn send_connector_default_entries() -> Vec<(&'static str, ExtendedRight)> {
    use principal::*;
    let mut v = Vec::new();
    for p in [
        ANONYMOUS,
        EXCHANGE_SERVERS,
        EDGE_TRANSPORT_SERVERS,
        EXTERNALLY_SECURED_SERVERS,
        HUB_TRANSPORT_SERVERS,
        LEGACY_EXCHANGE_SERVERS,
        PARTNER_SERVERS,
    ] {
        v.push((p, SendRoutingHeaders));
    }
    for p in [
        EXCHANGE_SERVERS,
        EDGE_TRANSPORT_SERVERS,
        HUB_TRANSPORT_SERVERS,
    ] {
        v.push((p, SendForestHeaders));
        v.push((p, SendOrganizationHeaders));
        v.push((p, SendXShadow));
    }
    for p in [
        EXCHANGE_SERVERS,
        EDGE_TRANSPORT_SERVERS,
        EXTERNALLY_SECURED_SERVERS,
        HUB_TRANSPORT_SERVERS,
        LEGACY_EXCHANGE_SERVERS,
    ] {
        v.push((p, SendExch50));
    }
    v
}

/// One ACL entry as stored.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Permission {
    pub connector_id: uuid::Uuid,
    pub principal: String,
    pub extended_right: String,
    pub deny: bool,
    pub permission_group: Option<String>,
}

/// Which connector table a connector row lives in.
#[derive(Clone, Copy, Debug)]
pub enum ConnectorTable {
    Receive,
    Send,
}

/// Removes a connector together with its whole ACL (connector_permission has no foreign key,
/// because it serves both connector tables).
pub async fn delete_connector(
    conn: &mut sqlx::PgConnection,
    table: ConnectorTable,
    id: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM connector_permission WHERE connector_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let sql = match table {
        ConnectorTable::Receive => "DELETE FROM receive_connector WHERE id = $1",
        ConnectorTable::Send => "DELETE FROM send_connector WHERE id = $1",
    };
    sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    Ok(())
}

/// The rights an ACL grants to a session holding `principals`.
pub fn session_rights(acl: &[Permission], principals: &[&str]) -> Rights {
    let mut allow = Rights::default();
    let mut deny = Rights::default();
    for e in acl {
        if !principals.iter().any(|p| principal::same(p, &e.principal)) {
            continue;
        }
        if let Some(r) = ExtendedRight::parse(&e.extended_right) {
            if e.deny {
                deny.insert(r);
            } else {
                allow.insert(r);
            }
        }
    }
    Rights(allow.0 & !deny.0)
}

/// Turns `-User` as typed into the stored principal: the well-known names in any case, and
/// `ANONYMOUS LOGON` / `Authenticated Users` without their `NT AUTHORITY\` prefix, as AD resolves them.
pub fn resolve_principal(user: &str) -> String {
    use principal::*;
    let u = user.trim();
    let known = [
        ANONYMOUS,
        AUTHENTICATED_USERS,
        HUB_TRANSPORT_SERVERS,
        EDGE_TRANSPORT_SERVERS,
        EXTERNALLY_SECURED_SERVERS,
        PARTNER_SERVERS,
        LEGACY_EXCHANGE_SERVERS,
    ];
    for k in known {
        let short = k.rsplit_once('\\').map(|(_, t)| t).unwrap_or(k);
        if k.eq_ignore_ascii_case(u) || short.eq_ignore_ascii_case(u) {
            return k.to_string();
        }
    }
    u.to_string()
}

/// The whole ACL of one connector, in the order entries were added.
pub async fn load_acl(
    conn: &mut sqlx::PgConnection,
    connector_id: uuid::Uuid,
) -> Result<Vec<Permission>, super::OrgError> {
    Ok(sqlx::query_as::<_, Permission>(
        "SELECT connector_id, principal, extended_right, deny, permission_group FROM connector_permission
         WHERE connector_id = $1 ORDER BY id",
    )
    .bind(connector_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// Add-ADPermission: adds an explicit entry. Adding an entry the ACL already holds, from a
/// group or by hand, changes nothing, as in AD.
pub async fn add_permission(
    conn: &mut sqlx::PgConnection,
    connector_id: uuid::Uuid,
    user: &str,
    right: ExtendedRight,
    deny: bool,
) -> Result<(), super::OrgError> {
    let exists: Option<(i64,)> = sqlx::query_as(
        "SELECT id FROM connector_permission WHERE connector_id = $1 AND lower(principal) = lower($2)
           AND lower(extended_right) = lower($3) AND deny = $4",
    )
    .bind(connector_id)
    .bind(user)
    .bind(right.ad_name())
    .bind(deny)
    .fetch_optional(&mut *conn)
    .await?;
    if exists.is_none() {
        sqlx::query(
            "INSERT INTO connector_permission (connector_id, principal, extended_right, deny) VALUES ($1, $2, $3, $4)",
        )
        .bind(connector_id)
        .bind(user)
        .bind(right.ad_name())
        .bind(deny)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Remove-ADPermission: removes matching entries, whether a group or Add-ADPermission put them
/// there. Returns how many went.
pub async fn remove_permission(
    conn: &mut sqlx::PgConnection,
    connector_id: uuid::Uuid,
    user: &str,
    right: ExtendedRight,
    deny: bool,
) -> Result<u64, super::OrgError> {
    let acl = load_acl(conn, connector_id).await?;
    let mut n = 0;
    for e in acl.iter().filter(|e| {
        principal::same(&e.principal, user)
            && e.extended_right.eq_ignore_ascii_case(right.ad_name())
            && e.deny == deny
    }) {
        n += sqlx::query(
            "DELETE FROM connector_permission WHERE connector_id = $1 AND principal = $2 AND extended_right = $3
               AND deny = $4 AND permission_group IS NOT DISTINCT FROM $5",
        )
        .bind(connector_id)
        .bind(&e.principal)
        .bind(&e.extended_right)
        .bind(e.deny)
        .bind(&e.permission_group)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl_of(groups: &[PermissionGroup]) -> Vec<Permission> {
        groups
            .iter()
            .flat_map(|g| g.entries())
            .map(|(p, r, deny)| Permission {
                connector_id: uuid::Uuid::nil(),
                principal: p.to_string(),
                extended_right: r.ad_name().to_string(),
                deny,
                permission_group: None,
            })
            .collect()
    }

    #[test]
    fn anonymous_users_group_matches_the_real_log_line() {
        let acl = acl_of(&[PermissionGroup::AnonymousUsers]);
        let rights = session_rights(&acl, &[principal::ANONYMOUS]);
        assert_eq!(
            rights.log_line(),
            "SMTPSubmit SMTPAcceptAnySender SMTPAcceptAuthoritativeDomainSender AcceptRoutingHeaders"
        );
    }

    #[test]
    fn externally_secured_lacks_xshadow_and_org_headers() {
        let acl = acl_of(&[PermissionGroup::ExchangeServers]);
        let es = session_rights(&acl, &[principal::EXTERNALLY_SECURED_SERVERS]);
        assert!(es.has(AcceptAnyRecipient));
        assert!(!es.has(AcceptXShadow));
        assert!(!es.has(AcceptOrganizationHeaders));
        let ex = session_rights(&acl, &["CONTOSO\\Exchange Servers"]);
        assert!(ex.has(AcceptXShadow));
    }

    #[test]
    fn deny_wins_over_allow() {
        let acl = acl_of(&[PermissionGroup::ExchangeLegacyServers]);
        let r = session_rights(&acl, &[principal::EXCHANGE_LEGACY_INTEROP]);
        assert!(r.has(Submit));
        assert!(!r.has(AcceptForestHeaders));
    }

    #[test]
    fn right_names_parse_case_insensitively() {
        assert_eq!(
            ExtendedRight::parse("MS-EXCH-SMTP-ACCEPT-XSHADOW"),
            Some(AcceptXShadow)
        );
        assert_eq!(ExtendedRight::parse("ms-Exch-Accept-Routing-Headers"), None);
    }
}
