//! Prometheus text metrics with kube-apiserver's names: `apiserver_request_total`,
//! `apiserver_request_duration_seconds` (histogram), `apiserver_registered_watchers` and
//! `apiserver_longrunning_requests`. One mutex-protected hash map per request: a short critical
//! section with one hash of the labels (by an FNV-1a of a few short strings, not SipHash: the
//! labels come from the server's static tables, nobody chooses them to collide) and one bucket
//! increment; `/metrics` sorts the series, so the output order is stable.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::BuildHasherDefault;
use std::sync::Mutex;
use std::time::Duration;

/// kube-apiserver's request-duration buckets (seconds).
const BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Per-bucket counts (not cumulative: a request adds to one bucket; `render` sums them up).
/// The last slot counts durations beyond the largest bucket (only in `+Inf`).
#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

/// (verb, group, resource, subresource): names from the static resource table, so recording
/// a request allocates nothing.
type Labels = (&'static str, &'static str, &'static str, &'static str);

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<crate::api::fnv::Fnv1a>>;

#[derive(Default)]
struct Inner {
    requests: FastMap<(Labels, u16), u64>,
    durations: FastMap<Labels, Histogram>,
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
        // The bucket is found before taking the lock.
        let timing = elapsed.map(|d| {
            let secs = d.as_secs_f64();
            (secs, BUCKETS.partition_point(|b| *b < secs))
        });
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.requests.entry((labels, code)).or_default() += 1;
        if let Some((secs, bucket)) = timing {
            let h = inner.durations.entry(labels).or_default();
            h.counts[bucket] += 1;
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
        let mut requests: Vec<_> = inner.requests.iter().collect();
        requests.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (((verb, group, resource, sub), code), n) in requests {
            let _ = writeln!(
                out,
                "apiserver_request_total{{code=\"{code}\",group=\"{group}\",resource=\"{resource}\",subresource=\"{sub}\",verb=\"{verb}\"}} {n}"
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, group, resource and subresource.\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        let mut durations: Vec<_> = inner.durations.iter().collect();
        durations.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for ((verb, group, resource, sub), h) in durations {
            let l = format!(
                "group=\"{group}\",resource=\"{resource}\",subresource=\"{sub}\",verb=\"{verb}\""
            );
            let mut cumulative = 0;
            for (b, n) in BUCKETS.iter().zip(&h.counts) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {cumulative}"
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
