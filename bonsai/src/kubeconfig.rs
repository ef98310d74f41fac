//! The kubeconfig bonsai writes (`<data-dir>/kubeconfig`) and its merge into `~/.kube/config`.
//!
//! The file names one cluster, user and context, all called `bonsai`: HTTPS on loopback with
//! bonsai's own CA (see `tls`) and the bearer token. Merging replaces only entries named `bonsai` and keeps every other
//! cluster, user, context and setting of the user's file.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::datadir::write_private;
use crate::error::CliError;

pub const NAME: &str = "bonsai";

fn entries(server: &str, token: &str, ca_pem: &str) -> (Value, Value, Value) {
    (
        json!({"name": NAME, "cluster": {
            "server": server,
            "certificate-authority-data": base64(ca_pem.as_bytes()),
        }}),
        json!({"name": NAME, "user": {"token": token}}),
        json!({"name": NAME, "context": {"cluster": NAME, "user": NAME, "namespace": "default"}}),
    )
}

/// Standard base64 with padding (kubeconfig `*-data` fields).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Writes `<data-dir>/kubeconfig` (mode 0600): https on loopback, bonsai's CA, the token.
pub fn write(path: &Path, port: u16, token: &str, ca_pem: &str) -> Result<(), CliError> {
    let server = format!("https://127.0.0.1:{port}");
    let (cluster, user, context) = entries(&server, token, ca_pem);
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [user],
        "contexts": [context],
        "current-context": NAME,
        "preferences": {},
    });
    let yaml = serde_norway::to_string(&doc).map_err(|e| CliError::Kubeconfig {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_private(path, yaml.as_bytes())
}

/// Reads server and token back from a kubeconfig's `bonsai` entries.
#[cfg(test)]
pub fn read_server_and_token(path: &Path) -> Result<(String, String), CliError> {
    let doc = read_yaml(path)?;
    let find = |list: &str, field: &[&str]| -> Option<String> {
        let entry = doc
            .get(list)?
            .as_array()?
            .iter()
            .find(|e| e["name"] == NAME)?;
        let mut v = entry;
        for f in field {
            v = v.get(f)?;
        }
        v.as_str().map(str::to_string)
    };
    match (
        find("clusters", &["cluster", "server"]),
        find("users", &["user", "token"]),
    ) {
        (Some(s), Some(t)) => Ok((s, t)),
        _ => Err(CliError::Kubeconfig {
            path: path.to_path_buf(),
            message: "no bonsai cluster/user in it".into(),
        }),
    }
}

fn read_yaml(path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(CliError::io("reading", path))?;
    if text.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_norway::from_str(&text).map_err(|e| CliError::Kubeconfig {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `~/.kube/config`
pub fn user_kubeconfig() -> Result<PathBuf, CliError> {
    let home = std::env::var_os("HOME").ok_or_else(|| CliError::Kubeconfig {
        path: PathBuf::from("~/.kube/config"),
        message: "HOME is not set".into(),
    })?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

/// What `merge` did, for the message to the user.
pub struct Merged {
    pub path: PathBuf,
    pub replaced: bool,
    pub previous_context: Option<String>,
}

/// Adds or updates the `bonsai` cluster, user and context in `target` (created if absent)
/// and makes `bonsai` the current context, as kind and minikube do. Everything else stays.
pub fn merge(source: &Path, target: &Path) -> Result<Merged, CliError> {
    let ours = read_yaml(source)?;
    let own = |list: &str| -> Result<Value, CliError> {
        ours.get(list)
            .and_then(Value::as_array)
            .and_then(|l| l.iter().find(|e| e["name"] == NAME))
            .cloned()
            .ok_or_else(|| CliError::Kubeconfig {
                path: source.to_path_buf(),
                message: format!("no bonsai entry in {list}"),
            })
    };
    let (cluster, user, context) = (own("clusters")?, own("users")?, own("contexts")?);
    let mut doc = if target.exists() {
        read_yaml(target)?
    } else {
        json!({})
    };
    let Some(obj) = doc.as_object_mut() else {
        return Err(CliError::Kubeconfig {
            path: target.to_path_buf(),
            message: "not a kubeconfig (top level is not a mapping)".into(),
        });
    };
    obj.entry("apiVersion").or_insert(json!("v1"));
    obj.entry("kind").or_insert(json!("Config"));
    let mut replaced = false;
    for (list, entry) in [
        ("clusters", cluster),
        ("users", user),
        ("contexts", context),
    ] {
        let slot = obj.entry(list).or_insert(json!([]));
        if slot.is_null() {
            *slot = json!([]);
        }
        let Some(items) = slot.as_array_mut() else {
            return Err(CliError::Kubeconfig {
                path: target.to_path_buf(),
                message: format!("{list} is not a list"),
            });
        };
        match items.iter_mut().find(|e| e["name"] == NAME) {
            Some(existing) => {
                *existing = entry;
                replaced = true;
            }
            None => items.push(entry),
        }
    }
    let previous_context = obj
        .get("current-context")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty() && *c != NAME)
        .map(str::to_string);
    obj.insert("current-context".into(), json!(NAME));
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(CliError::io("creating", parent))?;
    }
    let yaml = serde_norway::to_string(&doc).map_err(|e| CliError::Kubeconfig {
        path: target.to_path_buf(),
        message: e.to_string(),
    })?;
    write_private(target, yaml.as_bytes())?;
    Ok(Merged {
        path: target.to_path_buf(),
        replaced,
        previous_context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_other_entries_and_updates_bonsai() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = tmp.path().join("kubeconfig");
        write(&ours, 7443, "tok-1", "CA").unwrap();
        let theirs = tmp.path().join("home/.kube/config");
        std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
        std::fs::write(
            &theirs,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod:6443\n\
             users:\n- name: admin\n  user:\n    token: secret\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: admin\n\
             current-context: prod\npreferences: {}\n",
        )
        .unwrap();
        let m = merge(&ours, &theirs).unwrap();
        assert!(!m.replaced);
        assert_eq!(m.previous_context.as_deref(), Some("prod"));
        // Second merge after a port change updates in place.
        write(&ours, 8443, "tok-2", "CA").unwrap();
        let m = merge(&ours, &theirs).unwrap();
        assert!(m.replaced);
        let doc = read_yaml(&theirs).unwrap();
        assert_eq!(doc["clusters"].as_array().unwrap().len(), 2);
        assert_eq!(doc["users"].as_array().unwrap().len(), 2);
        assert_eq!(doc["contexts"].as_array().unwrap().len(), 2);
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://prod:6443");
        assert_eq!(doc["users"][0]["user"]["token"], "secret");
        assert_eq!(doc["current-context"], "bonsai");
        let (server, token) = read_server_and_token(&theirs).unwrap();
        assert_eq!(server, "https://127.0.0.1:8443");
        assert_eq!(token, "tok-2");
    }

    #[test]
    fn merge_creates_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = tmp.path().join("kubeconfig");
        write(&ours, 6443, "t", "CA").unwrap();
        let target = tmp.path().join("new/.kube/config");
        merge(&ours, &target).unwrap();
        let (server, _) = read_server_and_token(&target).unwrap();
        assert_eq!(server, "https://127.0.0.1:6443");
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hi"), "aGk=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
