//! InterPodAffinity: required pod affinity and anti-affinity (any topology key; bonsai's
//! nodes carry `kubernetes.io/hostname`, the usual one).
//!
//! PreFilter computes, once per attempt, which topology domains (key, value) hold pods that
//! match each term; Filter then only looks up the node's own domain.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use crate::core::cluster::ClusterView;
use crate::core::framework::{NodeInfo, Status};
use crate::core::selectors::labels_of;

/// The pod's affinity terms do not match any pod in the node's domain.
pub const ERR_REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// The pod's anti-affinity terms match a pod in the node's domain.
pub const ERR_REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// An existing pod's anti-affinity rejects the incoming pod in the node's domain.
pub const ERR_REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

type Domain = (String, String);

/// PreFilter's precomputation.
#[derive(Debug, Clone, Default)]
pub struct InterPodAffinityState {
    /// Per affinity term of the incoming pod: the domains holding a matching pod.
    affinity: Vec<(String, BTreeSet<String>)>,
    /// No pod anywhere matches the affinity terms, but the pod matches them itself
    /// (the first pod of a group may go anywhere the topology keys exist).
    affinity_self_match: bool,
    /// Per anti-affinity term: the domains holding a matching pod.
    anti_affinity: Vec<(String, BTreeSet<String>)>,
    /// Domains where an existing pod's anti-affinity rejects the incoming pod.
    existing_anti: BTreeSet<Domain>,
}

fn terms(pod: &Pod, anti: bool) -> &[PodAffinityTerm] {
    let a = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let t = if anti {
        a.and_then(|a| a.pod_anti_affinity.as_ref()).and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
    } else {
        a.and_then(|a| a.pod_affinity.as_ref()).and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_deref()
        })
    };
    t.unwrap_or(&[])
}

/// Whether `term`, owned by a pod in `owner_ns`, selects `target`.
fn term_matches(term: &PodAffinityTerm, owner_ns: &str, target: &Pod) -> bool {
    let target_ns = target.metadata.namespace.as_deref().unwrap_or("default");
    let listed = term.namespaces.as_deref().unwrap_or(&[]);
    // namespaceSelector `{}` selects every namespace; bonsai does not watch namespace labels,
    // so a non-empty one selects none beyond the listed namespaces.
    let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    });
    let ns_ok = if all_namespaces {
        true
    } else if listed.is_empty() && term.namespace_selector.is_none() {
        target_ns == owner_ns
    } else {
        listed.iter().any(|n| n == target_ns)
    };
    ns_ok
        && term.label_selector.as_ref().is_some_and(|s| {
            apiserver::api::label_selector_matches(s, labels_of(&target.metadata)).unwrap_or(false)
        })
}

/// PreFilter: Skip when neither the pod nor any placed pod has required (anti-)affinity.
pub fn pre_filter(view: &ClusterView, pod: &Pod) -> (Status, Option<InterPodAffinityState>) {
    let aff = terms(pod, false);
    let anti = terms(pod, true);
    if aff.is_empty() && anti.is_empty() && view.with_anti_affinity.is_empty() {
        return (Status::Skip, None);
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut st = InterPodAffinityState {
        affinity: aff
            .iter()
            .map(|t| (t.topology_key.clone(), BTreeSet::new()))
            .collect(),
        anti_affinity: anti
            .iter()
            .map(|t| (t.topology_key.clone(), BTreeSet::new()))
            .collect(),
        ..Default::default()
    };
    let me = crate::core::cluster::key_of(&pod.metadata);
    for (key, (node_name, _)) in &view.placed {
        if *key == me {
            continue;
        }
        let (Some(other), Some(node)) = (view.pods.get(key), view.nodes.get(node_name)) else {
            continue;
        };
        let labels = node.labels();
        let other_ns = other.metadata.namespace.as_deref().unwrap_or("default");
        for (i, t) in aff.iter().enumerate() {
            if let Some(v) = labels.get(&t.topology_key) {
                if term_matches(t, ns, other) {
                    st.affinity[i].1.insert(v.clone());
                }
            }
        }
        for (i, t) in anti.iter().enumerate() {
            if let Some(v) = labels.get(&t.topology_key) {
                if term_matches(t, ns, other) {
                    st.anti_affinity[i].1.insert(v.clone());
                }
            }
        }
        if view.with_anti_affinity.contains(key) {
            for t in terms(other, true) {
                if let Some(v) = labels.get(&t.topology_key) {
                    if term_matches(t, other_ns, pod) {
                        st.existing_anti.insert((t.topology_key.clone(), v.clone()));
                    }
                }
            }
        }
    }
    st.affinity_self_match = !aff.is_empty()
        && st.affinity.iter().all(|(_, d)| d.is_empty())
        && aff.iter().all(|t| term_matches(t, ns, pod));
    (Status::Success, Some(st))
}

/// Filter: affinity (unresolvable), then the pod's anti-affinity, then existing pods'
/// anti-affinity (both plain Unschedulable).
pub fn filter(st: &InterPodAffinityState, node: &NodeInfo) -> Status {
    let labels = node.labels();
    let affinity_ok = if st.affinity_self_match {
        st.affinity.iter().all(|(k, _)| labels.contains_key(k))
    } else {
        st.affinity
            .iter()
            .all(|(k, domains)| labels.get(k).is_some_and(|v| domains.contains(v)))
    };
    if !affinity_ok {
        return Status::unresolvable(ERR_REASON_AFFINITY);
    }
    if st
        .anti_affinity
        .iter()
        .any(|(k, domains)| labels.get(k).is_some_and(|v| domains.contains(v)))
    {
        return Status::unschedulable(ERR_REASON_ANTI_AFFINITY);
    }
    if st
        .existing_anti
        .iter()
        .any(|(k, v)| labels.get(k) == Some(v))
    {
        return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY);
    }
    Status::Success
}
