//! With DATABASE_URL unset, `hubgate serve` runs its own PostgreSQL under the data directory.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hubgate::db::managed::{LOCATION_FILE, ManagedCluster};

#[tokio::test]
async fn serve_without_database_url_runs_and_stops_a_private_cluster() {
    // A folder nobody else may enter, like a home folder: run as root, the cluster's server user
    // cannot pass through it, so the cluster has to live elsewhere.
    let home = scratch("private");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let base = home.join("clone/.hubgate");
    let ip = gateway_ip();
    let port = gateway_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("HUBGATE_DATA_DIR", &base)
        .env("HUBGATE_SERVER_NAME", FQDN)
        .env(
            "HUBGATE_DEFAULT_BINDINGS",
            format!("{ip}:{port},Client={ip}:{}", gateway_port()),
        )
        .env("HUBGATE_CONSOLE_BIND", format!("{ip}:{}", gateway_port()))
        .env("HUBGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut password_shown = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(Instant::now() < deadline, "hubgate did not become ready");
        let line = lines.next().expect("hubgate exited").unwrap();
        password_shown |= line.starts_with("Administrator password (shown once): ");
        if line.starts_with("hubgate ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(
        password_shown,
        "a generated Administrator password is printed on first start"
    );
    let (ok, out) = swaks(&[
        "--server",
        &ip.to_string(),
        "--port",
        &port.to_string(),
        "--from",
        "a@example.org",
        "--to",
        "administrator@contoso.test",
    ]);
    assert!(ok, "{out}");
    // The shell shares the gateway's private cluster and must leave it running for the gateway
    // (a regression: it used to stop the cluster on exit).
    let shell = Command::new(env!("CARGO_BIN_EXE_hubgate"))
        .args([
            "shell",
            "-c",
            "New-AcceptedDomain -Name Fabrikam -DomainName fabrikam.test -DomainType ExternalRelay",
        ])
        .env_remove("DATABASE_URL")
        .env("HUBGATE_DATA_DIR", &base)
        .env("HUBGATE_SERVER_NAME", FQDN)
        .env("HUBGATE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        shell.status.success(),
        "{}",
        String::from_utf8_lossy(&shell.stderr)
    );
    let mut relayed = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let mut c = Raw::connect(SocketAddr::from((ip, port))).await;
        c.reply().await;
        c.cmd("EHLO client.example").await;
        c.cmd("MAIL FROM:<a@example.org>").await;
        if c.cmd("RCPT TO:<someone@fabrikam.test>").await == "250 2.1.5 Recipient OK\r\n" {
            relayed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        relayed,
        "the running gateway did not pick up the shell's accepted domain"
    );
    let server_dir = server_dir(&base.join("pgsql"));
    let pid_file = server_dir.join("data/postmaster.pid");
    assert!(
        pid_file.exists(),
        "the private cluster runs under the data directory"
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !pid_file.exists(),
        "the private cluster is stopped with hubgate"
    );
    remove_cluster(&base.join("pgsql"));
    let _ = std::fs::remove_dir_all(&home);
}

/// Where the cluster for hubgate's directory `dir` keeps its data.
fn server_dir(dir: &Path) -> PathBuf {
    match std::fs::read(dir.join(LOCATION_FILE)) {
        Ok(mut bytes) => {
            while bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            PathBuf::from(std::ffi::OsString::from_vec(bytes))
        }
        Err(_) => dir.to_path_buf(),
    }
}

fn remove_cluster(dir: &Path) {
    let server = server_dir(dir);
    if server != dir {
        let _ = std::fs::remove_dir_all(server);
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn scratch(tag: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn select_one(url: &str) -> Result<i32, sqlx::Error> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(20))
        .connect(url)
        .await?;
    let (one,): (i32,) = sqlx::query_as("SELECT 1").fetch_one(&pool).await?;
    pool.close().await;
    Ok(one)
}

/// A newcomer as root: a checkout in a folder only root may enter (a home folder is 0700). The
/// cluster still starts, and hubgate can use it.
#[tokio::test]
async fn a_cluster_for_a_data_dir_inside_a_folder_only_root_may_enter() {
    if !is_root() {
        eprintln!(
            "skipped: this is about running as root (an ordinary user runs the cluster itself)"
        );
        return;
    }
    let home = scratch("root-home");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = home.join("clone/.hubgate/pgsql");
    let cluster = ManagedCluster::start(&dir)
        .await
        .expect("start the cluster");
    assert_eq!(select_one(&cluster.url("postgres")).await.unwrap(), 1);
    assert!(
        !cluster.server_dir().starts_with(&home),
        "the server's user cannot reach {}",
        cluster.server_dir().display()
    );
    assert_eq!(
        server_dir(&dir),
        cluster.server_dir(),
        "the place is recorded"
    );
    // A second start (hubgate restarted, or the shell) finds the same running cluster.
    let again = ManagedCluster::start(&dir).await.expect("start again");
    assert_eq!(select_one(&again.url("postgres")).await.unwrap(), 1);
    again.stop().await.unwrap();
    assert!(!cluster.server_dir().join("data/postmaster.pid").exists());
    remove_cluster(&dir);
    let _ = std::fs::remove_dir_all(&home);
}

/// Only hubgate may connect: not another local user, not even one in hubgate's group (the
/// socket directory's group used to be the only guard), and not hubgate's own OS user without
/// the password.
#[tokio::test]
async fn another_local_user_cannot_connect_to_the_private_cluster() {
    if !is_root() {
        eprintln!("skipped: creating a second local user needs root");
        return;
    }
    let user = "hg-intruder";
    let made = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ])
        .output()
        .unwrap();
    // 9: the user exists already (an earlier run).
    assert!(
        made.status.success() || made.status.code() == Some(9),
        "useradd: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    // A data directory as hubgate makes it (0700) in a place the server's user can reach (the
    // system's temporary folder, since the checkout may be under /root): the cluster stays
    // inside, and the data directory is opened for search only.
    let base = std::env::temp_dir().join(format!("hubgate-intruder-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = base.join("pgsql");
    let cluster = ManagedCluster::start(&dir)
        .await
        .expect("start the cluster");
    assert_eq!(cluster.server_dir(), dir);
    let mode = std::fs::metadata(&base).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o711);
    assert_eq!(select_one(&cluster.url("postgres")).await.unwrap(), 1);

    let psql = |prefix: &[String]| {
        let mut cmd = Command::new(&prefix[0]);
        cmd.args(&prefix[1..])
            .arg("psql")
            .arg("-h")
            .arg(cluster.socket_dir())
            .args(["-U", "hubgate", "-d", "postgres", "-w", "-X", "-A", "-t"])
            .args(["-c", "SELECT 'connected'"])
            .env_remove("PGPASSWORD")
            .env("PGCONNECT_TIMEOUT", "10")
            .current_dir("/")
            .output()
            .unwrap()
    };
    // SAFETY: getegid has no preconditions.
    let our_gid = unsafe { libc::getegid() };
    let gid = our_gid.to_string();
    let as_intruder = |groups: &[&str]| -> Vec<String> {
        let mut argv = vec!["setpriv", "--reuid", user, "--regid", user];
        argv.extend_from_slice(groups);
        argv.push("--");
        argv.into_iter().map(String::from).collect()
    };
    let attempts = [
        ("another local user", as_intruder(&["--clear-groups"])),
        (
            "another local user in hubgate's group",
            as_intruder(&["--groups", &gid]),
        ),
        (
            "hubgate's own user without the password",
            vec!["env".to_string()],
        ),
    ];
    for (who, prefix) in attempts {
        let out = psql(&prefix);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() && !stdout.contains("connected"),
            "{who} connected: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cluster.stop().await.unwrap();
    remove_cluster(&dir);
    let _ = std::fs::remove_dir_all(&base);
}

/// Runs `.ci/stop-test-cluster` for a build whose target directory is `target`.
fn stop_test_cluster(target: &Path) -> std::process::Output {
    Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.ci/stop-test-cluster"
    ))
    .env("CARGO_TARGET_DIR", target)
    .output()
    .unwrap()
}

/// `.ci/run` ends by stopping the cluster the tests share (`.ci/stop-test-cluster`), wherever it
/// lives, and the next run starts it again with its databases.
#[tokio::test]
async fn the_ci_script_stops_the_shared_test_cluster_and_the_next_run_reuses_it() {
    // As root a 0700 folder above also sends the cluster's data elsewhere: the script must follow.
    let home = scratch("ci-stop");
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let target = home.join("target");
    let dir = target.join("tmp/test-pgsql");
    let cluster = ManagedCluster::start(&dir)
        .await
        .expect("start the cluster");
    cluster.ensure_database("kept").await.unwrap();
    let pid_file = cluster.server_dir().join("data/postmaster.pid");
    assert!(pid_file.exists());

    let out = stop_test_cluster(&target);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!pid_file.exists(), "the test cluster is still running");
    let again = stop_test_cluster(&target);
    assert!(
        again.status.success(),
        "stopping a stopped cluster succeeds"
    );

    let next_run = ManagedCluster::start(&dir).await.expect("start it again");
    assert_eq!(select_one(&next_run.url("kept")).await.unwrap(), 1);
    next_run.stop().await.unwrap();
    remove_cluster(&dir);
    let _ = std::fs::remove_dir_all(&home);
}
