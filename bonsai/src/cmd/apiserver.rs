//! `bonsai apiserver`: the API server alone, in the foreground (no controllers, no nodes).
//! Same data dir, lock, token and kubeconfig as `bonsai up`, so the two never run at once on
//! one data dir.

use crate::cmd::up::{run_cluster, Mode, ServeArgs};
use crate::error::CliError;

pub fn run(args: ServeArgs) -> Result<i32, CliError> {
    run_cluster(&args, Mode::Foreground, false)
}
