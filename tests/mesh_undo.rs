//! Every trust entry the hook writes into the mesh config it can remove again, and what istiod
//! reads is what the hook edits — through the release binary, with Go's `sigs.k8s.io/yaml`
//! (tests/go/meshyaml) as the judge of what istiod sees.
//!
//! A federation `b` (cached metadata, no network) is added to a cluster whose mesh config has
//! odd but valid foreign content; the hook must either install b's root so Go reads it, or
//! refuse with `TrustBundleUnavailable` naming the line — and whatever it installed must be gone,
//! to Go, once b is deleted or federation is disabled, with the foreign content as Go read it
//! before.

mod common;

use common::go_yaml::go_read;
use common::{cert, ndjson, run_hook, Store};
use serde_json::{json, Value};

fn env(enabled: bool) -> Vec<(String, String)> {
    vec![
        ("ISTIO_FEDERATION_ENABLED".into(), enabled.to_string()),
        ("CLUSTER_DOMAIN".into(), "my.cluster".into()),
        ("CLUSTER_UUID".into(), "deadbeef-mycluster".into()),
        ("ISTIO_FEDERATION_HOOK_OFFLINE".into(), "true".into()),
        ("ROOT_RETENTION".into(), "0s".into()),
        // Deleting b is the removal of every federation: no grace, as an operator deleting it.
        ("MASS_DELETION_GRACE".into(), "0s".into()),
    ]
}

fn federation(root: &str) -> Value {
    json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": "b"},
        "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://127.0.0.1:9/metadata/"},
        "status": {"metadataCache": {
            "public": {"clusterUUID": "uuid-b", "authnKeyPub": cert("peer-b-authn-pub"), "rootCA": cert(root)},
            "publicLastFetchTimestamp": common::NOW,
            "private": {"ingressGateways": [{"address": "198.51.100.7", "port": 15443}],
                        "publicServices": [{"hostname": "web.prod.svc.b.local", "ports": [{"name": "http", "port": 8080}]}]},
            "privateLastFetchTimestamp": common::NOW}}})
}

/// A cluster with federation `b` and this mesh text.
fn cluster(mesh: &str) -> Store {
    let keys = (
        cert("deckhouse-fixture-priv"),
        cert("deckhouse-fixture-pub"),
    );
    Store::offline(
        vec![federation("peer-b-root")],
        common::mesh_config_map(mesh),
        (&keys.0, &keys.1),
    )
}

/// Runs the hook once over the store and applies what it wrote; returns the operations.
fn run(s: &mut Store, enabled: bool) -> Vec<Value> {
    let r = run_hook(
        &s.binding_context("refresh_remote_metadata").to_string(),
        &env(enabled),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ops = ndjson(&r.patches);
    s.apply(&ops);
    ops
}

fn mesh(s: &Store) -> String {
    s.get("ConfigMap", "d8-istio", "istio").unwrap()["data"]["mesh"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The `TrustBundleReady` condition the run wrote for `b`, if any.
fn trust_condition(ops: &[Value]) -> Option<Value> {
    ops.iter()
        .filter(|o| o["operation"] == "MergePatch")
        .filter_map(|o| o["mergePatch"]["status"]["conditions"].as_array())
        .flatten()
        .find(|c| c["type"] == "TrustBundleReady")
        .cloned()
}

/// The `caCertificates` list as Go reads the document (`[]` when absent), or Go's error.
fn go_list(doc: &Value) -> Result<Vec<Value>, String> {
    match doc.get("json") {
        Some(j) => Ok(j["caCertificates"].as_array().cloned().unwrap_or_default()),
        None => Err(doc["error"].to_string()),
    }
}

fn trusts_b(list: &[Value]) -> bool {
    list.iter().any(|e| e["trustDomains"] == json!(["b.local"]))
}

/// Texts whose last foreign entry ends in an empty block scalar, in indented and compact lists.
const EMPTY_BLOCK_SCALARS: &[&str] = &[
    "trustDomain: my.cluster\ncaCertificates:\n  - pem: |\n",
    "trustDomain: my.cluster\ncaCertificates:\n  - pem: |\ndefaultConfig:\n  concurrency: 2\n",
    "caCertificates:\n  - spiffeBundleUrl: https://bundle.example/x.json\n  - pem: |\n  # an empty one\ntrustDomain: my.cluster\n",
    "caCertificates:\n  - pem: >-\n",
    "caCertificates:\n- pem: |\n",
    "  trustDomain: my.cluster\n  caCertificates:\n  - pem: |\n  defaultConfig: {}\n",
];

/// Finding 3: what was appended after an empty block scalar is removed again — when b is
/// deleted and when federation is disabled — and Go reads the foreign entries as before.
#[test]
fn entries_appended_after_an_empty_block_scalar_are_removed_again() {
    let mut failures = Vec::new();
    for (i, text) in EMPTY_BLOCK_SCALARS.iter().enumerate() {
        for how in ["federation deleted", "federation disabled"] {
            let mut s = cluster(text);
            let added = run(&mut s, true);
            let with_b = mesh(&s);
            let cond = trust_condition(&added);
            if with_b == *text {
                failures.push(format!(
                    "{i} {text:?}: nothing installed; condition {cond:?}"
                ));
                continue;
            }
            if how == "federation deleted" {
                s.objects.insert("federations".into(), vec![]);
                run(&mut s, true);
            } else {
                run(&mut s, false);
            }
            let after = mesh(&s);
            let go = go_read(&[text.to_string(), with_b.clone(), after.clone()]);
            match (go_list(&go[0]), go_list(&go[1]), go_list(&go[2])) {
                (Ok(before), Ok(with), Ok(end)) => {
                    if !trusts_b(&with) {
                        failures.push(format!(
                            "{i} {how}: Go does not see b's entry in {with_b:?}"
                        ));
                    }
                    if end != before {
                        failures.push(format!(
                            "{i} {how}: after removal Go reads {end:?}, before {before:?}; text {after:?}"
                        ));
                    }
                }
                other => failures.push(format!("{i} {how}: Go cannot read a text: {other:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Finding 3: an entry of ours that must go but cannot be removed (an alias elsewhere uses its
/// anchor) is named in the condition as still installed — never "not trusted".
#[test]
fn owned_entries_that_cannot_be_removed_are_named_as_still_installed() {
    let mut s = cluster("trustDomain: my.cluster\n");
    run(&mut s, true);
    // An administrator anchors our entry and refers to it elsewhere.
    let text = mesh(&s).replacen("- pem: |", "- &theirs\n  pem: |", 1) + "extra: *theirs\n";
    s.objects.get_mut("trust_bundle").unwrap()[0]["data"]["mesh"] = json!(text);
    // b rotates: only its new root is published; retention is zero, so the old one must go.
    s.objects
        .insert("federations".into(), vec![federation("peer-b-root-2")]);
    let ops = run(&mut s, true);
    let cond = trust_condition(&ops).expect("a TrustBundleReady condition");
    let msg = cond["message"].as_str().unwrap_or("");
    let old = common::fingerprint_of("peer-b-root");
    assert_eq!(cond["status"], "False", "{cond}");
    assert_eq!(cond["reason"], "TrustBundleUnavailable", "{cond}");
    assert!(
        msg.contains("cannot be removed and are still installed: b.local root sha256:")
            && msg.contains(&old[..16])
            && msg.contains("holds an anchor (line 4) that an alias uses"),
        "{msg}"
    );
    assert_eq!(
        mesh(&s),
        text,
        "the text was edited although the removal is refused"
    );
}

/// What the hook must do with a text: install b's entry (and remove it again), or refuse the
/// edit with a `TrustBundleUnavailable` message containing this text.
enum Want {
    Installed,
    Refused(&'static str),
}

/// A root mapping whose merge keys repeat an alias of a large anchor, about 800 KB: Go refuses
/// it ("document contains excessive aliasing") after a bounded amount of work.
fn merge_key_bomb() -> String {
    let entries: Vec<String> = (0..2000).map(|i| format!("k{i}: {i}")).collect();
    let anchor = format!("a: &a {{{}}}\n", entries.join(", "));
    let merges = "<<: *a\n".repeat((800_000 - anchor.len()) / 7);
    format!("trustDomain: my.cluster\n{anchor}{merges}")
}

/// Finding 5: texts Go's YAML 1.1 reader reads differently from a YAML 1.2 parser. The hook's
/// view of the keys must be Go's, or the edit is refused naming the line; what it writes Go
/// must read, with b's entry in it, and removing it must give Go's reading of the text before.
#[test]
fn the_editor_sees_the_keys_go_sees() {
    let cases: Vec<(&str, String, Want)> = vec![
        (
            "U+2028 ends a comment for Go",
            "trustDomain: my.cluster\n# note\u{2028}caCertificates: [{pem: x}]\n".into(),
            Want::Refused("line 2"),
        ),
        (
            "U+0085 ends a comment for Go",
            "trustDomain: my.cluster\n# note\u{85}caCertificates: [{pem: x}]\n".into(),
            Want::Refused("line 2"),
        ),
        (
            "a !!binary key Go decodes to caCertificates",
            "trustDomain: my.cluster\n? !!binary Y2FDZXJ0aWZpY2F0ZXM=\n: [{pem: x}]\n".into(),
            Want::Refused("line 2"),
        ),
        (
            "a !!binary key Go decodes to another name",
            "? !!binary Zm9v\n: 1\ntrustDomain: my.cluster\n".into(),
            Want::Installed,
        ),
        (
            "a byte-order mark before the first key",
            "\u{feff}trustDomain: my.cluster\n".into(),
            Want::Installed,
        ),
        (
            "a byte-order mark before caCertificates",
            "\u{feff}caCertificates:\n- spiffeBundleUrl: https://bundle.example/x.json\n".into(),
            Want::Installed,
        ),
        (
            "a document end marker after a null caCertificates",
            "caCertificates:\n...\n".into(),
            Want::Installed,
        ),
        (
            "a document end marker after the only other key",
            "trustDomain: my.cluster\n...\n".into(),
            Want::Installed,
        ),
        (
            "merge keys over a large anchor",
            merge_key_bomb(),
            Want::Refused("excessive aliasing"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, text, want) in &cases {
        let mut s = cluster(text);
        let ops = run(&mut s, true);
        let with_b = mesh(&s);
        let cond = trust_condition(&ops).unwrap_or(Value::Null);
        let msg = cond["message"].as_str().unwrap_or("");
        match want {
            Want::Refused(what) => {
                if with_b != *text
                    || cond["reason"] != "TrustBundleUnavailable"
                    || !msg.contains(what)
                {
                    failures.push(format!(
                        "{name}: expected a refusal naming {what:?}; condition {msg:?}; text changed: {}",
                        with_b != *text
                    ));
                }
            }
            Want::Installed => {
                s.objects.insert("federations".into(), vec![]);
                run(&mut s, true);
                let after = mesh(&s);
                let go = go_read(&[text.clone(), with_b.clone(), after.clone()]);
                let rest = |d: &Value| {
                    let mut d = d["json"].clone();
                    if let Some(o) = d.as_object_mut() {
                        o.remove("caCertificates");
                    }
                    d
                };
                match (go_list(&go[0]), go_list(&go[1]), go_list(&go[2])) {
                    (Ok(before), Ok(with), Ok(end)) => {
                        if !trusts_b(&with) || rest(&go[1]) != rest(&go[0]) {
                            failures.push(format!(
                                "{name}: to Go, b's entry is missing or other keys changed: {}",
                                go[1]
                            ));
                        }
                        if end != before || go[2] != go[0] {
                            failures.push(format!(
                                "{name}: after removal Go reads {}, before {}",
                                go[2], go[0]
                            ));
                        }
                    }
                    other => failures.push(format!(
                        "{name}: Go cannot read a text: {other:?}\n{with_b:?}\n{after:?}; condition {msg:?}"
                    )),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
