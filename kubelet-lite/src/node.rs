//! The node process tree and the node records in the data directory.
//!
//! `bonsai kubelet --node node-1 …` becomes three processes:
//!
//! 1. **node process** (the pid `bonsai up` started, recorded in `node.pid`): calls
//!    `unshare(CLONE_NEWNS | CLONE_NEWPID)` while still single-threaded, makes `/` rslave, mounts
//!    the node's own tmpfs on `/mnt/disks`, remounts the node's loop disks, forks the init and
//!    waits for it, forwarding SIGTERM/SIGINT. Its death (SIGKILL = power cut) kills the init
//!    through PR_SET_PDEATHSIG.
//! 2. **init** (PID 1 of the node's PID namespace): mounts a /proc for the namespace, forks the
//!    kubelet and reaps every orphan. If the kubelet crashes it starts it again (the new kubelet
//!    adopts the running containers); when init exits, the kernel kills every process of the
//!    node, and with the last of them the mount namespace and all its mounts disappear — loop
//!    devices detach themselves (autoclear).
//! 3. **kubelet** (PID 2): the tokio [`crate::driver`]. Before its runtime starts it forks the
//!    container-shim fork server ([`crate::runtime::zygote`]), which dies with it.
//!
//! Node directory: `<data dir>/nodes/<node>/` with `args.json` (how to start it again),
//! `node.pid` (`<node pid> <start time> <init pid>`), `kubelet.port`, `kubelet.log`,
//! `disks.json`, `disks/*.img`, `pods/`, `containers/`, `logs/`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::libc;

use crate::cli::KubeletArgs;
use crate::disks;
use crate::mounter;

/// A node-side failure the CLI reports.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No such node in the data directory.
    #[error("node {0:?} not found (known nodes: {1})")]
    UnknownNode(String, String),
    /// The node is not running.
    #[error("node {0} is not running (start it with `bonsai node start {0}`)")]
    NotRunning(String),
    /// The node is already running.
    #[error("node {0} is already running (pid {1})")]
    AlreadyRunning(String, i32),
    /// A file or process operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
    /// Something else went wrong, with a message for the user.
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

pub fn nodes_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("nodes")
}

pub fn node_dir(data_dir: &Path, node: &str) -> PathBuf {
    nodes_dir(data_dir).join(node)
}

/// A node's process ids, as recorded by its node process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePids {
    pub node_pid: i32,
    pub init_pid: i32,
}

pub(crate) fn proc_start_time(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 2..];
    after.split(' ').nth(19)?.parse().ok()
}

/// The running node's pids, or `None` when it is not running (a stale record is ignored).
pub fn running_pids(data_dir: &Path, node: &str) -> Option<NodePids> {
    let s = fs::read_to_string(node_dir(data_dir, node).join("node.pid")).ok()?;
    let f: Vec<u64> = s
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let (pid, st, init) = (*f.first()? as i32, *f.get(1)?, *f.get(2)? as i32);
    if proc_start_time(pid) != Some(st) || proc_start_time(init).is_none() {
        return None;
    }
    Some(NodePids {
        node_pid: pid,
        init_pid: init,
    })
}

/// Names of the nodes recorded in the data directory, sorted.
pub fn known_nodes(data_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(nodes_dir(data_dir))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("args.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub fn require_node(data_dir: &Path, node: &str) -> Result<()> {
    let known = known_nodes(data_dir);
    if known.iter().any(|n| n == node) {
        Ok(())
    } else {
        Err(NodeError::UnknownNode(
            node.to_string(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        ))
    }
}

pub fn require_running(data_dir: &Path, node: &str) -> Result<NodePids> {
    require_node(data_dir, node)?;
    running_pids(data_dir, node).ok_or_else(|| NodeError::NotRunning(node.to_string()))
}

// ---- the node process tree --------------------------------------------------------------------

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

extern "C" fn forward(sig: libc::c_int) {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
    let pid = FORWARD_TO.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

fn install_forward() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only uses atomics and kill(2).
        unsafe { libc::signal(sig, forward as *const () as libc::sighandler_t) };
    }
}

fn wait_status(pid: i32) -> (i32, bool) {
    loop {
        let mut st = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return (1, false);
        }
        if libc::WIFEXITED(st) {
            return (libc::WEXITSTATUS(st), false);
        }
        if libc::WIFSIGNALED(st) {
            return (128 + libc::WTERMSIG(st), true);
        }
    }
}

/// `bonsai kubelet`: runs one node. Must be called before any tokio runtime or other thread
/// exists. Returns the process exit code.
pub fn process_entry(args: KubeletArgs) -> i32 {
    crate::helper_entry();
    match node_main(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bonsai kubelet: {e}");
            1
        }
    }
}

fn node_main(args: KubeletArgs) -> Result<i32> {
    let ndir = node_dir(&args.data_dir, &args.node);
    if let Err(e) = validate_name(&args.node) {
        return Err(NodeError::Other(e));
    }
    fs::create_dir_all(&ndir).map_err(|e| NodeError::Io(format!("mkdir {}", ndir.display()), e))?;
    if let Some(p) = running_pids(&args.data_dir, &args.node) {
        return Err(NodeError::AlreadyRunning(args.node.clone(), p.node_pid));
    }
    fs::write(
        ndir.join("args.json"),
        serde_json::to_vec_pretty(&args.to_argv()).unwrap(),
    )
    .map_err(|e| NodeError::Io("write args.json".into(), e))?;
    let _ = fs::remove_file(ndir.join("kubelet.port"));
    // The disks directory exists on the host only as an empty directory: everything mounted on
    // it lives in the node's namespace.
    fs::create_dir_all(crate::core::provisioner::DISCOVERY_DIR)
        .map_err(|e| NodeError::Io("mkdir /mnt/disks".into(), e))?;

    mounter::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID)
        .map_err(|e| NodeError::Other(format!("{e} (bonsai nodes need root)")))?;
    mounter::make_root_rslave().map_err(|e| NodeError::Other(e.to_string()))?;
    mounter::mount_tmpfs(
        Path::new(crate::core::provisioner::DISCOVERY_DIR),
        Some(64 << 20),
        0o755,
    )
    .map_err(|e| NodeError::Other(e.to_string()))?;
    let report = disks::restore_on_boot(&args.data_dir, &args.node);
    for line in &report {
        eprintln!("bonsai kubelet {}: {line}", args.node);
    }

    // Read before the fork: init mounts the node's own /proc over /proc in this (shared) mount
    // namespace, after which our host pid is no longer visible there.
    let me = std::process::id() as i32;
    let st = proc_start_time(me).unwrap_or(0);
    // SAFETY: still single-threaded; fork is safe.
    let init = unsafe { libc::fork() };
    if init < 0 {
        return Err(NodeError::Io("fork".into(), io::Error::last_os_error()));
    }
    if init == 0 {
        let code = init_main(&args);
        // SAFETY: leave without running the parent's destructors twice.
        unsafe { libc::_exit(code) };
    }
    FORWARD_TO.store(init, Ordering::SeqCst);
    install_forward();
    let _ = fs::write(ndir.join("node.pid"), format!("{me} {st} {init}"));
    let (code, _) = wait_status(init);
    let _ = fs::remove_file(ndir.join("node.pid"));
    let _ = fs::remove_file(ndir.join("kubelet.port"));
    Ok(code)
}

fn validate_name(n: &str) -> Result<(), String> {
    if n.is_empty()
        || n.len() > 63
        || !n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(format!(
            "invalid node name {n:?}: lowercase letters, digits, '-' and '.' only"
        ));
    }
    Ok(())
}

/// PID 1 of the node.
fn init_main(args: &KubeletArgs) -> i32 {
    // SAFETY: prctl with integer arguments: a power cut of the node process takes us along.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    FORWARD_TO.store(0, Ordering::SeqCst);
    install_forward();
    // A /proc that shows the node's own processes (for the kubelet, exec and `node exec`).
    if let Err(e) = mounter::mount_raw(
        Some(Path::new("proc")),
        Path::new("/proc"),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    ) {
        eprintln!("bonsai kubelet: {e}");
        return 1;
    }
    let mut restarts = 0;
    loop {
        // SAFETY: init is single-threaded.
        let kubelet = unsafe { libc::fork() };
        if kubelet < 0 {
            return 1;
        }
        if kubelet == 0 {
            let code = kubelet_main(args.clone());
            let _ = io::stdout().flush();
            // SAFETY: exit the forked kubelet without unwinding into init's frames.
            unsafe { libc::_exit(code) };
        }
        FORWARD_TO.store(kubelet, Ordering::SeqCst);
        // Reap everything; stop when the kubelet itself ends.
        let (code, crashed) = loop {
            let mut st = 0;
            // SAFETY: waitpid with a valid out-pointer.
            let r = unsafe { libc::waitpid(-1, &mut st, 0) };
            if r < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break (1, false);
            }
            if r == kubelet {
                if libc::WIFSIGNALED(st) {
                    break (128 + libc::WTERMSIG(st), true);
                }
                break (libc::WEXITSTATUS(st), false);
            }
        };
        if crashed && !SHUTTING_DOWN.load(Ordering::SeqCst) && restarts < 5 {
            restarts += 1;
            eprintln!(
                "bonsai kubelet {}: kubelet died ({code}); restarting it, running containers will be adopted",
                args.node
            );
            continue;
        }
        return code;
    }
}

fn kubelet_main(args: KubeletArgs) -> i32 {
    // The container-shim fork server must be forked while this process is single-threaded:
    // before the tokio runtime exists.
    if let Err(e) = crate::runtime::zygote::Zygote::start_global() {
        eprintln!("bonsai kubelet: shim fork server: {e} (shims re-execute the binary instead)");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bonsai kubelet: tokio: {e}");
            return 1;
        }
    };
    match rt.block_on(crate::driver::run(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bonsai kubelet: {e}");
            1
        }
    }
}

// ---- node commands -------------------------------------------------------------------------------

/// One row of `bonsai node ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub name: String,
    pub running: Option<NodePids>,
    pub port: Option<u16>,
    pub disks: usize,
}

pub fn list(data_dir: &Path) -> Vec<NodeRow> {
    known_nodes(data_dir)
        .into_iter()
        .map(|n| {
            let running = running_pids(data_dir, &n);
            let port = running.and_then(|_| {
                fs::read_to_string(node_dir(data_dir, &n).join("kubelet.port"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            });
            let disks = disks::load(&node_dir(data_dir, &n)).len();
            NodeRow {
                name: n,
                running,
                port,
                disks,
            }
        })
        .collect()
}

/// The argv that starts `node` again (as recorded when it last started).
pub fn recorded_argv(data_dir: &Path, node: &str) -> Result<Vec<String>> {
    require_node(data_dir, node)?;
    let p = node_dir(data_dir, node).join("args.json");
    let bytes = fs::read(&p).map_err(|e| NodeError::Io(format!("read {}", p.display()), e))?;
    serde_json::from_slice(&bytes).map_err(|e| NodeError::Other(format!("{}: {e}", p.display())))
}

/// Starts a node process detached (own session, output appended to `kubelet.log`) and waits
/// until its kubelet serves (port file written) or `timeout` passes. `exe` is the bonsai
/// binary, `argv` what follows it (see [`crate::cli::KubeletArgs::to_argv`]).
pub fn spawn(
    exe: &Path,
    argv: &[String],
    data_dir: &Path,
    node: &str,
    timeout: std::time::Duration,
) -> Result<u32> {
    let child = spawn_detached(exe, argv, data_dir, node)?;
    wait_serving(child, data_dir, node, timeout)
}

/// Starts a node process without waiting; pair with [`wait_serving`] (so `bonsai up` can start
/// every node first and then wait for all of them).
pub fn spawn_detached(
    exe: &Path,
    argv: &[String],
    data_dir: &Path,
    node: &str,
) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let ndir = node_dir(data_dir, node);
    fs::create_dir_all(&ndir).map_err(|e| NodeError::Io(format!("mkdir {}", ndir.display()), e))?;
    let _ = fs::remove_file(ndir.join("kubelet.port"));
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ndir.join("kubelet.log"))
        .map_err(|e| NodeError::Io("open kubelet.log".into(), e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(argv)
        .stdin(std::process::Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| NodeError::Io("dup log".into(), e))?,
        )
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; detaches the node from the CLI's terminal session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| NodeError::Io(format!("spawn {}", exe.display()), e))
}

/// Waits until the node started as `child` serves its kubelet endpoint; returns its pid. A node
/// that exits first is reported with the tail of its log.
pub fn wait_serving(
    mut child: std::process::Child,
    data_dir: &Path,
    node: &str,
    timeout: std::time::Duration,
) -> Result<u32> {
    let ndir = node_dir(data_dir, node);
    let pid = child.id();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if ndir.join("kubelet.port").exists() {
            return Ok(pid);
        }
        if let Ok(Some(st)) = child.try_wait() {
            let tail = fs::read_to_string(ndir.join("kubelet.log")).unwrap_or_default();
            let last: Vec<&str> = tail.lines().rev().take(3).collect();
            return Err(NodeError::Other(format!(
                "node {node} exited ({st}) while starting: {}",
                last.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )));
        }
        if std::time::Instant::now() > deadline {
            return Err(NodeError::Other(format!(
                "node {node} did not come up within {timeout:?}; see {}",
                ndir.join("kubelet.log").display()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// `bonsai down`: SIGTERM to every running node at once, then waits for all (killing those
/// still up at `timeout`). Afterwards no node process, container or mount remains.
pub fn stop_all(data_dir: &Path, timeout: std::time::Duration) -> Vec<String> {
    let running: Vec<(String, NodePids)> = known_nodes(data_dir)
        .into_iter()
        .filter_map(|n| running_pids(data_dir, &n).map(|p| (n, p)))
        .collect();
    for (_, p) in &running {
        // SAFETY: kill(2) on recorded, verified pids.
        unsafe { libc::kill(p.node_pid, libc::SIGTERM) };
    }
    let mut report = Vec::new();
    let deadline = std::time::Instant::now() + timeout;
    for (n, p) in running {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if wait_gone(p, left) {
            report.push(format!("node {n} stopped"));
        } else {
            let _ = kill(data_dir, &n);
            report.push(format!("node {n} did not stop in time and was killed"));
        }
    }
    report
}

fn wait_gone(pids: NodePids, timeout: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while proc_start_time(pids.node_pid).is_some() || proc_start_time(pids.init_pid).is_some() {
        // A node started by this very process would linger as a zombie: reap it if so.
        // SAFETY: non-blocking waitpid on a specific pid.
        unsafe { libc::waitpid(pids.node_pid, std::ptr::null_mut(), libc::WNOHANG) };
        if let Ok(s) = fs::read_to_string(format!("/proc/{}/stat", pids.node_pid)) {
            if s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
                && proc_start_time(pids.init_pid).is_none()
            {
                return true;
            }
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}

/// Clean shutdown: SIGTERM; the kubelet stops its pods and unmounts, then the node exits.
pub fn stop(data_dir: &Path, node: &str, timeout: std::time::Duration) -> Result<()> {
    let pids = require_running(data_dir, node)?;
    // SAFETY: kill(2) on the recorded, verified pid.
    unsafe { libc::kill(pids.node_pid, libc::SIGTERM) };
    if !wait_gone(pids, timeout) {
        return Err(NodeError::Other(format!(
            "node {node} did not stop within {timeout:?} (use `bonsai node kill {node}`)"
        )));
    }
    Ok(())
}

/// Power cut: SIGKILL the node process; its init follows (PDEATHSIG), then every container.
pub fn kill(data_dir: &Path, node: &str) -> Result<()> {
    let pids = require_running(data_dir, node)?;
    // SAFETY: kill(2) on the recorded, verified pids.
    unsafe {
        libc::kill(pids.node_pid, libc::SIGKILL);
        libc::kill(pids.init_pid, libc::SIGKILL);
    }
    if !wait_gone(pids, std::time::Duration::from_secs(10)) {
        return Err(NodeError::Other(format!("node {node} survived SIGKILL?")));
    }
    let ndir = node_dir(data_dir, node);
    let _ = fs::remove_file(ndir.join("node.pid"));
    let _ = fs::remove_file(ndir.join("kubelet.port"));
    Ok(())
}

/// `bonsai node exec NODE -- CMD…`: runs CMD inside the node's mount and PID namespaces with the
/// caller's stdio, through the `node-exec` helper. Returns CMD's exit code.
pub fn exec(exe: &Path, data_dir: &Path, node: &str, argv: &[String]) -> Result<i32> {
    let pids = require_running(data_dir, node)?;
    if argv.is_empty() {
        return Err(NodeError::Other(
            "no command given (bonsai node exec NODE -- CMD...)".into(),
        ));
    }
    let spec = serde_json::json!({"init_pid": pids.init_pid, "argv": argv});
    let st = std::process::Command::new(exe)
        .env(crate::runtime::shim::HELPER_ENV, "node-exec")
        .env(crate::runtime::shim::EXEC_SPEC_ENV, spec.to_string())
        .status()
        .map_err(|e| NodeError::Io(format!("spawn {}", exe.display()), e))?;
    Ok(st
        .code()
        .unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(0)))
}

/// The `node-exec` helper: setns into the node's mount and PID namespaces, fork, exec.
pub(crate) fn node_exec_helper() -> i32 {
    #[derive(serde::Deserialize)]
    struct Spec {
        init_pid: i32,
        argv: Vec<String>,
    }
    let Some(spec) = std::env::var(crate::runtime::shim::EXEC_SPEC_ENV)
        .ok()
        .and_then(|s| serde_json::from_str::<Spec>(&s).ok())
    else {
        eprintln!("bonsai node exec: bad helper spec");
        return 126;
    };
    for ns in ["pid", "mnt"] {
        if let Err(e) = mounter::setns_path(Path::new(&format!("/proc/{}/ns/{ns}", spec.init_pid)))
        {
            eprintln!("bonsai node exec: {e}");
            return 126;
        }
    }
    // SAFETY: single-threaded helper.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        use std::os::unix::process::CommandExt;
        let e = std::process::Command::new(&spec.argv[0])
            .args(&spec.argv[1..])
            .exec();
        eprintln!("bonsai node exec: {}: {e}", spec.argv[0]);
        // SAFETY: leave the forked child.
        unsafe {
            libc::_exit(if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            })
        };
    }
    if pid < 0 {
        eprintln!("bonsai node exec: fork: {}", io::Error::last_os_error());
        return 126;
    }
    FORWARD_TO.store(pid, Ordering::SeqCst);
    install_forward();
    wait_status(pid).0
}
