//! `bonsai node ls|exec|stop|kill|start`: the cluster's nodes as machines.
//!
//! The commands themselves are kubelet-lite's (`kubelet_lite::cli::NodeCmd`): they read the
//! node records in `<data-dir>/nodes/` and act on the node processes directly, with no API
//! call, so `node exec` and `node kill` work even when the control plane is busy. `start` is
//! refused when no cluster runs in the data dir: the node would have no API server to join.

use std::path::PathBuf;

use kubelet_lite::cli::NodeCmd;
use kubelet_lite::node::NodeError;

use crate::datadir::DataDir;
use crate::state::{self, Running};

#[derive(clap::Args, Clone, Debug)]
pub struct NodeArgs {
    /// Where bonsai keeps its store, kubeconfig, token, logs and nodes.
    #[arg(
        long,
        env = "BONSAI_DATA_DIR",
        default_value = ".bonsai",
        global = true
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub cmd: NodeCmd,
}

/// The absolute data dir, as the node records name it.
pub(crate) fn data_root(path: &std::path::Path) -> Result<DataDir, NodeError> {
    DataDir::new(path).map_err(|e| NodeError::Other(e.to_string()))
}

pub fn run(args: &NodeArgs) -> Result<i32, NodeError> {
    let dir = data_root(&args.data_dir)?;
    if let NodeCmd::Start { .. } = args.cmd {
        let running = state::inspect(&dir).map_err(|e| NodeError::Other(e.to_string()))?;
        if !matches!(running, Running::Yes { .. }) {
            return Err(NodeError::Other(format!(
                "bonsai is not running in {}: a node needs its API server (`bonsai up` starts \
                 the cluster with its nodes)",
                dir.root.display()
            )));
        }
    }
    args.cmd.run(&dir.root)
}
