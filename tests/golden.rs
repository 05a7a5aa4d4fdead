//! Golden cases: every folder of `testdata/discovery/` is run through the real binary the way
//! shell-operator runs it, and its complete outputs (patches, metrics, stderr, exit code) are
//! compared with the expected files in the folder.
//!
//! `UPDATE_GOLDEN=1 cargo test --test golden` (or `UPDATE_GOLDEN=1 make test`) rewrites the
//! expected files; review every changed file by hand before committing it.
//!
//! Beyond the comparison, every case's operations are validated against the shell-operator
//! object-patch schema, the ServiceEntry CRD schema and Istio's webhook rules, and every
//! successful case is re-run after applying its patches to an in-memory store: the second
//! run must emit nothing (zero churn).
//!
//! A case with a `peer/` folder fetches instead of reading only the cache: a loopback HTTPS
//! peer answers `public.json` with `peer/public.json` (placeholders expanded), or with the
//! HTTP status in `peer/public.status`; the case's binding context names it as
//! `{{peer:endpoint}}` and its CA as `{{peer:ca}}`. Outputs show the endpoint as
//! `{{peer:endpoint}}` and fetch durations, which are measured, as 0. With a
//! `peer/healthz.status` too, a loopback proxy standing in for the sidecar (`HTTP_PROXY`)
//! answers the data-plane probe with that HTTP status (docs/operating.md, "Data-plane probe").

mod common;
mod support;

use common::*;
use std::path::Path;
use support::pki::Ca;
use support::server::{Route, TlsServer};

const DISCOVERY: [&str; 6] = [
    "federations",
    "authn_keypair",
    "trust_bundle",
    "local_root_ca",
    "service_entries",
    "destination_rules",
];
const EXPORT: [&str; 7] = [
    "public_services",
    "ingress_gateways",
    "advertise",
    "local_root_ca",
    "authn_keypair",
    "federations",
    "metadata_secret",
];

fn compare_or_update(dir: &Path, file: &str, actual: &str, failures: &mut Vec<String>) {
    let path = dir.join(file);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|_| format!("<missing {}>", path.display()));
    if expected != actual {
        failures.push(format!(
            "{}: output differs from {file}\n--- expected\n{expected}\n--- actual\n{actual}",
            dir.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
}

/// Export cases with an `expected-secret/` folder: every key of the metadata Secret the run
/// writes, decoded, compared with the file of that name (base64 in patches.ndjson is not
/// something a reviewer can read). No Secret written: the folder must be empty.
fn compare_secret_files(dir: &Path, ops: &[serde_json::Value], failures: &mut Vec<String>) {
    use base64::Engine as _;
    let folder = dir.join("expected-secret");
    if !folder.is_dir() {
        return;
    }
    let mut actual = std::collections::BTreeMap::new();
    let written = ops.iter().rev().find(|op| {
        op["operation"] == "CreateOrUpdate"
            && op["object"]["kind"] == "Secret"
            && op["object"]["metadata"]["name"] == "istio-federation-metadata"
    });
    if let Some(data) = written.and_then(|op| op["object"]["data"].as_object()) {
        for (key, value) in data {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap_or(""))
                .unwrap_or_default();
            actual.insert(key.clone(), contract(&String::from_utf8_lossy(&bytes)));
        }
    }
    let expected: std::collections::BTreeSet<String> = std::fs::read_dir(&folder)
        .expect("expected-secret")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        for stale in expected.iter().filter(|k| !actual.contains_key(*k)) {
            std::fs::remove_file(folder.join(stale)).expect("remove stale golden");
        }
    } else {
        let keys: std::collections::BTreeSet<String> = actual.keys().cloned().collect();
        if keys != expected {
            failures.push(format!(
                "{}: Secret keys {keys:?}, expected-secret/ has {expected:?}",
                dir.display()
            ));
        }
    }
    for (key, text) in &actual {
        compare_or_update(&folder, key, text, failures);
    }
}

/// The loopback peer of a case with a `peer/` folder.
struct CasePeer {
    server: TlsServer,
    ca_pem: String,
    sidecar: Option<support::proxy::Proxy>,
}

fn start_peer(dir: &Path) -> Option<CasePeer> {
    let peer_dir = dir.join("peer");
    if !peer_dir.is_dir() {
        return None;
    }
    let ca = Ca::new("golden peer CA");
    let server = TlsServer::start(&ca.server_identity());
    let route = match std::fs::read_to_string(peer_dir.join("public.status")) {
        Ok(code) => Route::status(
            code.trim().parse().expect("peer/public.status"),
            "unavailable",
        ),
        Err(_) => Route::ok(expand(
            &std::fs::read_to_string(peer_dir.join("public.json")).expect("peer/public.json"),
            &peer_dir,
            true,
        )),
    };
    server.route(support::PUBLIC_PATH, route);
    let sidecar = std::fs::read_to_string(peer_dir.join("healthz.status"))
        .ok()
        .map(|code| {
            let code = code.trim().parse().expect("peer/healthz.status");
            support::proxy::Proxy::start(support::proxy::Answer::Status(code))
        });
    Some(CasePeer {
        server,
        ca_pem: ca.cert_pem,
        sidecar,
    })
}

/// Outputs of a network case made comparable: the endpoint by its placeholder, measured
/// durations as 0.
fn normalize_peer(text: &str, peer: Option<&CasePeer>, metrics: bool) -> String {
    let Some(p) = peer else {
        return text.to_string();
    };
    let base = p.server.endpoint();
    let text = text.replace(&base, "{{peer:endpoint}}");
    if !metrics {
        return text;
    }
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("metric line");
            if v["name"] == "d8_istio_federation_fetch_duration_seconds" {
                v["value"] = serde_json::json!(0.0);
            }
            format!("{v}\n")
        })
        .collect()
}

fn run_case(dir: &Path, failures: &mut Vec<String>) {
    let name = dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let peer = start_peer(dir);
    let mut bc_text =
        std::fs::read_to_string(dir.join("binding-context.json")).expect("binding-context.json");
    if let Some(p) = &peer {
        bc_text = bc_text
            .replace("{{peer:endpoint}}", &p.server.endpoint())
            .replace("{{peer:ca}}", &json_escape(&p.ca_pem));
    }
    let bc = expand(&bc_text, dir, true);
    let mut env = parse_env(&std::fs::read_to_string(dir.join("env")).unwrap_or_default());
    if let Some(p) = &peer {
        env.push(("ISTIO_FEDERATION_HOOK_OFFLINE".into(), "false".into()));
        if let Some(proxy) = &p.sidecar {
            env.push(("HTTP_PROXY".into(), proxy.url()));
        }
    }
    // Golden cases reconcile from cached metadata unless a case opts into the network.
    if !env
        .iter()
        .any(|(k, _)| k == "ISTIO_FEDERATION_HOOK_OFFLINE")
    {
        env.push(("ISTIO_FEDERATION_HOOK_OFFLINE".into(), "true".into()));
    }
    let values = std::fs::read_to_string(dir.join("values.json")).ok();
    let args_text = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    let args: Vec<&str> = args_text.split_whitespace().collect();
    let required: &[&str] = if args.first() == Some(&"export") {
        &EXPORT
    } else {
        &DISCOVERY
    };
    let run = run_hook_with(&args, &bc, &env, values.as_deref());

    let peer = peer.as_ref();
    let patches = normalize_peer(&contract(&run.patches), peer, false);
    compare_or_update(dir, "patches.ndjson", &patches, failures);
    let metrics = normalize_peer(&run.metrics, peer, true);
    compare_or_update(dir, "metrics.ndjson", &metrics, failures);
    let stderr = normalize_peer(&contract(&run.stderr), peer, false);
    compare_or_update(dir, "stderr.log", &stderr, failures);
    compare_or_update(dir, "exit-code", &format!("{}\n", run.code), failures);
    if !run.stdout.is_empty() {
        failures.push(format!(
            "{name}: wrote to stdout although KUBERNETES_PATCH_PATH was set: {}",
            run.stdout
        ));
    }
    if run.code != 0 && !run.patches.is_empty() {
        failures.push(format!("{name}: failed run wrote patches"));
    }

    let ops = ndjson(&run.patches);
    compare_secret_files(dir, &ops, failures);
    for p in check_operations(&ops) {
        failures.push(format!("{name}: {p}"));
    }
    for m in ndjson(&run.metrics) {
        let group = if args.first() == Some(&"export") {
            "federation_export"
        } else {
            "federation_discovery"
        };
        let ok = m["group"] == group
            && (m["action"] == "expire"
                || (m["action"] == "set"
                    && m["value"].is_number()
                    && m["labels"]
                        .as_object()
                        .is_some_and(|l| l.values().all(|v| v.is_string()))));
        if !ok {
            failures.push(format!("{name}: bad metric operation {m}"));
        }
    }

    // Zero churn: apply the patches and run again on the resulting state.
    let input: serde_json::Value = match serde_json::from_str(&bc) {
        Ok(v) => v,
        Err(_) => return,
    };
    let complete = input.as_array().is_some_and(|a| {
        a.iter()
            .any(|c| required.iter().all(|b| c["snapshots"].get(b).is_some()))
    });
    if run.code != 0 || !complete {
        return;
    }
    let mut store = Store::from_binding_context(&input);
    store.apply(&ops);
    let again = run_hook_with(
        &args,
        &store.binding_context("refresh_remote_metadata").to_string(),
        &env,
        values.as_deref(),
    );
    // Two exceptions, the two halves of "policy before trust" (docs/security.md, "Exported
    // means reachable"): a run that creates a peer's AuthorizationPolicy holds that peer's
    // new roots, and the next run — the one the policy's watch event starts — adds them,
    // writing no policy; a run that removes a peer's last root keeps its policy, and the next
    // run deletes it, and nothing else. The run after that must write nothing.
    let writes_policy = |ops: &[serde_json::Value]| {
        ops.iter()
            .any(|op| op["object"]["kind"] == "AuthorizationPolicy")
    };
    let only_policy_deletes = |ops: &[serde_json::Value]| {
        ops.iter()
            .all(|op| op["operation"] == "Delete" && op["kind"] == "AuthorizationPolicy")
    };
    let again_ops = ndjson(&again.patches);
    let second_half = !again_ops.is_empty()
        && ((writes_policy(&ops) && !writes_policy(&again_ops)) || only_policy_deletes(&again_ops));
    let again = if again.code == 0 && second_half {
        store.apply(&again_ops);
        run_hook_with(
            &args,
            &store.binding_context("refresh_remote_metadata").to_string(),
            &env,
            values.as_deref(),
        )
    } else {
        again
    };
    if again.code != 0 || !again.patches.is_empty() {
        failures.push(format!(
            "{name}: a later run after applying the patches is not a no-op (exit {}):\n{}",
            again.code, again.patches
        ));
    }
}

fn case_dirs(sub: &str) -> Vec<std::path::PathBuf> {
    let base = root().join("testdata").join(sub);
    let mut dirs: Vec<_> = std::fs::read_dir(&base)
        .expect("testdata dir")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Runs every case folder of `testdata/<sub>/` (at least `min` of them).
fn run_all(sub: &str, min: usize) {
    let dirs = case_dirs(sub);
    assert!(
        dirs.len() >= min,
        "expected at least {min} golden cases in testdata/{sub}, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for d in &dirs {
        run_case(d, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn golden_export_cases() {
    run_all("export", 5);
}

#[test]
fn golden_cases() {
    run_all("discovery", 25);
}

/// The test-side copy of Istio's `exportTo` rules refuses what istiod refuses, so a golden
/// case writing an invalid `exportTo` fails.
#[test]
fn istio_export_to_rules_refuse_what_istiod_refuses() {
    use serde_json::json;
    let ok = |v, se| common::istio::check_export_to(&v, "d8-istio", se).is_empty();
    assert!(ok(json!(["."]), false));
    assert!(ok(json!([".", "dev", "prod"]), false));
    assert!(ok(json!(["*"]), false));
    assert!(ok(json!(["~"]), true));
    assert!(!ok(json!(["~"]), false), "~ only on ServiceEntries");
    assert!(
        !ok(json!([".", "d8-istio"]), true),
        ". is the own namespace"
    );
    assert!(!ok(json!(["prod", "prod"]), true));
    assert!(!ok(json!(["*", "prod"]), true));
    assert!(!ok(json!(["~", "prod"]), true));
    assert!(!ok(json!(["Prod"]), true));
    assert!(!ok(json!(["prod.ns"]), true));
    assert!(!ok(json!("prod"), true));
}
