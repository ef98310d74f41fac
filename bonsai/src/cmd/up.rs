//! `bonsai up`: start the cluster.
//!
//! Detached (the default), `up` re-executes itself as the cluster process in a new session
//! (setsid: no controlling terminal, its own process group, survives the shell) with stdout
//! connected to a pipe and stderr to `<data-dir>/logs/bonsai.out`. The cluster process writes
//! one line on the pipe — `ready` or `error: <why>` — then points its stdout at the log too.
//! So `up` returns exactly when the cluster is ready (or says why it is not), with no polling.
//!
//! `--foreground` runs the cluster in this process: logs also on stderr, Ctrl-C or SIGTERM
//! stops everything it started.
//!
//! Besides the API server, `up` runs the volume controller and the scheduler (tasks), `--nodes
//! N` real nodes (kubelet-lite processes node-1…node-N, root only; default 3) and `--fake-nodes
//! N` kwok-style nodes; see `cluster`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::cluster::{Cluster, ClusterConfig, Components};
use crate::datadir::{DataDir, StoreArgs};
use crate::error::CliError;
use crate::state::{self, RunState, Running};
use crate::{kubeconfig, logging, probe, DataDirArg};

/// Flags of every command that runs an API server.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// API server port on 127.0.0.1 (0 picks a free port; the kubeconfig gets the real one).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(clap::Args, Clone, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub nodes: NodeFlags,
    /// Stay in the foreground: logs on stderr, Ctrl-C stops everything.
    #[arg(long)]
    pub foreground: bool,
    /// Internal: this process is the detached cluster started by `bonsai up`.
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

/// The nodes `bonsai up` starts.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeFlags {
    /// Real nodes node-1…node-N: one kubelet-lite process each, with its own mount namespace
    /// (its own /mnt/disks) and PID namespace. Needs root.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub nodes: usize,
    /// kwok-style nodes without processes (Ready Node objects whose pods are marked Running),
    /// for scale experiments: `--nodes 0 --fake-nodes 5000`.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub fake_nodes: usize,
    /// Names of the fake nodes: PREFIX1, PREFIX2, …
    #[arg(long, default_value = "fake-", value_name = "PREFIX")]
    pub fake_node_prefix: String,
    /// CPU capacity of every node (e.g. 4, 500m).
    #[arg(long, default_value = "4")]
    pub cpu: String,
    /// Memory capacity of every node (e.g. 8Gi, 512Mi).
    #[arg(long, default_value = "8Gi")]
    pub memory: String,
    /// Pod capacity of every node.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Run the static local provisioner on every node: each mount under /mnt/disks becomes a
    /// local-pv-<hash> PV of this StorageClass (default local-storage). Off by default, as in
    /// the lesson.
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "local-storage",
        value_name = "CLASS"
    )]
    pub static_provisioner: Option<String>,
    /// How long a node may go without renewing its Lease before the node lifecycle controller
    /// marks it Ready=Unknown and taints it unreachable (kube-controller-manager's
    /// --node-monitor-grace-period, 50s there). Default: 8s, so a lab shows a dead node in
    /// seconds; 50s with --fake-nodes, whose thousands of Leases need the slower renewals. The
    /// nodes' Lease duration is half of it.
    #[arg(long, value_name = "DURATION")]
    pub node_monitor_grace_period: Option<String>,
    /// tolerationSeconds of the node.kubernetes.io/not-ready:NoExecute toleration admission
    /// adds to every pod (kube-apiserver's flag; 300 there).
    #[arg(long, default_value_t = crate::node_lifecycle::LAB_DEFAULT_TOLERATION_SECONDS, value_name = "SECONDS")]
    pub default_not_ready_toleration_seconds: i64,
    /// tolerationSeconds of the node.kubernetes.io/unreachable:NoExecute toleration admission
    /// adds to every pod: how long a pod stays on a dead node before it is evicted (300 upstream).
    #[arg(long, default_value_t = crate::node_lifecycle::LAB_DEFAULT_TOLERATION_SECONDS, value_name = "SECONDS")]
    pub default_unreachable_toleration_seconds: i64,
}

impl NodeFlags {
    /// Checks the flags before anything starts (bad input changes nothing).
    pub fn to_components(&self) -> Result<Components, CliError> {
        if !valid_cpu(&self.cpu) {
            return Err(CliError::InvalidFlag {
                flag: "--cpu",
                message: format!(
                    "{:?} (expected a CPU quantity such as 4, 2.5 or 500m)",
                    self.cpu
                ),
            });
        }
        if kubelet_lite::core::volumes::parse_quantity(&self.memory).is_none_or(|b| b == 0) {
            return Err(CliError::InvalidFlag {
                flag: "--memory",
                message: format!(
                    "{:?} (expected a memory quantity such as 8Gi or 512Mi)",
                    self.memory
                ),
            });
        }
        if self.max_pods == 0 {
            return Err(CliError::InvalidFlag {
                flag: "--max-pods",
                message: "0 (a node must be able to run at least one pod)".into(),
            });
        }
        let prefix = &self.fake_node_prefix;
        let valid_prefix = !prefix.is_empty()
            && prefix.len() <= 50
            && prefix.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid_prefix {
            return Err(CliError::InvalidFlag {
                flag: "--fake-node-prefix",
                message: format!(
                    "{prefix:?} (lowercase letters, digits, '-' and '.', starting with a letter                      or digit)"
                ),
            });
        }
        if self.fake_nodes > 0 && self.nodes > 0 && prefix == "node-" {
            return Err(CliError::InvalidFlag {
                flag: "--fake-node-prefix",
                message: "\"node-\" names the real nodes (node-1…); pick another prefix, or \
                          --nodes 0"
                    .into(),
            });
        }
        if let Some(class) = &self.static_provisioner {
            if class.is_empty()
                || !class
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                return Err(CliError::InvalidFlag {
                    flag: "--static-provisioner",
                    message: format!("{class:?} is not a StorageClass name"),
                });
            }
        }
        if self.nodes > 0 && !crate::cluster::is_root() {
            return Err(crate::cluster::nodes_need_root(self.nodes));
        }
        let node_monitor_grace_period = match &self.node_monitor_grace_period {
            None if self.fake_nodes > 0 => crate::node_lifecycle::FAKE_NODES_GRACE_PERIOD,
            None => crate::node_lifecycle::LAB_NODE_MONITOR_GRACE_PERIOD,
            Some(g) => crate::node_lifecycle::parse_duration(g)
                .ok()
                .filter(|d| d.as_millis() >= 1000)
                .ok_or_else(|| CliError::InvalidFlag {
                    flag: "--node-monitor-grace-period",
                    message: format!(
                        "{g:?} (expected a duration of at least 1s, such as 8s or 50s)"
                    ),
                })?,
        };
        for (flag, v) in [
            (
                "--default-not-ready-toleration-seconds",
                self.default_not_ready_toleration_seconds,
            ),
            (
                "--default-unreachable-toleration-seconds",
                self.default_unreachable_toleration_seconds,
            ),
        ] {
            if v < 0 {
                return Err(CliError::InvalidFlag {
                    flag,
                    message: format!("{v} (expected 0 or more seconds)"),
                });
            }
        }
        Ok(Components {
            node_monitor_grace_period,
            default_tolerations: apiserver::semantics::DefaultTolerationSeconds {
                not_ready: self.default_not_ready_toleration_seconds,
                unreachable: self.default_unreachable_toleration_seconds,
            },
            nodes: self.nodes,
            fake_nodes: self.fake_nodes,
            fake_prefix: prefix.clone(),
            cpu: self.cpu.clone(),
            memory: self.memory.clone(),
            max_pods: self.max_pods,
            static_provisioner: self.static_provisioner.clone(),
        })
    }

    /// The same flags, spelled out for the detached child.
    fn to_argv(&self) -> Vec<String> {
        let mut v = vec![
            format!("--nodes={}", self.nodes),
            format!("--fake-nodes={}", self.fake_nodes),
            format!("--fake-node-prefix={}", self.fake_node_prefix),
            format!("--cpu={}", self.cpu),
            format!("--memory={}", self.memory),
            format!("--max-pods={}", self.max_pods),
            format!(
                "--default-not-ready-toleration-seconds={}",
                self.default_not_ready_toleration_seconds
            ),
            format!(
                "--default-unreachable-toleration-seconds={}",
                self.default_unreachable_toleration_seconds
            ),
        ];
        if let Some(class) = &self.static_provisioner {
            v.push(format!("--static-provisioner={class}"));
        }
        if let Some(g) = &self.node_monitor_grace_period {
            v.push(format!("--node-monitor-grace-period={g}"));
        }
        v
    }
}

/// `4`, `2.5`, `500m`.
fn valid_cpu(s: &str) -> bool {
    let num = s.strip_suffix('m').unwrap_or(s);
    !num.is_empty()
        && num.chars().filter(|c| *c == '.').count() <= 1
        && num.chars().all(|c| c.is_ascii_digit() || c == '.')
        && num.chars().any(|c| c.is_ascii_digit() && c != '0')
        && !(s.ends_with('m') && num.contains('.'))
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Foreground,
    DetachedChild,
}

pub fn run(args: UpArgs) -> Result<i32, CliError> {
    let components = args.nodes.to_components()?;
    if args.detached_child {
        run_components(&args.serve, Mode::DetachedChild, Some(components))
    } else if args.foreground {
        run_components(&args.serve, Mode::Foreground, Some(components))
    } else {
        spawn_detached(&args)
    }
}

fn already_running(dir: &DataDir, pid: Option<i32>, st: Option<RunState>) -> CliError {
    CliError::AlreadyRunning {
        pid: st.as_ref().map(|s| s.pid).or(pid).unwrap_or(0),
        port: st.map(|s| s.port).unwrap_or(0),
        data_dir: dir.root.clone(),
    }
}

fn spawn_detached(args: &UpArgs) -> Result<i32, CliError> {
    let t0 = Instant::now();
    let dir = DataDir::new(&args.serve.data.data_dir)?;
    dir.create()?;
    args.serve.store.to_config(&dir)?; // bad flags fail here, not in the log
    match state::inspect(&dir)? {
        Running::Yes { pid, state } => return Err(already_running(&dir, pid, state)),
        Running::No { stale: Some(s) } => eprintln!(
            "note: a previous bonsai (pid {}) in {} did not shut down cleanly; starting afresh",
            s.pid,
            dir.root.display()
        ),
        Running::No { stale: None } => {}
    }
    let out_path = dir.out_log();
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .map_err(CliError::io("opening", &out_path))?;
    let exe = std::env::current_exe().map_err(CliError::io("locating", "bonsai".as_ref()))?;
    let mut cmd = Command::new(exe);
    // The same flags, spelled out: the child must not depend on the caller's working directory
    // (absolute data dir) nor on how the flags were given (environment, defaults).
    let st = &args.serve.store;
    cmd.arg("up")
        .arg("--detached-child")
        .arg("--data-dir")
        .arg(&dir.root)
        .args(["--port", &args.serve.port.to_string()])
        .args([
            "--store-backend",
            &st.backend,
            "--durability",
            &st.durability,
        ])
        .args(["--watch-window", &st.watch_window])
        .args(["--watch-window-events", &st.watch_window_events.to_string()])
        .args(["--retention", &st.retention.to_string()])
        .args(args.nodes.to_argv())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(out);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(CliError::io("starting the cluster process", &out_path))?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    let _ = BufReader::new(stdout).read_line(&mut line);
    let line = line.trim();
    if line != "ready" {
        let message = match line.strip_prefix("error: ") {
            Some(m) => m.to_string(),
            None => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                format!("the cluster process exited ({status}) before it was ready")
            }
        };
        let _ = child.wait();
        return Err(CliError::StartupFailed {
            message,
            log: out_path,
        });
    }
    // The child keeps running on its own; we only needed its word.
    let st = state::read_state(&dir).ok_or_else(|| CliError::StartupFailed {
        message: "the cluster reported ready but wrote no state file".into(),
        log: out_path.clone(),
    })?;
    if !probe::ready(st.api_port) {
        return Err(CliError::StartupFailed {
            message: format!(
                "the API server's /readyz (port {}) does not answer 200",
                st.api_port
            ),
            log: out_path,
        });
    }
    print_summary(&dir, &st, t0.elapsed(), false);
    Ok(0)
}

/// Prints what started, where, and how long it took.
pub fn print_summary(dir: &DataDir, st: &RunState, took: std::time::Duration, foreground: bool) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "bonsai is up in {:.0} ms (pid {}{})",
        took.as_secs_f64() * 1e3,
        st.pid,
        if foreground {
            ", foreground: Ctrl-C stops it"
        } else {
            ""
        }
    );
    for c in &st.components {
        let _ = writeln!(
            out,
            "  {:<18} {:<26} started in {:>6.1} ms   {}",
            c.name, c.location, c.took_ms, c.detail
        );
    }
    let _ = writeln!(out, "  {:<18} {}", "data dir", dir.root.display());
    let _ = writeln!(out, "  {:<18} {}/", "logs", dir.logs().display());
    let _ = writeln!(out, "  {:<18} {}", "kubeconfig", dir.kubeconfig().display());
    let _ = writeln!(out);
    let _ = writeln!(out, "export KUBECONFIG={}", dir.kubeconfig().display());
    let _ = out.flush();
}

/// Runs the cluster in this process until Ctrl-C / SIGTERM: the API server alone, or with the
/// controllers and nodes (`controllers`, with `bonsai up`'s defaults).
pub fn run_cluster(args: &ServeArgs, mode: Mode, controllers: bool) -> Result<i32, CliError> {
    run_components(args, mode, controllers.then(Components::default))
}

/// Runs the cluster in this process until Ctrl-C / SIGTERM: the API server, and `components`.
pub fn run_components(
    args: &ServeArgs,
    mode: Mode,
    components: Option<Components>,
) -> Result<i32, CliError> {
    let t0 = Instant::now();
    let result = run_cluster_inner(args, mode, components, t0);
    if mode == Mode::DetachedChild {
        if let Err(e) = &result {
            // Our parent waits for one line; if we fail before "ready", this is it. (After
            // "ready" stdout is the log file, where the line is just as useful.)
            println!("error: {}", e.to_string().replace('\n', " "));
            let _ = std::io::stdout().flush();
        }
    }
    result
}

fn run_cluster_inner(
    args: &ServeArgs,
    mode: Mode,
    components: Option<Components>,
    t0: Instant,
) -> Result<i32, CliError> {
    let dir = DataDir::new(&args.data.data_dir)?;
    dir.create()?;
    let store = args.store.to_config(&dir)?;
    let lock = match state::acquire(&dir)? {
        Ok(lock) => lock,
        Err(Running::Yes { pid, state }) => return Err(already_running(&dir, pid, state)),
        Err(Running::No { .. }) => unreachable!("acquire reports only holders"),
    };
    if let Some(stale) = state::read_state(&dir) {
        if mode == Mode::Foreground {
            eprintln!(
                "note: a previous bonsai (pid {}) did not shut down cleanly; starting afresh",
                stale.pid
            );
        }
        state::remove_state(&dir);
    }
    logging::init(&dir.logs(), mode == Mode::Foreground)?;
    let token = dir.token()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bonsai")
        .build()
        .map_err(CliError::io("starting the tokio runtime in", &dir.root))?;
    let code = runtime.block_on(async {
        let cfg = ClusterConfig {
            dir: dir.clone(),
            port: args.port,
            store,
            store_desc: args.store.describe(&dir),
            token: token.clone(),
            components,
        };
        let cluster = Cluster::start(cfg).await?;
        kubeconfig::write(&dir.kubeconfig(), cluster.port, &token, &cluster.ca_pem)?;
        let st = RunState {
            pid: std::process::id() as i32,
            port: cluster.port,
            api_port: cluster.api_port,
            started_at_ms: state::now_ms(),
            components: cluster.started.clone(),
            store: args.store.describe(&dir),
            kubeconfig: dir.kubeconfig().display().to_string(),
        };
        state::write_state(&dir, &st)?;
        let port = cluster.port;
        let api_port = cluster.api_port;
        let ready = tokio::task::spawn_blocking(move || probe::ready(api_port))
            .await
            .unwrap_or(false);
        if !ready {
            cluster.stop().await;
            state::remove_state(&dir);
            return Err(CliError::Serve(format!(
                "the API server on port {port} started but /readyz does not answer 200"
            )));
        }
        tracing::info!(
            port,
            took_ms = t0.elapsed().as_secs_f64() * 1e3,
            "bonsai ready"
        );
        match mode {
            Mode::DetachedChild => {
                println!("ready");
                let _ = std::io::stdout().flush();
                // From now on stdout goes where stderr goes (the log); the pipe closes.
                let _ = nix::unistd::dup2_stdout(std::io::stderr());
            }
            Mode::Foreground => print_summary(&dir, &st, t0.elapsed(), true),
        }
        let signal = wait_for_signal().await;
        tracing::info!(signal, "stopping");
        if mode == Mode::Foreground {
            eprintln!("bonsai: {signal} received, stopping…");
        }
        let t_stop = Instant::now();
        cluster.stop().await;
        state::remove_state(&dir);
        if mode == Mode::Foreground {
            eprintln!(
                "bonsai: stopped in {:.0} ms",
                t_stop.elapsed().as_secs_f64() * 1e3
            );
        }
        Ok::<i32, CliError>(0)
    })?;
    // The runtime first (it waits for its threads), then the lock: once the lock is free the
    // process is about to exit, which is what `bonsai down` waits for.
    drop(runtime);
    drop(lock);
    Ok(code)
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    }
}
