//! When a queued recipient's sender hears that it is delayed: the delay DSN time the queue
//! manager's timers use (DateReceived plus the recipient's DelayNotificationTimeout, from its
//! accepted domain, else the connector routing it, else the server), for the Queue Viewer's
//! message properties.

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{MessageInfo, QueueError, QueueName, RecipientStatus};
use crate::org::{AcceptedDomain, SendConnector, TransportServer};
use crate::transport::categorizer::is_internal_sender;
use crate::transport::routing::effective_timeouts;

/// A recipient's delay DSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelayNotification {
    /// Due at this time (if the recipient is still queued then).
    At(OffsetDateTime),
    /// Already sent.
    Sent,
    /// The server sends none for this sender (Internal/ExternalDelayDsnEnabled).
    Disabled,
    /// A shadow copy: the primary owns the message's delivery and its notifications, and no
    /// timer of this server touches it.
    Primary,
}

/// The delay DSN of each recipient of `e`, by ordinal.
pub async fn delay_notifications(
    conn: &mut PgConnection,
    e: &MessageInfo,
) -> Result<Vec<(i32, DelayNotification)>, QueueError> {
    let servers = TransportServer::load_all(conn).await?;
    let domains = AcceptedDomain::load_all_in(conn).await?;
    let connectors = SendConnector::load_all_in(conn).await?;
    let Some(server) = servers
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(&e.queue.server))
    else {
        return Ok(vec![]);
    };
    let connector_id: Option<uuid::Uuid> = match e.queue.queue {
        QueueName::Delivery(n) => sqlx::query_as::<_, (Option<uuid::Uuid>,)>(
            "SELECT connector_id FROM delivery_queue WHERE id = $1",
        )
        .bind(n)
        .fetch_optional(&mut *conn)
        .await?
        .and_then(|(c,)| c),
        _ => None,
    };
    let connector = connector_id.and_then(|id| connectors.iter().find(|c| c.id == id));
    let notified: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT ordinal, delay_notified FROM message_recipient WHERE message_id = $1",
    )
    .bind(e.id)
    .fetch_all(&mut *conn)
    .await?;
    let enabled = if is_internal_sender(&domains, &e.from_address) {
        server.internal_delay_dsn_enabled
    } else {
        server.external_delay_dsn_enabled
    };
    Ok(e.recipients
        .iter()
        .map(|r| {
            let sent = notified.iter().any(|(o, n)| *o == r.ordinal && *n);
            let address = r.route_address.as_deref().unwrap_or(&r.address);
            let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            let timeout =
                effective_timeouts(server, &domains, connector, domain).delay_notification_timeout;
            let at = if r.status == RecipientStatus::Shadow {
                DelayNotification::Primary
            } else if !enabled {
                DelayNotification::Disabled
            } else if sent {
                DelayNotification::Sent
            } else {
                DelayNotification::At(e.date_received + timeout)
            };
            (r.ordinal, at)
        })
        .collect())
}
