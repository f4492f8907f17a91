//! Modes of what hubgate creates under its data directory: queued bodies, Maildirs, logs and keys
//! are nobody else's business, so directories are 0700 and files 0600 whatever umask hubgate was
//! started with. The one exception is opt-in: with `HUBGATE_MAIL_GROUP` set, the Maildirs (and the
//! way to them) are shared read-only with that group so a mail reader (an IMAP server, say) can
//! read them.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Names the group (name or numeric id) that may read the Maildirs.
pub const MAIL_GROUP_ENV: &str = "HUBGATE_MAIL_GROUP";

pub const PRIVATE_DIR: u32 = 0o700;
pub const PRIVATE_FILE: u32 = 0o600;
/// setgid, so every file and folder created below inherits the mail group.
const MAIL_DIR: u32 = 0o2750;
const MAIL_FILE: u32 = 0o640;

static MAIL_GROUP: OnceLock<Option<u32>> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    #[error("{MAIL_GROUP_ENV}={0}: there is no such group on this machine (see /etc/group)")]
    UnknownGroup(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Run once at start, before anything is created. The umask makes whatever is created without an
/// explicit mode private too (a second line of defence behind the explicit modes below).
pub fn init() -> Result<(), ModeError> {
    // SAFETY: umask has no preconditions and cannot fail.
    unsafe { libc::umask(0o077) };
    let group = match std::env::var(MAIL_GROUP_ENV) {
        Ok(value) if !value.trim().is_empty() => Some(resolve_group(value.trim())?),
        _ => None,
    };
    let _ = MAIL_GROUP.set(group);
    Ok(())
}

/// The group that may read the Maildirs, when one is configured.
pub fn mail_group() -> Option<u32> {
    MAIL_GROUP.get().copied().flatten()
}

/// Creates the data directory 0700, or makes an existing one (and what an older version created
/// in it world-readable) private. With a mail group that group may pass through it to the
/// Maildirs. A private PostgreSQL cluster inside, run by another user, opens it for search itself.
pub fn data_dir(path: &Path) -> Result<(), ModeError> {
    create_all(path)?;
    let meta = fs::metadata(path).map_err(|e| io_err(path, e))?;
    let mut mode = meta.mode() & 0o7700;
    if let Some(gid) = mail_group() {
        chown_group(path, gid)?;
        mode |= 0o010;
    }
    set_mode_if_changed(path, &meta, mode)?;
    for child in ["spool", "logs", "certs", "mailboxes"] {
        let dir = path.join(child);
        let Ok(meta) = fs::metadata(&dir) else {
            continue;
        };
        if child == "mailboxes"
            && let Some(gid) = mail_group()
        {
            chown_group(&dir, gid)?;
            set_mode_if_changed(&dir, &meta, MAIL_DIR)?;
        } else {
            set_mode_if_changed(&dir, &meta, meta.mode() & 0o7700)?;
        }
    }
    Ok(())
}

/// Creates `path` and missing parents 0700; an existing `path` loses every group and other bit.
pub fn private_dir_all(path: &Path) -> io::Result<()> {
    create_all(path).map_err(into_io)?;
    let meta = fs::metadata(path)?;
    let mode = meta.mode() & 0o7700;
    set_mode_if_changed(path, &meta, mode).map_err(into_io)
}

/// Creates one Maildir level (the `mailboxes` root, a mailbox, or its cur/new/tmp): private, or
/// readable by the mail group when one is configured. An existing directory is an error of kind
/// `AlreadyExists`, as with `fs::create_dir`.
pub fn create_mail_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(PRIVATE_DIR).create(path)?;
    if let Some(gid) = mail_group() {
        chown_group(path, gid).map_err(into_io)?;
        // Explicitly, because the umask would take the group bits away.
        fs::set_permissions(path, fs::Permissions::from_mode(MAIL_DIR))?;
    }
    Ok(())
}

/// The mode a new Maildir message file is opened with.
pub fn mail_file_mode() -> u32 {
    if mail_group().is_some() {
        MAIL_FILE
    } else {
        PRIVATE_FILE
    }
}

/// Gives a new Maildir message file its mode whatever the umask (it took the setgid folder's group).
pub fn share_mail_file(file: &File) -> io::Result<()> {
    if mail_group().is_some() {
        file.set_permissions(fs::Permissions::from_mode(MAIL_FILE))?;
    }
    Ok(())
}

/// `name` as a group name from /etc/group, or a numeric id.
fn resolve_group(name: &str) -> Result<u32, ModeError> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let path = Path::new("/etc/group");
    let text = fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let group = fields.next()?;
            let gid = fields.nth(1)?.parse().ok()?;
            (group == name).then_some(gid)
        })
        .next()
        .ok_or_else(|| ModeError::UnknownGroup(name.to_string()))
}

fn create_all(path: &Path) -> Result<(), ModeError> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(path)
        .map_err(|e| io_err(path, e))
}

fn set_mode_if_changed(path: &Path, meta: &fs::Metadata, mode: u32) -> Result<(), ModeError> {
    if meta.mode() & 0o7777 == mode {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_err(path, e))
}

fn chown_group(path: &Path, gid: u32) -> Result<(), ModeError> {
    std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| io_err(path, e))
}

fn io_err(path: &Path, source: io::Error) -> ModeError {
    ModeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn into_io(e: ModeError) -> io::Error {
    match e {
        ModeError::Io { source, .. } => source,
        other => io::Error::other(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_directories_lose_group_and_other_bits() {
        let base = tempfile_dir("fsmode");
        let nested = base.join("a/b");
        private_dir_all(&nested).unwrap();
        let existing = base.join("open");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir_all(&existing).unwrap();
        for dir in [base.join("a"), nested, existing] {
            let mode = fs::metadata(&dir).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn an_existing_data_dir_and_what_an_older_version_made_in_it_become_private() {
        let base = tempfile_dir("datadir");
        for dir in [base.join("spool"), base.join("mailboxes/a@b.test")] {
            fs::create_dir_all(&dir).unwrap();
        }
        for dir in [&base, &base.join("spool"), &base.join("mailboxes")] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        }
        data_dir(&base).unwrap();
        for dir in [&base, &base.join("spool"), &base.join("mailboxes")] {
            let mode = fs::metadata(dir).unwrap().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn resolves_numeric_and_named_groups() {
        assert_eq!(resolve_group("4242").unwrap(), 4242);
        assert_eq!(resolve_group("root").unwrap(), 0);
        assert!(matches!(
            resolve_group("no-such-group-here"),
            Err(ModeError::UnknownGroup(_))
        ));
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        std::env::temp_dir().join(format!("hg-{tag}-{}-{nanos}", std::process::id()))
    }
}
