//! Parsing a Kubernetes REST path into what it addresses. Written by hand rather than as axum
//! routes because the shapes overlap (`/api/v1/namespaces/x` is an object, `/api/v1/namespaces/x/pods`
//! a collection, `/api/v1/namespaces/x/status` a subresource) and every miss must still be a
//! Kubernetes `Status`.

use std::borrow::Cow;

use super::resources::{self, Resource};
use crate::status::ApiError;

/// What a resource path addresses.
#[derive(Debug, Clone)]
pub struct Target {
    pub resource: &'static Resource,
    /// `Some` for a namespaced path; `None` for cluster-scoped objects or "all namespaces".
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// The discovery and resource paths.
#[derive(Debug, Clone)]
pub enum Route {
    /// `/api`
    ApiVersions,
    /// `/apis`
    ApiGroups,
    /// `/apis/<group>`
    ApiGroup(String),
    /// `/api/v1`, `/apis/<g>/<v>`
    ResourceList {
        group: String,
        version: String,
    },
    Resource(Target),
}

/// kube-apiserver answers unknown paths with a plain-text 404; kubectl turns it into "the
/// server could not find the requested resource". We send a Status with the same meaning.
pub fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// Parses `/api...` and `/apis...` paths. Segments are percent-decoded.
pub fn parse(path: &str) -> Result<Route, ApiError> {
    // Kubernetes paths have at most 8 segments (/apis/<g>/<v>/namespaces/<ns>/<res>/<n>/<sub>);
    // a longer one addresses nothing. Segments are borrowed unless percent-encoded.
    const MAX: usize = 8;
    let mut decoded: [Cow<str>; MAX] = Default::default();
    let mut n = 0;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if n == MAX {
            return Err(not_found_path());
        }
        decoded[n] = percent_decode(seg);
        n += 1;
    }
    let mut segs: [&str; MAX] = [""; MAX];
    for (s, d) in segs.iter_mut().zip(&decoded[..n]) {
        *s = d;
    }
    let (group, version, rest): (&str, &str, &[&str]) = match &segs[..n] {
        ["api"] => return Ok(Route::ApiVersions),
        ["apis"] => return Ok(Route::ApiGroups),
        ["api", v, rest @ ..] => ("", v, rest),
        ["apis", g] => return Ok(Route::ApiGroup(g.to_string())),
        ["apis", g, v, rest @ ..] => (g, v, rest),
        _ => return Err(not_found_path()),
    };
    if !resources::serves_group_version(group, version) {
        return Err(not_found_path());
    }
    if rest.is_empty() {
        return Ok(Route::ResourceList {
            group: group.to_string(),
            version: version.to_string(),
        });
    }
    let find = |name: &str| resources::find(group, version, name).ok_or_else(not_found_path);
    let target = match rest {
        // /namespaces/<ns>/<res>[/<name>[/<sub>]] — unless <res> is a namespace subresource.
        ["namespaces", ns, res, more @ ..]
            if !(group.is_empty() && more.is_empty() && matches!(*res, "status" | "finalize")) =>
        {
            let r = find(res)?;
            if !r.namespaced {
                return Err(not_found_path());
            }
            let (name, sub) = match more {
                [] => (None, None),
                [n] => (Some(n.to_string()), None),
                [n, s] => (Some(n.to_string()), Some(s.to_string())),
                _ => return Err(not_found_path()),
            };
            Target {
                resource: r,
                namespace: Some(ns.to_string()),
                name,
                subresource: sub,
            }
        }
        [res, more @ ..] => {
            let r = find(res)?;
            let (name, sub) = match more {
                [] => (None, None),
                // A namespaced object is only addressed under /namespaces/<ns>/.
                [_, ..] if r.namespaced => return Err(not_found_path()),
                [n] => (Some(n.to_string()), None),
                [n, s] => (Some(n.to_string()), Some(s.to_string())),
                _ => return Err(not_found_path()),
            };
            Target {
                resource: r,
                namespace: None,
                name,
                subresource: sub,
            }
        }
        [] => unreachable!("checked above"),
    };
    if let Some(s) = &target.subresource {
        if target.resource.subresource(s).is_none() {
            return Err(not_found_path());
        }
    }
    Ok(Route::Resource(target))
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(p: &str) -> Target {
        match parse(p).unwrap() {
            Route::Resource(t) => t,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn parses_kubernetes_paths() {
        let t = target("/api/v1/namespaces/default/pods/web/log");
        assert_eq!(
            (
                t.resource.name,
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.subresource.as_deref()
            ),
            ("pods", Some("default"), Some("web"), Some("log"))
        );
        let t = target("/api/v1/namespaces/kube-system");
        assert_eq!(
            (t.resource.name, t.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let t = target("/api/v1/namespaces/x/status");
        assert_eq!(
            (t.resource.name, t.subresource.as_deref()),
            ("namespaces", Some("status"))
        );
        let t = target("/api/v1/pods");
        assert_eq!((t.resource.name, t.namespace.as_deref()), ("pods", None));
        let t = target("/apis/storage.k8s.io/v1/storageclasses/local");
        assert_eq!(t.name.as_deref(), Some("local"));
        assert!(matches!(parse("/apis").unwrap(), Route::ApiGroups));
        assert!(parse("/api/v1/widgets").is_err());
        assert!(parse("/api/v1/pods/web").is_err());
        assert!(parse("/api/v1/namespaces/x/persistentvolumes").is_err());
        assert!(parse("/api/v1/namespaces/x/pods/web/attach").is_err());
        assert!(parse("/apis/apps/v1/deployments").is_err());
    }
}
