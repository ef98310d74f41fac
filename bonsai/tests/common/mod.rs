//! Shared by bonsai's integration tests: a cluster started with the real binary
//! (`bonsai up --port 0 --data-dir <tmp>`), torn down by a Drop guard even when a test fails,
//! and a kubectl with its own cache dir pointed at its kubeconfig.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

pub fn bonsai_bin() -> &'static str {
    env!("CARGO_BIN_EXE_bonsai")
}

/// Runs `bonsai <args>` and returns its output.
pub fn bonsai(args: &[&str]) -> Output {
    Command::new(bonsai_bin())
        .args(args)
        .env_remove("BONSAI_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run bonsai")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A running cluster in a temp data dir.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub cache: tempfile::TempDir,
    pub port: u16,
    pub pid: i32,
    pub up_stdout: String,
}

impl TestCluster {
    /// `bonsai up --port 0 --data-dir <tmp> --nodes 0`: the control plane alone, asserting it
    /// succeeds. API-level tests need no nodes, and without nodes they need no root, so they run
    /// (rather than skip) for a non-root developer too. Tests that want nodes use `up_with`.
    pub fn up() -> TestCluster {
        Self::up_with(&["--nodes", "0"])
    }

    pub fn up_with(extra: &[&str]) -> TestCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = tempfile::tempdir().expect("tempdir");
        let data = dir.path().to_str().unwrap().to_string();
        let mut args = vec!["up", "--port", "0", "--data-dir", &data];
        args.extend_from_slice(extra);
        let out = bonsai(&args);
        let up_stdout = text(&out.stdout);
        let mut cluster = TestCluster {
            dir,
            cache,
            port: 0,
            pid: 0,
            up_stdout,
        };
        assert!(
            out.status.success(),
            "bonsai up failed: {}\n{}\nlog:\n{}",
            cluster.up_stdout,
            text(&out.stderr),
            std::fs::read_to_string(cluster.path().join("logs/bonsai.out")).unwrap_or_default()
        );
        let state = cluster.state();
        cluster.port = state["port"].as_u64().unwrap() as u16;
        cluster.pid = state["pid"].as_i64().unwrap() as i32;
        cluster
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.path().join("kubeconfig")
    }

    pub fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.path().join("bonsai.state")).expect("state file");
        serde_json::from_str(&text).expect("state json")
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.path().join("token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// `bonsai <cmd> --data-dir <ours> <args>`
    pub fn bonsai(&self, cmd: &str, args: &[&str]) -> Output {
        let mut all = vec![cmd, "--data-dir", self.data_dir()];
        all.extend_from_slice(args);
        bonsai(&all)
    }

    /// kubectl with our kubeconfig and cache dir.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Stops the cluster with `bonsai down` and checks nothing of it is left.
    pub fn down(&mut self) -> Output {
        let out = self.bonsai("down", &[]);
        self.pid = 0;
        out
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.pid == 0 {
            return;
        }
        let _ = self.bonsai("down", &[]);
        // Whatever `down` could not stop (a failed test may have left it half-way) is killed.
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), Signal::SIGKILL);
    }
}

/// Whether a process with this pid runs (a zombie does not).
pub fn alive(pid: i32) -> bool {
    if nix::sys::signal::kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Waits (up to `deadline`) until `cond` holds.
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Parses kubectl's table output into rows of (header → cell), using the header's column
/// offsets (kubectl aligns every cell under its header; headers may contain single spaces).
pub fn parse_table(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return (vec![], vec![]);
    };
    let mut starts = vec![];
    let bytes = header.as_bytes();
    for i in 0..bytes.len() {
        let begins = bytes[i] != b' '
            && (i == 0 || (i >= 2 && bytes[i - 1] == b' ' && bytes[i - 2] == b' '));
        if begins {
            starts.push(i);
        }
    }
    let cut = |line: &str, k: usize| -> String {
        let from = starts[k].min(line.len());
        let to = if k + 1 < starts.len() {
            starts[k + 1].min(line.len())
        } else {
            line.len()
        };
        line.get(from..to).unwrap_or("").trim().to_string()
    };
    let headers: Vec<String> = (0..starts.len()).map(|k| cut(header, k)).collect();
    let rows = lines
        .map(|l| (0..starts.len()).map(|k| cut(l, k)).collect())
        .collect();
    (headers, rows)
}
