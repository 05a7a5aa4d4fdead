//! The real platform (README, "Tested with"): the manifests in `deploy/`, both hooks and
//! `serve` against kube-apiserver + etcd, shell-operator and istiod, each built from its Go
//! module at the version pinned in tests/platform/versions.env (tests/platform/build.sh; `make
//! test` runs it first and passes `PLATFORM_BIN_DIR`). Everything runs on loopback. Every
//! assertion reads the API server or istiod, never the hooks' own output files. A component
//! that is not built fails the test with the command that builds it.

#[path = "support/mod.rs"]
mod support;

#[path = "platform/bins.rs"]
mod bins;
#[path = "platform/http.rs"]
mod http;
#[path = "platform/kube.rs"]
mod kube;
#[path = "platform/manifests.rs"]
mod manifests;
#[path = "platform/procs.rs"]
mod procs;
#[path = "platform/rbac.rs"]
mod rbac;

use bins::Bins;
use kube::Kube;
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Scenario 8, the manifests we ship: `deploy/` (the base, and the example overlay as a dry
/// run) applied to a real API server with Istio's CRDs, then every informer request and every
/// kind of write the hooks make, as the ServiceAccount `deploy/` creates with exactly the RBAC
/// it grants. A permission taken away fails here with the API server's message.
#[test]
fn shipped_manifests_apply_and_grant_what_the_hooks_do() {
    let bins = Bins::locate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let k = Kube::start(&bins, "manifests", tmp.path());
    manifests::install_crds(&k, &bins);
    manifests::istio_install(&k, "istio-system", "cluster-a.local", None, None);

    let base = manifests::render(&repo().join("deploy"));
    manifests::apply_rendered(&k, &base);
    let overlay = manifests::render(&repo().join("deploy/overlays/example"));
    // A dry run does not create the overlay's namespace, so the objects in it need it to exist.
    k.ok(&["create", "namespace", "mesh-federation"], None);
    k.ok(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        Some(&overlay),
    );

    let env = manifests::hook_env(&k, "istio-federation");
    let sa = k.kubeconfig_for(
        "hook.kubeconfig",
        &k.token("istio-federation", "istio-federation-hook"),
    );
    let mut refused = rbac::informer_refusals(&k, &sa, &env);
    refused.extend(rbac::write_refusals(&k, &sa, &env));
    assert!(
        refused.is_empty(),
        "the API server refuses the hooks' ServiceAccount:\n{}",
        refused.join("\n")
    );
}

#[path = "platform/cluster.rs"]
mod cluster;
#[path = "platform/kubelet.rs"]
mod kubelet;

use cluster::Cluster;
use procs::wait_for;
use serde_json::{json, Value};
use std::time::Duration;

/// Convergence bound: the schedule runs every 4 s; a first exchange takes two runs per side.
const CONVERGE: Duration = Duration::from_secs(180);

fn explain(c: &Cluster) -> String {
    format!(
        "{}: shell-operator errors:\n{}\nkube-apiserver:\n{}",
        c.spec.name,
        c.operator_errors(),
        c.kube.log_tail()
    )
}

fn imported_host(from: &Cluster) -> String {
    format!("{}.prod.svc.{}", from.spec.exported, from.spec.domain)
}

/// The ServiceEntry importing `peer`'s exported service, once it points at `peer`'s gateway.
fn service_entry_for(c: &Cluster, peer: &Cluster) -> Option<Value> {
    let host = imported_host(peer);
    c.service_entries().into_iter().find(|se| {
        se["spec"]["hosts"] == json!([host])
            && se["spec"]["endpoints"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["address"] == peer.spec.gateway_ip))
    })
}

/// Whether `c`'s trust bundle (the object its mode writes) holds `peer`'s root.
fn trusts(c: &Cluster, peer: &Cluster) -> bool {
    match c.spec.install {
        cluster::Install::Base => {
            let Some(cm) = c.kube.get("configmap", cluster::ISTIO_NS, "istio") else {
                return false;
            };
            let mesh: Value = serde_saphyr::from_str(cm["data"]["mesh"].as_str().unwrap_or(""))
                .unwrap_or(Value::Null);
            mesh["caCertificates"].as_array().is_some_and(|l| {
                l.iter().any(|e| {
                    e["pem"].as_str().map(str::trim) == Some(peer.root.cert_pem.trim())
                        && e["trustDomains"] == json!([peer.spec.domain])
                })
            })
        }
        cluster::Install::ExampleOverlayCacerts => {
            let Some(s) = c.kube.get("secret", cluster::ISTIO_NS, "cacerts") else {
                return false;
            };
            let bundle = b64(&s["data"]["root-cert.pem"]);
            bundle.starts_with(c.root.cert_pem.trim()) && bundle.contains(peer.root.cert_pem.trim())
        }
    }
}

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or(""))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Scenario 1's assertions for the direction `peer` → `c`.
fn assert_imported(c: &Cluster, peer: &Cluster) {
    let host = imported_host(peer);
    let se = wait_for(
        &format!(
            "{}: a ServiceEntry for {host} at {}'s gateway",
            c.spec.name, peer.spec.name
        ),
        CONVERGE,
        || service_entry_for(c, peer),
        || explain(c),
    );
    assert_eq!(
        se["spec"]["endpoints"],
        json!([{"address": peer.spec.gateway_ip, "ports": {"http": 15443, "grpc-api": 15443},
                "labels": {"security.istio.io/tlsMode": "istio"}}]),
        "{}: {se}",
        c.spec.name
    );
    wait_for(
        &format!(
            "{}: a DestinationRule for {host} with ISTIO_MUTUAL",
            c.spec.name
        ),
        CONVERGE,
        || {
            c.destination_rules().into_iter().find(|dr| {
                dr["spec"]["host"] == host.as_str()
                    && dr["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
            })
        },
        || explain(c),
    );
    wait_for(
        &format!(
            "{}: {}'s root in the trust bundle, bound to {}",
            c.spec.name, peer.spec.name, peer.spec.domain
        ),
        CONVERGE,
        || trusts(c, peer).then_some(()),
        || explain(c),
    );
    // istiod's registry and endpoint shards: the host, at the peer's gateway.
    wait_for(
        &format!(
            "{}'s istiod: {host} in /debug/registryz and at {}:15443 in /debug/endpointShardz",
            c.spec.name, peer.spec.gateway_ip
        ),
        Duration::from_secs(60),
        || {
            let reg = c.debug("/debug/registryz").to_string();
            let shards = c.debug("/debug/endpointShardz");
            let ours = shards
                .get(host.as_str())
                .map(Value::to_string)
                .unwrap_or_default();
            (reg.contains(&format!("\"hostname\":\"{host}\""))
                && ours.contains(&format!("\"{}\"", peer.spec.gateway_ip))
                && ours.contains("15443"))
            .then_some(())
        },
        || {
            format!(
                "{}\n{}",
                c.istiod.tail(15),
                c.debug("/debug/endpointShardz")
            )
        },
    );
    // What a sidecar receives: an outbound cluster per port, Istio mutual TLS, Istio's SNI,
    // and the peer's gateway as its endpoint.
    let xds = wait_for(
        &format!(
            "{}'s istiod: outbound clusters for {host} over xDS",
            c.spec.name
        ),
        Duration::from_secs(60),
        || {
            let x = c.xds(&[]);
            let name = format!("outbound|8080||{host}");
            x["endpoints"][&name]
                .as_array()
                .is_some_and(|e| !e.is_empty())
                .then_some(x)
        },
        || c.istiod.tail(15),
    );
    for port in [8080, 9090] {
        let name = format!("outbound|{port}||{host}");
        let cl = xds["clusters"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["name"] == name.as_str()))
            .unwrap_or_else(|| panic!("{}: no xDS cluster {name}: {xds}", c.spec.name));
        assert_eq!(cl["sni"], format!("outbound_.{port}_._.{host}"), "{cl}");
        assert_eq!(cl["istioMutual"], true, "{cl}");
        assert_eq!(
            xds["endpoints"][&name],
            json!([{"address": peer.spec.gateway_ip, "port": 15443}]),
            "{}: {name}",
            c.spec.name
        );
    }
}

/// Scenario 1's trust assertion on istiod: the proxies' trust bundle (PCDS) carries the peer root.
fn assert_istiod_trusts(c: &Cluster, peer: &Cluster) {
    wait_for(
        &format!(
            "{}'s istiod: {}'s root in the proxies' trust bundle (PCDS)",
            c.spec.name, peer.spec.name
        ),
        Duration::from_secs(90),
        || {
            let x = c.xds(&[]);
            x["trustBundle"]
                .as_array()
                .is_some_and(|l| {
                    l.iter().any(|p| {
                        p.as_str()
                            .is_some_and(|p| p.contains(peer.root.cert_pem.trim()))
                    })
                })
                .then_some(())
        },
        || c.istiod.tail(20),
    );
}

/// Scenario 2: every object the hooks wrote into `c` passes istiod's own validation webhook
/// (an AdmissionReview, as the API server would send it, to `/validate`) and, written through
/// the API server, its CRD validation (schema and CEL rules); a dry-run update of each passes
/// again. A known-bad ServiceEntry is refused, so the webhook is really judging.
fn assert_istiod_validates(c: &Cluster) {
    let mut objects = Vec::new();
    for r in [
        "serviceentries.networking.istio.io",
        "destinationrules.networking.istio.io",
    ] {
        objects.extend(c.kube.list(r, c.spec.fed_ns));
    }
    objects.extend(
        c.kube
            .list("authorizationpolicies.security.istio.io", cluster::ISTIO_NS)
            .into_iter()
            .filter(|o| {
                o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "istio-federation-hook"
            }),
    );
    assert!(objects.len() >= 2, "{}: nothing to validate", c.spec.name);
    for o in &objects {
        let (allowed, message) = c.validate(o, "CREATE");
        assert!(
            allowed,
            "{}: istiod refuses {} {}: {message}",
            c.spec.name, o["kind"], o["metadata"]["name"]
        );
        let mut again = o.clone();
        for k in [
            "resourceVersion",
            "managedFields",
            "creationTimestamp",
            "generation",
            "uid",
        ] {
            again["metadata"].as_object_mut().map(|m| m.remove(k));
        }
        c.kube.ok(
            &["replace", "--dry-run=server", "-f", "-"],
            Some(&again.to_string()),
        );
    }
    let mut bad = objects[0].clone();
    if bad["kind"] == "ServiceEntry" {
        bad["spec"]["hosts"] = json!([]);
    } else {
        bad["spec"]["host"] = json!("");
    }
    let (allowed, message) = c.validate(&bad, "CREATE");
    assert!(
        !allowed && !message.is_empty(),
        "{}: istiod's /validate accepted {bad}",
        c.spec.name
    );
}

/// resourceVersion of every object the hooks write in `c` (name → version).
fn written(c: &Cluster) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut add = |o: &Value| {
        out.insert(
            format!(
                "{}/{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            ),
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    };
    for r in [
        "serviceentries.networking.istio.io",
        "destinationrules.networking.istio.io",
    ] {
        c.kube.list(r, c.spec.fed_ns).iter().for_each(&mut add);
    }
    c.kube
        .list("authorizationpolicies.security.istio.io", cluster::ISTIO_NS)
        .iter()
        .for_each(&mut add);
    c.kube
        .list("istiofederations.deckhouse.io", "")
        .iter()
        .for_each(&mut add);
    for (kind, ns, name) in [
        ("configmap", cluster::ISTIO_NS, "istio"),
        ("secret", cluster::ISTIO_NS, "cacerts"),
        ("secret", c.spec.fed_ns, "d8-remote-authn-keypair"),
        ("secret", c.spec.fed_ns, "istio-federation-metadata"),
    ] {
        if let Some(o) = c.kube.get(kind, ns, name) {
            add(&o);
        }
    }
    out
}

/// Scenario 3: after convergence, several scheduled runs of both hooks write nothing.
fn assert_zero_churn(clusters: &[&Cluster]) {
    let before: Vec<_> = clusters.iter().map(|c| written(c)).collect();
    let runs: Vec<_> = clusters.iter().map(|c| c.runs()).collect();
    for (c, r) in clusters.iter().zip(&runs) {
        wait_for(
            &format!("{}: three more scheduled runs of both hooks", c.spec.name),
            Duration::from_secs(90),
            || {
                let now = c.runs();
                (now.0 >= r.0 + 3 && now.1 >= r.1 + 3).then_some(())
            },
            || explain(c),
        );
    }
    for (c, b) in clusters.iter().zip(&before) {
        let after = written(c);
        let changed: Vec<String> = after
            .iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| {
                format!(
                    "{k}: {} -> {v}",
                    b.get(k).map(String::as_str).unwrap_or("(new)")
                )
            })
            .chain(
                b.keys()
                    .filter(|k| !after.contains_key(*k))
                    .map(|k| format!("{k}: deleted")),
            )
            .collect();
        assert!(
            changed.is_empty(),
            "{}: scheduled runs at rest still wrote:\n{}",
            c.spec.name,
            changed.join("\n")
        );
    }
}

/// Scenario 3, the status: what `c` stored for its federation with `peer` reads back whole —
/// the peer's public document exactly as `serve` publishes it, the private document's
/// gateways and services, both fetch timestamps, and every condition with its fields.
fn assert_status_unpruned(c: &Cluster, peer: &Cluster) {
    let fed = c
        .kube
        .get(
            "istiofederation",
            "",
            &format!("cluster-{}", peer.spec.name),
        )
        .expect("the IstioFederation");
    let status = &fed["status"];
    let cache = &status["metadataCache"];
    let served: Value =
        serde_json::from_str(&peer.served("/metadata/public/public.json")).expect("public.json");
    assert_eq!(
        cache["public"], served,
        "{}: status.metadataCache.public",
        c.spec.name
    );
    assert_eq!(
        cache["private"]["ingressGateways"],
        json!([{"address": peer.spec.gateway_ip, "port": 15443}]),
        "{}: status.metadataCache.private",
        c.spec.name
    );
    let services = cache["private"]["publicServices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let svc = services
        .iter()
        .find(|s| s["hostname"] == imported_host(peer).as_str())
        .unwrap_or_else(|| {
            panic!(
                "{}: no {} in status.metadataCache.private: {status}",
                c.spec.name,
                imported_host(peer)
            )
        });
    let ports: Vec<(Value, Value)> = svc["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| (p["name"].clone(), p["port"].clone()))
        .collect();
    assert_eq!(
        ports,
        vec![
            (json!("http"), json!(8080)),
            (json!("grpc-api"), json!(9090))
        ],
        "{}: {svc}",
        c.spec.name
    );
    for ts in ["publicLastFetchTimestamp", "privateLastFetchTimestamp"] {
        assert!(
            cache[ts].as_str().is_some_and(|t| t.ends_with('Z')),
            "{}: status.metadataCache.{ts}: {status}",
            c.spec.name
        );
    }
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    assert!(
        conditions.len() >= 4,
        "{}: conditions: {status}",
        c.spec.name
    );
    for cond in &conditions {
        for field in ["type", "status", "reason", "message", "lastTransitionTime"] {
            assert!(
                cond[field].is_string(),
                "{}: condition without {field}: {cond}",
                c.spec.name
            );
        }
        assert_eq!(cond["status"], "True", "{}: {cond}", c.spec.name);
    }
}

/// A condition of `c`'s federation with `peer`: (status, reason).
fn condition(c: &Cluster, peer: &Cluster, kind: &str) -> (String, String) {
    let fed = c
        .kube
        .get(
            "istiofederation",
            "",
            &format!("cluster-{}", peer.spec.name),
        )
        .unwrap_or(Value::Null);
    let conds = fed["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    conds
        .iter()
        .find(|x| x["type"] == kind)
        .map(|x| {
            (
                x["status"].as_str().unwrap_or("").to_string(),
                x["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default()
}

/// resourceVersions of what `c` imports and trusts (ServiceEntries, DestinationRules, the
/// trust-bundle object): what an outage or a crash must not touch.
fn imports(c: &Cluster) -> std::collections::BTreeMap<String, String> {
    written(c)
        .into_iter()
        .filter(|(k, _)| {
            k.starts_with("ServiceEntry/")
                || k.starts_with("DestinationRule/")
                || k == "ConfigMap/istio-system/istio"
                || k == "Secret/istio-system/cacerts"
        })
        .collect()
}

/// Waits for `n` more finished runs of `c`'s discovery hook.
fn wait_runs(c: &Cluster, n: usize) {
    let start = c.runs().0;
    wait_for(
        &format!("{}: {n} more discovery runs", c.spec.name),
        Duration::from_secs(30 + 10 * n as u64),
        || (c.runs().0 >= start + n).then_some(()),
        || explain(c),
    );
}

/// Scenario 5: B's `serve` stopped for several runs. A keeps every ServiceEntry and trust
/// entry (nothing of them rewritten), its conditions say the exchange fails; restarted, A
/// recovers without rewriting any of them.
fn outage(a: &Cluster, b: &mut Cluster) {
    let before = imports(a);
    b.serve.stop(Duration::from_secs(5));
    wait_for(
        "a: PublicMetadataExchangeReady=False while b's serve is down",
        Duration::from_secs(60),
        || (condition(a, b, "PublicMetadataExchangeReady").0 == "False").then_some(()),
        || explain(a),
    );
    wait_runs(a, 3);
    let (_, reason) = condition(a, b, "PublicMetadataExchangeReady");
    assert_eq!(reason, "FetchFailed", "a: the outage's reason");
    assert_eq!(
        imports(a),
        before,
        "a: an outage of b's endpoint rewrote imports or trust"
    );
    assert!(
        service_entry_for(a, b).is_some() && trusts(a, b),
        "a lost b's imports in an outage"
    );
    b.serve.start();
    wait_for(
        "a: every condition True again after b's serve is back",
        CONVERGE,
        || {
            let fed = a.kube.get("istiofederation", "", "cluster-b")?;
            let conds = fed["status"]["conditions"].as_array()?.clone();
            conds.iter().all(|c| c["status"] == "True").then_some(())
        },
        || explain(a),
    );
    wait_runs(a, 2);
    assert_eq!(
        imports(a),
        before,
        "a: recovering from the outage rewrote imports or trust"
    );
}

/// The PEM blocks of `text`, each trimmed (a bundle, a `caCertificates` entry).
fn pem_blocks(text: &str) -> Vec<String> {
    let end = "-----END CERTIFICATE-----";
    text.split_inclusive(end)
        .filter_map(|b| b.find("-----BEGIN").map(|i| b[i..].trim().to_string()))
        .filter(|b| b.ends_with(end))
        .collect()
}

/// The roots `c` (mesh-config mode) trusts for `domain`: every PEM block of every
/// `caCertificates` entry bound to exactly that trust domain.
fn roots_trusted_for(c: &Cluster, domain: &str) -> Vec<String> {
    let Some(cm) = c.kube.get("configmap", cluster::ISTIO_NS, "istio") else {
        return Vec::new();
    };
    let mesh: Value =
        serde_saphyr::from_str(cm["data"]["mesh"].as_str().unwrap_or("")).unwrap_or(Value::Null);
    mesh["caCertificates"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|e| e["trustDomains"] == json!([domain]))
                .flat_map(|e| pem_blocks(e["pem"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default()
}

/// Which of `roots` istiod hands `c`'s proxies as trust anchors (PCDS).
fn istiod_anchors(c: &Cluster, roots: &[&str]) -> Vec<bool> {
    let x = c.xds(&[]);
    let anchors: Vec<String> = x["trustBundle"]
        .as_array()
        .map(|l| {
            l.iter()
                .flat_map(|p| pem_blocks(p.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    roots
        .iter()
        .map(|r| anchors.iter().any(|a| a == r.trim()))
        .collect()
}

/// B's plug-in CA as Istio documents a root rotation: istiod signs with `new`, and
/// `root-cert.pem` is `local` (B's own roots) followed by the peer roots B's hook appended
/// there (cacerts mode), which stay as they are.
fn rotate_cacerts(b: &Cluster, new: &cluster::IstioRoot, local: &[&str]) {
    let s = b
        .kube
        .get("secret", cluster::ISTIO_NS, "cacerts")
        .expect("b: cacerts");
    let appended: Vec<String> = pem_blocks(&b64(&s["data"]["root-cert.pem"]))
        .into_iter()
        .filter(|p| !local.iter().any(|l| l.trim() == p) && p != b.root.cert_pem.trim())
        .collect();
    let bundle = local
        .iter()
        .map(|l| l.trim().to_string())
        .chain(appended)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    let enc = |t: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(t)
    };
    let patch = json!({"data": {
        "ca-cert.pem": enc(&new.cert_pem),
        "ca-key.pem": enc(&new.key_pem),
        "cert-chain.pem": enc(&new.cert_pem),
        "root-cert.pem": enc(&bundle),
    }});
    b.kube.ok(
        &[
            "patch",
            "secret",
            "cacerts",
            "-n",
            cluster::ISTIO_NS,
            "--type=merge",
            "-p",
            &patch.to_string(),
        ],
        None,
    );
}

fn rfc3339(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("not an RFC 3339 time: {s:?}: {e}"))
}

/// Scenario 4: B rotates its root (ROOT_RETENTION=20s on both sides). Istio's two steps on
/// B's plug-in CA: first both roots in `root-cert.pem` (A trusts both within one run after
/// B publishes the new one), then the new one only: B's export keeps publishing the old root
/// for its retention, then A keeps trusting it for its own (recorded in A's
/// `status.retiredRoots`), never less, then only the new one — and A's istiod follows.
fn rotation(a: &Cluster, b: &mut Cluster) {
    let old = b.root.cert_pem.trim().to_string();
    let new = cluster::IstioRoot::new("cluster b Istio root, rotated");
    let fresh = new.cert_pem.trim().to_string();
    rotate_cacerts(b, &new, &[&fresh, &old]);
    wait_for(
        "b: its export publishes the new root (istiod reloaded cacerts, istio-ca-root-cert)",
        Duration::from_secs(90),
        || {
            let s = b
                .kube
                .get("secret", b.spec.fed_ns, "istio-federation-metadata")?;
            let public: Value = serde_json::from_str(&b64(&s["data"]["public.json"])).ok()?;
            pem_blocks(public["rootCA"].as_str()?)
                .contains(&fresh)
                .then_some(())
        },
        || format!("{}\n{}", explain(b), b.istiod.tail(20)),
    );
    // From when b's endpoint answers with it (kubelet's mount and serve's reload lag the
    // Secret): a run already fetching may still get the old document, the next one has it.
    wait_for(
        "b's serve: public.json with the new root",
        Duration::from_secs(30),
        || {
            let public: Value =
                serde_json::from_str(&b.served("/metadata/public/public.json")).ok()?;
            pem_blocks(public["rootCA"].as_str()?)
                .contains(&fresh)
                .then_some(())
        },
        || explain(b),
    );
    let runs = a.runs().0;
    wait_for(
        "a: trusts b's new root beside the old one",
        Duration::from_secs(60),
        || {
            let t = roots_trusted_for(a, b.spec.domain);
            (t.contains(&fresh) && t.contains(&old)).then_some(())
        },
        || explain(a),
    );
    assert!(
        a.runs().0 <= runs + 2,
        "a: took {} discovery runs to trust b's new root (one run, plus the one under way)",
        a.runs().0 - runs
    );
    wait_for(
        "a's istiod: both of b's roots in the proxies' trust bundle",
        Duration::from_secs(60),
        || (istiod_anchors(a, &[&old, &fresh]) == [true, true]).then_some(()),
        || a.istiod.tail(20),
    );

    // Step two: the old root leaves B's root-cert.pem.
    rotate_cacerts(b, &new, &[&fresh]);
    b.root = new;
    wait_for(
        "b: its metadata Secret retains the old root (retired-local-roots.json)",
        Duration::from_secs(60),
        || {
            let s = b
                .kube
                .get("secret", b.spec.fed_ns, "istio-federation-metadata")?;
            b64(&s["data"]["retired-local-roots.json"])
                .contains(&old.lines().nth(1)?.to_string())
                .then_some(())
        },
        || explain(b),
    );
    // A trusts both until its own retention of the old root ends, and not past two runs after.
    let mut until = None;
    let ended = wait_for(
        "a: b's old root retired, retained, then gone",
        Duration::from_secs(120),
        || {
            let t = roots_trusted_for(a, b.spec.domain);
            assert!(
                t.contains(&fresh),
                "a lost b's new root during the rotation"
            );
            let fed = a.kube.get("istiofederation", "", "cluster-b")?;
            if let Some(r) = fed["status"]["retiredRoots"].as_array() {
                if let Some(e) = r
                    .iter()
                    .find(|e| e["pem"].as_str().map(str::trim) == Some(&old))
                {
                    until = e["until"].as_str().map(rfc3339);
                    let msg = fed["status"]["conditions"]
                        .as_array()
                        .and_then(|c| c.iter().find(|c| c["type"] == "TrustBundleReady"))
                        .map(|c| c["message"].to_string())
                        .unwrap_or_default();
                    assert!(
                        msg.contains("Retaining 1 root certificate"),
                        "a: TrustBundleReady while retaining b's old root: {msg}"
                    );
                }
            }
            (!t.contains(&old)).then(time::OffsetDateTime::now_utc)
        },
        || explain(a),
    );
    let until = until.expect("a never recorded b's old root in status.retiredRoots");
    assert!(
        ended >= until,
        "a dropped b's old root at {ended}, before its retention ended ({until})"
    );
    assert!(
        ended <= until + Duration::from_secs(20),
        "a kept b's old root until {ended}, well past its retention ({until})"
    );
    wait_for(
        "a's istiod: only b's new root in the proxies' trust bundle",
        Duration::from_secs(60),
        || (istiod_anchors(a, &[&old, &fresh]) == [false, true]).then_some(()),
        || a.istiod.tail(20),
    );
}

/// Scenario 7: A's shell-operator killed (SIGKILL) as a run starts that has something to
/// write (B exports one more service), then started again: A converges, with each host
/// imported once and B's root trusted once.
fn crash(a: &mut Cluster, b: &Cluster) {
    let imported_hosts = |a: &Cluster| {
        let ses = a.service_entries();
        let mut hosts: Vec<String> = ses
            .iter()
            .flat_map(|se| se["spec"]["hosts"].as_array().cloned().unwrap_or_default())
            .map(|h| h.as_str().unwrap_or("").to_string())
            .collect();
        hosts.sort();
        hosts
    };
    let mut want = imported_hosts(a);
    let drs_before = a.destination_rules().len();
    let runs = a
        .operator
        .log_text()
        .matches("\"msg\":\"Execute hook\"")
        .count();
    b.kube.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: api2, namespace: prod, labels: {federation.istio.deckhouse.io/public-service: \"\"}}\n\
         spec: {selector: {app: api2}, ports: [{name: http, port: 8081}]}\n",
    );
    wait_for(
        "a: a hook run starting after b exported api2",
        Duration::from_secs(60),
        || {
            (a.operator
                .log_text()
                .matches("\"msg\":\"Execute hook\"")
                .count()
                > runs)
                .then_some(())
        },
        || explain(a),
    );
    a.operator.kill();
    a.operator.start();
    let host = format!("api2.prod.svc.{}", b.spec.domain);
    wait_for(
        &format!("a: {host} imported after the crash"),
        CONVERGE,
        || {
            let ses = a.service_entries();
            ses.iter()
                .any(|se| se["spec"]["hosts"] == json!([host.as_str()]))
                .then_some(())
        },
        || explain(a),
    );
    wait_runs(a, 2);
    want.push(host.clone());
    want.sort();
    assert_eq!(
        imported_hosts(a),
        want,
        "a: hosts after the crash (each once)"
    );
    let drs = a.destination_rules();
    assert_eq!(
        drs.len(),
        drs_before + 1,
        "a: DestinationRules after the crash: {drs:?}"
    );
    let cm = a
        .kube
        .get("configmap", cluster::ISTIO_NS, "istio")
        .expect("mesh config");
    let mesh = cm["data"]["mesh"].as_str().unwrap_or("");
    assert_eq!(
        mesh.matches(b.root.cert_pem.lines().nth(1).unwrap_or("-"))
            .count(),
        1,
        "a: b's root once in the mesh config:\n{mesh}"
    );
}

/// Scenario 6: what removal takes, and what it leaves. A foreign ServiceEntry and a foreign
/// `caCertificates` entry (A), a foreign root in `cacerts` (B) survive all three removals.
fn removal(a: &mut Cluster, b: &mut Cluster) {
    a.kube.apply(&format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: foreign, namespace: {}}}\n\
         spec: {{hosts: [foreign.example.org], location: MESH_EXTERNAL, resolution: DNS, ports: [{{number: 443, name: tls, protocol: TLS}}]}}\n",
        a.spec.fed_ns
    ));
    let survives = |a: &Cluster| {
        let se = a.kube.get(
            "serviceentries.networking.istio.io",
            a.spec.fed_ns,
            "foreign",
        );
        let cm = a
            .kube
            .get("configmap", cluster::ISTIO_NS, "istio")
            .unwrap_or(Value::Null);
        assert!(se.is_some(), "a: the foreign ServiceEntry was removed");
        assert!(
            cm["data"]["mesh"]
                .as_str()
                .unwrap_or("")
                .contains("trustDomains: [foreign.example.org]"),
            "a: the foreign caCertificates entry was removed: {}",
            cm["data"]["mesh"]
        );
    };
    wait_runs(a, 2);
    survives(a);

    // (a) B stops exporting api2: its ServiceEntry leaves A's API server and istiod.
    let host = format!("api2.prod.svc.{}", b.spec.domain);
    b.kube.ok(
        &[
            "label",
            "service",
            "api2",
            "-n",
            "prod",
            "federation.istio.deckhouse.io/public-service-",
        ],
        None,
    );
    wait_for(
        &format!("a: {host} gone from the API server and istiod's registry"),
        CONVERGE,
        || {
            let ses = a.service_entries();
            let gone = !ses
                .iter()
                .any(|se| se["spec"]["hosts"] == json!([host.as_str()]));
            (gone
                && !a
                    .debug("/debug/registryz")
                    .to_string()
                    .contains(&format!("\"hostname\":\"{host}\"")))
            .then_some(())
        },
        || explain(a),
    );
    assert!(
        service_entry_for(a, b).is_some(),
        "a: the service b still exports went too"
    );
    survives(a);

    // (b) The IstioFederation deleted: everything of it goes, after the mass-deletion grace
    // (MASS_DELETION_GRACE=8s here: it is A's only federation).
    a.kube.ok(&["delete", "istiofederation", "cluster-b"], None);
    wait_for(
        "a: b's imports and root gone after its IstioFederation was deleted",
        CONVERGE,
        || {
            let ses = a.service_entries();
            let drs = a.destination_rules();
            (ses.len() == 1 && drs.is_empty() && !trusts(a, b)).then_some(())
        },
        || explain(a),
    );
    survives(a);
    wait_for(
        "a's istiod: b's host gone from the registry",
        Duration::from_secs(60),
        || {
            (!a.debug("/debug/registryz")
                .to_string()
                .contains(&imported_host(b)))
            .then_some(())
        },
        || a.istiod.tail(10),
    );

    // (c) Federation disabled on B: everything its hooks own goes, B's own root stays first.
    b.operator.stop(Duration::from_secs(10));
    b.operator.set_env("ISTIO_FEDERATION_ENABLED", "false");
    b.operator.start();
    wait_for(
        "b: every import and a's root gone with federation disabled",
        CONVERGE,
        || {
            let ses = b.service_entries();
            let drs = b.destination_rules();
            (ses.is_empty() && drs.is_empty() && !trusts(b, a)).then_some(())
        },
        || explain(b),
    );
    let s = b
        .kube
        .get("secret", cluster::ISTIO_NS, "cacerts")
        .expect("cacerts");
    assert_eq!(
        b64(&s["data"]["root-cert.pem"]).trim(),
        b.root.cert_pem.trim(),
        "b: root-cert.pem after disabling"
    );
}

/// The two clusters of scenarios 1–7: A from the base in mesh-config mode, B from the example
/// overlay in cacerts mode, each federated with the other.
#[test]
fn two_clusters_federate_through_the_real_platform() {
    let bins = Bins::locate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut a = Cluster::start(&bins, &cluster::A, tmp.path(), repo());
    let mut b = Cluster::start(&bins, &cluster::B, tmp.path(), repo());
    a.federate_with(&b);
    b.federate_with(&a);

    // 1. Federation from nothing, both ways.
    assert_imported(&a, &b);
    assert_imported(&b, &a);
    assert_istiod_trusts(&a, &b);
    assert_istiod_trusts(&b, &a);

    // 2. The webhook's verdict, and the API server's.
    assert_istiod_validates(&a);
    assert_istiod_validates(&b);

    // 3. Zero churn on a real server; status reads back unpruned.
    assert_zero_churn(&[&a, &b]);
    assert_status_unpruned(&a, &b);
    assert_status_unpruned(&b, &a);

    // 4. B rotates its root.
    rotation(&a, &mut b);

    // 5. Outage of B's metadata endpoint.
    outage(&a, &mut b);

    // 7. shell-operator crashes mid-run.
    crash(&mut a, &b);

    // 6. Removal: a service, a federation, federation itself (last: it takes everything).
    removal(&mut a, &mut b);
}

/// The fullest trust bundle the hook writes, as istiod reads it (docs/security.md, "Limits and
/// shares"): fourteen peers publishing eight 6 KiB roots each and one with an ordinary root, the
/// release binary's mesh-config patch (held to 900 KiB, each large peer cut to its share)
/// applied to the real API server, then istiod started on it: it hands its proxies (PCDS) every
/// root the mesh config lists — the ordinary peer's among them — so no entry made it refuse the
/// update.
#[test]
fn istiod_reads_the_fullest_trust_bundle() {
    let bins = Bins::locate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let k = Kube::start(&bins, "fullest", tmp.path());
    manifests::install_crds(&k, &bins);
    manifests::istio_install(&k, cluster::ISTIO_NS, "cluster-a.local", None, None);
    let big: Vec<String> = (0..8)
        .map(|i| support::pki::large_root(&format!("big{i}"), 6 * 1024))
        .collect();
    let ordinary = cluster::IstioRoot::new("an ordinary peer's root").cert_pem;
    let key = std::fs::read_to_string(repo().join("testdata/certs/peer-b-authn-pub.pem"))
        .expect("testdata/certs/peer-b-authn-pub.pem");
    let federation = |name: &str, roots: String| {
        json!({"object": {"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation",
            "metadata": {"name": name},
            "spec": {"trustDomain": format!("{name}.local"), "metadataEndpoint": format!("https://{name}.example/metadata/")},
            "status": {"metadataCache": {
                "public": {"clusterUUID": format!("uuid-{name}"), "authnKeyPub": key, "rootCA": roots},
                "publicLastFetchTimestamp": "2026-12-31T23:55:00Z"}}}})
    };
    let mut feds: Vec<Value> = (0..14)
        .map(|i| federation(&format!("h{i:02}"), big.concat()))
        .collect();
    feds.push(federation("ordinary", ordinary.clone()));
    let mesh = k
        .get("configmap", cluster::ISTIO_NS, "istio")
        .expect("mesh config");
    let bc = json!([{"binding": "refresh_remote_metadata", "type": "Group", "groupName": "istio_federation",
        "snapshots": {"federations": feds, "trust_bundle": [{"object": mesh}], "local_root_ca": [],
                      "service_entries": [], "destination_rules": []}}]);
    let ops = bins::run_hook_offline(
        &bc,
        &[
            ("CLUSTER_DOMAIN", "cluster-a.local"),
            ("CLUSTER_UUID", "uuid-a"),
            ("ISTIO_NAMESPACE", cluster::ISTIO_NS),
        ],
    );
    let patch = ops
        .iter()
        .find(|o| o["operation"] == "JSONPatch" && o["kind"] == "ConfigMap")
        .expect("the mesh config's patch");
    let file = tmp.path().join("patch.json");
    std::fs::write(&file, patch["jsonPatch"].to_string()).expect("patch file");
    k.ok(
        &[
            "patch",
            "configmap",
            "istio",
            "-n",
            cluster::ISTIO_NS,
            "--type=json",
            "--patch-file",
            &file.display().to_string(),
        ],
        None,
    );
    let cm = k
        .get("configmap", cluster::ISTIO_NS, "istio")
        .expect("mesh config");
    let text = cm["data"]["mesh"].as_str().unwrap_or("");
    let mesh: Value = serde_saphyr::from_str(text).expect("mesh YAML");
    let listed: Vec<String> = mesh["caCertificates"]
        .as_array()
        .map(|l| {
            l.iter()
                .flat_map(|e| pem_blocks(e["pem"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        text.len() > 850 * 1024
            && listed.len() < 14 * 8
            && listed.contains(&ordinary.trim().to_string()),
        "the hook wrote {} bytes, {} roots",
        text.len(),
        listed.len()
    );
    let (mut istiod, _http, grpc) =
        cluster::istiod_alone(&bins, &k, &cluster::IstioRoot::new("fullest cluster root"));
    let missing = wait_for(
        "istiod: every root of the mesh config in the proxies' trust bundle",
        Duration::from_secs(90),
        || {
            let anchors: Vec<String> = cluster::pcds_anchors(&bins, grpc)
                .iter()
                .flat_map(|a| pem_blocks(a))
                .collect();
            let missing = listed.iter().filter(|r| !anchors.contains(r)).count();
            (missing == 0).then_some(missing)
        },
        || istiod.tail(30),
    );
    assert_eq!(missing, 0);
    istiod.assert_running();
}

/// `NAME=value` pairs of tests/platform/versions.env.
fn pinned() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(repo().join("tests/platform/versions.env")).expect("versions.env");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pin(name: &str) -> String {
    pinned()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("versions.env pins no {name}"))
}

/// The "Tested with" line of docs/compatibility.md, as the pinned versions produce it.
fn tested_with() -> String {
    format!(
        "Tested with: kube-apiserver {} (`k8s.io/kubernetes`), etcd {}, shell-operator {}, istiod \
         `istio.io/istio` {}, built with {}.",
        pin("KUBERNETES_VERSION"),
        pin("ETCD_VERSION"),
        pin("SHELL_OPERATOR_VERSION"),
        pin("ISTIO_VERSION"),
        pin("GO_VERSION"),
    )
}

#[test]
fn docs_and_dockerfile_name_the_versions_the_suite_runs() {
    let compat = std::fs::read_to_string(repo().join("docs/compatibility.md"))
        .expect("docs/compatibility.md");
    let line = tested_with();
    assert!(
        compat.lines().any(|l| l == line),
        "docs/compatibility.md must carry the line the pinned versions produce:\n{line}"
    );
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    assert!(
        readme.lines().any(|l| l == line),
        "README.md must carry the line the pinned versions produce:\n{line}"
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let from = format!(
        "FROM ghcr.io/flant/shell-operator:{}",
        pin("SHELL_OPERATOR_VERSION")
    );
    assert!(
        dockerfile.lines().any(|l| l.trim() == from),
        "the Dockerfile's base image must be the shell-operator the suite tests: {from}"
    );
}
