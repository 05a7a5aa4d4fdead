//! "Exported means reachable" (docs/security.md) on the real platform: the AuthorizationPolicies
//! discovery writes in cluster A for its peer B are accepted by istiod (its `/validate` webhook,
//! asked with an AdmissionReview as the API server would ask it, and its `/debug/configz`), and
//! the inbound RBAC istiod sends the sidecar of an exported and of an unexported Service of A
//! (the xDS client posing as that workload) denies B's principals except on the SNIs exported to
//! B, and leaves local and unfederated principals alone. The RBAC filters are judged with Envoy's
//! documented semantics (rbac.v3: a DENY policy matches when one permission and one principal
//! match; `authenticated.principal_name` is the peer certificate's URI SAN;
//! `requested_server_name` is the connection's SNI), never by reading our generator's output.
// The harness modules serve several suites; not every helper is used here.
#![allow(dead_code)]

#[path = "support/mod.rs"]
mod support;

#[path = "platform/bins.rs"]
mod bins;
#[path = "platform/cluster.rs"]
mod cluster;
#[path = "platform/envoy_rbac.rs"]
mod envoy_rbac;
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
#[path = "platform/rbac.rs"]
mod rbac;

use bins::Bins;
use cluster::Cluster;
use envoy_rbac::{Conn, Verdict};
use procs::wait_for;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const CONVERGE: Duration = Duration::from_secs(180);

/// A's Service no peer may reach: no public-service label.
const UNEXPORTED: &str =
    "apiVersion: v1\nkind: Service\nmetadata: {name: ledger, namespace: prod}\n\
     spec: {selector: {app: ledger}, ports: [{name: tcp-ledger, port: 5432, targetPort: 15432}]}\n";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ours(c: &Cluster) -> Vec<Value> {
    c.kube
        .list("authorizationpolicies.security.istio.io", cluster::ISTIO_NS)
        .into_iter()
        .filter(|o| {
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "istio-federation-hook"
        })
        .collect()
}

/// The policies discovery wrote in A for B, once there is one; every one passes istiod's
/// `/validate`, a broken one does not, and istiod's `/debug/configz` holds each with the spec
/// the API server has.
fn assert_istiod_accepts(a: &Cluster) -> Vec<Value> {
    let policies = wait_for(
        "a: an AuthorizationPolicy written by the hook in istio-system",
        CONVERGE,
        || Some(ours(a)).filter(|l| !l.is_empty()),
        || a.operator_errors(),
    );
    for p in &policies {
        let (allowed, message) = a.validate(p, "CREATE");
        assert!(
            allowed,
            "istiod refuses {}: {message}",
            p["metadata"]["name"]
        );
    }
    let mut bad = policies[0].clone();
    bad["spec"]["rules"] = json!([{"when": [{"key": "connection.sni"}]}]);
    let (allowed, message) = a.validate(&bad, "CREATE");
    assert!(
        !allowed && !message.is_empty(),
        "istiod's /validate accepted {bad}"
    );
    wait_for(
        "a's istiod: the hook's AuthorizationPolicies in /debug/configz",
        Duration::from_secs(60),
        || {
            let configz = a.debug("/debug/configz");
            let listed = configz.as_array().cloned().unwrap_or_default();
            policies
                .iter()
                .all(|p| {
                    listed.iter().any(|c| {
                        c["kind"] == "AuthorizationPolicy"
                            && c["metadata"]["name"] == p["metadata"]["name"]
                            && c["metadata"]["namespace"] == cluster::ISTIO_NS
                            && c["spec"] == p["spec"]
                    })
                })
                .then_some(())
        },
        || format!("{}\n{}", a.istiod.tail(10), a.debug("/debug/configz")),
    );
    policies
}

/// The inbound filter chains istiod sends the sidecar of `app` (namespace prod) for mutual-TLS
/// connections to `port`, once every one of them carries a DENY rule.
fn inbound_chains(a: &Cluster, app: &str, ip: &str, port: u16) -> Vec<Value> {
    wait_for(
        &format!("a's istiod: inbound RBAC for the sidecar of {app} on port {port}"),
        Duration::from_secs(90),
        || {
            let x = a.xds(&[
                "--lds",
                &format!("--labels=app={app}"),
                &format!("--ip={ip}"),
                &format!("--service-account={app}"),
            ]);
            let chains: Vec<Value> = x["inbound"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c["destinationPort"] == port && c["transportProtocol"] == "tls")
                .collect();
            let denying = |c: &Value| {
                c["rbac"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|f| f["config"]["rules"]["action"] == "DENY"))
            };
            (!chains.is_empty() && chains.iter().all(denying)).then_some(chains)
        },
        || {
            let x = a.xds(&[
                "--lds",
                &format!("--labels=app={app}"),
                &format!("--ip={ip}"),
            ]);
            format!("{}\ninbound: {}", a.istiod.tail(10), x["inbound"])
        },
    )
}

fn sni(port: u16, service: &str) -> String {
    format!(
        "outbound_.{port}_._.{service}.prod.svc.{}",
        cluster::A.domain
    )
}

/// Every chain's verdict on `conn` must be `want`.
fn expect(chains: &[Value], what: &str, conn: &Conn, want: Verdict, bad: &mut Vec<String>) {
    for c in chains {
        let got = envoy_rbac::chain_verdict(c, conn);
        if got != want {
            bad.push(format!(
                "{what}: chain {} gives {got:?} to {conn:?}, expected {want:?}",
                c["name"]
            ));
        }
    }
}

#[test]
fn exported_means_reachable_in_istiod_and_the_sidecars_rbac() {
    let bins = Bins::locate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = Cluster::start(&bins, &cluster::A, tmp.path(), repo());
    let b = Cluster::start(&bins, &cluster::B, tmp.path(), repo());
    a.kube.apply(UNEXPORTED);
    a.federate_with(&b);

    assert_istiod_accepts(&a);

    let peer = |sni: Option<String>| Conn {
        principal: Some(format!("spiffe://{}/ns/prod/sa/client", cluster::B.domain)),
        sni,
    };
    let as_who = |td: &str, sni: Option<String>| Conn {
        principal: Some(format!("spiffe://{td}/ns/prod/sa/client")),
        sni,
    };
    let mut bad = Vec::new();
    // The exported Service web (ports 8080 and 9090, targetPort = port).
    for port in [8080, 9090] {
        let chains = inbound_chains(&a, "web", "127.0.0.21", port);
        let what = format!("web:{port}");
        expect(
            &chains,
            &what,
            &peer(Some(sni(port, "web"))),
            Verdict::Allow,
            &mut bad,
        );
        let other = if port == 8080 { 9090 } else { 8080 };
        // The other exported port's SNI is exported too (the mesh-wide policy names SNIs).
        expect(
            &chains,
            &what,
            &peer(Some(sni(other, "web"))),
            Verdict::Allow,
            &mut bad,
        );
        for s in [
            Some(sni(5432, "ledger")),
            Some(sni(port + 1, "web")),
            Some(format!("outbound_.{port}_._.web.prod.svc.cluster.local")),
            None,
        ] {
            expect(&chains, &what, &peer(s), Verdict::Deny, &mut bad);
        }
        for td in [
            cluster::A.domain,
            "cluster.local",
            "cluster-c.local",
            "cluster-b.local.evil",
            "x.cluster-b.local",
        ] {
            for s in [None, Some(sni(5432, "ledger")), Some(sni(port, "web"))] {
                expect(&chains, &what, &as_who(td, s), Verdict::Allow, &mut bad);
            }
        }
    }
    // The unexported Service ledger (port 5432, targetPort 15432: the sidecar sees 15432).
    let chains = inbound_chains(&a, "ledger", "127.0.0.22", 15432);
    for s in [Some(sni(5432, "ledger")), Some(sni(15432, "ledger")), None] {
        expect(&chains, "ledger:15432", &peer(s), Verdict::Deny, &mut bad);
    }
    for td in [cluster::A.domain, "cluster-c.local"] {
        for s in [Some(sni(5432, "ledger")), None] {
            expect(
                &chains,
                "ledger:15432",
                &as_who(td, s),
                Verdict::Allow,
                &mut bad,
            );
        }
    }
    assert!(
        bad.is_empty(),
        "inbound RBAC of A's sidecars:\n{}\nchains of ledger: {}",
        bad.join("\n"),
        Value::Array(chains)
    );
}
