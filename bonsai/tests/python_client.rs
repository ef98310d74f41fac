//! The official Python `kubernetes` client (installed by .ci/run) against `bonsai up`: runs
//! tests/python/test_api.py (create, list, watch, conflict, delete, 401). Skips with a message
//! when python3 or the module is missing; CI installs both, so there it runs.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

#[test]
fn official_python_client() {
    let probe = Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "SKIP: the Python `kubernetes` module is missing (pip install kubernetes): {}",
                text(&o.stderr).lines().last().unwrap_or("")
            );
            return;
        }
        Err(e) => {
            eprintln!("SKIP: python3 is not available: {e}");
            return;
        }
    }
    let c = TestCluster::up();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_api.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.path())
        .output()
        .expect("run python3");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "python client tests failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}");
}
