//! Suspend-/Resume-/Remove-Message on many messages: by filter they are one command to the
//! queue manager, not one per message.

use sqlx::PgConnection;

use super::bind::{Arg, Bound};
use super::queue::{
    Cmdlet, Op, commands, find, message_id, plural, server_of, whatif, wrong_input,
};
use super::{Shell, ShellError};
use crate::transport::queue::ops::command::{self, Applied, Verb};
use crate::transport::queue::ops::{self, MessageIdentity};

/// A filtered message action as one command to the queue manager, each message checked first
/// as `commands` checks it. Returns the messages it changed (those it was given when the reply
/// is pending).
async fn batch_command(
    sh: &mut Shell,
    tx: &mut PgConnection,
    server: &str,
    verb: Verb,
    identities: &[String],
    flag: bool,
    whatif: bool,
) -> Result<usize, ShellError> {
    let local = ops::resolve_server(&mut *tx, server).await?;
    let ids = identities
        .iter()
        .map(|id| MessageIdentity::parse(id, &local))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(prepared) = command::prepare_batch(&mut *tx, verb, &ids, flag).await? else {
        return Ok(0);
    };
    if whatif {
        return Ok(identities.len());
    }
    let reply = command::submit(&sh.pool, &prepared).await?;
    match reply.applied {
        Applied::Now => Ok(reply.messages as usize),
        Applied::AtStart => {
            sh.warnings.push(reply.to_string());
            Ok(reply.messages as usize)
        }
        Applied::Pending => {
            sh.warnings.push(reply.to_string());
            Ok(identities.len())
        }
    }
}

/// Suspend-/Resume-/Remove-Message on `ids`: one command to the queue manager for all of them
/// (one message alone is checked and sent as itself). By filter (-Filter, or the objects of a
/// filtered Get-Message down the pipeline) it says how many messages it changed.
pub(super) async fn message_action(
    sh: &mut Shell,
    tx: &mut PgConnection,
    c: &Cmdlet,
    b: &Bound,
    ids: &[String],
    by_filter: bool,
    text: &mut String,
) -> Result<(), ShellError> {
    let server = server_of(sh, b);
    // Exchange's default: the sender hears of the removal.
    let with_ndr = !matches!(b.get("WithNDR"), Some(Arg::Bool(false)));
    let (verb, action, done) = match c.op {
        Op::SuspendMessage => (Verb::SuspendMessage, "Suspending", "Suspended"),
        Op::ResumeMessage => (Verb::ResumeMessage, "Resuming", "Resumed"),
        _ if with_ndr => (
            Verb::RemoveMessage,
            "Removing (with NDR)",
            "Removed (with NDR)",
        ),
        _ => (
            Verb::RemoveMessage,
            "Removing (without NDR)",
            "Removed (without NDR)",
        ),
    };
    let whatif_any = b.switch("WhatIf");
    for id in ids {
        whatif(b, text, format!("{action} message \"{id}\""));
    }
    if !by_filter && ids.len() == 1 {
        return commands(sh, tx, &server, verb, ids, with_ndr, whatif_any).await;
    }
    let touched = batch_command(sh, tx, &server, verb, ids, with_ndr, whatif_any).await?;
    if by_filter && !whatif_any {
        text.push_str(&format!(
            "{done} {} matching the filter.\n",
            plural(touched, "message")
        ));
    }
    Ok(())
}

/// Whether `name` is a message action that takes many messages down a pipeline as one
/// command.
pub fn acts_on_messages(name: &str) -> bool {
    find(name).is_some_and(|c| {
        matches!(
            c.op,
            Op::SuspendMessage | Op::ResumeMessage | Op::RemoveMessage
        )
    })
}

/// A message action on the objects of a Get-Message (`filtered`: one given -Filter): each bound
/// as it comes down the pipeline (so a wrong object fails as it would alone), then one command
/// for them all.
pub async fn run_many(
    sh: &mut Shell,
    tx: &mut PgConnection,
    name: &str,
    bound: &[Bound],
    filtered: bool,
    text: &mut String,
) -> Result<(), ShellError> {
    let (Some(c), Some(first)) = (find(name), bound.first()) else {
        return Ok(());
    };
    let ids = bound
        .iter()
        .map(|b| {
            message_id(
                b.get("Identity").ok_or_else(|| wrong_input(c.name))?,
                c.name,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    message_action(sh, tx, c, first, &ids, filtered, text).await
}
