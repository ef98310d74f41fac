//! `ValidateObjectMeta` / `ValidateObjectMetaUpdate` (apimachinery) on JSON.

use super::Field;
use serde_json::Value;

use super::field::{self, Errs, FieldError};

/// How a kind validates `metadata.name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    Subdomain,
    Label,
    /// Legacy core/v1 events: any name that is a valid path segment.
    PathSegment,
}

pub fn name_errors(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => field::dns1123_subdomain(name),
        NameRule::Label => field::dns1123_label(name),
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                vec![format!("may not be '{name}'")]
            } else if let Some(c) = ['/', '%'].iter().find(|c| name.contains(**c)) {
                vec![format!("may not contain '{c}'")]
            } else {
                vec![]
            }
        }
    }
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.field(k).and_then(Value::as_str)
}

const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// `validateFinalizerName`.
pub fn finalizer_errors(name: &str, path: &str, errs: &mut Errs) {
    let msgs = field::qualified_name(name);
    let had = !msgs.is_empty();
    for m in msgs {
        errs.push(FieldError::invalid_str(path, name, &m));
    }
    if !had && !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
        errs.push(FieldError::invalid_str(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

/// Labels: keys are qualified names, values label values.
pub fn validate_labels(labels: Option<&Value>, path: &str, errs: &mut Errs) {
    let Some(m) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        for msg in field::qualified_name(k) {
            errs.push(FieldError::invalid_str(path, k, &msg));
        }
        let v = v.as_str().unwrap_or("");
        for msg in field::label_value(v) {
            errs.push(FieldError::invalid_str(path, v, &msg));
        }
    }
}

/// `ValidateObjectMeta`. `namespaced`: whether `metadata.namespace` is required.
pub fn validate(meta: Option<&Value>, namespaced: bool, rule: NameRule, errs: &mut Errs) {
    let empty = Value::Null;
    let meta = meta.unwrap_or(&empty);
    let name = s(meta, "name").unwrap_or("");
    let gen = s(meta, "generateName").unwrap_or("");
    if !gen.is_empty() {
        // generateName is a prefix: validated with its trailing '-' trimmed, as upstream's
        // `maskTrailingDash`.
        let masked = gen
            .strip_suffix('-')
            .map(|g| format!("{g}a"))
            .unwrap_or_else(|| gen.to_string());
        for msg in name_errors(rule, &masked) {
            errs.push(FieldError::invalid_str("metadata.generateName", gen, &msg));
        }
    }
    if name.is_empty() {
        if gen.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for msg in name_errors(rule, name) {
            errs.push(FieldError::invalid_str("metadata.name", name, &msg));
        }
    }
    let ns = s(meta, "namespace").unwrap_or("");
    if namespaced {
        if ns.is_empty() {
            errs.push(FieldError::required("metadata.namespace", ""));
        } else {
            for msg in field::dns1123_label(ns) {
                errs.push(FieldError::invalid_str("metadata.namespace", ns, &msg));
            }
        }
    } else if !ns.is_empty() {
        errs.push(FieldError::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    if let Some(g) = meta.field("generation").and_then(Value::as_i64) {
        if g < 0 {
            errs.push(FieldError::invalid(
                "metadata.generation",
                &Value::from(g),
                "must be greater than or equal to 0",
            ));
        }
    }
    validate_labels(meta.field("labels"), "metadata.labels", errs);
    if let Some(m) = meta.field("annotations").and_then(Value::as_object) {
        let mut total = 0usize;
        for (k, v) in m {
            // Lower-cased as upstream does, without a copy when there is nothing to lower.
            let lower = if k.is_ascii() && !k.bytes().any(|b| b.is_ascii_uppercase()) {
                std::borrow::Cow::Borrowed(k.as_str())
            } else {
                std::borrow::Cow::Owned(k.to_lowercase())
            };
            for msg in field::qualified_name(&lower) {
                errs.push(FieldError::invalid_str("metadata.annotations", k, &msg));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            errs.push(FieldError {
                field: "metadata.annotations".into(),
                reason: "FieldValueTooLong",
                message: format!("Too long: may not be more than {} bytes", 256 * 1024),
            });
        }
    }
    if let Some(list) = meta.field("finalizers").and_then(Value::as_array) {
        for (i, f) in list.iter().enumerate() {
            finalizer_errors(
                f.as_str().unwrap_or(""),
                &field::index("metadata.finalizers", i),
                errs,
            );
        }
    }
    if let Some(refs) = meta.field("ownerReferences").and_then(Value::as_array) {
        for (i, r) in refs.iter().enumerate() {
            let p = field::index("metadata.ownerReferences", i);
            for k in ["apiVersion", "kind", "name", "uid"] {
                if s(r, k).unwrap_or("").is_empty() {
                    let d = match k {
                        "apiVersion" => "version must not be empty",
                        "kind" => "kind must not be empty",
                        "name" => "name must not be empty",
                        _ => "uid must not be empty",
                    };
                    errs.push(FieldError::invalid(
                        &field::child(&p, k),
                        &Value::from(""),
                        d,
                    ));
                }
            }
        }
    }
}

/// `ValidateObjectMetaUpdate`: identity fields may not change; no new finalizers while deleting.
pub fn validate_update(new: Option<&Value>, old: Option<&Value>, errs: &mut Errs) {
    let empty = Value::Null;
    let new = new.unwrap_or(&empty);
    let old = old.unwrap_or(&empty);
    for k in ["name", "namespace", "uid", "creationTimestamp"] {
        let (n, o) = (new.get(k), old.get(k));
        if n != o && !(k == "uid" && n.is_none()) {
            let shown = n.cloned().unwrap_or(Value::String(String::new()));
            errs.push(FieldError::invalid(
                &format!("metadata.{k}"),
                &shown,
                "field is immutable",
            ));
        }
    }
    if old.field("deletionTimestamp").is_some() {
        let old_f: Vec<&Value> = old
            .field("finalizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let added: Vec<String> = new
            .field("finalizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|f| !old_f.contains(f))
                    .filter_map(|f| f.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if !added.is_empty() {
            let list: Vec<String> = added.iter().map(|f| field::go_quote(f)).collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    list.join(", ")
                ),
            ));
        }
    }
}
