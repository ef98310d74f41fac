//! volume-controller: bonsai's PV controller — binding, delayed binding, reclaim — plus the
//! pvc-protection and pv-protection controllers and their Events, behaving like
//! kube-controller-manager v1.33 (`shared/reference/volume-binding.md` §3–§5.1, §7, §8).
//!
//! # Layout
//! - `core`   — the deterministic state machine (no await, no clock, BTreeMaps only): caches,
//!   the binder (`core::binder`), reclaim, protection, events, metrics. Fed by
//!   `handle_*`, drained by `poll_*`.
//! - `driver` — the thin tokio driver: kube-rs watchers feed the core; its requests become
//!   API calls whose outcomes (409 Conflict included) go back as inputs.
//!
//! # Entry point (for `bonsai up`)
//! ```ignore
//! let config = volume_controller::Config::default();       // resync 15 s
//! let metrics = config.metrics.clone();                      // serve metrics.text() on /metrics
//! let client = volume_controller::client(&url, &token)?;     // or any kube::Client
//! volume_controller::run(client, config, shutdown_future).await?;
//! ```
//! `run` returns `Ok(())` when `shutdown` completes; it returns an `Error` only if it cannot
//! start. Transient API failures are logged and retried (watchers back off and relist).

pub mod core;
pub mod driver;

pub use crate::core::metrics::Metrics;
pub use driver::{client, run, Config, Error};
