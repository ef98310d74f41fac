//! The thin tokio driver: it owns a `VolumeControllerCore`, feeds it watch events from four
//! kube-rs watchers (PVs, PVCs, StorageClasses, Pods), performs the requests it emits as API
//! calls (each write is a PUT carrying the resourceVersion the core read) and feeds every
//! outcome back — 409 Conflict and 404 NotFound as ordinary values. It is the only place that
//! reads the clock.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::core::metrics::Metrics;
use crate::core::{
    Completion, CoreConfig, Millis, Request, RequestId, VolumeControllerCore, WatchEvent,
};
use apiserver::api::lean::Lean;
use apiserver::api::request::{collection, json, with_verb};

/// The field manager and user agent of every write.
pub const FIELD_MANAGER: &str = "bonsai-volume-controller";

/// Settings of the volume controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// Full resync period of PVs and PVCs (upstream `--pvclaimbinder-sync-period`, 15 s).
    pub resync_period: Duration,
    /// Run the pvc-protection and pv-protection controllers (on in Kubernetes).
    pub protection: bool,
    /// Counters for `/metrics`; clone the `Arc` before `run` and call `metrics.text()`.
    pub metrics: Arc<Metrics>,
    /// Field manager for writes.
    pub field_manager: String,
    /// Most API requests in flight at once (the core pipelines writes for different objects;
    /// this bounds connections and load on the API server). Further work waits, undecided,
    /// in the core's queue.
    pub max_inflight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            resync_period: Duration::from_secs(15),
            protection: true,
            metrics: Arc::new(Metrics::new()),
            field_manager: FIELD_MANAGER.to_string(),
            max_inflight: 256,
        }
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid API server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid bearer token: {0}")]
    InvalidToken(String),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// A `kube::Client` for bonsai's plain-HTTP API server at `url`, authenticating with `token`
/// and identifying itself as `bonsai-volume-controller`.
pub fn client(url: &str, token: &str) -> Result<kube::Client, Error> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::InvalidUrl {
            url: url.into(),
            reason: e.to_string(),
        })?;
    let mut cfg = kube::Config::new(uri);
    cfg.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(FIELD_MANAGER),
    ));
    let auth = http::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| Error::InvalidToken(e.to_string()))?;
    cfg.headers.push((http::header::AUTHORIZATION, auth));
    kube::Client::try_from(cfg).map_err(Error::Client)
}

/// Queued syncs run per loop turn before the driver looks at new inputs again.
const WORK_SLICE: usize = 256;
/// Inputs taken per loop turn (watch events and completions are handled in batches, but a
/// steady stream must not starve the requests already decided).
const INPUT_BATCH: usize = 64;

/// What the driver's loop receives. Boxed: a PV, a claim or a pod is kilobytes inline, and
/// every input is moved through the channel and into the core.
enum Input {
    Volume(Box<WatchEvent<PersistentVolume>>),
    Claim(Box<WatchEvent<PersistentVolumeClaim>>),
    Class(Box<WatchEvent<StorageClass>>),
    Pod(Box<WatchEvent<Pod>>),
    Done(RequestId, Box<Completion>),
}

fn now() -> Millis {
    // The one clock read of the volume controller (see `core` docs).
    Millis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// Runs the volume controller until `shutdown` completes.
///
/// Watches PersistentVolumes, PersistentVolumeClaims, StorageClasses and Pods through
/// `client`, binds, reclaims, protects and records Events as Kubernetes v1.33 does. Returns
/// `Ok(())` on shutdown. API errors are never fatal: watchers back off and relist, failed
/// writes are retried by the next event or resync.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let core_config = CoreConfig {
        resync_period_ms: config.resync_period.as_millis().max(1) as u64,
        protection: config.protection,
    };
    let mut core = VolumeControllerCore::new(core_config, config.metrics.clone());
    let (tx, mut rx) = mpsc::unbounded_channel::<Input>();

    let watchers = vec![
        spawn_watch(
            Api::<Lean<PersistentVolume>>::all(client.clone()),
            tx.clone(),
            |l| l.0,
            |e| Input::Volume(Box::new(e)),
        ),
        spawn_watch(
            Api::<Lean<PersistentVolumeClaim>>::all(client.clone()),
            tx.clone(),
            |l| l.0,
            |e| Input::Claim(Box::new(e)),
        ),
        spawn_watch(
            Api::<StorageClass>::all(client.clone()),
            tx.clone(),
            lean,
            |e| Input::Class(Box::new(e)),
        ),
        spawn_watch(
            Api::<Lean<Pod>>::all(client.clone()),
            tx.clone(),
            |l| l.0,
            |e| Input::Pod(Box::new(e)),
        ),
    ];
    let pp = PostParams {
        dry_run: false,
        field_manager: Some(config.field_manager.clone()),
    };
    // Requests are pulled from the core only while fewer than `max_inflight` are out: the
    // rest of the work stays queued in the core, where continuations of binds under way go
    // first (a backlog is bound claim after claim), and is decided from the freshest state.
    let max_inflight = config.max_inflight.max(1);
    let mut outstanding = 0usize;
    let trace = std::env::var_os("BONSAI_VC_TRACE").is_some();

    tokio::pin!(shutdown);
    loop {
        // The resync timer, checked here too so a steady input stream cannot starve it.
        if core.poll_timeout().is_some_and(|t| now() >= t) {
            core.handle_timeout(now());
        }
        // Run queued syncs in slices: a resync queues every object, and new inputs (watch
        // events, completions) must not wait behind all of it.
        let mut budget = WORK_SLICE;
        while outstanding < max_inflight {
            let Some(out) = core.poll_output_bounded(&mut budget) else {
                break;
            };
            outstanding += 1;
            let id = out.id;
            if trace {
                eprintln!("vc -> {:?} {}", id, describe_request(&out.request));
            }
            let prepared = prepare(&pp, out.request);
            let (client, tx) = (client.clone(), tx.clone());
            tokio::spawn(async move {
                let c = send(client, prepared).await;
                if trace {
                    eprintln!("vc <- {:?} {}", id, describe_completion(&c));
                }
                let _ = tx.send(Input::Done(id, Box::new(c)));
            });
        }
        if outstanding < max_inflight && core.has_queued_work() {
            // Budget spent with work left: take what has arrived meanwhile (without
            // waiting), let the request tasks run, then the next slice.
            if shutdown.as_mut().now_or_never().is_some() {
                break;
            }
            tokio::task::yield_now().await;
            let t = now();
            for _ in 0..INPUT_BATCH {
                match rx.try_recv() {
                    Ok(input) => outstanding -= feed(&mut core, t, input),
                    Err(_) => break,
                }
            }
            continue;
        }
        let sleep = match core.poll_timeout() {
            Some(t) => Duration::from_millis(t.0.saturating_sub(now().0)),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            input = rx.recv() => {
                let Some(input) = input else { break };
                let t = now();
                outstanding -= feed(&mut core, t, input);
                // Take a few more ready inputs before sending outputs again (fewer wakeups
                // under load), but never so many that a steady stream of watch events
                // starves the requests the core already decided.
                for _ in 0..INPUT_BATCH {
                    let Ok(more) = rx.try_recv() else { break };
                    outstanding -= feed(&mut core, t, more);
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

/// Feeds one input; returns 1 for a request's completion (one fewer outstanding), else 0.
fn feed(core: &mut VolumeControllerCore, t: Millis, input: Input) -> usize {
    match input {
        Input::Volume(e) => core.handle_volume_event(t, *e),
        Input::Claim(e) => core.handle_claim_event(t, *e),
        Input::Class(e) => core.handle_class_event(t, *e),
        Input::Pod(e) => core.handle_pod_event(t, *e),
        Input::Done(id, c) => {
            core.handle_completion(t, id, *c);
            return 1;
        }
    }
    0
}

/// One watcher task: kube-runtime's watcher (list, then watch; relist on 410 or error, with
/// backoff), reduced to `WatchEvent`s; `Init…InitDone` becomes one `Relisted`. Objects reach
/// the core as `unwrap` makes them: PVs, PVCs and pods are watched as `Lean<K>` (decoded
/// without managedFields, see `lean`), classes are trimmed after decoding.
fn spawn_watch<W, K>(
    api: Api<W>,
    tx: mpsc::UnboundedSender<Input>,
    unwrap: fn(W) -> K,
    wrap: fn(WatchEvent<K>) -> Input,
) -> tokio::task::JoinHandle<()>
where
    W: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K: Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut buffer: Vec<K> = Vec::new();
        while let Some(ev) = stream.next().await {
            let out = match ev {
                Ok(watcher::Event::Apply(o)) => Some(WatchEvent::Applied(unwrap(o))),
                Ok(watcher::Event::Delete(o)) => Some(WatchEvent::Deleted(unwrap(o))),
                Ok(watcher::Event::Init) => {
                    buffer.clear();
                    None
                }
                Ok(watcher::Event::InitApply(o)) => {
                    buffer.push(unwrap(o));
                    None
                }
                Ok(watcher::Event::InitDone) => {
                    Some(WatchEvent::Relisted(std::mem::take(&mut buffer)))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "volume-controller watch error; backing off");
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

/// Drops `metadata.managedFields` from an object the core will cache. The core never reads
/// them, and a write without them leaves the stored ownership as it is (the API server, like
/// kube-apiserver, carries the live object's managedFields over when a non-apply write
/// omits them and records this writer's change), so the result on the server is the same
/// while every cached copy, every copy made to write and every request body is smaller.
fn lean<K: kube::Resource>(mut o: K) -> K {
    o.meta_mut().managed_fields = None;
    o
}

fn classify(e: kube::Error) -> Completion {
    match e {
        kube::Error::Api(s) if s.code == 409 => Completion::Conflict,
        kube::Error::Api(s) if s.code == 404 => Completion::NotFound,
        other => Completion::Failed(other.to_string()),
    }
}

/// A request ready to send: the HTTP request (body serialized) and how to read its answer.
///
/// Requests are built in the driver's loop and only the sending is spawned, so a spawned
/// task carries the request and the client's future (about a kilobyte) rather than the
/// `Request` and a future for each of its kinds (many kilobytes, copied at every spawn).
struct Prepared {
    request: Result<http::Request<Vec<u8>>, String>,
    answer: Answer,
}

/// How the core reads a request's answer.
enum Answer {
    Volume,
    Claim,
    /// A live GET of a claim (404 is an answer: `ClaimRead(None)`).
    ClaimRead,
    PodList,
    /// An Event write: the answer is checked to be JSON and skipped, never decoded into an
    /// Event (the core reads nothing of it but that it was written).
    Event,
}

/// Builds the HTTP request of `request`: what `Api::replace`, `replace_status`, `get_opt`,
/// `list`, `create` and `patch` would send.
fn prepare(pp: &PostParams, request: Request) -> Prepared {
    let name_of = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.name.clone().unwrap_or_default()
    };
    let ns_of = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.namespace.clone().unwrap_or_default()
    };
    let (request, answer) = match request {
        Request::UpdateVolume(pv) => {
            let name = name_of(&pv.metadata);
            let req = json(&Lean(pv)).and_then(|body| {
                with_verb(
                    collection::<PersistentVolume>(None).replace(&name, pp, body),
                    "replace",
                )
            });
            (req, Answer::Volume)
        }
        Request::UpdateVolumeStatus(pv) => {
            let name = name_of(&pv.metadata);
            let req = json(&Lean(pv)).and_then(|body| {
                with_verb(
                    collection::<PersistentVolume>(None)
                        .replace_subresource("status", &name, pp, body),
                    "replace_status",
                )
            });
            (req, Answer::Volume)
        }
        Request::UpdateClaim(c) => {
            let (name, ns) = (name_of(&c.metadata), ns_of(&c.metadata));
            let req = json(&Lean(c)).and_then(|body| {
                with_verb(
                    collection::<PersistentVolumeClaim>(Some(&ns)).replace(&name, pp, body),
                    "replace",
                )
            });
            (req, Answer::Claim)
        }
        Request::UpdateClaimStatus(c) => {
            let (name, ns) = (name_of(&c.metadata), ns_of(&c.metadata));
            let req = json(&Lean(c)).and_then(|body| {
                with_verb(
                    collection::<PersistentVolumeClaim>(Some(&ns))
                        .replace_subresource("status", &name, pp, body),
                    "replace_status",
                )
            });
            (req, Answer::Claim)
        }
        Request::GetClaim { namespace, name } => (
            with_verb(
                collection::<PersistentVolumeClaim>(Some(&namespace))
                    .get(&name, &Default::default()),
                "get_opt",
            ),
            Answer::ClaimRead,
        ),
        Request::ListPods { namespace } => (
            with_verb(
                collection::<Pod>(Some(&namespace)).list(&ListParams::default()),
                "list",
            ),
            Answer::PodList,
        ),
        Request::CreateEvent(ev) => {
            let ns = ns_of(&ev.metadata);
            let req = json(&ev).and_then(|body| {
                with_verb(collection::<Event>(Some(&ns)).create(pp, body), "create")
            });
            (req, Answer::Event)
        }
        Request::PatchEvent {
            namespace,
            name,
            count,
            last_timestamp,
        } => {
            let body = serde_json::json!({ "count": count, "lastTimestamp": last_timestamp });
            let params = PatchParams {
                field_manager: pp.field_manager.clone(),
                ..Default::default()
            };
            (
                with_verb(
                    collection::<Event>(Some(&namespace)).patch(
                        &name,
                        &params,
                        &Patch::Merge(&body),
                    ),
                    "patch",
                ),
                Answer::Event,
            )
        }
    };
    Prepared { request, answer }
}

/// Sends a prepared request and turns its outcome into the core's `Completion`.
async fn send(client: kube::Client, prepared: Prepared) -> Completion {
    let req = match prepared.request {
        Ok(r) => r,
        Err(e) => return Completion::Failed(e),
    };
    match prepared.answer {
        Answer::Volume => client
            .request::<Lean<PersistentVolume>>(req)
            .await
            .map_or_else(classify, |o| Completion::Volume(o.0)),
        Answer::Claim => client
            .request::<Lean<PersistentVolumeClaim>>(req)
            .await
            .map_or_else(classify, |o| Completion::Claim(o.0)),
        Answer::ClaimRead => match client.request::<Lean<PersistentVolumeClaim>>(req).await {
            Ok(c) => Completion::ClaimRead(Some(c.0)),
            // `get_opt`: a 404 is the answer "absent".
            Err(kube::Error::Api(s)) if s.code == 404 => Completion::ClaimRead(None),
            Err(e) => classify(e),
        },
        Answer::PodList => match client
            .request::<kube::core::ObjectList<Lean<Pod>>>(req)
            .await
        {
            Ok(l) => Completion::PodList(l.items.into_iter().map(|l| l.0).collect()),
            Err(e) => classify(e),
        },
        Answer::Event => client
            .request::<serde::de::IgnoredAny>(req)
            .await
            .map_or_else(classify, |_| Completion::Event(Event::default())),
    }
}

/// One-line request description for `BONSAI_VC_TRACE=1` debugging.
fn describe_request(r: &Request) -> String {
    match r {
        Request::UpdateVolume(v) | Request::UpdateVolumeStatus(v) => format!(
            "{} {} rv={}",
            r.verb(),
            v.metadata.name.as_deref().unwrap_or(""),
            v.metadata.resource_version.as_deref().unwrap_or("")
        ),
        Request::UpdateClaim(c) | Request::UpdateClaimStatus(c) => format!(
            "{} {}/{} rv={}",
            r.verb(),
            c.metadata.namespace.as_deref().unwrap_or(""),
            c.metadata.name.as_deref().unwrap_or(""),
            c.metadata.resource_version.as_deref().unwrap_or("")
        ),
        other => format!("{} {:?}", other.verb(), other)
            .chars()
            .take(200)
            .collect(),
    }
}

fn describe_completion(c: &Completion) -> String {
    match c {
        Completion::Volume(v) => format!(
            "pv rv={}",
            v.metadata.resource_version.as_deref().unwrap_or("")
        ),
        Completion::Claim(v) => format!(
            "pvc rv={}",
            v.metadata.resource_version.as_deref().unwrap_or("")
        ),
        Completion::ClaimRead(c) => format!("read {}", c.is_some()),
        Completion::PodList(p) => format!("pods {}", p.len()),
        Completion::Event(_) => "event".into(),
        other => format!("{other:?}"),
    }
}
