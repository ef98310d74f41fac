//! Unit tests of the core: every VolumeBinding case of `volume-binding.md` §5, the FitError
//! aggregation (exact strings), the queue's reactions and the binding cycle. A tiny in-test
//! "API" commits the core's writes and delivers them back as watch events, and a tiny "volume
//! controller" completes binds, so every step is explicit and deterministic.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, NodeSpec, NodeStatus, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource,
    PersistentVolumeSpec, PersistentVolumeStatus, Pod, PodAffinityTerm, PodAntiAffinity,
    PodCondition, PodSpec, PodStatus, ResourceRequirements, Taint, Volume, VolumeNodeAffinity,
    VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use serde_json::json;

use super::*;

const WFFC: &str = "local-storage";
const IMMEDIATE: &str = "immediate";
const DYNAMIC: &str = "dynamic";

struct Harness {
    s: Scheduler,
    now: u64,
    rv: u64,
    /// Everything the core asked for, in order.
    log: Vec<Request>,
    /// The "API" copies (what the watch last delivered).
    pods: BTreeMap<String, Pod>,
    pvs: BTreeMap<String, PersistentVolume>,
    pvcs: BTreeMap<String, PersistentVolumeClaim>,
    /// Requests held back by the test (not yet completed).
    held: Vec<Output>,
    /// Conflict the next PV update.
    conflict_next_pv_update: bool,
}

fn q(s: &str) -> Quantity {
    Quantity(s.into())
}

fn hostname_affinity(node: &str) -> VolumeNodeAffinity {
    VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: "kubernetes.io/hostname".into(),
                    operator: "In".into(),
                    values: Some(vec![node.into()]),
                }]),
                match_fields: None,
            }],
        }),
    }
}

fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(
                [
                    ("cpu".to_string(), q("4")),
                    ("memory".to_string(), q("8Gi")),
                    ("pods".to_string(), q("110")),
                ]
                .into(),
            ),
            ..Default::default()
        }),
    }
}

fn pv(name: &str, size: &str, on: Option<&str>, class: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some([("storage".to_string(), q(size))].into()),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.into()),
            node_affinity: on.map(hostname_affinity),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some("Available".into()),
            ..Default::default()
        }),
    }
}

fn pvc(name: &str, size: &str, class: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), q(size))].into()),
                limits: None,
            }),
            storage_class_name: Some(class.into()),
            ..Default::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

fn pod(name: &str, claims: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("nginx".into()),
                ..Default::default()
            }],
            volumes: Some(
                claims
                    .iter()
                    .map(|c| Volume {
                        name: format!("v-{c}"),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: c.to_string(),
                            read_only: None,
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            scheduler_name: Some("default-scheduler".into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

fn only_on(mut p: Pod, node: &str) -> Pod {
    p.spec.as_mut().unwrap().node_selector =
        Some([("kubernetes.io/hostname".to_string(), node.to_string())].into());
    p
}

fn class(name: &str, mode: &str, provisioner: &str) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        provisioner: provisioner.into(),
        volume_binding_mode: Some(mode.into()),
        ..Default::default()
    }
}

impl Harness {
    fn new(nodes: &[&str]) -> Harness {
        Harness::with_config(nodes, CoreConfig::default())
    }

    fn with_config(nodes: &[&str], config: CoreConfig) -> Harness {
        let mut h = Harness {
            s: Scheduler::new(config),
            now: 1_000_000,
            rv: 10,
            log: Vec::new(),
            pods: BTreeMap::new(),
            pvs: BTreeMap::new(),
            pvcs: BTreeMap::new(),
            held: Vec::new(),
            conflict_next_pv_update: false,
        };
        let now = Millis(h.now);
        h.s.handle_pod(now, WatchEvent::Restarted(vec![]));
        h.s.handle_node(
            now,
            WatchEvent::Restarted(nodes.iter().map(|n| node(n)).collect()),
        );
        h.s.handle_persistent_volume(now, WatchEvent::Restarted(vec![]));
        h.s.handle_persistent_volume_claim(now, WatchEvent::Restarted(vec![]));
        h.s.handle_storage_class(
            now,
            WatchEvent::Restarted(vec![
                class(WFFC, "WaitForFirstConsumer", "kubernetes.io/no-provisioner"),
                class(IMMEDIATE, "Immediate", "kubernetes.io/no-provisioner"),
                class(DYNAMIC, "WaitForFirstConsumer", "rancher.io/local-path"),
            ]),
        );
        h.s.handle_csi_storage_capacity(now, WatchEvent::Restarted(vec![]));
        assert!(h.s.is_synced());
        h
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn m(&self) -> Millis {
        Millis(self.now)
    }

    fn add_pv(&mut self, mut p: PersistentVolume) {
        p.metadata.resource_version = Some(self.next_rv());
        self.pvs.insert(p.metadata.name.clone().unwrap(), p.clone());
        self.s
            .handle_persistent_volume(self.m(), WatchEvent::Applied(p));
    }

    fn add_pvc(&mut self, mut c: PersistentVolumeClaim) {
        c.metadata.resource_version = Some(self.next_rv());
        self.pvcs
            .insert(c.metadata.name.clone().unwrap(), c.clone());
        self.s
            .handle_persistent_volume_claim(self.m(), WatchEvent::Applied(c));
    }

    fn add_pod(&mut self, mut p: Pod) {
        p.metadata.resource_version = Some(self.next_rv());
        self.pods
            .insert(p.metadata.name.clone().unwrap(), p.clone());
        self.s.handle_pod(self.m(), WatchEvent::Applied(p));
    }

    fn delete_pod(&mut self, name: &str) {
        let p = self.pods.remove(name).unwrap();
        self.s.handle_pod(self.m(), WatchEvent::Deleted(p));
    }

    /// The volume controller's part of a bind (§4.5): PV Bound, then the claim bound.
    fn controller_binds(&mut self, claim: &str, volume: &str) {
        let mut p = self.pvs[volume].clone();
        p.status.as_mut().unwrap().phase = Some("Bound".into());
        p.metadata.resource_version = Some(self.next_rv());
        self.pvs.insert(volume.into(), p.clone());
        self.s
            .handle_persistent_volume(self.m(), WatchEvent::Applied(p));
        let mut c = self.pvcs[claim].clone();
        c.spec.as_mut().unwrap().volume_name = Some(volume.into());
        let ann = c.metadata.annotations.get_or_insert_with(Default::default);
        ann.insert("pv.kubernetes.io/bind-completed".into(), "yes".into());
        ann.insert("pv.kubernetes.io/bound-by-controller".into(), "yes".into());
        c.status.as_mut().unwrap().phase = Some("Bound".into());
        c.metadata.resource_version = Some(self.next_rv());
        self.pvcs.insert(claim.into(), c.clone());
        self.s
            .handle_persistent_volume_claim(self.m(), WatchEvent::Applied(c));
    }

    /// Pre-bound by the controller for Immediate claims: PV claimRef + both halves.
    fn bound_claim(&mut self, claim: &str, volume: &str) {
        let c = self.pvcs[claim].clone();
        let mut p = self.pvs[volume].clone();
        p.spec.as_mut().unwrap().claim_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
            name: c.metadata.name.clone(),
            namespace: c.metadata.namespace.clone(),
            uid: c.metadata.uid.clone(),
            ..Default::default()
        });
        self.pvs.insert(volume.into(), p);
        self.controller_binds(claim, volume);
    }

    /// Runs timers and cycles, then serves every output ("the API"), repeatedly, until quiet.
    fn run(&mut self) {
        for _ in 0..50 {
            if self.s.poll_timeout().is_some_and(|t| t.0 <= self.now) {
                self.s.handle_timeout(self.m());
            }
            let outs: Vec<Output> = std::iter::from_fn(|| self.s.poll_output()).collect();
            if outs.is_empty() {
                return;
            }
            for o in outs {
                self.serve(o);
            }
        }
        panic!("no quiescence");
    }

    fn serve(&mut self, o: Output) {
        self.log.push(o.request.clone());
        let now = self.m();
        match o.request {
            Request::UpdatePersistentVolume(mut p) => {
                let name = p.metadata.name.clone().unwrap();
                if self.conflict_next_pv_update
                    || p.metadata.resource_version != self.pvs[&name].metadata.resource_version
                {
                    self.conflict_next_pv_update = false;
                    let msg = format!(
                        "Operation cannot be fulfilled on persistentvolumes \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                    );
                    self.s
                        .handle_completion(now, o.id, Completion::Conflict(msg));
                    return;
                }
                p.metadata.resource_version = Some(self.next_rv());
                self.pvs.insert(name, p.clone());
                self.s
                    .handle_completion(now, o.id, Completion::Volume(Box::new(p.clone())));
                self.s.handle_persistent_volume(now, WatchEvent::Applied(p));
            }
            Request::UpdatePersistentVolumeClaim(mut c) => {
                let name = c.metadata.name.clone().unwrap();
                c.metadata.resource_version = Some(self.next_rv());
                self.pvcs.insert(name, c.clone());
                self.s
                    .handle_completion(now, o.id, Completion::Claim(Box::new(c.clone())));
                self.s
                    .handle_persistent_volume_claim(now, WatchEvent::Applied(c));
            }
            Request::Bind { name, node, .. } => {
                let Some(mut p) = self.pods.get(&name).cloned() else {
                    self.s.handle_completion(
                        now,
                        o.id,
                        Completion::NotFound(format!("pods \"{name}\" not found")),
                    );
                    return;
                };
                p.spec.as_mut().unwrap().node_name = Some(node);
                p.metadata.resource_version = Some(self.next_rv());
                self.pods.insert(name, p.clone());
                self.s.handle_completion(
                    now,
                    o.id,
                    Completion::Done(json!({"kind": "Status", "status": "Success"})),
                );
                self.s.handle_pod(now, WatchEvent::Applied(p));
            }
            Request::PatchPodStatus { name, patch, .. } => {
                let Some(mut p) = self.pods.get(&name).cloned() else {
                    self.s
                        .handle_completion(now, o.id, Completion::NotFound(String::new()));
                    return;
                };
                if patch["metadata"]["resourceVersion"].as_str()
                    != p.metadata.resource_version.as_deref()
                {
                    self.s
                        .handle_completion(now, o.id, Completion::Conflict("modified".into()));
                    return;
                }
                let conds: Vec<PodCondition> =
                    serde_json::from_value(patch["status"]["conditions"].clone()).unwrap();
                p.status.as_mut().unwrap().conditions = Some(conds);
                p.metadata.resource_version = Some(self.next_rv());
                self.pods.insert(name, p.clone());
                self.s.handle_completion(
                    now,
                    o.id,
                    Completion::Done(serde_json::to_value(&p).unwrap()),
                );
                self.s.handle_pod(now, WatchEvent::Applied(p));
            }
            Request::CreateEvent(_) | Request::PatchEvent { .. } => {
                self.s
                    .handle_completion(now, o.id, Completion::Done(json!({})));
            }
        }
    }

    /// Runs, but holds PV/PVC writes back (to look at the in-between state).
    fn run_holding_volume_writes(&mut self) {
        if self.s.poll_timeout().is_some_and(|t| t.0 <= self.now) {
            self.s.handle_timeout(self.m());
        }
        while let Some(o) = self.s.poll_output() {
            match o.request {
                Request::UpdatePersistentVolume(_) | Request::UpdatePersistentVolumeClaim(_) => {
                    self.held.push(o)
                }
                _ => self.serve(o),
            }
        }
    }

    fn release_held(&mut self) {
        for o in std::mem::take(&mut self.held) {
            self.serve(o);
        }
        self.run();
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.run();
    }

    fn node_of(&self, p: &str) -> Option<String> {
        self.pods[p].spec.as_ref().unwrap().node_name.clone()
    }

    fn condition(&self, p: &str) -> Option<(String, String)> {
        self.pods[p]
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "PodScheduled")
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            })
    }

    fn events(&self) -> Vec<(String, String)> {
        self.log
            .iter()
            .filter_map(|r| match r {
                Request::CreateEvent(e) => {
                    Some((e.reason.clone().unwrap(), e.message.clone().unwrap()))
                }
                _ => None,
            })
            .collect()
    }

    fn pv_claim(&self, volume: &str) -> Option<String> {
        self.pvs[volume]
            .spec
            .as_ref()?
            .claim_ref
            .as_ref()?
            .name
            .clone()
    }
}

fn unschedulable(msg: &str) -> Option<(String, String)> {
    Some(("Unschedulable".into(), msg.into()))
}

// ---------------------------------------------------------------------------------------------
// The lesson: lab and trap

#[test]
fn lab_pod_lands_on_node_1_and_the_claim_binds_example_pv() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    h.add_pv(pv("example-pv", "5Gi", Some("node-1"), WFFC));
    h.add_pvc(pvc("example-local-claim", "5Gi", WFFC));
    h.add_pod(pod("example-pv-pod", &["example-local-claim"]));
    h.run();
    // PreBind wrote the PV with claimRef (uid included), bound-by-controller, and the revision read.
    let update = h.log.iter().find_map(|r| match r {
        Request::UpdatePersistentVolume(p) => Some(p.clone()),
        _ => None,
    });
    let update = update.expect("PV update");
    let cref = update.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
    assert_eq!(cref.name.as_deref(), Some("example-local-claim"));
    assert_eq!(cref.uid.as_deref(), Some("uid-example-local-claim"));
    assert_eq!(cref.kind.as_deref(), Some("PersistentVolumeClaim"));
    assert_eq!(
        update.metadata.annotations.as_ref().unwrap()["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    assert_eq!(update.metadata.resource_version.as_deref(), Some("11"));
    // While PreBind waits, the pod is not bound.
    assert_eq!(h.node_of("example-pv-pod"), None);
    assert!(!h.log.iter().any(|r| matches!(r, Request::Bind { .. })));
    // The volume controller completes the bind: the watch event wakes PreBind, Bind follows.
    h.controller_binds("example-local-claim", "example-pv");
    h.run();
    assert_eq!(h.node_of("example-pv-pod").as_deref(), Some("node-1"));
    assert_eq!(
        h.events(),
        vec![(
            "Scheduled".to_string(),
            "Successfully assigned default/example-pv-pod to node-1".to_string()
        )]
    );
    assert_eq!(h.s.metrics().attempts, [1, 0, 0]);
}

#[test]
fn trap_wait_for_first_consumer_binds_pv_2_and_runs_on_node_2() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    h.add_pv(pv("pv-1", "5Gi", Some("node-1"), WFFC));
    h.add_pv(pv("pv-2", "10Gi", Some("node-2"), WFFC));
    h.add_pvc(pvc("pvc-1", "5Gi", WFFC));
    h.add_pod(only_on(pod("app", &["pvc-1"]), "node-2"));
    h.run();
    assert_eq!(h.pv_claim("pv-2").as_deref(), Some("pvc-1"));
    assert_eq!(h.pv_claim("pv-1"), None);
    h.controller_binds("pvc-1", "pv-2");
    h.run();
    assert_eq!(h.node_of("app").as_deref(), Some("node-2"));
}

#[test]
fn trap_immediate_leaves_the_pod_pending_with_the_node_affinity_conflict() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    h.add_pv(pv("pv-1", "5Gi", Some("node-1"), IMMEDIATE));
    h.add_pv(pv("pv-2", "10Gi", Some("node-2"), IMMEDIATE));
    h.add_pvc(pvc("pvc-1", "5Gi", IMMEDIATE));
    // The volume controller binds the smallest PV at once, before any pod exists.
    h.bound_claim("pvc-1", "pv-1");
    h.add_pod(only_on(pod("app", &["pvc-1"]), "node-2"));
    h.run();
    assert_eq!(h.node_of("app"), None);
    let msg = "0/2 nodes are available: 1 node(s) didn't match PersistentVolume's node affinity, 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
    assert_eq!(h.condition("app"), unschedulable(msg));
    assert_eq!(
        h.events(),
        vec![("FailedScheduling".to_string(), msg.to_string())]
    );
    assert!(h.s.queue.is_unschedulable("default/app"));
}

// ---------------------------------------------------------------------------------------------
// PreFilter

#[test]
fn prefilter_missing_lost_and_deleting_claims() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    h.add_pod(pod("a", &["data"]));
    h.run();
    assert_eq!(
        h.condition("a"),
        unschedulable("0/2 nodes are available: persistentvolumeclaim \"data\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    );

    let mut lost = pvc("lost", "1Gi", IMMEDIATE);
    lost.spec.as_mut().unwrap().volume_name = Some("gone-pv".into());
    lost.status.as_mut().unwrap().phase = Some("Lost".into());
    h.add_pvc(lost);
    h.add_pod(pod("b", &["lost"]));
    h.run();
    assert_eq!(
        h.condition("b"),
        unschedulable("0/2 nodes are available: persistentvolumeclaim \"lost\" bound to non-existent persistentvolume \"gone-pv\". preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    );

    let mut deleting = pvc("deleting", "1Gi", WFFC);
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    h.add_pvc(deleting);
    h.add_pod(pod("c", &["deleting"]));
    h.run();
    assert_eq!(
        h.condition("c"),
        unschedulable("0/2 nodes are available: persistentvolumeclaim \"deleting\" is being deleted. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    );
}

#[test]
fn prefilter_unbound_immediate_claims_including_prebound_and_unknown_class() {
    let msg = "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
    let mut h = Harness::new(&["node-1"]);
    // Immediate class, not bound yet.
    h.add_pvc(pvc("imm", "1Gi", IMMEDIATE));
    h.add_pod(pod("a", &["imm"]));
    // Pre-bound (volumeName set, no bind-completed) in a WFFC class.
    let mut pre = pvc("pre", "1Gi", WFFC);
    pre.spec.as_mut().unwrap().volume_name = Some("pv-x".into());
    h.add_pvc(pre);
    h.add_pod(pod("b", &["pre"]));
    // A class that does not exist.
    h.add_pvc(pvc("nocls", "1Gi", "missing"));
    h.add_pod(pod("c", &["nocls"]));
    h.run();
    for p in ["a", "b", "c"] {
        assert_eq!(h.condition(p), unschedulable(msg), "pod {p}");
    }
}

#[test]
fn pods_without_claims_skip_volume_binding() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    h.add_pod(pod("plain", &[]));
    h.run();
    assert_eq!(h.node_of("plain").as_deref(), Some("node-1"));
    assert!(!h
        .log
        .iter()
        .any(|r| matches!(r, Request::UpdatePersistentVolume(_))));
}

// ---------------------------------------------------------------------------------------------
// Filter

#[test]
fn bound_claim_to_missing_pv_is_pv_not_exist() {
    let mut h = Harness::new(&["node-1"]);
    let mut c = pvc("c", "1Gi", IMMEDIATE);
    c.spec.as_mut().unwrap().volume_name = Some("nope".into());
    c.metadata.annotations = Some(
        [(
            "pv.kubernetes.io/bind-completed".to_string(),
            "yes".to_string(),
        )]
        .into(),
    );
    h.add_pvc(c);
    h.add_pod(pod("a", &["c"]));
    h.run();
    assert_eq!(
        h.condition("a"),
        unschedulable("0/1 nodes are available: 1 node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s). preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    );
}

#[test]
fn bound_claim_pins_the_pod_to_the_pv_node() {
    let mut h = Harness::new(&["node-1", "node-2", "node-3"]);
    h.add_pv(pv("pv-3", "1Gi", Some("node-3"), IMMEDIATE));
    h.add_pvc(pvc("c", "1Gi", IMMEDIATE));
    h.bound_claim("c", "pv-3");
    h.add_pod(pod("a", &["c"]));
    h.run();
    assert_eq!(h.node_of("a").as_deref(), Some("node-3"));
    // Bound claims need no PreBind writes.
    assert!(!h
        .log
        .iter()
        .any(|r| matches!(r, Request::UpdatePersistentVolume(_))));
}

#[test]
fn no_static_pv_and_no_provisioner_is_bind_conflict() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    h.add_pv(pv("small", "1Gi", Some("node-1"), WFFC));
    h.add_pvc(pvc("c", "5Gi", WFFC));
    h.add_pod(pod("a", &["c"]));
    h.run();
    assert_eq!(
        h.condition("a"),
        unschedulable("0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    );
}

#[test]
fn smallest_adequate_pv_on_the_node_wins() {
    let mut h = Harness::new(&["node-1"]);
    h.add_pv(pv("big", "100Gi", Some("node-1"), WFFC));
    h.add_pv(pv("mid", "10Gi", Some("node-1"), WFFC));
    h.add_pv(pv("tiny", "1Gi", Some("node-1"), WFFC));
    h.add_pvc(pvc("c", "5Gi", WFFC));
    h.add_pod(pod("a", &["c"]));
    h.run();
    assert_eq!(h.pv_claim("mid").as_deref(), Some("c"));
}

#[test]
fn claims_are_matched_greedily_smallest_request_first() {
    // E20: greedy by size is not an optimal assignment. `fast` (2Gi, needs tier=fast) comes first
    // in the pod but is matched second; the 1Gi claim takes the 2Gi fast PV; `fast` is left
    // with nothing.
    let mut h = Harness::new(&["node-1"]);
    let mut fast_pv = pv("pv-fast", "2Gi", Some("node-1"), WFFC);
    fast_pv.metadata.labels = Some([("tier".to_string(), "fast".to_string())].into());
    h.add_pv(fast_pv);
    h.add_pv(pv("pv-big", "3Gi", Some("node-1"), WFFC));
    let mut fast = pvc("fast", "2Gi", WFFC);
    fast.spec.as_mut().unwrap().selector = Some(LabelSelector {
        match_labels: Some([("tier".to_string(), "fast".to_string())].into()),
        match_expressions: None,
    });
    h.add_pvc(fast);
    h.add_pvc(pvc("any", "1Gi", WFFC));
    h.add_pod(pod("a", &["fast", "any"]));
    h.run();
    assert_eq!(
        h.condition("a"),
        unschedulable("0/1 nodes are available: 1 node(s) didn't find available persistent volumes to bind. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    );
    // With the sizes swapped around the same greedy order succeeds, one PV per claim.
    let mut h = Harness::new(&["node-1"]);
    h.add_pv(pv("pv-a", "2Gi", Some("node-1"), WFFC));
    h.add_pv(pv("pv-b", "3Gi", Some("node-1"), WFFC));
    h.add_pvc(pvc("big", "3Gi", WFFC));
    h.add_pvc(pvc("small", "1Gi", WFFC));
    h.add_pod(pod("a", &["big", "small"]));
    h.run();
    assert_eq!(h.pv_claim("pv-a").as_deref(), Some("small"));
    assert_eq!(h.pv_claim("pv-b").as_deref(), Some("big"));
}

#[test]
fn all_delay_claims_of_a_pod_must_fit_on_one_node() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    h.add_pv(pv("pv-1", "1Gi", Some("node-1"), WFFC));
    h.add_pv(pv("pv-2", "1Gi", Some("node-2"), WFFC));
    h.add_pvc(pvc("a", "1Gi", WFFC));
    h.add_pvc(pvc("b", "1Gi", WFFC));
    h.add_pod(pod("p", &["a", "b"]));
    h.run();
    assert_eq!(
        h.condition("p"),
        unschedulable("0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    );
}

#[test]
fn reasons_from_bound_and_delay_claims_combine_in_the_fixed_order() {
    let mut h = Harness::new(&["node-1"]);
    h.add_pv(pv("pv-2", "1Gi", Some("node-2"), IMMEDIATE));
    h.add_pvc(pvc("bound", "1Gi", IMMEDIATE));
    h.bound_claim("bound", "pv-2");
    h.add_pvc(pvc("delay", "1Gi", WFFC));
    h.add_pod(pod("p", &["bound", "delay"]));
    h.run();
    assert_eq!(
        h.condition("p"),
        unschedulable("0/1 nodes are available: 1 node(s) didn't find available persistent volumes to bind, 1 node(s) didn't match PersistentVolume's node affinity. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    );
}

#[test]
fn selected_node_on_another_node_is_bind_conflict_and_provisioning_uses_selected_node() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    let mut c = pvc("c", "1Gi", DYNAMIC);
    c.metadata.annotations = Some(
        [(
            "volume.kubernetes.io/selected-node".to_string(),
            "node-2".to_string(),
        )]
        .into(),
    );
    h.add_pvc(c);
    h.add_pod(pod("p", &["c"]));
    h.run();
    // node-1 fails (BindConflict), node-2 goes to provisioning and fits; PreBind rewrites the
    // claim with the same selected-node and waits.
    assert_eq!(h.node_of("p"), None);
    let pvc_write = h.log.iter().find_map(|r| match r {
        Request::UpdatePersistentVolumeClaim(c) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(
        pvc_write.unwrap().metadata.annotations.unwrap()["volume.kubernetes.io/selected-node"],
        "node-2"
    );
}

#[test]
fn dynamic_provisioning_writes_selected_node_then_waits_for_the_provisioned_pv() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    h.add_pvc(pvc("data", "1Gi", DYNAMIC));
    h.add_pod(only_on(pod("p", &["data"]), "node-2"));
    h.run();
    assert_eq!(
        h.pvcs["data"].metadata.annotations.as_ref().unwrap()["volume.kubernetes.io/selected-node"],
        "node-2"
    );
    assert_eq!(h.node_of("p"), None);
    // The provisioner creates a PV pre-bound to the claim on node-2; the controller binds.
    let mut new_pv = pv("pvc-uid-data", "1Gi", Some("node-2"), DYNAMIC);
    new_pv.spec.as_mut().unwrap().claim_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
        name: Some("data".into()),
        namespace: Some("default".into()),
        uid: Some("uid-data".into()),
        ..Default::default()
    });
    h.add_pv(new_pv);
    h.controller_binds("data", "pvc-uid-data");
    h.run();
    assert_eq!(h.node_of("p").as_deref(), Some("node-2"));
}

#[test]
fn provisioning_removed_selected_node_fails_prebind() {
    let mut h = Harness::new(&["node-1"]);
    h.add_pvc(pvc("data", "1Gi", DYNAMIC));
    h.add_pod(pod("p", &["data"]));
    h.run();
    // The provisioner gives up and asks for another node.
    let mut c = h.pvcs["data"].clone();
    c.metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove("volume.kubernetes.io/selected-node");
    h.pvcs.remove("data");
    h.add_pvc(c);
    h.run();
    assert_eq!(
        h.condition("p"),
        Some((
            "SchedulerError".into(),
            "running PreBind plugin \"VolumeBinding\": binding volumes: provisioning failed for PVC \"data\"".into()
        ))
    );
}

#[test]
fn allowed_topologies_must_match_the_node() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    let mut sc = class("zoned", "WaitForFirstConsumer", "rancher.io/local-path");
    sc.allowed_topologies = Some(vec![k8s_openapi::api::core::v1::TopologySelectorTerm {
        match_label_expressions: Some(vec![
            k8s_openapi::api::core::v1::TopologySelectorLabelRequirement {
                key: "kubernetes.io/hostname".into(),
                values: vec!["node-2".into()],
            },
        ]),
    }]);
    h.s.handle_storage_class(h.m(), WatchEvent::Applied(sc));
    h.add_pvc(pvc("c", "1Gi", "zoned"));
    h.add_pod(pod("p", &["c"]));
    h.run();
    assert_eq!(
        h.pvcs["c"].metadata.annotations.as_ref().unwrap()["volume.kubernetes.io/selected-node"],
        "node-2"
    );
}

// ---------------------------------------------------------------------------------------------
// Reserve, assume cache, PreBind, Unreserve

#[test]
fn assumed_claim_ref_keeps_the_next_pod_off_the_same_pv() {
    let mut h = Harness::new(&["node-1"]);
    h.add_pv(pv("only", "1Gi", Some("node-1"), WFFC));
    h.add_pvc(pvc("a", "1Gi", WFFC));
    h.add_pvc(pvc("b", "1Gi", WFFC));
    h.add_pod(pod("pa", &["a"]));
    h.add_pod(pod("pb", &["b"]));
    // Both pods are scheduled before the PV write even reaches the API.
    h.run_holding_volume_writes();
    assert_eq!(h.held.len(), 1);
    assert_eq!(
        h.condition("pb"),
        unschedulable("0/1 nodes are available: 1 node(s) didn't find available persistent volumes to bind. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    );
    h.release_held();
    assert_eq!(h.pv_claim("only").as_deref(), Some("a"));
}

#[test]
fn prebind_conflict_is_a_scheduler_error_and_unreserve_frees_the_pv() {
    let mut h = Harness::new(&["node-1"]);
    h.add_pv(pv("pv", "1Gi", Some("node-1"), WFFC));
    h.add_pvc(pvc("c", "1Gi", WFFC));
    h.conflict_next_pv_update = true;
    h.add_pod(pod("p", &["c"]));
    h.run();
    let msg = "running PreBind plugin \"VolumeBinding\": Operation cannot be fulfilled on persistentvolumes \"pv\": the object has been modified; please apply your changes to the latest version and try again";
    assert_eq!(
        h.condition("p"),
        Some(("SchedulerError".into(), msg.into()))
    );
    assert_eq!(
        h.events().last().unwrap(),
        &("FailedScheduling".to_string(), msg.to_string())
    );
    // Unreserve restored the cache: the PV is free again for the retry.
    assert!(h
        .s
        .view()
        .pvs
        .get("pv")
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .claim_ref
        .is_none());
    assert!(h.s.view().placed.is_empty());
    // Backoff 1 s, then the retry succeeds.
    h.advance(999);
    assert_eq!(h.pv_claim("pv"), None);
    h.advance(1);
    assert_eq!(h.pv_claim("pv").as_deref(), Some("c"));
    h.controller_binds("c", "pv");
    h.run();
    assert_eq!(h.node_of("p").as_deref(), Some("node-1"));
}

#[test]
fn prebind_times_out_with_context_deadline_exceeded() {
    let mut h = Harness::with_config(
        &["node-1"],
        CoreConfig {
            bind_timeout_ms: 30_000,
            ..Default::default()
        },
    );
    h.add_pv(pv("pv", "1Gi", Some("node-1"), WFFC));
    h.add_pvc(pvc("c", "1Gi", WFFC));
    h.add_pod(pod("p", &["c"]));
    h.run();
    h.advance(29_999);
    assert_eq!(h.condition("p"), None);
    h.advance(1);
    assert_eq!(
        h.condition("p"),
        Some((
            "SchedulerError".into(),
            "running PreBind plugin \"VolumeBinding\": binding volumes: context deadline exceeded"
                .into()
        ))
    );
    // API writes are not rolled back: the PV keeps its claimRef, and on retry the controller's
    // completed bind pins the pod to it.
    assert_eq!(h.pv_claim("pv").as_deref(), Some("c"));
    h.controller_binds("c", "pv");
    h.advance(1_000);
    assert_eq!(h.node_of("p").as_deref(), Some("node-1"));
}

#[test]
fn claim_ref_reset_fails_prebind() {
    let mut h = Harness::new(&["node-1"]);
    h.add_pv(pv("pv", "1Gi", Some("node-1"), WFFC));
    h.add_pvc(pvc("c", "1Gi", WFFC));
    h.add_pod(pod("p", &["c"]));
    h.run();
    let mut p = h.pvs["pv"].clone();
    p.spec.as_mut().unwrap().claim_ref = None;
    h.pvs.remove("pv");
    h.add_pv(p);
    h.run();
    assert_eq!(
        h.condition("p"),
        Some((
            "SchedulerError".into(),
            "running PreBind plugin \"VolumeBinding\": binding volumes: ClaimRef got reset for pv \"pv\"".into()
        ))
    );
}

#[test]
fn pod_deleted_while_prebind_waits_is_dropped() {
    let mut h = Harness::new(&["node-1"]);
    h.add_pv(pv("pv", "1Gi", Some("node-1"), WFFC));
    h.add_pvc(pvc("c", "1Gi", WFFC));
    h.add_pod(pod("p", &["c"]));
    h.run();
    h.delete_pod("p");
    h.run();
    assert_eq!(h.s.queue_sizes(), (0, 0, 0, 0));
    assert!(h.s.view().placed.is_empty());
    assert_eq!(h.s.metrics().attempts, [0, 0, 1]);
}

#[test]
fn upstream_poll_switch_waits_for_the_next_second() {
    let mut h = Harness::with_config(
        &["node-1"],
        CoreConfig {
            bind_poll: true,
            ..Default::default()
        },
    );
    h.add_pv(pv("pv", "1Gi", Some("node-1"), WFFC));
    h.add_pvc(pvc("c", "1Gi", WFFC));
    h.add_pod(pod("p", &["c"]));
    h.run();
    h.controller_binds("c", "pv");
    h.run();
    // Watch events do not wake the poller…
    assert_eq!(h.node_of("p"), None);
    h.advance(999);
    assert_eq!(h.node_of("p"), None);
    // …the 1 s poll does.
    h.advance(1);
    assert_eq!(h.node_of("p").as_deref(), Some("node-1"));
}

#[test]
fn two_pods_sharing_a_wffc_claim_follow_the_first_ones_node() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    h.add_pv(pv("pv-2", "1Gi", Some("node-2"), WFFC));
    h.add_pvc(pvc("shared", "1Gi", WFFC));
    h.add_pod(pod("first", &["shared"]));
    h.run();
    h.controller_binds("shared", "pv-2");
    h.run();
    assert_eq!(h.node_of("first").as_deref(), Some("node-2"));
    h.add_pod(only_on(pod("second", &["shared"]), "node-1"));
    h.run();
    assert_eq!(
        h.condition("second"),
        unschedulable("0/2 nodes are available: 1 node(s) didn't match PersistentVolume's node affinity, 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    );
}

// ---------------------------------------------------------------------------------------------
// Queueing

#[test]
fn an_unschedulable_pod_is_retried_when_a_pv_appears() {
    let mut h = Harness::new(&["node-1"]);
    h.add_pvc(pvc("c", "1Gi", WFFC));
    h.add_pod(pod("p", &["c"]));
    h.run();
    assert!(h.s.queue.is_unschedulable("default/p"));
    h.add_pv(pv("pv", "1Gi", Some("node-1"), WFFC));
    // Backoff (1 s since the failure) before it is active again.
    h.run();
    assert_eq!(h.pv_claim("pv"), None);
    h.advance(1_000);
    assert_eq!(h.pv_claim("pv").as_deref(), Some("c"));
}

#[test]
fn repeated_failures_bump_the_event_count_and_leave_the_condition_alone() {
    let mut h = Harness::new(&["node-1"]);
    h.add_pvc(pvc("c", "1Gi", WFFC));
    h.add_pod(pod("p", &["c"]));
    h.run();
    // The 5-minute flush retries it; same message.
    h.advance(300_000);
    let creates = h
        .log
        .iter()
        .filter(|r| matches!(r, Request::CreateEvent(_)))
        .count();
    let patches: Vec<&Request> = h
        .log
        .iter()
        .filter(|r| matches!(r, Request::PatchEvent { .. }))
        .collect();
    let status = h
        .log
        .iter()
        .filter(|r| matches!(r, Request::PatchPodStatus { .. }))
        .count();
    assert_eq!((creates, patches.len(), status), (1, 1, 1));
    match patches[0] {
        Request::PatchEvent { patch, .. } => assert_eq!(patch["count"], 2),
        _ => unreachable!(),
    }
}

#[test]
fn other_schedulers_pods_and_pods_with_a_node_are_left_alone() {
    let mut h = Harness::new(&["node-1"]);
    let mut other = pod("other", &[]);
    other.spec.as_mut().unwrap().scheduler_name = Some("my-scheduler".into());
    h.add_pod(other);
    let mut pinned = pod("pinned", &[]);
    pinned.spec.as_mut().unwrap().node_name = Some("node-9".into());
    h.add_pod(pinned);
    h.run();
    assert!(h.log.is_empty());
}

#[test]
fn no_nodes() {
    let mut h = Harness::new(&[]);
    h.add_pod(pod("p", &[]));
    h.run();
    assert_eq!(
        h.condition("p"),
        unschedulable("no nodes available to schedule pods")
    );
    h.s.handle_node(h.m(), WatchEvent::Applied(node("node-1")));
    h.advance(1_000);
    assert_eq!(h.node_of("p").as_deref(), Some("node-1"));
}

// ---------------------------------------------------------------------------------------------
// Other plugins and the preemption tail

fn with_cpu(mut p: Pod, cpu: &str) -> Pod {
    p.spec.as_mut().unwrap().containers[0].resources = Some(ResourceRequirements {
        requests: Some([("cpu".to_string(), q(cpu))].into()),
        ..Default::default()
    });
    p
}

#[test]
fn insufficient_cpu_reads_no_preemption_victims() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    h.add_pod(with_cpu(pod("big", &[]), "5"));
    h.run();
    assert_eq!(
        h.condition("big"),
        unschedulable("0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.")
    );
    // Requests add up: two 3-cpu pods take both nodes; a third finds no room, then fits once
    // one of them is deleted.
    h.add_pod(with_cpu(pod("a", &[]), "3"));
    h.add_pod(with_cpu(pod("b", &[]), "3"));
    h.add_pod(with_cpu(pod("c", &[]), "3"));
    h.run();
    assert_eq!(h.node_of("a").as_deref(), Some("node-1"));
    assert_eq!(h.node_of("b").as_deref(), Some("node-2"));
    assert_eq!(h.node_of("c"), None);
    h.delete_pod("a");
    h.advance(1_000);
    assert_eq!(h.node_of("c").as_deref(), Some("node-1"));
}

#[test]
fn taints_unschedulable_nodes_and_mixed_tails() {
    let mut h = Harness::new(&["node-1", "node-2", "node-3"]);
    let mut n1 = node("node-1");
    n1.spec.as_mut().unwrap().taints = Some(vec![Taint {
        key: "dedicated".into(),
        value: Some("db".into()),
        effect: "NoSchedule".into(),
        time_added: None,
    }]);
    let mut n2 = node("node-2");
    n2.spec.as_mut().unwrap().unschedulable = Some(true);
    h.s.handle_node(h.m(), WatchEvent::Applied(n1));
    h.s.handle_node(h.m(), WatchEvent::Applied(n2));
    h.add_pod(with_cpu(pod("p", &[]), "8"));
    h.run();
    assert_eq!(
        h.condition("p"),
        unschedulable("0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were unschedulable. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.")
    );
}

#[test]
fn required_pod_anti_affinity_on_hostname() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    let anti = |name: &str| {
        let mut p = pod(name, &[]);
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some([("app".to_string(), "web".to_string())].into()),
                        match_expressions: None,
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    };
    h.add_pod(anti("w1"));
    h.add_pod(anti("w2"));
    h.add_pod(anti("w3"));
    h.run();
    assert_eq!(h.node_of("w1").as_deref(), Some("node-1"));
    assert_eq!(h.node_of("w2").as_deref(), Some("node-2"));
    assert_eq!(
        h.condition("w3"),
        unschedulable("0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.")
    );
}

#[test]
fn required_node_affinity_is_checked() {
    let mut h = Harness::new(&["node-1", "node-2"]);
    let mut p = pod("p", &[]);
    p.spec.as_mut().unwrap().affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(
                hostname_affinity("node-2").required.unwrap(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    });
    h.add_pod(p);
    h.run();
    assert_eq!(h.node_of("p").as_deref(), Some("node-2"));
}

#[test]
fn metrics_render_attempts_by_result() {
    let mut h = Harness::new(&["node-1"]);
    h.add_pod(pod("ok", &[]));
    h.add_pod(with_cpu(pod("no", &[]), "64"));
    h.run();
    let text = h.s.metrics().render();
    assert!(
        text.contains("scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"scheduled\"} 1"),
        "{text}"
    );
    assert!(text.contains("scheduler_schedule_attempts_total{profile=\"default-scheduler\",result=\"unschedulable\"} 1"));
    assert!(text.contains("scheduler_pod_scheduling_sli_duration_seconds_count{} 1"));
}

// ---------------------------------------------------------------------------------------------
// Scale paths: percentageOfNodesToScore and the hostname narrowing keep §5.5's diagnosis

#[test]
fn num_feasible_nodes_to_find_matches_upstream() {
    assert_eq!(Scheduler::num_feasible_nodes_to_find(50), 50);
    assert_eq!(Scheduler::num_feasible_nodes_to_find(200), 100);
    assert_eq!(Scheduler::num_feasible_nodes_to_find(1_000), 420);
    assert_eq!(Scheduler::num_feasible_nodes_to_find(5_000), 500);
    assert_eq!(Scheduler::num_feasible_nodes_to_find(10_000), 500);
}

#[test]
fn bound_local_pv_narrowing_still_counts_every_node_on_failure() {
    let names: Vec<String> = (1..=200).map(|i| format!("node-{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut h = Harness::new(&refs);
    h.add_pv(pv("pv-7", "1Gi", Some("node-7"), IMMEDIATE));
    h.add_pvc(pvc("c", "1Gi", IMMEDIATE));
    h.bound_claim("c", "pv-7");
    h.add_pod(pod("fits", &["c"]));
    h.add_pod(only_on(pod("stuck", &["c"]), "node-8"));
    h.run();
    assert_eq!(h.node_of("fits").as_deref(), Some("node-7"));
    assert_eq!(
        h.condition("stuck"),
        unschedulable("0/200 nodes are available: 1 node(s) didn't match PersistentVolume's node affinity, 199 node(s) didn't match Pod's node affinity/selector. preemption: 0/200 nodes are available: 200 Preemption is not helpful for scheduling.")
    );
}

#[test]
fn scans_resume_where_the_last_one_stopped() {
    let names: Vec<String> = (1..=200).map(|i| format!("node-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut h = Harness::new(&refs);
    h.add_pod(pod("a", &[]));
    h.run();
    h.add_pod(pod("b", &[]));
    h.run();
    // 100 feasible nodes are enough: a takes the best of node-001…node-100, b of node-101….
    assert_eq!(h.node_of("a").as_deref(), Some("node-001"));
    assert_eq!(h.node_of("b").as_deref(), Some("node-101"));
}

/// A small deterministic generator (xorshift), so the randomized tests need no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn narrowed_scan_finds_what_a_scan_over_every_node_finds() {
    // 250 nodes: numFeasibleNodesToFind = max(100, 250 × 48 %) = 120. Free local PVs on a
    // random third of the nodes, so WFFC pods skip most nodes; pods without volumes in between
    // move the start index over all nodes. A model of upstream's full scan predicts each pick.
    let names: Vec<String> = (1..=250).map(|i| format!("node-{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut h = Harness::new(&refs);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut free: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut n_pv = 0;
    for n in &names {
        if rng.next(3) == 0 {
            for _ in 0..=rng.next(2) {
                n_pv += 1;
                let name = format!("pv-{n_pv:04}");
                h.add_pv(pv(&name, "1Gi", Some(n), WFFC));
                free.entry(n.clone()).or_default().push(name);
            }
        }
    }
    let total = names.len();
    let to_find = Scheduler::num_feasible_nodes_to_find(total);
    let mut pods_on: BTreeMap<String, usize> = BTreeMap::new();
    let mut start = 0usize;
    for i in 0..(n_pv + 30) {
        let with_volume = i % 4 != 3 && i < n_pv;
        // The model: scan every node from `start`, stop after `to_find` feasible ones.
        let mut best: Option<(usize, &String)> = None;
        let (mut feasible, mut processed) = (0, 0);
        for k in 0..total {
            if feasible >= to_find {
                break;
            }
            processed += 1;
            let n = &names[(start + k) % total];
            if with_volume && free.get(n).is_none_or(|v| v.is_empty()) {
                continue;
            }
            feasible += 1;
            let p = pods_on.get(n).copied().unwrap_or(0);
            if best.is_none_or(|(bp, bn)| p < bp || (p == bp && n < bn)) {
                best = Some((p, n));
            }
        }
        start = (start + processed) % total;
        let Some((_, want)) = best else { break };
        let want = want.clone();

        let pod_name = format!("p-{i}");
        if with_volume {
            let claim = format!("c-{i}");
            h.add_pvc(pvc(&claim, "1Gi", WFFC));
            h.add_pod(pod(&pod_name, &[&claim]));
            h.run();
            let volume = h
                .pvs
                .keys()
                .find(|v| h.pv_claim(v).as_deref() == Some(claim.as_str()))
                .cloned()
                .expect("a PV was chosen");
            h.controller_binds(&claim, &volume);
            h.run();
            let on = free.get_mut(&want).expect("model node has PVs");
            on.retain(|v| v != &volume);
        } else {
            h.add_pod(pod(&pod_name, &[]));
            h.run();
        }
        assert_eq!(h.node_of(&pod_name), Some(want.clone()), "pod {pod_name}");
        *pods_on.entry(want).or_default() += 1;
    }
}

#[test]
fn pv_facts_match_find_matching_volume() {
    // Filter's fast path reads `PvFacts` from the index; it must pick exactly the PV that
    // `find_matching_volume` picks from every PV, whatever the PVs look like.
    use apiserver::api::find_matching_volume;
    let nodes = ["node-1", "node-2"];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..60 {
        let mut h = Harness::new(&nodes);
        for i in 0..12 {
            let size = ["1Gi", "2Gi", "5Gi"][rng.next(3) as usize];
            let on = nodes[rng.next(2) as usize];
            let class = if rng.next(5) == 0 { IMMEDIATE } else { WFFC };
            let mut v = pv(&format!("pv-{i:02}"), size, Some(on), class);
            let spec = v.spec.as_mut().unwrap();
            match rng.next(6) {
                0 => spec.node_affinity = None,
                1 => {
                    let term = &mut spec
                        .node_affinity
                        .as_mut()
                        .unwrap()
                        .required
                        .as_mut()
                        .unwrap()
                        .node_selector_terms[0];
                    term.match_expressions
                        .as_mut()
                        .unwrap()
                        .push(NodeSelectorRequirement {
                            key: "kubernetes.io/os".into(),
                            operator: "In".into(),
                            values: Some(vec![
                                if rng.next(2) == 0 { "linux" } else { "plan9" }.into()
                            ]),
                        });
                }
                2 => {
                    let req = spec
                        .node_affinity
                        .as_mut()
                        .unwrap()
                        .required
                        .as_mut()
                        .unwrap();
                    let mut other = req.node_selector_terms[0].clone();
                    other.match_expressions.as_mut().unwrap()[0].values =
                        Some(vec![nodes[rng.next(2) as usize].into()]);
                    req.node_selector_terms.push(other);
                }
                _ => {}
            }
            if rng.next(4) == 0 {
                spec.volume_mode = Some("Block".into());
            }
            if rng.next(4) == 0 {
                spec.access_modes = Some(vec!["ReadWriteMany".into()]);
            }
            if rng.next(5) == 0 {
                v.status.as_mut().unwrap().phase = Some("Released".into());
            }
            if rng.next(6) == 0 {
                v.spec.as_mut().unwrap().claim_ref =
                    Some(k8s_openapi::api::core::v1::ObjectReference {
                        name: Some("someone-else".into()),
                        namespace: Some("default".into()),
                        ..Default::default()
                    });
            }
            h.add_pv(v);
        }
        let mut c = pvc("c", ["1Gi", "2Gi", "3Gi"][rng.next(3) as usize], WFFC);
        if rng.next(4) == 0 {
            c.spec.as_mut().unwrap().volume_mode = Some("Block".into());
        }
        if rng.next(4) == 0 {
            c.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteMany".into()]);
        }
        h.add_pvc(c);
        let claims = volume_binding::PodVolumeClaims {
            bound: vec![],
            unbound_delay: vec!["default/c".into()],
        };
        let view = h.s.view();
        let claim = view.pvcs.get("default/c").unwrap();
        for n in nodes {
            let info = view.nodes.get(n).unwrap();
            let want = find_matching_volume(
                claim,
                view.pvs.iter().map(|(_, v)| v),
                info.node.as_ref(),
                &Default::default(),
                true,
            )
            .and_then(|v| v.metadata.name.clone());
            let (_, got) = volume_binding::filter(view, &claims, info);
            let got = got.and_then(|v| v.static_bindings.first().map(|b| b.pv.clone()));
            assert_eq!(got, want, "round {round}, {n}");
        }
    }
}
