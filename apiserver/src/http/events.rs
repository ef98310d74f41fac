//! `events.k8s.io/v1` Events live in the same storage as `core/v1` Events, as in Kubernetes:
//! one object, two API versions. The store keeps the core shape (group ""), and requests on
//! `events.k8s.io/v1` convert on the way in and out with kube-apiserver's field mapping
//! (`note`↔`message`, `regarding`↔`involvedObject`, `reportingController`↔`reportingComponent`,
//! `deprecatedSource`↔`source`, `deprecatedFirstTimestamp`↔`firstTimestamp`,
//! `deprecatedLastTimestamp`↔`lastTimestamp`, `deprecatedCount`↔`count`). So an event a
//! controller records through either API shows in `kubectl describe` and `kubectl events`.

use serde_json::{Map, Value};

pub const GROUP: &str = "events.k8s.io";

/// (events.k8s.io/v1 name, core/v1 name) of the fields that differ.
const RENAMES: &[(&str, &str)] = &[
    ("note", "message"),
    ("regarding", "involvedObject"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether `group/resource` is stored as core events.
pub fn is_events_k8s_io(group: &str, resource: &str) -> bool {
    group == GROUP && resource == "events"
}

fn rename(obj: &Value, api_version: &str, to_core: bool) -> Value {
    let Some(o) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::with_capacity(o.len());
    out.insert("apiVersion".into(), Value::String(api_version.to_string()));
    out.insert("kind".into(), Value::String("Event".into()));
    for (k, v) in o {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        let name = RENAMES
            .iter()
            .find(|(new, old)| if to_core { new == k } else { old == k })
            .map(|(new, old)| if to_core { *old } else { *new })
            .unwrap_or(k.as_str());
        out.insert(name.to_string(), v.clone());
    }
    Value::Object(out)
}

/// A stored core/v1 Event as events.k8s.io/v1 shows it.
pub fn to_events_v1(core: &Value) -> Value {
    rename(core, "events.k8s.io/v1", false)
}

/// An events.k8s.io/v1 Event in the stored core/v1 shape.
pub fn to_core(ev: &Value) -> Value {
    rename(ev, "v1", true)
}

/// An events.k8s.io/v1 field selector in core terms (`regarding.name` → `involvedObject.name`,
/// `reportingController` → `reportingComponent`, …). Escaped commas stay intact.
pub fn field_selector_to_core(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut term_start = true;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if term_start {
            term_start = false;
            // Collect the field name up to the operator.
            let mut field = String::from(c);
            while let Some(&n) = chars.peek() {
                if n == '=' || n == '!' {
                    break;
                }
                field.push(n);
                chars.next();
            }
            let mapped = RENAMES
                .iter()
                .find_map(|(new, old)| {
                    if field == *new {
                        Some(old.to_string())
                    } else {
                        field
                            .strip_prefix(&format!("{new}."))
                            .map(|rest| format!("{old}.{rest}"))
                    }
                })
                .unwrap_or(field);
            out.push_str(&mapped);
            continue;
        }
        out.push(c);
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else if c == ',' {
            term_start = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_both_ways() {
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "bonsai-scheduler",
            "reportingInstance": "bonsai-scheduler-1", "action": "Binding", "reason": "Scheduled",
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
            "note": "Successfully assigned default/web to node-1", "type": "Normal"});
        let core = to_core(&ev);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(
            core["message"],
            "Successfully assigned default/web to node-1"
        );
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["reportingComponent"], "bonsai-scheduler");
        assert!(core.get("note").is_none());
        assert_eq!(to_events_v1(&core), ev);
    }

    #[test]
    fn maps_field_selectors() {
        assert_eq!(
            field_selector_to_core("regarding.name=web,reportingController!=x,metadata.name=a\\,b"),
            "involvedObject.name=web,reportingComponent!=x,metadata.name=a\\,b"
        );
        assert_eq!(field_selector_to_core("type==Warning"), "type==Warning");
    }
}
