//! A private PostgreSQL cluster kept under the data directory.
//!
//! Without `DATABASE_URL` a gateway should still come up with nothing more than the distribution's
//! `postgresql` package installed, so hubgate runs its own cluster with the system's server
//! binaries. It listens on a Unix socket only: nothing outside this machine can reach it, and the
//! socket directory's permissions decide who on this machine can.
//!
//! Layout of the cluster directory (e.g. `$HUBGATE_DATA_DIR/pgsql`):
//!
//! ```text
//! data/             the cluster (initdb's directory)
//! socket/           unix_socket_directories
//! postgresql.log    server output (pg_ctl -l)
//! .start.lock       serialises concurrent starts
//! ```
//!
//! The cluster outlives a killed hubgate on purpose: the next start finds the postmaster still
//! running and reuses it instead of failing on its lock file.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

/// The database superuser initdb creates; connections authenticate as it with `trust`.
const SUPERUSER: &str = "hubgate";
const PORT: u16 = 5432;
/// Upper bound for pg_ctl's waits and for waiting on a reused server, in seconds.
const WAIT_SECS: u64 = 60;
/// Used only when the distribution's `postgres` account does not exist.
const FALLBACK_SERVER_USER: &str = "hubgate-pg";
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
/// The server log is appended to on every start; past this size the old one is set aside.
const MAX_LOG_SIZE: u64 = 10 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    #[error(
        "PostgreSQL server programs (initdb, pg_ctl) were not found: install the `postgresql` package (Debian/Ubuntu: apt-get install postgresql)"
    )]
    NotInstalled,
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not run {}: {source}", .program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "PostgreSQL refuses to run as root, and no unprivileged user to run it as could be found or created: {0}"
    )]
    NoServerUser(String),
    #[error(
        "the PostgreSQL server user `{user}` cannot enter {} (PostgreSQL refuses to run as root, so it runs as `{user}`, which needs search permission on every parent of the cluster directory): run `chmod o+x {}` or put the data directory elsewhere",
        .path.display(),
        .path.display()
    )]
    NotTraversable { path: PathBuf, user: String },
    #[error(
        "the socket path {} is longer than the {MAX_SOCKET_PATH} bytes a Unix socket allows: use a shorter data directory path",
        .0.display()
    )]
    SocketPathTooLong(PathBuf),
    #[error(
        "{} exists but holds no PostgreSQL cluster (no PG_VERSION): move it away so that a new cluster can be created",
        .0.display()
    )]
    NotACluster(PathBuf),
    #[error(
        "PostgreSQL at {} did not accept connections within {WAIT_SECS} s; its log is {}",
        .socket.display(),
        .log.display()
    )]
    NotReady { socket: PathBuf, log: PathBuf },
}

/// The unprivileged account the server runs as when hubgate itself runs as root.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

#[derive(Debug)]
pub struct ManagedCluster {
    dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    bindir: PathBuf,
    /// `None` when hubgate is not root: the server then runs as hubgate's own user.
    server_user: Option<ServerUser>,
}

impl ManagedCluster {
    /// Creates the cluster in `dir` if there is none, then starts it, or reuses a postmaster
    /// left running by a previous process that was killed.
    pub async fn start(dir: &Path) -> Result<ManagedCluster, ManagedError> {
        // The socket path ends up in a URL that sqlx only treats as a socket if it is absolute.
        let dir = std::path::absolute(dir).map_err(|e| io_err(dir, e))?;
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let _lock = lock_exclusive(dir.join(".start.lock")).await?;

        let data_dir = dir.join("data");
        let version = read_pg_version(&data_dir);
        let bindir = find_bindir(
            Path::new("/usr/lib/postgresql"),
            std::env::var_os("PATH").as_deref(),
            version.as_deref(),
        )
        .ok_or(ManagedError::NotInstalled)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let server_user = if root {
            Some(choose_server_user(&data_dir).await?)
        } else {
            None
        };
        let cluster = ManagedCluster {
            socket_dir: dir.join("socket"),
            log_file: dir.join("postgresql.log"),
            data_dir,
            dir,
            bindir,
            server_user,
        };
        cluster.prepare_directories()?;

        if version.is_none() {
            cluster.init().await?;
        }
        cluster.write_settings()?;

        if cluster.is_running().await? {
            tracing::info!(data = %cluster.data_dir.display(), "reusing the PostgreSQL server that is still running");
            cluster.wait_ready().await?;
            return Ok(cluster);
        }
        cluster.clear_stale_lock_files()?;
        cluster.start_server().await?;
        Ok(cluster)
    }

    /// A URL for sqlx 0.8: its `host` query parameter, when it starts with `/`, names the socket
    /// directory (the `localhost` before it is then ignored).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost:{PORT}/{}?host={}",
            percent_encode(db),
            percent_encode(&self.socket_dir.to_string_lossy())
        )
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Creates database `db` unless it exists.
    pub async fn ensure_database(&self, db: &str) -> Result<(), ManagedError> {
        // psql's :'name' quotes the literal and format's %I the identifier, so any name is safe.
        let script = "SELECT format('CREATE DATABASE %I', :'name') \
                      WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'name')\n\
                      \\gexec\n";
        match self.psql(db, script).await {
            Ok(_) => Ok(()),
            // Another process may have created it between the check and CREATE DATABASE.
            Err(e) if self.database_exists(db).await? => {
                tracing::debug!("database {db} appeared concurrently: {e}");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Stops the server (fast shutdown: open sessions are rolled back). Stopping a cluster that
    /// is not running succeeds.
    pub async fn stop(&self) -> Result<(), ManagedError> {
        if !self.is_running().await? {
            return Ok(());
        }
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("stop").arg("-D").arg(&self.data_dir).args([
            "-m",
            "fast",
            "-w",
            "-t",
            &WAIT_SECS.to_string(),
            "-s",
        ]);
        let output = run(cmd, None).await?;
        check(&output, "pg_ctl stop")
    }

    fn prepare_directories(&self) -> Result<(), ManagedError> {
        fs::create_dir_all(&self.socket_dir).map_err(|e| io_err(&self.socket_dir, e))?;
        let socket = self.socket_dir.join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ManagedError::SocketPathTooLong(socket));
        }
        // Search-only for others: the server user must reach the cluster, nobody needs to list it.
        set_mode(&self.dir, 0o711)?;
        // Connections authenticate by `trust`, so this directory is what keeps other local users
        // off the database: only the server user and hubgate's own group may enter it.
        set_mode(&self.socket_dir, 0o710)?;
        let Some(user) = &self.server_user else {
            return Ok(());
        };
        // SAFETY: getegid has no preconditions and cannot fail.
        let our_gid = unsafe { libc::getegid() };
        chown(&self.dir, user.uid, user.gid)?;
        chown(&self.socket_dir, user.uid, our_gid)?;
        if self.log_file.exists() {
            chown(&self.log_file, user.uid, user.gid)?;
        }
        for parent in self.dir.ancestors().skip(1) {
            let meta = fs::metadata(parent).map_err(|e| io_err(parent, e))?;
            if !can_search(&meta, user) {
                return Err(ManagedError::NotTraversable {
                    path: parent.to_path_buf(),
                    user: user.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// initdb writes into a scratch directory that is renamed into place, so a cluster directory
    /// only ever exists complete: an interrupted initdb leaves nothing to mistake for a cluster.
    async fn init(&self) -> Result<(), ManagedError> {
        match fs::read_dir(&self.data_dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(ManagedError::NotACluster(self.data_dir.clone()));
                }
                fs::remove_dir(&self.data_dir).map_err(|e| io_err(&self.data_dir, e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&self.data_dir, e)),
        }
        let scratch = self.dir.join("data.initdb");
        match fs::remove_dir_all(&scratch) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&scratch, e)),
            _ => {}
        }
        tracing::info!(data = %self.data_dir.display(), "creating a PostgreSQL cluster");
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D").arg(&scratch).args([
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            "--no-locale",
        ]);
        let output = run(cmd, None).await?;
        check(&output, "initdb")?;
        fs::rename(&scratch, &self.data_dir).map_err(|e| io_err(&self.data_dir, e))?;
        sync_dir(&self.dir)
    }

    /// Settings live in a file of their own, included from postgresql.conf, rather than in
    /// pg_ctl's `-o`: that string passes through a shell, which a data directory path containing
    /// a space or quote would break. The file is rewritten on every start so upgrades of hubgate
    /// can change it.
    fn write_settings(&self) -> Result<(), ManagedError> {
        let settings = format!(
            "# Written by hubgate on every start; edits are lost.\n\
             listen_addresses = ''\n\
             unix_socket_directories = {}\n\
             unix_socket_permissions = 0777\n\
             port = {PORT}\n\
             max_connections = 200\n\
             fsync = on\n",
            conf_quote(&self.socket_dir.to_string_lossy())
        );
        let path = self.data_dir.join("hubgate.conf");
        fs::write(&path, settings).map_err(|e| io_err(&path, e))?;
        if let Some(user) = &self.server_user {
            chown(&path, user.uid, user.gid)?;
        }

        let conf = self.data_dir.join("postgresql.conf");
        let text = fs::read_to_string(&conf).map_err(|e| io_err(&conf, e))?;
        let include = "include 'hubgate.conf'";
        if !text.lines().any(|l| l.trim() == include) {
            // Last in the file, so these settings win over initdb's defaults above them.
            let mut file = OpenOptions::new()
                .append(true)
                .open(&conf)
                .map_err(|e| io_err(&conf, e))?;
            io::Write::write_all(&mut file, format!("\n{include}\n").as_bytes())
                .map_err(|e| io_err(&conf, e))?;
        }
        Ok(())
    }

    async fn is_running(&self) -> Result<bool, ManagedError> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let Some(pid) = read_postmaster_pid(&pid_file) else {
            return Ok(false);
        };
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("status").arg("-D").arg(&self.data_dir);
        let output = run(cmd, None).await?;
        // pg_ctl status: 0 running, 3 not running, 4 no accessible data directory.
        match output.status.code() {
            Some(0) => {}
            Some(3 | 4) => return Ok(false),
            _ => {
                check(&output, "pg_ctl status")?;
            }
        }
        // After a reboot or in a fresh container the recorded pid may belong to an unrelated
        // process; pg_ctl cannot tell, /proc can.
        Ok(process_is_postgres(pid).unwrap_or(true))
    }

    /// A killed server leaves its pid files behind; the server would refuse to start while the
    /// recorded pid is alive even when that pid now belongs to another program.
    fn clear_stale_lock_files(&self) -> Result<(), ManagedError> {
        for path in [
            self.data_dir.join("postmaster.pid"),
            self.socket_dir.join(format!(".s.PGSQL.{PORT}.lock")),
            self.socket_dir.join(format!(".s.PGSQL.{PORT}")),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(file = %path.display(), "removed a stale PostgreSQL lock file")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
        }
        Ok(())
    }

    async fn start_server(&self) -> Result<(), ManagedError> {
        self.set_old_log_aside()?;
        let mut cmd = self.server_command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .args(["-w", "-t", &WAIT_SECS.to_string(), "-s"])
            // Its own process group keeps a Ctrl-C meant for hubgate from killing the database
            // under it; hubgate stops the server itself once it has finished.
            .process_group(0);
        let output = run(cmd, None).await?;
        if output.status.success() {
            return Ok(());
        }
        // pg_ctl only says "examine the log output"; the reason is in the log.
        let mut output_text = describe_output(&output);
        let tail = log_tail(&self.log_file, 4096);
        if !tail.is_empty() {
            let _ = write!(
                output_text,
                "\n--- end of {} ---\n{tail}",
                self.log_file.display()
            );
        }
        Err(ManagedError::CommandFailed {
            command: "pg_ctl start".to_string(),
            status: output.status.to_string(),
            output: output_text,
        })
    }

    fn set_old_log_aside(&self) -> Result<(), ManagedError> {
        let size = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
        if size > MAX_LOG_SIZE {
            let old = self.log_file.with_extension("log.1");
            fs::rename(&self.log_file, &old).map_err(|e| io_err(&old, e))?;
        }
        Ok(())
    }

    /// A reused server may still be starting up or recovering from the crash that killed its
    /// previous owner.
    async fn wait_ready(&self) -> Result<(), ManagedError> {
        let deadline = Instant::now() + Duration::from_secs(WAIT_SECS);
        loop {
            let mut cmd = self.client_command("pg_isready");
            cmd.arg("-h")
                .arg(&self.socket_dir)
                .args(["-p", &PORT.to_string(), "-U", SUPERUSER, "-d", "postgres"])
                .args(["-t", "5", "-q"]);
            let output = run(cmd, None).await?;
            // pg_isready: 0 accepting, 1 rejecting (starting), 2 no response, 3 bad parameters.
            match output.status.code() {
                Some(0) => return Ok(()),
                Some(1 | 2) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Some(1 | 2) => {
                    return Err(ManagedError::NotReady {
                        socket: self.socket_dir.clone(),
                        log: self.log_file.clone(),
                    });
                }
                _ => return check(&output, "pg_isready"),
            }
        }
    }

    async fn database_exists(&self, db: &str) -> Result<bool, ManagedError> {
        let out = self
            .psql(db, "SELECT 1 FROM pg_database WHERE datname = :'name';\n")
            .await?;
        Ok(out.trim() == "1")
    }

    /// Runs `script` in the `postgres` database with psql variable `name` set to `db`; returns
    /// stdout. The script goes through stdin because psql does not interpolate variables in -c.
    async fn psql(&self, db: &str, script: &str) -> Result<String, ManagedError> {
        let mut name_var = OsString::from("name=");
        name_var.push(db);
        let mut cmd = self.client_command("psql");
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &PORT.to_string(), "-U", SUPERUSER, "-d", "postgres"])
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-v"])
            .arg(name_var)
            .args(["-f", "-"]);
        let output = run(cmd, Some(script.as_bytes())).await?;
        check(&output, "psql")?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// A command that must run as the server user (PostgreSQL's server programs refuse root).
    fn server_command(&self, program: &str) -> std::process::Command {
        let mut cmd = self.client_command(program);
        // The server user may not be able to enter hubgate's working directory, and initdb and
        // pg_ctl fail if they cannot resolve their own.
        cmd.current_dir(&self.dir);
        if let Some(user) = &self.server_user {
            cmd.uid(user.uid).gid(user.gid).env("HOME", &user.home);
        }
        cmd
    }

    /// A command run as hubgate's own user with a predictable environment: no PG* variables
    /// from the caller redirect it, and messages are in English for the error text.
    fn client_command(&self, program: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new(self.bindir.join(program));
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("LC_ALL", "C")
            .env("PGCONNECT_TIMEOUT", "10");
        if let Some(home) = std::env::var_os("HOME") {
            cmd.env("HOME", home);
        }
        cmd
    }
}

/// Picks the directory holding initdb and pg_ctl: that of the cluster's own major version if
/// installed (a server of another major version cannot open it), else the newest under `root`
/// (Debian's layout, where `pg_config --bindir` names the client's directory), else `PATH`.
fn find_bindir(root: &Path, path: Option<&OsStr>, version: Option<&str>) -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(version) = version {
        let dir = root.join(version).join("bin");
        if has_server(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let key = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((key, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Some(dir);
    }
    std::env::split_paths(path?).find(|dir| has_server(dir))
}

fn read_pg_version(data_dir: &Path) -> Option<String> {
    let text = fs::read_to_string(data_dir.join("PG_VERSION")).ok()?;
    Some(text.trim().to_string())
}

fn read_postmaster_pid(pid_file: &Path) -> Option<i32> {
    let text = fs::read_to_string(pid_file).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// `None` when /proc cannot tell.
fn process_is_postgres(pid: i32) -> Option<bool> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm"));
    match comm {
        Ok(comm) => Some(comm.trim_end().starts_with("postgres")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(false),
        Err(_) => None,
    }
}

/// The data directory's owner when it has one other than root (a cluster can only be run by
/// its owner), else Debian's `postgres` account, else a system user created for the purpose.
async fn choose_server_user(data_dir: &Path) -> Result<ServerUser, ManagedError> {
    let passwd = read_passwd()?;
    if let Ok(meta) = fs::metadata(data_dir)
        && meta.uid() != 0
    {
        let user = passwd
            .iter()
            .find(|u| u.uid == meta.uid())
            .cloned()
            .unwrap_or_else(|| ServerUser {
                name: meta.uid().to_string(),
                uid: meta.uid(),
                gid: meta.gid(),
                home: PathBuf::from("/"),
            });
        return Ok(user);
    }
    for name in ["postgres", FALLBACK_SERVER_USER] {
        if let Some(user) = passwd.iter().find(|u| u.name == name) {
            return Ok(user.clone());
        }
    }
    let mut cmd = std::process::Command::new("useradd");
    cmd.env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    .args([
        "--system",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
    ])
    .arg(FALLBACK_SERVER_USER);
    let output = run(cmd, None)
        .await
        .map_err(|e| ManagedError::NoServerUser(e.to_string()))?;
    // useradd exits 9 when the name is taken, which a concurrent start may just have done.
    if !output.status.success() && output.status.code() != Some(9) {
        return Err(ManagedError::NoServerUser(format!(
            "useradd {FALLBACK_SERVER_USER}: {}",
            describe_output(&output)
        )));
    }
    tracing::info!("created system user {FALLBACK_SERVER_USER} to run PostgreSQL");
    read_passwd()?
        .into_iter()
        .find(|u| u.name == FALLBACK_SERVER_USER)
        .ok_or_else(|| {
            ManagedError::NoServerUser(format!(
                "{FALLBACK_SERVER_USER} is not in /etc/passwd after useradd"
            ))
        })
}

fn read_passwd() -> Result<Vec<ServerUser>, ManagedError> {
    let path = Path::new("/etc/passwd");
    let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    Ok(parse_passwd(&text))
}

fn parse_passwd(text: &str) -> Vec<ServerUser> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 {
                return None;
            }
            Some(ServerUser {
                name: fields[0].to_string(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                home: PathBuf::from(fields[5]),
            })
        })
        .collect()
}

/// Supplementary groups are not considered: the server user is a system account without any.
fn can_search(meta: &fs::Metadata, user: &ServerUser) -> bool {
    let mode = meta.mode();
    if meta.uid() == user.uid {
        mode & 0o100 != 0
    } else if meta.gid() == user.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// Held for the whole of `start`: two processes starting on one directory (the test harness
/// starts one cluster from many test processes) would otherwise race initdb and pg_ctl.
async fn lock_exclusive(path: PathBuf) -> Result<File, ManagedError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    tokio::task::spawn_blocking(move || {
        // SAFETY: the descriptor belongs to `file`, which is alive for the whole call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            Ok(file)
        } else {
            Err(io_err(&path, io::Error::last_os_error()))
        }
    })
    .await
    .map_err(|e| ManagedError::Io {
        path: PathBuf::from(".start.lock"),
        source: io::Error::other(e),
    })?
}

async fn run(cmd: std::process::Command, stdin: Option<&[u8]>) -> Result<Output, ManagedError> {
    let program = PathBuf::from(cmd.get_program());
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let spawn_err = |source| ManagedError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error means the program exited early; its status and stderr explain why.
        let _ = pipe.write_all(input).await;
        drop(pipe);
    }
    child.wait_with_output().await.map_err(spawn_err)
}

fn check(output: &Output, command: &str) -> Result<(), ManagedError> {
    if output.status.success() {
        return Ok(());
    }
    Err(ManagedError::CommandFailed {
        command: command.to_string(),
        status: output.status.to_string(),
        output: describe_output(output),
    })
}

fn describe_output(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = if stderr.trim().is_empty() {
        stdout.trim()
    } else {
        stderr.trim()
    };
    if text.is_empty() {
        "no output".to_string()
    } else {
        text.to_string()
    }
}

fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if file.seek(SeekFrom::Start(len.saturating_sub(max))).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).trim().to_string()
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ManagedError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, e))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), ManagedError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| io_err(path, e))
}

fn sync_dir(path: &Path) -> Result<(), ManagedError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_err(path, e))
}

/// postgresql.conf string literal.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// sqlx decodes the query as form data, where `+` means a space, so everything but unreserved
/// characters and `/` is encoded, in the path as well as in the query.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

fn io_err(path: &Path, source: io::Error) -> ManagedError {
    ManagedError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::ConnectOptions as _;
    use sqlx::postgres::PgConnectOptions;
    use std::str::FromStr;

    fn temp_dir(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        // Short on purpose: the socket path must stay within 107 bytes.
        std::env::temp_dir().join(format!(
            "hg-{tag}-{}-{}",
            std::process::id(),
            nanos % 1_000_000
        ))
    }

    async fn select_one(cluster: &ManagedCluster, db: &str) -> i32 {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&cluster.url(db))
            .await
            .expect("connect over the socket");
        let (one,): (i32,) = sqlx::query_as("SELECT 1").fetch_one(&pool).await.unwrap();
        let (current,): (String,) = sqlx::query_as("SELECT current_database()")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(current, db);
        pool.close().await;
        one
    }

    fn postmaster_pid(cluster: &ManagedCluster) -> i32 {
        read_postmaster_pid(&cluster.data_dir.join("postmaster.pid")).expect("a running server")
    }

    /// One test, because each phase depends on the state the one before left behind.
    #[tokio::test(flavor = "multi_thread")]
    async fn creates_starts_reuses_restarts_and_stops_a_real_cluster() {
        if find_bindir(
            Path::new("/usr/lib/postgresql"),
            std::env::var_os("PATH").as_deref(),
            None,
        )
        .is_none()
        {
            eprintln!("skipped: no PostgreSQL server programs installed");
            return;
        }
        let dir = temp_dir("pg");
        let cluster = ManagedCluster::start(&dir).await.unwrap();
        cluster.ensure_database("x").await.unwrap();
        cluster.ensure_database("x").await.unwrap();
        cluster.ensure_database("odd name+'\"").await.unwrap();
        assert_eq!(select_one(&cluster, "x").await, 1);
        assert_eq!(select_one(&cluster, "odd name+'\"").await, 1);

        // As after hubgate was killed: the server is still up and must be taken over as is.
        let pid = postmaster_pid(&cluster);
        let again = ManagedCluster::start(&dir).await.unwrap();
        assert_eq!(postmaster_pid(&again), pid);
        assert_eq!(select_one(&again, "x").await, 1);

        again.stop().await.unwrap();
        assert!(!cluster.data_dir.join("postmaster.pid").exists());
        again.stop().await.unwrap();

        // A pid file left by a server that died with the machine, its pid since reused.
        fs::write(
            cluster.data_dir.join("postmaster.pid"),
            format!("{}\n{}\n", std::process::id(), cluster.data_dir.display()),
        )
        .unwrap();
        let restarted = ManagedCluster::start(&dir).await.unwrap();
        assert_ne!(postmaster_pid(&restarted), pid);
        assert_eq!(select_one(&restarted, "x").await, 1);
        restarted.stop().await.unwrap();

        let conf = fs::read_to_string(cluster.data_dir.join("postgresql.conf")).unwrap();
        assert_eq!(conf.matches("include 'hubgate.conf'").count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn url_names_the_socket_directory_in_a_form_sqlx_accepts() {
        let cluster = ManagedCluster {
            dir: "/var/lib/hub gate/pgsql".into(),
            data_dir: "/var/lib/hub gate/pgsql/data".into(),
            socket_dir: "/var/lib/hub gate+x/pgsql/socket".into(),
            log_file: "/var/lib/hub gate/pgsql/postgresql.log".into(),
            bindir: "/usr/lib/postgresql/15/bin".into(),
            server_user: None,
        };
        let url = cluster.url("mail db");
        assert_eq!(
            url,
            "postgres://hubgate@localhost:5432/mail%20db?host=/var/lib/hub%20gate%2Bx/pgsql/socket"
        );
        let options = PgConnectOptions::from_str(&url).unwrap();
        assert_eq!(
            options.get_socket(),
            Some(&PathBuf::from("/var/lib/hub gate+x/pgsql/socket"))
        );
        assert_eq!(options.get_database(), Some("mail db"));
        assert_eq!(options.get_username(), "hubgate");
        let url_back = options.to_url_lossy();
        assert!(url_back.as_str().starts_with("postgres://"));
    }

    #[test]
    fn finds_the_newest_server_then_the_clusters_own_version_then_path() {
        let root = temp_dir("bindir");
        let make = |dir: &Path, programs: &[&str]| {
            fs::create_dir_all(dir).unwrap();
            for p in programs {
                fs::write(dir.join(p), b"").unwrap();
            }
        };
        make(&root.join("lib/9.6/bin"), &["initdb", "pg_ctl"]);
        make(&root.join("lib/15/bin"), &["initdb", "pg_ctl"]);
        make(&root.join("lib/16/bin"), &["psql"]);
        make(&root.join("path/bin"), &["initdb", "pg_ctl"]);
        let lib = root.join("lib");
        let path = std::env::join_paths([root.join("nowhere"), root.join("path/bin")]).unwrap();

        assert_eq!(
            find_bindir(&lib, Some(&path), None),
            Some(lib.join("15/bin"))
        );
        assert_eq!(
            find_bindir(&lib, Some(&path), Some("9.6")),
            Some(lib.join("9.6/bin"))
        );
        assert_eq!(
            find_bindir(&root.join("absent"), Some(&path), None),
            Some(root.join("path/bin"))
        );
        assert_eq!(find_bindir(&root.join("absent"), None, None), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn parses_passwd_and_checks_search_permission() {
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n\
             # comment\n\
             postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n",
        );
        assert_eq!(users.len(), 2);
        let pg = &users[1];
        assert_eq!((pg.name.as_str(), pg.uid, pg.gid), ("postgres", 101, 104));
        assert_eq!(pg.home, PathBuf::from("/var/lib/postgresql"));

        let dir = temp_dir("search");
        fs::create_dir_all(&dir).unwrap();
        set_mode(&dir, 0o700).unwrap();
        let meta = fs::metadata(&dir).unwrap();
        let stranger = ServerUser {
            name: "nobody-here".into(),
            uid: 54321,
            gid: 54321,
            home: "/".into(),
        };
        assert!(!can_search(&meta, &stranger));
        set_mode(&dir, 0o711).unwrap();
        assert!(can_search(&fs::metadata(&dir).unwrap(), &stranger));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_recorded_pid_of_another_program_is_not_a_server() {
        assert_eq!(process_is_postgres(std::process::id() as i32), Some(false));
        assert_eq!(process_is_postgres(i32::MAX), Some(false));
    }

    #[test]
    fn quotes_configuration_strings() {
        assert_eq!(conf_quote("/a b/it's"), "'/a b/it''s'");
    }
}
