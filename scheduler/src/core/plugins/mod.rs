//! The plugins, one module per concern. Each exposes plain functions for its extension points;
//! `Scheduler` calls them in upstream's order (see `framework`).

pub mod inter_pod_affinity;
pub mod node;
pub mod resources_fit;
pub mod volume_binding;
