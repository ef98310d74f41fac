//! The controller's own view of the cluster: PVs, PVCs, StorageClasses and Pods as last seen
//! (from watches or from its own committed writes), plus the indexes the binder needs.
//!
//! Like upstream's PV controller caches, an object is replaced only by a *newer*
//! resourceVersion, so a late watch event never undoes a write the controller already saw
//! committed ("read your writes").
//!
//! Indexes:
//! - free volumes by (access-mode group, class) ordered by (capacity, name), so the smallest
//!   adequate volume is found without scanning every PV (10,000 PVs × 10,000 claims would
//!   otherwise be 10^8 comparisons);
//! - volumes whose claimRef names a claim (pre-bound or bound), by claim key;
//! - pods by the claims they reference (upstream's PodPVCIndex).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use apiserver::api::{self, ParsedQuantity};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// `namespace/name`.
pub fn meta_key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// Is `new` a newer version than `old`? resourceVersions are bonsai store revisions
/// (integers); anything unparsable is treated as newer, as a relist would be.
pub fn is_newer(new: &ObjectMeta, old: &ObjectMeta) -> bool {
    match (rv_of(new), rv_of(old)) {
        (Some(n), Some(o)) => n > o,
        _ => true,
    }
}

/// The numeric resourceVersion, if any.
pub fn rv_of(meta: &ObjectMeta) -> Option<u64> {
    meta.resource_version.as_deref()?.parse().ok()
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct VolumeIndexEntry {
    modes: String,
    class: String,
    capacity: ParsedQuantity,
    /// `Some(claim key)` when claimRef is set; such a volume is not free.
    claim_ref: Option<String>,
}

/// Pods' claim references: `namespace/claimName` for every `persistentVolumeClaim` volume and
/// every generic ephemeral volume (`<pod>-<volume>`).
pub fn pod_claim_keys(pod: &Pod) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(pvc) = &v.persistent_volume_claim {
            out.push(format!("{ns}/{}", pvc.claim_name));
        } else if v.ephemeral.is_some() {
            out.push(format!("{ns}/{pod_name}-{}", v.name));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[derive(Default, Debug)]
pub struct Cache {
    /// Shared (`Arc`) so a sync can hold the object it decides about while it writes to the
    /// core, without a deep copy per sync; a copy is made only for a write.
    pub volumes: BTreeMap<String, Arc<PersistentVolume>>,
    pub claims: BTreeMap<String, Arc<PersistentVolumeClaim>>,
    pub classes: BTreeMap<String, StorageClass>,
    pub pods: BTreeMap<String, Pod>,

    volume_entries: BTreeMap<String, VolumeIndexEntry>,
    /// (modes, class) → {(capacity, name)} of volumes without claimRef.
    free: BTreeMap<(String, String), BTreeSet<(ParsedQuantity, String)>>,
    /// modes key → number of volumes carrying exactly that mode set.
    mode_groups: BTreeMap<String, usize>,
    /// claim key → volumes whose claimRef names it.
    by_claim_ref: BTreeMap<String, BTreeSet<String>>,
    /// claim key → pods referencing it.
    pods_by_claim: BTreeMap<String, BTreeSet<String>>,
    /// Last resourceVersion of deleted PVs / PVCs: a late completion of a write that raced
    /// with (or caused) the deletion must not bring the object back.
    volume_tombstones: BTreeMap<String, u64>,
    claim_tombstones: BTreeMap<String, u64>,
    /// Volumes the controller must not pick now (a write in flight, or stale): kept out of
    /// `free`, so a burst of claims does not rescan every busy volume (O(n²)).
    hidden: BTreeSet<String>,
    /// The hidden volumes that would otherwise be in `free`, indexed the same way.
    busy_free: BTreeMap<(String, String), BTreeSet<(ParsedQuantity, String)>>,
}

/// Does the object's own state say it no longer exists (a write removed the last finalizer
/// of an object being deleted)?
pub fn is_gone(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some() && meta.finalizers.as_ref().is_none_or(|f| f.is_empty())
}

fn buried(tombs: &BTreeMap<String, u64>, key: &str, meta: &ObjectMeta) -> bool {
    match (tombs.get(key), rv_of(meta)) {
        (Some(t), Some(r)) => r <= *t,
        _ => false,
    }
}

impl Cache {
    // ---- volumes ----

    /// Stores `pv` if it is newer than the cached copy. Returns whether it was stored.
    pub fn upsert_volume(&mut self, pv: PersistentVolume) -> bool {
        let name = pv.metadata.name.clone().unwrap_or_default();
        if buried(&self.volume_tombstones, &name, &pv.metadata) {
            return false;
        }
        if let Some(old) = self.volumes.get(&name) {
            if !is_newer(&pv.metadata, &old.metadata) {
                return false;
            }
        }
        self.unindex_volume(&name);
        self.index_volume(&name, &pv);
        self.volumes.insert(name, Arc::new(pv));
        true
    }

    /// Removes a volume. Returns the removed copy.
    pub fn remove_volume(&mut self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.unindex_volume(name);
        let old = self.volumes.remove(name);
        if let Some(r) = old.as_ref().and_then(|v| rv_of(&v.metadata)) {
            self.volume_tombstones.insert(name.to_string(), r);
        }
        old
    }

    /// Records that `name` was deleted at `rv` (from the watch's Deleted object).
    pub fn bury_volume(&mut self, name: &str, meta: &ObjectMeta) {
        if let Some(r) = rv_of(meta) {
            let t = self.volume_tombstones.entry(name.to_string()).or_insert(r);
            *t = (*t).max(r);
        }
    }

    pub fn remove_claim(&mut self, key: &str) -> Option<Arc<PersistentVolumeClaim>> {
        let old = self.claims.remove(key);
        if let Some(r) = old.as_ref().and_then(|c| rv_of(&c.metadata)) {
            self.claim_tombstones.insert(key.to_string(), r);
        }
        old
    }

    pub fn bury_claim(&mut self, key: &str, meta: &ObjectMeta) {
        if let Some(r) = rv_of(meta) {
            let t = self.claim_tombstones.entry(key.to_string()).or_insert(r);
            *t = (*t).max(r);
        }
    }

    fn index_volume(&mut self, name: &str, pv: &PersistentVolume) {
        let entry = VolumeIndexEntry {
            modes: api::access_modes_as_string(api::volume_access_modes(pv)),
            class: api::volume_storage_class(pv).to_string(),
            capacity: api::volume_capacity(pv),
            claim_ref: pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .map(|r| {
                    format!(
                        "{}/{}",
                        r.namespace.as_deref().unwrap_or(""),
                        r.name.as_deref().unwrap_or("")
                    )
                }),
        };
        *self.mode_groups.entry(entry.modes.clone()).or_default() += 1;
        match &entry.claim_ref {
            Some(key) => {
                self.by_claim_ref
                    .entry(key.clone())
                    .or_default()
                    .insert(name.to_string());
            }
            None => {
                let target = if self.hidden.contains(name) {
                    &mut self.busy_free
                } else {
                    &mut self.free
                };
                target
                    .entry((entry.modes.clone(), entry.class.clone()))
                    .or_default()
                    .insert((entry.capacity, name.to_string()));
            }
        }
        self.volume_entries.insert(name.to_string(), entry);
    }

    /// Hides a volume from (or returns it to) the free index.
    pub fn set_hidden(&mut self, name: &str, hidden: bool) {
        let changed = if hidden {
            self.hidden.insert(name.to_string())
        } else {
            self.hidden.remove(name)
        };
        if !changed {
            return;
        }
        let Some(e) = self.volume_entries.get(name) else {
            return;
        };
        if e.claim_ref.is_some() {
            return;
        }
        let k = (e.modes.clone(), e.class.clone());
        let item = (e.capacity, name.to_string());
        let (from, to) = if hidden {
            (&mut self.free, &mut self.busy_free)
        } else {
            (&mut self.busy_free, &mut self.free)
        };
        remove_from(from, &k, &item);
        to.entry(k).or_default().insert(item);
    }

    fn unindex_volume(&mut self, name: &str) {
        let Some(entry) = self.volume_entries.remove(name) else {
            return;
        };
        if let Some(n) = self.mode_groups.get_mut(&entry.modes) {
            *n -= 1;
            if *n == 0 {
                self.mode_groups.remove(&entry.modes);
            }
        }
        match &entry.claim_ref {
            Some(key) => {
                if let Some(set) = self.by_claim_ref.get_mut(key) {
                    set.remove(name);
                    if set.is_empty() {
                        self.by_claim_ref.remove(key);
                    }
                }
            }
            None => {
                let k = (entry.modes.clone(), entry.class.clone());
                let item = (entry.capacity, name.to_string());
                remove_from(&mut self.free, &k, &item);
                remove_from(&mut self.busy_free, &k, &item);
            }
        }
    }

    /// Upstream `findBestMatchForClaim`: access-mode groups that contain the claim's modes,
    /// fewest modes first; within a group, `FindMatchingVolume` semantics (a volume pre-bound
    /// to the claim wins outright; otherwise the smallest adequate free volume). `excluded`
    /// holds volumes the controller must not touch now (a write in flight, or known stale).
    pub fn find_best_match(
        &self,
        claim: &PersistentVolumeClaim,
        delay_binding: bool,
        excluded: &BTreeSet<String>,
    ) -> Option<Arc<PersistentVolume>> {
        // Groups whose modes ⊇ requested, ordered by (number of modes, key).
        let groups = self.groups_for(claim);
        let claim_key = meta_key(&claim.metadata);
        let class = api::claim_storage_class(claim).to_string();
        let request = api::claim_requested_storage(claim);
        let none = BTreeSet::new();
        for group in groups {
            // 1. Volumes whose claimRef names this claim (pre-bound, or bound earlier).
            for name in self.by_claim_ref.get(&claim_key).unwrap_or(&none) {
                let Some(pv) = self.volumes.get(name) else {
                    continue;
                };
                if self.volume_entries.get(name).map(|e| &e.modes) != Some(group) {
                    continue;
                }
                if api::find_matching_volume(claim, [&**pv], None, excluded, delay_binding)
                    .is_some()
                {
                    return Some(pv.clone());
                }
            }
            // 2. Free volumes of the claim's class, smallest adequate first. (A free volume
            //    of another class can never match, so only this class is scanned.)
            if delay_binding {
                // The PV controller never picks a free volume for a WaitForFirstConsumer
                // claim; `find_matching_volume` would skip every one of them.
                continue;
            }
            let Some(set) = self.free.get(&(group.clone(), class.clone())) else {
                continue;
            };
            for (_, name) in set.range((request, String::new())..) {
                let Some(pv) = self.volumes.get(name) else {
                    continue;
                };
                if api::find_matching_volume(claim, [&**pv], None, excluded, delay_binding)
                    .is_some()
                {
                    return Some(pv.clone());
                }
            }
        }
        None
    }

    /// A volume hidden from the free index (a write in flight, or stale) that the claim could
    /// take once it is settled: class, access modes, capacity and volume mode fit. The binder
    /// waits on it rather than conclude that nothing fits (which would record a spurious
    /// event and leave the claim until the next resync).
    pub fn busy_candidate(&self, claim: &PersistentVolumeClaim) -> Option<String> {
        let class = api::claim_storage_class(claim).to_string();
        let request = api::claim_requested_storage(claim);
        for group in self.groups_for(claim) {
            let Some(set) = self.busy_free.get(&(group.clone(), class.clone())) else {
                continue;
            };
            for (_, name) in set.range((request, String::new())..) {
                let Some(pv) = self.volumes.get(name) else {
                    continue;
                };
                if api::check_volume_mode_mismatches(claim, pv)
                    || pv.metadata.deletion_timestamp.is_some()
                {
                    continue;
                }
                return Some(name.clone());
            }
        }
        None
    }

    /// Access-mode groups containing the claim's modes, fewest modes first.
    fn groups_for(&self, claim: &PersistentVolumeClaim) -> Vec<&String> {
        let requested = api::claim_access_modes(claim);
        let mut groups: Vec<(usize, &String)> = self
            .mode_groups
            .keys()
            .filter(|key| {
                let have: Vec<&str> = key.split(',').filter(|s| !s.is_empty()).collect();
                requested.iter().all(|m| have.contains(&short_mode(m)))
            })
            .map(|key| (key.split(',').filter(|s| !s.is_empty()).count(), key))
            .collect();
        groups.sort();
        groups.into_iter().map(|(_, g)| g).collect()
    }

    /// Volumes whose claimRef names `claim_key`.
    pub fn volumes_referencing(&self, claim_key: &str) -> Vec<String> {
        self.by_claim_ref
            .get(claim_key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    // ---- claims, classes ----

    pub fn upsert_claim(&mut self, pvc: PersistentVolumeClaim) -> bool {
        let key = meta_key(&pvc.metadata);
        if buried(&self.claim_tombstones, &key, &pvc.metadata) {
            return false;
        }
        if let Some(old) = self.claims.get(&key) {
            if !is_newer(&pvc.metadata, &old.metadata) {
                return false;
            }
        }
        self.claims.insert(key, Arc::new(pvc));
        true
    }

    pub fn upsert_class(&mut self, sc: StorageClass) -> bool {
        let name = sc.metadata.name.clone().unwrap_or_default();
        if let Some(old) = self.classes.get(&name) {
            if !is_newer(&sc.metadata, &old.metadata) {
                return false;
            }
        }
        self.classes.insert(name, sc);
        true
    }

    // ---- pods ----

    pub fn upsert_pod(&mut self, pod: Pod) -> bool {
        let key = meta_key(&pod.metadata);
        if let Some(old) = self.pods.get_mut(&key) {
            if !is_newer(&pod.metadata, &old.metadata) {
                return false;
            }
            // The claim index derives from the key and `spec.volumes` (immutable in a pod):
            // a newer version with the same volumes (bound, started, status updates) keeps
            // its index entries and just replaces the old copy.
            if old.spec.as_ref().map(|s| &s.volumes) == pod.spec.as_ref().map(|s| &s.volumes) {
                *old = pod;
                return true;
            }
        }
        self.remove_pod(&key);
        for c in pod_claim_keys(&pod) {
            self.pods_by_claim.entry(c).or_default().insert(key.clone());
        }
        self.pods.insert(key, pod);
        true
    }

    pub fn remove_pod(&mut self, key: &str) -> Option<Pod> {
        let pod = self.pods.remove(key)?;
        for c in pod_claim_keys(&pod) {
            if let Some(set) = self.pods_by_claim.get_mut(&c) {
                set.remove(key);
                if set.is_empty() {
                    self.pods_by_claim.remove(&c);
                }
            }
        }
        Some(pod)
    }

    /// Pods referencing `claim_key`, in key order.
    pub fn pods_for_claim(&self, claim_key: &str) -> Vec<&Pod> {
        self.pods_by_claim
            .get(claim_key)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get(k))
            .collect()
    }
}

fn short_mode(m: &str) -> &'static str {
    match m {
        api::RWO => "RWO",
        api::ROX => "ROX",
        api::RWX => "RWX",
        api::RWOP => "RWOP",
        _ => "?",
    }
}

fn remove_from(
    map: &mut BTreeMap<(String, String), BTreeSet<(ParsedQuantity, String)>>,
    k: &(String, String),
    item: &(ParsedQuantity, String),
) {
    if let Some(set) = map.get_mut(k) {
        set.remove(item);
        if set.is_empty() {
            map.remove(k);
        }
    }
}
