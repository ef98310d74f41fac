//! `bonsai race list | show | run | explore`: the deterministic simulator's command line.
//!
//! stdout carries only what a seed determines (the trace, the outcome, the replay commands),
//! so two runs of one seed print the same bytes; timings go to stderr.

use std::io::Write;
use std::time::Instant;

use clap::{Args, Subcommand};

use crate::race::{self, invariants, Break, Options, Verdict};

#[derive(Args, Debug)]
pub struct RaceArgs {
    #[command(subcommand)]
    command: RaceCommand,
}

#[derive(Subcommand, Debug)]
enum RaceCommand {
    /// One scenario a line: its name, then what it shows.
    List {
        /// Also print the invariants the simulator checks.
        #[arg(long)]
        invariants: bool,
    },
    /// Print a scenario file (to copy and edit).
    Show { name: String },
    /// Run one seed of a scenario and print its trace and outcome.
    Run {
        /// A scenario name from `bonsai race list`, or a path to a .race file.
        name: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Switch off one safety mechanism: resource-version or assume-cache.
        #[arg(long = "break", value_name = "SWITCH")]
        breaks: Vec<String>,
    },
    /// Run seeds 1..=N; print the replay command of every seed that breaks an invariant.
    Explore {
        name: String,
        #[arg(long)]
        seeds: u64,
        #[arg(long = "break", value_name = "SWITCH")]
        breaks: Vec<String>,
    },
}

/// Exit codes: 0 the expected outcome held; 1 an invariant broke; 2 an expectation failed;
/// 3 the scenario cannot be loaded or a switch is unknown.
pub fn run(args: RaceArgs) -> anyhow::Result<i32> {
    match args.command {
        RaceCommand::List { invariants: inv } => {
            let all = race::builtin()?;
            let width = all.iter().map(|s| s.name.len()).max().unwrap_or(0);
            let mut out = std::io::stdout().lock();
            for s in &all {
                writeln!(out, "{:<width$}  {}", s.name, s.summary)?;
            }
            if inv {
                writeln!(out)?;
                for (sentence, when) in invariants::ALL {
                    writeln!(out, "invariant: {sentence} ({when})")?;
                }
            }
            Ok(0)
        }
        RaceCommand::Show { name } => match race::load(&name) {
            Ok(s) => {
                print!("{}", s.text);
                Ok(0)
            }
            Err(e) => {
                eprintln!("bonsai race: {e}");
                Ok(3)
            }
        },
        RaceCommand::Run { name, seed, breaks } => {
            let Some((scn, breaks)) = prepare(&name, &breaks) else {
                return Ok(3);
            };
            let mut opts = Options::new(seed);
            opts.breaks = breaks.clone();
            let started = Instant::now();
            let r = race::run(&scn, opts);
            let elapsed = started.elapsed();
            let mut out = std::io::stdout().lock();
            out.write_all(r.trace.as_bytes())?;
            let code = match &r.verdict {
                Verdict::Passed => {
                    writeln!(
                        out,
                        "outcome: PASSED — every invariant and every expectation held ({} steps)",
                        r.steps
                    )?;
                    0
                }
                Verdict::Broken(f) => {
                    writeln!(
                        out,
                        "outcome: INVARIANT BROKEN at step {}: {}",
                        f.step, f.invariant
                    )?;
                    writeln!(out, "  {}", f.detail)?;
                    writeln!(out, "reproduce: {}", replay(&name, seed, &breaks))?;
                    1
                }
                Verdict::Unexpected { line, message } => {
                    writeln!(out, "outcome: UNEXPECTED — {}:{line}: {message}", scn.file)?;
                    writeln!(out, "reproduce: {}", replay(&name, seed, &breaks))?;
                    2
                }
            };
            writeln!(out, "trace digest: {:016x}", r.digest())?;
            drop(out);
            eprintln!(
                "bonsai race: {} steps in {:.1} ms ({:.0} steps/s)",
                r.steps,
                elapsed.as_secs_f64() * 1e3,
                r.steps as f64 / elapsed.as_secs_f64().max(1e-9)
            );
            Ok(code)
        }
        RaceCommand::Explore {
            name,
            seeds,
            breaks,
        } => {
            let Some((scn, breaks)) = prepare(&name, &breaks) else {
                return Ok(3);
            };
            let started = Instant::now();
            let (mut steps, mut broken, mut unexpected) = (0u64, 0u64, 0u64);
            let mut out = std::io::stdout().lock();
            for seed in 1..=seeds {
                let mut opts = Options::new(seed);
                opts.breaks = breaks.clone();
                opts.trace = false;
                let r = race::run(&scn, opts);
                steps += r.steps;
                match &r.verdict {
                    Verdict::Passed => {}
                    Verdict::Broken(f) => {
                        broken += 1;
                        writeln!(
                            out,
                            "seed {seed}: invariant broke at step {}: {}",
                            f.step, f.invariant
                        )?;
                        writeln!(out, "  {}", f.detail)?;
                        writeln!(out, "  {}", replay(&name, seed, &breaks))?;
                    }
                    Verdict::Unexpected { line, message } => {
                        unexpected += 1;
                        writeln!(
                            out,
                            "seed {seed}: expectation failed: {}:{line}: {message}",
                            scn.file
                        )?;
                        writeln!(out, "  {}", replay(&name, seed, &breaks))?;
                    }
                }
            }
            writeln!(
                out,
                "explored {seeds} seeds of {}: {} passed, {broken} broke an invariant, {unexpected} missed an expectation",
                scn.name,
                seeds - broken - unexpected
            )?;
            drop(out);
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "bonsai race: {seeds} seeds, {steps} steps in {secs:.2} s ({:.0} steps/s, {:.0} seeds/s)",
                steps as f64 / secs,
                seeds as f64 / secs
            );
            Ok(if broken > 0 {
                1
            } else if unexpected > 0 {
                2
            } else {
                0
            })
        }
    }
}

fn prepare(name: &str, breaks: &[String]) -> Option<(race::Scenario, Vec<Break>)> {
    let scn = match race::load(name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bonsai race: {e}");
            return None;
        }
    };
    let mut out = Vec::new();
    for b in breaks {
        match Break::parse(b) {
            Some(b) => out.push(b),
            None => {
                eprintln!(
                    "bonsai race: unknown break switch {b:?} (resource-version, assume-cache)"
                );
                return None;
            }
        }
    }
    Some((scn, out))
}

fn replay(name: &str, seed: u64, breaks: &[Break]) -> String {
    let mut s = format!("bonsai race run {name} --seed {seed}");
    for b in breaks {
        s.push_str(" --break ");
        s.push_str(b.as_str());
    }
    s
}
