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
    access_modes_subset, annotation, check_volume_node_affinity, claim_access_modes,
    claim_requested_storage, claim_storage_class, claim_volume_mode, find_matching_volume,
    has_annotation, is_volume_bound_to_claim, quantity::quantity_value, volume_access_modes,
    volume_capacity, volume_storage_class, volume_volume_mode, ParsedQuantity, ANN_BIND_COMPLETED,
    ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE, BINDING_WAIT_FOR_FIRST_CONSUMER, LABEL_HOSTNAME,
    NOT_SUPPORTED_PROVISIONER,
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
/// matches. Kept current by `ClusterView`'s PV methods (which also keep the per-class set of
/// nodes with free PVs, `ClusterView::free_nodes`, in step with the free counts).
#[derive(Debug, Clone, Default)]
pub struct PvIndex {
    buckets: BTreeMap<String, BTreeMap<String, PvBucket>>,
    prebound: BTreeMap<String, BTreeSet<String>>,
    entries: BTreeMap<String, PvEntry>,
}

/// The PVs of one class in one hostname bucket.
#[derive(Debug, Clone, Default)]
pub struct PvBucket {
    /// PV name → what `find_matching_volume` looks at, in name order.
    pub pvs: BTreeMap<String, PvFacts>,
    /// How many of them have no claimRef (latest version).
    pub free: usize,
}

/// What `find_matching_volume` checks of a PV, read once per PV version, so that Filter's
/// inner loop compares numbers and short strings instead of walking the PV object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvFacts {
    /// No claimRef.
    pub free: bool,
    /// `spec.capacity.storage`.
    pub capacity: ParsedQuantity,
    /// volumeMode (nil: Filesystem).
    pub volume_mode: VolumeMode,
    /// `spec.accessModes`.
    pub access_modes: Vec<String>,
    /// `access_modes` as a bit set (None: a mode outside the four known ones).
    pub access_mask: Option<u8>,
    /// `status.phase == Available`.
    pub available: bool,
    /// `metadata.deletionTimestamp` set.
    pub deleting: bool,
    /// The node affinity is exactly what the bucket says: no affinity at all (the "" bucket) or
    /// one term with the single requirement `kubernetes.io/hostname In [<bucket>]`. Then a node
    /// in the bucket (hostname label = bucket) always satisfies it.
    pub bucket_affinity: bool,
}

impl PvFacts {
    fn of(pv: &PersistentVolume, host: &str) -> PvFacts {
        let spec = pv.spec.as_ref();
        let required = spec
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.as_ref());
        let bucket_affinity = match required {
            None => host.is_empty(),
            Some(r) => match r.node_selector_terms.as_slice() {
                [term] => {
                    term.match_fields.as_ref().is_none_or(|f| f.is_empty())
                        && matches!(term.match_expressions.as_deref(), Some([e])
                            if e.key == LABEL_HOSTNAME
                                && e.operator == "In"
                                && matches!(e.values.as_deref(), Some([v]) if v == host)
                                && !host.is_empty())
                }
                _ => false,
            },
        };
        PvFacts {
            free: spec.and_then(|s| s.claim_ref.as_ref()).is_none(),
            capacity: volume_capacity(pv),
            volume_mode: VolumeMode::of(volume_volume_mode(pv)),
            access_modes: volume_access_modes(pv).to_vec(),
            access_mask: access_mask(volume_access_modes(pv)),
            available: pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available"),
            deleting: pv.metadata.deletion_timestamp.is_some(),
            bucket_affinity,
        }
    }
}

/// A volumeMode, compared without touching the string in the common cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeMode {
    /// "Filesystem" (also nil).
    Filesystem,
    /// "Block".
    Block,
    /// Anything else (validation rejects it; compared as written).
    Other(String),
}

impl VolumeMode {
    fn of(mode: &str) -> VolumeMode {
        match mode {
            "Filesystem" => VolumeMode::Filesystem,
            "Block" => VolumeMode::Block,
            other => VolumeMode::Other(other.to_string()),
        }
    }
}

/// Access modes as bits (RWO, ROX, RWX, RWOP); None when a mode is none of them.
fn access_mask(modes: &[String]) -> Option<u8> {
    let mut mask = 0u8;
    for m in modes {
        mask |= match m.as_str() {
            "ReadWriteOnce" => 1,
            "ReadOnlyMany" => 2,
            "ReadWriteMany" => 4,
            "ReadWriteOncePod" => 8,
            _ => return None,
        };
    }
    Some(mask)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PvEntry {
    class: String,
    host: String,
    claim: Option<String>,
    facts: PvFacts,
}

impl PvIndex {
    /// Re-indexes PV `name` from its latest version (`None`: deleted). Returns the
    /// (class, hostname) buckets whose free count changed.
    pub fn refresh(
        &mut self,
        name: &str,
        latest: Option<&PersistentVolume>,
    ) -> Vec<(String, String)> {
        let entry = latest.map(|pv| {
            let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            let host = hostname_bucket(pv);
            PvEntry {
                class: volume_storage_class(pv).to_string(),
                facts: PvFacts::of(pv, &host),
                host,
                claim: claim_ref.map(|r| {
                    format!(
                        "{}/{}",
                        r.namespace.as_deref().unwrap_or(""),
                        r.name.as_deref().unwrap_or("")
                    )
                }),
            }
        });
        let mut touched = Vec::new();
        if self.entries.get(name) == entry.as_ref() {
            return touched;
        }
        if let Some(old) = self.entries.remove(name) {
            if let Some(hosts) = self.buckets.get_mut(&old.class) {
                if let Some(b) = hosts.get_mut(&old.host) {
                    b.pvs.remove(name);
                    if old.facts.free {
                        b.free -= 1;
                        touched.push((old.class.clone(), old.host.clone()));
                    }
                    if b.pvs.is_empty() {
                        hosts.remove(&old.host);
                    }
                }
                if hosts.is_empty() {
                    self.buckets.remove(&old.class);
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
            let b = self
                .buckets
                .entry(e.class.clone())
                .or_default()
                .entry(e.host.clone())
                .or_default();
            b.pvs.insert(name.to_string(), e.facts.clone());
            if e.facts.free {
                b.free += 1;
                touched.push((e.class.clone(), e.host.clone()));
            }
            if let Some(c) = &e.claim {
                self.prebound
                    .entry(c.clone())
                    .or_default()
                    .insert(name.to_string());
            }
            self.entries.insert(name.to_string(), e);
        }
        touched
    }

    /// The hostname buckets of `class`.
    pub fn class_buckets(&self, class: &str) -> Option<&BTreeMap<String, PvBucket>> {
        self.buckets.get(class)
    }

    /// The classes that have PVs.
    pub fn classes(&self) -> impl Iterator<Item = &String> {
        self.buckets.keys()
    }

    /// PVs of `class` without claimRef in hostname bucket `host`.
    pub fn free_in(&self, class: &str, host: &str) -> usize {
        self.buckets
            .get(class)
            .and_then(|h| h.get(host))
            .map_or(0, |b| b.free)
    }

    /// Whether some PV's claimRef names `claim_key` (it may sit in any bucket).
    pub fn has_prebound(&self, claim_key: &str) -> bool {
        self.prebound.contains_key(claim_key)
    }

    /// Candidate PV names of `class` for a node with hostname label `host`, in name order.
    pub fn candidates(&self, class: &str, host: Option<&str>) -> Vec<&str> {
        let Some(hosts) = self.buckets.get(class) else {
            return Vec::new();
        };
        merged_candidates(
            hosts.get(""),
            host.filter(|h| !h.is_empty()).and_then(|h| hosts.get(h)),
        )
    }

    /// Whether any PV could match `claim_key` (class `class`) on a node with hostname `host`: a
    /// PV without claimRef in the node's or the "anywhere" bucket, or one pre-bound to the claim.
    pub fn may_match(&self, class: &str, host: Option<&str>, claim_key: &str) -> bool {
        if self.prebound.contains_key(claim_key) {
            return true;
        }
        let Some(hosts) = self.buckets.get(class) else {
            return false;
        };
        hosts.get("").is_some_and(|b| b.free > 0)
            || host
                .filter(|h| !h.is_empty())
                .and_then(|h| hosts.get(h))
                .is_some_and(|b| b.free > 0)
    }
}

/// The names of two buckets, in name order.
fn merged_candidates<'a>(any: Option<&'a PvBucket>, mine: Option<&'a PvBucket>) -> Vec<&'a str> {
    let mut out: Vec<&str> = any
        .into_iter()
        .chain(mine)
        .flat_map(|b| b.pvs.keys())
        .map(String::as_str)
        .collect();
    if any.is_some() && mine.is_some() {
        out.sort_unstable();
    }
    out
}

/// One WaitForFirstConsumer claim, resolved once per scheduling cycle.
#[derive(Debug, Clone)]
struct DelayClaim<'a> {
    key: &'a str,
    claim: &'a PersistentVolumeClaim,
    class: &'a str,
    /// `volume.kubernetes.io/selected-node`, when set.
    selected: Option<&'a str>,
    /// Some PV's claimRef already names this claim.
    prebound: bool,
    /// The class's hostname buckets.
    buckets: Option<&'a BTreeMap<String, PvBucket>>,
    /// The class's "anywhere" bucket (PVs not pinned to one hostname).
    anywhere: Option<&'a PvBucket>,
    /// `spec.resources.requests.storage`.
    requested: ParsedQuantity,
    /// volumeMode.
    mode: VolumeMode,
    /// The claim's access modes as bits (None: an unknown mode).
    access_mask: Option<u8>,
    /// No selector and no PV pre-bound to the claim: `find_matching_volume` reduces to
    /// comparing `PvFacts` (`match_facts`).
    by_facts: bool,
}

/// VolumeBinding's PreFilter state for one attempt (upstream's `stateData`): the pod's claims
/// looked up once, so that Filter per node touches only that node's PVs.
#[derive(Debug, Clone)]
pub struct PreparedClaims<'a> {
    /// Bound claims (latest versions) and their PVs (None: the PV does not exist).
    bound: Vec<Option<&'a PersistentVolume>>,
    /// Delay claims in volume order.
    delay: Vec<DelayClaim<'a>>,
    /// Indexes into `delay` of the claims without selected-node, smallest request first
    /// (stable: volume order among equals).
    match_order: Vec<usize>,
}

/// Resolves the classified claims against the caches (once per scheduling cycle).
pub fn prepare<'a>(view: &'a ClusterView, claims: &'a PodVolumeClaims) -> PreparedClaims<'a> {
    let bound = claims
        .bound
        .iter()
        .filter_map(|k| view.pvcs.get(k))
        .map(|c| view.pvs.get(volume_name(c)))
        .collect();
    let delay: Vec<DelayClaim<'a>> = claims
        .unbound_delay
        .iter()
        .filter_map(|k| view.pvcs.get(k).map(|c| (k, c)))
        .map(|(key, claim)| {
            let class = claim_storage_class(claim);
            let buckets = view.pv_index.class_buckets(class);
            let prebound = view.pv_index.has_prebound(key);
            DelayClaim {
                key,
                claim,
                class,
                selected: annotation(&claim.metadata, ANN_SELECTED_NODE),
                prebound,
                buckets,
                anywhere: buckets.and_then(|b| b.get("")),
                requested: claim_requested_storage(claim),
                mode: VolumeMode::of(claim_volume_mode(claim)),
                access_mask: access_mask(claim_access_modes(claim)),
                by_facts: !prebound && claim.spec.as_ref().is_none_or(|s| s.selector.is_none()),
            }
        })
        .collect();
    let mut match_order: Vec<usize> = (0..delay.len())
        .filter(|&i| delay[i].selected.is_none())
        .collect();
    if match_order.len() > 1 {
        match_order.sort_by_key(|&i| delay[i].requested);
    }
    PreparedClaims {
        bound,
        delay,
        match_order,
    }
}

fn not_provisionable(class: &StorageClass) -> bool {
    class.provisioner.is_empty() || class.provisioner == NOT_SUPPORTED_PROVISIONER
}

impl PreparedClaims<'_> {
    /// The only nodes where Filter can succeed, when VolumeBinding alone narrows them: a delay
    /// claim of a class that cannot provision, with no PV pre-bound to it and none free
    /// "anywhere", fits only nodes whose hostname bucket has a free PV of its class
    /// (`ClusterView::free_nodes`); of several such claims, the smallest set. Every other
    /// node fails VolumeBinding with UnschedulableAndUnresolvable and never with an error
    /// (all classes exist), so a scan over just these nodes finds the same feasible nodes in
    /// the same order. `None`: no narrowing.
    pub fn candidate_nodes<'v>(&self, view: &'v ClusterView) -> Option<&'v BTreeSet<String>> {
        static NONE: BTreeSet<String> = BTreeSet::new();
        let all_classes_known = self
            .delay
            .iter()
            .all(|d| !d.class.is_empty() && view.classes.contains_key(d.class));
        if !all_classes_known {
            return None;
        }
        let mut best: Option<&BTreeSet<String>> = None;
        for &i in &self.match_order {
            let d = &self.delay[i];
            if d.prebound || d.anywhere.is_some_and(|b| b.free > 0) {
                continue;
            }
            if !view.classes.get(d.class).is_some_and(not_provisionable) {
                continue;
            }
            let set = view.free_nodes.get(d.class).unwrap_or(&NONE);
            if best.is_none_or(|b| set.len() < b.len()) {
                best = Some(set);
            }
        }
        best
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

/// `find_matching_volume(claim, bucket, Some(node), excluded, true)` for a claim without
/// selector and without a pre-bound PV, on the PVs of the node's hostname bucket: the same
/// checks in the same order, read from `PvFacts` (the PV object is consulted only for a node
/// affinity the bucket does not capture). Every PV of the bucket has the claim's class.
fn match_facts<'a>(
    view: &ClusterView,
    d: &DelayClaim<'_>,
    bucket: Option<&'a PvBucket>,
    node_labels: &BTreeMap<String, String>,
    excluded: &BTreeSet<String>,
) -> Option<&'a str> {
    let claim_modes = claim_access_modes(d.claim);
    let mut smallest: Option<(&'a str, ParsedQuantity)> = None;
    for (name, f) in bucket.into_iter().flat_map(|b| b.pvs.iter()) {
        // A claimRef names another claim (none names this one: not pre-bound).
        if !f.free || excluded.contains(name) {
            continue;
        }
        if f.capacity < d.requested || f.volume_mode != d.mode || f.deleting || !f.available {
            continue;
        }
        if !f.bucket_affinity {
            let affinity_ok = view
                .pvs
                .get(name)
                .is_some_and(|pv| check_volume_node_affinity(pv, node_labels).is_ok());
            if !affinity_ok {
                continue;
            }
        }
        let modes_ok = match (d.access_mask, f.access_mask) {
            (Some(want), Some(have)) => want & !have == 0,
            _ => access_modes_subset(claim_modes, &f.access_modes),
        };
        if !modes_ok {
            continue;
        }
        if smallest.is_none_or(|(_, best)| best > f.capacity) {
            smallest = Some((name.as_str(), f.capacity));
        }
    }
    smallest.map(|(n, _)| n)
}

/// Filter (`FindPodVolumes` for one node). The reasons come in the fixed order NodeConflict,
/// BindConflict, NotEnoughSpace, PVNotExist; any reason is UnschedulableAndUnresolvable.
pub fn filter(
    view: &ClusterView,
    claims: &PodVolumeClaims,
    node: &NodeInfo,
) -> (Status, Option<PodVolumes>) {
    filter_prepared(view, &prepare(view, claims), node, true)
}

/// `filter` on claims resolved by `prepare`; with `want_volumes` false only the status is
/// computed (the scan asks for the volumes of the chosen node alone).
pub fn filter_prepared(
    view: &ClusterView,
    prepared: &PreparedClaims<'_>,
    node: &NodeInfo,
    want_volumes: bool,
) -> (Status, Option<PodVolumes>) {
    let mut bound_ok = true;
    let mut pvs_found = true;
    let mut unbound_ok = true;
    let mut enough_space = true;
    let mut result = PodVolumes::default();
    let labels = node.labels();

    for pv in &prepared.bound {
        match pv {
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
        if prepared.delay.is_empty() {
            break 'unbound;
        }
        let node_name = node.name();
        // Fast path: a claim already promised to another node.
        if prepared
            .delay
            .iter()
            .any(|d| d.selected.is_some_and(|s| s != node_name))
        {
            unbound_ok = false;
            break 'unbound;
        }
        let mut to_provision: Vec<&PersistentVolumeClaim> = prepared
            .delay
            .iter()
            .filter(|d| d.selected.is_some())
            .map(|d| d.claim)
            .collect();
        // Greedy, smallest request first (stable for equal sizes: volume order).
        let mut chosen: BTreeSet<String> = BTreeSet::new();
        let host = node.hostname().filter(|h| !h.is_empty());
        let node_obj: &Node = node.node.as_ref().expect("filter runs on real nodes");
        for &i in &prepared.match_order {
            let d = &prepared.delay[i];
            let mine = host.and_then(|h| d.buckets.and_then(|b| b.get(h)));
            let may_match = d.prebound
                || d.anywhere.is_some_and(|b| b.free > 0)
                || mine.is_some_and(|b| b.free > 0);
            if !may_match {
                to_provision.push(d.claim);
                continue;
            }
            let found: Option<&str> = if d.anywhere.is_none() && d.by_facts {
                // The common case (local PVs): only this node's bucket, already in name order.
                match_facts(view, d, mine, labels, &chosen)
            } else {
                let candidates = merged_candidates(d.anywhere, mine);
                let pvs = candidates.iter().filter_map(|n| view.pvs.get(n));
                find_matching_volume(d.claim, pvs, Some(node_obj), &chosen, true)
                    .map(|pv| pv.metadata.name.as_deref().unwrap_or(""))
            };
            match found {
                Some(name) => {
                    let name = name.to_string();
                    if want_volumes {
                        result.static_bindings.push(StaticBinding {
                            pv: name.clone(),
                            pvc: d.key.to_string(),
                        });
                    }
                    if prepared.match_order.len() > 1 {
                        chosen.insert(name);
                    }
                }
                None => to_provision.push(d.claim),
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
            if not_provisionable(class) || !topology_allows(class, node) {
                unbound_ok = false;
                break 'unbound;
            }
            if !has_enough_capacity(view, provisioner, claim, class, node) {
                enough_space = false;
                break 'unbound;
            }
            if want_volumes {
                result.dynamic_provisions.push(key_of(&claim.metadata));
            }
        }
    }

    if bound_ok && unbound_ok && enough_space && pvs_found {
        return (Status::Success, want_volumes.then_some(result));
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
    (Status::UnschedulableAndUnresolvable(reasons), None)
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
