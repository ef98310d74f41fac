//! redb: two tables (format 1 had a third, `objects`), one write transaction per group commit;
//! `Durability::Immediate` makes the commit return only once it is on disk, `Durability::None`
//! is relaxed mode (made durable by the driver's periodic `sync`). The file is redb's own file
//! backend wrapped in [`Preallocated`], which allocates what redb grows the file by and zeroes
//! fresh chunks before redb's first write into them, so that group commits' fdatasyncs write
//! pages and not filesystem metadata.

use std::ops::Bound;
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
        let db = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .and_then(Preallocated::new)
            .map_err(|e| BackendError::Io(e.to_string()))
            .and_then(|backend| {
                // redb's `create_with_backend` (the only way in for a backend of our own)
                // initializes an empty file as a new database; `create_atomically` never leaves
                // one, so an empty file here was truncated by something else: report it.
                use redb::StorageBackend;
                if backend.len().map_err(|e| BackendError::Io(e.to_string()))? == 0 {
                    return Err(corrupt("an empty file, not a redb store", "file header"));
                }
                redb::Builder::new()
                    .set_cache_size(cache_bytes)
                    .create_with_backend(backend)
                    .map_err(io)
            })
            .map_err(|e| match e {
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

/// redb's own file backend (its file locks included), except that a grown file's blocks are
/// allocated when it grows, and written with zeroes a chunk at a time before redb first writes
/// into them.
///
/// redb grows its file by doubling it (`set_len`, a sparse extension). On ext4 (and XFS) a
/// page written into a hole gets its block allocated at writeback, that is inside the next
/// group commit's fdatasync: the block bitmap, the group descriptor and the inode are written
/// too, each a request of its own to the disk. On this VM's virtio disk each request costs an
/// exit to the hypervisor; `perf` put ~12% of the committer's samples in that notify.
/// - `set_len` allocates the grown range at once (`fallocate`: unwritten extents, which read as
///   zeroes, as redb requires of new bytes). Store bench, 64 durable writers on redb, three
///   rounds alternating: 45.5–46.2k vs 38.6–42.4k creates/s, the committer's CPU 11.5–12.1 vs
///   12.7–15.2 µs per create.
/// - An unwritten extent still costs its first write a conversion (the inode again, in that
///   commit's fdatasync). So `write` first writes zeroes over each `ZERO_CHUNK` it touches
///   that nothing was written into since open (past the file's length at open only: below
///   it, bytes may be live), one conversion per chunk instead of one per page: 1 client
///   ~12% more creates/s, 64 clients the same (see `ZERO_CHUNK`). Zeroing the whole grown
///   range at once instead stalled the commit that grew the file (16 MiB of zeroes; the p99
///   at 64 clients went from ~4.5 to ~8 ms), and zeroing from the highest written offset up
///   stalled the same way when redb wrote near the end.
///
/// Crash safety: zeroes go only where nothing was ever written (past the length at open, in
/// a chunk no write touched since), and the data's own write follows them in the page cache.
#[derive(Debug)]
struct Preallocated {
    inner: redb::backends::FileBackend,
    /// The same open file, for `fallocate` (redb's backend does not lend its own).
    file: std::fs::File,
    /// Which chunks (`ZERO_CHUNK` bytes) past the file's length at open have been written.
    fresh: std::sync::Mutex<Fresh>,
}

impl Preallocated {
    fn new(file: std::fs::File) -> std::io::Result<Preallocated> {
        let ours = file.try_clone()?;
        let len = file.metadata()?.len();
        let inner = redb::backends::FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(Preallocated {
            inner,
            file: ours,
            fresh: std::sync::Mutex::new(Fresh {
                from: len.div_ceil(ZERO_CHUNK),
                written: std::collections::HashSet::new(),
            }),
        })
    }
}

type IoResult<T> = std::io::Result<T>;

/// What `Preallocated::write` zeroes at once. http bench, four rounds rotating the sizes, p99 at
/// 64 clients / creates per second at 1 client: none 4.12–4.88 ms / 1,877–2,075; 64 KiB
/// 3.95–4.77 / 2,035–2,139; 128 KiB 4.01–4.87 / 2,100–2,267; 512 KiB 4.29–5.32 / 2,053–2,139
/// (the flush of 512 KiB of zeroes, ~0.35 ms, lands in one group commit).
const ZERO_CHUNK: u64 = 128 << 10;

/// The chunks `Preallocated::write` zeroes before their first write.
#[derive(Debug)]
struct Fresh {
    /// The first chunk wholly past the file's length at open: the ones before it may hold data.
    from: u64,
    /// Chunks from `from` on that were written since open (so zeroed first).
    written: std::collections::HashSet<u64>,
}

/// What a fresh chunk is written with.
static ZEROES: [u8; ZERO_CHUNK as usize] = [0; ZERO_CHUNK as usize];

type LockResult<T> = std::result::Result<T, redb::BackendError>;

impl redb::StorageBackend for Preallocated {
    fn len(&self) -> IoResult<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> IoResult<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> IoResult<()> {
        let old = self.inner.len()?;
        self.inner.set_len(len)?;
        if len > old {
            // Only a saving: where the filesystem cannot (EOPNOTSUPP) or the disk is short of
            // space, the file stays sparse as redb made it, and its pages are allocated when
            // written, as before.
            let _ = nix::fcntl::fallocate(
                &self.file,
                nix::fcntl::FallocateFlags::empty(),
                old as i64,
                (len - old) as i64,
            );
        }
        Ok(())
    }
    fn sync_data(&self) -> IoResult<()> {
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> IoResult<()> {
        let end = offset + data.len() as u64;
        {
            let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
            let first = (offset / ZERO_CHUNK).max(fresh.from);
            for chunk in first..end.div_ceil(ZERO_CHUNK) {
                if !fresh.written.contains(&chunk) {
                    use std::os::unix::fs::FileExt;
                    let at = chunk * ZERO_CHUNK;
                    // Never past the file's end (that would grow it), unless this write goes
                    // there itself.
                    let to = (at + ZERO_CHUNK).min(self.inner.len()?.max(end));
                    self.file.write_all_at(&ZEROES[..(to - at) as usize], at)?;
                    fresh.written.insert(chunk);
                }
            }
        }
        self.inner.write(offset, data)
    }
    fn close(&self) -> IoResult<()> {
        self.inner.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// The file redb grows has its blocks allocated (`Preallocated`), not holes that the group
    /// commits' fdatasyncs would allocate one by one; and the chunks it zeroes before their
    /// first write never hold data: across reopens (each with a new length at open) every event
    /// reads back as written.
    #[test]
    fn a_grown_store_file_is_allocated_not_sparse_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        let f = std::fs::File::create(&probe).unwrap();
        let can_allocate =
            nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, 1 << 20).is_ok();
        let path = dir.path().join("bonsai.redb");
        let event = |rev: u64| format!("event {rev} ").repeat(150).into_bytes();
        let mut rev = 1;
        for round in 0..3 {
            let backend = RedbBackend::open(&path, 1 << 20).unwrap();
            let start = std::fs::metadata(&path).unwrap().len();
            // Writes until redb has grown its file a few times.
            while std::fs::metadata(&path).unwrap().len() < 4 * start.max(1 << 20) {
                let batch = Batch {
                    put_events: (rev..rev + 64).map(|r| (r, event(r))).collect(),
                    delete_events: Vec::new(),
                    meta: Vec::new(),
                };
                rev += 64;
                backend.write(batch, round == 1).unwrap();
            }
            let m = std::fs::metadata(&path).unwrap();
            if can_allocate {
                assert!(
                    m.blocks() * 512 >= m.len(),
                    "{} bytes long but only {} allocated: sparse",
                    m.len(),
                    m.blocks() * 512
                );
            } else {
                eprintln!("this filesystem has no fallocate: allocation not checked");
            }
            let mut seen = 0;
            backend
                .scan_events(1, rev - 1, &mut |r, bytes| {
                    assert_eq!(bytes, event(r), "event {r} after round {round}");
                    seen += 1;
                    Ok(true)
                })
                .unwrap();
            assert_eq!(seen, rev - 1);
        }
    }
}
