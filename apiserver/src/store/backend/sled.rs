//! sled 0.34: one tree, keys prefixed by table (`e` + revision BE, `m` + name; format 1 also had
//! `o` + object key), so one `apply_batch` is one atomic write.
//!
//! Durability: sled's own `flush` is not enough. On Linux it ends with `sync_file_range` on its
//! log, which neither flushes the device's write cache nor the file's metadata (its size, when
//! the log grew), and it never fsyncs the blob files it writes for large pages nor the `blobs`
//! directory (sled 0.34.7 `pagecache/iobuf.rs`, `pagecache/blob_io.rs`). It survives SIGKILL
//! (the page cache does), not a power cut. So a durable group commit here is: `flush`, then
//! `fdatasync` of sled's `db` file, then `fsync` of every blob file not yet synced and of the
//! `blobs` directory.

use std::path::{Path, PathBuf};

use super::{corrupt, rev_bytes, rev_from, Backend, BackendError, BackendResult, Batch};
use crate::store::Revision;

pub struct SledBackend {
    db: sled::Db,
    path: PathBuf,
    /// Our own handle on sled's data file, to fdatasync it (see the module comment).
    db_file: std::fs::File,
    /// Blob files already fsynced.
    synced_blobs: std::sync::Mutex<std::collections::BTreeSet<std::ffi::OsString>>,
}

fn io(e: sled::Error) -> BackendError {
    match e {
        sled::Error::Corruption { at, bt: _ } => corrupt(
            "sled reports corruption".to_string(),
            format!(
                "sled log, {}",
                at.map(|a| format!("{a:?}"))
                    .unwrap_or_else(|| "unknown offset".into())
            ),
        ),
        other => BackendError::Io(other.to_string()),
    }
}

fn ekey(rev: Revision) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&rev_bytes(rev));
    k
}

impl SledBackend {
    /// Opens (or creates) the store directory. `cache_bytes` bounds sled's page cache.
    pub fn open(path: &Path, cache_bytes: usize) -> BackendResult<SledBackend> {
        super::create_atomically(path, |tmp| {
            let db = sled::Config::new().path(tmp).open().map_err(io)?;
            db.flush().map_err(io)?;
            // `fdatasync` what sled's flush leaves unsynced, then let it go before the rename.
            for entry in std::fs::read_dir(tmp)
                .map_err(|e| BackendError::Io(e.to_string()))?
                .flatten()
            {
                if entry.path().is_file() {
                    std::fs::File::open(entry.path())
                        .and_then(|f| f.sync_all())
                        .map_err(|e| BackendError::Io(e.to_string()))?;
                }
            }
            drop(db);
            Ok(())
        })?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes as u64)
            // Durability comes from our own flush per group commit; sled's background flush
            // only shortens the relaxed mode's loss window.
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match e {
                sled::Error::Corruption { .. } => io(e),
                other => BackendError::Io(format!(
                    "cannot open sled store at {}: {other}",
                    path.display()
                )),
            })?;
        let db_file = std::fs::File::open(path.join("db")).map_err(|e| {
            BackendError::Io(format!("cannot open {}: {e}", path.join("db").display()))
        })?;
        let backend = SledBackend {
            db,
            path: path.to_path_buf(),
            db_file,
            synced_blobs: Default::default(),
        };
        backend.fsync_files()?;
        Ok(backend)
    }

    /// What `flush` leaves undone: fdatasync the data file, fsync new blob files and their
    /// directory.
    fn fsync_files(&self) -> BackendResult<()> {
        let err = |what: &str, e: std::io::Error| {
            BackendError::Io(format!(
                "fsync of {what} in {} failed: {e}",
                self.path.display()
            ))
        };
        self.db_file.sync_data().map_err(|e| err("db", e))?;
        let blobs = self.path.join("blobs");
        let Ok(dir) = std::fs::read_dir(&blobs) else {
            return Ok(());
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut new = false;
        for entry in dir.flatten() {
            let name = entry.file_name();
            if synced.contains(&name) {
                continue;
            }
            match std::fs::File::open(entry.path()) {
                Ok(f) => f.sync_all().map_err(|e| err("a blob", e))?,
                // sled removes blobs it no longer needs; a vanished one needs no sync.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(err("a blob", e)),
            }
            synced.insert(name);
            new = true;
        }
        if new {
            std::fs::File::open(&blobs)
                .and_then(|d| d.sync_all())
                .map_err(|e| err("blobs/", e))?;
        }
        Ok(())
    }
}

impl Backend for SledBackend {
    fn describe(&self) -> String {
        format!("sled at {}", self.path.display())
    }

    fn write(&self, batch: Batch, sync: bool) -> BackendResult<()> {
        let mut b = sled::Batch::default();
        for (rev, bytes) in batch.put_events {
            b.insert(&ekey(rev)[..], bytes);
        }
        for rev in batch.delete_events {
            b.remove(&ekey(rev)[..]);
        }
        for (name, v) in batch.meta {
            let mut key = vec![b'm'];
            key.extend_from_slice(name.as_bytes());
            b.insert(key, &v.to_be_bytes()[..]);
        }
        self.db.apply_batch(b).map_err(io)?;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&self) -> BackendResult<()> {
        self.db.flush().map_err(io)?;
        self.fsync_files()
    }

    fn get_event(&self, revision: Revision) -> BackendResult<Option<Vec<u8>>> {
        Ok(self.db.get(ekey(revision)).map_err(io)?.map(|v| v.to_vec()))
    }

    fn scan_events(
        &self,
        from: Revision,
        to: Revision,
        f: &mut dyn FnMut(Revision, &[u8]) -> BackendResult<bool>,
    ) -> BackendResult<()> {
        if from > to {
            return Ok(());
        }
        for item in self.db.range(ekey(from)..=ekey(to)) {
            let (k, v) = item.map_err(io)?;
            let rev = rev_from(&k[1..], "sled events")?;
            if !f(rev, &v)? {
                break;
            }
        }
        Ok(())
    }

    fn migrate_from_format_1(&self) -> BackendResult<()> {
        let mut b = sled::Batch::default();
        for item in self.db.scan_prefix(b"o") {
            b.remove(item.map_err(io)?.0);
        }
        b.insert(&b"mformat"[..], &2u64.to_be_bytes()[..]);
        self.db.apply_batch(b).map_err(io)?;
        self.sync()
    }

    /// The driver's flusher thread applies, flushes and finishes each group while its writer
    /// prepares the next one. (Measured before, `benches/store.rs`: with only sled's `flush`
    /// overlapped — running while the writer applied the next batch — sled held ~180 B more
    /// per object and creates/s did not rise, the writer's CPU per write being the limit. One
    /// thread applying and flushing in turn holds what the inline writer held.)
    fn overlap_flush(&self) -> bool {
        true
    }

    fn get_meta(&self, name: &str) -> BackendResult<Option<u64>> {
        let mut key = vec![b'm'];
        key.extend_from_slice(name.as_bytes());
        match self.db.get(key).map_err(io)? {
            None => Ok(None),
            Some(v) => rev_from(&v, &format!("meta table, key {name}")).map(Some),
        }
    }
}
