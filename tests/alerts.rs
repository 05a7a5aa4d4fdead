//! Every alert in `deploy/base/alerts.yaml` fires and resolves, proven with `promtool test rules`
//! (Debian package `prometheus`, installed by `scripts/test-deps.sh`) on series the hook
//! really emits: the test files in `testdata/alerts/` name their input series by a golden
//! case's `metrics.ndjson`, so a renamed metric or label breaks this test, not production.
//!
//! Placeholders in the test files:
//! - `{{series:CASE:METRIC[:label=value,…]}}` — the first `set` of METRIC in
//!   `testdata/discovery/CASE/metrics.ndjson` (`export/CASE`: `testdata/export/CASE/…`, with
//!   the export hook's `hook` label) whose labels match, as a series selector with the
//!   `hook` label shell-operator adds (docs/reference/metrics.md);
//! - `{{label:CASE:METRIC:NAME[:label=value,…]}}` — one label value of that series.
//!
//! A golden case's endpoint placeholder `{{peer:endpoint}}` becomes a realistic URL here.

mod common;

use common::{ndjson, root};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// What shell-operator puts in the `hook` label: the hook's path under the hooks directory.
const HOOK_LABEL: &str = "istio-federation-discovery";
const EXPORT_HOOK_LABEL: &str = "istio-federation-export";
const PEER_ENDPOINT: &str = "https://istio-metadata.b.example/metadata/";

fn rules_spec() -> Value {
    let text =
        std::fs::read_to_string(root().join("deploy/base/alerts.yaml")).expect("alerts.yaml");
    let doc: Value = serde_saphyr::from_str(&text).expect("alerts.yaml is YAML");
    assert_eq!(doc["kind"], "PrometheusRule");
    doc["spec"].clone()
}

fn alert_names(spec: &Value) -> Vec<String> {
    spec["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect()
}

/// The labels of the first matching `set` of `metric` in a golden case.
fn golden_labels(case: &str, metric: &str, filter: &str) -> serde_json::Map<String, Value> {
    // `export/CASE` names an export golden case, anything else a discovery one.
    let path = match case.strip_prefix("export/") {
        Some(c) => root().join("testdata/export").join(c),
        None => root().join("testdata/discovery").join(case),
    }
    .join("metrics.ndjson");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{}", path.display()));
    let wanted: Vec<(&str, &str)> = filter
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split_once('=').expect("filter label=value"))
        .collect();
    for op in ndjson(&text) {
        if op["action"] != "set" || op["name"] != metric {
            continue;
        }
        let labels = op["labels"].as_object().cloned().unwrap_or_default();
        if wanted
            .iter()
            .all(|(k, v)| labels.get(*k).and_then(Value::as_str) == Some(v))
        {
            return labels
                .into_iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .unwrap_or("")
                        .replace("{{peer:endpoint}}", PEER_ENDPOINT);
                    (k, Value::from(v))
                })
                .collect();
        }
    }
    panic!("{case}: no {metric} with {filter:?} in metrics.ndjson");
}

fn expand(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").expect("unterminated placeholder");
        let parts: Vec<&str> = after[..end].split(':').collect();
        match parts.as_slice() {
            ["series", case, metric, filter @ ..] => {
                let labels = golden_labels(case, metric, filter.first().copied().unwrap_or(""));
                let mut sel: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
                    .collect();
                let hook = if case.starts_with("export/") {
                    EXPORT_HOOK_LABEL
                } else {
                    HOOK_LABEL
                };
                sel.push(format!("hook={hook:?}"));
                out.push_str(&format!("{metric}{{{}}}", sel.join(",")));
            }
            ["label", case, metric, name, filter @ ..] => {
                let labels = golden_labels(case, metric, filter.first().copied().unwrap_or(""));
                out.push_str(labels[*name].as_str().expect("label value"));
            }
            _ => panic!("unknown placeholder {{{{{}}}}}", &after[..end]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Seconds of a promtool duration like `90m`, `2h`, `1d`, `3h30m`.
fn seconds(d: &str) -> u64 {
    let mut total = 0;
    let mut num = String::new();
    for c in d.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().expect("duration number");
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => panic!("duration unit {c} in {d}"),
        };
    }
    assert!(num.is_empty(), "duration {d} without unit");
    total
}

/// (alert, fires?) at each eval time, over every test of every file.
fn checks(test_files: &[Value]) -> Vec<(String, u64, bool)> {
    let mut out = Vec::new();
    for f in test_files {
        for t in f["tests"].as_array().expect("tests") {
            for a in t["alert_rule_test"].as_array().cloned().unwrap_or_default() {
                let name = a["alertname"].as_str().expect("alertname").to_string();
                let at = seconds(a["eval_time"].as_str().expect("eval_time"));
                let fires = a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty());
                out.push((name, at, fires));
            }
        }
    }
    out
}

#[test]
fn every_alert_fires_and_resolves_on_the_hooks_series() {
    let promtool = Path::new("/usr/bin/promtool");
    assert!(
        promtool.exists(),
        "promtool is missing: run scripts/test-deps.sh (apt-get install prometheus)"
    );
    let spec = rules_spec();
    let dir = tempfile::tempdir().expect("tempdir");
    // The rules as deployed pass `promtool check rules` (expressions, annotation templates)…
    std::fs::write(dir.path().join("deployed.json"), spec.to_string()).expect("rules");
    let out = Command::new(promtool)
        .args(["check", "rules", "deployed.json"])
        .current_dir(dir.path())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check rules deploy/base/alerts.yaml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // …and are unit-tested without their annotations, which promtool would otherwise compare
    // word for word: the tests are about when an alert fires, and with which labels.
    let mut tested = spec.clone();
    for g in tested["groups"].as_array_mut().expect("groups") {
        for r in g["rules"].as_array_mut().expect("rules") {
            if let Some(o) = r.as_object_mut() {
                o.remove("annotations");
            }
        }
    }
    std::fs::write(dir.path().join("rules.json"), tested.to_string()).expect("rules");

    let mut files: Vec<_> = std::fs::read_dir(root().join("testdata/alerts"))
        .expect("testdata/alerts")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut parsed = Vec::new();
    for f in &files {
        let text = expand(&std::fs::read_to_string(f).expect("test file"));
        let doc: Value = serde_saphyr::from_str(&text).expect("test file is YAML");
        assert_eq!(
            doc["rule_files"],
            serde_json::json!(["rules.json"]),
            "{}: rule_files must be [rules.json], the extracted .spec",
            f.display()
        );
        let name = f.file_name().expect("name");
        let target = dir.path().join(name);
        std::fs::write(&target, &text).expect("write test");
        let out = Command::new(promtool)
            .args(["test", "rules"])
            .arg(&target)
            .current_dir(dir.path())
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool test rules {}:\n{}{}",
            f.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        parsed.push(doc);
    }
    // Every alert is shown firing, and not firing at a later time of the same file set.
    let checks = checks(&parsed);
    for alert in alert_names(&spec) {
        let fired: Vec<u64> = checks
            .iter()
            .filter(|(a, _, f)| *a == alert && *f)
            .map(|(_, t, _)| *t)
            .collect();
        assert!(!fired.is_empty(), "no test shows {alert} firing");
        let first = fired.iter().min().copied().unwrap_or(0);
        assert!(
            checks
                .iter()
                .any(|(a, t, f)| *a == alert && !*f && *t > first),
            "no test shows {alert} resolving after it fired"
        );
    }
}

#[test]
fn durations_read_like_promtool() {
    assert_eq!(seconds("90m"), 5400);
    assert_eq!(seconds("3h30m"), 12600);
    assert_eq!(seconds("1d"), 86400);
}
