//! `bonsai explain pod/NAME [-n NS]`: why a pod is (or was) Pending. For every node, the first
//! scheduler filter that rejects the pod and its reason, in the scheduler's own words — computed
//! by running the scheduler core's PreFilter and Filter plugins, in the scheduler's order, over
//! the current state read from the running API server.

use std::io::Write as _;

use anyhow::{bail, Context};
use clap::Args;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::{CSIStorageCapacity, StorageClass};
use scheduler::core::framework::{names, NodeInfo, Status};
use scheduler::core::plugins::{inter_pod_affinity, node, resources_fit, volume_binding};
use scheduler::core::{CoreConfig, Millis, Scheduler, WatchEvent};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::history::http_get;
use crate::datadir::DataDir;
use crate::state::{self, Running};
use crate::DataDirArg;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The pod: pod/NAME.
    object: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    dir: DataDirArg,
}

fn list<T: DeserializeOwned>(port: u16, token: &str, path: &str) -> anyhow::Result<Vec<T>> {
    let (code, body) =
        http_get(port, token, path).with_context(|| format!("GET {path} on 127.0.0.1:{port}"))?;
    if code != 200 {
        bail!("GET {path}: the API server answered {code}: {body}");
    }
    let v: Value = serde_json::from_str(&body).with_context(|| format!("decoding {path}"))?;
    v.get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|i| serde_json::from_value(i.clone()).map_err(anyhow::Error::from))
                .collect()
        })
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// The first failing filter on `info`, or None when the pod fits (the scheduler's order:
/// NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodeResourcesFit,
/// VolumeBinding, InterPodAffinity).
fn first_failure(
    s: &Scheduler,
    pod: &Pod,
    claims: Option<&volume_binding::PodVolumeClaims>,
    ipa: Option<&inter_pod_affinity::InterPodAffinityState>,
    info: &NodeInfo,
) -> Option<(&'static str, Status)> {
    let checks: [(&'static str, Box<dyn Fn() -> Status + '_>); 5] = [
        (
            names::NODE_UNSCHEDULABLE,
            Box::new(|| node::node_unschedulable(pod, info)),
        ),
        (names::NODE_NAME, Box::new(|| node::node_name(pod, info))),
        (
            names::TAINT_TOLERATION,
            Box::new(|| node::taint_toleration(pod, info)),
        ),
        (
            names::NODE_AFFINITY,
            Box::new(|| node::node_affinity(pod, info)),
        ),
        (
            names::NODE_RESOURCES_FIT,
            Box::new(|| resources_fit::filter(&resources_fit::pod_requests(pod), info)),
        ),
    ];
    for (plugin, check) in checks {
        let st = check();
        if !st.is_success() {
            return Some((plugin, st));
        }
    }
    if let Some(c) = claims {
        let (st, _) = volume_binding::filter(s.view(), c, info);
        if !st.is_success() {
            return Some((names::VOLUME_BINDING, st));
        }
    }
    if let Some(st) = ipa {
        let st = inter_pod_affinity::filter(st, info);
        if !st.is_success() {
            return Some((names::INTER_POD_AFFINITY, st));
        }
    }
    None
}

fn reasons(st: &Status) -> String {
    match st {
        Status::Error(e) => format!("error: {e}"),
        other => other.reasons().join(", "),
    }
}

pub fn run(args: ExplainArgs) -> anyhow::Result<i32> {
    let name = match args.object.split_once('/') {
        Some(("pod" | "pods" | "po", n)) if !n.is_empty() => n.to_string(),
        _ => bail!("expected pod/NAME, found {:?}", args.object),
    };
    let dir = DataDir::new(&args.dir.data_dir)?;
    let port = match state::inspect(&dir)? {
        Running::Yes { state: Some(st), .. } => st.api_port,
        Running::Yes { state: None, .. } => bail!("the cluster is still starting; try again in a moment"),
        Running::No { .. } => bail!(
            "no cluster runs in {} (explain reads the current state from the API server; start it with `bonsai up`)",
            dir.root.display()
        ),
    };
    let token = dir.token()?;
    let t = Millis(crate::state::now_ms());
    let mut s = Scheduler::new(CoreConfig::default());
    s.handle_node(
        t,
        WatchEvent::Restarted(list::<Node>(port, &token, "/api/v1/nodes")?),
    );
    s.handle_persistent_volume(
        t,
        WatchEvent::Restarted(list::<PersistentVolume>(
            port,
            &token,
            "/api/v1/persistentvolumes",
        )?),
    );
    s.handle_persistent_volume_claim(
        t,
        WatchEvent::Restarted(list::<PersistentVolumeClaim>(
            port,
            &token,
            "/api/v1/persistentvolumeclaims",
        )?),
    );
    s.handle_storage_class(
        t,
        WatchEvent::Restarted(list::<StorageClass>(
            port,
            &token,
            "/apis/storage.k8s.io/v1/storageclasses",
        )?),
    );
    let caps =
        list::<CSIStorageCapacity>(port, &token, "/apis/storage.k8s.io/v1/csistoragecapacities")
            .unwrap_or_default();
    s.handle_csi_storage_capacity(t, WatchEvent::Restarted(caps));
    s.handle_pod(
        t,
        WatchEvent::Restarted(list::<Pod>(port, &token, "/api/v1/pods")?),
    );

    let key = format!("{}/{name}", args.namespace);
    let mut out = std::io::stdout().lock();
    let Some(pod) = s.view().pods.get(&key).cloned() else {
        bail!(
            "pod {name:?} not found in namespace {:?} (or it has finished)",
            args.namespace
        );
    };
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|sp| sp.node_name.clone())
        .unwrap_or_default();
    if !node_name.is_empty() {
        writeln!(
            out,
            "pod/{name} is scheduled on {node_name}; this is how every node looks for it now:"
        )?;
    } else {
        writeln!(
            out,
            "pod/{name} is Pending; for each node, the first scheduler filter that rejects it:"
        )?;
    }
    if let Some(c) = pod
        .status
        .as_ref()
        .and_then(|st| st.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        })
    {
        writeln!(
            out,
            "  last scheduling attempt: {}: {}",
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or("")
        )?;
    }
    // PreFilter: a rejection here applies to every node.
    let (st, claims) = volume_binding::pre_filter(s.view(), &pod);
    if !st.is_success() {
        writeln!(
            out,
            "  every node: {} (PreFilter): {}",
            names::VOLUME_BINDING,
            reasons(&st)
        )?;
        return Ok(0);
    }
    let (st, ipa) = inter_pod_affinity::pre_filter(s.view(), &pod);
    if !st.is_success() {
        writeln!(
            out,
            "  every node: {} (PreFilter): {}",
            names::INTER_POD_AFFINITY,
            reasons(&st)
        )?;
        return Ok(0);
    }
    let width = s
        .view()
        .node_order
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(4);
    if s.view().node_order.is_empty() {
        writeln!(out, "  no nodes available to schedule pods")?;
    }
    for n in &s.view().node_order {
        let Some(info) = s.view().nodes.get(n) else {
            continue;
        };
        match first_failure(&s, &pod, claims.as_ref(), ipa.as_ref(), info) {
            None => writeln!(out, "  {n:<width$}  fits")?,
            Some((plugin, st)) => writeln!(out, "  {n:<width$}  {plugin}: {}", reasons(&st))?,
        }
    }
    Ok(0)
}
