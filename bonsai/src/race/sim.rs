//! The world: the real store core (in memory), the actors, the pending deliveries, requests
//! and effects, a virtual clock and one seeded generator that picks every next step.
//!
//! A step is one of: deliver the next watch event to one actor (or its relist), commit one
//! pending request in the store, hand a request's outcome back to its actor, run one kubelet
//! effect (a mount, a container start…), fire an actor's timer (time jumps: a 10 s backoff
//! costs nothing), crash or restart a controller, drop a watch connection (it resumes from its
//! revision), or compact (watchers behind the compaction relist). Every step appends one line
//! to the trace and re-checks the invariants (`invariants`).
//!
//! Why commit and completion are separate steps: "the write committed but its sender crashed
//! (or had not heard yet)" is the interleaving most binding races need.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use apiserver::api::ANN_SELECTED_NODE;
use apiserver::store::core::{Filter, WriteContext};
use apiserver::store::{
    rfc3339, EventType, Key, Precondition, Revision, StoreCore, StoreError, WatchWindow, Write,
};
use serde_json::{json, Value};

use super::actors::{Core, Delivery, KubeReq, Obj, Outcome, Req};
use super::invariants;
use super::objects::{self, label, Kind};
use super::rng::Rng;
use super::scenario::{Break, Check, Command, Scenario, Until};

/// Virtual time starts here (2026-01-01T00:00:00Z); traces print milliseconds since.
pub const EPOCH_MS: u64 = 1_767_225_600_000;
/// Quiescence: nothing but timers left, no binding cycle in flight in the scheduler, and no
/// object other than Events changed for this long (longer than a resync and the longest
/// backoff). Pods the scheduler gave up on are judged by the quiescence invariant "every pod
/// that can be scheduled is scheduled" instead of by waiting for the 5-minute flush.
const SETTLE_MS: u64 = 60_000;
/// While work is pending, a timer at most this far ahead may fire first (backoffs: 1–10 s).
const EARLY_FIRE_MS: u64 = 15_000;

#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub breaks: Vec<Break>,
    /// Keep the trace (off while exploring: only failures are replayed with it).
    pub trace: bool,
    /// "Put a limit on everything": a run that has not settled after this many steps is a
    /// liveness failure.
    pub step_limit: u64,
}

impl Options {
    pub fn new(seed: u64) -> Options {
        Options {
            seed,
            breaks: Vec::new(),
            trace: true,
            step_limit: 50_000,
        }
    }
}

/// An invariant that broke: its sentence, when, and what the state was.
#[derive(Clone, Debug)]
pub struct Failure {
    pub invariant: &'static str,
    pub step: u64,
    pub detail: String,
}

#[derive(Clone, Debug)]
pub enum Verdict {
    /// Every invariant held and every `expect` line held.
    Passed,
    /// An invariant broke (the run stops there).
    Broken(Failure),
    /// The invariants held but an expected outcome did not.
    Unexpected { line: usize, message: String },
}

pub struct RunResult {
    pub trace: String,
    pub verdict: Verdict,
    pub steps: u64,
}

impl RunResult {
    /// FNV-1a over the trace: the determinism check compares these.
    pub fn digest(&self) -> u64 {
        apiserver::api::fnv::fnv1a(self.trace.as_bytes())
    }
}

pub(crate) struct Watch {
    pub kind: Kind,
    /// Everything of `kind` up to this revision has been delivered.
    pub rev: Revision,
    pub relist: bool,
    /// The revision of the last relist, and the events delivered since (the stream check).
    pub from: Revision,
    pub seen: Vec<Revision>,
    pub held: bool,
}

pub(crate) struct Inflight {
    pub id: u64,
    pub req: Req,
    pub key: Key,
    /// The object sent (writes), as JSON.
    pub body: Option<Value>,
    pub outcome: Option<Outcome>,
}

pub(crate) struct Actor {
    pub name: Arc<str>,
    pub agent: Arc<str>,
    pub core: Option<Core>,
    pub watches: Vec<Watch>,
    pub reqs: BTreeMap<u64, Inflight>,
}

impl Actor {
    fn up(&self) -> bool {
        self.core.is_some()
    }
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Deliver(usize, usize),
    Commit(usize, u64),
    Orphan(usize),
    Complete(usize, u64),
    Effect(usize),
    Fire(usize),
    Crash(usize),
    Restart(usize),
    Drop(usize, usize),
    Compact,
}

pub struct World<'s> {
    pub(crate) scn: &'s Scenario,
    opts: Options,
    pub(crate) store: StoreCore,
    /// The current objects, parsed (what the store holds as JSON text).
    pub(crate) mirror: BTreeMap<Key, Arc<Obj>>,
    /// Every event's object, parsed, by revision - 1.
    pub(crate) parsed: Vec<Arc<Obj>>,
    pub(crate) now: u64,
    rng: Rng,
    pub(crate) actors: Vec<Actor>,
    /// Per kind, the revisions of its events, ascending (where each watch's next event is).
    pub(crate) kind_revs: [Vec<Revision>; 7],
    compacted_to: Revision,
    orphans: Vec<(Arc<str>, Inflight)>,
    seq: u64,
    pub(crate) step: u64,
    trace: String,
    uids: u64,
    /// Virtual time of the last request or write about anything but an Event.
    last_change: u64,
    /// Agent → the keys it has committed writes to (`run until committed`).
    committed_by: BTreeMap<String, BTreeSet<Key>>,
    /// PVs whose claimRef the scheduler wrote (its PreBind: "the scheduler chose a node").
    pub(crate) scheduler_claimed: BTreeSet<String>,
    /// Claims created with volumeName and PVs created with claimRef (pre-bound by a user).
    pub(crate) user_bound: BTreeSet<Key>,
    crash_budget: u32,
    drop_budget: u32,
    compact_budget: u32,
    latency_ms: u64,
    pub(crate) failure: Option<Failure>,
    steps_in_run: u64,
    /// Who names whom, for the incremental per-commit invariants.
    pub(crate) index: invariants::Index,
    /// The replay invariant's fold of the log so far.
    pub(crate) replay: invariants::Replay,
}

fn kind_of(req: &Req) -> &'static str {
    match req {
        Req::Sched(r) => match r {
            scheduler::Request::UpdatePersistentVolume(_) => "update",
            scheduler::Request::UpdatePersistentVolumeClaim(_) => "update",
            scheduler::Request::Bind { .. } => "bind",
            scheduler::Request::PatchPodStatus { .. } => "status",
            scheduler::Request::CreateEvent(_) => "event",
            scheduler::Request::PatchEvent { .. } => "event",
        },
        Req::Vc(r) => r.verb(),
        Req::Kube(KubeReq::Status { .. }) => "status",
        Req::Kube(KubeReq::Finish { .. }) => "delete",
    }
}

fn conflict_message(key: &Key) -> String {
    format!(
        "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
        key.qualified_resource(),
        key.name
    )
}

fn not_found_message(key: &Key) -> String {
    format!("{} \"{}\" not found", key.qualified_resource(), key.name)
}

fn rv_in(body: &Value) -> Option<Revision> {
    apiserver::store::core::resource_version_of(body)
}

fn has_finalizers(v: &Value) -> bool {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

impl<'s> World<'s> {
    pub fn new(scn: &'s Scenario, opts: Options) -> World<'s> {
        let mut rng = Rng::new(opts.seed);
        // Swarm testing: each seed switches fault kinds on or off and sizes their budgets.
        let mut budget = |allowed: bool, max: u64| -> u32 {
            if allowed && rng.chance(60) {
                1 + rng.below(max) as u32
            } else {
                0
            }
        };
        let crash_budget = budget(scn.faults.crash, 2);
        let drop_budget = budget(scn.faults.drop_watch, 3);
        let compact_budget = budget(scn.faults.compact, 2);
        let latency_ms = [1, 10, 100][rng.below(3) as usize];
        let actors = scn
            .actors()
            .into_iter()
            .map(|name| {
                let core =
                    Core::with_assume_cache(&name, !opts.breaks.contains(&Break::AssumeCache));
                let watches = Self::fresh_watches(&core);
                Actor {
                    agent: Core::agent(&name).into(),
                    name: name.into(),
                    core: Some(core),
                    watches,
                    reqs: BTreeMap::new(),
                }
            })
            .collect();
        let window = WatchWindow {
            max_age: Duration::from_secs(1 << 40),
            max_events: usize::MAX,
        };
        let mut w = World {
            scn,
            store: StoreCore::new(window),
            mirror: BTreeMap::new(),
            parsed: Vec::new(),
            now: EPOCH_MS,
            rng,
            actors,
            kind_revs: Default::default(),
            compacted_to: 0,
            orphans: Vec::new(),
            seq: 0,
            step: 0,
            trace: String::new(),
            uids: 0,
            last_change: EPOCH_MS,
            committed_by: BTreeMap::new(),
            scheduler_claimed: BTreeSet::new(),
            user_bound: BTreeSet::new(),
            crash_budget,
            drop_budget,
            compact_budget,
            latency_ms,
            failure: None,
            steps_in_run: 0,
            index: Default::default(),
            replay: Default::default(),
            opts,
        };
        if w.opts.trace {
            let breaks: Vec<&str> = w.opts.breaks.iter().map(|b| b.as_str()).collect();
            let _ = writeln!(
                w.trace,
                "# race {} seed {}{}",
                scn.name,
                w.opts.seed,
                if breaks.is_empty() {
                    String::new()
                } else {
                    format!(" break {}", breaks.join(","))
                }
            );
            let _ = writeln!(
                w.trace,
                "# actors: {}; faults: crash x{}, drop-watch x{}, compact x{}; latency <{} ms",
                scn.actors().join(", "),
                w.crash_budget,
                w.drop_budget,
                w.compact_budget,
                w.latency_ms
            );
            let _ = writeln!(
                w.trace,
                "{:>5} {:>8}  {:<20} {:<9} {:<22} detail",
                "step", "t(ms)", "actor", "action", "object"
            );
        }
        w
    }

    fn fresh_watches(core: &Core) -> Vec<Watch> {
        core.watches()
            .iter()
            .map(|k| Watch {
                kind: *k,
                rev: 0,
                relist: true,
                from: 0,
                seen: Vec::new(),
                held: false,
            })
            .collect()
    }

    fn broken(&self, b: Break) -> bool {
        self.opts.breaks.contains(&b)
    }

    pub(crate) fn log(&mut self, actor: &str, action: &str, object: &str, detail: &str) {
        if !self.opts.trace {
            return;
        }
        let _ = writeln!(
            self.trace,
            "{:>5} {:>8}  {:<20} {:<9} {:<22} {}",
            self.step,
            self.now - EPOCH_MS,
            actor,
            action,
            object,
            detail
        )
        .map(|_| ());
        // Trailing spaces when the detail is empty are trimmed so golden files stay clean.
        if detail.is_empty() {
            let t = self.trace.trim_end().len();
            self.trace.truncate(t);
            self.trace.push('\n');
        }
    }

    pub(crate) fn fail(&mut self, invariant: &'static str, detail: String) {
        if self.failure.is_none() {
            self.failure = Some(Failure {
                invariant,
                step: self.step,
                detail,
            });
        }
    }

    // ------------------------------------------------------------------ the store

    /// Applies one write as `agent`; on success records the event, mirrors the object and
    /// checks the invariants.
    fn write(&mut self, agent: &str, w: Write) -> Result<Arc<Obj>, StoreError> {
        self.uids += 1;
        // Only a create uses the uid (the counter still advances on every write, so the uids
        // a seed produces never change).
        let uid = if matches!(w, Write::Create { .. }) {
            format!(
                "{:08x}-0000-4000-8000-{:012x}",
                self.opts.seed as u32, self.uids
            )
        } else {
            String::new()
        };
        let ctx = WriteContext {
            actor: agent.to_string(),
            uid,
        };
        let (prepared, committed) = self.store.apply(w, &ctx, self.now)?;
        // The event's object: one `Obj` shared by the log, the mirror, every delivery and the
        // writer's outcome (create/update return the stored object itself).
        let same = Arc::ptr_eq(&prepared.object, &prepared.result);
        let object = Obj::new(prepared.object);
        let result = if same {
            object.clone()
        } else {
            Obj::new(prepared.result)
        };
        for c in &committed {
            let key: &Key = &c.key;
            let kind = Kind::of(key).expect("the simulator writes known kinds");
            debug_assert_eq!(self.parsed.len() as u64 + 1, c.revision);
            self.parsed.push(object.clone());
            self.kind_revs[kind.index()].push(c.revision);
            if kind != Kind::Event {
                self.last_change = self.now;
            }
            let by = match self.committed_by.get_mut(agent) {
                Some(by) => by,
                None => self.committed_by.entry(agent.to_string()).or_default(),
            };
            if !by.contains(key) {
                by.insert(key.clone());
            }
            if kind == Kind::Pv
                && agent == "bonsai-scheduler"
                && !objects::claim_ref(&object).is_empty()
            {
                self.scheduler_claimed.insert(key.name.clone());
            }
            let prev = if c.event_type == EventType::Deleted {
                self.mirror.remove(key)
            } else {
                match self.mirror.get_mut(key) {
                    Some(slot) => Some(std::mem::replace(slot, object.clone())),
                    None => self.mirror.insert(key.clone(), object.clone()),
                }
            };
            let change = invariants::Change {
                key,
                kind,
                event_type: c.event_type,
                object: &object,
                prev: prev.as_ref(),
                actor: agent,
            };
            invariants::after_commit(self, &change);
        }
        Ok(result)
    }

    /// The current object (the simulator's parsed mirror of the store's objects; the replay
    /// invariant checks that both agree).
    pub(crate) fn get(&self, key: &Key) -> Option<Arc<Obj>> {
        self.mirror.get(key).cloned()
    }

    /// The current object, borrowed.
    pub(crate) fn peek(&self, key: &Key) -> Option<&Obj> {
        self.mirror.get(key).map(|o| &**o)
    }

    fn precondition(&self, body: &Value) -> Option<Precondition> {
        if self.broken(Break::ResourceVersion) {
            return None;
        }
        rv_in(body).map(Precondition::ResourceVersion)
    }

    fn outcome(&self, key: &Key, r: Result<Arc<Obj>, StoreError>) -> Outcome {
        match r {
            Ok(v) => Outcome::Object(v),
            Err(StoreError::Conflict { .. } | StoreError::UidConflict { .. }) => {
                Outcome::Conflict(conflict_message(key))
            }
            Err(StoreError::NotFound { .. }) => Outcome::NotFound(not_found_message(key)),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// PUT on the main resource: status is kept from the stored object (the status
    /// subresource owns it), deletionTimestamp too; removing the last finalizer of an object
    /// being deleted deletes it.
    fn put(&mut self, agent: &str, key: &Key, mut body: Value, status_only: bool) -> Outcome {
        let Some(cur) = self.get(key) else {
            return Outcome::NotFound(not_found_message(key));
        };
        let pre = self.precondition(&body);
        if let Some(Precondition::ResourceVersion(rv)) = &pre {
            if rv_in(&cur) != Some(*rv) {
                return Outcome::Conflict(conflict_message(key));
            }
        }
        if status_only {
            let status = body.get("status").cloned().unwrap_or(Value::Null);
            body = Value::clone(&cur);
            body["status"] = status;
        } else {
            match cur.get("status") {
                Some(s) => body["status"] = s.clone(),
                None => {
                    if let Some(o) = body.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            let dt = cur.pointer("/metadata/deletionTimestamp").cloned();
            if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                match dt {
                    Some(d) => {
                        meta.insert("deletionTimestamp".into(), d);
                    }
                    None => {
                        meta.remove("deletionTimestamp");
                    }
                }
            }
        }
        let deleting = body.pointer("/metadata/deletionTimestamp").is_some();
        let r = if deleting && !has_finalizers(&body) {
            self.write(
                agent,
                Write::Delete {
                    key: key.clone(),
                    precondition: pre,
                },
            )
            .map(|_| {
                let mut last = body.clone();
                last["metadata"]["resourceVersion"] = json!(self.store.revision().to_string());
                Obj::new(Arc::new(last))
            })
        } else {
            self.write(
                agent,
                Write::Update {
                    key: key.clone(),
                    object: body,
                    precondition: pre,
                },
            )
        };
        self.outcome(key, r)
    }

    /// Performs one request against the store, as the API server would answer it.
    fn perform(&mut self, agent: &str, f: &mut Inflight) -> Outcome {
        let key = f.key.clone();
        // The body is sent once: the store takes it (the completion needs only the request).
        let body = f.body.take();
        match &f.req {
            Req::Sched(r) => match r {
                scheduler::Request::UpdatePersistentVolume(_)
                | scheduler::Request::UpdatePersistentVolumeClaim(_) => {
                    self.put(agent, &key, body.unwrap_or_default(), false)
                }
                scheduler::Request::Bind { uid, node, .. } => self.bind(agent, &key, uid, node),
                scheduler::Request::PatchPodStatus { patch, .. } => {
                    let Some(cur) = self.get(&key) else {
                        return Outcome::NotFound(not_found_message(&key));
                    };
                    if !self.broken(Break::ResourceVersion) {
                        if let Some(rv) = rv_in(patch) {
                            if rv_in(&cur) != Some(rv) {
                                return Outcome::Conflict(conflict_message(&key));
                            }
                        }
                    }
                    let mut obj = Value::clone(&cur);
                    let mut p = patch.clone();
                    if let Some(m) = p.as_object_mut() {
                        m.remove("metadata");
                    }
                    apiserver::semantics::patch::merge_patch(&mut obj, &p);
                    let r = self.write(
                        agent,
                        Write::Update {
                            key: key.clone(),
                            object: obj,
                            precondition: None,
                        },
                    );
                    self.outcome(&key, r)
                }
                scheduler::Request::CreateEvent(_) => self.create_event(agent, &key, body),
                scheduler::Request::PatchEvent { patch, .. } => {
                    self.patch_event(agent, &key, patch)
                }
            },
            Req::Vc(r) => match r {
                volume_controller::core::Request::UpdateVolume(_)
                | volume_controller::core::Request::UpdateClaim(_) => {
                    self.put(agent, &key, body.unwrap_or_default(), false)
                }
                volume_controller::core::Request::UpdateVolumeStatus(_)
                | volume_controller::core::Request::UpdateClaimStatus(_) => {
                    self.put(agent, &key, body.unwrap_or_default(), true)
                }
                volume_controller::core::Request::GetClaim { .. } => Outcome::Read(self.get(&key)),
                volume_controller::core::Request::ListPods { namespace } => {
                    let (g, res) = Kind::Pod.resource();
                    let lo = Key::new(g, res, namespace, "");
                    Outcome::List(
                        self.mirror
                            .range(lo..)
                            .take_while(|(k, _)| k.resource == res && &k.namespace == namespace)
                            .map(|(_, v)| v.clone())
                            .collect(),
                    )
                }
                volume_controller::core::Request::CreateEvent(_) => {
                    self.create_event(agent, &key, body)
                }
                volume_controller::core::Request::PatchEvent {
                    count,
                    last_timestamp,
                    ..
                } => {
                    let patch = json!({"count": count, "lastTimestamp": last_timestamp});
                    self.patch_event(agent, &key, &patch)
                }
            },
            Req::Kube(KubeReq::Status {
                status,
                resource_version,
                ..
            }) => {
                let body = json!({"metadata": {"resourceVersion": resource_version.to_string()},
                                  "status": status});
                self.put(agent, &key, body, true)
            }
            Req::Kube(KubeReq::Finish { uid, .. }) => {
                let r = self.write(
                    agent,
                    Write::Delete {
                        key: key.clone(),
                        precondition: Some(Precondition::Uid(uid.clone())),
                    },
                );
                self.outcome(&key, r)
            }
        }
    }

    fn create_event(&mut self, agent: &str, key: &Key, body: Option<Value>) -> Outcome {
        let r = self.write(
            agent,
            Write::Create {
                key: key.clone(),
                object: body.unwrap_or_default(),
            },
        );
        self.outcome(key, r)
    }

    fn patch_event(&mut self, agent: &str, key: &Key, patch: &Value) -> Outcome {
        let Some(cur) = self.get(key) else {
            return Outcome::NotFound(not_found_message(key));
        };
        let mut obj = Value::clone(&cur);
        apiserver::semantics::patch::merge_patch(&mut obj, patch);
        let r = self.write(
            agent,
            Write::Update {
                key: key.clone(),
                object: obj,
                precondition: None,
            },
        );
        self.outcome(key, r)
    }

    /// `POST pods/{name}/binding`, as kube-apiserver's `assignPod`: uid precondition, 409 when
    /// the pod is already assigned or being deleted; sets nodeName and PodScheduled=True.
    fn bind(&mut self, agent: &str, key: &Key, uid: &str, node: &str) -> Outcome {
        let Some(cur) = self.get(key) else {
            return Outcome::NotFound(not_found_message(key));
        };
        let cur_uid = objects::str_at(&cur, "/metadata/uid");
        if !uid.is_empty() && cur_uid != uid {
            return Outcome::Conflict(format!(
                "Operation cannot be fulfilled on pods/binding \"{}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {cur_uid}",
                key.name
            ));
        }
        if cur.pointer("/metadata/deletionTimestamp").is_some() {
            return Outcome::Conflict(format!(
                "Operation cannot be fulfilled on pods/binding \"{}\": pod {} is being deleted, cannot be assigned to a host",
                key.name, key.name
            ));
        }
        let assigned = objects::str_at(&cur, "/spec/nodeName");
        if !assigned.is_empty() {
            return Outcome::Conflict(format!(
                "Operation cannot be fulfilled on pods/binding \"{}\": pod {} is already assigned to node \"{assigned}\"",
                key.name, key.name
            ));
        }
        let mut obj = Value::clone(&cur);
        obj["spec"]["nodeName"] = Value::String(node.into());
        let mut conds: Vec<Value> = obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter(|c| objects::str_at(c, "/type") != "PodScheduled")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        conds.push(json!({"type": "PodScheduled", "status": "True",
                          "lastTransitionTime": rfc3339(self.now / 1000)}));
        obj["status"]["conditions"] = Value::Array(conds);
        match self.write(
            agent,
            Write::Update {
                key: key.clone(),
                object: obj,
                precondition: None,
            },
        ) {
            Ok(_) => {
                Outcome::Status(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
            }
            Err(e) => self.outcome(key, Err(e)),
        }
    }

    // ------------------------------------------------------------------ requests out

    /// Takes every request the actor's core queued and records it as in flight.
    fn drain(&mut self, a: usize) {
        let Some(core) = self.actors[a].core.as_mut() else {
            return;
        };
        let out = core.drain();
        let notes: Vec<String> = core
            .kubelet()
            .map(|k| std::mem::take(&mut k.notes))
            .unwrap_or_default();
        let name = self.actors[a].name.clone();
        for n in notes {
            let (obj, rest) = n
                .strip_prefix("event ")
                .and_then(|r| r.split_once(' '))
                .map(|(k, r)| {
                    (
                        format!("pod/{}", k.split('/').nth(1).unwrap_or(k)),
                        r.to_string(),
                    )
                })
                .unwrap_or_default();
            self.log(&name, "note", &obj, &rest);
        }
        for (id, req) in out {
            let (key, body) = self.describe(&req);
            if Kind::of(&key) != Some(Kind::Event) {
                // Work on real objects (even a write that will conflict) is activity.
                self.last_change = self.now;
            }
            if self.opts.trace {
                let detail = match &body {
                    Some(b) if Kind::of(&key) != Some(Kind::Event) => {
                        let s = objects::summary(Kind::of(&key).unwrap_or(Kind::Event), b);
                        match rv_in(b) {
                            Some(rv) if !matches!(req, Req::Kube(_)) => format!("{s} (read r{rv})"),
                            _ => s,
                        }
                    }
                    _ => match &req {
                        Req::Sched(scheduler::Request::Bind { node, .. }) => format!("to {node}"),
                        Req::Kube(KubeReq::Status {
                            status,
                            resource_version,
                            ..
                        }) => format!(
                            "phase={} (read r{resource_version})",
                            objects::str_at(status, "/phase")
                        ),
                        Req::Kube(KubeReq::Finish { .. }) => "grace 0, uid precondition".into(),
                        _ => String::new(),
                    },
                };
                let detail = format!("{} {detail}", kind_of(&req));
                self.log(&name, "send", &label(&key), detail.trim_end());
            }
            self.seq += 1;
            self.actors[a].reqs.insert(
                self.seq,
                Inflight {
                    id,
                    req,
                    key,
                    body,
                    outcome: None,
                },
            );
        }
    }

    /// The key a request addresses, and the object it sends (as JSON).
    fn describe(&self, req: &Req) -> (Key, Option<Value>) {
        let v = |o: &dyn erased::Ser| o.json();
        match req {
            Req::Sched(r) => match r {
                scheduler::Request::UpdatePersistentVolume(pv) => (
                    Kind::Pv.key("", pv.metadata.name.as_deref().unwrap_or("")),
                    Some(v(pv)),
                ),
                scheduler::Request::UpdatePersistentVolumeClaim(c) => (
                    Kind::Pvc.key(
                        c.metadata.namespace.as_deref().unwrap_or("default"),
                        c.metadata.name.as_deref().unwrap_or(""),
                    ),
                    Some(v(c)),
                ),
                scheduler::Request::Bind {
                    namespace, name, ..
                }
                | scheduler::Request::PatchPodStatus {
                    namespace, name, ..
                } => (Kind::Pod.key(namespace, name), None),
                scheduler::Request::CreateEvent(e) => (
                    Kind::Event.key(
                        e.metadata.namespace.as_deref().unwrap_or("default"),
                        e.metadata.name.as_deref().unwrap_or(""),
                    ),
                    Some(v(&**e)),
                ),
                scheduler::Request::PatchEvent {
                    namespace, name, ..
                } => (Kind::Event.key(namespace, name), None),
            },
            Req::Vc(r) => {
                use volume_controller::core::Request as R;
                match r {
                    R::UpdateVolume(pv) | R::UpdateVolumeStatus(pv) => (
                        Kind::Pv.key("", pv.metadata.name.as_deref().unwrap_or("")),
                        Some(v(pv)),
                    ),
                    R::UpdateClaim(c) | R::UpdateClaimStatus(c) => (
                        Kind::Pvc.key(
                            c.metadata.namespace.as_deref().unwrap_or("default"),
                            c.metadata.name.as_deref().unwrap_or(""),
                        ),
                        Some(v(c)),
                    ),
                    R::GetClaim { namespace, name } => (Kind::Pvc.key(namespace, name), None),
                    R::ListPods { namespace } => (Kind::Pod.key(namespace, ""), None),
                    R::CreateEvent(e) => (
                        Kind::Event.key(
                            e.metadata.namespace.as_deref().unwrap_or("default"),
                            e.metadata.name.as_deref().unwrap_or(""),
                        ),
                        Some(v(e)),
                    ),
                    R::PatchEvent {
                        namespace, name, ..
                    } => (Kind::Event.key(namespace, name), None),
                }
            }
            Req::Kube(KubeReq::Status {
                namespace, name, ..
            })
            | Req::Kube(KubeReq::Finish {
                namespace, name, ..
            }) => (Kind::Pod.key(namespace, name), None),
        }
    }

    // ------------------------------------------------------------------ steps

    fn has_pending(&self, w: &Watch) -> bool {
        let v = &self.kind_revs[w.kind.index()];
        v.partition_point(|r| *r <= w.rev) < v.len()
    }

    /// Every step possible now, with its weight; and whether real work (not only timers in
    /// the future and faults) remains.
    fn enabled(&self, out: &mut Vec<(Step, u64)>) -> bool {
        out.clear();
        let mut busy = false;
        for (a, actor) in self.actors.iter().enumerate() {
            let up = actor.up();
            if up {
                for (wi, w) in actor.watches.iter().enumerate() {
                    if !w.held && (w.relist || self.has_pending(w)) {
                        out.push((Step::Deliver(a, wi), 20));
                        busy = true;
                    }
                }
            }
            for (seq, f) in &actor.reqs {
                if f.outcome.is_none() {
                    out.push((Step::Commit(a, *seq), 20));
                    busy = true;
                } else if up {
                    out.push((Step::Complete(a, *seq), 20));
                    busy = true;
                }
            }
            match &actor.core {
                Some(core) => {
                    if let Core::Kubelet(k) = core {
                        if !k.effects.is_empty() {
                            out.push((Step::Effect(a), 20));
                            busy = true;
                        }
                    }
                    if let Some(t) = core.timer() {
                        if t <= self.now {
                            out.push((Step::Fire(a), 20));
                            busy = true;
                        } else if t - self.now <= EARLY_FIRE_MS {
                            // A backoff may end before a pending delivery arrives; a timer
                            // minutes away (a bind timeout) only fires once all is quiet.
                            out.push((Step::Fire(a), 1));
                        }
                    }
                }
                None => {
                    out.push((Step::Restart(a), 10));
                    busy = true;
                }
            }
        }
        for i in 0..self.orphans.len() {
            out.push((Step::Orphan(i), 10));
            busy = true;
        }
        if busy {
            for (a, actor) in self.actors.iter().enumerate() {
                if !actor.up() {
                    continue;
                }
                if self.crash_budget > 0 && !actor.name.starts_with("kubelet-") {
                    out.push((Step::Crash(a), 1));
                }
                if self.drop_budget > 0 {
                    for (wi, w) in actor.watches.iter().enumerate() {
                        if !w.relist {
                            out.push((Step::Drop(a, wi), 1));
                        }
                    }
                }
            }
            if self.compact_budget > 0 {
                out.push((Step::Compact, 2));
            }
        }
        busy
    }

    fn pick(&mut self, steps: &[(Step, u64)]) -> Step {
        let total: u64 = steps.iter().map(|s| s.1).sum();
        let mut x = self.rng.below(total);
        for (s, w) in steps {
            if x < *w {
                return *s;
            }
            x -= w;
        }
        steps[steps.len() - 1].0
    }

    fn apply(&mut self, step: Step) {
        self.step += 1;
        self.steps_in_run += 1;
        match step {
            Step::Deliver(a, wi) => {
                self.now += self.rng.below(self.latency_ms);
                self.deliver(a, wi);
            }
            Step::Commit(a, seq) => {
                self.now += self.rng.below(self.latency_ms);
                let mut f = self.actors[a].reqs.remove(&seq).expect("enabled");
                let agent = self.actors[a].agent.clone();
                let out = self.perform(&agent, &mut f);
                if self.opts.trace {
                    let name = self.actors[a].name.clone();
                    let detail = format!("{} {}", kind_of(&f.req), out.short());
                    self.log(&name, "commit", &label(&f.key), &detail);
                }
                self.actors[a].reqs.insert(
                    seq,
                    Inflight {
                        outcome: Some(out),
                        ..f
                    },
                );
            }
            Step::Orphan(i) => {
                self.now += self.rng.below(self.latency_ms);
                let (name, mut f) = self.orphans.remove(i);
                let agent = Core::agent(&name);
                let out = self.perform(&agent, &mut f);
                if self.opts.trace {
                    self.log(
                        &name,
                        "commit",
                        &label(&f.key),
                        &format!(
                            "{} {} (its sender crashed: nobody hears)",
                            kind_of(&f.req),
                            out.short()
                        ),
                    );
                }
            }
            Step::Complete(a, seq) => {
                self.now += self.rng.below(self.latency_ms);
                let f = self.actors[a].reqs.remove(&seq).expect("enabled");
                let out = f.outcome.as_ref().expect("committed");
                if self.opts.trace {
                    let name = self.actors[a].name.clone();
                    self.log(&name, "hear", &label(&f.key), &out.short());
                }
                let now = self.now;
                let core = self.actors[a].core.as_mut().expect("up");
                if let Err(e) = core.complete(now, f.id, &f.req, out) {
                    self.fail("every object decodes as its Kubernetes type", e);
                }
                self.drain(a);
            }
            Step::Effect(a) => {
                self.now += self.rng.below(self.latency_ms);
                let now = self.now;
                let name = self.actors[a].name.clone();
                let mount = self.actors[a]
                    .core
                    .as_mut()
                    .and_then(Core::kubelet)
                    .and_then(|k| k.peek_mount());
                if let Some((pod, claims)) = &mount {
                    invariants::kubelet_mount(self, &name, pod, claims);
                }
                let k = self.actors[a]
                    .core
                    .as_mut()
                    .and_then(Core::kubelet)
                    .expect("kubelet");
                if let Some((pod, line)) = k.run_effect(now) {
                    let obj = format!("pod/{}", pod.split('/').nth(1).unwrap_or(&pod));
                    self.log(&name, "effect", &obj, &line);
                }
                self.drain(a);
            }
            Step::Fire(a) => {
                let core = self.actors[a].core.as_mut().expect("up");
                let t = core.timer().expect("enabled");
                if t > self.now {
                    self.now = t;
                }
                let now = self.now;
                core.fire(now);
                let name = self.actors[a].name.clone();
                self.log(&name, "timer", "", "");
                self.drain(a);
            }
            Step::Crash(a) => {
                self.crash_budget = self.crash_budget.saturating_sub(1);
                self.crash(a);
            }
            Step::Restart(a) => self.restart(a),
            Step::Drop(a, wi) => {
                self.drop_budget = self.drop_budget.saturating_sub(1);
                self.drop_watch(a, wi);
            }
            Step::Compact => {
                self.compact_budget = self.compact_budget.saturating_sub(1);
                self.compact();
            }
        }
    }

    fn deliver(&mut self, a: usize, wi: usize) {
        let name = self.actors[a].name.clone();
        let (kind, rev, relist) = {
            let w = &self.actors[a].watches[wi];
            (w.kind, w.rev, w.relist)
        };
        let expired = !relist && rev < self.compacted_to;
        let now = self.now;
        if relist || expired {
            let (g, r) = kind.resource();
            let lo = Key::new(g, r, "", "");
            let items: Vec<Arc<Obj>> = self
                .mirror
                .range(lo..)
                .take_while(|(k, _)| k.group == g && k.resource == r)
                .map(|(_, v)| v.clone())
                .collect();
            let n = items.len();
            let at = self.store.revision();
            let w = &mut self.actors[a].watches[wi];
            w.rev = at;
            w.from = at;
            w.relist = false;
            w.seen.clear();
            if self.opts.trace {
                let why = if expired {
                    format!("410 Gone (r{rev} < compacted r{}); ", self.compacted_to)
                } else {
                    String::new()
                };
                self.log(
                    &name,
                    "relist",
                    kind.resource().1,
                    &format!("{why}{n} items at r{at}"),
                );
            }
            let core = self.actors[a].core.as_mut().expect("up");
            if let Err(e) = core.deliver(now, kind, Delivery::Relisted(items)) {
                self.fail("every object decodes as its Kubernetes type", e);
            }
        } else {
            let revs = &self.kind_revs[kind.index()];
            let next = revs[revs.partition_point(|r| *r <= rev)];
            let in_log = self
                .store
                .window_after(next - 1)
                .next()
                .filter(|c| c.revision == next && Kind::of(&c.key) == Some(kind))
                .map(|c| (c.key.clone(), c.event_type));
            let Some((key, et)) = in_log else {
                self.fail(
                    "watch streams are ordered, unique and gapless",
                    format!(
                        "{name}'s {} watch at r{rev}: the store has no {} event at r{next}",
                        kind.short(),
                        kind.short()
                    ),
                );
                return;
            };
            let object = self.parsed[next as usize - 1].clone();
            if next <= rev {
                self.fail(
                    "watch streams are ordered, unique and gapless",
                    format!(
                        "{name}'s {} watch at r{rev} was offered r{next}",
                        kind.short()
                    ),
                );
                return;
            }
            let w = &mut self.actors[a].watches[wi];
            w.rev = next;
            w.seen.push(next);
            if self.opts.trace {
                let detail = format!(
                    "{} r{next} {}",
                    et.as_str(),
                    objects::summary(kind, &object)
                );
                self.log(&name, "watch", &label(&key), detail.trim_end());
            }
            let d = match et {
                EventType::Deleted => Delivery::Deleted(&object),
                _ => Delivery::Applied(&object),
            };
            let core = self.actors[a].core.as_mut().expect("up");
            if let Err(e) = core.deliver(now, kind, d) {
                self.fail("every object decodes as its Kubernetes type", e);
            }
        }
        self.drain(a);
    }

    fn crash(&mut self, a: usize) {
        let reqs = std::mem::take(&mut self.actors[a].reqs);
        let name = self.actors[a].name.clone();
        let (mut lost, mut flying, mut unheard) = (0, 0, 0);
        for (_, f) in reqs {
            if f.outcome.is_some() {
                unheard += 1;
            } else if self.rng.chance(50) {
                flying += 1;
                self.orphans.push((name.clone(), f));
            } else {
                lost += 1;
            }
        }
        self.actors[a].core = None;
        if self.opts.trace {
            self.log(
                &name,
                "crash",
                "",
                &format!("{lost} unsent requests lost, {flying} still on the wire, {unheard} outcomes never heard"),
            );
        }
    }

    fn restart(&mut self, a: usize) {
        let name = self.actors[a].name.clone();
        let core = Core::with_assume_cache(&name, !self.broken(Break::AssumeCache));
        // A scenario's `hold` is a partition of that connection: it outlives the process.
        let held: Vec<Kind> = self.actors[a]
            .watches
            .iter()
            .filter(|w| w.held)
            .map(|w| w.kind)
            .collect();
        self.actors[a].watches = Self::fresh_watches(&core);
        for w in &mut self.actors[a].watches {
            w.held = held.contains(&w.kind);
        }
        self.actors[a].core = Some(core);
        self.log(&name, "restart", "", "empty caches; every watch relists");
    }

    fn drop_watch(&mut self, a: usize, wi: usize) {
        let name = self.actors[a].name.clone();
        let w = &mut self.actors[a].watches[wi];
        let (kind, rev) = (w.kind, w.rev);
        let detail = if rev < self.compacted_to {
            w.relist = true;
            format!(
                "resume from r{rev}: 410 Gone (compacted at r{}), relist",
                self.compacted_to
            )
        } else {
            format!("reconnects and resumes from r{rev}")
        };
        self.log(&name, "drop", kind.resource().1, &detail);
    }

    fn compact(&mut self) {
        self.compacted_to = self.store.revision();
        let lagging: usize = self
            .actors
            .iter()
            .flat_map(|a| a.watches.iter())
            .filter(|w| !w.relist && w.rev < self.compacted_to)
            .count();
        let detail = format!(
            "events up to r{} compacted; {lagging} watches behind",
            self.compacted_to
        );
        self.log("store", "compact", "", &detail);
    }

    // ------------------------------------------------------------------ running

    /// Steps until `until` holds, or quiescence (then the quiescence invariants run), or a
    /// failure. Returns whether the condition held (None: always true at quiescence).
    fn run(&mut self, until: Option<&Until>) -> bool {
        let mut steps = Vec::new();
        self.steps_in_run = 0;
        loop {
            if self.failure.is_some() {
                return false;
            }
            if let Some(u) = until {
                if self.holds(u) {
                    return true;
                }
            }
            if self.steps_in_run >= self.opts.step_limit {
                self.fail(
                    "the cluster settles (a run ends within its step limit)",
                    format!("still busy after {} steps", self.steps_in_run),
                );
                return false;
            }
            let busy = self.enabled(&mut steps);
            if busy {
                let s = self.pick(&steps);
                self.apply(s);
                continue;
            }
            // Only timers in the future are left: settle, or jump to the earliest.
            let next = self
                .actors
                .iter()
                .enumerate()
                .filter_map(|(i, a)| a.core.as_ref().and_then(Core::timer).map(|t| (t, i)))
                .min();
            let binding = self.actors.iter().any(|a| match &a.core {
                Some(Core::Scheduler(s)) => s.queue_sizes().3 > 0,
                _ => false,
            });
            match next {
                Some((t, a)) if binding || t.saturating_sub(self.last_change) < SETTLE_MS => {
                    self.apply(Step::Fire(a));
                }
                _ => {
                    self.log("", "quiescent", "", "");
                    invariants::at_quiescence(self);
                    return until.is_none();
                }
            }
        }
    }

    fn holds(&self, u: &Until) -> bool {
        match u {
            Until::Pending { actor, key } => {
                self.actors.iter().filter(|a| *a.name == **actor).any(|a| {
                    a.reqs
                        .values()
                        .any(|f| f.outcome.is_none() && &f.key == key)
                })
            }
            Until::Committed { actor, key } => self
                .committed_by
                .get(&Core::agent(actor))
                .is_some_and(|by| by.contains(key)),
            Until::Check(c) => self.holds_now(c),
        }
    }

    /// `self.check(c).is_ok()` without building the messages (asked after every step of a
    /// `run until`).
    fn holds_now(&self, c: &Check) -> bool {
        let passes = |kind: Kind, key: &Key, tests: &[super::scenario::FieldTest]| {
            self.peek(key).is_some_and(|obj| {
                tests
                    .iter()
                    .all(|t| t.matches(&objects::field(kind, obj, &t.field).unwrap_or_default()))
            })
        };
        match c {
            Check::Fields { kind, key, tests } => passes(*kind, key, tests),
            Check::Absent { key } => self.peek(key).is_none(),
            Check::Exactly { n, objects, tests } => {
                objects
                    .iter()
                    .filter(|(kind, key)| passes(*kind, key, tests))
                    .count()
                    == *n
            }
        }
    }

    /// Evaluates an assertion against the store: Ok, or what was found instead.
    pub(crate) fn check(&self, c: &Check) -> Result<(), String> {
        let test_obj =
            |kind: Kind, key: &Key, tests: &[super::scenario::FieldTest]| -> Result<(), String> {
                let Some(obj) = self.get(key) else {
                    return Err(format!("{} does not exist", label(key)));
                };
                for t in tests {
                    let actual = objects::field(kind, &obj, &t.field).unwrap_or_default();
                    if !t.matches(&actual) {
                        return Err(format!(
                            "{} {}={:?}, expected {t}",
                            label(key),
                            t.field,
                            actual
                        ));
                    }
                }
                Ok(())
            };
        match c {
            Check::Fields { kind, key, tests } => test_obj(*kind, key, tests),
            Check::Absent { key } => match self.get(key) {
                None => Ok(()),
                Some(o) => Err(format!(
                    "{} still exists ({})",
                    label(key),
                    objects::summary(Kind::of(key).unwrap_or(Kind::Event), &o)
                )),
            },
            Check::Exactly { n, objects, tests } => {
                let mut passed = Vec::new();
                let mut why = Vec::new();
                for (kind, key) in objects {
                    match test_obj(*kind, key, tests) {
                        Ok(()) => passed.push(label(key)),
                        Err(e) => why.push(e),
                    }
                }
                if passed.len() == *n {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of them passed ({}), expected exactly {n}; {}",
                        passed.len(),
                        passed.join(", "),
                        why.join("; ")
                    ))
                }
            }
        }
    }

    /// A user's write (kubectl), committed at once.
    fn kubectl(&mut self, line: usize, cmd: &Command) -> Result<(), String> {
        self.step += 1;
        match cmd {
            Command::Create { kind, key, object } => {
                if (*kind == Kind::Pvc && !objects::str_at(object, "/spec/volumeName").is_empty())
                    || (*kind == Kind::Pv && object.pointer("/spec/claimRef").is_some())
                {
                    self.user_bound.insert(key.clone());
                }
                let detail = objects::summary(*kind, object);
                match self.write(
                    "kubectl",
                    Write::Create {
                        key: key.clone(),
                        object: object.clone(),
                    },
                ) {
                    Ok(v) => {
                        let rv = objects::str_at(&v, "/metadata/resourceVersion").to_string();
                        self.log(
                            "kubectl",
                            "create",
                            &label(key),
                            &format!("r{rv} {detail}").trim_end().to_string(),
                        );
                        Ok(())
                    }
                    Err(e) => Err(format!("line {line}: {e}")),
                }
            }
            Command::Delete { kind, key } => {
                let Some(cur) = self.get(key) else {
                    return Err(format!("line {line}: {} not found", label(key)));
                };
                // Graceful deletion: a pod on a node waits for its kubelet; finalizers keep
                // claims and volumes until their protection controllers release them.
                let on_node = *kind == Kind::Pod
                    && !objects::str_at(&cur, "/spec/nodeName").is_empty()
                    && self.scn.kubelets;
                let r = if on_node || has_finalizers(&cur) {
                    let mut o = Value::clone(&cur);
                    if o.pointer("/metadata/deletionTimestamp").is_none() {
                        o["metadata"]["deletionTimestamp"] =
                            json!(rfc3339(self.now / 1000 + if on_node { 30 } else { 0 }));
                        if on_node {
                            o["metadata"]["deletionGracePeriodSeconds"] = json!(30);
                        }
                    }
                    self.write(
                        "kubectl",
                        Write::Update {
                            key: key.clone(),
                            object: o,
                            precondition: None,
                        },
                    )
                    .map(|_| "deletionTimestamp set")
                } else {
                    self.write(
                        "kubectl",
                        Write::Delete {
                            key: key.clone(),
                            precondition: None,
                        },
                    )
                    .map(|_| "deleted")
                };
                match r {
                    Ok(what) => {
                        let rev = self.store.revision();
                        self.log("kubectl", "delete", &label(key), &format!("r{rev} {what}"));
                        Ok(())
                    }
                    Err(e) => Err(format!("line {line}: {e}")),
                }
            }
            _ => Ok(()),
        }
    }

    fn actor_index(&self, name: &str) -> usize {
        self.actors
            .iter()
            .position(|a| &*a.name == name)
            .expect("the parser checked actor names")
    }

    /// Runs the whole scenario.
    pub fn run_script(mut self) -> RunResult {
        let scn = self.scn;
        for n in &scn.nodes {
            let labels = BTreeMap::new();
            let key = Kind::Node.key("", n);
            self.step += 1;
            if let Err(e) = self.write(
                "kubectl",
                Write::Create {
                    key: key.clone(),
                    object: objects::node(n, &labels),
                },
            ) {
                self.fail("the scenario's objects can be created", e.to_string());
            }
            self.log("kubectl", "create", &label(&key), "Ready");
        }
        let mut verdict = None;
        for (line, cmd) in &scn.script {
            if self.failure.is_some() {
                break;
            }
            match cmd {
                Command::Create { .. } | Command::Delete { .. } => {
                    if let Err(e) = self.kubectl(*line, cmd) {
                        verdict = Some(Verdict::Unexpected {
                            line: *line,
                            message: e,
                        });
                        break;
                    }
                }
                Command::Run(until) => {
                    let held = self.run(until.as_ref());
                    if until.is_some() && !held && self.failure.is_none() {
                        self.log("", "note", "", &format!("line {line}: the condition never held under this seed; the script goes on"));
                    }
                }
                Command::Crash(a) => {
                    let i = self.actor_index(a);
                    self.step += 1;
                    if self.actors[i].up() {
                        self.crash(i);
                    }
                }
                Command::Restart(a) => {
                    let i = self.actor_index(a);
                    self.step += 1;
                    if !self.actors[i].up() {
                        self.restart(i);
                    }
                }
                Command::Compact => {
                    self.step += 1;
                    self.compact();
                }
                Command::DropWatch(a, k) | Command::Hold(a, k) | Command::Release(a, k) => {
                    let i = self.actor_index(a);
                    let Some(wi) = self.actors[i].watches.iter().position(|w| w.kind == *k) else {
                        verdict = Some(Verdict::Unexpected {
                            line: *line,
                            message: format!("{a} does not watch {}s", k.short()),
                        });
                        break;
                    };
                    self.step += 1;
                    match cmd {
                        Command::DropWatch(..) => self.drop_watch(i, wi),
                        Command::Hold(..) => {
                            self.actors[i].watches[wi].held = true;
                            self.log(a, "hold", &format!("{}s", k.short()), "deliveries paused");
                        }
                        _ => {
                            self.actors[i].watches[wi].held = false;
                            self.log(
                                a,
                                "release",
                                &format!("{}s", k.short()),
                                "deliveries resume",
                            );
                        }
                    }
                }
                Command::Expect(c) => {
                    let r = self.check(c);
                    let text = scn
                        .text
                        .lines()
                        .nth(line - 1)
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    match r {
                        Ok(()) => self.log("", "expect", "", &format!("ok: {text}")),
                        Err(e) => {
                            self.log("", "expect", "", &format!("FAILED: {text}: {e}"));
                            verdict = Some(Verdict::Unexpected {
                                line: *line,
                                message: format!("{text}: {e}"),
                            });
                            break;
                        }
                    }
                }
            }
        }
        let verdict = match self.failure.take() {
            Some(f) => Verdict::Broken(f),
            None => verdict.unwrap_or(Verdict::Passed),
        };
        RunResult {
            trace: self.trace,
            verdict,
            steps: self.step,
        }
    }

    /// The ANN_SELECTED_NODE import is used by invariants through objects; keep the name
    /// reachable for readers of this file.
    #[allow(dead_code)]
    const SELECTED_NODE: &'static str = ANN_SELECTED_NODE;

    pub(crate) fn seen_filter(kind: Kind) -> Filter {
        let (g, r) = kind.resource();
        Filter {
            group: g.into(),
            resource: r.into(),
            ..Default::default()
        }
    }
}

/// Serialising any core's typed request object to JSON.
mod erased {
    pub trait Ser {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

/// Runs scenario `scn` with `opts`.
pub fn run(scn: &Scenario, opts: Options) -> RunResult {
    World::new(scn, opts).run_script()
}
