//! What the private cluster needs from the system: the server programs, the account to run them
//! as, and running them.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use tokio::io::AsyncWriteExt;

use super::{FALLBACK_SERVER_USER, ManagedError};

/// The unprivileged account the server runs as when hubgate itself runs as root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServerUser {
    pub(super) name: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) home: PathBuf,
}

/// Picks the directory holding initdb and pg_ctl: that of the cluster's own major version if
/// installed (a server of another major version cannot open it), else the newest under `root`
/// (Debian's layout, where `pg_config --bindir` names the client's directory), else `PATH`.
pub(super) fn find_bindir(
    root: &Path,
    path: Option<&OsStr>,
    version: Option<&str>,
) -> Option<PathBuf> {
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

pub(super) fn read_pg_version(data_dir: &Path) -> Option<String> {
    let text = fs::read_to_string(data_dir.join("PG_VERSION")).ok()?;
    Some(text.trim().to_string())
}

pub(super) fn read_postmaster_pid(pid_file: &Path) -> Option<i32> {
    let text = fs::read_to_string(pid_file).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// `None` when /proc cannot tell.
pub(super) fn process_is_postgres(pid: i32) -> Option<bool> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm"));
    match comm {
        Ok(comm) => Some(comm.trim_end().starts_with("postgres")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(false),
        Err(_) => None,
    }
}

/// The data directory's owner when it has one other than root (a cluster can only be run by
/// its owner), else Debian's `postgres` account, else a system user created for the purpose.
pub(super) async fn choose_server_user(data_dir: &Path) -> Result<ServerUser, ManagedError> {
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

pub(super) fn read_passwd() -> Result<Vec<ServerUser>, ManagedError> {
    let path = Path::new("/etc/passwd");
    let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    Ok(parse_passwd(&text))
}

pub(super) fn parse_passwd(text: &str) -> Vec<ServerUser> {
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
pub(super) fn can_search(meta: &fs::Metadata, user: &ServerUser) -> bool {
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
pub(super) async fn lock_exclusive(path: PathBuf) -> Result<File, ManagedError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
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

pub(super) async fn run(
    cmd: std::process::Command,
    stdin: Option<&[u8]>,
) -> Result<Output, ManagedError> {
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

pub(super) fn check(output: &Output, command: &str) -> Result<(), ManagedError> {
    if output.status.success() {
        return Ok(());
    }
    Err(ManagedError::CommandFailed {
        command: command.to_string(),
        status: output.status.to_string(),
        output: describe_output(output),
    })
}

pub(super) fn describe_output(output: &Output) -> String {
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

pub(super) fn log_tail(path: &Path, max: u64) -> String {
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

pub(super) fn set_mode(path: &Path, mode: u32) -> Result<(), ManagedError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, e))
}

pub(super) fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), ManagedError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| io_err(path, e))
}

pub(super) fn sync_dir(path: &Path) -> Result<(), ManagedError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| io_err(path, e))
}

/// postgresql.conf string literal.
pub(super) fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// sqlx decodes the query as form data, where `+` means a space, so everything but unreserved
/// characters and `/` is encoded, in the path as well as in the query.
pub(super) fn percent_encode(value: &str) -> String {
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

pub(super) fn io_err(path: &Path, source: io::Error) -> ManagedError {
    ManagedError::Io {
        path: path.to_path_buf(),
        source,
    }
}
