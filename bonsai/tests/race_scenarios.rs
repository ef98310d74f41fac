//! Every shipped race scenario as a named, permanent test (seed 1, trace checked for its
//! outcome), plus a seeded sweep per scenario and the break switches.
//!
//! The tests drive the real `bonsai` binary: what a teacher types is what is tested.

use std::process::{Command, Output};

fn bonsai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bonsai"))
        .args(args)
        .output()
        .expect("run bonsai")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Seeds per scenario in the sweep (several hundred; `RACE_SWEEP_SEEDS` overrides).
fn sweep_seeds() -> String {
    std::env::var("RACE_SWEEP_SEEDS").unwrap_or_else(|_| "200".into())
}

fn passes(name: &str) {
    let out = bonsai(&["race", "run", name, "--seed", "1"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("outcome: PASSED"),
        "{name} seed 1 did not pass (exit {:?}):\n{}\n{}",
        out.status.code(),
        stdout.lines().rev().take(30).collect::<Vec<_>>().join("\n"),
        text(&out.stderr)
    );
    let out = bonsai(&["race", "explore", name, "--seeds", &sweep_seeds()]);
    assert!(
        out.status.success(),
        "{name}: the sweep found failures:\n{}",
        text(&out.stdout)
    );
}

macro_rules! scenario_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                passes($name);
            }
        )*

        /// Every shipped scenario has a test above (a new file without one fails here).
        #[test]
        fn every_shipped_scenario_has_a_named_test() {
            let out = bonsai(&["race", "list"]);
            assert!(out.status.success());
            let listed: Vec<String> = text(&out.stdout)
                .lines()
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                .collect();
            let tested = [$($name),*];
            for l in &listed {
                assert!(tested.contains(&l.as_str()), "scenario {l} has no named test");
            }
            assert!(listed.len() >= 12, "at least 12 scenarios ship, found {}", listed.len());
        }
    };
}

scenario_tests! {
    immediate_strands_the_pod => "immediate-strands-the-pod",
    wffc_schedules_the_pod => "wffc-schedules-the-pod",
    two_pods_race_for_the_last_pv => "two-pods-race-for-the-last-pv",
    two_volume_controllers_race_for_one_pv => "two-volume-controllers-race-for-one-pv",
    crash_between_the_writes_of_a_bind => "crash-between-the-writes-of-a-bind",
    stale_scheduler_cache_after_its_own_write => "stale-scheduler-cache-after-its-own-write",
    pod_deleted_between_reserve_and_prebind => "pod-deleted-between-reserve-and-prebind",
    watch_gap_across_compaction => "watch-gap-across-compaction",
    kubelet_sees_the_pod_before_its_claim_is_bound => "kubelet-sees-the-pod-before-its-claim-is-bound",
    k8s_73263_partial_binding => "k8s-73263-partial-binding",
    k8s_73216_informer_ordering => "k8s-73216-informer-ordering",
    k8s_65131_anti_affinity_with_local_pvs => "k8s-65131-anti-affinity-with-local-pvs",
    k8s_72013_rescheduled_while_binding => "k8s-72013-rescheduled-while-binding",
}

/// `--break resource-version`: the simulated API server ignores resourceVersion
/// preconditions, and explore finds the double bind, with its replay command.
#[test]
fn breaking_resource_versions_lets_two_controllers_bind_one_pv_twice() {
    let name = "two-volume-controllers-race-for-one-pv";
    let out = bonsai(&[
        "race",
        "explore",
        name,
        "--seeds",
        "200",
        "--break",
        "resource-version",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("a PersistentVolume is bound to at most one claim"),
        "{stdout}"
    );
    let replay = format!("bonsai race run {name} --seed ");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&replay))
        .expect("a replay command");
    assert!(
        line.trim_end().ends_with("--break resource-version"),
        "{line}"
    );
    // The replay command reproduces the failure, trace included.
    let seed = line.trim().split_whitespace().nth(5).unwrap().to_string();
    let again = bonsai(&[
        "race",
        "run",
        name,
        "--seed",
        &seed,
        "--break",
        "resource-version",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stdout).contains("outcome: INVARIANT BROKEN"));
}

#[test]
fn unknown_scenarios_and_switches_are_named() {
    let out = bonsai(&["race", "run", "no-such-race"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("no scenario named \"no-such-race\""));
    let out = bonsai(&[
        "race",
        "run",
        "wffc-schedules-the-pod",
        "--break",
        "gravity",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("unknown break switch \"gravity\""));
}
