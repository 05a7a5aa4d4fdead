//! Policy always before trust (docs/security.md, "Exported means reachable"), through every
//! transition a federation goes through — a peer added, an export widened, a peer's trust
//! domain changed, a peer removed, enforcement turned off — and whatever fails on the way.
//!
//! The real binary runs discovery on an in-memory cluster; its operations are applied one at a
//! time, in order, as shell-operator applies them, and after every single one the invariant is
//! checked: every trust domain with a root in the mesh config's `caCertificates` has a
//! mesh-wide DENY policy for its principals in the root namespace. shell-operator does not stop
//! at a failed operation, so each run is also replayed with each one of its operations failing
//! (skipped), the rest applied, and the cluster then left to converge without failures — the
//! invariant must hold after every operation of all of these, and the runs must converge.
//!
//! The export hook runs in its own queue; each step also runs it on the same cluster and checks
//! that it writes neither a policy nor the trust bundle, so no interleaving of the two queues
//! can touch what the invariant is about.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const ISTIO_NS: &str = "istio-system";

fn env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = [
        ("ISTIO_FEDERATION_ENABLED", "true"),
        ("CLUSTER_DOMAIN", "my.cluster"),
        ("CLUSTER_UUID", "uuid-own"),
        ("ISTIO_NAMESPACE", ISTIO_NS),
        ("FEDERATION_NAMESPACE", "istio-federation"),
        ("ISTIO_FEDERATION_HOOK_OFFLINE", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    e
}

fn pem(name: &str) -> String {
    std::fs::read_to_string(root().join("testdata/certs").join(format!("{name}.pem")))
        .expect("certificate fixture")
}

fn federation(name: &str, td: &str, root_ca: &str) -> Value {
    json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation",
        "metadata": {"name": name},
        "spec": {"trustDomain": td, "metadataEndpoint": format!("https://ingress.{name}.example/metadata/")},
        "status": {"metadataCache": {"public": {"clusterUUID": format!("uuid-{name}"),
            "authnKeyPub": pem("peer-b-authn-pub"), "rootCA": pem(root_ca)},
            "publicLastFetchTimestamp": "2026-12-31T23:55:00Z"}}})
}

fn service(name: &str, export_to: Option<&str>) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "prod",
            "labels": {"federation.istio.deckhouse.io/public-service": ""}},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    if let Some(e) = export_to {
        s["metadata"]["annotations"] = json!({"federation.istio.deckhouse.io/export-to": e});
    }
    s
}

fn initial() -> Store {
    let mut s = Store::default();
    let mesh = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": ISTIO_NS},
        "data": {"mesh": "trustDomain: my.cluster\n"}});
    for (binding, objs) in [
        (
            "federations",
            vec![
                federation("b", "b.local", "peer-b-root"),
                federation("c", "c.local", "peer-c-root"),
            ],
        ),
        ("trust_bundle", vec![mesh]),
        (
            "public_services",
            vec![service("web", None), service("db", Some("c.local"))],
        ),
        ("authn_keypair", vec![]),
        ("local_root_ca", vec![]),
        ("service_entries", vec![]),
        ("destination_rules", vec![]),
        ("authorization_policies", vec![]),
    ] {
        s.objects.insert(binding.to_string(), objs);
    }
    s
}

/// Trust domains with a root in `caCertificates`, read from the mesh config as istiod would.
fn trusted_domains(store: &Store) -> BTreeSet<String> {
    let cm = store
        .get("ConfigMap", ISTIO_NS, "istio")
        .expect("mesh config");
    let mesh: Value =
        serde_saphyr::from_str(cm["data"]["mesh"].as_str().expect("data.mesh")).expect("YAML");
    mesh["caCertificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["trustDomains"].as_array().cloned().unwrap_or_default())
        .filter_map(|td| td.as_str().map(str::to_string))
        .collect()
}

/// Trust domains a policy in the root namespace denies mesh-wide: DENY, no selector, a rule
/// for exactly `<td>/*`.
fn bounded_domains(store: &Store) -> BTreeSet<String> {
    store
        .all("AuthorizationPolicy")
        .into_iter()
        .filter(|p| p["metadata"]["namespace"] == ISTIO_NS)
        .filter(|p| p["spec"]["action"] == "DENY" && p["spec"].get("selector").is_none())
        .flat_map(|p| p["spec"]["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| {
            let principals = r["from"][0]["source"]["principals"].as_array()?.clone();
            match principals.as_slice() {
                [Value::String(p)] => p.strip_suffix("/*").map(str::to_string),
                _ => None,
            }
        })
        .collect()
}

fn check(store: &Store, at: &str) {
    let unbounded: Vec<String> = trusted_domains(store)
        .difference(&bounded_domains(store))
        .cloned()
        .collect();
    assert!(
        unbounded.is_empty(),
        "{at}: roots of {unbounded:?} are trusted without their AuthorizationPolicy"
    );
}

fn discovery_ops(store: &Store, env: &[(String, String)]) -> Vec<Value> {
    let bc = store.binding_context("refresh_remote_metadata").to_string();
    let run = run_hook(&bc, env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    ndjson(&run.patches)
}

/// Applies `ops` one by one, except `failing`, checking the invariant after each.
fn apply(store: &mut Store, ops: &[Value], failing: Option<usize>, at: &str) {
    for (i, op) in ops.iter().enumerate() {
        if Some(i) != failing {
            store.apply(std::slice::from_ref(op));
        }
        check(store, &format!("{at}, after operation {i}"));
    }
}

/// Runs discovery without failures until a run writes nothing (at most 4 runs).
fn converge(store: &mut Store, env: &[(String, String)], at: &str) -> usize {
    for run in 0..4 {
        let ops = discovery_ops(store, env);
        if ops.is_empty() {
            return run;
        }
        apply(store, &ops, None, &format!("{at}, run {run}"));
    }
    panic!("{at}: discovery does not converge in 4 runs");
}

/// From `store`, converges; on the way, every run is replayed with each one of its operations
/// failing, followed by a convergence without failures. Returns the converged store and how
/// many operations were applied or failed in all.
fn converge_through_failures(store: Store, env: &[(String, String)], at: &str) -> (Store, usize) {
    let mut store = store;
    let mut judged = 0;
    for run in 0..4 {
        let ops = discovery_ops(&store, env);
        if ops.is_empty() {
            return (store, judged);
        }
        for failing in 0..ops.len() {
            let mut branch = store.clone();
            let where_ = format!("{at}, run {run} with operation {failing} failing");
            apply(&mut branch, &ops, Some(failing), &where_);
            converge(&mut branch, env, &where_);
            judged += ops.len();
        }
        apply(&mut store, &ops, None, &format!("{at}, run {run}"));
        judged += ops.len();
    }
    panic!("{at}: discovery does not converge in 4 runs");
}

fn export_touches_nothing_of_the_boundary(store: &Store, env: &[(String, String)]) {
    let bc = store.binding_context("istio_federation_export").to_string();
    let run = run_hook_with(&["export"], &bc, env, None);
    for op in ndjson(&run.patches) {
        let kind = op["object"]["kind"].as_str().or(op["kind"].as_str());
        assert!(
            kind != Some("AuthorizationPolicy") && kind != Some("ConfigMap"),
            "the export hook wrote {op}"
        );
    }
}

fn set_federations(store: &mut Store, feds: Vec<Value>) {
    // Keep each federation's status as the runs left it.
    let old = store.objects.remove("federations").unwrap_or_default();
    let feds = feds
        .into_iter()
        .map(|mut f| {
            if let Some(prev) = old
                .iter()
                .find(|o| o["metadata"]["name"] == f["metadata"]["name"])
            {
                if let Some(conditions) = prev.pointer("/status/conditions") {
                    f["status"]["conditions"] = conditions.clone();
                }
            }
            f
        })
        .collect();
    store.objects.insert("federations".into(), feds);
}

#[test]
fn policy_precedes_trust_through_every_transition_and_failure() {
    let on = env(&[]);
    let mut judged = 0;
    let mut step = |store: Store, env: &[(String, String)], at: &str| {
        export_touches_nothing_of_the_boundary(&store, env);
        let (s, n) = converge_through_failures(store, env, at);
        judged += n;
        s
    };
    // Two peers appear: their policies first, their roots one run later.
    let mut s = step(initial(), &on, "two peers");
    assert_eq!(
        trusted_domains(&s),
        BTreeSet::from(["b.local".into(), "c.local".into()])
    );
    // A third peer.
    let mut feds = vec![
        federation("b", "b.local", "peer-b-root"),
        federation("c", "c.local", "peer-c-root"),
        federation("d", "d.local", "peer-b-root-2"),
    ];
    set_federations(&mut s, feds.clone());
    s = step(s, &on, "peer d added");
    // An export widened to b.
    s.objects.insert(
        "public_services".into(),
        vec![service("web", None), service("db", Some("c.local,b.local"))],
    );
    s = step(s, &on, "db exported to b too");
    let b = s
        .get(
            "AuthorizationPolicy",
            ISTIO_NS,
            "istio-federation-peer-b.local",
        )
        .expect("b's policy");
    assert_eq!(
        b["spec"]["rules"][0]["when"][0]["notValues"],
        json!([
            "outbound_.80_._.db.prod.svc.my.cluster",
            "outbound_.80_._.web.prod.svc.my.cluster"
        ])
    );
    // c's trust domain changes: c2's policy before c2's root, c's policy after c's root.
    feds[1] = federation("c", "c2.local", "peer-c-root");
    set_federations(&mut s, feds.clone());
    s = step(s, &on, "c moves to c2.local");
    assert!(!trusted_domains(&s).contains("c.local"));
    assert!(!bounded_domains(&s).contains("c.local"));
    // b goes.
    feds.remove(0);
    set_federations(&mut s, feds.clone());
    s = step(s, &on, "b removed");
    assert_eq!(
        bounded_domains(&s),
        BTreeSet::from(["c2.local".into(), "d.local".into()])
    );
    // The check can fail: without c2's policy its trusted root is caught.
    let mut broken = s.clone();
    for list in broken.objects.values_mut() {
        list.retain(|o| o["metadata"]["name"] != "istio-federation-peer-c2.local");
    }
    let caught = std::panic::catch_unwind(|| check(&broken, "control"));
    assert!(
        caught.is_err(),
        "the invariant check misses a trusted root without its policy"
    );
    // Enforcement off: our policies go (the invariant is then the operator's choice).
    let off = env(&[("AUTHORIZATION_POLICIES", "false")]);
    let ops = discovery_ops(&s, &off);
    assert!(ops
        .iter()
        .filter(|op| op["kind"] == "AuthorizationPolicy")
        .all(|op| op["operation"] == "Delete"));
    s.apply(&ops);
    assert!(s.all("AuthorizationPolicy").is_empty());
    // Each run's operations, plus each of them failing in turn with the convergence after it.
    assert!(judged >= 50, "only {judged} operations judged");
    println!("{judged} operations judged");
}
