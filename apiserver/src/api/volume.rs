//! Volume/claim matching shared by the PV controller and the scheduler's VolumeBinding plugin
//! (`volume-binding.md` §4.6; upstream `component-helpers/storage/volume/pv_helpers.go`).
//!
//! Everything is a pure function over k8s-openapi types. Iteration order is the caller's: the
//! smallest adequate PV wins and ties go to the first one seen, so callers that want
//! reproducible results pass volumes in a stable order (a `BTreeMap` by name).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::quantity::{quantity_value, ParsedQuantity};
use super::selector::{label_selector_matches, node_selector_terms_match};
use super::*;

/// Does `meta` carry annotation `key` (any value)?
pub fn has_annotation(meta: &ObjectMeta, key: &str) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

/// The value of annotation `key`, if present.
pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// `namespace/name` of a claim, as upstream's `claimToClaimKey`.
pub fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or(""),
        claim.metadata.name.as_deref().unwrap_or("")
    )
}

/// The claim's class: the beta annotation, else `spec.storageClassName`, else "".
pub fn claim_storage_class(claim: &PersistentVolumeClaim) -> &str {
    if let Some(c) = annotation(&claim.metadata, ANN_BETA_STORAGE_CLASS) {
        return c;
    }
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// The volume's class: the beta annotation, else `spec.storageClassName`, else "".
pub fn volume_storage_class(pv: &PersistentVolume) -> &str {
    if let Some(c) = annotation(&pv.metadata, ANN_BETA_STORAGE_CLASS) {
        return c;
    }
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// `spec.resources.requests.storage` of the claim (zero when absent).
pub fn claim_requested_storage(claim: &PersistentVolumeClaim) -> ParsedQuantity {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(quantity_value)
        .unwrap_or_default()
}

/// `spec.capacity.storage` of the volume (zero when absent).
pub fn volume_capacity(pv: &PersistentVolume) -> ParsedQuantity {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(quantity_value)
        .unwrap_or_default()
}

/// The claim's access modes (empty when unset).
pub fn claim_access_modes(claim: &PersistentVolumeClaim) -> &[String] {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or(&[])
}

/// The volume's access modes (empty when unset).
pub fn volume_access_modes(pv: &PersistentVolume) -> &[String] {
    pv.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or(&[])
}

/// Upstream `GetAccessModesAsString`: the de-duplicated modes in the fixed order
/// RWO, ROX, RWX, RWOP, joined by ",". The PV controller's index groups volumes by this key.
pub fn access_modes_as_string(modes: &[String]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (long, short) in [(RWO, "RWO"), (ROX, "ROX"), (RWX, "RWX"), (RWOP, "RWOP")] {
        if modes.iter().any(|m| m == long) {
            out.push(short);
        }
    }
    out.join(",")
}

/// Every mode the claim requests is among the volume's modes (`CheckAccessModes`).
pub fn check_access_modes(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    access_modes_subset(claim_access_modes(claim), volume_access_modes(pv))
}

/// `requested ⊆ available`.
pub fn access_modes_subset(requested: &[String], available: &[String]) -> bool {
    requested.iter().all(|m| available.contains(m))
}

/// The claim's volumeMode; nil means Filesystem.
pub fn claim_volume_mode(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or(VOLUME_MODE_FILESYSTEM)
}

/// The volume's volumeMode; nil means Filesystem.
pub fn volume_volume_mode(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or(VOLUME_MODE_FILESYSTEM)
}

/// `CheckVolumeModeMismatches`: true when the modes differ (nil = Filesystem on both sides).
pub fn check_volume_mode_mismatches(claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    claim_volume_mode(claim) != volume_volume_mode(pv)
}

/// `IsVolumeBoundToClaim`: claimRef names the claim's namespace/name and its uid is empty
/// (pre-bound by name) or equal to the claim's.
pub fn is_volume_bound_to_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if r.name.as_deref().unwrap_or("") != claim.metadata.name.as_deref().unwrap_or("")
        || r.namespace.as_deref().unwrap_or("") != claim.metadata.namespace.as_deref().unwrap_or("")
    {
        return false;
    }
    let ref_uid = r.uid.as_deref().unwrap_or("");
    ref_uid.is_empty() || ref_uid == claim.metadata.uid.as_deref().unwrap_or("")
}

/// `CheckNodeAffinity`: does the PV's `nodeAffinity.required` admit a node carrying exactly
/// `node_labels`? A nil affinity admits every node. The error text is upstream's
/// (`no matching NodeSelectorTerms`, or the parse error of a broken term).
pub fn check_volume_node_affinity(
    pv: &PersistentVolume,
    node_labels: &BTreeMap<String, String>,
) -> Result<(), String> {
    let Some(aff) = pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()) else {
        return Ok(());
    };
    let Some(req) = aff.required.as_ref() else {
        return Ok(());
    };
    match node_selector_terms_match(&req.node_selector_terms, node_labels, "") {
        Err(e) => Err(e),
        Ok(false) => Err("no matching NodeSelectorTerms".to_string()),
        Ok(true) => Ok(()),
    }
}

/// `FindMatchingVolume` (§4.6): the PV in `volumes` that best fits `claim`, or `None`.
///
/// - `node`: `Some` only in the scheduler path; PV node affinity is then checked against the
///   node's labels, and access modes are checked explicitly.
/// - `excluded`: PV names already chosen for other claims of the same pod (scheduler path).
/// - `delay_binding`: in the PV controller path (`node == None`), a WaitForFirstConsumer claim
///   still gets a PV pre-bound to it, but never a free PV.
///
/// A PV pre-bound to the claim (claimRef → this claim) returns at once, bypassing phase,
/// selector and class checks; if its affinity rejects `node`, there is no match at all.
/// Otherwise the smallest adequate Available PV wins; the first of equals wins.
/// A selector that does not parse matches no PV (API validation rejects such selectors at
/// create, so this is only reachable with hand-edited stored objects).
pub fn find_matching_volume<'a, I>(
    claim: &PersistentVolumeClaim,
    volumes: I,
    node: Option<&Node>,
    excluded: &BTreeSet<String>,
    delay_binding: bool,
) -> Option<&'a PersistentVolume>
where
    I: IntoIterator<Item = &'a PersistentVolume>,
{
    let requested = claim_requested_storage(claim);
    let requested_class = claim_storage_class(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let empty = BTreeMap::new();
    let node_labels = node.map(|n| n.metadata.labels.as_ref().unwrap_or(&empty));

    let mut smallest: Option<(&'a PersistentVolume, ParsedQuantity)> = None;
    for pv in volumes {
        let name = pv.metadata.name.as_deref().unwrap_or("");
        if excluded.contains(name) {
            continue;
        }
        let has_claim_ref = pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_some());
        let bound_to_claim = is_volume_bound_to_claim(pv, claim);
        if has_claim_ref && !bound_to_claim {
            // Reserved for, or bound to, another claim.
            continue;
        }
        let qty = volume_capacity(pv);
        if qty < requested {
            continue;
        }
        if check_volume_mode_mismatches(claim, pv) {
            continue;
        }
        if pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let affinity_ok = match node_labels {
            Some(labels) => check_volume_node_affinity(pv, labels).is_ok(),
            None => true,
        };
        if bound_to_claim {
            // Pre-bound (by a user, a provisioner or the scheduler): this PV or nothing.
            return affinity_ok.then_some(pv);
        }
        if node.is_none() && delay_binding {
            // The PV controller never picks a free PV for a WaitForFirstConsumer claim; the
            // scheduler chooses node and volume together.
            continue;
        }
        let phase = pv
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        if phase != "Available" {
            // Pending/Released/Failed volumes will be made Available first if they qualify;
            // binding them now would only end in conflicts.
            continue;
        }
        if let Some(sel) = selector {
            let labels = pv.metadata.labels.as_ref().unwrap_or(&empty);
            if !label_selector_matches(sel, labels).unwrap_or(false) {
                continue;
            }
        }
        if volume_storage_class(pv) != requested_class {
            continue;
        }
        if !affinity_ok {
            continue;
        }
        if node.is_some() && !check_access_modes(claim, pv) {
            continue;
        }
        if smallest.is_none_or(|(_, best)| best > qty) {
            smallest = Some((pv, qty));
        }
    }
    smallest.map(|(pv, _)| pv)
}

/// `IsDelayBindingMode`: is the claim's class WaitForFirstConsumer? `get_class` looks a class
/// up by name. Class "" → false; class not found → false (treated as Immediate); a class with
/// no volumeBindingMode → `Err` with upstream's text.
pub fn is_delay_binding_mode<'a>(
    claim: &PersistentVolumeClaim,
    get_class: impl FnOnce(&str) -> Option<&'a StorageClass>,
) -> Result<bool, String> {
    let name = claim_storage_class(claim);
    if name.is_empty() {
        return Ok(false);
    }
    let Some(class) = get_class(name) else {
        return Ok(false);
    };
    match class.volume_binding_mode.as_deref() {
        None => Err(format!(
            "VolumeBindingMode not set for StorageClass {name:?}"
        )),
        Some(mode) => Ok(mode == BINDING_WAIT_FOR_FIRST_CONSUMER),
    }
}

/// `IsDelayBindingProvisioning`: the scheduler asked for provisioning on a node.
pub fn is_delay_binding_provisioning(claim: &PersistentVolumeClaim) -> bool {
    has_annotation(&claim.metadata, ANN_SELECTED_NODE)
}

/// Is `class` marked default (GA or beta annotation equal to "true")?
pub fn is_default_storage_class(class: &StorageClass) -> bool {
    annotation(&class.metadata, ANN_IS_DEFAULT_CLASS) == Some("true")
        || annotation(&class.metadata, ANN_BETA_IS_DEFAULT_CLASS) == Some("true")
}

/// The default class among `classes` (≥1.26 rule: when several are default, the newest
/// creationTimestamp wins, then the smaller name).
pub fn default_storage_class<'a>(
    classes: impl IntoIterator<Item = &'a StorageClass>,
) -> Option<&'a StorageClass> {
    let mut best: Option<&'a StorageClass> = None;
    for c in classes.into_iter().filter(|c| is_default_storage_class(c)) {
        best = match best {
            None => Some(c),
            Some(b) => {
                let (tc, tb) = (
                    c.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                );
                let name_c = c.metadata.name.as_deref().unwrap_or("");
                let name_b = b.metadata.name.as_deref().unwrap_or("");
                if tc > tb || (tc == tb && name_c < name_b) {
                    Some(c)
                } else {
                    Some(b)
                }
            }
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
        PersistentVolumeClaimSpec, PersistentVolumeSpec, PersistentVolumeStatus,
        VolumeNodeAffinity, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pv(name: &str, size: &str, modes: &[&str], class: &str, phase: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some([("storage".to_string(), Quantity(size.into()))].into()),
                access_modes: Some(modes.iter().map(|s| s.to_string()).collect()),
                storage_class_name: Some(class.into()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
        }
    }

    fn pvc(name: &str, size: &str, modes: &[&str], class: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(modes.iter().map(|s| s.to_string()).collect()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                    ..Default::default()
                }),
                storage_class_name: class.map(Into::into),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pin(mut v: PersistentVolume, host: &str) -> PersistentVolume {
        v.spec.as_mut().unwrap().node_affinity = Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: LABEL_HOSTNAME.into(),
                        operator: "In".into(),
                        values: Some(vec![host.into()]),
                    }]),
                    match_fields: None,
                }],
            }),
        });
        v
    }

    fn node(name: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(LABEL_HOSTNAME.to_string(), name.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn name(v: Option<&PersistentVolume>) -> Option<&str> {
        v.and_then(|v| v.metadata.name.as_deref())
    }

    #[test]
    fn smallest_adequate_volume_wins() {
        let vols = [
            pv("big", "10Gi", &[RWO], "", "Available"),
            pv("small", "1G", &[RWO], "", "Available"),
            pv("fit", "1Gi", &[RWO], "", "Available"),
        ];
        let c = pvc("c", "1Gi", &[RWO], None);
        assert_eq!(
            name(find_matching_volume(
                &c,
                &vols,
                None,
                &BTreeSet::new(),
                false
            )),
            Some("fit")
        );
        // Excluded volumes are skipped (scheduler path).
        let ex: BTreeSet<String> = ["fit".to_string()].into();
        assert_eq!(
            name(find_matching_volume(&c, &vols, None, &ex, false)),
            Some("big")
        );
    }

    #[test]
    fn class_phase_and_mode_filters() {
        let vols = [
            pv("gold", "5Gi", &[RWO], "gold", "Available"),
            pv("pending", "5Gi", &[RWO], "", "Pending"),
            pv("released", "5Gi", &[RWO], "", "Released"),
        ];
        assert_eq!(
            name(find_matching_volume(
                &pvc("c", "1Gi", &[RWO], Some("")),
                &vols,
                None,
                &BTreeSet::new(),
                false
            )),
            None
        );
        assert_eq!(
            name(find_matching_volume(
                &pvc("c", "1Gi", &[RWO], Some("gold")),
                &vols,
                None,
                &BTreeSet::new(),
                false
            )),
            Some("gold")
        );
        let mut block = pvc("c", "1Gi", &[RWO], Some("gold"));
        block.spec.as_mut().unwrap().volume_mode = Some(VOLUME_MODE_BLOCK.into());
        assert_eq!(
            name(find_matching_volume(
                &block,
                &vols,
                None,
                &BTreeSet::new(),
                false
            )),
            None
        );
    }

    #[test]
    fn delay_binding_only_returns_prebound() {
        let c = pvc("c", "1Gi", &[RWO], Some("wait"));
        let free = pv("free", "5Gi", &[RWO], "wait", "Available");
        let mut pre = pv("pre", "5Gi", &[RWO], "other-class", "Pending");
        pre.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("c".into()),
            namespace: Some("default".into()),
            ..Default::default()
        });
        assert_eq!(
            name(find_matching_volume(
                &c,
                [&free],
                None,
                &BTreeSet::new(),
                true
            )),
            None
        );
        assert_eq!(
            name(find_matching_volume(
                &c,
                [&free, &pre],
                None,
                &BTreeSet::new(),
                true
            )),
            Some("pre")
        );
        // A claimRef with a different uid is someone else's.
        pre.spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid = Some("other".into());
        assert_eq!(
            name(find_matching_volume(
                &c,
                [&free, &pre],
                None,
                &BTreeSet::new(),
                true
            )),
            None
        );
    }

    #[test]
    fn scheduler_path_checks_affinity_and_access_modes() {
        let c = pvc("c", "1Gi", &[RWO], Some("local"));
        let on1 = pin(pv("on1", "5Gi", &[RWO], "local", "Available"), "node-1");
        let on2 = pin(pv("on2", "2Gi", &[RWO], "local", "Available"), "node-2");
        let rox = pin(pv("rox", "1Gi", &[ROX], "local", "Available"), "node-1");
        let vols = [on1, on2, rox];
        let n1 = node("node-1");
        assert_eq!(
            name(find_matching_volume(
                &c,
                &vols,
                Some(&n1),
                &BTreeSet::new(),
                true
            )),
            Some("on1")
        );
        assert_eq!(
            name(find_matching_volume(
                &c,
                &vols,
                Some(&node("node-2")),
                &BTreeSet::new(),
                true
            )),
            Some("on2")
        );
        assert_eq!(
            name(find_matching_volume(
                &c,
                &vols,
                Some(&node("node-3")),
                &BTreeSet::new(),
                true
            )),
            None
        );
        // A pre-bound PV whose affinity rejects the node means no match at all.
        let mut pre = pin(pv("pre", "9Gi", &[RWO], "local", "Available"), "node-2");
        pre.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("c".into()),
            namespace: Some("default".into()),
            uid: Some("uid-c".into()),
            ..Default::default()
        });
        assert_eq!(
            name(find_matching_volume(
                &c,
                [&pre, &vols[0]],
                Some(&n1),
                &BTreeSet::new(),
                true
            )),
            None
        );
    }

    #[test]
    fn node_affinity_error_text() {
        let v = pin(pv("v", "1Gi", &[RWO], "", "Available"), "node-1");
        let l: BTreeMap<String, String> =
            [(LABEL_HOSTNAME.to_string(), "node-2".to_string())].into();
        assert_eq!(
            check_volume_node_affinity(&v, &l),
            Err("no matching NodeSelectorTerms".into())
        );
        let l1: BTreeMap<String, String> =
            [(LABEL_HOSTNAME.to_string(), "node-1".to_string())].into();
        assert_eq!(check_volume_node_affinity(&v, &l1), Ok(()));
        assert_eq!(
            check_volume_node_affinity(&pv("n", "1Gi", &[RWO], "", ""), &l),
            Ok(())
        );
    }

    #[test]
    fn access_mode_strings() {
        let m: Vec<String> = [RWX, RWO, RWO, ROX].iter().map(|s| s.to_string()).collect();
        assert_eq!(access_modes_as_string(&m), "RWO,ROX,RWX");
    }

    #[test]
    fn delay_binding_mode_lookup() {
        let mut sc = StorageClass {
            provisioner: NOT_SUPPORTED_PROVISIONER.into(),
            ..Default::default()
        };
        sc.volume_binding_mode = Some(BINDING_WAIT_FOR_FIRST_CONSUMER.into());
        let c = pvc("c", "1Gi", &[RWO], Some("local"));
        assert_eq!(is_delay_binding_mode(&c, |_| Some(&sc)), Ok(true));
        assert_eq!(is_delay_binding_mode(&c, |_| None), Ok(false));
        assert_eq!(
            is_delay_binding_mode(&pvc("c", "1Gi", &[RWO], Some("")), |_| Some(&sc)),
            Ok(false)
        );
        sc.volume_binding_mode = None;
        assert_eq!(
            is_delay_binding_mode(&c, |_| Some(&sc)),
            Err("VolumeBindingMode not set for StorageClass \"local\"".into())
        );
        // The beta annotation takes precedence over the field.
        let mut b = pvc("c", "1Gi", &[RWO], Some("field"));
        b.metadata.annotations =
            Some([(ANN_BETA_STORAGE_CLASS.to_string(), "anno".to_string())].into());
        assert_eq!(claim_storage_class(&b), "anno");
    }
}
