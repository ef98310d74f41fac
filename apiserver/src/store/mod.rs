//! The event-sourced store: one global revision, an append-only log of events, the current
//! objects derived from it, watches as cursors over the log, and history.
//!
//! Every committed write appends exactly one [`Event`] (`ADDED`, `MODIFIED` or `DELETED`, with
//! the key, the object — for `DELETED` its last state —, the actor and the time) and updates the
//! current object in the same atomic backend transaction. `metadata.resourceVersion` is the
//! revision of the object's last change; a list's resourceVersion is the store's revision at the
//! moment of the read. Object bodies are kept exactly as the API layer accepted them (JSON, no
//! typed round trip); the store only sets `metadata.uid`, `metadata.creationTimestamp` and
//! `metadata.resourceVersion`.
//!
//! # Layout
//! - `mod.rs`    — the vocabulary: [`Key`], [`Event`], [`Precondition`], [`StoreError`], the
//!                 query types, and the mapping of store errors to Kubernetes `Status`.
//! - `selector`  — label and field selectors (Kubernetes syntax, error texts, selectable fields).
//! - `core`      — [`StoreCore`]: the synchronous, deterministic heart (revisions,
//!                 preconditions, the watch window, list snapshots). No tokio, no clock: `now`
//!                 and uids are passed in, so the simulator can drive the very same code.
//! - `codec`     — the one place that encodes the on-disk event envelope (bincode 2 header,
//!                 JSON body, CRC-32).
//! - `backend`   — the small [`Backend`] trait and its implementations: memory (always), sled
//!                 and redb (feature `server`).
//! - `driver`    — (feature `server`) [`Store`]: the handle. Writers prepare their writes
//!                 against the core on their own threads and queue them; a committer thread
//!                 writes what is queued as one group, one flush per group (group commit,
//!                 gathered to a useful size under load; relaxed mode: a sync thread, once a
//!                 second), then events fan out as shared entries into bounded per-watcher
//!                 queues.
//!
//! Architecture Invariant: the current objects are a pure function of the log: on disk there is
//! nothing but the log (and two numbers), and `Store::open` derives the objects from it after
//! checking it (each event where its revision says, no gaps, every envelope's CRC), refusing a
//! damaged store.

pub mod backend;
pub mod codec;
pub mod core;
pub mod selector;

#[cfg(feature = "server")]
mod driver;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::backend::{Backend, BackendError, MemoryBackend};
pub use self::core::{ListTexts, Prepared, StoreCore, Write};
pub use self::selector::{
    parse_field_selector, parse_label_selector, FieldSelector, LabelSelector, SelectorError,
};

#[cfg(feature = "server")]
pub use self::driver::{Store, StoreStats, Watcher, Written};

/// A position in the cluster's history. Each committed write gets the next one; it doubles as
/// every object's `metadata.resourceVersion`. Revision 0 is the empty store.
pub type Revision = u64;

/// Where an object lives: `group` is `""` for the core group, `resource` the lowercase plural
/// (`persistentvolumes`), `namespace` is `""` for cluster-scoped objects.
///
/// The order (group, resource, namespace, name), each compared as strings, is also the list
/// order, which is kube-apiserver's order (etcd keys `/registry/<resource>/<namespace>/<name>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

/// `str` order, inlined: keys are short and mostly share their first three parts, and a B-tree
/// search over the store's keys makes dozens of comparisons — four `memcmp` calls each were a
/// tenth of the writer's time.
#[inline]
fn cmp_str(a: &str, b: &str) -> std::cmp::Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_be_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    while i < n {
        if a[i] != b[i] {
            return a[i].cmp(&b[i]);
        }
        i += 1;
    }
    a.len().cmp(&b.len())
}

impl Ord for Key {
    /// Exactly the derived order of the four fields (`str` order each), only faster.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_str(&self.group, &other.group)
            .then_with(|| cmp_str(&self.resource, &other.resource))
            .then_with(|| cmp_str(&self.namespace, &other.namespace))
            .then_with(|| cmp_str(&self.name, &other.name))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Key {
    pub fn new(group: &str, resource: &str, namespace: &str, name: &str) -> Key {
        Key {
            group: group.to_string(),
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// `resource` or `resource.group`, as kube-apiserver names a resource in messages.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// Rejects keys that could not round-trip through a URL path or our on-disk key encoding.
    /// Per-kind name rules (DNS subdomain, DNS label…) are the API layer's; this is the floor
    /// every key must clear (kube-apiserver's path-segment rule plus non-empty parts).
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |what: &str, why: String| {
            Err(StoreError::InvalidKey(format!(
                "invalid {what} in key {self}: {why}"
            )))
        };
        if self.resource.is_empty() {
            return bad("resource", "must not be empty".into());
        }
        if !self
            .resource
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad(
                "resource",
                format!(
                    "{:?} must consist of lower case alphanumeric characters or '-'",
                    self.resource
                ),
            );
        }
        if !self
            .group
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return bad(
                "group",
                format!(
                    "{:?} must consist of lower case alphanumeric characters, '-' or '.'",
                    self.group
                ),
            );
        }
        if !self.namespace.is_empty() {
            let ns = &self.namespace;
            let ok = ns.len() <= 63
                && ns
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !ns.starts_with('-')
                && !ns.ends_with('-');
            if !ok {
                return bad(
                    "namespace",
                    format!(
                        "{ns:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric \
                         characters or '-', and must start and end with an alphanumeric character"
                    ),
                );
            }
        }
        let name = &self.name;
        if name.is_empty() {
            return bad("name", "name must not be empty".into());
        }
        if name.len() > 253 {
            return bad(
                "name",
                format!("must be no more than 253 characters (has {})", name.len()),
            );
        }
        if name == "." || name == ".." {
            return bad("name", format!("may not be '{name}'"));
        }
        for forbidden in ['/', '%'] {
            if name.contains(forbidden) {
                return bad("name", format!("{name:?} may not contain '{forbidden}'"));
            }
        }
        if name.chars().any(|c| c.is_control()) {
            return bad(
                "name",
                format!("{name:?} may not contain control characters"),
            );
        }
        Ok(())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.qualified_resource())?;
        if !self.namespace.is_empty() {
            write!(f, " {}/{}", self.namespace, self.name)
        } else {
            write!(f, " {}", self.name)
        }
    }
}

/// What a committed write did to its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "ADDED")]
    Added,
    #[serde(rename = "MODIFIED")]
    Modified,
    #[serde(rename = "DELETED")]
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed write: the unit of the log, of watches and of history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub revision: Revision,
    pub event_type: EventType,
    pub key: Key,
    /// The object after the write; for `DELETED` its last state, with `metadata.resourceVersion`
    /// set to the deletion's revision (what kube-apiserver sends in a DELETED watch event).
    #[serde(with = "arc_value")]
    pub object: Arc<Value>,
    /// Who wrote it: the component's user agent or field manager (`kubectl`, `bonsai-scheduler`…).
    pub actor: String,
    /// RFC 3339, seconds precision (`2026-01-02T03:04:05Z`).
    pub time: String,
}

/// Serde for `Arc<Value>` (serde's `rc` feature is not enabled in the workspace).
mod arc_value {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(v: &Arc<Value>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Value>, D::Error> {
        Value::deserialize(d).map(Arc::new)
    }
}

/// What a write expects of the stored object. A mismatch is a [`StoreError::Conflict`] (or
/// [`StoreError::UidConflict`]), an ordinary outcome the caller handles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// The stored object's resourceVersion must be exactly this.
    ResourceVersion(Revision),
    /// The stored object's metadata.uid must be exactly this.
    Uid(String),
}

/// Which backend keeps the log and the objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendKind {
    /// Nothing on disk; for tests and the simulator.
    Memory,
    /// sled 0.34 (one tree, atomic batches, `flush` for durability).
    Sled,
    /// redb (one write transaction per group commit, `Durability::Immediate`).
    Redb,
}

impl BackendKind {
    /// The default durable backend for a new store. Both durable backends pass the crash
    /// torture; redb is the default because it is maintained, has no open corruption reports,
    /// and costs less per write (README "The store" has the figures).
    pub const DEFAULT: BackendKind = BackendKind::Redb;

    /// The file a redb store lives in, inside a data directory's store directory.
    pub const REDB_FILE: &'static str = "bonsai.redb";

    /// Where a store of this backend lives in a data directory's store directory `dir`: a
    /// sled store is the directory itself, a redb store [`BackendKind::REDB_FILE`] in it.
    pub fn path_in(self, dir: &std::path::Path) -> std::path::PathBuf {
        match self {
            BackendKind::Redb => dir.join(BackendKind::REDB_FILE),
            BackendKind::Sled | BackendKind::Memory => dir.to_path_buf(),
        }
    }

    /// The durable backend whose store already exists in the store directory `dir` (a sled
    /// store is that directory; a redb store is [`BackendKind::REDB_FILE`] in it), if any: a
    /// data directory keeps the backend it was created with.
    pub fn existing(dir: &std::path::Path) -> Option<BackendKind> {
        if dir.join(BackendKind::REDB_FILE).exists() {
            Some(BackendKind::Redb)
        } else if dir.join("conf").exists() || dir.join("db").exists() {
            Some(BackendKind::Sled)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Sled => "sled",
            BackendKind::Redb => "redb",
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "memory" => Ok(BackendKind::Memory),
            "sled" => Ok(BackendKind::Sled),
            "redb" => Ok(BackendKind::Redb),
            other => Err(format!(
                "unknown store backend {other:?} (expected memory, sled or redb)"
            )),
        }
    }
}

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    /// Only after the group commit that contains it has been flushed to disk (fdatasync).
    Durable,
    /// After the backend transaction committed, without a flush; a sync thread flushes once a
    /// second (and closing the store flushes). A power cut or SIGKILL may lose the writes
    /// acknowledged in the last second or so (never half of one). For labs where speed beats
    /// safety.
    Relaxed,
}

/// How far back a watch may start. A watch from an older revision gets [`StoreError::Expired`]
/// (HTTP 410 Gone) and the client relists. Kept in memory; both limits apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchWindow {
    /// Events older than this (by commit time) leave the window. Kubernetes-like: etcd compacts
    /// every 5 minutes.
    pub max_age: Duration,
    /// At most this many events are kept in the window.
    pub max_events: usize,
}

impl Default for WatchWindow {
    fn default() -> Self {
        WatchWindow {
            max_age: Duration::from_secs(300),
            max_events: 100_000,
        }
    }
}

/// How the store is opened.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub backend: BackendKind,
    /// Directory (sled) or file (redb) of the store; required for durable backends.
    pub path: Option<PathBuf>,
    pub durability: Durability,
    pub watch_window: WatchWindow,
    /// The log keeps at least the last `retention_events` events (plus, always, the current
    /// version of every live object). History and `state_at` say where it was truncated.
    pub retention_events: u64,
    /// How often every watcher gets a `Bookmark` with the store's revision.
    pub bookmark_interval: Duration,
    /// Per-watcher queue (events and bookmarks waiting to be read, each a pointer to an entry
    /// shared by all watchers); a watcher whose queue is full is cut off with
    /// `WatchItem::Closed` after reading what it has.
    pub watcher_buffer: usize,
    /// Backend page cache (sled, redb), sized so memory per object stays small.
    pub cache_bytes: usize,
    /// The most writes one group commit takes.
    pub max_batch: usize,
}

/// [`StoreConfig::max_batch`]'s default: the most writes one group commit takes.
pub const DEFAULT_MAX_BATCH: usize = 4096;

impl StoreConfig {
    /// An in-memory store with default settings.
    pub fn memory() -> StoreConfig {
        StoreConfig {
            backend: BackendKind::Memory,
            path: None,
            durability: Durability::Durable,
            watch_window: WatchWindow::default(),
            retention_events: 100_000,
            bookmark_interval: Duration::from_secs(60),
            watcher_buffer: 1024,
            cache_bytes: 16 << 20,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }

    /// A durable store at `path` with default settings.
    pub fn durable(backend: BackendKind, path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            backend,
            path: Some(path.into()),
            ..StoreConfig::memory()
        }
    }
}

/// A list request: one resource, optionally one namespace, selectors, pagination.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub group: String,
    pub resource: String,
    /// `None`: all namespaces (and cluster-scoped objects).
    pub namespace: Option<String>,
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub limit: Option<usize>,
    /// A token from a previous page's `ListResult::continue_token`.
    pub continue_token: Option<String>,
}

/// One page of a list: a consistent snapshot at `resource_version`.
#[derive(Clone, Debug)]
pub struct ListResult {
    pub items: Vec<Arc<Value>>,
    /// The store's revision at the read (for a continued list: the first page's revision).
    pub resource_version: Revision,
    pub continue_token: Option<String>,
    /// As kube-apiserver: set only when there is a next page and no selector was given.
    pub remaining_item_count: Option<u64>,
}

/// A watch request: which events, and from where.
#[derive(Clone, Debug, Default)]
pub struct WatchQuery {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    /// `None`: from now. `Some(r)`: every matching event with revision > r, then live events.
    pub from: Option<Revision>,
}

/// What a watcher yields.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchItem {
    /// A matching event. As in kube-apiserver's watch cache, an object that starts matching the
    /// selectors arrives as `ADDED` and one that stops matching as `DELETED`.
    Event(Event),
    /// No more matching events at or below this revision will come.
    Bookmark(Revision),
    /// The watcher was cut off (too slow, or the store closed). The client resumes with a new
    /// watch from the last revision it saw, or relists if that is gone.
    Closed(String),
}

/// Every retained event of one key.
#[derive(Clone, Debug)]
pub struct History {
    pub events: Vec<Event>,
    /// `Some(r)`: retention dropped events before revision `r` (except each key's version that was
    /// current at that point, which is always kept). `None`: the log is complete.
    pub truncated_before: Option<Revision>,
}

/// The whole state at a past revision.
#[derive(Clone, Debug)]
pub struct StateAt {
    pub revision: Revision,
    pub objects: BTreeMap<Key, Arc<Value>>,
    /// As in [`History`]: where retention truncated the log, if it did.
    pub truncated_before: Option<Revision>,
}

/// Everything the store boundary can answer with other than success.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// A create found the key taken.
    #[error("{key} already exists")]
    AlreadyExists { key: Key },
    /// The key has no current object.
    #[error("{key} not found")]
    NotFound { key: Key },
    /// The caller's resourceVersion precondition is stale.
    #[error("conflict on {key}: expected revision {expected}, current is {current}")]
    Conflict {
        key: Key,
        expected: Revision,
        current: Revision,
    },
    /// The caller's uid precondition names another incarnation of the object.
    #[error("conflict on {key}: expected uid {expected}, current is {current}")]
    UidConflict {
        key: Key,
        expected: String,
        current: String,
    },
    /// A watch or read asked for a revision older than what is kept.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        requested: Revision,
        oldest: Revision,
    },
    /// A continue token whose snapshot left the watch window.
    #[error("continue token too old: revision {requested} is older than {oldest}")]
    ContinueExpired {
        requested: Revision,
        oldest: Revision,
    },
    /// A continue token that is not one of ours, or belongs to another resource.
    #[error("invalid continue token: {0}")]
    InvalidContinue(String),
    /// A revision in the future.
    #[error("revision {requested} is newer than the store's revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// A selector names a field the resource does not support (or does not parse).
    #[error("{0}")]
    InvalidSelector(String),
    /// Group/resource/namespace/name rejected.
    #[error("{0}")]
    InvalidKey(String),
    /// The object is not a JSON object, or its metadata contradicts its key.
    #[error("invalid object for {key}: {reason}")]
    InvalidObject { key: Key, reason: String },
    /// A read-modify-write function gave up.
    #[error("{0}")]
    Aborted(String),
    /// The backend failed (I/O); nothing of the failed write is visible.
    #[error("store backend failed: {0}")]
    Backend(String),
    /// The store on disk is damaged: what is wrong and where.
    #[error("store at {path} is damaged: {what} (at {location})")]
    Corrupt {
        path: String,
        what: String,
        location: String,
    },
    /// The store was closed or its writer stopped.
    #[error("store is closed: {0}")]
    Closed(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<StoreError> for crate::status::ApiError {
    fn from(e: StoreError) -> Self {
        use crate::status::ApiError;
        match &e {
            StoreError::AlreadyExists { key } => {
                ApiError::already_exists(&key.group, &key.resource, &key.name)
            }
            StoreError::NotFound { key } => {
                ApiError::not_found(&key.group, &key.resource, &key.name)
            }
            StoreError::Conflict { key, .. } => {
                ApiError::conflict(&key.group, &key.resource, &key.name)
            }
            StoreError::UidConflict {
                key,
                expected,
                current,
            } => {
                // kube-apiserver's storage precondition text (409 Conflict).
                ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{}\": Precondition failed: UID in \
                         precondition: {expected}, UID in object meta: {current}",
                        key.qualified_resource(),
                        key.name
                    ),
                )
                .with_details(&key.group, &key.resource, &key.name)
            }
            StoreError::Expired { requested, oldest } => {
                ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
            }
            StoreError::ContinueExpired { .. } => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter, or use the continue \
                 token in this response to retrieve the remainder of the results. Continuing with \
                 the provided token results in an inconsistent list - objects that were created, \
                 modified, or deleted between the time the first chunk was returned and now may \
                 show up in the list.",
            ),
            StoreError::InvalidContinue(why) => {
                ApiError::bad_request(format!("continue key is not valid: {why}"))
            }
            StoreError::FutureRevision { requested, current } => ApiError::new(
                504,
                "Timeout",
                format!(
                    "Too large resource version: {requested}, current resource version: {current}"
                ),
            ),
            StoreError::InvalidKey(msg) | StoreError::InvalidSelector(msg) => {
                ApiError::bad_request(msg.clone())
            }
            StoreError::InvalidObject { reason, .. } => ApiError::bad_request(reason.clone()),
            StoreError::Aborted(msg) => ApiError::internal(msg.clone()),
            StoreError::Backend(_) | StoreError::Corrupt { .. } | StoreError::Closed(_) => {
                ApiError::internal(format!("storage error: {e}"))
            }
        }
    }
}

/// RFC 3339 UTC with seconds precision, from seconds since the Unix epoch (no clock read here:
/// drivers pass `now`). Howard Hinnant's civil-from-days algorithm.
pub fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time as [`rfc3339`] writes it
/// (`YYYY-MM-DDTHH:MM:SSZ`, fractions ignored).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_what_it_formats() {
        for t in [0, 951_782_400, 1_790_000_000, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_790_000_000), "2026-09-21T14:13:20Z");
    }

    #[test]
    fn key_order_is_the_order_of_its_parts() {
        let parts = [
            "",
            "a",
            "ab",
            "abcdefgh",
            "abcdefghi",
            "abcdefgi",
            "b",
            "pods",
            "pod\u{e9}",
        ];
        let keys: Vec<Key> = parts
            .iter()
            .flat_map(|g| parts.iter().map(move |n| Key::new(g, "pods", "default", n)))
            .chain(parts.iter().map(|ns| Key::new("", "pods", ns, "x")))
            .collect();
        for a in &keys {
            for b in &keys {
                let want = (&a.group, &a.resource, &a.namespace, &a.name).cmp(&(
                    &b.group,
                    &b.resource,
                    &b.namespace,
                    &b.name,
                ));
                assert_eq!(a.cmp(b), want, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn keys_are_validated() {
        assert!(Key::new("", "pods", "default", "web-1").validate().is_ok());
        assert!(Key::new("storage.k8s.io", "storageclasses", "", "local")
            .validate()
            .is_ok());
        for bad in [
            Key::new("", "pods", "default", ""),
            Key::new("", "pods", "default", "a/b"),
            Key::new("", "pods", "default", ".."),
            Key::new("", "pods", "Default", "x"),
            Key::new("", "", "default", "x"),
            Key::new("", "pods", "default", &"x".repeat(254)),
        ] {
            assert!(
                matches!(bad.validate(), Err(StoreError::InvalidKey(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn errors_map_to_kubernetes_status_texts() {
        let key = Key::new("", "persistentvolumeclaims", "default", "claim");
        let e: crate::status::ApiError = StoreError::NotFound { key: key.clone() }.into();
        assert_eq!(e.code, 404);
        assert_eq!(e.message, "persistentvolumeclaims \"claim\" not found");
        let e: crate::status::ApiError = StoreError::Conflict {
            key: key.clone(),
            expected: 3,
            current: 5,
        }
        .into();
        assert_eq!(e.code, 409);
        assert!(e.message.contains("the object has been modified"));
        let e: crate::status::ApiError = StoreError::Expired {
            requested: 5,
            oldest: 101,
        }
        .into();
        assert_eq!(
            (e.code, e.message.as_str()),
            (410, "too old resource version: 5 (101)")
        );
        let key = Key::new("storage.k8s.io", "storageclasses", "", "local");
        let e: crate::status::ApiError = StoreError::AlreadyExists { key }.into();
        assert_eq!(
            e.message,
            "storageclasses.storage.k8s.io \"local\" already exists"
        );
    }
}
