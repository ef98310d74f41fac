//! Shared harness of the HTTP integration tests: a server on 127.0.0.1:0 over a durable store in
//! its own temp dir, a raw HTTP client, and a kubectl runner with its own kubeconfig and cache.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use apiserver::http::{serve, ServerConfig, ServerHandle};
use apiserver::store::{BackendKind, Store, StoreConfig, WatchWindow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub addr: std::net::SocketAddr,
    /// The HTTPS front for kubectl (started on first use of [`TestServer::kubectl`]).
    pub tls_addr: std::sync::OnceLock<std::net::SocketAddr>,
    pub dir: tempfile::TempDir,
    pub store: Store,
}

#[derive(Default)]
pub struct Options {
    pub watch_window_events: Option<usize>,
    pub event_ttl: Option<Duration>,
    pub reaper_interval: Option<Duration>,
    pub bookmark_interval: Option<Duration>,
}

pub async fn start() -> TestServer {
    start_with(Options::default()).await
}

pub async fn start_with(o: Options) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = StoreConfig::durable(BackendKind::DEFAULT, dir.path().join("store"));
    if let Some(n) = o.watch_window_events {
        cfg.watch_window = WatchWindow {
            max_age: Duration::from_secs(300),
            max_events: n,
        };
    }
    if let Some(b) = o.bookmark_interval {
        cfg.bookmark_interval = b;
    }
    let store = Store::open(cfg).expect("open store");
    let mut sc = ServerConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN, store.clone());
    if let Some(t) = o.event_ttl {
        sc.event_ttl = t;
    }
    sc.reaper_interval = o.reaper_interval;
    sc.extra_metrics
        .push(std::sync::Arc::new(|| "bonsai_test_metric 1\n".to_string()));
    let handle = serve(sc).await.expect("serve");
    let addr = handle.local_addr();
    TestServer {
        handle: Some(handle),
        addr,
        tls_addr: std::sync::OnceLock::new(),
        dir,
        store,
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One HTTP/1.1 request with the token (unless `auth` is false).
    pub async fn req_full(
        &self,
        method: &str,
        path: &str,
        ct: Option<&str>,
        body: Vec<u8>,
        auth: bool,
        extra: &[(&str, &str)],
    ) -> Resp {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
        {
            b = b.header("user-agent", "bonsai-http-test/v0");
        }
        if auth {
            b = b.header("authorization", format!("Bearer {TOKEN}"));
        }
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        let resp = sender
            .send_request(b.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req_full("GET", path, None, Vec::new(), true, &[])
            .await
    }

    pub async fn send(&self, method: &str, path: &str, ct: &str, body: &str) -> Resp {
        self.req_full(method, path, Some(ct), body.as_bytes().to_vec(), true, &[])
            .await
    }

    pub async fn post_json(&self, path: &str, v: &Value) -> Resp {
        self.send("POST", path, "application/json", &v.to_string())
            .await
    }

    /// `https://127.0.0.1:<port>`: a TLS front splicing to the server, as `bonsai up` has —
    /// client-go sends a kubeconfig's token only to https servers.
    pub fn https_url(&self) -> String {
        let addr = *self.tls_addr.get_or_init(|| spawn_tls_front(self.addr));
        format!("https://{addr}")
    }

    /// Writes a kubeconfig with the token (or none) and returns a kubectl runner.
    pub fn kubectl(&self, with_token: bool) -> Kubectl {
        let home = self
            .dir
            .path()
            .join(if with_token { "home" } else { "home-anon" });
        std::fs::create_dir_all(&home).unwrap();
        let kc = home.join("kubeconfig");
        // Without the right token: a wrong one (with none at all, kubectl prompts for a username).
        let user = if with_token {
            format!("{{token: {TOKEN}}}")
        } else {
            "{token: not-the-token}".to_string()
        };
        std::fs::write(
            &kc,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: bonsai\n  cluster: {{server: \"{}\", insecure-skip-tls-verify: true}}\nusers:\n- name: bonsai\n  user: {user}\ncontexts:\n- name: bonsai\n  context: {{cluster: bonsai, user: bonsai, namespace: default}}\ncurrent-context: bonsai\n",
                self.https_url()
            ),
        )
        .unwrap();
        Kubectl {
            kubeconfig: kc,
            cache: home.join("cache"),
            home,
        }
    }

    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
}

pub struct Kubectl {
    pub kubeconfig: PathBuf,
    pub cache: PathBuf,
    pub home: PathBuf,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Whether the real kubectl is on PATH; tests that need it print why and return otherwise.
pub fn have_kubectl() -> bool {
    let ok = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP: kubectl is not on PATH");
    }
    ok
}

impl Kubectl {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.env("HOME", &self.home)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBECACHEDIR")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        c
    }

    /// Runs kubectl to completion (off the async runtime's worker).
    pub async fn run(&self, args: &[&str]) -> Out {
        let mut c = self.command(args);
        let o = tokio::task::spawn_blocking(move || c.output().expect("run kubectl"))
            .await
            .unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs kubectl with `stdin` as its standard input.
    pub async fn run_stdin(&self, args: &[&str], stdin: &str) -> Out {
        use std::io::Write;
        let mut c = self.command(args);
        let input = stdin.to_string();
        let o = tokio::task::spawn_blocking(move || {
            let mut child = c
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn kubectl");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs kubectl and asserts success.
    pub async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert_eq!(
            o.code, 0,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            o.stdout, o.stderr
        );
        o.stdout
    }
}

/// Polls `f` until it returns `Some`, or panics after `within` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TLS listener on 127.0.0.1:0 with a fresh self-signed certificate that splices every
/// connection to `backend` (HTTP/1.1 bytes unchanged, so watches and upgrades pass).
fn spawn_tls_front(backend: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::sync::Arc;
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("self-signed certificate");
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    tokio::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}
