//! scheduler: placeholder; see ARCHITECTURE.md.
