//! apiserver: bonsai's source of truth and its Kubernetes REST front door.
//!
//! The store is an append-only log of revisioned events (`store`); the current objects, every
//! watch and `bonsai history` are derived from it. The HTTP layer (`http`) serves the
//! Kubernetes API that the real kubectl, the `kube` crate and bonsai's own controllers use.
//!
//! # Layout
//! - `api`       — shared Kubernetes vocabulary used by several components (annotation names,
//!                 volume matching helpers). Featureless, no I/O.
//! - `store`     — the event-sourced store: a synchronous deterministic core (revisions,
//!                 preconditions, selectors, watch cursors, history) over a small `Backend`
//!                 trait (in-memory; sled and redb with feature `server`), and, with `server`,
//!                 the tokio driver that does group commit and in-memory watch fan-out.
//! - `semantics` — per-kind object rules: validation, defaulting, unknown-field pruning, the
//!                 patch family and server-side apply. Pure functions over JSON.
//! - `status`    — `ApiError`, the one error type the HTTP boundary turns into a `Status`.
//! - `http`      — (feature `server`) the axum server: discovery, OpenAPI, CRUD, watch, tables.

// The allocator of every binary that links the API server (`bonsai`, the benchmarks, the
// tests), so that what the benchmarks measure is what `bonsai up` runs. glibc malloc cost the
// API server about a third of its CPU under concurrent requests (arena contention and
// consolidation, seen with perf on `benches/http.rs`); mimalloc's per-thread heaps remove most
// of it. A binary that wants the system allocator turns the `mimalloc` feature off.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod semantics;
pub mod status;
pub mod store;

#[cfg(feature = "server")]
pub mod http;
