//! Spool files of removed bodies, kept (in `spool/free/`) for the next bodies to be written over.
//!
//! A new file per message costs the filesystem an inode and its blocks, and an unlink gives both
//! back, each time. On the disks measured (ext4 without a journal, mounted with `discard`) that
//! was a large share of a 100 KB message's cost: every new inode is checked against the recently
//! deleted ones of its group, so the cost grows with the deletions of the last minute (any
//! process's, on the same filesystem), and every unlink discards its blocks at once. A body
//! written over a removed one of about its size allocates and frees nothing, the way PostgreSQL
//! recycles its WAL segments.
//!
//! Only files up to [`FILE_MAX`] bytes are kept, at most [`COUNT_MAX`] of them, so the disk space
//! held is bounded. A reused file is cut to its new length before it is made durable, so no byte
//! of the body it held before can be read as part of the new one. The start-up recovery removes
//! whatever is in `free/`: bodies removed from the queue before the stop.
//!
//! A file is reused only after its message's rows are deleted, which the queue manager does once
//! every recipient is final: no delivery or report reads it any more. (An unlinked file could
//! still be read through an open descriptor; a reused one holds another body.)

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uuid::Uuid;

/// The largest file kept for reuse. A larger one is unlinked: written over by a typical body it
/// would be cut down anyway, giving its blocks back as an unlink would.
pub const FILE_MAX: u64 = 1024 * 1024;

/// How many files are kept. Bodies are removed about as fast as new ones arrive, so the list only
/// covers the difference between the two over a burst.
pub const COUNT_MAX: usize = 64;

#[derive(Debug)]
pub struct Recycler {
    dir: PathBuf,
    /// The files in `dir`, by the id of the body each held, with its length.
    free: Mutex<Vec<(Uuid, u64)>>,
}

impl Recycler {
    /// `spool/free/`, created private if it is not there.
    pub fn open(spool_dir: &Path) -> io::Result<Recycler> {
        let dir = spool_dir.join("free");
        crate::fsmode::private_dir_all(&dir)?;
        Ok(Recycler {
            dir,
            free: Mutex::default(),
        })
    }

    /// Removes every file in `free/` (at start-up: bodies removed from the queue before a stop
    /// or a crash). Returns how many there were.
    pub fn clear(&self) -> io::Result<usize> {
        let mut free = self.list();
        free.clear();
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            match fs::remove_file(entry?.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                Err(_) => {}
            }
        }
        Ok(removed)
    }

    fn path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<(Uuid, u64)>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the removed body `id` at `path` into the free list. False when it is not kept (too
    /// large, the list full, or the move failed): the caller unlinks it. NotFound: no such file.
    pub fn keep(&self, id: Uuid, path: &Path) -> io::Result<bool> {
        // A full list is the common case of a bulk removal: no stat for it.
        if self.list().len() >= COUNT_MAX {
            return Ok(false);
        }
        let len = fs::metadata(path)?.len();
        if len > FILE_MAX {
            return Ok(false);
        }
        // The move runs under the lock, so the count cannot pass COUNT_MAX; a rename is a
        // directory operation, and the callers are the writer's unlinker and dropped bodies.
        let mut free = self.list();
        if free.len() >= COUNT_MAX {
            return Ok(false);
        }
        match fs::rename(path, self.path(id)) {
            Ok(()) => {
                free.push((id, len));
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// A kept file moved to `dest` and opened for writing from its start, with the length of
    /// what it holds; None when the list is empty or the move failed (the caller creates a file).
    pub fn take(&self, dest: &Path) -> Option<(File, u64)> {
        loop {
            let (id, len) = self.list().pop()?;
            let from = self.path(id);
            if fs::rename(&from, dest).is_ok() {
                match OpenOptions::new().write(true).open(dest) {
                    Ok(f) => return Some((f, len)),
                    Err(_) => {
                        let _ = fs::remove_file(dest);
                        return None;
                    }
                }
            }
            // Gone from under us (another spool on this directory emptied `free/` at its
            // start): try the next one, or create.
            let _ = fs::remove_file(&from);
        }
    }

    /// Files kept now.
    pub fn len(&self) -> usize {
        self.list().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
