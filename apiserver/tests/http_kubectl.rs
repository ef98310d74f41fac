//! The real kubectl against the API server: version (and its User-Agent), api-resources,
//! create -f multi-document, get in every output form, get -w, describe, wait, delete --wait,
//! 401 without the token. Skips (with a message) when kubectl is not on PATH.

mod http_common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use http_common::*;
use serde_json::{json, Value};

const MANIFESTS: &str = r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-storage
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: example-pv
  labels:
    type: local
spec:
  capacity:
    storage: 5Gi
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  storageClassName: local-storage
  local:
    path: /mnt/disks/vol1
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - key: kubernetes.io/hostname
          operator: In
          values: [node-1]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: example-local-claim
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: local-storage
  resources:
    requests:
      storage: 5Gi
---
apiVersion: v1
kind: Pod
metadata:
  name: example-pv-pod
spec:
  containers:
  - name: app
    image: nginx
    volumeMounts:
    - name: data
      mountPath: /usr/share/nginx/html
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: example-local-claim
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_the_server() {
    if !have_kubectl() {
        return;
    }
    let s = start().await;
    let k = s.kubectl(true);

    // version: the dispatcher picks the 1.33 build from our /version.
    let out = k.ok(&["version"]).await;
    assert!(out.contains("Server Version: v1.33.1"), "{out}");
    let uas = s.handle.as_ref().unwrap().user_agents();
    assert!(
        uas.iter().any(|u| u.starts_with("kubectl/v1.33")),
        "user agents seen: {uas:?}"
    );

    // api-resources from discovery.
    let out = k.ok(&["api-resources"]).await;
    for line in [
        "persistentvolumes",
        "pv",
        "storageclasses",
        "sc",
        "csistoragecapacities",
        "leases",
    ] {
        assert!(out.contains(line), "api-resources lacks {line}:\n{out}");
    }
    let pv_line = out
        .lines()
        .find(|l| l.starts_with("persistentvolumes "))
        .unwrap();
    assert!(
        pv_line.contains("false") && pv_line.contains("PersistentVolume"),
        "{pv_line}"
    );

    // create -f with several documents (server-side validation through OpenAPI v3).
    let file = s.dir.path().join("lab.yaml");
    std::fs::write(&file, MANIFESTS).unwrap();
    let out = k.ok(&["create", "-f", file.to_str().unwrap()]).await;
    for l in [
        "storageclass.storage.k8s.io/local-storage created",
        "persistentvolume/example-pv created",
        "persistentvolumeclaim/example-local-claim created",
        "pod/example-pv-pod created",
    ] {
        assert!(out.contains(l), "{out}");
    }
    // A second create reports AlreadyExists per document and exits 1.
    let o = k.run(&["create", "-f", file.to_str().unwrap()]).await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("Error from server (AlreadyExists)"),
        "{}",
        o.stderr
    );

    // get in its forms.
    let out = k.ok(&["get", "pv"]).await;
    assert!(
        out.starts_with("NAME") && out.contains("CAPACITY") && out.contains("example-pv"),
        "{out}"
    );
    let out = k.ok(&["get", "pods", "-o", "wide"]).await;
    assert!(
        out.contains("NOMINATED NODE") && out.contains("example-pv-pod"),
        "{out}"
    );
    let v: Value =
        serde_json::from_str(&k.ok(&["get", "pv", "example-pv", "-o", "json"]).await).unwrap();
    assert_eq!(v["kind"], "PersistentVolume");
    assert_eq!(v["spec"]["local"]["path"], "/mnt/disks/vol1");
    let out = k.ok(&["get", "pvc", "-o", "yaml"]).await;
    assert!(
        out.contains("kind: List") && out.contains("name: example-local-claim"),
        "{out}"
    );
    let out = k.ok(&["get", "pv,sc", "-o", "name"]).await;
    assert!(
        out.contains("persistentvolume/example-pv")
            && out.contains("storageclass.storage.k8s.io/local-storage"),
        "{out}"
    );
    let out = k
        .ok(&[
            "get",
            "pv",
            "example-pv",
            "-o",
            "jsonpath={.spec.capacity.storage}",
        ])
        .await;
    assert_eq!(out, "5Gi");
    let out = k.ok(&["get", "pv", "-l", "type=local", "-o", "name"]).await;
    assert_eq!(out.trim(), "persistentvolume/example-pv");
    let out = k
        .ok(&["get", "pods", "--field-selector", "metadata.name=nope"])
        .await;
    assert!(out.is_empty());
    let o = k
        .run(&["get", "pods", "--field-selector", "spec.colour=red"])
        .await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("field label not supported"),
        "{}",
        o.stderr
    );
    let o = k.run(&["get", "widgets"]).await;
    assert_eq!(o.code, 1);

    // describe pv/pvc/pod/node.
    s.post_json("/api/v1/nodes", &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}}})).await;
    for what in [
        ["pv", "example-pv"],
        ["pvc", "example-local-claim"],
        ["pod", "example-pv-pod"],
        ["node", "node-1"],
    ] {
        let out = k.ok(&["describe", what[0], what[1]]).await;
        assert!(out.contains(what[1]), "describe {what:?}:\n{out}");
    }

    // get -w: the watch delivers later changes.
    let mut cmd = k.command(&["get", "pv", "-w", "--output-watch-events"]);
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("initial watch line");
    assert!(first.starts_with("EVENT"), "{first}");
    let listed = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("listed row");
    assert!(
        listed.starts_with("ADDED") && listed.contains("example-pv"),
        "{listed}"
    );
    k.ok(&["label", "pv", "example-pv", "watched=yes"]).await;
    let next = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("MODIFIED line");
    assert!(
        next.starts_with("MODIFIED") && next.contains("example-pv"),
        "{next}"
    );
    let _ = child.kill();
    let _ = child.wait();

    // wait --for=jsonpath: met once the status changes.
    let k2 = k.command(&[
        "wait",
        "--for=jsonpath={.status.phase}=Bound",
        "pvc/example-local-claim",
        "--timeout=30s",
    ]);
    let waiter = tokio::task::spawn_blocking(move || {
        let mut k2 = k2;
        k2.output().unwrap()
    });
    let status = json!({"status": {"phase": "Bound"}});
    let r = s
        .send(
            "PATCH",
            "/api/v1/namespaces/default/persistentvolumeclaims/example-local-claim/status",
            "application/merge-patch+json",
            &status.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let o = waiter.await.unwrap();
    assert!(
        o.status.success(),
        "wait failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("condition met"));

    // delete --wait (the default) returns once the objects are gone.
    let out = k.ok(&["delete", "pod", "example-pv-pod"]).await;
    assert!(out.contains("pod \"example-pv-pod\" deleted"), "{out}");
    let out = k
        .ok(&["delete", "-f", file.to_str().unwrap(), "--ignore-not-found"])
        .await;
    assert!(
        out.contains("persistentvolume \"example-pv\" deleted"),
        "{out}"
    );
    assert_eq!(
        s.get("/api/v1/persistentvolumes/example-pv").await.status,
        404
    );

    // With a wrong token: 401, as `Unauthorized`.
    let anon = s.kubectl(false);
    let o = anon.run(&["get", "pv"]).await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("Unauthorized") || o.stderr.contains("must be logged in"),
        "{}",
        o.stderr
    );
    s.stop().await;
}
