//! The Kubernetes REST API over axum. (Being written: see issue 3.)
