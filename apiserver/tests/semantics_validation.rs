//! Validation, defaulting and unknown-field handling of `apiserver::semantics`, one test per
//! rule, with kube-apiserver v1.33's messages and field paths.
#![allow(clippy::result_large_err)]

use apiserver::semantics::{prepare_create, prepare_update, FieldValidation, WriteOptions};
use apiserver::status::ApiError;
use serde_json::{json, Value};

const NOW: &str = "2026-11-25T09:00:00Z";

fn opts(fv: FieldValidation) -> WriteOptions {
    WriteOptions {
        field_validation: fv,
        field_manager: Some("kubectl-create".into()),
        user_agent: "kubectl/v1.33.0 (linux/amd64) kubernetes/abc".into(),
        now: NOW.into(),
        ..Default::default()
    }
}

fn create(group: &str, resource: &str, mut obj: Value) -> Result<(Value, Vec<String>), ApiError> {
    let w = prepare_create(group, resource, &mut obj, &opts(FieldValidation::Strict))?;
    Ok((obj, w))
}

fn create_err(group: &str, resource: &str, obj: Value) -> ApiError {
    create(group, resource, obj).expect_err("must be rejected")
}

fn causes(e: &ApiError) -> Vec<(String, String, String)> {
    e.causes
        .iter()
        .map(|c| (c.reason.clone(), c.field.clone(), c.message.clone()))
        .collect()
}

fn local_pv(name: &str) -> Value {
    json!({"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":name,"labels":{"type":"local"}},
        "spec":{"capacity":{"storage":"5Gi"},"accessModes":["ReadWriteOnce"],"storageClassName":"local-storage",
            "local":{"path":"/mnt/disks/vol1"},
            "nodeAffinity":{"required":{"nodeSelectorTerms":[{"matchExpressions":[
                {"key":"kubernetes.io/hostname","operator":"In","values":["node-1"]}]}]}}}})
}

fn pvc(name: &str) -> Value {
    json!({"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":name,"namespace":"default"},
        "spec":{"accessModes":["ReadWriteOnce"],"storageClassName":"local-storage",
            "resources":{"requests":{"storage":"1Gi"}}}})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":name,"namespace":"default"},
        "spec":{"containers":[{"name":"app","image":"busybox:1.37","command":["sleep","3600"],
            "volumeMounts":[{"name":"data","mountPath":"/data"}]}],
            "volumes":[{"name":"data","persistentVolumeClaim":{"claimName":"c"}}]}})
}

// ------------------------------------------------------------------ PersistentVolume

#[test]
fn pv_defaults_reclaim_retain_volume_mode_filesystem_status_pending_and_protection_finalizer() {
    let (pv, w) = create("", "persistentvolumes", local_pv("local-pv-1")).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
    assert_eq!(
        pv["status"],
        json!({"phase":"Pending","lastPhaseTransitionTime":NOW})
    );
    assert_eq!(
        pv["metadata"]["finalizers"],
        json!(["kubernetes.io/pv-protection"])
    );
    assert!(
        pv["metadata"].get("generation").is_none(),
        "PVs carry no generation in kube-apiserver"
    );
}

#[test]
fn pv_create_records_managed_fields_like_kubectl_create() {
    let (pv, _) = create("", "persistentvolumes", local_pv("local-pv-1")).unwrap();
    assert_eq!(
        pv["metadata"]["managedFields"],
        json!([{"manager":"kubectl-create","operation":"Update","apiVersion":"v1","time":NOW,"fieldsType":"FieldsV1",
            "fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:type":{}}},
                "f:spec":{"f:accessModes":{},"f:capacity":{".":{},"f:storage":{}},"f:local":{".":{},"f:path":{}},
                    "f:nodeAffinity":{".":{},"f:required":{}},"f:persistentVolumeReclaimPolicy":{},
                    "f:storageClassName":{},"f:volumeMode":{}}}}])
    );
}

#[test]
fn pv_local_without_node_affinity_is_422_required() {
    let mut pv = local_pv("local-pv-1");
    pv["spec"].as_object_mut().unwrap().remove("nodeAffinity");
    let e = create_err("", "persistentvolumes", pv);
    assert_eq!(e.code, 422);
    assert_eq!(e.reason, "Invalid");
    assert_eq!(
        e.message,
        "PersistentVolume \"local-pv-1\" is invalid: spec.nodeAffinity: Required value: Local volume requires node affinity"
    );
    assert_eq!(e.kind.as_deref(), Some("PersistentVolume"));
    assert_eq!(
        causes(&e),
        vec![(
            "FieldValueRequired".into(),
            "spec.nodeAffinity".into(),
            "Required value: Local volume requires node affinity".into()
        )]
    );
}

#[test]
fn pv_bad_name_and_missing_capacity_list_every_cause() {
    let mut pv = local_pv("Bad_Name");
    pv["spec"].as_object_mut().unwrap().remove("capacity");
    let e = create_err("", "persistentvolumes", pv);
    let c = causes(&e);
    assert_eq!(c[0].0, "FieldValueInvalid");
    assert_eq!(c[0].1, "metadata.name");
    assert!(
        c[0].2.starts_with(
            "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of"
        ),
        "{}",
        c[0].2
    );
    assert_eq!(
        c[1],
        (
            "FieldValueRequired".into(),
            "spec.capacity".into(),
            "Required value".into()
        )
    );
    assert_eq!(c[2].0, "FieldValueNotSupported");
    assert_eq!(
        c[2].2,
        "Unsupported value: core.ResourceList(nil): supported values: \"storage\""
    );
    assert!(e
        .message
        .starts_with("PersistentVolume \"Bad_Name\" is invalid: [metadata.name: Invalid value"));
}

#[test]
fn pv_zero_capacity_must_be_greater_than_zero() {
    let mut pv = local_pv("p");
    pv["spec"]["capacity"]["storage"] = json!("0");
    let e = create_err("", "persistentvolumes", pv);
    assert_eq!(
        causes(&e),
        vec![(
            "FieldValueInvalid".into(),
            "spec.capacity[storage]".into(),
            "Invalid value: \"0\": must be greater than zero".into()
        )]
    );
}

#[test]
fn pv_bad_quantity_is_400_with_the_regex() {
    let mut pv = local_pv("p");
    pv["spec"]["capacity"]["storage"] = json!("5Gx");
    let e = create_err("", "persistentvolumes", pv);
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "PersistentVolume in version \"v1\" cannot be handled as a PersistentVolume: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    );
}

#[test]
fn pv_quantities_are_stored_canonical() {
    let mut pv = local_pv("p");
    pv["spec"]["capacity"]["storage"] = json!("1.5Gi");
    let (pv, _) = create("", "persistentvolumes", pv).unwrap();
    assert_eq!(pv["spec"]["capacity"]["storage"], "1536Mi");
}

#[test]
fn pv_access_modes_required_supported_and_rwop_alone() {
    let mut pv = local_pv("p");
    pv["spec"]["accessModes"] = json!([]);
    assert_eq!(
        causes(&create_err("", "persistentvolumes", pv))[0],
        (
            "FieldValueRequired".into(),
            "spec.accessModes".into(),
            "Required value".into()
        )
    );
    let mut pv = local_pv("p");
    pv["spec"]["accessModes"] = json!(["ReadWriteOncePod", "ReadWriteOnce"]);
    assert_eq!(
        causes(&create_err("", "persistentvolumes", pv))[0],
        (
            "FieldValueForbidden".into(),
            "spec.accessModes".into(),
            "Forbidden: may not use ReadWriteOncePod with other access modes".into()
        )
    );
    let mut pv = local_pv("p");
    pv["spec"]["accessModes"] = json!(["WriteSometimes"]);
    assert_eq!(
        causes(&create_err("", "persistentvolumes", pv))[0].2,
        "Unsupported value: \"WriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""
    );
}

#[test]
fn pv_volume_source_exactly_one() {
    let mut pv = local_pv("p");
    pv["spec"].as_object_mut().unwrap().remove("local");
    assert_eq!(
        causes(&create_err("", "persistentvolumes", pv)),
        vec![(
            "FieldValueRequired".into(),
            "spec".into(),
            "Required value: must specify a volume type".into()
        )]
    );
    let mut pv = local_pv("p");
    pv["spec"]["hostPath"] = json!({"path":"/tmp/x"});
    assert_eq!(
        causes(&create_err("", "persistentvolumes", pv)),
        vec![(
            "FieldValueForbidden".into(),
            "spec.local".into(),
            "Forbidden: may not specify more than 1 volume type".into()
        )]
    );
}

#[test]
fn pv_local_path_backsteps_and_node_affinity_required_terms() {
    let mut pv = local_pv("p");
    pv["spec"]["local"]["path"] = json!("/mnt/../etc");
    assert_eq!(
        causes(&create_err("", "persistentvolumes", pv))[0],
        (
            "FieldValueInvalid".into(),
            "spec.local.path".into(),
            "Invalid value: \"/mnt/../etc\": must not contain '..'".into()
        )
    );
    let mut pv = local_pv("p");
    pv["spec"]["nodeAffinity"] = json!({});
    assert_eq!(
        causes(&create_err("", "persistentvolumes", pv)),
        vec![(
            "FieldValueRequired".into(),
            "spec.nodeAffinity.required".into(),
            "Required value: must specify required node constraints".into()
        )]
    );
    let mut pv = local_pv("p");
    pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] = json!([]);
    assert_eq!(
        causes(&create_err("", "persistentvolumes", pv)),
        vec![(
            "FieldValueRequired".into(),
            "spec.nodeAffinity.required.nodeSelectorTerms".into(),
            "Required value: must have at least one node selector term".into()
        )]
    );
    let mut pv = local_pv("p");
    pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
        ["operator"] = json!("Near");
    assert_eq!(
        causes(&create_err("", "persistentvolumes", pv))[0],
        (
            "FieldValueInvalid".into(),
            "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator".into(),
            "Invalid value: \"Near\": not a valid selector operator".into()
        )
    );
}

#[test]
fn pv_recycle_policy_warns() {
    let mut pv = local_pv("p");
    pv["spec"]["persistentVolumeReclaimPolicy"] = json!("Recycle");
    let (_, w) = create("", "persistentvolumes", pv).unwrap();
    assert_eq!(w, vec!["spec.persistentVolumeReclaimPolicy: The Recycle reclaim policy is deprecated. Instead, the recommended approach is to use dynamic provisioning.".to_string()]);
}

#[test]
fn pv_source_and_node_affinity_immutable_capacity_and_class_mutable() {
    let (old, _) = create("", "persistentvolumes", local_pv("p")).unwrap();
    let mut new = old.clone();
    new["spec"]["capacity"]["storage"] = json!("10Gi");
    new["spec"]["storageClassName"] = json!("other");
    new["spec"]["claimRef"] = json!({"namespace":"default","name":"c"});
    prepare_update(
        "",
        "persistentvolumes",
        None,
        &old,
        &mut new,
        &opts(FieldValidation::Strict),
    )
    .unwrap();
    let mut bad = old.clone();
    bad["spec"]["local"]["path"] = json!("/elsewhere");
    bad["spec"]["volumeMode"] = json!("Block");
    let e = prepare_update(
        "",
        "persistentvolumes",
        None,
        &old,
        &mut bad,
        &opts(FieldValidation::Strict),
    )
    .unwrap_err();
    let c = causes(&e);
    assert_eq!(c[0].1, "spec.persistentvolumesource");
    assert!(c[0]
        .2
        .starts_with("Forbidden: spec.persistentvolumesource is immutable after creation\n"));
    assert_eq!(
        c[1],
        (
            "FieldValueInvalid".into(),
            "volumeMode".into(),
            "Invalid value: \"Block\": field is immutable".into()
        )
    );
}

#[test]
fn pv_status_ignored_on_main_resource_and_spec_ignored_on_status() {
    let (old, _) = create("", "persistentvolumes", local_pv("p")).unwrap();
    let mut new = old.clone();
    new["status"]["phase"] = json!("Available");
    prepare_update(
        "",
        "persistentvolumes",
        None,
        &old,
        &mut new,
        &opts(FieldValidation::Strict),
    )
    .unwrap();
    assert_eq!(new["status"]["phase"], "Pending");
    let mut st = old.clone();
    st["status"] = json!({"phase":"Available"});
    st["spec"]["storageClassName"] = json!("changed-through-status");
    let mut o = opts(FieldValidation::Strict);
    o.now = "2026-11-25T09:05:00Z".into();
    prepare_update("", "persistentvolumes", Some("status"), &old, &mut st, &o).unwrap();
    assert_eq!(st["status"]["phase"], "Available");
    assert_eq!(
        st["status"]["lastPhaseTransitionTime"],
        "2026-11-25T09:05:00Z"
    );
    assert_eq!(st["spec"]["storageClassName"], "local-storage");
}

// ------------------------------------------------------------------ unknown fields

#[test]
fn unknown_field_strict_is_400_naming_every_field_in_document_order() {
    let mut pv = local_pv("p");
    pv["spec"]["colour"] = json!("blue");
    pv["spec"]["local"]["shape"] = json!(1);
    let e = create_err("", "persistentvolumes", pv);
    assert_eq!(e.code, 400);
    assert_eq!(e.reason, "BadRequest");
    assert_eq!(
        e.message,
        "PersistentVolume in version \"v1\" cannot be handled as a PersistentVolume: strict decoding error: unknown field \"spec.local.shape\", unknown field \"spec.colour\""
    );
}

#[test]
fn unknown_field_warn_drops_with_warning_and_ignore_drops_silently() {
    let mut pv = local_pv("p");
    pv["spec"]["colour"] = json!("blue");
    pv["metadata"]["labels"]["colour"] = json!("blue"); // a label, not a field
    let mut a = pv.clone();
    let w = prepare_create(
        "",
        "persistentvolumes",
        &mut a,
        &opts(FieldValidation::Warn),
    )
    .unwrap();
    assert_eq!(w, vec!["unknown field \"spec.colour\"".to_string()]);
    assert!(a["spec"].get("colour").is_none());
    assert_eq!(a["metadata"]["labels"]["colour"], "blue");
    let mut b = pv.clone();
    let w = prepare_create(
        "",
        "persistentvolumes",
        &mut b,
        &opts(FieldValidation::Ignore),
    )
    .unwrap();
    assert!(w.is_empty());
    assert!(b["spec"].get("colour").is_none());
}

#[test]
fn unknown_fields_inside_list_items_use_indices() {
    let mut p = pod("p");
    p["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let e = create_err("", "pods", p);
    assert!(
        e.message.ends_with(
            "strict decoding error: unknown field \"spec.containers[0].imagePullPolicyy\""
        ),
        "{}",
        e.message
    );
}

#[test]
fn wrong_type_is_400() {
    let mut pv = local_pv("p");
    pv["spec"]["accessModes"] = json!("ReadWriteOnce");
    let e = create_err("", "persistentvolumes", pv);
    assert_eq!(e.code, 400);
    assert!(e.message.starts_with("PersistentVolume in version \"v1\" cannot be handled as a PersistentVolume: spec.accessModes"), "{}", e.message);
}

// ------------------------------------------------------------------ PersistentVolumeClaim

#[test]
fn pvc_defaults_volume_mode_status_pending_protection_finalizer() {
    let (c, _) = create("", "persistentvolumeclaims", pvc("c")).unwrap();
    assert_eq!(c["spec"]["volumeMode"], "Filesystem");
    assert_eq!(c["status"], json!({"phase":"Pending"}));
    assert_eq!(
        c["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"])
    );
}

#[test]
fn pvc_access_modes_and_storage_request_required() {
    let mut c = pvc("c");
    c["spec"] = json!({});
    let e = create_err("", "persistentvolumeclaims", c);
    assert_eq!(
        causes(&e),
        vec![
            (
                "FieldValueRequired".into(),
                "spec.accessModes".into(),
                "Required value: at least 1 access mode is required".into()
            ),
            (
                "FieldValueRequired".into(),
                "spec.resources[storage]".into(),
                "Required value".into()
            ),
        ]
    );
}

#[test]
fn pvc_spec_immutable_except_volume_name_once_and_requests_when_bound() {
    let (old, _) = create("", "persistentvolumeclaims", pvc("c")).unwrap();
    let o = opts(FieldValidation::Strict);
    let mut set_name = old.clone();
    set_name["spec"]["volumeName"] = json!("pv-1");
    prepare_update("", "persistentvolumeclaims", None, &old, &mut set_name, &o).unwrap();
    let mut again = set_name.clone();
    again["spec"]["volumeName"] = json!("pv-2");
    let e = prepare_update(
        "",
        "persistentvolumeclaims",
        None,
        &set_name,
        &mut again,
        &o,
    )
    .unwrap_err();
    assert_eq!(e.causes[0].field, "spec");
    assert!(e.causes[0].message.starts_with("Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n"));
    // Growing the request is allowed once the claim is bound.
    let mut bound = set_name.clone();
    bound["status"] = json!({"phase":"Bound","capacity":{"storage":"1Gi"}});
    let mut grow = bound.clone();
    grow["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    prepare_update("", "persistentvolumeclaims", None, &bound, &mut grow, &o).unwrap();
    let mut grow_unbound = set_name.clone();
    grow_unbound["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    assert!(prepare_update(
        "",
        "persistentvolumeclaims",
        None,
        &set_name,
        &mut grow_unbound,
        &o
    )
    .is_err());
}

#[test]
fn pvc_storage_class_may_be_set_once_when_nil() {
    let mut c = pvc("c");
    c["spec"]
        .as_object_mut()
        .unwrap()
        .remove("storageClassName");
    let (old, _) = create("", "persistentvolumeclaims", c).unwrap();
    let mut new = old.clone();
    new["spec"]["storageClassName"] = json!("standard");
    prepare_update(
        "",
        "persistentvolumeclaims",
        None,
        &old,
        &mut new,
        &opts(FieldValidation::Strict),
    )
    .unwrap();
}

// ------------------------------------------------------------------ StorageClass

fn sc() -> Value {
    json!({"apiVersion":"storage.k8s.io/v1","kind":"StorageClass","metadata":{"name":"local-storage"},
        "provisioner":"kubernetes.io/no-provisioner","parameters":{"a":"b"}})
}

#[test]
fn storageclass_defaults_reclaim_delete_binding_immediate() {
    let (s, _) = create("storage.k8s.io", "storageclasses", sc()).unwrap();
    assert_eq!(s["reclaimPolicy"], "Delete");
    assert_eq!(s["volumeBindingMode"], "Immediate");
    assert_eq!(
        s["metadata"]["managedFields"][0]["apiVersion"],
        "storage.k8s.io/v1"
    );
}

#[test]
fn storageclass_parameters_provisioner_reclaim_binding_mode_immutable() {
    let (old, _) = create("storage.k8s.io", "storageclasses", sc()).unwrap();
    let mut new = old.clone();
    new["parameters"] = json!({"a":"c"});
    new["provisioner"] = json!("example.com/other");
    new["reclaimPolicy"] = json!("Retain");
    new["volumeBindingMode"] = json!("WaitForFirstConsumer");
    let e = prepare_update(
        "storage.k8s.io",
        "storageclasses",
        None,
        &old,
        &mut new,
        &opts(FieldValidation::Strict),
    )
    .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![
            (
                "FieldValueForbidden".into(),
                "parameters".into(),
                "Forbidden: updates to parameters are forbidden.".into()
            ),
            (
                "FieldValueForbidden".into(),
                "provisioner".into(),
                "Forbidden: updates to provisioner are forbidden.".into()
            ),
            (
                "FieldValueForbidden".into(),
                "reclaimPolicy".into(),
                "Forbidden: updates to reclaimPolicy are forbidden.".into()
            ),
            (
                "FieldValueInvalid".into(),
                "volumeBindingMode".into(),
                "Invalid value: \"WaitForFirstConsumer\": field is immutable".into()
            ),
        ]
    );
    assert!(
        e.message
            .starts_with("StorageClass.storage.k8s.io \"local-storage\" is invalid: ["),
        "{}",
        e.message
    );
    assert_eq!(e.group.as_deref(), Some("storage.k8s.io"));
}

#[test]
fn storageclass_recycle_not_supported_and_provisioner_required() {
    let mut s = sc();
    s["reclaimPolicy"] = json!("Recycle");
    s.as_object_mut().unwrap().remove("provisioner");
    let e = create_err("storage.k8s.io", "storageclasses", s);
    assert_eq!(
        causes(&e),
        vec![
            (
                "FieldValueRequired".into(),
                "provisioner".into(),
                "Required value".into()
            ),
            (
                "FieldValueNotSupported".into(),
                "reclaimPolicy".into(),
                "Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"".into()
            ),
        ]
    );
}

// ------------------------------------------------------------------ Pod

#[test]
fn pod_defaults_as_kube_apiserver() {
    let (p, _) = create("", "pods", pod("web")).unwrap();
    let s = &p["spec"];
    assert_eq!(s["restartPolicy"], "Always");
    assert_eq!(s["dnsPolicy"], "ClusterFirst");
    assert_eq!(s["schedulerName"], "default-scheduler");
    assert_eq!(s["terminationGracePeriodSeconds"], 30);
    assert_eq!(s["securityContext"], json!({}));
    assert_eq!(s["enableServiceLinks"], true);
    assert_eq!(s["priority"], 0);
    assert_eq!(s["preemptionPolicy"], "PreemptLowerPriority");
    let c = &s["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["resources"], json!({}));
    assert_eq!(
        s["tolerations"],
        json!([
            {"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},
            {"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}
        ])
    );
    assert_eq!(
        p["status"],
        json!({"phase":"Pending","qosClass":"BestEffort"})
    );
    assert_eq!(p["metadata"]["generation"], 1);
}

#[test]
fn pod_image_pull_policy_always_for_latest_or_untagged() {
    let mut p = pod("p");
    p["spec"]["containers"][0]["image"] = json!("busybox");
    let (p, _) = create("", "pods", p).unwrap();
    assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
}

#[test]
fn pod_containers_required_and_names_unique_and_mounts_resolve() {
    let mut p = pod("p");
    p["spec"]["containers"] = json!([]);
    assert!(causes(&create_err("", "pods", p)).contains(&(
        "FieldValueRequired".into(),
        "spec.containers".into(),
        "Required value".into()
    )));
    let mut p = pod("p");
    p["spec"]["containers"][0]["volumeMounts"][0]["name"] = json!("nope");
    p["spec"]["containers"][0]["image"] = json!("");
    let c = causes(&create_err("", "pods", p));
    assert!(
        c.contains(&(
            "FieldValueRequired".into(),
            "spec.containers[0].image".into(),
            "Required value".into()
        )),
        "{c:?}"
    );
    assert!(
        c.contains(&(
            "FieldValueNotFound".into(),
            "spec.containers[0].volumeMounts[0].name".into(),
            "Not found: \"nope\"".into()
        )),
        "{c:?}"
    );
}

#[test]
fn pod_spec_immutable_except_image_and_generation_bumps_on_spec_change_only() {
    let (old, _) = create("", "pods", pod("p")).unwrap();
    let o = opts(FieldValidation::Strict);
    let mut img = old.clone();
    img["spec"]["containers"][0]["image"] = json!("busybox:1.36");
    prepare_update("", "pods", None, &old, &mut img, &o).unwrap();
    assert_eq!(img["metadata"]["generation"], 2);
    let mut label = img.clone();
    label["metadata"]["labels"] = json!({"a":"b"});
    prepare_update("", "pods", None, &img, &mut label, &o).unwrap();
    assert_eq!(label["metadata"]["generation"], 2);
    let mut bad = old.clone();
    bad["spec"]["restartPolicy"] = json!("Never");
    let e = prepare_update("", "pods", None, &old, &mut bad, &o).unwrap_err();
    assert_eq!(e.causes[0].field, "spec");
    assert!(e.causes[0].message.starts_with(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
    ));
}

#[test]
fn pod_tolerations_only_additions() {
    let (old, _) = create("", "pods", pod("p")).unwrap();
    let o = opts(FieldValidation::Strict);
    let mut add = old.clone();
    add["spec"]["tolerations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"key":"x","operator":"Exists","effect":"NoSchedule"}));
    prepare_update("", "pods", None, &old, &mut add, &o).unwrap();
    let mut drop = old.clone();
    drop["spec"]["tolerations"] = json!([]);
    let e = prepare_update("", "pods", None, &old, &mut drop, &o).unwrap_err();
    assert_eq!(
        e.causes[0].message,
        "Forbidden: existing toleration can not be modified except its tolerationSeconds"
    );
}

#[test]
fn pod_status_reset_on_create_and_kept_from_old_on_update() {
    let mut p = pod("p");
    p["status"] = json!({"phase":"Running"});
    let (old, _) = create("", "pods", p).unwrap();
    assert_eq!(old["status"]["phase"], "Pending");
    let mut st = old.clone();
    st["status"]["phase"] = json!("Running");
    prepare_update(
        "",
        "pods",
        Some("status"),
        &old,
        &mut st,
        &opts(FieldValidation::Strict),
    )
    .unwrap();
    assert_eq!(st["status"]["phase"], "Running");
    assert_eq!(st["status"]["qosClass"], "BestEffort");
    assert_eq!(st["metadata"]["generation"], 1);
}

// ------------------------------------------------------------------ Namespace, Node, Event, Lease, CSI*

#[test]
fn namespace_name_is_dns_label_gets_kubernetes_finalizer_and_name_label() {
    let (ns, _) = create("", "namespaces", json!({"metadata":{"name":"team-a"}})).unwrap();
    assert_eq!(ns["apiVersion"], "v1");
    assert_eq!(ns["kind"], "Namespace");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team-a"
    );
    let e = create_err("", "namespaces", json!({"metadata":{"name":"a.b"}}));
    assert_eq!(e.causes[0].field, "metadata.name");
    assert!(e.causes[0]
        .message
        .contains("a lowercase RFC 1123 label must consist of"));
}

#[test]
fn node_taints_need_valid_effect_and_unique_key_effect() {
    let n = json!({"metadata":{"name":"node-1"},"spec":{"taints":[{"key":"a","effect":"Sometimes"},{"key":"b","effect":"NoSchedule"},{"key":"b","effect":"NoSchedule"}]}});
    let c = causes(&create_err("", "nodes", n));
    assert_eq!(c[0], ("FieldValueNotSupported".into(), "spec.taints[0].effect".into(), "Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"".into()));
    assert_eq!(c[1].1, "spec.taints[2]");
    assert!(c[1]
        .2
        .ends_with("taints must be unique by key and effect pair"));
}

#[test]
fn node_status_kept_on_create_allocatable_defaults_to_capacity() {
    let n = json!({"metadata":{"name":"node-1"},"status":{"capacity":{"cpu":"2","memory":"4Gi"}}});
    let (n, _) = create("", "nodes", n).unwrap();
    assert_eq!(
        n["status"]["allocatable"],
        json!({"cpu":"2","memory":"4Gi"})
    );
}

#[test]
fn event_involved_object_namespace_must_match() {
    let ev = json!({"metadata":{"name":"x.1","namespace":"default"},"involvedObject":{"kind":"Pod","namespace":"other","name":"p"},"reason":"R","message":"m","type":"Normal"});
    let e = create_err("", "events", ev);
    assert_eq!(
        causes(&e),
        vec![(
            "FieldValueInvalid".into(),
            "involvedObject.namespace".into(),
            "Invalid value: \"other\": does not match event.namespace".into()
        )]
    );
}

#[test]
fn events_k8s_io_requires_event_time_and_reporting_fields() {
    let ev = json!({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"x.1","namespace":"default"},
        "regarding":{"kind":"Pod","namespace":"default","name":"p"},"reason":"Scheduled","type":"Normal"});
    let c = causes(&create_err("events.k8s.io", "events", ev));
    assert!(
        c.contains(&(
            "FieldValueRequired".into(),
            "eventTime".into(),
            "Required value".into()
        )),
        "{c:?}"
    );
}

#[test]
fn lease_duration_must_be_positive() {
    let l = json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"node-1","namespace":"kube-node-lease"},"spec":{"holderIdentity":"node-1","leaseDurationSeconds":0}});
    let e = create_err("coordination.k8s.io", "leases", l);
    assert_eq!(
        causes(&e),
        vec![(
            "FieldValueInvalid".into(),
            "spec.leaseDurationSeconds".into(),
            "Invalid value: 0: must be greater than 0".into()
        )]
    );
}

#[test]
fn csidriver_defaults() {
    let d = json!({"apiVersion":"storage.k8s.io/v1","kind":"CSIDriver","metadata":{"name":"hostpath.csi.k8s.io"},"spec":{}});
    let (d, _) = create("storage.k8s.io", "csidrivers", d).unwrap();
    assert_eq!(d["spec"]["attachRequired"], true);
    assert_eq!(d["spec"]["fsGroupPolicy"], "ReadWriteOnceWithFSType");
    assert_eq!(d["spec"]["volumeLifecycleModes"], json!(["Persistent"]));
}

#[test]
fn csistoragecapacity_requires_class() {
    let c = json!({"apiVersion":"storage.k8s.io/v1","kind":"CSIStorageCapacity","metadata":{"name":"c1","namespace":"kube-system"},"capacity":"10Gi"});
    let e = create_err("storage.k8s.io", "csistoragecapacities", c);
    assert_eq!(
        causes(&e),
        vec![(
            "FieldValueRequired".into(),
            "storageClassName".into(),
            "Required value".into()
        )]
    );
}

#[test]
fn wrong_api_version_is_400() {
    let mut pv = local_pv("p");
    pv["apiVersion"] = json!("v2");
    let e = create_err("", "persistentvolumes", pv);
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "the API version in the data (v2) does not match the expected API version (v1)"
    );
}

#[test]
fn metadata_identity_immutable_on_update() {
    let (mut old, _) = create("", "persistentvolumes", local_pv("p")).unwrap();
    old["metadata"]["uid"] = json!("u-1");
    let mut new = old.clone();
    new["metadata"]["uid"] = json!("u-2");
    let e = prepare_update(
        "",
        "persistentvolumes",
        None,
        &old,
        &mut new,
        &opts(FieldValidation::Strict),
    )
    .unwrap_err();
    assert_eq!(
        causes(&e),
        vec![(
            "FieldValueInvalid".into(),
            "metadata.uid".into(),
            "Invalid value: \"u-2\": field is immutable".into()
        )]
    );
}

#[test]
fn no_new_finalizers_while_deleting() {
    let (mut old, _) = create("", "persistentvolumeclaims", pvc("c")).unwrap();
    old["metadata"]["deletionTimestamp"] = json!(NOW);
    let mut new = old.clone();
    new["metadata"]["finalizers"]
        .as_array_mut()
        .unwrap()
        .push(json!("example.com/x"));
    let e = prepare_update(
        "",
        "persistentvolumeclaims",
        None,
        &old,
        &mut new,
        &opts(FieldValidation::Strict),
    )
    .unwrap_err();
    assert_eq!(
        e.causes[0].message,
        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/x\"}"
    );
}

#[test]
fn pod_create_managed_fields_own_defaults_but_not_admission_additions() {
    let mut p = pod("web");
    p["metadata"]["labels"] = json!({"run":"web"});
    let (p, _) = create("", "pods", p).unwrap();
    let mf = &p["metadata"]["managedFields"];
    assert_eq!(mf.as_array().unwrap().len(), 1);
    assert_eq!(
        mf[0]["fieldsV1"],
        json!({"f:metadata":{"f:labels":{".":{},"f:run":{}}},
            "f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:command":{},"f:image":{},"f:imagePullPolicy":{},
                    "f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},
                    "f:volumeMounts":{".":{},"k:{\"mountPath\":\"/data\"}":{".":{},"f:mountPath":{},"f:name":{}}}}},
                "f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},
                "f:securityContext":{},"f:terminationGracePeriodSeconds":{},
                "f:volumes":{".":{},"k:{\"name\":\"data\"}":{".":{},"f:name":{},"f:persistentVolumeClaim":{".":{},"f:claimName":{}}}}}})
    );
}

#[test]
fn lab_manifests_are_accepted_strict_without_warnings() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/lab");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // The folder also holds the lab's README; only the manifests are inputs here.
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut obj: Value = serde_norway::from_str(&text).unwrap();
        let (group, resource) = match obj["kind"].as_str().unwrap() {
            "Pod" => ("", "pods"),
            "PersistentVolume" => ("", "persistentvolumes"),
            "PersistentVolumeClaim" => ("", "persistentvolumeclaims"),
            "StorageClass" => ("storage.k8s.io", "storageclasses"),
            other => panic!("unexpected kind {other} in {path:?}"),
        };
        if resource == "pods" || resource == "persistentvolumeclaims" {
            obj["metadata"]["namespace"] = json!("default");
        }
        let w = prepare_create(group, resource, &mut obj, &opts(FieldValidation::Strict))
            .unwrap_or_else(|e| panic!("{path:?}: {e:?}"));
        assert!(w.is_empty(), "{path:?}: {w:?}");
        seen += 1;
    }
    assert_eq!(seen, 4);
}

#[test]
fn pv_host_path_takes_no_mount_options() {
    let mut pv = local_pv("p");
    let s = pv["spec"].as_object_mut().unwrap();
    s.remove("local");
    s.remove("nodeAffinity");
    s.insert("hostPath".into(), json!({"path":"/tmp/x"}));
    s.insert("mountOptions".into(), json!(["ro"]));
    let e = create_err("", "persistentvolumes", pv);
    assert_eq!(
        causes(&e),
        vec![(
            "FieldValueForbidden".into(),
            "spec.mountOptions".into(),
            "Forbidden: may not specify mount options for this volume type".into()
        )]
    );
}

mod fuzz {
    //! Arbitrary bodies (of the right and the wrong shapes) never panic the semantics: every
    //! outcome is an object or an ApiError.
    use super::*;
    use apiserver::semantics::{apply_patch, PatchType};
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "metadata",
            "name",
            "namespace",
            "labels",
            "spec",
            "status",
            "containers",
            "image",
            "volumes",
            "capacity",
            "storage",
            "accessModes",
            "local",
            "path",
            "nodeAffinity",
            "required",
            "nodeSelectorTerms",
            "matchExpressions",
            "resources",
            "requests",
            "env",
            "ports",
            "containerPort",
            "finalizers",
            "$patch",
            "$setElementOrder/containers",
            "$retainKeys",
            "tolerations",
            "x",
        ])
        .prop_map(String::from)
    }

    fn json_tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..70000).prop_map(Value::from),
            prop::sample::select(vec![
                "",
                "a",
                "5Gi",
                "ReadWriteOnce",
                "delete",
                "replace",
                "In",
                "-x"
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    const KINDS: &[(&str, &str)] = &[
        ("", "pods"),
        ("", "persistentvolumes"),
        ("", "persistentvolumeclaims"),
        ("", "nodes"),
        ("", "namespaces"),
        ("", "events"),
        ("storage.k8s.io", "storageclasses"),
        ("coordination.k8s.io", "leases"),
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]
        #[test]
        fn no_body_panics_create_update_or_patch(body in json_tree(), patch in json_tree(), k in 0usize..8) {
            let (g, r) = KINDS[k];
            for fv in [FieldValidation::Strict, FieldValidation::Warn, FieldValidation::Ignore] {
                let o = opts(fv);
                let mut created = body.clone();
                let _ = prepare_create(g, r, &mut created, &o);
                let old = match r {
                    "pods" => pod("p"),
                    "persistentvolumes" => local_pv("p"),
                    _ => pvc("p"),
                };
                let (og, or) = match r {
                    "pods" => ("", "pods"),
                    "persistentvolumes" => ("", "persistentvolumes"),
                    _ => ("", "persistentvolumeclaims"),
                };
                let (old, _) = create(og, or, old).unwrap();
                let mut upd = body.clone();
                let _ = prepare_update(og, or, None, &old, &mut upd, &o);
                // An apply configuration of the right kind around the random fields.
                let mut cfg = json!({"apiVersion": "v1", "kind": old["kind"].clone(), "metadata": {"name": "p"}});
                if let Value::Object(m) = &patch {
                    for (k, v) in m {
                        if k != "apiVersion" && k != "kind" && k != "metadata" {
                            cfg[k.as_str()] = v.clone();
                        }
                    }
                }
                for (pt, body) in [
                    (PatchType::Merge, &patch),
                    (PatchType::StrategicMerge, &patch),
                    (PatchType::Json, &patch),
                    (PatchType::Apply, &patch),
                    (PatchType::Apply, &cfg),
                ] {
                    let mut o2 = o.clone();
                    o2.force = pt == PatchType::Apply;
                    if let Ok(mut new) = apply_patch(og, or, Some(&old), pt, body.to_string().as_bytes(), &o2) {
                        let _ = prepare_update(og, or, None, &old, &mut new, &o2);
                    }
                    if pt == PatchType::Apply {
                        if let Ok(mut new) = apply_patch(og, or, None, pt, body.to_string().as_bytes(), &o2) {
                            let _ = prepare_create(og, or, &mut new, &o2);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn pod_ip_and_host_ip_kept_in_step_with_their_lists_service_account_alias() {
    let mut p = pod("p");
    p["spec"]["serviceAccountName"] = json!("builder");
    let (old, _) = create("", "pods", p).unwrap();
    assert_eq!(old["spec"]["serviceAccount"], "builder");
    let mut st = old.clone();
    st["status"]["podIP"] = json!("10.0.0.5");
    st["status"]["hostIPs"] = json!([{"ip":"192.168.1.2"}]);
    prepare_update(
        "",
        "pods",
        Some("status"),
        &old,
        &mut st,
        &opts(FieldValidation::Strict),
    )
    .unwrap();
    assert_eq!(st["status"]["podIPs"], json!([{"ip":"10.0.0.5"}]));
    assert_eq!(st["status"]["hostIP"], "192.168.1.2");
}

#[test]
fn node_pod_cidr_and_pod_cidrs_kept_in_step() {
    let (n, _) = create(
        "",
        "nodes",
        json!({"metadata":{"name":"node-1"},"spec":{"podCIDR":"10.244.0.0/24"}}),
    )
    .unwrap();
    assert_eq!(n["spec"]["podCIDRs"], json!(["10.244.0.0/24"]));
}

#[test]
fn events_k8s_io_update_may_only_move_the_series() {
    let ev = json!({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"x.1","namespace":"default"},
        "eventTime":"2026-11-25T09:00:00.000000Z","regarding":{"kind":"Pod","namespace":"default","name":"p"},
        "reason":"Scheduled","note":"assigned","type":"Normal","action":"Binding",
        "reportingController":"default-scheduler","reportingInstance":"default-scheduler-bonsai"});
    let (old, _) = create("events.k8s.io", "events", ev).unwrap();
    let o = opts(FieldValidation::Strict);
    let mut series = old.clone();
    series["series"] = json!({"count":2,"lastObservedTime":"2026-11-25T09:01:00.000000Z"});
    prepare_update("events.k8s.io", "events", None, &old, &mut series, &o).unwrap();
    let mut bad = old.clone();
    bad["note"] = json!("changed");
    let e = prepare_update("events.k8s.io", "events", None, &old, &mut bad, &o).unwrap_err();
    assert_eq!(
        causes(&e),
        vec![(
            "FieldValueInvalid".into(),
            "message".into(),
            "Invalid value: \"changed\": field is immutable".into()
        )]
    );
}

#[test]
fn pod_status_terminated_containers_stay_terminated_under_restart_never_and_ips_are_ips() {
    let mut p = pod("p");
    p["spec"]["restartPolicy"] = json!("Never");
    let (mut old, _) = create("", "pods", p).unwrap();
    old["status"]["containerStatuses"] =
        json!([{"name":"app","state":{"terminated":{"exitCode":1}}}]);
    let o = opts(FieldValidation::Strict);
    let mut back = old.clone();
    back["status"]["containerStatuses"] = json!([{"name":"app","state":{"running":{}}}]);
    let e = prepare_update("", "pods", Some("status"), &old, &mut back, &o).unwrap_err();
    assert_eq!(
        causes(&e),
        vec![(
            "FieldValueForbidden".into(),
            "status.containerStatuses[0]".into(),
            "Forbidden: may not be transitioned to non-terminated state".into()
        )]
    );
    let mut ip = old.clone();
    ip["status"]["podIPs"] = json!([{"ip":"not-an-ip"}]);
    let e = prepare_update("", "pods", Some("status"), &old, &mut ip, &o).unwrap_err();
    assert_eq!(e.causes[0].field, "status.podIPs[0].ip");
}
