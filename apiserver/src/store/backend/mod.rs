//! Where the log lives: the small [`Backend`] trait (two ordered byte tables and one atomic batch
//! write) and [`Log`], the backend-independent logic on top of it (encoding through `codec`,
//! validation at open, retention, history, state at a revision).
//!
//! Tables:
//! - `events`: revision → envelope (see `codec`), the log. Every current object is its key's last
//!   event (retention never drops an event that is still some key's current version), so the
//!   current state is derived from the log at open: nothing beside it can disagree with it.
//! - `meta`:   `format` (= 2), `compacted` (retention dropped events at or below it, except each
//!   key's version that was current at that revision).
//!
//! Format 1 also kept an `objects` table (key → revision of its current version), written with
//! every event. `Log::load` already derived the same from its scan of the log, so the table
//! only doubled each group commit's writes (with sled, one more tree insert per event, at a
//! random place in the tree). Opening a format-1 store drops it and marks the store format 2
//! in one atomic, durable write (`Backend::migrate_from_format_1`).

mod memory;
#[cfg(feature = "server")]
mod redb;
#[cfg(feature = "server")]
mod sled;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::Value;

pub use self::memory::MemoryBackend;
#[cfg(feature = "server")]
pub use self::redb::RedbBackend;
#[cfg(feature = "server")]
pub use self::sled::SledBackend;

use super::codec::{self, CodecError};
use super::core::Committed;
use super::{Event, EventType, Key, Revision, StoreError};

/// A backend failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The underlying library or the disk failed.
    #[error("{0}")]
    Io(String),
    /// The data on disk is damaged or inconsistent: what and where.
    #[error("{what} (at {location})")]
    Corrupt { what: String, location: String },
}

pub type BackendResult<T> = std::result::Result<T, BackendError>;

/// One atomic write: all of it is applied, or none of it.
#[derive(Debug, Default)]
pub struct Batch {
    pub put_events: Vec<(Revision, Vec<u8>)>,
    pub delete_events: Vec<Revision>,
    pub meta: Vec<(&'static str, u64)>,
}

impl Batch {
    /// How many events it appends.
    pub fn events(&self) -> usize {
        self.put_events.len()
    }
}

/// The storage engine under the log: ordered tables of bytes and one atomic batch write.
pub trait Backend: Send + Sync {
    /// For messages: `redb at /var/lib/bonsai/store.redb`.
    fn describe(&self) -> String;
    /// Applies the batch atomically; with `sync`, returns only once it is on disk.
    fn write(&self, batch: Batch, sync: bool) -> BackendResult<()>;
    /// Makes every earlier write durable (for relaxed mode's periodic flush).
    fn sync(&self) -> BackendResult<()>;
    fn get_event(&self, revision: Revision) -> BackendResult<Option<Vec<u8>>>;
    /// Calls `f` for each event with `from <= revision <= to`, ascending; stops at `Ok(false)`.
    fn scan_events(
        &self,
        from: Revision,
        to: Revision,
        f: &mut dyn FnMut(Revision, &[u8]) -> BackendResult<bool>,
    ) -> BackendResult<()>;
    /// Format 1 → 2: removes format 1's `objects` table and sets `format` to 2, in one atomic
    /// write that is on disk when this returns (a crash leaves format 1 whole, or format 2).
    fn migrate_from_format_1(&self) -> BackendResult<()>;
    fn get_meta(&self, name: &str) -> BackendResult<Option<u64>>;
    /// Whether `write(.., sync: true)` / `sync` do anything: `false` for the memory backend, whose
    /// writes are as durable as they get once applied (the driver then needs no flush stage).
    fn needs_sync(&self) -> bool {
        true
    }
}

/// What `Log::load` found: the state to restore the core from.
#[derive(Debug)]
pub struct Loaded {
    pub revision: Revision,
    pub compacted: Revision,
    /// Key, JSON text and revision of every current object.
    pub objects: Vec<(Key, Arc<str>, Revision)>,
    /// The most recent events (contiguous, ending at `revision`) to seed the watch window.
    pub tail: Vec<Committed>,
    pub retained_events: u64,
}

const FORMAT_VERSION: u64 = 2;

/// The event log over a backend.
pub struct Log {
    backend: Box<dyn Backend>,
    compacted: AtomicU64,
    retained: AtomicU64,
}

fn corrupt(what: impl Into<String>, location: impl Into<String>) -> BackendError {
    BackendError::Corrupt {
        what: what.into(),
        location: location.into(),
    }
}

fn decode_err(rev: Revision, e: CodecError) -> BackendError {
    corrupt(
        format!("event at revision {rev} is damaged: {e}"),
        format!("events table, revision {rev}"),
    )
}

impl Log {
    pub fn new(backend: Box<dyn Backend>) -> Log {
        Log {
            backend,
            compacted: AtomicU64::new(0),
            retained: AtomicU64::new(0),
        }
    }

    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Retention dropped events at or below this revision (0: nothing dropped).
    pub fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }

    /// How many events the log holds.
    pub fn retained_events(&self) -> u64 {
        self.retained.load(Ordering::Acquire)
    }

    /// `Some(r)`: events before `r` may be missing (see [`super::History`]).
    pub fn truncated_before(&self) -> Option<Revision> {
        let c = self.compacted();
        (c > 0).then_some(c + 1)
    }

    /// Reads the whole store, checks the log (each event where its revision says, no gaps above
    /// the compaction point, every envelope intact), and returns the state derived from it.
    /// `tail_since` (RFC 3339) and `tail_max` bound the events loaded for the watch window.
    pub fn load(&self, tail_since: &str, tail_max: usize) -> BackendResult<Loaded> {
        let b = &self.backend;
        let mut has_any = false;
        b.scan_events(0, Revision::MAX, &mut |_, _| {
            has_any = true;
            Ok(false)
        })?;
        match b.get_meta("format")? {
            Some(FORMAT_VERSION) => {}
            // Format 2 reads its events as they are; its objects table is what step 2 derives.
            Some(1) => b.migrate_from_format_1()?,
            Some(v) => {
                return Err(corrupt(
                    format!("unknown store format {v} (this bonsai reads format {FORMAT_VERSION})"),
                    "meta table, key format",
                ))
            }
            None if has_any => {
                return Err(corrupt(
                    "the log has events but the format marker is missing",
                    "meta table, key format",
                ))
            }
            None => b.write(
                Batch {
                    meta: vec![("format", FORMAT_VERSION)],
                    ..Batch::default()
                },
                true,
            )?,
        }
        let compacted = b.get_meta("compacted")?.unwrap_or(0);

        // 1. Every header: revisions match their slots, the log is gapless above `compacted`,
        //    and the last event of every key is known.
        let mut latest: BTreeMap<Key, (Revision, EventType)> = BTreeMap::new();
        let mut last: Revision = 0;
        let mut count = 0u64;
        let mut tail: VecDeque<Revision> = VecDeque::new();
        b.scan_events(0, Revision::MAX, &mut |rev, bytes| {
            let h = codec::decode_header(bytes).map_err(|e| decode_err(rev, e))?;
            if h.revision != rev {
                return Err(corrupt(
                    format!(
                        "event stored under revision {rev} says it is revision {}",
                        h.revision
                    ),
                    format!("events table, revision {rev}"),
                ));
            }
            if rev > compacted + 1 && last != rev - 1 {
                return Err(corrupt(
                    format!(
                        "the log has a gap: revisions {}..={} are missing",
                        last.max(compacted) + 1,
                        rev - 1
                    ),
                    format!("events table, before revision {rev}"),
                ));
            }
            count += 1;
            last = rev;
            latest.insert(h.key(), (rev, h.event_type()));
            if rev > compacted {
                if h.time.as_str() < tail_since {
                    tail.clear();
                } else {
                    tail.push_back(rev);
                    if tail.len() > tail_max {
                        tail.pop_front();
                    }
                }
            }
            Ok(true)
        })?;
        let revision = last.max(compacted);

        // 2. The current objects: every key whose last event is not a deletion, read whole (its
        //    body's CRC checked; step 1 read headers only).
        let mut objects = Vec::new();
        for (key, (rev, t)) in latest {
            if t != EventType::Deleted {
                objects.push((key, self.read_raw(rev)?.1, rev));
            }
        }

        // 3. The window seed, with each event's previous version (all as JSON text).
        let mut tail_events: Vec<Committed> = Vec::with_capacity(tail.len());
        let mut seen: BTreeMap<Key, Arc<str>> = BTreeMap::new();
        for rev in tail {
            let (h, json) = self.read_raw(rev)?;
            let key = h.key();
            let prev = match (
                seen.get(&key).filter(|_| h.prev_revision.is_some()),
                h.prev_revision,
            ) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(pr)) => Some(
                    self.read_raw(pr)
                        .map_err(|e| match e {
                            BackendError::Corrupt { what, location } => corrupt(
                                format!("previous version of event {rev} (revision {pr}): {what}"),
                                location,
                            ),
                            other => other,
                        })?
                        .1,
                ),
                (None, None) => None,
            };
            if h.event_type() == EventType::Deleted {
                seen.remove(&key);
            } else {
                seen.insert(key.clone(), json.clone());
            }
            let at_ms = super::parse_rfc3339(&h.time).unwrap_or(0) * 1000;
            tail_events.push(Committed {
                revision: rev,
                event_type: h.event_type(),
                key: Arc::new(key),
                json,
                prev,
                prev_revision: h.prev_revision,
                actor: Arc::from(h.actor.as_str()),
                at_ms,
            });
        }

        self.compacted.store(compacted, Ordering::Release);
        self.retained.store(count, Ordering::Release);
        Ok(Loaded {
            revision,
            compacted,
            objects,
            tail: tail_events,
            retained_events: count,
        })
    }

    fn read_raw(&self, rev: Revision) -> BackendResult<(codec::Header, Arc<str>)> {
        let bytes = self.backend.get_event(rev)?.ok_or_else(|| {
            corrupt(
                format!("event at revision {rev} is missing"),
                format!("events table, revision {rev}"),
            )
        })?;
        codec::decode_committed(&bytes).map_err(|e| decode_err(rev, e))
    }

    fn read_event(&self, rev: Revision) -> BackendResult<(Event, Option<Revision>)> {
        let bytes = self.backend.get_event(rev)?.ok_or_else(|| {
            corrupt(
                format!("event at revision {rev} is missing"),
                format!("events table, revision {rev}"),
            )
        })?;
        codec::decode_event(&bytes).map_err(|e| decode_err(rev, e))
    }

    /// Appends a group of committed events, atomically.
    pub fn append(&self, batch: &[Committed], sync: bool) -> BackendResult<()> {
        self.write(Self::encode(batch), sync)
    }

    /// The backend batch that appends `batch` (see [`Log::append`]): its events encoded. Pure
    /// CPU work, done by the thread that writes the batch (the driver's committer), so that its
    /// buffers are freed where they were allocated.
    pub fn encode(batch: &[Committed]) -> Batch {
        let mut b = Batch {
            put_events: Vec::with_capacity(batch.len()),
            ..Batch::default()
        };
        let mut time = (u64::MAX, String::new());
        for c in batch {
            if c.at_ms / 1000 != time.0 {
                time = (c.at_ms / 1000, c.time());
            }
            b.put_events
                .push((c.revision, codec::encode_event_at(c, &time.1)));
        }
        b
    }

    /// Writes a batch from [`Log::encode`] (of one group or of several, in revision order) in
    /// one atomic transaction; with `sync`, returns once it is on disk.
    pub fn write(&self, batch: Batch, sync: bool) -> BackendResult<()> {
        let n = batch.events() as u64;
        self.backend.write(batch, sync)?;
        self.retained.fetch_add(n, Ordering::AcqRel);
        Ok(())
    }

    /// See [`Backend::needs_sync`].
    pub fn needs_sync(&self) -> bool {
        self.backend.needs_sync()
    }

    pub fn sync(&self) -> BackendResult<()> {
        self.backend.sync()
    }

    /// Drops events at or below `upto`, except each key's version current at `upto` (so state at
    /// any revision from `upto` on can still be rebuilt). Returns how many were dropped.
    pub fn compact(&self, upto: Revision, sync: bool) -> BackendResult<u64> {
        let mut latest: BTreeMap<Key, (Revision, EventType)> = BTreeMap::new();
        let mut all = Vec::new();
        self.backend.scan_events(0, upto, &mut |rev, bytes| {
            let h = codec::decode_header(bytes).map_err(|e| decode_err(rev, e))?;
            latest.insert(h.key(), (rev, h.event_type()));
            all.push(rev);
            Ok(true)
        })?;
        let keep: std::collections::BTreeSet<Revision> = latest
            .values()
            .filter(|(_, t)| *t != EventType::Deleted)
            .map(|(r, _)| *r)
            .collect();
        let delete_events: Vec<Revision> = all.into_iter().filter(|r| !keep.contains(r)).collect();
        let n = delete_events.len() as u64;
        self.backend.write(
            Batch {
                delete_events,
                meta: vec![("compacted", upto)],
                ..Batch::default()
            },
            sync,
        )?;
        self.compacted
            .store(upto.max(self.compacted()), Ordering::Release);
        self.retained.fetch_sub(n, Ordering::AcqRel);
        Ok(n)
    }

    /// Every retained event of `key`, oldest first.
    pub fn history(&self, key: &Key) -> BackendResult<Vec<Event>> {
        self.history_through(key, Revision::MAX)
    }

    /// [`Log::history`] up to revision `through`: the store's committed revision, as the
    /// backend may already hold the events of groups being flushed (not acknowledged yet).
    pub fn history_through(&self, key: &Key, through: Revision) -> BackendResult<Vec<Event>> {
        let mut revs = Vec::new();
        self.backend.scan_events(0, through, &mut |rev, bytes| {
            let h = codec::decode_header(bytes).map_err(|e| decode_err(rev, e))?;
            if h.group == key.group
                && h.resource == key.resource
                && h.namespace == key.namespace
                && h.name == key.name
            {
                revs.push(rev);
            }
            Ok(true)
        })?;
        revs.into_iter()
            .map(|r| self.read_event(r).map(|(e, _)| e))
            .collect()
    }

    /// The objects at `revision` (which must not be below `compacted`).
    pub fn state_at(&self, revision: Revision) -> Result<BTreeMap<Key, Arc<Value>>, StoreError> {
        let compacted = self.compacted();
        if revision < compacted {
            return Err(StoreError::Expired {
                requested: revision,
                oldest: compacted,
            });
        }
        let mut latest: BTreeMap<Key, (Revision, EventType)> = BTreeMap::new();
        self.backend
            .scan_events(0, revision, &mut |rev, bytes| {
                let h = codec::decode_header(bytes).map_err(|e| decode_err(rev, e))?;
                latest.insert(h.key(), (rev, h.event_type()));
                Ok(true)
            })
            .map_err(|e| self.store_error(e))?;
        let mut out = BTreeMap::new();
        for (key, (rev, t)) in latest {
            if t != EventType::Deleted {
                let (e, _) = self.read_event(rev).map_err(|e| self.store_error(e))?;
                out.insert(key, e.object);
            }
        }
        Ok(out)
    }

    /// A backend error as the store reports it.
    pub fn store_error(&self, e: BackendError) -> StoreError {
        match e {
            BackendError::Io(msg) => StoreError::Backend(format!("{}: {msg}", self.describe())),
            BackendError::Corrupt { what, location } => StoreError::Corrupt {
                path: self.describe(),
                what,
                location,
            },
        }
    }
}

/// Creates a new store at `path` so that a crash during creation leaves no half-made store:
/// `init` builds it under `<path>.creating`, which is then renamed into place and the rename
/// made durable. A stale `.creating` from an earlier crash is removed first (it never held an
/// acknowledged write). An existing `path` is left alone.
#[cfg(feature = "server")]
pub(crate) fn create_atomically(
    path: &std::path::Path,
    init: impl FnOnce(&std::path::Path) -> BackendResult<()>,
) -> BackendResult<()> {
    let io = |what: &str, p: &std::path::Path, e: std::io::Error| {
        BackendError::Io(format!("cannot {what} {}: {e}", p.display()))
    };
    if path.exists() {
        return Ok(());
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| io("create", &parent, e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".creating");
    let tmp = std::path::PathBuf::from(tmp);
    if tmp.is_dir() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io("remove", &tmp, e))?;
    } else if tmp.exists() {
        std::fs::remove_file(&tmp).map_err(|e| io("remove", &tmp, e))?;
    }
    init(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename into place", path, e))?;
    std::fs::File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("fsync", &parent, e))
}

/// Big-endian revision bytes, so that byte order is revision order.
#[cfg(feature = "server")]
pub(crate) fn rev_bytes(rev: Revision) -> [u8; 8] {
    rev.to_be_bytes()
}

#[cfg(feature = "server")]
pub(crate) fn rev_from(bytes: &[u8], location: &str) -> BackendResult<Revision> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        corrupt(
            format!("a revision is {} bytes, not 8", bytes.len()),
            location,
        )
    })?;
    Ok(Revision::from_be_bytes(arr))
}
