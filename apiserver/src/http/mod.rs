//! The Kubernetes REST API over axum: what the real kubectl, the `kube` crate, the Python client
//! and bonsai's own controllers talk to. Plain HTTP on 127.0.0.1, bearer-token authenticated.
//! (axum's router has one route, the fallback [`dispatch`]; serving connections by hand with
//! hyper instead saved ~1% of the instructions per create, measured and not kept: axum is the
//! project's chosen server.)
//!
//! # Public API
//! ```ignore
//! let mut cfg = ServerConfig::new(bind, token, store); // event_ttl 1h, default namespaces on
//! cfg.extra_metrics.push(Arc::new(|| scheduler_metrics_text()));
//! let handle = apiserver::http::serve(cfg).await?;     // Err(ServeError::AddrInUse{..}) names the port
//! handle.local_addr();        // the bound address (port 0 picks a free port); handle.url()
//! handle.user_agents();       // distinct User-Agents seen (tests assert kubectl/v1.33)
//! handle.current_watches();   // open watch streams
//! let stop = handle.shutdown_trigger(); // Fn() for a Ctrl-C handler
//! handle.shutdown().await;    // graceful: stops accepting, ends watches and followed logs,
//!                             // waits (at most 10 s) for running requests
//! // or: handle.join().await  // waits until the server stops (after the trigger fired)
//! ```
//! [`ServerConfig`] fields: `bind`, `token`, `store`, `event_ttl` (1 h as in Kubernetes),
//! `extra_metrics` (closures whose Prometheus text is appended to `/metrics`),
//! `reaper_interval` (default ttl/10, clamped to 100 ms..60 s) and `create_default_namespaces`.
//!
//! TLS is not terminated here: client-go sends a kubeconfig's token only to `https://` servers,
//! so `bonsai up` puts its TLS front (`bonsai/src/tls.rs`) before this server, and the tests
//! do the same (`tests/http_common`). In-process clients use the plain loopback port.

//! # Layout
//! - `mod.rs`       — config, [`serve`], [`ServerHandle`], the single dispatch function: auth,
//!                    metrics, `/version`, health, `/metrics`, OpenAPI, bonsai's own
//!                    `/bonsai/v1/history` and `/bonsai/v1/state`, then [`route`].
//! - `route`        — parses `/api…`/`/apis…` paths into discovery routes or a resource target.
//! - `resources`    — the table of served resources (discovery values of a real v1.33 server).
//! - `discovery`    — discovery (aggregated v2 when asked for, else legacy) and the OpenAPI v3
//!                    documents for `--validate`.
//! - `rest`         — create/get/list/update/patch/delete/deletecollection, binding, the pod and
//!                    namespace deletion rules, generateName, Table/PartialObjectMetadata output.
//! - `watch`        — chunked NDJSON watch streams (initial ADDED, bookmarks, 410 ERROR).
//! - `events`       — events.k8s.io/v1 Events stored as core/v1 Events (one storage, two
//!                    versions, as in Kubernetes).
//! - `proxy`        — pods/log and pods/exec proxied to the node's kubelet (upgrade splice).
//! - `background`   — startup namespaces, the namespace finalizer, the event TTL reaper.
//! - `protobuf`     — the one protobuf body kubectl sends us (`kubectl create namespace`).
//! - `metrics`      — Prometheus counters/histograms with kube-apiserver's metric names.
//! - `util`         — query parsing, body decoding, Status responses, RFC 3339.
//! - `table`        — server-side Table printers (owned by the table columns work).

pub mod background;
pub mod discovery;
pub mod events;
pub mod metrics;
pub mod protobuf;
pub mod proxy;
pub mod resources;
pub mod rest;
pub mod route;
pub mod table;
pub mod util;
pub mod watch;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::serve::ListenerExt;
use serde_json::json;
use tokio::sync::watch as tokio_watch;

use crate::status::ApiError;
use crate::store::Store;

use self::metrics::Metrics;
use self::util::{error_response, json_response, Query};

/// The version bonsai reports. kubectl on our machines picks its 1.33 build from `minor`.
pub const GIT_VERSION: &str = "v1.33.1";

/// A closure producing Prometheus text that `/metrics` appends (controllers, scheduler…).
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// How to run the API server.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where to listen; port 0 picks a free port (see [`ServerHandle::local_addr`]).
    pub bind: SocketAddr,
    /// The bearer token every request except /version, /healthz, /livez, /readyz must carry.
    pub token: String,
    pub store: Store,
    /// Events expire this long after their last update (Kubernetes: 1 h).
    pub event_ttl: Duration,
    /// Appended to `/metrics`.
    pub extra_metrics: Vec<MetricsFn>,
    /// How often the event reaper runs (default: a tenth of `event_ttl`, at most a minute).
    pub reaper_interval: Option<Duration>,
    /// Create default, kube-system, kube-public and kube-node-lease if absent (default true).
    pub create_default_namespaces: bool,
    /// DefaultTolerationSeconds admission (kube-apiserver's `--default-not-ready-toleration-seconds`
    /// and `--default-unreachable-toleration-seconds`; default 300 s each).
    pub default_tolerations: crate::semantics::DefaultTolerationSeconds,
}

impl ServerConfig {
    /// Defaults: 1 h event TTL, no extra metrics, default namespaces created.
    pub fn new(bind: SocketAddr, token: impl Into<String>, store: Store) -> ServerConfig {
        ServerConfig {
            bind,
            token: token.into(),
            store,
            event_ttl: Duration::from_secs(3600),
            extra_metrics: Vec::new(),
            reaper_interval: None,
            create_default_namespaces: true,
            default_tolerations: Default::default(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: port {port} is already in use (is another bonsai or API server running? pick another with --port, or --port 0 for a free one)")]
    AddrInUse { addr: SocketAddr, port: u16 },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare the store: {0}")]
    Store(String),
}

/// Shared state of all request handlers.
pub(crate) struct AppState {
    pub store: Store,
    pub token: String,
    pub metrics: Metrics,
    pub extra_metrics: Vec<MetricsFn>,
    pub user_agents: RwLock<BTreeSet<String>>,
    /// `host:port` for `/api`'s serverAddressByClientCIDRs.
    pub server_address: String,
    /// Flips to true on shutdown: open watches end.
    pub shutdown: tokio_watch::Receiver<bool>,
    /// Wakes the namespace finalizer.
    pub namespace_kick: tokio::sync::Notify,
    /// Handed to the semantics with every write (pod admission).
    pub default_tolerations: crate::semantics::DefaultTolerationSeconds,
    /// Watch events encoded once for all watchers (see `watch::EncodedEvents`).
    pub encoded_events: watch::EncodedEvents,
    /// The namespaces as creates check them (see `rest::NamespaceCache`).
    pub namespaces: rest::NamespaceCache,
}

/// A running server. Dropping the handle shuts the server down gracefully, as
/// [`ServerHandle::shutdown`] does (without waiting): keep it for as long as the server should run.
pub struct ServerHandle {
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown_tx: tokio_watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The distinct User-Agent headers seen so far (at most 256 are kept).
    pub fn user_agents(&self) -> Vec<String> {
        self.state
            .user_agents
            .read()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of open watch streams.
    pub fn current_watches(&self) -> i64 {
        self.state.metrics.current_watches()
    }

    /// Graceful shutdown: stop accepting, end open watches, let running requests finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        let mut task = self.task;
        // Watches and followed logs end on the signal; a client that keeps an idle connection
        // open must not hold the process hostage.
        if tokio::time::timeout(Duration::from_secs(10), &mut task)
            .await
            .is_err()
        {
            tracing::warn!("API server connections still open after 10s; stopping anyway");
            task.abort();
        }
    }

    /// Waits until the server stops (after [`ServerHandle::shutdown`] from elsewhere, or a
    /// fatal accept error).
    pub async fn join(self) {
        let _ = self.task.await;
    }

    /// A sender that triggers graceful shutdown from another task (e.g. a Ctrl-C handler);
    /// then [`ServerHandle::join`] returns once the server has stopped.
    pub fn shutdown_trigger(&self) -> impl Fn() + Send + Sync + 'static {
        let tx = self.shutdown_tx.clone();
        move || {
            let _ = tx.send(true);
        }
    }
}

/// Binds, prepares the store (default namespaces) and starts serving in a background task.
pub async fn serve(config: ServerConfig) -> Result<ServerHandle, ServeError> {
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                ServeError::AddrInUse {
                    addr: config.bind,
                    port: config.bind.port(),
                }
            } else {
                ServeError::Bind {
                    addr: config.bind,
                    source,
                }
            }
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.bind,
        source,
    })?;
    let (shutdown_tx, shutdown_rx) = tokio_watch::channel(false);
    let state = Arc::new(AppState {
        store: config.store.clone(),
        token: config.token.clone(),
        metrics: Metrics::default(),
        extra_metrics: config.extra_metrics.clone(),
        user_agents: RwLock::new(BTreeSet::new()),
        server_address: addr.to_string(),
        shutdown: shutdown_rx.clone(),
        namespace_kick: tokio::sync::Notify::new(),
        default_tolerations: config.default_tolerations,
        encoded_events: watch::EncodedEvents::default(),
        namespaces: Default::default(),
    });
    if config.create_default_namespaces {
        background::ensure_default_namespaces(&state)
            .await
            .map_err(|e| ServeError::Store(e.message))?;
    }
    background::spawn(state.clone(), &config);

    let app = axum::Router::new()
        .fallback(dispatch)
        .with_state(state.clone());
    let mut graceful_rx = shutdown_rx;
    let task = tokio::spawn(async move {
        // TCP_NODELAY: watch events and small responses must not wait for Nagle's algorithm.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = graceful_rx.wait_for(|v| *v).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "API server stopped with an error");
        }
    });
    tracing::info!(%addr, "API server listening");
    Ok(ServerHandle {
        addr,
        state,
        shutdown_tx,
        task,
    })
}

/// Constant-time comparison of the presented bearer token.
fn token_ok(state: &AppState, req: &Request) -> bool {
    let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(t) = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
    else {
        return false;
    };
    let (a, b) = (t.trim().as_bytes(), state.token.as_bytes());
    if a.len() != b.len() || b.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn record_user_agent(state: &AppState, req: &Request) {
    let Some(ua) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    if let Ok(set) = state.user_agents.read() {
        if set.contains(ua) || set.len() >= 256 {
            return;
        }
    }
    if let Ok(mut set) = state.user_agents.write() {
        set.insert(ua.to_string());
    }
}

/// The /version document of a v1.33 kube-apiserver.
pub fn version_json() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": GIT_VERSION,
        "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
        "gitTreeState": "clean",
        "buildDate": "2025-05-15T08:19:08Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn text_response(code: StatusCode, ct: &'static str, body: String) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, HeaderValue::from_static(ct))
        .body(Body::from(body))
        .expect("static response parts")
}

/// Every request comes through here.
async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    record_user_agent(&state, &req);
    // The URI for the request log line (a reference count, not a copy of the path).
    let uri = req.uri().clone();
    let path = uri.path();
    let method = req.method().clone();
    let mut resp = match path {
        "/version" | "/version/" => json_response(StatusCode::OK, &version_json()),
        "/healthz" | "/livez" | "/readyz" => {
            text_response(StatusCode::OK, "text/plain; charset=utf-8", "ok".into())
        }
        p if p.starts_with("/healthz/")
            || p.starts_with("/livez/")
            || p.starts_with("/readyz/") =>
        {
            text_response(StatusCode::OK, "text/plain; charset=utf-8", "ok".into())
        }
        _ if !token_ok(&state, &req) => {
            let e = ApiError::new(401, "Unauthorized", "Unauthorized");
            let mut r = error_response(&e);
            state.metrics.observe(
                verb_of(&method, false),
                "",
                "",
                "",
                401,
                Some(started.elapsed()),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, private"),
            );
            log_request(&method, path, 401, started);
            return r;
        }
        "/metrics" => {
            let mut text = state.metrics.render();
            for f in &state.extra_metrics {
                let extra = f();
                text.push_str(&extra);
                if !extra.is_empty() && !extra.ends_with('\n') {
                    text.push('\n');
                }
            }
            text_response(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            )
        }
        "/bonsai/v1/history" => match bonsai_history(&state, &Query::parse(req.uri().query())) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => error_response(&e),
        },
        "/bonsai/v1/state" => match bonsai_state(&state, &Query::parse(req.uri().query())) {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => error_response(&e),
        },
        "/openapi/v3" | "/openapi/v3/" => json_response(StatusCode::OK, &discovery::openapi_root()),
        p if p.starts_with("/openapi/v3/") => {
            let rest = &p["/openapi/v3/".len()..];
            let segs: Vec<&str> = rest.split('/').collect();
            let doc = match segs.as_slice() {
                ["api", v] => discovery::openapi_gv("", v),
                ["apis", g, v] => discovery::openapi_gv(g, v),
                _ => None,
            };
            match doc {
                Some(d) => {
                    let mut r = json_response(StatusCode::OK, &d);
                    if req.uri().query().is_some_and(|q| q.contains("hash=")) {
                        r.headers_mut().insert(
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, immutable"),
                        );
                    }
                    r
                }
                None => error_response(&route::not_found_path()),
            }
        }
        p if p == "/api" || p.starts_with("/api/") || p == "/apis" || p.starts_with("/apis/") => {
            let resp = api(state, req, started).await;
            log_request(&method, path, resp.status().as_u16(), started);
            return resp;
        }
        _ => error_response(&route::not_found_path()),
    };
    resp.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache, private"));
    let code = resp.status().as_u16();
    state.metrics.observe(
        verb_of(&method, false),
        "",
        "",
        "",
        code,
        Some(started.elapsed()),
    );
    log_request(&method, path, code, started);
    resp
}

/// `GET /bonsai/v1/history?group=&resource=&namespace=&name=`: every retained event of one
/// object, oldest first, with who wrote it (what `bonsai history KIND/NAME` prints).
fn bonsai_history(state: &AppState, q: &Query) -> Result<serde_json::Value, ApiError> {
    let need = |k: &str| {
        q.get(k)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("query parameter {k:?} is required")))
    };
    let key = crate::store::Key::new(
        q.get("group").unwrap_or(""),
        need("resource")?,
        q.get("namespace").unwrap_or(""),
        need("name")?,
    );
    let h = state.store.history(&key)?;
    let events: Vec<serde_json::Value> = h
        .events
        .iter()
        .map(|e| {
            json!({
                "revision": e.revision,
                "type": e.event_type.as_str(),
                "actor": e.actor,
                "time": e.time,
                "object": &*e.object,
            })
        })
        .collect();
    Ok(json!({
        "kind": "History",
        "apiVersion": "bonsai/v1",
        "key": {"group": key.group, "resource": key.resource, "namespace": key.namespace, "name": key.name},
        "truncatedBefore": h.truncated_before,
        "events": events,
    }))
}

/// `GET /bonsai/v1/state?revision=N`: every object as it was at revision N.
fn bonsai_state(state: &AppState, q: &Query) -> Result<serde_json::Value, ApiError> {
    let revision = match q.int("revision")? {
        Some(r) if r >= 0 => r as u64,
        _ => state.store.revision(),
    };
    let st = state.store.state_at(revision)?;
    let objects: Vec<serde_json::Value> = st
        .objects
        .iter()
        .map(|(k, v)| {
            json!({
                "key": {"group": k.group, "resource": k.resource, "namespace": k.namespace, "name": k.name},
                "object": &**v,
            })
        })
        .collect();
    Ok(json!({
        "kind": "State",
        "apiVersion": "bonsai/v1",
        "revision": st.revision,
        "truncatedBefore": st.truncated_before,
        "objects": objects,
    }))
}

/// One structured line per request (debug; server errors at warn). For a watch or an exec,
/// the time is until the response headers.
fn log_request(method: &Method, path: &str, code: u16, started: Instant) {
    // The time is read only when the line is logged (debug lines rarely are).
    let micros = || started.elapsed().as_micros() as u64;
    if code >= 500 {
        tracing::warn!(%method, path, code, micros = micros(), "request failed");
    } else {
        tracing::debug!(%method, path, code, micros = micros(), "request");
    }
}

/// kube-apiserver's request verb for metrics.
fn verb_of(method: &Method, collection: bool) -> &'static str {
    match *method {
        Method::GET if collection => "LIST",
        Method::GET | Method::HEAD => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE if collection => "DELETECOLLECTION",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// `/api…` and `/apis…`: discovery and resources.
async fn api(state: Arc<AppState>, req: Request, started: Instant) -> Response {
    let method = req.method().clone();
    let route = match route::parse(req.uri().path()) {
        Ok(r) => r,
        Err(e) => {
            let r = error_response(&e);
            state.metrics.observe(
                verb_of(&method, false),
                "",
                "",
                "",
                r.status().as_u16(),
                Some(started.elapsed()),
            );
            return r;
        }
    };
    // Only discovery documents come in the aggregated form.
    let aggregated = matches!(route, route::Route::ApiVersions | route::Route::ApiGroups)
        && discovery::wants_aggregated(
            req.headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        );
    let discovery_doc = match &route {
        route::Route::ApiVersions | route::Route::ApiGroups if aggregated => {
            let doc = discovery::aggregated(matches!(route, route::Route::ApiVersions));
            let mut r = json_response(StatusCode::OK, &doc);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, private"),
            );
            r.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept"));
            state
                .metrics
                .observe("GET", "", "", "", 200, Some(started.elapsed()));
            return r;
        }
        route::Route::ApiVersions => Some(Ok(discovery::api_versions(&state.server_address))),
        route::Route::ApiGroups => Some(Ok(discovery::api_group_list())),
        route::Route::ApiGroup(g) => {
            Some(discovery::api_group(g).ok_or_else(route::not_found_path))
        }
        route::Route::ResourceList { group, version } => {
            Some(discovery::api_resource_list(group, version).ok_or_else(route::not_found_path))
        }
        route::Route::Resource(_) => None,
    };
    if let Some(doc) = discovery_doc {
        let mut r = match (method == Method::GET || method == Method::HEAD, doc) {
            (true, Ok(d)) => json_response(StatusCode::OK, &d),
            (false, Ok(_)) => error_response(&ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )),
            (_, Err(e)) => error_response(&e),
        };
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache, private"),
        );
        state.metrics.observe(
            verb_of(&method, false),
            "",
            "",
            "",
            r.status().as_u16(),
            Some(started.elapsed()),
        );
        return r;
    }
    let route::Route::Resource(target) = route else {
        unreachable!("discovery handled above")
    };
    let query = Query::parse(req.uri().query());
    let resource = target.resource;
    // The route only admits the resource's own subresources: their static names.
    let subresource = target
        .subresource
        .as_deref()
        .and_then(|s| resource.subresource(s))
        .map_or("", |s| s.name);
    let (verb, resp) = rest::handle(state.clone(), target, query, req).await;
    let code = resp.status().as_u16();
    let elapsed = (verb != "WATCH" && verb != "CONNECT").then(|| started.elapsed());
    state.metrics.observe(
        verb,
        resource.group,
        resource.name,
        subresource,
        code,
        elapsed,
    );
    let mut resp = resp;
    if code != 101 {
        resp.headers_mut()
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-cache, private"));
    }
    resp
}
