//! Exported means reachable (docs/security.md): the AuthorizationPolicies discovery writes are
//! evaluated with Istio's documented AuthorizationPolicy semantics, for every (caller, service,
//! port) of a scenario, and the verdicts must be exactly the boundary the docs promise:
//! a workload of a federated peer reaches the services exported to that peer on their Service
//! ports and nothing else; local callers, plaintext callers and identities of trust domains
//! that are no peer of ours are untouched.
//!
//! The evaluator below is written from Istio's reference
//! (istio.io/latest/docs/reference/config/security/authorization-policy/ and
//! .../conditions/), not from the product's code: policies of the root namespace without a
//! selector apply to every workload; CUSTOM, then DENY (any match denies), then ALLOW (none:
//! allowed; any match allows; else denied); a rule matches when its `from`, `to` and `when`
//! all match; `from` matches when any source matches, a source when all its fields match, a
//! field when any value matches; `when` when every condition matches, a condition when the
//! attribute is among `values` (if given) and not among `notValues` (if given); a value is an
//! exact string, `prefix*`, `*suffix` or `*` (any non-empty). `principals` need mutual TLS; a
//! plaintext request has none. `connection.sni` is the SNI of the mutual-TLS connection.
//!
//! The expected boundary is computed from the scenario's own description of which service is
//! exported to whom, independently of the product's reading of the Services.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const OWN: &str = "my.cluster";
const ROOT_NS: &str = "istio-system";

/// One of our Services: name, namespace `prod`, Service ports, labelled public or not, and the
/// `export-to` annotation if any.
struct Svc {
    name: &'static str,
    ports: &'static [u16],
    public: bool,
    export_to: Option<&'static str>,
}

impl Svc {
    fn host(&self) -> String {
        format!("{}.prod.svc.{OWN}", self.name)
    }

    /// The scenario's own rule (README, "Choosing what to share"): public and, if annotated,
    /// naming the peer's trust domain (comma separated, any case).
    fn exported_to(&self, td: &str) -> bool {
        self.public
            && self
                .export_to
                .is_none_or(|list| list.split(',').any(|t| t.trim().eq_ignore_ascii_case(td)))
    }

    fn object(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| json!({"name": format!("p{p}"), "port": p, "targetPort": p + 8000}))
            .collect();
        let mut o = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": self.name, "namespace": "prod", "labels": {}},
            "spec": {"ports": ports}});
        if self.public {
            o["metadata"]["labels"] = json!({"federation.istio.deckhouse.io/public-service": ""});
        }
        if let Some(e) = self.export_to {
            o["metadata"]["annotations"] = json!({"federation.istio.deckhouse.io/export-to": e});
        }
        o
    }
}

fn federation(name: &str, td: &str) -> Value {
    json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation",
        "metadata": {"name": name},
        "spec": {"trustDomain": td, "metadataEndpoint": format!("https://ingress.{td}/metadata/")}})
}

fn mesh_config() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": "rootNamespace: istio-system\n"}})
}

fn binding_context(services: &[Svc], peers: &[(&str, &str)], policies: &[Value]) -> String {
    let svcs: Vec<Value> = services.iter().map(Svc::object).collect();
    let feds: Vec<Value> = peers.iter().map(|(n, td)| federation(n, td)).collect();
    let cm = mesh_config();
    let snaps = json!({
        "federations": snapshot_items(feds.iter().collect()),
        "authn_keypair": [],
        "trust_bundle": snapshot_items(vec![&cm]),
        "local_root_ca": [],
        "service_entries": [],
        "destination_rules": [],
        "authorization_policies": snapshot_items(policies.iter().collect()),
        "public_services": snapshot_items(svcs.iter().collect()),
    });
    json!([{"binding": "federations", "type": "Group", "groupName": "istio_federation", "snapshots": snaps}]).to_string()
}

fn env() -> Vec<(String, String)> {
    [
        ("ISTIO_FEDERATION_ENABLED", "true"),
        ("CLUSTER_DOMAIN", OWN),
        ("CLUSTER_UUID", "uuid-own"),
        ("ISTIO_NAMESPACE", ROOT_NS),
        ("FEDERATION_NAMESPACE", "istio-federation"),
        ("ISTIO_FEDERATION_HOOK_OFFLINE", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The AuthorizationPolicies one run writes, after checking every operation.
fn written_policies(services: &[Svc], peers: &[(&str, &str)]) -> Vec<Value> {
    let run = run_hook(&binding_context(services, peers, &[]), &env(), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ops = ndjson(&run.patches);
    let problems = check_operations(&ops);
    assert!(problems.is_empty(), "{problems:#?}");
    ops.iter()
        .filter(|op| op["object"]["kind"] == "AuthorizationPolicy")
        .map(|op| op["object"].clone())
        .collect()
}

// ---- Istio's documented semantics ----

/// A request as the destination workload's sidecar sees it.
struct Request<'a> {
    /// Namespace of the destination workload.
    namespace: &'a str,
    /// The peer certificate's SPIFFE identity without `spiffe://`; `None` for plaintext.
    principal: Option<&'a str>,
    /// The TLS SNI (`None`: no SNI sent).
    sni: Option<&'a str>,
}

fn glob(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return !value.is_empty();
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return value.starts_with(prefix);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return value.ends_with(suffix);
    }
    pattern == value
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn source_matches(source: &Value, r: &Request) -> bool {
    let obj = source.as_object().expect("source object");
    obj.iter().all(|(field, values)| match field.as_str() {
        "principals" => r
            .principal
            .is_some_and(|p| strings(values).iter().any(|g| glob(g, p))),
        "notPrincipals" => r
            .principal
            .is_none_or(|p| !strings(values).iter().any(|g| glob(g, p))),
        other => panic!("the evaluator does not model source.{other}"),
    })
}

fn attribute<'a>(key: &str, r: &'a Request) -> &'a str {
    match key {
        "connection.sni" => r.sni.unwrap_or(""),
        "source.principal" => r.principal.unwrap_or(""),
        other => panic!("the evaluator does not model condition key {other}"),
    }
}

fn condition_matches(c: &Value, r: &Request) -> bool {
    let value = attribute(c["key"].as_str().expect("key"), r);
    let values = c.get("values").map(strings);
    let not_values = c.get("notValues").map(strings);
    assert!(
        values.is_some() || not_values.is_some(),
        "a condition needs values or notValues"
    );
    values.is_none_or(|vs| vs.iter().any(|g| glob(g, value)))
        && not_values.is_none_or(|vs| !vs.iter().any(|g| glob(g, value)))
}

fn rule_matches(rule: &Value, r: &Request) -> bool {
    assert!(
        rule.get("to").is_none(),
        "the evaluator does not model `to`"
    );
    let from = rule.get("from").and_then(Value::as_array);
    let when = rule.get("when").and_then(Value::as_array);
    from.is_none_or(|f| f.iter().any(|s| source_matches(&s["source"], r)))
        && when.is_none_or(|w| w.iter().all(|c| condition_matches(c, r)))
}

/// Whether the policy applies to a workload in `r.namespace` (no selector in the root
/// namespace: every workload; in the workload's namespace: when it has no selector).
fn applies(p: &Value, r: &Request) -> bool {
    let ns = p["metadata"]["namespace"].as_str().unwrap_or("");
    let spec = &p["spec"];
    assert!(spec.get("targetRef").is_none() && spec.get("targetRefs").is_none());
    spec.get("selector").is_none() && (ns == ROOT_NS || ns == r.namespace)
}

fn matches(p: &Value, r: &Request) -> bool {
    // A policy without rules matches nothing (for DENY); with rules, any rule.
    p["spec"]["rules"]
        .as_array()
        .is_some_and(|rules| rules.iter().any(|rule| rule_matches(rule, r)))
}

/// Istio's verdict on the request: true = allowed.
fn allowed(policies: &[Value], r: &Request) -> bool {
    let scoped: Vec<&Value> = policies.iter().filter(|p| applies(p, r)).collect();
    let action = |p: &&Value| p["spec"]["action"].as_str().unwrap_or("ALLOW").to_string();
    assert!(
        scoped.iter().all(|p| action(p) != "CUSTOM"),
        "no CUSTOM policy expected"
    );
    if scoped
        .iter()
        .filter(|p| action(p) == "DENY")
        .any(|p| matches(p, r))
    {
        return false;
    }
    let allows: Vec<&&Value> = scoped.iter().filter(|p| action(p) == "ALLOW").collect();
    allows.is_empty() || allows.iter().any(|p| matches(p, r))
}

// ---- the scenarios ----

fn callers(peers: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = peers
        .iter()
        .map(|(_, td)| (td.to_string(), Some(format!("{td}/ns/client/sa/app"))))
        .collect();
    for td in [
        OWN,
        "cluster.local",
        "stranger.example",
        // Look-alikes of a peer's domain that are not it.
        "x.b.local",
        "b.local.evil",
        "b.localx",
    ] {
        out.push((td.to_string(), Some(format!("{td}/ns/client/sa/app"))));
    }
    out.push(("plaintext".to_string(), None));
    out
}

/// Checks every (caller, service, port) pair, plus an unpublished port and a missing SNI, and
/// returns how many requests were judged.
fn assert_boundary(services: &[Svc], peers: &[(&str, &str)]) -> usize {
    let policies = written_policies(services, peers);
    let peer_tds: BTreeSet<&str> = peers.iter().map(|(_, td)| *td).collect();
    let mut judged = 0;
    let mut wrong = Vec::new();
    for (td, principal) in callers(peers) {
        let is_peer = peer_tds.contains(td.as_str());
        for svc in services {
            let ports = svc.ports.iter().map(|p| Some(*p)).chain([Some(9999), None]);
            for port in ports {
                let sni = port.map(|p| format!("outbound_.{p}_._.{}", svc.host()));
                let r = Request {
                    namespace: "prod",
                    principal: principal.as_deref(),
                    sni: sni.as_deref(),
                };
                let published = port.is_some_and(|p| svc.ports.contains(&p));
                let want = !is_peer || (svc.exported_to(&td) && published);
                judged += 1;
                if allowed(&policies, &r) != want {
                    wrong.push(format!(
                        "{} -> {}:{port:?}: want {}",
                        principal.as_deref().unwrap_or("plaintext"),
                        svc.host(),
                        if want { "allowed" } else { "denied" }
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong verdicts:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    judged
}

fn services() -> Vec<Svc> {
    vec![
        Svc {
            name: "web",
            ports: &[80, 443],
            public: true,
            export_to: None,
        },
        Svc {
            name: "db",
            ports: &[5432],
            public: true,
            export_to: Some("c.local"),
        },
        Svc {
            name: "pay",
            ports: &[8443, 9443],
            public: true,
            export_to: Some(" B.local , c.local"),
        },
        Svc {
            name: "internal",
            ports: &[80],
            public: false,
            export_to: None,
        },
        Svc {
            name: "nobody",
            ports: &[80],
            public: true,
            export_to: Some(""),
        },
        Svc {
            name: "unknown-peer",
            ports: &[80],
            public: true,
            export_to: Some("z.local"),
        },
    ]
}

#[test]
fn peers_reach_exactly_what_is_exported_to_them() {
    let peers = [("b", "b.local"), ("c", "c.local"), ("d", "d.local")];
    let judged = assert_boundary(&services(), &peers);
    // 10 callers × (8 Service ports + 6 services × (an unpublished port + no SNI)).
    assert_eq!(judged, 10 * (8 + 6 * 2));
}

#[test]
fn a_peer_with_nothing_exported_reaches_nothing() {
    let services = [
        Svc {
            name: "db",
            ports: &[5432],
            public: true,
            export_to: Some("c.local"),
        },
        Svc {
            name: "internal",
            ports: &[80],
            public: false,
            export_to: None,
        },
    ];
    let peers = [("c", "c.local"), ("d", "d.local")];
    assert_boundary(&services, &peers);
    let policies = written_policies(&services, &peers);
    let d = policies
        .iter()
        .find(|p| p["metadata"]["name"] == "istio-federation-peer-d.local")
        .expect("d.local's policy");
    assert_eq!(
        d["spec"],
        json!({"action": "DENY", "rules": [{"from": [{"source": {"principals": ["d.local/*"]}}]}]})
    );
}

#[test]
fn the_evaluator_follows_istios_documented_order_and_globs() {
    // The evaluator itself, on hand-written policies (not the product's).
    let deny = json!({"metadata": {"namespace": ROOT_NS}, "spec": {"action": "DENY",
        "rules": [{"from": [{"source": {"principals": ["b.local/*"]}}],
                   "when": [{"key": "connection.sni", "notValues": ["outbound_.80_._.web"]}]}]}});
    let allow_only_x = json!({"metadata": {"namespace": "prod"}, "spec": {"action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": ["*/sa/x"]}}]}]}});
    let req = |p: Option<&'static str>, sni: Option<&'static str>| Request {
        namespace: "prod",
        principal: p,
        sni,
    };
    let ok = Some("outbound_.80_._.web");
    assert!(allowed(
        std::slice::from_ref(&deny),
        &req(Some("b.local/ns/a/sa/y"), ok)
    ));
    assert!(!allowed(
        std::slice::from_ref(&deny),
        &req(Some("b.local/ns/a/sa/y"), Some("outbound_.81_._.web"))
    ));
    assert!(!allowed(
        std::slice::from_ref(&deny),
        &req(Some("b.local/ns/a/sa/y"), None)
    ));
    assert!(allowed(
        std::slice::from_ref(&deny),
        &req(Some("b.localx/ns/a/sa/y"), None)
    ));
    assert!(allowed(std::slice::from_ref(&deny), &req(None, None)));
    // DENY wins over ALLOW; with an ALLOW policy, what it does not match is denied.
    assert!(!allowed(
        &[deny.clone(), allow_only_x.clone()],
        &req(Some("b.local/ns/a/sa/x"), None)
    ));
    assert!(allowed(
        &[deny.clone(), allow_only_x.clone()],
        &req(Some("b.local/ns/a/sa/x"), ok)
    ));
    assert!(!allowed(
        std::slice::from_ref(&allow_only_x),
        &req(Some("c.local/ns/a/sa/y"), ok)
    ));
    // A policy of another namespace does not apply.
    let mut elsewhere = deny.clone();
    elsewhere["metadata"]["namespace"] = json!("other");
    assert!(allowed(&[elsewhere], &req(Some("b.local/ns/a/sa/y"), None)));
}
