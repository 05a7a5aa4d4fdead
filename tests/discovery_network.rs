//! The discovery hook end to end through the real binary against a real HTTPS peer on
//! loopback: a peer's services and root appear in one run, the metadata is cached in status,
//! a rerun changes nothing, and an outage keeps every ServiceEntry and trust entry
//! (last-known-good) without churning status every minute.

mod common;
mod support;

use base64::Engine;
use common::{ndjson, run_hook, Store};
use serde_json::{json, Value};
use support::pki::{Ca, SigningKeys};
use support::server::Route;
use support::{Peer, OWN_DOMAIN, OWN_UUID};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn env() -> Vec<(String, String)> {
    [
        ("ISTIO_FEDERATION_ENABLED", "true"),
        ("CLUSTER_DOMAIN", OWN_DOMAIN),
        ("CLUSTER_UUID", OWN_UUID),
        ("FETCH_DEADLINE", "10s"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn cluster(peer: &Peer, ca: &Ca, own_keys: Option<&SigningKeys>) -> Store {
    let fed = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": "cluster-b"},
        "spec": {"trustDomain": peer.trust_domain, "metadataEndpoint": format!("{}/", peer.endpoint()),
                 "metadata": {"clusterCA": ca.cert_pem}}});
    let keypair: Vec<Value> = own_keys
        .map(|k| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "d8-remote-authn-keypair", "namespace": "d8-istio"},
                "data": {"priv.pem": b64(&k.private_pem), "pub.pem": b64(&k.public_pem)}})
        })
        .into_iter()
        .collect();
    let mesh = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "d8-istio"},
        "data": {"mesh": "trustDomain: my.cluster\n"}});
    let mut s = Store::default();
    s.objects.insert("federations".into(), vec![fed]);
    s.objects.insert("authn_keypair".into(), keypair);
    s.objects.insert("trust_bundle".into(), vec![mesh]);
    s.objects.insert("local_root_ca".into(), vec![]);
    s.objects.insert("service_entries".into(), vec![]);
    s.objects.insert("destination_rules".into(), vec![]);
    s
}

fn run(store: &Store) -> (Vec<Value>, Vec<Value>, String) {
    let r = run_hook(
        &store.binding_context("refresh_remote_metadata").to_string(),
        &env(),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    (ndjson(&r.patches), ndjson(&r.metrics), r.stderr)
}

fn ops_of<'a>(ops: &'a [Value], operation: &str) -> Vec<&'a Value> {
    ops.iter().filter(|o| o["operation"] == operation).collect()
}

fn condition<'a>(status_patch: &'a Value, kind: &str) -> &'a Value {
    status_patch["mergePatch"]["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no condition {kind} in {status_patch}"))
}

fn fetch_error(metrics: &[Value], url: &str) -> Option<f64> {
    metrics
        .iter()
        .find(|m| {
            m["name"] == "d8_istio_federation_metadata_endpoints_fetch_error_count"
                && m["labels"]["endpoint"] == url
        })
        .and_then(|m| m["value"].as_f64())
}

#[test]
fn peer_metadata_is_imported_cached_and_kept_through_an_outage() {
    let ca = Ca::new("metadata endpoint CA");
    let own_keys = SigningKeys::generate();
    let peer = Peer::start(&ca, "uuid-cluster-b", "b.local", &own_keys);
    let mut store = cluster(&peer, &ca, Some(&own_keys));

    // Run 1: everything appears within one run.
    let (ops, metrics, stderr) = run(&store);
    let trust = ops_of(&ops, "JSONPatch");
    assert_eq!(trust.len(), 1, "{ops:?}\n{stderr}");
    let new_mesh = trust[0]["jsonPatch"][1]["value"].as_str().unwrap();
    let mesh: Value = serde_saphyr::from_str(new_mesh).unwrap();
    assert_eq!(
        mesh["caCertificates"][0]["trustDomains"],
        json!(["b.local"])
    );
    assert_eq!(mesh["caCertificates"][0]["pem"], peer.root_pem.as_str());
    assert_eq!(mesh["trustDomain"], "my.cluster");
    let writes = ops_of(&ops, "CreateOrUpdate");
    let se = writes
        .iter()
        .find(|o| o["object"]["kind"] == "ServiceEntry")
        .expect("a ServiceEntry");
    assert_eq!(
        se["object"]["spec"]["hosts"],
        json!(["web.prod.svc.b.local"])
    );
    assert_eq!(
        se["object"]["spec"]["endpoints"][0]["address"],
        "198.51.100.7"
    );
    assert!(writes
        .iter()
        .any(|o| o["object"]["kind"] == "DestinationRule"));
    let status = ops_of(&ops, "MergePatch");
    assert_eq!(status.len(), 1);
    let cache = &status[0]["mergePatch"]["status"]["metadataCache"];
    assert_eq!(cache["public"]["clusterUUID"], "uuid-cluster-b");
    assert_eq!(cache["public"]["rootCA"], peer.root_pem.as_str());
    assert_eq!(cache["publicLastFetchTimestamp"], common::NOW);
    assert_eq!(
        cache["private"]["publicServices"][0]["ports"][0],
        json!({"name": "http", "port": 8080, "protocol": "HTTP"})
    );
    assert_eq!(cache["privateLastFetchTimestamp"], common::NOW);
    for kind in [
        "PublicMetadataExchangeReady",
        "PrivateMetadataExchangeReady",
        "TrustBundleReady",
        "ServicesImported",
    ] {
        assert_eq!(condition(status[0], kind)["status"], "True", "{kind}");
    }
    assert_eq!(fetch_error(&metrics, &peer.public_url()), Some(0.0));
    assert_eq!(fetch_error(&metrics, &peer.private_url()), Some(0.0));
    // The exporter saw exactly Deckhouse's protocol: public without a token, private with one it accepted.
    let public_reqs = peer.server.requests_to(support::PUBLIC_PATH);
    assert!(!public_reqs.is_empty() && public_reqs.iter().all(|r| r.authorization.is_none()));
    let private_reqs = peer.server.requests_to(support::PRIVATE_PATH);
    assert!(private_reqs.iter().all(|r| r
        .authorization
        .as_deref()
        .is_some_and(|a| a.starts_with("Bearer "))));
    assert!(
        common::check_operations(&ops).is_empty(),
        "{:?}",
        common::check_operations(&ops)
    );
    store.apply(&ops);

    // Run 2: the cluster matches; nothing to do.
    let (ops, _, _) = run(&store);
    assert!(ops.is_empty(), "{ops:?}");

    // Run 3: the peer is down. Conditions say so; nothing is deleted, cache untouched.
    peer.serve_public(Route::status(500, "down for maintenance"));
    let (ops, metrics, _) = run(&store);
    assert_eq!(ops.len(), 1, "only a status patch: {ops:?}");
    let patch = &ops[0];
    assert_eq!(patch["operation"], "MergePatch");
    assert!(patch["mergePatch"]["status"].get("metadataCache").is_none());
    let public = condition(patch, "PublicMetadataExchangeReady");
    assert_eq!(
        (public["status"].as_str(), public["reason"].as_str()),
        (Some("False"), Some("NonOKResponse"))
    );
    assert_eq!(
        public["message"],
        "HTTP status 500 when fetching public metadata"
    );
    let private = condition(patch, "PrivateMetadataExchangeReady");
    assert_eq!(
        (private["status"].as_str(), private["reason"].as_str()),
        (Some("Unknown"), Some("AwaitingPublic"))
    );
    assert_eq!(condition(patch, "TrustBundleReady")["status"], "True");
    assert_eq!(condition(patch, "ServicesImported")["status"], "True");
    assert_eq!(fetch_error(&metrics, &peer.public_url()), Some(1.0));
    store.apply(&ops);
    assert_eq!(store.all("ServiceEntry").len(), 1);

    // Run 4: still down: the same failure does not rewrite status.
    let (ops, _, _) = run(&store);
    assert!(
        ops.is_empty(),
        "a repeated failure must not churn status: {ops:?}"
    );

    // Run 5: back up: conditions recover, nothing else changes.
    peer.serve_public(Route::ok(peer.public_body.clone()));
    let (ops, _, _) = run(&store);
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(
        condition(&ops[0], "PublicMetadataExchangeReady")["status"],
        "True"
    );
}

#[test]
fn without_a_key_pair_only_public_metadata_is_fetched() {
    let ca = Ca::new("metadata endpoint CA");
    let own_keys = SigningKeys::generate();
    let peer = Peer::start(&ca, "uuid-cluster-b", "b.local", &own_keys);
    let store = cluster(&peer, &ca, None);
    let (ops, _, _) = run(&store);
    assert!(
        peer.server.requests_to(support::PRIVATE_PATH).is_empty(),
        "no private request without a key"
    );
    let status = ops_of(&ops, "MergePatch");
    let private = condition(status[0], "PrivateMetadataExchangeReady");
    assert_eq!(private["reason"], "KeyPairMissing");
    assert!(private["message"]
        .as_str()
        .unwrap()
        .contains("d8-istio/d8-remote-authn-keypair"));
    assert!(status[0]["mergePatch"]["status"]["metadataCache"]["public"].is_object());
    assert!(status[0]["mergePatch"]["status"]["metadataCache"]
        .get("private")
        .is_none());
    // Trust is installed from public metadata alone; services wait for private metadata.
    assert_eq!(ops_of(&ops, "JSONPatch").len(), 1);
    assert!(ops_of(&ops, "CreateOrUpdate").is_empty());
}

/// Item-level last-known-good: a peer that once sends an invalid item for a service we import,
/// and then goes away, costs us neither that service's ServiceEntry nor its cache entry.
#[test]
fn a_bad_item_then_an_outage_keeps_the_service() {
    let ca = Ca::new("metadata endpoint CA");
    let own_keys = SigningKeys::generate();
    let peer = Peer::start(&ca, "uuid-cluster-b", "b.local", &own_keys);
    let two = |api_port: Value| {
        json!({"ingressGateways": [{"address": "198.51.100.7", "port": 15443}],
            "publicServices": [
                {"hostname": "web.prod.svc.b.local", "ports": [{"name": "http", "port": 8080}]},
                {"hostname": "api.prod.svc.b.local", "ports": [{"name": "grpc", "port": api_port}]}]})
        .to_string()
    };
    peer.serve_private(Route::ok(two(json!(9090))), &own_keys);
    let mut store = cluster(&peer, &ca, Some(&own_keys));
    let (ops, _, stderr) = run(&store);
    store.apply(&ops);
    assert_eq!(store.all("ServiceEntry").len(), 2, "{ops:?}\n{stderr}");

    // The peer now sends api's port as a string: the item is dropped, the service is kept, and
    // the cache keeps api's last good definition.
    peer.serve_private(Route::ok(two(json!("9090"))), &own_keys);
    let (ops, _, _) = run(&store);
    assert!(ops_of(&ops, "Delete").is_empty(), "{ops:?}");
    assert!(ops_of(&ops, "CreateOrUpdate").is_empty(), "{ops:?}");
    let status = ops_of(&ops, "MergePatch");
    assert_eq!(status.len(), 1, "{ops:?}");
    let services = condition(status[0], "ServicesImported");
    assert_eq!(services["reason"], "InvalidPrivateMetadata");
    assert_eq!(
        services["message"],
        "Imported 2 services; dropped 2 items: service api.prod.svc.b.local: port \"9090\" is not a number 1-65535; service api.prod.svc.b.local: no valid ports. Kept 1 gateway(s)/service(s) of the last good metadata that this response does not validly provide."
    );
    // What it would cache (web fresh, api carried over) is what is cached: no cache write.
    assert!(
        status[0]["mergePatch"]["status"]
            .get("metadataCache")
            .is_none(),
        "{ops:?}"
    );
    store.apply(&ops);
    let cached = &store.objects["federations"][0]["status"]["metadataCache"]["private"];
    let hosts: Vec<&str> = cached["publicServices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["web.prod.svc.b.local", "api.prod.svc.b.local"]);

    // Now the peer is gone: only the cache is left, and it still carries api.
    peer.serve_public(Route::status(503, "gone"));
    let (ops, _, _) = run(&store);
    assert!(ops_of(&ops, "Delete").is_empty(), "{ops:?}");
    store.apply(&ops);
    assert_eq!(store.all("ServiceEntry").len(), 2);

    // Back with a clean document that no longer exports api: now it goes, as it should.
    peer.serve_public(Route::ok(peer.public_body.clone()));
    peer.serve_private(Route::ok(peer.private_body.clone()), &own_keys);
    let (ops, _, _) = run(&store);
    let deleted: Vec<&str> = ops_of(&ops, "Delete")
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        deleted.len(),
        2,
        "the api ServiceEntry and DestinationRule: {ops:?}"
    );
    assert!(
        deleted
            .iter()
            .all(|n| n.starts_with("api-prod-svc-b-local-")),
        "{deleted:?}"
    );
}
