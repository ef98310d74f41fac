//! Starting and stopping the cluster's components.
//!
//! `Cluster::start` opens the store, starts the API server on a private loopback port and the
//! HTTPS endpoint of the kubeconfig in front of it (see `tls` for why); controllers run as tokio tasks
//! in this process and nodes as child processes, all registered here so that `stop` (Ctrl-C,
//! SIGTERM, `bonsai down`) ends every one of them. Children additionally get
//! `PR_SET_PDEATHSIG`, so even a SIGKILLed cluster process takes them along.
//!
//! Adding a component (later issues) is a few lines in [`Cluster::start`]:
//!
//! ```ignore
//! let t = Instant::now();
//! cluster.spawn_task("scheduler", scheduler::run(cluster.client(), cluster.shutdown_signal()));
//! cluster.started("scheduler", "in-process", t.elapsed());
//! cluster.spawn_process("kubelet node-1", kubelet_command("node-1"))?;
//! ```
//! plus its line in `logging::COMPONENTS` for its own log file.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use apiserver::http::{ServeError, ServerConfig, ServerHandle};
use apiserver::store::{Store, StoreConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::datadir::DataDir;
use crate::error::CliError;

/// What to run.
pub struct ClusterConfig {
    pub dir: DataDir,
    /// The kubeconfig's HTTPS port; 0 picks a free port.
    pub port: u16,
    pub store: StoreConfig,
    /// One line describing the store, for the startup summary.
    pub store_desc: String,
    pub token: String,
    /// `bonsai up` runs controllers and nodes; `bonsai apiserver` only the API server.
    pub controllers: bool,
}

/// One started component, for the startup summary and `bonsai status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Started {
    pub name: String,
    /// Where it is reachable or how it runs (`http://127.0.0.1:6443`, `pid 1234`, `in-process`).
    pub location: String,
    pub took_ms: f64,
    pub detail: String,
}

/// How to reach the API server, for in-process controllers.
#[derive(Clone, Debug)]
#[allow(dead_code)] // used by the controllers that later issues start
pub struct ApiClientConfig {
    pub url: String,
    pub token: String,
}

pub struct Cluster {
    pub dir: DataDir,
    /// The public HTTPS port (the kubeconfig's).
    pub port: u16,
    /// The API server's own port: plain HTTP on loopback, token-protected. In-process
    /// controllers talk to it directly.
    pub api_port: u16,
    /// bonsai's CA certificate (PEM), for the kubeconfig.
    pub ca_pem: String,
    pub started: Vec<Started>,
    token: String,
    server: Option<ServerHandle>,
    front: Option<JoinHandle<()>>,
    store: Store,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<(String, JoinHandle<()>)>,
    children: Vec<(String, tokio::process::Child)>,
}

fn open_store(cfg: &StoreConfig) -> Result<Store, CliError> {
    Store::open(cfg.clone()).map_err(|e| CliError::Store {
        path: cfg.path.clone().unwrap_or_default(),
        message: e.to_string(),
    })
}

impl Cluster {
    pub async fn start(cfg: ClusterConfig) -> Result<Cluster, CliError> {
        let t = Instant::now();
        // Bind the public port first: a busy port is the most common failure, report it before
        // touching the store.
        let public = SocketAddr::from(([127, 0, 0, 1], cfg.port));
        let listener = tokio::net::TcpListener::bind(public).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                CliError::PortInUse { port: cfg.port }
            } else {
                CliError::Serve(format!("cannot listen on {public}: {e}"))
            }
        })?;
        let port = listener
            .local_addr()
            .map_err(CliError::io("inspecting", "listener".as_ref()))?
            .port();
        let tls = crate::tls::load_or_create(&cfg.dir)?;
        let store = open_store(&cfg.store)?;
        let private = SocketAddr::from(([127, 0, 0, 1], 0));
        let server =
            apiserver::http::serve(ServerConfig::new(private, cfg.token.clone(), store.clone()))
                .await
                .map_err(|e| match e {
                    ServeError::AddrInUse { port, .. } => CliError::PortInUse { port },
                    other => CliError::Serve(format!("API server: {other}")),
                })?;
        let api_port = server.local_addr().port();
        let (shutdown_tx, _) = watch::channel(false);
        let front = crate::tls::spawn_front(
            listener,
            server.local_addr(),
            tls.acceptor,
            shutdown_tx.subscribe(),
        );
        let mut cluster = Cluster {
            dir: cfg.dir,
            port,
            api_port,
            ca_pem: tls.ca_pem,
            started: Vec::new(),
            token: cfg.token,
            server: Some(server),
            front: Some(front),
            store,
            shutdown_tx,
            tasks: Vec::new(),
            children: Vec::new(),
        };
        cluster.started(
            "apiserver",
            &format!("https://127.0.0.1:{port}"),
            t.elapsed(),
            &cfg.store_desc,
        );
        tracing::info!(
            port,
            api_port,
            took_ms = t.elapsed().as_secs_f64() * 1e3,
            "apiserver started"
        );

        if cfg.controllers {
            // Controllers (volume controller, scheduler) and nodes (kubelet-lite processes) are
            // started here by their issues, each with `spawn_task` / `spawn_process`.
        }
        Ok(cluster)
    }

    /// Records a started component for the summary.
    pub fn started(&mut self, name: &str, location: &str, took: Duration, detail: &str) {
        self.started.push(Started {
            name: name.to_string(),
            location: location.to_string(),
            took_ms: took.as_secs_f64() * 1e3,
            detail: detail.to_string(),
        });
    }

    /// URL and token of the API server for in-process controllers.
    #[allow(dead_code)]
    pub fn client(&self) -> ApiClientConfig {
        ApiClientConfig {
            url: format!("http://127.0.0.1:{}", self.api_port),
            token: self.token.clone(),
        }
    }

    /// Flips to `true` when the cluster stops; tasks end on it.
    #[allow(dead_code)]
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Runs an in-process component until it returns or the cluster stops.
    #[allow(dead_code)]
    pub fn spawn_task(&mut self, name: &str, fut: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push((name.to_string(), tokio::spawn(fut)));
    }

    /// Starts a child process (a node) that dies with this process: it stays in our process
    /// group (Ctrl-C and `bonsai down` reach it), gets SIGTERM if we die (PDEATHSIG), and its
    /// stdout/stderr go to `<data-dir>/logs/<name>.out`.
    #[allow(dead_code)]
    pub fn spawn_process(
        &mut self,
        name: &str,
        mut cmd: tokio::process::Command,
    ) -> Result<u32, CliError> {
        let out_path = self
            .dir
            .logs()
            .join(format!("{}.out", name.replace([' ', '/'], "-")));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .map_err(CliError::io("opening", &out_path))?;
        let err = out
            .try_clone()
            .map_err(CliError::io("opening", &out_path))?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn().map_err(CliError::io("starting", &out_path))?;
        let pid = child.id().unwrap_or(0);
        self.children.push((name.to_string(), child));
        Ok(pid)
    }

    /// Stops everything: tasks and children first (they talk to the API server), then the API
    /// server (ends watches, finishes requests), then the store (final flush).
    pub async fn stop(mut self) {
        let _ = self.shutdown_tx.send(true);
        for (name, child) in &mut self.children {
            if let Some(pid) = child.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                tracing::warn!(component = %name, "did not stop within 5s; killing");
                let _ = child.kill().await;
            }
        }
        for (name, task) in self.tasks.drain(..) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!(component = %name, "did not stop within 5s; aborting");
                abort.abort();
            }
        }
        if let Some(front) = self.front.take() {
            // Stops accepting; spliced connections end as the API server closes them.
            let _ = front.await;
        }
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        // Relaxed writes reach the disk before we exit; dropping the last handle stops the writer.
        let _ = self.store.sync();
        tracing::info!("cluster stopped");
    }
}
