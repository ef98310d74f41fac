//! The container-shim fork server ("zygote").
//!
//! Starting a shim by re-executing the kubelet's own binary costs an exec of a large binary
//! (loading, relocating, page-faulting it in: about 1.5 ms, more under load) on every container
//! start, plus a spawn from a multi-threaded process. Instead, the kubelet forks this small
//! server once, while it is still single-threaded (before its tokio runtime exists).
//!
//! The server keeps one **spare** shim ready: forked in advance, it has made its UTS, IPC and
//! PID namespaces and forked its container init (PID 1 of the new PID namespace), and both
//! sleep. Forking is what makes a start slow under CPU load — a new process can wait several
//! milliseconds for its first time slice, while a woken sleeper runs at once — so the start
//! itself forks nothing. For each container start the kubelet sends the container's state
//! directory and the write end of a report pipe over a `SOCK_SEQPACKET` socket; the server
//! hands both to the spare (which from then on runs [`super::shim::run_prepared`], the same
//! code a re-executed helper runs, with the report pipe as its stdout), answers with the
//! shim's pid and a pidfd on it — the kubelet waits on that (the shim writes its exit status
//! to `<dir>/exit`, as always) — and then forks the next spare. Without a spare (it died), the
//! server forks a shim for the request directly.
//!
//! The server dies with the kubelet (PR_SET_PDEATHSIG); shims do not (a restarted kubelet adopts
//! them): they become children of the node's init, which reaps them. If the server is gone, the
//! runtime falls back to re-executing the helper binary.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use nix::libc;

/// The kubelet's end of the fork server.
#[derive(Debug)]
pub struct Zygote {
    sock: Mutex<OwnedFd>,
    pid: i32,
}

static GLOBAL: OnceLock<std::sync::Arc<Zygote>> = OnceLock::new();

/// The fork server started by [`Zygote::start_global`], if any.
pub fn global() -> Option<std::sync::Arc<Zygote>> {
    GLOBAL.get().cloned()
}

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `sendmsg` of `data` with `fds` attached (SCM_RIGHTS).
fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let payload = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    // u64 elements: cmsghdr needs 8-byte alignment.
    let mut cbuf = vec![0u64; space.div_ceil(8).max(1)];
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` bytes, enough for one header with `fds`.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(c) as *mut RawFd,
                fds.len(),
            );
        }
    }
    loop {
        // SAFETY: msg and everything it points to live across the call.
        match cvt(unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) }) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `recvmsg` into `buf`; returns the length (0: the peer closed) and the fds that came with it
/// (close-on-exec).
fn recv_with_fds(sock: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(4 * std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg points at live buffers of the stated sizes.
        match cvt(unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) }) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel just wrote, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const RawFd;
                let len = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..len {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n, fds))
}

impl Zygote {
    /// Forks the fork server and makes it [`global`]. Call while the process is still
    /// single-threaded (before any runtime or thread exists).
    pub fn start_global() -> io::Result<()> {
        let z = Zygote::start()?;
        let _ = GLOBAL.set(std::sync::Arc::new(z));
        Ok(())
    }

    /// Forks the fork server. The process must be single-threaded.
    pub fn start() -> io::Result<Zygote> {
        let (ours, theirs) = seqpacket_pair()?;
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the caller guarantees a single-threaded process, so fork is safe.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            drop(ours);
            serve(theirs, parent);
        }
        drop(theirs);
        Ok(Zygote {
            sock: Mutex::new(ours),
            pid,
        })
    }

    /// The server's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Forks a container shim for the state directory `dir`, with `report` as its stdout.
    /// Returns the shim's pid and a pidfd on it.
    pub fn spawn_shim(&self, dir: &Path, report: OwnedFd) -> io::Result<(i32, OwnedFd)> {
        let sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        send_with_fds(
            sock.as_raw_fd(),
            dir.as_os_str().as_bytes(),
            &[report.as_raw_fd()],
        )?;
        drop(report);
        let mut buf = [0u8; 64];
        let (n, mut fds) = recv_with_fds(sock.as_raw_fd(), &mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the shim fork server is gone",
            ));
        }
        let text = String::from_utf8_lossy(&buf[..n]);
        let pid: i32 = match text.strip_prefix("pid ") {
            Some(p) => p.trim().parse().unwrap_or(-1),
            None => return Err(io::Error::other(text.into_owned())),
        };
        match (pid > 0, fds.pop()) {
            (true, Some(pidfd)) => Ok((pid, pidfd)),
            _ => Err(io::Error::other(format!("fork server: bad reply {text:?}"))),
        }
    }
}

extern "C" fn reap(_: libc::c_int) {
    let saved = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    loop {
        let mut st = 0;
        // SAFETY: waitpid is async-signal-safe.
        if unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } <= 0 {
            break;
        }
    }
    // SAFETY: restore errno for the interrupted code.
    unsafe { *libc::__errno_location() = saved };
}

fn sigchld_mask(how: libc::c_int) {
    // SAFETY: a sigset on the stack, initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(how, &set, std::ptr::null_mut());
    }
}

fn set_sigchld(handler: libc::sighandler_t) {
    // SAFETY: installing a handler that only calls async-signal-safe functions (or SIG_DFL).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler;
        sa.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut());
    }
}

/// A pre-forked shim waiting for its container (see the module docs).
struct Spare {
    pid: i32,
    pidfd: OwnedFd,
    /// The job goes here: the state directory, with the report pipe attached.
    job: OwnedFd,
}

/// A connected pair of close-on-exec SOCK_SEQPACKET sockets (one message per request, fds
/// passed alongside).
fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut sv = [0 as RawFd; 2];
    // SAFETY: socketpair with a valid out-array of two fds.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    } as isize)?;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) })
}

/// Forks a spare shim. `server` is the kubelet's socket, which the spare must not keep open.
fn make_spare(server: RawFd) -> io::Result<Spare> {
    let (ours, theirs) = seqpacket_pair()?;
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    sigchld_mask(libc::SIG_BLOCK);
    // SAFETY: the server is single-threaded, so fork is safe.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        set_sigchld(libc::SIG_DFL);
        sigchld_mask(libc::SIG_UNBLOCK);
        // SAFETY: closing the child's copy of the kubelet's socket (never used here).
        unsafe { libc::close(server) };
        drop(ours);
        spare_main(theirs, me);
    }
    let r = if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: pidfd_open on our own, not yet reaped child.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            // SAFETY: kill(2) on our own child, which is useless without a pidfd.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Err(io::Error::last_os_error())
        } else {
            Ok(Spare {
                pid,
                // SAFETY: a fresh fd from pidfd_open, owned here.
                pidfd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
                job: ours,
            })
        }
    };
    sigchld_mask(libc::SIG_UNBLOCK);
    r
}

/// A spare shim: prepares, sleeps until it gets its container, then runs it (never returns).
fn spare_main(job: OwnedFd, server: i32) -> ! {
    // Unused, a spare dies with the fork server; once it has a container it must outlive the
    // kubelet (a restarted kubelet adopts it), so the death signal is cleared then.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != server {
        // SAFETY: the server died before the death signal was armed.
        unsafe { libc::_exit(0) };
    }
    let name = CString::new("bonsai-containe").unwrap();
    // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
    let prepared = super::shim::prepare();
    let mut buf = vec![0u8; 8192];
    let (n, fds) = match recv_with_fds(job.as_raw_fd(), &mut buf) {
        Ok((n, fds)) if n > 0 => (n, fds),
        // SAFETY: never used: leave (the waiting init follows by its death signal).
        _ => unsafe { libc::_exit(0) },
    };
    // SAFETY: prctl with integer arguments: no death signal from now on.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    super::shim::mark_entry();
    drop(job);
    let dir = PathBuf::from(OsStr::from_bytes(&buf[..n]));
    let Some(report) = fds.into_iter().next() else {
        // SAFETY: a malformed job; nobody is waiting for a report.
        unsafe { libc::_exit(1) }
    };
    stdio_to(report);
    let code = match prepared {
        Ok(p) => super::shim::run_prepared(p, &dir),
        Err(e) => {
            super::shim::report(&format!("error {e}"));
            1
        }
    };
    // SAFETY: leave without running the kubelet's atexit handlers or destructors.
    unsafe { libc::_exit(code) }
}

/// stdout := `report`, stdin := /dev/null.
fn stdio_to(report: OwnedFd) {
    let null = CString::new("/dev/null").unwrap();
    // SAFETY: fd plumbing in a single-threaded child.
    unsafe {
        libc::dup2(report.as_raw_fd(), 1);
        let n = libc::open(null.as_ptr(), libc::O_RDONLY);
        if n >= 0 {
            libc::dup2(n, 0);
            libc::close(n);
        }
    }
    drop(report);
}

/// The fork server's loop (in the forked child; never returns).
fn serve(sock: OwnedFd, parent: i32) -> ! {
    // SAFETY: prctl with integer arguments: die with the kubelet.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        // SAFETY: the kubelet died before PDEATHSIG was armed.
        unsafe { libc::_exit(0) };
    }
    let name = CString::new("bonsai-zygote").unwrap();
    // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
    set_sigchld(reap as *const () as libc::sighandler_t);
    let mut spare = make_spare(sock.as_raw_fd()).ok();
    let mut buf = vec![0u8; 8192];
    loop {
        let (n, fds) = match recv_with_fds(sock.as_raw_fd(), &mut buf) {
            Ok((0, _)) | Err(_) => {
                // SAFETY: the kubelet closed its end: leave.
                unsafe { libc::_exit(0) }
            }
            Ok(x) => x,
        };
        let dir = PathBuf::from(OsStr::from_bytes(&buf[..n]));
        let Some(report) = fds.into_iter().next() else {
            let _ = send_with_fds(sock.as_raw_fd(), b"error: no report pipe", &[]);
            continue;
        };
        // The spare takes the job; a dead spare refuses it (EPIPE) and is forgotten.
        if let Some(s) = spare.take() {
            let sent = send_with_fds(
                s.job.as_raw_fd(),
                dir.as_os_str().as_bytes(),
                &[report.as_raw_fd()],
            );
            if sent.is_ok() {
                drop(report);
                let _ = send_with_fds(
                    sock.as_raw_fd(),
                    format!("pid {}", s.pid).as_bytes(),
                    &[s.pidfd.as_raw_fd()],
                );
                drop(s);
                spare = make_spare(sock.as_raw_fd()).ok();
                continue;
            }
        }
        // SIGCHLD stays blocked from the fork until the pidfd exists, so a shim that exits at
        // once cannot be reaped (and its pid reused) before the pidfd pins it.
        sigchld_mask(libc::SIG_BLOCK);
        // SAFETY: the server is single-threaded, so fork is safe.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // The shim waits for its own child: it must not inherit the reaping handler.
            set_sigchld(libc::SIG_DFL);
            sigchld_mask(libc::SIG_UNBLOCK);
            drop(sock);
            shim_child(&dir, report);
        }
        let reply = if pid < 0 {
            sigchld_mask(libc::SIG_UNBLOCK);
            let _ = send_with_fds(
                sock.as_raw_fd(),
                format!("error: fork: {}", io::Error::last_os_error()).as_bytes(),
                &[],
            );
            continue;
        } else {
            // SAFETY: pidfd_open on our own, not yet reaped child.
            unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }
        };
        sigchld_mask(libc::SIG_UNBLOCK);
        drop(report);
        if reply < 0 {
            let _ = send_with_fds(
                sock.as_raw_fd(),
                format!("error: pidfd_open: {}", io::Error::last_os_error()).as_bytes(),
                &[],
            );
            continue;
        }
        // SAFETY: a fresh fd from pidfd_open, owned here.
        let pidfd = unsafe { OwnedFd::from_raw_fd(reply as RawFd) };
        let _ = send_with_fds(
            sock.as_raw_fd(),
            format!("pid {pid}").as_bytes(),
            &[pidfd.as_raw_fd()],
        );
    }
}

/// A shim forked for one request (no spare was ready): stdout is the report pipe, stdin
/// /dev/null, then the shim proper.
fn shim_child(dir: &Path, report: OwnedFd) -> ! {
    super::shim::mark_entry();
    stdio_to(report);
    let name = CString::new("bonsai-containe").unwrap();
    // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
    let code = super::shim::container_shim(dir);
    // SAFETY: leave without running the kubelet's atexit handlers or destructors.
    unsafe { libc::_exit(code) }
}
