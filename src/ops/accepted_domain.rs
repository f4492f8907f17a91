//! AcceptedDomain: its property table and New/Get/Set/Remove-AcceptedDomain.

use sqlx::PgConnection;

use super::props::{Ctx, Export, Kind, Object, Prop, Value, Values, Verb};
use super::{Change, Identity, OpError, one, resolve};
use crate::field;
use crate::org::{AcceptedDomain, DomainType};

pub const DOMAIN_TYPES: &[&str] = &["Authoritative", "InternalRelay", "ExternalRelay"];

type D = AcceptedDomain;

pub static OBJECT: Object<D> = Object {
    props: &[
        Prop::read("Identity", Kind::Identity, |d: &D| {
            Value::Str(d.name.clone())
        }),
        field!(D, "Name", Kind::Str, name)
            .new_as(Verb::First)
            .export(Export::Always),
        field!(D, "DomainName", Kind::Str, domain_name)
            .new_as(Verb::Mandatory)
            .set_as(Verb::No)
            .export(Export::Always),
        field!(D, "DomainType", Kind::Enum(DOMAIN_TYPES), domain_type).export(Export::Always),
        Prop::read("Default", Kind::Bool, |d: &D| Value::Bool(d.is_default)),
        field!(D, "AddressBookEnabled", Kind::Bool, address_book_enabled),
        field!(
            D,
            "MessageExpirationTimeout",
            Kind::TimeSpan,
            message_expiration_timeout
        )
        .range(5, 7776000),
        field!(
            D,
            "DelayNotificationTimeout",
            Kind::TimeSpan,
            delay_notification_timeout
        )
        .range(1, 2592000),
        Prop::write_only("MakeDefault", Kind::Bool, make_default),
    ],
    new_extra: &[],
    export_cmdlet: "New-AcceptedDomain",
    export_first: &[],
    base,
    noun: "Accepted Domain",
    name: |d| d.name.clone(),
    unsupported_new: &["Organization", "OutboundOnly"],
    unsupported_set: &["OutboundOnly", "PendingRemoval"],
    tabs: &[(
        "General",
        &[
            "Name",
            "DomainName",
            "DomainType",
            "Default",
            "AddressBookEnabled",
            "MessageExpirationTimeout",
            "DelayNotificationTimeout",
        ],
    )],
};

fn make_default(d: &mut D, v: Value, _: &Ctx) -> Result<(), OpError> {
    let Value::Bool(v) = v else {
        return Err(OpError::invalid("MakeDefault", "Use $true or $false."));
    };
    if !v && d.is_default {
        return Err(OpError::invalid(
            "MakeDefault",
            "MakeDefault $false is not allowed: make another accepted domain the default instead.",
        ));
    }
    d.is_default |= v;
    Ok(())
}

/// The bare New-AcceptedDomain object of `d`'s type, against which an export is written.
pub fn base(d: &D) -> D {
    AcceptedDomain::new("", "", d.kind())
}

pub async fn get(
    tx: &mut PgConnection,
    identity: Option<&Identity>,
    many: bool,
) -> Result<Vec<D>, OpError> {
    resolve(
        AcceptedDomain::load_all_in(tx).await?,
        identity,
        many,
        |d| d.id,
        |d, eq| eq(&d.name) || eq(&d.domain_name),
    )
}

/// New-AcceptedDomain. The first accepted domain becomes the default as it is saved.
pub async fn new(tx: &mut PgConnection, values: &Values) -> Result<D, OpError> {
    let kind = match values.str("DomainType") {
        Some(t) => DomainType::parse(&t).ok_or_else(|| {
            OpError::invalid(
                "DomainType",
                format!(
                    "'{t}' is not a valid DomainType. Valid values: {}.",
                    DOMAIN_TYPES.join(", ")
                ),
            )
        })?,
        None => DomainType::Authoritative,
    };
    let mut d = AcceptedDomain::new("", &values.str("DomainName").unwrap_or_default(), kind);
    OBJECT.apply(&mut d, values, true, &Ctx::default())?;
    d.domain_name = d.domain_name.to_ascii_lowercase();
    OBJECT.validate(&d)?;
    d.insert_in(tx).await?;
    let saved = AcceptedDomain::load_all_in(tx).await?;
    Ok(saved.into_iter().find(|x| x.id == d.id).unwrap_or(d))
}

pub async fn set(
    tx: &mut PgConnection,
    identity: &Identity,
    values: &Values,
) -> Result<Change<D>, OpError> {
    let before = one(get(tx, Some(identity), false).await?);
    let mut after = before.clone();
    OBJECT.apply(&mut after, values, false, &Ctx::default())?;
    OBJECT.validate(&after)?;
    after.update(tx).await?;
    Ok(Change { before, after })
}

/// Remove-AcceptedDomain; the default accepted domain cannot be removed.
pub async fn remove(tx: &mut PgConnection, identity: &Identity) -> Result<D, OpError> {
    let d = one(get(tx, Some(identity), false).await?);
    d.delete(tx).await?;
    Ok(d)
}
