//! "Is a cluster running in this data dir?", answered without trusting pid files.
//!
//! The running cluster process holds an exclusive `flock` on `<data-dir>/bonsai.lock` for its
//! whole life. The kernel drops the lock when the process dies, however it dies, so a crash
//! can never leave a lock behind: a lock we can take means nothing runs, whatever the pid and
//! state files say (those are then stale, and are replaced). The lock file holds the pid (for
//! messages while starting); `<data-dir>/bonsai.state` is written once the API server answers
//! and says where.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::datadir::{write_private, DataDir};
use crate::error::CliError;

/// Held by the cluster process; released by the kernel when it exits.
pub struct RunLock {
    _lock: Flock<File>,
}

/// Written when the cluster is ready.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    pub pid: i32,
    /// The kubeconfig's HTTPS port.
    pub port: u16,
    /// The API server's private plain-HTTP port (loopback, token-protected).
    #[serde(default)]
    pub api_port: u16,
    /// Unix milliseconds.
    pub started_at_ms: u64,
    /// What runs, where, and how long each took to start.
    pub components: Vec<crate::cluster::Started>,
    pub store: String,
    pub kubeconfig: String,
}

pub enum Running {
    /// A process holds the lock. `state` is `None` while it is still starting.
    Yes {
        pid: Option<i32>,
        state: Option<RunState>,
    },
    /// Nothing runs. `stale` is the state file a crashed cluster left behind, if any.
    No { stale: Option<RunState> },
}

fn open_lock_file(dir: &DataDir) -> Result<File, CliError> {
    let path = dir.lock_file();
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(CliError::io("opening", &path))
}

/// Takes the run lock, or says who holds it.
pub fn acquire(dir: &DataDir) -> Result<Result<RunLock, Running>, CliError> {
    let file = open_lock_file(dir)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            // Record our pid for "starting (pid N)" messages.
            let _ = lock.set_len(0);
            let _ = lock.rewind();
            let _ = write!(&mut *lock, "{}", std::process::id());
            let _ = lock.sync_data();
            Ok(Ok(RunLock { _lock: lock }))
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(Err(held(dir))),
        Err((_, e)) => Err(CliError::Io {
            context: format!("locking {}", dir.lock_file().display()),
            source: e.into(),
        }),
    }
}

fn held(dir: &DataDir) -> Running {
    let mut pid = String::new();
    let pid = File::open(dir.lock_file())
        .and_then(|mut f| f.read_to_string(&mut pid))
        .ok()
        .and_then(|_| pid.trim().parse().ok());
    let state = read_state(dir).filter(|s| Some(s.pid) == pid || pid.is_none());
    Running::Yes { pid, state }
}

/// Looks without keeping the lock.
pub fn inspect(dir: &DataDir) -> Result<Running, CliError> {
    if !dir.root.exists() {
        return Ok(Running::No { stale: None });
    }
    match acquire(dir)? {
        Ok(lock) => {
            drop(lock);
            Ok(Running::No {
                stale: read_state(dir),
            })
        }
        Err(running) => Ok(running),
    }
}

pub fn read_state(dir: &DataDir) -> Option<RunState> {
    let text = fs::read_to_string(dir.state_file()).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn write_state(dir: &DataDir, state: &RunState) -> Result<(), CliError> {
    let text = serde_json::to_vec_pretty(state).expect("RunState serializes");
    write_private(&dir.state_file(), &text)
}

pub fn remove_state(dir: &DataDir) {
    let _ = fs::remove_file(dir.state_file());
}

/// The process no longer runs: it does not exist, or it is a zombie waiting to be reaped.
pub fn pid_gone(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return true;
    }
    // /proc/<pid>/stat: "pid (comm) S ..." — the state follows the last ')'.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(true)
        })
        .unwrap_or(true)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path()).unwrap();
        dir.create().unwrap();
        let lock = acquire(&dir).unwrap().ok().expect("free at first");
        match acquire(&dir).unwrap() {
            Err(Running::Yes { pid, .. }) => assert_eq!(pid, Some(std::process::id() as i32)),
            _ => panic!("second acquire must see the holder"),
        }
        drop(lock);
        assert!(acquire(&dir).unwrap().is_ok());
    }

    #[test]
    fn stale_state_is_reported_when_unlocked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path()).unwrap();
        dir.create().unwrap();
        let st = RunState {
            pid: 999_999,
            port: 1,
            api_port: 2,
            started_at_ms: 0,
            components: vec![],
            store: "sled".into(),
            kubeconfig: "k".into(),
        };
        write_state(&dir, &st).unwrap();
        match inspect(&dir).unwrap() {
            Running::No { stale: Some(s) } => assert_eq!(s.pid, 999_999),
            _ => panic!("a state file without a lock holder is stale"),
        }
    }
}
