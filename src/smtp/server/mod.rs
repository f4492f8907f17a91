//! The receive side: one listener per binding, connector selection, the session state machine.

pub mod agent_log;
pub mod auth;
pub mod auth_throttle;
pub mod backend;
pub mod connection_filter;
pub mod data;
pub mod delayed_ack;
pub mod dnsbl;
pub mod drain;
pub mod ehlo;
pub mod envelope;
pub mod identity;
pub mod limits;
pub mod listener;
pub mod recipient_filter;
pub mod sender_filter;
pub mod session;
pub mod shadow;
pub mod source_rate;
pub mod stream;

use std::sync::Arc;

use tokio::sync::watch;

use crate::logs::protocol::ProtocolLog;
use crate::logs::tracking::TrackingLog;
use crate::org::Org;
use crate::transport::queue::Spool;

/// Everything a session needs, shared by all of them.
pub struct Gateway {
    /// Accounts and recipients (PostgreSQL in production).
    pub directory: Arc<dyn backend::Directory>,
    /// Where accepted messages go (PostgreSQL and the queue manager in production).
    pub intake: Arc<dyn backend::Intake>,
    /// The current organisation snapshot; replaced whenever the configuration changes.
    pub org: watch::Receiver<Arc<Org>>,
    /// The certificates STARTTLS serves, chosen by the connector's FQDN.
    pub tls: Option<Arc<crate::tls::store::CertStore>>,
    pub spool: Spool,
    pub receive_log: ProtocolLog,
    pub limits: limits::ConnectionLimits,
    /// AUTH failures across sessions, and the bound on argon2 verifications.
    pub auth_throttle: auth_throttle::AuthThrottle,
    pub tracking: TrackingLog,
    /// The process's stop, which ends sessions (`drain`).
    pub drain: drain::Drain,
    /// Back pressure and the database's state: new mail is refused while either says so.
    pub pressure: crate::transport::pressure::Pressure,
    /// The IP Block List providers' resolver and its cache of answers.
    pub dnsbl: dnsbl::Dnsbl,
}

impl Gateway {
    pub fn org(&self) -> Arc<Org> {
        self.org.borrow().clone()
    }
}
