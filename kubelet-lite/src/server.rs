//! The kubelet's HTTP endpoint on 127.0.0.1 (its port goes into the Node's
//! `status.daemonEndpoints.kubeletEndpoint.Port`). Every route except `/healthz` requires
//! `Authorization: Bearer <token>` with the cluster token: exec runs commands as root, so only
//! the API server (which proxies `pods/log` and `pods/exec` here) may call it.
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}?follow=&tailLines=&timestamps=&previous=&limitBytes=`
//! - `GET /exec/{ns}/{pod}/{container}?command=…&command=…&stdin=&stdout=&stderr=&tty=` —
//!   WebSocket, subprotocol `v5.channel.k8s.io` (or v4): binary frames whose first byte is the
//!   channel (0 stdin, 1 stdout, 2 stderr, 3 error/status JSON, 4 resize, 255 close stdin).
//! - `GET /metrics` (Prometheus text), `GET /healthz`.
//! - `GET /debug/pod-start`: per-pod start stage timestamps ([`StartTraces`]), JSON.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runtime::{logs, shim::ExecSpec, Runtime};

/// What exec and logs need to know about one container (kept current by the driver).
#[derive(Clone, Debug, Default)]
pub struct ContainerInfo {
    /// The running container's init pid (node PID namespace), if it runs.
    pub init_pid: Option<i32>,
    /// Current attempt (log file number); `None` before the first start.
    pub attempt: Option<u32>,
    pub waiting_reason: String,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
}

/// One pod as the server sees it.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    pub uid: String,
    pub containers: BTreeMap<String, ContainerInfo>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub running_pods: AtomicU64,
    pub running_containers: AtomicU64,
    pub mounts_ok: AtomicU64,
    pub mounts_failed: AtomicU64,
    pub containers_started: AtomicU64,
    pub container_start_errors: AtomicU64,
    pub exec_sessions: AtomicU64,
    pub log_requests: AtomicU64,
    pub lease_renewals: AtomicU64,
    pub node_status_updates: AtomicU64,
    pub pod_start_ms_sum: AtomicU64,
    pub pod_start_count: AtomicU64,
    pub pvs_provisioned: AtomicU64,
}

impl Metrics {
    pub fn render(&self, node: &str) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        let mut s = String::new();
        let mut m = |name: &str, kind: &str, help: &str, lines: Vec<(String, f64)>| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in lines {
                s.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        let l = format!("{{node=\"{node}\"}}");
        m(
            "kubelet_running_pods",
            "gauge",
            "Pods with at least one running container.",
            vec![(l.clone(), g(&self.running_pods))],
        );
        m(
            "kubelet_running_containers",
            "gauge",
            "Running containers.",
            vec![(l.clone(), g(&self.running_containers))],
        );
        m(
            "kubelet_volume_mounts_total",
            "counter",
            "Pod volume set-ups by result.",
            vec![
                (
                    format!("{{node=\"{node}\",result=\"success\"}}"),
                    g(&self.mounts_ok),
                ),
                (
                    format!("{{node=\"{node}\",result=\"failure\"}}"),
                    g(&self.mounts_failed),
                ),
            ],
        );
        m(
            "kubelet_started_containers_total",
            "counter",
            "Containers started.",
            vec![(l.clone(), g(&self.containers_started))],
        );
        m(
            "kubelet_started_containers_errors_total",
            "counter",
            "Container starts that failed.",
            vec![(l.clone(), g(&self.container_start_errors))],
        );
        m(
            "kubelet_exec_sessions_total",
            "counter",
            "Exec sessions served.",
            vec![(l.clone(), g(&self.exec_sessions))],
        );
        m(
            "kubelet_container_log_requests_total",
            "counter",
            "Log requests served.",
            vec![(l.clone(), g(&self.log_requests))],
        );
        m(
            "kubelet_node_lease_renewals_total",
            "counter",
            "Successful Lease renewals.",
            vec![(l.clone(), g(&self.lease_renewals))],
        );
        m(
            "kubelet_node_status_updates_total",
            "counter",
            "Node status writes.",
            vec![(l.clone(), g(&self.node_status_updates))],
        );
        m(
            "kubelet_pod_start_duration_seconds_sum",
            "counter",
            "Sum of pod start latencies (first seen to running).",
            vec![(l.clone(), g(&self.pod_start_ms_sum) / 1000.0)],
        );
        m(
            "kubelet_pod_start_duration_seconds_count",
            "counter",
            "Pods started.",
            vec![(l.clone(), g(&self.pod_start_count))],
        );
        m(
            "local_volume_provisioner_persistentvolumes_created_total",
            "counter",
            "PVs created by the static provisioner.",
            vec![(l, g(&self.pvs_provisioned))],
        );
        s
    }
}

/// Where each pod's start went, for `GET /debug/pod-start`: `namespace/name` → stage →
/// [`crate::runtime::mono_ns`] time. Stages, in order: `watch` (the pod's first watch event
/// reached the kubelet), `sync` (the sync loop took it up), `mount_begin`/`mount_end` (volume
/// set-up), the container start (`start_begin`, `spawned`, `shim_entry`, `shim_namespaces`,
/// `shim_root`, `init_pivoted`, `init_exec`, `shim_init`, `started`), and the status write
/// that first says Running (`status_sent`, `status_done`). An entry lives until the pod is
/// gone from the node.
pub type StartTraces = Arc<Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>>;

/// Shared state of the HTTP server.
#[derive(Clone)]
pub struct ServerState {
    pub node: String,
    pub token: Arc<String>,
    pub runtime: Runtime,
    /// `namespace/name` → pod.
    pub pods: Arc<Mutex<BTreeMap<String, PodInfo>>>,
    pub metrics: Arc<Metrics>,
    pub start_traces: StartTraces,
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
    });
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn authorized(state: &ServerState, headers: &HeaderMap) -> bool {
    let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(t) = v.strip_prefix("Bearer ") else {
        return false;
    };
    // Constant-time comparison: the token guards root command execution.
    let (a, b) = (t.as_bytes(), state.token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response {
    status(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "Unauthorized".into(),
    )
}

pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/debug/pod-start", get(pod_start_traces))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{ns}/{pod}/{container}", get(exec).post(exec))
        .with_state(state)
}

async fn metrics(State(st): State<ServerState>, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    (
        [("content-type", "text/plain; version=0.0.4")],
        st.metrics.render(&st.node),
    )
        .into_response()
}

async fn pod_start_traces(State(st): State<ServerState>, headers: HeaderMap) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    let body = serde_json::to_string(&*st.start_traces.lock().unwrap()).unwrap_or_default();
    ([("content-type", "application/json")], body).into_response()
}

fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn flag(q: &[(String, String)], k: &str) -> bool {
    q.iter()
        .any(|(n, v)| n == k && (v == "1" || v == "true" || v.is_empty()))
}

#[allow(clippy::result_large_err)] // the Err is the ready-made HTTP answer
fn lookup(
    st: &ServerState,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<(String, ContainerInfo), Response> {
    let pods = st.pods.lock().unwrap();
    let Some(p) = pods.get(&format!("{ns}/{pod}")) else {
        return Err(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{pod}\" not found"),
        ));
    };
    let Some(c) = p.containers.get(container) else {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("container {container} is not valid for pod {pod}"),
        ));
    };
    Ok((p.uid.clone(), c.clone()))
}

async fn container_logs(
    State(st): State<ServerState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    st.metrics.log_requests.fetch_add(1, Ordering::Relaxed);
    let q = query_pairs(&q);
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let follow = flag(&q, "follow");
    let timestamps = flag(&q, "timestamps");
    let previous = flag(&q, "previous");
    let tail = get("tailLines")
        .and_then(|v| v.parse::<i64>().ok())
        .map(|n| n.max(0) as usize);
    let limit = get("limitBytes").and_then(|v| v.parse::<usize>().ok());
    let (uid, info) = match lookup(&st, &ns, &pod, &container) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let attempt = match (info.attempt, previous) {
        (None, _) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "container \"{container}\" in pod \"{pod}\" is waiting to start: {}",
                    if info.waiting_reason.is_empty() {
                        "ContainerCreating"
                    } else {
                        &info.waiting_reason
                    }
                ),
            )
        }
        (Some(0), true) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            )
        }
        (Some(a), true) => a - 1,
        (Some(a), false) => a,
    };
    let path = st.runtime.log_path(&ns, &pod, &uid, &container, attempt);
    let data = std::fs::read(&path).unwrap_or_default();
    let mut first = logs::render_file(&data, tail, timestamps);
    if let Some(l) = limit {
        first.truncate(l);
    }
    if !follow || previous {
        return ([("content-type", "text/plain")], first).into_response();
    }
    // Follow: stream what is appended, record by record, until this attempt's container ended
    // and everything it wrote was sent.
    let offset = data.len();
    let pods = st.pods.clone();
    let key = format!("{ns}/{pod}");
    let state = (
        Some(first),
        offset,
        Vec::<u8>::new(),
        path,
        pods,
        key,
        container,
        attempt,
        uid,
    );
    let stream = futures_util::stream::unfold(state, move |mut s| async move {
        if let Some(first) = s.0.take() {
            return Some((Ok::<Bytes, std::io::Error>(Bytes::from(first)), s));
        }
        loop {
            let data = std::fs::read(&s.3).unwrap_or_default();
            if data.len() > s.1 {
                s.2.extend_from_slice(&data[s.1..]);
                s.1 = data.len();
                let mut out = Vec::new();
                while let Some(i) = s.2.iter().position(|b| *b == b'\n') {
                    if let Some(r) = logs::parse(&s.2[..i]) {
                        logs::render(&r, timestamps, &mut out);
                    }
                    s.2.drain(..=i);
                }
                if !out.is_empty() {
                    return Some((Ok(Bytes::from(out)), s));
                }
            }
            let still = {
                let pods = s.4.lock().unwrap();
                pods.get(&s.5)
                    .filter(|p| p.uid == s.8)
                    .and_then(|p| p.containers.get(&s.6))
                    .is_some_and(|c| c.init_pid.is_some() && c.attempt == Some(s.7))
            };
            if !still {
                // One last read: the shim flushes before it exits.
                let data = std::fs::read(&s.3).unwrap_or_default();
                if data.len() > s.1 {
                    continue;
                }
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    ([("content-type", "text/plain")], Body::from_stream(stream)).into_response()
}

fn exit_status_json(code: i32) -> String {
    if code == 0 {
        r#"{"metadata":{},"status":"Success"}"#.to_string()
    } else {
        serde_json::json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
        })
        .to_string()
    }
}

async fn exec(
    State(st): State<ServerState>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if !authorized(&st, &headers) {
        return unauthorized();
    }
    let q = query_pairs(&q);
    let argv: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if argv.is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "you must specify at least 1 command".into(),
        );
    }
    let (_uid, info) = match lookup(&st, &ns, &pod, &container) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(init_pid) = info.init_pid else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("container {container} is not running"),
        );
    };
    let Ok(ws) = ws else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "exec needs a WebSocket upgrade with subprotocol v5.channel.k8s.io".into(),
        );
    };
    let ws = ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"]);
    if ws.selected_protocol().is_none() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "unsupported streaming protocol: offer v5.channel.k8s.io".into(),
        );
    }
    let v5 = ws
        .selected_protocol()
        .is_some_and(|p| p == "v5.channel.k8s.io");
    let tty = flag(&q, "tty");
    let stdin = flag(&q, "stdin");
    let spec = ExecSpec {
        init_pid,
        argv,
        env: info.env.clone(),
        hostname: pod.clone(),
        working_dir: info.working_dir.clone(),
        tty,
    };
    st.metrics.exec_sessions.fetch_add(1, Ordering::Relaxed);
    let runtime = st.runtime.clone();
    ws.on_upgrade(move |socket| async move {
        if let Err(e) = run_exec(socket, &runtime, spec, stdin, v5).await {
            tracing::warn!(error = %e, "exec session ended with an error");
        }
    })
}

enum Out {
    Data(u8, Vec<u8>),
}

async fn run_exec(
    mut socket: WebSocket,
    runtime: &Runtime,
    spec: ExecSpec,
    want_stdin: bool,
    v5: bool,
) -> std::io::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Out>(64);
    let tty = spec.tty;
    let mut child;
    let mut stdin_pipe: Option<tokio::process::ChildStdin> = None;
    let mut master_w: Option<std::fs::File> = None;
    let mut readers = Vec::new();
    if tty {
        let (master, slave) = crate::runtime::shim::open_pty_in(spec.init_pid)?;
        child = runtime.exec_command(&spec, Some(&slave))?;
        drop(slave);
        let mfile = std::fs::File::from(master);
        let reader = mfile.try_clone()?;
        master_w = Some(mfile);
        let tx = tx.clone();
        readers.push(tokio::task::spawn_blocking(move || {
            let mut r = reader;
            let mut buf = vec![0u8; 16384];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break, // EIO once every slave holder closed
                    Ok(n) => {
                        if tx.blocking_send(Out::Data(1, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    } else {
        child = runtime.exec_command(&spec, None)?;
        stdin_pipe = child.stdin.take();
        if !want_stdin {
            stdin_pipe = None; // closed: the command sees EOF at once
        }
        for (ch, mut r) in [
            (
                1u8,
                Box::new(child.stdout.take().unwrap())
                    as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            ),
            (2u8, Box::new(child.stderr.take().unwrap())),
        ] {
            let tx = tx.clone();
            readers.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.send(Out::Data(ch, buf[..n].to_vec())).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }));
        }
    }
    drop(tx);
    let mut exit_code: Option<i32> = None;
    let mut output_done = false;
    loop {
        if exit_code.is_some() && output_done {
            break;
        }
        tokio::select! {
            biased;
            out = rx.recv(), if !output_done => {
                match out {
                    Some(Out::Data(ch, data)) => {
                        let mut frame = Vec::with_capacity(data.len() + 1);
                        frame.push(ch);
                        frame.extend_from_slice(&data);
                        if socket.send(Message::Binary(frame.into())).await.is_err() {
                            let _ = child.start_kill();
                            return Ok(());
                        }
                    }
                    None => output_done = true,
                }
            }
            st = child.wait(), if exit_code.is_none() => {
                let code = st.map(|s| s.code().unwrap_or(137)).unwrap_or(137);
                exit_code = Some(code);
                // With a tty, our master stays open: the reader ends once the slave side is
                // closed by every process, which the helper's exit guarantees.
            }
            msg = socket.recv() => {
                match msg {
                    Some(Ok(Message::Binary(b))) if !b.is_empty() => {
                        match b[0] {
                            0 => {
                                if let Some(w) = master_w.as_mut() {
                                    let _ = w.write_all(&b[1..]);
                                } else if let Some(p) = stdin_pipe.as_mut() {
                                    if p.write_all(&b[1..]).await.is_err() {
                                        stdin_pipe = None;
                                    }
                                }
                            }
                            4 => {
                                #[derive(serde::Deserialize)]
                                #[serde(rename_all = "PascalCase")]
                                struct Size { width: u16, height: u16 }
                                if let (Some(m), Ok(s)) = (master_w.as_ref(), serde_json::from_slice::<Size>(&b[1..])) {
                                    crate::runtime::shim::set_winsize(m.as_raw_fd(), s.width, s.height);
                                }
                            }
                            255 if v5 => {
                                if b.get(1) == Some(&0) {
                                    stdin_pipe = None;
                                    if let Some(w) = master_w.as_mut() {
                                        let _ = w.write_all(&[4]); // ^D
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
    }
    for r in readers {
        let _ = r.await;
    }
    let code = exit_code.unwrap_or(0);
    let mut frame = vec![3u8];
    frame.extend_from_slice(exit_status_json(code).as_bytes());
    let _ = socket.send(Message::Binary(frame.into())).await;
    let _ = socket
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    // Drain until the client acknowledges the close.
    while let Some(Ok(m)) = socket.recv().await {
        if matches!(m, Message::Close(_)) {
            break;
        }
    }
    Ok(())
}
