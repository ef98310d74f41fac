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

pub mod api;
pub mod semantics;
pub mod status;
pub mod store;

#[cfg(feature = "server")]
pub mod http;
