//! Taint and toleration arithmetic, as `k8s.io/api/core/v1` helpers and
//! `pkg/apis/core/v1/helper` define it. Pure functions over the typed objects.

use k8s_openapi::api::core::v1::{NodeCondition, Taint, Toleration};

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// `taintKeyToNodeConditionMap`: the NoSchedule taints the node lifecycle controller owns
/// (besides `node.kubernetes.io/unschedulable`).
pub const CONDITION_TAINT_KEYS: [&str; 6] = [
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    TAINT_NETWORK_UNAVAILABLE,
    TAINT_MEMORY_PRESSURE,
    TAINT_DISK_PRESSURE,
    TAINT_PID_PRESSURE,
];

/// `nodeConditionToTaintKeyStatusMap`: which condition in which status means which taint key.
pub fn condition_taint_key(c: &NodeCondition) -> Option<&'static str> {
    match (c.type_.as_str(), c.status.as_str()) {
        ("Ready", "False") => Some(TAINT_NOT_READY),
        ("Ready", "Unknown") => Some(TAINT_UNREACHABLE),
        ("MemoryPressure", "True") => Some(TAINT_MEMORY_PRESSURE),
        ("DiskPressure", "True") => Some(TAINT_DISK_PRESSURE),
        ("NetworkUnavailable", "True") => Some(TAINT_NETWORK_UNAVAILABLE),
        ("PIDPressure", "True") => Some(TAINT_PID_PRESSURE),
        _ => None,
    }
}

/// `Taint.MatchTaint`: same key and effect (value and timeAdded do not matter).
pub fn same_taint(a: &Taint, key: &str, effect: &str) -> bool {
    a.key == key && a.effect == effect
}

/// `Toleration.ToleratesTaint` (v1.33: operators Equal and Exists).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// `v1helper.GetMatchingTolerations`: whether every taint is tolerated, and for each taint the
/// first toleration that tolerates it.
pub fn matching_tolerations<'a>(
    taints: &[Taint],
    tolerations: &'a [Toleration],
) -> (bool, Vec<&'a Toleration>) {
    let mut used = Vec::new();
    for taint in taints {
        match tolerations.iter().find(|t| tolerates(t, taint)) {
            Some(t) => used.push(t),
            None => return (false, Vec::new()),
        }
    }
    (true, used)
}

/// How long a pod may stay on a node with these NoExecute taints (`getMinTolerationTime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tolerated {
    /// Evict now.
    No,
    /// Evict after this many milliseconds.
    For(u64),
    /// Never evict (a matching toleration without `tolerationSeconds`).
    Forever,
}

/// `getMinTolerationTime` over the tolerations `matching_tolerations` used: none used → evict
/// now; any `tolerationSeconds <= 0` → now; no seconds at all → forever; else the smallest.
pub fn min_toleration(used: &[&Toleration]) -> Tolerated {
    if used.is_empty() {
        return Tolerated::No;
    }
    let mut min: Option<i64> = None;
    for t in used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return Tolerated::No;
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    match min {
        None => Tolerated::Forever,
        Some(s) => Tolerated::For(s as u64 * 1000),
    }
}

/// The NoExecute taints of a node (`getNoExecuteTaints`).
pub fn no_execute(taints: &[Taint]) -> Vec<Taint> {
    taints
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .cloned()
        .collect()
}
