//! The little protobuf bonsai has to read: kubectl's typed-client commands send some bodies as
//! `application/vnd.kubernetes.protobuf` — for the kinds bonsai serves, that is
//! `kubectl create namespace NAME`. The envelope is Kubernetes' `k8s\0` magic followed by a
//! `runtime.Unknown {typeMeta{apiVersion,kind}, raw}`, and `raw` is the `v1.Namespace`
//! message. Only the fields a client can set on a new namespace are decoded (name,
//! generateName, labels, annotations, finalizers, spec.finalizers); responses stay JSON, which
//! the client accepts (`Accept: application/vnd.kubernetes.protobuf, */*`).

use serde_json::{json, Map, Value};

const MAGIC: &[u8] = b"k8s\x00";

/// One field of a protobuf message: (number, payload).
enum Field<'a> {
    /// Varints are skipped: none of the decoded fields is one.
    Varint,
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Splits a message into its fields; `None` if malformed.
fn fields(b: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let (num, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                varint(b, &mut i)?;
                out.push((num, Field::Varint));
            }
            1 => i += 8,
            2 => {
                let len = varint(b, &mut i)? as usize;
                let end = i.checked_add(len).filter(|e| *e <= b.len())?;
                out.push((num, Field::Bytes(&b[i..end])));
                i = end;
            }
            5 => i += 4,
            _ => return None,
        }
    }
    (i == b.len()).then_some(out)
}

fn string(f: &Field<'_>) -> Option<String> {
    match f {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).ok(),
        Field::Varint => None,
    }
}

fn map_entry(f: &Field<'_>) -> Option<(String, String)> {
    let Field::Bytes(b) = f else { return None };
    let mut k = String::new();
    let mut v = String::new();
    for (n, x) in fields(b)? {
        match n {
            1 => k = string(&x)?,
            2 => v = string(&x)?,
            _ => {}
        }
    }
    Some((k, v))
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    for (n, f) in fields(b)? {
        match n {
            1 => {
                m.insert("name".into(), json!(string(&f)?));
            }
            2 => {
                m.insert("generateName".into(), json!(string(&f)?));
            }
            3 => {
                m.insert("namespace".into(), json!(string(&f)?));
            }
            11 => {
                let (k, v) = map_entry(&f)?;
                labels.insert(k, json!(v));
            }
            12 => {
                let (k, v) = map_entry(&f)?;
                annotations.insert(k, json!(v));
            }
            14 => finalizers.push(json!(string(&f)?)),
            _ => {}
        }
    }
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Some(Value::Object(m))
}

/// Decodes a protobuf-encoded body into the JSON object it stands for. `Err` carries the reason
/// (a kind other than Namespace is unsupported, anything malformed is malformed).
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("the body does not start with the Kubernetes protobuf magic number")?;
    let unknown = fields(rest).ok_or("malformed protobuf envelope")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    for (n, f) in &unknown {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm).ok_or("malformed protobuf typeMeta")? {
                    match tn {
                        1 => api_version = string(&tf).unwrap_or_default(),
                        2 => kind = string(&tf).unwrap_or_default(),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = Some(*r),
            _ => {}
        }
    }
    if api_version != "v1" || kind != "Namespace" {
        return Err(format!(
            "protobuf bodies are supported for v1 Namespace only (got {api_version} {kind}); send application/json"
        ));
    }
    let raw = raw.ok_or("the protobuf envelope has no object")?;
    let mut obj = json!({"apiVersion": "v1", "kind": "Namespace"});
    for (n, f) in fields(raw).ok_or("malformed protobuf Namespace")? {
        match (n, f) {
            (1, Field::Bytes(b)) => {
                obj["metadata"] = object_meta(b).ok_or("malformed protobuf ObjectMeta")?;
            }
            (2, Field::Bytes(b)) => {
                let mut fin = Vec::new();
                for (sn, sf) in fields(b).ok_or("malformed protobuf NamespaceSpec")? {
                    if sn == 1 {
                        fin.push(json!(string(&sf).ok_or("malformed finalizer")?));
                    }
                }
                if !fin.is_empty() {
                    obj["spec"] = json!({"finalizers": fin});
                }
            }
            _ => {}
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(num: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![(num << 3) | 2, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_kubectl_create_namespace() {
        let mut meta = ld(1, b"lab");
        meta.extend(ld(11, &[ld(1, b"team"), ld(2, b"storage")].concat()));
        let ns = [ld(1, &meta), ld(2, &[]), ld(3, &[])].concat();
        let tm = [ld(1, b"v1"), ld(2, b"Namespace")].concat();
        let body = [
            MAGIC.to_vec(),
            ld(1, &tm),
            ld(2, &ns),
            ld(3, b""),
            ld(4, b""),
        ]
        .concat();
        let v = decode(&body).unwrap();
        assert_eq!(v["metadata"]["name"], "lab");
        assert_eq!(v["metadata"]["labels"]["team"], "storage");
        assert_eq!(v["kind"], "Namespace");
        assert!(decode(b"k8s\x00\xff").is_err());
        assert!(decode(b"{}").is_err());
    }
}
