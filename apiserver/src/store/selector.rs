//! Label and field selectors, in Kubernetes' syntax and with its error texts
//! (apimachinery `pkg/labels/selector.go`, `pkg/fields/selector.go`), and the selectable
//! fields per resource (each kind's `ToSelectableFields` in kube-apiserver).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// A selector that could not be parsed or is not supported; the text is what kube-apiserver says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// One label requirement's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOp {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// `key op values`: one term of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: LabelOp,
    /// Sorted, deduplicated (a Go `sets.String`).
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &dyn Fn(&str) -> Option<String>) -> bool {
        let v = labels(&self.key);
        match self.op {
            LabelOp::Equals | LabelOp::In => v.is_some_and(|v| self.values.contains(&v)),
            LabelOp::NotEquals | LabelOp::NotIn => v.is_none_or(|v| !self.values.contains(&v)),
            LabelOp::Exists => v.is_some(),
            LabelOp::DoesNotExist => v.is_none(),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let (Some(v), Some(bound)) = (v, self.values.first()) else {
                    return false;
                };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

/// A parsed label selector: all requirements must hold (sorted by key, as upstream).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

/// Where labels come from: a plain map, or an object's `metadata.labels`.
pub trait Labels {
    fn label(&self, key: &str) -> Option<String>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

impl Labels for Value {
    /// An object: its `metadata.labels`. (A bare JSON map of strings works too.)
    fn label(&self, key: &str) -> Option<String> {
        let labels = self.pointer("/metadata/labels").unwrap_or(self);
        labels.get(key).and_then(Value::as_str).map(str::to_string)
    }
}

impl LabelSelector {
    /// True when the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let f = |k: &str| labels.label(k);
        self.requirements.iter().all(|r| r.matches(&f))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r.op {
                LabelOp::Exists => write!(f, "{}", r.key)?,
                LabelOp::DoesNotExist => write!(f, "!{}", r.key)?,
                LabelOp::Equals => write!(f, "{}={}", r.key, r.values[0])?,
                LabelOp::NotEquals => write!(f, "{}!={}", r.key, r.values[0])?,
                LabelOp::GreaterThan => write!(f, "{}>{}", r.key, r.values[0])?,
                LabelOp::LessThan => write!(f, "{}<{}", r.key, r.values[0])?,
                LabelOp::In => write!(f, "{} in ({})", r.key, r.values.join(","))?,
                LabelOp::NotIn => write!(f, "{} notin ({})", r.key, r.values.join(","))?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Error,
    End,
    ClosedPar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    GreaterThan,
    Ident,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn special(ch: u8) -> bool {
    matches!(ch, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn literal_token(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::Not,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::GreaterThan,
        "in" => Tok::In,
        "<" => Tok::LessThan,
        "!=" => Tok::NotEquals,
        "notin" => Tok::NotIn,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

/// Upstream's lexer, byte for byte (it works on bytes, so do we).
fn lex(s: &str) -> Vec<(Tok, String)> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < b.len() && matches!(b[pos], b' ' | b'\t' | b'\r' | b'\n') {
            pos += 1;
        }
        if pos >= b.len() {
            out.push((Tok::End, String::new()));
            return out;
        }
        if special(b[pos]) {
            let start = pos;
            let mut last: Option<(Tok, usize)> = None;
            while pos < b.len() && special(b[pos]) {
                let cand = &s[start..pos + 1];
                if let Some(t) = literal_token(cand) {
                    last = Some((t, pos + 1));
                    pos += 1;
                } else if last.is_some() {
                    break;
                } else {
                    pos += 1;
                }
            }
            match last {
                Some((t, end)) => {
                    pos = end;
                    out.push((t, s[start..end].to_string()));
                }
                None => {
                    out.push((
                        Tok::Error,
                        format!("error expected: keyword found '{}'", &s[start..pos]),
                    ));
                }
            }
        } else {
            let start = pos;
            while pos < b.len()
                && !special(b[pos])
                && !matches!(b[pos], b' ' | b'\t' | b'\r' | b'\n')
            {
                pos += 1;
            }
            let word = String::from_utf8_lossy(&b[start..pos]).into_owned();
            let t = literal_token(&word).unwrap_or(Tok::Ident);
            out.push((t, word));
        }
    }
}

struct Parser {
    items: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    /// In the `values` context `in` and `notin` are plain identifiers.
    fn look(&self, values: bool) -> (Tok, String) {
        let (t, l) = self.items[self.pos.min(self.items.len() - 1)].clone();
        (
            if values && matches!(t, Tok::In | Tok::NotIn) {
                Tok::Ident
            } else {
                t
            },
            l,
        )
    }
    fn consume(&mut self, values: bool) -> (Tok, String) {
        let r = self.look(values);
        self.pos += 1;
        r
    }
}

const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";
const QUALIFIED_NAME_FMT: &str = "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for \
     validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// apimachinery `IsQualifiedName` (which `IsLabelKey` is).
fn label_key_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else if !is_dns1123_subdomain(prefix) {
                errs.push(
                    "prefix part a lowercase RFC 1123 subdomain must consist of lower case \
                     alphanumeric characters, '-' or '.', and must start and end with an \
                     alphanumeric character (e.g. 'example.com', regex used for validation is \
                     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                        .to_string(),
                );
            }
            name
        }
        _ => {
            errs.push(format!(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and \
                 must start and end with an alphanumeric character {QUALIFIED_NAME_FMT} with an \
                 optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start \
             and end with an alphanumeric character {QUALIFIED_NAME_FMT}"
        ));
    }
    errs
}

fn label_value_errors(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !v.is_empty() && !is_qualified_name_part(v) {
        errs.push(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  \
             or 'my_value',  or '12345', regex used for validation is \
             '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
                .to_string(),
        );
    }
    errs
}

/// Go's `%q` for the strings we quote (ASCII-ish; escapes quotes and backslashes).
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn new_requirement(
    key: String,
    op: LabelOp,
    mut values: Vec<String>,
) -> Result<Requirement, String> {
    let errs = label_key_errors(&key);
    if !errs.is_empty() {
        return Err(format!(
            "<nil>: Invalid value: {}: {}",
            go_quote(&key),
            errs.join("; ")
        ));
    }
    values.sort();
    values.dedup();
    let path = format!("[{key}]");
    match op {
        LabelOp::In | LabelOp::NotIn if values.is_empty() => {
            return Err(
                "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
                    .into(),
            )
        }
        LabelOp::Equals | LabelOp::NotEquals if values.len() != 1 => {
            return Err(
                "values: Invalid value: []: exact-match compatibility requires one single value"
                    .into(),
            )
        }
        LabelOp::Exists | LabelOp::DoesNotExist if !values.is_empty() => {
            return Err(
                "values: Invalid value: []: values set must be empty for exists and does not exist"
                    .into(),
            )
        }
        LabelOp::GreaterThan | LabelOp::LessThan => {
            if values.len() != 1 {
                return Err("values: Invalid value: []: for 'Gt', 'Lt' operators, exactly one value is required".into());
            }
            if values[0].parse::<i64>().is_err() {
                return Err(format!(
                    "values[0]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                    go_quote(&values[0])
                ));
            }
        }
        _ => {}
    }
    for v in &values {
        let errs = label_value_errors(v);
        if !errs.is_empty() {
            return Err(format!(
                "{path}: Invalid value: {}: {}",
                go_quote(v),
                errs.join("; ")
            ));
        }
    }
    Ok(Requirement { key, op, values })
}

/// Parses a label selector: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
/// `a>1`, `a<1`, comma-separated. Errors read exactly like kube-apiserver's.
pub fn parse_label_selector(s: &str) -> Result<LabelSelector, SelectorError> {
    let mut p = Parser {
        items: lex(s),
        pos: 0,
    };
    let mut reqs = Vec::new();
    loop {
        let (tok, lit) = p.look(true);
        match tok {
            Tok::Ident | Tok::Not => {
                let r = parse_requirement(&mut p)
                    .map_err(|e| SelectorError(format!("unable to parse requirement: {e}")))?;
                reqs.push(r);
                let (t, l) = p.consume(true);
                match t {
                    Tok::End => break,
                    Tok::Comma => {
                        let (t2, l2) = p.look(true);
                        if t2 != Tok::Ident && t2 != Tok::Not {
                            return Err(SelectorError(format!(
                                "found '{l2}', expected: identifier after ','"
                            )));
                        }
                    }
                    _ => {
                        return Err(SelectorError(format!(
                            "found '{l}', expected: ',' or 'end of string'"
                        )))
                    }
                }
            }
            Tok::End => break,
            _ => {
                return Err(SelectorError(format!(
                    "found '{lit}', expected: !, identifier, or 'end of string'"
                )))
            }
        }
    }
    reqs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(LabelSelector { requirements: reqs })
}

fn parse_requirement(p: &mut Parser) -> Result<Requirement, String> {
    // Key and inferred operator.
    let (mut tok, mut lit) = p.consume(true);
    let mut negated = false;
    if tok == Tok::Not {
        negated = true;
        (tok, lit) = p.consume(true);
    }
    if tok != Tok::Ident {
        return Err(format!("found '{lit}', expected: identifier"));
    }
    let key = lit;
    let errs = label_key_errors(&key);
    if !errs.is_empty() {
        return Err(format!(
            "<nil>: Invalid value: {}: {}",
            go_quote(&key),
            errs.join("; ")
        ));
    }
    let (next, _) = p.look(true);
    if next == Tok::End || next == Tok::Comma {
        let op = if negated {
            LabelOp::DoesNotExist
        } else {
            LabelOp::Exists
        };
        return new_requirement(key, op, Vec::new());
    }
    if negated {
        // `!key op value`: upstream carries DoesNotExist into NewRequirement with values.
        let (t, l) = p.consume(false);
        let _ = t;
        return Err(format!("found '{l}', expected: {BINARY_OPERATORS}"));
    }
    let (t, l) = p.consume(false);
    let op = match t {
        Tok::In => LabelOp::In,
        Tok::Equals | Tok::DoubleEquals => LabelOp::Equals,
        Tok::GreaterThan => LabelOp::GreaterThan,
        Tok::LessThan => LabelOp::LessThan,
        Tok::NotIn => LabelOp::NotIn,
        Tok::NotEquals => LabelOp::NotEquals,
        _ => return Err(format!("found '{l}', expected: {BINARY_OPERATORS}")),
    };
    let values = match op {
        LabelOp::In | LabelOp::NotIn => parse_values(p)?,
        _ => {
            let (t, _) = p.look(true);
            if t == Tok::End || t == Tok::Comma {
                vec![String::new()]
            } else {
                let (t, l) = p.consume(true);
                if t != Tok::Ident {
                    return Err(format!("found '{l}', expected: identifier"));
                }
                vec![l]
            }
        }
    };
    new_requirement(key, op, values)
}

fn parse_values(p: &mut Parser) -> Result<Vec<String>, String> {
    let (t, l) = p.consume(true);
    if t != Tok::OpenPar {
        return Err(format!("found '{l}' expected: '('"));
    }
    let (t, l) = p.look(true);
    match t {
        Tok::Ident | Tok::Comma => {
            let mut s: Vec<String> = Vec::new();
            loop {
                let (t, l2) = p.consume(true);
                match t {
                    Tok::Ident => {
                        s.push(l2);
                        let (t2, l3) = p.look(true);
                        match t2 {
                            Tok::Comma => continue,
                            Tok::ClosedPar => break,
                            _ => return Err(format!("found '{l3}', expected: ',' or ')'")),
                        }
                    }
                    Tok::Comma => {
                        if s.is_empty() {
                            s.push(String::new());
                        }
                        let (t2, _) = p.look(true);
                        if t2 == Tok::ClosedPar {
                            s.push(String::new());
                            break;
                        }
                        if t2 == Tok::Comma {
                            s.push(String::new());
                        }
                    }
                    _ => return Err(format!("found '{l2}', expected: ',', or identifier")),
                }
            }
            let (t, _) = p.consume(true);
            if t != Tok::ClosedPar {
                return Err(format!("found '{l}', expected: ')'"));
            }
            Ok(s)
        }
        Tok::ClosedPar => {
            p.consume(true);
            Ok(vec![String::new()])
        }
        _ => Err(format!("found '{l}', expected: ',', ')' or identifier")),
    }
}

/// One term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    /// `!=` rather than `=`/`==`.
    pub negated: bool,
}

/// A parsed field selector: all terms must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            cur.push(c);
            escaped = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn unescape_field_value(v: &str) -> Result<String, SelectorError> {
    if !v.contains(['\\', ',', '=']) {
        return Ok(v.to_string());
    }
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(SelectorError(format!(
                        "invalid field selector: invalid escape sequence: \\{e}"
                    )))
                }
                None => {
                    return Err(SelectorError(
                        "invalid field selector: invalid escape sequence: \\".to_string(),
                    ))
                }
            },
            ',' | '=' => {
                return Err(SelectorError(format!(
                    "invalid field selector: unescaped character in value: {c}"
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Parses a field selector: `f=v`, `f==v`, `f!=v`, comma-separated, `\` escapes `\`, `,`, `=`.
pub fn parse_field_selector(s: &str) -> Result<FieldSelector, SelectorError> {
    let mut parts = split_unescaped(s, ',');
    parts.sort();
    let mut terms = Vec::new();
    for part in parts {
        if part.is_empty() {
            continue;
        }
        let cant = || {
            SelectorError(format!(
                "invalid selector: '{s}'; can't understand '{part}'"
            ))
        };
        // The first operator position, left to right, skipping escaped characters.
        let b = part.as_bytes();
        let mut i = 0;
        let mut found = None;
        while i < b.len() {
            if b[i] == b'\\' {
                i += 2;
                continue;
            }
            if part[i..].starts_with("!=") {
                found = Some((i, 2, true));
            } else if part[i..].starts_with("==") {
                found = Some((i, 2, false));
            } else if part[i..].starts_with('=') {
                found = Some((i, 1, false));
            }
            if found.is_some() {
                break;
            }
            i += 1;
        }
        let (at, len, negated) = found.ok_or_else(cant)?;
        let field = part[..at].to_string();
        let value = unescape_field_value(&part[at + len..])?;
        terms.push(FieldTerm {
            field,
            value,
            negated,
        });
    }
    Ok(FieldSelector { terms })
}

/// The field labels kube-apiserver v1.33 accepts for a resource, beyond metadata.name and
/// metadata.namespace (each kind's field-label conversion function).
fn selectable_fields(group: &str, resource: &str) -> &'static [&'static str] {
    match (group, resource) {
        ("", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "nodes") => &["spec.unschedulable"],
        ("", "namespaces") => &["status.phase"],
        ("", "secrets") => &["type"],
        ("", "replicationcontrollers") => &["status.replicas"],
        _ => &[],
    }
}

fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn bool_at(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

/// The value of a selectable field of `object`, as kube-apiserver's field set has it.
fn field_value(group: &str, resource: &str, object: &Value, field: &str) -> Option<String> {
    match field {
        "metadata.name" => return Some(str_at(object, "/metadata/name").to_string()),
        "metadata.namespace" => return Some(str_at(object, "/metadata/namespace").to_string()),
        _ => {}
    }
    if !selectable_fields(group, resource).contains(&field) {
        return None;
    }
    let v = match (resource, field) {
        ("pods", "spec.hostNetwork") => bool_at(object, "/spec/hostNetwork"),
        ("pods", "status.podIP") => str_at(object, "/status/podIP").to_string(),
        ("pods", "status.podIPs") => {
            // Upstream selects on the first IP (podIPs[0].ip).
            str_at(object, "/status/podIPs/0/ip").to_string()
        }
        ("nodes", "spec.unschedulable") => bool_at(object, "/spec/unschedulable"),
        ("events", "source") => {
            let s = str_at(object, "/source/component");
            if s.is_empty() {
                str_at(object, "/reportingComponent").to_string()
            } else {
                s.to_string()
            }
        }
        ("replicationcontrollers", "status.replicas") => object
            .pointer("/status/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string(),
        _ => {
            let pointer = format!("/{}", field.replace('.', "/"));
            str_at(object, &pointer).to_string()
        }
    };
    Some(v)
}

impl FieldSelector {
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether every term's field is selectable on this resource; the error is kube-apiserver's
    /// (`field label not supported: spec.foo`), which it answers with 400 BadRequest.
    pub fn validate_for(&self, group: &str, resource: &str) -> Result<(), SelectorError> {
        for t in &self.terms {
            let ok = t.field == "metadata.name"
                || t.field == "metadata.namespace"
                || selectable_fields(group, resource).contains(&t.field.as_str());
            if !ok {
                return Err(SelectorError(format!(
                    "field label not supported: {}",
                    t.field
                )));
            }
        }
        Ok(())
    }

    /// Unsupported fields never match (callers validate first).
    pub fn matches(&self, group: &str, resource: &str, object: &Value) -> bool {
        self.terms
            .iter()
            .all(|t| match field_value(group, resource, object, &t.field) {
                Some(v) => (v == t.value) != t.negated,
                None => false,
            })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let v = t
                .value
                .replace('\\', "\\\\")
                .replace(',', "\\,")
                .replace('=', "\\=");
            write!(f, "{}{}{}", t.field, if t.negated { "!=" } else { "=" }, v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors_match_like_kubernetes() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (db,web)", true),
            ("app notin (db,web)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=back", false),
            ("n>4", true),
            ("n<4", false),
            (" app = web , tier in (front) ", true),
            ("x in (foo,,baz),app,z notin ()", false),
        ] {
            let s = parse_label_selector(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&l), want, "{sel}");
        }
        let obj = json!({"metadata": {"labels": {"app": "web"}}});
        assert!(parse_label_selector("app=web").unwrap().matches(&obj));
    }

    #[test]
    fn label_selector_errors_read_like_kubernetes() {
        assert_eq!(
            parse_label_selector("app=web,").unwrap_err().0,
            "found '', expected: identifier after ','"
        );
        assert_eq!(
            parse_label_selector("app in web").unwrap_err().0,
            "unable to parse requirement: found 'web' expected: '('"
        );
        assert_eq!(
            parse_label_selector("app = (x)").unwrap_err().0,
            "unable to parse requirement: found '(', expected: identifier"
        );
        assert_eq!(
            parse_label_selector("a b").unwrap_err().0,
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        let e = parse_label_selector("app=we b!").unwrap_err().0;
        assert!(e.starts_with("found 'b', expected"), "{e}");
        let e = parse_label_selector("-bad=x").unwrap_err().0;
        assert!(
            e.contains("Invalid value: \"-bad\": name part must consist of"),
            "{e}"
        );
    }

    #[test]
    fn field_selectors_parse_validate_and_match() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"},
                         "spec": {"nodeName": "node-1", "schedulerName": "default-scheduler"},
                         "status": {"phase": "Pending"}});
        for (sel, want) in [
            ("spec.nodeName=node-1", true),
            ("spec.nodeName==node-1", true),
            ("spec.nodeName!=node-1", false),
            ("spec.nodeName=", false),
            ("metadata.name=p,metadata.namespace=ns", true),
            ("status.phase!=Running,status.phase!=Succeeded", true),
        ] {
            let s = parse_field_selector(sel).unwrap();
            s.validate_for("", "pods").unwrap();
            assert_eq!(s.matches("", "pods", &pod), want, "{sel}");
        }
        let unbound = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(parse_field_selector("spec.nodeName=")
            .unwrap()
            .matches("", "pods", &unbound));
        assert_eq!(
            parse_field_selector("spec.foo=x")
                .unwrap()
                .validate_for("", "pods")
                .unwrap_err()
                .0,
            "field label not supported: spec.foo"
        );
        assert!(parse_field_selector("spec.nodeName=x")
            .unwrap()
            .validate_for("", "persistentvolumes")
            .is_err());
        assert_eq!(
            parse_field_selector("foo").unwrap_err().0,
            "invalid selector: 'foo'; can't understand 'foo'"
        );
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "p"}, "reason": "Scheduled",
                        "source": {"component": "default-scheduler"}});
        let s = parse_field_selector(
            "involvedObject.kind=Pod,involvedObject.name=p,source=default-scheduler",
        )
        .unwrap();
        s.validate_for("", "events").unwrap();
        assert!(s.matches("", "events", &ev));
        let s = parse_field_selector("spec.unschedulable=false").unwrap();
        assert!(s.matches("", "nodes", &json!({"spec": {}})));
        let s = parse_field_selector(r"metadata.name=a\,b").unwrap();
        assert_eq!(s.terms[0].value, "a,b");
    }
}
