//! Our IstioFederation CRD (deploy/base/crd-istiofederation.yaml) as a real API server judges
//! it (issue 18, points 4 and 5): the status shapes newer Deckhouse components write survive a
//! write through the status subresource unpruned, and the spec's trust-domain validation admits
//! Istio's default `cluster.local` (the hook, not the CRD, enforces the opt-in) while still
//! refusing what is no trust domain. The status shapes come from the golden case
//! testdata/discovery/deckhouse-newest-shapes-kept; every assertion reads the API server.
//! And Istio's ServiceEntry CRD against what the release binary writes for a peer publishing
//! more ports than an endpoint can carry.
// The harness modules serve several suites; not every helper is used here.
#![allow(dead_code)]

#[path = "support/mod.rs"]
mod support;

#[path = "platform/bins.rs"]
mod bins;
#[path = "platform/kube.rs"]
mod kube;
#[path = "platform/manifests.rs"]
mod manifests;
#[path = "platform/procs.rs"]
mod procs;

use bins::Bins;
use kube::Kube;
use serde_json::{json, Value};
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Applies deploy/'s CRD alone and waits until the API server serves it.
fn install_our_crd(k: &Kube) {
    let crd = std::fs::read_to_string(repo().join("deploy/base/crd-istiofederation.yaml"))
        .expect("deploy/base/crd-istiofederation.yaml");
    k.apply(&crd);
    k.ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/istiofederations.deckhouse.io",
            "--timeout=60s",
        ],
        None,
    );
}

/// The golden case's status, its `{{pem:…}}` placeholders replaced by a PEM-shaped string
/// (the CRD types those fields as strings; their content is not what is judged here).
fn golden_status() -> Value {
    let path = repo().join("testdata/discovery/deckhouse-newest-shapes-kept/binding-context.json");
    let text = std::fs::read_to_string(&path).expect("the golden case for Deckhouse's shapes");
    let ctx: Value = serde_json::from_str(&text).expect("binding-context.json");
    let mut status = ctx[0]["snapshots"]["federations"][0]["object"]["status"].clone();
    fill_placeholders(&mut status);
    status
}

fn fill_placeholders(v: &mut Value) {
    match v {
        Value::String(s) if s.starts_with("{{pem:") => {
            *s = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_string();
        }
        Value::Object(m) => m.values_mut().for_each(fill_placeholders),
        Value::Array(a) => a.iter_mut().for_each(fill_placeholders),
        _ => {}
    }
}

fn federation(name: &str, trust_domain: &str) -> String {
    json!({
        "apiVersion": "deckhouse.io/v1alpha1",
        "kind": "IstioFederation",
        "metadata": {"name": name},
        "spec": {
            "trustDomain": trust_domain,
            "metadataEndpoint": format!("https://istio-metadata.{name}.example/metadata/"),
        },
    })
    .to_string()
}

/// Point 4: every field of Deckhouse's newest shapes, written through the status subresource,
/// reads back exactly as written.
fn assert_newest_shapes_kept(k: &Kube) {
    let status = golden_status();
    for (what, v) in [
        ("status.dataPlaneHealth", &status["dataPlaneHealth"]),
        (
            "status.metadataCache.private.clusterID",
            &status["metadataCache"]["private"]["clusterID"],
        ),
        (
            "status.metadataCache.private.ambientGateways",
            &status["metadataCache"]["private"]["ambientGateways"],
        ),
    ] {
        assert!(!v.is_null(), "the golden case no longer carries {what}");
    }
    k.ok(&["create", "-f", "-"], Some(&federation("b", "b.local")));
    k.ok(
        &[
            "patch",
            "istiofederation",
            "b",
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({ "status": status }).to_string(),
        ],
        None,
    );
    let back = k
        .get("istiofederation", "", "b")
        .expect("IstioFederation b");
    let got = &back["status"];
    assert_eq!(
        got["dataPlaneHealth"], status["dataPlaneHealth"],
        "status.dataPlaneHealth pruned or changed: {got}"
    );
    let private = &got["metadataCache"]["private"];
    assert_eq!(private["clusterID"], json!("uuid-b"), "{got}");
    assert_eq!(
        private["ambientGateways"],
        json!([{"address": "1.1.1.2", "port": 15008, "network": "network-b"}]),
        "status.metadataCache.private.ambientGateways: {got}"
    );
    assert_eq!(
        *got, status,
        "the status the API server kept differs from the one written"
    );
}

/// Point 5: `cluster.local` passes the CRD's validation; a trust domain that is none is
/// refused with the API server's message naming the field.
fn assert_trust_domain_validation(k: &Kube) {
    k.ok(
        &["create", "-f", "-"],
        Some(&federation("default-domain", "cluster.local")),
    );
    let back = k
        .get("istiofederation", "", "default-domain")
        .expect("the cluster.local IstioFederation");
    assert_eq!(back["spec"]["trustDomain"], "cluster.local", "{back}");

    let out = k.kubectl(
        &["create", "-f", "-"],
        Some(&federation("bad-domain", "Cluster_Local..")),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an invalid trust domain was admitted"
    );
    assert!(
        err.contains("spec.trustDomain") && err.contains("should match"),
        "not the CRD validation's refusal: {err}"
    );
    assert!(
        k.get("istiofederation", "", "bad-domain").is_none(),
        "the refused IstioFederation exists"
    );
}

#[test]
fn crd_keeps_deckhouse_shapes_and_admits_cluster_local() {
    let bins = Bins::locate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let k = Kube::start(&bins, "crd", tmp.path());
    install_our_crd(&k);
    assert_newest_shapes_kept(&k);
    assert_trust_domain_validation(&k);
}

fn cert(name: &str) -> String {
    std::fs::read_to_string(repo().join("testdata/certs").join(format!("{name}.pem")))
        .expect("testdata/certs")
}

/// An IstioFederation with cached public and private metadata (`ports` per service).
fn cached_federation(name: &str, td: &str, host: &str, ports: std::ops::Range<u16>) -> Value {
    let ports: Vec<Value> = ports
        .map(|p| json!({"name": format!("tcp-{p}"), "port": p, "protocol": "TCP"}))
        .collect();
    json!({"object": {"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation",
        "metadata": {"name": name},
        "spec": {"trustDomain": td, "metadataEndpoint": format!("https://istio-metadata.{td}/metadata/")},
        "status": {"metadataCache": {
            "public": {"clusterUUID": format!("uuid-{name}"), "authnKeyPub": cert("peer-b-authn-pub"), "rootCA": cert("peer-b-root")},
            "publicLastFetchTimestamp": "2026-12-31T23:55:00Z",
            "private": {"ingressGateways": [{"address": "198.51.100.7", "port": 15443}],
                        "publicServices": [{"hostname": host, "ports": ports}]},
            "privateLastFetchTimestamp": "2026-12-31T23:55:00Z"}}}})
}

/// Istio's ServiceEntry limits as the real API server enforces them (docs/security.md, "Limits
/// and shares"): an endpoint with 129 ports is refused — the limit the hook keeps to is real —
/// and what the hook writes for a peer's 200-port service, and for a host two federations
/// publish 100 ports each for, is accepted (server-side dry run: schema and CEL rules).
#[test]
fn service_entries_for_many_ports_pass_the_api_server() {
    let bins = Bins::locate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let k = Kube::start(&bins, "limits", tmp.path());
    manifests::install_crds(&k, &bins);
    k.ok(&["create", "namespace", "d8-istio"], None);
    let probe = |n: u16| {
        let ports: Vec<Value> = (1..=n)
            .map(|p| json!({"name": format!("tcp-{p}"), "number": p, "protocol": "TCP"}))
            .collect();
        let endpoint_ports: serde_json::Map<String, Value> = (1..=n)
            .map(|p| (format!("tcp-{p}"), json!(15443)))
            .collect();
        json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": format!("probe-{n}"), "namespace": "d8-istio"},
            "spec": {"hosts": ["probe.example"], "location": "MESH_INTERNAL", "resolution": "STATIC",
                     "ports": ports,
                     "endpoints": [{"address": "198.51.100.7", "ports": endpoint_ports}]}})
        .to_string()
    };
    let refused = k.kubectl(
        &["create", "--dry-run=server", "-f", "-"],
        Some(&probe(129)),
    );
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && message.contains("128"),
        "the API server accepted an endpoint with 129 ports: {message}"
    );
    k.ok(
        &["create", "--dry-run=server", "-f", "-"],
        Some(&probe(128)),
    );

    let mesh = json!({"object": {"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "d8-istio"}, "data": {"mesh": "trustDomain: my.cluster\n"}}});
    let bc = json!([{"binding": "refresh_remote_metadata", "type": "Group", "groupName": "istio_federation",
        "snapshots": {
            "federations": [
                cached_federation("wide", "wide.local", "many.prod.svc.wide.local", 10000..10200),
                cached_federation("shared-1", "shared.local", "merged.prod.svc.shared.local", 20000..20100),
                cached_federation("shared-2", "shared.local", "merged.prod.svc.shared.local", 20100..20200),
            ],
            "trust_bundle": [mesh],
            "local_root_ca": [],
            "service_entries": [],
            "destination_rules": []}}]);
    let objects: Vec<Value> = bins::run_hook_offline(
        &bc,
        &[
            ("CLUSTER_DOMAIN", "my.cluster"),
            ("CLUSTER_UUID", "deadbeef-mycluster"),
        ],
    )
    .into_iter()
    .filter(|op| {
        op["operation"] == "CreateOrUpdate"
            && matches!(
                op["object"]["kind"].as_str(),
                Some("ServiceEntry" | "DestinationRule")
            )
    })
    .map(|op| op["object"].clone())
    .collect();
    let entries: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ServiceEntry")
        .collect();
    assert_eq!(entries.len(), 2, "{objects:?}");
    for o in &objects {
        k.ok(
            &["create", "--dry-run=server", "-f", "-"],
            Some(&o.to_string()),
        );
    }
    for se in entries {
        assert_eq!(
            se["spec"]["ports"].as_array().map(Vec::len),
            Some(128),
            "{}",
            se["spec"]["hosts"]
        );
    }
}
