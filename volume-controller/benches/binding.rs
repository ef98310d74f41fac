//! Binding benchmark (issue 5): 10,000 Immediate claims and 10,000 PVs of varied sizes through
//! the real API server (in-process, HTTP on 127.0.0.1, sled store in a temp dir) and the
//! volume controller's real driver. Prints figures; asserts nothing about speed.
//!
//! - burst: all PVs created and Available, then every claim created at once (64 concurrent
//!   creators); throughput = claims / (first create → last Bound).
//! - backlog: as burst, but the claims are created while no controller runs; then a
//!   controller starts (initial lists included) and binds them all — binding alone, with
//!   the API server serving nothing else;
//! - steady: claims created at a fixed rate (500/s); latency per claim from the create request
//!   to the watch showing phase Bound; p50/p99.
//!
//! Each runs with durable writes (fdatasync per group commit) and relaxed writes.
//!
//! So that the limit is visible, every run prints a per-phase breakdown: how long creating
//! took and how long binding took, the writes/s the API server committed (store statistics)
//! and how many of them the controller sent, the controller's requests in flight (peak and
//! mean), and CPU seconds by thread group over the binding window. The API server, the
//! controller and the bench's own client each run on their own tokio runtime (threads named
//! `api`, `vc`, `bench`; the store's committer thread is `bonsai-store-commit`), so the CPU column
//! says who used the two cores.
//!
//! `cargo bench -p volume-controller --bench binding`. Environment:
//! - `BONSAI_BENCH_CLAIMS=N` (10,000) — claims and PVs;
//! - `BONSAI_BENCH_RATE=R` (500) — the steady arrival rate;
//! - `BONSAI_BENCH_CONCURRENCY=C` (64) — the bench's concurrent creators;
//! - `BONSAI_BENCH_VC_INFLIGHT=M` — the controller's `Config::max_inflight` (default 256);
//! - `BONSAI_BENCH_ONLY=burst,backlog,steady,durable,relaxed,core` — a subset (comma separated; a
//!   run happens when its kind and durability are both selected or neither kind/durability
//!   is named);
//! - `BONSAI_BENCH_CORE_ONLY=1` — only the in-memory core figure.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiserver::http::{serve, ServerConfig, ServerHandle};
use apiserver::store::{BackendKind, Durability, Store, StoreConfig};
use futures_util::{stream, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use tokio::runtime::Runtime;
use tokio::sync::watch as tokio_watch;

const TOKEN: &str = "bench-token-0123456789";

fn runtime(name: &str, workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// One cluster under test: the API server on its runtime, the controller on its own.
struct Bench {
    _dir: tempfile::TempDir,
    url: String,
    store: Store,
    api_rt: Runtime,
    vc_rt: Runtime,
    server: ServerHandle,
    /// The running controller: its stop signal and task.
    vc: Option<(tokio_watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
    metrics: Arc<volume_controller::Metrics>,
}

/// The bench's own client of `b`'s API server (made inside the runtime it will run on).
fn bench_client(rt: &Runtime, b: &Bench) -> kube::Client {
    let _g = rt.enter();
    volume_controller::client(&b.url, TOKEN).unwrap()
}

fn start(durability: Durability) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let mut sc = StoreConfig::durable(BackendKind::DEFAULT, dir.path().join("store"));
    sc.durability = durability;
    sc.watcher_buffer = 1 << 16;
    let store = Store::open(sc).expect("store");
    let api_rt = runtime("api", 2);
    let server = api_rt
        .block_on(serve(ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            TOKEN,
            store.clone(),
        )))
        .expect("serve");
    let url = server.url();
    let vc_rt = runtime("vc", 2);
    let metrics = Arc::new(volume_controller::Metrics::new());
    let mut b = Bench {
        _dir: dir,
        url,
        store,
        api_rt,
        vc_rt,
        server,
        vc: None,
        metrics,
    };
    b.start_controller();
    b
}

impl Bench {
    /// Starts a controller (a fresh core: it lists everything, as after a restart).
    fn start_controller(&mut self) {
        let (stop, rx) = tokio_watch::channel(false);
        let mut config = volume_controller::Config::default();
        if let Some(n) = std::env::var("BONSAI_BENCH_VC_INFLIGHT")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            config.max_inflight = n;
        }
        config.metrics = self.metrics.clone();
        let client = {
            let _g = self.vc_rt.enter();
            volume_controller::client(&self.url, TOKEN).unwrap()
        };
        let mut rx2 = rx.clone();
        let task = self.vc_rt.spawn(async move {
            let sig = async move {
                let _ = rx2.wait_for(|v| *v).await;
            };
            volume_controller::run(client, config, sig).await.unwrap();
        });
        self.vc = Some((stop, task));
    }

    fn stop_controller(&mut self) {
        if let Some((stop, task)) = self.vc.take() {
            let _ = stop.send(true);
            let _ = self
                .vc_rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        }
    }
}

impl Bench {
    fn stop(mut self) {
        self.stop_controller();
        self.vc_rt.shutdown_timeout(Duration::from_secs(5));
        self.api_rt.block_on(self.server.shutdown());
        self.api_rt.shutdown_timeout(Duration::from_secs(5));
    }

    fn snapshot(&self) -> Snapshot {
        let m = &self.metrics;
        let stats = self.store.stats();
        Snapshot {
            at: Instant::now(),
            cpu: thread_cpu(),
            store_writes: stats.writes,
            store_groups: stats.groups,
            vc_writes: m.writes.load(Ordering::Relaxed),
            vc_events: m.events.load(Ordering::Relaxed),
            vc_conflicts: m.conflicts.load(Ordering::Relaxed),
            vc_resyncs: m.resyncs.load(Ordering::Relaxed),
            vc_syncs: m.claim_syncs.load(Ordering::Relaxed)
                + m.volume_syncs.load(Ordering::Relaxed)
                + m.protection_syncs.load(Ordering::Relaxed),
        }
    }
}

/// CPU seconds used so far by this process's threads, grouped by thread name (`api`, `vc`,
/// `bench`, the store's threads, `other`), from /proc/self/task/*/stat (utime + stime). Threads
/// that ended are lost, so snapshots are taken while the runtimes are up.
fn thread_cpu() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        // Fields after the parenthesised comm: state is field 3; utime 14, stime 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 13 {
            continue;
        }
        let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
        let comm = comm.trim();
        let group = match comm {
            "api" | "vc" | "bench" => comm.to_string(),
            c if c.starts_with("bonsai-store") => "store".to_string(),
            c if c.starts_with("sled") => "sled".to_string(),
            _ => "other".to_string(),
        };
        // USER_HZ is 100 on Linux.
        *out.entry(group).or_insert(0.0) += ticks / 100.0;
    }
    out
}

struct Snapshot {
    at: Instant,
    cpu: BTreeMap<String, f64>,
    store_writes: u64,
    store_groups: u64,
    vc_writes: u64,
    vc_events: u64,
    vc_conflicts: u64,
    vc_resyncs: u64,
    vc_syncs: u64,
}

/// The breakdown between two snapshots, as printed lines.
fn breakdown(a: &Snapshot, b: &Snapshot, inflight: &InflightSampler) -> String {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let writes = b.store_writes - a.store_writes;
    let groups = (b.store_groups - a.store_groups).max(1);
    let vc = b.vc_writes - a.vc_writes;
    let mut cpu = String::new();
    let mut total = 0.0;
    for (k, v) in &b.cpu {
        let d = v - a.cpu.get(k).copied().unwrap_or(0.0);
        total += d;
        cpu.push_str(&format!(" {k} {d:.1}s"));
    }
    format!(
        "    API: {writes} writes in {secs:.2}s = {:.0} writes/s ({:.1} writes per group commit); \
         controller sent {vc} writes ({:.0}/s), {} events, {} conflicts, {} resyncs, {} syncs; \
         controller requests in flight: peak {} mean {:.0}\n    \
         CPU over the window:{cpu} = {total:.1}s of {:.1} core-seconds ({:.0}% of 2 cores)",
        writes as f64 / secs,
        writes as f64 / groups as f64,
        vc as f64 / secs,
        b.vc_events - a.vc_events,
        b.vc_conflicts - a.vc_conflicts,
        b.vc_resyncs - a.vc_resyncs,
        b.vc_syncs - a.vc_syncs,
        inflight.peak.load(Ordering::Relaxed),
        inflight.mean(),
        secs * 2.0,
        100.0 * total / (secs * 2.0),
    )
}

/// Samples the controller's in-flight gauge every 5 ms while running.
struct InflightSampler {
    peak: AtomicU64,
    sum: AtomicU64,
    n: AtomicU64,
    on: AtomicBool,
}

impl InflightSampler {
    fn spawn(metrics: Arc<volume_controller::Metrics>) -> Arc<InflightSampler> {
        let s = Arc::new(InflightSampler {
            peak: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            n: AtomicU64::new(0),
            on: AtomicBool::new(true),
        });
        let s2 = s.clone();
        tokio::spawn(async move {
            while s2.on.load(Ordering::Relaxed) {
                let v = metrics.inflight.load(Ordering::Relaxed);
                s2.peak.fetch_max(v, Ordering::Relaxed);
                s2.sum.fetch_add(v, Ordering::Relaxed);
                s2.n.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        s
    }
    fn stop(&self) {
        self.on.store(false, Ordering::Relaxed);
    }
    fn mean(&self) -> f64 {
        self.sum.load(Ordering::Relaxed) as f64 / self.n.load(Ordering::Relaxed).max(1) as f64
    }
}

fn gi(i: usize) -> usize {
    // Varied sizes 1..=100 Gi; claim i and PV i share the distribution, so every claim fits.
    i % 100 + 1
}

fn pv(i: usize) -> PersistentVolume {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("pv-{i:05}")},
        "spec": {
            "capacity": {"storage": format!("{}Gi", gi(i))},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "fast",
            "local": {"path": format!("/mnt/disks/{i}")},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [format!("node-{}", i % 10 + 1)]}
            ]}]}}
        }
    }))
    .unwrap()
}

fn pvc(i: usize) -> PersistentVolumeClaim {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("claim-{i:05}"), "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": format!("{}Gi", gi(i))}},
            "storageClassName": "fast"
        }
    }))
    .unwrap()
}

type Seen = Arc<Mutex<BTreeMap<String, Instant>>>;

/// Watches objects of kind `K` and records when each was first seen in phase `phase`.
fn phase_recorder<K>(api: Api<K>, phase: &'static str) -> (Seen, tokio::task::JoinHandle<()>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K: HasPhase,
{
    let seen: Seen = Arc::new(Mutex::new(BTreeMap::new()));
    let s = seen.clone();
    let h = tokio::spawn(async move {
        let mut w = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = w.next().await {
            let obj = match ev {
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => o,
                _ => continue,
            };
            if obj.phase() == Some(phase) {
                let name = obj.meta().name.clone().unwrap_or_default();
                s.lock().unwrap().entry(name).or_insert_with(Instant::now);
            }
        }
    });
    (seen, h)
}

trait HasPhase {
    fn phase(&self) -> Option<&str>;
}
impl HasPhase for PersistentVolume {
    fn phase(&self) -> Option<&str> {
        self.status.as_ref().and_then(|s| s.phase.as_deref())
    }
}
impl HasPhase for PersistentVolumeClaim {
    fn phase(&self) -> Option<&str> {
        self.status.as_ref().and_then(|s| s.phase.as_deref())
    }
}

async fn wait_count(seen: &Seen, n: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if seen.lock().unwrap().len() >= n {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn concurrency() -> usize {
    std::env::var("BONSAI_BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

/// The StorageClass and `n` PVs, created with the bench's concurrency; returns when the
/// controller has made every PV Available. Prints its own phase line.
async fn setup_volumes(client: &kube::Client, n: usize) {
    let sc: StorageClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "fast"},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate"
    }))
    .unwrap();
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &sc)
        .await
        .unwrap();
    let pvs = Api::<PersistentVolume>::all(client.clone());
    let (avail, rec) = phase_recorder(pvs.clone(), "Available");
    let t0 = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let pvs = pvs.clone();
            async move {
                pvs.create(&PostParams::default(), &pv(i))
                    .await
                    .expect("create pv")
            }
        })
        .buffer_unordered(concurrency())
        .for_each(|_| async {})
        .await;
    let created = t0.elapsed().as_secs_f64();
    let ok = wait_count(&avail, n, Duration::from_secs(600)).await;
    let all = t0.elapsed().as_secs_f64();
    rec.abort();
    println!(
        "  setup: {n} PVs created in {created:.2}s ({:.0} creates/s, {} concurrent); all Available after {all:.2}s{}",
        n as f64 / created.max(1e-9),
        concurrency(),
        if ok { "" } else { " (TIMEOUT)" }
    );
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
    v[idx.min(v.len() - 1)]
}

fn latencies(sent: &BTreeMap<String, Instant>, seen: &BTreeMap<String, Instant>) -> Vec<f64> {
    sent.iter()
        .filter_map(|(k, t0)| {
            seen.get(k)
                .map(|t1| t1.saturating_duration_since(*t0).as_secs_f64() * 1000.0)
        })
        .collect()
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn burst(rt: &Runtime, durability: Durability, n: usize) {
    let b = start(durability);
    println!("burst {durability:?} (load before: {})", load());
    let client = bench_client(rt, &b);
    rt.block_on(async {
        setup_volumes(&client, n).await;
        let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
        let (seen, rec) = phase_recorder(claims.clone(), "Bound");
        let sent = Arc::new(Mutex::new(BTreeMap::new()));
        let inflight = InflightSampler::spawn(b.metrics.clone());
        let s0 = b.snapshot();
        let t0 = s0.at;
        stream::iter(0..n)
            .map(|i| {
                let (claims, sent) = (claims.clone(), sent.clone());
                async move {
                    let c = pvc(i);
                    sent.lock()
                        .unwrap()
                        .insert(c.metadata.name.clone().unwrap(), Instant::now());
                    claims
                        .create(&PostParams::default(), &c)
                        .await
                        .expect("create pvc");
                }
            })
            .buffer_unordered(concurrency())
            .for_each(|_| async {})
            .await;
        let created = t0.elapsed().as_secs_f64();
        let ok = wait_count(&seen, n, Duration::from_secs(600)).await;
        let s1 = b.snapshot();
        inflight.stop();
        rec.abort();
        let seen_map = seen.lock().unwrap().clone();
        let first = seen_map.values().min().copied().unwrap_or(t0);
        let last = seen_map.values().max().copied().unwrap_or(t0);
        let elapsed = last.saturating_duration_since(t0).as_secs_f64();
        let mut lat = latencies(&sent.lock().unwrap(), &seen_map);
        println!(
            "  claims: {n} created in {created:.2}s ({:.0} creates/s, {} concurrent, while binding)\n  \
             bind: first Bound after {:.0} ms, all {} Bound after {elapsed:.2}s{} => {:.0} binds/s; \
             latency create->Bound p50 {:.0} ms p99 {:.0} ms\n{}",
            n as f64 / created.max(1e-9),
            concurrency(),
            first.saturating_duration_since(t0).as_secs_f64() * 1000.0,
            seen_map.len(),
            if ok { "" } else { " (TIMEOUT)" },
            seen_map.len() as f64 / elapsed.max(1e-9),
            pct(&mut lat, 50.0),
            pct(&mut lat, 99.0),
            breakdown(&s0, &s1, &inflight),
        );
    });
    b.stop();
}

/// Burst with the claims created while no controller runs, then a controller started: the
/// time from its start to the last Bound is binding alone (its initial lists included),
/// with the API server serving nothing but the controller.
fn backlog(rt: &Runtime, durability: Durability, n: usize) {
    let mut b = start(durability);
    println!("backlog {durability:?} (load before: {})", load());
    let client = bench_client(rt, &b);
    rt.block_on(setup_volumes(&client, n));
    b.stop_controller();
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
    let created = rt.block_on(async {
        let t0 = Instant::now();
        stream::iter(0..n)
            .map(|i| {
                let claims = claims.clone();
                async move {
                    claims
                        .create(&PostParams::default(), &pvc(i))
                        .await
                        .expect("create pvc");
                }
            })
            .buffer_unordered(concurrency())
            .for_each(|_| async {})
            .await;
        t0.elapsed().as_secs_f64()
    });
    println!(
        "  claims: {n} created in {created:.2}s ({:.0} creates/s, {} concurrent, no controller running)",
        n as f64 / created.max(1e-9),
        concurrency()
    );
    let (seen, rec) = {
        let _g = rt.enter();
        phase_recorder(claims.clone(), "Bound")
    };
    let inflight = {
        let _g = rt.enter();
        InflightSampler::spawn(b.metrics.clone())
    };
    let s0 = b.snapshot();
    b.start_controller();
    let ok = rt.block_on(wait_count(&seen, n, Duration::from_secs(600)));
    let s1 = b.snapshot();
    inflight.stop();
    rec.abort();
    let seen_map = seen.lock().unwrap().clone();
    let first = seen_map.values().min().copied().unwrap_or(s0.at);
    let last = seen_map.values().max().copied().unwrap_or(s0.at);
    let elapsed = last.saturating_duration_since(s0.at).as_secs_f64();
    println!(
        "  bind: controller started; first Bound after {:.0} ms, all {} Bound after {elapsed:.2}s{} => {:.0} binds/s\n{}",
        first.saturating_duration_since(s0.at).as_secs_f64() * 1000.0,
        seen_map.len(),
        if ok { "" } else { " (TIMEOUT)" },
        seen_map.len() as f64 / elapsed.max(1e-9),
        breakdown(&s0, &s1, &inflight),
    );
    b.stop();
}

fn steady(rt: &Runtime, durability: Durability, n: usize, rate: u64) {
    let b = start(durability);
    println!(
        "steady {durability:?} at {rate} claims/s (load before: {})",
        load()
    );
    let client = bench_client(rt, &b);
    rt.block_on(async {
        setup_volumes(&client, n).await;
        let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
        let (seen, rec) = phase_recorder(claims.clone(), "Bound");
        let sent = Arc::new(Mutex::new(BTreeMap::new()));
        let inflight = InflightSampler::spawn(b.metrics.clone());
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let s0 = b.snapshot();
        let t0 = s0.at;
        let mut hs = Vec::with_capacity(n);
        for i in 0..n {
            tick.tick().await;
            let (claims, sent) = (claims.clone(), sent.clone());
            hs.push(tokio::spawn(async move {
                let c = pvc(i);
                sent.lock()
                    .unwrap()
                    .insert(c.metadata.name.clone().unwrap(), Instant::now());
                claims
                    .create(&PostParams::default(), &c)
                    .await
                    .expect("create pvc");
            }));
        }
        let offered = n as f64 / t0.elapsed().as_secs_f64();
        for h in hs {
            let _ = h.await;
        }
        let ok = wait_count(&seen, n, Duration::from_secs(600)).await;
        let s1 = b.snapshot();
        inflight.stop();
        rec.abort();
        let seen_map = seen.lock().unwrap().clone();
        let mut lat = latencies(&sent.lock().unwrap(), &seen_map);
        // Latency over time: the worst second, to tell a steady queue from a periodic stall.
        let sent_map = sent.lock().unwrap().clone();
        let mut by_sec: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for (k, t) in &sent_map {
            if let Some(t1) = seen_map.get(k) {
                by_sec
                    .entry(t.saturating_duration_since(t0).as_secs())
                    .or_default()
                    .push(t1.saturating_duration_since(*t).as_secs_f64() * 1000.0);
            }
        }
        let worst = by_sec
            .iter_mut()
            .map(|(s, v)| (*s, pct(v, 99.0)))
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap());
        let per_sec: Vec<String> = by_sec
            .values_mut()
            .map(|v| format!("{:.0}", pct(v, 99.0)))
            .collect();
        println!("  p99 by second (ms): {}", per_sec.join(" "));
        println!(
            "  {} claims offered at {offered:.0} claims/s, {} Bound{}: latency create->Bound p50 {:.1} ms p99 {:.1} ms max {:.1} ms; worst second: {}\n{}",
            n,
            seen_map.len(),
            if ok { "" } else { " (TIMEOUT)" },
            pct(&mut lat, 50.0),
            pct(&mut lat, 99.0),
            pct(&mut lat, 100.0),
            worst
                .map(|(s, p)| format!("#{s} p99 {p:.1} ms"))
                .unwrap_or_default(),
            // (by_sec sorted in place by pct above)
            breakdown(&s0, &s1, &inflight),
        );
    });
    b.stop();
}

/// The core alone over the in-memory model API (no HTTP, no store): its own ceiling. The
/// time inside the core's calls is measured apart from the model's bookkeeping.
fn core_only(n: usize) {
    use volume_controller::core::model::{Change, ModelApi};
    use volume_controller::core::{CoreConfig, Millis, VolumeControllerCore, WatchEvent};
    let mut api = ModelApi::default();
    for i in 0..n {
        let mut v = pv(i);
        v.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
            phase: Some("Available".into()),
            ..Default::default()
        });
        // As the API server's admission would (pv-protection on create).
        v.metadata.finalizers = Some(vec!["kubernetes.io/pv-protection".into()]);
        api.put_volume(v);
    }
    let sc: StorageClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"
    }))
    .unwrap();
    api.put_class(sc);
    let mut core = VolumeControllerCore::new(
        CoreConfig::default(),
        Arc::new(volume_controller::Metrics::new()),
    );
    let now = Millis(0);
    core.handle_class_event(
        now,
        WatchEvent::Relisted(api.classes.values().cloned().collect()),
    );
    core.handle_pod_event(now, WatchEvent::Relisted(vec![]));
    core.handle_volume_event(
        now,
        WatchEvent::Relisted(api.volumes.values().cloned().collect()),
    );
    core.handle_claim_event(now, WatchEvent::Relisted(vec![]));
    while let Some(o) = core.poll_output() {
        let c = api.apply(&o.request);
        core.handle_completion(now, o.id, c);
    }
    let mut cursor = api.log.len();
    let t0 = Instant::now();
    for i in 0..n {
        let mut c = pvc(i);
        c.metadata.finalizers = Some(vec!["kubernetes.io/pvc-protection".into()]);
        c.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
        api.put_claim(c);
    }
    let mut in_core = Duration::ZERO;
    let mut writes = 0u64;
    let mut verbs: BTreeMap<&'static str, u64> = BTreeMap::new();
    loop {
        let mut any = false;
        while cursor < api.log.len() {
            let ch = api.log[cursor].clone();
            cursor += 1;
            any = true;
            let t = Instant::now();
            match ch {
                Change::Volume(e) => core.handle_volume_event(now, e),
                Change::Claim(e) => core.handle_claim_event(now, e),
                Change::Class(e) => core.handle_class_event(now, e),
                Change::Pod(e) => core.handle_pod_event(now, e),
            }
            in_core += t.elapsed();
        }
        let mut outs = Vec::new();
        let t = Instant::now();
        while let Some(o) = core.poll_output() {
            outs.push(o);
        }
        in_core += t.elapsed();
        for o in outs {
            any = true;
            writes += 1;
            *verbs.entry(o.request.verb()).or_default() += 1;
            let c = api.apply(&o.request);
            let t = Instant::now();
            core.handle_completion(now, o.id, c);
            in_core += t.elapsed();
        }
        if !any {
            break;
        }
    }
    let el = t0.elapsed().as_secs_f64();
    let bound = api
        .claims
        .values()
        .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
        .count();
    // A full resync over everything that is now bound: what the periodic timer costs.
    let t = Instant::now();
    core.handle_timeout(Millis(CoreConfig::default().resync_period_ms));
    let mut resync_writes = 0;
    while let Some(o) = core.poll_output() {
        resync_writes += 1;
        let c = api.apply(&o.request);
        core.handle_completion(now, o.id, c);
    }
    let resync = t.elapsed().as_secs_f64();
    println!(
        "core in-memory: claims={n} bound={bound} in {el:.2}s, of which {:.2}s inside the core => {:.0} binds/s of core time ({writes} requests {verbs:?}; no HTTP, no store); a full resync of {n}+{n} bound objects: {:.0} ms, {resync_writes} writes",
        in_core.as_secs_f64(),
        bound as f64 / in_core.as_secs_f64().max(1e-9),
        resync * 1000.0,
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful either: run
    // only under cargo bench or when asked explicitly.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") && std::env::var_os("BONSAI_BENCH_CLAIMS").is_none() {
        println!("binding benchmark: run with `cargo bench -p volume-controller --bench binding`");
        return;
    }
    let n: usize = std::env::var("BONSAI_BENCH_CLAIMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let rate: u64 = std::env::var("BONSAI_BENCH_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let only: Vec<String> = std::env::var("BONSAI_BENCH_ONLY")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let picked = |group: &[&str], item: &str| {
        !group.iter().any(|g| only.iter().any(|o| o == g)) || only.iter().any(|o| o == item)
    };
    const KINDS: &[&str] = &["core", "burst", "backlog", "steady"];
    if picked(KINDS, "core") {
        core_only(n);
    }
    if std::env::var_os("BONSAI_BENCH_CORE_ONLY").is_some() {
        return;
    }
    let rt = runtime("bench", 2);
    for d in [Durability::Durable, Durability::Relaxed] {
        let dname = format!("{d:?}").to_ascii_lowercase();
        if !picked(&["durable", "relaxed"], &dname) {
            continue;
        }
        if picked(KINDS, "burst") {
            burst(&rt, d, n);
        }
        if picked(KINDS, "backlog") {
            backlog(&rt, d, n);
        }
        if picked(KINDS, "steady") {
            steady(&rt, d, n, rate);
        }
    }
    println!("load after: {}", load());
}
