//! bonsai: a miniature Kubernetes on one Linux machine, driven by the real kubectl.
//!
//! This binary is the wiring: it parses the command line and hands each command to its module.
//! The cluster itself (which components run, in which order, how they stop) lives in
//! `cluster`; everything about "is a cluster already running in this data dir" lives in
//! `state`.
//!
//! # Layout
//! - `main.rs`      — the clap command tree and dispatch (the only place `anyhow` is used).
//! - `cmd/`         — one module per command: `up`, `down`, `status`, `kubeconfig`, `apiserver`,
//!                    `node`, `disk`, `kubelet` (the node process `up` starts).
//! - `cluster`      — starts the components (API server, volume controller, scheduler, fake
//!                    nodes as tasks; kubelets as child processes) and stops them all.
//! - `datadir`      — the data directory layout (kubeconfig, token, store, logs, lock, state)
//!                    and the store flags.
//! - `state`        — the run lock (flock) and the state file: already running / stale / down.
//! - `kubeconfig`   — writing `<data-dir>/kubeconfig` and merging it into `~/.kube/config`.
//! - `tls`          — bonsai's CA and the HTTPS endpoint in front of the API server (kubectl
//!                    sends credentials only over https).
//! - `logging`      — per-component structured (JSON) logs in `<data-dir>/logs/`.
//! - `probe`        — a minimal HTTP GET for `/readyz` (no client stack needed at startup).
//! - `error`        — `CliError`, the one error type of the commands.
//! - `fake_nodes`   — entry of `--fake-nodes` (logic in `scheduler::fake_nodes`).

mod cluster;
mod cmd;
mod datadir;
mod error;
mod fake_nodes;
mod kubeconfig;
mod logging;
mod node_lifecycle;
mod probe;
mod race;
mod state;
mod tls;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bonsai",
    version,
    about = "A miniature Kubernetes for learning and debugging \
local persistent volumes, driven by the real kubectl"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cluster (detached; returns when the API server is ready).
    Up(cmd::up::UpArgs),
    /// Stop everything `bonsai up` started.
    Down(DataDirArg),
    /// Is a cluster running in this data dir? Where, since when, is it ready?
    Status(DataDirArg),
    /// Print the kubeconfig path (`--merge`: add a `bonsai` context to ~/.kube/config).
    Kubeconfig(cmd::kubeconfig::KubeconfigArgs),
    /// Run the API server alone, in the foreground.
    Apiserver(cmd::up::ServeArgs),
    /// Reproduce binding races deterministically: list, show, run, explore scenarios.
    Race(cmd::race::RaceArgs),
    /// An object's timeline from the log: revision, time, writer, what changed.
    History(cmd::history::HistoryArgs),
    /// Why a pod is Pending: per node, the first scheduler filter that rejects it.
    Explain(cmd::explain::ExplainArgs),
    /// The cluster's nodes: ls, exec (log in to a node), stop, kill (power cut), start.
    Node(cmd::node::NodeArgs),
    /// Disks of the nodes (mounts at /mnt/disks/NAME inside a node): add, ls, rm.
    Disk(cmd::disk::DiskArgs),
    /// Internal: one node process (kubelet-lite), as `bonsai up` starts it.
    #[command(hide = true)]
    Kubelet(kubelet_lite::cli::KubeletArgs),
}

/// The data directory, shared by every command.
#[derive(clap::Args, Clone, Debug)]
pub struct DataDirArg {
    /// Where bonsai keeps its store, kubeconfig, token and logs.
    #[arg(long, env = "BONSAI_DATA_DIR", default_value = ".bonsai")]
    pub data_dir: PathBuf,
}

fn main() {
    // The kubelet re-executes this binary as its container shim and exec/node helpers; such a
    // process becomes the helper here and never returns.
    kubelet_lite::helper_entry();
    let cli = Cli::parse();
    // A node process unshares its mount and PID namespaces and forks, which needs a
    // single-threaded process: it is dispatched before anything could start a thread (no
    // tokio runtime exists yet; every other command builds its own later, if at all).
    let cli = match cli.command {
        Command::Kubelet(args) => std::process::exit(cmd::kubelet::run(args)),
        command => Cli { command },
    };
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            // The message is written for the user; a backtrace would only hide it.
            eprintln!("bonsai: {e:#}");
            std::process::exit(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    Ok(match cli.command {
        Command::Up(args) => cmd::up::run(args)?,
        Command::Down(args) => cmd::down::run(&args)?,
        Command::Status(args) => cmd::status::run(&args)?,
        Command::Kubeconfig(args) => cmd::kubeconfig::run(&args)?,
        Command::Apiserver(args) => cmd::apiserver::run(args)?,
        Command::Race(args) => cmd::race::run(args)?,
        Command::History(args) => cmd::history::run(args)?,
        Command::Explain(args) => cmd::explain::run(args)?,
        Command::Node(args) => cmd::node::run(&args)?,
        Command::Disk(args) => cmd::disk::run(&args)?,
        Command::Kubelet(_) => unreachable!("dispatched in main before any runtime"),
    })
}
