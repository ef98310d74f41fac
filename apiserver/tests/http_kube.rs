//! The `kube` crate (what bonsai's controllers use) against the API server: typed CRUD,
//! conflicts, selectors, watches, the runtime watcher, and relisting after a 410.

mod http_common;

use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use http_common::*;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;

fn client(s: &TestServer) -> Client {
    let mut cfg = kube::Config::new(s.url().parse().unwrap());
    cfg.auth_info.token = Some(TOKEN.to_string().into());
    cfg.default_namespace = "default".into();
    Client::try_from(cfg).expect("client")
}

fn pv(name: &str, tier: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"tier": tier}},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": "/tmp"}}
    }))
    .unwrap()
}

fn api_code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_crud_conflict_selectors() {
    let s = start().await;
    let c = client(&s);
    let pvs: Api<PersistentVolume> = Api::all(c.clone());
    let created = pvs
        .create(&PostParams::default(), &pv("a", "gold"))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    pvs.create(&PostParams::default(), &pv("b", "silver"))
        .await
        .unwrap();
    let e = pvs
        .create(&PostParams::default(), &pv("a", "gold"))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 409);

    let got = pvs.get("a").await.unwrap();
    assert_eq!(got.metadata.labels.as_ref().unwrap()["tier"], "gold");
    // Replace with the current resourceVersion works; with the old one it is a Conflict.
    let mut upd = got.clone();
    upd.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("x".into(), "1".into());
    let replaced = pvs
        .replace("a", &PostParams::default(), &upd)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        got.metadata.resource_version
    );
    let e = pvs
        .replace("a", &PostParams::default(), &upd)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 409);
    // Patch (merge) and server-side apply.
    let patched = pvs
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"k": "v"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.annotations.unwrap()["k"], "v");
    let applied = pvs
        .patch(
            "c",
            &PatchParams::apply("test-manager"),
            &Patch::Apply(pv("c", "gold")),
        )
        .await
        .unwrap();
    assert_eq!(applied.metadata.name.as_deref(), Some("c"));

    // Selectors.
    let gold = pvs
        .list(&ListParams::default().labels("tier=gold"))
        .await
        .unwrap();
    let mut names: Vec<_> = gold
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "c"]);
    let notgold = pvs
        .list(&ListParams::default().labels("tier notin (gold)"))
        .await
        .unwrap();
    assert_eq!(notgold.items.len(), 1);
    let byname = pvs
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(byname.items[0].metadata.name.as_deref(), Some("b"));
    let e = pvs
        .list(&ListParams::default().labels("tier in ("))
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), 400);

    // Delete, then 404.
    // Delete: gone, or (held by kubernetes.io/pv-protection) marked for deletion.
    pvs.delete("a", &DeleteParams::default()).await.unwrap();
    match pvs.get("a").await {
        Ok(p) => assert!(p.metadata.deletion_timestamp.is_some()),
        Err(e) => assert_eq!(api_code(&e), 404),
    }

    // Namespaced kinds and the default namespaces.
    let nss: Api<Namespace> = Api::all(c.clone());
    let names: Vec<_> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.metadata.name.unwrap())
        .collect();
    for n in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        assert!(names.contains(&n.to_string()), "{names:?}");
    }
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "i"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let missing: Api<Pod> = Api::namespaced(c.clone(), "nope");
    assert_eq!(
        api_code(
            &missing
                .create(&PostParams::default(), &p)
                .await
                .unwrap_err()
        ),
        404
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_watch_and_relist_after_410() {
    // A watch window of 5 events, so an old resourceVersion expires quickly.
    let s = start_with(Options {
        watch_window_events: Some(5),
        ..Options::default()
    })
    .await;
    let c = client(&s);
    let pvs: Api<PersistentVolume> = Api::all(c.clone());

    // The runtime watcher (what controllers use): initial list, then live events.
    let mut w = watcher(pvs.clone(), watcher::Config::default()).boxed();
    let mut saw_init_done = false;
    while !saw_init_done {
        match tokio::time::timeout(Duration::from_secs(10), w.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(watcher::Event::InitDone) => saw_init_done = true,
            Some(_) => {}
            None => panic!("watcher ended"),
        }
    }
    pvs.create(&PostParams::default(), &pv("w1", "gold"))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.try_next())
            .await
            .unwrap()
            .unwrap()
        {
            Some(watcher::Event::Apply(p)) if p.metadata.name.as_deref() == Some("w1") => break,
            Some(_) => {}
            None => panic!("watcher ended"),
        }
    }
    drop(w);

    // A raw watch from a revision that left the window: one ERROR event with 410 Expired.
    let first_rv = pvs
        .get("w1")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..10 {
        pvs.patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"n": i.to_string()}}})),
        )
        .await
        .unwrap();
    }
    let mut stream = pvs
        .watch(&WatchParams::default().timeout(5), &first_rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    drop(stream);
    // The client relists and watches from the list's revision: it sees the next change.
    let list = pvs.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = pvs
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    pvs.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"n": "last"}}})),
    )
    .await
    .unwrap();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Modified(p)) => assert_eq!(p.metadata.labels.unwrap()["n"], "last"),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    // Label selectors apply per event: a watch on tier=silver sees nothing of w1's change.
    let mut silver = pvs
        .watch(
            &WatchParams::default().labels("tier=silver").timeout(10),
            "0",
        )
        .await
        .unwrap()
        .boxed();
    pvs.create(&PostParams::default(), &pv("s1", "silver"))
        .await
        .unwrap();
    match silver.try_next().await.unwrap() {
        Some(WatchEvent::Added(p)) => assert_eq!(p.metadata.name.as_deref(), Some("s1")),
        other => panic!("expected ADDED s1, got {other:?}"),
    }
    s.stop().await;
}
