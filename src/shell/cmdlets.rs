//! The cmdlets: each name is a typed operation with its parameter table. The tables of the
//! configuration cmdlets come from the objects' property tables (`ops`); what each operation
//! does is `config::run`'s dispatch, over `ops`.

use std::sync::LazyLock;

use sqlx::PgConnection;

use super::bind::{self, Arg, Param, Ty, at, m, p};
use super::parse::Command;
use super::{
    Obj, Shell, ShellError, certificate, config, format, ip_list, queue, recipient_filter, render,
    select,
};
use crate::ops::props::{Kind, Object};
use crate::ops::recipient::Type;
use crate::ops::{
    accepted_domain, permission, receive_connector, send_connector, sender_filter, transport,
};

/// What a configuration cmdlet does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    GetAcceptedDomain,
    NewAcceptedDomain,
    SetAcceptedDomain,
    RemoveAcceptedDomain,
    GetSendConnector,
    NewSendConnector,
    SetSendConnector,
    RemoveSendConnector,
    GetReceiveConnector,
    NewReceiveConnector,
    SetReceiveConnector,
    RemoveReceiveConnector,
    GetTransportServer,
    SetTransportServer,
    GetTransportConfig,
    SetTransportConfig,
    GetSenderFilterConfig,
    SetSenderFilterConfig,
    AddADPermission,
    RemoveADPermission,
    GetADPermission,
    EnableCrossForestConnector,
    GetCredential,
    NewUser,
    GetRecipient(Type),
    NewRecipient(Type),
    SetRecipient(Type),
    RemoveRecipient(Type),
    FormatList,
    FormatTable,
    ExportCmdlet,
    SelectObject,
    SortObject,
    WhereObject,
    Queue(queue::Op),
    Certificate(certificate::Op),
    IpList(ip_list::Op),
    GetRecipientFilterConfig,
    SetRecipientFilterConfig,
    ValidRecipient(recipient_filter::Op),
    IpBlockList(super::ip_block_list::Op),
}

pub struct Cmdlet {
    pub name: &'static str,
    pub op: Op,
    pub params: Vec<Param>,
}

const ID: Param = at(p("Identity", Ty::Identity), 0);
const ID_M: Param = at(m("Identity", Ty::Identity), 0);

fn ty(kind: Kind) -> Ty {
    match kind {
        Kind::Str => Ty::Str,
        Kind::Bool => Ty::Bool,
        Kind::Enum(v) => Ty::Enum(v),
        Kind::List => Ty::List,
        Kind::Flags(v) => Ty::EnumList(v),
        Kind::Int | Kind::Unlimited => Ty::Int,
        Kind::TimeSpan => Ty::Span,
        Kind::ByteSize => Ty::Bytes,
        Kind::Credential => Ty::Cred,
        Kind::Identity => Ty::Identity,
        Kind::Switch => Ty::Switch,
    }
}

/// New- (no identity) or Set- (`id`) parameters of an object, from its property table.
pub(super) fn from_table<T>(o: &Object<T>, id: Option<Param>) -> Vec<Param> {
    let new = id.is_none();
    let unsupported = if new {
        o.unsupported_new
    } else {
        o.unsupported_set
    };
    id.into_iter()
        .chain(
            o.params(new)
                .into_iter()
                .map(|(name, kind, mandatory, first)| Param {
                    name,
                    ty: ty(kind),
                    mandatory,
                    position: first.then_some(0),
                }),
        )
        .chain(unsupported.iter().map(|n| p(n, Ty::Unsupported)))
        .collect()
}

fn cmdlet(name: &'static str, op: Op, params: &[Param]) -> Cmdlet {
    Cmdlet {
        name,
        op,
        params: params.to_vec(),
    }
}

static CMDLETS: LazyLock<Vec<Cmdlet>> = LazyLock::new(|| {
    let perm = [
        ID_M,
        at(m("User", Ty::Str), 1),
        p("ExtendedRights", Ty::EnumList(permission::RIGHTS)),
        p("AccessRights", Ty::EnumList(&["ExtendedRight"])),
        p("Deny", Ty::Switch),
        p("InheritanceType", Ty::Unsupported),
        p("Owner", Ty::Unsupported),
        p("Properties", Ty::Unsupported),
        p("ChildObjectTypes", Ty::Unsupported),
        p("InheritedObjectType", Ty::Unsupported),
    ];
    let format = [at(p("Property", Ty::List), 0)];
    let mut all = vec![
        cmdlet("New-AcceptedDomain", Op::NewAcceptedDomain, &[]),
        cmdlet("Get-AcceptedDomain", Op::GetAcceptedDomain, &[ID]),
        cmdlet("Set-AcceptedDomain", Op::SetAcceptedDomain, &[]),
        cmdlet("Remove-AcceptedDomain", Op::RemoveAcceptedDomain, &[ID_M]),
        cmdlet("New-SendConnector", Op::NewSendConnector, &[]),
        cmdlet("Get-SendConnector", Op::GetSendConnector, &[ID]),
        cmdlet("Set-SendConnector", Op::SetSendConnector, &[]),
        cmdlet("Remove-SendConnector", Op::RemoveSendConnector, &[ID_M]),
        cmdlet("New-ReceiveConnector", Op::NewReceiveConnector, &[]),
        cmdlet(
            "Get-ReceiveConnector",
            Op::GetReceiveConnector,
            &[ID, p("Server", Ty::Str)],
        ),
        cmdlet("Set-ReceiveConnector", Op::SetReceiveConnector, &[]),
        cmdlet(
            "Remove-ReceiveConnector",
            Op::RemoveReceiveConnector,
            &[ID_M],
        ),
        cmdlet("Get-TransportServer", Op::GetTransportServer, &[ID]),
        cmdlet("Set-TransportServer", Op::SetTransportServer, &[]),
        cmdlet("Get-TransportConfig", Op::GetTransportConfig, &[]),
        cmdlet("Set-TransportConfig", Op::SetTransportConfig, &[]),
        cmdlet("Get-SenderFilterConfig", Op::GetSenderFilterConfig, &[]),
        cmdlet("Set-SenderFilterConfig", Op::SetSenderFilterConfig, &[]),
        cmdlet(
            "Get-RecipientFilterConfig",
            Op::GetRecipientFilterConfig,
            &[],
        ),
        cmdlet(
            "Set-RecipientFilterConfig",
            Op::SetRecipientFilterConfig,
            &[],
        ),
        cmdlet("Add-ADPermission", Op::AddADPermission, &perm),
        cmdlet("Remove-ADPermission", Op::RemoveADPermission, &perm),
        cmdlet(
            "Get-ADPermission",
            Op::GetADPermission,
            &[ID_M, p("User", Ty::Str), p("Owner", Ty::Unsupported)],
        ),
        cmdlet(
            "Enable-CrossForestConnector",
            Op::EnableCrossForestConnector,
            &[
                m("Connector", Ty::Str),
                m("User", Ty::Str),
                p("genericMTA", Ty::Switch),
            ],
        ),
        cmdlet(
            "Get-Credential",
            Op::GetCredential,
            &[
                at(p("UserName", Ty::Str), 0),
                p("Password", Ty::Str),
                // hubgate's: a password a backup carried sealed with the organisation key.
                p("EncryptedPassword", Ty::Str),
                p("Message", Ty::Str),
                p("Credential", Ty::Unsupported),
            ],
        ),
        // hubgate's: an account (Exchange's were Active Directory's), as a backup writes it.
        cmdlet(
            "New-User",
            Op::NewUser,
            &[
                at(m("Name", Ty::Str), 0),
                p("MemberOf", Ty::List),
                p("Password", Ty::Str),
                p("EncryptedPassword", Ty::Str),
            ],
        ),
    ];
    for t in [Type::Mailbox, Type::MailContact] {
        let (get, new, set, remove) = match t {
            Type::Mailbox => (
                "Get-Mailbox",
                "New-Mailbox",
                "Set-Mailbox",
                "Remove-Mailbox",
            ),
            Type::MailContact => (
                "Get-MailContact",
                "New-MailContact",
                "Set-MailContact",
                "Remove-MailContact",
            ),
        };
        all.push(cmdlet(
            new,
            Op::NewRecipient(t),
            &from_table(t.object(), None),
        ));
        all.push(cmdlet(get, Op::GetRecipient(t), &[ID]));
        all.push(cmdlet(
            set,
            Op::SetRecipient(t),
            &from_table(t.object(), Some(ID_M)),
        ));
        all.push(cmdlet(remove, Op::RemoveRecipient(t), &[ID_M]));
    }
    all.extend([
        cmdlet("Format-List", Op::FormatList, &format),
        cmdlet("Format-Table", Op::FormatTable, &format),
        cmdlet("Export-Cmdlet", Op::ExportCmdlet, &[]),
        cmdlet(
            "Select-Object",
            Op::SelectObject,
            &[p("First", Ty::Int), p("Last", Ty::Int)],
        ),
        cmdlet(
            "Sort-Object",
            Op::SortObject,
            &[at(p("Property", Ty::List), 0), p("Descending", Ty::Switch)],
        ),
        cmdlet(
            "Where-Object",
            Op::WhereObject,
            &[at(m("FilterScript", Ty::Str), 0)],
        ),
    ]);
    // The property tables give the New-/Set- parameters.
    for c in &mut all {
        let table = match c.op {
            Op::NewAcceptedDomain => from_table(&accepted_domain::OBJECT, None),
            Op::SetAcceptedDomain => from_table(&accepted_domain::OBJECT, Some(ID_M)),
            Op::NewSendConnector => from_table(&send_connector::OBJECT, None),
            Op::SetSendConnector => from_table(&send_connector::OBJECT, Some(ID_M)),
            Op::NewReceiveConnector => from_table(&receive_connector::OBJECT, None),
            Op::SetReceiveConnector => from_table(&receive_connector::OBJECT, Some(ID_M)),
            Op::SetTransportServer => from_table(&transport::SERVER, Some(ID)),
            // Set-TransportConfig acts on the one organisation object: no identity.
            Op::SetTransportConfig => from_table(&transport::CONFIG, Some(ID))
                .into_iter()
                .skip(1)
                .collect(),
            Op::SetSenderFilterConfig => from_table(&sender_filter::CONFIG, Some(ID))
                .into_iter()
                .skip(1)
                .collect(),
            Op::SetRecipientFilterConfig => {
                from_table(&crate::ops::recipient_filter::CONFIG, Some(ID))
                    .into_iter()
                    .skip(1)
                    .collect()
            }
            _ => continue,
        };
        c.params = table;
    }
    all.extend(queue::CMDLETS.iter().map(|q| Cmdlet {
        name: q.name,
        op: Op::Queue(q.op),
        params: q.params.to_vec(),
    }));
    all.extend(certificate::CMDLETS.iter().map(|c| Cmdlet {
        name: c.name,
        op: Op::Certificate(c.op),
        params: c.params.to_vec(),
    }));
    all.extend(ip_list::CMDLETS.iter().map(|c| Cmdlet {
        name: c.name,
        op: Op::IpList(c.op),
        params: c.params.to_vec(),
    }));
    all.extend(recipient_filter::CMDLETS.iter().map(|c| Cmdlet {
        name: c.name,
        op: Op::ValidRecipient(c.op),
        params: c.params.to_vec(),
    }));
    all.extend(super::ip_block_list::cmdlets());
    all
});

const ALIASES: &[(&str, &str)] = &[
    ("fl", "Format-List"),
    ("ft", "Format-Table"),
    ("select", "Select-Object"),
    ("sort", "Sort-Object"),
    ("?", "Where-Object"),
    ("where", "Where-Object"),
];

pub fn find(name: &str) -> Option<&'static Cmdlet> {
    let name = ALIASES
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
        .unwrap_or(name);
    CMDLETS.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

pub fn lookup(name: &str) -> Option<(&'static str, &'static [Param])> {
    find(name).map(|c| (c.name, c.params.as_slice()))
}

/// Every cmdlet name with its parameters, for Tab completion.
pub fn all() -> impl Iterator<Item = (&'static str, &'static [Param])> {
    CMDLETS.iter().map(|c| (c.name, c.params.as_slice()))
}

pub struct Outcome {
    pub objects: Vec<Obj>,
    pub text: String,
    pub whatif: bool,
}

/// Runs a pipeline inside `tx`. Objects flow from each stage into the next one's -Identity.
pub async fn run_pipeline(
    sh: &mut Shell,
    tx: &mut PgConnection,
    cmds: &[Command],
) -> Result<Outcome, ShellError> {
    let mut out = Outcome {
        objects: vec![],
        text: String::new(),
        whatif: false,
    };
    // The objects flowing are the messages a filter matched: a message action on them is one
    // command to the queue manager, not one per object.
    let mut filtered = false;
    for (stage, cmd) in cmds.iter().enumerate() {
        let c = find(&cmd.name).ok_or_else(|| ShellError::UnknownCmdlet(cmd.name.clone()))?;
        let eval = |v: &super::parse::Value| sh.eval(v);
        // These act on all the objects of the previous stage at once.
        if matches!(c.op, Op::SelectObject | Op::SortObject) {
            let b = bind::bind(c.name, &c.params, &cmd.elements, None, &eval)?;
            let objs = std::mem::take(&mut out.objects);
            out.objects = match c.op {
                Op::SelectObject => select::select(objs, &b)?,
                _ => select::sort(objs, &b)?,
            };
            continue;
        }
        if c.op == Op::WhereObject {
            let b = bind::bind(c.name, &c.params, &cmd.elements, None, &eval)?;
            let script = b.str("FilterScript").unwrap_or_default();
            out.objects = super::where_object::run(&script, std::mem::take(&mut out.objects))?;
            continue;
        }
        if matches!(c.op, Op::FormatList | Op::FormatTable | Op::ExportCmdlet) {
            let b = bind::bind(c.name, &c.params, &cmd.elements, None, &eval)?;
            let props = match b.get("Property") {
                Some(Arg::List(l)) => l.clone(),
                _ => vec![],
            };
            let objs = std::mem::take(&mut out.objects);
            out.text.push_str(&match c.op {
                Op::FormatList => format::list(&objs, &props),
                Op::FormatTable => format::table(&objs, &props),
                _ => objs
                    .iter()
                    .map(render::new_cmdlet)
                    .collect::<Vec<_>>()
                    .join(""),
            });
            continue;
        }
        if stage == 0 {
            let b = bind::bind(c.name, &c.params, &cmd.elements, None, &eval)?;
            out.whatif |= b.switch("WhatIf");
            filtered = b.str("Filter").is_some();
            if sh.restore
                && let super::restore::Before::Done(objs) =
                    super::restore::before(sh, tx, c, &b).await?
            {
                out.objects = objs;
                continue;
            }
            out.objects = config::run(sh, tx, c, &b, &mut out.text).await?;
        } else {
            let input = std::mem::take(&mut out.objects);
            // Many messages down a pipeline are one command to the queue manager, not one each.
            if (filtered || input.len() > 1) && super::queue_action::acts_on_messages(c.name) {
                let mut bound = Vec::with_capacity(input.len());
                for obj in &input {
                    let b =
                        bind::bind(c.name, &c.params, &cmd.elements, Some(obj), &|v| sh.eval(v))?;
                    out.whatif |= b.switch("WhatIf");
                    bound.push(b);
                }
                super::queue_action::run_many(sh, tx, c.name, &bound, filtered, &mut out.text)
                    .await?;
                filtered = false;
                continue;
            }
            for obj in &input {
                let b = bind::bind(c.name, &c.params, &cmd.elements, Some(obj), &|v| sh.eval(v))?;
                out.whatif |= b.switch("WhatIf");
                let produced = config::run(sh, tx, c, &b, &mut out.text).await?;
                out.objects.extend(produced);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_name_and_alias() {
        assert_eq!(lookup("fl").unwrap().0, "Format-List");
        assert_eq!(lookup("new-sendconnector").unwrap().0, "New-SendConnector");
        assert_eq!(lookup("get-queue").unwrap().0, "Get-Queue");
        assert!(lookup("Get-MailboxDatabase").is_none());
    }

    #[test]
    fn every_parameter_table_is_unambiguous() {
        for (name, params) in all() {
            let mut seen = std::collections::HashSet::new();
            for p in params.iter().chain(bind::COMMON) {
                assert!(
                    seen.insert(p.name.to_ascii_lowercase()),
                    "{name}: {}",
                    p.name
                );
            }
        }
    }

    #[test]
    fn table_parameters_keep_their_binding() {
        let (_, ps) = lookup("New-SendConnector").unwrap();
        assert_eq!(ps[0].name, "Name");
        assert_eq!(ps[0].position, Some(0));
        assert!(ps[0].mandatory);
        assert!(
            ps.iter()
                .any(|p| p.name == "Internet" && p.ty == Ty::Switch)
        );
        assert!(!ps.iter().any(|p| p.name == "Identity"));
        let (_, ps) = lookup("Set-SendConnector").unwrap();
        assert!(ps[0].name == "Identity" && ps[0].mandatory);
        assert!(!ps.iter().any(|p| p.name == "Usage"));
        let (_, ps) = lookup("Set-TransportConfig").unwrap();
        assert!(!ps.iter().any(|p| p.name == "Identity"));
        let (_, ps) = lookup("New-AcceptedDomain").unwrap();
        assert!(ps.iter().any(|p| p.name == "DomainName" && p.mandatory));
        assert!(!ps.iter().any(|p| p.name == "MakeDefault"));
    }
}
