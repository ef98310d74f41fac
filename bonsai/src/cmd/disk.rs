//! `bonsai disk add|ls|rm`: a node's disks — real mounts at `/mnt/disks/NAME` inside the node's
//! own mount namespace (a tmpfs, the lesson's `mount -t tmpfs`, or an ext4 loop disk), never in
//! the host's. The commands are kubelet-lite's (`kubelet_lite::cli::DiskCmd`).

use std::path::PathBuf;

use kubelet_lite::cli::DiskCmd;
use kubelet_lite::node::NodeError;

#[derive(clap::Args, Clone, Debug)]
pub struct DiskArgs {
    /// Where bonsai keeps its store, kubeconfig, token, logs and nodes.
    #[arg(
        long,
        env = "BONSAI_DATA_DIR",
        default_value = ".bonsai",
        global = true
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub cmd: DiskCmd,
}

pub fn run(args: &DiskArgs) -> Result<i32, NodeError> {
    let dir = crate::cmd::node::data_root(&args.data_dir)?;
    args.cmd.run(&dir.root)
}
