//! Defaulting (`pkg/apis/*/v1/defaults.go`) and the defaulting admission plugins
//! (StorageObjectInUseProtection, DefaultTolerationSeconds, Priority), applied to the JSON
//! in place. Like kube-apiserver's decoder, defaults run on every accepted write body
//! (create, update and patch results), so a field a client drops comes back defaulted.

use serde_json::{json, Map, Value};

use super::{Field, FieldMut};

fn obj_mut<'a>(m: &'a mut Map<String, Value>, k: &str) -> Option<&'a mut Map<String, Value>> {
    m.field_mut(k).and_then(Value::as_object_mut)
}

/// Inserts `k: v` when the key is absent (or null).
fn set_default(m: &mut Map<String, Value>, k: &str, v: Value) {
    if m.field(k).is_none_or(Value::is_null) {
        m.insert(k.to_string(), v);
    }
}

/// Same, but also replaces an empty string (Go's `if x == ""` on a non-pointer string).
fn set_default_str(m: &mut Map<String, Value>, k: &str, v: &str) {
    if m.field(k).and_then(Value::as_str).is_none_or(str::is_empty) {
        m.insert(k.to_string(), json!(v));
    }
}

fn ensure_obj<'a>(m: &'a mut Map<String, Value>, k: &str) -> &'a mut Map<String, Value> {
    if !m.field(k).is_some_and(Value::is_object) {
        m.insert(k.to_string(), json!({}));
    }
    m.field_mut(k)
        .and_then(Value::as_object_mut)
        .expect("just inserted")
}

/// Applies the scheme defaults of `kind`.
pub fn apply(kind: &str, obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    match kind {
        "PersistentVolume" => {
            let spec = ensure_obj(o, "spec");
            set_default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
            set_default(spec, "volumeMode", json!("Filesystem"));
            if let Some(hp) = obj_mut(spec, "hostPath") {
                set_default(hp, "type", json!(""));
            }
            let status = ensure_obj(o, "status");
            set_default_str(status, "phase", "Pending");
        }
        "PersistentVolumeClaim" => {
            let spec = ensure_obj(o, "spec");
            set_default(spec, "volumeMode", json!("Filesystem"));
            // VolumeResourceRequirements is a non-pointer struct: always serialized.
            ensure_obj(spec, "resources");
            let status = ensure_obj(o, "status");
            set_default_str(status, "phase", "Pending");
        }
        "StorageClass" => {
            set_default(o, "reclaimPolicy", json!("Delete"));
            set_default(o, "volumeBindingMode", json!("Immediate"));
        }
        "CSIDriver" => {
            let spec = ensure_obj(o, "spec");
            set_default(spec, "attachRequired", json!(true));
            set_default(spec, "podInfoOnMount", json!(false));
            set_default(spec, "storageCapacity", json!(false));
            set_default(spec, "fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
            if spec
                .field("volumeLifecycleModes")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                spec.insert("volumeLifecycleModes".into(), json!(["Persistent"]));
            }
            set_default(spec, "requiresRepublish", json!(false));
            set_default(spec, "seLinuxMount", json!(false));
        }
        "Namespace" => {
            let name = o
                .field("metadata")
                .and_then(|m| m.field("name"))
                .and_then(Value::as_str)
                .map(String::from);
            if let Some(name) = name {
                let meta = ensure_obj(o, "metadata");
                let labels = ensure_obj(meta, "labels");
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            let status = ensure_obj(o, "status");
            set_default_str(status, "phase", "Active");
        }
        "Node" => {
            if let Some(spec) = obj_mut(o, "spec") {
                sync_singular(spec, "podCIDR", "podCIDRs", None);
            }
            if let Some(status) = obj_mut(o, "status") {
                if status.field("allocatable").is_none() {
                    if let Some(cap) = status.field("capacity").cloned() {
                        status.insert("allocatable".into(), cap);
                    }
                }
            }
        }
        "Pod" => pod(o),
        _ => {}
    }
}

/// The v1 ⇄ internal conversions that keep a deprecated singular field and its list in step
/// (`podIP`/`podIPs`, `hostIP`/`hostIPs`, `podCIDR`/`podCIDRs`): when both are given and
/// differ the singular one wins (older clients), a missing one is filled from the other.
/// `item_key`: the field of the list items holding the value (`ip`), or `None` for strings.
fn sync_singular(m: &mut Map<String, Value>, single: &str, list: &str, item_key: Option<&str>) {
    let one = m
        .get(single)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    let first = m
        .get(list)
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|v| match item_key {
            Some(k) => v.get(k).and_then(Value::as_str),
            None => v.as_str(),
        })
        .map(String::from);
    let wrap = |v: &str| match item_key {
        Some(k) => json!([{ k: v }]),
        None => json!([v]),
    };
    match (one, first) {
        (Some(a), Some(b)) if a != b => {
            m.insert(list.to_string(), wrap(&a));
        }
        (Some(a), None) => {
            m.insert(list.to_string(), wrap(&a));
        }
        (None, Some(b)) => {
            m.insert(single.to_string(), json!(b));
        }
        _ => {}
    }
}

fn pod(o: &mut Map<String, Value>) {
    if let Some(status) = obj_mut(o, "status") {
        sync_singular(status, "podIP", "podIPs", Some("ip"));
        sync_singular(status, "hostIP", "hostIPs", Some("ip"));
    }
    let spec = ensure_obj(o, "spec");
    // `serviceAccount` is the deprecated alias of `serviceAccountName`.
    let sa_name = spec
        .field("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    let sa = spec
        .field("serviceAccount")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    match (sa_name, sa) {
        (Some(n), _) => {
            spec.insert("serviceAccount".into(), json!(n));
        }
        (None, Some(a)) => {
            spec.insert("serviceAccountName".into(), json!(a.clone()));
        }
        _ => {}
    }
    let host_network = spec
        .field("hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    set_default_str(spec, "dnsPolicy", "ClusterFirst");
    set_default_str(spec, "restartPolicy", "Always");
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default_str(spec, "schedulerName", "default-scheduler");
    set_default(spec, "enableServiceLinks", json!(true));
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(cs) = spec.field_mut(list).and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                container(c, host_network, list != "ephemeralContainers");
            }
        }
    }
    if let Some(vols) = spec.field_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            volume(v);
        }
    }
}

fn container(c: &mut Map<String, Value>, host_network: bool, with_resources: bool) {
    let image = c
        .field("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set_default_str(c, "imagePullPolicy", default_pull_policy(&image));
    set_default_str(c, "terminationMessagePath", "/dev/termination-log");
    set_default_str(c, "terminationMessagePolicy", "File");
    if with_resources {
        let res = ensure_obj(c, "resources");
        // SetDefaults_Pod: a limit without a request requests the limit.
        if let Some(limits) = res.field("limits").and_then(Value::as_object).cloned() {
            if !limits.is_empty() {
                let req = ensure_obj(res, "requests");
                for (k, v) in limits {
                    req.entry(k).or_insert(v);
                }
            }
        }
    }
    if let Some(ports) = c.field_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default_str(p, "protocol", "TCP");
            if host_network {
                if let Some(cp) = p.field("containerPort").cloned() {
                    set_default(p, "hostPort", cp);
                }
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = obj_mut(c, probe) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            if let Some(h) = obj_mut(p, "httpGet") {
                set_default_str(h, "path", "/");
                set_default_str(h, "scheme", "HTTP");
            }
        }
    }
    if let Some(env) = c.field_mut("env").and_then(Value::as_array_mut) {
        for e in env.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(fr) = e
                .field_mut("valueFrom")
                .and_then(Value::as_object_mut)
                .and_then(|vf| obj_mut(vf, "fieldRef"))
            {
                set_default_str(fr, "apiVersion", "v1");
            }
        }
    }
}

/// `Always` for `:latest` or an untagged image, else `IfNotPresent` (digests included).
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag follows the last ':' after the last '/' (a registry port is not a tag).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn volume(v: &mut Map<String, Value>) {
    // The volume's few keys looked up in the list, not the thirty names hashed into it.
    if !v
        .iter()
        .any(|(k, x)| !x.is_null() && VOLUME_SOURCES.contains(&k.as_str()))
    {
        v.insert("emptyDir".into(), json!({}));
    }
    if let Some(hp) = obj_mut(v, "hostPath") {
        set_default(hp, "type", json!(""));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = obj_mut(v, src) {
            set_default(s, "defaultMode", json!(420));
        }
    }
}

// ---- admission ----

/// StorageObjectInUseProtection: PV/PVC creations get their protection finalizer.
pub fn admit_protection_finalizer(kind: &str, obj: &mut Value) {
    let fin = match kind {
        "PersistentVolume" => "kubernetes.io/pv-protection",
        "PersistentVolumeClaim" => "kubernetes.io/pvc-protection",
        _ => return,
    };
    let Some(o) = obj.as_object_mut() else { return };
    let meta = ensure_obj(o, "metadata");
    if !meta.field("finalizers").is_some_and(Value::is_array) {
        meta.insert("finalizers".into(), json!([]));
    }
    let list = meta
        .field_mut("finalizers")
        .and_then(Value::as_array_mut)
        .expect("array");
    if !list.iter().any(|f| f == fin) {
        list.push(json!(fin));
    }
}

/// DefaultTolerationSeconds (300s for not-ready and unreachable unless configured) and Priority
/// admission.
pub fn admit_pod(obj: &mut Value, tolerations: super::DefaultTolerationSeconds) {
    let Some(spec) = obj.field_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if !spec.field("tolerations").is_some_and(Value::is_array) {
        spec.insert("tolerations".into(), json!([]));
    }
    let tols = spec
        .field_mut("tolerations")
        .and_then(Value::as_array_mut)
        .expect("array");
    for (key, seconds) in [
        ("node.kubernetes.io/not-ready", tolerations.not_ready),
        ("node.kubernetes.io/unreachable", tolerations.unreachable),
    ] {
        let tolerated = tols.iter().any(|t| {
            let k = t.field("key").and_then(Value::as_str).unwrap_or("");
            let op = t
                .field("operator")
                .and_then(Value::as_str)
                .unwrap_or("Equal");
            let eff = t.field("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || (k.is_empty() && op == "Exists")) && (eff.is_empty() || eff == "NoExecute")
        });
        if !tolerated {
            // `json!` grows its map (a rehash at the fourth key): sized up front instead.
            let mut t = Map::with_capacity(4);
            t.insert("key".into(), Value::from(key));
            t.insert("operator".into(), Value::from("Exists"));
            t.insert("effect".into(), Value::from("NoExecute"));
            t.insert("tolerationSeconds".into(), Value::from(seconds));
            tols.push(Value::Object(t));
        }
    }
    if tols.is_empty() {
        spec.shift_remove("tolerations");
    }
    // Priority admission without PriorityClasses: priority 0, the default preemption policy.
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
}

/// `qos.GetPodQOS` for the pod's status on create.
pub fn pod_qos(pod: &Value) -> &'static str {
    let mut requests_set = false;
    let mut limits_set = false;
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| {
            pod.field("spec")
                .and_then(|s| s.field(l))
                .and_then(Value::as_array)
        })
        .flatten();
    for c in containers {
        let res = c.field("resources");
        let req = res
            .and_then(|r| r.field("requests"))
            .and_then(Value::as_object);
        let lim = res
            .and_then(|r| r.field("limits"))
            .and_then(Value::as_object);
        let quantity = |m: Option<&Map<String, Value>>, name: &str| {
            m.and_then(|m| m.field(name))
                .and_then(super::quantity::parse_json)
        };
        for name in ["cpu", "memory"] {
            // Each quantity parsed once (a string or a number, as written).
            let rq = quantity(req, name);
            let lq = quantity(lim, name);
            let r = rq.is_some_and(|q| !q.is_zero());
            let l = lq.is_some_and(|q| !q.is_zero());
            requests_set |= r;
            limits_set |= l;
            if !l || (r && rq != lq && rq.map(|q| q.nanos) != lq.map(|q| q.nanos)) {
                guaranteed = false;
            }
        }
    }
    if !requests_set && !limits_set {
        "BestEffort"
    } else if guaranteed && limits_set {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn pull_policy() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.37"), "IfNotPresent");
        assert_eq!(default_pull_policy("reg:5000/busybox"), "Always");
        assert_eq!(default_pull_policy("reg:5000/busybox:1"), "IfNotPresent");
        assert_eq!(default_pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn default_toleration_seconds_configurable_and_never_overriding() {
        let short = super::super::DefaultTolerationSeconds {
            not_ready: 7,
            unreachable: 10,
        };
        let mut pod = json!({"spec": {"containers": [{"name": "c"}]}});
        admit_pod(&mut pod, short);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 7},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}
            ])
        );
        // A pod's own unreachable toleration (here: forever) is kept; only not-ready is added.
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"});
        let mut pod = json!({"spec": {"tolerations": [own.clone()]}});
        admit_pod(&mut pod, short);
        let tols = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tols.len(), 2);
        assert_eq!(tols[0], own);
        assert_eq!(tols[1]["tolerationSeconds"], 7);
    }
}
