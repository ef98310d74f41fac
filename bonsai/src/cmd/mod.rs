//! One module per command.

pub mod apiserver;
pub mod down;
pub mod kubeconfig;
pub mod race;
pub mod status;
pub mod up;
