//! The deterministic core of the volume controller: the PV controller (binder, reclaim), the
//! pvc-protection and pv-protection controllers, and the event recorder, as one state machine.
//!
//! It never awaits, never reads a clock (`now` comes with every `handle_*` call), never
//! iterates a HashMap. The driver (or a test, or the simulator) drives it like this:
//!
//! 1. feed one input: `handle_volume_event` / `handle_claim_event` / `handle_class_event` /
//!    `handle_pod_event` (watch notifications), `handle_completion` (a request's outcome) or
//!    `handle_timeout` (the resync timer);
//! 2. drain `poll_output` until `None`, performing each request and reporting its outcome
//!    through `handle_completion`;
//! 3. call `handle_timeout` at `poll_timeout`.
//!
//! **One write per decision.** A sync emits at most one write for its object(s), then waits:
//! the objects it writes are locked until the completion arrives; the committed object goes
//! into the cache (read your writes) and the sync runs again to decide the next step. So the
//! four-step bind of §4.5 is four decisions, each from observed state, and a crash (or a
//! Conflict) between any two steps is an ordinary case the next sync repairs.
//!
//! **Conflicts.** A 409 marks the written object stale at the version the core sent; nothing
//! touches it until a newer version arrives (watch or relist), which re-runs the sync that
//! lost. That is how two controller replicas never bind one PV to two claims: the PV's
//! claimRef write carries the resourceVersion the replica read, so only one of two racing
//! writes commits, and the loser re-decides from the winner's PV.
//!
//! # Layout
//! - `types`     — inputs/outputs: `WatchEvent`, `Request`, `Completion`, `Millis`.
//! - `cache`     — object caches (newer resourceVersion wins) and the binder's indexes.
//! - `binder`    — syncClaim / syncVolume / bind / reclaim (volume-binding.md §4, §5.1, §7).
//! - `protection`— the pvc-protection and pv-protection controllers (§8).
//! - `provision` — the seam for dynamic provisioning (§6).
//! - `events`    — Event objects with client-go's count/lastTimestamp correlation.
//! - `metrics`   — counters for `/metrics`.

pub mod binder;
pub mod cache;
pub mod events;
pub mod metrics;
pub mod model;
pub mod protection;
pub mod provision;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use cache::{meta_key, rv_of, Cache};
use events::{EventHandle, Recorder};
use metrics::Metrics;
pub use types::*;

/// Settings of the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Period of the full resync of PVs and PVCs (`--pvclaimbinder-sync-period`, 15 s).
    pub resync_period_ms: u64,
    /// Run the pvc-protection and pv-protection controllers.
    pub protection: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            resync_period_ms: 15_000,
            protection: true,
        }
    }
}

/// Hot items run between two cold (resync) items while both lanes hold work.
const COLD_EVERY: u32 = 16;

/// The queue lane of a work item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// The next step of an operation whose previous write just committed (bind step 2 after
    /// step 1…): served first, so operations under way finish before new ones start and a
    /// backlog of claims is bound claim after claim rather than all step 1s, then all
    /// step 2s…
    Next,
    Hot,
    Cold,
}

/// A unit of work in the queue.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Work {
    /// syncClaim for `namespace/name`.
    Claim(String),
    /// syncVolume for a PV name.
    Volume(String),
    /// pvc-protection for `namespace/name`.
    PvcProtection(String),
    /// pv-protection for a PV name.
    PvProtection(String),
}

/// An object the core can lock (a write in flight) or consider stale (a write conflicted).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Obj {
    Volume(String),
    Claim(String),
}

/// An event to record once a write commits, about the committed object (upstream's
/// `updateClaimStatusWithEvent` / `updateVolumePhaseWithEvent` emit only when the phase
/// really changed).
#[derive(Clone, Debug)]
pub(crate) struct CommitEvent {
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug)]
enum PendingKind {
    Write {
        obj: Obj,
        sent_rv: Option<u64>,
        on_commit: Option<CommitEvent>,
        counts_bind: bool,
    },
    GetClaim {
        claim_key: String,
        ref_uid: String,
        volume: String,
    },
    ListPods {
        claim_key: String,
    },
    Event(EventHandle),
}

#[derive(Debug)]
struct Pending {
    kind: PendingKind,
    locks: Vec<Obj>,
    /// Work to run again once the request finished (successfully or not).
    then: Vec<Work>,
}

/// The volume controller's state machine.
pub struct VolumeControllerCore {
    config: CoreConfig,
    pub(crate) cache: Cache,
    /// Which watches have delivered their first full list: PV, PVC, StorageClass, Pod.
    synced: [bool; 4],
    started: bool,
    /// Continuations (the `then` of a committed write): before `queue`.
    next: VecDeque<Work>,
    /// Work from watch events, first come first served.
    queue: VecDeque<Work>,
    /// Work from the periodic resync: runs when `queue` is empty, or every
    /// `COLD_EVERY`-th item, so a resync of every object never delays fresh work behind it
    /// (and is never starved by it either).
    cold: VecDeque<Work>,
    /// Queued work and its lane; an entry in a lane whose state says otherwise is stale.
    queued: BTreeMap<Work, Lane>,
    /// Hot items taken since the last cold one.
    hot_streak: u32,
    outputs: VecDeque<Output>,
    next_id: u64,
    pending: BTreeMap<RequestId, Pending>,
    locked: BTreeSet<Obj>,
    /// Objects whose write conflicted at this resourceVersion; untouched until newer.
    stale: BTreeMap<Obj, u64>,
    /// Volumes that are locked or stale: excluded from matching.
    pub(crate) busy_volumes: BTreeSet<String>,
    /// Work to re-run when an object is unlocked or changes.
    waiters: BTreeMap<Obj, BTreeSet<Work>>,
    /// (claim key, uid) pairs a live GET showed to be gone.
    pub(crate) absent_claims: BTreeSet<(String, String)>,
    /// Live pod lists fetched for a pvc-protection decision, by claim key.
    pub(crate) pod_lists: BTreeMap<String, Vec<Pod>>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    next_resync: Option<Millis>,
    pub(crate) now: Millis,
}

impl VolumeControllerCore {
    pub fn new(config: CoreConfig, metrics: Arc<Metrics>) -> Self {
        VolumeControllerCore {
            config,
            cache: Cache::default(),
            synced: [false; 4],
            started: false,
            next: VecDeque::new(),
            queue: VecDeque::new(),
            cold: VecDeque::new(),
            queued: BTreeMap::new(),
            hot_streak: 0,
            outputs: VecDeque::new(),
            next_id: 0,
            pending: BTreeMap::new(),
            locked: BTreeSet::new(),
            stale: BTreeMap::new(),
            busy_volumes: BTreeSet::new(),
            waiters: BTreeMap::new(),
            absent_claims: BTreeSet::new(),
            pod_lists: BTreeMap::new(),
            recorder: Recorder::default(),
            metrics,
            next_resync: None,
            now: Millis(0),
        }
    }

    /// The shared counters (also readable while a driver owns the core).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The cached PV, if any (tests, debugging).
    pub fn volume(&self, name: &str) -> Option<&PersistentVolume> {
        self.cache.volumes.get(name).map(|v| &**v)
    }

    /// The cached PVC `namespace/name`, if any.
    pub fn claim(&self, key: &str) -> Option<&PersistentVolumeClaim> {
        self.cache.claims.get(key).map(|c| &**c)
    }

    /// Work waiting plus requests in flight; zero means quiescent.
    pub fn backlog(&self) -> usize {
        self.queued.len() + self.pending.len() + self.outputs.len()
    }

    /// Is work queued that `poll_output` would run (false before the caches are synced)?
    /// A driver using [`Self::poll_output_bounded`] comes back while this is true.
    pub fn has_queued_work(&self) -> bool {
        self.started && !self.queued.is_empty()
    }

    // ------------------------------------------------------------------ inputs

    /// A PersistentVolume watch notification.
    pub fn handle_volume_event(&mut self, now: Millis, ev: WatchEvent<PersistentVolume>) {
        self.now = now;
        match ev {
            WatchEvent::Applied(pv) => self.apply_volume(pv),
            WatchEvent::Deleted(pv) => self.delete_volume(&pv),
            WatchEvent::Relisted(list) => {
                let names: BTreeSet<String> = list
                    .iter()
                    .filter_map(|p| p.metadata.name.clone())
                    .collect();
                let gone: Vec<PersistentVolume> = self
                    .cache
                    .volumes
                    .iter()
                    .filter(|(n, _)| !names.contains(*n))
                    .map(|(_, v)| (**v).clone())
                    .collect();
                for pv in gone {
                    self.delete_volume(&pv);
                }
                for pv in list {
                    self.apply_volume(pv);
                }
                self.mark_synced(0, now);
            }
        }
    }

    /// A PersistentVolumeClaim watch notification.
    pub fn handle_claim_event(&mut self, now: Millis, ev: WatchEvent<PersistentVolumeClaim>) {
        self.now = now;
        match ev {
            WatchEvent::Applied(c) => self.apply_claim(c),
            WatchEvent::Deleted(c) => self.delete_claim(&c),
            WatchEvent::Relisted(list) => {
                let keys: BTreeSet<String> = list.iter().map(|c| meta_key(&c.metadata)).collect();
                let gone: Vec<PersistentVolumeClaim> = self
                    .cache
                    .claims
                    .iter()
                    .filter(|(k, _)| !keys.contains(*k))
                    .map(|(_, v)| (**v).clone())
                    .collect();
                for c in gone {
                    self.delete_claim(&c);
                }
                for c in list {
                    self.apply_claim(c);
                }
                self.mark_synced(1, now);
            }
        }
    }

    /// A StorageClass watch notification.
    pub fn handle_class_event(&mut self, now: Millis, ev: WatchEvent<StorageClass>) {
        self.now = now;
        match ev {
            WatchEvent::Applied(sc) => self.apply_class(sc),
            WatchEvent::Deleted(sc) => {
                if let Some(n) = &sc.metadata.name {
                    self.cache.classes.remove(n);
                }
            }
            WatchEvent::Relisted(list) => {
                self.cache.classes.clear();
                for sc in list {
                    self.apply_class(sc);
                }
                self.mark_synced(2, now);
            }
        }
    }

    /// A Pod watch notification.
    pub fn handle_pod_event(&mut self, now: Millis, ev: WatchEvent<Pod>) {
        self.now = now;
        match ev {
            WatchEvent::Applied(p) => {
                let key = meta_key(&p.metadata);
                let claims = cache::pod_claim_keys(&p);
                if self.cache.upsert_pod(p) {
                    let _ = key;
                    self.enqueue_protection_for(claims);
                }
            }
            WatchEvent::Deleted(p) => {
                let key = meta_key(&p.metadata);
                let old = self.cache.remove_pod(&key).unwrap_or(p);
                self.enqueue_protection_for(cache::pod_claim_keys(&old));
            }
            WatchEvent::Relisted(list) => {
                let keys: BTreeSet<String> = list.iter().map(|p| meta_key(&p.metadata)).collect();
                let gone: Vec<String> = self
                    .cache
                    .pods
                    .keys()
                    .filter(|k| !keys.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    if let Some(old) = self.cache.remove_pod(&k) {
                        self.enqueue_protection_for(cache::pod_claim_keys(&old));
                    }
                }
                for p in list {
                    let claims = cache::pod_claim_keys(&p);
                    if self.cache.upsert_pod(p) {
                        self.enqueue_protection_for(claims);
                    }
                }
                self.mark_synced(3, now);
            }
        }
    }

    /// The outcome of request `id`.
    pub fn handle_completion(&mut self, now: Millis, id: RequestId, completion: Completion) {
        self.now = now;
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        self.metrics
            .inflight
            .store(self.pending.len() as u64, Relaxed);
        let locks = p.locks.clone();
        self.complete(p, completion);
        for o in &locks {
            self.wake(o);
        }
    }

    fn complete(&mut self, p: Pending, completion: Completion) {
        for o in &p.locks {
            self.locked.remove(o);
            if let Obj::Volume(n) = o {
                self.refresh_busy(n);
            }
        }
        match p.kind {
            PendingKind::Event(handle) => {
                let (ok, not_found) = match completion {
                    Completion::Event(_) => (true, false),
                    Completion::NotFound => (false, true),
                    _ => (false, false),
                };
                if let Some(req) = self.recorder.completed(&handle, ok, not_found) {
                    self.send(
                        req,
                        Pending {
                            kind: PendingKind::Event(handle),
                            locks: vec![],
                            then: vec![],
                        },
                    );
                }
            }
            PendingKind::Write {
                obj,
                sent_rv,
                on_commit,
                counts_bind,
            } => match completion {
                Completion::Volume(pv) => {
                    let name = pv.metadata.name.clone().unwrap_or_default();
                    if let Some(ev) = on_commit {
                        self.record(volume_ref(&pv), ev.type_, ev.reason, &ev.message);
                    }
                    self.apply_volume(pv);
                    self.wake(&Obj::Volume(name));
                    for w in p.then {
                        self.enqueue_next(w);
                    }
                }
                Completion::Claim(c) => {
                    let key = meta_key(&c.metadata);
                    if counts_bind {
                        Metrics::inc(&self.metrics.binds);
                    }
                    if let Some(ev) = on_commit {
                        self.record(claim_ref(&c), ev.type_, ev.reason, &ev.message);
                    }
                    self.apply_claim(c);
                    self.wake(&Obj::Claim(key));
                    for w in p.then {
                        self.enqueue_next(w);
                    }
                }
                Completion::Conflict | Completion::NotFound => {
                    if matches!(completion, Completion::Conflict) {
                        Metrics::inc(&self.metrics.conflicts);
                    }
                    // The cache is behind the API server: wait for the newer version (or the
                    // deletion) before deciding again about this object.
                    let cached_rv = self.cached_rv(&obj);
                    if let Some(rv) = sent_rv {
                        if cached_rv.is_none_or(|c| c <= rv) && self.exists(&obj) {
                            self.stale.insert(obj.clone(), rv);
                            if let Obj::Volume(n) = &obj {
                                self.refresh_busy(n);
                            }
                        }
                    }
                    if self.stale.contains_key(&obj) {
                        for w in p.then {
                            self.waiters.entry(obj.clone()).or_default().insert(w);
                        }
                    } else {
                        for w in p.then {
                            self.enqueue_next(w);
                        }
                    }
                }
                _ => {
                    // Failed: upstream leaves it to the next event or resync.
                    Metrics::inc(&self.metrics.write_errors);
                    self.wake(&obj);
                }
            },
            PendingKind::GetClaim {
                claim_key,
                ref_uid,
                volume,
            } => {
                match completion {
                    Completion::ClaimRead(Some(c)) => {
                        if c.metadata.uid.as_deref() == Some(ref_uid.as_str()) {
                            self.apply_claim(c);
                        } else {
                            self.absent_claims.insert((claim_key, ref_uid));
                        }
                    }
                    Completion::ClaimRead(None) | Completion::NotFound => {
                        self.absent_claims.insert((claim_key, ref_uid));
                    }
                    _ => {
                        // The API server did not answer: decide nothing (releasing would be
                        // a guess); the next event or resync asks again.
                        return;
                    }
                }
                self.enqueue(Work::Volume(volume));
            }
            PendingKind::ListPods { claim_key } => {
                if let Completion::PodList(pods) = completion {
                    self.pod_lists.insert(claim_key.clone(), pods);
                    self.enqueue(Work::PvcProtection(claim_key));
                } else {
                    // Keep the finalizer; a pod event or the resync re-checks.
                }
            }
        }
    }

    /// The resync timer fired (call when `now >= poll_timeout()`).
    pub fn handle_timeout(&mut self, now: Millis) {
        self.now = now;
        let Some(due) = self.next_resync else { return };
        if now < due {
            return;
        }
        Metrics::inc(&self.metrics.resyncs);
        self.next_resync = Some(now.plus(self.config.resync_period_ms));
        self.enqueue_everything();
    }

    // ------------------------------------------------------------------ outputs

    /// The next request for the driver, running queued syncs as needed (all of them, if
    /// none emits a request).
    pub fn poll_output(&mut self) -> Option<Output> {
        let mut budget = usize::MAX;
        self.poll_output_bounded(&mut budget)
    }

    /// Like [`Self::poll_output`], but runs at most `*budget` queued syncs (decrementing it):
    /// `None` with [`Self::has_queued_work`] true means "budget spent, more to do". A driver
    /// uses it to look at new inputs between slices of a long queue (a resync of every
    /// object) instead of running the whole queue in one go.
    pub fn poll_output_bounded(&mut self, budget: &mut usize) -> Option<Output> {
        loop {
            if let Some(o) = self.outputs.pop_front() {
                return Some(o);
            }
            if !self.started || *budget == 0 {
                return None;
            }
            let work = self.next_work()?;
            *budget -= 1;
            self.process(work);
        }
    }

    /// Takes the next work item: continuations, then hot work, and a cold one every
    /// `COLD_EVERY` items or when nothing else is left.
    fn next_work(&mut self) -> Option<Work> {
        loop {
            let warm = !self.next.is_empty() || !self.queue.is_empty();
            let take_cold = (self.hot_streak >= COLD_EVERY || !warm) && !self.cold.is_empty();
            let (w, lane) = if take_cold {
                self.hot_streak = 0;
                (self.cold.pop_front()?, Lane::Cold)
            } else if let Some(w) = self.next.pop_front() {
                self.hot_streak += 1;
                (w, Lane::Next)
            } else {
                self.hot_streak += 1;
                (self.queue.pop_front()?, Lane::Hot)
            };
            if self.queued.get(&w) == Some(&lane) {
                self.queued.remove(&w);
                self.metrics
                    .queue_depth
                    .store(self.queued.len() as u64, Relaxed);
                return Some(w);
            }
            // A stale entry (promoted to the hot lane, or already run): skip it.
        }
    }

    /// When `handle_timeout` is due next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.next_resync
    }

    // ------------------------------------------------------------------ internals

    fn mark_synced(&mut self, i: usize, now: Millis) {
        self.synced[i] = true;
        if !self.started && self.synced.iter().all(|s| *s) {
            // Like WaitForCacheSync: decide nothing before every cache holds a full list.
            self.started = true;
            self.next_resync = Some(now.plus(self.config.resync_period_ms));
            self.enqueue_everything();
        }
    }

    /// The periodic resync (and the start after cache sync): every claim and volume, in the
    /// cold lane; the protection controllers only for objects they have something to do for
    /// (upstream's protection controllers enqueue exactly those on add/update).
    fn enqueue_everything(&mut self) {
        let vols: Vec<String> = self.cache.volumes.keys().cloned().collect();
        let claims: Vec<String> = self.cache.claims.keys().cloned().collect();
        for c in &claims {
            self.enqueue_cold(Work::Claim(c.clone()));
        }
        for v in &vols {
            self.enqueue_cold(Work::Volume(v.clone()));
        }
        if self.config.protection {
            for c in claims {
                let due = self.cache.claims.get(&c).is_some_and(|c| {
                    protection::needs_sync(&c.metadata, apiserver::api::FINALIZER_PVC_PROTECTION)
                });
                if due {
                    self.enqueue_cold(Work::PvcProtection(c));
                }
            }
            for v in vols {
                let due = self.cache.volumes.get(&v).is_some_and(|pv| {
                    protection::needs_sync(&pv.metadata, apiserver::api::FINALIZER_PV_PROTECTION)
                });
                if due {
                    self.enqueue_cold(Work::PvProtection(v));
                }
            }
        }
    }

    pub(crate) fn enqueue(&mut self, w: Work) {
        match self.queued.get_mut(&w) {
            Some(Lane::Hot | Lane::Next) => return,
            // Promoted: the entry left in the cold lane becomes stale.
            Some(lane) => *lane = Lane::Hot,
            None => {
                self.queued.insert(w.clone(), Lane::Hot);
            }
        }
        self.queue.push_back(w);
        self.metrics
            .queue_depth
            .store(self.queued.len() as u64, Relaxed);
    }

    fn enqueue_cold(&mut self, w: Work) {
        if self.queued.contains_key(&w) {
            return;
        }
        self.queued.insert(w.clone(), Lane::Cold);
        self.cold.push_back(w);
        self.metrics
            .queue_depth
            .store(self.queued.len() as u64, Relaxed);
    }

    /// Queues the continuation of an operation in the first lane (promoting it if queued).
    fn enqueue_next(&mut self, w: Work) {
        match self.queued.get_mut(&w) {
            Some(Lane::Next) => return,
            Some(lane) => *lane = Lane::Next,
            None => {
                self.queued.insert(w.clone(), Lane::Next);
            }
        }
        self.next.push_back(w);
        self.metrics
            .queue_depth
            .store(self.queued.len() as u64, Relaxed);
    }

    fn enqueue_protection_for(&mut self, claim_keys: Vec<String>) {
        if self.config.protection {
            for k in claim_keys {
                self.enqueue(Work::PvcProtection(k));
            }
        }
    }

    fn apply_volume(&mut self, pv: PersistentVolume) {
        if cache::is_gone(&pv.metadata) {
            self.delete_volume(&pv);
            return;
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        let rv = rv_of(&pv.metadata);
        // pv-protection has work only for a volume lacking its finalizer or being deleted
        // with it (upstream `pvAddedUpdated`).
        let protect = self.config.protection
            && protection::needs_sync(&pv.metadata, apiserver::api::FINALIZER_PV_PROTECTION);
        if self.cache.upsert_volume(pv) {
            self.clear_stale_if_newer(&Obj::Volume(name.clone()), rv);
            self.enqueue(Work::Volume(name.clone()));
            if protect {
                self.enqueue(Work::PvProtection(name));
            }
        }
    }

    fn delete_volume(&mut self, pv: &PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let removed = self.cache.remove_volume(&name);
        self.cache.bury_volume(&name, &pv.metadata);
        let obj = Obj::Volume(name.clone());
        self.stale.remove(&obj);
        self.refresh_busy(&name);
        self.wake(&obj);
        // A deleted volume makes its claim Lost promptly (upstream deleteVolume).
        let last = removed.as_deref().unwrap_or(pv);
        if let Some(r) = last.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
            self.enqueue(Work::Claim(format!(
                "{}/{}",
                r.namespace.as_deref().unwrap_or(""),
                r.name.as_deref().unwrap_or("")
            )));
        }
    }

    fn apply_claim(&mut self, c: PersistentVolumeClaim) {
        if cache::is_gone(&c.metadata) {
            self.delete_claim(&c);
            return;
        }
        let key = meta_key(&c.metadata);
        let rv = rv_of(&c.metadata);
        // pvc-protection has work only for a claim lacking its finalizer or being deleted
        // with it (upstream `pvcAddedUpdated`).
        let protect = self.config.protection
            && protection::needs_sync(&c.metadata, apiserver::api::FINALIZER_PVC_PROTECTION);
        if self.cache.upsert_claim(c) {
            self.clear_stale_if_newer(&Obj::Claim(key.clone()), rv);
            self.enqueue(Work::Claim(key.clone()));
            if protect {
                self.enqueue(Work::PvcProtection(key));
            }
        }
    }

    fn delete_claim(&mut self, c: &PersistentVolumeClaim) {
        let key = meta_key(&c.metadata);
        let removed = self.cache.remove_claim(&key);
        self.cache.bury_claim(&key, &c.metadata);
        let obj = Obj::Claim(key.clone());
        self.stale.remove(&obj);
        self.pod_lists.remove(&key);
        self.wake(&obj);
        // A deleted claim releases its volume promptly (upstream deleteClaim), and any
        // volume whose claimRef still names it (a bind cut short) is re-checked too.
        let last = removed.as_deref().unwrap_or(c);
        if let Some(v) = last.spec.as_ref().and_then(|s| s.volume_name.clone()) {
            if !v.is_empty() {
                self.enqueue(Work::Volume(v));
            }
        }
        for v in self.cache.volumes_referencing(&key) {
            self.enqueue(Work::Volume(v));
        }
    }

    fn apply_class(&mut self, sc: StorageClass) {
        let name = sc.metadata.name.clone().unwrap_or_default();
        if self.cache.upsert_class(sc) {
            // Claims waiting for this class (missing class, no default yet) re-sync now
            // rather than at the next resync.
            let waiting: Vec<String> = self
                .cache
                .claims
                .iter()
                .filter(|(_, c)| {
                    !apiserver::api::has_annotation(&c.metadata, apiserver::api::ANN_BIND_COMPLETED)
                        && (apiserver::api::claim_storage_class(c) == name
                            || c.spec
                                .as_ref()
                                .is_none_or(|s| s.storage_class_name.is_none()))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in waiting {
                self.enqueue(Work::Claim(k));
            }
        }
    }

    fn clear_stale_if_newer(&mut self, obj: &Obj, rv: Option<u64>) {
        if let Some(stale_rv) = self.stale.get(obj) {
            if rv.is_none_or(|r| r > *stale_rv) {
                self.stale.remove(obj);
                if let Obj::Volume(n) = obj {
                    self.refresh_busy(n);
                }
                self.wake(obj);
            }
        }
    }

    fn cached_rv(&self, obj: &Obj) -> Option<u64> {
        match obj {
            Obj::Volume(n) => self.cache.volumes.get(n).and_then(|v| rv_of(&v.metadata)),
            Obj::Claim(k) => self.cache.claims.get(k).and_then(|c| rv_of(&c.metadata)),
        }
    }

    fn exists(&self, obj: &Obj) -> bool {
        match obj {
            Obj::Volume(n) => self.cache.volumes.contains_key(n),
            Obj::Claim(k) => self.cache.claims.contains_key(k),
        }
    }

    pub(crate) fn refresh_busy(&mut self, name: &str) {
        let o = Obj::Volume(name.to_string());
        let busy = self.locked.contains(&o) || self.stale.contains_key(&o);
        if busy {
            self.busy_volumes.insert(name.to_string());
        } else {
            self.busy_volumes.remove(name);
        }
        self.cache.set_hidden(name, busy);
    }

    /// Is `obj` locked by a write in flight or known stale?
    pub(crate) fn is_busy(&self, obj: &Obj) -> bool {
        self.locked.contains(obj) || self.stale.contains_key(obj)
    }

    /// Re-run `work` when `obj` is unlocked or changes.
    pub(crate) fn wait_on(&mut self, obj: Obj, work: Work) {
        self.waiters.entry(obj).or_default().insert(work);
    }

    fn wake(&mut self, obj: &Obj) {
        if self.is_busy(obj) {
            return;
        }
        if let Some(ws) = self.waiters.remove(obj) {
            for w in ws {
                self.enqueue(w);
            }
        }
    }

    fn send(&mut self, request: Request, pending: Pending) -> RequestId {
        self.next_id += 1;
        let id = RequestId(self.next_id);
        for o in &pending.locks {
            self.locked.insert(o.clone());
            if let Obj::Volume(n) = o {
                let n = n.clone();
                self.refresh_busy(&n);
            }
        }
        self.pending.insert(id, pending);
        self.metrics
            .inflight
            .store(self.pending.len() as u64, Relaxed);
        self.outputs.push_back(Output { id, request });
        id
    }

    /// Sends one write. `locks` are held until it completes; `then` runs afterwards.
    pub(crate) fn write(
        &mut self,
        request: Request,
        locks: Vec<Obj>,
        then: Vec<Work>,
        on_commit: Option<CommitEvent>,
        counts_bind: bool,
    ) {
        Metrics::inc(&self.metrics.writes);
        let (obj, sent_rv) = match &request {
            Request::UpdateVolume(pv) | Request::UpdateVolumeStatus(pv) => (
                Obj::Volume(pv.metadata.name.clone().unwrap_or_default()),
                rv_of(&pv.metadata),
            ),
            Request::UpdateClaim(c) | Request::UpdateClaimStatus(c) => {
                (Obj::Claim(meta_key(&c.metadata)), rv_of(&c.metadata))
            }
            _ => unreachable!("write() is only used for object updates"),
        };
        let mut locks = locks;
        if !locks.contains(&obj) {
            locks.push(obj.clone());
        }
        self.send(
            request,
            Pending {
                kind: PendingKind::Write {
                    obj,
                    sent_rv,
                    on_commit,
                    counts_bind,
                },
                locks,
                then,
            },
        );
    }

    /// Asks for a live GET of a claim before a volume is released.
    pub(crate) fn get_claim(&mut self, claim_key: &str, ref_uid: &str, volume: &str) {
        let (ns, name) = claim_key.split_once('/').unwrap_or(("", claim_key));
        self.send(
            Request::GetClaim {
                namespace: ns.to_string(),
                name: name.to_string(),
            },
            Pending {
                kind: PendingKind::GetClaim {
                    claim_key: claim_key.to_string(),
                    ref_uid: ref_uid.to_string(),
                    volume: volume.to_string(),
                },
                locks: vec![Obj::Volume(volume.to_string())],
                then: vec![],
            },
        );
    }

    /// Asks for a live pod list before a pvc-protection finalizer is removed.
    pub(crate) fn list_pods(&mut self, claim_key: &str) {
        let (ns, _) = claim_key.split_once('/').unwrap_or(("", claim_key));
        self.send(
            Request::ListPods {
                namespace: ns.to_string(),
            },
            Pending {
                kind: PendingKind::ListPods {
                    claim_key: claim_key.to_string(),
                },
                locks: vec![Obj::Claim(claim_key.to_string())],
                then: vec![],
            },
        );
    }

    /// Records an event now.
    pub(crate) fn record(
        &mut self,
        involved: ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        Metrics::inc(&self.metrics.events);
        if let Some(er) = self
            .recorder
            .record(self.now, involved, type_, reason, message)
        {
            self.send(
                er.request,
                Pending {
                    kind: PendingKind::Event(er.handle),
                    locks: vec![],
                    then: vec![],
                },
            );
        }
    }

    fn process(&mut self, work: Work) {
        match work {
            Work::Claim(k) => {
                Metrics::inc(&self.metrics.claim_syncs);
                self.sync_claim(&k)
            }
            Work::Volume(n) => {
                Metrics::inc(&self.metrics.volume_syncs);
                self.sync_volume(&n)
            }
            Work::PvcProtection(k) => {
                if self.config.protection {
                    Metrics::inc(&self.metrics.protection_syncs);
                    self.sync_pvc_protection(&k)
                }
            }
            Work::PvProtection(n) => {
                if self.config.protection {
                    Metrics::inc(&self.metrics.protection_syncs);
                    self.sync_pv_protection(&n)
                }
            }
        }
    }
}

/// `GetReference` of a claim: what Events and claimRef point at.
pub fn claim_ref(c: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: c.metadata.namespace.clone(),
        name: c.metadata.name.clone(),
        uid: c.metadata.uid.clone(),
        resource_version: c.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// `GetReference` of a volume (cluster-scoped: no namespace).
pub fn volume_ref(v: &PersistentVolume) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolume".into()),
        namespace: None,
        name: v.metadata.name.clone(),
        uid: v.metadata.uid.clone(),
        resource_version: v.metadata.resource_version.clone(),
        field_path: None,
    }
}
