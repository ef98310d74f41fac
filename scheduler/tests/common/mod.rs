//! A whole control plane in-process for end-to-end tests: the real API server (in-memory store,
//! 127.0.0.1:0, TLS in front for kubectl), the scheduler, the volume controller and fake nodes
//! named node-1…, driven with the real kubectl (own kubeconfig, token and --cache-dir).
//! Dropping the cluster stops every task; the temp dir goes with it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use apiserver::http::{serve, ServerConfig, ServerHandle};
use apiserver::store::{Store, StoreConfig};
use scheduler::fake_nodes::FakeNodesConfig;
use tokio::sync::watch;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub kubeconfig: PathBuf,
    pub cache: PathBuf,
    stop: watch::Sender<bool>,
    server: Option<ServerHandle>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub fn have_kubectl() -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIP: kubectl is not on PATH");
    }
    ok
}

fn shutdown_signal(
    rx: &watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|v| *v).await;
    }
}

/// Terminates TLS on a free port and splices every connection to the plain-HTTP server, as
/// `bonsai up` does, because client-go sends a kubeconfig's token only to https:// servers.
fn spawn_tls_front(backend: std::net::SocketAddr) -> std::net::SocketAddr {
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

impl Cluster {
    /// API server + scheduler + volume controller + `nodes` fake nodes named node-1….
    pub async fn start(nodes: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        // A fresh random-enough token per cluster (pid + address of a local + time).
        let token = format!(
            "t{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let store = Store::open(StoreConfig::memory()).expect("open store");
        let server = serve(ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            token.clone(),
            store,
        ))
        .await
        .expect("serve");
        let url = server.url();
        let tls = spawn_tls_front(server.local_addr());
        let (stop, rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let client = scheduler::client_for(&url, &token).expect("scheduler client");
        let sig = shutdown_signal(&rx);
        tasks.push(tokio::spawn(async move {
            scheduler::run(client, scheduler::Config::default(), sig)
                .await
                .expect("scheduler");
        }));
        let client = volume_controller::client(&url, &token).expect("volume controller client");
        let sig = shutdown_signal(&rx);
        tasks.push(tokio::spawn(async move {
            volume_controller::run(client, volume_controller::Config::default(), sig)
                .await
                .expect("volume controller");
        }));
        if nodes > 0 {
            let client =
                scheduler::fake_nodes::client_for(&url, &token).expect("fake nodes client");
            let sig = shutdown_signal(&rx);
            let cfg = FakeNodesConfig {
                count: nodes,
                prefix: "node-".into(),
                ..Default::default()
            };
            tasks.push(tokio::spawn(async move {
                scheduler::fake_nodes::run(client, cfg, sig)
                    .await
                    .expect("fake nodes");
            }));
        }

        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let kubeconfig = home.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: bonsai\n  cluster: {{server: \"https://{tls}\", insecure-skip-tls-verify: true}}\nusers:\n- name: bonsai\n  user: {{token: {token}}}\ncontexts:\n- name: bonsai\n  context: {{cluster: bonsai, user: bonsai, namespace: default}}\ncurrent-context: bonsai\n"
            ),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let cache = home.join("kube-cache");
        Cluster {
            dir,
            url,
            token,
            kubeconfig,
            cache,
            stop,
            server: Some(server),
            tasks,
        }
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    pub async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let mut c = tokio::process::Command::new("kubectl");
        c.env("HOME", self.dir.path().join("home"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBECACHEDIR")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .kill_on_drop(true);
        let out = c.output().await.expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// kubectl that must succeed.
    pub async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    /// kubectl with a manifest on stdin (`-f -`).
    pub async fn apply_yaml(&self, verb: &str, yaml: &str) -> String {
        let path = self.dir.path().join(format!("m{}.yaml", yaml.len()));
        std::fs::write(&path, yaml).unwrap();
        self.ok(&[verb, "-f", path.to_str().unwrap()]).await
    }

    /// Waits (kubectl wait, a watch — no polling) until `path` of `resource` equals `want`,
    /// at most 60 s; returns the value then seen, so the caller's assertion shows it.
    pub async fn wait_jsonpath(&self, resource: &str, path: &str, want: &str) -> String {
        let cond = format!("--for=jsonpath={path}={want}");
        let _ = self
            .kubectl(&["wait", resource, &cond, "--timeout=60s"])
            .await;
        self.get_jsonpath(resource, path).await
    }

    /// `kubectl get resource -o jsonpath=path`.
    pub async fn get_jsonpath(&self, resource: &str, path: &str) -> String {
        let arg = format!("jsonpath={path}");
        self.ok(&["get", resource, "-o", &arg]).await
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}
