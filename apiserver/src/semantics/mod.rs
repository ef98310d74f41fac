//! Per-kind object semantics: what kube-apiserver v1.33 does to an object between decoding the
//! request body and handing it to the store.
//!
//! Everything here is a pure function over `serde_json::Value`: the store keeps exactly the JSON
//! accepted here (pruned of unknown fields and defaulted *in place*), never a lossy typed
//! round-trip. No tokio, no clock (the write time arrives in [`WriteOptions::now`]), no I/O.
//!
//! # Layout
//! - `decode` — schema walk of a body against the v1.33 `k8s-openapi` types: unknown fields,
//!   type errors, quantities (no lossy round-trip); by each kind's shape, learnt once from its
//!   type, with the typed decode behind it for what the shape walk cannot vouch for.
//! - `defaults` — scheme defaulting and the defaulting admission plugins.
//! - `validate`, `meta`, `field`, `quantity` — per-kind validation with upstream's messages.
//! - `patch` — JSON merge patch, JSON patch, strategic merge patch.
//! - `managed` — managedFields (fieldsV1) and server-side apply (ownership, conflicts).
//! - `namespace` — the namespace deletion decisions (Terminating, contents, finalizer).
//! - tests only: `perf` (the writes the cluster sends, and a measurement loop over
//!   [`prepare_create`]/[`prepare_update`]), `decode_reference` (the schema walk the faster
//!   one is checked against). The fast paths of `managed` are checked against its general
//!   path the same way (byte-identical output on random objects and writes).
//! - `json` — a request body parsed as `serde_json::from_slice` would, cheaper.
//! - `events` — core/v1 ⇄ events.k8s.io/v1 Event conversion (one object, two views).
//! - this file — the entry points the HTTP layer calls: [`prepare_create`],
//!   [`prepare_update`], [`apply_patch`] / [`apply_patch_sub`], [`kind_of`] /
//!   [`resource_info`], [`bind_pod`], [`admit_default_storage_class`], plus the request
//!   options ([`WriteOptions`], [`FieldValidation`], [`PatchType`]).
//!
//! # Call sequence (HTTP layer)
//! - POST: `prepare_create(group, resource, &mut body, &opts)` → warnings; then the store
//!   assigns uid/creationTimestamp/resourceVersion and stores it (unless dryRun).
//! - PUT: `prepare_update(group, resource, sub, &stored, &mut body, &opts)`.
//! - PATCH: `let new = apply_patch(group, resource, Some(&stored), ty, body, &opts)?;` then
//!   `prepare_update(.., &stored, &mut new, ..)`. For `PatchType::Apply` on an absent object:
//!   `apply_patch(.., None, Apply, ..)` then `prepare_create(.., &mut new, ..)`. The apply
//!   result already carries its Apply managedFields entry (stamped with `opts.now`), which
//!   `prepare_create`/`prepare_update` recognise, so they record no Update entry on top.
//! - PATCH of `/status` with server-side apply: use [`apply_patch_sub`] with
//!   `Some("status")` so the manager is recorded for the subresource.

// `ApiError` is the boundary type by design (it becomes a `Status`); boxing it everywhere
// would buy nothing on these cold paths.
#![allow(clippy::result_large_err)]

pub mod decode;
#[cfg(test)]
mod decode_reference;
pub mod defaults;
pub mod events;
pub mod field;
pub mod json;
pub mod managed;
pub mod meta;
pub mod namespace;
pub mod patch;
#[cfg(test)]
mod perf;
pub mod quantity;
pub mod validate;

use serde_json::{json, Map, Value};

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
    /// The DefaultTolerationSeconds admission plugin's settings (kube-apiserver's
    /// `--default-not-ready-toleration-seconds` / `--default-unreachable-toleration-seconds`).
    pub default_tolerations: DefaultTolerationSeconds,
}

/// `tolerationSeconds` of the `node.kubernetes.io/not-ready` and `node.kubernetes.io/unreachable`
/// NoExecute tolerations that admission adds to every pod lacking one. kube-apiserver's default
/// is 300 s each; `bonsai up` shortens them so a lab shows a dead node's pods evicted in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefaultTolerationSeconds {
    pub not_ready: i64,
    pub unreachable: i64,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> Self {
        DefaultTolerationSeconds {
            not_ready: 300,
            unreachable: 300,
        }
    }
}

/// What the semantics need to know about a served resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `status` subresource: status is reset on create and ignored on the main resource.
    pub status_subresource: bool,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// The resources whose semantics this module implements (`group` empty for core).
pub fn resource_info(group: &str, resource: &str) -> Option<ResourceInfo> {
    let r = |group, version, kind, namespaced, status_subresource| ResourceInfo {
        group,
        version,
        kind,
        namespaced,
        status_subresource,
    };
    Some(match (group, resource) {
        ("", "namespaces") => r("", "v1", "Namespace", false, true),
        ("", "nodes") => r("", "v1", "Node", false, true),
        ("", "pods") => r("", "v1", "Pod", true, true),
        ("", "persistentvolumes") => r("", "v1", "PersistentVolume", false, true),
        ("", "persistentvolumeclaims") => r("", "v1", "PersistentVolumeClaim", true, true),
        ("", "events") => r("", "v1", "Event", true, false),
        ("", "bindings") => r("", "v1", "Binding", true, false),
        ("events.k8s.io", "events") => r("events.k8s.io", "v1", "Event", true, false),
        ("storage.k8s.io", "storageclasses") => {
            r("storage.k8s.io", "v1", "StorageClass", false, false)
        }
        ("storage.k8s.io", "csistoragecapacities") => {
            r("storage.k8s.io", "v1", "CSIStorageCapacity", true, false)
        }
        ("storage.k8s.io", "csidrivers") => r("storage.k8s.io", "v1", "CSIDriver", false, false),
        ("coordination.k8s.io", "leases") => r("coordination.k8s.io", "v1", "Lease", true, false),
        _ => return None,
    })
}

/// Kind of a served resource (`group` empty for core).
pub fn kind_of(group: &str, resource: &str) -> Option<&'static str> {
    resource_info(group, resource).map(|i| i.kind)
}

/// `Value::pointer` (RFC 6901, as serde_json reads it) without allocating two strings for
/// every token: the semantics look up fixed paths like `/metadata/name` on every write.
pub(crate) trait Ptr {
    fn ptr(&self, pointer: &str) -> Option<&Value>;
}

impl Ptr for Value {
    fn ptr(&self, pointer: &str) -> Option<&Value> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        let mut cur = self;
        for raw in rest.split('/') {
            let owned;
            let token = if raw.contains('~') {
                owned = raw.replace("~1", "/").replace("~0", "~");
                owned.as_str()
            } else {
                raw
            };
            cur = match cur {
                Value::Object(m) => m.field(token)?,
                Value::Array(a) => {
                    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
                        return None;
                    }
                    a.get(token.parse::<usize>().ok()?)?
                }
                _ => return None,
            };
        }
        Some(cur)
    }
}

/// A field of an object by name. A short object (most are) is scanned in order: comparing
/// the few keys there is cheaper than SipHashing the name for the map's index, and the
/// validators and defaulters look up dozens of mostly absent fields per write. Same answer
/// as `get` (keys are unique).
pub(crate) trait Field {
    fn field(&self, k: &str) -> Option<&Value>;
}

/// [`Field`] for a change in place.
pub(crate) trait FieldMut {
    fn field_mut(&mut self, k: &str) -> Option<&mut Value>;
}

/// Up to this many entries an object is scanned rather than hashed into.
const SCAN_MAX: usize = 12;

// Inlined at every call: the validators' and defaulters' lookups are this loop, and outlined
// it cost ~10% more instructions in validation.
impl Field for Map<String, Value> {
    #[inline(always)]
    fn field(&self, k: &str) -> Option<&Value> {
        if self.len() <= SCAN_MAX {
            self.iter()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| v)
        } else {
            self.get(k)
        }
    }
}

impl Field for Value {
    #[inline]
    fn field(&self, k: &str) -> Option<&Value> {
        match self {
            Value::Object(m) => m.field(k),
            _ => None,
        }
    }
}

impl FieldMut for Map<String, Value> {
    #[inline(always)]
    fn field_mut(&mut self, k: &str) -> Option<&mut Value> {
        if self.len() <= SCAN_MAX {
            self.iter_mut()
                .find(|(key, _)| key.as_str() == k)
                .map(|(_, v)| v)
        } else {
            self.get_mut(k)
        }
    }
}

impl FieldMut for Value {
    #[inline]
    fn field_mut(&mut self, k: &str) -> Option<&mut Value> {
        match self {
            Value::Object(m) => m.field_mut(k),
            _ => None,
        }
    }
}

fn info_or_404(group: &str, resource: &str) -> Result<ResourceInfo, ApiError> {
    resource_info(group, resource).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    })
}

/// The field manager of a write: `?fieldManager=`, else the user agent up to its first `/`
/// (kube-apiserver's `managerOrUserAgent`), at most 128 characters.
pub fn manager_name(opts: &WriteOptions) -> String {
    match &opts.field_manager {
        Some(m) if !m.is_empty() => m.clone(),
        _ => {
            let product = opts.user_agent.split('/').next().unwrap_or("");
            // At most 128 bytes is at most 128 characters: no need to count them.
            if product.len() <= 128 {
                product.to_string()
            } else {
                product.chars().take(128).collect()
            }
        }
    }
}

fn obj_name(obj: &Value) -> String {
    obj.field("metadata")
        .and_then(|m| m.field("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Fills a missing apiVersion/kind from the endpoint (as the decoder's defaults do) and
/// rejects a body of another version or kind.
fn check_type_meta(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "{k} in version \"{v}\" cannot be handled as a {k}: json: cannot unmarshal {t} into Go value of type struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }}",
            k = info.kind,
            v = info.version,
            t = if obj.is_array() { "array" } else { "non-object" }
        )));
    };
    let want = info.api_version();
    match m.field("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("apiVersion".into(), Value::String(want.clone()));
        }
        Some(v) if v != want => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want})"
            )))
        }
        _ => {}
    }
    match m.field("kind").and_then(Value::as_str) {
        None | Some("") => {
            m.insert("kind".into(), Value::String(info.kind.to_string()));
        }
        Some(k) if k != info.kind => {
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: the object provided is unrecognized (must be of type {kind}): kind {k}",
                kind = info.kind,
                v = info.version
            )))
        }
        _ => {}
    }
    Ok(())
}

/// Decodes against the v1.33 type, then prunes the JSON in place per `fieldValidation`.
/// Returns the unknown-field warnings.
fn schema_prune(
    info: &ResourceInfo,
    obj: &mut Value,
    fv: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    let r = decode_findings(info, obj);
    let cannot = |msg: String| {
        ApiError::bad_request(format!(
            "{k} in version \"{v}\" cannot be handled as a {k}: {msg}",
            k = info.kind,
            v = info.version
        ))
    };
    let f = r.map_err(|e| cannot(e.to_string()))?;
    let unknown: Vec<String> = f.unknown.iter().map(|p| decode::render(p)).collect();
    if fv == FieldValidation::Strict && !unknown.is_empty() {
        let list: Vec<String> = unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect();
        return Err(cannot(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    for (p, canon) in &f.quantities {
        decode::set_at(obj, p, Value::String(canon.clone()));
    }
    for p in f.unknown.iter().chain(f.nulls.iter()) {
        decode::remove_at(obj, p);
    }
    Ok(match fv {
        FieldValidation::Warn => unknown
            .iter()
            .map(|u| format!("unknown field \"{u}\""))
            .collect(),
        _ => Vec::new(),
    })
}

/// `ValidatePatchOptions` failures: 422 on kind `PatchOptions.meta.k8s.io`.
fn patch_options_invalid(field: &str, message: &str) -> ApiError {
    let reason = if message.starts_with("Required") {
        "FieldValueRequired"
    } else {
        "FieldValueForbidden"
    };
    let mut e = ApiError::invalid(
        "meta.k8s.io",
        "PatchOptions",
        "",
        vec![crate::status::Cause {
            reason: reason.into(),
            message: message.into(),
            field: field.into(),
        }],
    );
    e.message = format!("PatchOptions.meta.k8s.io \"\" is invalid: {field}: {message}");
    e
}

/// The schema walk of the kind's v1.33 type (no pruning): what [`decode::decode`] finds,
/// through the type's [`decode::Shape`] (learnt once per kind) when that can vouch for it.
fn decode_findings(info: &ResourceInfo, obj: &Value) -> Result<decode::Findings, decode::Error> {
    use k8s_openapi::api as k;
    macro_rules! walk {
        ($t:ty) => {{
            static SHAPE: std::sync::LazyLock<decode::Shape> =
                std::sync::LazyLock::new(decode::Shape::of::<$t>);
            decode::findings::<$t>(&SHAPE, obj)
        }};
    }
    match (info.group, info.kind) {
        ("", "Namespace") => walk!(k::core::v1::Namespace),
        ("", "Node") => walk!(k::core::v1::Node),
        ("", "Pod") => walk!(k::core::v1::Pod),
        ("", "PersistentVolume") => walk!(k::core::v1::PersistentVolume),
        ("", "PersistentVolumeClaim") => walk!(k::core::v1::PersistentVolumeClaim),
        ("", "Event") => walk!(k::core::v1::Event),
        ("", "Binding") => walk!(k::core::v1::Binding),
        ("events.k8s.io", _) => walk!(k::events::v1::Event),
        (_, "StorageClass") => walk!(k::storage::v1::StorageClass),
        (_, "CSIStorageCapacity") => walk!(k::storage::v1::CSIStorageCapacity),
        (_, "CSIDriver") => walk!(k::storage::v1::CSIDriver),
        (_, "Lease") => walk!(k::coordination::v1::Lease),
        _ => Ok(decode::Findings::default()),
    }
}

/// A JSON location as structured-merge-diff prints it: `.spec.containers[name="a"].foo`.
fn smd_path(root: &Value, path: &[decode::Seg]) -> String {
    let mut out = String::new();
    let mut cur = Some(root);
    let mut fpath = String::new();
    for seg in path {
        match seg {
            decode::Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
                fpath = if fpath.is_empty() {
                    k.clone()
                } else {
                    format!("{fpath}.{k}")
                };
                cur = cur.and_then(|v| v.get(k));
            }
            decode::Seg::Idx(i) => {
                let item = cur.and_then(|v| v.get(*i));
                match (managed::list_type(&fpath), item) {
                    (managed::ListType::Map(keys), Some(it)) => {
                        let parts: Vec<String> = keys
                            .iter()
                            .filter_map(|k| it.get(*k).map(|v| format!("{k}={v}")))
                            .collect();
                        out.push_str(&format!("[{}]", parts.join(",")));
                    }
                    (managed::ListType::Set, Some(it)) => out.push_str(&format!("[={it}]")),
                    _ => out.push_str(&format!("[{i}]")),
                }
                cur = item;
            }
        }
    }
    out
}

/// The empty object kube-apiserver's field manager compares a creation against: the Go zero
/// value as unstructured JSON (non-pointer structs are `{}`, non-omitempty slices `null`), so
/// those nodes count as present and never get a `.` in fieldsV1.
fn skeleton(info: &ResourceInfo) -> Value {
    skeleton_ref(info).clone()
}

/// Every kind's skeleton: what a create is compared with, built once.
pub(crate) fn skeletons() -> &'static [Value; 7] {
    static SKELETONS: std::sync::LazyLock<[Value; 7]> = std::sync::LazyLock::new(|| {
        [
            // PodSpec.containers has no omitempty: Go writes `"containers": null`.
            json!({"metadata": {}, "spec": {"containers": null}, "status": {}}),
            json!({"metadata": {}, "spec": {}, "status": {}}),
            json!({"metadata": {}, "spec": {"resources": {}}, "status": {}}),
            json!({"metadata": {}, "spec": {}}),
            json!({"metadata": {}, "involvedObject": {}, "source": {}}),
            json!({"metadata": {}, "regarding": {}, "deprecatedSource": {}}),
            json!({"metadata": {}}),
        ]
    });
    &SKELETONS
}

/// [`skeleton`], built once (every create compares against it).
fn skeleton_ref(info: &ResourceInfo) -> &'static Value {
    let i = match info.kind {
        "Pod" => 0,
        "PersistentVolume" | "Node" | "Namespace" => 1,
        "PersistentVolumeClaim" => 2,
        "Lease" | "CSIDriver" => 3,
        "Event" if info.group.is_empty() => 4,
        "Event" => 5,
        _ => 6,
    };
    &skeletons()[i]
}

/// Fields a write on (`info`, `subresource`) does not own (the strategies' reset fields).
fn ignore_for(info: &ResourceInfo, subresource: Option<&str>) -> managed::Ignore {
    match subresource {
        None if info.status_subresource => managed::Ignore::new(&[&["status"]]),
        Some("status") if info.kind == "Pod" => managed::Ignore::new(&[
            &["spec"],
            &["metadata", "deletionTimestamp"],
            &["metadata", "ownerReferences"],
        ]),
        Some("status") => managed::Ignore::new(&[&["spec"]]),
        _ => managed::Ignore::new(&[]),
    }
}

/// True when `new` is the result of [`apply_patch`] with `PatchType::Apply` for this
/// request: its Apply entry for the manager is new or changed. Such writes already carry
/// their managedFields; recording an Update on top would double the ownership.
fn is_apply_result(old: Option<&Value>, new: &Value, manager: &str, sub: &str) -> bool {
    // The entries are looked up by their strings and decoded only when their JSON differs
    // (every write asks this; most objects have no Apply entry at all).
    fn find<'v>(o: &'v Value, manager: &str, sub: &str) -> Option<&'v Value> {
        let list = o.ptr("/metadata/managedFields")?.as_array()?;
        list.iter().find(|e| {
            let s = |k: &str| e.field(k).and_then(Value::as_str).unwrap_or("");
            s("manager") == manager && s("operation") == "Apply" && s("subresource") == sub
        })
    }
    match find(new, manager, sub) {
        None => false,
        Some(n) => match old.and_then(|o| find(o, manager, sub)) {
            None => true,
            Some(o) => !managed::json_eq(o, n) && managed::read_entry(o) != managed::read_entry(n),
        },
    }
}

fn invalid(info: &ResourceInfo, obj: &Value, errs: field::Errs) -> ApiError {
    // `ErrorList.ToAggregate` drops duplicate messages.
    let mut causes: Vec<crate::status::Cause> = Vec::new();
    for c in errs.0.iter().map(field::FieldError::to_cause) {
        if !causes.contains(&c) {
            causes.push(c);
        }
    }
    let mut e = ApiError::invalid(info.group, info.kind, &obj_name(obj), causes);
    // kube-apiserver names the qualified kind (`StorageClass.storage.k8s.io "x" is invalid`).
    if !info.group.is_empty() {
        e.message = format!(
            "{}.{}{}",
            info.kind,
            info.group,
            &e.message[info.kind.len()..]
        );
    }
    e
}

fn create_warnings(info: &ResourceInfo, obj: &Value, warnings: &mut Vec<String>) {
    if info.kind == "PersistentVolume"
        && obj
            .field("spec")
            .and_then(|s| s.field("persistentVolumeReclaimPolicy"))
            .and_then(Value::as_str)
            == Some("Recycle")
    {
        warnings.push("spec.persistentVolumeReclaimPolicy: The Recycle reclaim policy is deprecated. Instead, the recommended approach is to use dynamic provisioning.".into());
    }
    if info.kind == "Pod" {
        let name = obj_name(obj);
        let msgs = field::dns1123_label(&name);
        if !name.is_empty() && !msgs.is_empty() {
            warnings.push(format!(
                "metadata.name: this is used in the Pod's hostname, which can result in surprising behavior; a DNS label is recommended: [{}]",
                msgs.join(" ")
            ));
        }
    }
    if let Some(list) = obj
        .field("metadata")
        .and_then(|m| m.field("finalizers"))
        .and_then(Value::as_array)
    {
        for f in list.iter().filter_map(Value::as_str) {
            if !f.contains('/')
                && !["kubernetes", "orphan", "foregroundDeletion"].contains(&f)
                && field::qualified_name(f).is_empty()
            {
                warnings.push(format!(
                    "metadata.finalizers: {}: prefer a domain-qualified finalizer name including a path (/) to avoid accidental conflicts with other finalizer writers",
                    field::go_quote(f)
                ));
            }
        }
    }
}

fn set_path(obj: &mut Value, keys: &[&str], v: Value) {
    let mut cur = obj;
    for k in &keys[..keys.len() - 1] {
        if !cur.get(*k).is_some_and(Value::is_object) {
            cur[*k] = json!({});
        }
        cur = cur.get_mut(*k).expect("object");
    }
    cur[keys[keys.len() - 1]] = v;
}

/// Removes `names` from `map`, keeping the other keys in their order. Looked for first: a body
/// rarely carries any of them, and each removal hashes its name.
pub(crate) fn remove_fields(map: &mut Map<String, Value>, names: &[&str]) {
    if map.keys().any(|k| names.contains(&k.as_str())) {
        for name in names {
            map.shift_remove(*name);
        }
    }
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.field("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj.field_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("object")
}

/// Validates, defaults and prunes a new object; see the module docs. Returns the warnings.
///
/// The caller assigns `metadata.name` from `generateName`, `uid`, `creationTimestamp` and
/// `resourceVersion` (the store's business) and sets `metadata.namespace` from the URL.
/// Order as kube-apiserver: decode (prune, default) → managedFields → admission →
/// `PrepareForCreate` → validation.
pub fn prepare_create(
    group: &str,
    resource: &str,
    obj: &mut Value,
    opts: &WriteOptions,
) -> Result<Vec<String>, ApiError> {
    let info = info_or_404(group, resource)?;
    check_type_meta(&info, obj)?;
    let mut warnings = schema_prune(&info, obj, opts.field_validation)?;
    let manager = manager_name(opts);
    let applied = is_apply_result(None, obj, &manager, "");
    defaults::apply(info.kind, obj);
    remove_fields(
        meta_mut(obj),
        &[
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ],
    );
    if info.kind != "Binding" && !applied {
        let base = skeleton_ref(&info);
        let api_version = info.api_version();
        // A create body's own managedFields, if any, are the base (kube-apiserver honours
        // them as on update; `[{}]` resets them).
        managed::record_update(
            None,
            base,
            obj,
            &manager,
            &api_version,
            "",
            &ignore_for(&info, None),
            &opts.now,
        );
    }
    // Admission (mutating).
    defaults::admit_protection_finalizer(info.kind, obj);
    if info.kind == "Pod" {
        defaults::admit_pod(obj, opts.default_tolerations);
    }
    // PrepareForCreate.
    match info.kind {
        "PersistentVolume" => {
            let mut status = json!({"phase": "Pending"});
            if !opts.now.is_empty() {
                status["lastPhaseTransitionTime"] = json!(opts.now);
            }
            obj["status"] = status;
        }
        "PersistentVolumeClaim" => obj["status"] = json!({"phase": "Pending"}),
        "Pod" => {
            let qos = defaults::pod_qos(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
            meta_mut(obj).insert("generation".into(), json!(1));
        }
        "Namespace" => {
            obj["status"] = json!({"phase": "Active"});
            let fins = obj
                .ptr("/spec/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !fins.iter().any(|f| f == "kubernetes") {
                let mut fins = fins;
                fins.push(json!("kubernetes"));
                set_path(obj, &["spec", "finalizers"], Value::Array(fins));
            }
        }
        _ => {}
    }
    let errs = validate::validate_create(info.kind, &info.api_version(), obj);
    if !errs.is_empty() {
        return Err(invalid(&info, obj, errs));
    }
    create_warnings(&info, obj, &mut warnings);
    Ok(warnings)
}

/// Checks an update of `old` into `new` (PUT body or a patch result) and fixes `new` up.
///
/// `subresource`: `None` (main resource: status kept from `old` for kinds with a status
/// subresource), `Some("status")` (spec and most metadata kept from `old`), or
/// `Some("finalize")` for namespaces (only `spec.finalizers` taken from `new`).
/// The caller checks the resourceVersion precondition and the name/namespace against the URL.
pub fn prepare_update(
    group: &str,
    resource: &str,
    subresource: Option<&str>,
    old: &Value,
    new: &mut Value,
    opts: &WriteOptions,
) -> Result<Vec<String>, ApiError> {
    let info = info_or_404(group, resource)?;
    check_type_meta(&info, new)?;
    let warnings = schema_prune(&info, new, opts.field_validation)?;
    let manager = manager_name(opts);
    let sub = subresource.unwrap_or("");
    let applied = is_apply_result(Some(old), new, &manager, sub);
    defaults::apply(info.kind, new);
    // rest.BeforeUpdate: system metadata comes from the stored object.
    let no_meta = json!({});
    let old_meta = old.field("metadata").unwrap_or(&no_meta);
    {
        let m = meta_mut(new);
        if m.field("uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            if let Some(u) = old_meta.field("uid") {
                m.insert("uid".into(), u.clone());
            }
        }
        for k in ["creationTimestamp", "deletionTimestamp"] {
            match old_meta.field(k) {
                Some(v) => {
                    m.insert(k.into(), v.clone());
                }
                None => {
                    if k == "deletionTimestamp" {
                        m.shift_remove(k);
                    }
                }
            }
        }
        if m.field("deletionGracePeriodSeconds").is_none() {
            if let Some(v) = old_meta.field("deletionGracePeriodSeconds") {
                m.insert("deletionGracePeriodSeconds".into(), v.clone());
            }
        }
        match old_meta.field("generation") {
            Some(g) => {
                m.insert("generation".into(), g.clone());
            }
            None => {
                m.shift_remove("generation");
            }
        }
    }
    if !applied {
        let api_version = info.api_version();
        let ignore = ignore_for(&info, subresource);
        managed::record_update(
            Some(old),
            old,
            new,
            &manager,
            &api_version,
            sub,
            &ignore,
            &opts.now,
        );
    }
    // PrepareForUpdate.
    let copy = |new: &mut Value, k: &str| match old.get(k) {
        Some(v) => new[k] = v.clone(),
        None => {
            if let Some(m) = new.as_object_mut() {
                m.shift_remove(k);
            }
        }
    };
    match subresource {
        None => {
            if info.status_subresource {
                copy(new, "status");
            }
            if info.kind == "Namespace" {
                let f = old.ptr("/spec/finalizers").cloned();
                match f {
                    Some(f) => set_path(new, &["spec", "finalizers"], f),
                    None => {
                        if let Some(s) = new.get_mut("spec").and_then(Value::as_object_mut) {
                            s.shift_remove("finalizers");
                        }
                    }
                }
            }
            if info.kind == "Pod" && old.field("spec") != new.field("spec") {
                let g = old
                    .ptr("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                meta_mut(new).insert("generation".into(), json!(g + 1));
            }
        }
        Some("status") => {
            copy(new, "spec");
            match info.kind {
                "Pod" => {
                    match old.ptr("/metadata/ownerReferences") {
                        Some(o) => {
                            meta_mut(new).insert("ownerReferences".into(), o.clone());
                        }
                        None => {
                            meta_mut(new).shift_remove("ownerReferences");
                        }
                    }
                    if new
                        .ptr("/status/qosClass")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                    {
                        if let Some(q) = old.ptr("/status/qosClass") {
                            set_path(new, &["status", "qosClass"], q.clone());
                        }
                    }
                }
                "PersistentVolume" => {
                    let op = old.ptr("/status/phase");
                    let np = new.ptr("/status/phase");
                    let ot = old.ptr("/status/lastPhaseTransitionTime").cloned();
                    let nt = new.ptr("/status/lastPhaseTransitionTime").cloned();
                    if op == np && nt.is_none() {
                        if let Some(t) = ot {
                            set_path(new, &["status", "lastPhaseTransitionTime"], t);
                        }
                    } else if op != np && (nt.is_none() || nt == ot) && !opts.now.is_empty() {
                        set_path(new, &["status", "lastPhaseTransitionTime"], json!(opts.now));
                    }
                }
                _ => {}
            }
        }
        Some("finalize") if info.kind == "Namespace" => {
            let fins = new.ptr("/spec/finalizers").cloned();
            *new = Value::Object(
                old.as_object()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(k, _)| k != "metadata")
                    .collect(),
            );
            new["metadata"] = old_meta.clone();
            match fins {
                Some(f) => set_path(new, &["spec", "finalizers"], f),
                None => {
                    if let Some(s) = new.get_mut("spec").and_then(Value::as_object_mut) {
                        s.shift_remove("finalizers");
                    }
                }
            }
            let errs = namespace_finalizers_errors(new);
            if !errs.is_empty() {
                return Err(invalid(&info, new, errs));
            }
            return Ok(warnings);
        }
        Some(other) => {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({other})"),
            ))
        }
    }
    let errs = validate::validate_update(info.kind, &info.api_version(), subresource, old, new);
    if !errs.is_empty() {
        return Err(invalid(&info, new, errs));
    }
    Ok(warnings)
}

fn namespace_finalizers_errors(ns: &Value) -> field::Errs {
    let mut e = field::Errs::default();
    if let Some(list) = ns.ptr("/spec/finalizers").and_then(Value::as_array) {
        for (i, f) in list.iter().enumerate() {
            meta::finalizer_errors(
                f.as_str().unwrap_or(""),
                &field::index("spec.finalizers", i),
                &mut e,
            );
        }
    }
    e
}

/// Applies a patch body to `current` and returns the new full object, which the caller then
/// passes through [`prepare_update`] (or [`prepare_create`] for an apply that creates).
/// `subresource` of the write is taken as the main resource; use [`apply_patch_sub`] for
/// patches of `/status`.
pub fn apply_patch(
    group: &str,
    resource: &str,
    current: Option<&Value>,
    patch_type: PatchType,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    apply_patch_sub(group, resource, None, current, patch_type, body, opts)
}

/// [`apply_patch`] for a subresource (`Some("status")`): server-side apply records the
/// manager with that subresource and ignores the fields the subresource cannot change.
pub fn apply_patch_sub(
    group: &str,
    resource: &str,
    subresource: Option<&str>,
    current: Option<&Value>,
    patch_type: PatchType,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let info = info_or_404(group, resource)?;
    let parse_json = |b: &[u8]| -> Result<Value, ApiError> {
        serde_json::from_slice(b)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
    };
    if patch_type != PatchType::Apply {
        let Some(cur) = current else {
            return Err(ApiError::not_found(group, resource, ""));
        };
        let mut doc = cur.clone();
        // What kube-apiserver shows as the bad value: the patch map for a strategic merge
        // patch (`%+v`), the patched document for the JSON patch kinds.
        let mut smp: Option<Value> = None;
        match patch_type {
            PatchType::Json => {
                let ops = parse_json(body)?;
                patch::json_patch(&mut doc, &ops)?;
            }
            PatchType::Merge => {
                let p = parse_json(body)?;
                if !p.is_object() {
                    return Err(ApiError::bad_request(
                        "json: cannot unmarshal array into Go value of type map[string]interface {}",
                    ));
                }
                patch::merge_patch(&mut doc, &p);
            }
            PatchType::StrategicMerge => {
                let p = parse_json(body)?;
                patch::strategic_merge(&mut doc, &p)?;
                smp = Some(p);
            }
            PatchType::Apply => unreachable!("handled below"),
        }
        // Decoding the result is where the patcher reports type errors and (Strict) unknown
        // fields: 422 on field `patch`, not the 400 a create/update body gets. Warn and
        // Ignore are left to `prepare_update`, which prunes and warns.
        let shown = || match &smp {
            Some(p) => field::go_fmt(p),
            None => doc.to_string(),
        };
        let bad = |detail: String| {
            let v = Value::String(shown());
            let c = field::FieldError::invalid("patch", &v, &detail).to_cause();
            ApiError::invalid("", "", "", vec![c])
        };
        match decode_findings(&info, &doc) {
            Err(e) => return Err(bad(e.to_string())),
            Ok(f) if opts.field_validation == FieldValidation::Strict && !f.unknown.is_empty() => {
                let list: Vec<String> = f
                    .unknown
                    .iter()
                    .map(|p| format!("unknown field \"{}\"", decode::render(p)))
                    .collect();
                return Err(bad(format!("strict decoding error: {}", list.join(", "))));
            }
            Ok(_) => {}
        }
        return Ok(doc);
    }
    // Server-side apply.
    let manager = match &opts.field_manager {
        Some(m) if !m.is_empty() => m.clone(),
        _ => {
            return Err(patch_options_invalid(
                "fieldManager",
                "Required value: is required for apply patch",
            ))
        }
    };
    let mut config: Value = serde_norway::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the applied configuration must be an object",
        ));
    }
    let api_version = info.api_version();
    let gvk = format!("{}/{}, Kind={}", info.group, info.version, info.kind);
    // structuredMergeManager.Apply's checks, in its order.
    let given = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if given != api_version {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {given}, expected: {api_version}"
        )));
    }
    if config
        .ptr("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let ns = config
        .ptr("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = config
        .ptr("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unknown>");
    let typed_err = |detail: String| {
        ApiError::bad_request(format!(
            "failed to create typed patch object ({ns}/{name}; {gvk}): {detail}"
        ))
    };
    if config.get("kind").and_then(Value::as_str).unwrap_or("") != info.kind {
        return Err(typed_err(format!(
            "expected objects of the same type, but got {}",
            config.get("kind").and_then(Value::as_str).unwrap_or("")
        )));
    }
    // The typed converter knows only the v1.33 schema: unknown fields fail an apply whatever
    // `fieldValidation` says, each named by its structured-merge-diff path.
    let mut probe = config.clone();
    let findings = match decode_findings(&info, &probe) {
        Ok(f) => f,
        Err(e) => return Err(typed_err(e.to_string())),
    };
    if !findings.unknown.is_empty() {
        let errs: Vec<String> = findings
            .unknown
            .iter()
            .map(|p| format!("{}: field not declared in schema", smd_path(&config, p)))
            .collect();
        return Err(typed_err(if errs.len() == 1 {
            errs[0].clone()
        } else {
            format!("errors:\n  {}", errs.join("\n  "))
        }));
    }
    schema_prune(&info, &mut probe, FieldValidation::Ignore)?;
    config = probe;
    let ignore = ignore_for(&info, subresource);
    let skel = skeleton(&info);
    let base = match current {
        Some(c) => c.clone(),
        None => {
            let mut s = skeleton(&info);
            s["apiVersion"] = json!(api_version);
            s["kind"] = json!(info.kind);
            s
        }
    };
    let args = managed::ApplyArgs {
        manager: &manager,
        api_version: &api_version,
        subresource: subresource.unwrap_or(""),
        force: opts.force,
        now: &opts.now,
        ignore: &ignore,
        skeleton: &skel,
    };
    let mut out = managed::apply(current, &base, &config, &args)?;
    if current.is_none() {
        // Drop the skeleton's empty structs the configuration did not fill.
        if let Some(m) = out.as_object_mut() {
            m.retain(|k, v| {
                !(v.as_object().is_some_and(Map::is_empty)
                    && config.get(k).is_none()
                    && k != "metadata")
            });
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------ pods/binding

/// `POST pods/NAME/binding`: validates the Binding and returns the pod to store
/// (`spec.nodeName` set, the binding's annotations merged, condition PodScheduled=True),
/// or 409 Conflict when the pod is already assigned or being deleted (as kube-apiserver's
/// `setPodNodeAndMetadata`). `now` is the condition's transition time.
pub fn bind_pod(pod: &Value, binding: &mut Value, opts: &WriteOptions) -> Result<Value, ApiError> {
    let info = info_or_404("", "bindings")?;
    check_type_meta(&info, binding)?;
    schema_prune(&info, binding, opts.field_validation)?;
    let errs = validate::validate_create("Binding", "v1", binding);
    if !errs.is_empty() {
        return Err(invalid(&info, binding, errs));
    }
    let name = obj_name(pod);
    let ns = pod
        .ptr("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let node = binding
        .ptr("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if pod.ptr("/metadata/deletionTimestamp").is_some() {
        return Err(ApiError::new(409, "Conflict", format!(
            "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"
        )).with_details("", "pods/binding", &name));
    }
    let current = pod
        .ptr("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !current.is_empty() {
        return Err(ApiError::new(409, "Conflict", format!(
            "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{current}\""
        )).with_details("", "pods/binding", &name));
    }
    let _ = ns;
    let mut out = pod.clone();
    set_path(&mut out, &["spec", "nodeName"], json!(node));
    if let Some(anns) = binding
        .ptr("/metadata/annotations")
        .and_then(Value::as_object)
    {
        let m = meta_mut(&mut out);
        if !m.get("annotations").is_some_and(Value::is_object) {
            m.insert("annotations".into(), json!({}));
        }
        let a = m
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
            .expect("object");
        for (k, v) in anns {
            a.insert(k.clone(), v.clone());
        }
    }
    let mut cond = json!({"type": "PodScheduled", "status": "True"});
    cond["lastProbeTime"] = Value::Null;
    if !opts.now.is_empty() {
        cond["lastTransitionTime"] = json!(opts.now);
    }
    let conds = out
        .ptr("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut conds: Vec<Value> = conds
        .into_iter()
        .filter(|c| c.get("type") != Some(&json!("PodScheduled")))
        .collect();
    conds.push(cond);
    set_path(&mut out, &["status", "conditions"], Value::Array(conds));
    Ok(out)
}

// ------------------------------------------------------------------ DefaultStorageClass

/// The DefaultStorageClass admission plugin: on PVC *create*, a claim without
/// `spec.storageClassName` (and without the beta annotation) gets the default class — the
/// newest class annotated `storageclass.kubernetes.io/is-default-class: "true"` (or the beta
/// key), ties broken by name. The HTTP layer calls this right *after* [`prepare_create`]
/// (admission runs after the field manager, so the class it fills in is nobody's field)
/// with the stored StorageClasses; returns whether it changed the claim.
pub fn admit_default_storage_class(pvc: &mut Value, storage_classes: &[Value]) -> bool {
    if pvc
        .ptr("/spec/storageClassName")
        .is_some_and(|v| !v.is_null())
    {
        return false;
    }
    if pvc
        .ptr("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .is_some()
    {
        return false;
    }
    let is_default = |sc: &Value| {
        let a = sc.ptr("/metadata/annotations");
        let get = |k: &str| a.and_then(|a| a.get(k)).and_then(Value::as_str);
        get("storageclass.kubernetes.io/is-default-class") == Some("true")
            || get("storageclass.beta.kubernetes.io/is-default-class") == Some("true")
    };
    let best = storage_classes
        .iter()
        .filter(|sc| is_default(sc))
        .max_by(|a, b| {
            let t = |v: &Value| {
                v.ptr("/metadata/creationTimestamp")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            // newest wins; on equal times the name sorting first wins
            t(a).cmp(&t(b)).then_with(|| obj_name(b).cmp(&obj_name(a)))
        });
    match best {
        Some(sc) => {
            set_path(pvc, &["spec", "storageClassName"], json!(obj_name(sc)));
            true
        }
        None => false,
    }
}
