//! Prometheus text metrics with kube-apiserver's names: `apiserver_request_total`,
//! `apiserver_request_duration_seconds` (histogram), `apiserver_registered_watchers` and
//! `apiserver_longrunning_requests`. Plain mutex-protected BTreeMaps: one short critical section
//! per request is far below the cost of the request itself, and the output order is stable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// kube-apiserver's request-duration buckets (seconds).
const BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// (verb, group, resource, subresource): names from the static resource table, so recording
/// a request allocates nothing.
type Labels = (&'static str, &'static str, &'static str, &'static str);

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(Labels, u16), u64>,
    durations: BTreeMap<Labels, Histogram>,
    /// (group, version, kind) → open watches
    watchers: BTreeMap<(String, String, String), i64>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// Records one finished request. `verb` is kube-apiserver's upper-case request verb
    /// (GET, LIST, WATCH, POST, PUT, PATCH, DELETE, DELETECOLLECTION, CONNECT).
    pub fn observe(
        &self,
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        subresource: &'static str,
        code: u16,
        elapsed: Option<Duration>,
    ) {
        let labels: Labels = (verb, group, resource, subresource);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.requests.entry((labels, code)).or_default() += 1;
        if let Some(d) = elapsed {
            let secs = d.as_secs_f64();
            let h = inner.durations.entry(labels).or_default();
            if h.counts.is_empty() {
                h.counts = vec![0; BUCKETS.len()];
            }
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// One more open watch of this kind.
    pub fn watch_inc(&self, group: &str, version: &str, kind: &str) {
        let key = (group.to_string(), version.to_string(), kind.to_string());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.watchers.entry(key).or_default() += 1;
    }

    /// One open watch of this kind ended.
    pub fn watch_dec(&self, group: &str, version: &str, kind: &str) {
        let key = (group.to_string(), version.to_string(), kind.to_string());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = inner.watchers.get_mut(&key) {
            *n -= 1;
        }
    }

    /// Total open watches.
    pub fn current_watches(&self) -> i64 {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.watchers.values().sum()
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, group, resource, subresource and HTTP response code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for (((verb, group, resource, sub), code), n) in &inner.requests {
            let _ = writeln!(
                out,
                "apiserver_request_total{{code=\"{code}\",group=\"{group}\",resource=\"{resource}\",subresource=\"{sub}\",verb=\"{verb}\"}} {n}"
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, group, resource and subresource.\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, group, resource, sub), h) in &inner.durations {
            let l = format!(
                "group=\"{group}\",resource=\"{resource}\",subresource=\"{sub}\",verb=\"{verb}\""
            );
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_sum{{{l}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_count{{{l}}} {}",
                h.count
            );
        }
        out.push_str("# HELP apiserver_registered_watchers Number of currently registered watchers for a given resources\n");
        out.push_str("# TYPE apiserver_registered_watchers gauge\n");
        for ((group, version, kind), n) in &inner.watchers {
            let _ = writeln!(
                out,
                "apiserver_registered_watchers{{group=\"{group}\",kind=\"{kind}\",version=\"{version}\"}} {n}"
            );
        }
        let total: i64 = inner.watchers.values().sum();
        out.push_str("# HELP apiserver_longrunning_requests Gauge of all active long-running apiserver requests.\n");
        out.push_str("# TYPE apiserver_longrunning_requests gauge\n");
        let _ = writeln!(
            out,
            "apiserver_longrunning_requests{{verb=\"WATCH\"}} {total}"
        );
        out
    }
}
