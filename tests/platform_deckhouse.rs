//! A Deckhouse-shaped peer on the real platform (#16, scenario 9): cluster A (etcd,
//! kube-apiserver, istiod, shell-operator running `hooks/` as the ServiceAccount `deploy/`
//! creates) federates with a peer B that is no cluster of ours at all: B's metadata are files
//! laid out as Deckhouse's metadata-exporter lays them out, served by a real nginx over TLS on
//! loopback (tests/support/nginx.rs). Every assertion reads A's API server, istiod or nginx's
//! own access log, never the hook's output files: B's service imported as a ServiceEntry at
//! B's gateway, B's root in A's mesh config bound to B's trust domain, istiod's registry and
//! the proxies' trust bundle holding both, and the IstioFederation's conditions all True.
// The harness modules serve several suites; not every helper is used here.
#![allow(dead_code)]

#[path = "support/mod.rs"]
mod support;

#[path = "platform/bins.rs"]
mod bins;
#[path = "platform/cluster.rs"]
mod cluster;
#[path = "platform/http.rs"]
mod http;
#[path = "platform/kube.rs"]
mod kube;
#[path = "platform/kubelet.rs"]
mod kubelet;
#[path = "platform/manifests.rs"]
mod manifests;
#[path = "platform/procs.rs"]
mod procs;

use bins::Bins;
use cluster::{Cluster, IstioRoot};
use procs::wait_for;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use support::nginx::{deckhouse_layout, start_nginx, Nginx};
use support::pki::{Ca, SigningKeys};

const CONVERGE: Duration = Duration::from_secs(180);

/// The Deckhouse peer: trust domain, UUID and gateway as Deckhouse would publish them. The
/// gateway is TEST-NET-2 (RFC 5737): data only, nothing connects to it.
const B_DOMAIN: &str = "cluster-b.local";
const B_UUID: &str = "7d3e52b0-0000-4000-8000-00000000d3c5";
const B_GATEWAY: &str = "198.51.100.42";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn host() -> String {
    format!("api.prod.svc.{B_DOMAIN}")
}

/// `federation.json` as Deckhouse's exporter renders it: one gateway, one public service.
fn private_json() -> String {
    serde_json::to_string_pretty(&json!({
        "ingressGateways": [{"address": B_GATEWAY, "port": 15443}],
        "publicServices": [
            {"hostname": host(), "ports": [{"name": "http", "port": 8080}]}
        ]
    }))
    .expect("json")
}

fn explain(a: &Cluster, nginx: &Nginx) -> String {
    format!(
        "a: shell-operator errors:\n{}\nnginx access log:\n{}\nnginx error log:\n{}",
        a.operator_errors(),
        nginx.access_log(),
        nginx.error_log()
    )
}

/// Whether A's mesh config trusts `root` for exactly B's trust domain.
fn trusts(a: &Cluster, root: &str) -> bool {
    let Some(cm) = a.kube.get("configmap", cluster::ISTIO_NS, "istio") else {
        return false;
    };
    let mesh: Value =
        serde_saphyr::from_str(cm["data"]["mesh"].as_str().unwrap_or("")).unwrap_or(Value::Null);
    mesh["caCertificates"].as_array().is_some_and(|l| {
        l.iter().any(|e| {
            e["pem"].as_str().map(str::trim) == Some(root.trim())
                && e["trustDomains"] == json!([B_DOMAIN])
        })
    })
}

fn assert_imported(a: &Cluster, nginx: &Nginx) {
    let host = host();
    let se = wait_for(
        &format!("a: a ServiceEntry for {host} at the Deckhouse peer's gateway"),
        CONVERGE,
        || {
            a.service_entries()
                .into_iter()
                .find(|se| se["spec"]["hosts"] == json!([host]))
        },
        || explain(a, nginx),
    );
    assert_eq!(
        se["spec"]["endpoints"],
        json!([{"address": B_GATEWAY, "ports": {"http": 15443},
                "labels": {"security.istio.io/tlsMode": "istio"}}]),
        "a: {se}"
    );
    assert_eq!(
        se["spec"]["ports"],
        json!([{"name": "http", "number": 8080, "protocol": "HTTP"}]),
        "a: {se}"
    );
    wait_for(
        &format!("a's istiod: {host} in /debug/registryz"),
        Duration::from_secs(60),
        || {
            let reg = a.debug("/debug/registryz").to_string();
            reg.contains(&format!("\"hostname\":\"{host}\""))
                .then_some(())
        },
        || a.istiod.tail(15),
    );
}

fn assert_trusted(a: &Cluster, root: &str, nginx: &Nginx) {
    wait_for(
        &format!("a: the Deckhouse peer's root in caCertificates, bound to {B_DOMAIN}"),
        CONVERGE,
        || trusts(a, root).then_some(()),
        || explain(a, nginx),
    );
    wait_for(
        "a's istiod: the Deckhouse peer's root in the proxies' trust bundle (PCDS)",
        Duration::from_secs(90),
        || {
            let x = a.xds(&[]);
            x["trustBundle"]
                .as_array()
                .is_some_and(|l| {
                    l.iter()
                        .any(|p| p.as_str().is_some_and(|p| p.contains(root.trim())))
                })
                .then_some(())
        },
        || a.istiod.tail(20),
    );
}

/// The IstioFederation's status as the API server holds it: every condition True, and the
/// cached public metadata equal to the file nginx serves.
fn assert_conditions(a: &Cluster, public: &str, nginx: &Nginx) {
    let status = wait_for(
        "a: the IstioFederation's conditions all True",
        CONVERGE,
        || {
            let fed = a.kube.get("istiofederation", "", "cluster-b")?;
            let conds = fed["status"]["conditions"].as_array()?.clone();
            (conds.len() >= 4 && conds.iter().all(|c| c["status"] == "True"))
                .then(|| fed["status"].clone())
        },
        || {
            let fed = a.kube.get("istiofederation", "", "cluster-b");
            format!("{}\n{fed:?}", explain(a, nginx))
        },
    );
    for cond in status["conditions"].as_array().into_iter().flatten() {
        for field in ["type", "reason", "message", "lastTransitionTime"] {
            assert!(
                cond[field].is_string(),
                "a: condition without {field}: {cond}"
            );
        }
    }
    let served: Value = serde_json::from_str(public).expect("public.json");
    assert_eq!(
        status["metadataCache"]["public"], served,
        "a: status.metadataCache.public"
    );
}

/// nginx's own record: the public file fetched without a token, the private one with a
/// Bearer token, both answered 200.
fn assert_nginx_saw(nginx: &Nginx) {
    let log = nginx.access_log();
    let ok = |path: &str, auth: &str| {
        log.lines()
            .any(|l| l.starts_with(path) && l.contains(auth) && l.ends_with("status=200"))
    };
    assert!(
        ok("/metadata/public/public.json ", "auth=\"-\""),
        "nginx: {log}"
    );
    assert!(
        ok("/metadata/private/federation.json ", "auth=\"Bearer ey"),
        "nginx: {log}"
    );
}

#[test]
fn a_deckhouse_shaped_peer_served_by_nginx_is_imported_through_the_real_platform() {
    let bins = Bins::locate();
    let tmp = tempfile::tempdir().expect("tempdir");

    // Peer B: Deckhouse's files, served by nginx with a certificate from B's endpoint CA.
    let www = tmp.path().join("nginx-b");
    std::fs::create_dir_all(&www).expect("nginx dir");
    let ca = Ca::new("Deckhouse peer metadata endpoint CA");
    let id = ca.server_identity();
    let root = IstioRoot::new("cluster b (Deckhouse) Istio root").cert_pem;
    let keys = SigningKeys::generate();
    let public = support::public_json(B_UUID, &keys.public_pem, &root);
    deckhouse_layout(&www, &id.cert_pem, &id.key_pem, &public, &private_json());
    let nginx = start_nginx(&www);

    let a = Cluster::start(&bins, &cluster::A, tmp.path(), repo());
    let pem = ca.cert_pem.replace('\n', "\n      ");
    a.kube.apply(&format!(
        "apiVersion: deckhouse.io/v1alpha1\nkind: IstioFederation\nmetadata: {{name: cluster-b}}\nspec:\n  trustDomain: {B_DOMAIN}\n  metadataEndpoint: {}\n  metadata:\n    clusterCA: |\n      {pem}\n",
        nginx.endpoint()
    ));

    assert_imported(&a, &nginx);
    assert_trusted(&a, &root, &nginx);
    assert_conditions(&a, &public, &nginx);
    assert_nginx_saw(&nginx);
}
