//! The static local provisioner's decisions (volume-binding reference §10): PV names, capacity
//! rounding, the PV object, and what one discovery pass creates, skips and cleans.
//!
//! The driver lists the discovery directory (which entries are mount points, their statfs
//! size) and the PVs; [`discover`] decides. Cleaning a released volume's contents is the
//! driver's job, and only after [`released_to_clean`] named the PV.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PersistentVolume;
use serde_json::json;

/// The class the provisioner serves unless told otherwise (as in the lesson).
pub const DEFAULT_CLASS: &str = "local-storage";
/// Where it looks for disks on each node.
pub const DISCOVERY_DIR: &str = "/mnt/disks";

/// `local-pv-<hex(FNV-1a-32(entry + node + class))>` — sig-storage-local-static-provisioner's
/// GeneratePVName.
pub fn pv_name(entry: &str, node: &str, class: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in entry.bytes().chain(node.bytes()).chain(class.bytes()) {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("local-pv-{h:x}")
}

/// roundDownCapacityPretty: whole GiB from 10 GiB up, whole MiB from 10 MiB up, else bytes.
pub fn round_capacity(bytes: u64) -> String {
    const MI: u64 = 1 << 20;
    const GI: u64 = 1 << 30;
    if bytes / GI >= 10 {
        format!("{}Gi", bytes / GI)
    } else if bytes / MI >= 10 {
        format!("{}Mi", bytes / MI)
    } else {
        format!("{bytes}")
    }
}

/// One entry of the discovery directory, as the driver saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub is_mount_point: bool,
    /// Filesystem size from statfs (blocks × fragment size).
    pub capacity_bytes: u64,
}

/// The provisioner's settings for one node.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_name: String,
    pub node_uid: String,
    /// The node's `kubernetes.io/hostname` label (equals its name in bonsai).
    pub hostname: String,
    pub class: String,
    pub host_dir: String,
    /// The class's reclaimPolicy (absent → Delete) and mountOptions.
    pub reclaim_policy: String,
    pub mount_options: Vec<String>,
}

impl Config {
    /// `local-volume-provisioner-<node>-<nodeUID>`.
    pub fn provisioner_name(&self) -> String {
        format!(
            "local-volume-provisioner-{}-{}",
            self.node_name, self.node_uid
        )
    }
}

/// The PV the provisioner creates for `entry`.
pub fn build_pv(cfg: &Config, entry: &Entry) -> PersistentVolume {
    let path = format!("{}/{}", cfg.host_dir.trim_end_matches('/'), entry.name);
    let mut spec = json!({
        "capacity": {"storage": round_capacity(entry.capacity_bytes)},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": cfg.reclaim_policy,
        "storageClassName": cfg.class,
        "volumeMode": "Filesystem",
        "local": {"path": path},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [cfg.hostname]}
        ]}]}}
    });
    if !cfg.mount_options.is_empty() {
        spec["mountOptions"] = json!(cfg.mount_options);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name(&entry.name, &cfg.node_name, &cfg.class),
            "annotations": {"pv.kubernetes.io/provisioned-by": cfg.provisioner_name()}
        },
        "spec": spec
    }))
    .expect("a well-formed PersistentVolume")
}

/// The result of one discovery pass.
#[derive(Debug, Default)]
pub struct Discovery {
    pub create: Vec<PersistentVolume>,
    /// Entries skipped, with the provisioner's log message.
    pub skipped: Vec<String>,
}

fn pv_path(pv: &PersistentVolume) -> Option<&str> {
    pv.spec
        .as_ref()
        .and_then(|s| s.local.as_ref())
        .map(|l| l.path.as_str())
        .or_else(|| {
            pv.spec
                .as_ref()
                .and_then(|s| s.host_path.as_ref())
                .map(|h| h.path.as_str())
        })
}

fn pv_on_node(pv: &PersistentVolume, hostname: &str) -> bool {
    let labels = BTreeMap::from([("kubernetes.io/hostname".to_string(), hostname.to_string())]);
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .is_some_and(|_| super::volumes::pv_node_affinity_matches(pv, &labels))
}

/// One discovery pass: every mount point under the discovery directory that no PV (of any
/// phase) already names, and that no other PV on this node already uses, gets a PV.
/// `cleaning` holds PV names whose cleanup is still running.
pub fn discover(
    cfg: &Config,
    entries: &[Entry],
    pvs: &BTreeMap<String, PersistentVolume>,
    cleaning: &[String],
) -> Discovery {
    let mut out = Discovery::default();
    for e in entries {
        let path = format!("{}/{}", cfg.host_dir.trim_end_matches('/'), e.name);
        if !e.is_dir {
            out.skipped.push(format!(
                "Skipping file \"{path}\": not a directory nor block device"
            ));
            continue;
        }
        let name = pv_name(&e.name, &cfg.node_name, &cfg.class);
        if pvs.contains_key(&name) {
            continue;
        }
        if let Some(other) = pvs
            .values()
            .find(|pv| pv_path(pv) == Some(path.as_str()) && pv_on_node(pv, &cfg.hostname))
        {
            out.skipped.push(format!(
                "Skipping {path}: already used by PersistentVolume {}",
                other.metadata.name.as_deref().unwrap_or("")
            ));
            continue;
        }
        if cleaning.contains(&name) {
            continue;
        }
        if !e.is_mount_point {
            out.skipped.push(format!(
                "path \"{path}\" is not a valid mount point: mountPath=\"{path}\" wasn't found in the /proc/mounts file"
            ));
            continue;
        }
        out.create.push(build_pv(cfg, e));
    }
    out
}

/// PVs this node provisioned that a claim has released under reclaim policy Delete: clean
/// their contents, then delete them (discovery creates them again).
pub fn released_to_clean(cfg: &Config, pvs: &BTreeMap<String, PersistentVolume>) -> Vec<String> {
    let me = cfg.provisioner_name();
    pvs.values()
        .filter(|pv| {
            pv.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
                == Some(&me)
                && pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released")
                && pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
                    == Some("Delete")
                && pv.metadata.deletion_timestamp.is_none()
        })
        .filter_map(|pv| pv.metadata.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            node_name: "node-1".into(),
            node_uid: "nuid".into(),
            hostname: "node-1".into(),
            class: "fast-disks".into(),
            host_dir: "/mnt/disks".into(),
            reclaim_policy: "Delete".into(),
            mount_options: vec![],
        }
    }

    #[test]
    fn names_match_upstream_examples() {
        assert_eq!(pv_name("vol1", "node-1", "fast-disks"), "local-pv-457091be");
        assert_eq!(pv_name("vol3", "node-1", "fast-disks"), "local-pv-b67f32d4");
        assert_eq!(pv_name("vol1", "node-2", "fast-disks"), "local-pv-4707f61f");
    }

    #[test]
    fn capacity_rounds_down_pretty() {
        const GI: u64 = 1 << 30;
        const MI: u64 = 1 << 20;
        assert_eq!(round_capacity(10 * GI + 5), "10Gi");
        assert_eq!(round_capacity(13 * GI - 1), "12Gi");
        assert_eq!(round_capacity(9 * GI + 999 * MI), "10215Mi");
        assert_eq!(round_capacity(63 * MI - 10), "62Mi");
        assert_eq!(round_capacity(5 * MI), "5242880");
    }

    #[test]
    fn discovery_publishes_mount_points_only_and_never_a_used_path() {
        let e = |n: &str, m: bool| Entry {
            name: n.into(),
            is_dir: true,
            is_mount_point: m,
            capacity_bytes: 1 << 30,
        };
        let mut pvs = BTreeMap::new();
        // A hand-made PV already uses vol2 on node-1.
        let mut manual = build_pv(&cfg(), &e("vol2", true));
        manual.metadata.name = Some("example-pv".into());
        pvs.insert("example-pv".to_string(), manual);
        let d = discover(
            &cfg(),
            &[e("vol1", true), e("vol2", true), e("plain", false)],
            &pvs,
            &[],
        );
        assert_eq!(d.create.len(), 1);
        let pv = &d.create[0];
        assert_eq!(pv.metadata.name.as_deref(), Some("local-pv-457091be"));
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "1024Mi");
        assert_eq!(spec.local.as_ref().unwrap().path, "/mnt/disks/vol1");
        assert_eq!(
            pv.metadata.annotations.as_ref().unwrap()["pv.kubernetes.io/provisioned-by"],
            "local-volume-provisioner-node-1-nuid"
        );
        assert!(d
            .skipped
            .iter()
            .any(|s| s.contains("already used by PersistentVolume example-pv")));
        assert!(d
            .skipped
            .iter()
            .any(|s| s.contains("is not a valid mount point")));
        // An existing PV of the same name (any phase) is never re-created.
        let mut pvs2 = BTreeMap::new();
        pvs2.insert("local-pv-457091be".to_string(), pv.clone());
        assert!(discover(&cfg(), &[e("vol1", true)], &pvs2, &[])
            .create
            .is_empty());
    }

    #[test]
    fn only_own_released_delete_pvs_are_cleaned() {
        let mut pv = build_pv(
            &cfg(),
            &Entry {
                name: "vol1".into(),
                is_dir: true,
                is_mount_point: true,
                capacity_bytes: 1,
            },
        );
        pv.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
            phase: Some("Released".into()),
            ..Default::default()
        });
        let mut pvs = BTreeMap::new();
        pvs.insert("a".to_string(), pv.clone());
        assert_eq!(
            released_to_clean(&cfg(), &pvs),
            vec!["local-pv-457091be".to_string()]
        );
        let mut other = cfg();
        other.node_name = "node-2".into();
        assert!(released_to_clean(&other, &pvs).is_empty());
    }
}
