//! The lesson end to end, with the real kubectl: the lab (the pod lands on node-1 and the claim
//! binds example-pv) and the trap (pv-1 5Gi on node-1, pv-2 10Gi on node-2, a pod that may only
//! run on node-2: WaitForFirstConsumer binds pv-2 and the pod runs on node-2; Immediate binds
//! pv-1 at once and the pod stays Pending with the node-affinity conflict message).
//!
//! In-process API server, scheduler, volume controller and fake nodes node-1, node-2.

mod common;

use common::{have_kubectl, Cluster};

const POD_SCHEDULED_REASON: &str = r#"{.status.conditions[?(@.type=="PodScheduled")].reason}"#;
const POD_SCHEDULED_MESSAGE: &str = r#"{.status.conditions[?(@.type=="PodScheduled")].message}"#;

fn lab_file(name: &str) -> String {
    format!("{}/../examples/lab/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_pod_lands_on_node_1_and_claim_binds_example_pv() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start(2).await;
    assert_eq!(
        c.wait_jsonpath(
            "node/node-2",
            r#"{.status.conditions[?(@.type=="Ready")].status}"#,
            "True"
        )
        .await,
        "True"
    );
    c.ok(&["create", "-f", &lab_file("local-pv.yaml")]).await;
    c.ok(&["create", "-f", &lab_file("local-sc.yaml")]).await;
    c.ok(&["create", "-f", &lab_file("local-pvc.yaml")]).await;
    // Delayed binding: a matching PV exists, the claim stays Pending without a consumer.
    assert_eq!(
        c.wait_jsonpath("pv/example-pv", "{.status.phase}", "Available")
            .await,
        "Available"
    );
    assert_eq!(
        c.get_jsonpath("pvc/example-local-claim", "{.status.phase}")
            .await,
        "Pending"
    );
    c.ok(&["create", "-f", &lab_file("local-pod.yaml")]).await;

    assert_eq!(
        c.wait_jsonpath("pvc/example-local-claim", "{.status.phase}", "Bound")
            .await,
        "Bound"
    );
    assert_eq!(
        c.get_jsonpath("pvc/example-local-claim", "{.spec.volumeName}")
            .await,
        "example-pv"
    );
    assert_eq!(
        c.wait_jsonpath("pod/example-pv-pod", "{.spec.nodeName}", "node-1")
            .await,
        "node-1"
    );
    assert_eq!(
        c.wait_jsonpath("pod/example-pv-pod", "{.status.phase}", "Running")
            .await,
        "Running"
    );
    let events = c
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=example-pv-pod,reason=Scheduled",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .await;
    assert_eq!(
        events,
        "Successfully assigned default/example-pv-pod to node-1"
    );
    let pv_claim = c
        .get_jsonpath("pv/example-pv", "{.spec.claimRef.name}")
        .await;
    assert_eq!(pv_claim, "example-local-claim");
    // The fake node looks like a real one: labels, a Lease in kube-node-lease, podIP.
    assert_eq!(
        c.get_jsonpath("node/node-1", "{.metadata.labels.kubernetes\\.io/os}")
            .await,
        "linux"
    );
    assert_eq!(
        c.get_jsonpath("node/node-1", "{.metadata.labels.kubernetes\\.io/hostname}")
            .await,
        "node-1"
    );
    assert_eq!(
        c.get_jsonpath("pod/example-pv-pod", "{.status.podIP}")
            .await,
        "127.0.0.1"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "node-1",
            "-o",
            "jsonpath={.spec.holderIdentity}"
        ])
        .await,
        "node-1"
    );
    // Deleting the pod finishes promptly (the fake node completes the graceful deletion).
    c.ok(&["delete", "pod", "example-pv-pod", "--timeout=30s"])
        .await;
    let (found, _, _) = c.kubectl(&["get", "pod", "example-pv-pod"]).await;
    assert!(!found, "the pod is gone");
    c.stop().await;
}

fn trap_manifests(mode: &str) -> String {
    format!(
        r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-storage
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: {mode}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-1
spec:
  capacity: {{storage: 5Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-storage
  local: {{path: /mnt/disks/vol1}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: In, values: [node-1]}}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv-2
spec:
  capacity: {{storage: 10Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: local-storage
  local: {{path: /mnt/disks/vol1}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: In, values: [node-2]}}
"#
    )
}

const TRAP_CLAIM: &str = r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: pvc-1
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local-storage
  resources:
    requests:
      storage: 5Gi
"#;

const TRAP_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  nodeSelector:
    kubernetes.io/hostname: node-2
  containers:
  - name: app
    image: nginx
    volumeMounts:
    - {name: data, mountPath: /data}
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: pvc-1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_wait_for_first_consumer_binds_pv_2_and_runs_on_node_2() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start(2).await;
    assert_eq!(
        c.wait_jsonpath(
            "node/node-2",
            r#"{.status.conditions[?(@.type=="Ready")].status}"#,
            "True"
        )
        .await,
        "True"
    );
    c.apply_yaml("create", &trap_manifests("WaitForFirstConsumer"))
        .await;
    assert_eq!(
        c.wait_jsonpath("pv/pv-1", "{.status.phase}", "Available")
            .await,
        "Available"
    );
    assert_eq!(
        c.wait_jsonpath("pv/pv-2", "{.status.phase}", "Available")
            .await,
        "Available"
    );
    c.apply_yaml("create", TRAP_CLAIM).await;
    c.apply_yaml("create", TRAP_POD).await;
    assert_eq!(
        c.wait_jsonpath("pvc/pvc-1", "{.status.phase}", "Bound")
            .await,
        "Bound"
    );
    assert_eq!(
        c.get_jsonpath("pvc/pvc-1", "{.spec.volumeName}").await,
        "pv-2"
    );
    assert_eq!(
        c.wait_jsonpath("pod/app", "{.spec.nodeName}", "node-2")
            .await,
        "node-2"
    );
    assert_eq!(
        c.wait_jsonpath("pod/app", "{.status.phase}", "Running")
            .await,
        "Running"
    );
    assert_eq!(
        c.get_jsonpath("pv/pv-1", "{.status.phase}").await,
        "Available"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_immediate_binds_pv_1_and_the_pod_stays_pending() {
    if !have_kubectl() {
        return;
    }
    let c = Cluster::start(2).await;
    assert_eq!(
        c.wait_jsonpath(
            "node/node-2",
            r#"{.status.conditions[?(@.type=="Ready")].status}"#,
            "True"
        )
        .await,
        "True"
    );
    c.apply_yaml("create", &trap_manifests("Immediate")).await;
    assert_eq!(
        c.wait_jsonpath("pv/pv-1", "{.status.phase}", "Available")
            .await,
        "Available"
    );
    assert_eq!(
        c.wait_jsonpath("pv/pv-2", "{.status.phase}", "Available")
            .await,
        "Available"
    );
    c.apply_yaml("create", TRAP_CLAIM).await;
    // Immediate: the volume controller binds the smallest PV at once, with no pod around.
    assert_eq!(
        c.wait_jsonpath("pvc/pvc-1", "{.status.phase}", "Bound")
            .await,
        "Bound"
    );
    assert_eq!(
        c.get_jsonpath("pvc/pvc-1", "{.spec.volumeName}").await,
        "pv-1"
    );
    c.apply_yaml("create", TRAP_POD).await;
    assert_eq!(
        c.wait_jsonpath("pod/app", POD_SCHEDULED_REASON, "Unschedulable")
            .await,
        "Unschedulable"
    );
    let msg = "0/2 nodes are available: 1 node(s) didn't match PersistentVolume's node affinity, 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.";
    assert_eq!(c.get_jsonpath("pod/app", POD_SCHEDULED_MESSAGE).await, msg);
    let phase = c.get_jsonpath("pod/app", "{.status.phase}").await;
    assert_eq!(
        phase,
        "Pending",
        "{}",
        c.ok(&["get", "pod", "app", "-o", "json"]).await
    );
    assert_eq!(c.get_jsonpath("pod/app", "{.spec.nodeName}").await, "");
    let ev = c
        .ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=app,reason=FailedScheduling",
            "-o",
            "jsonpath={.items[0].type} {.items[0].message}",
        ])
        .await;
    assert_eq!(ev, format!("Warning {msg}"));
    // kubectl describe shows it the way users read it.
    let describe = c.ok(&["describe", "pod", "app"]).await;
    assert!(describe.contains("FailedScheduling"), "{describe}");
    assert!(describe.contains("default-scheduler"), "{describe}");
    c.stop().await;
}
