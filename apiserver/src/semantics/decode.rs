//! Schema check of an incoming body against the v1.33 types, without a lossy round-trip.
//!
//! The body is deserialized into the `k8s-openapi` type through [`Walker`], a
//! `serde::Deserializer` over the borrowed JSON that *records* what the typed value did not
//! consume: every object key outside the struct's declared field list is an unknown field
//! (kube-apiserver's strict-decoding path, e.g. `spec.containers[0].colour`). Type mismatches
//! and malformed quantities fail exactly where Go's decoder would (400 BadRequest). The caller
//! then edits the original JSON in place: unknown fields and `null`s removed, quantities
//! written in canonical form — so the stored object is the accepted JSON, not a re-encoding.
//!
//! Every write runs this, and building the typed value only to drop it was most of its cost
//! (a pod's is kilobytes, moved through every level). So [`findings`] first walks the JSON
//! against the kind's [`Shape`] — what its type asks of each node, learnt once by
//! deserializing the type from a probe — and finds the same unknown fields, `null`s and
//! quantities without building anything; whatever the walk cannot vouch for (a type error, a
//! non-`Option` field absent, a leaf type it does not know) goes to [`decode`], whose outcome
//! and error it then is. The property test `walk_equals_reference` pins both to the reference
//! walk.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::quantity::Quantity;

/// One step of a JSON location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Idx(usize),
}

/// Renders segments as kube-apiserver's strict decoder does: `spec.containers[0].foo`.
pub fn render(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Idx(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// What the walk found besides the typed value.
#[derive(Default, Debug)]
pub struct Findings {
    pub unknown: Vec<Vec<Seg>>,
    /// `null` values of known fields (dropped, as Go's decoder leaves them unset).
    pub nulls: Vec<Vec<Seg>>,
    /// Quantities to rewrite in canonical form.
    pub quantities: Vec<(Vec<Seg>, String)>,
}

#[derive(Debug)]
pub struct Error {
    pub msg: String,
    pub path: Option<String>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) if !p.is_empty() => write!(f, "{p}: {}", self.msg),
            _ => f.write_str(&self.msg),
        }
    }
}
impl std::error::Error for Error {}
impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            msg: msg.to_string(),
            path: None,
        }
    }
}

/// Where the walk is: a chain of borrowed steps up to the root, on the walk's own stack.
/// Turned into a [`Seg`] path only for what gets recorded (an unknown field, a `null`, a
/// quantity to rewrite) or reported (an error), so a node that is fine costs no allocation.
#[derive(Clone, Copy)]
struct Loc<'p> {
    parent: Option<&'p Loc<'p>>,
    step: Step<'p>,
}

#[derive(Clone, Copy)]
enum Step<'p> {
    Key(&'p str),
    Idx(usize),
}

fn path_of(loc: Option<&Loc>) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut cur = loc;
    while let Some(l) = cur {
        out.push(match l.step {
            Step::Key(k) => Seg::Key(k.to_string()),
            Step::Idx(i) => Seg::Idx(i),
        });
        cur = l.parent;
    }
    out.reverse();
    out
}

fn path_with(loc: Option<&Loc>, key: &str) -> Vec<Seg> {
    let mut p = path_of(loc);
    p.push(Seg::Key(key.to_string()));
    p
}

/// A deserializer over `&Value` that records unknown keys in `findings`.
pub struct Walker<'a, 'p, 'f> {
    v: &'a Value,
    loc: Option<&'p Loc<'p>>,
    findings: &'f RefCell<Findings>,
}

/// Decodes `value` as `T`, returning the typed value and what was not consumed.
pub fn decode<T: serde::de::DeserializeOwned>(value: &Value) -> Result<(T, Findings), Error> {
    let findings = RefCell::new(Findings::default());
    let t = T::deserialize(Walker {
        v: value,
        loc: None,
        findings: &findings,
    })?;
    let mut f = findings.into_inner();
    // Report in document order, as Go's streaming decoder meets them.
    if f.unknown.len() > 1 {
        f.unknown.sort_by_cached_key(|p| doc_position(value, p));
    }
    Ok((t, f))
}

fn doc_position(root: &Value, path: &[Seg]) -> Vec<usize> {
    let mut cur = root;
    let mut out = Vec::with_capacity(path.len());
    for seg in path {
        match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => {
                out.push(m.keys().position(|x| x == k).unwrap_or(usize::MAX));
                match m.get(k) {
                    Some(v) => cur = v,
                    None => break,
                }
            }
            (Seg::Idx(i), Value::Array(a)) => {
                out.push(*i);
                match a.get(*i) {
                    Some(v) => cur = v,
                    None => break,
                }
            }
            _ => break,
        }
    }
    out
}

impl Walker<'_, '_, '_> {
    fn at(&self, e: Error) -> Error {
        if e.path.is_some() {
            e
        } else {
            Error {
                msg: e.msg,
                path: Some(render(&path_of(self.loc))),
            }
        }
    }
}

struct Seq<'a, 'p, 'f> {
    parent: &'a [Value],
    i: usize,
    loc: Option<&'p Loc<'p>>,
    findings: &'f RefCell<Findings>,
}

impl<'de, 'a: 'de, 'p, 'f> SeqAccess<'de> for Seq<'a, 'p, 'f> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(v) = self.parent.get(self.i) else {
            return Ok(None);
        };
        let here = Loc {
            parent: self.loc,
            step: Step::Idx(self.i),
        };
        self.i += 1;
        seed.deserialize(Walker {
            v,
            loc: Some(&here),
            findings: self.findings,
        })
        .map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.parent.len() - self.i)
    }
}

/// The entries of an object. For a struct (`fields` given) the keys it does not declare are
/// recorded as unknown and `null`s of known fields as nulls, and neither reaches the visitor.
struct Map<'a, 'p, 'f> {
    iter: serde_json::map::Iter<'a>,
    fields: Option<&'static [&'static str]>,
    value: Option<(&'a str, &'a Value)>,
    loc: Option<&'p Loc<'p>>,
    findings: &'f RefCell<Findings>,
}

impl<'de, 'a: 'de, 'p, 'f> MapAccess<'de> for Map<'a, 'p, 'f> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        loop {
            let Some((k, v)) = self.iter.next() else {
                return Ok(None);
            };
            if let Some(fields) = self.fields {
                if !fields.contains(&k.as_str()) {
                    let p = path_with(self.loc, k);
                    self.findings.borrow_mut().unknown.push(p);
                    continue;
                }
                if v.is_null() {
                    // Go leaves the field unset; typed required fields default.
                    let p = path_with(self.loc, k);
                    self.findings.borrow_mut().nulls.push(p);
                    continue;
                }
            }
            self.value = Some((k.as_str(), v));
            let k: &'de str = k.as_str();
            return seed
                .deserialize(de::value::BorrowedStrDeserializer::<Error>::new(k))
                .map(Some);
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (k, v) = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("value requested before its key"))?;
        let here = Loc {
            parent: self.loc,
            step: Step::Key(k),
        };
        seed.deserialize(Walker {
            v,
            loc: Some(&here),
            findings: self.findings,
        })
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl<'de, 'a: 'de, 'p, 'f> de::Deserializer<'de> for Walker<'a, 'p, 'f> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match self.v {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s.as_str()),
            Value::Array(a) => visitor.visit_seq(Seq {
                parent: a,
                i: 0,
                loc: self.loc,
                findings: self.findings,
            }),
            Value::Object(m) => visitor.visit_map(Map {
                iter: m.iter(),
                fields: None,
                value: None,
                loc: self.loc,
                findings: self.findings,
            }),
        };
        r.map_err(|e| self.at(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.v.is_null() {
            self.findings.borrow_mut().nulls.push(path_of(self.loc));
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == "Quantity" {
            let num;
            let s = match self.v {
                Value::String(s) => s.as_str(),
                Value::Number(n) => {
                    num = n.to_string();
                    num.as_str()
                }
                other => {
                    return Err(self.at(Error {
                        msg: format!("cannot unmarshal {} into a quantity", type_name(other)),
                        path: None,
                    }))
                }
            };
            let q = Quantity::parse(s).map_err(|m| Error {
                msg: m,
                path: Some(String::new()),
            })?;
            let canon = q.canonical();
            if self.v.as_str() != Some(canon.as_str()) {
                self.findings
                    .borrow_mut()
                    .quantities
                    .push((path_of(self.loc), canon.clone()));
            }
            return visitor
                .visit_newtype_struct(canon.into_deserializer())
                .map_err(|e: Error| self.at(e));
        }
        if name == "FieldsV1" {
            // A `serde_json::Value` inside: any JSON is one, nothing in it can be unknown,
            // null-dropped or a quantity, and the typed value is thrown away. Walking it
            // (managedFields are most of a stored object) would find nothing.
            return visitor
                .visit_newtype_struct(de::value::UnitDeserializer::<Error>::new())
                .map_err(|e| self.at(e));
        }
        let (v, loc, findings) = (self.v, self.loc, self.findings);
        visitor
            .visit_newtype_struct(Walker { v, loc, findings })
            .map_err(|e| Walker { v, loc, findings }.at(e))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.v {
            Value::Array(_) => self.deserialize_any(visitor),
            other => {
                let e = Error {
                    msg: format!("cannot unmarshal {} into an array", type_name(other)),
                    path: None,
                };
                Err(self.at(e))
            }
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.v {
            Value::Object(_) => self.deserialize_any(visitor),
            other => {
                let e = Error {
                    msg: format!("cannot unmarshal {} into an object", type_name(other)),
                    path: None,
                };
                Err(self.at(e))
            }
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let m = match self.v {
            Value::Object(m) => m,
            other => {
                let e = Error {
                    msg: format!("cannot unmarshal {} into an object", type_name(other)),
                    path: None,
                };
                return Err(self.at(e));
            }
        };
        visitor
            .visit_map(Map {
                iter: m.iter(),
                fields: Some(fields),
                value: None,
                loc: self.loc,
                findings: self.findings,
            })
            .map_err(|e| self.at(e))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct enum identifier
    }
}

/// Removes the value at `path` from `root` (no-op when absent).
pub fn remove_at(root: &mut Value, path: &[Seg]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = root;
    for seg in parent {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(v) => v,
                None => return,
            },
            (Seg::Idx(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    if let (Seg::Key(k), Value::Object(m)) = (last, cur) {
        m.shift_remove(k);
    }
}

/// Replaces the value at `path`.
pub fn set_at(root: &mut Value, path: &[Seg], v: Value) {
    let mut cur = root;
    for seg in path {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(v) => v,
                None => return,
            },
            (Seg::Idx(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    *cur = v;
}

// ------------------------------------------------------------------ the walk without a typed value

/// What a type's `Deserialize` asks of a JSON node, learnt once per kind by [`Shape::of`]:
/// enough to find what [`decode`] finds (unknown fields, `null`s, quantities) without building
/// and dropping the typed value (a pod's is a few kilobytes, moved through every level).
/// Whatever it cannot vouch for — a type error, a value it does not know the type's answer
/// to — sends the body to [`decode`] itself, so outcomes and errors are always `decode`'s.
#[derive(Debug)]
pub enum Shape {
    Struct(Box<StructShape>),
    /// `Option<T>`: `null` is recorded (and later dropped), anything else is `T`.
    Option(Box<Shape>),
    /// `Vec<T>`.
    Seq(Box<Shape>),
    /// `BTreeMap<String, T>`: any keys.
    Map(Box<Shape>),
    Leaf(Leaf),
    /// Anything else (`deserialize_any`, enums, …): only `decode` knows.
    Unknown,
}

/// A struct's declared fields and, in the same order, their shapes.
#[derive(Debug)]
pub struct StructShape {
    fields: &'static [&'static str],
    /// [`sig`] of each field: a key is compared only with the fields of its signature.
    sigs: Vec<u32>,
    shapes: Vec<Shape>,
    /// How many fields are not `Option`s. Those may be required (k8s-openapi's `missing
    /// field` error, as in `EventSeries.lastObservedTime`) or default when absent: an object
    /// lacking one is left to `decode`.
    plain: usize,
}

/// A field name's length, first and last byte in one word.
fn sig(k: &str) -> u32 {
    let b = k.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            ((b.len().min(0xffff) as u32) << 16) | (u32::from(f) << 8) | u32::from(l)
        }
        _ => 0,
    }
}

impl StructShape {
    /// The index of field `k`.
    fn find(&self, k: &str) -> Option<usize> {
        let s = sig(k);
        self.sigs
            .iter()
            .enumerate()
            .find(|&(i, &x)| x == s && self.fields[i] == k)
            .map(|(i, _)| i)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    Str,
    Bool,
    I32,
    I64,
    F64,
    Quantity,
    Time,
    MicroTime,
    /// A `FieldsV1`: any JSON, not looked into (as [`Walker`] does not).
    FieldsV1,
    /// The resource's own `apiVersion` or `kind`: that string and no other.
    Const(&'static str),
    /// An `IntOrString` (a probe's or a port's): a 32-bit integer or a string.
    IntOrString,
}

impl Shape {
    /// The shape of `T`, by deserializing one from a probe that offers every field of every
    /// struct once and a single element of every list and map. `Unknown` when that fails
    /// (e.g. a type that refers to itself deeper than the probe goes).
    pub fn of<T: serde::de::DeserializeOwned + k8s_openapi::Resource>() -> Shape {
        let mut s = Shape::Unknown;
        match T::deserialize(Probe {
            out: &mut s,
            depth: 0,
            fixed: None,
            type_meta: Some((T::API_VERSION, T::KIND)),
        }) {
            Ok(_) => s,
            Err(_) => Shape::Unknown,
        }
    }
}

impl Shape {
    /// Not an `Option` (nor one of a type of its own, such as `ByteString`'s), nor the
    /// resource's `apiVersion`/`kind` (checked when given, never required).
    fn plain(&self) -> bool {
        match self {
            Shape::Option(inner) => matches!(**inner, Shape::Unknown),
            Shape::Leaf(Leaf::Const(_)) => false,
            _ => true,
        }
    }
}

/// [`decode`]'s findings. The shape walk when it can vouch for the whole body, else `decode`.
pub fn findings<T: serde::de::DeserializeOwned>(
    shape: &Shape,
    value: &Value,
) -> Result<Findings, Error> {
    let mut f = Findings::default();
    if walk(shape, value, None, &mut f).is_ok() {
        if f.unknown.len() > 1 {
            f.unknown.sort_by_cached_key(|p| doc_position(value, p));
        }
        return Ok(f);
    }
    decode::<T>(value).map(|(_, f)| f)
}

/// `Err(())`: not vouched for (the caller asks [`decode`]).
fn walk(shape: &Shape, v: &Value, loc: Option<&Loc>, f: &mut Findings) -> Result<(), ()> {
    match shape {
        Shape::Struct(st) => {
            let StructShape { shapes, plain, .. } = &**st;
            let Value::Object(m) = v else { return Err(()) };
            let mut plain_given = 0;
            for (k, c) in m {
                match st.find(k) {
                    None => f.unknown.push(path_with(loc, k)),
                    Some(_) if c.is_null() => f.nulls.push(path_with(loc, k)),
                    Some(i) => {
                        let here = Loc {
                            parent: loc,
                            step: Step::Key(k),
                        };
                        walk(&shapes[i], c, Some(&here), f)?;
                        plain_given += usize::from(shapes[i].plain());
                    }
                }
            }
            if plain_given < *plain {
                return Err(());
            }
            Ok(())
        }
        Shape::Option(inner) => {
            if v.is_null() {
                f.nulls.push(path_of(loc));
                Ok(())
            } else {
                walk(inner, v, loc, f)
            }
        }
        Shape::Seq(inner) => {
            let Value::Array(a) = v else { return Err(()) };
            for (i, c) in a.iter().enumerate() {
                let here = Loc {
                    parent: loc,
                    step: Step::Idx(i),
                };
                walk(inner, c, Some(&here), f)?;
            }
            Ok(())
        }
        Shape::Map(inner) => {
            let Value::Object(m) = v else { return Err(()) };
            for (k, c) in m {
                let here = Loc {
                    parent: loc,
                    step: Step::Key(k),
                };
                walk(inner, c, Some(&here), f)?;
            }
            Ok(())
        }
        Shape::Leaf(leaf) => leaf_ok(*leaf, v, loc, f),
        Shape::Unknown => Err(()),
    }
}

/// Whether the leaf type accepts `v` as [`Walker`] presents it (numbers as `u64`, else `i64`,
/// else `f64`; strings borrowed), recording a quantity to rewrite as `decode` does.
fn leaf_ok(leaf: Leaf, v: &Value, loc: Option<&Loc>, f: &mut Findings) -> Result<(), ()> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let ok = match leaf {
        Leaf::Str => v.is_string(),
        Leaf::Bool => v.is_boolean(),
        Leaf::I32 => match v {
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u <= i32::MAX as u64,
                (None, Some(i)) => i32::try_from(i).is_ok(),
                _ => false,
            },
            _ => false,
        },
        Leaf::I64 => match v {
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u <= i64::MAX as u64,
                (None, Some(_)) => true,
                _ => false,
            },
            _ => false,
        },
        Leaf::F64 => v.is_number(),
        Leaf::Quantity => {
            let num;
            let s = match v {
                Value::String(s) => s.as_str(),
                Value::Number(n) => {
                    num = n.to_string();
                    num.as_str()
                }
                _ => return Err(()),
            };
            let Ok(q) = Quantity::parse(s) else {
                return Err(());
            };
            let canon = q.canonical();
            if v.as_str() != Some(canon.as_str()) {
                f.quantities.push((path_of(loc), canon));
            }
            true
        }
        // The types' own parsing, on the walker (nothing in them is recorded).
        Leaf::IntOrString => {
            let findings = RefCell::new(Findings::default());
            let w = Walker {
                v,
                loc,
                findings: &findings,
            };
            <k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as serde::Deserialize>::deserialize(w).is_ok()
        }
        Leaf::Time | Leaf::MicroTime => {
            let findings = RefCell::new(Findings::default());
            let w = Walker {
                v,
                loc,
                findings: &findings,
            };
            if leaf == Leaf::Time {
                <meta::Time as serde::Deserialize>::deserialize(w).is_ok()
            } else {
                <meta::MicroTime as serde::Deserialize>::deserialize(w).is_ok()
            }
        }
        Leaf::FieldsV1 => true,
        Leaf::Const(c) => v.as_str() == Some(c),
    };
    if ok {
        Ok(())
    } else {
        Err(())
    }
}

/// The deserializer [`Shape::of`] hands a type: it records what the type asks for in `out`
/// and answers with a value the type accepts.
struct Probe<'s> {
    out: &'s mut Shape,
    depth: usize,
    /// The one string this node takes (the resource's `apiVersion` and `kind`, which its
    /// type checks).
    fixed: Option<&'static str>,
    /// At the root: the resource's `apiVersion` and `kind`.
    type_meta: Option<(&'static str, &'static str)>,
}

/// Deeper than any of the served kinds' types nest.
const PROBE_DEPTH: usize = 48;

#[derive(Debug)]
struct ProbeError(String);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ProbeError {}
impl de::Error for ProbeError {
    fn custom<T: fmt::Display>(m: T) -> Self {
        ProbeError(m.to_string())
    }
}

impl Probe<'_> {
    fn leaf(self, leaf: Leaf) {
        *self.out = Shape::Leaf(leaf);
    }
    fn deeper(&self) -> Result<usize, ProbeError> {
        if self.depth >= PROBE_DEPTH {
            Err(ProbeError("too deep".into()))
        } else {
            Ok(self.depth + 1)
        }
    }
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        // Told apart by what its visitor expects (the type does not name itself otherwise).
        if format!("{}", &visitor as &dyn de::Expected) == "IntOrString" {
            *self.out = Shape::Leaf(Leaf::IntOrString);
        } else {
            *self.out = Shape::Unknown;
        }
        visitor.visit_str("")
    }
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.leaf(Leaf::Bool);
        visitor.visit_bool(false)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.leaf(Leaf::I32);
        visitor.visit_i32(0)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.leaf(Leaf::I64);
        visitor.visit_i64(0)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.leaf(Leaf::F64);
        visitor.visit_f64(0.0)
    }
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        match self.fixed {
            Some(c) => {
                self.leaf(Leaf::Const(c));
                visitor.visit_str(c)
            }
            None => {
                self.leaf(Leaf::Str);
                visitor.visit_str("")
            }
        }
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        let mut inner = Shape::Unknown;
        let depth = self.deeper()?;
        let r = visitor.visit_some(Probe {
            out: &mut inner,
            depth,
            fixed: self.fixed,
            type_meta: None,
        })?;
        *self.out = Shape::Option(Box::new(inner));
        Ok(r)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        let sample = match name {
            "Quantity" => {
                self.leaf(Leaf::Quantity);
                "0"
            }
            "Time" => {
                self.leaf(Leaf::Time);
                "2026-01-01T00:00:00Z"
            }
            "MicroTime" => {
                self.leaf(Leaf::MicroTime);
                "2026-01-01T00:00:00.000000Z"
            }
            "FieldsV1" => {
                self.leaf(Leaf::FieldsV1);
                return visitor.visit_newtype_struct(de::value::UnitDeserializer::new());
            }
            // Any other newtype is looked through, as the walker does.
            _ => {
                let depth = self.deeper()?;
                return visitor.visit_newtype_struct(Probe {
                    out: self.out,
                    depth,
                    fixed: None,
                    type_meta: None,
                });
            }
        };
        visitor.visit_newtype_struct(de::value::StrDeserializer::new(sample))
    }
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        let mut inner = Shape::Unknown;
        let depth = self.deeper()?;
        let r = visitor.visit_seq(ProbeOne {
            key: None,
            value: Some(&mut inner),
            depth,
        })?;
        *self.out = Shape::Seq(Box::new(inner));
        Ok(r)
    }
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        let mut inner = Shape::Unknown;
        let depth = self.deeper()?;
        let r = visitor.visit_map(ProbeOne {
            key: Some("k"),
            value: Some(&mut inner),
            depth,
        })?;
        *self.out = Shape::Map(Box::new(inner));
        Ok(r)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        let depth = self.deeper()?;
        let mut shapes: Vec<Shape> = fields.iter().map(|_| Shape::Unknown).collect();
        let r = visitor.visit_map(ProbeFields {
            fields,
            shapes: &mut shapes,
            next: 0,
            depth,
            type_meta: self.type_meta,
        })?;
        let plain = shapes.iter().filter(|s| s.plain()).count();
        *self.out = Shape::Struct(Box::new(StructShape {
            fields,
            sigs: fields.iter().copied().map(sig).collect(),
            shapes,
            plain,
        }));
        Ok(r)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_unit()
    }

    // Asked of no field of the served kinds: `Unknown`, with whatever value the type takes.
    serde::forward_to_deserialize_any! {
        i8 i16 i128 u8 u16 u32 u64 u128 f32 char str bytes byte_buf unit unit_struct
        tuple tuple_struct enum identifier
    }
}

/// A struct's fields, each offered once, each value probed into its slot.
struct ProbeFields<'s> {
    fields: &'static [&'static str],
    shapes: &'s mut [Shape],
    next: usize,
    depth: usize,
    type_meta: Option<(&'static str, &'static str)>,
}

impl<'de> MapAccess<'de> for ProbeFields<'_> {
    type Error = ProbeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        let Some(k) = self.fields.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(de::value::BorrowedStrDeserializer::new(k))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        let i = self.next;
        self.next += 1;
        let fixed = match (self.type_meta, self.fields[i]) {
            (Some((v, _)), "apiVersion") => Some(v),
            (Some((_, k)), "kind") => Some(k),
            _ => None,
        };
        seed.deserialize(Probe {
            out: &mut self.shapes[i],
            depth: self.depth,
            fixed,
            type_meta: None,
        })
    }
}

/// A list with one element, or a map with one entry, whose value is probed.
struct ProbeOne<'s> {
    key: Option<&'static str>,
    value: Option<&'s mut Shape>,
    depth: usize,
}

impl<'de> SeqAccess<'de> for ProbeOne<'_> {
    type Error = ProbeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ProbeError> {
        match self.value.take() {
            None => Ok(None),
            Some(out) => seed
                .deserialize(Probe {
                    out,
                    depth: self.depth,
                    fixed: None,
                    type_meta: None,
                })
                .map(Some),
        }
    }
}

impl<'de> MapAccess<'de> for ProbeOne<'_> {
    type Error = ProbeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        match self.key.take() {
            None => Ok(None),
            Some(k) => seed
                .deserialize(de::value::BorrowedStrDeserializer::new(k))
                .map(Some),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        let out = self.value.take().ok_or(ProbeError("no value".into()))?;
        seed.deserialize(Probe {
            out,
            depth: self.depth,
            fixed: None,
            type_meta: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields_at_any_depth_but_not_in_maps() {
        let v = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"any":"x"},"colour":1},
            "spec":{"containers":[{"name":"a","image":"i","foo":true,
              "resources":{"requests":{"cpu":1,"memory":"1.5Gi"}}}],"bar":null}});
        let (_p, f): (Pod, _) = decode(&v).unwrap();
        let u: Vec<String> = f.unknown.iter().map(|p| render(p)).collect();
        assert_eq!(
            u,
            vec!["metadata.colour", "spec.containers[0].foo", "spec.bar"]
        );
        assert_eq!(f.quantities.len(), 2);
    }

    /// What a walk found, comparable across the two walkers (nulls and quantities are
    /// applied independently of their order, unknown fields are reported in document order).
    type Outcome = Result<(Vec<String>, Vec<String>, Vec<String>), String>;

    /// (the typed walk, the reference walk, the shape walk with `decode` behind it).
    fn outcome_of(kind: usize, v: &Value) -> (Outcome, Outcome, Outcome) {
        use crate::semantics::decode_reference as r;
        use k8s_openapi::api as k;
        /// Findings as comparable strings: unknowns in walk order, nulls and quantities sorted
        /// (the two walks may record those in different orders).
        fn render<U: fmt::Debug, N: fmt::Debug, Q: fmt::Debug>(
            unknown: &[U],
            nulls: &[N],
            quantities: &[Q],
        ) -> (Vec<String>, Vec<String>, Vec<String>) {
            let all = |xs: &mut dyn Iterator<Item = String>| xs.collect::<Vec<String>>();
            let mut n = all(&mut nulls.iter().map(|p| format!("{p:?}")));
            n.sort();
            let mut q = all(&mut quantities.iter().map(|p| format!("{p:?}")));
            q.sort();
            (all(&mut unknown.iter().map(|p| format!("{p:?}"))), n, q)
        }
        fn new<T: serde::de::DeserializeOwned>(v: &Value) -> Outcome {
            decode::<T>(v)
                .map(|(_, f)| render(&f.unknown, &f.nulls, &f.quantities))
                .map_err(|e| e.to_string())
        }
        fn fast<T: serde::de::DeserializeOwned + k8s_openapi::Resource>(v: &Value) -> Outcome {
            findings::<T>(&Shape::of::<T>(), v)
                .map(|f| render(&f.unknown, &f.nulls, &f.quantities))
                .map_err(|e| e.to_string())
        }
        fn old<T: serde::de::DeserializeOwned>(v: &Value) -> Outcome {
            r::decode::<T>(v)
                .map(|(_, f)| render(&f.unknown, &f.nulls, &f.quantities))
                .map_err(|e| e.to_string())
        }
        macro_rules! both {
            ($t:ty) => {
                (new::<$t>(v), old::<$t>(v), fast::<$t>(v))
            };
        }
        match kind {
            0 => both!(k::core::v1::Pod),
            1 => both!(k::core::v1::PersistentVolume),
            2 => both!(k::core::v1::PersistentVolumeClaim),
            3 => both!(k::core::v1::Node),
            4 => both!(k::core::v1::Namespace),
            5 => both!(k::core::v1::Event),
            6 => both!(k::events::v1::Event),
            7 => both!(k::storage::v1::StorageClass),
            8 => both!(k::storage::v1::CSIDriver),
            9 => both!(k::storage::v1::CSIStorageCapacity),
            10 => both!(k::coordination::v1::Lease),
            _ => both!(k::core::v1::Binding),
        }
    }

    /// Objects of every kind as the store holds them (defaulted, with managedFields), the
    /// starting points of the mutations below.
    fn seeds() -> Vec<(usize, Value)> {
        use crate::semantics::perf;
        let mut out = Vec::new();
        for (r, sub, old, new, _) in perf::update_cases(3) {
            let kind = match r {
                "pods" => 0,
                "persistentvolumes" => 1,
                _ => 2,
            };
            let _ = sub;
            out.push((kind, old));
            out.push((kind, new));
        }
        let lesson = [
            (0, include_str!("../../../examples/lab/local-pod.yaml")),
            (1, include_str!("../../../examples/lab/local-pv.yaml")),
            (2, include_str!("../../../examples/lab/local-pvc.yaml")),
            (7, include_str!("../../../examples/lab/local-sc.yaml")),
        ];
        for (k, y) in lesson {
            out.push((k, serde_norway::from_str(y).unwrap()));
        }
        // A pod with probes and a named port (`IntOrString`s).
        out.push((
            0,
            json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},
            "spec":{"containers":[{"name":"c","image":"nginx","ports":[{"containerPort":80,"name":"http"}],
              "livenessProbe":{"httpGet":{"path":"/","port":8080},"periodSeconds":10},
              "readinessProbe":{"tcpSocket":{"port":"http"}}}]}}),
        ));
        out.push((3, json!({"metadata":{"name":"n1","labels":{"a":"b"}},"spec":{"podCIDR":"10.0.0.0/24",
            "taints":[{"key":"k","effect":"NoSchedule"}]},"status":{"capacity":{"cpu":"2","memory":"4Gi"},
            "conditions":[{"type":"Ready","status":"True","lastHeartbeatTime":"2026-11-25T09:00:00Z"}],
            "addresses":[{"type":"InternalIP","address":"10.0.0.1"}]}})));
        out.push((4, json!({"metadata":{"name":"ns"},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}})));
        out.push((5, json!({"metadata":{"name":"e","namespace":"default"},"involvedObject":{"kind":"Pod","name":"p"},
            "reason":"Scheduled","message":"m","count":1,"firstTimestamp":"2026-11-25T09:00:00Z","type":"Normal",
            "eventTime":"2026-11-25T09:00:00.000000Z","source":{"component":"c"}})));
        out.push((6, json!({"metadata":{"name":"e","namespace":"default"},"regarding":{"kind":"Pod","name":"p"},
            "reason":"Scheduled","note":"m","type":"Normal","eventTime":"2026-11-25T09:00:00.000000Z",
            "series":{"count":2,"lastObservedTime":"2026-11-25T09:00:00.000000Z"}})));
        out.push((8, json!({"metadata":{"name":"d"},"spec":{"attachRequired":false,"volumeLifecycleModes":["Persistent"]}})));
        out.push((
            9,
            json!({"metadata":{"name":"c","namespace":"default"},"storageClassName":"local",
            "capacity":"10Gi","maximumVolumeSize":"5Gi","nodeTopology":{"matchLabels":{"a":"b"}}}),
        ));
        out.push((
            10,
            json!({"metadata":{"name":"l","namespace":"default"},"spec":{"holderIdentity":"h",
            "leaseDurationSeconds":40,"renewTime":"2026-11-25T09:00:00.000000Z"}}),
        ));
        out.push((11, json!({"metadata":{"name":"p","namespace":"default"},"target":{"kind":"Node","name":"n"}})));
        out
    }

    /// Every location in `v`, as JSON pointers.
    fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    pointers(c, p, out);
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    pointers(c, p, out);
                }
            }
            _ => {}
        }
    }

    fn wild() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            prop_oneof![
                Just(json!(1)),
                Just(json!(-3)),
                Just(json!(1.5)),
                Just(json!(4294967296u64))
            ],
            prop::sample::select(vec![
                "x",
                "1Gi",
                "100m",
                "1.5",
                "0.1",
                "1e3",
                "abc",
                "5Gi ",
                "2026-11-25T09:00:00Z",
                "2026-11-25T09:00:00.000000Z",
                "TCP",
                "",
                "12Mi",
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["name", "x", "cpu", "storage", "key", "uid"]),
                        inner
                    ),
                    0..3
                )
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, failure_persistence: None, ..Default::default() })]

        /// The walk finds exactly what the walk it replaced found (unknown fields, nulls,
        /// quantities, or the same error) on every kind's objects with random parts replaced,
        /// added or removed.
        #[test]
        fn walk_equals_reference(
            seed in 0..64usize,
            edits in proptest::collection::vec((0..4096usize, 0..3usize, wild()), 0..4),
        ) {
            let seeds = seeds();
            let (kind, mut v) = seeds[seed % seeds.len()].clone();
            for (at, how, with) in edits {
                let mut ps = Vec::new();
                pointers(&v, String::new(), &mut ps);
                if ps.is_empty() {
                    break;
                }
                let p = &ps[at % ps.len()];
                match how {
                    0 => *v.pointer_mut(p).unwrap() = with,
                    1 => {
                        if let Some(m) = v.pointer_mut(p).and_then(Value::as_object_mut) {
                            m.insert("extra".into(), with);
                        } else {
                            *v.pointer_mut(p).unwrap() = with;
                        }
                    }
                    _ => {
                        let (parent, last) = p.rsplit_once('/').unwrap();
                        let parent = if parent.is_empty() { &mut v } else { v.pointer_mut(parent).unwrap() };
                        match parent {
                            Value::Object(m) => {
                                m.shift_remove(&last.replace("~1", "/").replace("~0", "~"));
                            }
                            Value::Array(a) => {
                                a.remove(last.parse::<usize>().unwrap());
                            }
                            _ => {}
                        }
                    }
                }
            }
            let (new, old, fast) = outcome_of(kind, &v);
            proptest::prop_assert_eq!(&new, &old);
            proptest::prop_assert_eq!(fast, old);
        }
    }

    #[test]
    fn seeds_decode_cleanly() {
        for (kind, v) in seeds() {
            let (new, old, fast) = outcome_of(kind, &v);
            assert!(new.is_ok(), "{kind}: {new:?}");
            assert_eq!(new, old);
            assert_eq!(fast, old);
        }
    }

    /// The shape walk vouches for the objects the cluster writes (the typed decode runs only
    /// for bodies it cannot), and every served kind's type has a shape.
    #[test]
    fn shapes_vouch_for_ordinary_objects() {
        use k8s_openapi::api as k;
        fn vouches<T: serde::de::DeserializeOwned + k8s_openapi::Resource>(v: &Value) -> bool {
            walk(&Shape::of::<T>(), v, None, &mut Findings::default()).is_ok()
        }
        let mut seen = 0;
        for (kind, v) in seeds() {
            let ok = match kind {
                0 => vouches::<k::core::v1::Pod>(&v),
                1 => vouches::<k::core::v1::PersistentVolume>(&v),
                2 => vouches::<k::core::v1::PersistentVolumeClaim>(&v),
                3 => vouches::<k::core::v1::Node>(&v),
                4 => vouches::<k::core::v1::Namespace>(&v),
                5 => vouches::<k::core::v1::Event>(&v),
                6 => vouches::<k::events::v1::Event>(&v),
                7 => vouches::<k::storage::v1::StorageClass>(&v),
                8 => vouches::<k::storage::v1::CSIDriver>(&v),
                9 => vouches::<k::storage::v1::CSIStorageCapacity>(&v),
                10 => vouches::<k::coordination::v1::Lease>(&v),
                _ => vouches::<k::core::v1::Binding>(&v),
            };
            assert!(ok, "kind {kind}: {v}");
            seen += 1;
        }
        assert!(seen > 12);
        use crate::semantics::perf;
        assert!(vouches::<k::core::v1::Pod>(&perf::pod_body(1)));
        assert!(vouches::<k::core::v1::PersistentVolume>(&perf::pv_body(1)));
        // A wrong type is not vouched for: `decode` answers, with its error.
        let bad =
            json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": "80"}]}]}});
        assert!(!vouches::<k::core::v1::Pod>(&bad));
        let (new, old, fast) = outcome_of(0, &bad);
        assert!(new.is_err());
        assert_eq!((&new, &fast), (&old, &old));
    }

    #[test]
    fn type_errors_carry_the_path() {
        let v = json!({"metadata":{"name":"p","labels":{"a":1}}});
        let e = decode::<Pod>(&v).unwrap_err();
        assert!(e.to_string().starts_with("metadata.labels.a: "), "{e}");
    }
}
