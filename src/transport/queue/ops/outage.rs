//! The outage view (the console's Toolbox › Outage): each next hop that is failing, with what it
//! holds and when the senders hear about it. Read from the rows the queue manager writes, with the
//! same timeout resolution the timers and Get-Message's ExpirationTime use (the accepted domain's
//! override, else the queue's send connector's, else the server's), so the view never promises
//! a time the gateway does not keep.

use std::collections::HashMap;

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::rate::ReleaseRate;
use super::*;
use crate::org::{AcceptedDomain, SendConnector, TransportServer};
use crate::transport::categorizer::is_internal_sender;
use crate::transport::routing::effective_timeouts;

/// One failing next hop.
#[derive(Clone, Debug)]
pub struct Outage {
    pub identity: QueueIdentity,
    pub next_hop_domain: String,
    pub delivery_type: String,
    pub status: QueueStatus,
    /// The first failed attempt still on record for a recipient it holds: the outage began no
    /// later than this.
    pub failing_since: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub last_retry_time: Option<OffsetDateTime>,
    pub next_retry_time: Option<OffsetDateTime>,
    pub messages: i64,
    pub recipients: i64,
    pub oldest_received: Option<OffsetDateTime>,
    /// When the first delay DSN goes out to a sender (None: every sender was told already, or
    /// delay DSNs are off for them).
    pub next_delay_dsn: Option<OffsetDateTime>,
    /// When the first of its recipients expires (and its sender gets the NDR).
    pub first_expiry: Option<OffsetDateTime>,
    /// A controlled release in progress.
    pub messages_per_minute: Option<ReleaseRate>,
}

type QueueRow = (
    i64,
    String,
    String,
    String,
    Option<Uuid>,
    bool,
    String,
    Option<String>,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
    Option<i32>,
);

type GroupRow = (i64, String, String, OffsetDateTime, Option<OffsetDateTime>);

/// The failing next hops of `server` (a name or FQDN): delivery queues waiting for a retry,
/// suspended while waiting, or being released at a rate; oldest outage first.
pub async fn list_outages(
    conn: &mut PgConnection,
    server: &str,
) -> Result<Vec<Outage>, QueueError> {
    let server = resolve_server(conn, server).await?;
    let queues: Vec<QueueRow> = sqlx::query_as(
        "SELECT id, server, delivery_type, next_hop_domain, connector_id, suspended, status,
                last_error, last_retry_time, next_retry_time, release_rate
           FROM delivery_queue
          WHERE server = $1 AND delivery_type NOT IN ('Unreachable', 'ShadowRedundancy')
            AND (status = 'Retry' OR (next_retry_time IS NOT NULL AND last_error IS NOT NULL)
                 OR release_rate IS NOT NULL)
          ORDER BY id",
    )
    .bind(&server)
    .fetch_all(&mut *conn)
    .await?;
    if queues.is_empty() {
        return Ok(vec![]);
    }
    let ids: Vec<i64> = queues.iter().map(|q| q.0).collect();
    let counts: Vec<(i64, i64, i64, OffsetDateTime)> = sqlx::query_as(&format!(
        "SELECT r.queue_id, count(DISTINCT r.message_id), count(*), min(m.received_at)
           FROM message_recipient r JOIN message m ON m.id = r.message_id
          WHERE r.queue_id = ANY($1) AND r.status NOT IN {FINAL} AND NOT m.poison
          GROUP BY r.queue_id"
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let since: Vec<(i64, OffsetDateTime)> = sqlx::query_as(&format!(
        "SELECT r.queue_id, min(a.attempted_at)
           FROM message_recipient r
           JOIN delivery_attempt a ON a.message_id = r.message_id AND a.ordinal = r.ordinal
          WHERE r.queue_id = ANY($1) AND r.status NOT IN {FINAL}
          GROUP BY r.queue_id"
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    // The timers resolve a recipient's timeouts by its domain, and the delay DSN by its
    // sender: grouping by both gives each timer's earliest time without a row per recipient.
    let groups: Vec<GroupRow> = sqlx::query_as(&format!(
        "SELECT r.queue_id,
                lower(split_part(coalesce(r.route_address, r.address), '@', 2)),
                m.from_address,
                min(m.received_at),
                min(m.received_at) FILTER (WHERE NOT r.delay_notified)
           FROM message_recipient r JOIN message m ON m.id = r.message_id
          WHERE r.queue_id = ANY($1) AND r.status NOT IN {FINAL} AND NOT m.poison
          GROUP BY 1, 2, 3"
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let servers = TransportServer::load_all(conn).await?;
    let domains = AcceptedDomain::load_all_in(conn).await?;
    let connectors = SendConnector::load_all_in(conn).await?;
    let this = servers
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(&server));

    let counts: HashMap<i64, (i64, i64, OffsetDateTime)> = counts
        .into_iter()
        .map(|(q, m, r, o)| (q, (m, r, o)))
        .collect();
    let since: HashMap<i64, OffsetDateTime> = since.into_iter().collect();
    let mut out = Vec::with_capacity(queues.len());
    for (id, srv, delivery_type, next_hop, connector, suspended, status, error, last, next, rate) in
        queues
    {
        let connector = connector.and_then(|c| connectors.iter().find(|s| s.id == c));
        let (mut next_delay_dsn, mut first_expiry) =
            (None::<OffsetDateTime>, None::<OffsetDateTime>);
        for (_, domain, from, oldest, unnotified) in groups.iter().filter(|g| g.0 == id) {
            let Some(s) = this else { break };
            let t = effective_timeouts(s, &domains, connector, domain);
            let expiry = *oldest + t.message_expiration_timeout;
            first_expiry = Some(first_expiry.map_or(expiry, |e| e.min(expiry)));
            let dsn_on = if is_internal_sender(&domains, from) {
                s.internal_delay_dsn_enabled
            } else {
                s.external_delay_dsn_enabled
            };
            // The null sender gets no DSN of any kind.
            if let Some(u) = unnotified.filter(|_| dsn_on && !from.is_empty()) {
                let due = u + t.delay_notification_timeout;
                next_delay_dsn = Some(next_delay_dsn.map_or(due, |d| d.min(due)));
            }
        }
        let (messages, recipients, oldest) = counts
            .get(&id)
            .map_or((0, 0, None), |(m, r, o)| (*m, *r, Some(*o)));
        out.push(Outage {
            identity: QueueIdentity {
                server: srv,
                queue: QueueName::Delivery(id),
            },
            next_hop_domain: next_hop,
            delivery_type,
            status: if suspended {
                QueueStatus::Suspended
            } else {
                QueueStatus::parse(&status).unwrap_or(QueueStatus::Retry)
            },
            failing_since: since.get(&id).copied(),
            last_error: error,
            last_retry_time: last,
            next_retry_time: next,
            messages,
            recipients,
            oldest_received: oldest,
            next_delay_dsn,
            first_expiry,
            messages_per_minute: ReleaseRate::from_stored(rate),
        });
    }
    out.sort_by_key(|o| (o.failing_since.is_none(), o.failing_since));
    Ok(out)
}
