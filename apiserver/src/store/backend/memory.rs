//! The in-memory backend: the same tables as the durable ones, in `BTreeMap`s. For tests, the
//! simulator, and `--store memory` labs; nothing survives the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Backend, BackendResult, Batch};
use crate::store::Revision;

#[derive(Default)]
struct Tables {
    events: BTreeMap<Revision, Vec<u8>>,
    meta: BTreeMap<String, u64>,
}

/// Tables in memory behind one mutex; a batch is applied under it, so it is atomic.
#[derive(Default)]
pub struct MemoryBackend {
    tables: Mutex<Tables>,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a half-applied batch (batches are applied
        // after all checks), so a poisoned lock is still consistent.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Backend for MemoryBackend {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    fn write(&self, batch: Batch, _sync: bool) -> BackendResult<()> {
        let mut t = self.lock();
        for (rev, bytes) in batch.put_events {
            t.events.insert(rev, bytes);
        }
        for rev in batch.delete_events {
            t.events.remove(&rev);
        }
        for (k, v) in batch.meta {
            t.meta.insert(k.to_string(), v);
        }
        Ok(())
    }

    fn sync(&self) -> BackendResult<()> {
        Ok(())
    }

    fn get_event(&self, revision: Revision) -> BackendResult<Option<Vec<u8>>> {
        Ok(self.lock().events.get(&revision).cloned())
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
        let t = self.lock();
        for (rev, bytes) in t.events.range(from..=to) {
            if !f(*rev, bytes)? {
                break;
            }
        }
        Ok(())
    }

    /// A memory store never outlives its process, so it is never format 1; for completeness.
    fn migrate_from_format_1(&self) -> BackendResult<()> {
        self.lock().meta.insert("format".to_string(), 2);
        Ok(())
    }

    fn get_meta(&self, name: &str) -> BackendResult<Option<u64>> {
        Ok(self.lock().meta.get(name).copied())
    }

    fn needs_sync(&self) -> bool {
        false
    }
}
