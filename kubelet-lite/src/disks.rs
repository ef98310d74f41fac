//! Node disks: `bonsai disk add NODE NAME --size 1Gi [--backing tmpfs|loop]`, `disk ls`,
//! `disk rm`.
//!
//! A disk is a mount at `/mnt/disks/NAME` inside the node's mount namespace: a tmpfs (a RAM
//! disk: lost when the node restarts) or an ext4 image in `<node dir>/disks/NAME.img` on an
//! auto-clearing loop device (kept across restarts: the node remounts it when it boots). The
//! registry is `<node dir>/disks.json`. Mounting happens in the `node-op` helper, which joins
//! the node's mount namespace with `setns` — a single-threaded process, as setns requires.

use std::fs;
use std::path::{Path, PathBuf};

use crate::core::volumes::parse_quantity;
use crate::mounter;
use crate::node::{self, NodeError, Result};

/// How a disk is backed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Backing {
    /// A RAM disk (the lesson's `mount -t tmpfs`); gone when the node restarts.
    Tmpfs,
    /// An ext4 image on a loop device; survives node restarts.
    Loop,
}

impl std::fmt::Display for Backing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backing::Tmpfs => "tmpfs",
            Backing::Loop => "loop",
        })
    }
}

/// One registered disk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Disk {
    pub name: String,
    pub size: String,
    pub size_bytes: u64,
    pub backing: Backing,
}

pub fn load(node_dir: &Path) -> Vec<Disk> {
    fs::read(node_dir.join("disks.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn save(node_dir: &Path, disks: &[Disk]) -> Result<()> {
    let tmp = node_dir.join("disks.json.tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(disks).unwrap())
        .map_err(|e| NodeError::Io("write disks.json".into(), e))?;
    fs::rename(&tmp, node_dir.join("disks.json"))
        .map_err(|e| NodeError::Io("write disks.json".into(), e))
}

fn image_path(node_dir: &Path, name: &str) -> PathBuf {
    node_dir.join("disks").join(format!("{name}.img"))
}

fn target(name: &str) -> PathBuf {
    Path::new(crate::core::provisioner::DISCOVERY_DIR).join(name)
}

fn validate_disk_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 63
        || name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(NodeError::Other(format!(
            "invalid disk name {name:?}: use letters, digits, '-', '_' or '.' (it becomes /mnt/disks/NAME)"
        )));
    }
    Ok(())
}

/// Runs one operation inside the node's mount namespace through the `node-op` helper.
fn node_op(exe: &Path, init_pid: i32, op: serde_json::Value) -> Result<()> {
    let mut spec = op;
    spec["init_pid"] = init_pid.into();
    let out = std::process::Command::new(exe)
        .env(crate::runtime::shim::HELPER_ENV, "node-op")
        .env(crate::runtime::shim::EXEC_SPEC_ENV, spec.to_string())
        .output()
        .map_err(|e| NodeError::Io(format!("spawn {}", exe.display()), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NodeError::Other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// The `node-op` helper: setns into the node's mount namespace, then mount or unmount.
pub(crate) fn node_op_helper() -> i32 {
    let spec: serde_json::Value = match std::env::var(crate::runtime::shim::EXEC_SPEC_ENV)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
    {
        Some(s) => s,
        None => {
            eprintln!("bad node-op spec");
            return 2;
        }
    };
    let pid = spec["init_pid"].as_i64().unwrap_or(0);
    // Join the PID namespace too and work in a child: the node's /proc only knows its own
    // processes, and /proc/self/mountinfo must resolve.
    for ns in ["pid", "mnt"] {
        if let Err(e) = mounter::setns_path(Path::new(&format!("/proc/{pid}/ns/{ns}"))) {
            eprintln!("{e}");
            return 1;
        }
    }
    // SAFETY: the helper is single-threaded.
    let child = unsafe { nix::libc::fork() };
    if child < 0 {
        eprintln!("fork: {}", std::io::Error::last_os_error());
        return 1;
    }
    if child > 0 {
        let mut st = 0;
        // SAFETY: waitpid on our child with a valid out-pointer.
        unsafe { nix::libc::waitpid(child, &mut st, 0) };
        return if nix::libc::WIFEXITED(st) {
            nix::libc::WEXITSTATUS(st)
        } else {
            1
        };
    }
    let t = PathBuf::from(spec["target"].as_str().unwrap_or(""));
    let r = match spec["op"].as_str() {
        Some("tmpfs") => {
            if t.exists() {
                Err(format!("{} already exists on the node", t.display()))
            } else {
                mounter::mount_tmpfs(&t, spec["size"].as_u64(), 0o777).map_err(|e| e.to_string())
            }
        }
        Some("loop") => {
            if t.exists() {
                Err(format!("{} already exists on the node", t.display()))
            } else {
                let image = PathBuf::from(spec["image"].as_str().unwrap_or(""));
                mounter::mount_loop_ext4(&image, &t)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
        Some("umount") => {
            let mut r = Ok(());
            while mounter::is_mount_point(&t) {
                if let Err(e) = mounter::unmount(&t, false) {
                    // Busy (a shell's cwd, an open file): detach lazily, as `umount -l` does.
                    if let Err(e2) = mounter::unmount(&t, true) {
                        r = Err(format!("{e}; {e2}"));
                        break;
                    }
                }
            }
            if r.is_ok() {
                let _ = fs::remove_dir(&t);
            }
            r
        }
        _ => Err("unknown node-op".into()),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// `bonsai disk add`. Checks everything before changing anything.
pub fn add(
    exe: &Path,
    data_dir: &Path,
    node: &str,
    name: &str,
    size: &str,
    backing: Backing,
) -> Result<String> {
    node::require_node(data_dir, node)?;
    validate_disk_name(name)?;
    let size_bytes = parse_quantity(size).filter(|b| *b > 0).ok_or_else(|| {
        NodeError::Other(format!(
            "invalid size {size:?}: expected a quantity such as 512Mi, 1Gi or 10G"
        ))
    })?;
    if backing == Backing::Loop && size_bytes < 2 << 20 {
        return Err(NodeError::Other(format!(
            "size {size} is too small for an ext4 loop disk (at least 2Mi)"
        )));
    }
    let ndir = node::node_dir(data_dir, node);
    let mut disks = load(&ndir);
    if disks.iter().any(|d| d.name == name) {
        return Err(NodeError::Other(format!(
            "disk {name} already exists on {node} (remove it with `bonsai disk rm {node} {name}`)"
        )));
    }
    let pids = node::require_running(data_dir, node)?;
    match backing {
        Backing::Tmpfs => node_op(
            exe,
            pids.init_pid,
            serde_json::json!({"op": "tmpfs", "target": target(name), "size": size_bytes}),
        )?,
        Backing::Loop => {
            let img = image_path(&ndir, name);
            fs::create_dir_all(img.parent().unwrap())
                .map_err(|e| NodeError::Io("mkdir disks".into(), e))?;
            let f = fs::File::create(&img)
                .map_err(|e| NodeError::Io(format!("create {}", img.display()), e))?;
            f.set_len(size_bytes)
                .map_err(|e| NodeError::Io(format!("size {}", img.display()), e))?;
            drop(f);
            let out = std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .arg(&img)
                .output()
                .map_err(|e| {
                    let _ = fs::remove_file(&img);
                    NodeError::Io("run mkfs.ext4 (install e2fsprogs)".into(), e)
                })?;
            if !out.status.success() {
                let _ = fs::remove_file(&img);
                return Err(NodeError::Other(format!(
                    "mkfs.ext4 failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            if let Err(e) = node_op(
                exe,
                pids.init_pid,
                serde_json::json!({"op": "loop", "target": target(name), "image": img}),
            ) {
                let _ = fs::remove_file(&img);
                return Err(e);
            }
        }
    }
    disks.push(Disk {
        name: name.into(),
        size: size.into(),
        size_bytes,
        backing,
    });
    save(&ndir, &disks)?;
    Ok(format!(
        "disk {name} ({size}, {backing}) mounted at /mnt/disks/{name} on {node}{}",
        if backing == Backing::Tmpfs {
            " — a RAM disk: its data is lost when the node restarts"
        } else {
            ""
        }
    ))
}

/// `bonsai disk rm`: unmounts the disk and forgets it (a loop disk's image is deleted too).
pub fn rm(exe: &Path, data_dir: &Path, node: &str, name: &str) -> Result<String> {
    node::require_node(data_dir, node)?;
    let ndir = node::node_dir(data_dir, node);
    let mut disks = load(&ndir);
    let Some(i) = disks.iter().position(|d| d.name == name) else {
        return Err(NodeError::Other(format!(
            "no disk {name} on {node} (see `bonsai disk ls`)"
        )));
    };
    if let Some(pids) = node::running_pids(data_dir, node) {
        node_op(
            exe,
            pids.init_pid,
            serde_json::json!({"op": "umount", "target": target(name)}),
        )?;
    }
    let d = disks.remove(i);
    if d.backing == Backing::Loop {
        let _ = fs::remove_file(image_path(&ndir, name));
    }
    save(&ndir, &disks)?;
    Ok(format!(
        "disk {name} unmounted from /mnt/disks/{name} on {node} and removed"
    ))
}

/// `bonsai disk ls`: (node, disk) rows for every node.
pub fn ls(data_dir: &Path) -> Vec<(String, Disk, bool)> {
    let mut out = Vec::new();
    for n in node::known_nodes(data_dir) {
        let running = node::running_pids(data_dir, &n).is_some();
        for d in load(&node::node_dir(data_dir, &n)) {
            out.push((n.clone(), d, running));
        }
    }
    out
}

/// Called by the node process at boot (inside its fresh mount namespace): remounts loop disks,
/// drops tmpfs disks (their memory died with the previous boot). Returns what it did, to say so.
pub fn restore_on_boot(data_dir: &Path, node: &str) -> Vec<String> {
    let ndir = node::node_dir(data_dir, node);
    let disks = load(&ndir);
    let mut kept = Vec::new();
    let mut msgs = Vec::new();
    for d in disks {
        match d.backing {
            Backing::Tmpfs => msgs.push(format!(
                "tmpfs disk {} was lost: a RAM disk does not survive a node restart",
                d.name
            )),
            Backing::Loop => {
                match mounter::mount_loop_ext4(&image_path(&ndir, &d.name), &target(&d.name)) {
                    Ok(dev) => {
                        msgs.push(format!(
                            "loop disk {} remounted at /mnt/disks/{} ({})",
                            d.name,
                            d.name,
                            dev.display()
                        ));
                        kept.push(d);
                    }
                    Err(e) => {
                        msgs.push(format!("loop disk {} could not be remounted: {e}", d.name));
                        kept.push(d);
                    }
                }
            }
        }
    }
    let _ = save(&ndir, &kept);
    msgs
}
