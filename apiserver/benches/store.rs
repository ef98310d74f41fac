//! `cargo bench -p apiserver --bench store`: the store's figures, printed (not a timed test).
//!
//! 1. The disk's own fdatasync p50 (4 KiB write + fdatasync, in the store's directory), so the
//!    creates/s below can be read as "writes per flush".
//! 2. Durable creates/s with 1, 16 and 256 concurrent writers, per backend, with the number of
//!    flushes (fdatasync, one per group commit) and writes per flush.
//!    Target: 256 writers ≥ 20× one writer. Then the same with relaxed durability (acknowledged
//!    without a flush, synced once a second): `syncs` counts the periodic syncs, and the writes
//!    are per group (backend transaction). `cpu µs/create` is the whole process's CPU time
//!    (writers, store threads, backend threads) per create: less noisy than creates/s on a
//!    shared machine; `committer µs` is the CPU time per create of the store's committer thread
//!    alone (every write goes through it, one group at a time: it bounds creates/s; writers
//!    prepare their writes on their own threads). Each
//!    create's object is built before the clock (the API layer's JSON parse belongs to the http
//!    bench), up to 80k objects per second of a point.
//! 3. Watch delivery latency p50/p99 with 1,000 watchers, one write at a time, on the memory
//!    backend and on the durable ones. Two figures per delivery: write submitted → event
//!    received (for a durable backend this includes the group's fdatasync), and commit → event
//!    received (from the instant the store handed the event to the watchers, after the flush:
//!    the fan-out alone). Each watcher is a tokio task that reads its events and notes the time;
//!    the runtime has 2 worker threads. 1,000 writes: every write is delivered 1,000 times, so a
//!    p99 over 200 writes was the second-slowest write's latency (one slow fdatasync decided
//!    it); over 1,000 it is the tenth-slowest's. Target: p99 < 2 ms.
//! 4. Memory per object with 100k objects (RSS growth ÷ 100k, minus the object's JSON size),
//!    measured in a fresh child process per backend. Target: < 1 KiB beyond one copy of the JSON.
//!
//! `BONSAI_BENCH_DIR` chooses where the stores live (default: the system temp dir);
//! `BONSAI_BENCH_SECS` the seconds per throughput point (default 2);
//! `BONSAI_BENCH_ONLY=throughput|watch|memory` runs one section;
//! `BONSAI_BENCH_BACKENDS=sled,redb,memory`, `BONSAI_BENCH_WRITERS=1,16,256` and
//! `BONSAI_BENCH_DURABILITY=durable,relaxed` narrow it.

use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiserver::store::{BackendKind, Durability, Key, Store, StoreConfig, WatchItem, WatchQuery};
use serde_json::{json, Value};

// The global allocator comes with apiserver (feature `mimalloc`, as in the `bonsai` binary).

const MEMORY_CHILD_ENV: &str = "BONSAI_BENCH_MEMORY_CHILD";

fn bench_dir() -> tempfile::TempDir {
    match std::env::var("BONSAI_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

fn store_path(kind: BackendKind, dir: &Path) -> PathBuf {
    match kind {
        BackendKind::Sled => dir.join("sled"),
        _ => dir.join("store.redb"),
    }
}

/// A pod as kubectl would create it, about 1 KiB of JSON.
fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "bench",
            "labels": {"app": "web", "tier": "frontend", "pod-template-hash": "5d78c9869d"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}"}
        },
        "spec": {
            "containers": [{
                "name": "nginx",
                "image": "nginx:1.27",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [{"name": "data", "mountPath": "/usr/share/nginx/html"}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "example-local-claim"}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"}
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// 4 KiB pwrite + fdatasync, 200 times, in `dir`.
fn fdatasync_p50(dir: &Path) -> Duration {
    let path = dir.join("fsync-probe");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let buf = vec![7u8; 4096];
    let mut samples = Vec::new();
    for i in 0..200u64 {
        f.write_at(&buf, (i % 16) * 4096).unwrap();
        let t = Instant::now();
        f.sync_data().unwrap();
        samples.push(t.elapsed());
    }
    samples.sort();
    let _ = std::fs::remove_file(path);
    percentile(&samples, 0.5)
}

fn config(kind: BackendKind, dir: &Path) -> StoreConfig {
    match kind {
        BackendKind::Memory => StoreConfig::memory(),
        _ => StoreConfig::durable(kind, store_path(kind, dir)),
    }
}

/// CPU time (user + system) of the whole process so far, from `/proc/self/stat` (clock ticks of
/// 10 ms; threads that exited still count).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    Duration::from_millis(stat_ticks(&stat) * 10)
}

/// utime + stime, in clock ticks, of a `/proc/.../stat` line.
fn stat_ticks(stat: &str) -> u64 {
    // Fields after the command name (which may contain spaces) start at state, field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// CPU clock ticks (user + system, 10 ms each) so far of each of this process's threads whose
/// name starts with `prefix`, by thread id (`/proc/self/task/*/comm`, truncated to 15 bytes:
/// `bonsai-store-co` is the store's committer).
fn threads_ticks(prefix: &str) -> std::collections::HashMap<String, u64> {
    let mut out = std::collections::HashMap::new();
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        out.insert(
            task.file_name().to_string_lossy().into_owned(),
            stat_ticks(&stat),
        );
    }
    out
}

/// The CPU time `prefix`'s threads used since `before` was taken: threads alive now, less what
/// each had then. (The previous point's store threads may still be exiting when `before` is
/// taken; a total over whichever threads are alive would then shrink, and underflow.)
fn threads_cpu_since(prefix: &str, before: &std::collections::HashMap<String, u64>) -> Duration {
    let ticks: u64 = threads_ticks(prefix)
        .iter()
        .map(|(tid, t)| t.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Objects built before the clock per second of a throughput point, over all its writers
/// (above the fastest rate measured here; a writer that runs out clones on the clock).
const POOL_CREATES_PER_SEC: f64 = 80_000.0;

/// One throughput point.
struct Point {
    rate: f64,
    per_flush: f64,
    flushes: u64,
    groups: u64,
    /// CPU µs per create: the whole process, the store's committer thread.
    cpu: f64,
    committer_cpu: f64,
}

/// The store's threads as `/proc` names them (15 bytes).
const COMMITTER_THREAD: &str = "bonsai-store-co";

/// One throughput point: creates/s, writes per flush, flushes, groups, CPU µs per create.
fn throughput(
    rt: &tokio::runtime::Runtime,
    kind: BackendKind,
    durability: Durability,
    writers: usize,
    secs: f64,
) -> Point {
    let dir = bench_dir();
    let store = Store::open(StoreConfig {
        durability,
        ..config(kind, dir.path())
    })
    .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    // Each create gets its own object, as from a request. They are built before the clock
    // starts, as the http bench builds its bodies: building a `Value` (what the API layer's
    // parse does, and the http bench measures) cost ~17% of this bench's instructions at 256
    // writers, CPU taken from the store on two cores. A writer whose pool runs dry goes on
    // cloning on the clock, so the pool's size bounds memory and never the result. Each writer
    // task builds its own pool on its worker thread, as a request's task parses its own body:
    // objects built on the main thread were freed on the workers, the allocator's slower
    // cross-thread path, which is an artifact of the bench and no cost of the store.
    let template = pod("");
    let pool_size = (secs * POOL_CREATES_PER_SEC / writers as f64).ceil() as usize;
    let build = move |template: &Value, w: usize, n: usize| {
        let name = format!("w{w}-{n}");
        let mut object = template.clone();
        object["metadata"]["name"] = Value::String(name.clone());
        (name, object)
    };
    let ready = Arc::new(tokio::sync::Barrier::new(writers + 1));
    let (go, start_signal) = tokio::sync::watch::channel(None::<Instant>);
    let measured = rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = store.clone();
            let done = done.clone();
            let template = template.clone();
            let ready = ready.clone();
            let mut start_signal = start_signal.clone();
            tasks.push(tokio::spawn(async move {
                let pool: Vec<_> = (0..pool_size).map(|n| build(&template, w, n)).collect();
                ready.wait().await;
                let deadline = start_signal
                    .wait_for(Option::is_some)
                    .await
                    .expect("the bench sends the deadline")
                    .expect("is some");
                let mut pool = pool.into_iter();
                let mut n = pool_size;
                while Instant::now() < deadline {
                    let (name, object) = pool.next().unwrap_or_else(|| {
                        n += 1;
                        build(&template, w, n)
                    });
                    store
                        .create(&Key::new("", "pods", "bench", &name), object, "bench")
                        .await
                        .unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
                // What is left of the pool is freed off the clock.
                pool
            }));
        }
        ready.wait().await;
        let start = Instant::now();
        let cpu0 = process_cpu();
        let committer0 = threads_ticks(COMMITTER_THREAD);
        go.send_replace(Some(start + Duration::from_secs_f64(secs)));
        let mut leftovers = Vec::new();
        for t in tasks {
            leftovers.push(t.await.unwrap());
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = process_cpu() - cpu0;
        let committer = threads_cpu_since(COMMITTER_THREAD, &committer0);
        drop(leftovers);
        (elapsed, cpu, committer)
    });
    let (elapsed, cpu, committer) = measured;
    let stats = store.stats();
    let writes = done.load(Ordering::Relaxed);
    let per_flush = stats.writes as f64 / stats.flushes.max(1) as f64;
    let per_create = |d: Duration| d.as_secs_f64() * 1e6 / writes.max(1) as f64;
    Point {
        rate: writes as f64 / elapsed,
        per_flush,
        flushes: stats.flushes,
        groups: stats.groups,
        cpu: per_create(cpu),
        committer_cpu: per_create(committer),
    }
}

/// Latency percentiles of one watch run: submit → receipt and commit → receipt.
struct WatchFigures {
    submit: [Duration; 3],
    commit: [Duration; 3],
    deliveries: usize,
}

fn watch_latency(
    rt: &tokio::runtime::Runtime,
    kind: BackendKind,
    watchers: usize,
    writes: usize,
) -> WatchFigures {
    let dir = bench_dir();
    let config = StoreConfig {
        watcher_buffer: 4096,
        ..config(kind, dir.path())
    };
    let store = Store::open(config).unwrap();
    // When each revision's write was submitted, in ns since `base` (lock-free for 1000 readers).
    let base = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..writes + 2).map(|_| AtomicU64::new(0)).collect());
    let samples: Arc<Mutex<Vec<(Duration, Duration)>>> =
        Arc::new(Mutex::new(Vec::with_capacity(watchers * writes)));
    let received = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(tokio::sync::Notify::new());
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..watchers {
            let mut w = store
                .watch(&WatchQuery {
                    resource: "pods".into(),
                    ..WatchQuery::default()
                })
                .unwrap();
            let sent = sent.clone();
            let samples = samples.clone();
            let received = received.clone();
            let notify = notify.clone();
            // The consumer a watch client is: a task per watcher that takes each event, notes
            // when it came and counts it; nothing else.
            tasks.push(tokio::spawn(async move {
                let mut local = Vec::with_capacity(writes);
                let mut got = 0;
                while got < writes {
                    match w.next().await {
                        Some(WatchItem::Event(e)) => {
                            let at = Instant::now();
                            let t0 = sent[e.revision as usize].load(Ordering::Acquire);
                            let submit = at.duration_since(base) - Duration::from_nanos(t0);
                            let commit = at.duration_since(w.published_at().unwrap_or(at));
                            local.push((submit, commit));
                            got += 1;
                            if received.fetch_add(1, Ordering::AcqRel) + 1
                                == (watchers * got) as u64
                            {
                                notify.notify_one();
                            }
                        }
                        Some(WatchItem::Bookmark(_)) => {}
                        other => panic!("watcher ended: {other:?}"),
                    }
                }
                samples.lock().unwrap().extend(local);
            }));
        }
        for i in 0..writes {
            let name = format!("p{i}");
            let rev = store.revision() as usize + 1;
            sent[rev].store(base.elapsed().as_nanos() as u64, Ordering::Release);
            store
                .create(&Key::new("", "pods", "bench", &name), pod(&name), "bench")
                .await
                .unwrap();
            // One write at a time: wait until every watcher has it (latency, not throughput).
            while received.load(Ordering::Acquire) < ((i + 1) * watchers) as u64 {
                let _ = tokio::time::timeout(Duration::from_millis(50), notify.notified()).await;
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let s = samples.lock().unwrap().clone();
    let pct = |mut v: Vec<Duration>| {
        v.sort();
        [
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            percentile(&v, 0.999),
        ]
    };
    WatchFigures {
        submit: pct(s.iter().map(|x| x.0).collect()),
        commit: pct(s.iter().map(|x| x.1).collect()),
        deliveries: s.len(),
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// In a fresh process: RSS growth per object over 100k creates.
fn memory_child(kind: BackendKind) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = bench_dir();
    let store = Store::open(config(kind, dir.path())).unwrap();
    const N: usize = 100_000;
    // Warm up allocator and runtime with the same traffic shape, then measure from here.
    let before = rss_bytes();
    let json_bytes = Arc::new(AtomicU64::new(0));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..64 {
            let store = store.clone();
            let json_bytes = json_bytes.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while i < N {
                    let name = format!("pod-{i:06}");
                    let o = store
                        .create(&Key::new("", "pods", "bench", &name), pod(&name), "bench")
                        .await
                        .unwrap();
                    json_bytes.fetch_add(
                        serde_json::to_vec(&*o).unwrap().len() as u64,
                        Ordering::Relaxed,
                    );
                    i += 64;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let after = rss_bytes();
    let per_object = (after.saturating_sub(before)) as f64 / N as f64;
    let json = json_bytes.load(Ordering::Relaxed) as f64 / N as f64;
    println!(
        "MEMORY {} {:.0} {:.0} {:.0}",
        kind.as_str(),
        per_object,
        json,
        per_object - json
    );
    drop(store);
}

fn main() {
    if let Ok(kind) = std::env::var(MEMORY_CHILD_ENV) {
        memory_child(kind.parse().unwrap());
        return;
    }
    // `cargo test --benches` runs bench binaries with `--test`: do nothing then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    // `BONSAI_BENCH_ONLY=throughput|watch|memory` runs one section.
    let only = std::env::var("BONSAI_BENCH_ONLY").unwrap_or_default();
    let run = |section: &str| only.is_empty() || only == section;
    let backends: Vec<BackendKind> = std::env::var("BONSAI_BENCH_BACKENDS")
        .unwrap_or_else(|_| "sled,redb,memory".into())
        .split(',')
        .map(|b| b.trim().parse().unwrap())
        .collect();
    let writer_counts: Vec<usize> = std::env::var("BONSAI_BENCH_WRITERS")
        .unwrap_or_else(|_| "1,16,256".into())
        .split(',')
        .map(|w| w.trim().parse().unwrap())
        .collect();
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let secs: f64 = std::env::var("BONSAI_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = bench_dir();
    println!(
        "bonsai store benchmark (stores in {})",
        dir.path().parent().unwrap_or(dir.path()).display()
    );
    println!("load average before: {}", load());
    let fsync = fdatasync_p50(dir.path());
    println!(
        "disk fdatasync p50: {} (≈ {:.0} flushes/s ceiling)",
        fmt_ms(fsync),
        1.0 / fsync.as_secs_f64()
    );
    let durabilities: Vec<Durability> = std::env::var("BONSAI_BENCH_DURABILITY")
        .unwrap_or_else(|_| "durable,relaxed".into())
        .split(',')
        .map(|d| match d.trim() {
            "durable" => Durability::Durable,
            "relaxed" => Durability::Relaxed,
            other => panic!("BONSAI_BENCH_DURABILITY: {other:?} is not durable or relaxed"),
        })
        .collect();
    if run("throughput") {
        for &durability in &durabilities {
            // Relaxed: `syncs` are the once-a-second syncs, and the writes are per group.
            let (name, flushes, per) = match durability {
                Durability::Durable => ("durable", "flushes", "writes/flush"),
                Durability::Relaxed => ("relaxed", "syncs", "writes/group"),
            };
            println!();
            println!("{name} creates/s (~1 KiB pods, {secs}s per point):");
            println!(
                "{:<8} {:>8} {:>12} {:>10} {:>16} {:>14} {:>8} {:>14} {:>13}",
                "backend",
                "writers",
                "creates/s",
                flushes,
                per,
                "vs 1 writer",
                "groups",
                "cpu µs/create",
                "committer µs"
            );
            for &kind in &backends {
                // Relaxed is durable on the memory backend: nothing new to show.
                if durability == Durability::Relaxed && kind == BackendKind::Memory {
                    continue;
                }
                let mut base = 0.0;
                for &writers in &writer_counts {
                    let Point {
                        rate,
                        per_flush,
                        flushes,
                        groups,
                        cpu,
                        committer_cpu,
                    } = throughput(&rt, kind, durability, writers, secs);
                    let per_flush = match durability {
                        Durability::Durable => per_flush,
                        Durability::Relaxed => {
                            per_flush * flushes.max(1) as f64 / groups.max(1) as f64
                        }
                    };
                    if writers == 1 {
                        base = rate;
                    }
                    println!(
                        "{:<8} {:>8} {:>12.0} {:>10} {:>16.1} {:>13.1}x {:>8} {:>14.1} {:>13.1}",
                        kind.as_str(),
                        writers,
                        rate,
                        flushes,
                        per_flush,
                        rate / base,
                        groups,
                        cpu,
                        committer_cpu
                    );
                    let _ = std::io::stdout().flush();
                }
            }
        }
    }
    if run("watch") {
        println!();
        println!("watch delivery, 1000 watchers, 1000 writes one at a time (p50 / p99 / p99.9):");
        let mut kinds = vec![BackendKind::Memory];
        kinds.extend(
            backends
                .iter()
                .copied()
                .filter(|k| *k != BackendKind::Memory),
        );
        for kind in kinds {
            let f = watch_latency(&rt, kind, 1000, 1000);
            let row = |d: [Duration; 3]| {
                format!("{} / {} / {}", fmt_ms(d[0]), fmt_ms(d[1]), fmt_ms(d[2]))
            };
            println!(
                "{:<8} submitted → received {}   committed → received {}   ({} deliveries)",
                kind.as_str(),
                row(f.submit),
                row(f.commit),
                f.deliveries
            );
            let _ = std::io::stdout().flush();
        }
    }
    println!("load average after: {}", load());
    if !run("memory") {
        return;
    }
    println!();
    println!("memory per object, 100k ~1 KiB pods (fresh process each):");
    println!(
        "{:<8} {:>14} {:>12} {:>20}",
        "backend", "RSS/object", "JSON/object", "beyond one JSON copy"
    );
    let exe = std::env::current_exe().unwrap();
    for kind in [BackendKind::Memory, BackendKind::Sled, BackendKind::Redb] {
        if !backends.contains(&kind) {
            continue;
        }
        let out = std::process::Command::new(&exe)
            .env(MEMORY_CHILD_ENV, kind.as_str())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().find(|l| l.starts_with("MEMORY ")) {
            Some(line) => {
                let f: Vec<&str> = line.split(' ').collect();
                println!("{:<8} {:>12} B {:>10} B {:>18} B", f[1], f[2], f[3], f[4]);
            }
            None => println!(
                "{:<8} failed: {}",
                kind.as_str(),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}
