//! Add-/Get-/Set-/Remove-IPBlockListProvider, Get-/Set-IPBlockListProvidersConfig and
//! Get-/Set-IPBlockListConfig over `ops::ip_block_list`; their parameters come from the
//! property tables.

use sqlx::PgConnection;

use super::bind::{Arg, Bound, Param, Ty, at, m, p};
use super::cmdlets::{Cmdlet, from_table};
use super::config::values;
use super::{Obj, ShellError};
use crate::ops::Identity;
use crate::ops::OpError;
use crate::ops::ip_block_list as ops;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    AddProvider,
    GetProvider,
    SetProvider,
    RemoveProvider,
    GetProvidersConfig,
    SetProvidersConfig,
    GetConfig,
    SetConfig,
}

const ID: Param = at(p("Identity", Ty::Identity), 0);
const ID_M: Param = at(m("Identity", Ty::Identity), 0);

/// The cmdlets, for `cmdlets`' list.
pub fn cmdlets() -> Vec<Cmdlet> {
    let c = |name: &'static str, op: Op, params: Vec<Param>| Cmdlet {
        name,
        op: super::cmdlets::Op::IpBlockList(op),
        params,
    };
    // The organisation-wide objects take no identity.
    let no_id = |t: Vec<Param>| t.into_iter().skip(1).collect::<Vec<_>>();
    vec![
        c(
            "Add-IPBlockListProvider",
            Op::AddProvider,
            from_table(&ops::PROVIDER, None),
        ),
        c("Get-IPBlockListProvider", Op::GetProvider, vec![ID]),
        c(
            "Set-IPBlockListProvider",
            Op::SetProvider,
            from_table(&ops::PROVIDER, Some(ID_M)),
        ),
        c("Remove-IPBlockListProvider", Op::RemoveProvider, vec![ID_M]),
        c(
            "Get-IPBlockListProvidersConfig",
            Op::GetProvidersConfig,
            vec![],
        ),
        c(
            "Set-IPBlockListProvidersConfig",
            Op::SetProvidersConfig,
            no_id(from_table(&ops::PROVIDERS_CONFIG, Some(ID))),
        ),
        c("Get-IPBlockListConfig", Op::GetConfig, vec![]),
        c(
            "Set-IPBlockListConfig",
            Op::SetConfig,
            no_id(from_table(&ops::BLOCK_LIST_CONFIG, Some(ID))),
        ),
    ]
}

fn identity(b: &Bound, cmdlet: &str) -> Result<Option<Identity>, ShellError> {
    match b.get("Identity") {
        None => Ok(None),
        Some(Arg::Str(s)) => Ok(Some(Identity::Name(s.clone()))),
        Some(Arg::Obj(Obj::IpBlockListProvider(p))) => Ok(Some(Identity::Id {
            id: p.id,
            shown: p.name.clone(),
        })),
        Some(_) => Err(ShellError::BadPipelineInput(cmdlet.to_string())),
    }
}

fn whatif(b: &Bound, text: &mut String, action: String) {
    super::queue::whatif(b, text, action);
}

pub async fn run(
    tx: &mut PgConnection,
    op: Op,
    c: &Cmdlet,
    b: &Bound,
    text: &mut String,
) -> Result<Vec<Obj>, ShellError> {
    let vals = || values(b, &c.params);
    let target = || -> Result<Identity, ShellError> {
        identity(b, c.name)?.ok_or(ShellError::Op(OpError::MissingMandatory(vec!["Identity"])))
    };
    Ok(match op {
        Op::AddProvider => {
            let shown = b.str("Name").unwrap_or_default();
            // -WhatIf still runs the checks: the shell rolls the line's transaction back.
            whatif(
                b,
                text,
                format!("Adding IP Block list provider \"{shown}\""),
            );
            vec![Obj::IpBlockListProvider(ops::add(tx, &vals()).await?)]
        }
        Op::GetProvider => ops::get(tx, identity(b, c.name)?.as_ref(), true)
            .await?
            .into_iter()
            .map(Obj::IpBlockListProvider)
            .collect(),
        Op::SetProvider => {
            let ch = ops::set(tx, &target()?, &vals()).await?;
            whatif(
                b,
                text,
                format!("Setting IP Block list provider \"{}\"", ch.before.name),
            );
            vec![]
        }
        Op::RemoveProvider => {
            let removed = ops::remove(tx, &target()?).await?;
            whatif(
                b,
                text,
                format!("Removing IP Block list provider \"{}\"", removed.name),
            );
            vec![]
        }
        Op::GetProvidersConfig => vec![Obj::IpBlockListProvidersConfig(
            ops::get_providers_config(tx).await?,
        )],
        Op::SetProvidersConfig => {
            let ch = ops::set_providers_config(tx, &vals()).await?;
            whatif(
                b,
                text,
                "Setting IP Block list providers configuration".into(),
            );
            super::unenforced::warn(
                text,
                b,
                &Obj::IpBlockListProvidersConfig(ch.before),
                &Obj::IpBlockListProvidersConfig(ch.after),
            );
            vec![]
        }
        Op::GetConfig => vec![Obj::IpBlockListConfig(
            ops::get_block_list_config(tx).await?,
        )],
        Op::SetConfig => {
            let ch = ops::set_block_list_config(tx, &vals()).await?;
            whatif(b, text, "Setting IP Block list configuration".into());
            super::unenforced::warn(
                text,
                b,
                &Obj::IpBlockListConfig(ch.before),
                &Obj::IpBlockListConfig(ch.after),
            );
            vec![]
        }
    })
}
