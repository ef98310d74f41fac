//! Per-kind object semantics: what kube-apiserver v1.33 does to an object between decoding the
//! request body and handing it to the store.
//!
//! Everything here is a pure function over `serde_json::Value`: the store keeps exactly the JSON
//! accepted here (pruned of unknown fields and defaulted *in place*), never a lossy typed
//! round-trip. No tokio, no clock (the write time arrives in [`WriteOptions::now`]), no I/O.
//!
//! # Layout
//! - this file — the entry points the HTTP layer calls: [`prepare_create`], [`prepare_update`],
//!   [`apply_patch`], [`kind_of`], plus the request options ([`WriteOptions`],
//!   [`FieldValidation`], [`PatchType`]).
//!
//! # Call sequence (HTTP layer)
//! - POST: `prepare_create(group, resource, &mut body, &opts)` → warnings; then the store
//!   assigns uid/creationTimestamp/resourceVersion and stores it (unless dryRun).
//! - PUT: `prepare_update(group, resource, sub, &stored, &mut body, &opts)`.
//! - PATCH: `let new = apply_patch(group, resource, Some(&stored), ty, body, &opts)?;` then
//!   `prepare_update(.., &stored, &mut new, ..)`. For `PatchType::Apply` on an absent object:
//!   `apply_patch(.., None, Apply, ..)` then `prepare_create(.., &mut new, ..)` (which sees
//!   the Apply operation through `opts` and records an Apply managedFields entry).

use serde_json::Value;

use crate::status::ApiError;

/// `?fieldValidation=`: what to do with fields unknown to the v1.33 schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// 400 BadRequest naming every unknown field (kubectl sends this by default).
    Strict,
    /// Dropped, one `Warning: 299 - "unknown field \"spec.x\""` per field. kube-apiserver's
    /// default when the parameter is absent (since 1.27).
    #[default]
    Warn,
    /// Dropped silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query parameter; absent → `Warn` (the server default), like kube-apiserver.
    pub fn from_query(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}"
            ))),
        }
    }
}

/// The PATCH body's Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902)
    Json,
    /// `application/merge-patch+json` (RFC 7386)
    Merge,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

impl PatchType {
    /// Maps a Content-Type (parameters such as `; charset=utf-8` ignored); `None` → the caller
    /// answers 415 UnsupportedMediaType.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Per-request options that change what the semantics do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    pub field_validation: FieldValidation,
    /// `?fieldManager=`; when absent the manager is derived from the user agent as
    /// kube-apiserver does (the part before the first `/`).
    pub field_manager: Option<String>,
    /// `?dryRun=All`: everything is checked, the caller stores nothing.
    pub dry_run: bool,
    /// `?force=true` (server-side apply `--force-conflicts`).
    pub force: bool,
    pub user_agent: String,
    /// The write time as RFC 3339 UTC seconds (`2026-11-25T08:56:52Z`), passed in because the
    /// semantics never read a clock. Used for managedFields `time`. Empty → omitted.
    pub now: String,
}

/// Kind of a served resource (`group` empty for core).
pub fn kind_of(group: &str, resource: &str) -> Option<&'static str> {
    Some(match (group, resource) {
        ("", "namespaces") => "Namespace",
        ("", "nodes") => "Node",
        ("", "pods") => "Pod",
        ("", "persistentvolumes") => "PersistentVolume",
        ("", "persistentvolumeclaims") => "PersistentVolumeClaim",
        ("", "events") => "Event",
        ("events.k8s.io", "events") => "Event",
        ("storage.k8s.io", "storageclasses") => "StorageClass",
        ("storage.k8s.io", "csistoragecapacities") => "CSIStorageCapacity",
        ("storage.k8s.io", "csidrivers") => "CSIDriver",
        ("coordination.k8s.io", "leases") => "Lease",
        ("", "bindings") => "Binding",
        _ => return None,
    })
}

/// Validates, defaults and prunes a new object; see the module docs. Returns the warnings.
pub fn prepare_create(
    group: &str,
    resource: &str,
    obj: &mut Value,
    opts: &WriteOptions,
) -> Result<Vec<String>, ApiError> {
    let _ = (group, resource, obj, opts);
    Ok(Vec::new())
}

/// Checks an update of `old` into `new` (PUT body or a patch result) and fixes `new` up.
pub fn prepare_update(
    group: &str,
    resource: &str,
    subresource: Option<&str>,
    old: &Value,
    new: &mut Value,
    opts: &WriteOptions,
) -> Result<Vec<String>, ApiError> {
    let _ = (group, resource, subresource, old, new, opts);
    Ok(Vec::new())
}

/// Applies a patch body to `current` and returns the new full object.
pub fn apply_patch(
    group: &str,
    resource: &str,
    current: Option<&Value>,
    patch_type: PatchType,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let _ = (group, resource, opts);
    let patch: Value = match patch_type {
        PatchType::Apply => serde_norway::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
    };
    match (current, patch_type) {
        (None, _) => Ok(patch),
        (Some(cur), PatchType::Merge | PatchType::StrategicMerge | PatchType::Apply) => {
            let mut out = cur.clone();
            merge_patch_stub(&mut out, &patch);
            Ok(out)
        }
        (Some(cur), PatchType::Json) => Ok(cur.clone()),
    }
}

fn merge_patch_stub(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = Value::Object(Default::default());
        }
        let t = target.as_object_mut().expect("object");
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch_stub(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}
