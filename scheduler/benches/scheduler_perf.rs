//! Scheduler throughput and latency in the style of Kubernetes' scheduler_perf, on fake nodes,
//! through the real API server (in-process, HTTP) and the real volume controller.
//!
//! Scenarios, each on a fresh cluster with `BENCH_NODES` (5,000) fake nodes:
//! * (a) upstream's shape: `BENCH_PODS_A` (2,000) pods, each with a claim pre-bound to a PV on
//!   some node (the volume controller binds them before the pods arrive);
//! * (b) `BENCH_PODS_B` (10,000) pods, each with one WaitForFirstConsumer claim, two free local
//!   PVs per node; the scheduler picks node + PV, the volume controller completes the binds;
//! * (c) the same number of pods without volumes.
//!
//! All objects are created first and the setup's own writes (the volume controller's events and
//! statuses for the new claims) are let finish; then the scheduler starts and the clock runs
//! until every pod is bound. Printed: pods/s, p99 of the attempt latency (pop → bound, PreBind's wait included)
//! and of the end-to-end latency (queued → bound), where each pod's time went (queued, PreBind
//! writes, PreBind's wait for the volume controller, Bind: mean and p99), for durable and relaxed
//! store writes, the API's write requests per pod by verb, resource and code (from its
//! `/metrics`), and the CPU the whole process (API, volume controller, scheduler, fake nodes:
//! they share the machine's cores) spent per pod.
//!
//! How the throughput is counted, and how that differs from upstream: scheduler_perf's
//! `SchedulingThroughput` is sampled while the measured pods are created and scheduled, with the
//! nodes, the scheduler and its informers already up (the "init" pods and the initial lists are
//! outside the measurement), and reports the mean of one-second samples. Here the measured pods
//! are all pending before the scheduler starts, so two figures are printed: pods/s from the
//! scheduler's start (its initial lists of 5,000 nodes and every PV, PVC and pod included), and
//! pods/s from the moment its informers synced to the last pod bound — the one comparable with
//! upstream's (a backlog scheduled at full speed, not a creation rate). The targets are checked
//! against the latter.
//!
//! Knobs: `BENCH_NODES` (5,000), `BENCH_PODS_A` (2,000), `BENCH_PODS_B` (10,000, also (c)),
//! `BENCH_DURABILITY=relaxed|durable|both` (both), `BENCH_SCENARIOS` (letters to run, e.g. `b`),
//! `BENCH_CORE=0` (skip the core-only figures), `BENCH_DEBUG` (print the core-only run's other
//! requests), `BENCH_SHARED=1` (the scheduler, the volume controller and the fake nodes as
//! tasks of the API server's runtime, as `bonsai up` ran them before; by default each runs on
//! a thread and current-thread runtime of its own, `scheduler::dedicated`, with its own
//! client, as `bonsai up` runs them, and the CPU while measured is also printed per component
//! — thread names `bench-sched`, `bench-vc`, `bench-fake`; the API server is the rest).
//!
//! Every placement is verified: all pods bound, each PV's node affinity admits its pod's node,
//! no PV serves two claims.
//!
//! Run: `cargo bench -p scheduler --bench scheduler_perf --no-run`, then the printed binary with
//! `--bench` from `scheduler/` (env vars above scale it down).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use apiserver::http::{serve, ServerConfig};
use apiserver::store::{BackendKind, Durability, Store, StoreConfig};
use futures_util::{stream, StreamExt};
use k8s_openapi::api::core::v1::{
    Container, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, Pod, PodSpec, Volume,
    VolumeNodeAffinity, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use scheduler::fake_nodes::{self, FakeNodesConfig};
use tokio::sync::watch;

const TOKEN: &str = "bench-token";

/// A component's driver, as `start` in `run_scenario` runs it.
type ComponentFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), scheduler::Error>> + Send>>;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    PreBound,
    Wffc,
    NoVolumes,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::PreBound => "(a) pre-bound PVs",
            Scenario::Wffc => "(b) WFFC, 2 PVs/node",
            Scenario::NoVolumes => "(c) no volumes",
        }
    }
}

struct Outcome {
    pods: usize,
    secs: f64,
    p99_attempt_ms: u64,
    p99_e2e_ms: u64,
    verified: Result<(), String>,
    setup_secs: f64,
    /// Writes the store committed while the clock ran (its revision moved by that much).
    writes: u64,
    /// Seconds from the scheduler's informers being synced to the last pod bound.
    synced_secs: f64,
    /// Per-phase (queued, PreBind writes, PreBind wait, Bind) mean and p99, ms.
    phases: [(f64, u64); 4],
    /// Write requests the API answered while the clock ran, by verb, resource and code.
    requests: BTreeMap<String, u64>,
    /// Events created since the clock started, by `component reason`.
    events: BTreeMap<String, u64>,
    /// CPU seconds the whole process (API, volume controller, scheduler, fake nodes) used while
    /// the clock ran.
    cpu_secs: f64,
    /// Components on threads of their own (the default): CPU seconds while measured, by component (thread name).
    cpu_by_component: BTreeMap<String, f64>,
}

/// CPU seconds so far of each thread of this process, summed by thread name (component
/// runtimes are named `bench-<component>`; the API server runs on the main runtime).
fn cpu_by_thread_name() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let name = if comm.starts_with("bench-") {
            comm
        } else if comm.starts_with("tokio-runtime") {
            "api (main runtime)".to_string()
        } else {
            comm.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
                .to_string()
        };
        *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / 100.0;
    }
    out
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn p99(v: &[u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s = v.to_vec();
    s.sort_unstable();
    s[((s.len() as f64 * 0.99).ceil() as usize).clamp(1, s.len()) - 1]
}

fn hostname_affinity(node: &str) -> VolumeNodeAffinity {
    VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: "kubernetes.io/hostname".into(),
                    operator: "In".into(),
                    values: Some(vec![node.into()]),
                }]),
                match_fields: None,
            }],
        }),
    }
}

fn pv(name: &str, node: &str, class: &str, claim: Option<&str>) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.into()),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            local: Some(k8s_openapi::api::core::v1::LocalVolumeSource {
                path: format!("/mnt/disks/{name}"),
                fs_type: None,
            }),
            node_affinity: Some(hostname_affinity(node)),
            claim_ref: claim.map(|c| ObjectReference {
                kind: Some("PersistentVolumeClaim".into()),
                api_version: Some("v1".into()),
                namespace: Some("default".into()),
                name: Some(c.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn pvc(name: &str, class: &str, volume: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity("1Gi".into()))].into()),
                limits: None,
            }),
            storage_class_name: Some(class.into()),
            volume_name: volume.map(String::from),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod(name: &str, claim: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("pause".into()),
                ..Default::default()
            }],
            volumes: claim.map(|c| {
                vec![Volume {
                    name: "data".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: c.into(),
                        read_only: None,
                    }),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        status: None,
    }
}

async fn create_all<K>(api: Api<K>, objs: Vec<K>)
where
    K: kube::Resource
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let pp = PostParams::default();
    let results: Vec<Result<K, kube::Error>> = stream::iter(objs)
        .map(|o| {
            let api = api.clone();
            let pp = pp.clone();
            async move { api.create(&pp, &o).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for r in results {
        r.expect("create");
    }
}

async fn wait_claims_bound(client: &Client, want: usize) {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let list = api.list(&ListParams::default()).await.expect("list pvcs");
        let bound = list
            .items
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .count();
        if bound >= want || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn verify(client: &Client, scenario: Scenario, n: usize) -> Result<(), String> {
    let pods = Api::<Pod>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let unbound = pods
        .items
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
        .count();
    if pods.items.len() != n || unbound > 0 {
        return Err(format!("{} pods, {unbound} unbound", pods.items.len()));
    }
    if scenario == Scenario::NoVolumes {
        return Ok(());
    }
    let pvcs: BTreeMap<String, PersistentVolumeClaim> =
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default")
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .map(|c| (c.metadata.name.clone().unwrap_or_default(), c))
            .collect();
    let pvs: BTreeMap<String, PersistentVolume> = Api::<PersistentVolume>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .into_iter()
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
        .collect();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for p in &pods.items {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let claim = p
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .and_then(|v| v[0].persistent_volume_claim.as_ref())
            .unwrap();
        let c = pvcs.get(&claim.claim_name).ok_or("claim missing")?;
        let vn = c
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .ok_or(format!("claim {} unbound", claim.claim_name))?;
        let v = pvs.get(&vn).ok_or("pv missing")?;
        let labels = [("kubernetes.io/hostname".to_string(), node.clone())].into();
        apiserver::api::check_volume_node_affinity(v, &labels)
            .map_err(|e| format!("pod on {node}, pv {vn}: {e}"))?;
        let cref = v
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| r.name.clone())
            .unwrap_or_default();
        if cref != claim.claim_name {
            return Err(format!("pv {vn} claimRef {cref} != {}", claim.claim_name));
        }
        if !used.insert(vn.clone()) {
            return Err(format!("pv {vn} used twice"));
        }
    }
    Ok(())
}

async fn run_scenario(
    scenario: Scenario,
    durability: Durability,
    nodes: usize,
    pods: usize,
) -> Outcome {
    let setup = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sc = StoreConfig::durable(BackendKind::DEFAULT, dir.path().join("store"));
    sc.durability = durability;
    let store = Store::open(sc).expect("store");
    let server = serve(ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        TOKEN,
        store,
    ))
    .await
    .expect("serve");
    let url = server.url();
    let client = scheduler::client_for(&url, TOKEN).expect("client");
    let (stop, rx) = watch::channel(false);
    let signal = |rx: &watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };

    // Nodes: registered first, then kept alive (slow heartbeats: we measure the scheduler).
    let fcfg = FakeNodesConfig {
        count: nodes,
        prefix: "node-".into(),
        cpu: "32".into(),
        memory: "256Gi".into(),
        lease_renew_interval: Duration::from_secs(60),
        status_interval: Duration::from_secs(600),
        ..Default::default()
    };
    let uids = fake_nodes::register_all(&client, &fcfg)
        .await
        .expect("register nodes");
    let names: Vec<String> = fcfg.names();
    // Where a component runs: a thread of its own (`scheduler::dedicated`), with its client
    // made there, as `bonsai up` runs it; or (BENCH_SHARED) a task of the shared runtime.
    let split = split_components();
    let mut tasks: Vec<tokio::task::JoinHandle<Result<(), scheduler::Error>>> = Vec::new();
    let start = |name: &'static str,
                 make: Box<dyn FnOnce() -> ComponentFuture + Send>|
     -> tokio::task::JoinHandle<Result<(), scheduler::Error>> {
        if split {
            let done = scheduler::dedicated::spawn(name, make);
            tokio::spawn(async move { done.await.unwrap_or(Ok(())) })
        } else {
            tokio::spawn(make())
        }
    };
    let fake_signal = signal(&rx);
    let fake_url = url.clone();
    let fake_client = client.clone();
    tasks.push(start(
        "bench-fake",
        Box::new(move || {
            Box::pin(async move {
                let client = match split {
                    true => scheduler::client_for(&fake_url, TOKEN).expect("client"),
                    false => fake_client,
                };
                fake_nodes::serve(client, fcfg, uids, fake_signal).await
            })
        }),
    ));

    let vc_signal = signal(&rx);
    let vc_url = url.clone();
    tasks.push(start(
        "bench-vc",
        Box::new(move || {
            Box::pin(async move {
                let vc_client = volume_controller::client(&vc_url, TOKEN).expect("vc client");
                volume_controller::run(vc_client, volume_controller::Config::default(), vc_signal)
                    .await
                    .expect("volume controller");
                Ok(())
            })
        }),
    ));

    let sc_api: Api<StorageClass> = Api::all(client.clone());
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some("local-storage".into()),
            ..Default::default()
        },
        provisioner: "kubernetes.io/no-provisioner".into(),
        volume_binding_mode: Some(
            if scenario == Scenario::PreBound {
                "Immediate"
            } else {
                "WaitForFirstConsumer"
            }
            .into(),
        ),
        ..Default::default()
    };
    sc_api
        .create(&PostParams::default(), &class)
        .await
        .expect("class");

    match scenario {
        Scenario::PreBound => {
            let pvs = (0..pods)
                .map(|i| {
                    pv(
                        &format!("pv-{i}"),
                        &names[i % nodes],
                        "local-storage",
                        Some(&format!("claim-{i}")),
                    )
                })
                .collect();
            create_all(Api::all(client.clone()), pvs).await;
            let claims = (0..pods)
                .map(|i| {
                    pvc(
                        &format!("claim-{i}"),
                        "local-storage",
                        Some(&format!("pv-{i}")),
                    )
                })
                .collect();
            create_all(Api::namespaced(client.clone(), "default"), claims).await;
            wait_claims_bound(&client, pods).await;
        }
        Scenario::Wffc => {
            let pvs = (0..2 * nodes)
                .map(|i| pv(&format!("pv-{i}"), &names[i / 2], "local-storage", None))
                .collect();
            create_all(Api::all(client.clone()), pvs).await;
            let claims = (0..pods)
                .map(|i| pvc(&format!("claim-{i}"), "local-storage", None))
                .collect();
            create_all(Api::namespaced(client.clone(), "default"), claims).await;
        }
        Scenario::NoVolumes => {}
    }
    let with_claim = scenario != Scenario::NoVolumes;
    let objs = (0..pods)
        .map(|i| {
            pod(
                &format!("pod-{i}"),
                with_claim.then(|| format!("claim-{i}")).as_deref(),
            )
        })
        .collect();
    create_all(Api::namespaced(client.clone(), "default"), objs).await;
    settle(&client).await;
    let setup_secs = setup.elapsed().as_secs_f64();

    // The measured part: the scheduler starts with every pod pending.
    let metrics = scheduler::MetricsHandle::default();
    let cfg = scheduler::Config {
        metrics: metrics.clone(),
        ..Default::default()
    };
    let sched_url = url.clone();
    let sched_signal = signal(&rx);
    let wall0 = std::time::SystemTime::now();
    let rev0 = revision(&client).await;
    let req0 = write_requests(&client).await;
    let cpu0 = process_cpu_secs();
    let threads0 = cpu_by_thread_name();
    let t0 = Instant::now();
    tasks.push(start(
        "bench-sched",
        Box::new(move || {
            Box::pin(async move {
                let sched_client = scheduler::client_for(&sched_url, TOKEN).expect("client");
                scheduler::run(sched_client, cfg, sched_signal)
                    .await
                    .map_err(|e| scheduler::Error::Client(e.to_string()))
            })
        }),
    ));
    let deadline = t0 + Duration::from_secs(1800);
    // Polls the count only: a snapshot copies every latency sample.
    while (metrics.scheduled() as usize) < pods && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_secs = process_cpu_secs() - cpu0;
    let mut cpu_by_component = cpu_by_thread_name();
    for (k, v) in cpu_by_component.iter_mut() {
        *v -= threads0.get(k).copied().unwrap_or(0.0);
    }
    cpu_by_component.retain(|_, v| *v > 0.0);
    let writes = revision(&client).await.saturating_sub(rev0);
    let mut requests = write_requests(&client).await;
    for (k, n) in requests.iter_mut() {
        *n = n.saturating_sub(req0.get(k).copied().unwrap_or(0));
    }
    requests.retain(|_, n| *n > 0);
    let events = events_since(&client, wall0).await;
    // The driver copies its metrics out every 200 ms: wait for the copy that has the last pod.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let last = metrics.snapshot();
    let verified = verify(&client, scenario, pods).await;
    let _ = stop.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    server.shutdown().await;
    Outcome {
        pods: last.attempts[0] as usize,
        secs,
        p99_attempt_ms: p99(&last.attempt_latencies_ms),
        p99_e2e_ms: p99(&last.scheduled_latencies_ms),
        verified,
        setup_secs,
        phases: phase_summary(&last.phases_ms),
        writes,
        requests,
        events,
        cpu_secs,
        cpu_by_component,
        synced_secs: last
            .synced_at_ms
            .map(|t| last.last_scheduled_at_ms.saturating_sub(t) as f64 / 1000.0)
            .unwrap_or(secs),
    }
}

/// The store's current revision (every committed write moves it by one).
async fn revision(client: &Client) -> u64 {
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await
        .ok()
        .and_then(|l| l.metadata.resource_version)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// Waits until the setup's own writes are over — the volume controller's events and statuses
/// for the claims just created — so that the measured window holds the scheduling work only,
/// as upstream measures on a settled cluster. The fake nodes' lease renewals never stop and are
/// not counted. Gives up after 120 s.
async fn settle(client: &Client) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let count = |m: &BTreeMap<String, u64>| -> u64 {
        m.iter()
            .filter(|(k, _)| !k.contains(" leases "))
            .map(|(_, n)| n)
            .sum()
    };
    let mut last = count(&write_requests(client).await);
    let mut quiet = 0;
    while quiet < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = count(&write_requests(client).await);
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
}

/// `apiserver_request_total` of the write verbs, keyed `verb resource[/subresource] code`.
async fn write_requests(client: &Client) -> BTreeMap<String, u64> {
    let req = hyper::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = client.request_text(req).await.unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, n)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix("=\""))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let verb = label("verb");
        if !matches!(verb.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") {
            continue;
        }
        let sub = label("subresource");
        let resource = if sub.is_empty() {
            label("resource")
        } else {
            format!("{}/{sub}", label("resource"))
        };
        let key = format!("{verb} {resource} {}", label("code"));
        *out.entry(key).or_insert(0) += n.trim().parse::<u64>().unwrap_or(0);
    }
    out
}

/// Events created at or after `since` (whole seconds, as creationTimestamp has), by the
/// component that reported them and their reason.
async fn events_since(client: &Client, since: std::time::SystemTime) -> BTreeMap<String, u64> {
    let since = since
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let list = Api::<k8s_openapi::api::core::v1::Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for e in list {
        let created = e
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(0);
        if created < since {
            continue;
        }
        let component = e
            .source
            .as_ref()
            .and_then(|s| s.component.clone())
            .or(e.reporting_component.clone())
            .unwrap_or_default();
        let key = format!("{component} {}", e.reason.unwrap_or_default());
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`, clock ticks of 10 ms).
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at the state, field 3.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    (ticks(11) + ticks(12)) / 100.0
}

fn phase_summary(samples: &[[u64; 4]]) -> [(f64, u64); 4] {
    let mut out = [(0.0, 0); 4];
    for (i, o) in out.iter_mut().enumerate() {
        let v: Vec<u64> = samples.iter().map(|p| p[i]).collect();
        let mean = v.iter().sum::<u64>() as f64 / v.len().max(1) as f64;
        *o = (mean, p99(&v));
    }
    out
}

/// The core alone, no HTTP: every request completes at once and the "volume controller" binds
/// a claim the moment its PV is written. Shows what the scheduler itself costs per pod.
fn core_only(scenario: Scenario, nodes: usize, pods: usize) -> (f64, usize) {
    use scheduler::core::{Completion, CoreConfig, Millis, Request, Scheduler, WatchEvent};
    let names: Vec<String> = (1..=nodes).map(|i| format!("node-{i}")).collect();
    let mut rv = 1u64;
    let mut next = || {
        rv += 1;
        Some(rv.to_string())
    };
    let mut s = Scheduler::new(CoreConfig::default());
    let now = Millis(1);
    let node_objs: Vec<k8s_openapi::api::core::v1::Node> = names
        .iter()
        .map(|n| k8s_openapi::api::core::v1::Node {
            metadata: ObjectMeta {
                name: Some(n.clone()),
                labels: Some([("kubernetes.io/hostname".to_string(), n.clone())].into()),
                ..Default::default()
            },
            spec: Some(Default::default()),
            status: Some(k8s_openapi::api::core::v1::NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity("32".into())),
                        ("memory".to_string(), Quantity("256Gi".into())),
                        ("pods".to_string(), Quantity("110".into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
        })
        .collect();
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some("local-storage".into()),
            ..Default::default()
        },
        provisioner: "kubernetes.io/no-provisioner".into(),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    };
    let mut pvs: BTreeMap<String, PersistentVolume> = BTreeMap::new();
    let mut pvcs: BTreeMap<String, PersistentVolumeClaim> = BTreeMap::new();
    let bind_claim = |c: &mut PersistentVolumeClaim, volume: &str| {
        c.spec.as_mut().unwrap().volume_name = Some(volume.into());
        c.metadata.annotations = Some(
            [(
                "pv.kubernetes.io/bind-completed".to_string(),
                "yes".to_string(),
            )]
            .into(),
        );
    };
    match scenario {
        Scenario::PreBound => {
            for i in 0..pods {
                let mut v = pv(
                    &format!("pv-{i}"),
                    &names[i % nodes],
                    "local-storage",
                    Some(&format!("claim-{i}")),
                );
                v.metadata.resource_version = next();
                pvs.insert(format!("pv-{i}"), v);
                let mut c = pvc(&format!("claim-{i}"), "local-storage", None);
                bind_claim(&mut c, &format!("pv-{i}"));
                c.metadata.resource_version = next();
                c.metadata.uid = Some(format!("uid-{i}"));
                pvcs.insert(format!("claim-{i}"), c);
            }
        }
        Scenario::Wffc => {
            for i in 0..2 * nodes {
                let mut v = pv(&format!("pv-{i}"), &names[i / 2], "local-storage", None);
                v.metadata.resource_version = next();
                v.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
                    phase: Some("Available".into()),
                    ..Default::default()
                });
                pvs.insert(format!("pv-{i}"), v);
            }
            for i in 0..pods {
                let mut c = pvc(&format!("claim-{i}"), "local-storage", None);
                c.metadata.resource_version = next();
                c.metadata.uid = Some(format!("uid-{i}"));
                pvcs.insert(format!("claim-{i}"), c);
            }
        }
        Scenario::NoVolumes => {}
    }
    let with_claim = scenario != Scenario::NoVolumes;
    let mut pod_objs: BTreeMap<String, Pod> = (0..pods)
        .map(|i| {
            let mut p = pod(
                &format!("pod-{i}"),
                with_claim.then(|| format!("claim-{i}")).as_deref(),
            );
            p.metadata.uid = Some(format!("pod-uid-{i}"));
            p.metadata.resource_version = next();
            (format!("pod-{i}"), p)
        })
        .collect();
    s.handle_node(now, WatchEvent::Restarted(node_objs));
    s.handle_storage_class(now, WatchEvent::Restarted(vec![class]));
    s.handle_csi_storage_capacity(now, WatchEvent::Restarted(vec![]));
    s.handle_persistent_volume(now, WatchEvent::Restarted(pvs.values().cloned().collect()));
    s.handle_persistent_volume_claim(now, WatchEvent::Restarted(pvcs.values().cloned().collect()));
    let t0 = Instant::now();
    s.handle_pod(
        now,
        WatchEvent::Restarted(pod_objs.values().cloned().collect()),
    );
    let mut bound = 0usize;
    while bound < pods {
        if s.poll_timeout().is_some_and(|t| t <= now) {
            s.handle_timeout(now);
        }
        let mut any = false;
        while let Some(o) = s.poll_output() {
            any = true;
            match o.request {
                Request::UpdatePersistentVolume(mut v) => {
                    v.metadata.resource_version = next();
                    let claim = v
                        .spec
                        .as_ref()
                        .unwrap()
                        .claim_ref
                        .as_ref()
                        .unwrap()
                        .name
                        .clone()
                        .unwrap();
                    let name = v.metadata.name.clone().unwrap();
                    s.handle_completion(now, o.id, Completion::Volume(Box::new(v.clone())));
                    s.handle_persistent_volume(now, WatchEvent::Applied(v.clone()));
                    // The volume controller's bind: PV phase Bound (a newer revision), then the claim.
                    v.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
                        phase: Some("Bound".into()),
                        ..Default::default()
                    });
                    v.metadata.resource_version = next();
                    s.handle_persistent_volume(now, WatchEvent::Applied(v));
                    let c = pvcs.get_mut(&claim).unwrap();
                    bind_claim(c, &name);
                    c.metadata.resource_version = next();
                    s.handle_persistent_volume_claim(now, WatchEvent::Applied(c.clone()));
                }
                Request::Bind { name, node, .. } => {
                    let p = pod_objs.get_mut(&name).unwrap();
                    p.spec.as_mut().unwrap().node_name = Some(node);
                    p.metadata.resource_version = next();
                    s.handle_completion(now, o.id, Completion::Done(serde_json::json!({})));
                    s.handle_pod(now, WatchEvent::Applied(p.clone()));
                    bound += 1;
                }
                other => {
                    if std::env::var("BENCH_DEBUG").is_ok() {
                        eprintln!("{other:?}");
                    }
                    s.handle_completion(now, o.id, Completion::Done(serde_json::json!({})))
                }
            }
        }
        if !any && s.poll_timeout().is_none_or(|t| t > now) {
            break;
        }
    }
    (t0.elapsed().as_secs_f64(), bound)
}

/// The 1-minute load average (other processes share the cores).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_default()
}

/// Whether the components run on threads of their own (the default, as `bonsai up` runs them)
/// rather than as tasks of the API server's runtime (`BENCH_SHARED`).
fn split_components() -> bool {
    std::env::var_os("BENCH_SHARED").is_none()
}

fn main() {
    let nodes = env_usize("BENCH_NODES", 5_000);
    let pods_a = env_usize("BENCH_PODS_A", 2_000);
    let pods_b = env_usize("BENCH_PODS_B", 10_000);
    let durabilities: Vec<(&str, Durability)> = match std::env::var("BENCH_DURABILITY").as_deref() {
        Ok("durable") => vec![("durable", Durability::Durable)],
        Ok("relaxed") => vec![("relaxed", Durability::Relaxed)],
        _ => vec![
            ("relaxed", Durability::Relaxed),
            ("durable", Durability::Durable),
        ],
    };
    let only: Option<String> = std::env::var("BENCH_SCENARIOS").ok();
    if std::env::var("BENCH_CORE").as_deref() != Ok("0") {
        println!("core only (no HTTP, instant writes), {nodes} nodes:");
        for (scenario, pods) in [
            (Scenario::PreBound, pods_a),
            (Scenario::Wffc, pods_b),
            (Scenario::NoVolumes, pods_b),
        ] {
            let (secs, bound) = core_only(scenario, nodes, pods);
            println!(
                "  {:<24} {bound:>6} pods in {secs:>6.2} s = {:>8.0} pods/s",
                scenario.label(),
                bound as f64 / secs
            );
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("scheduler_perf: {nodes} fake nodes; (a) {pods_a} pods, (b)/(c) {pods_b} pods");
    println!(
        "{:<24} {:<8} {:>7} {:>9} {:>10} {:>14} {:>12} {:>9}  verified",
        "scenario", "writes", "pods", "seconds", "pods/s", "p99 attempt", "p99 e2e", "setup s"
    );
    for (dname, d) in &durabilities {
        for (scenario, pods, key) in [
            (Scenario::PreBound, pods_a, "a"),
            (Scenario::Wffc, pods_b, "b"),
            (Scenario::NoVolumes, pods_b, "c"),
        ] {
            if only.as_deref().is_some_and(|o| !o.contains(key)) {
                continue;
            }
            let o = rt.block_on(run_scenario(scenario, *d, nodes, pods));
            println!(
                "{:<24} {:<8} {:>7} {:>9.2} {:>10.0} {:>11} ms {:>9} ms {:>9.1}  {}",
                scenario.label(),
                dname,
                o.pods,
                o.secs,
                o.pods as f64 / o.secs,
                o.p99_attempt_ms,
                o.p99_e2e_ms,
                o.setup_secs,
                match &o.verified {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("FAILED: {e}"),
                }
            );
            println!(
                "    CPU of the whole process while measured: {:.1} s = {:.2} ms per pod, {:.2} cores on average",
                o.cpu_secs,
                1000.0 * o.cpu_secs / o.pods.max(1) as f64,
                o.cpu_secs / o.secs
            );
            if split_components() {
                let parts: Vec<String> = o
                    .cpu_by_component
                    .iter()
                    .map(|(k, v)| format!("{k}: {:.3}", 1000.0 * v / o.pods.max(1) as f64))
                    .collect();
                println!("    CPU ms per pod by component: {}", parts.join(", "));
            }
            let by_kind: Vec<String> = o
                .requests
                .iter()
                .map(|(k, n)| format!("{k}: {:.2}", *n as f64 / o.pods.max(1) as f64))
                .collect();
            println!(
                "    write requests per pod (verb resource code): {}",
                by_kind.join(", ")
            );
            let events: Vec<String> = o.events.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            println!(
                "    events created while measured (component reason: count): {}",
                events.join(", ")
            );
            let [q, w, v, b] = o.phases;
            println!(
                "    from the scheduler's informers synced (as upstream measures, scheduler already running): {:.0} pods/s ({:.2} s; initial lists took {:.2} s)",
                o.pods as f64 / o.synced_secs.max(1e-3),
                o.synced_secs,
                (o.secs - o.synced_secs).max(0.0)
            );
            println!(
                "    API writes while measured (all actors: scheduler, volume controller, fake nodes, events): {} = {:.1} per pod, {:.0} writes/s",
                o.writes,
                o.writes as f64 / o.pods.max(1) as f64,
                o.writes as f64 / o.secs
            );
            println!(
                "    per pod, mean/p99 ms: queued {:.0}/{}, PreBind writes {:.0}/{}, PreBind wait (volume controller) {:.0}/{}, Bind {:.0}/{}   (load {})",
                q.0, q.1, w.0, w.1, v.0, v.1, b.0, b.1, load()
            );
        }
    }
    println!("upstream CI floor at 5,000 nodes: (a) ~290 pods/s, (c) 680-810 pods/s; targets: (a) >= 2,900 relaxed, (b) >= 1,000 relaxed / 500 durable");
}
