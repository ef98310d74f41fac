//! volume-controller: bonsai's PV controller — binding, delayed binding, reclaim — plus the
//! pvc-protection and pv-protection controllers and their Events, behaving like
//! kube-controller-manager v1.33 (`shared/reference/volume-binding.md` §3–§5.1, §7, §8).
//!
//! # Layout
//! - `core`   — the deterministic state machine (no await, no clock, BTreeMaps only): caches
//!   and indexes (`core::cache`), the binder and reclaim (`core::binder`), protection
//!   (`core::protection`), the provisioning seam (`core::provision`), Events
//!   (`core::events`), counters (`core::metrics`), and an in-memory model of the API's
//!   write semantics for tests and simulation (`core::model`). Fed by `handle_*`, drained
//!   by `poll_*`.
//! - `driver` — the thin tokio driver: kube-rs watchers feed the core; its requests become
//!   API calls whose outcomes (409 Conflict included) go back as inputs.
//!
//! # Entry point (for `bonsai up`)
//! ```ignore
//! let config = volume_controller::Config::default();   // resync 15 s, protection on
//! let metrics = config.metrics.clone();                  // Arc<Metrics>: serve metrics.text()
//! let client = volume_controller::client(&url, &token)?; // or any kube::Client
//! volume_controller::run(client, config, shutdown_future).await?;
//! ```
//! - `run(client: kube::Client, config: Config, shutdown: impl Future<Output = ()>) ->
//!   Result<(), Error>` returns `Ok(())` when `shutdown` completes. API failures are never
//!   fatal: watchers back off and relist; failed writes are retried by the next event or the
//!   periodic resync.
//! - `client(url, token)` builds a `kube::Client` for bonsai's plain-HTTP API server with
//!   the bearer token and the user agent `bonsai-volume-controller` (also the field manager
//!   of every write).
//! - `Metrics::text()` is Prometheus text (binds, syncs by loop, conflicts, writes, events,
//!   resyncs, queue depth, in-flight requests) for the lead's `/metrics` (e.g. an
//!   `apiserver::http::MetricsFn` closure).
//! - `BONSAI_VC_TRACE=1` prints every request and outcome to stderr (debugging).

pub mod core;
pub mod driver;

pub use crate::core::metrics::Metrics;
pub use driver::{client, run, Config, Error, FIELD_MANAGER};
