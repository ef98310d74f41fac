//! Privileged tests: a real node process (the `kubelet-lite` binary) against an in-process API
//! server, with real tmpfs, bind, overlay and loop mounts — all inside the node's own mount
//! namespace — real namespaced container processes, exec over WebSocket and logs over HTTP.
//! Skipped (with a message) when not root. Every node is killed by a Drop guard, which takes
//! its containers and mounts along, even when an assertion fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "kubelet-lite-test-token-0123456789";
const BIN: &str = env!("CARGO_BIN_EXE_kubelet-lite");

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { nix::libc::geteuid() == 0 }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipping: this test needs root (real mounts and namespaces)");
            return;
        }
    };
}

struct Cluster {
    _api: apiserver::http::ServerHandle,
    url: String,
    dir: tempfile::TempDir,
    client: kube::Client,
    nodes: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &self.nodes {
            let _ = Command::new(BIN)
                .args(["node", "--data-dir"])
                .arg(self.dir.path())
                .args(["kill", n])
                .output();
            // Belt and braces: if the CLI could not, kill the recorded processes directly.
            if let Some(pids) = kubelet_lite::node::running_pids(self.dir.path(), n) {
                // SAFETY: kill(2) on this test's own, verified node processes.
                unsafe {
                    nix::libc::kill(pids.node_pid, nix::libc::SIGKILL);
                    nix::libc::kill(pids.init_pid, nix::libc::SIGKILL);
                }
            }
        }
    }
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let cfg = apiserver::store::StoreConfig::durable(
        apiserver::store::BackendKind::DEFAULT,
        dir.path().join("store"),
    );
    let store = apiserver::store::Store::open(cfg).unwrap();
    let sc = apiserver::http::ServerConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN, store);
    let api = apiserver::http::serve(sc).await.unwrap();
    let url = format!("http://{}", api.local_addr());
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    let client = kubelet_lite::driver::client(&url, TOKEN, "test").unwrap();
    Cluster {
        _api: api,
        url,
        dir,
        client,
        nodes: Vec::new(),
    }
}

impl Cluster {
    fn data(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a `node`/`disk` command. It blocks (a node stop waits for the kubelet, which talks
    /// to the API server running in this very runtime), so tell tokio to move other work away.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        let (group, rest) = args.split_first().unwrap();
        tokio::task::block_in_place(|| {
            Command::new(BIN)
                .arg(group)
                .arg("--data-dir")
                .arg(self.data())
                .args(rest)
                .output()
                .unwrap()
        })
    }

    fn start_node(&mut self, name: &str, extra: &[&str]) {
        let mut argv = vec![
            "kubelet".to_string(),
            format!("--server={}", self.url),
            format!("--token-file={}", self.data().join("token").display()),
            format!("--node={name}"),
            format!("--data-dir={}", self.data().display()),
            "--lease-duration-seconds=4".to_string(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        self.nodes.push(name.to_string());
        tokio::task::block_in_place(|| {
            kubelet_lite::node::spawn(
                Path::new(BIN),
                &argv,
                self.data(),
                name,
                Duration::from_secs(30),
            )
            .expect("node starts")
        });
    }

    fn port(&self, node: &str) -> u16 {
        std::fs::read_to_string(self.data().join("nodes").join(node).join("kubelet.port"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

async fn wait_for<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_phase(pods: &Api<Pod>, name: &str, phase: &str) -> Pod {
    wait_for(&format!("pod {name} {phase}"), 30, || async {
        let p = pods.get_opt(name).await.ok()??;
        (p.status.as_ref()?.phase.as_deref() == Some(phase)).then_some(p)
    })
    .await
}

/// Runs a command in a container through the kubelet's exec endpoint; returns
/// (stdout, stderr, status JSON).
async fn exec(
    port: u16,
    pod: &str,
    container: &str,
    argv: &[&str],
    stdin: Option<&[u8]>,
) -> (String, String, serde_json::Value) {
    let mut q: Vec<String> = argv
        .iter()
        .map(|a| {
            format!(
                "command={}",
                form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>()
            )
        })
        .collect();
    q.push("stdout=true".into());
    q.push("stderr=true".into());
    if stdin.is_some() {
        q.push("stdin=true".into());
    }
    let url = format!(
        "ws://127.0.0.1:{port}/exec/default/{pod}/{container}?{}",
        q.join("&")
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "v5.channel.k8s.io"
    );
    if let Some(data) = stdin {
        let mut f = vec![0u8];
        f.extend_from_slice(data);
        ws.send(Message::Binary(f.into())).await.unwrap();
        ws.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .unwrap();
    }
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), serde_json::Value::Null);
    while let Some(m) = ws.next().await {
        match m {
            Ok(Message::Binary(b)) if !b.is_empty() => match b[0] {
                1 => out.extend_from_slice(&b[1..]),
                2 => err.extend_from_slice(&b[1..]),
                3 => status = serde_json::from_slice(&b[1..]).unwrap(),
                _ => {}
            },
            Ok(Message::Close(_)) | Err(_) => break,
            _ => {}
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        status,
    )
}

/// exec with a TTY: sends a resize, then `input`; returns (output, status JSON).
async fn exec_tty(
    port: u16,
    pod: &str,
    container: &str,
    argv: &[&str],
    input: &[u8],
) -> (String, serde_json::Value) {
    let mut q: Vec<String> = argv
        .iter()
        .map(|a| {
            format!(
                "command={}",
                form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>()
            )
        })
        .collect();
    q.extend(["stdin=true".into(), "stdout=true".into(), "tty=true".into()]);
    let url = format!(
        "ws://127.0.0.1:{port}/exec/default/{pod}/{container}?{}",
        q.join("&")
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    let mut resize = vec![4u8];
    resize.extend_from_slice(br#"{"Width":100,"Height":24}"#);
    ws.send(Message::Binary(resize.into())).await.unwrap();
    let mut f = vec![0u8];
    f.extend_from_slice(input);
    ws.send(Message::Binary(f.into())).await.unwrap();
    let (mut out, mut status) = (Vec::new(), serde_json::Value::Null);
    while let Some(m) = ws.next().await {
        match m {
            Ok(Message::Binary(b)) if !b.is_empty() => match b[0] {
                1 => out.extend_from_slice(&b[1..]),
                3 => status = serde_json::from_slice(&b[1..]).unwrap(),
                _ => {}
            },
            Ok(Message::Close(_)) | Err(_) => break,
            _ => {}
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), status)
}

async fn http_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (code, body)
}

fn host_mounts() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

async fn bind_claim(c: &Cluster, pv_name: &str, path: &str, node: &str, claim: &str) {
    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "default");
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}},
                 "storageClassName": "manual", "volumeName": pv_name}
    }))
    .unwrap();
    let pvc = pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Mi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                 "local": {"path": path},
                 "claimRef": {"name": claim, "namespace": "default", "uid": pvc.metadata.uid},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}
    }))
    .unwrap();
    pvs.create(&PostParams::default(), &pv).await.unwrap();
    pvcs.patch_status(
        claim,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Bound"}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_runs_pods_with_real_mounts_exec_and_logs() {
    require_root!();
    let before = host_mounts();
    let mut c = cluster().await;
    c.start_node("node-1", &[]);
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node = wait_for("node Ready", 20, || async {
        let n = nodes.get_opt("node-1").await.ok()??;
        let ready = n.status.as_ref()?.conditions.as_ref()?.iter().any(|c| {
            c.type_ == "Ready" && c.status == "True" && c.reason.as_deref() == Some("KubeletReady")
        });
        ready.then_some(n)
    })
    .await;
    let st = node.status.as_ref().unwrap();
    assert_eq!(
        st.daemon_endpoints
            .as_ref()
            .unwrap()
            .kubelet_endpoint
            .as_ref()
            .unwrap()
            .port,
        c.port("node-1") as i32
    );
    let labels = node.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "node-1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(c.client.clone(), "kube-node-lease");
    wait_for("lease", 20, || async {
        leases.get_opt("node-1").await.ok()?
    })
    .await;

    // Disks: real tmpfs inside the node only; bad input changes nothing.
    let out = c.cli(&["disk", "add", "node-1", "vol1", "--size", "64Mi"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (args, msg) in [
        (
            vec!["disk", "add", "node-1", "vol2", "--size", "lots"],
            "invalid size",
        ),
        (
            vec!["disk", "add", "node-9", "vol2", "--size", "1Mi"],
            "not found",
        ),
        (
            vec!["disk", "add", "node-1", "vol1", "--size", "1Mi"],
            "already exists",
        ),
    ] {
        let o = c.cli(&args);
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(msg),
            "{:?}: {}",
            args,
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let ls = c.cli(&["disk", "ls"]);
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("vol1") && !ls.contains("vol2"), "{ls}");
    assert_eq!(
        host_mounts().matches("/mnt/disks").count(),
        before.matches("/mnt/disks").count(),
        "a bonsai mount leaked into the host's mount namespace"
    );

    bind_claim(&c, "pv-vol1", "/mnt/disks/vol1", "node-1", "claim1").await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "nodeName": "node-1",
            "terminationGracePeriodSeconds": 2,
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "claim1"}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}
            ],
            "containers": [{
                "name": "app", "image": "busybox",
                "command": ["/bin/sh", "-c", "echo hello from $(hostname); echo oops >&2; touch /usr/share/nginx/html/from-pod; exec sleep 1000"],
                "env": [{"name": "GREETING", "value": "hi"}],
                "volumeMounts": [
                    {"name": "data", "mountPath": "/usr/share/nginx/html"},
                    {"name": "mem", "mountPath": "/cache"},
                    {"name": "data", "mountPath": "/ro", "readOnly": true}
                ]
            }]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = wait_phase(&pods, "web", "Running").await;
    let st = running.status.unwrap();
    assert_eq!(st.pod_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
    let port = c.port("node-1");

    // A container whose command does not exist fails to start: RunContainerError with the
    // exec error, reported by the container init through its shim.
    let bad: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bad"},
        "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "b", "image": "x", "command": ["/no/such/binary"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &bad).await.unwrap();
    let waiting = wait_for("bad: RunContainerError", 30, || async {
        let p = pods.get_opt("bad").await.ok()??;
        let cs = p.status?.container_statuses?.into_iter().next()?;
        let w = cs.state?.waiting?;
        (w.reason.as_deref() == Some("RunContainerError")).then_some(w)
    })
    .await;
    let msg = waiting.message.unwrap_or_default();
    assert!(
        msg.contains("/no/such/binary") && msg.contains("no such file or directory"),
        "{msg}"
    );
    pods.delete("bad", &DeleteParams::default()).await.unwrap();
    wait_for("bad deleted", 30, || async {
        matches!(pods.get_opt("bad").await, Ok(None)).then_some(())
    })
    .await;

    // Logs, with the token only.
    let (code, _) = http_get(port, "/containerLogs/default/web/app", None).await;
    assert_eq!(code, 401);
    let logs = wait_for("logs", 10, || async {
        let (code, body) = http_get(port, "/containerLogs/default/web/app", Some(TOKEN)).await;
        if code != 200 || !body.contains("hello from web") {
            let out = Command::new("sh").arg("-c").arg(format!("find {0}/nodes -maxdepth 6 | grep -v rootfs/; cat {0}/nodes/node-1/kubelet.log | tail -20; cat {0}/nodes/node-1/logs/pods/*/*/*", c.data().display())).output().unwrap();
            eprintln!("logs: {code} {body:?} {}", String::from_utf8_lossy(&out.stdout));
        }
        (code == 200 && body.contains("hello from web")).then_some(body)
    })
    .await;
    assert!(logs.contains("oops"), "{logs}");
    let (_, ts) = http_get(
        port,
        "/containerLogs/default/web/app?tailLines=1&timestamps=true",
        Some(TOKEN),
    )
    .await;
    assert_eq!(ts.lines().count(), 1, "{ts}");
    assert!(ts.starts_with("20"), "{ts}");

    // The same through the API server's pods/log and pods/exec proxy, with kube-rs.
    let l = pods
        .logs(
            "web",
            &kube::api::LogParams {
                container: Some("app".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(l.contains("hello from web"), "{l}");
    let mut ap = pods
        .exec(
            "web",
            vec!["hostname"],
            &kube::api::AttachParams::default()
                .container("app")
                .stderr(false),
        )
        .await
        .unwrap();
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut ap.stdout().unwrap(), &mut out)
        .await
        .unwrap();
    ap.join().await.unwrap();
    assert_eq!(out, "web\n");

    // The container sees its volume where the image would have had nginx's html directory.
    let (out, _, status) = exec(port, "web", "app", &["ls", "/usr/share/nginx/html"], None).await;
    assert_eq!(status["status"], "Success", "{status}");
    assert!(out.contains("from-pod"), "{out}");
    // The node sees the same file on its disk (the lab's "log in to node-1").
    let o = c.cli(&["node", "exec", "node-1", "--", "ls", "/mnt/disks/vol1"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("from-pod"));
    // Namespaces and privileges.
    let (out, _, _) = exec(port, "web", "app", &["/bin/sh", "-c", "hostname; echo $GREETING; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status"], None).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "web");
    assert_eq!(lines[1], "hi");
    assert!(
        lines[2].starts_with("sleep"),
        "PID 1 is the container's own process: {out}"
    );
    let capeff = u64::from_str_radix(lines[3].split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(capeff & (1 << 21), 0, "no CAP_SYS_ADMIN");
    assert_eq!(capeff & (1 << 27), 0, "no CAP_MKNOD");
    assert!(lines[4].ends_with('1'), "no_new_privs: {out}");
    let (_, err, status) = exec(
        port,
        "web",
        "app",
        &["mount", "-o", "remount,rw", "/usr"],
        None,
    )
    .await;
    assert_eq!(status["status"], "Failure", "remount must fail: {err}");
    assert_eq!(status["reason"], "NonZeroExitCode");
    let (_, _, status) = exec(
        port,
        "web",
        "app",
        &["touch", "/usr/bin/bonsai-should-not-exist"],
        None,
    )
    .await;
    assert_eq!(status["status"], "Failure");
    assert!(!Path::new("/usr/bin/bonsai-should-not-exist").exists());
    let (_, _, status) = exec(port, "web", "app", &["touch", "/ro/x"], None).await;
    assert_eq!(status["status"], "Failure", "readOnly volumeMount");
    // Host writes are not visible; the container's /tmp is its own.
    let marker = format!("bonsai-host-{}", std::process::id());
    std::fs::write(Path::new("/tmp").join(&marker), b"x").unwrap();
    let (out, _, _) = exec(port, "web", "app", &["ls", "/tmp"], None).await;
    let _ = std::fs::remove_file(Path::new("/tmp").join(&marker));
    assert!(!out.contains(&marker));
    // stdin and exit codes.
    let (out, _, status) = exec(
        port,
        "web",
        "app",
        &["/bin/sh", "-c", "cat; exit 3"],
        Some(b"piped\n"),
    )
    .await;
    assert_eq!(out, "piped\n");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    // Memory emptyDir is a size-limited tmpfs.
    let (out, _, _) = exec(
        port,
        "web",
        "app",
        &["/bin/sh", "-c", "grep ' /cache ' /proc/mounts"],
        None,
    )
    .await;
    assert!(out.contains("tmpfs") && out.contains("size=8192k"), "{out}");

    // A pod without a command runs a pause process, and says so.
    // exec -t: a shell on a pty, resized, fed through stdin.
    let (out, status) = exec_tty(
        port,
        "web",
        "app",
        &["/bin/sh"],
        b"stty size; echo tty-$((1+1)); exit 0\n",
    )
    .await;
    assert_eq!(status["status"], "Success", "{status}");
    assert!(out.contains("24 100"), "resize applied: {out:?}");
    assert!(out.contains("tty-2"), "{out:?}");

    // logs -f streams until the container ends.
    let counter: Pod = serde_json::from_value(json!({
        "metadata": {"name": "counter"},
        "spec": {"nodeName": "node-1", "restartPolicy": "Never",
                 "containers": [{"name": "c", "image": "x", "command": ["/bin/sh", "-c", "echo one; sleep 0.3; echo two"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &counter).await.unwrap();
    wait_for("counter started", 20, || async {
        let p = pods.get_opt("counter").await.ok()??;
        let cs = p.status?.container_statuses?;
        cs[0].container_id.as_ref().map(|_| ())
    })
    .await;
    let (code, body) = http_get(
        port,
        "/containerLogs/default/counter/c?follow=true",
        Some(TOKEN),
    )
    .await;
    assert_eq!(code, 200);
    assert!(body.contains("one") && body.contains("two"), "{body:?}");
    let done = wait_phase(&pods, "counter", "Succeeded").await;
    let cs = &done.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(
        cs.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("Completed")
    );

    // A local PV whose path does not exist yet: FailedMount with Kubernetes' message, retried,
    // and the pod starts once the disk appears.
    bind_claim(&c, "pv-vol9", "/mnt/disks/vol9", "node-1", "claim9").await;
    let waiter: Pod = serde_json::from_value(json!({
        "metadata": {"name": "waiter"},
        "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 1,
                 "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "claim9"}}],
                 "containers": [{"name": "w", "image": "x", "command": ["sleep", "1000"],
                                 "volumeMounts": [{"name": "v", "mountPath": "/data"}]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &waiter).await.unwrap();
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    wait_for("FailedMount", 20, || async {
        let l = events.list(&Default::default()).await.ok()?;
        l.items.iter().any(|e| {
            e.reason.as_deref() == Some("FailedMount")
                && e.message.as_deref()
                    == Some("MountVolume.NewMounter initialization failed for volume \"pv-vol9\" : path \"/mnt/disks/vol9\" does not exist")
        })
        .then_some(())
    })
    .await;
    assert_eq!(
        pods.get("waiter")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending")
    );
    let o = c.cli(&["disk", "add", "node-1", "vol9", "--size", "4Mi"]);
    assert!(o.status.success());
    wait_phase(&pods, "waiter", "Running").await;

    let pause: Pod = serde_json::from_value(json!({
        "metadata": {"name": "nginx"},
        "spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "nginx", "image": "nginx"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pause).await.unwrap();
    wait_phase(&pods, "nginx", "Running").await;
    let (out, _, status) = exec(
        port,
        "nginx",
        "nginx",
        &["/bin/sh", "-c", "echo inside; cat /proc/1/comm"],
        None,
    )
    .await;
    assert_eq!(status["status"], "Success");
    assert_eq!(out, "inside\npause\n");
    wait_for("NoCommand, Created and Started events", 10, || async {
        let l = events.list(&Default::default()).await.ok()?;
        let has = |r: &str| {
            l.items.iter().any(|e| {
                e.reason.as_deref() == Some(r) && e.involved_object.name.as_deref() == Some("nginx")
            })
        };
        (has("NoCommand") && has("Created") && has("Started")).then_some(())
    })
    .await;

    // Deletion: SIGTERM (ignored by a PID-1 sleep), grace, SIGKILL, unmount, object deleted.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    wait_for("web deleted", 30, || async {
        pods.get_opt("web").await.ok()?.is_none().then_some(())
    })
    .await;
    let o = c.cli(&[
        "node",
        "exec",
        "node-1",
        "--",
        "cat",
        "/proc/self/mountinfo",
    ]);
    let mi = String::from_utf8_lossy(&o.stdout);
    assert!(
        !mi.contains("kubernetes.io~local-volume/pv-vol1"),
        "pod mounts remain: {mi}"
    );
    let o = c.cli(&["node", "exec", "node-1", "--", "ls", "/mnt/disks/vol1"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("from-pod"),
        "volume data must survive"
    );
    pods.delete("nginx", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("nginx deleted", 30, || async {
        pods.get_opt("nginx").await.ok()?.is_none().then_some(())
    })
    .await;

    let (code, metrics) = http_get(port, "/metrics", Some(TOKEN)).await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("kubelet_started_containers_total{node=\"node-1\"} 4"),
        "{metrics}"
    );

    // Disk removal unmounts inside the node.
    let o = c.cli(&["disk", "rm", "node-1", "vol1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = c.cli(&[
        "node",
        "exec",
        "node-1",
        "--",
        "cat",
        "/proc/self/mountinfo",
    ]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("/mnt/disks/vol1"));
    assert_eq!(
        host_mounts().matches("/mnt/disks").count(),
        before.matches("/mnt/disks").count()
    );
}

/// The host pid of the process that is `ns_pid` in a node's PID namespace and whose parent is
/// one of `node_procs` (host pids of that node's own processes).
fn host_pid_of(node_procs: &[i32], ns_pid: i32) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|p| {
            let Ok(st) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
                return false;
            };
            let field = |k: &str| -> Vec<i32> {
                st.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| {
                        v.split_whitespace()
                            .filter_map(|x| x.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let nspid = field("NSpid:");
            let ppid = field("PPid:");
            nspid.get(1) == Some(&ns_pid) && ppid.first().is_some_and(|pp| node_procs.contains(pp))
        })
}

fn pids_in_pidns_of(pid: i32) -> Vec<i32> {
    let Ok(target) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/ns/pid"))
                .ok()
                .as_ref()
                == Some(&target)
        })
        .collect()
}

fn loop_backing_files() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .map(|s| PathBuf::from(s.trim()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_leaves_nothing_and_loop_disks_survive() {
    require_root!();
    let mut c = cluster().await;
    c.start_node("node-2", &[]);
    let o = c.cli(&[
        "disk",
        "add",
        "node-2",
        "data",
        "--size",
        "16Mi",
        "--backing",
        "loop",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = c.cli(&["disk", "add", "node-2", "ram", "--size", "4Mi"]);
    assert!(o.status.success());
    let o = c.cli(&[
        "node",
        "exec",
        "node-2",
        "--",
        "/bin/sh",
        "-c",
        "echo kept > /mnt/disks/data/f && echo lost > /mnt/disks/ram/f && sync",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let image = c.data().join("nodes/node-2/disks/data.img");
    assert!(loop_backing_files().iter().any(|b| b == &image));

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "sleeper"},
        "spec": {"nodeName": "node-2", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "s", "image": "x", "command": ["sleep", "1000"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_phase(&pods, "sleeper", "Running").await;
    let init = kubelet_lite::node::running_pids(c.data(), "node-2").unwrap();
    let before = pids_in_pidns_of(init.init_pid);
    assert!(
        before.len() >= 3,
        "init, kubelet, shim, container: {before:?}"
    );

    // The kubelet process crashes: init starts a new one, which adopts the running container.
    let cdir = c
        .data()
        .join("nodes/node-2/containers")
        .join(pods.get("sleeper").await.unwrap().metadata.uid.unwrap());
    let cinit: i32 = std::fs::read_to_string(cdir.join("s/init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // init.pid numbers the container's init in the node's PID namespace; the test sees host
    // pids, so find the host pid of that process (its shim is one of the node's processes).
    let node_procs = pids_in_pidns_of(init.init_pid);
    let cinit_host = host_pid_of(&node_procs, cinit).expect("container init found on the host");
    let kubelet_pid = || -> Option<i32> {
        std::fs::read_to_string(format!(
            "/proc/{}/task/{}/children",
            init.init_pid, init.init_pid
        ))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
    };
    let old = kubelet_pid().expect("kubelet is init's child");
    // SAFETY: SIGKILL to the node's kubelet process, found through its init.
    unsafe { nix::libc::kill(old, nix::libc::SIGKILL) };
    wait_for("new kubelet", 20, || async {
        kubelet_pid().filter(|p| *p != old)
    })
    .await;
    let new_port = wait_for("new kubelet serving", 20, || async {
        let p: u16 = std::fs::read_to_string(c.data().join("nodes/node-2/kubelet.port"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let (code, _) = http_get(p, "/healthz", None).await;
        (code == 200).then_some(p)
    })
    .await;
    let (out, _, status) = wait_for("exec after adoption", 20, || async {
        let r = exec(new_port, "sleeper", "s", &["cat", "/proc/1/comm"], None).await;
        (r.2["status"] == "Success").then_some(r)
    })
    .await;
    assert_eq!(out, "sleep\n", "{status}");
    assert!(
        host_pid_of(&pids_in_pidns_of(init.init_pid), cinit) == Some(cinit_host),
        "the container survived the kubelet crash"
    );
    let p = pods.get("sleeper").await.unwrap();
    assert_eq!(
        p.status.unwrap().container_statuses.unwrap()[0].restart_count,
        0
    );

    let o = c.cli(&["node", "kill", "node-2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("tmpfs disks lost: ram"));
    for p in &before {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|s| s.contains(") Z"))
                    .unwrap_or(true),
            "process {p} of the killed node survived"
        );
    }
    wait_for("loop device auto-cleared", 10, || async {
        (!loop_backing_files().iter().any(|b| b == &image)).then_some(())
    })
    .await;
    let o = c.cli(&["node", "exec", "node-2", "--", "true"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not running"));

    // Power back on: the loop disk comes back with its data, the RAM disk does not.
    let o = c.cli(&["node", "start", "node-2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("tmpfs disk lost"));
    let o = c.cli(&["node", "exec", "node-2", "--", "cat", "/mnt/disks/data/f"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "kept\n");
    let o = c.cli(&["node", "exec", "node-2", "--", "ls", "/mnt/disks"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "data");
    // The pod runs again on the rebooted node. Its status may still say running from before
    // the power cut, so ask the new kubelet itself whether it started the container.
    let port = c.port("node-2");
    wait_for("sleeper restarted by the new kubelet", 20, || async {
        let (code, body) = http_get(port, "/debug/pod-start", Some(TOKEN)).await;
        let t: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && t["default/sleeper"]["started"].is_u64()).then_some(())
    })
    .await;
    wait_for("sleeper running", 20, || async {
        let p = pods.get_opt("sleeper").await.ok()??;
        let cs = p.status?.container_statuses?;
        cs[0].state.as_ref()?.running.as_ref().map(|_| ())
    })
    .await;
    // Clean stop: the pod is stopped and the node exits.
    let o = c.cli(&["node", "stop", "node-2", "--timeout", "20"]);
    assert!(
        o.status.success(),
        "{} {}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(c.data().join("nodes/node-2/kubelet.log")).unwrap_or_default()
    );
    // Graceful node shutdown: the pod ends Failed/Terminated, its container terminated.
    let p = pods.get("sleeper").await.unwrap();
    let st = p.status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    assert_eq!(st.reason.as_deref(), Some("Terminated"));
    let cs = &st.container_statuses.unwrap()[0];
    assert!(!cs.ready);
    assert!(cs.state.as_ref().unwrap().terminated.is_some(), "{cs:?}");
    wait_for("loop device auto-cleared after stop", 10, || async {
        (!loop_backing_files().iter().any(|b| b == &image)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_provisioner_publishes_mount_points() {
    require_root!();
    let mut c = cluster().await;
    let scs: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(c.client.clone());
    let sc = serde_json::from_value(json!({
        "metadata": {"name": "local-storage"}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer"
    }))
    .unwrap();
    scs.create(&PostParams::default(), &sc).await.unwrap();
    c.start_node(
        "node-3",
        &["--static-provisioner", "--discovery-period-ms=100"],
    );
    let o = c.cli(&["disk", "add", "node-3", "vol1", "--size", "20Mi"]);
    assert!(o.status.success());
    // A plain directory is never published.
    let o = c.cli(&["node", "exec", "node-3", "--", "mkdir", "/mnt/disks/plain"]);
    assert!(o.status.success());
    let pvs: Api<PersistentVolume> = Api::all(c.client.clone());
    let name = kubelet_lite::core::provisioner::pv_name("vol1", "node-3", "local-storage");
    let pv = wait_for("local PV", 20, || async { pvs.get_opt(&name).await.ok()? }).await;
    let spec = pv.spec.clone().unwrap();
    assert_eq!(spec.capacity.unwrap()["storage"].0, "20Mi");
    assert_eq!(spec.local.unwrap().path, "/mnt/disks/vol1");
    assert_eq!(spec.storage_class_name.as_deref(), Some("local-storage"));
    let l = pvs.list(&Default::default()).await.unwrap();
    assert_eq!(l.items.len(), 1, "only the mount point is published");

    // Released under Delete: the provisioner cleans the disk, deletes the PV and publishes the
    // same slot again.
    let o = c.cli(&[
        "node",
        "exec",
        "node-3",
        "--",
        "/bin/sh",
        "-c",
        "echo old > /mnt/disks/vol1/data && mkdir /mnt/disks/vol1/d",
    ]);
    assert!(o.status.success());
    let old_uid = pv.metadata.uid.clone();
    pvs.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"claimRef": {"name": "gone", "namespace": "default", "uid": "0000"}}}),
        ),
    )
    .await
    .unwrap();
    pvs.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Released"}})),
    )
    .await
    .unwrap();
    wait_for("PV deleted or terminating", 20, || async {
        match pvs.get_opt(&name).await.ok()? {
            None => Some(()),
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                // No volume controller here: play the pv-protection controller's part.
                let _ = pvs
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                    )
                    .await;
                None
            }
            Some(_) => None,
        }
    })
    .await;
    let again = wait_for("PV re-created", 20, || async {
        let p = pvs.get_opt(&name).await.ok()??;
        (p.metadata.uid != old_uid).then_some(p)
    })
    .await;
    assert_eq!(again.spec.unwrap().local.unwrap().path, "/mnt/disks/vol1");
    let o = c.cli(&[
        "node",
        "exec",
        "node-3",
        "--",
        "ls",
        "-A",
        "/mnt/disks/vol1",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "",
        "the disk was cleaned"
    );
}
