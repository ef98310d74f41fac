//! Events as core/v1 Event objects, recorded the way client-go's `EventRecorder` and its
//! correlator do: the first occurrence is created as `<object>.<hex nanos>` in the object's
//! namespace (`default` for cluster-scoped PVs) with `count: 1`; an identical repeat (same
//! object, type, reason, message) bumps `count` and `lastTimestamp` of that same Event with a
//! merge patch, so `kubectl describe` shows `(x3 over 30s)`.
//!
//! Not reproduced: the correlator's spam filter (a token bucket per object) and its
//! aggregation of >10 similar-but-different messages into "(combined from similar events)".

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::types::{Millis, Request};

/// `source.component` and `reportingComponent` of every event this controller records.
pub const COMPONENT: &str = "persistentvolume-controller";

/// How many distinct events the correlator remembers (client-go's LRU size).
const CACHE_SIZE: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EventKey {
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    type_: String,
    reason: String,
    message: String,
}

#[derive(Clone, Debug)]
struct Record {
    event: Event,
    /// A create or patch for this event is in flight.
    busy: bool,
    /// The count changed while busy; send another patch when the request completes.
    dirty: bool,
    last_use: u64,
}

/// The event recorder: turns `record` calls into Create/Patch requests.
#[derive(Debug, Default)]
pub struct Recorder {
    records: BTreeMap<EventKey, Record>,
    /// last_use → key, to evict the least recently used record.
    lru: BTreeMap<u64, EventKey>,
    seq: u64,
    pub recorded: u64,
}

/// What the recorder wants sent. `key` identifies the record for the completion.
pub struct EventRequest {
    pub handle: EventHandle,
    pub request: Request,
}

/// Opaque handle to a recorded event, returned with its request.
#[derive(Clone, Debug)]
pub struct EventHandle(EventKey);

impl Recorder {
    /// Records one occurrence of an event about `involved`.
    pub fn record(
        &mut self,
        now: Millis,
        involved: ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) -> Option<EventRequest> {
        self.recorded += 1;
        self.seq += 1;
        let key = EventKey {
            kind: involved.kind.clone().unwrap_or_default(),
            namespace: involved.namespace.clone().unwrap_or_default(),
            name: involved.name.clone().unwrap_or_default(),
            uid: involved.uid.clone().unwrap_or_default(),
            type_: type_.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let seq = self.seq;
        if let Some(rec) = self.records.get_mut(&key) {
            self.lru.remove(&rec.last_use);
            rec.last_use = seq;
            self.lru.insert(seq, key.clone());
            let count = rec.event.count.unwrap_or(1) + 1;
            rec.event.count = Some(count);
            rec.event.last_timestamp = Some(now.to_time());
            if rec.busy {
                rec.dirty = true;
                return None;
            }
            rec.busy = true;
            return Some(EventRequest {
                handle: EventHandle(key),
                request: patch_of(&rec.event),
            });
        }
        // New event. Names must be unique per namespace: client-go uses UnixNano of the
        // recording time; `seq` disambiguates events recorded in the same millisecond.
        let nanos = now.0 as u128 * 1_000_000 + (seq % 1_000_000) as u128;
        let namespace = match involved.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => "default".to_string(),
        };
        let t = now.to_time();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", key.name, nanos)),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            first_timestamp: Some(t.clone()),
            last_timestamp: Some(t),
            count: Some(1),
            type_: Some(type_.to_string()),
            source: Some(EventSource {
                component: Some(COMPONENT.to_string()),
                host: None,
            }),
            reporting_component: Some(COMPONENT.to_string()),
            reporting_instance: Some(String::new()),
            ..Default::default()
        };
        if self.records.len() >= CACHE_SIZE {
            if let Some((_, old)) = self.lru.pop_first() {
                self.records.remove(&old);
            }
        }
        self.lru.insert(seq, key.clone());
        self.records.insert(
            key.clone(),
            Record {
                event: event.clone(),
                busy: true,
                dirty: false,
                last_use: seq,
            },
        );
        Some(EventRequest {
            handle: EventHandle(key),
            request: Request::CreateEvent(event),
        })
    }

    /// The create/patch for `handle` finished. `ok = false` with `not_found = true` means the
    /// Event vanished (expired): re-create it with the current count, as client-go does.
    pub fn completed(
        &mut self,
        handle: &EventHandle,
        ok: bool,
        not_found: bool,
    ) -> Option<Request> {
        let rec = self.records.get_mut(&handle.0)?;
        rec.busy = false;
        if !ok && not_found {
            rec.busy = true;
            rec.dirty = false;
            let mut ev = rec.event.clone();
            ev.metadata.resource_version = None;
            return Some(Request::CreateEvent(ev));
        }
        if !ok {
            // Dropped, as client-go drops events it cannot write after its retries.
            rec.dirty = false;
            return None;
        }
        if rec.dirty {
            rec.dirty = false;
            rec.busy = true;
            return Some(patch_of(&rec.event));
        }
        None
    }
}

fn patch_of(ev: &Event) -> Request {
    Request::PatchEvent {
        namespace: ev.metadata.namespace.clone().unwrap_or_default(),
        name: ev.metadata.name.clone().unwrap_or_default(),
        count: ev.count.unwrap_or(1),
        last_timestamp: ev
            .last_timestamp
            .clone()
            .unwrap_or_else(|| Millis(0).to_time()),
    }
}
