//! The simulated components: the real cores (scheduler, volume controller, kubelet pod
//! lifecycle) behind one small enum, so the world can drive them alike: deliver a watch event,
//! complete a request, fire the timer, drain the requests.
//!
//! The world speaks JSON (the store's language); this module converts to and from the typed
//! objects each core takes, exactly as the real drivers do with `kube`'s deserialisation.
//! Every stored version of an object is one [`Obj`]: its JSON plus its typed form, decoded at
//! most once (on first use) and cloned from there for every component it is delivered to — a
//! watch event fans out to several components, and relists hand the same versions out again.

use std::any::Any;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Event, Node, PersistentVolume, PersistentVolumeClaim, Pod, PodStatus,
};
use k8s_openapi::api::storage::v1::{CSIStorageCapacity, StorageClass};
use serde::de::DeserializeOwned;
use serde_json::Value;

use kubelet_lite::core::pod::{Action, Exit, NodeIdentity, PodState};
use kubelet_lite::core::volumes::{ClusterView as KubeletView, HostPaths, PathKind, PodDirs};
use scheduler::core as sched;
use volume_controller::core as vc;

use super::objects::{self, Kind};

/// One stored version of an object: the JSON the store keeps (parsed), and its typed form,
/// decoded once on first use. Immutable, shared by the mirror, the event log and outcomes.
pub struct Obj {
    json: Arc<Value>,
    typed: OnceCell<Result<Box<dyn Any>, String>>,
}

impl Deref for Obj {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.json
    }
}

impl std::fmt::Debug for Obj {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.json.fmt(f)
    }
}

impl Obj {
    pub fn new(json: Arc<Value>) -> Arc<Obj> {
        Arc::new(Obj {
            json,
            typed: OnceCell::new(),
        })
    }

    pub fn json(&self) -> &Arc<Value> {
        &self.json
    }

    /// The typed object, decoded on first use and borrowed from there.
    pub fn typed_ref<T: DeserializeOwned + Clone + 'static>(&self) -> Result<Cow<'_, T>, String> {
        let first = self
            .typed
            .get_or_init(|| typed::<T>(&self.json).map(|t| Box::new(t) as Box<dyn Any>));
        match first {
            Ok(b) => match b.downcast_ref::<T>() {
                Some(t) => Ok(Cow::Borrowed(t)),
                // Asked as another type than the first time (no kind is): decode afresh.
                None => typed::<T>(&self.json).map(Cow::Owned),
            },
            Err(e) => Err(e.clone()),
        }
    }

    /// The typed object, owned (what the cores take).
    pub fn typed<T: DeserializeOwned + Clone + 'static>(&self) -> Result<T, String> {
        self.typed_ref::<T>().map(Cow::into_owned)
    }
}

/// What a watch hands a core.
pub enum Delivery<'a> {
    Applied(&'a Obj),
    Deleted(&'a Obj),
    Relisted(Vec<Arc<Obj>>),
}

/// A request a core made, as the world must perform it.
#[derive(Clone, Debug)]
pub enum Req {
    Sched(sched::Request),
    Vc(vc::Request),
    Kube(KubeReq),
}

/// The kubelet's writes (its driver's `pods/status` update and the final delete).
#[derive(Clone, Debug)]
pub enum KubeReq {
    Status {
        namespace: String,
        name: String,
        status: Value,
        resource_version: u64,
    },
    Finish {
        namespace: String,
        name: String,
        uid: String,
    },
}

/// How the simulated API server answered. Conflict and NotFound are expected outcomes.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The object as stored after the write (for a delete: its last state).
    Object(Arc<Obj>),
    /// A Status body (`pods/binding`).
    Status(Value),
    Read(Option<Arc<Obj>>),
    List(Vec<Arc<Obj>>),
    Conflict(String),
    NotFound(String),
    Failed(String),
}

impl Outcome {
    pub fn short(&self) -> String {
        match self {
            Outcome::Object(o) => {
                format!("ok r{}", objects::str_at(o, "/metadata/resourceVersion"))
            }
            Outcome::Status(_) => "ok".into(),
            Outcome::Read(Some(_)) => "found".into(),
            Outcome::Read(None) => "not found".into(),
            Outcome::List(l) => format!("{} items", l.len()),
            Outcome::Conflict(m) => format!("CONFLICT ({m})"),
            Outcome::NotFound(_) => "NOT FOUND".into(),
            Outcome::Failed(m) => format!("FAILED ({m})"),
        }
    }
}

fn typed<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    T::deserialize(v).map_err(|e| {
        format!(
            "cannot decode {}: {e}",
            objects::str_at(v, "/metadata/name")
        )
    })
}

fn typed_list<T: DeserializeOwned + Clone + 'static>(l: &[Arc<Obj>]) -> Result<Vec<T>, String> {
    l.iter().map(|v| v.typed()).collect()
}

/// Every local disk exists on every simulated node (the scenarios are about binding, not
/// about a missing mount point).
struct AllDirs;

impl HostPaths for AllDirs {
    fn kind(&self, _path: &Path) -> PathKind {
        PathKind::Directory
    }
}

/// One node's kubelet: informer caches, one real `PodState` per pod, and the effects
/// (mounts, container starts, signals, teardowns) waiting for the world to run them.
pub struct Kubelet {
    pub node: String,
    labels: BTreeMap<String, String>,
    ident: NodeIdentity,
    dirs: PodDirs,
    pods: BTreeMap<String, Pod>,
    /// Pods changed since the sync loop last handed them to their `PodState` (handing an
    /// unchanged pod again is a no-op: `handle_pod` only replaces the pod).
    fresh: BTreeSet<String>,
    pvcs: BTreeMap<String, PersistentVolumeClaim>,
    pvs: BTreeMap<String, PersistentVolume>,
    synced: u8,
    states: BTreeMap<String, PodState>,
    pub effects: VecDeque<(String, Action)>,
    outbox: VecDeque<(u64, KubeReq)>,
    next_id: u64,
    /// Pod key → request id of the status write in flight, and the status (typed and JSON).
    status_inflight: BTreeMap<String, (u64, PodStatus, Value)>,
    /// The last status this kubelet wrote per pod (read your writes), typed and as JSON.
    written: BTreeMap<String, (PodStatus, Value)>,
    /// Per pod, the status its `PodState` reported last, typed and as JSON.
    status_json: BTreeMap<String, (PodStatus, Value)>,
    /// Per pod, the JSON of the status of the pod version (resourceVersion) seen last.
    current_json: BTreeMap<String, (u64, Option<Value>)>,
    /// A status write conflicted at this resourceVersion: wait for a newer pod.
    stale: BTreeMap<String, u64>,
    finishing: BTreeSet<String>,
    /// Kubelet Events, shown in the trace (not written: nothing in the scenarios reads them).
    pub notes: Vec<String>,
}

fn key_of(v: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        v.namespace.as_deref().unwrap_or("default"),
        v.name.as_deref().unwrap_or("")
    )
}

fn rv_of(v: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    v.resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

impl Kubelet {
    pub fn new(node: &str) -> Kubelet {
        let mut labels = BTreeMap::new();
        labels.insert(apiserver::api::LABEL_HOSTNAME.to_string(), node.to_string());
        labels.insert("kubernetes.io/os".to_string(), "linux".to_string());
        Kubelet {
            node: node.to_string(),
            labels,
            ident: NodeIdentity {
                node_name: node.to_string(),
                node_ip: "127.0.0.1".into(),
            },
            dirs: PodDirs {
                root: PathBuf::from(format!("/var/lib/bonsai/{node}/pods")),
            },
            pods: BTreeMap::new(),
            fresh: BTreeSet::new(),
            pvcs: BTreeMap::new(),
            pvs: BTreeMap::new(),
            synced: 0,
            states: BTreeMap::new(),
            effects: VecDeque::new(),
            outbox: VecDeque::new(),
            next_id: 0,
            status_inflight: BTreeMap::new(),
            written: BTreeMap::new(),
            status_json: BTreeMap::new(),
            current_json: BTreeMap::new(),
            stale: BTreeMap::new(),
            finishing: BTreeSet::new(),
            notes: Vec::new(),
        }
    }

    fn mine(&self, p: &Pod) -> bool {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(self.node.as_str())
    }

    fn deliver(&mut self, now: u64, kind: Kind, d: Delivery<'_>) -> Result<(), String> {
        match (kind, d) {
            (Kind::Pod, Delivery::Applied(v)) => {
                let p = v.typed_ref::<Pod>()?;
                let k = key_of(&p.metadata);
                if self.mine(&p) {
                    self.pods.insert(k.clone(), p.into_owned());
                    self.fresh.insert(k);
                } else {
                    self.pods.remove(&k);
                }
            }
            (Kind::Pod, Delivery::Deleted(v)) => {
                let p = v.typed_ref::<Pod>()?;
                self.pods.remove(&key_of(&p.metadata));
            }
            (Kind::Pod, Delivery::Relisted(l)) => {
                let mut pods = BTreeMap::new();
                for o in &l {
                    let p = o.typed_ref::<Pod>()?;
                    if self.mine(&p) {
                        pods.insert(key_of(&p.metadata), p.into_owned());
                    }
                }
                self.pods = pods;
                self.fresh = self.pods.keys().cloned().collect();
                self.synced |= 1;
            }
            (Kind::Pvc, Delivery::Applied(v)) => {
                let c: PersistentVolumeClaim = v.typed()?;
                self.pvcs.insert(key_of(&c.metadata), c);
            }
            (Kind::Pvc, Delivery::Deleted(v)) => {
                let c = v.typed_ref::<PersistentVolumeClaim>()?;
                self.pvcs.remove(&key_of(&c.metadata));
            }
            (Kind::Pvc, Delivery::Relisted(l)) => {
                let l: Vec<PersistentVolumeClaim> = typed_list(&l)?;
                self.pvcs = l.into_iter().map(|c| (key_of(&c.metadata), c)).collect();
                self.synced |= 2;
            }
            (Kind::Pv, Delivery::Applied(v)) => {
                let pv: PersistentVolume = v.typed()?;
                self.pvs
                    .insert(pv.metadata.name.clone().unwrap_or_default(), pv);
            }
            (Kind::Pv, Delivery::Deleted(v)) => {
                let pv = v.typed_ref::<PersistentVolume>()?;
                self.pvs.remove(pv.metadata.name.as_deref().unwrap_or(""));
            }
            (Kind::Pv, Delivery::Relisted(l)) => {
                let l: Vec<PersistentVolume> = typed_list(&l)?;
                self.pvs = l
                    .into_iter()
                    .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
                    .collect();
                self.synced |= 4;
            }
            _ => {}
        }
        self.sync(now);
        Ok(())
    }

    /// The kubelet's sync loop over every pod it knows, in key order.
    fn sync(&mut self, now: u64) {
        if self.synced != 7 {
            return;
        }
        for (k, p) in &self.pods {
            match self.states.get_mut(k) {
                Some(s) if s.uid() == p.metadata.uid.as_deref().unwrap_or("") => {
                    if self.fresh.contains(k) {
                        s.handle_pod(p.clone())
                    }
                }
                _ => {
                    self.states.insert(k.clone(), PodState::new(p.clone(), now));
                }
            }
        }
        self.fresh.clear();
        let keys: Vec<String> = self.states.keys().cloned().collect();
        for k in keys {
            if !self.pods.contains_key(&k) {
                self.states.get_mut(&k).expect("listed").handle_gone();
            }
            let busy = self.effects.iter().any(|(ek, _)| *ek == k);
            if busy {
                continue;
            }
            let view = KubeletView {
                node_labels: &self.labels,
                pvcs: &self.pvcs,
                pvs: &self.pvs,
                paths: &AllDirs,
            };
            let state = self.states.get_mut(&k).expect("listed");
            let actions = state.poll(now, &view, &self.dirs);
            for a in actions {
                match a {
                    Action::Event {
                        reason, message, ..
                    } => self.notes.push(format!("event {k} {reason}: {message}")),
                    Action::FinishDeletion {
                        namespace,
                        name,
                        uid,
                    } => {
                        if self.finishing.insert(k.clone()) {
                            self.next_id += 1;
                            self.outbox.push_back((
                                self.next_id,
                                KubeReq::Finish {
                                    namespace,
                                    name,
                                    uid,
                                },
                            ));
                        }
                    }
                    other => self.effects.push_back((k.clone(), other)),
                }
            }
            self.write_status(&k, now);
        }
        self.states
            .retain(|k, s| !(s.finished() && !self.pods.contains_key(k)));
    }

    fn write_status(&mut self, k: &str, now: u64) {
        let Some(pod) = self.pods.get(k) else { return };
        let Some(state) = self.states.get_mut(k) else {
            return;
        };
        if self.status_inflight.contains_key(k) || pod.metadata.deletion_timestamp.is_some() {
            return;
        }
        let rv = rv_of(&pod.metadata);
        if self.stale.get(k).is_some_and(|s| rv <= *s) {
            return;
        }
        let typed = state.status(&self.ident, now);
        // Equal typed statuses serialise alike: the JSON comparison below is only needed
        // when they differ (JSON may still agree, e.g. timestamps are written in seconds).
        if pod.status.as_ref() == Some(&typed)
            || self.written.get(k).is_some_and(|(t, _)| *t == typed)
        {
            return;
        }
        // The JSON of both sides, each remembered per pod: the status computed last time (a
        // pod's status changes far less often than the loop runs) and the pod version's own.
        if !self.status_json.get(k).is_some_and(|(t, _)| *t == typed) {
            let json = serde_json::to_value(&typed).unwrap_or(Value::Null);
            self.status_json
                .insert(k.to_string(), (typed.clone(), json));
        }
        let status = &self.status_json[k].1;
        if self.written.get(k).is_some_and(|(_, v)| v == status) {
            return;
        }
        if !self.current_json.get(k).is_some_and(|(r, _)| *r == rv) {
            let json = pod
                .status
                .as_ref()
                .map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
            self.current_json.insert(k.to_string(), (rv, json));
        }
        if self.current_json[k].1.as_ref() == Some(status) {
            return;
        }
        let status = status.clone();
        self.next_id += 1;
        self.status_inflight
            .insert(k.to_string(), (self.next_id, typed, status.clone()));
        self.outbox.push_back((
            self.next_id,
            KubeReq::Status {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                status,
                resource_version: rv,
            },
        ));
    }

    fn complete(&mut self, now: u64, req: &KubeReq, out: &Outcome) {
        if let KubeReq::Status {
            namespace,
            name,
            resource_version,
            ..
        } = req
        {
            let k = format!("{namespace}/{name}");
            if let Some((_, typed, status)) = self.status_inflight.remove(&k) {
                match out {
                    Outcome::Object(o) => {
                        self.written.insert(k.clone(), (typed, status));
                        // Read your writes: the stored pod is at least as new as the informer's.
                        if let Ok(p) = o.typed_ref::<Pod>() {
                            if self
                                .pods
                                .get(&k)
                                .is_some_and(|cur| rv_of(&cur.metadata) < rv_of(&p.metadata))
                            {
                                self.pods.insert(k.clone(), p.into_owned());
                                self.fresh.insert(k.clone());
                            }
                        }
                    }
                    Outcome::Conflict(_) => {
                        self.stale.insert(k.clone(), *resource_version);
                    }
                    _ => {}
                }
            }
        }
        self.sync(now);
    }

    /// Runs the first waiting effect as the node would; returns a trace line.
    pub fn run_effect(&mut self, now: u64) -> Option<(String, String)> {
        let (k, a) = self.effects.pop_front()?;
        let state = self.states.get_mut(&k);
        let line = match (&a, state) {
            (Action::Mount { ops, .. }, Some(s)) => {
                s.handle_mounted(Ok(()), now);
                format!("mount ({} ops)", ops.len())
            }
            (Action::Start { launch, .. }, Some(s)) => {
                s.handle_started(&launch.container, Ok(()), now);
                format!("start container {}", launch.container)
            }
            (
                Action::Signal {
                    container, kill, ..
                },
                Some(s),
            ) => {
                let exit = Exit {
                    exit_code: if *kill { 137 } else { 143 },
                    signal: Some(if *kill { 9 } else { 15 }),
                };
                s.handle_exited(container, exit, now);
                format!("{} {container}", if *kill { "SIGKILL" } else { "SIGTERM" })
            }
            (Action::Teardown { ops, .. }, Some(s)) => {
                s.handle_torn_down(Ok(()));
                format!("teardown ({} ops)", ops.len())
            }
            (a, None) => format!("dropped {a:?} (pod gone)"),
            (a, Some(_)) => format!("ignored {a:?}"),
        };
        self.sync(now);
        Some((k, line))
    }

    fn timer(&self) -> Option<u64> {
        if self.synced != 7 {
            return None;
        }
        self.states
            .values()
            .filter_map(PodState::poll_timeout)
            .min()
    }

    /// The claims of a pod's Mount effect, for the invariant (pod key, claim names).
    pub fn peek_mount(&self) -> Option<(String, Vec<String>)> {
        match self.effects.front() {
            Some((k, Action::Mount { .. })) => {
                let claims = self
                    .states
                    .get(k)
                    .map(|s| {
                        s.pod()
                            .spec
                            .as_ref()
                            .and_then(|sp| sp.volumes.as_ref())
                            .map(|vs| {
                                vs.iter()
                                    .filter_map(|v| {
                                        v.persistent_volume_claim
                                            .as_ref()
                                            .map(|c| c.claim_name.clone())
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .unwrap_or_default();
                Some((k.clone(), claims))
            }
            _ => None,
        }
    }
}

/// A core of one of the three kinds.
pub enum Core {
    Scheduler(Box<sched::Scheduler>),
    Volume(Box<vc::VolumeControllerCore>),
    Kubelet(Box<Kubelet>),
}

const SCHED_WATCHES: &[Kind] = &[
    Kind::Pod,
    Kind::Node,
    Kind::Pv,
    Kind::Pvc,
    Kind::Class,
    Kind::Capacity,
];
const VC_WATCHES: &[Kind] = &[Kind::Pv, Kind::Pvc, Kind::Class, Kind::Pod];
const KUBELET_WATCHES: &[Kind] = &[Kind::Pod, Kind::Pvc, Kind::Pv];

fn sw<T>(d: Delivery<'_>) -> Result<sched::WatchEvent<T>, String>
where
    T: DeserializeOwned + Clone + 'static,
{
    Ok(match d {
        Delivery::Applied(v) => sched::WatchEvent::Applied(v.typed()?),
        Delivery::Deleted(v) => sched::WatchEvent::Deleted(v.typed()?),
        Delivery::Relisted(l) => sched::WatchEvent::Restarted(typed_list(&l)?),
    })
}

fn vw<T>(d: Delivery<'_>) -> Result<vc::WatchEvent<T>, String>
where
    T: DeserializeOwned + Clone + 'static,
{
    Ok(match d {
        Delivery::Applied(v) => vc::WatchEvent::Applied(v.typed()?),
        Delivery::Deleted(v) => vc::WatchEvent::Deleted(v.typed()?),
        Delivery::Relisted(l) => vc::WatchEvent::Relisted(typed_list(&l)?),
    })
}

impl Core {
    /// A fresh core for the actor named `name` (`scheduler`, `volume-controller-N`,
    /// `kubelet-NODE`): empty caches, as after a process start.
    pub fn new(name: &str) -> Core {
        Core::with_assume_cache(name, true)
    }

    /// As [`Core::new`]; `assume_cache = false` is `--break assume-cache`: the scheduler core
    /// is built with `CoreConfig.assume_cache = false`, deciding from its informer cache only.
    pub fn with_assume_cache(name: &str, assume_cache: bool) -> Core {
        if name == "scheduler" {
            Core::Scheduler(Box::new(sched::Scheduler::new(sched::CoreConfig {
                assume_cache,
                ..sched::CoreConfig::default()
            })))
        } else if let Some(node) = name.strip_prefix("kubelet-") {
            Core::Kubelet(Box::new(Kubelet::new(node)))
        } else {
            Core::Volume(Box::new(vc::VolumeControllerCore::new(
                vc::CoreConfig::default(),
                Arc::new(volume_controller::Metrics::new()),
            )))
        }
    }

    pub fn watches(&self) -> &'static [Kind] {
        match self {
            Core::Scheduler(_) => SCHED_WATCHES,
            Core::Volume(_) => VC_WATCHES,
            Core::Kubelet(_) => KUBELET_WATCHES,
        }
    }

    /// The user agent its writes are recorded under.
    pub fn agent(name: &str) -> String {
        if name == "scheduler" {
            "bonsai-scheduler".into()
        } else if let Some(node) = name.strip_prefix("kubelet-") {
            format!("bonsai-kubelet/{node}")
        } else {
            format!("bonsai-{name}")
        }
    }

    pub fn deliver(&mut self, now: u64, kind: Kind, d: Delivery<'_>) -> Result<(), String> {
        match self {
            Core::Scheduler(s) => {
                let t = sched::Millis(now);
                match kind {
                    Kind::Pod => s.handle_pod(t, sw::<Pod>(d)?),
                    Kind::Node => s.handle_node(t, sw::<Node>(d)?),
                    Kind::Pv => s.handle_persistent_volume(t, sw::<PersistentVolume>(d)?),
                    Kind::Pvc => {
                        s.handle_persistent_volume_claim(t, sw::<PersistentVolumeClaim>(d)?)
                    }
                    Kind::Class => s.handle_storage_class(t, sw::<StorageClass>(d)?),
                    Kind::Capacity => {
                        s.handle_csi_storage_capacity(t, sw::<CSIStorageCapacity>(d)?)
                    }
                    Kind::Event => {}
                }
            }
            Core::Volume(v) => {
                let t = vc::Millis(now);
                match kind {
                    Kind::Pv => v.handle_volume_event(t, vw::<PersistentVolume>(d)?),
                    Kind::Pvc => v.handle_claim_event(t, vw::<PersistentVolumeClaim>(d)?),
                    Kind::Class => v.handle_class_event(t, vw::<StorageClass>(d)?),
                    Kind::Pod => v.handle_pod_event(t, vw::<Pod>(d)?),
                    _ => {}
                }
            }
            Core::Kubelet(k) => k.deliver(now, kind, d)?,
        }
        Ok(())
    }

    pub fn complete(&mut self, now: u64, id: u64, req: &Req, out: &Outcome) -> Result<(), String> {
        match (self, req) {
            (Core::Scheduler(s), Req::Sched(r)) => {
                let c = match (r, out) {
                    // As the driver answers them: the PV or PVC the server returned, typed.
                    (sched::Request::UpdatePersistentVolume(_), Outcome::Object(o)) => {
                        sched::Completion::Volume(Box::new(o.typed()?))
                    }
                    (sched::Request::UpdatePersistentVolumeClaim(_), Outcome::Object(o)) => {
                        sched::Completion::Claim(Box::new(o.typed()?))
                    }
                    (_, out) => match out {
                        Outcome::Object(o) => sched::Completion::Done((**o.json()).clone()),
                        Outcome::Status(v) => sched::Completion::Done(v.clone()),
                        Outcome::Read(_) | Outcome::List(_) => {
                            sched::Completion::Failed("unexpected read".into())
                        }
                        Outcome::Conflict(m) => sched::Completion::Conflict(m.clone()),
                        Outcome::NotFound(m) => sched::Completion::NotFound(m.clone()),
                        Outcome::Failed(m) => sched::Completion::Failed(m.clone()),
                    },
                };
                s.handle_completion(sched::Millis(now), id, c);
            }
            (Core::Volume(v), Req::Vc(r)) => {
                let c = match (r, out) {
                    (_, Outcome::Conflict(_)) => vc::Completion::Conflict,
                    (_, Outcome::NotFound(_)) => vc::Completion::NotFound,
                    (_, Outcome::Failed(m)) => vc::Completion::Failed(m.clone()),
                    (
                        vc::Request::UpdateVolume(_) | vc::Request::UpdateVolumeStatus(_),
                        Outcome::Object(o),
                    ) => vc::Completion::Volume(o.typed()?),
                    (
                        vc::Request::UpdateClaim(_) | vc::Request::UpdateClaimStatus(_),
                        Outcome::Object(o),
                    ) => vc::Completion::Claim(o.typed()?),
                    (vc::Request::GetClaim { .. }, Outcome::Read(o)) => {
                        vc::Completion::ClaimRead(match o {
                            Some(o) => Some(o.typed()?),
                            None => None,
                        })
                    }
                    (vc::Request::ListPods { .. }, Outcome::List(l)) => {
                        vc::Completion::PodList(typed_list(l)?)
                    }
                    (_, Outcome::Object(o)) => vc::Completion::Event(o.typed::<Event>()?),
                    (r, o) => {
                        vc::Completion::Failed(format!("{} answered with {}", r.verb(), o.short()))
                    }
                };
                v.handle_completion(vc::Millis(now), vc::RequestId(id), c);
            }
            (Core::Kubelet(k), Req::Kube(r)) => k.complete(now, r, out),
            _ => return Err("a completion for another kind of core".into()),
        }
        Ok(())
    }

    pub fn timer(&self) -> Option<u64> {
        match self {
            Core::Scheduler(s) => s.poll_timeout().map(|m| m.0),
            Core::Volume(v) => v.poll_timeout().map(|m| m.0),
            Core::Kubelet(k) => k.timer(),
        }
    }

    pub fn fire(&mut self, now: u64) {
        match self {
            Core::Scheduler(s) => s.handle_timeout(sched::Millis(now)),
            Core::Volume(v) => v.handle_timeout(vc::Millis(now)),
            Core::Kubelet(k) => k.sync(now),
        }
    }

    /// Every request the core has queued, with the id to complete it with.
    pub fn drain(&mut self) -> Vec<(u64, Req)> {
        let mut out = Vec::new();
        match self {
            Core::Scheduler(s) => {
                while let Some(o) = s.poll_output() {
                    out.push((o.id, Req::Sched(o.request)));
                }
            }
            Core::Volume(v) => {
                while let Some(o) = v.poll_output() {
                    out.push((o.id.0, Req::Vc(o.request)));
                }
            }
            Core::Kubelet(k) => {
                while let Some((id, r)) = k.outbox.pop_front() {
                    out.push((id, Req::Kube(r)));
                }
            }
        }
        out
    }

    pub fn kubelet(&mut self) -> Option<&mut Kubelet> {
        match self {
            Core::Kubelet(k) => Some(k),
            _ => None,
        }
    }
}
