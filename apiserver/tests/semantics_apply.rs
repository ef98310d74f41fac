//! Server-side apply and managedFields through `apiserver::semantics`, as the HTTP layer
//! drives them: `apply_patch(.., Apply, ..)` then `prepare_create` / `prepare_update`.
#![allow(clippy::result_large_err)]

use apiserver::semantics::{
    apply_patch, prepare_create, prepare_update, FieldValidation, PatchType, WriteOptions,
};
use apiserver::status::ApiError;
use serde_json::{json, Value};

fn opts(manager: &str, now: &str, force: bool) -> WriteOptions {
    WriteOptions {
        field_validation: FieldValidation::Strict,
        field_manager: Some(manager.into()),
        user_agent: "kubectl/v1.33.0".into(),
        now: now.into(),
        force,
        ..Default::default()
    }
}

/// `kubectl apply --server-side [--force-conflicts] --field-manager=<manager>`.
fn ssa(
    cur: Option<&Value>,
    config: &Value,
    manager: &str,
    now: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let o = opts(manager, now, force);
    let mut new = apply_patch(
        "",
        "persistentvolumes",
        cur,
        PatchType::Apply,
        config.to_string().as_bytes(),
        &o,
    )?;
    match cur {
        None => prepare_create("", "persistentvolumes", &mut new, &o)?,
        Some(c) => prepare_update("", "persistentvolumes", None, c, &mut new, &o)?,
    };
    Ok(new)
}

fn manifest() -> Value {
    json!({"apiVersion":"v1","kind":"PersistentVolume","metadata":{"labels":{"type":"local"},"name":"local-pv-3"},
        "spec":{"capacity":{"storage":"5Gi"},"accessModes":["ReadWriteOnce"],"storageClassName":"local-storage",
            "local":{"path":"/mnt/disks/vol3"},
            "nodeAffinity":{"required":{"nodeSelectorTerms":[{"matchExpressions":[
                {"key":"kubernetes.io/hostname","operator":"In","values":["node-1"]}]}]}}}})
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap().to_string(),
                        e["operation"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .expect("entry")
}

#[test]
fn apply_creates_absent_object_owning_exactly_its_configuration() {
    let pv = ssa(None, &manifest(), "kubectl", "2026-11-25T09:00:00Z", false).unwrap();
    assert_eq!(
        pv["spec"]["persistentVolumeReclaimPolicy"], "Retain",
        "defaults still apply"
    );
    assert_eq!(pv["status"]["phase"], "Pending");
    assert_eq!(
        managers(&pv),
        vec![("kubectl".to_string(), "Apply".to_string())]
    );
    assert_eq!(
        entry(&pv, "kubectl")["fieldsV1"],
        json!({"f:metadata":{"f:labels":{"f:type":{}}},
            "f:spec":{"f:accessModes":{},"f:capacity":{"f:storage":{}},"f:local":{"f:path":{}},
                "f:nodeAffinity":{"f:required":{}},"f:storageClassName":{}}})
    );
    assert_eq!(entry(&pv, "kubectl")["time"], "2026-11-25T09:00:00Z");
    assert_eq!(entry(&pv, "kubectl")["apiVersion"], "v1");
}

#[test]
fn apply_twice_is_stable() {
    let a = ssa(None, &manifest(), "kubectl", "2026-11-25T09:00:00Z", false).unwrap();
    let b = ssa(
        Some(&a),
        &manifest(),
        "kubectl",
        "2026-11-25T09:01:00Z",
        false,
    )
    .unwrap();
    assert_eq!(a["spec"], b["spec"]);
    assert_eq!(
        managers(&b),
        vec![("kubectl".to_string(), "Apply".to_string())]
    );
    assert_eq!(
        entry(&a, "kubectl")["fieldsV1"],
        entry(&b, "kubectl")["fieldsV1"]
    );
}

#[test]
fn apply_conflict_with_client_side_apply_manager_is_409_like_kube_apiserver() {
    let mut created = manifest();
    let o = opts("kubectl-client-side-apply", "2026-11-25T09:00:00Z", false);
    prepare_create("", "persistentvolumes", &mut created, &o).unwrap();
    let mut changed = manifest();
    changed["spec"]["capacity"]["storage"] = json!("10Gi");
    let e = ssa(
        Some(&created),
        &changed,
        "kubectl",
        "2026-11-25T09:05:00Z",
        false,
    )
    .unwrap_err();
    assert_eq!(e.code, 409);
    assert_eq!(e.reason, "Conflict");
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .spec.capacity.storage"
    );
    assert_eq!(e.causes.len(), 1);
    assert_eq!(e.causes[0].reason, "FieldManagerConflict");
    assert_eq!(
        e.causes[0].message,
        "conflict with \"kubectl-client-side-apply\" using v1"
    );
    assert_eq!(e.causes[0].field, ".spec.capacity.storage");
    assert!(e.name.is_none() && e.kind.is_none());
}

#[test]
fn apply_several_conflicts_are_grouped_by_manager() {
    let mut created = manifest();
    prepare_create(
        "",
        "persistentvolumes",
        &mut created,
        &opts("kubectl-create", "2026-11-25T09:00:00Z", false),
    )
    .unwrap();
    let mut changed = manifest();
    changed["spec"]["capacity"]["storage"] = json!("10Gi");
    changed["spec"]["storageClassName"] = json!("fast");
    let e = ssa(
        Some(&created),
        &changed,
        "kubectl",
        "2026-11-25T09:05:00Z",
        false,
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "Apply failed with 2 conflicts: conflicts with \"kubectl-create\" using v1:\n- .spec.capacity.storage\n- .spec.storageClassName"
    );
}

#[test]
fn apply_force_conflicts_takes_ownership() {
    let mut created = manifest();
    prepare_create(
        "",
        "persistentvolumes",
        &mut created,
        &opts("kubectl-client-side-apply", "2026-11-25T09:00:00Z", false),
    )
    .unwrap();
    let mut changed = manifest();
    changed["spec"]["capacity"]["storage"] = json!("10Gi");
    let pv = ssa(
        Some(&created),
        &changed,
        "kubectl",
        "2026-11-25T09:05:00Z",
        true,
    )
    .unwrap();
    assert_eq!(pv["spec"]["capacity"]["storage"], "10Gi");
    let csa = &entry(&pv, "kubectl-client-side-apply")["fieldsV1"]["f:spec"];
    assert!(
        csa["f:capacity"].get("f:storage").is_none(),
        "the old owner lost the field: {csa}"
    );
    assert!(entry(&pv, "kubectl")["fieldsV1"]["f:spec"]["f:capacity"]
        .get("f:storage")
        .is_some());
    // Same values are shared, not conflicts: both still own storageClassName.
    assert!(csa.get("f:storageClassName").is_some());
}

#[test]
fn apply_removes_fields_the_manager_stopped_applying_unless_someone_else_owns_them() {
    let mut cfg = manifest();
    cfg["metadata"]["labels"]["tier"] = json!("gold");
    cfg["spec"]["mountOptions"] = json!(["ro"]);
    let a = ssa(None, &cfg, "kubectl", "2026-11-25T09:00:00Z", false).unwrap();
    // Another manager also sets tier=gold (shared ownership).
    let other = json!({"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"local-pv-3","labels":{"tier":"gold"}}});
    let b = ssa(Some(&a), &other, "ops", "2026-11-25T09:01:00Z", false).unwrap();
    // kubectl drops tier and mountOptions from its manifest.
    let c = ssa(
        Some(&b),
        &manifest(),
        "kubectl",
        "2026-11-25T09:02:00Z",
        false,
    )
    .unwrap();
    assert_eq!(
        c["metadata"]["labels"],
        json!({"type":"local","tier":"gold"}),
        "tier is still owned by ops"
    );
    assert!(
        c["spec"].get("mountOptions").is_none(),
        "mountOptions had no other owner"
    );
    // When ops stops too, tier goes.
    let d = ssa(
        Some(&c),
        &json!({"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"local-pv-3"}}),
        "ops",
        "2026-11-25T09:03:00Z",
        false,
    )
    .unwrap();
    assert_eq!(d["metadata"]["labels"], json!({"type":"local"}));
}

#[test]
fn update_by_another_manager_takes_fields_then_reapply_conflicts() {
    let a = ssa(None, &manifest(), "kubectl", "2026-11-25T09:00:00Z", false).unwrap();
    // kubectl edit changes the class (a strategic merge patch: operation Update).
    let o = opts("kubectl-edit", "2026-11-25T09:01:00Z", false);
    let mut edited = apply_patch(
        "",
        "persistentvolumes",
        Some(&a),
        PatchType::StrategicMerge,
        br#"{"spec":{"storageClassName":"fast"}}"#,
        &o,
    )
    .unwrap();
    prepare_update("", "persistentvolumes", None, &a, &mut edited, &o).unwrap();
    assert_eq!(
        managers(&edited),
        vec![
            ("kubectl".to_string(), "Apply".to_string()),
            ("kubectl-edit".to_string(), "Update".to_string())
        ]
    );
    assert_eq!(
        entry(&edited, "kubectl-edit")["fieldsV1"],
        json!({"f:spec":{"f:storageClassName":{}}})
    );
    assert!(entry(&edited, "kubectl")["fieldsV1"]["f:spec"]
        .get("f:storageClassName")
        .is_none());
    let e = ssa(
        Some(&edited),
        &manifest(),
        "kubectl",
        "2026-11-25T09:02:00Z",
        false,
    )
    .unwrap_err();
    assert_eq!(e.message, "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using v1: .spec.storageClassName");
}

#[test]
fn apply_merges_associative_lists_by_key() {
    let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},
        "spec":{"containers":[{"name":"a","image":"busybox:1.37"}]}});
    let o = opts("kubectl", "2026-11-25T09:00:00Z", false);
    let mut p = apply_patch(
        "",
        "pods",
        None,
        PatchType::Apply,
        pod.to_string().as_bytes(),
        &o,
    )
    .unwrap();
    prepare_create("", "pods", &mut p, &o).unwrap();
    assert_eq!(
        entry(&p, "kubectl")["fieldsV1"],
        json!({"f:spec":{"f:containers":{"k:{\"name\":\"a\"}":{".":{},"f:image":{},"f:name":{}}}}})
    );
    // A sidecar manager applies its own container; the first stays.
    let side = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},
        "spec":{"containers":[{"name":"b","image":"busybox:1.37"}]}});
    let o2 = opts("sidecar", "2026-11-25T09:01:00Z", false);
    let merged = apply_patch(
        "",
        "pods",
        Some(&p),
        PatchType::Apply,
        side.to_string().as_bytes(),
        &o2,
    )
    .unwrap();
    let names: Vec<&str> = merged["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
}

#[test]
fn apply_requires_field_manager_and_rejects_unknown_fields_in_any_mode() {
    let mut o = opts("kubectl", "2026-11-25T09:00:00Z", false);
    o.field_manager = None;
    let e = apply_patch(
        "",
        "persistentvolumes",
        None,
        PatchType::Apply,
        manifest().to_string().as_bytes(),
        &o,
    )
    .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(e.message, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
    let mut cfg = manifest();
    cfg["spec"]["colour"] = json!("red");
    let e = ssa(None, &cfg, "kubectl", "2026-11-25T09:00:00Z", false).unwrap_err();
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "failed to create typed patch object (/local-pv-3; /v1, Kind=PersistentVolume): .spec.colour: field not declared in schema"
    );
    // The typed converter is strict whatever fieldValidation says.
    let mut lax = opts("kubectl", "2026-11-25T09:00:00Z", false);
    lax.field_validation = FieldValidation::Ignore;
    assert!(apply_patch(
        "",
        "persistentvolumes",
        None,
        PatchType::Apply,
        cfg.to_string().as_bytes(),
        &lax
    )
    .is_err());
    // List items are named by their keys.
    let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},
        "spec":{"containers":[{"name":"a","image":"i","colour":"red"}]}});
    let e = apply_patch(
        "",
        "pods",
        None,
        PatchType::Apply,
        pod.to_string().as_bytes(),
        &opts("kubectl", "", false),
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "failed to create typed patch object (default/p; /v1, Kind=Pod): .spec.containers[name=\"a\"].colour: field not declared in schema"
    );
    // Version and managedFields checks.
    let mut v2 = manifest();
    v2["apiVersion"] = json!("v2");
    let e = ssa(None, &v2, "kubectl", "", false).unwrap_err();
    assert_eq!(
        e.message,
        "Incorrect version specified in apply patch. Specified patch version: v2, expected: v1"
    );
    let mut mf = manifest();
    mf["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        ssa(None, &mf, "kubectl", "", false).unwrap_err().message,
        "metadata.managedFields must be nil"
    );
}

#[test]
fn apply_body_may_be_yaml() {
    let yaml = "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: local-pv-3\nspec:\n  capacity:\n    storage: 5Gi\n  accessModes: [ReadWriteOnce]\n  hostPath:\n    path: /tmp/x\n";
    let o = opts("kubectl", "2026-11-25T09:00:00Z", false);
    let mut pv = apply_patch(
        "",
        "persistentvolumes",
        None,
        PatchType::Apply,
        yaml.as_bytes(),
        &o,
    )
    .unwrap();
    prepare_create("", "persistentvolumes", &mut pv, &o).unwrap();
    assert_eq!(pv["spec"]["hostPath"], json!({"path":"/tmp/x","type":""}));
}

#[test]
fn user_supplied_managed_fields_replace_the_stored_ones() {
    // kubectl's client-side → server-side apply migration rewrites managedFields with a
    // JSON patch; kube-apiserver honours such an explicit change.
    let mut created = manifest();
    prepare_create(
        "",
        "persistentvolumes",
        &mut created,
        &opts("kubectl-client-side-apply", "2026-11-25T09:00:00Z", false),
    )
    .unwrap();
    let mut mf = created["metadata"]["managedFields"].clone();
    mf[0]["manager"] = json!("kubectl");
    mf[0]["operation"] = json!("Apply");
    let ops = json!([{"op":"replace","path":"/metadata/managedFields","value":mf}]);
    let o = opts("kubectl", "2026-11-25T09:01:00Z", false);
    let mut migrated = apply_patch(
        "",
        "persistentvolumes",
        Some(&created),
        PatchType::Json,
        ops.to_string().as_bytes(),
        &o,
    )
    .unwrap();
    prepare_update("", "persistentvolumes", None, &created, &mut migrated, &o).unwrap();
    assert_eq!(
        managers(&migrated),
        vec![("kubectl".to_string(), "Apply".to_string())]
    );
    // Now a server-side apply of a changed value by kubectl has no conflict.
    let mut changed = manifest();
    changed["spec"]["capacity"]["storage"] = json!("10Gi");
    let pv = ssa(
        Some(&migrated),
        &changed,
        "kubectl",
        "2026-11-25T09:02:00Z",
        false,
    )
    .unwrap();
    assert_eq!(pv["spec"]["capacity"]["storage"], "10Gi");
}

#[test]
fn apply_to_an_unmanaged_object_conflicts_with_before_first_apply() {
    // Written around field management (no managedFields at all).
    let mut live = manifest();
    prepare_create(
        "",
        "persistentvolumes",
        &mut live,
        &opts("x", "2026-11-25T09:00:00Z", false),
    )
    .unwrap();
    live["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let mut changed = manifest();
    changed["spec"]["storageClassName"] = json!("fast");
    let e = ssa(
        Some(&live),
        &changed,
        "kubectl",
        "2026-11-25T09:01:00Z",
        false,
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using v1: .spec.storageClassName"
    );
    let ok = ssa(
        Some(&live),
        &manifest(),
        "kubectl",
        "2026-11-25T09:01:00Z",
        false,
    )
    .unwrap();
    assert_eq!(
        managers(&ok),
        vec![
            ("kubectl".to_string(), "Apply".to_string()),
            ("before-first-apply".to_string(), "Update".to_string())
        ]
    );
}

#[test]
fn update_managers_are_capped_at_ten_with_ancient_changes() {
    let mut pv = manifest();
    prepare_create(
        "",
        "persistentvolumes",
        &mut pv,
        &opts("creator", "2026-11-25T09:00:00Z", false),
    )
    .unwrap();
    for i in 0..12 {
        let o = opts(
            &format!("labeler-{i:02}"),
            &format!("2026-11-25T09:{:02}:00Z", i + 1),
            false,
        );
        let body = json!({"metadata":{"labels":{format!("l{i}"): "x"}}}).to_string();
        let mut new = apply_patch(
            "",
            "persistentvolumes",
            Some(&pv),
            PatchType::Merge,
            body.as_bytes(),
            &o,
        )
        .unwrap();
        prepare_update("", "persistentvolumes", None, &pv, &mut new, &o).unwrap();
        pv = new;
    }
    let m = managers(&pv);
    assert_eq!(m.len(), 10, "{m:?}");
    assert_eq!(m[0].0, "ancient-changes", "{m:?}");
    let ancient = entry(&pv, "ancient-changes");
    // The creator's fields and the two oldest labelers' labels live on in the bucket.
    assert!(ancient["fieldsV1"]["f:spec"].get("f:capacity").is_some());
    assert!(ancient["fieldsV1"]["f:metadata"]["f:labels"]
        .get("f:l0")
        .is_some());
    assert!(ancient["fieldsV1"]["f:metadata"]["f:labels"]
        .get("f:l1")
        .is_some());
}

#[test]
fn a_write_that_changes_nothing_keeps_the_managers_timestamp() {
    let mut pv = manifest();
    prepare_create(
        "",
        "persistentvolumes",
        &mut pv,
        &opts("kubectl-create", "2026-11-25T09:00:00Z", false),
    )
    .unwrap();
    let o = opts("kubectl-create", "2026-11-25T10:00:00Z", false);
    let mut same = pv.clone();
    prepare_update("", "persistentvolumes", None, &pv, &mut same, &o).unwrap();
    assert_eq!(
        entry(&same, "kubectl-create")["time"],
        "2026-11-25T09:00:00Z"
    );
}

#[test]
fn managed_fields_empty_list_keeps_ownership_and_single_empty_entry_resets_it() {
    let mut pv = manifest();
    prepare_create(
        "",
        "persistentvolumes",
        &mut pv,
        &opts("kubectl-create", "2026-11-25T09:00:00Z", false),
    )
    .unwrap();
    let o = opts("kubectl-edit", "2026-11-25T09:01:00Z", false);
    let mut empty = pv.clone();
    empty["metadata"]["managedFields"] = json!([]);
    prepare_update("", "persistentvolumes", None, &pv, &mut empty, &o).unwrap();
    assert_eq!(
        managers(&empty),
        vec![("kubectl-create".to_string(), "Update".to_string())]
    );
    let mut reset = pv.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    reset["metadata"]["labels"]["new"] = json!("x");
    prepare_update("", "persistentvolumes", None, &pv, &mut reset, &o).unwrap();
    assert!(
        reset["metadata"].get("managedFields").is_none(),
        "{}",
        reset["metadata"]
    );
}
