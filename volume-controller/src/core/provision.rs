//! The provisioning seam (volume-binding.md §6). Upstream `provisionClaim` runs when an
//! unbound claim with a class found no volume (and, for WaitForFirstConsumer, once the
//! scheduler wrote `volume.kubernetes.io/selected-node`). What happens next depends only on the
//! class, and is decided here so the later provisioning issue changes one function.
//!
//! Today bonsai has no in-tree provisioning plugin, so:
//! - class missing → `Warning ProvisioningFailed storageclass.storage.k8s.io "<name>" not found`;
//! - `kubernetes.io/…` provisioner (including `kubernetes.io/no-provisioner`) →
//!   `Warning ProvisioningFailed no volume plugin matched name: <provisioner>`;
//! - any other provisioner is external: the claim gets the storage-provisioner annotations and
//!   `Normal ExternalProvisioning` (what upstream's PV controller does for CSI drivers,
//!   local-path and friends), and the external provisioner creates the PV pre-bound to it.
//!
//! The seam for the provisioning issue: add a `ProvisionPlan::InProcess` variant chosen for
//! bonsai's own provisioner name, whose operation creates the PV (name `pvc-<claim uid>`,
//! claimRef with uid, nodeAffinity from selected-node) — the binder then completes the bind
//! through the pre-bound path it already has.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;

use apiserver::api;

/// What to do with a claim that must be provisioned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProvisionPlan {
    /// No plugin can provision it: record `Warning ProvisioningFailed <message>` and wait for
    /// the next sync (upstream retries on every syncUnboundClaim).
    Failed { message: String },
    /// An external provisioner owns it: make sure both storage-provisioner annotations name it,
    /// then record `Normal ExternalProvisioning`.
    External { provisioner: String },
}

/// Upstream `findProvisionablePlugin`, for a bonsai with no in-tree provisioning plugins.
pub fn plan(claim: &PersistentVolumeClaim, class: Option<&StorageClass>) -> ProvisionPlan {
    let class_name = api::claim_storage_class(claim);
    let Some(class) = class else {
        return ProvisionPlan::Failed {
            message: format!("storageclass.storage.k8s.io {class_name:?} not found"),
        };
    };
    if class.provisioner.starts_with("kubernetes.io/") {
        // In-tree names (kubernetes.io/no-provisioner among them): no plugin by that name.
        return ProvisionPlan::Failed {
            message: format!("no volume plugin matched name: {}", class.provisioner),
        };
    }
    ProvisionPlan::External {
        provisioner: class.provisioner.clone(),
    }
}

/// The `ExternalProvisioning` event message, verbatim from upstream.
pub fn external_provisioning_message(provisioner: &str) -> String {
    format!(
        "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
    )
}
