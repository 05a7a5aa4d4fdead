//! istiod accepts the AuthorizationPolicies discovery writes (docs/security.md, "Exported
//! means reachable"): every policy of the `authz-*` golden cases, and the policies of a run
//! with many exports, go through istio.io/istio's own `ValidateAuthorizationPolicy` — the check
//! istiod's `/validate` admission webhook runs — built from the istio.io/istio version the
//! platform suite pins (tests/go/authzvalidate shares tests/platform/modules/istio's go.sum).
//! The spec is decoded with protojson, which refuses unknown fields, so a field the CRD would
//! prune fails too. Two hand-written controls show the check can fail.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Builds tests/go/authzvalidate with the machine's Go (the one the platform suite uses) and
/// its module cache, as tests/platform/build.sh does.
fn validator() -> PathBuf {
    let bin = target_dir().join("go-authzvalidate/authzvalidate");
    let out = Command::new("/usr/local/go/bin/go")
        .current_dir(root().join("tests/go/authzvalidate"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-buildvcs=false -mod=readonly")
        .env("CGO_ENABLED", "0")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .output()
        .unwrap_or_else(|e| panic!("/usr/local/go/bin/go: {e} (Go 1.26 is needed)"));
    assert!(
        out.status.success(),
        "go build of tests/go/authzvalidate failed (its modules come from the Go module proxy, \
         or from the cache tests/platform/build.sh fills):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn verdicts(bin: &PathBuf, objects: &[Value]) -> Vec<Value> {
    let mut child = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run authzvalidate");
    let input = serde_json::to_vec(objects).expect("JSON");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), &input).expect("write");
    let out = child.wait_with_output().expect("authzvalidate output");
    assert!(out.status.success(), "authzvalidate failed");
    ndjson(&String::from_utf8_lossy(&out.stdout))
}

/// Every AuthorizationPolicy the `authz-*` golden cases write.
fn golden_policies() -> Vec<Value> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("testdata/discovery")).expect("golden cases") {
        let dir = entry.expect("entry").path();
        if !dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("authz-"))
        {
            continue;
        }
        let text = std::fs::read_to_string(dir.join("patches.ndjson")).unwrap_or_default();
        out.extend(
            ndjson(&text)
                .into_iter()
                .filter(|op| op["object"]["kind"] == "AuthorizationPolicy")
                .map(|op| op["object"].clone()),
        );
    }
    out
}

/// The policy of a peer that may reach 500 services on two ports each.
fn large_policy() -> Value {
    let snis: Vec<String> = (0..500)
        .flat_map(|i| [80, 8443].map(|p| format!("outbound_.{p}_._.svc-{i}.prod.svc.my.cluster")))
        .collect();
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "istio-federation-peer-b.local", "namespace": "istio-system"},
        "spec": {"action": "DENY", "rules": [{"from": [{"source": {"principals": ["b.local/*"]}}],
            "when": [{"key": "connection.sni", "notValues": snis}]}]}})
}

#[test]
fn istiod_accepts_every_policy_discovery_writes() {
    let bin = validator();
    let mut policies = golden_policies();
    assert!(
        policies.len() >= 6,
        "only {} golden policies",
        policies.len()
    );
    policies.push(large_policy());
    let out = verdicts(&bin, &policies);
    assert_eq!(out.len(), policies.len());
    let refused: Vec<&Value> = out
        .iter()
        .filter(|v| v.get("error").is_some() || v.get("warning").is_some())
        .collect();
    assert!(refused.is_empty(), "istiod's validation: {refused:#?}");

    // Controls: what istiod refuses is reported as refused.
    let controls = [
        json!({"metadata": {"name": "custom-without-provider", "namespace": "x"},
            "spec": {"action": "CUSTOM", "rules": [{}]}}),
        json!({"metadata": {"name": "misspelt-field", "namespace": "x"},
            "spec": {"action": "DENY", "rules": [{"from": [{"source": {"principal": ["b.local/*"]}}]}]}}),
    ];
    for v in verdicts(&bin, &controls) {
        assert!(v.get("error").is_some(), "control accepted: {v}");
    }
}
