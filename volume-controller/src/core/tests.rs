//! Table tests of the core, after upstream `binder_test.go` / `delete_test.go` /
//! `recycle_test.go` / `provision_test.go`: an initial world in the model API → one sync (or
//! a multi-sync run to quiescence, with periodic resyncs) → the expected world and events.
//! Case names carry upstream's numbers where a case exists there.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, LocalVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource,
    PersistentVolumeSpec, PersistentVolumeStatus, Pod, PodSpec, PodStatus, Volume,
    VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::model::{Change, ModelApi};
use super::*;
use apiserver::api;

const NS: &str = "default";
const BBC: &str = api::ANN_BOUND_BY_CONTROLLER;
const BC: &str = api::ANN_BIND_COMPLETED;

// ------------------------------------------------------------------ builders

fn anns(list: &[&str]) -> Option<BTreeMap<String, String>> {
    if list.is_empty() {
        None
    } else {
        Some(
            list.iter()
                .map(|a| (a.to_string(), "yes".to_string()))
                .collect(),
        )
    }
}

/// upstream `newVolume(name, capacity, boundToClaimUID, boundToClaimName, phase, policy, annotations...)`.
fn pv(
    name: &str,
    size: &str,
    uid: &str,
    claim: &str,
    phase: &str,
    policy: &str,
    a: &[&str],
) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("pvuid-{name}")),
            annotations: anns(a),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some([("storage".to_string(), Quantity(size.into()))].into()),
            access_modes: Some(vec![api::RWO.into(), api::ROX.into()]),
            persistent_volume_reclaim_policy: Some(policy.into()),
            local: Some(LocalVolumeSource {
                path: format!("/mnt/disks/{name}"),
                fs_type: None,
            }),
            claim_ref: (!claim.is_empty()).then(|| ObjectReference {
                kind: Some("PersistentVolumeClaim".into()),
                api_version: Some("v1".into()),
                namespace: Some(NS.into()),
                name: Some(claim.into()),
                uid: (!uid.is_empty()).then(|| uid.to_string()),
                ..Default::default()
            }),
            storage_class_name: Some(String::new()),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

/// upstream `newClaim(name, claimUID, capacity, boundToVolume, phase, class, annotations...)`.
fn pvc(
    name: &str,
    uid: &str,
    size: &str,
    volume: &str,
    phase: &str,
    a: &[&str],
) -> PersistentVolumeClaim {
    let modes = vec![api::RWO.to_string(), api::ROX.to_string()];
    let bound = phase == "Bound" || phase == "Lost";
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            uid: Some(uid.into()),
            annotations: anns(a),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(modes.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                ..Default::default()
            }),
            volume_name: (!volume.is_empty()).then(|| volume.to_string()),
            ..Default::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some(phase.into()),
            capacity: bound.then(|| [("storage".to_string(), Quantity(size.into()))].into()),
            access_modes: bound.then_some(modes),
            ..Default::default()
        }),
    }
}

fn with_class_pv(class: &str, mut v: PersistentVolume) -> PersistentVolume {
    v.spec.as_mut().unwrap().storage_class_name = Some(class.into());
    v
}

fn with_class(class: Option<&str>, mut c: PersistentVolumeClaim) -> PersistentVolumeClaim {
    c.spec.as_mut().unwrap().storage_class_name = class.map(Into::into);
    c
}

fn with_modes_pv(modes: &[&str], mut v: PersistentVolume) -> PersistentVolume {
    v.spec.as_mut().unwrap().access_modes = Some(modes.iter().map(|s| s.to_string()).collect());
    v
}

fn with_modes(modes: &[&str], mut c: PersistentVolumeClaim) -> PersistentVolumeClaim {
    c.spec.as_mut().unwrap().access_modes = Some(modes.iter().map(|s| s.to_string()).collect());
    c
}

fn with_labels(mut v: PersistentVolume) -> PersistentVolume {
    v.metadata.labels = Some(
        [
            ("foo".to_string(), "true".to_string()),
            ("bar".to_string(), "false".to_string()),
        ]
        .into(),
    );
    v
}

fn with_selector(mut c: PersistentVolumeClaim) -> PersistentVolumeClaim {
    c.spec.as_mut().unwrap().selector = Some(LabelSelector {
        match_labels: Some(
            [
                ("foo".to_string(), "true".to_string()),
                ("bar".to_string(), "false".to_string()),
            ]
            .into(),
        ),
        match_expressions: None,
    });
    c
}

fn with_annotation_pv(k: &str, v: &str, mut p: PersistentVolume) -> PersistentVolume {
    p.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(k.into(), v.into());
    p
}

fn with_annotation(k: &str, v: &str, mut c: PersistentVolumeClaim) -> PersistentVolumeClaim {
    c.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(k.into(), v.into());
    c
}

fn class(name: &str, provisioner: &str, mode: &str) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        provisioner: provisioner.into(),
        volume_binding_mode: Some(mode.into()),
        reclaim_policy: Some("Delete".into()),
        ..Default::default()
    }
}

fn pod(name: &str, claim: &str, node: &str, phase: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            uid: Some(format!("poduid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.to_string()),
            containers: vec![Container {
                name: "c".into(),
                ..Default::default()
            }],
            volumes: Some(vec![Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.into(),
                    read_only: None,
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

// ------------------------------------------------------------------ harness

struct World {
    api: ModelApi,
    core: VolumeControllerCore,
    now: Millis,
    delivered: usize,
    /// Requests the core sent, by verb (to assert e.g. that a live GET happened).
    verbs: Vec<&'static str>,
}

impl World {
    fn new(
        classes: Vec<StorageClass>,
        volumes: Vec<PersistentVolume>,
        claims: Vec<PersistentVolumeClaim>,
        pods: Vec<Pod>,
    ) -> World {
        let mut api = ModelApi::default();
        for c in classes {
            api.put_class(c);
        }
        for v in volumes {
            api.put_volume(v);
        }
        for c in claims {
            api.put_claim(c);
        }
        for p in pods {
            api.put_pod(p);
        }
        let core = VolumeControllerCore::new(
            CoreConfig {
                resync_period_ms: 15_000,
                protection: false,
            },
            Arc::new(metrics::Metrics::new()),
        );
        World {
            api,
            core,
            now: Millis(1_700_000_000_000),
            delivered: 0,
            verbs: vec![],
        }
    }

    fn with_protection(mut self) -> World {
        self.core.config.protection = true;
        self
    }

    /// Delivers the initial lists (the watches' first Relisted) without syncing anything,
    /// like upstream tests that fill the caches and then call one sync function.
    fn start_idle(&mut self) {
        self.relist();
        self.core.queue.clear();
        self.core.queued.clear();
    }

    fn relist(&mut self) {
        let now = self.now;
        self.core.handle_class_event(
            now,
            WatchEvent::Relisted(self.api.classes.values().cloned().collect()),
        );
        self.core.handle_volume_event(
            now,
            WatchEvent::Relisted(self.api.volumes.values().cloned().collect()),
        );
        self.core.handle_claim_event(
            now,
            WatchEvent::Relisted(self.api.claims.values().cloned().collect()),
        );
        self.core.handle_pod_event(
            now,
            WatchEvent::Relisted(self.api.pods.values().cloned().collect()),
        );
        self.delivered = self.api.log.len();
    }

    fn deliver(&mut self) -> bool {
        let mut any = false;
        while self.delivered < self.api.log.len() {
            let ch = self.api.log[self.delivered].clone();
            self.delivered += 1;
            any = true;
            let now = self.now;
            match ch {
                Change::Volume(e) => self.core.handle_volume_event(now, e),
                Change::Claim(e) => self.core.handle_claim_event(now, e),
                Change::Class(e) => self.core.handle_class_event(now, e),
                Change::Pod(e) => self.core.handle_pod_event(now, e),
            }
        }
        any
    }

    /// Drives to quiescence: every output performed and completed, every change delivered.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut any = false;
            while let Some(out) = self.core.poll_output() {
                any = true;
                self.verbs.push(out.request.verb());
                let c = self.api.apply(&out.request);
                self.core.handle_completion(self.now, out.id, c);
            }
            any |= self.deliver();
            if !any {
                assert_eq!(self.core.backlog(), 0, "quiescent but backlog left");
                return;
            }
        }
        panic!("no quiescence after 10000 rounds");
    }

    /// Runs one sync of `work` and everything it causes.
    fn sync(&mut self, work: Work) {
        self.core.enqueue(work);
        self.run();
    }

    /// upstream TestMultiSync: run, then periodic resyncs until one changes nothing.
    fn multisync(&mut self) {
        self.relist();
        self.run();
        for _ in 0..20 {
            let before = self.api.log.len();
            self.now = self.now.plus(15_000);
            self.core.handle_timeout(self.now);
            self.run();
            if self.api.log.len() == before {
                return;
            }
        }
        panic!("multisync did not settle");
    }

    fn vol(&self, name: &str) -> String {
        let Some(v) = self.api.volumes.get(name) else {
            return "<deleted>".into();
        };
        describe_volume(v)
    }

    fn claim(&self, name: &str) -> String {
        let Some(c) = self.api.claims.get(&format!("{NS}/{name}")) else {
            return "<deleted>".into();
        };
        describe_claim(c)
    }

    /// "Type Reason" of every Event, like upstream's expectedEvents.
    fn events(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .api
            .events
            .values()
            .map(|e| {
                format!(
                    "{} {}",
                    e.type_.as_deref().unwrap_or(""),
                    e.reason.as_deref().unwrap_or("")
                )
            })
            .collect();
        v.sort();
        v
    }

    fn event_messages(&self) -> Vec<String> {
        self.api.event_lines()
    }
}

fn short_anns(m: &ObjectMeta) -> String {
    let mut out = vec![];
    if let Some(a) = &m.annotations {
        for k in a.keys() {
            out.push(match k.as_str() {
                BBC => "bound-by-controller".to_string(),
                BC => "bind-completed".to_string(),
                other => other.to_string(),
            });
        }
    }
    out.join(",")
}

fn describe_volume(v: &PersistentVolume) -> String {
    let spec = v.spec.as_ref().unwrap();
    let r = spec
        .claim_ref
        .as_ref()
        .map(|r| {
            format!(
                "{}:{}",
                r.name.as_deref().unwrap_or(""),
                r.uid.as_deref().unwrap_or("")
            )
        })
        .unwrap_or_else(|| "-".into());
    let st = v.status.as_ref();
    let msg = st.and_then(|s| s.message.as_deref()).unwrap_or("");
    format!(
        "{} claimRef={} [{}]{}",
        st.and_then(|s| s.phase.as_deref()).unwrap_or(""),
        r,
        short_anns(&v.metadata),
        if msg.is_empty() {
            String::new()
        } else {
            format!(" msg={msg}")
        }
    )
}

fn describe_claim(c: &PersistentVolumeClaim) -> String {
    let st = c.status.as_ref();
    let cap = st
        .and_then(|s| s.capacity.as_ref())
        .and_then(|m| m.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "-".into());
    format!(
        "{} volume={} [{}] cap={}",
        st.and_then(|s| s.phase.as_deref()).unwrap_or(""),
        c.spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or("-"),
        short_anns(&c.metadata),
        cap
    )
}

fn claim_work(name: &str) -> Work {
    Work::Claim(format!("{NS}/{name}"))
}

fn volume_work(name: &str) -> Work {
    Work::Volume(name.into())
}

// ------------------------------------------------------------------ [Unit test set 1]

#[test]
fn set1_user_did_not_choose_a_volume() {
    struct Case {
        name: &'static str,
        classes: Vec<StorageClass>,
        volumes: Vec<PersistentVolume>,
        claim: PersistentVolumeClaim,
        pods: Vec<Pod>,
        expect_volumes: Vec<(&'static str, &'static str)>,
        expect_claim: &'static str,
        expect_events: Vec<&'static str>,
    }
    let wait = class(
        "wait",
        api::NOT_SUPPORTED_PROVISIONER,
        api::BINDING_WAIT_FOR_FIRST_CONSUMER,
    );
    let cases = vec![
        Case {
            name: "1-1 - successful bind",
            classes: vec![],
            volumes: vec![pv("volume1-1", "1Gi", "", "", "Available", "Retain", &[])],
            claim: pvc("claim1-1", "uid1-1", "1Gi", "", "Pending", &[]),
            pods: vec![],
            expect_volumes: vec![(
                "volume1-1",
                "Bound claimRef=claim1-1:uid1-1 [bound-by-controller]",
            )],
            expect_claim: "Bound volume=volume1-1 [bind-completed,bound-by-controller] cap=1Gi",
            expect_events: vec![],
        },
        Case {
            name: "1-2 - noop",
            classes: vec![],
            volumes: vec![pv("volume1-2", "1Gi", "", "", "Available", "Retain", &[])],
            claim: pvc("claim1-2", "uid1-2", "10Gi", "", "Pending", &[]),
            pods: vec![],
            expect_volumes: vec![("volume1-2", "Available claimRef=- []")],
            expect_claim: "Pending volume=- [] cap=-",
            expect_events: vec!["Normal FailedBinding"],
        },
        Case {
            name: "1-3 - reset to Pending",
            classes: vec![],
            volumes: vec![pv("volume1-3", "1Gi", "", "", "Available", "Retain", &[])],
            claim: pvc("claim1-3", "uid1-3", "10Gi", "", "Bound", &[]),
            pods: vec![],
            expect_volumes: vec![("volume1-3", "Available claimRef=- []")],
            expect_claim: "Pending volume=- [] cap=-",
            expect_events: vec!["Normal FailedBinding"],
        },
        Case {
            name: "1-4 - smallest volume",
            classes: vec![],
            volumes: vec![
                pv("volume1-4_1", "10Gi", "", "", "Available", "Retain", &[]),
                pv("volume1-4_2", "1Gi", "", "", "Available", "Retain", &[]),
            ],
            claim: pvc("claim1-4", "uid1-4", "1Gi", "", "Pending", &[]),
            pods: vec![],
            expect_volumes: vec![
                ("volume1-4_1", "Available claimRef=- []"),
                (
                    "volume1-4_2",
                    "Bound claimRef=claim1-4:uid1-4 [bound-by-controller]",
                ),
            ],
            expect_claim: "Bound volume=volume1-4_2 [bind-completed,bound-by-controller] cap=1Gi",
            expect_events: vec![],
        },
        Case {
            name: "1-5 - prebound volume by name - success",
            classes: vec![],
            volumes: vec![
                pv(
                    "volume1-5_1",
                    "10Gi",
                    "",
                    "claim1-5",
                    "Available",
                    "Retain",
                    &[],
                ),
                pv("volume1-5_2", "1Gi", "", "", "Available", "Retain", &[]),
            ],
            claim: pvc("claim1-5", "uid1-5", "1Gi", "", "Pending", &[]),
            pods: vec![],
            expect_volumes: vec![
                ("volume1-5_1", "Bound claimRef=claim1-5:uid1-5 []"),
                ("volume1-5_2", "Available claimRef=- []"),
            ],
            expect_claim: "Bound volume=volume1-5_1 [bind-completed,bound-by-controller] cap=10Gi",
            expect_events: vec![],
        },
        Case {
            name: "1-6 - prebound volume by UID - success",
            classes: vec![],
            volumes: vec![
                pv(
                    "volume1-6_1",
                    "10Gi",
                    "uid1-6",
                    "claim1-6",
                    "Available",
                    "Retain",
                    &[],
                ),
                pv("volume1-6_2", "1Gi", "", "", "Available", "Retain", &[]),
            ],
            claim: pvc("claim1-6", "uid1-6", "1Gi", "", "Pending", &[]),
            pods: vec![],
            expect_volumes: vec![
                ("volume1-6_1", "Bound claimRef=claim1-6:uid1-6 []"),
                ("volume1-6_2", "Available claimRef=- []"),
            ],
            expect_claim: "Bound volume=volume1-6_1 [bind-completed,bound-by-controller] cap=10Gi",
            expect_events: vec![],
        },
        Case {
            name: "1-7 - prebound volume to different claim",
            classes: vec![],
            volumes: vec![pv(
                "volume1-7",
                "10Gi",
                "uid1-777",
                "claim1-7",
                "Available",
                "Retain",
                &[],
            )],
            claim: pvc("claim1-7", "uid1-7", "1Gi", "", "Pending", &[]),
            pods: vec![],
            expect_volumes: vec![("volume1-7", "Available claimRef=claim1-7:uid1-777 []")],
            expect_claim: "Pending volume=- [] cap=-",
            expect_events: vec!["Normal FailedBinding"],
        },
        Case {
            name: "1-8 - complete bind after crash - PV bound",
            classes: vec![],
            volumes: vec![pv(
                "volume1-8",
                "1Gi",
                "uid1-8",
                "claim1-8",
                "Available",
                "Retain",
                &[BBC],
            )],
            claim: pvc("claim1-8", "uid1-8", "1Gi", "", "Pending", &[]),
            pods: vec![],
            expect_volumes: vec![(
                "volume1-8",
                "Bound claimRef=claim1-8:uid1-8 [bound-by-controller]",
            )],
            expect_claim: "Bound volume=volume1-8 [bind-completed,bound-by-controller] cap=1Gi",
            expect_events: vec![],
        },
        Case {
            name: "1-9 - complete bind after crash - PV status saved",
            classes: vec![],
            volumes: vec![pv(
                "volume1-9",
                "1Gi",
                "uid1-9",
                "claim1-9",
                "Bound",
                "Retain",
                &[BBC],
            )],
            claim: pvc("claim1-9", "uid1-9", "1Gi", "", "Pending", &[]),
            pods: vec![],
            expect_volumes: vec![(
                "volume1-9",
                "Bound claimRef=claim1-9:uid1-9 [bound-by-controller]",
            )],
            expect_claim: "Bound volume=volume1-9 [bind-completed,bound-by-controller] cap=1Gi",
            expect_events: vec![],
        },
        Case {
            name: "1-10 - complete bind after crash - PVC bound",
            classes: vec![],
            volumes: vec![pv(
                "volume1-10",
                "1Gi",
                "uid1-10",
                "claim1-10",
                "Bound",
                "Retain",
                &[BBC],
            )],
            claim: pvc(
                "claim1-10",
                "uid1-10",
                "1Gi",
                "volume1-10",
                "Pending",
                &[BBC, BC],
            ),
            pods: vec![],
            expect_volumes: vec![(
                "volume1-10",
                "Bound claimRef=claim1-10:uid1-10 [bound-by-controller]",
            )],
            expect_claim: "Bound volume=volume1-10 [bind-completed,bound-by-controller] cap=1Gi",
            expect_events: vec![],
        },
        Case {
            name: "1-11 - bind when selector matches",
            classes: vec![],
            volumes: vec![with_labels(pv(
                "volume1-1",
                "1Gi",
                "",
                "",
                "Available",
                "Retain",
                &[],
            ))],
            claim: with_selector(pvc("claim1-1", "uid1-1", "1Gi", "", "Pending", &[])),
            pods: vec![],
            expect_volumes: vec![(
                "volume1-1",
                "Bound claimRef=claim1-1:uid1-1 [bound-by-controller]",
            )],
            expect_claim: "Bound volume=volume1-1 [bind-completed,bound-by-controller] cap=1Gi",
            expect_events: vec![],
        },
        Case {
            name: "1-12 - do not bind when selector does not match",
            classes: vec![],
            volumes: vec![pv("volume1-1", "1Gi", "", "", "Available", "Retain", &[])],
            claim: with_selector(pvc("claim1-1", "uid1-1", "1Gi", "", "Pending", &[])),
            pods: vec![],
            expect_volumes: vec![("volume1-1", "Available claimRef=- []")],
            expect_claim: "Pending volume=- [] cap=-",
            expect_events: vec!["Normal FailedBinding"],
        },
        Case {
            name: "1-13 - delayed binding",
            classes: vec![wait.clone()],
            volumes: vec![with_class_pv(
                "wait",
                pv("volume1-1", "1Gi", "", "", "Available", "Retain", &[]),
            )],
            claim: with_class(
                Some("wait"),
                pvc("claim1-1", "uid1-1", "1Gi", "", "Pending", &[]),
            ),
            pods: vec![],
            expect_volumes: vec![("volume1-1", "Available claimRef=- []")],
            expect_claim: "Pending volume=- [] cap=-",
            expect_events: vec!["Normal WaitForFirstConsumer"],
        },
        Case {
            name: "1-14 - successful prebound PV",
            classes: vec![wait.clone()],
            volumes: vec![with_class_pv(
                "wait",
                pv(
                    "volume1-1",
                    "1Gi",
                    "",
                    "claim1-1",
                    "Available",
                    "Retain",
                    &[],
                ),
            )],
            claim: with_class(
                Some("wait"),
                pvc("claim1-1", "uid1-1", "1Gi", "", "Pending", &[]),
            ),
            pods: vec![],
            expect_volumes: vec![("volume1-1", "Bound claimRef=claim1-1:uid1-1 []")],
            expect_claim: "Bound volume=volume1-1 [bind-completed,bound-by-controller] cap=1Gi",
            expect_events: vec![],
        },
        Case {
            // The scheduler's PreBind wrote claimRef (with uid) and bound-by-controller.
            name: "1-15 - complete a bind the scheduler started (WaitForFirstConsumer)",
            classes: vec![wait.clone()],
            volumes: vec![with_class_pv(
                "wait",
                pv(
                    "volume1-1",
                    "1Gi",
                    "uid1-1",
                    "claim1-1",
                    "Available",
                    "Retain",
                    &[BBC],
                ),
            )],
            claim: with_class(
                Some("wait"),
                pvc("claim1-1", "uid1-1", "1Gi", "", "Pending", &[]),
            ),
            pods: vec![pod("pod1", "claim1-1", "node-1", "Pending")],
            expect_volumes: vec![(
                "volume1-1",
                "Bound claimRef=claim1-1:uid1-1 [bound-by-controller]",
            )],
            expect_claim: "Bound volume=volume1-1 [bind-completed,bound-by-controller] cap=1Gi",
            expect_events: vec![],
        },
        Case {
            name: "1-16 - WaitForPodScheduled with an unscheduled pod",
            classes: vec![wait.clone()],
            volumes: vec![],
            claim: with_class(
                Some("wait"),
                pvc("claim1-1", "uid1-1", "1Gi", "", "Pending", &[]),
            ),
            pods: vec![
                pod("pod1", "claim1-1", "", "Pending"),
                pod("pod-done", "claim1-1", "", "Succeeded"),
            ],
            expect_volumes: vec![],
            expect_claim: "Pending volume=- [] cap=-",
            expect_events: vec!["Normal WaitForPodScheduled"],
        },
        Case {
            // Access-mode grouping: the RWO group is tried before RWO,RWX, so a big RWO
            // volume beats a small RWO+RWX one.
            name: "1-17 - smallest access-mode group wins over smaller volume",
            classes: vec![],
            volumes: vec![
                with_modes_pv(
                    &[api::RWO],
                    pv("big-rwo", "100Gi", "", "", "Available", "Retain", &[]),
                ),
                with_modes_pv(
                    &[api::RWO, api::RWX],
                    pv("small-rwx", "1Gi", "", "", "Available", "Retain", &[]),
                ),
            ],
            claim: with_modes(
                &[api::RWO],
                pvc("claim1-17", "uid1-17", "1Gi", "", "Pending", &[]),
            ),
            pods: vec![],
            expect_volumes: vec![
                (
                    "big-rwo",
                    "Bound claimRef=claim1-17:uid1-17 [bound-by-controller]",
                ),
                ("small-rwx", "Available claimRef=- []"),
            ],
            expect_claim: "Bound volume=big-rwo [bind-completed,bound-by-controller] cap=100Gi",
            expect_events: vec![],
        },
        Case {
            name: "13-1 - binding to class",
            classes: vec![],
            volumes: vec![
                pv("volume13-1-1", "1Gi", "", "", "Available", "Retain", &[]),
                with_class_pv(
                    "gold",
                    pv("volume13-1-2", "10Gi", "", "", "Available", "Retain", &[]),
                ),
            ],
            claim: with_class(
                Some("gold"),
                pvc("claim13-1", "uid13-1", "1Gi", "", "Pending", &[]),
            ),
            pods: vec![],
            expect_volumes: vec![
                ("volume13-1-1", "Available claimRef=- []"),
                (
                    "volume13-1-2",
                    "Bound claimRef=claim13-1:uid13-1 [bound-by-controller]",
                ),
            ],
            expect_claim: "Bound volume=volume13-1-2 [bind-completed,bound-by-controller] cap=10Gi",
            expect_events: vec![],
        },
        Case {
            name: "13-2 - binding without a class",
            classes: vec![],
            volumes: vec![
                with_class_pv(
                    "gold",
                    pv("volume13-2-1", "1Gi", "", "", "Available", "Retain", &[]),
                ),
                pv("volume13-2-2", "10Gi", "", "", "Available", "Retain", &[]),
            ],
            claim: pvc("claim13-2", "uid13-2", "1Gi", "", "Pending", &[]),
            pods: vec![],
            expect_volumes: vec![
                ("volume13-2-1", "Available claimRef=- []"),
                (
                    "volume13-2-2",
                    "Bound claimRef=claim13-2:uid13-2 [bound-by-controller]",
                ),
            ],
            expect_claim: "Bound volume=volume13-2-2 [bind-completed,bound-by-controller] cap=10Gi",
            expect_events: vec![],
        },
    ];
    for c in cases {
        let key = c.claim.metadata.name.clone().unwrap();
        let mut w = World::new(c.classes, c.volumes, vec![c.claim], c.pods);
        w.start_idle();
        w.sync(claim_work(&key));
        for (v, want) in &c.expect_volumes {
            assert_eq!(&w.vol(v), want, "{}: volume {v}", c.name);
        }
        assert_eq!(w.claim(&key), c.expect_claim, "{}: claim", c.name);
        assert_eq!(w.events(), c.expect_events, "{}: events", c.name);
    }
}

#[test]
fn event_messages_are_upstreams() {
    let wait = class(
        "wait",
        api::NOT_SUPPORTED_PROVISIONER,
        api::BINDING_WAIT_FOR_FIRST_CONSUMER,
    );
    let mut w = World::new(
        vec![wait],
        vec![],
        vec![with_class(
            Some("wait"),
            pvc("c", "uid-c", "1Gi", "", "Pending", &[]),
        )],
        vec![pod("p1", "c", "", "Pending"), pod("p2", "c", "", "Pending")],
    );
    w.start_idle();
    w.sync(claim_work("c"));
    assert_eq!(
        w.event_messages(),
        vec!["Normal WaitForPodScheduled c: waiting for pods p1,p2 to be scheduled"]
    );

    let mut w = World::new(
        vec![class(
            "wait",
            api::NOT_SUPPORTED_PROVISIONER,
            api::BINDING_WAIT_FOR_FIRST_CONSUMER,
        )],
        vec![],
        vec![with_class(
            Some("wait"),
            pvc("c", "uid-c", "1Gi", "", "Pending", &[]),
        )],
        vec![],
    );
    w.start_idle();
    w.sync(claim_work("c"));
    assert_eq!(
        w.event_messages(),
        vec!["Normal WaitForFirstConsumer c: waiting for first consumer to be created before binding"]
    );
    // Every resync repeats it: the same Event object, count 2, as client-go's correlator.
    w.now = w.now.plus(15_000);
    w.core.handle_timeout(w.now);
    w.sync(claim_work("c"));
    let evs: Vec<_> = w.api.events.values().collect();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].count, Some(2));
    assert_eq!(
        evs[0].source.as_ref().unwrap().component.as_deref(),
        Some("persistentvolume-controller")
    );
    assert_eq!(
        evs[0].reporting_component.as_deref(),
        Some("persistentvolume-controller")
    );
    assert_eq!(
        evs[0].involved_object.kind.as_deref(),
        Some("PersistentVolumeClaim")
    );
    assert_eq!(evs[0].metadata.namespace.as_deref(), Some(NS));
    assert!(evs[0].last_timestamp.as_ref().unwrap().0 > evs[0].first_timestamp.as_ref().unwrap().0);
}

// ------------------------------------------------------------------ [Unit test set 2]

#[test]
fn set2_user_asked_for_a_specific_volume() {
    let wait = class(
        "wait",
        api::NOT_SUPPORTED_PROVISIONER,
        api::BINDING_WAIT_FOR_FIRST_CONSUMER,
    );
    let mut marked = pv("volume2-9", "1Gi", "", "", "Available", "Retain", &[]);
    marked.metadata.deletion_timestamp = Some(Millis(1).to_time());
    marked.metadata.finalizers = Some(vec![api::FINALIZER_PV_PROTECTION.into()]);
    let mut block_claim = pvc("claim2-12", "uid2-12", "1Gi", "volume2-12", "Pending", &[]);
    block_claim.spec.as_mut().unwrap().volume_mode = Some("Block".into());
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        Vec<StorageClass>,
        Vec<PersistentVolume>,
        PersistentVolumeClaim,
        Vec<(&str, &str)>,
        &str,
        Vec<&str>,
    )> = vec![
        (
            "2-1 - claim prebound to non-existing volume - noop",
            vec![],
            vec![],
            pvc("claim2-1", "uid2-1", "10Gi", "volume2-1", "Pending", &[]),
            vec![],
            "Pending volume=volume2-1 [] cap=-",
            vec![],
        ),
        (
            "2-2 - claim prebound to non-existing volume - reset status",
            vec![],
            vec![],
            pvc("claim2-2", "uid2-2", "10Gi", "volume2-2", "Bound", &[]),
            vec![],
            "Pending volume=volume2-2 [] cap=-",
            vec![],
        ),
        (
            "2-3 - claim prebound to unbound volume",
            vec![],
            vec![pv("volume2-3", "1Gi", "", "", "Available", "Retain", &[])],
            pvc("claim2-3", "uid2-3", "1Gi", "volume2-3", "Pending", &[]),
            vec![(
                "volume2-3",
                "Bound claimRef=claim2-3:uid2-3 [bound-by-controller]",
            )],
            "Bound volume=volume2-3 [bind-completed] cap=1Gi",
            vec![],
        ),
        (
            "2-4 - claim prebound to prebound volume by name",
            vec![],
            vec![pv(
                "volume2-4",
                "1Gi",
                "",
                "claim2-4",
                "Available",
                "Retain",
                &[],
            )],
            pvc("claim2-4", "uid2-4", "1Gi", "volume2-4", "Pending", &[]),
            vec![("volume2-4", "Bound claimRef=claim2-4:uid2-4 []")],
            "Bound volume=volume2-4 [bind-completed] cap=1Gi",
            vec![],
        ),
        (
            "2-5 - claim prebound to prebound volume by UID",
            vec![],
            vec![pv(
                "volume2-5",
                "1Gi",
                "uid2-5",
                "claim2-5",
                "Available",
                "Retain",
                &[],
            )],
            pvc("claim2-5", "uid2-5", "1Gi", "volume2-5", "Pending", &[]),
            vec![("volume2-5", "Bound claimRef=claim2-5:uid2-5 []")],
            "Bound volume=volume2-5 [bind-completed] cap=1Gi",
            vec![],
        ),
        (
            "2-6 - claim prebound to already bound volume",
            vec![],
            vec![pv(
                "volume2-6",
                "1Gi",
                "uid2-6_1",
                "claim2-6_1",
                "Bound",
                "Retain",
                &[],
            )],
            pvc("claim2-6", "uid2-6", "1Gi", "volume2-6", "Bound", &[]),
            vec![("volume2-6", "Bound claimRef=claim2-6_1:uid2-6_1 []")],
            "Pending volume=volume2-6 [] cap=-",
            vec!["Warning FailedBinding"],
        ),
        (
            "2-7 - claim bound by controller to already bound volume",
            vec![],
            vec![pv(
                "volume2-7",
                "1Gi",
                "uid2-7_1",
                "claim2-7_1",
                "Bound",
                "Retain",
                &[],
            )],
            pvc("claim2-7", "uid2-7", "1Gi", "volume2-7", "Bound", &[BBC]),
            vec![("volume2-7", "Bound claimRef=claim2-7_1:uid2-7_1 []")],
            "Bound volume=volume2-7 [bound-by-controller] cap=1Gi",
            vec!["Warning FailedBinding"],
        ),
        (
            "2-8 - claim prebound to unbound volume that does not match the selector",
            vec![],
            vec![pv("volume2-8", "1Gi", "", "", "Available", "Retain", &[])],
            with_selector(pvc(
                "claim2-8",
                "uid2-8",
                "1Gi",
                "volume2-8",
                "Pending",
                &[],
            )),
            vec![(
                "volume2-8",
                "Bound claimRef=claim2-8:uid2-8 [bound-by-controller]",
            )],
            "Bound volume=volume2-8 [bind-completed] cap=1Gi",
            vec![],
        ),
        (
            "2-9 - claim prebound to a volume marked for deletion",
            vec![],
            vec![marked],
            pvc("claim2-9", "uid2-9", "1Gi", "volume2-9", "Pending", &[]),
            vec![("volume2-9", "Available claimRef=- []")],
            "Pending volume=volume2-9 [] cap=-",
            vec!["Warning VolumeMismatch"],
        ),
        (
            "2-10 - claim prebound to a too small volume",
            vec![],
            vec![pv("volume2-10", "1Gi", "", "", "Available", "Retain", &[])],
            pvc("claim2-10", "uid2-10", "2Gi", "volume2-10", "Pending", &[]),
            vec![("volume2-10", "Available claimRef=- []")],
            "Pending volume=volume2-10 [] cap=-",
            vec!["Warning VolumeMismatch"],
        ),
        (
            "2-11 - claim prebound to a volume of another class",
            vec![],
            vec![with_class_pv(
                "gold",
                pv("volume2-11", "1Gi", "", "", "Available", "Retain", &[]),
            )],
            pvc("claim2-11", "uid2-11", "1Gi", "volume2-11", "Pending", &[]),
            vec![("volume2-11", "Available claimRef=- []")],
            "Pending volume=volume2-11 [] cap=-",
            vec!["Warning VolumeMismatch"],
        ),
        (
            "2-12 - claim prebound to a volume with another volumeMode",
            vec![],
            vec![pv("volume2-12", "1Gi", "", "", "Available", "Retain", &[])],
            block_claim,
            vec![("volume2-12", "Available claimRef=- []")],
            "Pending volume=volume2-12 [] cap=-",
            vec!["Warning VolumeMismatch"],
        ),
        (
            "2-13 - claim prebound to a volume without its access modes",
            vec![],
            vec![with_modes_pv(
                &[api::ROX],
                pv("volume2-13", "1Gi", "", "", "Available", "Retain", &[]),
            )],
            pvc("claim2-13", "uid2-13", "1Gi", "volume2-13", "Pending", &[]),
            vec![("volume2-13", "Available claimRef=- []")],
            "Pending volume=volume2-13 [] cap=-",
            vec!["Warning VolumeMismatch"],
        ),
        (
            "2-14 - claim prebound by volumeName binds at once in a WaitForFirstConsumer class",
            vec![wait],
            vec![with_class_pv(
                "wait",
                pv("volume2-14", "1Gi", "", "", "Available", "Retain", &[]),
            )],
            with_class(
                Some("wait"),
                pvc("claim2-14", "uid2-14", "1Gi", "volume2-14", "Pending", &[]),
            ),
            vec![(
                "volume2-14",
                "Bound claimRef=claim2-14:uid2-14 [bound-by-controller]",
            )],
            "Bound volume=volume2-14 [bind-completed] cap=1Gi",
            vec![],
        ),
    ];
    for (name, classes, vols, claim, want_vols, want_claim, want_events) in cases {
        let key = claim.metadata.name.clone().unwrap();
        let mut w = World::new(classes, vols, vec![claim], vec![]);
        w.start_idle();
        w.sync(claim_work(&key));
        for (v, want) in &want_vols {
            assert_eq!(&w.vol(v), want, "{name}: volume {v}");
        }
        assert_eq!(w.claim(&key), want_claim, "{name}: claim");
        assert_eq!(w.events(), want_events, "{name}: events");
    }
}

#[test]
fn volume_mismatch_messages() {
    let mut w = World::new(
        vec![],
        vec![pv("volume2-10", "1Gi", "", "", "Available", "Retain", &[])],
        vec![pvc(
            "claim2-10",
            "uid2-10",
            "2Gi",
            "volume2-10",
            "Pending",
            &[],
        )],
        vec![],
    );
    w.start_idle();
    w.sync(claim_work("claim2-10"));
    assert_eq!(
        w.event_messages(),
        vec!["Warning VolumeMismatch claim2-10: Cannot bind to requested volume \"volume2-10\": requested PV is too small"]
    );
    let mut w = World::new(
        vec![],
        vec![pv(
            "volume2-6",
            "1Gi",
            "uid-x",
            "other",
            "Bound",
            "Retain",
            &[],
        )],
        vec![pvc(
            "claim2-6",
            "uid2-6",
            "1Gi",
            "volume2-6",
            "Pending",
            &[],
        )],
        vec![],
    );
    w.start_idle();
    w.sync(claim_work("claim2-6"));
    assert_eq!(
        w.event_messages(),
        vec!["Warning FailedBinding claim2-6: volume \"volume2-6\" already bound to a different claim."]
    );
}

// ------------------------------------------------------------------ [Unit test set 3]

#[test]
fn set3_bound_claims() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        Vec<PersistentVolume>,
        PersistentVolumeClaim,
        Vec<(&str, &str)>,
        &str,
        Vec<&str>,
    )> = vec![
        (
            "3-1 - bound claim with missing VolumeName",
            vec![],
            pvc("claim3-1", "uid3-1", "10Gi", "", "Bound", &[BBC, BC]),
            vec![],
            "Lost volume=- [bind-completed,bound-by-controller] cap=-",
            vec!["Warning ClaimLost"],
        ),
        (
            "3-2 - bound claim with missing volume",
            vec![],
            pvc(
                "claim3-2",
                "uid3-2",
                "10Gi",
                "volume3-2",
                "Bound",
                &[BBC, BC],
            ),
            vec![],
            "Lost volume=volume3-2 [bind-completed,bound-by-controller] cap=-",
            vec!["Warning ClaimLost"],
        ),
        (
            "3-3 - bound claim with unbound volume",
            vec![pv("volume3-3", "10Gi", "", "", "Available", "Retain", &[])],
            pvc(
                "claim3-3",
                "uid3-3",
                "10Gi",
                "volume3-3",
                "Pending",
                &[BBC, BC],
            ),
            vec![(
                "volume3-3",
                "Bound claimRef=claim3-3:uid3-3 [bound-by-controller]",
            )],
            "Bound volume=volume3-3 [bind-completed,bound-by-controller] cap=10Gi",
            vec![],
        ),
        (
            "3-4 - bound claim with prebound volume",
            vec![pv(
                "volume3-4",
                "10Gi",
                "claim3-4-x",
                "claim3-4",
                "Pending",
                "Retain",
                &[],
            )],
            pvc(
                "claim3-4",
                "uid3-4",
                "10Gi",
                "volume3-4",
                "Pending",
                &[BBC, BC],
            ),
            vec![("volume3-4", "Pending claimRef=claim3-4:claim3-4-x []")],
            "Lost volume=volume3-4 [bind-completed,bound-by-controller] cap=-",
            vec!["Warning ClaimMisbound"],
        ),
        (
            "3-5 - bound claim with bound volume",
            vec![pv(
                "volume3-5",
                "10Gi",
                "uid3-5",
                "claim3-5",
                "Pending",
                "Retain",
                &[],
            )],
            pvc("claim3-5", "uid3-5", "10Gi", "volume3-5", "Pending", &[BC]),
            vec![("volume3-5", "Bound claimRef=claim3-5:uid3-5 []")],
            "Bound volume=volume3-5 [bind-completed] cap=10Gi",
            vec![],
        ),
        (
            "3-6 - bound claim with bound volume",
            vec![pv(
                "volume3-6",
                "10Gi",
                "uid3-6-x",
                "claim3-6-x",
                "Pending",
                "Retain",
                &[],
            )],
            pvc("claim3-6", "uid3-6", "10Gi", "volume3-6", "Pending", &[BC]),
            vec![("volume3-6", "Pending claimRef=claim3-6-x:uid3-6-x []")],
            "Lost volume=volume3-6 [bind-completed] cap=-",
            vec!["Warning ClaimMisbound"],
        ),
        (
            "3-7 - bound claim with unbound volume where selector doesn't match",
            vec![pv("volume3-3", "10Gi", "", "", "Pending", "Retain", &[])],
            with_selector(pvc(
                "claim3-3",
                "uid3-3",
                "10Gi",
                "volume3-3",
                "Pending",
                &[BBC, BC],
            )),
            vec![(
                "volume3-3",
                "Bound claimRef=claim3-3:uid3-3 [bound-by-controller]",
            )],
            "Bound volume=volume3-3 [bind-completed,bound-by-controller] cap=10Gi",
            vec![],
        ),
    ];
    for (name, vols, claim, want_vols, want_claim, want_events) in cases {
        let key = claim.metadata.name.clone().unwrap();
        let mut w = World::new(vec![], vols, vec![claim], vec![]);
        w.start_idle();
        w.sync(claim_work(&key));
        for (v, want) in &want_vols {
            assert_eq!(&w.vol(v), want, "{name}: volume {v}");
        }
        assert_eq!(w.claim(&key), want_claim, "{name}: claim");
        assert_eq!(w.events(), want_events, "{name}: events");
    }
}

// ------------------------------------------------------------------ [Unit test set 4]

#[test]
fn set4_sync_volume() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        PersistentVolume,
        Vec<PersistentVolumeClaim>,
        &str,
        Vec<&str>,
    )> = vec![
        (
            "4-1 - pending volume",
            pv("volume4-1", "10Gi", "", "", "Pending", "Retain", &[]),
            vec![],
            "Available claimRef=- []",
            vec![],
        ),
        (
            "4-2 - pending prebound volume",
            pv(
                "volume4-2",
                "10Gi",
                "",
                "claim4-2",
                "Pending",
                "Retain",
                &[],
            ),
            vec![],
            "Available claimRef=claim4-2: []",
            vec![],
        ),
        (
            "4-3 - bound volume with missing claim",
            pv(
                "volume4-3",
                "10Gi",
                "uid4-3",
                "claim4-3",
                "Bound",
                "Retain",
                &[],
            ),
            vec![],
            "Released claimRef=claim4-3:uid4-3 []",
            vec![],
        ),
        (
            "4-4 - volume bound to claim with different UID",
            pv(
                "volume4-4",
                "10Gi",
                "uid4-4",
                "claim4-4",
                "Bound",
                "Retain",
                &[],
            ),
            vec![pvc(
                "claim4-4",
                "uid4-4-x",
                "10Gi",
                "volume4-4",
                "Bound",
                &[BC],
            )],
            "Released claimRef=claim4-4:uid4-4 []",
            vec![],
        ),
        (
            "4-5 - volume bound by controller to unbound claim",
            pv(
                "volume4-5",
                "10Gi",
                "uid4-5",
                "claim4-5",
                "Bound",
                "Retain",
                &[BBC],
            ),
            vec![pvc("claim4-5", "uid4-5", "10Gi", "", "Pending", &[])],
            // The claim sync it triggers finishes the binding.
            "Bound claimRef=claim4-5:uid4-5 [bound-by-controller]",
            vec![],
        ),
        (
            "4-6 - volume bound by to bound claim",
            pv(
                "volume4-6",
                "10Gi",
                "uid4-6",
                "claim4-6",
                "Available",
                "Retain",
                &[],
            ),
            vec![pvc(
                "claim4-6",
                "uid4-6",
                "10Gi",
                "volume4-6",
                "Bound",
                &[BC],
            )],
            "Bound claimRef=claim4-6:uid4-6 []",
            vec![],
        ),
        (
            "4-7 - volume bound by controller to claim bound somewhere else",
            pv(
                "volume4-7",
                "10Gi",
                "uid4-7",
                "claim4-7",
                "Bound",
                "Retain",
                &[BBC],
            ),
            vec![pvc(
                "claim4-7",
                "uid4-7",
                "10Gi",
                "volume4-7-x",
                "Bound",
                &[BC],
            )],
            "Available claimRef=- []",
            vec![],
        ),
        (
            "4-8 - volume bound by user to claim bound somewhere else",
            pv(
                "volume4-8",
                "10Gi",
                "uid4-8",
                "claim4-8",
                "Bound",
                "Retain",
                &[],
            ),
            vec![pvc(
                "claim4-8",
                "uid4-8",
                "10Gi",
                "volume4-8-x",
                "Bound",
                &[BC],
            )],
            "Available claimRef=claim4-8: []",
            vec![],
        ),
    ];
    for (name, vol, claims, want_vol, want_events) in cases {
        let vname = vol.metadata.name.clone().unwrap();
        let mut w = World::new(vec![], vec![vol], claims, vec![]);
        w.start_idle();
        w.sync(volume_work(&vname));
        assert_eq!(w.vol(&vname), want_vol, "{name}");
        assert_eq!(w.events(), want_events, "{name}: events");
    }
}

#[test]
fn set4_missing_claim_is_double_checked_live_before_release() {
    // The PV controller's cache lacks the claim, but the API server has it (the watch lags):
    // the live GET finds it, and the volume is not released.
    let mut w = World::new(
        vec![],
        vec![pv(
            "volume4-9",
            "10Gi",
            "uid4-9",
            "claim4-9",
            "Bound",
            "Retain",
            &[],
        )],
        vec![],
        vec![],
    );
    w.start_idle();
    w.api.put_claim(pvc(
        "claim4-9",
        "uid4-9",
        "10Gi",
        "volume4-9",
        "Bound",
        &[BC],
    ));
    w.delivered = w.api.log.len(); // the watch never delivered it
    w.sync(volume_work("volume4-9"));
    assert!(w.verbs.contains(&"get_pvc"), "{:?}", w.verbs);
    assert_eq!(w.vol("volume4-9"), "Bound claimRef=claim4-9:uid4-9 []");
}

#[test]
fn set4_volume_mode_mismatch_events() {
    let mut c = pvc("claim4-10", "uid4-10", "10Gi", "", "Pending", &[]);
    c.spec.as_mut().unwrap().volume_mode = Some("Block".into());
    let mut w = World::new(
        vec![],
        vec![pv(
            "volume4-10",
            "10Gi",
            "uid4-10",
            "claim4-10",
            "Bound",
            "Retain",
            &[],
        )],
        vec![c],
        vec![],
    );
    w.start_idle();
    w.sync(volume_work("volume4-10"));
    let mut m = w.event_messages();
    m.sort();
    assert_eq!(m, vec![
        "Warning VolumeMismatch claim4-10: Cannot bind PersistentVolume \"volume4-10\" to requested PersistentVolumeClaim due to incompatible volumeMode.",
        "Warning VolumeMismatch volume4-10: Cannot bind PersistentVolume to requested PersistentVolumeClaim \"claim4-10\" due to incompatible volumeMode.",
    ]);
}

// ------------------------------------------------------------------ reclaim (sets 6–8)

#[test]
fn reclaim_policies() {
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, PersistentVolume, &str, Vec<&str>)> = vec![
        ("6-1 - Retain: released volume keeps its claimRef",
            pv("volume6-1", "1Gi", "uid6-1", "claim6-1", "Bound", "Retain", &[]),
            "Released claimRef=claim6-1:uid6-1 []", vec![]),
        ("8-2 - Delete: no deleter for a hand-made local volume",
            pv("volume8-2", "1Gi", "uid8-2", "claim8-2", "Bound", "Delete", &[]),
            "Failed claimRef=claim8-2:uid8-2 [] msg=error getting deleter volume plugin for volume \"volume8-2\": no deletable volume plugin matched",
            vec!["Warning VolumeFailedDelete"]),
        ("8-8 - Delete: external deleter (provisioned-by) is left to it",
            with_annotation_pv(api::ANN_DYNAMICALLY_PROVISIONED, "local-volume-provisioner-node-1-abc",
                pv("volume8-8", "1Gi", "uid8-8", "claim8-8", "Bound", "Delete", &[])),
            "Released claimRef=claim8-8:uid8-8 [pv.kubernetes.io/provisioned-by]", vec![]),
        ("8-9 - Delete: unknown in-tree provisioner",
            with_annotation_pv(api::ANN_DYNAMICALLY_PROVISIONED, "kubernetes.io/gone",
                pv("volume8-9", "1Gi", "uid8-9", "claim8-9", "Bound", "Delete", &[])),
            "Failed claimRef=claim8-9:uid8-9 [pv.kubernetes.io/provisioned-by] msg=no volume plugin matched name: kubernetes.io/gone",
            vec!["Warning VolumeFailedDelete"]),
        ("6-4 - Recycle: no recycler plugin",
            pv("volume6-4", "1Gi", "uid6-4", "claim6-4", "Bound", "Recycle", &[]),
            "Failed claimRef=claim6-4:uid6-4 [] msg=No recycler plugin found for the volume!",
            vec!["Warning VolumeFailedRecycle"]),
        ("6-9 - unknown reclaim policy",
            pv("volume6-9", "1Gi", "uid6-9", "claim6-9", "Bound", "Shred", &[]),
            "Failed claimRef=claim6-9:uid6-9 [] msg=Volume has unrecognized PersistentVolumeReclaimPolicy",
            vec!["Warning VolumeUnknownReclaimPolicy"]),
    ];
    for (name, vol, want, want_events) in cases {
        let vname = vol.metadata.name.clone().unwrap();
        let mut w = World::new(vec![], vec![vol], vec![], vec![]);
        w.multisync();
        assert_eq!(w.vol(&vname), want, "{name}");
        assert_eq!(w.events(), want_events, "{name}: events");
    }
}

#[test]
fn recycle_waits_while_pods_use_the_volume() {
    let mut w = World::new(
        vec![],
        vec![pv(
            "volume6-5",
            "1Gi",
            "uid6-5",
            "claim6-5",
            "Bound",
            "Recycle",
            &[],
        )],
        vec![],
        vec![pod("user", "claim6-5", "node-1", "Running")],
    );
    w.multisync();
    assert_eq!(w.vol("volume6-5"), "Released claimRef=claim6-5:uid6-5 []");
    assert!(
        w.event_messages()
            .iter()
            .any(|m| m
                == "Normal VolumeFailedRecycle volume6-5: Volume is used by pods: default/user")
    );
}

#[test]
fn failed_delete_event_only_on_transition() {
    let mut w = World::new(
        vec![],
        vec![pv("v", "1Gi", "u", "c", "Bound", "Delete", &[])],
        vec![],
        vec![],
    );
    w.multisync();
    for _ in 0..3 {
        w.now = w.now.plus(15_000);
        w.core.handle_timeout(w.now);
        w.run();
    }
    let evs: Vec<_> = w.api.events.values().collect();
    assert_eq!(evs.len(), 1);
    assert_eq!(
        evs[0].count,
        Some(1),
        "updateVolumePhaseWithEvent emits only on a phase change"
    );
}

// ------------------------------------------------------------------ provisioning (set 11)

#[test]
fn provisioning_branch() {
    // Immediate class with no-provisioner and no fitting PV.
    let mut w = World::new(
        vec![class(
            "local",
            api::NOT_SUPPORTED_PROVISIONER,
            api::BINDING_IMMEDIATE,
        )],
        vec![],
        vec![with_class(
            Some("local"),
            pvc("c", "uid-c", "1Gi", "", "Pending", &[]),
        )],
        vec![],
    );
    w.start_idle();
    w.sync(claim_work("c"));
    assert_eq!(w.event_messages(), vec!["Warning ProvisioningFailed c: no volume plugin matched name: kubernetes.io/no-provisioner"]);
    assert_eq!(w.claim("c"), "Pending volume=- [] cap=-");

    // Missing class.
    let mut w = World::new(
        vec![],
        vec![],
        vec![with_class(
            Some("nope"),
            pvc("c", "uid-c", "1Gi", "", "Pending", &[]),
        )],
        vec![],
    );
    w.start_idle();
    w.sync(claim_work("c"));
    assert_eq!(
        w.event_messages(),
        vec!["Warning ProvisioningFailed c: storageclass.storage.k8s.io \"nope\" not found"]
    );

    // WaitForFirstConsumer + selected-node + no-provisioner: provisioning is attempted.
    let mut w = World::new(
        vec![class(
            "wait",
            api::NOT_SUPPORTED_PROVISIONER,
            api::BINDING_WAIT_FOR_FIRST_CONSUMER,
        )],
        vec![],
        vec![with_annotation(
            api::ANN_SELECTED_NODE,
            "node-1",
            with_class(Some("wait"), pvc("c", "uid-c", "1Gi", "", "Pending", &[])),
        )],
        vec![],
    );
    w.start_idle();
    w.sync(claim_work("c"));
    assert_eq!(w.event_messages(), vec!["Warning ProvisioningFailed c: no volume plugin matched name: kubernetes.io/no-provisioner"]);

    // External provisioner: annotations, then ExternalProvisioning.
    let mut w = World::new(
        vec![class(
            "fast",
            "rancher.io/local-path",
            api::BINDING_IMMEDIATE,
        )],
        vec![],
        vec![with_class(
            Some("fast"),
            pvc("c", "uid-c", "1Gi", "", "Pending", &[]),
        )],
        vec![],
    );
    w.start_idle();
    w.sync(claim_work("c"));
    let c = &w.api.claims["default/c"];
    let a = c.metadata.annotations.as_ref().unwrap();
    assert_eq!(a[api::ANN_STORAGE_PROVISIONER], "rancher.io/local-path");
    assert_eq!(
        a[api::ANN_BETA_STORAGE_PROVISIONER],
        "rancher.io/local-path"
    );
    assert_eq!(
        w.event_messages(),
        vec![format!(
            "Normal ExternalProvisioning c: {}",
            provision::external_provisioning_message("rancher.io/local-path")
        )]
    );
}

#[test]
fn default_class_is_written_into_classless_claims() {
    let mut def = class(
        "standard",
        api::NOT_SUPPORTED_PROVISIONER,
        api::BINDING_IMMEDIATE,
    );
    def.metadata.annotations =
        Some([(api::ANN_IS_DEFAULT_CLASS.to_string(), "true".to_string())].into());
    let mut w = World::new(
        vec![def],
        vec![with_class_pv(
            "standard",
            pv("v", "1Gi", "", "", "Available", "Retain", &[]),
        )],
        vec![with_class(
            None,
            pvc("c", "uid-c", "1Gi", "", "Pending", &[]),
        )],
        vec![],
    );
    w.multisync();
    assert_eq!(
        w.api.claims["default/c"]
            .spec
            .as_ref()
            .unwrap()
            .storage_class_name
            .as_deref(),
        Some("standard")
    );
    assert_eq!(
        w.claim("c"),
        "Bound volume=v [bind-completed,bound-by-controller] cap=1Gi"
    );
}

// ------------------------------------------------------------------ multi-sync (set 10)

#[test]
fn set10_multisync() {
    // 10-1 - successful bind (the volume starts Pending; a resync picks it up).
    let mut w = World::new(
        vec![],
        vec![pv("volume10-1", "1Gi", "", "", "Pending", "Retain", &[])],
        vec![pvc("claim10-1", "uid10-1", "1Gi", "", "Pending", &[])],
        vec![],
    );
    w.multisync();
    assert_eq!(
        w.vol("volume10-1"),
        "Bound claimRef=claim10-1:uid10-1 [bound-by-controller]"
    );
    assert_eq!(
        w.claim("claim10-1"),
        "Bound volume=volume10-1 [bind-completed,bound-by-controller] cap=1Gi"
    );

    // 10-2 - bind PV race: two PVs point at one claim; the one it does not name rolls back.
    let mut w = World::new(
        vec![],
        vec![
            pv(
                "volume10-2-1",
                "1Gi",
                "uid10-2",
                "claim10-2",
                "Bound",
                "Retain",
                &[BBC],
            ),
            pv(
                "volume10-2-2",
                "1Gi",
                "uid10-2",
                "claim10-2",
                "Bound",
                "Retain",
                &[BBC],
            ),
        ],
        vec![pvc(
            "claim10-2",
            "uid10-2",
            "1Gi",
            "volume10-2-1",
            "Bound",
            &[BBC, BC],
        )],
        vec![],
    );
    w.multisync();
    assert_eq!(
        w.vol("volume10-2-1"),
        "Bound claimRef=claim10-2:uid10-2 [bound-by-controller]"
    );
    assert_eq!(w.vol("volume10-2-2"), "Available claimRef=- []");
    assert_eq!(
        w.claim("claim10-2"),
        "Bound volume=volume10-2-1 [bind-completed,bound-by-controller] cap=1Gi"
    );
}

#[test]
fn claim_deleted_releases_and_recreated_claim_does_not_bind() {
    let mut w = World::new(
        vec![],
        vec![pv("v", "1Gi", "", "", "Available", "Retain", &[])],
        vec![pvc("c", "uid-c", "1Gi", "", "Pending", &[])],
        vec![],
    );
    w.multisync();
    assert_eq!(w.vol("v"), "Bound claimRef=c:uid-c [bound-by-controller]");
    let t = w.now.to_time();
    w.api.delete_claim("default/c", t);
    w.run();
    assert_eq!(
        w.vol("v"),
        "Released claimRef=c:uid-c [bound-by-controller]"
    );
    // Same name, new UID: Retain keeps the volume for the old claim.
    w.api
        .put_claim(pvc("c", "uid-c2", "1Gi", "", "Pending", &[]));
    w.multisync();
    assert_eq!(
        w.vol("v"),
        "Released claimRef=c:uid-c [bound-by-controller]"
    );
    assert_eq!(w.claim("c"), "Pending volume=- [] cap=-");
}

// ------------------------------------------------------------------ conflicts

#[test]
fn conflict_marks_stale_and_resyncs_when_newer_version_arrives() {
    let mut w = World::new(
        vec![],
        vec![pv("v", "1Gi", "", "", "Available", "Retain", &[])],
        vec![pvc("c", "uid-c", "1Gi", "", "Pending", &[])],
        vec![],
    );
    w.start_idle();
    w.core.enqueue(claim_work("c"));
    let out = w.core.poll_output().expect("bind step 1");
    assert!(matches!(out.request, Request::UpdateVolume(_)));
    // Someone else labels the PV meanwhile.
    let mut cur = w.api.volumes["v"].clone();
    cur.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    let rv = cur.metadata.resource_version.clone();
    cur.metadata.resource_version = rv;
    w.api.apply(&Request::UpdateVolume(cur));
    let c = w.api.apply(&out.request);
    assert!(matches!(c, Completion::Conflict));
    w.core.handle_completion(w.now, out.id, c);
    assert_eq!(
        w.core
            .metrics()
            .conflicts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Nothing is retried against the stale copy...
    assert!(w.core.poll_output().is_none());
    // ...until the newer PV arrives, then the claim binds.
    w.run();
    assert_eq!(w.vol("v"), "Bound claimRef=c:uid-c [bound-by-controller]");
    assert_eq!(
        w.claim("c"),
        "Bound volume=v [bind-completed,bound-by-controller] cap=1Gi"
    );
}

// ------------------------------------------------------------------ protection (§8)

fn terminating(mut c: PersistentVolumeClaim, now: Millis) -> PersistentVolumeClaim {
    c.metadata.finalizers = Some(vec![api::FINALIZER_PVC_PROTECTION.into()]);
    c.metadata.deletion_timestamp = Some(now.to_time());
    c
}

#[test]
fn pvc_protection() {
    let now = Millis(1_700_000_000_000);
    // In use by a scheduled pod, whatever its phase: kept.
    for phase in ["Running", "Succeeded", "Failed", "Pending"] {
        let mut w = World::new(
            vec![],
            vec![],
            vec![terminating(
                pvc("c", "uid-c", "1Gi", "", "Pending", &[]),
                now,
            )],
            vec![pod("p", "c", "node-1", phase)],
        )
        .with_protection();
        w.start_idle();
        w.sync(Work::PvcProtection("default/c".into()));
        assert!(
            w.api.claims.contains_key("default/c"),
            "phase {phase}: must stay Terminating"
        );
    }
    // Only an unscheduled pod: the live list confirms, the finalizer goes, the claim is gone.
    let mut w = World::new(
        vec![],
        vec![],
        vec![terminating(
            pvc("c", "uid-c", "1Gi", "", "Pending", &[]),
            now,
        )],
        vec![pod("p", "c", "", "Pending")],
    )
    .with_protection();
    w.start_idle();
    w.sync(Work::PvcProtection("default/c".into()));
    assert!(w.verbs.contains(&"list_pods"));
    assert!(!w.api.claims.contains_key("default/c"));

    // A pod the watch has not delivered yet still protects (the live list sees it).
    let mut w = World::new(
        vec![],
        vec![],
        vec![terminating(
            pvc("c", "uid-c", "1Gi", "", "Pending", &[]),
            now,
        )],
        vec![],
    )
    .with_protection();
    w.start_idle();
    w.api.put_pod(pod("late", "c", "node-1", "Running"));
    w.delivered = w.api.log.len();
    w.sync(Work::PvcProtection("default/c".into()));
    assert!(w.api.claims.contains_key("default/c"));
    // Deleting the pod (force, grace 0) releases it.
    w.api.delete_pod("default/late");
    w.run();
    assert!(!w.api.claims.contains_key("default/c"));

    // Missing finalizer on a live claim is added.
    let mut w = World::new(
        vec![],
        vec![],
        vec![pvc("c", "uid-c", "1Gi", "", "Pending", &[])],
        vec![],
    )
    .with_protection();
    w.start_idle();
    w.sync(Work::PvcProtection("default/c".into()));
    assert_eq!(
        w.api.claims["default/c"].metadata.finalizers,
        Some(vec![api::FINALIZER_PVC_PROTECTION.to_string()])
    );
}

#[test]
fn pv_protection() {
    let now = Millis(1_700_000_000_000);
    let mut bound = pv("v", "1Gi", "uid-c", "c", "Bound", "Retain", &[]);
    bound.metadata.finalizers = Some(vec![api::FINALIZER_PV_PROTECTION.into()]);
    bound.metadata.deletion_timestamp = Some(now.to_time());
    let mut w = World::new(
        vec![],
        vec![bound],
        vec![pvc("c", "uid-c", "1Gi", "v", "Bound", &[BC])],
        vec![],
    )
    .with_protection();
    w.multisync();
    assert!(
        w.api.volumes.contains_key("v"),
        "a Bound volume stays Terminating"
    );
    // The claim goes away: Released, then the finalizer is removed and the PV disappears,
    // even with Retain.
    let t = w.now.to_time();
    w.api.delete_claim("default/c", t);
    w.run();
    assert!(!w.api.volumes.contains_key("v"));
}

// ------------------------------------------------------------------ the lab (design.md §1)

#[test]
fn lab_wait_for_first_consumer_then_scheduler_prebind() {
    let mut sc = class(
        "local-storage",
        api::NOT_SUPPORTED_PROVISIONER,
        api::BINDING_WAIT_FOR_FIRST_CONSUMER,
    );
    sc.reclaim_policy = Some("Delete".into());
    let mut w = World::new(
        vec![sc],
        vec![with_modes_pv(
            &[api::RWO],
            with_class_pv(
                "local-storage",
                pv("example-pv", "5Gi", "", "", "Pending", "Delete", &[]),
            ),
        )],
        vec![with_modes(
            &[api::RWO],
            with_class(
                Some("local-storage"),
                pvc("example-local-claim", "uid-lab", "5Gi", "", "Pending", &[]),
            ),
        )],
        vec![],
    )
    .with_protection();
    w.multisync();
    assert_eq!(w.vol("example-pv"), "Available claimRef=- []");
    assert_eq!(w.claim("example-local-claim"), "Pending volume=- [] cap=-");
    assert!(w
        .events()
        .contains(&"Normal WaitForFirstConsumer".to_string()));
    // The scheduler's PreBind writes claimRef on the PV.
    let mut v = w.api.volumes["example-pv"].clone();
    v.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
        kind: Some("PersistentVolumeClaim".into()),
        namespace: Some(NS.into()),
        name: Some("example-local-claim".into()),
        uid: Some("uid-lab".into()),
        api_version: Some("v1".into()),
        ..Default::default()
    });
    v.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(BBC.into(), "yes".into());
    assert!(matches!(
        w.api.apply(&Request::UpdateVolume(v)),
        Completion::Volume(_)
    ));
    w.run();
    assert!(w
        .vol("example-pv")
        .starts_with("Bound claimRef=example-local-claim:uid-lab"));
    assert_eq!(
        w.claim("example-local-claim"),
        "Bound volume=example-pv [bind-completed,bound-by-controller] cap=5Gi"
    );
}

// ------------------------------------------------------------------ two replicas

/// A tiny deterministic RNG (no dependency; the seed is printed on failure).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Replica {
    core: VolumeControllerCore,
    sent: std::collections::VecDeque<Output>,
    done: std::collections::VecDeque<(RequestId, Completion)>,
    cursor: usize,
}

fn deliver_change(core: &mut VolumeControllerCore, now: Millis, ch: Change) {
    match ch {
        Change::Volume(e) => core.handle_volume_event(now, e),
        Change::Claim(e) => core.handle_claim_event(now, e),
        Change::Class(e) => core.handle_class_event(now, e),
        Change::Pod(e) => core.handle_pod_event(now, e),
    }
}

/// The safety property: at no point do two claims hold one volume.
fn check_no_double_bind(api: &ModelApi, seed: u64, step: usize) {
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, c) in &api.claims {
        let vn = c
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        if vn.is_empty() {
            continue;
        }
        let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
            || api::has_annotation(&c.metadata, BC);
        if bound {
            holders.entry(vn).or_default().push(k.clone());
        }
    }
    for (v, cs) in holders {
        assert!(
            cs.len() <= 1,
            "seed {seed} step {step}: volume {v} held by {cs:?}"
        );
    }
}

#[test]
fn two_replicas_never_bind_one_volume_to_two_claims() {
    let mut total_conflicts = 0;
    for seed in 1..=300u64 {
        let mut rng = Lcg(seed);
        let mut api = ModelApi::default();
        // Fewer volumes than claims, all of one size class: maximal contention.
        for i in 0..4 {
            api.put_volume(pv(
                &format!("v{i}"),
                "1Gi",
                "",
                "",
                "Available",
                "Retain",
                &[],
            ));
        }
        for i in 0..6 {
            api.put_claim(pvc(
                &format!("c{i}"),
                &format!("uid-c{i}"),
                "1Gi",
                "",
                "Pending",
                &[],
            ));
        }
        let now = Millis(1_700_000_000_000);
        let metrics = Arc::new(metrics::Metrics::new());
        let mut reps: Vec<Replica> = (0..2)
            .map(|_| {
                let mut core = VolumeControllerCore::new(
                    CoreConfig {
                        resync_period_ms: 15_000,
                        protection: true,
                    },
                    metrics.clone(),
                );
                core.handle_class_event(now, WatchEvent::Relisted(vec![]));
                core.handle_pod_event(now, WatchEvent::Relisted(vec![]));
                core.handle_volume_event(
                    now,
                    WatchEvent::Relisted(api.volumes.values().cloned().collect()),
                );
                core.handle_claim_event(
                    now,
                    WatchEvent::Relisted(api.claims.values().cloned().collect()),
                );
                Replica {
                    core,
                    sent: Default::default(),
                    done: Default::default(),
                    cursor: api.log.len(),
                }
            })
            .collect();
        let mut t = now;
        let mut step = 0;
        // Random interleaving, then a drain to quiescence with resyncs.
        loop {
            step += 1;
            let r = rng.below(2);
            let rep = &mut reps[r];
            match rng.below(5) {
                0 => {
                    if let Some(o) = rep.core.poll_output() {
                        rep.sent.push_back(o);
                    }
                }
                1 => {
                    if !rep.sent.is_empty() {
                        let i = rng.below(rep.sent.len());
                        let o = rep.sent.remove(i).unwrap();
                        let c = api.apply(&o.request);
                        rep.done.push_back((o.id, c));
                    }
                }
                2 => {
                    if let Some((id, c)) = rep.done.pop_front() {
                        rep.core.handle_completion(t, id, c);
                    }
                }
                3 => {
                    if rep.cursor < api.log.len() {
                        let ch = api.log[rep.cursor].clone();
                        rep.cursor += 1;
                        deliver_change(&mut rep.core, t, ch);
                    }
                }
                _ => {
                    if rng.below(20) == 0 {
                        t = t.plus(15_000);
                        rep.core.handle_timeout(t);
                    }
                }
            }
            check_no_double_bind(&api, seed, step);
            if step > 3000 {
                break;
            }
        }
        // Drain: everything sent gets applied and delivered, resync until nothing changes.
        for _round in 0..50 {
            let before = api.log.len();
            for _ in 0..200 {
                let mut any = false;
                for rep in reps.iter_mut() {
                    while let Some(o) = rep.core.poll_output() {
                        rep.sent.push_back(o);
                    }
                    while let Some(o) = rep.sent.pop_front() {
                        let c = api.apply(&o.request);
                        rep.done.push_back((o.id, c));
                        any = true;
                    }
                    while let Some((id, c)) = rep.done.pop_front() {
                        rep.core.handle_completion(t, id, c);
                        any = true;
                    }
                    while rep.cursor < api.log.len() {
                        let ch = api.log[rep.cursor].clone();
                        rep.cursor += 1;
                        deliver_change(&mut rep.core, t, ch);
                        any = true;
                    }
                    check_no_double_bind(&api, seed, step);
                }
                if !any {
                    break;
                }
            }
            t = t.plus(15_000);
            for rep in reps.iter_mut() {
                rep.core.handle_timeout(t);
            }
            if api.log.len() == before && _round > 0 {
                break;
            }
        }
        // Liveness: every volume ends up bound to exactly one claim, consistently.
        let bound: Vec<&PersistentVolumeClaim> = api
            .claims
            .values()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .collect();
        assert_eq!(
            bound.len(),
            4,
            "seed {seed}: {:#?}",
            api.claims.values().map(describe_claim).collect::<Vec<_>>()
        );
        for c in bound {
            let vn = c.spec.as_ref().unwrap().volume_name.clone().unwrap();
            let v = &api.volumes[&vn];
            let r = v.spec.as_ref().unwrap().claim_ref.as_ref().unwrap();
            assert_eq!(r.uid, c.metadata.uid, "seed {seed}: {vn}");
            assert_eq!(
                v.status.as_ref().unwrap().phase.as_deref(),
                Some("Bound"),
                "seed {seed}"
            );
        }
        total_conflicts += metrics.conflicts.load(std::sync::atomic::Ordering::Relaxed);
    }
    // The interleavings really did race.
    assert!(
        total_conflicts > 0,
        "no conflicts in 300 seeds: the test would not catch anything"
    );
}

#[test]
fn claim_waits_for_a_fitting_volume_whose_write_is_in_flight() {
    // The volume's Pending → Available write is in flight when the claim syncs: the claim
    // waits for it instead of recording "no persistent volumes available" and waiting 15 s.
    let mut w = World::new(
        vec![],
        vec![pv("v", "1Gi", "", "", "Pending", "Retain", &[])],
        vec![pvc("c", "uid-c", "1Gi", "", "Pending", &[])],
        vec![],
    );
    w.start_idle();
    w.core.enqueue(volume_work("v"));
    w.core.enqueue(claim_work("c"));
    // Both syncs run before the volume's write completes.
    let mut outs = vec![];
    while let Some(o) = w.core.poll_output() {
        outs.push(o);
    }
    assert_eq!(
        outs.len(),
        1,
        "only the volume's phase write; the claim waits: {outs:?}"
    );
    for o in outs {
        let c = w.api.apply(&o.request);
        w.core.handle_completion(w.now, o.id, c);
    }
    w.run();
    assert_eq!(w.events(), Vec::<String>::new());
    assert_eq!(w.vol("v"), "Bound claimRef=c:uid-c [bound-by-controller]");
    assert_eq!(
        w.claim("c"),
        "Bound volume=v [bind-completed,bound-by-controller] cap=1Gi"
    );
}
