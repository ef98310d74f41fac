//! `bonsai history KIND/NAME [-n NS]`: an object's timeline from the store's log — revision,
//! time, who wrote it (user agent / field manager), and a compact diff against the previous
//! version.
//!
//! Read through the running API server (`GET /bonsai/v1/history`, bearer token), and from the
//! store directly only when no cluster runs in the data dir (the store is locked while one does).

use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use apiserver::store::{BackendKind, Key, Store, StoreConfig};
use clap::Args;
use serde_json::Value;

use crate::datadir::DataDir;
use crate::state::{self, Running};
use crate::DataDirArg;

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The object: pod/NAME, pvc/NAME, pv/NAME, node/NAME, storageclass/NAME, event/NAME,
    /// namespace/NAME, lease/NAME.
    object: String,
    /// The namespace of a namespaced object.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Print every field of each version's diff (no value shortening).
    #[arg(long)]
    full: bool,
    #[command(flatten)]
    dir: DataDirArg,
}

/// (group, resource, namespaced) for the kinds a user names.
pub(crate) fn resource_of(kind: &str) -> Option<(&'static str, &'static str, bool)> {
    Some(match kind {
        "pod" | "pods" | "po" => ("", "pods", true),
        "pvc" | "persistentvolumeclaim" | "persistentvolumeclaims" => {
            ("", "persistentvolumeclaims", true)
        }
        "pv" | "persistentvolume" | "persistentvolumes" => ("", "persistentvolumes", false),
        "node" | "nodes" | "no" => ("", "nodes", false),
        "namespace" | "namespaces" | "ns" => ("", "namespaces", false),
        "event" | "events" | "ev" => ("", "events", true),
        "storageclass" | "storageclasses" | "sc" => ("storage.k8s.io", "storageclasses", false),
        "csistoragecapacity" | "csistoragecapacities" => {
            ("storage.k8s.io", "csistoragecapacities", true)
        }
        "lease" | "leases" => ("coordination.k8s.io", "leases", true),
        _ => return None,
    })
}

/// One version of the object, as the log has it.
struct Version {
    revision: u64,
    event_type: String,
    actor: String,
    time: String,
    object: Value,
}

pub fn run(args: HistoryArgs) -> anyhow::Result<i32> {
    let Some((kind, name)) = args.object.split_once('/') else {
        bail!(
            "expected KIND/NAME (like pvc/example-local-claim), found {:?}",
            args.object
        );
    };
    let Some((group, resource, namespaced)) = resource_of(kind) else {
        bail!("unknown kind {kind:?} (pod, pvc, pv, node, storageclass, event, namespace, lease)");
    };
    let ns = if namespaced {
        args.namespace.as_str()
    } else {
        ""
    };
    let key = Key::new(group, resource, ns, name);
    let dir = DataDir::new(&args.dir.data_dir)?;
    let (versions, truncated, source) = match state::inspect(&dir)? {
        Running::Yes {
            state: Some(st), ..
        } => {
            let (v, t) = live(&dir, st.api_port, &key)?;
            (v, t, "the running API server")
        }
        Running::Yes { state: None, .. } => {
            bail!(
                "the cluster in {} is still starting; try again in a moment",
                dir.root.display()
            )
        }
        Running::No { .. } => {
            let (v, t) = offline(&dir, &key)?;
            (v, t, "the store (no cluster is running)")
        }
    };
    let mut out = std::io::stdout().lock();
    let label = if ns.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{name} -n {ns}")
    };
    if versions.is_empty() {
        writeln!(
            out,
            "no history for {label} (never written, or dropped by log retention)"
        )?;
        return Ok(1);
    }
    writeln!(out, "history of {label}, from {source}")?;
    if let Some(r) = truncated {
        writeln!(
            out,
            "(log retention dropped events before r{r}; earlier changes are not shown)"
        )?;
    }
    writeln!(
        out,
        "{:<9} {:<21} {:<28} CHANGE",
        "REVISION", "TIME", "WRITER"
    )?;
    let mut prev: Option<&Value> = None;
    for v in &versions {
        let change = match (v.event_type.as_str(), prev) {
            ("DELETED", _) => "deleted".to_string(),
            (_, None) => format!("created  {}", diff(&Value::Null, &v.object, args.full)),
            (_, Some(p)) => diff(p, &v.object, args.full),
        };
        writeln!(
            out,
            "{:<9} {:<21} {:<28} {}",
            format!("r{}", v.revision),
            v.time,
            v.actor,
            if change.is_empty() {
                "(no field changed)".into()
            } else {
                change
            }
        )?;
        prev = (v.event_type != "DELETED").then_some(&v.object);
    }
    Ok(0)
}

fn live(dir: &DataDir, port: u16, key: &Key) -> anyhow::Result<(Vec<Version>, Option<u64>)> {
    let token = dir.token()?;
    let path = format!(
        "/bonsai/v1/history?group={}&resource={}&namespace={}&name={}",
        key.group, key.resource, key.namespace, key.name
    );
    let (code, body) = http_get(port, &token, &path)
        .with_context(|| format!("asking the API server on 127.0.0.1:{port}"))?;
    if code == 404 && !body.contains("\"History\"") {
        let msg = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or(body);
        bail!("the API server answered 404 for {path}: {msg}");
    }
    if code != 200 {
        bail!("the API server answered {code} for {path}: {body}");
    }
    let v: Value = serde_json::from_str(&body).context("decoding the history")?;
    let versions = v
        .get("events")
        .and_then(Value::as_array)
        .map(|evs| {
            evs.iter()
                .map(|e| Version {
                    revision: e.get("revision").and_then(Value::as_u64).unwrap_or(0),
                    event_type: e.get("type").and_then(Value::as_str).unwrap_or("").into(),
                    actor: e.get("actor").and_then(Value::as_str).unwrap_or("").into(),
                    time: e.get("time").and_then(Value::as_str).unwrap_or("").into(),
                    object: e.get("object").cloned().unwrap_or(Value::Null),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((versions, v.get("truncatedBefore").and_then(Value::as_u64)))
}

fn offline(dir: &DataDir, key: &Key) -> anyhow::Result<(Vec<Version>, Option<u64>)> {
    let store_dir = dir.store();
    if !store_dir.exists() {
        bail!(
            "no cluster runs in {} and it has no store ({} does not exist)",
            dir.root.display(),
            store_dir.display()
        );
    }
    let Some(kind) = BackendKind::existing(&store_dir) else {
        bail!("{} holds no store", store_dir.display());
    };
    let cfg = StoreConfig::durable(kind, kind.path_in(&store_dir));
    let store =
        Store::open(cfg).map_err(|e| anyhow!("opening the store {}: {e}", store_dir.display()))?;
    let h = store
        .history(key)
        .map_err(|e| anyhow!("reading the history: {e}"))?;
    let versions = h
        .events
        .into_iter()
        .map(|e| Version {
            revision: e.revision,
            event_type: e.event_type.as_str().into(),
            actor: e.actor,
            time: e.time,
            object: (*e.object).clone(),
        })
        .collect();
    Ok((versions, h.truncated_before))
}

/// GET on the API server's loopback plain-HTTP port with the cluster's bearer token.
pub(crate) fn http_get(port: u16, token: &str, path: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: bonsai-cli\r\n\
         Authorization: Bearer {token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut body = response[split + 4..].to_vec();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        b = &b[eol + 2..];
        if size == 0 || size > b.len() {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}

/// `path=value` for every leaf, JSON-pointer-ish with dots.
fn flatten(v: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(x, &p, out);
            }
        }
        Value::Array(a) if !a.is_empty() && a.iter().any(|x| x.is_object()) => {
            for (i, x) in a.iter().enumerate() {
                flatten(x, &format!("{prefix}[{i}]"), out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Fields that change on every write and say nothing about what happened.
fn noise(path: &str) -> bool {
    path == "metadata.resourceVersion"
        || path.starts_with("metadata.managedFields")
        || path == "metadata.uid"
        || path == "metadata.creationTimestamp"
        || path.ends_with("lastHeartbeatTime")
        || path.ends_with("lastProbeTime")
}

/// A compact diff: `+path=value`, `-path`, `path: old → new`.
pub(crate) fn diff(old: &Value, new: &Value, full: bool) -> String {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    flatten(old, "", &mut a);
    flatten(new, "", &mut b);
    let a: std::collections::BTreeMap<_, _> = a.into_iter().collect();
    let b: std::collections::BTreeMap<_, _> = b.into_iter().collect();
    let short = |s: &str| -> String {
        if full || s.chars().count() <= 48 {
            s.to_string()
        } else {
            format!("{}…", s.chars().take(47).collect::<String>())
        }
    };
    let mut parts = Vec::new();
    for (k, v) in &b {
        if noise(k) || k.is_empty() {
            continue;
        }
        match a.get(k) {
            None if old.is_null() => parts.push(format!("{k}={}", short(v))),
            None => parts.push(format!("+{k}={}", short(v))),
            Some(o) if o != v => parts.push(format!("{k}: {} → {}", short(o), short(v))),
            _ => {}
        }
    }
    for k in a.keys() {
        if !b.contains_key(k) && !noise(k) && !k.is_empty() {
            parts.push(format!("-{k}"));
        }
    }
    parts.join("  ")
}
