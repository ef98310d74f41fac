//! `bonsai race`: a deterministic simulator that drives the real controller cores — the
//! scheduler, one or more volume controllers, one kubelet pod-lifecycle core per node — over
//! the real store core (in memory), choosing every next step from a seed, and checking
//! invariants after every step. Known binding races live as scenario files in
//! `examples/races/` (compiled in, so `bonsai race list` works anywhere; a path to a copied
//! and edited file works too).
//!
//! Same seed, same trace, byte for byte: there is no clock (virtual time), no thread, no
//! unseeded randomness, and every map is ordered.
//!
//! # Layout
//! - `scenario`   — the scenario file format, its parser and its error messages (file:line).
//! - `objects`    — the JSON objects scenarios create, and the fields traces and asserts read.
//! - `actors`     — the cores behind one enum; JSON ⇄ typed conversion; the simulated kubelet.
//! - `sim`        — the world: store, watches, requests in flight, steps, the trace, scripts.
//! - `invariants` — the invariants, named as sentences.
//! - `rng`        — SplitMix64, the only source of choice.

pub mod actors;
pub mod invariants;
pub mod objects;
pub mod rng;
pub mod scenario;
pub mod sim;

use std::path::Path;

pub use scenario::{Break, Scenario, ScenarioError};
pub use sim::{run, Options, Verdict};

/// The shipped scenarios (`examples/races/<name>.race`), compiled into the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "crash-between-the-writes-of-a-bind",
        include_str!("../../../examples/races/crash-between-the-writes-of-a-bind.race"),
    ),
    (
        "immediate-strands-the-pod",
        include_str!("../../../examples/races/immediate-strands-the-pod.race"),
    ),
    (
        "k8s-65131-anti-affinity-with-local-pvs",
        include_str!("../../../examples/races/k8s-65131-anti-affinity-with-local-pvs.race"),
    ),
    (
        "k8s-72013-rescheduled-while-binding",
        include_str!("../../../examples/races/k8s-72013-rescheduled-while-binding.race"),
    ),
    (
        "k8s-73216-informer-ordering",
        include_str!("../../../examples/races/k8s-73216-informer-ordering.race"),
    ),
    (
        "k8s-73263-partial-binding",
        include_str!("../../../examples/races/k8s-73263-partial-binding.race"),
    ),
    (
        "kubelet-sees-the-pod-before-its-claim-is-bound",
        include_str!("../../../examples/races/kubelet-sees-the-pod-before-its-claim-is-bound.race"),
    ),
    (
        "pod-deleted-between-reserve-and-prebind",
        include_str!("../../../examples/races/pod-deleted-between-reserve-and-prebind.race"),
    ),
    (
        "stale-scheduler-cache-after-its-own-write",
        include_str!("../../../examples/races/stale-scheduler-cache-after-its-own-write.race"),
    ),
    (
        "two-pods-race-for-the-last-pv",
        include_str!("../../../examples/races/two-pods-race-for-the-last-pv.race"),
    ),
    (
        "two-volume-controllers-race-for-one-pv",
        include_str!("../../../examples/races/two-volume-controllers-race-for-one-pv.race"),
    ),
    (
        "watch-gap-across-compaction",
        include_str!("../../../examples/races/watch-gap-across-compaction.race"),
    ),
    (
        "wffc-schedules-the-pod",
        include_str!("../../../examples/races/wffc-schedules-the-pod.race"),
    ),
];

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "no scenario named {0:?}; `bonsai race list` shows them (or give a path to a .race file)"
    )]
    Unknown(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Malformed(#[from] ScenarioError),
}

/// Every shipped scenario, parsed (a shipped file that does not parse is a build defect the
/// tests catch).
pub fn builtin() -> Result<Vec<Scenario>, ScenarioError> {
    BUILTIN
        .iter()
        .map(|(name, text)| scenario::parse(&format!("examples/races/{name}.race"), text))
        .collect()
}

/// A shipped scenario by name, or a scenario file by path (anything with a `/` or ending in
/// `.race`).
pub fn load(name: &str) -> Result<Scenario, LoadError> {
    if name.contains('/') || name.ends_with(".race") {
        let text = std::fs::read_to_string(Path::new(name)).map_err(|source| LoadError::Read {
            path: name.to_string(),
            source,
        })?;
        return Ok(scenario::parse(name, &text)?);
    }
    match BUILTIN.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => Ok(scenario::parse(&format!("examples/races/{n}.race"), text)?),
        None => Err(LoadError::Unknown(name.to_string())),
    }
}
