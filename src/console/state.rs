//! What every console handler is given.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::org::org_key::OrganizationKey;
use crate::smtp::server::auth_throttle::AuthThrottle;
use crate::smtp::server::limits::ConnectionLimits;
use crate::transport::stats::Stats;

#[derive(Clone)]
pub struct ConsoleState {
    pub pool: PgPool,
    /// This node's TransportServer name (`HUB1`).
    pub server: String,
    pub fqdn: String,
    /// Whether the console is served over HTTPS: the session cookie is then `Secure` and
    /// `__Host-` prefixed, and same-origin checks expect `https://`.
    pub https: bool,
    /// A session unused this long is signed off.
    pub idle_timeout: Duration,
    /// Failed sign-ins per source and per (account, source); the console's own, with its own
    /// thresholds, separate from SMTP AUTH's.
    pub logon_throttle: AuthThrottle,
    /// The organisation key, to seal a smart host's password the New Send Connector wizard is
    /// given; without it (tests that build the state by hand) such a wizard fails with the
    /// operation's own message.
    pub org_key: Option<Arc<OrganizationKey>>,
    /// This node's data directory (spool and logs); `None` in tests that build the state by
    /// hand, where the pages that read it say so.
    pub data_dir: Option<PathBuf>,
    /// This node's counters and connections, for the dashboard's live figures; without them
    /// (tests that build the state by hand) it shows what the database holds.
    pub live: Option<Live>,
}

/// What the running node counts in memory.
#[derive(Clone)]
pub struct Live {
    /// Counted this minute, not written yet.
    pub stats: Stats,
    /// Connections per receive connector.
    pub connections: ConnectionLimits,
    /// Back pressure, the database's state and unbound connectors (`/readyz`, the dashboard).
    pub pressure: crate::transport::pressure::Pressure,
    /// The node's queue manager, for the Queues tab's message counts.
    pub queues: crate::transport::queue::manager::QueueManager,
    /// The anti-spam agents' decisions counted this minute, not written yet (the Anti-spam tab).
    pub antispam: crate::transport::antispam_stats::AgentCounts,
}

impl ConsoleState {
    /// HTTPS, the default idle timeout (30 minutes) and a fresh sign-in throttle.
    pub fn new(pool: PgPool, server: &str, fqdn: &str) -> ConsoleState {
        ConsoleState {
            pool,
            server: server.to_string(),
            fqdn: fqdn.to_string(),
            https: true,
            idle_timeout: Duration::from_secs(1800),
            logon_throttle: super::logon::throttle(),
            org_key: None,
            data_dir: None,
            live: None,
        }
    }
}
