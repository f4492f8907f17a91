//! Get-/Set-RecipientFilterConfig's output, and hubgate's Add-, Remove-, Get- and
//! Import-ValidRecipient over `ops::recipient_filter`.

use sqlx::PgConnection;

use super::bind::{Bound, Param, Ty, at, m, p};
use super::{Obj, ShellError};
use crate::ops::OpError;
use crate::ops::recipient_filter::{self as ops, ValidRecipient};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Get,
    Import,
}

pub struct Cmdlet {
    pub name: &'static str,
    pub op: Op,
    pub params: &'static [Param],
}

pub const CMDLETS: &[Cmdlet] = &[
    Cmdlet {
        name: "Add-ValidRecipient",
        op: Op::Add,
        params: &[at(m("Address", Ty::Str), 0)],
    },
    Cmdlet {
        name: "Remove-ValidRecipient",
        op: Op::Remove,
        params: &[at(m("Identity", Ty::Identity), 0)],
    },
    Cmdlet {
        name: "Get-ValidRecipient",
        op: Op::Get,
        params: &[at(p("Identity", Ty::Identity), 0), p("Domain", Ty::Str)],
    },
    Cmdlet {
        name: "Import-ValidRecipient",
        op: Op::Import,
        params: &[at(m("Path", Ty::Str), 0)],
    },
];

pub fn find(name: &str) -> Option<&'static Cmdlet> {
    CMDLETS.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

/// -Identity: the address, or an entry piped from Get-ValidRecipient.
fn address(s: &str) -> Result<String, ShellError> {
    Ok(s.to_string())
}

fn piped(o: &Obj) -> Option<String> {
    match o {
        Obj::ValidRecipient(v) => Some(v.address.clone()),
        _ => None,
    }
}

pub async fn run(
    tx: &mut PgConnection,
    c: &Cmdlet,
    b: &Bound,
    text: &mut String,
) -> Result<Vec<Obj>, ShellError> {
    match c.op {
        Op::Add => {
            let a = b.str("Address").unwrap_or_default();
            super::queue::whatif(b, text, format!("Adding valid recipient \"{a}\""));
            Ok(vec![Obj::ValidRecipient(ops::add(tx, &a).await?)])
        }
        Op::Remove => {
            let a = b.required_identity(c.name, address, piped)?;
            super::queue::whatif(b, text, format!("Removing valid recipient \"{a}\""));
            ops::remove(tx, &a).await?;
            Ok(vec![])
        }
        Op::Get => {
            let a = b.identity(c.name, address, piped)?;
            let d = b.str("Domain");
            Ok(ops::get(tx, a.as_deref(), d.as_deref())
                .await?
                .into_iter()
                .map(Obj::ValidRecipient)
                .collect())
        }
        Op::Import => {
            let path = b.str("Path").unwrap_or_default();
            let unreadable = |e: std::io::Error| {
                OpError::invalid("Path", format!("Cannot read \"{path}\": {e}"))
            };
            // Checked before reading, so that a huge file is never read into memory.
            ops::check_import_size(&path, std::fs::metadata(&path).map_err(unreadable)?.len())?;
            let data = std::fs::read(&path).map_err(unreadable)?;
            super::queue::whatif(
                b,
                text,
                format!("Importing valid recipients from \"{path}\""),
            );
            let added = ops::import_file(tx, &path, &data).await?;
            text.push_str(&format!("{added} valid recipients added.\n"));
            Ok(vec![])
        }
    }
}

/// Format-List's properties.
pub fn properties(v: &ValidRecipient) -> Vec<(&'static str, String)> {
    vec![
        ("Identity", v.address.clone()),
        ("Address", v.address.clone()),
        ("Domain", v.domain.clone()),
        ("WhenCreated", super::format::datetime(v.added)),
    ]
}
