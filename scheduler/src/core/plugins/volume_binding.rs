//! VolumeBinding (§5.2–§5.7): choose a node and the pod's PersistentVolumes together.
//!
//! * PreFilter classifies the pod's claims — bound, unbound delay (WaitForFirstConsumer,
//!   no volumeName) and unbound immediate (everything else, including pre-bound claims that the
//!   volume controller has not finished) — and rejects pods with unbound immediate claims.
//! * Filter runs `FindPodVolumes` for one node: bound claims need their PV's node affinity to
//!   admit the node; delay claims are matched greedily, smallest request first, against the
//!   PVs of their class (latest, i.e. assumed, versions); the rest must be provisionable there.
//! * Reserve assumes the chosen PVs' claimRef (and the selected-node of provisioned claims) in
//!   the assume caches, which is what keeps the next pod from taking the same PV.
//! * PreBind writes those objects to the API, then waits until the volume controller reports
//!   every claim bound (`check_bindings`); Unreserve restores the caches.
//!
//! The provisioning branch (§6.1, §6.4) is in place up to the selected-node write: claims that
//! no static PV satisfies are checked for a real provisioner, allowedTopologies and (when a
//! capacity-tracking driver is known) CSIStorageCapacity. What happens after the write is the
//! provisioner's business.

use std::collections::{BTreeMap, BTreeSet};

use apiserver::api::{
    annotation, check_volume_node_affinity, claim_requested_storage, claim_storage_class,
    find_matching_volume, has_annotation, is_volume_bound_to_claim, quantity::quantity_value,
    volume_storage_class, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE,
    BINDING_WAIT_FOR_FIRST_CONSUMER, LABEL_HOSTNAME, NOT_SUPPORTED_PROVISIONER,
};
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::core::cluster::{key_of, ClusterView};
use crate::core::framework::{NodeInfo, Status};

/// PreFilter: the pod has a claim that is neither bound nor WaitForFirstConsumer.
pub const ERR_REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// Filter: no PV for a delay claim on this node and it cannot be provisioned here.
pub const ERR_REASON_BIND_CONFLICT: &str =
    "node(s) didn't find available persistent volumes to bind";
/// Filter: a bound PV's node affinity rejects this node (v1.33 wording).
pub const ERR_REASON_NODE_CONFLICT: &str = "node(s) didn't match PersistentVolume's node affinity";
/// Filter: the provisioner reports too little capacity for this node.
pub const ERR_REASON_NOT_ENOUGH_SPACE: &str = "node(s) did not have enough free storage";
/// Filter: a bound claim names a PV that does not exist.
pub const ERR_REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// The pod's claims, classified by PreFilter (keys are `namespace/name`).
#[derive(Debug, Clone, Default)]
pub struct PodVolumeClaims {
    /// `spec.volumeName` set and `bind-completed` present.
    pub bound: Vec<String>,
    /// WaitForFirstConsumer, no volumeName yet; the scheduler picks their PVs.
    pub unbound_delay: Vec<String>,
}

/// One static binding: a free PV chosen for a delay claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticBinding {
    /// The PV's name.
    pub pv: String,
    /// The claim's `namespace/name`.
    pub pvc: String,
}

/// What Filter found for a node, and Reserve then assumed (`PodVolumes` upstream).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodVolumes {
    /// Delay claims matched to existing PVs.
    pub static_bindings: Vec<StaticBinding>,
    /// Delay claims to be provisioned on this node (`selected-node`).
    pub dynamic_provisions: Vec<String>,
}

impl PodVolumes {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.static_bindings.is_empty() && self.dynamic_provisions.is_empty()
    }
}

/// The claim names a pod uses (direct claims and generic ephemeral volumes), in volume order.
pub fn pod_claim_names(pod: &Pod) -> Vec<(String, bool)> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec
        .as_ref()
        .map(|s| s.volumes.iter().flatten())
        .into_iter()
        .flatten()
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some((c.claim_name.clone(), false))
            } else if v.ephemeral.is_some() {
                Some((format!("{pod_name}-{}", v.name), true))
            } else {
                None
            }
        })
        .collect()
}

/// Whether the pod uses any claim (the plugin's Skip test).
pub fn pod_has_claims(pod: &Pod) -> bool {
    !pod_claim_names(pod).is_empty()
}

/// `isPVCFullyBound`: volumeName set and bind-completed present.
pub fn is_claim_bound(claim: &PersistentVolumeClaim) -> bool {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|v| !v.is_empty())
        && has_annotation(&claim.metadata, ANN_BIND_COMPLETED)
}

fn volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

fn is_wffc(view: &ClusterView, claim: &PersistentVolumeClaim) -> bool {
    let class = claim_storage_class(claim);
    !class.is_empty()
        && view
            .classes
            .get(class)
            .and_then(|c| c.volume_binding_mode.as_deref())
            == Some(BINDING_WAIT_FOR_FIRST_CONSUMER)
}

/// PreFilter. `Skip` for pods without claims; UnschedulableAndUnresolvable for a missing,
/// lost or deleting claim and for unbound immediate claims.
pub fn pre_filter(view: &ClusterView, pod: &Pod) -> (Status, Option<PodVolumeClaims>) {
    let names = pod_claim_names(pod);
    if names.is_empty() {
        return (Status::Skip, None);
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut claims = PodVolumeClaims::default();
    let mut unbound_immediate = false;
    for (name, ephemeral) in names {
        let key = format!("{ns}/{name}");
        // The informer's copy decides existence, phase and deletion.
        let Some(api) = view.pvcs.get_api(&key) else {
            return (
                Status::unresolvable(format!("persistentvolumeclaim \"{name}\" not found")),
                None,
            );
        };
        if ephemeral {
            let owned =
                api.metadata.owner_references.iter().flatten().any(|o| {
                    o.controller == Some(true) && Some(&o.uid) == pod.metadata.uid.as_ref()
                });
            if !owned {
                return (
                    Status::unresolvable(format!(
                        "PVC {ns}/{name} was not created for pod {ns}/{} (pod is not owner)",
                        pod.metadata.name.as_deref().unwrap_or("")
                    )),
                    None,
                );
            }
        }
        if api.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
            return (
                Status::unresolvable(format!(
                    "persistentvolumeclaim \"{name}\" bound to non-existent persistentvolume \"{}\"",
                    volume_name(api)
                )),
                None,
            );
        }
        if api.metadata.deletion_timestamp.is_some() {
            return (
                Status::unresolvable(format!("persistentvolumeclaim \"{name}\" is being deleted")),
                None,
            );
        }
        // Classification uses the assume cache (latest) version.
        let claim = view.pvcs.get(&key).unwrap_or(api);
        if is_claim_bound(claim) {
            claims.bound.push(key);
        } else if volume_name(claim).is_empty() && is_wffc(view, claim) {
            claims.unbound_delay.push(key);
        } else {
            unbound_immediate = true;
        }
    }
    if unbound_immediate {
        return (Status::unresolvable(ERR_REASON_UNBOUND_IMMEDIATE), None);
    }
    (Status::Success, Some(claims))
}

/// The hostnames a pod's bound local PVs pin it to (upstream's `GetEligibleNodes`): for each
/// bound claim whose PV's affinity is one term `kubernetes.io/hostname In [...]`, the values;
/// intersected over the claims. `None` when no bound PV narrows anything (or a PV is missing,
/// which Filter reports itself).
pub fn eligible_hostnames(
    view: &ClusterView,
    claims: &PodVolumeClaims,
) -> Option<BTreeSet<String>> {
    let mut out: Option<BTreeSet<String>> = None;
    for key in &claims.bound {
        let claim = view.pvcs.get(key)?;
        let pv = view.pvs.get(volume_name(claim))?;
        let terms = pv
            .spec
            .as_ref()
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.as_ref())
            .map(|r| r.node_selector_terms.as_slice())
            .unwrap_or(&[]);
        let [term] = terms else { continue };
        let hosts: Option<BTreeSet<String>> = term
            .match_expressions
            .iter()
            .flatten()
            .find(|e| e.key == LABEL_HOSTNAME && e.operator == "In")
            .map(|e| e.values.iter().flatten().cloned().collect());
        let Some(hosts) = hosts else { continue };
        out = Some(match out {
            None => hosts,
            Some(prev) => prev.intersection(&hosts).cloned().collect(),
        });
    }
    out
}

/// The single hostname a PV's node affinity pins it to ("" when it is not pinned that way).
fn hostname_bucket(pv: &PersistentVolume) -> String {
    let terms = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or(&[]);
    if let [term] = terms {
        for e in term.match_expressions.iter().flatten() {
            if e.key == LABEL_HOSTNAME && e.operator == "In" {
                if let Some([v]) = e.values.as_deref() {
                    return v.clone();
                }
            }
        }
    }
    String::new()
}

/// Index of PVs by class and hostname bucket: a PV whose node affinity is one term pinning
/// `kubernetes.io/hostname` to one value can only ever match nodes with that label value, so
/// Filter looks only at its node's bucket and the "anywhere" bucket (""). It also counts, per
/// bucket, the PVs without a claimRef (in their latest, possibly assumed, version), so a node
/// where no PV can match is rejected without looking at any. It narrows the work, never what
/// matches. Kept current by `ClusterView`'s PV methods.
#[derive(Debug, Clone, Default)]
pub struct PvIndex {
    buckets: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    free: BTreeMap<String, BTreeMap<String, usize>>,
    prebound: BTreeMap<String, BTreeSet<String>>,
    entries: BTreeMap<String, PvEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PvEntry {
    class: String,
    host: String,
    free: bool,
    claim: Option<String>,
}

impl PvIndex {
    /// Re-indexes PV `name` from its latest version (`None`: deleted).
    pub fn refresh(&mut self, name: &str, latest: Option<&PersistentVolume>) {
        let entry = latest.map(|pv| {
            let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            PvEntry {
                class: volume_storage_class(pv).to_string(),
                host: hostname_bucket(pv),
                free: claim_ref.is_none(),
                claim: claim_ref.map(|r| {
                    format!(
                        "{}/{}",
                        r.namespace.as_deref().unwrap_or(""),
                        r.name.as_deref().unwrap_or("")
                    )
                }),
            }
        });
        if self.entries.get(name) == entry.as_ref() {
            return;
        }
        if let Some(old) = self.entries.remove(name) {
            if let Some(hosts) = self.buckets.get_mut(&old.class) {
                if let Some(set) = hosts.get_mut(&old.host) {
                    set.remove(name);
                    if set.is_empty() {
                        hosts.remove(&old.host);
                    }
                }
                if hosts.is_empty() {
                    self.buckets.remove(&old.class);
                }
            }
            if old.free {
                if let Some(hosts) = self.free.get_mut(&old.class) {
                    if let Some(n) = hosts.get_mut(&old.host) {
                        *n -= 1;
                        if *n == 0 {
                            hosts.remove(&old.host);
                        }
                    }
                }
            }
            if let Some(c) = &old.claim {
                if let Some(set) = self.prebound.get_mut(c) {
                    set.remove(name);
                    if set.is_empty() {
                        self.prebound.remove(c);
                    }
                }
            }
        }
        if let Some(e) = entry {
            self.buckets
                .entry(e.class.clone())
                .or_default()
                .entry(e.host.clone())
                .or_default()
                .insert(name.to_string());
            if e.free {
                *self
                    .free
                    .entry(e.class.clone())
                    .or_default()
                    .entry(e.host.clone())
                    .or_default() += 1;
            }
            if let Some(c) = &e.claim {
                self.prebound
                    .entry(c.clone())
                    .or_default()
                    .insert(name.to_string());
            }
            self.entries.insert(name.to_string(), e);
        }
    }

    /// Candidate PV names of `class` for a node with hostname label `host`, in name order.
    pub fn candidates(&self, class: &str, host: Option<&str>) -> Vec<&str> {
        let Some(hosts) = self.buckets.get(class) else {
            return Vec::new();
        };
        let any = hosts.get("");
        let mine = host.filter(|h| !h.is_empty()).and_then(|h| hosts.get(h));
        let mut out: Vec<&str> = any
            .into_iter()
            .chain(mine)
            .flatten()
            .map(String::as_str)
            .collect();
        if any.is_some() && mine.is_some() {
            out.sort_unstable();
        }
        out
    }

    /// Whether any PV could match `claim_key` (class `class`) on a node with hostname `host`: a
    /// PV without claimRef in the node's or the "anywhere" bucket, or one pre-bound to the claim.
    pub fn may_match(&self, class: &str, host: Option<&str>, claim_key: &str) -> bool {
        if self.prebound.contains_key(claim_key) {
            return true;
        }
        let Some(hosts) = self.free.get(class) else {
            return false;
        };
        hosts.contains_key("") || host.is_some_and(|h| hosts.contains_key(h))
    }
}

/// §6.4: capacity is only checked for provisioners known to track it.
fn has_enough_capacity(
    view: &ClusterView,
    provisioner: &str,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &NodeInfo,
) -> bool {
    if !view.capacity_drivers.contains(provisioner) {
        return true;
    }
    let requested = claim_requested_storage(claim);
    let class_name = class.metadata.name.as_deref().unwrap_or("");
    view.capacities.values().any(|cap| {
        cap.storage_class_name == class_name
            && cap.node_topology.as_ref().is_some_and(|sel| {
                apiserver::api::label_selector_matches(sel, node.labels()).unwrap_or(false)
            })
            && cap
                .maximum_volume_size
                .as_ref()
                .or(cap.capacity.as_ref())
                .is_some_and(|q| quantity_value(q) >= requested)
    })
}

fn topology_allows(class: &StorageClass, node: &NodeInfo) -> bool {
    let Some(terms) = class.allowed_topologies.as_ref().filter(|t| !t.is_empty()) else {
        return true;
    };
    let labels = node.labels();
    terms.iter().any(|term| {
        term.match_label_expressions
            .iter()
            .flatten()
            .all(|e| labels.get(&e.key).is_some_and(|v| e.values.contains(v)))
    })
}

/// Filter (`FindPodVolumes` for one node). The reasons come in the fixed order NodeConflict,
/// BindConflict, NotEnoughSpace, PVNotExist; any reason is UnschedulableAndUnresolvable.
pub fn filter(
    view: &ClusterView,
    claims: &PodVolumeClaims,
    node: &NodeInfo,
) -> (Status, Option<PodVolumes>) {
    let mut bound_ok = true;
    let mut pvs_found = true;
    let mut unbound_ok = true;
    let mut enough_space = true;
    let mut result = PodVolumes::default();
    let labels = node.labels();
    let index = &view.pv_index;

    for key in &claims.bound {
        let Some(claim) = view.pvcs.get(key) else {
            continue;
        };
        match view.pvs.get(volume_name(claim)) {
            None => {
                pvs_found = false;
                break;
            }
            Some(pv) => {
                if check_volume_node_affinity(pv, labels).is_err() {
                    bound_ok = false;
                    break;
                }
            }
        }
    }

    'unbound: {
        if claims.unbound_delay.is_empty() {
            break 'unbound;
        }
        let mut to_match: Vec<(&String, &PersistentVolumeClaim)> = Vec::new();
        let mut to_provision: Vec<&PersistentVolumeClaim> = Vec::new();
        for key in &claims.unbound_delay {
            let Some(claim) = view.pvcs.get(key) else {
                continue;
            };
            match annotation(&claim.metadata, ANN_SELECTED_NODE) {
                Some(sel) if sel != node.name() => {
                    // Fast path: a claim already promised to another node.
                    unbound_ok = false;
                    break 'unbound;
                }
                Some(_) => to_provision.push(claim),
                None => to_match.push((key, claim)),
            }
        }
        // Greedy, smallest request first (stable for equal sizes: volume order).
        if to_match.len() > 1 {
            to_match.sort_by_key(|(_, c)| claim_requested_storage(c));
        }
        let mut chosen: BTreeSet<String> = BTreeSet::new();
        let host = labels.get(LABEL_HOSTNAME).map(String::as_str);
        let node_obj: &Node = node.node.as_ref().expect("filter runs on real nodes");
        for (key, claim) in to_match {
            let class = claim_storage_class(claim);
            if !index.may_match(class, host, key) {
                to_provision.push(claim);
                continue;
            }
            let candidates = index.candidates(class, host);
            let pvs = candidates.iter().filter_map(|n| view.pvs.get(n));
            match find_matching_volume(claim, pvs, Some(node_obj), &chosen, true) {
                Some(pv) => {
                    let name = pv.metadata.name.clone().unwrap_or_default();
                    chosen.insert(name.clone());
                    result.static_bindings.push(StaticBinding {
                        pv: name,
                        pvc: key.clone(),
                    });
                }
                None => to_provision.push(claim),
            }
        }
        // checkVolumeProvisions.
        for claim in to_provision {
            let class_name = claim_storage_class(claim);
            let claim_name = claim.metadata.name.as_deref().unwrap_or("");
            if class_name.is_empty() {
                return (
                    Status::Error(format!("no class for claim \"{claim_name}\"")),
                    None,
                );
            }
            let Some(class) = view.classes.get(class_name) else {
                return (
                    Status::Error(format!("failed to find storage class \"{class_name}\"")),
                    None,
                );
            };
            let provisioner = class.provisioner.as_str();
            if provisioner.is_empty()
                || provisioner == NOT_SUPPORTED_PROVISIONER
                || !topology_allows(class, node)
            {
                unbound_ok = false;
                break 'unbound;
            }
            if !has_enough_capacity(view, provisioner, claim, class, node) {
                enough_space = false;
                break 'unbound;
            }
            result.dynamic_provisions.push(key_of(&claim.metadata));
        }
    }

    let mut reasons = Vec::new();
    if !bound_ok {
        reasons.push(ERR_REASON_NODE_CONFLICT.to_string());
    }
    if !unbound_ok {
        reasons.push(ERR_REASON_BIND_CONFLICT.to_string());
    }
    if !enough_space {
        reasons.push(ERR_REASON_NOT_ENOUGH_SPACE.to_string());
    }
    if !pvs_found {
        reasons.push(ERR_REASON_PV_NOT_EXIST.to_string());
    }
    if reasons.is_empty() {
        (Status::Success, Some(result))
    } else {
        (Status::UnschedulableAndUnresolvable(reasons), None)
    }
}

/// `GetBindVolumeToClaim`: the PV with claimRef → claim (with uid), and `bound-by-controller`
/// when the PV was not already pre-bound to this claim. Returns (pv, dirty).
pub fn bind_volume_to_claim(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> (PersistentVolume, bool) {
    let should_set_bound_by_controller = !is_volume_bound_to_claim(pv, claim);
    let mut out = pv.clone();
    let mut dirty = false;
    let spec = out.spec.get_or_insert_with(Default::default);
    let current = spec.claim_ref.as_ref();
    if current.is_none()
        || current.and_then(|r| r.name.as_deref()) != claim.metadata.name.as_deref()
        || current.and_then(|r| r.namespace.as_deref()) != claim.metadata.namespace.as_deref()
        || current.and_then(|r| r.uid.as_deref()) != claim.metadata.uid.as_deref()
    {
        spec.claim_ref = Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            name: claim.metadata.name.clone(),
            namespace: claim.metadata.namespace.clone(),
            uid: claim.metadata.uid.clone(),
            resource_version: claim.metadata.resource_version.clone(),
            field_path: None,
        });
        dirty = true;
    }
    if should_set_bound_by_controller && !has_annotation(&out.metadata, ANN_BOUND_BY_CONTROLLER) {
        out.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        dirty = true;
    }
    (out, dirty)
}

/// Reserve (`AssumePodVolumes`): `None` when every claim turned out bound already (allBound);
/// else the assumed objects, in write order. On failure everything assumed is restored.
pub fn reserve(
    view: &mut ClusterView,
    claims: &PodVolumeClaims,
    node: &str,
    vols: &PodVolumes,
) -> Result<Option<AssumedVolumes>, String> {
    let all_bound = claims
        .bound
        .iter()
        .chain(&claims.unbound_delay)
        .all(|k| view.pvcs.get(k).is_some_and(is_claim_bound));
    if all_bound {
        return Ok(None);
    }
    let mut assumed = AssumedVolumes::default();
    for b in &vols.static_bindings {
        let (Some(pv), Some(claim)) = (view.pvs.get(&b.pv), view.pvcs.get(&b.pvc)) else {
            revert(view, &assumed);
            return Err(format!(
                "binding for pv \"{}\" and pvc \"{}\": object vanished from the cache",
                b.pv, b.pvc
            ));
        };
        let (new_pv, dirty) = bind_volume_to_claim(pv, claim);
        if dirty {
            if let Err(e) = view.assume_pv(&b.pv, new_pv.clone()) {
                revert(view, &assumed);
                return Err(e.to_string());
            }
        }
        assumed.pvs.push((new_pv, b.pvc.clone()));
    }
    for key in &vols.dynamic_provisions {
        let Some(claim) = view.pvcs.get(key) else {
            revert(view, &assumed);
            return Err(format!("pvc \"{key}\" vanished from the cache"));
        };
        let mut c = claim.clone();
        c.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ANN_SELECTED_NODE.into(), node.into());
        if let Err(e) = view.pvcs.assume(key, c.clone()) {
            revert(view, &assumed);
            return Err(e.to_string());
        }
        assumed.pvcs.push(c);
    }
    Ok(Some(assumed))
}

/// The objects Reserve assumed: PreBind writes them in this order.
#[derive(Debug, Clone, Default)]
pub struct AssumedVolumes {
    /// PVs with claimRef (and the claim key each is for).
    pub pvs: Vec<(PersistentVolume, String)>,
    /// Claims with `selected-node`.
    pub pvcs: Vec<PersistentVolumeClaim>,
}

fn revert(view: &mut ClusterView, assumed: &AssumedVolumes) {
    for (pv, _) in &assumed.pvs {
        view.restore_pv(pv.metadata.name.as_deref().unwrap_or(""));
    }
    for c in &assumed.pvcs {
        view.pvcs.restore(&key_of(&c.metadata));
    }
}

/// Unreserve: the caches go back to the API versions. Writes already made stay made.
pub fn unreserve(view: &mut ClusterView, assumed: &AssumedVolumes) {
    revert(view, assumed);
}

/// `checkBindings` on the informer (API) versions: `Ok(true)` when every claim is bound,
/// `Ok(false)` to keep waiting, `Err` when the binding can no longer complete.
pub fn check_bindings(
    view: &ClusterView,
    pod: &Pod,
    node_name: &str,
    assumed: &AssumedVolumes,
) -> Result<bool, String> {
    let pod_key = key_of(&pod.metadata);
    if !view.pods.contains_key(&pod_key) {
        return Err(format!(
            "pod does not exist any more: pod \"{}\" not found",
            pod.metadata.name.as_deref().unwrap_or("")
        ));
    }
    let Some(node) = view.nodes.get(node_name).and_then(|n| n.node.as_ref()) else {
        return Err(format!(
            "failed to get node \"{node_name}\": node \"{node_name}\" not found"
        ));
    };
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    for (written, claim_key) in &assumed.pvs {
        let name = written.metadata.name.as_deref().unwrap_or("");
        let Some(pv) = view.pvs.get_api(name) else {
            return Err(format!(
                "failed to check binding: persistentvolume \"{name}\" not found"
            ));
        };
        // The informer has not caught up with our own write yet.
        if crate::core::assume::revision_of(&written.metadata)
            > crate::core::assume::revision_of(&pv.metadata)
        {
            return Ok(false);
        }
        if let Err(e) = check_volume_node_affinity(pv, labels) {
            return Err(format!(
                "pv \"{name}\" node affinity doesn't match node \"{node_name}\": {e}"
            ));
        }
        let uid_empty = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_none_or(|r| r.uid.as_deref().unwrap_or("").is_empty());
        if uid_empty {
            return Err(format!("ClaimRef got reset for pv \"{name}\""));
        }
        if !view.pvcs.get_api(claim_key).is_some_and(is_claim_bound) {
            return Ok(false);
        }
    }
    for written in &assumed.pvcs {
        let key = key_of(&written.metadata);
        let name = written.metadata.name.as_deref().unwrap_or("");
        let Some(claim) = view.pvcs.get_api(&key) else {
            return Err(format!(
                "failed to check provisioning pvc: persistentvolumeclaim \"{name}\" not found"
            ));
        };
        if crate::core::assume::revision_of(&written.metadata)
            > crate::core::assume::revision_of(&claim.metadata)
        {
            return Ok(false);
        }
        if annotation(&claim.metadata, ANN_SELECTED_NODE) != Some(node_name) {
            return Err(format!("provisioning failed for PVC \"{name}\""));
        }
        let vn = volume_name(claim);
        if vn.is_empty() {
            return Ok(false);
        }
        let Some(pv) = view.pvs.get_api(vn) else {
            return Ok(false);
        };
        if let Err(e) = check_volume_node_affinity(pv, labels) {
            return Err(format!(
                "pv \"{vn}\" node affinity doesn't match node \"{node_name}\": {e}"
            ));
        }
        if !is_claim_bound(claim) {
            return Ok(false);
        }
    }
    Ok(true)
}
