//! Property tests of the store core against a plain model:
//! - random creates, updates and deletes with random preconditions give exactly the model's
//!   outcomes (success, AlreadyExists, NotFound, Conflict, UidConflict) and state;
//! - the log replays to the same state (`Log::load` over the memory backend);
//! - a watch from any revision in the window yields exactly the log's suffix (ordered, gapless,
//!   once each), and a watch from before the window is `Expired`;
//! - a paginated list concatenates to the full list.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apiserver::store::backend::{Log, MemoryBackend};
use apiserver::store::core::{Committed, Filter, WriteContext};
use apiserver::store::{
    EventType, Key, ListQuery, Precondition, StoreCore, StoreError, WatchWindow, Write,
};
use proptest::prelude::*;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
enum Pre {
    None,
    RightRv,
    WrongRv(u64),
    RightUid,
    WrongUid,
}

#[derive(Clone, Debug)]
enum Op {
    Create(usize, u32),
    Update(usize, u32, Pre),
    Delete(usize, Pre),
}

const KEYS: usize = 8;

fn key(i: usize) -> Key {
    let resource = if i % 4 == 3 {
        "persistentvolumes"
    } else {
        "pods"
    };
    let ns = if resource == "pods" {
        ["a", "b"][i % 2]
    } else {
        ""
    };
    Key::new("", resource, ns, &format!("o{i}"))
}

fn pre() -> impl Strategy<Value = Pre> {
    prop_oneof![
        Just(Pre::None),
        Just(Pre::RightRv),
        (0u64..40).prop_map(Pre::WrongRv),
        Just(Pre::RightUid),
        Just(Pre::WrongUid),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..KEYS, any::<u32>()).prop_map(|(k, v)| Op::Create(k, v)),
        (0..KEYS, any::<u32>(), pre()).prop_map(|(k, v, p)| Op::Update(k, v, p)),
        (0..KEYS, pre()).prop_map(|(k, p)| Op::Delete(k, p)),
    ]
}

/// The model: what each key holds (revision, uid, value).
#[derive(Default)]
struct Model {
    objects: BTreeMap<Key, (u64, String, u32)>,
    revision: u64,
}

fn precondition(p: &Pre, cur: Option<&(u64, String, u32)>) -> Option<Precondition> {
    match p {
        Pre::None => None,
        Pre::RightRv => Some(Precondition::ResourceVersion(cur.map_or(1, |c| c.0))),
        Pre::WrongRv(r) => Some(Precondition::ResourceVersion(*r)),
        Pre::RightUid => Some(Precondition::Uid(
            cur.map_or("none".into(), |c| c.1.clone()),
        )),
        Pre::WrongUid => Some(Precondition::Uid("someone-else".into())),
    }
}

/// The model's verdict on a precondition.
fn pre_ok(p: &Option<Precondition>, cur: &(u64, String, u32)) -> Result<(), &'static str> {
    match p {
        None => Ok(()),
        Some(Precondition::ResourceVersion(r)) if *r == cur.0 => Ok(()),
        Some(Precondition::ResourceVersion(_)) => Err("conflict"),
        Some(Precondition::Uid(u)) if *u == cur.1 => Ok(()),
        Some(Precondition::Uid(_)) => Err("uid"),
    }
}

fn ctx(n: usize) -> WriteContext {
    WriteContext {
        actor: format!("actor-{}", n % 3),
        uid: format!("uid-{n}"),
    }
}

fn run(ops: &[Op], window: usize) -> (StoreCore, Model, Vec<Committed>) {
    let mut core = StoreCore::new(WatchWindow {
        max_age: Duration::from_secs(3600),
        max_events: window,
    });
    let mut model = Model::default();
    let mut log = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        let (write, expect): (Write, Result<(), &str>) = match op {
            Op::Create(k, v) => {
                let expect = if model.objects.contains_key(&key(*k)) {
                    Err("exists")
                } else {
                    Ok(())
                };
                (
                    Write::Create {
                        key: key(*k),
                        object: json!({"v": v}),
                    },
                    expect,
                )
            }
            Op::Update(k, v, p) => {
                let cur = model.objects.get(&key(*k));
                let pc = precondition(p, cur);
                let expect = match cur {
                    None => Err("notfound"),
                    Some(c) => pre_ok(&pc, c),
                };
                (
                    Write::Update {
                        key: key(*k),
                        object: json!({"v": v}),
                        precondition: pc,
                    },
                    expect,
                )
            }
            Op::Delete(k, p) => {
                let cur = model.objects.get(&key(*k));
                let pc = precondition(p, cur);
                let expect = match cur {
                    None => Err("notfound"),
                    Some(c) => pre_ok(&pc, c),
                };
                (
                    Write::Delete {
                        key: key(*k),
                        precondition: pc,
                    },
                    expect,
                )
            }
        };
        let got = core.apply(write.clone(), &ctx(n), 0);
        match (&got, expect) {
            (Ok((p, committed)), Ok(())) => {
                model.revision += 1;
                let ev = committed[0].event();
                assert_eq!(ev.revision, model.revision);
                match &write {
                    Write::Create { key, object } => {
                        model.objects.insert(
                            key.clone(),
                            (
                                model.revision,
                                format!("uid-{n}"),
                                object["v"].as_u64().unwrap() as u32,
                            ),
                        );
                        assert_eq!(ev.event_type, EventType::Added);
                    }
                    Write::Update { key, object, .. } => {
                        let uid = model.objects[key].1.clone();
                        model.objects.insert(
                            key.clone(),
                            (model.revision, uid, object["v"].as_u64().unwrap() as u32),
                        );
                        assert_eq!(ev.event_type, EventType::Modified);
                    }
                    Write::Delete { key, .. } => {
                        let (_, _, v) = model.objects.remove(key).unwrap();
                        assert_eq!(ev.event_type, EventType::Deleted);
                        assert_eq!(p.result["v"], v);
                    }
                }
                log.extend(committed.iter().cloned());
            }
            (Err(StoreError::AlreadyExists { .. }), Err("exists")) => {}
            (Err(StoreError::NotFound { .. }), Err("notfound")) => {}
            (Err(StoreError::Conflict { current, .. }), Err("conflict")) => {
                assert_eq!(
                    *current,
                    model.objects[write.key()].0,
                    "conflict names the current revision"
                );
            }
            (Err(StoreError::UidConflict { .. }), Err("uid")) => {}
            (got, want) => panic!("op {n} {op:?}: store said {got:?}, model says {want:?}"),
        }
        assert_eq!(core.revision(), model.revision);
    }
    (core, model, log)
}

fn check_state(core: &StoreCore, model: &Model) {
    let got: BTreeMap<Key, (u64, String, u32)> = core
        .snapshot()
        .iter()
        .map(|(k, o)| {
            let rv = o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let uid = o["metadata"]["uid"].as_str().unwrap().to_string();
            (k.clone(), (rv, uid, o["v"].as_u64().unwrap() as u32))
        })
        .collect();
    assert_eq!(got, model.objects);
}

/// The objects a load found, parsed.
fn restored(loaded: &apiserver::store::backend::Loaded) -> BTreeMap<Key, Arc<Value>> {
    loaded
        .objects
        .iter()
        .map(|(k, json, _)| (k.clone(), Arc::new(serde_json::from_str(json).unwrap())))
        .collect()
}

/// The objects after replaying the log up to `upto`.
fn replay(log: &[Committed], upto: u64) -> BTreeMap<Key, Arc<Value>> {
    let mut state = BTreeMap::new();
    for c in log.iter().take_while(|c| c.revision <= upto) {
        let e = c.event();
        if e.event_type == EventType::Deleted {
            state.remove(&e.key);
        } else {
            state.insert(e.key, e.object);
        }
    }
    state
}

/// `op` as a write without preconditions (the pipeline test is about what is visible when).
fn plain_write(op: &Op) -> Write {
    match op {
        Op::Create(k, v) => Write::Create {
            key: key(*k),
            object: json!({"v": v}),
        },
        Op::Update(k, v, _) => Write::Update {
            key: key(*k),
            object: json!({"v": v}),
            precondition: None,
        },
        Op::Delete(k, _) => Write::Delete {
            key: key(*k),
            precondition: None,
        },
    }
}

/// Every list the API makes of these keys: all pods, one namespace, all PVs.
fn lists(core: &StoreCore) -> Vec<Vec<Arc<Value>>> {
    [
        ("pods", None),
        ("pods", Some("a")),
        ("persistentvolumes", None),
    ]
    .iter()
    .map(|(resource, ns)| {
        core.list(&ListQuery {
            resource: resource.to_string(),
            namespace: ns.map(str::to_string),
            ..ListQuery::default()
        })
        .unwrap()
        .items
    })
    .collect()
}

/// The durable driver's pipeline: a group is prepared while the one before it is being
/// flushed, groups commit in order, and a failed backend write aborts everything prepared.
/// After every commit the core shows exactly what a core that applied only the committed
/// writes, one at a time, shows — to `get`, to lists (in order) and to snapshots — and each
/// write was accepted or refused alike. `plan`: each group's size and fate (0: abort).
fn pipelined_groups(ops: &[Op], plan: &[(usize, u8)]) -> Result<(), TestCaseError> {
    let window = WatchWindow {
        max_age: Duration::from_secs(3600),
        max_events: 1000,
    };
    let (mut piped, mut plain) = (StoreCore::new(window), StoreCore::new(window));
    let mut ops = ops.iter().enumerate().peekable();
    // Each group in flight: the revision it commits through, and its writes (op number,
    // write, accepted).
    type Group = (u64, Vec<(usize, Write, bool)>);
    let mut in_flight: std::collections::VecDeque<Group> = Default::default();
    for (size, fate) in plan.iter().cycle() {
        let group: Vec<(usize, Write, bool)> = ops
            .by_ref()
            .take(*size)
            .map(|(n, op)| {
                let w = plain_write(op);
                let ok = piped.prepare(w.clone(), &ctx(n), 0).is_ok();
                (n, w, ok)
            })
            .collect();
        let done = ops.peek().is_none();
        if !group.is_empty() {
            in_flight.push_back((piped.prepared_revision(), group));
        }
        if in_flight.len() < 2 && !done {
            continue;
        }
        if in_flight.is_empty() {
            break;
        }
        if *fate == 0 {
            piped.abort_prepared();
            in_flight.clear();
        } else {
            let (through, group) = in_flight.pop_front().expect("a group");
            piped.commit_prepared_through(through, 0);
            for (n, w, ok) in group {
                prop_assert_eq!(plain.apply(w, &ctx(n), 0).is_ok(), ok, "write {}", n);
            }
        }
        prop_assert_eq!(piped.revision(), plain.revision());
        prop_assert_eq!(piped.snapshot(), plain.snapshot());
        prop_assert_eq!(lists(&piped), lists(&plain));
        for k in 0..KEYS {
            prop_assert_eq!(piped.get(&key(k)), plain.get(&key(k)));
        }
    }
    Ok(())
}

/// A case the property test found: a key deleted (committed) while a prepared group creates it,
/// deletes it and a later group creates it again lost its place in the ordered set.
#[test]
fn pipelined_groups_regression() {
    let ops = vec![
        Op::Create(0, 0),
        Op::Create(0, 0),
        Op::Create(0, 0),
        Op::Create(0, 0),
        Op::Create(0, 0),
        Op::Create(0, 0),
        Op::Update(0, 29963928, Pre::RightRv),
        Op::Delete(3, Pre::WrongUid),
        Op::Update(1, 3811982978, Pre::WrongUid),
        Op::Delete(0, Pre::RightUid),
        Op::Delete(5, Pre::WrongRv(32)),
        Op::Create(7, 3442304180),
        Op::Create(4, 3722166789),
        Op::Create(0, 1221901809),
        Op::Update(4, 3636601344, Pre::None),
        Op::Delete(2, Pre::RightRv),
        Op::Create(2, 514073046),
        Op::Update(0, 1417616662, Pre::WrongRv(16)),
        Op::Delete(5, Pre::RightRv),
        Op::Delete(3, Pre::None),
        Op::Update(3, 1098322294, Pre::WrongUid),
        Op::Delete(5, Pre::RightRv),
        Op::Update(1, 3977839142, Pre::RightRv),
        Op::Create(1, 3243040847),
        Op::Create(1, 3010080985),
        Op::Update(4, 1970985677, Pre::None),
        Op::Delete(2, Pre::RightUid),
        Op::Delete(2, Pre::RightRv),
        Op::Delete(6, Pre::None),
        Op::Delete(2, Pre::None),
        Op::Update(3, 3840363149, Pre::WrongUid),
        Op::Create(3, 3613634175),
        Op::Update(1, 3546936665, Pre::RightRv),
        Op::Create(2, 3751239029),
        Op::Create(1, 1130847290),
        Op::Update(7, 2051125265, Pre::WrongRv(15)),
        Op::Delete(2, Pre::RightUid),
        Op::Delete(6, Pre::RightUid),
        Op::Create(2, 3086097922),
    ];
    let plan = vec![
        (4, 6),
        (4, 2),
        (3, 7),
        (1, 3),
        (1, 3),
        (2, 3),
        (1, 1),
        (2, 4),
        (2, 1),
        (1, 2),
        (2, 5),
        (5, 4),
        (1, 0),
        (4, 2),
        (5, 6),
        (5, 1),
        (1, 4),
        (2, 7),
        (3, 1),
        (2, 7),
    ];
    pipelined_groups(&ops, &plan).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn writes_match_the_model_and_the_log_replays(ops in prop::collection::vec(op(), 1..80), cut_frac in 0.0f64..1.0) {
        let (core, model, log) = run(&ops, 1000);
        check_state(&core, &model);
        // Append the log to a backend and load it back: the same objects and revision.
        let backend = Log::new(Box::new(MemoryBackend::new()));
        backend.load("", 1000).unwrap(); // opens (and formats) the empty store
        for chunk in log.chunks(7) {
            backend.append(chunk, true).unwrap();
        }
        let loaded = backend.load("", 1000).unwrap();
        prop_assert_eq!(loaded.revision, core.revision());
        prop_assert_eq!(restored(&loaded), core.snapshot());
        // The window seeded from the log has the same events and previous states.
        prop_assert_eq!(loaded.tail.len(), log.len());
        for (a, b) in loaded.tail.iter().zip(&log) {
            prop_assert_eq!(a, b);
        }
        // Every state in between can be rebuilt.
        let mid = core.revision() / 2;
        prop_assert_eq!(backend.state_at(mid).unwrap(), replay(&log, mid));
        // Retention: drop everything up to `cut` but each key's then-current version. Every state
        // from `cut` on is still exact, older ones are Expired, and the store still opens.
        let cut = (core.revision() as f64 * cut_frac) as u64;
        backend.compact(cut, true).unwrap();
        for r in [cut, (cut + core.revision()) / 2, core.revision()] {
            prop_assert_eq!(backend.state_at(r).unwrap(), replay(&log, r));
        }
        if cut > 0 {
            let expired = matches!(backend.state_at(cut - 1), Err(StoreError::Expired { .. }));
            prop_assert!(expired);
        }
        let reloaded = backend.load("", 1000).unwrap();
        prop_assert_eq!(restored(&reloaded), core.snapshot());
        prop_assert_eq!(reloaded.revision, core.revision());
        for k in 0..KEYS {
            let h = backend.history(&key(k)).unwrap();
            let want: Vec<_> = log.iter().filter(|c| *c.key == key(k) && c.revision > cut).map(|c| c.event()).collect();
            let kept: Vec<_> = h.into_iter().filter(|e| e.revision > cut).collect();
            prop_assert_eq!(kept, want);
        }
    }

    /// See [`pipelined_groups`].
    #[test]
    fn pipelined_groups_show_what_one_by_one_shows(
        ops in prop::collection::vec(op(), 1..80),
        plan in prop::collection::vec((1usize..6, 0u8..8), 1..40),
    ) {
        pipelined_groups(&ops, &plan)?;
    }

    #[test]
    fn a_watch_from_any_revision_is_the_log_suffix(
        ops in prop::collection::vec(op(), 1..80),
        window in 1usize..40,
        from_frac in 0.0f64..1.2,
    ) {
        let (core, _model, log) = run(&ops, window);
        let from = (core.revision() as f64 * from_frac) as u64;
        let filter = Filter { resource: "pods".into(), ..Filter::default() };
        let oldest_kept = log.len().saturating_sub(window);
        let window_start = log.get(oldest_kept).map_or(core.revision(), |c| c.revision - 1);
        match core.watch_backlog(&filter, from) {
            Ok(events) => {
                prop_assert!(from >= window_start);
                let want: Vec<_> = log
                    .iter()
                    .filter(|c| c.revision > from && c.key.resource == "pods")
                    .map(|c| c.event())
                    .collect();
                prop_assert_eq!(events, want);
            }
            Err(StoreError::Expired { requested, oldest }) => {
                prop_assert!(from < window_start);
                prop_assert_eq!((requested, oldest), (from, window_start));
            }
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
        // The same for one namespace.
        let filter = Filter { resource: "pods".into(), namespace: Some("a".into()), ..Filter::default() };
        if let Ok(events) = core.watch_backlog(&filter, from) {
            let want: Vec<_> = log
                .iter()
                .filter(|c| c.revision > from && c.key.resource == "pods" && c.key.namespace == "a")
                .map(|c| c.event())
                .collect();
            prop_assert_eq!(events, want);
        }
    }

    #[test]
    fn paginated_lists_concatenate_to_the_full_list(ops in prop::collection::vec(op(), 1..80), limit in 1usize..5) {
        let (core, _model, _) = run(&ops, 1000);
        let full = core.list(&ListQuery { resource: "pods".into(), ..ListQuery::default() }).unwrap();
        let mut q = ListQuery { resource: "pods".into(), limit: Some(limit), ..ListQuery::default() };
        let mut items = Vec::new();
        loop {
            let page = core.list(&q).unwrap();
            prop_assert!(page.items.len() <= limit);
            items.extend(page.items);
            match page.continue_token {
                Some(t) => q.continue_token = Some(t),
                None => break,
            }
        }
        prop_assert_eq!(items, full.items);
    }
}
