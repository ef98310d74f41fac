//! The scheduling queue: active, backoff and unschedulable (§5.6).
//!
//! * **active** — FIFO by arrival (bonsai has no priorities).
//! * **backoff** — ordered by the instant the pod's backoff ends: 1 s doubled per failed attempt,
//!   at most 10 s.
//! * **unschedulable** — pods that failed to fit; they wait for a cluster event that may help
//!   (the plugins that rejected them say which), or for the 5-minute flush.

use std::collections::{BTreeMap, BTreeSet};

use super::Millis;

/// `namespace/name`.
pub type PodKey = String;

/// Queue timings (upstream defaults: 1 s, 10 s, 5 min).
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// podInitialBackoffSeconds.
    pub initial_backoff_ms: u64,
    /// podMaxBackoffSeconds.
    pub max_backoff_ms: u64,
    /// podMaxInUnschedulablePodsDuration.
    pub max_unschedulable_ms: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff_ms: 1_000,
            max_backoff_ms: 10_000,
            max_unschedulable_ms: 300_000,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct PodState {
    attempts: u32,
    last_failure: Option<Millis>,
    where_: Where,
    /// Plugins that rejected the pod last time (empty: anything may help).
    rejected_by: BTreeSet<&'static str>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Where {
    #[default]
    Nowhere,
    Active(u64),
    Backoff(Millis, u64),
    Unschedulable(Millis),
    /// Popped: a scheduling or binding cycle owns it.
    InFlight,
}

/// The three queues plus per-pod attempt bookkeeping.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    config: QueueConfig,
    seq: u64,
    pods: BTreeMap<PodKey, PodState>,
    active: BTreeMap<u64, PodKey>,
    backoff: BTreeMap<(Millis, u64), PodKey>,
    unschedulable: BTreeMap<PodKey, Millis>,
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new(config: QueueConfig) -> Self {
        SchedulingQueue {
            config,
            ..Default::default()
        }
    }

    fn detach(&mut self, key: &str) {
        if let Some(st) = self.pods.get_mut(key) {
            match st.where_ {
                Where::Active(s) => {
                    self.active.remove(&s);
                }
                Where::Backoff(t, s) => {
                    self.backoff.remove(&(t, s));
                }
                Where::Unschedulable(_) => {
                    self.unschedulable.remove(key);
                }
                Where::Nowhere | Where::InFlight => {}
            }
            st.where_ = Where::Nowhere;
        }
    }

    fn push_active(&mut self, key: &str) {
        self.detach(key);
        self.seq += 1;
        let s = self.seq;
        self.active.insert(s, key.to_string());
        self.pods.entry(key.to_string()).or_default().where_ = Where::Active(s);
    }

    fn push_backoff(&mut self, key: &str, until: Millis) {
        self.detach(key);
        self.seq += 1;
        let s = self.seq;
        self.backoff.insert((until, s), key.to_string());
        self.pods.entry(key.to_string()).or_default().where_ = Where::Backoff(until, s);
    }

    /// A new pending pod (or one seen again after a relist): active unless already queued.
    pub fn add(&mut self, key: &str) {
        match self.pods.get(key).map(|s| s.where_) {
            None | Some(Where::Nowhere) => self.push_active(key),
            _ => {}
        }
    }

    /// The pod's spec changed: a queued unschedulable pod gets another chance.
    pub fn update(&mut self, key: &str, now: Millis) {
        match self.pods.get(key).map(|s| s.where_) {
            None | Some(Where::Nowhere) => self.push_active(key),
            Some(Where::Unschedulable(_)) => self.requeue(key, now),
            _ => {}
        }
    }

    /// The pod is gone (deleted, bound, or no longer ours).
    pub fn remove(&mut self, key: &str) {
        self.detach(key);
        self.pods.remove(key);
    }

    /// Whether the pod is known to the queue (queued or in flight).
    pub fn contains(&self, key: &str) -> bool {
        self.pods
            .get(key)
            .is_some_and(|s| s.where_ != Where::Nowhere)
    }

    /// Whether the pod sits in the unschedulable pool.
    pub fn is_unschedulable(&self, key: &str) -> bool {
        self.unschedulable.contains_key(key)
    }

    /// Takes the next active pod; it stays known as in flight until `done`/`failed`.
    pub fn pop(&mut self) -> Option<PodKey> {
        let (_, key) = self.active.pop_first()?;
        let st = self.pods.entry(key.clone()).or_default();
        st.where_ = Where::InFlight;
        st.attempts += 1;
        Some(key)
    }

    /// Number of pods in the active queue.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// (active, backoff, unschedulable) sizes.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.active.len(),
            self.backoff.len(),
            self.unschedulable.len(),
        )
    }

    fn backoff_duration(&self, attempts: u32) -> u64 {
        let mut d = self.config.initial_backoff_ms;
        for _ in 1..attempts.max(1) {
            d = d.saturating_mul(2);
            if d >= self.config.max_backoff_ms {
                return self.config.max_backoff_ms;
            }
        }
        d.min(self.config.max_backoff_ms)
    }

    fn backoff_end(&self, key: &str) -> Option<Millis> {
        let st = self.pods.get(key)?;
        let last = st.last_failure?;
        Some(Millis(last.0 + self.backoff_duration(st.attempts)))
    }

    /// The attempt did not fit: park in the unschedulable pool.
    pub fn unschedulable(&mut self, key: &str, now: Millis, rejected_by: BTreeSet<&'static str>) {
        self.detach(key);
        let st = self.pods.entry(key.to_string()).or_default();
        st.last_failure = Some(now);
        st.rejected_by = rejected_by;
        st.where_ = Where::Unschedulable(now);
        self.unschedulable.insert(key.to_string(), now);
    }

    /// The attempt hit an error: straight to backoff.
    pub fn error(&mut self, key: &str, now: Millis) {
        self.pods.entry(key.to_string()).or_default().last_failure = Some(now);
        let until = self.backoff_end(key).unwrap_or(now);
        self.push_backoff(key, until);
    }

    /// The pod left the scheduler's hands (bound).
    pub fn done(&mut self, key: &str) {
        self.remove(key);
    }

    fn requeue(&mut self, key: &str, now: Millis) {
        match self.backoff_end(key) {
            Some(until) if until > now => self.push_backoff(key, until),
            _ => self.push_active(key),
        }
    }

    /// A cluster event that can help the pods rejected by any of `plugins` (`None`: every pod).
    /// Returns how many pods moved.
    pub fn move_on_event(&mut self, now: Millis, plugins: Option<&[&'static str]>) -> usize {
        let keys: Vec<PodKey> = self
            .unschedulable
            .keys()
            .filter(|k| match plugins {
                None => true,
                Some(ps) => {
                    let rej = &self.pods[*k].rejected_by;
                    rej.is_empty() || ps.iter().any(|p| rej.contains(p))
                }
            })
            .cloned()
            .collect();
        for k in &keys {
            self.requeue(k, now);
        }
        keys.len()
    }

    /// Moves finished backoffs to active and flushes pods unschedulable for too long.
    pub fn tick(&mut self, now: Millis) {
        while let Some((&(until, _), _)) = self.backoff.first_key_value() {
            if until > now {
                break;
            }
            let (_, key) = self.backoff.pop_first().expect("non-empty");
            self.pods.get_mut(&key).expect("tracked").where_ = Where::Nowhere;
            self.push_active(&key);
        }
        let stale: Vec<PodKey> = self
            .unschedulable
            .iter()
            .filter(|(_, since)| now.0 >= since.0 + self.config.max_unschedulable_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.requeue(&k, now);
        }
    }

    /// When `tick` has something to do next.
    pub fn next_deadline(&self) -> Option<Millis> {
        let b = self.backoff.keys().next().map(|(t, _)| *t);
        let u = self
            .unschedulable
            .values()
            .min()
            .map(|s| Millis(s.0 + self.config.max_unschedulable_ms));
        match (b, u) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add("default/p");
        let mut expected = [1_000u64, 2_000, 4_000, 8_000, 10_000, 10_000].into_iter();
        let mut now = Millis(0);
        for _ in 0..6 {
            assert_eq!(q.pop().as_deref(), Some("default/p"));
            q.error("default/p", now);
            let want = expected.next().unwrap();
            assert_eq!(q.next_deadline(), Some(Millis(now.0 + want)));
            q.tick(Millis(now.0 + want - 1));
            assert_eq!(q.active_len(), 0);
            now = Millis(now.0 + want);
            q.tick(now);
            assert_eq!(q.active_len(), 1);
        }
    }

    #[test]
    fn unschedulable_pods_move_on_relevant_events_and_flush_after_five_minutes() {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add("default/a");
        q.add("default/b");
        q.pop();
        q.pop();
        q.unschedulable("default/a", Millis(0), ["VolumeBinding"].into());
        q.unschedulable("default/b", Millis(0), ["NodeResourcesFit"].into());
        // A PV event helps only the VolumeBinding rejection; its backoff (1 s) is not over.
        assert_eq!(q.move_on_event(Millis(500), Some(&["VolumeBinding"])), 1);
        assert_eq!(q.sizes(), (0, 1, 1));
        q.tick(Millis(1_000));
        assert_eq!(q.pop().as_deref(), Some("default/a"));
        // b is flushed after 5 minutes.
        q.tick(Millis(299_999));
        assert!(q.is_unschedulable("default/b"));
        q.tick(Millis(300_000));
        assert_eq!(q.pop().as_deref(), Some("default/b"));
    }
}
