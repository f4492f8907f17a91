//! Heartbeats (reference §1.3): a primary holding this node's copies that no session has heard
//! for ShadowHeartbeatTimeoutInterval gets a session of its own (the send connector's port, TLS
//! and authentication): XSHADOW, XQDISCARD pages, QUIT. A connect error, a refused or malformed
//! XSHADOW, an XQDISCARD error or a dropped connection is a failed heartbeat; after
//! ShadowHeartbeatRetryCount of them in a row the copies are resubmitted through routing. A new
//! queue-database id in the XSHADOW reply resubmits them at once. Both settings are read from
//! the organisation's configuration on every pass, so Set-TransportConfig applies live.

use std::sync::Arc;
use std::time::Duration;

use crate::smtp::client::Client;
use crate::transport::delivery::Agents;
use crate::transport::delivery::smtp::heartbeat_session;
use crate::transport::queue::manager::{HeartbeatDue, Primary, QueueManager};

use super::discard;

/// How often the due heartbeats are looked for.
const PASS: Duration = Duration::from_secs(1);

/// Upper bound on one heartbeat session, whatever the connector's inactivity timeout: a
/// primary that hangs is as good as down.
const SESSION_LIMIT: Duration = Duration::from_secs(120);

/// Runs for the life of the process.
pub async fn run(qm: QueueManager, agents: Arc<Agents>) {
    loop {
        tokio::time::sleep(PASS).await;
        let config = qm.org().config.clone();
        let interval = Duration::from_secs(config.shadow_heartbeat_timeout_interval.max(1) as u64);
        let retries = u32::try_from(config.shadow_heartbeat_retry_count.max(1)).unwrap_or(1);
        for due in qm.heartbeats_due(interval) {
            let qm = qm.clone();
            let agents = agents.clone();
            tokio::spawn(async move {
                let ok = matches!(
                    tokio::time::timeout(SESSION_LIMIT, beat(&qm, &agents, &due)).await,
                    Ok(Ok(()))
                );
                qm.heartbeat_done(due.queue_id, ok, retries).await;
            });
        }
    }
}

/// Why one heartbeat failed (logged; the failure counts either way).
#[derive(Debug, thiserror::Error)]
enum BeatError {
    #[error("{0}")]
    Client(#[from] crate::smtp::client::ClientError),
    #[error("the primary did not accept XSHADOW")]
    NotShadowing,
    #[error("{0}")]
    Discard(#[from] discard::DiscardError),
}

async fn beat(qm: &QueueManager, agents: &Agents, due: &HeartbeatDue) -> Result<(), BeatError> {
    let result = session(qm, agents, due).await;
    if let Err(e) = &result {
        tracing::info!("heartbeat to {} ({}): {e}", due.fqdn, due.host);
    }
    result
}

async fn session(qm: &QueueManager, agents: &Agents, due: &HeartbeatDue) -> Result<(), BeatError> {
    let mut client: Client =
        heartbeat_session(agents, due.connector_id, &due.host, due.port).await?;
    let Some(dbid) = client.shadow_dbid().map(str::to_string) else {
        client.quit().await;
        return Err(BeatError::NotShadowing);
    };
    // The copies were made with the name the primary gave then; it keys their queue.
    let primary = Primary {
        fqdn: due.fqdn.clone(),
        connector_id: due.connector_id,
        host: due.host.clone(),
        port: due.port,
        dbid,
    };
    qm.shadow_contact(&primary).await;
    let result = discard::query(&mut client, qm, &primary.key()).await;
    let usable = client.is_usable();
    client.quit().await;
    result?;
    if !usable {
        return Err(BeatError::Client(crate::smtp::client::ClientError::Closed));
    }
    Ok(())
}
