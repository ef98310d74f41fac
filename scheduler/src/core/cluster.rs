//! The scheduler's view of the cluster, built from watch events (the informers' caches):
//! nodes with the pods counted on them, every pod, the PV and PVC assume caches, storage
//! classes and CSIStorageCapacities.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIStorageCapacity, StorageClass};

use super::assume::AssumeCache;
use super::framework::{NodeInfo, Resources};
use super::plugins::resources_fit::pod_requests;
use super::queue::PodKey;

const HOSTNAME: &str = apiserver::api::LABEL_HOSTNAME;

/// `namespace/name` of a namespaced object.
pub fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or("")
    )
}

/// Whether a pod has finished (Succeeded/Failed): the scheduler's pod informer excludes them.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// The snapshot every plugin reads.
#[derive(Debug, Default)]
pub struct ClusterView {
    /// By node name (BTreeMap: node order is name order, deterministically).
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Every non-terminal pod, by `namespace/name`.
    pub pods: BTreeMap<PodKey, Pod>,
    /// Where each pod is counted, and with which requests (bound or assumed).
    pub placed: BTreeMap<PodKey, (String, Resources)>,
    /// Pods assumed by Reserve but not yet seen bound.
    pub assumed: BTreeSet<PodKey>,
    /// Placed pods with required pod anti-affinity (InterPodAffinity's fast path).
    pub with_anti_affinity: BTreeSet<PodKey>,
    /// PersistentVolumes by name.
    pub pvs: AssumeCache<PersistentVolume>,
    /// VolumeBinding's index of the PVs (by class and hostname, free counts), kept in step
    /// with `pvs` by the PV methods below.
    pub pv_index: super::plugins::volume_binding::PvIndex,
    /// PersistentVolumeClaims by `namespace/name`.
    pub pvcs: AssumeCache<PersistentVolumeClaim>,
    /// StorageClasses by name.
    pub classes: BTreeMap<String, StorageClass>,
    /// CSIStorageCapacities by `namespace/name`.
    pub capacities: BTreeMap<String, CSIStorageCapacity>,
    /// Names of the nodes that have a Node object, in name order (the Filter scan order).
    pub node_order: Vec<String>,
    /// `kubernetes.io/hostname` label value → node names (VolumeBinding's eligible nodes).
    pub by_hostname: BTreeMap<String, BTreeSet<String>>,
    /// StorageClass name → the nodes whose hostname bucket in `pv_index` has a PV of that class
    /// without claimRef (latest versions). VolumeBinding's Filter scan visits only these nodes
    /// for a claim that no other PV could serve (`PreparedClaims::candidate_nodes`).
    pub free_nodes: BTreeMap<String, BTreeSet<String>>,
    /// CSI drivers with `spec.storageCapacity: true` (§6.4); no CSIDriver objects exist in
    /// bonsai yet, so this stays empty and capacity is ignored, as upstream does then.
    pub capacity_drivers: BTreeSet<String>,
}

fn has_required_anti_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|t| !t.is_empty())
}

impl ClusterView {
    /// Number of Node objects.
    pub fn num_nodes(&self) -> usize {
        self.node_order.len()
    }

    /// Counts `pod` on `node` (replacing an earlier placement).
    pub fn place(&mut self, key: &str, node: &str, pod: &Pod) {
        if let Some((n, _)) = self.placed.get(key) {
            if n == node {
                return;
            }
            self.unplace(key);
        }
        let req = pod_requests(pod);
        let info = self.nodes.entry(node.to_string()).or_default();
        info.pods.insert(key.to_string());
        info.requested.milli_cpu += req.milli_cpu;
        info.requested.memory += req.memory;
        self.placed.insert(key.to_string(), (node.to_string(), req));
        if has_required_anti_affinity(pod) {
            self.with_anti_affinity.insert(key.to_string());
        }
    }

    /// Stops counting `key` anywhere.
    pub fn unplace(&mut self, key: &str) {
        if let Some((node, req)) = self.placed.remove(key) {
            if let Some(info) = self.nodes.get_mut(&node) {
                info.pods.remove(key);
                info.requested.milli_cpu -= req.milli_cpu;
                info.requested.memory -= req.memory;
                if info.node.is_none() && info.pods.is_empty() {
                    self.nodes.remove(&node);
                }
            }
        }
        self.with_anti_affinity.remove(key);
        self.assumed.remove(key);
    }

    /// Re-indexes PV `name` and keeps `free_nodes` in step with the buckets it touched.
    fn reindex_pv(&mut self, name: &str) {
        let touched = self.pv_index.refresh(name, self.pvs.get(name));
        for (class, host) in touched {
            self.sync_free_nodes(&class, &host);
        }
    }

    /// `free_nodes[class]` for the nodes labelled with hostname `host`.
    fn sync_free_nodes(&mut self, class: &str, host: &str) {
        if host.is_empty() {
            return;
        }
        let Some(nodes) = self.by_hostname.get(host) else {
            return;
        };
        if self.pv_index.free_in(class, host) > 0 {
            let set = self.free_nodes.entry(class.to_string()).or_default();
            for n in nodes {
                if !set.contains(n) {
                    set.insert(n.clone());
                }
            }
        } else if let Some(set) = self.free_nodes.get_mut(class) {
            for n in nodes {
                set.remove(n);
            }
            if set.is_empty() {
                self.free_nodes.remove(class);
            }
        }
    }

    /// Node `name` changed hostname label (`old` → `new`): move it between `free_nodes` sets.
    fn rehost_free_nodes(&mut self, name: &str, old: Option<&str>, new: Option<&str>) {
        let classes: Vec<String> = self.pv_index.classes().cloned().collect();
        for class in classes {
            if old.is_some() {
                if let Some(set) = self.free_nodes.get_mut(&class) {
                    set.remove(name);
                    if set.is_empty() {
                        self.free_nodes.remove(&class);
                    }
                }
            }
            if let Some(h) = new.filter(|h| !h.is_empty()) {
                if self.pv_index.free_in(&class, h) > 0 {
                    self.free_nodes
                        .entry(class)
                        .or_default()
                        .insert(name.to_string());
                }
            }
        }
    }

    /// PV add/update from the watch.
    pub fn apply_pv(&mut self, pv: PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        self.pvs.handle_apply(name.clone(), pv);
        self.reindex_pv(&name);
    }

    /// PV delete from the watch.
    pub fn delete_pv(&mut self, name: &str) {
        self.pvs.handle_delete(name);
        self.reindex_pv(name);
    }

    /// Assume a PV version (Reserve, or the object a PreBind write returned).
    pub fn assume_pv(
        &mut self,
        name: &str,
        pv: PersistentVolume,
    ) -> Result<(), super::assume::AssumeError> {
        self.pvs.assume(name, pv)?;
        self.reindex_pv(name);
        Ok(())
    }

    /// Back to the API version (Unreserve).
    pub fn restore_pv(&mut self, name: &str) {
        self.pvs.restore(name);
        self.reindex_pv(name);
    }

    /// Node add/update.
    pub fn set_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let host = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HOSTNAME))
            .cloned();
        let info = self.nodes.entry(name.clone()).or_default();
        info.allocatable = super::plugins::resources_fit::allocatable_of(&node);
        let added = info.node.is_none();
        let old_host = info
            .node
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .and_then(|l| l.get(HOSTNAME))
            .cloned();
        info.hostname = host.clone();
        info.node = Some(node);
        if added {
            // Keep the name-ordered list of real nodes for the round-robin scan.
            if let Err(at) = self.node_order.binary_search(&name) {
                self.node_order.insert(at, name.clone());
            }
        }
        if old_host != host {
            if let Some(h) = &old_host {
                self.unindex_host(h, &name);
            }
            if let Some(h) = &host {
                self.by_hostname
                    .entry(h.clone())
                    .or_default()
                    .insert(name.clone());
            }
            self.rehost_free_nodes(&name, old_host.as_deref(), host.as_deref());
        }
    }

    fn unindex_host(&mut self, host: &str, name: &str) {
        if let Some(set) = self.by_hostname.get_mut(host) {
            set.remove(name);
            if set.is_empty() {
                self.by_hostname.remove(host);
            }
        }
    }

    /// Node delete (pods still placed there keep a nameless placeholder).
    pub fn remove_node(&mut self, name: &str) {
        if let Ok(at) = self.node_order.binary_search_by(|n| n.as_str().cmp(name)) {
            self.node_order.remove(at);
        }
        let host = self
            .nodes
            .get(name)
            .and_then(|i| i.node.as_ref())
            .and_then(|n| n.metadata.labels.as_ref())
            .and_then(|l| l.get(HOSTNAME))
            .cloned();
        if let Some(h) = host {
            self.unindex_host(&h, name);
            self.rehost_free_nodes(name, Some(&h), None);
        }
        if let Some(info) = self.nodes.get_mut(name) {
            info.node = None;
            info.hostname = None;
            if info.pods.is_empty() {
                self.nodes.remove(name);
            }
        }
    }
}
