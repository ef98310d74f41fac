//! The thin tokio driver of the node lifecycle controller: three kube-rs watchers (Nodes,
//! node Leases, Pods) feed the core; the core's writes become API calls whose outcomes —
//! 409 Conflict and 404 NotFound included — are fed back. The only clock read is [`now`].

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::mpsc;

use super::core::{
    Config, Metrics, Millis, NodeLifecycle, Outcome, Request, WatchEvent, Write, WriteId,
};

/// User agent and field manager of every write (`bonsai history` shows it).
pub const FIELD_MANAGER: &str = "bonsai-node-lifecycle-controller";

/// Most API writes in flight at once.
const MAX_IN_FLIGHT: usize = 64;

/// Settings of the controller (`bonsai up --node-monitor-grace-period …`).
#[derive(Clone, Debug, Default)]
pub struct NodeLifecycleConfig {
    pub core: Config,
    /// Where `/metrics` reads from; clone it before passing the config to `run`.
    pub metrics: MetricsHandle,
}

/// The controller's latest figures, refreshed at most once a second.
#[derive(Clone, Debug, Default)]
pub struct MetricsHandle(std::sync::Arc<std::sync::Mutex<Metrics>>);

impl MetricsHandle {
    /// Prometheus text for the API server's `/metrics`.
    pub fn text(&self) -> String {
        self.0.lock().map(|m| m.text()).unwrap_or_default()
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid API server URL {0:?}")]
    InvalidUrl(String),
    #[error("invalid bearer token")]
    InvalidToken,
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// A client for bonsai's plain-HTTP API server at `url`, with the bearer `token`, identifying
/// itself as `bonsai-node-lifecycle-controller`.
pub fn client(url: &str, token: &str) -> Result<kube::Client, Error> {
    let mut cfg = kube::Config::new(url.parse().map_err(|_| Error::InvalidUrl(url.into()))?);
    cfg.headers.push((
        "user-agent".parse().expect("valid header name"),
        FIELD_MANAGER.parse().expect("valid header value"),
    ));
    cfg.headers.push((
        "authorization".parse().expect("valid header name"),
        format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::InvalidToken)?,
    ));
    // Watches stay open for as long as the cluster runs.
    cfg.read_timeout = None;
    kube::Client::try_from(cfg).map_err(Error::Client)
}

// Inputs pass through a channel one at a time; boxing the large objects would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Input {
    Node(WatchEvent<Node>),
    Lease(WatchEvent<Lease>),
    Pod(WatchEvent<Pod>),
    Done(WriteId, Outcome),
}

/// The controller's one clock read.
pub fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Runs the node lifecycle and taint eviction controllers until `shutdown` completes.
/// API errors are never fatal: watchers back off and relist, failed writes are retried.
pub async fn run(
    client: kube::Client,
    config: NodeLifecycleConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let mut core = NodeLifecycle::new(config.core.clone());
    let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
    let watchers = [
        spawn_watch(Api::<Node>::all(client.clone()), tx.clone(), Input::Node),
        spawn_watch(
            Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
            tx.clone(),
            Input::Lease,
        ),
        spawn_watch(Api::<Pod>::all(client.clone()), tx.clone(), Input::Pod),
    ];
    tracing::info!(
        grace_ms = config.core.node_monitor_grace_period_ms,
        startup_grace_ms = config.core.node_startup_grace_period_ms,
        eviction_rate = config.core.node_eviction_rate,
        "node lifecycle controller started"
    );
    // Bounded writes in flight: thousands of nodes going Unknown at once must not open
    // thousands of connections to the API server.
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut metrics_at: Millis = 0;
    tokio::pin!(shutdown);
    loop {
        let t = now();
        if t >= metrics_at + 1000 {
            metrics_at = t;
            if let Ok(mut m) = config.metrics.0.lock() {
                *m = core.metrics();
            }
        }
        while let Some(w) = core.poll_write() {
            let (client, tx) = (client.clone(), tx.clone());
            let permits = permits.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let id = w.id;
                let outcome = perform(client, w).await;
                let _ = tx.send(Input::Done(id, outcome));
            });
        }
        let sleep = match core.poll_timeout() {
            Some(t) => Duration::from_millis(t.saturating_sub(now())),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            input = rx.recv() => {
                let Some(input) = input else { break };
                let t = now();
                feed(&mut core, t, input);
                // Drain what is ready (fewer wakeups under load) — boundedly, so that a steady
                // stream of Lease renewals cannot keep us from seeing `shutdown`.
                for _ in 0..256 {
                    let Ok(more) = rx.try_recv() else { break };
                    feed(&mut core, t, more);
                }
            }
            _ = tokio::time::sleep(sleep) => core.handle_timeout(now()),
        }
    }
    for w in watchers {
        w.abort();
    }
    Ok(())
}

fn feed(core: &mut NodeLifecycle, t: Millis, input: Input) {
    match input {
        Input::Node(e) => core.handle_node_event(t, e),
        Input::Lease(e) => core.handle_lease_event(t, e),
        Input::Pod(e) => core.handle_pod_event(t, e),
        Input::Done(id, o) => core.handle_completion(t, id, o),
    }
}

/// kube-runtime's watcher (list, then watch; relist on 410 or error, with backoff), reduced
/// to `WatchEvent`s; `Init…InitDone` becomes one `Relisted`.
fn spawn_watch<K>(
    api: Api<K>,
    tx: mpsc::UnboundedSender<Input>,
    wrap: fn(WatchEvent<K>) -> Input,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut buffer: Vec<K> = Vec::new();
        while let Some(ev) = stream.next().await {
            let out = match ev {
                Ok(watcher::Event::Apply(o)) => Some(WatchEvent::Applied(o)),
                Ok(watcher::Event::Delete(o)) => Some(WatchEvent::Deleted(o)),
                Ok(watcher::Event::Init) => {
                    buffer.clear();
                    None
                }
                Ok(watcher::Event::InitApply(o)) => {
                    buffer.push(o);
                    None
                }
                Ok(watcher::Event::InitDone) => {
                    Some(WatchEvent::Relisted(std::mem::take(&mut buffer)))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "node lifecycle watch error; backing off");
                    None
                }
            };
            if let Some(o) = out {
                if tx.send(wrap(o)).is_err() {
                    return;
                }
            }
        }
    })
}

fn outcome<T>(r: Result<T, kube::Error>) -> Outcome {
    match r {
        Ok(_) => Outcome::Done,
        Err(kube::Error::Api(s)) if s.code == 409 => Outcome::Conflict,
        Err(kube::Error::Api(s)) if s.code == 404 => Outcome::NotFound,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

async fn perform(client: kube::Client, w: Write) -> Outcome {
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let o = match w.request {
        Request::NodeStatus {
            node,
            resource_version,
            conditions,
        } => {
            let body = json!({"metadata": {"resourceVersion": resource_version},
                              "status": {"conditions": conditions}});
            outcome(
                Api::<Node>::all(client)
                    .patch_status(&node, &pp, &Patch::Merge(&body))
                    .await,
            )
        }
        Request::NodeTaints {
            node,
            resource_version,
            taints,
        } => {
            // No taints left: remove the field, as a node that never had any shows it.
            let taints = if taints.as_array().is_some_and(|a| a.is_empty()) {
                serde_json::Value::Null
            } else {
                taints
            };
            let body = json!({"metadata": {"resourceVersion": resource_version},
                              "spec": {"taints": taints}});
            outcome(
                Api::<Node>::all(client)
                    .patch(&node, &pp, &Patch::Merge(&body))
                    .await,
            )
        }
        Request::PodStatus {
            namespace,
            name,
            resource_version,
            conditions,
        } => {
            let body = json!({"metadata": {"resourceVersion": resource_version},
                              "status": {"conditions": conditions}});
            outcome(
                Api::<Pod>::namespaced(client, &namespace)
                    .patch_status(&name, &pp, &Patch::Merge(&body))
                    .await,
            )
        }
        Request::DeletePod {
            namespace,
            name,
            uid,
            resource_version,
        } => {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: Some(resource_version),
                }),
                ..Default::default()
            };
            outcome(
                Api::<Pod>::namespaced(client, &namespace)
                    .delete(&name, &dp)
                    .await,
            )
        }
        Request::CreateEvent(ev) => {
            let ns = ev["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            match serde_json::from_value::<Event>(ev) {
                Ok(ev) => outcome(
                    Api::<Event>::namespaced(client, &ns)
                        .create(
                            &PostParams {
                                field_manager: Some(FIELD_MANAGER.into()),
                                ..Default::default()
                            },
                            &ev,
                        )
                        .await,
                ),
                Err(e) => Outcome::Failed(e.to_string()),
            }
        }
    };
    if let Outcome::Failed(e) = &o {
        tracing::warn!(write = w.id.0, error = %e, "node lifecycle write failed; will retry");
    }
    o
}
