//! The API server over raw HTTP: auth, discovery, OpenAPI, Status errors for bad input (and
//! that nothing is stored), deletion rules, binding, watch framing, metrics.

mod http_common;

use std::time::Duration;

use http_common::*;
use serde_json::{json, Value};

fn pv(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": {"tier": "gold"}},
        "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                 "local": {"path": "/mnt/disks/vol1"}, "storageClassName": "local-storage",
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}]}]}}}
    })
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "nginx"}]}
    })
}

/// Drops every finalizer of the object at `path` if it still exists (what a controller does).
async fn release(s: &TestServer, path: &str) {
    if s.get(path).await.status == 200 {
        let r = s
            .send(
                "PATCH",
                path,
                "application/merge-patch+json",
                r#"{"metadata":{"finalizers":null}}"#,
            )
            .await;
        assert!(r.status == 200 || r.status == 404, "{}", r.text());
    }
}

async fn count(s: &TestServer, path: &str) -> usize {
    s.get(path).await.json()["items"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_version_discovery_openapi() {
    let s = start().await;
    // Anonymous endpoints.
    let v = s
        .req_full("GET", "/version", None, vec![], false, &[])
        .await;
    assert_eq!(v.status, 200);
    assert_eq!(v.json()["minor"], "33");
    assert_eq!(v.json()["gitVersion"], "v1.33.1");
    assert_eq!(v.header("cache-control"), Some("no-cache, private"));
    for p in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(
            s.req_full("GET", p, None, vec![], false, &[]).await.status,
            200,
            "{p}"
        );
    }
    // Everything else needs the token.
    for p in ["/api", "/apis", "/api/v1/pods", "/metrics", "/openapi/v3"] {
        let r = s.req_full("GET", p, None, vec![], false, &[]).await;
        assert_eq!(r.status, 401, "{p}");
        assert_eq!(r.json()["reason"], "Unauthorized");
        let r = s
            .req_full(
                "GET",
                p,
                None,
                vec![],
                false,
                &[("authorization", "Bearer wrong")],
            )
            .await;
        assert_eq!(r.status, 401, "{p} with a wrong token");
    }
    let api = s.get("/api").await.json();
    assert_eq!(api["kind"], "APIVersions");
    let apis = s.get("/apis").await.json();
    let groups: Vec<&str> = apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        ["events.k8s.io", "storage.k8s.io", "coordination.k8s.io"]
    );
    let core = s.get("/api/v1").await.json();
    let find = |doc: &Value, n: &str| {
        doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        find(&core, "persistentvolumes")["shortNames"],
        json!(["pv"])
    );
    assert_eq!(find(&core, "persistentvolumes")["namespaced"], false);
    assert_eq!(find(&core, "pods")["categories"], json!(["all"]));
    assert_eq!(find(&core, "pods/exec")["kind"], "PodExecOptions");
    assert_eq!(
        find(&core, "namespaces")["verbs"],
        json!(["create", "delete", "get", "list", "patch", "update", "watch"])
    );
    let storage = s.get("/apis/storage.k8s.io/v1").await.json();
    assert_eq!(
        find(&storage, "storageclasses")["shortNames"],
        json!(["sc"])
    );
    assert_eq!(find(&storage, "csistoragecapacities")["namespaced"], true);
    // Aggregated discovery when asked for (kubectl 1.33 asks first).
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let r = s
        .req_full("GET", "/apis", None, vec![], true, &[("accept", accept)])
        .await;
    assert_eq!(
        r.header("content-type"),
        Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    );
    let agg = r.json();
    assert_eq!(agg["items"][1]["metadata"]["name"], "storage.k8s.io");
    let r = s
        .req_full("GET", "/api", None, vec![], true, &[("accept", accept)])
        .await
        .json();
    let res = r["items"][0]["versions"][0]["resources"]
        .as_array()
        .unwrap();
    let pods = res.iter().find(|x| x["resource"] == "pods").unwrap();
    assert_eq!(pods["scope"], "Namespaced");
    assert_eq!(pods["responseKind"]["kind"], "Pod");
    assert!(pods["subresources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["subresource"] == "exec"));
    // OpenAPI v3: every patchable kind with the fieldValidation parameter.
    let root = s.get("/openapi/v3").await.json();
    let url = root["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = s.get(&url).await;
    assert_eq!(doc.header("cache-control"), Some("public, immutable"));
    let doc = doc.json();
    let op = &doc["paths"]["/api/v1/persistentvolumes/{name}"]["patch"];
    assert_eq!(
        op["x-kubernetes-group-version-kind"]["kind"],
        "PersistentVolume"
    );
    assert!(op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    assert_eq!(s.get("/openapi/v2").await.status, 404);
    // Default namespaces exist.
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let r = s.get(&format!("/api/v1/namespaces/{ns}")).await;
        assert_eq!(r.status, 200, "{ns}");
        assert_eq!(r.json()["status"]["phase"], "Active");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_stores_nothing() {
    let s = start().await;
    let pvs = "/api/v1/persistentvolumes";
    // Malformed JSON.
    let r = s.send("POST", pvs, "application/json", "{\"kind\": ").await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (400, Some("BadRequest")),
        "{}",
        r.text()
    );
    // Malformed YAML.
    let r = s
        .send("POST", pvs, "application/yaml", "kind: [unclosed\n  x: {")
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    // Kind that does not match the path.
    let r = s.post_json(pvs, &pod("web")).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "Pod in version \"v1\" cannot be handled as a PersistentVolume: converting (v1.Pod) to (core.PersistentVolume): unknown conversion"
    );
    // An apiVersion that does not match.
    let mut wrong = pv("x");
    wrong["apiVersion"] = json!("storage.k8s.io/v1");
    assert_eq!(s.post_json(pvs, &wrong).await.status, 400);
    // Bodies over 3 MiB.
    let mut big = pv("big");
    big["metadata"]["annotations"] = json!({"blob": "x".repeat(3 * 1024 * 1024 + 10)});
    let r = s.post_json(pvs, &big).await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );
    // Bad selectors.
    let r = s
        .get("/api/v1/persistentvolumes?labelSelector=a%20in%20(")
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = s
        .get("/api/v1/persistentvolumes?fieldSelector=spec.colour%3Dred")
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "field label not supported: spec.colour"
    );
    // Unknown resource, unknown group, wrong scope.
    for p in [
        "/api/v1/widgets",
        "/apis/apps/v1/deployments",
        "/api/v1/pods/web",
    ] {
        let r = s.get(p).await;
        assert_eq!(
            (r.status, r.json()["reason"].as_str()),
            (404, Some("NotFound")),
            "{p}"
        );
    }
    // Unsupported media types.
    let r = s
        .send("POST", pvs, "application/vnd.kubernetes.protobuf", "x")
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(s.post_json(pvs, &pv("p1")).await.status, 201);
    let r = s
        .send("PATCH", "/api/v1/persistentvolumes/p1", "text/plain", "{}")
        .await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    // Wrong verb.
    let r = s
        .send(
            "POST",
            "/api/v1/persistentvolumes/p1",
            "application/json",
            "{}",
        )
        .await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (405, Some("MethodNotAllowed"))
    );
    // The all-namespaces collection of a namespaced kind is read-only.
    let r = s.post_json("/api/v1/pods", &pod("web")).await;
    assert_eq!(r.status, 405);
    // Namespace that does not exist.
    let r = s.post_json("/api/v1/namespaces/nope/pods", &json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "a", "image": "i"}]}})).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "namespaces \"nope\" not found");
    // Namespace mismatch between body and path.
    let r = s
        .post_json("/api/v1/namespaces/kube-system/pods", &pod("web"))
        .await;
    assert_eq!(r.status, 400);
    // Only p1 was stored.
    assert_eq!(count(&s, pvs).await, 1);
    assert_eq!(count(&s, "/api/v1/pods").await, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_conflicts_generate_name_yaml_and_dry_run() {
    let s = start().await;
    let pvs = "/api/v1/persistentvolumes";
    let r = s.post_json(pvs, &pv("a")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let a = r.json();
    assert_eq!(
        (a["apiVersion"].as_str(), a["kind"].as_str()),
        (Some("v1"), Some("PersistentVolume"))
    );
    assert!(a["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    let r = s.post_json(pvs, &pv("a")).await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    assert_eq!(
        r.json()["message"],
        "persistentvolumes \"a\" already exists"
    );
    // YAML body.
    let yaml = "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: y\nspec:\n  capacity: {storage: 1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /tmp}\n";
    let r = s.send("POST", pvs, "application/yaml", yaml).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // generateName.
    let mut g = pv("");
    g["metadata"] = json!({"generateName": "gen-"});
    let r = s.post_json(pvs, &g).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let n = r.json()["metadata"]["name"].as_str().unwrap().to_string();
    assert!(n.starts_with("gen-") && n.len() == 9, "{n}");
    // dryRun stores nothing.
    let r = s.post_json(&format!("{pvs}?dryRun=All"), &pv("dry")).await;
    assert_eq!(r.status, 201);
    assert_eq!(s.get("/api/v1/persistentvolumes/dry").await.status, 404);
    // PUT with a stale resourceVersion → 409 Conflict; with the current one → 200.
    let rv = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut upd = a.clone();
    upd["metadata"]["labels"] = json!({"tier": "silver"});
    let r = s
        .send(
            "PUT",
            "/api/v1/persistentvolumes/a",
            "application/json",
            &upd.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(
        r.json()["metadata"]["resourceVersion"].as_str().unwrap(),
        rv
    );
    let r = s
        .send(
            "PUT",
            "/api/v1/persistentvolumes/a",
            "application/json",
            &upd.to_string(),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (409, Some("Conflict"))
    );
    // A uid in the body that names another incarnation is a 409.
    let mut other = upd.clone();
    other["metadata"]["resourceVersion"] = json!(null);
    other["metadata"]["uid"] = json!("00000000-0000-0000-0000-000000000000");
    let r = s
        .send(
            "PUT",
            "/api/v1/persistentvolumes/a",
            "application/json",
            &other.to_string(),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("Precondition failed: UID in precondition"));
    // Name mismatch on PUT.
    let r = s
        .send(
            "PUT",
            "/api/v1/persistentvolumes/b",
            "application/json",
            &upd.to_string(),
        )
        .await;
    assert_eq!(r.status, 404);
    // PUT creates an absent lease (AllowCreateOnUpdate), but not an absent PV.
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-1"}, "spec": {"holderIdentity": "node-1"}});
    let r = s
        .send(
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1",
            "application/json",
            &lease.to_string(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s
        .send(
            "PUT",
            "/api/v1/persistentvolumes/absent",
            "application/json",
            &pv("absent").to_string(),
        )
        .await;
    assert_eq!(r.status, 404);
    // resourceVersion semantics on lists: Exact rebuilds the past state, a revision the store
    // never reached is a 504, NotOlderThan is the current state.
    let past = s
        .get(&format!(
            "/api/v1/persistentvolumes?resourceVersion={rv}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(past.status, 200, "{}", past.text());
    let past = past.json();
    assert_eq!(past["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(
        past["items"].as_array().unwrap().len(),
        1,
        "only `a` existed at {rv}"
    );
    assert_eq!(past["items"][0]["metadata"]["labels"]["tier"], "gold");
    let r = s
        .get("/api/v1/persistentvolumes?resourceVersion=999999999")
        .await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (504, Some("Timeout"))
    );
    let now = s
        .get(&format!("/api/v1/persistentvolumes?resourceVersion={rv}"))
        .await
        .json();
    assert!(now["items"].as_array().unwrap().len() >= 3);
    // Merge patch.
    let r = s
        .send(
            "PATCH",
            "/api/v1/persistentvolumes/a",
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"k":"v"}}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["metadata"]["labels"]["k"], "v");
    // Server-side apply creates an absent object (201) and applies to a present one (200).
    let body = pv("ssa").to_string();
    let r = s
        .send(
            "PATCH",
            "/api/v1/persistentvolumes/ssa?fieldManager=kubectl",
            "application/apply-patch+yaml",
            &body,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s
        .send(
            "PATCH",
            "/api/v1/persistentvolumes/ssa?fieldManager=kubectl",
            "application/apply-patch+yaml",
            &body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Label and field selectors; limit/continue.
    let r = s
        .get("/api/v1/persistentvolumes?labelSelector=k%3Dv")
        .await
        .json();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    let r = s
        .get("/api/v1/persistentvolumes?fieldSelector=metadata.name%3Dy")
        .await
        .json();
    assert_eq!(r["items"][0]["metadata"]["name"], "y");
    let page = s.get("/api/v1/persistentvolumes?limit=2").await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cont = page["metadata"]["continue"]
        .as_str()
        .expect("continue token")
        .to_string();
    let rest = s
        .get(&format!(
            "/api/v1/persistentvolumes?limit=2&continue={cont}"
        ))
        .await
        .json();
    assert!(!rest["items"].as_array().unwrap().is_empty());
    // Delete with a uid precondition that does not match → 409; then delete.
    let r = s
        .send(
            "DELETE",
            "/api/v1/persistentvolumes/a",
            "application/json",
            r#"{"preconditions":{"uid":"nope"}}"#,
        )
        .await;
    assert_eq!(r.status, 409);
    let r = s
        .send(
            "DELETE",
            "/api/v1/persistentvolumes/a",
            "application/json",
            r#"{"propagationPolicy":"Background"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["kind"], "PersistentVolume");
    // Admission may add kubernetes.io/pv-protection (a volume controller removes it).
    release(&s, "/api/v1/persistentvolumes/a").await;
    assert_eq!(s.get("/api/v1/persistentvolumes/a").await.status, 404);
    // bonsai's history endpoint: the object's timeline with its writers.
    let h = s
        .get("/bonsai/v1/history?resource=persistentvolumes&name=a")
        .await;
    assert_eq!(h.status, 200, "{}", h.text());
    let h = h.json();
    let types: Vec<&str> = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"ADDED"));
    assert!(types.contains(&"MODIFIED"));
    assert_eq!(h["events"][0]["actor"], "bonsai-http-test");
    let st = s
        .get(&format!("/bonsai/v1/state?revision={rv}"))
        .await
        .json();
    assert_eq!(
        st["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["key"]["resource"] == "persistentvolumes")
            .count(),
        1
    );
    assert_eq!(
        s.req_full(
            "GET",
            "/bonsai/v1/history?resource=persistentvolumes&name=a",
            None,
            vec![],
            false,
            &[]
        )
        .await
        .status,
        401
    );
    assert_eq!(s.get("/bonsai/v1/history?name=a").await.status, 400);
    // Table output.
    let r = s
        .req_full(
            "GET",
            "/api/v1/persistentvolumes",
            None,
            vec![],
            true,
            &[(
                "accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )],
        )
        .await
        .json();
    assert_eq!(r["kind"], "Table");
    assert!(!r["rows"].as_array().unwrap().is_empty());
    // deletecollection with a selector.
    let r = s
        .send(
            "DELETE",
            "/api/v1/persistentvolumes?labelSelector=tier%3Dgold",
            "application/json",
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let gone = r.json();
    for item in gone["items"].as_array().unwrap() {
        release(
            &s,
            &format!(
                "/api/v1/persistentvolumes/{}",
                item["metadata"]["name"].as_str().unwrap()
            ),
        )
        .await;
    }
    assert_eq!(
        count(&s, "/api/v1/persistentvolumes?labelSelector=tier%3Dgold").await,
        0
    );
    assert!(
        count(&s, "/api/v1/persistentvolumes").await >= 1,
        "y has no tier label"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_pods_binding_namespaces() {
    let s = start().await;
    // Finalizers: DELETE marks, the update removing the last finalizer deletes.
    let mut p = pv("fin");
    p["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(
        s.post_json("/api/v1/persistentvolumes", &p).await.status,
        201
    );
    let r = s
        .send(
            "DELETE",
            "/api/v1/persistentvolumes/fin",
            "application/json",
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(s.get("/api/v1/persistentvolumes/fin").await.status, 200);
    let r = s
        .send(
            "PATCH",
            "/api/v1/persistentvolumes/fin",
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/api/v1/persistentvolumes/fin").await.status, 404);

    // A pod without a node is deleted at once.
    assert_eq!(
        s.post_json("/api/v1/namespaces/default/pods", &pod("free"))
            .await
            .status,
        201
    );
    assert_eq!(
        s.send(
            "DELETE",
            "/api/v1/namespaces/default/pods/free",
            "application/json",
            ""
        )
        .await
        .status,
        200
    );
    assert_eq!(
        s.get("/api/v1/namespaces/default/pods/free").await.status,
        404
    );

    // Binding sets the node; a second binding is a 409 with upstream's text.
    assert_eq!(
        s.post_json("/api/v1/namespaces/default/pods", &pod("web"))
            .await
            .status,
        201
    );
    let b = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"}, "target": {"kind": "Node", "name": "node-1"}});
    let r = s
        .req_full(
            "POST",
            "/api/v1/namespaces/default/pods/web/binding",
            Some("application/json"),
            b.to_string().into_bytes(),
            true,
            &[("user-agent", "bonsai-scheduler/v0.1")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let got = s.get("/api/v1/namespaces/default/pods/web").await.json();
    assert_eq!(got["spec"]["nodeName"], "node-1");
    assert!(got["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["status"] == "True"));
    let mut b2 = b.clone();
    b2["target"]["name"] = json!("node-2");
    let r = s
        .post_json("/api/v1/namespaces/default/pods/web/binding", &b2)
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["message"], "Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"node-1\"");
    let hist = s
        .store
        .history(&apiserver::store::Key::new("", "pods", "default", "web"))
        .unwrap();
    assert_eq!(hist.events.last().unwrap().actor, "bonsai-scheduler");

    // A pod on a node is deleted gracefully: deletionTimestamp, and the kubelet's grace-0
    // delete finishes it.
    let r = s
        .send(
            "DELETE",
            "/api/v1/namespaces/default/pods/web",
            "application/json",
            "{}",
        )
        .await;
    assert_eq!(r.status, 200);
    let marked = r.json();
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    let uid = marked["metadata"]["uid"].as_str().unwrap().to_string();
    let r = s
        .send(
            "DELETE",
            "/api/v1/namespaces/default/pods/web",
            "application/json",
            &json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}).to_string(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        s.get("/api/v1/namespaces/default/pods/web").await.status,
        404
    );

    // A pod on a node that also has a finalizer: graceful mark, the kubelet's grace-0 delete
    // shortens it to 0, and removing the finalizer then deletes it.
    let mut held = pod("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    held["spec"]["nodeName"] = json!("node-1");
    assert_eq!(
        s.post_json("/api/v1/namespaces/default/pods", &held)
            .await
            .status,
        201
    );
    let r = s
        .send(
            "DELETE",
            "/api/v1/namespaces/default/pods/held",
            "application/json",
            "",
        )
        .await;
    assert_eq!(r.json()["metadata"]["deletionGracePeriodSeconds"], 30);
    let r = s
        .send(
            "DELETE",
            "/api/v1/namespaces/default/pods/held",
            "application/json",
            r#"{"gracePeriodSeconds":0}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["metadata"]["deletionGracePeriodSeconds"],
        0,
        "{}",
        r.text()
    );
    assert_eq!(
        s.get("/api/v1/namespaces/default/pods/held").await.status,
        200
    );
    let r = s
        .send(
            "PATCH",
            "/api/v1/namespaces/default/pods/held",
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null}}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        s.get("/api/v1/namespaces/default/pods/held").await.status,
        404
    );

    // Namespace deletion: Terminating, contents deleted, then gone.
    assert_eq!(
        s.post_json("/api/v1/namespaces", &json!({"metadata": {"name": "lab"}}))
            .await
            .status,
        201
    );
    let mut lp = pod("in-lab");
    lp["metadata"]["namespace"] = json!("lab");
    assert_eq!(
        s.post_json("/api/v1/namespaces/lab/pods", &lp).await.status,
        201
    );
    let r = s
        .send("DELETE", "/api/v1/namespaces/lab", "application/json", "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"]["phase"], "Terminating");
    let mut late = pod("late");
    late["metadata"]["namespace"] = json!("lab");
    let r = s.post_json("/api/v1/namespaces/lab/pods", &late).await;
    assert_eq!(r.status, 403, "{}", r.text());
    wait_for("namespace lab to go", Duration::from_secs(10), || async {
        (s.get("/api/v1/namespaces/lab").await.status == 404).then_some(())
    })
    .await;
    assert_eq!(
        s.get("/api/v1/namespaces/lab/pods/in-lab").await.status,
        404
    );
    // The default namespaces cannot be deleted.
    assert_eq!(
        s.send(
            "DELETE",
            "/api/v1/namespaces/default",
            "application/json",
            ""
        )
        .await
        .status,
        403
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_expire_after_ttl() {
    let s = start_with(Options {
        event_ttl: Some(Duration::from_secs(1)),
        reaper_interval: Some(Duration::from_millis(100)),
        ..Options::default()
    })
    .await;
    let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Scheduled", "message": "hi", "type": "Normal"});
    let r = s.post_json("/api/v1/namespaces/default/events", &ev).await;
    assert_eq!(r.status, 201, "{}", r.text());
    // describe's query works.
    let r = s.get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dweb%2CinvolvedObject.namespace%3Ddefault").await.json();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    // DELETE of an event answers a Success Status.
    wait_for("event e1 to expire", Duration::from_secs(10), || async {
        (s.get("/api/v1/namespaces/default/events/e1").await.status == 404).then_some(())
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stream_framing_and_metrics() {
    let s = start_with(Options {
        bookmark_interval: Some(Duration::from_millis(100)),
        ..Options::default()
    })
    .await;
    assert_eq!(
        s.post_json("/api/v1/persistentvolumes", &pv("w1"))
            .await
            .status,
        201
    );
    // A watch from "0" with a short timeout: ADDED for w1, then the stream ends.
    let r = s
        .get("/api/v1/persistentvolumes?watch=true&resourceVersion=0&timeoutSeconds=1")
        .await;
    assert_eq!(r.status, 200);
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.text());
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["kind"], "PersistentVolume");
    // A watch from an exact revision gets later changes only.
    let rv = lines[0]["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        s.post_json("/api/v1/persistentvolumes", &pv("w2"))
            .await
            .status,
        201
    );
    let r = s
        .get(&format!(
            "/api/v1/persistentvolumes?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        ))
        .await;
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", r.text());
    assert_eq!(lines[0]["object"]["metadata"]["name"], "w2");
    // Bookmarks (asked for) carry only kind, apiVersion and the revision; the WatchList
    // protocol ends its initial events with the annotated bookmark.
    let r = s.get("/api/v1/persistentvolumes?watch=1&allowWatchBookmarks=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1").await;
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[1]["type"], "ADDED");
    assert_eq!(lines[2]["type"], "BOOKMARK", "{}", r.text());
    assert_eq!(
        lines[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(
        lines[3..].iter().any(|l| l["type"] == "BOOKMARK"),
        "periodic bookmark: {}",
        r.text()
    );
    let b = &lines[3]["object"];
    assert_eq!(
        (b["kind"].as_str(), b["apiVersion"].as_str()),
        (Some("PersistentVolume"), Some("v1"))
    );
    assert!(b["metadata"]["resourceVersion"].is_string() && b.get("spec").is_none());
    // Without allowWatchBookmarks, none.
    let r = s
        .get("/api/v1/persistentvolumes?watch=1&resourceVersion=0&timeoutSeconds=1")
        .await;
    assert!(!r.text().contains("BOOKMARK"));
    // Metrics.
    let m = s.get("/metrics").await.text();
    assert!(m.contains("apiserver_request_total{code=\"201\",group=\"\",resource=\"persistentvolumes\",subresource=\"\",verb=\"POST\"} 2"), "{m}");
    assert!(m.contains("apiserver_request_duration_seconds_bucket{group=\"\",resource=\"persistentvolumes\",subresource=\"\",verb=\"POST\",le=\"+Inf\"} 2"));
    assert!(m.contains(
        "apiserver_registered_watchers{group=\"\",kind=\"PersistentVolume\",version=\"v1\"} 0"
    ));
    assert!(m.contains("bonsai_test_metric 1"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_port_is_named() {
    let s = start().await;
    let store = s.store.clone();
    let cfg = apiserver::http::ServerConfig::new(s.addr, "t", store);
    let err = apiserver::http::serve(cfg)
        .await
        .err()
        .expect("second bind must fail");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("port {}", s.addr.port())) && msg.contains("in use"),
        "{msg}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_k8s_io_and_core_events_are_one_storage() {
    let s = start().await;
    // Recorded through events.k8s.io/v1 (what kube-rs' Recorder uses)…
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "bonsai-scheduler",
        "reportingInstance": "bonsai-scheduler-1", "action": "Binding", "reason": "Scheduled",
        "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
        "note": "Successfully assigned default/web to node-1", "type": "Normal"});
    let r = s
        .post_json("/apis/events.k8s.io/v1/namespaces/default/events", &ev)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json()["note"],
        "Successfully assigned default/web to node-1"
    );
    // …is what describe finds through core/v1.
    let core = s
        .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dweb")
        .await
        .json();
    assert_eq!(core["items"].as_array().unwrap().len(), 1, "{core}");
    let item = &core["items"][0];
    assert_eq!(
        item["message"],
        "Successfully assigned default/web to node-1"
    );
    assert_eq!(item["reportingComponent"], "bonsai-scheduler");
    // And the other way round, with events.k8s.io field names in the selector.
    let ce = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "pvc.1"},
        "involvedObject": {"kind": "PersistentVolumeClaim", "name": "claim", "namespace": "default"},
        "reason": "WaitForFirstConsumer", "message": "waiting for first consumer to be created before binding",
        "type": "Normal", "source": {"component": "persistentvolume-controller"}});
    assert_eq!(
        s.post_json("/api/v1/namespaces/default/events", &ce)
            .await
            .status,
        201
    );
    let v1 = s
        .get(
            "/apis/events.k8s.io/v1/namespaces/default/events?fieldSelector=regarding.name%3Dclaim",
        )
        .await
        .json();
    assert_eq!(v1["items"].as_array().unwrap().len(), 1, "{v1}");
    assert_eq!(
        v1["items"][0]["deprecatedSource"]["component"],
        "persistentvolume-controller"
    );
    assert_eq!(v1["items"][0]["apiVersion"], "events.k8s.io/v1");
    let one = s
        .get("/apis/events.k8s.io/v1/namespaces/default/events/pvc.1")
        .await
        .json();
    assert_eq!(
        one["note"],
        "waiting for first consumer to be created before binding"
    );
    // Watches through events.k8s.io see core writes in their own shape.
    let rv = v1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let patch = json!({"message": "again"});
    let r = s
        .send(
            "PATCH",
            "/api/v1/namespaces/default/events/pvc.1",
            "application/merge-patch+json",
            &patch.to_string(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let w = s
        .get(&format!("/apis/events.k8s.io/v1/namespaces/default/events?watch=1&resourceVersion={rv}&timeoutSeconds=1"))
        .await
        .text();
    let first: Value = serde_json::from_str(w.lines().next().expect("one event")).unwrap();
    assert_eq!(first["type"], "MODIFIED");
    assert_eq!(first["object"]["note"], "again");
    // Delete through either version.
    let r = s
        .send(
            "DELETE",
            "/apis/events.k8s.io/v1/namespaces/default/events/web.1",
            "application/json",
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "Success");
    assert_eq!(
        s.get("/api/v1/namespaces/default/events/web.1")
            .await
            .status,
        404
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_watches() {
    use http_body_util::BodyExt;
    let mut s = start().await;
    // An open watch without timeout, read through a raw connection.
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/api/v1/namespaces?watch=1")
        .header("host", "x")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // The four default namespaces arrive first.
    let mut seen = String::new();
    while seen.lines().count() < 4 {
        let frame = body.frame().await.expect("frame").unwrap();
        if let Some(d) = frame.data_ref() {
            seen.push_str(&String::from_utf8_lossy(d));
        }
    }
    let handle = s.handle.take().unwrap();
    assert_eq!(handle.current_watches(), 1);
    let trigger = handle.shutdown_trigger();
    trigger();
    // The stream ends, and the server stops.
    while let Some(f) = body.frame().await {
        if f.is_err() {
            break;
        }
    }
    tokio::time::timeout(Duration::from_secs(10), handle.join())
        .await
        .expect("server stopped");
}

/// DefaultStorageClass admission: a claim created without a class gets the default one; a
/// claim that names a class, or is created while no class is default, keeps what it said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_without_class_gets_the_default_storage_class() {
    let s = start().await;
    let claim = |name: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": name},
               "spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}})
    };
    let pvcs = "/api/v1/namespaces/default/persistentvolumeclaims";
    // No default class yet: the claim stays classless.
    let r = s.post_json(pvcs, &claim("before")).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json().pointer("/spec/storageClassName").is_none());
    let sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard",
                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/no-provisioner"});
    let r = s
        .post_json("/apis/storage.k8s.io/v1/storageclasses", &sc)
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = s.post_json(pvcs, &claim("after")).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["spec"]["storageClassName"], "standard");
    let mut named = claim("named");
    named["spec"]["storageClassName"] = json!("local-storage");
    let r = s.post_json(pvcs, &named).await;
    assert_eq!(r.json()["spec"]["storageClassName"], "local-storage");
    s.stop().await;
}

/// Patches that name no resourceVersion never answer 409, however many writers race: each is
/// re-applied to the newer object (kube-apiserver's GuaranteedUpdate). A patch that does name
/// a stale resourceVersion is a precondition and gets the Conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_without_resource_version_all_apply() {
    let s = std::sync::Arc::new(start().await);
    let path = "/api/v1/persistentvolumes/racy";
    let r = s.post_json("/api/v1/persistentvolumes", &pv("racy")).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let stale = r.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (ct, body) = match i % 3 {
                0 => (
                    "application/merge-patch+json",
                    format!(r#"{{"metadata":{{"labels":{{"l{i}":"x"}}}}}}"#),
                ),
                1 => (
                    "application/strategic-merge-patch+json",
                    format!(r#"{{"metadata":{{"labels":{{"l{i}":"x"}}}}}}"#),
                ),
                _ => (
                    "application/json-patch+json",
                    format!(r#"[{{"op":"add","path":"/metadata/labels/l{i}","value":"x"}}]"#),
                ),
            };
            s.send("PATCH", path, ct, &body).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let labels = s.get(path).await.json()["metadata"]["labels"].clone();
    for i in 0..24 {
        assert_eq!(labels[format!("l{i}")], "x", "{labels}");
    }
    let pinned = format!(r#"{{"metadata":{{"resourceVersion":"{stale}","labels":{{"z":"y"}}}}}}"#);
    let r = s
        .send("PATCH", path, "application/merge-patch+json", &pinned)
        .await;
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["reason"], "Conflict");
}

/// A write's answer is the object as stored: byte for byte what a GET right after it sends,
/// and what serializing the object gives (the answer is the store's committed text, not the
/// object serialized again). Asked for as a Table, it is still a Table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_answers_are_the_stored_bytes() {
    let s = start().await;
    let same = |what: &str, answer: &Resp, get: &Resp| {
        assert!(
            answer.status == 201 || answer.status == 200,
            "{what}: {}",
            answer.text()
        );
        assert_eq!(answer.text(), get.text(), "{what}: answer and GET differ");
        let reserialized = serde_json::to_vec(&answer.json()).unwrap();
        assert_eq!(answer.body, reserialized, "{what}: not serde_json's bytes");
        assert_eq!(answer.header("content-type"), Some("application/json"));
    };
    let r = s.post_json("/api/v1/persistentvolumes", &pv("bytes")).await;
    same(
        "create",
        &r,
        &s.get("/api/v1/persistentvolumes/bytes").await,
    );
    let path = "/api/v1/namespaces/default/pods/bytes";
    let r = s
        .post_json("/api/v1/namespaces/default/pods", &pod("bytes"))
        .await;
    same("create pod", &r, &s.get(path).await);
    let mut obj = r.json();
    obj["metadata"]["labels"] = json!({"a": "b"});
    let r = s
        .send("PUT", path, "application/json", &obj.to_string())
        .await;
    same("update", &r, &s.get(path).await);
    let r = s
        .send(
            "PATCH",
            path,
            "application/merge-patch+json",
            r#"{"metadata":{"annotations":{"x":"y"}}}"#,
        )
        .await;
    same("patch", &r, &s.get(path).await);
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let r = s
        .req_full(
            "POST",
            "/api/v1/persistentvolumes",
            Some("application/json"),
            pv("bytes-table").to_string().into_bytes(),
            true,
            &[("accept", table)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["kind"], "Table", "{}", r.text());
    s.stop().await;
}
