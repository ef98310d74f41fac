//! Unit tests of the core, driven through a tiny in-memory API (resourceVersion
//! preconditions, graceful pod deletion) with explicit times — no clock, no sleeps.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::core::*;

const T0: Millis = 1_700_000_000_000;

fn ts(ms: Millis) -> String {
    Timestamp::from_millisecond(ms as i64)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn lab_config() -> Config {
    Config {
        node_monitor_grace_period_ms: 8_000,
        ..Config::default()
    }
}

/// The in-memory API server: objects with integer resourceVersions, the core's writes applied
/// with their preconditions, watch events and completions fed back.
struct Sim {
    core: NodeLifecycle,
    now: Millis,
    rv: u64,
    nodes: BTreeMap<String, Value>,
    pods: BTreeMap<(String, String), Value>,
    events: Vec<Value>,
    /// Every write the core made, in order (for the determinism test).
    log: Vec<String>,
    /// Bump this node's resourceVersion just before the next write to it lands (a racing
    /// writer), once.
    race_node: Option<String>,
    conflicts: usize,
    /// Nodes whose kubelet renews its Lease every second.
    alive: std::collections::BTreeSet<String>,
}

impl Sim {
    fn new(config: Config) -> Sim {
        Sim {
            core: NodeLifecycle::new(config),
            now: T0,
            rv: 1,
            nodes: BTreeMap::new(),
            pods: BTreeMap::new(),
            events: Vec::new(),
            log: Vec::new(),
            race_node: None,
            conflicts: 0,
            alive: std::collections::BTreeSet::new(),
        }
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn node_json(name: &str, ready: &str, heartbeat: Millis) -> Value {
        let c = |t: &str, s: &str, r: &str| {
            json!({"type": t, "status": s, "reason": r, "message": "kubelet says so",
                   "lastHeartbeatTime": ts(heartbeat), "lastTransitionTime": ts(T0)})
        };
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": format!("uid-{name}"),
                         "creationTimestamp": ts(T0),
                         "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"conditions": [
                c("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                c("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                c("PIDPressure", "False", "KubeletHasSufficientPID"),
                c("Ready", ready, "KubeletReady"),
            ]}
        })
    }

    /// Starts the core with these nodes (Ready, fresh Leases) and pods, all listed at `T0`.
    fn start(config: Config, nodes: &[&str], pods: Vec<Value>) -> Sim {
        let mut sim = Sim::new(config);
        let mut listed = Vec::new();
        let mut leases = Vec::new();
        for n in nodes {
            let mut v = Self::node_json(n, "True", T0);
            v["metadata"]["resourceVersion"] = json!(sim.next_rv());
            sim.nodes.insert(n.to_string(), v.clone());
            sim.alive.insert(n.to_string());
            listed.push(serde_json::from_value::<Node>(v).unwrap());
            leases.push(lease(n, T0));
        }
        let mut plist = Vec::new();
        for mut p in pods {
            p["metadata"]["resourceVersion"] = json!(sim.next_rv());
            let key = (
                p["metadata"]["namespace"].as_str().unwrap().to_string(),
                p["metadata"]["name"].as_str().unwrap().to_string(),
            );
            sim.pods.insert(key, p.clone());
            plist.push(serde_json::from_value::<Pod>(p).unwrap());
        }
        sim.core.handle_node_event(T0, WatchEvent::Relisted(listed));
        sim.core
            .handle_lease_event(T0, WatchEvent::Relisted(leases));
        sim.core.handle_pod_event(T0, WatchEvent::Relisted(plist));
        sim.settle();
        sim
    }

    fn node(&self, name: &str) -> &Value {
        &self.nodes[name]
    }

    fn pod(&self, name: &str) -> &Value {
        &self.pods[&("default".to_string(), name.to_string())]
    }

    fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
        obj["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == ty)
    }

    fn taints(&self, name: &str) -> Vec<(String, String)> {
        self.node(name)["spec"]["taints"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| {
                        (
                            t["key"].as_str().unwrap().to_string(),
                            t["effect"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn events_with(&self, reason: &str) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["reason"] == reason)
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect()
    }

    /// The kubelet renews its Lease at `now`.
    fn renew(&mut self, name: &str) {
        let now = self.now;
        self.core
            .handle_lease_event(now, WatchEvent::Applied(lease(name, now)));
        self.settle();
    }

    /// The kubelet posts its whole status with Ready=True and a new heartbeat.
    fn kubelet_posts_ready(&mut self, name: &str) {
        self.alive.insert(name.to_string());
        let now = self.now;
        let mut v = Self::node_json(name, "True", now);
        v["metadata"] = self.nodes[name]["metadata"].clone();
        v["spec"] = self.nodes[name]["spec"].clone();
        v["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.nodes.insert(name.to_string(), v.clone());
        self.core
            .handle_node_event(now, WatchEvent::Applied(serde_json::from_value(v).unwrap()));
        self.settle();
    }

    /// Performs every write until the core has nothing more to say.
    fn settle(&mut self) {
        while let Some(w) = self.core.poll_write() {
            self.log.push(format!("{} {:?}", self.now, w.request));
            let (outcome, changed) = self.apply(w.request);
            self.core.handle_completion(self.now, w.id, outcome);
            match changed {
                Some(Changed::Node(v)) => self.core.handle_node_event(
                    self.now,
                    WatchEvent::Applied(serde_json::from_value(v).unwrap()),
                ),
                Some(Changed::Pod(v)) => self.core.handle_pod_event(
                    self.now,
                    WatchEvent::Applied(serde_json::from_value(v).unwrap()),
                ),
                None => {}
            }
        }
    }

    /// Moves the clock to `t`, firing every timeout on the way at its own time; every
    /// second (on T0's grid) the kubelets of `alive` nodes renew their Leases.
    fn advance_to(&mut self, t: Millis) {
        loop {
            let tick = T0 + ((self.now - T0) / 1000 + 1) * 1000;
            let timeout = self.core.poll_timeout().unwrap_or(Millis::MAX);
            let next = tick.min(timeout);
            if next > t {
                break;
            }
            self.now = next;
            if next == tick {
                let alive: Vec<String> = self.alive.iter().cloned().collect();
                for n in alive {
                    let now = self.now;
                    self.core
                        .handle_lease_event(now, WatchEvent::Applied(lease(&n, now)));
                    self.settle();
                }
            }
            self.core.handle_timeout(next);
            self.settle();
        }
        self.now = t;
        self.core.handle_timeout(t);
        self.settle();
    }

    fn apply(&mut self, r: Request) -> (Outcome, Option<Changed>) {
        match r {
            Request::CreateEvent(e) => {
                self.events.push(e);
                (Outcome::Done, None)
            }
            Request::NodeStatus {
                node,
                resource_version,
                conditions,
            } => self.update_node(&node, &resource_version, |v| {
                v["status"]["conditions"] = conditions
            }),
            Request::NodeTaints {
                node,
                resource_version,
                taints,
            } => self.update_node(&node, &resource_version, |v| {
                if taints.as_array().is_some_and(|a| a.is_empty()) {
                    v["spec"].as_object_mut().unwrap().remove("taints");
                } else {
                    v["spec"]["taints"] = taints
                }
            }),
            Request::PodStatus {
                namespace,
                name,
                resource_version,
                conditions,
            } => {
                let key = (namespace, name);
                let Some(cur) = self.pods.get(&key) else {
                    return (Outcome::NotFound, None);
                };
                if cur["metadata"]["resourceVersion"] != json!(resource_version) {
                    self.conflicts += 1;
                    return (Outcome::Conflict, None);
                }
                let rv = self.next_rv();
                let p = self.pods.get_mut(&key).unwrap();
                p["status"]["conditions"] = conditions;
                p["metadata"]["resourceVersion"] = json!(rv);
                (Outcome::Done, Some(Changed::Pod(p.clone())))
            }
            Request::DeletePod {
                namespace,
                name,
                uid,
                resource_version,
            } => {
                let key = (namespace, name);
                let Some(cur) = self.pods.get(&key) else {
                    return (Outcome::NotFound, None);
                };
                if cur["metadata"]["resourceVersion"] != json!(resource_version)
                    || cur["metadata"]["uid"] != json!(uid)
                {
                    self.conflicts += 1;
                    return (Outcome::Conflict, None);
                }
                // A pod bound to a node is deleted gracefully: the kubelet finishes it (never,
                // on a dead node).
                let rv = self.next_rv();
                let now = ts(self.now);
                let p = self.pods.get_mut(&key).unwrap();
                p["metadata"]["deletionTimestamp"] = json!(now);
                p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
                p["metadata"]["resourceVersion"] = json!(rv);
                (Outcome::Done, Some(Changed::Pod(p.clone())))
            }
        }
    }

    fn update_node(
        &mut self,
        name: &str,
        rv: &str,
        f: impl FnOnce(&mut Value),
    ) -> (Outcome, Option<Changed>) {
        if self.race_node.as_deref() == Some(name) {
            self.race_node = None;
            let bumped = self.next_rv();
            let v = self.nodes.get_mut(name).unwrap();
            v["metadata"]["labels"]["racer"] = json!("was-here");
            v["metadata"]["resourceVersion"] = json!(bumped);
            let v = v.clone();
            // The racing write's watch event arrives after our conflict.
            self.conflicts += 1;
            return (Outcome::Conflict, Some(Changed::Node(v)));
        }
        let Some(cur) = self.nodes.get(name) else {
            return (Outcome::NotFound, None);
        };
        if cur["metadata"]["resourceVersion"] != json!(rv) {
            self.conflicts += 1;
            return (Outcome::Conflict, None);
        }
        let new_rv = self.next_rv();
        let v = self.nodes.get_mut(name).unwrap();
        f(v);
        v["metadata"]["resourceVersion"] = json!(new_rv);
        (Outcome::Done, Some(Changed::Node(v.clone())))
    }
}

enum Changed {
    Node(Value),
    Pod(Value),
}

fn lease(name: &str, renew: Millis) -> Lease {
    Lease {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("kube-node-lease".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.into()),
            lease_duration_seconds: Some(4),
            renew_time: Some(MicroTime(
                Timestamp::from_millisecond(renew as i64).unwrap(),
            )),
            ..Default::default()
        }),
    }
}

/// A running pod on `node` with the tolerations admission would give it (`seconds` for
/// not-ready and unreachable; `None`: the pod's own, as given).
fn pod(name: &str, node: &str, tolerations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}],
                 "tolerations": tolerations},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": ts(T0)},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": ts(T0)}
        ]}
    })
}

fn default_tolerations(seconds: i64) -> Value {
    json!([
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}
    ])
}

fn evicted(sim: &Sim, name: &str) -> bool {
    let p = sim.pod(name);
    p["metadata"]["deletionTimestamp"].is_string()
        && Sim::condition(p, "DisruptionTarget").is_some_and(|c| {
            c["status"] == "True"
                && c["reason"] == "DeletionByTaintManager"
                && c["message"] == "Taint manager: deleting due to NoExecute taint"
        })
}

/// node-1's kubelet renews until `last` (on the second grid), then dies (a power cut); the
/// others live on. Returns the time node-1 went Unknown.
fn kill_at(sim: &mut Sim, last: Millis) -> Millis {
    sim.advance_to(last);
    sim.alive.remove("node-1");
    // Last renewal at `last`: Unknown strictly after last + grace.
    let grace = sim.core.config().node_monitor_grace_period_ms;
    sim.advance_to(last + grace);
    assert_eq!(
        Sim::condition(sim.node("node-1"), "Ready").unwrap()["status"],
        "True",
        "still within the grace period at exactly probe + grace"
    );
    sim.advance_to(last + grace + 1);
    last + grace + 1
}

#[test]
fn silent_node_becomes_unknown_and_tainted_unreachable() {
    let mut sim = Sim::start(lab_config(), &["node-1", "node-2"], vec![]);
    assert_eq!(
        sim.events_with("RegisteredNode"),
        vec![
            "Node node-1 event: Registered Node node-1 in Controller",
            "Node node-2 event: Registered Node node-2 in Controller"
        ]
    );
    let t_unknown = kill_at(&mut sim, T0 + 5_000);
    sim.advance_to(t_unknown + 5_000);
    let n = sim.node("node-1").clone();
    let ready = Sim::condition(&n, "Ready").unwrap();
    assert_eq!(ready["status"], "Unknown");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert_eq!(ready["lastTransitionTime"], json!(ts(t_unknown)));
    // The heartbeat stays the kubelet's last one.
    assert_eq!(ready["lastHeartbeatTime"], json!(ts(T0)));
    for ty in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = Sim::condition(&n, ty).unwrap();
        assert_eq!(c["status"], "Unknown", "{ty}");
        assert_eq!(c["reason"], "NodeStatusUnknown");
    }
    assert_eq!(
        sim.taints("node-1"),
        vec![
            ("node.kubernetes.io/unreachable".into(), "NoSchedule".into()),
            ("node.kubernetes.io/unreachable".into(), "NoExecute".into())
        ]
    );
    for t in n["spec"]["taints"].as_array().unwrap() {
        assert_eq!(t["timeAdded"], json!(ts(t_unknown)), "{t}");
    }
    assert_eq!(
        sim.events_with("NodeNotReady"),
        vec!["Node node-1 status is now: NodeNotReady"]
    );
    // node-2 kept renewing: untouched.
    assert_eq!(
        Sim::condition(sim.node("node-2"), "Ready").unwrap()["status"],
        "True"
    );
    assert!(sim.taints("node-2").is_empty());
}

#[test]
fn kubelet_back_makes_node_ready_and_removes_taints() {
    let mut sim = Sim::start(lab_config(), &["node-1", "node-2"], vec![]);
    let t = kill_at(&mut sim, T0 + 2_000);
    sim.advance_to(t + 30_000);
    assert_eq!(sim.taints("node-1").len(), 2);
    // A renewed Lease alone does not make the node Ready: the kubelet posts Ready.
    sim.renew("node-1");
    assert_eq!(
        Sim::condition(sim.node("node-1"), "Ready").unwrap()["status"],
        "Unknown"
    );
    sim.kubelet_posts_ready("node-1");
    assert_eq!(
        Sim::condition(sim.node("node-1"), "Ready").unwrap()["status"],
        "True"
    );
    assert!(
        sim.taints("node-1").is_empty(),
        "{:?}",
        sim.taints("node-1")
    );
    assert!(sim.node("node-1")["spec"].get("taints").is_none());
    // And it stays so while the kubelet renews.
    let later = sim.now + 60_000;
    sim.advance_to(later);
    assert!(sim.taints("node-1").is_empty());
}

#[test]
fn pods_are_evicted_after_their_toleration_seconds_and_forever_tolerating_pods_stay() {
    let pods = vec![
        pod("ten", "node-1", default_tolerations(10)),
        pod("twenty", "node-1", default_tolerations(20)),
        pod(
            "forever",
            "node-1",
            json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
                   {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]),
        ),
        pod("intolerant", "node-1", json!([])),
        pod("elsewhere", "node-2", default_tolerations(10)),
    ];
    let mut sim = Sim::start(lab_config(), &["node-1", "node-2"], pods);
    let t = kill_at(&mut sim, T0 + 1_000);
    // Tainted at once; the pod without tolerations goes at once.
    assert!(evicted(&sim, "intolerant"));
    assert!(!evicted(&sim, "ten"));
    // Pods on the dead node are marked not Ready, with a warning each.
    for p in ["ten", "twenty", "forever"] {
        assert_eq!(
            Sim::condition(sim.pod(p), "Ready").unwrap()["status"],
            "False",
            "{p}"
        );
    }
    assert_eq!(sim.events_with("NodeNotReady").len(), 1 + 4);
    sim.advance_to(t + 10_000 - 1);
    assert!(!evicted(&sim, "ten"), "one millisecond early");
    sim.advance_to(t + 10_000);
    assert!(evicted(&sim, "ten"));
    assert!(!evicted(&sim, "twenty"));
    sim.advance_to(t + 20_000);
    assert!(evicted(&sim, "twenty"));
    sim.advance_to(t + 300_000);
    assert!(!evicted(&sim, "forever"));
    assert!(sim.pod("forever")["metadata"]["deletionTimestamp"].is_null());
    assert!(!evicted(&sim, "elsewhere"));
    assert_eq!(
        sim.events_with("TaintManagerEviction"),
        vec![
            "Marking for deletion Pod default/intolerant",
            "Marking for deletion Pod default/ten",
            "Marking for deletion Pod default/twenty"
        ]
    );
    let ev = sim
        .events
        .iter()
        .find(|e| e["reason"] == "TaintManagerEviction")
        .unwrap();
    assert_eq!(ev["source"]["component"], "taint-eviction-controller");
    assert_eq!(ev["involvedObject"]["kind"], "Pod");
    let m = sim.core.metrics();
    assert_eq!(m.pod_deletions, 3);
    assert_eq!(m.zones[""].evictions, 1);
    assert_eq!((m.zones[""].size, m.zones[""].unhealthy), (2, 1));
    let text = m.text();
    assert!(
        text.contains("taint_eviction_controller_pod_deletions_total 3\n"),
        "{text}"
    );
    assert!(
        text.contains("node_collector_unhealthy_nodes_in_zone{zone=\"\"} 1\n"),
        "{text}"
    );
}

#[test]
fn recovery_before_the_toleration_runs_out_cancels_the_eviction() {
    let mut sim = Sim::start(
        lab_config(),
        &["node-1", "node-2"],
        vec![pod("ten", "node-1", default_tolerations(10))],
    );
    let t = kill_at(&mut sim, T0 + 1_000);
    assert!(!sim.core.scheduled_evictions().is_empty());
    sim.advance_to(t + 5_000);
    sim.kubelet_posts_ready("node-1");
    sim.advance_to(t + 60_000);
    assert!(!evicted(&sim, "ten"));
    assert!(sim.core.scheduled_evictions().is_empty());
    assert_eq!(
        sim.events_with("TaintManagerEviction"),
        vec!["Cancelling deletion of Pod default/ten"]
    );
}

#[test]
fn a_conflict_is_an_input_and_the_write_is_redone_from_the_new_version() {
    let mut sim = Sim::start(lab_config(), &["node-1", "node-2"], vec![]);
    sim.race_node = Some("node-1".into());
    kill_at(&mut sim, T0 + 1_000);
    assert!(sim.conflicts >= 1);
    let n = sim.node("node-1");
    assert_eq!(Sim::condition(n, "Ready").unwrap()["status"], "Unknown");
    assert_eq!(n["metadata"]["labels"]["racer"], "was-here", "nothing lost");
    assert_eq!(sim.taints("node-1").len(), 2);
}

#[test]
fn every_node_down_is_full_disruption_no_noexecute_taint_no_eviction() {
    let mut sim = Sim::start(
        lab_config(),
        &["node-1"],
        vec![pod("ten", "node-1", default_tolerations(10))],
    );
    let t = kill_at(&mut sim, T0 + 1_000);
    sim.advance_to(t + 60_000);
    assert_eq!(
        Sim::condition(sim.node("node-1"), "Ready").unwrap()["status"],
        "Unknown"
    );
    assert_eq!(
        sim.taints("node-1"),
        vec![("node.kubernetes.io/unreachable".into(), "NoSchedule".into())]
    );
    assert!(!evicted(&sim, "ten"));
}

#[test]
fn noexecute_taints_are_rate_limited_per_zone() {
    let mut sim = Sim::start(
        Config {
            node_eviction_rate: 0.1,
            ..lab_config()
        },
        &["node-1", "node-2", "node-3"],
        vec![],
    );
    // node-1 and node-2 die together; node-3 lives.
    sim.advance_to(T0 + 2_000);
    sim.alive.remove("node-1");
    sim.alive.remove("node-2");
    let last = sim.now;
    sim.advance_to(last + 8_001);
    let has_ne = |sim: &Sim, n: &str| sim.taints(n).iter().any(|(_, e)| e == "NoExecute");
    assert!(has_ne(&sim, "node-1"));
    assert!(!has_ne(&sim, "node-2"), "one token per 10 s");
    sim.advance_to(last + 8_001 + 9_999);
    assert!(!has_ne(&sim, "node-2"));
    sim.advance_to(last + 8_001 + 10_000);
    assert!(has_ne(&sim, "node-2"));
}

#[test]
fn same_inputs_same_writes() {
    let run = || {
        let mut sim = Sim::start(
            lab_config(),
            &["node-1", "node-2"],
            vec![
                pod("a", "node-1", default_tolerations(10)),
                pod("b", "node-1", json!([])),
            ],
        );
        let t = kill_at(&mut sim, T0 + 3_000);
        sim.advance_to(t + 15_000);
        sim.kubelet_posts_ready("node-1");
        sim.log
    };
    let a = run();
    assert!(a.len() > 10);
    assert_eq!(a, run());
}

#[test]
fn toleration_arithmetic_matches_upstream() {
    use super::taints::*;
    use k8s_openapi::api::core::v1::{Taint, Toleration};
    let taint = Taint {
        key: TAINT_UNREACHABLE.into(),
        effect: NO_EXECUTE.into(),
        value: None,
        time_added: Some(Time(Timestamp::UNIX_EPOCH)),
    };
    let tol = |k: Option<&str>, op: &str, e: Option<&str>, s: Option<i64>| Toleration {
        key: k.map(String::from),
        operator: Some(op.into()),
        effect: e.map(String::from),
        toleration_seconds: s,
        value: None,
    };
    // Empty key with Exists tolerates everything.
    assert!(tolerates(&tol(None, "Exists", None, None), &taint));
    assert!(!tolerates(
        &tol(Some(TAINT_UNREACHABLE), "Exists", Some(NO_SCHEDULE), None),
        &taint
    ));
    assert!(tolerates(
        &tol(Some(TAINT_UNREACHABLE), "Equal", None, None),
        &taint
    ));
    let a = tol(
        Some(TAINT_UNREACHABLE),
        "Exists",
        Some(NO_EXECUTE),
        Some(30),
    );
    let b = tol(None, "Exists", None, Some(5));
    let forever = tol(None, "Exists", None, None);
    let zero = tol(None, "Exists", None, Some(0));
    assert_eq!(min_toleration(&[&a, &b]), Tolerated::For(5_000));
    assert_eq!(min_toleration(&[&forever]), Tolerated::Forever);
    assert_eq!(min_toleration(&[&forever, &a]), Tolerated::For(30_000));
    assert_eq!(min_toleration(&[&zero, &a]), Tolerated::No);
    assert_eq!(min_toleration(&[]), Tolerated::No);
    let tols = [a.clone(), b];
    let (all, used) = matching_tolerations(std::slice::from_ref(&taint), &tols);
    assert!(all);
    assert_eq!(used, vec![&a]);
    assert!(!matching_tolerations(std::slice::from_ref(&taint), &[]).0);
}

#[test]
fn kubelet_reporting_not_ready_gets_not_ready_taints_swapped_to_unreachable_when_silent() {
    let mut sim = Sim::start(lab_config(), &["node-1", "node-2"], vec![]);
    sim.advance_to(T0 + 2_000);
    // The kubelet itself says Ready=False (e.g. its runtime is down), and keeps renewing.
    let now = sim.now;
    let mut v = Sim::node_json("node-1", "False", now);
    v["metadata"] = sim.nodes["node-1"]["metadata"].clone();
    v["metadata"]["resourceVersion"] = json!(sim.next_rv());
    sim.nodes.insert("node-1".into(), v.clone());
    sim.core
        .handle_node_event(now, WatchEvent::Applied(serde_json::from_value(v).unwrap()));
    sim.settle();
    assert_eq!(
        sim.taints("node-1"),
        vec![
            ("node.kubernetes.io/not-ready".into(), "NoSchedule".into()),
            ("node.kubernetes.io/not-ready".into(), "NoExecute".into())
        ]
    );
    // Then it goes silent: Unknown, and the taints become unreachable (swapped at once, no
    // rate-limit token needed).
    let last = sim.now;
    sim.alive.remove("node-1");
    sim.advance_to(last + 8_001);
    assert_eq!(
        Sim::condition(sim.node("node-1"), "Ready").unwrap()["status"],
        "Unknown"
    );
    let mut taints = sim.taints("node-1");
    taints.sort();
    assert_eq!(
        taints,
        vec![
            ("node.kubernetes.io/unreachable".into(), "NoExecute".into()),
            ("node.kubernetes.io/unreachable".into(), "NoSchedule".into())
        ]
    );
}

#[test]
fn a_deleted_node_forgets_its_taints_but_scheduled_evictions_still_fire() {
    let mut sim = Sim::start(
        lab_config(),
        &["node-1", "node-2"],
        vec![pod("ten", "node-1", default_tolerations(10))],
    );
    let t = kill_at(&mut sim, T0 + 1_000);
    let node = sim.nodes.remove("node-1").unwrap();
    sim.core.handle_node_event(
        sim.now,
        WatchEvent::Deleted(serde_json::from_value(node).unwrap()),
    );
    sim.settle();
    assert_eq!(
        sim.events_with("RemovingNode"),
        vec!["Node node-1 event: Removing Node node-1 from Controller"]
    );
    sim.advance_to(t + 10_000);
    assert!(evicted(&sim, "ten"));
    assert!(sim
        .events_with("TaintManagerEviction")
        .iter()
        .all(|m| m.starts_with("Marking")));
}
