//! `plan` against the offline run, on every golden case of `testdata/discovery/`: the same
//! operations in the same order (each with a reason), nothing written to the patch or metrics
//! files, and the run's failure reproduced as plan's (docs/operating.md).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn case_dirs() -> Vec<PathBuf> {
    let base = root().join("testdata/discovery");
    let mut dirs: Vec<_> = std::fs::read_dir(&base)
        .expect("testdata dir")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

struct Case {
    name: String,
    bc: String,
    env: Vec<(String, String)>,
    values: Option<String>,
}

fn load(dir: &Path) -> Case {
    // Cases with a `peer/` folder fetch in the golden runner; plan and the offline run compared
    // here never do, so their peer is just a name.
    let text = std::fs::read_to_string(dir.join("binding-context.json"))
        .expect("binding-context.json")
        .replace("{{peer:endpoint}}", "https://127.0.0.1:9/metadata/")
        .replace("{{peer:ca}}", "");
    let bc = expand(&text, dir, true);
    let mut env = parse_env(&std::fs::read_to_string(dir.join("env")).unwrap_or_default());
    if !env
        .iter()
        .any(|(k, _)| k == "ISTIO_FEDERATION_HOOK_OFFLINE")
    {
        env.push(("ISTIO_FEDERATION_HOOK_OFFLINE".into(), "true".into()));
    }
    Case {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        bc,
        env,
        values: std::fs::read_to_string(dir.join("values.json")).ok(),
    }
}

fn s(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or("").to_string()
}

/// What one written operation stands for: (shell-operator operation, kind, namespace, name).
fn wire_identity(line: &Value) -> (String, String, String, String) {
    let obj = line.get("object");
    let pick = |field: &str, meta: &str| match obj {
        Some(o) => s(o.pointer(meta)),
        None => s(line.get(field)),
    };
    (
        s(line.get("operation")),
        pick("kind", "/kind"),
        pick("namespace", "/metadata/namespace"),
        pick("name", "/metadata/name"),
    )
}

/// The shell-operator operations a planned action may stand for.
fn operations_for(action: &str) -> &'static [&'static str] {
    match action {
        "create" => &["CreateOrUpdate", "CreateIfNotExists"],
        "update" => &["CreateOrUpdate"],
        "delete" => &["Delete"],
        "patch" => &["JSONPatch", "MergePatch"],
        _ => &[],
    }
}

/// Whether the binding context's snapshot of `binding` holds an object named `name`.
fn in_snapshot(bc: &Value, binding: &str, name: &str) -> bool {
    bc.as_array().into_iter().flatten().any(|c| {
        c.pointer(&format!("/snapshots/{binding}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|i| i.pointer("/object/metadata/name").and_then(Value::as_str) == Some(name))
    })
}

/// Runs the hook offline and plan on one case; records differences, returns how many
/// operations were compared.
fn compare(case: &Case, failures: &mut Vec<String>) -> usize {
    let mut compared_ops = 0;
    let run = run_hook(&case.bc, &case.env, case.values.as_deref());
    let plan = run_hook_with(
        &["plan", "--output", "json"],
        &case.bc,
        &case.env,
        case.values.as_deref(),
    );
    let name = &case.name;
    if !plan.patches.is_empty() || !plan.metrics.is_empty() {
        failures.push(format!("{name}: plan wrote to the patch or metrics file"));
    }
    if run.code != 0 {
        if plan.code != 1 {
            failures.push(format!(
                "{name}: the run fails (exit {}) but plan exits {}",
                run.code, plan.code
            ));
        }
        let last = |t: &str| t.lines().last().unwrap_or("").to_string();
        if last(&run.stderr)
            != last(&plan.stderr).replace("\"logger\":\"plan\"", "\"logger\":\"main\"")
        {
            failures.push(format!(
                "{name}: plan's error differs from the run's:\n{}\n{}",
                run.stderr, plan.stderr
            ));
        }
        return compared_ops;
    }
    if plan.code != 0 {
        failures.push(format!("{name}: plan exits {}: {}", plan.code, plan.stderr));
        return compared_ops;
    }
    let planned: Value = match serde_json::from_str(&plan.stdout) {
        Ok(v) => v,
        Err(e) => {
            failures.push(format!(
                "{name}: plan output is not JSON ({e}): {}",
                plan.stdout
            ));
            return compared_ops;
        }
    };
    let ops = planned["operations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let written = ndjson(&run.patches);
    if ops.len() != written.len() {
        failures.push(format!(
            "{name}: plan has {} operations, the run wrote {}:\n{}\n{}",
            ops.len(),
            written.len(),
            plan.stdout,
            run.patches
        ));
        return compared_ops;
    }
    let bc: Value = serde_json::from_str(&case.bc).unwrap_or(Value::Null);
    for (i, (p, w)) in ops.iter().zip(&written).enumerate() {
        let (op, kind, ns, obj_name) = wire_identity(w);
        let action = s(p.get("action"));
        let ok = operations_for(&action).contains(&op.as_str())
            && s(p.get("kind")) == kind
            && s(p.get("namespace")) == ns
            && s(p.get("name")) == obj_name
            && !s(p.get("reason")).trim().is_empty();
        if !ok {
            failures.push(format!("{name}: operation {i}: planned {p}, written {w}"));
        }
        // create and update tell apart whether the run's snapshot holds the object.
        let binding = match kind.as_str() {
            "ServiceEntry" => Some("service_entries"),
            "DestinationRule" => Some("destination_rules"),
            _ => None,
        };
        if let (Some(b), "CreateOrUpdate") = (binding, op.as_str()) {
            let expected = if in_snapshot(&bc, b, &obj_name) {
                "update"
            } else {
                "create"
            };
            if action != expected {
                failures.push(format!(
                    "{name}: operation {i} is {action}, expected {expected}"
                ));
            }
        }
        compared_ops += 1;
    }
    // The federations carry the conditions the run's status patches set.
    for w in &written {
        if w["operation"] == "MergePatch" {
            let fed = planned["federations"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f["name"] == w["name"]);
            let want = &w["mergePatch"]["status"]["conditions"];
            if !want.is_null() && fed.map(|f| &f["conditions"]) != Some(want) {
                failures.push(format!(
                    "{name}: conditions of {} differ from the run's",
                    w["name"]
                ));
            }
        }
    }
    // The text form lists every operation.
    let text = run_hook_with(&["plan"], &case.bc, &case.env, case.values.as_deref());
    if text.code != 0 || ops.iter().any(|o| !text.stdout.contains(&s(o.get("name")))) {
        failures.push(format!("{name}: text plan incomplete:\n{}", text.stdout));
    }
    compared_ops
}

#[test]
fn plan_equals_the_offline_run_on_every_golden_case() {
    let dirs = case_dirs();
    assert!(dirs.len() >= 25, "golden cases missing");
    let mut failures = Vec::new();
    let mut compared_ops = 0;
    for dir in &dirs {
        compared_ops += compare(&load(dir), &mut failures);
    }
    assert!(
        compared_ops >= 40,
        "only {compared_ops} operations compared"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn plan_json(case: &str) -> Value {
    let c = load(&root().join("testdata/discovery").join(case));
    let plan = run_hook_with(&["plan", "-o", "json"], &c.bc, &c.env, c.values.as_deref());
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    serde_json::from_str(&plan.stdout).expect("plan JSON")
}

fn reasons(plan: &Value) -> Vec<String> {
    plan["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            format!(
                "{} {} {}: {}",
                s(o.get("action")),
                s(o.get("kind")),
                s(o.get("name")),
                s(o.get("reason"))
            )
        })
        .collect()
}

#[test]
fn reasons_say_why_in_words() {
    let stale = reasons(&plan_json("stale-managed-deleted-unmanaged-untouched"));
    assert!(
        stale.iter().any(|r| r.starts_with("delete ServiceEntry")
            && r.contains("no federation exports")
            && r.contains("any more")),
        "{stale:#?}"
    );
    let merged = reasons(&plan_json("merge-g46-same-host-two-federations"));
    assert!(
        merged.iter().any(|r| r.starts_with("create ServiceEntry")
            && r.contains("federations ")
            && r.contains(" export ")),
        "{merged:#?}"
    );
    let rotation = reasons(&plan_json("mesh-config-rotation"));
    assert!(
        rotation.iter().any(|r| r.starts_with("patch ConfigMap")
            && r.contains("trust bundle")
            && r.contains("sha256:")),
        "{rotation:#?}"
    );
    let disabled = reasons(&plan_json("disabled-cleanup"));
    assert!(
        disabled
            .iter()
            .all(|r| !r.starts_with("delete") || r.contains("disabled")),
        "{disabled:#?}"
    );
    let status = plan_json("awaiting-metadata-and-no-gateways");
    assert!(
        reasons(&status)
            .iter()
            .any(|r| r.starts_with("patch IstioFederation") && r.contains("conditions:")),
        "{status:#}"
    );
}

/// Deletes caused by `spec.import` name the field and the federation; exportTo changes say so.
#[test]
fn import_policy_reasons_name_the_field() {
    let excluded = reasons(&plan_json("import-exclude-hosts-deletes-only-excluded"));
    let deletes: Vec<&String> = excluded
        .iter()
        .filter(|r| r.starts_with("delete"))
        .collect();
    assert_eq!(deletes.len(), 4, "{excluded:#?}");
    for r in &deletes {
        assert!(
            r.ends_with("is excluded by spec.import.excludeHosts of federation b"),
            "{r}"
        );
    }
    let listed = reasons(&plan_json("import-hosts-only-listed-are-imported"));
    assert!(
        listed.iter().any(|r| r
            == "delete ServiceEntry cache-data-svc-b-local-766f584864: cache.data.svc.b.local is not listed in spec.import.hosts of federation b"),
        "{listed:#?}"
    );
    let merged = reasons(&plan_json(
        "import-exclude-merged-host-keeps-the-other-federation",
    ));
    assert!(
        merged.iter().any(|r| r
            == "delete ServiceEntry shared-svc-b-local-9c8cbb5bc: shared.svc.b.local is excluded by spec.import.excludeHosts of federation a; the other federations serve it through ServiceEntry shared-svc-b-local-6d9f68f9b"),
        "{merged:#?}"
    );
    let visible = reasons(&plan_json("import-export-to-on-both-objects"));
    assert!(
        visible
            .iter()
            .filter(|r| r.starts_with("update"))
            .all(|r| r.ends_with(r#"exportTo unset → [".", "prod"] (spec.import.exportTo)"#)),
        "{visible:#?}"
    );
    assert_eq!(visible.len(), 8, "{visible:#?}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["plan", "--output", "yaml"][..],
        &["plan", "--bogus"],
        &["plan", "--output"],
    ] {
        let r = run_hook_with(args, "[]", &[], None);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("usage: istio-federation-hook plan"),
            "{}",
            r.stderr
        );
    }
    let help = run_hook_with(&["plan", "--help"], "[]", &[], None);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("--output text|json"));
}

/// A case's state after its run was applied, changed by `edit`, as a new case.
fn after_run(case: &str, edit: impl Fn(&mut Store)) -> Case {
    let mut c = load(&root().join("testdata/discovery").join(case));
    let run = run_hook(&c.bc, &c.env, c.values.as_deref());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut store = Store::from_binding_context(&serde_json::from_str(&c.bc).unwrap());
    store.apply(&ndjson(&run.patches));
    edit(&mut store);
    c.bc = store.binding_context("refresh_remote_metadata").to_string();
    c.name = format!("{case} (after its run, edited)");
    c
}

fn plan_of(c: &Case) -> Vec<String> {
    let plan = run_hook_with(
        &["plan", "--output=json"],
        &c.bc,
        &c.env,
        c.values.as_deref(),
    );
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    reasons(&serde_json::from_str(&plan.stdout).expect("plan JSON"))
}

#[test]
fn second_runs_explain_updates_and_replacements() {
    // Nothing changed since the run: nothing planned.
    let steady = after_run("stale-managed-deleted-unmanaged-untouched", |_| {});
    assert_eq!(plan_of(&steady), Vec::<String>::new());

    // Someone edited the ServiceEntry's port and dropped our annotation: an update saying so.
    let edited = after_run("stale-managed-deleted-unmanaged-untouched", |s| {
        let se = s
            .objects
            .get_mut("service_entries")
            .unwrap()
            .iter_mut()
            .find(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("web-prod-svc-b-local-")
            })
            .unwrap();
        se["spec"]["ports"][0]["number"] = 81.into();
        se["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("federation.istio.deckhouse.io/federations");
    });
    let mut failures = Vec::new();
    let compared = compare(&edited, &mut failures);
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(compared, 1);
    let r = plan_of(&edited);
    assert!(
        r[0].starts_with("update ServiceEntry web-prod-svc-b-local-"),
        "{r:#?}"
    );
    assert!(r[0].contains("ports http/81 → http/80"), "{r:#?}");
    assert!(
        r[0].contains("annotation federation.istio.deckhouse.io/federations missing"),
        "{r:#?}"
    );

    // The peer moved its gateway: objects named after the new gateway set replace the old.
    let moved = after_run("stale-managed-deleted-unmanaged-untouched", |s| {
        let fed = &mut s.objects.get_mut("federations").unwrap()[0];
        fed["status"]["metadataCache"]["private"]["ingressGateways"][0]["address"] =
            "9.9.9.9".into();
    });
    assert!(compare(&moved, &mut failures) >= 4);
    assert!(failures.is_empty(), "{failures:#?}");
    let r = plan_of(&moved);
    assert!(
        r.iter()
            .any(|l| l.starts_with("create ServiceEntry") && l.contains("9.9.9.9:15443")),
        "{r:#?}"
    );
    assert!(
        r.iter().any(|l| l.starts_with("delete ServiceEntry")
            && l.contains(
                "web.prod.svc.b.local is now served by ServiceEntry web-prod-svc-b-local-"
            )),
        "{r:#?}"
    );
}

/// The platform guards in plan's words (docs/security.md, "Platform failures"): held deletes
/// say so, and a federation whose peer publishes another clusterUUID shows the mismatch.
#[test]
fn plan_explains_held_deletes_and_shows_a_uuid_mismatch() {
    let held = reasons(&plan_json("mass-deletion-empty-snapshot-held"));
    assert_eq!(held.len(), 5, "{held:#?}");
    assert!(
        held[0].contains("trust entries whose removal the mass-deletion guard holds"),
        "{held:#?}"
    );
    for r in &held[1..] {
        assert!(
            r.contains("delete held by the mass-deletion guard since 2027-01-01T00:00:00Z"),
            "{r}"
        );
    }
    // The mismatch case after its run: status carries ClusterUUIDMismatch; plan (offline)
    // lists it among the federation's conditions, in JSON and in text.
    let c = load(&root().join("testdata/discovery/cluster-uuid-mismatch-keeps-the-pin"));
    let mut store = Store::from_binding_context(&serde_json::from_str(&c.bc).unwrap());
    let patches = std::fs::read_to_string(
        root().join("testdata/discovery/cluster-uuid-mismatch-keeps-the-pin/patches.ndjson"),
    )
    .unwrap();
    store.apply(&ndjson(&expand(&patches, &root(), true)));
    let bc = store.binding_context("refresh_remote_metadata").to_string();
    let plan = run_hook_with(&["plan", "-o", "json"], &bc, &c.env, None);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let public = plan["federations"][0]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PublicMetadataExchangeReady")
        .cloned()
        .unwrap();
    assert_eq!(public["reason"], "ClusterUUIDMismatch", "{plan}");
    assert!(public["message"]
        .as_str()
        .unwrap()
        .contains("uuid-impostor"));
    let text = run_hook_with(&["plan"], &bc, &c.env, None);
    assert!(
        text.stdout.contains("ClusterUUIDMismatch"),
        "{}",
        text.stdout
    );
}
