//! Watch over HTTP: a chunked stream of newline-delimited `{"type":..,"object":..}` events.
//!
//! - `resourceVersion` absent or `"0"`: synthetic `ADDED` for every matching object of a list
//!   snapshot first, then every change after that snapshot's revision (so nothing is missed or
//!   doubled); an exact `resourceVersion`: every change after it, or one `ERROR` event with the
//!   410 `Expired` Status when it has left the watch window.
//! - `allowWatchBookmarks`: the store's periodic bookmarks become `BOOKMARK` events whose object
//!   has only `kind`, `apiVersion` and `metadata.resourceVersion`.
//! - `sendInitialEvents=true`: the initial ADDEDs end with a bookmark annotated
//!   `k8s.io/initial-events-end: "true"` (the WatchList protocol).
//! - The stream ends after `timeoutSeconds`, on server shutdown, or when the store cuts the
//!   watcher off (`Closed`): clients resume from the last revision they saw.
//! - Accept `as=Table`: each event's object is a one-row Table.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use super::rest::{list_query, partial_metadata, repr_of, table_for, with_type, Ctx, Repr};
use super::AppState;
use crate::status::ApiError;
use crate::store::{ListQuery, StoreError, WatchItem, WatchQuery, Watcher};

/// Events of the initial snapshot are sent in chunks of about this size.
const CHUNK_BYTES: usize = 64 * 1024;

/// Everything the stream needs after the request handler returned.
struct WatchStream {
    ctx_group: &'static str,
    ctx_resource: &'static str,
    version: &'static str,
    kind: &'static str,
    api_version: String,
    repr: Repr,
    /// events.k8s.io/v1: stored core Events are converted for the client.
    events_v1: bool,
    include_object: String,
    bookmarks: bool,
    /// Initial events still to send (already encoded), then the initial-events-end bookmark.
    initial: Vec<Bytes>,
    watcher: Option<Watcher>,
    /// A terminal ERROR event to send instead of watching.
    error: Option<ApiError>,
    deadline: Option<tokio::time::Instant>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    _guard: WatchGuardOwned,
}

/// Keeps `apiserver_registered_watchers` right for the stream's lifetime.
struct WatchGuardOwned {
    state: Arc<AppState>,
    key: (&'static str, &'static str, &'static str),
}

impl WatchGuardOwned {
    fn new(
        state: Arc<AppState>,
        group: &'static str,
        version: &'static str,
        kind: &'static str,
    ) -> Self {
        state.metrics.watch_inc(group, version, kind);
        WatchGuardOwned {
            state,
            key: (group, version, kind),
        }
    }
}

impl Drop for WatchGuardOwned {
    fn drop(&mut self) {
        self.state
            .metrics
            .watch_dec(self.key.0, self.key.1, self.key.2);
    }
}

/// Plain-object watch events, encoded once and shared: every watcher that delivers the same
/// (revision, type) sends the same bytes, so a write seen by 1,000 watchers is serialized
/// once instead of 1,000 times. A window of recent revisions is enough, because watchers
/// deliver an event within moments of one another; a late one simply encodes it again.
/// (The type is part of the key: a watcher whose selector the object starts or stops
/// matching gets ADDED or DELETED for the same revision.)
#[derive(Default)]
pub(crate) struct EncodedEvents {
    inner: std::sync::Mutex<EncodedInner>,
}

#[derive(Default)]
struct EncodedInner {
    map: std::collections::HashMap<(u64, &'static str), Bytes>,
    order: std::collections::VecDeque<(u64, &'static str)>,
}

/// How many recent encoded events are kept.
const ENCODED_EVENTS: usize = 4096;

impl EncodedEvents {
    fn get_or_encode(
        &self,
        revision: u64,
        ty: &'static str,
        encode: impl FnOnce() -> Bytes,
    ) -> Bytes {
        let lock = || self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = lock().map.get(&(revision, ty)) {
            return b.clone();
        }
        // Encode outside the lock; two watchers racing here both encode, one insert wins.
        let bytes = encode();
        let mut g = lock();
        if g.map.insert((revision, ty), bytes.clone()).is_none() {
            g.order.push_back((revision, ty));
            if g.order.len() > ENCODED_EVENTS {
                if let Some(old) = g.order.pop_front() {
                    g.map.remove(&old);
                }
            }
        }
        bytes
    }
}

fn encode_event(ty: &str, object: &Value) -> Vec<u8> {
    let mut buf = String::with_capacity(1024);
    buf.push_str("{\"type\":\"");
    buf.push_str(ty);
    buf.push_str("\",\"object\":");
    // serde_json's bytes, by the store's faster serializer (see `util::to_json`).
    crate::store::core::push_json(&mut buf, object);
    buf.push_str("}\n");
    buf.into_bytes()
}

impl WatchStream {
    /// The event's object in the representation asked for. Plain objects are shared, not
    /// copied: the same `Arc` the store fans out to every watcher.
    fn render(&self, obj: &Arc<Value>) -> Arc<Value> {
        let converted;
        let obj = if self.events_v1 {
            converted = Arc::new(super::events::to_events_v1(obj));
            &converted
        } else {
            obj
        };
        Arc::new(match self.repr {
            Repr::Table => {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                super::table::to_table(
                    self.ctx_group,
                    self.ctx_resource,
                    std::slice::from_ref(obj),
                    &rv,
                    None,
                    &self.include_object,
                    true,
                    SystemTime::now(),
                )
                .unwrap_or(Value::Null)
            }
            Repr::PartialMetadata => partial_metadata(obj),
            Repr::Object => {
                let r = super::resources::find(self.ctx_group, self.version, self.ctx_resource)
                    .expect("served resource");
                return with_type(r, obj);
            }
        })
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Vec<u8> {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.kind, "apiVersion": self.api_version, "metadata": meta});
        encode_event("BOOKMARK", &obj)
    }

    /// The next chunk, or `None` when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.initial.is_empty() {
            return Some(self.initial.remove(0));
        }
        if let Some(e) = self.error.take() {
            return Some(Bytes::from(encode_event("ERROR", &e.to_status())));
        }
        let watcher = self.watcher.as_mut()?;
        loop {
            let deadline = self.deadline;
            let item = tokio::select! {
                item = st_next(watcher) => item,
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending::<()>().await,
                    }
                } => return None,
                _ = self.shutdown.wait_for(|v| *v) => return None,
            };
            match item {
                None | Some(WatchItem::Closed(_)) => return None,
                Some(WatchItem::Bookmark(rv)) => {
                    if self.bookmarks {
                        return Some(Bytes::from(self.bookmark(rv, false)));
                    }
                }
                Some(WatchItem::Event(ev)) => {
                    let ty = ev.event_type.as_str();
                    if self.repr == Repr::Object && !self.events_v1 {
                        let bytes =
                            self._guard
                                .state
                                .encoded_events
                                .get_or_encode(ev.revision, ty, || {
                                    Bytes::from(encode_event(ty, &self.render(&ev.object)))
                                });
                        return Some(bytes);
                    }
                    let obj = self.render(&ev.object);
                    return Some(Bytes::from(encode_event(ty, &obj)));
                }
            }
        }
    }
}

// Store adapter for watches (see rest.rs for the rest of the store calls).
fn st_watch(state: &AppState, q: WatchQuery) -> Result<Watcher, StoreError> {
    state.store.watch(&q)
}

async fn st_next(w: &mut Watcher) -> Option<WatchItem> {
    w.next().await
}

/// Starts a watch for the request (`name`: a watch on an object path).
pub(crate) async fn serve(ctx: &Ctx, name: Option<String>) -> Result<Response, ApiError> {
    let r = ctx.t.resource;
    let lq: ListQuery = list_query(ctx, name.as_deref())?;
    let rv_param = ctx.q.get("resourceVersion").unwrap_or("");
    let send_initial = match ctx.q.get("sendInitialEvents") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let bookmarks = ctx.q.flag("allowWatchBookmarks");
    if send_initial.is_some() {
        if !bookmarks {
            return Err(ApiError::new(422, "Invalid", "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Forbidden: allowWatchBookmarks must be set to true when sendInitialEvents is specified"));
        }
        if ctx.q.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::new(422, "Invalid", "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"));
        }
    }
    let timeout = match ctx.q.int("timeoutSeconds")? {
        Some(n) if n > 0 => Some(Duration::from_secs(n as u64)),
        _ => None,
    };
    let repr = repr_of(&ctx.headers);
    if repr == Repr::Table {
        // Reject a bad includeObject up front, as for lists.
        table_for(ctx, &[], "", None)?;
    }
    let include_object = ctx.q.get("includeObject").unwrap_or("").to_string();

    let mut stream = WatchStream {
        ctx_group: r.group,
        ctx_resource: r.name,
        version: r.version,
        kind: r.kind,
        api_version: r.api_version(),
        repr,
        events_v1: super::events::is_events_k8s_io(r.group, r.name),
        include_object,
        bookmarks,
        initial: Vec::new(),
        watcher: None,
        error: None,
        deadline: timeout.map(|t| tokio::time::Instant::now() + t),
        shutdown: ctx.state.shutdown.clone(),
        _guard: WatchGuardOwned::new(ctx.state.clone(), r.group, r.version, r.kind),
    };

    let initial_events = match (rv_param, send_initial) {
        (_, Some(v)) => v,
        ("" | "0", None) => true,
        _ => false,
    };
    let wq = |from: Option<u64>| WatchQuery {
        group: lq.group.clone(),
        resource: lq.resource.clone(),
        namespace: lq.namespace.clone(),
        label_selector: lq.label_selector.clone(),
        field_selector: lq.field_selector.clone(),
        from,
    };
    if initial_events {
        let mut full = lq.clone();
        full.limit = None;
        full.continue_token = None;
        let snap = super::rest::st_list(&ctx.state, &full)?;
        let mut chunk = Vec::new();
        for item in &snap.items {
            let obj = stream.render(item);
            chunk.extend_from_slice(&encode_event("ADDED", &obj));
            if chunk.len() >= CHUNK_BYTES {
                stream.initial.push(Bytes::from(std::mem::take(&mut chunk)));
            }
        }
        if send_initial == Some(true) {
            chunk.extend_from_slice(&stream.bookmark(snap.resource_version, true));
        }
        if !chunk.is_empty() {
            stream.initial.push(Bytes::from(chunk));
        }
        match st_watch(&ctx.state, wq(Some(snap.resource_version))) {
            Ok(w) => stream.watcher = Some(w),
            // The snapshot's revision left a tiny window already: the client relists.
            Err(e @ StoreError::Expired { .. }) => stream.error = Some(e.into()),
            Err(e) => return Err(e.into()),
        }
    } else {
        let from: u64 = rv_param.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid resource version: {rv_param:?}"))
        })?;
        match st_watch(&ctx.state, wq(Some(from))) {
            Ok(w) => stream.watcher = Some(w),
            Err(e @ StoreError::Expired { .. }) => stream.error = Some(e.into()),
            Err(e) => return Err(e.into()),
        }
    }

    let body = Body::from_stream(futures_util::stream::unfold(stream, |mut s| async move {
        s.next_chunk()
            .await
            .map(|chunk| (Ok::<Bytes, std::convert::Infallible>(chunk), s))
    }));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .header(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        )
        .body(body)
        .expect("static response parts"))
}
