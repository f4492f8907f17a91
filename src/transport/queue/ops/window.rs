//! One window of an unfiltered listing for the Queue Viewer (a page number and size, with the
//! total), counted and cut in SQL, so that a page of a 100,000-message backlog costs its own
//! size: the rows outside the window are never read or built.

use sqlx::PgConnection;

use super::page::{Page, SortKey, Value};
use super::pushdown::Prefilter;
use super::read::entries_page;
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

/// The entries of `scope` from `offset`, `size` of them in `order`, and how many there are in
/// all. None when SQL cannot cut the window by entries: a server-wide listing where some message
/// has recipients in several queues (one message, several entries), or where a message the
/// `exact` filter condition lets through has a non-ASCII character it compares (Unicode case
/// rules are the filter's own), which the caller lists in full instead.
#[allow(clippy::too_many_arguments)]
pub(super) async fn window(
    conn: &mut PgConnection,
    server: &str,
    filter: MessageFilter<'_>,
    exact: Option<Prefilter>,
    order: Vec<(SortKey, bool)>,
    offset: usize,
    size: usize,
    held: Option<Held<'_>>,
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
    let counted = match (held, &exact, &scope) {
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
    let (Ok(offset), Ok(limit)) = (u32::try_from(offset), u32::try_from(size)) else {
        return Ok(Some((vec![], entries)));
    };
    if offset as usize >= entries || limit == 0 {
        return Ok(Some((vec![], entries)));
    }
    let page = Page {
        limit: Some(limit),
        order,
        offset,
        prefilter: exact,
        ..Page::default()
    };
    let (rows, _) = entries_page(conn, &scope, true, &page).await?;
    Ok(Some((rows, entries)))
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
