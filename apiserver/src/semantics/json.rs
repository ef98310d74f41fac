//! A request body parsed into a `Value`: `serde_json::from_slice`'s result, made cheaper.
//!
//! Every write body is parsed once, and serde_json's own path pays twice for what it does not
//! know: it checks UTF-8 string by string (one `from_utf8` call per key and value) where one
//! pass over the body does, and it grows each object's map entry by entry (a rehash of the
//! index at 4, 8, 16 entries) where the entries, gathered first, give its size. Same values,
//! same key order, same errors: anything this path would not read exactly as serde_json does
//! goes to serde_json itself.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// `serde_json::from_slice::<Value>(body)`, byte for byte the same outcome.
pub fn parse(body: &[u8]) -> serde_json::Result<Value> {
    // Not UTF-8: serde_json's own error (it names the position). The raw-value token as a key
    // (serde_json's `raw_value` feature reads such an object specially): serde_json too.
    let Ok(text) = std::str::from_utf8(body) else {
        return serde_json::from_slice(body);
    };
    if text.contains(RAW_VALUE_TOKEN) {
        return serde_json::from_slice(body);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let v = de.deserialize_any(ValueVisitor)?;
    de.end()?;
    Ok(v)
}

/// serde_json's private key for a `RawValue` inside a map (its `raw_value` feature is on in
/// this build, through axum).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// serde_json's `ValueVisitor`, with objects gathered before their map is built.
struct ValueVisitor;

impl<'de> DeserializeSeed<'de> for ValueVisitor {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        serde::Deserialize::deserialize(serde::de::value::I128Deserializer::new(v))
            .map(Value::Number)
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        serde::Deserialize::deserialize(serde::de::value::U128Deserializer::new(v))
            .map(Value::Number)
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueVisitor)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(String, Value)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(ValueVisitor)?;
            entries.push((k, v));
        }
        // Inserted in order: a repeated key keeps its first position and its last value, as
        // serde_json's inserts one by one do.
        let mut m = Map::with_capacity(entries.len());
        for (k, v) in entries {
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(body: &[u8]) {
        let ours = parse(body);
        let theirs = serde_json::from_slice::<Value>(body);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{:?}", String::from_utf8_lossy(body));
                // Same key order too (`Value`'s equality ignores it).
                assert_eq!(a.to_string(), b.to_string());
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!(
                "{:?}: {ours:?} vs {theirs:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }

    #[test]
    fn parses_as_serde_json_does() {
        for body in [
            &br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"b":"1","a":"2"}}}"#[..],
            br#"{"a":1,"b":2,"a":3}"#,
            br#"{"a":{"x":1},"a":[1,2]}"#,
            br#"[1,-2,3.5,1e400,18446744073709551615,-9223372036854775808,null,true,"\u00e9\n"]"#,
            br#"{"k":"v"} x"#,
            br#"{"k":"v""#,
            br#"{"k":}"#,
            b"{\"k\":\"\xff\"}",
            b"\xef\xbb\xbf{}",
            br#"{"$serde_json::private::RawValue":"{\"a\":1}"}"#,
            br#""just a string""#,
            b"",
            b"   {}   ",
            br#"{"a":"\ud800"}"#,
            br#"{"":0,"\"":1}"#,
        ] {
            same(body);
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        same(deep.as_bytes());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, failure_persistence: None, ..Default::default() })]

        /// Random bodies, and random cuts and byte flips of a realistic one.
        #[test]
        fn random_bodies_parse_as_serde_json_does(
            body in proptest::collection::vec(proptest::sample::select(
                b"{}[]\":,0123456789.eE-+ abtrufnlsx\\\xc3\xa9".to_vec()), 0..48),
            cut in 0..400usize,
            flip in (0..400usize, proptest::prelude::any::<u8>()),
        ) {
            same(&body);
            let mut real = serde_json::to_vec(&crate::semantics::perf::pod_body(cut)).unwrap();
            same(&real);
            same(&real[..cut.min(real.len())]);
            let at = flip.0 % real.len();
            real[at] = flip.1;
            same(&real);
        }
    }
}
