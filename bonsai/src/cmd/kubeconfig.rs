//! `bonsai kubeconfig`: print the kubeconfig's path; `--merge` adds (or updates) a `bonsai`
//! cluster, user and context in ~/.kube/config and makes it the current context.

use crate::datadir::DataDir;
use crate::error::CliError;
use crate::{kubeconfig, DataDirArg};

#[derive(clap::Args, Clone, Debug)]
pub struct KubeconfigArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// Add or update the `bonsai` cluster, user and context in ~/.kube/config (other entries
    /// are kept) and switch the current context to it.
    #[arg(long)]
    pub merge: bool,
}

pub fn run(args: &KubeconfigArgs) -> Result<i32, CliError> {
    let dir = DataDir::new(&args.data.data_dir)?;
    let path = dir.kubeconfig();
    if !path.exists() {
        return Err(CliError::Kubeconfig {
            path,
            message: "does not exist yet; `bonsai up` writes it".into(),
        });
    }
    if !args.merge {
        println!("{}", path.display());
        return Ok(0);
    }
    let target = kubeconfig::user_kubeconfig()?;
    let merged = kubeconfig::merge(&path, &target)?;
    println!(
        "{} the bonsai cluster, user and context in {}",
        if merged.replaced { "updated" } else { "added" },
        merged.path.display()
    );
    match merged.previous_context {
        Some(prev) => println!(
            "current context: bonsai (was {prev}; `kubectl config use-context {prev}` goes back)"
        ),
        None => println!("current context: bonsai"),
    }
    Ok(0)
}
