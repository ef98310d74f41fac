//! `StoreCore`: the synchronous, deterministic heart of the store.
//!
//! It owns the current objects, the revision counter and the watch window (the recent events,
//! each with the object's previous state so selector transitions can be computed). It reads no
//! clock and draws no randomness: the commit instant and new uids come in from the caller.
//! Writes are two-phase so a driver can make them durable in between:
//!
//! 1. [`StoreCore::prepare`] checks the key, the object and the precondition against the
//!    committed state *plus* the writes already prepared (in this group and in earlier groups
//!    still on their way to the disk), and assigns the next revision. Readers do not see
//!    prepared writes.
//! 2. The driver appends the prepared events to the backend (one transaction per group) and
//!    flushes (one flush may cover several groups).
//! 3. [`StoreCore::commit_prepared_through`] makes the flushed groups visible (objects,
//!    revision, window) in revision order and returns them for fan-out; on a backend failure
//!    [`StoreCore::abort_prepared`] forgets them.
//!
//! [`preserialize`] lets the driver serialize a create's or update's object on the caller's
//! thread, with holes for the three metadata values only the core can decide; the core then
//! splices them in ([`StoreCore::prepare_serialized`]) — the same bytes `prepare` would write.
//!
//! [`StoreCore::apply`] does all three for callers without a backend (the simulator).
//!
//! Objects are kept as their JSON text (`Arc<str>`), shared between the current state, the
//! watch window and the log encoder, and parsed on demand: a parsed `serde_json::Value` of a
//! 1 KiB pod takes ~10 KiB, the text 1 KiB. The driver hands the parsed object it already has
//! to live watchers, so fan-out parses nothing.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{
    rfc3339, Event, EventType, FieldSelector, Key, LabelSelector, ListQuery, ListResult,
    Precondition, Result, Revision, StoreError, WatchQuery, WatchWindow,
};

/// One write request.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    Create {
        key: Key,
        object: Value,
    },
    Update {
        key: Key,
        object: Value,
        precondition: Option<Precondition>,
    },
    Delete {
        key: Key,
        precondition: Option<Precondition>,
    },
}

impl Write {
    pub fn key(&self) -> &Key {
        match self {
            Write::Create { key, .. } | Write::Update { key, .. } | Write::Delete { key, .. } => {
                key
            }
        }
    }
}

/// What the driver knows and the core must not look up itself (besides `now_ms`).
#[derive(Clone, Debug)]
pub struct WriteContext {
    /// Who writes (`kubectl`, `bonsai-scheduler`…), recorded in the event.
    pub actor: String,
    /// The uid a create gets (uuid v4 from the driver; seeded in the simulator).
    pub uid: String,
}

/// A committed event as the core keeps it (window) and the backend stores it: the object as
/// JSON text, with the key's previous version for selector transitions and snapshot lists.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    pub revision: Revision,
    pub event_type: EventType,
    pub key: Arc<Key>,
    /// The object after the write; for DELETED its last state with the deletion's revision.
    pub json: Arc<str>,
    /// The key's previous version (`None` for ADDED).
    pub prev: Option<Arc<str>>,
    /// The revision of `prev`.
    pub prev_revision: Option<Revision>,
    pub actor: Arc<str>,
    /// Commit instant, milliseconds since the Unix epoch; the event's time is its second.
    pub at_ms: u64,
}

/// Parses JSON the store wrote itself.
pub(crate) fn parse(json: &str) -> Arc<Value> {
    Arc::new(serde_json::from_str(json).expect("the store only keeps JSON it serialized"))
}

impl Committed {
    /// The event time, RFC 3339 seconds.
    pub fn time(&self) -> String {
        rfc3339(self.at_ms / 1000)
    }

    /// The event as watchers and history see it (parses the object).
    pub fn event(&self) -> Event {
        self.event_with(self.event_type, parse(&self.json))
    }

    pub fn event_with(&self, event_type: EventType, object: Arc<Value>) -> Event {
        Event {
            revision: self.revision,
            event_type,
            key: (*self.key).clone(),
            object,
            actor: self.actor.to_string(),
            time: self.time(),
        }
    }
}

/// One committed event with its object and previous version parsed at most once, however many
/// watchers look at it.
pub struct Views<'a> {
    pub committed: &'a Committed,
    object: OnceCell<Arc<Value>>,
    prev: OnceCell<Option<Arc<Value>>>,
}

impl<'a> Views<'a> {
    pub fn new(committed: &'a Committed) -> Views<'a> {
        Views {
            committed,
            object: OnceCell::new(),
            prev: OnceCell::new(),
        }
    }

    /// With the parsed object already at hand (the writer built it).
    pub fn with_object(committed: &'a Committed, object: Arc<Value>) -> Views<'a> {
        let v = Views::new(committed);
        let _ = v.object.set(object);
        v
    }

    pub fn object(&self) -> &Arc<Value> {
        self.object.get_or_init(|| parse(&self.committed.json))
    }

    pub fn prev(&self) -> Option<&Arc<Value>> {
        self.prev
            .get_or_init(|| self.committed.prev.as_deref().map(parse))
            .as_ref()
    }

    /// The previous version if something already parsed it (to share it further).
    pub fn parsed_prev(&self) -> Option<Option<Arc<Value>>> {
        self.prev.get().cloned()
    }
}

/// The outcome of a prepared write: its event and what the caller gets back.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub committed: Committed,
    /// The event's object, parsed (what live watchers get).
    pub object: Arc<Value>,
    /// Create/update: the stored object. Delete: the last state, as kube-apiserver returns it.
    pub result: Arc<Value>,
}

/// Which events a watcher or list wants, and how it sees them.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
}

impl Filter {
    pub fn from_watch(q: &WatchQuery) -> Filter {
        Filter {
            group: q.group.clone(),
            resource: q.resource.clone(),
            namespace: q.namespace.clone(),
            label_selector: q.label_selector.clone(),
            field_selector: q.field_selector.clone(),
        }
    }

    pub fn from_list(q: &ListQuery) -> Filter {
        Filter {
            group: q.group.clone(),
            resource: q.resource.clone(),
            namespace: q.namespace.clone(),
            label_selector: q.label_selector.clone(),
            field_selector: q.field_selector.clone(),
        }
    }

    pub fn has_selectors(&self) -> bool {
        self.label_selector.as_ref().is_some_and(|s| !s.is_empty())
            || self.field_selector.as_ref().is_some_and(|s| !s.is_empty())
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(fs) = &self.field_selector {
            fs.validate_for(&self.group, &self.resource)
                .map_err(|e| StoreError::InvalidSelector(e.0))?;
        }
        Ok(())
    }

    /// Does the key belong to this filter's resource (and namespace)?
    pub fn covers(&self, key: &Key) -> bool {
        key.group == self.group
            && key.resource == self.resource
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
    }

    /// Do the selectors accept this object?
    pub fn selects(&self, object: &Value) -> bool {
        self.label_selector
            .as_ref()
            .is_none_or(|s| s.matches(object))
            && self
                .field_selector
                .as_ref()
                .is_none_or(|s| s.matches(&self.group, &self.resource, object))
    }

    /// How this filter's watcher sees the event, if at all. As kube-apiserver's watch cache: an
    /// object entering the selection is ADDED, one leaving it is DELETED (with its previous
    /// content and the event's resourceVersion: [`Seen::LeftSelection`]).
    pub fn seen(&self, v: &Views<'_>) -> Option<Seen> {
        let c = v.committed;
        if !self.covers(&c.key) {
            return None;
        }
        if !self.has_selectors() {
            return Some(Seen::As(c.event_type));
        }
        let cur = c.event_type != EventType::Deleted && self.selects(v.object());
        let old = v.prev().is_some_and(|p| self.selects(p));
        match (cur, old) {
            (false, false) => None,
            (true, false) => Some(Seen::As(EventType::Added)),
            (true, true) => Some(Seen::As(EventType::Modified)),
            // The stored DELETED object already is the last state at this revision.
            (false, true) if c.event_type == EventType::Deleted => {
                Some(Seen::As(EventType::Deleted))
            }
            (false, true) => Some(Seen::LeftSelection),
        }
    }

    /// The event this filter's watcher sees, if any (see [`Filter::seen`]).
    pub fn convert(&self, v: &Views<'_>) -> Option<Event> {
        let c = v.committed;
        match self.seen(v)? {
            Seen::As(t) => Some(c.event_with(t, v.object().clone())),
            Seen::LeftSelection => {
                let prev = v.prev().expect("old matched, so prev exists");
                Some(c.event_with(EventType::Deleted, left_selection(prev, c.revision)))
            }
        }
    }
}

/// How a watcher sees a committed event (see [`Filter::seen`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// With this type and the event's object.
    As(EventType),
    /// As `DELETED` with the key's previous state at the event's revision: the object left the
    /// watcher's selection.
    LeftSelection,
}

/// The object a watcher gets when `prev` left its selection at `revision`.
pub fn left_selection(prev: &Value, revision: Revision) -> Arc<Value> {
    let mut o = prev.clone();
    set_resource_version(&mut o, revision);
    Arc::new(o)
}

/// The resourceVersion an object carries (`metadata.resourceVersion`, a decimal string).
pub fn resource_version_of(object: &Value) -> Option<Revision> {
    object
        .pointer("/metadata/resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

fn set_resource_version(object: &mut Value, rev: Revision) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// The identity fields an update carries over, read without building the whole `Value`.
#[derive(serde::Deserialize, Default)]
struct Identity {
    #[serde(default)]
    metadata: IdentityMeta,
}

#[derive(serde::Deserialize, Default)]
struct IdentityMeta {
    uid: Option<Value>,
    #[serde(rename = "creationTimestamp")]
    creation_timestamp: Option<Value>,
}

fn identity(json: &str) -> IdentityMeta {
    serde_json::from_str::<Identity>(json)
        .map(|i| i.metadata)
        .unwrap_or_default()
}

/// The metadata fields the store sets on every create and update, in the order it sets them.
const STORE_FIELDS: [&str; 3] = ["uid", "creationTimestamp", "resourceVersion"];

/// A create's or update's object serialized ahead of [`StoreCore::prepare_serialized`], by the
/// caller's thread outside the core's lock: its JSON with holes where the values of
/// `metadata.uid`, `creationTimestamp` and `resourceVersion` go (the fields themselves are in
/// place already, so they end up exactly where `prepare` puts them).
#[derive(Clone, Debug)]
pub struct Preserialized {
    json: String,
    /// Offset into `json` and index into [`STORE_FIELDS`] of each hole, ascending.
    holes: Vec<(usize, usize)>,
    /// How many fields `metadata` had: a prepared object with another count (a store field
    /// removed) does not fit the holes.
    meta_len: usize,
    /// The position of `metadata` among the object's members, and of each of [`STORE_FIELDS`]
    /// among `metadata`'s: the writer sets the values there without looking the names up (a
    /// SipHash of each name per lookup, ten of them per create, was a tenth of the writer's
    /// time per create).
    meta_at: usize,
    fields_at: [usize; 3],
}

impl Preserialized {
    /// Sets the store's fields of `object` (the object this was made from) to `values` (in
    /// [`STORE_FIELDS`] order, taken out of it) by position and returns its final JSON. `None`
    /// if a value is missing (the field is to be removed) or the object no longer has the shape
    /// `preserialize` left; `values` is then untouched (the caller sets them by name and
    /// serializes).
    fn fill(&self, object: &mut Value, values: &mut [Option<Value>; 3]) -> Option<String> {
        if self.holes.len() != STORE_FIELDS.len() {
            return None;
        }
        let json = match values {
            [Some(a), Some(b), Some(c)] => self.splice([&*a, &*b, &*c])?,
            _ => return None,
        };
        let slots = self.slots(object)?;
        for (slot, value) in slots.into_iter().zip(values.iter_mut()) {
            *slot = value.take().expect("checked: every value is there");
        }
        Some(json)
    }

    /// The store fields' values in `object`, found by position (and their names checked).
    fn slots<'v>(&self, object: &'v mut Value) -> Option<[&'v mut Value; 3]> {
        let (name, meta) = object.as_object_mut()?.iter_mut().nth(self.meta_at)?;
        let meta = meta.as_object_mut().filter(|_| name == "metadata")?;
        if meta.len() != self.meta_len {
            return None;
        }
        let mut slots: [Option<&'v mut Value>; 3] = [None, None, None];
        for (i, (name, value)) in meta.iter_mut().enumerate() {
            if let Some(field) = self.fields_at.iter().position(|&at| at == i) {
                if name != STORE_FIELDS[field] {
                    return None;
                }
                slots[field] = Some(value);
            }
        }
        let [a, b, c] = slots;
        Some([a?, b?, c?])
    }

    /// The final JSON with `values` in the holes.
    fn splice(&self, values: [&Value; 3]) -> Option<String> {
        // Built as a `String` from `str` pieces (each hole follows a `:`, a char boundary), so
        // the ~1 KiB result is not validated as UTF-8 again under the core's lock.
        let mut out = String::with_capacity(self.json.len() + 96);
        let mut at = 0;
        for &(offset, field) in &self.holes {
            out.push_str(self.json.get(at..offset)?);
            push_json(&mut out, values[field]);
            at = offset;
        }
        out.push_str(self.json.get(at..)?);
        Some(out)
    }
}

/// Appends `v` exactly as `serde_json::to_string` writes it (compact, members in their order),
/// straight into a `String`: serde_json's generic serializer was ~17k instructions for a 1 KiB
/// pod, the largest cost of a create on the caller's side. Strings (escaped as serde_json
/// escapes them) and integers are written here; floats go through serde_json itself.
pub(crate) fn push_json(out: &mut String, v: &Value) {
    // SAFETY: everything appended is a whole `str`, a slice of one cut before an ASCII byte,
    // or ASCII (see `push_value`), so `out` stays UTF-8.
    push_value(unsafe { out.as_mut_vec() }, v)
}

/// [`push_json`] on the `String`'s bytes. Appends only UTF-8: whole `str`s, pieces of one cut
/// at ASCII bytes, and ASCII.
fn push_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                push_decimal(out, u.into());
            } else if let Some(i) = n.as_i64() {
                out.push(b'-');
                push_decimal(out, i.unsigned_abs().into());
            } else {
                let text = serde_json::to_string(n).expect("a number always serializes");
                out.extend_from_slice(text.as_bytes());
            }
        }
        Value::String(s) => push_str_bytes(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_str_bytes(out, k);
                out.push(b':');
                push_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// An integer's decimal digits (what serde_json's `itoa` writes; `write!` went through the
/// formatting machinery, a few hundred instructions a number). Also quantities' canonical form.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u128) {
    let mut digits = [0u8; 39];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Whether `bytes` has a control character, `"` or a backslash. Eight bytes per test (the
/// classic "has a byte less than n" bit trick, exact for the question "any?"); a string's last
/// partial word is read overlapping the one before it, or assembled when the whole string is
/// shorter than a word: most strings of an object are keys of a few bytes, and a byte-by-byte
/// loop over the remainder was a third of the cost of writing them.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let test = |x: u64| {
        // A byte below 0x20: subtracting 0x20 borrows into its high bit. A borrow carried
        // into the next byte starts only at such a byte, and a byte of 0x80 or more never
        // sets its own high bit here (`!x`), so "any?" is exact.
        x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
            || has_zero(x ^ (ONES * b'"' as u64))
            || has_zero(x ^ (ONES * b'\\' as u64))
    };
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let n = bytes.len();
    if n >= 8 {
        let mut at = 0;
        while at + 8 <= n {
            if test(word(at)) {
                return true;
            }
            at += 8;
        }
        at < n && test(word(n - 8))
    } else if n >= 4 {
        let half = |at: usize| {
            u64::from(u32::from_le_bytes(
                bytes[at..at + 4].try_into().expect("4 bytes"),
            ))
        };
        test(half(0) | half(n - 4) << 32)
    } else {
        // Up to three bytes, in a word of harmless ones ('a').
        let mut x = ONES * u64::from(b'a');
        for (i, &b) in bytes.iter().enumerate() {
            x = (x & !(0xff << (8 * i))) | u64::from(b) << (8 * i);
        }
        test(x)
    }
}

/// A JSON string as serde_json writes it: between quotes, escaping only control characters,
/// `"` and backslash (everything else, non-ASCII included, as is).
fn push_str_bytes(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    if needs_escape(b) {
        push_escaped(out, b);
    } else {
        out.extend_from_slice(b);
    }
    out.push(b'"');
}

/// `b` with serde_json's escapes: `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, and `\u00xx` (lower
/// case) for the other control characters. Cuts `b` only before and after ASCII bytes.
fn push_escaped(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let short: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(c >> 4)],
                HEX[usize::from(c & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        out.extend_from_slice(short);
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

/// [`push_str_bytes`] on a `String`.
fn push_json_str(out: &mut String, s: &str) {
    // SAFETY: `push_str_bytes` appends only UTF-8 (see `push_value`).
    push_str_bytes(unsafe { out.as_mut_vec() }, s)
}

/// Checks a create's or update's object, fills in its metadata name and namespace, puts the
/// store's metadata fields in place (values to come) and serializes it with holes for them.
/// What `prepare` would reject for the key or the object is rejected here, with the same error.
pub fn preserialize(key: &Key, object: &mut Value) -> Result<Preserialized> {
    key.validate()?;
    StoreCore::check_object(key, object)?;
    let meta = StoreCore::metadata_mut(object, key);
    for field in STORE_FIELDS {
        if !meta.contains_key(field) {
            meta.insert(field.into(), Value::Null);
        }
    }
    let meta_len = meta.len();
    let obj = object.as_object().expect("checked: object");
    let mut out = String::with_capacity(4096);
    let mut holes = Vec::with_capacity(STORE_FIELDS.len());
    let (mut meta_at, mut fields_at) = (0, [0; 3]);
    out.push('{');
    for (i, (k, v)) in obj.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(&mut out, k);
        out.push(':');
        match v {
            Value::Object(meta) if k == "metadata" => {
                meta_at = i;
                out.push('{');
                for (j, (mk, mv)) in meta.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    push_json_str(&mut out, mk);
                    out.push(':');
                    match STORE_FIELDS.iter().position(|f| f == mk) {
                        Some(field) => {
                            holes.push((out.len(), field));
                            fields_at[field] = j;
                        }
                        None => push_json(&mut out, mv),
                    }
                }
                out.push('}');
            }
            v => push_json(&mut out, v),
        }
    }
    out.push('}');
    let json = out;
    Ok(Preserialized {
        json,
        holes,
        meta_len,
        meta_at,
        fields_at,
    })
}

/// A current object: its JSON text and the revision of its last change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub json: Arc<str>,
    pub revision: Revision,
}

/// The store's state: committed objects, revision, watch window, and the batch being prepared.
///
/// The current objects live in hash maps ([`Objects`]; point lookups: every write's
/// precondition check and commit, `get`) plus an ordered set of their keys (lists, snapshots).
/// Comparing two keys is four string comparisons, and a B-tree search over 100k keys makes ~40
/// of them: with the keys in hash maps, an update touches no B-tree at all and a create or
/// delete one. The hash maps are never iterated, so their (random) order never shows:
/// everything ordered goes through `order`.
///
/// A create's key enters `order` when the create is prepared, not when it commits: the B-tree
/// insert (~4% of the CPU at 256 durable writers) then happens on the writer's own thread while
/// the previous group is being flushed, instead of on the commit path every waiting writer's
/// answer is behind. So `order` may hold keys of prepared creates that `objects` does not have yet;
/// readers skip them, and an aborted group takes its keys back out.
#[derive(Debug)]
pub struct StoreCore {
    objects: Objects,
    /// The keys of `objects` and of prepared creates, in list order.
    order: BTreeSet<Arc<Key>>,
    revision: Revision,
    window: VecDeque<Committed>,
    /// A watch from revision `r` is served iff `r >= window_start` (every event after it is in
    /// the window). Events at or below it have left.
    window_start: Revision,
    window_config: WatchWindow,
    /// Prepared but not yet committed: events and the overlay they imply (per key: the revision
    /// of its last prepared write and the state it leaves, `None` for deleted). Several prepared
    /// groups may be in flight; they commit (or abort) in revision order.
    pending: Vec<Committed>,
    pending_objects: HashMap<Arc<Key>, (Revision, Option<Entry>)>,
    /// Actor names, interned: a handful of components write millions of events.
    actors: BTreeMap<String, Arc<str>>,
    /// The last commit second and its RFC 3339 text.
    time: (u64, String),
}

/// The current objects by key: hash maps, [`Objects::SHARDS`] of them, each key in the one a
/// hash of its name and namespace picks. One big hash map doubles and rehashes every key at once
/// as the store grows: a stall of ~5 ms at 32k objects, under the core's lock, that every
/// waiting writer's answer was behind (the p99 of creates at 64 writers). Each shard grows on
/// its own, a 64th of the store at a time (p99 at 64 writers over HTTP, 3 rounds alternating:
/// 4.41–4.65 ms vs 4.89–4.95 with one map). A B-tree grows a node at a
/// time too, but its lookups (a dozen four-string comparisons) cost ~5% of the CPU of a create
/// over HTTP at 256 writers.
#[derive(Debug)]
struct Objects {
    shards: Vec<HashMap<Arc<Key>, Entry>>,
}

impl Objects {
    const SHARDS: usize = 64;

    fn from_iter(items: impl IntoIterator<Item = (Arc<Key>, Entry)>) -> Objects {
        let mut objects = Objects {
            shards: (0..Self::SHARDS).map(|_| HashMap::new()).collect(),
        };
        for (k, e) in items {
            objects.insert(k, e);
        }
        objects
    }

    /// FNV-1a over the name and the namespace (the parts that differ between objects of a
    /// kind), its high bits: cheap next to the shard's own SipHash of the whole key.
    fn shard(&self, key: &Key) -> usize {
        use std::hash::Hasher as _;
        let mut h = crate::api::fnv::Fnv1a::default();
        h.write(key.name.as_bytes());
        h.write(key.namespace.as_bytes());
        (h.finish() >> 58) as usize % self.shards.len()
    }

    fn get(&self, key: &Key) -> Option<&Entry> {
        self.shards[self.shard(key)].get(key)
    }

    fn get_key_value(&self, key: &Key) -> Option<(&Arc<Key>, &Entry)> {
        self.shards[self.shard(key)].get_key_value(key)
    }

    fn contains_key(&self, key: &Key) -> bool {
        self.shards[self.shard(key)].contains_key(key)
    }

    fn insert(&mut self, key: Arc<Key>, entry: Entry) -> Option<Entry> {
        let i = self.shard(&key);
        self.shards[i].insert(key, entry)
    }

    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let i = self.shard(key);
        self.shards[i].remove(key)
    }

    fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }
}

/// Continue tokens look like kube-apiserver's: base64url(JSON {"v","rv","start"}).
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: Revision,
    start: String,
}

/// The largest watch window [`StoreCore::restore`] reserves room for at open (~100 B an
/// event): a window configured larger (the race simulator's is unbounded) grows as a
/// `VecDeque` does.
const WINDOW_RESERVE_AT_MOST: usize = 1 << 20;

impl StoreCore {
    /// An empty store at revision 0.
    pub fn new(window_config: WatchWindow) -> StoreCore {
        StoreCore::restore(window_config, Vec::new(), 0, Vec::new())
    }

    /// A store rebuilt from a backend: its current objects (key, JSON, revision), its revision,
    /// and the most recent events (ascending, contiguous up to `revision`) for the watch window.
    pub fn restore(
        window_config: WatchWindow,
        objects: Vec<(Key, Arc<str>, Revision)>,
        revision: Revision,
        tail: Vec<Committed>,
    ) -> StoreCore {
        let window_start = tail.first().map_or(revision, |c| c.revision - 1);
        assert!(
            tail.last().is_none_or(|c| c.revision == revision),
            "window tail must end at the store revision"
        );
        let objects: Vec<(Arc<Key>, Entry)> = objects
            .into_iter()
            .map(|(k, json, revision)| (Arc::new(k), Entry { json, revision }))
            .collect();
        let order = objects.iter().map(|(k, _)| k.clone()).collect();
        let objects = Objects::from_iter(objects);
        // Share keys and bodies between the objects and the window.
        let mut tail = tail;
        for c in &mut tail {
            if let Some((k, e)) = objects.get_key_value(&*c.key) {
                c.key = k.clone();
                if e.revision == c.revision {
                    c.json = e.json.clone();
                }
            }
        }
        // The window's whole capacity up front: a `VecDeque` that doubles copies every event it
        // holds under the core's lock, with every queued writer behind it (~1 ms at 16k
        // events, measured in the committer; a few ms at 64k). Untouched, the reservation
        // costs address space, not memory: the allocator maps big blocks lazily.
        // A commit appends a whole group (at most `StoreConfig::max_batch`, by default
        // `DEFAULT_MAX_BATCH`) before the window is trimmed back to `max_events`.
        let reserve = window_config
            .max_events
            .checked_add(super::DEFAULT_MAX_BATCH)
            .filter(|&n| n <= WINDOW_RESERVE_AT_MOST)
            .unwrap_or(0);
        let mut window = VecDeque::with_capacity(reserve.max(tail.len()));
        window.extend(tail);
        StoreCore {
            objects,
            order,
            revision,
            window,
            window_start,
            window_config,
            pending: Vec::new(),
            pending_objects: HashMap::new(),
            actors: BTreeMap::new(),
            time: (u64::MAX, String::new()),
        }
    }

    /// The revision of the last committed write.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The oldest revision a watch may start from.
    pub fn window_start(&self) -> Revision {
        self.window_start
    }

    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// The current object, parsed.
    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        self.objects.get(key).map(|e| parse(&e.json))
    }

    /// The current object as stored: its JSON text (nothing parsed).
    pub fn get_json(&self, key: &Key) -> Option<Arc<str>> {
        self.objects.get(key).map(|e| e.json.clone())
    }

    /// Every current object, parsed (tests, the simulator's invariant checks).
    pub fn snapshot(&self) -> BTreeMap<Key, Arc<Value>> {
        self.order
            .iter()
            .filter_map(|k| Some(((**k).clone(), parse(&self.objects.get(k)?.json))))
            .collect()
    }

    /// The current (prepared-or-committed) entry, as preconditions see it.
    fn current(&self, key: &Key) -> Option<(&Arc<Key>, &Entry)> {
        match self.pending_objects.get_key_value(key) {
            Some((k, (_, e))) => e.as_ref().map(|e| (k, e)),
            None => self.objects.get_key_value(key),
        }
    }

    /// The revision the next prepared write gets.
    fn next_revision(&self) -> Revision {
        self.revision + self.pending.len() as Revision + 1
    }

    fn check_object(key: &Key, object: &Value) -> Result<()> {
        let invalid = |reason: String| {
            Err(StoreError::InvalidObject {
                key: key.clone(),
                reason,
            })
        };
        let Some(obj) = object.as_object() else {
            return invalid("the object must be a JSON object".into());
        };
        match obj.get("metadata") {
            None => {}
            Some(Value::Object(meta)) => {
                if let Some(name) = meta.get("name") {
                    if name.as_str() != Some(key.name.as_str()) {
                        return invalid(format!(
                            "metadata.name {name} does not match the name in the key ({:?})",
                            key.name
                        ));
                    }
                }
                if let Some(ns) = meta.get("namespace") {
                    let ns = ns.as_str().unwrap_or("\u{0}");
                    if ns != key.namespace && !(key.namespace.is_empty() && ns.is_empty()) {
                        return invalid(format!(
                            "metadata.namespace {ns:?} does not match the namespace in the key ({:?})",
                            key.namespace
                        ));
                    }
                }
            }
            Some(_) => return invalid("metadata must be a JSON object".into()),
        }
        Ok(())
    }

    fn check_precondition(key: &Key, current: &Entry, p: &Option<Precondition>) -> Result<()> {
        match p {
            None => Ok(()),
            Some(Precondition::ResourceVersion(expected)) => {
                if current.revision != *expected {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        current: current.revision,
                    });
                }
                Ok(())
            }
            Some(Precondition::Uid(expected)) => {
                let uid = identity(&current.json).uid;
                let cur = uid.as_ref().and_then(Value::as_str).unwrap_or("");
                if cur != expected {
                    return Err(StoreError::UidConflict {
                        key: key.clone(),
                        expected: expected.clone(),
                        current: cur.to_string(),
                    });
                }
                Ok(())
            }
        }
    }

    fn metadata_mut<'v>(object: &'v mut Value, key: &Key) -> &'v mut Map<String, Value> {
        let obj = object.as_object_mut().expect("checked: object");
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        let meta = meta
            .as_object_mut()
            .expect("checked: metadata is an object");
        meta.entry("name")
            .or_insert_with(|| Value::String(key.name.clone()));
        if !key.namespace.is_empty() {
            meta.entry("namespace")
                .or_insert_with(|| Value::String(key.namespace.clone()));
        }
        meta
    }

    /// Sets the store's metadata fields of a create's or update's object (`values` in
    /// [`STORE_FIELDS`] order; `None` removes the field) and returns the object's JSON. With
    /// `pre` (from [`preserialize`] of this object) the values go in by position and into the
    /// ready JSON; otherwise (or if a field is removed) by name, and the object is serialized.
    fn set_store_fields(
        object: &mut Value,
        key: &Key,
        pre: Option<&Preserialized>,
        mut values: [Option<Value>; 3],
    ) -> Arc<str> {
        if let Some(json) = pre.and_then(|pre| pre.fill(object, &mut values)) {
            debug_assert_eq!(
                json,
                serde_json::to_string(object).expect("serializes"),
                "spliced JSON differs from the serialized object"
            );
            return Arc::from(json);
        }
        let meta = Self::metadata_mut(object, key);
        for (field, value) in STORE_FIELDS.into_iter().zip(values) {
            match value {
                Some(v) => meta.insert(field.into(), v),
                None => meta.remove(field),
            };
        }
        Arc::from(serde_json::to_string(object).expect("a serde_json::Value always serializes"))
    }

    /// `now_ms`'s second in RFC 3339, formatted once per second (a group shares its instant).
    fn time(&mut self, now_ms: u64) -> String {
        let second = now_ms / 1000;
        if self.time.0 != second {
            self.time = (second, rfc3339(second));
        }
        self.time.1.clone()
    }

    fn actor(&mut self, actor: &str) -> Arc<str> {
        if let Some(a) = self.actors.get(actor) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(actor);
        self.actors.insert(actor.to_string(), a.clone());
        a
    }

    /// Checks a write against committed + prepared state and assigns it the next revision.
    /// Nothing becomes visible to readers until [`Self::commit_prepared`].
    pub fn prepare(&mut self, write: Write, ctx: &WriteContext, now_ms: u64) -> Result<Prepared> {
        self.prepare_serialized(write, None, ctx, now_ms)
    }

    /// [`Self::prepare`] for a create or update whose object went through [`preserialize`]
    /// (`pre`): the store's metadata values are spliced into the ready JSON instead of
    /// serializing the whole object here. Same result, byte for byte. `pre` must come from
    /// `preserialize` of this write's key and object, which checked both already (they are not
    /// checked again here, under the core's lock).
    pub fn prepare_serialized(
        &mut self,
        write: Write,
        pre: Option<Preserialized>,
        ctx: &WriteContext,
        now_ms: u64,
    ) -> Result<Prepared> {
        // `preserialize` checked the key and the object already (with the same errors).
        if pre.is_none() {
            write.key().validate()?;
        }
        let rev = self.next_revision();
        let time = self.time(now_ms);
        let actor = self.actor(&ctx.actor);
        let (committed, object, result) = match write {
            Write::Create { key, mut object } => {
                if pre.is_none() {
                    Self::check_object(&key, &object)?;
                }
                // One lookup per map: a key that may be created is either deleted by a prepared
                // write (share its `Arc` from the overlay) or unknown to the store.
                let interned = match self.pending_objects.get_key_value(&key) {
                    Some((_, (_, Some(_)))) => return Err(StoreError::AlreadyExists { key }),
                    Some((k, (_, None))) => Some(k.clone()),
                    None if self.objects.contains_key(&key) => {
                        return Err(StoreError::AlreadyExists { key })
                    }
                    None => None,
                };
                let json = Self::set_store_fields(
                    &mut object,
                    &key,
                    pre.as_ref(),
                    [
                        Some(Value::String(ctx.uid.clone())),
                        Some(Value::String(time)),
                        Some(Value::String(rev.to_string())),
                    ],
                );
                let object = Arc::new(object);
                let key = match interned {
                    // Deleted by a prepared write: its key is in `order` already.
                    Some(k) => k,
                    None => {
                        let k = Arc::new(key);
                        self.order.insert(k.clone());
                        k
                    }
                };
                let c = Committed {
                    revision: rev,
                    event_type: EventType::Added,
                    key,
                    json,
                    prev: None,
                    prev_revision: None,
                    actor,
                    at_ms: now_ms,
                };
                (c, object.clone(), object)
            }
            Write::Update {
                key,
                mut object,
                precondition,
            } => {
                if pre.is_none() {
                    Self::check_object(&key, &object)?;
                }
                let Some((arc_key, current)) = self.current(&key) else {
                    return Err(StoreError::NotFound { key });
                };
                let (arc_key, current) = (arc_key.clone(), current.clone());
                Self::check_precondition(&key, &current, &precondition)?;
                let id = identity(&current.json);
                let json = Self::set_store_fields(
                    &mut object,
                    &key,
                    pre.as_ref(),
                    [
                        id.uid,
                        id.creation_timestamp,
                        Some(Value::String(rev.to_string())),
                    ],
                );
                let object = Arc::new(object);
                let c = Committed {
                    revision: rev,
                    event_type: EventType::Modified,
                    key: arc_key,
                    json,
                    prev: Some(current.json.clone()),
                    prev_revision: Some(current.revision),
                    actor,
                    at_ms: now_ms,
                };
                (c, object.clone(), object)
            }
            Write::Delete { key, precondition } => {
                let Some((arc_key, current)) = self.current(&key) else {
                    return Err(StoreError::NotFound { key });
                };
                let (arc_key, current) = (arc_key.clone(), current.clone());
                Self::check_precondition(&key, &current, &precondition)?;
                let result = parse(&current.json);
                let mut last = (*result).clone();
                set_resource_version(&mut last, rev);
                let c = Committed {
                    revision: rev,
                    event_type: EventType::Deleted,
                    key: arc_key,
                    json: Arc::from(
                        serde_json::to_string(&last)
                            .expect("a serde_json::Value always serializes"),
                    ),
                    prev: Some(current.json.clone()),
                    prev_revision: Some(current.revision),
                    actor,
                    at_ms: now_ms,
                };
                (c, Arc::new(last), result)
            }
        };
        let after = (committed.event_type != EventType::Deleted).then(|| Entry {
            json: committed.json.clone(),
            revision: rev,
        });
        self.pending_objects
            .insert(committed.key.clone(), (rev, after));
        self.pending.push(committed.clone());
        Ok(Prepared {
            committed,
            object,
            result,
        })
    }

    /// The events prepared since the last commit/abort, in revision order.
    pub fn pending(&self) -> &[Committed] {
        &self.pending
    }

    /// The revision of the last prepared (not yet committed) write, or the store's revision.
    pub fn prepared_revision(&self) -> Revision {
        self.pending.last().map_or(self.revision, |c| c.revision)
    }

    /// Makes the prepared writes visible, appends them to the watch window and ages the window.
    /// Returns them for fan-out.
    pub fn commit_prepared(&mut self, now_ms: u64) -> Vec<Committed> {
        self.commit_prepared_through(Revision::MAX, now_ms)
    }

    /// Makes the prepared writes up to revision `through` visible (a driver with several groups
    /// in flight commits each once it is durable); later ones stay prepared.
    pub fn commit_prepared_through(&mut self, through: Revision, now_ms: u64) -> Vec<Committed> {
        let n = self.pending.partition_point(|c| c.revision <= through);
        let batch: Vec<Committed> = self.pending.drain(..n).collect();
        if self.pending.is_empty() {
            self.pending_objects.clear();
        } else {
            // The overlay holds each key's last prepared write: a key leaves it with the commit
            // of that write, and stays for a later one still prepared. (Writers prepare while a
            // group commits, so there nearly always is a later one: rebuilding the overlay from
            // every prepared write cost a pass over all of them per group.)
            for c in &batch {
                if self
                    .pending_objects
                    .get(&c.key)
                    .is_some_and(|(r, _)| *r == c.revision)
                {
                    self.pending_objects.remove(&c.key);
                }
            }
        }
        for c in &batch {
            assert_eq!(c.revision, self.revision + 1, "revisions are gapless");
            self.revision = c.revision;
            match c.event_type {
                EventType::Deleted => {
                    self.objects.remove(&*c.key);
                }
                _ => {
                    let e = Entry {
                        json: c.json.clone(),
                        revision: c.revision,
                    };
                    // A create's key entered `order` when it was prepared.
                    self.objects.insert(c.key.clone(), e);
                }
            }
            self.window.push_back(c.clone());
        }
        // A deleted key leaves `order` unless a later write of the batch brought it back or a
        // create still prepared counts on it being there (a create of a key that a prepared
        // write deletes does not insert it again; the overlay's last state is not enough: the
        // key may be created and deleted again further on).
        if batch.iter().any(|c| c.event_type == EventType::Deleted) {
            let recreated: HashSet<&Key> = self
                .pending
                .iter()
                .filter(|c| c.event_type == EventType::Added)
                .map(|c| &*c.key)
                .collect();
            for c in batch.iter().filter(|c| c.event_type == EventType::Deleted) {
                if !self.objects.contains_key(&*c.key) && !recreated.contains(&*c.key) {
                    self.order.remove(&*c.key);
                }
            }
        }
        self.age_window(now_ms);
        batch
    }

    /// Forgets the prepared writes (their backend transaction failed).
    pub fn abort_prepared(&mut self) {
        for key in self.pending_objects.keys() {
            if !self.objects.contains_key(key) {
                self.order.remove(key);
            }
        }
        self.pending.clear();
        self.pending_objects.clear();
    }

    /// Prepare and commit one write at once (no backend in between).
    pub fn apply(
        &mut self,
        write: Write,
        ctx: &WriteContext,
        now_ms: u64,
    ) -> Result<(Prepared, Vec<Committed>)> {
        assert!(self.pending.is_empty(), "apply while a batch is prepared");
        let p = self.prepare(write, ctx, now_ms)?;
        let c = self.commit_prepared(now_ms);
        Ok((p, c))
    }

    /// Drops events that are too old or too many from the watch window.
    pub fn age_window(&mut self, now_ms: u64) {
        let max_age = self.window_config.max_age.as_millis() as u64;
        while let Some(front) = self.window.front() {
            let too_many = self.window.len() > self.window_config.max_events;
            let too_old = now_ms.saturating_sub(front.at_ms) > max_age;
            if !(too_many || too_old) {
                break;
            }
            self.window_start = front.revision;
            self.window.pop_front();
        }
    }

    /// The window's events after `from` that `filter` sees, or `Expired` if some left the window.
    pub fn watch_backlog(&self, filter: &Filter, from: Revision) -> Result<Vec<Event>> {
        filter.validate()?;
        if from < self.window_start {
            return Err(StoreError::Expired {
                requested: from,
                oldest: self.window_start,
            });
        }
        Ok(self
            .window_after(from)
            .filter(|c| filter.covers(&c.key))
            .filter_map(|c| filter.convert(&Views::new(c)))
            .collect())
    }

    /// Everything in the window after `from`, unfiltered (for tests and the simulator).
    pub fn window_after(&self, from: Revision) -> impl Iterator<Item = &Committed> {
        let skip = self.window.partition_point(|c| c.revision <= from);
        self.window.range(skip..)
    }

    /// One page of a list: a consistent snapshot at the current revision, or, for a continued
    /// list, at the first page's revision (rebuilt from the watch window).
    pub fn list(&self, q: &ListQuery) -> Result<ListResult> {
        Ok(self.list_texts(q)?.finish())
    }

    /// The part of [`Self::list`] that needs the core: which objects, as stored text, at which
    /// revision. [`ListTexts::finish`] parses and selects them — a list of 17k objects parsed
    /// under the core's lock held every writer (and the request handler threads they run on)
    /// for its whole length.
    pub fn list_texts(&self, q: &ListQuery) -> Result<ListTexts> {
        let filter = Filter::from_list(q);
        filter.validate()?;
        let (rv, start) = match &q.continue_token {
            None => (self.revision, None),
            Some(tok) => {
                let t = decode_continue(tok)?;
                (t.rv, Some(t.start))
            }
        };
        if rv > self.revision {
            return Err(StoreError::InvalidContinue(format!(
                "revision {rv} is in the future"
            )));
        }
        if rv < self.window_start && rv != self.revision {
            return Err(StoreError::ContinueExpired {
                requested: rv,
                oldest: self.window_start,
            });
        }
        let ns = q.namespace.clone().unwrap_or_default();
        let lower = match &start {
            Some(s) => {
                let s = s.strip_suffix('\u{0}').unwrap_or(s);
                let (namespace, name) = s.split_once('/').unwrap_or(("", s));
                Bound::Excluded(Key::new(&q.group, &q.resource, namespace, name))
            }
            None => Bound::Included(Key::new(&q.group, &q.resource, &ns, "")),
        };
        // The state at `rv`: current objects with the window's later changes undone. The first
        // change after `rv` to a key carries that key's state at `rv` in `prev`.
        let mut undo: BTreeMap<&Arc<Key>, Option<&Arc<str>>> = BTreeMap::new();
        if rv < self.revision {
            for c in self.window_after(rv) {
                if filter.covers(&c.key) {
                    undo.entry(&c.key).or_insert(c.prev.as_ref());
                }
            }
        }
        let in_range = |k: &Key| match &lower {
            Bound::Excluded(l) => k > l,
            Bound::Included(l) => k >= l,
            Bound::Unbounded => true,
        };
        let bounds: (Bound<&Key>, Bound<&Key>) = (lower.as_ref(), Bound::Unbounded);
        let current = self
            .order
            .range::<Key, _>(bounds)
            // Keys sort by (group, resource, namespace, name): the resource (or the namespace)
            // is one contiguous run starting at `lower`.
            .take_while(|k| filter.covers(k))
            .filter_map(|k| Some((k, &self.objects.get(k)?.json)));
        let mut snapshot: Box<dyn Iterator<Item = (&Arc<Key>, &Arc<str>)>> = if undo.is_empty() {
            Box::new(current)
        } else {
            let mut merged: BTreeMap<&Arc<Key>, &Arc<str>> =
                current.filter(|(k, _)| !undo.contains_key(k)).collect();
            for (k, v) in &undo {
                if let Some(v) = v {
                    if in_range(k) {
                        merged.insert(k, v);
                    }
                }
            }
            Box::new(merged.into_iter())
        };
        let limit = q.limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        let mut remaining: u64 = 0;
        if filter.has_selectors() {
            // Which objects match is known only once they are parsed (in `finish`).
            items.extend(snapshot.by_ref().map(|(k, json)| (k.clone(), json.clone())));
        } else {
            for (k, json) in snapshot.by_ref() {
                if limit.is_some_and(|l| items.len() >= l) {
                    remaining += 1;
                } else {
                    items.push((k.clone(), json.clone()));
                }
            }
        }
        drop(snapshot);
        Ok(ListTexts {
            filter,
            limit,
            rv,
            items,
            remaining,
        })
    }
}

/// A list read from the core, not yet parsed (see [`StoreCore::list_texts`]).
pub struct ListTexts {
    filter: Filter,
    limit: Option<usize>,
    rv: Revision,
    /// Without selectors: the page; with selectors: every candidate, in list order.
    items: Vec<(Arc<Key>, Arc<str>)>,
    /// Without selectors: how many objects follow the page.
    remaining: u64,
}

impl ListTexts {
    /// Parses the objects and applies the selectors and the limit: the page, its continue
    /// token, and (without selectors) how many objects follow it.
    pub fn finish(self) -> ListResult {
        let ListTexts {
            filter,
            limit,
            rv,
            items: texts,
            remaining,
        } = self;
        let mut items = Vec::new();
        let mut last_key: Option<Arc<Key>> = None;
        let mut more = remaining > 0;
        if filter.has_selectors() {
            for (k, json) in texts {
                let object = parse(&json);
                if !filter.selects(&object) {
                    continue;
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    // kube-apiserver reports no count with selectors; one more match suffices.
                    more = true;
                    break;
                }
                items.push(object);
                last_key = Some(k);
            }
        } else {
            for (k, json) in texts {
                items.push(parse(&json));
                last_key = Some(k);
            }
        }
        let continue_token = if more {
            let k = last_key.expect("a full page has a last key");
            let start = if k.namespace.is_empty() {
                format!("{}\u{0}", k.name)
            } else {
                format!("{}/{}\u{0}", k.namespace, k.name)
            };
            Some(encode_continue(&ContinueToken {
                v: "meta.k8s.io/v1".into(),
                rv,
                start,
            }))
        } else {
            None
        };
        ListResult {
            items,
            resource_version: rv,
            remaining_item_count: (more && !filter.has_selectors()).then_some(remaining),
            continue_token,
        }
    }
}

fn encode_continue(t: &ContinueToken) -> String {
    base64url_encode(&serde_json::to_vec(t).expect("token serializes"))
}

fn decode_continue(s: &str) -> Result<ContinueToken> {
    let bytes =
        base64url_decode(s).ok_or_else(|| StoreError::InvalidContinue("not base64".into()))?;
    let t: ContinueToken = serde_json::from_slice(&bytes)
        .map_err(|e| StoreError::InvalidContinue(format!("not a continue token: {e}")))?;
    if t.v != "meta.k8s.io/v1" {
        return Err(StoreError::InvalidContinue(format!(
            "unknown version {:?}",
            t.v
        )));
    }
    if t.start.contains("..") {
        return Err(StoreError::InvalidContinue("path traversal".into()));
    }
    Ok(t)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url (Go's `base64.RawURLEncoding`, which kube-apiserver uses for tokens).
pub(crate) fn base64url_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

pub(crate) fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(n: u64) -> WriteContext {
        WriteContext {
            actor: "test".into(),
            uid: format!("uid-{n}"),
        }
    }

    fn pod(name: &str) -> Key {
        Key::new("", "pods", "default", name)
    }

    #[test]
    fn needs_escape_finds_every_escaped_byte_anywhere() {
        for len in 0..20 {
            let plain = vec![b'a'; len];
            assert!(!needs_escape(&plain));
            for at in 0..len {
                for b in (0u8..=255).filter(|b| b.is_ascii()) {
                    let mut v = plain.clone();
                    v[at] = b;
                    let expected = b < 0x20 || b == b'"' || b == b'\\';
                    assert_eq!(needs_escape(&v), expected, "byte {b:#x} at {at} of {len}");
                }
                // Non-ASCII (UTF-8 continuation and lead bytes) never needs escaping.
                let mut v = plain.clone();
                v[at] = 0xC3;
                assert!(!needs_escape(&v));
            }
        }
        assert!(!needs_escape("ünïcødé ✓ 🌳 and more".as_bytes()));
    }

    #[test]
    fn the_watch_window_is_reserved_when_bounded() {
        // A bounded window never doubles (and copies every event under the core's lock) on
        // its way to `max_events` plus a group; an unbounded one (the simulator's) reserves
        // nothing.
        let core = StoreCore::new(WatchWindow::default());
        assert!(
            core.window.capacity()
                >= WatchWindow::default().max_events + crate::store::DEFAULT_MAX_BATCH
        );
        let unbounded = WatchWindow {
            max_age: std::time::Duration::from_secs(1),
            max_events: usize::MAX,
        };
        assert!(StoreCore::new(unbounded).window.capacity() < 1024);
    }

    proptest::proptest! {
        /// Any string (control characters, quotes, backslashes, non-ASCII, any length) and any
        /// integer, as keys and values, come out as serde_json writes them.
        #[test]
        fn push_json_writes_any_string_and_integer_as_serde_json(
            s in proptest::prelude::any::<String>(),
            k in "[a-z\\\\\"\\x00-\\x1f\\x7f-\\u{ff}]{0,20}",
            i in proptest::prelude::any::<i64>(),
            u in proptest::prelude::any::<u64>(),
        ) {
            let v = json!({ &k: s, "i": i, "u": u, "a": [&k, i, u] });
            let mut out = String::new();
            push_json(&mut out, &v);
            proptest::prop_assert_eq!(out, serde_json::to_string(&v).unwrap());
        }
    }

    #[test]
    fn push_json_writes_what_serde_json_writes() {
        let v = json!({
            "s": "plain", "esc": "quote \" back \\ nl \n tab \t bell \u{7} del \u{7f}",
            "uni": "ünïcødé ✓ 🌳", "\"key\"": null, "t": true, "f": false,
            "ints": [0, 1, -1, 42, u64::MAX, i64::MIN, i64::MAX],
            "floats": [0.0, -0.0, 1.5, 0.1, 1e21, 1e-7, 2.5e300, -3.75],
            "nested": {"a": [[], {}, [{"b": [1, "2", null]}]], "z": {}, "m": {"y": 1, "x": 2}},
            "": ""
        });
        let mut out = String::new();
        push_json(&mut out, &v);
        assert_eq!(out, serde_json::to_string(&v).unwrap());
        let mut object = v.clone();
        let pre = preserialize(&pod("p"), &mut object).unwrap();
        let mut core = StoreCore::new(WatchWindow::default());
        let write = Write::Create {
            key: pod("p"),
            object,
        };
        let p = core
            .prepare_serialized(write, Some(pre), &ctx(1), 0)
            .unwrap();
        assert_eq!(
            &*p.committed.json,
            serde_json::to_string(&*p.result).unwrap()
        );
    }

    #[test]
    fn create_update_delete_assign_revisions_and_metadata() {
        let mut core = StoreCore::new(WatchWindow::default());
        let (p, _) = core
            .apply(
                Write::Create {
                    key: pod("a"),
                    object: json!({"metadata": {"labels": {"x": "1"}}, "spec": {"b": 1, "a": 2}}),
                },
                &ctx(1),
                0,
            )
            .unwrap();
        assert_eq!(p.result["metadata"]["resourceVersion"], "1");
        assert_eq!(p.result["metadata"]["uid"], "uid-1");
        assert_eq!(p.result["metadata"]["name"], "a");
        // Field order as given (preserve_order).
        let keys: Vec<_> = p.result["spec"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["b", "a"]);
        let err = core
            .apply(
                Write::Create {
                    key: pod("a"),
                    object: json!({}),
                },
                &ctx(2),
                0,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }));
        let err = core
            .apply(
                Write::Update {
                    key: pod("a"),
                    object: json!({}),
                    precondition: Some(Precondition::ResourceVersion(7)),
                },
                &ctx(3),
                0,
            )
            .unwrap_err();
        assert_eq!(
            err,
            StoreError::Conflict {
                key: pod("a"),
                expected: 7,
                current: 1
            }
        );
        let (p, _) = core
            .apply(
                Write::Update {
                    key: pod("a"),
                    object: json!({"metadata": {"uid": "forged"}}),
                    precondition: Some(Precondition::ResourceVersion(1)),
                },
                &ctx(4),
                0,
            )
            .unwrap();
        assert_eq!(p.result["metadata"]["uid"], "uid-1");
        assert_eq!(p.result["metadata"]["resourceVersion"], "2");
        let err = core
            .apply(
                Write::Delete {
                    key: pod("a"),
                    precondition: Some(Precondition::Uid("other".into())),
                },
                &ctx(5),
                0,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::UidConflict { .. }));
        let (p, c) = core
            .apply(
                Write::Delete {
                    key: pod("a"),
                    precondition: Some(Precondition::Uid("uid-1".into())),
                },
                &ctx(6),
                0,
            )
            .unwrap();
        assert_eq!(p.result["metadata"]["resourceVersion"], "2");
        assert_eq!(c[0].event().object["metadata"]["resourceVersion"], "3");
        assert_eq!(core.revision(), 3);
        assert!(core.get(&pod("a")).is_none());
        let err = core
            .apply(
                Write::Create {
                    key: pod("bad/name"),
                    object: json!({}),
                },
                &ctx(7),
                0,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidKey(_)));
        let err = core
            .apply(
                Write::Create {
                    key: pod("b"),
                    object: json!({"metadata": {"name": "c"}}),
                },
                &ctx(7),
                0,
            )
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidObject { .. }));
        assert_eq!(core.revision(), 3, "rejected writes take no revision");
    }

    #[test]
    fn preserialized_writes_store_the_same_bytes() {
        let objects = [
            json!({}),
            json!({"kind": "Pod", "spec": {"z": 1, "a": "\"q\"\u{e9}\n"}}),
            json!({"metadata": {}}),
            json!({"metadata": {"resourceVersion": "9", "labels": {"x": "1"}, "uid": "forged"}, "b": [1, 2.5, null]}),
            json!({"a": 1, "metadata": {"name": "p", "creationTimestamp": null, "annotations": {"k": "v"}}, "z": {}}),
        ];
        for (i, object) in objects.iter().enumerate() {
            let mut plain = StoreCore::new(WatchWindow::default());
            let mut pre = StoreCore::new(WatchWindow::default());
            for (j, write) in [
                Write::Create {
                    key: pod("p"),
                    object: object.clone(),
                },
                Write::Update {
                    key: pod("p"),
                    object: object.clone(),
                    precondition: None,
                },
            ]
            .into_iter()
            .enumerate()
            {
                let c = ctx(j as u64);
                let a = plain.prepare(write.clone(), &c, 1_000).unwrap();
                let mut w = write;
                let p = match &mut w {
                    Write::Create { key, object } | Write::Update { key, object, .. } => {
                        preserialize(key, object).unwrap()
                    }
                    Write::Delete { .. } => unreachable!(),
                };
                let b = pre.prepare_serialized(w, Some(p), &c, 1_000).unwrap();
                assert_eq!(a.committed.json, b.committed.json, "object {i}, write {j}");
                assert_eq!(a.result, b.result);
                plain.commit_prepared(1_000);
                pre.commit_prepared(1_000);
            }
        }
        let mut bad = json!({"metadata": {"name": "other"}});
        assert!(matches!(
            preserialize(&pod("p"), &mut bad),
            Err(StoreError::InvalidObject { .. })
        ));
        assert!(matches!(
            preserialize(&pod("a/b"), &mut json!({})),
            Err(StoreError::InvalidKey(_))
        ));
    }

    #[test]
    fn prepared_writes_are_invisible_until_committed() {
        let mut core = StoreCore::new(WatchWindow::default());
        core.prepare(
            Write::Create {
                key: pod("a"),
                object: json!({}),
            },
            &ctx(1),
            0,
        )
        .unwrap();
        let err = core
            .prepare(
                Write::Create {
                    key: pod("a"),
                    object: json!({}),
                },
                &ctx(2),
                0,
            )
            .unwrap_err();
        assert!(
            matches!(err, StoreError::AlreadyExists { .. }),
            "the batch sees its own writes"
        );
        core.prepare(
            Write::Update {
                key: pod("a"),
                object: json!({}),
                precondition: Some(Precondition::ResourceVersion(1)),
            },
            &ctx(3),
            0,
        )
        .unwrap();
        assert!(core.get(&pod("a")).is_none());
        assert_eq!(core.revision(), 0);
        core.abort_prepared();
        core.prepare(
            Write::Create {
                key: pod("b"),
                object: json!({}),
            },
            &ctx(4),
            0,
        )
        .unwrap();
        let c = core.commit_prepared(0);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].revision, 1);
        assert!(core.get(&pod("a")).is_none());
        assert!(core.get(&pod("b")).is_some());
    }

    #[test]
    fn window_expires_old_watches() {
        let mut core = StoreCore::new(WatchWindow {
            max_age: std::time::Duration::from_secs(10),
            max_events: 3,
        });
        for i in 0..5 {
            core.apply(
                Write::Create {
                    key: pod(&format!("p{i}")),
                    object: json!({}),
                },
                &ctx(i),
                0,
            )
            .unwrap();
        }
        let f = Filter {
            resource: "pods".into(),
            ..Filter::default()
        };
        assert_eq!(core.window_start(), 2);
        assert_eq!(core.watch_backlog(&f, 2).unwrap().len(), 3);
        assert_eq!(
            core.watch_backlog(&f, 1).unwrap_err(),
            StoreError::Expired {
                requested: 1,
                oldest: 2
            }
        );
        core.age_window(20_000);
        assert_eq!(core.window_start(), 5);
        assert!(core.watch_backlog(&f, 5).unwrap().is_empty());
    }

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let mut core = StoreCore::new(WatchWindow::default());
        core.apply(
            Write::Create {
                key: pod("a"),
                object: json!({"spec": {}}),
            },
            &ctx(1),
            0,
        )
        .unwrap();
        core.apply(
            Write::Update {
                key: pod("a"),
                object: json!({"spec": {"nodeName": "n1"}}),
                precondition: None,
            },
            &ctx(2),
            0,
        )
        .unwrap();
        core.apply(
            Write::Update {
                key: pod("a"),
                object: json!({"spec": {"nodeName": "n1"}, "x": 1}),
                precondition: None,
            },
            &ctx(3),
            0,
        )
        .unwrap();
        core.apply(
            Write::Update {
                key: pod("a"),
                object: json!({"spec": {"nodeName": "n2"}}),
                precondition: None,
            },
            &ctx(4),
            0,
        )
        .unwrap();
        let f = Filter {
            resource: "pods".into(),
            field_selector: Some(super::super::parse_field_selector("spec.nodeName=n1").unwrap()),
            ..Filter::default()
        };
        let evs = core.watch_backlog(&f, 0).unwrap();
        let got: Vec<_> = evs.iter().map(|e| (e.revision, e.event_type)).collect();
        assert_eq!(
            got,
            [
                (2, EventType::Added),
                (3, EventType::Modified),
                (4, EventType::Deleted)
            ]
        );
        assert_eq!(evs[2].object["spec"]["nodeName"], "n1");
        assert_eq!(evs[2].object["metadata"]["resourceVersion"], "4");
    }

    #[test]
    fn paginated_lists_are_consistent_snapshots() {
        let mut core = StoreCore::new(WatchWindow::default());
        for ns in ["a", "b"] {
            for i in 0..3 {
                let key = Key::new("", "pods", ns, &format!("p{i}"));
                core.apply(
                    Write::Create {
                        key,
                        object: json!({"metadata": {"labels": {"i": i.to_string()}}}),
                    },
                    &ctx(i),
                    0,
                )
                .unwrap();
            }
        }
        core.apply(
            Write::Create {
                key: Key::new("", "nodes", "", "n"),
                object: json!({}),
            },
            &ctx(9),
            0,
        )
        .unwrap();
        let mut q = ListQuery {
            resource: "pods".into(),
            limit: Some(4),
            ..ListQuery::default()
        };
        let page1 = core.list(&q).unwrap();
        assert_eq!(page1.items.len(), 4);
        assert_eq!(page1.resource_version, 7);
        assert_eq!(page1.remaining_item_count, Some(2));
        // Writes between pages do not show up in the continued list.
        core.apply(
            Write::Delete {
                key: Key::new("", "pods", "b", "p2"),
                precondition: None,
            },
            &ctx(10),
            0,
        )
        .unwrap();
        core.apply(
            Write::Create {
                key: Key::new("", "pods", "b", "p3"),
                object: json!({}),
            },
            &ctx(11),
            0,
        )
        .unwrap();
        q.continue_token = page1.continue_token.clone();
        let page2 = core.list(&q).unwrap();
        let names: Vec<_> = page2
            .items
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["p1", "p2"]);
        assert_eq!(page2.resource_version, 7);
        assert!(page2.continue_token.is_none());
        // Namespace and label filters.
        let q = ListQuery {
            resource: "pods".into(),
            namespace: Some("a".into()),
            label_selector: Some(super::super::parse_label_selector("i in (0,2)").unwrap()),
            ..ListQuery::default()
        };
        assert_eq!(core.list(&q).unwrap().items.len(), 2);
        let q = ListQuery {
            resource: "nodes".into(),
            ..ListQuery::default()
        };
        assert_eq!(core.list(&q).unwrap().items.len(), 1);
        let q = ListQuery {
            resource: "pods".into(),
            continue_token: Some("garbage!".into()),
            ..ListQuery::default()
        };
        assert!(matches!(core.list(&q), Err(StoreError::InvalidContinue(_))));
    }

    #[test]
    fn base64url_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "{\"v\":\"meta.k8s.io/v1\"}"] {
            assert_eq!(
                base64url_decode(&base64url_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
    }
}
