//! An in-memory model of the API server's behaviour for the objects the volume controller
//! writes: one global revision counter, resourceVersion preconditions on every update (409
//! Conflict on mismatch), status subresources, deletion once the last finalizer is removed
//! from an object being deleted, Events. Used by the table tests and by the two-replica
//! test; deterministic, so a seeded interleaving replays exactly.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use super::cache::meta_key;
use super::types::{Completion, Request, WatchEvent};

/// A change the model committed, to be delivered to watchers.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Change {
    Volume(WatchEvent<PersistentVolume>),
    Claim(WatchEvent<PersistentVolumeClaim>),
    Class(WatchEvent<StorageClass>),
    Pod(WatchEvent<Pod>),
}

#[derive(Default, Debug, Clone)]
pub struct ModelApi {
    pub revision: u64,
    pub volumes: BTreeMap<String, PersistentVolume>,
    pub claims: BTreeMap<String, PersistentVolumeClaim>,
    pub classes: BTreeMap<String, StorageClass>,
    pub pods: BTreeMap<String, Pod>,
    pub events: BTreeMap<String, Event>,
    /// Every committed change, in order.
    pub log: Vec<Change>,
}

fn rv(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    m.resource_version.as_deref().unwrap_or("")
}

impl ModelApi {
    fn next_rv(&mut self) -> String {
        self.revision += 1;
        self.revision.to_string()
    }

    /// Creates (or replaces, as a test fixture) a PV; a uid is given if missing.
    pub fn put_volume(&mut self, mut pv: PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        pv.metadata.resource_version = Some(self.next_rv());
        pv.metadata
            .uid
            .get_or_insert_with(|| format!("uid-pv-{name}"));
        self.volumes.insert(name, pv.clone());
        self.log.push(Change::Volume(WatchEvent::Applied(pv)));
    }

    pub fn put_claim(&mut self, mut c: PersistentVolumeClaim) {
        let key = meta_key(&c.metadata);
        c.metadata.resource_version = Some(self.next_rv());
        c.metadata
            .uid
            .get_or_insert_with(|| format!("uid-pvc-{key}"));
        self.claims.insert(key, c.clone());
        self.log.push(Change::Claim(WatchEvent::Applied(c)));
    }

    pub fn put_class(&mut self, mut sc: StorageClass) {
        sc.metadata.resource_version = Some(self.next_rv());
        self.classes
            .insert(sc.metadata.name.clone().unwrap_or_default(), sc.clone());
        self.log.push(Change::Class(WatchEvent::Applied(sc)));
    }

    pub fn put_pod(&mut self, mut p: Pod) {
        p.metadata.resource_version = Some(self.next_rv());
        self.pods.insert(meta_key(&p.metadata), p.clone());
        self.log.push(Change::Pod(WatchEvent::Applied(p)));
    }

    pub fn delete_pod(&mut self, key: &str) {
        if let Some(p) = self.pods.remove(key) {
            self.revision += 1;
            self.log.push(Change::Pod(WatchEvent::Deleted(p)));
        }
    }

    /// Deletes a claim as the API server would: with finalizers it only gets a
    /// deletionTimestamp.
    pub fn delete_claim(
        &mut self,
        key: &str,
        now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    ) {
        let Some(mut c) = self.claims.get(key).cloned() else {
            return;
        };
        if c.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty())
        {
            c.metadata.deletion_timestamp.get_or_insert(now);
            self.put_claim(c);
        } else {
            self.claims.remove(key);
            self.revision += 1;
            self.log.push(Change::Claim(WatchEvent::Deleted(c)));
        }
    }

    /// Deletes a volume (same finalizer rule).
    pub fn delete_volume(
        &mut self,
        name: &str,
        now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    ) {
        let Some(mut v) = self.volumes.get(name).cloned() else {
            return;
        };
        if v.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty())
        {
            v.metadata.deletion_timestamp.get_or_insert(now);
            self.put_volume(v);
        } else {
            self.volumes.remove(name);
            self.revision += 1;
            self.log.push(Change::Volume(WatchEvent::Deleted(v)));
        }
    }

    /// Performs one request of the controller.
    pub fn apply(&mut self, req: &Request) -> Completion {
        match req {
            Request::UpdateVolume(pv) | Request::UpdateVolumeStatus(pv) => {
                let name = pv.metadata.name.clone().unwrap_or_default();
                let Some(cur) = self.volumes.get(&name).cloned() else {
                    return Completion::NotFound;
                };
                if rv(&pv.metadata) != rv(&cur.metadata) {
                    return Completion::Conflict;
                }
                let mut new = if matches!(req, Request::UpdateVolume(_)) {
                    let mut n = pv.clone();
                    n.status = cur.status.clone();
                    // Immutable/server-owned metadata.
                    n.metadata.uid = cur.metadata.uid.clone();
                    n.metadata.deletion_timestamp = cur.metadata.deletion_timestamp.clone();
                    n
                } else {
                    let mut n = cur.clone();
                    n.status = pv.status.clone();
                    n
                };
                new.metadata.resource_version = Some(self.next_rv());
                if new.metadata.deletion_timestamp.is_some()
                    && new
                        .metadata
                        .finalizers
                        .as_ref()
                        .is_none_or(|f| f.is_empty())
                {
                    self.volumes.remove(&name);
                    self.log
                        .push(Change::Volume(WatchEvent::Deleted(new.clone())));
                } else {
                    self.volumes.insert(name, new.clone());
                    self.log
                        .push(Change::Volume(WatchEvent::Applied(new.clone())));
                }
                Completion::Volume(new)
            }
            Request::UpdateClaim(c) | Request::UpdateClaimStatus(c) => {
                let key = meta_key(&c.metadata);
                let Some(cur) = self.claims.get(&key).cloned() else {
                    return Completion::NotFound;
                };
                if rv(&c.metadata) != rv(&cur.metadata) {
                    return Completion::Conflict;
                }
                let mut new = if matches!(req, Request::UpdateClaim(_)) {
                    let mut n = c.clone();
                    n.status = cur.status.clone();
                    n.metadata.uid = cur.metadata.uid.clone();
                    n.metadata.deletion_timestamp = cur.metadata.deletion_timestamp.clone();
                    n
                } else {
                    let mut n = cur.clone();
                    n.status = c.status.clone();
                    n
                };
                new.metadata.resource_version = Some(self.next_rv());
                if new.metadata.deletion_timestamp.is_some()
                    && new
                        .metadata
                        .finalizers
                        .as_ref()
                        .is_none_or(|f| f.is_empty())
                {
                    self.claims.remove(&key);
                    self.log
                        .push(Change::Claim(WatchEvent::Deleted(new.clone())));
                } else {
                    self.claims.insert(key, new.clone());
                    self.log
                        .push(Change::Claim(WatchEvent::Applied(new.clone())));
                }
                Completion::Claim(new)
            }
            Request::GetClaim { namespace, name } => {
                Completion::ClaimRead(self.claims.get(&format!("{namespace}/{name}")).cloned())
            }
            Request::ListPods { namespace } => Completion::PodList(
                self.pods
                    .values()
                    .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
                    .cloned()
                    .collect(),
            ),
            Request::CreateEvent(e) => {
                let key = meta_key(&e.metadata);
                let mut e = e.clone();
                e.metadata.resource_version = Some(self.next_rv());
                self.events.insert(key, e.clone());
                Completion::Event(e)
            }
            Request::PatchEvent {
                namespace,
                name,
                count,
                last_timestamp,
            } => {
                let key = format!("{namespace}/{name}");
                let rev = self.next_rv();
                let Some(e) = self.events.get_mut(&key) else {
                    return Completion::NotFound;
                };
                e.count = Some(*count);
                e.last_timestamp = Some(last_timestamp.clone());
                e.metadata.resource_version = Some(rev);
                Completion::Event(e.clone())
            }
        }
    }

    /// Events as "Type Reason Message" on `kind/name`, sorted by name of the event object.
    pub fn event_lines(&self) -> Vec<String> {
        self.events
            .values()
            .map(|e| {
                format!(
                    "{} {} {}: {}",
                    e.type_.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or(""),
                    e.involved_object.name.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("")
                )
            })
            .collect()
    }
}
