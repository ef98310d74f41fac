//! The real kubectl against the API server for the object semantics of issue 4: client-side
//! apply (create, unchanged, changed manifest, removed field), server-side apply (twice,
//! a conflict and --force-conflicts), patch of all three types, label, annotate, edit with a
//! scripted editor, and namespace deletion. Skips (with a message) without kubectl.

mod http_common;

use std::time::Duration;

use http_common::*;

const PV: &str = r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: local-pv-2
  labels:
    type: local
    tier: gold
spec:
  capacity:
    storage: 5Gi
  accessModes: [ReadWriteOnce]
  storageClassName: local-storage
  local:
    path: /mnt/disks/vol2
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - key: kubernetes.io/hostname
          operator: In
          values: [node-1]
"#;

async fn write(s: &TestServer, name: &str, text: &str) -> String {
    let p = s.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

async fn json_of(k: &Kubectl, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&k.ok(&a).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_patch_label_annotate_edit_and_namespace_deletion() {
    if !have_kubectl() {
        return;
    }
    let s = start().await;
    let k = s.kubectl(true);

    // ---- client-side apply: create, unchanged, changed, field removed
    let f = write(&s, "pv.yaml", PV).await;
    let out = k.ok(&["apply", "-f", &f]).await;
    assert!(out.contains("persistentvolume/local-pv-2 created"), "{out}");
    let out = k.ok(&["apply", "-f", &f]).await;
    assert!(
        out.contains("persistentvolume/local-pv-2 unchanged"),
        "{out}"
    );
    let changed = PV.replace("tier: gold", "tier: silver");
    let f2 = write(&s, "pv2.yaml", &changed).await;
    let out = k.ok(&["apply", "-f", &f2]).await;
    assert!(
        out.contains("persistentvolume/local-pv-2 configured"),
        "{out}"
    );
    let removed = PV.replace("    tier: gold\n", "");
    let f3 = write(&s, "pv3.yaml", &removed).await;
    let out = k.ok(&["apply", "-f", &f3]).await;
    assert!(
        out.contains("persistentvolume/local-pv-2 configured"),
        "{out}"
    );
    let pv = json_of(&k, &["get", "pv", "local-pv-2"]).await;
    assert_eq!(
        pv["metadata"]["labels"],
        serde_json::json!({"type":"local"})
    );
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(
        pv["metadata"]["finalizers"],
        serde_json::json!(["kubernetes.io/pv-protection"])
    );

    // ---- server-side apply: twice, then a conflict with the client-side manager, then force
    let ssa = PV
        .replace("local-pv-2", "local-pv-3")
        .replace("vol2", "vol3");
    let f4 = write(&s, "pv-ssa.yaml", &ssa).await;
    for _ in 0..2 {
        let out = k.ok(&["apply", "--server-side", "-f", &f4]).await;
        assert!(
            out.contains("persistentvolume/local-pv-3 serverside-applied"),
            "{out}"
        );
    }
    let bigger = removed.replace("storage: 5Gi", "storage: 10Gi");
    let f5 = write(&s, "pv-bigger.yaml", &bigger).await;
    let o = k.run(&["apply", "--server-side", "-f", &f5]).await;
    assert_ne!(
        o.code, 0,
        "a conflicting server-side apply must fail: {}",
        o.stdout
    );
    assert!(
        o.stderr
            .contains("conflict with \"kubectl-client-side-apply\""),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains(".spec.capacity.storage"), "{}", o.stderr);
    let out = k
        .ok(&["apply", "--server-side", "--force-conflicts", "-f", &f5])
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let pv = json_of(&k, &["get", "pv", "local-pv-2", "--show-managed-fields"]).await;
    assert_eq!(pv["spec"]["capacity"]["storage"], "10Gi");
    let mf = pv["metadata"]["managedFields"].as_array().unwrap();
    assert!(
        mf.iter()
            .any(|e| e["manager"] == "kubectl" && e["operation"] == "Apply"),
        "{mf:?}"
    );

    // ---- patch: strategic, merge, json
    let out = k
        .ok(&[
            "patch",
            "pv",
            "local-pv-3",
            "-p",
            r#"{"metadata":{"labels":{"p":"smp"}}}"#,
        ])
        .await;
    assert!(out.contains("persistentvolume/local-pv-3 patched"), "{out}");
    k.ok(&[
        "patch",
        "pv",
        "local-pv-3",
        "--type=merge",
        "-p",
        r#"{"spec":{"mountOptions":["ro"]}}"#,
    ])
    .await;
    k.ok(&["patch", "pv", "local-pv-3", "--type=json", "-p",
        r#"[{"op":"test","path":"/metadata/labels/p","value":"smp"},{"op":"replace","path":"/metadata/labels/p","value":"json"}]"#]).await;
    let pv = json_of(&k, &["get", "pv", "local-pv-3"]).await;
    assert_eq!(pv["metadata"]["labels"]["p"], "json");
    assert_eq!(pv["spec"]["mountOptions"], serde_json::json!(["ro"]));
    let o = k
        .run(&[
            "patch",
            "pv",
            "local-pv-3",
            "--type=merge",
            "-p",
            r#"{"spec":{"local":{"path":"/elsewhere"}}}"#,
        ])
        .await;
    assert_ne!(o.code, 0);
    assert!(
        o.stderr
            .contains("spec.persistentvolumesource is immutable after creation"),
        "{}",
        o.stderr
    );

    // kubectl patch sends no fieldValidation: the server default (Warn) drops the unknown
    // field and says so.
    let o = k
        .run(&[
            "patch",
            "pv",
            "local-pv-3",
            "--type=merge",
            "-p",
            r#"{"spec":{"colour":"x"}}"#,
        ])
        .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("Warning: unknown field \"spec.colour\""),
        "{}",
        o.stderr
    );

    // ---- label, annotate
    let out = k.ok(&["label", "pv", "local-pv-3", "env=prod"]).await;
    assert!(out.contains("persistentvolume/local-pv-3 labeled"), "{out}");
    let out = k.ok(&["annotate", "pv", "local-pv-3", "note=hello"]).await;
    assert!(
        out.contains("persistentvolume/local-pv-3 annotated"),
        "{out}"
    );
    k.ok(&["label", "pv", "local-pv-3", "env-"]).await;
    let pv = json_of(&k, &["get", "pv", "local-pv-3"]).await;
    assert!(pv["metadata"]["labels"].get("env").is_none());
    assert_eq!(pv["metadata"]["annotations"]["note"], "hello");

    // ---- edit with a scripted editor
    let script = s.dir.path().join("editor.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nsed -i 's/type: local/type: edited/' \"$1\"\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut c = k.command(&["edit", "pv", "local-pv-3"]);
    c.env("KUBE_EDITOR", &script).env("EDITOR", &script);
    let o = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "edit failed: {stdout} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        stdout.contains("persistentvolume/local-pv-3 edited"),
        "{stdout}"
    );
    let pv = json_of(&k, &["get", "pv", "local-pv-3"]).await;
    assert_eq!(pv["metadata"]["labels"]["type"], "edited");

    // ---- unknown fields: Strict rejects, --validate=warn warns
    let bad = ssa
        .replace("local-pv-3", "local-pv-4")
        .replace("  storageClassName", "  colour: blue\n  storageClassName");
    let f6 = write(&s, "pv-bad.yaml", &bad).await;
    let o = k.run(&["create", "-f", &f6]).await;
    assert_ne!(o.code, 0);
    assert!(
        o.stderr
            .contains("strict decoding error: unknown field \"spec.colour\""),
        "{}",
        o.stderr
    );
    let o = k.run(&["create", "--validate=warn", "-f", &f6]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stderr.contains("unknown field \"spec.colour\""),
        "{}",
        o.stderr
    );

    // ---- namespace deletion: Terminating, contents deleted, then gone
    k.ok(&["create", "namespace", "team-a"]).await;
    let lease = write(&s, "lease.yaml", "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: l1\n  namespace: team-a\nspec:\n  holderIdentity: x\n").await;
    k.ok(&["create", "-f", &lease]).await;
    k.ok(&["delete", "namespace", "team-a", "--timeout=60s"])
        .await;
    wait_for("namespace team-a to go", Duration::from_secs(60), || {
        let k = &k;
        async move {
            let o = k.run(&["get", "namespace", "team-a"]).await;
            (o.code != 0 && o.stderr.contains("NotFound")).then_some(())
        }
    })
    .await;
    s.stop().await;
}
