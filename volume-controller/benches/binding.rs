//! Binding benchmark (issue 5): 10,000 Immediate claims and 10,000 PVs of varied sizes through
//! the real API server (in-process, HTTP on 127.0.0.1, sled store in a temp dir) and the
//! volume controller's real driver. Prints figures; asserts nothing about speed.
//!
//! - burst: all PVs created and Available, then every claim created at once (64 concurrent
//!   creators); throughput = claims / (last Bound − first create).
//! - steady: claims created at a fixed rate (500/s); latency per claim from the create request
//!   to the watch showing phase Bound; p50/p99.
//!
//! Each runs with durable writes (fdatasync per group commit) and relaxed writes.
//! `cargo bench -p volume-controller --bench binding`; BONSAI_BENCH_CLAIMS=N to scale,
//! BONSAI_BENCH_RATE=R for the steady rate.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiserver::http::{serve, ServerConfig};
use apiserver::store::{BackendKind, Durability, Store, StoreConfig};
use futures_util::{stream, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use tokio::sync::watch as tokio_watch;

const TOKEN: &str = "bench-token-0123456789";

struct Bench {
    _dir: tempfile::TempDir,
    url: String,
    stop: tokio_watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    metrics: Arc<volume_controller::Metrics>,
}

async fn start(durability: Durability) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let mut sc = StoreConfig::durable(BackendKind::DEFAULT, dir.path().join("store"));
    sc.durability = durability;
    sc.watcher_buffer = 1 << 16;
    let store = Store::open(sc).expect("store");
    let server = serve(ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        TOKEN,
        store,
    ))
    .await
    .expect("serve");
    let url = server.url();
    let (stop, rx) = tokio_watch::channel(false);
    let config = volume_controller::Config::default();
    let metrics = config.metrics.clone();
    let client = volume_controller::client(&url, TOKEN).unwrap();
    let mut rx2 = rx.clone();
    let mut tasks = vec![tokio::spawn(async move {
        let sig = async move {
            let _ = rx2.wait_for(|v| *v).await;
        };
        volume_controller::run(client, config, sig).await.unwrap();
    })];
    let mut rx3 = rx.clone();
    tasks.push(tokio::spawn(async move {
        let _ = rx3.wait_for(|v| *v).await;
        server.shutdown().await;
    }));
    Bench {
        _dir: dir,
        url,
        stop,
        tasks,
        metrics,
    }
}

impl Bench {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
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
    stream::iter(0..n)
        .map(|i| {
            let pvs = pvs.clone();
            async move {
                pvs.create(&PostParams::default(), &pv(i))
                    .await
                    .expect("create pv")
            }
        })
        .buffer_unordered(64)
        .for_each(|_| async {})
        .await;
    // Wait until the controller made them all Available (bench: polling is fine here).
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let l = pvs.list(&ListParams::default()).await.unwrap();
        let avail = l
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available"))
            .count();
        if avail == n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Watches claims and records when each was first seen Bound.
fn bound_recorder(
    client: &kube::Client,
) -> (
    Arc<Mutex<BTreeMap<String, Instant>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let s = seen.clone();
    let api = Api::<PersistentVolumeClaim>::all(client.clone());
    let h = tokio::spawn(async move {
        let mut w = watcher(api, watcher::Config::default()).boxed();
        while let Some(ev) = w.next().await {
            let obj = match ev {
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => o,
                _ => continue,
            };
            if obj.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
                let name = obj.metadata.name.clone().unwrap_or_default();
                s.lock().unwrap().entry(name).or_insert_with(Instant::now);
            }
        }
    });
    (seen, h)
}

async fn wait_bound(
    seen: &Arc<Mutex<BTreeMap<String, Instant>>>,
    n: usize,
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if seen.lock().unwrap().len() >= n {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

async fn burst(durability: Durability, n: usize) {
    let b = start(durability).await;
    let client = volume_controller::client(&b.url, TOKEN).unwrap();
    let t_setup = Instant::now();
    setup_volumes(&client, n).await;
    let setup = t_setup.elapsed();
    let (seen, rec) = bound_recorder(&client);
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
    let sent = Arc::new(Mutex::new(BTreeMap::new()));
    let t0 = Instant::now();
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
        .buffer_unordered(64)
        .for_each(|_| async {})
        .await;
    let created = t0.elapsed();
    let ok = wait_bound(&seen, n, Duration::from_secs(600)).await;
    let seen_map = seen.lock().unwrap().clone();
    let last = seen_map.values().max().copied().unwrap_or(t0);
    let elapsed = last.saturating_duration_since(t0).as_secs_f64();
    let mut lat = latencies(&sent.lock().unwrap(), &seen_map);
    println!(
        "burst   {:<8} claims={n} bound={} {}  PV setup {:.1}s; claims created in {:.2}s; all bound after {:.2}s => {:.0} binds/s; latency p50 {:.0} ms p99 {:.0} ms; conflicts {}",
        format!("{durability:?}"),
        seen_map.len(),
        if ok { "" } else { "(TIMEOUT)" },
        setup.as_secs_f64(),
        created.as_secs_f64(),
        elapsed,
        seen_map.len() as f64 / elapsed.max(1e-9),
        pct(&mut lat, 50.0),
        pct(&mut lat, 99.0),
        b.metrics.conflicts.load(std::sync::atomic::Ordering::Relaxed),
    );
    rec.abort();
    b.stop().await;
}

async fn steady(durability: Durability, n: usize, rate: u64) {
    let b = start(durability).await;
    let client = volume_controller::client(&b.url, TOKEN).unwrap();
    setup_volumes(&client, n).await;
    let (seen, rec) = bound_recorder(&client);
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
    let sent = Arc::new(Mutex::new(BTreeMap::new()));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let t0 = Instant::now();
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
    let ok = wait_bound(&seen, n, Duration::from_secs(600)).await;
    let seen_map = seen.lock().unwrap().clone();
    let mut lat = latencies(&sent.lock().unwrap(), &seen_map);
    println!(
        "steady  {:<8} claims={n} bound={} {} at {:.0} claims/s: latency create->Bound p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        format!("{durability:?}"),
        seen_map.len(),
        if ok { "" } else { "(TIMEOUT)" },
        offered,
        pct(&mut lat, 50.0),
        pct(&mut lat, 99.0),
        pct(&mut lat, 100.0),
    );
    rec.abort();
    b.stop().await;
}

/// The core alone over the in-memory model API (no HTTP, no store): its own ceiling.
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
    let mut cursor = api.log.len();
    let t0 = Instant::now();
    for i in 0..n {
        api.put_claim(pvc(i));
    }
    let mut writes = 0u64;
    let mut verbs: BTreeMap<&'static str, u64> = BTreeMap::new();
    loop {
        let mut any = false;
        while cursor < api.log.len() {
            let ch = api.log[cursor].clone();
            cursor += 1;
            any = true;
            match ch {
                Change::Volume(e) => core.handle_volume_event(now, e),
                Change::Claim(e) => core.handle_claim_event(now, e),
                Change::Class(e) => core.handle_class_event(now, e),
                Change::Pod(e) => core.handle_pod_event(now, e),
            }
        }
        let mut outs = Vec::new();
        while let Some(o) = core.poll_output() {
            outs.push(o);
        }
        for o in outs {
            any = true;
            writes += 1;
            *verbs.entry(o.request.verb()).or_default() += 1;
            let c = api.apply(&o.request);
            core.handle_completion(now, o.id, c);
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
    println!(
        "core    in-memory claims={n} bound={bound} in {el:.2}s => {:.0} binds/s ({writes} requests {verbs:?}; no HTTP, no store)",
        bound as f64 / el
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
    core_only(n);
    if std::env::var_os("BONSAI_BENCH_CORE_ONLY").is_some() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for d in [Durability::Durable, Durability::Relaxed] {
            burst(d, n).await;
            steady(d, n, rate).await;
        }
    });
}
