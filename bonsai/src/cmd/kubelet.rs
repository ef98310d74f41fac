//! `bonsai kubelet …` (internal): one node, as `bonsai up` and `bonsai node start` run it.
//!
//! The node process unshares its mount and PID namespaces and forks its init and kubelet, which
//! the kernel allows only in a single-threaded process; `main` therefore dispatches here before
//! any tokio runtime (or other thread) exists, and the process exits with the returned code.

/// Runs the node until it is stopped; returns its exit code.
pub fn run(args: kubelet_lite::cli::KubeletArgs) -> i32 {
    kubelet_lite::process_entry(args)
}
