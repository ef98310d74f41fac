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

    // `kubectl create namespace` sends a protobuf body (typed client).
    let out = k.ok(&["create", "namespace", "lab"]).await;
    assert!(out.contains("namespace/lab created"), "{out}");
    let out = k.ok(&["delete", "namespace", "lab", "--timeout=30s"]).await;
    assert!(out.contains("namespace \"lab\" deleted"), "{out}");
    assert_eq!(s.get("/api/v1/namespaces/lab").await.status, 404);

    // Events: recorded by a controller, shown by `kubectl events`, `get events` and describe.
    let claim_uid = s
        .get("/api/v1/namespaces/default/persistentvolumeclaims/example-local-claim")
        .await
        .json()["metadata"]["uid"]
        .clone();
    let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "example-local-claim.1"},
        "involvedObject": {"kind": "PersistentVolumeClaim", "name": "example-local-claim", "namespace": "default", "uid": claim_uid},
        "reason": "WaitForFirstConsumer", "message": "waiting for first consumer to be created before binding",
        "type": "Normal", "source": {"component": "persistentvolume-controller"}, "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"});
    assert_eq!(
        s.post_json("/api/v1/namespaces/default/events", &ev)
            .await
            .status,
        201
    );
    let out = k.ok(&["events"]).await;
    assert!(out.contains("WaitForFirstConsumer"), "{out}");
    let out = k.ok(&["get", "events"]).await;
    assert!(
        out.contains("persistentvolumeclaim/example-local-claim"),
        "{out}"
    );
    let out = k.ok(&["describe", "pvc", "example-local-claim"]).await;
    assert!(
        out.contains("waiting for first consumer to be created before binding"),
        "{out}"
    );

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

    // delete --wait (the default) returns once the objects are gone: for an object held by a
    // finalizer that means watching until the DELETED event.
    let mut held = json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp"}}});
    assert_eq!(
        s.post_json("/api/v1/persistentvolumes", &held).await.status,
        201
    );
    let deleter = k.command(&["delete", "pv", "held", "--timeout=60s"]);
    let deleter = tokio::task::spawn_blocking(move || {
        let mut deleter = deleter;
        deleter.output().unwrap()
    });
    wait_for(
        "pv held to be marked for deletion",
        Duration::from_secs(20),
        || async {
            s.get("/api/v1/persistentvolumes/held").await.json()["metadata"]["deletionTimestamp"]
                .as_str()
                .map(|_| ())
        },
    )
    .await;
    held = json!({"metadata": {"finalizers": null}});
    let r = s
        .send(
            "PATCH",
            "/api/v1/persistentvolumes/held",
            "application/merge-patch+json",
            &held.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let o = deleter.await.unwrap();
    assert!(
        o.status.success(),
        "delete --wait failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("persistentvolume \"held\" deleted"));
    let out = k.ok(&["delete", "pod", "example-pv-pod"]).await;
    assert!(out.contains("pod \"example-pv-pod\" deleted"), "{out}");
    // The PV and PVC may carry protection finalizers that only a volume controller removes.
    let out = k
        .ok(&[
            "delete",
            "-f",
            file.to_str().unwrap(),
            "--ignore-not-found",
            "--wait=false",
        ])
        .await;
    assert!(
        out.contains("persistentvolume \"example-pv\" deleted"),
        "{out}"
    );
    assert!(
        out.contains("storageclass.storage.k8s.io \"local-storage\" deleted"),
        "{out}"
    );
    assert_eq!(
        s.get("/apis/storage.k8s.io/v1/storageclasses/local-storage")
            .await
            .status,
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

/// A stand-in for kubelet-lite: serves the real kubelet's `/containerLogs` and `/exec` paths,
/// checks the bearer token, and answers exec with a v5.channel.k8s.io WebSocket session.
async fn fake_kubelet() -> std::net::SocketAddr {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    use axum::extract::{Path, RawQuery};
    use axum::http::HeaderMap;
    use axum::routing::get;

    fn authorized(h: &HeaderMap) -> bool {
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
    }
    let app = axum::Router::new()
        .route(
            "/containerLogs/{ns}/{pod}/{container}",
            get(
                |Path((ns, pod, c)): Path<(String, String, String)>,
                 RawQuery(q): RawQuery,
                 h: HeaderMap| async move {
                    if !authorized(&h) {
                        return (axum::http::StatusCode::UNAUTHORIZED, "no token".to_string());
                    }
                    (
                        axum::http::StatusCode::OK,
                        format!("log of {ns}/{pod}/{c} query={}\n", q.unwrap_or_default()),
                    )
                },
            ),
        )
        .route(
            "/exec/{ns}/{pod}/{container}",
            get(
                |Path((_ns, _pod, c)): Path<(String, String, String)>,
                 RawQuery(q): RawQuery,
                 h: HeaderMap,
                 ws: WebSocketUpgrade| async move {
                    use axum::response::IntoResponse;
                    if !authorized(&h) {
                        return (axum::http::StatusCode::UNAUTHORIZED, "no token").into_response();
                    }
                    let q = q.unwrap_or_default();
                    let stdin = form_urlencoded::parse(q.as_bytes())
                        .any(|(k, v)| k == "stdin" && v == "true");
                    let args: Vec<String> = form_urlencoded::parse(q.as_bytes())
                        .filter(|(k, _)| k == "command")
                        .map(|(_, v)| v.into_owned())
                        .collect();
                    ws.protocols(["v5.channel.k8s.io"])
                        .on_upgrade(move |mut socket| async move {
                            let mut out = vec![1u8];
                            out.extend_from_slice(format!("{c}: {}\n", args.join(" ")).as_bytes());
                            let _ = socket.send(Message::Binary(out.into())).await;
                            if stdin {
                                // `cat`: echo channel 0 to channel 1 until the client's
                                // stdin-EOF signal [255, 0].
                                while let Some(Ok(m)) = socket.recv().await {
                                    let Message::Binary(b) = m else { continue };
                                    match b.first() {
                                        Some(0) => {
                                            let mut echo = vec![1u8];
                                            echo.extend_from_slice(&b[1..]);
                                            let _ = socket.send(Message::Binary(echo.into())).await;
                                        }
                                        Some(255) => break,
                                        _ => {}
                                    }
                                }
                            }
                            let mut status = vec![3u8];
                            status.extend_from_slice(br#"{"metadata":{},"status":"Success"}"#);
                            let _ = socket.send(Message::Binary(status.into())).await;
                            let _ = socket
                                .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                                    code: 1000,
                                    reason: "".into(),
                                })))
                                .await;
                            // Drain until the client closes too.
                            while let Some(Ok(m)) = socket.recv().await {
                                if matches!(m, Message::Close(_)) {
                                    break;
                                }
                            }
                        })
                        .into_response()
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_exec_are_proxied_to_the_kubelet() {
    if !have_kubectl() {
        return;
    }
    let s = start().await;
    let kubelet = fake_kubelet().await;
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}});
    assert_eq!(s.post_json("/api/v1/nodes", &node).await.status, 201);
    let st = json!({"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port()}}}});
    let r = s
        .send(
            "PATCH",
            "/api/v1/nodes/node-1/status",
            "application/merge-patch+json",
            &st.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "nginx"}]},
        "status": {"phase": "Running"}});
    assert_eq!(
        s.post_json("/api/v1/namespaces/default/pods", &pod)
            .await
            .status,
        201
    );
    // Whatever create did to the status, kubectl exec wants a Running pod.
    let r = s
        .send(
            "PATCH",
            "/api/v1/namespaces/default/pods/web/status",
            "application/merge-patch+json",
            r#"{"status":{"phase":"Running"}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let k = s.kubectl(true);
    let out = k.ok(&["logs", "web", "--tail=5"]).await;
    assert!(
        out.starts_with("log of default/web/app query=") && out.contains("tailLines=5"),
        "{out}"
    );
    let out = k.ok(&["exec", "web", "--", "echo", "hi there"]).await;
    assert_eq!(out, "app: echo hi there\n");
    // stdin travels the other way through the same splice.
    let o = k
        .run_stdin(&["exec", "-i", "web", "--", "cat"], "hello\nworld\n")
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout, "app: cat\nhello\nworld\n");

    // Errors as upstream.
    let r = s
        .get("/api/v1/namespaces/default/pods/web/log?container=nope")
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "container nope is not valid for pod web"
    );
    let r = s.get("/api/v1/namespaces/default/pods/ghost/log").await;
    assert_eq!(r.status, 404);
    let free = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "free"},
        "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}});
    assert_eq!(
        s.post_json("/api/v1/namespaces/default/pods", &free)
            .await
            .status,
        201
    );
    let r = s.get("/api/v1/namespaces/default/pods/free/log").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "a container name must be specified for pod free, choose one of: [a b]"
    );
    let r = s
        .req_full(
            "GET",
            "/api/v1/namespaces/default/pods/free/exec?command=ls&container=a&stdout=true",
            None,
            vec![],
            true,
            &[("connection", "Upgrade"), ("upgrade", "websocket")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "pod free does not have a host assigned"
    );
    // A node whose kubelet is not listening: 500 with Go's dial error, like kube-apiserver.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node2 = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2"}});
    assert_eq!(s.post_json("/api/v1/nodes", &node2).await.status, 201);
    let st = json!({"status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": closed}}}});
    s.send(
        "PATCH",
        "/api/v1/nodes/node-2/status",
        "application/merge-patch+json",
        &st.to_string(),
    )
    .await;
    let lost = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lost"},
        "spec": {"nodeName": "node-2", "containers": [{"name": "a", "image": "i"}]}});
    assert_eq!(
        s.post_json("/api/v1/namespaces/default/pods", &lost)
            .await
            .status,
        201
    );
    let r = s.get("/api/v1/namespaces/default/pods/lost/log").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["message"],
        format!("error dialing backend: dial tcp 127.0.0.1:{closed}: connect: connection refused")
    );
    s.stop().await;
}
