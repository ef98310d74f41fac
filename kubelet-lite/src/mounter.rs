//! The mounter: the only module (with `runtime`) that calls `mount(2)`, `umount2(2)`,
//! `unshare(2)`, `setns(2)` and the loop-device ioctls.
//!
//! Namespaces and propagation, in the order they are set up:
//!
//! 1. `bonsai kubelet` (the *node process*) calls `unshare(CLONE_NEWNS | CLONE_NEWPID)` before
//!    any thread exists, then makes `/` recursively **slave** ([`make_root_rslave`]): mounts made
//!    by the host still appear in the node (so host unmounts never leave a node pinning a
//!    filesystem), but nothing the node mounts ever propagates back to the host.
//! 2. It mounts a small tmpfs on `/mnt/disks` ([`mount_tmpfs`]): the node's disks directory is its
//!    own; the host only ever sees an empty directory there.
//! 3. Disks are tmpfs mounts or ext4 images on auto-clearing loop devices ([`attach_loop`]): when
//!    the node's mount namespace dies (node stopped or killed), the kernel drops the last
//!    reference to the device and detaches it.
//! 4. Each container shim calls `unshare(CLONE_NEWNS | …)` and makes `/` recursively private
//!    before its first bind, so a container's mounts never reach the node either.
//!
//! Every function here is synchronous and reports failures as [`MountError`] naming the
//! operation and path.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::libc;

use crate::core::MountOp;

/// A mount-side failure, naming the operation and the path it was applied to.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A system call failed.
    #[error("{op} {path}: {source}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = MountError> = std::result::Result<T, E>;

fn sys<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MountError + 'a {
    move |source| MountError::Sys {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `mount(2)` with optional source, fstype and data.
pub fn mount_raw(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<()> {
    let src = source.map(cstr);
    let tgt = cstr(target);
    let fst = fstype.map(|s| CString::new(s).unwrap());
    let dat = data.map(|s| CString::new(s).unwrap());
    // SAFETY: every pointer is either null or a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            tgt.as_ptr(),
            fst.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            dat.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr() as *const libc::c_void),
        )
    };
    check(rc).map_err(sys("mount", target))
}

/// Makes every mount under `/` a slave of the host's (step 1 above).
pub fn make_root_rslave() -> Result<()> {
    mount_raw(
        None,
        Path::new("/"),
        None,
        libc::MS_SLAVE | libc::MS_REC,
        None,
    )
}

/// Makes every mount under `/` private (containers: step 4 above).
pub fn make_root_rprivate() -> Result<()> {
    mount_raw(
        None,
        Path::new("/"),
        None,
        libc::MS_PRIVATE | libc::MS_REC,
        None,
    )
}

/// Mounts a fresh tmpfs at `target` (created if missing), with an optional size limit.
pub fn mount_tmpfs(target: &Path, size_bytes: Option<u64>, mode: u32) -> Result<()> {
    fs::create_dir_all(target).map_err(sys("mkdir", target))?;
    let mut data = format!("mode={mode:o}");
    if let Some(s) = size_bytes {
        data.push_str(&format!(",size={s}"));
    }
    mount_raw(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&data),
    )
}

/// Bind-mounts `source` at `target`; read-only needs a second, remounting call (the kernel
/// ignores MS_RDONLY on the initial bind).
pub fn bind_mount(source: &Path, target: &Path, read_only: bool, recursive: bool) -> Result<()> {
    let mut flags = libc::MS_BIND;
    if recursive {
        flags |= libc::MS_REC;
    }
    mount_raw(Some(source), target, None, flags, None)?;
    if read_only {
        remount_read_only(target)?;
    }
    Ok(())
}

/// Remounts an existing bind mount read-only, keeping the flags the kernel will not let us drop.
pub fn remount_read_only(target: &Path) -> Result<()> {
    let st = nix::sys::statvfs::statvfs(target).map_err(|e| MountError::Sys {
        op: "statvfs",
        path: target.to_path_buf(),
        source: e.into(),
    })?;
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    let f = st.flags();
    use nix::sys::statvfs::FsFlags;
    if f.contains(FsFlags::ST_NOSUID) {
        flags |= libc::MS_NOSUID;
    }
    if f.contains(FsFlags::ST_NODEV) {
        flags |= libc::MS_NODEV;
    }
    if f.contains(FsFlags::ST_NOEXEC) {
        flags |= libc::MS_NOEXEC;
    }
    mount_raw(None, target, None, flags, None)
}

/// Unmounts `target`; with `detach`, lazily (MNT_DETACH) so busy mounts cannot wedge cleanup.
pub fn unmount(target: &Path, detach: bool) -> Result<()> {
    let t = cstr(target);
    let flags = if detach { libc::MNT_DETACH } else { 0 };
    // SAFETY: `t` is a valid NUL-terminated path.
    check(unsafe { libc::umount2(t.as_ptr(), flags) }).map_err(sys("umount", target))
}

/// The mount points currently visible to this process, from /proc/self/mountinfo (field 5),
/// with the kernel's octal escapes (`\040` for a space) decoded.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect())
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is a mount point in this mount namespace.
pub fn is_mount_point(path: &Path) -> bool {
    // statx says it directly (STATX_ATTR_MOUNT_ROOT, Linux 5.8+), without rendering the whole
    // mount table — which grows by two mounts per running pod and was read on every mount
    // and unmount of a pod's volumes.
    if let Some(v) = statx_mount_root(path) {
        return v;
    }
    mount_points()
        .map(|m| m.iter().any(|p| p == path))
        .unwrap_or(false)
}

/// Whether `path` (not following a final symlink) is the root of a mount; `None` when the
/// kernel cannot tell (then the mount table decides). A missing path is no mount point.
fn statx_mount_root(path: &Path) -> Option<bool> {
    let c = cstr(path);
    // SAFETY: an all-zero statx is a valid out-buffer.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and out-pointer.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            libc::STATX_TYPE,
            &mut st,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error().raw_os_error();
        return matches!(e, Some(libc::ENOENT) | Some(libc::ENOTDIR)).then_some(false);
    }
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    (st.stx_attributes_mask & bit != 0).then_some(st.stx_attributes & bit != 0)
}

/// Total size of the filesystem holding `path` (blocks × fragment size), as statfs reports it.
pub fn fs_total_bytes(path: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| MountError::Sys {
        op: "statfs",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(st.blocks() as u64 * st.fragment_size() as u64)
}

/// Executes the core's [`MountOp`]s against the kernel.
#[derive(Debug, Default)]
pub struct LinuxMounter;

impl crate::core::Mounter for LinuxMounter {
    fn apply(&mut self, op: &MountOp) -> Result<()> {
        match op {
            MountOp::CreateDir { path } => {
                fs::create_dir_all(path).map_err(sys("mkdir", path))?;
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(path, fs::Permissions::from_mode(0o750))
                    .map_err(sys("chmod", path))
            }
            MountOp::MountTmpfs { target, size_bytes } => {
                if is_mount_point(target) {
                    return Ok(());
                }
                mount_tmpfs(target, *size_bytes, 0o777)
            }
            MountOp::BindMount {
                source,
                target,
                read_only,
            } => {
                // Idempotent, as the local-volume plugin: an existing mount point is kept.
                if is_mount_point(target) {
                    return Ok(());
                }
                bind_mount(source, target, *read_only, false)
            }
            MountOp::Unmount { target } => {
                while is_mount_point(target) {
                    unmount(target, true)?;
                }
                Ok(())
            }
            MountOp::RemoveDir { path } => match fs::remove_dir(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(MountError::Sys {
                    op: "rmdir",
                    path: path.clone(),
                    source: e,
                }),
            },
            MountOp::RemoveTree { path } => remove_tree_no_mounts(path),
        }
    }
}

/// Removes a directory tree, refusing (with an error, before deleting anything) if any mount
/// point lies inside it: a still-mounted volume's data must never be deleted by a cleanup.
pub fn remove_tree_no_mounts(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mounts = mount_points().map_err(sys("read mountinfo", path))?;
    if let Some(m) = mounts.iter().find(|m| m.starts_with(path)) {
        return Err(MountError::Sys {
            op: "refusing to remove (a mount point is inside)",
            path: m.clone(),
            source: io::Error::from_raw_os_error(libc::EBUSY),
        });
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(MountError::Sys {
            op: "rm -r",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

// ---- loop devices ------------------------------------------------------------------------------

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// Attaches `image` to a free loop device with LO_FLAGS_AUTOCLEAR and returns the device path
/// and an open handle on it. Autoclear means the device detaches itself once its last user is
/// gone — so the caller must keep the handle until the mount holds the device, and a killed
/// node never leaks a loop device.
pub fn attach_loop(image: &Path) -> Result<(PathBuf, fs::File)> {
    let ctl = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(sys("open", Path::new("/dev/loop-control")))?;
    let backing = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(sys("open", image))?;
    // Another process may grab the same free device between GET_FREE and SET_FD (EBUSY): retry.
    for _ in 0..16 {
        // SAFETY: plain ioctl on an open fd, no pointer argument.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(io::Error::last_os_error()).map_err(sys("LOOP_CTL_GET_FREE", image));
        }
        let dev = PathBuf::from(format!("/dev/loop{n}"));
        let devf = match fs::OpenOptions::new().read(true).write(true).open(&dev) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Inside a container the node may not exist yet: create it (block, major 7).
                let c = cstr(&dev);
                // SAFETY: valid path; mknod has no memory side effects.
                unsafe {
                    libc::mknod(
                        c.as_ptr(),
                        libc::S_IFBLK | 0o600,
                        libc::makedev(7, n as u32),
                    );
                }
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&dev)
                    .map_err(sys("open", &dev))?
            }
            Err(e) => {
                return Err(MountError::Sys {
                    op: "open",
                    path: dev,
                    source: e,
                })
            }
        };
        // SAFETY: LOOP_SET_FD takes the backing fd as an integer argument.
        let rc = unsafe { libc::ioctl(devf.as_raw_fd(), LOOP_SET_FD as _, backing.as_raw_fd()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) {
                continue;
            }
            return Err(MountError::Sys {
                op: "LOOP_SET_FD",
                path: dev,
                source: e,
            });
        }
        // SAFETY: LoopInfo64 is plain old data; zero is a valid value for every field.
        let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
        info.lo_flags = LO_FLAGS_AUTOCLEAR;
        let name = image.as_os_str().as_bytes();
        let k = name.len().min(63);
        info.lo_file_name[..k].copy_from_slice(&name[..k]);
        // SAFETY: `info` is a valid, properly laid out loop_info64 for the duration of the call.
        let rc = unsafe { libc::ioctl(devf.as_raw_fd(), LOOP_SET_STATUS64 as _, &info) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: detach what we attached; no pointer argument.
            unsafe { libc::ioctl(devf.as_raw_fd(), LOOP_CLR_FD as _, 0) };
            return Err(MountError::Sys {
                op: "LOOP_SET_STATUS64",
                path: dev,
                source: e,
            });
        }
        return Ok((dev, devf));
    }
    Err(MountError::Sys {
        op: "attach loop device",
        path: image.to_path_buf(),
        source: io::Error::from_raw_os_error(libc::EBUSY),
    })
}

/// Mounts an ext4 filesystem image through an auto-clearing loop device.
pub fn mount_loop_ext4(image: &Path, target: &Path) -> Result<PathBuf> {
    let (dev, handle) = attach_loop(image)?;
    // Until the mount holds the device, our handle keeps autoclear from releasing it; on any
    // failure, dropping the handle releases it.
    fs::create_dir_all(target).map_err(sys("mkdir", target))?;
    mount_raw(
        Some(&dev),
        target,
        Some("ext4"),
        libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )?;
    drop(handle);
    Ok(dev)
}

// ---- namespaces ----------------------------------------------------------------------------------

/// `unshare(2)` with raw CLONE_* flags.
pub fn unshare(flags: libc::c_int) -> Result<()> {
    // SAFETY: unshare has no memory-safety preconditions.
    check(unsafe { libc::unshare(flags) }).map_err(sys("unshare", Path::new("/")))
}

/// Joins the namespace behind `/proc/<pid>/ns/<kind>`.
pub fn setns_path(ns_file: &Path) -> Result<()> {
    let f = fs::File::open(ns_file).map_err(sys("open", ns_file))?;
    // SAFETY: setns on an fd we own; nstype 0 accepts any namespace kind.
    check(unsafe { libc::setns(f.as_raw_fd(), 0) }).map_err(sys("setns", ns_file))
}

/// `pivot_root(2)`: makes `new_root` the root and moves the old root to `put_old`.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> Result<()> {
    let a = cstr(new_root);
    let b = cstr(put_old);
    // SAFETY: two valid NUL-terminated paths.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, a.as_ptr(), b.as_ptr()) };
    check(rc as libc::c_int).map_err(sys("pivot_root", new_root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn mount_points_agree_with_the_mount_table() {
        let table = mount_points().unwrap();
        for m in ["/", "/proc"] {
            let m = Path::new(m);
            assert_eq!(is_mount_point(m), table.iter().any(|t| t == m), "{m:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            is_mount_point(dir.path()),
            table.iter().any(|m| m == dir.path())
        );
        assert!(!is_mount_point(&dir.path().join("missing")));
    }
}
