//! Test support shared by the golden runner and the end-to-end tests: fixture expansion,
//! running the real binary as shell-operator does, an in-memory object store that applies
//! the emitted patches, and validation against the real schemas and Istio's webhook rules.
#![allow(dead_code)]

pub mod go_yaml;
pub mod istio;

use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary under test: cargo's for tests and benches, else the release build (examples).
pub fn bin() -> String {
    option_env!("CARGO_BIN_EXE_istio-federation-hook")
        .map(str::to_string)
        .unwrap_or_else(|| {
            target_dir()
                .join("release/istio-federation-hook")
                .to_string_lossy()
                .into_owned()
        })
}

/// Where cargo puts its builds: `$CARGO_TARGET_DIR` (relative to the project, as cargo reads
/// it) when set, else `target/`.
pub fn target_dir() -> std::path::PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(d) => root().join(d),
        None => root().join("target"),
    }
}

/// The pinned clock of the golden cases (the test certificates are dated against it).
pub const NOW: &str = "2027-01-01T00:00:00Z";

/// testdata/certs/`name`.pem.
pub fn cert(name: &str) -> String {
    let p = root().join("testdata/certs").join(format!("{name}.pem"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

fn der_of(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("fixture PEM base64")
}

/// SHA-256 of the first PEM block's DER, hex (independent of the product's own code).
pub fn fingerprint_of(name: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, &der_of(&cert(name)));
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn json_escape(s: &str) -> String {
    let q = serde_json::to_string(s).expect("string");
    q[1..q.len() - 1].to_string()
}

/// Expands the fixture placeholders:
/// `{{pem:X}}` the PEM of testdata/certs/X.pem, `{{pem-indent4:X}}` the same with every line
/// indented by four spaces (for YAML block scalars; `pem-indent6` by six), `{{b64:X}}` its base64, `{{fp:X}}` its
/// SHA-256, `{{text:F}}` the expanded case-local file F, `{{b64text:F}}` its base64.
/// `json` escapes inserted text for use inside a JSON string.
pub fn expand(text: &str, case_dir: &Path, json: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").expect("unterminated placeholder");
        let (kind, arg) = after[..end].split_once(':').expect("placeholder kind:arg");
        let inserted = match kind {
            "pem" => {
                let p = cert(arg);
                if json {
                    json_escape(&p)
                } else {
                    p
                }
            }
            "pem-indent4" | "pem-indent6" => {
                let indent = if kind == "pem-indent4" { 4 } else { 6 };
                cert(arg)
                    .lines()
                    .map(|l| format!("{:indent$}{l}\n", ""))
                    .collect()
            }
            "b64" => base64::engine::general_purpose::STANDARD.encode(cert(arg)),
            "fp" => fingerprint_of(arg),
            // `{{repeat:N:text}}`: text N times (large inputs without large files).
            "repeat" => {
                let (n, t) = arg.split_once(':').expect("repeat:N:text");
                t.repeat(n.parse().expect("repeat count"))
            }
            "text" => {
                let t = expand(
                    &std::fs::read_to_string(case_dir.join(arg)).expect("case file"),
                    case_dir,
                    false,
                );
                if json {
                    json_escape(&t)
                } else {
                    t
                }
            }
            "b64text" => {
                let t = expand(
                    &std::fs::read_to_string(case_dir.join(arg)).expect("case file"),
                    case_dir,
                    false,
                );
                base64::engine::general_purpose::STANDARD.encode(t)
            }
            other => panic!("unknown placeholder kind {other}"),
        };
        out.push_str(&inserted);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Replaces known certificate texts and fingerprints in an output by their placeholders, so
/// golden files stay readable and independent of regenerated fixtures.
pub fn contract(text: &str) -> String {
    let mut out = text.to_string();
    let dir = root().join("testdata/certs");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("certs dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".pem").map(str::to_string))
        .collect();
    names.sort();
    for n in &names {
        let pem = cert(n);
        out = out.replace(&json_escape(&pem), &format!("{{{{pem:{n}}}}}"));
        if pem.contains("CERTIFICATE") {
            out = out.replace(&fingerprint_of(n), &format!("{{{{fp:{n}}}}}"));
        }
    }
    out
}

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub patches: String,
    pub metrics: String,
    pub stderr: String,
    pub stdout: String,
}

/// Runs the binary as shell-operator does: a minimal environment, a binding-context file,
/// pre-created empty output files.
pub fn run_hook(binding_context: &str, env: &[(String, String)], values: Option<&str>) -> Run {
    run_hook_with(&[], binding_context, env, values)
}

/// [`run_hook`] with command-line arguments (e.g. `export`).
pub fn run_hook_with(
    args: &[&str],
    binding_context: &str,
    env: &[(String, String)],
    values: Option<&str>,
) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let bc = dir.path().join("binding-context.json");
    std::fs::write(&bc, binding_context).expect("write bc");
    let patches = dir.path().join("patches");
    let metrics = dir.path().join("metrics");
    std::fs::write(&patches, "").expect("pre-create");
    std::fs::write(&metrics, "").expect("pre-create");
    let mut cmd = Command::new(bin());
    cmd.args(args);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ISTIO_FEDERATION_HOOK_NOW", NOW);
    cmd.env("BINDING_CONTEXT_PATH", &bc)
        .env("METRICS_PATH", &metrics);
    let patch_var = env
        .iter()
        .find(|(k, _)| k == "PATCH_FILE_VAR")
        .map(|(_, v)| v.as_str())
        .unwrap_or("KUBERNETES_PATCH_PATH");
    cmd.env(patch_var, &patches);
    for (k, v) in env {
        if k != "PATCH_FILE_VAR" {
            cmd.env(k, v);
        }
    }
    if let Some(v) = values {
        let vp = dir.path().join("values.json");
        std::fs::write(&vp, v).expect("values");
        cmd.env("VALUES_PATH", &vp);
    }
    cmd.current_dir(dir.path());
    let out = cmd.output().expect("run binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        patches: std::fs::read_to_string(&patches).expect("patches"),
        metrics: std::fs::read_to_string(&metrics).expect("metrics"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

pub fn parse_env(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=VALUE");
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect()
}

fn yaml_file(rel: &str) -> Value {
    let text = std::fs::read_to_string(root().join(rel)).expect("schema file");
    serde_saphyr::from_str(&text).expect("schema YAML")
}

/// The shell-operator object-patch schema (draft-4 semantics, tuple-form `items`).
pub fn object_patch_validator() -> jsonschema::Validator {
    jsonschema::draft4::new(&yaml_file(
        "testdata/schemas/shell-operator-object-patch.schema.yaml",
    ))
    .expect("schema")
}

pub fn config_validator() -> jsonschema::Validator {
    jsonschema::draft4::new(&yaml_file(
        "testdata/schemas/shell-operator-config-v1.schema.yaml",
    ))
    .expect("schema")
}

/// The `openAPIV3Schema` of the ServiceEntry CRD for `version`.
pub fn service_entry_validator(version: &str) -> jsonschema::Validator {
    let crd = yaml_file("testdata/schemas/istio-serviceentry-crd.yaml");
    let schema = crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["name"] == version)
        .expect("version")["schema"]["openAPIV3Schema"]
        .clone();
    jsonschema::validator_for(&schema).expect("CRD schema")
}

pub fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Shell-operator's shape checks on every emitted operation, plus the rules of the protocol
/// that the schema does not express. Returns the problems found.
pub fn check_operations(ops: &[Value]) -> Vec<String> {
    let v = object_patch_validator();
    let se_v1 = service_entry_validator("v1");
    let mut problems = Vec::new();
    let mut ses = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        for e in errors(&v, op) {
            problems.push(format!("operation {i}: {e}"));
        }
        if let Some(obj) = op.get("object") {
            for f in [
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "managedFields",
            ] {
                if obj["metadata"].get(f).is_some() {
                    problems.push(format!("operation {i}: object carries metadata.{f}"));
                }
            }
            if obj.get("status").is_some() {
                problems.push(format!("operation {i}: object carries status"));
            }
            for (k, v) in obj["metadata"]["labels"].as_object().into_iter().flatten() {
                if !v.as_str().is_some_and(is_label_value) {
                    problems.push(format!(
                        "operation {i}: label {k} = {v} is not a valid label value"
                    ));
                }
            }
            if obj["kind"] == "ServiceEntry" {
                for e in errors(&se_v1, obj) {
                    problems.push(format!("operation {i}: ServiceEntry CRD schema: {e}"));
                }
                ses.push(obj.clone());
            }
            if obj["kind"] == "AuthorizationPolicy" {
                problems.extend(
                    istio::check_authorization_policy(obj)
                        .into_iter()
                        .map(|e| format!("operation {i}: AuthorizationPolicy: {e}")),
                );
            }
            if obj["kind"] == "DestinationRule" {
                problems.extend(
                    istio::check_destination_rule(obj)
                        .into_iter()
                        .map(|e| format!("operation {i}: {e}")),
                );
            }
        }
    }
    problems.extend(istio::check_service_entries(&ses));
    for (i, op) in ops.iter().enumerate() {
        // The object budget (docs/security.md, "Limits and shares"): objects and status patches at
        // most 900 KiB. A JSON patch is checked by what it carries, which bounds the object it
        // makes.
        let carried = op
            .get("object")
            .or_else(|| op.get("mergePatch"))
            .map(|v| v.to_string().len())
            .unwrap_or(0);
        if carried > OBJECT_BUDGET {
            problems.push(format!(
                "operation {i}: {carried} bytes, over the {OBJECT_BUDGET}-byte object budget"
            ));
        }
    }
    problems
}

/// The hook's object budget: 900 KiB.
pub const OBJECT_BUDGET: usize = 900 * 1024;

/// A Kubernetes label value: at most 63 characters of `[-_.A-Za-z0-9]`, alphanumeric at both
/// ends (or empty).
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    s.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

/// Snapshot items `[{object}, …]` sorted by namespace, then name, as shell-operator sorts them.
pub fn snapshot_items(mut objs: Vec<&Value>) -> Value {
    objs.sort_by_key(|o| {
        (
            o["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            o["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    });
    Value::Array(objs.into_iter().map(|o| json!({"object": o})).collect())
}

/// An in-memory API server stand-in: objects by binding, patches applied like the API server.
#[derive(Debug, Clone, Default)]
pub struct Store {
    pub objects: BTreeMap<String, Vec<Value>>,
}

fn key(kind: &str, ns: &str, name: &str) -> (String, String, String) {
    (kind.to_string(), ns.to_string(), name.to_string())
}

fn obj_key(o: &Value) -> (String, String, String) {
    key(
        o["kind"].as_str().unwrap_or(""),
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or(""),
    )
}

/// What a one-peer online test needs of the peer: its trust domain, its metadata endpoint
/// and the CA that endpoint's certificate chains to, and our signing key pair (PEMs).
pub struct OnePeer<'a> {
    pub trust_domain: &'a str,
    pub endpoint: &'a str,
    pub endpoint_ca_pem: &'a str,
    pub private_pem: &'a str,
    pub public_pem: &'a str,
}

/// The mesh-config ConfigMap d8-istio/istio with `mesh` as its text.
pub fn mesh_config_map(mesh: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "d8-istio", "resourceVersion": "1"},
        "data": {"mesh": mesh}})
}

impl Store {
    /// A cluster of offline tests: `feds`, the trust-bundle object `trust_bundle`, our key pair
    /// (`priv.pem`, `pub.pem` texts), the local root of testdata/certs, and no ServiceEntry or
    /// DestinationRule yet.
    pub fn offline(
        feds: Vec<Value>,
        trust_bundle: Value,
        (private, public): (&str, &str),
    ) -> Store {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut s = Store::default();
        s.objects.insert("federations".into(), feds);
        s.objects.insert(
            "authn_keypair".into(),
            vec![json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "d8-remote-authn-keypair", "namespace": "d8-istio"},
                "data": {"priv.pem": b64(private), "pub.pem": b64(public)}})],
        );
        s.objects.insert("trust_bundle".into(), vec![trust_bundle]);
        s.objects.insert(
            "local_root_ca".into(),
            vec![json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio-ca-root-cert", "namespace": "d8-istio"},
                "data": {"root-cert.pem": cert("local-root")}})],
        );
        s.objects.insert("service_entries".into(), vec![]);
        s.objects.insert("destination_rules".into(), vec![]);
        s
    }

    /// A cluster federated with one peer (IstioFederation `cluster-b`), our key pair, a mesh
    /// config without entries, no local root, and no ServiceEntry or DestinationRule yet.
    pub fn one_peer(p: &OnePeer) -> Store {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let fed = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": "cluster-b"},
            "spec": {"trustDomain": p.trust_domain, "metadataEndpoint": format!("{}/", p.endpoint),
                     "metadata": {"clusterCA": p.endpoint_ca_pem}}});
        let keypair = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "d8-remote-authn-keypair", "namespace": "d8-istio"},
            "data": {"priv.pem": b64(p.private_pem), "pub.pem": b64(p.public_pem)}});
        let mesh = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "d8-istio"},
            "data": {"mesh": "trustDomain: my.cluster\n"}});
        let mut s = Store::default();
        s.objects.insert("federations".into(), vec![fed]);
        s.objects.insert("authn_keypair".into(), vec![keypair]);
        s.objects.insert("trust_bundle".into(), vec![mesh]);
        s.objects.insert("local_root_ca".into(), vec![]);
        s.objects.insert("service_entries".into(), vec![]);
        s.objects.insert("destination_rules".into(), vec![]);
        s
    }

    /// Seeds the store from the snapshots of a binding context.
    pub fn from_binding_context(bc: &Value) -> Store {
        let mut s = Store::default();
        for ctx in bc.as_array().into_iter().flatten() {
            if let Some(snaps) = ctx["snapshots"].as_object() {
                for (binding, items) in snaps {
                    let objs = items
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|i| i.get("object").cloned())
                        .collect();
                    s.objects.insert(binding.clone(), objs);
                }
            }
        }
        s
    }

    fn binding_for(kind: &str, name: &str) -> &'static str {
        match (kind, name) {
            ("ServiceEntry", _) => "service_entries",
            ("DestinationRule", _) => "destination_rules",
            ("AuthorizationPolicy", _) => "authorization_policies",
            ("Gateway", _) => "federation_gateway",
            ("IstioFederation", _) => "federations",
            ("Secret", "istio-federation-metadata") => "metadata_secret",
            ("Secret", "d8-remote-authn-keypair") => "authn_keypair",
            _ => "trust_bundle",
        }
    }

    fn find_mut(&mut self, k: &(String, String, String)) -> Option<&mut Value> {
        self.objects
            .values_mut()
            .flatten()
            .find(|o| obj_key(o) == *k)
    }

    /// Applies the operations in order, as shell-operator does. Panics on what the API server
    /// would refuse (a failed `test`, a create carrying resourceVersion).
    pub fn apply(&mut self, ops: &[Value]) {
        for op in ops {
            match op["operation"].as_str().unwrap_or("") {
                kind @ ("CreateOrUpdate" | "CreateIfNotExists" | "Create") => {
                    let obj = op["object"].clone();
                    assert!(
                        obj["metadata"].get("resourceVersion").is_none(),
                        "create with resourceVersion: {obj}"
                    );
                    let k = obj_key(&obj);
                    let binding = Self::binding_for(&k.0, &k.2);
                    match self.find_mut(&k) {
                        Some(existing) => {
                            assert_ne!(kind, "Create", "Create of an existing object {k:?}");
                            if kind == "CreateOrUpdate" {
                                let status = existing.get("status").cloned();
                                *existing = obj;
                                if let Some(s) = status {
                                    existing["status"] = s;
                                }
                            }
                        }
                        None => self
                            .objects
                            .entry(binding.to_string())
                            .or_default()
                            .push(obj),
                    }
                }
                "Delete" | "DeleteInBackground" | "DeleteNonCascading" => {
                    let k = key(
                        op["kind"].as_str().unwrap_or(""),
                        op["namespace"].as_str().unwrap_or(""),
                        op["name"].as_str().unwrap_or(""),
                    );
                    for list in self.objects.values_mut() {
                        list.retain(|o| obj_key(o) != k);
                    }
                }
                "JSONPatch" => {
                    let k = key(
                        op["kind"].as_str().unwrap_or(""),
                        op["namespace"].as_str().unwrap_or(""),
                        op["name"].as_str().unwrap_or(""),
                    );
                    let p: json_patch::Patch =
                        serde_json::from_value(op["jsonPatch"].clone()).expect("RFC 6902 patch");
                    let target = self
                        .find_mut(&k)
                        .unwrap_or_else(|| panic!("JSONPatch on missing {k:?}"));
                    json_patch::patch(target, &p)
                        .unwrap_or_else(|e| panic!("JSONPatch on {k:?} refused: {e}"));
                }
                "MergePatch" => {
                    let k = key(
                        op["kind"].as_str().unwrap_or(""),
                        op["namespace"].as_str().unwrap_or(""),
                        op["name"].as_str().unwrap_or(""),
                    );
                    match self.find_mut(&k) {
                        Some(target) => json_patch::merge(target, &op["mergePatch"]),
                        None => assert_eq!(
                            op["ignoreMissingObject"], true,
                            "MergePatch on missing {k:?}"
                        ),
                    }
                }
                other => panic!("unexpected operation {other}"),
            }
        }
    }

    /// A Group binding context carrying every snapshot, as shell-operator would build it.
    pub fn binding_context(&self, binding: &str) -> Value {
        let mut snaps = serde_json::Map::new();
        for (name, objs) in &self.objects {
            snaps.insert(name.clone(), snapshot_items(objs.iter().collect()));
        }
        json!([{"binding": binding, "type": "Group", "groupName": "istio_federation", "snapshots": snaps}])
    }

    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<&Value> {
        let k = key(kind, ns, name);
        self.objects.values().flatten().find(|o| obj_key(o) == k)
    }

    pub fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects
            .values()
            .flatten()
            .filter(|o| o["kind"] == kind)
            .collect()
    }
}
