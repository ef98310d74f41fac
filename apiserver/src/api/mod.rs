//! Shared Kubernetes vocabulary for bonsai's components: the names and pure helpers that more
//! than one component needs (annotation keys, volume/claim matching), so that no component crate
//! depends on another. Featureless: no tokio, no I/O, no clock.
