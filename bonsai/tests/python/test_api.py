"""The official Python `kubernetes` client against bonsai: create, list, watch, conflict, delete.

Run by bonsai/tests/python_client.rs with KUBECONFIG pointing at a fresh `bonsai up`.
Plain asserts; exits non-zero with a message on the first failure; prints 'N passed, 0 failed'.
"""
import os
import sys
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "default"

PV = {
    "apiVersion": "v1",
    "kind": "PersistentVolume",
    "metadata": {"name": "py-pv", "labels": {"made-by": "python"}},
    "spec": {
        "capacity": {"storage": "5Gi"},
        "volumeMode": "Filesystem",
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Delete",
        "storageClassName": "local-storage",
        "local": {"path": "/mnt/disks/vol1"},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}},
    },
}

PVC = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "py-claim"},
    "spec": {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "local-storage",
    },
}


def test_create_and_list(v1):
    pv = v1.create_persistent_volume(PV)
    assert pv.metadata.name == "py-pv"
    assert pv.metadata.uid, "uid is set on create"
    assert pv.metadata.resource_version, "resourceVersion is set on create"
    assert pv.spec.capacity["storage"] == "5Gi"
    pvs = v1.list_persistent_volume(label_selector="made-by=python")
    assert [p.metadata.name for p in pvs.items] == ["py-pv"], pvs.items
    assert pvs.metadata.resource_version
    none = v1.list_persistent_volume(label_selector="made-by=nobody")
    assert none.items == []
    # Creating it again is a 409 AlreadyExists.
    try:
        v1.create_persistent_volume(PV)
        raise AssertionError("second create succeeded")
    except ApiException as e:
        assert e.status == 409, e
        assert "AlreadyExists" in e.body, e.body


def test_watch(v1):
    listed = v1.list_namespaced_persistent_volume_claim(NS)
    rv = listed.metadata.resource_version
    v1.create_namespaced_persistent_volume_claim(NS, PVC)
    w = watch.Watch()
    seen = []
    for event in w.stream(v1.list_namespaced_persistent_volume_claim, NS,
                          resource_version=rv, timeout_seconds=20):
        seen.append((event["type"], event["object"].metadata.name))
        if ("ADDED", "py-claim") in seen:
            w.stop()
    assert ("ADDED", "py-claim") in seen, seen


def test_conflict(v1):
    # Read-modify-write, retried on 409 as every client must: the volume controller may write
    # the claim at the same time.
    for _ in range(20):
        pvc = v1.read_namespaced_persistent_volume_claim("py-claim", NS)
        stale = pvc.metadata.resource_version
        pvc.metadata.labels = {"step": "one"}
        try:
            updated = v1.replace_namespaced_persistent_volume_claim("py-claim", NS, pvc)
            break
        except ApiException as e:
            assert e.status == 409, e
    else:
        raise AssertionError("20 conflicts in a row")
    assert updated.metadata.resource_version != stale
    assert updated.metadata.labels == {"step": "one"}
    # A write naming the revision it read, which is no longer current: 409 Conflict.
    pvc.metadata.resource_version = stale
    pvc.metadata.labels = {"step": "two"}
    try:
        v1.replace_namespaced_persistent_volume_claim("py-claim", NS, pvc)
        raise AssertionError("stale update succeeded")
    except ApiException as e:
        assert e.status == 409, e
        assert "Conflict" in e.body, e.body
    now = v1.read_namespaced_persistent_volume_claim("py-claim", NS)
    assert (now.metadata.labels or {}).get("step") == "one", "the rejected write changed nothing"


def test_delete(v1):
    v1.delete_namespaced_persistent_volume_claim("py-claim", NS)
    v1.delete_persistent_volume("py-pv")
    # Both carry storage-protection finalizers: deletion marks them (deletionTimestamp) and
    # the volume controller releases them. If none runs (the API server alone) we play its
    # part; a 409 means the controller wrote in between, and we look again.
    objects = [
        (v1.read_namespaced_persistent_volume_claim, v1.patch_namespaced_persistent_volume_claim,
         ("py-claim", NS)),
        (v1.read_persistent_volume, v1.patch_persistent_volume, ("py-pv",)),
    ]
    deadline = time.time() + 30
    gone = set()
    checked = set()
    while len(gone) < len(objects):
        assert time.time() < deadline, f"still there after 30s: {len(objects) - len(gone)}"
        for i, (read, patch, args) in enumerate(objects):
            if i in gone:
                continue
            try:
                obj = read(*args)
            except ApiException as e:
                assert e.status == 404, e
                gone.add(i)
                continue
            if i not in checked:
                assert obj.metadata.deletion_timestamp is not None, "deletion is recorded"
                checked.add(i)
            if obj.metadata.finalizers and time.time() > deadline - 25:
                try:
                    patch(*args, {"metadata": {"finalizers": None}})
                except ApiException as e:
                    assert e.status in (404, 409), e
        time.sleep(0.05)
    names = [p.metadata.name for p in v1.list_persistent_volume().items]
    claims = [p.metadata.name for p in v1.list_namespaced_persistent_volume_claim(NS).items]
    assert "py-pv" not in names and "py-claim" not in claims, (names, claims)


def test_unauthorized():
    cfg = client.Configuration.get_default_copy()
    cfg.api_key = {"authorization": "Bearer not-the-token"}
    cfg.refresh_api_key_hook = None  # the kubeconfig loader would put the real token back
    api = client.CoreV1Api(client.ApiClient(cfg))
    try:
        api.list_namespace()
        raise AssertionError("request without the right token succeeded")
    except ApiException as e:
        assert e.status == 401, e


def main():
    config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    v1 = client.CoreV1Api()
    tests = [
        ("create and list", lambda: test_create_and_list(v1)),
        ("watch", lambda: test_watch(v1)),
        ("conflict", lambda: test_conflict(v1)),
        ("delete", lambda: test_delete(v1)),
        ("unauthorized", test_unauthorized),
    ]
    passed = 0
    for name, fn in tests:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - report and stop
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            print(f"{passed} passed, 1 failed")
            sys.exit(1)
        print(f"ok   {name}")
        passed += 1
    print(f"{passed} passed, 0 failed")


if __name__ == "__main__":
    main()
