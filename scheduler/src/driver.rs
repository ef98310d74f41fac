//! The thin tokio driver: watches → `handle_*`, `poll_output` → HTTP writes → completions,
//! `poll_timeout` → `handle_timeout`. It is the only place that reads the clock.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    Binding, Event, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::{CSIStorageCapacity, StorageClass};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::core::metrics::Metrics;
use crate::core::{Completion, CoreConfig, Millis, Request, RequestId, Scheduler, WatchEvent};
use crate::Error;
use apiserver::api::lean::{Lean, Parts};
use apiserver::api::request::{collection, json, with_verb};

/// The user agent and field manager of every scheduler write.
pub const FIELD_MANAGER: &str = "bonsai-scheduler";

/// Settings of `run`.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The core's settings (scheduler name, backoff, bind timeout, poll switch).
    pub core: CoreConfig,
    /// Where `/metrics` reads from; clone it before passing the config to `run`.
    pub metrics: MetricsHandle,
    /// PreBind's PV/PVC writes in flight at once (0: 128), and as many `pods/binding` requests
    /// in a lane of their own. More wait their turn, so a burst of bindings does not open
    /// thousands of connections to the API server. Binds have their own lane because upstream's
    /// binding cycles are independent goroutines: a pod whose volumes are bound must not queue
    /// behind the PreBind writes of every pod scheduled after it.
    pub max_in_flight: usize,
    /// Events and pod status patches in flight at once (0: 32). They go through their own lane,
    /// as upstream's event broadcaster runs apart from the binding goroutines, so that a burst
    /// of `Scheduled` events never queues in front of the next bindings.
    pub max_reports_in_flight: usize,
}

/// A shared copy of the scheduler's metrics, refreshed by the driver.
#[derive(Debug, Clone, Default)]
pub struct MetricsHandle(Arc<Mutex<Metrics>>);

impl MetricsHandle {
    /// Prometheus text for `/metrics`.
    pub fn render(&self) -> String {
        self.0.lock().map(|m| m.render()).unwrap_or_default()
    }

    /// A snapshot of the counters (benchmarks read the latencies from it).
    pub fn snapshot(&self) -> Metrics {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Pods bound so far, without copying the latency samples (a benchmark polls this).
    pub fn scheduled(&self) -> u64 {
        self.0.lock().map(|m| m.attempts[0]).unwrap_or_default()
    }
}

/// A `kube::Config` for bonsai's plain-HTTP API server, authenticating with `token` and
/// identifying itself as `bonsai-scheduler`.
pub fn client_config(url: &str, token: &str) -> Result<kube::Config, Error> {
    client_config_as(url, token, FIELD_MANAGER)
}

/// `client_config` with another user agent (the fake nodes use `bonsai-fake-nodes`), so that
/// `bonsai history` names the right actor.
pub fn client_config_as(
    url: &str,
    token: &str,
    user_agent: &'static str,
) -> Result<kube::Config, Error> {
    let uri = url
        .parse()
        .map_err(|e| Error::Client(format!("invalid server URL {url:?}: {e}")))?;
    let mut cfg = kube::Config::new(uri);
    cfg.headers.push((
        hyper::header::USER_AGENT,
        hyper::header::HeaderValue::from_static(user_agent),
    ));
    // The token goes in as a plain header: bonsai's API server speaks HTTP on loopback.
    let auth = hyper::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| Error::Client(format!("invalid bearer token: {e}")))?;
    cfg.headers.push((hyper::header::AUTHORIZATION, auth));
    Ok(cfg)
}

/// A client from `client_config`.
pub fn client_for(url: &str, token: &str) -> Result<Client, Error> {
    Client::try_from(client_config(url, token)?).map_err(|e| Error::Client(e.to_string()))
}

/// What the driver's loop receives. Watch events are boxed: a pod or a PV is kilobytes
/// inline, and every input is moved through the channel and into the core.
enum Input {
    Pod(Box<WatchEvent<Pod>>),
    Node(Box<WatchEvent<Node>>),
    Pv(Box<WatchEvent<PersistentVolume>>),
    Pvc(Box<WatchEvent<PersistentVolumeClaim>>),
    Sc(Box<WatchEvent<StorageClass>>),
    Cap(Box<WatchEvent<CSIStorageCapacity>>),
    Done(RequestId, Completion),
}

fn now_millis() -> Millis {
    // The driver is the clock's only reader; the core gets `now` from here.
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// Folds a kube watcher stream (Init/InitApply/InitDone) into `WatchEvent`s.
fn spawn_watch<K, F>(
    api: Api<K>,
    tx: mpsc::UnboundedSender<Input>,
    wrap: F,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(WatchEvent<K>) -> Input + Send + 'static,
{
    spawn_watch_as(api, tx, |k| k, wrap)
}

/// `spawn_watch` for the kinds watched in bulk (pods, nodes, PVs, PVCs): decoded as
/// `Lean<K>`, without managedFields — the scheduler never reads them, and its PV and PVC
/// writes then carry none (the server keeps the stored ones, see `lean`). kube-scheduler's pod
/// informer drops them too; here they are not even built.
fn spawn_lean_watch<K, F>(
    client: &Client,
    tx: mpsc::UnboundedSender<Input>,
    wrap: F,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource<DynamicType = ()> + Parts + Clone + std::fmt::Debug + Send + 'static,
    F: Fn(WatchEvent<K>) -> Input + Send + 'static,
{
    spawn_watch_as(
        Api::<Lean<K>>::all(client.clone()),
        tx,
        |l: Lean<K>| l.0,
        wrap,
    )
}

/// Watches `W` and hands the core `unwrap(w)`.
fn spawn_watch_as<W, K, F>(
    api: Api<W>,
    tx: mpsc::UnboundedSender<Input>,
    unwrap: fn(W) -> K,
    wrap: F,
) -> tokio::task::JoinHandle<()>
where
    W: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K: Send + 'static,
    F: Fn(WatchEvent<K>) -> Input + Send + 'static,
{
    tokio::spawn(async move {
        // The initial list in one response, as an informer's list from the watch cache
        // (resourceVersion "0") is served upstream: 5,000 nodes are not 10 round trips.
        let config = watcher::Config {
            page_size: None,
            ..watcher::Config::default()
        };
        let mut stream = watcher(api, config).default_backoff().boxed();
        let mut buffer: Vec<K> = Vec::new();
        while let Some(ev) = stream.next().await {
            let out = match ev {
                Ok(watcher::Event::Init) => {
                    buffer.clear();
                    None
                }
                Ok(watcher::Event::InitApply(o)) => {
                    buffer.push(unwrap(o));
                    None
                }
                Ok(watcher::Event::InitDone) => {
                    Some(WatchEvent::Restarted(std::mem::take(&mut buffer)))
                }
                Ok(watcher::Event::Apply(o)) => Some(WatchEvent::Applied(unwrap(o))),
                Ok(watcher::Event::Delete(o)) => Some(WatchEvent::Deleted(unwrap(o))),
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler watch failed; retrying");
                    None
                }
            };
            if let Some(ev) = out {
                if tx.send(wrap(ev)).is_err() {
                    return;
                }
            }
        }
    })
}

fn completion_of<T>(r: Result<T, kube::Error>, done: impl FnOnce(T) -> Completion) -> Completion {
    match r {
        Ok(v) => done(v),
        Err(kube::Error::Api(s)) if s.code == 409 => Completion::Conflict(s.message.clone()),
        Err(kube::Error::Api(s)) if s.code == 404 => Completion::NotFound(s.message.clone()),
        Err(kube::Error::Api(s)) => Completion::Failed(format!("{} ({})", s.message, s.code)),
        Err(e) => Completion::Failed(e.to_string()),
    }
}

/// A write ready to send: the HTTP request (body serialized) and how to read its answer.
///
/// The request is built in the driver's loop and only the sending is spawned, so a spawned
/// task carries the request and the client's future (about a kilobyte) instead of the whole
/// `Request` and a future for each of its kinds (16 kB, copied at every spawn).
struct Prepared {
    request: Result<hyper::Request<Vec<u8>>, String>,
    answer: Answer,
}

/// What the core reads of a write's answer.
enum Answer {
    /// The PV the server returned (`Lean`, without managedFields).
    Volume,
    /// The PVC the server returned.
    Claim,
    /// Nothing (events, bindings, status patches): the body is checked to be JSON and
    /// skipped, never built into an object.
    Unread,
}

/// Builds the HTTP request of `request` (what `Api::replace`, `create_subresource`, `patch`…
/// would send).
fn prepare(request: Request) -> Prepared {
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let patch_params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match request {
        Request::UpdatePersistentVolume(pv) => {
            let name = pv.metadata.name.clone().unwrap_or_default();
            let request = json(&Lean(pv)).and_then(|body| {
                with_verb(
                    collection::<PersistentVolume>(None).replace(&name, &pp, body),
                    "replace",
                )
            });
            Prepared {
                request,
                answer: Answer::Volume,
            }
        }
        Request::UpdatePersistentVolumeClaim(pvc) => {
            let name = pvc.metadata.name.clone().unwrap_or_default();
            let ns = pvc
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let request = json(&Lean(pvc)).and_then(|body| {
                with_verb(
                    collection::<PersistentVolumeClaim>(Some(&ns)).replace(&name, &pp, body),
                    "replace",
                )
            });
            Prepared {
                request,
                answer: Answer::Claim,
            }
        }
        Request::Bind {
            namespace,
            name,
            uid,
            node,
        } => {
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    uid: Some(uid),
                    ..Default::default()
                },
                target: ObjectReference {
                    kind: Some("Node".into()),
                    name: Some(node),
                    api_version: Some("v1".into()),
                    ..Default::default()
                },
            };
            let request = json(&binding).and_then(|body| {
                with_verb(
                    collection::<Pod>(Some(&namespace))
                        .create_subresource("binding", &name, &pp, body),
                    "create",
                )
            });
            Prepared {
                request,
                answer: Answer::Unread,
            }
        }
        Request::PatchPodStatus {
            namespace,
            name,
            patch,
        } => Prepared {
            request: with_verb(
                collection::<Pod>(Some(&namespace)).patch_subresource(
                    "status",
                    &name,
                    &patch_params,
                    &Patch::Merge(&patch),
                ),
                "patch",
            ),
            answer: Answer::Unread,
        },
        Request::CreateEvent(event) => {
            let ns = event
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let request = json(&event).and_then(|body| {
                with_verb(collection::<Event>(Some(&ns)).create(&pp, body), "create")
            });
            Prepared {
                request,
                answer: Answer::Unread,
            }
        }
        Request::PatchEvent {
            namespace,
            name,
            patch,
        } => Prepared {
            request: with_verb(
                collection::<Event>(Some(&namespace)).patch(
                    &name,
                    &patch_params,
                    &Patch::Merge(&patch),
                ),
                "patch",
            ),
            answer: Answer::Unread,
        },
    }
}

/// Sends a prepared write and reads its answer as the core wants it.
async fn send(client: Client, prepared: Prepared) -> Completion {
    let req = match prepared.request {
        Ok(r) => r,
        Err(e) => return Completion::Failed(e),
    };
    match prepared.answer {
        Answer::Volume => completion_of(client.request::<Lean<PersistentVolume>>(req).await, |l| {
            Completion::Volume(Box::new(l.0))
        }),
        Answer::Claim => completion_of(
            client.request::<Lean<PersistentVolumeClaim>>(req).await,
            |l| Completion::Claim(Box::new(l.0)),
        ),
        Answer::Unread => completion_of(client.request::<serde::de::IgnoredAny>(req).await, |_| {
            Completion::Done(serde_json::Value::Null)
        }),
    }
}

/// Runs the scheduler until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let mut core = Scheduler::new(config.core.clone());
    let lane = |n: usize, default: usize| {
        Arc::new(tokio::sync::Semaphore::new(if n == 0 {
            default
        } else {
            n
        }))
    };
    let prebind_lane = lane(config.max_in_flight, 128);
    let bind_lane = lane(config.max_in_flight, 128);
    let report_lane = lane(config.max_reports_in_flight, 32);
    let (tx, mut rx) = mpsc::unbounded_channel::<Input>();
    let watches = vec![
        spawn_lean_watch(&client, tx.clone(), |e| Input::Pod(Box::new(e))),
        spawn_lean_watch(&client, tx.clone(), |e| Input::Node(Box::new(e))),
        spawn_lean_watch(&client, tx.clone(), |e| Input::Pv(Box::new(e))),
        spawn_lean_watch(&client, tx.clone(), |e| Input::Pvc(Box::new(e))),
        spawn_watch(Api::<StorageClass>::all(client.clone()), tx.clone(), |e| {
            Input::Sc(Box::new(e))
        }),
        spawn_watch(
            Api::<CSIStorageCapacity>::all(client.clone()),
            tx.clone(),
            |e| Input::Cap(Box::new(e)),
        ),
    ];
    tracing::info!(scheduler_name = %config.core.scheduler_name, "scheduler started");
    tokio::pin!(shutdown);
    let mut last_metrics = now_millis();
    loop {
        let now = now_millis();
        if core.poll_timeout().is_some_and(|t| t <= now) {
            core.handle_timeout(now);
        }
        while let Some(out) = core.poll_output() {
            let client = client.clone();
            let tx = tx.clone();
            let limit = match out.request {
                Request::CreateEvent(_)
                | Request::PatchEvent { .. }
                | Request::PatchPodStatus { .. } => report_lane.clone(),
                Request::Bind { .. } => bind_lane.clone(),
                Request::UpdatePersistentVolume(_) | Request::UpdatePersistentVolumeClaim(_) => {
                    prebind_lane.clone()
                }
            };
            let id = out.id;
            let prepared = prepare(out.request);
            tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                let c = send(client, prepared).await;
                let _ = tx.send(Input::Done(id, c));
            });
        }
        if now.0 >= last_metrics.0 + 200 {
            if let Ok(mut m) = config.metrics.0.lock() {
                *m = core.metrics().clone();
            }
            last_metrics = now;
        }
        let sleep_for = match core.poll_timeout() {
            Some(t) if t <= now => Duration::ZERO,
            Some(t) => Duration::from_millis(t.0 - now.0),
            None => Duration::from_secs(1),
        }
        .min(Duration::from_secs(1));
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            input = rx.recv() => {
                let Some(first) = input else { break };
                let now = now_millis();
                feed(&mut core, now, first);
                // Take what else is queued, so a burst becomes one turn of the loop.
                for _ in 0..1024 {
                    match rx.try_recv() {
                        Ok(i) => feed(&mut core, now, i),
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
    for w in watches {
        w.abort();
    }
    Ok(())
}

fn feed(core: &mut Scheduler, now: Millis, input: Input) {
    match input {
        Input::Pod(e) => core.handle_pod(now, *e),
        Input::Node(e) => core.handle_node(now, *e),
        Input::Pv(e) => core.handle_persistent_volume(now, *e),
        Input::Pvc(e) => core.handle_persistent_volume_claim(now, *e),
        Input::Sc(e) => core.handle_storage_class(now, *e),
        Input::Cap(e) => core.handle_csi_storage_capacity(now, *e),
        Input::Done(id, c) => core.handle_completion(now, id, c),
    }
}
