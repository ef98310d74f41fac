//! `pods/log` and `pods/exec`: proxied to the pod's node's kubelet, as kube-apiserver does.
//!
//! The kubelet is found at `127.0.0.1:<Node.status.daemonEndpoints.kubeletEndpoint.Port>` and
//! addressed with the real kubelet's paths (`/containerLogs/{ns}/{pod}/{container}`,
//! `/exec/{ns}/{pod}/{container}`), carrying `Authorization: Bearer <token>`. Exec is a
//! transparent byte splice: the client's upgrade request (WebSocket `v5.channel.k8s.io`, or
//! SPDY) is replayed to the kubelet; when the kubelet answers 101 its handshake headers go back
//! to the client and the two upgraded connections are joined with `copy_bidirectional`, so the
//! apiserver never parses a frame.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::util::Query;
use crate::status::ApiError;

/// The real kubelet's default port, used when a node does not publish one.
const DEFAULT_KUBELET_PORT: u64 = 10250;

/// All container names of a pod (init, regular, ephemeral), as upstream's VisitContainers.
fn container_names(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(cs) = pod
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
        {
            out.extend(
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .map(str::to_string),
            );
        }
    }
    out
}

/// Resolves the container as kube-apiserver's `validateContainer`: the only container when
/// none is named, else the named one must exist.
pub fn resolve_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if container_names(pod).iter().any(|n| n == c) {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None => {
            let main: Vec<&str> = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map(|cs| cs.iter().filter_map(|c| c.get("name")?.as_str()).collect())
                .unwrap_or_default();
            match main.len() {
                1 => Ok(main[0].to_string()),
                0 => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}"
                ))),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    container_names(pod).join(" ")
                ))),
            }
        }
    }
}

/// The kubelet port a node publishes.
pub fn kubelet_port(node: &Value) -> u64 {
    node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p < 65536)
        .unwrap_or(DEFAULT_KUBELET_PORT)
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `/containerLogs/{ns}/{pod}/{container}?…` with the log options kubectl may send.
pub fn log_path(ns: &str, pod: &str, container: &str, q: &Query) -> String {
    let mut params = Vec::new();
    for key in [
        "follow",
        "tailLines",
        "timestamps",
        "sinceSeconds",
        "sinceTime",
        "previous",
        "limitBytes",
    ] {
        if let Some(v) = q.get(key) {
            params.push(format!("{key}={}", enc(v)));
        }
    }
    let mut p = format!("/containerLogs/{}/{}/{}", enc(ns), enc(pod), enc(container));
    if !params.is_empty() {
        p.push('?');
        p.push_str(&params.join("&"));
    }
    p
}

/// `/exec/{ns}/{pod}/{container}?command=…&stdin=…&stdout=…&stderr=…&tty=…`. The flags are
/// forwarded as kubectl sent them, plus the real kubelet's own spellings (`input`, `output`,
/// `error` = 1) that kube-apiserver uses, so either kind of kubelet understands them.
pub fn exec_path(ns: &str, pod: &str, container: &str, q: &Query) -> String {
    let mut params: Vec<String> = q
        .get_all("command")
        .map(|c| format!("command={}", enc(c)))
        .collect();
    for (key, alias) in [
        ("stdin", Some("input")),
        ("stdout", Some("output")),
        ("stderr", Some("error")),
        ("tty", None),
    ] {
        if let Some(v) = q.get(key) {
            params.push(format!("{key}={}", enc(v)));
            if let (Some(a), true) = (alias, q.flag(key)) {
                params.push(format!("{a}=1"));
            }
        }
    }
    format!(
        "/exec/{}/{}/{}?{}",
        enc(ns),
        enc(pod),
        enc(container),
        params.join("&")
    )
}

fn dial_error(port: u64, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!(
        "error dialing backend: dial tcp 127.0.0.1:{port}: {e}"
    ))
}

/// A failed connect in Go's words (`connect: connection refused`), as kubectl users know it.
fn connect_error(port: u64, e: std::io::Error) -> ApiError {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => format!("connect: {e}"),
    };
    dial_error(port, why)
}

async fn connect(
    port: u64,
) -> Result<hyper::client::conn::http1::SendRequest<Empty<Bytes>>, ApiError> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port as u16))
        .await
        .map_err(|e| connect_error(port, e))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| dial_error(port, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "kubelet proxy connection ended");
        }
    });
    Ok(sender)
}

/// Headers of a hop-by-hop upgrade handshake that must travel through the splice.
const UPGRADE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "x-stream-protocol-version",
];

/// GET the kubelet's log stream and pass its response (status, body) through as a stream.
/// A followed log ends when the server shuts down (`shutdown` flips to true), so graceful
/// shutdown never waits on a `kubectl logs -f`.
pub async fn proxy_log(
    port: u64,
    path: &str,
    token: &str,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Response, ApiError> {
    let mut sender = connect(port).await?;
    let req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, format!("127.0.0.1:{port}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| dial_error(port, e))?;
    let (parts, body) = resp.into_parts();
    let mut out = Response::builder().status(parts.status);
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        out = out.header(header::CONTENT_TYPE, ct);
    } else {
        out = out.header(header::CONTENT_TYPE, "text/plain");
    }
    let stream = body.into_data_stream().take_until(async move {
        let _ = shutdown.wait_for(|v| *v).await;
    });
    out.body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Replays an upgrade request to the kubelet and splices both connections once the kubelet
/// switches protocols. A non-101 kubelet answer (e.g. a 400 Status) is passed through, which
/// makes kubectl fall back or print the error as against a real cluster.
pub async fn proxy_exec(
    port: u64,
    path: &str,
    token: &str,
    method: Method,
    headers: &HeaderMap,
    client_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<Response, ApiError> {
    let mut sender = connect(port).await?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, format!("127.0.0.1:{port}"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    for name in UPGRADE_HEADERS {
        for v in headers.get_all(*name) {
            req = req.header(*name, v);
        }
    }
    if let Some(ua) = headers.get(header::USER_AGENT) {
        req = req.header(header::USER_AGENT, ua);
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(|e| dial_error(port, e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        let mut out = Response::builder().status(parts.status);
        if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
            out = out.header(header::CONTENT_TYPE, ct);
        }
        return out
            .body(Body::new(body))
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    let kubelet_upgrade = hyper::upgrade::on(&mut resp);
    let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for name in UPGRADE_HEADERS {
        for v in resp.headers().get_all(*name) {
            out = out.header(*name, v.clone());
        }
    }
    tokio::spawn(async move {
        let (client, kubelet) = match tokio::join!(client_upgrade, kubelet_upgrade) {
            (Ok(c), Ok(k)) => (c, k),
            (c, k) => {
                tracing::warn!(
                    client_ok = c.is_ok(),
                    kubelet_ok = k.is_ok(),
                    "exec upgrade failed"
                );
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut kubelet = TokioIo::new(kubelet);
        match tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
            Ok((up, down)) => tracing::debug!(up, down, "exec session ended"),
            Err(e) => tracing::debug!(error = %e, "exec session ended with error"),
        }
    });
    out.body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Whether the request asks for a protocol upgrade (WebSocket or SPDY).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .map(|v| !v.is_empty())
        .unwrap_or(false)
        && headers
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.to_ascii_lowercase().contains("upgrade"))
            .unwrap_or(false)
}
