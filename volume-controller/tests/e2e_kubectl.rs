//! End-to-end: the real API server in-process, the volume controller's real driver, and the
//! real kubectl. Each test takes its own cluster (free port, own temp dir and kubectl cache).

mod common;

use common::{have_kubectl, Cluster};

const LAB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab");

fn lab(file: &str) -> String {
    std::fs::read_to_string(format!("{LAB}/{file}")).expect("lab manifest")
}

const IMMEDIATE_SC: &str = "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-now
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
";

fn local_pv(name: &str, size: &str, policy: &str, class: &str) -> String {
    format!(
        "apiVersion: v1
kind: PersistentVolume
metadata:
  name: {name}
spec:
  capacity:
    storage: {size}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: {policy}
  storageClassName: {class}
  local:
    path: /mnt/disks/{name}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: In, values: [node-1]}}
"
    )
}

fn claim(name: &str, size: &str, class: &str) -> String {
    format!(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {name}
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: {size}
  storageClassName: {class}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_wait_for_first_consumer() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start().await;
    c.apply_yaml("create", &lab("local-pv.yaml")).await;
    c.apply_yaml("create", &lab("local-sc.yaml")).await;
    assert_eq!(
        c.wait_jsonpath("pv/example-pv", "{.status.phase}", "Available")
            .await,
        "Available"
    );
    c.apply_yaml("create", &lab("local-pvc.yaml")).await;
    // The controller records WaitForFirstConsumer on its first sync of the claim.
    let reason = c
        .wait_jsonpath(
            "events",
            "{.items[?(@.involvedObject.name==\"example-local-claim\")].reason}",
            "WaitForFirstConsumer",
        )
        .await;
    assert_eq!(reason, "WaitForFirstConsumer");
    assert_eq!(
        c.get_jsonpath("pvc/example-local-claim", "{.status.phase}")
            .await,
        "Pending"
    );
    assert_eq!(
        c.get_jsonpath("pv/example-pv", "{.status.phase}").await,
        "Available"
    );

    let describe = c.ok(&["describe", "pvc", "example-local-claim"]).await;
    let line = describe
        .lines()
        .find(|l| l.contains("WaitForFirstConsumer"))
        .unwrap_or_else(|| panic!("no WaitForFirstConsumer event in describe:\n{describe}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[0], "Normal", "{line}");
    assert!(line.contains("persistentvolume-controller"), "{line}");
    assert!(
        line.ends_with("waiting for first consumer to be created before binding"),
        "{line}"
    );

    let pvs = c.ok(&["get", "pv"]).await;
    assert!(pvs.lines().next().unwrap().starts_with("NAME"), "{pvs}");
    assert!(
        pvs.contains("example-pv") && pvs.contains("Available") && pvs.contains("local-storage"),
        "{pvs}"
    );
    let pvcs = c.ok(&["get", "pvc"]).await;
    assert!(
        pvcs.contains("example-local-claim") && pvcs.contains("Pending"),
        "{pvcs}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_class_binds_at_once() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start().await;
    c.apply_yaml("create", IMMEDIATE_SC).await;
    c.apply_yaml(
        "create",
        &local_pv("pv-small", "1Gi", "Retain", "local-now"),
    )
    .await;
    c.apply_yaml("create", &local_pv("pv-big", "10Gi", "Retain", "local-now"))
        .await;
    c.apply_yaml("create", &claim("data", "1Gi", "local-now"))
        .await;
    assert_eq!(
        c.wait_jsonpath("pvc/data", "{.status.phase}", "Bound")
            .await,
        "Bound"
    );
    assert_eq!(
        c.get_jsonpath("pvc/data", "{.spec.volumeName}").await,
        "pv-small"
    );
    assert_eq!(
        c.wait_jsonpath("pv/pv-small", "{.status.phase}", "Bound")
            .await,
        "Bound"
    );
    assert_eq!(
        c.get_jsonpath("pv/pv-big", "{.status.phase}").await,
        "Available"
    );
    assert_eq!(
        c.get_jsonpath(
            "pvc/data",
            "{.metadata.annotations.pv\\.kubernetes\\.io/bind-completed}"
        )
        .await,
        "yes"
    );
    assert_eq!(
        c.get_jsonpath(
            "pv/pv-small",
            "{.metadata.annotations.pv\\.kubernetes\\.io/bound-by-controller}"
        )
        .await,
        "yes"
    );
    let out = c.ok(&["get", "pv,pvc"]).await;
    // The real printer columns.
    let pv_header = out
        .lines()
        .find(|l| l.starts_with("NAME") && l.contains("RECLAIM POLICY"))
        .unwrap_or_else(|| panic!("{out}"));
    for col in [
        "CAPACITY",
        "ACCESS MODES",
        "RECLAIM POLICY",
        "STATUS",
        "CLAIM",
        "STORAGECLASS",
    ] {
        assert!(pv_header.contains(col), "{pv_header}");
    }
    let pv_line = out
        .lines()
        .find(|l| l.starts_with("persistentvolume/pv-small"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        pv_line.contains("Bound") && pv_line.contains("default/data") && pv_line.contains("RWO"),
        "{pv_line}"
    );
    let pvc_line = out
        .lines()
        .find(|l| l.starts_with("persistentvolumeclaim/data"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        pvc_line.contains("Bound") && pvc_line.contains("pv-small") && pvc_line.contains("1Gi"),
        "{pvc_line}"
    );
    // A successful bind records no event.
    let evs = c
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=data",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(evs.trim(), "", "{evs}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_and_delete_lifecycles() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start().await;
    c.apply_yaml("create", IMMEDIATE_SC).await;
    c.apply_yaml("create", &local_pv("keep", "1Gi", "Retain", "local-now"))
        .await;
    c.apply_yaml("create", &local_pv("drop", "2Gi", "Delete", "local-now"))
        .await;
    c.apply_yaml("create", &claim("a", "1Gi", "local-now"))
        .await;
    assert_eq!(
        c.wait_jsonpath("pvc/a", "{.status.phase}", "Bound").await,
        "Bound"
    );
    c.apply_yaml("create", &claim("b", "2Gi", "local-now"))
        .await;
    assert_eq!(
        c.wait_jsonpath("pvc/b", "{.status.phase}", "Bound").await,
        "Bound"
    );
    assert_eq!(c.get_jsonpath("pvc/a", "{.spec.volumeName}").await, "keep");
    assert_eq!(c.get_jsonpath("pvc/b", "{.spec.volumeName}").await, "drop");

    // Retain: Released, claimRef kept.
    c.ok(&["delete", "pvc", "a", "--wait=true", "--timeout=60s"])
        .await;
    assert_eq!(
        c.wait_jsonpath("pv/keep", "{.status.phase}", "Released")
            .await,
        "Released"
    );
    assert_eq!(
        c.get_jsonpath("pv/keep", "{.spec.claimRef.name}").await,
        "a"
    );

    // Delete on a hand-made local PV: Failed with the real message, as Kubernetes.
    c.ok(&["delete", "pvc", "b", "--wait=true", "--timeout=60s"])
        .await;
    assert_eq!(
        c.wait_jsonpath("pv/drop", "{.status.phase}", "Failed")
            .await,
        "Failed"
    );
    let msg = "error getting deleter volume plugin for volume \"drop\": no deletable volume plugin matched";
    assert_eq!(c.get_jsonpath("pv/drop", "{.status.message}").await, msg);
    let describe = c.ok(&["describe", "pv", "drop"]).await;
    assert!(
        describe.contains("VolumeFailedDelete") && describe.contains(msg),
        "{describe}"
    );
    let pvs = c.ok(&["get", "pv"]).await;
    assert!(
        pvs.lines()
            .any(|l| l.starts_with("drop") && l.contains("Failed")),
        "{pvs}"
    );
    assert!(
        pvs.lines()
            .any(|l| l.starts_with("keep") && l.contains("Released") && l.contains("default/a")),
        "{pvs}"
    );

    // A re-created claim of the same name does not get the Retained volume back.
    c.apply_yaml("create", &claim("a", "1Gi", "local-now"))
        .await;
    let ev = c
        .wait_jsonpath(
            "events",
            "{.items[?(@.reason==\"ProvisioningFailed\")].involvedObject.name}",
            "a",
        )
        .await;
    assert_eq!(ev, "a");
    assert_eq!(c.get_jsonpath("pvc/a", "{.status.phase}").await, "Pending");
    let describe = c.ok(&["describe", "pvc", "a"]).await;
    assert!(
        describe.contains("no volume plugin matched name: kubernetes.io/no-provisioner"),
        "{describe}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protection_keeps_a_used_claim_terminating() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start().await;
    c.apply_yaml("create", IMMEDIATE_SC).await;
    c.apply_yaml("create", &local_pv("pv1", "1Gi", "Retain", "local-now"))
        .await;
    c.apply_yaml("create", &claim("used", "1Gi", "local-now"))
        .await;
    assert_eq!(
        c.wait_jsonpath("pvc/used", "{.status.phase}", "Bound")
            .await,
        "Bound"
    );
    assert_eq!(
        c.get_jsonpath("pvc/used", "{.metadata.finalizers[0]}")
            .await,
        "kubernetes.io/pvc-protection"
    );
    assert_eq!(
        c.get_jsonpath("pv/pv1", "{.metadata.finalizers[0]}").await,
        "kubernetes.io/pv-protection"
    );
    // A pod with nodeName set (no kubelet here: it stays Pending) uses the claim.
    c.apply_yaml(
        "create",
        "apiVersion: v1
kind: Pod
metadata:
  name: user
spec:
  nodeName: node-1
  containers:
  - name: c
    image: nginx
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: used}
",
    )
    .await;
    c.ok(&["delete", "pvc", "used", "--wait=false"]).await;
    // Terminating: deletionTimestamp set, finalizer kept, phase still Bound.
    let ts = c
        .wait_jsonpath("pvc/used", "{.metadata.deletionTimestamp}", "")
        .await;
    let _ = ts;
    let got = c.ok(&["get", "pvc", "used"]).await;
    assert!(got.contains("Terminating"), "{got}");
    assert_eq!(
        c.get_jsonpath("pvc/used", "{.metadata.finalizers[0]}")
            .await,
        "kubernetes.io/pvc-protection"
    );
    // The PV is Bound: deleting it leaves it Terminating too.
    c.ok(&["delete", "pv", "pv1", "--wait=false"]).await;
    let got = c.ok(&["get", "pv", "pv1"]).await;
    assert!(got.contains("Terminating"), "{got}");

    // Force-delete the pod: the claim goes, the volume is Released, then goes too.
    c.ok(&["delete", "pod", "user", "--grace-period=0", "--force"])
        .await;
    assert!(
        c.wait_deleted("pvc/used").await,
        "claim should be gone once no pod uses it"
    );
    assert!(
        c.wait_deleted("pv/pv1").await,
        "a Released PV being deleted loses its finalizer"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_text_counts() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start().await;
    c.apply_yaml("create", IMMEDIATE_SC).await;
    c.apply_yaml("create", &local_pv("m1", "1Gi", "Retain", "local-now"))
        .await;
    c.apply_yaml("create", &claim("m", "1Gi", "local-now"))
        .await;
    assert_eq!(
        c.wait_jsonpath("pvc/m", "{.status.phase}", "Bound").await,
        "Bound"
    );
    let text = c.metrics.text();
    assert!(
        text.contains("bonsai_volume_controller_binds_total 1"),
        "{text}"
    );
    assert!(
        text.contains("bonsai_volume_controller_syncs_total{loop=\"claim\"}"),
        "{text}"
    );
    assert!(
        text.contains("bonsai_volume_controller_queue_depth"),
        "{text}"
    );
    c.stop().await;
}
