//! "When a node dies, its local volumes go with it" — the lab of examples/node-failure, end to
//! end with the real kubectl: the lesson's manifests on a disk of node-1, `bonsai node kill
//! node-1` (a power cut), the node lifecycle controller's Ready=Unknown and unreachable taints,
//! the taint eviction of the pod, a re-created pod that stays Pending (the untolerated taint and
//! the PV's node affinity, in one FailedScheduling message) while its claim stays Bound to the
//! PV on the dead node, then `bonsai node start node-1`: a tmpfs disk is gone (the mount fails
//! with the kubelet's path-missing FailedMount), a loop disk comes back with the data and the
//! pod runs again.
//!
//! Needs root (nodes are processes with their own namespaces, disks are real mounts) and
//! kubectl; without either the tests say why and return. Each test runs its own cluster
//! (`--port 0`, own data dir, own kubectl cache dir); the guard stops it — and any node
//! restarted by the test — even when the test fails. Waits are `kubectl wait` watches or
//! polls bounded by a deadline; the timings a student sees are printed, never asserted.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

const DEADLINE: Duration = Duration::from_secs(60);

fn manifest(file: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/lab")
        .join(file);
    p.to_str().unwrap().to_string()
}

fn skip() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIP: the node failure lab needs root (bonsai nodes are processes with their own \
             mount and PID namespaces; disks are real mounts)"
        );
        return true;
    }
    if !kubectl_available() {
        eprintln!("SKIP: kubectl is not on PATH; the lab drives the real kubectl");
        return true;
    }
    false
}

/// The cluster, stopped on drop together with every node of its data dir (a node restarted
/// with `bonsai node start` is not a child of the cluster process).
struct Lab {
    c: TestCluster,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.c.down();
        let left = kubelet_lite::node::stop_all(self.c.path(), Duration::from_secs(5));
        if !left.is_empty() {
            eprintln!("node-failure: stopped leftover nodes: {left:?}");
        }
    }
}

impl Lab {
    fn up() -> Lab {
        let c = TestCluster::up_with(&["--nodes", "2"]);
        eprintln!("node-failure: bonsai up --nodes 2\n{}", c.up_stdout);
        Lab { c }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.c.kubectl(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.c.kubectl_ok(args)
    }

    fn bonsai_ok(&self, cmd: &str, args: &[&str]) -> String {
        let out = self.c.bonsai(cmd, args);
        assert!(
            out.status.success(),
            "bonsai {cmd} {args:?} failed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// `kubectl wait <what> --for=<cond>` (a watch), which must succeed.
    fn wait_for(&self, what: &str, cond: &str) {
        let out = self.kubectl(&["wait", what, &format!("--for={cond}"), "--timeout=60s"]);
        assert!(
            out.status.success(),
            "kubectl wait {what} --for={cond}: {}{}\n{}",
            text(&out.stdout),
            text(&out.stderr),
            self.diagnostics()
        );
    }

    /// Polls a kubectl query until `pred` holds (events, which `kubectl wait` cannot express).
    fn poll(&self, args: &[&str], what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut last: String;
        let start = Instant::now();
        let ok = loop {
            let out = self.kubectl(args);
            last = text(&out.stdout);
            if pred(&last) {
                break true;
            }
            if start.elapsed() > DEADLINE {
                break false;
            }
            // One kubectl at a time, a few per second: the cluster shares 2 cores with us.
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            ok,
            "timed out waiting for {what}; last `kubectl {}`:\n{last}\n{}",
            args.join(" "),
            self.diagnostics()
        );
        last
    }

    fn diagnostics(&self) -> String {
        let get = self.kubectl(&["get", "pv,pvc,pod,nodes", "-o", "wide"]);
        let ev = self.kubectl(&["get", "events"]);
        format!(
            "--- state:\n{}{}\n--- events:\n{}",
            text(&get.stdout),
            text(&get.stderr),
            text(&ev.stdout)
        )
    }

    fn pod_events(&self) -> String {
        self.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Pod,involvedObject.name=example-pv-pod",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ])
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The whole lab on a disk of `backing`; returns nothing, asserts everything.
fn node_failure_lab(backing: &str) {
    let lab = Lab::up();

    // The lesson's lab on node-1 (examples/lab, unchanged).
    let out = lab.bonsai_ok(
        "disk",
        &[
            "add",
            "node-1",
            "vol1",
            "--size",
            "64Mi",
            "--backing",
            backing,
        ],
    );
    eprintln!("node-failure: {}", out.trim());
    for f in [
        "local-sc.yaml",
        "local-pv.yaml",
        "local-pvc.yaml",
        "local-pod.yaml",
    ] {
        lab.ok(&["apply", "-f", &manifest(f)]);
    }
    lab.wait_for("pod/example-pv-pod", "condition=Ready");
    lab.ok(&[
        "exec",
        "example-pv-pod",
        "--",
        "sh",
        "-c",
        "echo written-before-the-power-cut > /usr/share/nginx/html/test.txt",
    ]);
    let pod = json(&lab.ok(&["get", "pod", "example-pv-pod", "-o", "json"]));
    assert_eq!(pod["spec"]["nodeName"], "node-1");
    // DefaultTolerationSeconds admission, with bonsai up's lab value.
    let tols = pod["spec"]["tolerations"].as_array().unwrap();
    assert!(
        tols.iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable"
                && t["effect"] == "NoExecute"
                && t["tolerationSeconds"] == 10),
        "{tols:?}"
    );

    // Power cut.
    let t_kill = Instant::now();
    lab.bonsai_ok("node", &["kill", "node-1"]);
    lab.wait_for("node/node-1", "condition=Ready=Unknown");
    let to_not_ready = t_kill.elapsed();
    let nodes = lab.ok(&["get", "nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("node-1 ") && l.contains(" NotReady ")),
        "{nodes}"
    );
    let node = json(&lab.ok(&["get", "node", "node-1", "-o", "json"]));
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    let node = json(&lab.poll(
        &["get", "node", "node-1", "-o", "json"],
        "the unreachable NoExecute taint",
        |s| s.contains("\"NoExecute\""),
    ));
    let taints = node["spec"]["taints"].as_array().unwrap();
    for effect in ["NoSchedule", "NoExecute"] {
        assert!(
            taints
                .iter()
                .any(|t| t["key"] == "node.kubernetes.io/unreachable"
                    && t["effect"] == effect
                    && t["timeAdded"].is_string()),
            "{effect}: {taints:?}"
        );
    }

    // The pod is evicted when its 10 s toleration runs out: DisruptionTarget, deleted
    // (Terminating: nobody on the dead node can confirm it stopped).
    lab.wait_for(
        "pod/example-pv-pod",
        "jsonpath={.metadata.deletionTimestamp}",
    );
    let to_evicted = t_kill.elapsed();
    lab.wait_for("pod/example-pv-pod", "condition=DisruptionTarget");
    let pod = json(&lab.ok(&["get", "pod", "example-pv-pod", "-o", "json"]));
    let dt = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .unwrap()
        .clone();
    assert_eq!(dt["reason"], "DeletionByTaintManager");
    assert_eq!(
        dt["message"],
        "Taint manager: deleting due to NoExecute taint"
    );
    let ev = lab.pod_events();
    assert!(
        ev.contains("TaintManagerEviction")
            && ev.contains("Marking for deletion Pod default/example-pv-pod"),
        "{ev}"
    );
    assert!(
        ev.contains("NodeNotReady") && ev.contains("Node is not ready"),
        "{ev}"
    );
    eprintln!(
        "node-failure ({backing}): kill → NotReady {:.1} s, kill → evicted {:.1} s",
        to_not_ready.as_secs_f64(),
        to_evicted.as_secs_f64()
    );

    // Re-created by hand: the old one must go first (force, as on a real dead node).
    lab.ok(&[
        "delete",
        "pod",
        "example-pv-pod",
        "--force",
        "--grace-period=0",
    ]);
    lab.ok(&["apply", "-f", &manifest("local-pod.yaml")]);
    lab.wait_for("pod/example-pv-pod", "condition=PodScheduled=False");
    let msg = lab.poll(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=example-pv-pod,reason=FailedScheduling",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        "FailedScheduling naming the taint and the node affinity",
        |m| m.contains("untolerated taint {node.kubernetes.io/unreachable: }"),
    );
    assert!(
        msg.contains("0/2 nodes are available:")
            && msg.contains("1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }")
            && msg.contains("1 node(s) didn't match PersistentVolume's node affinity"),
        "{msg}"
    );
    // The claim stays Bound to the PV on the dead node.
    let pvc = json(&lab.ok(&["get", "pvc", "example-local-claim", "-o", "json"]));
    assert_eq!(pvc["status"]["phase"], "Bound");
    assert_eq!(pvc["spec"]["volumeName"], "example-pv");
    let pv = json(&lab.ok(&["get", "pv", "example-pv", "-o", "json"]));
    assert_eq!(pv["status"]["phase"], "Bound");
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
            ["values"][0],
        "node-1"
    );

    // The machine comes back.
    let out = lab.bonsai_ok("node", &["start", "node-1"]);
    eprintln!("node-failure: {}", out.trim());
    lab.wait_for("node/node-1", "condition=Ready");
    lab.poll(
        &["get", "node", "node-1", "-o", "jsonpath={.spec.taints}"],
        "the taints removed",
        |s| s.trim().is_empty(),
    );
    lab.wait_for("pod/example-pv-pod", "jsonpath={.spec.nodeName}=node-1");
    match backing {
        "tmpfs" => {
            // A RAM disk does not survive a power cut: the data is gone, the mount fails.
            let ev = lab.poll(
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=example-pv-pod,reason=FailedMount",
                    "-o",
                    "jsonpath={.items[*].message}",
                ],
                "FailedMount for the missing path",
                |m| m.contains("does not exist"),
            );
            assert!(
                ev.contains(r#"path "/mnt/disks/vol1" does not exist"#),
                "{ev}"
            );
            let pod = json(&lab.ok(&["get", "pod", "example-pv-pod", "-o", "json"]));
            assert_eq!(pod["status"]["phase"], "Pending", "{pod}");
        }
        _ => {
            // A loop disk is a file on the host's disk: it comes back, and so does the pod.
            lab.wait_for("pod/example-pv-pod", "condition=Ready");
            let data = lab.ok(&[
                "exec",
                "example-pv-pod",
                "--",
                "cat",
                "/usr/share/nginx/html/test.txt",
            ]);
            assert_eq!(data.trim(), "written-before-the-power-cut");
        }
    }
}

#[test]
fn node_failure_tmpfs_disk_loses_the_data() {
    if skip() {
        return;
    }
    node_failure_lab("tmpfs");
}

#[test]
fn node_failure_loop_disk_keeps_the_data() {
    if skip() {
        return;
    }
    node_failure_lab("loop");
}
