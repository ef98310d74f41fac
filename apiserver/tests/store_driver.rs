//! The store through its async handle: CRUD, group commit, watches (resume, expiry, slow
//! watchers, bookmarks), history, state at a revision, retention, reopen, damage at open.

use std::time::Duration;

use apiserver::store::{
    parse_field_selector, parse_label_selector, BackendKind, Durability, EventType, Key, ListQuery,
    Precondition, Store, StoreConfig, StoreError, WatchItem, WatchQuery, WatchWindow,
};
use serde_json::{json, Value};

fn pod(ns: &str, name: &str) -> Key {
    Key::new("", "pods", ns, name)
}

fn pods(from: Option<u64>) -> WatchQuery {
    WatchQuery {
        resource: "pods".into(),
        from,
        ..WatchQuery::default()
    }
}

/// Waits for the next watch item, with a deadline (never hangs a test run).
async fn next(w: &mut apiserver::store::Watcher) -> WatchItem {
    tokio::time::timeout(Duration::from_secs(20), w.next())
        .await
        .expect("watch item within the deadline")
        .expect("watch still open")
}

async fn next_event(w: &mut apiserver::store::Watcher) -> apiserver::store::Event {
    loop {
        match next(w).await {
            WatchItem::Event(e) => return e,
            WatchItem::Bookmark(_) => continue,
            WatchItem::Closed(why) => panic!("watch closed: {why}"),
        }
    }
}

fn rv(o: &Value) -> u64 {
    o["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn crud_preconditions_and_guaranteed_update() {
    let store = Store::open(StoreConfig::memory()).unwrap();
    let k = pod("default", "web");
    let created = store.create(&k, json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"z": 1, "a": 2}}), "kubectl").await.unwrap();
    assert_eq!(rv(&created), 1);
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(uid.len(), 36, "uuid v4: {uid}");
    let ts = created["metadata"]["creationTimestamp"].as_str().unwrap();
    assert!(ts.len() == 20 && ts.ends_with('Z'), "{ts}");
    assert_eq!(
        serde_json::to_string(&created["spec"]).unwrap(),
        r#"{"z":1,"a":2}"#
    );

    let err = store.create(&k, json!({}), "kubectl").await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }));
    let err = store
        .update(&k, json!({}), Some(Precondition::ResourceVersion(99)), "x")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            key: k.clone(),
            expected: 99,
            current: 1
        }
    );
    let updated = store
        .update(
            &k,
            json!({"spec": {"b": 1}}),
            Some(Precondition::ResourceVersion(1)),
            "x",
        )
        .await
        .unwrap();
    assert_eq!(updated["metadata"]["uid"], uid.as_str());
    assert_eq!(rv(&updated), 2);

    // Four concurrent read-modify-writers on one counter: conflicts are retried, none is lost.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let s = store.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                s.guaranteed_update(&k, &format!("writer-{i}"), |cur| {
                    let mut next = cur.clone();
                    let n = cur["spec"]["n"].as_i64().unwrap_or(0);
                    next["spec"]["n"] = json!(n + 1);
                    Ok(next)
                })
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.get(&k).unwrap()["spec"]["n"], 40);

    let err = store
        .delete(&k, Some(Precondition::Uid("nope".into())), "x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UidConflict { .. }));
    let last = store
        .delete(&k, Some(Precondition::Uid(uid)), "x")
        .await
        .unwrap();
    assert_eq!(last["spec"]["n"], 40);
    assert!(store.get(&k).is_none());
    let err = store.delete(&k, None, "x").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
    let err = store
        .create(&pod("default", "a/b"), json!({}), "x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidKey(_)), "{err}");
    let err = store
        .create(&pod("default", "x"), json!([1]), "x")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidObject { .. }), "{err}");
}

#[tokio::test]
async fn list_is_a_snapshot_with_selectors_and_pages() {
    let store = Store::open(StoreConfig::memory()).unwrap();
    for i in 0..10 {
        let node = if i % 2 == 0 { "node-1" } else { "node-2" };
        store
            .create(
                &pod("default", &format!("p{i:02}")),
                json!({"metadata": {"labels": {"i": i.to_string()}}, "spec": {"nodeName": node}}),
                "t",
            )
            .await
            .unwrap();
    }
    let q = ListQuery {
        resource: "pods".into(),
        namespace: Some("default".into()),
        field_selector: Some(parse_field_selector("spec.nodeName=node-1").unwrap()),
        label_selector: Some(parse_label_selector("i notin (0)").unwrap()),
        ..ListQuery::default()
    };
    let r = store.list(&q).unwrap();
    assert_eq!(r.items.len(), 4);
    assert_eq!(r.resource_version, 10);
    let bad = ListQuery {
        resource: "pods".into(),
        field_selector: Some(parse_field_selector("spec.foo=x").unwrap()),
        ..ListQuery::default()
    };
    let err = store.list(&bad).unwrap_err();
    assert_eq!(err.to_string(), "field label not supported: spec.foo");
    let mut q = ListQuery {
        resource: "pods".into(),
        limit: Some(3),
        ..ListQuery::default()
    };
    let mut names = Vec::new();
    loop {
        let page = store.list(&q).unwrap();
        assert_eq!(page.resource_version, 10);
        names.extend(
            page.items
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
        );
        // Writes between pages do not leak into the snapshot.
        store
            .create(
                &pod("default", &format!("late{}", names.len())),
                json!({}),
                "t",
            )
            .await
            .unwrap();
        match page.continue_token {
            Some(t) => q.continue_token = Some(t),
            None => break,
        }
    }
    assert_eq!(
        names,
        (0..10).map(|i| format!("p{i:02}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn watch_resumes_gapless_and_expires_outside_the_window() {
    let config = StoreConfig {
        watch_window: WatchWindow {
            max_age: Duration::from_secs(3600),
            max_events: 5,
        },
        ..StoreConfig::memory()
    };
    let store = Store::open(config).unwrap();
    let mut live = store.watch(&pods(None)).unwrap();
    let k = pod("default", "a");
    store.create(&k, json!({}), "t").await.unwrap();
    for _ in 0..3 {
        store
            .guaranteed_update(&k, "t", |o| Ok(o.clone()))
            .await
            .unwrap();
    }
    store.delete(&k, None, "t").await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let e = next_event(&mut live).await;
        seen.push((e.revision, e.event_type));
    }
    assert_eq!(seen[0], (1, EventType::Added));
    assert_eq!(seen[4], (5, EventType::Deleted));
    // Resume from every revision still in the window: exactly the suffix.
    for from in 0..=5u64 {
        let mut w = store.watch(&pods(Some(from))).unwrap();
        for want in from + 1..=5 {
            assert_eq!(next_event(&mut w).await.revision, want);
        }
    }
    store
        .create(&pod("default", "b"), json!({}), "t")
        .await
        .unwrap();
    let err = store
        .watch(&pods(Some(0)))
        .err()
        .expect("revision 0 left the 5-event window");
    assert_eq!(
        err,
        StoreError::Expired {
            requested: 0,
            oldest: 1
        }
    );
    let api: apiserver::status::ApiError = err.into();
    assert_eq!(
        (api.code, api.message.as_str()),
        (410, "too old resource version: 0 (1)")
    );
    // Watches are filtered by namespace and selectors; leaving a selection is a DELETED.
    let mut w = store
        .watch(&WatchQuery {
            resource: "pods".into(),
            namespace: Some("ns2".into()),
            field_selector: Some(parse_field_selector("spec.nodeName=n1").unwrap()),
            ..WatchQuery::default()
        })
        .unwrap();
    let k2 = pod("ns2", "x");
    store
        .create(
            &pod("default", "x"),
            json!({"spec": {"nodeName": "n1"}}),
            "t",
        )
        .await
        .unwrap();
    store.create(&k2, json!({"spec": {}}), "t").await.unwrap();
    store
        .update(&k2, json!({"spec": {"nodeName": "n1"}}), None, "scheduler")
        .await
        .unwrap();
    store
        .update(&k2, json!({"spec": {"nodeName": "n2"}}), None, "t")
        .await
        .unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.event_type, e.key.clone(), e.actor.as_str()),
        (EventType::Added, k2.clone(), "scheduler")
    );
    let e = next_event(&mut w).await;
    assert_eq!(e.event_type, EventType::Deleted);
    assert_eq!(e.object["spec"]["nodeName"], "n1");
}

#[tokio::test]
async fn a_watch_from_a_future_revision_starts_there() {
    let store = Store::open(StoreConfig::memory()).unwrap();
    let mut w = store.watch(&pods(Some(2))).unwrap();
    for i in 0..3 {
        store
            .create(&pod("default", &format!("p{i}")), json!({}), "t")
            .await
            .unwrap();
    }
    assert_eq!(next_event(&mut w).await.revision, 3);
}

#[tokio::test]
async fn slow_watchers_are_cut_off_and_never_block_writers() {
    let config = StoreConfig {
        watcher_buffer: 8,
        ..StoreConfig::memory()
    };
    let store = Store::open(config).unwrap();
    let mut slow = store.watch(&pods(None)).unwrap();
    let mut fast = store.watch(&pods(None)).unwrap();
    // The fast watcher reports each event it received, and the writer waits for that report
    // before its next write: "fast" then means "never more than one event behind" whatever the
    // machine's scheduling (a current-thread runtime need not run the reader between two
    // creates whose acks are already there, which once filled its buffer of 8 on a loaded CI).
    let (seen_tx, mut seen) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < 100 {
            match fast.next().await {
                Some(WatchItem::Event(_)) => {
                    n += 1;
                    seen_tx.send_replace(n);
                }
                Some(WatchItem::Bookmark(_)) => {}
                other => panic!("fast watcher ended: {other:?}"),
            }
        }
    });
    for i in 0..100 {
        store
            .create(&pod("default", &format!("p{i}")), json!({}), "t")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|n| *n > i))
            .await
            .expect("the fast watcher received each event within 10 s")
            .expect("the fast watcher is running");
    }
    reader.await.unwrap();
    let mut got = 0;
    loop {
        match next(&mut slow).await {
            WatchItem::Event(_) => got += 1,
            WatchItem::Bookmark(_) => {}
            WatchItem::Closed(why) => {
                assert!(why.contains("too slow"), "{why}");
                break;
            }
        }
    }
    assert_eq!(
        got, 8,
        "the slow watcher got its buffer's worth, then Closed"
    );
    assert!(slow.next().await.is_none());
    assert_eq!(store.watcher_count(), 1);
}

#[tokio::test]
async fn bookmarks_arrive_periodically() {
    let config = StoreConfig {
        bookmark_interval: Duration::from_millis(20),
        ..StoreConfig::memory()
    };
    let store = Store::open(config).unwrap();
    store
        .create(&pod("default", "a"), json!({}), "t")
        .await
        .unwrap();
    let mut w = store.watch(&pods(None)).unwrap();
    loop {
        if let WatchItem::Bookmark(r) = next(&mut w).await {
            assert_eq!(r, 1);
            break;
        }
    }
}

#[tokio::test]
async fn history_and_state_at_say_where_retention_truncated() {
    let config = StoreConfig {
        retention_events: 20,
        ..StoreConfig::memory()
    };
    let store = Store::open(config).unwrap();
    let keep = pod("default", "keep");
    store.create(&keep, json!({"v": 0}), "t").await.unwrap(); // rev 1, never changed again
    let k = pod("default", "busy");
    store.create(&k, json!({"v": 0}), "t").await.unwrap();
    let h = store.history(&k).unwrap();
    assert_eq!(h.truncated_before, None);
    assert_eq!(h.events.len(), 1);
    for v in 1..60 {
        store
            .update(&k, json!({"v": v}), None, &format!("actor-{v}"))
            .await
            .unwrap();
    }
    let rev = store.revision();
    assert_eq!(rev, 61);
    let h = store.history(&k).unwrap();
    let cut = h.truncated_before.expect("retention ran");
    assert!(cut > 1 && cut <= rev - 19, "cut {cut}");
    assert_eq!(h.events.last().unwrap().revision, rev);
    assert_eq!(h.events.last().unwrap().actor, "actor-59");
    assert!(h.events.len() >= 20);
    // The untouched object's only version is older than the cut, and kept.
    assert_eq!(store.history(&keep).unwrap().events.len(), 1);
    let s = store.state_at(rev - 5).unwrap();
    assert_eq!(s.objects[&k]["v"], 54);
    assert_eq!(s.objects[&keep]["v"], 0);
    let err = store.state_at(1).unwrap_err();
    assert!(matches!(err, StoreError::Expired { .. }), "{err}");
    assert!(matches!(
        store.state_at(rev + 1),
        Err(StoreError::FutureRevision { .. })
    ));
}

fn durable(kind: BackendKind, dir: &tempfile::TempDir) -> StoreConfig {
    let path = match kind {
        BackendKind::Sled => dir.path().join("sled"),
        _ => dir.path().join("store.redb"),
    };
    StoreConfig {
        retention_events: 30,
        ..StoreConfig::durable(kind, path)
    }
}

async fn reopen_keeps_everything(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let config = durable(kind, &dir);
    let mut expected = Vec::new();
    {
        let store = Store::open(config.clone()).unwrap();
        for i in 0..50 {
            let k = pod("default", &format!("p{}", i % 7));
            let r = match store.get(&k) {
                None => store.create(&k, json!({"i": i}), "t").await.unwrap(),
                Some(_) if i % 5 == 0 => {
                    store.delete(&k, None, "t").await.unwrap();
                    continue;
                }
                Some(_) => store.update(&k, json!({"i": i}), None, "t").await.unwrap(),
            };
            expected.push(r);
        }
        assert_eq!(store.config().durability, Durability::Durable);
    }
    let store = Store::open(config.clone()).unwrap();
    assert_eq!(store.revision(), 50);
    let all = store
        .list(&ListQuery {
            resource: "pods".into(),
            ..ListQuery::default()
        })
        .unwrap();
    let now = store.state_at(50).unwrap();
    assert_eq!(all.items.len(), now.objects.len());
    for o in &all.items {
        let k = pod("default", o["metadata"]["name"].as_str().unwrap());
        assert_eq!(now.objects[&k], *o);
    }
    // The window survives the restart: a watch can resume from before it.
    let mut w = store.watch(&pods(Some(45))).unwrap();
    assert_eq!(next_event(&mut w).await.revision, 46);
    let last = expected.last().unwrap();
    let k = pod("default", last["metadata"]["name"].as_str().unwrap());
    assert!(store
        .history(&k)
        .unwrap()
        .events
        .iter()
        .any(|e| e.object == *last));
    store
        .create(&pod("default", "after"), json!({}), "t")
        .await
        .unwrap();
    assert_eq!(store.revision(), 51);
}

#[tokio::test]
async fn sled_reopen_keeps_everything() {
    reopen_keeps_everything(BackendKind::Sled).await;
}

#[tokio::test]
async fn redb_reopen_keeps_everything() {
    reopen_keeps_everything(BackendKind::Redb).await;
}

/// Opens a store file directly, waiting (with a deadline) for a store closed a moment ago to let
/// go of its lock: its committer thread releases it as it exits.
fn open_raw<T, E: std::fmt::Debug>(open: impl Fn() -> Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match open() {
            Ok(db) => return db,
            Err(_) if std::time::Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("cannot open the store: {e:?}"),
        }
    }
}

/// Rewrites a closed store into format 1's layout: the objects table (`group/resource/namespace/
/// name` → revision of the current version) beside the log, and `format` = 1.
fn downgrade_to_format_1(kind: BackendKind, path: &std::path::Path, current: &[(Key, u64)]) {
    let object_key =
        |k: &Key| format!("{}/{}/{}/{}", k.group, k.resource, k.namespace, k.name).into_bytes();
    match kind {
        BackendKind::Sled => {
            let db = open_raw(|| sled::open(path));
            let mut b = sled::Batch::default();
            for (k, rev) in current {
                b.insert([&b"o"[..], &object_key(k)].concat(), &rev.to_be_bytes()[..]);
            }
            b.insert(&b"mformat"[..], &1u64.to_be_bytes()[..]);
            db.apply_batch(b).unwrap();
            db.flush().unwrap();
        }
        _ => {
            let objects: redb::TableDefinition<&[u8], u64> = redb::TableDefinition::new("objects");
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let db = open_raw(|| redb::Database::open(path));
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(objects).unwrap();
                for (k, rev) in current {
                    t.insert(object_key(k).as_slice(), *rev).unwrap();
                }
                tx.open_table(meta).unwrap().insert("format", 1).unwrap();
            }
            tx.commit().unwrap();
        }
    }
}

/// Whether format 1's objects table is still there, and the format marker.
fn format_on_disk(kind: BackendKind, path: &std::path::Path) -> (bool, u64) {
    match kind {
        BackendKind::Sled => {
            let db = open_raw(|| sled::open(path));
            let format = db.get(b"mformat").unwrap().unwrap();
            (
                db.scan_prefix(b"o").next().is_some(),
                u64::from_be_bytes(format.as_ref().try_into().unwrap()),
            )
        }
        _ => {
            use redb::ReadableDatabase;
            let objects: redb::TableDefinition<&[u8], u64> = redb::TableDefinition::new("objects");
            let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
            let db = open_raw(|| redb::Database::open(path));
            let tx = db.begin_read().unwrap();
            let has_objects = match tx.open_table(objects) {
                Ok(_) => true,
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(e) => panic!("{e}"),
            };
            let format = tx
                .open_table(meta)
                .unwrap()
                .get("format")
                .unwrap()
                .unwrap()
                .value();
            (has_objects, format)
        }
    }
}

/// A store written before format 2 (which dropped the objects table the log already implies)
/// opens with everything in it; the table is gone and the store says format 2 afterwards.
async fn format_1_is_migrated_at_open(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let config = durable(kind, &dir);
    let current: Vec<(Key, u64)> = {
        let store = Store::open(config.clone()).unwrap();
        for i in 0..40 {
            let k = pod("default", &format!("p{}", i % 6));
            match store.get(&k) {
                None => drop(store.create(&k, json!({"i": i}), "t").await.unwrap()),
                Some(_) if i % 4 == 0 => drop(store.delete(&k, None, "t").await.unwrap()),
                Some(_) => drop(store.update(&k, json!({"i": i}), None, "t").await.unwrap()),
            }
        }
        let listed = store.list(&ListQuery {
            resource: "pods".into(),
            ..ListQuery::default()
        });
        listed
            .unwrap()
            .items
            .iter()
            .map(|o| {
                (
                    pod("default", o["metadata"]["name"].as_str().unwrap()),
                    rv(o),
                )
            })
            .collect()
    };
    assert!(!current.is_empty());
    assert_eq!(
        format_on_disk(kind, &config.path.clone().unwrap()),
        (false, 2)
    );
    downgrade_to_format_1(kind, &config.path.clone().unwrap(), &current);
    assert_eq!(
        format_on_disk(kind, &config.path.clone().unwrap()),
        (true, 1)
    );
    {
        let store = Store::open(config.clone()).unwrap();
        assert_eq!(store.revision(), 40);
        for (k, rev) in &current {
            assert_eq!(rv(&store.get(k).unwrap()), *rev, "{k}");
        }
        let listed = store.list(&ListQuery {
            resource: "pods".into(),
            ..ListQuery::default()
        });
        assert_eq!(listed.unwrap().items.len(), current.len());
        store
            .create(&pod("default", "after"), json!({}), "t")
            .await
            .unwrap();
    }
    assert_eq!(
        format_on_disk(kind, &config.path.clone().unwrap()),
        (false, 2)
    );
    let store = Store::open(config).unwrap();
    assert_eq!(store.revision(), 41);
    let listed = store.list(&ListQuery {
        resource: "pods".into(),
        ..ListQuery::default()
    });
    assert_eq!(listed.unwrap().items.len(), current.len() + 1);
}

#[tokio::test]
async fn sled_format_1_is_migrated_at_open() {
    format_1_is_migrated_at_open(BackendKind::Sled).await;
}

#[tokio::test]
async fn redb_format_1_is_migrated_at_open() {
    format_1_is_migrated_at_open(BackendKind::Redb).await;
}

/// Many concurrent durable writers: they prepare and queue while the committer writes and
/// flushes the group before theirs, and groups gather many writes each. Every write is
/// readable once acknowledged, a watch sees every revision once, in order, and the store
/// reopens with all of it. A lone writer's writes are groups of one (nothing to wait for).
async fn concurrent_writers_commit_in_order(kind: BackendKind) {
    const WRITERS: usize = 128;
    const EACH: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        retention_events: 100_000,
        // Read only once every write is in: room for all of them.
        watcher_buffer: 4 * WRITERS * EACH,
        ..durable(kind, &dir)
    };
    let store = Store::open(config.clone()).unwrap();
    let mut w = store.watch(&pods(Some(0))).unwrap();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let k = pod("default", &format!("w{t}-{i}"));
                    let o = store.create(&k, json!({"i": i}), "t").await.unwrap();
                    // Acknowledged means committed: visible to reads at once.
                    let got = store.get(&k).expect("an acknowledged create is readable");
                    assert_eq!(rv(&got), rv(&o));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n = (WRITERS * EACH) as u64;
    assert_eq!(store.revision(), n);
    let stats = store.stats();
    assert_eq!(stats.writes, n);
    // 128 writers keep the queue full: far fewer groups (and flushes) than writes.
    assert!(
        stats.groups * 4 <= n && stats.flushes == stats.groups,
        "{stats:?}"
    );
    for r in 1..=n {
        let e = next_event(&mut w).await;
        assert_eq!((e.revision, e.event_type), (r, EventType::Added));
        assert_eq!(rv(&e.object), r);
    }
    drop(w);
    drop(store);
    let store = Store::open(config).unwrap();
    assert_eq!(store.revision(), n);
    assert_eq!(
        store
            .list(&ListQuery {
                resource: "pods".into(),
                ..ListQuery::default()
            })
            .unwrap()
            .items
            .len(),
        WRITERS * EACH
    );
    for i in 0..16 {
        store
            .create(&pod("default", &format!("lone-{i}")), json!({}), "t")
            .await
            .unwrap();
    }
    let stats = store.stats();
    assert_eq!((stats.writes, stats.groups), (16, 16), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_concurrent_writers_commit_in_order() {
    concurrent_writers_commit_in_order(BackendKind::Sled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_concurrent_writers_commit_in_order() {
    concurrent_writers_commit_in_order(BackendKind::Redb).await;
}

#[tokio::test]
async fn relaxed_durability_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        durability: Durability::Relaxed,
        ..durable(BackendKind::Redb, &dir)
    };
    let store = Store::open(config).unwrap();
    assert_eq!(store.config().durability, Durability::Relaxed);
    store
        .create(&pod("default", "a"), json!({}), "t")
        .await
        .unwrap();
    store.sync().unwrap();
    assert!(store.describe().starts_with("redb at "));
}

#[test]
fn a_damaged_store_is_reported_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = Store::open(StoreConfig::durable(BackendKind::Redb, &path)).unwrap();
        rt.block_on(async {
            for i in 0..20 {
                store
                    .create(
                        &pod("default", &format!("p{i}")),
                        json!({"payload": "x".repeat(100)}),
                        "t",
                    )
                    .await
                    .unwrap();
            }
        });
    }
    // Flip a byte inside every on-disk copy of a stored JSON body: the envelope CRC (or redb's
    // own checks) must notice.
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = b"xxxxxxxxxxxxxxxxxxxx";
    let mut hits = 0;
    for at in 0..bytes.len() - needle.len() {
        if &bytes[at..at + needle.len()] == needle {
            bytes[at + 5] = b'y';
            hits += 1;
        }
    }
    assert!(hits > 0, "body on disk");
    std::fs::write(&path, &bytes).unwrap();
    let err = match Store::open(StoreConfig::durable(BackendKind::Redb, &path)) {
        Ok(_) => panic!("a damaged store opened silently"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains("damaged") && msg.contains("store.redb"),
        "{msg}"
    );
}

#[test]
fn a_file_that_is_not_a_store_is_reported_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, path) in [
        (BackendKind::Redb, dir.path().join("store.redb")),
        (BackendKind::Redb, dir.path().join("empty.redb")),
        (BackendKind::Sled, dir.path().join("sled")),
    ] {
        let empty = path.ends_with("empty.redb");
        if empty {
            std::fs::write(&path, b"").unwrap();
        } else if kind == BackendKind::Sled {
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("conf"), b"not a sled config").unwrap();
            std::fs::write(path.join("db"), b"garbage").unwrap();
        } else {
            std::fs::write(&path, b"garbage, not a redb file").unwrap();
        }
        let err = match Store::open(StoreConfig::durable(kind, &path)) {
            Ok(_) => panic!("{}: garbage opened as a store", kind.as_str()),
            Err(e) => e,
        };
        println!("{}: {err}", kind.as_str());
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // Nothing was overwritten.
        if empty {
            assert_eq!(std::fs::read(&path).unwrap(), b"");
        } else if kind == BackendKind::Redb {
            assert_eq!(std::fs::read(&path).unwrap(), b"garbage, not a redb file");
        } else {
            assert_eq!(std::fs::read(path.join("db")).unwrap(), b"garbage");
        }
    }
}

/// A memory backend that says it needs flushes (so the durable driver gathers, writes and
/// flushes each group as for sled and redb) and fails every write once told to.
struct Failing {
    inner: apiserver::store::MemoryBackend,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl apiserver::store::Backend for Failing {
    fn describe(&self) -> String {
        "failing memory".into()
    }
    fn write(
        &self,
        batch: apiserver::store::backend::Batch,
        sync: bool,
    ) -> apiserver::store::backend::BackendResult<()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(apiserver::store::BackendError::Io(
                "the disk is gone".into(),
            ));
        }
        self.inner.write(batch, sync)
    }
    fn sync(&self) -> apiserver::store::backend::BackendResult<()> {
        self.inner.sync()
    }
    fn get_event(
        &self,
        revision: u64,
    ) -> apiserver::store::backend::BackendResult<Option<Vec<u8>>> {
        self.inner.get_event(revision)
    }
    fn scan_events(
        &self,
        from: u64,
        to: u64,
        f: &mut dyn FnMut(u64, &[u8]) -> apiserver::store::backend::BackendResult<bool>,
    ) -> apiserver::store::backend::BackendResult<()> {
        self.inner.scan_events(from, to, f)
    }
    fn migrate_from_format_1(&self) -> apiserver::store::backend::BackendResult<()> {
        self.inner.migrate_from_format_1()
    }
    fn get_meta(&self, name: &str) -> apiserver::store::backend::BackendResult<Option<u64>> {
        self.inner.get_meta(name)
    }
}

/// Concurrent writers whose group commit fails: none of them is acknowledged, none of their
/// writes becomes visible (to reads or watchers), and the store refuses writes from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_commit_acknowledges_and_shows_nothing() {
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let backend = Failing {
        inner: apiserver::store::MemoryBackend::new(),
        fail: fail.clone(),
    };
    let store = Store::open_with(StoreConfig::memory(), Box::new(backend)).unwrap();
    let creates = |prefix: &'static str| {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let name = format!("{prefix}-{i}");
                    store
                        .create(&pod("default", &name), json!({}), "test")
                        .await
                })
            })
            .collect();
        async move {
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap());
            }
            results
        }
    };
    for r in creates("ok").await {
        r.unwrap();
    }
    let revision = store.revision();
    assert_eq!(revision, 64);
    let mut w = store.watch(&pods(Some(revision))).unwrap();
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    for r in creates("lost").await {
        assert!(
            matches!(r, Err(StoreError::Backend(_))),
            "a write whose commit failed was acknowledged: {r:?}"
        );
    }
    assert_eq!(store.revision(), revision);
    for i in 0..64 {
        assert!(store.get(&pod("default", &format!("lost-{i}"))).is_none());
        assert!(store.get(&pod("default", &format!("ok-{i}"))).is_some());
    }
    let listed = store
        .list(&ListQuery {
            resource: "pods".into(),
            ..ListQuery::default()
        })
        .unwrap();
    assert_eq!(listed.items.len(), 64);
    assert!(matches!(w.try_next(), None | Some(WatchItem::Bookmark(_))));
    // Even with the disk back, a store that failed a write refuses writes (reads go on).
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let again = store
        .create(&pod("default", "after"), json!({}), "test")
        .await;
    assert!(matches!(again, Err(StoreError::Backend(_))), "{again:?}");
    assert!(store.get(&pod("default", "ok-0")).is_some());
}
