//! A real DNS server for MX tests: hickory-server in-process on 127.0.0.1, UDP and TCP. It
//! counts the queries it is asked (`queries`), so a test can tell a cached answer from a new one.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, MX, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

/// One zone `origin` with MX and A records; the server stops when dropped.
pub struct Dns {
    pub addr: SocketAddr,
    server: Option<Server<Counting>>,
    queries: Arc<AtomicUsize>,
}

/// The catalog, counting what it is asked.
pub struct Counting {
    catalog: Catalog,
    queries: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for Counting {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// What the zone holds: (name, preference, exchange) and (name, address).
#[derive(Default)]
pub struct Zone {
    pub mx: Vec<(&'static str, u16, &'static str)>,
    pub a: Vec<(&'static str, Ipv4Addr)>,
}

fn name(s: &str) -> Name {
    Name::from_str(&format!("{}.", s.trim_end_matches('.'))).unwrap()
}

impl Dns {
    pub async fn start(origin: &str, zone: Zone) -> Dns {
        Dns::start_with_txt(origin, zone, &[]).await
    }

    /// `start`, with TXT records too: (name, text), one record each (SPF, DNSBL texts).
    pub async fn start_with_txt(origin: &str, zone: Zone, txt: &[(&str, &str)]) -> Dns {
        let origin = name(origin);
        let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        let soa = SOA::new(
            name(&format!("ns.{origin}")),
            name(&format!("admin.{origin}")),
            1,
            3600,
            600,
            86400,
            60,
        );
        handler.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1);
        for (n, pref, exchange) in zone.mx {
            handler.upsert_mut(
                Record::from_rdata(name(n), 60, RData::MX(MX::new(pref, name(exchange)))),
                1,
            );
        }
        for (n, ip) in zone.a {
            handler.upsert_mut(Record::from_rdata(name(n), 60, RData::A(A(ip))), 1);
        }
        for (n, text) in txt {
            handler.upsert_mut(
                Record::from_rdata(name(n), 60, RData::TXT(TXT::new(vec![text.to_string()]))),
                1,
            );
        }
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let mut server = Server::new(Counting {
            catalog,
            queries: queries.clone(),
        });
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 4096);
        Dns {
            addr,
            server: Some(server),
            queries,
        }
    }

    /// How many queries the server has been asked so far.
    #[allow(dead_code)]
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        // Dropping the server aborts its tasks.
        self.server.take();
    }
}
