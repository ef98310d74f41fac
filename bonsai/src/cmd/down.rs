//! `bonsai down`: stop everything `bonsai up` started in this data dir.
//!
//! SIGTERM goes to the cluster's process group (the cluster process and every node it
//! started); the cluster stops its components and releases the run lock when it exits. We
//! wait for the lock, and SIGKILL the group if it takes longer than the grace period.

use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::datadir::DataDir;
use crate::error::CliError;
use crate::state::{self, Running};
use crate::DataDirArg;

const GRACE: Duration = Duration::from_secs(10);

pub fn run(args: &DataDirArg) -> Result<i32, CliError> {
    let dir = DataDir::new(&args.data_dir)?;
    let t0 = Instant::now();
    let (pid, port) = match state::inspect(&dir)? {
        Running::Yes { pid, state } => match state.as_ref().map(|s| s.pid).or(pid) {
            Some(p) => (p, state.map(|s| s.port)),
            None => {
                return Err(CliError::StopFailed {
                    pid: 0,
                    message: format!("{} is locked but names no pid", dir.lock_file().display()),
                })
            }
        },
        Running::No { stale } => {
            if let Some(s) = stale {
                state::remove_state(&dir);
                println!(
                    "bonsai is not running in {} (removed the stale state of pid {})",
                    dir.root.display(),
                    s.pid
                );
            } else {
                println!("bonsai is not running in {}", dir.root.display());
            }
            return Ok(0);
        }
    };
    // The detached cluster is a session and process-group leader (setsid), so the group id is
    // its pid; a foreground cluster is not, and gets the signal alone.
    let group = Pid::from_raw(pid);
    let signal_all = |sig: Signal| {
        if killpg(group, sig).is_err() {
            let _ = nix::sys::signal::kill(group, sig);
        }
    };
    signal_all(Signal::SIGTERM);
    let mut killed = false;
    loop {
        match state::acquire(&dir)? {
            Ok(lock) => {
                drop(lock);
                break;
            }
            Err(_) if t0.elapsed() > GRACE && !killed => {
                eprintln!("bonsai (pid {pid}) did not stop within {GRACE:?}; sending SIGKILL");
                signal_all(Signal::SIGKILL);
                killed = true;
            }
            Err(_) if t0.elapsed() > GRACE * 2 => {
                return Err(CliError::StopFailed {
                    pid,
                    message: "still holding the run lock after SIGKILL".into(),
                })
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    // The lock is released just before exit; wait for the process itself to be gone.
    while !state::pid_gone(pid) && t0.elapsed() < GRACE * 2 {
        std::thread::sleep(Duration::from_millis(2));
    }
    // Nodes were in the group; make sure nothing of it is left (e.g. a node that ignored
    // SIGTERM after its parent died).
    if killpg(group, None).is_ok() {
        let _ = killpg(group, Signal::SIGKILL);
    }
    state::remove_state(&dir);
    let port = port.map(|p| format!(", port {p}")).unwrap_or_default();
    println!(
        "bonsai stopped (pid {pid}{port}) in {:.0} ms{}",
        t0.elapsed().as_secs_f64() * 1e3,
        if killed { " (killed)" } else { "" }
    );
    Ok(0)
}
