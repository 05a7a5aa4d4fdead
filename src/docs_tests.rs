//! The docs the tests keep true. The reference pages (docs/reference/) are held to the code they
//! describe, the alerts in deploy/ to docs/operating.md, and every relative link of README.md and
//! docs/ to the file and heading it names. Every list on the code's side comes from the code
//! itself, never from a copy kept by hand:
//!
//! - settings: the names and values keys [`Settings::load_from`] asks its lookups for, recorded
//!   over runs that take every branch; the documented defaults are fed back to the loader;
//! - the replay and test switches: every `ISTIO_FEDERATION_HOOK_…` name in `src/`;
//! - condition types and reasons: `ALL` of [`ConditionType`] and [`Reason`], which
//!   `enum_with_all!` builds from the declaration, so a new variant cannot be left out;
//! - metrics: `ALL` of the discovery hook's [`Metric`] (its emitter takes nothing else), and for
//!   `serve` what its `/metrics` renders (`serve::routes` calls [`assert_metrics_documented`]);
//! - alerts: every rule with an `alert` in the YAML files of deploy/.
//!
//! Run on their own with `cargo test --lib docs_tests` (and `cargo test --lib routes::` for
//! `serve`'s metrics).

use crate::discovery::status::metrics::Metric;
use crate::discovery::status::patch::ConditionType;
use crate::hook::settings::Settings;
use crate::protocol::failure::Reason;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The text under the heading `## {title}` of `page`, up to the next heading of level 1 or 2.
fn section<'p>(page: &'p str, rel: &str, title: &str) -> &'p str {
    let heading = format!("## {title}\n");
    let start = page
        .find(&heading)
        .map(|i| i + heading.len())
        .unwrap_or_else(|| panic!("{rel} has no section \"## {title}\""));
    let rest = &page[start..];
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| rest[i..].starts_with("# ") || rest[i..].starts_with("## "))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The cells of the rows of the first table in `text`, header and separator left out.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    lines
        .iter()
        .skip(2)
        .map(|l| {
            let inner = l.trim().trim_start_matches('|').trim_end_matches('|');
            split_cells(inner)
        })
        .collect()
}

/// Splits a table row at the `|` that are not inside a code span.
fn split_cells(row: &str) -> Vec<String> {
    let (mut cells, mut cell, mut in_code) = (Vec::new(), String::new(), false);
    for c in row.chars() {
        match c {
            '`' => {
                in_code = !in_code;
                cell.push(c);
            }
            '|' if !in_code => cells.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    cells.push(cell.trim().to_string());
    cells
}

/// The code spans of a cell, in order.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// What is on one side and not the other, as a message; empty when the sets agree.
fn differences(
    what: &str,
    code: &BTreeSet<String>,
    documented: &BTreeSet<String>,
    page: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let missing: Vec<_> = code.difference(documented).collect();
    if !missing.is_empty() {
        out.push(format!("{what} in the code but not in {page}: {missing:?}"));
    }
    let stale: Vec<_> = documented.difference(code).collect();
    if !stale.is_empty() {
        out.push(format!(
            "{what} in {page} that the code does not have: {stale:?}"
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Settings

const SETTINGS: &str = "docs/reference/settings.md";

/// One row of the settings table.
struct SettingRow {
    values_key: Option<String>,
    env: String,
    /// The first code span of the default cell; `None` for a required setting.
    default: Option<String>,
}

fn documented_settings() -> Vec<SettingRow> {
    let page = read(SETTINGS);
    let rows = table_rows(section(&page, SETTINGS, "Settings"));
    assert!(!rows.is_empty(), "{SETTINGS}: the Settings table is empty");
    rows.iter()
        .map(|row| {
            assert_eq!(
                row.len(),
                4,
                "{SETTINGS}: a settings row has 4 cells: {row:?}"
            );
            let env = code_spans(&row[2]);
            assert_eq!(env.len(), 1, "{SETTINGS}: one variable per row: {row:?}");
            let values_key = code_spans(&row[1]).into_iter().next();
            let default = code_spans(&row[3]).into_iter().next();
            assert!(
                default.is_some() || row[3].contains("required when enabled"),
                "{SETTINGS}: the default of {} is neither a value nor \"required when enabled\"",
                env[0]
            );
            SettingRow {
                values_key,
                env: env[0].clone(),
                default,
            }
        })
        .collect()
}

/// The values document with `key` (dotted) set to `value` for every pair.
fn values_doc(pairs: &[(&str, &str)]) -> Value {
    let mut doc = serde_json::json!({});
    for (key, value) in pairs {
        let mut v = &mut doc;
        for part in key.split('.') {
            v = v
                .as_object_mut()
                .expect("an object")
                .entry(part.to_string())
                .or_insert(serde_json::json!({}));
        }
        *v = Value::String(value.to_string());
    }
    doc
}

/// What one run of the loader asks for: environment names and values keys (dotted).
#[derive(Default)]
struct Reads {
    env: BTreeSet<String>,
    values: BTreeSet<String>,
}

/// Runs the loader over `env` and `values`, adding what it asks for to `reads`.
fn load_recording(
    env: &BTreeMap<String, String>,
    values: Option<&Value>,
    reads: &RefCell<Reads>,
) -> Result<Settings, crate::hook::settings::SettingsError> {
    let env_lookup = |name: &str| {
        reads.borrow_mut().env.insert(name.to_string());
        env.get(name).cloned()
    };
    let values_lookup = |path: &[&str]| {
        reads.borrow_mut().values.insert(path.join("."));
        let mut v = values?;
        for p in path {
            v = v.get(p)?;
        }
        Some(v.clone())
    };
    Settings::load_from(&values_lookup, &env_lookup)
}

/// A value for each required setting, which has no default to use.
fn sample(env: &str) -> &'static str {
    match env {
        "CLUSTER_DOMAIN" => "cluster-a.local",
        "CLUSTER_UUID" => "5f0e1c2a-0000-4000-8000-000000000001",
        other => panic!("{SETTINGS}: {other} is required but the test has no sample value for it"),
    }
}

#[test]
fn settings_reference_lists_what_the_loader_reads() {
    let rows = documented_settings();
    let value_of = |r: &SettingRow| r.default.clone().unwrap_or_else(|| sample(&r.env).into());
    // Everything documented set, federation enabled: every branch that depends on another
    // setting being set is taken. Values keys are read only when their variable is unset, so a
    // second run gives them through the values file alone.
    let mut all_env: BTreeMap<String, String> =
        rows.iter().map(|r| (r.env.clone(), value_of(r))).collect();
    all_env.insert("ISTIO_FEDERATION_ENABLED".into(), "true".into());
    let pairs: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| r.values_key.clone().map(|k| (k, value_of(r))))
        .collect();
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (&**k, &**v)).collect();
    let values = values_doc(&pairs);
    let reads = RefCell::new(Reads::default());
    for (env, values) in [
        (BTreeMap::new(), None),
        (all_env.clone(), None),
        (BTreeMap::new(), Some(&values)),
        (all_env, Some(&values)),
    ] {
        let settings = load_recording(&env, values, &reads);
        assert!(settings.is_ok(), "the loader refused {env:?}: {settings:?}");
    }
    let reads = reads.into_inner();
    let doc_env: BTreeSet<String> = rows.iter().map(|r| r.env.clone()).collect();
    let doc_values: BTreeSet<String> = rows.iter().filter_map(|r| r.values_key.clone()).collect();
    let mut problems = differences("settings (environment)", &reads.env, &doc_env, SETTINGS);
    problems.extend(differences(
        "settings (values keys)",
        &reads.values,
        &doc_values,
        SETTINGS,
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn settings_reference_defaults_are_the_loaders() {
    let rows = documented_settings();
    let none = RefCell::new(Reads::default());
    let unset = format!("{:?}", load_recording(&BTreeMap::new(), None, &none));
    for row in &rows {
        let Some(default) = &row.default else {
            continue;
        };
        let env = BTreeMap::from([(row.env.clone(), default.clone())]);
        let got = format!("{:?}", load_recording(&env, None, &none));
        assert_eq!(
            got, unset,
            "{SETTINGS}: {}={default} (its documented default) is not what the loader uses \
             when it is unset",
            row.env
        );
    }
    // A required setting: with everything else set, leaving it out is the loader's error,
    // naming it.
    for row in rows.iter().filter(|r| r.default.is_none()) {
        let mut env: BTreeMap<String, String> = rows
            .iter()
            .filter(|r| r.env != row.env)
            .map(|r| {
                let v = r.default.clone().unwrap_or_else(|| sample(&r.env).into());
                (r.env.clone(), v)
            })
            .collect();
        env.insert("ISTIO_FEDERATION_ENABLED".into(), "true".into());
        let settings = load_recording(&env, None, &none).expect("valid settings");
        let err = settings.check_required().map(|()| String::new());
        assert!(
            matches!(&err, Err(e) if e.to_string().contains(&row.env)),
            "{SETTINGS} says {} is required when enabled, but without it: {err:?}",
            row.env
        );
    }
}

/// Every `ISTIO_FEDERATION_HOOK_…` name in the `.rs` files under `dir`.
fn hook_switches_in(dir: &Path, out: &mut BTreeSet<String>) {
    const PREFIX: &str = "ISTIO_FEDERATION_HOOK_";
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            hook_switches_in(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("readable source");
            for (i, _) in text.match_indices(PREFIX) {
                let name: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if name.len() > PREFIX.len() {
                    out.insert(name);
                }
            }
        }
    }
}

#[test]
fn settings_reference_lists_every_replay_and_test_switch() {
    let mut code = BTreeSet::new();
    hook_switches_in(&root().join("src"), &mut code);
    assert!(
        !code.is_empty(),
        "no ISTIO_FEDERATION_HOOK_ name found under src/"
    );
    let page = read(SETTINGS);
    let documented: BTreeSet<String> =
        table_rows(section(&page, SETTINGS, "Switches for replays and tests"))
            .iter()
            .map(|row| code_spans(&row[0]).concat())
            .collect();
    let problems = differences("switches", &code, &documented, SETTINGS);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Conditions

const CONDITIONS: &str = "docs/reference/conditions.md";

/// The first column of the table of `title`, each row's description cell checked non-empty.
fn documented_names(page: &str, rel: &str, title: &str) -> BTreeSet<String> {
    table_rows(section(page, rel, title))
        .iter()
        .map(|row| {
            let name = code_spans(&row[0]).concat();
            assert!(
                row.len() >= 2 && !row[row.len() - 1].is_empty(),
                "{rel}: {name} has no description"
            );
            name
        })
        .collect()
}

#[test]
fn conditions_reference_lists_every_condition_type_and_reason() {
    let page = read(CONDITIONS);
    let types: BTreeSet<String> = ConditionType::ALL
        .iter()
        .map(|t| t.as_str().to_string())
        .collect();
    let reasons: BTreeSet<String> = Reason::ALL.iter().map(|r| r.to_string()).collect();
    let mut problems = differences(
        "condition types",
        &types,
        &documented_names(&page, CONDITIONS, "Condition types"),
        CONDITIONS,
    );
    problems.extend(differences(
        "reasons",
        &reasons,
        &documented_names(&page, CONDITIONS, "Reasons"),
        CONDITIONS,
    ));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Metrics

const METRICS: &str = "docs/reference/metrics.md";

/// Metric names with their label names.
pub(crate) type MetricLabels = BTreeMap<String, BTreeSet<String>>;

/// Fails unless the table of `section_title` in the metrics reference lists exactly `exported`,
/// each with exactly its labels (`—` for none) and a description.
pub(crate) fn assert_metrics_documented(section_title: &str, exported: &MetricLabels) {
    let page = read(METRICS);
    let mut documented = MetricLabels::new();
    for row in table_rows(section(&page, METRICS, section_title)) {
        assert_eq!(
            row.len(),
            3,
            "{METRICS}: a metrics row has 3 cells: {row:?}"
        );
        let name = code_spans(&row[0]).concat();
        assert!(!row[2].is_empty(), "{METRICS}: {name} has no description");
        documented.insert(name, code_spans(&row[1]).into_iter().collect());
    }
    let names = |m: &MetricLabels| m.keys().cloned().collect::<BTreeSet<_>>();
    let mut problems = differences(
        &format!("metrics ({section_title})"),
        &names(exported),
        &names(&documented),
        METRICS,
    );
    for (name, labels) in exported {
        if let Some(doc) = documented.get(name).filter(|d| *d != labels) {
            problems.push(format!(
                "{METRICS}: {name} is documented with labels {doc:?}, the code exports {labels:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The metrics of a Prometheus text exposition, with the label names of their series.
pub(crate) fn exposition_metrics(text: &str) -> MetricLabels {
    let mut out = MetricLabels::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            out.entry(name.to_string()).or_default();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = out.entry(line[..end].to_string()).or_default();
            if let Some(inner) = line[end..]
                .strip_prefix('{')
                .and_then(|l| l.split('}').next())
            {
                labels.extend(
                    inner
                        .split(',')
                        .filter_map(|kv| kv.split('=').next())
                        .map(str::to_string),
                );
            }
        }
    }
    out
}

#[test]
fn metrics_reference_lists_every_discovery_metric_with_its_labels() {
    let exported: MetricLabels = Metric::ALL
        .iter()
        .map(|m| {
            let labels = m.labels().iter().map(|l| l.to_string()).collect();
            (m.name().to_string(), labels)
        })
        .collect();
    assert_metrics_documented("Discovery hook", &exported);
}

// ---------------------------------------------------------------------------------------------
// Alerts

/// Every `{alert, labels.severity}` rule under `v`.
fn alert_rules(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(alert)) = map.get("alert") {
                let severity = map["labels"]["severity"].as_str().unwrap_or_default();
                out.push((alert.clone(), severity.to_string()));
            }
            map.values().for_each(|v| alert_rules(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| alert_rules(v, out)),
        _ => {}
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn operating_guide_describes_every_alert_in_deploy() {
    let mut files = Vec::new();
    yaml_files(&root().join("deploy"), &mut files);
    let mut rules = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable YAML");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        docs.iter().for_each(|d| alert_rules(d, &mut rules));
    }
    assert!(!rules.is_empty(), "no alert rule found under deploy/");
    const OPERATING: &str = "docs/operating.md";
    let page = read(OPERATING);
    let mut documented = BTreeMap::new();
    for row in table_rows(section(&page, OPERATING, "Alerts")) {
        assert_eq!(
            row.len(),
            3,
            "{OPERATING}: an alerts row has 3 cells: {row:?}"
        );
        let name = code_spans(&row[0]).concat();
        assert!(!row[2].is_empty(), "{OPERATING}: {name} has no description");
        documented.insert(name, row[1].clone());
    }
    let code: BTreeSet<String> = rules.iter().map(|(a, _)| a.clone()).collect();
    let names: BTreeSet<String> = documented.keys().cloned().collect();
    let mut problems = differences("alerts", &code, &names, OPERATING);
    for (alert, severity) in &rules {
        if let Some(doc) = documented.get(alert).filter(|d| *d != severity) {
            problems.push(format!(
                "{OPERATING}: {alert} is documented as {doc}, deploy/ says {severity}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Links

/// GitHub's anchor for a heading: lower case, everything but letters, digits, `_`, `-` and
/// spaces dropped, spaces as `-` (after a link's target is dropped and its text kept).
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find("](") {
        text.push_str(&rest[..open]);
        rest = rest[open..]
            .find(')')
            .map_or("", |close| &rest[open + close + 1..]);
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The lines of a Markdown file outside fenced code blocks, with their numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// The anchors of a Markdown file's headings; a repeated heading gets `-1`, `-2`… as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let s = slug(line[hashes..].trim());
            let n = seen.entry(s.clone()).or_insert(0);
            out.insert(if *n == 0 {
                s.clone()
            } else {
                format!("{s}-{n}")
            });
            *n += 1;
        }
    }
    out
}

/// The targets of the inline links and images of a line, code spans left out.
fn link_targets(line: &str) -> Vec<String> {
    let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        out.push(rest[..end].trim().to_string());
        rest = &rest[end..];
    }
    out
}

fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("docs/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut out);
    out
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("readable Markdown");
        let rel = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        for (n, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
                let dest = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().expect("a folder").join(path)
                };
                if !dest.exists() {
                    problems.push(format!("{rel}:{n}: {target}: no such file"));
                } else if !anchor.is_empty() {
                    let text = std::fs::read_to_string(&dest).unwrap_or_default();
                    if !anchors(&text).contains(anchor) {
                        problems.push(format!("{rel}:{n}: {target}: no such heading"));
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} relative links found: is the parser broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn slugs_follow_githubs_rules() {
    // GitHub's rules (github-slugger): punctuation goes, `_` and `-` stay, each space is a `-`.
    assert_eq!(
        slug("serve: the metadata endpoint"),
        "serve-the-metadata-endpoint"
    );
    assert_eq!(
        slug("Import: what we take, and for whom"),
        "import-what-we-take-and-for-whom"
    );
    assert_eq!(slug("`doctor` and [plan](x.md)"), "doctor-and-plan");
    assert_eq!(slug("Snake_case — dashes"), "snake_case--dashes");
    let text = "# A\n## Notes\n```\n## Not a heading\n```\n## Notes\n";
    let want: BTreeSet<String> = ["a", "notes", "notes-1"].map(String::from).into();
    assert_eq!(anchors(text), want);
}
