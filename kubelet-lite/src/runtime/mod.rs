//! The container runtime: namespaced processes, their logs, exec.
//!
//! - [`shim`]: the helper processes (container shim, exec helper) and privilege dropping.
//! - [`logs`]: CRI-format log files and what `kubectl logs` reads from them.
//! - [`zygote`]: the fork server that forks container shims (no exec per container start).
//! - [`Runtime`]: what the kubelet driver calls — start, signal, wait, adopt.
//!
//! On-node layout (`<node dir>` = `<data dir>/nodes/<node>`):
//! `containers/<podUID>/<container>/{launch.json,log-path,shim.pid,init.pid,exit,rootfs/}` and
//! `logs/pods/<ns>_<pod>_<podUID>/<container>/<attempt>.log`.

pub mod logs;
pub mod shim;
pub mod zygote;

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::libc;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::core::pod::{ContainerLaunch, Exit};

/// A runtime failure: what failed and why.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The container could not start; the message is what the pod status shows.
    #[error("{0}")]
    StartFailed(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
    let what = what.into();
    move |source| RuntimeError::Io { what, source }
}

/// Where a container's process can be waited for.
pub enum Waiter {
    /// Started by this kubelet: the shim is our child.
    Child(tokio::process::Child),
    /// Adopted after a kubelet restart: a pidfd on the shim.
    PidFd(OwnedFd),
}

/// A running container.
pub struct Running {
    pub init_pid: i32,
    pub shim_pid: i32,
    pub attempt: u32,
    pub waiter: Waiter,
    /// Where the start's time went (all zero for an adopted container).
    pub timings: StartTimings,
}

/// Stage timestamps of one container start, in [`mono_ns`] nanoseconds. The shim reports its
/// own on its status line, so the kubelet (and the pod-start bench) can say where a start's
/// time went: spawning the helper, the namespaces, the root, the init.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartTimings {
    /// The runtime began (state files, then spawning the shim).
    pub begin: u64,
    /// The shim process exists and has exec'd the helper binary (spawn returned).
    pub spawned: u64,
    /// The shim's `main` ran (the exec of the helper binary is done).
    pub shim_entry: u64,
    /// unshare of the namespaces and the private root are done.
    pub shim_namespaces: u64,
    /// The container's root is built (tmpfs, system binds, /dev, volumes).
    pub shim_root: u64,
    /// The container's init is running (its exec, or the pause loop, has begun), as the shim
    /// saw it.
    pub shim_init: u64,
    /// The init pivoted into the container's root and detached the node's.
    pub init_pivoted: u64,
    /// The init is about to exec the command (or become the pause process).
    pub init_exec: u64,
    /// The kubelet read the shim's "started" line.
    pub reported: u64,
}

/// `CLOCK_MONOTONIC` in nanoseconds. One clock for the kubelet, its shims and the pod-start
/// bench (bonsai uses no time namespaces), so timestamps taken in different processes compare.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The node's runtime.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// The binary to re-execute as helper (the kubelet's own).
    pub helper_exe: PathBuf,
    /// `<node dir>/containers`
    pub state_dir: PathBuf,
    /// `<node dir>/logs/pods`
    pub log_dir: PathBuf,
    /// The shim fork server; `None` (or a dead server): shims re-execute `helper_exe`.
    pub zygote: Option<std::sync::Arc<zygote::Zygote>>,
}

fn proc_start_time(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

impl Runtime {
    pub fn container_dir(&self, uid: &str, container: &str) -> PathBuf {
        self.state_dir.join(uid).join(container)
    }

    pub fn pod_log_dir(&self, ns: &str, pod: &str, uid: &str) -> PathBuf {
        self.log_dir.join(format!("{ns}_{pod}_{uid}"))
    }

    pub fn log_path(
        &self,
        ns: &str,
        pod: &str,
        uid: &str,
        container: &str,
        attempt: u32,
    ) -> PathBuf {
        self.pod_log_dir(ns, pod, uid)
            .join(container)
            .join(format!("{attempt}.log"))
    }

    /// Starts a container through a shim; returns once it runs (or failed to start).
    pub async fn start(&self, launch: &ContainerLaunch) -> Result<Running> {
        let begin = mono_ns();
        let dir = self.container_dir(&launch.pod_uid, &launch.container);
        fs::create_dir_all(dir.join("rootfs"))
            .map_err(io_err(format!("mkdir {}", dir.display())))?;
        for stale in ["exit", "init.pid", "shim.pid"] {
            let _ = fs::remove_file(dir.join(stale));
        }
        let log = self.log_path(
            &launch.namespace,
            &launch.pod_name,
            &launch.pod_uid,
            &launch.container,
            launch.attempt,
        );
        fs::create_dir_all(log.parent().unwrap()).map_err(io_err("mkdir log dir"))?;
        fs::write(dir.join("log-path"), log.as_os_str().as_encoded_bytes())
            .map_err(io_err("write log-path"))?;
        fs::write(
            dir.join("launch.json"),
            serde_json::to_vec(launch).expect("serializable launch"),
        )
        .map_err(io_err("write launch.json"))?;
        if let Some(z) = &self.zygote {
            match self.start_forked(z, &dir, launch, begin).await {
                Ok(r) => return r,
                Err(e) => {
                    tracing::warn!(error = %e, "shim fork server failed; re-executing the helper")
                }
            }
        }
        let mut child = tokio::process::Command::new(&self.helper_exe)
            .arg(&dir)
            .env(shim::HELPER_ENV, "container")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(false)
            .spawn()
            .map_err(io_err(format!("spawn {}", self.helper_exe.display())))?;
        let spawned = mono_ns();
        let shim_pid = child.id().unwrap_or(0) as i32;
        let out = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .await
            .map_err(io_err("read shim status"))?;
        let line = line.trim_end();
        if !line.starts_with("started ") {
            let _ = child.wait().await;
        }
        self.started(
            &dir,
            launch,
            line,
            shim_pid,
            Waiter::Child(child),
            begin,
            spawned,
        )
    }

    /// Starts the shim through the fork server. The outer error means the server could not
    /// fork one (the caller falls back to the helper binary); the inner result is the start's.
    async fn start_forked(
        &self,
        z: &zygote::Zygote,
        dir: &Path,
        launch: &ContainerLaunch,
        begin: u64,
    ) -> io::Result<Result<Running>> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let (shim_pid, pidfd) = z.spawn_shim(dir, w)?;
        let spawned = mono_ns();
        let mut line = String::new();
        let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(r)?;
        let read = BufReader::new(rx).read_line(&mut line).await;
        if let Err(e) = read {
            return Ok(Err(RuntimeError::Io {
                what: "read shim status".into(),
                source: e,
            }));
        }
        Ok(self.started(
            dir,
            launch,
            line.trim_end(),
            shim_pid,
            Waiter::PidFd(pidfd),
            begin,
            spawned,
        ))
    }

    /// The shim's status line: `started …` (the container runs) or `error …`.
    #[allow(clippy::too_many_arguments)]
    fn started(
        &self,
        dir: &Path,
        launch: &ContainerLaunch,
        line: &str,
        shim_pid: i32,
        waiter: Waiter,
        begin: u64,
        spawned: u64,
    ) -> Result<Running> {
        let Some(rest) = line.strip_prefix("started ") else {
            // The shim exits after reporting; the fork server reaps it.
            let msg = line.strip_prefix("error ").unwrap_or(line);
            return Err(RuntimeError::StartFailed(if msg.is_empty() {
                "container shim exited without reporting".into()
            } else {
                msg.to_string()
            }));
        };
        // `started <init pid> <entry> <namespaces> <root> <init> <pivoted> <exec>` (times in
        // mono_ns).
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        let st = proc_start_time(shim_pid).unwrap_or(0);
        let _ = fs::write(
            dir.join("shim.pid"),
            format!("{shim_pid} {st} {}", launch.attempt),
        );
        Ok(Running {
            init_pid: at(0) as i32,
            shim_pid,
            attempt: launch.attempt,
            waiter,
            timings: StartTimings {
                begin,
                spawned,
                shim_entry: at(1),
                shim_namespaces: at(2),
                shim_root: at(3),
                shim_init: at(4),
                init_pivoted: at(5),
                init_exec: at(6),
                reported: mono_ns(),
            },
        })
    }

    /// Sends SIGTERM (or SIGKILL) to the container's init. Without a handler, a PID-1 init
    /// ignores SIGTERM — just as in a real container — and the grace period ends in SIGKILL.
    pub fn signal(&self, running: &Running, kill: bool) {
        let sig = if kill { libc::SIGKILL } else { libc::SIGTERM };
        // SAFETY: kill(2) with a pid we started.
        unsafe { libc::kill(running.init_pid, sig) };
    }

    /// Waits until the container's shim exits; returns how the container ended.
    pub async fn wait(&self, uid: &str, container: &str, waiter: Waiter) -> Exit {
        match waiter {
            Waiter::Child(mut c) => {
                let _ = c.wait().await;
            }
            Waiter::PidFd(fd) => {
                #[allow(deprecated)] // the fd is an OwnedFd we hold for the whole wait
                if let Ok(afd) =
                    tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)
                {
                    let _ = afd.readable().await;
                }
            }
        }
        self.read_exit(uid, container)
    }

    fn read_exit(&self, uid: &str, container: &str) -> Exit {
        let text =
            fs::read_to_string(self.container_dir(uid, container).join("exit")).unwrap_or_default();
        let mut it = text
            .split_whitespace()
            .map(|s| s.parse::<i32>().unwrap_or(0));
        let code = it.next().unwrap_or(137);
        let sig = it.next().filter(|s| *s != 0);
        Exit {
            exit_code: if text.is_empty() { 137 } else { code },
            signal: if text.is_empty() { Some(9) } else { sig },
        }
    }

    /// Containers of pod `uid` whose shims still run (a kubelet restart): adopt them.
    pub fn adoptable(&self, uid: &str) -> Vec<(String, Running)> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(self.state_dir.join(uid)) else {
            return out;
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let dir = self.container_dir(uid, &name);
            if dir.join("exit").exists() {
                continue;
            }
            let Ok(s) = fs::read_to_string(dir.join("shim.pid")) else {
                continue;
            };
            let f: Vec<u64> = s
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let (Some(&pid), Some(&st)) = (f.first(), f.get(1)) else {
                continue;
            };
            let attempt = f.get(2).copied().unwrap_or(0) as u32;
            if proc_start_time(pid as i32) != Some(st) {
                continue;
            }
            let Some(init_pid) = fs::read_to_string(dir.join("init.pid"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
            else {
                continue;
            };
            // SAFETY: pidfd_open(2) on a live pid; the result is a new fd we own.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as i32, 0) };
            if fd < 0 {
                continue;
            }
            // SAFETY: fd was just returned to us by the kernel.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            out.push((
                name,
                Running {
                    init_pid,
                    shim_pid: pid as i32,
                    attempt,
                    waiter: Waiter::PidFd(fd),
                    timings: StartTimings::default(),
                },
            ));
        }
        out
    }

    /// Removes a pod's container state and logs (after its containers stopped).
    pub fn remove_pod(&self, ns: &str, pod: &str, uid: &str) {
        let dir = self.state_dir.join(uid);
        // The rootfs directories were only mount points inside the (now dead) shims' private
        // namespaces; on the node they are plain, empty directories.
        let _ = crate::mounter::remove_tree_no_mounts(&dir);
        let _ = fs::remove_dir_all(self.pod_log_dir(ns, pod, uid));
    }

    /// Spawns the exec helper inside a container. With `tty`, stdio is the pty slave.
    pub fn exec_command(
        &self,
        spec: &shim::ExecSpec,
        tty_slave: Option<&OwnedFd>,
    ) -> io::Result<tokio::process::Child> {
        let mut cmd = tokio::process::Command::new(&self.helper_exe);
        cmd.env(shim::HELPER_ENV, "exec")
            .env(shim::EXEC_SPEC_ENV, serde_json::to_string(spec).unwrap())
            .kill_on_drop(true);
        if let Some(s) = tty_slave {
            let dup = |fd: &OwnedFd| -> io::Result<Stdio> {
                // SAFETY: dup of a valid fd; the new fd is owned by the Stdio.
                let n = unsafe { libc::dup(fd.as_raw_fd()) };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: n is a fresh fd.
                Ok(Stdio::from(unsafe { OwnedFd::from_raw_fd(n) }))
            };
            cmd.stdin(dup(s)?).stdout(dup(s)?).stderr(dup(s)?);
        } else {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        cmd.spawn()
    }
}

/// Paths the runtime must never follow into: mount points.
pub fn is_mount_point(p: &Path) -> bool {
    crate::mounter::is_mount_point(p)
}
