//! The deterministic core of the node lifecycle controller and of the taint eviction
//! controller (kube-controller-manager's `nodelifecycle` and `tainteviction`, v1.33).
//!
//! Inputs: [`NodeLifecycle::handle_node_event`], [`NodeLifecycle::handle_lease_event`],
//! [`NodeLifecycle::handle_pod_event`], [`NodeLifecycle::handle_completion`] and
//! [`NodeLifecycle::handle_timeout`], each with `now` (milliseconds since the Unix epoch, read
//! by the driver). Outputs: [`NodeLifecycle::poll_write`] (API writes, each naming the
//! resourceVersion it was computed from) and [`NodeLifecycle::poll_timeout`] (when to call
//! `handle_timeout`). No await, no clock, no hash-map order: the same inputs give the same
//! writes, byte for byte.
//!
//! What it decides, as upstream does:
//! - **Health** (`tryUpdateNodeHealth`): a node's probe time moves when its Ready heartbeat
//!   changes or its Lease's `renewTime` advances. When `now > probe + grace` the Ready,
//!   MemoryPressure, DiskPressure and PIDPressure conditions become `Unknown` with reason
//!   `NodeStatusUnknown` and message "Kubelet stopped posting node status." (a condition the
//!   kubelet never posted: `NodeStatusNeverUpdated`, "Kubelet never posted node status."), and
//!   the Node gets a `NodeNotReady` event ("Node node-1 status is now: NodeNotReady").
//! - **Taints**: NoSchedule taints mirror the conditions (`doNoScheduleTaintingPass`:
//!   Ready=Unknown → `node.kubernetes.io/unreachable`, Ready=False → `not-ready`, pressure
//!   conditions, `spec.unschedulable`); the NoExecute `unreachable` / `not-ready` taint follows
//!   the Ready status observed before this pass (`processTaintBaseEviction`), added through a
//!   per-zone rate limiter (`--node-eviction-rate`, burst 1), swapped at once between the two,
//!   and removed when the node is Ready again (`markNodeAsReachable`). Every added taint
//!   carries `timeAdded`. Zone disruption (`handleDisruption`): when every zone is fully
//!   disrupted (no Ready node) the NoExecute taints are removed and no new ones are added; a
//!   partially disrupted small zone gets no new ones either.
//! - **Pods on a not-Ready node** get `Ready=False` and a `NodeNotReady` warning event ("Node is
//!   not ready") (`MarkPodsNotReady`).
//! - **Taint eviction** (`tainteviction.Controller`): for every pod on a node with NoExecute
//!   taints, every taint must be tolerated, else the pod is evicted now; otherwise it is evicted
//!   after the smallest `tolerationSeconds` of the tolerations used, counted from when the
//!   taint (or the pod) was observed, and never if one of them has no `tolerationSeconds`.
//!   Eviction emits `TaintManagerEviction` "Marking for deletion Pod ns/name", adds the pod
//!   condition `DisruptionTarget=True` (reason `DeletionByTaintManager`, message "Taint manager:
//!   deleting due to NoExecute taint"), then deletes the pod (gracefully, as upstream: on a dead
//!   node it stays Terminating). A scheduled eviction whose taints go away is cancelled with
//!   "Cancelling deletion of Pod ns/name".
//!
//! Differences from upstream, on purpose: upstream polls node health every
//! `--node-monitor-period` (5 s) and taints NoExecute on the next pass; this core wakes exactly
//! at the grace deadline and acts on every change at once, so the lab's timings are the
//! configured ones, not "up to 5 s later". The PodReady marking is level-based (a pod that is
//! Ready on a not-Ready node) rather than edge-based, which converges to the same state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::taints::{self, Tolerated, NO_EXECUTE, NO_SCHEDULE};

/// Milliseconds since the Unix epoch, as the driver's clock read them.
pub type Millis = u64;

/// The event source of the node lifecycle controller (`v1.EventSource{Component: ...}`).
pub const NODE_CONTROLLER: &str = "node-controller";
/// The event source of the taint eviction controller (`names.TaintEvictionController`).
pub const TAINT_EVICTION_CONTROLLER: &str = "taint-eviction-controller";

const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
const LABEL_REGION: &str = "topology.kubernetes.io/region";
const LABEL_ZONE_BETA: &str = "failure-domain.beta.kubernetes.io/zone";
const LABEL_REGION_BETA: &str = "failure-domain.beta.kubernetes.io/region";
const LABEL_EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// How long to wait before retrying a write that failed for another reason than a conflict.
const RETRY_AFTER_FAILURE_MS: Millis = 1000;
/// A successful write whose effect the watch never shows (should not happen) is retried after
/// this long, so a lost watch event cannot wedge an object forever.
const RECHECK_AFTER_SUCCESS_MS: Millis = 10_000;

/// Settings; the defaults are kube-controller-manager v1.33's.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `--node-monitor-grace-period` (50 s since v1.32): how long a node may go without a
    /// renewed Lease or a new Ready heartbeat before its conditions become Unknown.
    pub node_monitor_grace_period_ms: Millis,
    /// `--node-startup-grace-period` (60 s): the same for a node that never posted Ready.
    pub node_startup_grace_period_ms: Millis,
    /// `--node-eviction-rate` (0.1/s): NoExecute taints added per second and zone.
    pub node_eviction_rate: f64,
    /// `--secondary-node-eviction-rate` (0.01/s): the rate in a partially disrupted large zone.
    pub secondary_node_eviction_rate: f64,
    /// `--large-cluster-size-threshold` (50).
    pub large_cluster_size_threshold: usize,
    /// `--unhealthy-zone-threshold` (0.55).
    pub unhealthy_zone_threshold: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_monitor_grace_period_ms: 50_000,
            node_startup_grace_period_ms: 60_000,
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            large_cluster_size_threshold: 50,
            unhealthy_zone_threshold: 0.55,
        }
    }
}

/// A watch input, as the driver's list+watch produces it.
#[derive(Clone, Debug)]
pub enum WatchEvent<K> {
    Applied(K),
    Deleted(K),
    /// A complete (re)list: everything not in it is gone.
    Relisted(Vec<K>),
}

/// Identifies a write so its completion can be fed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// An API request. Every object write names the resourceVersion it was computed from (a JSON
/// merge patch with `metadata.resourceVersion` is a precondition; a delete carries
/// `preconditions`), so a concurrent change gives a 409 instead of a lost update.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `PATCH /api/v1/nodes/{node}/status` (merge): `status.conditions` replaced.
    NodeStatus {
        node: String,
        resource_version: String,
        conditions: Value,
    },
    /// `PATCH /api/v1/nodes/{node}` (merge): `spec.taints` replaced.
    NodeTaints {
        node: String,
        resource_version: String,
        taints: Value,
    },
    /// `PATCH /api/v1/namespaces/{ns}/pods/{name}/status` (merge): `status.conditions` replaced.
    PodStatus {
        namespace: String,
        name: String,
        resource_version: String,
        conditions: Value,
    },
    /// `DELETE /api/v1/namespaces/{ns}/pods/{name}` with uid and resourceVersion preconditions
    /// and the pod's own grace period.
    DeletePod {
        namespace: String,
        name: String,
        uid: String,
        resource_version: String,
    },
    /// `POST /api/v1/namespaces/{ns}/events`: a complete core/v1 Event.
    CreateEvent(Value),
}

/// One write to perform.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub id: WriteId,
    pub request: Request,
}

/// How a write ended. Conflict and NotFound are ordinary outcomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Conflict,
    NotFound,
    Failed(String),
}

/// Per-zone figures (`node_collector_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoneFigures {
    pub size: u64,
    pub unhealthy: u64,
    /// NoExecute taints added (`node_collector_evictions_total`).
    pub evictions: u64,
}

/// A snapshot of the controller's figures for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    pub zones: BTreeMap<String, ZoneFigures>,
    /// `taint_eviction_controller_pod_deletions_total`.
    pub pod_deletions: u64,
    /// Pods whose eviction is scheduled.
    pub scheduled_evictions: u64,
}

impl Metrics {
    /// Prometheus text (zone labels are upstream's `GetZoneKey` without its NUL byte).
    pub fn text(&self) -> String {
        let mut out = String::new();
        let label = |z: &str| z.replace(['\u{0}', '"'], "");
        out.push_str("# HELP node_collector_zone_size Gauge measuring number of registered Nodes per zones.\n# TYPE node_collector_zone_size gauge\n");
        for (z, f) in &self.zones {
            out.push_str(&format!(
                "node_collector_zone_size{{zone=\"{}\"}} {}\n",
                label(z),
                f.size
            ));
        }
        out.push_str("# HELP node_collector_unhealthy_nodes_in_zone Gauge measuring number of not Ready Nodes per zones.\n# TYPE node_collector_unhealthy_nodes_in_zone gauge\n");
        for (z, f) in &self.zones {
            out.push_str(&format!(
                "node_collector_unhealthy_nodes_in_zone{{zone=\"{}\"}} {}\n",
                label(z),
                f.unhealthy
            ));
        }
        out.push_str("# HELP node_collector_zone_health Gauge measuring percentage of healthy nodes per zone.\n# TYPE node_collector_zone_health gauge\n");
        for (z, f) in &self.zones {
            let h = if f.size == 0 {
                100.0
            } else {
                100.0 * (f.size - f.unhealthy) as f64 / f.size as f64
            };
            out.push_str(&format!(
                "node_collector_zone_health{{zone=\"{}\"}} {}\n",
                label(z),
                h
            ));
        }
        out.push_str("# HELP node_collector_evictions_total Number of Node evictions that happened since current instance of NodeController started.\n# TYPE node_collector_evictions_total counter\n");
        for (z, f) in &self.zones {
            out.push_str(&format!(
                "node_collector_evictions_total{{zone=\"{}\"}} {}\n",
                label(z),
                f.evictions
            ));
        }
        out.push_str(&format!("# HELP taint_eviction_controller_pod_deletions_total Total number of Pods deleted by TaintEvictionController since its start.\n# TYPE taint_eviction_controller_pod_deletions_total counter\ntaint_eviction_controller_pod_deletions_total {}\n", self.pod_deletions));
        out.push_str(&format!("# HELP bonsai_node_lifecycle_scheduled_evictions Pods whose eviction is scheduled.\n# TYPE bonsai_node_lifecycle_scheduled_evictions gauge\nbonsai_node_lifecycle_scheduled_evictions {}\n", self.scheduled_evictions));
        out
    }
}

/// `namespace/name` of a pod.
pub type PodKey = (String, String);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ObjKey {
    Node(String),
    Pod(PodKey),
}

#[derive(Default, Debug)]
struct ObjWrites {
    in_flight: Option<WriteId>,
    /// No new write while the object is still at this resourceVersion (the last write was
    /// computed from it) — unless `retry_at` has passed.
    blocked_rv: Option<String>,
    retry_at: Option<Millis>,
}

#[derive(Debug)]
struct Pending {
    obj: Option<ObjKey>,
    rv: String,
    /// Events recorded once the write succeeded (upstream records after the update).
    on_success: Vec<Value>,
    /// A pod deletion: done means the eviction is over.
    evicts: Option<PodKey>,
    /// A new NoExecute taint in this zone (`node_collector_evictions_total`).
    zone_eviction: Option<String>,
}

/// `nodeHealthData`, without the fields v1.33 no longer uses.
#[derive(Clone, Debug)]
struct Health {
    probe: Millis,
    /// The Ready condition as last observed (`nodeHealth.status`).
    saved_ready: Option<NodeCondition>,
    /// `nodeHealth.lease`'s renewTime.
    lease_renew: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Eviction {
    /// `TimedWorker`: created at, fires at.
    Scheduled { created: Millis, fire: Millis },
    /// Fired: the DisruptionTarget condition and the deletion are being written.
    Firing,
    /// Done (upstream keeps the key with a nil worker so it is not added again).
    Fired,
}

/// The node lifecycle controller's state machine. See the module docs.
pub struct NodeLifecycle {
    config: Config,
    now: Millis,
    nodes: BTreeMap<String, Node>,
    leases: BTreeMap<String, Timestamp>,
    pods: BTreeMap<PodKey, Pod>,
    pods_by_node: BTreeMap<String, BTreeSet<PodKey>>,
    synced_nodes: bool,
    synced_leases: bool,
    synced_pods: bool,

    // Node lifecycle.
    known: BTreeSet<String>,
    health: BTreeMap<String, Health>,
    /// (deadline, node): when a node's grace period runs out.
    deadlines: BTreeSet<(Millis, String)>,
    node_deadline: BTreeMap<String, Millis>,
    node_dirty: BTreeSet<String>,
    /// A node was added or removed since the last pass (`classifyNodes` has work).
    node_set_changed: bool,
    /// Some node's Ready status (or the node set) changed: the zone states need a look.
    readiness_changed: bool,
    zone_states: BTreeMap<String, ZoneState>,
    /// Token bucket (burst 1) per zone: when the next NoExecute taint may be added.
    zone_next_taint: BTreeMap<String, Millis>,
    /// Nodes waiting for a token, and when it comes.
    taint_waits: BTreeMap<String, Millis>,

    // Taint eviction.
    tainted: BTreeMap<String, Vec<Taint>>,
    evictions: BTreeMap<PodKey, Eviction>,
    fire_queue: BTreeSet<(Millis, PodKey)>,
    te_dirty_nodes: BTreeSet<String>,
    te_dirty_pods: BTreeSet<PodKey>,
    pod_dirty: BTreeSet<PodKey>,

    // Counters for /metrics.
    zone_evictions: BTreeMap<String, u64>,
    pod_deletions: u64,

    // Writes.
    next_id: u64,
    event_seq: u64,
    objects: BTreeMap<ObjKey, ObjWrites>,
    pending: BTreeMap<WriteId, Pending>,
    out: VecDeque<Write>,
}

fn rfc3339(ms: Millis) -> String {
    Timestamp::from_millisecond(ms as i64)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn time(ms: Millis) -> Time {
    // Kubernetes times have second precision on the wire; keep the same in what we compare.
    Time(Timestamp::from_second((ms / 1000) as i64).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn rv_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.resource_version.clone().unwrap_or_default()
}

fn pod_key(p: &Pod) -> PodKey {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        name_of(&p.metadata),
    )
}

fn pod_node(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn pod_tolerations(p: &Pod) -> &[Toleration] {
    p.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

fn node_taints(n: &Node) -> &[Taint] {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

fn node_conditions(n: &Node) -> &[NodeCondition] {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[])
}

fn ready_condition(n: &Node) -> Option<&NodeCondition> {
    node_conditions(n).iter().find(|c| c.type_ == "Ready")
}

fn ready_status(n: &Node) -> &str {
    ready_condition(n).map_or("Unknown", |c| c.status.as_str())
}

fn creation_ms(n: &Node) -> Millis {
    n.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond().max(0) as Millis)
        .unwrap_or(0)
}

/// `nodetopology.GetZoneKey`.
fn zone_key(n: &Node) -> String {
    let labels = n.metadata.labels.as_ref();
    let get = |beta: &str, ga: &str| -> String {
        labels
            .and_then(|l| l.get(beta).or_else(|| l.get(ga)))
            .cloned()
            .unwrap_or_default()
    };
    let zone = get(LABEL_ZONE_BETA, LABEL_ZONE);
    let region = get(LABEL_REGION_BETA, LABEL_REGION);
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\u{0}:{zone}")
    }
}

fn excluded_from_disruption(n: &Node) -> bool {
    n.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(LABEL_EXCLUDE_DISRUPTION))
}

fn pod_condition<'a>(p: &'a Pod, ty: &str) -> Option<&'a PodCondition> {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == ty))
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

const DISRUPTION_REASON: &str = "DeletionByTaintManager";
const DISRUPTION_MESSAGE: &str = "Taint manager: deleting due to NoExecute taint";

fn has_disruption_condition(p: &Pod) -> bool {
    pod_condition(p, "DisruptionTarget").is_some_and(|c| {
        c.status == "True"
            && c.reason.as_deref() == Some(DISRUPTION_REASON)
            && c.message.as_deref() == Some(DISRUPTION_MESSAGE)
    })
}

impl NodeLifecycle {
    pub fn new(config: Config) -> Self {
        NodeLifecycle {
            config,
            now: 0,
            nodes: BTreeMap::new(),
            leases: BTreeMap::new(),
            pods: BTreeMap::new(),
            pods_by_node: BTreeMap::new(),
            synced_nodes: false,
            synced_leases: false,
            synced_pods: false,
            known: BTreeSet::new(),
            health: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            node_deadline: BTreeMap::new(),
            node_dirty: BTreeSet::new(),
            node_set_changed: false,
            readiness_changed: false,
            zone_states: BTreeMap::new(),
            zone_next_taint: BTreeMap::new(),
            taint_waits: BTreeMap::new(),
            tainted: BTreeMap::new(),
            evictions: BTreeMap::new(),
            fire_queue: BTreeSet::new(),
            te_dirty_nodes: BTreeSet::new(),
            te_dirty_pods: BTreeSet::new(),
            pod_dirty: BTreeSet::new(),
            zone_evictions: BTreeMap::new(),
            pod_deletions: 0,
            next_id: 1,
            event_seq: 0,
            objects: BTreeMap::new(),
            pending: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    #[cfg(test)]
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---- inputs ------------------------------------------------------------------------

    pub fn handle_node_event(&mut self, now: Millis, ev: WatchEvent<Node>) {
        self.advance(now);
        match ev {
            WatchEvent::Applied(n) => self.apply_node(n),
            WatchEvent::Deleted(n) => self.remove_node(&name_of(&n.metadata)),
            WatchEvent::Relisted(list) => {
                let names: BTreeSet<String> = list.iter().map(|n| name_of(&n.metadata)).collect();
                let gone: Vec<String> = self
                    .nodes
                    .keys()
                    .filter(|k| !names.contains(*k))
                    .cloned()
                    .collect();
                for g in gone {
                    self.remove_node(&g);
                }
                for n in list {
                    self.apply_node(n);
                }
                self.synced_nodes = true;
            }
        }
        self.reconcile();
    }

    pub fn handle_lease_event(&mut self, now: Millis, ev: WatchEvent<Lease>) {
        self.advance(now);
        let apply = |this: &mut Self, l: Lease| {
            // Node leases live in kube-node-lease and are named after their node.
            if l.metadata.namespace.as_deref() != Some("kube-node-lease") {
                return;
            }
            let name = name_of(&l.metadata);
            match l.spec.and_then(|s| s.renew_time).map(|t| t.0) {
                Some(t) => {
                    this.leases.insert(name.clone(), t);
                }
                None => {
                    this.leases.remove(&name);
                }
            }
            this.node_dirty.insert(name);
        };
        match ev {
            WatchEvent::Applied(l) => apply(self, l),
            WatchEvent::Deleted(l) => {
                let name = name_of(&l.metadata);
                self.leases.remove(&name);
            }
            WatchEvent::Relisted(list) => {
                self.leases.clear();
                for l in list {
                    apply(self, l);
                }
                self.synced_leases = true;
            }
        }
        self.reconcile();
    }

    pub fn handle_pod_event(&mut self, now: Millis, ev: WatchEvent<Pod>) {
        self.advance(now);
        match ev {
            WatchEvent::Applied(p) => self.apply_pod(p),
            WatchEvent::Deleted(p) => self.remove_pod(&pod_key(&p)),
            WatchEvent::Relisted(list) => {
                let keys: BTreeSet<PodKey> = list.iter().map(pod_key).collect();
                let gone: Vec<PodKey> = self
                    .pods
                    .keys()
                    .filter(|k| !keys.contains(*k))
                    .cloned()
                    .collect();
                for g in gone {
                    self.remove_pod(&g);
                }
                for p in list {
                    self.apply_pod(p);
                }
                self.synced_pods = true;
            }
        }
        self.reconcile();
    }

    pub fn handle_completion(&mut self, now: Millis, id: WriteId, outcome: Outcome) {
        self.advance(now);
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        if let Some(obj) = &p.obj {
            let w = self.objects.entry(obj.clone()).or_default();
            if w.in_flight == Some(id) {
                w.in_flight = None;
            }
            w.blocked_rv = Some(p.rv.clone());
            w.retry_at = Some(match outcome {
                Outcome::Failed(_) => now + RETRY_AFTER_FAILURE_MS,
                _ => now + RECHECK_AFTER_SUCCESS_MS,
            });
            if let ObjKey::Pod(k) = obj {
                self.pod_dirty.insert(k.clone());
            } else if let ObjKey::Node(n) = obj {
                self.node_dirty.insert(n.clone());
            }
        }
        match outcome {
            Outcome::Done => {
                for ev in p.on_success {
                    self.emit(ev);
                }
                if let Some(k) = p.evicts {
                    self.evictions.insert(k, Eviction::Fired);
                    self.pod_deletions += 1;
                }
                if let Some(z) = p.zone_eviction {
                    *self.zone_evictions.entry(z).or_default() += 1;
                }
            }
            Outcome::NotFound => {
                if let Some(k) = p.evicts {
                    self.evictions.insert(k, Eviction::Fired);
                }
            }
            Outcome::Conflict | Outcome::Failed(_) => {}
        }
        self.reconcile();
    }

    pub fn handle_timeout(&mut self, now: Millis) {
        self.advance(now);
        self.reconcile();
    }

    // ---- outputs -----------------------------------------------------------------------

    pub fn poll_write(&mut self) -> Option<Write> {
        self.out.pop_front()
    }

    /// When `handle_timeout` should next be called (a grace deadline, an eviction, a retry,
    /// a rate-limit token), if ever.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut t: Option<Millis> = None;
        let mut consider = |x: Millis| {
            if x > self.now {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if let Some((d, _)) = self.deadlines.iter().find(|(d, _)| *d > self.now) {
            consider(*d);
        }
        if let Some((f, _)) = self.fire_queue.iter().next() {
            consider((*f).max(self.now + 1));
        }
        for w in self.objects.values() {
            if w.in_flight.is_none() && w.blocked_rv.is_some() {
                if let Some(r) = w.retry_at {
                    consider(r);
                }
            }
        }
        for at in self.taint_waits.values() {
            consider(*at);
        }
        t
    }

    /// Whether every watched kind has been listed (upstream waits for its informers' sync).
    pub fn synced(&self) -> bool {
        self.synced_nodes && self.synced_leases && self.synced_pods
    }

    /// Scheduled evictions: pod → when it fires.
    #[cfg(test)]
    pub fn scheduled_evictions(&self) -> BTreeMap<PodKey, Millis> {
        self.evictions
            .iter()
            .filter_map(|(k, e)| match e {
                Eviction::Scheduled { fire, .. } => Some((k.clone(), *fire)),
                _ => None,
            })
            .collect()
    }

    /// The controller's figures, under kube-controller-manager's metric names.
    pub fn metrics(&self) -> Metrics {
        let mut zones: BTreeMap<String, ZoneFigures> = BTreeMap::new();
        for n in self.nodes.values() {
            if excluded_from_disruption(n) {
                continue;
            }
            let z = zones.entry(zone_key(n)).or_default();
            z.size += 1;
            if ready_status(n) != "True" {
                z.unhealthy += 1;
            }
        }
        for (z, e) in &self.zone_evictions {
            zones.entry(z.clone()).or_default().evictions = *e;
        }
        Metrics {
            zones,
            pod_deletions: self.pod_deletions,
            scheduled_evictions: self
                .evictions
                .values()
                .filter(|e| matches!(e, Eviction::Scheduled { .. }))
                .count() as u64,
        }
    }

    // ---- views -------------------------------------------------------------------------

    fn advance(&mut self, now: Millis) {
        // The driver's clock may step back a little between reads; never go back.
        self.now = self.now.max(now);
    }

    fn apply_node(&mut self, n: Node) {
        let name = name_of(&n.metadata);
        let old_ne = self
            .nodes
            .get(&name)
            .map(|o| taints::no_execute(node_taints(o)));
        let new_ne = taints::no_execute(node_taints(&n));
        if old_ne.as_ref() != Some(&new_ne) {
            self.te_dirty_nodes.insert(name.clone());
        }
        let ready_changed = self
            .nodes
            .get(&name)
            .is_none_or(|o| ready_status(o) != ready_status(&n));
        if ready_changed {
            self.readiness_changed = true;
            if !self.nodes.contains_key(&name) {
                self.node_set_changed = true;
            }
            for k in self.pods_by_node.get(&name).into_iter().flatten() {
                self.pod_dirty.insert(k.clone());
            }
        }
        self.nodes.insert(name.clone(), n);
        self.node_dirty.insert(name);
    }

    fn remove_node(&mut self, name: &str) {
        if self.nodes.remove(name).is_some() {
            self.node_set_changed = true;
            self.readiness_changed = true;
            self.te_dirty_nodes.insert(name.to_string());
            self.node_dirty.insert(name.to_string());
        }
    }

    fn apply_pod(&mut self, p: Pod) {
        let key = pod_key(&p);
        let node = pod_node(&p).to_string();
        match self.pods.get(&key) {
            Some(old) => {
                if pod_tolerations(old) != pod_tolerations(&p) || pod_node(old) != node {
                    self.te_dirty_pods.insert(key.clone());
                }
                let old_node = pod_node(old).to_string();
                if old_node != node {
                    if let Some(s) = self.pods_by_node.get_mut(&old_node) {
                        s.remove(&key);
                    }
                }
            }
            None => {
                self.te_dirty_pods.insert(key.clone());
            }
        }
        if !node.is_empty() {
            self.pods_by_node
                .entry(node)
                .or_default()
                .insert(key.clone());
        }
        self.pods.insert(key.clone(), p);
        self.pod_dirty.insert(key);
    }

    fn remove_pod(&mut self, key: &PodKey) {
        if let Some(old) = self.pods.remove(key) {
            if let Some(s) = self.pods_by_node.get_mut(pod_node(&old)) {
                s.remove(key);
            }
            self.te_dirty_pods.insert(key.clone());
        }
        self.objects.remove(&ObjKey::Pod(key.clone()));
    }

    // ---- the pass ----------------------------------------------------------------------

    fn reconcile(&mut self) {
        if !self.synced() {
            return;
        }
        let now = self.now;
        // Nodes whose grace ran out, or whose rate-limit token came.
        let due: Vec<String> = self
            .deadlines
            .iter()
            .take_while(|(d, _)| *d <= now)
            .map(|(_, n)| n.clone())
            .collect();
        self.node_dirty.extend(due);
        let waited: Vec<String> = self
            .taint_waits
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        self.node_dirty.extend(waited);
        // Objects whose retry time came.
        let retries: Vec<ObjKey> = self
            .objects
            .iter()
            .filter(|(_, w)| w.in_flight.is_none() && w.retry_at.is_some_and(|r| r <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in retries {
            // The retry time came: one more write from the same version is allowed.
            if let Some(w) = self.objects.get_mut(&k) {
                w.blocked_rv = None;
                w.retry_at = None;
            }
            match k {
                ObjKey::Node(n) => {
                    self.node_dirty.insert(n);
                }
                ObjKey::Pod(p) => {
                    self.pod_dirty.insert(p);
                }
            }
        }

        if std::mem::take(&mut self.node_set_changed) {
            self.classify_nodes();
        }
        let dirty: Vec<String> = std::mem::take(&mut self.node_dirty).into_iter().collect();
        for name in &dirty {
            self.update_health(name);
        }
        self.handle_disruption();
        let mut dirty: BTreeSet<String> = dirty.into_iter().collect();
        dirty.extend(std::mem::take(&mut self.node_dirty));
        for name in &dirty {
            self.reconcile_taints(name);
        }
        self.taint_manager();
        let pods: Vec<PodKey> = std::mem::take(&mut self.pod_dirty).into_iter().collect();
        for k in pods {
            self.reconcile_pod(&k);
        }
    }

    /// `classifyNodes` + the RegisteredNode / RemovingNode events.
    fn classify_nodes(&mut self) {
        let added: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| !self.known.contains(*n))
            .cloned()
            .collect();
        let deleted: Vec<String> = self
            .known
            .iter()
            .filter(|n| !self.nodes.contains_key(*n))
            .cloned()
            .collect();
        for n in added {
            let uid = self.nodes[&n].metadata.uid.clone().unwrap_or_default();
            let ev = self.node_event(
                &n,
                &uid,
                "Normal",
                "RegisteredNode",
                &format!("Node {n} event: Registered Node {n} in Controller"),
            );
            self.emit(ev);
            self.known.insert(n.clone());
            self.node_dirty.insert(n);
        }
        for n in deleted {
            let ev = self.node_event(
                &n,
                "",
                "Normal",
                "RemovingNode",
                &format!("Node {n} event: Removing Node {n} from Controller"),
            );
            self.emit(ev);
            self.known.remove(&n);
            self.health.remove(&n);
            if let Some(d) = self.node_deadline.remove(&n) {
                self.deadlines.remove(&(d, n.clone()));
            }
            self.taint_waits.remove(&n);
            self.objects.remove(&ObjKey::Node(n));
        }
    }

    fn set_deadline(&mut self, name: &str, at: Option<Millis>) {
        if let Some(d) = self.node_deadline.remove(name) {
            self.deadlines.remove(&(d, name.to_string()));
        }
        if let Some(at) = at {
            self.node_deadline.insert(name.to_string(), at);
            self.deadlines.insert((at, name.to_string()));
        }
    }

    /// `tryUpdateNodeHealth`.
    fn update_health(&mut self, name: &str) {
        let Some(node) = self.nodes.get(name).cloned() else {
            return;
        };
        let now = self.now;
        let current = ready_condition(&node).cloned();
        let observed_status = current
            .as_ref()
            .map_or("Unknown".to_string(), |c| c.status.clone());
        let grace = if current.is_some() {
            self.config.node_monitor_grace_period_ms
        } else {
            self.config.node_startup_grace_period_ms
        };
        let mut h = self.health.remove(name);
        match (&mut h, &current) {
            (None, None) => {
                h = Some(Health {
                    probe: creation_ms(&node),
                    saved_ready: None,
                    lease_renew: None,
                });
            }
            (Some(h), None) => {
                if h.saved_ready.is_some() {
                    // "ReadyCondition was removed from Status of Node": start over.
                    h.probe = now;
                    h.lease_renew = None;
                }
                h.saved_ready = None;
            }
            (None, Some(c)) => {
                h = Some(Health {
                    probe: now,
                    saved_ready: Some(c.clone()),
                    lease_renew: None,
                });
            }
            (Some(h), Some(c)) => match &h.saved_ready {
                None => {
                    *h = Health {
                        probe: now,
                        saved_ready: Some(c.clone()),
                        lease_renew: None,
                    };
                }
                Some(saved) if saved.last_heartbeat_time != c.last_heartbeat_time => {
                    *h = Health {
                        probe: now,
                        saved_ready: Some(c.clone()),
                        lease_renew: None,
                    };
                }
                Some(_) => {}
            },
        }
        let mut h = h.expect("set above");
        // Always move the probe time when the Lease was renewed.
        if let Some(renew) = self.leases.get(name) {
            if h.lease_renew.is_none_or(|saved| saved < *renew) {
                h.lease_renew = Some(*renew);
                h.probe = now;
            }
        }
        let deadline = h.probe + grace;
        self.health.insert(name.to_string(), h);
        if now <= deadline {
            self.set_deadline(name, Some(deadline + 1));
            return;
        }
        self.set_deadline(name, None);
        // The grace period ran out: Unknown, whatever the kubelet said last.
        let conditions = self.unknown_conditions(&node);
        let new_ready = conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .expect("Ready is always set");
        if current.as_ref() == Some(&new_ready) {
            return;
        }
        let mut on_success = Vec::new();
        if observed_status == "True" {
            let uid = node.metadata.uid.clone().unwrap_or_default();
            on_success.push(self.node_event(
                name,
                &uid,
                "Normal",
                "NodeNotReady",
                &format!("Node {name} status is now: NodeNotReady"),
            ));
        }
        let rv = rv_of(&node.metadata);
        self.write(
            Some(ObjKey::Node(name.to_string())),
            rv.clone(),
            Request::NodeStatus {
                node: name.to_string(),
                resource_version: rv,
                conditions: serde_json::to_value(&conditions).unwrap_or(Value::Null),
            },
            on_success,
            None,
        );
    }

    /// The node's conditions with Ready and the pressure conditions turned Unknown.
    fn unknown_conditions(&self, node: &Node) -> Vec<NodeCondition> {
        let now = time(self.now);
        let mut conds = node_conditions(node).to_vec();
        for ty in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            match conds.iter_mut().find(|c| c.type_ == ty) {
                None => conds.push(NodeCondition {
                    type_: ty.to_string(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(now.clone()),
                }),
                Some(c) if c.status != "Unknown" => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(now.clone());
                }
                Some(_) => {}
            }
        }
        conds
    }

    /// `handleDisruption`: zone states from the Ready conditions; entering "every zone fully
    /// disrupted" removes the NoExecute taints (see `reconcile_taints`), leaving it resets the
    /// probe times so nodes get a full grace period again.
    fn handle_disruption(&mut self) {
        // Only Ready statuses (and the node set) decide the zone states.
        if !std::mem::take(&mut self.readiness_changed) {
            return;
        }
        let mut zones: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for n in self.nodes.values() {
            if excluded_from_disruption(n) {
                continue;
            }
            let e = zones.entry(zone_key(n)).or_default();
            if ready_status(n) == "True" {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        let new_states: BTreeMap<String, ZoneState> = zones
            .iter()
            .map(|(z, (ready, not_ready))| {
                let s = if *ready == 0 && *not_ready > 0 {
                    ZoneState::FullDisruption
                } else if *not_ready > 2
                    && (*not_ready as f64) / ((*not_ready + *ready) as f64)
                        >= self.config.unhealthy_zone_threshold
                {
                    ZoneState::PartialDisruption
                } else {
                    ZoneState::Normal
                };
                (z.clone(), s)
            })
            .collect();
        // Zones seen for the first time start Initial; zones without nodes are forgotten.
        let mut old = self.zone_states.clone();
        old.retain(|z, _| new_states.contains_key(z));
        for z in new_states.keys() {
            old.entry(z.clone()).or_insert(ZoneState::Initial);
        }
        let full = |s: &ZoneState| *s == ZoneState::FullDisruption;
        let all_are_full = new_states.values().all(full);
        let all_were_full = old.values().all(full);
        if !all_are_full || !all_were_full {
            if all_are_full {
                // "Controller detected that all Nodes are not-Ready. Entering master disruption
                // mode": every NoExecute taint goes (`reconcile_taints` sees the mode).
                self.node_dirty.extend(self.nodes.keys().cloned());
            } else if all_were_full {
                // "Controller detected that some Nodes are Ready. Exiting master disruption
                // mode": every node gets a fresh grace period.
                let now = self.now;
                let names: Vec<String> = self.nodes.keys().cloned().collect();
                for n in names {
                    if let Some(h) = self.health.get_mut(&n) {
                        h.probe = now;
                    }
                    self.node_dirty.insert(n);
                }
                self.zone_next_taint.clear();
            } else {
                // A zone whose state changed gets a new limiter (a full bucket).
                for (z, s) in &new_states {
                    if old.get(z) != Some(s) {
                        self.zone_next_taint.remove(z);
                    }
                }
            }
        }
        self.zone_states = new_states;
    }

    fn zone_rate(&self, zone: &str) -> f64 {
        let all_full = !self.zone_states.is_empty()
            && self
                .zone_states
                .values()
                .all(|s| *s == ZoneState::FullDisruption);
        if all_full {
            return 0.0;
        }
        match self.zone_states.get(zone) {
            Some(ZoneState::PartialDisruption) => {
                let size = self
                    .nodes
                    .values()
                    .filter(|n| !excluded_from_disruption(n) && zone_key(n) == zone)
                    .count();
                if size > self.config.large_cluster_size_threshold {
                    self.config.secondary_node_eviction_rate
                } else {
                    0.0
                }
            }
            _ => self.config.node_eviction_rate,
        }
    }

    fn all_zones_fully_disrupted(&self) -> bool {
        !self.zone_states.is_empty()
            && self
                .zone_states
                .values()
                .all(|s| *s == ZoneState::FullDisruption)
    }

    /// `doNoScheduleTaintingPass` + `processTaintBaseEviction` / `doNoExecuteTaintingPass` /
    /// `markNodeAsReachable`, as one desired taint list and one write.
    fn reconcile_taints(&mut self, name: &str) {
        let Some(node) = self.nodes.get(name) else {
            return;
        };
        let now = self.now;
        let current = node_taints(node).to_vec();
        // NoSchedule from the conditions.
        let mut want_ns: Vec<&'static str> = node_conditions(node)
            .iter()
            .filter_map(taints::condition_taint_key)
            .collect();
        if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            want_ns.push(taints::TAINT_UNSCHEDULABLE);
        }
        let owned_ns = |t: &Taint| {
            t.effect == NO_SCHEDULE
                && (t.key == taints::TAINT_UNSCHEDULABLE
                    || taints::CONDITION_TAINT_KEYS.contains(&t.key.as_str()))
        };
        // NoExecute from the Ready status observed before this pass.
        let has_ne = |key: &str| {
            current
                .iter()
                .any(|t| taints::same_taint(t, key, NO_EXECUTE))
        };
        let (ne_want, ne_other) = match ready_status(node) {
            "False" => (Some(taints::TAINT_NOT_READY), taints::TAINT_UNREACHABLE),
            "True" => (None, ""),
            _ => (Some(taints::TAINT_UNREACHABLE), taints::TAINT_NOT_READY),
        };
        let zone = zone_key(node);
        let mut ne_want = if self.all_zones_fully_disrupted() || !self.health.contains_key(name) {
            None
        } else {
            ne_want
        };
        self.taint_waits.remove(name);
        if let Some(k) = ne_want {
            let swapping = has_ne(ne_other);
            if !has_ne(k) && !swapping {
                // A new NoExecute taint waits for the zone's rate limiter (burst 1).
                let rate = self.zone_rate(&zone);
                let next = self.zone_next_taint.get(&zone).copied().unwrap_or(0);
                if rate <= 0.0 {
                    ne_want = None;
                } else if now < next {
                    self.taint_waits.insert(name.to_string(), next);
                    ne_want = None;
                }
            }
        }
        let ne_owned = |t: &Taint| {
            t.effect == NO_EXECUTE
                && (t.key == taints::TAINT_UNREACHABLE || t.key == taints::TAINT_NOT_READY)
        };
        let mut new: Vec<Taint> = Vec::new();
        for t in &current {
            let keep = if owned_ns(t) {
                want_ns.contains(&t.key.as_str())
            } else if ne_owned(t) {
                match ne_want {
                    Some(k) => t.key == k,
                    // Waiting for a token, or the node is Ready: a present taint stays only
                    // while the node is not Ready and a new one could not be added yet.
                    None => {
                        ready_status(node) != "True"
                            && !self.all_zones_fully_disrupted()
                            && self.taint_waits.contains_key(name)
                    }
                }
            } else {
                true
            };
            if keep {
                new.push(t.clone());
            }
        }
        let added_time = time(now);
        for k in &want_ns {
            if !new.iter().any(|t| taints::same_taint(t, k, NO_SCHEDULE)) {
                new.push(Taint {
                    key: k.to_string(),
                    effect: NO_SCHEDULE.into(),
                    value: None,
                    time_added: Some(added_time.clone()),
                });
            }
        }
        let mut takes_token = false;
        if let Some(k) = ne_want {
            if !new.iter().any(|t| taints::same_taint(t, k, NO_EXECUTE)) {
                takes_token = !has_ne(ne_other);
                new.push(Taint {
                    key: k.to_string(),
                    effect: NO_EXECUTE.into(),
                    value: None,
                    time_added: Some(added_time.clone()),
                });
            }
        }
        if new == current {
            return;
        }
        let rv = rv_of(&node.metadata);
        let obj = ObjKey::Node(name.to_string());
        if !self.can_write(&obj, &rv) {
            return;
        }
        if takes_token {
            let rate = self.zone_rate(&zone);
            if rate > 0.0 {
                let period = (1000.0 / rate) as Millis;
                self.zone_next_taint.insert(zone.clone(), now + period);
            }
        }
        self.write(
            Some(obj),
            rv.clone(),
            Request::NodeTaints {
                node: name.to_string(),
                resource_version: rv,
                taints: serde_json::to_value(&new).unwrap_or(Value::Null),
            },
            Vec::new(),
            None,
        );
        if takes_token {
            if let Some(p) = self.pending.get_mut(&WriteId(self.next_id - 1)) {
                p.zone_eviction = Some(zone);
            }
        }
    }

    // ---- taint eviction ----------------------------------------------------------------

    fn taint_manager(&mut self) {
        let now = self.now;
        // Node updates first (upstream's workers drain the node queue before pods).
        let nodes: Vec<String> = std::mem::take(&mut self.te_dirty_nodes)
            .into_iter()
            .collect();
        for name in nodes {
            let Some(node) = self.nodes.get(&name) else {
                // A deleted node is forgotten; evictions already scheduled still fire
                // (upstream's `handleNodeUpdate` on NotFound).
                self.tainted.remove(&name);
                continue;
            };
            let taints = taints::no_execute(node_taints(node));
            if taints.is_empty() {
                self.tainted.remove(&name);
            } else {
                self.tainted.insert(name.clone(), taints.clone());
            }
            let pods: Vec<PodKey> = self
                .pods_by_node
                .get(&name)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            for k in pods {
                if taints.is_empty() {
                    self.cancel_eviction(&k);
                } else {
                    self.process_pod_on_node(&k, &taints, now);
                }
            }
        }
        let pods: Vec<PodKey> = std::mem::take(&mut self.te_dirty_pods)
            .into_iter()
            .collect();
        for k in pods {
            let Some(p) = self.pods.get(&k) else {
                self.cancel_eviction(&k);
                self.evictions.remove(&k);
                continue;
            };
            let node = pod_node(p).to_string();
            if node.is_empty() {
                continue;
            }
            let Some(taints) = self.tainted.get(&node).cloned() else {
                continue;
            };
            self.process_pod_on_node(&k, &taints, now);
        }
        // Fire what is due.
        let due: Vec<(Millis, PodKey)> = self
            .fire_queue
            .iter()
            .take_while(|(f, _)| *f <= now)
            .cloned()
            .collect();
        for (f, k) in due {
            self.fire_queue.remove(&(f, k.clone()));
            if !matches!(self.evictions.get(&k), Some(Eviction::Scheduled { fire, .. }) if *fire == f)
            {
                continue;
            }
            self.evictions.insert(k.clone(), Eviction::Firing);
            let ev = self.pod_event(
                &k,
                None,
                TAINT_EVICTION_CONTROLLER,
                "Normal",
                "TaintManagerEviction",
                &format!("Marking for deletion Pod {}/{}", k.0, k.1),
            );
            self.emit(ev);
            self.pod_dirty.insert(k);
        }
    }

    /// `processPodOnNode`.
    fn process_pod_on_node(&mut self, k: &PodKey, taints: &[Taint], now: Millis) {
        let Some(p) = self.pods.get(k) else {
            return;
        };
        let tolerations = pod_tolerations(p).to_vec();
        let (all, used) = taints::matching_tolerations(taints, &tolerations);
        if !all {
            self.cancel_eviction(k);
            self.schedule(k, now, now);
            return;
        }
        let min = match taints::min_toleration(&used) {
            Tolerated::Forever => {
                self.cancel_eviction(k);
                return;
            }
            Tolerated::No => 0,
            Tolerated::For(ms) => ms,
        };
        let mut start = now;
        let trigger = now + min;
        match self.evictions.get(k) {
            Some(Eviction::Scheduled { created, .. }) => {
                start = *created;
                if start + min < trigger {
                    return;
                }
                self.cancel_eviction(k);
            }
            Some(Eviction::Firing) => return,
            Some(Eviction::Fired) => {
                // A nil worker: cancelling removes it quietly, then it may be added again.
                self.evictions.remove(k);
            }
            None => {}
        }
        self.schedule(k, start, trigger);
    }

    fn schedule(&mut self, k: &PodKey, created: Millis, fire: Millis) {
        if self.evictions.contains_key(k) {
            return; // `AddWork` ignores a key already present.
        }
        self.evictions
            .insert(k.clone(), Eviction::Scheduled { created, fire });
        self.fire_queue.insert((fire, k.clone()));
    }

    /// `cancelWorkWithEvent`.
    fn cancel_eviction(&mut self, k: &PodKey) {
        match self.evictions.get(k) {
            Some(Eviction::Scheduled { fire, .. }) => {
                let fire = *fire;
                self.fire_queue.remove(&(fire, k.clone()));
                self.evictions.remove(k);
                let ev = self.pod_event(
                    k,
                    None,
                    TAINT_EVICTION_CONTROLLER,
                    "Normal",
                    "TaintManagerEviction",
                    &format!("Cancelling deletion of Pod {}/{}", k.0, k.1),
                );
                self.emit(ev);
            }
            Some(Eviction::Fired) => {
                self.evictions.remove(k);
            }
            Some(Eviction::Firing) | None => {}
        }
    }

    // ---- pod writes --------------------------------------------------------------------

    /// MarkPodsNotReady and the eviction's two writes (DisruptionTarget, then delete).
    fn reconcile_pod(&mut self, k: &PodKey) {
        let Some(p) = self.pods.get(k) else {
            if matches!(self.evictions.get(k), Some(Eviction::Firing)) {
                self.evictions.insert(k.clone(), Eviction::Fired);
            }
            return;
        };
        let rv = rv_of(&p.metadata);
        let obj = ObjKey::Pod(k.clone());
        if !self.can_write(&obj, &rv) {
            return;
        }
        let now = time(self.now);
        let firing = matches!(self.evictions.get(k), Some(Eviction::Firing));
        let node = pod_node(p);
        let node_not_ready = !node.is_empty()
            && self.health.contains_key(node)
            && self
                .nodes
                .get(node)
                .is_some_and(|n| ready_status(n) != "True");
        let mark_not_ready = node_not_ready
            && !is_terminating(p)
            && pod_condition(p, "Ready").is_some_and(|c| c.status == "True");
        let add_disruption = firing && !has_disruption_condition(p);
        if mark_not_ready || add_disruption {
            let mut conds: Vec<PodCondition> = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let mut on_success = Vec::new();
            if mark_not_ready {
                if let Some(c) = conds.iter_mut().find(|c| c.type_ == "Ready") {
                    c.status = "False".into();
                    c.last_transition_time = Some(now.clone());
                }
                let uid = p.metadata.uid.clone();
                on_success.push(self.pod_event(
                    k,
                    uid.as_deref(),
                    NODE_CONTROLLER,
                    "Warning",
                    "NodeNotReady",
                    "Node is not ready",
                ));
            }
            if add_disruption {
                let c = PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some(DISRUPTION_REASON.into()),
                    message: Some(DISRUPTION_MESSAGE.into()),
                    last_transition_time: Some(now.clone()),
                    ..Default::default()
                };
                match conds.iter_mut().find(|c| c.type_ == "DisruptionTarget") {
                    Some(old) => {
                        if old.status == "True" {
                            // UpdatePodCondition keeps the transition time when the status
                            // stays the same.
                            let t = old.last_transition_time.clone();
                            *old = PodCondition {
                                last_transition_time: t,
                                ..c
                            };
                        } else {
                            *old = c;
                        }
                    }
                    None => conds.push(c),
                }
            }
            self.write(
                Some(obj),
                rv.clone(),
                Request::PodStatus {
                    namespace: k.0.clone(),
                    name: k.1.clone(),
                    resource_version: rv,
                    conditions: serde_json::to_value(&conds).unwrap_or(Value::Null),
                },
                on_success,
                None,
            );
            return;
        }
        if firing {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            self.write(
                Some(obj),
                rv.clone(),
                Request::DeletePod {
                    namespace: k.0.clone(),
                    name: k.1.clone(),
                    uid,
                    resource_version: rv,
                },
                Vec::new(),
                Some(k.clone()),
            );
        }
    }

    // ---- writes and events -------------------------------------------------------------

    fn can_write(&self, obj: &ObjKey, rv: &str) -> bool {
        match self.objects.get(obj) {
            None => true,
            Some(w) => {
                w.in_flight.is_none()
                    && (w.blocked_rv.as_deref() != Some(rv)
                        || w.retry_at.is_some_and(|r| r <= self.now))
            }
        }
    }

    fn write(
        &mut self,
        obj: Option<ObjKey>,
        rv: String,
        request: Request,
        on_success: Vec<Value>,
        evicts: Option<PodKey>,
    ) {
        if let Some(o) = &obj {
            if !self.can_write(o, &rv) {
                return;
            }
        }
        let id = WriteId(self.next_id);
        self.next_id += 1;
        if let Some(o) = &obj {
            let w = self.objects.entry(o.clone()).or_default();
            w.in_flight = Some(id);
            w.blocked_rv = None;
            w.retry_at = None;
        }
        self.pending.insert(
            id,
            Pending {
                obj,
                rv,
                on_success,
                evicts,
                zone_eviction: None,
            },
        );
        self.out.push_back(Write { id, request });
    }

    fn emit(&mut self, event: Value) {
        let id = WriteId(self.next_id);
        self.next_id += 1;
        self.pending.insert(
            id,
            Pending {
                obj: None,
                rv: String::new(),
                on_success: Vec::new(),
                evicts: None,
                zone_eviction: None,
            },
        );
        self.out.push_back(Write {
            id,
            request: Request::CreateEvent(event),
        });
    }

    /// A core/v1 Event as client-go's recorder writes it (name `<object>.<hex nanoseconds>`).
    #[allow(clippy::too_many_arguments)] // one per field of the Event
    fn event(
        &mut self,
        namespace: &str,
        involved: Value,
        object_name: &str,
        component: &str,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Value {
        self.event_seq += 1;
        let nanos = self.now as u128 * 1_000_000 + (self.event_seq % 1_000_000) as u128;
        let t = rfc3339(self.now);
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{object_name}.{nanos:x}"), "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": t,
            "lastTimestamp": t,
            "count": 1,
            "type": type_,
            "eventTime": null,
            "reportingComponent": component,
            "reportingInstance": ""
        })
    }

    fn node_event(&mut self, node: &str, uid: &str, type_: &str, reason: &str, msg: &str) -> Value {
        let mut involved = json!({"kind": "Node", "name": node, "apiVersion": "v1"});
        if !uid.is_empty() {
            involved["uid"] = json!(uid);
        }
        // Events of cluster-scoped objects go to the default namespace.
        self.event(
            "default",
            involved,
            node,
            NODE_CONTROLLER,
            type_,
            reason,
            msg,
        )
    }

    fn pod_event(
        &mut self,
        k: &PodKey,
        uid: Option<&str>,
        component: &str,
        type_: &str,
        reason: &str,
        msg: &str,
    ) -> Value {
        let mut involved =
            json!({"kind": "Pod", "namespace": k.0, "name": k.1, "apiVersion": "v1"});
        if let Some(u) = uid {
            involved["uid"] = json!(u);
            if let Some(p) = self.pods.get(k) {
                involved["resourceVersion"] = json!(rv_of(&p.metadata));
            }
        }
        self.event(&k.0, involved, &k.1, component, type_, reason, msg)
    }
}
