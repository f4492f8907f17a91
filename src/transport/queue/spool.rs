//! Message bodies on disk, one file per message, named by the message id.
//!
//! A body is written and fsynced (file and directory) before its rows are committed, so every
//! committed row has a whole body. A crash between the two leaves an orphan file that `recover`
//! removes at start-up: such a message never got its 250.
//!
//! A body arriving over SMTP is streamed to its file as it comes ([`Incoming`]), so a session
//! costs a small fixed buffer however large the message.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn open(data_dir: &Path) -> io::Result<Spool> {
        let dir = data_dir.join("spool");
        crate::fsmode::private_dir_all(&dir)?;
        Ok(Spool { dir })
    }

    /// The spool directory (its disk is what back pressure watches).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    /// A new, empty body for message `id`, to be streamed in.
    pub fn incoming(&self, id: Uuid) -> Incoming {
        Incoming::new(self.clone(), id, Vec::new())
    }

    /// A body already whole in memory (a DSN), written by the same path as a received one.
    pub fn incoming_from(&self, id: Uuid, bytes: Vec<u8>) -> Incoming {
        let len = bytes.len() as u64;
        let mut body = Incoming::new(self.clone(), id, bytes);
        body.len = len;
        body
    }

    pub fn remove(&self, id: Uuid) -> io::Result<()> {
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn read(&self, id: Uuid) -> io::Result<Vec<u8>> {
        fs::read(self.path(id))
    }

    /// Ids of every body on disk.
    pub fn list(&self) -> io::Result<Vec<Uuid>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".eml"))
                .and_then(|n| Uuid::parse_str(n).ok())
            {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Removes bodies whose rows were never committed (a crash before the 250). Call before listening.
    /// The other half, rows whose body is missing, the queue manager reports (NDR) as it loads them.
    pub async fn recover(&self, pool: &sqlx::PgPool) -> Result<usize, super::AcceptError> {
        let on_disk = {
            let s = self.clone();
            tokio::task::spawn_blocking(move || s.list())
                .await
                .map_err(|e| super::AcceptError::Io(io::Error::other(e)))??
        };
        let known: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM message WHERE id = ANY($1)")
            .bind(&on_disk)
            .fetch_all(pool)
            .await?;
        let known: std::collections::HashSet<Uuid> = known.into_iter().map(|(id,)| id).collect();
        let mut removed = 0;
        for id in on_disk.into_iter().filter(|id| !known.contains(id)) {
            self.remove(id)?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// How much of a body stays in memory before it goes to disk, and the size of each write after
/// that. A typical message (a few KB) is written once, at its end, exactly as before bodies were
/// streamed; a large one costs its session this much, whatever its size.
pub const SPILL: usize = 64 * 1024;

/// A body being received. The first [`SPILL`] bytes stay in memory; past that it is written to
/// its spool file in pieces of about [`SPILL`] bytes on the blocking pool. Dropped before
/// [`Incoming::keep`] (the message was refused, the client went away, the commit failed), it
/// leaves no file.
pub struct Incoming {
    spool: Spool,
    id: Uuid,
    buf: Vec<u8>,
    file: Option<File>,
    /// The file may exist on disk: dropping must remove it.
    on_disk: bool,
    len: u64,
    error: Option<io::Error>,
}

impl Incoming {
    fn new(spool: Spool, id: Uuid, buf: Vec<u8>) -> Incoming {
        Incoming {
            spool,
            id,
            buf,
            file: None,
            on_disk: false,
            len: 0,
            error: None,
        }
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `bytes`. A write error is kept and reported by [`Incoming::make_durable`]; the
    /// bytes after it are dropped, so the caller can go on reading the message to its end.
    pub async fn write(&mut self, mut bytes: &[u8]) {
        while self.error.is_none() && !bytes.is_empty() {
            if self.buf.len() >= SPILL {
                self.spill(false).await;
                continue;
            }
            let take = (SPILL - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            self.len = self.len.saturating_add(take as u64);
            bytes = &bytes[take..];
        }
    }

    /// Writes what is buffered to the file (creating it first), and with `sync` makes the file
    /// and its directory entry durable.
    async fn spill(&mut self, sync: bool) {
        let path = self.spool.path(self.id);
        let dir = self.spool.dir.clone();
        let file = self.file.take();
        let mut buf = std::mem::take(&mut self.buf);
        // Set before the file exists, so that a drop while the write runs removes it. (Were the
        // session's task cancelled before the blocking task created the file, it would be left
        // as a body without rows, which the start-up recovery removes.)
        self.on_disk = true;
        let done = tokio::task::spawn_blocking(move || {
            let result = (|| {
                let mut f = match file {
                    Some(f) => f,
                    None => OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)?,
                };
                f.write_all(&buf)?;
                if sync {
                    f.sync_data()?;
                    File::open(&dir)?.sync_all()?;
                }
                Ok(f)
            })();
            buf.clear();
            (result, buf)
        })
        .await;
        match done {
            Ok((Ok(f), buf)) => {
                self.file = Some(f);
                self.buf = buf;
            }
            Ok((Err(e), _)) => self.error = Some(e),
            Err(e) => self.error = Some(io::Error::other(e)),
        }
    }

    /// Writes the rest and makes the body durable (fdatasync, then the directory's fsync): after
    /// this, a crash cannot lose it.
    pub async fn make_durable(&mut self) -> io::Result<()> {
        if self.error.is_none() {
            self.spill(true).await;
        }
        match self.error.take() {
            Some(e) => {
                self.error = Some(io::Error::new(e.kind(), e.to_string()));
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// The body stays on disk whatever happens to this value now.
    pub fn keep(mut self) {
        self.on_disk = false;
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if self.on_disk {
            // An unlink is quick; the file's pages are not flushed by it.
            if let Err(e) = self.spool.remove(self.id) {
                tracing::warn!("removing the unfinished body {}: {e}", self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> usize {
        fs::read_dir(dir.join("spool")).unwrap().count()
    }

    #[tokio::test]
    async fn a_body_streams_to_disk_and_a_dropped_one_leaves_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path()).unwrap();

        // Small: nothing on disk until it is made durable.
        let id = Uuid::now_v7();
        let mut small = spool.incoming(id);
        small.write(b"Subject: s\r\n\r\nhi\r\n").await;
        assert_eq!(files(tmp.path()), 0);
        small.make_durable().await.unwrap();
        small.keep();
        assert_eq!(spool.read(id).unwrap(), b"Subject: s\r\n\r\nhi\r\n");

        // Large: written in pieces as it comes; the whole of it lands in order.
        let id = Uuid::now_v7();
        let mut large = spool.incoming(id);
        let mut want = Vec::new();
        for i in 0..40u8 {
            let piece = vec![b'a' + i % 26; 7_000 + usize::from(i)];
            large.write(&piece).await;
            want.extend_from_slice(&piece);
        }
        assert_eq!(large.len(), want.len() as u64);
        assert_eq!(files(tmp.path()), 2);
        assert!(large.buf.len() <= SPILL);
        large.make_durable().await.unwrap();
        large.keep();
        assert_eq!(spool.read(id).unwrap(), want);

        // Dropped, spilled or made durable, without keep: gone.
        let mut refused = spool.incoming(Uuid::now_v7());
        refused.write(&want).await;
        assert_eq!(files(tmp.path()), 3);
        drop(refused);
        let mut failed = spool.incoming(Uuid::now_v7());
        failed.write(b"x").await;
        failed.make_durable().await.unwrap();
        assert_eq!(files(tmp.path()), 3);
        drop(failed);
        assert_eq!(files(tmp.path()), 2);
    }
}
