//! Scenario files (`examples/races/*.race`): a few header lines, then a script.
//!
//! ```text
//! # comments start with '#'
//! summary: WaitForFirstConsumer lets the scheduler pick node and PV together
//! upstream: what went wrong in Kubernetes (may repeat; lines are joined)
//! bonsai: why bonsai survives it
//! nodes: node-1 node-2
//! volume-controllers: 1          (default 1)
//! kubelets: yes                  (default yes: one kubelet per node)
//! faults: crash drop-watch compact   (seeded faults this scenario allows; default all, or none)
//! breaks: resource-version       (break switches under which `explore` must find a failure)
//!
//! storageclass local mode=WaitForFirstConsumer
//! pv pv-1 size=5Gi class=local node=node-1 path=/mnt/disks/vol1 [reclaim=Retain] [claim=default/data]
//! pvc data size=5Gi class=local [volume=pv-1] [namespace=default]
//! pod web claims=data [affinity=node-1,node-2] [labels=app=db] [anti-affinity=app=db] [node=node-1]
//! run                                  run to quiescence (the seed picks every step)
//! run until committed scheduler pv/pv-1      …until a condition holds (or quiescence)
//! run until pending volume-controller-0 pvc/data
//! run until pvc/data phase=Bound
//! delete pod web | crash ACTOR | restart ACTOR | compact | drop-watch ACTOR KIND
//! hold ACTOR KIND | release ACTOR KIND    (stop / resume delivering one watch to one actor)
//! expect pod/web node=node-1 phase=Running   (values: a|b alternatives, none = empty)
//! expect pod/web message~="didn't find available persistent volumes"   (~= contains)
//! expect pod/web absent
//! expect exactly 1 of pod/a pod/b: node=node-1
//! ```
//!
//! Every problem is reported as `FILE:LINE: what is wrong`.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::objects::{self, Kind, PodSpec, PvSpec};
use apiserver::store::Key;

/// A break switch: one safety mechanism turned off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Break {
    /// The simulated API server ignores resourceVersion preconditions on updates.
    ResourceVersion,
    /// The scheduler's assume cache (needs a core switch; see `sim`).
    AssumeCache,
}

impl Break {
    pub fn parse(s: &str) -> Option<Break> {
        match s {
            "resource-version" => Some(Break::ResourceVersion),
            "assume-cache" => Some(Break::AssumeCache),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Break::ResourceVersion => "resource-version",
            Break::AssumeCache => "assume-cache",
        }
    }
}

/// Which seeded faults a scenario allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    pub crash: bool,
    pub drop_watch: bool,
    pub compact: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Eq,
    Contains,
}

/// `field=a|b` or `field~=text`.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldTest {
    pub field: String,
    pub op: Op,
    pub values: Vec<String>,
}

impl FieldTest {
    pub fn matches(&self, actual: &str) -> bool {
        self.values.iter().any(|v| match self.op {
            Op::Eq => (v == "none" && actual.is_empty()) || v == actual,
            Op::Contains => actual.contains(v.as_str()),
        })
    }
}

impl fmt::Display for FieldTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.op == Op::Eq { "=" } else { "~=" };
        let v = self.values.join("|");
        if v.contains(' ') {
            write!(f, "{}{op}\"{v}\"", self.field)
        } else {
            write!(f, "{}{op}{v}", self.field)
        }
    }
}

/// A test on objects in the store.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// Every test holds for the object (which must exist).
    Fields {
        kind: Kind,
        key: Key,
        tests: Vec<FieldTest>,
    },
    /// The object does not exist.
    Absent { key: Key },
    /// Exactly `n` of the objects pass every test.
    Exactly {
        n: usize,
        objects: Vec<(Kind, Key)>,
        tests: Vec<FieldTest>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Until {
    /// A write from `actor` to `key` waits to be committed.
    Pending {
        actor: String,
        key: Key,
    },
    /// `actor` has committed a write to `key` (since the scenario started).
    Committed {
        actor: String,
        key: Key,
    },
    Check(Check),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Create { kind: Kind, key: Key, object: Value },
    Delete { kind: Kind, key: Key },
    Run(Option<Until>),
    Crash(String),
    Restart(String),
    Compact,
    DropWatch(String, Kind),
    Hold(String, Kind),
    Release(String, Kind),
    Expect(Check),
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    /// Where it came from, for messages (`examples/races/x.race` or `<builtin>/x.race`).
    pub file: String,
    pub summary: String,
    pub upstream: String,
    pub bonsai: String,
    pub nodes: Vec<String>,
    pub volume_controllers: usize,
    pub kubelets: bool,
    pub faults: Faults,
    pub breaks: Vec<Break>,
    /// (line, command)
    pub script: Vec<(usize, Command)>,
    /// The raw text, for `race show`.
    pub text: String,
}

impl Scenario {
    /// The actors this scenario runs, in trace order.
    pub fn actors(&self) -> Vec<String> {
        let mut a = vec!["scheduler".to_string()];
        for i in 0..self.volume_controllers {
            a.push(format!("volume-controller-{i}"));
        }
        if self.kubelets {
            for n in &self.nodes {
                a.push(format!("kubelet-{n}"));
            }
        }
        a
    }
}

/// A malformed scenario: file, line (1-based; 0 = the file as a whole) and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{}{message}", if *line > 0 { format!("{line}: ") } else { " ".to_string() })]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Splits a line into words; double quotes group words (`message="a b"`), `\"` escapes.
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_q = false;
    let mut has = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_q && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => {
                in_q = !in_q;
                has = true;
            }
            c if c.is_whitespace() && !in_q => {
                if has || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => cur.push(c),
        }
    }
    if in_q {
        return Err("unterminated quote".into());
    }
    if has || !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Strips a trailing `# comment` that is outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut in_q = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_q = !in_q,
            '#' if !in_q && (i == 0 || line[..i].ends_with(char::is_whitespace)) => {
                return &line[..i]
            }
            _ => {}
        }
    }
    line
}

struct Parser<'a> {
    file: &'a str,
    line: usize,
}

impl Parser<'_> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, ScenarioError> {
        Err(ScenarioError {
            file: self.file.to_string(),
            line: self.line,
            message: message.into(),
        })
    }

    /// `key=value` arguments after the positional ones.
    fn kv<'w>(&self, words: &'w [String]) -> Result<BTreeMap<&'w str, &'w str>, ScenarioError> {
        let mut m = BTreeMap::new();
        for w in words {
            let Some((k, v)) = w.split_once('=') else {
                return self.err(format!("expected key=value, found {w:?}"));
            };
            if m.insert(k, v).is_some() {
                return self.err(format!("{k} given twice"));
            }
        }
        Ok(m)
    }

    fn only(
        &self,
        what: &str,
        m: &BTreeMap<&str, &str>,
        allowed: &[&str],
    ) -> Result<(), ScenarioError> {
        for k in m.keys() {
            if !allowed.contains(k) {
                return self.err(format!(
                    "unknown argument {k:?} for {what} (expected one of: {})",
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }

    fn need<'w>(
        &self,
        what: &str,
        m: &BTreeMap<&str, &'w str>,
        k: &str,
    ) -> Result<&'w str, ScenarioError> {
        match m.get(k) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => self.err(format!("{what} needs {k}=…")),
        }
    }

    fn object_ref(&self, w: &str) -> Result<(Kind, Key), ScenarioError> {
        let parts: Vec<&str> = w.split('/').collect();
        let (kind, ns, name) = match parts.as_slice() {
            [k, n] => (*k, "default", *n),
            [k, ns, n] => (*k, *ns, *n),
            _ => return self.err(format!("expected KIND/NAME (like pod/web), found {w:?}")),
        };
        let Some(kind) = Kind::parse(kind) else {
            return self.err(format!(
                "unknown kind {kind:?} in {w:?} (expected pod, pvc, pv, node, storageclass)"
            ));
        };
        if name.is_empty() {
            return self.err(format!("empty name in {w:?}"));
        }
        Ok((kind, kind.key(ns, name)))
    }

    fn tests(&self, kind: Option<Kind>, words: &[String]) -> Result<Vec<FieldTest>, ScenarioError> {
        let mut out = Vec::new();
        for w in words {
            let (field, op, value) = if let Some((f, v)) = w.split_once("~=") {
                (f, Op::Contains, v)
            } else if let Some((f, v)) = w.split_once('=') {
                (f, Op::Eq, v)
            } else {
                return self.err(format!("expected FIELD=VALUE or FIELD~=TEXT, found {w:?}"));
            };
            if let Some(kind) = kind {
                if objects::field(kind, &Value::Null, field).is_none() {
                    return self.err(format!(
                        "unknown field {field:?} for {} (known: {})",
                        kind.short(),
                        objects::known_fields(kind)
                    ));
                }
            }
            let values = if op == Op::Eq {
                value.split('|').map(str::to_string).collect()
            } else {
                vec![value.to_string()]
            };
            out.push(FieldTest {
                field: field.to_string(),
                op,
                values,
            });
        }
        Ok(out)
    }

    fn check(&self, words: &[String]) -> Result<Check, ScenarioError> {
        if words.is_empty() {
            return self.err("expected an object (like pod/web) or `exactly N of …`");
        }
        if words[0] == "exactly" {
            let n: usize = match words.get(1).map(|w| w.parse()) {
                Some(Ok(n)) => n,
                _ => return self.err("expected `exactly N of OBJ… : FIELD=VALUE…`"),
            };
            if words.get(2).map(String::as_str) != Some("of") {
                return self.err("expected `exactly N of OBJ… : FIELD=VALUE…`");
            }
            let mut objects = Vec::new();
            let mut i = 3;
            let mut colon = false;
            while i < words.len() {
                let w = words[i].as_str();
                i += 1;
                if w == ":" {
                    colon = true;
                    break;
                }
                let (w, last) = match w.strip_suffix(':') {
                    Some(s) => (s, true),
                    None => (w, false),
                };
                objects.push(self.object_ref(w)?);
                if last {
                    colon = true;
                    break;
                }
            }
            if !colon || objects.is_empty() {
                return self.err("expected `exactly N of OBJ… : FIELD=VALUE…` (missing ':')");
            }
            let kinds: Vec<Kind> = objects.iter().map(|o| o.0).collect();
            let kind = kinds.iter().all(|k| *k == kinds[0]).then_some(kinds[0]);
            let tests = self.tests(kind, &words[i..])?;
            if tests.is_empty() {
                return self.err("`exactly` needs at least one FIELD=VALUE after ':'");
            }
            return Ok(Check::Exactly { n, objects, tests });
        }
        let (kind, key) = self.object_ref(&words[0])?;
        if words.len() == 2 && words[1] == "absent" {
            return Ok(Check::Absent { key });
        }
        let tests = self.tests(Some(kind), &words[1..])?;
        if tests.is_empty() {
            return self.err(format!(
                "nothing to check on {} (give FIELD=VALUE, or `absent`)",
                words[0]
            ));
        }
        Ok(Check::Fields { kind, key, tests })
    }

    fn actor(&self, name: Option<&String>, actors: &[String]) -> Result<String, ScenarioError> {
        match name {
            Some(n) if actors.contains(n) => Ok(n.clone()),
            Some(n) => self.err(format!(
                "unknown actor {n:?} (this scenario has: {})",
                actors.join(", ")
            )),
            None => self.err("missing actor name"),
        }
    }

    fn kind_arg(&self, w: Option<&String>) -> Result<Kind, ScenarioError> {
        match w.map(|w| (w, Kind::parse(w))) {
            Some((_, Some(k))) if k != Kind::Event => Ok(k),
            Some((w, _)) => self.err(format!(
                "unknown watch kind {w:?} (pod, pvc, pv, node, storageclass)"
            )),
            None => self.err("missing watch kind"),
        }
    }
}

fn split_list(s: &str) -> Vec<&str> {
    s.split(',').filter(|x| !x.is_empty()).collect()
}

/// Parses a scenario. `file` is only used in messages; `name` defaults to the file stem.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let stem = std::path::Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("scenario")
        .to_string();
    let mut s = Scenario {
        name: stem,
        file: file.to_string(),
        summary: String::new(),
        upstream: String::new(),
        bonsai: String::new(),
        nodes: Vec::new(),
        volume_controllers: 1,
        kubelets: true,
        faults: Faults {
            crash: true,
            drop_watch: true,
            compact: true,
        },
        breaks: Vec::new(),
        script: Vec::new(),
        text: text.to_string(),
    };
    let mut p = Parser { file, line: 0 };
    let mut body_started = false;
    let mut actors: Vec<String> = Vec::new();
    let mut created: BTreeMap<Key, usize> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        p.line = i + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        // Header: `key: value` before the first command.
        if !body_started {
            if let Some((k, v)) = line.split_once(':') {
                let k = k.trim();
                if !k.contains(' ') && !k.contains('/') {
                    let v = v.trim();
                    match k {
                        "name" => s.name = v.to_string(),
                        "summary" => s.summary = v.to_string(),
                        "upstream" => join(&mut s.upstream, v),
                        "bonsai" => join(&mut s.bonsai, v),
                        "nodes" => {
                            s.nodes = v.split_whitespace().map(str::to_string).collect();
                            if s.nodes.is_empty() {
                                return p.err("nodes: needs at least one node name");
                            }
                        }
                        "volume-controllers" => match v.parse::<usize>() {
                            Ok(n) if (1..=4).contains(&n) => s.volume_controllers = n,
                            _ => return p.err(format!("volume-controllers: expected 1 to 4, found {v:?}")),
                        },
                        "kubelets" => match v {
                            "yes" => s.kubelets = true,
                            "no" => s.kubelets = false,
                            _ => return p.err(format!("kubelets: expected yes or no, found {v:?}")),
                        },
                        "faults" => {
                            s.faults = Faults {
                                crash: false,
                                drop_watch: false,
                                compact: false,
                            };
                            for f in v.split_whitespace() {
                                match f {
                                    "crash" => s.faults.crash = true,
                                    "drop-watch" => s.faults.drop_watch = true,
                                    "compact" => s.faults.compact = true,
                                    "none" => {}
                                    _ => return p.err(format!("faults: unknown fault {f:?} (crash, drop-watch, compact, none)")),
                                }
                            }
                        }
                        "breaks" => {
                            for b in v.split_whitespace() {
                                match Break::parse(b) {
                                    Some(b) => s.breaks.push(b),
                                    None => return p.err(format!("breaks: unknown switch {b:?} (resource-version, assume-cache)")),
                                }
                            }
                        }
                        _ => return p.err(format!("unknown header {k:?} (name, summary, upstream, bonsai, nodes, volume-controllers, kubelets, faults, breaks)")),
                    }
                    continue;
                }
            }
            body_started = true;
            if s.nodes.is_empty() {
                return p.err("the header must list `nodes:` before the first command");
            }
            actors = s.actors();
        }
        let words = match tokenize(line) {
            Ok(w) => w,
            Err(e) => return p.err(e),
        };
        let cmd = words[0].as_str();
        let args = &words[1..];
        let command = match cmd {
            "storageclass" | "pv" | "pvc" | "pod" => {
                let Some(name) = args.first() else {
                    return p.err(format!("{cmd} needs a name"));
                };
                if name.contains('=') {
                    return p.err(format!("{cmd} needs a name before its arguments"));
                }
                let m = p.kv(&args[1..])?;
                let (kind, key, object) = match cmd {
                    "storageclass" => {
                        p.only(cmd, &m, &["mode", "provisioner"])?;
                        let mode = m.get("mode").copied().unwrap_or("WaitForFirstConsumer");
                        if mode != "Immediate" && mode != "WaitForFirstConsumer" {
                            return p.err(format!("mode must be Immediate or WaitForFirstConsumer, found {mode:?}"));
                        }
                        let o = objects::storage_class(name, mode, m.get("provisioner").copied());
                        (Kind::Class, Kind::Class.key("", name), o)
                    }
                    "pv" => {
                        p.only(cmd, &m, &["size", "class", "node", "path", "reclaim", "claim"])?;
                        let size = p.need(cmd, &m, "size")?;
                        if apiserver::api::parse_quantity(size).is_none() {
                            return p.err(format!("size {size:?} is not a quantity (like 5Gi)"));
                        }
                        let claim = match m.get("claim") {
                            None => None,
                            Some(c) => match c.split_once('/') {
                                Some((ns, n)) if !ns.is_empty() && !n.is_empty() => Some((ns, n)),
                                _ => return p.err(format!("claim must be NAMESPACE/NAME, found {c:?}")),
                            },
                        };
                        let reclaim = m.get("reclaim").copied().unwrap_or("Delete");
                        if reclaim != "Delete" && reclaim != "Retain" {
                            return p.err(format!("reclaim must be Delete or Retain, found {reclaim:?}"));
                        }
                        if let Some(n) = m.get("node") {
                            if !s.nodes.iter().any(|x| x == n) {
                                return p.err(format!("node {n:?} is not in `nodes:`"));
                            }
                        }
                        let path = m.get("path").copied().unwrap_or("/mnt/disks/vol1");
                        let o = objects::pv(&PvSpec {
                            name,
                            size,
                            class: m.get("class").copied().unwrap_or(""),
                            node: m.get("node").copied(),
                            path,
                            reclaim,
                            claim,
                        });
                        (Kind::Pv, Kind::Pv.key("", name), o)
                    }
                    "pvc" => {
                        p.only(cmd, &m, &["size", "class", "volume", "namespace"])?;
                        let size = p.need(cmd, &m, "size")?;
                        if apiserver::api::parse_quantity(size).is_none() {
                            return p.err(format!("size {size:?} is not a quantity (like 5Gi)"));
                        }
                        let ns = m.get("namespace").copied().unwrap_or("default");
                        let o = objects::pvc(ns, name, size, m.get("class").copied().unwrap_or(""), m.get("volume").copied());
                        (Kind::Pvc, Kind::Pvc.key(ns, name), o)
                    }
                    _ => {
                        p.only(cmd, &m, &["claims", "affinity", "labels", "anti-affinity", "node", "namespace"])?;
                        let ns = m.get("namespace").copied().unwrap_or("default");
                        let labels: Vec<(&str, &str)> = match m.get("labels") {
                            None => vec![],
                            Some(l) => {
                                let mut v = vec![];
                                for kv in split_list(l) {
                                    match kv.split_once('=') {
                                        Some(x) => v.push(x),
                                        None => return p.err(format!("labels: expected k=v[,k=v], found {l:?}")),
                                    }
                                }
                                v
                            }
                        };
                        let anti = match m.get("anti-affinity") {
                            None => None,
                            Some(a) => match a.split_once('=') {
                                Some(x) => Some(x),
                                None => return p.err(format!("anti-affinity: expected LABEL=VALUE, found {a:?}")),
                            },
                        };
                        for n in m.get("affinity").map(|a| split_list(a)).unwrap_or_default() {
                            if !s.nodes.iter().any(|x| x == n) {
                                return p.err(format!("affinity names node {n:?}, which is not in `nodes:`"));
                            }
                        }
                        let o = objects::pod(&PodSpec {
                            namespace: ns,
                            name,
                            claims: m.get("claims").map(|c| split_list(c)).unwrap_or_default(),
                            hostnames: m.get("affinity").map(|a| split_list(a)).unwrap_or_default(),
                            labels,
                            anti_affinity: anti,
                            node_name: m.get("node").copied(),
                        });
                        (Kind::Pod, Kind::Pod.key(ns, name), o)
                    }
                };
                if let Some(l) = created.insert(key.clone(), p.line) {
                    return p.err(format!("{} {name} was already created on line {l}", kind.short()));
                }
                Command::Create { kind, key, object }
            }
            "delete" => {
                let (kind, key) = match args {
                    [k, n] => {
                        let Some(kind) = Kind::parse(k) else {
                            return p.err(format!("unknown kind {k:?}"));
                        };
                        (kind, kind.key("default", n))
                    }
                    [r] => p.object_ref(r)?,
                    _ => return p.err("expected `delete KIND NAME` or `delete KIND/NAME`"),
                };
                Command::Delete { kind, key }
            }
            "run" => match args.first().map(String::as_str) {
                None => Command::Run(None),
                Some("until") => {
                    let rest = &args[1..];
                    let until = match rest.first().map(String::as_str) {
                        Some(w @ ("pending" | "committed")) => {
                            let actor = p.actor(rest.get(1), &actors)?;
                            let Some(obj) = rest.get(2) else {
                                return p.err(format!("`run until {w}` needs ACTOR KIND/NAME"));
                            };
                            if rest.len() > 3 {
                                return p.err(format!("unexpected {:?} after the object", rest[3]));
                            }
                            let (_, key) = p.object_ref(obj)?;
                            if w == "pending" {
                                Until::Pending { actor, key }
                            } else {
                                Until::Committed { actor, key }
                            }
                        }
                        Some(_) => Until::Check(p.check(rest)?),
                        None => return p.err("`run until` needs a condition"),
                    };
                    Command::Run(Some(until))
                }
                Some(w) => return p.err(format!("expected `run` or `run until …`, found {w:?}")),
            },
            "crash" | "restart" => {
                let a = p.actor(args.first(), &actors)?;
                if a.starts_with("kubelet-") {
                    return p.err("kubelets are not crashed by the simulator (only the scheduler and volume controllers)");
                }
                if cmd == "crash" {
                    Command::Crash(a)
                } else {
                    Command::Restart(a)
                }
            }
            "compact" => Command::Compact,
            "drop-watch" | "hold" | "release" => {
                let a = p.actor(args.first(), &actors)?;
                let k = p.kind_arg(args.get(1))?;
                match cmd {
                    "drop-watch" => Command::DropWatch(a, k),
                    "hold" => Command::Hold(a, k),
                    _ => Command::Release(a, k),
                }
            }
            "expect" => Command::Expect(p.check(args)?),
            other => {
                return p.err(format!(
                    "unknown command {other:?} (storageclass, pv, pvc, pod, delete, run, crash, restart, compact, drop-watch, hold, release, expect)"
                ))
            }
        };
        s.script.push((p.line, command));
    }
    p.line = 0;
    if s.nodes.is_empty() {
        return p.err("no `nodes:` header");
    }
    if !s
        .script
        .iter()
        .any(|(_, c)| matches!(c, Command::Expect(_)))
    {
        return p.err("a scenario must state its expected outcome with at least one `expect` line");
    }
    if s.summary.is_empty() {
        return p.err("missing `summary:` header");
    }
    Ok(s)
}

fn join(acc: &mut String, v: &str) {
    if !acc.is_empty() {
        acc.push(' ');
    }
    acc.push_str(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_line_and_problem() {
        let text = "summary: x\nnodes: n1\n\npv pv-1 size=lots\n";
        let e = parse("t.race", text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.race:4: size \"lots\" is not a quantity (like 5Gi)"
        );
        let e = parse("t.race", "summary: x\nnodes: n1\nexpect pod/a colour=red\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("unknown field \"colour\""), "{e}");
    }

    #[test]
    fn quotes_group_words() {
        assert_eq!(
            tokenize(r#"expect pod/a message="0/2 nodes \"x\"" x"#).unwrap(),
            vec!["expect", "pod/a", "message=0/2 nodes \"x\"", "x"]
        );
    }
}
