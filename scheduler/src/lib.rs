//! scheduler: bonsai's kube-scheduler — it picks a node for every pending pod, and for pods
//! with WaitForFirstConsumer claims it picks the node and the PersistentVolumes together
//! (`volume-binding.md` §5), with the same reasons, messages, events and conditions as
//! Kubernetes v1.33.
//!
//! # Layout
//! - `core`            — the deterministic state machine (no await, no clock, ordered maps):
//!   - `core::queue`     active / backoff (1 s → 10 s) / unschedulable (5-minute flush) queues
//!   - `core::assume`    the assume cache (API vs latest version, newer revision wins)
//!   - `core::cluster`   the informer caches: nodes with their pods, PVs, PVCs, classes,
//!                       and per StorageClass the nodes that still have a free local PV
//!   - `core::framework` statuses, cycle state, the FitError message and preemption tail
//!   - `core::plugins`   NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
//!                       NodeResourcesFit, InterPodAffinity, VolumeBinding (its `PvIndex`:
//!                       PVs by class and hostname with `PvFacts`, so Filter reads one node's
//!                       PVs and a scan visits only nodes where a claim can still fit)
//!   - `core::metrics`   attempts by result, latencies, queue sizes (Prometheus text)
//! - `driver`          — the thin tokio driver on the `kube` crate (watches, writes, timers).
//! - `dedicated`       — a component on a thread and current-thread runtime of its own.
//! - `fake_nodes`      — kwok-like fake nodes (Ready Nodes, Leases, pods marked Running
//!                       without processes) for tests and benchmarks; `bonsai up
//!                       --fake-nodes N` uses it.
//!
//! # Driving the core
//! ```text
//! handle_pod/node/persistent_volume/…(now, WatchEvent)   watch input
//! handle_completion(now, id, Completion)                 a write's outcome (409 included)
//! handle_timeout(now) when poll_timeout() <= now         timers and scheduling cycles
//! poll_output() -> Output { id, Request }                bindings, PV/PVC updates, events, status
//! ```

pub mod core;
pub mod dedicated;
pub mod driver;
pub mod fake_nodes;

pub use crate::core::{Completion, CoreConfig, Millis, Output, Request, Scheduler, WatchEvent};
pub use driver::{
    client_config, client_config_as, client_for, run, Config, MetricsHandle, FIELD_MANAGER,
};

/// Errors at the scheduler's boundary (everything expected — conflicts, unschedulable pods —
/// is a value inside the core, not an error).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be built (bad URL, configuration).
    #[error("scheduler client: {0}")]
    Client(String),
    /// A Kubernetes API call failed outside the core's requests (fake nodes' registration).
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}
