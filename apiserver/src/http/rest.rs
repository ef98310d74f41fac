//! The REST verbs on resources: create (generateName), get, list, update, patch, delete,
//! deletecollection, pods/binding, pods/log, pods/exec — with kube-apiserver's registry rules
//! (pod graceful deletion, finalizers and deletionTimestamp, namespace lifecycle) and its
//! Status errors. Object rules (validation, defaulting, patch semantics, managedFields) are
//! `semantics`'; persistence and revisions are the store's.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::resources::Resource;
use super::route::Target;
use super::util::{
    add_warnings, content_type, decode_object, error_response, json_response, rfc3339, too_large,
    ua_product, Query, MAX_BODY_BYTES,
};
use super::{events, proxy, table, watch, AppState};
use crate::semantics::{self, Field, FieldMut, FieldValidation, PatchType, WriteOptions};
use crate::status::ApiError;
use crate::store::{
    parse_field_selector, parse_label_selector, Key, ListQuery, Precondition, StoreError, Written,
};

/// How many times a write that raced another writer is retried when the client did not pin a
/// resourceVersion. kube-apiserver's GuaranteedUpdate loops until it wins; every lost round
/// means another writer committed, so the loop always progresses, and with N writers racing
/// on one object the last one may lose N-1 times. The bound is only a guard against a bug.
const MAX_RETRIES: usize = 10_000;

/// Namespaces that may never be deleted (NamespaceLifecycle's immortal namespaces).
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

fn method_not_allowed() -> ApiError {
    ApiError::new(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
    )
}

/// Everything a handler needs about one request.
pub(crate) struct Ctx {
    pub state: Arc<AppState>,
    pub t: Target,
    pub q: Query,
    pub headers: HeaderMap,
    /// The write's actor: `fieldManager`, else the User-Agent product.
    pub actor: String,
    pub now: SystemTime,
}

impl Ctx {
    fn r(&self) -> &'static Resource {
        self.t.resource
    }

    /// Whether this is `events.k8s.io/v1` Events, stored as core Events (see `events`).
    fn events_v1(&self) -> bool {
        events::is_events_k8s_io(self.r().group, self.r().name)
    }

    /// The group the store keys this resource under.
    fn store_group(&self) -> &'static str {
        if self.events_v1() {
            ""
        } else {
            self.r().group
        }
    }

    /// A stored object as this API version shows it.
    fn to_api(&self, obj: Arc<Value>) -> Arc<Value> {
        if self.events_v1() {
            Arc::new(events::to_events_v1(&obj))
        } else {
            obj
        }
    }

    /// An object of this API version in its stored shape.
    fn to_store(&self, obj: Value) -> Value {
        if self.events_v1() {
            events::to_core(&obj)
        } else {
            obj
        }
    }

    fn key(&self, name: &str) -> Key {
        Key::new(
            self.store_group(),
            self.r().name,
            self.t.namespace.as_deref().unwrap_or(""),
            name,
        )
    }

    fn now_str(&self) -> String {
        rfc3339(self.now)
    }

    fn write_options(&self) -> Result<WriteOptions, ApiError> {
        Ok(WriteOptions {
            field_validation: FieldValidation::from_query(self.q.get("fieldValidation"))?,
            field_manager: self
                .q
                .get("fieldManager")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            dry_run: self.q.dry_run()?,
            force: self.q.flag("force"),
            user_agent: self
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            now: self.now_str(),
            default_tolerations: self.state.default_tolerations,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Store adapter: the only place that calls the store, so its API is used in one spot.

pub(crate) fn st_get(state: &AppState, key: &Key) -> Option<Arc<Value>> {
    state.store.get(key)
}

pub(crate) fn st_get_json(state: &AppState, key: &Key) -> Option<Arc<str>> {
    state.store.get_json(key)
}

/// NamespaceLifecycle's view of the namespaces, as kube-apiserver's admission reads them from
/// an informer cache rather than from storage: a create in a namespace reads the namespace's
/// text here instead of from the store, whose core lock every write and commit takes (when one
/// writer thread held it to prepare whole groups, a create at 256 clients waited for it ~30 µs
/// on average, and a worker thread blocked on it runs nothing else). Like upstream, a
/// namespace not in the cache is looked up live (a namespace created a moment ago), and every
/// namespace write of this server drops its entry once the store has it (upstream forces live
/// lookups after a namespace deletion), so a create after a deletion's answer sees the
/// deletion. Entries also expire after
/// [`NamespaceCache::TTL`]: a bound on how stale they can be if something writes namespaces to
/// the store without this server (nothing does).
#[derive(Default)]
pub(crate) struct NamespaceCache {
    entries: std::sync::RwLock<std::collections::HashMap<String, (Arc<str>, Instant)>>,
    /// Bumped by every invalidation: a live lookup that raced one is not cached.
    generation: std::sync::atomic::AtomicU64,
}

impl NamespaceCache {
    const TTL: Duration = Duration::from_millis(100);

    /// The namespace's stored JSON text, `None` if it does not exist.
    fn get(&self, state: &AppState, ns: &str) -> Option<Arc<str>> {
        use std::sync::atomic::Ordering;
        if let Some((text, at)) = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(ns)
        {
            if at.elapsed() < Self::TTL {
                return Some(text.clone());
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let text = st_get_json(state, &Key::new("", "namespaces", "", ns))?;
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            entries.insert(ns.to_string(), (text.clone(), Instant::now()));
        }
        Some(text)
    }

    /// After a write of namespace `ns` (whether it succeeded or not).
    fn invalidate(&self, ns: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        entries.remove(ns);
    }

    /// Drops the entry of `key` if it is a namespace.
    fn written(&self, key: &Key) {
        if key.group.is_empty() && key.resource == "namespaces" {
            self.invalidate(&key.name);
        }
    }
}

/// Stored JSON text as a response body without copying it.
struct ArcStr(Arc<str>);

impl AsRef<[u8]> for ArcStr {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

pub(crate) async fn st_create(
    state: &AppState,
    key: Key,
    obj: Value,
    actor: &str,
) -> Result<Written, StoreError> {
    let result = state.store.create_written(&key, obj, actor).await;
    state.namespaces.written(&key);
    result
}

pub(crate) async fn st_update(
    state: &AppState,
    key: Key,
    obj: Value,
    pre: Option<Precondition>,
    actor: &str,
) -> Result<Written, StoreError> {
    let result = state.store.update_written(&key, obj, pre, actor).await;
    state.namespaces.written(&key);
    result
}

pub(crate) async fn st_delete(
    state: &AppState,
    key: Key,
    pre: Option<Precondition>,
    actor: &str,
) -> Result<Arc<Value>, StoreError> {
    let result = state.store.delete(&key, pre, actor).await;
    state.namespaces.written(&key);
    result
}

pub(crate) fn st_list(
    state: &AppState,
    q: &ListQuery,
) -> Result<crate::store::ListResult, StoreError> {
    state.store.list(q)
}

// ---------------------------------------------------------------------------------------------

fn meta_str<'a>(v: &'a Value, field: &str) -> &'a str {
    v.field("metadata")
        .and_then(|m| m.field(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn rv_of(v: &Value) -> Option<u64> {
    meta_str(v, "resourceVersion").parse().ok()
}

fn meta_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.field("metadata").is_some_and(Value::is_object) {
        v["metadata"] = json!({});
    }
    v.field_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("metadata is an object")
}

fn finalizers_of(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The `pkg` name kube-apiserver's internal types live in, for conversion error texts.
fn internal_pkg(group: &str) -> &str {
    if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    }
}

/// Fills in or checks `apiVersion`/`kind` of a body against what the path serves, with
/// kube-apiserver's 400 texts for a mismatch.
fn check_kind(group: &str, version: &str, kind: &str, obj: &mut Value) -> Result<(), ApiError> {
    let expected_av: std::borrow::Cow<str> = if group.is_empty() {
        version.into()
    } else {
        format!("{group}/{version}").into()
    };
    let body_kind = obj.field("kind").and_then(Value::as_str).unwrap_or("");
    let body_av = obj
        .field("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !body_kind.is_empty() && body_kind != kind {
        let ver = match body_av.rsplit('/').next().unwrap_or("") {
            "" => version,
            v => v,
        };
        return Err(ApiError::bad_request(format!(
            "{body_kind} in version \"{ver}\" cannot be handled as a {kind}: converting ({ver}.{body_kind}) to ({}.{kind}): unknown conversion",
            internal_pkg(group)
        )));
    }
    if !body_av.is_empty() && body_av != expected_av {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({body_av}) does not match the expected API version ({expected_av})"
        )));
    }
    let o = obj.as_object_mut().expect("decode_object returns objects");
    // Keep apiVersion and kind first, as Kubernetes serializes them (most bodies have them
    // there already, as kubectl and client libraries send them).
    let mut head = o.iter();
    if head
        .next()
        .is_some_and(|(k, v)| k == "apiVersion" && v == &*expected_av)
        && head.next().is_some_and(|(k, v)| k == "kind" && v == kind)
    {
        return Ok(());
    }
    let rest = std::mem::take(o);
    o.insert("apiVersion".into(), json!(expected_av));
    o.insert("kind".into(), json!(kind));
    for (k, v) in rest {
        if k != "apiVersion" && k != "kind" {
            o.insert(k, v);
        }
    }
    Ok(())
}

/// Reads the body with kube-apiserver's 3 MiB limit.
async fn read_body(body: Body, headers: &HeaderMap) -> Result<bytes::Bytes, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > MAX_BODY_BYTES {
            // Take in what the client is sending (within a bound) before answering: a client
            // that writes its whole body before it reads the reply (hyper's does) then gets
            // the 413 rather than a broken pipe. Beyond the bound the connection closes unread.
            if len <= 4 * MAX_BODY_BYTES {
                let _ = axum::body::to_bytes(body, 4 * MAX_BODY_BYTES).await;
            }
            return Err(too_large());
        }
    }
    // The body's frames as they come: a small body is one frame, kept as it is (no copy).
    use axum::body::HttpBody as _;
    let mut body = std::pin::pin!(body);
    let mut first: Option<bytes::Bytes> = None;
    let mut more: Vec<u8> = Vec::new();
    let mut len = 0;
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame
            .map_err(|e| ApiError::bad_request(format!("error reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len += data.len();
        if len > MAX_BODY_BYTES {
            return Err(too_large());
        }
        match &first {
            None => first = Some(data),
            Some(f) => {
                if more.is_empty() {
                    more.extend_from_slice(f);
                }
                more.extend_from_slice(&data);
            }
        }
    }
    Ok(if more.is_empty() {
        first.unwrap_or_default()
    } else {
        more.into()
    })
}

/// The entry point: routes a resource request by method and shape. Returns the metrics verb.
pub(crate) async fn handle(
    state: Arc<AppState>,
    t: Target,
    q: Query,
    req: Request,
) -> (&'static str, Response) {
    let (mut parts, body) = req.into_parts();
    let actor = q
        .get("fieldManager")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| {
            ua_product(
                parts
                    .headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        });
    let t_is_exec = t.subresource.as_deref() == Some("exec");
    let ctx = Ctx {
        state,
        t,
        q,
        // Only exec hands the request on (to upgrade it); everything else keeps the headers here.
        headers: if t_is_exec {
            parts.headers.clone()
        } else {
            std::mem::take(&mut parts.headers)
        },
        actor,
        now: SystemTime::now(),
    };
    let r = ctx.r();
    let sub = ctx.t.subresource.clone();
    let has_name = ctx.t.name.is_some();
    let method = parts.method.clone();

    // pods/exec: an upgrade (GET for WebSocket, POST for SPDY) spliced to the kubelet.
    if sub.as_deref() == Some("exec") {
        let mut req = Request::from_parts(parts, body);
        let upgrade = hyper::upgrade::on(&mut req);
        let out = match method {
            Method::GET | Method::POST => {
                exec(&ctx, req.headers(), req.method().clone(), upgrade).await
            }
            _ => Err(method_not_allowed()),
        };
        return ("CONNECT", out.unwrap_or_else(|e| error_response(&e)));
    }

    // A namespaced kind's all-namespaces collection is read-only (list and watch), as upstream.
    if r.namespaced
        && ctx.t.namespace.is_none()
        && (method == Method::POST || method == Method::DELETE)
    {
        let verb = if method == Method::POST {
            "POST"
        } else {
            "DELETECOLLECTION"
        };
        return (verb, error_response(&method_not_allowed()));
    }
    let (verb, result) = match (&method, has_name, sub.as_deref()) {
        (&Method::GET | &Method::HEAD, false, None) => {
            if ctx.q.flag("watch") {
                if !r.has_verb("watch") {
                    ("WATCH", Err(method_not_allowed()))
                } else {
                    return (
                        "WATCH",
                        watch::serve(&ctx, None)
                            .await
                            .unwrap_or_else(|e| error_response(&e)),
                    );
                }
            } else if !r.has_verb("list") {
                ("LIST", Err(method_not_allowed()))
            } else {
                ("LIST", list(&ctx))
            }
        }
        (&Method::GET | &Method::HEAD, true, None) => {
            if ctx.q.flag("watch") && r.has_verb("watch") {
                let name = ctx.t.name.clone();
                return (
                    "WATCH",
                    watch::serve(&ctx, name)
                        .await
                        .unwrap_or_else(|e| error_response(&e)),
                );
            }
            if !r.has_verb("get") {
                ("GET", Err(method_not_allowed()))
            } else {
                ("GET", get(&ctx))
            }
        }
        (&Method::GET, true, Some("status")) => ("GET", get(&ctx)),
        (&Method::GET, true, Some("log")) => ("GET", log(&ctx).await),
        (&Method::POST, false, None) => {
            let body = read_body(body, &ctx.headers).await;
            match body {
                Err(e) => ("POST", Err(e)),
                Ok(b) if r.name == "bindings" => ("POST", binding(&ctx, &b, None).await),
                Ok(b) if r.has_verb("create") => ("POST", create(&ctx, &b).await),
                Ok(_) => ("POST", Err(method_not_allowed())),
            }
        }
        (&Method::POST, true, Some("binding")) => match read_body(body, &ctx.headers).await {
            Err(e) => ("POST", Err(e)),
            Ok(b) => ("POST", binding(&ctx, &b, ctx.t.name.clone()).await),
        },
        (&Method::PUT, true, None | Some("status") | Some("finalize")) if r.has_verb("update") => {
            match read_body(body, &ctx.headers).await {
                Err(e) => ("PUT", Err(e)),
                Ok(b) => ("PUT", update(&ctx, &b).await),
            }
        }
        (&Method::PATCH, true, None | Some("status")) if r.has_verb("patch") => {
            match read_body(body, &ctx.headers).await {
                Err(e) => ("PATCH", Err(e)),
                Ok(b) => ("PATCH", patch(&ctx, &b).await),
            }
        }
        (&Method::DELETE, true, None) if r.has_verb("delete") => {
            match read_body(body, &ctx.headers).await {
                Err(e) => ("DELETE", Err(e)),
                Ok(b) => ("DELETE", delete(&ctx, &b).await),
            }
        }
        (&Method::DELETE, false, None) if r.has_verb("deletecollection") => {
            match read_body(body, &ctx.headers).await {
                Err(e) => ("DELETECOLLECTION", Err(e)),
                Ok(b) => ("DELETECOLLECTION", delete_collection(&ctx, &b).await),
            }
        }
        (m, false, _) if m == Method::DELETE => ("DELETECOLLECTION", Err(method_not_allowed())),
        (m, _, _) => (super::verb_of(m, !has_name), Err(method_not_allowed())),
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(code = e.code, reason = %e.reason, message = %e.message, "request rejected");
            error_response(&e)
        }
    };
    (verb, resp)
}

// ---------------------------------------------------------------------------------------------
// Reads

/// Which representation the client's Accept header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repr {
    Object,
    Table,
    PartialMetadata,
}

pub(crate) fn repr_of(headers: &HeaderMap) -> Repr {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // What most clients send, answered without splitting (most requests ask this).
    if matches!(accept, "" | "application/json" | "*/*") {
        return Repr::Object;
    }
    // The first acceptable alternative wins, as in kube-apiserver's content negotiation.
    for alt in accept.split(',') {
        let params: Vec<&str> = alt.split(';').map(str::trim).collect();
        let base = params.first().copied().unwrap_or("");
        if base != "application/json" && base != "*/*" && base != "application/*" {
            continue;
        }
        let as_ = params.iter().find_map(|p| p.strip_prefix("as="));
        let g = params.iter().find_map(|p| p.strip_prefix("g="));
        match (as_, g) {
            (None, _) => return Repr::Object,
            (Some("Table"), Some("meta.k8s.io")) => return Repr::Table,
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                return Repr::PartialMetadata
            }
            _ => continue,
        }
    }
    Repr::Object
}

fn include_object(q: &Query) -> &str {
    q.get("includeObject").unwrap_or("")
}

/// A table for `objects`, or 400 for an `includeObject` value kube-apiserver rejects.
pub(crate) fn table_for(
    ctx: &Ctx,
    objects: &[Arc<Value>],
    rv: &str,
    cont: Option<&str>,
) -> Result<Value, ApiError> {
    table::to_table(
        ctx.r().group,
        ctx.r().name,
        objects,
        rv,
        cont,
        include_object(&ctx.q),
        true,
        ctx.now,
    )
    .ok_or_else(|| {
        ApiError::bad_request(format!(
            "includeObject: Unsupported value: {:?}: supported values: \"Metadata\", \"None\", \"Object\"",
            include_object(&ctx.q)
        ))
    })
}

pub(crate) fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// The object with `apiVersion`/`kind` guaranteed (stored objects have them; this is a guard).
pub(crate) fn with_type(r: &Resource, obj: &Arc<Value>) -> Arc<Value> {
    if obj.field("kind").is_some() && obj.field("apiVersion").is_some() {
        return obj.clone();
    }
    let mut v = (**obj).clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("apiVersion".into(), json!(r.api_version()));
        o.insert("kind".into(), json!(r.kind));
    }
    Arc::new(v)
}

fn object_response(ctx: &Ctx, code: StatusCode, obj: &Arc<Value>) -> Result<Response, ApiError> {
    match repr_of(&ctx.headers) {
        Repr::Table => {
            let rv = meta_str(obj, "resourceVersion").to_string();
            let t = table_for(ctx, std::slice::from_ref(obj), &rv, None)?;
            Ok(json_response(code, &t))
        }
        Repr::PartialMetadata => Ok(json_response(code, &partial_metadata(obj))),
        Repr::Object => Ok(json_response(code, &with_type(ctx.r(), obj))),
    }
}

/// A write's result: the stored object and, when the client wants the plain object, the
/// exact JSON text the store committed for it ([`Written::json`], handed back with the write's
/// answer), which the response sends as it is instead of serializing the object again (the
/// same bytes: the store wrote the text with the serializer responses use, and GET sends it too).
pub(crate) struct Stored {
    obj: Arc<Value>,
    text: Option<Arc<str>>,
}

impl Stored {
    /// A result the store did not commit as it is (dry run, a no-op, a finished deletion).
    fn object(obj: Arc<Value>) -> Stored {
        Stored { obj, text: None }
    }

    /// A write's result as the store answered it, with its committed text when a response
    /// will send that as it is.
    fn committed(ctx: &Ctx, written: Written) -> Stored {
        let text = written
            .json
            .filter(|t| !ctx.events_v1() && repr_of(&ctx.headers) == Repr::Object && typed_text(t));
        Stored {
            obj: ctx.to_api(written.object),
            text,
        }
    }

    /// The response to the write: the committed text when there is one, else the object as
    /// the request asked for it ([`object_response`]).
    fn response(&self, ctx: &Ctx, code: StatusCode) -> Result<Response, ApiError> {
        match &self.text {
            Some(text) => Ok(super::util::json_text_response(
                code,
                bytes::Bytes::from_owner(ArcStr(text.clone())),
            )),
            None => object_response(ctx, code, &self.obj),
        }
    }
}

/// Whether stored JSON text starts with `apiVersion` and `kind`, as every object the server
/// stored does ([`check_kind`] puts them first): then [`with_type`] would leave it as it is.
fn typed_text(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("{\"apiVersion\":\"") else {
        return false;
    };
    let Some(end) = rest.find('"') else {
        return false;
    };
    !rest[..end].contains('\\') && rest[end..].starts_with("\",\"kind\":\"")
}

fn get(ctx: &Ctx) -> Result<Response, ApiError> {
    let name = ctx.t.name.as_deref().unwrap_or("");
    // The plain object is the stored text itself: the store serialized it, and parsing and
    // serializing it again gives back the same bytes.
    if !ctx.events_v1() && repr_of(&ctx.headers) == Repr::Object {
        if let Some(text) = st_get_json(&ctx.state, &ctx.key(name)) {
            if typed_text(&text) {
                return Ok(super::util::json_text_response(
                    StatusCode::OK,
                    bytes::Bytes::from_owner(ArcStr(text)),
                ));
            }
        }
    }
    let obj = st_get(&ctx.state, &ctx.key(name))
        .map(|o| ctx.to_api(o))
        .ok_or_else(|| ApiError::not_found(ctx.r().group, ctx.r().name, name))?;
    object_response(ctx, StatusCode::OK, &obj)
}

/// Builds a ListQuery from the request's selectors, with kube-apiserver's 400 texts.
pub(crate) fn list_query(ctx: &Ctx, name: Option<&str>) -> Result<ListQuery, ApiError> {
    let r = ctx.r();
    let label_selector = match ctx.q.get("labelSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_label_selector(s).map_err(|e| ApiError::bad_request(e.0))?),
        None => None,
    };
    let mut fs = ctx.q.get("fieldSelector").unwrap_or("").to_string();
    if ctx.events_v1() {
        fs = events::field_selector_to_core(&fs);
    }
    if let Some(n) = name {
        // A watch on a named object path is a watch with metadata.name.
        let term = format!("metadata.name={n}");
        fs = if fs.is_empty() {
            term
        } else {
            format!("{fs},{term}")
        };
    }
    let field_selector = if fs.is_empty() {
        None
    } else {
        let f = parse_field_selector(&fs).map_err(|e| ApiError::bad_request(e.0))?;
        f.validate_for(ctx.store_group(), r.name)
            .map_err(|e| ApiError::bad_request(e.0))?;
        Some(f)
    };
    let limit = match ctx.q.int("limit")? {
        Some(n) if n > 0 => Some(n as usize),
        _ => None,
    };
    Ok(ListQuery {
        group: ctx.store_group().to_string(),
        resource: r.name.to_string(),
        namespace: ctx.t.namespace.clone(),
        label_selector,
        field_selector,
        limit,
        continue_token: ctx
            .q
            .get("continue")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    })
}

/// A list with kube-apiserver's resourceVersion semantics: unset or `0` or "not older than N"
/// is the current state (our store is one consistent copy, so "at least N" is "now"; an N
/// the store never reached is a 504 "Too large resource version"); `resourceVersionMatch=Exact`
/// rebuilds the state at N from the log (410 Expired once N left retention).
fn list_at(ctx: &Ctx, lq: &ListQuery) -> Result<crate::store::ListResult, ApiError> {
    let rv_param = ctx.q.get("resourceVersion").unwrap_or("");
    let exact = ctx.q.get("resourceVersionMatch") == Some("Exact");
    if rv_param.is_empty() {
        if exact {
            return Err(ApiError::new(
                422,
                "Invalid",
                "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        return Ok(st_list(&ctx.state, lq)?);
    }
    let n: u64 = rv_param
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param:?}")))?;
    let current = ctx.state.store.revision();
    if n > current {
        return Err(ApiError::new(
            504,
            "Timeout",
            format!("Too large resource version: {n}, current resource version: {current}"),
        ));
    }
    if !exact || n == current || n == 0 {
        return Ok(st_list(&ctx.state, lq)?);
    }
    let state = ctx.state.store.state_at(n)?;
    if let Some(t) = state.truncated_before.filter(|t| n < *t) {
        return Err(ApiError::expired(format!(
            "too old resource version: {n} ({t})"
        )));
    }
    let filter = crate::store::core::Filter::from_list(lq);
    let items = state
        .objects
        .iter()
        .filter(|(k, v)| filter.covers(k) && filter.selects(v))
        .map(|(_, v)| v.clone())
        .collect();
    Ok(crate::store::ListResult {
        items,
        resource_version: n,
        continue_token: None,
        remaining_item_count: None,
    })
}

fn list(ctx: &Ctx) -> Result<Response, ApiError> {
    let r = ctx.r();
    if let Some(m) = ctx.q.get("resourceVersionMatch").filter(|s| !s.is_empty()) {
        if m != "NotOlderThan" && m != "Exact" {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\""
            )));
        }
    }
    let lq = list_query(ctx, None)?;
    let mut res = list_at(ctx, &lq)?;
    if ctx.events_v1() {
        res.items = res.items.into_iter().map(|o| ctx.to_api(o)).collect();
    }
    let rv = res.resource_version.to_string();
    match repr_of(&ctx.headers) {
        Repr::Table => {
            let t = table_for(ctx, &res.items, &rv, res.continue_token.as_deref())?;
            Ok(json_response(StatusCode::OK, &t))
        }
        repr => {
            // Serialize straight into one buffer: lists of 10k objects stay cheap.
            let mut meta = json!({"resourceVersion": rv});
            if let Some(c) = &res.continue_token {
                meta["continue"] = json!(c);
            }
            if let Some(n) = res.remaining_item_count {
                meta["remainingItemCount"] = json!(n);
            }
            let (kind, api_version) = if repr == Repr::PartialMetadata {
                (
                    "PartialObjectMetadataList".to_string(),
                    "meta.k8s.io/v1".to_string(),
                )
            } else {
                (format!("{}List", r.kind), r.api_version())
            };
            // serde_json's bytes, by the store's faster serializer (see `util::to_json`).
            use crate::store::core::push_json;
            let mut buf = String::with_capacity(256 + res.items.len() * 1024);
            buf.push_str("{\"kind\":");
            push_json(&mut buf, &Value::String(kind));
            buf.push_str(",\"apiVersion\":");
            push_json(&mut buf, &Value::String(api_version));
            buf.push_str(",\"metadata\":");
            push_json(&mut buf, &meta);
            buf.push_str(",\"items\":[");
            for (i, item) in res.items.iter().enumerate() {
                if i > 0 {
                    buf.push(',');
                }
                if repr == Repr::PartialMetadata {
                    push_json(&mut buf, &partial_metadata(item));
                } else {
                    push_json(&mut buf, item);
                }
            }
            buf.push_str("]}");
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )
                .body(Body::from(buf))
                .expect("static response parts"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Create

/// `generateName` suffixes: kube-apiserver's 5 characters from a vowel-free alphabet.
fn generate_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// The namespace must exist and not be terminating (NamespaceLifecycle admission).
fn check_namespace_for_create(ctx: &Ctx, name: &str) -> Result<(), ApiError> {
    let r = ctx.r();
    let Some(ns) = ctx.t.namespace.as_deref() else {
        return Ok(());
    };
    let text = ctx
        .state
        .namespaces
        .get(&ctx.state, ns)
        .ok_or_else(|| ApiError::not_found("", "namespaces", ns))?;
    // Neither a deletionTimestamp nor the Terminating phase can be in the object without
    // their (never escaped) names in its text: the usual namespace needs no parse.
    let terminating = (text.contains("deletionTimestamp") || text.contains("Terminating"))
        && serde_json::from_str::<Value>(&text).is_ok_and(|nsobj| {
            nsobj
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
                || nsobj.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
        });
    if terminating && r.name != "events" {
        let q = if r.group.is_empty() {
            r.name.to_string()
        } else {
            format!("{}.{}", r.name, r.group)
        };
        let mut e = ApiError::new(
            403,
            "Forbidden",
            format!("{q} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"),
        )
        .with_details(r.group, r.name, name);
        e.causes = vec![crate::status::Cause {
            reason: "NamespaceTerminating".into(),
            message: format!("namespace {ns} is being terminated"),
            field: "metadata.namespace".into(),
        }];
        return Err(e);
    }
    Ok(())
}

/// Metadata checks shared by create and update: the namespace in the body must match the
/// path's (filled in when absent); cluster-scoped objects carry none.
fn fix_namespace(ctx: &Ctx, obj: &mut Value) -> Result<(), ApiError> {
    let r = ctx.r();
    let body_ns = meta_str(obj, "namespace").to_string();
    let meta = meta_mut(obj);
    if r.namespaced {
        let ns = ctx.t.namespace.as_deref().unwrap_or("");
        if ns.is_empty() {
            return Err(ApiError::bad_request(
                "the server could not find the requested resource",
            ));
        }
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta.insert("namespace".into(), json!(ns));
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

/// Kind-specific defaults kube-apiserver's registries add on create that the HTTP layer owns
/// because they are lifecycle, not schema: namespaces start Active with the `kubernetes`
/// finalizer and the `kubernetes.io/metadata.name` label.
fn registry_prepare_create(r: &Resource, obj: &mut Value) {
    if r.group.is_empty() && r.name == "namespaces" {
        let name = meta_str(obj, "name").to_string();
        let meta = meta_mut(obj);
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("kubernetes.io/metadata.name".into(), json!(name));
        }
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = json!({});
        }
        if obj.pointer("/spec/finalizers").is_none() {
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
        }
        obj["status"] = json!({"phase": "Active"});
    }
}

/// The DefaultStorageClass admission plugin: a new claim that names no class gets the
/// cluster's default StorageClass (annotated `storageclass.kubernetes.io/is-default-class`),
/// as kube-apiserver admits it; the choice itself is `semantics::admit_default_storage_class`.
fn admit_default_storage_class(ctx: &Ctx, r: &Resource, obj: &mut Value) {
    if !(r.group.is_empty() && r.name == "persistentvolumeclaims") {
        return;
    }
    let q = ListQuery {
        group: "storage.k8s.io".into(),
        resource: "storageclasses".into(),
        ..Default::default()
    };
    if let Ok(list) = st_list(&ctx.state, &q) {
        let classes: Vec<Value> = list.items.iter().map(|c| (**c).clone()).collect();
        semantics::admit_default_storage_class(obj, &classes);
    }
}

/// Creates `obj` (already kind-checked) under the request's namespace; shared by POST and
/// server-side apply on an absent object. Returns the stored object and warnings.
async fn create_object(
    ctx: &Ctx,
    mut obj: Value,
    opts: &WriteOptions,
) -> Result<(Stored, Vec<String>), ApiError> {
    let r = ctx.r();
    fix_namespace(ctx, &mut obj)?;
    // System fields are the server's.
    semantics::remove_fields(
        meta_mut(&mut obj),
        &[
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ],
    );
    let name = meta_str(&obj, "name").to_string();
    let generate = meta_str(&obj, "generateName").to_string();
    if name.is_empty() && generate.is_empty() {
        return Err(ApiError::invalid(
            r.group,
            r.kind,
            "",
            vec![crate::status::Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value: name or generateName is required".into(),
                field: "metadata.name".into(),
            }],
        ));
    }
    check_namespace_for_create(ctx, if name.is_empty() { &generate } else { &name })?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        // Only a generated name can be drawn again; a named create runs once and may move it.
        let mut candidate = if name.is_empty() {
            obj.clone()
        } else {
            std::mem::take(&mut obj)
        };
        let this_name = if name.is_empty() {
            let n = format!("{generate}{}", generate_suffix());
            meta_mut(&mut candidate).insert("name".into(), json!(n));
            n
        } else {
            name.clone()
        };
        let warnings = semantics::prepare_create(r.group, r.name, &mut candidate, opts)?;
        registry_prepare_create(r, &mut candidate);
        admit_default_storage_class(ctx, r, &mut candidate);
        if opts.dry_run {
            let meta = meta_mut(&mut candidate);
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(ctx.now_str()));
            if st_get(&ctx.state, &ctx.key(&this_name)).is_some() {
                return Err(ApiError::already_exists(r.group, r.name, &this_name));
            }
            return Ok((Stored::object(Arc::new(candidate)), warnings));
        }
        let candidate = ctx.to_store(candidate);
        let key = ctx.key(&this_name);
        match st_create(&ctx.state, key.clone(), candidate, &ctx.actor).await {
            Ok(stored) => {
                let stored = Stored::committed(ctx, stored);
                return Ok((stored, warnings));
            }
            // A generated name that happens to be taken: draw again, as kube-apiserver does.
            Err(StoreError::AlreadyExists { .. }) if name.is_empty() && attempts < 8 => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn create(ctx: &Ctx, body: &[u8]) -> Result<Response, ApiError> {
    let r = ctx.r();
    let mut obj = decode_object(&content_type(&ctx.headers), body, r.kind)?;
    check_kind(r.group, r.version, r.kind, &mut obj)?;
    let opts = ctx.write_options()?;
    let (stored, warnings) = create_object(ctx, obj, &opts).await?;
    if r.group.is_empty() && r.name == "namespaces" {
        ctx.state.namespace_kick.notify_one();
    }
    let mut resp = stored.response(ctx, StatusCode::CREATED)?;
    add_warnings(&mut resp, &warnings);
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Update and patch

/// Outcome of a guarded write attempt.
enum Attempt {
    Done(Stored, Vec<String>),
    /// Another writer got in between; retry when the client did not pin a resourceVersion.
    Raced,
}

/// Writes `new` over `old` (both full objects): keeps the system fields, runs the semantics,
/// skips no-op writes, and completes a deletion when the last finalizer goes.
async fn write_update(
    ctx: &Ctx,
    old: &Arc<Value>,
    mut new: Value,
    opts: &WriteOptions,
) -> Result<Attempt, ApiError> {
    let r = ctx.r();
    let name = ctx.t.name.clone().unwrap_or_default();
    fix_namespace(ctx, &mut new)?;
    let body_name = meta_str(&new, "name").to_string();
    if body_name.is_empty() {
        meta_mut(&mut new).insert("name".into(), json!(name));
    } else if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    // A uid in the body is a precondition (the object must be that incarnation).
    let body_uid = meta_str(&new, "uid");
    if !body_uid.is_empty() && body_uid != meta_str(old, "uid") {
        let q = if r.group.is_empty() {
            r.name.to_string()
        } else {
            format!("{}.{}", r.name, r.group)
        };
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {q} \"{name}\": Precondition failed: UID in precondition: {body_uid}, UID in object meta: {}",
                meta_str(old, "uid")
            ),
        )
        .with_details(r.group, r.name, &name));
    }
    // System fields come from the stored object (kube-apiserver's BeforeUpdate).
    {
        // Borrowed: the old metadata carries every managedFields entry, too big to copy.
        let empty = serde_json::Map::new();
        let old_meta = old
            .get("metadata")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let meta = meta_mut(&mut new);
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old_meta.get(f) {
                Some(v) => {
                    meta.insert(f.into(), v.clone());
                }
                None => {
                    meta.remove(f);
                }
            }
        }
        if let Some(v) = old_meta.get("resourceVersion") {
            meta.insert("resourceVersion".into(), v.clone());
        }
        if r.group.is_empty() && r.name == "namespaces" {
            // The Terminating phase is the lifecycle's, not the client's.
            if old.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating") {
                new["status"]["phase"] = json!("Terminating");
            }
        }
    }
    let sub = ctx.t.subresource.as_deref();
    let warnings = semantics::prepare_update(r.group, r.name, sub, old, &mut new, opts)?;
    let old_rv = rv_of(old).unwrap_or(0);
    // The update that removes the last finalizer of an object being deleted deletes it
    // (kube-apiserver's shouldDeleteDuringUpdate). A Terminating namespace instead goes when
    // its contents are gone (the namespace finalizer in `background`).
    let is_namespace = r.group.is_empty() && r.name == "namespaces";
    let finishing = !is_namespace
        && old
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        && finalizers_of(&new).is_empty()
        && old
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0;
    if opts.dry_run {
        return Ok(Attempt::Done(Stored::object(Arc::new(new)), warnings));
    }
    if finishing {
        return match st_delete(
            &ctx.state,
            ctx.key(&name),
            Some(Precondition::ResourceVersion(old_rv)),
            &ctx.actor,
        )
        .await
        {
            Ok(last) => {
                // Return the object as the client last wrote it (minus the finalizers).
                let _ = last;
                Ok(Attempt::Done(Stored::object(Arc::new(new)), warnings))
            }
            Err(StoreError::Conflict { .. }) => Ok(Attempt::Raced),
            Err(StoreError::NotFound { .. }) => Err(ApiError::not_found(r.group, r.name, &name)),
            Err(e) => Err(e.into()),
        };
    }
    if new == **old {
        return Ok(Attempt::Done(Stored::object(old.clone()), warnings));
    }
    let key = ctx.key(&name);
    match st_update(
        &ctx.state,
        key.clone(),
        ctx.to_store(new),
        Some(Precondition::ResourceVersion(old_rv)),
        &ctx.actor,
    )
    .await
    {
        Ok(stored) => Ok(Attempt::Done(Stored::committed(ctx, stored), warnings)),
        Err(StoreError::Conflict { .. }) => Ok(Attempt::Raced),
        Err(StoreError::NotFound { .. }) => Err(ApiError::not_found(r.group, r.name, &name)),
        Err(e) => Err(e.into()),
    }
}

/// Registries whose PUT creates an absent object (kube-apiserver's `AllowCreateOnUpdate`).
fn allow_create_on_update(r: &Resource) -> bool {
    matches!(
        (r.group, r.name),
        ("", "events") | ("events.k8s.io", "events") | ("coordination.k8s.io", "leases")
    )
}

async fn update(ctx: &Ctx, body: &[u8]) -> Result<Response, ApiError> {
    let r = ctx.r();
    let name = ctx.t.name.clone().unwrap_or_default();
    let sub_kind = match ctx.t.subresource.as_deref() {
        Some(s) => r.subresource(s).map(|s| s.kind).unwrap_or(r.kind),
        None => r.kind,
    };
    let mut obj = decode_object(&content_type(&ctx.headers), body, sub_kind)?;
    check_kind(r.group, r.version, sub_kind, &mut obj)?;
    let opts = ctx.write_options()?;
    let pinned: Option<u64> = match meta_str(&obj, "resourceVersion") {
        "" => None,
        s => Some(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))?,
        ),
    };
    for _ in 0..MAX_RETRIES {
        let Some(old) = st_get(&ctx.state, &ctx.key(&name)).map(|o| ctx.to_api(o)) else {
            // Events and leases are created by PUT when absent (AllowCreateOnUpdate upstream).
            if allow_create_on_update(r) && ctx.t.subresource.is_none() && pinned.is_none() {
                let body_name = meta_str(&obj, "name").to_string();
                if !body_name.is_empty() && body_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({body_name}) does not match the name on the URL ({name})"
                    )));
                }
                meta_mut(&mut obj).insert("name".into(), json!(name));
                match create_object(ctx, obj.clone(), &opts).await {
                    Ok((stored, warnings)) => {
                        let mut resp = stored.response(ctx, StatusCode::CREATED)?;
                        add_warnings(&mut resp, &warnings);
                        return Ok(resp);
                    }
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e),
                }
            }
            return Err(ApiError::not_found(r.group, r.name, &name));
        };
        if let Some(p) = pinned {
            if rv_of(&old) != Some(p) {
                return Err(ApiError::conflict(r.group, r.name, &name));
            }
        }
        // A pinned resourceVersion is never retried, so its one attempt may move the body.
        let attempt = if pinned.is_some() {
            std::mem::take(&mut obj)
        } else {
            obj.clone()
        };
        match write_update(ctx, &old, attempt, &opts).await? {
            Attempt::Done(stored, warnings) => {
                let mut resp = stored.response(ctx, StatusCode::OK)?;
                add_warnings(&mut resp, &warnings);
                return Ok(resp);
            }
            Attempt::Raced if pinned.is_some() => {
                return Err(ApiError::conflict(r.group, r.name, &name))
            }
            Attempt::Raced => continue,
        }
    }
    Err(ApiError::conflict(r.group, r.name, &name))
}

async fn patch(ctx: &Ctx, body: &[u8]) -> Result<Response, ApiError> {
    let r = ctx.r();
    let name = ctx.t.name.clone().unwrap_or_default();
    let ct = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let pt = PatchType::from_content_type(ct).ok_or_else(|| {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json",
        )
    })?;
    let opts = ctx.write_options()?;
    if pt == PatchType::Apply && opts.field_manager.is_none() {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    if pt != PatchType::Apply && opts.force {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    for _ in 0..MAX_RETRIES {
        let current = st_get(&ctx.state, &ctx.key(&name)).map(|o| ctx.to_api(o));
        let Some(old) = current else {
            if pt == PatchType::Apply && ctx.t.subresource.is_none() {
                // Server-side apply creates an absent object.
                let mut obj = semantics::apply_patch(r.group, r.name, None, pt, body, &opts)?;
                if !obj.is_object() {
                    return Err(ApiError::bad_request("the patch must be a JSON object"));
                }
                check_kind(r.group, r.version, r.kind, &mut obj)?;
                let body_name = meta_str(&obj, "name").to_string();
                if body_name.is_empty() {
                    meta_mut(&mut obj).insert("name".into(), json!(name));
                } else if body_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({body_name}) does not match the name on the URL ({name})"
                    )));
                }
                match create_object(ctx, obj, &opts).await {
                    Ok((stored, warnings)) => {
                        let mut resp = stored.response(ctx, StatusCode::CREATED)?;
                        add_warnings(&mut resp, &warnings);
                        return Ok(resp);
                    }
                    // Someone created it meanwhile: apply to theirs.
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e),
                }
            }
            return Err(ApiError::not_found(r.group, r.name, &name));
        };
        let mut new = semantics::apply_patch_sub(
            r.group,
            r.name,
            ctx.t.subresource.as_deref(),
            Some(&old),
            pt,
            body,
            &opts,
        )?;
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the patched object is not a JSON object",
            ));
        }
        let kind = match ctx.t.subresource.as_deref() {
            Some(s) => r.subresource(s).map(|s| s.kind).unwrap_or(r.kind),
            None => r.kind,
        };
        check_kind(r.group, r.version, kind, &mut new)?;
        // A resourceVersion in the patch *body* is a precondition. The patched object always
        // carries the stored object's resourceVersion, so it cannot tell a pinned patch from a
        // plain one; a plain patch that raced another writer is re-applied to the newer object,
        // as kube-apiserver's GuaranteedUpdate does, instead of answering 409.
        let pinned = if patch_names_resource_version(pt, body) {
            match meta_str(&new, "resourceVersion") {
                "" => None,
                s => Some(s.to_string()),
            }
        } else {
            None
        };
        if let Some(p) = &pinned {
            if p != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(r.group, r.name, &name));
            }
        }
        match write_update(ctx, &old, new, &opts).await? {
            Attempt::Done(stored, warnings) => {
                let mut resp = stored.response(ctx, StatusCode::OK)?;
                add_warnings(&mut resp, &warnings);
                return Ok(resp);
            }
            Attempt::Raced if pinned.is_some() => {
                return Err(ApiError::conflict(r.group, r.name, &name))
            }
            Attempt::Raced => continue,
        }
    }
    Err(ApiError::conflict(r.group, r.name, &name))
}

/// Whether a patch body sets `metadata.resourceVersion` (which makes it a precondition).
fn patch_names_resource_version(pt: PatchType, body: &[u8]) -> bool {
    match pt {
        PatchType::Json => serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|ops| {
                ops.iter().any(|op| {
                    op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion")
                        && matches!(
                            op.get("op").and_then(Value::as_str),
                            Some("add" | "replace" | "copy" | "move")
                        )
                })
            }),
        _ => {
            let v: Option<Value> = serde_json::from_slice(body)
                .ok()
                .or_else(|| serde_norway::from_slice(body).ok());
            v.as_ref()
                .and_then(|v| v.pointer("/metadata/resourceVersion"))
                .and_then(Value::as_str)
                .is_some_and(|rv| !rv.is_empty())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Delete

/// `DeleteOptions` as kubectl and controllers send them (body or query).
#[derive(Debug, Default, Clone)]
pub(crate) struct DeleteOpts {
    pub grace_period: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

fn parse_delete_options(ctx: &Ctx, body: &[u8]) -> Result<DeleteOpts, ApiError> {
    let mut o = DeleteOpts {
        grace_period: ctx.q.int("gracePeriodSeconds")?,
        dry_run: ctx.q.dry_run()?,
        ..Default::default()
    };
    let mut policy = ctx.q.get("propagationPolicy").map(str::to_string);
    let trimmed: &[u8] = {
        let s = body;
        let start = s
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(s.len());
        &s[start..]
    };
    if !trimmed.is_empty() {
        let v: Value = match &*content_type(&ctx.headers) {
            "application/yaml" => serde_norway::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?,
            _ => serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
            })?,
        };
        if let Some(k) = v.get("kind").and_then(Value::as_str) {
            if k != "DeleteOptions" {
                return Err(ApiError::bad_request(format!(
                    "{k} in version \"v1\" cannot be handled as a DeleteOptions: converting (v1.{k}) to (v1.DeleteOptions): unknown conversion"
                )));
            }
        }
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace_period = Some(g);
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            policy = Some(p.to_string());
        }
        if let Some(u) = v.pointer("/preconditions/uid").and_then(Value::as_str) {
            o.precondition_uid = Some(u.to_string());
        }
        if let Some(rv) = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            o.precondition_rv = Some(rv.to_string());
        }
        if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
            for x in d {
                match x.as_str() {
                    Some("All") => o.dry_run = true,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid dry run value: {}: supported values: All",
                            other.unwrap_or("")
                        )))
                    }
                }
            }
        }
    }
    if let Some(p) = policy.filter(|p| !p.is_empty()) {
        // Background, Foreground and Orphan are all accepted. bonsai has no ownerReference
        // garbage collector, so there are never dependents to wait for or orphan: all three
        // delete the object itself the same way (Foreground would otherwise hang forever on a
        // `foregroundDeletion` finalizer nobody removes).
        if !matches!(p.as_str(), "Background" | "Foreground" | "Orphan") {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!("DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""),
            ));
        }
    }
    if let Some(g) = o.grace_period {
        if g < 0 {
            o.grace_period = Some(1);
        }
    }
    Ok(o)
}

/// What a delete did.
pub(crate) enum Deleted {
    /// The object is gone; its last state.
    Gone(Arc<Value>),
    /// Marked with deletionTimestamp (finalizers or a graceful pod); the current state.
    Pending(Arc<Value>),
}

/// The grace period a delete gets: pods are graceful (kube-apiserver's pod strategy), all
/// other kinds are deleted at once.
fn grace_period_for(r: &Resource, obj: &Value, requested: Option<i64>) -> i64 {
    if !(r.group.is_empty() && r.name == "pods") {
        return 0;
    }
    let node = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let phase = obj
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    requested.unwrap_or_else(|| {
        obj.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    })
}

/// Deletes one object by kube-apiserver's rules (preconditions, graceful pods, finalizers,
/// namespaces going Terminating). Used by DELETE, deletecollection and the namespace finalizer.
pub(crate) async fn delete_object(
    state: &AppState,
    r: &'static Resource,
    key: Key,
    o: &DeleteOpts,
    actor: &str,
    now: SystemTime,
) -> Result<Deleted, ApiError> {
    for _ in 0..MAX_RETRIES {
        let cur =
            st_get(state, &key).ok_or_else(|| ApiError::not_found(r.group, r.name, &key.name))?;
        let q = if r.group.is_empty() {
            r.name.to_string()
        } else {
            format!("{}.{}", r.name, r.group)
        };
        if let Some(uid) = &o.precondition_uid {
            let have = meta_str(&cur, "uid");
            if uid != have {
                return Err(ApiError::new(409, "Conflict", format!(
                    "Operation cannot be fulfilled on {q} \"{}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {have}",
                    key.name
                )).with_details(r.group, r.name, &key.name));
            }
        }
        if let Some(rv) = &o.precondition_rv {
            let have = meta_str(&cur, "resourceVersion");
            if rv != have {
                return Err(ApiError::new(409, "Conflict", format!(
                    "Operation cannot be fulfilled on {q} \"{}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}",
                    key.name
                )).with_details(r.group, r.name, &key.name));
            }
        }
        let cur_rv = rv_of(&cur).unwrap_or(0);
        let is_ns = r.group.is_empty() && r.name == "namespaces";
        if is_ns && IMMORTAL_NAMESPACES.contains(&key.name.as_str()) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                    key.name
                ),
            )
            .with_details("", "namespaces", &key.name));
        }
        let already = cur
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        let grace = grace_period_for(r, &cur, o.grace_period);
        let old_grace = cur
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        let pending_finalizers = !finalizers_of(&cur).is_empty();

        // A deletion already in progress (kube-apiserver's BeforeDelete): a graceful one changes
        // only when the new grace period is shorter; a finalizer-held one not at all.
        let shorten = already && old_grace.is_some_and(|g| g > 0 && grace < g);
        if already && !shorten && (old_grace.is_some_and(|g| g > 0) || pending_finalizers || is_ns)
        {
            return Ok(Deleted::Pending(cur));
        }
        let graceful = grace > 0;
        // Namespaces always go through Terminating: their contents are deleted first.
        if !graceful && !pending_finalizers && !is_ns {
            if o.dry_run {
                return Ok(Deleted::Gone(cur));
            }
            match st_delete(
                state,
                key.clone(),
                Some(Precondition::ResourceVersion(cur_rv)),
                actor,
            )
            .await
            {
                Ok(last) => return Ok(Deleted::Gone(last)),
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => {
                    return Err(ApiError::not_found(r.group, r.name, &key.name))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut new = (*cur).clone();
        {
            let at = if graceful {
                now + Duration::from_secs(grace as u64)
            } else {
                now
            };
            let meta = meta_mut(&mut new);
            meta.insert("deletionTimestamp".into(), json!(rfc3339(at)));
            meta.insert(
                "deletionGracePeriodSeconds".into(),
                json!(if graceful { grace } else { 0 }),
            );
        }
        if is_ns {
            if !new.get("status").is_some_and(Value::is_object) {
                new["status"] = json!({});
            }
            new["status"]["phase"] = json!("Terminating");
        }
        if o.dry_run {
            return Ok(Deleted::Pending(Arc::new(new)));
        }
        match st_update(
            state,
            key.clone(),
            new,
            Some(Precondition::ResourceVersion(cur_rv)),
            actor,
        )
        .await
        {
            Ok(stored) => return Ok(Deleted::Pending(stored.object)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(StoreError::NotFound { .. }) => {
                return Err(ApiError::not_found(r.group, r.name, &key.name))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(r.group, r.name, &key.name))
}

/// Registries that answer DELETE with the object rather than a Status (ReturnDeletedObject).
fn returns_deleted_object(r: &Resource) -> bool {
    matches!(
        (r.group, r.name),
        ("", "pods")
            | ("", "persistentvolumes")
            | ("", "persistentvolumeclaims")
            | ("", "namespaces")
            | ("", "nodes")
            | ("storage.k8s.io", "storageclasses")
    )
}

fn success_status(r: &Resource, obj: &Value) -> Value {
    let mut details =
        json!({"name": meta_str(obj, "name"), "kind": r.name, "uid": meta_str(obj, "uid")});
    if !r.group.is_empty() {
        details["group"] = json!(r.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

async fn delete(ctx: &Ctx, body: &[u8]) -> Result<Response, ApiError> {
    let r = ctx.r();
    let name = ctx.t.name.clone().unwrap_or_default();
    let o = parse_delete_options(ctx, body)?;
    let out = delete_object(&ctx.state, r, ctx.key(&name), &o, &ctx.actor, ctx.now).await?;
    if r.group.is_empty() && r.name == "namespaces" {
        ctx.state.namespace_kick.notify_one();
    }
    match out {
        Deleted::Gone(last) if !returns_deleted_object(r) => {
            Ok(json_response(StatusCode::OK, &success_status(r, &last)))
        }
        Deleted::Gone(obj) | Deleted::Pending(obj) => {
            object_response(ctx, StatusCode::OK, &ctx.to_api(obj))
        }
    }
}

async fn delete_collection(ctx: &Ctx, body: &[u8]) -> Result<Response, ApiError> {
    let r = ctx.r();
    let o = parse_delete_options(ctx, body)?;
    let mut lq = list_query(ctx, None)?;
    lq.limit = None;
    lq.continue_token = None;
    let res = st_list(&ctx.state, &lq)?;
    let mut items = Vec::new();
    for item in &res.items {
        let key = Key::new(
            ctx.store_group(),
            r.name,
            meta_str(item, "namespace"),
            meta_str(item, "name"),
        );
        match delete_object(&ctx.state, r, key, &o, &ctx.actor, ctx.now).await {
            Ok(Deleted::Gone(v)) | Ok(Deleted::Pending(v)) => items.push((*ctx.to_api(v)).clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": format!("{}List", r.kind),
        "apiVersion": r.api_version(),
        "metadata": {"resourceVersion": res.resource_version.to_string()},
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list))
}

// ---------------------------------------------------------------------------------------------
// pods/binding

/// `POST pods/<name>/binding` (or `POST namespaces/<ns>/bindings`): sets spec.nodeName and the
/// PodScheduled condition, as kube-apiserver's BindingREST.
async fn binding(ctx: &Ctx, body: &[u8], path_name: Option<String>) -> Result<Response, ApiError> {
    let mut b = decode_object(&content_type(&ctx.headers), body, "Binding")?;
    check_kind("", "v1", "Binding", &mut b)?;
    let name = meta_str(&b, "name").to_string();
    let name = match path_name {
        Some(p) if !name.is_empty() && p != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({p})"
            )))
        }
        Some(p) => p,
        None => name,
    };
    let body_ns = meta_str(&b, "namespace");
    let ns = ctx.t.namespace.clone().unwrap_or_default();
    if !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let target_kind = b
        .pointer("/target/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    let node = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push(crate::status::Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value: name or generateName is required".into(),
            field: "metadata.name".into(),
        });
    }
    if node.is_empty() {
        causes.push(crate::status::Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: "target.name".into(),
        });
    }
    if !target_kind.is_empty() && target_kind != "Node" {
        causes.push(crate::status::Cause {
            reason: "FieldValueNotSupported".into(),
            message: format!("Unsupported value: \"{target_kind}\": supported values: \"Node\""),
            field: "target.kind".into(),
        });
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid("", "Binding", &name, causes));
    }
    let uid_pre = meta_str(&b, "uid").to_string();
    let rv_pre = meta_str(&b, "resourceVersion").to_string();
    let annotations = b
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned();
    let dry = ctx.q.dry_run()?;
    let key = Key::new("", "pods", &ns, &name);
    let conflict = |msg: String| {
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on pods/binding \"{name}\": {msg}"),
        )
        .with_details("", "pods/binding", &name)
    };
    for _ in 0..MAX_RETRIES {
        let pod = st_get(&ctx.state, &key).ok_or_else(|| ApiError::not_found("", "pods", &name))?;
        if !uid_pre.is_empty() && meta_str(&pod, "uid") != uid_pre {
            return Err(conflict(format!(
                "Precondition failed: UID in precondition: {uid_pre}, UID in object meta: {}",
                meta_str(&pod, "uid")
            )));
        }
        if !rv_pre.is_empty() && meta_str(&pod, "resourceVersion") != rv_pre {
            return Err(ApiError::conflict("", "pods", &name));
        }
        if pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            return Err(conflict(format!(
                "pod {name} is being deleted, cannot be assigned to a host"
            )));
        }
        let assigned = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !assigned.is_empty() {
            return Err(conflict(format!(
                "pod {name} is already assigned to node \"{assigned}\""
            )));
        }
        let rv = rv_of(&pod).unwrap_or(0);
        // The parsed pod is this request's alone: edited in place, not deep-copied.
        let mut new = Arc::unwrap_or_clone(pod);
        new["spec"]["nodeName"] = json!(node);
        if let Some(a) = &annotations {
            let meta = meta_mut(&mut new);
            let ann = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(m) = ann.as_object_mut() {
                for (k, v) in a {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        set_pod_scheduled(&mut new, &ctx.now_str());
        if dry {
            break;
        }
        match st_update(
            &ctx.state,
            key.clone(),
            new,
            Some(Precondition::ResourceVersion(rv)),
            &ctx.actor,
        )
        .await
        {
            Ok(_) => break,
            Err(StoreError::Conflict { .. }) if rv_pre.is_empty() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// `podutil.UpdatePodCondition(PodScheduled=True)`: the transition time changes only when the
/// status does.
fn set_pod_scheduled(pod: &mut Value, now: &str) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let status = pod["status"].as_object_mut().expect("status is an object");
    let conds = status.entry("conditions").or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let list = conds.as_array_mut().expect("conditions is an array");
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    {
        Some(c) => {
            if c.get("status").and_then(Value::as_str) != Some("True") {
                c["status"] = json!("True");
                c["lastTransitionTime"] = json!(now);
                if let Some(o) = c.as_object_mut() {
                    o.remove("reason");
                    o.remove("message");
                }
            }
        }
        None => list.push(json!({
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": null,
            "lastTransitionTime": now,
        })),
    }
}

// ---------------------------------------------------------------------------------------------
// pods/log and pods/exec

/// The pod, its container and its node's kubelet port (kube-apiserver's LogLocation and
/// ExecLocation checks). `Ok(None)` when the pod has no node yet.
fn kubelet_target(ctx: &Ctx) -> Result<(Arc<Value>, String, Option<u64>), ApiError> {
    let name = ctx.t.name.clone().unwrap_or_default();
    let pod = st_get(&ctx.state, &ctx.key(&name))
        .ok_or_else(|| ApiError::not_found("", "pods", &name))?;
    let container = proxy::resolve_container(&pod, ctx.q.get("container"))?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Ok((pod, container, None));
    }
    let nodeobj = st_get(&ctx.state, &Key::new("", "nodes", "", &node))
        .ok_or_else(|| ApiError::not_found("", "nodes", &node))?;
    Ok((pod, container, Some(proxy::kubelet_port(&nodeobj))))
}

async fn log(ctx: &Ctx) -> Result<Response, ApiError> {
    let (pod, container, port) = kubelet_target(ctx)?;
    let Some(port) = port else {
        // kube-apiserver: a pod without a host has no log location; the answer is empty.
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::empty())
            .expect("static response parts"));
    };
    let ns = meta_str(&pod, "namespace");
    let path = proxy::log_path(ns, meta_str(&pod, "name"), &container, &ctx.q);
    proxy::proxy_log(port, &path, &ctx.state.token, ctx.state.shutdown.clone()).await
}

async fn exec(
    ctx: &Ctx,
    headers: &HeaderMap,
    method: Method,
    upgrade: hyper::upgrade::OnUpgrade,
) -> Result<Response, ApiError> {
    let (pod, container, port) = kubelet_target(ctx)?;
    let name = meta_str(&pod, "name").to_string();
    let Some(port) = port else {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    if !proxy::is_upgrade(headers) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    if ctx.q.get_all("command").next().is_none() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let path = proxy::exec_path(meta_str(&pod, "namespace"), &name, &container, &ctx.q);
    proxy::proxy_exec(port, &path, &ctx.state.token, method, headers, upgrade).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::resources::find;

    #[test]
    fn accept_header_picks_the_representation() {
        let mut h = HeaderMap::new();
        assert_eq!(repr_of(&h), Repr::Object);
        h.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(repr_of(&h), Repr::Table);
        h.insert(
            header::ACCEPT,
            "application/vnd.kubernetes.protobuf, */*".parse().unwrap(),
        );
        assert_eq!(repr_of(&h), Repr::Object);
        h.insert(
            header::ACCEPT,
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
                .parse()
                .unwrap(),
        );
        assert_eq!(repr_of(&h), Repr::PartialMetadata);
    }

    #[test]
    fn kind_and_api_version_are_checked_and_filled() {
        let mut o = json!({"metadata": {"name": "x"}});
        check_kind("", "v1", "PersistentVolume", &mut o).unwrap();
        assert_eq!(
            (o["apiVersion"].as_str(), o["kind"].as_str()),
            (Some("v1"), Some("PersistentVolume"))
        );
        let mut o = json!({"apiVersion": "v1", "kind": "Pod"});
        let e = check_kind("", "v1", "PersistentVolume", &mut o).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e
            .message
            .contains("converting (v1.Pod) to (core.PersistentVolume)"));
        let mut o = json!({"apiVersion": "storage.k8s.io/v1beta1", "kind": "StorageClass"});
        let e = check_kind("storage.k8s.io", "v1", "StorageClass", &mut o).unwrap_err();
        assert!(e
            .message
            .contains("does not match the expected API version (storage.k8s.io/v1)"));
    }

    #[test]
    fn kind_and_api_version_move_first_unless_they_are() {
        // Already first and right: untouched (the fast path).
        let mut o = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}});
        check_kind("", "v1", "Pod", &mut o).unwrap();
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}"#
        );
        // Elsewhere, or missing: moved to the front.
        for body in [
            json!({"metadata": {"name": "x"}, "kind": "Pod", "apiVersion": "v1"}),
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x"}}),
            json!({"apiVersion": "v1", "metadata": {"name": "x"}}),
        ] {
            let mut o = body;
            check_kind("", "v1", "Pod", &mut o).unwrap();
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}"#
            );
        }
    }

    #[test]
    fn stored_text_is_served_only_when_typed() {
        assert!(typed_text(
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{}}"#
        ));
        assert!(typed_text(
            r#"{"apiVersion":"storage.k8s.io/v1","kind":"StorageClass"}"#
        ));
        assert!(!typed_text(r#"{"kind":"Pod","apiVersion":"v1"}"#));
        assert!(!typed_text(r#"{"apiVersion":"v1","metadata":{}}"#));
        assert!(!typed_text(r#"{"apiVersion":"v\"1","kind":"Pod"}"#));
        assert!(!typed_text(r#"{"apiVersion":"v1"}"#));
        // The text served is what parsing and serializing it again would give.
        let text = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a\u0001\"b\n","labels":{"é":"1"}},"spec":{"n":1.5,"m":-3,"e":1e300}}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            super::super::util::to_json(&v),
            serde_json::to_string(&v).unwrap()
        );
    }

    #[test]
    fn pods_are_graceful_only_on_a_node_and_while_running() {
        let pods = find("", "v1", "pods").unwrap();
        let pvs = find("", "v1", "persistentvolumes").unwrap();
        let on_node = json!({"spec": {"nodeName": "node-1", "terminationGracePeriodSeconds": 10}, "status": {"phase": "Running"}});
        assert_eq!(grace_period_for(pods, &on_node, None), 10);
        assert_eq!(grace_period_for(pods, &on_node, Some(0)), 0);
        assert_eq!(grace_period_for(pods, &on_node, Some(3)), 3);
        let unbound = json!({"spec": {}, "status": {"phase": "Pending"}});
        assert_eq!(grace_period_for(pods, &unbound, Some(30)), 0);
        let done = json!({"spec": {"nodeName": "node-1"}, "status": {"phase": "Succeeded"}});
        assert_eq!(grace_period_for(pods, &done, None), 0);
        let defaulted = json!({"spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}});
        assert_eq!(grace_period_for(pods, &defaulted, None), 30);
        assert_eq!(grace_period_for(pvs, &on_node, Some(30)), 0);
    }

    #[test]
    fn pod_scheduled_condition_is_set_once() {
        let mut pod = json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}});
        set_pod_scheduled(&mut pod, "2026-01-01T00:00:00Z");
        let c = &pod["status"]["conditions"][0];
        assert_eq!(
            (c["status"].as_str(), c.get("reason")),
            (Some("True"), None)
        );
        set_pod_scheduled(&mut pod, "2026-01-01T00:00:09Z");
        assert_eq!(
            pod["status"]["conditions"][0]["lastTransitionTime"],
            "2026-01-01T00:00:00Z"
        );
        let mut fresh = json!({});
        set_pod_scheduled(&mut fresh, "t");
        assert_eq!(fresh["status"]["conditions"][0]["type"], "PodScheduled");
    }

    #[test]
    fn generated_suffixes_use_the_upstream_alphabet() {
        for _ in 0..50 {
            let s = generate_suffix();
            assert_eq!(s.len(), 5);
            assert!(
                s.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
                "{s}"
            );
        }
    }
}
