//! kubelet-lite: placeholder; see ARCHITECTURE.md.
