//! The PATCH family through `apiserver::semantics::apply_patch` + `prepare_update`, with the
//! bodies kubectl sends (kubectl-protocol.md §7.9/§7.10) and expected JSON results.
#![allow(clippy::result_large_err)]

use apiserver::semantics::{
    apply_patch, prepare_create, prepare_update, FieldValidation, PatchType, WriteOptions,
};
use apiserver::status::ApiError;
use serde_json::{json, Value};

fn opts(manager: &str, now: &str) -> WriteOptions {
    WriteOptions {
        field_validation: FieldValidation::Strict,
        field_manager: Some(manager.into()),
        user_agent: "kubectl/v1.33.0".into(),
        now: now.into(),
        ..Default::default()
    }
}

fn created(group: &str, resource: &str, mut obj: Value, manager: &str) -> Value {
    prepare_create(
        group,
        resource,
        &mut obj,
        &opts(manager, "2026-11-25T09:00:00Z"),
    )
    .unwrap();
    obj
}

/// PATCH as the HTTP layer runs it: patch, then the update semantics.
fn patch(
    group: &str,
    resource: &str,
    cur: &Value,
    pt: PatchType,
    body: Value,
    manager: &str,
) -> Result<Value, ApiError> {
    let o = opts(manager, "2026-11-25T09:10:00Z");
    let mut new = apply_patch(
        group,
        resource,
        Some(cur),
        pt,
        body.to_string().as_bytes(),
        &o,
    )?;
    prepare_update(group, resource, None, cur, &mut new, &o)?;
    Ok(new)
}

fn pod() -> Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default","labels":{"tier":"gold"}},
        "spec":{"containers":[
            {"name":"a","image":"busybox:1.36","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],
             "ports":[{"containerPort":80}],"volumeMounts":[{"name":"data","mountPath":"/data"}]},
            {"name":"b","image":"busybox:1.36"}],
          "volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"c"}}]}})
}

fn pv() -> Value {
    json!({"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":"local-pv-2","labels":{"type":"local"}},
        "spec":{"capacity":{"storage":"5Gi"},"accessModes":["ReadWriteOnce"],"storageClassName":"local-storage",
            "local":{"path":"/mnt/disks/vol2"},
            "nodeAffinity":{"required":{"nodeSelectorTerms":[{"matchExpressions":[
                {"key":"kubernetes.io/hostname","operator":"In","values":["node-1"]}]}]}}}})
}

#[test]
fn client_side_apply_changed_manifest_then_field_removed() {
    // kubectl apply: POST with the last-applied annotation, then three-way SMPs.
    let mut manifest = pv();
    manifest["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration":"{...}\n"});
    let live = created(
        "",
        "persistentvolumes",
        manifest,
        "kubectl-client-side-apply",
    );
    let p1 = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{v2}\n"},"labels":{"tier":"gold"}}});
    let live2 = patch(
        "",
        "persistentvolumes",
        &live,
        PatchType::StrategicMerge,
        p1,
        "kubectl-client-side-apply",
    )
    .unwrap();
    assert_eq!(
        live2["metadata"]["labels"],
        json!({"type":"local","tier":"gold"})
    );
    let p2 = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{v3}\n"},"labels":{"tier":null}}});
    let live3 = patch(
        "",
        "persistentvolumes",
        &live2,
        PatchType::StrategicMerge,
        p2,
        "kubectl-client-side-apply",
    )
    .unwrap();
    assert_eq!(live3["metadata"]["labels"], json!({"type":"local"}));
    assert_eq!(
        live3["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{v3}\n"
    );
    // One manager still owns everything it wrote; the removed label is gone from its set.
    let mf = &live3["metadata"]["managedFields"];
    assert_eq!(mf.as_array().unwrap().len(), 1);
    assert!(mf[0]["fieldsV1"]["f:metadata"]["f:labels"]
        .get("f:tier")
        .is_none());
    assert!(mf[0]["fieldsV1"]["f:metadata"]["f:labels"]
        .get("f:type")
        .is_some());
}

#[test]
fn strategic_merge_set_element_order_and_delete_env_by_name() {
    // The three-way patch kubectl apply sends after an env var and a label left the manifest.
    let live = created("", "pods", pod(), "kubectl-client-side-apply");
    let p = json!({"metadata":{"labels":{"tier":null}},
        "spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"b"}],
            "containers":[{"$setElementOrder/env":[{"name":"A"}],"env":[{"$patch":"delete","name":"B"}],"image":"busybox:1.37","name":"a"},
                          {"image":"busybox:1.37","name":"b"}]}});
    let o = opts("kubectl-client-side-apply", "2026-11-25T09:10:00Z");
    let new = apply_patch(
        "",
        "pods",
        Some(&live),
        PatchType::StrategicMerge,
        p.to_string().as_bytes(),
        &o,
    )
    .unwrap();
    assert!(new["metadata"]
        .get("labels")
        .is_none_or(|l| l.get("tier").is_none()));
    let c = &new["spec"]["containers"];
    assert_eq!(c[0]["name"], "a");
    assert_eq!(c[0]["image"], "busybox:1.37");
    assert_eq!(c[0]["env"], json!([{"name":"A","value":"1"}]));
    assert_eq!(
        c[0]["ports"],
        json!([{"containerPort":80,"protocol":"TCP"}]),
        "untouched lists stay"
    );
    assert_eq!(c[1]["image"], "busybox:1.37");
    // A pod's env is immutable, so kube-apiserver refuses this update…
    let mut rejected = new.clone();
    let e = prepare_update("", "pods", None, &live, &mut rejected, &o).unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(e.causes[0].field, "spec");
    // …while the image-only part of it is a legal pod update that bumps the generation.
    let images = json!({"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"b"}],
        "containers":[{"image":"busybox:1.37","name":"a"},{"image":"busybox:1.37","name":"b"}]}});
    let ok = patch(
        "",
        "pods",
        &live,
        PatchType::StrategicMerge,
        images,
        "kubectl-client-side-apply",
    )
    .unwrap();
    assert_eq!(ok["spec"]["containers"][1]["image"], "busybox:1.37");
    assert_eq!(ok["metadata"]["generation"], 2);
}

#[test]
fn strategic_merge_set_element_order_reorders() {
    let live = created("", "pods", pod(), "x");
    let p = json!({"spec":{"$setElementOrder/containers":[{"name":"b"},{"name":"a"}],"containers":[{"name":"b","image":"busybox:1.37"}]}});
    let mut new = live.clone();
    apiserver::semantics::patch::strategic_merge(&mut new, &p).unwrap();
    let names: Vec<&str> = new["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["b", "a"]);
}

#[test]
fn strategic_merge_lists_by_merge_key() {
    let mut doc = json!({"spec":{"containers":[{"name":"a","ports":[{"containerPort":80,"name":"http"}],
        "volumeMounts":[{"name":"v","mountPath":"/a"},{"name":"v","mountPath":"/b"}]}],
        "volumes":[{"name":"v","emptyDir":{}}]}});
    let p = json!({"spec":{"containers":[{"name":"a","ports":[{"containerPort":80,"name":"web"},{"containerPort":443}],
        "volumeMounts":[{"mountPath":"/b","readOnly":true}]}],"volumes":[{"name":"w","emptyDir":{}}]}});
    apiserver::semantics::patch::strategic_merge(&mut doc, &p).unwrap();
    assert_eq!(
        doc,
        json!({"spec":{"containers":[{"name":"a","ports":[{"containerPort":80,"name":"web"},{"containerPort":443}],
            "volumeMounts":[{"name":"v","mountPath":"/a"},{"name":"v","mountPath":"/b","readOnly":true}]}],
            // New items of a merge list come first (upstream's normalizeElementOrder).
            "volumes":[{"name":"w","emptyDir":{}},{"name":"v","emptyDir":{}}]}})
    );
}

#[test]
fn strategic_merge_retain_keys_switches_volume_source() {
    let mut doc =
        json!({"spec":{"volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"c"}}]}});
    let p = json!({"spec":{"volumes":[{"$retainKeys":["emptyDir","name"],"emptyDir":{},"name":"data"}]}});
    apiserver::semantics::patch::strategic_merge(&mut doc, &p).unwrap();
    assert_eq!(
        doc,
        json!({"spec":{"volumes":[{"name":"data","emptyDir":{}}]}})
    );
}

#[test]
fn strategic_merge_finalizers_are_a_set_tolerations_and_node_selector_terms_replace() {
    let mut doc = json!({"metadata":{"finalizers":["a/x","b/y"]},
        "spec":{"tolerations":[{"key":"k1","operator":"Exists"}],
            "nodeAffinity":{"required":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"a","operator":"Exists"}]}]}}}});
    let p = json!({"metadata":{"finalizers":["c/z","a/x"]},"spec":{"tolerations":[{"key":"k2","operator":"Exists"}],
        "nodeAffinity":{"required":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"b","operator":"Exists"}]}]}}}});
    apiserver::semantics::patch::strategic_merge(&mut doc, &p).unwrap();
    // Union, in patch order, live-only values placed by their live position.
    assert_eq!(doc["metadata"]["finalizers"], json!(["c/z", "a/x", "b/y"]));
    assert_eq!(
        doc["spec"]["tolerations"],
        json!([{"key":"k2","operator":"Exists"}])
    );
    assert_eq!(
        doc["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"],
        json!([{"matchExpressions":[{"key":"b","operator":"Exists"}]}])
    );
}

#[test]
fn strategic_merge_delete_from_primitive_list_and_patch_replace_and_delete_directives() {
    let mut doc = json!({"metadata":{"finalizers":["a/x","b/y"],"labels":{"a":"1","b":"2"}},"spec":{"affinity":{"x":1},"containers":[{"name":"a"},{"name":"b"}]}});
    let p = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a/x"],"labels":{"$patch":"replace","c":"3"}},
        "spec":{"affinity":{"$patch":"delete"},"containers":[{"name":"z"},{"$patch":"replace"}]}});
    apiserver::semantics::patch::strategic_merge(&mut doc, &p).unwrap();
    assert_eq!(
        doc,
        json!({"metadata":{"finalizers":["b/y"],"labels":{"c":"3"}},"spec":{"containers":[{"name":"z"}]}})
    );
}

#[test]
fn kubectl_label_and_annotate_merge_patches_record_their_managers() {
    let live = created("", "persistentvolumes", pv(), "kubectl-create");
    let l = patch(
        "",
        "persistentvolumes",
        &live,
        PatchType::Merge,
        json!({"metadata":{"labels":{"env":"prod"}}}),
        "kubectl-label",
    )
    .unwrap();
    assert_eq!(
        l["metadata"]["labels"],
        json!({"type":"local","env":"prod"})
    );
    let a = patch(
        "",
        "persistentvolumes",
        &l,
        PatchType::Merge,
        json!({"metadata":{"annotations":{"note":"x"}}}),
        "kubectl-annotate",
    )
    .unwrap();
    let mf = a["metadata"]["managedFields"].as_array().unwrap();
    let by = |m: &str| mf.iter().find(|e| e["manager"] == m).cloned().unwrap();
    assert_eq!(
        by("kubectl-label")["fieldsV1"],
        json!({"f:metadata":{"f:labels":{"f:env":{}}}})
    );
    assert_eq!(
        by("kubectl-annotate")["fieldsV1"],
        json!({"f:metadata":{"f:annotations":{".":{},"f:note":{}}}})
    );
    assert_eq!(by("kubectl-annotate")["time"], "2026-11-25T09:10:00Z");
    // `kubectl label env-` sends null.
    let r = patch(
        "",
        "persistentvolumes",
        &a,
        PatchType::Merge,
        json!({"metadata":{"labels":{"env":null}}}),
        "kubectl-label",
    )
    .unwrap();
    assert_eq!(r["metadata"]["labels"], json!({"type":"local"}));
    assert!(
        r["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["manager"] != "kubectl-label"),
        "empty entries are dropped"
    );
}

#[test]
fn kubectl_patch_json_with_test_op() {
    let live = created("", "persistentvolumes", pv(), "kubectl-create");
    let ok = patch("", "persistentvolumes", &live, PatchType::Json,
        json!([{"op":"test","path":"/spec/storageClassName","value":"local-storage"},{"op":"replace","path":"/spec/storageClassName","value":"fast"}]),
        "kubectl-patch").unwrap();
    assert_eq!(ok["spec"]["storageClassName"], "fast");
    let e = patch(
        "",
        "persistentvolumes",
        &live,
        PatchType::Json,
        json!([{"op":"test","path":"/spec/storageClassName","value":"nope"}]),
        "kubectl-patch",
    )
    .unwrap_err();
    assert_eq!(e.code, 422);
    // kube-apiserver's generic 422 keeps none of the json-patch text.
    assert_eq!(e.reason, "Invalid");
    assert_eq!(
        e.message,
        "the server rejected our request due to an error in our request"
    );
}

#[test]
fn patch_with_unknown_field_is_rejected_strict_as_the_patcher_does() {
    let live = created("", "persistentvolumes", pv(), "kubectl-create");
    let e = patch(
        "",
        "persistentvolumes",
        &live,
        PatchType::StrategicMerge,
        json!({"spec":{"colour":"red"}}),
        "kubectl-edit",
    )
    .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(e.reason, "Invalid");
    assert_eq!(
        e.message,
        " \"\" is invalid: patch: Invalid value: \"map[spec:map[colour:red]]\": strict decoding error: unknown field \"spec.colour\""
    );
    assert_eq!(e.causes[0].field, "patch");
    // A merge patch shows the patched document instead.
    let e = patch(
        "",
        "persistentvolumes",
        &live,
        PatchType::Merge,
        json!({"spec":{"colour":"red"}}),
        "kubectl-patch",
    )
    .unwrap_err();
    assert_eq!(e.code, 422);
    assert!(
        e.causes[0]
            .message
            .starts_with("Invalid value: \"{\\\"apiVersion\\\":"),
        "{}",
        e.causes[0].message
    );
    assert!(e.causes[0]
        .message
        .ends_with("strict decoding error: unknown field \"spec.colour\""));
    // Warn: the field is dropped with a warning.
    let mut o = opts("kubectl-patch", "2026-11-25T09:10:00Z");
    o.field_validation = FieldValidation::Warn;
    let mut new = apply_patch(
        "",
        "persistentvolumes",
        Some(&live),
        PatchType::Merge,
        br#"{"spec":{"colour":"red"}}"#,
        &o,
    )
    .unwrap();
    let w = prepare_update("", "persistentvolumes", None, &live, &mut new, &o).unwrap();
    assert_eq!(w, vec!["unknown field \"spec.colour\"".to_string()]);
    assert!(new["spec"].get("colour").is_none());
}

#[test]
fn patch_that_breaks_validation_is_422() {
    let live = created(
        "storage.k8s.io",
        "storageclasses",
        json!({"apiVersion":"storage.k8s.io/v1","kind":"StorageClass","metadata":{"name":"s"},"provisioner":"kubernetes.io/no-provisioner"}),
        "kubectl-create",
    );
    let e = patch(
        "storage.k8s.io",
        "storageclasses",
        &live,
        PatchType::Merge,
        json!({"parameters":{"x":"y"}}),
        "kubectl-patch",
    )
    .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(e.message, "StorageClass.storage.k8s.io \"s\" is invalid: parameters: Forbidden: updates to parameters are forbidden.");
}

#[test]
fn kubectl_edit_two_way_patch_keeps_defaults_and_status() {
    let live = created(
        "",
        "persistentvolumeclaims",
        json!({"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"c","namespace":"default"},
            "spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}),
        "kubectl-create",
    );
    let e = patch(
        "",
        "persistentvolumeclaims",
        &live,
        PatchType::StrategicMerge,
        json!({"metadata":{"labels":{"type":"edited"}}}),
        "kubectl-edit",
    )
    .unwrap();
    assert_eq!(e["metadata"]["labels"], json!({"type":"edited"}));
    assert_eq!(e["spec"]["volumeMode"], "Filesystem");
    assert_eq!(e["status"]["phase"], "Pending");
}
