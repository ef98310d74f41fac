//! The deterministic core of the kubelet: it decides, the driver acts.
//!
//! Nothing in here awaits, reads a clock (`now` is passed in as milliseconds since the Unix
//! epoch), touches the filesystem or iterates a HashMap. Inputs arrive through `handle_*`
//! methods and plain function arguments; the outputs are data — [`MountOp`]s for the mounter,
//! [`pod::Action`]s for the runtime and the API client.
//!
//! - [`volumes`]: §9 of the volume-binding reference — resolve PVC → PV, re-check node
//!   affinity, check the path, and plan the mounts ([`volumes::plan_volumes`]).
//! - [`pod`]: one pod's lifecycle — volumes, containers, restarts with back-off, graceful
//!   deletion — and the PodStatus it reports.
//! - [`provisioner`]: §10 — the static local provisioner's names, capacities and PV objects.

pub mod pod;
pub mod provisioner;
pub mod volumes;

use std::path::PathBuf;

pub use crate::mounter::MountError;

/// Milliseconds since the Unix epoch; the driver is the only reader of the clock.
pub type Millis = u64;

/// One step of preparing or tearing down a pod's volumes. Plain data: the core plans, the
/// mounter executes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountOp {
    /// Create a per-pod directory (mode 0750, as the kubelet does).
    CreateDir { path: PathBuf },
    /// Mount a fresh tmpfs at `target` (emptyDir with medium Memory), size-limited.
    MountTmpfs {
        target: PathBuf,
        size_bytes: Option<u64>,
    },
    /// Make `source` visible at `target` in the node's mount namespace.
    BindMount {
        source: PathBuf,
        target: PathBuf,
        read_only: bool,
    },
    /// Unmount every mount stacked on `target`.
    Unmount { target: PathBuf },
    /// Remove an (empty) directory: a mount point after its unmount. Never recursive, so a
    /// volume's data can never be deleted through it.
    RemoveDir { path: PathBuf },
    /// Remove a node-local directory tree that belongs to the pod alone (an emptyDir on disk,
    /// the pod's own bookkeeping). The mounter refuses to cross into another filesystem.
    RemoveTree { path: PathBuf },
}

/// Executes mount operations. `LinuxMounter` calls the kernel; [`RecordingMounter`] appends to a
/// `Vec<MountOp>` for tests.
pub trait Mounter {
    fn apply(&mut self, op: &MountOp) -> Result<(), MountError>;
}

/// Records operations instead of executing them.
#[derive(Debug, Default)]
pub struct RecordingMounter {
    pub ops: Vec<MountOp>,
}

impl Mounter for RecordingMounter {
    fn apply(&mut self, op: &MountOp) -> Result<(), MountError> {
        self.ops.push(op.clone());
        Ok(())
    }
}

/// RFC 3339 (seconds) rendering of `now`, as Kubernetes' metav1.Time serializes.
pub fn rfc3339(ms: Millis) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// `metav1.Time` for `ms`.
pub fn k8s_time(ms: Millis) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    serde_json::from_value(serde_json::Value::String(rfc3339(ms))).expect("valid RFC 3339 time")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_renders_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_060_000_000), "2025-11-25T08:40:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
