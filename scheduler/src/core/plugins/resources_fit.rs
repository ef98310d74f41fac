//! NodeResourcesFit: cpu and memory requests against allocatable, and the pod count.
//! Its rejections are plain Unschedulable (preemption could, in principle, free room).

use k8s_openapi::api::core::v1::Pod;

use crate::core::framework::{Allocatable, NodeInfo, Resources, Status};
use crate::core::quantity::parse_milli;

fn add(
    req: &mut Resources,
    map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) {
    if let Some(m) = map {
        if let Some(q) = m.get("cpu").and_then(|q| parse_milli(&q.0)) {
            req.milli_cpu += q;
        }
        if let Some(q) = m.get("memory").and_then(|q| parse_milli(&q.0)) {
            // milli-bytes → bytes, rounding up.
            req.memory += (q + 999) / 1000;
        }
    }
}

/// The pod's effective requests: the sum over containers, at least the largest init container,
/// plus the pod overhead.
pub fn pod_requests(pod: &Pod) -> Resources {
    let mut sum = Resources::default();
    let Some(spec) = pod.spec.as_ref() else {
        return sum;
    };
    for c in &spec.containers {
        add(
            &mut sum,
            c.resources.as_ref().and_then(|r| r.requests.as_ref()),
        );
    }
    for c in spec.init_containers.iter().flatten() {
        let mut one = Resources::default();
        add(
            &mut one,
            c.resources.as_ref().and_then(|r| r.requests.as_ref()),
        );
        sum.milli_cpu = sum.milli_cpu.max(one.milli_cpu);
        sum.memory = sum.memory.max(one.memory);
    }
    add(&mut sum, spec.overhead.as_ref());
    sum
}

/// Parses a node's allocatable (capacity when allocatable is absent).
pub fn allocatable_of(n: &k8s_openapi::api::core::v1::Node) -> Allocatable {
    let status = n.status.as_ref();
    let alloc = status
        .and_then(|s| s.allocatable.as_ref())
        .or_else(|| status.and_then(|s| s.capacity.as_ref()));
    let get = |k: &str| alloc.and_then(|m| m.get(k)).and_then(|q| parse_milli(&q.0));
    Allocatable {
        milli_cpu: get("cpu").unwrap_or(0),
        memory: get("memory").map(|m| m / 1000).unwrap_or(0),
        pods: get("pods").map(|p| p / 1000),
    }
}

/// Filter: "Too many pods", "Insufficient cpu", "Insufficient memory" (every failing one).
pub fn filter(requests: &Resources, node: &NodeInfo) -> Status {
    if node.node.is_none() {
        return Status::Success;
    }
    let alloc = node.allocatable;
    let mut reasons = Vec::new();
    if let Some(pods) = alloc.pods {
        if node.pods.len() as i128 + 1 > pods {
            reasons.push("Too many pods".to_string());
        }
    }
    if requests.milli_cpu > 0 && requests.milli_cpu > alloc.milli_cpu - node.requested.milli_cpu {
        reasons.push("Insufficient cpu".to_string());
    }
    if requests.memory > 0 && requests.memory > alloc.memory - node.requested.memory {
        reasons.push("Insufficient memory".to_string());
    }
    if reasons.is_empty() {
        Status::Success
    } else {
        Status::Unschedulable(reasons)
    }
}
