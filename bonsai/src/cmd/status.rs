//! `bonsai status`: is a cluster running in this data dir, where, since when, is it ready?
//! Exit code 0 when running and ready, 1 otherwise (usable in scripts).

use crate::datadir::DataDir;
use crate::error::CliError;
use crate::state::{self, Running};
use crate::{probe, DataDirArg};

pub fn run(args: &DataDirArg) -> Result<i32, CliError> {
    let dir = DataDir::new(&args.data_dir)?;
    match state::inspect(&dir)? {
        Running::Yes { pid, state: None } => {
            let pid = pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into());
            println!("bonsai is starting (pid {pid}) in {}", dir.root.display());
            Ok(1)
        }
        Running::Yes {
            state: Some(st), ..
        } => {
            let ready = probe::ready(st.api_port);
            let up_secs = state::now_ms().saturating_sub(st.started_at_ms) / 1000;
            println!(
                "bonsai is running (pid {}, up {}) in {}",
                st.pid,
                uptime(up_secs),
                dir.root.display()
            );
            for c in &st.components {
                println!("  {:<18} {:<26} {}", c.name, c.location, c.detail);
            }
            println!(
                "  {:<18} {}",
                "readyz",
                if ready { "ok" } else { "NOT READY (see logs)" }
            );
            println!("  {:<18} {}/", "logs", dir.logs().display());
            println!("  {:<18} {}", "kubeconfig", st.kubeconfig);
            Ok(if ready { 0 } else { 1 })
        }
        Running::No { stale } => {
            match stale {
                Some(s) => println!(
                    "bonsai is not running in {} (the last one, pid {}, did not shut down \
                     cleanly; `bonsai up` recovers)",
                    dir.root.display(),
                    s.pid
                ),
                None => println!("bonsai is not running in {}", dir.root.display()),
            }
            Ok(1)
        }
    }
}

fn uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, s % 3600 / 60),
    }
}
