//! Workloads for measuring [`super::prepare_create`] / [`super::prepare_update`] — the API
//! server's per-write CPU — on the writes a cluster actually sends: the http bench's create
//! bodies, the volume controller's PV bind (PUT) and status update, the kubelet's pod status
//! patches. `perf_loop` is ignored by default; count its instructions with
//!
//! ```text
//! BONSAI_SEM_CASE=create BONSAI_SEM_ITERS=2000 valgrind --tool=callgrind \
//!   --toggle-collect='apiserver::semantics::prepare_*' <lib test binary> \
//!   --ignored --exact semantics::perf::perf_loop
//! ```
//!
//! (`BONSAI_SEM_CASE`: `create`, `update` or `all`). The fixtures are shared with the tests that
//! pin the fast paths to the general ones.

use serde_json::{json, Value};

use super::{prepare_create, prepare_update, WriteOptions};

pub(crate) const NOW: &str = "2026-11-25T09:00:00Z";
const LATER: &str = "2026-11-25T09:00:07Z";

pub(crate) fn opts(agent: &str, now: &str) -> WriteOptions {
    WriteOptions {
        user_agent: format!("{agent}/v0.1.0 (linux/amd64)"),
        now: now.into(),
        ..Default::default()
    }
}

/// The http bench's PV body.
pub(crate) fn pv_body(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("bench-pv-{i:06}"),
            "labels": {"bench": "true", "disk": format!("vol{}", i % 3 + 1)}},
        "spec": {
            "capacity": {"storage": "5Gi"}, "volumeMode": "Filesystem",
            "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "local-storage",
            "local": {"path": format!("/mnt/disks/vol{}", i % 3 + 1)},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In",
                 "values": [format!("node-{}", i % 8 + 1)]}]}]}}
        }
    })
}

/// The http bench's Pod body.
pub(crate) fn pod_body(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("bench-pod-{i:06}"), "namespace": "default",
            "labels": {"app": "web", "tier": "frontend", "bench": "true"},
            "annotations": {"example.com/owner": "bench"}},
        "spec": {
            "volumes": [{"name": "example-pv-storage",
                "persistentVolumeClaim": {"claimName": "example-local-claim"}}],
            "containers": [{
                "name": "example-pv-container", "image": "nginx:1.27",
                "ports": [{"containerPort": 80, "name": "http-server"}],
                "env": [{"name": "MODE", "value": "bench"}, {"name": "INDEX", "value": i.to_string()}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "128Mi"}},
                "volumeMounts": [{"mountPath": "/usr/share/nginx/html", "name": "example-pv-storage"}]
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30
        }
    })
}

pub(crate) fn pvc_body(i: usize) -> Value {
    json!({"apiVersion":"v1","kind":"PersistentVolumeClaim",
        "metadata":{"name":format!("claim-{i}"),"namespace":"default"},
        "spec":{"accessModes":["ReadWriteOnce"],"storageClassName":"local-storage",
            "resources":{"requests":{"storage":"1Gi"}}}})
}

/// What the store adds to a created object.
fn stored(mut obj: Value, i: usize) -> Value {
    let m = obj["metadata"].as_object_mut().unwrap();
    m.insert(
        "uid".into(),
        json!(format!("5f0c6b2e-0000-4000-8000-{i:012}")),
    );
    m.insert("resourceVersion".into(), json!((100 + i).to_string()));
    m.insert("creationTimestamp".into(), json!(NOW));
    obj
}

fn create(resource: &str, body: Value, agent: &str, i: usize) -> Value {
    let mut o = body;
    prepare_create("", resource, &mut o, &opts(agent, NOW)).expect("valid create");
    stored(o, i)
}

/// One update case: (resource, subresource, old, new, options).
pub(crate) type UpdateCase = (
    &'static str,
    Option<&'static str>,
    Value,
    Value,
    WriteOptions,
);

/// The controllers' writes, each over the object as the store holds it.
pub(crate) fn update_cases(i: usize) -> Vec<UpdateCase> {
    let mut out = Vec::new();
    // Volume controller binds a PV: PUT with claimRef and the bound-by-controller annotation.
    let pv = create("persistentvolumes", pv_body(i), "kubectl", i);
    let mut bind = pv.clone();
    bind["spec"]["claimRef"] = json!({"kind":"PersistentVolumeClaim","namespace":"default",
        "name":format!("claim-{i}"),"uid":format!("6a1d-{i}"),"apiVersion":"v1","resourceVersion":"77"});
    bind["metadata"]["annotations"] = json!({"pv.kubernetes.io/bound-by-controller":"yes"});
    out.push((
        "persistentvolumes",
        None,
        pv.clone(),
        bind.clone(),
        opts("volume-controller", LATER),
    ));
    // … then its status.
    let mut bound = bind.clone();
    prepare_update(
        "",
        "persistentvolumes",
        None,
        &pv,
        &mut bound,
        &opts("volume-controller", LATER),
    )
    .unwrap();
    let mut st = bound.clone();
    st["status"] = json!({"phase":"Bound","lastPhaseTransitionTime":LATER});
    out.push((
        "persistentvolumes",
        Some("status"),
        bound,
        st,
        opts("volume-controller", LATER),
    ));
    // PVC bind: volumeName + annotations.
    let pvc = create("persistentvolumeclaims", pvc_body(i), "kubectl", i);
    let mut pb = pvc.clone();
    pb["spec"]["volumeName"] = json!(format!("bench-pv-{i:06}"));
    pb["metadata"]["annotations"] = json!({"pv.kubernetes.io/bind-completed":"yes",
        "pv.kubernetes.io/bound-by-controller":"yes"});
    out.push((
        "persistentvolumeclaims",
        None,
        pvc,
        pb,
        opts("volume-controller", LATER),
    ));
    // Kubelet: the first status of a scheduled pod, then a later one (its own entry exists).
    let mut pod = create("pods", pod_body(i), "bench", i);
    pod["spec"]["nodeName"] = json!("node-1");
    pod["status"]["conditions"] = json!([{"type":"PodScheduled","status":"True",
        "lastProbeTime":null,"lastTransitionTime":NOW}]);
    let status = |ready: &str, t: &str| {
        json!({"phase":"Running","qosClass":"Burstable","hostIP":"10.0.0.1",
        "hostIPs":[{"ip":"10.0.0.1"}],"podIP":"10.244.1.7","podIPs":[{"ip":"10.244.1.7"}],
        "startTime":NOW,
        "conditions":[
            {"type":"PodReadyToStartContainers","status":"True","lastProbeTime":null,"lastTransitionTime":NOW},
            {"type":"Initialized","status":"True","lastProbeTime":null,"lastTransitionTime":NOW},
            {"type":"Ready","status":ready,"lastProbeTime":null,"lastTransitionTime":t},
            {"type":"ContainersReady","status":ready,"lastProbeTime":null,"lastTransitionTime":t},
            {"type":"PodScheduled","status":"True","lastProbeTime":null,"lastTransitionTime":NOW}],
        "containerStatuses":[{"name":"example-pv-container","image":"nginx:1.27",
            "imageID":"docker.io/library/nginx@sha256:0123","containerID":"bonsai://abc",
            "ready":ready == "True","started":true,"restartCount":0,
            "state":{"running":{"startedAt":NOW}},"lastState":{}}]})
    };
    let mut s1 = pod.clone();
    s1["status"] = status("False", NOW);
    let ko = opts("kubelet-lite", LATER);
    out.push(("pods", Some("status"), pod.clone(), s1.clone(), ko.clone()));
    let mut running = s1.clone();
    prepare_update("", "pods", Some("status"), &pod, &mut running, &ko).unwrap();
    let mut s2 = running.clone();
    s2["status"] = status("True", LATER);
    out.push(("pods", Some("status"), running, s2, ko));
    out
}

pub(crate) fn create_cases(i: usize) -> Vec<(&'static str, Value, WriteOptions)> {
    vec![
        ("pods", pod_body(i), opts("bench", NOW)),
        ("persistentvolumes", pv_body(i), opts("bench", NOW)),
    ]
}

#[test]
#[ignore = "a measurement loop; see the module docs"]
fn perf_loop() {
    let iters: usize = std::env::var("BONSAI_SEM_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let case = std::env::var("BONSAI_SEM_CASE").unwrap_or_else(|_| "all".into());
    let creates = create_cases(1);
    let updates = update_cases(1);
    let t = std::time::Instant::now();
    for _ in 0..iters {
        if case == "create" || case == "all" {
            for (r, body, o) in &creates {
                let mut b = body.clone();
                std::hint::black_box(prepare_create("", r, &mut b, o).unwrap());
                std::hint::black_box(b);
            }
        }
        if case == "update" || case == "all" {
            for (r, sub, old, new, o) in &updates {
                let mut n = new.clone();
                std::hint::black_box(prepare_update("", r, *sub, old, &mut n, o).unwrap());
                std::hint::black_box(n);
            }
        }
    }
    eprintln!(
        "{case}: {:?} per iteration",
        t.elapsed() / iters.max(1) as u32
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 1024, failure_persistence: None, ..Default::default() })]

    /// `Ptr::ptr` is `Value::pointer`.
    #[test]
    fn ptr_is_pointer(
        which in 0..8usize,
        tokens in proptest::collection::vec(
            proptest::sample::select(vec![
                "metadata", "spec", "containers", "0", "1", "00", "+0", "-1", "name",
                "annotations", "a~1b", "~0", "~", "", "resources", "requests", "cpu", "status",
            ]),
            0..5,
        ),
        slash in proptest::bool::weighted(0.9),
    ) {
        use super::Ptr;
        let mut v = if which % 2 == 0 { pod_body(which) } else { pv_body(which) };
        v["metadata"]["annotations"] = json!({"a/b": 1, "~": [2, 3], "": {"x": 4}});
        let mut p = String::new();
        for t in &tokens {
            if slash {
                p.push('/');
            }
            p.push_str(t);
        }
        proptest::prop_assert_eq!(v.ptr(&p), v.pointer(&p));
    }
}
