//! Per-kind validation (`pkg/apis/core/validation`, `pkg/apis/storage/validation`,
//! `pkg/apis/coordination/validation`) on the JSON, with upstream's field paths and messages.
//! Errors are appended in the order upstream's validators append them, since kubectl prints
//! the causes in that order.

use serde_json::{json, Value};

use super::field::{self, child, index, key, Errs, FieldError};
use super::meta::{self, NameRule};
use super::quantity::Quantity;
use super::{Field, Ptr};

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.field(k).and_then(Value::as_str).unwrap_or("")
}
fn arr<'a>(v: &'a Value, k: &str) -> &'a [Value] {
    v.field(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}
fn get<'a>(v: &'a Value, k: &str) -> Option<&'a Value> {
    v.field(k).filter(|x| !x.is_null())
}
fn qty(v: &Value) -> Option<Quantity> {
    super::quantity::parse_json(v)
}

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const NOT_POSITIVE: &str = "must be greater than zero";

/// Validates a new object of `kind`. `api_version` matters for events (legacy vs strict).
pub fn validate_create(kind: &str, api_version: &str, obj: &Value) -> Errs {
    let mut e = Errs::default();
    let m = obj.field("metadata");
    match kind {
        "PersistentVolume" => {
            meta::validate(m, false, NameRule::Subdomain, &mut e);
            pv_spec(obj.field("spec").unwrap_or(&Value::Null), &mut e);
        }
        "PersistentVolumeClaim" => {
            meta::validate(m, true, NameRule::Subdomain, &mut e);
            pvc_spec(obj.field("spec").unwrap_or(&Value::Null), &mut e);
        }
        "StorageClass" => {
            meta::validate(m, false, NameRule::Subdomain, &mut e);
            storage_class(obj, &mut e);
        }
        "Namespace" => {
            meta::validate(m, false, NameRule::Label, &mut e);
            for (i, f) in arr(obj.field("spec").unwrap_or(&Value::Null), "finalizers")
                .iter()
                .enumerate()
            {
                meta::finalizer_errors(
                    f.as_str().unwrap_or(""),
                    &index("spec.finalizers", i),
                    &mut e,
                );
            }
        }
        "Node" => {
            meta::validate(m, false, NameRule::Subdomain, &mut e);
            node(obj, &mut e);
        }
        "Pod" => {
            meta::validate(m, true, NameRule::Subdomain, &mut e);
            pod_spec(obj.field("spec").unwrap_or(&Value::Null), "spec", &mut e);
        }
        "Event" => event(api_version, obj, &mut e),
        "Lease" => {
            meta::validate(m, true, NameRule::Subdomain, &mut e);
            lease(obj, &mut e);
        }
        "CSIStorageCapacity" => {
            meta::validate(m, true, NameRule::Subdomain, &mut e);
            csi_storage_capacity(obj, &mut e);
        }
        "CSIDriver" => {
            meta::validate(m, false, NameRule::Subdomain, &mut e);
            csi_driver(obj, &mut e);
        }
        "Binding" => binding(obj, &mut e),
        _ => {}
    }
    e
}

/// Validates an update (main resource or `status`). `new` is already fixed up (status or
/// spec copied from `old` as the strategy does).
pub fn validate_update(
    kind: &str,
    api_version: &str,
    sub: Option<&str>,
    old: &Value,
    new: &Value,
) -> Errs {
    let mut e = Errs::default();
    meta::validate_update(new.field("metadata"), old.field("metadata"), &mut e);
    if sub == Some("status") {
        match kind {
            "PersistentVolumeClaim" => pvc_status(new, &mut e),
            "Pod" => pod_status(old, new, &mut e),
            _ => {}
        }
        return e;
    }
    // The create rules hold for the new object too (ValidateXUpdate calls ValidateX).
    let created = validate_create(kind, api_version, new);
    // metadata rules were already covered by validate_update for identity; keep the rest.
    e.0.extend(created.0);
    let null = Value::Null;
    let (os, ns) = (
        old.field("spec").unwrap_or(&null),
        new.field("spec").unwrap_or(&null),
    );
    match kind {
        "PersistentVolume" => pv_update(os, ns, &mut e),
        "PersistentVolumeClaim" => pvc_update(old, new, &mut e),
        "StorageClass" => sc_update(old, new, &mut e),
        "Pod" => pod_update(os, ns, &mut e),
        "Node" => {
            for k in ["podCIDR", "providerID"] {
                let o = s(os, k);
                if !o.is_empty() && s(ns, k) != o {
                    let msg = if k == "podCIDR" {
                        "node updates may not change podCIDR except from \"\" to valid"
                    } else {
                        "node updates may not change providerID except from \"\" to valid"
                    };
                    e.push(FieldError::forbidden(&format!("spec.{k}"), msg));
                }
            }
        }
        "Event" if api_version != "v1" => {
            // ValidateEventUpdate (events.k8s.io): what an event says cannot change; only
            // its series (count, last observed time) moves on. Paths are upstream's.
            for (field, path) in [
                ("regarding", "involvedObject"),
                ("reason", "reason"),
                ("note", "message"),
                ("deprecatedSource", "source"),
                ("deprecatedFirstTimestamp", "firstTimestamp"),
                ("deprecatedLastTimestamp", "lastTimestamp"),
                ("deprecatedCount", "count"),
                ("type", "type"),
                ("action", "action"),
                ("related", "related"),
                ("reportingController", "reportingController"),
                ("reportingInstance", "reportingInstance"),
            ] {
                if old.get(field) != new.get(field) {
                    let shown = match new.get(field) {
                        Some(Value::String(s)) => Value::String(s.clone()),
                        Some(v) => Value::String(v.to_string()),
                        None => Value::String(String::new()),
                    };
                    e.push(FieldError::invalid(path, &shown, "field is immutable"));
                }
            }
        }
        "CSIStorageCapacity" => {
            for k in ["storageClassName", "nodeTopology"] {
                if old.get(k) != new.get(k) {
                    e.push(FieldError::invalid(
                        k,
                        new.get(k).unwrap_or(&null),
                        "field is immutable",
                    ));
                }
            }
        }
        "CSIDriver" => {
            for k in ["attachRequired", "fsGroupPolicy", "volumeLifecycleModes"] {
                if os.get(k) != ns.get(k) {
                    e.push(FieldError::invalid(
                        &format!("spec.{k}"),
                        ns.get(k).unwrap_or(&null),
                        "field is immutable",
                    ));
                }
            }
        }
        _ => {}
    }
    e
}

// ---------------------------------------------------------------- PersistentVolume

const PV_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

fn access_modes(modes: &[Value], path: &str, required_msg: &str, e: &mut Errs) {
    if modes.is_empty() {
        e.push(FieldError::required(path, required_msg));
    }
    let mut rwop = false;
    for m in modes {
        let ms = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&ms) {
            e.push(FieldError::not_supported(path, m, ACCESS_MODES));
        }
        rwop |= ms == "ReadWriteOncePod";
    }
    if rwop && modes.len() > 1 {
        e.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn positive_quantity(v: &Value, path: &str, e: &mut Errs) -> bool {
    match qty(v) {
        Some(q) if q.nanos <= 0 => {
            let shown = Value::String(q.canonical());
            e.push(FieldError::invalid(path, &shown, NOT_POSITIVE));
            false
        }
        _ => true,
    }
}

fn no_backsteps(p: &str, path: &str, e: &mut Errs) {
    if p.split('/').any(|seg| seg == "..") {
        e.push(FieldError::invalid_str(path, p, "must not contain '..'"));
    }
}

/// Upstream prints a `core.ResourceList` with `%#v`: nil prints as `core.ResourceList(nil)`;
/// a populated one is rendered with its JSON (Go would dump the Quantity structs).
fn go_map_repr(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "core.ResourceList(nil)".into(),
        Some(m) if m.is_empty() => "core.ResourceList{}".into(),
        Some(_) => format!(
            "core.ResourceList{}",
            v.map(Value::to_string).unwrap_or_default()
        ),
    }
}

pub fn pv_spec(spec: &Value, e: &mut Errs) {
    let p = "spec";
    access_modes(arr(spec, "accessModes"), "spec.accessModes", "", e);
    let cap = spec.field("capacity").and_then(Value::as_object);
    let cap_len = cap.map_or(0, |c| c.len());
    if cap_len == 0 {
        e.push(FieldError::required("spec.capacity", ""));
    }
    if !cap.is_some_and(|c| c.contains_key("storage")) || cap_len > 1 {
        let shown = go_map_repr(spec.field("capacity"));
        e.push(FieldError {
            field: "spec.capacity".into(),
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: {shown}: supported values: \"storage\""),
        });
    }
    if let Some(c) = cap {
        for (r, q) in c {
            let path = key("spec.capacity", r);
            if let Some(qq) = qty(q) {
                if qq.value() < 0 {
                    e.push(FieldError::invalid(
                        &path,
                        &Value::from(qq.value() as i64),
                        "must be a valid resource quantity",
                    ));
                }
            }
            positive_quantity(q, &path, e);
        }
    }
    let class = s(spec, "storageClassName");
    if !class.is_empty() {
        for msg in field::dns1123_subdomain(class) {
            e.push(FieldError::invalid_str(
                "spec.storageClassName",
                class,
                &msg,
            ));
        }
    }
    if let Some(vm) = get(spec, "volumeMode") {
        if !VOLUME_MODES.contains(&vm.as_str().unwrap_or("")) {
            e.push(FieldError::not_supported(
                "spec.volumeMode",
                vm,
                VOLUME_MODES,
            ));
        }
    }
    let policy = s(spec, "persistentVolumeReclaimPolicy");
    if !policy.is_empty() && !["Delete", "Recycle", "Retain"].contains(&policy) {
        e.push(FieldError::not_supported(
            "spec.persistentVolumeReclaimPolicy",
            &Value::from(policy),
            &["Delete", "Recycle", "Retain"],
        ));
    }
    let mut node_affinity_specified = false;
    if let Some(na) = get(spec, "nodeAffinity") {
        node_affinity_specified = true;
        match get(na, "required") {
            Some(req) => node_selector(req, "spec.nodeAffinity.required", e),
            None => e.push(FieldError::required(
                "spec.nodeAffinity.required",
                "must specify required node constraints",
            )),
        }
    }
    let mut n = 0;
    for src in PV_SOURCES {
        let Some(v) = get(spec, src) else { continue };
        let sp = child(p, src);
        if n > 0 {
            e.push(FieldError::forbidden(
                &sp,
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        n += 1;
        match *src {
            "hostPath" => host_path(v, &sp, e),
            "nfs" => nfs(v, &sp, e),
            "local" => {
                let path = s(v, "path");
                if path.is_empty() {
                    e.push(FieldError::required(&child(&sp, "path"), ""));
                } else {
                    no_backsteps(path, &child(&sp, "path"), e);
                }
                if !node_affinity_specified {
                    e.push(FieldError::required(
                        "spec.nodeAffinity",
                        "Local volume requires node affinity",
                    ));
                }
            }
            "csi" => {
                csi_driver_name(s(v, "driver"), &child(&sp, "driver"), e);
                if s(v, "volumeHandle").is_empty() {
                    e.push(FieldError::required(&child(&sp, "volumeHandle"), ""));
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        e.push(FieldError::required(p, "must specify a volume type"));
    }
    // `checkMountOption`: only these sources take mount options.
    const MOUNTABLE: &[&str] = &[
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "glusterfs",
        "nfs",
        "rbd",
        "quobyte",
        "iscsi",
        "cinder",
        "cephfs",
        "azureFile",
        "vsphereVolume",
        "azureDisk",
        "photonPersistentDisk",
        "local",
        "csi",
        "fc",
        "scaleIO",
        "storageos",
        "flexVolume",
        "portworxVolume",
    ];
    if n > 0
        && !MOUNTABLE.iter().any(|k| get(spec, k).is_some())
        && !arr(spec, "mountOptions").is_empty()
    {
        e.push(FieldError::forbidden(
            "spec.mountOptions",
            "may not specify mount options for this volume type",
        ));
    }
    if let Some(hp) = get(spec, "hostPath") {
        let clean = s(hp, "path").trim_end_matches('/');
        if clean.is_empty() && s(hp, "path").starts_with('/') && policy == "Recycle" {
            e.push(FieldError::forbidden(
                "spec.persistentVolumeReclaimPolicy",
                "may not be 'recycle' for a hostPath mount of '/'",
            ));
        }
    }
}

fn host_path(v: &Value, p: &str, e: &mut Errs) {
    let path = s(v, "path");
    if path.is_empty() {
        e.push(FieldError::required(&child(p, "path"), ""));
        return;
    }
    no_backsteps(path, &child(p, "path"), e);
    const TYPES: &[&str] = &[
        "",
        "BlockDevice",
        "CharDevice",
        "Directory",
        "DirectoryOrCreate",
        "File",
        "FileOrCreate",
        "Socket",
    ];
    if let Some(t) = get(v, "type") {
        if !TYPES.contains(&t.as_str().unwrap_or("?")) {
            e.push(FieldError::not_supported(&child(p, "type"), t, TYPES));
        }
    }
}

fn nfs(v: &Value, p: &str, e: &mut Errs) {
    if s(v, "server").is_empty() {
        e.push(FieldError::required(&child(p, "server"), ""));
    }
    let path = s(v, "path");
    if path.is_empty() {
        e.push(FieldError::required(&child(p, "path"), ""));
    } else if !path.starts_with('/') {
        e.push(FieldError::invalid_str(
            &child(p, "path"),
            path,
            "must be an absolute path",
        ));
    }
}

fn csi_driver_name(name: &str, p: &str, e: &mut Errs) {
    if name.is_empty() {
        e.push(FieldError::required(p, ""));
        return;
    }
    if name.len() > 63 {
        e.push(FieldError::too_long(p, 63));
    }
    for msg in field::dns1123_subdomain(&name.to_lowercase()) {
        e.push(FieldError::invalid_str(p, name, &msg));
    }
}

/// `ValidateNodeSelector` (required node affinity of PVs and pods).
pub fn node_selector(ns: &Value, p: &str, e: &mut Errs) {
    let tp = child(p, "nodeSelectorTerms");
    let terms = arr(ns, "nodeSelectorTerms");
    if terms.is_empty() {
        e.push(FieldError::required(
            &tp,
            "must have at least one node selector term",
        ));
        return;
    }
    for (i, term) in terms.iter().enumerate() {
        let ip = index(&tp, i);
        for (j, req) in arr(term, "matchExpressions").iter().enumerate() {
            node_selector_requirement(req, &index(&child(&ip, "matchExpressions"), j), e);
        }
        for (j, req) in arr(term, "matchFields").iter().enumerate() {
            let rp = index(&child(&ip, "matchFields"), j);
            let op = s(req, "operator");
            let vals = arr(req, "values");
            match op {
                "In" | "NotIn" => {
                    if vals.len() != 1 {
                        e.push(FieldError::required(&child(&rp, "values"), "must be only one value when `operator` is 'In' or 'NotIn' for node field selector"));
                    }
                }
                _ => e.push(FieldError::invalid_str(
                    &child(&rp, "operator"),
                    op,
                    "not a valid selector operator",
                )),
            }
            if s(req, "key") != "metadata.name" {
                e.push(FieldError::not_supported(
                    &child(&rp, "key"),
                    req.field("key").unwrap_or(&json!("")),
                    &["metadata.name"],
                ));
            }
        }
    }
}

fn node_selector_requirement(req: &Value, p: &str, e: &mut Errs) {
    let op = s(req, "operator");
    let vals = arr(req, "values");
    let vp = child(p, "values");
    match op {
        "In" | "NotIn" => {
            if vals.is_empty() {
                e.push(FieldError::required(
                    &vp,
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
        }
        "Exists" | "DoesNotExist" => {
            if !vals.is_empty() {
                e.push(FieldError::forbidden(
                    &vp,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        "Gt" | "Lt" => {
            if vals.len() != 1 {
                e.push(FieldError::required(
                    &vp,
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                ));
            }
        }
        _ => e.push(FieldError::invalid_str(
            &child(p, "operator"),
            op,
            "not a valid selector operator",
        )),
    }
    label_name(s(req, "key"), &child(p, "key"), e);
    for (i, v) in vals.iter().enumerate() {
        let v = v.as_str().unwrap_or("");
        for msg in field::label_value(v) {
            e.push(FieldError::invalid_str(&index(&vp, i), v, &msg));
        }
    }
}

fn label_name(k: &str, p: &str, e: &mut Errs) {
    for msg in field::qualified_name(k) {
        e.push(FieldError::invalid_str(p, k, &msg));
    }
}

/// `ValidateLabelSelector` (PVC selector, CSIStorageCapacity nodeTopology).
fn label_selector(sel: &Value, p: &str, e: &mut Errs) {
    for (i, req) in arr(sel, "matchExpressions").iter().enumerate() {
        let rp = index(&child(p, "matchExpressions"), i);
        let op = s(req, "operator");
        let n = arr(req, "values").len();
        match op {
            "In" | "NotIn" => {
                if n == 0 {
                    e.push(FieldError::required(
                        &child(&rp, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if n > 0 {
                    e.push(FieldError::forbidden(
                        &child(&rp, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            _ => e.push(FieldError::invalid_str(
                &child(&rp, "operator"),
                op,
                "not a valid selector operator",
            )),
        }
        label_name(s(req, "key"), &child(&rp, "key"), e);
    }
    meta::validate_labels(sel.field("matchLabels"), &child(p, "matchLabels"), e);
}

fn pv_update(os: &Value, ns: &Value, e: &mut Errs) {
    let src = |spec: &Value| -> Vec<(String, Value)> {
        PV_SOURCES
            .iter()
            .filter_map(|k| get(spec, k).map(|v| (k.to_string(), v.clone())))
            .collect()
    };
    let (a, b) = (src(os), src(ns));
    if a != b {
        let diff = json_diff(
            &Value::Object(a.into_iter().collect()),
            &Value::Object(b.into_iter().collect()),
        );
        e.push(FieldError::forbidden(
            "spec.persistentvolumesource",
            &format!("spec.persistentvolumesource is immutable after creation\n{diff}"),
        ));
    }
    if os.field("volumeMode") != ns.field("volumeMode") {
        e.push(FieldError::invalid(
            "volumeMode",
            ns.field("volumeMode").unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
    if let Some(old_na) = get(os, "nodeAffinity") {
        if ns.field("nodeAffinity") != Some(old_na) {
            let shown = ns
                .field("nodeAffinity")
                .map(|v| Value::String(v.to_string()))
                .unwrap_or(Value::Null);
            e.push(FieldError::invalid(
                "nodeAffinity",
                &shown,
                "field is immutable",
            ));
        }
    }
}

/// A small `-old`/`+new` rendering standing in for upstream's `cmp.Diff` text.
fn json_diff(old: &Value, new: &Value) -> String {
    // Only the differing top-level fields, one `-`/`+` pair each.
    let mut out = Vec::new();
    match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => {
            let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
            keys.dedup();
            let mut seen = std::collections::BTreeSet::new();
            for k in keys {
                if !seen.insert(k) || o.get(k) == n.get(k) {
                    continue;
                }
                if let Some(v) = o.get(k) {
                    out.push(format!("  -  {k}: {v}"));
                }
                if let Some(v) = n.get(k) {
                    out.push(format!("  +  {k}: {v}"));
                }
            }
        }
        _ => {
            out.push(format!("  -  {old}"));
            out.push(format!("  +  {new}"));
        }
    }
    out.join("\n")
}

// ---------------------------------------------------------------- PersistentVolumeClaim

pub fn pvc_spec(spec: &Value, e: &mut Errs) {
    access_modes(
        arr(spec, "accessModes"),
        "spec.accessModes",
        "at least 1 access mode is required",
        e,
    );
    if let Some(sel) = get(spec, "selector") {
        label_selector(sel, "spec.selector", e);
    }
    let rp = key("spec.resources", "storage");
    match spec
        .field("resources")
        .and_then(|r| r.field("requests"))
        .and_then(|r| r.field("storage"))
    {
        None => e.push(FieldError::required(&rp, "")),
        Some(q) => {
            positive_quantity(q, &rp, e);
        }
    }
    if let Some(c) = spec.field("storageClassName").and_then(Value::as_str) {
        if !c.is_empty() {
            for msg in field::dns1123_subdomain(c) {
                e.push(FieldError::invalid_str("spec.storageClassName", c, &msg));
            }
        }
    }
    if let Some(vm) = get(spec, "volumeMode") {
        if !VOLUME_MODES.contains(&vm.as_str().unwrap_or("")) {
            e.push(FieldError::not_supported(
                "spec.volumeMode",
                vm,
                VOLUME_MODES,
            ));
        }
    }
}

const BETA_CLASS_ANN: &str = "volume.beta.kubernetes.io/storage-class";

fn pvc_update(old: &Value, new: &Value, e: &mut Errs) {
    let null = Value::Null;
    let os = old.field("spec").unwrap_or(&null);
    let ns = new.field("spec").unwrap_or(&null);
    let mut oc = os.clone();
    let mut nc = ns.clone();
    // volumeName may be set once.
    if s(os, "volumeName").is_empty() {
        match ns.field("volumeName") {
            Some(v) => oc["volumeName"] = v.clone(),
            None => {
                oc.as_object_mut().map(|m| m.shift_remove("volumeName"));
            }
        }
    }
    let ann = |o: &Value| {
        o.ptr("/metadata/annotations")
            .and_then(|a| a.get(BETA_CLASS_ANN))
            .cloned()
    };
    // The class may be set once when it was nil (retroactive default class) and no beta
    // annotation exists; the annotation may be upgraded to the same-valued field.
    let old_class = os.field("storageClassName");
    let new_class = ns.field("storageClassName");
    if old_class.is_none() && new_class.is_some() {
        match ann(old) {
            None => {
                nc.as_object_mut()
                    .map(|m| m.shift_remove("storageClassName"));
            }
            Some(a) if Some(&a) == new_class && ann(new) == Some(a.clone()) => {
                nc.as_object_mut()
                    .map(|m| m.shift_remove("storageClassName"));
            }
            _ => {}
        }
    }
    if ann(old) != ann(new) {
        let v = ann(new).unwrap_or(Value::String(String::new()));
        e.push(FieldError::invalid(
            &format!("metadata.annotations[{BETA_CLASS_ANN}]"),
            &v,
            "field is immutable",
        ));
    }
    let bound = new.ptr("/status/phase").and_then(Value::as_str) == Some("Bound");
    if bound {
        if let Some(r) = nc.pointer_mut("/resources/requests") {
            if let Some(osz) = os.ptr("/resources/requests/storage") {
                r["storage"] = osz.clone();
            }
        }
    }
    if oc != nc {
        e.push(FieldError::forbidden(
            "spec",
            &format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                json_diff(&oc, &nc)
            ),
        ));
    }
    let size = |spec: &Value| {
        spec.ptr("/resources/requests/storage")
            .and_then(qty)
            .map(|q| q.nanos)
    };
    if let (Some(o), Some(n)) = (size(os), size(ns)) {
        if n < o {
            let status = old
                .ptr("/status/capacity/storage")
                .and_then(qty)
                .map(|q| q.nanos)
                .unwrap_or(0);
            if n <= status {
                e.push(FieldError::forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than status.capacity",
                ));
            }
        }
    }
    if os.field("volumeMode") != ns.field("volumeMode") {
        e.push(FieldError::invalid(
            "volumeMode",
            ns.field("volumeMode").unwrap_or(&null),
            "field is immutable",
        ));
    }
}

const POD_CONDITION_TYPES: &[&str] = &[
    "PodScheduled",
    "Ready",
    "Initialized",
    "ContainersReady",
    "DisruptionTarget",
    "PodReadyToStartContainers",
];

fn valid_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// The parts of `ValidatePodStatusUpdate` a node agent can trip over.
fn pod_status(old: &Value, new: &Value, e: &mut Errs) {
    let null = Value::Null;
    let st = new.field("status").unwrap_or(&null);
    for (i, c) in arr(st, "conditions").iter().enumerate() {
        let t = s(c, "type");
        if !POD_CONDITION_TYPES.contains(&t) {
            for msg in field::qualified_name(t) {
                e.push(FieldError::invalid_str(
                    &format!("status.conditions[{i}].Type"),
                    t,
                    &msg,
                ));
            }
        }
    }
    if let Some(nn) = st
        .field("nominatedNodeName")
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
    {
        if old.ptr("/status/nominatedNodeName").and_then(Value::as_str) != Some(nn) {
            for msg in field::dns1123_subdomain(nn) {
                e.push(FieldError::invalid_str(
                    "status.nominatedNodeName",
                    nn,
                    &msg,
                ));
            }
        }
    }
    // A container that may not restart stays terminated.
    let policy = old
        .ptr("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    for list in ["containerStatuses", "initContainerStatuses"] {
        let olds = old
            .ptr(&format!("/status/{list}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, c) in arr(st, list).iter().enumerate() {
            let Some(prev) = olds.iter().find(|o| o.field("name") == c.field("name")) else {
                continue;
            };
            let Some(term) = prev.ptr("/state/terminated") else {
                continue;
            };
            let exit = term.field("exitCode").and_then(Value::as_i64).unwrap_or(0);
            let stays = match (list, policy) {
                (_, "Never") => true,
                (_, "OnFailure") => exit == 0,
                ("initContainerStatuses", _) => exit == 0,
                _ => false,
            };
            if stays && c.ptr("/state/terminated").is_none() {
                e.push(FieldError::forbidden(
                    &format!("status.{list}[{i}]"),
                    "may not be transitioned to non-terminated state",
                ));
            }
        }
    }
    for list in ["podIPs", "hostIPs"] {
        let mut seen: Vec<&str> = Vec::new();
        for (i, ip) in arr(st, list).iter().enumerate() {
            let v = s(ip, "ip");
            if !valid_ip(v) {
                e.push(FieldError::invalid_str(
                    &format!("status.{list}[{i}].ip"),
                    v,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ));
            } else if seen.contains(&v) {
                e.push(FieldError::duplicate(
                    &format!("status.{list}[{i}]"),
                    &Value::from(v),
                ));
            }
            seen.push(v);
        }
    }
}

fn pvc_status(new: &Value, e: &mut Errs) {
    if let Some(cap) = new.ptr("/status/capacity").and_then(Value::as_object) {
        for (r, q) in cap {
            if qty(q).is_some_and(|q| q.nanos < 0) {
                e.push(FieldError::invalid(
                    &key("status.capacity", r),
                    q,
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
}

// ---------------------------------------------------------------- StorageClass

fn storage_class(sc: &Value, e: &mut Errs) {
    let prov = s(sc, "provisioner");
    if prov.is_empty() {
        e.push(FieldError::required("provisioner", ""));
    } else {
        for msg in field::qualified_name(&prov.to_lowercase()) {
            e.push(FieldError::invalid_str("provisioner", prov, &msg));
        }
    }
    if let Some(params) = sc.field("parameters").and_then(Value::as_object) {
        if params.len() > 512 {
            e.push(FieldError::too_long("parameters", 512));
        }
        let mut total = 0;
        for (k, v) in params {
            if k.is_empty() {
                e.push(FieldError::invalid_str(
                    "parameters",
                    k,
                    "field can not be empty.",
                ));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            e.push(FieldError::too_long("parameters", 256 * 1024));
        }
    }
    if let Some(rp) = get(sc, "reclaimPolicy") {
        let r = rp.as_str().unwrap_or("");
        if !r.is_empty() && !["Delete", "Retain"].contains(&r) {
            e.push(FieldError::not_supported(
                "reclaimPolicy",
                rp,
                &["Delete", "Retain"],
            ));
        }
    }
    match get(sc, "volumeBindingMode") {
        None => e.push(FieldError::required("volumeBindingMode", "")),
        Some(m) => {
            if !["Immediate", "WaitForFirstConsumer"].contains(&m.as_str().unwrap_or("")) {
                e.push(FieldError::not_supported(
                    "volumeBindingMode",
                    m,
                    &["Immediate", "WaitForFirstConsumer"],
                ));
            }
        }
    }
    let mut seen: Vec<Vec<(String, Vec<String>)>> = Vec::new();
    for (i, term) in arr(sc, "allowedTopologies").iter().enumerate() {
        let ip = index("allowedTopologies", i);
        let ep = child(&ip, "matchLabelExpressions");
        let mut expr: Vec<(String, Vec<String>)> = Vec::new();
        for (j, req) in arr(term, "matchLabelExpressions").iter().enumerate() {
            let rp = index(&ep, j);
            let vals = arr(req, "values");
            if vals.is_empty() {
                e.push(FieldError::required(
                    &child(&rp, "values"),
                    "must specify as least one value",
                ));
            }
            let mut set: Vec<String> = Vec::new();
            for v in vals {
                let v = v.as_str().unwrap_or("").to_string();
                if set.contains(&v) {
                    e.push(FieldError::duplicate(
                        &child(&rp, "values"),
                        &Value::String(v.clone()),
                    ));
                }
                set.push(v);
            }
            let k = s(req, "key");
            label_name(k, &child(&rp, "key"), e);
            if expr.iter().any(|(ek, _)| ek == k) {
                e.push(FieldError::duplicate(&child(&rp, "key"), &Value::from(k)));
            }
            set.sort();
            expr.push((k.to_string(), set));
        }
        expr.sort();
        if seen.contains(&expr) {
            e.push(FieldError::duplicate(&ep, &Value::from("")));
        }
        seen.push(expr);
    }
}

fn sc_update(old: &Value, new: &Value, e: &mut Errs) {
    let empty = json!({});
    let params = |o: &Value| {
        o.field("parameters")
            .filter(|p| p.as_object().is_some_and(|m| !m.is_empty()))
            .unwrap_or(&empty)
            .clone()
    };
    if params(old) != params(new) {
        e.push(FieldError::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if s(old, "provisioner") != s(new, "provisioner") {
        e.push(FieldError::forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    if s(old, "reclaimPolicy") != s(new, "reclaimPolicy") {
        e.push(FieldError::forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    if old.field("volumeBindingMode") != new.field("volumeBindingMode") {
        e.push(FieldError::invalid(
            "volumeBindingMode",
            new.field("volumeBindingMode").unwrap_or(&Value::Null),
            "field is immutable",
        ));
    }
}

// ---------------------------------------------------------------- Node

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn node(n: &Value, e: &mut Errs) {
    let null = Value::Null;
    let spec = n.field("spec").unwrap_or(&null);
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, t) in arr(spec, "taints").iter().enumerate() {
        let ip = index("spec.taints", i);
        let k = s(t, "key");
        label_name(k, &child(&ip, "key"), e);
        let v = s(t, "value");
        let errs = field::label_value(v);
        if !errs.is_empty() {
            e.push(FieldError::invalid_str(
                &child(&ip, "value"),
                v,
                &errs.join(";"),
            ));
        }
        let eff = s(t, "effect");
        if eff.is_empty() {
            e.push(FieldError::required(&child(&ip, "effect"), ""));
        } else if !TAINT_EFFECTS.contains(&eff) {
            e.push(FieldError::not_supported(
                &child(&ip, "effect"),
                &Value::from(eff),
                TAINT_EFFECTS,
            ));
        }
        if seen.contains(&(k.to_string(), eff.to_string())) {
            let mut d = FieldError::duplicate(&ip, t);
            d.message = format!(
                "Duplicate value: {}: taints must be unique by key and effect pair",
                Value::String(t.to_string())
            );
            e.push(d);
            continue;
        }
        seen.push((k.to_string(), eff.to_string()));
    }
    let status = n.field("status").unwrap_or(&null);
    for which in ["capacity", "allocatable"] {
        if let Some(m) = status.get(which).and_then(Value::as_object) {
            for (r, q) in m {
                if qty(q).is_some_and(|q| q.nanos < 0) {
                    e.push(FieldError::invalid(
                        &key(&format!("status.{which}"), r),
                        q,
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
    }
}

// ---------------------------------------------------------------- Pod

const POD_VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gitRepo",
    "awsElasticBlockStore",
    "gcePersistentDisk",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "quobyte",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn env_name_ok(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
}
const ENV_NAME_ERR: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";

pub fn pod_spec(spec: &Value, p: &str, e: &mut Errs) {
    // volumes
    let mut vol_names: Vec<String> = Vec::new();
    for (i, v) in arr(spec, "volumes").iter().enumerate() {
        let ip = index(&child(p, "volumes"), i);
        let name = s(v, "name");
        if name.is_empty() {
            e.push(FieldError::required(&child(&ip, "name"), ""));
        } else {
            for msg in field::dns1123_label(name) {
                e.push(FieldError::invalid_str(&child(&ip, "name"), name, &msg));
            }
            if vol_names.iter().any(|n| n == name) {
                e.push(FieldError::duplicate(
                    &child(&ip, "name"),
                    &Value::from(name),
                ));
            }
        }
        vol_names.push(name.to_string());
        let mut n = 0;
        for src in POD_VOLUME_SOURCES {
            let Some(sv) = get(v, src) else { continue };
            if n > 0 {
                e.push(FieldError::forbidden(
                    &child(&ip, src),
                    "may not specify more than 1 volume type",
                ));
                continue;
            }
            n += 1;
            let sp = child(&ip, src);
            match *src {
                "persistentVolumeClaim" if s(sv, "claimName").is_empty() => {
                    e.push(FieldError::required(&child(&sp, "claimName"), ""));
                }
                "hostPath" => host_path(sv, &sp, e),
                "nfs" => nfs(sv, &sp, e),
                "emptyDir" => {
                    if let Some(l) = sv.field("sizeLimit") {
                        if qty(l).is_some_and(|q| q.nanos < 0) {
                            e.push(FieldError::forbidden(
                                &child(&sp, "sizeLimit"),
                                "SizeLimit field must be a valid resource quantity",
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        if n == 0 {
            e.push(FieldError::required(&ip, "must specify a volume type"));
        }
    }
    // containers
    let containers = arr(spec, "containers");
    let mut all_names: Vec<String> = Vec::new();
    for (i, c) in arr(spec, "initContainers").iter().enumerate() {
        container(
            c,
            &index(&child(p, "initContainers"), i),
            &vol_names,
            &mut all_names,
            e,
        );
    }
    if containers.is_empty() {
        e.push(FieldError::required(&child(p, "containers"), ""));
    }
    for (i, c) in containers.iter().enumerate() {
        container(
            c,
            &index(&child(p, "containers"), i),
            &vol_names,
            &mut all_names,
            e,
        );
    }
    for (i, c) in arr(spec, "ephemeralContainers").iter().enumerate() {
        container(
            c,
            &index(&child(p, "ephemeralContainers"), i),
            &vol_names,
            &mut all_names,
            e,
        );
    }
    // restartPolicy / dnsPolicy
    let rp = s(spec, "restartPolicy");
    if rp.is_empty() {
        e.push(FieldError::required(&child(p, "restartPolicy"), ""));
    } else if !["Always", "OnFailure", "Never"].contains(&rp) {
        e.push(FieldError::not_supported(
            &child(p, "restartPolicy"),
            &Value::from(rp),
            &["Always", "OnFailure", "Never"],
        ));
    }
    let dp = s(spec, "dnsPolicy");
    const DNS: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    if dp.is_empty() {
        e.push(FieldError::required(&child(p, "dnsPolicy"), ""));
    } else if !DNS.contains(&dp) {
        e.push(FieldError::not_supported(
            &child(p, "dnsPolicy"),
            &Value::from(dp),
            DNS,
        ));
    }
    meta::validate_labels(spec.field("nodeSelector"), &child(p, "nodeSelector"), e);
    if let Some(sa) = spec
        .field("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
    {
        for msg in field::dns1123_subdomain(sa) {
            e.push(FieldError::invalid_str(
                &child(p, "serviceAccountName"),
                sa,
                &msg,
            ));
        }
    }
    if let Some(nn) = spec
        .field("nodeName")
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
    {
        for msg in field::dns1123_subdomain(nn) {
            e.push(FieldError::invalid_str(&child(p, "nodeName"), nn, &msg));
        }
    }
    if let Some(ads) = get(spec, "activeDeadlineSeconds") {
        let v = ads.as_i64().unwrap_or(0);
        if !(1..=i32::MAX as i64).contains(&v) {
            e.push(FieldError::invalid(
                &child(p, "activeDeadlineSeconds"),
                ads,
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    if let Some(t) = get(spec, "terminationGracePeriodSeconds") {
        if t.as_i64().is_some_and(|v| v < 0) {
            // Upstream tolerates negatives (legacy) and later defaults them to 1.
        }
    }
    for k in ["hostname", "subdomain"] {
        if let Some(h) = spec
            .get(k)
            .and_then(Value::as_str)
            .filter(|x| !x.is_empty())
        {
            for msg in field::dns1123_label(h) {
                e.push(FieldError::invalid_str(&child(p, k), h, &msg));
            }
        }
    }
    if let Some(na) =
        spec.ptr("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution")
    {
        node_selector(
            na,
            &format!("{p}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"),
            e,
        );
    }
    tolerations(arr(spec, "tolerations"), &child(p, "tolerations"), e);
    if let Some(sn) = spec
        .field("schedulerName")
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
    {
        for msg in field::dns1123_subdomain(sn) {
            e.push(FieldError::invalid_str(
                &child(p, "schedulerName"),
                sn,
                &msg,
            ));
        }
    }
    if let Some(pp) = get(spec, "preemptionPolicy") {
        if !["Never", "PreemptLowerPriority"].contains(&pp.as_str().unwrap_or("")) {
            e.push(FieldError::not_supported(
                &child(p, "preemptionPolicy"),
                pp,
                &["Never", "PreemptLowerPriority"],
            ));
        }
    }
}

fn container(c: &Value, p: &str, vols: &[String], names: &mut Vec<String>, e: &mut Errs) {
    let name = s(c, "name");
    if name.is_empty() {
        e.push(FieldError::required(&child(p, "name"), ""));
    } else {
        for msg in field::dns1123_label(name) {
            e.push(FieldError::invalid_str(&child(p, "name"), name, &msg));
        }
        if names.iter().any(|n| n == name) {
            e.push(FieldError::duplicate(&child(p, "name"), &Value::from(name)));
        }
    }
    names.push(name.to_string());
    if s(c, "image").trim().is_empty() {
        e.push(FieldError::required(&child(p, "image"), ""));
    }
    let pol = s(c, "imagePullPolicy");
    if pol.is_empty() {
        e.push(FieldError::required(&child(p, "imagePullPolicy"), ""));
    } else if !["Always", "IfNotPresent", "Never"].contains(&pol) {
        e.push(FieldError::not_supported(
            &child(p, "imagePullPolicy"),
            &Value::from(pol),
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    let tmp = s(c, "terminationMessagePolicy");
    if tmp.is_empty() {
        e.push(FieldError::required(
            &child(p, "terminationMessagePolicy"),
            "",
        ));
    } else if !["File", "FallbackToLogsOnError"].contains(&tmp) {
        e.push(FieldError::not_supported(
            &child(p, "terminationMessagePolicy"),
            &Value::from(tmp),
            &["File", "FallbackToLogsOnError"],
        ));
    }
    let mut ports_seen: Vec<(i64, String)> = Vec::new();
    for (i, port) in arr(c, "ports").iter().enumerate() {
        let ip = index(&child(p, "ports"), i);
        if let Some(n) = port
            .field("name")
            .and_then(Value::as_str)
            .filter(|x| !x.is_empty())
        {
            let ok = n.len() <= 15
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && n.bytes().any(|b| b.is_ascii_lowercase())
                && !n.starts_with('-')
                && !n.ends_with('-')
                && !n.contains("--");
            if !ok {
                e.push(FieldError::invalid_str(
                    &child(&ip, "name"),
                    n,
                    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                ));
            }
        }
        let cp = port
            .field("containerPort")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if cp == 0 {
            e.push(FieldError::required(&child(&ip, "containerPort"), ""));
        } else if !(1..=65535).contains(&cp) {
            e.push(FieldError::invalid(
                &child(&ip, "containerPort"),
                &Value::from(cp),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if let Some(hp) = port.field("hostPort").and_then(Value::as_i64) {
            if hp != 0 && !(1..=65535).contains(&hp) {
                e.push(FieldError::invalid(
                    &child(&ip, "hostPort"),
                    &Value::from(hp),
                    "must be between 1 and 65535, inclusive",
                ));
            }
        }
        let proto = s(port, "protocol");
        if proto.is_empty() {
            e.push(FieldError::required(&child(&ip, "protocol"), ""));
        } else if !["SCTP", "TCP", "UDP"].contains(&proto) {
            e.push(FieldError::not_supported(
                &child(&ip, "protocol"),
                &Value::from(proto),
                &["SCTP", "TCP", "UDP"],
            ));
        }
        ports_seen.push((cp, proto.to_string()));
    }
    for (i, env) in arr(c, "env").iter().enumerate() {
        let ip = index(&child(p, "env"), i);
        let n = s(env, "name");
        if n.is_empty() {
            e.push(FieldError::required(&child(&ip, "name"), ""));
        } else if !env_name_ok(n) {
            e.push(FieldError::invalid_str(
                &child(&ip, "name"),
                n,
                ENV_NAME_ERR,
            ));
        }
    }
    let mut mounts: Vec<String> = Vec::new();
    for (i, m) in arr(c, "volumeMounts").iter().enumerate() {
        let ip = index(&child(p, "volumeMounts"), i);
        let n = s(m, "name");
        if n.is_empty() {
            e.push(FieldError::required(&child(&ip, "name"), ""));
        } else if !vols.iter().any(|v| v == n) {
            e.push(FieldError {
                field: child(&ip, "name"),
                reason: "FieldValueNotFound",
                message: format!("Not found: {}", field::go_quote(n)),
            });
        }
        let mp = s(m, "mountPath");
        if mp.is_empty() {
            e.push(FieldError::required(&child(&ip, "mountPath"), ""));
        } else if mounts.iter().any(|x| x == mp) {
            e.push(FieldError::invalid_str(
                &child(&ip, "mountPath"),
                mp,
                "must be unique",
            ));
        }
        mounts.push(mp.to_string());
        let sub = s(m, "subPath");
        if !sub.is_empty() {
            if sub.starts_with('/') {
                e.push(FieldError::invalid_str(
                    &child(&ip, "subPath"),
                    sub,
                    "must be a relative path",
                ));
            }
            no_backsteps(sub, &child(&ip, "subPath"), e);
        }
    }
    let res = c.field("resources");
    let lim = res
        .and_then(|r| r.field("limits"))
        .and_then(Value::as_object);
    let req = res
        .and_then(|r| r.field("requests"))
        .and_then(Value::as_object);
    for (which, m) in [("limits", lim), ("requests", req)] {
        if let Some(m) = m {
            for (r, q) in m {
                if qty(q).is_some_and(|q| q.nanos < 0) {
                    let rp = key(&format!("{p}.resources.{which}"), r);
                    e.push(FieldError::invalid(
                        &rp,
                        q,
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
    }
    if let (Some(req), Some(lim)) = (req, lim) {
        for (r, q) in req {
            if let (Some(rq), Some(lq)) = (qty(q), lim.get(r).and_then(qty)) {
                if rq.nanos > lq.nanos {
                    e.push(FieldError::invalid(
                        &key(&format!("{p}.resources.requests"), r),
                        &Value::String(rq.canonical()),
                        &format!(
                            "must be less than or equal to {r} limit of {}",
                            lq.canonical()
                        ),
                    ));
                }
            }
        }
    }
}

fn tolerations(tols: &[Value], p: &str, e: &mut Errs) {
    for (i, t) in tols.iter().enumerate() {
        let ip = index(p, i);
        let k = s(t, "key");
        if !k.is_empty() {
            label_name(k, &child(&ip, "key"), e);
        }
        let op = t.field("operator").and_then(Value::as_str).unwrap_or("");
        if k.is_empty() && op != "Exists" {
            e.push(FieldError::invalid_str(&child(&ip, "operator"), op, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""));
        }
        let eff = s(t, "effect");
        if t.field("tolerationSeconds").is_some_and(|x| !x.is_null()) && eff != "NoExecute" {
            e.push(FieldError::invalid_str(
                &child(&ip, "effect"),
                eff,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        let v = s(t, "value");
        match op {
            "" | "Equal" => {
                for msg in field::label_value(v) {
                    e.push(FieldError::invalid_str(&child(&ip, "operator"), v, &msg));
                }
            }
            "Exists" => {
                if !v.is_empty() {
                    e.push(FieldError::invalid(
                        &ip,
                        t,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            _ => e.push(FieldError::not_supported(
                &child(&ip, "operator"),
                &Value::from(op),
                &["Equal", "Exists"],
            )),
        }
        if !eff.is_empty() && !TAINT_EFFECTS.contains(&eff) {
            e.push(FieldError::not_supported(
                &child(&ip, "effect"),
                &Value::from(eff),
                TAINT_EFFECTS,
            ));
        }
    }
}

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn pod_update(os: &Value, ns: &Value, e: &mut Errs) {
    // activeDeadlineSeconds: may be set or decreased, never removed or increased.
    let (oa, na) = (
        os.field("activeDeadlineSeconds").and_then(Value::as_i64),
        ns.field("activeDeadlineSeconds").and_then(Value::as_i64),
    );
    match (oa, na) {
        (Some(_), None) => e.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            &Value::Null,
            "must not update from a positive integer to nil value",
        )),
        (Some(o), Some(n)) if n > o => e.push(FieldError::invalid(
            "spec.activeDeadlineSeconds",
            &Value::from(n),
            "must be less than or equal to previous value",
        )),
        _ => {}
    }
    // tolerations: only additions (and tolerationSeconds changes).
    let old_t = arr(os, "tolerations");
    let new_t = arr(ns, "tolerations");
    for ot in old_t {
        let found = new_t.iter().any(|nt| {
            let mut a = ot.clone();
            let mut b = nt.clone();
            for x in [&mut a, &mut b] {
                if let Some(m) = x.as_object_mut() {
                    m.shift_remove("tolerationSeconds");
                }
            }
            a == b
        });
        if !found {
            e.push(FieldError::forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }
    // Everything else must be equal once the mutable fields are aligned.
    let mut a = os.clone();
    let b = ns.clone();
    for list in ["containers", "initContainers"] {
        if let (Some(ac), Some(bc)) = (
            a.get_mut(list).and_then(Value::as_array_mut),
            b.get(list).and_then(Value::as_array),
        ) {
            if ac.len() == bc.len() {
                for (x, y) in ac.iter_mut().zip(bc) {
                    if let Some(img) = y.field("image") {
                        x["image"] = img.clone();
                    }
                }
            }
        }
    }
    for k in ["activeDeadlineSeconds", "tolerations"] {
        match b.get(k) {
            Some(v) => a[k] = v.clone(),
            None => {
                a.as_object_mut().map(|m| m.shift_remove(k));
            }
        }
    }
    if os
        .field("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|v| v < 0)
        && ns
            .field("terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            == Some(1)
    {
        a["terminationGracePeriodSeconds"] = json!(1);
    }
    if a != b {
        e.push(FieldError::forbidden(
            "spec",
            &format!("{POD_UPDATE_MSG}\n{}", json_diff(&a, &b)),
        ));
    }
    for (list, arr_new) in [
        ("containers", arr(ns, "containers")),
        ("initContainers", arr(ns, "initContainers")),
    ] {
        for (i, c) in arr_new.iter().enumerate() {
            if s(c, "image").is_empty() && !arr(os, list).is_empty() {
                let _ = i; // covered by validate_create (image Required)
            }
        }
    }
}

// ---------------------------------------------------------------- Event / Lease / CSI / Binding

fn event(api_version: &str, ev: &Value, e: &mut Errs) {
    let ns = ev
        .ptr("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let v1 = api_version == "v1";
    // Field names in the events.k8s.io API; upstream validates the internal (core) names.
    let (involved, rc, note) = if v1 {
        ("involvedObject", "reportingComponent", "message")
    } else {
        ("regarding", "reportingController", "note")
    };
    let inv_ns = ev.get(involved).map(|o| s(o, "namespace")).unwrap_or("");
    let event_time = get(ev, "eventTime").is_some();
    if !event_time {
        if inv_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                e.push(FieldError::invalid_str(
                    "involvedObject.namespace",
                    inv_ns,
                    "does not match event.namespace",
                ));
            }
        } else if ns != inv_ns {
            e.push(FieldError::invalid_str(
                "involvedObject.namespace",
                inv_ns,
                "does not match event.namespace",
            ));
        }
    } else {
        if inv_ns.is_empty() && ns != "default" && ns != "kube-system" {
            e.push(FieldError::invalid_str(
                "involvedObject.namespace",
                inv_ns,
                "does not match event.namespace",
            ));
        }
        let ctl = s(ev, rc);
        let ctl_field = if v1 {
            "reportingComponent"
        } else {
            "reportingController"
        };
        if ctl.is_empty() {
            e.push(FieldError::required(ctl_field, ""));
        }
        for msg in field::qualified_name(ctl) {
            e.push(FieldError::invalid_str(ctl_field, ctl, &msg));
        }
        let inst = s(ev, "reportingInstance");
        if inst.is_empty() {
            e.push(FieldError::required("reportingInstance", ""));
        }
        if inst.len() > 128 {
            e.push(FieldError::invalid_str(
                "reportingInstance",
                "",
                "can have at most 128 characters",
            ));
        }
        let action = s(ev, "action");
        if action.is_empty() {
            e.push(FieldError::required("action", ""));
        }
        if action.len() > 128 {
            e.push(FieldError::invalid_str(
                "action",
                "",
                "can have at most 128 characters",
            ));
        }
        let reason = s(ev, "reason");
        if reason.is_empty() {
            e.push(FieldError::required("reason", ""));
        }
        if reason.len() > 128 {
            e.push(FieldError::invalid_str(
                "reason",
                "",
                "can have at most 128 characters",
            ));
        }
        if s(ev, note).len() > 1024 {
            e.push(FieldError::invalid_str(
                "message",
                "",
                "can have at most 1024 characters",
            ));
        }
    }
    for msg in field::dns1123_subdomain(ns) {
        e.push(FieldError::invalid_str("namespace", ns, &msg));
    }
    if v1 {
        return;
    }
    // Strict validation for events.k8s.io/v1.
    meta::validate(ev.field("metadata"), true, NameRule::Subdomain, e);
    if !event_time {
        e.push(FieldError::required("eventTime", ""));
    }
    let t = s(ev, "type");
    if t != "Normal" && t != "Warning" {
        e.push(FieldError::invalid_str(
            "type",
            "",
            &format!("has invalid value: {t}"),
        ));
    }
    for (k, up) in [
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
    ] {
        if get(ev, k).is_some() {
            e.push(FieldError::invalid_str(up, "", "needs to be unset"));
        }
    }
    if ev
        .field("deprecatedCount")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        != 0
    {
        e.push(FieldError::invalid_str("count", "", "needs to be unset"));
    }
    if let Some(src) = get(ev, "deprecatedSource") {
        if !s(src, "component").is_empty() || !s(src, "host").is_empty() {
            e.push(FieldError::invalid_str("source", "", "needs to be unset"));
        }
    }
}

fn lease(l: &Value, e: &mut Errs) {
    let null = Value::Null;
    let spec = l.field("spec").unwrap_or(&null);
    if let Some(d) = spec.field("leaseDurationSeconds").and_then(Value::as_i64) {
        if d <= 0 {
            e.push(FieldError::invalid(
                "spec.leaseDurationSeconds",
                &Value::from(d),
                "must be greater than 0",
            ));
        }
    }
    if let Some(t) = spec.field("leaseTransitions").and_then(Value::as_i64) {
        if t < 0 {
            e.push(FieldError::invalid(
                "spec.leaseTransitions",
                &Value::from(t),
                "must be greater than or equal to 0",
            ));
        }
    }
}

fn csi_storage_capacity(c: &Value, e: &mut Errs) {
    if let Some(sel) = get(c, "nodeTopology") {
        label_selector(sel, "nodeTopology", e);
    }
    let class = s(c, "storageClassName");
    if class.is_empty() {
        e.push(FieldError::required("storageClassName", ""));
    } else {
        for msg in field::dns1123_subdomain(class) {
            e.push(FieldError::invalid_str("storageClassName", class, &msg));
        }
    }
    for k in ["capacity", "maximumVolumeSize"] {
        if let Some(q) = get(c, k) {
            if qty(q).is_some_and(|q| q.nanos < 0) {
                e.push(FieldError::invalid(
                    k,
                    q,
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
}

fn csi_driver(d: &Value, e: &mut Errs) {
    let name = d
        .ptr("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !name.is_empty() && name.len() > 63 {
        e.push(FieldError::too_long("metadata.name", 63));
    }
    let null = Value::Null;
    let spec = d.field("spec").unwrap_or(&null);
    if get(spec, "attachRequired").is_none() {
        e.push(FieldError::required("spec.attachRequired", ""));
    }
    const FSG: &[&str] = &["File", "None", "ReadWriteOnceWithFSType"];
    if let Some(f) = get(spec, "fsGroupPolicy") {
        if !FSG.contains(&f.as_str().unwrap_or("")) {
            e.push(FieldError::not_supported("spec.fsGroupPolicy", f, FSG));
        }
    }
    for (i, m) in arr(spec, "volumeLifecycleModes").iter().enumerate() {
        if !["Ephemeral", "Persistent"].contains(&m.as_str().unwrap_or("")) {
            e.push(FieldError::not_supported(
                &index("spec.volumeLifecycleModes", i),
                m,
                &["Ephemeral", "Persistent"],
            ));
        }
    }
}

fn binding(b: &Value, e: &mut Errs) {
    let null = Value::Null;
    let t = b.field("target").unwrap_or(&null);
    let k = s(t, "kind");
    if !k.is_empty() && k != "Node" {
        e.push(FieldError::not_supported(
            "target.kind",
            &Value::from(k),
            &["Node", "<empty>"],
        ));
    }
    if s(t, "name").is_empty() {
        e.push(FieldError::required("target.name", ""));
    }
}
