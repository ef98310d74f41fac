//! The invariants, named as sentences. Those about the store are checked after every commit
//! (nothing else changes the store); the kubelet's after every mount it performs; watch
//! streams at every delivery and, whole, at quiescence; the rest at quiescence.

use std::collections::BTreeMap;
use std::sync::Arc;

use apiserver::api::BINDING_WAIT_FOR_FIRST_CONSUMER;
use apiserver::store::{EventType, Key};
use serde_json::Value;

use super::actors::{Core, Delivery, Req};
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
    pub event_type: EventType,
    pub object: &'a Arc<Value>,
    pub prev: Option<&'a Arc<Value>>,
    pub actor: &'a str,
}

fn range<'a>(w: &'a World<'_>, kind: Kind) -> impl Iterator<Item = (&'a Key, &'a Arc<Value>)> + 'a {
    let (g, r) = kind.resource();
    w.mirror
        .range(Key::new(g, r, "", "")..)
        .take_while(move |(k, _)| k.group == g && k.resource == r)
}

fn claim_key(ns: &str, name: &str) -> Key {
    Kind::Pvc.key(ns, name)
}

/// Does a PV's required node affinity admit a node with these labels?
/// (In, NotIn, Exists, DoesNotExist over matchExpressions; terms are ORed.)
pub fn affinity_admits(pv: &Value, labels: &BTreeMap<String, String>) -> bool {
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
                    let vals: Vec<&str> = e
                        .get("values")
                        .and_then(Value::as_array)
                        .map(|v| v.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let have = labels.get(key).map(String::as_str);
                    match str_at(e, "/operator") {
                        "In" => have.is_some_and(|h| vals.contains(&h)),
                        "NotIn" => have.is_none_or(|h| !vals.contains(&h)),
                        "Exists" => have.is_some(),
                        "DoesNotExist" => have.is_none(),
                        _ => false,
                    }
                })
            })
    })
}

fn node_labels(w: &World<'_>, node: &str) -> Option<BTreeMap<String, String>> {
    let n = w.get(&Kind::Node.key("", node))?;
    Some(
        n.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default(),
    )
}

fn wffc(w: &World<'_>, claim: &Value) -> bool {
    let class = str_at(claim, "/spec/storageClassName");
    w.store
        .get(&Kind::Class.key("", class))
        .is_some_and(|c| str_at(&c, "/volumeBindingMode") == BINDING_WAIT_FOR_FIRST_CONSUMER)
}

/// After every committed write.
pub fn after_commit(w: &mut World<'_>, c: &Change<'_>) {
    let kind = Kind::of(c.key);
    if !matches!(kind, Some(Kind::Pv | Kind::Pvc | Kind::Pod)) {
        return;
    }
    // A PersistentVolume is bound to at most one claim.
    let mut named: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (k, pvc) in range(w, Kind::Pvc) {
        let v = str_at(pvc, "/spec/volumeName");
        if !v.is_empty()
            && (objects::claim_is_bound(pvc) || str_at(pvc, "/status/phase") == "Bound")
        {
            named.entry(v).or_default().push(label(k));
        }
    }
    if let Some((pv, claims)) = named.iter().find(|(_, c)| c.len() > 1) {
        let d = format!(
            "pv/{pv} is the volumeName of {} bound claims: {}",
            claims.len(),
            claims.join(", ")
        );
        w.fail(AT_MOST_ONE_CLAIM, d);
        return;
    }

    // A WaitForFirstConsumer claim binds only after the scheduler chose a node.
    if kind == Some(Kind::Pvc) && c.event_type != EventType::Deleted {
        let now_bound = !str_at(&c.object, "/spec/volumeName").is_empty();
        let was_bound = c
            .prev
            .as_ref()
            .is_some_and(|p| !str_at(p, "/spec/volumeName").is_empty());
        if now_bound && !was_bound && wffc(w, &c.object) && !w.user_bound.contains(c.key) {
            let pv = str_at(&c.object, "/spec/volumeName").to_string();
            let chosen = w.scheduler_claimed.contains(&pv)
                || w.user_bound.contains(&Kind::Pv.key("", &pv))
                || range(w, Kind::Pod).any(|(k, p)| {
                    k.namespace == c.key.namespace
                        && !str_at(p, "/spec/nodeName").is_empty()
                        && objects::pod_claims(p).contains(&c.key.name)
                });
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

    // A pod's node satisfies the node affinity of every PV it uses.
    let mut bad = None;
    for (k, pod) in range(w, Kind::Pod) {
        let node = str_at(pod, "/spec/nodeName");
        if node.is_empty() {
            continue;
        }
        let Some(labels) = node_labels(w, node) else {
            continue;
        };
        for claim in objects::pod_claims(pod) {
            let Some(pvc) = w.get(&claim_key(&k.namespace, &claim)) else {
                continue;
            };
            let vn = str_at(&pvc, "/spec/volumeName");
            if vn.is_empty() || !objects::claim_is_bound(&pvc) {
                continue;
            }
            let Some(pv) = w.get(&Kind::Pv.key("", vn)) else {
                continue;
            };
            if !affinity_admits(&pv, &labels) {
                bad = Some(format!(
                    "{} runs on {node}, but its claim {claim} is bound to pv/{vn}, whose node affinity excludes {node}",
                    label(k)
                ));
                break;
            }
        }
        if bad.is_some() {
            break;
        }
    }
    if let Some(d) = bad {
        w.fail(NODE_AFFINITY, d);
    }
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
            let filter = World::seen_filter(watch.kind);
            let expected: Vec<u64> = match w.store.watch_backlog(&filter, watch.from) {
                Ok(evs) => evs
                    .iter()
                    .map(|e| e.revision)
                    .filter(|r| *r <= watch.rev)
                    .collect(),
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
                .store
                .get(&claim_key(ns, name))
                .is_some_and(|c| str_at(&c, "/spec/volumeName") == k.name);
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
    if let Err(d) = replay_check(w) {
        w.fail(REPLAY, d);
    }
}

fn replay_check(w: &World<'_>) -> Result<(), String> {
    let mut state: BTreeMap<Key, Arc<Value>> = BTreeMap::new();
    let mut last = 0;
    for c in w.store.window_after(0) {
        if c.revision != last + 1 {
            return Err(format!("the log jumps from r{last} to r{}", c.revision));
        }
        last = c.revision;
        match c.event_type {
            EventType::Deleted => {
                state.remove(&*c.key);
            }
            _ => {
                let v: Value = serde_json::from_str(&c.json)
                    .map_err(|e| format!("r{} does not parse: {e}", c.revision))?;
                state.insert((*c.key).clone(), Arc::new(v));
            }
        }
    }
    let store = w.store.snapshot();
    for (what, other) in [
        ("the store's objects", &store),
        ("the objects the watches delivered", &w.mirror),
    ] {
        if &state != other {
            let diff = other
                .keys()
                .chain(state.keys())
                .find(|k| state.get(*k) != other.get(*k))
                .map(label)
                .unwrap_or_default();
            return Err(format!(
                "replaying r1..r{last} differs from {what} at {diff}"
            ));
        }
    }
    Ok(())
}

/// A fresh scheduler, given the final state, must not find a node for any Pending pod.
fn schedulable(w: &mut World<'_>) {
    let mut core = Core::new("scheduler");
    for kind in core.watches() {
        let items: Vec<Arc<Value>> = range(w, *kind).map(|(_, v)| v.clone()).collect();
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
