//! Add-, Get-, Set- and Remove-IPBlockListProvider, Get-/Set-IPBlockListProvidersConfig and
//! Get-/Set-IPBlockListConfig: the Connection Filtering agent's DNSBL providers and the
//! organisation-wide objects beside them, with their property tables.
//!
//! Priorities are kept 1..n without gaps, as Exchange keeps them: Add- without -Priority goes
//! last; Add- or Set- at a priority another provider holds moves that one (and those after it)
//! down by one; Remove- closes the gap.

use sqlx::PgConnection;

use super::org_config;
use super::props::{Ctx, Export, Kind, Object, Prop, Value, Values, Verb};
use super::{Change, Identity, OpError, one, resolve};
use crate::field;
use crate::org::ip_block_list::{BlockListConfig, IpBlockListProvider, ProvidersConfig};

type P = IpBlockListProvider;

pub static PROVIDER: Object<P> = Object {
    props: &[
        Prop::read("Identity", Kind::Identity, |p: &P| {
            Value::Str(p.name.clone())
        }),
        field!(P, "Name", Kind::Str, name)
            .new_as(Verb::First)
            .export(Export::Always),
        field!(P, "LookupDomain", Kind::Str, lookup_domain)
            .new_as(Verb::Mandatory)
            .export(Export::Always),
        field!(P, "Priority", Kind::Int, priority)
            .range(1, 2147483647)
            .export(Export::Always),
        field!(P, "Enabled", Kind::Bool, enabled),
        field!(P, "AnyMatch", Kind::Bool, any_match),
        field!(P, "BitmaskMatch", Kind::Str, bitmask_match),
        field!(P, "IPAddressesMatch", Kind::List, ip_addresses_match),
        field!(P, "RejectionResponse", Kind::Str, rejection_response),
    ],
    new_extra: &[],
    export_cmdlet: "Add-IPBlockListProvider",
    export_first: &["Name", "LookupDomain"],
    base: |_| IpBlockListProvider::new("", ""),
    noun: "IP Block list provider",
    name: |p| p.name.clone(),
    unsupported_new: &["TemplateInstance"],
    unsupported_set: &["Instance"],
    tabs: &[
        ("General", &["Name", "LookupDomain", "Priority", "Enabled"]),
        (
            "Return Status Codes",
            &["AnyMatch", "BitmaskMatch", "IPAddressesMatch"],
        ),
        ("Error Messages", &["RejectionResponse"]),
    ],
};

type PC = ProvidersConfig;

pub static PROVIDERS_CONFIG: Object<PC> = Object {
    props: &[
        field!(PC, "Enabled", Kind::Bool, enabled).export(Export::Always),
        field!(PC, "ExternalMailEnabled", Kind::Bool, external_mail_enabled).export(Export::Always),
        field!(PC, "InternalMailEnabled", Kind::Bool, internal_mail_enabled).export(Export::Always),
        field!(PC, "BypassedRecipients", Kind::List, bypassed_recipients).export(Export::Always),
    ],
    new_extra: &[],
    export_cmdlet: "Set-IPBlockListProvidersConfig",
    export_first: &[],
    base: PC::clone,
    noun: "IP Block list providers configuration",
    name: |_| String::new(),
    unsupported_new: &[],
    unsupported_set: &["Instance"],
    tabs: &[(
        "General",
        &[
            "Enabled",
            "ExternalMailEnabled",
            "InternalMailEnabled",
            "BypassedRecipients",
        ],
    )],
};

type BC = BlockListConfig;

pub static BLOCK_LIST_CONFIG: Object<BC> = Object {
    props: &[
        field!(BC, "Enabled", Kind::Bool, enabled).export(Export::Always),
        field!(BC, "ExternalMailEnabled", Kind::Bool, external_mail_enabled).export(Export::Always),
        field!(BC, "InternalMailEnabled", Kind::Bool, internal_mail_enabled).export(Export::Always),
        field!(
            BC,
            "MachineEntryRejectionResponse",
            Kind::Str,
            machine_entry_rejection_response
        )
        .export(Export::Always),
        field!(
            BC,
            "StaticEntryRejectionResponse",
            Kind::Str,
            static_entry_rejection_response
        )
        .export(Export::Always),
    ],
    new_extra: &[],
    export_cmdlet: "Set-IPBlockListConfig",
    export_first: &[],
    base: BC::clone,
    noun: "IP Block list configuration",
    name: |_| String::new(),
    unsupported_new: &[],
    unsupported_set: &["Instance"],
    tabs: &[(
        "General",
        &[
            "Enabled",
            "ExternalMailEnabled",
            "InternalMailEnabled",
            "MachineEntryRejectionResponse",
            "StaticEntryRejectionResponse",
        ],
    )],
};

pub async fn get(
    tx: &mut PgConnection,
    identity: Option<&Identity>,
    many: bool,
) -> Result<Vec<P>, OpError> {
    resolve(
        IpBlockListProvider::load_all(tx).await?,
        identity,
        many,
        |p| p.id,
        |p, eq| eq(&p.name),
    )
}

fn out_of_range(priority: i32, max: usize) -> OpError {
    OpError::invalid(
        "Priority",
        format!(
            "The value {priority} of Priority is out of range. It must be between 1 and {max}."
        ),
    )
}

fn duplicate(all: &[P], me: &P) -> Result<(), OpError> {
    if all
        .iter()
        .any(|o| o.id != me.id && o.name.trim().eq_ignore_ascii_case(me.name.trim()))
    {
        return Err(OpError::Duplicate {
            kind: "IP Block list provider",
            name: me.name.clone(),
        });
    }
    Ok(())
}

/// Add-IPBlockListProvider. Every check runs before anything is written.
pub async fn add(tx: &mut PgConnection, values: &Values) -> Result<P, OpError> {
    let all = IpBlockListProvider::load_all(tx).await?;
    let mut p = IpBlockListProvider::new("", "");
    PROVIDER.apply(&mut p, values, true, &Ctx::default())?;
    p.name = p.name.trim().to_string();
    p.lookup_domain = p
        .lookup_domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let last = all.len() + 1;
    if !values.has("Priority") {
        p.priority = i32::try_from(last).map_err(|_| out_of_range(0, last))?;
    }
    if p.priority < 1 || p.priority as usize > last {
        return Err(out_of_range(p.priority, last));
    }
    PROVIDER.validate(&p)?;
    p.validate()?;
    duplicate(&all, &p)?;
    sqlx::query("UPDATE ip_block_list_provider SET priority = priority + 1 WHERE priority >= $1")
        .bind(p.priority)
        .execute(&mut *tx)
        .await?;
    p.insert(tx).await?;
    Ok(p)
}

/// Set-IPBlockListProvider on the one provider `identity` names.
pub async fn set(
    tx: &mut PgConnection,
    identity: &Identity,
    values: &Values,
) -> Result<Change<P>, OpError> {
    let all = IpBlockListProvider::load_all(tx).await?;
    let before = one(get(tx, Some(identity), false).await?);
    let mut after = before.clone();
    PROVIDER.apply(&mut after, values, false, &Ctx::default())?;
    after.name = after.name.trim().to_string();
    after.lookup_domain = after
        .lookup_domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if after.priority < 1 || after.priority as usize > all.len() {
        return Err(out_of_range(after.priority, all.len()));
    }
    PROVIDER.validate(&after)?;
    after.validate()?;
    duplicate(&all, &after)?;
    let (old, new) = (before.priority, after.priority);
    if new < old {
        sqlx::query(
            "UPDATE ip_block_list_provider SET priority = priority + 1
             WHERE priority >= $1 AND priority < $2",
        )
        .bind(new)
        .bind(old)
        .execute(&mut *tx)
        .await?;
    } else if new > old {
        sqlx::query(
            "UPDATE ip_block_list_provider SET priority = priority - 1
             WHERE priority > $1 AND priority <= $2",
        )
        .bind(old)
        .bind(new)
        .execute(&mut *tx)
        .await?;
    }
    after.update(tx).await?;
    Ok(Change { before, after })
}

/// Remove-IPBlockListProvider; the providers after it move up one.
pub async fn remove(tx: &mut PgConnection, identity: &Identity) -> Result<P, OpError> {
    let p = one(get(tx, Some(identity), false).await?);
    sqlx::query("DELETE FROM ip_block_list_provider WHERE id = $1")
        .bind(p.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE ip_block_list_provider SET priority = priority - 1 WHERE priority > $1")
        .bind(p.priority)
        .execute(&mut *tx)
        .await?;
    Ok(p)
}

pub async fn get_providers_config(tx: &mut PgConnection) -> Result<PC, OpError> {
    org_config::get(tx).await
}

pub async fn set_providers_config(
    tx: &mut PgConnection,
    values: &Values,
) -> Result<Change<PC>, OpError> {
    org_config::set_validated(tx, &PROVIDERS_CONFIG, values).await
}

pub async fn get_block_list_config(tx: &mut PgConnection) -> Result<BC, OpError> {
    org_config::get(tx).await
}

pub async fn set_block_list_config(
    tx: &mut PgConnection,
    values: &Values,
) -> Result<Change<BC>, OpError> {
    org_config::set_validated(tx, &BLOCK_LIST_CONFIG, values).await
}
