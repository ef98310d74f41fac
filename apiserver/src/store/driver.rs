//! [`Store`]: the handle everyone uses, and the writer thread that drives the core.
//!
//! Writes go through one channel to one writer thread, which:
//! 1. takes every request waiting (up to `max_batch`): that is the group;
//! 2. prepares each against the core (preconditions, revisions) under the core's lock —
//!    rejected writes are answered at once;
//! 3. appends the group to the backend in one transaction with one flush (`Durable`), without
//!    holding the lock, so readers and watchers keep going while the disk works;
//! 4. commits the group in the core and hands each event to every matching watcher's bounded
//!    buffer (`try_send`: a full buffer cuts that watcher off, it never blocks the writer);
//! 5. only then answers the writers. Nothing is acknowledged before it is durable.
//!
//! The writer is a plain thread, not a tokio task: the backends block on fdatasync, and the
//! store must work from any runtime (or none: `Store::open` is synchronous).
//! Between groups it sends bookmarks, ages the watch window, flushes relaxed writes and applies
//! log retention.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::backend::{Backend, BackendError, Log, MemoryBackend, RedbBackend, SledBackend};
use super::core::{resource_version_of, Committed, Filter, StoreCore, Views, Write, WriteContext};
use super::{
    rfc3339, BackendKind, Durability, History, Key, ListQuery, ListResult, Precondition, Result,
    Revision, StateAt, StoreConfig, StoreError, WatchItem, WatchQuery,
};

struct Request {
    write: Write,
    actor: String,
    reply: oneshot::Sender<Result<Arc<Value>>>,
}

/// Why a watcher stopped, read by the watcher once its buffer is drained.
#[derive(Default)]
struct WatchState {
    reason: Mutex<Option<String>>,
}

struct Slot {
    filter: Filter,
    /// Events at or below this revision are not delivered (a watch from a future revision
    /// starts there, as kube-apiserver's does).
    after: Revision,
    tx: mpsc::Sender<WatchItem>,
    state: Arc<WatchState>,
}

struct Inner {
    core: StoreCore,
    watchers: Vec<Slot>,
}

struct Shared {
    inner: Mutex<Inner>,
    log: Log,
    config: StoreConfig,
    /// Set when a backend write failed: the store then refuses writes (reads go on).
    failed: Mutex<Option<String>>,
    /// Group commits written and writes committed (for `writes per flush`).
    groups: AtomicU64,
    writes: AtomicU64,
}

/// Counters of the writer since open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Backend transactions (each one flush in durable mode) that committed writes.
    pub groups: u64,
    /// Writes committed.
    pub writes: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The core asserts its invariants before mutating; a panic in a reader leaves it intact.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The store handle: cheap to clone, `Send + Sync`. Dropping the last clone stops the writer and
/// closes every watcher.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    requests: std_mpsc::Sender<Request>,
}

/// A watch: the matching events after its start, in order, each once, then live events.
pub struct Watcher {
    backlog: VecDeque<WatchItem>,
    rx: mpsc::Receiver<WatchItem>,
    state: Arc<WatchState>,
    done: bool,
}

impl Watcher {
    /// The next item; after `Closed(..)` it returns `None`.
    pub async fn next(&mut self) -> Option<WatchItem> {
        if let Some(item) = self.backlog.pop_front() {
            return Some(item);
        }
        if self.done {
            return None;
        }
        match self.rx.recv().await {
            Some(item) => Some(item),
            None => {
                self.done = true;
                let reason = self
                    .state
                    .reason
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                Some(WatchItem::Closed(
                    reason.unwrap_or_else(|| "the store was closed".into()),
                ))
            }
        }
    }

    /// The next item if one is ready now (no waiting).
    pub fn try_next(&mut self) -> Option<WatchItem> {
        if let Some(item) = self.backlog.pop_front() {
            return Some(item);
        }
        self.rx.try_recv().ok()
    }
}

fn now() -> (u64, String) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as u64, rfc3339(d.as_secs()))
}

impl Store {
    /// Opens the store: reads and checks the backend (a damaged store is an error naming what
    /// and where, never a silent reset), restores the core, starts the writer thread.
    pub fn open(config: StoreConfig) -> Result<Store> {
        let path = || {
            config.path.clone().ok_or_else(|| {
                StoreError::Backend(format!(
                    "the {} backend needs a path",
                    config.backend.as_str()
                ))
            })
        };
        // A store closed a moment ago in this process may still be held by its writer thread,
        // which releases the file lock as it exits: retry a locked store for a few seconds.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let opened: std::result::Result<Box<dyn Backend>, BackendError> = match config.backend {
                BackendKind::Memory => Ok(Box::new(MemoryBackend::new())),
                BackendKind::Sled => SledBackend::open(&path()?, config.cache_bytes)
                    .map(|b| Box::new(b) as Box<dyn Backend>),
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
        let (now_ms, _) = now();
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
                watchers: Vec::new(),
            }),
            log,
            config,
            failed: Mutex::new(None),
            groups: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        });
        let (tx, rx) = std_mpsc::channel();
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("bonsai-store-writer".into())
            .spawn(move || writer_loop(writer, rx))
            .map_err(|e| StoreError::Backend(format!("cannot start the store writer: {e}")))?;
        Ok(Store {
            shared,
            requests: tx,
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

    async fn submit(&self, write: Write, actor: &str) -> Result<Arc<Value>> {
        let (reply, rx) = oneshot::channel();
        self.requests
            .send(Request {
                write,
                actor: actor.to_string(),
                reply,
            })
            .map_err(|_| StoreError::Closed("the store writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Closed("the store writer has stopped".into()))?
    }

    /// Creates `key`; sets `metadata.uid`, `creationTimestamp` and `resourceVersion`.
    pub async fn create(&self, key: &Key, object: Value, actor: &str) -> Result<Arc<Value>> {
        self.submit(
            Write::Create {
                key: key.clone(),
                object,
            },
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
        self.submit(
            Write::Update {
                key: key.clone(),
                object,
                precondition,
            },
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
        self.submit(
            Write::Delete {
                key: key.clone(),
                precondition,
            },
            actor,
        )
        .await
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
        self.shared.lock().core.get(key)
    }

    /// The current object as stored, JSON text (for responses that need no parsing).
    pub fn get_json(&self, key: &Key) -> Option<Arc<str>> {
        self.shared.lock().core.get_json(key)
    }

    /// One page of a list, a consistent snapshot.
    pub fn list(&self, q: &ListQuery) -> Result<ListResult> {
        self.shared.lock().core.list(q)
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
        let (tx, rx) = mpsc::channel(self.shared.config.watcher_buffer);
        let state = Arc::new(WatchState::default());
        let mut inner = self.shared.lock();
        let backlog = match q.from {
            None => VecDeque::new(),
            Some(from) => inner
                .core
                .watch_backlog(&filter, from)?
                .into_iter()
                .map(WatchItem::Event)
                .collect(),
        };
        // Registered under the same lock the writer publishes under: no gap, no duplicate.
        let after = q.from.unwrap_or(0);
        inner.watchers.push(Slot {
            filter,
            after,
            tx,
            state: state.clone(),
        });
        Ok(Watcher {
            backlog,
            rx,
            state,
            done: false,
        })
    }

    /// How many watchers are registered.
    pub fn watcher_count(&self) -> usize {
        self.shared.lock().watchers.len()
    }

    /// Every retained event of `key`, and where retention truncated the log.
    pub fn history(&self, key: &Key) -> Result<History> {
        key.validate()?;
        let log = &self.shared.log;
        let events = log.history(key).map_err(|e| log.store_error(e))?;
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

    /// Group commits and writes since open.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            groups: self.shared.groups.load(Ordering::Relaxed),
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

fn writer_loop(shared: Arc<Shared>, rx: std_mpsc::Receiver<Request>) {
    let config = shared.config.clone();
    let durable = config.durability == Durability::Durable;
    let tick = config
        .bookmark_interval
        .min(Duration::from_secs(1))
        .max(Duration::from_millis(10));
    let mut last_bookmark = Instant::now();
    let mut last_sync = Instant::now();
    let mut dirty = false;
    let mut batch: Vec<Request> = Vec::with_capacity(config.max_batch);
    loop {
        match rx.recv_timeout(tick) {
            Ok(first) => {
                batch.push(first);
                while batch.len() < config.max_batch {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                if commit_group(&shared, &mut batch, durable) && !durable {
                    dirty = true;
                }
                batch.clear();
                apply_retention(&shared, durable);
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let (now_ms, _) = now();
        if last_bookmark.elapsed() >= config.bookmark_interval {
            last_bookmark = Instant::now();
            let mut inner = shared.lock();
            inner.core.age_window(now_ms);
            let rev = inner.core.revision();
            // A full buffer skips a bookmark; only events cut a watcher off.
            inner.watchers.retain(|s| {
                !matches!(
                    s.tx.try_send(WatchItem::Bookmark(rev)),
                    Err(mpsc::error::TrySendError::Closed(_))
                )
            });
        }
        if dirty && last_sync.elapsed() >= Duration::from_secs(1) {
            last_sync = Instant::now();
            dirty = false;
            if let Err(e) = shared.log.sync() {
                fail(
                    &shared,
                    format!("relaxed flush failed: {}", shared.log.store_error(e)),
                );
            }
        }
    }
    // Last handle dropped: flush relaxed writes, close every watcher.
    let _ = shared.log.sync();
    let mut inner = shared.lock();
    for s in inner.watchers.drain(..) {
        *s.state.reason.lock().unwrap_or_else(|p| p.into_inner()) =
            Some("the store was closed".into());
    }
}

fn fail(shared: &Shared, why: String) {
    let mut f = shared.failed.lock().unwrap_or_else(|p| p.into_inner());
    if f.is_none() {
        *f = Some(why);
    }
}

/// One group commit. Returns whether anything was committed.
fn commit_group(shared: &Shared, batch: &mut Vec<Request>, durable: bool) -> bool {
    if let Some(why) = shared
        .failed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    {
        for r in batch.drain(..) {
            let _ = r.reply.send(Err(StoreError::Backend(format!(
                "the store refuses writes after a failed write: {why}"
            ))));
        }
        return false;
    }
    let (now_ms, _) = now();
    let mut accepted = Vec::with_capacity(batch.len());
    let pending: Vec<Committed> = {
        let mut inner = shared.lock();
        for r in batch.drain(..) {
            let ctx = WriteContext {
                actor: r.actor,
                uid: uuid::Uuid::new_v4().to_string(),
            };
            match inner.core.prepare(r.write, &ctx, now_ms) {
                Ok(p) => accepted.push((r.reply, p.object, p.result)),
                Err(e) => {
                    let _ = r.reply.send(Err(e));
                }
            }
        }
        inner.core.pending().to_vec()
    };
    if pending.is_empty() {
        return false;
    }
    let written = shared.log.append(&pending, durable);
    let mut inner = shared.lock();
    match written {
        Ok(()) => {
            let committed = inner.core.commit_prepared(now_ms);
            shared.groups.fetch_add(1, Ordering::Relaxed);
            shared
                .writes
                .fetch_add(committed.len() as u64, Ordering::Relaxed);
            let objects: Vec<Arc<Value>> = accepted.iter().map(|(_, o, _)| o.clone()).collect();
            publish(
                &mut inner.watchers,
                &committed,
                &objects,
                shared.config.watcher_buffer,
            );
            drop(inner);
            for (reply, _, result) in accepted {
                let _ = reply.send(Ok(result));
            }
            true
        }
        Err(e) => {
            inner.core.abort_prepared();
            drop(inner);
            let err = shared.log.store_error(e);
            fail(shared, err.to_string());
            for (reply, _, _) in accepted {
                let _ = reply.send(Err(err.clone()));
            }
            false
        }
    }
}

/// Hands each event to every watcher that sees it (each object parsed at most once for all
/// of them). A watcher whose buffer is full is cut off (it resumes from its last revision); a
/// watcher whose receiver is gone is dropped.
fn publish(
    watchers: &mut Vec<Slot>,
    committed: &[Committed],
    objects: &[Arc<Value>],
    buffer: usize,
) {
    let mut dead = vec![false; watchers.len()];
    for (c, object) in committed.iter().zip(objects) {
        let views = Views::with_object(c, object.clone());
        // Watchers without selectors all get the same event: build it once, clone it.
        let plain = std::cell::OnceCell::new();
        for (i, slot) in watchers.iter().enumerate() {
            if dead[i] || c.revision <= slot.after || !slot.filter.covers(&c.key) {
                continue;
            }
            let ev = if slot.filter.has_selectors() {
                match slot.filter.convert(&views) {
                    Some(ev) => ev,
                    None => continue,
                }
            } else {
                plain
                    .get_or_init(|| c.event_with(c.event_type, object.clone()))
                    .clone()
            };
            match slot.tx.try_send(WatchItem::Event(ev)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    *slot.state.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                        "watcher too slow: its buffer of {buffer} events was full at revision {}; \
                         resume from the last revision received",
                        c.revision
                    ));
                    dead[i] = true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => dead[i] = true,
            }
        }
    }
    let mut i = 0;
    watchers.retain(|_| {
        i += 1;
        !dead[i - 1]
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
