//! The mesh config is edited surgically (docs/how-it-works.md, "Trust bundle modes"). Over the
//! corpus of real-world mesh configs in `testdata/mesh-configs/` (comments, anchors and merge keys,
//! odd scalars, flow maps, a JSON document, CRLF, document markers, no / empty / null
//! `caCertificates`, foreign entries, Istio's default mesh config), three runs of the trust
//! bundle plan — add b's and c's roots, rotate b's, remove all — must each:
//!
//! 1. leave every byte outside the `caCertificates` entry as it was (the entry is located here
//!    by a line/bracket scan of our own, not by the product's parser);
//! 2. read, to Go's `sigs.k8s.io/yaml` (what istiod uses; `tests/go/meshyaml`), as the document
//!    before except `caCertificates`, which holds exactly the entries it should — foreign ones
//!    kept, ours dropped when unwanted, wanted ones added once — computed here from Go's reading;
//! 3. be a no-op when run again.

mod common;

use common::cert;
use common::go_yaml::go_read;

use istio_federation_hook::discovery::trust::trust_bundle::{self, TrustEntry};
use istio_federation_hook::hook::settings::Settings;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::ops::Range;

const ANNOTATION: &str = "federation.istio.deckhouse.io/managed-trust-entries";

struct Case {
    file: &'static str,
    /// Entries the ownership annotation lists at the start: (trust domain, certificate name).
    owned: &'static [(&'static str, &'static str)],
    /// Whether removing all our entries gives back the original text byte for byte.
    round_trip: bool,
}

const CASES: &[Case] = &[
    Case {
        file: "istio-default.yaml",
        owned: &[],
        round_trip: true,
    },
    Case {
        file: "deckhouse-managed.yaml",
        owned: &[("b.local", "peer-b-root"), ("c.local", "peer-c-root")],
        round_trip: false,
    },
    Case {
        file: "odd-scalars.yaml",
        owned: &[],
        round_trip: true,
    },
    Case {
        file: "anchors.yaml",
        owned: &[("b.local", "peer-b-root")],
        round_trip: false,
    },
    Case {
        file: "flow-style.yaml",
        owned: &[],
        round_trip: false,
    },
    Case {
        file: "json.yaml",
        owned: &[],
        round_trip: false,
    },
    Case {
        file: "empty-list.yaml",
        owned: &[],
        round_trip: true,
    },
    Case {
        file: "null-list.yaml",
        owned: &[],
        round_trip: false,
    },
    Case {
        file: "crlf.yaml",
        owned: &[],
        round_trip: true,
    },
    Case {
        file: "document-markers.yaml",
        owned: &[],
        round_trip: true,
    },
    Case {
        file: "inf-value.yaml",
        owned: &[],
        round_trip: true,
    },
    Case {
        file: "no-final-newline.yaml",
        owned: &[],
        round_trip: true,
    },
    Case {
        file: "byte-order-mark.yaml",
        owned: &[],
        round_trip: true,
    },
    Case {
        file: "document-end-null.yaml",
        owned: &[],
        round_trip: true,
    },
    Case {
        file: "foreign-same-root.yaml",
        owned: &[("c.local", "peer-c-root")],
        round_trip: false,
    },
];

fn entry(td: &str, name: &str) -> TrustEntry {
    TrustEntry {
        trust_domain: td.into(),
        pem: cert(name),
        fingerprint: common::fingerprint_of(name),
    }
}

fn settings() -> Settings {
    Settings::load(None, &|k| {
        (k == "ISTIO_FEDERATION_ENABLED").then(|| "true".into())
    })
    .expect("settings")
}

fn configmap(mesh: &str, owned: &[(&str, &str)]) -> Value {
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "d8-istio", "resourceVersion": "1"},
        "data": {"mesh": mesh}});
    if !owned.is_empty() {
        let mut m = serde_json::Map::new();
        for (td, name) in owned {
            m.entry(td.to_string())
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .unwrap()
                .push(json!(common::fingerprint_of(name)));
        }
        cm["metadata"]["annotations"] = json!({ANNOTATION: Value::Object(m).to_string()});
    }
    cm
}

fn owned_pairs(cm: &Value) -> BTreeSet<(String, String)> {
    let Some(raw) = cm["metadata"]["annotations"][ANNOTATION].as_str() else {
        return BTreeSet::new();
    };
    let m: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_str(raw).expect("annotation JSON");
    m.into_iter()
        .flat_map(|(td, fps)| fps.into_iter().map(move |fp| (td.clone(), fp)))
        .collect()
}

/// SHA-256 of the first PEM block of a text, independent of the product's code.
fn first_fingerprint(pem: &str) -> Option<String> {
    use base64::Engine;
    let begin = pem.find("-----BEGIN CERTIFICATE-----")?;
    let rest = &pem[begin + 27..];
    let body: String = rest[..rest.find("-----END CERTIFICATE-----")?]
        .split_whitespace()
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let d = ring::digest::digest(&ring::digest::SHA256, &der);
    Some(d.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// (trust domain, fingerprint) of an entry of exactly our shape, as Go reads it.
fn our_shape(e: &Value) -> Option<(String, String)> {
    let o = e.as_object()?;
    if o.len() != 2 {
        return None;
    }
    let [td] = o.get("trustDomains")?.as_array()?.as_slice() else {
        return None;
    };
    Some((
        td.as_str()?.to_string(),
        first_fingerprint(o.get("pem")?.as_str()?)?,
    ))
}

/// The list the trust entries must be, computed from Go's reading of the text before.
fn expected_list(
    before: &[Value],
    owned: &BTreeSet<(String, String)>,
    desired: &[TrustEntry],
) -> Vec<Value> {
    let want: BTreeSet<(String, String)> = desired
        .iter()
        .map(|e| (e.trust_domain.clone(), e.fingerprint.clone()))
        .collect();
    let mut present = BTreeSet::new();
    let mut out = Vec::new();
    for e in before {
        match our_shape(e) {
            Some(k) if owned.contains(&k) => {
                if want.contains(&k) && present.insert(k) {
                    out.push(e.clone());
                }
            }
            Some(k) => {
                present.insert(k);
                out.push(e.clone());
            }
            None => out.push(e.clone()),
        }
    }
    for d in desired {
        if present.insert((d.trust_domain.clone(), d.fingerprint.clone())) {
            out.push(json!({"pem": d.pem, "trustDomains": [d.trust_domain]}));
        }
    }
    out
}

/// The byte range of the `caCertificates` entry, found by a scan that knows this corpus's
/// layouts: a key at the start of a line owns that line and every following line indented
/// deeper (or a `-` item at its column, blank and comment lines in between); a flow list
/// `[...]` ends at its matching bracket (through the end of the line in a block document);
/// inside a flow document the entry starts at the `, ` before the key.
fn entry_extent(text: &str) -> Option<Range<usize>> {
    let mut at = None;
    for (i, _) in text.match_indices("caCertificates") {
        let ls = text[..i].rfind('\n').map_or(0, |p| p + 1);
        let after = text[i + 14..]
            .trim_start_matches('"')
            .trim_start_matches(' ');
        if !text[ls..i].contains('#') && after.starts_with(':') {
            assert!(at.is_none(), "two caCertificates keys");
            at = Some(i);
        }
    }
    let i = at?;
    let ls = text[..i].rfind('\n').map_or(0, |p| p + 1);
    let key = if text[..i].ends_with('"') { i - 1 } else { i };
    let block_root = text[ls..key].bytes().all(|b| b == b' ');
    let colon = i + text[i..].find(':')? + 1;
    let value = colon + (text[colon..].len() - text[colon..].trim_start_matches(' ').len());
    let line_end = |p: usize| text[p..].find('\n').map_or(text.len(), |e| p + e + 1);
    if text[value..].starts_with('[') {
        let (mut depth, mut quote, mut end) = (0, None, value);
        for (j, c) in text[value..].char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '[') => depth += 1,
                (None, ']') => {
                    depth -= 1;
                    if depth == 0 {
                        end = value + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        if block_root {
            return Some(ls..line_end(end));
        }
        let start = if text[..key].ends_with(", ") {
            key - 2
        } else {
            key
        };
        return Some(start..end);
    }
    let col = key - ls;
    let mut end = line_end(ls);
    let mut p = end;
    while p < text.len() {
        let next = line_end(p);
        let line = text[p..next].trim_end_matches(['\n', '\r']);
        let body = line.trim_start_matches(' ');
        let indent = line.len() - body.len();
        if body.is_empty() || body.starts_with('#') {
            p = next;
            continue;
        }
        if indent > col || (indent == col && body.starts_with('-')) {
            end = next;
            p = next;
            continue;
        }
        break;
    }
    Some(ls..end)
}

/// Property 1: the two texts differ only inside the `caCertificates` entry.
fn outside_identical(before: &str, after: &str) -> Result<(), String> {
    let eq = |a: &str, b: &str, what: &str| {
        if a == b {
            Ok(())
        } else {
            Err(format!("{what}:\n--- before\n{a}\n--- after\n{b}"))
        }
    };
    match (entry_extent(before), entry_extent(after)) {
        (Some(b), Some(a)) => {
            eq(
                &before[..b.start],
                &after[..a.start],
                "text before the entry",
            )?;
            eq(&before[b.end..], &after[a.end..], "text after the entry")
        }
        (None, Some(a)) => {
            let rest = format!("{}{}", &after[..a.start], &after[a.end..]);
            // Appending after a last line without a line break first ends that line.
            let before_nl = format!("{before}\n");
            if rest == before_nl && !before.ends_with('\n') && a.end == after.len() {
                return Ok(());
            }
            eq(before, &rest, "text around the appended entry")
        }
        (Some(b), None) => {
            let rest = format!("{}{}", &before[..b.start], &before[b.end..]);
            eq(&rest, after, "text around the removed entry")
        }
        (None, None) => eq(before, after, "text without an entry"),
    }
}

fn without_ca(v: &Value) -> (Value, Vec<Value>) {
    let mut v = if v.is_null() { json!({}) } else { v.clone() };
    let list = v
        .as_object_mut()
        .and_then(|o| o.remove("caCertificates"))
        .and_then(|l| l.as_array().cloned())
        .unwrap_or_default();
    (v, list)
}

/// One planned run: the text before and after, what we owned before, what was desired.
struct Step {
    case: &'static str,
    name: &'static str,
    before: String,
    after: String,
    owned: BTreeSet<(String, String)>,
    desired: Vec<TrustEntry>,
}

#[test]
fn mesh_configs_are_edited_surgically() {
    let s = settings();
    let dir = common::root().join("testdata/mesh-configs");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    files.sort();
    let listed: Vec<&str> = CASES.iter().map(|c| c.file).collect();
    assert_eq!(
        files.len(),
        CASES.len(),
        "every corpus file has a case: {files:?} vs {listed:?}"
    );
    let mut steps = Vec::new();
    let mut failures = Vec::new();
    for case in CASES {
        let text = common::expand(
            &std::fs::read_to_string(dir.join(case.file)).unwrap(),
            &dir,
            false,
        );
        let mut cm = configmap(&text, case.owned);
        let runs: [(&str, Vec<TrustEntry>); 3] = [
            (
                "add",
                vec![
                    entry("b.local", "peer-b-root"),
                    entry("c.local", "peer-c-root"),
                ],
            ),
            (
                "rotate",
                vec![
                    entry("b.local", "peer-b-root-2"),
                    entry("c.local", "peer-c-root"),
                ],
            ),
            ("remove", vec![]),
        ];
        for (name, desired) in runs {
            let before = cm["data"]["mesh"].as_str().unwrap_or("").to_string();
            let owned = owned_pairs(&cm);
            let op = match trust_bundle::plan(&s, Some(&cm), &desired) {
                Ok(op) => op,
                Err(e) => {
                    failures.push(format!("{} {name}: refused: {e}", case.file));
                    break;
                }
            };
            if let Some(op) = op {
                let op = op.to_json();
                assert_eq!(op["operation"], "JSONPatch", "{}: {op}", case.file);
                assert_eq!(op["jsonPatch"][0]["op"], "test", "{}: {op}", case.file);
                let p: json_patch::Patch = serde_json::from_value(op["jsonPatch"].clone()).unwrap();
                json_patch::patch(&mut cm, &p).unwrap_or_else(|e| panic!("{}: {e}", case.file));
            }
            let after = cm["data"]["mesh"].as_str().unwrap_or("").to_string();
            if let Err(e) = outside_identical(&before, &after) {
                failures.push(format!("{} {name}: {e}", case.file));
            }
            match trust_bundle::plan(&s, Some(&cm), &desired) {
                Ok(None) => {}
                other => failures.push(format!(
                    "{} {name}: the rerun is not a no-op: {other:?}",
                    case.file
                )),
            }
            steps.push(Step {
                case: case.file,
                name,
                before,
                after,
                owned,
                desired,
            });
        }
        let last = cm["data"]["mesh"].as_str().unwrap_or("");
        if case.round_trip && last != text {
            failures.push(format!(
                "{}: removing every entry did not give back the original:\n{last}",
                case.file
            ));
        }
    }
    let texts: Vec<String> = steps
        .iter()
        .flat_map(|s| [s.before.clone(), s.after.clone()])
        .collect();
    let read = go_read(&texts);
    for (i, st) in steps.iter().enumerate() {
        let (b, a) = (&read[2 * i], &read[2 * i + 1]);
        let what = format!("{} {}", st.case, st.name);
        if let Some(err) = b.get("error") {
            if a.get("error") != Some(err) {
                failures.push(format!(
                    "{what}: Go reads the text before as {err} but after as {a}"
                ));
            }
            continue;
        }
        let Some(a) = a.get("json") else {
            failures.push(format!(
                "{what}: Go cannot read the edited text: {a}\n{}",
                st.after
            ));
            continue;
        };
        let (rest_b, list_b) = without_ca(&b["json"]);
        let (rest_a, list_a) = without_ca(a);
        if rest_a != rest_b {
            failures.push(format!(
                "{what}: to Go, fields other than caCertificates changed:\n{rest_b}\n{rest_a}"
            ));
        }
        let want = expected_list(&list_b, &st.owned, &st.desired);
        if list_a != want {
            failures.push(format!(
                "{what}: to Go, caCertificates is\n{}\nbut should be\n{}",
                serde_json::to_string_pretty(&list_a).unwrap(),
                serde_json::to_string_pretty(&want).unwrap()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{} mesh configs, {} runs, {} texts read by Go",
        CASES.len(),
        steps.len(),
        texts.len()
    );
}

#[test]
fn what_cannot_be_located_is_refused_with_the_reason() {
    let s = settings();
    let b = [entry("b.local", "peer-b-root")];
    for (mesh, reason) in [
        ("a: 1\n---\nb: 2\n", "holds more than one YAML document"),
        (
            "caCertificates: []\ncaCertificates: []\n",
            "has caCertificates more than once (lines 1, 2)",
        ),
        (
            "base: &b {caCertificates: []}\n<<: *b\n",
            "the merge key (<<) on line 2 of data.mesh supplies caCertificates",
        ),
        (
            "l: &l []\ncaCertificates: *l\n",
            "caCertificates on line 2 of data.mesh is an alias",
        ),
        (
            "caCertificates: &l []\nother: *l\n",
            "holds an anchor (line 1) that an alias uses",
        ),
    ] {
        let cm = configmap(mesh, &[]);
        let e = trust_bundle::plan(&s, Some(&cm), &b)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("ConfigMap d8-istio/istio: ")
                && e.contains(reason)
                && e.ends_with("; not editing it"),
            "{mesh:?}: {e}"
        );
    }
}
