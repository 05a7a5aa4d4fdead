//! The discovery hook's shell-operator configuration (`--config`; docs/how-it-works.md, "Remote
//! discovery").
//!
//! Every Kubernetes binding and the schedule share one `group`, so every run — whatever
//! triggered it — sees complete snapshots of everything the reconcile needs. jq filters keep
//! our own writes (IstioFederation status, Istio's ServiceEntry status) from re-triggering
//! the hook: a Modified event is only delivered when the filtered view changes.

use crate::hook::settings::{Settings, TrustBundleMode, CACERTS_SECRET, LOCAL_ROOT_CONFIGMAP};
use crate::protocol::labels::{
    ACCEPT_CLUSTER_LOCAL_ANNOTATION, DISTRUST_ROOTS_ANNOTATION, EXPORT_TO_ANNOTATION,
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, PUBLIC_SERVICE_LABEL, REPIN_CLUSTER_UUID_ANNOTATION,
};
use crate::protocol::secret::KEYPAIR_SECRET;
use serde_json::{json, Value};

/// Binding names: the keys of `snapshots` in every run.
pub const FEDERATIONS: &str = "federations";
pub(crate) const KEYPAIR: &str = "authn_keypair";
pub const TRUST_BUNDLE: &str = "trust_bundle";
pub(crate) const LOCAL_ROOT: &str = "local_root_ca";
pub const SERVICE_ENTRIES: &str = "service_entries";
pub const DESTINATION_RULES: &str = "destination_rules";
/// Our AuthorizationPolicies in Istio's root namespace (docs/security.md, "Exported means
/// reachable").
pub const AUTHORIZATION_POLICIES: &str = "authorization_policies";
/// The exported Services with their ports and `export-to`: what each peer may reach.
pub const PUBLIC_SERVICES: &str = "public_services";
/// The federation Gateway named by `FEDERATION_GATEWAY`, when set.
pub const FEDERATION_GATEWAY: &str = "federation_gateway";
pub(crate) const SCHEDULE: &str = "refresh_remote_metadata";
pub(crate) const GROUP: &str = "istio_federation";
pub(crate) const QUEUE: &str = "istio-federation";

/// Every snapshot a discovery run needs before it may change anything.
pub const REQUIRED_SNAPSHOTS: [&str; 6] = [
    FEDERATIONS,
    KEYPAIR,
    TRUST_BUNDLE,
    LOCAL_ROOT,
    SERVICE_ENTRIES,
    DESTINATION_RULES,
];

fn in_namespace(ns: &str) -> Value {
    json!({"nameSelector": {"matchNames": [ns]}})
}

/// Renders the configVersion v1 config for the discovery hook.
pub(crate) fn discovery_config(s: &Settings) -> Value {
    let mut cfg = bindings(s);
    if let (Some((ns, name)), Some(list)) = (
        &s.federation_gateway,
        cfg.get_mut("kubernetes").and_then(Value::as_array_mut),
    ) {
        list.push(json!({
            "name": FEDERATION_GATEWAY,
            "apiVersion": s.networking_api_version,
            "kind": "Gateway",
            "namespace": in_namespace(ns),
            "nameSelector": {"matchNames": [name]},
            "jqFilter": "{servers: .spec.servers}",
            "group": GROUP,
            "queue": QUEUE,
        }));
    }
    cfg
}

fn bindings(s: &Settings) -> Value {
    // The trust-bundle object: the mesh-config ConfigMap or the plug-in CA Secret, read alike.
    let (kind, name) = match s.trust_bundle_mode {
        TrustBundleMode::MeshConfig => ("ConfigMap", s.mesh_config_name.as_str()),
        TrustBundleMode::Cacerts => ("Secret", CACERTS_SECRET),
    };
    let trust_bundle = json!({
        "name": TRUST_BUNDLE,
        "apiVersion": "v1",
        "kind": kind,
        "namespace": in_namespace(&s.istio_namespace),
        "nameSelector": {"matchNames": [name]},
        "jqFilter": "{data: .data, annotations: .metadata.annotations}",
        "group": GROUP,
        "queue": QUEUE,
    });
    let managed = |name: &str, kind: &str| {
        json!({
            "name": name,
            "apiVersion": s.networking_api_version,
            "kind": kind,
            "namespace": in_namespace(&s.federation_namespace),
            "labelSelector": {"matchLabels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
            "jqFilter": "{labels: .metadata.labels, annotations: .metadata.annotations, spec: .spec}",
            "group": GROUP,
            "queue": QUEUE,
        })
    };
    json!({
        "configVersion": "v1",
        "kubernetes": [
            {
                "name": FEDERATIONS,
                "apiVersion": "deckhouse.io/v1alpha1",
                "kind": "IstioFederation",
                // The distrust annotation is an emergency brake, and a re-pin or the cluster.local
                // opt-in an operator's act: changing one must trigger a run at once, not wait
                // for the schedule (docs/rotation.md, docs/how-it-works.md).
                "jqFilter": format!("{{spec: .spec, distrustRoots: .metadata.annotations[\"{DISTRUST_ROOTS_ANNOTATION}\"], repinClusterUUID: .metadata.annotations[\"{REPIN_CLUSTER_UUID_ANNOTATION}\"], acceptClusterLocal: .metadata.annotations[\"{ACCEPT_CLUSTER_LOCAL_ANNOTATION}\"]}}"),
                "group": GROUP,
                "queue": QUEUE,
            },
            {
                "name": KEYPAIR,
                "apiVersion": "v1",
                "kind": "Secret",
                "namespace": in_namespace(&s.federation_namespace),
                "nameSelector": {"matchNames": [KEYPAIR_SECRET]},
                "jqFilter": ".data",
                "group": GROUP,
                "queue": QUEUE,
            },
            trust_bundle,
            {
                "name": LOCAL_ROOT,
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "namespace": in_namespace(&s.istio_namespace),
                "nameSelector": {"matchNames": [LOCAL_ROOT_CONFIGMAP]},
                "jqFilter": ".data",
                "group": GROUP,
                "queue": QUEUE,
            },
            managed(SERVICE_ENTRIES, "ServiceEntry"),
            managed(DESTINATION_RULES, "DestinationRule"),
            {
                "name": AUTHORIZATION_POLICIES,
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "namespace": in_namespace(&s.authz_root_namespace),
                "labelSelector": {"matchLabels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
                "jqFilter": "{labels: .metadata.labels, annotations: .metadata.annotations, spec: .spec}",
                "group": GROUP,
                "queue": QUEUE,
            },
            {
                "name": PUBLIC_SERVICES,
                "apiVersion": "v1",
                "kind": "Service",
                "labelSelector": {"matchLabels": {PUBLIC_SERVICE_LABEL: ""}},
                // Only what decides the boundary: a change of endpoints or status is no event.
                "jqFilter": format!("{{exportTo: .metadata.annotations[\"{EXPORT_TO_ANNOTATION}\"], ports: [.spec.ports[]?.port]}}"),
                "group": GROUP,
                "queue": QUEUE,
            },
        ],
        "schedule": [
            {"name": SCHEDULE, "crontab": s.hook_schedule, "group": GROUP, "queue": QUEUE}
        ],
        "settings": {"executionMinInterval": "3s", "executionBurst": 3},
    })
}
