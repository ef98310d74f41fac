//! `--break assume-cache`: the scheduler core is built with `CoreConfig.assume_cache = false`,
//! so it decides from its informer cache only; explore finds a broken invariant within a few
//! seeds of the stale-cache scenario and prints its replay command.

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

#[test]
fn breaking_the_assume_cache_is_found_by_explore() {
    let name = "stale-scheduler-cache-after-its-own-write";
    let out = bonsai(&[
        "race",
        "explore",
        name,
        "--seeds",
        "3",
        "--break",
        "assume-cache",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("invariant broke"), "{stdout}");
    let replay = format!("bonsai race run {name} --seed ");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&replay))
        .expect("a replay command");
    assert!(line.trim_end().ends_with("--break assume-cache"), "{line}");
}
