//! The bad-input battery: one table of malformed and hostile inputs — binding contexts and
//! snapshots, settings, peer responses, requests to `serve` — each with the exact outcome it
//! must have, and the invariant that none of them costs the cluster anything: after applying
//! what the hook emitted, the ServiceEntry and the trust entry of the healthy federation are
//! still there, and nothing was deleted.

mod common;
mod support;

use common::{cert, ndjson, run_hook, Store};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::pki::{self, Ca, SigningKeys};
use support::server::Route;
use support::Peer;

/// A root of the Go-oracle corpus (testdata/go-oracle/roots, see tests/go_oracle.rs).
fn oracle_root(name: &str) -> String {
    std::fs::read_to_string(
        common::root()
            .join("testdata/go-oracle/roots")
            .join(format!("{name}.pem")),
    )
    .unwrap()
}

use support::odd_roots::ODD_ROOTS;

fn base_env() -> Vec<(String, String)> {
    vec![
        ("ISTIO_FEDERATION_ENABLED".into(), "true".into()),
        ("CLUSTER_DOMAIN".into(), "my.cluster".into()),
        ("CLUSTER_UUID".into(), "deadbeef-mycluster".into()),
        ("ISTIO_FEDERATION_HOOK_OFFLINE".into(), "true".into()),
    ]
}

/// A healthy cluster federated with `b` (cached metadata), already reconciled: the store holds
/// b's ServiceEntry, DestinationRule and trust entry.
fn healthy(
    endpoint: &str,
    public: Value,
    cluster_ca: Option<&str>,
    keys: Option<&SigningKeys>,
) -> Store {
    let mut spec = json!({"trustDomain": "b.local", "metadataEndpoint": endpoint});
    if let Some(ca) = cluster_ca {
        spec["metadata"] = json!({"clusterCA": ca});
    }
    let fed = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": "b"}, "spec": spec,
        "status": {"metadataCache": {"public": public, "publicLastFetchTimestamp": common::NOW,
            "private": {"ingressGateways": [{"address": "198.51.100.7", "port": 15443}],
                        "publicServices": [{"hostname": "web.prod.svc.b.local", "ports": [{"name": "http", "port": 8080}]}]},
            "privateLastFetchTimestamp": common::NOW}}});
    let (privk, pubk) = match keys {
        Some(k) => (k.private_pem.clone(), k.public_pem.clone()),
        None => (
            cert("deckhouse-fixture-priv"),
            cert("deckhouse-fixture-pub"),
        ),
    };
    let mut s = Store::offline(
        vec![fed],
        common::mesh_config_map("trustDomain: my.cluster\n"),
        (&privk, &pubk),
    );
    let r = run_hook(
        &s.binding_context("refresh_remote_metadata").to_string(),
        &base_env(),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    s.apply(&ndjson(&r.patches));
    assert!(intact(&s, "b.local"), "the healthy baseline is not healthy");
    s
}

fn cached_public(root: &str, key: &str) -> Value {
    json!({"clusterUUID": "uuid-b", "authnKeyPub": key, "rootCA": root})
}

fn offline_base() -> Store {
    healthy(
        "https://127.0.0.1:9/metadata/",
        cached_public(&cert("peer-b-root"), &cert("peer-b-authn-pub")),
        None,
        None,
    )
}

/// b's ServiceEntry and its trust entry are in place.
fn intact(s: &Store, trust_domain: &str) -> bool {
    let se = s
        .all("ServiceEntry")
        .iter()
        .any(|o| o["spec"]["hosts"][0] == "web.prod.svc.b.local");
    let mesh = s
        .get("ConfigMap", "d8-istio", "istio")
        .and_then(|cm| cm["data"]["mesh"].as_str())
        .unwrap_or("")
        .to_string();
    // Read only the trust entries, letting `.inf` elsewhere pass (the mesh is not ours to judge).
    #[derive(serde::Deserialize)]
    struct Mesh {
        #[serde(default, rename = "caCertificates")]
        entries: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default, rename = "trustDomains")]
        trust_domains: Vec<String>,
    }
    let options = serde_saphyr::options! {
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    };
    let trusted = serde_saphyr::from_str_with_options::<Mesh>(&mesh, options).is_ok_and(|m| {
        m.entries
            .iter()
            .any(|e| e.trust_domains.first().is_some_and(|t| t == trust_domain))
    });
    se && trusted
}

/// What a case must produce.
enum Expect {
    /// Non-zero exit, stderr contains the text, no patches at all.
    Fail(&'static str),
    /// Exit 0; stderr contains the text (or anything when empty).
    Ok(&'static str),
    /// Exit 0; the federation's condition `type` has this status and reason, message contains text.
    Condition(&'static str, &'static str, &'static str, &'static str),
    /// Exit 0; the mesh text is edited surgically: the new text is the old one, byte for byte,
    /// with the trust entry appended, and no federation reports TrustBundleUnavailable.
    MeshAppended,
    /// Exit 0; `TrustBundleReady` is True/Succeeded with exactly this message, and once the
    /// patches are applied b.local's trust entries hold exactly these PEMs, in this order.
    Trusted(String, Vec<String>),
}

/// The PEMs of the trust entries for `trust_domain` in the store's mesh config.
fn trusted_pems(s: &Store, trust_domain: &str) -> Vec<String> {
    let mesh = s
        .get("ConfigMap", "d8-istio", "istio")
        .and_then(|cm| cm["data"]["mesh"].as_str())
        .unwrap_or("")
        .to_string();
    let options = serde_saphyr::options! {
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    };
    let mesh: Value = serde_saphyr::from_str_with_options(&mesh, options).unwrap_or(Value::Null);
    mesh["caCertificates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["trustDomains"][0] == trust_domain)
        .filter_map(|e| e["pem"].as_str().map(str::to_string))
        .collect()
}

fn check(
    name: &str,
    store: &Store,
    bc: &str,
    env: &[(String, String)],
    values: Option<&str>,
    expect: &Expect,
    failures: &mut Vec<String>,
) {
    let r = run_hook(bc, env, values);
    let ops = ndjson(&r.patches);
    let mut fail = |m: String| {
        failures.push(format!(
            "{name}: {m}\n  stderr: {}\n  patches: {}",
            r.stderr.trim(),
            r.patches.trim()
        ))
    };
    match expect {
        Expect::Fail(text) => {
            if r.code == 0 || !r.stderr.contains(text) || !r.patches.is_empty() {
                fail(format!(
                    "expected a failure mentioning {text:?}, got exit {}",
                    r.code
                ));
            }
            if r.stderr.lines().count() != 1 {
                fail("a failure must be one line on stderr".into());
            }
            return;
        }
        Expect::Ok(text) => {
            if r.code != 0 || !r.stderr.contains(text) {
                fail(format!(
                    "expected exit 0 and stderr mentioning {text:?}, got exit {}",
                    r.code
                ));
            }
        }
        Expect::MeshAppended => {}
        Expect::Condition(kind, status, reason, text) => {
            if r.code != 0 {
                fail(format!("expected exit 0, got {}", r.code));
            }
            let cond = ops
                .iter()
                .filter(|o| o["operation"] == "MergePatch")
                .filter_map(|o| o["mergePatch"]["status"]["conditions"].as_array())
                .flatten()
                .find(|c| c["type"] == *kind)
                .cloned();
            match cond {
                Some(c)
                    if c["status"] == *status
                        && c["reason"] == *reason
                        && c["message"].as_str().is_some_and(|m| m.contains(text)) => {}
                other => fail(format!(
                    "expected {kind}={status}/{reason} ~ {text:?}, got {other:?} (exit {})",
                    r.code
                )),
            }
        }
        Expect::Trusted(message, pems) => {
            let cond = ops
                .iter()
                .filter(|o| o["operation"] == "MergePatch")
                .filter_map(|o| o["mergePatch"]["status"]["conditions"].as_array())
                .flatten()
                .find(|c| c["type"] == "TrustBundleReady")
                .cloned();
            let want = json!({"status": "True", "reason": "Succeeded", "message": message});
            let got = cond.as_ref().map(
                |c| json!({"status": c["status"], "reason": c["reason"], "message": c["message"]}),
            );
            if r.code != 0 || got.as_ref() != Some(&want) {
                fail(format!(
                    "expected TrustBundleReady {want}, got {got:?} (exit {})",
                    r.code
                ));
            }
            let mut after = store.clone();
            after.apply(&ops);
            let trusted = trusted_pems(&after, "b.local");
            if &trusted != pems {
                fail(format!("b.local trusts {trusted:?}, expected {pems:?}"));
            }
        }
    }
    if let Expect::MeshAppended = expect {
        let bc: Value = serde_json::from_str(bc).unwrap_or(Value::Null);
        let old = bc[0]["snapshots"]["trust_bundle"][0]["object"]["data"]["mesh"]
            .as_str()
            .unwrap_or_default();
        let new = ops
            .iter()
            .filter(|o| o["operation"] == "JSONPatch" && o["kind"] == "ConfigMap")
            .flat_map(|o| o["jsonPatch"].as_array().cloned().unwrap_or_default())
            .find(|p| p["op"] == "replace" && p["path"] == "/data/mesh")
            .and_then(|p| p["value"].as_str().map(str::to_string))
            .unwrap_or_default();
        let unavailable = ops
            .iter()
            .filter_map(|o| o["mergePatch"]["status"]["conditions"].as_array())
            .flatten()
            .any(|c| c["reason"] == "TrustBundleUnavailable");
        if r.code != 0
            || unavailable
            || !new.starts_with(old)
            || !new[old.len()..].starts_with("caCertificates:\n- pem: |\n")
        {
            fail(format!(
                "expected {old:?} kept byte for byte with the entry appended, got {new:?} (exit {})",
                r.code
            ));
        }
    }
    if ops.iter().any(|o| {
        o["operation"]
            .as_str()
            .is_some_and(|op| op.starts_with("Delete"))
    }) {
        fail("emitted a delete".into());
    }
    let problems = common::check_operations(&ops);
    if !problems.is_empty() {
        fail(format!("invalid operations: {problems:?}"));
    }
    let mut after = store.clone();
    if let Expect::MeshAppended = expect {
        // The case changed the mesh text of the snapshot: the store holds that text.
        let bc: Value = serde_json::from_str(bc).unwrap_or(Value::Null);
        if let Some(cm) = after
            .objects
            .get_mut("trust_bundle")
            .and_then(|l| l.first_mut())
        {
            cm["data"]["mesh"] =
                bc[0]["snapshots"]["trust_bundle"][0]["object"]["data"]["mesh"].clone();
        }
    }
    after.apply(&ops);
    if !intact(&after, "b.local") {
        fail("b's ServiceEntry or trust entry was lost".into());
    }
}

type Mutation = fn(&mut Value);

/// b's only cached gateway gets `address`.
fn set_gateway(bc: &mut Value, address: &str) {
    fed(bc)["status"]["metadataCache"]["private"]["ingressGateways"][0]["address"] = json!(address);
}

/// A copy of b (same cache) under another name and trust domain.
fn add_federation(bc: &mut Value, name: &str, trust_domain: &str) {
    let mut other = bc[0]["snapshots"]["federations"][0].clone();
    other["object"]["metadata"]["name"] = json!(name);
    other["object"]["spec"]["trustDomain"] = json!(trust_domain);
    bc[0]["snapshots"]["federations"]
        .as_array_mut()
        .unwrap()
        .push(other);
}

fn fed(bc: &mut Value) -> &mut Value {
    &mut bc[0]["snapshots"]["federations"][0]["object"]
}

fn snapshot_cases() -> Vec<(&'static str, Mutation, Expect)> {
    vec![
        (
            "federation without metadata.name",
            |bc| fed(bc)["metadata"] = json!({}),
            Expect::Ok("IstioFederation without metadata.name"),
        ),
        (
            "trustDomain is a number",
            |bc| fed(bc)["spec"]["trustDomain"] = json!(42),
            Expect::Ok("IstioFederation b: spec.trustDomain must be a non-empty string"),
        ),
        // A readable but unusable trust domain: a condition on that federation, nothing
        // imported or trusted for it, its ServiceEntry and its trust entry (under b.local,
        // which no other federation claims) kept.
        (
            "trustDomain with a space",
            |bc| fed(bc)["spec"]["trustDomain"] = json!("b local"),
            Expect::Condition(
                "TrustBundleReady",
                "False",
                "InvalidSpec",
                "spec.trustDomain \"b local\" is not lower-case DNS labels (a-z, 0-9, '-') joined by dots; no root certificate is trusted for it. Root certificates installed earlier are kept until it is fixed.",
            ),
        ),
        (
            "trustDomain in upper case",
            |bc| fed(bc)["spec"]["trustDomain"] = json!("B.LOCAL"),
            Expect::Condition(
                "ServicesImported",
                "False",
                "InvalidSpec",
                "spec.trustDomain \"B.LOCAL\" is not lower-case DNS labels (a-z, 0-9, '-') joined by dots; no services are imported. ServiceEntries created earlier are kept.",
            ),
        ),
        (
            "trustDomain with an underscore",
            |bc| fed(bc)["spec"]["trustDomain"] = json!("b_local.example"),
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "InvalidSpec",
                "spec.trustDomain \"b_local.example\" is not lower-case DNS labels (a-z, 0-9, '-') joined by dots; no request is made.",
            ),
        ),
        (
            "trustDomain with an empty label",
            |bc| fed(bc)["spec"]["trustDomain"] = json!("b..local"),
            Expect::Condition("TrustBundleReady", "False", "InvalidSpec", "spec.trustDomain \"b..local\""),
        ),
        (
            "trustDomain is Istio's local alias",
            |bc| fed(bc)["spec"]["trustDomain"] = json!("cluster.local"),
            Expect::Condition(
                "TrustBundleReady",
                "False",
                "InvalidSpec",
                "spec.trustDomain \"cluster.local\" is Istio's alias for the local trust domain and cannot name a peer without annotation federation.istio.deckhouse.io/accept-cluster-local-trust-domain: \"true\"; no root certificate is trusted for it. Root certificates installed for it earlier are removed.",
            ),
        ),
        (
            "metadataEndpoint with user and password",
            |bc| {
                fed(bc)["spec"]["metadataEndpoint"] =
                    json!("https://user:secret@istio-metadata.b.example/metadata/")
            },
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "InvalidSpec",
                "spec.metadataEndpoint \"https://***@istio-metadata.b.example/metadata/\" carries user information (user:password@), which would be sent to the peer: remove it",
            ),
        ),
        (
            "metadataEndpoint with an empty user",
            |bc| fed(bc)["spec"]["metadataEndpoint"] = json!("https://@istio-metadata.b.example/"),
            Expect::Condition(
                "PrivateMetadataExchangeReady",
                "False",
                "InvalidSpec",
                "spec.metadataEndpoint \"https://***@istio-metadata.b.example/\" carries user information",
            ),
        ),
        (
            "metadataEndpoint over plain http with a password",
            |bc| fed(bc)["spec"]["metadataEndpoint"] = json!("http://user:secret@h/metadata/"),
            Expect::Ok(r#"spec.metadataEndpoint \"http://***@h/metadata/\" must be an https:// URL"#),
        ),
        (
            "trustDomain missing",
            |bc| {
                fed(bc)["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("trustDomain");
            },
            Expect::Ok("spec.trustDomain must be a non-empty string"),
        ),
        (
            "metadataEndpoint over plain http",
            |bc| fed(bc)["spec"]["metadataEndpoint"] = json!("http://h/metadata/"),
            Expect::Ok("must be an https:// URL"),
        ),
        (
            "metadataEndpoint missing",
            |bc| {
                fed(bc)["spec"]
                    .as_object_mut()
                    .unwrap()
                    .remove("metadataEndpoint");
            },
            Expect::Ok("spec.metadataEndpoint must be a non-empty string"),
        ),
        (
            "spec is a string",
            |bc| fed(bc)["spec"] = json!("oops"),
            Expect::Ok("IstioFederation b: spec.trustDomain must be a non-empty string"),
        ),
        (
            "enableInsecureConnection as a string",
            |bc| fed(bc)["spec"]["metadata"] = json!({"enableInsecureConnection": "yes"}),
            Expect::Ok("spec.metadata.enableInsecureConnection must be a boolean"),
        ),
        (
            "clusterCA as a number",
            |bc| fed(bc)["spec"]["metadata"] = json!({"clusterCA": 7}),
            Expect::Ok("spec.metadata.clusterCA must be a string"),
        ),
        (
            "cached public is a string",
            |bc| fed(bc)["status"]["metadataCache"]["public"] = json!("corrupt"),
            Expect::Condition("TrustBundleReady", "False", "InvalidPublicMetadata", "kept"),
        ),
        (
            "cached rootCA is garbage",
            |bc| {
                fed(bc)["status"]["metadataCache"]["public"]["rootCA"] =
                    json!("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            },
            Expect::Condition("TrustBundleReady", "False", "CertificateRejected", "kept"),
        ),
        (
            "cached clusterUUID of 5000 characters",
            |bc| {
                fed(bc)["status"]["metadataCache"]["public"]["clusterUUID"] =
                    json!("u".repeat(5000))
            },
            Expect::Condition(
                "TrustBundleReady",
                "False",
                "InvalidPublicMetadata",
                "at most 128",
            ),
        ),
        (
            "cached clusterUUID is our own",
            |bc| {
                fed(bc)["status"]["metadataCache"]["public"]["clusterUUID"] =
                    json!("deadbeef-mycluster")
            },
            Expect::Condition(
                "TrustBundleReady",
                "False",
                "InvalidPublicMetadata",
                "own UUID",
            ),
        ),
        (
            "cached authnKeyPub is not Ed25519",
            |bc| {
                fed(bc)["status"]["metadataCache"]["public"]["authnKeyPub"] =
                    json!(cert("peer-b-root"))
            },
            Expect::Condition(
                "TrustBundleReady",
                "False",
                "InvalidPublicMetadata",
                "authnKeyPub",
            ),
        ),
        (
            "cached private is an array",
            |bc| fed(bc)["status"]["metadataCache"]["private"] = json!([]),
            Expect::Condition(
                "ServicesImported",
                "False",
                "InvalidPrivateMetadata",
                "kept",
            ),
        ),
        (
            "cached publicServices null",
            |bc| fed(bc)["status"]["metadataCache"]["private"]["publicServices"] = Value::Null,
            Expect::Condition(
                "ServicesImported",
                "False",
                "InvalidPrivateMetadata",
                "kept",
            ),
        ),
        (
            "cached service ports is an object",
            |bc| {
                fed(bc)["status"]["metadataCache"]["private"]["publicServices"][0]["ports"] =
                    json!({"http": 80})
            },
            Expect::Condition(
                "ServicesImported",
                "False",
                "InvalidPrivateMetadata",
                "ports must be an array",
            ),
        ),
        (
            "cached port 70000",
            |bc| {
                fed(bc)["status"]["metadataCache"]["private"]["publicServices"][0]["ports"][0]
                    ["port"] = json!(70000)
            },
            Expect::Condition(
                "ServicesImported",
                "False",
                "InvalidPrivateMetadata",
                "port 70000 is not a number 1-65535",
            ),
        ),
        (
            "cached port negative",
            |bc| {
                fed(bc)["status"]["metadataCache"]["private"]["publicServices"][0]["ports"][0]
                    ["port"] = json!(-1)
            },
            Expect::Condition(
                "ServicesImported",
                "False",
                "InvalidPrivateMetadata",
                "port -1",
            ),
        ),
        (
            "cached port as a float",
            |bc| {
                fed(bc)["status"]["metadataCache"]["private"]["publicServices"][0]["ports"][0]
                    ["port"] = json!(80.5)
            },
            Expect::Condition(
                "ServicesImported",
                "False",
                "InvalidPrivateMetadata",
                "port 80.5",
            ),
        ),
        (
            "cached hostname in our own domain",
            |bc| {
                fed(bc)["status"]["metadataCache"]["private"]["publicServices"][0]["hostname"] =
                    json!("web.prod.svc.my.cluster")
            },
            Expect::Condition(
                "ServicesImported",
                "False",
                "HostnameOutOfScope",
                "outside trust domain b.local",
            ),
        ),
        (
            "cached hostname with unicode",
            |bc| {
                fed(bc)["status"]["metadataCache"]["private"]["publicServices"][0]["hostname"] =
                    json!("wéb.prod.svc.b.local")
            },
            Expect::Condition(
                "ServicesImported",
                "False",
                "InvalidPrivateMetadata",
                "not a lower-case DNS name",
            ),
        ),
        (
            "cached hostname that is an IP",
            |bc| {
                fed(bc)["status"]["metadataCache"]["private"]["publicServices"][0]["hostname"] =
                    json!("10.0.0.1")
            },
            Expect::Condition(
                "ServicesImported",
                "False",
                "InvalidPrivateMetadata",
                "not a lower-case DNS name",
            ),
        ),
        (
            "cached gateway with a port suffix",
            |bc| {
                fed(bc)["status"]["metadataCache"]["private"]["ingressGateways"][0]["address"] =
                    json!("198.51.100.7:443")
            },
            Expect::Condition(
                "ServicesImported",
                "False",
                "NoIngressGateways",
                "none are imported",
            ),
        ),
        (
            "cached gateway with shell metacharacters",
            |bc| {
                fed(bc)["status"]["metadataCache"]["private"]["ingressGateways"][0]["address"] =
                    json!("1.1.1.1; rm -rf /")
            },
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", ""),
        ),
        (
            "cached gateway loopback",
            |bc| set_gateway(bc, "127.0.0.1"),
            Expect::Condition(
                "ServicesImported",
                "False",
                "NoIngressGateways",
                "The peer publishes no usable ingress gateways, so its services cannot be reached; none are imported. Dropped 1 item: ingress gateway 1: address \"127.0.0.1\" is a loopback address.",
            ),
        ),
        (
            "cached gateway IPv6 loopback",
            |bc| set_gateway(bc, "::1"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"::1\" is a loopback address"),
        ),
        (
            "cached gateway IPv4-mapped loopback",
            |bc| set_gateway(bc, "::ffff:127.0.0.1"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"::ffff:127.0.0.1\" is an IPv4-mapped IPv6 address"),
        ),
        (
            "cached gateway IPv4-mapped in hex",
            |bc| set_gateway(bc, "::ffff:7f00:1"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"::ffff:7f00:1\" is an IPv4-mapped IPv6 address"),
        ),
        (
            "cached gateway unspecified",
            |bc| set_gateway(bc, "0.0.0.0"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"0.0.0.0\" is an unspecified address"),
        ),
        (
            "cached gateway IPv6 unspecified",
            |bc| set_gateway(bc, "::"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"::\" is an unspecified address"),
        ),
        (
            "cached gateway cloud metadata",
            |bc| set_gateway(bc, "169.254.169.254"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"169.254.169.254\" is a link-local address"),
        ),
        (
            "cached gateway IPv6 link-local",
            |bc| set_gateway(bc, "fe80::1"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"fe80::1\" is a link-local address"),
        ),
        (
            "cached gateway with a zone",
            |bc| set_gateway(bc, "fe80::1%eth0"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"fe80::1%eth0\" is neither an IP address nor a DNS name"),
        ),
        (
            "cached gateway in brackets",
            |bc| set_gateway(bc, "[::1]"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"[::1]\" is neither an IP address nor a DNS name"),
        ),
        (
            "cached gateway multicast",
            |bc| set_gateway(bc, "224.0.0.1"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"224.0.0.1\" is a multicast address"),
        ),
        (
            "cached gateway IPv6 multicast",
            |bc| set_gateway(bc, "ff02::1"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"ff02::1\" is a multicast address"),
        ),
        (
            "cached gateway broadcast",
            |bc| set_gateway(bc, "255.255.255.255"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"255.255.255.255\" is the broadcast address"),
        ),
        (
            "cached gateway localhost",
            |bc| set_gateway(bc, "LocalHost."),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"localhost.\" is localhost"),
        ),
        (
            "cached gateway single-label name",
            |bc| set_gateway(bc, "kubernetes"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"kubernetes\" is a single-label name, which resolves inside this cluster"),
        ),
        (
            "cached gateway octal IPv4",
            |bc| set_gateway(bc, "0177.0.0.1"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"0177.0.0.1\" is a number resolvers read as an IPv4 address; write it as a dotted quad"),
        ),
        (
            "cached gateway short IPv4",
            |bc| set_gateway(bc, "127.1"),
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", "address \"127.1\" is a number resolvers read as an IPv4 address"),
        ),
        (
            "cached gateway loopback beside a good one",
            |bc| {
                fed(bc)["status"]["metadataCache"]["private"]["ingressGateways"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"address": "127.0.0.1", "port": 15443}))
            },
            Expect::Condition(
                "ServicesImported",
                "True",
                "InvalidPrivateMetadata",
                "Imported 1 service; dropped 1 item: ingress gateway 2: address \"127.0.0.1\" is a loopback address.",
            ),
        ),
        (
            "cached gateway port 0",
            |bc| {
                fed(bc)["status"]["metadataCache"]["private"]["ingressGateways"][0]["port"] =
                    json!(0)
            },
            Expect::Condition("ServicesImported", "False", "NoIngressGateways", ""),
        ),
        (
            "ServiceEntry snapshot item without metadata",
            |bc| {
                bc[0]["snapshots"]["service_entries"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"object": {"kind": "ServiceEntry"}}))
            },
            Expect::Ok(""),
        ),
        (
            "mesh is a number",
            |bc| bc[0]["snapshots"]["trust_bundle"][0]["object"]["data"]["mesh"] = json!(42),
            Expect::Condition(
                "TrustBundleReady",
                "False",
                "TrustBundleUnavailable",
                "data.mesh is not a string",
            ),
        ),
        (
            "mesh is a YAML list",
            |bc| {
                bc[0]["snapshots"]["trust_bundle"][0]["object"]["data"]["mesh"] =
                    json!("- a\n- b\n")
            },
            Expect::Condition(
                "TrustBundleReady",
                "False",
                "TrustBundleUnavailable",
                "not a YAML mapping",
            ),
        ),
        (
            "mesh is not YAML",
            |bc| {
                bc[0]["snapshots"]["trust_bundle"][0]["object"]["data"]["mesh"] =
                    json!("a: [1,\n  b: {")
            },
            Expect::Condition(
                "TrustBundleReady",
                "False",
                "TrustBundleUnavailable",
                "not valid YAML",
            ),
        ),
        (
            "caCertificates is a string",
            |bc| {
                let m = bc[0]["snapshots"]["trust_bundle"][0]["object"]["data"]["mesh"]
                    .as_str()
                    .unwrap()
                    .to_string();
                bc[0]["snapshots"]["trust_bundle"][0]["object"]["data"]["mesh"] = json!(
                    m.replace("caCertificates:\n", "caCertificatesX:\n") + "caCertificates: oops\n"
                );
            },
            Expect::Condition(
                "TrustBundleReady",
                "False",
                "TrustBundleUnavailable",
                "caCertificates in data.mesh is not a list",
            ),
        ),
        (
            // Go's YAML reads `.inf` as a float JSON cannot hold; the text is not ours to judge.
            "mesh with a .inf value",
            |bc| {
                bc[0]["snapshots"]["trust_bundle"][0]["object"]["data"]["mesh"] = json!(
                    "trustDomain: my.cluster\ndefaultConfig:\n  proxyMetadata:\n    RATIO: .inf\n"
                )
            },
            Expect::MeshAppended,
        ),
        (
            // Go's YAML 1.1 reads `010` as 8; re-serialising it once wrote `10.0`.
            "mesh with concurrency: 010",
            |bc| {
                bc[0]["snapshots"]["trust_bundle"][0]["object"]["data"]["mesh"] =
                    json!("# octal to Go\nconcurrency: 010\ntrustDomain: my.cluster # ours\n")
            },
            Expect::MeshAppended,
        ),
        (
            "ownership annotation is not JSON",
            |bc| {
                bc[0]["snapshots"]["trust_bundle"][0]["object"]["metadata"]["annotations"]
                    ["federation.istio.deckhouse.io/managed-trust-entries"] = json!("{not json")
            },
            Expect::Ok("treating no trust entries as ours"),
        ),
        (
            "key pair priv.pem not base64",
            |bc| {
                bc[0]["snapshots"]["authn_keypair"][0]["object"]["data"]["priv.pem"] = json!("%%%")
            },
            Expect::Ok(""),
        ),
        (
            "local root is garbage",
            |bc| {
                bc[0]["snapshots"]["local_root_ca"][0]["object"]["data"]["root-cert.pem"] =
                    json!("garbage")
            },
            Expect::Ok(""),
        ),
        (
            "a second federation claiming our trust domain in upper case",
            |bc| add_federation(bc, "impostor", "MY.CLUSTER"),
            Expect::Ok("IstioFederation impostor: spec.trustDomain MY.CLUSTER is this cluster's own trust domain; skipped"),
        ),
        (
            "a second federation with Istio's local alias",
            |bc| add_federation(bc, "impostor", "cluster.local"),
            Expect::Ok(r#"IstioFederation impostor: spec.trustDomain \"cluster.local\" is Istio's alias for the local trust domain and cannot name a peer without annotation federation.istio.deckhouse.io/accept-cluster-local-trust-domain: \"true\"; nothing is imported or trusted for it"#),
        ),
        (
            "a second federation claiming our trust domain",
            |bc| {
                let mut other = bc[0]["snapshots"]["federations"][0].clone();
                other["object"]["metadata"]["name"] = json!("impostor");
                other["object"]["spec"]["trustDomain"] = json!("my.cluster");
                bc[0]["snapshots"]["federations"]
                    .as_array_mut()
                    .unwrap()
                    .push(other);
            },
            Expect::Ok("spec.trustDomain my.cluster is this cluster's own trust domain; skipped"),
        ),
        (
            "cached rootCA over MAX_ROOTS_PER_PEER",
            |bc| {
                let roots = format!("{}{}", cert("peer-b-root"), cert("leaf").repeat(8));
                fed(bc)["status"]["metadataCache"]["public"]["rootCA"] = json!(roots);
            },
            Expect::Condition(
                "TrustBundleReady",
                "False",
                "LimitExceeded",
                "Cached public metadata is unusable: rootCA carries 9 certificates, more than MAX_ROOTS_PER_PEER=8; the document is refused as a whole. Root certificates installed earlier are kept.",
            ),
        ),
        (
            "cached private over MAX_GATEWAYS_PER_PEER",
            |bc| {
                let gws: Vec<Value> = (1..=65)
                    .map(|i| json!({"address": format!("198.51.100.{i}"), "port": 15443}))
                    .collect();
                fed(bc)["status"]["metadataCache"]["private"]["ingressGateways"] = json!(gws);
            },
            Expect::Condition(
                "ServicesImported",
                "False",
                "LimitExceeded",
                "Cached private metadata is unusable: ingressGateways carries 65 gateways, more than MAX_GATEWAYS_PER_PEER=64; the document is refused as a whole. ServiceEntries created earlier are kept.",
            ),
        ),
        (
            "cached private over MAX_SERVICES_PER_PEER",
            |bc| {
                let svcs: Vec<Value> = (0..2001)
                    .map(|i| json!({"hostname": format!("s{i}.b.local"), "ports": [{"name": "http", "port": 80}]}))
                    .collect();
                fed(bc)["status"]["metadataCache"]["private"]["publicServices"] = json!(svcs);
            },
            Expect::Condition(
                "ServicesImported",
                "False",
                "LimitExceeded",
                "publicServices carries 2001 services, more than MAX_SERVICES_PER_PEER=2000",
            ),
        ),
        (
            "a later federation caches b's clusterUUID",
            |bc| {
                let mut other = bc[0]["snapshots"]["federations"][0].clone();
                other["object"]["metadata"]["name"] = json!("z-dup");
                other["object"]["spec"]["trustDomain"] = json!("z.local");
                bc[0]["snapshots"]["federations"]
                    .as_array_mut()
                    .unwrap()
                    .push(other);
            },
            // b has it cached and sorts first: z-dup's cache is unusable, b is untouched.
            Expect::Condition(
                "TrustBundleReady",
                "False",
                "DuplicateClusterUUID",
                "Cached public metadata is unusable: clusterUUID uuid-b belongs to IstioFederation b; the document is refused. Root certificates installed earlier are kept.",
            ),
        ),
        (
            "a parent trust domain claims b's host",
            |bc| {
                let mut other = bc[0]["snapshots"]["federations"][0].clone();
                let o = &mut other["object"];
                o["metadata"]["name"] = json!("a-parent");
                o["spec"]["trustDomain"] = json!("local");
                o["status"]["metadataCache"]["public"] = json!({"clusterUUID": "uuid-c",
                    "authnKeyPub": cert("peer-c-authn-pub"), "rootCA": cert("peer-c-root")});
                o["status"]["metadataCache"]["private"] = json!({
                    "ingressGateways": [{"address": "203.0.113.9", "port": 15443}],
                    "publicServices": [{"hostname": "web.prod.svc.b.local", "ports": [{"name": "http", "port": 8080}]}]});
                bc[0]["snapshots"]["federations"]
                    .as_array_mut()
                    .unwrap()
                    .insert(0, other);
            },
            Expect::Condition(
                "ServicesImported",
                "False",
                "HostnameOutOfScope",
                "Imported 0 services; dropped 1 item: service web.prod.svc.b.local: hostname belongs to IstioFederation b (trust domain b.local).",
            ),
        ),
        (
            "managed objects of a foreign namespace and kind",
            |bc| {
                let labels = json!({"app.kubernetes.io/managed-by": "istio-federation-hook"});
                let items = bc[0]["snapshots"]["service_entries"].as_array_mut().unwrap();
                items.push(json!({"object": {"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
                    "metadata": {"name": "elsewhere", "namespace": "default", "labels": labels.clone()},
                    "spec": {"hosts": ["x.b.local"]}}}));
                items.push(json!({"object": {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "svc", "namespace": "d8-istio", "labels": labels.clone()},
                    "spec": {"ports": [{"port": 80}]}}}));
                bc[0]["snapshots"]["destination_rules"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"object": {"apiVersion": "networking.istio.io.evil.example/v1", "kind": "DestinationRule",
                        "metadata": {"name": "lookalike", "namespace": "d8-istio", "labels": labels}}}));
            },
            Expect::Ok("is not a ServiceEntry of networking.istio.io in d8-istio; not deleted"),
        ),
        (
            "federation name of 70 characters",
            |bc| fed(bc)["metadata"]["name"] = json!("b".repeat(70)),
            // check_operations refuses an invalid label value on any object.
            Expect::Ok(""),
        ),
        (
            "deeply nested junk in status",
            |bc| {
                let mut v = json!(1);
                for _ in 0..100 {
                    v = json!([v]);
                }
                fed(bc)["status"]["junk"] = v;
            },
            Expect::Ok(""),
        ),
    ]
}

fn raw_context_cases() -> Vec<(&'static str, &'static str, Expect)> {
    vec![
        ("truncated JSON", r#"[{"binding": "x", "type": "Group", "snapshots": {"federations": ["#, Expect::Fail("binding context is not valid JSON")),
        ("top-level object", r#"{"binding": "x"}"#, Expect::Fail("binding context must be a JSON array of contexts, got an object")),
        ("top-level number", "42", Expect::Fail("got a number")),
        ("top-level null", "null", Expect::Fail("got null")),
        ("array of strings", r#"["a"]"#, Expect::Fail("binding context item 0 is not a JSON object")),
        ("binding is a number", r#"[{"binding": 1}]"#, Expect::Fail("must be a string, got a number")),
        ("type is an array", r#"[{"binding": "x", "type": []}]"#, Expect::Fail("must be a string, got an array")),
        ("snapshots is an array", r#"[{"binding": "x", "snapshots": []}]"#, Expect::Fail("must be an object, got an array")),
        ("snapshot is an object", r#"[{"binding": "x", "snapshots": {"federations": {}}}]"#, Expect::Fail("federations\\\" must be an array, got an object")),
        ("snapshot item is a string", r#"[{"binding": "x", "snapshots": {"federations": ["x"]}}]"#, Expect::Fail("federations\\\" item 0 is not an object")),
        ("byte-order mark", "\u{feff}[]", Expect::Fail("not valid JSON")),
        ("JSON nested past the parser's limit", Box::leak(format!(r#"[{{"binding":"x","snapshots":{{"federations":[{{"object":{{"spec":{}{}}}}}]}}}}]"#, "[".repeat(300), "]".repeat(300)).into_boxed_str()), Expect::Ok("IstioFederation snapshot object unreadable (recursion limit exceeded")),
        ("control character in a string", "[\"\u{1}\"]", Expect::Fail("control character")),
    ]
}

/// (name, environment overrides, values file text, expected outcome).
type EnvCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Option<&'static str>,
    Expect,
);

fn env_cases() -> Vec<EnvCase> {
    vec![
        (
            "values file missing",
            vec![],
            Some("@missing"),
            Expect::Fail("VALUES_PATH"),
        ),
        (
            "values file not JSON or YAML",
            vec![],
            Some("{{{"),
            Expect::Fail("neither JSON nor YAML"),
        ),
        (
            "values enabled is a word",
            vec![],
            Some(r#"{"istio": {"federation": {"enabled": "maybe"}}}"#),
            Expect::Fail("values istio.federation.enabled: expected a boolean"),
        ),
        (
            "values clusterDomain is a number",
            vec![],
            Some(r#"{"global": {"discovery": {"clusterDomain": 42}}}"#),
            Expect::Fail("values global.discovery.clusterDomain: expected a string"),
        ),
        (
            "CLUSTER_DOMAIN with a space",
            vec![("CLUSTER_DOMAIN", "my cluster")],
            None,
            Expect::Fail("is not a valid trust domain"),
        ),
        (
            "CLUSTER_UUID empty",
            vec![("CLUSTER_UUID", "")],
            None,
            Expect::Fail("CLUSTER_UUID"),
        ),
        (
            "TRUST_BUNDLE_MODE unknown",
            vec![("TRUST_BUNDLE_MODE", "both")],
            None,
            Expect::Fail("TRUST_BUNDLE_MODE: expected mesh-config or cacerts"),
        ),
        (
            "FETCH_TIMEOUT zero",
            vec![("FETCH_TIMEOUT", "0s")],
            None,
            Expect::Fail("FETCH_TIMEOUT"),
        ),
        (
            "FETCH_CONCURRENCY zero",
            vec![("FETCH_CONCURRENCY", "0")],
            None,
            Expect::Fail("FETCH_CONCURRENCY"),
        ),
        (
            "FETCH_MAX_BYTES one byte",
            vec![("FETCH_MAX_BYTES", "1")],
            None,
            Expect::Fail("FETCH_MAX_BYTES"),
        ),
        (
            "FEDERATION_NAMESPACE invalid",
            vec![("FEDERATION_NAMESPACE", "Bad_NS")],
            None,
            Expect::Fail("FEDERATION_NAMESPACE"),
        ),
        (
            "ISTIO_NETWORKING_API_VERSION foreign",
            vec![("ISTIO_NETWORKING_API_VERSION", "v1")],
            None,
            Expect::Fail("ISTIO_NETWORKING_API_VERSION"),
        ),
        (
            "ISTIO_FEDERATION_ENABLED a word",
            vec![("ISTIO_FEDERATION_ENABLED", "perhaps")],
            None,
            Expect::Fail("ISTIO_FEDERATION_ENABLED"),
        ),
        (
            "ISTIO_FEDERATION_HOOK_NOW not a time",
            vec![("ISTIO_FEDERATION_HOOK_NOW", "yesterday")],
            None,
            Expect::Fail("ISTIO_FEDERATION_HOOK_NOW"),
        ),
        (
            "patch file is a directory",
            vec![("KUBERNETES_PATCH_PATH", "/")],
            None,
            Expect::Fail("KUBERNETES_PATCH_PATH /"),
        ),
    ]
}

#[test]
fn snapshots_contexts_and_settings() {
    let base = offline_base();
    let bc = base.binding_context("refresh_remote_metadata");
    let mut failures = Vec::new();
    let mut n = 0;
    for (name, mutate, expect) in snapshot_cases() {
        let mut bc = bc.clone();
        mutate(&mut bc);
        check(
            name,
            &base,
            &bc.to_string(),
            &base_env(),
            None,
            &expect,
            &mut failures,
        );
        n += 1;
    }
    for (name, raw, expect) in raw_context_cases() {
        check(name, &base, raw, &base_env(), None, &expect, &mut failures);
        n += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, env, values, expect) in env_cases() {
        let mut e = base_env();
        for (k, v) in env {
            e.retain(|(kk, _)| kk != k);
            e.push((k.to_string(), v.to_string()));
        }
        let values_text = match values {
            Some("@missing") => {
                e.push((
                    "VALUES_PATH".into(),
                    dir.path().join("nope.json").to_string_lossy().into_owned(),
                ));
                None
            }
            other => other,
        };
        if values_text.is_some() {
            e.retain(|(k, _)| k != "CLUSTER_DOMAIN" && k != "ISTIO_FEDERATION_ENABLED");
        }
        check(
            name,
            &base,
            &bc.to_string(),
            &e,
            values_text,
            &expect,
            &mut failures,
        );
        n += 1;
    }
    assert!(n >= 60, "{n} cases");
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn hostile_and_broken_peers() {
    let ca = Ca::new("bad-input metadata CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "uuid-b", "b.local", &own);
    let public = serde_json::from_str::<Value>(&peer.public_body).unwrap();
    let base = healthy(
        &format!("{}/", peer.endpoint()),
        public,
        Some(&ca.cert_pem),
        Some(&own),
    );
    let bc = base.binding_context("refresh_remote_metadata").to_string();
    let mut env = base_env();
    env.retain(|(k, _)| k != "ISTIO_FEDERATION_HOOK_OFFLINE");
    env.push(("FETCH_TIMEOUT".into(), "2s".into()));
    env.push(("FETCH_MAX_BYTES".into(), "64KiB".into()));
    let public_doc = |f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_str(&peer.public_body).unwrap();
        f(&mut v);
        Route::ok(v.to_string())
    };
    let expired = pki::root_cert_pem("expired root", true, (2019, 1, 1), (2020, 1, 1));
    let leaf = pki::root_cert_pem("not a CA", false, (2020, 1, 1), (2045, 1, 1));
    let mut cases: Vec<(&str, Route, Option<Route>, Expect)> = vec![
        (
            "public 500",
            Route::status(500, "boom"),
            None,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "NonOKResponse",
                "HTTP status 500 when fetching public metadata",
            ),
        ),
        (
            "public 404",
            Route::status(404, "nope"),
            None,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "NonOKResponse",
                "HTTP status 404",
            ),
        ),
        (
            "public truncated JSON",
            Route::ok(r#"{"zzz"#),
            None,
            Expect::Condition("PublicMetadataExchangeReady", "False", "InvalidJSON", ""),
        ),
        (
            "public is an array",
            Route::ok("[]"),
            None,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "InvalidPublicMetadata",
                "not a JSON object",
            ),
        ),
        (
            "public wrong format",
            Route::ok(r#"{"wrong":"format"}"#),
            None,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "InvalidPublicMetadata",
                "clusterUUID, authnKeyPub, and rootCA must be non-empty",
            ),
        ),
        (
            "public root is not a CA",
            public_doc(&|v| v["rootCA"] = json!(leaf.clone())),
            None,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "CertificateRejected",
                "not a CA",
            ),
        ),
        (
            "public root expired",
            public_doc(&|v| v["rootCA"] = json!(expired.clone())),
            None,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "CertificateRejected",
                "expired on 2020-01-01",
            ),
        ),
        (
            "public presents our own root",
            public_doc(&|v| v["rootCA"] = json!(cert("local-root"))),
            None,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "CertificateRejected",
                "our own root",
            ),
        ),
        (
            "public claims our UUID",
            public_doc(&|v| v["clusterUUID"] = json!("deadbeef-mycluster")),
            None,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "InvalidPublicMetadata",
                "own UUID",
            ),
        ),
        (
            "public key is not Ed25519",
            public_doc(&|v| {
                v["authnKeyPub"] =
                    json!("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
            }),
            None,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "InvalidPublicMetadata",
                "authnKeyPub",
            ),
        ),
        (
            "public body over the cap",
            Route::ok(vec![b' '; 100 * 1024]),
            None,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "ResponseTooLarge",
                "",
            ),
        ),
        (
            "public redirects elsewhere",
            Route::redirect("https://127.0.0.2:1/metadata/public/public.json"),
            None,
            Expect::Condition("PublicMetadataExchangeReady", "False", "FetchFailed", ""),
        ),
        (
            "public redirects to itself with credentials",
            Route::redirect(
                &peer
                    .public_url()
                    .replace("https://", "https://peer-user:peer-pass@"),
            ),
            None,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "FetchFailed",
                "public/public.json: redirect to a URL with user information refused",
            ),
        ),
        (
            "private 500",
            Route::ok(peer.public_body.clone()),
            Some(Route::status(500, "x")),
            Expect::Condition(
                "PrivateMetadataExchangeReady",
                "False",
                "NonOKResponse",
                "HTTP status 500 when fetching private metadata",
            ),
        ),
        (
            "private publicServices null",
            Route::ok(peer.public_body.clone()),
            Some(Route::ok(r#"{"ingressGateways":[],"publicServices":null}"#)),
            Expect::Condition(
                "PrivateMetadataExchangeReady",
                "False",
                "InvalidPrivateMetadata",
                "ingressGateways and publicServices must be set",
            ),
        ),
        (
            "private steals our hostnames",
            Route::ok(peer.public_body.clone()),
            Some(Route::ok(
                r#"{"ingressGateways":[{"address":"198.51.100.7","port":15443}],"publicServices":[{"hostname":"api.prod.svc.my.cluster","ports":[{"name":"http","port":80}]}]}"#,
            )),
            // The last good metadata's web service stays imported (item-level last-known-good).
            Expect::Condition(
                "ServicesImported",
                "True",
                "HostnameOutOfScope",
                "api.prod.svc.my.cluster: hostname is outside trust domain b.local. Kept 1 gateway(s)/service(s) of the last good metadata",
            ),
        ),
        (
            "private never answers",
            Route::ok(peer.public_body.clone()),
            Some(Route::never_answer()),
            Expect::Condition("PrivateMetadataExchangeReady", "False", "FetchFailed", ""),
        ),
        (
            "private is not JSON",
            Route::ok(peer.public_body.clone()),
            Some(Route::ok("<html>")),
            Expect::Condition("PrivateMetadataExchangeReady", "False", "InvalidJSON", ""),
        ),
    ];
    // A peer publishing each odd root next to its valid one: the valid root stays trusted, the
    // odd one is named and never reaches the bundle; and all nine at once.
    let valid_root = peer.root_pem.clone();
    let with_roots = |odd: &[&str]| {
        let bundle: String = std::iter::once(valid_root.clone())
            .chain(odd.iter().map(|n| oracle_root(n)))
            .collect();
        public_doc(&|v| v["rootCA"] = json!(bundle))
    };
    let trusting = |ignored: &[(usize, &str)]| {
        let ignored: Vec<String> = ignored
            .iter()
            .map(|(i, text)| format!("certificate {i}: {text}"))
            .collect();
        Expect::Trusted(
            format!(
                "Trusting 1 root certificate for trust domain b.local. Ignored: {}.",
                ignored.join("; ")
            ),
            vec![valid_root.clone()],
        )
    };
    for (name, text) in ODD_ROOTS {
        cases.push((
            Box::leak(format!("public root {name} next to a valid one").into_boxed_str()),
            with_roots(&[name]),
            None,
            trusting(&[(2, text)]),
        ));
    }
    let all: Vec<&str> = ODD_ROOTS.iter().map(|(n, _)| *n).collect();
    let texts: Vec<(usize, &str)> = ODD_ROOTS
        .iter()
        .enumerate()
        .map(|(i, (_, t))| (i + 2, *t))
        .collect();
    let mut failures = Vec::new();
    for (name, public, private, expect) in cases {
        peer.serve_public(public);
        peer.serve_private(
            private.unwrap_or_else(|| Route::ok(peer.private_body.clone())),
            &own,
        );
        check(name, &base, &bc, &env, None, &expect, &mut failures);
    }
    // All nine at once: ten roots, so with the per-peer root limit (which has its own cases
    // above) raised to fit them. The condition lists five refusals, then how many more.
    let Expect::Trusted(listed, trusted) = trusting(&texts[..5]) else {
        unreachable!()
    };
    let all_nine = Expect::Trusted(
        listed.trim_end_matches('.').to_string() + "; and 4 more.",
        trusted,
    );
    let mut roomy = env.clone();
    roomy.push(("MAX_ROOTS_PER_PEER".into(), "10".into()));
    peer.serve_public(with_roots(&all));
    peer.serve_private(Route::ok(peer.private_body.clone()), &own);
    check(
        "public roots: all nine odd ones next to a valid one (MAX_ROOTS_PER_PEER=10)",
        &base,
        &bc,
        &roomy,
        None,
        &all_nine,
        &mut failures,
    );
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// `metadataEndpoint` with credentials, against a live peer: no request reaches it, the
/// exchange conditions say why, the federation keeps working from its cache, and the password
/// appears nowhere — not in logs, patches, conditions or the metrics' endpoint label.
#[test]
fn credentials_in_the_endpoint_are_never_sent_or_shown() {
    let ca = Ca::new("bad-input metadata CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "uuid-b", "b.local", &own);
    let public = serde_json::from_str::<Value>(&peer.public_body).unwrap();
    let endpoint = peer
        .endpoint()
        .replace("https://", "https://fed-user:s3cr3t-pass@");
    let base = healthy(&endpoint, public, Some(&ca.cert_pem), Some(&own));
    let bc = base.binding_context("refresh_remote_metadata").to_string();
    let mut env = base_env();
    env.retain(|(k, _)| k != "ISTIO_FEDERATION_HOOK_OFFLINE");
    env.push(("FETCH_TIMEOUT".into(), "2s".into()));
    env.push(("LOG_LEVEL".into(), "debug".into()));
    let mut failures = Vec::new();
    // The baseline (offline) run already set the conditions; b's objects are in place.
    let conditions = base.objects["federations"][0]["status"]["conditions"].clone();
    let want = format!(
        "spec.metadataEndpoint \"{}\" carries user information (user:password@), which would be sent to the peer: remove it, the hook authenticates with its own signed token; no request is made.",
        peer.endpoint().replace("https://", "https://***@")
    );
    for kind in [
        "PublicMetadataExchangeReady",
        "PrivateMetadataExchangeReady",
    ] {
        let c = conditions
            .as_array()
            .and_then(|l| l.iter().find(|c| c["type"] == kind));
        if !c.is_some_and(|c| {
            c["status"] == "False" && c["reason"] == "InvalidSpec" && c["message"] == want.as_str()
        }) {
            failures.push(format!("{kind}: {c:?}, want InvalidSpec ~ {want}"));
        }
    }
    // A networked run: nothing to change, and still nothing sent.
    let r = run_hook(&bc, &env, None);
    if r.code != 0 || !r.patches.is_empty() {
        failures.push(format!(
            "networked run: exit {}, patches {}",
            r.code, r.patches
        ));
    }
    let baseline = serde_json::to_string(&base.objects).unwrap();
    for (what, text) in [
        ("stderr", &r.stderr),
        ("patches", &r.patches),
        ("metrics", &r.metrics),
        ("objects written", &baseline),
    ] {
        let shown = text.replace("fed-user:s3cr3t-pass@", "");
        if shown.contains("s3cr3t") || shown.contains("fed-user") {
            failures.push(format!("{what} shows the endpoint's credentials: {text}"));
        }
    }
    let requests = peer.server.requests();
    if !requests.is_empty() {
        failures.push(format!(
            "{} request(s) reached the peer: {requests:?}",
            requests.len()
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Fresh documents over the per-peer limits or the object budget, a peer publishing another
/// federation's cluster UUID, and one publishing another's host from a parent trust domain:
/// each refused or held with its exact condition, and b keeps what it had.
#[test]
fn limits_budget_and_claims_of_fresh_peers() {
    let ca = Ca::new("bad-input metadata CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "uuid-b", "b.local", &own);
    let public = serde_json::from_str::<Value>(&peer.public_body).unwrap();
    let base = healthy(
        &format!("{}/", peer.endpoint()),
        public,
        Some(&ca.cert_pem),
        Some(&own),
    );
    let bc = base.binding_context("refresh_remote_metadata");
    let mut env = base_env();
    env.retain(|(k, _)| k != "ISTIO_FEDERATION_HOOK_OFFLINE");
    env.push(("FETCH_TIMEOUT".into(), "5s".into()));
    let leaf = pki::root_cert_pem("not a CA", false, (2020, 1, 1), (2045, 1, 1));
    let private_doc = |gateways: usize, services: Vec<Value>| {
        let gws: Vec<Value> = (1..=gateways)
            .map(|i| json!({"address": format!("198.51.{}.{}", i / 250, i % 250 + 1), "port": 15443}))
            .collect();
        Route::ok(json!({"ingressGateways": gws, "publicServices": services}).to_string())
    };
    let service = |host: String, ports: u16| {
        let ports: Vec<Value> = (1..=ports)
            .map(|p| json!({"name": format!("tcp-{p}"), "port": p}))
            .collect();
        json!({"hostname": host, "ports": ports})
    };
    let mut nine_roots: Value = serde_json::from_str(&peer.public_body).unwrap();
    nine_roots["rootCA"] = json!(format!("{}{}", peer.root_pem, leaf.repeat(8)));
    let cases: Vec<(&str, Route, Route, Expect)> = vec![
        (
            "public rootCA over MAX_ROOTS_PER_PEER",
            Route::ok(nine_roots.to_string()),
            Route::ok(peer.private_body.clone()),
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "LimitExceeded",
                "rootCA carries 9 certificates, more than MAX_ROOTS_PER_PEER=8; the document is refused as a whole",
            ),
        ),
        (
            "private over MAX_GATEWAYS_PER_PEER",
            Route::ok(peer.public_body.clone()),
            private_doc(65, vec![service("web.prod.svc.b.local".into(), 1)]),
            Expect::Condition(
                "PrivateMetadataExchangeReady",
                "False",
                "LimitExceeded",
                "ingressGateways carries 65 gateways, more than MAX_GATEWAYS_PER_PEER=64",
            ),
        ),
        (
            "private over MAX_SERVICES_PER_PEER",
            Route::ok(peer.public_body.clone()),
            private_doc(1, (0..2001).map(|i| service(format!("s{i}.b.local"), 1)).collect()),
            Expect::Condition(
                "PrivateMetadataExchangeReady",
                "False",
                "LimitExceeded",
                "publicServices carries 2001 services, more than MAX_SERVICES_PER_PEER=2000",
            ),
        ),
        (
            "private whose cache would exceed the status budget",
            Route::ok(peer.public_body.clone()),
            private_doc(1, (0..1000).map(|i| service(format!("s{i}.b.local"), 40)).collect()),
            Expect::Condition(
                "ServicesImported",
                "False",
                "ObjectTooLarge",
                "Caching the private metadata in this IstioFederation's status would exceed the 900 KiB object budget; the last good metadata's 1 service stay imported.",
            ),
        ),
    ];
    let mut failures = Vec::new();
    let bc_text = bc.to_string();
    for (name, public, private, expect) in cases {
        peer.serve_public(public);
        peer.serve_private(private, &own);
        check(name, &base, &bc_text, &env, None, &expect, &mut failures);
    }
    // A ServiceEntry over the budget: a service keeps at most 128 ports (what an endpoint
    // carries), so it takes more gateways than the default MAX_GATEWAYS_PER_PEER allows.
    let mut many_gateways = env.clone();
    many_gateways.push(("MAX_GATEWAYS_PER_PEER".into(), "1000".into()));
    peer.serve_public(Route::ok(peer.public_body.clone()));
    peer.serve_private(
        private_doc(600, vec![service("big.b.local".into(), 128)]),
        &own,
    );
    check(
        "private whose ServiceEntry would exceed the budget",
        &base,
        &bc_text,
        &many_gateways,
        None,
        &Expect::Condition(
            "ServicesImported",
            "False",
            "ObjectTooLarge",
            "for host big.b.local would exceed the 900 KiB object budget; the last good metadata's 1 service stay imported.",
        ),
        &mut failures,
    );
    peer.serve_public(Route::ok(peer.public_body.clone()));
    peer.serve_private(Route::ok(peer.private_body.clone()), &own);

    // Another federation's peer publishes b's clusterUUID (b has it cached): refused.
    let thief = Peer::start(&ca, "uuid-b", "thief.local", &own);
    // One with the parent trust domain `local` publishes b's host: dropped, naming b.
    let parent = Peer::start(&ca, "uuid-parent", "local", &own);
    parent.serve_private(
        private_doc(1, vec![service("web.prod.svc.b.local".into(), 1)]),
        &own,
    );
    for (name, fed_name, p, expect) in [
        (
            "a peer publishes b's clusterUUID",
            "a-thief",
            &thief,
            Expect::Condition(
                "PublicMetadataExchangeReady",
                "False",
                "DuplicateClusterUUID",
                "clusterUUID uuid-b belongs to IstioFederation b; the document is refused",
            ),
        ),
        (
            "a parent trust domain publishes b's host",
            "a-parent",
            &parent,
            Expect::Condition(
                "ServicesImported",
                "False",
                "HostnameOutOfScope",
                "dropped 1 item: service web.prod.svc.b.local: hostname belongs to IstioFederation b (trust domain b.local)",
            ),
        ),
    ] {
        let mut bc = bc.clone();
        let mut other = bc[0]["snapshots"]["federations"][0].clone();
        other["object"]["metadata"]["name"] = json!(fed_name);
        other["object"]["spec"]["trustDomain"] = json!(p.trust_domain);
        other["object"]["spec"]["metadataEndpoint"] = json!(format!("{}/", p.endpoint()));
        other["object"]["status"] = json!({});
        bc[0]["snapshots"]["federations"]
            .as_array_mut()
            .unwrap()
            .insert(0, other);
        let bc_text = bc.to_string();
        check(name, &base, &bc_text, &env, None, &expect, &mut failures);
        // Nothing of the other federation reaches b's ServiceEntry.
        let r = run_hook(&bc_text, &env, None);
        for op in ndjson(&r.patches) {
            if op["object"]["kind"] == "ServiceEntry" {
                failures.push(format!("{name}: wrote a ServiceEntry: {op}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Raw requests to `serve`: each gets the exact status, and the server keeps answering.
#[test]
fn hostile_requests_to_serve() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("public.json"), json!({"clusterUUID": "own", "authnKeyPub": cert("deckhouse-fixture-pub"), "rootCA": cert("peer-b-root")}).to_string()).unwrap();
    std::fs::write(
        dir.path().join("federation.json"),
        r#"{"ingressGateways":[],"publicServices":[]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("remote-public-metadata.json"), "{}").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(common::bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metadata-dir",
        ])
        .arg(dir.path())
        .env("LOG_LEVEL", "error")
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let request = |raw: &[u8]| -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = s.write_all(raw);
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    let big_header = format!("GET /metadata/public/public.json HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "a".repeat(40 * 1024));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("no token", b"GET /metadata/private/federation.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), "HTTP/1.1 401"),
        ("not a bearer", b"GET /metadata/private/federation.json HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Zm9vOmJhcg==\r\nConnection: close\r\n\r\n".to_vec(), "HTTP/1.1 401"),
        ("garbage token", b"GET /metadata/private/federation.json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a.b.c\r\nConnection: close\r\n\r\n".to_vec(), "HTTP/1.1 401"),
        ("alg none token", b"GET /metadata/private/federation.json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer eyJhbGciOiJub25lIn0.e30.\r\nConnection: close\r\n\r\n".to_vec(), "HTTP/1.1 401"),
        ("POST", b"POST /metadata/public/public.json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(), "HTTP/1.1 405"),
        ("path traversal", b"GET /metadata/public/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), "HTTP/1.1 404"),
        ("oversized header", big_header.into_bytes(), "HTTP/1.1 431"),
        ("not HTTP", b"\x16\x03\x01\x00\x05hello\r\n\r\n".to_vec(), "HTTP/1.1 400"),
        ("body too large", format!("GET /metadata/public/public.json HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 10 * 1024 * 1024).into_bytes(), "HTTP/1.1 413"),
    ];
    let mut failures = Vec::new();
    for (name, raw, want) in cases {
        let got = request(&raw);
        if !got.starts_with(want) {
            failures.push(format!("{name}: expected {want}, got {got:?}"));
        }
    }
    // Still healthy after all of it.
    let ok = request(
        b"GET /metadata/public/public.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
