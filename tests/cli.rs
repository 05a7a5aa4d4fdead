//! The hook contract with shell-operator: `--config` output, every binding-context shape of
//! the reference examples, argument handling.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::Command;

fn config_with(env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--config");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `jq -c filter` on `input`, as shell-operator applies a binding's `jqFilter`: its output.
fn jq(filter: &str, input: &str) -> String {
    let out = Command::new("jq")
        .args(["-c", filter])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(input.as_bytes())?;
            c.wait_with_output()
        })
        .expect("jq is installed (apt-get install jq)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn config_validates_against_the_shell_operator_schema_in_both_modes() {
    let validator = config_validator();
    for env in [
        vec![],
        vec![
            ("TRUST_BUNDLE_MODE", "cacerts"),
            ("ISTIO_NAMESPACE", "istio-system"),
            ("FEDERATION_NAMESPACE", "federation"),
        ],
        vec![
            ("ISTIO_NETWORKING_API_VERSION", "networking.istio.io/v1"),
            ("MESH_CONFIG_NAME", "istio-shared"),
        ],
    ] {
        let (code, stdout, stderr) = config_with(&env);
        assert_eq!(code, 0, "{stderr}");
        assert!(stderr.is_empty(), "--config must not log: {stderr}");
        // Exactly one JSON document and nothing else on stdout.
        let cfg: Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
        let errs = errors(&validator, &cfg);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(cfg["configVersion"], "v1");
        // Every kubernetes binding and the schedule share one group (every run sees every snapshot).
        let groups: std::collections::BTreeSet<&str> = cfg["kubernetes"]
            .as_array()
            .unwrap()
            .iter()
            .chain(cfg["schedule"].as_array().unwrap())
            .map(|b| b["group"].as_str().unwrap())
            .collect();
        assert_eq!(groups.len(), 1);
        let names: Vec<&str> = cfg["kubernetes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "federations",
                "authn_keypair",
                "trust_bundle",
                "local_root_ca",
                "service_entries",
                "destination_rules",
                "authorization_policies",
                "public_services"
            ]
        );
        assert_eq!(cfg["schedule"][0]["crontab"], "* * * * *");
    }
    // The boundary's policies are watched in Istio's root namespace: ISTIO_NAMESPACE unless
    // ISTIO_ROOT_NAMESPACE says otherwise.
    for (env, ns) in [
        (vec![("ISTIO_NAMESPACE", "istio-system")], "istio-system"),
        (
            vec![
                ("ISTIO_NAMESPACE", "istio-system"),
                ("ISTIO_ROOT_NAMESPACE", "mesh-root"),
            ],
            "mesh-root",
        ),
    ] {
        let (_, stdout, _) = config_with(&env);
        let cfg: Value = serde_json::from_str(&stdout).unwrap();
        let b = &cfg["kubernetes"][6];
        assert_eq!(
            (&b["kind"], &b["apiVersion"]),
            (
                &json!("AuthorizationPolicy"),
                &json!("security.istio.io/v1")
            )
        );
        assert_eq!(b["namespace"]["nameSelector"]["matchNames"], json!([ns]));
    }
    let (_, stdout, _) = config_with(&[("TRUST_BUNDLE_MODE", "cacerts")]);
    let cfg: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(cfg["kubernetes"][2]["kind"], "Secret");
    assert_eq!(
        cfg["kubernetes"][2]["nameSelector"]["matchNames"][0],
        "cacerts"
    );
}

#[test]
fn config_does_not_need_run_time_settings_but_rejects_bad_ones() {
    // addon-operator runs --config without values: federation settings are not required then.
    let (code, _, _) = config_with(&[("ISTIO_FEDERATION_ENABLED", "true")]);
    assert_eq!(code, 0);
    let (code, stdout, stderr) = config_with(&[("TRUST_BUNDLE_MODE", "both")]);
    assert_ne!(code, 0);
    assert!(stdout.is_empty());
    assert!(stderr.contains("TRUST_BUNDLE_MODE"), "{stderr}");
}

#[test]
fn jq_filters_compile_with_jq() {
    // shell-operator runs gojq; jq accepts the same simple object constructions. CI installs jq.
    let (_, stdout, _) = config_with(&[]);
    let cfg: Value = serde_json::from_str(&stdout).unwrap();
    for b in cfg["kubernetes"].as_array().unwrap() {
        let filter = b["jqFilter"].as_str().unwrap();
        let out = Command::new("jq")
            .args(["-n", "-c", &format!("{{}} | {filter}")])
            .output()
            .expect("jq is installed (apt-get install jq)");
        assert!(
            out.status.success(),
            "jqFilter {filter:?} does not compile: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The operator's annotations on an IstioFederation (distrust, re-pin, the cluster.local
/// opt-in) are part of the federations binding's filter result, so setting one runs the hook
/// at once (docs/how-it-works.md, "Remote discovery"; docs/security.md).
#[test]
fn federations_filter_delivers_the_operators_annotations() {
    let (_, stdout, _) = config_with(&[]);
    let cfg: Value = serde_json::from_str(&stdout).unwrap();
    let binding = cfg["kubernetes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "federations")
        .expect("federations binding");
    let filter = binding["jqFilter"].as_str().unwrap();
    let run = |annotations: &str| -> String {
        jq(
            filter,
            &format!(
                r#"{{"metadata": {{"name": "b", "annotations": {annotations}}}, "spec": {{"trustDomain": "b.local"}}}}"#
            ),
        )
    };
    let none = run("{}");
    for key in [
        "federation.istio.deckhouse.io/distrust-roots",
        "federation.istio.deckhouse.io/repin-cluster-uuid",
        "federation.istio.deckhouse.io/accept-cluster-local-trust-domain",
    ] {
        let with = run(&format!(r#"{{"{key}": "x"}}"#));
        assert_ne!(with, none, "{key} is not in the filter result");
    }
    assert_eq!(run(r#"{"unrelated": "x"}"#), none);
}

#[test]
fn export_public_services_filter_delivers_the_export_to_annotation() {
    // shell-operator only re-runs the hook when a binding's filter result changes, so the
    // annotation must be part of it (docs/sharing.md).
    let out = Command::new(bin())
        .env_clear()
        .args(["export", "--config"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let cfg: Value = serde_json::from_slice(&out.stdout).unwrap();
    let binding = cfg["kubernetes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "public_services")
        .expect("public_services binding");
    let filter = binding["jqFilter"].as_str().unwrap();
    let run = |svc: &str| -> Value { serde_json::from_str(&jq(filter, svc)).unwrap() };
    let with = run(
        r#"{"metadata": {"name": "db", "annotations": {"federation.istio.deckhouse.io/export-to": "b.local, c.local", "other": "x"}}, "spec": {"ports": []}}"#,
    );
    assert_eq!(with["exportTo"], "b.local, c.local", "{with}");
    let changed = run(
        r#"{"metadata": {"name": "db", "annotations": {"federation.istio.deckhouse.io/export-to": "b.local"}}, "spec": {"ports": []}}"#,
    );
    assert_ne!(with, changed);
    let without = run(r#"{"metadata": {"name": "db"}, "spec": {"ports": []}}"#);
    assert_eq!(without["exportTo"], Value::Null, "{without}");
    assert_ne!(without, changed);
}

#[test]
fn batch_hook_probe_is_refused() {
    for args in [["hook", "list"], ["hook", "config"]] {
        let out = Command::new(bin()).args(args).output().unwrap();
        assert!(!out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            !stdout.contains("Found") && !stdout.contains("\"hooks\""),
            "{stdout}"
        );
    }
}

#[test]
fn help_and_version() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("istio-federation-hook "));
    let out = Command::new(bin()).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("BINDING_CONTEXT_PATH"));
    let out = Command::new(bin()).arg("--bogus").output().unwrap();
    assert!(!out.status.success());
}

fn enabled_env() -> Vec<(String, String)> {
    parse_env("ISTIO_FEDERATION_ENABLED=true\nCLUSTER_DOMAIN=my.cluster\nCLUSTER_UUID=deadbeef-mycluster\n")
}

#[test]
fn every_reference_binding_context_shape_is_handled() {
    // None of the reference examples carries our snapshots: each must be accepted (exit 0)
    // and must not change anything.
    let dir = root().join("testdata/binding-contexts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 14);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let run = run_hook(&text, &enabled_env(), None);
        assert_eq!(run.code, 0, "{}: {}", f.display(), run.stderr);
        assert!(run.patches.is_empty(), "{}: {}", f.display(), run.patches);
    }
    // Deckhouse's test harness may write the JSON string "" and empty files happen.
    for text in ["\"\"", "", "[]"] {
        let run = run_hook(text, &enabled_env(), None);
        assert_eq!(run.code, 0, "{text:?}: {}", run.stderr);
        assert!(run.patches.is_empty());
    }
}

#[test]
fn stdin_input_and_stdout_output() {
    use std::io::Write;
    let mut child = Command::new(bin())
        .env_clear()
        .env("ISTIO_FEDERATION_ENABLED", "false")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bc = serde_json::json!([{"binding": "x", "type": "Group", "snapshots": {"service_entries": [{"object": {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
        "metadata": {"name": "a", "namespace": "d8-istio", "labels": {"app.kubernetes.io/managed-by": "istio-federation-hook"}}}}]}}]);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(bc.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines = ndjson(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["operation"], "Delete");
    assert_eq!(lines[0]["name"], "a");
}

#[test]
fn the_schema_checks_can_fail() {
    // Guards against a validator that accepts everything (e.g. a schema that failed to load).
    let cfg = config_validator();
    for bad in [
        serde_json::json!({"configVersion": "v1", "kubernetes": []}),
        serde_json::json!({"configVersion": "v1", "kubernetes": [{"kind": "Pod", "executeHookOnSynchronization": "false"}]}),
        serde_json::json!({"configVersion": "v1", "schedule": [{"crontab": "* * * * *", "includeSnapshotsFrom": "x"}]}),
        serde_json::json!({"configVersion": "v1", "kubernetes": [{"kind": "Pod", "namespace": {"nameSelector": ["default"]}}]}),
    ] {
        assert!(!errors(&cfg, &bad).is_empty(), "accepted {bad}");
    }
    let ops = object_patch_validator();
    for bad in [
        serde_json::json!({"operation": "JSONPatch", "kind": "ConfigMap", "name": "x", "jsonPatch": [{"op": "remove", "path": "/a"}]}),
        serde_json::json!({"operation": "Delete", "name": "x"}),
        serde_json::json!({"operation": "Upsert", "object": {"kind": "x"}}),
        serde_json::json!({"operation": "MergePatch", "kind": "X", "name": "x", "mergePatch": {}}),
    ] {
        assert!(!errors(&ops, &bad).is_empty(), "accepted {bad}");
    }
    let se = service_entry_validator("v1");
    let bad = serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "x"},
        "spec": {"hosts": ["a.b"], "resolution": "STATICX"}});
    assert!(!errors(&se, &bad).is_empty());
    let bad_se = serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "x", "namespace": "n"},
        "spec": {"hosts": ["a.b.local"], "location": "MESH_INTERNAL", "resolution": "STATIC",
            "ports": [{"name": "http", "number": 80, "protocol": "HTTP"}],
            "endpoints": [{"address": "gw.example", "ports": {"web": 15443}}]}});
    let problems = common::istio::check_service_entries(&[bad_se]);
    assert!(
        problems.iter().any(|p| p.contains("not an IP")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("not defined by the service entry")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("tlsMode")),
        "{problems:?}"
    );
}

#[test]
fn hook_wrapper_passes_config_through() {
    let out = Command::new(root().join("hooks/istio-federation-discovery"))
        .arg("--config")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("ISTIO_FEDERATION_HOOK_BIN", bin())
        .output()
        .expect("hooks/istio-federation-discovery is executable");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg: Value = serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(cfg["configVersion"], "v1");
}
