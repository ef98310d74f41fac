//! kwok-like fake nodes: Ready Node objects, kept alive by Lease renewals and Ready
//! heartbeats, whose pods are marked Running without any process and whose deleted pods are
//! finished at once. `bonsai up --fake-nodes N` and the scheduler's end-to-end tests and
//! benchmark use them to get nodes without kubelets.
//!
//! Every write names the resourceVersion it read; a 409 just means "read again next round".

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Namespace, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Pod,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::Error;
use apiserver::api::lean::{Lean, Parts};
use apiserver::api::request::{collection, with_verb};

/// Field manager / user agent of fake-node writes.
pub const FIELD_MANAGER: &str = "bonsai-fake-nodes";
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// What to register.
#[derive(Debug, Clone)]
pub struct FakeNodesConfig {
    /// Number of nodes.
    pub count: usize,
    /// Names are `{prefix}1` … `{prefix}{count}` ("fake-"; tests use "node-").
    pub prefix: String,
    /// CPU capacity and allocatable ("4").
    pub cpu: String,
    /// Memory capacity and allocatable ("8Gi").
    pub memory: String,
    /// Pod capacity (110).
    pub pods: u32,
    /// Extra labels on every node.
    pub labels: BTreeMap<String, String>,
    /// Lease duration (40 s, as the kubelet).
    pub lease_duration_seconds: i32,
    /// How often Leases are renewed (10 s: a quarter of the duration).
    pub lease_renew_interval: Duration,
    /// How often the Ready condition's heartbeat is refreshed.
    pub status_interval: Duration,
    /// Concurrent API requests (registration, renewals, pod updates).
    pub concurrency: usize,
}

impl Default for FakeNodesConfig {
    fn default() -> Self {
        FakeNodesConfig {
            count: 1,
            prefix: "fake-".into(),
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: 110,
            labels: BTreeMap::new(),
            lease_duration_seconds: 40,
            lease_renew_interval: Duration::from_secs(10),
            status_interval: Duration::from_secs(60),
            concurrency: 64,
        }
    }
}

impl FakeNodesConfig {
    /// The node names, in order.
    pub fn names(&self) -> Vec<String> {
        (1..=self.count)
            .map(|i| format!("{}{i}", self.prefix))
            .collect()
    }
}

/// A client for the fake nodes (user agent `bonsai-fake-nodes`).
pub fn client_for(url: &str, token: &str) -> Result<Client, Error> {
    Client::try_from(crate::driver::client_config_as(url, token, FIELD_MANAGER)?)
        .map_err(|e| Error::Client(e.to_string()))
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn conditions(now: &Time, transition: &Time) -> Vec<NodeCondition> {
    let c = |type_: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(transition.clone()),
    };
    vec![
        c(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        c(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        c(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
    ]
}

fn node_object(cfg: &FakeNodesConfig, name: &str) -> Node {
    let mut labels = cfg.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), name.into());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), arch().into());
    labels.insert("beta.kubernetes.io/os".into(), "linux".into());
    labels.insert("beta.kubernetes.io/arch".into(), arch().into());
    labels.insert("type".into(), "fake".into());
    let resources: BTreeMap<String, Quantity> = [
        ("cpu".to_string(), Quantity(cfg.cpu.clone())),
        ("memory".to_string(), Quantity(cfg.memory.clone())),
        ("pods".to_string(), Quantity(cfg.pods.to_string())),
        ("ephemeral-storage".to_string(), Quantity("100Gi".into())),
    ]
    .into();
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            annotations: Some(
                [
                    ("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string()),
                    ("kwok.x-k8s.io/node".to_string(), "fake".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(node_status(cfg, name, &resources)),
    }
}

fn node_status(
    _cfg: &FakeNodesConfig,
    name: &str,
    resources: &BTreeMap<String, Quantity>,
) -> NodeStatus {
    let now = now_time();
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources.clone()),
        conditions: Some(conditions(&now, &now)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: "127.0.0.1".into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: name.into(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: arch().into(),
            boot_id: String::new(),
            container_runtime_version: "fake://bonsai".into(),
            kernel_version: "fake".into(),
            kube_proxy_version: String::new(),
            kubelet_version: "v1.33.0-bonsai".into(),
            machine_id: name.into(),
            operating_system: "linux".into(),
            os_image: "bonsai fake node".into(),
            system_uuid: name.into(),
            swap: None,
        }),
        phase: None,
        ..Default::default()
    }
}

fn completion_is(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Registers the node (or takes over an existing one) and returns its uid.
async fn register(client: &Client, cfg: &FakeNodesConfig, name: &str) -> Result<String, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let wanted = node_object(cfg, name);
    let created = match nodes.create(&pp, &wanted).await {
        Ok(n) => n,
        Err(e) if completion_is(&e, 409) => nodes.get(name).await?,
        Err(e) => return Err(e.into()),
    };
    // The status subresource owns status; write it there with the revision just read.
    let patch = json!({
        "metadata": { "resourceVersion": created.metadata.resource_version },
        "status": wanted.status,
    });
    let pparams = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match nodes
        .patch_status(name, &pparams, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if completion_is(&e, 409) => {} // someone else touched it: the heartbeat redoes it
        Err(e) => return Err(e.into()),
    }
    Ok(created.metadata.uid.unwrap_or_default())
}

async fn ensure_lease_namespace(client: &Client) -> Result<(), Error> {
    let ns: Api<Namespace> = Api::all(client.clone());
    let obj = Namespace {
        metadata: ObjectMeta {
            name: Some(LEASE_NAMESPACE.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match ns
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &obj,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if completion_is(&e, 409) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates or renews the node's Lease. Returns the Lease as stored.
async fn renew_lease(
    client: &Client,
    cfg: &FakeNodesConfig,
    name: &str,
    uid: &str,
    last: Option<Lease>,
) -> Result<Lease, Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let current = match last {
        Some(l) => Some(l),
        None => match leases.get_opt(name).await? {
            Some(l) => Some(l),
            None => None,
        },
    };
    match current {
        Some(mut l) => {
            let spec = l.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(name.into());
            spec.lease_duration_seconds = Some(cfg.lease_duration_seconds);
            spec.renew_time = Some(now);
            match leases.replace(name, &pp, &l).await {
                Ok(l) => Ok(l),
                // Stale revision: read it again and renew with that.
                Err(e) if completion_is(&e, 409) => {
                    let mut fresh = leases.get(name).await?;
                    let spec = fresh.spec.get_or_insert_with(LeaseSpec::default);
                    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
                    Ok(leases.replace(name, &pp, &fresh).await?)
                }
                Err(e) => Err(e.into()),
            }
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: name.into(),
                        uid: uid.into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.into()),
                    lease_duration_seconds: Some(cfg.lease_duration_seconds),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            match leases.create(&pp, &lease).await {
                Ok(l) => Ok(l),
                Err(e) if completion_is(&e, 404) => {
                    ensure_lease_namespace(client).await?;
                    Ok(leases.create(&pp, &lease).await?)
                }
                Err(e) if completion_is(&e, 409) => Ok(leases.get(name).await?),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Refreshes the Ready heartbeat with the node's current revision.
async fn heartbeat(client: &Client, name: &str) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get(name).await?;
    let now = now_time();
    let transition = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    let patch = json!({
        "metadata": { "resourceVersion": node.metadata.resource_version },
        "status": { "conditions": conditions(&now, &transition) },
    });
    let pparams = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match nodes
        .patch_status(name, &pparams, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if completion_is(&e, 409) => Ok(()), // next round
        Err(e) => Err(e.into()),
    }
}

/// What a fake node reads of a pod — as a kubelet's status manager would need it: its
/// identity, node, containers' names and images, phase. The watch decodes only these (a
/// `Lean<NodePod>`), not the whole spec and status of every pod of the cluster.
#[derive(Clone, Debug, Default)]
struct NodePod {
    metadata: ObjectMeta,
    spec: Option<NodePodSpec>,
    status: Option<NodePodStatus>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodePodSpec {
    node_name: Option<String>,
    #[serde(default)]
    containers: Vec<NodeContainer>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
struct NodeContainer {
    name: String,
    image: Option<String>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
struct NodePodStatus {
    phase: Option<String>,
}

impl Parts for NodePod {
    type Spec = NodePodSpec;
    type Status = NodePodStatus;
    fn from_parts(
        metadata: ObjectMeta,
        spec: Option<NodePodSpec>,
        status: Option<NodePodStatus>,
    ) -> Self {
        NodePod {
            metadata,
            spec,
            status,
        }
    }
}

impl Resource for NodePod {
    type DynamicType = ();
    type Scope = <Pod as Resource>::Scope;

    fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
        Pod::kind(dt)
    }
    fn group(dt: &()) -> std::borrow::Cow<'_, str> {
        Pod::group(dt)
    }
    fn version(dt: &()) -> std::borrow::Cow<'_, str> {
        Pod::version(dt)
    }
    fn api_version(dt: &()) -> std::borrow::Cow<'_, str> {
        Pod::api_version(dt)
    }
    fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
        Pod::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn is_running(pod: &NodePod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The status a started pod reports: Running, Ready, host network IP 127.0.0.1.
fn running_status(pod: &NodePod) -> serde_json::Value {
    let now = now_time();
    let cond = |t: &str| json!({ "type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now });
    let containers: Vec<serde_json::Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
        .iter()
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            json!({
                "name": c.name,
                "image": image,
                "imageID": format!("fake://{image}"),
                "containerID": format!("fake://{}/{}", pod.metadata.uid.as_deref().unwrap_or(""), c.name),
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": { "running": { "startedAt": now } },
            })
        })
        .collect();
    json!({
        "phase": "Running",
        "conditions": [
            cond("PodReadyToStartContainers"),
            cond("Initialized"),
            cond("Ready"),
            cond("ContainersReady"),
            cond("PodScheduled"),
        ],
        "hostIP": "127.0.0.1",
        "hostIPs": [{ "ip": "127.0.0.1" }],
        "podIP": "127.0.0.1",
        "podIPs": [{ "ip": "127.0.0.1" }],
        "startTime": now,
        "containerStatuses": containers,
    })
}

/// A pod's write, ready to send.
struct PodWrite {
    name: String,
    /// Finishing a deletion (else: marking the pod Running).
    deleting: bool,
    request: Result<hyper::Request<Vec<u8>>, String>,
}

/// The write that syncs a pod bound to a fake node, if any: its deletion finished at once, or
/// its status made Running. Built in the watch loop so that only the sending is spawned (a
/// task the size of the client's future, not of one future per kind of write and the pod).
fn pod_write(pod: &NodePod) -> Option<PodWrite> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods = collection::<Pod>(Some(&ns));
    let request = if pod.metadata.deletion_timestamp.is_some() {
        // No process to stop: finish the deletion at once, for this very pod (uid).
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        with_verb(pods.delete(&name, &dp), "delete")
    } else {
        if is_running(pod) {
            return None;
        }
        let patch = json!({
            "metadata": { "resourceVersion": pod.metadata.resource_version },
            "status": running_status(pod),
        });
        let pparams = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        with_verb(
            pods.patch_subresource("status", &name, &pparams, &Patch::Merge(&patch)),
            "patch",
        )
    };
    Some(PodWrite {
        name,
        deleting: pod.metadata.deletion_timestamp.is_some(),
        request,
    })
}

/// Sends a pod's write. The answer (the whole pod, or its Status) is not read: checked to be
/// JSON and skipped, not decoded. A 409 or 404 means a newer pod is on its way through the
/// watch (it is synced then) or the pod is gone.
async fn send_pod_write(client: Client, write: PodWrite) {
    let PodWrite {
        name,
        deleting,
        request,
    } = write;
    let req = match request {
        Ok(req) => req,
        Err(e) => {
            tracing::warn!(pod = %name, error = %e, "fake node: cannot build the pod's write");
            return;
        }
    };
    match client.request::<serde::de::IgnoredAny>(req).await {
        Ok(_) => {}
        Err(e) if completion_is(&e, 409) || completion_is(&e, 404) => {}
        Err(e) if deleting => {
            tracing::warn!(pod = %name, error = %e, "fake node: finishing deletion failed")
        }
        Err(e) => tracing::warn!(pod = %name, error = %e, "fake node: marking pod Running failed"),
    }
}

/// Registers the nodes, then keeps them alive and runs their pods until `shutdown`.
pub async fn run(
    client: Client,
    config: FakeNodesConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let uids = register_all(&client, &config).await?;
    serve(client, config, uids, shutdown).await
}

/// Registers every node (bounded concurrency); returns name → uid. Benchmarks call this and
/// `serve` separately, to know when the nodes exist.
pub async fn register_all(
    client: &Client,
    config: &FakeNodesConfig,
) -> Result<BTreeMap<String, String>, Error> {
    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut uids: BTreeMap<String, String> = BTreeMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for name in config.names() {
        let (client, cfg, limit) = (client.clone(), config.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let uid = register(&client, &cfg, &name).await?;
            Ok::<_, Error>((name, uid))
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (name, uid) =
            r.map_err(|e| Error::Client(format!("fake node registration task: {e}")))??;
        uids.insert(name, uid);
    }
    tracing::info!(count = uids.len(), prefix = %config.prefix, "fake nodes registered");
    Ok(uids)
}

/// Keeps registered nodes alive (Leases, Ready heartbeats) and runs their pods until
/// `shutdown`.
pub async fn serve(
    client: Client,
    config: FakeNodesConfig,
    uids: BTreeMap<String, String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let ours: Arc<BTreeSet<String>> = Arc::new(uids.keys().cloned().collect());
    let limit = Arc::new(Semaphore::new(config.concurrency.max(1)));

    // Pods bound to our nodes: Running at once, deletions finished at once.
    let pod_task = {
        let (client, ours, limit) = (client.clone(), ours.clone(), limit.clone());
        tokio::spawn(async move {
            // Only the few fields a fake node reads are decoded (`NodePod`).
            let api: Api<Lean<NodePod>> = Api::all(client.clone());
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = stream.next().await {
                let pod = match ev {
                    Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p.0,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "fake nodes: pod watch failed; retrying");
                        continue;
                    }
                };
                let on_ours = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some_and(|n| ours.contains(n));
                if !on_ours || (is_running(&pod) && pod.metadata.deletion_timestamp.is_none()) {
                    continue;
                }
                if matches!(
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded") | Some("Failed")
                ) && pod.metadata.deletion_timestamp.is_none()
                {
                    continue;
                }
                let Some(write) = pod_write(&pod) else {
                    continue;
                };
                let (client, limit) = (client.clone(), limit.clone());
                tokio::spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    send_pod_write(client, write).await;
                });
            }
        })
    };

    // Leases and heartbeats.
    let keepalive = {
        let (client, cfg, limit) = (client.clone(), config.clone(), limit.clone());
        tokio::spawn(async move {
            let mut leases: BTreeMap<String, Lease> = BTreeMap::new();
            let mut lease_tick = tokio::time::interval(cfg.lease_renew_interval);
            let mut status_tick = tokio::time::interval(cfg.status_interval);
            status_tick.tick().await; // registration just wrote the status
            loop {
                tokio::select! {
                    biased;
                    _ = lease_tick.tick() => {
                        let mut set = tokio::task::JoinSet::new();
                        for (name, uid) in uids.iter() {
                            let (client, cfg, limit, name, uid) = (client.clone(), cfg.clone(), limit.clone(), name.clone(), uid.clone());
                            let last = leases.remove(&name);
                            set.spawn(async move {
                                let _permit = limit.acquire_owned().await;
                                let r = renew_lease(&client, &cfg, &name, &uid, last).await;
                                (name, r)
                            });
                        }
                        while let Some(Ok((name, r))) = set.join_next().await {
                            match r {
                                Ok(l) => { leases.insert(name, l); }
                                Err(e) => tracing::warn!(node = %name, error = %e, "fake node: lease renewal failed"),
                            }
                        }
                    }
                    _ = status_tick.tick() => {
                        let mut set = tokio::task::JoinSet::new();
                        for name in uids.keys() {
                            let (client, limit, name) = (client.clone(), limit.clone(), name.clone());
                            set.spawn(async move {
                                let _permit = limit.acquire_owned().await;
                                if let Err(e) = heartbeat(&client, &name).await {
                                    tracing::warn!(node = %name, error = %e, "fake node: heartbeat failed");
                                }
                            });
                        }
                        while set.join_next().await.is_some() {}
                    }
                }
            }
        })
    };

    shutdown.await;
    pod_task.abort();
    keepalive.abort();
    Ok(())
}
