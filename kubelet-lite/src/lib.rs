//! kubelet-lite: one bonsai node — a process that owns a private mount namespace (its own
//! `/mnt/disks`) and a PID namespace, registers its Node, heartbeats a Lease, mounts pod
//! volumes for real, runs each container as a namespaced process from host binaries, serves
//! logs and exec to the API server, and (optionally) runs the static local provisioner.
//!
//! # Layout
//!
//! - [`core`]: the deterministic decisions — volume resolution and mount plans
//!   ([`core::volumes`]), one pod's lifecycle and status ([`core::pod`]), the static
//!   provisioner's names and PVs ([`core::provisioner`]). No I/O, no clock, no await.
//! - [`mounter`]: the only place (with `runtime`) that calls mount, umount, unshare, setns and
//!   the loop-device ioctls.
//! - [`runtime`]: container shims, the shim fork server with its pre-forked spare shim
//!   ([`runtime::zygote`]), the exec helper, CRI log files.
//! - [`node`]: the node process tree (entry, namespaces, init), node records in the data
//!   directory, and `bonsai node ls|exec|stop|kill|start`.
//! - [`disks`]: `bonsai disk add|ls|rm`.
//! - [`server`]: the kubelet's HTTP endpoint (`/metrics`, `/healthz`, `/containerLogs`,
//!   `/exec` over WebSocket v5.channel.k8s.io, `/debug/pod-start` stage timings),
//!   bearer-token protected.
//! - [`driver`]: the tokio driver — API client, Node and Lease, pod watch, the core's actions,
//!   events, status, the provisioner loop.
//! - [`cli`]: clap types and `run` functions for the `bonsai` binary.
//!
//! # Entry points for the `bonsai` binary
//!
//! 1. First line of `main`: [`helper_entry()`] (the kubelet re-executes its own binary as
//!    container shim and exec/node helpers; this turns such a process into the helper).
//! 2. `bonsai kubelet …` parses [`cli::KubeletArgs`] and calls [`process_entry`] **before any
//!    tokio runtime exists** (unshare/fork need a single-threaded process; the kubelet forks
//!    its shim fork server there too).
//! 3. `bonsai node …` / `bonsai disk …`: [`cli::NodeCmd::run`] / [`cli::DiskCmd::run`] with the
//!    data directory; they are synchronous and start no runtime.

pub mod cli;
pub mod core;
pub mod disks;
pub mod driver;
pub mod mounter;
pub mod node;
pub mod runtime;
pub mod server;

pub use node::process_entry;
pub use runtime::shim::helper_entry;
