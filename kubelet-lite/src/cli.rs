//! clap types and `run` functions for `bonsai kubelet`, `bonsai node …` and `bonsai disk …`.
//! None of them starts a tokio runtime: `node`/`disk` are synchronous, `kubelet` goes through
//! [`crate::process_entry`], which must run before any runtime exists.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::disks::{self, Backing};
use crate::node::{self, NodeError};

/// `bonsai kubelet`: run one node.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct KubeletArgs {
    /// API server URL (plain HTTP on loopback), e.g. http://127.0.0.1:6443
    #[arg(long)]
    pub server: String,
    /// File holding the bearer token (the kubelet also requires it from the API server).
    #[arg(long)]
    pub token_file: PathBuf,
    /// Node name (node-1, node-2, …).
    #[arg(long)]
    pub node: String,
    /// The cluster's data directory; the node keeps its state in <data-dir>/nodes/<node>.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// CPU capacity.
    #[arg(long, default_value = "4")]
    pub cpu: String,
    /// Memory capacity.
    #[arg(long, default_value = "8Gi")]
    pub memory: String,
    /// Allocatable CPU (default: the capacity).
    #[arg(long)]
    pub allocatable_cpu: Option<String>,
    /// Allocatable memory (default: the capacity).
    #[arg(long)]
    pub allocatable_memory: Option<String>,
    /// Pod capacity.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// The node's InternalIP, where the kubelet endpoint listens; pods share it (host network).
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: String,
    /// Port of the kubelet endpoint (0: any free port; it is published in the Node status).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Lease duration; the Lease is renewed every quarter of it.
    #[arg(long, default_value_t = 40)]
    pub lease_duration_seconds: i32,
    /// Run the static local provisioner for this StorageClass (default local-storage).
    #[arg(long, num_args = 0..=1, default_missing_value = crate::core::provisioner::DEFAULT_CLASS, require_equals = true)]
    pub static_provisioner: Option<String>,
    /// Discovery period of the static provisioner, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub discovery_period_ms: u64,
    /// On a clean node stop, each pod gets at most this termination grace period.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace_period_seconds: u64,
    /// Binary to re-execute as container shim/exec helper (default: this executable).
    #[arg(long, hide = true)]
    pub helper_exe: Option<PathBuf>,
}

impl KubeletArgs {
    /// The argv (after the binary name) that starts this node again: `kubelet --server …`.
    pub fn to_argv(&self) -> Vec<String> {
        let mut v = vec![
            "kubelet".to_string(),
            format!("--server={}", self.server),
            format!("--token-file={}", self.token_file.display()),
            format!("--node={}", self.node),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--cpu={}", self.cpu),
            format!("--memory={}", self.memory),
            format!("--max-pods={}", self.max_pods),
            format!("--node-ip={}", self.node_ip),
            format!("--port={}", self.port),
            format!("--lease-duration-seconds={}", self.lease_duration_seconds),
            format!("--discovery-period-ms={}", self.discovery_period_ms),
            format!(
                "--shutdown-grace-period-seconds={}",
                self.shutdown_grace_period_seconds
            ),
        ];
        if let Some(c) = &self.allocatable_cpu {
            v.push(format!("--allocatable-cpu={c}"));
        }
        if let Some(m) = &self.allocatable_memory {
            v.push(format!("--allocatable-memory={m}"));
        }
        if let Some(c) = &self.static_provisioner {
            v.push(format!("--static-provisioner={c}"));
        }
        if let Some(h) = &self.helper_exe {
            v.push(format!("--helper-exe={}", h.display()));
        }
        v
    }
}

/// `bonsai node …`
#[derive(Subcommand, Clone, Debug)]
pub enum NodeCmd {
    /// List nodes, whether they run, their kubelet port and disks.
    Ls,
    /// Run a command inside a node's mount (and PID) namespace: "log in to node-1".
    Exec {
        node: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Clean shutdown: pods are stopped and unmounted, then the node exits.
    Stop {
        node: String,
        /// How long to wait for the shutdown, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Power cut: SIGKILL; every container and mount of the node vanishes at once.
    Kill { node: String },
    /// Start a stopped node again with the arguments it last ran with.
    Start { node: String },
}

/// `bonsai disk …`
#[derive(Subcommand, Clone, Debug)]
pub enum DiskCmd {
    /// Mount a new disk at /mnt/disks/NAME inside NODE.
    Add {
        node: String,
        name: String,
        /// Size, e.g. 1Gi, 512Mi.
        #[arg(long)]
        size: String,
        /// tmpfs (a RAM disk, lost on node restart) or loop (an ext4 image, kept).
        #[arg(long, value_enum, default_value_t = Backing::Tmpfs)]
        backing: Backing,
    },
    /// List every node's disks.
    Ls,
    /// Unmount and remove a disk (a loop disk's image is deleted).
    Rm { node: String, name: String },
}

fn exe() -> PathBuf {
    // The helpers are this very binary, even if a rebuild replaced the file meanwhile.
    PathBuf::from("/proc/self/exe")
}

impl NodeCmd {
    /// Runs the command; returns the process exit code. Output goes to stdout, errors to the
    /// returned `Err` (print it as `error: …`).
    pub fn run(&self, data_dir: &Path) -> Result<i32, NodeError> {
        match self {
            NodeCmd::Ls => {
                println!(
                    "{:<12} {:<9} {:<8} {:<8} {:<6}",
                    "NAME", "STATUS", "PID", "PORT", "DISKS"
                );
                for r in node::list(data_dir) {
                    println!(
                        "{:<12} {:<9} {:<8} {:<8} {:<6}",
                        r.name,
                        if r.running.is_some() {
                            "Running"
                        } else {
                            "Stopped"
                        },
                        r.running
                            .map(|p| p.node_pid.to_string())
                            .unwrap_or_else(|| "-".into()),
                        r.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        r.disks
                    );
                }
                Ok(0)
            }
            NodeCmd::Exec { node, command } => node::exec(&exe(), data_dir, node, command),
            NodeCmd::Stop { node, timeout } => {
                node::stop(data_dir, node, std::time::Duration::from_secs(*timeout))?;
                println!(
                    "node {node} stopped (pods stopped, volumes unmounted){}",
                    disk_note(data_dir, node)
                );
                Ok(0)
            }
            NodeCmd::Kill { node } => {
                node::kill(data_dir, node)?;
                println!(
                    "node {node} killed (power cut): its containers and mounts are gone{}",
                    disk_note(data_dir, node)
                );
                Ok(0)
            }
            NodeCmd::Start { node } => {
                if let Some(p) = node::running_pids(data_dir, node) {
                    return Err(NodeError::AlreadyRunning(node.clone(), p.node_pid));
                }
                let argv = node::recorded_argv(data_dir, node)?;
                // Read the disks first: the booting node drops its lost RAM disks from the list.
                let before = disks::load(&node::node_dir(data_dir, node));
                // The node process runs the binary by its real path (so `ps` shows bonsai).
                let bin = std::env::current_exe().unwrap_or_else(|_| exe());
                let pid = node::spawn(
                    &bin,
                    &argv,
                    data_dir,
                    node,
                    std::time::Duration::from_secs(30),
                )?;
                println!("node {node} started (pid {pid})");
                for d in before {
                    println!(
                        "  disk {}: {}",
                        d.name,
                        match d.backing {
                            Backing::Loop =>
                                format!("loop disk remounted at /mnt/disks/{} (data kept)", d.name),
                            Backing::Tmpfs =>
                                "tmpfs disk lost (a RAM disk does not survive a restart)"
                                    .to_string(),
                        }
                    );
                }
                Ok(0)
            }
        }
    }
}

fn disk_note(data_dir: &Path, node: &str) -> String {
    let ds = disks::load(&node::node_dir(data_dir, node));
    let tmp: Vec<&str> = ds
        .iter()
        .filter(|d| d.backing == Backing::Tmpfs)
        .map(|d| d.name.as_str())
        .collect();
    let lp: Vec<&str> = ds
        .iter()
        .filter(|d| d.backing == Backing::Loop)
        .map(|d| d.name.as_str())
        .collect();
    let mut s = String::new();
    if !tmp.is_empty() {
        s.push_str(&format!("; tmpfs disks lost: {}", tmp.join(", ")));
    }
    if !lp.is_empty() {
        s.push_str(&format!("; loop disks keep their data: {}", lp.join(", ")));
    }
    s
}

impl DiskCmd {
    pub fn run(&self, data_dir: &Path) -> Result<i32, NodeError> {
        match self {
            DiskCmd::Add {
                node,
                name,
                size,
                backing,
            } => {
                println!(
                    "{}",
                    disks::add(&exe(), data_dir, node, name, size, *backing)?
                );
            }
            DiskCmd::Ls => {
                println!(
                    "{:<10} {:<12} {:<8} {:<8} PATH",
                    "NODE", "NAME", "SIZE", "BACKING"
                );
                for (n, d, running) in disks::ls(data_dir) {
                    println!(
                        "{:<10} {:<12} {:<8} {:<8} /mnt/disks/{}{}",
                        n,
                        d.name,
                        d.size,
                        d.backing,
                        d.name,
                        if running { "" } else { " (node stopped)" }
                    );
                }
            }
            DiskCmd::Rm { node, name } => {
                println!("{}", disks::rm(&exe(), data_dir, node, name)?);
            }
        }
        Ok(0)
    }
}
