//! `bonsai up / status / down / kubeconfig / apiserver` through the real binary: start-up
//! output, refusal of a second `up`, recovery from a crash's leftovers, busy ports, foreground
//! Ctrl-C, and that `down` leaves no process behind.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn up_status_second_up_down() {
    let mut c = TestCluster::up();
    // What started, where, how long, and the export line.
    assert!(c.up_stdout.contains("bonsai is up in"), "{}", c.up_stdout);
    assert!(
        c.up_stdout
            .contains(&format!("https://127.0.0.1:{}", c.port)),
        "{}",
        c.up_stdout
    );
    let export = format!("export KUBECONFIG={}", c.kubeconfig().display());
    assert!(c.up_stdout.lines().any(|l| l == export), "{}", c.up_stdout);

    // The kubeconfig: 0600, the real port, the token, bonsai's CA.
    let meta = std::fs::metadata(c.kubeconfig()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let kc = std::fs::read_to_string(c.kubeconfig()).unwrap();
    assert!(
        kc.contains(&format!("server: https://127.0.0.1:{}", c.port)),
        "{kc}"
    );
    assert!(kc.contains(&c.token()), "{kc}");
    assert!(kc.contains("certificate-authority-data:"), "{kc}");

    let st = c.bonsai("status", &[]);
    assert!(st.status.success(), "{}", text(&st.stdout));
    assert!(
        text(&st.stdout).contains(&format!("pid {}", c.pid)),
        "{}",
        text(&st.stdout)
    );
    assert!(
        text(&st.stdout).contains("readyz             ok"),
        "{}",
        text(&st.stdout)
    );

    let path = c.bonsai("kubeconfig", &[]);
    assert_eq!(
        text(&path.stdout).trim(),
        c.kubeconfig().display().to_string()
    );

    // A second `up` on the same data dir is refused, naming pid and port.
    let again = c.bonsai("up", &["--port", "0"]);
    assert!(!again.status.success());
    let err = text(&again.stderr);
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains(&format!("pid {}", c.pid)), "{err}");
    assert!(err.contains(&c.port.to_string()), "{err}");

    let pid = c.pid;
    let down = c.down();
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(
        text(&down.stdout).contains("bonsai stopped"),
        "{}",
        text(&down.stdout)
    );
    assert!(!alive(pid), "the cluster process is still alive after down");
    assert!(!c.path().join("bonsai.state").exists());
    let st = c.bonsai("status", &[]);
    assert!(!st.status.success());
    assert!(text(&st.stdout).contains("not running"));
    // Down again is harmless.
    assert!(c.bonsai("down", &[]).status.success());
}

#[test]
fn crash_leftovers_are_recovered() {
    let mut c = TestCluster::up();
    let pid = c.pid;
    // A power cut for the cluster process: no cleanup at all.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !alive(pid)),
        "pid {pid} survived SIGKILL"
    );
    // The leader turns zombie before the process's other threads (controllers, store
    // threads) have exited; the kernel drops the run lock only with the last of them.
    assert!(
        wait_until(Duration::from_secs(10), || run_lock_free(c.path())),
        "the run lock of pid {pid} outlived it"
    );
    assert!(
        c.path().join("bonsai.state").exists(),
        "a crash leaves the state file"
    );
    let st = c.bonsai("status", &[]);
    assert!(
        text(&st.stdout).contains("did not shut down cleanly"),
        "{}",
        text(&st.stdout)
    );

    // `up` recovers (the lock died with the process) and says so.
    let out = c.bonsai("up", &["--port", "0"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("did not shut down cleanly"),
        "{}",
        text(&out.stderr)
    );
    c.pid = c.state()["pid"].as_i64().unwrap() as i32;
    assert_ne!(c.pid, pid);
    assert!(c.bonsai("status", &[]).status.success());
    assert!(c.down().status.success());
}

/// Whether nobody holds `<dir>/bonsai.lock` (taken and given back at once).
fn run_lock_free(dir: &std::path::Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("bonsai.lock"))
    else {
        return true;
    };
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok()
}

#[test]
fn fabricated_stale_lock_and_state_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("bonsai.lock"), "999999").unwrap();
    std::fs::write(
        dir.path().join("bonsai.state"),
        r#"{"pid":999999,"port":1,"api_port":2,"started_at_ms":0,"components":[],"store":"sled","kubeconfig":"x"}"#,
    )
    .unwrap();
    let out = bonsai(&["up", "--port", "0", "--data-dir", data]);
    let pid = std::fs::read_to_string(dir.path().join("bonsai.state"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["pid"].as_i64())
        .unwrap_or(0) as i32;
    let guard = Guard(data.to_string(), pid);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("pid 999999"),
        "{}",
        text(&out.stderr)
    );
    assert_ne!(pid, 999_999);
    drop(guard);
    assert!(!alive(pid));
}

/// Stops a cluster started outside `TestCluster`.
struct Guard(String, i32);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = bonsai(&["down", "--data-dir", &self.0]);
        if self.1 > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.1),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn busy_port_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = bonsai(&["up", "--port", &port, "--data-dir", data]);
    let _guard = Guard(data.to_string(), 0);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("already in use"), "{err}");
    assert!(err.contains("--port 0"), "{err}");
    // Nothing keeps running after a failed start.
    assert!(!dir.path().join("bonsai.state").exists());
}

#[test]
fn bad_flags_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = bonsai(&["up", "--data-dir", data, "--store-backend", "etcd"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--store-backend"),
        "{}",
        text(&out.stderr)
    );
    let out = bonsai(&["up", "--data-dir", data, "--watch-window", "5 parsecs"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--watch-window"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn foreground_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let mut child = Command::new(bonsai_bin())
        .args(["up", "--foreground", "--port", "0", "--data-dir", &data])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let _guard = Guard(data.clone(), pid);
    // The summary ends with the export line once the API server is ready.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("foreground bonsai exited before ready: {seen}");
        }
        seen.push_str(&line);
        if line.starts_with("export KUBECONFIG=") {
            break;
        }
    }
    assert!(seen.contains("Ctrl-C stops it"), "{seen}");
    let status = bonsai(&["status", "--data-dir", &data]);
    assert!(status.status.success(), "{}", text(&status.stdout));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit}");
    assert!(!dir.path().join("bonsai.state").exists());
    let status = bonsai(&["status", "--data-dir", &data]);
    assert!(
        text(&status.stdout).contains("not running"),
        "{}",
        text(&status.stdout)
    );
}

#[test]
fn kubeconfig_merge_into_home() {
    let c = TestCluster::up();
    let home = tempfile::tempdir().unwrap();
    let kube = home.path().join(".kube");
    std::fs::create_dir_all(&kube).unwrap();
    std::fs::write(
        kube.join("config"),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://10.0.0.1:6443\n\
         contexts:\n- name: other\n  context:\n    cluster: other\n    user: other\ncurrent-context: other\n\
         users:\n- name: other\n  user:\n    token: abc\n",
    )
    .unwrap();
    let out = Command::new(bonsai_bin())
        .args(["kubeconfig", "--merge", "--data-dir", c.data_dir()])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("was other"),
        "{}",
        text(&out.stdout)
    );
    let merged = std::fs::read_to_string(kube.join("config")).unwrap();
    assert!(merged.contains("https://10.0.0.1:6443"), "{merged}");
    assert!(
        merged.contains(&format!("https://127.0.0.1:{}", c.port)),
        "{merged}"
    );
    assert!(merged.contains("current-context: bonsai"), "{merged}");
    if kubectl_available() {
        // The merged file works as it is: kubectl with HOME only, no --kubeconfig.
        let out = Command::new("kubectl")
            .args(["get", "namespaces", "-o", "name", "--cache-dir"])
            .arg(c.cache.path())
            .env("HOME", home.path())
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("namespace/default"),
            "{}",
            text(&out.stdout)
        );
    }
}
