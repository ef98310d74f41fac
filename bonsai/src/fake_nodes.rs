//! `bonsai up --fake-nodes N`: kwok-like fake nodes. The logic lives in
//! `scheduler::fake_nodes` so that the scheduler's end-to-end tests and benchmark can start the
//! very same nodes without depending on the `bonsai` binary; this module is the binary's entry.

use std::future::Future;

pub use scheduler::fake_nodes::FakeNodesConfig;

/// Registers `config.count` Ready nodes named `{prefix}1…` (default `fake-1…`), renews their
/// Leases in `kube-node-lease` and their Ready condition, marks pods bound to them Running
/// (podIP 127.0.0.1, running containerStatuses, no processes) and finishes their deletion at
/// once — until `shutdown` resolves.
pub async fn run_fake_nodes(
    client: kube::Client,
    config: FakeNodesConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    scheduler::fake_nodes::run(client, config, shutdown)
        .await
        .map_err(anyhow::Error::from)
}
