//! Recipients (Mailbox, MailContact): their property table and New/Get/Set/Remove.

use sqlx::PgConnection;

use super::props::{Ctx, Export, Kind, Object, Prop, Value, Values, Verb};
use super::{Change, Identity, OpError, one, resolve};
use crate::org::Recipient;

/// A recipient with its proxy addresses other than the primary one.
pub type R = (Recipient, Vec<String>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Mailbox,
    MailContact,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Mailbox => "Mailbox",
            Type::MailContact => "MailContact",
        }
    }
    pub fn object(self) -> &'static Object<R> {
        match self {
            Type::Mailbox => &MAILBOX,
            Type::MailContact => &CONTACT,
        }
    }
    pub fn of(r: &Recipient) -> Type {
        if r.recipient_type == "Mailbox" {
            Type::Mailbox
        } else {
            Type::MailContact
        }
    }
}

/// Both types show the same properties; the verbs take different ones.
const fn props(t: Type) -> [Prop<R>; 6] {
    let mailbox = matches!(t, Type::Mailbox);
    [
        Prop::read("Identity", Kind::Identity, |(r, _): &R| {
            Value::Str(r.name.clone())
        }),
        Prop::rw(
            "Name",
            Kind::Str,
            |(r, _): &R| Value::Str(r.name.clone()),
            set_name,
        )
        .new_as(Verb::First)
        .export(Export::Always),
        Prop::read("RecipientType", Kind::Str, |(r, _): &R| {
            Value::Str(r.recipient_type.clone())
        }),
        Prop::rw(
            "PrimarySmtpAddress",
            Kind::Str,
            |(r, _): &R| Value::Str(r.primary_smtp_address.clone()),
            set_primary,
        )
        .new_as(if mailbox { Verb::Mandatory } else { Verb::No })
        .set_as(if mailbox { Verb::Optional } else { Verb::No })
        .export(if mailbox {
            Export::Always
        } else {
            Export::Never
        }),
        Prop::rw("EmailAddresses", Kind::List, email_addresses, set_addresses),
        Prop::rw(
            "ExternalEmailAddress",
            Kind::Str,
            |(r, _): &R| {
                r.external_email_address
                    .clone()
                    .map(Value::Str)
                    .unwrap_or(Value::Null)
            },
            set_external,
        )
        .new_as(if mailbox { Verb::No } else { Verb::Mandatory })
        .set_as(if mailbox { Verb::No } else { Verb::Optional })
        .export(if mailbox {
            Export::Never
        } else {
            Export::Always
        }),
    ]
}

pub static MAILBOX: Object<R> = Object {
    props: &props(Type::Mailbox),
    new_extra: &[],
    export_cmdlet: "New-Mailbox",
    export_first: &[],
    base: |(r, _)| (r.clone(), vec![]),
    noun: "Mailbox",
    name: |(r, _)| r.name.clone(),
    unsupported_new: &[
        "UserPrincipalName",
        "Password",
        "Alias",
        "Database",
        "OrganizationalUnit",
        "DisplayName",
    ],
    unsupported_set: &["EmailAddressPolicyEnabled", "DisplayName"],
    tabs: &[
        ("General", &["Name", "RecipientType", "PrimarySmtpAddress"]),
        ("E-Mail Addresses", &["EmailAddresses"]),
    ],
};

pub static CONTACT: Object<R> = Object {
    props: &props(Type::MailContact),
    new_extra: &[],
    export_cmdlet: "New-MailContact",
    export_first: &["Name", "ExternalEmailAddress"],
    base: |(r, _)| (r.clone(), vec![]),
    noun: "MailContact",
    name: |(r, _)| r.name.clone(),
    unsupported_new: &["Alias", "OrganizationalUnit", "DisplayName"],
    unsupported_set: &["DisplayName"],
    tabs: &[
        (
            "General",
            &["Name", "RecipientType", "ExternalEmailAddress"],
        ),
        ("E-Mail Addresses", &["EmailAddresses"]),
    ],
};

fn text(param: &'static str, v: Value) -> Result<String, OpError> {
    match v {
        Value::Str(s) => Ok(s),
        _ => Err(OpError::invalid(param, "A single value is expected.")),
    }
}

fn email_addresses((r, extra): &R) -> Value {
    let mut addrs = vec![format!("SMTP:{}", r.primary_smtp_address)];
    addrs.extend(extra.iter().map(|a| format!("smtp:{a}")));
    Value::List(addrs)
}

fn set_name((r, _): &mut R, v: Value, _: &Ctx) -> Result<(), OpError> {
    r.name = text("Name", v)?;
    Ok(())
}

/// A new primary address keeps the old one as a proxy address.
fn set_primary((r, extra): &mut R, v: Value, _: &Ctx) -> Result<(), OpError> {
    let p = text("PrimarySmtpAddress", v)?;
    let old = std::mem::replace(&mut r.primary_smtp_address, p.clone());
    if !old.is_empty()
        && !old.eq_ignore_ascii_case(&p)
        && !extra.iter().any(|a| a.eq_ignore_ascii_case(&old))
    {
        extra.push(old);
    }
    extra.retain(|a| !a.eq_ignore_ascii_case(&p));
    Ok(())
}

/// `-EmailAddresses` as Exchange takes it: `SMTP:` marks the primary, `smtp:` or nothing a proxy.
fn set_addresses((r, extra): &mut R, v: Value, _: &Ctx) -> Result<(), OpError> {
    let list = match v {
        Value::List(l) => l,
        Value::Null => vec![],
        _ => {
            return Err(OpError::invalid(
                "EmailAddresses",
                "Give a list of addresses.",
            ));
        }
    };
    extra.clear();
    for a in list {
        if let Some(primary) = a.strip_prefix("SMTP:") {
            r.primary_smtp_address = primary.to_string();
        } else {
            let plain = a
                .strip_prefix("smtp:")
                .or_else(|| a.strip_prefix("Smtp:"))
                .unwrap_or(&a);
            extra.push(plain.to_string());
        }
    }
    let primary = r.primary_smtp_address.to_ascii_lowercase();
    extra.retain(|a| a.to_ascii_lowercase() != primary);
    Ok(())
}

/// The external address is also the primary one unless -EmailAddresses named a primary.
fn set_external((r, _): &mut R, v: Value, _: &Ctx) -> Result<(), OpError> {
    let e = text("ExternalEmailAddress", v)?;
    let e = e
        .strip_prefix("SMTP:")
        .or_else(|| e.strip_prefix("smtp:"))
        .unwrap_or(&e)
        .to_string();
    if r.external_email_address.as_deref() == Some(r.primary_smtp_address.as_str())
        || r.primary_smtp_address.is_empty()
    {
        r.primary_smtp_address = e.clone();
    }
    r.external_email_address = Some(e);
    Ok(())
}

pub async fn get(
    tx: &mut PgConnection,
    t: Type,
    identity: Option<&Identity>,
    many: bool,
) -> Result<Vec<R>, OpError> {
    let all: Vec<R> = Recipient::load_all(tx)
        .await?
        .into_iter()
        .filter(|(r, _)| r.recipient_type == t.name())
        .collect();
    resolve(
        all,
        identity,
        many,
        |(r, _)| r.id,
        |(r, extra), eq| eq(&r.name) || eq(&r.primary_smtp_address) || extra.iter().any(|a| eq(a)),
    )
}

pub async fn new(tx: &mut PgConnection, t: Type, values: &Values) -> Result<R, OpError> {
    let mut r = match t {
        Type::Mailbox => Recipient::mailbox("", ""),
        Type::MailContact => Recipient::mail_contact("", ""),
    };
    r.primary_smtp_address = String::new();
    r.external_email_address = None;
    let mut o = (r, vec![]);
    t.object().apply(&mut o, values, true, &Ctx::default())?;
    o.0.insert_in(tx, &o.1).await?;
    Ok(o)
}

pub async fn set(
    tx: &mut PgConnection,
    t: Type,
    identity: &Identity,
    values: &Values,
) -> Result<Change<R>, OpError> {
    let before = one(get(tx, t, Some(identity), false).await?);
    let mut after = before.clone();
    t.object()
        .apply(&mut after, values, false, &Ctx::default())?;
    after.0.update(tx, &after.1).await?;
    Ok(Change { before, after })
}

pub async fn remove(tx: &mut PgConnection, t: Type, identity: &Identity) -> Result<R, OpError> {
    let o = one(get(tx, t, Some(identity), false).await?);
    o.0.delete(tx).await?;
    Ok(o)
}
