//! `cargo bench -p bonsai --bench race`: the simulator's speed, in simulated steps per second
//! with every per-step invariant on (the replay check runs at each quiescence, as always), per
//! shipped scenario and overall; then the same with the trace kept (what `bonsai race run`
//! pays).
//!
//! Prints figures only (speed targets are never test assertions). Knobs:
//! `BONSAI_BENCH_SEEDS` (seeds per scenario, default 2000), `BONSAI_BENCH_ONLY` (a substring of
//! the scenario names to run). The machine's load is printed next to the figures: on a shared
//! 2-core machine, compare runs taken under a similar load.
//!
//! The simulator lives in the `bonsai` binary crate; it is compiled in here by path (it depends
//! on nothing else of the binary), so the bench measures exactly the code `bonsai race` runs.

#![allow(dead_code, unused_imports)]

#[path = "../src/race/mod.rs"]
mod race;

use std::time::Instant;

// The global allocator comes with apiserver (feature `mimalloc`, as in the `bonsai` binary).

use race::{Options, Verdict};

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

struct Row {
    steps: u64,
    secs: f64,
    failed: u64,
}

fn sweep(scn: &race::Scenario, seeds: u64, trace: bool) -> Row {
    let started = Instant::now();
    let (mut steps, mut failed, mut bytes) = (0u64, 0u64, 0usize);
    for seed in 1..=seeds {
        let mut opts = Options::new(seed);
        opts.trace = trace;
        let r = race::run(scn, opts);
        steps += r.steps;
        bytes += r.trace.len();
        if !matches!(r.verdict, Verdict::Passed) {
            failed += 1;
        }
    }
    // Keep the trace's cost observable (the optimiser must not drop the text).
    std::hint::black_box(bytes);
    Row {
        steps,
        secs: started.elapsed().as_secs_f64().max(1e-9),
        failed,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted like BONSAI_BENCH_ONLY.
    let only = std::env::var("BONSAI_BENCH_ONLY")
        .ok()
        .or_else(|| std::env::args().skip(1).find(|a| !a.starts_with("--")));
    let seeds: u64 = std::env::var("BONSAI_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let all = race::builtin().expect("the shipped scenarios parse");
    let chosen: Vec<_> = all
        .iter()
        .filter(|s| only.as_deref().is_none_or(|o| s.name.contains(o)))
        .collect();
    let width = chosen
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(8)
        .max(8);

    println!(
        "bonsai race: {} scenarios x {seeds} seeds, trace off, every per-step invariant on (load {})",
        chosen.len(),
        load()
    );
    println!(
        "{:<width$} {:>9} {:>10} {:>8} {:>12} {:>9} {:>7}",
        "scenario", "seeds", "steps", "secs", "steps/s", "seeds/s", "failed"
    );
    let (mut steps, mut secs, mut failed) = (0u64, 0f64, 0u64);
    for scn in &chosen {
        let r = sweep(scn, seeds, false);
        println!(
            "{:<width$} {:>9} {:>10} {:>8.2} {:>12.0} {:>9.0} {:>7}",
            scn.name,
            seeds,
            r.steps,
            r.secs,
            r.steps as f64 / r.secs,
            seeds as f64 / r.secs,
            r.failed
        );
        steps += r.steps;
        secs += r.secs;
        failed += r.failed;
    }
    println!(
        "{:<width$} {:>9} {:>10} {:>8.2} {:>12.0} {:>9.0} {:>7}",
        "overall",
        seeds * chosen.len() as u64,
        steps,
        secs,
        steps as f64 / secs,
        (seeds * chosen.len() as u64) as f64 / secs,
        failed
    );

    // With the trace kept: a tenth of the seeds (at least 10).
    let traced = (seeds / 10).max(10);
    let (mut tsteps, mut tsecs) = (0u64, 0f64);
    for scn in &chosen {
        let r = sweep(scn, traced, true);
        tsteps += r.steps;
        tsecs += r.secs;
    }
    println!(
        "{:<width$} {:>9} {:>10} {:>8.2} {:>12.0}",
        "overall, trace kept",
        traced * chosen.len() as u64,
        tsteps,
        tsecs,
        tsteps as f64 / tsecs
    );
    println!("load after: {}", load());
    if failed > 0 {
        println!(
            "note: {failed} seeds did not pass (replay them with `bonsai race explore NAME --seeds N`)"
        );
    }
}
