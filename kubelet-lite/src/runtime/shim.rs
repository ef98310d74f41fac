//! The helper processes of the kubelet: the container shim and the exec helper. They run
//! single-threaded, so they may `unshare`, `setns` and `fork` freely. A container shim is
//! normally forked by the [`super::zygote`] fork server; without it, the kubelet re-executes its
//! own binary as the helper.
//!
//! Container shim (a spare forked in advance by the fork server, or
//! `BONSAI_KUBELET_HELPER=container` with argv: path of the container's state dir):
//!
//! 1. [`prepare`]: `unshare(CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID)` and `fork` the init —
//!    PID 1 of the new PID namespace — which sleeps until it is told its container. The shim
//!    stays in the node's mount namespace. A spare does this before any container exists.
//! 2. [`run_prepared`]: the shim writes the container's state directory to the init. The init
//!    reads `launch.json` ([`ContainerLaunch`]), sets the hostname (the pod's name), takes its
//!    own copy of the node's mount namespace (made rprivate) and builds the root in
//!    `<dir>/rootfs`: a tmpfs; read-only binds of /usr /bin /sbin /lib* /etc (symlinks such as
//!    `/bin -> usr/bin` are recreated as symlinks); a system directory that must hold a
//!    mountPath is an overlay with a tmpfs upper layer, so the mount point is created without
//!    touching the host; a minimal /dev; a tmpfs /tmp; then the volumes. It mounts a fresh
//!    /proc, `pivot_root`s, drops to the container capability set, sets no_new_privs and execs
//!    the command (or becomes a pause process). Its stage times (`@<root> <pivot> <exec>`) and
//!    errors go back over a close-on-exec pipe.
//! 3. The shim reports `started <pid> <timings>` (or `error <message>`) on stdout to the
//!    kubelet, writes the container's stdout/stderr to the log file in CRI format, forwards
//!    SIGTERM, and writes the exit status to `<dir>/exit` — so a restarted kubelet can adopt
//!    the container.
//!
//! Exec helper (`BONSAI_KUBELET_HELPER=exec`, spec in `BONSAI_EXEC_SPEC`): joins the container's
//! IPC, UTS, PID and mount namespaces with `setns`, forks, and the child drops capabilities
//! and execs the command; the parent relays the exit status.

use std::ffi::CString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;

use crate::core::pod::ContainerLaunch;
use crate::mounter;

/// Environment variable that turns the bonsai binary into one of the helpers.
pub const HELPER_ENV: &str = "BONSAI_KUBELET_HELPER";
/// The exec helper's JSON spec.
pub const EXEC_SPEC_ENV: &str = "BONSAI_EXEC_SPEC";

/// Host directories every container sees read-only.
const SYSTEM_DIRS: &[&str] = &[
    "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc",
];

/// The capabilities a container runtime grants by default (containerd/Docker's list without
/// MKNOD): no SYS_ADMIN, SYS_MODULE, SYS_PTRACE, MKNOD or NET_ADMIN.
pub const DEFAULT_CAPS: &[u32] = &[
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    29, // AUDIT_WRITE
    31, // SETFCAP
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// When this helper's `main` began ([`super::mono_ns`]), for the shim's start timings.
static ENTRY_NS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Notes when this helper began (for the start timings the shim reports).
pub(crate) fn mark_entry() {
    ENTRY_NS.store(super::mono_ns(), Ordering::Relaxed);
}

/// Runs a helper if this process is one; returns otherwise. Call first thing in `main`.
pub fn helper_entry() {
    let Ok(role) = std::env::var(HELPER_ENV) else {
        return;
    };
    mark_entry();
    // Helpers are started as /proc/self/exe; give them a name `ps` can show.
    let comm = CString::new(
        format!("bonsai-{role}")
            .chars()
            .take(15)
            .collect::<String>(),
    )
    .unwrap_or_default();
    // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr() as libc::c_ulong, 0, 0, 0) };
    let code = match role.as_str() {
        "container" => {
            let dir = std::env::args_os()
                .nth(1)
                .map(PathBuf::from)
                .unwrap_or_default();
            container_shim(&dir)
        }
        "exec" => exec_helper(),
        "node-exec" => crate::node::node_exec_helper(),
        "node-op" => crate::disks::node_op_helper(),
        other => {
            eprintln!("bonsai: unknown kubelet helper {other:?}");
            2
        }
    };
    std::process::exit(code);
}

fn fail<T>(what: impl std::fmt::Display) -> Result<T, String> {
    Err(what.to_string())
}

/// Reports to the kubelet on the shim's stdout, then points stdout at /dev/null.
pub(crate) fn report(line: &str) {
    let mut out = io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1; both fds are valid.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

fn install_forwarding() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installing a handler that only calls async-signal-safe functions.
        unsafe {
            libc::signal(sig, forward_signal as *const () as libc::sighandler_t);
        }
    }
}

/// The container shim for the state directory `dir` (a re-executed helper, or a child of the
/// [`super::zygote`] fork server); returns its exit code.
pub(crate) fn container_shim(dir: &Path) -> i32 {
    // Die with the kubelet's node: if the node process dies, the PID namespace is torn down
    // anyway; if only the kubelet dies, the shim must live on to be adopted, so no PDEATHSIG.
    match prepare() {
        Ok(p) => run_prepared(p, dir),
        Err(e) => {
            report(&format!("error {e}"));
            1
        }
    }
}

/// A shim that has made its namespaces and forked its container init; the init waits for the
/// state directory of the container it is to become. The fork server keeps one such shim
/// ready, so a container start forks nothing: under CPU load a freshly forked process can wait
/// milliseconds for its first time slice, while a woken sleeper runs at once.
pub(crate) struct Prepared {
    init_pid: i32,
    /// The init reads the container's state directory from here (then EOF).
    go: OwnedFd,
    /// Close-on-exec: EOF once the init runs the container's command (or pause); before that
    /// the init's root-built time (`@<mono ns>`) and any error.
    exec: OwnedFd,
    out: OwnedFd,
    err: OwnedFd,
}

/// New UTS, IPC and PID namespaces, and the container init (PID 1 of the new PID namespace),
/// forked now and waiting. The process must be single-threaded.
pub(crate) fn prepare() -> Result<Prepared, String> {
    // The shim itself stays in the node's mount namespace (it needs none of its own: its
    // state directory and the log file are node paths). The container's mount namespace is
    // made once, by the init, which builds the root in it — and only when it has its
    // container, so it copies the node's mounts as they are then (the pod's volumes included).
    mounter::unshare(libc::CLONE_NEWUTS | libc::CLONE_NEWIPC | libc::CLONE_NEWPID)
        .map_err(|e| e.to_string())?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (exec_r, exec_w) = pipe_cloexec()?;
    let (go_r, go_w) = pipe_cloexec()?;
    // SAFETY: this process is single-threaded (a helper), so fork is safe.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return fail(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(out_r);
        drop(err_r);
        drop(exec_r);
        drop(go_w);
        let mut w = fs::File::from(exec_w);
        let e = init_main(go_r, out_w.as_raw_fd(), err_w.as_raw_fd(), &mut w);
        let _ = w.write_all(e.as_bytes());
        // SAFETY: _exit in the forked child.
        unsafe { libc::_exit(127) };
    }
    CHILD.store(pid, Ordering::SeqCst);
    install_forwarding();
    Ok(Prepared {
        init_pid: pid,
        go: go_w,
        exec: exec_r,
        out: out_r,
        err: err_r,
    })
}

/// The waiting init: reads its container's state directory, then becomes that container.
/// Returns only on failure (the error text for the shim).
fn init_main(go: OwnedFd, out: RawFd, err: RawFd, status: &mut fs::File) -> String {
    // SAFETY: prctl with integer arguments: die with the shim.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // The container's own session, as runc gives it — made now, while the init waits: with
    // scheduler autogroups, setsid puts the process into a new task group, and a task that
    // just moved into a fresh group can wait milliseconds for the CPU on a busy node.
    // SAFETY: setsid has no memory-safety preconditions.
    unsafe { libc::setsid() };
    let mut dir = Vec::new();
    let _ = fs::File::from(go).read_to_end(&mut dir);
    if dir.is_empty() {
        // A spare shim that was never used: leave quietly.
        // SAFETY: _exit in the forked child.
        unsafe { libc::_exit(0) };
    }
    let dir = PathBuf::from(std::ffi::OsString::from_vec(dir));
    let launch: ContainerLaunch = match fs::read(dir.join("launch.json"))
        .map_err(|e| format!("read launch.json: {e}"))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("parse launch.json: {e}")))
    {
        Ok(l) => l,
        Err(e) => return e,
    };
    if let Err(e) = nix::unistd::sethostname(&launch.hostname) {
        return format!("sethostname: {e}");
    }
    container_init(&dir.join("rootfs"), &launch, out, err, status)
}

/// Runs a prepared shim for the container whose state directory is `dir`: reports on stdout,
/// copies the logs, records the exit. Returns the exit code.
pub(crate) fn run_prepared(p: Prepared, dir: &Path) -> i32 {
    match run_inner(p, dir) {
        Ok(code) => code,
        Err(e) => {
            report(&format!("error {e}"));
            1
        }
    }
}

fn run_inner(p: Prepared, dir: &Path) -> Result<i32, String> {
    // The namespaces were made in advance: as far as this container is concerned, now.
    let t_ns = super::mono_ns();
    let pid = p.init_pid;
    let log_path = PathBuf::from(
        fs::read_to_string(dir.join("log-path")).map_err(|e| format!("read log-path: {e}"))?,
    );
    {
        let mut go = fs::File::from(p.go);
        go.write_all(dir.as_os_str().as_bytes())
            .map_err(|e| format!("start container init: {e}"))?;
    }
    let mut msg = String::new();
    let _ = fs::File::from(p.exec).read_to_string(&mut msg);
    // The init first reports when its root was built (`@<mono ns>\n`), then only an error.
    let mut t: Vec<u64> = Vec::new();
    if let Some(rest) = msg.strip_prefix('@') {
        let (line, tail) = rest.split_once('\n').unwrap_or((rest, ""));
        t = line
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        msg = tail.to_string();
    }
    let at = |i: usize| t.get(i).copied().unwrap_or(0);
    if !msg.is_empty() {
        let _ = wait_child(pid);
        return fail(msg);
    }
    let t_init = super::mono_ns();
    let _ = fs::write(dir.join("init.pid"), pid.to_string());
    report(&format!(
        "started {pid} {} {t_ns} {} {t_init} {} {}",
        ENTRY_NS.load(Ordering::Relaxed),
        at(0),
        at(1),
        at(2)
    ));

    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("open log {}: {e}", log_path.display()))?;
    // A process that called unshare(CLONE_NEWPID) cannot create threads (EINVAL): copy both
    // streams with poll(2) on this one thread, until the container's last writer is gone.
    copy_logs(p.out, p.err, log);
    let (code, signal) = wait_child(pid);
    let tmp = dir.join("exit.tmp");
    let _ = fs::write(&tmp, format!("{code} {}", signal.unwrap_or(0)));
    let _ = fs::rename(&tmp, dir.join("exit"));
    Ok(code)
}

/// Waits for `pid`; returns (exit code as the kubelet reports it, terminating signal).
fn wait_child(pid: i32) -> (i32, Option<i32>) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return (255, None);
        }
        if libc::WIFEXITED(status) {
            return (libc::WEXITSTATUS(status), None);
        }
        if libc::WIFSIGNALED(status) {
            let s = libc::WTERMSIG(status);
            return (128 + s, Some(s));
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))
}

fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// CRI log line prefix time: RFC 3339 with nanoseconds, UTC.
pub fn cri_timestamp(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let base = crate::core::rfc3339(d.as_millis() as u64);
    format!("{}.{:09}Z", base.trim_end_matches('Z'), d.subsec_nanos())
}

struct LogStream {
    fd: OwnedFd,
    name: &'static str,
    pending: Vec<u8>,
    open: bool,
}

fn write_record(log: &mut fs::File, stream: &str, tag: &str, content: &[u8]) {
    let mut line = format!(
        "{} {stream} {tag} ",
        cri_timestamp(std::time::SystemTime::now())
    )
    .into_bytes();
    line.extend_from_slice(content);
    line.push(b'\n');
    let _ = log.write_all(&line);
}

fn copy_logs(out: OwnedFd, err: OwnedFd, mut log: fs::File) {
    let mut streams = [
        LogStream {
            fd: out,
            name: "stdout",
            pending: Vec::new(),
            open: true,
        },
        LogStream {
            fd: err,
            name: "stderr",
            pending: Vec::new(),
            open: true,
        },
    ];
    let mut buf = vec![0u8; 16384];
    while streams.iter().any(|s| s.open) {
        let mut pfds: Vec<libc::pollfd> = streams
            .iter()
            .map(|s| libc::pollfd {
                fd: if s.open { s.fd.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        for (s, p) in streams.iter_mut().zip(&pfds) {
            if !s.open || p.revents == 0 {
                continue;
            }
            // SAFETY: reading into our buffer from an fd we own.
            let r = unsafe {
                libc::read(
                    s.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                )
            };
            if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if r <= 0 {
                s.open = false;
                if !s.pending.is_empty() {
                    write_record(&mut log, s.name, "P", &s.pending);
                    s.pending.clear();
                }
                continue;
            }
            s.pending.extend_from_slice(&buf[..r as usize]);
            while let Some(i) = s.pending.iter().position(|&b| b == b'\n') {
                write_record(&mut log, s.name, "F", &s.pending[..i]);
                s.pending.drain(..=i);
            }
            if s.pending.len() >= 16384 {
                write_record(&mut log, s.name, "P", &s.pending);
                s.pending.clear();
            }
        }
    }
}

fn mkdir_p(p: &Path) -> Result<(), String> {
    fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()))
}

fn build_root(root: &Path, launch: &ContainerLaunch) -> Result<(), String> {
    let e = |e: mounter::MountError| e.to_string();
    mounter::mount_tmpfs(root, None, 0o755).map_err(e)?;
    // Which system directories must hold a mount point that does not exist on the host.
    let mut overlay_dirs: Vec<&str> = Vec::new();
    for m in &launch.mounts {
        let first = m
            .target
            .components()
            .nth(1)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(d) = SYSTEM_DIRS.iter().find(|d| **d == first) {
            if !m.target.exists() && !overlay_dirs.contains(d) {
                overlay_dirs.push(d);
            }
        }
    }
    let scratch = root.join(".bonsai");
    for d in SYSTEM_DIRS {
        let host = Path::new("/").join(d);
        let Ok(meta) = fs::symlink_metadata(&host) else {
            continue;
        };
        let target = root.join(d);
        if meta.file_type().is_symlink() {
            let link =
                fs::read_link(&host).map_err(|e| format!("readlink {}: {e}", host.display()))?;
            std::os::unix::fs::symlink(&link, &target)
                .map_err(|e| format!("symlink {}: {e}", target.display()))?;
            continue;
        }
        if !meta.is_dir() {
            continue;
        }
        mkdir_p(&target)?;
        if overlay_dirs.contains(d) {
            let base = scratch.join(d);
            let (upper, work, merged) =
                (base.join("upper"), base.join("work"), base.join("merged"));
            for p in [&upper, &work, &merged] {
                mkdir_p(p)?;
            }
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                host.display(),
                upper.display(),
                work.display()
            );
            mounter::mount_raw(
                Some(Path::new("overlay")),
                &merged,
                Some("overlay"),
                0,
                Some(&data),
            )
            .map_err(e)?;
            for m in &launch.mounts {
                if let Ok(rest) = m.target.strip_prefix(Path::new("/").join(d)) {
                    let t = merged.join(rest);
                    if m.source.is_dir() {
                        mkdir_p(&t)?;
                    } else {
                        if let Some(parent) = t.parent() {
                            mkdir_p(parent)?;
                        }
                        let _ = fs::OpenOptions::new().create(true).append(true).open(&t);
                    }
                }
            }
            mounter::bind_mount(&merged, &target, true, false).map_err(e)?;
        } else {
            mounter::bind_mount(&host, &target, true, true).map_err(e)?;
        }
    }
    for d in [
        "proc", "dev", "tmp", "run", "var", "root", "home", "mnt", "opt", "srv",
    ] {
        mkdir_p(&root.join(d))?;
    }
    let _ = fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    );
    mounter::mount_tmpfs(&root.join("tmp"), None, 0o1777).map_err(e)?;
    build_dev(&root.join("dev"))?;
    for m in &launch.mounts {
        let rel = m.target.strip_prefix("/").unwrap_or(&m.target);
        let t = root.join(rel);
        if !t.exists() {
            if m.source.is_dir() {
                mkdir_p(&t)?;
            } else {
                if let Some(parent) = t.parent() {
                    mkdir_p(parent)?;
                }
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&t)
                    .map_err(|e| format!("create {}: {e}", t.display()))?;
            }
        }
        mounter::bind_mount(&m.source, &t, m.read_only, true).map_err(e)?;
    }
    if let Some(wd) = &launch.working_dir {
        let t = root.join(wd.trim_start_matches('/'));
        if !t.exists() {
            let _ = fs::create_dir_all(&t);
        }
    }
    Ok(())
}

fn build_dev(dev: &Path) -> Result<(), String> {
    let e = |e: mounter::MountError| e.to_string();
    mounter::mount_tmpfs(dev, None, 0o755).map_err(e)?;
    for n in ["null", "zero", "full", "random", "urandom", "tty"] {
        let t = dev.join(n);
        fs::File::create(&t).map_err(|e| format!("create {}: {e}", t.display()))?;
        mounter::bind_mount(&Path::new("/dev").join(n), &t, false, false).map_err(e)?;
    }
    let pts = dev.join("pts");
    mkdir_p(&pts)?;
    mounter::mount_raw(
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(e)?;
    let shm = dev.join("shm");
    mounter::mount_tmpfs(&shm, Some(64 << 20), 0o1777).map_err(e)?;
    for (name, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(name))
            .map_err(|e| format!("symlink /dev/{name}: {e}"))?;
    }
    Ok(())
}

/// Drops every capability outside [`DEFAULT_CAPS`] from the bounding set and the current sets,
/// and sets no_new_privs. Used by the container init and by exec.
pub fn restrict_privileges() -> Result<(), String> {
    for cap in 0..64u32 {
        if DEFAULT_CAPS.contains(&cap) {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return fail(format!(
                "drop capability {cap}: {}",
                io::Error::last_os_error()
            ));
        }
    }
    let mut mask: u64 = 0;
    for c in DEFAULT_CAPS {
        mask |= 1 << c;
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let hdr = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let lo = mask as u32;
    let hi = (mask >> 32) as u32;
    let data = [
        Data {
            effective: lo,
            permitted: lo,
            inheritable: lo,
        },
        Data {
            effective: hi,
            permitted: hi,
            inheritable: hi,
        },
    ];
    // SAFETY: header and a two-element data array, as capset(2) v3 expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) };
    if r < 0 {
        return fail(format!("capset: {}", io::Error::last_os_error()));
    }
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
        return fail(format!("no_new_privs: {}", io::Error::last_os_error()));
    }
    Ok(())
}

fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "")).unwrap()
}

fn build_env(hostname: &str, env: &[(String, String)], tty: bool) -> Vec<CString> {
    let mut vars: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOSTNAME".into(), hostname.into()),
        ("HOME".into(), "/root".into()),
    ];
    if tty {
        vars.push(("TERM".into(), "xterm".into()));
    }
    for (k, v) in env {
        vars.retain(|(x, _)| x != k);
        vars.push((k.clone(), v.clone()));
    }
    vars.iter()
        .map(|(k, v)| cstring(&format!("{k}={v}")))
        .collect()
}

/// execvpe with the given environment's PATH; returns the error text on failure.
fn exec_argv(argv: &[String], env: &[CString]) -> String {
    let Some(prog) = argv.first() else {
        return "no command".into();
    };
    let path = env
        .iter()
        .find_map(|e| e.to_str().ok()?.strip_prefix("PATH=").map(str::to_string))
        .unwrap_or_else(|| DEFAULT_PATH.into());
    let cargv: Vec<CString> = argv.iter().map(|a| cstring(a)).collect();
    let mut ptrs: Vec<*const libc::c_char> = cargv.iter().map(|c| c.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let candidates: Vec<String> = if prog.contains('/') {
        vec![prog.clone()]
    } else {
        path.split(':').map(|d| format!("{d}/{prog}")).collect()
    };
    let mut last = libc::ENOENT;
    for c in &candidates {
        let cp = cstring(c);
        // SAFETY: NUL-terminated argv/envp arrays of valid C strings.
        unsafe { libc::execve(cp.as_ptr(), ptrs.as_ptr(), envp.as_ptr()) };
        let err = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::ENOENT);
        if err != libc::ENOENT {
            last = err;
        }
    }
    if last == libc::ENOENT {
        if prog.contains('/') {
            format!("exec: \"{prog}\": stat {prog}: no such file or directory")
        } else {
            format!("exec: \"{prog}\": executable file not found in $PATH")
        }
    } else {
        format!("exec: \"{prog}\": {}", io::Error::from_raw_os_error(last))
    }
}

/// PID 1 of the container (runs in the forked child; returns only on failure). `status` is
/// the exec pipe to the shim: the time the root was built goes there first.
fn container_init(
    root: &Path,
    launch: &ContainerLaunch,
    out: RawFd,
    err: RawFd,
    status: &mut fs::File,
) -> String {
    // SAFETY: prctl with integer arguments: die with the shim.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // The container's own mount namespace, a private copy of the node's; pivot_root below
    // then changes the root of this namespace only, never the shim's (the node's) view.
    if let Err(e) = mounter::unshare(libc::CLONE_NEWNS) {
        return e.to_string();
    }
    if let Err(e) = mounter::make_root_rprivate() {
        return e.to_string();
    }
    if let Err(e) = build_root(root, launch) {
        return e;
    }
    let t_root = super::mono_ns();
    if let Err(e) = mounter::mount_raw(
        Some(Path::new("proc")),
        &root.join("proc"),
        Some("proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    ) {
        return e.to_string();
    }
    if let Err(e) = std::env::set_current_dir(root) {
        return format!("chdir rootfs: {e}");
    }
    // pivot_root(".", ".") stacks the old root under the new one; detaching "." then drops it.
    if let Err(e) = mounter::pivot_root(Path::new("."), Path::new(".")) {
        return e.to_string();
    }
    if let Err(e) = mounter::unmount(Path::new("."), true) {
        return e.to_string();
    }
    let t_pivot = super::mono_ns();
    let _ = std::env::set_current_dir("/");
    let null = CString::new("/dev/null").unwrap();
    // SAFETY: fd plumbing in the child before exec.
    unsafe {
        let n = libc::open(null.as_ptr(), libc::O_RDONLY);
        libc::dup2(n, 0);
        libc::dup2(out, 1);
        libc::dup2(err, 2);
        if out > 2 {
            libc::close(out);
        }
        if err > 2 {
            libc::close(err);
        }
    }
    if let Some(wd) = &launch.working_dir {
        if let Err(e) = std::env::set_current_dir(wd) {
            return format!("chdir to cwd (\"{wd}\") set in config.json failed: {e}");
        }
    }
    if let Err(e) = restrict_privileges() {
        return e;
    }
    // Where the init's time went, for the start trace: root built, pivoted, about to exec.
    let _ = status.write_all(format!("@{t_root} {t_pivot} {}\n", super::mono_ns()).as_bytes());
    if launch.pause {
        pause_forever();
    }
    let env = build_env(&launch.hostname, &launch.env, false);
    exec_argv(&launch.argv, &env)
}

extern "C" fn pause_exit(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) };
}

/// The pause process: exits 0 on SIGTERM/SIGINT, reaps orphans, otherwise sleeps.
fn pause_forever() -> ! {
    let name = CString::new("pause").unwrap();
    // SAFETY: prctl/signal with valid arguments; the handler only calls _exit.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
        libc::signal(libc::SIGTERM, pause_exit as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, pause_exit as *const () as libc::sighandler_t);
        // Close the log pipes: pause writes nothing, and the shim then sees EOF early.
        libc::close(1);
        libc::close(2);
    }
    // The exec pipe is CLOEXEC and there is no exec: close every other fd so the shim stops
    // waiting for an exec error.
    // SAFETY: closing fds this process does not otherwise use (close_range, Linux 5.9+;
    // one by one where it is missing).
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } != 0 {
        for fd in 3..1024 {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
    loop {
        let mut st = 0;
        // SAFETY: reap any child; blocks until one exists, else pause.
        let r = unsafe { libc::waitpid(-1, &mut st, 0) };
        if r < 0 {
            // SAFETY: plain pause.
            unsafe { libc::pause() };
        }
    }
}

/// What the exec helper needs.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ExecSpec {
    /// PID of the container's init, as the node's PID namespace numbers it.
    pub init_pid: i32,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub hostname: String,
    pub working_dir: Option<String>,
    pub tty: bool,
}

fn exec_helper() -> i32 {
    let spec: ExecSpec = match std::env::var(EXEC_SPEC_ENV)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
    {
        Some(s) => s,
        None => {
            eprintln!("bonsai exec helper: missing or bad {EXEC_SPEC_ENV}");
            return 126;
        }
    };
    for ns in ["ipc", "uts", "pid", "mnt"] {
        let p = PathBuf::from(format!("/proc/{}/ns/{ns}", spec.init_pid));
        if let Err(e) = mounter::setns_path(&p) {
            eprintln!("bonsai exec: {e}");
            return 126;
        }
    }
    // SAFETY: single-threaded helper: fork is safe.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        eprintln!("bonsai exec: fork: {}", io::Error::last_os_error());
        return 126;
    }
    if pid == 0 {
        // SAFETY: session/tty setup in the child before exec.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            libc::setsid();
            if spec.tty {
                libc::ioctl(0, libc::TIOCSCTTY as _, 0);
            }
        }
        let _ = std::env::set_current_dir("/");
        if let Some(wd) = &spec.working_dir {
            let _ = std::env::set_current_dir(wd);
        }
        let msg = match restrict_privileges() {
            Ok(()) => {
                let env = build_env(&spec.hostname, &spec.env, spec.tty);
                exec_argv(&spec.argv, &env)
            }
            Err(e) => e,
        };
        let _ = writeln!(io::stderr(), "{msg}");
        // SAFETY: _exit in the forked child; 127 like a shell for "not found".
        unsafe {
            libc::_exit(
                if msg.contains("not found") || msg.contains("no such file") {
                    127
                } else {
                    126
                },
            )
        };
    }
    CHILD.store(pid, Ordering::SeqCst);
    install_forwarding();
    let (code, _) = wait_child(pid);
    code
}

/// Opens a pty pair: (master, slave). Used by the kubelet for `exec -t`.
pub fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let r = nix::pty::openpty(None, None).map_err(io::Error::from)?;
    Ok((r.master, r.slave))
}

/// Opens a pty pair inside a container's own devpts instance (through
/// `/proc/<init_pid>/root/dev/ptmx`), so the shell's `tty` and `ttyname()` find `/dev/pts/N`
/// in the container. Falls back to the node's devpts if that fails.
pub fn open_pty_in(init_pid: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let root = format!("/proc/{init_pid}/root/dev");
    let ptmx = CString::new(format!("{root}/pts/ptmx")).unwrap();
    // SAFETY: open(2) with a valid path; the fd is owned below.
    let m = unsafe {
        libc::open(
            ptmx.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if m < 0 {
        return open_pty();
    }
    // SAFETY: m is a fresh fd we own.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCSPTLCK/TIOCGPTN take pointers to ints that live across the calls.
    let ok = unsafe {
        libc::ioctl(m, libc::TIOCSPTLCK, &mut unlock) == 0
            && libc::ioctl(m, libc::TIOCGPTN, &mut n) == 0
    };
    if !ok {
        return open_pty();
    }
    let slave_path = CString::new(format!("{root}/pts/{n}")).unwrap();
    // SAFETY: open(2) with a valid path.
    let sfd = unsafe {
        libc::open(
            slave_path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if sfd < 0 {
        return open_pty();
    }
    // SAFETY: sfd is a fresh fd we own.
    Ok((master, unsafe { OwnedFd::from_raw_fd(sfd) }))
}

/// Sets a pty's window size.
pub fn set_winsize(master: RawFd, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize pointer.
    unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
}

/// Wraps a raw fd we own.
///
/// # Safety
/// `fd` must be open and owned by nobody else.
pub unsafe fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: guaranteed by the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[allow(dead_code)]
fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}
