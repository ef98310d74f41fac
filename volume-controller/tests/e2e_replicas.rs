//! Two volume-controller replicas against one real API server: they race for the same
//! volumes, and the resourceVersion on every write makes sure no volume is bound twice.
//! (No kubectl needed: the test talks to the API with the kube crate.)

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Cluster, Options};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_against_the_real_api_never_double_bind() {
    let mut c = Cluster::start_with(Options {
        controller: false,
        ..Default::default()
    })
    .await;
    let m1 = c.spawn_controller();
    let m2 = c.spawn_controller();
    let client = c.client();
    let sc: StorageClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "now"},
        "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"
    }))
    .unwrap();
    Api::<StorageClass>::all(client.clone())
        .create(&PostParams::default(), &sc)
        .await
        .unwrap();
    const VOLUMES: usize = 30;
    const CLAIMS: usize = 40;
    let pvs = Api::<PersistentVolume>::all(client.clone());
    for i in 0..VOLUMES {
        let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": format!("pv-{i:02}")},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "now", "local": {"path": format!("/mnt/disks/{i}")},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}}}
        }))
        .unwrap();
        pvs.create(&PostParams::default(), &pv).await.unwrap();
    }
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), "default");
    // Watch claims from the start, checking the invariant on every version seen.
    let watch_api = Api::<PersistentVolumeClaim>::all(client.clone());
    let checker = tokio::spawn(async move {
        let mut holders: BTreeMap<String, String> = BTreeMap::new(); // claim -> volume
        let mut w = watcher(watch_api, watcher::Config::default()).boxed();
        while let Some(ev) = w.next().await {
            let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = ev else {
                continue;
            };
            let name = o.metadata.name.clone().unwrap();
            let vn = o
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .unwrap_or_default();
            if !vn.is_empty() {
                holders.insert(name.clone(), vn.clone());
                let owners: Vec<&String> = holders
                    .iter()
                    .filter(|(_, v)| **v == vn)
                    .map(|(k, _)| k)
                    .collect();
                assert!(owners.len() <= 1, "volume {vn} claimed by {owners:?}");
            }
            let bound = holders.len();
            if bound >= VOLUMES {
                return holders;
            }
        }
        holders
    });
    let mut creates = Vec::new();
    for i in 0..CLAIMS {
        let pvcs = pvcs.clone();
        creates.push(tokio::spawn(async move {
            let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": format!("claim-{i:02}")},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                         "storageClassName": "now"}
            }))
            .unwrap();
            pvcs.create(&PostParams::default(), &pvc).await.unwrap();
        }));
    }
    for h in creates {
        h.await.unwrap();
    }
    let holders = tokio::time::timeout(Duration::from_secs(90), checker)
        .await
        .expect("all volumes bound within 90 s")
        .expect("invariant held");
    assert_eq!(holders.len(), VOLUMES);
    // Every volume names exactly the claim that names it.
    for (claim, vn) in &holders {
        let pv = pvs.get(vn).await.unwrap();
        let r = pv.spec.unwrap().claim_ref.unwrap();
        assert_eq!(r.name.as_deref(), Some(claim.as_str()), "{vn}");
    }
    let conflicts = m1.conflicts.load(std::sync::atomic::Ordering::Relaxed)
        + m2.conflicts.load(std::sync::atomic::Ordering::Relaxed);
    let binds = m1.binds.load(std::sync::atomic::Ordering::Relaxed)
        + m2.binds.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("two replicas: {binds} binds, {conflicts} conflicts");
    c.stop().await;
}
