//! Server-side `Table` output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
//!
//! kubectl 1.2x has no client-side printers for built-in kinds: the familiar `kubectl get`
//! columns exist only if the server sends them. This module reproduces kube-apiserver's
//! printers (`pkg/printers/internalversion`) for the kinds bonsai serves, cell for cell:
//! the same column names, the same `<none>` / `<unset>` / `<unknown>` placeholders, the same
//! pod STATUS logic as `printPod`, the same canonical quantity formatting and the same
//! `HumanDuration` ages. Everything is a pure function of the stored JSON and `now`, so the
//! output is deterministic and unit-testable with golden rows.
//!
//! Like kube-apiserver, the HTTP layer should call [`to_table`] with `wide = true`: the server
//! always sends every column and every cell, and kubectl hides `priority: 1` columns unless
//! `-o wide`. With `wide = false` the priority-1 columns *and* their cells are left out, so the
//! table stays self-consistent (useful for compact output of our own tools).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde::Serialize;
use serde_json::{json, Map, Value};

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating \
resources, although some resources may allow a client to request the generation of an \
appropriate name automatically. Name is primarily intended for creation idempotence and \
configuration definition. Cannot be updated. More info: \
https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this \
object was created. It is not guaranteed to be set in happens-before order across separate \
operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\n\
Populated by the system. Read-only. Null for lists. More info: \
https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One `columnDefinitions[]` entry.
struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    desc: &'static str,
    priority: u8,
}

const fn col(name: &'static str, ty: &'static str, desc: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        desc,
        priority: 0,
    }
}
const fn wide(name: &'static str, ty: &'static str, desc: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        desc,
        priority: 1,
    }
}
const NAME: Col = Col {
    name: "Name",
    ty: "string",
    format: "name",
    desc: NAME_DESC,
    priority: 0,
};
const AGE: Col = col("Age", "string", AGE_DESC);

const POD_COLS: &[Col] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last \
         container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not \
         yet allocated.",
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a \
         candidate for scheduling by the scheduler defined in schedulerName.",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it \
         cannot be scheduled right away as preemption victims receive their graceful termination \
         periods.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness.",
    ),
];

const NODE_COLS: &[Col] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide(
        "Internal-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "External-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release.",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r'.",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node.",
    ),
];

const EVENT_COLS: &[Col] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the \
         transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should \
         contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    ),
    wide("Source", "string", "The component reporting this event. Should be a short machine understandable string."),
    col("Message", "string", "A human-readable description of the status of this operation."),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide("Count", "string", "The number of times this event has occurred."),
    Col { name: "Name", ty: "string", format: "name", desc: NAME_DESC, priority: 1 },
];

const NAMESPACE_COLS: &[Col] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

const PV_COLS: &[Col] = &[
    NAME,
    col(
        "Capacity",
        "string",
        "capacity is the description of the persistent volume's resources and capacity.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains all ways the volume can be mounted.",
    ),
    col(
        "Reclaim Policy",
        "string",
        "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released \
         from its claim.",
    ),
    col(
        "Status",
        "string",
        "phase indicates if a volume is available, bound to a claim, or released by a claim.",
    ),
    col(
        "Claim",
        "string",
        "claimRef is part of a bi-directional binding between PersistentVolume and \
         PersistentVolumeClaim.",
    ),
    col("StorageClass", "string", "StorageClass of the pv"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pv",
    ),
    col(
        "Reason",
        "string",
        "reason is a brief CamelCase string that describes any failure and is meant for machine \
         parsing and tidy display in the CLI.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to \
         remain in raw block state. Value of Filesystem is implied when not included in spec.",
    ),
];

const PVC_COLS: &[Col] = &[
    NAME,
    col(
        "Status",
        "string",
        "phase represents the current phase of PersistentVolumeClaim.",
    ),
    col(
        "Volume",
        "string",
        "volumeName is the binding reference to the PersistentVolume backing this claim.",
    ),
    col(
        "Capacity",
        "string",
        "capacity represents the actual resources of the underlying volume.",
    ),
    col(
        "Access Modes",
        "string",
        "accessModes contains the actual access modes the volume backing the PVC has.",
    ),
    col("StorageClass", "string", "StorageClass of the pvc"),
    col(
        "VolumeAttributesClass",
        "string",
        "VolumeAttributesClass of the pvc",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "volumeMode defines what type of volume is required by the claim. Value of Filesystem is \
         implied when not included in claim spec.",
    ),
];

const SC_COLS: &[Col] = &[
    NAME,
    col(
        "Provisioner",
        "string",
        "provisioner indicates the type of the provisioner.",
    ),
    col(
        "ReclaimPolicy",
        "string",
        "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes \
         of this storage class. Defaults to Delete.",
    ),
    col(
        "VolumeBindingMode",
        "string",
        "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound. \
         When unset, VolumeBindingImmediate is used.",
    ),
    col(
        "AllowVolumeExpansion",
        "string",
        "allowVolumeExpansion shows whether the storage class allow volume expand.",
    ),
    AGE,
];

const LEASE_COLS: &[Col] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

const CSIDRIVER_COLS: &[Col] = &[
    NAME,
    col(
        "AttachRequired",
        "boolean",
        "attachRequired indicates this CSI volume driver requires an attach operation.",
    ),
    col(
        "PodInfoOnMount",
        "boolean",
        "podInfoOnMount indicates this CSI volume driver requires additional pod information \
         (like podName, podUID, etc.) during mount operations.",
    ),
    col(
        "StorageCapacity",
        "boolean",
        "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider \
         the storage capacity that the driver deployment will report.",
    ),
    col(
        "TokenRequests",
        "string",
        "tokenRequests indicates the CSI driver needs pods' service account tokens it is \
         mounting volume for to do necessary authentication.",
    ),
    col(
        "RequiresRepublish",
        "boolean",
        "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically \
         called to reflect any possible change in the mounted volume.",
    ),
    col(
        "Modes",
        "string",
        "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports.",
    ),
    AGE,
];

const CSISC_COLS: &[Col] = &[
    NAME,
    col(
        "StorageClassName",
        "string",
        "storageClassName represents the name of the StorageClass that the reported capacity \
         applies to.",
    ),
    col(
        "Capacity",
        "string",
        "capacity is the value reported by the CSI driver in its GetCapacityResponse for a \
         GetCapacityRequest with topology and parameters that match the previous fields.",
    ),
];

/// Kinds without a printer get kube-apiserver's default table: Name and Created At.
const DEFAULT_COLS: &[Col] = &[NAME, col("Created At", "date", AGE_DESC)];

/// Builds the `meta.k8s.io/v1` `Table` for `objects` of `group`/`resource` (plural, lowercase;
/// `group` empty for core).
///
/// `list_rv` becomes `metadata.resourceVersion` (for a single-object GET pass the object's
/// resourceVersion), `continue_token` `metadata.continue`. `include_object` is the request's
/// `includeObject` parameter: `"None"`, `"Metadata"` (kubectl's default; rows carry a
/// `PartialObjectMetadata`, which kubectl needs for `-A`, `--show-labels` and `-L`) or
/// `"Object"` (rows carry the whole object, used by `--sort-by`); an empty string means
/// `Metadata`. `now` is the reference time for every AGE cell.
///
/// Returns `None` only for an `include_object` value kube-apiserver would reject; the caller
/// answers 400 BadRequest then. Resources without a dedicated printer get the default
/// `Name | Created At` table, as kube-apiserver gives for kinds without printers.
///
/// For large lists prefer [`to_table_json`]: the same document written straight to bytes,
/// without copying every object's metadata into a new `Value` first.
#[allow(clippy::too_many_arguments)]
pub fn to_table(
    group: &str,
    resource: &str,
    objects: &[Arc<Value>],
    list_rv: &str,
    continue_token: Option<&str>,
    include_object: &str,
    wide: bool,
    now: SystemTime,
) -> Option<Value> {
    let view = TableView::new(
        group,
        resource,
        objects,
        list_rv,
        continue_token,
        include_object,
        wide,
        now,
    )?;
    Some(serde_json::to_value(&view).expect("a table serializes"))
}

/// [`to_table`] serialized: the JSON bytes of the same `Table`, written directly from the
/// stored objects (a 10k-row `kubectl get` then costs one pass over the objects, no copy).
#[allow(clippy::too_many_arguments)]
pub fn to_table_json(
    group: &str,
    resource: &str,
    objects: &[Arc<Value>],
    list_rv: &str,
    continue_token: Option<&str>,
    include_object: &str,
    wide: bool,
    now: SystemTime,
) -> Option<Vec<u8>> {
    let view = TableView::new(
        group,
        resource,
        objects,
        list_rv,
        continue_token,
        include_object,
        wide,
        now,
    )?;
    Some(serde_json::to_vec(&view).expect("a table serializes"))
}

#[derive(Clone, Copy)]
enum Include {
    None,
    Metadata,
    Object,
}

type Printer = fn(&Value, i128) -> Vec<Value>;

/// The table as a borrowed view: serializing it prints each row as it goes.
struct TableView<'a> {
    cols: &'static [Col],
    printer: Printer,
    keep: Vec<bool>,
    include: Include,
    pods: bool,
    objects: &'a [Arc<Value>],
    list_rv: &'a str,
    continue_token: Option<&'a str>,
    now: i128,
}

impl<'a> TableView<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        group: &str,
        resource: &str,
        objects: &'a [Arc<Value>],
        list_rv: &'a str,
        continue_token: Option<&'a str>,
        include_object: &str,
        wide: bool,
        now: SystemTime,
    ) -> Option<TableView<'a>> {
        let include = match include_object {
            "" | "Metadata" => Include::Metadata,
            "None" => Include::None,
            "Object" => Include::Object,
            _ => return None,
        };
        let (cols, printer): (&'static [Col], Printer) = match (group, resource) {
            ("", "pods") => (POD_COLS, pod_cells),
            ("", "nodes") => (NODE_COLS, node_cells),
            ("", "events") => (EVENT_COLS, event_cells),
            ("events.k8s.io", "events") => (EVENT_COLS, events_k8s_io_cells),
            ("", "namespaces") => (NAMESPACE_COLS, namespace_cells),
            ("", "persistentvolumes") => (PV_COLS, pv_cells),
            ("", "persistentvolumeclaims") => (PVC_COLS, pvc_cells),
            ("storage.k8s.io", "storageclasses") => (SC_COLS, sc_cells),
            ("storage.k8s.io", "csidrivers") => (CSIDRIVER_COLS, csidriver_cells),
            ("storage.k8s.io", "csistoragecapacities") => (CSISC_COLS, csisc_cells),
            ("coordination.k8s.io", "leases") => (LEASE_COLS, lease_cells),
            _ => (DEFAULT_COLS, default_cells),
        };
        Some(TableView {
            cols,
            printer,
            keep: cols.iter().map(|c| wide || c.priority == 0).collect(),
            include,
            pods: group.is_empty() && resource == "pods",
            objects,
            list_rv,
            continue_token: continue_token.filter(|c| !c.is_empty()),
            now: nanos_since_epoch(now),
        })
    }
}

impl Serialize for TableView<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut t = ser.serialize_struct("Table", 5)?;
        t.serialize_field("kind", "Table")?;
        t.serialize_field("apiVersion", "meta.k8s.io/v1")?;
        t.serialize_field(
            "metadata",
            &ListMeta {
                resource_version: self.list_rv,
                continue_token: self.continue_token,
            },
        )?;
        let columns: Vec<ColumnOut> = self
            .cols
            .iter()
            .zip(&self.keep)
            .filter(|(_, k)| **k)
            .map(|(c, _)| ColumnOut {
                name: c.name,
                ty: c.ty,
                format: c.format,
                description: c.desc,
                priority: c.priority,
            })
            .collect();
        t.serialize_field("columnDefinitions", &columns)?;
        t.serialize_field("rows", &RowsOut(self))?;
        t.end()
    }
}

#[derive(Serialize)]
struct ListMeta<'a> {
    #[serde(rename = "resourceVersion")]
    resource_version: &'a str,
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_token: Option<&'a str>,
}

#[derive(Serialize)]
struct ColumnOut {
    name: &'static str,
    #[serde(rename = "type")]
    ty: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

struct RowsOut<'v, 'a>(&'v TableView<'a>);

impl Serialize for RowsOut<'_, '_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let view = self.0;
        let mut seq = ser.serialize_seq(Some(view.objects.len()))?;
        for obj in view.objects {
            let mut cells = (view.printer)(obj, view.now);
            if view.keep.iter().any(|k| !k) {
                let mut keep = view.keep.iter();
                cells.retain(|_| *keep.next().unwrap_or(&false));
            }
            let object = match view.include {
                Include::None => None,
                Include::Metadata => Some(RowObject::Partial {
                    kind: "PartialObjectMetadata",
                    api_version: "meta.k8s.io/v1",
                    metadata: obj.get("metadata").unwrap_or_else(|| empty_object()),
                }),
                Include::Object => Some(RowObject::Full(obj)),
            };
            let conditions = if view.pods {
                pod_row_conditions(obj)
            } else {
                None
            };
            seq.serialize_element(&RowOut {
                cells,
                conditions,
                object,
            })?;
        }
        seq.end()
    }
}

fn empty_object() -> &'static Value {
    static EMPTY: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Value::Object(Map::new()))
}

#[derive(Serialize)]
struct RowOut<'a> {
    cells: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conditions: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<RowObject<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RowObject<'a> {
    Partial {
        kind: &'static str,
        #[serde(rename = "apiVersion")]
        api_version: &'static str,
        metadata: &'a Value,
    },
    Full(&'a Value),
}

// ---------------------------------------------------------------------------------------------
// JSON access helpers: the store keeps the JSON the API accepted, so every field may be absent.

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    (!cur.is_null()).then_some(cur)
}

fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn i64_at(v: &Value, path: &[&str]) -> i64 {
    get(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

fn name(v: &Value) -> Value {
    json!(s(v, &["metadata", "name"]))
}

fn age(v: &Value, now: i128) -> Value {
    json!(translate_timestamp_since(
        s(v, &["metadata", "creationTimestamp"]),
        now
    ))
}

fn deleting(v: &Value) -> bool {
    get(v, &["metadata", "deletionTimestamp"]).is_some()
}

fn or_placeholder(value: &str, placeholder: &str) -> String {
    if value.is_empty() {
        placeholder.to_string()
    } else {
        value.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Printers. Each returns every cell (wide on), in column order.

fn default_cells(o: &Value, _now: i128) -> Vec<Value> {
    // kube-apiserver's default table prints the creation time as RFC 3339 UTC.
    let created = match parse_rfc3339(s(o, &["metadata", "creationTimestamp"])) {
        Some(t) => format_rfc3339(t),
        None => "0001-01-01T00:00:00Z".to_string(),
    };
    vec![name(o), json!(created)]
}

fn pod_row_conditions(o: &Value) -> Option<Value> {
    match s(o, &["status", "phase"]) {
        "Succeeded" => Some(json!([{"type": "Completed", "status": "True",
            "reason": "Succeeded", "message": "The pod has completed successfully."}])),
        "Failed" => Some(json!([{"type": "Completed", "status": "True",
            "reason": "Failed", "message": "The pod failed."}])),
        _ => None,
    }
}

fn is_restartable_init(container: Option<&Value>) -> bool {
    container.is_some_and(|c| s(c, &["restartPolicy"]) == "Always")
}

fn has_condition(o: &Value, ty: &str) -> bool {
    arr(o, &["status", "conditions"])
        .iter()
        .any(|c| s(c, &["type"]) == ty && s(c, &["status"]) == "True")
}

fn pod_initialized_true(o: &Value) -> bool {
    // printPod looks at the first Initialized condition only.
    arr(o, &["status", "conditions"])
        .iter()
        .find(|c| s(c, &["type"]) == "Initialized")
        .is_some_and(|c| s(c, &["status"]) == "True")
}

/// `printPod`: READY, STATUS (the aggregate reason), RESTARTS, AGE; wide IP, NODE,
/// NOMINATED NODE, READINESS GATES.
fn pod_cells(o: &Value, now: i128) -> Vec<Value> {
    let spec_containers = arr(o, &["spec", "containers"]);
    let spec_init = arr(o, &["spec", "initContainers"]);
    let mut total = spec_containers.len();
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut restartable_restarts: i64 = 0;
    let mut last_restart: Option<i128> = None;
    let mut last_restartable_restart: Option<i128> = None;

    let phase = s(o, &["status", "phase"]);
    let mut reason = phase.to_string();
    if !s(o, &["status", "reason"]).is_empty() {
        reason = s(o, &["status", "reason"]).to_string();
    }
    for c in arr(o, &["status", "conditions"]) {
        if s(c, &["type"]) == "PodScheduled" && s(c, &["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }
    let init_spec = |n: &str| spec_init.iter().find(|c| s(c, &["name"]) == n);
    total += spec_init
        .iter()
        .filter(|c| is_restartable_init(Some(c)))
        .count();

    let later = |cur: Option<i128>, t: Option<i128>| match (cur, t) {
        (Some(a), Some(b)) if b > a => Some(b),
        (None, Some(b)) => Some(b),
        (a, _) => a,
    };

    let mut initializing = false;
    let init_statuses = arr(o, &["status", "initContainerStatuses"]);
    for (i, c) in init_statuses.iter().enumerate() {
        restarts += i64_at(c, &["restartCount"]);
        let finished = parse_rfc3339(s(c, &["lastState", "terminated", "finishedAt"]));
        if get(c, &["lastState", "terminated"]).is_some() {
            last_restart = later(last_restart, finished);
        }
        let restartable = is_restartable_init(init_spec(s(c, &["name"])));
        if restartable {
            restartable_restarts += i64_at(c, &["restartCount"]);
            if get(c, &["lastState", "terminated"]).is_some() {
                last_restartable_restart = later(last_restartable_restart, finished);
            }
        }
        let terminated = get(c, &["state", "terminated"]);
        let waiting_reason = s(c, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| i64_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if restartable && bool_at(c, &["started"]) == Some(true) {
            if bool_at(c, &["ready"]) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = if s(t, &["reason"]).is_empty() {
                if i64_at(t, &["signal"]) != 0 {
                    format!("Init:Signal:{}", i64_at(t, &["signal"]))
                } else {
                    format!("Init:ExitCode:{}", i64_at(t, &["exitCode"]))
                }
            } else {
                format!("Init:{}", s(t, &["reason"]))
            };
        } else if get(c, &["state", "waiting"]).is_some()
            && !waiting_reason.is_empty()
            && waiting_reason != "PodInitializing"
        {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{}/{}", i, spec_init.len());
        }
        initializing = true;
        break;
    }

    if !initializing || pod_initialized_true(o) {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for c in arr(o, &["status", "containerStatuses"]).iter().rev() {
            restarts += i64_at(c, &["restartCount"]);
            if get(c, &["lastState", "terminated"]).is_some() {
                let finished = parse_rfc3339(s(c, &["lastState", "terminated", "finishedAt"]));
                last_restart = later(last_restart, finished);
            }
            let waiting_reason = s(c, &["state", "waiting", "reason"]);
            let terminated = get(c, &["state", "terminated"]);
            if get(c, &["state", "waiting"]).is_some() && !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = if !s(t, &["reason"]).is_empty() {
                    s(t, &["reason"]).to_string()
                } else if i64_at(t, &["signal"]) != 0 {
                    format!("Signal:{}", i64_at(t, &["signal"]))
                } else {
                    format!("ExitCode:{}", i64_at(t, &["exitCode"]))
                };
            } else if bool_at(c, &["ready"]) == Some(true)
                && get(c, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is Running/NotReady.
        if reason == "Completed" && has_running {
            reason = if has_condition(o, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    if deleting(o) && s(o, &["status", "reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting(o) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", human_duration(now - t))
        }
        _ => restarts.to_string(),
    };

    let pod_ip = arr(o, &["status", "podIPs"])
        .first()
        .map(|p| s(p, &["ip"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| s(o, &["status", "podIP"]));
    let gates = arr(o, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr(o, &["status", "conditions"]);
        let true_count = gates
            .iter()
            .filter(|g| {
                let ty = s(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| s(c, &["type"]) == ty)
                    .is_some_and(|c| s(c, &["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };

    vec![
        name(o),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        age(o, now),
        json!(or_placeholder(pod_ip, "<none>")),
        json!(or_placeholder(s(o, &["spec", "nodeName"]), "<none>")),
        json!(or_placeholder(
            s(o, &["status", "nominatedNodeName"]),
            "<none>"
        )),
        json!(readiness_gates),
    ]
}

/// `printNode`: STATUS from the Ready condition (`Unknown` without one), plus
/// `SchedulingDisabled`; ROLES from the `node-role.kubernetes.io/<role>` and
/// `kubernetes.io/role` labels.
fn node_cells(o: &Value, now: i128) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    // The last Ready condition wins, as in the upstream condition map.
    if let Some(c) = arr(o, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| s(c, &["type"]) == "Ready")
    {
        status.push(
            if s(c, &["status"]) == "True" {
                "Ready"
            } else {
                "NotReady"
            }
            .to_string(),
        );
    }
    if status.is_empty() {
        status.push("Unknown".to_string());
    }
    if bool_at(o, &["spec", "unschedulable"]) == Some(true) {
        status.push("SchedulingDisabled".to_string());
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = get(o, &["metadata", "labels"]).and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.insert(v.to_string());
                }
            }
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let address = |ty: &str| {
        arr(o, &["status", "addresses"])
            .iter()
            .find(|a| s(a, &["type"]) == ty)
            .map(|a| s(a, &["address"]).to_string())
            .unwrap_or_else(|| "<none>".to_string())
    };
    let info = |f: &str| or_placeholder(s(o, &["status", "nodeInfo", f]), "<unknown>");
    vec![
        name(o),
        json!(status.join(",")),
        json!(roles),
        age(o, now),
        json!(s(o, &["status", "nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// `printEvent` for core/v1 Events.
fn event_cells(o: &Value, now: i128) -> Vec<Value> {
    let first_ts = s(o, &["firstTimestamp"]);
    let first = if parse_rfc3339(first_ts).is_none() {
        translate_timestamp_since(s(o, &["eventTime"]), now)
    } else {
        translate_timestamp_since(first_ts, now)
    };
    let mut last = if parse_rfc3339(s(o, &["lastTimestamp"])).is_none() {
        first.clone()
    } else {
        translate_timestamp_since(s(o, &["lastTimestamp"]), now)
    };
    let mut count = i64_at(o, &["count"]);
    if get(o, &["series"]).is_some() {
        last = translate_timestamp_since(s(o, &["series", "lastObservedTime"]), now);
        count = i64_at(o, &["series", "count"]);
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }
    let kind = s(o, &["involvedObject", "kind"]).to_lowercase();
    let involved = s(o, &["involvedObject", "name"]);
    let target = if involved.is_empty() {
        kind
    } else {
        format!("{kind}/{involved}")
    };
    let component = first_non_empty(
        s(o, &["source", "component"]),
        s(o, &["reportingComponent"]),
    );
    let instance = first_non_empty(s(o, &["source", "host"]), s(o, &["reportingInstance"]));
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s(o, &["type"])),
        json!(s(o, &["reason"])),
        json!(target),
        json!(s(o, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(s(o, &["message"]).trim()),
        json!(first),
        json!(count),
        name(o),
    ]
}

/// events.k8s.io/v1 Events are printed by kube-apiserver after conversion to the internal
/// core Event: `regarding` ↔ `involvedObject`, `note` ↔ `message`,
/// `deprecatedFirstTimestamp`/`deprecatedLastTimestamp`/`deprecatedCount`/`deprecatedSource`,
/// `reportingController` ↔ `reportingComponent`.
fn events_k8s_io_cells(o: &Value, now: i128) -> Vec<Value> {
    let mut core = Map::new();
    let copy = |core: &mut Map<String, Value>, from: &str, to: &str| {
        if let Some(v) = o.get(from).filter(|v| !v.is_null()) {
            core.insert(to.to_string(), v.clone());
        }
    };
    copy(&mut core, "metadata", "metadata");
    copy(&mut core, "regarding", "involvedObject");
    copy(&mut core, "note", "message");
    copy(&mut core, "type", "type");
    copy(&mut core, "reason", "reason");
    copy(&mut core, "eventTime", "eventTime");
    copy(&mut core, "series", "series");
    copy(&mut core, "deprecatedFirstTimestamp", "firstTimestamp");
    copy(&mut core, "deprecatedLastTimestamp", "lastTimestamp");
    copy(&mut core, "deprecatedCount", "count");
    copy(&mut core, "deprecatedSource", "source");
    copy(&mut core, "reportingController", "reportingComponent");
    copy(&mut core, "reportingInstance", "reportingInstance");
    event_cells(&Value::Object(core), now)
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

fn namespace_cells(o: &Value, now: i128) -> Vec<Value> {
    vec![name(o), json!(s(o, &["status", "phase"])), age(o, now)]
}

/// `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that fixed order, deduplicated.
pub fn access_modes_string(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The beta annotation wins over the field (`GetPersistentVolumeClass` /
/// `GetPersistentVolumeClaimClass`), even when empty.
fn storage_class(o: &Value) -> String {
    if let Some(v) = get(
        o,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    ) {
        return v.as_str().unwrap_or("").to_string();
    }
    s(o, &["spec", "storageClassName"]).to_string()
}

fn unset_or(o: &Value, path: &[&str]) -> String {
    match get(o, path).and_then(Value::as_str) {
        Some(v) => v.to_string(),
        None => "<unset>".to_string(),
    }
}

fn quantity_cell(q: Option<&Value>) -> String {
    match q {
        Some(Value::String(q)) => format_quantity(q),
        Some(Value::Number(n)) => format_quantity(&n.to_string()),
        _ => "0".to_string(),
    }
}

fn pv_cells(o: &Value, now: i128) -> Vec<Value> {
    let claim = match get(o, &["spec", "claimRef"]) {
        Some(c) => format!("{}/{}", s(c, &["namespace"]), s(c, &["name"])),
        None => String::new(),
    };
    let phase = if deleting(o) {
        "Terminating"
    } else {
        s(o, &["status", "phase"])
    };
    vec![
        name(o),
        json!(quantity_cell(get(o, &["spec", "capacity", "storage"]))),
        json!(access_modes_string(arr(o, &["spec", "accessModes"]))),
        json!(s(o, &["spec", "persistentVolumeReclaimPolicy"])),
        json!(phase),
        json!(claim),
        json!(storage_class(o)),
        json!(unset_or(o, &["spec", "volumeAttributesClassName"])),
        json!(s(o, &["status", "reason"])),
        age(o, now),
        json!(unset_or(o, &["spec", "volumeMode"])),
    ]
}

fn pvc_cells(o: &Value, now: i128) -> Vec<Value> {
    let phase = if deleting(o) {
        "Terminating"
    } else {
        s(o, &["status", "phase"])
    };
    let volume = s(o, &["spec", "volumeName"]);
    // Capacity and access modes come from the status, and only once a volume is named.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity_cell(get(o, &["status", "capacity", "storage"])),
            access_modes_string(arr(o, &["status", "accessModes"])),
        )
    };
    vec![
        name(o),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(storage_class(o)),
        json!(unset_or(o, &["spec", "volumeAttributesClassName"])),
        age(o, now),
        json!(unset_or(o, &["spec", "volumeMode"])),
    ]
}

fn sc_cells(o: &Value, now: i128) -> Vec<Value> {
    let annotation = |k: &str| s(o, &["metadata", "annotations", k]) == "true";
    let mut n = s(o, &["metadata", "name"]).to_string();
    if annotation("storageclass.kubernetes.io/is-default-class")
        || annotation("storageclass.beta.kubernetes.io/is-default-class")
    {
        n.push_str(" (default)");
    }
    let reclaim = get(o, &["reclaimPolicy"])
        .and_then(Value::as_str)
        .unwrap_or("Delete");
    let binding = get(o, &["volumeBindingMode"])
        .and_then(Value::as_str)
        .unwrap_or("Immediate");
    vec![
        json!(n),
        json!(s(o, &["provisioner"])),
        json!(reclaim),
        json!(binding),
        json!(bool_at(o, &["allowVolumeExpansion"]).unwrap_or(false)),
        age(o, now),
    ]
}

fn lease_cells(o: &Value, now: i128) -> Vec<Value> {
    vec![
        name(o),
        json!(s(o, &["spec", "holderIdentity"])),
        age(o, now),
    ]
}

fn csidriver_cells(o: &Value, now: i128) -> Vec<Value> {
    let modes: Vec<&str> = arr(o, &["spec", "volumeLifecycleModes"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let modes = if modes.is_empty() {
        "<none>".to_string()
    } else {
        modes.join(",")
    };
    let token_requests = match get(o, &["spec", "tokenRequests"]).and_then(Value::as_array) {
        Some(t) => t
            .iter()
            .map(|t| s(t, &["audience"]))
            .collect::<Vec<_>>()
            .join(","),
        None => "<unset>".to_string(),
    };
    vec![
        name(o),
        json!(bool_at(o, &["spec", "attachRequired"]).unwrap_or(true)),
        json!(bool_at(o, &["spec", "podInfoOnMount"]).unwrap_or(false)),
        json!(bool_at(o, &["spec", "storageCapacity"]).unwrap_or(false)),
        json!(token_requests),
        json!(bool_at(o, &["spec", "requiresRepublish"]).unwrap_or(false)),
        json!(modes),
        age(o, now),
    ]
}

fn csisc_cells(o: &Value, _now: i128) -> Vec<Value> {
    let capacity = match get(o, &["capacity"]) {
        Some(q) => quantity_cell(Some(q)),
        None => "<unset>".to_string(),
    };
    vec![name(o), json!(s(o, &["storageClassName"])), json!(capacity)]
}

// ---------------------------------------------------------------------------------------------
// Time: RFC 3339 parsing and apimachinery's HumanDuration.

fn nanos_since_epoch(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// `translateTimestampSince`: `<unknown>` for a missing (zero) time.
fn translate_timestamp_since(ts: &str, now: i128) -> String {
    match parse_rfc3339(ts) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// Days from 1970-01-01 to the civil date (proleptic Gregorian), Howard Hinnant's algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses an RFC 3339 timestamp (`2025-01-01T00:00:00Z`, optional fraction, `Z` or `±hh:mm`)
/// into nanoseconds since the Unix epoch. `None` for empty, malformed, or Go's zero time
/// (`0001-01-01T00:00:00Z`), which `metav1.Time.IsZero` treats as unset.
pub fn parse_rfc3339(ts: &str) -> Option<i128> {
    let b = ts.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = ts.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &ts[start..i];
        if digits.is_empty() {
            return None;
        }
        let mut n: i128 = 0;
        for (k, c) in digits.bytes().enumerate() {
            if k < 9 {
                n = n * 10 + i128::from(c - b'0');
            }
        }
        for _ in digits.len()..9 {
            n *= 10;
        }
        frac_nanos = n;
    }
    let offset_secs: i64 = match &ts[i..] {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    if y == 1 && mo == 1 && d == 1 && h == 0 && mi == 0 && sec == 0 && frac_nanos == 0 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + frac_nanos)
}

fn format_rfc3339(nanos: i128) -> String {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// apimachinery's `duration.HumanDuration`, for a signed duration in nanoseconds.
pub fn human_duration(nanos: i128) -> String {
    // Go: int(d.Seconds()) truncates toward zero; up to 2s in the future counts as "now".
    let seconds = nanos / 1_000_000_000;
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

// ---------------------------------------------------------------------------------------------
// Quantities: resource.Quantity's canonical String().

#[derive(Clone, Copy, PartialEq)]
enum QFormat {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// Formats a Kubernetes quantity the way `resource.Quantity.String()` does after parsing:
/// `5Gi` → `5Gi`, `1024Mi` → `1Gi`, `1.5Gi` → `1536Mi`, `1000M` → `1G`, `0.5` → `500m`,
/// `100Ki`… Values are rounded up to nano precision, as `ParseQuantity` does. A string that
/// does not parse is printed as given (the API layer validates quantities; this is display).
pub fn format_quantity(q: &str) -> String {
    match canonical_quantity(q) {
        Some(s) => s,
        None => q.to_string(),
    }
}

fn canonical_quantity(q: &str) -> Option<String> {
    let q = q.trim();
    let (negative, body) = match q.as_bytes().first()? {
        b'-' => (true, &q[1..]),
        b'+' => (false, &q[1..]),
        _ => (false, q),
    };
    // digits [. digits]
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int_part}{frac_part}");
    // value = mantissa * 10^scale10 * 2^pow2
    let mut mantissa: i128 = 0;
    for c in digits.bytes() {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(c - b'0'))?;
    }
    let mut scale10: i32 = -(frac_part.len() as i32);
    let mut pow2: u32 = 0;
    let format = match suffix {
        "" => QFormat::DecimalSI,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            pow2 = 10
                * (1 + ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                    .iter()
                    .position(|s| *s == suffix)? as u32);
            QFormat::BinarySI
        }
        "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => {
            scale10 += match suffix {
                "n" => -9,
                "u" => -6,
                "m" => -3,
                "k" => 3,
                "M" => 6,
                "G" => 9,
                "T" => 12,
                "P" => 15,
                _ => 18,
            };
            QFormat::DecimalSI
        }
        e if e.starts_with('e') || e.starts_with('E') => {
            let exp: i32 = e[1..].parse().ok()?;
            scale10 = scale10.checked_add(exp)?;
            QFormat::DecimalExponent
        }
        _ => return None,
    };
    if pow2 > 0 {
        mantissa = mantissa.checked_mul(1i128.checked_shl(pow2)?)?;
    }
    // Round up to nano precision (ParseQuantity rounds away from zero... for positive values,
    // ceiling; the sign is applied afterwards, which matches inf.RoundUp).
    while scale10 < -9 {
        let rem = mantissa % 10;
        mantissa /= 10;
        if rem != 0 {
            mantissa += 1;
        }
        scale10 += 1;
    }
    if mantissa == 0 {
        return Some("0".to_string());
    }
    // Normalise: strip trailing zeros into the exponent.
    while mantissa % 10 == 0 && scale10 < 40 {
        mantissa /= 10;
        scale10 += 1;
    }
    let sign = if negative { "-" } else { "" };
    let mut format = format;
    if format == QFormat::BinarySI {
        // |value| < 1024, or not an integer: shown as DecimalSI to avoid rounding.
        let integer = scale10 >= 0;
        let small = scale10 <= 3 && {
            let v = mantissa.checked_mul(10i128.pow(scale10.max(0) as u32));
            v.is_some_and(|v| v < 1024)
        };
        if small || !integer {
            format = QFormat::DecimalSI;
        } else {
            let mut value = mantissa.checked_mul(10i128.checked_pow(scale10 as u32)?)?;
            let mut exp = 0;
            while value % 1024 == 0 && exp < 6 {
                value /= 1024;
                exp += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
            return Some(format!("{sign}{value}{suffix}"));
        }
    }
    // Decimal: exponent must be a multiple of 3.
    let mut exp = scale10;
    match exp.rem_euclid(3) {
        1 => {
            mantissa = mantissa.checked_mul(10)?;
            exp -= 1;
        }
        2 => {
            mantissa = mantissa.checked_mul(100)?;
            exp -= 2;
        }
        _ => {}
    }
    let suffix = match (format, exp) {
        (_, 0) => String::new(),
        (QFormat::DecimalExponent, e) => format!("e{e}"),
        (_, -9) => "n".into(),
        (_, -6) => "u".into(),
        (_, -3) => "m".into(),
        (_, 3) => "k".into(),
        (_, 6) => "M".into(),
        (_, 9) => "G".into(),
        (_, 12) => "T".into(),
        (_, 15) => "P".into(),
        (_, 18) => "E".into(),
        (_, e) => format!("e{e}"),
    };
    Some(format!("{sign}{mantissa}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: &str = "2026-01-01T00:00:00Z";

    fn at(secs: u64) -> SystemTime {
        let base = parse_rfc3339(T0).unwrap() as u64 / 1_000_000_000;
        UNIX_EPOCH + Duration::from_secs(base + secs)
    }

    fn table(group: &str, resource: &str, objs: Vec<Value>, now: SystemTime) -> Value {
        let objs: Vec<Arc<Value>> = objs.into_iter().map(Arc::new).collect();
        to_table(group, resource, &objs, "42", None, "Metadata", true, now).unwrap()
    }

    fn headers(t: &Value) -> Vec<String> {
        t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_uppercase())
            .collect()
    }

    fn cells(t: &Value, row: usize) -> Vec<Value> {
        t["rows"][row]["cells"].as_array().unwrap().clone()
    }

    fn strs(v: &[&str]) -> Vec<Value> {
        v.iter().map(|s| json!(s)).collect()
    }

    // The lesson's manifests as the API server stores them after create (defaults applied).
    fn lesson_pv(phase: &str) -> Value {
        json!({"apiVersion":"v1","kind":"PersistentVolume",
            "metadata":{"name":"example-pv","uid":"u1","resourceVersion":"5","creationTimestamp":T0},
            "spec":{"capacity":{"storage":"5Gi"},"volumeMode":"Filesystem",
                "accessModes":["ReadWriteOnce"],"persistentVolumeReclaimPolicy":"Delete",
                "storageClassName":"local-storage","local":{"path":"/mnt/disks/vol1"},
                "nodeAffinity":{"required":{"nodeSelectorTerms":[{"matchExpressions":[
                    {"key":"kubernetes.io/hostname","operator":"In","values":["node-1"]}]}]}}},
            "status":{"phase":phase}})
    }

    fn lesson_pvc() -> Value {
        json!({"apiVersion":"v1","kind":"PersistentVolumeClaim",
            "metadata":{"name":"example-local-claim","namespace":"default","uid":"u2",
                "resourceVersion":"7","creationTimestamp":T0},
            "spec":{"accessModes":["ReadWriteOnce"],"storageClassName":"local-storage",
                "resources":{"requests":{"storage":"5Gi"}},"volumeMode":"Filesystem"},
            "status":{"phase":"Pending"}})
    }

    fn lesson_pod() -> Value {
        json!({"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":"example-pv-pod","namespace":"default","uid":"u3",
                "creationTimestamp":T0,"labels":{"app":"web"}},
            "spec":{"containers":[{"name":"example-pv-container","image":"nginx",
                "volumeMounts":[{"mountPath":"/usr/share/nginx/html","name":"example-pv-storage"}]}],
                "volumes":[{"name":"example-pv-storage",
                    "persistentVolumeClaim":{"claimName":"example-local-claim"}}]},
            "status":{"phase":"Pending"}})
    }

    #[test]
    fn pv_table_matches_kubectl_get_pv() {
        let t = table(
            "",
            "persistentvolumes",
            vec![lesson_pv("Available")],
            at(16),
        );
        assert_eq!(
            headers(&t),
            [
                "NAME",
                "CAPACITY",
                "ACCESS MODES",
                "RECLAIM POLICY",
                "STATUS",
                "CLAIM",
                "STORAGECLASS",
                "VOLUMEATTRIBUTESCLASS",
                "REASON",
                "AGE",
                "VOLUMEMODE"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            strs(&[
                "example-pv",
                "5Gi",
                "RWO",
                "Delete",
                "Available",
                "",
                "local-storage",
                "<unset>",
                "",
                "16s",
                "Filesystem"
            ])
        );
        assert_eq!(t["columnDefinitions"][10]["priority"], 1);
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["metadata"]["resourceVersion"], "42");
        let obj = &t["rows"][0]["object"];
        assert_eq!(obj["kind"], "PartialObjectMetadata");
        assert_eq!(obj["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(obj["metadata"]["name"], "example-pv");
        assert!(obj.get("spec").is_none());
    }

    #[test]
    fn pv_bound_terminating_and_prebound() {
        let mut pv = lesson_pv("Bound");
        pv["spec"]["claimRef"] = json!({"namespace":"default","name":"example-local-claim"});
        pv["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:10Z");
        pv["metadata"]["annotations"] =
            json!({"volume.beta.kubernetes.io/storage-class": "beta-class"});
        pv["spec"]["volumeAttributesClassName"] = json!("gold");
        pv["spec"]["accessModes"] = json!([
            "ReadWriteOncePod",
            "ReadWriteMany",
            "ReadWriteOnce",
            "ReadWriteOnce"
        ]);
        let c = cells(&table("", "persistentvolumes", vec![pv], at(6 * 3600)), 0);
        assert_eq!(c[2], "RWO,RWX,RWOP");
        assert_eq!(c[4], "Terminating");
        assert_eq!(c[5], "default/example-local-claim");
        assert_eq!(c[6], "beta-class");
        assert_eq!(c[7], "gold");
        assert_eq!(c[9], "6h");
    }

    #[test]
    fn pvc_table_pending_and_bound() {
        let t = table("", "persistentvolumeclaims", vec![lesson_pvc()], at(7));
        assert_eq!(
            headers(&t),
            [
                "NAME",
                "STATUS",
                "VOLUME",
                "CAPACITY",
                "ACCESS MODES",
                "STORAGECLASS",
                "VOLUMEATTRIBUTESCLASS",
                "AGE",
                "VOLUMEMODE"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            strs(&[
                "example-local-claim",
                "Pending",
                "",
                "",
                "",
                "local-storage",
                "<unset>",
                "7s",
                "Filesystem"
            ])
        );
        let mut bound = lesson_pvc();
        bound["spec"]["volumeName"] = json!("example-pv");
        bound["status"] = json!({"phase":"Bound","accessModes":["ReadWriteOnce"],
            "capacity":{"storage":"5Gi"}});
        let t = table("", "persistentvolumeclaims", vec![bound], at(6 * 3600 + 59));
        assert_eq!(
            cells(&t, 0),
            strs(&[
                "example-local-claim",
                "Bound",
                "example-pv",
                "5Gi",
                "RWO",
                "local-storage",
                "<unset>",
                "6h",
                "Filesystem"
            ])
        );
        // Pre-bound but still Pending: capacity "0", no access modes.
        let mut pre = lesson_pvc();
        pre["spec"]["volumeName"] = json!("example-pv");
        let c = cells(&table("", "persistentvolumeclaims", vec![pre], at(1)), 0);
        assert_eq!(c[3], "0");
        assert_eq!(c[4], "");
    }

    #[test]
    fn storageclass_table() {
        let sc = json!({"apiVersion":"storage.k8s.io/v1","kind":"StorageClass",
            "metadata":{"name":"local-storage","creationTimestamp":T0,
                "annotations":{"storageclass.kubernetes.io/is-default-class":"true"}},
            "provisioner":"kubernetes.io/no-provisioner","volumeBindingMode":"WaitForFirstConsumer"});
        let t = table("storage.k8s.io", "storageclasses", vec![sc], at(300));
        assert_eq!(
            headers(&t),
            [
                "NAME",
                "PROVISIONER",
                "RECLAIMPOLICY",
                "VOLUMEBINDINGMODE",
                "ALLOWVOLUMEEXPANSION",
                "AGE"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            vec![
                json!("local-storage (default)"),
                json!("kubernetes.io/no-provisioner"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("5m")
            ]
        );
    }

    #[test]
    fn pod_table_pending_running_and_wide() {
        let t = table("", "pods", vec![lesson_pod()], at(3));
        assert_eq!(
            headers(&t),
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED NODE",
                "READINESS GATES"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            strs(&[
                "example-pv-pod",
                "0/1",
                "Pending",
                "0",
                "3s",
                "<none>",
                "<none>",
                "<none>",
                "<none>"
            ])
        );
        let mut running = lesson_pod();
        running["spec"]["nodeName"] = json!("node-1");
        running["spec"]["readinessGates"] = json!([{"conditionType":"example.com/gate"}]);
        running["status"] = json!({"phase":"Running","podIP":"127.0.0.1",
            "podIPs":[{"ip":"127.0.0.1"}],
            "conditions":[{"type":"Ready","status":"True"},
                {"type":"example.com/gate","status":"True"}],
            "containerStatuses":[{"name":"example-pv-container","ready":true,"restartCount":2,
                "state":{"running":{"startedAt":"2026-01-01T00:01:00Z"}},
                "lastState":{"terminated":{"exitCode":1,"finishedAt":"2026-01-01T00:00:50Z"}}}]});
        let t = table("", "pods", vec![running], at(350));
        assert_eq!(
            cells(&t, 0),
            strs(&[
                "example-pv-pod",
                "1/1",
                "Running",
                "2 (5m ago)",
                "5m50s",
                "127.0.0.1",
                "node-1",
                "<none>",
                "1/1"
            ])
        );
    }

    #[test]
    fn pod_status_reasons() {
        let with_status = |status: Value| {
            let mut p = lesson_pod();
            p["status"] = status;
            cells(&table("", "pods", vec![p], at(1)), 0)[2].clone()
        };
        assert_eq!(
            with_status(
                json!({"phase":"Pending","containerStatuses":[{"name":"c","ready":false,
                "restartCount":0,"state":{"waiting":{"reason":"ContainerCreating"}}}]})
            ),
            "ContainerCreating"
        );
        assert_eq!(
            with_status(
                json!({"phase":"Running","containerStatuses":[{"name":"c","ready":false,
                "restartCount":5,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}]})
            ),
            "CrashLoopBackOff"
        );
        assert_eq!(
            with_status(json!({"phase":"Succeeded","containerStatuses":[{"name":"c",
                "state":{"terminated":{"exitCode":0,"reason":"Completed"}}}]})),
            "Completed"
        );
        assert_eq!(
            with_status(json!({"phase":"Failed","containerStatuses":[{"name":"c",
                "state":{"terminated":{"exitCode":137,"signal":9}}}]})),
            "Signal:9"
        );
        assert_eq!(
            with_status(json!({"phase":"Failed","containerStatuses":[{"name":"c",
                "state":{"terminated":{"exitCode":3}}}]})),
            "ExitCode:3"
        );
        assert_eq!(
            with_status(
                json!({"phase":"Pending","conditions":[{"type":"PodScheduled",
                "status":"False","reason":"SchedulingGated"}]})
            ),
            "SchedulingGated"
        );
        assert_eq!(
            with_status(json!({"phase":"Failed","reason":"Evicted"})),
            "Evicted"
        );
        // Terminating, and NodeLost → Unknown.
        let mut p = lesson_pod();
        p["metadata"]["deletionTimestamp"] = json!(T0);
        p["status"] = json!({"phase":"Running"});
        assert_eq!(
            cells(&table("", "pods", vec![p.clone()], at(1)), 0)[2],
            "Terminating"
        );
        p["status"] = json!({"phase":"Running","reason":"NodeLost"});
        assert_eq!(
            cells(&table("", "pods", vec![p.clone()], at(1)), 0)[2],
            "Unknown"
        );
        p["status"] = json!({"phase":"Succeeded"});
        let t = table("", "pods", vec![p], at(1));
        assert_eq!(cells(&t, 0)[2], "Succeeded");
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
    }

    #[test]
    fn pod_init_containers() {
        let mut p = lesson_pod();
        p["spec"]["initContainers"] = json!([{"name":"i1"},{"name":"i2"},
            {"name":"side","restartPolicy":"Always"}]);
        p["status"] = json!({"phase":"Pending","initContainerStatuses":[
            {"name":"i1","state":{"terminated":{"exitCode":0}}},
            {"name":"i2","state":{"running":{}}}]});
        let c = cells(&table("", "pods", vec![p.clone()], at(1)), 0);
        assert_eq!(c[1], "0/2");
        assert_eq!(c[2], "Init:1/3");
        p["status"]["initContainerStatuses"][1] =
            json!({"name":"i2","state":{"waiting":{"reason":"ErrImagePull"}}});
        assert_eq!(
            cells(&table("", "pods", vec![p.clone()], at(1)), 0)[2],
            "Init:ErrImagePull"
        );
        p["status"]["initContainerStatuses"][1] =
            json!({"name":"i2","state":{"terminated":{"exitCode":2}}});
        assert_eq!(
            cells(&table("", "pods", vec![p], at(1)), 0)[2],
            "Init:ExitCode:2"
        );
    }

    #[test]
    fn node_table() {
        let node = json!({"apiVersion":"v1","kind":"Node",
            "metadata":{"name":"node-1","creationTimestamp":T0,
                "labels":{"kubernetes.io/hostname":"node-1","node-role.kubernetes.io/worker":"",
                    "node-role.kubernetes.io/control-plane":"","kubernetes.io/role":"edge"}},
            "spec":{"unschedulable":true},
            "status":{"conditions":[{"type":"MemoryPressure","status":"False"},
                {"type":"Ready","status":"False"}],
                "addresses":[{"type":"InternalIP","address":"127.0.0.1"},
                    {"type":"Hostname","address":"node-1"}],
                "nodeInfo":{"kubeletVersion":"v1.33.1","osImage":"Debian GNU/Linux 12 (bookworm)",
                    "kernelVersion":"6.1.0","containerRuntimeVersion":""}}});
        let t = table("", "nodes", vec![node], at(2 * 86400 + 3 * 3600));
        assert_eq!(
            headers(&t),
            [
                "NAME",
                "STATUS",
                "ROLES",
                "AGE",
                "VERSION",
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            strs(&[
                "node-1",
                "NotReady,SchedulingDisabled",
                "control-plane,edge,worker",
                "2d3h",
                "v1.33.1",
                "127.0.0.1",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0",
                "<unknown>"
            ])
        );
        let bare = json!({"metadata":{"name":"n"}});
        let c = cells(&table("", "nodes", vec![bare], at(1)), 0);
        assert_eq!(c[1], "Unknown");
        assert_eq!(c[2], "<none>");
        assert_eq!(c[3], "<unknown>");
    }

    #[test]
    fn event_table() {
        let ev = json!({"apiVersion":"v1","kind":"Event",
            "metadata":{"name":"example-local-claim.1","namespace":"default","creationTimestamp":T0},
            "involvedObject":{"kind":"PersistentVolumeClaim","name":"example-local-claim",
                "namespace":"default"},
            "reason":"WaitForFirstConsumer",
            "message":"waiting for first consumer to be created before binding\n",
            "source":{"component":"persistentvolume-controller"},
            "firstTimestamp":T0,"lastTimestamp":"2026-01-01T00:01:00Z","count":4,"type":"Normal"});
        let t = table("", "events", vec![ev], at(90));
        assert_eq!(
            headers(&t),
            [
                "LAST SEEN",
                "TYPE",
                "REASON",
                "OBJECT",
                "SUBOBJECT",
                "SOURCE",
                "MESSAGE",
                "FIRST SEEN",
                "COUNT",
                "NAME"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            vec![
                json!("30s"),
                json!("Normal"),
                json!("WaitForFirstConsumer"),
                json!("persistentvolumeclaim/example-local-claim"),
                json!(""),
                json!("persistentvolume-controller"),
                json!("waiting for first consumer to be created before binding"),
                json!("90s"),
                json!(4),
                json!("example-local-claim.1"),
            ]
        );
        // New-style event: eventTime, reportingComponent/instance, no count.
        let ev = json!({"metadata":{"name":"e2"},"eventTime":"2026-01-01T00:00:00.123456Z",
            "reportingComponent":"bonsai-scheduler","reportingInstance":"node-1",
            "involvedObject":{"kind":"Pod","name":"p"},"type":"Warning","reason":"FailedScheduling",
            "message":"0/1 nodes are available"});
        let c = cells(&table("", "events", vec![ev], at(10)), 0);
        assert_eq!(c[0], "9s");
        assert_eq!(c[5], "bonsai-scheduler, node-1");
        assert_eq!(c[7], "9s");
        assert_eq!(c[8], 1);
        // Narrow output drops the priority-1 columns and their cells together.
        let objs = vec![Arc::new(json!({"metadata":{"name":"x"},"type":"Normal"}))];
        let narrow = to_table("", "events", &objs, "1", Some("tok"), "None", false, at(1)).unwrap();
        assert_eq!(
            headers(&narrow),
            ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        );
        assert_eq!(cells(&narrow, 0).len(), 5);
        assert!(narrow["rows"][0].get("object").is_none());
        assert_eq!(narrow["metadata"]["continue"], "tok");
    }

    #[test]
    fn other_kinds() {
        let ns = json!({"metadata":{"name":"default","creationTimestamp":T0},
            "status":{"phase":"Active"}});
        let t = table("", "namespaces", vec![ns], at(45 * 86400));
        assert_eq!(headers(&t), ["NAME", "STATUS", "AGE"]);
        assert_eq!(cells(&t, 0), strs(&["default", "Active", "45d"]));

        let lease = json!({"metadata":{"name":"node-1","namespace":"kube-node-lease",
            "creationTimestamp":T0},"spec":{"holderIdentity":"node-1"}});
        let t = table("coordination.k8s.io", "leases", vec![lease], at(61));
        assert_eq!(headers(&t), ["NAME", "HOLDER", "AGE"]);
        assert_eq!(cells(&t, 0), strs(&["node-1", "node-1", "61s"]));

        let drv = json!({"metadata":{"name":"local.csi.bonsai.dev","creationTimestamp":T0},
            "spec":{"attachRequired":false,"volumeLifecycleModes":["Persistent","Ephemeral"],
                "tokenRequests":[{"audience":"a"},{"audience":"b"}]}});
        let t = table("storage.k8s.io", "csidrivers", vec![drv], at(1));
        assert_eq!(
            headers(&t),
            [
                "NAME",
                "ATTACHREQUIRED",
                "PODINFOONMOUNT",
                "STORAGECAPACITY",
                "TOKENREQUESTS",
                "REQUIRESREPUBLISH",
                "MODES",
                "AGE"
            ]
        );
        assert_eq!(
            cells(&t, 0),
            vec![
                json!("local.csi.bonsai.dev"),
                json!(false),
                json!(false),
                json!(false),
                json!("a,b"),
                json!(false),
                json!("Persistent,Ephemeral"),
                json!("1s")
            ]
        );

        let cap = json!({"metadata":{"name":"csisc-1","namespace":"kube-system"},
            "storageClassName":"local-storage","capacity":"10240Mi"});
        let t = table("storage.k8s.io", "csistoragecapacities", vec![cap], at(1));
        assert_eq!(headers(&t), ["NAME", "STORAGECLASSNAME", "CAPACITY"]);
        assert_eq!(cells(&t, 0), strs(&["csisc-1", "local-storage", "10Gi"]));

        let other =
            json!({"metadata":{"name":"x","creationTimestamp":"2026-01-01T01:00:00+01:00"}});
        let t = table("example.com", "widgets", vec![other], at(1));
        assert_eq!(headers(&t), ["NAME", "CREATED AT"]);
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(cells(&t, 0), strs(&["x", T0]));

        let objs = vec![Arc::new(json!({"metadata":{"name":"x"}}))];
        assert!(to_table("", "pods", &objs, "1", None, "Bogus", true, at(0)).is_none());
        let full = to_table("", "pods", &objs, "1", None, "Object", true, at(0)).unwrap();
        assert_eq!(full["rows"][0]["object"], json!({"metadata":{"name":"x"}}));
    }

    #[test]
    fn json_bytes_equal_the_value() {
        let objs: Vec<Arc<Value>> = vec![
            Arc::new(lesson_pod()),
            Arc::new(json!({"metadata":{"name":"bare"}})),
        ];
        for inc in ["Metadata", "None", "Object"] {
            for wide in [true, false] {
                let v = to_table("", "pods", &objs, "9", Some("c"), inc, wide, at(5)).unwrap();
                let b = to_table_json("", "pods", &objs, "9", Some("c"), inc, wide, at(5)).unwrap();
                assert_eq!(serde_json::from_slice::<Value>(&b).unwrap(), v);
            }
        }
        assert!(to_table_json("", "pods", &objs, "9", None, "x", true, at(5)).is_none());
    }

    #[test]
    fn human_durations() {
        let s = |secs: i128| human_duration(secs * 1_000_000_000);
        assert_eq!(human_duration(-2_500_000_000), "<invalid>");
        assert_eq!(human_duration(-1_500_000_000), "0s");
        assert_eq!(s(0), "0s");
        assert_eq!(s(16), "16s");
        assert_eq!(s(119), "119s");
        assert_eq!(s(120), "2m");
        assert_eq!(s(130), "2m10s");
        assert_eq!(s(600), "10m");
        assert_eq!(s(179 * 60 + 59), "179m");
        assert_eq!(s(3 * 3600), "3h");
        assert_eq!(s(3 * 3600 + 5 * 60), "3h5m");
        assert_eq!(s(6 * 3600), "6h");
        assert_eq!(s(47 * 3600), "47h");
        assert_eq!(s(51 * 3600), "2d3h");
        assert_eq!(s(7 * 86400), "7d");
        assert_eq!(s(400 * 86400), "400d");
        assert_eq!(s(3 * 365 * 86400 + 10 * 86400), "3y10d");
        assert_eq!(s(4 * 365 * 86400), "4y");
        assert_eq!(s(9 * 365 * 86400), "9y");
        assert_eq!(translate_timestamp_since("", 0), "<unknown>");
        assert_eq!(
            translate_timestamp_since("0001-01-01T00:00:00Z", 0),
            "<unknown>"
        );
    }

    #[test]
    fn quantities() {
        for (input, want) in [
            ("5Gi", "5Gi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("1000M", "1G"),
            ("1500M", "1500M"),
            ("0.5", "500m"),
            ("100Ki", "100Ki"),
            ("0.5Ki", "512"),
            ("1023", "1023"),
            ("1024", "1024"),
            ("5368709120", "5368709120"),
            ("1e3", "1e3"),
            ("1E6", "1e6"),
            ("0", "0"),
            ("0Gi", "0"),
            ("10G", "10G"),
            ("1024220Ki", "1024220Ki"),
            ("-5Gi", "-5Gi"),
            ("0.0000000001", "1n"),
            ("12x", "12x"),
        ] {
            assert_eq!(format_quantity(input), want, "{input}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("nope"), None);
        let t = parse_rfc3339("2024-02-29T12:34:56Z").unwrap();
        assert_eq!(format_rfc3339(t), "2024-02-29T12:34:56Z");
    }
}
