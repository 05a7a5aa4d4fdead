//! Static checks of `deploy/` and the `Dockerfile` (no cluster or Docker engine here).
//!
//! `deploy/` is a kustomize base (docs/getting-started.md, "Packaging with kustomize"), so every
//! check runs on what
//! `kubectl kustomize` renders — the base, the example overlay, and overlays made here with the
//! optional components and with values unlike the base's — and a wrong patch or replacement
//! fails like a wrong manifest. Checked: the objects parse and no part is missing; the CRD
//! declares every field the hook writes (the API server prunes undeclared ones); the RBAC rules
//! cover every verb the emitted operations and the informers need, for the settings the
//! rendered Deployment runs with, and nothing more, with no wildcards; an overlay's values land
//! everywhere; the health-check Service Deckhouse peers probe is published by the export hook
//! and answered by the workload behind it; the alerts are a rule file promtool loads.
//! Rendering needs kubectl with kustomize v5 on PATH (scripts/test-deps.sh).

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The base's own values (deploy/base), which an overlay replaces.
const BASE_DOMAIN: &str = "cluster-a.local";
const BASE_UUID: &str = "4f9a7c1e-0000-4000-8000-000000000001";
const BASE_FED_NS: &str = "istio-federation";
const BASE_ISTIO_NS: &str = "istio-system";
const BASE_IMAGE: &str = "registry.example.com/istio-federation-hook:0.1.0";
/// Where Deckhouse peers look for the health-check service, whatever ISTIO_NAMESPACE is.
const HEALTHCHECK_NS: &str = "d8-istio";
const VALUES_CONFIGMAP: &str = "istio-federation-cluster-values";
const VALUE_KEYS: [&str; 7] = [
    "CLUSTER_DOMAIN",
    "CLUSTER_UUID",
    "FEDERATION_NAMESPACE",
    "ISTIO_NAMESPACE",
    "MESH_CONFIG_NAME",
    "METADATA_HOST",
    "IMAGE",
];

// ---------------------------------------------------------------------------------------------
// Rendering

const NO_KUBECTL: &str = "tests/deploy.rs renders deploy/ with `kubectl kustomize` and needs \
     kubectl with kustomize v5 (kubectl >= 1.27) on PATH; Debian's kubernetes-client is far \
     older. scripts/test-deps.sh names it";

/// `kubectl`, once checked to be there with kustomize v5 or later.
fn kubectl() -> &'static str {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let out = Command::new("kubectl")
            .args(["version", "--client", "-o", "json"])
            .output()
            .map_err(|e| format!("cannot run kubectl ({e}): {NO_KUBECTL}"))?;
        if !out.status.success() {
            return Err(format!(
                "`kubectl version --client` failed ({}): {NO_KUBECTL}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("`kubectl version --client -o json`: {e}: {NO_KUBECTL}"))?;
        let kustomize = v["kustomizeVersion"].as_str().unwrap_or("none");
        let major: u32 = kustomize
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 5 {
            return Err(format!("kubectl's kustomize is {kustomize}: {NO_KUBECTL}"));
        }
        Ok(())
    });
    if let Err(e) = checked {
        panic!("{e}");
    }
    "kubectl"
}

/// The objects `kubectl kustomize DIR` renders.
fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("kubectl kustomize {}: {e}", dir.display()));
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 output");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("kubectl kustomize {}: {e}", dir.display()));
    assert!(!docs.is_empty(), "{} renders nothing", dir.display());
    docs
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

/// `to` relative to `from` (kustomize refuses absolute paths in a kustomization).
fn relative(from: &Path, to: &Path) -> String {
    let from = std::fs::canonicalize(from).expect("canonical from");
    let to = std::fs::canonicalize(to).expect("canonical to");
    let (a, b): (Vec<Component>, Vec<Component>) =
        (from.components().collect(), to.components().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".into(); a.len() - common];
    parts.extend(
        b[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// An overlay of the base made for a test: `values` (as in overlays/example/cluster-values.yaml)
/// and the named components of deploy/components, in that order, cluster-values last.
struct Overlay {
    dir: tempfile::TempDir,
}

impl Overlay {
    fn new(values: Option<&BTreeMap<String, String>>, components: &[&str]) -> Overlay {
        let dir = tempfile::Builder::new()
            .prefix("deploy-overlay-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir");
        let mut resources = vec![relative(dir.path(), &deploy().join("base"))];
        let mut comps: Vec<String> = components
            .iter()
            .map(|c| relative(dir.path(), &deploy().join("components").join(c)))
            .collect();
        if let Some(values) = values {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": VALUES_CONFIGMAP, "annotations": {"config.kubernetes.io/local-config": "true"}},
                "data": values});
            std::fs::write(dir.path().join("cluster-values.yaml"), cm.to_string()).expect("write");
            resources.push("cluster-values.yaml".into());
            comps.push(relative(
                dir.path(),
                &deploy().join("components/cluster-values"),
            ));
        }
        let k = json!({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": resources, "components": comps});
        std::fs::write(dir.path().join("kustomization.yaml"), k.to_string()).expect("write");
        Overlay { dir }
    }

    fn render(&self) -> Vec<Value> {
        render(self.dir.path())
    }
}

/// The values of overlays/example (the ConfigMap the overlay's component reads).
fn example_values() -> BTreeMap<String, String> {
    let path = deploy().join("overlays/example/cluster-values.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let cm: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert_eq!(cm["metadata"]["name"], VALUES_CONFIGMAP);
    let values: BTreeMap<String, String> =
        serde_json::from_value(cm["data"].clone()).expect("string values");
    let keys: BTreeSet<&str> = values.keys().map(String::as_str).collect();
    assert_eq!(keys, VALUE_KEYS.into_iter().collect(), "{path:?}");
    values
}

/// A Deckhouse-like layout: the hook and Istio both in d8-istio (the hook's defaults), a shared
/// mesh config map, cacerts mode — every value unlike the base's.
fn d8_layout_values() -> BTreeMap<String, String> {
    [
        ("CLUSTER_DOMAIN", "mesh.d8.example"),
        ("CLUSTER_UUID", "0c5b3a8e-0000-4000-8000-00000000000d"),
        ("FEDERATION_NAMESPACE", "d8-istio"),
        ("ISTIO_NAMESPACE", "d8-istio"),
        ("MESH_CONFIG_NAME", "istio-federation-roots"),
        ("METADATA_HOST", "istio-metadata.d8.example"),
        (
            "IMAGE",
            "registry.d8.example/mesh/istio-federation-hook:0.2.0",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

const D8_LAYOUT_COMPONENTS: [&str; 2] = ["cacerts-mode", "existing-namespaces"];

/// One rendering under test.
struct Variant {
    name: &'static str,
    docs: Vec<Value>,
    /// The rendering without the component that adds rights (cacerts-mode,
    /// federation-gateway), for variants with one: the component's own rules are the ones that
    /// must each be needed.
    without_cacerts: Option<Vec<Value>>,
}

/// The renderings every check runs on, made once per test binary.
fn variants() -> &'static [Variant] {
    static VARIANTS: OnceLock<Vec<Variant>> = OnceLock::new();
    VARIANTS.get_or_init(make_variants)
}

fn make_variants() -> Vec<Variant> {
    let base = render(&deploy());
    let d8 = d8_layout_values();
    vec![
        Variant {
            name: "deploy",
            docs: base.clone(),
            without_cacerts: None,
        },
        Variant {
            name: "deploy/overlays/example",
            docs: render(&deploy().join("overlays/example")),
            without_cacerts: None,
        },
        Variant {
            name: "base + federation-gateway",
            docs: Overlay::new(None, &["federation-gateway"]).render(),
            without_cacerts: Some(base.clone()),
        },
        Variant {
            name: "base + cacerts-mode",
            docs: Overlay::new(None, &["cacerts-mode"]).render(),
            without_cacerts: Some(base),
        },
        Variant {
            name: "d8-istio layout + cacerts-mode + existing-namespaces",
            docs: Overlay::new(Some(&d8), &D8_LAYOUT_COMPONENTS).render(),
            without_cacerts: Some(Overlay::new(Some(&d8), &["existing-namespaces"]).render()),
        },
    ]
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "{kind} {name}: {} rendered", found.len());
    found[0]
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

/// The environment of the rendered hook container (every value literal).
fn hook_env(docs: &[Value]) -> Vec<(String, String)> {
    let dep = one(docs, "Deployment", "istio-federation-hook");
    let containers = dep["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    let c = containers
        .iter()
        .find(|c| c["name"] == "shell-operator")
        .expect("container shell-operator");
    c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                str_of(&e["name"], "env name").to_string(),
                str_of(&e["value"], "env value (no valueFrom)").to_string(),
            )
        })
        .collect()
}

fn setting<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("the hook Deployment sets no {key}"))
}

// ---------------------------------------------------------------------------------------------
// Structure

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

fn listed(kustomization: &Path, field: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(kustomization).expect("kustomization");
    let k: Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{kustomization:?}: {e}"));
    k[field]
        .as_array()
        .map(|a| a.iter().map(|v| str_of(v, field).to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn every_manifest_parses_and_is_part_of_a_kustomization() {
    let mut files = Vec::new();
    yaml_files(&deploy(), &mut files);
    assert!(files.len() >= 14, "{files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        assert!(!docs.is_empty(), "{f:?} is empty");
        // A manifest nobody lists would silently be left out of every rendering.
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name != "kustomization.yaml" {
            let k = f.parent().unwrap().join("kustomization.yaml");
            assert!(
                listed(&k, "resources").contains(&name),
                "{f:?} is not listed in {k:?}"
            );
        }
    }
    assert_eq!(
        listed(&deploy().join("kustomization.yaml"), "resources"),
        BTreeSet::from(["base".to_string()])
    );
    // `kubectl kustomize deploy` is the base itself.
    assert_eq!(render(&deploy()), render(&deploy().join("base")));
}

#[test]
fn base_and_overlays_render_every_part_once() {
    for v in variants() {
        let name = v.name;
        let mut ids = BTreeSet::new();
        for d in &v.docs {
            assert!(
                d["apiVersion"].is_string() && d["kind"].is_string(),
                "{name}: {d}"
            );
            let obj = d["metadata"]["name"].as_str();
            assert!(obj.is_some(), "{name}: {d}");
            let id = (
                d["apiVersion"]
                    .as_str()
                    .unwrap()
                    .split('/')
                    .next()
                    .unwrap()
                    .to_string(),
                d["kind"].as_str().unwrap().to_string(),
                d["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                obj.unwrap().to_string(),
            );
            assert!(ids.insert(id.clone()), "{name}: {id:?} rendered twice");
            assert_ne!(
                obj,
                Some(VALUES_CONFIGMAP),
                "{name}: the values ConfigMap is rendered"
            );
        }
        let kinds: BTreeSet<&str> = v.docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        for k in [
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "Service",
            "Ingress",
            "PrometheusRule",
            "Gateway",
            "AuthorizationPolicy",
        ] {
            assert!(kinds.contains(k), "{name}: no {k}");
        }
        let deployments: BTreeSet<&str> = of_kind(&v.docs, "Deployment")
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            deployments,
            BTreeSet::from([
                "istio-federation-healthcheck",
                "istio-federation-hook",
                "istio-federation-metadata"
            ]),
            "{name}"
        );
        // Namespaces come first in kustomize's order, so `kubectl apply -k` can create into them.
        let namespaces: Vec<&str> = of_kind(&v.docs, "Namespace")
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap())
            .collect();
        if v.name.contains("existing-namespaces") {
            assert!(namespaces.is_empty(), "{name}: {namespaces:?}");
        } else {
            let env = hook_env(&v.docs);
            let want = BTreeSet::from([setting(&env, "FEDERATION_NAMESPACE"), HEALTHCHECK_NS]);
            assert_eq!(
                namespaces.iter().copied().collect::<BTreeSet<_>>(),
                want,
                "{name}"
            );
            assert!(
                v.docs[..namespaces.len()]
                    .iter()
                    .all(|d| d["kind"] == "Namespace"),
                "{name}: Namespaces are not rendered first"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CRD

fn crd_schema(docs: &[Value]) -> Value {
    let crd = one(
        docs,
        "CustomResourceDefinition",
        "istiofederations.deckhouse.io",
    );
    assert_eq!(crd["spec"]["scope"], "Cluster");
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert!(
        v["subresources"]["status"].is_object(),
        "status subresource"
    );
    v["schema"]["openAPIV3Schema"].clone()
}

/// Every field of `obj` must be declared in `schema` (structural pruning would drop it).
fn undeclared(obj: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    match obj {
        Value::Object(m) => {
            if path.ends_with(".metadata") && schema.get("properties").is_none() {
                return; // ObjectMeta is not pruned by the CRD schema
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in m {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => undeclared(v, s, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                undeclared(v, &schema["items"], &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn crd_accepts_and_keeps_everything_the_hook_writes() {
    let schema = crd_schema(&variants()[0].docs);
    // Overlays and components leave the CRD as the base has it.
    for v in variants() {
        assert_eq!(crd_schema(&v.docs), schema, "{}", v.name);
    }
    let validator = jsonschema::validator_for(&schema).unwrap();
    // Every status the hook wrote in every golden case, on a minimal valid object.
    let mut checked = 0;
    for dir in std::fs::read_dir(root().join("testdata/discovery"))
        .unwrap()
        .map(|e| e.unwrap().path())
    {
        let patches =
            ndjson(&std::fs::read_to_string(dir.join("patches.ndjson")).unwrap_or_default());
        for op in patches.iter().filter(|o| o["operation"] == "MergePatch") {
            let fed = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": op["name"]},
                "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/metadata/"},
                "status": op["mergePatch"]["status"]});
            let errs = errors(&validator, &fed);
            assert!(errs.is_empty(), "{}: {errs:?}", dir.display());
            let mut missing = Vec::new();
            undeclared(
                &fed["status"],
                &schema["properties"]["status"],
                "status",
                &mut missing,
            );
            assert!(
                missing.is_empty(),
                "{}: fields the CRD would prune: {missing:?}",
                dir.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked}");
    // And a status as the network phase writes it (metadataCache with derived protocols).
    let fed = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": "b"},
        "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h.example:8443/metadata/", "metadata": {"clusterCA": "PEM", "enableInsecureConnection": false}},
        "status": {"metadataCache": {
            "public": {"clusterUUID": "u", "authnKeyPub": "k", "rootCA": "r"}, "publicLastFetchTimestamp": "2027-01-01T00:00:00Z",
            "private": {"ingressGateways": [{"address": "1.1.1.1", "port": 15443}],
                        "publicServices": [{"hostname": "a.b.local", "ports": [{"name": "http", "port": 80, "protocol": "HTTP"}]}]},
            "privateLastFetchTimestamp": "2027-01-01T00:00:00Z"},
            "conditions": [{"type": "PublicMetadataExchangeReady", "status": "True", "reason": "Succeeded", "message": "m", "lastTransitionTime": "2027-01-01T00:00:00Z"}]}});
    assert!(errors(&validator, &fed).is_empty());
    for good in [
        "b",
        "b.local",
        "cluster-b.example",
        "cluster.local.example",
        // Admitted by the CRD; the hook accepts it only with the opt-in annotation (README,
        // "Security").
        "cluster.local",
        "a1.b-2.c3",
    ] {
        let mut ok = fed.clone();
        ok["spec"]["trustDomain"] = json!(good);
        assert!(errors(&validator, &ok).is_empty(), "refused {good}");
    }
    let mut missing = Vec::new();
    undeclared(&fed, &schema, "", &mut missing);
    assert!(missing.is_empty(), "{missing:?}");
    // spec.import is declared (kept by the API server) and its shape checked up front.
    let import = json!({"hosts": ["*.prod.svc.b.local", "db.*"], "excludeHosts": ["db.admin.b.local"], "exportTo": [".", "prod"]});
    let fed = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": "b"},
        "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/metadata/", "import": import}});
    assert!(errors(&validator, &fed).is_empty());
    let mut missing = Vec::new();
    undeclared(&fed, &schema, "", &mut missing);
    assert!(missing.is_empty(), "{missing:?}");
    for bad in [
        json!({"hosts": "db.*"}),
        json!({"hosts": ["DB.*"]}),
        json!({"excludeHosts": ["a b"]}),
        json!({"exportTo": []}),
        json!({"exportTo": ["Prod"]}),
        json!({"exportTo": ["~"]}),
        json!({"exportTo": [&"a".repeat(64)]}),
    ] {
        let obj = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": "x"},
            "spec": {"trustDomain": "b", "metadataEndpoint": "https://h/", "import": bad}});
        assert!(!errors(&validator, &obj).is_empty(), "accepted {obj}");
    }
    // The CRD's own validation still refuses what Deckhouse's refuses.
    for bad in [
        json!({"trustDomain": "cluster b", "metadataEndpoint": "https://h/"}),
        json!({"trustDomain": "b"}),
        json!({"trustDomain": "b", "metadataEndpoint": "http://h/"}),
        // Tighter than Deckhouse's: what the hook would refuse with InvalidSpec (docs/security.md).
        json!({"trustDomain": "B.Local", "metadataEndpoint": "https://h/"}),
        json!({"trustDomain": "b_c.local", "metadataEndpoint": "https://h/"}),
        json!({"trustDomain": "b..local", "metadataEndpoint": "https://h/"}),
        json!({"trustDomain": "-b.local", "metadataEndpoint": "https://h/"}),
        json!({"trustDomain": format!("{}.b", "a".repeat(64)), "metadataEndpoint": "https://h/"}),
        json!({"trustDomain": "b.local", "metadataEndpoint": "https://user:secret@h/"}),
    ] {
        let obj = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": "x"}, "spec": bad});
        assert!(!errors(&validator, &obj).is_empty(), "accepted {obj}");
    }
}

/// Newer Deckhouse peers and components write fields this hook does not know; the CRD must keep
/// them (declared, or preserved), or the API server prunes them on every write.
#[test]
fn crd_keeps_deckhouses_newest_status_and_metadata_shapes() {
    let schema = crd_schema(&variants()[0].docs);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let fed = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": "b"},
        "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://h/metadata/"},
        "status": {
            "dataPlaneHealth": {"isConnected": true, "lastProbeTimestamp": "2027-01-01T00:00:00Z",
                "lastSuccessProbeTimestamp": "2027-01-01T00:00:00Z", "message": "ok"},
            "metadataCache": {
                "public": {"clusterUUID": "u", "authnKeyPub": "k", "rootCA": "r"},
                "private": {"clusterID": "u",
                    "ingressGateways": [{"address": "1.1.1.1", "port": 15443}],
                    "ambientGateways": [{"address": "1.1.1.2", "port": 15008, "network": "n"}],
                    "publicServices": [{"hostname": "a.b.local", "ports": [{"name": "http", "port": 80}]}]}}}});
    let errs = errors(&validator, &fed);
    assert!(errs.is_empty(), "{errs:?}");
    let mut pruned = Vec::new();
    kept(&fed, &schema, "", &mut pruned);
    assert!(pruned.is_empty(), "the API server would prune {pruned:?}");
}

/// Like [`undeclared`], but a schema with `x-kubernetes-preserve-unknown-fields: true` keeps
/// everything below it, as the API server's pruning does.
fn kept(obj: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true && schema.get("properties").is_none()
    {
        return;
    }
    match obj {
        Value::Object(m) => {
            if path.ends_with(".metadata") && schema.get("properties").is_none() {
                return;
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in m {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => kept(v, s, &format!("{path}.{k}"), out),
                    None if schema["x-kubernetes-preserve-unknown-fields"] == true => {}
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                kept(v, &schema["items"], &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// RBAC

/// (apiGroup, resource, namespace or "" for cluster scope, name or "" for any) → verbs.
type Need = BTreeMap<(String, String, String, String), BTreeSet<String>>;

fn need(n: &mut Need, group: &str, resource: &str, ns: &str, name: &str, verbs: &[&str]) {
    n.entry((group.into(), resource.into(), ns.into(), name.into()))
        .or_default()
        .extend(verbs.iter().map(|v| v.to_string()));
}

fn resource_of(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "IstioFederation" => ("deckhouse.io", "istiofederations"),
        "Secret" => ("", "secrets"),
        "ConfigMap" => ("", "configmaps"),
        "Service" => ("", "services"),
        "ServiceEntry" => ("networking.istio.io", "serviceentries"),
        "DestinationRule" => ("networking.istio.io", "destinationrules"),
        "AuthorizationPolicy" => ("security.istio.io", "authorizationpolicies"),
        "Gateway" => ("networking.istio.io", "gateways"),
        other => panic!("unexpected kind {other}"),
    }
}

fn config_of(args: &[&str], env: &[(String, String)]) -> Value {
    let mut cmd = Command::new(bin());
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} with the rendered settings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What the hooks need when run with `env` (the rendered hook Deployment's environment).
fn needed(env: &[(String, String)]) -> Need {
    let fed_ns = setting(env, "FEDERATION_NAMESPACE");
    let istio_ns = setting(env, "ISTIO_NAMESPACE");
    let mesh_config = setting(env, "MESH_CONFIG_NAME");
    let cacerts = match setting(env, "TRUST_BUNDLE_MODE") {
        "cacerts" => true,
        "mesh-config" => false,
        other => panic!("TRUST_BUNDLE_MODE {other}"),
    };
    let mut n = Need::new();
    // Informers: get/list/watch on every binding (named objects with their single name).
    for cfg in [
        config_of(&["--config"], env),
        config_of(&["export", "--config"], env),
    ] {
        for b in cfg["kubernetes"].as_array().unwrap() {
            let (g, r) = resource_of(b["kind"].as_str().unwrap());
            let ns = b["namespace"]["nameSelector"]["matchNames"][0]
                .as_str()
                .unwrap_or("");
            let name = b["nameSelector"]["matchNames"][0].as_str().unwrap_or("");
            need(&mut n, g, r, ns, name, &["get", "list", "watch"]);
        }
    }
    // Operations the product emits (src/hook/operations.rs), by object: shell-operator's verbs for each.
    for kind in ["ServiceEntry", "DestinationRule"] {
        let (g, r) = resource_of(kind);
        need(
            &mut n,
            g,
            r,
            fed_ns,
            "",
            &["create", "get", "update", "patch", "delete"],
        ); // CreateOrUpdate, JSONPatch (a held delete's mark), Delete
    }
    // The boundary's AuthorizationPolicies in the root namespace: CreateOrUpdate, Delete.
    let root_ns = env
        .iter()
        .find(|(k, _)| k == "ISTIO_ROOT_NAMESPACE")
        .map_or(istio_ns, |(_, v)| v.as_str());
    need(
        &mut n,
        "security.istio.io",
        "authorizationpolicies",
        root_ns,
        "",
        &["create", "get", "update", "delete"],
    );
    // FEDERATION_GATEWAY: its hosts are kept by JSONPatch.
    if let Some((gw_ns, gw_name)) = env
        .iter()
        .find(|(k, _)| k == "FEDERATION_GATEWAY")
        .and_then(|(_, v)| v.split_once('/'))
    {
        need(
            &mut n,
            "networking.istio.io",
            "gateways",
            gw_ns,
            gw_name,
            &["patch"],
        );
    }
    need(&mut n, "", "secrets", fed_ns, "", &["create"]); // CreateIfNotExists key pair, CreateOrUpdate metadata
    need(
        &mut n,
        "",
        "secrets",
        fed_ns,
        "istio-federation-metadata",
        &["get", "update", "patch"],
    ); // CreateOrUpdate, JSONPatch (disabled)
    need(
        &mut n,
        "deckhouse.io",
        "istiofederations/status",
        "",
        "",
        &["patch"],
    ); // status MergePatch
    need(
        &mut n,
        "deckhouse.io",
        "istiofederations",
        "",
        "",
        &["patch"],
    ); // JSONPatch (re-pin done)
    if cacerts {
        need(&mut n, "", "secrets", istio_ns, "cacerts", &["patch"]);
    } else {
        need(&mut n, "", "configmaps", istio_ns, mesh_config, &["patch"]);
        need(&mut n, "", "configmaps", istio_ns, "", &["create"]); // CreateIfNotExists of a SHARED_MESH_CONFIG map
    }
    n
}

/// One granted rule, flattened: (group, resource, namespace, resourceNames, verbs).
type Grant = (String, String, String, Vec<String>, Vec<String>);

/// Rules the `roles` grant to the hook's service account `fed_ns/istio-federation-hook`
/// through the bindings among `docs`; every role must be bound to it.
fn granted(docs: &[Value], roles: &[&Value], fed_ns: &str) -> Vec<Grant> {
    let bound: BTreeSet<(String, String)> = docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
        .filter(|d| {
            d["subjects"].as_array().unwrap().iter().any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == "istio-federation-hook"
                    && s["namespace"] == fed_ns
            })
        })
        .map(|d| {
            (
                d["roleRef"]["kind"].as_str().unwrap().to_string(),
                d["roleRef"]["name"].as_str().unwrap().to_string()
                    + "@"
                    + d["metadata"]["namespace"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let mut out = Vec::new();
    for d in roles {
        let ns = d["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let key = (
            d["kind"].as_str().unwrap().to_string(),
            d["metadata"]["name"].as_str().unwrap().to_string() + "@" + &ns,
        );
        assert!(
            bound.contains(&key),
            "{key:?} is not bound to the hook's service account {fed_ns}/istio-federation-hook"
        );
        for rule in d["rules"].as_array().unwrap() {
            let strs = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            };
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                assert!(
                    !strs(field).iter().any(|s| s.contains('*')),
                    "wildcard in {field}: {rule}"
                );
            }
            for g in strs("apiGroups") {
                for r in strs("resources") {
                    out.push((
                        g.clone(),
                        r,
                        ns.clone(),
                        strs("resourceNames"),
                        strs("verbs"),
                    ));
                }
            }
        }
    }
    out
}

fn roles(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
        .collect()
}

/// The rendered roles must cover the needs of the rendered settings; the `strict` ones
/// (a subset) must each be needed.
fn check_rbac(name: &str, docs: &[Value], strict: &[&Value]) {
    let env = hook_env(docs);
    let fed_ns = setting(&env, "FEDERATION_NAMESPACE");
    // The hook runs as the service account the rules are bound to.
    let dep = one(docs, "Deployment", "istio-federation-hook");
    assert_eq!(dep["metadata"]["namespace"], fed_ns, "{name}");
    assert_eq!(
        dep["spec"]["template"]["spec"]["serviceAccountName"], "istio-federation-hook",
        "{name}"
    );
    assert!(
        of_kind(docs, "ServiceAccount")
            .iter()
            .any(|sa| sa["metadata"]["name"] == "istio-federation-hook"
                && sa["metadata"]["namespace"] == fed_ns),
        "{name}: no ServiceAccount {fed_ns}/istio-federation-hook"
    );
    let need = needed(&env);
    let grants = granted(docs, &roles(docs), fed_ns);
    let strict_grants = granted(docs, strict, fed_ns);
    // Every need is covered by a grant in its namespace (cluster grants cover every namespace).
    for ((g, r, ns, obj), verbs) in &need {
        for verb in verbs {
            let ok = grants.iter().any(|(gg, rr, gns, names, vv)| {
                gg == g
                    && rr == r
                    && (gns.is_empty() || gns == ns)
                    && vv.contains(verb)
                    && (names.is_empty() || (!obj.is_empty() && names.contains(obj)))
            });
            assert!(
                ok,
                "{name}: not granted: {verb} {g}/{r} in {ns:?} name {obj:?}"
            );
        }
    }
    // Every grant is needed (least privilege): each verb on each resource/name is used.
    for (g, r, ns, names, verbs) in &strict_grants {
        for verb in verbs {
            let used = need.iter().any(|((ng, nr, nns, nname), nv)| {
                ng == g
                    && nr == r
                    && (ns.is_empty() || ns == nns)
                    && nv.contains(verb)
                    && (names.is_empty() || names.contains(nname) || nname.is_empty())
            });
            assert!(
                used,
                "{name}: granted but never needed: {verb} {g}/{r} in {ns:?} {names:?}"
            );
        }
    }
    // Secret writes are limited to the hook's own Secrets (create cannot be, by RBAC design).
    for (g, r, ns, names, verbs) in &grants {
        if g.is_empty()
            && r == "secrets"
            && verbs
                .iter()
                .any(|v| v == "update" || v == "patch" || v == "delete")
        {
            assert!(
                !names.is_empty(),
                "{name}: unrestricted Secret writes in {ns}"
            );
        }
    }
}

#[test]
fn rbac_covers_exactly_what_the_hooks_need() {
    for v in variants() {
        let all = roles(&v.docs);
        // With cacerts-mode, the component's own rules must each be needed (the base's
        // mesh-config rights stay, as the component says).
        let strict: Vec<&Value> = match &v.without_cacerts {
            None => all,
            Some(without) => {
                let id = |d: &Value| {
                    (
                        d["kind"].to_string(),
                        d["metadata"]["namespace"].to_string(),
                        d["metadata"]["name"].to_string(),
                    )
                };
                let before: Vec<_> = roles(without).into_iter().map(id).collect();
                let added: Vec<&Value> = all
                    .into_iter()
                    .filter(|d| !before.contains(&id(d)))
                    .collect();
                assert!(!added.is_empty(), "{}: the component adds no role", v.name);
                if v.name.contains("cacerts") {
                    assert_eq!(setting(&hook_env(&v.docs), "TRUST_BUNDLE_MODE"), "cacerts");
                }
                added
            }
        };
        check_rbac(v.name, &v.docs, &strict);
    }
}

// ---------------------------------------------------------------------------------------------
// Overlay values

/// (kind, namespace, name) of every object, with namespaces and names mapped as given.
fn ids(
    docs: &[Value],
    map_ns: &dyn Fn(&str) -> String,
    map_name: &dyn Fn(&str, &str) -> String,
) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = docs
        .iter()
        .map(|d| {
            let kind = d["kind"].as_str().unwrap().to_string();
            let name = d["metadata"]["name"].as_str().unwrap();
            let name = if kind == "Namespace" {
                map_ns(name)
            } else {
                map_name(&kind, name)
            };
            let ns = d["metadata"]["namespace"]
                .as_str()
                .map(map_ns)
                .unwrap_or_default();
            (kind, ns, name)
        })
        .collect();
    out.sort();
    out
}

/// The overlay's `values` are everywhere the base had its own, and no base value is left;
/// `base` is the rendering with the same components and no values.
fn check_values(name: &str, docs: &[Value], base: &[Value], values: &BTreeMap<String, String>) {
    let value = |k: &str| values[k].as_str();
    // Values unlike the base's, or this check could not fail.
    for (k, base_value) in [
        ("CLUSTER_DOMAIN", BASE_DOMAIN),
        ("CLUSTER_UUID", BASE_UUID),
        ("FEDERATION_NAMESPACE", BASE_FED_NS),
        ("IMAGE", BASE_IMAGE),
    ] {
        assert_ne!(value(k), base_value, "{name}: {k} is the base's");
    }
    // The hook runs with them.
    let env = hook_env(docs);
    for k in [
        "CLUSTER_DOMAIN",
        "CLUSTER_UUID",
        "FEDERATION_NAMESPACE",
        "ISTIO_NAMESPACE",
        "MESH_CONFIG_NAME",
    ] {
        assert_eq!(setting(&env, k), value(k), "{name}: hook env {k}");
    }
    // Every container runs the image.
    for dep in of_kind(docs, "Deployment") {
        for c in dep["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            assert_eq!(
                c["image"],
                value("IMAGE"),
                "{name}: image of {}",
                dep["metadata"]["name"]
            );
        }
    }
    let gw = one(docs, "Gateway", "federation-ingress");
    assert_eq!(
        gw["spec"]["servers"][0]["hosts"],
        json!([format!("*.{}", value("CLUSTER_DOMAIN"))]),
        "{name}: Gateway hosts"
    );
    let ingress = one(docs, "Ingress", "istio-federation-metadata");
    assert_eq!(
        ingress["spec"]["rules"][0]["host"],
        value("METADATA_HOST"),
        "{name}"
    );
    assert_eq!(
        ingress["spec"]["tls"][0]["hosts"],
        json!([value("METADATA_HOST")]),
        "{name}"
    );
    one(
        docs,
        "Service",
        &format!("alliance-healthcheck-{}", value("CLUSTER_UUID")),
    );
    // Every object of the base is there once, in the namespace the values name.
    let fed_ns = value("FEDERATION_NAMESPACE").to_string();
    let istio_ns = value("ISTIO_NAMESPACE").to_string();
    let map_ns = |ns: &str| match ns {
        BASE_FED_NS => fed_ns.clone(),
        BASE_ISTIO_NS => istio_ns.clone(),
        HEALTHCHECK_NS => HEALTHCHECK_NS.to_string(),
        other => panic!("{name}: the base has namespace {other}"),
    };
    let healthcheck_of = |uuid: &str| format!("alliance-healthcheck-{uuid}");
    let base_name = |kind: &str, n: &str| {
        if kind == "Service" && n == healthcheck_of(BASE_UUID) {
            healthcheck_of(value("CLUSTER_UUID"))
        } else {
            n.to_string()
        }
    };
    let same = |_: &str, n: &str| n.to_string();
    let same_ns = |ns: &str| ns.to_string();
    assert_eq!(
        ids(docs, &same_ns, &same),
        ids(base, &map_ns, &base_name),
        "{name}: rendered objects"
    );
    // RBAC subjects are the hook's service account in its namespace.
    for b in of_kind(docs, "RoleBinding")
        .into_iter()
        .chain(of_kind(docs, "ClusterRoleBinding"))
    {
        for s in b["subjects"].as_array().unwrap() {
            assert_eq!(s["namespace"], fed_ns.as_str(), "{name}: subject of {b}");
        }
    }
    // Nothing of the base's cluster is left anywhere.
    let text = serde_json::to_string(docs).unwrap();
    for leftover in ["cluster-a", BASE_UUID, BASE_IMAGE] {
        assert!(!text.contains(leftover), "{name}: {leftover} is left");
    }
}

#[test]
fn overlay_values_land_everywhere() {
    check_values(
        "deploy/overlays/example",
        &variants()[1].docs,
        &variants()[0].docs,
        &example_values(),
    );
    let d8 = d8_layout_values();
    check_values(
        "d8-istio layout",
        &Overlay::new(Some(&d8), &D8_LAYOUT_COMPONENTS).render(),
        &Overlay::new(None, &D8_LAYOUT_COMPONENTS).render(),
        &d8,
    );
}

// ---------------------------------------------------------------------------------------------
// The health-check service Deckhouse peers probe

/// Deckhouse's newest alliance-healthcheck picks, from a peer's private `publicServices`, the
/// first host that begins with `alliance-healthcheck-` and contains `.d8-istio.svc.`
/// (docs/getting-started.md, "Packaging with kustomize").
fn deckhouse_probes(host: &str) -> bool {
    host.starts_with("alliance-healthcheck-") && host.contains(".d8-istio.svc.")
}

/// The health-check Service and the Deployment behind it, checked statically.
fn healthcheck<'a>(name: &str, docs: &'a [Value]) -> (&'a Value, &'a Value) {
    let env = hook_env(docs);
    let uuid = setting(&env, "CLUSTER_UUID");
    let services: Vec<&Value> = of_kind(docs, "Service")
        .into_iter()
        .filter(|s| {
            s["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("alliance-healthcheck")
        })
        .collect();
    assert_eq!(services.len(), 1, "{name}: health-check Services");
    let svc = services[0];
    assert_eq!(
        svc["metadata"]["name"],
        format!("alliance-healthcheck-{uuid}"),
        "{name}"
    );
    assert_eq!(svc["metadata"]["namespace"], HEALTHCHECK_NS, "{name}");
    // Exactly the label value the export hook (and Deckhouse's selector `key=`) selects.
    assert_eq!(
        svc["metadata"]["labels"]["federation.istio.deckhouse.io/public-service"], "",
        "{name}"
    );
    let ports = svc["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "{name}: {ports:?}");
    // Port 80, named `http` so peers' ServiceEntries carry HTTP.
    assert_eq!(ports[0]["port"], 80, "{name}");
    assert_eq!(ports[0]["name"], "http", "{name}");
    let target = str_of(&ports[0]["targetPort"], "targetPort (a port name)");
    // The one Deployment the selector picks, in the Service's namespace.
    let selector = svc["spec"]["selector"].as_object().expect("selector");
    assert!(!selector.is_empty(), "{name}: empty selector");
    let backing: Vec<&Value> = of_kind(docs, "Deployment")
        .into_iter()
        .filter(|d| {
            d["metadata"]["namespace"] == HEALTHCHECK_NS
                && selector
                    .iter()
                    .all(|(k, v)| &d["spec"]["template"]["metadata"]["labels"][k.as_str()] == v)
        })
        .collect();
    assert_eq!(backing.len(), 1, "{name}: Deployments behind the Service");
    let dep = backing[0];
    let pod = &dep["spec"]["template"];
    // In the mesh: the request arrives through our gateway with Istio mTLS.
    assert_eq!(
        pod["metadata"]["labels"]["sidecar.istio.io/inject"], "true",
        "{name}: the health-check pods need an Istio sidecar"
    );
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{name}");
    let c = &containers[0];
    let port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == target)
        .unwrap_or_else(|| panic!("{name}: no container port named {target}"));
    let container_port = port["containerPort"].as_u64().unwrap();
    for probe in ["readinessProbe", "livenessProbe"] {
        // /readyz waits for metadata this instance never has; /healthz is what peers GET.
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{name}: {probe}");
    }
    // No API access: no token, no binding.
    let sa = str_of(&pod["spec"]["serviceAccountName"], "serviceAccountName");
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false, "{name}");
    for b in of_kind(docs, "RoleBinding")
        .into_iter()
        .chain(of_kind(docs, "ClusterRoleBinding"))
    {
        for s in b["subjects"].as_array().unwrap() {
            assert!(
                !(s["name"] == sa && s["namespace"] == HEALTHCHECK_NS),
                "{name}: {sa} is bound in {b}"
            );
        }
    }
    // Peers may GET /healthz on that port, and nothing else.
    let policies: Vec<&Value> = of_kind(docs, "AuthorizationPolicy")
        .into_iter()
        .filter(|p| {
            p["metadata"]["namespace"] == HEALTHCHECK_NS
                && p["spec"]["selector"]["matchLabels"]
                    .as_object()
                    .is_some_and(|m| {
                        m.iter()
                            .all(|(k, v)| &pod["metadata"]["labels"][k.as_str()] == v)
                    })
        })
        .collect();
    assert_eq!(policies.len(), 1, "{name}: AuthorizationPolicies");
    assert_eq!(
        policies[0]["spec"],
        json!({"selector": policies[0]["spec"]["selector"], "action": "ALLOW", "rules": [{"to": [{"operation": {
            "methods": ["GET"], "paths": ["/healthz"], "ports": [container_port.to_string()]}}]}]}),
        "{name}"
    );
    // The container serves on that port.
    let cmd: Vec<&str> = c["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| str_of(v, "command"))
        .collect();
    assert_eq!(
        cmd[..2],
        ["/usr/local/bin/istio-federation-hook", "serve"],
        "{name}"
    );
    let listen = cmd
        .iter()
        .position(|a| *a == "--listen")
        .map(|i| cmd[i + 1])
        .unwrap_or_else(|| panic!("{name}: no --listen"));
    assert!(
        listen.ends_with(&format!(":{container_port}")),
        "{name}: --listen {listen} vs containerPort {container_port}"
    );
    (svc, dep)
}

/// `publicServices` of the private metadata the export hook renders when the rendered
/// health-check Service is among the exported ones (next to the export golden case's).
fn exported(svc: &Value, env: &[(String, String)]) -> Vec<Value> {
    let case = root().join("testdata/export/export-load-balancers");
    let bc = expand(
        &std::fs::read_to_string(case.join("binding-context.json")).unwrap(),
        &case,
        true,
    );
    let mut bc: Value = serde_json::from_str(&bc).unwrap();
    let services = bc[0]["snapshots"]["public_services"]
        .as_array_mut()
        .expect("public_services snapshot");
    services.push(json!({"object": svc}));
    let mut run_env: Vec<(String, String)> =
        ["ISTIO_FEDERATION_ENABLED", "CLUSTER_DOMAIN", "CLUSTER_UUID"]
            .iter()
            .map(|k| (k.to_string(), setting(env, k).to_string()))
            .collect();
    run_env.push(("ISTIO_FEDERATION_HOOK_OFFLINE".into(), "true".into()));
    let run = run_hook_with(&["export"], &bc.to_string(), &run_env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let secret = ndjson(&run.patches)
        .into_iter()
        .find(|op| {
            op["object"]["kind"] == "Secret"
                && op["object"]["metadata"]["name"] == "istio-federation-metadata"
        })
        .unwrap_or_else(|| panic!("no metadata Secret written: {}", run.patches));
    let federation = base64::engine::general_purpose::STANDARD
        .decode(str_of(
            &secret["object"]["data"]["federation.json"],
            "federation.json",
        ))
        .unwrap();
    let doc: Value = serde_json::from_slice(&federation).unwrap();
    doc["publicServices"].as_array().unwrap().clone()
}

/// Kills and reaps the child when the test ends, passing or not.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the rendered container command (on a loopback port) and probes it as Deckhouse does.
fn probe_as_deckhouse(name: &str, dep: &Value, host: &str, own_uuid: &str) -> String {
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args: Vec<String> = c["command"].as_array().unwrap()[1..]
        .iter()
        .map(|v| str_of(v, "command").to_string())
        .collect();
    let i = args.iter().position(|a| a == "--listen").unwrap();
    args[i + 1] = format!("127.0.0.1:{port}");
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(bin())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let mut child = Reap(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "{name}: the rendered command {args:?} exited ({status}): {}",
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{name}: the rendered serve command does not listen: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {host}\r\nUser-Agent: alliance-healthcheck/1.0\r\n\
         X-alliance-healthcheck-from: {own_uuid}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn healthcheck_service_is_published_and_answered() {
    for v in variants() {
        let name = v.name;
        let (svc, dep) = healthcheck(name, &v.docs);
        let env = hook_env(&v.docs);
        let uuid = setting(&env, "CLUSTER_UUID");
        let domain = setting(&env, "CLUSTER_DOMAIN");
        // The export hook publishes it under the host Deckhouse's prober picks, and only it.
        let services = exported(svc, &env);
        let probed: Vec<&Value> = services
            .iter()
            .filter(|s| deckhouse_probes(str_of(&s["hostname"], "hostname")))
            .collect();
        let host = format!("alliance-healthcheck-{uuid}.d8-istio.svc.{domain}");
        assert_eq!(
            probed,
            [&json!({"hostname": host, "ports": [{"name": "http", "port": 80}]})],
            "{name}: {services:?}"
        );
        assert!(
            services.len() > 1,
            "{name}: the other exported services are gone"
        );
        // The workload answers GET /healthz the way Deckhouse asks (200 "Ok.", as Deckhouse's own).
        let answer = probe_as_deckhouse(name, dep, &host, "7d3e52b0-0000-4000-8000-00000000beef");
        assert!(
            answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("\r\n\r\nOk."),
            "{name}: {answer}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Alerts

#[test]
fn alerts_are_a_prometheus_rule_file_promtool_loads() {
    let rule = one(
        &variants()[0].docs,
        "PrometheusRule",
        "istio-federation-hook",
    );
    // `spec` is exactly a Prometheus rule file (`groups:`), so promtool reads it as it is.
    let spec = rule["spec"].as_object().unwrap();
    assert_eq!(spec.keys().collect::<Vec<_>>(), ["groups"]);
    let rules: usize = spec["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    assert!(rules >= 4, "{rules}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, rule["spec"].to_string()).unwrap();
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}: Debian's prometheus package ships it; scripts/test-deps.sh installs it")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "promtool check rules: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("SUCCESS: {rules} rules found")),
        "{stdout}"
    );
    // Overlays move it, never change it.
    for v in variants() {
        let r = one(&v.docs, "PrometheusRule", "istio-federation-hook");
        assert_eq!(r["spec"], rule["spec"], "{}", v.name);
    }
}

// ---------------------------------------------------------------------------------------------
// The product and the image

#[test]
fn the_product_emits_only_operations_the_rbac_model_knows() {
    // Cross-check of the table in `needed`: every (operation, kind) in the golden outputs.
    let known: BTreeSet<(&str, &str)> = [
        ("CreateOrUpdate", "ServiceEntry"),
        ("CreateOrUpdate", "DestinationRule"),
        ("CreateOrUpdate", "Secret"),
        ("CreateIfNotExists", "Secret"),
        ("CreateIfNotExists", "ConfigMap"),
        ("Delete", "ServiceEntry"),
        ("Delete", "DestinationRule"),
        ("CreateOrUpdate", "AuthorizationPolicy"),
        ("JSONPatch", "Gateway"),
        ("Delete", "AuthorizationPolicy"),
        ("JSONPatch", "ConfigMap"),
        ("JSONPatch", "Secret"),
        ("JSONPatch", "ServiceEntry"),
        ("JSONPatch", "DestinationRule"),
        ("JSONPatch", "IstioFederation"),
        ("MergePatch", "IstioFederation"),
    ]
    .into_iter()
    .collect();
    let mut seen = BTreeSet::new();
    for sub in ["discovery", "export"] {
        for dir in std::fs::read_dir(root().join("testdata").join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
        {
            for op in
                ndjson(&std::fs::read_to_string(dir.join("patches.ndjson")).unwrap_or_default())
            {
                let kind = op["object"]["kind"]
                    .as_str()
                    .or(op["kind"].as_str())
                    .unwrap()
                    .to_string();
                let operation = op["operation"].as_str().unwrap().to_string();
                assert!(
                    known.contains(&(operation.as_str(), kind.as_str())),
                    "{operation} {kind} not in the RBAC model"
                );
                seen.insert((operation, kind));
            }
        }
    }
    assert!(seen.len() >= 8, "{seen:?}");
}

#[test]
fn dockerfile_ships_the_binary_and_the_hooks_into_shell_operator() {
    let df = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(
        df.contains("FROM ghcr.io/flant/shell-operator:"),
        "shell-operator base image"
    );
    assert!(
        df.contains("x86_64-unknown-linux-musl"),
        "static musl build"
    );
    assert!(df.contains("COPY hooks/ /hooks/"));
    assert!(df.contains("/usr/local/bin/istio-federation-hook"));
    // Every path the Dockerfile copies from the build context exists.
    for line in df
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(root().join(src).exists(), "COPY source {src} missing");
        }
    }
    for hook in [
        "hooks/istio-federation-discovery",
        "hooks/istio-federation-export",
    ] {
        let meta = std::fs::metadata(root().join(hook)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert!(
            meta.permissions().mode() & 0o111 != 0,
            "{hook} is not executable"
        );
    }
}
