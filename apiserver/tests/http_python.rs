//! The official Python `kubernetes` client against the API server: create, list, watch,
//! conflict, delete. Skips (with a message) when python3 or the client is missing.

mod http_common;

use http_common::*;

const SCRIPT: &str = r#"
import sys, threading
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

cfg = client.Configuration()
cfg.host = sys.argv[1]
cfg.api_key = {"authorization": "Bearer " + sys.argv[2]}
api = client.CoreV1Api(client.ApiClient(cfg))

def pv(name):
    return client.V1PersistentVolume(
        metadata=client.V1ObjectMeta(name=name, labels={"tier": "gold"}),
        spec=client.V1PersistentVolumeSpec(
            capacity={"storage": "1Gi"}, access_modes=["ReadWriteOnce"],
            host_path=client.V1HostPathVolumeSource(path="/tmp")))

created = api.create_persistent_volume(pv("py-1"))
assert created.kind == "PersistentVolume", created.kind
assert created.metadata.uid

try:
    api.create_persistent_volume(pv("py-1"))
    raise SystemExit("expected AlreadyExists")
except ApiException as e:
    assert e.status == 409, e.status

listed = api.list_persistent_volume(label_selector="tier=gold")
assert [p.metadata.name for p in listed.items] == ["py-1"], listed.items
rv = listed.metadata.resource_version

# Conflict: replace with a stale resourceVersion.
fresh = api.read_persistent_volume("py-1")
fresh.metadata.labels["x"] = "1"
api.replace_persistent_volume("py-1", fresh)
try:
    api.replace_persistent_volume("py-1", fresh)
    raise SystemExit("expected Conflict")
except ApiException as e:
    assert e.status == 409, e.status

# Watch from the list's revision sees the change made after it.
w = watch.Watch()
seen = []
for ev in w.stream(api.list_persistent_volume, resource_version=rv, timeout_seconds=5):
    seen.append((ev["type"], ev["object"].metadata.name))
    if ev["type"] == "MODIFIED":
        w.stop()
assert ("MODIFIED", "py-1") in seen, seen

# Delete: the object comes back (pv-protection may hold it), then it is gone or going.
gone = api.delete_persistent_volume("py-1")
try:
    got = api.read_persistent_volume("py-1")
    assert got.metadata.deletion_timestamp is not None
except ApiException as e:
    assert e.status == 404, e.status

try:
    api.read_namespaced_pod("nope", "default")
    raise SystemExit("expected NotFound")
except ApiException as e:
    assert e.status == 404, e.status
print("python client OK")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_create_list_watch_conflict_delete() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import kubernetes"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        eprintln!("SKIP: python3 with the `kubernetes` client is not installed");
        return;
    }
    let s = start().await;
    let script = s.dir.path().join("client.py");
    std::fs::write(&script, SCRIPT).unwrap();
    let url = s.url();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(url)
            .arg(TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("python client OK"), "{stdout}\n{stderr}");
    s.stop().await;
}
