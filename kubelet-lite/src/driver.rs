//! The kubelet's tokio driver: everything that waits, reads the clock or talks to the API
//! server. It feeds the [`crate::core`] and executes its actions through the mounter, the
//! runtime and the API client.
//!
//! Tasks: the HTTP server ([`crate::server`]); watchers for this node's pods and for all PVCs
//! and PVs (shared maps plus a wake-up channel); the Lease heartbeat and Node status; the static
//! provisioner loop when enabled; and the sync loop, which owns every [`PodState`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use serde_json::json;
use tokio::sync::mpsc;

use crate::cli::KubeletArgs;
use crate::core::pod::{Action, NodeIdentity, PodState};
use crate::core::volumes::{ClusterView, HostPaths, PathKind, PodDirs};
use crate::core::{provisioner, Millis, Mounter};
use crate::mounter::LinuxMounter;
use crate::runtime::{mono_ns, Running, Runtime};
use crate::server::{ContainerInfo, Metrics, PodInfo, ServerState, StartTraces};

/// A driver failure that stops the kubelet.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The token file could not be read.
    #[error("read token file {0}: {1}")]
    Token(PathBuf, #[source] std::io::Error),
    /// The server URL is not a URL.
    #[error("invalid --server URL {0:?}")]
    Url(String),
    /// The API client could not be built.
    #[error("kube client: {0}")]
    Client(#[source] kube::Error),
    /// The HTTP server could not bind.
    #[error("bind kubelet endpoint: {0}")]
    Bind(#[source] std::io::Error),
    /// The Node could not be registered.
    #[error("register node {0}: {1}")]
    Register(String, #[source] kube::Error),
}

pub type Result<T, E = DriverError> = std::result::Result<T, E>;

#[allow(clippy::disallowed_methods)] // the driver is the one place that reads the clock
fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as Millis
}

/// Builds a kube client for `server` with the bearer token and user agent
/// `bonsai-kubelet/<node>`.
pub fn client(server: &str, token: &str, node: &str) -> Result<kube::Client> {
    let uri: axum::http::Uri = server
        .parse()
        .map_err(|_| DriverError::Url(server.into()))?;
    let mut cfg = kube::Config::new(uri);
    cfg.headers.push((
        axum::http::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .map_err(|_| DriverError::Url(server.into()))?,
    ));
    cfg.headers.push((
        axum::http::header::USER_AGENT,
        format!("bonsai-kubelet/{node}")
            .parse()
            .expect("valid user agent"),
    ));
    cfg.read_timeout = None;
    kube::Client::try_from(cfg).map_err(DriverError::Client)
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn read_trim(p: &str) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn node_conditions(
    ready: bool,
    message_override: Option<&str>,
    now: &str,
    since: &str,
) -> serde_json::Value {
    let c = |t: &str, s: &str, r: &str, m: &str| {
        json!({"type": t, "status": s, "reason": r, "message": m,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    };
    json!([
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        if ready {
            c(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            )
        } else {
            c(
                "Ready",
                "False",
                "KubeletNotReady",
                message_override.unwrap_or("node is shutting down"),
            )
        }
    ])
}

fn node_status(
    args: &KubeletArgs,
    port: u16,
    ready: bool,
    now: &str,
    since: &str,
) -> serde_json::Value {
    let alloc_cpu = args
        .allocatable_cpu
        .clone()
        .unwrap_or_else(|| args.cpu.clone());
    let alloc_mem = args
        .allocatable_memory
        .clone()
        .unwrap_or_else(|| args.memory.clone());
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    json!({
        "capacity": {"cpu": args.cpu, "memory": args.memory, "pods": args.max_pods.to_string(), "ephemeral-storage": "10Gi"},
        "allocatable": {"cpu": alloc_cpu, "memory": alloc_mem, "pods": args.max_pods.to_string(), "ephemeral-storage": "10Gi"},
        "conditions": node_conditions(ready, None, now, since),
        "addresses": [{"type": "InternalIP", "address": args.node_ip}, {"type": "Hostname", "address": args.node}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "machineID": read_trim("/etc/machine-id"),
            "systemUUID": format!("bonsai-{}", args.node),
            "bootID": read_trim("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": kernel,
            "osImage": "bonsai node (host binaries, no images)",
            "containerRuntimeVersion": format!("bonsai://{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": "v1.33.0",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": arch()
        }
    })
}

async fn register_node(api: &Api<Node>, args: &KubeletArgs, port: u16) -> Result<Node> {
    let now = crate::core::rfc3339(now_ms());
    let labels = json!({
        "kubernetes.io/hostname": args.node,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch(),
    });
    let status = node_status(args, port, true, &now, &now);
    match api.get_opt(&args.node).await {
        Ok(Some(existing)) => {
            // Re-registration keeps the object (and its UID); labels and status are refreshed.
            let rv = existing.metadata.resource_version.clone();
            let _ = api
                .patch(
                    &args.node,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": labels, "resourceVersion": rv}})),
                )
                .await;
            api.patch_status(
                &args.node,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .map_err(|e| DriverError::Register(args.node.clone(), e))
        }
        _ => {
            let node: Node = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": args.node, "labels": labels},
                "spec": {},
                "status": status,
            }))
            .expect("a well-formed Node");
            match api.create(&PostParams::default(), &node).await {
                Ok(n) => {
                    // Some servers drop status on create: write it through the subresource too.
                    let _ = api
                        .patch_status(
                            &args.node,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": node.status})),
                        )
                        .await;
                    Ok(n)
                }
                Err(e) => Err(DriverError::Register(args.node.clone(), e)),
            }
        }
    }
}

/// Shared, watch-fed views of the cluster.
#[derive(Default)]
struct Cache {
    pods: BTreeMap<String, Pod>, // uid → pod (this node's)
    pvcs: BTreeMap<String, PersistentVolumeClaim>,
    pvs: BTreeMap<String, PersistentVolume>,
    pods_synced: bool,
    /// Pods (uids) changed since the sync loop last looked: only those are synced again.
    dirty: std::collections::BTreeSet<String>,
    /// A claim or volume changed: pods waiting for volumes retry at once.
    volumes_changed: bool,
    /// The pod watch relisted: every pod is looked at again.
    relisted: bool,
    /// uid → when its first watch event arrived ([`mono_ns`]), for the start trace.
    arrived: BTreeMap<String, u64>,
}

enum Wake {
    Changed,
    StatusPatched(String, serde_json::Value),
    Exited(String, String, crate::core::pod::Exit, u32),
    Shutdown,
}

fn spawn_watch<K, F>(
    api: Api<K>,
    cfg: watcher::Config,
    cache: Arc<Mutex<Cache>>,
    tx: mpsc::UnboundedSender<Wake>,
    apply: F,
) where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: Fn(&mut Cache, watcher::Event<K>) + Send + 'static,
{
    tokio::spawn(async move {
        let mut s = watcher(api, cfg).boxed();
        while let Some(ev) = s.next().await {
            match ev {
                Ok(ev) => {
                    {
                        let mut c = cache.lock().unwrap();
                        apply(&mut c, ev);
                    }
                    let _ = tx.send(Wake::Changed);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "watch error; the watcher retries");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
}

fn key_of<K: kube::Resource>(o: &K) -> String {
    let m = o.meta();
    match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name.as_deref().unwrap_or("")),
        None => m.name.clone().unwrap_or_default(),
    }
}

struct StatPaths;
impl HostPaths for StatPaths {
    fn kind(&self, p: &Path) -> PathKind {
        use std::os::unix::fs::FileTypeExt;
        match std::fs::metadata(p) {
            Err(_) => PathKind::Missing,
            Ok(m) if m.is_dir() => PathKind::Directory,
            Ok(m) if m.file_type().is_block_device() => PathKind::BlockDevice,
            Ok(_) => PathKind::Other,
        }
    }
}

/// (pod uid, reason, message): events with the same key are one Event with a count.
type EventKey = (String, String, String);
/// (uid, reason, message) → (namespace, event name, count)
type SeenEvents = tokio::sync::Mutex<BTreeMap<EventKey, (String, String, i32)>>;

struct EventSink {
    api_client: kube::Client,
    node: String,
    /// (uid, reason, message) → (namespace, event name, count)
    seen: Arc<SeenEvents>,
    /// Events recorded during a sync step, sent by [`EventSink::flush`] after the step's status
    /// writes: the status that says Running goes to the API server first, events do not queue
    /// ahead of it (the kubelet's event recorder is asynchronous too).
    queue: Mutex<Vec<QueuedEvent>>,
}

struct QueuedEvent {
    ns: String,
    name: String,
    uid: String,
    type_: String,
    reason: String,
    message: String,
    field_path: Option<String>,
    now: Millis,
}

impl EventSink {
    fn emit(
        &self,
        pod: &Pod,
        type_: &str,
        reason: &str,
        message: String,
        field_path: Option<String>,
    ) {
        self.queue.lock().unwrap().push(QueuedEvent {
            ns: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            type_: type_.to_string(),
            reason: reason.to_string(),
            message,
            field_path,
            now: now_ms(),
        });
    }

    /// Sends the queued events, in the order they were recorded.
    fn flush(&self) {
        let events = std::mem::take(&mut *self.queue.lock().unwrap());
        if events.is_empty() {
            return;
        }
        let client = self.api_client.clone();
        let seen = self.seen.clone();
        let node = self.node.clone();
        tokio::spawn(async move {
            for e in events {
                post_event(&client, &seen, &node, e).await;
            }
        });
    }
}

async fn post_event(client: &kube::Client, seen: &SeenEvents, node: &str, e: QueuedEvent) {
    let QueuedEvent {
        ns,
        name,
        uid,
        type_,
        reason,
        message,
        field_path,
        now,
    } = e;
    let ts = crate::core::rfc3339(now);
    let key = (uid.clone(), reason.clone(), message.clone());
    let mut seen = seen.lock().await;
    if let Some((ens, ename, count)) = seen.get_mut(&key) {
        *count += 1;
        let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ens);
        let _ = api
            .patch(
                ename,
                &PatchParams::default(),
                &Patch::Merge(json!({"count": *count, "lastTimestamp": ts})),
            )
            .await;
        return;
    }
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    let ename = format!(
        "{name}.{:x}",
        now * 1_000_000 + (seen.len() as u64 % 1_000_000)
    );
    let ev = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": ename, "namespace": ns},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name, "uid": uid, "fieldPath": field_path},
        "reason": reason, "message": message, "type": type_,
        "source": {"component": "kubelet", "host": node},
        "firstTimestamp": ts, "lastTimestamp": ts, "count": 1,
        "reportingComponent": "kubelet", "reportingInstance": node
    });
    if let Ok(ev) = serde_json::from_value(ev) {
        if api.create(&PostParams::default(), &ev).await.is_ok() {
            seen.insert(key, (ns, ename, 1));
        }
    }
}

/// Runs the kubelet until SIGTERM/SIGINT (clean node shutdown).
pub async fn run(args: KubeletArgs) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let token = std::fs::read_to_string(&args.token_file)
        .map_err(|e| DriverError::Token(args.token_file.clone(), e))?
        .trim()
        .to_string();
    let client = client(&args.server, &token, &args.node)?;
    let ndir = crate::node::node_dir(&args.data_dir, &args.node);
    let runtime = Runtime {
        // /proc/self/exe, not its target: it still execs this very binary after a rebuild has
        // replaced (deleted) the file on disk.
        helper_exe: args
            .helper_exe
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe")),
        state_dir: ndir.join("containers"),
        log_dir: ndir.join("logs").join("pods"),
        // Forked by the node's kubelet process before its runtime started (see node.rs).
        zygote: crate::runtime::zygote::global(),
    };
    let dirs = PodDirs {
        root: ndir.join("pods"),
    };
    let metrics = Arc::new(Metrics::default());
    let server_pods: Arc<Mutex<BTreeMap<String, PodInfo>>> = Arc::default();
    let start_traces: StartTraces = Arc::default();
    let state = ServerState {
        start_traces: start_traces.clone(),
        node: args.node.clone(),
        token: Arc::new(token.clone()),
        runtime: runtime.clone(),
        pods: server_pods.clone(),
        metrics: metrics.clone(),
    };
    let listener = tokio::net::TcpListener::bind((args.node_ip.as_str(), args.port))
        .await
        .map_err(DriverError::Bind)?;
    let port = listener.local_addr().map_err(DriverError::Bind)?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, crate::server::router(state)).await;
    });

    let nodes: Api<Node> = Api::all(client.clone());
    let node_obj = loop {
        match register_node(&nodes, &args, port).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %e, "node registration failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let node_uid = node_obj.metadata.uid.clone().unwrap_or_default();
    let _ = std::fs::write(ndir.join("kubelet.port"), port.to_string());
    tracing::info!(node = %args.node, port, "node registered");

    let (tx, mut rx) = mpsc::unbounded_channel::<Wake>();
    let cache: Arc<Mutex<Cache>> = Arc::default();
    // This node's pods: a field selector on spec.nodeName, as the kubelet's; if the server does
    // not support it, filter here.
    let pods_api: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={}", args.node);
    let use_selector = pods_api
        .list(&ListParams::default().fields(&selector).limit(1))
        .await
        .is_ok();
    let node_name = args.node.clone();
    let pod_cfg = if use_selector {
        watcher::Config::default().fields(&selector)
    } else {
        watcher::Config::default()
    };
    spawn_watch(
        pods_api.clone(),
        pod_cfg,
        cache.clone(),
        tx.clone(),
        move |c, ev| {
            let mine = |p: &Pod| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name.as_str())
            };
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    c.dirty.insert(uid.clone());
                    if mine(&p) && !c.pods.contains_key(&uid) {
                        c.arrived.insert(uid.clone(), mono_ns());
                    }
                    if mine(&p) {
                        c.pods.insert(uid, p);
                    } else {
                        c.pods.remove(&uid);
                    }
                }
                watcher::Event::Delete(p) => {
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    c.pods.remove(&uid);
                    c.dirty.insert(uid);
                }
                watcher::Event::Init => c.pods.clear(),
                watcher::Event::InitDone => {
                    c.pods_synced = true;
                    c.relisted = true;
                }
            }
        },
    );
    spawn_watch(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
        cache.clone(),
        tx.clone(),
        |c, ev| match ev {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                c.pvcs.insert(key_of(&o), o);
                c.volumes_changed = true;
            }
            watcher::Event::Delete(o) => {
                c.pvcs.remove(&key_of(&o));
                c.volumes_changed = true;
            }
            watcher::Event::Init => c.pvcs.clear(),
            watcher::Event::InitDone => {}
        },
    );
    spawn_watch(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
        cache.clone(),
        tx.clone(),
        |c, ev| match ev {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                c.pvs.insert(key_of(&o), o);
                c.volumes_changed = true;
            }
            watcher::Event::Delete(o) => {
                c.pvs.remove(&key_of(&o));
                c.volumes_changed = true;
            }
            watcher::Event::Init => c.pvs.clear(),
            watcher::Event::InitDone => {}
        },
    );

    // Lease and node status heartbeats.
    {
        let client = client.clone();
        let args = args.clone();
        let metrics = metrics.clone();
        let node_uid = node_uid.clone();
        tokio::spawn(async move { heartbeat(client, args, port, node_uid, metrics).await });
    }
    if let Some(class) = args.static_provisioner.clone() {
        let client = client.clone();
        let args = args.clone();
        let metrics = metrics.clone();
        let cache = cache.clone();
        tokio::spawn(async move {
            provisioner_loop(client, args, class, node_uid, cache, metrics).await
        });
    }
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let int = tokio::signal::ctrl_c();
            tokio::select! {
                _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
                _ = int => {}
            }
            let _ = tx.send(Wake::Shutdown);
        });
    }

    let mut sync = SyncLoop {
        args: args.clone(),
        client: client.clone(),
        runtime,
        dirs,
        cache,
        states: BTreeMap::new(),
        running: BTreeMap::new(),
        last_status: BTreeMap::new(),
        events: EventSink {
            api_client: client.clone(),
            node: args.node.clone(),
            seen: Arc::default(),
            queue: Mutex::default(),
        },
        server_pods,
        start_traces,
        metrics,
        tx: tx.clone(),
        identity: NodeIdentity {
            node_name: args.node.clone(),
            node_ip: args.node_ip.clone(),
        },
        adopted_checked: false,
        shutting_down: false,
        first_seen: BTreeMap::new(),
        dirty: Default::default(),
        in_flight: BTreeMap::new(),
        final_statuses: Vec::new(),
    };
    loop {
        let timeout = sync.step().await;
        if sync.shutting_down && sync.states.values().all(|s| s.finished()) {
            break;
        }
        let wait = timeout
            .map(|t| Duration::from_millis(t.saturating_sub(now_ms()).max(1)))
            .unwrap_or(Duration::from_secs(10));
        tokio::select! {
            w = rx.recv() => if let Some(w) = w { sync.wake(w) },
            _ = tokio::time::sleep(wait) => {}
        }
        while let Ok(w) = rx.try_recv() {
            sync.wake(w);
        }
    }
    sync.finish_shutdown().await;
    Ok(())
}

struct SyncLoop {
    args: KubeletArgs,
    client: kube::Client,
    runtime: Runtime,
    dirs: PodDirs,
    cache: Arc<Mutex<Cache>>,
    states: BTreeMap<String, PodState>,
    running: BTreeMap<(String, String), (i32, u32)>,
    last_status: BTreeMap<String, serde_json::Value>,
    events: EventSink,
    server_pods: Arc<Mutex<BTreeMap<String, PodInfo>>>,
    /// Start stage timestamps per pod (`/debug/pod-start`).
    start_traces: StartTraces,
    metrics: Arc<Metrics>,
    tx: mpsc::UnboundedSender<Wake>,
    identity: NodeIdentity,
    adopted_checked: bool,
    shutting_down: bool,
    first_seen: BTreeMap<String, Millis>,
    /// Pods to sync on the next step for reasons of our own (a container exited, shutdown).
    dirty: std::collections::BTreeSet<String>,
    /// Status writes in flight, so the same status is not sent twice.
    in_flight: BTreeMap<String, serde_json::Value>,
    /// Last statuses of the pods a node shutdown stopped (written before the kubelet exits).
    final_statuses: Vec<(String, String, serde_json::Value)>,
}

fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or("default"),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

impl SyncLoop {
    /// Records a start stage of pod `uid` (the first time only: a restart does not rewrite it).
    fn trace(&self, uid: &str, stages: &[(&'static str, u64)]) {
        let Some(s) = self.states.get(uid) else {
            return;
        };
        let mut t = self.start_traces.lock().unwrap();
        let e = t.entry(pod_key(s.pod())).or_default();
        for (k, v) in stages {
            e.entry(k).or_insert(*v);
        }
    }

    fn wake(&mut self, w: Wake) {
        match w {
            Wake::Shutdown => self.begin_shutdown(),
            Wake::Exited(uid, name, exit, attempt) => self.exited(&uid, &name, exit, attempt),
            Wake::StatusPatched(uid, v) => {
                if v == serde_json::Value::Bool(false) {
                    // Rejected for another reason: retried on the next look at the pod.
                    self.in_flight.remove(&uid);
                    self.last_status.remove(&uid);
                } else if !v.is_null() {
                    // Only the write that carried this value is done; a newer one may still
                    // be in flight.
                    if self.in_flight.get(&uid) == Some(&v) {
                        self.in_flight.remove(&uid);
                    }
                    if self.states.contains_key(&uid) {
                        self.last_status.insert(uid, v);
                    }
                } else {
                    // A 409 on a stale resourceVersion: look at this pod again now. The watch
                    // event with the newer resourceVersion may already have been handled while
                    // the write was in flight, and then nothing else would wake the pod (it
                    // stayed ContainerCreating with its container running).
                    self.in_flight.remove(&uid);
                    self.last_status.remove(&uid);
                    if self.states.contains_key(&uid) {
                        self.dirty.insert(uid);
                    }
                }
            }
            Wake::Changed => {}
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        tracing::info!("node shutting down: stopping pods");
        self.shutting_down = true;
        for (uid, s) in self.states.iter_mut() {
            s.handle_node_shutdown(self.args.shutdown_grace_period_seconds);
            self.dirty.insert(uid.clone());
        }
    }

    async fn finish_shutdown(&mut self) {
        // The pods this node stopped end Failed, as with the kubelet's graceful node shutdown;
        // their container statuses say how each container ended.
        for (ns, name, mut v) in std::mem::take(&mut self.final_statuses) {
            v["phase"] = json!("Failed");
            v["reason"] = json!("Terminated");
            v["message"] = json!("Pod was terminated in response to imminent node shutdown.");
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let _ = api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": v})),
                )
                .await;
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        let now = crate::core::rfc3339(now_ms());
        let _ = nodes
            .patch_status(
                &self.args.node,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"status": {"conditions": node_conditions(false, None, &now, &now)}}),
                ),
            )
            .await;
    }

    fn exited(&mut self, uid: &str, name: &str, exit: crate::core::pod::Exit, attempt: u32) {
        let key = (uid.to_string(), name.to_string());
        if self.running.get(&key).is_some_and(|(_, a)| *a == attempt) {
            self.running.remove(&key);
        }
        if let Some(s) = self.states.get_mut(uid) {
            s.handle_exited(name, exit, now_ms());
            self.dirty.insert(uid.to_string());
        }
    }

    fn watch_exit(&self, uid: String, name: String, run: Running) {
        let tx = self.tx.clone();
        let rt = self.runtime.clone();
        tokio::spawn(async move {
            let attempt = run.attempt;
            let exit = rt.wait(&uid, &name, run.waiter).await;
            let _ = tx.send(Wake::Exited(uid, name, exit, attempt));
        });
    }

    /// One pass: reconcile pods with the cache, poll every pod until quiet, publish statuses.
    /// Returns the earliest time a pod wants to be polled again.
    async fn step(&mut self) -> Option<Millis> {
        let now = now_ms();
        // Take only what changed: the pods the watch touched (or all of them after a relist).
        let (changed, all_uids, pvcs, pvs, synced, volumes_changed, arrived) = {
            let mut c = self.cache.lock().unwrap();
            let mut dirty = std::mem::take(&mut c.dirty);
            if std::mem::take(&mut c.relisted) {
                dirty.extend(c.pods.keys().cloned());
                dirty.extend(self.states.keys().cloned());
            }
            let changed: Vec<(String, Option<Pod>)> = dirty
                .into_iter()
                .map(|u| {
                    let p = c.pods.get(&u).cloned();
                    (u, p)
                })
                .collect();
            let all_uids: Option<std::collections::BTreeSet<String>> =
                (c.pods_synced && !self.adopted_checked).then(|| c.pods.keys().cloned().collect());
            let vc = std::mem::take(&mut c.volumes_changed);
            let arrived = std::mem::take(&mut c.arrived);
            (
                changed,
                all_uids,
                c.pvcs.clone(),
                c.pvs.clone(),
                c.pods_synced,
                vc,
                arrived,
            )
        };
        let mut to_poll: std::collections::BTreeSet<String> = std::mem::take(&mut self.dirty);
        for (uid, pod) in changed {
            match pod {
                Some(p) if !self.shutting_down => match self.states.get_mut(&uid) {
                    Some(s) => {
                        s.handle_pod(p);
                        to_poll.insert(uid);
                    }
                    None => {
                        // A pod that already ended (Succeeded/Failed, e.g. stopped by a node
                        // shutdown) is not run again; it only needs its deletion finished.
                        let terminal = matches!(
                            p.status.as_ref().and_then(|s| s.phase.as_deref()),
                            Some("Succeeded") | Some("Failed")
                        );
                        if terminal && p.metadata.deletion_timestamp.is_none() {
                            continue;
                        }
                        let mut s = PodState::new(p.clone(), now);
                        self.first_seen.insert(uid.clone(), now);
                        // A restarted kubelet adopts the containers that still run.
                        for (name, run) in self.runtime.adoptable(&uid) {
                            tracing::info!(pod = %key_of(&p), container = %name, "adopted running container");
                            s.handle_adopted(&name, now, run.attempt);
                            self.running
                                .insert((uid.clone(), name.clone()), (run.init_pid, run.attempt));
                            self.watch_exit(uid.clone(), name, run);
                        }
                        self.states.insert(uid.clone(), s);
                        if let Some(&t) = arrived.get(&uid) {
                            self.trace(&uid, &[("watch", t), ("sync", mono_ns())]);
                        }
                        to_poll.insert(uid);
                    }
                },
                Some(_) => {}
                None => {
                    if synced {
                        if let Some(s) = self.states.get_mut(&uid) {
                            s.handle_gone();
                            to_poll.insert(uid);
                        }
                    }
                }
            }
        }
        if let Some(all) = all_uids {
            self.adopted_checked = true;
            self.clean_orphans(&all);
        }
        for (uid, s) in self.states.iter_mut() {
            if volumes_changed && s.handle_volumes_changed() {
                to_poll.insert(uid.clone());
            }
            if s.poll_timeout().is_some_and(|t| t <= now) {
                to_poll.insert(uid.clone());
            }
        }
        let labels: BTreeMap<String, String> = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), self.args.node.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), arch().to_string()),
        ]);
        for uid in &to_poll {
            for _round in 0..8 {
                let now = now_ms();
                let Some(state) = self.states.get_mut(uid) else {
                    break;
                };
                let actions = {
                    let view = ClusterView {
                        node_labels: &labels,
                        pvcs: &pvcs,
                        pvs: &pvs,
                        paths: &StatPaths,
                    };
                    state.poll(now, &view, &self.dirs)
                };
                if actions.is_empty() {
                    break;
                }
                for a in actions {
                    self.act(uid, a).await;
                }
            }
        }
        // Publish the statuses of the pods looked at, and the server's view of them.
        let mut finished = Vec::new();
        for uid in &to_poll {
            let Some(s) = self.states.get_mut(uid) else {
                continue;
            };
            let p = s.pod().clone();
            let ns = p
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = p.metadata.name.clone().unwrap_or_default();
            let st = s.status(&self.identity, now_ms());
            let finished_now = s.finished();
            let mut info = PodInfo {
                uid: uid.clone(),
                containers: BTreeMap::new(),
            };
            for c in p
                .spec
                .as_ref()
                .map(|s| s.containers.as_slice())
                .unwrap_or(&[])
            {
                let r = self.running.get(&(uid.clone(), c.name.clone()));
                let cs = st
                    .container_statuses
                    .as_ref()
                    .and_then(|v| v.iter().find(|x| x.name == c.name));
                let started_before = cs.is_some_and(|cs| cs.container_id.is_some());
                let attempt = cs
                    .and_then(|cs| cs.container_id.as_deref())
                    .and_then(|id| id.rsplit('-').next())
                    .and_then(|a| a.parse().ok());
                info.containers.insert(
                    c.name.clone(),
                    ContainerInfo {
                        init_pid: r.map(|(pid, _)| *pid),
                        attempt: if started_before { attempt } else { None },
                        waiting_reason: cs
                            .and_then(|cs| cs.state.as_ref())
                            .and_then(|s| s.waiting.as_ref())
                            .and_then(|w| w.reason.clone())
                            .unwrap_or_default(),
                        env: c
                            .env
                            .clone()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|e| (e.name, e.value.unwrap_or_default()))
                            .collect(),
                        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
                    },
                );
            }
            if st.phase.as_deref() == Some("Running") {
                if let Some(t0) = self.first_seen.remove(uid) {
                    self.metrics
                        .pod_start_ms_sum
                        .fetch_add(now_ms().saturating_sub(t0), Ordering::Relaxed);
                    self.metrics.pod_start_count.fetch_add(1, Ordering::Relaxed);
                }
            }
            {
                let mut table = self.server_pods.lock().unwrap();
                if finished_now {
                    table.remove(&format!("{ns}/{name}"));
                } else {
                    table.insert(format!("{ns}/{name}"), info);
                }
            }
            if finished_now {
                if self.shutting_down && p.metadata.deletion_timestamp.is_none() {
                    let v = serde_json::to_value(&st).unwrap_or_default();
                    self.final_statuses.push((ns, name, v));
                }
                finished.push(uid.clone());
                continue;
            }
            if self.shutting_down {
                continue;
            }
            let v = serde_json::to_value(&st).unwrap_or_default();
            if self.last_status.get(uid) == Some(&v) || self.in_flight.get(uid) == Some(&v) {
                continue;
            }
            // Status writes run concurrently; each names the resourceVersion it read. A 409
            // means our copy is stale: the watch delivers the new one and marks the pod dirty.
            self.in_flight.insert(uid.clone(), v.clone());
            let first_running = st.phase.as_deref() == Some("Running")
                && !self
                    .start_traces
                    .lock()
                    .unwrap()
                    .get(&format!("{ns}/{name}"))
                    .is_some_and(|t| t.contains_key("status_sent"));
            if first_running {
                self.trace(uid, &[("status_sent", mono_ns())]);
            }
            let traces = first_running.then(|| (self.start_traces.clone(), format!("{ns}/{name}")));
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let rv = p.metadata.resource_version.clone();
            let tx = self.tx.clone();
            let uid = uid.clone();
            tokio::spawn(async move {
                let body = json!({"metadata": {"resourceVersion": rv}, "status": v});
                match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(body))
                    .await
                {
                    Ok(_) => {
                        if let Some((t, key)) = traces {
                            if let Some(e) = t.lock().unwrap().get_mut(&key) {
                                e.entry("status_done").or_insert(mono_ns());
                            }
                        }
                        let _ = tx.send(Wake::StatusPatched(uid, v));
                    }
                    Err(e) => {
                        tracing::debug!(pod = %name, error = %e, "status update not applied");
                        // Null: a conflict, retried at once with the newest copy; false: any
                        // other failure, retried on the next look at the pod (no hot loop on
                        // a rejected status).
                        let conflict = matches!(&e, kube::Error::Api(s) if s.code == 409);
                        let marker = if conflict {
                            serde_json::Value::Null
                        } else {
                            serde_json::Value::Bool(false)
                        };
                        let _ = tx.send(Wake::StatusPatched(uid, marker));
                    }
                }
            });
        }
        // Events after the status writes (see EventSink::queue).
        self.events.flush();
        for uid in finished {
            if let Some(s) = self.states.get(&uid) {
                self.start_traces.lock().unwrap().remove(&pod_key(s.pod()));
            }
            self.states.remove(&uid);
            self.last_status.remove(&uid);
            self.in_flight.remove(&uid);
        }
        let running_pods = self
            .running
            .keys()
            .map(|(u, _)| u)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        self.metrics
            .running_pods
            .store(running_pods as u64, Ordering::Relaxed);
        self.metrics
            .running_containers
            .store(self.running.len() as u64, Ordering::Relaxed);
        self.states.values().filter_map(|s| s.poll_timeout()).min()
    }

    /// Leftovers of pods this node no longer has (a previous boot, a crash): stop their
    /// containers and remove their directories — never crossing a mount point.
    fn clean_orphans(&mut self, pods: &std::collections::BTreeSet<String>) {
        for dir in [&self.runtime.state_dir, &self.dirs.root] {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let uid = e.file_name().to_string_lossy().into_owned();
                if pods.contains(&uid) || self.states.contains_key(&uid) {
                    continue;
                }
                for (_, run) in self.runtime.adoptable(&uid) {
                    self.runtime.signal(&run, true);
                }
                if let Err(err) = crate::mounter::remove_tree_no_mounts(&e.path()) {
                    tracing::warn!(error = %err, "orphaned pod directory kept");
                }
            }
        }
    }

    async fn act(&mut self, uid: &str, action: Action) {
        let now = now_ms();
        match action {
            Action::Mount { ops, .. } => {
                let t0 = mono_ns();
                let mut m = LinuxMounter;
                let r = ops
                    .iter()
                    .try_for_each(|op| m.apply(op))
                    .map_err(|e| e.to_string());
                if r.is_ok() {
                    self.trace(uid, &[("mount_begin", t0), ("mount_end", mono_ns())]);
                    self.metrics.mounts_ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.metrics.mounts_failed.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = &r {
                    if let Some(s) = self.states.get(uid) {
                        self.events.emit(
                            s.pod(),
                            "Warning",
                            "FailedMount",
                            format!("MountVolume.SetUp failed: {e}"),
                            None,
                        );
                    }
                }
                if let Some(s) = self.states.get_mut(uid) {
                    s.handle_mounted(r, now);
                }
            }
            Action::Start { launch, .. } => {
                let name = launch.container.clone();
                match self.runtime.start(&launch).await {
                    Ok(run) => {
                        let t = run.timings;
                        self.trace(
                            uid,
                            &[
                                ("start_begin", t.begin),
                                ("spawned", t.spawned),
                                ("shim_entry", t.shim_entry),
                                ("shim_namespaces", t.shim_namespaces),
                                ("shim_root", t.shim_root),
                                ("init_pivoted", t.init_pivoted),
                                ("init_exec", t.init_exec),
                                ("shim_init", t.shim_init),
                                ("started", t.reported),
                            ],
                        );
                        self.metrics
                            .containers_started
                            .fetch_add(1, Ordering::Relaxed);
                        self.running
                            .insert((uid.to_string(), name.clone()), (run.init_pid, run.attempt));
                        if let Some(s) = self.states.get_mut(uid) {
                            s.handle_started(&name, Ok(()), now_ms());
                            self.events.emit(
                                s.pod(),
                                "Normal",
                                "Started",
                                format!("Started container {name}"),
                                Some(format!("spec.containers{{{name}}}")),
                            );
                        }
                        self.watch_exit(uid.to_string(), name, run);
                    }
                    Err(e) => {
                        self.metrics
                            .container_start_errors
                            .fetch_add(1, Ordering::Relaxed);
                        if let Some(s) = self.states.get_mut(uid) {
                            self.events.emit(
                                s.pod(),
                                "Warning",
                                "Failed",
                                format!("Error: {e}"),
                                Some(format!("spec.containers{{{name}}}")),
                            );
                            s.handle_started(&name, Err(e.to_string()), now_ms());
                        }
                    }
                }
            }
            Action::Signal {
                container, kill, ..
            } => {
                if let Some((pid, _)) = self.running.get(&(uid.to_string(), container)) {
                    let sig = if kill {
                        nix::libc::SIGKILL
                    } else {
                        nix::libc::SIGTERM
                    };
                    // SAFETY: kill(2) on a container init this kubelet tracks.
                    unsafe { nix::libc::kill(*pid, sig) };
                }
            }
            Action::Teardown { ops, .. } => {
                let mut m = LinuxMounter;
                let r = ops
                    .iter()
                    .try_for_each(|op| m.apply(op))
                    .map_err(|e| e.to_string());
                if let Err(e) = &r {
                    tracing::warn!(pod = uid, error = %e, "teardown failed; retrying");
                }
                if let Some(s) = self.states.get_mut(uid) {
                    let p = s.pod().clone();
                    self.runtime.remove_pod(
                        p.metadata.namespace.as_deref().unwrap_or("default"),
                        p.metadata.name.as_deref().unwrap_or(""),
                        uid,
                    );
                    s.handle_torn_down(r);
                }
            }
            Action::Event {
                type_,
                reason,
                message,
                field_path,
                ..
            } => {
                if let Some(s) = self.states.get(uid) {
                    self.events
                        .emit(s.pod(), type_, reason, message, field_path);
                }
            }
            Action::FinishDeletion {
                namespace,
                name,
                uid,
            } => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                let dp = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                tokio::spawn(async move {
                    if let Err(e) = api.delete(&name, &dp).await {
                        tracing::debug!(pod = %name, error = %e, "final delete failed");
                    }
                });
            }
        }
    }
}

async fn heartbeat(
    client: kube::Client,
    args: KubeletArgs,
    port: u16,
    node_uid: String,
    metrics: Arc<Metrics>,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(client.clone());
    let renew = Duration::from_millis((args.lease_duration_seconds as u64 * 1000 / 4).max(200));
    let since = crate::core::rfc3339(now_ms());
    let mut status_tick = 0u32;
    loop {
        let now = k8s_openapi::jiff::Timestamp::now();
        let micro = now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
        match leases.get_opt(&args.node).await {
            Ok(Some(l)) => {
                let body = json!({
                    "metadata": {"resourceVersion": l.metadata.resource_version},
                    "spec": {"holderIdentity": args.node, "leaseDurationSeconds": args.lease_duration_seconds, "renewTime": micro}
                });
                if leases
                    .patch(&args.node, &PatchParams::default(), &Patch::Merge(body))
                    .await
                    .is_ok()
                {
                    metrics.lease_renewals.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(None) => {
                let lease = json!({
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": args.node, "namespace": "kube-node-lease",
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": args.node, "uid": node_uid}]},
                    "spec": {"holderIdentity": args.node, "leaseDurationSeconds": args.lease_duration_seconds, "renewTime": micro}
                });
                if let Ok(l) = serde_json::from_value::<Lease>(lease) {
                    match leases.create(&PostParams::default(), &l).await {
                        Ok(_) => {
                            metrics.lease_renewals.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(kube::Error::Api(e)) if e.code == 404 => {
                            let ns: Api<k8s_openapi::api::core::v1::Namespace> =
                                Api::all(client.clone());
                            if let Ok(n) = serde_json::from_value(
                                json!({"metadata": {"name": "kube-node-lease"}}),
                            ) {
                                let _ = ns.create(&PostParams::default(), &n).await;
                            }
                        }
                        Err(_) => {}
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "lease read failed"),
        }
        // Node status every fourth beat (the kubelet's nodeStatusReportFrequency is longer; the
        // Lease is the liveness signal).
        if status_tick.is_multiple_of(4) {
            let now = crate::core::rfc3339(now_ms());
            let body = json!({"status": node_status(&args, port, true, &now, &since)});
            if nodes
                .patch_status(&args.node, &PatchParams::default(), &Patch::Merge(body))
                .await
                .is_ok()
            {
                metrics.node_status_updates.fetch_add(1, Ordering::Relaxed);
            }
        }
        status_tick = status_tick.wrapping_add(1);
        tokio::time::sleep(renew).await;
    }
}

async fn provisioner_loop(
    client: kube::Client,
    args: KubeletArgs,
    class: String,
    node_uid: String,
    cache: Arc<Mutex<Cache>>,
    metrics: Arc<Metrics>,
) {
    let pvs_api: Api<PersistentVolume> = Api::all(client.clone());
    let scs: Api<StorageClass> = Api::all(client.clone());
    let period = Duration::from_millis(args.discovery_period_ms.max(100));
    loop {
        tokio::time::sleep(period).await;
        let sc = match scs.get_opt(&class).await {
            Ok(Some(sc)) => sc,
            Ok(None) => {
                tracing::debug!(class = %class, "static provisioner: StorageClass not found; skipping");
                continue;
            }
            Err(_) => continue,
        };
        let reclaim = sc.reclaim_policy.clone().unwrap_or_else(|| "Delete".into());
        if reclaim != "Delete" && reclaim != "Retain" {
            tracing::warn!(class = %class, "unsupported reclaim policy {reclaim}");
            continue;
        }
        let cfg = provisioner::Config {
            node_name: args.node.clone(),
            node_uid: node_uid.clone(),
            hostname: args.node.clone(),
            class: class.clone(),
            host_dir: provisioner::DISCOVERY_DIR.into(),
            reclaim_policy: reclaim,
            mount_options: sc.mount_options.clone().unwrap_or_default(),
        };
        let pvs = cache.lock().unwrap().pvs.clone();
        // Deleter first, as upstream: clean released volumes, then delete their PVs.
        let mut cleaning = Vec::new();
        for name in provisioner::released_to_clean(&cfg, &pvs) {
            let pv = &pvs[&name];
            let path = pv
                .spec
                .as_ref()
                .and_then(|s| s.local.as_ref())
                .map(|l| PathBuf::from(&l.path));
            cleaning.push(name.clone());
            if let Some(path) = path {
                if let Err(e) = clean_contents(&path) {
                    tracing::warn!(pv = %name, error = %e, "cleanup failed; PV kept");
                    continue;
                }
            }
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pv.metadata.uid.clone(),
                    resource_version: pv.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            let _ = pvs_api.delete(&name, &dp).await;
        }
        let mounts = crate::mounter::mount_points().unwrap_or_default();
        let mut entries = Vec::new();
        if let Ok(rd) = std::fs::read_dir(provisioner::DISCOVERY_DIR) {
            for e in rd.flatten() {
                let p = e.path();
                let is_dir = p.is_dir();
                entries.push(provisioner::Entry {
                    name: e.file_name().to_string_lossy().into_owned(),
                    is_dir,
                    is_mount_point: mounts.contains(&p),
                    capacity_bytes: if is_dir {
                        crate::mounter::fs_total_bytes(&p).unwrap_or(0)
                    } else {
                        0
                    },
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let d = provisioner::discover(&cfg, &entries, &pvs, &cleaning);
        for s in d.skipped {
            tracing::debug!("static provisioner: {s}");
        }
        for pv in d.create {
            match pvs_api.create(&PostParams::default(), &pv).await {
                Ok(_) => {
                    metrics.pvs_provisioned.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(pv = ?pv.metadata.name, "static provisioner created PV");
                }
                Err(e) => tracing::debug!(error = %e, "PV create failed"),
            }
        }
    }
}

/// Removes everything inside a volume's root (the volume itself, a mount point, stays).
fn clean_contents(path: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(path)?.flatten() {
        let p = e.path();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            crate::mounter::remove_tree_no_mounts(&p).map_err(std::io::Error::other)?;
        } else {
            std::fs::remove_file(&p)?;
        }
    }
    Ok(())
}
