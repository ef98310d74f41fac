//! The invariants, named as sentences. Those about the store are checked after every commit
//! (nothing else changes the store); the kubelet's after every mount it performs; watch
//! streams at every delivery and, whole, at quiescence; the rest at quiescence.
//!
//! Per-commit checks are incremental: an [`Index`] of who names whom (claims → PVs, pods →
//! claims, pods → nodes) says which objects a commit can have affected, and only those are
//! re-checked — the same verdict as a scan of the world, since everything held before the
//! commit. The replay check folds the log incrementally too ([`Replay`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use apiserver::api::BINDING_WAIT_FOR_FIRST_CONSUMER;
use apiserver::store::core::Views;
use apiserver::store::{EventType, Key, Revision, StoreError};
use serde_json::Value;

use super::actors::{Core, Delivery, Obj, Req};
use super::objects::{self, label, str_at, Kind};
use super::sim::World;

pub const AT_MOST_ONE_CLAIM: &str = "a PersistentVolume is bound to at most one claim";
pub const WFFC_AFTER_NODE: &str =
    "a WaitForFirstConsumer claim binds only after the scheduler chose a node for a pod using it";
pub const NODE_AFFINITY: &str =
    "a pod's node satisfies the node affinity of every PersistentVolume it uses";
pub const KUBELET_BOUND: &str = "a kubelet mounts only bound claims";
pub const WATCH_STREAMS: &str = "watch streams are ordered, unique and gapless";
pub const POINT_AT_EACH_OTHER: &str = "claim and volume point at each other once bound";
pub const REPLAY: &str = "replaying the log rebuilds the same state";
pub const SCHEDULABLE: &str = "every pod that can be scheduled is scheduled";

/// The sentences, for `bonsai race list --invariants` and the README.
pub const ALL: &[(&str, &str)] = &[
    (AT_MOST_ONE_CLAIM, "after every commit"),
    (WFFC_AFTER_NODE, "after every commit"),
    (NODE_AFFINITY, "after every commit"),
    (KUBELET_BOUND, "at every mount"),
    (WATCH_STREAMS, "at every delivery and at quiescence"),
    (POINT_AT_EACH_OTHER, "at quiescence"),
    (REPLAY, "at quiescence"),
    (SCHEDULABLE, "at quiescence"),
];

/// One committed write, as the invariants see it.
pub struct Change<'a> {
    pub key: &'a Key,
    pub kind: Kind,
    pub event_type: EventType,
    pub object: &'a Arc<Obj>,
    /// The key's previous version (None: created).
    pub prev: Option<&'a Arc<Obj>>,
    pub actor: &'a str,
}

fn range<'a>(w: &'a World<'_>, kind: Kind) -> impl Iterator<Item = (&'a Key, &'a Arc<Obj>)> + 'a {
    let (g, r) = kind.resource();
    w.mirror
        .range(Key::new(g, r, "", "")..)
        .take_while(move |(k, _)| k.group == g && k.resource == r)
}

fn claim_key(ns: &str, name: &str) -> Key {
    Kind::Pvc.key(ns, name)
}

/// Does a PV's required node affinity admit a node whose labels `label` looks up?
/// (In, NotIn, Exists, DoesNotExist over matchExpressions; terms are ORed.)
fn admits<'l>(pv: &Value, label: impl Fn(&str) -> Option<&'l str>) -> bool {
    let Some(terms) = pv
        .pointer("/spec/nodeAffinity/required/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return true;
    };
    terms.iter().any(|t| {
        t.get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(|es| {
                es.iter().all(|e| {
                    let key = str_at(e, "/key");
                    let vals = || {
                        e.get("values")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                    };
                    let have = label(key);
                    match str_at(e, "/operator") {
                        "In" => have.is_some_and(|h| vals().any(|v| v == h)),
                        "NotIn" => have.is_none_or(|h| !vals().any(|v| v == h)),
                        "Exists" => have.is_some(),
                        "DoesNotExist" => have.is_none(),
                        _ => false,
                    }
                })
            })
    })
}

fn wffc(w: &World<'_>, claim: &Value) -> bool {
    let class = str_at(claim, "/spec/storageClassName");
    w.peek(&Kind::Class.key("", class))
        .is_some_and(|c| str_at(c, "/volumeBindingMode") == BINDING_WAIT_FOR_FIRST_CONSUMER)
}

/// What the per-commit invariants keep between commits, so that a commit is checked through
/// what it changed instead of by a scan of the world: who names whom. Kept equal to the mirror
/// (the current objects) by [`Index::update`] at every commit.
#[derive(Default)]
pub struct Index {
    /// PV name → the bound claims whose volumeName is that PV ("at most one claim").
    bound_claims: BTreeMap<String, BTreeSet<Key>>,
    /// PV name → every claim whose volumeName is that PV (a PV's change reaches pods so).
    claims_of_pv: BTreeMap<String, BTreeSet<Key>>,
    /// Claim → the pods whose volumes use it (whether or not the claim exists).
    pods_of_claim: BTreeMap<Key, BTreeSet<Key>>,
    /// Node name → the pods assigned to it.
    pods_on_node: BTreeMap<String, BTreeSet<Key>>,
}

fn link<K, Q>(map: &mut BTreeMap<K, BTreeSet<Key>>, at: &Q, what: &Key, add: bool)
where
    K: Ord + std::borrow::Borrow<Q>,
    Q: Ord + ToOwned<Owned = K> + ?Sized,
{
    if add {
        match map.get_mut(at) {
            Some(set) => {
                if !set.contains(what) {
                    set.insert(what.clone());
                }
            }
            None => {
                map.insert(at.to_owned(), BTreeSet::from([what.clone()]));
            }
        }
    } else if let Some(set) = map.get_mut(at) {
        set.remove(what);
        if set.is_empty() {
            map.remove(at);
        }
    }
}

/// The PV a claim names, if any.
fn named_pv(pvc: &Value) -> Option<&str> {
    Some(str_at(pvc, "/spec/volumeName")).filter(|v| !v.is_empty())
}

/// The PV a bound claim names (bound: the bind-completed annotation, or phase Bound).
fn bound_pv(pvc: &Value) -> Option<&str> {
    named_pv(pvc)
        .filter(|_| objects::claim_is_bound(pvc) || str_at(pvc, "/status/phase") == "Bound")
}

/// `v`'s value at `pointer`, for an object that may not exist.
fn at<'v>(v: Option<&'v Value>, pointer: &str) -> Option<Option<&'v Value>> {
    v.map(|v| v.pointer(pointer))
}

fn pod_node(pod: &Value) -> Option<&str> {
    Some(str_at(pod, "/spec/nodeName")).filter(|n| !n.is_empty())
}

impl Index {
    /// Follows one commit (`prev` → `now`; `now` None for a delete).
    ///
    /// Returns whether the commit changed anything the node-affinity invariant reads of this
    /// object (for a pod: its node and claims; a claim: its volumeName and whether it is
    /// bound; a PV: its node affinity; a node: its labels; each: whether it exists). When it
    /// did not, every verdict is what it was before the commit: true.
    fn update(&mut self, key: &Key, kind: Kind, prev: Option<&Value>, now: Option<&Value>) -> bool {
        match kind {
            Kind::Pv => at(prev, "/spec/nodeAffinity") != at(now, "/spec/nodeAffinity"),
            Kind::Node => at(prev, "/metadata/labels") != at(now, "/metadata/labels"),
            Kind::Pvc => {
                for (map, f) in [
                    (
                        &mut self.bound_claims,
                        bound_pv as fn(&Value) -> Option<&str>,
                    ),
                    (&mut self.claims_of_pv, named_pv),
                ] {
                    let (old, new) = (prev.and_then(f), now.and_then(f));
                    if old != new {
                        if let Some(o) = old {
                            link(map, o, key, false);
                        }
                        if let Some(n) = new {
                            link(map, n, key, true);
                        }
                    }
                }
                let read = |v: &Value| (named_pv(v).map(str::to_owned), objects::claim_is_bound(v));
                prev.map(read) != now.map(read)
            }
            Kind::Pod => {
                let (old, new) = (prev.and_then(pod_node), now.and_then(pod_node));
                let moved = old != new;
                if moved {
                    if let Some(o) = old {
                        link(&mut self.pods_on_node, o, key, false);
                    }
                    if let Some(n) = new {
                        link(&mut self.pods_on_node, n, key, true);
                    }
                }
                let (old, new) = (
                    prev.into_iter().flat_map(objects::pod_claim_names),
                    now.into_iter().flat_map(objects::pod_claim_names),
                );
                if old.eq(new) {
                    return moved;
                }
                let claims = |p: Option<&Value>| p.map(objects::pod_claims).unwrap_or_default();
                let (old, new) = (claims(prev), claims(now));
                {
                    for c in &old {
                        link(
                            &mut self.pods_of_claim,
                            &claim_key(&key.namespace, c),
                            key,
                            false,
                        );
                    }
                    for c in &new {
                        link(
                            &mut self.pods_of_claim,
                            &claim_key(&key.namespace, c),
                            key,
                            true,
                        );
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// The pods whose node-affinity verdict a commit of `key` may have changed.
    fn pods_touched<'a>(&'a self, key: &'a Key, kind: Kind, deleted: bool) -> BTreeSet<&'a Key> {
        let mut out = BTreeSet::new();
        let of_claim = |c: &Key, out: &mut BTreeSet<&'a Key>| {
            if let Some(pods) = self.pods_of_claim.get(c) {
                out.extend(pods.iter());
            }
        };
        match kind {
            Kind::Pod if !deleted => {
                out.insert(key);
            }
            Kind::Pvc => of_claim(key, &mut out),
            Kind::Pv => {
                for c in self.claims_of_pv.get(&key.name).into_iter().flatten() {
                    of_claim(c, &mut out);
                }
            }
            Kind::Node => {
                if let Some(pods) = self.pods_on_node.get(&key.name) {
                    out.extend(pods.iter());
                }
            }
            _ => {}
        }
        out
    }
}

/// After every committed write. Each invariant is re-checked for everything the write can
/// have changed (the index says what that is), which is the same verdict a scan of every
/// object gives: they all held before this commit.
pub fn after_commit(w: &mut World<'_>, c: &Change<'_>) {
    let now = (c.event_type != EventType::Deleted).then_some(&***c.object);
    let affinity_inputs = w.index.update(c.key, c.kind, c.prev.map(|p| &***p), now);
    if !matches!(c.kind, Kind::Pv | Kind::Pvc | Kind::Pod | Kind::Node) {
        return;
    }
    // A PersistentVolume is bound to at most one claim (only a claim's change can break it).
    if c.kind == Kind::Pvc {
        if let Some(pv) = now.and_then(bound_pv) {
            let claims = &w.index.bound_claims[pv];
            if claims.len() > 1 {
                let d = format!(
                    "pv/{pv} is the volumeName of {} bound claims: {}",
                    claims.len(),
                    claims.iter().map(label).collect::<Vec<_>>().join(", ")
                );
                w.fail(AT_MOST_ONE_CLAIM, d);
                return;
            }
        }
    }

    // A WaitForFirstConsumer claim binds only after the scheduler chose a node.
    if c.kind == Kind::Pvc && c.event_type != EventType::Deleted {
        let now_bound = !str_at(c.object, "/spec/volumeName").is_empty();
        let was_bound = c
            .prev
            .is_some_and(|p| !str_at(p, "/spec/volumeName").is_empty());
        if now_bound && !was_bound && wffc(w, c.object) && !w.user_bound.contains(c.key) {
            let pv = str_at(c.object, "/spec/volumeName").to_string();
            let chosen = w.scheduler_claimed.contains(&pv)
                || w.user_bound.contains(&Kind::Pv.key("", &pv))
                || w.index
                    .pods_of_claim
                    .get(c.key)
                    .into_iter()
                    .flatten()
                    .any(|p| w.peek(p).and_then(|p| pod_node(p)).is_some());
            if !chosen {
                let d = format!(
                    "{} got volumeName={pv} (by {}) but no pod using it has a node and the scheduler never claimed pv/{pv}",
                    label(c.key),
                    c.actor
                );
                w.fail(WFFC_AFTER_NODE, d);
                return;
            }
        }
    }

    // A pod's node satisfies the node affinity of every PV it uses: re-checked, when the write
    // changed what the check reads, for the pods it can affect (the pod itself, the pods
    // using a claim, the pods using the claims of a PV, the pods on a node), in key order.
    if !affinity_inputs {
        return;
    }
    let touched = w
        .index
        .pods_touched(c.key, c.kind, c.event_type == EventType::Deleted);
    let bad = touched.into_iter().find_map(|k| node_affinity(w, k));
    if let Some(d) = bad {
        w.fail(NODE_AFFINITY, d);
    }
}

/// Why pod `k`'s node does not satisfy the affinity of a PV it uses, if it does not.
fn node_affinity(w: &World<'_>, k: &Key) -> Option<String> {
    let pod = w.peek(k)?;
    let node = pod_node(pod)?;
    let n = w.peek(&Kind::Node.key("", node))?;
    let labels = n.pointer("/metadata/labels").and_then(Value::as_object);
    let label_of = |key: &str| {
        labels
            .and_then(|m| m.get(key))
            .map(|v| v.as_str().unwrap_or(""))
    };
    for claim in objects::pod_claims(pod) {
        let Some(pvc) = w.peek(&claim_key(&k.namespace, &claim)) else {
            continue;
        };
        let vn = str_at(pvc, "/spec/volumeName");
        if vn.is_empty() || !objects::claim_is_bound(pvc) {
            continue;
        }
        let Some(pv) = w.peek(&Kind::Pv.key("", vn)) else {
            continue;
        };
        if !admits(pv, label_of) {
            return Some(format!(
                "{} runs on {node}, but its claim {claim} is bound to pv/{vn}, whose node affinity excludes {node}",
                label(k)
            ));
        }
    }
    None
}

/// Before a kubelet performs a pod's mounts: every claim is bound, both ways, in the store.
pub fn kubelet_mount(w: &mut World<'_>, kubelet: &str, pod: &str, claims: &[String]) {
    let (ns, _) = pod.split_once('/').unwrap_or(("default", pod));
    for c in claims {
        let key = claim_key(ns, c);
        let why = match w.get(&key) {
            None => Some("does not exist".to_string()),
            Some(pvc) if !objects::claim_is_bound(&pvc) => Some(format!(
                "is not bound ({})",
                objects::summary(Kind::Pvc, &pvc)
            )),
            Some(pvc) => {
                let vn = str_at(&pvc, "/spec/volumeName");
                match w.get(&Kind::Pv.key("", vn)) {
                    Some(pv) if objects::claim_ref(&pv) == format!("{ns}/{c}") => None,
                    Some(pv) => Some(format!(
                        "names pv/{vn}, whose claimRef is {:?}",
                        objects::claim_ref(&pv)
                    )),
                    None => Some(format!("names pv/{vn}, which does not exist")),
                }
            }
        };
        if let Some(why) = why {
            w.fail(
                KUBELET_BOUND,
                format!(
                    "{kubelet} mounts pod {pod}, but its claim {} {why}",
                    label(&key)
                ),
            );
            return;
        }
    }
}

/// At quiescence.
pub fn at_quiescence(w: &mut World<'_>) {
    streams(w);
    if w.failure.is_some() {
        return;
    }
    point_at_each_other(w);
    if w.failure.is_some() {
        return;
    }
    replay(w);
    if w.failure.is_some() {
        return;
    }
    // A scenario holding a watch has partitioned a component on purpose: progress is not
    // expected of it until the partition heals.
    let partitioned = w.actors.iter().any(|a| a.watches.iter().any(|x| x.held));
    if !partitioned {
        schedulable(w);
    }
}

/// The revisions, up to `to`, of the events a watch of `kind` from revision `from` gets from
/// the store — what `StoreCore::watch_backlog` serves, asked of the store's own filter
/// (`Filter::seen`) without building the events (no selectors: nothing to parse).
fn backlog(
    w: &World<'_>,
    kind: Kind,
    from: Revision,
    to: Revision,
) -> Result<Vec<Revision>, StoreError> {
    let filter = World::seen_filter(kind);
    filter.validate()?;
    debug_assert!(!filter.has_selectors());
    if from < w.store.window_start() {
        return Err(StoreError::Expired {
            requested: from,
            oldest: w.store.window_start(),
        });
    }
    Ok(w.store
        .window_after(from)
        .take_while(|c| c.revision <= to)
        .filter(|c| filter.seen(&Views::new(c)).is_some())
        .map(|c| c.revision)
        .collect())
}

/// Each watch's events since its last relist are exactly the store's watch backlog from
/// that revision: in order, each once, none missing.
fn streams(w: &mut World<'_>) {
    let mut bad = None;
    for a in &w.actors {
        if a.core.is_none() {
            continue;
        }
        for watch in &a.watches {
            if watch.relist {
                continue;
            }
            let expected: Vec<u64> = match backlog(w, watch.kind, watch.from, watch.rev) {
                Ok(revs) => revs,
                Err(e) => {
                    bad = Some(format!(
                        "{}'s {} watch from r{}: {e}",
                        a.name,
                        watch.kind.short(),
                        watch.from
                    ));
                    break;
                }
            };
            if expected != watch.seen {
                bad = Some(format!(
                    "{}'s {} watch from r{} saw {:?}, the log has {:?}",
                    a.name,
                    watch.kind.short(),
                    watch.from,
                    watch.seen,
                    expected
                ));
                break;
            }
        }
    }
    if let Some(d) = bad {
        w.fail(WATCH_STREAMS, d);
    }
}

fn point_at_each_other(w: &mut World<'_>) {
    let mut bad = None;
    for (k, pvc) in range(w, Kind::Pvc) {
        let vn = str_at(pvc, "/spec/volumeName");
        if vn.is_empty() || !objects::claim_is_bound(pvc) {
            continue;
        }
        match w.get(&Kind::Pv.key("", vn)) {
            None => {
                bad = Some(format!(
                    "{} is bound to pv/{vn}, which does not exist",
                    label(k)
                ))
            }
            Some(pv) => {
                let me = format!("{}/{}", k.namespace, k.name);
                if objects::claim_ref(&pv) != me
                    || objects::claim_ref_uid(&pv) != str_at(pvc, "/metadata/uid")
                {
                    bad = Some(format!(
                        "{} is bound to pv/{vn}, but pv/{vn} has claimRef {:?}",
                        label(k),
                        objects::claim_ref(&pv)
                    ));
                } else if str_at(&pv, "/status/phase") != "Bound"
                    || str_at(pvc, "/status/phase") != "Bound"
                {
                    bad = Some(format!(
                        "{} and pv/{vn} point at each other but their phases are {} and {}",
                        label(k),
                        str_at(pvc, "/status/phase"),
                        str_at(&pv, "/status/phase")
                    ));
                }
            }
        }
        if bad.is_some() {
            break;
        }
    }
    if bad.is_none() {
        for (k, pv) in range(w, Kind::Pv) {
            if str_at(pv, "/status/phase") != "Bound" {
                continue;
            }
            let cr = objects::claim_ref(pv);
            let (ns, name) = cr.split_once('/').unwrap_or(("", ""));
            let ok = w
                .peek(&claim_key(ns, name))
                .is_some_and(|c| str_at(c, "/spec/volumeName") == k.name);
            if !ok {
                bad = Some(format!(
                    "{} is Bound with claimRef {cr:?}, which does not name it back",
                    label(k)
                ));
                break;
            }
        }
    }
    if let Some(d) = bad {
        w.fail(POINT_AT_EACH_OTHER, d);
    }
}

fn replay(w: &mut World<'_>) {
    let mut r = std::mem::take(&mut w.replay);
    let verdict = replay_check(w, &mut r);
    w.replay = r;
    if let Err(d) = verdict {
        w.fail(REPLAY, d);
    }
}

/// The replay invariant's fold of the log, carried from one quiescence to the next: the log
/// only grows, so each event is folded once per run instead of once per quiescence (the
/// folded past is still checked to be unchanged, pointer by pointer).
#[derive(Default)]
pub struct Replay {
    /// The last revision folded in.
    to: Revision,
    /// Every folded event's JSON, by revision - 1.
    log: Vec<Arc<str>>,
    state: BTreeMap<Key, Replayed>,
}

struct Replayed {
    /// The object as the log has it (JSON text).
    json: Arc<str>,
    /// The mirror's object last found equal to it (both immutable: equal while the mirror
    /// still holds that object).
    same_as: Option<Arc<Obj>>,
}

/// Is the JSON text `json` the object `v`? Serialising `v` and comparing text decides at the
/// cost of a serialisation (a parse costs more); only texts that differ — same object, other
/// member order, say — are parsed and compared as values.
fn same_json(json: &str, v: &Value) -> Result<bool, String> {
    let text = serde_json::to_string(v).map_err(|e| e.to_string())?;
    if text == json {
        return Ok(true);
    }
    let parsed: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(parsed == *v)
}

fn replay_check(w: &World<'_>, r: &mut Replay) -> Result<(), String> {
    let mut last = 0;
    for c in w.store.window_after(0) {
        if c.revision != last + 1 {
            return Err(format!("the log jumps from r{last} to r{}", c.revision));
        }
        last = c.revision;
        if c.revision <= r.to {
            let folded = &r.log[c.revision as usize - 1];
            if !Arc::ptr_eq(folded, &c.json) && **folded != *c.json {
                return Err(format!(
                    "r{} is not what it was when it was replayed",
                    c.revision
                ));
            }
            continue;
        }
        match c.event_type {
            EventType::Deleted => {
                r.state.remove(&*c.key);
            }
            _ => {
                let e = Replayed {
                    json: c.json.clone(),
                    same_as: None,
                };
                match r.state.get_mut(&*c.key) {
                    Some(slot) => *slot = e,
                    None => {
                        r.state.insert((*c.key).clone(), e);
                    }
                }
            }
        }
        r.log.push(c.json.clone());
        r.to = c.revision;
    }
    if last < r.to {
        return Err(format!(
            "the log ends at r{last}, but r1..r{} were replayed before",
            r.to
        ));
    }
    // The store's objects: the same text (the store shares one string between its log and
    // its objects), or else the same JSON value.
    let store_same = r.state.len() == w.store.object_count()
        && r.state.iter().all(|(k, e)| match w.store.get_json(k) {
            Some(j) if Arc::ptr_eq(&j, &e.json) || *j == *e.json => true,
            Some(j) => serde_json::from_str::<Value>(&j)
                .is_ok_and(|v| same_json(&e.json, &v).unwrap_or(false)),
            None => false,
        });
    if !store_same {
        let store = w.store.snapshot();
        let store: BTreeMap<&Key, &Value> = store.iter().map(|(k, v)| (k, &**v)).collect();
        return Err(replay_differs(r, last, "the store's objects", &store));
    }
    let mirror_same = r.state.len() == w.mirror.len()
        && r.state.iter_mut().all(|(k, e)| match w.mirror.get(k) {
            Some(o) if e.same_as.as_ref().is_some_and(|s| Arc::ptr_eq(s, o)) => true,
            // Equal to the mirror's object also proves the log's text is JSON.
            Some(o) if same_json(&e.json, o).unwrap_or(false) => {
                e.same_as = Some(o.clone());
                true
            }
            _ => false,
        });
    if !mirror_same {
        let mirror: BTreeMap<&Key, &Value> = w.mirror.iter().map(|(k, v)| (k, &***v)).collect();
        return Err(replay_differs(
            r,
            last,
            "the objects the watches delivered",
            &mirror,
        ));
    }
    Ok(())
}

/// The message for a replay that differs from `other`: the first key (in `other`'s order,
/// then the replay's) whose objects differ.
fn replay_differs(
    r: &Replay,
    last: Revision,
    what: &str,
    other: &BTreeMap<&Key, &Value>,
) -> String {
    let parsed: BTreeMap<&Key, Value> = r
        .state
        .iter()
        .map(|(k, e)| (k, serde_json::from_str(&e.json).unwrap_or(Value::Null)))
        .collect();
    let state: BTreeMap<&Key, &Value> = parsed.iter().map(|(k, v)| (*k, v)).collect();
    let diff = other
        .keys()
        .chain(state.keys())
        .find(|k| state.get(*k) != other.get(*k))
        .map(|k| label(k))
        .unwrap_or_default();
    format!("replaying r1..r{last} differs from {what} at {diff}")
}

/// A fresh scheduler, given the final state, must not find a node for any Pending pod.
fn schedulable(w: &mut World<'_>) {
    let mut core = Core::new("scheduler");
    for kind in core.watches() {
        let items: Vec<Arc<Obj>> = range(w, *kind).map(|(_, v)| v.clone()).collect();
        if core
            .deliver(w.now, *kind, Delivery::Relisted(items))
            .is_err()
        {
            return;
        }
    }
    core.fire(w.now);
    let mut bad = None;
    for (_, req) in core.drain() {
        let Req::Sched(r) = req else { continue };
        let (pod, what) = match &r {
            scheduler::Request::Bind {
                namespace,
                name,
                node,
                ..
            } => (Kind::Pod.key(namespace, name), format!("fits {node}")),
            scheduler::Request::UpdatePersistentVolume(pv) => {
                let cr = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
                let (ns, claim) = (
                    cr.and_then(|c| c.namespace.clone()).unwrap_or_default(),
                    cr.and_then(|c| c.name.clone()).unwrap_or_default(),
                );
                let user = range(w, Kind::Pod)
                    .find(|(k, p)| {
                        k.namespace == ns
                            && str_at(p, "/spec/nodeName").is_empty()
                            && objects::pod_claims(p).contains(&claim)
                    })
                    .map(|(k, _)| k.clone());
                match user {
                    Some(k) => (
                        k,
                        format!(
                            "fits with pv/{} for claim {claim}",
                            pv.metadata.name.as_deref().unwrap_or("")
                        ),
                    ),
                    None => continue,
                }
            }
            _ => continue,
        };
        if let Some(p) = w.get(&pod) {
            if str_at(&p, "/spec/nodeName").is_empty()
                && p.pointer("/metadata/deletionTimestamp").is_none()
            {
                bad = Some(format!("{} is Pending, but a fresh scheduler looking at the final state finds it {what}", label(&pod)));
                break;
            }
        }
    }
    if let Some(d) = bad {
        w.fail(SCHEDULABLE, d);
    }
}
