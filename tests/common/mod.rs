//! The end-to-end harness: a real PostgreSQL, the real `hubgate` binary, real clients.
//!
//! One PostgreSQL cluster serves every test run (started with hubgate's own managed-cluster code,
//! or taken from HUBGATE_TEST_DATABASE_URL); each test gets a fresh database in it.

#![allow(dead_code)]

pub mod antispam;
pub mod browser;
pub mod console;
pub mod dns;
pub mod held;
pub mod https;
pub mod mail;
pub mod openssl;
pub mod pair;
pub mod peers;
pub mod wizard;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use hubgate::db::managed::ManagedCluster;
use hubgate::org::bootstrap::{self, FirstStart};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

pub const FQDN: &str = "hub1.contoso.test";
pub const SERVER: &str = "HUB1";
pub const DOMAIN: &str = "contoso.test";
pub const ADMIN_PASSWORD: &str = "Adm1n-Pa55word";

static CLUSTER: OnceCell<Option<ManagedCluster>> = OnceCell::const_new();

/// A URL for a fresh, empty database.
pub async fn fresh_database() -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    if let Ok(base) = std::env::var("HUBGATE_TEST_DATABASE_URL") {
        let admin = PgPool::connect(&base)
            .await
            .expect("connect to HUBGATE_TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let (prefix, rest) = base.rsplit_once('/').expect("database URL with a path");
        let query = rest
            .split_once('?')
            .map(|(_, q)| format!("?{q}"))
            .unwrap_or_default();
        return format!("{prefix}/{name}{query}");
    }
    let cluster = CLUSTER
        .get_or_init(|| async {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-pgsql");
            Some(
                ManagedCluster::start(&dir)
                    .await
                    .expect("start the test PostgreSQL cluster"),
            )
        })
        .await
        .as_ref()
        .expect("cluster");
    cluster
        .ensure_database(&name)
        .await
        .expect("create test database");
    cluster.url(&name)
}

/// The loopback address every gateway of this test process listens on. It is made from the pid
/// (below 2^22 on Linux), so no other running process has it, and it lies outside
/// 127.0.0.0/24, where tests place peers and choose client sources. Nothing but this process's
/// gateways binds it, so their fixed ports (see [`gateway_port`]) cannot be taken by anyone else:
/// no window between picking a port and binding it.
pub fn gateway_ip() -> Ipv4Addr {
    node_ip(0)
}

/// A further address of this process's own, for a second (1) or third (2) node in one test:
/// the same pid-made address in a second-octet range of its own (65..128, 129..192).
pub fn node_ip(n: u8) -> Ipv4Addr {
    assert!(n < 3, "three node addresses per test process");
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        1 + 64 * n + ((pid >> 16) & 0x3f) as u8,
        (pid >> 8) as u8,
        pid as u8,
    )
}

/// A port on [`gateway_ip`] that no other gateway of this process uses. Below the ephemeral range
/// (32768 and up) so an outgoing connection never holds it.
pub fn gateway_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(10_000);
    let port = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(
        port < PEER_PORTS.start,
        "too many gateway ports in one test process"
    );
    port
}

const PEER_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port for a peer (a sink, a smart host) on a shared 127.0.0.x address, reserved for the life
/// of this process against every other test process on the machine: each port is claimed by an
/// exclusive lock on a file named after it, which the kernel drops when the process ends, however
/// it ends. Below the ephemeral range, so no outgoing connection holds it either. A port may be
/// used on several addresses at once (a send connector has one port for all its smart hosts).
pub fn peer_port() -> u16 {
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    // One directory per user: another user's would not be writable here.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("hubgate-test-ports-{uid}"));
    std::fs::create_dir_all(&dir).expect("create the port lock directory");
    let span = u32::from(PEER_PORTS.end - PEER_PORTS.start);
    // Start where other processes are unlikely to be, to keep the scan short.
    let start = (std::process::id() * 97) % span;
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..span {
        let port = PEER_PORTS.start + ((start + i) % span) as u16;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
            .expect("open a port lock file");
        // Locks are per open file, so a port this process already holds is refused here too.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if locked && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            held.push(file);
            return port;
        }
    }
    panic!("no free peer port in {PEER_PORTS:?}");
}

/// The old name of [`peer_port`], kept for tests written before it.
pub fn free_port() -> u16 {
    peer_port()
}

/// A configured but not yet running gateway: its database exists and can be adjusted first.
pub struct Setup {
    pub db_url: String,
    pub pool: PgPool,
    pub data_dir: tempfile::TempDir,
    /// The address the gateway's connectors and console listen on ([`gateway_ip`]).
    pub ip: Ipv4Addr,
    pub smtp_port: u16,
    pub client_port: u16,
    pub console_port: u16,
    /// The node's FQDN (HUBGATE_SERVER_NAME).
    pub fqdn: String,
}

impl Setup {
    /// Creates the organisation as a first start would, with tarpitting off so rejections are
    /// quick (a dedicated test covers the tarpit).
    pub async fn new() -> Setup {
        Setup::named(SERVER, FQDN).await
    }

    /// `new` for a node of another name, as a second organisation's gateway in the same test.
    pub async fn named(server: &str, fqdn: &str) -> Setup {
        Setup::node(0, server, fqdn).await
    }

    /// `named` on this process's node address `n` ([`node_ip`]).
    pub async fn node(n: u8, server: &str, fqdn: &str) -> Setup {
        Setup::on(fresh_database().await, node_ip(n), server, fqdn).await
    }

    /// A first-started gateway `server` on `ip`, on the database at `db_url` (migrated here).
    pub async fn on(db_url: String, ip: Ipv4Addr, server: &str, fqdn: &str) -> Setup {
        let pool = PgPool::connect(&db_url).await.expect("connect");
        hubgate::db::MIGRATOR.run(&pool).await.expect("migrate");
        let smtp_port = gateway_port();
        let client_port = gateway_port();
        bootstrap::ensure_server(
            &pool,
            &FirstStart {
                server_name: server,
                fqdn,
                default_bindings: Some(vec![format!("{ip}:{smtp_port}")]),
                client_bindings: Some(vec![format!("{ip}:{client_port}")]),
                admin_password: Some(ADMIN_PASSWORD),
            },
        )
        .await
        .expect("bootstrap");
        sqlx::query("UPDATE receive_connector SET tarpit_interval = 0")
            .execute(&pool)
            .await
            .unwrap();
        Setup {
            db_url,
            pool,
            data_dir: tempfile::tempdir().unwrap(),
            ip,
            smtp_port,
            client_port,
            console_port: gateway_port(),
            fqdn: fqdn.to_string(),
        }
    }

    /// A further node of this setup's organisation, on node address `n` ([`node_ip`]): the same
    /// database, a data directory and ports of its own. Its server is not made here: the first
    /// `hubgate serve` makes it, given [`Setup::default_bindings`] (and the organisation's key,
    /// see [`Setup::share_key`]).
    pub fn join(&self, n: u8, fqdn: &str) -> Setup {
        Setup {
            db_url: self.db_url.clone(),
            pool: self.pool.clone(),
            data_dir: tempfile::tempdir().unwrap(),
            ip: node_ip(n),
            smtp_port: gateway_port(),
            client_port: gateway_port(),
            console_port: gateway_port(),
            fqdn: fqdn.to_string(),
        }
    }

    /// HUBGATE_DEFAULT_BINDINGS for this node's first start: its Default and Client connectors
    /// on its own address and ports.
    pub fn default_bindings(&self) -> String {
        format!(
            "{ip}:{},Client={ip}:{}",
            self.smtp_port,
            self.client_port,
            ip = self.ip
        )
    }

    /// Gives this node the organisation's key from `from`'s data directory (made by its first
    /// start), as an operator copies it to every node.
    pub fn share_key(&self, from: &Path) {
        let to = self.data_dir.path().join("organization.key");
        std::fs::copy(from.join("organization.key"), &to).expect("copy organization.key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The Default connector's address, for connections and for other connectors' bindings.
    pub fn smtp(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.smtp_port))
    }

    /// A further port on the gateway's address, e.g. for a connector a test adds.
    pub fn another_port(&self) -> u16 {
        gateway_port()
    }

    pub async fn sql(&self, q: &str) {
        sqlx::query(q)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }

    pub async fn start(self) -> Gateway {
        let mut g = Gateway {
            setup: self,
            child: None,
        };
        g.spawn().await;
        g
    }
}

/// The environment every test's `hubgate serve` starts with; callers add to it or override it.
pub fn serve_env<'c>(cmd: &'c mut Command, s: &Setup, data_dir: &Path) -> &'c mut Command {
    cmd.env("HUBGATE_DATA_DIR", data_dir)
        .env("HUBGATE_SERVER_NAME", &s.fqdn)
        .env("DATABASE_URL", &s.db_url)
        .env(
            "HUBGATE_CONSOLE_BIND",
            format!("{}:{}", s.ip, s.console_port),
        )
        .env("HUBGATE_LOG", "warn")
        // The drain's bound well inside the 30 s `Gateway::stop` waits, for a test that stops a
        // gateway with a session still inside its transaction.
        .env("HUBGATE_DRAIN_TIMEOUT", "10")
}

/// `hubgate serve` for `s`, keeping its data in `data_dir`.
pub fn serve_command(s: &Setup, data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hubgate"));
    cmd.arg("serve");
    serve_env(&mut cmd, s, data_dir);
    cmd
}

/// Waits (bounded) for the ready line on the child's piped stdout.
pub async fn wait_ready(child: &mut Child) {
    wait_ready_logging(child, None).await
}

/// `wait_ready`, copying every line of the child's stdout (its log) to `log` as it comes.
pub async fn wait_ready_logging(child: &mut Child, mut log: Option<std::fs::File>) {
    let stdout = child.stdout.take().expect("stdout piped");
    let ready = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut copy = move |l: &str| {
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{l}");
            }
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("hubgate ready") => {
                    copy(&l);
                    // Keep draining so the child never blocks on a full pipe.
                    std::thread::spawn(move || {
                        for l in lines.map_while(Result::ok) {
                            copy(&l);
                        }
                    });
                    return true;
                }
                Some(Ok(l)) => copy(&l),
                _ => return false,
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(ready, "hubgate did not become ready");
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut text);
        }
        text
    })
}

/// Runs `cmd` to its exit, at most 60 s (else kills it and panics with `hung`):
/// (status, stdout, stderr).
pub fn run_to_exit(cmd: &mut Command, hung: &str) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hubgate");
    // Read both pipes while it runs, so a chatty child cannot block on a full one.
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{hung}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

pub struct Gateway {
    pub setup: Setup,
    child: Option<Child>,
}

impl Gateway {
    pub fn smtp(&self) -> SocketAddr {
        self.setup.smtp()
    }
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from((self.setup.ip, self.setup.client_port))
    }
    pub fn console_addr(&self) -> SocketAddr {
        SocketAddr::from((self.setup.ip, self.setup.console_port))
    }
    pub fn pool(&self) -> &PgPool {
        &self.setup.pool
    }
    pub fn data_dir(&self) -> PathBuf {
        self.setup.data_dir.path().to_path_buf()
    }

    /// A queued message's body as the gateway keeps it: its spool file, or its row (a small
    /// body); None once the message is gone.
    pub async fn stored_body(&self, id: uuid::Uuid) -> Option<Vec<u8>> {
        let spool = hubgate::transport::queue::Spool::open(&self.data_dir()).unwrap();
        let spool = spool.with_database(self.pool().clone());
        spool.body(id).await.ok().map(|b| b.to_vec())
    }

    /// One series of the gateway's /metrics (`name{labels}`), as a scraper on loopback reads it
    /// from the console's listener; None when the series is absent.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let c = https::Client::new(self.console_addr(), &self.data_dir(), &self.setup.fqdn);
        let r = c.get("/metrics", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Starts the binary and waits for its ready line.
    pub async fn spawn(&mut self) {
        let s = &self.setup;
        let mut child = serve_command(s, s.data_dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn hubgate");
        wait_ready(&mut child).await;
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Peak resident memory of the gateway process so far, in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid().unwrap())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// SIGKILL: no shutdown code runs, as in a power cut of the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("hubgate did not stop within 30 s of SIGTERM");
        }
    }

    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    pub async fn message_count(&self) -> i64 {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM message")
            .fetch_one(self.pool())
            .await
            .unwrap();
        n
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A raw SMTP client for byte-exact conversations.
pub struct Raw {
    pub reader: tokio::io::BufReader<tokio::io::ReadHalf<tokio::net::TcpStream>>,
    pub writer: tokio::io::WriteHalf<tokio::net::TcpStream>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw::connect_from(addr, None).await
    }

    /// Connects from a chosen local address (127.0.0.x) to exercise connector selection.
    pub async fn connect_from(addr: SocketAddr, local: Option<&str>) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(l) = local {
            socket.bind(format!("{l}:0").parse().unwrap()).unwrap();
        }
        let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
            .await
            .expect("connect timeout")
            .expect("connect");
        let (r, w) = tokio::io::split(stream);
        Raw {
            reader: tokio::io::BufReader::new(r),
            writer: w,
        }
    }

    /// Reads one whole (possibly multi-line) reply.
    pub async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
                .await
                .expect("reply timeout")
                .expect("read");
            if n == 0 {
                return if all.is_empty() {
                    "<closed>".into()
                } else {
                    all
                };
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// Sends one command line and returns the reply.
    pub async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Is the connection closed by the server (EOF) within a few seconds?
    pub async fn closed(&mut self) -> bool {
        let mut line = String::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Runs swaks with the given arguments; returns (success, combined output).
pub fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(args)
        .args(["--timeout", "30"])
        .output()
        .expect("swaks is installed (apt-get install swaks)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs a Python 3 script (smtplib) with arguments; returns (success, combined output).
pub fn python(script: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Waits until a change made in the database is visible to the running gateway, by polling a
/// condition (bounded: 30 s, and at most 300 tries, generous for a loaded machine).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    for _ in 0..300 {
        if f().await {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A private CA (PEM) and, for each name, a server certificate and key it signed (PEM).
pub fn private_ca(names: &[&str]) -> (String, Vec<(String, String)>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Fabrikam Private CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaves = names
        .iter()
        .map(|n| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![n.to_string()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, *n);
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        })
        .collect();
    (ca_cert.pem(), leaves)
}

/// Every line of one of the gateway's logs (`kind`, below logs/) so far, oldest file first.
pub fn log_text(gw: &Gateway, kind: &str) -> String {
    let dir = gw.data_dir().join("logs").join(kind);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return String::new();
    };
    let mut names: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    names
        .iter()
        .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
        .collect()
}

/// Every line of the receive protocol log so far, oldest file first.
pub fn receive_log(gw: &Gateway) -> String {
    log_text(gw, "ProtocolLog/SmtpReceive")
}

/// Every line of the message tracking log so far, oldest file first.
pub fn tracking_log(gw: &Gateway) -> String {
    log_text(gw, "MessageTracking")
}

/// The value Format-List shows for one property.
pub fn shown(out: &str, property: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(property))
        .and_then(|rest| rest.trim_start().strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {property} in {out:?}"))
        .trim()
        .to_string()
}
