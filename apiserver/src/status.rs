//! `ApiError`: the one error type that crosses the HTTP boundary as a Kubernetes `Status`.
//!
//! Every layer that can reject a request (store preconditions, semantics, routing) produces an
//! `ApiError` with the HTTP code and `reason` kube-apiserver would use, so the client sees the
//! same `Error from server (<reason>): <message>` line as against a real cluster.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One cause of a 422 Invalid (or a 409 server-side-apply conflict): `details.causes[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    /// e.g. `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueForbidden`, `FieldValueDuplicate`, `FieldManagerConflict`.
    pub reason: String,
    pub message: String,
    /// The field path, e.g. `spec.nodeAffinity` (kube-apiserver's spelling, no leading dot,
    /// except server-side-apply conflicts which use `.spec.x`).
    pub field: String,
}

/// A rejected request, as kube-apiserver's `metav1.Status` describes it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code: 400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 500, 503…
    pub code: u16,
    /// Machine-readable reason: NotFound, AlreadyExists, Conflict, Invalid, BadRequest,
    /// Expired, Gone, MethodNotAllowed, UnsupportedMediaType, RequestEntityTooLarge,
    /// Unauthorized, Forbidden, InternalError, ServiceUnavailable, Timeout.
    pub reason: String,
    pub message: String,
    /// `details.name`
    pub name: Option<String>,
    /// `details.group`
    pub group: Option<String>,
    /// `details.kind`: the resource (e.g. `persistentvolumes`) for NotFound/AlreadyExists,
    /// the Kind (e.g. `PersistentVolume`) for Invalid — as kube-apiserver does.
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
        }
    }

    pub fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.group = (!group.is_empty()).then(|| group.to_string());
        self.kind = Some(kind.to_string());
        self.name = Some(name.to_string());
        self
    }

    /// `resource` is plural lowercase, `group` empty for core.
    fn qualified(group: &str, resource: &str) -> String {
        if group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
        }
    }

    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let q = Self::qualified(group, resource);
        Self::new(404, "NotFound", format!("{q} \"{name}\" not found"))
            .with_details(group, resource, name)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let q = Self::qualified(group, resource);
        Self::new(
            409,
            "AlreadyExists",
            format!("{q} \"{name}\" already exists"),
        )
        .with_details(group, resource, name)
    }

    /// The stale-resourceVersion conflict, in kube-apiserver's words.
    pub fn conflict(group: &str, resource: &str, name: &str) -> Self {
        let q = Self::qualified(group, resource);
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {q} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
        )
        .with_details(group, resource, name)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422 Invalid: `Kind "name" is invalid: field: msg, field: msg`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {summary}"),
        )
        .with_details(group, kind, name);
        e.causes = causes;
        e
    }

    /// 410 Expired, e.g. `too old resource version: 5 (101)`.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object, as sent in a response body or a watch ERROR event.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(n) = &self.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &self.group {
            details.insert("group".into(), json!(g));
        }
        if let Some(k) = &self.kind {
            details.insert("kind".into(), json!(k));
        }
        if !self.causes.is_empty() {
            details.insert(
                "causes".into(),
                serde_json::to_value(&self.causes).unwrap_or_default(),
            );
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}
