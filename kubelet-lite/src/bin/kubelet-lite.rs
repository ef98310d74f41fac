//! A stand-alone bonsai node binary with the same entry points as `bonsai kubelet|node|disk`,
//! used by kubelet-lite's own integration tests (they need a binary that runs the helpers).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node.
    Kubelet(kubelet_lite::cli::KubeletArgs),
    /// Node commands.
    Node {
        #[arg(long)]
        data_dir: PathBuf,
        #[command(subcommand)]
        cmd: kubelet_lite::cli::NodeCmd,
    },
    /// Disk commands.
    Disk {
        #[arg(long)]
        data_dir: PathBuf,
        #[command(subcommand)]
        cmd: kubelet_lite::cli::DiskCmd,
    },
}

fn main() {
    kubelet_lite::helper_entry();
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Kubelet(args) => kubelet_lite::process_entry(args),
        Cmd::Node { data_dir, cmd } => cmd.run(&data_dir).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            1
        }),
        Cmd::Disk { data_dir, cmd } => cmd.run(&data_dir).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            1
        }),
    };
    std::process::exit(code);
}
