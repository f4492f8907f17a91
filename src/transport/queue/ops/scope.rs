//! Which recipients a Get-Message listing reads: a server, one queue, or named messages, as a
//! SQL condition the listing, its count and its window share.

use sqlx::PgConnection;

use super::read::{find_queue, queue_row};
use super::{QueueError, QueueIdentity, QueueName};

/// Which recipients an entry query selects, beyond "not final".
pub(super) enum Scope {
    Server(String),
    /// A delivery_queue row.
    QueueRow(i64),
    Submission(String),
    Poison(String),
    /// Messages of a server by internal id: one, or a filtered action's targets.
    Messages(String, Vec<i64>),
}

impl Scope {
    /// The SQL condition on `m` and `r`, with its `$1` (a server) and `$2` (numbers).
    pub(super) fn condition(&self) -> (&'static str, Option<&str>, Vec<i64>) {
        match self {
            Scope::Server(s) => ("lower(m.server) = lower($1)", Some(s.as_str()), vec![]),
            Scope::QueueRow(n) => ("r.queue_id = ANY($2) AND NOT m.poison", None, vec![*n]),
            Scope::Submission(s) => (
                "lower(m.server) = lower($1) AND r.queue_id IS NULL AND NOT m.poison",
                Some(s.as_str()),
                vec![],
            ),
            Scope::Poison(s) => (
                "lower(m.server) = lower($1) AND m.poison",
                Some(s.as_str()),
                vec![],
            ),
            Scope::Messages(s, ids) => (
                "lower(m.server) = lower($1) AND m.internal_id = ANY($2)",
                Some(s.as_str()),
                ids.clone(),
            ),
        }
    }
}

/// The entries a queue identity holds; None for a queue that holds nothing yet (an Unreachable
/// queue without its row).
pub(super) async fn queue_scope(
    conn: &mut PgConnection,
    local: &str,
    queue: &str,
) -> Result<Option<Scope>, QueueError> {
    let id = QueueIdentity::parse(queue, local)?;
    let found = find_queue(conn, &id).await?;
    Ok(match (id.queue, queue_row(conn, &id).await?) {
        (_, Some(row)) => Some(Scope::QueueRow(row.id)),
        (QueueName::Poison, None) => Some(Scope::Poison(found.identity.server)),
        (QueueName::Submission, None) => Some(Scope::Submission(found.identity.server)),
        _ => None,
    })
}
