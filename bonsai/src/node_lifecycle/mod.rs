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
//! - `core` — the deterministic state machine: `handle_*` inputs (Node, Lease and Pod watch
//!   events, write completions, timeouts, each with `now`), `poll_write` / `poll_timeout`
//!   outputs. No await, no clock, BTreeMaps only.
//! - `taints` — toleration arithmetic (`ToleratesTaint`, `GetMatchingTolerations`,
//!   `getMinTolerationTime`) and the well-known taint keys.
//! - `driver` — the tokio driver: kube-rs watchers in, API writes out ([`run`], [`client`]).
//! - `tests` — unit tests of the core, driven with explicit times.

pub mod core;
pub mod driver;
pub mod taints;
#[cfg(test)]
mod tests;

pub use driver::{client, run, MetricsHandle, NodeLifecycleConfig};

/// `bonsai up`'s lab defaults (kube-controller-manager: 50 s grace, kube-apiserver: 300 s
/// tolerations). Why these numbers: see examples/node-failure/README.md.
pub const LAB_NODE_MONITOR_GRACE_PERIOD: std::time::Duration = std::time::Duration::from_secs(8);
pub const LAB_DEFAULT_TOLERATION_SECONDS: i64 = 10;
/// With `--fake-nodes`: kube-controller-manager's own grace period, so that thousands of
/// in-process Leases are renewed every ~6 s rather than every second.
pub const FAKE_NODES_GRACE_PERIOD: std::time::Duration = std::time::Duration::from_secs(50);

/// The kubelets' Lease duration for a grace period: half of it (the kubelet renews every
/// quarter of its Lease, so a grace period spans eight renewals, as upstream's 40 s Lease / 10 s
/// renewals against a 50 s grace period span five), between 1 s and the kubelet's 40 s.
pub fn lease_duration_seconds(grace: std::time::Duration) -> i32 {
    (grace.as_secs() / 2).clamp(1, 40) as i32
}

/// Parses a Go-style duration as kube-controller-manager's flags take it: `8s`, `500ms`,
/// `1m30s`, `2m`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} (expected a duration such as 8s, 500ms or 1m30s)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let mut total_ms: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let n: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms_per = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return Err(bad()),
        };
        total_ms += (n * ms_per).round() as u64;
        rest = &rest[unit_len..];
    }
    Ok(std::time::Duration::from_millis(total_ms))
}

#[cfg(test)]
mod parse_tests {
    use std::time::Duration;

    #[test]
    fn durations_as_go_spells_them() {
        assert_eq!(super::parse_duration("8s"), Ok(Duration::from_secs(8)));
        assert_eq!(super::parse_duration("8"), Ok(Duration::from_secs(8)));
        assert_eq!(
            super::parse_duration("500ms"),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(super::parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            super::parse_duration("1.5s"),
            Ok(Duration::from_millis(1500))
        );
        assert!(super::parse_duration("8x").is_err());
        assert!(super::parse_duration("").is_err());
        assert!(super::parse_duration("s").is_err());
        assert_eq!(super::lease_duration_seconds(Duration::from_secs(8)), 4);
        assert_eq!(super::lease_duration_seconds(Duration::from_secs(50)), 25);
        assert_eq!(super::lease_duration_seconds(Duration::from_secs(1)), 1);
    }
}
