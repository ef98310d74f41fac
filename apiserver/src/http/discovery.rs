//! Discovery (`/api`, `/api/v1`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>`) and the small OpenAPI
//! v3 documents kubectl's `--validate=strict` needs (protocol §3, §4).
//!
//! `/api` and `/apis` answer in aggregated form (apidiscovery.k8s.io/v2, one request for all
//! resources) when the Accept header asks for it, as kubectl 1.33 does first; otherwise in the
//! legacy form, after which clients fetch each group-version document.

use serde_json::{json, Value};

use super::resources::{of_group_version, Resource, GROUPS};

/// `GET /api`
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_json(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `GET /apis`
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = GROUPS.iter().map(|(g, v)| group_json(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`
pub fn api_group(group: &str) -> Option<Value> {
    let (g, v) = GROUPS.iter().find(|(g, _)| *g == group)?;
    let mut doc = group_json(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn resource_entries(r: &Resource) -> Vec<Value> {
    let mut main = json!({
        "name": r.name,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    for s in r.subresources {
        out.push(json!({
            "name": format!("{}/{}", r.name, s.name),
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": s.kind,
            "verbs": s.verbs,
        }));
    }
    out
}

/// `GET /api/v1` and `GET /apis/<g>/<v>`.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let resources = of_group_version(group, version)?;
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let list: Vec<Value> = resources.iter().flat_map(|r| resource_entries(r)).collect();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": list,
    }))
}

/// The OpenAPI v3 path of a group-version: `api/v1`, `apis/storage.k8s.io/v1`.
fn openapi_gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A stable content hash (FNV-1a 64) for the `?hash=` of OpenAPI URLs: the documents are
/// static, so the hash only changes when the served resource table does.
fn fnv_hash(s: &str) -> String {
    format!("{:016X}", crate::api::fnv::fnv1a(s.as_bytes()))
}

/// `GET /openapi/v3`
pub fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
    gvs.extend(GROUPS.iter().copied());
    for (g, v) in gvs {
        let path = openapi_gv_path(g, v);
        let doc = openapi_gv(g, v).unwrap_or(Value::Null);
        let hash = fnv_hash(&doc.to_string());
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// `GET /openapi/v3/<api/v1 | apis/g/v>`: for every kind, the PATCH operation with its
/// `x-kubernetes-group-version-kind` and the `fieldValidation` parameter, which is what makes
/// kubectl leave validation to the server (`fieldValidation=Strict`). No schemas, and on
/// purpose no strategic-merge-patch request body (kubectl would then try to build patches from
/// `components.schemas`; without it, it uses its compiled-in types).
pub fn openapi_gv(group: &str, version: &str) -> Option<Value> {
    let resources = of_group_version(group, version)?;
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = serde_json::Map::new();
    for r in resources.iter().filter(|r| r.has_verb("patch")) {
        let op = |kind: &str| {
            json!({
                "patch": {
                    "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
                    "x-kubernetes-action": "patch",
                    "parameters": [
                        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                        {"name": "force", "in": "query", "schema": {"type": "boolean"}},
                    ],
                    "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}},
                }
            })
        };
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.name)
        } else {
            format!("{prefix}/{}/{{name}}", r.name)
        };
        paths.insert(path.clone(), op(r.kind));
        for s in r.subresources.iter().filter(|s| s.verbs.contains(&"patch")) {
            paths.insert(format!("{path}/{}", s.name), op(s.kind));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.1"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// The media type of aggregated discovery responses; kubectl decides by it.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the Accept header asks for aggregated discovery v2 (kubectl 1.33 offers it first).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|alt| {
        let params: Vec<&str> = alt.split(';').map(str::trim).collect();
        params.first() == Some(&"application/json")
            && params.contains(&"as=APIGroupDiscoveryList")
            && params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
    })
}

fn aggregated_resource(r: &Resource) -> Value {
    let kind = |k: &str| json!({"group": r.group, "version": r.version, "kind": k});
    let mut v = json!({
        "resource": r.name,
        "responseKind": kind(r.kind),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| json!({"subresource": s.name, "responseKind": kind(s.kind), "verbs": s.verbs}))
            .collect();
        v["subresources"] = json!(subs);
    }
    v
}

fn aggregated_group(name: Option<&str>, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = of_group_version(group, version)
        .unwrap_or_default()
        .iter()
        .map(|r| aggregated_resource(r))
        .collect();
    let metadata = match name {
        Some(n) => json!({"name": n, "creationTimestamp": null}),
        None => json!({"creationTimestamp": null}),
    };
    json!({
        "metadata": metadata,
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    })
}

/// Aggregated discovery for `/api` (`core = true`) or `/apis`.
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group(None, "", "v1")]
    } else {
        GROUPS
            .iter()
            .map(|(g, v)| aggregated_group(Some(g), g, v))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}
