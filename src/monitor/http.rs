//! `/metrics` over HTTP: on the console's listener, or on a listener of its own
//! (HUBGATE_METRICS_BIND), readable without a console session but only from the sources the
//! operator allows (HUBGATE_METRICS_ALLOW, loopback by default).

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ipnet::IpNet;
use tokio::task::JoinHandle;

/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "HUBGATE_METRICS_ALLOW: '{0}' is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8, ::1), nor 'none'"
    )]
    BadAllow(String),
    #[error("HUBGATE_METRICS_BIND: '{0}' is not an IP address and port (e.g. 127.0.0.1:9025)")]
    BadBind(String),
    #[error("HUBGATE_METRICS_BIND is set but HUBGATE_METRICS_ALLOW is 'none'")]
    BindWithoutAllow,
    #[error("/metrics cannot listen on {bind}: {source}")]
    Listen {
        bind: String,
        #[source]
        source: std::io::Error,
    },
    #[error("installing the metrics recorder: {0}")]
    Recorder(String),
}

/// Who may read `/metrics`; empty: nobody (metrics are off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    /// `none`, or comma-separated addresses and networks; a bare address is that one host.
    pub fn parse(s: &str) -> Result<AllowList, MetricsError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(AllowList(Vec::new()));
        }
        let mut nets = Vec::new();
        for item in s.split(',').map(str::trim) {
            let net = match item.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(a) => IpNet::from(a),
                    Err(_) => return Err(MetricsError::BadAllow(item.to_string())),
                },
            };
            nets.push(net);
        }
        Ok(AllowList(nets))
    }

    pub fn is_off(&self) -> bool {
        self.0.is_empty()
    }

    /// An IPv4 client of a dual-stack socket (`::ffff:a.b.c.d`) is matched as IPv4.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
}

impl Default for AllowList {
    fn default() -> AllowList {
        AllowList(super::default_allow())
    }
}

/// Where `/metrics` is served, as the operator chose.
#[derive(Debug, Clone)]
struct Access {
    allow: AllowList,
    /// On the console's listener (no HUBGATE_METRICS_BIND).
    on_console: bool,
}

static ACCESS: OnceLock<Access> = OnceLock::new();

/// Applies the operator's choice: `allow` (HUBGATE_METRICS_ALLOW) and, with `bind`
/// (HUBGATE_METRICS_BIND), a plain-HTTP listener of its own instead of the console's; installs
/// the recorder unless metrics are off. The listener is open when this returns.
pub async fn start(
    allow: &str,
    bind: Option<&str>,
) -> Result<Option<JoinHandle<()>>, MetricsError> {
    let allow = AllowList::parse(allow)?;
    let bind = bind.map(str::trim).filter(|b| !b.is_empty());
    if allow.is_off() {
        if bind.is_some() {
            return Err(MetricsError::BindWithoutAllow);
        }
        let _ = ACCESS.set(Access {
            allow,
            on_console: false,
        });
        return Ok(None);
    }
    let addr = match bind {
        Some(b) => Some(
            b.parse::<SocketAddr>()
                .map_err(|_| MetricsError::BadBind(b.to_string()))?,
        ),
        None => None,
    };
    super::install()?;
    let _ = ACCESS.set(Access {
        allow,
        on_console: addr.is_none(),
    });
    let Some(addr) = addr else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Listen {
            bind: addr.to_string(),
            source,
        })?;
    let app = Router::new().route("/metrics", get(own_listener));
    Ok(Some(tokio::spawn(crate::console::server::run(
        listener, None, app,
    ))))
}

/// `/metrics` on the console's listener: not found unless served there.
pub async fn on_console(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    match ACCESS.get() {
        Some(a) if a.on_console => scrape(a, peer.ip()),
        _ => (StatusCode::NOT_FOUND, "Not Found\n").into_response(),
    }
}

async fn own_listener(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    match ACCESS.get() {
        Some(a) => scrape(a, peer.ip()),
        None => (StatusCode::NOT_FOUND, "Not Found\n").into_response(),
    }
}

fn scrape(access: &Access, peer: IpAddr) -> Response {
    if !access.allow.allows(peer) {
        tracing::debug!(%peer, "/metrics refused: not in HUBGATE_METRICS_ALLOW");
        return (
            StatusCode::FORBIDDEN,
            "/metrics is not open to this address (HUBGATE_METRICS_ALLOW)\n",
        )
            .into_response();
    }
    let Some(exporter) = super::exporter() else {
        return (StatusCode::NOT_FOUND, "Not Found\n").into_response();
    };
    let mut response = exporter.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_parses_hosts_networks_and_none() {
        let a = AllowList::parse("127.0.0.1, 10.0.0.0/8,::1").unwrap();
        assert!(a.allows("127.0.0.1".parse().unwrap()));
        assert!(!a.allows("127.0.0.2".parse().unwrap()));
        assert!(a.allows("10.9.8.7".parse().unwrap()));
        assert!(a.allows("::ffff:10.1.1.1".parse().unwrap()));
        assert!(a.allows("::1".parse().unwrap()));
        assert!(AllowList::parse("none").unwrap().is_off());
        assert!(AllowList::default().allows("127.5.6.7".parse().unwrap()));
        assert!(!AllowList::default().allows("192.0.2.1".parse().unwrap()));
        let e = AllowList::parse("127.0.0.1,localhost").unwrap_err();
        assert_eq!(
            e.to_string(),
            "HUBGATE_METRICS_ALLOW: 'localhost' is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8, ::1), nor 'none'"
        );
        assert!(AllowList::parse("").is_err());
    }
}
