//! Watched and returned objects decoded without `metadata.managedFields`.
//!
//! kube-scheduler's pod informer drops managedFields after decoding ("to improve memory
//! usage"); here they are never built at all: `Lean<K>` reads `metadata` into the same
//! `ObjectMeta` minus that one field (skipped unparsed) and `spec`/`status` as `K`'s own types,
//! so every other field is exactly what a `K` decode gives. A write that omits managedFields
//! leaves the stored ownership as it is (the API server, like kube-apiserver, carries the live
//! object's managedFields over and records this writer's change), so nothing the server keeps
//! depends on whether the writer had them. The scheduler's and the volume controller's drivers
//! and the fake nodes use it (as a kube-rs resource with the `kube` feature); their cores still
//! see plain `K`s.

#[cfg(feature = "kube")]
use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `K`, decoded without `metadata.managedFields` and encoded as `K` is.
#[derive(Clone, Debug, Default)]
pub struct Lean<K>(pub K);

/// An object made of metadata, spec and status (all the kinds the drivers watch in bulk).
pub trait Parts: Sized {
    /// `spec`.
    type Spec: DeserializeOwned;
    /// `status`.
    type Status: DeserializeOwned;
    /// The object from its parts.
    fn from_parts(
        metadata: ObjectMeta,
        spec: Option<Self::Spec>,
        status: Option<Self::Status>,
    ) -> Self;
}

macro_rules! parts {
    ($k:ty, $spec:ty, $status:ty) => {
        impl Parts for $k {
            type Spec = $spec;
            type Status = $status;
            fn from_parts(
                metadata: ObjectMeta,
                spec: Option<$spec>,
                status: Option<$status>,
            ) -> Self {
                Self {
                    metadata,
                    spec,
                    status,
                }
            }
        }
    };
}

parts!(
    Pod,
    k8s_openapi::api::core::v1::PodSpec,
    k8s_openapi::api::core::v1::PodStatus
);
parts!(
    Node,
    k8s_openapi::api::core::v1::NodeSpec,
    k8s_openapi::api::core::v1::NodeStatus
);
parts!(
    PersistentVolume,
    k8s_openapi::api::core::v1::PersistentVolumeSpec,
    k8s_openapi::api::core::v1::PersistentVolumeStatus
);
parts!(
    PersistentVolumeClaim,
    k8s_openapi::api::core::v1::PersistentVolumeClaimSpec,
    k8s_openapi::api::core::v1::PersistentVolumeClaimStatus
);

/// `ObjectMeta` without `managedFields` (an unknown field to serde: skipped, not built).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl From<LeanMeta> for ObjectMeta {
    fn from(m: LeanMeta) -> ObjectMeta {
        ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        }
    }
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "S: DeserializeOwned, T: DeserializeOwned"))]
struct Raw<S, T> {
    #[serde(default)]
    metadata: Option<LeanMeta>,
    spec: Option<S>,
    status: Option<T>,
}

impl<'de, K: Parts> Deserialize<'de> for Lean<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Raw::<K::Spec, K::Status>::deserialize(d)?;
        Ok(Lean(K::from_parts(
            raw.metadata.unwrap_or_default().into(),
            raw.spec,
            raw.status,
        )))
    }
}

impl<K: Serialize> Serialize for Lean<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[cfg(feature = "kube")]
impl<K: kube::Resource<DynamicType = ()>> kube::Resource for Lean<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything but managedFields decodes as a plain `K` decode does.
    #[test]
    fn lean_decode_is_the_plain_decode_without_managed_fields() {
        let json = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "7",
                "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
                "deletionTimestamp": "2026-01-01T00:00:09Z", "deletionGracePeriodSeconds": 30,
                "labels": {"a": "b"}, "annotations": {"c": "d"}, "finalizers": ["f"],
                "generateName": "p-", "selfLink": "/x",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u2"}],
                "managedFields": [{"manager": "m", "operation": "Update", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:nodeName": {}}}}],
            },
            "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"},
        });
        let mut plain: Pod = serde_json::from_value(json.clone()).unwrap();
        assert!(plain.metadata.managed_fields.is_some());
        plain.metadata.managed_fields = None;
        let lean: Lean<Pod> = serde_json::from_value(json).unwrap();
        assert_eq!(lean.0, plain);
        // Encoded as the object itself.
        assert_eq!(
            serde_json::to_value(&lean).unwrap(),
            serde_json::to_value(&plain).unwrap()
        );
        let empty: Lean<PersistentVolume> = serde_json::from_str("{}").unwrap();
        assert_eq!(empty.0, PersistentVolume::default());
    }
}
