//! `bonsai up --fake-nodes N`: kwok-like fake nodes. The logic lives in
//! `scheduler::fake_nodes` so that the scheduler's end-to-end tests and benchmark can start the
//! very same nodes without depending on the `bonsai` binary; this module is the binary's entry.
//! `cluster` registers them before `bonsai up` reports ready, then serves them as a task.

use std::collections::BTreeMap;
use std::future::Future;

pub use scheduler::fake_nodes::FakeNodesConfig;

/// Registers `config.count` Ready nodes named `{prefix}1…` (default `fake-1…`) with their
/// Leases; returns name → uid for [`serve`].
pub async fn register(
    client: &kube::Client,
    config: &FakeNodesConfig,
) -> Result<BTreeMap<String, String>, scheduler::Error> {
    scheduler::fake_nodes::register_all(client, config).await
}

/// Renews the registered nodes' Leases and their Ready condition, marks pods bound to them
/// Running (podIP 127.0.0.1, running containerStatuses, no processes) and finishes their
/// deletion at once — until `shutdown` resolves.
pub async fn serve(
    client: kube::Client,
    config: FakeNodesConfig,
    uids: BTreeMap<String, String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), scheduler::Error> {
    scheduler::fake_nodes::serve(client, config, uids, shutdown).await
}
