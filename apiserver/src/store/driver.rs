//! [`Store`]: the handle everyone uses, the committer thread that makes groups of writes
//! durable, and the watch fan-out.
//!
//! A write is prepared on the writer's own thread (a request handler's), under the core's lock:
//! preconditions are checked and the revision assigned there — a rejected write is answered at
//! once —, and the prepared write joins the queue. The core keeps prepared writes apart from
//! committed ones: readers and watchers see none of them yet. The committer thread
//! (`bonsai-store-commit`):
//! 1. takes every write queued (up to `max_batch`): that is the group. Durable mode on a disk
//!    first lets the group fill to a useful size ([`gather`]: half the writers recently
//!    outstanding, 2 ms at most, not at all for a lone writer); relaxed mode on a disk, where no
//!    flush makes the next group gather, waits (at most `RELAXED_GATHER`, 200 µs) until as many
//!    writes are queued as the last group had (up to 64) — those writers are about to come
//!    back;
//! 2. encodes the group's events and writes them to the backend in one transaction, and in
//!    durable mode flushes it. Meanwhile the writers go on preparing and queueing: the next
//!    group is what arrives during this one's write and flush;
//! 3. finishes the group: commits it in the core (in revision order, through its last
//!    revision; writes prepared after it stay prepared), hands each event to every watcher that
//!    sees it ([`publish`]), and only then answers its writers. Nothing is acknowledged — or
//!    visible to readers and watchers — before the flush that covers it.
//!
//! Preparing on the writers' threads spreads the core's CPU work over both cores and needs no
//! thread hand-off per write; the committer wakes only when the queue was empty (or a gathering
//! group reached its size). It replaced a writer thread fed by a channel, with a flusher thread
//! behind it and at most two groups in flight: at the priority the store's threads need (see
//! [`raise_priority`]) that writer took each group as soon as it could, and groups stayed a
//! dozen writes at 256 writers. One thread writes the groups to the backend (log retention's
//! rare compaction aside), so sled never flushes while it applies a group (which made it hold
//! more memory per object), and redb commits each group in one durable transaction. The backend
//! holds a group's events before it is acknowledged, so `history` reads the log only up to the
//! committed revision.
//!
//! Relaxed mode acknowledges a group once its backend transaction committed, without a flush,
//! and makes it durable within about a second: a sync thread (`bonsai-store-sync`) syncs the
//! backend once a second if anything was appended since its last sync, while the committer goes
//! on (sled flushes concurrently with appends; redb's sync takes its turn as a write
//! transaction). A crash may lose the writes acknowledged in the last second or so, never part
//! of one (each group is one atomic transaction). Closing the store syncs.
//!
//! The committer and the syncer are plain threads, not tokio tasks: the backends block on
//! fdatasync, and the store must work from any runtime (or none: `Store::open` is
//! synchronous). A writer only takes the core's lock, briefly, and never blocks on the disk.
//! Between groups the committer sends bookmarks, ages the watch window and applies log
//! retention.
//!
//! # Watch fan-out
//! Each committed event becomes one shared [`Shared`]-side `Entry` (the committed event, its
//! parsed object, its time, lazily the parsed previous version). Publishing hands every watcher
//! that sees the event an `Arc` of it plus how it sees it (`Seen`: as is, or ADDED/DELETED for
//! selector transitions) — a pointer push into the watcher's bounded queue, then one wake-up per
//! watcher and group. Nothing is encoded, cloned or allocated per watcher on the writer's side;
//! the watcher's own task turns the entry into its [`Event`](super::Event) when it reads it.
//! A watcher whose queue is full (`watcher_buffer` items) is cut off: it reads what it has,
//! then `Closed` (it resumes from the last revision it saw). Writers never wait for watchers,
//! and memory is bounded by `watcher_buffer` pointers per watcher.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::oneshot;

use super::backend::{Backend, BackendError, Log, MemoryBackend, RedbBackend, SledBackend};
use super::core::{
    left_selection, parse, preserialize, resource_version_of, Committed, Filter, Preserialized,
    Seen, StoreCore, Views, Write, WriteContext,
};
use super::{
    rfc3339, BackendKind, Durability, Event, EventType, History, Key, ListQuery, ListResult,
    Precondition, Result, Revision, StateAt, StoreConfig, StoreError, WatchItem, WatchQuery,
};

/// A write prepared against the core (its revision assigned), waiting for the committer.
struct Accepted {
    reply: oneshot::Sender<Result<Written>>,
    /// The event's object, parsed (for watchers).
    object: Arc<Value>,
    written: Written,
    committed: Committed,
}

/// What the store answers a write with: the result (create/update: the stored object; delete:
/// the last state) and, for a create or update, the exact JSON text it committed for it — the
/// bytes GET and watch send — so an API response need not serialize the object again.
pub struct Written {
    pub object: Arc<Value>,
    pub json: Option<Arc<str>>,
}

/// One committed event as every watcher shares it.
struct Entry {
    committed: Committed,
    /// The event's object, parsed (the writer had it).
    object: Arc<Value>,
    /// The key's previous version, parsed by the first one who needs it (selector transitions).
    prev: OnceLock<Option<Arc<Value>>>,
    /// The previous version with the event's resourceVersion (an object leaving a selection).
    left: OnceLock<Arc<Value>>,
    /// RFC 3339, formatted once.
    time: String,
    /// When it was handed to the watchers (for commit → receipt latency).
    published: Instant,
}

impl Entry {
    fn prev(&self) -> Option<&Arc<Value>> {
        self.prev
            .get_or_init(|| self.committed.prev.as_deref().map(parse))
            .as_ref()
    }

    fn event(&self, seen: Seen) -> Event {
        let c = &self.committed;
        let (event_type, object) = match seen {
            Seen::As(t) => (t, self.object.clone()),
            Seen::LeftSelection => (
                EventType::Deleted,
                self.left
                    .get_or_init(|| {
                        left_selection(
                            self.prev().expect("left the selection, so prev exists"),
                            c.revision,
                        )
                    })
                    .clone(),
            ),
        };
        Event {
            revision: c.revision,
            event_type,
            key: (*c.key).clone(),
            object,
            actor: c.actor.to_string(),
            time: self.time.clone(),
        }
    }
}

/// What waits in a watcher's queue.
enum Item {
    Event(Arc<Entry>, Seen),
    Bookmark(Revision),
}

/// A watcher's queue, shared between the publisher and the watcher's task.
#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    /// The task waiting for items.
    waker: Option<Waker>,
    /// Cut off (too slow) or the store closed: the items left are delivered, then `Closed`.
    closed: Option<String>,
    /// The [`Watcher`] was dropped: the publisher forgets the slot when it next delivers to it.
    dropped: bool,
}

struct Slot {
    filter: Filter,
    /// Events at or below this revision are not delivered (a watch from a future revision
    /// starts there, as kube-apiserver's does).
    after: Revision,
    queue: Mutex<Queue>,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned queue is still a consistent queue.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Inner {
    core: StoreCore,
    /// Writes prepared against the core, in revision order, that the committer has not taken.
    queue: VecDeque<Accepted>,
    /// The committer waits for `work`: a writer that makes the queue `wake_at` long wakes it.
    waiting: bool,
    wake_at: usize,
    /// The last [`Store`] handle is gone: the committer finishes what is queued, then stops.
    closing: bool,
    /// Writes in the group the committer is writing (taken from `queue`, not answered yet).
    committing: usize,
    /// The most writes outstanding (`queue` + `committing`) since the committer last took a
    /// group: how many writers keep the store busy (see [`gather`]).
    peak: usize,
}

struct Shared {
    inner: Mutex<Inner>,
    /// The registered watchers. Lock order: `inner`, then `watchers` (a committer takes
    /// `watchers` before it lets go of `inner`, a new watch takes both: no gap, no duplicate).
    watchers: Mutex<Vec<Arc<Slot>>>,
    log: Log,
    config: StoreConfig,
    /// Set when a backend write failed: the store then refuses writes (reads go on).
    failed: Mutex<Option<String>>,
    /// Signalled (with `inner`'s lock) when a write is queued for a waiting committer, or the
    /// store closes.
    work: Condvar,
    /// Relaxed mode: writes were appended since the sync thread last looked.
    unsynced: AtomicBool,
    /// Group commits written, flushes and writes committed (for `writes per flush`).
    groups: AtomicU64,
    flushes: AtomicU64,
    writes: AtomicU64,
}

/// Counters of the committer since open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Backend transactions (group commits) that committed writes.
    pub groups: u64,
    /// Durable mode: flushes (fdatasync), one per group (the memory backend counts its groups
    /// too). Relaxed mode: the periodic syncs.
    pub flushes: u64,
    /// Writes committed.
    pub writes: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The core asserts its invariants before mutating; a panic in a reader leaves it intact.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_watchers(&self) -> MutexGuard<'_, Vec<Arc<Slot>>> {
        self.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The store handle: cheap to clone, `Send + Sync`. Dropping the last clone stops the committer
/// (after it committed what was queued) and closes every watcher.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    _handles: Arc<Handles>,
}

/// Shared by the [`Store`] handles only (the committer holds `Shared`): its drop is the last
/// handle's.
struct Handles(Arc<Shared>);

impl Drop for Handles {
    fn drop(&mut self) {
        self.0.lock().closing = true;
        self.0.work.notify_all();
    }
}

/// A watch: the matching events after its start, in order, each once, then live events.
pub struct Watcher {
    backlog: VecDeque<WatchItem>,
    slot: Arc<Slot>,
    /// Items taken from the slot's queue in one go (the queue's buffer and this one are swapped,
    /// so neither side allocates in steady state).
    local: VecDeque<Item>,
    done: bool,
    published: Option<Instant>,
}

impl Watcher {
    fn item(&mut self, item: Item) -> WatchItem {
        match item {
            Item::Bookmark(r) => WatchItem::Bookmark(r),
            Item::Event(entry, seen) => {
                self.published = Some(entry.published);
                WatchItem::Event(entry.event(seen))
            }
        }
    }

    /// Moves what the publisher queued into `local`; `Err(reason)` once cut off and drained.
    fn refill(&mut self, waker: Option<&Waker>) -> std::result::Result<bool, String> {
        let mut q = self.slot.lock();
        if !q.items.is_empty() {
            std::mem::swap(&mut q.items, &mut self.local);
            return Ok(true);
        }
        if let Some(reason) = &q.closed {
            return Err(reason.clone());
        }
        if let Some(w) = waker {
            match &q.waker {
                Some(old) if old.will_wake(w) => {}
                _ => q.waker = Some(w.clone()),
            }
        }
        Ok(false)
    }

    /// The next item; after `Closed(..)` it returns `None`. Cancel-safe (items already taken
    /// from the queue stay in the watcher).
    pub async fn next(&mut self) -> Option<WatchItem> {
        if let Some(item) = self.backlog.pop_front() {
            return Some(item);
        }
        if self.done {
            return None;
        }
        std::future::poll_fn(|cx| {
            if let Some(item) = self.local.pop_front() {
                return Poll::Ready(Some(self.item(item)));
            }
            match self.refill(Some(cx.waker())) {
                Ok(true) => {
                    let item = self.local.pop_front().expect("refilled");
                    Poll::Ready(Some(self.item(item)))
                }
                Ok(false) => Poll::Pending,
                Err(reason) => {
                    self.done = true;
                    Poll::Ready(Some(WatchItem::Closed(reason)))
                }
            }
        })
        .await
    }

    /// The next item if one is ready now (no waiting).
    pub fn try_next(&mut self) -> Option<WatchItem> {
        if let Some(item) = self.backlog.pop_front() {
            return Some(item);
        }
        if self.local.is_empty() && !matches!(self.refill(None), Ok(true)) {
            return None;
        }
        let item = self.local.pop_front()?;
        Some(self.item(item))
    }

    /// When the store handed the last event [`Watcher::next`] returned to the watchers (after
    /// its commit, and in durable mode its flush): commit → receipt latency for benchmarks.
    pub fn published_at(&self) -> Option<Instant> {
        self.published
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let mut q = self.slot.lock();
        q.dropped = true;
        q.items.clear();
        q.waker = None;
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// uuid v4s drawn from a buffer of OS randomness refilled 256 uuids at a time (one
/// `getrandom` per create is a syscall on the writer's path).
struct Uids {
    buf: [u8; 4096],
    used: usize,
}

impl Uids {
    fn new() -> Uids {
        Uids {
            buf: [0; 4096],
            used: 4096,
        }
    }

    fn next(&mut self) -> String {
        if self.used == self.buf.len() {
            // `Uuid::new_v4` is the fallback if the OS source is unavailable.
            let ok = std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut self.buf))
                .is_ok();
            if !ok {
                return uuid::Uuid::new_v4().to_string();
            }
            self.used = 0;
        }
        let mut b = [0u8; 16];
        b.copy_from_slice(&self.buf[self.used..self.used + 16]);
        self.used += 16;
        uuid::Builder::from_random_bytes(b)
            .into_uuid()
            .hyphenated()
            .to_string()
    }
}

impl Store {
    /// Opens the store: reads and checks the backend (a damaged store is an error naming what
    /// and where, never a silent reset), restores the core, starts the committer thread.
    pub fn open(config: StoreConfig) -> Result<Store> {
        let path = || {
            config.path.clone().ok_or_else(|| {
                StoreError::Backend(format!(
                    "the {} backend needs a path",
                    config.backend.as_str()
                ))
            })
        };
        // A store closed a moment ago in this process may still be held by its committer thread,
        // which releases the file lock as it exits: retry a locked store for a few seconds.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let opened: std::result::Result<Box<dyn Backend>, BackendError> = match config.backend {
                BackendKind::Memory => Ok(Box::new(MemoryBackend::new())),
                BackendKind::Sled => {
                    let path = path()?;
                    // sled's I/O threads (which write every group commit's data before the
                    // committer's fsync) start at its first write and inherit the priority of
                    // the thread that makes it: open it on a thread with the committer's.
                    std::thread::scope(|s| {
                        s.spawn(|| {
                            raise_priority();
                            SledBackend::open(&path, config.cache_bytes)
                        })
                        .join()
                    })
                    .unwrap_or_else(|_| Err(BackendError::Io("opening sled panicked".into())))
                    .map(|b| Box::new(b) as Box<dyn Backend>)
                }
                BackendKind::Redb => RedbBackend::open(&path()?, config.cache_bytes)
                    .map(|b| Box::new(b) as Box<dyn Backend>),
            };
            match opened {
                Ok(backend) => return Self::open_with(config, backend),
                Err(BackendError::Io(msg)) if msg.contains("lock") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(open_error(&config, e)),
            }
        }
    }

    /// Opens the store over a given backend (tests, the simulator).
    pub fn open_with(mut config: StoreConfig, backend: Box<dyn Backend>) -> Result<Store> {
        config.retention_events = config.retention_events.max(1);
        config.max_batch = config.max_batch.max(1);
        config.watcher_buffer = config.watcher_buffer.max(1);
        let log = Log::new(backend);
        let now_ms = now_ms();
        let since = rfc3339((now_ms / 1000).saturating_sub(config.watch_window.max_age.as_secs()));
        let loaded = log
            .load(&since, config.watch_window.max_events)
            .map_err(|e| log.store_error(e))?;
        let core = StoreCore::restore(
            config.watch_window,
            loaded.objects,
            loaded.revision,
            loaded.tail,
        );
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                core,
                queue: VecDeque::new(),
                waiting: false,
                wake_at: 1,
                closing: false,
                committing: 0,
                peak: 0,
            }),
            watchers: Mutex::new(Vec::new()),
            log,
            config,
            failed: Mutex::new(None),
            work: Condvar::new(),
            unsynced: AtomicBool::new(false),
            groups: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        });
        let committer = shared.clone();
        std::thread::Builder::new()
            .name("bonsai-store-commit".into())
            .spawn(move || {
                raise_priority();
                committer_loop(committer)
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the store committer: {e}")))?;
        Ok(Store {
            _handles: Arc::new(Handles(shared.clone())),
            shared,
        })
    }

    /// The configuration the store runs with (`durability` says whether acks mean "on disk").
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// `sled at /path`, `redb at /path` or `memory`.
    pub fn describe(&self) -> String {
        self.shared.log.describe()
    }

    /// Prepares the write against the core on the caller's thread (preconditions, revision:
    /// a rejected write is answered here), queues it for the committer, and waits until the
    /// group commit that covers it is durable (or, relaxed, written) and published.
    async fn submit(
        &self,
        write: Write,
        pre: Option<Preserialized>,
        actor: &str,
    ) -> Result<Written> {
        let (reply, rx) = oneshot::channel();
        let ctx = WriteContext {
            actor: actor.to_string(),
            uid: match write {
                Write::Create { .. } => UIDS.with(|u| u.borrow_mut().next()),
                _ => String::new(),
            },
        };
        let wake = {
            let mut inner = self.shared.lock();
            // Checked under the core's lock, where a failing committer sets it and aborts what
            // is prepared: nothing is prepared (and so queued) after that.
            if let Some(why) = &*self.shared.failed.lock().unwrap_or_else(|p| p.into_inner()) {
                return Err(StoreError::Backend(format!(
                    "the store refuses writes after a failed write: {why}"
                )));
            }
            // The clock is read under the lock: in revision order.
            let p = inner.core.prepare_serialized(write, pre, &ctx, now_ms())?;
            let written = Written {
                object: p.result,
                json: (p.committed.event_type != EventType::Deleted)
                    .then(|| p.committed.json.clone()),
            };
            inner.queue.push_back(Accepted {
                reply,
                object: p.object,
                written,
                committed: p.committed,
            });
            inner.peak = inner.peak.max(inner.queue.len() + inner.committing);
            let wake = inner.waiting && inner.queue.len() >= inner.wake_at;
            if wake {
                inner.waiting = false;
            }
            wake
        };
        if wake {
            self.shared.work.notify_one();
        }
        rx.await
            .map_err(|_| StoreError::Closed("the store's committer has stopped".into()))?
    }

    /// Creates `key`; sets `metadata.uid`, `creationTimestamp` and `resourceVersion`.
    pub async fn create(&self, key: &Key, object: Value, actor: &str) -> Result<Arc<Value>> {
        Ok(self.create_written(key, object, actor).await?.object)
    }

    /// [`Store::create`], with the text it committed.
    pub async fn create_written(
        &self,
        key: &Key,
        mut object: Value,
        actor: &str,
    ) -> Result<Written> {
        // Serialized here, outside the core's lock.
        let pre = preserialize(key, &mut object)?;
        self.submit(
            Write::Create {
                key: key.clone(),
                object,
            },
            Some(pre),
            actor,
        )
        .await
    }

    /// Replaces `key`'s object; keeps its uid and creationTimestamp, sets the new resourceVersion.
    pub async fn update(
        &self,
        key: &Key,
        object: Value,
        precondition: Option<Precondition>,
        actor: &str,
    ) -> Result<Arc<Value>> {
        Ok(self
            .update_written(key, object, precondition, actor)
            .await?
            .object)
    }

    /// [`Store::update`], with the text it committed.
    pub async fn update_written(
        &self,
        key: &Key,
        mut object: Value,
        precondition: Option<Precondition>,
        actor: &str,
    ) -> Result<Written> {
        let pre = preserialize(key, &mut object)?;
        self.submit(
            Write::Update {
                key: key.clone(),
                object,
                precondition,
            },
            Some(pre),
            actor,
        )
        .await
    }

    /// Deletes `key`; returns its last state.
    pub async fn delete(
        &self,
        key: &Key,
        precondition: Option<Precondition>,
        actor: &str,
    ) -> Result<Arc<Value>> {
        Ok(self
            .submit(
                Write::Delete {
                    key: key.clone(),
                    precondition,
                },
                None,
                actor,
            )
            .await?
            .object)
    }

    /// Read-modify-write: `f` computes the new object from the current one; on a conflict
    /// (someone wrote in between) it runs again on the newer object. `f` may return an error
    /// (e.g. `StoreError::Aborted`) to give up.
    pub async fn guaranteed_update<F>(&self, key: &Key, actor: &str, mut f: F) -> Result<Arc<Value>>
    where
        F: FnMut(&Value) -> Result<Value>,
    {
        loop {
            let current = self
                .get(key)
                .ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
            let rv = resource_version_of(&current).unwrap_or(0);
            let next = f(&current)?;
            match self
                .update(key, next, Some(Precondition::ResourceVersion(rv)), actor)
                .await
            {
                Err(StoreError::Conflict { .. }) => continue,
                other => return other,
            }
        }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        // Parse outside the lock: writers, the committer and other readers need it.
        let json = self.shared.lock().core.get_json(key)?;
        Some(parse(&json))
    }

    /// The current object as stored, JSON text (for responses that need no parsing).
    pub fn get_json(&self, key: &Key) -> Option<Arc<str>> {
        self.shared.lock().core.get_json(key)
    }

    /// One page of a list, a consistent snapshot. Parsed outside the core's lock: writers and
    /// the committer take it.
    pub fn list(&self, q: &ListQuery) -> Result<ListResult> {
        let texts = self.shared.lock().core.list_texts(q)?;
        Ok(texts.finish())
    }

    /// The store's revision (of its last committed write).
    pub fn revision(&self) -> Revision {
        self.shared.lock().core.revision()
    }

    /// The oldest revision a watch may start from.
    pub fn watch_window_start(&self) -> Revision {
        self.shared.lock().core.window_start()
    }

    /// Starts a watch; `Err(Expired)` when `q.from` has left the watch window.
    pub fn watch(&self, q: &WatchQuery) -> Result<Watcher> {
        let filter = Filter::from_watch(q);
        filter.validate()?;
        let inner = self.shared.lock();
        let backlog = match q.from {
            None => VecDeque::new(),
            Some(from) => inner
                .core
                .watch_backlog(&filter, from)?
                .into_iter()
                .map(WatchItem::Event)
                .collect(),
        };
        let slot = Arc::new(Slot {
            filter,
            after: q.from.unwrap_or(0),
            queue: Mutex::new(Queue::default()),
        });
        // Registered while holding the core's lock, which a committer holds until it has the
        // watchers' lock: this watch gets every event after the backlog, none twice.
        self.shared.lock_watchers().push(slot.clone());
        drop(inner);
        Ok(Watcher {
            backlog,
            slot,
            local: VecDeque::new(),
            done: false,
            published: None,
        })
    }

    /// How many watchers are registered.
    pub fn watcher_count(&self) -> usize {
        self.shared.lock_watchers().len()
    }

    /// Every retained event of `key`, and where retention truncated the log.
    pub fn history(&self, key: &Key) -> Result<History> {
        key.validate()?;
        let log = &self.shared.log;
        // Only committed events: the backend holds a group's events from its write on, before
        // its flush covers them and it is acknowledged.
        let through = self.revision();
        let events = log
            .history_through(key, through)
            .map_err(|e| log.store_error(e))?;
        Ok(History {
            events,
            truncated_before: log.truncated_before(),
        })
    }

    /// All objects at a past (retained) revision.
    pub fn state_at(&self, revision: Revision) -> Result<StateAt> {
        let current = self.revision();
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        let log = &self.shared.log;
        let objects = log.state_at(revision)?;
        Ok(StateAt {
            revision,
            objects,
            truncated_before: log.truncated_before(),
        })
    }

    /// Group commits, flushes and writes since open.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            groups: self.shared.groups.load(Ordering::Relaxed),
            flushes: self.shared.flushes.load(Ordering::Relaxed),
            writes: self.shared.writes.load(Ordering::Relaxed),
        }
    }

    /// Makes every acknowledged write durable now (only matters in relaxed mode).
    pub fn sync(&self) -> Result<()> {
        self.shared
            .log
            .sync()
            .map_err(|e| self.shared.log.store_error(e))
    }
}

fn open_error(config: &StoreConfig, e: BackendError) -> StoreError {
    let path = config
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    match e {
        BackendError::Io(msg) => StoreError::Backend(msg),
        super::backend::BackendError::Corrupt { what, location } => StoreError::Corrupt {
            path: format!("{} at {path}", config.backend.as_str()),
            what,
            location,
        },
    }
}

thread_local! {
    /// Each writer's thread draws its writes' uids from a buffer of its own.
    static UIDS: std::cell::RefCell<Uids> = std::cell::RefCell::new(Uids::new());
}

/// The committer and the sync thread are the serial path of every acknowledged write: while one
/// of them waits for a core behind request handlers, every writer of its group waits too. So
/// each asks the kernel for a higher priority for its own thread: ten nice levels above the
/// process's (granted to root, which bonsai runs as for its mounts; refused otherwise, and
/// then they run as any thread). Relative, not an absolute -10: under `nice -n -19` (as earlier
/// benchmark rounds ran) an absolute -10 put them *below* every request handler. Measured with
/// the earlier writer and flusher threads (`benches/store.rs`, 256 durable writers, 3 rounds
/// alternating with and without): sled 49.5–52.1k → 53.5–55.6k creates/s, redb 54.5–58.0k →
/// 57.2–59.7k; their CPU is ~10 µs per create, so request handling loses next to nothing.
fn raise_priority() {
    use nix::libc;
    let tid = nix::unistd::gettid().as_raw() as libc::id_t;
    // getpriority may return -1 as a value: errno tells an error apart.
    nix::errno::Errno::clear();
    // SAFETY: getpriority and setpriority take plain integers and touch none of our memory.
    let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    let current = if current == -1 && nix::errno::Errno::last_raw() != 0 {
        0
    } else {
        current
    };
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, (current - 10).max(-20)) };
    if r != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "store thread keeps its default priority"
        );
    }
}

/// Relaxed mode: how often acknowledged writes are made durable.
const RELAXED_SYNC_EVERY: Duration = Duration::from_secs(1);

/// Relaxed mode: how long a group waits for the writers of the last group to come back (a
/// durable group gathers for as long as the previous flush takes; fdatasync is ~0.1–4 ms).
const RELAXED_GATHER: Duration = Duration::from_micros(200);

/// Relaxed mode: the group size up to which a group waits for more (see `RELAXED_GATHER`).
const RELAXED_GATHER_UP_TO: usize = 64;

/// The committer: takes every write queued (up to `max_batch`) as one group, writes it to the
/// backend in one transaction (durable: and flushes it), then finishes it. While it writes and
/// flushes, the writers go on preparing and queueing, so the next group is everything that
/// arrived meanwhile. Between groups it sends bookmarks, ages the watch window and applies log
/// retention.
fn committer_loop(shared: Arc<Shared>) {
    let config = shared.config.clone();
    let durable = config.durability == Durability::Durable;
    let tick = config
        .bookmark_interval
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(10));
    // A panic here would leave the queued writers waiting forever: fail them instead.
    let _guard = FailOnPanic(&shared);
    // Relaxed on a disk: the once-a-second sync runs on its own thread, so the committer goes
    // on appending (and answering) while the disk flushes.
    let relaxed = !durable && shared.log.needs_sync();
    // Durable on a disk: every group costs a flush.
    let flushes = durable && shared.log.needs_sync();
    let mut syncer = None;
    if relaxed {
        // Only ever closed (dropped), to stop the syncer.
        let (tx, srx) = std_mpsc::channel::<()>();
        let s = shared.clone();
        match std::thread::Builder::new()
            .name("bonsai-store-sync".into())
            .spawn(move || {
                raise_priority();
                syncer_loop(s, srx)
            }) {
            Ok(handle) => syncer = Some((tx, handle)),
            // Without a sync thread the committer syncs itself, between groups.
            Err(e) => eprintln!("bonsai store: no sync thread ({e}); syncing inline"),
        }
    }
    let mut last_bookmark = Instant::now();
    let mut last_sync = Instant::now();
    let mut dirty = false;
    // Relaxed mode: the size of the last group, which the next one waits to reach (briefly).
    let mut last_group = 0usize;
    let mut peaks = Peaks::default();
    loop {
        let mut inner = shared.lock();
        // The last group (if any) is answered.
        inner.committing = 0;
        while inner.queue.is_empty() && !inner.closing {
            let left = config
                .bookmark_interval
                .saturating_sub(last_bookmark.elapsed());
            if left.is_zero() {
                break;
            }
            inner = wait_for_work(&shared, inner, left.min(tick));
        }
        if relaxed && !inner.queue.is_empty() {
            // Group commit without a flush to wait for: the writers answered with the last
            // group are about to send their next writes. Give them a moment (`RELAXED_GATHER`
            // at most) to make this group as big as that one, as a durable group grows during
            // its flush: one backend transaction, one wake-up per watcher for all of them,
            // instead of a trickle of tiny groups. A lone writer (last group of one) never
            // waits, and nor does a group of `RELAXED_GATHER_UP_TO` or more: its per-group
            // costs are spread thin already.
            let target = last_group.min(RELAXED_GATHER_UP_TO);
            let deadline = Instant::now() + RELAXED_GATHER;
            while inner.queue.len() < target && !inner.closing {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                inner = wait_for_work(&shared, inner, left);
            }
            last_group = inner.queue.len().min(config.max_batch);
        }
        if flushes && !inner.queue.is_empty() {
            inner = gather(&shared, inner, &mut peaks);
        }
        inner.waiting = false;
        if inner.queue.is_empty() && inner.closing {
            break;
        }
        let n = inner.queue.len().min(config.max_batch);
        let group: Vec<Accepted> = inner.queue.drain(..n).collect();
        inner.committing = n;
        drop(inner);
        if !group.is_empty() {
            if commit_group(&shared, group, durable, relaxed) && relaxed {
                dirty = true;
            }
            apply_retention(&shared, durable);
        }
        if last_bookmark.elapsed() >= config.bookmark_interval {
            last_bookmark = Instant::now();
            send_bookmarks(&shared);
        }
        if dirty {
            if syncer.is_some() {
                // Appended before this: the syncer's next sync covers it.
                dirty = false;
                shared.unsynced.store(true, Ordering::Release);
            } else if last_sync.elapsed() >= RELAXED_SYNC_EVERY {
                last_sync = Instant::now();
                dirty = false;
                relaxed_sync(&shared);
            }
        }
    }
    // Last handle dropped and everything queued committed: flush relaxed writes, close every
    // watcher (each still reads what it was handed, then `Closed`).
    if let Some((tx, handle)) = syncer {
        drop(tx);
        let _ = handle.join();
    }
    let _ = shared.log.sync();
    let _inner = shared.lock();
    for s in shared.lock_watchers().drain(..) {
        let waker = {
            let mut q = s.lock();
            q.closed = Some("the store was closed".into());
            q.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Durable mode: a group waits to hold this share of the writers recently outstanding at once
/// (see [`gather`]).
const GATHER_SHARE: f64 = 0.5;

/// Durable mode: the longest a group waits to fill (see [`gather`]).
const GATHER_AT_MOST: Duration = Duration::from_millis(2);

/// Durable mode: a group stops waiting when no write arrived for this long (see [`gather`]).
const GATHER_QUIET: Duration = Duration::from_micros(200);

/// The peaks of outstanding writes over the last groups.
#[derive(Default)]
struct Peaks {
    last: [usize; 8],
    next: usize,
}

/// Durable mode on a disk: holds a group back until it is worth its flush. A group commit costs
/// much CPU across the process whatever its size (measured with sled, ~0.25 ms: its buffers
/// handed to its I/O threads, three synchronous disk writes; redb: a transaction's page
/// writes, ~11 at 64 clients, and its fdatasync; with either, a wake-up per answered writer on
/// a parked worker); taken as soon as the last one ended, a group is what arrived during one
/// flush, a dozen writes even with 256 writers over HTTP (sled), and those costs made a create
/// cost 85–90 µs of CPU instead of ~72. So the committer waits until the queue holds half as
/// many writes as were recently outstanding at once (queued or committing; the most over the last 8 groups) — the
/// other half is being answered and comes back meanwhile, so the CPU does not idle for it —,
/// for `GATHER_AT_MOST` at most, and not at all once `GATHER_QUIET` passed without a write
/// arriving (no one else is coming: the queue is all the writers there are). One or two
/// writers never wait. A writer that fills the queue to the target wakes the committer; in
/// between it looks every `GATHER_QUIET` (a wake-up per write would cost more than it saves).
fn gather<'a>(
    shared: &'a Shared,
    mut inner: MutexGuard<'a, Inner>,
    peaks: &mut Peaks,
) -> MutexGuard<'a, Inner> {
    peaks.last[peaks.next % peaks.last.len()] = std::mem::take(&mut inner.peak);
    peaks.next += 1;
    let writers = peaks.last.iter().copied().max().unwrap_or(0);
    let target = ((writers as f64 * GATHER_SHARE) as usize).clamp(1, shared.config.max_batch);
    let start = Instant::now();
    let mut seen = inner.queue.len();
    inner.wake_at = target;
    while inner.queue.len() < target && !inner.closing {
        let left = (start + GATHER_AT_MOST).saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        inner = wait_for_work(shared, inner, left.min(GATHER_QUIET));
        if inner.queue.len() == seen {
            break;
        }
        seen = inner.queue.len();
    }
    inner.waiting = false;
    inner.wake_at = 1;
    inner
}

/// The committer waits for a writer to queue work (see `Inner::wake_at`) or `timeout`.
fn wait_for_work<'a>(
    shared: &'a Shared,
    mut inner: MutexGuard<'a, Inner>,
    timeout: Duration,
) -> MutexGuard<'a, Inner> {
    inner.waiting = true;
    shared
        .work
        .wait_timeout(inner, timeout)
        .unwrap_or_else(|p| p.into_inner())
        .0
}

/// Fails every queued write if the committer panics (they would wait forever otherwise).
struct FailOnPanic<'a>(&'a Shared);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let err = StoreError::Backend("the store's committer panicked".into());
            fail_all(self.0, Vec::new(), &err);
        }
    }
}

/// Encodes a group's events, writes them to the backend in one transaction (durable: flushed),
/// then finishes the group. Returns whether it was written; if not, the store refuses writes
/// from now on and every write prepared (this group's and those queued behind it) fails.
fn commit_group(shared: &Shared, group: Vec<Accepted>, durable: bool, relaxed: bool) -> bool {
    let through = group.last().expect("a group has writes").committed.revision;
    let mut events = Vec::with_capacity(group.len());
    let mut accepted = Vec::with_capacity(group.len());
    for a in group {
        events.push(a.committed);
        accepted.push((a.reply, a.object, a.written));
    }
    // Encoded, written and freed on this one thread: a buffer allocated on one thread and freed
    // on another made sled's store hold ~80 B more per object (the allocator keeps such memory
    // longer; `benches/store.rs`, memory).
    let encoded = Log::encode(&events);
    drop(events);
    match shared.log.write(encoded, durable) {
        Ok(()) => {
            shared.groups.fetch_add(1, Ordering::Relaxed);
            // Relaxed: the periodic syncs count as flushes (on the memory backend, which needs
            // none, every group does).
            if !relaxed {
                shared.flushes.fetch_add(1, Ordering::Relaxed);
            }
            finish(shared, through, accepted);
            true
        }
        Err(e) => {
            let err = shared.log.store_error(e);
            fail_all(shared, accepted, &err);
            false
        }
    }
}

/// The store refuses writes from now on: nothing prepared is committed (a writer preparing
/// meanwhile sees `failed` first), and every prepared write — `taken` and the queue — fails.
fn fail_all(
    shared: &Shared,
    taken: Vec<(oneshot::Sender<Result<Written>>, Arc<Value>, Written)>,
    err: &StoreError,
) {
    let queued: Vec<Accepted> = {
        let mut inner = shared.lock();
        fail(shared, err.to_string());
        inner.core.abort_prepared();
        inner.queue.drain(..).collect()
    };
    let replies = taken
        .into_iter()
        .map(|(reply, _, _)| reply)
        .chain(queued.into_iter().map(|a| a.reply));
    for reply in replies {
        let _ = reply.send(Err(err.clone()));
    }
}

/// The relaxed mode's periodic sync (a failure makes the store refuse writes, as a failed
/// group commit does).
fn relaxed_sync(shared: &Shared) {
    match shared.log.sync() {
        Ok(()) => {
            shared.flushes.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => fail(
            shared,
            format!("relaxed flush failed: {}", shared.log.store_error(e)),
        ),
    }
}

/// Relaxed mode's sync thread: once a second, if the committer appended anything since the
/// last sync (`unsynced`), syncs everything appended so far. The backends allow a sync while
/// the committer appends: sled flushes its log concurrently, redb's sync is a write
/// transaction that takes its turn. So every acknowledged write is on disk about a second
/// later at most, and the committer never stops for the flush. On shutdown the committer syncs
/// last.
fn syncer_loop(shared: Arc<Shared>, stop: std_mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(RELAXED_SYNC_EVERY) {
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            // The store is closing (the committer syncs once more itself).
            Ok(()) | Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // Taken before the sync: whatever is appended after it is flagged again.
        if shared.unsynced.swap(false, Ordering::AcqRel) {
            relaxed_sync(&shared);
        }
    }
}

/// Commits a written group (through revision `through`) in the core, hands its events to the
/// watchers, and answers its writers.
fn finish(
    shared: &Shared,
    through: Revision,
    accepted: Vec<(oneshot::Sender<Result<Written>>, Arc<Value>, Written)>,
) {
    let now_ms = now_ms();
    let mut inner = shared.lock();
    let committed = inner.core.commit_prepared_through(through, now_ms);
    let mut watchers = shared.lock_watchers();
    drop(inner);
    shared
        .writes
        .fetch_add(committed.len() as u64, Ordering::Relaxed);
    // The parsed objects leave the group here, before any writer is answered: a create's
    // object is its result, and if the writer's copy were dropped after the answer, the caller
    // could drop the result first and leave this thread to free the whole parsed tree.
    let mut replies = Vec::with_capacity(committed.len());
    let mut objects = Vec::with_capacity(committed.len());
    for (reply, object, result) in accepted {
        objects.push(object);
        replies.push((reply, result));
    }
    if !watchers.is_empty() {
        publish(
            &mut watchers,
            committed,
            objects.drain(..),
            shared.config.watcher_buffer,
        );
    }
    drop(watchers);
    drop(objects);
    for (reply, result) in replies {
        let _ = reply.send(Ok(result));
    }
}

fn fail(shared: &Shared, why: String) {
    let mut f = shared.failed.lock().unwrap_or_else(|p| p.into_inner());
    if f.is_none() {
        *f = Some(why);
    }
}

/// Hands each event to every watcher that sees it: one shared entry per event, a pointer push
/// per watcher, one wake-up per watcher. A watcher whose queue is full is cut off (it reads what
/// it has, then `Closed`, and resumes from its last revision); a dropped watcher is forgotten.
fn publish(
    watchers: &mut Vec<Arc<Slot>>,
    committed: Vec<Committed>,
    objects: impl Iterator<Item = Arc<Value>>,
    buffer: usize,
) {
    let published = Instant::now();
    let mut time = (u64::MAX, String::new());
    let entries: Vec<Arc<Entry>> = committed
        .into_iter()
        .zip(objects)
        .map(|(committed, object)| {
            if committed.at_ms / 1000 != time.0 {
                time = (committed.at_ms / 1000, committed.time());
            }
            Arc::new(Entry {
                committed,
                object,
                prev: OnceLock::new(),
                left: OnceLock::new(),
                time: time.1.clone(),
                published,
            })
        })
        .collect();
    // Selector transitions parse the previous version at most once for all watchers.
    let views: Vec<Views<'_>> = entries
        .iter()
        .map(|e| Views::with_object(&e.committed, e.object.clone()))
        .collect();
    watchers.retain(|slot| {
        let selectors = slot.filter.has_selectors();
        let mut q = slot.lock();
        let mut queued = false;
        for (entry, view) in entries.iter().zip(&views) {
            let c = &entry.committed;
            if c.revision <= slot.after || !slot.filter.covers(&c.key) {
                continue;
            }
            let seen = if selectors {
                match slot.filter.seen(view) {
                    Some(s) => s,
                    None => continue,
                }
            } else {
                Seen::As(c.event_type)
            };
            if q.dropped {
                return false;
            }
            if q.items.len() >= buffer {
                q.closed = Some(format!(
                    "watcher too slow: its buffer of {buffer} events was full at revision {}; \
                     resume from the last revision received",
                    c.revision
                ));
                let waker = q.waker.take();
                drop(q);
                if let Some(w) = waker {
                    w.wake();
                }
                return false;
            }
            q.items.push_back(Item::Event(entry.clone(), seen));
            queued = true;
        }
        let waker = if queued { q.waker.take() } else { None };
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
        true
    });
    for (entry, view) in entries.iter().zip(&views) {
        if let Some(prev) = view.parsed_prev() {
            let _ = entry.prev.set(prev);
        }
    }
}

/// Ages the watch window and hands every watcher a bookmark with the store's revision (after
/// every event at or below it: the committer publishes before it lets go of the watchers).
fn send_bookmarks(shared: &Shared) {
    let now_ms = now_ms();
    let mut inner = shared.lock();
    inner.core.age_window(now_ms);
    let rev = inner.core.revision();
    let mut watchers = shared.lock_watchers();
    drop(inner);
    let buffer = shared.config.watcher_buffer;
    watchers.retain(|s| {
        let mut q = s.lock();
        if q.dropped {
            return false;
        }
        // A full queue skips a bookmark; only events cut a watcher off.
        if q.items.len() < buffer {
            q.items.push_back(Item::Bookmark(rev));
            if let Some(w) = q.waker.take() {
                drop(q);
                w.wake();
            }
        }
        true
    });
}

fn apply_retention(shared: &Shared, durable: bool) {
    // Triggered by revisions, not by the number of retained events: every live object keeps its
    // current version forever, so the event count alone would trigger on every group.
    let retention = shared.config.retention_events;
    let slack = (retention / 10).max(1);
    let log = &shared.log;
    let revision = shared.lock().core.revision();
    if revision.saturating_sub(log.compacted()) <= retention + slack {
        return;
    }
    let cutoff = revision - retention;
    if let Err(e) = log.compact(cutoff, durable) {
        fail(
            shared,
            format!("log retention failed: {}", log.store_error(e)),
        );
    }
}
