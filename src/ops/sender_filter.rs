//! SenderFilterConfig: its property table and Get-/Set-SenderFilterConfig.

use sqlx::PgConnection;

use super::org_config;
use super::props::{Export, Kind, Object};
use super::{Change, OpError};
use crate::field;
use crate::org::sender_filter::{ACTIONS, SenderFilterConfig};

type C = SenderFilterConfig;

pub static CONFIG: Object<C> = Object {
    props: &[
        field!(C, "Enabled", Kind::Bool, enabled).export(Export::Always),
        field!(C, "ExternalMailEnabled", Kind::Bool, external_mail_enabled).export(Export::Always),
        field!(C, "InternalMailEnabled", Kind::Bool, internal_mail_enabled).export(Export::Always),
        field!(C, "BlockedSenders", Kind::List, blocked_senders).export(Export::Always),
        field!(C, "BlockedDomains", Kind::List, blocked_domains).export(Export::Always),
        field!(
            C,
            "BlockedDomainsAndSubdomains",
            Kind::List,
            blocked_domains_and_subdomains
        )
        .export(Export::Always),
        field!(C, "Action", Kind::Enum(ACTIONS), action).export(Export::Always),
        field!(
            C,
            "BlankSenderBlockingEnabled",
            Kind::Bool,
            blank_sender_blocking_enabled
        )
        .export(Export::Always),
    ],
    new_extra: &[],
    export_cmdlet: "Set-SenderFilterConfig",
    export_first: &[],
    base: C::clone,
    noun: "Sender filter configuration",
    name: |_| String::new(),
    unsupported_new: &[],
    unsupported_set: &["RecipientBlockedSenderAction"],
    tabs: &[
        (
            "Blocked Senders",
            &[
                "Enabled",
                "ExternalMailEnabled",
                "InternalMailEnabled",
                "BlockedSenders",
                "BlockedDomains",
                "BlockedDomainsAndSubdomains",
                "BlankSenderBlockingEnabled",
            ],
        ),
        ("Action", &["Action"]),
    ],
};

pub async fn get_config(tx: &mut PgConnection) -> Result<C, OpError> {
    org_config::get(tx).await
}

/// Set-SenderFilterConfig: the values applied, every address and domain checked; nothing is
/// stored when one is refused.
pub async fn set_config(
    tx: &mut PgConnection,
    values: &super::props::Values,
) -> Result<Change<C>, OpError> {
    org_config::set_validated(tx, &CONFIG, values).await
}
