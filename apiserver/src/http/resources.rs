//! The served resources: one static table that discovery, OpenAPI, routing and the handlers all
//! read, so a resource is added in exactly one place. Values (singular names, shortNames,
//! categories, verbs, subresources) are those of a real v1.33 kube-apiserver.

/// One served subresource (`pods/status`, `pods/binding`…).
#[derive(Debug)]
pub struct SubResource {
    pub name: &'static str,
    /// The kind the subresource accepts/returns (`Pod` for status/log, `Binding` for binding).
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One served resource of a group-version.
#[derive(Debug)]
pub struct Resource {
    /// Empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural lowercase name, as in URLs.
    pub name: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [SubResource],
}

impl Resource {
    /// `v1` or `storage.k8s.io/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&'static SubResource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

const ALL8: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

/// Every served resource, in the order discovery lists them (alphabetical per group-version,
/// as kube-apiserver does).
pub static RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        name: "bindings",
        singular: "binding",
        namespaced: true,
        kind: "Binding",
        verbs: &["create"],
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
    Resource {
        group: "",
        version: "v1",
        name: "events",
        singular: "event",
        namespaced: true,
        kind: "Event",
        verbs: ALL8,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
    },
    Resource {
        group: "",
        version: "v1",
        name: "namespaces",
        singular: "namespace",
        namespaced: false,
        kind: "Namespace",
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        short_names: &["ns"],
        categories: &[],
        subresources: &[
            SubResource {
                name: "finalize",
                kind: "Namespace",
                verbs: &["update"],
            },
            SubResource {
                name: "status",
                kind: "Namespace",
                verbs: STATUS_VERBS,
            },
        ],
    },
    Resource {
        group: "",
        version: "v1",
        name: "nodes",
        singular: "node",
        namespaced: false,
        kind: "Node",
        verbs: ALL8,
        short_names: &["no"],
        categories: &[],
        subresources: &[SubResource {
            name: "status",
            kind: "Node",
            verbs: STATUS_VERBS,
        }],
    },
    Resource {
        group: "",
        version: "v1",
        name: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        namespaced: true,
        kind: "PersistentVolumeClaim",
        verbs: ALL8,
        short_names: &["pvc"],
        categories: &[],
        subresources: &[SubResource {
            name: "status",
            kind: "PersistentVolumeClaim",
            verbs: STATUS_VERBS,
        }],
    },
    Resource {
        group: "",
        version: "v1",
        name: "persistentvolumes",
        singular: "persistentvolume",
        namespaced: false,
        kind: "PersistentVolume",
        verbs: ALL8,
        short_names: &["pv"],
        categories: &[],
        subresources: &[SubResource {
            name: "status",
            kind: "PersistentVolume",
            verbs: STATUS_VERBS,
        }],
    },
    Resource {
        group: "",
        version: "v1",
        name: "pods",
        singular: "pod",
        namespaced: true,
        kind: "Pod",
        verbs: ALL8,
        short_names: &["po"],
        categories: &["all"],
        subresources: &[
            SubResource {
                name: "binding",
                kind: "Binding",
                verbs: &["create"],
            },
            SubResource {
                name: "exec",
                kind: "PodExecOptions",
                verbs: &["create", "get"],
            },
            SubResource {
                name: "log",
                kind: "Pod",
                verbs: &["get"],
            },
            SubResource {
                name: "status",
                kind: "Pod",
                verbs: STATUS_VERBS,
            },
        ],
    },
    Resource {
        group: "events.k8s.io",
        version: "v1",
        name: "events",
        singular: "event",
        namespaced: true,
        kind: "Event",
        verbs: ALL8,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
    },
    Resource {
        group: "storage.k8s.io",
        version: "v1",
        name: "csidrivers",
        singular: "csidriver",
        namespaced: false,
        kind: "CSIDriver",
        verbs: ALL8,
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
    Resource {
        group: "storage.k8s.io",
        version: "v1",
        name: "csistoragecapacities",
        singular: "csistoragecapacity",
        namespaced: true,
        kind: "CSIStorageCapacity",
        verbs: ALL8,
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
    Resource {
        group: "storage.k8s.io",
        version: "v1",
        name: "storageclasses",
        singular: "storageclass",
        namespaced: false,
        kind: "StorageClass",
        verbs: ALL8,
        short_names: &["sc"],
        categories: &[],
        subresources: &[],
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        name: "leases",
        singular: "lease",
        namespaced: true,
        kind: "Lease",
        verbs: ALL8,
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
];

/// The API groups besides core, in kube-apiserver's discovery order.
pub static GROUPS: &[(&str, &str)] = &[
    ("events.k8s.io", "v1"),
    ("storage.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
];

/// The resource served at `group/version/name`.
pub fn find(group: &str, version: &str, name: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.name == name && r.group == group && r.version == version)
}

/// The resources of one group-version (`None` when the group-version is not served).
/// Whether `group`/`version` is served (what [`of_group_version`] answers, without the list).
pub fn serves_group_version(group: &str, version: &str) -> bool {
    (group.is_empty() && version == "v1")
        || GROUPS.iter().any(|(g, v)| *g == group && *v == version)
}

pub fn of_group_version(group: &str, version: &str) -> Option<Vec<&'static Resource>> {
    let served = serves_group_version(group, version);
    served.then(|| {
        RESOURCES
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .collect()
    })
}
