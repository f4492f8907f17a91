//! Add-/Get-/Set-/Remove-IPBlockListProvider, Get-/Set-IPBlockListProvidersConfig and
//! Get-/Set-IPBlockListConfig over `ops::ip_block_list`; their parameters come from the
//! property tables.

use sqlx::PgConnection;

use super::bind::{Bound, Param, Ty, at, m, p};
use super::cmdlets::{Cmdlet, from_table};
use super::config::values;
use super::{Obj, ShellError};
use crate::ops::Identity;
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

/// -Identity: the provider's name, or one piped from Get-IPBlockListProvider.
fn name(s: &str) -> Result<Identity, ShellError> {
    Ok(Identity::Name(s.to_string()))
}

fn piped(o: &Obj) -> Option<Identity> {
    match o {
        Obj::IpBlockListProvider(p) => Some(Identity::Id {
            id: p.id,
            shown: p.name.clone(),
        }),
        _ => None,
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
    let target = || b.required_identity(c.name, name, piped);
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
        Op::GetProvider => ops::get(tx, b.identity(c.name, name, piped)?.as_ref(), true)
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
