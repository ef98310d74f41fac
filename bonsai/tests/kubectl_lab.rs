//! The lesson's lab through the real kubectl against `bonsai up`: unchanged manifests from
//! examples/lab, the exact `kubectl get` columns, every output form, describe, delete --wait,
//! api-resources, version, and 401 without the token. Skips (with a message) without kubectl.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;

use common::*;

fn lab(file: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/lab")
        .join(file);
    p.to_str().unwrap().to_string()
}

fn skip_without_kubectl() -> bool {
    if kubectl_available() {
        return false;
    }
    eprintln!("SKIP: kubectl is not on PATH; the kubectl lab test needs the real kubectl");
    true
}

/// Rows of `kubectl get` as (header → cell) maps.
fn table(out: &str) -> (Vec<String>, Vec<std::collections::BTreeMap<String, String>>) {
    let (headers, rows) = parse_table(out);
    let rows = rows
        .into_iter()
        .map(|r| headers.iter().cloned().zip(r).collect())
        .collect();
    (headers, rows)
}

#[test]
fn lesson_lab_with_real_kubectl() {
    if skip_without_kubectl() {
        return;
    }
    let c = TestCluster::up();

    // version: the dispatcher runs kubectl 1.33 for our server.
    let v = c.kubectl_ok(&["version"]);
    assert!(v.contains("Server Version: v1.33"), "{v}");
    assert!(v.contains("Client Version: v1.33"), "{v}");

    // api-resources lists every kind the lab needs, with the real short names.
    let ar = c.kubectl_ok(&["api-resources"]);
    for needle in [
        "persistentvolumes",
        "persistentvolumeclaims",
        "storageclasses",
        "pods",
        "nodes",
        "namespaces",
        "events",
        "leases",
        "csidrivers",
        "csistoragecapacities",
    ] {
        assert!(ar.contains(needle), "api-resources lacks {needle}:\n{ar}");
    }
    let (_, rows) = table(&ar);
    let pv = rows
        .iter()
        .find(|r| r["NAME"] == "persistentvolumes")
        .expect("pv row");
    assert_eq!(pv["SHORTNAMES"], "pv");
    assert_eq!(pv["NAMESPACED"], "false");
    assert_eq!(pv["KIND"], "PersistentVolume");

    // create -f, in the lesson's order, each manifest unchanged.
    let out = c.kubectl_ok(&["create", "-f", &lab("local-pv.yaml")]);
    assert_eq!(out.trim(), "persistentvolume/example-pv created");
    let out = c.kubectl_ok(&["create", "-f", &lab("local-sc.yaml")]);
    assert_eq!(
        out.trim(),
        "storageclass.storage.k8s.io/local-storage created"
    );
    let out = c.kubectl_ok(&["create", "-f", &lab("local-pvc.yaml")]);
    assert_eq!(
        out.trim(),
        "persistentvolumeclaim/example-local-claim created"
    );

    // kubectl get pv: the lesson's columns plus VOLUMEATTRIBUTESCLASS (current kubectl).
    let (h, rows) = table(&c.kubectl_ok(&["get", "pv"]));
    assert_eq!(
        h,
        [
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ]
    );
    let r = &rows[0];
    assert_eq!(r["NAME"], "example-pv");
    assert_eq!(r["CAPACITY"], "5Gi");
    assert_eq!(r["ACCESS MODES"], "RWO");
    assert_eq!(r["RECLAIM POLICY"], "Delete");
    // Pending until the volume controller makes it Available (a later issue wires it in).
    assert!(
        ["Pending", "Available"].contains(&r["STATUS"].as_str()),
        "{r:?}"
    );
    assert_eq!(r["CLAIM"], "");
    assert_eq!(r["STORAGECLASS"], "local-storage");
    assert_eq!(r["VOLUMEATTRIBUTESCLASS"], "<unset>");
    assert_eq!(r["REASON"], "");
    assert!(r["AGE"].ends_with('s') || r["AGE"].ends_with('m'), "{r:?}");

    // -o wide adds VOLUMEMODE.
    let (h, rows) = table(&c.kubectl_ok(&["get", "pv", "-o", "wide"]));
    assert_eq!(h.last().map(String::as_str), Some("VOLUMEMODE"));
    assert_eq!(rows[0]["VOLUMEMODE"], "Filesystem");

    let (h, rows) = table(&c.kubectl_ok(&["get", "pvc"]));
    assert_eq!(
        h,
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ]
    );
    let r = &rows[0];
    assert_eq!(r["NAME"], "example-local-claim");
    assert_eq!(r["STATUS"], "Pending");
    assert_eq!(r["VOLUME"], "");
    assert_eq!(r["CAPACITY"], "");
    assert_eq!(r["ACCESS MODES"], "");
    assert_eq!(r["STORAGECLASS"], "local-storage");
    assert_eq!(r["VOLUMEATTRIBUTESCLASS"], "<unset>");

    let (h, rows) = table(&c.kubectl_ok(&["get", "sc"]));
    assert_eq!(
        h,
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    let r = &rows[0];
    assert_eq!(r["NAME"], "local-storage");
    assert_eq!(r["PROVISIONER"], "kubernetes.io/no-provisioner");
    assert_eq!(r["RECLAIMPOLICY"], "Delete");
    assert_eq!(r["VOLUMEBINDINGMODE"], "WaitForFirstConsumer");
    assert_eq!(r["ALLOWVOLUMEEXPANSION"], "false");

    // Several kinds at once get the kind/ prefix from the name column.
    let both = c.kubectl_ok(&["get", "pv,pvc"]);
    assert!(both.contains("persistentvolume/example-pv"), "{both}");
    assert!(
        both.contains("persistentvolumeclaim/example-local-claim"),
        "{both}"
    );

    // Other output forms.
    assert_eq!(
        c.kubectl_ok(&["get", "pv", "-o", "name"]).trim(),
        "persistentvolume/example-pv"
    );
    let y = c.kubectl_ok(&["get", "pv", "example-pv", "-o", "yaml"]);
    assert!(y.contains("kind: PersistentVolume"), "{y}");
    assert!(y.contains("path: /mnt/disks/vol1"), "{y}");
    assert!(y.contains("storage: 5Gi"), "{y}");
    let j: serde_json::Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "pvc", "-o", "json"])).unwrap();
    assert_eq!(j["kind"], "List");
    assert_eq!(j["items"][0]["kind"], "PersistentVolumeClaim");
    assert_eq!(j["items"][0]["spec"]["storageClassName"], "local-storage");
    let jp = c.kubectl_ok(&[
        "get",
        "pv",
        "example-pv",
        "-o",
        "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}",
    ]);
    assert_eq!(jp, "node-1");
    let all = c.kubectl_ok(&["get", "pvc", "-A", "--show-labels"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(all.contains("default"), "{all}");

    // describe pv / pvc.
    let d = c.kubectl_ok(&["describe", "pv", "example-pv"]);
    for needle in [
        "Name:",
        "example-pv",
        "StorageClass:",
        "local-storage",
        "Reclaim Policy:",
        "Delete",
        "Access Modes:",
        "RWO",
        "Capacity:",
        "5Gi",
        "Term 0:",
        "kubernetes.io/hostname in [node-1]",
        "LocalVolume",
        "/mnt/disks/vol1",
    ] {
        assert!(d.contains(needle), "describe pv lacks {needle:?}:\n{d}");
    }
    let d = c.kubectl_ok(&["describe", "pvc", "example-local-claim"]);
    for needle in ["example-local-claim", "default", "local-storage", "Pending"] {
        assert!(d.contains(needle), "describe pvc lacks {needle:?}:\n{d}");
    }

    // The pod: created, listed with the pod columns, deleted without a node at once.
    let out = c.kubectl_ok(&["create", "-f", &lab("local-pod.yaml")]);
    assert_eq!(out.trim(), "pod/example-pv-pod created");
    let (h, rows) = table(&c.kubectl_ok(&["get", "pods", "-o", "wide"]));
    assert_eq!(
        h,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    assert_eq!(rows[0]["NAME"], "example-pv-pod");
    assert_eq!(rows[0]["READY"], "0/1");
    assert_eq!(rows[0]["RESTARTS"], "0");
    assert_eq!(rows[0]["NOMINATED NODE"], "<none>");

    // delete (default --wait=true) returns once the object is really gone.
    for (kind, name) in [("pod", "example-pv-pod"), ("sc", "local-storage")] {
        let out = c.kubectl_ok(&["delete", kind, name, "--timeout=60s"]);
        assert!(out.contains("deleted"), "{out}");
    }
    // The claim and the volume carry the storage-protection finalizers: deletion marks them
    // Terminating, and the volume controller lets them go. Without it running (the API server
    // alone) we play its part by removing the finalizers, then wait for them to disappear.
    for (kind, name) in [("pvc", "example-local-claim"), ("pv", "example-pv")] {
        let out = c.kubectl_ok(&["delete", kind, name, "--wait=false"]);
        assert!(out.contains("deleted"), "{out}");
        let status = c.kubectl(&["get", kind, name, "-o", "jsonpath={.metadata.finalizers}"]);
        if status.status.success() && !text(&status.stdout).trim().is_empty() {
            // (The volume controller may finish the deletion at any moment.)
            let got = c.kubectl(&["get", kind, name]);
            if got.status.success() {
                let (_, rows) = table(&text(&got.stdout));
                if let Some(r) = rows.first() {
                    assert_eq!(r["STATUS"], "Terminating", "{rows:?}");
                }
            }
            let _ = c.kubectl(&[
                "patch",
                kind,
                name,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
        let target = format!("{kind}/{name}");
        let out = c.kubectl(&["wait", "--for=delete", &target, "--timeout=60s"]);
        assert!(
            out.status.success() || text(&out.stderr).contains("NotFound"),
            "{}",
            text(&out.stderr)
        );
    }
    let none = c.kubectl(&["get", "pv"]);
    assert!(none.status.success());
    assert!(
        text(&none.stderr).contains("No resources found"),
        "{}",
        text(&none.stderr)
    );
    let gone = c.kubectl(&["get", "pvc", "example-local-claim"]);
    assert!(!gone.status.success());
    assert!(
        text(&gone.stderr).contains("NotFound"),
        "{}",
        text(&gone.stderr)
    );

    // Namespaces table.
    let (h, rows) = table(&c.kubectl_ok(&["get", "namespaces"]));
    assert_eq!(h, ["NAME", "STATUS", "AGE"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let r = rows
            .iter()
            .find(|r| r["NAME"] == ns)
            .unwrap_or_else(|| panic!("no {ns}"));
        assert_eq!(r["STATUS"], "Active");
    }
}

/// Without the token the API answers 401 (only /version and health are public), over the
/// kubeconfig's HTTPS endpoint as over the API server's own port.
#[test]
fn requests_without_the_token_are_refused() {
    if skip_without_kubectl() {
        return;
    }
    let c = TestCluster::up();
    // A kubeconfig with the right CA but no token: kubectl reports Unauthorized.
    let kc = std::fs::read_to_string(c.kubeconfig()).unwrap();
    let anon = kc.replace(&c.token(), "not-the-token");
    let anon_path = c.path().join("anon-kubeconfig");
    std::fs::write(&anon_path, anon).unwrap();
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&anon_path)
        .arg("--cache-dir")
        .arg(c.cache.path().join("anon"))
        .args(["get", "pv"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("Unauthorized") || err.contains("provide credentials"),
        "expected 401, got: {err}"
    );

    // The private port: plain HTTP, same rule.
    let api_port = c.state()["api_port"].as_u64().unwrap() as u16;
    let get = |path: &str, token: Option<&str>| -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", api_port)).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r.lines().next().unwrap_or("").to_string()
    };
    assert!(get("/api/v1/namespaces", None).contains(" 401 "));
    assert!(get("/api/v1/namespaces", Some("wrong")).contains(" 401 "));
    assert!(get("/api/v1/namespaces", Some(&c.token())).contains(" 200 "));
    assert!(get("/version", None).contains(" 200 "));
    assert!(get("/readyz", None).contains(" 200 "));
}
