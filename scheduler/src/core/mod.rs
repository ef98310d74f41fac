//! The scheduler's deterministic core.
//!
//! `Scheduler` is a plain state machine: it never awaits, never reads a clock (every input
//! carries `now`), iterates only ordered maps, and never touches the network. The driver (or a
//! test, or the simulator) feeds it:
//!
//! 1. watch events through `handle_pod`, `handle_node`, `handle_persistent_volume`,
//!    `handle_persistent_volume_claim`, `handle_storage_class`, `handle_csi_storage_capacity`;
//! 2. the outcome of each request through `handle_completion` (a 409 is an ordinary input);
//! 3. `handle_timeout` whenever `poll_timeout` is due — scheduling cycles run there;
//!
//! and performs whatever `poll_output` returns: bindings, PV/PVC updates carrying the
//! resourceVersion they were computed from, pod status patches and events.

pub mod assume;
pub mod cluster;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod quantity;
pub mod queue;
pub mod selectors;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use k8s_openapi::api::core::v1::{
    Event, EventSource, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
    PodCondition,
};
use k8s_openapi::api::storage::v1::{CSIStorageCapacity, StorageClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::json;

use cluster::{is_terminal, key_of, ClusterView};
use framework::{names, CycleState, Diagnosis, NodeInfo, Status};
use metrics::{AttemptResult, Metrics};
use plugins::volume_binding::{self, AssumedVolumes, PodVolumes};
use queue::{PodKey, QueueConfig, SchedulingQueue};

/// Milliseconds since the Unix epoch, as the driver's clock reads it. Event timestamps and
/// every timer (backoff, flush, bind timeout) use it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Millis(pub u64);

/// A watch event in the kube-runtime vocabulary, already folded: a relist arrives as one
/// `Restarted` with the complete list.
#[derive(Debug, Clone)]
pub enum WatchEvent<K> {
    /// Added or modified.
    Applied(K),
    /// Deleted (the last known state).
    Deleted(K),
    /// The complete current list (initial list or relist).
    Restarted(Vec<K>),
}

/// Identifies a request until its completion comes back.
pub type RequestId = u64;

/// A write the driver performs on the scheduler's behalf.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// PUT the PV (its `metadata.resourceVersion` is the precondition).
    UpdatePersistentVolume(PersistentVolume),
    /// PUT the PVC (its `metadata.resourceVersion` is the precondition).
    UpdatePersistentVolumeClaim(PersistentVolumeClaim),
    /// POST `pods/binding` (the pod's uid is the precondition).
    Bind {
        /// Pod namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// Pod uid.
        uid: String,
        /// Target node.
        node: String,
    },
    /// JSON merge patch on `pods/status` (the patch carries the resourceVersion read).
    PatchPodStatus {
        /// Pod namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// The merge patch.
        patch: serde_json::Value,
    },
    /// POST a core/v1 Event.
    CreateEvent(Box<Event>),
    /// JSON merge patch on an Event (count and lastTimestamp of a repeated event).
    PatchEvent {
        /// Event namespace.
        namespace: String,
        /// Event name.
        name: String,
        /// The merge patch.
        patch: serde_json::Value,
    },
}

/// One output of the core.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Report the outcome with `handle_completion(id, ..)`.
    pub id: RequestId,
    /// What to do.
    pub request: Request,
}

/// How a request ended. Rejections are expected outcomes, not errors.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Committed; the object the server returned (or its Status for `pods/binding`).
    Done(serde_json::Value),
    /// A PV update committed: the PV the server returned, decoded (as the driver reads it).
    Volume(Box<PersistentVolume>),
    /// A PVC update committed: the PVC the server returned, already decoded.
    Claim(Box<PersistentVolumeClaim>),
    /// 409: the resourceVersion read is stale, or the pod is already bound. The message is the
    /// server's Status message.
    Conflict(String),
    /// 404.
    NotFound(String),
    /// Anything else (transport, 5xx, 4xx); the message says what.
    Failed(String),
}

impl Completion {
    fn message(&self) -> String {
        match self {
            Completion::Done(_) | Completion::Volume(_) | Completion::Claim(_) => String::new(),
            Completion::Conflict(m) | Completion::NotFound(m) | Completion::Failed(m) => m.clone(),
        }
    }
}

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Pods whose `spec.schedulerName` equals this are ours ("default-scheduler").
    pub scheduler_name: String,
    /// Backoff and flush timings.
    pub queue: QueueConfig,
    /// VolumeBindingArgs.bindTimeoutSeconds, in ms (600 s).
    pub bind_timeout_ms: u64,
    /// Check pending volume bindings only every `bind_poll_interval_ms`, as upstream's
    /// `wait.Poll` does, instead of on the watch event that can complete them.
    pub bind_poll: bool,
    /// The poll interval when `bind_poll` is on (1 s upstream).
    pub bind_poll_interval_ms: u64,
    /// Scheduling cycles per `handle_timeout`, so that watch events and completions are not
    /// starved by a long active queue.
    pub max_cycles_per_tick: usize,
    /// `false` switches off the assume cache — a teaching/break switch used only by
    /// `bonsai race --break assume-cache`; never by the real driver. Reserve and the re-assume
    /// after PreBind then leave the informer versions in place, so the scheduler decides from
    /// the informer cache only and can double-book a PV.
    pub assume_cache: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            scheduler_name: "default-scheduler".into(),
            queue: QueueConfig::default(),
            bind_timeout_ms: 600_000,
            bind_poll: false,
            bind_poll_interval_ms: 1_000,
            max_cycles_per_tick: 256,
            assume_cache: true,
        }
    }
}

#[derive(Debug, Clone)]
enum Stage {
    /// Writing `assumed.pvs[i]` (then the claims).
    WritingPv(usize),
    /// Writing `assumed.pvcs[i]`.
    WritingPvc(usize),
    /// Waiting for the volume controller; the next poll when polling.
    Waiting { deadline: Millis, next_poll: Millis },
    /// `pods/binding` in flight.
    Binding,
}

/// A pod between Reserve and Bind (upstream's binding cycle, as a state machine).
#[derive(Debug, Clone)]
struct BindingCycle {
    pod: Pod,
    node: String,
    volumes: Option<AssumedVolumes>,
    stage: Stage,
    popped_at: Millis,
    /// When PreBind's writes were all acknowledged (the wait began).
    waiting_since: Millis,
    /// When `pods/binding` was sent.
    bind_sent: Millis,
}

#[derive(Debug, Clone)]
enum Pending {
    Binding(PodKey),
    PodStatus(PodKey),
    Event,
}

#[derive(Debug, Clone)]
struct LastEvent {
    name: String,
    message: String,
    count: i32,
}

const ALL_KINDS: u8 = 0b11_1111;

/// The scheduler core. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Scheduler {
    config: CoreConfig,
    view: ClusterView,
    queue: SchedulingQueue,
    binding: BTreeMap<PodKey, BindingCycle>,
    /// PVC key / `pv:<name>` → pods whose PreBind waits on it.
    waiters: BTreeMap<String, BTreeSet<PodKey>>,
    /// (bind deadline, pod) of every waiting cycle, so timers need no walk over all cycles.
    wait_deadlines: BTreeSet<(Millis, PodKey)>,
    /// (next poll, pod) of every waiting cycle when `bind_poll` is on.
    wait_polls: BTreeSet<(Millis, PodKey)>,
    pending: BTreeMap<RequestId, Pending>,
    /// Pod conditions still to be written (re-sent when a newer pod arrives after a 409).
    pending_condition: BTreeMap<PodKey, (String, String)>,
    last_events: BTreeMap<(PodKey, &'static str), LastEvent>,
    first_seen: BTreeMap<PodKey, Millis>,
    outbox: VecDeque<Output>,
    next_id: RequestId,
    /// Where the next Filter scan starts (upstream's nextStartNodeIndex).
    next_start_node: usize,
    event_seq: u64,
    synced: u8,
    metrics: Metrics,
}

fn kind_bit(kind: &str) -> u8 {
    match kind {
        "Pod" => 1,
        "Node" => 2,
        "PersistentVolume" => 4,
        "PersistentVolumeClaim" => 8,
        "StorageClass" => 16,
        "CSIStorageCapacity" => 32,
        _ => 0,
    }
}

fn time(now: Millis) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_millisecond(now.0 as i64).unwrap_or_default())
}

fn spec_or_labels_changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec || old.metadata.labels != new.metadata.labels
}

fn node_changed_for_scheduling(old: &Node, new: &Node) -> bool {
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
    };
    old.metadata.labels != new.metadata.labels
        || old.spec != new.spec
        || old.status.as_ref().and_then(|s| s.allocatable.as_ref())
            != new.status.as_ref().and_then(|s| s.allocatable.as_ref())
        || ready(old) != ready(new)
}

impl Scheduler {
    /// A scheduler with empty caches. It schedules nothing until every kind it watches has
    /// delivered its initial list (`WatchEvent::Restarted`), like upstream waiting for its
    /// informers to sync.
    pub fn new(config: CoreConfig) -> Self {
        let mut view = ClusterView::default();
        if !config.assume_cache {
            view.pvs.set_disabled(true);
            view.pvcs.set_disabled(true);
        }
        Scheduler {
            queue: SchedulingQueue::new(config.queue),
            config,
            view,
            binding: BTreeMap::new(),
            waiters: BTreeMap::new(),
            wait_deadlines: BTreeSet::new(),
            wait_polls: BTreeSet::new(),
            pending: BTreeMap::new(),
            pending_condition: BTreeMap::new(),
            last_events: BTreeMap::new(),
            first_seen: BTreeMap::new(),
            outbox: VecDeque::new(),
            next_id: 0,
            next_start_node: 0,
            event_seq: 0,
            synced: 0,
            metrics: Metrics::default(),
        }
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Read access to the cluster view (for `bonsai explain` and tests).
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// (active, backoff, unschedulable, binding) sizes.
    pub fn queue_sizes(&self) -> (usize, usize, usize, usize) {
        let (a, b, u) = self.queue.sizes();
        (a, b, u, self.binding.len())
    }

    /// Whether every watched kind has delivered its initial list.
    pub fn is_synced(&self) -> bool {
        self.synced == ALL_KINDS
    }

    fn mark_synced(&mut self, now: Millis, kind: &str) {
        self.synced |= kind_bit(kind);
        if self.is_synced() && self.metrics.synced_at_ms.is_none() {
            self.metrics.synced_at_ms = Some(now.0);
        }
    }

    fn push(&mut self, request: Request, pending: Pending) -> RequestId {
        self.next_id += 1;
        let id = self.next_id;
        self.pending.insert(id, pending);
        self.outbox.push_back(Output { id, request });
        id
    }

    // ----------------------------------------------------------------------------------------
    // Watch inputs

    /// Pods (all namespaces).
    pub fn handle_pod(&mut self, now: Millis, event: WatchEvent<Pod>) {
        match event {
            WatchEvent::Applied(p) => self.apply_pod(now, p),
            WatchEvent::Deleted(p) => self.delete_pod(now, &key_of(&p.metadata)),
            WatchEvent::Restarted(list) => {
                self.mark_synced(now, "Pod");
                let keep: BTreeSet<String> = list.iter().map(|p| key_of(&p.metadata)).collect();
                let gone: Vec<String> = self
                    .view
                    .pods
                    .keys()
                    .chain(self.queue_keys().iter())
                    .filter(|k| !keep.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    self.delete_pod(now, &k);
                }
                for p in list {
                    self.apply_pod(now, p);
                }
            }
        }
    }

    fn queue_keys(&self) -> Vec<PodKey> {
        self.binding.keys().cloned().collect()
    }

    fn apply_pod(&mut self, now: Millis, pod: Pod) {
        let key = key_of(&pod.metadata);
        if is_terminal(&pod) {
            self.delete_pod(now, &key);
            return;
        }
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        if let Some(node) = node_name {
            let newly_placed = self
                .view
                .placed
                .get(&key)
                .map(|(n, _)| n != &node)
                .unwrap_or(true)
                || self.view.assumed.contains(&key);
            self.view.place(&key, &node, &pod);
            self.view.pods.insert(key.clone(), pod);
            self.view.assumed.remove(&key);
            if !self.binding.contains_key(&key) {
                self.queue.remove(&key);
            }
            self.pending_condition.remove(&key);
            if newly_placed {
                // A pod landing somewhere can satisfy another pod's affinity.
                self.queue
                    .move_on_event(now, Some(&[names::INTER_POD_AFFINITY]));
            }
            self.wake_waiter(now, &key);
            return;
        }
        let ours = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or("default-scheduler")
            == self.config.scheduler_name;
        if !ours {
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            // Upstream skips pods being deleted.
            self.view.pods.insert(key.clone(), pod);
            self.queue.remove(&key);
            return;
        }
        let old = self.view.pods.insert(key.clone(), pod.clone());
        self.first_seen.entry(key.clone()).or_insert(now);
        if self.binding.contains_key(&key) {
            return;
        }
        match old {
            Some(old) if spec_or_labels_changed(&old, &pod) => self.queue.update(&key, now),
            _ => self.queue.add(&key),
        }
        // A condition patch that lost a race (409) is retried against this newer pod.
        if let Some((reason, message)) = self.pending_condition.get(&key).cloned() {
            if !self.has_condition(&pod, &reason, &message) {
                self.patch_condition(now, &pod, &reason, &message);
            } else {
                self.pending_condition.remove(&key);
            }
        }
    }

    fn delete_pod(&mut self, now: Millis, key: &str) {
        let was_placed = self.view.placed.contains_key(key) && !self.view.assumed.contains(key);
        self.view.pods.remove(key);
        if was_placed {
            self.view.unplace(key);
            // Freed resources or a vanished anti-affinity can help others.
            self.queue.move_on_event(
                now,
                Some(&[names::NODE_RESOURCES_FIT, names::INTER_POD_AFFINITY]),
            );
        }
        self.queue.remove(key);
        self.pending_condition.remove(key);
        self.first_seen.remove(key);
        self.last_events.retain(|(k, _), _| k != key);
        self.wake_waiter(now, key);
    }

    /// Nodes.
    pub fn handle_node(&mut self, now: Millis, event: WatchEvent<Node>) {
        match event {
            WatchEvent::Applied(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                let changed = match self.view.nodes.get(&name).and_then(|i| i.node.as_ref()) {
                    Some(old) => node_changed_for_scheduling(old, &n),
                    None => true,
                };
                self.view.set_node(n);
                if changed {
                    self.queue.move_on_event(now, None);
                    self.wake_all_waiters(now);
                }
            }
            WatchEvent::Deleted(n) => {
                self.view
                    .remove_node(n.metadata.name.as_deref().unwrap_or(""));
                self.wake_all_waiters(now);
            }
            WatchEvent::Restarted(list) => {
                self.mark_synced(now, "Node");
                let keep: BTreeSet<String> = list
                    .iter()
                    .filter_map(|n| n.metadata.name.clone())
                    .collect();
                let gone: Vec<String> = self
                    .view
                    .nodes
                    .keys()
                    .filter(|k| !keep.contains(*k))
                    .cloned()
                    .collect();
                for g in gone {
                    self.view.remove_node(&g);
                }
                for n in list {
                    self.view.set_node(n);
                }
                self.queue.move_on_event(now, None);
                self.wake_all_waiters(now);
            }
        }
    }

    /// PersistentVolumes.
    pub fn handle_persistent_volume(&mut self, now: Millis, event: WatchEvent<PersistentVolume>) {
        match event {
            WatchEvent::Applied(pv) => {
                let name = pv.metadata.name.clone().unwrap_or_default();
                self.view.apply_pv(pv);
                self.volume_event(now, &format!("pv:{name}"));
            }
            WatchEvent::Deleted(pv) => {
                let name = pv.metadata.name.clone().unwrap_or_default();
                self.view.delete_pv(&name);
                self.volume_event(now, &format!("pv:{name}"));
            }
            WatchEvent::Restarted(list) => {
                self.mark_synced(now, "PersistentVolume");
                let keep: BTreeSet<String> = list
                    .iter()
                    .filter_map(|p| p.metadata.name.clone())
                    .collect();
                let gone: Vec<String> = self
                    .view
                    .pvs
                    .iter()
                    .map(|(k, _)| k.clone())
                    .filter(|k| !keep.contains(k))
                    .collect();
                for g in gone {
                    self.view.delete_pv(&g);
                }
                for pv in list {
                    self.view.apply_pv(pv);
                }
                self.queue
                    .move_on_event(now, Some(&[names::VOLUME_BINDING]));
                self.wake_all_waiters(now);
            }
        }
    }

    /// PersistentVolumeClaims.
    pub fn handle_persistent_volume_claim(
        &mut self,
        now: Millis,
        event: WatchEvent<PersistentVolumeClaim>,
    ) {
        match event {
            WatchEvent::Applied(pvc) => {
                let key = key_of(&pvc.metadata);
                self.view.pvcs.handle_apply(key.clone(), pvc);
                self.volume_event(now, &key);
            }
            WatchEvent::Deleted(pvc) => {
                let key = key_of(&pvc.metadata);
                self.view.pvcs.handle_delete(&key);
                self.volume_event(now, &key);
            }
            WatchEvent::Restarted(list) => {
                self.mark_synced(now, "PersistentVolumeClaim");
                let keep: BTreeSet<String> = list.iter().map(|p| key_of(&p.metadata)).collect();
                self.view.pvcs.retain_keys(&keep);
                for pvc in list {
                    self.view.pvcs.handle_apply(key_of(&pvc.metadata), pvc);
                }
                self.queue
                    .move_on_event(now, Some(&[names::VOLUME_BINDING]));
                self.wake_all_waiters(now);
            }
        }
    }

    /// StorageClasses.
    pub fn handle_storage_class(&mut self, now: Millis, event: WatchEvent<StorageClass>) {
        match event {
            WatchEvent::Applied(sc) => {
                self.view
                    .classes
                    .insert(sc.metadata.name.clone().unwrap_or_default(), sc);
            }
            WatchEvent::Deleted(sc) => {
                self.view
                    .classes
                    .remove(sc.metadata.name.as_deref().unwrap_or(""));
            }
            WatchEvent::Restarted(list) => {
                self.mark_synced(now, "StorageClass");
                self.view.classes = list
                    .into_iter()
                    .map(|sc| (sc.metadata.name.clone().unwrap_or_default(), sc))
                    .collect();
            }
        }
        self.queue
            .move_on_event(now, Some(&[names::VOLUME_BINDING]));
    }

    /// CSIStorageCapacities.
    pub fn handle_csi_storage_capacity(
        &mut self,
        now: Millis,
        event: WatchEvent<CSIStorageCapacity>,
    ) {
        match event {
            WatchEvent::Applied(c) => {
                self.view.capacities.insert(key_of(&c.metadata), c);
            }
            WatchEvent::Deleted(c) => {
                self.view.capacities.remove(&key_of(&c.metadata));
            }
            WatchEvent::Restarted(list) => {
                self.mark_synced(now, "CSIStorageCapacity");
                self.view.capacities = list.into_iter().map(|c| (key_of(&c.metadata), c)).collect();
            }
        }
        self.queue
            .move_on_event(now, Some(&[names::VOLUME_BINDING]));
    }

    /// A PV or PVC changed: unschedulable pods rejected by VolumeBinding get another try, and
    /// the binding cycles waiting on that object re-check (unless polling).
    fn volume_event(&mut self, now: Millis, waiter_key: &str) {
        self.queue
            .move_on_event(now, Some(&[names::VOLUME_BINDING]));
        if self.config.bind_poll {
            return;
        }
        let pods: Vec<PodKey> = self
            .waiters
            .get(waiter_key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for p in pods {
            self.check_waiting(now, &p);
        }
    }

    fn wake_waiter(&mut self, now: Millis, pod_key: &str) {
        if !self.config.bind_poll
            && matches!(
                self.binding.get(pod_key).map(|c| &c.stage),
                Some(Stage::Waiting { .. })
            )
        {
            self.check_waiting(now, pod_key);
        }
    }

    fn wake_all_waiters(&mut self, now: Millis) {
        if self.config.bind_poll {
            return;
        }
        let keys: Vec<PodKey> = self
            .binding
            .iter()
            .filter(|(_, c)| matches!(c.stage, Stage::Waiting { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.check_waiting(now, &k);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Timers and scheduling cycles

    /// When `handle_timeout` should run next (`Millis(0)`: right away).
    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut next = self.queue.next_deadline();
        let mut consider = |t: Millis| next = Some(next.map_or(t, |n: Millis| n.min(t)));
        if self.is_synced() && self.queue.active_len() > 0 {
            consider(Millis(0));
        }
        if let Some((deadline, _)) = self.wait_deadlines.first() {
            consider(*deadline);
        }
        if self.config.bind_poll {
            if let Some((next_poll, _)) = self.wait_polls.first() {
                consider(*next_poll);
            }
        }
        next
    }

    /// Runs due timers (backoff ends, the unschedulable flush, bind polls and timeouts) and up
    /// to `max_cycles_per_tick` scheduling cycles.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.queue.tick(now);
        // The cycles with a due timer, visited in key order as a walk over all cycles would.
        let due_keys: BTreeSet<PodKey> = self
            .wait_deadlines
            .iter()
            .take_while(|(t, _)| *t <= now)
            .chain(
                self.wait_polls
                    .iter()
                    .take_while(|(t, _)| self.config.bind_poll && *t <= now),
            )
            .map(|(_, k)| k.clone())
            .collect();
        let due: Vec<(PodKey, bool)> = due_keys
            .iter()
            .filter_map(|k| self.binding.get_key_value(k))
            .filter_map(|(k, c)| match c.stage {
                Stage::Waiting { deadline, .. } if now >= deadline => Some((k.clone(), true)),
                Stage::Waiting { next_poll, .. } if self.config.bind_poll && now >= next_poll => {
                    Some((k.clone(), false))
                }
                _ => None,
            })
            .collect();
        for (k, timed_out) in due {
            if timed_out {
                // One last look, as the final poll would.
                if !self.check_waiting(now, &k) {
                    continue;
                }
                if self.binding.contains_key(&k) {
                    self.fail_binding(
                        now,
                        &k,
                        format!(
                            "running PreBind plugin \"{}\": binding volumes: context deadline exceeded",
                            names::VOLUME_BINDING
                        ),
                    );
                }
            } else {
                self.check_waiting(now, &k);
                if let Some(BindingCycle {
                    stage: Stage::Waiting { next_poll, .. },
                    ..
                }) = self.binding.get_mut(&k)
                {
                    self.wait_polls.remove(&(*next_poll, k.clone()));
                    *next_poll = Millis(now.0 + self.config.bind_poll_interval_ms);
                    self.wait_polls.insert((*next_poll, k.clone()));
                }
            }
        }
        if !self.is_synced() {
            return;
        }
        for _ in 0..self.config.max_cycles_per_tick {
            let Some(key) = self.queue.pop() else { break };
            self.schedule_one(now, &key);
        }
        self.metrics
            .set_queue_sizes(self.queue.sizes(), self.binding.len());
    }

    /// One scheduling cycle for `key`.
    fn schedule_one(&mut self, now: Millis, key: &str) {
        let Some(pod) = self.view.pods.get(key).cloned() else {
            self.queue.remove(key);
            return;
        };
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
            || pod.metadata.deletion_timestamp.is_some()
        {
            self.queue.remove(key);
            return;
        }
        match self.find_node(&pod) {
            Ok((node, state)) => self.reserve_and_bind(now, key, pod, node, state),
            Err(CycleFailure::Fit(diag)) => {
                let message = diag.fit_error_message();
                self.metrics.attempt(AttemptResult::Unschedulable, 0);
                self.queue.unschedulable(key, now, diag.rejected_by.clone());
                self.record_failure(now, &pod, "Unschedulable", &message);
            }
            Err(CycleFailure::NoNodes) => {
                self.metrics.attempt(AttemptResult::Unschedulable, 0);
                self.queue.unschedulable(key, now, BTreeSet::new());
                self.record_failure(
                    now,
                    &pod,
                    "Unschedulable",
                    "no nodes available to schedule pods",
                );
            }
            Err(CycleFailure::Error(message)) => {
                self.metrics.attempt(AttemptResult::Error, 0);
                self.queue.error(key, now);
                self.record_failure(now, &pod, "SchedulerError", &message);
            }
        }
    }

    /// Upstream's `numFeasibleNodesToFind` with the adaptive percentageOfNodesToScore:
    /// all nodes below 100, else max(100, N × max(5, 50 − N/125) %).
    fn num_feasible_nodes_to_find(num_all: usize) -> usize {
        if num_all < 100 {
            return num_all;
        }
        let pct = (50i64 - num_all as i64 / 125).max(5) as usize;
        (num_all * pct / 100).max(100)
    }

    /// PreFilter, Filter, PostFilter (on failure) and Score.
    ///
    /// Like upstream, the scan starts where the previous one stopped and ends once enough
    /// feasible nodes are found. Pods whose bound local PVs pin them to a few hostnames look at
    /// those nodes first (every other node fails VolumeBinding anyway); only when none fits is
    /// every node evaluated, so the FitError counts each node's reason as §5.5 describes.
    /// Likewise a pod whose WaitForFirstConsumer claim can only use node-local PVs visits only
    /// the nodes that still have a free PV of its class, in the same round-robin order: the
    /// nodes it skips would all fail VolumeBinding, so the feasible nodes found, the choice and
    /// the next start index are the same as a scan over all nodes.
    fn find_node(&mut self, pod: &Pod) -> Result<(String, CycleState), CycleFailure> {
        let num_nodes = self.view.num_nodes();
        if num_nodes == 0 {
            return Err(CycleFailure::NoNodes);
        }
        let mut state = CycleState {
            pod_requests: plugins::resources_fit::pod_requests(pod),
            ..Default::default()
        };
        let mut diag = Diagnosis {
            num_all_nodes: num_nodes,
            ..Default::default()
        };

        // PreFilter: VolumeBinding, then InterPodAffinity.
        let (st, claims) = volume_binding::pre_filter(&self.view, pod);
        self.pre_filter_outcome(names::VOLUME_BINDING, st, &mut state, &mut diag)?;
        let (st, ipa) = plugins::inter_pod_affinity::pre_filter(&self.view, pod);
        self.pre_filter_outcome(names::INTER_POD_AFFINITY, st, &mut state, &mut diag)?;
        state.inter_pod = ipa;

        let view = &self.view;
        let prepared = claims.as_ref().map(|c| volume_binding::prepare(view, c));
        let prepared = prepared.as_ref();

        // Score: fewest pods, then node name.
        fn better(best: &Option<(usize, &str)>, pods: usize, name: &str) -> bool {
            best.is_none_or(|(p, n)| pods < p || (pods == p && name < n))
        }
        // VolumeBinding's result for the chosen node only (the scan asks for feasibility).
        let chosen = |name: &str| -> Option<PodVolumes> {
            let info = view.nodes.get(name)?;
            volume_binding::filter_prepared(view, prepared?, info, true).1
        };

        let eligible_hosts = claims
            .as_ref()
            .and_then(|c| volume_binding::eligible_hostnames(view, c));
        if let Some(hosts) = eligible_hosts {
            let mut best: Option<(usize, &str)> = None;
            let eligible: BTreeSet<&String> = hosts
                .iter()
                .filter_map(|h| view.by_hostname.get(h))
                .flatten()
                .collect();
            for (name, info) in eligible
                .into_iter()
                .filter_map(|n| view.nodes.get_key_value(n.as_str()))
            {
                if info.node.is_none() {
                    continue;
                }
                match filter_node(view, pod, &state, prepared, info) {
                    Some((_, Status::Error(e))) => return Err(CycleFailure::Error(e)),
                    Some(_) => {}
                    None => {
                        if better(&best, info.pods.len(), name) {
                            best = Some((info.pods.len(), name.as_str()));
                        }
                    }
                }
            }
            if let Some((_, name)) = best {
                let volumes = chosen(name);
                let name = name.to_string();
                if let Some(v) = volumes {
                    state.volumes_by_node.insert(name.clone(), v);
                }
                state.volume_claims = claims;
                return Ok((name, state));
            }
        }

        let to_find = Self::num_feasible_nodes_to_find(num_nodes);
        let start = self.next_start_node % num_nodes;
        let start_name = view.node_order[start].as_str();
        let narrowed = prepared.and_then(|p| p.candidate_nodes(view));
        let mut best: Option<(usize, &str)> = None;
        let mut feasible = 0usize;
        let mut last_feasible: &str = start_name;
        // Rejections are not recorded on this pass: they only matter when no node fits, and
        // then the diagnosis pass below evaluates every node again.
        let round_robin_nodes: Box<dyn Iterator<Item = (&String, &NodeInfo)>> = match narrowed {
            // Walk the candidates and the nodes side by side (both in name order) instead of
            // looking every candidate up.
            Some(set) => Box::new(
                Joined::new(
                    set.range::<str, _>((Bound::Included(start_name), Bound::Unbounded)),
                    view.nodes
                        .range::<str, _>((Bound::Included(start_name), Bound::Unbounded)),
                )
                .chain(Joined::new(
                    set.range::<str, _>((Bound::Unbounded, Bound::Excluded(start_name))),
                    view.nodes
                        .range::<str, _>((Bound::Unbounded, Bound::Excluded(start_name))),
                )),
            ),
            None => Box::new(
                view.nodes
                    .range::<str, _>((Bound::Included(start_name), Bound::Unbounded))
                    .chain(
                        view.nodes
                            .range::<str, _>((Bound::Unbounded, Bound::Excluded(start_name))),
                    ),
            ),
        };
        for (name, info) in round_robin_nodes {
            if feasible >= to_find {
                break;
            }
            if info.node.is_none() {
                continue;
            }
            match filter_node(view, pod, &state, prepared, info) {
                Some((_, Status::Error(e))) => return Err(CycleFailure::Error(e)),
                Some(_) => {}
                None => {
                    feasible += 1;
                    last_feasible = name;
                    if better(&best, info.pods.len(), name) {
                        best = Some((info.pods.len(), name.as_str()));
                    }
                }
            }
        }
        // As many nodes as a scan over all of them would have processed.
        let processed = if feasible >= to_find {
            let at = view
                .node_order
                .binary_search_by(|n| n.as_str().cmp(last_feasible))
                .unwrap_or(start);
            (at + num_nodes - start) % num_nodes + 1
        } else {
            num_nodes
        };
        if let Some((_, name)) = best {
            let volumes = chosen(name);
            let name = name.to_string();
            self.next_start_node = (start + processed) % num_nodes;
            if let Some(v) = volumes {
                state.volumes_by_node.insert(name.clone(), v);
            }
            state.volume_claims = claims;
            return Ok((name, state));
        }
        for (name, info) in &view.nodes {
            if info.node.is_none() {
                continue;
            }
            if let Some((plugin, st)) = filter_node(view, pod, &state, prepared, info) {
                if let Status::Error(e) = st {
                    return Err(CycleFailure::Error(e));
                }
                let unresolvable = matches!(st, Status::UnschedulableAndUnresolvable(_));
                diag.rejected_by.insert(plugin);
                diag.node_reasons
                    .insert(name.clone(), (st.reasons().to_vec(), unresolvable));
            }
        }
        self.next_start_node = (start + processed) % num_nodes;
        Err(CycleFailure::Fit(diag))
    }

    fn pre_filter_outcome(
        &self,
        plugin: &'static str,
        st: Status,
        state: &mut CycleState,
        diag: &mut Diagnosis,
    ) -> Result<(), CycleFailure> {
        match st {
            Status::Success => Ok(()),
            Status::Skip => {
                state.skip_filter.insert(plugin);
                Ok(())
            }
            Status::Error(e) => Err(CycleFailure::Error(format!(
                "running PreFilter plugin \"{plugin}\": {e}"
            ))),
            rejected => {
                diag.pre_filter_msg = Some(rejected.reasons().join(", "));
                diag.pre_filter_unresolvable =
                    matches!(rejected, Status::UnschedulableAndUnresolvable(_));
                diag.rejected_by.insert(plugin);
                Err(CycleFailure::Fit(diag.clone()))
            }
        }
    }

    /// Reserve (VolumeBinding, then the pod is assumed on the node) and the start of the
    /// binding cycle.
    fn reserve_and_bind(
        &mut self,
        now: Millis,
        key: &str,
        pod: Pod,
        node: String,
        mut state: CycleState,
    ) {
        let mut volumes = None;
        if let Some(claims) = state.volume_claims.take() {
            let vols = state.volumes_by_node.remove(&node).unwrap_or_default();
            match volume_binding::reserve(&mut self.view, &claims, &node, &vols) {
                Ok(v) => volumes = v,
                Err(e) => {
                    self.metrics.attempt(AttemptResult::Error, 0);
                    self.queue.error(key, now);
                    let msg = format!("running Reserve plugin \"{}\": {e}", names::VOLUME_BINDING);
                    self.record_failure(now, &pod, "SchedulerError", &msg);
                    return;
                }
            }
        }
        self.view.place(key, &node, &pod);
        self.view.assumed.insert(key.to_string());
        let stage = match &volumes {
            Some(v) if !v.pvs.is_empty() => Stage::WritingPv(0),
            Some(v) if !v.pvcs.is_empty() => Stage::WritingPvc(0),
            _ => Stage::Binding,
        };
        self.binding.insert(
            key.to_string(),
            BindingCycle {
                pod,
                node,
                volumes,
                stage,
                popped_at: now,
                waiting_since: now,
                bind_sent: now,
            },
        );
        self.advance(now, key);
    }

    /// Issues the request of the cycle's current stage.
    fn advance(&mut self, now: Millis, key: &str) {
        let Some(c) = self.binding.get(key) else {
            return;
        };
        match c.stage.clone() {
            Stage::WritingPv(i) => {
                let pv = c.volumes.as_ref().expect("volumes").pvs[i].0.clone();
                self.push(
                    Request::UpdatePersistentVolume(pv),
                    Pending::Binding(key.to_string()),
                );
            }
            Stage::WritingPvc(i) => {
                let pvc = c.volumes.as_ref().expect("volumes").pvcs[i].clone();
                self.push(
                    Request::UpdatePersistentVolumeClaim(pvc),
                    Pending::Binding(key.to_string()),
                );
            }
            Stage::Waiting { .. } => {
                self.check_waiting(now, key);
            }
            Stage::Binding => {
                if let Some(c) = self.binding.get_mut(key) {
                    c.bind_sent = now;
                }
                let c = &self.binding[key];
                let req = Request::Bind {
                    namespace: c
                        .pod
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    name: c.pod.metadata.name.clone().unwrap_or_default(),
                    uid: c.pod.metadata.uid.clone().unwrap_or_default(),
                    node: c.node.clone(),
                };
                self.push(req, Pending::Binding(key.to_string()));
            }
        }
    }

    fn start_waiting(&mut self, now: Millis, key: &str) {
        let deadline = Millis(now.0 + self.config.bind_timeout_ms);
        let next_poll = Millis(now.0 + self.config.bind_poll_interval_ms);
        let Some(c) = self.binding.get_mut(key) else {
            return;
        };
        c.stage = Stage::Waiting {
            deadline,
            next_poll,
        };
        c.waiting_since = now;
        let keys = c.volumes.as_ref().map(waiter_keys).unwrap_or_default();
        for k in keys {
            self.waiters.entry(k).or_default().insert(key.to_string());
        }
        self.wait_deadlines.insert((deadline, key.to_string()));
        if self.config.bind_poll {
            self.wait_polls.insert((next_poll, key.to_string()));
        }
        if !self.config.bind_poll {
            // The volume controller may already be done (or the watch already delivered it).
            self.check_waiting(now, key);
        }
    }

    /// The cycle no longer waits: off the waiter lists and the timers.
    fn stop_waiting(&mut self, key: &str) {
        let Some(c) = self.binding.get(key) else {
            return;
        };
        let Stage::Waiting {
            deadline,
            next_poll,
        } = c.stage
        else {
            return;
        };
        for k in c.volumes.as_ref().map(waiter_keys).unwrap_or_default() {
            if let Some(pods) = self.waiters.get_mut(&k) {
                pods.remove(key);
                if pods.is_empty() {
                    self.waiters.remove(&k);
                }
            }
        }
        self.wait_deadlines.remove(&(deadline, key.to_string()));
        self.wait_polls.remove(&(next_poll, key.to_string()));
    }

    /// `checkBindings` for a waiting cycle. Returns true when the cycle is still waiting.
    fn check_waiting(&mut self, now: Millis, key: &str) -> bool {
        let Some(c) = self.binding.get(key) else {
            return false;
        };
        if !matches!(c.stage, Stage::Waiting { .. }) {
            return false;
        }
        let empty = AssumedVolumes::default();
        let result = volume_binding::check_bindings(
            &self.view,
            &c.pod,
            &c.node,
            c.volumes.as_ref().unwrap_or(&empty),
        );
        match result {
            Ok(false) => true,
            Ok(true) => {
                self.stop_waiting(key);
                if let Some(c) = self.binding.get_mut(key) {
                    c.stage = Stage::Binding;
                }
                self.advance(now, key);
                false
            }
            Err(e) => {
                self.fail_binding(
                    now,
                    key,
                    format!(
                        "running PreBind plugin \"{}\": binding volumes: {e}",
                        names::VOLUME_BINDING
                    ),
                );
                false
            }
        }
    }

    /// The binding cycle failed: Unreserve, forget the assumed pod, SchedulerError, backoff.
    fn fail_binding(&mut self, now: Millis, key: &str, message: String) {
        self.stop_waiting(key);
        let Some(c) = self.binding.remove(key) else {
            return;
        };
        if let Some(v) = &c.volumes {
            volume_binding::unreserve(&mut self.view, v);
        }
        if self.view.assumed.contains(key) {
            self.view.unplace(key);
        }
        self.metrics
            .attempt(AttemptResult::Error, now.0.saturating_sub(c.popped_at.0));
        match self.view.pods.get(key).cloned() {
            Some(pod)
                if pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(|n| n.is_empty()) =>
            {
                self.queue.error(key, now);
                self.record_failure(now, &pod, "SchedulerError", &message);
            }
            _ => self.queue.remove(key),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Completions

    /// The outcome of request `id`.
    pub fn handle_completion(&mut self, now: Millis, id: RequestId, completion: Completion) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match pending {
            Pending::Event => {}
            Pending::PodStatus(key) => match completion {
                Completion::Done(_)
                | Completion::Volume(_)
                | Completion::Claim(_)
                | Completion::NotFound(_) => {
                    self.pending_condition.remove(&key);
                }
                // 409: retried when the newer pod arrives through the watch.
                Completion::Conflict(_) | Completion::Failed(_) => {}
            },
            Pending::Binding(key) => self.binding_completion(now, &key, completion),
        }
    }

    fn binding_completion(&mut self, now: Millis, key: &str, completion: Completion) {
        let Some(c) = self.binding.get_mut(key) else {
            return;
        };
        let stage = c.stage.clone();
        match (stage, completion) {
            (Stage::WritingPv(i), Completion::Volume(pv)) => {
                let vols = c.volumes.as_mut().expect("volumes");
                let name = pv.metadata.name.clone().unwrap_or_default();
                vols.pvs[i].0 = (*pv).clone();
                // Re-assume what the server returned; a newer watch copy may already be in.
                let _ = self.view.assume_pv(&name, *pv);
                let (n_pv, n_pvc) = (vols.pvs.len(), vols.pvcs.len());
                if i + 1 < n_pv {
                    c.stage = Stage::WritingPv(i + 1);
                } else if n_pvc > 0 {
                    c.stage = Stage::WritingPvc(0);
                } else {
                    self.start_waiting(now, key);
                    return;
                }
                self.advance(now, key);
            }
            (Stage::WritingPvc(i), Completion::Claim(pvc)) => {
                let vols = c.volumes.as_mut().expect("volumes");
                let k = key_of(&pvc.metadata);
                vols.pvcs[i] = (*pvc).clone();
                let _ = self.view.pvcs.assume(&k, *pvc);
                if i + 1 < vols.pvcs.len() {
                    c.stage = Stage::WritingPvc(i + 1);
                    self.advance(now, key);
                } else {
                    self.start_waiting(now, key);
                }
            }
            (Stage::WritingPv(_) | Stage::WritingPvc(_), failure) => {
                let msg = failure.message();
                self.fail_binding(
                    now,
                    key,
                    format!(
                        "running PreBind plugin \"{}\": {msg}",
                        names::VOLUME_BINDING
                    ),
                );
            }
            (
                Stage::Binding,
                Completion::Done(_) | Completion::Volume(_) | Completion::Claim(_),
            ) => {
                let c = self.binding.remove(key).expect("present");
                self.queue.done(key);
                let latency = now.0.saturating_sub(c.popped_at.0);
                let e2e = self
                    .first_seen
                    .remove(key)
                    .map(|t| now.0.saturating_sub(t.0))
                    .unwrap_or(latency);
                self.metrics.attempt(AttemptResult::Scheduled, latency);
                self.metrics.pod_scheduled(e2e);
                self.metrics.last_scheduled_at_ms = now.0;
                self.metrics.binding_phases([
                    e2e.saturating_sub(latency),
                    c.waiting_since.0.saturating_sub(c.popped_at.0),
                    c.bind_sent.0.saturating_sub(c.waiting_since.0),
                    now.0.saturating_sub(c.bind_sent.0),
                ]);
                let ns = c.pod.metadata.namespace.as_deref().unwrap_or("default");
                let name = c.pod.metadata.name.as_deref().unwrap_or("");
                let msg = format!("Successfully assigned {ns}/{name} to {}", c.node);
                self.emit_event(now, &c.pod, "Normal", "Scheduled", "Binding", &msg);
            }
            (Stage::Binding, failure) => {
                let msg = failure.message();
                self.fail_binding(
                    now,
                    key,
                    format!("running Bind plugin \"{}\": {msg}", names::DEFAULT_BINDER),
                );
            }
            (Stage::Waiting { .. }, _) => {}
        }
    }

    // ----------------------------------------------------------------------------------------
    // Failure reporting: the PodScheduled condition and FailedScheduling events

    fn has_condition(&self, pod: &Pod, reason: &str, message: &str) -> bool {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some(reason)
                        && c.message.as_deref() == Some(message)
                })
            })
    }

    fn record_failure(&mut self, now: Millis, pod: &Pod, reason: &str, message: &str) {
        self.emit_event(
            now,
            pod,
            "Warning",
            "FailedScheduling",
            "Scheduling",
            message,
        );
        if !self.has_condition(pod, reason, message) {
            self.patch_condition(now, pod, reason, message);
        }
    }

    fn patch_condition(&mut self, now: Millis, pod: &Pod, reason: &str, message: &str) {
        let key = key_of(&pod.metadata);
        let existing = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let previous = existing.iter().find(|c| c.type_ == "PodScheduled");
        let transition = match previous {
            Some(p) if p.status == "False" => {
                p.last_transition_time.clone().unwrap_or_else(|| time(now))
            }
            _ => time(now),
        };
        let cond = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_probe_time: None,
            last_transition_time: Some(transition),
            observed_generation: None,
        };
        let mut conditions: Vec<PodCondition> = existing
            .into_iter()
            .filter(|c| c.type_ != "PodScheduled")
            .collect();
        conditions.push(cond);
        let patch = json!({
            "metadata": { "resourceVersion": pod.metadata.resource_version },
            "status": { "conditions": conditions },
        });
        self.pending_condition
            .insert(key.clone(), (reason.into(), message.into()));
        self.push(
            Request::PatchPodStatus {
                namespace: pod
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                name: pod.metadata.name.clone().unwrap_or_default(),
                patch,
            },
            Pending::PodStatus(key),
        );
    }

    /// A core/v1 Event about `pod`; a repeat of the last identical one bumps its count instead,
    /// as client-go's event correlator does.
    fn emit_event(
        &mut self,
        now: Millis,
        pod: &Pod,
        type_: &str,
        reason: &'static str,
        action: &str,
        message: &str,
    ) {
        let key = key_of(&pod.metadata);
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        if let Some(last) = self.last_events.get_mut(&(key.clone(), reason)) {
            if last.message == message {
                last.count += 1;
                let patch = json!({ "count": last.count, "lastTimestamp": time(now) });
                let name = last.name.clone();
                self.push(
                    Request::PatchEvent {
                        namespace: ns,
                        name,
                        patch,
                    },
                    Pending::Event,
                );
                return;
            }
        }
        self.event_seq += 1;
        let name = format!(
            "{}.{:x}",
            pod.metadata.name.as_deref().unwrap_or(""),
            now.0.saturating_mul(1_000_000) + (self.event_seq % 1_000_000)
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: Some(ns),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                field_path: None,
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(type_.into()),
            action: Some(action.into()),
            source: Some(EventSource {
                component: Some("default-scheduler".into()),
                host: None,
            }),
            reporting_component: Some("default-scheduler".into()),
            reporting_instance: Some("default-scheduler-bonsai".into()),
            first_timestamp: Some(time(now)),
            last_timestamp: Some(time(now)),
            count: Some(1),
            ..Default::default()
        };
        self.last_events.insert(
            (key, reason),
            LastEvent {
                name,
                message: message.into(),
                count: 1,
            },
        );
        self.push(Request::CreateEvent(Box::new(event)), Pending::Event);
    }

    /// The next request, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outbox.pop_front()
    }
}

/// Filter for one node: the first failing plugin and its status (None: feasible).
fn filter_node(
    view: &ClusterView,
    pod: &Pod,
    state: &CycleState,
    volume_claims: Option<&volume_binding::PreparedClaims<'_>>,
    info: &NodeInfo,
) -> Option<(&'static str, Status)> {
    let checks: [(&'static str, &dyn Fn() -> Status); 5] = [
        (names::NODE_UNSCHEDULABLE, &|| {
            plugins::node::node_unschedulable(pod, info)
        }),
        (names::NODE_NAME, &|| plugins::node::node_name(pod, info)),
        (names::TAINT_TOLERATION, &|| {
            plugins::node::taint_toleration(pod, info)
        }),
        (names::NODE_AFFINITY, &|| {
            plugins::node::node_affinity(pod, info)
        }),
        (names::NODE_RESOURCES_FIT, &|| {
            plugins::resources_fit::filter(&state.pod_requests, info)
        }),
    ];
    for (plugin, check) in checks {
        let st = check();
        if !st.is_success() {
            return Some((plugin, st));
        }
    }
    if let Some(claims) = volume_claims {
        let (st, _) = volume_binding::filter_prepared(view, claims, info, false);
        if !st.is_success() {
            return Some((names::VOLUME_BINDING, st));
        }
    }
    if let Some(ipa) = state.inter_pod.as_ref() {
        let st = plugins::inter_pod_affinity::filter(ipa, info);
        if !st.is_success() {
            return Some((names::INTER_POD_AFFINITY, st));
        }
    }
    None
}

/// The entries of a name-ordered map whose keys are in a name-ordered set (a merge join).
struct Joined<'a, K, M> {
    keys: K,
    map: M,
    _names: std::marker::PhantomData<&'a str>,
}

impl<'a, K, M> Joined<'a, K, M> {
    fn new(keys: K, map: M) -> Self {
        Joined {
            keys,
            map,
            _names: std::marker::PhantomData,
        }
    }
}

impl<'a, K, M> Iterator for Joined<'a, K, M>
where
    K: Iterator<Item = &'a String>,
    M: Iterator<Item = (&'a String, &'a NodeInfo)>,
{
    type Item = (&'a String, &'a NodeInfo);

    fn next(&mut self) -> Option<Self::Item> {
        let mut want = self.keys.next()?;
        loop {
            let (name, info) = self.map.next()?;
            loop {
                match name.as_str().cmp(want.as_str()) {
                    std::cmp::Ordering::Less => break,
                    std::cmp::Ordering::Equal => return Some((name, info)),
                    // A key the map lacks: try the next key against this entry.
                    std::cmp::Ordering::Greater => want = self.keys.next()?,
                }
            }
        }
    }
}

/// The `waiters` keys of a waiting cycle: its PVs (`pv:<name>`) and claims.
fn waiter_keys(v: &AssumedVolumes) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for (pv, claim) in &v.pvs {
        keys.push(format!("pv:{}", pv.metadata.name.as_deref().unwrap_or("")));
        keys.push(claim.clone());
    }
    for pvc in &v.pvcs {
        keys.push(key_of(&pvc.metadata));
    }
    keys
}

enum CycleFailure {
    Fit(Diagnosis),
    NoNodes,
    Error(String),
}

#[cfg(test)]
mod tests;
