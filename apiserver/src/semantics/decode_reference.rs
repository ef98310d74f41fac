//! The schema walk as it was before [`super::decode`] stopped allocating for every node it
//! visits: kept (tests only) as the specification the faster walk is checked against.
//!
//! Schema check of an incoming body against the v1.33 types, without a lossy round-trip.
//!
//! The body is deserialized into the `k8s-openapi` type through [`Walker`], a
//! `serde::Deserializer` over the borrowed JSON that *records* what the typed value did not
//! consume: every object key outside the struct's declared field list is an unknown field
//! (kube-apiserver's strict-decoding path, e.g. `spec.containers[0].colour`). Type mismatches
//! and malformed quantities fail exactly where Go's decoder would (400 BadRequest). The caller
//! then edits the original JSON in place: unknown fields and `null`s removed, quantities
//! written in canonical form — so the stored object is the accepted JSON, not a re-encoding.

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

/// A deserializer over `&Value` that records unknown keys in `findings`.
pub struct Walker<'a, 'f> {
    v: &'a Value,
    path: Vec<Seg>,
    findings: &'f RefCell<Findings>,
}

/// Decodes `value` as `T`, returning the typed value and what was not consumed.
pub fn decode<T: serde::de::DeserializeOwned>(value: &Value) -> Result<(T, Findings), Error> {
    let findings = RefCell::new(Findings::default());
    let t = T::deserialize(Walker {
        v: value,
        path: Vec::new(),
        findings: &findings,
    })?;
    let mut f = findings.into_inner();
    // Report in document order, as Go's streaming decoder meets them.
    f.unknown.sort_by_cached_key(|p| doc_position(value, p));
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

impl<'a, 'f> Walker<'a, 'f> {
    fn at(&self, e: Error) -> Error {
        if e.path.is_some() {
            e
        } else {
            Error {
                msg: e.msg,
                path: Some(render(&self.path)),
            }
        }
    }
}

struct Seq<'a, 'f> {
    parent: &'a [Value],
    i: usize,
    path: Vec<Seg>,
    findings: &'f RefCell<Findings>,
}

impl<'de, 'a: 'de, 'f> SeqAccess<'de> for Seq<'a, 'f> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.i >= self.parent.len() {
            return Ok(None);
        }
        let mut path = self.path.clone();
        path.push(Seg::Idx(self.i));
        let w = Walker {
            v: &self.parent[self.i],
            path,
            findings: self.findings,
        };
        self.i += 1;
        seed.deserialize(w).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.parent.len() - self.i)
    }
}

struct Map<'a, 'f> {
    entries: Vec<(&'a String, &'a Value)>,
    i: usize,
    path: Vec<Seg>,
    findings: &'f RefCell<Findings>,
}

impl<'de, 'a: 'de, 'f> MapAccess<'de> for Map<'a, 'f> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.i >= self.entries.len() {
            return Ok(None);
        }
        let k: &'de str = self.entries[self.i].0.as_str();
        seed.deserialize(de::value::BorrowedStrDeserializer::<Error>::new(k))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (k, v) = self.entries[self.i];
        self.i += 1;
        let mut path = self.path.clone();
        path.push(Seg::Key(k.clone()));
        seed.deserialize(Walker {
            v,
            path,
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

impl<'de, 'a: 'de, 'f> de::Deserializer<'de> for Walker<'a, 'f> {
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
                path: self.path.clone(),
                findings: self.findings,
            }),
            Value::Object(m) => visitor.visit_map(Map {
                entries: m.iter().collect(),
                i: 0,
                path: self.path.clone(),
                findings: self.findings,
            }),
        };
        r.map_err(|e| self.at(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.v.is_null() {
            self.findings.borrow_mut().nulls.push(self.path.clone());
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
            let s = match self.v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(self.at(Error {
                        msg: format!("cannot unmarshal {} into a quantity", type_name(other)),
                        path: None,
                    }))
                }
            };
            let q = Quantity::parse(&s).map_err(|m| Error {
                msg: m,
                path: Some(String::new()),
            })?;
            let canon = q.canonical();
            if Value::String(canon.clone()) != *self.v {
                self.findings
                    .borrow_mut()
                    .quantities
                    .push((self.path.clone(), canon.clone()));
            }
            return visitor
                .visit_newtype_struct(canon.into_deserializer())
                .map_err(|e: Error| self.at(e));
        }
        let path = self.path.clone();
        let findings = self.findings;
        let v = self.v;
        visitor
            .visit_newtype_struct(Walker {
                v,
                path: path.clone(),
                findings,
            })
            .map_err(|e| Walker { v, path, findings }.at(e))
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
        let mut entries = Vec::new();
        for (k, v) in m {
            if fields.contains(&k.as_str()) {
                if v.is_null() {
                    // Go leaves the field unset; typed required fields default.
                    let mut p = self.path.clone();
                    p.push(Seg::Key(k.clone()));
                    self.findings.borrow_mut().nulls.push(p);
                } else {
                    entries.push((k, v));
                }
            } else {
                let mut p = self.path.clone();
                p.push(Seg::Key(k.clone()));
                self.findings.borrow_mut().unknown.push(p);
            }
        }
        let path = self.path.clone();
        visitor
            .visit_map(Map {
                entries,
                i: 0,
                path,
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
