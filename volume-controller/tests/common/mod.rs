//! An in-process cluster for the volume controller's end-to-end tests: the real API server
//! (in-memory store, 127.0.0.1:0, with a TLS front because client-go sends a kubeconfig's
//! token only to https servers) and the volume controller's real driver, driven with the real
//! kubectl (own kubeconfig with the token, own --cache-dir, own HOME). Dropping the cluster
//! stops every task; the temp dir goes with it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use apiserver::http::{serve, ServerConfig, ServerHandle};
use apiserver::store::{Durability, Store, StoreConfig};
use tokio::sync::watch;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub kubeconfig: PathBuf,
    pub cache: PathBuf,
    pub metrics: Arc<volume_controller::Metrics>,
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

pub struct Options {
    pub durability: Durability,
    pub resync: Duration,
    pub controller: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Durable,
            resync: Duration::from_secs(15),
            controller: true,
        }
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(Options::default()).await
    }

    /// API server (memory store) + volume controller.
    pub async fn start_with(o: Options) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = format!(
            "t{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut sc = StoreConfig::memory();
        sc.durability = o.durability;
        let store = Store::open(sc).expect("open store");
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
        let config = volume_controller::Config {
            resync_period: o.resync,
            ..Default::default()
        };
        let metrics = config.metrics.clone();
        if o.controller {
            let client = volume_controller::client(&url, &token).expect("volume controller client");
            let sig = shutdown_signal(&rx);
            tasks.push(tokio::spawn(async move {
                volume_controller::run(client, config, sig)
                    .await
                    .expect("volume controller");
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
            metrics,
            stop,
            server: Some(server),
            tasks,
        }
    }

    /// Starts one more volume controller replica against the same API server.
    pub fn spawn_controller(&mut self) -> Arc<volume_controller::Metrics> {
        let config = volume_controller::Config::default();
        let metrics = config.metrics.clone();
        let client = volume_controller::client(&self.url, &self.token).expect("client");
        let sig = shutdown_signal(&self.stop.subscribe());
        self.tasks.push(tokio::spawn(async move {
            volume_controller::run(client, config, sig)
                .await
                .expect("volume controller");
        }));
        metrics
    }

    /// A kube client for the test itself (plain HTTP, bearer token).
    pub fn client(&self) -> kube::Client {
        volume_controller::client(&self.url, &self.token).expect("client")
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

    /// `kubectl <verb> -f` of a manifest text.
    pub async fn apply_yaml(&self, verb: &str, yaml: &str) -> String {
        let path = self.dir.path().join(format!(
            "m{}-{}.yaml",
            yaml.len(),
            yaml.bytes().map(u64::from).sum::<u64>()
        ));
        std::fs::write(&path, yaml).unwrap();
        self.ok(&[verb, "-f", path.to_str().unwrap()]).await
    }

    /// Waits (kubectl wait: a watch, not polling) until `path` of `resource` equals `want`, at
    /// most 60 s; returns the value then seen, so the caller's assertion shows it.
    pub async fn wait_jsonpath(&self, resource: &str, path: &str, want: &str) -> String {
        let cond = format!("--for=jsonpath={path}={want}");
        let _ = self
            .kubectl(&["wait", resource, &cond, "--timeout=60s"])
            .await;
        self.get_jsonpath(resource, path).await
    }

    /// Waits until `resource` is gone (at most 60 s); returns whether it is.
    pub async fn wait_deleted(&self, resource: &str) -> bool {
        let _ = self
            .kubectl(&["wait", resource, "--for=delete", "--timeout=60s"])
            .await;
        let (ok, _, err) = self.kubectl(&["get", resource]).await;
        !ok && err.contains("NotFound")
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
