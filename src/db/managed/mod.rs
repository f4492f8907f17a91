//! A private PostgreSQL cluster for the gateway.
//!
//! Without `DATABASE_URL` a gateway should still come up with nothing more than the distribution's
//! `postgresql` package installed, so hubgate runs its own cluster with the system's server
//! binaries. It listens on a Unix socket only, in a directory only the server's user may enter,
//! and even there a connection needs the generated password that hubgate keeps 0600 in its own
//! directory: no other local user reaches the database.
//!
//! Two directories: hubgate's own (`dir`, e.g. `$HUBGATE_DATA_DIR/pgsql`), owned by hubgate's
//! user, and the server's (`server_dir`), owned by the user PostgreSQL runs as:
//!
//! ```text
//! dir/password        the superuser's password (0600)
//! dir/location        where server_dir is, when it is not dir itself
//! dir/.start.lock     serialises concurrent starts
//! server_dir/data/            the cluster (initdb's directory)
//! server_dir/socket/          unix_socket_directories (0700)
//! server_dir/postgresql.log   server output (pg_ctl -l)
//! ```
//!
//! Run by an ordinary user the two are one (`dir`), and the server runs as that user. Run by root
//! the server must run as another user (PostgreSQL refuses root). When that user can pass
//! through the folders above the data directory the two are still one, and hubgate lets it pass
//! through the data directory too (search only; everything inside stays private). When it cannot
//! (a checkout under /root, whose home folder is 0700) the server's directory is placed under
//! [`RELOCATED_ROOT`] and `dir/location` records it. Clusters made by older versions inside `dir`
//! stay where they are.
//!
//! The cluster outlives a killed hubgate on purpose: the next start finds the postmaster still
//! running and reuses it instead of failing on its lock file.

mod auth;
mod system;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use system::{
    ServerUser, can_search, check, choose_server_user, chown, conf_quote, describe_output,
    find_bindir, io_err, lock_exclusive, log_tail, percent_encode, process_is_postgres,
    read_pg_version, read_postmaster_pid, run, set_mode, sync_dir,
};

/// The database superuser initdb creates; connections authenticate as it with its password.
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
/// Where a cluster run for root by another user lives: a place every account can pass through.
pub const RELOCATED_ROOT: &str = "/var/lib/hubgate-pgsql";
/// The file in hubgate's directory that names the server's directory when it is elsewhere.
pub const LOCATION_FILE: &str = "location";

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
    #[error("{} must name the cluster's directory by an absolute path", .0.display())]
    BadLocation(PathBuf),
}

#[derive(Debug)]
pub struct ManagedCluster {
    /// hubgate's own directory: password, location record, start lock.
    dir: PathBuf,
    /// The server's directory: `dir` itself, or elsewhere when hubgate runs as root.
    server_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    bindir: PathBuf,
    /// `None` when hubgate is not root: the server then runs as hubgate's own user.
    server_user: Option<ServerUser>,
    /// The superuser's password; empty only while an older cluster is being given one.
    password: String,
}

impl ManagedCluster {
    /// Creates the cluster for `dir` if there is none, then starts it, or reuses a postmaster
    /// left running by a previous process that was killed.
    pub async fn start(dir: &Path) -> Result<ManagedCluster, ManagedError> {
        // The socket path ends up in a URL that sqlx only treats as a socket if it is absolute.
        let dir = std::path::absolute(dir).map_err(|e| io_err(dir, e))?;
        create_private_dir(&dir)?;
        let _lock = lock_exclusive(dir.join(".start.lock")).await?;

        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let recorded = read_location(&dir)?;
        let server_user = if root {
            let data = recorded.as_deref().unwrap_or(&dir).join("data");
            Some(choose_server_user(&data).await?)
        } else {
            None
        };
        let server_dir = match recorded {
            Some(path) => path,
            None => place_server_dir(&dir, server_user.as_ref())?,
        };
        let data_dir = server_dir.join("data");
        let version = read_pg_version(&data_dir);
        let bindir = find_bindir(
            Path::new("/usr/lib/postgresql"),
            std::env::var_os("PATH").as_deref(),
            version.as_deref(),
        )
        .ok_or(ManagedError::NotInstalled)?;
        let mut cluster = ManagedCluster {
            socket_dir: server_dir.join("socket"),
            log_file: server_dir.join("postgresql.log"),
            data_dir,
            server_dir,
            dir,
            bindir,
            server_user,
            password: String::new(),
        };
        cluster.prepare_directories()?;

        let stored = auth::read_password(&cluster.dir)?;
        if version.is_none() {
            let password = match stored {
                Some(p) => p,
                None => auth::create_password(&cluster.dir)?,
            };
            cluster.init(&password).await?;
            cluster.password = password;
        } else if let Some(password) = stored {
            cluster.password = password;
        }
        cluster.write_settings()?;
        if cluster.password.is_empty() {
            // Made by an older version (authentication by `trust`), or its password file lost.
            cluster.give_password().await?;
        }
        let hba_changed = cluster.write_hba()?;

        if cluster.is_running().await? {
            tracing::info!(data = %cluster.data_dir.display(), "reusing the PostgreSQL server that is still running");
            cluster.wait_ready().await?;
            if hba_changed {
                cluster.reload().await?;
            }
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
            "postgres://{SUPERUSER}:{}@localhost:{PORT}/{}?host={}",
            percent_encode(&self.password),
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

    /// The server's directory (data/, socket/, postgresql.log).
    pub fn server_dir(&self) -> &Path {
        &self.server_dir
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
        if self.server_dir != self.dir {
            // The parent only has to be passable; the cluster directory below it is the guard.
            let parent = self.server_dir.parent().unwrap_or(Path::new("/"));
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(parent)
                .map_err(|e| io_err(parent, e))?;
            // Explicitly, because hubgate's umask takes search permission away from others.
            let mode = fs::metadata(parent).map_err(|e| io_err(parent, e))?.mode() & 0o7777;
            if mode & 0o111 != 0o111 {
                set_mode(parent, mode | 0o111)?;
            }
            fs::create_dir_all(&self.server_dir).map_err(|e| io_err(&self.server_dir, e))?;
        }
        fs::create_dir_all(&self.socket_dir).map_err(|e| io_err(&self.socket_dir, e))?;
        let socket = self.socket_dir.join(format!(".s.PGSQL.{PORT}"));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ManagedError::SocketPathTooLong(socket));
        }
        // Only the server's user enters either (hubgate, when root, needs no permission): the
        // socket is not something for other local users to find, let alone try passwords on.
        set_mode(&self.server_dir, 0o700)?;
        set_mode(&self.socket_dir, 0o700)?;
        let Some(user) = &self.server_user else {
            return Ok(());
        };
        chown(&self.server_dir, user.uid, user.gid)?;
        chown(&self.socket_dir, user.uid, user.gid)?;
        if self.server_dir == self.dir {
            // hubgate keeps its data directory 0700; the server's user has to pass through it.
            let parent = self.dir.parent().unwrap_or(Path::new("/"));
            let meta = fs::metadata(parent).map_err(|e| io_err(parent, e))?;
            // Only a folder of hubgate's own (root's, here), never someone else's.
            if !can_search(&meta, user) && meta.uid() == 0 {
                set_mode(parent, meta.mode() & 0o7777 | 0o011)?;
            }
        }
        if self.log_file.exists() {
            chown(&self.log_file, user.uid, user.gid)?;
        }
        for parent in self.server_dir.ancestors().skip(1) {
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
    async fn init(&self, password: &str) -> Result<(), ManagedError> {
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
        let scratch = self.server_dir.join("data.initdb");
        match fs::remove_dir_all(&scratch) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&scratch, e)),
            _ => {}
        }
        tracing::info!(data = %self.data_dir.display(), "creating a PostgreSQL cluster");
        // initdb reads the password from a file, which the server's user must be able to read;
        // it exists only for the run.
        let pwfile = self.server_dir.join("password.initdb");
        write_durably(&pwfile, format!("{password}\n").as_bytes())?;
        if let Some(user) = &self.server_user {
            chown(&pwfile, user.uid, user.gid)?;
        }
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D")
            .arg(&scratch)
            .args(["-A", "scram-sha-256", "-U", SUPERUSER])
            .arg(pwfile_arg(&pwfile))
            .args(["--encoding=UTF8", "--no-locale"]);
        let output = run(cmd, None).await;
        let removed = fs::remove_file(&pwfile).map_err(|e| io_err(&pwfile, e));
        check(&output?, "initdb")?;
        removed?;
        fs::rename(&scratch, &self.data_dir).map_err(|e| io_err(&self.data_dir, e))?;
        sync_dir(&self.server_dir)
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
             unix_socket_permissions = 0700\n\
             password_encryption = 'scram-sha-256'\n\
             port = {PORT}\n\
             max_connections = 200\n\
             fsync = on\n",
            conf_quote(&self.socket_dir.to_string_lossy())
        );
        let path = self.data_dir.join("hubgate.conf");
        self.write_server_file(&path, settings.as_bytes())?;

        let conf = self.data_dir.join("postgresql.conf");
        let text = fs::read_to_string(&conf).map_err(|e| io_err(&conf, e))?;
        let include = "include 'hubgate.conf'";
        if !text.lines().any(|l| l.trim() == include) {
            // Last in the file, so these settings win over initdb's defaults above them.
            let mut file = fs::OpenOptions::new()
                .append(true)
                .open(&conf)
                .map_err(|e| io_err(&conf, e))?;
            io::Write::write_all(&mut file, format!("\n{include}\n").as_bytes())
                .map_err(|e| io_err(&conf, e))?;
        }
        Ok(())
    }

    /// Writes a file in the cluster's data directory, owned by the server's user as the server
    /// wants its files.
    fn write_server_file(&self, path: &Path, contents: &[u8]) -> Result<(), ManagedError> {
        write_durably(path, contents)?;
        if let Some(user) = &self.server_user {
            chown(path, user.uid, user.gid)?;
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
        cmd.current_dir(&self.server_dir);
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
        // The environment, unlike the command line, is not readable by other users.
        if !self.password.is_empty() {
            cmd.env("PGPASSWORD", &self.password);
        }
        if let Some(home) = std::env::var_os("HOME") {
            cmd.env("HOME", home);
        }
        cmd
    }
}

fn read_location(dir: &Path) -> Result<Option<PathBuf>, ManagedError> {
    use std::os::unix::ffi::OsStringExt as _;
    let record = dir.join(LOCATION_FILE);
    match fs::read(&record) {
        Ok(mut bytes) => {
            while bytes.last() == Some(&b'\n') {
                bytes.pop();
            }
            let path = PathBuf::from(OsString::from_vec(bytes));
            if !path.is_absolute() {
                return Err(ManagedError::BadLocation(record));
            }
            Ok(Some(path))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&record, e)),
    }
}

/// Where a cluster with no recorded place goes: `dir` itself when it holds a cluster already
/// (made by an older version), when the server runs as hubgate's own user, or when the server's
/// user can pass through every folder above the data directory (which hubgate then opens for
/// search); else a directory of its own under [`RELOCATED_ROOT`], recorded before anything is
/// created there. A checkout in a home folder (0700) as root is the case this is for.
fn place_server_dir(dir: &Path, user: Option<&ServerUser>) -> Result<PathBuf, ManagedError> {
    use std::os::unix::ffi::OsStrExt as _;
    let Some(user) = user else {
        return Ok(dir.to_path_buf());
    };
    let reachable = dir
        .ancestors()
        .skip(2)
        .all(|a| fs::metadata(a).is_ok_and(|meta| can_search(&meta, user)));
    if reachable || dir.join("data").exists() {
        return Ok(dir.to_path_buf());
    }
    let server_dir = Path::new(RELOCATED_ROOT).join(relocated_name(dir));
    let mut line = server_dir.as_os_str().as_bytes().to_vec();
    line.push(b'\n');
    let record = dir.join(LOCATION_FILE);
    write_durably(&record, &line)?;
    tracing::info!(cluster = %server_dir.display(), record = %record.display(), "the private PostgreSQL cluster lives outside the data directory, where its server user can reach it");
    Ok(server_dir)
}

/// The same directory always gets the same name (FNV-1a of its path), so a data directory whose
/// record was lost finds its cluster again.
fn relocated_name(dir: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in dir.as_os_str().as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// hubgate's own directory: created 0700 when missing. An existing one keeps its owner and mode:
/// in a cluster made by an older version for root, it belongs to the server's user.
fn create_private_dir(dir: &Path) -> Result<(), ManagedError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err(dir, e))
}

/// Replaces `path` with `contents` (0600) so that a crash leaves the old file or the new one.
fn write_durably(path: &Path, contents: &[u8]) -> Result<(), ManagedError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        io::Write::write_all(&mut file, contents)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new("/")))
}

fn pwfile_arg(path: &Path) -> OsString {
    let mut arg = OsString::from("--pwfile=");
    arg.push(path);
    arg
}
