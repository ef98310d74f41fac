//! Same seed, same trace: every scenario, two seeds, run twice, byte-identical stdout
//! (madsim's MADSIM_TEST_CHECK_DETERMINISM). Also the golden traces of two scenarios
//! (`UPDATE_GOLDEN=1` rewrites them) and the malformed-file messages.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bonsai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bonsai"))
        .args(args)
        .output()
        .expect("run bonsai")
}

fn names() -> Vec<String> {
    let out = bonsai(&["race", "list"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for name in names() {
        for seed in ["3", "1234567"] {
            let a = bonsai(&["race", "run", &name, "--seed", seed]);
            let b = bonsai(&["race", "run", &name, "--seed", seed]);
            assert!(!a.stdout.is_empty());
            assert!(
                a.stdout == b.stdout,
                "{name} seed {seed}: two runs printed different traces"
            );
            let digest = |o: &Output| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find(|l| l.starts_with("trace digest: "))
                    .map(str::to_string)
            };
            assert!(digest(&a).is_some() && digest(&a) == digest(&b));
        }
    }
}

fn golden(name: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/races/golden")
        .join(format!("{name}.seed1.trace"));
    let out = bonsai(&["race", "run", name, "--seed", "1"]);
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{name} seed 1 no longer prints its golden trace ({}); first difference at line {}:\n got: {}\nwant: {}\n(UPDATE_GOLDEN=1 rewrites it after a deliberate change)",
            path.display(),
            first + 1,
            got.lines().nth(first).unwrap_or("<end>"),
            want.lines().nth(first).unwrap_or("<end>")
        );
    }
}

#[test]
fn golden_trace_wffc_schedules_the_pod() {
    golden("wffc-schedules-the-pod");
}

#[test]
fn golden_trace_two_volume_controllers_race_for_one_pv() {
    golden("two-volume-controllers-race-for-one-pv");
}

#[test]
fn a_malformed_scenario_names_file_line_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "summary: x\nnodes: node-1\n\nstorageclass local mode=Sometimes\nexpect pv/a phase=Bound\n",
            ":4: mode must be Immediate or WaitForFirstConsumer, found \"Sometimes\"",
        ),
        (
            "summary: x\nnodes: node-1\npv pv-1 size=lots\n",
            ":3: size \"lots\" is not a quantity (like 5Gi)",
        ),
        (
            "summary: x\nnodes: node-1\npvc a size=1Gi\nexpect pvc/a colour=red\n",
            ":4: unknown field \"colour\" for pvc",
        ),
        (
            "summary: x\nnodes: node-1\ncrash kubelet-node-9\nexpect pvc/a phase=Bound\n",
            ":3: unknown actor \"kubelet-node-9\"",
        ),
        ("summary: x\nnodes: node-1\npvc a size=1Gi\n", ": a scenario must state its expected outcome"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.race"));
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        let out = bonsai(&["race", "run", p]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.contains(&format!("{p}{want}")),
            "case {i}: expected {p}{want}, got: {stderr}"
        );
    }
}
