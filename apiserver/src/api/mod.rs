//! Shared Kubernetes vocabulary for bonsai's components: the names and pure helpers that more
//! than one component needs (annotation keys, volume/claim matching), so that no component crate
//! depends on another. Featureless: no tokio, no I/O, no clock.
//!
//! # Layout
//! - this file  — the well-known annotation, finalizer and provisioner strings of
//!   `volume-binding.md` §2, verbatim from upstream
//!   (`staging/src/k8s.io/component-helpers/storage/volume`).
//! - `fnv`      — FNV-1a, for stable digests and for hash maps of the server's own keys.
//! - `lean`     — `Lean<K>`: pods, nodes, PVs and PVCs decoded without managedFields (the
//!   controllers' watches and write answers; a kube-rs resource with the `kube` feature).
//! - `request`  — (feature `kube`) a write's HTTP request built as kube-rs' `Api` methods
//!   build it, so a driver can build it in its loop and spawn only the sending.
//! - `quantity` — `resource.Quantity` parsing and numeric comparison (1Gi > 1G).
//! - `selector` — label selectors (PVC `spec.selector`) and node selector terms (PV
//!   `nodeAffinity`), with upstream's error texts.
//! - `volume`   — the matching algorithm of §4.6 (`find_matching_volume`), node-affinity,
//!   access-mode, volume-mode and storage-class helpers, shared by the PV
//!   controller and the scheduler's VolumeBinding plugin.

pub mod fnv;
pub mod lean;
pub mod quantity;
#[cfg(feature = "kube")]
pub mod request;
pub mod selector;
pub mod volume;

pub use quantity::{parse_quantity, ParsedQuantity};
pub use selector::{label_selector_matches, node_selector_terms_match};
pub use volume::*;

/// PVC: the PV controller finished the bind (step 3 of §4.5). Its presence, not its value,
/// makes a claim "bound" for the PV controller and the scheduler.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// PV and PVC: the binding half was written by a controller, not pre-bound by a user.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// PVC: the node the scheduler chose for a claim that must be provisioned.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// PVC: the provisioner expected to create the claim's volume (GA key).
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// PVC: the same, beta key (upstream still writes both).
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// PV: which provisioner created it; a value not starting with `kubernetes.io/` means an
/// external deleter owns the Delete reclaim.
pub const ANN_DYNAMICALLY_PROVISIONED: &str = "pv.kubernetes.io/provisioned-by";
/// PV/PVC: CSI migration marker (bonsai never sets it; read for completeness).
pub const ANN_MIGRATED_TO: &str = "pv.kubernetes.io/migrated-to";
/// PV/PVC: legacy class annotation; it takes precedence over `spec.storageClassName`.
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// StorageClass: marks the default class (GA key).
pub const ANN_IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// StorageClass: marks the default class (beta key, still honoured).
pub const ANN_BETA_IS_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// PVC finalizer added at create; removed by the pvc-protection controller.
pub const FINALIZER_PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// PV finalizer added at create; removed by the pv-protection controller.
pub const FINALIZER_PV_PROTECTION: &str = "kubernetes.io/pv-protection";
/// PV finalizer of in-tree dynamically provisioned Delete volumes (out of scope; listed so it
/// is recognised).
pub const FINALIZER_PV_CONTROLLER: &str = "kubernetes.io/pv-controller";
/// PV finalizer of the CSI external-provisioner (out of scope; listed so it is recognised).
pub const FINALIZER_EXTERNAL_PROVISIONER: &str =
    "external-provisioner.volume.kubernetes.io/finalizer";

/// StorageClass `provisioner` meaning "static PVs only".
pub const NOT_SUPPORTED_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// Node label conventionally used in local PV node affinity.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

/// Access modes, as spelled in `spec.accessModes`.
pub const RWO: &str = "ReadWriteOnce";
pub const ROX: &str = "ReadOnlyMany";
pub const RWX: &str = "ReadWriteMany";
pub const RWOP: &str = "ReadWriteOncePod";

/// `volumeBindingMode` values.
pub const BINDING_IMMEDIATE: &str = "Immediate";
pub const BINDING_WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";

/// `volumeMode` values (nil means Filesystem).
pub const VOLUME_MODE_FILESYSTEM: &str = "Filesystem";
pub const VOLUME_MODE_BLOCK: &str = "Block";
