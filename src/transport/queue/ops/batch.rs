//! A message action on many messages as one command: the Queue Viewer's selections and
//! "all N matching", and the shell's filtered pipelines.

use sqlx::PgConnection;

use super::command::{Prepared, Verb, message_prepared};
use super::{MessageIdentity, MessageInfo, QueueError, read, resolve_server};

/// One command for the messages of a filtered action (`verb` a message action), each checked
/// as `prepare` checks it, in one query per server (the first that fails stops the whole line);
/// None when there is nothing left to change.
pub async fn prepare_batch(
    conn: &mut PgConnection,
    verb: Verb,
    ids: &[MessageIdentity],
    with_ndr: bool,
) -> Result<Option<Prepared>, QueueError> {
    let found = read::message_entries_many(conn, ids).await?;
    let named: Vec<(&MessageIdentity, &[MessageInfo])> = ids
        .iter()
        .zip(&found)
        .map(|(id, entries)| (id, entries.as_slice()))
        .collect();
    batch_of(conn, verb, &named, with_ndr).await
}

/// `prepare_batch` for entries just listed (the Queue Viewer's "all N matching"): each entry
/// is its own target, already read, so the 50,000 of a big filtered action are not read twice.
pub async fn prepare_batch_of_entries(
    conn: &mut PgConnection,
    verb: Verb,
    entries: &[MessageInfo],
    with_ndr: bool,
) -> Result<Option<Prepared>, QueueError> {
    let named: Vec<(&MessageIdentity, &[MessageInfo])> = entries
        .iter()
        .map(|e| (&e.identity, std::slice::from_ref(e)))
        .collect();
    batch_of(conn, verb, &named, with_ndr).await
}

async fn batch_of(
    conn: &mut PgConnection,
    verb: Verb,
    named: &[(&MessageIdentity, &[MessageInfo])],
    with_ndr: bool,
) -> Result<Option<Prepared>, QueueError> {
    let mut servers: std::collections::HashMap<String, String> = Default::default();
    let mut batch: Option<Prepared> = None;
    let mut seen = std::collections::HashSet::new();
    for (id, entries) in named {
        let key = id.server.to_lowercase();
        let server = match servers.get(&key) {
            Some(s) => s.clone(),
            None => {
                let s = resolve_server(conn, &id.server).await?;
                servers.insert(key, s.clone());
                s
            }
        };
        let p = message_prepared(verb, id, server, entries, with_ndr);
        let Some(message) = p.message_id else {
            continue;
        };
        // A message in two queues comes twice: suspended once, its recipients removed in each.
        let first = seen.insert(message);
        let b = batch.get_or_insert_with(|| Prepared {
            message_id: None,
            ordinals: vec![],
            batch: vec![],
            ..p.clone()
        });
        if verb == Verb::RemoveMessage {
            b.batch.extend(p.ordinals.iter().map(|_| message));
            b.ordinals.extend(&p.ordinals);
        } else if first {
            b.batch.push(message);
        }
    }
    if let Some(b) = &mut batch {
        b.identity = format!("{} message(s)", seen.len());
    }
    // Nothing left to change (every recipient final): no command.
    Ok(batch.filter(|b| !b.batch.is_empty()))
}
