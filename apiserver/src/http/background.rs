//! What kube-apiserver and its controller manager do on their own, for the kinds bonsai serves:
//! the startup namespaces, the namespace finalizer (a Terminating namespace's contents are
//! deleted, then the namespace), and the event TTL (events expire after `event_ttl`, as etcd
//! leases expire them in Kubernetes).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::resources::RESOURCES;
use super::rest::{delete_object, st_create, st_delete, st_get, st_list, st_update, DeleteOpts};
use super::util::parse_rfc3339;
use super::{AppState, ServerConfig};
use crate::status::ApiError;
use crate::store::{Key, ListQuery, Precondition, StoreError};

/// The namespaces every cluster starts with.
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The actor of the namespace finalizer's writes (kube-controller-manager's controller name).
const NAMESPACE_ACTOR: &str = "namespace-controller";
/// The actor of expired-event deletions.
const EVENT_TTL_ACTOR: &str = "event-ttl";

/// Creates the default namespaces that are absent (a restart keeps the existing ones).
pub(crate) async fn ensure_default_namespaces(state: &AppState) -> Result<(), ApiError> {
    for ns in DEFAULT_NAMESPACES {
        let key = Key::new("", "namespaces", "", ns);
        if st_get(state, &key).is_some() {
            continue;
        }
        let obj = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        match st_create(state, key, obj, "kube-apiserver").await {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Starts the namespace finalizer and the event reaper; both end on shutdown.
pub(crate) fn spawn(state: Arc<AppState>, config: &ServerConfig) {
    let ttl = config.event_ttl;
    let interval = config
        .reaper_interval
        .unwrap_or_else(|| (ttl / 10).clamp(Duration::from_millis(100), Duration::from_secs(60)));
    let s = state.clone();
    tokio::spawn(async move { event_reaper(s, ttl, interval).await });
    tokio::spawn(async move { namespace_finalizer(state).await });
}

fn latest_time(ev: &Value) -> Option<SystemTime> {
    let mut times: Vec<&str> = Vec::new();
    for p in [
        "/lastTimestamp",
        "/deprecatedLastTimestamp",
        "/eventTime",
        "/series/lastObservedTime",
        "/metadata/creationTimestamp",
    ] {
        if let Some(s) = ev.pointer(p).and_then(Value::as_str) {
            times.push(s);
        }
    }
    if let Some(mf) = ev
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    {
        times.extend(
            mf.iter()
                .filter_map(|m| m.get("time").and_then(Value::as_str)),
        );
    }
    times.into_iter().filter_map(parse_rfc3339).max()
}

/// Deletes events whose last update is older than `ttl`. Returns how many went.
pub(crate) async fn reap_events(state: &AppState, ttl: Duration, now: SystemTime) -> usize {
    let mut n = 0;
    // events.k8s.io/v1 Events are stored as core Events (see `events`): one pass covers both.
    for group in [""] {
        let q = ListQuery {
            group: group.into(),
            resource: "events".into(),
            ..Default::default()
        };
        let Ok(list) = st_list(state, &q) else {
            continue;
        };
        for ev in &list.items {
            let Some(t) = latest_time(ev) else { continue };
            if t + ttl > now {
                continue;
            }
            let meta = |f: &str| {
                ev.pointer(&format!("/metadata/{f}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let rv: u64 = meta("resourceVersion").parse().unwrap_or(0);
            let key = Key::new(group, "events", &meta("namespace"), &meta("name"));
            if st_delete(
                state,
                key,
                Some(Precondition::ResourceVersion(rv)),
                EVENT_TTL_ACTOR,
            )
            .await
            .is_ok()
            {
                n += 1;
            }
        }
    }
    n
}

async fn event_reaper(state: Arc<AppState>, ttl: Duration, interval: Duration) {
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        let n = reap_events(&state, ttl, SystemTime::now()).await;
        if n > 0 {
            tracing::debug!(expired = n, "events expired");
        }
    }
}

/// One pass over the Terminating namespaces. Returns whether any is still terminating.
pub(crate) async fn finalize_namespaces(state: &AppState, now: SystemTime) -> bool {
    let q = ListQuery {
        group: "".into(),
        resource: "namespaces".into(),
        ..Default::default()
    };
    let Ok(list) = st_list(state, &q) else {
        return false;
    };
    let mut pending = false;
    for ns in &list.items {
        if ns
            .pointer("/metadata/deletionTimestamp")
            .is_none_or(Value::is_null)
        {
            continue;
        }
        let name = ns
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut remaining = 0usize;
        for r in RESOURCES
            .iter()
            .filter(|r| r.namespaced && r.has_verb("delete"))
        {
            let lq = ListQuery {
                group: r.group.into(),
                resource: r.name.into(),
                namespace: Some(name.clone()),
                ..Default::default()
            };
            let Ok(items) = st_list(state, &lq) else {
                continue;
            };
            for item in &items.items {
                remaining += 1;
                if item
                    .pointer("/metadata/deletionTimestamp")
                    .is_some_and(|v| !v.is_null())
                {
                    continue; // already going (finalizers, or a kubelet finishing a pod)
                }
                let iname = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let key = Key::new(r.group, r.name, &name, iname);
                let _ = delete_object(state, r, key, &DeleteOpts::default(), NAMESPACE_ACTOR, now)
                    .await;
            }
        }
        if remaining > 0 {
            pending = true;
            continue;
        }
        // Empty: drop the `kubernetes` finalizer and the namespace with it.
        let key = Key::new("", "namespaces", "", &name);
        let Some(cur) = st_get(state, &key) else {
            continue;
        };
        let rv: u64 = cur
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let meta_finalizers = cur
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let spec_finalizers: Vec<Value> = cur
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|f| f.as_str() != Some("kubernetes"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if meta_finalizers || !spec_finalizers.is_empty() {
            // Someone else's finalizer: release ours and wait for theirs.
            if cur
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| a.len() != spec_finalizers.len())
            {
                let mut new = (*cur).clone();
                new["spec"]["finalizers"] = json!(spec_finalizers);
                let _ = st_update(
                    state,
                    key,
                    new,
                    Some(Precondition::ResourceVersion(rv)),
                    NAMESPACE_ACTOR,
                )
                .await;
            }
            pending = true;
            continue;
        }
        match st_delete(
            state,
            key,
            Some(Precondition::ResourceVersion(rv)),
            NAMESPACE_ACTOR,
        )
        .await
        {
            Ok(_) => tracing::info!(namespace = %name, "namespace deleted"),
            Err(_) => pending = true,
        }
    }
    pending
}

async fn namespace_finalizer(state: Arc<AppState>) {
    let mut shutdown = state.shutdown.clone();
    loop {
        // The first pass also picks up namespaces that were Terminating before a restart.
        let pending = finalize_namespaces(&state, SystemTime::now()).await;
        // While a namespace waits on pods or finalizers there is nothing to be notified of,
        // so poll at a human pace; otherwise sleep until a namespace is deleted.
        let wait = if pending {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = state.namespace_kick.notified() => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
    }
}
