//! Namespace deletion, as kube-apiserver's namespace registry and kube-controller-manager's
//! namespace controller decide it — the decisions only; the HTTP layer's loop lists the
//! namespace's contents, issues the deletes and writes what [`namespace_finalize_plan`] says.
//!
//! 1. `DELETE namespaces/x` ([`namespace_delete`]): a namespace with finalizers is not removed
//!    but marked: `deletionTimestamp` set, `status.phase: Terminating` (repeated DELETEs keep
//!    the first timestamp). Without any finalizer it goes at once.
//! 2. The controller loop ([`namespace_finalize_plan`], call it after any change in the
//!    namespace): delete every object that is not already being deleted; report what remains
//!    in `status.conditions` (the five upstream condition types, reasons and messages); once
//!    nothing remains, drop the `kubernetes` finalizer from `spec.finalizers`; once no
//!    finalizer is left at all, remove the namespace.
//! 3. While Terminating, creates in the namespace are refused (403 Forbidden:
//!    [`namespace_terminating_error`]).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::status::ApiError;

/// What `DELETE namespaces/<name>` does.
#[derive(Clone, Debug, PartialEq)]
pub enum NamespaceDelete {
    /// No finalizers: remove it now.
    RemoveNow,
    /// Store this (deletionTimestamp + phase Terminating) and answer 200 with it.
    MarkTerminating(Value),
}

fn has(v: &Value, ptr: &str) -> bool {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// The registry's decision for a DELETE of namespace `ns` at `now` (RFC 3339).
pub fn namespace_delete(ns: &Value, now: &str) -> NamespaceDelete {
    if !has(ns, "/spec/finalizers") && !has(ns, "/metadata/finalizers") {
        return NamespaceDelete::RemoveNow;
    }
    let mut out = ns.clone();
    if out
        .pointer("/metadata/deletionTimestamp")
        .is_none_or(Value::is_null)
    {
        out["metadata"]["deletionTimestamp"] = json!(now);
        out["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    }
    if !out.get("status").is_some_and(Value::is_object) {
        out["status"] = json!({});
    }
    out["status"]["phase"] = json!("Terminating");
    NamespaceDelete::MarkTerminating(out)
}

/// 403 for a create in a terminating namespace, in kube-apiserver's words.
pub fn namespace_terminating_error(
    group: &str,
    resource: &str,
    name: &str,
    namespace: &str,
) -> ApiError {
    let q = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    ApiError::new(
        403,
        "Forbidden",
        format!("{q} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated"),
    )
    .with_details(group, resource, name)
}

/// One object still in the namespace.
pub struct Remaining<'a> {
    pub group: &'a str,
    pub resource: &'a str,
    pub object: &'a Value,
}

/// What the namespace controller does next for a terminating namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceFinalizePlan {
    /// `(group, resource, name)` to DELETE now (objects not yet being deleted).
    pub delete: Vec<(String, String, String)>,
    /// The namespace to write (through `finalize` when `spec.finalizers` changed, else
    /// `status`), when it differs from the stored one.
    pub write: Option<Value>,
    /// Nothing remains and no finalizer is left: remove the namespace from the store.
    pub remove: bool,
}

const CONDITION_TYPES: [&str; 5] = [
    "NamespaceDeletionDiscoveryFailure",
    "NamespaceDeletionGroupVersionParsingFailure",
    "NamespaceDeletionContentFailure",
    "NamespaceContentRemaining",
    "NamespaceFinalizersRemaining",
];

fn ok_condition(t: &str) -> (&'static str, &'static str, &'static str) {
    // (status, reason, message) when all is well.
    match t {
        "NamespaceDeletionDiscoveryFailure" => (
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        "NamespaceDeletionGroupVersionParsingFailure" => (
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        "NamespaceDeletionContentFailure" => (
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        "NamespaceContentRemaining" => (
            "False",
            "ContentRemoved",
            "All content successfully removed",
        ),
        _ => (
            "False",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        ),
    }
}

/// The controller's decision for terminating namespace `ns` given everything still in it.
/// Returns an empty plan for a namespace that is not being deleted.
pub fn namespace_finalize_plan(
    ns: &Value,
    remaining: &[Remaining],
    now: &str,
) -> NamespaceFinalizePlan {
    let mut plan = NamespaceFinalizePlan::default();
    if ns
        .pointer("/metadata/deletionTimestamp")
        .is_none_or(Value::is_null)
    {
        return plan;
    }
    let spec_fins: Vec<Value> = ns
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ours = spec_fins.iter().any(|f| f == "kubernetes");
    let mut new = ns.clone();
    if ours {
        // Count what remains per resource and per finalizer; delete what is not going yet.
        let mut per_resource: BTreeMap<String, usize> = BTreeMap::new();
        let mut per_finalizer: BTreeMap<String, usize> = BTreeMap::new();
        for r in remaining {
            *per_resource
                .entry(format!("{}.{}", r.resource, r.group))
                .or_default() += 1;
            for f in r
                .object
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(f) = f.as_str() {
                    *per_finalizer.entry(f.to_string()).or_default() += 1;
                }
            }
            if r.object
                .pointer("/metadata/deletionTimestamp")
                .is_none_or(Value::is_null)
            {
                let name = r
                    .object
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                plan.delete.push((
                    r.group.to_string(),
                    r.resource.to_string(),
                    name.to_string(),
                ));
            }
        }
        let mut failing: BTreeMap<&str, (String, String)> = BTreeMap::new();
        if !per_resource.is_empty() {
            let list: Vec<String> = per_resource
                .iter()
                .map(|(r, n)| format!("{r} has {n} resource instances"))
                .collect();
            failing.insert(
                "NamespaceContentRemaining",
                (
                    "SomeResourcesRemain".into(),
                    format!("Some resources are remaining: {}", list.join(", ")),
                ),
            );
        }
        if !per_finalizer.is_empty() {
            let list: Vec<String> = per_finalizer
                .iter()
                .map(|(f, n)| format!("{f} in {n} resource instances"))
                .collect();
            failing.insert(
                "NamespaceFinalizersRemaining",
                (
                    "SomeFinalizersRemain".into(),
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        list.join(", ")
                    ),
                ),
            );
        }
        let old_conds: Vec<Value> = ns
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut conds = Vec::new();
        for t in CONDITION_TYPES {
            let (status, reason, message) = match failing.get(t) {
                Some((r, m)) => ("True".to_string(), r.clone(), m.clone()),
                None => {
                    let (s, r, m) = ok_condition(t);
                    (s.to_string(), r.to_string(), m.to_string())
                }
            };
            let old = old_conds
                .iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(t));
            let same = old.is_some_and(|c| {
                c.get("status").and_then(Value::as_str) == Some(status.as_str())
                    && c.get("reason").and_then(Value::as_str) == Some(reason.as_str())
                    && c.get("message").and_then(Value::as_str) == Some(message.as_str())
            });
            conds.push(match (same, old) {
                (true, Some(c)) => c.clone(),
                _ => json!({"type": t, "status": status, "lastTransitionTime": now, "reason": reason, "message": message}),
            });
        }
        new["status"]["conditions"] = Value::Array(conds);
        new["status"]["phase"] = json!("Terminating");
        if remaining.is_empty() {
            let rest: Vec<Value> = spec_fins
                .iter()
                .filter(|f| *f != "kubernetes")
                .cloned()
                .collect();
            new["spec"]["finalizers"] = Value::Array(rest);
        }
    }
    let left = has(&new, "/spec/finalizers") || has(&new, "/metadata/finalizers");
    if remaining.is_empty() && !left {
        plan.remove = true;
    }
    if new != *ns && !plan.remove {
        plan.write = Some(new);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Value {
        json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a"},
            "spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}})
    }

    #[test]
    fn delete_marks_terminating_then_contents_go_then_namespace() {
        let NamespaceDelete::MarkTerminating(t) = namespace_delete(&ns(), "2026-11-25T09:00:00Z")
        else {
            panic!()
        };
        assert_eq!(t["status"]["phase"], "Terminating");
        assert_eq!(t["metadata"]["deletionTimestamp"], "2026-11-25T09:00:00Z");
        let pvc = json!({"metadata":{"name":"c","finalizers":["kubernetes.io/pvc-protection"]}});
        let pod = json!({"metadata":{"name":"p","deletionTimestamp":"2026-11-25T09:00:01Z"}});
        let rem = [
            Remaining {
                group: "",
                resource: "persistentvolumeclaims",
                object: &pvc,
            },
            Remaining {
                group: "",
                resource: "pods",
                object: &pod,
            },
        ];
        let p = namespace_finalize_plan(&t, &rem, "2026-11-25T09:00:02Z");
        assert_eq!(
            p.delete,
            vec![("".into(), "persistentvolumeclaims".into(), "c".into())]
        );
        assert!(!p.remove);
        let w = p.write.unwrap();
        let conds = w["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 5);
        assert_eq!(conds[3]["message"], "Some resources are remaining: persistentvolumeclaims. has 1 resource instances, pods. has 1 resource instances");
        assert_eq!(conds[4]["message"], "Some content in the namespace has finalizers remaining: kubernetes.io/pvc-protection in 1 resource instances");
        assert_eq!(w["spec"]["finalizers"], json!(["kubernetes"]));
        // Everything gone: the finalizer goes, and with no other finalizer the namespace.
        let p = namespace_finalize_plan(&w, &[], "2026-11-25T09:00:03Z");
        assert!(p.remove);
        assert!(p.delete.is_empty());
    }

    #[test]
    fn other_spec_finalizers_keep_the_namespace() {
        let mut n = ns();
        n["spec"]["finalizers"] = json!(["kubernetes", "example.com/x"]);
        let NamespaceDelete::MarkTerminating(t) = namespace_delete(&n, "2026-11-25T09:00:00Z")
        else {
            panic!()
        };
        let p = namespace_finalize_plan(&t, &[], "2026-11-25T09:00:01Z");
        assert!(!p.remove);
        assert_eq!(
            p.write.unwrap()["spec"]["finalizers"],
            json!(["example.com/x"])
        );
    }

    #[test]
    fn no_finalizers_means_immediate_removal() {
        let mut n = ns();
        n["spec"]["finalizers"] = json!([]);
        assert_eq!(namespace_delete(&n, "t"), NamespaceDelete::RemoveNow);
    }
}
