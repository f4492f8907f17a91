//! Message bodies on disk, one file per message, named by the message id.
//!
//! A body is written and fsynced (file and directory) before its rows are committed, so every
//! committed row has a whole body. A crash between the two leaves an orphan file that `recover`
//! removes at start-up: such a message never got its 250.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

#[derive(Clone, Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn open(data_dir: &Path) -> io::Result<Spool> {
        let dir = data_dir.join("spool");
        fs::create_dir_all(&dir)?;
        Ok(Spool { dir })
    }

    pub fn path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    /// Writes `parts` as the body of `id` and makes it durable. Blocking: run on the blocking pool.
    pub fn write_durable(&self, id: Uuid, parts: &[&[u8]]) -> io::Result<()> {
        let path = self.path(id);
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            for p in parts {
                f.write_all(p)?;
            }
            f.sync_data()?;
            File::open(&self.dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&path);
        }
        result
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
