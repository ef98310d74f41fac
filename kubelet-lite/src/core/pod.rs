//! One pod's lifecycle on the node, as a deterministic state machine.
//!
//! The driver feeds it the pod object ([`PodState::handle_pod`]), the outcomes of what it asked
//! for ([`PodState::handle_mounted`], [`PodState::handle_started`], [`PodState::handle_exited`])
//! and the time; [`PodState::poll`] answers with [`Action`]s, and [`PodState::status`] with the
//! PodStatus to report. The sequence mirrors the kubelet's syncPod: volumes first
//! (ContainerCreating until they are mounted), then each container (Created, Started), restarts
//! by restartPolicy with CrashLoopBackOff, and on deletion Killing → SIGTERM → grace period →
//! SIGKILL → unmount → finish the deletion.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::volumes::{self, ClusterView, ContainerMount, NotReady, PodDirs, VolumePlan};
use super::{k8s_time, Millis, MountOp};

/// What one container process needs; serialized to the runtime's container shim.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerLaunch {
    pub pod_uid: String,
    pub namespace: String,
    pub pod_name: String,
    pub container: String,
    /// `command` + `args`; empty when `pause` is set.
    pub argv: Vec<String>,
    /// No command: the container runs a pause process (no image is ever pulled).
    pub pause: bool,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<ContainerMount>,
    /// The UTS hostname: the pod's name.
    pub hostname: String,
    /// Restart number; part of the container id and of the log file name.
    pub attempt: u32,
}

/// A request from the core to the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run these mount operations, then report with [`PodState::handle_mounted`].
    Mount { uid: String, ops: Vec<MountOp> },
    /// Start a container, then report with [`PodState::handle_started`].
    Start {
        uid: String,
        launch: ContainerLaunch,
    },
    /// Signal a running container: SIGTERM, or SIGKILL when `kill`.
    Signal {
        uid: String,
        container: String,
        kill: bool,
    },
    /// Unmount and clean up the pod's directories (never PV data), then report with
    /// [`PodState::handle_torn_down`].
    Teardown { uid: String, ops: Vec<MountOp> },
    /// Record an Event about the pod (`field_path` names a container, as the kubelet does).
    Event {
        uid: String,
        type_: &'static str,
        reason: &'static str,
        message: String,
        field_path: Option<String>,
    },
    /// Everything is stopped and unmounted: delete the pod object for good (grace period 0,
    /// UID precondition), as the kubelet's status manager does.
    FinishDeletion {
        namespace: String,
        name: String,
        uid: String,
    },
}

/// How a container process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: i32,
    pub signal: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Terminated {
    exit_code: i32,
    signal: Option<i32>,
    reason: String,
    started_at: Millis,
    finished_at: Millis,
    container_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum CState {
    /// Not started yet (ContainerCreating) or waiting for a restart back-off.
    Waiting {
        reason: String,
        message: Option<String>,
        /// For a back-off: when the restart may happen.
        not_before: Option<Millis>,
    },
    /// Start requested; the driver has not answered yet.
    Starting,
    Running {
        started_at: Millis,
    },
    /// Exited and will not be restarted (restartPolicy).
    Done,
}

#[derive(Clone, Debug)]
struct Container_ {
    state: CState,
    restart_count: u32,
    last: Option<Terminated>,
    /// `true` once it has run at least once (pod phase rules).
    ever_started: bool,
    attempt: u32,
}

#[derive(Clone, Debug)]
enum Volumes {
    Pending {
        last: Option<NotReady>,
        next_attempt: Millis,
        failures: u32,
    },
    Mounting(VolumePlan),
    Ready(VolumePlan),
}

#[derive(Clone, Debug)]
struct Terminating {
    deadline: Millis,
    killed: bool,
    torn_down: bool,
    tearing_down: bool,
    /// The last teardown failed; it is retried a second later.
    teardown_failed: bool,
    /// After a failed teardown: when to try again.
    retry_teardown_at: Option<Millis>,
    finished: bool,
}

/// Restart back-off: 10 s doubling to 5 min, as the kubelet's.
pub fn restart_backoff_ms(restart_count: u32) -> Millis {
    if restart_count == 0 {
        return 0;
    }
    let secs = 10u64.saturating_mul(1u64 << (restart_count - 1).min(5));
    secs.min(300) * 1000
}

/// Volume retry back-off: 500 ms doubling to 8 s (the lab should see a disk appear quickly).
fn volume_backoff_ms(failures: u32) -> Millis {
    (500u64 << failures.min(4)).min(8_000)
}

/// Node identity the status needs.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub node_name: String,
    pub node_ip: String,
}

/// One pod's state on this node.
#[derive(Clone, Debug)]
pub struct PodState {
    pod: Pod,
    uid: String,
    volumes: Volumes,
    containers: BTreeMap<String, Container_>,
    terminating: Option<Terminating>,
    /// The pod object is gone from the API server (deleted with grace 0 elsewhere).
    gone: bool,
    /// Upper bound on the termination grace period (graceful node shutdown).
    grace_cap: Option<u64>,
    start_time: Millis,
    /// Condition type → (status, last transition).
    transitions: BTreeMap<&'static str, (bool, Millis)>,
    pause_announced: BTreeMap<String, bool>,
}

fn container_id(uid: &str, name: &str, attempt: u32) -> String {
    format!("bonsai://{uid}-{name}-{attempt}")
}

fn spec_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
}

impl PodState {
    /// A pod newly seen on this node at `now`.
    pub fn new(pod: Pod, now: Millis) -> PodState {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let containers = spec_containers(&pod)
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    Container_ {
                        state: CState::Waiting {
                            reason: "ContainerCreating".into(),
                            message: None,
                            not_before: None,
                        },
                        restart_count: 0,
                        last: None,
                        ever_started: false,
                        attempt: 0,
                    },
                )
            })
            .collect();
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.as_millisecond().max(0) as u64)
            .unwrap_or(now);
        PodState {
            pod,
            uid,
            volumes: Volumes::Pending {
                last: None,
                next_attempt: 0,
                failures: 0,
            },
            containers,
            terminating: None,
            gone: false,
            grace_cap: None,
            start_time,
            transitions: BTreeMap::new(),
            pause_announced: BTreeMap::new(),
        }
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }
    pub fn pod(&self) -> &Pod {
        &self.pod
    }
    fn ns(&self) -> String {
        self.pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    }
    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    /// A newer copy of the pod object.
    pub fn handle_pod(&mut self, pod: Pod) {
        self.pod = pod;
    }

    /// The pod object no longer exists in the API server.
    pub fn handle_gone(&mut self) {
        self.gone = true;
    }

    /// A claim or volume changed: a pod waiting for its volumes retries now, not at the end of
    /// its back-off. Returns whether it waits for volumes.
    pub fn handle_volumes_changed(&mut self) -> bool {
        if let Volumes::Pending { next_attempt, .. } = &mut self.volumes {
            *next_attempt = 0;
            return true;
        }
        false
    }

    /// The node shuts down cleanly: stop the pod, giving it at most `max_grace_seconds`, and
    /// unmount — without deleting the pod object.
    pub fn handle_node_shutdown(&mut self, max_grace_seconds: u64) {
        self.gone = true;
        self.grace_cap = Some(max_grace_seconds);
    }

    /// A restarted kubelet found this container's process still running.
    pub fn handle_adopted(&mut self, container: &str, started_at: Millis, attempt: u32) {
        if let Some(c) = self.containers.get_mut(container) {
            c.state = CState::Running { started_at };
            c.ever_started = true;
            c.attempt = attempt;
            c.restart_count = attempt;
        }
    }

    /// The outcome of an [`Action::Mount`].
    pub fn handle_mounted(&mut self, result: Result<(), String>, now: Millis) {
        let Volumes::Mounting(plan) = &self.volumes else {
            return;
        };
        self.volumes = match result {
            Ok(()) => Volumes::Ready(plan.clone()),
            Err(message) => Volumes::Pending {
                last: Some(NotReady::MountFailed {
                    volume: String::new(),
                    message,
                }),
                next_attempt: now + volume_backoff_ms(0),
                failures: 1,
            },
        };
    }

    /// The outcome of an [`Action::Start`].
    pub fn handle_started(&mut self, container: &str, result: Result<(), String>, now: Millis) {
        let Some(c) = self.containers.get_mut(container) else {
            return;
        };
        match result {
            Ok(()) => {
                c.state = CState::Running { started_at: now };
                c.ever_started = true;
            }
            Err(message) => {
                c.last = Some(Terminated {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    started_at: now,
                    finished_at: now,
                    container_id: container_id(&self.uid, container, c.attempt),
                });
                c.state = CState::Waiting {
                    reason: "RunContainerError".into(),
                    message: Some(message),
                    not_before: Some(now + restart_backoff_ms(c.restart_count.max(1))),
                };
            }
        }
    }

    /// A container process exited.
    pub fn handle_exited(&mut self, container: &str, exit: Exit, now: Millis) {
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let deleting = self.terminating.is_some() || self.deleting();
        let uid = self.uid.clone();
        let Some(c) = self.containers.get_mut(container) else {
            return;
        };
        let started_at = match c.state {
            CState::Running { started_at } => started_at,
            _ => now,
        };
        let reason = if exit.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        c.last = Some(Terminated {
            exit_code: exit.exit_code,
            signal: exit.signal,
            reason: reason.into(),
            started_at,
            finished_at: now,
            container_id: container_id(&uid, container, c.attempt),
        });
        let restart = !deleting
            && match policy.as_str() {
                "Never" => false,
                "OnFailure" => exit.exit_code != 0,
                _ => true,
            };
        c.state = if restart {
            CState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: None,
                not_before: Some(now + restart_backoff_ms(c.restart_count)),
            }
        } else {
            CState::Done
        };
    }

    /// The outcome of an [`Action::Teardown`].
    pub fn handle_torn_down(&mut self, result: Result<(), String>) {
        if let Some(t) = &mut self.terminating {
            t.tearing_down = false;
            t.torn_down = result.is_ok();
            t.teardown_failed = result.is_err();
        }
    }

    fn deleting(&self) -> bool {
        self.gone || self.pod.metadata.deletion_timestamp.is_some()
    }

    /// Whether the pod is completely finished here (stopped, unmounted, deletion requested).
    pub fn finished(&self) -> bool {
        self.terminating.as_ref().is_some_and(|t| t.finished)
    }

    fn running(&self) -> impl Iterator<Item = &String> {
        self.containers
            .iter()
            .filter(|(_, c)| matches!(c.state, CState::Running { .. } | CState::Starting))
            .map(|(n, _)| n)
    }

    fn event(
        &self,
        type_: &'static str,
        reason: &'static str,
        message: String,
        c: Option<&str>,
    ) -> Action {
        Action::Event {
            uid: self.uid.clone(),
            type_,
            reason,
            message,
            field_path: c.map(|c| format!("spec.containers{{{c}}}")),
        }
    }

    /// The next actions at `now`.
    pub fn poll(&mut self, now: Millis, view: &ClusterView<'_>, dirs: &PodDirs) -> Vec<Action> {
        let mut out = Vec::new();
        if self.deleting() {
            self.poll_deletion(now, dirs, &mut out);
            return out;
        }
        if let Volumes::Pending {
            last,
            next_attempt,
            failures,
        } = &self.volumes
        {
            if now < *next_attempt {
                return out;
            }
            match volumes::plan_volumes(&self.pod, view, dirs) {
                Ok(plan) => {
                    out.push(Action::Mount {
                        uid: self.uid.clone(),
                        ops: plan.setup.clone(),
                    });
                    self.volumes = Volumes::Mounting(plan);
                }
                Err(nr) => {
                    let _ = last;
                    let f = failures + 1;
                    out.push(self.event(
                        "Warning",
                        "FailedMount",
                        nr.event_message(&self.pod),
                        None,
                    ));
                    self.volumes = Volumes::Pending {
                        last: Some(nr),
                        next_attempt: now + volume_backoff_ms(f),
                        failures: f,
                    };
                }
            }
            return out;
        }
        let Volumes::Ready(plan) = &self.volumes else {
            return out;
        };
        let plan = plan.clone();
        let pod_key = format!("{}_{}({})", self.name(), self.ns(), self.uid);
        for spec in spec_containers(&self.pod).to_vec() {
            let Some(c) = self.containers.get(&spec.name).cloned() else {
                continue;
            };
            let CState::Waiting {
                reason, not_before, ..
            } = &c.state
            else {
                continue;
            };
            if let Some(t) = not_before {
                if now < *t {
                    if reason == "CrashLoopBackOff" || reason == "RunContainerError" {
                        let secs = restart_backoff_ms(c.restart_count) / 1000;
                        let msg = format!(
                            "back-off {secs}s restarting failed container={} pod={pod_key}",
                            spec.name
                        );
                        let cm = self.containers.get_mut(&spec.name).unwrap();
                        if let CState::Waiting {
                            message, reason, ..
                        } = &mut cm.state
                        {
                            if message.as_deref() != Some(msg.as_str())
                                && reason == "CrashLoopBackOff"
                            {
                                *message = Some(msg);
                                out.push(self.event(
                                    "Warning",
                                    "BackOff",
                                    format!(
                                        "Back-off restarting failed container {} in pod {pod_key}",
                                        spec.name
                                    ),
                                    Some(&spec.name),
                                ));
                            }
                        }
                    }
                    continue;
                }
            }
            let mounts = match volumes::container_mounts(&spec, &plan) {
                Ok(m) => m,
                Err(e) => {
                    out.push(self.event(
                        "Warning",
                        "Failed",
                        format!("Error: {e}"),
                        Some(&spec.name),
                    ));
                    let cm = self.containers.get_mut(&spec.name).unwrap();
                    cm.state = CState::Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(e),
                        not_before: Some(now + 10_000),
                    };
                    continue;
                }
            };
            let mut argv: Vec<String> = spec.command.clone().unwrap_or_default();
            argv.extend(spec.args.clone().unwrap_or_default());
            let pause = spec.command.as_ref().is_none_or(|c| c.is_empty());
            if pause && !self.pause_announced.contains_key(&spec.name) {
                self.pause_announced.insert(spec.name.clone(), true);
                let image = spec.image.clone().unwrap_or_default();
                out.push(self.event(
                    "Normal",
                    "NoCommand",
                    format!(
                        "Container {} has no command: bonsai pulls no images, so image \"{image}\" is not run; the container runs a pause process instead{}",
                        spec.name,
                        if argv.is_empty() { String::new() } else { format!(" (its args {argv:?} are ignored)") }
                    ),
                    Some(&spec.name),
                ));
            }
            let env = spec
                .env
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|e| (e.name, e.value.unwrap_or_default()))
                .collect();
            let restarting = c.ever_started || c.last.is_some();
            let attempt = if restarting { c.attempt + 1 } else { c.attempt };
            let launch = ContainerLaunch {
                pod_uid: self.uid.clone(),
                namespace: self.ns(),
                pod_name: self.name(),
                container: spec.name.clone(),
                argv: if pause { Vec::new() } else { argv },
                pause,
                env,
                working_dir: spec.working_dir.clone().filter(|w| !w.is_empty()),
                mounts,
                hostname: self.name(),
                attempt,
            };
            out.push(self.event(
                "Normal",
                "Created",
                format!("Created container: {}", spec.name),
                Some(&spec.name),
            ));
            out.push(Action::Start {
                uid: self.uid.clone(),
                launch,
            });
            let cm = self.containers.get_mut(&spec.name).unwrap();
            if restarting {
                cm.restart_count += 1;
            }
            cm.attempt = attempt;
            cm.state = CState::Starting;
        }
        out
    }

    fn poll_deletion(&mut self, now: Millis, dirs: &PodDirs, out: &mut Vec<Action>) {
        if self.terminating.is_none() {
            let grace = self
                .pod
                .metadata
                .deletion_grace_period_seconds
                .or_else(|| {
                    self.pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                })
                .unwrap_or(30)
                .max(0) as u64;
            let grace = self.grace_cap.map_or(grace, |c| grace.min(c));
            let running: Vec<String> = self.running().cloned().collect();
            for c in &running {
                out.push(self.event(
                    "Normal",
                    "Killing",
                    format!("Stopping container {c}"),
                    Some(c),
                ));
                out.push(Action::Signal {
                    uid: self.uid.clone(),
                    container: c.clone(),
                    kill: grace == 0,
                });
            }
            self.terminating = Some(Terminating {
                deadline: now + grace * 1000,
                killed: grace == 0,
                torn_down: false,
                tearing_down: false,
                teardown_failed: false,
                retry_teardown_at: None,
                finished: false,
            });
            // Containers waiting for a back-off never start again.
            for c in self.containers.values_mut() {
                if matches!(c.state, CState::Waiting { .. }) {
                    c.state = CState::Done;
                }
            }
        }
        let running: Vec<String> = self.running().cloned().collect();
        let t = self.terminating.as_ref().unwrap();
        if !running.is_empty() {
            if now >= t.deadline && !t.killed {
                for c in &running {
                    out.push(Action::Signal {
                        uid: self.uid.clone(),
                        container: c.clone(),
                        kill: true,
                    });
                }
                self.terminating.as_mut().unwrap().killed = true;
            }
            return;
        }
        if !t.torn_down {
            if t.teardown_failed {
                let t = self.terminating.as_mut().unwrap();
                match t.retry_teardown_at {
                    None => {
                        t.retry_teardown_at = Some(now + 1_000);
                        return;
                    }
                    Some(r) if now < r => return,
                    Some(_) => {
                        t.teardown_failed = false;
                        t.retry_teardown_at = None;
                    }
                }
            }
            let t = self.terminating.as_ref().unwrap();
            if !t.tearing_down {
                let ops = match &self.volumes {
                    Volumes::Ready(p) | Volumes::Mounting(p) => p.teardown.clone(),
                    Volumes::Pending { .. } => volumes::teardown_unknown(&self.uid, dirs, &[]),
                };
                out.push(Action::Teardown {
                    uid: self.uid.clone(),
                    ops,
                });
                self.terminating.as_mut().unwrap().tearing_down = true;
            }
            return;
        }
        if !t.finished {
            self.terminating.as_mut().unwrap().finished = true;
            if !self.gone {
                out.push(Action::FinishDeletion {
                    namespace: self.ns(),
                    name: self.name(),
                    uid: self.uid.clone(),
                });
            }
        }
    }

    /// When [`PodState::poll`] wants to run again without new input.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let mut t: Option<Millis> = None;
        let mut min = |v: Millis| t = Some(t.map_or(v, |t| t.min(v)));
        if let Volumes::Pending { next_attempt, .. } = &self.volumes {
            if !self.deleting() {
                min(*next_attempt);
            }
        }
        for c in self.containers.values() {
            if let CState::Waiting {
                not_before: Some(n),
                ..
            } = &c.state
            {
                min(*n);
            }
        }
        if let Some(term) = &self.terminating {
            if !term.killed {
                min(term.deadline);
            }
            if let Some(r) = term.retry_teardown_at {
                if !term.torn_down {
                    min(r);
                }
            }
        }
        t
    }

    fn container_status(&self, spec: &Container, c: &Container_) -> ContainerStatus {
        let term = |t: &Terminated| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: t.exit_code,
                signal: t.signal,
                reason: Some(t.reason.clone()),
                started_at: Some(k8s_time(t.started_at)),
                finished_at: Some(k8s_time(t.finished_at)),
                container_id: Some(t.container_id.clone()),
                message: None,
            }),
            ..Default::default()
        };
        let (state, last_state, started) = match &c.state {
            CState::Running { started_at } => (
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(k8s_time(*started_at)),
                    }),
                    ..Default::default()
                },
                c.last.as_ref().map(term),
                true,
            ),
            CState::Done => (c.last.as_ref().map(term).unwrap_or_default(), None, false),
            CState::Waiting {
                reason, message, ..
            } => (
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(reason.clone()),
                        message: message.clone(),
                    }),
                    ..Default::default()
                },
                c.last.as_ref().map(term),
                false,
            ),
            CState::Starting => (
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ContainerCreating".into()),
                        message: None,
                    }),
                    ..Default::default()
                },
                c.last.as_ref().map(term),
                false,
            ),
        };
        let has_id = c.ever_started || c.last.is_some();
        ContainerStatus {
            name: spec.name.clone(),
            image: spec.image.clone().unwrap_or_default(),
            image_id: String::new(),
            container_id: has_id.then(|| container_id(&self.uid, &spec.name, c.attempt)),
            ready: started,
            started: Some(started),
            restart_count: c.restart_count as i32,
            state: Some(state),
            last_state: Some(last_state.unwrap_or_default()),
            ..Default::default()
        }
    }

    fn phase(&self) -> &'static str {
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always");
        let (mut running, mut waiting, mut stopped, mut failed) = (0, 0, 0, 0);
        for c in self.containers.values() {
            match &c.state {
                CState::Running { .. } => running += 1,
                CState::Done => {
                    stopped += 1;
                    if c.last.as_ref().is_some_and(|t| t.exit_code != 0) {
                        failed += 1;
                    }
                }
                CState::Waiting { .. } | CState::Starting => {
                    if let Some(t) = &c.last {
                        stopped += 1;
                        if t.exit_code != 0 {
                            failed += 1;
                        }
                    } else {
                        waiting += 1;
                    }
                }
            }
        }
        if waiting > 0 || !matches!(self.volumes, Volumes::Ready(_)) && running == 0 && stopped == 0
        {
            return "Pending";
        }
        if running > 0 {
            return "Running";
        }
        if stopped > 0 {
            return match policy {
                "Always" => "Running",
                "OnFailure" if failed > 0 => "Running",
                "Never" if failed > 0 => "Failed",
                _ => "Succeeded",
            };
        }
        "Pending"
    }

    /// The PodStatus this node reports at `now`. Transition times are remembered, so calling it
    /// twice without a change gives equal results.
    pub fn status(&mut self, node: &NodeIdentity, now: Millis) -> PodStatus {
        let specs = spec_containers(&self.pod).to_vec();
        let statuses: Vec<ContainerStatus> = specs
            .iter()
            .filter_map(|s| {
                self.containers
                    .get(&s.name)
                    .map(|c| self.container_status(s, c))
            })
            .collect();
        let unready: Vec<String> = statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name.clone())
            .collect();
        let sandbox = matches!(self.volumes, Volumes::Ready(_)) && self.terminating.is_none();
        let all_ready = unready.is_empty() && !specs.is_empty();
        let mut conds = Vec::new();
        let mut cond = |this: &mut Self,
                        ty: &'static str,
                        ok: bool,
                        reason: Option<&str>,
                        msg: Option<String>| {
            let entry = this.transitions.entry(ty).or_insert((ok, now));
            if entry.0 != ok {
                *entry = (ok, now);
            }
            conds.push(PodCondition {
                type_: ty.into(),
                status: if ok { "True" } else { "False" }.into(),
                last_transition_time: Some(k8s_time(entry.1)),
                last_probe_time: None,
                reason: reason.map(Into::into),
                message: msg,
                observed_generation: None,
            });
        };
        let not_ready_msg = Some(format!(
            "containers with unready status: [{}]",
            unready.join(" ")
        ));
        cond(self, "PodReadyToStartContainers", sandbox, None, None);
        cond(self, "Initialized", true, None, None);
        if all_ready {
            cond(self, "Ready", true, None, None);
            cond(self, "ContainersReady", true, None, None);
        } else {
            cond(
                self,
                "Ready",
                false,
                Some("ContainersNotReady"),
                not_ready_msg.clone(),
            );
            cond(
                self,
                "ContainersReady",
                false,
                Some("ContainersNotReady"),
                not_ready_msg,
            );
        }
        // PodScheduled is the scheduler's; keep what it wrote.
        let scheduled = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled").cloned());
        conds.push(scheduled.unwrap_or(PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(k8s_time(self.start_time)),
            ..Default::default()
        }));
        let ip = vec![PodIP {
            ip: node.node_ip.clone(),
        }];
        PodStatus {
            phase: Some(self.phase().into()),
            conditions: Some(conds),
            container_statuses: Some(statuses),
            host_ip: Some(node.node_ip.clone()),
            host_ips: Some(vec![k8s_openapi::api::core::v1::HostIP {
                ip: node.node_ip.clone(),
            }]),
            pod_ip: Some(node.node_ip.clone()),
            pod_ips: Some(ip),
            start_time: Some(Time(k8s_time(self.start_time).0)),
            qos_class: Some(qos_class(&self.pod).into()),
            ..Default::default()
        }
    }
}

/// Kubernetes' QoS class from requests and limits.
pub fn qos_class(pod: &Pod) -> &'static str {
    let cs = spec_containers(pod);
    let mut any = false;
    let mut guaranteed = true;
    for c in cs {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.clone()).unwrap_or_default();
        let lim = r.and_then(|r| r.limits.clone()).unwrap_or_default();
        if !req.is_empty() || !lim.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            match (lim.get(res), req.get(res)) {
                (Some(l), Some(q)) if l == q => {}
                (Some(_), None) => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::super::volumes::PathKind;
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    fn pod(extra: serde_json::Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {
                "nodeName": "node-1",
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "containers": [{"name": "app", "image": "busybox", "command": ["/bin/sh", "-c", "sleep 100"],
                                "volumeMounts": [{"name": "scratch", "mountPath": "/data"}]}]
            }
        });
        if let (Some(o), Some(e)) = (v["spec"].as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).unwrap()
    }

    struct Env {
        labels: BTreeMap<String, String>,
        pvcs: BTreeMap<String, k8s_openapi::api::core::v1::PersistentVolumeClaim>,
        pvs: BTreeMap<String, k8s_openapi::api::core::v1::PersistentVolume>,
        paths: BTreeMap<PathBuf, PathKind>,
        dirs: PodDirs,
    }
    impl Env {
        fn new() -> Env {
            Env {
                labels: BTreeMap::new(),
                pvcs: BTreeMap::new(),
                pvs: BTreeMap::new(),
                paths: BTreeMap::new(),
                dirs: PodDirs {
                    root: "/k/pods".into(),
                },
            }
        }
        fn poll(&self, s: &mut PodState, now: Millis) -> Vec<Action> {
            let view = ClusterView {
                node_labels: &self.labels,
                pvcs: &self.pvcs,
                pvs: &self.pvs,
                paths: &self.paths,
            };
            s.poll(now, &view, &self.dirs)
        }
    }

    fn node() -> NodeIdentity {
        NodeIdentity {
            node_name: "node-1".into(),
            node_ip: "127.0.0.1".into(),
        }
    }

    fn reasons(a: &[Action]) -> Vec<String> {
        a.iter()
            .map(|a| match a {
                Action::Event { reason, .. } => format!("event:{reason}"),
                Action::Mount { .. } => "mount".into(),
                Action::Start { .. } => "start".into(),
                Action::Signal { kill, .. } => {
                    format!("signal:{}", if *kill { "KILL" } else { "TERM" })
                }
                Action::Teardown { .. } => "teardown".into(),
                Action::FinishDeletion { .. } => "finish".into(),
            })
            .collect()
    }

    #[test]
    fn pod_runs_through_mount_create_start() {
        let env = Env::new();
        let mut s = PodState::new(pod(json!({})), 1_000);
        assert_eq!(s.status(&node(), 1_000).phase.as_deref(), Some("Pending"));
        assert_eq!(reasons(&env.poll(&mut s, 1_000)), ["mount"]);
        s.handle_mounted(Ok(()), 1_001);
        let a = env.poll(&mut s, 1_002);
        assert_eq!(reasons(&a), ["event:Created", "start"]);
        let Action::Start { launch, .. } = &a[1] else {
            panic!()
        };
        assert_eq!(launch.argv, ["/bin/sh", "-c", "sleep 100"]);
        assert_eq!(launch.hostname, "web");
        assert_eq!(launch.mounts[0].target, PathBuf::from("/data"));
        s.handle_started("app", Ok(()), 1_003);
        let st = s.status(&node(), 1_003);
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert_eq!(st.pod_ip.as_deref(), Some("127.0.0.1"));
        let conds: Vec<_> = st
            .conditions
            .unwrap()
            .iter()
            .map(|c| format!("{}={}", c.type_, c.status))
            .collect();
        assert_eq!(
            conds,
            [
                "PodReadyToStartContainers=True",
                "Initialized=True",
                "Ready=True",
                "ContainersReady=True",
                "PodScheduled=True"
            ]
        );
        assert!(env.poll(&mut s, 1_004).is_empty());
    }

    #[test]
    fn no_command_runs_pause_and_says_so() {
        let env = Env::new();
        let mut p = pod(json!({}));
        p.spec.as_mut().unwrap().containers[0].command = None;
        let mut s = PodState::new(p, 0);
        env.poll(&mut s, 0);
        s.handle_mounted(Ok(()), 0);
        let a = env.poll(&mut s, 0);
        assert_eq!(reasons(&a), ["event:NoCommand", "event:Created", "start"]);
        let Action::Start { launch, .. } = &a[2] else {
            panic!()
        };
        assert!(launch.pause);
    }

    #[test]
    fn crash_loop_backs_off_and_never_policy_fails() {
        let env = Env::new();
        let mut s = PodState::new(pod(json!({})), 0);
        env.poll(&mut s, 0);
        s.handle_mounted(Ok(()), 0);
        env.poll(&mut s, 0);
        s.handle_started("app", Ok(()), 0);
        s.handle_exited(
            "app",
            Exit {
                exit_code: 1,
                signal: None,
            },
            100,
        );
        // First restart is immediate.
        assert_eq!(reasons(&env.poll(&mut s, 100)), ["event:Created", "start"]);
        s.handle_started("app", Ok(()), 101);
        s.handle_exited(
            "app",
            Exit {
                exit_code: 1,
                signal: None,
            },
            200,
        );
        assert_eq!(reasons(&env.poll(&mut s, 200)), ["event:BackOff"]);
        assert_eq!(s.poll_timeout(), Some(10_200));
        let st = s.status(&node(), 200);
        let cs = &st.container_statuses.unwrap()[0];
        assert_eq!(cs.restart_count, 1);
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert_eq!(
            reasons(&env.poll(&mut s, 10_200)),
            ["event:Created", "start"]
        );

        let mut s = PodState::new(pod(json!({"restartPolicy": "Never"})), 0);
        env.poll(&mut s, 0);
        s.handle_mounted(Ok(()), 0);
        env.poll(&mut s, 0);
        s.handle_started("app", Ok(()), 0);
        s.handle_exited(
            "app",
            Exit {
                exit_code: 3,
                signal: None,
            },
            5,
        );
        assert!(env.poll(&mut s, 5).is_empty());
        assert_eq!(s.status(&node(), 5).phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn deletion_terms_then_kills_then_unmounts_then_finishes() {
        let env = Env::new();
        let mut s = PodState::new(pod(json!({"terminationGracePeriodSeconds": 2})), 0);
        env.poll(&mut s, 0);
        s.handle_mounted(Ok(()), 0);
        env.poll(&mut s, 0);
        s.handle_started("app", Ok(()), 0);
        let mut p = s.pod().clone();
        p.metadata.deletion_timestamp = Some(k8s_time(1_000));
        p.metadata.deletion_grace_period_seconds = Some(2);
        s.handle_pod(p);
        assert_eq!(
            reasons(&env.poll(&mut s, 1_000)),
            ["event:Killing", "signal:TERM"]
        );
        assert!(env.poll(&mut s, 2_000).is_empty());
        assert_eq!(reasons(&env.poll(&mut s, 3_000)), ["signal:KILL"]);
        s.handle_exited(
            "app",
            Exit {
                exit_code: 137,
                signal: Some(9),
            },
            3_001,
        );
        let a = env.poll(&mut s, 3_001);
        assert_eq!(reasons(&a), ["teardown"]);
        let Action::Teardown { ops, .. } = &a[0] else {
            panic!()
        };
        assert_eq!(
            ops.last(),
            Some(&MountOp::RemoveTree {
                path: "/k/pods/u1".into()
            })
        );
        s.handle_torn_down(Ok(()));
        assert_eq!(reasons(&env.poll(&mut s, 3_002)), ["finish"]);
        assert!(s.finished());
    }

    #[test]
    fn failed_teardown_is_retried_a_second_later() {
        let env = Env::new();
        let mut s = PodState::new(pod(json!({})), 0);
        env.poll(&mut s, 0);
        s.handle_mounted(Ok(()), 0);
        env.poll(&mut s, 0);
        s.handle_started("app", Ok(()), 0);
        s.handle_node_shutdown(0);
        assert_eq!(
            reasons(&env.poll(&mut s, 10)),
            ["event:Killing", "signal:KILL"]
        );
        s.handle_exited(
            "app",
            Exit {
                exit_code: 137,
                signal: Some(9),
            },
            11,
        );
        assert_eq!(reasons(&env.poll(&mut s, 11)), ["teardown"]);
        s.handle_torn_down(Err("busy".into()));
        assert!(env.poll(&mut s, 12).is_empty());
        assert_eq!(s.poll_timeout(), Some(1_012));
        assert_eq!(reasons(&env.poll(&mut s, 1_012)), ["teardown"]);
        s.handle_torn_down(Ok(()));
        // A node shutdown stops the pod but does not delete the object.
        assert!(env.poll(&mut s, 1_013).is_empty());
        assert!(s.finished());
    }

    #[test]
    fn unbound_claim_keeps_pod_pending_with_failed_mount() {
        let env = Env::new();
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "c"}}],
                     "containers": [{"name": "c", "image": "x"}]}
        }))
        .unwrap();
        let mut s = PodState::new(p, 0);
        let a = env.poll(&mut s, 0);
        assert_eq!(reasons(&a), ["event:FailedMount"]);
        assert_eq!(s.poll_timeout(), Some(1_000));
        assert!(env.poll(&mut s, 500).is_empty());
        let st = s.status(&node(), 0);
        assert_eq!(st.phase.as_deref(), Some("Pending"));
        let cs = &st.container_statuses.unwrap()[0];
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("ContainerCreating")
        );
    }
}
