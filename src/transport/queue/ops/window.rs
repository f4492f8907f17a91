//! One window of an unfiltered listing for the Queue Viewer (a page number and size, with the
//! total), counted and cut in SQL, so that a page of a 100,000-message backlog costs its own
//! size: the rows outside the window are never read or built.

use sqlx::PgConnection;

use super::page::{Page, SortKey, Value};
use super::pushdown::Prefilter;
use super::read::entries_page;
use super::scope::{Scope, queue_scope};
use super::{FINAL, MessageFilter, MessageIdentity, MessageInfo, QueueError, resolve_server};

/// The entries of `scope` from `offset`, `size` of them in `order`, and how many there are in
/// all. None when SQL cannot cut the window by entries: a server-wide listing where some message
/// has recipients in several queues (one message, several entries), or where a message the
/// `exact` filter condition lets through has a non-ASCII character it compares (Unicode case
/// rules are the filter's own), which the caller lists in full instead.
pub(super) async fn window(
    conn: &mut PgConnection,
    server: &str,
    filter: MessageFilter<'_>,
    exact: Option<Prefilter>,
    order: Vec<(SortKey, bool)>,
    offset: usize,
    size: usize,
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
    let Some((messages, entries)) = count(conn, &scope, exact.as_ref()).await? else {
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
