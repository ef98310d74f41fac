//! The node lifecycle controller (kube-controller-manager's `nodelifecycle` with its built-in
//! `tainteviction` controller, v1.33): a node whose kubelet goes silent becomes
//! `Ready=Unknown` ("Kubelet stopped posting node status."), gets the
//! `node.kubernetes.io/unreachable` NoSchedule and NoExecute taints, and its pods are evicted
//! when their toleration of that taint runs out — the DefaultTolerationSeconds admission of the
//! API server gave each pod one (300 s upstream, a few seconds with `bonsai up`). When the
//! kubelet renews its Lease and posts Ready again, the taints go.
//!
//! Why it exists in bonsai: it is what makes "a node dies, its local volumes go with it"
//! visible (examples/node-failure): the pod is evicted, a new one cannot follow its data
//! anywhere else (the PV's node affinity), and the claim stays bound to a disk on a dead node.
//!
//! # Layout
//! - `core`    — the deterministic state machine: `handle_*` inputs (Node, Lease and Pod watch
//!               events, write completions, timeouts, each with `now`), `poll_write` /
//!               `poll_timeout` outputs. No await, no clock, BTreeMaps only.
//! - `taints`  — toleration arithmetic (`ToleratesTaint`, `GetMatchingTolerations`,
//!               `getMinTolerationTime`) and the well-known taint keys.
//! - `driver`  — the tokio driver: kube-rs watchers in, API writes out ([`run`], [`client`]).
//! - `tests`   — unit tests of the core, driven with explicit times.

pub mod core;
pub mod driver;
pub mod taints;
#[cfg(test)]
mod tests;

#[allow(unused_imports)] // the API `cluster` uses
pub use driver::{client, run, Error, NodeLifecycleConfig, FIELD_MANAGER};
