//! Volume resolution and mount planning (volume-binding reference §9).
//!
//! [`plan_volumes`] turns a pod and a snapshot of what the kubelet knows ([`ClusterView`]) into
//! either a [`VolumePlan`] (the [`MountOp`]s to run, and where each volume then lives on the node)
//! or a [`NotReady`] value carrying Kubernetes' own message. Not being ready is an expected
//! outcome — the pod stays ContainerCreating and the driver retries — never an error.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, PersistentVolume, PersistentVolumeClaim, Pod, Volume,
};

use super::MountOp;

/// The PVC finalizer whose presence lets a pod start on a claim that is being deleted.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// What a path on the node is, as the driver observed it before planning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    Directory,
    BlockDevice,
    Other,
}

/// Answers "what is at this node path" for the planner; the driver implements it with `stat`,
/// tests with a map.
pub trait HostPaths {
    fn kind(&self, path: &Path) -> PathKind;
}

impl HostPaths for BTreeMap<PathBuf, PathKind> {
    fn kind(&self, path: &Path) -> PathKind {
        self.get(path).copied().unwrap_or(PathKind::Missing)
    }
}

/// What the kubelet knows when it plans: its node's labels, the claims and volumes it has seen
/// (claims keyed `namespace/name`), and the node's filesystem.
pub struct ClusterView<'a> {
    pub node_labels: &'a BTreeMap<String, String>,
    pub pvcs: &'a BTreeMap<String, PersistentVolumeClaim>,
    pub pvs: &'a BTreeMap<String, PersistentVolume>,
    pub paths: &'a dyn HostPaths,
}

/// Where the kubelet keeps per-pod state on the node: `<root>/<podUID>/volumes/<plugin>/<name>`,
/// as the real kubelet's `/var/lib/kubelet/pods`.
#[derive(Clone, Debug)]
pub struct PodDirs {
    pub root: PathBuf,
}

impl PodDirs {
    pub fn pod(&self, uid: &str) -> PathBuf {
        self.root.join(uid)
    }
    pub fn volume(&self, uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod(uid).join("volumes").join(plugin).join(name)
    }
}

/// A volume ready for the runtime: its node path and whether the pod may write it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedVolume {
    pub host_path: PathBuf,
    pub read_only: bool,
}

/// The outcome of planning a pod's volumes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumePlan {
    /// Operations that set the volumes up, in order. Idempotent: the mounter skips existing
    /// mount points.
    pub setup: Vec<MountOp>,
    /// Operations that undo `setup` on pod deletion: unmount, then remove the mount points and
    /// the pod's own directories. Never touches a PersistentVolume's data.
    pub teardown: Vec<MountOp>,
    /// Pod volume name → where it is on the node.
    pub volumes: BTreeMap<String, PreparedVolume>,
}

/// Why a pod's volumes cannot be mounted yet. Expected; retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// The desired-state populator could not resolve the volume (claim missing, unbound…).
    /// `message` is the populator's error (`error processing PVC default/c: PVC is not bound`).
    Unresolved { volume: String, message: String },
    /// A mount attempt for a resolved volume failed; `message` is the FailedMount event text.
    MountFailed { volume: String, message: String },
}

impl NotReady {
    pub fn volume(&self) -> &str {
        match self {
            NotReady::Unresolved { volume, .. } | NotReady::MountFailed { volume, .. } => volume,
        }
    }

    /// The FailedMount event message, as the kubelet words it.
    pub fn event_message(&self, pod: &Pod) -> String {
        match self {
            NotReady::MountFailed { message, .. } => message.clone(),
            NotReady::Unresolved { volume, message } => {
                let mut all: Vec<String> = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.volumes.as_ref())
                    .map(|v| v.iter().map(|v| v.name.clone()).collect())
                    .unwrap_or_default();
                all.sort();
                format!(
                    "Unable to attach or mount volumes: unmounted volumes=[{}], unattached volumes=[{}], failed to process volumes=[{}]: {}",
                    all.join(" "),
                    all.join(" "),
                    volume,
                    message
                )
            }
        }
    }
}

/// A path the kubelet will bind from the node: absolute and without `..` (issue 7, security).
pub fn check_local_path(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("path \"{path}\" is not absolute"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(format!("path \"{path}\" must not contain '..'"));
    }
    Ok(())
}

/// Parses a Kubernetes quantity (`1Gi`, `512Mi`, `5G`, `100k`, `1e9`, `1.5Gi`) into bytes.
pub fn parse_quantity(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    if n < 0.0 {
        return None;
    }
    let mult: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some((n * mult).ceil() as u64)
}

fn requirement_matches(r: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let v = labels.get(&r.key);
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => v.is_some_and(|v| values.contains(v)),
        "NotIn" => v.is_none_or(|v| !values.contains(v)),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(w)) = (v.and_then(|v| v.parse::<i64>().ok()), values.first()) else {
                return false;
            };
            let Ok(w) = w.parse::<i64>() else {
                return false;
            };
            if r.operator == "Gt" {
                v > w
            } else {
                v < w
            }
        }
        _ => false,
    }
}

/// Whether a PV's required node affinity admits a node with `labels` (terms are ORed, the
/// expressions of one term ANDed; matchFields on `metadata.name` are not label-based and are
/// matched against the hostname label, which equals the node name in bonsai).
pub fn pv_node_affinity_matches(pv: &PersistentVolume, labels: &BTreeMap<String, String>) -> bool {
    let Some(req) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    req.node_selector_terms.iter().any(|t| {
        let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
        let fields = t.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        let mut name_labels = BTreeMap::new();
        if let Some(h) = labels.get("kubernetes.io/hostname") {
            name_labels.insert("metadata.name".to_string(), h.clone());
        }
        exprs.iter().all(|r| requirement_matches(r, labels))
            && fields.iter().all(|r| requirement_matches(r, &name_labels))
    })
}

const LOCAL_PLUGIN: &str = "kubernetes.io~local-volume";
const EMPTY_DIR_PLUGIN: &str = "kubernetes.io~empty-dir";

/// Resolves a claim to its bound PV exactly as the kubelet's desired-state populator does; the
/// error strings are upstream's.
fn resolve_claim<'v>(
    ns: &str,
    claim: &str,
    view: &'v ClusterView<'_>,
) -> Result<&'v PersistentVolume, String> {
    let wrap = |m: String| format!("error processing PVC {ns}/{claim}: {m}");
    let pvc = view.pvcs.get(&format!("{ns}/{claim}")).ok_or_else(|| {
        wrap(format!(
            "failed to fetch PVC from API server: persistentvolumeclaims \"{claim}\" not found"
        ))
    })?;
    let protected = pvc
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == PVC_PROTECTION_FINALIZER));
    if pvc.metadata.deletion_timestamp.is_some() && !protected {
        return Err(wrap("PVC is being deleted".into()));
    }
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase != Some("Bound") {
        return Err(wrap("PVC is not bound".into()));
    }
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if volume_name.is_empty() {
        return Err(wrap("PVC has empty pvc.Spec.VolumeName".into()));
    }
    let pv = view.pvs.get(volume_name).ok_or_else(|| {
        wrap(format!(
            "failed to fetch PV {volume_name} from API server: persistentvolumes \"{volume_name}\" not found"
        ))
    })?;
    let claim_uid = pvc.metadata.uid.as_deref().unwrap_or("");
    match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        None => Err(wrap(format!(
            "found PV object {volume_name} but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim"
        ))),
        Some(r) if r.uid.as_deref().unwrap_or("") != claim_uid => Err(wrap(format!(
            "found PV object {volume_name} but its pv.Spec.ClaimRef.UID {} does not point to claim.UID {}",
            r.uid.as_deref().unwrap_or(""),
            claim_uid
        ))),
        Some(_) => Ok(pv),
    }
}

fn plan_one(
    pod: &Pod,
    vol: &Volume,
    uid: &str,
    view: &ClusterView<'_>,
    dirs: &PodDirs,
    plan: &mut VolumePlan,
) -> Result<(), NotReady> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = vol.name.clone();
    let failed = |message: String| NotReady::MountFailed {
        volume: name.clone(),
        message,
    };
    if let Some(src) = &vol.persistent_volume_claim {
        let pv =
            resolve_claim(ns, &src.claim_name, view).map_err(|message| NotReady::Unresolved {
                volume: name.clone(),
                message,
            })?;
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        if !pv_node_affinity_matches(pv, view.node_labels) {
            return Err(failed(format!(
                "MountVolume.NodeAffinity check failed for volume \"{pv_name}\" : no matching NodeSelectorTerms"
            )));
        }
        let spec = pv.spec.as_ref().expect("a bound PV has a spec");
        let source = if let Some(l) = &spec.local {
            l.path.clone()
        } else if let Some(h) = &spec.host_path {
            h.path.clone()
        } else {
            return Err(failed(format!(
                "MountVolume.NewMounter initialization failed for volume \"{pv_name}\" : bonsai mounts only local and hostPath PersistentVolumes"
            )));
        };
        if let Err(e) = check_local_path(&source) {
            return Err(failed(format!(
                "MountVolume.NewMounter initialization failed for volume \"{pv_name}\" : {e}"
            )));
        }
        match view.paths.kind(Path::new(&source)) {
            PathKind::Directory => {}
            PathKind::Missing => {
                return Err(failed(format!(
                    "MountVolume.NewMounter initialization failed for volume \"{pv_name}\" : path \"{source}\" does not exist"
                )))
            }
            PathKind::BlockDevice => {
                return Err(failed(format!(
                    "MountVolume.NewMounter initialization failed for volume \"{pv_name}\" : block-device local volumes are not supported by bonsai"
                )))
            }
            PathKind::Other => {
                return Err(failed(format!(
                    "MountVolume.NewMounter initialization failed for volume \"{pv_name}\" : only directory and block device are supported"
                )))
            }
        }
        let read_only = src.read_only.unwrap_or(false);
        let target = dirs.volume(uid, LOCAL_PLUGIN, &pv_name);
        plan.setup.push(MountOp::CreateDir {
            path: target.clone(),
        });
        plan.setup.push(MountOp::BindMount {
            source: PathBuf::from(&source),
            target: target.clone(),
            read_only,
        });
        plan.teardown.push(MountOp::Unmount {
            target: target.clone(),
        });
        plan.teardown.push(MountOp::RemoveDir {
            path: target.clone(),
        });
        plan.volumes.insert(
            name,
            PreparedVolume {
                host_path: target,
                read_only,
            },
        );
        return Ok(());
    }
    if let Some(ed) = &vol.empty_dir {
        let target = dirs.volume(uid, EMPTY_DIR_PLUGIN, &name);
        plan.setup.push(MountOp::CreateDir {
            path: target.clone(),
        });
        if ed.medium.as_deref() == Some("Memory") {
            let size = ed.size_limit.as_ref().and_then(|q| parse_quantity(&q.0));
            plan.setup.push(MountOp::MountTmpfs {
                target: target.clone(),
                size_bytes: size,
            });
            plan.teardown.push(MountOp::Unmount {
                target: target.clone(),
            });
            plan.teardown.push(MountOp::RemoveDir {
                path: target.clone(),
            });
        } else {
            // An emptyDir on disk is the pod's own scratch space: it goes with the pod.
            plan.teardown.push(MountOp::RemoveTree {
                path: target.clone(),
            });
        }
        plan.volumes.insert(
            name,
            PreparedVolume {
                host_path: target,
                read_only: false,
            },
        );
        return Ok(());
    }
    if let Some(hp) = &vol.host_path {
        if let Err(e) = check_local_path(&hp.path) {
            return Err(failed(format!(
                "MountVolume.SetUp failed for volume \"{name}\" : {e}"
            )));
        }
        let p = PathBuf::from(&hp.path);
        let kind = view.paths.kind(&p);
        match hp.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" if kind == PathKind::Missing => {
                plan.setup.push(MountOp::CreateDir { path: p.clone() })
            }
            "Directory" if kind != PathKind::Directory => {
                return Err(failed(format!(
                    "MountVolume.SetUp failed for volume \"{name}\" : hostPath type check failed: {} is not a directory",
                    hp.path
                )))
            }
            "" | "DirectoryOrCreate" | "Directory" if kind == PathKind::Missing => {
                // Kubernetes' runtime would create it; we do the same for directories.
                plan.setup.push(MountOp::CreateDir { path: p.clone() })
            }
            _ => {}
        }
        plan.volumes.insert(
            name,
            PreparedVolume {
                host_path: p,
                read_only: false,
            },
        );
        return Ok(());
    }
    Err(failed(format!(
        "MountVolume.SetUp failed for volume \"{name}\" : volume type not supported by bonsai (persistentVolumeClaim, emptyDir and hostPath are)"
    )))
}

/// Plans every volume of `pod`. The first volume that is not ready stops the plan, with
/// Kubernetes' message for it.
pub fn plan_volumes(
    pod: &Pod,
    view: &ClusterView<'_>,
    dirs: &PodDirs,
) -> Result<VolumePlan, NotReady> {
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let mut plan = VolumePlan::default();
    let vols = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    for v in vols {
        plan_one(pod, v, uid, view, dirs, &mut plan)?;
    }
    plan.teardown.push(MountOp::RemoveTree {
        path: dirs.pod(uid),
    });
    Ok(plan)
}

/// Teardown for a pod whose volumes were never fully planned (e.g. deleted while Pending):
/// whatever mount points its directory may hold are unmounted first, then the tree is removed.
pub fn teardown_unknown(uid: &str, dirs: &PodDirs, mounted_under_pod: &[PathBuf]) -> Vec<MountOp> {
    let mut ops = Vec::new();
    for m in mounted_under_pod {
        ops.push(MountOp::Unmount { target: m.clone() });
        ops.push(MountOp::RemoveDir { path: m.clone() });
    }
    ops.push(MountOp::RemoveTree {
        path: dirs.pod(uid),
    });
    ops
}

/// One container bind mount: `mountPath` inside the container, from `source` on the node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The container's mounts from its volumeMounts (subPath honoured), in spec order.
pub fn container_mounts(
    container: &k8s_openapi::api::core::v1::Container,
    plan: &VolumePlan,
) -> Result<Vec<ContainerMount>, String> {
    let mut out = Vec::new();
    for vm in container.volume_mounts.as_deref().unwrap_or(&[]) {
        let Some(v) = plan.volumes.get(&vm.name) else {
            return Err(format!(
                "volumeMount \"{}\" refers to an unknown volume",
                vm.name
            ));
        };
        check_local_path(&vm.mount_path).map_err(|e| format!("mountPath: {e}"))?;
        let mut source = v.host_path.clone();
        if let Some(sp) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if Path::new(sp).is_absolute()
                || Path::new(sp)
                    .components()
                    .any(|c| c == Component::ParentDir)
            {
                return Err(format!(
                    "subPath \"{sp}\" must be a relative path without '..'"
                ));
            }
            source = source.join(sp);
        }
        out.push(ContainerMount {
            source,
            target: PathBuf::from(&vm.mount_path),
            read_only: v.read_only || vm.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "example-pv-pod", "namespace": "default", "uid": "u1"},
            "spec": {
                "nodeName": "node-1",
                "volumes": [
                    {"name": "example-pv-storage", "persistentVolumeClaim": {"claimName": "example-local-claim"}},
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}
                ],
                "containers": [{"name": "c", "image": "nginx", "volumeMounts": [
                    {"name": "example-pv-storage", "mountPath": "/usr/share/nginx/html"},
                    {"name": "mem", "mountPath": "/cache", "readOnly": true}
                ]}]
            }
        }))
        .unwrap()
    }

    fn pvc(phase: &str, volume: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "example-local-claim", "namespace": "default", "uid": "claim-uid",
                         "finalizers": ["kubernetes.io/pvc-protection"]},
            "spec": {"volumeName": volume},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn pv(node: &str, claim_uid: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "example-pv"},
            "spec": {
                "local": {"path": "/mnt/disks/vol1"},
                "claimRef": {"name": "example-local-claim", "namespace": "default", "uid": claim_uid},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
            }
        }))
        .unwrap()
    }

    struct World {
        labels: BTreeMap<String, String>,
        pvcs: BTreeMap<String, PersistentVolumeClaim>,
        pvs: BTreeMap<String, PersistentVolume>,
        paths: BTreeMap<PathBuf, PathKind>,
    }

    impl World {
        fn new() -> World {
            let mut w = World {
                labels: BTreeMap::from([(
                    "kubernetes.io/hostname".to_string(),
                    "node-1".to_string(),
                )]),
                pvcs: BTreeMap::new(),
                pvs: BTreeMap::new(),
                paths: BTreeMap::from([(PathBuf::from("/mnt/disks/vol1"), PathKind::Directory)]),
            };
            w.pvcs.insert(
                "default/example-local-claim".into(),
                pvc("Bound", "example-pv"),
            );
            w.pvs.insert("example-pv".into(), pv("node-1", "claim-uid"));
            w
        }
        fn plan(&self) -> Result<VolumePlan, NotReady> {
            let view = ClusterView {
                node_labels: &self.labels,
                pvcs: &self.pvcs,
                pvs: &self.pvs,
                paths: &self.paths,
            };
            plan_volumes(
                &pod(),
                &view,
                &PodDirs {
                    root: "/k/pods".into(),
                },
            )
        }
    }

    #[test]
    fn bound_local_pv_is_bind_mounted_and_empty_dirs_planned() {
        let plan = World::new().plan().unwrap();
        let local = PathBuf::from("/k/pods/u1/volumes/kubernetes.io~local-volume/example-pv");
        let mem = PathBuf::from("/k/pods/u1/volumes/kubernetes.io~empty-dir/mem");
        assert_eq!(
            plan.setup,
            vec![
                MountOp::CreateDir {
                    path: local.clone()
                },
                MountOp::BindMount {
                    source: "/mnt/disks/vol1".into(),
                    target: local.clone(),
                    read_only: false
                },
                MountOp::CreateDir {
                    path: "/k/pods/u1/volumes/kubernetes.io~empty-dir/scratch".into()
                },
                MountOp::CreateDir { path: mem.clone() },
                MountOp::MountTmpfs {
                    target: mem.clone(),
                    size_bytes: Some(64 << 20)
                },
            ]
        );
        // Teardown unmounts before removing, and never removes the PV's source.
        assert_eq!(
            plan.teardown[0],
            MountOp::Unmount {
                target: local.clone()
            }
        );
        assert!(plan.teardown.iter().all(|op| !matches!(op,
            MountOp::RemoveTree { path } | MountOp::RemoveDir { path } if path.starts_with("/mnt"))));
        let c = &pod().spec.unwrap().containers[0];
        let mounts = container_mounts(c, &plan).unwrap();
        assert_eq!(mounts[0].target, PathBuf::from("/usr/share/nginx/html"));
        assert!(!mounts[0].read_only);
        assert!(mounts[1].read_only);
    }

    #[test]
    fn unbound_claim_reports_upstream_messages() {
        let mut w = World::new();
        w.pvcs
            .insert("default/example-local-claim".into(), pvc("Pending", ""));
        let e = w.plan().unwrap_err();
        assert_eq!(
            e,
            NotReady::Unresolved {
                volume: "example-pv-storage".into(),
                message: "error processing PVC default/example-local-claim: PVC is not bound"
                    .into()
            }
        );
        assert_eq!(
            e.event_message(&pod()),
            "Unable to attach or mount volumes: unmounted volumes=[example-pv-storage mem scratch], unattached volumes=[example-pv-storage mem scratch], failed to process volumes=[example-pv-storage]: error processing PVC default/example-local-claim: PVC is not bound"
        );
        w.pvcs.clear();
        assert!(
            matches!(w.plan().unwrap_err(), NotReady::Unresolved { message, .. }
            if message.ends_with("failed to fetch PVC from API server: persistentvolumeclaims \"example-local-claim\" not found"))
        );
        let mut w = World::new();
        w.pvs.insert("example-pv".into(), pv("node-1", "other"));
        assert!(
            matches!(w.plan().unwrap_err(), NotReady::Unresolved { message, .. }
            if message.contains("does not point to claim.UID claim-uid"))
        );
    }

    #[test]
    fn node_affinity_and_missing_path_fail_the_mount() {
        let mut w = World::new();
        w.pvs.insert("example-pv".into(), pv("node-2", "claim-uid"));
        assert_eq!(
            w.plan().unwrap_err(),
            NotReady::MountFailed {
                volume: "example-pv-storage".into(),
                message: "MountVolume.NodeAffinity check failed for volume \"example-pv\" : no matching NodeSelectorTerms".into()
            }
        );
        let mut w = World::new();
        w.paths.clear();
        assert!(
            matches!(w.plan().unwrap_err(), NotReady::MountFailed { message, .. }
            if message == "MountVolume.NewMounter initialization failed for volume \"example-pv\" : path \"/mnt/disks/vol1\" does not exist")
        );
    }

    #[test]
    fn relative_and_dotdot_paths_are_refused() {
        assert!(check_local_path("/mnt/disks/vol1").is_ok());
        assert!(check_local_path("mnt/disks").is_err());
        assert!(check_local_path("/mnt/../etc").is_err());
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("64Mi"), Some(64 << 20));
        assert_eq!(parse_quantity("5G"), Some(5_000_000_000));
        assert_eq!(parse_quantity("1.5Ki"), Some(1536));
        assert_eq!(parse_quantity("12"), Some(12));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("1Xi"), None);
    }
}
