//! Counters the core keeps and the lead serves as Prometheus text on `/metrics`.
//! Atomics so a clone of the `Arc` can be read from the HTTP task while the driver task owns
//! the core; updating them is not I/O and keeps the core deterministic.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Claims this controller moved to phase Bound (bind step 4 committed).
    pub binds: AtomicU64,
    /// syncClaim runs.
    pub claim_syncs: AtomicU64,
    /// syncVolume runs.
    pub volume_syncs: AtomicU64,
    /// Protection-controller checks (pvc-protection and pv-protection).
    pub protection_syncs: AtomicU64,
    /// Writes answered 409 Conflict.
    pub conflicts: AtomicU64,
    /// Writes sent (PV/PVC updates, status updates).
    pub writes: AtomicU64,
    /// Writes that failed for another reason.
    pub write_errors: AtomicU64,
    /// Events recorded (first occurrences and repeats).
    pub events: AtomicU64,
    /// Work items waiting in the queue (gauge).
    pub queue_depth: AtomicU64,
    /// Requests handed to the driver and not yet completed (gauge).
    pub inflight: AtomicU64,
    /// Periodic resyncs performed.
    pub resyncs: AtomicU64,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn text(&self) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} counter");
            let _ = writeln!(s, "{name} {v}");
        };
        counter(
            "bonsai_volume_controller_binds_total",
            "Claims the PV controller moved to phase Bound.",
            self.binds.load(Relaxed),
        );
        counter(
            "bonsai_volume_controller_conflicts_total",
            "Writes rejected with 409 Conflict (each leads to a re-sync).",
            self.conflicts.load(Relaxed),
        );
        counter(
            "bonsai_volume_controller_writes_total",
            "API writes sent.",
            self.writes.load(Relaxed),
        );
        counter(
            "bonsai_volume_controller_write_errors_total",
            "API writes that failed other than by Conflict.",
            self.write_errors.load(Relaxed),
        );
        counter(
            "bonsai_volume_controller_events_total",
            "Events recorded.",
            self.events.load(Relaxed),
        );
        counter(
            "bonsai_volume_controller_resyncs_total",
            "Periodic resyncs of every PV and PVC.",
            self.resyncs.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP bonsai_volume_controller_syncs_total Sync runs by loop."
        );
        let _ = writeln!(s, "# TYPE bonsai_volume_controller_syncs_total counter");
        for (l, v) in [
            ("claim", &self.claim_syncs),
            ("volume", &self.volume_syncs),
            ("protection", &self.protection_syncs),
        ] {
            let _ = writeln!(
                s,
                "bonsai_volume_controller_syncs_total{{loop=\"{l}\"}} {}",
                v.load(Relaxed)
            );
        }
        for (name, help, v) in [
            (
                "bonsai_volume_controller_queue_depth",
                "Work items waiting.",
                &self.queue_depth,
            ),
            (
                "bonsai_volume_controller_inflight_requests",
                "Requests awaiting completion.",
                &self.inflight,
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} gauge");
            let _ = writeln!(s, "{name} {}", v.load(Relaxed));
        }
        s
    }
}
