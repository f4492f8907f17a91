//! One listening socket per binding; connections are matched to a receive connector on arrival.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use super::Gateway;
use super::session::Session;
use super::source_rate;
use super::stream::Stream;
use crate::org::network::Binding;
use crate::org::{Org, receive_connector};
use crate::smtp::proto::Reply;

/// The longest a refused connection may take to receive its 421.
const REFUSAL_WRITE_LIMIT: Duration = Duration::from_secs(10);

/// The sockets to listen on for the enabled connectors. Linux will not bind a specific address
/// on a port whose wildcard is already bound, so a wildcard binding stands for every address of
/// its family on that port, and the connection's local address picks the connector.
pub fn plan(org: &Org) -> HashSet<SocketAddr> {
    let bindings: Vec<Binding> = org
        .receive_connectors
        .iter()
        .filter(|c| c.enabled)
        .flat_map(|c| c.parsed_bindings())
        .collect();
    bindings
        .iter()
        .filter(|b| {
            b.is_wildcard()
                || !bindings.iter().any(|w| {
                    w.is_wildcard() && w.0.port() == b.0.port() && w.0.is_ipv4() == b.0.is_ipv4()
                })
        })
        .map(|b| b.0)
        .collect()
}

#[derive(Default)]
pub struct Listeners {
    active: HashMap<SocketAddr, JoinHandle<()>>,
    /// Bound but not accepting yet: at start the sockets are opened before the queue exists, so
    /// that a node that cannot listen fails before it delivers anything.
    pending: HashMap<SocketAddr, tokio::net::TcpListener>,
    /// Sockets that could not be opened, with the reason; tried again at each `reconcile`.
    failed: BTreeMap<SocketAddr, String>,
    /// Sessions in progress, for a graceful drain at shutdown.
    pub sessions: Arc<AtomicUsize>,
}

impl Listeners {
    /// Opens sockets for new bindings and closes those no connector uses any more. Returns
    /// whether the set of failed bindings changed.
    pub fn reconcile(&mut self, gw: &Arc<Gateway>, org: &Org) -> bool {
        let changed = self.open(org);
        self.start(gw);
        changed
    }

    /// The socket half of `reconcile`: binds what `org` wants and is not bound yet, without
    /// accepting. Returns whether the set of failed bindings changed.
    pub fn open(&mut self, org: &Org) -> bool {
        let wanted = plan(org);
        self.active.retain(|addr, handle| {
            let keep = wanted.contains(addr);
            if !keep {
                tracing::info!("closing listener {addr}");
                handle.abort();
            }
            keep
        });
        self.pending.retain(|addr, _| wanted.contains(addr));
        let before = std::mem::take(&mut self.failed);
        let mut addrs: Vec<SocketAddr> = wanted.into_iter().collect();
        addrs.sort();
        for addr in addrs {
            if self.active.contains_key(&addr) || self.pending.contains_key(&addr) {
                continue;
            }
            match bind(addr) {
                Ok(listener) => {
                    if before.contains_key(&addr) {
                        tracing::info!("SMTP can listen on {addr} again");
                    }
                    self.pending.insert(addr, listener);
                }
                Err(e) => {
                    let reason = e.to_string();
                    // Said once per new reason; the retries that follow would only repeat it.
                    if before.get(&addr) != Some(&reason) {
                        tracing::error!("cannot listen on {addr}: {reason}");
                    }
                    self.failed.insert(addr, reason);
                }
            }
        }
        before != self.failed
    }

    /// Starts accepting on every socket `open` bound.
    pub fn start(&mut self, gw: &Arc<Gateway>) {
        for (addr, listener) in self.pending.drain() {
            tracing::info!("SMTP listening on {addr}");
            let gw = gw.clone();
            let sessions = self.sessions.clone();
            self.active
                .insert(addr, tokio::spawn(accept_loop(listener, gw, sessions)));
        }
    }

    /// Every socket open, accepting or about to.
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.active
            .keys()
            .chain(self.pending.keys())
            .copied()
            .collect()
    }

    /// The sockets that could not be opened and why, in address order.
    pub fn failed(&self) -> Vec<(SocketAddr, String)> {
        self.failed.iter().map(|(a, e)| (*a, e.clone())).collect()
    }

    pub fn close_all(&mut self) {
        self.pending.clear();
        for (_, h) in self.active.drain() {
            h.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    gw: Arc<Gateway>,
    sessions: Arc<AtomicUsize>,
) {
    loop {
        match listener.accept().await {
            Ok((tcp, remote)) => {
                let gw = gw.clone();
                let sessions = sessions.clone();
                // Counted before the task runs, so that a drain never sees an accepted
                // connection as none.
                sessions.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    handle(tcp, remote, gw).await;
                    sessions.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(e) => {
                // Out of descriptors and similar: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(tcp: TcpStream, remote: SocketAddr, gw: Arc<Gateway>) {
    let _ = tcp.set_nodelay(true);
    let Ok(local) = tcp.local_addr() else { return };
    let org = gw.org();
    let Some(connector) = receive_connector::select(&org.receive_connectors, local, remote) else {
        // No connector takes this client: Exchange drops such connections without a word.
        tracing::debug!("no receive connector for {remote} on {local}");
        return;
    };
    let connector = connector.clone();
    let mut stream = Stream::plain(tcp);
    // The source's own rate first: a flooding source must not spend the server's rate.
    let source_ok = match org.server.max_connection_rate_per_minute_per_source {
        Some(per_minute) if !allow_listed(&org, remote) => {
            match gw.limits.source_connection(per_minute, remote.ip()) {
                source_rate::Verdict::Allowed => true,
                source_rate::Verdict::Refused { first } => {
                    if first {
                        source_rate::log_refusal(&gw, &connector, local, remote, per_minute);
                    }
                    false
                }
            }
        }
        _ => true,
    };
    let admitted = if !source_ok {
        Err(source_rate::refusal())
    } else if gw
        .limits
        .connection_allowed(org.server.max_connection_rate_per_minute)
    {
        gw.limits.acquire(&connector, remote.ip())
    } else {
        Err(Reply::new(
            421,
            "4.3.2",
            "The maximum connection rate per minute has exceeded a limit, closing transmission channel",
        ))
    };
    let _slot = match admitted {
        Ok(slot) => slot,
        Err(reply) => {
            crate::monitor::connection_refused(&connector.name);
            // A refused client gets its reply, but no more of the connection's time than that.
            let limit = Duration::from_secs(connector.connection_inactivity_timeout as u64)
                .min(REFUSAL_WRITE_LIMIT);
            let _ = stream.write_all(reply.to_wire().as_bytes(), limit).await;
            stream.shutdown(limit).await;
            return;
        }
    };
    let _counted = crate::monitor::connection(&connector.name);
    Session::new(gw, org, connector, stream, local, remote)
        .run()
        .await;
}

/// Sources on the IP Allow List are exempt from the per-source connection rate.
fn allow_listed(org: &Org, remote: SocketAddr) -> bool {
    matches!(
        crate::org::ip_list::lookup(&org.ip_lists, remote.ip(), time::OffsetDateTime::now_utc()),
        crate::org::ip_list::Listed::Allowed(_)
    )
}
