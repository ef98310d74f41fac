//! One module per command.

pub mod apiserver;
pub mod disk;
pub mod down;
pub mod explain;
pub mod history;
pub mod kubeconfig;
pub mod kubelet;
pub mod node;
pub mod race;
pub mod status;
pub mod up;
