//! The lesson's lab, end to end, as a student runs it: `bonsai up` with real nodes, disks made
//! with `bonsai disk add`, the lesson's unchanged manifests from examples/lab through the real
//! kubectl, `kubectl exec` into the pod, "log in to node-1" with `bonsai node exec`, the
//! lesson's deletion order, and then the same with the static local provisioner.
//!
//! Needs root (nodes are processes with their own mount and PID namespaces, disks are real
//! mounts) and kubectl; without either the tests say why and return. Each test runs one
//! cluster (`--port 0`, its own data dir and kubectl cache dir); a guard runs `bonsai down`
//! even when the test fails, and the test checks that no process and no mount of the cluster
//! is left on the host.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const DEADLINE: Duration = Duration::from_secs(60);

fn lab(file: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/lab")
        .join(file);
    p.to_str().unwrap().to_string()
}

fn skip() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIP: the lab needs root (bonsai nodes are processes with their own mount and PID \
             namespaces; disks and volumes are real mounts)"
        );
        return true;
    }
    if !kubectl_available() {
        eprintln!("SKIP: kubectl is not on PATH; the lab drives the real kubectl");
        return true;
    }
    false
}

/// Rows of `kubectl get` as (header → cell) maps.
fn table(out: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let (headers, rows) = parse_table(out);
    rows.into_iter()
        .map(|r| headers.iter().cloned().zip(r).collect())
        .collect()
}

/// `describe` output with runs of spaces collapsed, so that lines compare without their
/// alignment: "Status:            Available" → "Status: Available".
fn squeeze(s: &str) -> String {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An Events line of (squeezed) `describe` output: `Type Reason Age From Message`.
fn has_event(describe: &str, type_reason: &str, from_message: &str) -> bool {
    describe
        .lines()
        .any(|l| l.starts_with(&format!("{type_reason} ")) && l.ends_with(from_message))
}

/// (pid, start time) of every process below `root`, from /proc.
fn descendants(root: i32) -> Vec<(i32, String)> {
    let mut all: Vec<(i32, i32, String)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid = f.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        all.push((pid, ppid, f.get(19).unwrap_or(&"").to_string()));
    }
    let mut out: Vec<(i32, String)> = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid, st) in &all {
            if *ppid == p && !out.iter().any(|(q, _)| q == pid) {
                out.push((*pid, st.clone()));
                frontier.push(*pid);
            }
        }
    }
    out
}

fn start_time(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let st = rest.split_whitespace().nth(19)?.to_string();
    // A zombie is gone for our purposes (its parent may simply not have reaped it yet).
    (!rest.trim_start().starts_with('Z')).then_some(st)
}

/// One lab cluster. `finish` stops it and asserts that nothing of it is left; if the test
/// fails first, `Drop` stops it anyway and kills whatever survived.
struct Lab {
    c: TestCluster,
    tree: Vec<(i32, String)>,
    finished: bool,
}

impl Lab {
    fn up(extra: &[&str]) -> Lab {
        let t = Instant::now();
        let c = TestCluster::up_with(extra);
        eprintln!(
            "lab: bonsai up {} ready in {:.0} ms\n{}",
            extra.join(" "),
            t.elapsed().as_secs_f64() * 1e3,
            c.up_stdout
        );
        Lab {
            c,
            tree: Vec::new(),
            finished: false,
        }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.c.kubectl(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.c.kubectl_ok(args)
    }

    /// `kubectl wait … --for=<cond>` (a watch, no polling), which must succeed.
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

    /// Polls a kubectl query until `pred` holds (events and changing objects, which
    /// `kubectl wait` cannot express).
    fn poll(&self, args: &[&str], what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let ok = wait_until(DEADLINE, || {
            let out = self.kubectl(args);
            last = text(&out.stdout);
            pred(&last)
        });
        assert!(
            ok,
            "timed out waiting for {what}; last `kubectl {}`:\n{last}\n{}",
            args.join(" "),
            self.diagnostics()
        );
        last
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

    /// Processes of the cluster still alive and host mounts that name the cluster or
    /// /mnt/disks.
    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for (pid, st) in &self.tree {
            if start_time(*pid).as_deref() == Some(st.as_str()) {
                let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ");
                left.push(format!("process {pid}: {cmd}"));
            }
        }
        let data = self.c.data_dir().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for line in mounts.lines() {
            let target = line.split_whitespace().nth(4).unwrap_or("");
            if target.starts_with("/mnt/disks") || target.starts_with(&data) {
                left.push(format!("host mount: {line}"));
            }
        }
        left
    }

    /// `bonsai down`, then nothing of the cluster may remain.
    fn finish(mut self) {
        self.tree = descendants(self.c.pid);
        assert!(
            self.tree.len() > 3,
            "expected nodes and containers under the cluster process: {:?}",
            self.tree
        );
        let t = Instant::now();
        let out = self.c.down();
        self.finished = true;
        assert!(
            out.status.success(),
            "bonsai down: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        eprintln!(
            "lab: bonsai down in {:.0} ms ({} processes)",
            t.elapsed().as_secs_f64() * 1e3,
            self.tree.len()
        );
        let left = self.leftovers();
        assert!(left.is_empty(), "left behind after bonsai down: {left:#?}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.tree = descendants(self.c.pid);
        let _ = self.c.down();
        for (pid, st) in &self.tree {
            if start_time(*pid).as_deref() == Some(st.as_str()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let left = self.leftovers();
        if !left.is_empty() {
            eprintln!("lab: left behind after a failed test: {left:#?}");
        }
    }
}

/// Section 1–8 of the lesson with the hand-made PV `example-pv`.
#[test]
fn lesson_lab_with_a_hand_made_local_pv() {
    if skip() {
        return;
    }
    let l = Lab::up(&["--nodes", "3"]);
    for n in ["node-1", "node-2", "node-3"] {
        assert!(l.c.up_stdout.contains(n), "{}", l.c.up_stdout);
    }
    let nodes = l.ok(&["get", "nodes"]);
    let rows = table(&nodes);
    assert_eq!(rows.len(), 3, "{nodes}");
    assert!(rows.iter().all(|r| r["STATUS"] == "Ready"), "{nodes}");

    // On node-1: three RAM disks standing in for extra local SSDs.
    for vol in ["vol1", "vol2", "vol3"] {
        let out = l.bonsai_ok("disk", &["add", "node-1", vol, "--size", "1Gi"]);
        assert!(
            out.contains(&format!("mounted at /mnt/disks/{vol} on node-1")),
            "{out}"
        );
    }
    let ls = l.bonsai_ok("node", &["exec", "node-1", "--", "ls", "/mnt/disks"]);
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        ["vol1", "vol2", "vol3"]
    );
    let df = l.bonsai_ok(
        "node",
        &[
            "exec",
            "node-1",
            "--",
            "grep",
            "/mnt/disks/vol",
            "/proc/mounts",
        ],
    );
    assert_eq!(
        df.lines().filter(|l| l.contains(" tmpfs rw")).count(),
        3,
        "{df}"
    );
    assert!(df.contains(" tmpfs "), "{df}");
    // Only inside node-1: not on the host, not on node-2.
    assert!(!std::path::Path::new("/mnt/disks/vol1").exists());
    let other = l.bonsai_ok("node", &["exec", "node-2", "--", "ls", "/mnt/disks"]);
    assert_eq!(other.trim(), "", "node-2 sees node-1's disks");

    // The PV: Available, with the real columns.
    let out = l.ok(&["create", "-f", &lab("local-pv.yaml")]);
    assert_eq!(out.trim(), "persistentvolume/example-pv created");
    l.wait_for("pv/example-pv", "jsonpath={.status.phase}=Available");
    let pv = l.ok(&["get", "pv"]);
    let (headers, _) = parse_table(&pv);
    assert_eq!(
        headers,
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
    let r = &table(&pv)[0];
    assert_eq!(
        (
            &*r["NAME"],
            &*r["CAPACITY"],
            &*r["ACCESS MODES"],
            &*r["RECLAIM POLICY"],
            &*r["STATUS"],
            &*r["CLAIM"],
            &*r["STORAGECLASS"],
            &*r["REASON"]
        ),
        (
            "example-pv",
            "5Gi",
            "RWO",
            "Delete",
            "Available",
            "",
            "local-storage",
            ""
        ),
        "{pv}"
    );

    // The StorageClass with delayed binding, and the claim that waits for its consumer.
    let out = l.ok(&["create", "-f", &lab("local-sc.yaml")]);
    assert_eq!(
        out.trim(),
        "storageclass.storage.k8s.io/local-storage created"
    );
    let out = l.ok(&["create", "-f", &lab("local-pvc.yaml")]);
    assert_eq!(
        out.trim(),
        "persistentvolumeclaim/example-local-claim created"
    );
    l.poll(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=example-local-claim",
        ],
        "the WaitForFirstConsumer event",
        |s| {
            squeeze(s).contains(
                "Normal WaitForFirstConsumer persistentvolumeclaim/example-local-claim waiting \
                 for first consumer to be created before binding",
            )
        },
    );
    let pvc = l.ok(&["get", "pvc"]);
    let r = &table(&pvc)[0];
    assert_eq!(
        (
            &*r["NAME"],
            &*r["STATUS"],
            &*r["VOLUME"],
            &*r["STORAGECLASS"]
        ),
        ("example-local-claim", "Pending", "", "local-storage"),
        "{pvc}"
    );
    let d = squeeze(&l.ok(&["describe", "pvc", "example-local-claim"]));
    assert!(
        has_event(
            &d,
            "Normal WaitForFirstConsumer",
            "persistentvolume-controller waiting for first consumer to be created before binding"
        ),
        "{d}"
    );

    // The pod: the scheduler picks node-1 and example-pv together.
    let t = Instant::now();
    let out = l.ok(&["create", "-f", &lab("local-pod.yaml")]);
    assert_eq!(out.trim(), "pod/example-pv-pod created");
    l.wait_for("pod/example-pv-pod", "jsonpath={.status.phase}=Running");
    eprintln!(
        "lab: pod Running {:.0} ms after kubectl create (incl. two kubectl runs)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let pvc = l.ok(&["get", "pvc"]);
    let r = &table(&pvc)[0];
    assert_eq!(
        (
            &*r["STATUS"],
            &*r["VOLUME"],
            &*r["CAPACITY"],
            &*r["ACCESS MODES"],
            &*r["STORAGECLASS"]
        ),
        ("Bound", "example-pv", "5Gi", "RWO", "local-storage"),
        "{pvc}"
    );
    let pods = l.ok(&["get", "pod", "-o", "wide"]);
    let r = &table(&pods)[0];
    assert_eq!(
        (
            &*r["NAME"],
            &*r["READY"],
            &*r["STATUS"],
            &*r["NODE"],
            &*r["IP"]
        ),
        ("example-pv-pod", "1/1", "Running", "node-1", "127.0.0.1"),
        "{pods}"
    );

    // kubectl exec: a plain command, and a shell fed on stdin (-i), as the lesson's -it.
    l.ok(&[
        "exec",
        "example-pv-pod",
        "--",
        "touch",
        "/usr/share/nginx/html/test.txt",
    ]);
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(l.c.kubeconfig())
        .arg("--cache-dir")
        .arg(l.c.cache.path())
        .args(["exec", "-i", "example-pv-pod", "--", "/bin/sh"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl exec -i");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"cd /usr/share/nginx/html\ntouch from-shell.txt\nls\nexit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl exec -i: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).split_whitespace().collect::<Vec<_>>(),
        ["from-shell.txt", "test.txt"]
    );

    // On node-1, the files are on the disk.
    let ls = l.bonsai_ok("node", &["exec", "node-1", "--", "ls", "/mnt/disks/vol1"]);
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        ["from-shell.txt", "test.txt"]
    );

    // Delete and re-create the pod: the file is still there.
    let out = l.ok(&["delete", "-f", &lab("local-pod.yaml")]);
    assert_eq!(out.trim(), "pod \"example-pv-pod\" deleted");
    let out = l.ok(&["create", "-f", &lab("local-pod.yaml")]);
    assert_eq!(out.trim(), "pod/example-pv-pod created");
    l.wait_for("pod/example-pv-pod", "jsonpath={.status.phase}=Running");
    let ls = l.ok(&[
        "exec",
        "example-pv-pod",
        "--",
        "ls",
        "/usr/share/nginx/html",
    ]);
    assert_eq!(
        ls.split_whitespace().collect::<Vec<_>>(),
        ["from-shell.txt", "test.txt"]
    );

    // Another order first: the claim deleted while the pod uses it stays Terminating
    // (kubernetes.io/pvc-protection) until the pod is gone.
    l.ok(&["delete", "pvc", "example-local-claim", "--wait=false"]);
    let pvc = l.ok(&["get", "pvc"]);
    assert_eq!(table(&pvc)[0]["STATUS"], "Terminating", "{pvc}");
    let fin = l.ok(&[
        "get",
        "pvc",
        "example-local-claim",
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]);
    assert!(fin.contains("kubernetes.io/pvc-protection"), "{fin}");

    // The lesson's order: the pod; the disk (umount); the claim; the volume.
    l.ok(&["delete", "-f", &lab("local-pod.yaml")]);
    let out = l.bonsai_ok("disk", &["rm", "node-1", "vol1"]);
    assert!(
        out.contains("unmounted from /mnt/disks/vol1 on node-1"),
        "{out}"
    );
    let ls = l.bonsai_ok("node", &["exec", "node-1", "--", "ls", "/mnt/disks"]);
    assert_eq!(ls.split_whitespace().collect::<Vec<_>>(), ["vol2", "vol3"]);
    l.wait_for("pvc/example-local-claim", "delete");
    // A hand-made local PV with reclaim policy Delete: Kubernetes has no deleter for it, so it
    // ends Failed, with the real message.
    l.wait_for("pv/example-pv", "jsonpath={.status.phase}=Failed");
    let d = squeeze(&l.ok(&["describe", "pv", "example-pv"]));
    for needle in [
        "Status: Failed",
        "Claim: default/example-local-claim",
        "Message: error getting deleter volume plugin for volume \"example-pv\": no deletable \
         volume plugin matched",
    ] {
        assert!(d.contains(needle), "describe pv lacks {needle:?}:\n{d}");
    }
    assert!(
        has_event(
            &d,
            "Warning VolumeFailedDelete",
            "persistentvolume-controller error getting deleter volume plugin for volume \
             \"example-pv\": no deletable volume plugin matched"
        ),
        "{d}"
    );
    let out = l.ok(&["delete", "pv", "example-pv"]);
    assert_eq!(out.trim(), "persistentvolume \"example-pv\" deleted");
    let left = l.kubectl(&["get", "pv,pvc,pods"]);
    assert!(
        text(&left.stderr).contains("No resources found"),
        "{}{}",
        text(&left.stdout),
        text(&left.stderr)
    );

    l.finish();
}

/// The static local provisioner: every mount under /mnt/disks becomes a `local-pv-<hash>` PV;
/// a released one is cleaned and created again.
#[test]
fn lesson_lab_with_the_static_provisioner() {
    if skip() {
        return;
    }
    let l = Lab::up(&["--nodes", "2", "--static-provisioner=local-storage"]);
    assert!(
        l.c.up_stdout
            .contains("static provisioner (local-storage, /mnt/disks)"),
        "{}",
        l.c.up_stdout
    );
    // The provisioner reads the class (reclaim policy, mount options), as upstream's does.
    l.ok(&["create", "-f", &lab("local-sc.yaml")]);
    // Two disks big enough for the lesson's 5Gi claim, and a plain directory, which is never
    // published: one PV, one disk.
    for vol in ["vol1", "vol2"] {
        l.bonsai_ok("disk", &["add", "node-1", vol, "--size", "5Gi"]);
    }
    l.bonsai_ok(
        "node",
        &["exec", "node-1", "--", "mkdir", "/mnt/disks/not-a-disk"],
    );

    let pv = l.poll(&["get", "pv"], "two Available local PVs", |s| {
        let rows = table(s);
        rows.len() == 2 && rows.iter().all(|r| r["STATUS"] == "Available")
    });
    for r in table(&pv) {
        let name = &r["NAME"];
        let hash = name.strip_prefix("local-pv-").unwrap_or("");
        assert!(
            hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{pv}"
        );
        assert_eq!(
            (
                &*r["CAPACITY"],
                &*r["ACCESS MODES"],
                &*r["RECLAIM POLICY"],
                &*r["CLAIM"],
                &*r["STORAGECLASS"]
            ),
            ("5Gi", "RWO", "Delete", "", "local-storage"),
            "{pv}"
        );
    }
    let names: Vec<String> = table(&pv).into_iter().map(|r| r["NAME"].clone()).collect();
    let paths: Vec<String> = names
        .iter()
        .map(|n| l.ok(&["get", "pv", n, "-o", "jsonpath={.spec.local.path}"]))
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(sorted, ["/mnt/disks/vol1", "/mnt/disks/vol2"]);
    let vol1 = names[paths.iter().position(|p| p == "/mnt/disks/vol1").unwrap()].clone();
    let d = squeeze(&l.ok(&["describe", "pv", &vol1]));
    for needle in [
        format!("Name: {vol1}"),
        "StorageClass: local-storage".into(),
        "Status: Available".into(),
        "\nClaim:\n".into(),
        "Reclaim Policy: Delete".into(),
        "Access Modes: RWO".into(),
        "Capacity: 5Gi".into(),
        "Node Affinity:\nRequired Terms:\nTerm 0: kubernetes.io/hostname in [node-1]".into(),
        "\nMessage:\n".into(),
        "Source:\nType: LocalVolume (a persistent volume backed by local storage on a node)\n\
         Path: /mnt/disks/vol1"
            .into(),
    ] {
        assert!(d.contains(&needle), "describe pv lacks {needle:?}:\n{d}");
    }

    // A claim and a pod use one of them.
    l.ok(&["create", "-f", &lab("local-pvc.yaml")]);
    l.ok(&["create", "-f", &lab("local-pod.yaml")]);
    l.wait_for("pod/example-pv-pod", "jsonpath={.status.phase}=Running");
    let node = l.ok(&[
        "get",
        "pod",
        "example-pv-pod",
        "-o",
        "jsonpath={.spec.nodeName}",
    ]);
    assert_eq!(node, "node-1");
    let used = l.ok(&[
        "get",
        "pvc",
        "example-local-claim",
        "-o",
        "jsonpath={.spec.volumeName}",
    ]);
    assert!(names.contains(&used), "{used} not in {names:?}");
    let path = l.ok(&["get", "pv", &used, "-o", "jsonpath={.spec.local.path}"]);
    let uid = l.ok(&["get", "pv", &used, "-o", "jsonpath={.metadata.uid}"]);
    l.ok(&[
        "exec",
        "example-pv-pod",
        "--",
        "touch",
        "/usr/share/nginx/html/test.txt",
    ]);
    let ls = l.bonsai_ok("node", &["exec", "node-1", "--", "ls", &path]);
    assert_eq!(ls.trim(), "test.txt");

    // Released: the provisioner cleans the disk, deletes the PV and publishes it again.
    l.ok(&["delete", "-f", &lab("local-pod.yaml")]);
    l.ok(&["delete", "-f", &lab("local-pvc.yaml")]);
    l.poll(
        &[
            "get",
            "pv",
            &used,
            "-o",
            "jsonpath={.metadata.uid} {.status.phase}",
        ],
        "the released PV cleaned and created again",
        |s| {
            let mut f = s.split_whitespace();
            matches!((f.next(), f.next()), (Some(u), Some("Available")) if u != uid)
        },
    );
    let ls = l.bonsai_ok("node", &["exec", "node-1", "--", "ls", "-A", &path]);
    assert_eq!(ls.trim(), "", "the released volume was not cleaned");
    let pv = l.ok(&["get", "pv"]);
    assert_eq!(table(&pv).len(), 2, "{pv}");

    l.finish();
}

/// Without root, `--nodes` is refused with a message that says what to do instead; with
/// `--nodes 0 --fake-nodes N`, nodes come without processes.
#[test]
fn fake_nodes_without_processes() {
    if !kubectl_available() {
        eprintln!("SKIP: kubectl is not on PATH");
        return;
    }
    let mut c = TestCluster::up_with(&[
        "--nodes",
        "0",
        "--fake-nodes",
        "3",
        "--fake-node-prefix",
        "node-",
    ]);
    assert!(
        c.up_stdout.contains("3 nodes node-1…node-3"),
        "{}",
        c.up_stdout
    );
    let nodes = c.kubectl_ok(&["get", "nodes"]);
    let rows = table(&nodes);
    assert_eq!(rows.len(), 3, "{nodes}");
    assert!(rows.iter().all(|r| r["STATUS"] == "Ready"), "{nodes}");
    // The lesson's PV, class, claim and pod: bound and "Running" on node-1, no process.
    for f in [
        "local-pv.yaml",
        "local-sc.yaml",
        "local-pvc.yaml",
        "local-pod.yaml",
    ] {
        c.kubectl_ok(&["create", "-f", &lab(f)]);
    }
    let out = c.kubectl(&[
        "wait",
        "pod/example-pv-pod",
        "--for=jsonpath={.status.phase}=Running",
        "--timeout=60s",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pvc = c.kubectl_ok(&[
        "get",
        "pvc",
        "example-local-claim",
        "-o",
        "jsonpath={.spec.volumeName}",
    ]);
    assert_eq!(pvc, "example-pv");
    assert!(
        descendants(c.pid).is_empty(),
        "fake nodes started processes"
    );
    let out = c.down();
    assert!(out.status.success());
}

#[test]
fn bad_node_flags_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for (args, needle) in [
        (vec!["--cpu", "lots"], "invalid --cpu"),
        (vec!["--memory", "8x"], "invalid --memory"),
        (
            vec!["--fake-nodes", "2", "--fake-node-prefix", "node-"],
            "invalid --fake-node-prefix",
        ),
        (
            vec!["--static-provisioner=Local_Storage"],
            "invalid --static-provisioner",
        ),
    ] {
        let mut all = vec!["up", "--port", "0", "--data-dir", data];
        all.extend(args.iter());
        let out = bonsai(&all);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            text(&out.stderr).contains(needle),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(
        !dir.path().join("bonsai.state").exists() && !dir.path().join("nodes").exists(),
        "a refused `up` started something"
    );
    if !nix::unistd::geteuid().is_root() {
        let out = bonsai(&["up", "--port", "0", "--data-dir", data, "--nodes", "2"]);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains("need root") && err.contains("--nodes 0 --fake-nodes"),
            "{err}"
        );
    }
}
