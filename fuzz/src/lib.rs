//! Bodies of the fuzz targets and the invariants they assert.
//!
//! Shared by the libFuzzer binaries in `fuzz/fuzz_targets/` and by the plain test
//! `tests/fuzz_regressions.rs` of the main crate, which includes this file as a module
//! (`#[path = "../fuzz/src/lib.rs"]`) and replays `fuzz/seeds/` and `fuzz/regressions/`
//! through the very same functions. So this file uses nothing but the main crate, its
//! dependencies (serde_json, base64, ring, x509-parser) and its dev-dependency json-patch, and
//! only stable Rust.
//!
//! Every function panics (the fuzzer's "crash") when the product panics or when an
//! invariant stated in docs/ does not hold; it returns normally otherwise.

use base64::Engine as _;
use istio_federation_hook::discovery::observed::{self, Observed};
use istio_federation_hook::discovery::reconcile;
use istio_federation_hook::discovery::status::metrics;
use istio_federation_hook::hook::binding;
use istio_federation_hook::hook::operations::{self as patch, Operation};
use istio_federation_hook::hook::settings::Settings;
use istio_federation_hook::protocol::failure::Reason;
use istio_federation_hook::protocol::metadata::{self, Own};
use istio_federation_hook::protocol::secret;
use istio_federation_hook::protocol::{certs, jwt, names};
use istio_federation_hook::{export, serve};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The clock of every target: the golden tests' `2027-01-01T00:00:00Z`, when the fixtures in
/// testdata/certs are valid (and `expired-root` / `expiring-root` are what their names say).
pub const NOW: i64 = 1_798_761_600;
/// Own identity (the golden cases' `env`).
pub const OWN_DOMAIN: &str = "my.cluster";
pub const OWN_CLUSTER_UUID: &str = "deadbeef-mycluster";
/// What the `jwt` target verifies against.
pub const JWT_AUDIENCE: &str = "own-uuid";
pub const JWT_SCOPE: &str = "private-federation";
pub const JWT_SUBJECT: &str = "peer";

const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
const MANAGED_BY_VALUE: &str = "istio-federation-hook";
const TRUST_ENTRIES_ANNOTATION: &str = "federation.istio.deckhouse.io/managed-trust-entries";
const SERVER_OWNED: [&str; 7] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
];

const LOCAL_ROOT: &str = include_str!("../../testdata/certs/local-root.pem");
const PEER_B_ROOT: &str = include_str!("../../testdata/certs/peer-b-root.pem");
const PEER_B_ROOT_2: &str = include_str!("../../testdata/certs/peer-b-root-2.pem");
const PEER_C_ROOT: &str = include_str!("../../testdata/certs/peer-c-root.pem");
const PEER_B_AUTHN_PUB: &str = include_str!("../../testdata/certs/peer-b-authn-pub.pem");
const PEER_C_AUTHN_PUB: &str = include_str!("../../testdata/certs/peer-c-authn-pub.pem");
const FIXTURE_PRIV: &str = include_str!("../../testdata/certs/deckhouse-fixture-priv.pem");
const FIXTURE_PUB: &str = include_str!("../../testdata/certs/deckhouse-fixture-pub.pem");

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn fingerprint_of(pem: &str) -> String {
    certs::certificate_fingerprints(pem)
        .into_iter()
        .next()
        .expect("fixture certificate")
}

/// Enabled settings, as the hook reads them from the environment.
pub fn settings(cacerts: bool) -> &'static Settings {
    static MESH: OnceLock<Settings> = OnceLock::new();
    static CACERTS: OnceLock<Settings> = OnceLock::new();
    let (cell, mode) = if cacerts {
        (&CACERTS, "cacerts")
    } else {
        (&MESH, "mesh-config")
    };
    cell.get_or_init(|| {
        let env = |k: &str| -> Option<String> {
            match k {
                "ISTIO_FEDERATION_ENABLED" => Some("true".into()),
                "CLUSTER_DOMAIN" => Some(OWN_DOMAIN.into()),
                "CLUSTER_UUID" => Some(OWN_CLUSTER_UUID.into()),
                "TRUST_BUNDLE_MODE" => Some(mode.into()),
                _ => None,
            }
        };
        let s = Settings::load(None, &env).expect("fixed settings load");
        s.check_required().expect("fixed settings are complete");
        s
    })
}

// ---------------------------------------------------------------------------------------------
// binding_reconcile
// ---------------------------------------------------------------------------------------------

/// The fixed rest of the Group context the structured mode wraps an IstioFederation into:
/// every snapshot of a discovery run, with a second federation (`c`, valid cached metadata)
/// to merge with, a key pair, the local root, a trust-bundle object for the mode that already
/// holds an entry we own, and a stale managed plus an unmanaged ServiceEntry/DestinationRule.
fn fixed_snapshots(cacerts: bool) -> &'static Map<String, Value> {
    static MESH: OnceLock<Map<String, Value>> = OnceLock::new();
    static CACERTS: OnceLock<Map<String, Value>> = OnceLock::new();
    let cell = if cacerts { &CACERTS } else { &MESH };
    cell.get_or_init(|| {
        let owned = json!({"b.local": [fingerprint_of(PEER_B_ROOT_2)]}).to_string();
        let trust = if cacerts {
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "cacerts", "namespace": "d8-istio", "resourceVersion": "9",
                    "annotations": {TRUST_ENTRIES_ANNOTATION: owned}},
                "data": {"ca-cert.pem": b64(LOCAL_ROOT), "ca-key.pem": b64("secret"),
                    "cert-chain.pem": b64(LOCAL_ROOT),
                    "root-cert.pem": b64(&format!("{LOCAL_ROOT}{PEER_B_ROOT_2}"))}})
        } else {
            let indented: String = PEER_B_ROOT_2
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect();
            let mesh = format!(
                "accessLogFile: /dev/stdout\ntrustDomain: my.cluster\ncaCertificates:\n- pem: |\n{indented}  trustDomains:\n  - b.local\n- pem: corp\n  trustDomains:\n  - corp.example\n"
            );
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "istio", "namespace": "d8-istio", "resourceVersion": "42",
                    "annotations": {TRUST_ENTRIES_ANNOTATION: owned}},
                "data": {"mesh": mesh, "meshNetworks": "networks: {}"}})
        };
        let fed_c = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation",
            "metadata": {"name": "c", "resourceVersion": "100"},
            "spec": {"trustDomain": "c.local", "metadataEndpoint": "https://istio-metadata.c.example/metadata/"},
            "status": {"metadataCache": {
                "public": {"clusterUUID": "uuid-c", "authnKeyPub": PEER_C_AUTHN_PUB, "rootCA": PEER_C_ROOT},
                "publicLastFetchTimestamp": "2026-12-31T23:55:00Z",
                "private": {"ingressGateways": [{"address": "2.2.2.2", "port": 15443}],
                    "publicServices": [{"hostname": "web.prod.svc.c.local", "ports": [{"name": "http", "port": 8080}]}]},
                "privateLastFetchTimestamp": "2026-12-31T23:55:00Z"}}});
        let managed = json!({MANAGED_BY_LABEL: MANAGED_BY_VALUE,
            "federation.istio.deckhouse.io/federation": "b"});
        let feds = json!({"federation.istio.deckhouse.io/federations": "b"});
        let se = |name: &str, labels: &Value, host: &str| {
            json!({"object": {"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
                "metadata": {"name": name, "namespace": "d8-istio", "labels": labels,
                    "annotations": feds, "resourceVersion": "55", "uid": format!("uid-{name}")},
                "spec": {"hosts": [host], "location": "MESH_INTERNAL",
                    "ports": [{"name": "http", "number": 80, "protocol": "HTTP"}], "resolution": "STATIC",
                    "endpoints": [{"address": "9.9.9.9", "ports": {"http": 15443},
                        "labels": {"security.istio.io/tlsMode": "istio"}}]},
                "status": {"addresses": [{"value": "240.240.0.5", "host": host}]}}})
        };
        let dr = |name: &str, labels: &Value, host: &str| {
            json!({"object": {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
                "metadata": {"name": name, "namespace": "d8-istio", "labels": labels,
                    "annotations": feds, "resourceVersion": "56"},
                "spec": {"host": host, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}}})
        };
        let team = json!({"team": "payments"});
        let mut m = Map::new();
        m.insert("federations".into(), json!([{"object": fed_c}]));
        m.insert(
            "authn_keypair".into(),
            json!([{"object": {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": "d8-remote-authn-keypair", "namespace": "d8-istio", "resourceVersion": "7"},
                "data": {"priv.pem": b64(FIXTURE_PRIV), "pub.pem": b64(FIXTURE_PUB)}}}]),
        );
        m.insert("trust_bundle".into(), json!([{"object": trust}]));
        m.insert(
            "local_root_ca".into(),
            json!([{"object": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "istio-ca-root-cert", "namespace": "d8-istio", "resourceVersion": "3"},
                "data": {"root-cert.pem": LOCAL_ROOT}}}]),
        );
        m.insert(
            "service_entries".into(),
            json!([se("gone-prod-svc-b-local-4b5d6f", &managed, "gone.prod.svc.b.local"),
                se("payments-manual", &team, "pay.example.com")]),
        );
        m.insert(
            "destination_rules".into(),
            json!([dr("gone-prod-svc-b-local-4b5d6f", &managed, "gone.prod.svc.b.local"),
                dr("payments-manual", &team, "pay.example.com")]),
        );
        m
    })
}

/// Structured mode: `federation` (the fuzzer's bytes, parsed) becomes the first item of the
/// `federations` snapshot of a fixed Group context. Returns the context as bytes.
pub fn structured_context(federation: Value, cacerts: bool) -> Vec<u8> {
    let mut snapshots = fixed_snapshots(cacerts).clone();
    if let Some(Value::Array(feds)) = snapshots.get_mut("federations") {
        feds.insert(0, json!({"object": federation}));
    }
    let ctx = json!([{"binding": "refresh_remote_metadata", "type": "Group",
        "groupName": "istio_federation", "snapshots": snapshots}]);
    serde_json::to_vec(&ctx).expect("serialising a Value")
}

/// Target `binding_reconcile`. Byte 0 selects TRUST_BUNDLE_MODE (even: mesh-config, odd:
/// cacerts); the rest is the payload. A payload starting with `{` is one IstioFederation
/// object (structured mode, see [`structured_context`]); anything else is a whole binding
/// context. Runs discovery and export as `main` does (no network: no fetch reports) and
/// checks the outcome.
///
/// Discovery runs twice over the same context, both must agree: as `main` runs it (IstioFederations,
/// ServiceEntries and DestinationRules kept raw and parsed by their typed parsers, operations
/// streamed through `patch::write_one`), and through `binding::parse` (every snapshot a JSON
/// value), `reconcile::reconcile` and `patch::write_ndjson`. The checks read the operations as
/// shell-operator does, from the NDJSON, so they hold whatever types the product uses inside.
pub fn binding_reconcile(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let cacerts = selector & 1 == 1;
    let settings = settings(cacerts);
    let wrapped;
    let context: &[u8] = if payload.first() == Some(&b'{') {
        let Ok(federation) = serde_json::from_slice::<Value>(payload) else {
            return;
        };
        wrapped = structured_context(federation, cacerts);
        &wrapped
    } else {
        payload
    };
    let main_run = discover_main(settings, context);
    let Ok(input) = binding::parse(context) else {
        return;
    };
    let snapshots = input.snapshots.clone();
    let (ops, metric_ops) =
        main_run.expect("binding::parse_with refuses what binding::parse reads");

    // Differential: the same context with unique keys (serde_json keeps the last of duplicate
    // keys, typed parsers may refuse them; shell-operator never writes any) through both paths.
    if let Some(canonical) = canonical(context) {
        let by_main = discover_main(settings, &canonical).expect("a canonical context parses");
        let by_values = discover(settings, &canonical);
        assert!(
            by_main == by_values,
            "raw (typed) and parsed (JSON value) snapshots give different operations\nraw: {}\nvalues: {}",
            Value::Array(by_main.0),
            Value::Array(by_values.0)
        );
    }
    check_discovery(settings, &snapshots, &ops, &metric_ops);
    check_zero_churn(settings, &snapshots, &ops);

    let exported = export::reconcile(settings, &input, None, NOW);
    let export_ops = ndjson(&exported.operations);
    check_export(settings, &snapshots, &export_ops);
}

/// For tests: the operations `binding_reconcile` checks for `data`, and whether the zero-churn
/// model could judge them (`None` when the context does not parse).
pub fn discovery_ops(data: &[u8]) -> Option<(Vec<Value>, bool)> {
    let (&selector, payload) = data.split_first()?;
    let cacerts = selector & 1 == 1;
    let settings = settings(cacerts);
    let context = if payload.first() == Some(&b'{') {
        structured_context(serde_json::from_slice(payload).ok()?, cacerts)
    } else {
        payload.to_vec()
    };
    let (ops, _) = discover_main(settings, &context)?;
    let snapshots = binding::parse(&context).ok()?.snapshots.clone();
    let judged = apply(settings, &snapshots, &ops).is_some();
    Some((ops, judged))
}

/// `context` re-serialised from its JSON value (duplicate keys folded), or `None` when it is
/// blank or not one JSON value.
fn canonical(context: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(context).ok()?;
    serde_json::to_vec(&v).ok()
}

/// Discovery as `main` runs it. `None` when the context does not parse.
fn discover_main(settings: &Settings, context: &[u8]) -> Option<(Vec<Value>, Vec<Value>)> {
    let input = binding::parse_with(context, &observed::RAW_BINDINGS).ok()?;
    let observed = Observed::from_binding(&input);
    let mut buf = Vec::new();
    let mut count = 0usize;
    let metrics =
        reconcile::reconcile_into(settings, &observed, &BTreeMap::new(), NOW, &mut |op| {
            count += 1;
            patch::write_one(&mut buf, &op).map_err(|e| e.to_string())
        })
        .expect("writing operations into a Vec");
    let ops = lines(buf);
    assert_eq!(ops.len(), count, "one NDJSON line per operation");
    for op in &ops {
        assert!(
            op.get("operation").is_some_and(Value::is_string),
            "operation without an `operation` key: {op}"
        );
    }
    Some((ops, metric_lines(&metrics)))
}

/// Discovery through `binding::parse`, `reconcile::reconcile` and `patch::write_ndjson`.
fn discover(settings: &Settings, context: &[u8]) -> (Vec<Value>, Vec<Value>) {
    let input = binding::parse(context).expect("parsed before");
    let observed = Observed::from_binding(&input);
    let outcome = reconcile::reconcile(settings, &observed, &BTreeMap::new(), NOW);
    (ndjson(&outcome.operations), metric_lines(&outcome.metrics))
}

fn metric_lines(metrics: &[Value]) -> Vec<Value> {
    let mut buf = Vec::new();
    istio_federation_hook::hook::metrics::write_ndjson(&mut buf, metrics)
        .expect("writing NDJSON into a Vec");
    let out = lines(buf);
    assert_eq!(out.len(), metrics.len(), "one line per metric");
    out
}

/// Serialises operations with `patch::write_ndjson` and reads every line back.
fn ndjson<O: serde::Serialize>(ops: &[Operation<O>]) -> Vec<Value> {
    let mut buf = Vec::new();
    patch::write_ndjson(&mut buf, ops).expect("writing NDJSON into a Vec");
    let out = lines(buf);
    assert_eq!(out.len(), ops.len(), "one NDJSON line per operation");
    for (line, op) in out.iter().zip(ops) {
        assert_eq!(
            line,
            &op.to_json(),
            "NDJSON line differs from the operation"
        );
        assert!(
            line.get("operation").is_some_and(Value::is_string),
            "operation without an `operation` key: {line}"
        );
    }
    out
}

fn lines(buf: Vec<u8>) -> Vec<Value> {
    let text = String::from_utf8(buf).expect("NDJSON is UTF-8");
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("NDJSON line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The snapshots a run saw, written back as one Group context (what the next run would get).
fn context_of(snapshots: &BTreeMap<String, Vec<Value>>) -> Vec<u8> {
    let snaps: Map<String, Value> = snapshots
        .iter()
        .map(|(k, objects)| {
            let items = objects.iter().map(|o| json!({"object": o})).collect();
            (k.clone(), Value::Array(items))
        })
        .collect();
    serde_json::to_vec(
        &json!([{"binding": "refresh_remote_metadata", "type": "Group",
        "groupName": "istio_federation", "snapshots": snaps}]),
    )
    .expect("serialising a Value")
}

fn is_managed(o: &Value) -> bool {
    o.pointer("/metadata/labels")
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .and_then(Value::as_str)
        == Some(MANAGED_BY_VALUE)
}

fn meta_str<'a>(o: &'a Value, field: &str) -> Option<&'a str> {
    o.get("metadata")?.get(field)?.as_str()
}

fn str_of<'a>(o: &'a Value, field: &str) -> Option<&'a str> {
    o.get(field)?.as_str()
}

/// DNS-1123 subdomain (what the API server requires of most object names).
fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

fn check_discovery(
    settings: &Settings,
    snapshots: &BTreeMap<String, Vec<Value>>,
    ops: &[Value],
    metric_ops: &[Value],
) {
    use istio_federation_hook::discovery::config::{
        DESTINATION_RULES, FEDERATIONS, SERVICE_ENTRIES,
    };
    let Some(feds) = snapshots.get(FEDERATIONS) else {
        assert!(
            ops.is_empty() && metric_ops.is_empty(),
            "a run without the IstioFederation snapshot must not change anything"
        );
        return;
    };
    assert_eq!(
        metric_ops.first(),
        Some(&metrics::expire()),
        "metrics must start by expiring the group"
    );
    for m in &metric_ops[1..] {
        assert_eq!(m["action"], "set", "metric {m}");
        assert_eq!(m["group"], metrics::GROUP, "metric {m}");
        assert!(
            m["labels"]
                .as_object()
                .is_some_and(|l| l.values().all(Value::is_string)),
            "metric labels must be strings: {m}"
        );
    }
    // Trust domains of the peers: the own one (in any case) is skipped by the hook, and one
    // that cannot name a peer (docs/security.md) has nothing imported for it.
    let peer_domains: BTreeSet<&str> = feds
        .iter()
        .filter_map(|f| f.pointer("/spec/trustDomain")?.as_str())
        .filter(|td| !td.eq_ignore_ascii_case(&settings.cluster_domain))
        .filter(|td| names::peer_trust_domain_problem(td).is_none())
        .collect();
    // docs/security.md: two hosts never share one object name.
    let mut host_of: BTreeMap<&str, &str> = BTreeMap::new();
    for op in ops {
        let o = &op["object"];
        if str_of(op, "operation") != Some("CreateOrUpdate")
            || str_of(o, "kind") != Some("ServiceEntry")
        {
            continue;
        }
        let (Some(name), Some(host)) = (
            meta_str(o, "name"),
            o.pointer("/spec/hosts/0").and_then(Value::as_str),
        ) else {
            continue;
        };
        assert!(
            host_of.insert(name, host).is_none(),
            "two ServiceEntries emitted under one name {name:?} (hosts {host:?} and {:?})",
            host_of.get(name)
        );
    }
    let fed_names: BTreeSet<&str> = feds.iter().filter_map(|f| meta_str(f, "name")).collect();
    let observed_managed: Vec<&Value> = [SERVICE_ENTRIES, DESTINATION_RULES]
        .iter()
        .filter_map(|b| snapshots.get(*b))
        .flatten()
        .filter(|o| is_managed(o))
        .collect();

    for op in ops {
        match str_of(op, "operation") {
            Some("Delete") => {
                // Never delete what is not ours: the target must be an object of the input that
                // carries the managed-by label.
                let ours = observed_managed.iter().any(|o| {
                    str_of(o, "apiVersion") == str_of(op, "apiVersion")
                        && str_of(o, "kind") == str_of(op, "kind")
                        && meta_str(o, "namespace") == str_of(op, "namespace")
                        && meta_str(o, "name") == str_of(op, "name")
                });
                assert!(
                    ours,
                    "Delete of an object that is not a managed object of the input: {op}"
                );
                // Deletes are pinned to what the hook owns (docs/security.md).
                assert!(
                    matches!(str_of(op, "kind"), Some("ServiceEntry" | "DestinationRule"))
                        && str_of(op, "namespace") == Some(settings.federation_namespace.as_str())
                        && str_of(op, "apiVersion")
                            .is_some_and(|a| a.starts_with("networking.istio.io/")),
                    "Delete outside our kinds, group or namespace: {op}"
                );
            }
            Some("CreateOrUpdate" | "CreateIfNotExists") => {
                check_created(&op["object"], &peer_domains, settings);
                within_budget(op, &op["object"]);
            }
            Some("JSONPatch") => {
                let first = op["jsonPatch"]
                    .as_array()
                    .and_then(|p| p.first())
                    .unwrap_or_else(|| panic!("JSONPatch without items: {op}"));
                assert!(
                    first.get("op").is_some()
                        && first.get("path").is_some()
                        && first.get("value").is_some(),
                    "the first JSONPatch item needs op, path and value (shell-operator schema): {op}"
                );
                assert!(
                    matches!(str_of(op, "kind"), Some("ConfigMap" | "Secret")),
                    "JSONPatch on an unexpected kind: {op}"
                );
                // The object the patch makes of the observed trust object stays in budget.
                let base = snapshots
                    .get(istio_federation_hook::discovery::config::TRUST_BUNDLE)
                    .and_then(|t| t.first())
                    .cloned();
                if let Some(mut obj) = base {
                    let patch =
                        serde_json::from_value::<json_patch::Patch>(op["jsonPatch"].clone());
                    if patch.is_ok_and(|p| json_patch::patch(&mut obj, &p).is_ok()) {
                        within_budget(op, &obj);
                    }
                }
            }
            Some("MergePatch") => {
                assert_eq!(str_of(op, "subresource"), Some("status"), "{op}");
                assert!(
                    str_of(op, "name").is_some_and(|n| fed_names.contains(n)),
                    "status patch for a federation that is not in the input: {op}"
                );
                assert!(
                    op["mergePatch"].as_object().is_some_and(
                        |p| p.len() == 1 && p.get("status").is_some_and(Value::is_object)
                    ),
                    "status patch must touch status only: {op}"
                );
                within_budget(op, &op["mergePatch"]);
            }
            _ => panic!("unknown operation: {op}"),
        }
    }
}

/// No emitted object and no status patch over the object budget (docs/security.md, "Limits
/// and shares").
fn within_budget(op: &Value, stored: &Value) {
    use istio_federation_hook::discovery::budget::MAX_OBJECT_BYTES;
    let size = stored.to_string().len();
    assert!(
        size <= MAX_OBJECT_BYTES,
        "{size} bytes, over the {MAX_OBJECT_BYTES}-byte object budget: {}",
        str_of(op, "operation").unwrap_or("")
    );
}

fn check_created(o: &Value, peer_domains: &BTreeSet<&str>, settings: &Settings) {
    for (k, v) in o["metadata"]["labels"].as_object().into_iter().flatten() {
        assert!(
            v.as_str()
                .is_some_and(istio_federation_hook::protocol::labels::is_label_value),
            "label {k} = {v} is not a valid label value: {o}"
        );
    }
    let kind = str_of(o, "kind").unwrap_or("");
    assert!(
        o.get("apiVersion").is_some_and(Value::is_string) && !kind.is_empty(),
        "created object without apiVersion/kind: {o}"
    );
    let name = meta_str(o, "name").unwrap_or("");
    assert!(is_object_name(name), "invalid object name {name:?}: {o}");
    assert!(
        meta_str(o, "namespace").is_some_and(|n| !n.is_empty()),
        "created object without namespace: {o}"
    );
    assert!(
        is_managed(o),
        "created object without the managed-by label: {o}"
    );
    assert!(
        o.get("status").is_none(),
        "created object carries status: {o}"
    );
    for f in SERVER_OWNED {
        assert!(
            o.get("metadata").and_then(|m| m.get(f)).is_none(),
            "created object carries server-owned metadata.{f}: {o}"
        );
    }
    let in_scope = |host: &str| {
        peer_domains.iter().any(|td| {
            host.strip_suffix(td)
                .is_some_and(|h| h.ends_with('.') && h.len() > 1)
        })
    };
    match kind {
        "ServiceEntry" => {
            let hosts = o.pointer("/spec/hosts").and_then(Value::as_array);
            assert!(
                hosts.is_some_and(
                    |h| !h.is_empty() && h.iter().all(|h| h.as_str().is_some_and(in_scope))
                ),
                "ServiceEntry host outside every peer trust domain: {o}"
            );
        }
        "DestinationRule" => {
            let host = o.pointer("/spec/host").and_then(Value::as_str);
            assert!(
                host.is_some_and(in_scope),
                "DestinationRule host outside every peer trust domain: {o}"
            );
        }
        "ConfigMap" => assert_eq!(
            name, settings.mesh_config_name,
            "the only ConfigMap created is the mesh config"
        ),
        other => panic!("discovery created a {other}: {o}"),
    }
}

/// docs/how-it-works.md: "A run over a cluster that already matches emits nothing." Applies the
/// operations to the snapshots (as the API server would) and reconciles again: nothing may be
/// emitted. Judged only where the input can be a real cluster (see [`apply`]).
fn check_zero_churn(settings: &Settings, snapshots: &BTreeMap<String, Vec<Value>>, ops: &[Value]) {
    if ops.is_empty() {
        return;
    }
    let Some(next) = apply(settings, snapshots, ops) else {
        return;
    };
    let (second, _) =
        discover_main(settings, &context_of(&next)).expect("a context we wrote parses");
    assert!(
        second.is_empty(),
        "churn: a second run over the patched cluster emits operations again\nfirst run: {}\nsecond run: {}",
        Value::Array(ops.to_vec()),
        Value::Array(second)
    );
}

fn unique_names(objects: &[Value]) -> bool {
    let mut seen = BTreeSet::new();
    objects
        .iter()
        .all(|o| meta_str(o, "name").is_some_and(|n| seen.insert(n)))
}

/// The snapshots after the API server applied `ops`, or `None` when the input is not a state
/// a real cluster can be in (a snapshot missing — then the hook rewrites by design —, two
/// objects of one name, objects of another kind or namespace in a snapshot).
fn apply(
    settings: &Settings,
    snapshots: &BTreeMap<String, Vec<Value>>,
    ops: &[Value],
) -> Option<BTreeMap<String, Vec<Value>>> {
    use istio_federation_hook::discovery::config::{
        DESTINATION_RULES, FEDERATIONS, SERVICE_ENTRIES, TRUST_BUNDLE,
    };
    for name in [
        FEDERATIONS,
        TRUST_BUNDLE,
        SERVICE_ENTRIES,
        DESTINATION_RULES,
    ] {
        if !unique_names(snapshots.get(name)?) {
            return None;
        }
    }
    if snapshots[TRUST_BUNDLE].len() > 1 {
        return None;
    }
    for (name, kind) in [
        (SERVICE_ENTRIES, "ServiceEntry"),
        (DESTINATION_RULES, "DestinationRule"),
    ] {
        let real = snapshots[name].iter().all(|o| {
            str_of(o, "kind") == Some(kind)
                && meta_str(o, "namespace") == Some(settings.federation_namespace.as_str())
        });
        if !real {
            return None;
        }
    }
    let mut snaps = snapshots.clone();
    for op in ops {
        match str_of(op, "operation") {
            Some(create @ ("CreateOrUpdate" | "CreateIfNotExists")) => {
                let o = &op["object"];
                let binding = match str_of(o, "kind") {
                    Some("ServiceEntry") => SERVICE_ENTRIES,
                    Some("DestinationRule") => DESTINATION_RULES,
                    Some("ConfigMap") => TRUST_BUNDLE,
                    _ => return None,
                };
                let list = snaps.entry(binding.to_string()).or_default();
                let name = meta_str(o, "name");
                match list.iter_mut().find(|x| meta_str(x, "name") == name) {
                    Some(_) if create == "CreateIfNotExists" => {}
                    Some(x) => *x = o.clone(),
                    None => list.push(o.clone()),
                }
            }
            Some("Delete") => {
                let binding = if str_of(op, "kind") == Some("DestinationRule") {
                    DESTINATION_RULES
                } else {
                    SERVICE_ENTRIES
                };
                let list = snaps.entry(binding.to_string()).or_default();
                list.retain(|x| {
                    meta_str(x, "name") != str_of(op, "name")
                        || meta_str(x, "namespace") != str_of(op, "namespace")
                });
            }
            Some("JSONPatch") => {
                let target = snaps.get_mut(TRUST_BUNDLE)?.first_mut()?;
                let patch: json_patch::Patch = serde_json::from_value(op["jsonPatch"].clone())
                    .unwrap_or_else(|e| panic!("JSONPatch is not RFC 6902 ({e}): {op}"));
                match json_patch::patch(target, &patch) {
                    Ok(()) => {}
                    Err(e) if matches!(e.kind, json_patch::PatchErrorKind::TestFailed) => panic!(
                        "JSONPatch test fails against the object it was computed from: {e}\nobject: {target}\noperation: {op}"
                    ),
                    // A path the model's object does not have.
                    Err(_) => return None,
                }
            }
            Some("MergePatch") => {
                for fed in snaps.entry(FEDERATIONS.to_string()).or_default() {
                    if meta_str(fed, "name") == str_of(op, "name") {
                        json_patch::merge(fed, &op["mergePatch"]);
                    }
                }
            }
            _ => return None,
        }
    }
    Some(snaps)
}

fn decode_data(v: &Value) -> String {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("Secret data values are strings"))
        .expect("Secret data values are base64");
    String::from_utf8(raw).expect("Secret data values are UTF-8")
}

fn check_export(settings: &Settings, snapshots: &BTreeMap<String, Vec<Value>>, ops: &[Value]) {
    for op in ops {
        assert_eq!(
            str_of(op, "operation"),
            Some("CreateOrUpdate"),
            "export while enabled only writes its Secret (no key is generated here): {op}"
        );
        let o = &op["object"];
        assert_eq!(o["kind"], "Secret", "{op}");
        assert_eq!(meta_str(o, "name"), Some(secret::METADATA_SECRET), "{op}");
        assert_eq!(
            meta_str(o, "namespace"),
            Some(settings.federation_namespace.as_str()),
            "{op}"
        );
        assert!(
            is_managed(o),
            "export Secret without managed-by label: {op}"
        );
        let data = o["data"].as_object().expect("Secret data");
        for (k, v) in data {
            let text = decode_data(v);
            if k != secret::PUBLIC_JSON {
                // public.json may be the last published one, kept verbatim.
                serde_json::from_str::<Value>(&text)
                    .unwrap_or_else(|e| panic!("{k} is not JSON ({e}): {text}"));
            }
        }
        let fed: Value = serde_json::from_str(&decode_data(
            data.get(secret::FEDERATION_JSON)
                .expect("federation.json is always rendered while enabled"),
        ))
        .expect("federation.json is JSON");
        for svc in fed["publicServices"].as_array().expect("publicServices") {
            let host = svc["hostname"].as_str().expect("hostname");
            assert!(
                host.ends_with(&format!(".svc.{}", settings.cluster_domain)),
                "exported host outside the own cluster domain: {host}"
            );
        }
    }
    // Idempotence ("patching only when the content changes"): over the Secret as written,
    // the next run writes nothing.
    let Some(written) = ops.last() else {
        return;
    };
    let mut next = snapshots.clone();
    next.insert(
        export::bindings::METADATA.to_string(),
        vec![written["object"].clone()],
    );
    let context = context_of(&next);
    let input = binding::parse(&context).expect("a context we wrote parses");
    let second = ndjson(&export::reconcile(settings, &input, None, NOW).operations);
    assert!(second.is_empty(), "export churns: {}", Value::Array(second));
}

// ---------------------------------------------------------------------------------------------
// metadata
// ---------------------------------------------------------------------------------------------

fn own_fingerprints() -> &'static [String] {
    static FPS: OnceLock<Vec<String>> = OnceLock::new();
    FPS.get_or_init(|| vec![fingerprint_of(LOCAL_ROOT)])
}

/// Target `metadata`: the bytes as a JSON document through both metadata validators, and as
/// text through the PEM/X.509/Ed25519 parsers.
pub fn metadata(data: &[u8]) {
    let own_fps = own_fingerprints();
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        let own = Own {
            cluster_uuid: OWN_CLUSTER_UUID,
            root_fingerprints: own_fps,
            now: NOW,
        };
        match metadata::validate_public(&v, &own) {
            Ok(p) => check_public(&v, &p, own_fps),
            Err(f) => assert!(
                matches!(
                    f.reason,
                    Reason::InvalidPublicMetadata | Reason::CertificateRejected
                ),
                "unexpected reason {}",
                f.reason
            ),
        }
        match metadata::validate_private(&v, "b.local") {
            Ok(p) => check_private(&p),
            Err(f) => assert_eq!(f.reason, Reason::InvalidPrivateMetadata),
        }
    }
    let text = String::from_utf8_lossy(data);
    check_pem(&text, own_fps);
    if let Ok(key) = certs::parse_ed25519_public_pem(&text) {
        // Re-encoding the key as SPKI gives the same key back.
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(&key);
        assert_eq!(
            certs::parse_ed25519_public_pem(&certs::to_pem("PUBLIC KEY", &spki)),
            Ok(key)
        );
    }
    if let Ok(pair) = certs::parse_ed25519_private_pem(&text) {
        use ring::signature::KeyPair as _;
        let sig = pair.sign(b"fuzz");
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, pair.public_key())
            .verify(b"fuzz", sig.as_ref())
            .expect("a parsed private key signs verifiably");
    }
}

fn check_public(v: &Value, p: &metadata::PublicMetadata, own_fps: &[String]) {
    assert_eq!(Some(p.cluster_uuid.as_str()), v["clusterUUID"].as_str());
    assert_ne!(
        p.cluster_uuid, OWN_CLUSTER_UUID,
        "own UUID accepted as a peer's"
    );
    assert!(
        !p.cluster_uuid.is_empty()
            && p.cluster_uuid.len() <= 128
            && p.cluster_uuid
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')),
        "insane clusterUUID accepted: {:?}",
        p.cluster_uuid
    );
    assert!(certs::parse_ed25519_public_pem(&p.authn_key_pub).is_ok());
    let mut seen = BTreeSet::new();
    for r in &p.roots {
        assert!(!own_fps.contains(&r.fingerprint), "own root accepted");
        assert!(r.not_after >= NOW, "expired root accepted");
        assert!(
            seen.insert(r.fingerprint.clone()),
            "duplicate root accepted"
        );
        let blocks = certs::pem_blocks(&r.pem).expect("canonical PEM parses");
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(certs::fingerprint(&blocks[0].der), r.fingerprint);
        assert_root_rules(&r.pem);
    }
    for (_, why) in &p.rejected {
        assert!(
            why.to_string().chars().count() <= 512,
            "unbounded message: {why}"
        );
    }
}

fn check_private(p: &metadata::PrivateMetadata) {
    let mut gws = BTreeSet::new();
    for g in &p.ingress_gateways {
        assert!(g.port >= 1);
        assert_eq!(g.address, g.address.trim().to_ascii_lowercase());
        assert!(
            g.address.parse::<std::net::IpAddr>().is_ok() || is_object_name(&g.address),
            "gateway address accepted: {:?}",
            g.address
        );
        assert!(
            plausible_gateway(&g.address),
            "implausible gateway accepted: {:?}",
            g.address
        );
        assert!(gws.insert(g.clone()), "duplicate gateway");
    }
    for s in &p.public_services {
        assert!(
            s.hostname.ends_with(".b.local") && is_object_name(&s.hostname),
            "host accepted outside the trust domain: {:?}",
            s.hostname
        );
        assert!(!s.ports.is_empty());
        let mut numbers = BTreeSet::new();
        let mut names = BTreeSet::new();
        for port in &s.ports {
            assert!(port.port >= 1);
            assert!(numbers.insert(port.port), "duplicate port number");
            assert!(names.insert(port.name.clone()), "duplicate port name");
            assert!(
                port.name.len() <= 62 && is_object_name(&port.name) && !port.name.contains('.'),
                "invalid port name {:?}",
                port.name
            );
            assert_eq!(
                port.protocol,
                metadata::protocol_for(&port.name),
                "{port:?}"
            );
        }
    }
    for d in &p.dropped {
        assert!(
            d.message.chars().count() <= 512,
            "unbounded message: {}",
            d.message
        );
    }
}

/// docs/security.md: a second opinion on gateway addresses, from std's classifications
/// rather than the hook's own: never loopback, unspecified, link-local, multicast, broadcast or
/// IPv4 in IPv6, never localhost, never a single label, never all numbers and dots.
fn plausible_gateway(a: &str) -> bool {
    use std::net::IpAddr;
    match a.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            !(v4.is_loopback()
                || v4.octets()[0] == 0
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast())
        }
        Ok(IpAddr::V6(v6)) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4().is_some())
        }
        Err(_) => {
            let name = a.trim_end_matches('.');
            name != "localhost"
                && !name.ends_with(".localhost")
                && name.contains('.')
                && !name.bytes().all(|c| c.is_ascii_digit() || c == b'.')
        }
    }
}

fn check_pem(text: &str, own_fps: &[String]) {
    match certs::pem_blocks(text) {
        Ok(blocks) => {
            let mut prev_end = 0;
            for b in &blocks {
                assert!(b.start >= prev_end && b.start < b.end && b.end <= text.len());
                assert!(text.is_char_boundary(b.start) && text.is_char_boundary(b.end));
                assert!(text[b.start..b.end].contains("-----BEGIN "));
                prev_end = b.end;
                // Rendering a block and reading it back gives the same block.
                let again = certs::pem_blocks(&certs::to_pem(&b.label, &b.der))
                    .unwrap_or_else(|e| panic!("to_pem output does not parse: {e}"));
                assert_eq!(again.len(), 1, "to_pem of {:?}", b.label);
                assert_eq!((&again[0].label, &again[0].der), (&b.label, &b.der));
            }
            match certs::check_roots(text, NOW, own_fps) {
                Ok(check) => {
                    assert!(!blocks.is_empty());
                    assert!(check.accepted.len() + check.rejected.len() <= blocks.len());
                    let mut prev = 0;
                    for (i, _) in &check.rejected {
                        assert!(*i > prev && *i <= blocks.len(), "rejected index {i}");
                        prev = *i;
                    }
                    for r in &check.accepted {
                        assert!(!own_fps.contains(&r.fingerprint));
                        assert!(r.not_after >= NOW);
                        assert_root_rules(&r.pem);
                    }
                }
                Err(_) => assert!(blocks.is_empty(), "check_roots failed on parsable PEM"),
            }
        }
        Err(e) => {
            assert!(certs::check_roots(text, NOW, own_fps).is_err());
            assert!(e.chars().count() <= 512, "unbounded message: {e}");
        }
    }
}

/// The critical extensions Go's X.509 parser handles: keyUsage, subjectAltName (with a name it
/// reads), nameConstraints, cRLDistributionPoints, extKeyUsage, certificatePolicies,
/// basicConstraints. (authorityKeyIdentifier, subjectKeyIdentifier and authorityInfoAccess must
/// not be critical at all.)
const GO_CRITICAL_OK: [&str; 7] = [
    "2.5.29.15",
    "2.5.29.17",
    "2.5.29.30",
    "2.5.29.31",
    "2.5.29.37",
    "2.5.29.32",
    "2.5.29.19",
];

/// What an accepted root must satisfy so that istiod's Go parser reads it and calls it a CA
/// (docs/security.md), checked through x509-parser's view of the certificate and ring — not
/// through the checks in certs.rs: version 3; a positive, minimally encoded serial of at most
/// 20 bytes; each extension once; basicConstraints CA:TRUE without a negative path length; an
/// RSA key of 2048–8192 bits with an odd exponent 3..2^31-1, an EC point ring accepts on P-256
/// or P-384, or a 32-byte Ed25519 key; SAN IP addresses of 4 or 16 bytes; no critical
/// extension Go leaves unhandled.
fn assert_root_rules(pem: &str) {
    use x509_parser::prelude::*;
    use x509_parser::public_key::PublicKey;
    let der = &certs::pem_blocks(pem).expect("canonical PEM")[0].der;
    let (rest, cert) = X509Certificate::from_der(der).expect("an accepted root parses");
    assert!(rest.is_empty(), "accepted root with trailing data");
    assert_eq!(
        cert.version(),
        X509Version::V3,
        "accepted root of another version"
    );
    let serial = cert.raw_serial();
    assert!(
        (1..=20).contains(&serial.len()),
        "accepted serial of {} bytes",
        serial.len()
    );
    assert!(serial[0] & 0x80 == 0, "accepted negative serial");
    assert!(
        !(serial.len() > 1 && serial[0] == 0 && serial[1] & 0x80 == 0),
        "accepted non-minimal serial"
    );
    assert!(serial.iter().any(|&b| b != 0), "accepted zero serial");
    let mut oids = BTreeSet::new();
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        assert!(
            oids.insert(oid.clone()),
            "accepted duplicate extension {oid}"
        );
        if ext.critical {
            assert!(
                GO_CRITICAL_OK.contains(&oid.as_str()),
                "accepted critical extension {oid}"
            );
        }
    }
    match cert.basic_constraints() {
        Ok(Some(bc)) => assert!(bc.value.ca, "accepted root without CA:TRUE"),
        other => panic!("accepted root without basicConstraints: {other:?}"),
    }
    let spki = cert.public_key();
    match spki.algorithm.algorithm.to_id_string().as_str() {
        "1.2.840.113549.1.1.1" => {
            let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
                panic!("accepted unreadable RSA key")
            };
            assert!(rsa.modulus[0] & 0x80 == 0, "accepted negative modulus");
            let modulus: Vec<u8> = rsa
                .modulus
                .iter()
                .copied()
                .skip_while(|&b| b == 0)
                .collect();
            let bits = modulus.len() * 8 - modulus[0].leading_zeros() as usize;
            assert!((2048..=8192).contains(&bits), "accepted RSA {bits}");
            let e = rsa
                .try_exponent()
                .expect("accepted exponent beyond 64 bits");
            assert!(
                e % 2 == 1 && (3..1 << 31).contains(&e),
                "accepted exponent {e}"
            );
        }
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let alg = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => &ring::agreement::ECDH_P256,
                Some("1.3.132.0.34") => &ring::agreement::ECDH_P384,
                other => panic!("accepted EC key on {other:?}"),
            };
            let ours = ring::agreement::EphemeralPrivateKey::generate(
                alg,
                &ring::rand::SystemRandom::new(),
            )
            .expect("random source");
            let point = ring::agreement::UnparsedPublicKey::new(alg, &spki.subject_public_key.data);
            assert!(
                ring::agreement::agree_ephemeral(ours, &point, |_| ()).is_ok(),
                "accepted EC point ring refuses"
            );
        }
        "1.3.101.112" => {
            assert!(
                spki.algorithm.parameters.is_none(),
                "accepted Ed25519 parameters"
            );
            assert_eq!(spki.subject_public_key.data.len(), 32);
        }
        other => panic!("accepted key algorithm {other}"),
    }
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::IPAddress(ip) = name {
                assert!(
                    ip.len() == 4 || ip.len() == 16,
                    "accepted SAN IP of {} bytes",
                    ip.len()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// jwt
// ---------------------------------------------------------------------------------------------

/// The key `lookup` knows for sub "peer": peer-b's Ed25519 key (testdata/certs), so tokens
/// signed with `peer-b-authn-priv.pem` verify.
pub fn peer_key() -> [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    *KEY.get_or_init(|| certs::parse_ed25519_public_pem(PEER_B_AUTHN_PUB).expect("fixture key"))
}

/// Target `jwt`: the bytes (lossily UTF-8, as `serve` reads the header) as an Authorization
/// value, and `Bearer ` + the bytes.
pub fn jwt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_bearer(&text);
    check_bearer(&format!("Bearer {text}"));
}

fn check_bearer(value: &str) {
    let key = peer_key();
    let result = jwt::verify_bearer(value, JWT_AUDIENCE, JWT_SCOPE, NOW, |sub| {
        (sub == JWT_SUBJECT).then_some(key)
    });
    match result {
        Ok(claims) => {
            assert_eq!(claims.sub, JWT_SUBJECT);
            assert_eq!(claims.scope, JWT_SCOPE);
            assert_eq!(claims.aud, JWT_AUDIENCE);
            assert!(claims.exp >= NOW, "expired token accepted");
            assert!(value.len() <= 8 * 1024);
            // Independently: the token carries an Ed25519 signature by the peer's key over its
            // first two parts.
            let token = value
                .strip_prefix("Bearer ")
                .expect("accepted without the Bearer prefix")
                .trim_matches(|c: char| c.is_ascii_whitespace());
            let (signing_input, sig) = token.rsplit_once('.').expect("three parts");
            let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig.trim_end_matches('='))
                .expect("signature is base64url");
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
                .verify(signing_input.as_bytes(), &sig)
                .expect("accepted token without a valid signature");
        }
        Err(e) => {
            assert!(!e.reason().is_empty());
            let _ = e.to_string();
            if value.len() <= 8 * 1024 && !value.starts_with("Bearer ") {
                assert_eq!(e, jwt::AuthError::MissingBearer);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// serve_request
// ---------------------------------------------------------------------------------------------

/// What `federation.json` of the served directory holds: seeing it in a response means the
/// private metadata was served.
pub const PRIVATE_MARKER: &str = "private-marker-7f3a9c";

/// The one server of this process: `serve::serve` on a free loopback port, over a fixed
/// metadata directory (own UUID `own-uuid`, one peer `peer` with peer-b's key).
pub fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        const PREFIX: &str = "istio-federation-hook-fuzz-serve-";
        // Directories of earlier processes that have exited are removed.
        for entry in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix(PREFIX));
            if pid.is_some_and(|pid| !std::path::Path::new("/proc").join(pid).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("metadata dir");
        let public = json!({"clusterUUID": JWT_AUDIENCE, "authnKeyPub": FIXTURE_PUB, "rootCA": LOCAL_ROOT});
        let federation = json!({"ingressGateways": [{"address": "1.2.3.4", "port": 15443}],
            "publicServices": [{"hostname": format!("{PRIVATE_MARKER}.prod.svc.my.cluster"),
                "ports": [{"name": "http", "port": 80}]}]});
        let remotes = json!({JWT_SUBJECT: {"clusterUUID": JWT_SUBJECT, "authnKeyPub": PEER_B_AUTHN_PUB,
            "rootCA": PEER_B_ROOT}});
        for (name, v) in [
            ("public.json", public),
            ("federation.json", federation),
            ("remote-public-metadata.json", remotes),
        ] {
            std::fs::write(dir.join(name), serde_json::to_vec_pretty(&v).expect("json"))
                .expect("write metadata");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let opts = serve::Options {
            listen: addr.to_string(),
            metadata_dir: dir,
            tls: None,
            max_connections: 64,
        };
        std::thread::spawn(move || {
            if let Err(e) = serve::serve(opts) {
                panic!("serve stopped: {e}");
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "serve did not start on {addr}");
            std::thread::sleep(Duration::from_millis(10));
        }
        addr
    })
}

/// Sends `data` on a new connection to [`server`], half-closes, and returns everything the
/// server answered until it closed the connection (at most 3 s).
pub fn exchange(data: &[u8]) -> Vec<u8> {
    let addr = server();
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        // The server must accept while it runs (at most 64 connections; this is the only one).
        panic!("cannot connect to serve");
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    // The server may answer (and close) before it has read everything: not an error.
    let _ = stream.write_all(data);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut response = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            // A busy server (the replay test runs its cases in parallel threads) may take longer
            // than one read timeout: keep waiting until the deadline.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break, // reset
        }
    }
    response
}

/// Target `serve_request`: the bytes as what a client sends on one connection (then the
/// client half-closes); what comes back must be HTTP/1.1, never a server error, and never
/// the private metadata unless the request carried a token signed by the peer's key.
pub fn serve_request(data: &[u8]) {
    let response = exchange(data);
    if response.is_empty() {
        return;
    }
    // hyper answers an HTTP/1.0 request line in kind (RFC 9110 §6.2 would prefer 1.1): the
    // one accepted deviation from "HTTP/1.1 ".
    let http10_asked = data.windows(8).any(|w| w == b"HTTP/1.0");
    assert!(
        response.starts_with(b"HTTP/1.1 ") || (http10_asked && response.starts_with(b"HTTP/1.0 ")),
        "response does not start with HTTP/1.1: {:?}",
        String::from_utf8_lossy(&response[..response.len().min(200)])
    );
    let code = std::str::from_utf8(&response[9..response.len().min(12)])
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or_else(|| {
            panic!(
                "no status code: {:?}",
                String::from_utf8_lossy(&response[..response.len().min(200)])
            )
        });
    // hyper itself answers 501/505 to requests it cannot serve; the routes' own 500/503 mean
    // the (valid) metadata directory could not be served.
    assert!(
        (100..500).contains(&code) || code == 501 || code == 505,
        "server error {code} over a valid metadata directory: {:?}",
        String::from_utf8_lossy(&response[..response.len().min(400)])
    );
    let served_private = response
        .windows(PRIVATE_MARKER.len())
        .any(|w| w == PRIVATE_MARKER.as_bytes());
    if served_private {
        assert!(
            carries_signed_token(data),
            "private metadata served without a token signed by the peer's key"
        );
    }
}

/// Whether some whitespace-separated word of `data` is a `header.payload.signature` whose
/// signature the peer's key verifies (independently of `jwt::verify_bearer`).
fn carries_signed_token(data: &[u8]) -> bool {
    let key = peer_key();
    let verifier = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key);
    String::from_utf8_lossy(data)
        .split(|c: char| c.is_ascii_whitespace() || c == ',')
        .filter_map(|w| w.rsplit_once('.'))
        .any(|(signing_input, sig)| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig.trim_end_matches('='))
                .is_ok_and(|sig| verifier.verify(signing_input.as_bytes(), &sig).is_ok())
        })
}
