//! redb: two tables (format 1 had a third, `objects`), one write transaction per group commit; `Durability::Immediate` makes the
//! commit return only once it is on disk, `Durability::None` is relaxed mode (made durable by the
//! driver's periodic `sync`).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

use super::{corrupt, Backend, BackendError, BackendResult, Batch};
use crate::store::Revision;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Format 1's objects table (see `super`), dropped when such a store is opened.
const OBJECTS_FORMAT_1: TableDefinition<&[u8], u64> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

pub struct RedbBackend {
    db: Database,
    path: PathBuf,
}

fn io(e: impl Into<redb::Error>) -> BackendError {
    let e: redb::Error = e.into();
    match e {
        redb::Error::Corrupted(msg) => {
            corrupt(format!("redb reports corruption: {msg}"), "redb file")
        }
        other if other.to_string().contains("Not a redb database") => {
            corrupt(format!("not a redb store ({other})"), "file header")
        }
        other => BackendError::Io(other.to_string()),
    }
}

impl RedbBackend {
    /// Opens (or creates) the store file. `cache_bytes` bounds redb's page cache.
    pub fn open(path: &Path, cache_bytes: usize) -> BackendResult<RedbBackend> {
        super::create_atomically(path, |tmp| {
            let db = redb::Database::create(tmp).map_err(io)?;
            let mut tx = db.begin_write().map_err(io)?;
            tx.set_durability(redb::Durability::Immediate)
                .map_err(|e| BackendError::Io(e.to_string()))?;
            {
                tx.open_table(EVENTS).map_err(io)?;
                tx.open_table(META).map_err(io)?;
            }
            tx.commit().map_err(io)
        })?;
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .open(path)
            .map_err(|e| match io(e) {
                BackendError::Io(msg) => BackendError::Io(format!(
                    "cannot open redb store at {}: {msg}",
                    path.display()
                )),
                c => c,
            })?;
        // Create the tables so readers never see them missing.
        let tx = db.begin_write().map_err(io)?;
        {
            tx.open_table(EVENTS).map_err(io)?;
            tx.open_table(META).map_err(io)?;
        }
        tx.commit().map_err(io)?;
        Ok(RedbBackend {
            db,
            path: path.to_path_buf(),
        })
    }
}

impl Backend for RedbBackend {
    fn describe(&self) -> String {
        format!("redb at {}", self.path.display())
    }

    fn write(&self, batch: Batch, sync: bool) -> BackendResult<()> {
        let mut tx = self.db.begin_write().map_err(io)?;
        tx.set_durability(if sync {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })
        .map_err(|e| BackendError::Io(e.to_string()))?;
        {
            let mut events = tx.open_table(EVENTS).map_err(io)?;
            for (rev, bytes) in &batch.put_events {
                events.insert(*rev, bytes.as_slice()).map_err(io)?;
            }
            for rev in &batch.delete_events {
                events.remove(*rev).map_err(io)?;
            }
            let mut meta = tx.open_table(META).map_err(io)?;
            for (name, v) in &batch.meta {
                meta.insert(*name, *v).map_err(io)?;
            }
        }
        tx.commit().map_err(io)
    }

    fn sync(&self) -> BackendResult<()> {
        let mut tx = self.db.begin_write().map_err(io)?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(|e| BackendError::Io(e.to_string()))?;
        tx.commit().map_err(io)
    }

    fn get_event(&self, revision: Revision) -> BackendResult<Option<Vec<u8>>> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(EVENTS).map_err(io)?;
        Ok(t.get(revision).map_err(io)?.map(|v| v.value().to_vec()))
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
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(EVENTS).map_err(io)?;
        for item in t.range(from..=to).map_err(io)? {
            let (k, v) = item.map_err(io)?;
            if !f(k.value(), v.value())? {
                break;
            }
        }
        Ok(())
    }

    fn migrate_from_format_1(&self) -> BackendResult<()> {
        let mut tx = self.db.begin_write().map_err(io)?;
        tx.set_durability(redb::Durability::Immediate)
            .map_err(|e| BackendError::Io(e.to_string()))?;
        tx.delete_table(OBJECTS_FORMAT_1).map_err(io)?;
        tx.open_table(META)
            .map_err(io)?
            .insert("format", 2)
            .map_err(io)?;
        tx.commit().map_err(io)
    }

    fn get_meta(&self, name: &str) -> BackendResult<Option<u64>> {
        let tx = self.db.begin_read().map_err(io)?;
        let t = tx.open_table(META).map_err(io)?;
        Ok(t.get(name).map_err(io)?.map(|v| v.value()))
    }
}
