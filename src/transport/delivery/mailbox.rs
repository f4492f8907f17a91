//! Local delivery into Maildir++ folders: `$HUBGATE_DATA_DIR/mailboxes/<address in lower case>/`.
//!
//! Follows the Maildir spec (https://cr.yp.to/proto/maildir.html) with the Maildir++ `,S=<size>`
//! name extension, so Dovecot and mutt read the folders as they are: the message is written to
//! `tmp/<unique>`, fsynced, renamed into `new/<unique>`, and `new/` is fsynced. That is the spool's
//! durability rule: once `deliver` returns, a crash cannot lose the message, so the queue may mark
//! the recipient delivered.
//!
//! Lines are stored with LF endings, as Maildir readers expect. `Return-Path` and `Delivered-To`
//! are prepended, as a final-delivery agent does (RFC 5321 §4.4).
//!
//! The address names a directory, so it is checked to stay one path component. Blocking: call
//! from the blocking pool. Never touches the spool or the queue rows.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::smtp::proto::Reply;

/// Deliveries made by this process: the spec's `Q<n>`, which keeps names unique within one
/// microsecond of one process.
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("'{0}' cannot name a mailbox folder")]
    InvalidAddress(String),
    #[error("mailbox {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl MailboxError {
    /// What the recipient's status and a DSN say. Storage trouble is temporary: the queue retries.
    pub fn reply(&self) -> Reply {
        match self {
            MailboxError::InvalidAddress(_) => {
                Reply::new(550, "5.1.3", "Bad destination mailbox address syntax")
            }
            MailboxError::Io { source, .. } if is_storage_full(source) => {
                Reply::new(452, "4.3.1", "Insufficient system storage")
            }
            MailboxError::Io { .. } => Reply::new(451, "4.3.0", "Local mailbox delivery failed"),
        }
    }
}

fn is_storage_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Where a message landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub path: PathBuf,
    /// Bytes on disk, as the name's `S=` says.
    pub size: u64,
}

/// The root of every local mailbox on this node.
#[derive(Clone, Debug)]
pub struct Mailboxes {
    root: PathBuf,
    /// The host part of unique names, already escaped as the spec asks.
    host: String,
}

impl Mailboxes {
    /// `host` goes into every file name; use the server's FQDN.
    pub fn new(data_dir: &Path, host: &str) -> Mailboxes {
        Mailboxes {
            root: data_dir.join("mailboxes"),
            host: escape_host(host),
        }
    }

    /// The Maildir of `address`; fails for addresses that are not a single path component.
    pub fn maildir(&self, address: &str) -> Result<PathBuf, MailboxError> {
        let name = address.to_lowercase();
        let unsafe_name = name.is_empty()
            || name.starts_with('.')
            || name
                .chars()
                .any(|c| c == '/' || c == '\\' || c == '\0' || c.is_control());
        if unsafe_name {
            return Err(MailboxError::InvalidAddress(address.to_string()));
        }
        Ok(self.root.join(name))
    }

    /// Delivers `message` (CRLF or LF lines) to `recipient`, durably. `sender` is the envelope
    /// MAIL FROM, empty for the null sender.
    pub fn deliver(
        &self,
        sender: &str,
        recipient: &str,
        message: &[u8],
    ) -> Result<Delivered, MailboxError> {
        for a in [sender, recipient] {
            if a.contains(['\r', '\n']) {
                return Err(MailboxError::InvalidAddress(a.to_string()));
            }
        }
        let dir = self.maildir(recipient)?;
        self.ensure_maildir(&dir)?;
        let content = with_delivery_headers(sender, recipient, message);
        loop {
            let name = unique_name(
                SystemTime::now(),
                std::process::id(),
                DELIVERIES.fetch_add(1, Ordering::Relaxed),
                &self.host,
                content.len() as u64,
            );
            match write_and_publish(&dir, &name, &content) {
                Err(MailboxError::Io { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    /// Creates the folder on first delivery. Each new directory's parent is fsynced, or a crash
    /// could drop the whole folder together with the message just written into it.
    fn ensure_maildir(&self, dir: &Path) -> Result<(), MailboxError> {
        if ["cur", "new", "tmp"].iter().all(|s| dir.join(s).is_dir()) {
            return Ok(());
        }
        let data_dir = self.root.parent().unwrap_or(Path::new("/"));
        create_durable(data_dir, &self.root)?;
        create_durable(&self.root, dir)?;
        for sub in ["cur", "new", "tmp"] {
            create_durable(dir, &dir.join(sub))?;
        }
        Ok(())
    }
}

fn create_durable(parent: &Path, dir: &Path) -> Result<(), MailboxError> {
    match crate::fsmode::create_mail_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error(dir, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), MailboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

fn io_error(path: &Path, source: io::Error) -> MailboxError {
    MailboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The spec's delivery steps: tmp/, fsync, rename into new/, fsync new/.
fn write_and_publish(dir: &Path, name: &str, content: &[u8]) -> Result<Delivered, MailboxError> {
    let tmp = dir.join("tmp").join(name);
    let new = dir.join("new").join(name);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::fsmode::mail_file_mode())
            .open(&tmp)?;
        crate::fsmode::share_mail_file(&f)?;
        f.write_all(content)?;
        f.sync_data()
    })();
    if let Err(e) = written {
        if e.kind() != io::ErrorKind::AlreadyExists {
            let _ = fs::remove_file(&tmp);
        }
        return Err(io_error(&tmp, e));
    }
    if let Err(e) = fs::rename(&tmp, &new) {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(&new, e));
    }
    sync_dir(&dir.join("new"))?;
    Ok(Delivered {
        path: new,
        size: content.len() as u64,
    })
}

/// `<secs>.M<micros>P<pid>Q<n>.<host>,S=<size>`: the spec's modern unique name plus Maildir++ size.
pub fn unique_name(now: SystemTime, pid: u32, counter: u64, host: &str, size: u64) -> String {
    let t = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{},S={}",
        t.as_secs(),
        t.subsec_micros(),
        pid,
        counter,
        host,
        size
    )
}

/// The spec reserves `/` and `:` in names (`:` starts the info part in cur/).
fn escape_host(host: &str) -> String {
    host.replace('/', "\\057").replace(':', "\\072")
}

/// Return-Path and Delivered-To on top, then the message with LF line ends.
fn with_delivery_headers(sender: &str, recipient: &str, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + sender.len() + recipient.len() + 32);
    out.extend_from_slice(
        format!("Return-Path: <{sender}>\nDelivered-To: {recipient}\n").as_bytes(),
    );
    let mut rest = message;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        out.extend_from_slice(&rest[..i]);
        out.push(b'\n');
        rest = &rest[i + 2..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MSG: &[u8] =
        b"From: a@fabrikam.com\r\nTo: Bob@Contoso.com\r\nSubject: hi\r\n\r\nline 1\r\nline 2\r\n";

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn delivery_leaves_a_readable_maildir() {
        let data = tempfile::tempdir().unwrap();
        let boxes = Mailboxes::new(data.path(), "hub01.contoso.com");
        let got = boxes
            .deliver("a@fabrikam.com", "Bob@Contoso.com", MSG)
            .unwrap();
        let dir = data.path().join("mailboxes").join("bob@contoso.com");
        for sub in ["cur", "new", "tmp"] {
            assert!(dir.join(sub).is_dir(), "{sub}/ missing");
        }
        assert_eq!(files(&dir.join("new")), vec![got.path.clone()]);
        assert!(files(&dir.join("tmp")).is_empty(), "tmp/ must be empty");
        assert!(files(&dir.join("cur")).is_empty());
        let body = fs::read(&got.path).unwrap();
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            "Return-Path: <a@fabrikam.com>\nDelivered-To: Bob@Contoso.com\n\
             From: a@fabrikam.com\nTo: Bob@Contoso.com\nSubject: hi\n\nline 1\nline 2\n"
        );
        assert_eq!(got.size, body.len() as u64);
        let name = got.path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.ends_with(&format!(".hub01.contoso.com,S={}", body.len())),
            "{name}"
        );
        assert!(!name.contains(':'), "new/ names carry no info part: {name}");
    }

    #[test]
    fn every_delivery_gets_its_own_file() {
        let data = tempfile::tempdir().unwrap();
        let boxes = Mailboxes::new(data.path(), "hub01");
        let a = boxes.deliver("x@y.z", "bob@contoso.com", MSG).unwrap();
        let b = boxes.deliver("x@y.z", "BOB@contoso.com", MSG).unwrap();
        assert_ne!(a.path, b.path);
        assert_eq!(a.path.parent(), b.path.parent());
        assert_eq!(files(a.path.parent().unwrap()).len(), 2);
    }

    #[test]
    fn null_sender_and_bare_lf_input() {
        let data = tempfile::tempdir().unwrap();
        let boxes = Mailboxes::new(data.path(), "hub01");
        let got = boxes
            .deliver("", "bob@contoso.com", b"Subject: x\n\nbody\rwith bare cr\n")
            .unwrap();
        assert_eq!(
            fs::read(got.path).unwrap(),
            b"Return-Path: <>\nDelivered-To: bob@contoso.com\nSubject: x\n\nbody\rwith bare cr\n"
        );
    }

    #[test]
    fn addresses_that_would_leave_the_mailbox_root_are_refused() {
        let data = tempfile::tempdir().unwrap();
        let boxes = Mailboxes::new(data.path(), "hub01");
        for bad in [
            "../etc@x",
            "a/b@contoso.com",
            "..",
            ".hidden@x",
            "",
            "a\\b@x",
        ] {
            let err = boxes.deliver("s@x", bad, MSG).unwrap_err();
            assert!(
                matches!(err, MailboxError::InvalidAddress(_)),
                "{bad:?}: {err}"
            );
            assert_eq!(err.reply().code, 550, "{bad:?}");
        }
        let err = boxes
            .deliver("s@x\r\nX-Evil: 1", "bob@contoso.com", MSG)
            .unwrap_err();
        assert!(matches!(err, MailboxError::InvalidAddress(_)));
        assert!(
            !data
                .path()
                .join("mailboxes")
                .join("bob@contoso.com")
                .exists()
        );
    }

    #[test]
    fn storage_errors_are_temporary() {
        let data = tempfile::tempdir().unwrap();
        // A file where the mailbox root should be makes every directory creation fail.
        fs::write(data.path().join("mailboxes"), b"").unwrap();
        let boxes = Mailboxes::new(data.path(), "hub01");
        let err = boxes.deliver("s@x", "bob@contoso.com", MSG).unwrap_err();
        assert!(matches!(err, MailboxError::Io { .. }), "{err}");
        assert_eq!(
            err.reply().one_line(),
            "451 4.3.0 Local mailbox delivery failed"
        );
        let full = MailboxError::Io {
            path: PathBuf::new(),
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        assert_eq!(
            full.reply().one_line(),
            "452 4.3.1 Insufficient system storage"
        );
    }

    #[test]
    fn unique_name_format() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(
            unique_name(t, 4242, 7, "hub01.contoso.com", 1234),
            "1700000000.M123456P4242Q7.hub01.contoso.com,S=1234"
        );
        assert_eq!(escape_host("a/b:c"), "a\\057b\\072c");
    }
}
