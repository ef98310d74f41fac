//! The assume cache (Kubernetes' `AssumeCache`, §5.3): per object, the informer's version
//! (`api`) and the scheduler's latest, possibly assumed, version (`latest`).
//!
//! Why it exists: between Reserve and the moment the volume controller's writes come back
//! through the watch, the scheduler must already see its own decisions (a PV reserved for a
//! claim), or the next pod's Filter would pick the same PV. Assumed objects keep their original
//! resourceVersion, so the real update — with a higher revision — replaces them, while a replay
//! of an older revision (a relist) cannot wipe them out.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;

/// Why an `assume` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssumeError {
    /// The object is not in the cache.
    NotFound(String),
    /// The assumed object is older than what the cache holds (`... is out of sync`).
    OutOfSync {
        key: String,
        stored: u64,
        assumed: u64,
    },
}

impl std::fmt::Display for AssumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AssumeError::NotFound(k) => write!(f, "{k} not found in assume cache"),
            AssumeError::OutOfSync {
                key,
                stored,
                assumed,
            } => {
                write!(
                    f,
                    "{key} is out of sync (stored: {stored}, assume: {assumed})"
                )
            }
        }
    }
}

/// The resourceVersion as an integer (the comparison Kubernetes' assume cache makes).
pub fn revision_of(meta: &ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// `assumed` is `None` while the latest version is the informer's: an informer update then
/// stores the object once, without a copy.
#[derive(Debug, Clone)]
struct Entry<T> {
    api: T,
    assumed: Option<T>,
}

impl<T> Entry<T> {
    fn latest(&self) -> &T {
        self.assumed.as_ref().unwrap_or(&self.api)
    }
}

/// Keyed by name (PV) or `namespace/name` (PVC).
#[derive(Debug, Clone)]
pub struct AssumeCache<T> {
    entries: BTreeMap<String, Entry<T>>,
    /// Set only by `CoreConfig.assume_cache = false` (the `bonsai race --break assume-cache`
    /// teaching switch): `assume` then keeps the informer version, so decisions use the
    /// informer cache alone.
    disabled: bool,
}

impl<T> Default for AssumeCache<T> {
    fn default() -> Self {
        AssumeCache {
            entries: BTreeMap::new(),
            disabled: false,
        }
    }
}

impl<T: Clone + Metadata<Ty = ObjectMeta>> AssumeCache<T> {
    /// Informer add/update: stored as both versions only if strictly newer than `latest`.
    /// Returns whether the object was taken.
    pub fn handle_apply(&mut self, key: String, obj: T) -> bool {
        match self.entries.get_mut(&key) {
            Some(e) if revision_of(obj.metadata()) <= revision_of(e.latest().metadata()) => false,
            Some(e) => {
                e.api = obj;
                e.assumed = None;
                true
            }
            None => {
                self.entries.insert(
                    key,
                    Entry {
                        api: obj,
                        assumed: None,
                    },
                );
                true
            }
        }
    }

    /// Informer delete.
    pub fn handle_delete(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// A relist: objects not in `keep` disappear.
    pub fn retain_keys(&mut self, keep: &std::collections::BTreeSet<String>) {
        self.entries.retain(|k, _| keep.contains(k));
    }

    /// Switch assuming off (a break switch for the race simulator; never the real driver).
    pub fn set_disabled(&mut self, disabled: bool) {
        self.disabled = disabled;
    }

    /// Replaces `latest` only; refused if `obj` is older than the stored latest.
    /// When disabled, accepted but not stored.
    pub fn assume(&mut self, key: &str, obj: T) -> Result<(), AssumeError> {
        let e = self
            .entries
            .get_mut(key)
            .ok_or_else(|| AssumeError::NotFound(key.to_string()))?;
        if self.disabled {
            return Ok(());
        }
        let stored = revision_of(e.latest().metadata());
        let assumed = revision_of(obj.metadata());
        if assumed < stored {
            return Err(AssumeError::OutOfSync {
                key: key.to_string(),
                stored,
                assumed,
            });
        }
        e.assumed = Some(obj);
        Ok(())
    }

    /// `latest = api`.
    pub fn restore(&mut self, key: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            e.assumed = None;
        }
    }

    /// The latest (possibly assumed) version.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.entries.get(key).map(Entry::latest)
    }

    /// The informer's version.
    pub fn get_api(&self, key: &str) -> Option<&T> {
        self.entries.get(key).map(|e| &e.api)
    }

    /// All latest versions, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.entries.iter().map(|(k, e)| (k, e.latest()))
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolume;

    fn pv(rv: &str, claim: Option<&str>) -> PersistentVolume {
        let mut pv = PersistentVolume::default();
        pv.metadata.name = Some("pv-1".into());
        pv.metadata.resource_version = Some(rv.into());
        if let Some(c) = claim {
            pv.metadata.annotations = Some([("claim".to_string(), c.to_string())].into());
        }
        pv
    }

    #[test]
    fn newer_revision_wins_and_assumed_survives_a_replay() {
        let mut c = AssumeCache::default();
        assert!(c.handle_apply("pv-1".into(), pv("5", None)));
        c.assume("pv-1", pv("5", Some("a"))).unwrap();
        // A relist replays revision 5: ignored, the assumed object stays.
        assert!(!c.handle_apply("pv-1".into(), pv("5", None)));
        assert!(c.get("pv-1").unwrap().metadata.annotations.is_some());
        assert!(c.get_api("pv-1").unwrap().metadata.annotations.is_none());
        // Assuming an older object is refused.
        assert_eq!(
            c.assume("pv-1", pv("4", None)),
            Err(AssumeError::OutOfSync {
                key: "pv-1".into(),
                stored: 5,
                assumed: 4
            })
        );
        // The real update replaces it.
        assert!(c.handle_apply("pv-1".into(), pv("6", Some("b"))));
        assert_eq!(
            c.get("pv-1").unwrap().metadata.resource_version.as_deref(),
            Some("6")
        );
        c.assume("pv-1", pv("6", Some("c"))).unwrap();
        c.restore("pv-1");
        assert_eq!(
            c.get("pv-1")
                .unwrap()
                .metadata
                .annotations
                .as_ref()
                .unwrap()["claim"],
            "b"
        );
    }
}
