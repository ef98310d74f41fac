//! The objects a scenario creates, built as the JSON the API server would store after
//! admission and defaulting (finalizers of the StorageObjectInUseProtection plugin, the
//! `Pending` phases), and the few fields the trace, the invariants and the assertions read.
//!
//! Reading stays on `serde_json::Value` with JSON pointers: the store keeps JSON, and a typed
//! round trip per step would cost most of the simulator's budget.

use std::collections::BTreeMap;

use apiserver::api::{
    ANN_BIND_COMPLETED, ANN_SELECTED_NODE, FINALIZER_PVC_PROTECTION, FINALIZER_PV_PROTECTION,
    LABEL_HOSTNAME, NOT_SUPPORTED_PROVISIONER,
};
use apiserver::store::Key;
use serde_json::{json, Value};

/// The kinds the simulated cluster stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Node,
    Pod,
    Pv,
    Pvc,
    Class,
    Capacity,
    Event,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Node,
        Kind::Pod,
        Kind::Pv,
        Kind::Pvc,
        Kind::Class,
        Kind::Capacity,
        Kind::Event,
    ];

    /// (group, resource) in the store's key.
    pub fn resource(self) -> (&'static str, &'static str) {
        match self {
            Kind::Node => ("", "nodes"),
            Kind::Pod => ("", "pods"),
            Kind::Pv => ("", "persistentvolumes"),
            Kind::Pvc => ("", "persistentvolumeclaims"),
            Kind::Class => ("storage.k8s.io", "storageclasses"),
            Kind::Capacity => ("storage.k8s.io", "csistoragecapacities"),
            Kind::Event => ("", "events"),
        }
    }

    pub fn of(key: &Key) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.resource() == (key.group.as_str(), key.resource.as_str()))
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The short name used in traces and scenario files (`kubectl get` short names).
    pub fn short(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Pod => "pod",
            Kind::Pv => "pv",
            Kind::Pvc => "pvc",
            Kind::Class => "storageclass",
            Kind::Capacity => "csistoragecapacity",
            Kind::Event => "event",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "node" | "nodes" | "no" => Kind::Node,
            "pod" | "pods" | "po" => Kind::Pod,
            "pv" | "persistentvolume" | "persistentvolumes" => Kind::Pv,
            "pvc" | "persistentvolumeclaim" | "persistentvolumeclaims" => Kind::Pvc,
            "storageclass" | "storageclasses" | "sc" => Kind::Class,
            "event" | "events" | "ev" => Kind::Event,
            _ => return None,
        })
    }

    pub fn namespaced(self) -> bool {
        matches!(self, Kind::Pod | Kind::Pvc | Kind::Event | Kind::Capacity)
    }

    pub fn key(self, namespace: &str, name: &str) -> Key {
        let (g, r) = self.resource();
        Key::new(g, r, if self.namespaced() { namespace } else { "" }, name)
    }
}

/// `pod/web`, `pv/pv-1`: how traces and assertions name an object (namespace `default` is
/// left out, as kubectl does in the current namespace).
pub fn label(key: &Key) -> String {
    let kind: &str = match Kind::of(key) {
        Some(k) => k.short(),
        None => &key.resource,
    };
    if key.namespace.is_empty() || key.namespace == "default" {
        format!("{kind}/{}", key.name)
    } else {
        format!("{kind}/{}/{}", key.namespace, key.name)
    }
}

pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub fn annotation<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get("metadata")?.get("annotations")?.get(name)?.as_str()
}

/// `namespace/name` of a PV's claimRef, or "".
pub fn claim_ref(pv: &Value) -> String {
    match pv.pointer("/spec/claimRef") {
        Some(r) if !r.is_null() => format!("{}/{}", str_at(r, "/namespace"), str_at(r, "/name")),
        _ => String::new(),
    }
}

pub fn claim_ref_uid(pv: &Value) -> &str {
    str_at(pv, "/spec/claimRef/uid")
}

/// The claim names a pod's volumes use, borrowed.
pub fn pod_claim_names(pod: &Value) -> impl Iterator<Item = &str> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/persistentVolumeClaim/claimName")?.as_str())
}

/// The claim names a pod's volumes use.
pub fn pod_claims(pod: &Value) -> Vec<String> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.pointer("/persistentVolumeClaim/claimName")?.as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The PodScheduled condition's (status, reason, message).
pub fn pod_scheduled(pod: &Value) -> Option<(&str, &str, &str)> {
    pod.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| str_at(c, "/type") == "PodScheduled")
        .map(|c| {
            (
                str_at(c, "/status"),
                str_at(c, "/reason"),
                str_at(c, "/message"),
            )
        })
}

/// A claim is bound once the PV controller finished step 3 of the bind: volumeName plus the
/// bind-completed annotation (what the scheduler and the kubelet also require).
pub fn claim_is_bound(pvc: &Value) -> bool {
    !str_at(pvc, "/spec/volumeName").is_empty() && annotation(pvc, ANN_BIND_COMPLETED).is_some()
}

/// The value of a named field, as assertions and `run until` compare it. `None` = unknown
/// field for this kind.
pub fn field(kind: Kind, obj: &Value, name: &str) -> Option<String> {
    let s = |p: &str| str_at(obj, p).to_string();
    Some(match (kind, name) {
        (Kind::Pod, "node") => s("/spec/nodeName"),
        (Kind::Pod, "phase") => s("/status/phase"),
        (Kind::Pod, "reason") => pod_scheduled(obj).map_or(String::new(), |c| c.1.to_string()),
        (Kind::Pod, "message") => pod_scheduled(obj).map_or(String::new(), |c| c.2.to_string()),
        (Kind::Pod, "scheduled") => pod_scheduled(obj).map_or(String::new(), |c| c.0.to_string()),
        (Kind::Pvc, "volumeName") => s("/spec/volumeName"),
        (Kind::Pvc, "phase") => s("/status/phase"),
        (Kind::Pvc, "selected-node") => annotation(obj, ANN_SELECTED_NODE).unwrap_or("").into(),
        (Kind::Pv, "claimRef") => claim_ref(obj),
        (Kind::Pv, "phase") => s("/status/phase"),
        (_, "deleting") => {
            if obj.pointer("/metadata/deletionTimestamp").is_some() {
                "true".into()
            } else {
                "false".into()
            }
        }
        _ => return None,
    })
}

pub fn known_fields(kind: Kind) -> &'static str {
    match kind {
        Kind::Pod => "node, phase, scheduled, reason, message, deleting",
        Kind::Pvc => "volumeName, phase, selected-node, deleting",
        Kind::Pv => "claimRef, phase, deleting",
        _ => "deleting",
    }
}

/// One compact line about an object for the trace: only what binding races are about.
pub fn summary(kind: Kind, obj: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut push = |k: &str, v: &str| {
        if !v.is_empty() {
            parts.push(format!("{k}={v}"));
        }
    };
    match kind {
        Kind::Pod => {
            push("node", str_at(obj, "/spec/nodeName"));
            push("phase", str_at(obj, "/status/phase"));
            if let Some((st, reason, _)) = pod_scheduled(obj) {
                if st == "False" {
                    push("scheduled", reason);
                }
            }
        }
        Kind::Pvc => {
            push("volumeName", str_at(obj, "/spec/volumeName"));
            push("phase", str_at(obj, "/status/phase"));
            push(
                "selected-node",
                annotation(obj, ANN_SELECTED_NODE).unwrap_or(""),
            );
        }
        Kind::Pv => {
            push("claimRef", &claim_ref(obj));
            push("phase", str_at(obj, "/status/phase"));
        }
        Kind::Event => {
            push("reason", str_at(obj, "/reason"));
            let count = obj.get("count").and_then(Value::as_i64).unwrap_or(1);
            if count > 1 {
                parts.push(format!("count={count}"));
            }
        }
        _ => {}
    }
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        parts.push("deleting".into());
    }
    parts.join(" ")
}

// ------------------------------------------------------------------ builders

pub fn node(name: &str, labels: &BTreeMap<String, String>) -> Value {
    let mut l = serde_json::Map::new();
    l.insert(LABEL_HOSTNAME.into(), Value::String(name.into()));
    l.insert("kubernetes.io/os".into(), "linux".into());
    for (k, v) in labels {
        l.insert(k.clone(), Value::String(v.clone()));
    }
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": l},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": name}]
        }
    })
}

pub fn storage_class(name: &str, mode: &str, provisioner: Option<&str>) -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": provisioner.unwrap_or(NOT_SUPPORTED_PROVISIONER),
        "reclaimPolicy": "Delete",
        "volumeBindingMode": mode,
    })
}

pub struct PvSpec<'a> {
    pub name: &'a str,
    pub size: &'a str,
    pub class: &'a str,
    pub node: Option<&'a str>,
    pub path: &'a str,
    pub reclaim: &'a str,
    /// Pre-bound: `namespace/name` of the claim (no uid, as a user writes it).
    pub claim: Option<(&'a str, &'a str)>,
}

pub fn pv(s: &PvSpec<'_>) -> Value {
    let mut spec = json!({
        "capacity": {"storage": s.size},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": s.reclaim,
        "storageClassName": s.class,
        "volumeMode": "Filesystem",
        "local": {"path": s.path},
    });
    if let Some(n) = s.node {
        spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": LABEL_HOSTNAME, "operator": "In", "values": [n]}]}
        ]}});
    }
    if let Some((ns, name)) = s.claim {
        spec["claimRef"] = json!({"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                   "namespace": ns, "name": name});
    }
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": s.name, "finalizers": [FINALIZER_PV_PROTECTION]},
        "spec": spec,
        "status": {"phase": "Pending"},
    })
}

pub fn pvc(namespace: &str, name: &str, size: &str, class: &str, volume: Option<&str>) -> Value {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
        "storageClassName": class,
        "volumeMode": "Filesystem",
    });
    if let Some(v) = volume {
        spec["volumeName"] = Value::String(v.into());
    }
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace,
                     "finalizers": [FINALIZER_PVC_PROTECTION]},
        "spec": spec,
        "status": {"phase": "Pending"},
    })
}

pub struct PodSpec<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub claims: Vec<&'a str>,
    /// Required node affinity: hostname In these.
    pub hostnames: Vec<&'a str>,
    pub labels: Vec<(&'a str, &'a str)>,
    /// Required pod anti-affinity on `kubernetes.io/hostname` against pods with this label
    /// (`key=value`).
    pub anti_affinity: Option<(&'a str, &'a str)>,
    pub node_name: Option<&'a str>,
}

pub fn pod(s: &PodSpec<'_>) -> Value {
    let volumes: Vec<Value> = s
        .claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    let mounts: Vec<Value> = s
        .claims
        .iter()
        .map(|c| json!({"name": c, "mountPath": format!("/data/{c}")}))
        .collect();
    let mut spec = json!({
        "containers": [{"name": "app", "image": "nginx", "volumeMounts": mounts,
                        "terminationMessagePolicy": "File", "imagePullPolicy": "Always"}],
        "volumes": volumes,
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
    });
    let mut affinity = serde_json::Map::new();
    if !s.hostnames.is_empty() {
        affinity.insert(
            "nodeAffinity".into(),
            json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": LABEL_HOSTNAME, "operator": "In",
                                       "values": s.hostnames}]}
            ]}}),
        );
    }
    if let Some((k, v)) = s.anti_affinity {
        affinity.insert(
            "podAntiAffinity".into(),
            json!({"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {k: v}}, "topologyKey": LABEL_HOSTNAME}
            ]}),
        );
    }
    if !affinity.is_empty() {
        spec["affinity"] = Value::Object(affinity);
    }
    if let Some(n) = s.node_name {
        spec["nodeName"] = Value::String(n.into());
    }
    let labels: serde_json::Map<String, Value> = s
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": s.name, "namespace": s.namespace, "labels": labels},
        "spec": spec,
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    })
}
