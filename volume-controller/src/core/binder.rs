//! The PV controller's decisions (volume-binding.md §4, §5.1, §7), after upstream
//! `pv_controller.go`, in its "space shuttle" style: every branch says what the world looks
//! like there (`OBSERVATION`) and which upstream unit-test set covers it (`[Unit test set N]`;
//! the table tests in `core::tests` carry the same numbers).
//!
//! Each function decides from the cache and issues at most one write (see `core` docs); the
//! sync runs again when that write completes.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};

use apiserver::api::{self, has_annotation};

use super::cache::meta_key;
use super::provision::{self, ProvisionPlan};
use super::{claim_ref, volume_ref, CommitEvent, Obj, Request, VolumeControllerCore, Work};

pub const PHASE_PENDING: &str = "Pending";
pub const PHASE_AVAILABLE: &str = "Available";
pub const PHASE_BOUND: &str = "Bound";
pub const PHASE_RELEASED: &str = "Released";
pub const PHASE_FAILED: &str = "Failed";
pub const PHASE_LOST: &str = "Lost";

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

fn volume_name(pv: &PersistentVolume) -> String {
    pv.metadata.name.clone().unwrap_or_default()
}

fn claim_volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn claim_ref_key(pv: &PersistentVolume) -> Option<(String, String)> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some((
        format!(
            "{}/{}",
            r.namespace.as_deref().unwrap_or(""),
            r.name.as_deref().unwrap_or("")
        ),
        r.uid.clone().unwrap_or_default(),
    ))
}

fn set_annotation(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    k: &str,
    v: &str,
) {
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(k.to_string(), v.to_string());
}

/// `IsPodTerminated`: Failed/Succeeded, or being deleted with no container running.
pub fn is_pod_terminated(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    if phase == "Failed" || phase == "Succeeded" {
        return true;
    }
    if pod.metadata.deletion_timestamp.is_none() {
        return false;
    }
    // notRunning: every container status is terminated or waiting (vacuously true).
    status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .all(|cs| {
            cs.state
                .as_ref()
                .is_some_and(|st| st.terminated.is_some() || st.waiting.is_some())
        })
}

/// `checkVolumeSatisfyClaim`: the checks for a claim that names its volume (§4.3), in order.
pub fn check_volume_satisfy_claim(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), String> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "the volume is marked for deletion {:?}",
            volume_name(pv)
        ));
    }
    // Quantity.Value(): whole units, rounded up.
    if api::volume_capacity(pv).ceil_units() < api::claim_requested_storage(claim).ceil_units() {
        return Err("requested PV is too small".into());
    }
    if api::volume_storage_class(pv) != api::claim_storage_class(claim) {
        return Err("storageClassName does not match".into());
    }
    if api::check_volume_mode_mismatches(claim, pv) {
        return Err("incompatible volumeMode".into());
    }
    if !api::check_access_modes(claim, pv) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// `PersistentVolumeClaimHasClass`: the beta annotation or the field is set (even to "").
fn claim_has_class(c: &PersistentVolumeClaim) -> bool {
    has_annotation(&c.metadata, api::ANN_BETA_STORAGE_CLASS)
        || c.spec
            .as_ref()
            .is_some_and(|s| s.storage_class_name.is_some())
}

/// Which deleter handles a Released volume with policy Delete.
enum Deleter {
    /// `provisioned-by` names an external provisioner: it deletes; the controller waits.
    External,
}

/// `findDeletablePlugin` for a bonsai without in-tree deletable plugins.
fn find_deletable_plugin(pv: &PersistentVolume) -> Result<Deleter, String> {
    if let Some(p) = api::annotation(&pv.metadata, api::ANN_DYNAMICALLY_PROVISIONED) {
        if !p.is_empty() {
            if !p.starts_with("kubernetes.io/") {
                // External provisioner is requested, do not report error.
                return Ok(Deleter::External);
            }
            return Err(format!("no volume plugin matched name: {p}"));
        }
    }
    // Not dynamically provisioned: look a plugin up by the volume's source. `local` (and
    // every other source bonsai serves) has no deleter.
    Err(format!(
        "error getting deleter volume plugin for volume {:?}: no deletable volume plugin matched",
        volume_name(pv)
    ))
}

impl VolumeControllerCore {
    // ================================================================ syncClaim

    /// `syncClaim`: dispatch on `pv.kubernetes.io/bind-completed`.
    pub(crate) fn sync_claim(&mut self, key: &str) {
        let Some(claim) = self.cache.claims.get(key).cloned() else {
            return;
        };
        let obj = Obj::Claim(key.to_string());
        if self.is_busy(&obj) {
            // A write for this claim is in flight (or conflicted): decide once it is known.
            self.wait_on(obj, Work::Claim(key.to_string()));
            return;
        }
        if !has_annotation(&claim.metadata, api::ANN_BIND_COMPLETED) {
            self.sync_unbound_claim(claim);
        } else {
            self.sync_bound_claim(claim);
        }
    }

    fn sync_unbound_claim(&mut self, claim: Arc<PersistentVolumeClaim>) {
        // OBSERVATION: pvc is "Pending" (not bind-completed)
        let key = meta_key(&claim.metadata);
        let requested_volume = claim_volume_name(&claim).to_string();
        if requested_volume.is_empty() {
            // [Unit test set 1] The user did not care which PV they get.
            // A volume pre-bound to this claim with a write in flight decides the match:
            // wait for it rather than conclude "nothing fits".
            let busy_ref = self
                .cache
                .volumes_referencing(&key)
                .into_iter()
                .find(|v| self.busy_volumes.contains(v));
            if let Some(v) = busy_ref {
                self.wait_on(Obj::Volume(v), Work::Claim(key));
                return;
            }
            let delay_binding =
                match api::is_delay_binding_mode(&claim, |n| self.cache.classes.get(n)) {
                    Ok(d) => d,
                    Err(_e) => {
                        // The class lacks volumeBindingMode: upstream returns the error and
                        // retries at the next sync. Nothing to write.
                        return;
                    }
                };
            let found = self
                .cache
                .find_best_match(&claim, delay_binding, &self.busy_volumes);
            if let Some(volume) = found {
                // OBSERVATION: pvc is "Pending", pv is "Available" (or pre-bound to it)
                self.bind(&volume, &claim);
            } else if let Some(v) = (!delay_binding)
                .then(|| self.cache.busy_candidate(&claim))
                .flatten()
            {
                // OBSERVATION: nothing free fits now, but a volume that would is in the middle
                // of a write (another claim's bind, a phase update): decide after it.
                self.wait_on(Obj::Volume(v), Work::Claim(key));
            } else {
                // OBSERVATION: pvc is "Pending", no volume fits; will retry.
                if !claim_has_class(&claim) {
                    // [RetroactiveDefaultStorageClass] Write the default class into the claim
                    // and restart the sync from the update.
                    if let Some(def) = api::default_storage_class(self.cache.classes.values()) {
                        let mut c = (*claim).clone();
                        c.spec
                            .get_or_insert_with(Default::default)
                            .storage_class_name = def.metadata.name.clone();
                        self.write(
                            Request::UpdateClaim(c),
                            vec![],
                            vec![Work::Claim(key)],
                            None,
                            false,
                        );
                        return;
                    } else {
                        // No default class: the claim stays class-less.
                    }
                }
                if delay_binding && !api::is_delay_binding_provisioning(&claim) {
                    // [Unit test 1-13] WaitForFirstConsumer: the scheduler binds it.
                    self.emit_event_for_unbound_delay_binding_claim(&claim);
                } else if !api::claim_storage_class(&claim).is_empty() {
                    // [Unit test set 11] Provisioning; no status update (upstream returns).
                    self.provision_claim(&claim);
                    return;
                } else {
                    // [Unit test 1-2] No class, nothing fits.
                    self.record(
                        claim_ref(&claim),
                        NORMAL,
                        "FailedBinding",
                        "no persistent volumes available for this claim and no storage class is set",
                    );
                }
                // [Unit test 1-3] Mark the claim Pending and try again at the next sync.
                self.update_claim_status(&claim, PHASE_PENDING, None, None);
            }
        } else {
            // [Unit test set 2] The user asked for a specific PV.
            let Some(volume) = self.cache.volumes.get(&requested_volume).cloned() else {
                // [Unit test 2-1, 2-2] The PV does not exist (yet): Pending, retry later.
                self.update_claim_status(&claim, PHASE_PENDING, None, None);
                return;
            };
            if self.busy_volumes.contains(&requested_volume) {
                self.wait_on(Obj::Volume(requested_volume), Work::Claim(key));
                return;
            }
            let has_claim_ref = volume.spec.as_ref().is_some_and(|s| s.claim_ref.is_some());
            if !has_claim_ref {
                // OBSERVATION: pvc is "Pending", pv is "Available"
                match check_volume_satisfy_claim(&volume, &claim) {
                    Err(reason) => {
                        // [Unit test 2-9..2-13] The named volume does not fit.
                        let msg = format!(
                            "Cannot bind to requested volume {requested_volume:?}: {reason}"
                        );
                        self.record(claim_ref(&claim), WARNING, "VolumeMismatch", &msg);
                        self.update_claim_status(&claim, PHASE_PENDING, None, None);
                    }
                    Ok(()) => {
                        // [Unit test 2-3] Bind; the PV gets bound-by-controller.
                        self.bind(&volume, &claim);
                    }
                }
            } else if api::is_volume_bound_to_claim(&volume, &claim) {
                // [Unit test 2-4, 2-5] OBSERVATION: pvc is "Pending", pv is "Bound" to it:
                // finish the binding (adds the claim UID if it was pre-bound by name).
                self.bind(&volume, &claim);
            } else {
                // OBSERVATION: pvc is "Pending", pv is "Bound" to someone else.
                let msg =
                    format!("volume {requested_volume:?} already bound to a different claim.");
                self.record(claim_ref(&claim), WARNING, "FailedBinding", &msg);
                if !has_annotation(&claim.metadata, api::ANN_BOUND_BY_CONTROLLER) {
                    // [Unit test 2-6] User pre-bound: retry later.
                    self.update_claim_status(&claim, PHASE_PENDING, None, None);
                } else {
                    // [Unit test 2-7] "THIS SHOULD NEVER HAPPEN": upstream returns an error
                    // and writes nothing.
                }
            }
        }
    }

    fn sync_bound_claim(&mut self, claim: Arc<PersistentVolumeClaim>) {
        // OBSERVATION: pvc has bind-completed; it was Bound before.
        // [Unit test set 3]
        let vname = claim_volume_name(&claim).to_string();
        if vname.is_empty() {
            // [Unit test 3-1] The claim lost its volumeName.
            self.update_claim_status_with_event(
                &claim,
                PHASE_LOST,
                WARNING,
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            );
            return;
        }
        let Some(volume) = self.cache.volumes.get(&vname).cloned() else {
            // [Unit test 3-2] The volume is gone.
            self.update_claim_status_with_event(
                &claim,
                PHASE_LOST,
                WARNING,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            );
            return;
        };
        if self.busy_volumes.contains(&vname) {
            self.wait_on(Obj::Volume(vname), Work::Claim(meta_key(&claim.metadata)));
            return;
        }
        let ref_uid = volume
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .map(|r| r.uid.clone().unwrap_or_default());
        match ref_uid {
            None => {
                // [Unit test 3-3, 3-7] The volume came unbound (or we have not seen the new
                // version yet): bind again.
                self.bind(&volume, &claim);
            }
            Some(uid) if uid == claim.metadata.uid.clone().unwrap_or_default() => {
                // [Unit test 3-5] All is well; bind() fixes any phase left behind.
                self.bind(&volume, &claim);
            }
            Some(_) => {
                // [Unit test 3-4, 3-6] The volume belongs to another claim.
                self.update_claim_status_with_event(
                    &claim,
                    PHASE_LOST,
                    WARNING,
                    "ClaimMisbound",
                    "Two claims are bound to the same volume, this one is bound incorrectly",
                );
            }
        }
    }

    // ================================================================ bind

    /// `bind(volume, claim)`: the next of the four writes of §4.5 still missing, or nothing.
    /// Each step is checked on the cached objects first; a copy is made only to write.
    fn bind(&mut self, volume: &PersistentVolume, claim: &PersistentVolumeClaim) {
        let vname = volume_name(volume);
        let locks = || {
            vec![
                Obj::Claim(meta_key(&claim.metadata)),
                Obj::Volume(volume_name(volume)),
            ]
        };
        let then = || vec![Work::Claim(meta_key(&claim.metadata))];

        // Step 1: PV.spec.claimRef (+ bound-by-controller unless pre-bound to this claim).
        let should_set_bound_by_controller = !api::is_volume_bound_to_claim(volume, claim);
        let ref_matches = volume
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| {
                r.name == claim.metadata.name
                    && r.namespace == claim.metadata.namespace
                    && r.uid.as_deref().unwrap_or("") == claim.metadata.uid.as_deref().unwrap_or("")
            });
        let add_bound_by_controller = should_set_bound_by_controller
            && !has_annotation(&volume.metadata, api::ANN_BOUND_BY_CONTROLLER);
        if !ref_matches || add_bound_by_controller {
            let mut pv = volume.clone();
            if !ref_matches {
                pv.spec.get_or_insert_with(Default::default).claim_ref = Some(claim_ref(claim));
            }
            if add_bound_by_controller {
                set_annotation(&mut pv.metadata, api::ANN_BOUND_BY_CONTROLLER, "yes");
            }
            self.write(Request::UpdateVolume(pv), locks(), then(), None, false);
            return;
        }

        // Step 2: PV.status.phase = Bound.
        if volume_phase(volume) != PHASE_BOUND {
            let mut pv = volume.clone();
            let st = pv.status.get_or_insert_with(Default::default);
            st.phase = Some(PHASE_BOUND.into());
            st.message = None;
            self.write(
                Request::UpdateVolumeStatus(pv),
                locks(),
                then(),
                None,
                false,
            );
            return;
        }

        // Step 3: PVC.spec.volumeName (+ bound-by-controller) and bind-completed.
        let set_volume_name = claim_volume_name(claim) != vname;
        let set_completed = !has_annotation(&claim.metadata, api::ANN_BIND_COMPLETED);
        if set_volume_name || set_completed {
            let mut c = claim.clone();
            if set_volume_name {
                c.spec.get_or_insert_with(Default::default).volume_name = Some(vname.clone());
                if !has_annotation(&c.metadata, api::ANN_BOUND_BY_CONTROLLER) {
                    set_annotation(&mut c.metadata, api::ANN_BOUND_BY_CONTROLLER, "yes");
                }
            }
            if set_completed {
                set_annotation(&mut c.metadata, api::ANN_BIND_COMPLETED, "yes");
            }
            self.write(Request::UpdateClaim(c), locks(), then(), None, false);
            return;
        }

        // Step 4: PVC.status: Bound, accessModes and capacity from the volume.
        self.update_claim_status(claim, PHASE_BOUND, Some(volume), Some(locks()));
    }

    // ================================================================ syncVolume

    /// `syncVolume` (§4.7).
    pub(crate) fn sync_volume(&mut self, name: &str) {
        let Some(volume) = self.cache.volumes.get(name).cloned() else {
            return;
        };
        let work = Work::Volume(name.to_string());
        if self.busy_volumes.contains(name) {
            self.wait_on(Obj::Volume(name.to_string()), work);
            return;
        }
        // [Unit test set 4]
        let Some((claim_key, ref_uid)) = claim_ref_key(&volume) else {
            // [Unit test 4-1] Volume is unused.
            self.update_volume_phase(&volume, PHASE_AVAILABLE, None, None);
            return;
        };
        if ref_uid.is_empty() {
            // [Unit test 4-2] Pre-bound to a claim by name; the claim's sync binds it.
            self.update_volume_phase(&volume, PHASE_AVAILABLE, None, None);
            return;
        }
        // OBSERVATION: pv has a claimRef with a UID.
        let phase = volume_phase(&volume).to_string();
        let released_or_failed = phase == PHASE_RELEASED || phase == PHASE_FAILED;
        let confirmed_absent = self
            .absent_claims
            .contains(&(claim_key.clone(), ref_uid.clone()));
        let mut claim = self.cache.claims.get(&claim_key).cloned();
        if claim.is_none() && !released_or_failed && !confirmed_absent {
            // The claim may just not have reached this cache yet (a provisioner or the
            // scheduler wrote claimRef): ask the API server before releasing anything.
            self.get_claim(&claim_key, &ref_uid, name);
            return;
        }
        if claim
            .as_ref()
            .is_some_and(|c| c.metadata.uid.as_deref().unwrap_or("") != ref_uid)
        {
            // [Unit test 4-4] A claim of that name with another UID: the cached one may be
            // old, so double-check with the API server, as upstream does.
            if !confirmed_absent {
                self.get_claim(&claim_key, &ref_uid, name);
                return;
            }
            claim = None;
        }

        match claim {
            None => {
                // [Unit test 4-3] The claim is gone: Released, then reclaim per policy. A
                // Failed volume stays Failed (the user should see it) but reclaim retries.
                if !released_or_failed {
                    self.update_volume_phase(&volume, PHASE_RELEASED, None, None);
                    return;
                }
                self.reclaim_volume(&volume);
            }
            Some(c) if claim_volume_name(&c).is_empty() => {
                if api::check_volume_mode_mismatches(&c, &volume) {
                    // The claim's sync will never pick this volume; say why on both.
                    let vmsg = format!(
                        "Cannot bind PersistentVolume to requested PersistentVolumeClaim {:?} due to incompatible volumeMode.",
                        c.metadata.name.as_deref().unwrap_or("")
                    );
                    self.record(volume_ref(&volume), WARNING, "VolumeMismatch", &vmsg);
                    let cmsg = format!(
                        "Cannot bind PersistentVolume {name:?} to requested PersistentVolumeClaim due to incompatible volumeMode."
                    );
                    self.record(claim_ref(&c), WARNING, "VolumeMismatch", &cmsg);
                    return;
                }
                // [Unit test 4-5] OBSERVATION: pv is bound, pvc is "Pending": the claim's
                // sync finishes the binding (this is how a bind the scheduler started, or a
                // provisioned volume, gets completed).
                self.enqueue(Work::Claim(claim_key));
            }
            Some(c) if claim_volume_name(&c) == name => {
                // [Unit test 4-6] Properly bound; make the phase say so.
                self.update_volume_phase(&volume, PHASE_BOUND, None, None);
            }
            Some(_) => {
                // OBSERVATION: the claim is bound to another volume.
                let provisioned =
                    has_annotation(&volume.metadata, api::ANN_DYNAMICALLY_PROVISIONED);
                let policy = reclaim_policy(&volume);
                if provisioned && policy == "Delete" {
                    // Provisioned for this claim, which got bound elsewhere: release and
                    // delete (never overwrite Failed).
                    if !released_or_failed {
                        self.update_volume_phase(&volume, PHASE_RELEASED, None, None);
                        return;
                    }
                    self.reclaim_volume(&volume);
                } else {
                    // [Unit test 4-7, 4-8, 10-2] Roll our half of the binding back.
                    self.unbind_volume(&volume);
                }
            }
        }
    }

    /// `unbindVolume`: drop claimRef (bound by controller) or only its UID (pre-bound by the
    /// user). The next sync makes the phase Available.
    fn unbind_volume(&mut self, volume: &PersistentVolume) {
        let mut pv = volume.clone();
        if has_annotation(&pv.metadata, api::ANN_BOUND_BY_CONTROLLER) {
            if let Some(s) = pv.spec.as_mut() {
                s.claim_ref = None;
            }
            if let Some(a) = pv.metadata.annotations.as_mut() {
                a.remove(api::ANN_BOUND_BY_CONTROLLER);
                if a.is_empty() {
                    pv.metadata.annotations = None;
                }
            }
        } else if let Some(r) = pv.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
            r.uid = None;
        }
        let name = volume_name(volume);
        self.write(
            Request::UpdateVolume(pv),
            vec![],
            vec![Work::Volume(name)],
            None,
            false,
        );
    }

    // ================================================================ reclaim (§7)

    fn reclaim_volume(&mut self, volume: &PersistentVolume) {
        if api::annotation(&volume.metadata, api::ANN_MIGRATED_TO).is_some_and(|m| !m.is_empty()) {
            // CSI migration: the external provisioner handles it.
            return;
        }
        match reclaim_policy(volume).as_str() {
            "Retain" => {
                // [Unit test 6-x] Nothing to do; the volume stays Released with its claimRef.
            }
            "Recycle" => self.recycle_volume(volume),
            "Delete" => self.delete_volume_operation(volume),
            _ => {
                self.update_volume_phase(
                    volume,
                    PHASE_FAILED,
                    Some("Volume has unrecognized PersistentVolumeReclaimPolicy"),
                    Some((WARNING, "VolumeUnknownReclaimPolicy")),
                );
            }
        }
    }

    /// `isVolumeReleased`: claimRef with a UID whose claim is gone or bound elsewhere.
    fn is_volume_released(&self, volume: &PersistentVolume) -> bool {
        let Some((key, uid)) = claim_ref_key(volume) else {
            return false;
        };
        if uid.is_empty() {
            return false;
        }
        match self.cache.claims.get(&key) {
            Some(c) if c.metadata.uid.as_deref() == Some(uid.as_str()) => {
                let vn = claim_volume_name(c);
                !vn.is_empty() && vn != volume_name(volume)
            }
            _ => true,
        }
    }

    fn recycle_volume(&mut self, volume: &PersistentVolume) {
        if !self.is_volume_released(volume) {
            return;
        }
        let Some((key, _)) = claim_ref_key(volume) else {
            return;
        };
        let mut users: Vec<String> = self
            .cache
            .pods_for_claim(&key)
            .into_iter()
            .filter(|p| !is_pod_terminated(p))
            .map(|p| meta_key(&p.metadata))
            .collect();
        users.sort();
        if !users.is_empty() && !self.cache.claims.contains_key(&key) {
            let msg = format!("Volume is used by pods: {}", users.join(","));
            self.record(volume_ref(volume), NORMAL, "VolumeFailedRecycle", &msg);
            return;
        }
        // No recycler plugin exists for local (or any bonsai) volumes.
        self.update_volume_phase(
            volume,
            PHASE_FAILED,
            Some("No recycler plugin found for the volume!"),
            Some((WARNING, "VolumeFailedRecycle")),
        );
    }

    fn delete_volume_operation(&mut self, volume: &PersistentVolume) {
        if !self.is_volume_released(volume) {
            return;
        }
        match find_deletable_plugin(volume) {
            Ok(Deleter::External) => {
                // [Unit test 8-x] The provisioner that made it deletes it; wait.
            }
            Err(msg) => {
                // [Unit test 8-2] No deleter: Failed with the error as message and event
                // (only on the transition; later syncs retry silently).
                self.update_volume_phase(
                    volume,
                    PHASE_FAILED,
                    Some(&msg),
                    Some((WARNING, "VolumeFailedDelete")),
                );
            }
        }
    }

    // ================================================================ WFFC and provisioning

    /// `emitEventForUnboundDelayBindingClaim`.
    fn emit_event_for_unbound_delay_binding_claim(&mut self, claim: &PersistentVolumeClaim) {
        let key = meta_key(&claim.metadata);
        let pods: Vec<String> = self
            .cache
            .pods_for_claim(&key)
            .into_iter()
            .filter(|p| !is_pod_terminated(p))
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .unwrap_or("")
                    .is_empty()
            })
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        let (reason, message) = match pods.len() {
            0 => (
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".to_string(),
            ),
            1 => (
                "WaitForPodScheduled",
                format!("waiting for pod {} to be scheduled", pods[0]),
            ),
            _ => (
                "WaitForPodScheduled",
                format!("waiting for pods {} to be scheduled", pods.join(",")),
            ),
        };
        self.record(claim_ref(claim), NORMAL, reason, &message);
    }

    /// `provisionClaim`, through the provisioning seam.
    fn provision_claim(&mut self, claim: &PersistentVolumeClaim) {
        let class = self
            .cache
            .classes
            .get(api::claim_storage_class(claim))
            .cloned();
        match provision::plan(claim, class.as_ref()) {
            ProvisionPlan::Failed { message } => {
                self.record(claim_ref(claim), WARNING, "ProvisioningFailed", &message);
            }
            ProvisionPlan::External { provisioner } => {
                if api::annotation(&claim.metadata, api::ANN_STORAGE_PROVISIONER)
                    == Some(provisioner.as_str())
                {
                    let msg = provision::external_provisioning_message(&provisioner);
                    self.record(claim_ref(claim), NORMAL, "ExternalProvisioning", &msg);
                } else {
                    // setClaimProvisioner: both keys, then the event from the next sync.
                    let mut c = claim.clone();
                    set_annotation(
                        &mut c.metadata,
                        api::ANN_BETA_STORAGE_PROVISIONER,
                        &provisioner,
                    );
                    set_annotation(&mut c.metadata, api::ANN_STORAGE_PROVISIONER, &provisioner);
                    let key = meta_key(&claim.metadata);
                    self.write(
                        Request::UpdateClaim(c),
                        vec![],
                        vec![Work::Claim(key)],
                        None,
                        false,
                    );
                }
            }
        }
    }

    // ================================================================ status writes

    /// `updateClaimStatus`: writes phase (and, with a volume, accessModes/capacity) if any of
    /// it differs. Returns whether a write was sent.
    fn update_claim_status(
        &mut self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        volume: Option<&PersistentVolume>,
        locks: Option<Vec<super::Obj>>,
    ) -> bool {
        let mut c = claim.clone();
        let old_phase = claim_phase(claim).to_string();
        let st = c.status.get_or_insert_with(Default::default);
        let mut dirty = false;
        if old_phase != phase {
            st.phase = Some(phase.to_string());
            dirty = true;
        }
        match volume {
            None => {
                if st.access_modes.is_some() {
                    st.access_modes = None;
                    dirty = true;
                }
                if st.capacity.is_some() {
                    st.capacity = None;
                    dirty = true;
                }
            }
            Some(pv) => {
                let modes = pv.spec.as_ref().and_then(|s| s.access_modes.clone());
                if st.access_modes != modes {
                    st.access_modes = modes;
                    dirty = true;
                }
                // Capacity only when the claim is becoming Bound: a deliberate difference
                // (filesystem vs block size) is not clobbered later.
                if old_phase != phase {
                    let Some(vcap) = pv
                        .spec
                        .as_ref()
                        .and_then(|s| s.capacity.as_ref())
                        .and_then(|c| c.get("storage"))
                    else {
                        // "PersistentVolume %q is without a storage capacity": nothing written.
                        return false;
                    };
                    let ccap = st.capacity.as_ref().and_then(|c| c.get("storage"));
                    if ccap.is_none_or(|cc| {
                        api::quantity::quantity_value(cc) != api::quantity::quantity_value(vcap)
                    }) {
                        st.capacity = pv.spec.as_ref().and_then(|s| s.capacity.clone());
                        dirty = true;
                    }
                }
            }
        }
        if !dirty {
            return false;
        }
        let key = meta_key(&claim.metadata);
        let counts_bind = phase == PHASE_BOUND && old_phase != PHASE_BOUND;
        let mut then = vec![Work::Claim(key)];
        if let Some(pv) = volume {
            then.push(Work::Volume(volume_name(pv)));
        }
        self.write(
            Request::UpdateClaimStatus(c),
            locks.unwrap_or_default(),
            then,
            None,
            counts_bind,
        );
        true
    }

    /// `updateClaimStatusWithEvent`: only on a real phase change; the event follows the write.
    fn update_claim_status_with_event(
        &mut self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        type_: &'static str,
        reason: &'static str,
        message: &str,
    ) {
        if claim_phase(claim) == phase {
            return;
        }
        let mut c = claim.clone();
        let st = c.status.get_or_insert_with(Default::default);
        st.phase = Some(phase.to_string());
        st.access_modes = None;
        st.capacity = None;
        let key = meta_key(&claim.metadata);
        self.write(
            Request::UpdateClaimStatus(c),
            vec![],
            vec![Work::Claim(key)],
            Some(CommitEvent {
                type_,
                reason,
                message: message.to_string(),
            }),
            false,
        );
    }

    /// `updateVolumePhase` / `updateVolumePhaseWithEvent`: only when the phase differs;
    /// `message` becomes status.message (cleared otherwise).
    fn update_volume_phase(
        &mut self,
        volume: &PersistentVolume,
        phase: &str,
        message: Option<&str>,
        event: Option<(&'static str, &'static str)>,
    ) {
        if volume_phase(volume) == phase {
            return;
        }
        let mut pv = volume.clone();
        let st = pv.status.get_or_insert_with(Default::default);
        st.phase = Some(phase.to_string());
        st.message = message.filter(|m| !m.is_empty()).map(str::to_string);
        let name = volume_name(volume);
        let on_commit = event.map(|(type_, reason)| CommitEvent {
            type_,
            reason,
            message: message.unwrap_or("").to_string(),
        });
        self.write(
            Request::UpdateVolumeStatus(pv),
            vec![],
            vec![Work::Volume(name)],
            on_commit,
            false,
        );
    }
}

/// `spec.persistentVolumeReclaimPolicy`; the API server defaults it to Retain.
fn reclaim_policy(pv: &PersistentVolume) -> String {
    pv.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.clone())
        .unwrap_or_else(|| "Retain".to_string())
}
