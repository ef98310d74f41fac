//! API benchmark: bonsai's HTTP API (durable store, `bonsai up`'s default backend) side by side
//! with etcd 3.4 in the same run, plus list, watch fan-out and `bonsai up` start-up. Prints
//! figures; asserts nothing.
//!
//! `cargo bench -p apiserver --bench http` (add `-- --quick` for a short run).
//!
//! - creates: realistic PV and Pod JSON (alternating) POSTed by 1, 16, 64 and 256 concurrent
//!   loopback clients, each on its own keep-alive HTTP/1.1 connection; etcd gets puts of the
//!   same bytes through its v3 JSON gateway (`/v3/kv/put`) at the same concurrency. Both are
//!   durable: bonsai acknowledges after fdatasync (group commit), etcd fsyncs its WAL. The
//!   cpu column is this process's CPU per create (server and clients), the clients' part apart.
//! - list: the PVs the creates made (~17k; at least 10k) as JSON and as a kubectl Table,
//!   against an etcd range over the same keys.
//! - watch fan-out: W watchers on pods, E creates; time until every watcher saw every event.
//! - start-up: `bonsai up` (API server alone) to ready, when the bonsai binary is built.
//!
//! The server runs on a tokio runtime of its own (2 workers on this machine, as `bonsai up`
//! builds it) and the bench's clients on another, as kubectl or a controller would run in a
//! process of their own; etcd is a process of its own too. `BONSAI_BENCH_SHARED_RUNTIME=1`
//! runs server and clients on one runtime instead (the layout of earlier runs).
//! `BONSAI_BENCH_DUMP=path` writes each create's start and latency (µs) to
//! `path.<bonsai|etcd>.<clients>`, to see when the slow ones happened.
//!
//! etcd comes from Debian's etcd-server package (`/usr/bin/etcd`); without it the etcd columns
//! say "skipped" and why.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::http::{serve, ServerConfig};
use apiserver::store::{BackendKind, Store, StoreConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const TOKEN: &str = "bench-token";

fn pv_json(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("bench-pv-{i:06}"),
            "labels": {"bench": "true", "disk": format!("vol{}", i % 3 + 1)}},
        "spec": {
            "capacity": {"storage": "5Gi"}, "volumeMode": "Filesystem",
            "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "local-storage",
            "local": {"path": format!("/mnt/disks/vol{}", i % 3 + 1)},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In",
                 "values": [format!("node-{}", i % 8 + 1)]}]}]}}
        }
    }))
    .unwrap()
}

fn pod_json(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("bench-pod-{i:06}"), "namespace": "default",
            "labels": {"app": "web", "tier": "frontend", "bench": "true"},
            "annotations": {"example.com/owner": "bench"}},
        "spec": {
            "volumes": [{"name": "example-pv-storage",
                "persistentVolumeClaim": {"claimName": "example-local-claim"}}],
            "containers": [{
                "name": "example-pv-container", "image": "nginx:1.27",
                "ports": [{"containerPort": 80, "name": "http-server"}],
                "env": [{"name": "MODE", "value": "bench"}, {"name": "INDEX", "value": i.to_string()}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "128Mi"}},
                "volumeMounts": [{"mountPath": "/usr/share/nginx/html", "name": "example-pv-storage"}]
            }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30
        }
    }))
    .unwrap()
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    /// bonsai's bearer token; etcd rejects any Authorization header ("invalid auth token").
    token: Option<&'static str>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).ok();
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn {
            sender,
            addr,
            token: Some(TOKEN),
        }
    }

    async fn open_etcd(addr: SocketAddr) -> Conn {
        Conn {
            token: None,
            ..Conn::open(addr).await
        }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        accept: &str,
        body: Bytes,
    ) -> (u16, Bytes) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if let Some(token) = self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .header("content-type", "application/json")
            .header("accept", accept)
            .header("user-agent", "bonsai-bench")
            .body(Full::new(body))
            .unwrap();
        self.sender.ready().await.expect("connection ready");
        let resp = self.sender.send_request(req).await.expect("send");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, body)
    }
}

/// The creates' client: one keep-alive HTTP/1.1 connection that writes a request built before
/// the clock (head and body in one buffer, one write) and reads the answer's head and as much
/// body as its `Content-Length` (or chunks) say. The server still parses every header and the
/// whole body. The bench's clients share the machine's 2 cores with the server (and with etcd),
/// so what a client spends per request is taken from the server under test: hyper's client
/// (`Conn` above: a `HeaderMap`, a connection task beside the request's, the `Host` and
/// `Authorization` values formatted per request) took ~13% of all CPU samples at 64 clients
/// (`perf`, ~9.5 µs per create); this one takes ~7 µs (the `clients` figure of the cpu
/// column), most of it the kernel's loopback TCP. Both targets get the very same client.
struct RawConn {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    async fn open(addr: SocketAddr) -> RawConn {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).ok();
        RawConn {
            tcp,
            buf: Vec::with_capacity(16 << 10),
        }
    }

    /// A POST of `body` to `path` as bytes on the wire; `token`: bonsai's bearer token (etcd
    /// rejects any Authorization header).
    fn post(addr: SocketAddr, path: &str, token: Option<&str>, body: &[u8]) -> Bytes {
        let mut head = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\n");
        if let Some(t) = token {
            head.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        head.push_str(&format!(
            "content-type: application/json\r\naccept: application/json\r\n\
             user-agent: bonsai-bench\r\ncontent-length: {}\r\n\r\n",
            body.len()
        ));
        let mut wire = head.into_bytes();
        wire.extend_from_slice(body);
        Bytes::from(wire)
    }

    /// Sends one request and reads its whole answer; returns the status code.
    async fn send(&mut self, request: &[u8]) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.tcp.write_all(request).await.expect("send");
        self.buf.clear();
        let mut body_at = None;
        loop {
            if body_at.is_none() {
                body_at = self
                    .buf
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map(|i| i + 4);
            }
            if let Some(at) = body_at {
                if let Some(status) = answer_complete(&self.buf, at) {
                    return status;
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 << 10);
            }
            let n = self.tcp.read_buf(&mut self.buf).await.expect("receive");
            assert!(n > 0, "the server closed the connection mid-answer");
        }
    }
}

/// The status code if `buf` (a head ending at `body_at`, then body bytes) holds the whole
/// answer, by its `content-length` or its chunks.
fn answer_complete(buf: &[u8], body_at: usize) -> Option<u16> {
    let head = std::str::from_utf8(&buf[..body_at]).expect("an HTTP head is text");
    let status: u16 = head
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let mut length = None;
    let mut chunked = false;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.trim().eq_ignore_ascii_case("chunked");
        }
    }
    let body = &buf[body_at..];
    if chunked {
        // Chunks: size in hex, CRLF, data, CRLF; the last has size 0 (and no trailers here).
        let mut at = 0;
        loop {
            let line_end = body[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size_text = std::str::from_utf8(&body[at..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2 + size + 2;
            if at > body.len() {
                return None;
            }
            if size == 0 {
                return Some(status);
            }
        }
    }
    (body.len() >= length.unwrap_or(0)).then_some(status)
}

#[derive(Clone, Copy)]
enum Target {
    Bonsai(SocketAddr),
    Etcd(SocketAddr),
}

struct Run {
    /// CPU time of this whole process (server and bench clients) per operation, in µs: a
    /// figure that, unlike rates, barely moves when other processes load the machine.
    cpu_us_per_op: f64,
    /// The part of it spent on the clients' runtime threads.
    clients_cpu_us_per_op: f64,
    ops: usize,
    errors: usize,
    wall: Duration,
    lat: Vec<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
        self.lat[i].as_secs_f64() * 1e3
    }
}

/// `ops` creates by `clients` concurrent connections; object ids start at `base`.
async fn creates(target: Target, clients: usize, ops: usize, base: usize) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let addr = match target {
        Target::Bonsai(a) | Target::Etcd(a) => a,
    };
    let mut conns = Vec::new();
    for _ in 0..clients {
        conns.push(RawConn::open(addr).await);
    }
    // Requests (head and body) are made before the clock starts: building them is the client's
    // work, not the server's, and both targets get the very same bodies.
    let requests: Arc<Vec<Bytes>> = Arc::new(
        (0..ops)
            .map(|k| {
                let i = base + k;
                let (bytes, path, key) = if i.is_multiple_of(2) {
                    (
                        pv_json(i),
                        "/api/v1/persistentvolumes",
                        format!("/registry/persistentvolumes/bench-pv-{i:06}"),
                    )
                } else {
                    (
                        pod_json(i),
                        "/api/v1/namespaces/default/pods",
                        format!("/registry/pods/default/bench-pod-{i:06}"),
                    )
                };
                match target {
                    Target::Bonsai(_) => RawConn::post(addr, path, Some(TOKEN), &bytes),
                    Target::Etcd(_) => RawConn::post(
                        addr,
                        "/v3/kv/put",
                        None,
                        format!(
                            r#"{{"key":"{}","value":"{}"}}"#,
                            base64(key.as_bytes()),
                            base64(&bytes)
                        )
                        .as_bytes(),
                    ),
                }
            })
            .collect(),
    );
    // Both targets start from a disk with nothing else to write: what other processes left
    // dirty (a build just before the bench writes hundreds of MB) is written back over the
    // next ~30 s and slows the fdatasyncs of whichever target runs then. Seen in a whole run
    // started right after `cargo build`: its 1-client point ran at 0.91x etcd, the next four
    // runs at 1.07–1.33x.
    nix::unistd::sync();
    let start = Instant::now();
    let cpu0 = process_cpu_seconds();
    let clients0 = threads_cpu_seconds(CLIENT_THREADS);
    let mut tasks = Vec::new();
    for mut conn in conns {
        let next = next.clone();
        let errors = errors.clone();
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut starts = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= ops {
                    break;
                }
                let t = Instant::now();
                let code = conn.send(&requests[k]).await;
                let ok = match target {
                    Target::Bonsai(_) => code == 201,
                    Target::Etcd(_) => code == 200,
                };
                lat.push(t.elapsed());
                starts.push(t);
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            (lat, starts)
        }));
    }
    let mut lat = Vec::new();
    let mut starts = Vec::new();
    for t in tasks {
        let (l, s) = t.await.unwrap();
        lat.extend(l);
        starts.extend(s);
    }
    let wall = start.elapsed();
    // etcd's own CPU is in another process: its column shows none rather than the client's.
    let cpu_us_per_op = match target {
        Target::Bonsai(_) => (process_cpu_seconds() - cpu0) * 1e6 / ops as f64,
        Target::Etcd(_) => f64::NAN,
    };
    // The clients' own share, from their runtime's threads (NaN when they share the server's).
    let clients_cpu_us_per_op = match target {
        Target::Bonsai(_) if std::env::var_os("BONSAI_BENCH_SHARED_RUNTIME").is_none() => {
            (threads_cpu_seconds(CLIENT_THREADS) - clients0) * 1e6 / ops as f64
        }
        _ => f64::NAN,
    };
    // Off the clock: each create's start (µs into the run) and latency.
    if let Ok(p) = std::env::var("BONSAI_BENCH_DUMP") {
        let who = match target {
            Target::Bonsai(_) => "bonsai",
            Target::Etcd(_) => "etcd",
        };
        let dump: String = starts
            .iter()
            .zip(&lat)
            .map(|(s, l)| format!("{} {}\n", (*s - start).as_micros(), l.as_micros()))
            .collect();
        std::fs::write(format!("{p}.{who}.{clients}"), dump).unwrap();
    }
    lat.sort();
    Run {
        cpu_us_per_op,
        clients_cpu_us_per_op,
        ops,
        errors: errors.load(Ordering::Relaxed),
        wall,
        lat,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Etcd {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn etcd_binary() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

async fn start_etcd() -> Result<Etcd, String> {
    let bin = etcd_binary().ok_or("etcd is not installed (apt-get install -y etcd-server)")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (client, peer) = (free_port(), free_port());
    let curl = format!("http://127.0.0.1:{client}");
    let purl = format!("http://127.0.0.1:{peer}");
    let child = Command::new(bin)
        .args(["--name", "bench", "--data-dir"])
        .arg(dir.path())
        .args([
            "--listen-client-urls",
            &curl,
            "--advertise-client-urls",
            &curl,
        ])
        .args([
            "--listen-peer-urls",
            &purl,
            "--initial-advertise-peer-urls",
            &purl,
        ])
        .args([
            "--initial-cluster",
            &format!("bench={purl}"),
            "--log-level",
            "error",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start etcd: {e}"))?;
    let addr: SocketAddr = format!("127.0.0.1:{client}").parse().unwrap();
    let etcd = Etcd {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(tcp) = TcpStream::connect(addr).await {
            drop(tcp);
            let mut c = Conn::open(addr).await;
            let (code, body) = c
                .request("GET", "/health", "application/json", Bytes::new())
                .await;
            if code == 200 && String::from_utf8_lossy(&body).contains("true") {
                return Ok(etcd);
            }
        }
        if Instant::now() > deadline {
            return Err("etcd did not become healthy within 20s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// utime + stime of this process from /proc/self/stat.
fn process_cpu_seconds() -> f64 {
    stat_cpu_seconds(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// utime + stime from a `stat` file's text (clock ticks of 10 ms).
fn stat_cpu_seconds(stat: &str) -> f64 {
    // Fields after the command name (which may hold spaces) start at index 2 ("state").
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The name of the bench clients' runtime threads.
const CLIENT_THREADS: &str = "bench-client";

/// utime + stime of this process's threads whose name starts with `prefix`
/// (/proc/self/task/*/stat; a thread's name is cut to 15 bytes there).
fn threads_cpu_seconds(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let mut total = 0.0;
    for t in tasks.flatten() {
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("", |(n, _)| n);
        if name.starts_with(&prefix[..prefix.len().min(15)]) {
            total += stat_cpu_seconds(&stat);
        }
    }
    total
}

fn fmt_run(r: &Run) -> String {
    format!(
        "{:>9.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {}{}",
        r.rate(),
        r.pct(0.50),
        r.pct(0.99),
        if r.cpu_us_per_op.is_nan() {
            String::new()
        } else if r.clients_cpu_us_per_op.is_nan() {
            format!("cpu {:>4.0} µs/op", r.cpu_us_per_op)
        } else {
            format!(
                "cpu {:>4.0} µs/op ({:.0} clients)",
                r.cpu_us_per_op, r.clients_cpu_us_per_op
            )
        },
        if r.errors > 0 {
            format!("  ({} errors)", r.errors)
        } else {
            String::new()
        }
    )
}

/// Opens `watchers` watch streams on pods from the current revision, creates `events` pods,
/// and returns the time until every watcher saw every event.
async fn watch_fanout(
    addr: SocketAddr,
    watchers: usize,
    events: usize,
    base: usize,
) -> (Duration, usize) {
    let mut c = Conn::open(addr).await;
    let (_, body) = c
        .request(
            "GET",
            "/api/v1/namespaces/default/pods?limit=1",
            "application/json",
            Bytes::new(),
        )
        .await;
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers);
    for _ in 0..watchers {
        let rv = rv.clone();
        let done = done.clone();
        let ready_tx = ready_tx.clone();
        handles.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await;
            let req = Request::builder()
                .uri(format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&labelSelector=fanout%3Dtrue"))
                .header("host", addr.to_string())
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            conn.sender.ready().await.unwrap();
            let resp = conn.sender.send_request(req).await.unwrap();
            let _ = ready_tx.send(()).await;
            let mut body = resp.into_body();
            let mut seen = 0;
            while seen < events {
                match body.frame().await {
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            seen += d.iter().filter(|b| **b == b'\n').count();
                        }
                    }
                    _ => break,
                }
            }
            if seen >= events {
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for _ in 0..watchers {
        ready_rx.recv().await;
    }
    let start = Instant::now();
    // 16 writers create the pods.
    let next = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..16 {
        let next = next.clone();
        writers.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= events {
                    break;
                }
                let mut pod: serde_json::Value =
                    serde_json::from_slice(&pod_json(base + k)).unwrap();
                pod["metadata"]["labels"]["fanout"] = "true".into();
                let bytes = serde_json::to_vec(&pod).unwrap();
                c.request(
                    "POST",
                    "/api/v1/namespaces/default/pods",
                    "application/json",
                    bytes.into(),
                )
                .await;
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(60), h).await;
    }
    (start.elapsed(), done.load(Ordering::Relaxed))
}

fn bonsai_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BONSAI_BIN") {
        return Some(PathBuf::from(p));
    }
    // target/<profile>/deps/http-xxxx → target/<profile>/bonsai, else the other profile.
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let target = profile_dir.parent()?;
    [
        profile_dir.join("bonsai"),
        target.join("release/bonsai"),
        target.join("debug/bonsai"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// `bonsai up` to ready, `runs` times, with `extra` flags (then `bonsai down`).
fn startup(runs: usize, extra: &[&str], label: &str) {
    let Some(bin) = bonsai_binary() else {
        println!("  bonsai up: skipped (build it first: cargo build --release -p bonsai, or set BONSAI_BIN)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut reported = Vec::new();
    let mut wall = Vec::new();
    let mut first = None;
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(&bin)
            .args(["up", "--port", "0", "--data-dir", data])
            .args(extra)
            .output()
            .unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        first.get_or_insert(ms);
        wall.push(ms);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if let Some(ms) = text
            .lines()
            .find_map(|l| l.strip_prefix("bonsai is up in "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
        {
            reported.push(ms);
        } else {
            println!(
                "  bonsai up {extra:?} failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = Command::new(&bin)
            .args(["down", "--data-dir", data])
            .output();
    }
    wall.sort_by(|a, b| a.partial_cmp(b).unwrap());
    reported.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if !wall.is_empty() && !reported.is_empty() {
        println!(
            "  bonsai up {:<34} ready in median {:>6.1} ms (reported), command wall time median {:>6.1} ms, \
             first run (fresh data dir) {:>6.1} ms  [{} runs]",
            label,
            reported[reported.len() / 2],
            wall[wall.len() / 2],
            first.unwrap_or(0.0),
            runs
        );
    }
}

/// The session id of a process (field 6 of /proc/<pid>/stat).
fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// Memory of an idle `bonsai up --nodes 3`: the PSS of every process in the sessions of the
/// processes that name its data dir (the cluster process and each node's whole tree: kubelet,
/// init, fork server, spare shim), summed from /proc/<pid>/smaps_rollup.
fn idle_pss() {
    let Some(bin) = bonsai_binary() else {
        println!("  idle PSS: skipped (no bonsai binary)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let out = Command::new(&bin)
        .args(["up", "--port", "0", "--nodes", "3", "--data-dir", &data])
        .output()
        .unwrap();
    if !out.status.success() {
        println!(
            "  idle PSS: bonsai up --nodes 3 failed (nodes need root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    // Let start-up work settle: this measures the cluster at rest.
    std::thread::sleep(Duration::from_secs(3));
    let me = session_of(std::process::id());
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let sessions: std::collections::BTreeSet<u32> = pids
        .iter()
        .filter(|&&p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&data))
                .unwrap_or(false)
        })
        .filter_map(|&p| session_of(p))
        .filter(|s| Some(*s) != me)
        .collect();
    let (mut kib, mut n) = (0u64, 0);
    for p in pids {
        if !session_of(p).is_some_and(|s| sessions.contains(&s)) {
            continue;
        }
        let rollup = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).unwrap_or_default();
        if let Some(v) = rollup
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        {
            kib += v;
            n += 1;
        }
    }
    println!(
        "  idle bonsai up --nodes 3: PSS {:.1} MiB over {n} processes (target < 100 MB)",
        kib as f64 / 1024.0
    );
    let _ = Command::new(&bin)
        .args(["down", "--data-dir", &data])
        .output();
}

/// Whether `bonsai up` knows a flag (older binaries start only the API server).
fn up_has_flag(flag: &str) -> bool {
    bonsai_binary()
        .and_then(|b| Command::new(b).args(["up", "--help"]).output().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
        .unwrap_or(false)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // BONSAI_BENCH_ONLY=startup|creates|list|watch (comma-separated) runs only those parts;
    // BONSAI_BENCH_CLIENTS=16,64 picks the client counts of the creates table (for profiling).
    let only = std::env::var("BONSAI_BENCH_ONLY").unwrap_or_default();
    let part = move |name: &str| only.is_empty() || only.split(',').any(|p| p.trim() == name);
    let client_counts: Vec<usize> = std::env::var("BONSAI_BENCH_CLIENTS")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 64, 256]);
    let skip_etcd = std::env::var("BONSAI_BENCH_NO_ETCD").is_ok();
    // cargo bench passes --bench; ignore everything else.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(CLIENT_THREADS)
        .build()
        .unwrap();
    runtime.block_on(async move {
        println!("bonsai API benchmark ({} CPUs){}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            if quick { " --quick" } else { "" });

        // In-process start-up: store open + serve + first /readyz.
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        // BONSAI_BENCH_BACKEND=memory|redb|sled (default: `bonsai up`'s, BackendKind::DEFAULT)
        // separates the store's share or compares the durable backends.
        let backend = match std::env::var("BONSAI_BENCH_BACKEND").as_deref() {
            Ok("memory") => BackendKind::Memory,
            Ok("redb") => BackendKind::Redb,
            Ok("sled") => BackendKind::Sled,
            _ => BackendKind::DEFAULT,
        };
        let cfg = if backend == BackendKind::Memory {
            StoreConfig::memory()
        } else {
            StoreConfig::durable(backend, dir.path().join("store"))
        };
        println!("store backend: {backend:?}");
        let store = Store::open(cfg).unwrap();
        let server_config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN, store);
        let shared = std::env::var_os("BONSAI_BENCH_SHARED_RUNTIME").is_some();
        let server_runtime = (!shared).then(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("bonsai-server")
                .build()
                .unwrap()
        });
        println!("runtime: {}", if shared { "server and clients share one" } else { "the server's own, apart from the clients'" });
        let handle = match &server_runtime {
            Some(rt) => rt.spawn(serve(server_config)).await.unwrap().unwrap(),
            None => serve(server_config).await.unwrap(),
        };
        let addr = handle.local_addr();
        let mut c = Conn::open(addr).await;
        let (code, _) = c.request("GET", "/readyz", "text/plain", Bytes::new()).await;
        println!("\nstart-up");
        println!("  in-process ({} open + serve + first /readyz {code}): {:.1} ms", backend.as_str(), t.elapsed().as_secs_f64() * 1e3);
        let runs = if quick { 3 } else { 7 };
        if let Some(bin) = bonsai_binary() {
            println!("  binary: {}", bin.display());
        }
        if !part("startup") {
        } else if up_has_flag("--nodes") {
            startup(runs, &["--nodes", "0"], "--nodes 0 (API server + controllers)");
            startup(runs, &[], "(default: + 3 kubelet nodes)");
            idle_pss();
        } else {
            startup(runs, &[], "(API server alone)");
        }

        let etcd = match if skip_etcd { Err("BONSAI_BENCH_NO_ETCD is set".to_string()) } else { start_etcd().await } {
            Ok(e) => Some(e),
            Err(why) => {
                println!("\netcd: SKIPPED — {why}");
                None
            }
        };

        println!("\ncreates (alternating PV and Pod JSON, {} bytes / {} bytes), both durable",
            pv_json(0).len(), pod_json(1).len());
        println!("  {:>7}  {:<66}  {:<66}  bonsai/etcd", "clients", format!("bonsai ({}, fdatasync group commit)", backend.as_str()), "etcd 3.4 (/v3/kv/put, fsync)");
        let mut base = 0;
        for &clients in client_counts.iter().filter(|_| part("creates")) {
            // 100 creates per client, so a p99 rests on dozens of samples rather than a
            // handful; at 64 clients, where the p99 target is, 300 (19,200 creates, ~0.9 s):
            // with 6,400 the first burst alone — 64 fresh connections sending at once, each
            // waiting for the others' parsing — was most of the slowest 1%, and one disk
            // hiccup holding all 64 writers the rest. BONSAI_BENCH_PER_CLIENT=N: N creates per
            // client at every point instead.
            let per_client: Option<usize> = std::env::var("BONSAI_BENCH_PER_CLIENT").ok().and_then(|v| v.parse().ok());
            let ops = match per_client {
                Some(n) => clients * n,
                None if quick => (clients * 20).clamp(300, 3000),
                None if clients == 64 => 64 * 300,
                None => (clients * 100).clamp(1000, 12800),
            };
            let b = creates(Target::Bonsai(addr), clients, ops, base).await;
            let e = match &etcd {
                Some(e) => Some(creates(Target::Etcd(e.addr), clients, ops, base).await),
                None => None,
            };
            base += ops;
            let ratio = e.as_ref().map(|e| format!("{:.2}x", b.rate() / e.rate())).unwrap_or_else(|| "-".into());
            println!("  {:>7}  {:<66}  {:<66}  {}", clients, fmt_run(&b),
                e.as_ref().map(fmt_run).unwrap_or_else(|| "skipped".into()), ratio);
        }

        // Top the PVs up to 10k, then list them.
        let pvs_now = base / 2;
        if part("list") && pvs_now < 10_000 {
            let extra = (10_000 - pvs_now) * 2;
            creates(Target::Bonsai(addr), 64, extra, base).await;
            if let Some(e) = &etcd {
                creates(Target::Etcd(e.addr), 64, extra, base).await;
            }
            base += extra;
        }
        if part("list") {
        println!("\nlist ({} PVs)", base / 2);
        let reps = if quick { 3 } else { 7 };
        let mut c = Conn::open(addr).await;
        for (what, accept) in [
            ("bonsai JSON list", "application/json"),
            ("bonsai Table (kubectl get)", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
        ] {
            let mut times = Vec::new();
            let mut size = 0;
            let mut count = 0;
            for _ in 0..reps {
                let t = Instant::now();
                let (code, body) = c.request("GET", "/api/v1/persistentvolumes", accept, Bytes::new()).await;
                times.push(t.elapsed());
                size = body.len();
                if code == 200 {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    count = v["items"].as_array().or(v["rows"].as_array()).map(|a| a.len()).unwrap_or(0);
                }
            }
            times.sort();
            println!("  {:<28} median {:>7.1} ms  ({} objects, {:.1} MB)", what,
                times[times.len() / 2].as_secs_f64() * 1e3, count, size as f64 / 1e6);
        }
        if let Some(e) = &etcd {
            let mut ec = Conn::open_etcd(e.addr).await;
            let mut times = Vec::new();
            let mut count = 0;
            let body = format!(r#"{{"key":"{}","range_end":"{}"}}"#,
                base64(b"/registry/persistentvolumes/"), base64(b"/registry/persistentvolumes0"));
            let mut size = 0;
            for _ in 0..reps {
                let t = Instant::now();
                let (_, resp) = ec.request("POST", "/v3/kv/range", "application/json", Bytes::from(body.clone())).await;
                times.push(t.elapsed());
                size = resp.len();
                let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
                count = v["kvs"].as_array().map(|a| a.len()).unwrap_or(0);
            }
            times.sort();
            println!("  {:<28} median {:>7.1} ms  ({} keys, {:.1} MB base64 JSON)", "etcd range (same keys)",
                times[times.len() / 2].as_secs_f64() * 1e3, count, size as f64 / 1e6);
        }

        }
        if part("watch") {
        println!("\nwatch fan-out (pods, 16 writers; time until every watcher saw every event)");
        let cases: &[(usize, usize)] = if quick { &[(1, 200), (100, 100)] } else { &[(1, 500), (100, 200), (1000, 100)] };
        for &(w, e) in cases {
            let (took, complete) = watch_fanout(addr, w, e, base).await;
            base += e;
            println!("  {:>5} watchers x {:>4} events: {:>8.1} ms, {:>10.0} deliveries/s, {}/{} watchers complete",
                w, e, took.as_secs_f64() * 1e3, (w * e) as f64 / took.as_secs_f64(), complete, w);
        }
        println!("  (etcd watch fan-out is not measured: its gateway streams are not comparable to kubectl's watch)");
        }
        drop(etcd);
        handle.shutdown().await;
        if let Some(rt) = server_runtime {
            rt.shutdown_background();
        }
    });
}
