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

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::cluster::{Cluster, ClusterConfig};
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
    /// Stay in the foreground: logs on stderr, Ctrl-C stops everything.
    #[arg(long)]
    pub foreground: bool,
    /// Internal: this process is the detached cluster started by `bonsai up`.
    #[arg(long, hide = true)]
    pub detached_child: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Foreground,
    DetachedChild,
}

pub fn run(args: UpArgs) -> Result<i32, CliError> {
    if args.detached_child {
        run_cluster(&args.serve, Mode::DetachedChild, true)
    } else if args.foreground {
        run_cluster(&args.serve, Mode::Foreground, true)
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

/// Runs the cluster in this process until Ctrl-C / SIGTERM.
pub fn run_cluster(args: &ServeArgs, mode: Mode, controllers: bool) -> Result<i32, CliError> {
    let t0 = Instant::now();
    let result = run_cluster_inner(args, mode, controllers, t0);
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
    controllers: bool,
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
            controllers,
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
