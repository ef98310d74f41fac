//! Starting and stopping the cluster's components.
//!
//! `Cluster::start` opens the store, starts the API server on a private loopback port and the
//! HTTPS endpoint of the kubeconfig in front of it (see `tls` for why); then, for `bonsai up`,
//! the controllers in this process (volume controller, scheduler, node lifecycle controller,
//! fake nodes), each on a thread and current-thread runtime of its own
//! ([`Cluster::spawn_dedicated`]) and each a client of the private plain-HTTP port with the
//! cluster token, and the nodes as child
//! processes (`bonsai kubelet --node node-1 …`). Everything is registered here so that `stop`
//! (Ctrl-C, SIGTERM, `bonsai down`) ends every one of them. Children additionally get
//! `PR_SET_PDEATHSIG`, so even a SIGKILLed cluster process takes them along.
//!
//! Order matters twice. At start, the API server first (everyone's watch target), then the
//! controllers, then the nodes, all nodes at once; `start` returns when every node has
//! registered (its kubelet writes `<data-dir>/nodes/<node>/kubelet.port` once its Node object
//! is Ready), so `bonsai up` prints "up" only when pods can run. At stop, nodes first (a clean
//! node shutdown stops its pods and unmounts, and reports through the API server), then the
//! controllers, then the API server and the store.
//!
//! Adding a component is a few lines in [`Cluster::start_components`]:
//!
//! ```ignore
//! let t = Instant::now();
//! let shutdown = self.shutdown();
//! self.spawn_dedicated("node-lifecycle", move || async move {
//!     node_lifecycle::run(node_lifecycle::client(&url, &token)?, config, shutdown).await
//! });
//! self.started("node-lifecycle", "in-process", t.elapsed(), "…");
//! ```
//! plus its line in `logging::COMPONENTS` for its own log file.
//!
//! Metrics: the API server's `/metrics` ends with the volume controller's, the scheduler's and
//! every running node's (scraped from its kubelet endpoint when `/metrics` is read, merged per
//! metric family so the text stays valid Prometheus exposition format).

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apiserver::http::{MetricsFn, ServeError, ServerConfig, ServerHandle};
use apiserver::store::{Store, StoreConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::datadir::DataDir;
use crate::error::CliError;

/// What runs besides the API server (`bonsai up`'s flags; `bonsai apiserver` runs none).
#[derive(Clone, Debug)]
pub struct Components {
    /// Real nodes `node-1` … `node-{nodes}`: kubelet-lite processes (root only).
    pub nodes: usize,
    /// kwok-style nodes `{fake_prefix}1` …: Ready Node objects served in-process.
    pub fake_nodes: usize,
    pub fake_prefix: String,
    /// Capacity (and allocatable) of every node, real or fake.
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    /// The static local provisioner's StorageClass, on every real node (off: `None`).
    pub static_provisioner: Option<String>,
    /// The node lifecycle controller's grace period; the nodes' Leases last half of it.
    pub node_monitor_grace_period: Duration,
    /// DefaultTolerationSeconds admission of the API server.
    pub default_tolerations: apiserver::semantics::DefaultTolerationSeconds,
}

impl Default for Components {
    fn default() -> Self {
        Components {
            nodes: 3,
            fake_nodes: 0,
            fake_prefix: "fake-".into(),
            cpu: "4".into(),
            memory: "8Gi".into(),
            max_pods: 110,
            static_provisioner: None,
            node_monitor_grace_period: crate::node_lifecycle::LAB_NODE_MONITOR_GRACE_PERIOD,
            default_tolerations: apiserver::semantics::DefaultTolerationSeconds {
                not_ready: crate::node_lifecycle::LAB_DEFAULT_TOLERATION_SECONDS,
                unreachable: crate::node_lifecycle::LAB_DEFAULT_TOLERATION_SECONDS,
            },
        }
    }
}

/// The name of real node `i` (1-based): the lesson's `node-1`.
pub fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// What to run.
pub struct ClusterConfig {
    pub dir: DataDir,
    /// The kubeconfig's HTTPS port; 0 picks a free port.
    pub port: u16,
    pub store: StoreConfig,
    /// One line describing the store, for the startup summary.
    pub store_desc: String,
    pub token: String,
    /// `bonsai up` runs controllers and nodes (`Some`); `bonsai apiserver` only the API server.
    pub components: Option<Components>,
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
pub struct ApiClientConfig {
    pub url: String,
    pub token: String,
}

/// A node process we started, reaped by its own task (`exited` finishes when it exits).
struct ChildProc {
    name: String,
    pid: u32,
    exited: JoinHandle<()>,
}

pub struct Cluster {
    pub dir: DataDir,
    /// The public HTTPS port (the kubeconfig's).
    pub port: u16,
    /// The API server's own port: plain HTTP on loopback, token-protected. In-process
    /// controllers and the kubelets talk to it directly.
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
    children: Vec<ChildProc>,
}

fn open_store(cfg: &StoreConfig) -> Result<Store, CliError> {
    Store::open(cfg.clone()).map_err(|e| CliError::Store {
        path: cfg.path.clone().unwrap_or_default(),
        message: e.to_string(),
    })
}

/// Whether this process may start real nodes (namespaces and mounts need root).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The message for `--nodes N` without root.
pub fn nodes_need_root(nodes: usize) -> CliError {
    CliError::InvalidFlag {
        flag: "--nodes",
        message: format!(
            "{nodes} real nodes need root: each node is a process with its own mount and PID \
             namespaces, and its disks and volumes are real mounts. Run bonsai as root, or \
             start nodes without processes: `bonsai up --nodes 0 --fake-nodes {}`",
            nodes.max(3)
        ),
    }
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
        let mut server_config = ServerConfig::new(private, cfg.token.clone(), store.clone());
        // The controllers' settings are made here because their metrics must be known to the
        // API server before it serves.
        let vc_config = volume_controller::Config::default();
        let sched_config = scheduler::Config::default();
        let nlc_metrics = crate::node_lifecycle::MetricsHandle::default();
        if let Some(c) = &cfg.components {
            server_config.default_tolerations = c.default_tolerations;
        }
        if cfg.components.is_some() {
            let vc = vc_config.metrics.clone();
            let sched = sched_config.metrics.clone();
            let nodes = NodeMetrics {
                data_dir: cfg.dir.root.clone(),
                token: cfg.token.clone(),
            };
            server_config.extra_metrics = vec![
                Arc::new(move || vc.text()) as MetricsFn,
                Arc::new(move || sched.render()),
                Arc::new(move || nodes.scrape()),
            ];
            let nl = nlc_metrics.clone();
            server_config
                .extra_metrics
                .push(Arc::new(move || nl.text()) as MetricsFn);
        }
        let server = apiserver::http::serve(server_config)
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

        if let Some(components) = cfg.components {
            if let Err(e) = cluster
                .start_components(&components, vc_config, sched_config, nlc_metrics)
                .await
            {
                // Whatever did start is stopped again: a failed `up` leaves nothing behind.
                cluster.stop().await;
                return Err(e);
            }
        }
        Ok(cluster)
    }

    /// Controllers as tasks, then the nodes; returns when every node is registered.
    async fn start_components(
        &mut self,
        c: &Components,
        vc_config: volume_controller::Config,
        sched_config: scheduler::Config,
        nlc_metrics: crate::node_lifecycle::MetricsHandle,
    ) -> Result<(), CliError> {
        let api = self.client();

        let t = Instant::now();
        let resync = vc_config.resync_period;
        let shutdown = self.shutdown();
        let (url, token) = (api.url.clone(), api.token.clone());
        self.spawn_dedicated("volume-controller", move || async move {
            let client = volume_controller::client(&url, &token)?;
            volume_controller::run(client, vc_config, shutdown).await
        });
        self.started(
            "volume-controller",
            "in-process",
            t.elapsed(),
            &format!(
                "PV controller, pvc/pv-protection; resync {}s",
                resync.as_secs()
            ),
        );

        let t = Instant::now();
        let name = sched_config.core.scheduler_name.clone();
        let shutdown = self.shutdown();
        let (url, token) = (api.url.clone(), api.token.clone());
        self.spawn_dedicated("scheduler", move || async move {
            let client = scheduler::client_for(&url, &token)?;
            scheduler::run(client, sched_config, shutdown).await
        });
        self.started(
            "scheduler",
            "in-process",
            t.elapsed(),
            &format!("schedulerName {name}"),
        );

        if c.fake_nodes > 0 {
            self.start_fake_nodes(c).await?;
        }
        if c.nodes > 0 {
            self.start_nodes(c).await?;
        }

        // Last: a node's grace period starts when the controller first sees it, so nodes that
        // are still registering (thousands of fake nodes take seconds) are not judged silent.
        let t = Instant::now();
        let nlc_config = crate::node_lifecycle::NodeLifecycleConfig {
            core: crate::node_lifecycle::core::Config {
                node_monitor_grace_period_ms: c.node_monitor_grace_period.as_millis() as u64,
                ..Default::default()
            },
            metrics: nlc_metrics,
        };
        let shutdown = self.shutdown();
        let (url, token) = (api.url.clone(), api.token.clone());
        self.spawn_dedicated("node-lifecycle", move || async move {
            let client = crate::node_lifecycle::client(&url, &token)?;
            crate::node_lifecycle::run(client, nlc_config, shutdown).await
        });
        self.started(
            "node-lifecycle",
            "in-process",
            t.elapsed(),
            &format!(
                "grace {:?} (Lease {}s), tolerations not-ready {}s, unreachable {}s",
                c.node_monitor_grace_period,
                crate::node_lifecycle::lease_duration_seconds(c.node_monitor_grace_period),
                c.default_tolerations.not_ready,
                c.default_tolerations.unreachable
            ),
        );
        Ok(())
    }

    async fn start_fake_nodes(&mut self, c: &Components) -> Result<(), CliError> {
        let t = Instant::now();
        let api = self.client();
        let mut kcfg = scheduler::client_config(&api.url, &api.token)
            .map_err(|e| CliError::Serve(format!("fake nodes: {e}")))?;
        // Their writes are theirs, not the scheduler's (`bonsai history` names the writer).
        kcfg.headers.retain(|(k, _)| k.as_str() != "user-agent");
        kcfg.headers.push((
            "user-agent".parse().expect("header name"),
            scheduler::fake_nodes::FIELD_MANAGER
                .parse()
                .expect("header value"),
        ));
        let client = kube::Client::try_from(kcfg.clone())
            .map_err(|e| CliError::Serve(format!("fake nodes: {e}")))?;
        let config = crate::fake_nodes::FakeNodesConfig {
            count: c.fake_nodes,
            prefix: c.fake_prefix.clone(),
            cpu: c.cpu.clone(),
            memory: c.memory.clone(),
            pods: c.max_pods,
            // Renewed as often as the real kubelets, or the lifecycle controller would find
            // them silent.
            lease_duration_seconds: crate::node_lifecycle::lease_duration_seconds(
                c.node_monitor_grace_period,
            ),
            lease_renew_interval: Duration::from_millis(
                crate::node_lifecycle::lease_duration_seconds(c.node_monitor_grace_period) as u64
                    * 250,
            ),
            ..Default::default()
        };
        // Registered before `up` returns, so that they are Ready when the user looks.
        let uids = crate::fake_nodes::register(&client, &config)
            .await
            .map_err(|e| CliError::Serve(format!("registering fake nodes: {e}")))?;
        let shutdown = self.shutdown();
        let (first, last) = (
            format!("{}1", c.fake_prefix),
            format!("{}{}", c.fake_prefix, c.fake_nodes),
        );
        // Served by a client of their own thread's runtime (a kube client serves its requests
        // on the runtime it was built on); the one above registered them from this runtime.
        drop(client);
        self.spawn_dedicated("fake-nodes", move || async move {
            let client = kube::Client::try_from(kcfg)?;
            crate::fake_nodes::serve(client, config, uids, shutdown).await
        });
        self.started(
            "fake nodes",
            "in-process",
            t.elapsed(),
            &if c.fake_nodes == 1 {
                format!("{first} (no processes: pods are marked Running)")
            } else {
                format!(
                    "{} nodes {first}…{last} (no processes: pods are marked Running)",
                    c.fake_nodes
                )
            },
        );
        Ok(())
    }

    /// Starts `node-1` … `node-N` at once, then waits until each has registered.
    async fn start_nodes(&mut self, c: &Components) -> Result<(), CliError> {
        if !is_root() {
            return Err(nodes_need_root(c.nodes));
        }
        let t = Instant::now();
        let root = self.dir.root.clone();
        // Nodes a crashed earlier cluster left running (or `bonsai node start`ed ones, which
        // are not our children) would hold the names: stop them first.
        let stale = tokio::task::spawn_blocking(move || {
            kubelet_lite::node::stop_all(&root, Duration::from_secs(10))
        })
        .await
        .unwrap_or_default();
        for line in stale {
            tracing::warn!(line = %line, "a node of an earlier run was still running");
        }
        let exe = std::env::current_exe()
            .map_err(CliError::io("locating", "the bonsai executable".as_ref()))?;
        let token_file = self.dir.token_file();
        let mut waiting = Vec::new();
        for i in 1..=c.nodes {
            let node = node_name(i);
            let args = kubelet_lite::cli::KubeletArgs {
                server: self.client().url,
                token_file: token_file.clone(),
                node: node.clone(),
                data_dir: self.dir.root.clone(),
                cpu: c.cpu.clone(),
                memory: c.memory.clone(),
                allocatable_cpu: None,
                allocatable_memory: None,
                max_pods: c.max_pods,
                node_ip: "127.0.0.1".into(),
                port: 0,
                lease_duration_seconds: crate::node_lifecycle::lease_duration_seconds(
                    c.node_monitor_grace_period,
                ),
                static_provisioner: c.static_provisioner.clone(),
                discovery_period_ms: 1000,
                // A clean node stop must end within `stop`'s deadline (7 s): pods get at most
                // 5 s of their grace period when the node shuts down.
                shutdown_grace_period_seconds: 5,
                helper_exe: None,
            };
            let ndir = kubelet_lite::node::node_dir(&self.dir.root, &node);
            std::fs::create_dir_all(&ndir).map_err(CliError::io("creating", &ndir))?;
            // The port file appears when the kubelet has registered its Node; a leftover from
            // an earlier run must not count.
            let _ = std::fs::remove_file(ndir.join("kubelet.port"));
            let log = ndir.join("kubelet.log");
            let link = self.dir.logs().join(format!("kubelet-{node}.log"));
            if std::fs::symlink_metadata(&link).is_err() {
                let _ = std::os::unix::fs::symlink(&log, &link);
            }
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.args(args.to_argv());
            let pid = self.spawn_process(&node, cmd, &log)?;
            waiting.push((node, pid, ndir, Instant::now()));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (node, pid, ndir, t0) in waiting {
            let port = loop {
                if let Ok(p) = std::fs::read_to_string(ndir.join("kubelet.port")) {
                    if let Ok(p) = p.trim().parse::<u16>() {
                        break p;
                    }
                }
                let exited = self
                    .children
                    .iter()
                    .any(|ch| ch.name == node && ch.exited.is_finished());
                if exited || Instant::now() > deadline {
                    let tail =
                        std::fs::read_to_string(ndir.join("kubelet.log")).unwrap_or_default();
                    let last: Vec<&str> = tail.lines().rev().take(3).collect();
                    let last: Vec<&str> = last.into_iter().rev().collect();
                    return Err(CliError::Serve(format!(
                        "node {node} {} ({}); see {}",
                        if exited {
                            "exited while starting"
                        } else {
                            "did not register within 30 s"
                        },
                        last.join(" | "),
                        ndir.join("kubelet.log").display()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            let disks = kubelet_lite::disks::load(&ndir).len();
            self.started(
                &node,
                &format!("pid {pid}, kubelet :{port}"),
                t0.elapsed(),
                &format!(
                    "cpu {}, memory {}{}{}",
                    c.cpu,
                    c.memory,
                    match &c.static_provisioner {
                        Some(class) => format!(", static provisioner ({class}, /mnt/disks)"),
                        None => String::new(),
                    },
                    if disks > 0 {
                        format!(", {disks} disks")
                    } else {
                        String::new()
                    }
                ),
            );
        }
        tracing::info!(
            nodes = c.nodes,
            took_ms = t.elapsed().as_secs_f64() * 1e3,
            "nodes registered"
        );
        Ok(())
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

    /// URL and token of the API server's private port, for in-process controllers and nodes.
    pub fn client(&self) -> ApiClientConfig {
        ApiClientConfig {
            url: format!("http://127.0.0.1:{}", self.api_port),
            token: self.token.clone(),
        }
    }

    /// Flips to `true` when the cluster stops; tasks end on it.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// A future that completes when the cluster stops (the `shutdown` argument of every
    /// component's `run`).
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown_signal();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Runs an in-process controller on a thread and current-thread runtime of its own
    /// (`scheduler::dedicated`), as Kubernetes runs each controller in a process of its own:
    /// none of its wake-ups cross threads or wait behind the API server's tasks, which costs
    /// about a fifth less CPU per pod than sharing the API server's runtime (scheduler_perf
    /// (b)). `make` builds the component's client inside, on that runtime. An error it returns
    /// is logged as the component stopping.
    pub fn spawn_dedicated<F, Fut, E>(&mut self, name: &'static str, make: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let done = scheduler::dedicated::spawn(name, move || async move {
            make().await.map_err(|e| e.to_string())
        });
        self.spawn_task(name, async move {
            match done.await {
                Some(Ok(())) => {}
                Some(Err(e)) => tracing::error!(component = name, error = %e, "stopped"),
                None => tracing::error!(component = name, "stopped: its thread failed"),
            }
        });
    }

    /// Runs an in-process component until it returns or the cluster stops.
    pub fn spawn_task(&mut self, name: &str, fut: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push((name.to_string(), tokio::spawn(fut)));
    }

    /// Starts a child process (a node) that dies with this process: it stays in our process
    /// group (Ctrl-C and `bonsai down` reach it), gets SIGTERM if we die (PDEATHSIG), and its
    /// stdout/stderr are appended to `log`. A task reaps it and logs how it ended.
    ///
    /// Must be called from a runtime worker thread, never from `spawn_blocking`: the kernel
    /// sends PDEATHSIG when the *thread* that forked the child exits, and blocking-pool threads
    /// exit when idle.
    pub fn spawn_process(
        &mut self,
        name: &str,
        mut cmd: tokio::process::Command,
        log: &Path,
    ) -> Result<u32, CliError> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(CliError::io("opening", log))?;
        let err = out.try_clone().map_err(CliError::io("opening", log))?;
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
        let mut child = cmd
            .spawn()
            .map_err(CliError::io(&format!("starting {name}, output in"), log))?;
        let pid = child.id().unwrap_or(0);
        let mut stopping = self.shutdown_signal();
        let who = name.to_string();
        let exited = tokio::spawn(async move {
            let status = child.wait().await;
            if *stopping.borrow_and_update() {
                tracing::info!(component = %who, status = ?status, "stopped");
            } else {
                tracing::warn!(component = %who, status = ?status, "exited");
            }
        });
        self.children.push(ChildProc {
            name: name.to_string(),
            pid,
            exited,
        });
        Ok(pid)
    }

    /// Stops everything: nodes first (a clean node shutdown stops its pods, unmounts, and
    /// reports through the API server), then the controllers, then the API server (ends
    /// watches, finishes requests), then the store (final flush).
    pub async fn stop(mut self) {
        let _ = self.shutdown_tx.send(true);
        let signal = |pid: u32, sig| {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        };
        // All nodes at once, one shared deadline (`bonsai down` SIGKILLs us after 10 s).
        for ch in &self.children {
            if !ch.exited.is_finished() {
                signal(ch.pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(7);
        for ch in &mut self.children {
            if tokio::time::timeout_at(deadline, &mut ch.exited)
                .await
                .is_err()
            {
                // A power cut: the node's init and containers die with it (PDEATHSIG), and
                // its mounts with its mount namespace.
                tracing::warn!(component = %ch.name, "did not stop in time; killing");
                signal(ch.pid, nix::sys::signal::Signal::SIGKILL);
                let _ = tokio::time::timeout(Duration::from_secs(2), &mut ch.exited).await;
            }
        }
        // Nodes restarted with `bonsai node start` are not our children.
        let root = self.dir.root.clone();
        let _ = tokio::task::spawn_blocking(move || {
            kubelet_lite::node::stop_all(&root, Duration::from_secs(5))
        })
        .await;
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

/// The nodes' metrics, read from every running kubelet when the API server's `/metrics` is.
struct NodeMetrics {
    data_dir: PathBuf,
    token: String,
}

impl NodeMetrics {
    fn scrape(&self) -> String {
        let ports: Vec<u16> = kubelet_lite::node::list(&self.data_dir)
            .into_iter()
            .filter_map(|row| row.port)
            .collect();
        if ports.is_empty() {
            return String::new();
        }
        let fetch = || {
            ports
                .iter()
                .filter_map(|port| {
                    get_metrics(*port, &self.token, Duration::from_millis(500))
                        .map_err(|e| tracing::debug!(port, error = %e, "kubelet metrics"))
                        .ok()
                })
                .collect::<Vec<_>>()
        };
        // The API server calls us on a runtime worker; the kubelets answer in about a
        // millisecond, but the worker must not be lost to other tasks meanwhile.
        let texts = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(fetch)
            }
            _ => fetch(),
        };
        merge_metrics(&texts)
    }
}

/// `GET /metrics` on a kubelet (127.0.0.1:port) with the cluster token; the body.
fn get_metrics(port: u16, token: &str, timeout: Duration) -> std::io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         User-Agent: bonsai-apiserver\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!(
            "kubelet answered {}",
            head.lines().next().unwrap_or("")
        )));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Merges Prometheus texts of several nodes: one `# HELP`/`# TYPE` per family, followed by
/// every node's samples of it (repeating them would make the exposition invalid).
fn merge_metrics(texts: &[String]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for text in texts {
        let mut current = String::new();
        for line in text.lines() {
            let meta = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "));
            if let Some(rest) = meta {
                let name = rest.split_whitespace().next().unwrap_or("").to_string();
                let fam = families.entry(name.clone()).or_insert_with(|| {
                    order.push(name.clone());
                    Default::default()
                });
                if !fam.0.iter().any(|l| l == line) {
                    fam.0.push(line.to_string());
                }
                current = name;
            } else if line.starts_with('#') || line.trim().is_empty() {
                continue;
            } else {
                let name = line
                    .split(|ch: char| ch == '{' || ch.is_whitespace())
                    .next()
                    .unwrap_or("");
                let key = if !current.is_empty() && name.starts_with(&current) {
                    current.clone()
                } else {
                    name.to_string()
                };
                families
                    .entry(key.clone())
                    .or_insert_with(|| {
                        order.push(key.clone());
                        Default::default()
                    })
                    .1
                    .push(line.to_string());
            }
        }
    }
    let mut out = String::new();
    for name in order {
        let (meta, samples) = &families[&name];
        for l in meta.iter().chain(samples) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_metrics_merge_into_one_family_each() {
        let a = "# HELP kubelet_running_pods Pods.\n# TYPE kubelet_running_pods gauge\n\
                 kubelet_running_pods{node=\"node-1\"} 1\n"
            .to_string();
        let b = a.replace("node-1", "node-2").replace("} 1", "} 0");
        let m = merge_metrics(&[a, b]);
        assert_eq!(
            m,
            "# HELP kubelet_running_pods Pods.\n# TYPE kubelet_running_pods gauge\n\
             kubelet_running_pods{node=\"node-1\"} 1\nkubelet_running_pods{node=\"node-2\"} 0\n"
        );
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
