//! Storage Object in Use Protection (volume-binding.md §8), after upstream
//! `pkg/controller/volume/pvcprotection` and `pvprotection`.
//!
//! - pvc-protection: a claim being deleted keeps `kubernetes.io/pvc-protection` while any pod
//!   *uses* it: the pod has `spec.nodeName` and a volume naming the claim — whatever the pod's
//!   phase (Succeeded/Failed pods that still exist block too). For generic ephemeral volumes
//!   upstream also requires the pod not to be shut down (deleted with grace period 0). The
//!   informer (cache) is asked first; before removing, a live pod list of the namespace is
//!   checked, so a pod the watch has not delivered yet still protects the claim.
//! - pv-protection: a volume being deleted keeps `kubernetes.io/pv-protection` while its phase
//!   is Bound.
//! - Both add their finalizer to live objects that lack it (admission normally does).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

use apiserver::api;

use super::cache::meta_key;
use super::{Obj, Request, VolumeControllerCore, Work};

fn has_finalizer(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    f: &str,
) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|fs| fs.iter().any(|x| x == f))
}

fn is_deletion_candidate(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    f: &str,
) -> bool {
    meta.deletion_timestamp.is_some() && has_finalizer(meta, f)
}

fn need_to_add_finalizer(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    f: &str,
) -> bool {
    meta.deletion_timestamp.is_none() && !has_finalizer(meta, f)
}

/// Does the protection controller have anything to do for this object: add its finalizer,
/// or decide about removing it (upstream `NeedToAddFinalizer || IsDeletionCandidate`, the
/// condition under which its add/update handlers enqueue)?
pub(crate) fn needs_sync(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    f: &str,
) -> bool {
    need_to_add_finalizer(meta, f) || is_deletion_candidate(meta, f)
}

/// `podIsShutDown`: deleted with a zero grace period (force-deleted, or done by the kubelet).
fn pod_is_shut_down(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod.metadata.deletion_grace_period_seconds == Some(0)
}

/// `podUsesPVC`.
pub fn pod_uses_pvc(pod: &Pod, claim: &PersistentVolumeClaim) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    if spec.node_name.as_deref().unwrap_or("").is_empty() {
        // Unscheduled pods never block: the kubelet refuses claims being deleted.
        return false;
    }
    if pod.metadata.namespace != claim.metadata.namespace {
        return false;
    }
    let claim_name = claim.metadata.name.as_deref().unwrap_or("");
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    spec.volumes.iter().flatten().any(|v| {
        if let Some(p) = &v.persistent_volume_claim {
            return p.claim_name == claim_name;
        }
        if v.ephemeral.is_some() && !pod_is_shut_down(pod) {
            // ephemeral.VolumeClaimName and VolumeIsForPod (the claim is controlled by the pod).
            let for_pod =
                claim.metadata.owner_references.iter().flatten().any(|o| {
                    o.controller == Some(true) && Some(&o.uid) == pod.metadata.uid.as_ref()
                });
            return format!("{pod_name}-{}", v.name) == claim_name && for_pod;
        }
        false
    })
}

impl VolumeControllerCore {
    pub(crate) fn sync_pvc_protection(&mut self, key: &str) {
        let Some(claim) = self.cache.claims.get(key).cloned() else {
            self.pod_lists.remove(key);
            return;
        };
        let obj = Obj::Claim(key.to_string());
        if self.is_busy(&obj) {
            self.wait_on(obj, Work::PvcProtection(key.to_string()));
            return;
        }
        let f = api::FINALIZER_PVC_PROTECTION;
        if is_deletion_candidate(&claim.metadata, f) {
            // OBSERVATION: the claim is Terminating. Is it used?
            let in_cache = self
                .cache
                .pods_for_claim(key)
                .into_iter()
                .any(|p| pod_uses_pvc(p, &claim));
            if in_cache {
                // Kept; a pod event re-checks.
                self.pod_lists.remove(key);
                return;
            }
            match self.pod_lists.remove(key) {
                None => {
                    // The cache may lag: ask the API server for the namespace's pods.
                    self.list_pods(key);
                }
                Some(pods) => {
                    if pods.iter().any(|p| pod_uses_pvc(p, &claim)) {
                        return;
                    }
                    let mut c = (*claim).clone();
                    if let Some(fs) = c.metadata.finalizers.as_mut() {
                        fs.retain(|x| x != f);
                    }
                    self.write(Request::UpdateClaim(c), vec![], vec![], None, false);
                }
            }
            return;
        }
        self.pod_lists.remove(key);
        if need_to_add_finalizer(&claim.metadata, f) {
            let mut c = (*claim).clone();
            c.metadata
                .finalizers
                .get_or_insert_with(Vec::new)
                .push(f.to_string());
            self.write(Request::UpdateClaim(c), vec![], vec![], None, false);
        }
    }

    pub(crate) fn sync_pv_protection(&mut self, name: &str) {
        let Some(pv) = self.cache.volumes.get(name).cloned() else {
            return;
        };
        if self.busy_volumes.contains(name) {
            self.wait_on(
                Obj::Volume(name.to_string()),
                Work::PvProtection(name.to_string()),
            );
            return;
        }
        let f = api::FINALIZER_PV_PROTECTION;
        if is_deletion_candidate(&pv.metadata, f) {
            let phase = pv
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("");
            if phase == "Bound" {
                // In use; the phase change (Released) re-checks.
                return;
            }
            let mut v = (*pv).clone();
            if let Some(fs) = v.metadata.finalizers.as_mut() {
                fs.retain(|x| x != f);
            }
            self.write(Request::UpdateVolume(v), vec![], vec![], None, false);
        } else if need_to_add_finalizer(&pv.metadata, f) {
            let mut v = (*pv).clone();
            v.metadata
                .finalizers
                .get_or_insert_with(Vec::new)
                .push(f.to_string());
            self.write(Request::UpdateVolume(v), vec![], vec![], None, false);
        }
    }
}

#[allow(dead_code)]
fn _key_of(c: &PersistentVolumeClaim) -> String {
    meta_key(&c.metadata)
}
