//! volume-controller: placeholder; see ARCHITECTURE.md.
