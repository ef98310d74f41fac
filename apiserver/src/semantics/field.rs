//! `field.Error` as apimachinery formats it, and the name/label/annotation checks
//! (`k8s.io/apimachinery/pkg/util/validation`) with their exact messages.

use serde_json::Value;

use crate::status::Cause;

/// One validation failure: a cause of a 422 Invalid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

/// Formats a bad value the way `field.Error.ErrorBody` does (`%q` for strings, `%d`/`%v` else).
pub fn fmt_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Go's `%v` of a decoded JSON value (`map[a:1 b:[x y]]`, keys sorted), as kube-apiserver
/// prints a strategic merge patch in its errors.
pub fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_fmt(&m[k.as_str()])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `%q` for the common (printable) case.
pub fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

impl FieldError {
    pub fn required(field: &str, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired",
            message,
        }
    }
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        let v = fmt_value(value);
        let message = if detail.is_empty() {
            format!("Invalid value: {v}")
        } else {
            format!("Invalid value: {v}: {detail}")
        };
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid",
            message,
        }
    }
    pub fn invalid_str(field: &str, value: &str, detail: &str) -> Self {
        Self::invalid(field, &Value::String(value.into()), detail)
    }
    pub fn not_supported(field: &str, value: &Value, valid: &[&str]) -> Self {
        let list: Vec<String> = valid.iter().map(|s| go_quote(s)).collect();
        let message = format!(
            "Unsupported value: {}: supported values: {}",
            fmt_value(value),
            list.join(", ")
        );
        FieldError {
            field: field.into(),
            reason: "FieldValueNotSupported",
            message,
        }
    }
    pub fn forbidden(field: &str, detail: &str) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
        }
    }
    pub fn duplicate(field: &str, value: &Value) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {}", fmt_value(value)),
        }
    }
    pub fn too_long(field: &str, max: usize) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }
    pub fn too_many(field: &str, actual: usize, max: usize) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueTooMany",
            message: format!("Too many: {actual}: must have at most {max} items"),
        }
    }
    pub fn to_cause(&self) -> Cause {
        Cause {
            reason: self.reason.to_string(),
            message: self.message.clone(),
            field: self.field.clone(),
        }
    }
}

/// Accumulates errors; the order is the order kube-apiserver's validators append them.
#[derive(Default, Debug)]
pub struct Errs(pub Vec<FieldError>);

impl Errs {
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// ---- names (k8s.io/apimachinery/pkg/util/validation) ----

pub const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
pub const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME_ERR: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

pub fn is_dns1123_label_fmt(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// `IsDNS1123Label`: the list of problems (empty when valid).
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !is_dns1123_label_fmt(s) {
        errs.push(DNS1123_LABEL_ERR.to_string());
    }
    errs
}

/// `IsDNS1123Subdomain`.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if !is_dns1123_subdomain_fmt(s) {
        errs.push(DNS1123_SUBDOMAIN_ERR.to_string());
    }
    errs
}

/// `s.split('.').all(is_dns1123_label_fmt)` for a non-empty `s`, in one pass over its bytes:
/// every byte is a lower-case letter, a digit, `-` or `.`, the first and the last are
/// alphanumeric, and every `.` sits between two alphanumerics (no label is empty or starts or
/// ends with `-`). Names, namespaces and label prefixes of every write come here.
fn is_dns1123_subdomain_fmt(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    if !is_lower_alnum(first) || !is_lower_alnum(last) {
        return false;
    }
    b.iter().enumerate().all(|(i, &c)| match c {
        b'.' => is_lower_alnum(b[i - 1]) && is_lower_alnum(b[i + 1]),
        b'-' => true,
        _ => is_lower_alnum(c),
    })
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// `IsQualifiedName` (label and annotation keys).
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    // One '/' at most (split without collecting: every label and annotation key comes here).
    let name = match s.split_once('/') {
        None => s,
        Some((prefix, n)) if !n.contains('/') => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            n
        }
        Some(_) => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_ERR_SHORT} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )]
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        errs.push(QUALIFIED_NAME_ERR.to_string());
    }
    errs
}
const QUALIFIED_NAME_ERR_SHORT: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// `IsValidLabelValue`.
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !s.is_empty() && !is_qualified_name_part(s) {
        errs.push(LABEL_VALUE_ERR.to_string());
    }
    errs
}

/// Path helpers: `spec.containers[0].name`, `metadata.labels` etc.
// Validation builds the path of every field it visits, errors or not: these are on every
// write's path, so they concatenate directly instead of going through `format!`.
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        let mut s = String::with_capacity(path.len() + 1 + key.len());
        s.push_str(path);
        s.push('.');
        s.push_str(key);
        s
    }
}
pub fn index(path: &str, i: usize) -> String {
    let mut s = String::with_capacity(path.len() + 4);
    s.push_str(path);
    s.push('[');
    if i < 10 {
        s.push((b'0' + i as u8) as char);
    } else {
        s.push_str(&i.to_string());
    }
    s.push(']');
    s
}
pub fn key(path: &str, k: &str) -> String {
    let mut s = String::with_capacity(path.len() + 2 + k.len());
    s.push_str(path);
    s.push('[');
    s.push_str(k);
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn qualified_names_split_at_one_slash() {
        assert!(qualified_name("app").is_empty());
        assert!(qualified_name("example.com/owner").is_empty());
        assert_eq!(qualified_name("/x"), vec!["prefix part must be non-empty"]);
        assert_eq!(qualified_name("a.b/"), vec!["name part must be non-empty"]);
        assert_eq!(qualified_name("a/b/c").len(), 1);
        assert!(qualified_name("a/b/c")[0].starts_with("a qualified name must consist"));
        assert_eq!(qualified_name("//").len(), 1);
    }

    #[test]
    fn paths_are_formatted_as_before() {
        for i in [0, 7, 9, 10, 42, 1000] {
            assert_eq!(index("spec.containers", i), format!("spec.containers[{i}]"));
        }
        assert_eq!(child("", "spec"), "spec");
        assert_eq!(child("spec", "volumes"), "spec.volumes");
        assert_eq!(key("metadata.labels", "app"), "metadata.labels[app]");
    }
    proptest::proptest! {
        /// The one-pass subdomain check says what splitting into labels says.
        #[test]
        fn subdomain_in_one_pass(s in "[a-z0-9.A_-]{0,12}") {
            let split = !s.is_empty() && s.split('.').all(is_dns1123_label_fmt);
            proptest::prop_assert_eq!(is_dns1123_subdomain_fmt(&s), split);
        }
    }

    #[test]
    fn names() {
        assert!(dns1123_subdomain("local-pv-1").is_empty());
        assert!(dns1123_subdomain("a.b-c").is_empty());
        assert_eq!(
            dns1123_subdomain("Bad_Name"),
            vec![DNS1123_SUBDOMAIN_ERR.to_string()]
        );
        assert!(!dns1123_label("a.b").is_empty());
        assert!(qualified_name("kubernetes.io/hostname").is_empty());
        assert!(!qualified_name("a/b/c").is_empty());
        assert!(label_value("").is_empty());
        assert!(!label_value("-x").is_empty());
    }
}
