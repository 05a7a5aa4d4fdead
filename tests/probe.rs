//! The data-plane probe (docs/operating.md, "Data-plane probe") end to end through the real binary:
//! a loopback HTTPS peer serves the metadata, and a tiny loopback HTTP/1.1 proxy stands in for the
//! sidecar (`HTTP_PROXY`). The proxy receives the absolute-form request and answers it itself, so
//! the peer's health-check host is never resolved and nothing leaves loopback.

mod common;
mod support;

use common::{ndjson, run_hook, run_hook_with, Store};
use istio_federation_hook::discovery::network::probe::{self, ProbeResult};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::pki::{Ca, SigningKeys};
use support::proxy::{Answer, Proxy};
use support::server::Route;
use support::{Peer, OWN_DOMAIN, OWN_UUID};

const HEALTHCHECK: &str = "alliance-healthcheck-uuid-cluster-b.d8-istio.svc.b.local";

/// A peer publishing `hosts` (port http/80 each) behind one gateway.
fn peer_publishing(ca: &Ca, own_keys: &SigningKeys, hosts: &[&str]) -> Peer {
    let peer = Peer::start(ca, "uuid-cluster-b", "b.local", own_keys);
    let services: Vec<Value> = hosts
        .iter()
        .map(|h| json!({"hostname": h, "ports": [{"name": "http", "port": 80}]}))
        .collect();
    let private = json!({"ingressGateways": [{"address": "198.51.100.7", "port": 15443}],
        "publicServices": services});
    peer.serve_private(Route::ok(private.to_string()), own_keys);
    peer
}

fn cluster(peer: &Peer, ca: &Ca, own_keys: &SigningKeys) -> Store {
    Store::one_peer(&common::OnePeer {
        trust_domain: &peer.trust_domain,
        endpoint: &peer.endpoint(),
        endpoint_ca_pem: &ca.cert_pem,
        private_pem: &own_keys.private_pem,
        public_pem: &own_keys.public_pem,
    })
}

fn env(proxy: &Proxy, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("ISTIO_FEDERATION_ENABLED", "true"),
        ("CLUSTER_DOMAIN", OWN_DOMAIN),
        ("CLUSTER_UUID", OWN_UUID),
        ("FETCH_DEADLINE", "10s"),
        ("DATAPLANE_PROBE", "true"),
    ];
    env.extend_from_slice(extra);
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("HTTP_PROXY".into(), proxy.url()));
    env
}

struct Outcome {
    ops: Vec<Value>,
    metrics: Vec<Value>,
    stderr: String,
    took: Duration,
}

fn run(store: &Store, env: &[(String, String)]) -> Outcome {
    let started = Instant::now();
    let r = run_hook(
        &store.binding_context("refresh_remote_metadata").to_string(),
        env,
        None,
    );
    let took = started.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    Outcome {
        ops: ndjson(&r.patches),
        metrics: ndjson(&r.metrics),
        stderr: r.stderr,
        took,
    }
}

fn dataplane(ops: &[Value]) -> Option<Value> {
    ops.iter()
        .filter(|o| o["operation"] == "MergePatch")
        .find_map(|o| {
            o["mergePatch"]["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "DataplaneConnectionReady")
                .cloned()
        })
}

fn gauge(metrics: &[Value]) -> Option<(f64, Value)> {
    metrics
        .iter()
        .find(|m| m["action"] == "set" && m["name"] == "d8_istio_alliance_dataplane_health_check")
        .map(|m| (m["value"].as_f64().unwrap_or(-1.0), m["labels"].clone()))
}

fn deletes(ops: &[Value]) -> usize {
    ops.iter().filter(|o| o["operation"] == "Delete").count()
}

#[test]
fn a_healthy_peer_is_true_and_a_503_is_false_and_nothing_is_removed() {
    let ca = Ca::new("metadata endpoint CA");
    let own_keys = SigningKeys::generate();
    let peer = peer_publishing(&ca, &own_keys, &["web.prod.svc.b.local", HEALTHCHECK]);
    let proxy = Proxy::start(Answer::Status(200));
    let mut store = cluster(&peer, &ca, &own_keys);
    let env = env(&proxy, &[]);

    // Run 1: both hosts imported; the health check has no ServiceEntry before this run, so it
    // is not probed yet (the request could only fail, or leave the mesh by another route).
    let out = run(&store, &env);
    let imported = out
        .ops
        .iter()
        .filter(|o| o["object"]["kind"] == "ServiceEntry")
        .count();
    assert_eq!(imported, 2, "both hosts are imported");
    assert!(
        proxy.seen().is_empty(),
        "probed before its ServiceEntry existed: {:?}",
        proxy.seen()
    );
    assert_eq!(dataplane(&out.ops), None);
    assert!(
        out.stderr.contains("has no ServiceEntry yet"),
        "{}",
        out.stderr
    );
    store.apply(&out.ops);

    // Run 2: imported, and the probe through the "sidecar" answers 200.
    let out = run(&store, &env);
    let c = dataplane(&out.ops).unwrap_or_else(|| panic!("{:?}\n{}", out.ops, out.stderr));
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&json!("True"), &json!("Succeeded")),
        "{c}"
    );
    assert_eq!(
        c["message"],
        format!("GET http://{HEALTHCHECK}:80/healthz through the mesh answered 200")
    );
    let (value, labels) = gauge(&out.metrics).expect("the gauge");
    assert_eq!(value, 1.0);
    assert_eq!(
        labels,
        json!({"alliance_kind": "IstioFederation", "name": "cluster-b", "remote_cluster_uuid": "uuid-cluster-b"})
    );
    // Deckhouse's request, in absolute form through the proxy (port 80 is the default one,
    // so neither the request line nor Host names it).
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].line,
        format!("GET http://{HEALTHCHECK}/healthz HTTP/1.1")
    );
    assert_eq!(
        seen[0].header("user-agent"),
        Some("alliance-healthcheck/1.0")
    );
    assert_eq!(
        seen[0].header("x-alliance-healthcheck-from"),
        Some(OWN_UUID)
    );
    assert_eq!(seen[0].header("host"), Some(HEALTHCHECK));
    store.apply(&out.ops);

    // Run 3: nothing changed, nothing written (the condition carries no timing).
    let out = run(&store, &env);
    assert!(out.ops.is_empty(), "{:?}", out.ops);
    assert_eq!(gauge(&out.metrics).map(|g| g.0), Some(1.0));

    // Run 4: the peer's health check answers 503: False, gauge 0, nothing removed.
    proxy.set(Answer::Status(503));
    let out = run(&store, &env);
    assert_eq!(out.ops.len(), 1, "only the status patch: {:?}", out.ops);
    let c = dataplane(&out.ops).expect("the condition");
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&json!("False"), &json!("ProbeFailed"))
    );
    assert_eq!(
        c["message"],
        format!("GET http://{HEALTHCHECK}:80/healthz: unexpected status code: 503")
    );
    assert_eq!(gauge(&out.metrics).map(|g| g.0), Some(0.0));
    assert!(
        out.stderr.contains("unexpected status code: 503"),
        "{}",
        out.stderr
    );
    assert_eq!(deletes(&out.ops), 0);
    store.apply(&out.ops);
    assert_eq!(store.all("ServiceEntry").len(), 2);
    assert_eq!(store.all("DestinationRule").len(), 2);

    // Run 5: still failing: the same condition, no status churn.
    let out = run(&store, &env);
    assert!(out.ops.is_empty(), "{:?}", out.ops);

    // Probe off: the condition is someone else's and left as it is; no gauge, no request.
    let before = proxy.seen().len();
    let off: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k != "DATAPLANE_PROBE")
        .cloned()
        .collect();
    let out = run(&store, &off);
    assert!(out.ops.is_empty(), "{:?}", out.ops);
    assert_eq!(gauge(&out.metrics), None);
    assert_eq!(proxy.seen().len(), before);

    // plan never probes: it is offline.
    let r = run_hook_with(
        &["plan", "--output", "json"],
        &store.binding_context("refresh_remote_metadata").to_string(),
        &env,
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(proxy.seen().len(), before, "plan sent a probe");
    let plan: Value = serde_json::from_str(&r.stdout).expect("plan json");
    assert_eq!(plan["operations"], json!([]), "{plan}");
}

#[test]
fn a_peer_without_a_health_check_service_is_a_configuration_error() {
    let ca = Ca::new("metadata endpoint CA");
    let own_keys = SigningKeys::generate();
    let peer = peer_publishing(&ca, &own_keys, &["web.prod.svc.b.local"]);
    let proxy = Proxy::start(Answer::Status(200));
    let out = run(&cluster(&peer, &ca, &own_keys), &env(&proxy, &[]));
    let c = dataplane(&out.ops).expect("the condition");
    assert_eq!(
        (&c["status"], &c["reason"], &c["message"]),
        (
            &json!("False"),
            &json!("ConfigurationError"),
            &json!("alliance-healthcheck service not found in remote public services")
        )
    );
    assert_eq!(gauge(&out.metrics).map(|g| g.0), Some(0.0));
    assert!(
        proxy.seen().is_empty(),
        "nothing to probe: {:?}",
        proxy.seen()
    );
    assert_eq!(deletes(&out.ops), 0);
}

#[test]
fn a_proxy_that_never_answers_is_bounded_by_the_timeout_and_the_deadline() {
    let ca = Ca::new("metadata endpoint CA");
    let own_keys = SigningKeys::generate();
    let peer = peer_publishing(&ca, &own_keys, &["web.prod.svc.b.local", HEALTHCHECK]);
    let proxy = Proxy::start(Answer::Never);
    let mut store = cluster(&peer, &ca, &own_keys);
    // The first run imports the health check; only then is it probed.
    let first = run(&store, &env(&proxy, &[]));
    store.apply(&first.ops);
    assert!(proxy.seen().is_empty());

    // The probe's own 5 s timeout, well inside FETCH_DEADLINE=10s.
    let out = run(&store, &env(&proxy, &[]));
    let c = dataplane(&out.ops).expect("the condition");
    assert_eq!(c["reason"], "ProbeFailed");
    assert_eq!(
        c["message"],
        format!("GET http://{HEALTHCHECK}:80/healthz: request failed: no answer within 5 s (or FETCH_DEADLINE)")
    );
    assert_eq!(gauge(&out.metrics).map(|g| g.0), Some(0.0));
    eprintln!(
        "never-answering proxy, FETCH_DEADLINE=10s: run took {:?}",
        out.took
    );
    assert!(out.took >= Duration::from_secs(5), "{:?}", out.took);
    assert!(out.took < Duration::from_secs(8), "{:?}", out.took);
    // What the fetches left of a 2 s FETCH_DEADLINE (counted from the run's start) bounds it.
    let out = run(&store, &env(&proxy, &[("FETCH_DEADLINE", "2s")]));
    assert_eq!(
        dataplane(&out.ops).expect("the condition")["reason"],
        "ProbeFailed"
    );
    eprintln!(
        "never-answering proxy, FETCH_DEADLINE=2s: run took {:?}",
        out.took
    );
    assert!(out.took < Duration::from_millis(3500), "{:?}", out.took);
    assert!(!proxy.seen().is_empty());
}

/// The probe's client takes its proxy from `HTTP_PROXY` and honours `NO_PROXY`, as the
/// metadata fetches do. The only test here that changes the process environment (the others
/// run the binary with an environment of their own); the URLs are loopback addresses, so the
/// direct path resolves nothing either.
#[test]
fn http_proxy_and_no_proxy_are_honoured() {
    let proxy = Proxy::start(Answer::Status(503));
    let direct = Proxy::start(Answer::Status(200));
    let url = format!("http://{}/healthz", direct.addr);
    let jobs = [("b".to_string(), url)];
    let deadline = || Instant::now() + Duration::from_secs(5);
    std::env::set_var("HTTP_PROXY", proxy.url());
    std::env::remove_var("http_proxy");
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("no_proxy");
    // Through the proxy, which refuses what is not the probe's request with 400.
    let via_proxy = probe::probe_all(&jobs, OWN_UUID, deadline());
    assert_eq!(
        via_proxy["b"],
        ProbeResult::Failed("unexpected status code: 400".into())
    );
    assert_eq!(proxy.seen().len(), 1);
    assert!(proxy.seen()[0].line.starts_with("GET http://127.0.0.1:"));
    // NO_PROXY naming the host: straight to it, which answers the origin-form request…
    std::env::set_var("NO_PROXY", "127.0.0.1");
    let direct_result = probe::probe_all(&jobs, OWN_UUID, deadline());
    std::env::remove_var("NO_PROXY");
    std::env::remove_var("HTTP_PROXY");
    assert_eq!(proxy.seen().len(), 1, "NO_PROXY ignored");
    let seen = direct.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line, "GET /healthz HTTP/1.1");
    assert_eq!(
        seen[0].header("user-agent"),
        Some("alliance-healthcheck/1.0")
    );
    // …with 400 too, since only an absolute-form probe gets its 200 from the stand-in.
    assert_eq!(
        direct_result["b"],
        ProbeResult::Failed("unexpected status code: 400".into())
    );
}
