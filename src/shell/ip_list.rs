//! Add-, Remove- and Get-IPAllowListEntry / -IPBlockListEntry over `ops::ip_list`.

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::bind::{Bound, Param, Ty, at, m, p};
use super::{Obj, ShellError};
use crate::ops::OpError;
use crate::ops::ip_list as ops;
use crate::org::ip_list::{IpList, IpListEntry};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Add,
    Remove,
    Get,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    pub verb: Verb,
    pub allow: bool,
}

pub struct Cmdlet {
    pub name: &'static str,
    pub op: Op,
    pub params: &'static [Param],
}

const ADD: &[Param] = &[
    p("IPAddress", Ty::Str),
    p("IPRange", Ty::Str),
    p("ExpirationTime", Ty::Str),
    p("Comment", Ty::Str),
    p("Server", Ty::Str),
];
const REMOVE: &[Param] = &[at(m("Identity", Ty::Identity), 0), p("Server", Ty::Str)];
const GET: &[Param] = &[
    at(p("Identity", Ty::Identity), 0),
    p("IPAddress", Ty::Str),
    p("ResultSize", Ty::Unsupported),
    p("Server", Ty::Str),
];

const fn c(name: &'static str, verb: Verb, allow: bool, params: &'static [Param]) -> Cmdlet {
    Cmdlet {
        name,
        op: Op { verb, allow },
        params,
    }
}

pub const CMDLETS: &[Cmdlet] = &[
    c("Add-IPAllowListEntry", Verb::Add, true, ADD),
    c("Remove-IPAllowListEntry", Verb::Remove, true, REMOVE),
    c("Get-IPAllowListEntry", Verb::Get, true, GET),
    c("Add-IPBlockListEntry", Verb::Add, false, ADD),
    c("Remove-IPBlockListEntry", Verb::Remove, false, REMOVE),
    c("Get-IPBlockListEntry", Verb::Get, false, GET),
];

pub fn find(name: &str) -> Option<&'static Cmdlet> {
    CMDLETS.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

/// -Identity: the entry's integer, or an entry of `list` piped from Get-.
fn number(s: &str) -> Result<i64, ShellError> {
    Ok(ops::identity(s)?)
}

fn piped(list: IpList) -> impl FnOnce(&Obj) -> Option<i64> {
    move |o| match o {
        Obj::IpListEntry(e) if e.list == list => Some(e.id),
        _ => None,
    }
}

pub async fn run(
    tx: &mut PgConnection,
    c: &Cmdlet,
    b: &Bound,
    text: &mut String,
) -> Result<Vec<Obj>, ShellError> {
    let list = if c.op.allow {
        IpList::Allow
    } else {
        IpList::Block
    };
    let noun = if c.op.allow {
        "IP Allow list entry"
    } else {
        "IP Block list entry"
    };
    match c.op.verb {
        Verb::Add => {
            let expiration_time = match b.str("ExpirationTime") {
                None => None,
                Some(s) => Some(super::queue::parse_datetime(&s).ok_or_else(|| {
                    OpError::invalid(
                        "ExpirationTime",
                        format!("\"{s}\" is not a valid ExpirationTime (a date and time, e.g. 12/31/2026 23:59)."),
                    )
                })?),
            };
            let req = ops::AddEntry {
                ip_address: b.str("IPAddress"),
                ip_range: b.str("IPRange"),
                expiration_time,
                comment: b.str("Comment"),
            };
            let shown = req.ip_address.clone().or(req.ip_range.clone());
            // -WhatIf still runs the checks: the shell rolls the line's transaction back.
            super::queue::whatif(
                b,
                text,
                format!("Adding {noun} \"{}\"", shown.unwrap_or_default()),
            );
            let e = ops::add(tx, list, &req, OffsetDateTime::now_utc()).await?;
            Ok(vec![Obj::IpListEntry(e)])
        }
        Verb::Remove => {
            let id = b.required_identity(c.name, number, piped(list))?;
            super::queue::whatif(b, text, format!("Removing {noun} \"{id}\""));
            ops::remove(tx, list, id).await?;
            Ok(vec![])
        }
        Verb::Get => {
            let id = b.identity(c.name, number, piped(list))?;
            let covering = match b.str("IPAddress") {
                None => None,
                Some(s) => Some(s.trim().parse().map_err(|_| {
                    OpError::invalid("IPAddress", format!("\"{s}\" is not a valid IP address."))
                })?),
            };
            Ok(ops::get(tx, list, id, covering)
                .await?
                .into_iter()
                .map(Obj::IpListEntry)
                .collect())
        }
    }
}

/// Format-List's properties, Exchange's names; no ExpirationTime shows DateTime.MaxValue.
pub fn properties(e: &IpListEntry) -> Vec<(&'static str, String)> {
    let now = OffsetDateTime::now_utc();
    let tf = |b: bool| if b { "True" } else { "False" }.to_string();
    vec![
        ("Identity", e.id.to_string()),
        ("IPRange", e.ip_range.clone()),
        (
            "ExpirationTime",
            e.expiration_time
                .map(super::format::datetime)
                .unwrap_or_else(|| "12/31/9999 11:59:59 PM".into()),
        ),
        ("HasExpired", tf(e.has_expired(now))),
        ("IsMachineGenerated", tf(false)),
        ("Comment", e.comment.clone().unwrap_or_default()),
    ]
}
