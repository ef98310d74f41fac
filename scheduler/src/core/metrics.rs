//! Scheduler metrics in Prometheus text format, under upstream's names:
//! `scheduler_schedule_attempts_total{result,profile}`,
//! `scheduler_scheduling_attempt_duration_seconds{result,profile}` (pop → outcome, including
//! PreBind's wait for the volume controller), `scheduler_pod_scheduling_sli_duration_seconds`
//! (first seen → bound) and `scheduler_pending_pods{queue}`.
//!
//! Plain counters: the core updates them, the driver copies them out for `/metrics`.

use std::fmt::Write;

/// Outcome of one scheduling attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// Bound.
    Scheduled,
    /// Did not fit.
    Unschedulable,
    /// Failed with an error (PreBind, Bind, Reserve…).
    Error,
}

/// Histogram bucket upper bounds, in seconds (upstream's exponential 1 ms … ~16 s, plus more).
const BUCKETS: [f64; 16] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384, 60.0,
];

/// A cumulative histogram of durations in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; 16],
    count: u64,
    sum_ms: u64,
}

impl Histogram {
    fn observe(&mut self, ms: u64) {
        let s = ms as f64 / 1000.0;
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum_ms += ms;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_ms as f64 / 1000.0
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Everything `/metrics` shows for the scheduler.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Attempts by result: scheduled, unschedulable, error.
    pub attempts: [u64; 3],
    /// Attempt durations by result.
    pub attempt_duration: [Histogram; 3],
    /// First seen → bound.
    pub pod_scheduling: Histogram,
    /// Every first-seen → bound latency in ms, in completion order (the benchmark's p99).
    pub scheduled_latencies_ms: Vec<u64>,
    /// Every successful attempt's pop → bound latency in ms (the benchmark's p99).
    pub attempt_latencies_ms: Vec<u64>,
    /// active, backoff, unschedulable, and binding cycles in flight.
    pub pending: [usize; 4],
    /// Where each bound pod's time went, in ms, in completion order (the benchmark's
    /// breakdown): `[queued (first seen → popped), PreBind writes (Reserve → the last PV/PVC
    /// write acknowledged), PreBind wait (→ the volume controller's binds seen through the
    /// watch), Bind (pods/binding sent → acknowledged)]`.
    pub phases_ms: Vec<[u64; 4]>,
    /// When every watched kind had delivered its initial list (the informers synced).
    pub synced_at_ms: Option<u64>,
    /// When the last pod was bound.
    pub last_scheduled_at_ms: u64,
    /// PreBind and Bind durations (`scheduler_framework_extension_point_duration_seconds`).
    pub extension_point: [Histogram; 2],
}

const RESULTS: [&str; 3] = ["scheduled", "unschedulable", "error"];
const MAX_SAMPLES: usize = 1_000_000;

impl Metrics {
    pub(crate) fn attempt(&mut self, result: AttemptResult, ms: u64) {
        let i = result as usize;
        self.attempts[i] += 1;
        self.attempt_duration[i].observe(ms);
        if result == AttemptResult::Scheduled && self.attempt_latencies_ms.len() < MAX_SAMPLES {
            self.attempt_latencies_ms.push(ms);
        }
    }

    pub(crate) fn pod_scheduled(&mut self, ms: u64) {
        self.pod_scheduling.observe(ms);
        if self.scheduled_latencies_ms.len() < MAX_SAMPLES {
            self.scheduled_latencies_ms.push(ms);
        }
    }

    pub(crate) fn binding_phases(&mut self, phases: [u64; 4]) {
        self.extension_point[0].observe(phases[1] + phases[2]);
        self.extension_point[1].observe(phases[3]);
        if self.phases_ms.len() < MAX_SAMPLES {
            self.phases_ms.push(phases);
        }
    }

    pub(crate) fn set_queue_sizes(&mut self, (a, b, u): (usize, usize, usize), binding: usize) {
        self.pending = [a, b, u, binding];
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP scheduler_schedule_attempts_total Number of attempts to schedule pods, by the result.\n");
        out.push_str("# TYPE scheduler_schedule_attempts_total counter\n");
        for (i, r) in RESULTS.iter().enumerate() {
            let _ = writeln!(
                out,
                "scheduler_schedule_attempts_total{{profile=\"default-scheduler\",result=\"{r}\"}} {}",
                self.attempts[i]
            );
        }
        out.push_str("# HELP scheduler_scheduling_attempt_duration_seconds Scheduling attempt latency in seconds (scheduling algorithm + binding).\n");
        out.push_str("# TYPE scheduler_scheduling_attempt_duration_seconds histogram\n");
        for (i, r) in RESULTS.iter().enumerate() {
            self.attempt_duration[i].render(
                &mut out,
                "scheduler_scheduling_attempt_duration_seconds",
                &format!("profile=\"default-scheduler\",result=\"{r}\""),
            );
        }
        out.push_str("# HELP scheduler_pod_scheduling_sli_duration_seconds E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue.\n");
        out.push_str("# TYPE scheduler_pod_scheduling_sli_duration_seconds histogram\n");
        self.pod_scheduling.render(
            &mut out,
            "scheduler_pod_scheduling_sli_duration_seconds",
            "",
        );
        out.push_str("# HELP scheduler_framework_extension_point_duration_seconds Latency for running all plugins of a specific extension point.\n");
        out.push_str("# TYPE scheduler_framework_extension_point_duration_seconds histogram\n");
        for (i, point) in ["PreBind", "Bind"].iter().enumerate() {
            self.extension_point[i].render(
                &mut out,
                "scheduler_framework_extension_point_duration_seconds",
                &format!(
                    "extension_point=\"{point}\",profile=\"default-scheduler\",status=\"Success\""
                ),
            );
        }
        out.push_str("# HELP scheduler_pending_pods Number of pending pods, by the queue type.\n");
        out.push_str("# TYPE scheduler_pending_pods gauge\n");
        for (i, q) in ["active", "backoff", "unschedulable"].iter().enumerate() {
            let _ = writeln!(
                out,
                "scheduler_pending_pods{{queue=\"{q}\"}} {}",
                self.pending[i]
            );
        }
        out.push_str("# HELP scheduler_goroutines Number of running binding cycles (PreBind waits included).\n");
        out.push_str("# TYPE scheduler_goroutines gauge\n");
        let _ = writeln!(
            out,
            "scheduler_goroutines{{operation=\"binding\"}} {}",
            self.pending[3]
        );
        out
    }
}
