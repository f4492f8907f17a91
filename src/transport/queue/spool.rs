//! Message bodies: a small one in the queue database (`message_body`, migration 0024), a larger
//! one on disk, one file per message, named by the message id.
//!
//! A body up to [`INLINE_MAX`] bytes that arrived whole in memory goes into a `message_body`
//! row (its "row" below), in the statement that commits the message's rows: one commit makes
//! both durable, and no file is created, fsynced or unlinked (on the disks measured, those cost
//! more than the rest of the message).
//! It stays in memory ([`Held`]) until it is delivered, within a fixed budget.
//!
//! A larger body is written and fsynced (file and directory) before its rows are committed, so
//! every committed row has a whole body. A crash between the two leaves an orphan file that
//! `recover` removes at start-up: such a message never got its 250. The file may be a removed
//! body's, written over (`recycle.rs`).
//!
//! A body arriving over SMTP is streamed to its file as it comes ([`Incoming`]), so a session
//! costs a small fixed buffer however large the message.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Deref;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use uuid::Uuid;

use super::recycle::Recycler;

/// The largest body kept in its row. The row stays within one PostgreSQL page (migration 0024),
/// so it is stored as it is, uncompressed, in the heap.
pub const INLINE_MAX: usize = 7 * 1024;

/// How many bytes of row-kept bodies stay in memory for their delivery. Past it a body is read
/// back from its row when it is sent; a long queue (a next hop down) costs no more than this.
const HELD_MAX: usize = 32 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
    /// Set by [`Spool::with_database`]: bodies may then live in their rows.
    db: Option<PgPool>,
    held: Arc<Held>,
    recycler: Arc<Recycler>,
}

/// Row-kept bodies in memory, from their commit to their removal, within [`HELD_MAX`] bytes.
#[derive(Debug, Default)]
struct Held {
    map: Mutex<HeldBodies>,
}

/// The bodies held, and their bytes in all.
type HeldBodies = (HashMap<Uuid, Arc<[u8]>>, usize);

impl Held {
    fn insert(&self, id: Uuid, body: Vec<u8>) {
        let mut held = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (map, bytes) = &mut *held;
        if let Some(total) = bytes.checked_add(body.len())
            && total <= HELD_MAX
        {
            *bytes = total;
            map.insert(id, Arc::from(body));
        }
    }

    fn get(&self, id: Uuid) -> Option<Arc<[u8]>> {
        let held = self.map.lock().unwrap_or_else(|e| e.into_inner());
        held.0.get(&id).cloned()
    }

    /// Forgets `id`; true when it was held (its body is in its row, not on disk).
    fn remove(&self, id: Uuid) -> bool {
        let mut held = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (map, bytes) = &mut *held;
        match map.remove(&id) {
            Some(b) => {
                *bytes = bytes.saturating_sub(b.len());
                true
            }
            None => false,
        }
    }
}

/// A committed message's body, as it will be sent.
#[derive(Clone, Debug)]
pub enum Body {
    Held(Arc<[u8]>),
    Read(Vec<u8>),
}

impl Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Body::Held(b) => b,
            Body::Read(b) => b,
        }
    }
}

impl Spool {
    pub fn open(data_dir: &Path) -> io::Result<Spool> {
        let dir = data_dir.join("spool");
        crate::fsmode::private_dir_all(&dir)?;
        let recycler = Arc::new(Recycler::open(&dir)?);
        Ok(Spool {
            dir,
            db: None,
            held: Arc::default(),
            recycler,
        })
    }

    /// The same spool with the queue database, where small bodies are kept in their rows
    /// (written by the commit of the rows, read back by [`Spool::body`]).
    pub fn with_database(mut self, pool: PgPool) -> Spool {
        self.db = Some(pool);
        self
    }

    /// The body of a committed message: held in memory, its file, or its row. NotFound when
    /// it is in none of them (lost).
    pub async fn body(&self, id: Uuid) -> io::Result<Body> {
        if let Some(b) = self.held.get(id) {
            return Ok(Body::Held(b));
        }
        match tokio::fs::read(self.path(id)).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other.map(Body::Read),
        }
        let Some(db) = &self.db else {
            return Err(io::ErrorKind::NotFound.into());
        };
        let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT body FROM message_body WHERE id = $1")
            .bind(id)
            .fetch_optional(db)
            .await
            .map_err(io::Error::other)?;
        match row {
            Some((body,)) => Ok(Body::Read(body)),
            None => Err(io::ErrorKind::NotFound.into()),
        }
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

    /// Removes the body of a message whose rows are gone (a row-kept body went with them). Its
    /// file goes to the free list for a later body ([`Recycler`]), or is unlinked.
    pub fn remove(&self, id: Uuid) -> io::Result<()> {
        if self.held.remove(id) {
            return Ok(());
        }
        let path = self.path(id);
        let gone = match self.recycler.keep(id, &path) {
            Ok(true) => Ok(()),
            Ok(false) => fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match gone {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Files of removed bodies kept for reuse.
    pub fn recycled(&self) -> usize {
        self.recycler.len()
    }

    /// The body's file (a body kept in its row has none: see [`Spool::body`]).
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

    /// Removes bodies whose rows were never committed (a crash before the 250), and the files
    /// kept for reuse. Call before listening. The other half, rows whose body is missing, the
    /// queue manager reports (NDR) as it loads them.
    pub async fn recover(&self, pool: &sqlx::PgPool) -> Result<usize, super::AcceptError> {
        let on_disk = {
            let s = self.clone();
            tokio::task::spawn_blocking(move || {
                s.recycler.clear()?;
                s.list()
            })
            .await
            .map_err(|e| super::AcceptError::Io(io::Error::other(e)))??
        };
        let known: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM message WHERE id = ANY($1)")
            .bind(&on_disk)
            .fetch_all(pool)
            .await?;
        let known: std::collections::HashSet<Uuid> = known.into_iter().map(|(id,)| id).collect();
        // Rows of bodies whose message is gone (removed other than by the queue writer).
        sqlx::query(
            "DELETE FROM message_body b
             WHERE NOT EXISTS (SELECT 1 FROM message m WHERE m.id = b.id)",
        )
        .execute(pool)
        .await?;
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
    /// Made durable in its row: the commit writes `buf` with the message.
    inline: bool,
    /// The file is a removed body's, written over from its start: its length before.
    reused: u64,
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
            inline: false,
            reused: 0,
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
        let recycler = self.spool.recycler.clone();
        let file = self.file.take();
        let mut buf = std::mem::take(&mut self.buf);
        // Every byte appended so far is in the file after this write: its length.
        let (total, reused) = (self.len, self.reused);
        // Set before the file exists, so that a drop while the write runs removes it. (Were the
        // session's task cancelled before the blocking task created the file, it would be left
        // as a body without rows, which the start-up recovery removes.)
        self.on_disk = true;
        let done = tokio::task::spawn_blocking(move || {
            let result = (|| {
                let (mut f, reused) = match file {
                    Some(f) => (f, reused),
                    None => match recycler.take(&path) {
                        Some((f, len)) => (f, len),
                        None => (
                            OpenOptions::new()
                                .write(true)
                                .create_new(true)
                                .mode(0o600)
                                .open(&path)?,
                            0,
                        ),
                    },
                };
                f.write_all(&buf)?;
                if sync {
                    // A reused file may go on past this body: what is left of the one before.
                    if reused > total {
                        f.set_len(total)?;
                    }
                    f.sync_data()?;
                    File::open(&dir)?.sync_all()?;
                }
                Ok((f, reused))
            })();
            buf.clear();
            (result, buf)
        })
        .await;
        match done {
            Ok((Ok((f, reused)), buf)) => {
                self.file = Some(f);
                self.reused = reused;
                self.buf = buf;
            }
            Ok((Err(e), _)) => self.error = Some(e),
            Err(e) => self.error = Some(io::Error::other(e)),
        }
    }

    /// Writes the rest and makes the body durable (fdatasync, then the directory's fsync): after
    /// this, a crash cannot lose it. A small body of a spool with a database is left for the
    /// commit of its rows instead ([`Incoming::inline`]).
    pub async fn make_durable(&mut self) -> io::Result<()> {
        if self.error.is_none() && self.file.is_none() && self.buf.len() <= INLINE_MAX {
            self.inline = self.spool.db.is_some();
        }
        if self.error.is_none() && !self.inline {
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

    /// The body the commit must write into its row, when it goes there.
    pub fn inline(&self) -> Option<&[u8]> {
        self.inline.then_some(self.buf.as_slice())
    }

    /// The body stays on disk whatever happens to this value now. `committed`: the rows are
    /// known to be committed, so a row-kept body is held in memory for its delivery.
    pub fn keep(mut self, committed: bool) {
        self.on_disk = false;
        if self.inline && committed {
            let body = std::mem::take(&mut self.buf);
            self.spool.held.insert(self.id, body);
        }
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
    use super::super::recycle::{COUNT_MAX, FILE_MAX};
    use super::*;

    /// Bodies on disk (the files in `spool/`, not those kept in `spool/free/` for reuse).
    fn files(dir: &Path) -> usize {
        fs::read_dir(dir.join("spool"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .count()
    }

    async fn durable(spool: &Spool, body: &[u8]) -> Uuid {
        let id = Uuid::now_v7();
        let mut incoming = spool.incoming(id);
        incoming.write(body).await;
        incoming.make_durable().await.unwrap();
        incoming.keep(true);
        id
    }

    #[tokio::test]
    async fn a_removed_body_s_file_is_written_over_by_the_next_and_cut_to_its_length() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path()).unwrap();
        let free = tmp.path().join("spool/free");
        let ino = |id| fs::metadata(spool.path(id)).unwrap().ino();

        let first = durable(&spool, &vec![b'a'; 100_000]).await;
        let inode = ino(first);
        spool.remove(first).unwrap();
        assert!(!spool.path(first).exists());
        assert_eq!(
            (spool.recycled(), fs::read_dir(&free).unwrap().count()),
            (1, 1)
        );

        // The next body takes that file: the same inode, holding the new body and nothing after.
        let second = durable(&spool, &vec![b'b'; 5_000]).await;
        assert_eq!(ino(second), inode);
        assert_eq!(spool.read(second).unwrap(), vec![b'b'; 5_000]);
        assert_eq!(spool.recycled(), 0);
        // A longer one spills in pieces over a reused file and ends whole.
        spool.remove(second).unwrap();
        let third = durable(&spool, &vec![b'c'; 3 * SPILL + 7]).await;
        assert_eq!(ino(third), inode);
        assert_eq!(spool.read(third).unwrap(), vec![b'c'; 3 * SPILL + 7]);

        // At most COUNT_MAX files are kept, and none over FILE_MAX; the rest are unlinked.
        let big = durable(&spool, &vec![b'd'; FILE_MAX as usize + 1]).await;
        spool.remove(big).unwrap();
        assert_eq!(spool.recycled(), 0);
        let mut ids = vec![third];
        for _ in 0..COUNT_MAX + 2 {
            ids.push(durable(&spool, b"Subject: s\r\n\r\nhi\r\n").await);
        }
        for id in ids {
            spool.remove(id).unwrap();
        }
        assert_eq!(files(tmp.path()), 0);
        assert_eq!(spool.recycled(), COUNT_MAX);
        assert_eq!(fs::read_dir(&free).unwrap().count(), COUNT_MAX);

        // The start-up recovery empties the list.
        assert_eq!(spool.recycler.clear().unwrap(), COUNT_MAX);
        assert_eq!(
            (spool.recycled(), fs::read_dir(&free).unwrap().count()),
            (0, 0)
        );
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
        small.keep(true);
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
        large.keep(true);
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
