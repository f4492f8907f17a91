//! The container, without a container engine: docker/Dockerfile and docker/compose.yaml read
//! for the settings the image must have, and docker/entrypoint.sh run natively against the
//! built binary (HUBGATE_CONTAINER_TEST_BIN, e.g. the release one, else the debug one) and a
//! test database it first has to wait for.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

fn repo_file(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The Dockerfile's instructions (continuations joined, comments dropped): (INSTRUCTION, rest).
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && pending.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(t);
                let full = std::mem::take(&mut pending);
                let (i, rest) = full.split_once(' ').unwrap_or((&full, ""));
                out.push((i.to_ascii_uppercase(), rest.trim().to_string()));
            }
        }
    }
    out
}

#[test]
fn the_dockerfile_builds_locked_and_runs_slim_unprivileged_and_checked() {
    let all = instructions(&repo_file("docker/Dockerfile"));
    let froms: Vec<usize> = (0..all.len()).filter(|&i| all[i].0 == "FROM").collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let (build, runtime) = all.split_at(*froms.last().unwrap());
    assert!(
        build
            .iter()
            .any(|(i, r)| i == "RUN" && r.contains("cargo build --release --locked")),
        "a locked release build"
    );
    let base = &runtime[0].1;
    assert!(base.contains("slim"), "slim runtime: {base}");
    let user = runtime
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, r)| r.clone())
        .expect("a USER in the runtime stage");
    assert!(
        !["root", "0", "0:0"].contains(&user.as_str()),
        "non-root: {user}"
    );
    let env: Vec<&str> = runtime
        .iter()
        .filter(|(i, _)| i == "ENV")
        .flat_map(|(_, r)| r.split_whitespace())
        .collect();
    let value = |k: &str| {
        env.iter()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("ENV {k}"))
            .to_string()
    };
    let data_dir = value("HUBGATE_DATA_DIR");
    assert!(
        runtime.iter().any(|(i, r)| i == "VOLUME"
            && r.split_whitespace()
                .any(|v| v.trim_matches(['[', ']', '"', ',']) == data_dir)),
        "the data directory {data_dir} is a volume"
    );
    // 25 and 587 themselves, bound by the unprivileged user.
    let bindings = value("HUBGATE_DEFAULT_BINDINGS");
    assert!(
        bindings.contains("0.0.0.0:25") && bindings.contains("Client=0.0.0.0:587"),
        "{bindings}"
    );
    let console = value("HUBGATE_CONSOLE_BIND");
    let console_port = console.rsplit(':').next().unwrap();
    let health = runtime
        .iter()
        .find(|(i, _)| i == "HEALTHCHECK")
        .map(|(_, r)| r.clone())
        .expect("a HEALTHCHECK");
    assert!(
        health.contains(&format!("https://127.0.0.1:{console_port}/readyz")),
        "the health check asks the console's /readyz: {health}"
    );
    let expose: Vec<&str> = runtime
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .flat_map(|(_, r)| r.split_whitespace())
        .collect();
    for p in ["25", "587", console_port] {
        assert!(expose.contains(&p), "EXPOSE {p}: {expose:?}");
    }
    assert!(
        runtime
            .iter()
            .any(|(i, r)| i == "COPY" && r.starts_with("docker/entrypoint.sh ")),
        "the entrypoint script is in the image"
    );
    let entry = runtime
        .iter()
        .find(|(i, _)| i == "ENTRYPOINT")
        .map(|(_, r)| r.clone())
        .expect("an ENTRYPOINT");
    assert!(entry.contains("hubgate-entrypoint"), "{entry}");
    // No capability is given: the port range is the engine's (see compose.yaml's sysctls).
    assert!(
        !runtime.iter().any(|(_, r)| r.contains("setcap")),
        "documented choice: unprivileged ports, no file capability"
    );
}

#[test]
fn the_build_context_leaves_out_build_output() {
    let ignored: Vec<String> = repo_file(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for p in ["target", ".git"] {
        assert!(ignored.iter().any(|i| i == p), "{p}: {ignored:?}");
    }
    // What the Dockerfile copies must not be ignored.
    for (i, r) in instructions(&repo_file("docker/Dockerfile")) {
        if i == "COPY" && !r.starts_with("--from") {
            let src = r.split_whitespace().next().unwrap().trim_end_matches('/');
            assert!(
                !ignored.iter().any(|x| x == src),
                "{src} is copied but ignored"
            );
        }
    }
}

/// compose.yaml as (path, value) pairs: `services.hubgate.restart` → `unless-stopped`; a list
/// item's path ends with `[]`. Enough of YAML for a file this project writes.
fn yaml_paths(text: &str) -> Vec<(String, String)> {
    let mut stack: Vec<(usize, String)> = vec![];
    let mut out = vec![];
    for line in text.lines() {
        let body = line.split(" #").next().unwrap_or("");
        if body.trim().is_empty() || body.trim_start().starts_with('#') {
            continue;
        }
        let indent = body.len() - body.trim_start().len();
        let t = body.trim();
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let path = |extra: &str| {
            let mut p: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
            p.push(extra);
            p.join(".")
        };
        if let Some(item) = t.strip_prefix("- ") {
            out.push((path("[]"), item.trim_matches('"').to_string()));
        } else if let Some((k, v)) = t.split_once(':') {
            let v = v.trim().trim_matches('"').to_string();
            out.push((path(k.trim()), v));
            stack.push((indent, k.trim().to_string()));
        }
    }
    out
}

#[test]
fn compose_runs_hubgate_beside_the_official_postgres_with_named_volumes() {
    let y = yaml_paths(&repo_file("docker/compose.yaml"));
    let get = |p: &str| {
        y.iter()
            .find(|(k, _)| k == p)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {p} in compose.yaml"))
    };
    let items = |p: &str| -> Vec<&str> {
        y.iter()
            .filter(|(k, _)| k == &format!("{p}.[]"))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert!(
        get("services.postgres.image").starts_with("postgres:"),
        "the official image"
    );
    assert_eq!(
        get("services.hubgate.build.dockerfile"),
        "docker/Dockerfile"
    );
    for s in ["postgres", "hubgate"] {
        assert!(
            ["unless-stopped", "always"].contains(&get(&format!("services.{s}.restart"))),
            "{s} restarts"
        );
    }
    assert_eq!(
        get("services.hubgate.depends_on.postgres.condition"),
        "service_healthy"
    );
    assert!(get("services.hubgate.environment.DATABASE_URL").contains("@postgres:"));
    for k in [
        "HUBGATE_SERVER_NAME",
        "HUBGATE_ACME_ENABLED",
        "HUBGATE_ACME_CONTACT",
        "HUBGATE_ACME_DOMAINS",
    ] {
        get(&format!("services.hubgate.environment.{k}"));
    }
    assert_eq!(
        get("services.hubgate.sysctls.net.ipv4.ip_unprivileged_port_start"),
        "0"
    );
    let ports = items("services.hubgate.ports");
    for p in ["25:25", "587:587", "443:8443"] {
        assert!(ports.contains(&p), "{p}: {ports:?}");
    }
    // Named volumes, declared at the top level, for the database and the data directory.
    let declared: Vec<&str> = y
        .iter()
        .filter(|(k, _)| k.starts_with("volumes.") && k.matches('.').count() == 1)
        .map(|(k, _)| &k["volumes.".len()..])
        .collect();
    for (service, target) in [
        ("postgres", "/var/lib/postgresql/data"),
        ("hubgate", "/var/lib/hubgate"),
    ] {
        let mount = items(&format!("services.{service}.volumes"))
            .into_iter()
            .find(|m| m.ends_with(&format!(":{target}")))
            .unwrap_or_else(|| panic!("{service} keeps {target}"));
        let name = mount.split(':').next().unwrap();
        assert!(
            declared.contains(&name),
            "{name} is a named volume: {declared:?}"
        );
    }
}

fn binary() -> PathBuf {
    std::env::var_os("HUBGATE_CONTAINER_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_hubgate")))
}

/// The entrypoint as the image runs it, on this machine.
fn entrypoint(db_url: &str, data_dir: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/entrypoint.sh"))
        .env("HUBGATE_BIN", binary())
        .env("DATABASE_URL", db_url)
        .env("HUBGATE_DATA_DIR", data_dir)
        .env("HUBGATE_SERVER_NAME", FQDN)
        .env("HUBGATE_LOG", "warn")
        .env_remove("HUBGATE_ADMIN_PASSWORD")
        .env_remove("HUBGATE_ORGANIZATION_KEY")
        .env_remove("HUBGATE_ACME_ENABLED")
        .env_remove("HUBGATE_ACME_DIRECTORY_URL");
    cmd
}

/// A stand-in address for the database that forwards to it once opened: until then, nothing
/// answers there, as when the PostgreSQL container is still starting.
struct LateDatabase {
    url: String,
    listen: Listen,
    target: Listen,
}

#[derive(Clone)]
enum Listen {
    Unix(PathBuf),
    Tcp(String),
}

impl LateDatabase {
    /// `url` is the harness's: a Unix socket directory in `host=`, or a TCP host:port.
    fn new(url: &str, dir: &Path) -> LateDatabase {
        let (head, query) = url.split_once('?').unwrap_or((url, ""));
        let authority = head
            .split_once('@')
            .map(|(_, a)| a)
            .unwrap_or(head)
            .split('/')
            .next()
            .unwrap();
        let port = authority.rsplit(':').next().unwrap();
        let socket_dir = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("host="))
            .map(|v| v.replace("%2F", "/").replace("%2f", "/"));
        match socket_dir {
            Some(real) => {
                let socket = format!(".s.PGSQL.{port}");
                let mine = dir.display().to_string();
                let query: Vec<String> = query
                    .split('&')
                    .map(|kv| {
                        if kv.starts_with("host=") {
                            format!("host={mine}")
                        } else {
                            kv.to_string()
                        }
                    })
                    .collect();
                LateDatabase {
                    url: format!("{head}?{}", query.join("&")),
                    listen: Listen::Unix(dir.join(&socket)),
                    target: Listen::Unix(Path::new(&real).join(&socket)),
                }
            }
            None => {
                let mine = format!("127.0.0.1:{}", peer_port());
                LateDatabase {
                    url: url.replacen(authority, &mine, 1),
                    listen: Listen::Tcp(mine),
                    target: Listen::Tcp(authority.to_string()),
                }
            }
        }
    }

    /// Starts forwarding; each connection is piped to the real database.
    async fn open(&self) {
        async fn pipe<S>(mut a: S, target: Listen)
        where
            S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        {
            match target {
                Listen::Unix(p) => {
                    if let Ok(mut b) = tokio::net::UnixStream::connect(p).await {
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                }
                Listen::Tcp(addr) => {
                    if let Ok(mut b) = tokio::net::TcpStream::connect(addr).await {
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                }
            }
        }
        let target = self.target.clone();
        match &self.listen {
            Listen::Unix(p) => {
                let l = tokio::net::UnixListener::bind(p).unwrap();
                tokio::spawn(async move {
                    while let Ok((s, _)) = l.accept().await {
                        tokio::spawn(pipe(s, target.clone()));
                    }
                });
            }
            Listen::Tcp(a) => {
                let l = tokio::net::TcpListener::bind(a).await.unwrap();
                tokio::spawn(async move {
                    while let Ok((s, _)) = l.accept().await {
                        tokio::spawn(pipe(s, target.clone()));
                    }
                });
            }
        }
    }
}

/// The lines a child prints, as they come.
fn lines<R: std::io::Read + Send + 'static>(r: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for a line starting with `prefix`; every line seen is kept in `seen`.
fn expect_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, prefix: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                let hit = l.starts_with(prefix);
                seen.push(l);
                if hit {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    panic!(
        "no line starting {prefix:?} within {secs} s; printed:\n{}",
        seen.join("\n")
    );
}

/// The entrypoint waits for a database that is not there yet, then starts the gateway (a first
/// start, with its output and the optional ACME settings), which serves until SIGTERM ends it.
// Two workers: the forwarder runs while this test blocks reading the child's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entrypoint_waits_for_the_database_then_serves_until_sigterm() {
    let url = fresh_database().await;
    let sockets = tempfile::tempdir().unwrap();
    let late = LateDatabase::new(&url, sockets.path());
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let ip = gateway_ip();
    let (smtp, client, console) = (gateway_port(), gateway_port(), gateway_port());
    let mut child = entrypoint(&late.url, &data_dir)
        .env("HUBGATE_DB_WAIT", "120")
        .env(
            "HUBGATE_DEFAULT_BINDINGS",
            format!("{ip}:{smtp},Client={ip}:{client}"),
        )
        .env("HUBGATE_CONSOLE_BIND", format!("{ip}:{console}"))
        .env("HUBGATE_ACME_ENABLED", "false")
        .env(
            "HUBGATE_ACME_CONTACT",
            "postmaster@contoso.test, o'brien@contoso.test",
        )
        .env("HUBGATE_ACME_DOMAINS", "mail.contoso.test")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run docker/entrypoint.sh");
    let out = lines(child.stdout.take().unwrap());
    let mut seen = vec![];
    expect_line(&out, &mut seen, "entrypoint: waiting for the database", 30);
    // Nothing answers yet: it keeps waiting rather than starting.
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "{seen:?}");
    seen.extend(out.try_iter());
    assert!(
        !seen.iter().any(|l| l.contains("the database is up")),
        "{seen:?}"
    );

    late.open().await;
    expect_line(&out, &mut seen, "entrypoint: the database is up", 60);
    expect_line(&out, &mut seen, "entrypoint: first start", 10);
    expect_line(&out, &mut seen, "entrypoint: starting hubgate serve", 60);
    expect_line(&out, &mut seen, "Administrator password (shown once): ", 60);
    expect_line(&out, &mut seen, "hubgate ready", 60);
    let (acme, _) = hubgate::ops::certificate::acme_config(&data_dir).unwrap();
    assert_eq!(
        acme.contact,
        vec!["postmaster@contoso.test", "o'brien@contoso.test"]
    );
    assert_eq!(acme.domains, vec!["mail.contoso.test"]);
    assert!(!acme.enabled);

    let https =
        common::https::Client::new(std::net::SocketAddr::from((ip, console)), &data_dir, FQDN);
    let r = https.get("/healthz", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // exec: the shell became hubgate, so SIGTERM reaches the gateway itself. Its handler is
    // installed just after the ready line (app.rs): wait until the kernel shows it caught.
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !catches_sigterm(pid) {
        assert!(Instant::now() < deadline, "hubgate never handled SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// Whether process `pid` has a handler for SIGTERM (SigCgt in /proc/<pid>/status).
fn catches_sigterm(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigCgt:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

/// A database that never answers: the wait ends at its bound, with an error that says so.
#[tokio::test]
async fn the_entrypoint_gives_up_on_a_database_that_never_answers() {
    let url = fresh_database().await;
    let sockets = tempfile::tempdir().unwrap();
    let never = LateDatabase::new(&url, sockets.path());
    let data = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (status, out, err) = run_to_exit(
        entrypoint(&never.url, &data.path().join("data")).env("HUBGATE_DB_WAIT", "2"),
        "the entrypoint did not give up",
    );
    assert!(!status.success());
    assert!(
        out.contains("waiting for the database (at most 2 s)"),
        "{out}"
    );
    assert!(
        err.contains("the database did not answer within 2 s"),
        "{err}"
    );
    assert!(!out.contains("starting hubgate serve"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
