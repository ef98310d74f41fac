//! The scheduling framework, reduced to what bonsai needs: statuses, the per-attempt cycle
//! state, node infos, and the FitError message (§5.5).
//!
//! Extension points and their plugins, in upstream's default order:
//!
//! | point     | plugins |
//! |-----------|---------|
//! | PreFilter | NodeAffinity, NodeResourcesFit, VolumeBinding, InterPodAffinity |
//! | Filter    | NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodeResourcesFit, VolumeBinding, InterPodAffinity |
//! | PostFilter| DefaultPreemption (bonsai has no priorities: it only explains why it cannot help) |
//! | Score     | fewest pods, then node name (deterministic) |
//! | Reserve   | VolumeBinding (assume cache), then the pod is assumed on the node |
//! | PreBind   | VolumeBinding (PV/PVC writes, then wait for the volume controller) |
//! | Bind      | DefaultBinder (`pods/binding`) |
//!
//! Filtering of a node stops at its first failing plugin; only that plugin's reasons count.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;

use super::plugins::inter_pod_affinity::InterPodAffinityState;
use super::plugins::volume_binding::{PodVolumeClaims, PodVolumes};
use super::queue::PodKey;

/// Plugin names, as upstream spells them (they appear in messages and metrics).
pub mod names {
    /// NodeUnschedulable.
    pub const NODE_UNSCHEDULABLE: &str = "NodeUnschedulable";
    /// NodeName.
    pub const NODE_NAME: &str = "NodeName";
    /// TaintToleration.
    pub const TAINT_TOLERATION: &str = "TaintToleration";
    /// NodeAffinity.
    pub const NODE_AFFINITY: &str = "NodeAffinity";
    /// NodeResourcesFit.
    pub const NODE_RESOURCES_FIT: &str = "NodeResourcesFit";
    /// VolumeBinding.
    pub const VOLUME_BINDING: &str = "VolumeBinding";
    /// InterPodAffinity.
    pub const INTER_POD_AFFINITY: &str = "InterPodAffinity";
    /// DefaultBinder.
    pub const DEFAULT_BINDER: &str = "DefaultBinder";
}

/// What a plugin concluded about one pod (on one node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Fits.
    Success,
    /// PreFilter only: the plugin has nothing to check for this pod.
    Skip,
    /// Does not fit now; preemption could help in principle.
    Unschedulable(Vec<String>),
    /// Does not fit and preemption cannot help.
    UnschedulableAndUnresolvable(Vec<String>),
    /// Something unexpected: the attempt fails with this error and the pod backs off.
    Error(String),
}

impl Status {
    /// A plain Unschedulable status with one reason.
    pub fn unschedulable(reason: impl Into<String>) -> Status {
        Status::Unschedulable(vec![reason.into()])
    }
    /// An UnschedulableAndUnresolvable status with one reason.
    pub fn unresolvable(reason: impl Into<String>) -> Status {
        Status::UnschedulableAndUnresolvable(vec![reason.into()])
    }
    /// Success or Skip.
    pub fn is_success(&self) -> bool {
        matches!(self, Status::Success | Status::Skip)
    }
    /// The reasons of a rejection.
    pub fn reasons(&self) -> &[String] {
        match self {
            Status::Unschedulable(r) | Status::UnschedulableAndUnresolvable(r) => r,
            _ => &[],
        }
    }
}

/// cpu (millicores), memory (bytes) and pod count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Millicores.
    pub milli_cpu: i128,
    /// Bytes.
    pub memory: i128,
}

/// A node plus the pods the scheduler counts on it (bound or assumed).
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The Node object (None while only pods name it).
    pub node: Option<Node>,
    /// Pods counted on this node.
    pub pods: BTreeSet<PodKey>,
    /// Sum of their requests.
    pub requested: Resources,
    /// Allocatable (falling back to capacity), parsed once per node update: cpu, memory and
    /// the pod count (None when the node does not say).
    pub allocatable: Allocatable,
    /// The node's `kubernetes.io/hostname` label, copied out when the node is set: Filter
    /// reads it for every node it visits, and a copy beside the node's counters is one cache
    /// miss where a lookup in the label map is several.
    pub(crate) hostname: Option<String>,
}

/// A node's allocatable resources, parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocatable {
    /// Millicores.
    pub milli_cpu: i128,
    /// Bytes.
    pub memory: i128,
    /// Pods.
    pub pods: Option<i128>,
}

impl NodeInfo {
    /// The node's name.
    pub fn name(&self) -> &str {
        self.node
            .as_ref()
            .and_then(|n| n.metadata.name.as_deref())
            .unwrap_or("")
    }
    /// The node's `kubernetes.io/hostname` label.
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref()
    }
    /// The node's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&EMPTY)
    }
}

/// Per-attempt plugin state (upstream's CycleState), typed instead of a map of `any`.
#[derive(Debug, Clone, Default)]
pub struct CycleState {
    /// Plugins whose PreFilter returned Skip: their Filter is not run.
    pub skip_filter: BTreeSet<&'static str>,
    /// NodeResourcesFit: the pod's requests.
    pub pod_requests: Resources,
    /// VolumeBinding: the classified claims.
    pub volume_claims: Option<PodVolumeClaims>,
    /// VolumeBinding: Filter's result per feasible node.
    pub volumes_by_node: BTreeMap<String, PodVolumes>,
    /// VolumeBinding: what Reserve decided for the chosen node (None: all bound).
    pub reserved_volumes: Option<PodVolumes>,
    /// InterPodAffinity: topology counts computed once per attempt.
    pub inter_pod: Option<InterPodAffinityState>,
}

/// Why a pod did not fit, for the FitError message and the PostFilter tail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// Number of nodes in the snapshot.
    pub num_all_nodes: usize,
    /// Set when a PreFilter rejected the pod (every node shares that status).
    pub pre_filter_msg: Option<String>,
    /// Whether the PreFilter rejection was UnschedulableAndUnresolvable.
    pub pre_filter_unresolvable: bool,
    /// Per node, the reasons of its first failing plugin and whether they were unresolvable.
    pub node_reasons: BTreeMap<String, (Vec<String>, bool)>,
    /// The plugins that rejected the pod (for requeueing).
    pub rejected_by: BTreeSet<&'static str>,
}

fn histogram<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in items {
        *counts.entry(r).or_default() += 1;
    }
    let mut parts: Vec<String> = counts
        .into_iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    parts.sort();
    parts.join(", ")
}

impl Diagnosis {
    /// DefaultPreemption's PostFilter message. bonsai has no priorities, so preemption never
    /// finds victims: nodes rejected as merely Unschedulable read "No preemption victims found
    /// for incoming pod", the others "Preemption is not helpful for scheduling".
    pub fn post_filter_msg(&self) -> String {
        let n = self.num_all_nodes;
        let mut per_node: Vec<&str> = Vec::with_capacity(n);
        if self.pre_filter_msg.is_some() {
            let r = if self.pre_filter_unresolvable {
                "Preemption is not helpful for scheduling"
            } else {
                "No preemption victims found for incoming pod"
            };
            per_node.extend(std::iter::repeat_n(r, n));
        } else {
            for (_, unresolvable) in self.node_reasons.values() {
                per_node.push(if *unresolvable {
                    "Preemption is not helpful for scheduling"
                } else {
                    "No preemption victims found for incoming pod"
                });
            }
        }
        format!(
            "preemption: 0/{n} nodes are available: {}",
            histogram(per_node.into_iter())
        )
    }

    /// The FitError text (`FitError.Error()` in v1.33), including the PostFilter tail.
    pub fn fit_error_message(&self) -> String {
        let mut msg = format!("0/{} nodes are available:", self.num_all_nodes);
        match &self.pre_filter_msg {
            Some(m) => msg.push_str(&format!(" {m}.")),
            None => {
                let h = histogram(
                    self.node_reasons
                        .values()
                        .flat_map(|(rs, _)| rs.iter().map(String::as_str)),
                );
                if !h.is_empty() {
                    msg.push_str(&format!(" {h}."));
                }
            }
        }
        msg.push_str(&format!(" {}.", self.post_filter_msg()));
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(d: &mut Diagnosis, name: &str, reasons: &[&str], unresolvable: bool) {
        d.node_reasons.insert(
            name.into(),
            (
                reasons.iter().map(|s| s.to_string()).collect(),
                unresolvable,
            ),
        );
    }

    #[test]
    fn prefilter_rejection_message() {
        let d = Diagnosis {
            num_all_nodes: 1,
            pre_filter_msg: Some("pod has unbound immediate PersistentVolumeClaims".into()),
            pre_filter_unresolvable: true,
            ..Default::default()
        };
        assert_eq!(
            d.fit_error_message(),
            "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
        let d = Diagnosis {
            num_all_nodes: 2,
            pre_filter_msg: Some("persistentvolumeclaim \"data\" not found".into()),
            pre_filter_unresolvable: true,
            ..Default::default()
        };
        assert_eq!(
            d.fit_error_message(),
            "0/2 nodes are available: persistentvolumeclaim \"data\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn histogram_is_sorted_lexicographically() {
        let mut d = Diagnosis {
            num_all_nodes: 3,
            ..Default::default()
        };
        node(
            &mut d,
            "node-1",
            &["node(s) didn't match Pod's node affinity/selector"],
            true,
        );
        node(
            &mut d,
            "node-2",
            &["node(s) didn't match Pod's node affinity/selector"],
            true,
        );
        node(
            &mut d,
            "node-3",
            &["node(s) had volume node affinity conflict"],
            true,
        );
        assert_eq!(
            d.fit_error_message(),
            "0/3 nodes are available: 1 node(s) had volume node affinity conflict, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn preemption_tail_counts_plain_unschedulable_nodes_as_without_victims() {
        let mut d = Diagnosis {
            num_all_nodes: 3,
            ..Default::default()
        };
        node(
            &mut d,
            "node-1",
            &["Insufficient cpu", "Insufficient memory"],
            false,
        );
        node(&mut d, "node-2", &["Insufficient cpu"], false);
        node(
            &mut d,
            "node-3",
            &["node(s) had untolerated taint {dedicated: db}"],
            true,
        );
        assert_eq!(
            d.fit_error_message(),
            "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
    }
}
