//! core/v1 `Event` ⇄ events.k8s.io/v1 `Event`: in kube-apiserver both APIs are views of the
//! same stored objects (pkg/apis/events/v1 conversion), so an event a controller records
//! through events.k8s.io shows up in `kubectl get events` (core/v1) and the other way round.
//! The HTTP layer can store one form and serve the other through these.

use serde_json::{Map, Value};

/// (events.k8s.io/v1 field, core/v1 field)
const FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    // same name in both
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("related", "related"),
    ("type", "type"),
];

fn convert(ev: &Value, api_version: &str, from_new: bool) -> Value {
    let Some(m) = ev.as_object() else {
        return ev.clone();
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    if let Some(meta) = m.get("metadata") {
        out.insert("metadata".into(), meta.clone());
    }
    for (new, old) in FIELDS {
        let (src, dst) = if from_new { (new, old) } else { (old, new) };
        if let Some(v) = m.get(*src) {
            out.insert(dst.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// An events.k8s.io/v1 Event as core/v1 presents it.
pub fn events_v1_to_core(ev: &Value) -> Value {
    convert(ev, "v1", true)
}

/// A core/v1 Event as events.k8s.io/v1 presents it.
pub fn core_to_events_v1(ev: &Value) -> Value {
    convert(ev, "events.k8s.io/v1", false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let core = json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"x","namespace":"default"},
            "involvedObject":{"kind":"Pod","name":"p","namespace":"default"},"reason":"Scheduled",
            "message":"Successfully assigned default/p to node-1","type":"Normal","count":1,
            "source":{"component":"default-scheduler"},"firstTimestamp":"2026-11-25T09:00:00Z"});
        let new = core_to_events_v1(&core);
        assert_eq!(new["apiVersion"], "events.k8s.io/v1");
        assert_eq!(new["note"], "Successfully assigned default/p to node-1");
        assert_eq!(new["regarding"]["name"], "p");
        assert_eq!(new["deprecatedCount"], 1);
        assert_eq!(events_v1_to_core(&new), core);
    }
}
