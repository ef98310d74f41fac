//! The vocabulary between the core and whoever drives it (the tokio driver, the tests, the
//! simulator): inputs (`WatchEvent`, `Completion`), outputs (`Output` = `RequestId` +
//! `Request`), and time (`Millis`).

use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Wall-clock time in milliseconds since the Unix epoch, read by the driver and passed in.
/// The core uses it for its resync timer and for Event timestamps; it never reads a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `self + ms`, saturating.
    pub fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// As a `metav1.Time` (second precision on the wire, as Kubernetes serialises it).
    pub fn to_time(self) -> Time {
        Time(
            k8s_openapi::jiff::Timestamp::from_millisecond(self.0 as i64)
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        )
    }
}

/// Identifies one request the core asked for; the driver echoes it in `handle_completion`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// One watch notification for a kind, in the kube-runtime watcher's shape reduced to what a
/// cache needs. A relist (startup, 410 Gone, dropped connection) arrives as `Relisted` with
/// the complete current list, so the core handles every restart the same way.
#[derive(Clone, Debug)]
pub enum WatchEvent<K> {
    /// An object was added or modified.
    Applied(K),
    /// An object was deleted (its last known state).
    Deleted(K),
    /// The watch (re)started: this is everything that exists now.
    Relisted(Vec<K>),
}

/// A request for the driver. Every write carries the object as the core read it, including
/// `metadata.resourceVersion`: the API server rejects it with 409 Conflict if the object
/// changed since, and the core treats that as an ordinary input.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// PUT /api/v1/persistentvolumes/{name} (spec and metadata).
    UpdateVolume(PersistentVolume),
    /// PUT /api/v1/persistentvolumes/{name}/status.
    UpdateVolumeStatus(PersistentVolume),
    /// PUT /api/v1/namespaces/{ns}/persistentvolumeclaims/{name} (spec and metadata).
    UpdateClaim(PersistentVolumeClaim),
    /// PUT /api/v1/namespaces/{ns}/persistentvolumeclaims/{name}/status.
    UpdateClaimStatus(PersistentVolumeClaim),
    /// GET one claim live from the API (syncVolume double-checks a missing claim before
    /// releasing a volume, as upstream does). Answer with `Completion::ClaimRead`.
    GetClaim { namespace: String, name: String },
    /// LIST pods of a namespace live (the pvc-protection controller's last check before it
    /// removes the finalizer). Answer with `Completion::PodList`.
    ListPods { namespace: String },
    /// POST an Event.
    CreateEvent(Event),
    /// Bump a recorded Event (client-go's correlator): merge-patch `count` and
    /// `lastTimestamp` of `namespace/name`. On NotFound the core re-creates it.
    PatchEvent {
        namespace: String,
        name: String,
        count: i32,
        last_timestamp: Time,
    },
}

impl Request {
    /// A short label for logs and metrics.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::UpdateVolume(_) => "update_pv",
            Request::UpdateVolumeStatus(_) => "update_pv_status",
            Request::UpdateClaim(_) => "update_pvc",
            Request::UpdateClaimStatus(_) => "update_pvc_status",
            Request::GetClaim { .. } => "get_pvc",
            Request::ListPods { .. } => "list_pods",
            Request::CreateEvent(_) => "create_event",
            Request::PatchEvent { .. } => "patch_event",
        }
    }
}

/// A request plus its id.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub id: RequestId,
    pub request: Request,
}

/// How a request ended. Conflict and NotFound are expected outcomes, not errors.
// Objects travel by value once per request; boxing them would buy nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Completion {
    /// A PV write succeeded; the object as stored (new resourceVersion).
    Volume(PersistentVolume),
    /// A PVC write succeeded; the object as stored. (A finalizer removal that let the API
    /// server delete the object also lands here.)
    Claim(PersistentVolumeClaim),
    /// The answer to `GetClaim`: the claim, or `None` when it does not exist.
    ClaimRead(Option<PersistentVolumeClaim>),
    /// The answer to `ListPods`.
    PodList(Vec<Pod>),
    /// An Event was created or patched.
    Event(Event),
    /// 409: the object changed since the core read it.
    Conflict,
    /// 404: the object is gone.
    NotFound,
    /// Anything else (transport error, 5xx, validation). Upstream does not retry through the
    /// queue; the next watch event or resync does.
    Failed(String),
}
