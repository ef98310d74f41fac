//! `metadata.managedFields` and server-side apply, after sigs.k8s.io/structured-merge-diff
//! as kube-apiserver v1.33 drives it.
//!
//! - A field set is a set of paths ([`Path`]); `fieldsV1` is its tree encoding (`f:name`,
//!   `k:{"name":"a"}` for items of associative lists, `v:"x"` for set items, `.` when a node
//!   is itself a member).
//! - Update (POST/PUT/non-apply PATCH): the writer gains every path the write added or
//!   changed; others lose what was changed or removed (updates always "force").
//! - Apply: the applier owns exactly the paths of its configuration; fields it applied before
//!   and no longer applies are removed unless someone else owns them; changing a value
//!   another manager owns is a conflict (409) unless `force`.
//!
//! The schema knowledge needed (which lists are associative and by which keys, which structs
//! are atomic, which objects are free-form maps) is the OpenAPI `x-kubernetes-list-type` /
//! `-map-keys` / `structType` of the v1.33 types these kinds use.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::Field;
use crate::status::{ApiError, Cause};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PE {
    Field(String),
    /// Compact JSON object of the list's map-key fields, sorted by name.
    Key(String),
    /// Compact JSON of a set item.
    Value(String),
    Index(usize),
}

pub type Path = Vec<PE>;

/// A set of field paths kept as a trie, as SMD's `fieldpath.Set` is: a node says whether its
/// own path is a member and holds its children by path element. Set algebra then walks only
/// the branches both sides share, instead of comparing whole paths string by string (the
/// flat `BTreeSet<Path>` this replaced cost a fifth of the API server's CPU on writes).
/// Invariant: no child is empty (every operation prunes), so `is_empty` is O(1) and a
/// node with children always has a member below it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    member: bool,
    children: BTreeMap<PE, Set>,
}

impl Set {
    pub fn new() -> Set {
        Set::default()
    }
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }
    pub fn insert(&mut self, path: Path) {
        let mut cur = self;
        for pe in path {
            cur = cur.children.entry(pe).or_default();
        }
        cur.member = true;
    }
    fn node(&self, path: &[PE]) -> Option<&Set> {
        let mut cur = self;
        for pe in path {
            cur = cur.children.get(pe)?;
        }
        Some(cur)
    }
    pub fn contains(&self, path: &[PE]) -> bool {
        self.node(path).is_some_and(|n| n.member)
    }
    /// Some member lies strictly below `path`.
    pub fn has_below(&self, path: &[PE]) -> bool {
        self.node(path).is_some_and(|n| !n.children.is_empty())
    }
    pub fn union_with(&mut self, other: &Set) {
        self.member |= other.member;
        for (pe, c) in &other.children {
            match self.children.get_mut(pe) {
                Some(mine) => mine.union_with(c),
                None => {
                    self.children.insert(pe.clone(), c.clone());
                }
            }
        }
    }
    pub fn union_owned(&mut self, other: Set) {
        self.member |= other.member;
        for (pe, c) in other.children {
            match self.children.get_mut(&pe) {
                Some(mine) => mine.union_owned(c),
                None => {
                    self.children.insert(pe, c);
                }
            }
        }
    }
    /// `self = self − other`.
    pub fn subtract(&mut self, other: &Set) {
        if other.member {
            self.member = false;
        }
        if self.children.is_empty() {
            return;
        }
        for (pe, oc) in &other.children {
            if let Some(c) = self.children.get_mut(pe) {
                c.subtract(oc);
                if c.is_empty() {
                    self.children.remove(pe);
                }
            }
        }
    }
    pub fn difference(&self, other: &Set) -> Set {
        let mut d = self.clone();
        d.subtract(other);
        d
    }
    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        let (small, big) = if self.children.len() <= other.children.len() {
            (self, other)
        } else {
            (other, self)
        };
        for (pe, c) in &small.children {
            if let Some(oc) = big.children.get(pe) {
                let i = c.intersection(oc);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }
    /// Every member path, in path order (a path before its extensions).
    pub fn paths(&self) -> Vec<Path> {
        fn walk(n: &Set, cur: &mut Path, out: &mut Vec<Path>) {
            if n.member {
                out.push(cur.clone());
            }
            for (pe, c) in &n.children {
                cur.push(pe.clone());
                walk(c, cur, out);
                cur.pop();
            }
        }
        let mut out = Vec::new();
        walk(self, &mut Vec::new(), &mut out);
        out
    }
    /// Drops the member at `prefix` and everything below it.
    fn remove_prefix(&mut self, prefix: &[&str]) {
        let Some((first, rest)) = prefix.split_first() else {
            *self = Set::new();
            return;
        };
        let pe = PE::Field((*first).to_string());
        if let Some(c) = self.children.get_mut(&pe) {
            c.remove_prefix(rest);
            if c.is_empty() {
                self.children.remove(&pe);
            }
        }
    }
}

impl PE {
    fn encode(&self) -> String {
        let mut s = String::new();
        self.encode_into(&mut s);
        s
    }
    fn encode_into(&self, buf: &mut String) {
        use std::fmt::Write;
        let (tag, text) = match self {
            PE::Field(f) => ("f:", f),
            PE::Key(k) => ("k:", k),
            PE::Value(v) => ("v:", v),
            PE::Index(i) => {
                let _ = write!(buf, "i:{i}");
                return;
            }
        };
        buf.reserve(tag.len() + text.len());
        buf.push_str(tag);
        buf.push_str(text);
    }
    fn decode(s: &str) -> Option<PE> {
        let (t, rest) = s.split_at_checked(2)?;
        match t {
            "f:" => Some(PE::Field(rest.to_string())),
            "k:" => Some(PE::Key(rest.to_string())),
            "v:" => Some(PE::Value(rest.to_string())),
            "i:" => rest.parse().ok().map(PE::Index),
            _ => None,
        }
    }
    /// `fieldpath.PathElement.String()`: `.name`, `[name="a"]`, `[="x"]`, `[0]`.
    fn display(&self) -> String {
        match self {
            PE::Field(f) => format!(".{f}"),
            PE::Key(k) => {
                let m: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", parts.join(","))
            }
            PE::Value(v) => format!("[={v}]"),
            PE::Index(i) => format!("[{i}]"),
        }
    }
}

pub fn path_string(p: &[PE]) -> String {
    p.iter().map(PE::display).collect()
}

// ------------------------------------------------------------------ schema knowledge

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map(&'static [&'static str]),
}

/// The last field of a dotted path (`rsplit('.').next()`, by a plain scan from the end: the
/// schema lookups below ask it for every node of every write's managedFields).
fn last_field(fpath: &str) -> &str {
    match fpath.as_bytes().iter().rposition(|&b| b == b'.') {
        Some(i) => &fpath[i + 1..],
        None => fpath,
    }
}

/// `x-kubernetes-list-type` of the list at `fpath` (dotted field names, no indices).
pub fn list_type(fpath: &str) -> ListType {
    use ListType::*;
    let last = last_field(fpath);
    match last {
        "finalizers" if fpath == "metadata.finalizers" => Set,
        "podCIDRs" | "volumeLifecycleModes" => Set,
        "ownerReferences" => Map(&["uid"]),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "env"
        | "resourceClaims"
        | "schedulingGates" => Map(&["name"]),
        "volumeMounts" => Map(&["mountPath"]),
        "volumeDevices" => Map(&["devicePath"]),
        "ports" if fpath.ends_with("ontainers.ports") => Map(&["containerPort", "protocol"]),
        "hostAliases" | "podIPs" | "hostIPs" => Map(&["ip"]),
        "topologySpreadConstraints" => Map(&["topologyKey", "whenUnsatisfiable"]),
        "conditions" if fpath.starts_with("status.") => Map(&["type"]),
        "addresses" if fpath == "status.addresses" => Map(&["type"]),
        _ => Atomic,
    }
}

/// Structs marked `+structType=atomic` (replaced and owned as a whole).
pub fn atomic_struct(fpath: &str) -> bool {
    let last = last_field(fpath);
    matches!(
        last,
        "claimRef"
            | "selector"
            | "nodeTopology"
            | "dataSource"
            | "dataSourceRef"
            | "labelSelector"
            | "fieldRef"
            | "resourceFieldRef"
            | "configMapKeyRef"
            | "secretKeyRef"
            | "involvedObject"
            | "regarding"
            | "related"
            | "target"
            | "namespaceSelector"
    ) || fpath.ends_with("nodeAffinity.required")
}

/// Free-form `map[string]...` fields: their keys are members of a field set.
pub fn map_type(fpath: &str) -> bool {
    let last = last_field(fpath);
    matches!(
        last,
        "labels"
            | "annotations"
            | "capacity"
            | "allocatable"
            | "requests"
            | "limits"
            | "nodeSelector"
            | "parameters"
            | "volumeAttributes"
            | "overhead"
            | "allocatedResources"
            | "matchLabels"
            | "data"
            | "attributes"
    )
}

fn child_fpath(fpath: &str, k: &str) -> String {
    if fpath.is_empty() {
        k.to_string()
    } else {
        format!("{fpath}.{k}")
    }
}

fn is_granular_list(v: &Value, fpath: &str) -> bool {
    v.is_array() && list_type(fpath) != ListType::Atomic
}
fn is_granular_obj(v: &Value, fpath: &str) -> bool {
    v.is_object() && !atomic_struct(fpath)
}

/// The path element of a list item, or `None` when the item lacks its keys.
fn item_pe(item: &Value, lt: ListType, idx: usize) -> PE {
    match lt {
        ListType::Set => {
            // `item.to_string()`'s bytes, without the formatting machinery.
            let mut s = String::with_capacity(32);
            crate::store::core::push_json(&mut s, item);
            PE::Value(s)
        }
        ListType::Map(keys) => {
            // The compact JSON object of the keys present, sorted by name: written directly
            // (the key lists of `list_type` are sorted, and their names need no escaping).
            let mut s = String::with_capacity(32);
            s.push('{');
            for k in keys {
                if let Some(v) = item.field(k) {
                    if s.len() > 1 {
                        s.push(',');
                    }
                    s.push('"');
                    s.push_str(k);
                    s.push_str("\":");
                    crate::store::core::push_json(&mut s, v);
                }
            }
            s.push('}');
            PE::Key(s)
        }
        ListType::Atomic => PE::Index(idx),
    }
}

// ------------------------------------------------------------------ sets from objects

/// `TypedValue.ToFieldSet`: the set an applied configuration claims.
pub fn to_set(v: &Value) -> Set {
    let mut s = Set::new();
    walk_to_set(v, "", &mut s);
    s
}

/// Adds to `node` (the set below `v`'s own path) what `v` claims.
fn walk_to_set(v: &Value, fpath: &str, node: &mut Set) {
    if let Value::Object(m) = v {
        let parent_is_map = map_type(fpath);
        for (k, c) in m {
            let cf = child_fpath(fpath, k);
            let mut child = Set::new();
            if is_granular_obj(c, &cf) {
                walk_to_set(c, &cf, &mut child);
                // Keys of free-form maps are members; struct fields only through their
                // leaves (SMD v4 `toFieldSet`: an empty struct claims nothing).
                if parent_is_map {
                    child.member = true;
                }
            } else if is_granular_list(c, &cf) {
                let lt = list_type(&cf);
                for (i, item) in c.as_array().expect("array").iter().enumerate() {
                    let mut ic = Set::new();
                    if lt != ListType::Set {
                        walk_to_set(item, &cf, &mut ic);
                    }
                    ic.member = true;
                    child
                        .children
                        .entry(item_pe(item, lt, i))
                        .or_default()
                        .union_owned(ic);
                }
            } else {
                child.member = true;
            }
            if !child.is_empty() {
                node.children
                    .entry(PE::Field(k.clone()))
                    .or_default()
                    .union_owned(child);
            }
        }
    }
}

#[derive(Default, Debug)]
pub struct Comparison {
    /// Added or modified (every caller wants their union).
    pub changed: Set,
    pub removed: Set,
}

/// `TypedValue.Compare(old, new)`: leaves (scalars, atomic lists/structs, and maps or lists
/// empty on both sides) are added/removed/modified; a granular map or list node absent on one
/// side is itself added/removed (the "post item hook"), which is what puts `.` into fieldsV1.
/// A `null` counts as present (Go's zero values of non-omitempty fields).
pub fn compare(old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    let mut fpath = String::new();
    cmp(
        Some(old),
        Some(new),
        true,
        &mut fpath,
        &mut c.changed,
        &mut c.removed,
    );
    c
}

fn same_shape(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a.filter(|v| !v.is_null()), b.filter(|v| !v.is_null())) {
        (Some(x), Some(y)) => (x.is_object() && y.is_object()) || (x.is_array() && y.is_array()),
        _ => true,
    }
}

/// `ch`/`rm` are the changed/removed sets at this node's path; the root is never a member.
fn leaf(o: Option<&Value>, n: Option<&Value>, root: bool, ch: &mut Set, rm: &mut Set) {
    if root {
        return;
    }
    match (o, n) {
        (None, Some(_)) => ch.member = true,
        (Some(_), None) => rm.member = true,
        (Some(a), Some(b)) if a != b => ch.member = true,
        _ => {}
    }
}

fn post(o: Option<&Value>, n: Option<&Value>, root: bool, ch: &mut Set, rm: &mut Set) {
    if root {
        return;
    }
    if o.is_none() {
        ch.member = true;
    } else if n.is_none() {
        rm.member = true;
    }
}

/// The items of a granular list, first occurrence of each path element.
/// The items of an old and a new granular list by path element: every old one in its order,
/// then the new ones the old list lacks, each with its old and new value.
fn paired_items<'a, 'v>(
    oi: &'a [(PE, &'v Value)],
    ni: &'a [(PE, &'v Value)],
) -> Vec<(&'a PE, Option<&'v Value>, Option<&'v Value>)> {
    let mut pes: Vec<&PE> = oi.iter().map(|(p, _)| p).collect();
    for (p, _) in ni {
        if !pes.contains(&p) {
            pes.push(p);
        }
    }
    pes.into_iter()
        .map(|pe| {
            let ov = oi.iter().find(|(p, _)| p == pe).map(|(_, v)| *v);
            let nv = ni.iter().find(|(p, _)| p == pe).map(|(_, v)| *v);
            (pe, ov, nv)
        })
        .collect()
}

fn index_items(l: Option<&Value>, lt: ListType) -> Vec<(PE, &Value)> {
    let mut out: Vec<(PE, &Value)> =
        Vec::with_capacity(l.and_then(Value::as_array).map_or(0, Vec::len));
    for (i, it) in l
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let pe = item_pe(it, lt, i);
        if !out.iter().any(|(p, _)| *p == pe) {
            out.push((pe, it));
        }
    }
    out
}

/// The union of two objects' keys, each with its value on either side: in step while both
/// list the same keys in the same order (an update mostly keeps every key where it was), by
/// lookup from the first difference on. The order differs from "old's keys, then new's"
/// only where that order cannot matter (the callers file the children by name).
fn pairs<'v>(
    om: Option<&'v Map<String, Value>>,
    nm: Option<&'v Map<String, Value>>,
) -> impl Iterator<Item = (&'v String, Option<&'v Value>, Option<&'v Value>)> {
    let p = match (om, nm) {
        (Some(o), Some(n)) => o.keys().zip(n.keys()).take_while(|(a, b)| a == b).count(),
        _ => 0,
    };
    let head = om
        .into_iter()
        .flat_map(move |o| o.iter().take(p))
        .zip(nm.into_iter().flat_map(move |n| n.values().take(p)))
        .map(|((k, ov), nv)| (k, Some(ov), Some(nv)));
    let old_rest = om
        .into_iter()
        .flat_map(move |o| o.iter().skip(p))
        .map(move |(k, ov)| (k, Some(ov), nm.and_then(|n| n.get(k))));
    let new_rest = nm
        .into_iter()
        .flat_map(move |n| n.iter().skip(p))
        .filter(move |(k, _)| !om.is_some_and(|o| o.contains_key(*k)))
        .map(|(k, nv)| (k, None, Some(nv)));
    head.chain(old_rest).chain(new_rest)
}

/// `(ignore.filter(c.changed), ignore.filter(c.removed))` of `c = compare(old, new)`, without
/// walking the ignored subtrees at all (`metadata.managedFields`, a status the write cannot
/// change…).
fn compare_filtered(old: &Value, new: &Value, ignore: &Ignore) -> (Set, Set) {
    let (mut ch, mut rm) = (Set::new(), Set::new());
    let mut fpath = String::new();
    let mut fields: Vec<&str> = Vec::new();
    let cx = EmitCx::new(ignore);
    cmp_in(
        Some(old),
        Some(new),
        true,
        &mut fpath,
        &mut ch,
        &mut rm,
        Some((&mut fields, &cx)),
    );
    (ch, rm)
}

/// Compares one node. The results go straight into the trie: a child's sets are attached
/// (with its path element allocated) only when they are not empty, and `fpath` is one
/// buffer grown and truncated on the way down, so an unchanged subtree allocates nothing.
fn cmp(
    o: Option<&Value>,
    n: Option<&Value>,
    root: bool,
    fpath: &mut String,
    ch: &mut Set,
    rm: &mut Set,
) {
    cmp_in(o, n, root, fpath, ch, rm, None)
}

/// [`cmp`], optionally applying an [`Ignore`] on the way (see [`compare_filtered`]): `ig` is
/// the path so far while it is made of fields only, with the prefixes to skip.
fn cmp_in<'v>(
    o: Option<&'v Value>,
    n: Option<&'v Value>,
    root: bool,
    fpath: &mut String,
    ch: &mut Set,
    rm: &mut Set,
    mut ig: Option<(&mut Vec<&'v str>, &EmitCx)>,
) {
    if o.is_none() && n.is_none() {
        return;
    }
    let sample = n.filter(|v| !v.is_null()).or(o.filter(|v| !v.is_null()));
    if !same_shape(o, n) {
        return leaf(o, n, root, ch, rm);
    }
    // Equal subtrees add, remove and modify nothing (an unchanged spec under a status write).
    // Above an ignored path the children are compared one by one instead, so the ignored
    // ones are never walked.
    if let (Some(a), Some(b)) = (o, n) {
        let above_ignored = ig.as_ref().is_some_and(|(fs, cx)| cx.above_ignored(fs));
        if !above_ignored && json_eq(a, b) {
            return;
        }
    }
    match sample {
        Some(v) if is_granular_obj(v, fpath) => {
            let om = o.and_then(Value::as_object);
            let nm = n.and_then(Value::as_object);
            if om.is_none_or(Map::is_empty) && nm.is_none_or(Map::is_empty) {
                return leaf(o, n, root, ch, rm);
            }
            for (k, ov, nv) in pairs(om, nm) {
                let mut child_ig = None;
                let mut is_metadata = false;
                if let Some((fs, cx)) = ig.as_mut() {
                    match cx.enter(fs, k) {
                        Enter::Skip => continue,
                        Enter::Field { metadata, track } => {
                            is_metadata = metadata;
                            if track {
                                child_ig = Some((&mut **fs, *cx));
                            }
                        }
                    }
                }
                let (mut cch, mut crm) = in_field(fpath, k, |fpath| {
                    let (mut cch, mut crm) = (Set::new(), Set::new());
                    cmp_in(ov, nv, false, fpath, &mut cch, &mut crm, child_ig);
                    (cch, crm)
                });
                if let Some((fs, _)) = ig.as_mut() {
                    fs.pop();
                }
                if is_metadata {
                    // `Ignore::filter`: `.metadata` itself is nobody's.
                    cch.member = false;
                    crm.member = false;
                }
                if !cch.is_empty() {
                    ch.children.insert(PE::Field(k.clone()), cch);
                }
                if !crm.is_empty() {
                    rm.children.insert(PE::Field(k.clone()), crm);
                }
            }
            post(o, n, root, ch, rm);
        }
        Some(v) if is_granular_list(v, fpath) => {
            let lt = list_type(fpath);
            let (oi, ni) = (index_items(o, lt), index_items(n, lt));
            if oi.is_empty() && ni.is_empty() {
                return leaf(o, n, root, ch, rm);
            }
            for (pe, ov, nv) in paired_items(&oi, &ni) {
                let (mut cch, mut crm) = (Set::new(), Set::new());
                cmp(ov, nv, false, fpath, &mut cch, &mut crm);
                if !cch.is_empty() {
                    ch.children.insert(pe.clone(), cch);
                }
                if !crm.is_empty() {
                    rm.children.insert(pe.clone(), crm);
                }
            }
            post(o, n, root, ch, rm);
        }
        _ => leaf(o, n, root, ch, rm),
    }
}

// ------------------------------------------------------------------ fieldsV1 encoding

pub fn encode(set: &Set) -> Value {
    let mut m = Map::new();
    if set.member && !set.children.is_empty() {
        m.insert(".".into(), json!({}));
    }
    for (pe, c) in &set.children {
        m.insert(pe.encode(), encode(c));
    }
    Value::Object(m)
}

pub fn decode(v: &Value) -> Set {
    fn walk(v: &Value, root: bool) -> Set {
        let mut s = Set::new();
        let Some(m) = v.as_object() else { return s };
        if m.is_empty() && !root {
            s.member = true;
        }
        for (k, c) in m {
            if k == "." {
                s.member = true;
                continue;
            }
            if let Some(pe) = PE::decode(k) {
                let child = walk(c, false);
                if !child.is_empty() {
                    s.children.entry(pe).or_default().union_owned(child);
                }
            }
        }
        s
    }
    walk(v, true)
}

// ------------------------------------------------------------------ managers

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: String,
    pub time: Option<String>,
    pub set: Set,
}

impl Entry {
    fn key(&self) -> (String, String, String, String) {
        let av = if self.operation == "Apply" {
            String::new()
        } else {
            self.api_version.clone()
        };
        (
            self.manager.clone(),
            self.operation.clone(),
            self.subresource.clone(),
            av,
        )
    }
    /// `printManager`: how conflicts name this manager.
    fn printed(&self) -> String {
        let mut s = super::field::go_quote(&self.manager);
        if !self.subresource.is_empty() {
            s = format!(
                "{s} with subresource {}",
                super::field::go_quote(&self.subresource)
            );
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), encode(&self.set));
        if !self.subresource.is_empty() {
            m.insert("subresource".into(), json!(self.subresource));
        }
        Value::Object(m)
    }
}

pub fn read_entries(obj: &Value) -> Vec<Entry> {
    let Some(list) = list_of(obj).and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter().map(read_entry).collect()
}

/// One entry of `metadata.managedFields`.
pub fn read_entry(e: &Value) -> Entry {
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Entry {
        manager: s("manager"),
        operation: s("operation"),
        api_version: s("apiVersion"),
        subresource: s("subresource"),
        time: e.get("time").and_then(Value::as_str).map(String::from),
        set: e.get("fieldsV1").map(decode).unwrap_or_default(),
    }
}

/// Writes the entries sorted as upstream does (Apply before Update, then by time, manager…).
pub fn write_entries(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.shift_remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::to_json).collect()),
        );
    }
}

/// What a write may own: upstream's strip set plus the strategy's reset fields.
#[derive(Clone, Debug)]
pub struct Ignore {
    /// Path prefixes (field names) whose whole subtree is not tracked.
    pub prefixes: Vec<&'static [&'static str]>,
}

impl Ignore {
    pub fn new(reset: &[&'static [&'static str]]) -> Ignore {
        // Static slices: built on every write, so no allocation per prefix.
        let mut prefixes: Vec<&'static [&'static str]> = vec![
            &["apiVersion"],
            &["kind"],
            &["metadata", "name"],
            &["metadata", "namespace"],
            &["metadata", "creationTimestamp"],
            &["metadata", "selfLink"],
            &["metadata", "uid"],
            &["metadata", "clusterName"],
            &["metadata", "generation"],
            &["metadata", "managedFields"],
            &["metadata", "resourceVersion"],
        ];
        prefixes.extend_from_slice(reset);
        Ignore { prefixes }
    }
    /// Drops `.metadata` itself and every path under one of the prefixes.
    pub fn filter(&self, mut s: Set) -> Set {
        let metadata = PE::Field("metadata".into());
        if let Some(m) = s.children.get_mut(&metadata) {
            m.member = false;
            if m.is_empty() {
                s.children.remove(&metadata);
            }
        }
        for pre in &self.prefixes {
            s.remove_prefix(pre);
        }
        s
    }
}

/// `metadata.managedFields` (a direct lookup: `Value::pointer` allocates for every token).
fn list_of(obj: &Value) -> Option<&Value> {
    obj.field("metadata")?.field("managedFields")
}

/// The managers of `new` for this write: user-supplied managedFields (a changed list in the
/// request body) replace the stored ones, as kube-apiserver honours them.
fn base_entries(old: Option<&Value>, new: &Value) -> Vec<Entry> {
    let nm = list_of(new);
    let om = old.and_then(list_of);
    // An absent or empty list means "not touched" (clients unaware of the field must not
    // strip it), so the stored ownership carries over.
    let given = nm.and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    match (given, nm, om) {
        (true, Some(n), o) if Some(n) != o => read_entries(new),
        _ => old.map(read_entries).unwrap_or_default(),
    }
}

/// `managedFields: [{}]` in a non-apply write strips all ownership (and this write is not
/// tracked either), as the Server-Side Apply documentation describes.
fn is_reset(new: &Value) -> bool {
    list_of(new)
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() == 1 && a[0].as_object().is_some_and(Map::is_empty))
}

/// Records an Update-operation write of `old` → `new` by `manager` into `new`'s managedFields.
/// `old_for_compare` is the stored object, or the kind's empty skeleton on create.
///
/// Every write of the API server comes through here, so the usual shapes take a short cut
/// with byte-identical output (see [`record_update_fast`]); anything else takes the general
/// path: every entry decoded into a trie, compared, re-encoded.
#[allow(clippy::too_many_arguments)]
pub fn record_update(
    old: Option<&Value>,
    old_for_compare: &Value,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
    ignore: &Ignore,
    now: &str,
) {
    if is_reset(new) {
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.shift_remove("managedFields");
        }
        return;
    }
    let w = Writer {
        manager,
        api_version,
        subresource,
        now,
    };
    if !reference_only() && record_update_fast(old, old_for_compare, new, &w, ignore) {
        return;
    }
    record_update_general(old, old_for_compare, new, &w, ignore);
}

/// The general path of [`record_update`] (the fast path's specification).
fn record_update_general(
    old: Option<&Value>,
    old_for_compare: &Value,
    new: &mut Value,
    w: &Writer,
    ignore: &Ignore,
) {
    let Writer {
        manager,
        api_version,
        subresource,
        now,
    } = *w;
    let mut entries = base_entries(old, new);
    let c = compare(old_for_compare, new);
    let changed = ignore.filter(c.changed);
    let removed = ignore.filter(c.removed);
    // Upstream runs the write as a temporary "current-operation" manager: every existing
    // entry (the writer's own included) loses what was changed or removed, then the writer
    // gains what this write changed — and only then is its timestamp renewed.
    for e in entries.iter_mut() {
        e.set.subtract(&changed);
        e.set.subtract(&removed);
    }
    if !changed.is_empty() {
        let me = Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            subresource: subresource.to_string(),
            time: None,
            set: Set::new(),
        };
        let my_key = me.key();
        let idx = match entries.iter().position(|e| e.key() == my_key) {
            Some(i) => i,
            None => {
                entries.push(me);
                entries.len() - 1
            }
        };
        entries[idx].set.union_owned(changed);
        entries[idx].time = (!now.is_empty()).then(|| now.to_string());
    }
    cap_update_managers(&mut entries);
    write_entries(new, entries);
}

/// Who writes, for [`record_update`].
#[derive(Clone, Copy)]
struct Writer<'a> {
    manager: &'a str,
    api_version: &'a str,
    subresource: &'a str,
    now: &'a str,
}

// ------------------------------------------------------------------ record_update, fast

/// [`record_update`] without decoding and re-encoding the entries the write does not touch.
/// Returns false (having changed nothing) when the general path must run: an entry not in
/// the exact form [`Entry::to_json`] writes (so re-encoding could change its bytes), a
/// `metadata` that is not an object, or a write that may bring the Update entries over
/// [`MAX_UPDATE_MANAGERS`].
///
/// - No previous entry (every create): the writer's set is `changed`, written straight
///   from the objects as fieldsV1 ([`changed_fields`]) — or, on a create, taken from a
///   recent create of the same shape ([`create_entry_memo`]).
/// - Otherwise the comparison runs as usual, and only the entries holding a member of
///   `changed`/`removed`, plus the writer's own, are decoded, edited and re-encoded; the
///   others keep their JSON — moved out of `new` when it carries the stored list unchanged
///   (PUT bodies and patch results do), cloned from `old` otherwise.
fn record_update_fast(
    old: Option<&Value>,
    old_for_compare: &Value,
    new: &mut Value,
    w: &Writer,
    ignore: &Ignore,
) -> bool {
    if !new.field("metadata").is_some_and(Value::is_object) {
        return false;
    }
    // `base_entries`, reading where the list comes from instead of decoding it.
    let nm = list_of(new);
    let om = old.and_then(list_of);
    // Usually `new` carries the stored list untouched, spelled the same way.
    let identical = opt_same_bytes(nm, om);
    let same = identical || opt_json_eq(nm, om);
    let given = nm.and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    let from_new = given && !same;
    let source = if from_new { nm } else { om };
    let base: &[Value] = source
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if base.is_empty() {
        // A create compares with its kind's skeleton: its entry is usually a recent one.
        let entry = if old.is_none() {
            create_entry_memo(old_for_compare, new, ignore, w)
        } else {
            create_entry(old_for_compare, new, ignore, w)
        };
        put_list(new, entry.map(|e| Value::Array(vec![e])));
        return true;
    }
    // Every entry must re-encode to its own bytes, or the general path decides.
    let mut updaters = 0;
    let mut mine: Option<usize> = None;
    for (i, e) in base.iter().enumerate() {
        let Some(h) = canonical_entry(e) else {
            return false;
        };
        if h.operation == "Update" {
            updaters += 1;
        }
        if mine.is_none()
            && h.manager == w.manager
            && h.operation == "Update"
            && h.subresource == w.subresource
            && h.api_version == w.api_version
        {
            mine = Some(i);
        }
    }
    if updaters + usize::from(mine.is_none()) > MAX_UPDATE_MANAGERS {
        return false;
    }
    // The list to edit, owned: moved out of `new` when it is the base list itself or the
    // very same bytes (equal as JSON and canonical too — a client may send the stored list
    // back with its keys in another order, and then `old`'s spelling is the one kept).
    let take_new = from_new
        || identical
        || (same
            && nm
                .and_then(Value::as_array)
                .is_some_and(|l| l.iter().all(|e| canonical_entry(e).is_some())));
    let (changed, removed) = compare_filtered(old_for_compare, new, ignore);
    let mut list: Vec<Value> = if take_new {
        match new
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .and_then(|m| m.get_mut("managedFields"))
            .map(Value::take)
        {
            Some(Value::Array(a)) => a,
            _ => unreachable!("checked above"),
        }
    } else {
        base.to_vec()
    };
    let mut buf = String::new();
    let mut out: Vec<Value> = Vec::with_capacity(list.len() + 1);
    for (i, e) in list.iter_mut().enumerate() {
        let is_mine = mine == Some(i) && !changed.is_empty();
        let fields = &e["fieldsV1"];
        if !is_mine && !touches(fields, &changed, &mut buf) && !touches(fields, &removed, &mut buf)
        {
            out.push(e.take());
            continue;
        }
        let mut set = decode(fields);
        set.subtract(&changed);
        set.subtract(&removed);
        let h = entry_header(e).expect("checked above");
        let mut time = h.time;
        if is_mine {
            set.union_with(&changed);
            time = (!w.now.is_empty()).then_some(w.now);
        }
        if !set.is_empty() {
            let hw = Writer {
                manager: h.manager,
                api_version: h.api_version,
                subresource: h.subresource,
                now: "",
            };
            out.push(entry_json(&hw, h.operation, time, encode(&set)));
        }
    }
    if mine.is_none() && !changed.is_empty() {
        out.push(entry_json(
            w,
            "Update",
            (!w.now.is_empty()).then_some(w.now),
            encode(&changed),
        ));
    }
    // `write_entries`' order (a stable sort, as there).
    if out.len() > 1 {
        let mut order: Vec<usize> = (0..out.len()).collect();
        {
            let keys: Vec<_> = out
                .iter()
                .map(|e| entry_header(e).expect("canonical").sort_key())
                .collect();
            order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
        }
        out = order.into_iter().map(|i| out[i].take()).collect();
    }
    put_list(new, (!out.is_empty()).then_some(Value::Array(out)));
    true
}

/// `write_entries`' last step: `metadata.managedFields` set (in place when present) or removed.
fn put_list(new: &mut Value, list: Option<Value>) {
    let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    match list {
        Some(l) => {
            meta.insert("managedFields".into(), l);
        }
        None => {
            meta.shift_remove("managedFields");
        }
    }
}

/// [`Entry::to_json`] from borrowed parts.
fn entry_json(w: &Writer, operation: &str, time: Option<&str>, fields: Value) -> Value {
    let mut m = Map::with_capacity(7);
    m.insert("manager".into(), Value::String(w.manager.to_string()));
    m.insert("operation".into(), Value::String(operation.to_string()));
    m.insert(
        "apiVersion".into(),
        Value::String(w.api_version.to_string()),
    );
    if let Some(t) = time {
        m.insert("time".into(), Value::String(t.to_string()));
    }
    m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
    m.insert("fieldsV1".into(), fields);
    if !w.subresource.is_empty() {
        m.insert(
            "subresource".into(),
            Value::String(w.subresource.to_string()),
        );
    }
    Value::Object(m)
}

/// The parts of a managedFields entry, borrowed from its JSON.
struct Header<'a> {
    manager: &'a str,
    operation: &'a str,
    api_version: &'a str,
    time: Option<&'a str>,
    subresource: &'a str,
}

impl<'a> Header<'a> {
    /// `write_entries`' sort key.
    fn sort_key(&self) -> (&'a str, Option<&'a str>, &'a str, &'a str, &'a str) {
        (
            self.operation,
            self.time,
            self.manager,
            self.api_version,
            self.subresource,
        )
    }
}

/// [`canonical_entry`] of an entry whose fieldsV1 is known to be canonical.
fn entry_header(e: &Value) -> Option<Header<'_>> {
    entry_parts(e).map(|(h, _)| h)
}

/// The entry's parts when `Entry::to_json(read_entries(e))` would give back exactly `e`: the
/// keys in `to_json`'s order with string values, `fieldsType: FieldsV1`, a non-empty
/// subresource when present, and a fieldsV1 in canonical form ([`canonical_fields`]).
fn canonical_entry(e: &Value) -> Option<Header<'_>> {
    let (h, fields) = entry_parts(e)?;
    canonical_fields(fields, true).then_some(h)
}

/// The entry's parts and its fieldsV1 when all but the fieldsV1 are as `Entry::to_json`
/// writes them.
fn entry_parts(e: &Value) -> Option<(Header<'_>, &Value)> {
    let m = e.as_object()?;
    let mut it = m.iter().peekable();
    let mut field = |name: &str| -> Option<&Value> {
        let (k, v) = it.next()?;
        (k == name).then_some(v)
    };
    let manager = field("manager")?.as_str()?;
    let operation = field("operation")?.as_str()?;
    let api_version = field("apiVersion")?.as_str()?;
    let time = match it.peek() {
        Some((k, v)) if *k == "time" => {
            let t = v.as_str()?;
            it.next();
            Some(t)
        }
        _ => None,
    };
    let (k, v) = it.next()?;
    if k != "fieldsType" || v.as_str() != Some("FieldsV1") {
        return None;
    }
    let (k, fields) = it.next()?;
    if k != "fieldsV1" {
        return None;
    }
    let subresource = match it.next() {
        None => "",
        Some((k, v)) if k == "subresource" => {
            let s = v.as_str()?;
            if s.is_empty() || it.next().is_some() {
                return None;
            }
            s
        }
        Some(_) => return None,
    };
    Some((
        Header {
            manager,
            operation,
            api_version,
            time,
            subresource,
        },
        fields,
    ))
}

/// Whether `encode(decode(v)) == v` (with a non-empty set at the root): every node an object,
/// `.` first with value `{}` and only beside children, every other key a path element in
/// [`PE::encode`]'s spelling, in the trie's order. Such a node is never empty: it is `{}`
/// (a member) or has a child, which is itself non-empty.
fn canonical_fields(v: &Value, root: bool) -> bool {
    let Some(m) = v.as_object() else {
        return false;
    };
    if m.is_empty() {
        return !root;
    }
    let mut it = m.iter().peekable();
    if let Some((k, dot)) = it.peek() {
        if *k == "." {
            if root || !dot.as_object().is_some_and(Map::is_empty) || m.len() == 1 {
                return false;
            }
            it.next();
        }
    }
    let mut prev: Option<(u8, &str, usize)> = None;
    for (k, c) in it {
        let Some(cur) = pe_rank(k) else {
            return false;
        };
        if let Some(p) = prev {
            if pe_order(p, cur) != std::cmp::Ordering::Less {
                return false;
            }
        }
        if !canonical_fields(c, false) {
            return false;
        }
        prev = Some(cur);
    }
    true
}

/// A fieldsV1 key as (variant rank in `PE`'s order, text, index), or `None` when it does not
/// decode to a path element or would be spelled differently when encoded again.
fn pe_rank(k: &str) -> Option<(u8, &str, usize)> {
    let (t, rest) = k.split_at_checked(2)?;
    match t {
        "f:" => Some((0, rest, 0)),
        "k:" => Some((1, rest, 0)),
        "v:" => Some((2, rest, 0)),
        "i:" => {
            let i: usize = rest.parse().ok()?;
            (i.to_string() == rest).then_some((3, rest, i))
        }
        _ => None,
    }
}

/// `PE`'s derived order on [`pe_rank`] triples.
fn pe_order(a: (u8, &str, usize), b: (u8, &str, usize)) -> std::cmp::Ordering {
    a.0.cmp(&b.0).then_with(|| {
        if a.0 == 3 {
            a.2.cmp(&b.2)
        } else {
            a.1.cmp(b.1)
        }
    })
}

/// Whether subtracting `set` from the canonical fieldsV1 `fields` changes it: some member of
/// `set` is a member there.
fn touches(fields: &Value, set: &Set, buf: &mut String) -> bool {
    let Some(m) = fields.as_object() else {
        return false;
    };
    if set.member && (m.is_empty() || m.contains_key(".")) {
        return true;
    }
    for (pe, c) in &set.children {
        buf.clear();
        pe.encode_into(buf);
        if let Some(fc) = m.get(buf.as_str()) {
            if touches(fc, c, buf) {
                return true;
            }
        }
    }
    false
}

/// A node of the set being written by [`changed_fields`]: its own membership and its
/// children already encoded.
#[derive(Default)]
struct Emit {
    member: bool,
    children: Vec<(String, Value)>,
}

impl Emit {
    fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }
    /// [`encode`] of the node: `.` first, then the children in the trie's order. A node's
    /// children are all fields, or all items of one list (one kind of path element), so
    /// their encoded keys sort as the path elements do.
    fn into_map(mut self) -> Map<String, Value> {
        self.children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let dot = self.member && !self.children.is_empty();
        let mut m = Map::with_capacity(self.children.len() + usize::from(dot));
        if dot {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, v) in self.children {
            m.insert(k, v);
        }
        m
    }
}

/// `encode(ignore.filter(compare(old, new).changed))`, written as it is found: the same walk
/// as [`cmp`] for the `changed` side alone, the ignored prefixes skipped and `.metadata`
/// itself never a member, as [`Ignore::filter`] leaves them.
fn changed_fields(old: &Value, new: &Value, ignore: &Ignore) -> Map<String, Value> {
    let mut fpath = String::new();
    let mut fields: Vec<&str> = Vec::new();
    let cx = EmitCx::new(ignore);
    let e = emit_changed(
        Some(old),
        Some(new),
        true,
        &mut fpath,
        Some(&mut fields),
        &cx,
    );
    e.into_map()
}

/// The ignored prefixes, for the walks that apply them as they go.
struct EmitCx<'i> {
    ignore: &'i Ignore,
    /// The longest ignored prefix: below it no field path can be ignored.
    depth: usize,
}

/// What [`EmitCx::enter`] makes of a field.
enum Enter {
    /// Ignored: neither it nor anything below it is anyone's.
    Skip,
    /// Walked; `metadata`: it is `.metadata` (never a member itself); `track`: the ignored
    /// prefixes still matter below it.
    Field { metadata: bool, track: bool },
}

impl<'i> EmitCx<'i> {
    fn new(ignore: &'i Ignore) -> Self {
        EmitCx {
            ignore,
            depth: ignore.prefixes.iter().map(|p| p.len()).max().unwrap_or(0),
        }
    }
    /// Steps into field `k` of the path `fs` (all fields): pushes it, unless it is ignored.
    fn enter<'v>(&self, fs: &mut Vec<&'v str>, k: &'v str) -> Enter {
        fs.push(k);
        if self.ignore.prefixes.contains(&fs.as_slice()) {
            fs.pop();
            return Enter::Skip;
        }
        Enter::Field {
            metadata: fs.len() == 1 && k == "metadata",
            track: fs.len() < self.depth,
        }
    }
    /// Some ignored prefix lies strictly below `fs`.
    fn above_ignored(&self, fs: &[&str]) -> bool {
        self.ignore
            .prefixes
            .iter()
            .any(|p| p.len() > fs.len() && p[..fs.len()] == *fs)
    }
}

/// One node of [`changed_fields`]. `fields`: the path so far while it is made of fields only
/// (what the ignored prefixes are), `None` below a list item or beyond the longest prefix.
fn emit_changed<'v>(
    o: Option<&'v Value>,
    n: Option<&'v Value>,
    root: bool,
    fpath: &mut String,
    mut fields: Option<&mut Vec<&'v str>>,
    cx: &EmitCx,
) -> Emit {
    let mut e = Emit::default();
    if o.is_none() && n.is_none() {
        return e;
    }
    let leaf = |e: &mut Emit| {
        if !root {
            match (o, n) {
                (None, Some(_)) => e.member = true,
                (Some(a), Some(b)) if a != b => e.member = true,
                _ => {}
            }
        }
    };
    if !same_shape(o, n) {
        leaf(&mut e);
        return e;
    }
    if let (Some(a), Some(b)) = (o, n) {
        let above_ignored = fields.as_deref().is_some_and(|fs| cx.above_ignored(fs));
        if !above_ignored && json_eq(a, b) {
            return e;
        }
    }
    let sample = n.filter(|v| !v.is_null()).or(o.filter(|v| !v.is_null()));
    match sample {
        Some(v) if is_granular_obj(v, fpath) => {
            let om = o.and_then(Value::as_object);
            let nm = n.and_then(Value::as_object);
            if om.is_none_or(Map::is_empty) && nm.is_none_or(Map::is_empty) {
                leaf(&mut e);
                return e;
            }
            // Most fields of a write are changed or new (all of a create's): room for them.
            e.children.reserve(nm.map_or(0, Map::len));
            for (k, ov, nv) in pairs(om, nm) {
                let mut child_fields = None;
                let mut is_metadata = false;
                if let Some(fs) = fields.as_deref_mut() {
                    match cx.enter(fs, k) {
                        Enter::Skip => continue,
                        Enter::Field { metadata, track } => {
                            is_metadata = metadata;
                            if track {
                                child_fields = Some(fs);
                            }
                        }
                    }
                }
                // A field only `new` has (every field of a create below the skeleton): all
                // of it is added, written without comparing.
                let c = in_field(fpath, k, |fpath| match (ov, nv) {
                    (None, Some(nv)) if !is_metadata => {
                        Some(added_fields(nv, fpath, child_fields, cx))
                    }
                    _ => {
                        let mut c = emit_changed(ov, nv, false, fpath, child_fields, cx);
                        if is_metadata {
                            c.member = false;
                        }
                        (!c.is_empty()).then(|| c.into_map())
                    }
                });
                if let Some(fs) = fields.as_deref_mut() {
                    fs.pop();
                }
                if let Some(c) = c {
                    e.children.push((field_key(k), Value::Object(c)));
                }
            }
            e.member = !root && o.is_none();
        }
        Some(v) if is_granular_list(v, fpath) => {
            let lt = list_type(fpath);
            let (oi, ni) = (index_items(o, lt), index_items(n, lt));
            if oi.is_empty() && ni.is_empty() {
                leaf(&mut e);
                return e;
            }
            e.children.reserve(ni.len());
            for (pe, ov, nv) in paired_items(&oi, &ni) {
                let c = match (ov, nv) {
                    (None, Some(nv)) => Some(added_fields(nv, fpath, None, cx)),
                    _ => {
                        let c = emit_changed(ov, nv, false, fpath, None, cx);
                        (!c.is_empty()).then(|| c.into_map())
                    }
                };
                if let Some(c) = c {
                    let mut key = String::new();
                    pe.encode_into(&mut key);
                    e.children.push((key, Value::Object(c)));
                }
            }
            e.member = !root && o.is_none();
        }
        _ => leaf(&mut e),
    }
    e
}

/// `f:` and the field's name: a field's key in fieldsV1.
fn field_key(k: &str) -> String {
    let mut key = String::with_capacity(k.len() + 2);
    key.push_str("f:");
    key.push_str(k);
    key
}

/// Runs `f` with field `k` appended to the dotted path `fpath`, which is restored afterwards.
fn in_field<R>(fpath: &mut String, k: &str, f: impl FnOnce(&mut String) -> R) -> R {
    let len = fpath.len();
    if len > 0 {
        fpath.push('.');
    }
    fpath.push_str(k);
    let r = f(fpath);
    fpath.truncate(len);
    r
}

/// `emit_changed(None, Some(n), false, ..).into_map()`: a node below the root that only the
/// new object has. Everything in it is added, so it is a member and so is every node below
/// it; the walk is [`emit_changed`]'s without the comparisons, the pairing of old and new
/// keys and the intermediate [`Emit`] nodes (a create's whole fieldsV1 comes through here).
fn added_fields<'v>(
    n: &'v Value,
    fpath: &mut String,
    mut fields: Option<&mut Vec<&'v str>>,
    cx: &EmitCx,
) -> Map<String, Value> {
    let children = match n {
        // Keys in order (kubectl sends them sorted) and none skipped (no ignored prefix below
        // this point): the map is written in its final order directly, `.` first. (Sorting
        // references to unsorted keys first instead cost more than `Emit` does.)
        Value::Object(nm)
            if fields.is_none()
                && !nm.is_empty()
                && nm.keys().is_sorted()
                && !atomic_struct(fpath) =>
        {
            let mut m = Map::with_capacity(nm.len() + 1);
            m.insert(".".into(), Value::Object(Map::new()));
            for (k, nv) in nm {
                let c = in_field(fpath, k, |fpath| added_fields(nv, fpath, None, cx));
                m.insert(field_key(k), Value::Object(c));
            }
            return m;
        }
        Value::Object(nm) if !nm.is_empty() && !atomic_struct(fpath) => {
            let mut children = Vec::with_capacity(nm.len());
            for (k, nv) in nm {
                let mut child_fields = None;
                if let Some(fs) = fields.as_deref_mut() {
                    match cx.enter(fs, k) {
                        Enter::Skip => continue,
                        Enter::Field { metadata, track } => {
                            // `.metadata` is a child of the root, which always has an old side.
                            debug_assert!(!metadata, "the root is never added");
                            if track {
                                child_fields = Some(fs);
                            }
                        }
                    }
                }
                let c = in_field(fpath, k, |fpath| added_fields(nv, fpath, child_fields, cx));
                if let Some(fs) = fields.as_deref_mut() {
                    fs.pop();
                }
                children.push((field_key(k), Value::Object(c)));
            }
            children
        }
        Value::Array(_) => {
            let lt = list_type(fpath);
            if lt == ListType::Atomic {
                return Map::new();
            }
            // `index_items` keeps the first of items with the same key, as `paired_items`
            // over an empty old side does.
            index_items(Some(n), lt)
                .into_iter()
                .map(|(pe, item)| {
                    let mut key = String::new();
                    pe.encode_into(&mut key);
                    (key, Value::Object(added_fields(item, fpath, None, cx)))
                })
                .collect()
        }
        // A leaf, an empty or atomic object, null: a member without children.
        _ => return Map::new(),
    };
    Emit {
        member: true,
        children,
    }
    .into_map()
}

// ------------------------------------------------------------------ creates, memoized

/// The writer's entry when the base list is empty: `changed` as fieldsV1, if not empty.
fn create_entry(old: &Value, new: &Value, ignore: &Ignore, w: &Writer) -> Option<Value> {
    let set = changed_fields(old, new, ignore);
    let time = (!w.now.is_empty()).then_some(w.now);
    (!set.is_empty()).then(|| entry_json(w, "Update", time, Value::Object(set)))
}

/// How many creates [`create_entry_memo`] remembers per thread.
const MEMO_SIZE: usize = 4;

/// A create's entry and what it was computed from.
struct Memo {
    old: Value,
    prefixes: Vec<&'static [&'static str]>,
    /// The created object (`new`).
    new: Value,
    /// [`create_entry`]'s result.
    entry: Option<Value>,
}

/// The memo of one thread.
struct Memos {
    /// Recent creates, most recently used first.
    recent: Vec<Memo>,
    /// Scratch space for [`same_shape_for_fields`].
    buf: String,
}

thread_local! {
    static MEMO: std::cell::RefCell<Memos> = const {
        std::cell::RefCell::new(Memos {
            recent: Vec::new(),
            buf: String::new(),
        })
    };
}

/// [`create_entry`] of a create, whose `old` is its kind's skeleton. Creates of one kind
/// from one client mostly share their fieldsV1: it holds field names, label keys and list
/// item keys, not the values of plain fields. So a recent create's entry is reused when its
/// object is [`same_shape_for_fields`] as this one, with the same skeleton and ignored
/// prefixes: cloned as it is when the writer and time are the same too, else with a new
/// header. (A clone allocates as a build does, but skips the hashing, sorting, path and
/// schema lookups that make up most of a build.)
fn create_entry_memo(old: &Value, new: &Value, ignore: &Ignore, w: &Writer) -> Option<Value> {
    let hit = MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        let Memos { recent, buf } = &mut *memo;
        let i = recent.iter().position(|m| {
            same_shape_for_fields(&m.new, new, buf)
                && same_prefixes(&m.prefixes, &ignore.prefixes)
                && same_bytes(&m.old, old)
        })?;
        let mut m = recent.remove(i);
        if let Some(e) = m.entry.as_mut() {
            let time = (!w.now.is_empty()).then_some(w.now);
            let current = entry_header(e).is_some_and(|h| {
                h.manager == w.manager
                    && h.api_version == w.api_version
                    && h.subresource == w.subresource
                    && h.time == time
            });
            if !current {
                let fields = e.get_mut("fieldsV1").map(Value::take).expect("written so");
                *e = entry_json(w, "Update", time, fields);
            }
        }
        let out = m.entry.clone();
        recent.insert(0, m);
        Some(out)
    });
    if let Some(e) = hit {
        return e;
    }
    let entry = create_entry(old, new, ignore, w);
    // `same_shape_for_fields` stands for equal trees only against an old side without
    // values (see there); a skeleton has none. A big object is not kept (nor copied).
    if scalar_free(old) && small(new, &mut { MEMO_OBJECT_BUDGET }) {
        MEMO.with(|memo| {
            let recent = &mut memo.borrow_mut().recent;
            recent.truncate(MEMO_SIZE - 1);
            recent.insert(
                0,
                Memo {
                    old: old.clone(),
                    prefixes: ignore.prefixes.clone(),
                    new: new.clone(),
                    entry: entry.clone(),
                },
            );
        });
    }
    entry
}

/// The most an object kept by [`create_entry_memo`] may weigh: one per node and one per 64
/// bytes of text (about 256 KiB of text).
const MEMO_OBJECT_BUDGET: usize = 4096;

/// Whether `v` weighs at most `budget` (see [`MEMO_OBJECT_BUDGET`]); stops as soon as not.
fn small(v: &Value, budget: &mut usize) -> bool {
    let text = |s: &str| s.len() / 64;
    let cost = 1 + match v {
        Value::String(s) => text(s),
        Value::Object(m) => m.keys().map(|k| text(k)).sum(),
        _ => 0,
    };
    let Some(left) = budget.checked_sub(cost) else {
        return false;
    };
    *budget = left;
    match v {
        Value::Object(m) => m.values().all(|c| small(c, budget)),
        Value::Array(a) => a.iter().all(|c| small(c, budget)),
        _ => true,
    }
}

/// Nothing but objects, arrays and nulls.
fn scalar_free(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.values().all(scalar_free),
        Value::Array(a) => a.iter().all(scalar_free),
        Value::Null => true,
        _ => false,
    }
}

/// Whether `changed_fields(old, a, ignore) == changed_fields(old, b, ignore)` follows for any
/// [`scalar_free`] `old` and any `ignore`: the same keys in the same order everywhere, values
/// of the same JSON type, and the same items in granular lists' path elements — a set
/// list's items, an associative list's key fields — compared byte for byte. That is all the
/// walk reads of `new`: the schema lookups go by field names, which paths it skips by field
/// names, `.` by which nodes are objects or lists, and a comparison with a value-free old
/// side (`!=`, [`json_eq`]) only ever finds equal what has no values (strings, numbers and
/// booleans only differ from it), so it comes out the same for both. Plain values (a pod's
/// name, a label's value, an env var's value) may differ.
///
/// `buf`: scratch space for the dotted paths of lists.
fn same_shape_for_fields(a: &Value, b: &Value, buf: &mut String) -> bool {
    same_shape_in(a, b, None, &[], buf)
}

/// The field names from the root to a node, innermost last (the dotted path without list
/// indices, written out only where a list's type is needed).
struct Up<'a> {
    parent: Option<&'a Up<'a>>,
    field: &'a str,
}

fn write_fpath(up: Option<&Up>, buf: &mut String) {
    if let Some(u) = up {
        write_fpath(u.parent, buf);
        if !buf.is_empty() {
            buf.push('.');
        }
        buf.push_str(u.field);
    }
}

/// [`same_shape_for_fields`] at the node whose path is `up`; `exact`: the fields whose
/// values must be the same bytes (an associative list item's keys).
fn same_shape_in(a: &Value, b: &Value, up: Option<&Up>, exact: &[&str], buf: &mut String) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|((xk, xv), (yk, yv))| {
                    xk == yk
                        && match (xv, yv) {
                            // Leaves first, without a call (most nodes are).
                            (Value::String(p), Value::String(q)) => {
                                !exact.contains(&xk.as_str()) || p == q
                            }
                            (Value::Object(_) | Value::Array(_), _) => {
                                if exact.contains(&xk.as_str()) {
                                    same_bytes(xv, yv)
                                } else {
                                    let up = Up {
                                        parent: up,
                                        field: xk,
                                    };
                                    same_shape_in(xv, yv, Some(&up), &[], buf)
                                }
                            }
                            _ => same_leaf(xv, yv) && (!exact.contains(&xk.as_str()) || xv == yv),
                        }
                })
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return false;
            }
            buf.clear();
            write_fpath(up, buf);
            // An item's children are walked with the list's own path.
            match list_type(buf) {
                ListType::Set => x.iter().zip(y).all(|(a, b)| same_bytes(a, b)),
                ListType::Map(keys) => x
                    .iter()
                    .zip(y)
                    .all(|(a, b)| same_shape_in(a, b, up, keys, buf)),
                ListType::Atomic => x
                    .iter()
                    .zip(y)
                    .all(|(a, b)| same_shape_in(a, b, up, &[], buf)),
            }
        }
        _ => same_leaf(a, b),
    }
}

/// Two values that are not both objects or both arrays: of the same JSON type.
fn same_leaf(a: &Value, b: &Value) -> bool {
    matches!(
        (a, b),
        (Value::Null, Value::Null)
            | (Value::Bool(_), Value::Bool(_))
            | (Value::Number(_), Value::Number(_))
            | (Value::String(_), Value::String(_))
    )
}

/// Two lists of ignored prefixes are the same (usually the very same static slices).
fn same_prefixes(a: &[&'static [&'static str]], b: &[&'static [&'static str]]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| std::ptr::eq(*x, *y) || x == y)
}

/// `Value`'s equality (maps compare as sets of entries), walking two maps with their keys in
/// the same order side by side instead of hashing every key of one into the other.
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return false;
            }
            let mut ys = y.iter();
            for (i, (k, v)) in x.iter().enumerate() {
                match ys.next() {
                    Some((yk, yv)) if yk == k => {
                        if !json_eq(v, yv) {
                            return false;
                        }
                    }
                    // Another order from here on: look the rest up.
                    _ => {
                        return x
                            .iter()
                            .skip(i)
                            .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
                    }
                }
            }
            true
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        _ => a == b,
    }
}

/// The same JSON spelled the same way: equal, and every object's keys in the same order.
fn same_bytes(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((xk, xv), (yk, yv))| xk == yk && same_bytes(xv, yv))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_bytes(a, b))
        }
        _ => a == b,
    }
}

fn opt_same_bytes(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_bytes(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn opt_json_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => json_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// At most this many Update entries are kept (kube-apiserver's `DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// `cappedManagersManager`: beyond [`MAX_UPDATE_MANAGERS`] Update entries, the oldest are
/// merged into one `ancient-changes` entry per API version.
fn cap_update_managers(entries: &mut Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    let mut updaters: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].operation == "Update")
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|&x, &y| {
        (&entries[x].time, &entries[x].manager).cmp(&(&entries[y].time, &entries[y].manager))
    });
    let mut length = updaters.len();
    let mut first_of_version: BTreeMap<String, usize> = BTreeMap::new();
    let mut dropped: Vec<usize> = Vec::new();
    for &i in &updaters {
        if length <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = entries[i].api_version.clone();
        match first_of_version.get(&version).copied() {
            None => {
                first_of_version.insert(version, i);
            }
            Some(first) => {
                // The oldest entry of this version becomes the bucket; later ones merge in.
                let set = entries[i].set.clone();
                let time = entries[i].time.clone();
                let bucket = &mut entries[first];
                bucket.manager = "ancient-changes".into();
                bucket.subresource = String::new();
                bucket.set.union_owned(set);
                bucket.time = time;
                dropped.push(i);
                length -= 1;
            }
        }
    }
    let mut i = 0;
    entries.retain(|_| {
        let keep = !dropped.contains(&i);
        i += 1;
        keep
    });
}

// ------------------------------------------------------------------ server-side apply

/// Merges an applied configuration into the live object (SMD `Merge`).
pub fn ssa_merge(live: &Value, config: &Value, fpath: &str) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(r)) if !atomic_struct(fpath) => {
            let mut out = l.clone();
            for (k, rv) in r {
                let cf = child_fpath(fpath, k);
                if rv.is_null() {
                    out.shift_remove(k);
                    continue;
                }
                let merged = match l.get(k) {
                    Some(lv) => ssa_merge(lv, rv, &cf),
                    None => rv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(r)) if list_type(fpath) != ListType::Atomic => {
            // SMD's `visitListItems` ordering: live order, with the items both sides share
            // appearing in the configuration's order and new items where the configuration
            // puts them.
            let lt = list_type(fpath);
            let lhs = index_items(Some(live), lt);
            let rhs = index_items(Some(config), lt);
            let in_rhs = |pe: &PE| rhs.iter().any(|(p, _)| p == pe);
            let in_lhs = |pe: &PE| lhs.iter().find(|(p, _)| p == pe).map(|(_, v)| *v);
            let mut shared: std::collections::VecDeque<&PE> = rhs
                .iter()
                .map(|(p, _)| p)
                .filter(|p| in_lhs(p).is_some())
                .collect();
            let mut next_shared = shared.pop_front();
            let mut merged: Vec<&PE> = Vec::new();
            let item = |lv: Option<&Value>, rv: Option<&Value>| -> Value {
                match (lv, rv) {
                    (Some(a), Some(b)) if lt != ListType::Set => ssa_merge(a, b, fpath),
                    (_, Some(b)) => b.clone(),
                    (Some(a), None) => a.clone(),
                    (None, None) => Value::Null,
                }
            };
            let mut out = Vec::new();
            let (mut li, mut ri) = (0, 0);
            while li < lhs.len() || ri < rhs.len() {
                if li < lhs.len() && ri < rhs.len() {
                    let pe = &lhs[li].0;
                    if *pe == rhs[ri].0 {
                        out.push(item(Some(lhs[li].1), Some(rhs[ri].1)));
                        merged.push(pe);
                        li += 1;
                        ri += 1;
                        next_shared = shared.pop_front();
                        continue;
                    }
                    if in_rhs(pe) && next_shared.is_some_and(|n| n != pe) {
                        li += 1;
                        continue;
                    }
                }
                if li < lhs.len() {
                    let pe = &lhs[li].0;
                    if !in_rhs(pe) {
                        out.push(lhs[li].1.clone());
                        li += 1;
                        continue;
                    }
                    if merged.contains(&pe) {
                        li += 1;
                        continue;
                    }
                }
                if ri < rhs.len() {
                    let pe = &rhs[ri].0;
                    out.push(item(in_lhs(pe), Some(rhs[ri].1)));
                    merged.push(pe);
                    ri += 1;
                    if next_shared == Some(pe) {
                        next_shared = shared.pop_front();
                    }
                }
            }
            Value::Array(out)
        }
        (_, r) => r.clone(),
    }
}

/// Removes the node at `path` (a field, or a list item) from `v`.
fn remove_path(v: &mut Value, path: &[PE], fpath: &str) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match (first, v) {
        (PE::Field(f), Value::Object(m)) => {
            if rest.is_empty() {
                m.shift_remove(f);
            } else if let Some(c) = m.get_mut(f) {
                let cf = child_fpath(fpath, f);
                remove_path(c, rest, &cf);
            }
        }
        (pe, Value::Array(a)) => {
            let lt = list_type(fpath);
            if let Some(i) = a
                .iter()
                .enumerate()
                .position(|(i, it)| item_pe(it, lt, i) == *pe)
            {
                if rest.is_empty() {
                    a.remove(i);
                } else {
                    remove_path(&mut a[i], rest, fpath);
                }
            }
        }
        _ => {}
    }
}

pub struct ApplyArgs<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    pub force: bool,
    pub now: &'a str,
    pub ignore: &'a Ignore,
    /// The kind's empty object (Go zero value), for the `before-first-apply` takeover.
    pub skeleton: &'a Value,
}

/// Server-side apply of `config` onto `live` (`live_for_compare` is the skeleton when the
/// object is absent). Returns the new object with its managedFields, or a 409 conflict.
pub fn apply(
    live: Option<&Value>,
    live_for_compare: &Value,
    config: &Value,
    a: &ApplyArgs,
) -> Result<Value, ApiError> {
    // An object nobody manages yet (created before field management, or written around
    // it) is first attributed to `before-first-apply`, so changing its values conflicts.
    let mut owned_live;
    let mut live = live;
    if let Some(l) = live {
        if read_entries(l).is_empty() {
            owned_live = l.clone();
            let base = a.skeleton.clone();
            record_update(
                None,
                &base,
                &mut owned_live,
                "before-first-apply",
                a.api_version,
                "",
                a.ignore,
                a.now,
            );
            live = Some(&owned_live);
        }
    }
    let live_for_compare = match live {
        Some(l) => l,
        None => live_for_compare,
    };
    let mut entries = live.map(read_entries).unwrap_or_default();
    let mut cfg = config.clone();
    if let Some(m) = cfg.get_mut("metadata").and_then(Value::as_object_mut) {
        m.shift_remove("managedFields");
    }
    let config_set = a.ignore.filter(to_set(&cfg));
    let mut merged = ssa_merge(live_for_compare, &cfg, "");
    let me = Entry {
        manager: a.manager.to_string(),
        operation: "Apply".into(),
        api_version: a.api_version.to_string(),
        subresource: a.subresource.to_string(),
        time: None,
        set: Set::new(),
    };
    let my_key = me.key();
    let last = entries
        .iter()
        .find(|e| e.key() == my_key)
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let mut others = Set::new();
    for e in entries.iter().filter(|e| e.key() != my_key) {
        others.union_with(&e.set);
    }
    // Prune what this manager stopped applying and nobody else owns (deepest first, and
    // never a node under which another manager still owns something).
    let mut to_remove: Vec<Path> = last
        .difference(&config_set)
        .paths()
        .into_iter()
        .filter(|p| !others.contains(p))
        .collect();
    to_remove.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in to_remove {
        let owned_below = others.has_below(&p) || config_set.has_below(&p);
        if !owned_below {
            remove_path(&mut merged, &p, "");
        }
    }
    // Conflicts: values another manager owns that this apply changes.
    let c = compare(live_for_compare, &merged);
    let changed = a.ignore.filter(c.changed);
    let removed = a.ignore.filter(c.removed);
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for e in entries.iter().filter(|e| e.key() != my_key) {
        for p in e.set.intersection(&changed).paths() {
            conflicts.push((e.printed(), p));
        }
    }
    if !conflicts.is_empty() && !a.force {
        return Err(conflict_error(conflicts));
    }
    for e in entries.iter_mut().filter(|e| e.key() != my_key) {
        if a.force {
            e.set.subtract(&changed);
        }
        e.set.subtract(&removed);
    }
    // The applier's timestamp is renewed only when the object changed (a no-op apply
    // returns the live object in kube-apiserver).
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.shift_remove("managedFields");
        }
        v
    };
    let object_changed = live.is_none() || strip(live_for_compare) != strip(&merged);
    let now = (!a.now.is_empty() && object_changed).then(|| a.now.to_string());
    match entries.iter_mut().find(|e| e.key() == my_key) {
        Some(e) => {
            e.set = config_set;
            if now.is_some() {
                e.time = now;
            }
        }
        None => entries.push(Entry {
            set: config_set,
            time: now,
            ..me
        }),
    }
    cap_update_managers(&mut entries);
    write_entries(&mut merged, entries);
    Ok(merged)
}

/// kube-apiserver's `NewConflictError`: 409 Conflict, one FieldManagerConflict cause each.
pub fn conflict_error(mut conflicts: Vec<(String, Path)>) -> ApiError {
    conflicts.sort();
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|(m, p)| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with {m}"),
            field: path_string(p),
        })
        .collect();
    let message = if conflicts.len() == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].0,
            path_string(&conflicts[0].1)
        )
    } else {
        let mut lines = Vec::new();
        let mut last: Option<&str> = None;
        for (m, p) in &conflicts {
            if last != Some(m.as_str()) {
                lines.push(format!("conflicts with {m}:"));
                last = Some(m.as_str());
            }
            lines.push(format!("- {}", path_string(p)));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let mut e = ApiError::new(409, "Conflict", message);
    e.causes = causes;
    e
}

/// Whether the fast paths are off: only ever in tests, which check them against the general
/// paths (see `tests::with_reference`).
#[cfg(not(test))]
#[inline(always)]
fn reference_only() -> bool {
    false
}

#[cfg(test)]
fn reference_only() -> bool {
    tests::reference_only()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;

    thread_local! {
        static REFERENCE: Cell<bool> = const { Cell::new(false) };
    }
    pub(crate) fn reference_only() -> bool {
        REFERENCE.with(Cell::get)
    }
    /// Runs `f` with every fast path of this module switched off (this thread only).
    pub(crate) fn with_reference<T>(f: impl FnOnce() -> T) -> T {
        REFERENCE.with(|r| r.set(true));
        let out = f();
        REFERENCE.with(|r| r.set(false));
        out
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "metadata",
            "labels",
            "annotations",
            "name",
            "spec",
            "status",
            "containers",
            "ports",
            "containerPort",
            "protocol",
            "env",
            "value",
            "conditions",
            "type",
            "finalizers",
            "volumes",
            "claimRef",
            "selector",
            "nodeAffinity",
            "required",
            "capacity",
            "phase",
            "podIPs",
            "ip",
            "generation",
            "uid",
            "resources",
            "requests",
            "managedFields",
            "deletionTimestamp",
            "ownerReferences",
            "a",
            "b",
        ])
        .prop_map(String::from)
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (0i64..3).prop_map(Value::from),
            prop::sample::select(vec!["x", "y", "TCP", "True"]).prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 64, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (0i64..3).prop_map(Value::from),
            prop::sample::select(vec!["x", "y", "TCP"]).prop_map(Value::from),
        ]
    }

    /// An item of an associative list: some of the lists' key fields and a plain one, with
    /// few values (so items collide, lack keys, have null ones), or now and then a scalar.
    fn item() -> impl Strategy<Value = Value> {
        let field = prop::sample::select(vec![
            "name",
            "uid",
            "containerPort",
            "protocol",
            "type",
            "ip",
            "value",
        ]);
        prop_oneof![
            8 => prop::collection::vec((field, scalar()), 0..4).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
            1 => scalar(),
        ]
    }

    /// An object made mostly of granular lists, of both kinds, nested (ports and env lists
    /// in containers), any of them left out or null.
    fn listy() -> impl Strategy<Value = Value> {
        let items = || prop::collection::vec(item(), 0..4);
        (
            (items(), items(), items(), items()),
            (
                prop::collection::vec(scalar(), 0..4),
                items(),
                items(),
                items(),
            ),
            any::<u16>(),
        )
            .prop_map(
                |(
                    (mut containers, ports, env, volumes),
                    (finalizers, owners, conds, ips),
                    drop,
                )| {
                    if let Some(Value::Object(c)) = containers.first_mut() {
                        c.insert("ports".into(), Value::Array(ports));
                        c.insert("env".into(), Value::Array(env));
                    }
                    let mut v = json!({
                        "metadata": {"finalizers": finalizers, "ownerReferences": owners,
                            "labels": {"a": "x"}},
                        "spec": {"containers": containers, "volumes": volumes},
                        "status": {"conditions": conds, "podIPs": ips},
                    });
                    for (bit, path) in [
                        (0, "/metadata/finalizers"),
                        (1, "/metadata/ownerReferences"),
                        (2, "/spec/containers"),
                        (3, "/spec/volumes"),
                        (4, "/status/conditions"),
                        (5, "/status/podIPs"),
                    ] {
                        match drop >> (2 * bit) & 3 {
                            0 => {
                                let (parent, key) = path.rsplit_once('/').unwrap();
                                v.pointer_mut(parent)
                                    .and_then(Value::as_object_mut)
                                    .map(|m| m.shift_remove(key));
                            }
                            1 => *v.pointer_mut(path).unwrap() = Value::Null,
                            _ => {}
                        }
                    }
                    v
                },
            )
    }

    /// Either kind of random object.
    fn any_object() -> impl Strategy<Value = Value> {
        prop_oneof![object(), listy()]
    }

    fn object() -> impl Strategy<Value = Value> {
        (
            prop::collection::vec((key(), value()), 0..4),
            prop::collection::vec((key(), value()), 0..5),
        )
            .prop_map(|(meta, rest)| {
                let mut m: Map<String, Value> = rest.into_iter().collect();
                m.insert("metadata".into(), Value::Object(meta.into_iter().collect()));
                Value::Object(m)
            })
    }

    #[derive(Debug, Clone)]
    struct Step {
        patch: Value,
        fresh: bool,
        writer: usize,
        mf: usize,
        junk: Value,
        now: usize,
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            object(),
            prop::bool::weighted(0.2),
            0..16usize,
            0..9usize,
            value(),
            0..3usize,
        )
            .prop_map(|(patch, fresh, writer, mf, junk, now)| Step {
                patch,
                fresh,
                writer,
                mf,
                junk,
                now,
            })
    }

    fn writer(i: usize) -> (String, &'static str, &'static str, Ignore) {
        match i {
            0 => ("kubectl".into(), "v1", "", Ignore::new(&[&["status"]])),
            1 => (
                "kubelet".into(),
                "v1",
                "status",
                Ignore::new(&[
                    &["spec"],
                    &["metadata", "deletionTimestamp"],
                    &["metadata", "ownerReferences"],
                ]),
            ),
            2 => ("kubectl".into(), "v1", "status", Ignore::new(&[&["spec"]])),
            i => (
                format!("m{i}"),
                if i % 3 == 0 { "v2" } else { "v1" },
                "",
                Ignore::new(&[]),
            ),
        }
    }

    /// `record_update` with the general path only.
    #[allow(clippy::too_many_arguments)]
    fn general(
        old: Option<&Value>,
        base: &Value,
        new: &mut Value,
        manager: &str,
        api_version: &str,
        subresource: &str,
        ignore: &Ignore,
        now: &str,
    ) {
        with_reference(|| {
            record_update(
                old,
                base,
                new,
                manager,
                api_version,
                subresource,
                ignore,
                now,
            )
        })
    }

    fn reversed(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), reversed(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
            v => v.clone(),
        }
    }

    /// `v` with other leaf values: the same strings and numbers everywhere, so list item keys
    /// change together and may collide; with `in_lists` false, only values outside any list
    /// (never a list item's key).
    fn revalued(v: &Value, in_lists: bool) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), revalued(v, in_lists)))
                    .collect(),
            ),
            Value::Array(a) if in_lists => {
                Value::Array(a.iter().map(|v| revalued(v, in_lists)).collect())
            }
            Value::Array(a) => Value::Array(a.clone()),
            Value::String(s) if s == "x" => json!("y"),
            Value::String(_) => json!("x"),
            Value::Number(n) => json!(n.as_i64().map_or(0, |i| (i + 1) % 3)),
            Value::Bool(b) => json!(!b),
            Value::Null => Value::Null,
        }
    }

    /// `v` with its strings, numbers and booleans made nulls.
    fn without_values(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), without_values(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(without_values).collect()),
            _ => Value::Null,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// The fast paths of `record_update` write exactly the bytes of the general one, over
        /// random objects, random writes (patches, whole replacements) and random managers,
        /// with the managedFields list carried along, dropped, emptied, reset, reordered,
        /// edited or replaced by junk.
        #[test]
        fn record_update_fast_equals_general(steps in prop::collection::vec(step(), 1..24)) {
            let skel = json!({"metadata": {}, "spec": {"containers": null}, "status": {}});
            let mut stored: Option<Value> = None;
            for st in steps {
                let mut new = match (&stored, st.fresh) {
                    (Some(s), false) => {
                        let mut n = s.clone();
                        crate::semantics::patch::merge_patch(&mut n, &st.patch);
                        n
                    }
                    _ => st.patch.clone(),
                };
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    let carried = stored
                        .as_ref()
                        .and_then(|s| s.pointer("/metadata/managedFields"))
                        .cloned();
                    match st.mf {
                        0 | 1 => {
                            if let Some(c) = carried {
                                m.insert("managedFields".into(), c);
                            }
                        }
                        2 => {
                            m.shift_remove("managedFields");
                        }
                        3 => {
                            m.insert("managedFields".into(), json!([]));
                        }
                        4 => {
                            m.insert("managedFields".into(), json!([{}]));
                        }
                        5 => {
                            if let Some(Value::Array(mut a)) = carried {
                                a.reverse();
                                if let Some(e) = a.first_mut() {
                                    e["operation"] = json!("Apply");
                                }
                                m.insert("managedFields".into(), Value::Array(a));
                            }
                        }
                        6 => {
                            if let Some(Value::Array(mut a)) = carried {
                                if let Some(e) = a.last_mut() {
                                    e["fieldsV1"] = st.junk.clone();
                                }
                                m.insert("managedFields".into(), Value::Array(a));
                            }
                        }
                        7 => {
                            m.insert("managedFields".into(), json!([st.junk.clone()]));
                        }
                        _ => {
                            // The stored list sent back with its keys in another order.
                            if let Some(c) = carried {
                                m.insert("managedFields".into(), reversed(&c));
                            }
                        }
                    }
                }
                let (manager, av, sub, ignore) = writer(st.writer);
                let now = ["", "2026-11-25T09:00:01Z", "2026-11-25T09:00:02Z"][st.now];
                let base = stored.as_ref().unwrap_or(&skel);
                let mut fast = new.clone();
                record_update(stored.as_ref(), base, &mut fast, &manager, av, sub, &ignore, now);
                let mut slow = new;
                general(stored.as_ref(), base, &mut slow, &manager, av, sub, &ignore, now);
                prop_assert_eq!(serde_json::to_string(&fast).unwrap(), serde_json::to_string(&slow).unwrap());
                stored = Some(fast);
            }
        }

        /// Objects `same_shape_for_fields` as each other get the same fieldsV1, over random
        /// objects (keys in any order, lists of every type with missing, repeated and null
        /// keys, nulls, empty maps and lists, ignored prefixes) against variants with other
        /// plain values (same shape), other values everywhere (list keys changed too), keys
        /// in another order, a patch applied, or an unrelated object; compared with each
        /// kind's skeleton or a random value-free object.
        #[test]
        fn same_shape_means_same_fields(
            obj in any_object(),
            other in any_object(),
            patch in any_object(),
            how in 0..5usize,
            base in 0..8usize,
            random_base in object(),
            w in 0..4usize,
        ) {
            let skels = crate::semantics::skeletons();
            let old = skels.get(base).cloned().unwrap_or_else(|| without_values(&random_base));
            prop_assert!(scalar_free(&old));
            let other = match how {
                0 => revalued(&obj, false),
                1 => revalued(&obj, true),
                2 => reversed(&obj),
                3 => {
                    let mut o = obj.clone();
                    crate::semantics::patch::merge_patch(&mut o, &patch);
                    o
                }
                _ => other,
            };
            let (_, _, _, ignore) = writer(w);
            let mut fpath = String::new();
            prop_assert!(same_shape_for_fields(&obj, &obj, &mut fpath));
            let same = same_shape_for_fields(&obj, &other, &mut fpath);
            prop_assert_eq!(same, same_shape_for_fields(&other, &obj, &mut fpath));
            if how == 0 {
                // Only plain values changed.
                prop_assert!(same);
            }
            if same {
                let mine = Value::Object(changed_fields(&old, &obj, &ignore));
                let theirs = Value::Object(changed_fields(&old, &other, &ignore));
                prop_assert_eq!(serde_json::to_string(&mine).unwrap(), serde_json::to_string(&theirs).unwrap());
            }
        }

        /// Creates through the memo write what the general path writes, the memo carrying
        /// trees from one create to the next (objects from a small pool, with other values
        /// or key orders, so most creates hit).
        #[test]
        fn memoized_creates_equal_general(
            pool in prop::collection::vec(any_object(), 1..4),
            picks in prop::collection::vec((0..4usize, 0..3usize, 0..4usize, 0..3usize), 1..16),
        ) {
            let skel = json!({"metadata": {}, "spec": {"containers": null}, "status": {}});
            for (i, how, w, now) in picks {
                let obj = &pool[i % pool.len()];
                let mut new = match how {
                    0 => obj.clone(),
                    1 => revalued(obj, false),
                    _ => reversed(obj),
                };
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.shift_remove("managedFields");
                }
                let (manager, av, sub, ignore) = writer(w);
                let now = ["", "2026-11-25T09:00:01Z", "2026-11-25T09:00:02Z"][now];
                let mut fast = new.clone();
                record_update(None, &skel, &mut fast, &manager, av, sub, &ignore, now);
                let mut slow = new;
                general(None, &skel, &mut slow, &manager, av, sub, &ignore, now);
                prop_assert_eq!(serde_json::to_string(&fast).unwrap(), serde_json::to_string(&slow).unwrap());
            }
        }

        /// `json_eq` is `Value`'s equality.
        #[test]
        fn json_eq_is_value_eq(a in value(), b in value(), how in 0..3usize) {
            let b = match how {
                0 => a.clone(),
                1 => reversed(&a),
                _ => b,
            };
            prop_assert_eq!(json_eq(&a, &b), a == b);
            prop_assert_eq!(json_eq(&b, &a), a == b);
        }
    }

    /// The http bench's creates through `prepare_create`, pods and PVs interleaved, with
    /// their names, label values and env values differing, from two clients, over seconds
    /// that change: each as the general path writes it, and all but the first pod and PV
    /// from the memo.
    #[test]
    fn bench_creates_from_the_memo() {
        use crate::semantics::perf::{opts, pod_body, pv_body};
        MEMO.with(|m| m.borrow_mut().recent.clear());
        for i in 0..40 {
            let now = ["2026-11-25T09:00:01Z", "2026-11-25T09:00:02Z"][i / 10 % 2];
            let o = opts(["bench", "kubectl"][i / 20], now);
            for (resource, body) in [("pods", pod_body(i)), ("persistentvolumes", pv_body(i))] {
                let mut fast = body.clone();
                crate::semantics::prepare_create("", resource, &mut fast, &o).unwrap();
                let mut slow = body;
                with_reference(|| crate::semantics::prepare_create("", resource, &mut slow, &o))
                    .unwrap();
                assert_eq!(
                    serde_json::to_string(&fast).unwrap(),
                    serde_json::to_string(&slow).unwrap(),
                    "{resource} {i}"
                );
            }
        }
        // Every create after the first of each kind was a hit (a miss adds an entry).
        assert_eq!(MEMO.with(|m| m.borrow().recent.len()), 2);
    }

    #[test]
    fn big_objects_are_not_kept() {
        let mut big = crate::semantics::perf::pod_body(1);
        assert!(small(&big, &mut { MEMO_OBJECT_BUDGET }));
        big["metadata"]["annotations"]["big"] = json!("x".repeat(300 << 10));
        assert!(!small(&big, &mut { MEMO_OBJECT_BUDGET }));
    }

    #[test]
    fn map_list_keys_are_sorted() {
        for f in [
            "metadata.ownerReferences",
            "spec.containers",
            "spec.containers.volumeMounts",
            "spec.containers.volumeDevices",
            "spec.containers.ports",
            "spec.hostAliases",
            "spec.topologySpreadConstraints",
            "status.conditions",
            "status.addresses",
        ] {
            if let ListType::Map(keys) = list_type(f) {
                assert!(keys.windows(2).all(|w| w[0] < w[1]), "{f}");
            }
        }
    }

    #[test]
    fn fields_v1_round_trip_and_dot() {
        let mut s = Set::new();
        s.insert(vec![
            PE::Field("metadata".into()),
            PE::Field("labels".into()),
        ]);
        s.insert(vec![
            PE::Field("metadata".into()),
            PE::Field("labels".into()),
            PE::Field("a".into()),
        ]);
        s.insert(vec![
            PE::Field("spec".into()),
            PE::Field("containers".into()),
            PE::Key(r#"{"name":"x"}"#.into()),
        ]);
        let v = encode(&s);
        assert_eq!(
            v,
            json!({"f:metadata":{"f:labels":{".":{},"f:a":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"x\"}":{}}}})
        );
        assert_eq!(decode(&v), s);
    }

    #[test]
    fn conflict_message_single_and_multi() {
        let e = conflict_error(vec![(
            "\"kubectl-client-side-apply\" using v1".into(),
            vec![
                PE::Field("spec".into()),
                PE::Field("capacity".into()),
                PE::Field("storage".into()),
            ],
        )]);
        assert_eq!(e.message, "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using v1: .spec.capacity.storage");
        assert_eq!(e.causes[0].field, ".spec.capacity.storage");
        assert_eq!(e.causes[0].reason, "FieldManagerConflict");
    }
}
