//! Guards against the platform's own failures, through the real binary (README, "Security"):
//!
//! - one bad snapshot never deletes everything: an IstioFederation snapshot that lost all (or
//!   more than half) of the federations whose objects and trust entries exist holds those
//!   deletes until the same state is seen again `MASS_DELETION_GRACE` later, on the
//!   reconcile's clock (`ISTIO_FEDERATION_HOOK_NOW`); deleting fewer, or disabling federation,
//!   acts at once;
//! - a peer's clusterUUID is pinned: a fresh public document naming another UUID changes
//!   nothing, sends no token, and says so, until the operator re-pins with an annotation that
//!   the hook honours once, records and clears.

mod common;
mod support;

use common::{expand, ndjson, root, run_hook, Store};
use serde_json::{json, Value};

const GAUGE_HELD: &str = "d8_istio_federation_mass_deletion_held_federations";
const GAUGE_MISMATCH: &str = "d8_istio_federation_peer_cluster_uuid_mismatch";

fn pem(name: &str) -> String {
    expand(&format!("{{{{pem:{name}}}}}"), &root(), false)
}

fn env(now: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("ISTIO_FEDERATION_ENABLED", "true"),
        ("CLUSTER_DOMAIN", "my.cluster"),
        ("CLUSTER_UUID", "deadbeef-mycluster"),
        ("ISTIO_FEDERATION_HOOK_OFFLINE", "true"),
        ("ISTIO_FEDERATION_HOOK_NOW", now),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// An IstioFederation with cached public and private metadata: one service behind one gateway.
fn federation(name: &str, root: &str, uuid: &str) -> Value {
    let td = format!("{name}.local");
    json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation",
        "metadata": {"name": name},
        "spec": {"trustDomain": td, "metadataEndpoint": format!("https://istio-metadata.{name}.example/metadata/")},
        "status": {"metadataCache": {
            "public": {"clusterUUID": uuid, "authnKeyPub": pem("peer-b-authn-pub"), "rootCA": pem(root)},
            "publicLastFetchTimestamp": "2026-12-31T23:55:00Z",
            "private": {"ingressGateways": [{"address": "1.1.1.1", "port": 15443}],
                "publicServices": [{"hostname": format!("web.prod.svc.{td}"), "ports": [{"name": "http", "port": 80}]}]},
            "privateLastFetchTimestamp": "2026-12-31T23:55:00Z"}}})
}

/// Three federations b, c, d, each trusted and each importing one service, fully applied.
fn three_federations() -> Store {
    let mesh = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "d8-istio"},
        "data": {"mesh": "trustDomain: my.cluster\n"}});
    let mut s = Store::default();
    s.objects.insert(
        "federations".into(),
        vec![
            federation("b", "peer-b-root", "uuid-b"),
            federation("c", "peer-c-root", "uuid-c"),
            federation("d", "peer-b-root-2", "uuid-d"),
        ],
    );
    s.objects.insert("authn_keypair".into(), vec![]);
    s.objects.insert("trust_bundle".into(), vec![mesh]);
    s.objects.insert("local_root_ca".into(), vec![]);
    s.objects.insert("service_entries".into(), vec![]);
    s.objects.insert("destination_rules".into(), vec![]);
    let first = run(&s, "2027-01-01T00:00:00Z", &[]);
    s.apply(&first.ops);
    assert_eq!(s.all("ServiceEntry").len(), 3, "{}", first.stderr);
    assert_eq!(trusted_domains(&s), ["b.local", "c.local", "d.local"]);
    s
}

struct Out {
    ops: Vec<Value>,
    metrics: Vec<Value>,
    stderr: String,
}

fn run(store: &Store, now: &str, extra: &[(&str, &str)]) -> Out {
    let r = run_hook(
        &store.binding_context("refresh_remote_metadata").to_string(),
        &env(now, extra),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ops = ndjson(&r.patches);
    let problems = common::check_operations(&ops);
    assert!(problems.is_empty(), "{problems:?}");
    Out {
        ops,
        metrics: ndjson(&r.metrics),
        stderr: r.stderr,
    }
}

fn deletes(ops: &[Value]) -> Vec<String> {
    ops.iter()
        .filter(|o| o["operation"] == "Delete")
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// The trust domains of the `caCertificates` entries in the mesh config, sorted.
fn trusted_domains(store: &Store) -> Vec<String> {
    let cm = store
        .get("ConfigMap", "d8-istio", "istio")
        .expect("mesh config");
    let mesh: Value = serde_saphyr::from_str(cm["data"]["mesh"].as_str().unwrap()).unwrap();
    let mut tds: Vec<String> = mesh["caCertificates"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["trustDomains"][0].as_str().unwrap().to_string())
        .collect();
    tds.sort();
    tds
}

fn gauge<'a>(metrics: &'a [Value], name: &str) -> Vec<&'a Value> {
    metrics
        .iter()
        .filter(|m| m["action"] == "set" && m["name"] == name)
        .collect()
}

fn without_federations(store: &Store, keep: &[&str]) -> Store {
    let mut lost = store.clone();
    lost.objects
        .get_mut("federations")
        .unwrap()
        .retain(|f| keep.contains(&f["metadata"]["name"].as_str().unwrap()));
    lost
}

#[test]
fn an_empty_federation_snapshot_deletes_nothing_until_the_grace_has_passed() {
    let mut store = without_federations(&three_federations(), &[]);

    // A lost informer: every federation is gone from the snapshot at 00:01.
    let held = run(&store, "2027-01-01T00:01:00Z", &[]);
    assert!(deletes(&held.ops).is_empty(), "{:?}", held.ops);
    assert!(
        held.stderr.contains("\"level\":\"error\""),
        "{}",
        held.stderr
    );
    assert!(
        held.stderr.contains("MASS_DELETION_GRACE"),
        "{}",
        held.stderr
    );
    let g = gauge(&held.metrics, GAUGE_HELD);
    assert_eq!(g.len(), 1, "{:?}", held.metrics);
    assert_eq!(g[0]["value"], 3.0);
    store.apply(&held.ops);
    assert_eq!(store.all("ServiceEntry").len(), 3);
    assert_eq!(store.all("DestinationRule").len(), 3);
    assert_eq!(trusted_domains(&store), ["b.local", "c.local", "d.local"]);
    // The state lives in the cluster: every held object says since when.
    for o in store
        .all("ServiceEntry")
        .into_iter()
        .chain(store.all("DestinationRule"))
    {
        let annotations = o["metadata"]["annotations"].as_object().unwrap();
        assert!(
            annotations.values().any(|v| v == "2027-01-01T00:01:00Z"),
            "{o}"
        );
    }

    // Still within the default grace (5m): nothing is written, the hold is still reported.
    let still = run(&store, "2027-01-01T00:05:59Z", &[]);
    assert!(still.ops.is_empty(), "{:?}", still.ops);
    assert_eq!(gauge(&still.metrics, GAUGE_HELD).len(), 1);

    // The same state five minutes after it was first seen: the deletes go out.
    let released = run(&store, "2027-01-01T00:06:00Z", &[]);
    let mut gone = deletes(&released.ops);
    gone.sort();
    assert_eq!(gone.len(), 6, "{:?}", released.ops);
    assert!(gauge(&released.metrics, GAUGE_HELD).is_empty());
    store.apply(&released.ops);
    assert!(store.all("ServiceEntry").is_empty());
    assert!(store.all("DestinationRule").is_empty());
    assert!(trusted_domains(&store).is_empty(), "{:?}", released.ops);
    // And then there is nothing left to report: only the group's expire.
    let after = run(&store, "2027-01-01T00:07:00Z", &[]);
    assert!(after.ops.is_empty(), "{:?}", after.ops);
    assert_eq!(
        after.metrics,
        [json!({"group": "federation_discovery", "action": "expire"})]
    );
}

#[test]
fn the_grace_is_a_setting() {
    let mut store = without_federations(&three_federations(), &[]);
    let grace = [("MASS_DELETION_GRACE", "30s")];
    let held = run(&store, "2027-01-01T00:01:00Z", &grace);
    assert!(deletes(&held.ops).is_empty());
    store.apply(&held.ops);
    let early = run(&store, "2027-01-01T00:01:29Z", &grace);
    assert!(deletes(&early.ops).is_empty());
    let released = run(&store, "2027-01-01T00:01:30Z", &grace);
    assert_eq!(deletes(&released.ops).len(), 6, "{:?}", released.ops);
    // A malformed grace is a malformed setting: the run fails and applies nothing.
    let r = run_hook(
        &store.binding_context("refresh_remote_metadata").to_string(),
        &env("2027-01-01T00:01:30Z", &[("MASS_DELETION_GRACE", "soon")]),
        None,
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("MASS_DELETION_GRACE"), "{}", r.stderr);
}

#[test]
fn more_than_half_is_held_and_a_returning_federation_ends_the_hold() {
    let full = three_federations();
    let mut store = without_federations(&full, &["b"]);
    let held = run(&store, "2027-01-01T00:01:00Z", &[]);
    assert!(deletes(&held.ops).is_empty(), "{:?}", held.ops);
    assert_eq!(gauge(&held.metrics, GAUGE_HELD)[0]["value"], 2.0);
    store.apply(&held.ops);
    assert_eq!(trusted_domains(&store), ["b.local", "c.local", "d.local"]);

    // The informer recovers: the federations are back, and their objects no longer carry the
    // mark of the hold (a later loss starts its own grace).
    let feds = full.objects["federations"].clone();
    store.objects.insert("federations".into(), feds);
    let back = run(&store, "2027-01-01T00:02:00Z", &[]);
    assert!(deletes(&back.ops).is_empty(), "{:?}", back.ops);
    assert!(gauge(&back.metrics, GAUGE_HELD).is_empty());
    store.apply(&back.ops);
    assert_eq!(store.all("ServiceEntry").len(), 3);
    let marked = |s: &Store| {
        s.all("ServiceEntry")
            .into_iter()
            .chain(s.all("DestinationRule"))
            .filter(|o| o.to_string().contains("2027-01-01T00:01:00Z"))
            .count()
    };
    assert_eq!(marked(&store), 0, "{:?}", back.ops);
    let cm = store.get("ConfigMap", "d8-istio", "istio").unwrap();
    assert!(!cm.to_string().contains("2027-01-01T00:01:00Z"), "{cm}");
    assert!(run(&store, "2027-01-01T00:03:00Z", &[]).ops.is_empty());

    // Lost again much later: a new grace starts, the old mark does not release at once.
    let mut again = without_federations(&store, &["b"]);
    let held = run(&again, "2027-01-01T01:00:00Z", &[]);
    assert!(deletes(&held.ops).is_empty(), "{:?}", held.ops);
    again.apply(&held.ops);
    let released = run(&again, "2027-01-01T01:05:00Z", &[]);
    assert_eq!(deletes(&released.ops).len(), 4, "{:?}", released.ops);
    again.apply(&released.ops);
    assert_eq!(trusted_domains(&again), ["b.local"]);
}

#[test]
fn deleting_one_federation_of_three_acts_at_once() {
    let mut store = without_federations(&three_federations(), &["b", "c"]);
    let out = run(&store, "2027-01-01T00:01:00Z", &[]);
    let mut gone = deletes(&out.ops);
    gone.sort();
    assert_eq!(gone.len(), 2, "{:?}", out.ops);
    assert!(
        gone.iter().all(|d| d.contains("web-prod-svc-d-local")),
        "{gone:?}"
    );
    assert!(gauge(&out.metrics, GAUGE_HELD).is_empty());
    store.apply(&out.ops);
    assert_eq!(trusted_domains(&store), ["b.local", "c.local"]);
}

#[test]
fn disabling_federation_removes_everything_at_once() {
    let mut store = without_federations(&three_federations(), &[]);
    let out = run(
        &store,
        "2027-01-01T00:01:00Z",
        &[("ISTIO_FEDERATION_ENABLED", "false")],
    );
    assert_eq!(deletes(&out.ops).len(), 6, "{:?}", out.ops);
    store.apply(&out.ops);
    assert!(trusted_domains(&store).is_empty());
}

#[test]
fn an_empty_cluster_reports_nothing_but_the_expire() {
    let mut s = Store::default();
    for b in [
        "federations",
        "authn_keypair",
        "trust_bundle",
        "local_root_ca",
        "service_entries",
        "destination_rules",
    ] {
        s.objects.insert(b.into(), vec![]);
    }
    let out = run(&s, "2027-01-01T00:00:00Z", &[]);
    assert!(out.ops.is_empty(), "{:?}", out.ops);
    assert_eq!(
        out.metrics,
        [json!({"group": "federation_discovery", "action": "expire"})]
    );
}

mod pin {
    use super::*;
    use support::pki::{Ca, SigningKeys};
    use support::server::{JwtCheck, Route};
    use support::{public_json, Peer, OWN_UUID, PRIVATE_PATH};

    const REPIN: &str = "federation.istio.deckhouse.io/repin-cluster-uuid";

    pub(super) fn cluster(peer: &Peer, ca: &Ca, own_keys: &SigningKeys) -> Store {
        Store::one_peer(&common::OnePeer {
            trust_domain: &peer.trust_domain,
            endpoint: &peer.endpoint(),
            endpoint_ca_pem: &ca.cert_pem,
            private_pem: &own_keys.private_pem,
            public_pem: &own_keys.public_pem,
        })
    }

    pub(super) fn online(store: &Store) -> Out {
        run(
            store,
            common::NOW,
            &[
                ("ISTIO_FEDERATION_HOOK_OFFLINE", "false"),
                ("FETCH_DEADLINE", "10s"),
            ],
        )
    }

    pub(super) fn condition<'a>(ops: &'a [Value], kind: &str) -> &'a Value {
        ops.iter()
            .find(|o| o["operation"] == "MergePatch")
            .and_then(|p| p["mergePatch"]["status"]["conditions"].as_array())
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .unwrap_or_else(|| panic!("no condition {kind} in {ops:?}"))
    }

    #[test]
    fn a_changed_peer_uuid_is_held_until_the_operator_repins_it() {
        let ca = Ca::new("metadata endpoint CA");
        let own_keys = SigningKeys::generate();
        let peer = Peer::start(&ca, "uuid-cluster-b", "b.local", &own_keys);
        let mut store = cluster(&peer, &ca, &own_keys);
        let first = online(&store);
        store.apply(&first.ops);
        assert_eq!(store.all("ServiceEntry").len(), 1, "{}", first.stderr);
        let trusted_before = trusted_domains(&store);
        let mesh_before = store.get("ConfigMap", "d8-istio", "istio").unwrap().clone();
        assert!(online(&store).ops.is_empty());

        // Whoever now answers at the endpoint publishes another UUID, key and root.
        let impostor_keys = SigningKeys::generate();
        let impostor_root = support::pki::valid_root_pem("root of an impostor");
        let impostor = public_json("uuid-impostor", &impostor_keys.public_pem, &impostor_root);
        peer.serve_public(Route::ok(impostor));
        let private_before = peer.server.requests_to(PRIVATE_PATH).len();
        let held = online(&store);
        assert_eq!(
            peer.server.requests_to(PRIVATE_PATH).len(),
            private_before,
            "no token may go to whoever answers now"
        );
        let public = condition(&held.ops, "PublicMetadataExchangeReady");
        assert_eq!(
            (&public["status"], &public["reason"]),
            (&json!("False"), &json!("ClusterUUIDMismatch"))
        );
        let message = public["message"].as_str().unwrap();
        assert!(
            message.contains("uuid-cluster-b") && message.contains("uuid-impostor"),
            "{message}"
        );
        assert!(message.contains(REPIN), "{message}");
        assert_ne!(
            condition(&held.ops, "PrivateMetadataExchangeReady")["status"],
            "True"
        );
        // Everything imported stays as it was: only the status patch, and no new cache.
        assert_eq!(held.ops.len(), 1, "{:?}", held.ops);
        assert!(held.ops[0]["mergePatch"]["status"]
            .get("metadataCache")
            .is_none());
        let g = gauge(&held.metrics, GAUGE_MISMATCH);
        assert_eq!(g.len(), 1, "{:?}", held.metrics);
        assert_eq!(g[0]["value"], 1.0);
        assert_eq!(
            g[0]["labels"],
            json!({"federation_name": "cluster-b", "pinned_uuid": "uuid-cluster-b", "actual_uuid": "uuid-impostor"})
        );
        store.apply(&held.ops);
        assert_eq!(trusted_domains(&store), trusted_before);
        assert_eq!(
            store.get("ConfigMap", "d8-istio", "istio").unwrap(),
            &mesh_before
        );
        // A mismatch that stays rewrites nothing.
        let again = online(&store);
        assert!(again.ops.is_empty(), "{:?}", again.ops);
        assert_eq!(gauge(&again.metrics, GAUGE_MISMATCH).len(), 1);

        // The operator re-pins to the new UUID (the cluster was reinstalled).
        store.objects.get_mut("federations").unwrap()[0]["metadata"]["annotations"] =
            json!({REPIN: "uuid-impostor"});
        peer.server.route(
            PRIVATE_PATH,
            Route::ok(peer.private_body.clone()).with_jwt(JwtCheck {
                own_uuid: "uuid-impostor".into(),
                peers: std::collections::BTreeMap::from([(
                    OWN_UUID.to_string(),
                    own_keys.public_raw,
                )]),
            }),
        );
        let repinned = online(&store);
        let privates = peer.server.requests_to(PRIVATE_PATH);
        assert_eq!(privates.len(), private_before + 1, "{:?}", repinned.ops);
        assert_eq!(
            privates
                .last()
                .unwrap()
                .claims
                .as_ref()
                .map(|c| c.aud.as_str()),
            Some("uuid-impostor")
        );
        assert_eq!(
            condition(&repinned.ops, "PublicMetadataExchangeReady")["status"],
            "True"
        );
        assert!(gauge(&repinned.metrics, GAUGE_MISMATCH).is_empty());
        store.apply(&repinned.ops);
        let fed = &store.objects["federations"][0];
        assert_eq!(
            fed["status"]["metadataCache"]["public"]["clusterUUID"],
            "uuid-impostor"
        );
        let annotations = fed["metadata"]["annotations"].as_object().unwrap();
        assert!(
            annotations.get(REPIN).is_none(),
            "honoured once and cleared: {fed}"
        );
        assert!(
            annotations.values().any(|v| v
                .as_str()
                .is_some_and(|v| v.contains("uuid-cluster-b") && v.contains("uuid-impostor"))),
            "the re-pin is recorded: {fed}"
        );
        let mesh = store.get("ConfigMap", "d8-istio", "istio").unwrap();
        assert!(mesh["data"]["mesh"]
            .as_str()
            .unwrap()
            .contains(impostor_root.lines().nth(1).unwrap()));
        // Honoured once: the next run is quiet.
        let after = online(&store);
        assert!(after.ops.is_empty(), "{:?}", after.ops);
    }

    #[test]
    fn a_repin_to_another_uuid_than_published_changes_nothing() {
        let ca = Ca::new("metadata endpoint CA");
        let own_keys = SigningKeys::generate();
        let peer = Peer::start(&ca, "uuid-cluster-b", "b.local", &own_keys);
        let mut store = cluster(&peer, &ca, &own_keys);
        let first = online(&store);
        store.apply(&first.ops);
        let impostor = public_json(
            "uuid-impostor",
            &SigningKeys::generate().public_pem,
            &peer.root_pem,
        );
        peer.serve_public(Route::ok(impostor));
        store.objects.get_mut("federations").unwrap()[0]["metadata"]["annotations"] =
            json!({REPIN: "uuid-someone-else"});
        let out = online(&store);
        let public = condition(&out.ops, "PublicMetadataExchangeReady");
        assert_eq!(public["reason"], "ClusterUUIDMismatch");
        assert_eq!(
            out.ops.len(),
            1,
            "the annotation stays, nothing else is written: {:?}",
            out.ops
        );
    }
}

/// Deckhouse's newest shapes (docs/compatibility.md): a private document with `clusterID` and
/// `ambientGateways` is accepted, and the status patches keep what other writers put in the
/// status (`dataPlaneHealth` of older alliance-healthcheck versions).
mod deckhouse_shapes {
    use super::*;
    use support::pki::{Ca, SigningKeys};
    use support::server::Route;
    use support::Peer;

    #[test]
    fn newest_private_document_is_imported_and_foreign_status_is_kept() {
        let ca = Ca::new("metadata endpoint CA");
        let own_keys = SigningKeys::generate();
        let peer = Peer::start(&ca, "uuid-cluster-b", "b.local", &own_keys);
        let private = json!({"clusterID": "uuid-cluster-b",
            "ingressGateways": [{"address": "198.51.100.7", "port": 15443}],
            "ambientGateways": [{"address": "198.51.100.8", "port": 15008, "network": "b"}],
            "publicServices": [{"hostname": "web.prod.svc.b.local", "ports": [{"name": "http", "port": 8080}]}]});
        peer.serve_private(Route::ok(private.to_string()), &own_keys);
        let mut store = pin::cluster(&peer, &ca, &own_keys);
        let health = json!({"isConnected": true, "lastProbeTimestamp": "2026-12-31T23:59:00Z",
            "lastSuccessProbeTimestamp": "2026-12-31T23:59:00Z", "message": "ok"});
        store.objects.get_mut("federations").unwrap()[0]["status"] =
            json!({"dataPlaneHealth": health});
        let out = pin::online(&store);
        for kind in ["PrivateMetadataExchangeReady", "ServicesImported"] {
            assert_eq!(
                pin::condition(&out.ops, kind)["status"],
                "True",
                "{kind}: {}",
                out.stderr
            );
        }
        store.apply(&out.ops);
        let status = &store.objects["federations"][0]["status"];
        assert_eq!(status["dataPlaneHealth"], health);
        assert_eq!(
            status["metadataCache"]["private"]["publicServices"][0]["hostname"],
            "web.prod.svc.b.local"
        );
        assert_eq!(store.all("ServiceEntry").len(), 1);
        // The cache it wrote, extra keys or not, is read back as valid: nothing changes.
        let again = pin::online(&store);
        assert!(again.ops.is_empty(), "{:?}", again.ops);
    }
}
