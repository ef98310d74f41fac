//! The on-disk event envelope — the only place that knows its bytes.
//!
//! ```text
//! [format: u8 = 1][header_len: u32 LE][header: bincode 2][header_crc: u32 LE][body: JSON]
//! ```
//! The header (revision, type, key, actor, time, the revision of the previous version of the
//! key, the body's length and CRC-32) is bincode 2 with the standard config; the body is the
//! object's JSON exactly as stored, so a student can dump the log and read it. The header can be
//! decoded without touching the body (open scans every header to check the log), and both carry
//! a CRC so damage is reported with its revision instead of decoding into garbage.
//!
//! Object-table keys are `group/resource/namespace/name` (no part may contain `/`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::core::Committed;
use super::{Event, EventType, Key, Revision};

const FORMAT: u8 = 1;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("envelope too short ({0} bytes)")]
    Truncated(usize),
    #[error("unknown envelope format {0}")]
    Format(u8),
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("header does not decode: {0}")]
    Header(String),
    #[error("body checksum mismatch")]
    BodyChecksum,
    #[error("body length {found} differs from the header's {expected}")]
    BodyLength { expected: usize, found: usize },
    #[error("body is not JSON: {0}")]
    Body(String),
}

/// Everything about an event but its body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub revision: Revision,
    pub event_type: u8,
    pub group: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub actor: String,
    pub time: String,
    /// The revision of the key's previous version (`None` for ADDED).
    pub prev_revision: Option<Revision>,
    pub body_len: u32,
    pub body_crc: u32,
}

impl Header {
    pub fn key(&self) -> Key {
        Key::new(&self.group, &self.resource, &self.namespace, &self.name)
    }

    pub fn event_type(&self) -> EventType {
        match self.event_type {
            0 => EventType::Added,
            1 => EventType::Modified,
            _ => EventType::Deleted,
        }
    }
}

fn type_code(t: EventType) -> u8 {
    match t {
        EventType::Added => 0,
        EventType::Modified => 1,
        EventType::Deleted => 2,
    }
}

/// [`Header`] borrowing its strings: the same bincode bytes (bincode writes `&str` and `String`
/// alike), without copying five strings per event.
#[derive(Serialize)]
struct HeaderRef<'a> {
    revision: Revision,
    event_type: u8,
    group: &'a str,
    resource: &'a str,
    namespace: &'a str,
    name: &'a str,
    actor: &'a str,
    time: &'a str,
    prev_revision: Option<Revision>,
    body_len: u32,
    body_crc: u32,
}

/// Encodes one committed event; its JSON text becomes the body as is.
pub fn encode_event(c: &Committed) -> Vec<u8> {
    encode_event_at(c, &c.time())
}

/// [`encode_event`] with the event's time already formatted (`c.time()`; a group commit
/// formats it once for all its events of the same second).
pub fn encode_event_at(c: &Committed, time: &str) -> Vec<u8> {
    let body = c.json.as_bytes();
    let header = HeaderRef {
        revision: c.revision,
        event_type: type_code(c.event_type),
        group: &c.key.group,
        resource: &c.key.resource,
        namespace: &c.key.namespace,
        name: &c.key.name,
        actor: &c.actor,
        time,
        prev_revision: c.prev_revision,
        body_len: body.len() as u32,
        body_crc: crc32(body),
    };
    let mut out = Vec::with_capacity(1 + 4 + 128 + 4 + body.len());
    out.push(FORMAT);
    out.extend_from_slice(&[0; 4]);
    bincode::serde::encode_into_std_write(&header, &mut out, bincode::config::standard())
        .expect("the header always encodes");
    let hlen = out.len() - 5;
    out[1..5].copy_from_slice(&(hlen as u32).to_le_bytes());
    let crc = crc32(&out[5..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn split(bytes: &[u8]) -> Result<(Header, &[u8]), CodecError> {
    if bytes.len() < 9 {
        return Err(CodecError::Truncated(bytes.len()));
    }
    if bytes[0] != FORMAT {
        return Err(CodecError::Format(bytes[0]));
    }
    let hlen = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes")) as usize;
    if bytes.len() < 9 + hlen {
        return Err(CodecError::Truncated(bytes.len()));
    }
    let h = &bytes[5..5 + hlen];
    let crc = u32::from_le_bytes(bytes[5 + hlen..9 + hlen].try_into().expect("4 bytes"));
    if crc32(h) != crc {
        return Err(CodecError::HeaderChecksum);
    }
    let (header, _): (Header, usize) =
        bincode::serde::decode_from_slice(h, bincode::config::standard())
            .map_err(|e| CodecError::Header(e.to_string()))?;
    Ok((header, &bytes[9 + hlen..]))
}

/// Decodes and checks only the header.
pub fn decode_header(bytes: &[u8]) -> Result<Header, CodecError> {
    split(bytes).map(|(h, _)| h)
}

/// Decodes and checks a whole event, keeping the body as JSON text (nothing parsed).
/// `prev` is the key's previous version's text, when the caller has it.
pub fn decode_committed(bytes: &[u8]) -> Result<(Header, Arc<str>), CodecError> {
    let (h, body) = split(bytes)?;
    if body.len() != h.body_len as usize {
        return Err(CodecError::BodyLength {
            expected: h.body_len as usize,
            found: body.len(),
        });
    }
    if crc32(body) != h.body_crc {
        return Err(CodecError::BodyChecksum);
    }
    let text = std::str::from_utf8(body).map_err(|e| CodecError::Body(e.to_string()))?;
    Ok((h, Arc::from(text)))
}

/// Decodes and checks a whole event and parses its body.
pub fn decode_event(bytes: &[u8]) -> Result<(Event, Option<Revision>), CodecError> {
    let (h, body) = decode_committed(bytes)?;
    let object: Value = serde_json::from_str(&body).map_err(|e| CodecError::Body(e.to_string()))?;
    let event = Event {
        revision: h.revision,
        event_type: h.event_type(),
        key: h.key(),
        object: Arc::new(object),
        actor: h.actor,
        time: h.time,
    };
    Ok((event, h.prev_revision))
}

/// CRC-32 (IEEE), as zlib computes it. crc32fast (already linked through sled) folds with
/// PCLMULQDQ where the CPU has it: the body CRC of every event is computed on the one writer
/// thread, where a table-driven CRC was ~5% of its time.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> Committed {
        Committed {
            revision: 42,
            event_type: EventType::Modified,
            key: Arc::new(Key::new("storage.k8s.io", "storageclasses", "", "local")),
            json: Arc::from(r#"{"metadata":{"name":"local"},"z":1,"a":[1,2.5,"x"]}"#),
            prev: None,
            prev_revision: Some(41),
            actor: Arc::from("kubectl"),
            at_ms: 1_767_225_600_000,
        }
    }

    #[test]
    fn envelope_round_trips_and_keeps_body_json() {
        let c = committed();
        let bytes = encode_event(&c);
        let (back, prev) = decode_event(&bytes).unwrap();
        assert_eq!(back, c.event());
        assert_eq!(back.time, "2026-01-01T00:00:00Z");
        assert_eq!(prev, Some(41));
        assert!(String::from_utf8_lossy(&bytes).ends_with(&*c.json));
        assert_eq!(decode_header(&bytes).unwrap().revision, 42);
        assert_eq!(decode_committed(&bytes).unwrap().1, c.json);
    }

    #[test]
    fn borrowed_header_encodes_as_the_owned_one() {
        let c = committed();
        let bytes = encode_event(&c);
        let (h, body) = split(&bytes).unwrap();
        let owned = bincode::serde::encode_to_vec(&h, bincode::config::standard()).unwrap();
        assert_eq!(&bytes[5..5 + owned.len()], &owned[..]);
        assert_eq!(body, c.json.as_bytes());
    }

    #[test]
    fn damage_is_detected() {
        let bytes = encode_event(&committed());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode_event(&b).is_err(), "flipped byte {i} went unnoticed");
        }
        assert!(decode_event(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        // Every length around the 16-byte steps, against the bit-by-bit definition.
        let data: Vec<u8> = (0..100u32).map(|i| (i * 37 + 11) as u8).collect();
        for n in 0..data.len() {
            let mut c = !0u32;
            for b in &data[..n] {
                c ^= *b as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        0xEDB8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
            }
            assert_eq!(crc32(&data[..n]), !c, "length {n}");
        }
    }
}
