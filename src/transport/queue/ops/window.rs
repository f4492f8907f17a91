//! One window of an unfiltered listing for the Queue Viewer (a page number and size, with the
//! total), counted and cut in SQL, so that a page of a 100,000-message backlog costs its own
//! size: the rows outside the window are never read or built.

use sqlx::PgConnection;

use super::page::{Page, SortKey, Value};
use super::pushdown::Prefilter;
use super::read::{entries_page, named_message};
use super::scope::{Scope, queue_scope};
use super::{FINAL, MessageFilter, MessageIdentity, MessageInfo, QueueError, resolve_server};

/// Get-Message entries the running queue manager counts in the queue rows it holds (see
/// `QueueManager::held_entries`): the messages, and whether some message is in several queues
/// (or also in Submission), where entries and messages differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldEntries {
    pub messages: i64,
    pub spanning: bool,
}

/// Where a console inside the gateway gets `HeldEntries` for one queue row (`Some`) or for all
/// of them (`None`).
pub type Held<'a> = &'a (dyn Fn(Option<i64>) -> HeldEntries + Sync);

/// One page of the Queue Viewer's Messages tab: its order and size, where it starts, and (in the
/// gateway) where unfiltered totals come from.
#[derive(Clone, Default)]
pub struct PageRequest<'a> {
    pub order: Vec<(SortKey, bool)>,
    /// How many entries come before the page: where it starts when there is no anchor, and in
    /// any case the number the viewer shows for its first row.
    pub offset: usize,
    pub size: usize,
    /// The message the page follows or precedes (the viewer's Next and Previous links), so a
    /// page deep in a backlog is read from an index position instead of counted to.
    pub anchor: Option<Anchor>,
    pub held: Option<Held<'a>>,
}

/// A message the viewer showed, by identity, at the edge of the page asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anchor {
    After(String),
    Before(String),
}

/// The entries of `scope` the request asks for, and how many there are in all. None when SQL
/// cannot cut the window by entries: a server-wide listing where some message has recipients in
/// several queues (one message, several entries), or where a message the `exact` filter
/// condition lets through has a non-ASCII character it compares (Unicode case rules are the
/// filter's own), which the caller lists in full instead.
pub(super) async fn window(
    conn: &mut PgConnection,
    server: &str,
    filter: MessageFilter<'_>,
    exact: Option<Prefilter>,
    req: &PageRequest<'_>,
) -> Result<Option<(Vec<MessageInfo>, usize)>, QueueError> {
    let local = resolve_server(conn, server).await?;
    let scope = match filter {
        MessageFilter::All => Scope::Server(local),
        MessageFilter::Queue(q) => match queue_scope(conn, &local, q).await? {
            Some(scope) => scope,
            None => return Ok(Some((vec![], 0))),
        },
        MessageFilter::Message(m) => {
            let id = MessageIdentity::parse(m, &local)?;
            Scope::Messages(id.server, vec![id.internal_id])
        }
    };
    // Unfiltered, in the gateway: the queue rows' part from the manager's memory.
    let counted = match (req.held, &exact, &scope) {
        (Some(held), None, Scope::QueueRow(q)) => {
            let n = usize::try_from(held(Some(*q)).messages).unwrap_or(0);
            Some((n, n))
        }
        (Some(held), None, Scope::Server(s)) => Some(count_server_held(conn, s, held(None)).await?),
        _ => count(conn, &scope, exact.as_ref()).await?,
    };
    let Some((messages, entries)) = counted else {
        return Ok(None);
    };
    if messages != entries {
        return Ok(None);
    }
    // Past the end is an empty page, not an error; beyond u32 nothing is left anyway.
    let (Ok(offset), Ok(limit)) = (u32::try_from(req.offset), u32::try_from(req.size)) else {
        return Ok(Some((vec![], entries)));
    };
    if offset as usize >= entries || limit == 0 {
        return Ok(Some((vec![], entries)));
    }
    let mut page = Page {
        limit: Some(limit),
        order: req.order.clone(),
        offset,
        prefilter: exact,
        ..Page::default()
    };
    // An anchor that no longer names a message (removed meanwhile) leaves the offset to count.
    let mut backwards = false;
    if let Some(anchor) = &req.anchor {
        let (identity, before) = match anchor {
            Anchor::After(id) => (id, false),
            Anchor::Before(id) => (id, true),
        };
        match named_message(conn, server, identity).await {
            Ok((_, mut found)) if !found.is_empty() => {
                page.bookmark = Some(found.swap_remove(0));
                page.include_bookmark = false;
                page.offset = 0;
                if before {
                    // The page before is the page after in the reverse order, read backwards.
                    page.order = reversed(&req.order);
                    backwards = true;
                }
            }
            Err(QueueError::Db(e)) => return Err(QueueError::Db(e)),
            _ => {}
        }
    }
    let (mut rows, _) = entries_page(conn, &scope, true, &page).await?;
    if backwards {
        // One entry per message here (entries == messages), so rows reverse as messages do.
        rows.reverse();
    }
    Ok(Some((rows, entries)))
}

/// `order` with the identity that ends every order made explicit, each key turned around.
fn reversed(order: &[(SortKey, bool)]) -> Vec<(SortKey, bool)> {
    let mut keys = order.to_vec();
    if !keys.iter().any(|(k, _)| *k == SortKey::Identity) {
        keys.push((SortKey::Identity, false));
    }
    keys.into_iter().map(|(k, d)| (k, !d)).collect()
}

/// Messages and entries (a message in one queue; poison ones in the Poison queue) in scope that
/// `exact` keeps. When some message is in several queues only "not equal" matters, so entries
/// are not counted exactly then: the caller lists that scope in full anyway. None when a kept
/// message has a non-ASCII character the condition compares.
async fn count(
    conn: &mut PgConnection,
    scope: &Scope,
    exact: Option<&Prefilter>,
) -> Result<Option<(usize, usize)>, QueueError> {
    let (cond, server, numbers) = scope.condition();
    let (pre, values) = match exact {
        Some(p) => p.sql(3),
        None => ("true".into(), vec![]),
    };
    let odd = exact.map_or_else(|| "false".into(), Prefilter::non_ascii_rows);
    let from = format!(
        "FROM message m JOIN message_recipient r ON r.message_id = m.id
         WHERE r.status NOT IN {FINAL} AND {cond} AND {pre}"
    );
    // One pass without grouping first: when every recipient counted is its message's first
    // (ordinal 0, and the key is (message, ordinal)), each is a message of its own with one
    // entry, which is nearly always so.
    let flat = format!(
        "SELECT count(*), count(*) FILTER (WHERE r.ordinal <> 0), count(*) FILTER (WHERE {odd})
         {from}"
    );
    let (rows, others, odd_rows) = counts(conn, &flat, server, &numbers, &values).await?;
    if odd_rows > 0 {
        return Ok(None);
    }
    if others == 0 {
        let n = usize::try_from(rows).unwrap_or(0);
        return Ok(Some((n, n)));
    }
    // One group per message; a message whose recipients' queues differ has several entries.
    let grouped = format!(
        "SELECT count(*), count(*) FILTER (WHERE lo <> hi), 0::bigint FROM (
           SELECT min({key}) AS lo, max({key}) AS hi {from} GROUP BY m.id) e",
        key = "CASE WHEN m.poison THEN -1 ELSE coalesce(r.queue_id, 0) END",
    );
    let (messages, several, _) = counts(conn, &grouped, server, &numbers, &values).await?;
    let messages = usize::try_from(messages).unwrap_or(0);
    Ok(Some((
        messages,
        messages + usize::try_from(several).unwrap_or(0),
    )))
}

/// Messages and entries of a whole server: `held` for the queue rows, and in SQL the few the
/// manager does not hold (poison messages, messages in Submission). Entries exceed messages by
/// one when some message spans queues (only "not equal" matters, as in `count`).
async fn count_server_held(
    conn: &mut PgConnection,
    server: &str,
    held: HeldEntries,
) -> Result<(usize, usize), QueueError> {
    // Both parts read through the partial indexes of migration 0015; a message in Submission
    // with a recipient routed already is one entry in each (lo <> hi).
    let (messages, several): (i64, i64) = sqlx::query_as(&format!(
        "WITH ids AS (
           SELECT id FROM message WHERE lower(server) = lower($1) AND poison
           UNION
           SELECT m.id FROM message_recipient s JOIN message m ON m.id = s.message_id
            WHERE s.queue_id IS NULL AND s.status NOT IN {FINAL}
              AND lower(m.server) = lower($1) AND NOT m.poison)
         SELECT count(*), count(*) FILTER (WHERE lo <> hi) FROM (
           SELECT min({key}) AS lo, max({key}) AS hi
             FROM ids JOIN message m ON m.id = ids.id JOIN message_recipient r ON r.message_id = m.id
            WHERE r.status NOT IN {FINAL} GROUP BY m.id) e",
        key = "CASE WHEN m.poison THEN -1 ELSE coalesce(r.queue_id, 0) END",
    ))
    .bind(server)
    .fetch_one(&mut *conn)
    .await?;
    let messages = usize::try_from(held.messages.saturating_add(messages)).unwrap_or(0);
    let spans = held.spanning || several > 0;
    Ok((messages, messages + usize::from(spans)))
}

/// Three counts from `sql`, with the scope's `$1` and `$2` and the filter's values from `$3`.
async fn counts(
    conn: &mut PgConnection,
    sql: &str,
    server: Option<&str>,
    numbers: &[i64],
    values: &[Value],
) -> Result<(i64, i64, i64), QueueError> {
    let mut query = sqlx::query_as(sql).bind(server).bind(numbers);
    for v in values {
        query = match v {
            Value::Int(n) => query.bind(*n),
            Value::Text(t) => query.bind(t.as_str()),
            Value::Time(t) => query.bind(*t),
        };
    }
    Ok(query.fetch_one(&mut *conn).await?)
}
