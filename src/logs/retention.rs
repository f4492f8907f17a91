//! How big the Exchange-format logs may grow, as Set-TransportServer's log settings say:
//! `*MaxFileSize` starts a new file, `*MaxDirectorySize` and `*MaxAge` remove the oldest files,
//! so the logs cannot fill the spool's disk.
//!
//! The limits of each log family are process-wide (one gateway per process) and follow the
//! configuration while running: `apply` is called with every reload. Files are pruned when a
//! log starts a new file and by the gateway's periodic `prune_all`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, SystemTime};

use crate::org::TransportServer;

/// Exchange's defaults: 10 MB files, 30 days.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 86400);
/// ReceiveProtocolLogMaxDirectorySize / SendProtocolLogMaxDirectorySize: 250 MB.
pub const DEFAULT_PROTOCOL_MAX_DIRECTORY_SIZE: u64 = 250 * 1024 * 1024;
/// MessageTrackingLogMaxDirectorySize: 1 GB.
pub const DEFAULT_TRACKING_MAX_DIRECTORY_SIZE: u64 = 1024 * 1024 * 1024;

/// One log family's limits; `None` is unlimited (for MaxAge: files are never removed by age,
/// Exchange's `00:00:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_file_size: Option<u64>,
    pub max_directory_size: Option<u64>,
    pub max_age: Option<Duration>,
}

impl Retention {
    pub const fn protocol_default() -> Retention {
        Retention {
            max_file_size: Some(DEFAULT_MAX_FILE_SIZE),
            max_directory_size: Some(DEFAULT_PROTOCOL_MAX_DIRECTORY_SIZE),
            max_age: Some(DEFAULT_MAX_AGE),
        }
    }

    pub const fn tracking_default() -> Retention {
        Retention {
            max_file_size: Some(DEFAULT_MAX_FILE_SIZE),
            max_directory_size: Some(DEFAULT_TRACKING_MAX_DIRECTORY_SIZE),
            max_age: Some(DEFAULT_MAX_AGE),
        }
    }

    /// Only a file size limit (tests of rotation).
    pub const fn file_size(max: u64) -> Retention {
        Retention {
            max_file_size: Some(max),
            max_directory_size: None,
            max_age: None,
        }
    }

    /// From a TransportServer's stored values (bytes, seconds; `None` / 0 age: unlimited).
    fn from_stored(file: Option<i64>, dir: Option<i64>, age: i64) -> Retention {
        let bytes = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
        Retention {
            max_file_size: bytes(file),
            max_directory_size: bytes(dir),
            max_age: u64::try_from(age)
                .ok()
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
        }
    }
}

/// A log family's limits, shared by its writer and changed by reloads.
pub type Limits = Arc<RwLock<Retention>>;

/// The families Set-TransportServer configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    ReceiveProtocol,
    SendProtocol,
    MessageTracking,
}

static RECEIVE: LazyLock<Limits> =
    LazyLock::new(|| Arc::new(RwLock::new(Retention::protocol_default())));
static SEND: LazyLock<Limits> =
    LazyLock::new(|| Arc::new(RwLock::new(Retention::protocol_default())));
static TRACKING: LazyLock<Limits> =
    LazyLock::new(|| Arc::new(RwLock::new(Retention::tracking_default())));

/// The process's limits of `family`.
pub fn shared(family: Family) -> Limits {
    match family {
        Family::ReceiveProtocol => RECEIVE.clone(),
        Family::SendProtocol => SEND.clone(),
        Family::MessageTracking => TRACKING.clone(),
    }
}

pub(crate) fn read(limits: &Limits) -> Retention {
    *limits.read().unwrap_or_else(|p| p.into_inner())
}

/// Takes this node's Set-TransportServer log settings.
pub fn apply(server: &TransportServer) {
    let set = |family, r: Retention| {
        *shared(family).write().unwrap_or_else(|p| p.into_inner()) = r;
    };
    set(
        Family::ReceiveProtocol,
        Retention::from_stored(
            server.receive_protocol_log_max_file_size,
            server.receive_protocol_log_max_directory_size,
            server.receive_protocol_log_max_age,
        ),
    );
    set(
        Family::SendProtocol,
        Retention::from_stored(
            server.send_protocol_log_max_file_size,
            server.send_protocol_log_max_directory_size,
            server.send_protocol_log_max_age,
        ),
    );
    set(
        Family::MessageTracking,
        Retention::from_stored(
            server.message_tracking_log_max_file_size,
            server.message_tracking_log_max_directory_size,
            server.message_tracking_log_max_age,
        ),
    );
}

/// Prunes every log directory under `data_dir` by its family's limits now.
pub fn prune_all(data_dir: &Path) {
    use super::protocol::LogKind;
    let logs = [
        (
            super::read::protocol_dir(data_dir, LogKind::Receive),
            LogKind::Receive.file_prefix(),
            Family::ReceiveProtocol,
        ),
        (
            super::read::protocol_dir(data_dir, LogKind::Send),
            LogKind::Send.file_prefix(),
            Family::SendProtocol,
        ),
        (
            super::tracking::dir(data_dir),
            super::tracking::FILE_PREFIX,
            Family::MessageTracking,
        ),
    ];
    for (dir, prefix, family) in logs {
        let r = read(&shared(family));
        if let Err(e) = prune(&dir, prefix, &r, 0, SystemTime::now()) {
            tracing::warn!(dir = %dir.display(), "pruning the log directory: {e}");
        }
    }
}

struct LogFile {
    path: PathBuf,
    key: (u32, u32),
    size: u64,
    modified: SystemTime,
}

/// Removes `<prefix>yyyymmdd-n.LOG` files of `dir`: those last written before `now - max_age`,
/// then the oldest until the rest, with `reserve` bytes more to come, fit in the directory
/// limit. The newest file is the one being written: it is never removed. Other files in the
/// directory are not the log's and are left alone. Returns how many files went.
pub(crate) fn prune(
    dir: &Path,
    prefix: &str,
    r: &Retention,
    reserve: u64,
    now: SystemTime,
) -> io::Result<usize> {
    if r.max_age.is_none() && r.max_directory_size.is_none() {
        return Ok(0);
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(key) = name
            .to_str()
            .and_then(|n| super::read::file_sort_key(prefix, n))
        else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        files.push(LogFile {
            path: entry.path(),
            key,
            size: meta.len(),
            modified: meta.modified()?,
        });
    }
    files.sort_by_key(|f| f.key);
    // The file being written.
    let Some(current) = files.pop() else {
        return Ok(0);
    };
    let mut removed = 0;
    if let Some(cutoff) = r.max_age.and_then(|age| now.checked_sub(age)) {
        let mut kept = Vec::with_capacity(files.len());
        for f in files {
            if f.modified < cutoff {
                remove(&f.path)?;
                removed += 1;
            } else {
                kept.push(f);
            }
        }
        files = kept;
    }
    if let Some(cap) = r.max_directory_size {
        let budget = cap.saturating_sub(current.size.max(reserve));
        let mut total: u64 = files.iter().map(|f| f.size).sum();
        for f in &files {
            if total <= budget {
                break;
            }
            remove(&f.path)?;
            removed += 1;
            total = total.saturating_sub(f.size);
        }
    }
    Ok(removed)
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        // Another pruner (the periodic one) was first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, size: usize, age: Duration, now: SystemTime) {
        let path = dir.join(name);
        fs::write(&path, vec![b'x'; size]).unwrap();
        let f = fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(now - age).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn age_then_directory_size_remove_the_oldest_but_never_the_current_file() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let day = Duration::from_secs(86400);
        write(dir.path(), "RECV20260101-1.LOG", 100, day * 40, now);
        write(dir.path(), "RECV20260201-1.LOG", 100, day * 3, now);
        write(dir.path(), "RECV20260202-1.LOG", 100, day * 2, now);
        write(dir.path(), "RECV20260202-2.LOG", 100, day, now);
        write(dir.path(), "RECV20260203-1.LOG", 100, day * 90, now);
        write(dir.path(), "notes.txt", 5000, day * 90, now);
        let r = Retention {
            max_file_size: Some(100),
            max_directory_size: Some(350),
            max_age: Some(day * 30),
        };
        let removed = prune(dir.path(), "RECV", &r, 100, now).unwrap();
        // 20260101 by age; then 20260201, so that the two left and the room the current file
        // may take (100) fit in 350. The current file is old (its mtime) but stays.
        assert_eq!(removed, 2);
        assert_eq!(
            names(dir.path()),
            vec![
                "RECV20260202-1.LOG",
                "RECV20260202-2.LOG",
                "RECV20260203-1.LOG",
                "notes.txt"
            ]
        );
        let unlimited = Retention {
            max_file_size: None,
            max_directory_size: None,
            max_age: None,
        };
        assert_eq!(prune(dir.path(), "RECV", &unlimited, 0, now).unwrap(), 0);
    }

    #[test]
    fn stored_values_read_as_exchange_means_them() {
        let r = Retention::from_stored(Some(1024), None, 0);
        assert_eq!(r.max_file_size, Some(1024));
        assert_eq!(r.max_directory_size, None);
        assert_eq!(r.max_age, None);
    }
}
