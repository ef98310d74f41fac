//! The node-only Filter plugins: NodeUnschedulable, NodeName, TaintToleration, NodeAffinity.
//! All their rejections are UnschedulableAndUnresolvable (preemption cannot change a node).

use k8s_openapi::api::core::v1::{Pod, Taint};

use crate::core::framework::{NodeInfo, Status};
use crate::core::selectors::tolerates;

/// NodeUnschedulable's reason.
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// NodeName's reason.
pub const ERR_REASON_NODE_NAME: &str = "node(s) didn't match the requested node name";
/// NodeAffinity's reason (nodeSelector or required node affinity).
pub const ERR_REASON_POD_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";

fn tolerations(pod: &Pod) -> &[k8s_openapi::api::core::v1::Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// NodeUnschedulable: `spec.unschedulable` unless the pod tolerates
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn node_unschedulable(pod: &Pod, node: &NodeInfo) -> Status {
    let unschedulable = node
        .node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !unschedulable {
        return Status::Success;
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        value: None,
        time_added: None,
    };
    if tolerations(pod).iter().any(|t| tolerates(t, &taint)) {
        Status::Success
    } else {
        Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
    }
}

/// NodeName: a pod that names a node fits only there.
pub fn node_name(pod: &Pod, node: &NodeInfo) -> Status {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(n) if !n.is_empty() && n != node.name() => Status::unresolvable(ERR_REASON_NODE_NAME),
        _ => Status::Success,
    }
}

/// TaintToleration: the first NoSchedule/NoExecute taint the pod does not tolerate.
pub fn taint_toleration(pod: &Pod, node: &NodeInfo) -> Status {
    let taints = node
        .node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    for taint in taints {
        if taint.effect != "NoSchedule" && taint.effect != "NoExecute" {
            continue;
        }
        if !tolerations(pod).iter().any(|t| tolerates(t, taint)) {
            return Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            ));
        }
    }
    Status::Success
}

/// NodeAffinity: `spec.nodeSelector` and the required node affinity.
pub fn node_affinity(pod: &Pod, node: &NodeInfo) -> Status {
    let Some(spec) = pod.spec.as_ref() else {
        return Status::Success;
    };
    let labels = node.labels();
    if let Some(sel) = &spec.node_selector {
        if sel.iter().any(|(k, v)| labels.get(k) != Some(v)) {
            return Status::unresolvable(ERR_REASON_POD_AFFINITY);
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(required) = required {
        if !apiserver::api::node_selector_terms_match(
            &required.node_selector_terms,
            labels,
            node.name(),
        )
        .unwrap_or(false)
        {
            return Status::unresolvable(ERR_REASON_POD_AFFINITY);
        }
    }
    Status::Success
}
