//! The PATCH family kube-apiserver accepts: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and strategic merge patch (with the directives kubectl sends and the
//! `patchStrategy`/`patchMergeKey` tags of k8s.io/api/core/v1/types.go for these kinds).
//! Server-side apply lives in `managed`.

use serde_json::{Map, Value};

use crate::status::ApiError;

// ------------------------------------------------------------------ JSON merge patch

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.shift_remove(k);
                } else {
                    let slot = t.entry(k.clone()).or_insert(Value::Null);
                    merge_patch(slot, v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

// ------------------------------------------------------------------ JSON patch

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(p: &str) -> Result<Vec<String>, String> {
    if p.is_empty() {
        return Ok(vec![]);
    }
    if !p.starts_with('/') {
        return Err(format!("invalid JSON pointer: {p:?}"));
    }
    Ok(p[1..].split('/').map(unescape).collect())
}

fn parent_mut<'a>(
    doc: &'a mut Value,
    toks: &[String],
    path: &str,
    op: &str,
) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t).ok_or_else(|| {
                format!(
                    "{op} operation does not apply: doc is missing path: \"{path}\": missing value"
                )
            })?,
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| format!("{op} operation does not apply: doc is missing path: \"{path}\": missing value"))?;
                a.get_mut(i).ok_or_else(|| format!("{op} operation does not apply: doc is missing path: \"{path}\": missing value"))?
            }
            _ => {
                return Err(format!(
                    "{op} operation does not apply: doc is missing path: \"{path}\": missing value"
                ))
            }
        };
    }
    Ok(cur)
}

fn get_at<'a>(doc: &'a Value, toks: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn add_at(doc: &mut Value, path: &str, v: Value) -> Result<(), String> {
    let toks = split_pointer(path)?;
    let Some((last, parent)) = toks.split_last() else {
        *doc = v;
        return Ok(());
    };
    let par = parent_mut(doc, parent, path, "add")?;
    match par {
        Value::Object(m) => {
            m.insert(last.clone(), v);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(v);
                return Ok(());
            }
            let i: usize = last.parse().map_err(|_| {
                format!(
                    "add operation does not apply: doc is missing path: \"{path}\": invalid index"
                )
            })?;
            if i > a.len() {
                return Err(format!("add operation does not apply: doc is missing path: \"{path}\": index out of bounds"));
            }
            a.insert(i, v);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: doc is missing path: \"{path}\": missing value"
        )),
    }
}

fn remove_at(doc: &mut Value, path: &str, op: &str) -> Result<Value, String> {
    let toks = split_pointer(path)?;
    let Some((last, parent)) = toks.split_last() else {
        return Err(format!(
            "{op} operation does not apply: doc is missing path: \"{path}\": missing value"
        ));
    };
    let par = parent_mut(doc, parent, path, op)?;
    let missing =
        || format!("{op} operation does not apply: doc is missing key: {path}: missing value");
    match par {
        Value::Object(m) => m.shift_remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i >= a.len() {
                return Err(missing());
            }
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

/// Why a JSON patch failed: the body is not a patch (400), or an operation does not apply
/// (422). The text is evanphx/json-patch's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonPatchError {
    Decode(String),
    Apply(String),
}

/// RFC 6902 with evanphx/json-patch's semantics and wording.
pub fn json_patch_detailed(doc: &mut Value, ops: &Value) -> Result<(), JsonPatchError> {
    let list = ops.as_array().ok_or_else(|| {
        JsonPatchError::Decode(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into(),
        )
    })?;
    let invalid = JsonPatchError::Apply;
    for op in list {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str);
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| invalid(format!("{kind} operation, missing value field")))
        };
        let path = match path {
            Some(p) => p,
            None => return Err(invalid(format!("{kind} operation, missing path field"))),
        };
        match kind {
            "add" => add_at(doc, path, value()?).map_err(invalid)?,
            "remove" => {
                remove_at(doc, path, "remove").map_err(invalid)?;
            }
            "replace" => {
                let toks = split_pointer(path).map_err(invalid)?;
                if toks.is_empty() {
                    *doc = value()?;
                    continue;
                }
                if get_at(doc, &toks).is_none() {
                    return Err(invalid(format!(
                        "replace operation does not apply: doc is missing key: {path}: missing value"
                    )));
                }
                let v = value()?;
                let (last, parent) = toks.split_last().expect("non-empty");
                match parent_mut(doc, parent, path, "replace").map_err(invalid)? {
                    Value::Object(m) => {
                        m.insert(last.clone(), v);
                    }
                    Value::Array(a) => {
                        let i: usize = last.parse().unwrap_or(usize::MAX);
                        if let Some(slot) = a.get_mut(i) {
                            *slot = v;
                        }
                    }
                    _ => {}
                }
            }
            "move" | "copy" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(format!("{kind} operation, missing from field")))?;
                let v = if kind == "move" {
                    remove_at(doc, from, "move").map_err(invalid)?
                } else {
                    let toks = split_pointer(from).map_err(invalid)?;
                    get_at(doc, &toks)
                        .cloned()
                        .ok_or_else(|| invalid(format!("copy operation does not apply: doc is missing from path: {from}: missing value")))?
                };
                add_at(doc, path, v).map_err(invalid)?;
            }
            "test" => {
                let toks = split_pointer(path).map_err(invalid)?;
                let want = op.get("value").cloned().unwrap_or(Value::Null);
                let have = get_at(doc, &toks).cloned().unwrap_or(Value::Null);
                if want != have {
                    return Err(invalid(format!("testing value {path} failed: test failed")));
                }
            }
            other => return Err(invalid(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(())
}

/// RFC 6902 as kube-apiserver answers it: an undecodable patch is 400 BadRequest; an
/// operation that does not apply is `NewGenericServerResponse(422)`, whose message keeps
/// none of the library's text ("the server rejected our request due to an error in our
/// request") — use [`json_patch_detailed`] for the reason.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), ApiError> {
    json_patch_detailed(doc, ops).map_err(|e| match e {
        JsonPatchError::Decode(m) => ApiError::bad_request(m),
        JsonPatchError::Apply(_) => ApiError::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
        ),
    })
}

// ------------------------------------------------------------------ strategic merge patch

/// How strategic merge patch treats a list (the upstream struct tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    /// No patchStrategy: the patch's list replaces the live one.
    Replace,
    /// `patchStrategy:"merge"` on a list of scalars: a set union.
    MergePrimitives,
    /// `patchStrategy:"merge" patchMergeKey:"<key>"`.
    MergeByKey(&'static str),
}

/// `path` is the dotted field path without indices, e.g. `spec.containers.env`.
pub fn list_strategy(path: &str) -> ListStrategy {
    use ListStrategy::*;
    let last = path.rsplit('.').next().unwrap_or(path);
    match last {
        "finalizers" if path == "metadata.finalizers" => MergePrimitives,
        "podCIDRs" if path == "spec.podCIDRs" => MergePrimitives,
        "ownerReferences" => MergeByKey("uid"),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => MergeByKey("name"),
        "env" => MergeByKey("name"),
        "volumeMounts" => MergeByKey("mountPath"),
        "volumeDevices" => MergeByKey("devicePath"),
        "ports" if path.ends_with("ontainers.ports") => MergeByKey("containerPort"),
        "hostAliases" | "podIPs" | "hostIPs" => MergeByKey("ip"),
        "topologySpreadConstraints" => MergeByKey("topologyKey"),
        "conditions" if path.starts_with("status.") => MergeByKey("type"),
        "addresses" if path == "status.addresses" => MergeByKey("type"),
        _ => Replace,
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Applies a strategic merge patch to `orig` (an object) in place.
pub fn strategic_merge(orig: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let p = patch
        .as_object()
        .ok_or_else(|| bad("strategic merge patch must be a JSON object"))?;
    if !orig.is_object() {
        *orig = Value::Object(Map::new());
    }
    merge_map(orig.as_object_mut().expect("object"), p, "")
}

fn merge_map(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), ApiError> {
    if let Some(d) = patch.get("$patch") {
        match d.as_str() {
            Some("replace") => {
                let mut fresh = Map::new();
                let rest: Map<String, Value> = patch
                    .iter()
                    .filter(|(k, _)| *k != "$patch")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                merge_map(&mut fresh, &rest, path)?;
                *orig = fresh;
                return Ok(());
            }
            Some("delete") => {
                orig.clear();
                return Ok(());
            }
            Some("merge") | None => {}
            Some(other) => return Err(bad(format!("Unknown patch type: {other}"))),
        }
    }
    if let Some(keys) = patch.get("$retainKeys") {
        let keys: Vec<&str> = keys
            .as_array()
            .ok_or_else(|| bad("$retainKeys must be a list of strings"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        orig.retain(|k, _| keys.contains(&k.as_str()));
    }
    // The live lists named by $setElementOrder, before merging (upstream's `serverOrder`).
    let server_lists: Vec<(String, Vec<Value>)> = patch
        .keys()
        .filter_map(|k| k.strip_prefix("$setElementOrder/"))
        .map(|l| {
            (
                l.to_string(),
                orig.get(l)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect();
    for (k, v) in patch {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let del = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(a)) = orig.get_mut(list) {
                a.retain(|x| !del.contains(x));
            }
            continue;
        }
        let fpath = join(path, k);
        if v.is_null() {
            orig.shift_remove(k);
            continue;
        }
        // `{"$patch":"delete"}` as a map value removes the key.
        if v.get("$patch").and_then(Value::as_str) == Some("delete")
            && v.as_object().is_some_and(|m| m.len() == 1)
        {
            orig.shift_remove(k);
            continue;
        }
        match (orig.get_mut(k), v) {
            (Some(Value::Object(o)), Value::Object(pm)) => merge_map(o, pm, &fpath)?,
            (Some(Value::Array(o)), Value::Array(pl)) => {
                let merged = merge_list(std::mem::take(o), pl, &fpath)?;
                *o = merged;
            }
            (_, Value::Object(pm)) => {
                let mut fresh = Map::new();
                merge_map(&mut fresh, pm, &fpath)?;
                orig.insert(k.clone(), Value::Object(fresh));
            }
            (_, Value::Array(pl)) => {
                let merged = merge_list(Vec::new(), pl, &fpath)?;
                orig.insert(k.clone(), Value::Array(merged));
            }
            (_, other) => {
                orig.insert(k.clone(), other.clone());
            }
        }
    }
    // $setElementOrder after the lists are merged.
    for (k, v) in patch {
        if let Some(list) = k.strip_prefix("$setElementOrder/") {
            let order = v.as_array().cloned().unwrap_or_default();
            let strategy = list_strategy(&join(path, list));
            let server = server_lists
                .iter()
                .find(|(l, _)| l == list)
                .map(|(_, v)| v.as_slice())
                .unwrap_or(&[]);
            if let Some(Value::Array(a)) = orig.get_mut(list) {
                reorder(a, &order, server, strategy);
            }
        }
    }
    Ok(())
}

/// Upstream's `normalizeElementOrder`: the items named in `order` (sorted by it) and the
/// server-only items (sorted by their live position) are merged, a server-only item going
/// before a named one only when both are in the live list and it came first there. So new
/// items of a merge patch land in front of server-only ones, as kube-apiserver puts them.
fn reorder(items: &mut Vec<Value>, order: &[Value], server: &[Value], strategy: ListStrategy) {
    let key = |it: &Value| -> Value {
        match strategy {
            ListStrategy::MergeByKey(k) => it.get(k).cloned().unwrap_or(Value::Null),
            _ => it.clone(),
        }
    };
    let order_keys: Vec<Value> = order.iter().map(key).collect();
    let server_keys: Vec<Value> = server.iter().map(key).collect();
    let pos = |keys: &[Value], it: &Value| keys.iter().position(|k| *k == key(it));
    let mut named: Vec<Value> = Vec::new();
    let mut server_only: Vec<Value> = Vec::new();
    for it in items.drain(..) {
        if pos(&order_keys, &it).is_some() {
            named.push(it);
        } else {
            server_only.push(it);
        }
    }
    named.sort_by_key(|it| pos(&order_keys, it).unwrap_or(usize::MAX));
    server_only.sort_by_key(|it| pos(&server_keys, it).unwrap_or(usize::MAX));
    let (mut i, mut j) = (0, 0);
    while i < server_only.len() || j < named.len() {
        let take_left = if i >= server_only.len() {
            false
        } else if j >= named.len() {
            true
        } else {
            matches!(
                (pos(&server_keys, &server_only[i]), pos(&server_keys, &named[j])),
                (Some(l), Some(r)) if l < r
            )
        };
        if take_left {
            items.push(server_only[i].clone());
            i += 1;
        } else {
            items.push(named[j].clone());
            j += 1;
        }
    }
}

fn strip_directives(v: &Value, path: &str) -> Result<Value, ApiError> {
    match v {
        Value::Object(m) => {
            let mut fresh = Map::new();
            merge_map(&mut fresh, m, path)?;
            Ok(Value::Object(fresh))
        }
        other => Ok(other.clone()),
    }
}

fn merge_list(orig: Vec<Value>, patch: &[Value], path: &str) -> Result<Vec<Value>, ApiError> {
    let strategy = list_strategy(path);
    // A `{"$patch":"replace"}` element replaces the whole list with the other elements.
    if patch
        .iter()
        .any(|it| it.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return patch
            .iter()
            .filter(|it| it.get("$patch").is_none())
            .map(|it| strip_directives(it, path))
            .collect();
    }
    if strategy != ListStrategy::Replace
        && patch
            .iter()
            .any(|it| it.get("$patch").and_then(Value::as_str) == Some("merge"))
    {
        // mergeSliceWithSpecialElements; kube-apiserver surfaces it as an internal error.
        return Err(ApiError::internal(
            "Internal error occurred: merging lists cannot yet be specified in the patch",
        ));
    }
    match strategy {
        ListStrategy::Replace => patch.iter().map(|it| strip_directives(it, path)).collect(),
        ListStrategy::MergePrimitives => {
            // A set union, then `mergeSlice`'s order normalization: the patch's values in
            // patch order, live-only values interleaved by their live position.
            let server = orig.clone();
            let mut out = orig;
            for it in patch {
                if !out.contains(it) {
                    out.push(it.clone());
                }
            }
            reorder(&mut out, patch, &server, strategy);
            Ok(out)
        }
        ListStrategy::MergeByKey(key) => {
            let server = orig.clone();
            let mut out = orig;
            for it in patch {
                let Some(m) = it.as_object() else {
                    return Err(bad(format!("unable to find api field in struct {path} for the json field: expected a map in list")));
                };
                let kv = m.get(key).cloned();
                let Some(kv) = kv else {
                    return Err(bad(format!(
                        "map: {} does not contain declared merge key: {key}",
                        Value::Object(m.clone())
                    )));
                };
                let directive = m.get("$patch").and_then(Value::as_str);
                if directive == Some("delete") {
                    out.retain(|o| o.get(key) != Some(&kv));
                    continue;
                }
                match out.iter_mut().find(|o| o.get(key) == Some(&kv)) {
                    Some(Value::Object(o)) => merge_map(o, m, path)?,
                    _ => out.push(strip_directives(it, path)?),
                }
            }
            // `mergeSlice` ends with the same normalization, ordered by the patch itself.
            let patch_order: Vec<Value> = patch
                .iter()
                .filter(|it| it.get("$patch").and_then(Value::as_str) != Some("delete"))
                .cloned()
                .collect();
            reorder(&mut out, &patch_order, &server, strategy);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386_examples() {
        let mut t = json!({"a":"b","c":{"d":"e","f":"g"}});
        merge_patch(&mut t, &json!({"a":"z","c":{"f":null}}));
        assert_eq!(t, json!({"a":"z","c":{"d":"e"}}));
        let mut t = json!({"a":[{"b":"c"}]});
        merge_patch(&mut t, &json!({"a":[1]}));
        assert_eq!(t, json!({"a":[1]}));
    }

    #[test]
    fn json_patch_ops_and_test_failure() {
        let mut d = json!({"metadata":{"labels":{"a":"1"}},"spec":{"l":[1,2]}});
        json_patch(
            &mut d,
            &json!([
                {"op":"test","path":"/metadata/labels/a","value":"1"},
                {"op":"add","path":"/metadata/labels/b~1c","value":"2"},
                {"op":"add","path":"/spec/l/-","value":3},
                {"op":"remove","path":"/spec/l/0"},
                {"op":"replace","path":"/metadata/labels/a","value":"9"},
                {"op":"copy","from":"/metadata/labels/a","path":"/spec/x"},
                {"op":"move","from":"/spec/x","path":"/spec/y"}
            ]),
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"metadata":{"labels":{"a":"9","b/c":"2"}},"spec":{"l":[2,3],"y":"9"}})
        );
        let e =
            json_patch(&mut d, &json!([{"op":"test","path":"/spec/y","value":"0"}])).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(e.reason, "Invalid");
        assert_eq!(
            e.message,
            "the server rejected our request due to an error in our request"
        );
        let e = json_patch_detailed(&mut d, &json!([{"op":"test","path":"/spec/y","value":"0"}]));
        assert_eq!(
            e,
            Err(JsonPatchError::Apply(
                "testing value /spec/y failed: test failed".into()
            ))
        );
        let e = json_patch_detailed(
            &mut d,
            &json!([{"op":"replace","path":"/spec/nope","value":1}]),
        );
        assert_eq!(
            e,
            Err(JsonPatchError::Apply(
                "replace operation does not apply: doc is missing key: /spec/nope: missing value"
                    .into()
            ))
        );
        assert_eq!(
            json_patch(&mut d, &json!({"op":"add"})).unwrap_err().code,
            400
        );
    }
}
