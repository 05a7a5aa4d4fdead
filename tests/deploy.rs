//! Static checks of `deploy/` and the `Dockerfile` (no cluster or Docker engine here): the
//! manifests parse, the CRD declares every field the hook writes (the API server prunes
//! undeclared ones), and the RBAC rules cover every verb the emitted operations and the
//! informers need — and nothing more, with no wildcards.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("deploy").join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"));
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(!docs.is_empty(), "{file} is empty");
    docs
}

fn all_docs() -> Vec<(String, Value)> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .flat_map(|f| docs(&f).into_iter().map(move |d| (f.clone(), d)))
        .collect()
}

#[test]
fn manifests_parse_and_name_their_kinds() {
    let docs = all_docs();
    assert!(docs.len() >= 12, "{}", docs.len());
    for (file, d) in &docs {
        assert!(
            d["apiVersion"].is_string() && d["kind"].is_string(),
            "{file}: {d}"
        );
        assert!(d["metadata"]["name"].is_string(), "{file}: {d}");
    }
    let kinds: BTreeSet<&str> = docs
        .iter()
        .map(|(_, d)| d["kind"].as_str().unwrap())
        .collect();
    for k in [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "Ingress",
        "PrometheusRule",
    ] {
        assert!(kinds.contains(k), "no {k} in deploy/");
    }
}

fn crd_schema() -> Value {
    let crd = docs("crd-istiofederation.yaml").remove(0);
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
    let schema = crd_schema();
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
    let mut missing = Vec::new();
    undeclared(&fed, &schema, "", &mut missing);
    assert!(missing.is_empty(), "{missing:?}");
    // The CRD's own validation still refuses what Deckhouse's refuses (reference §7 A1–A3).
    for bad in [
        json!({"trustDomain": "cluster b", "metadataEndpoint": "https://h/"}),
        json!({"trustDomain": "b"}),
        json!({"trustDomain": "b", "metadataEndpoint": "http://h/"}),
    ] {
        let obj = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": "x"}, "spec": bad});
        assert!(!errors(&validator, &obj).is_empty(), "accepted {obj}");
    }
}

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
        other => panic!("unexpected kind {other}"),
    }
}

fn config_of(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap()
}

/// What the hooks need, as deployed (namespaces from deploy/hook-deployment.yaml).
fn needed(cacerts: bool) -> Need {
    let env = [
        ("FEDERATION_NAMESPACE", "istio-federation"),
        ("ISTIO_NAMESPACE", "istio-system"),
        (
            "TRUST_BUNDLE_MODE",
            if cacerts { "cacerts" } else { "mesh-config" },
        ),
    ];
    let mut n = Need::new();
    // Informers: get/list/watch on every binding (named objects with their single name).
    for cfg in [
        config_of(&["--config"], &env),
        config_of(&["export", "--config"], &env),
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
    // Operations the product emits (src/patch.rs), by object: shell-operator's verbs for each.
    let fed_ns = "istio-federation";
    for kind in ["ServiceEntry", "DestinationRule"] {
        let (g, r) = resource_of(kind);
        need(
            &mut n,
            g,
            r,
            fed_ns,
            "",
            &["create", "get", "update", "delete"],
        ); // CreateOrUpdate, Delete
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
    if cacerts {
        need(&mut n, "", "secrets", "istio-system", "cacerts", &["patch"]);
    } else {
        need(
            &mut n,
            "",
            "configmaps",
            "istio-system",
            "istio",
            &["patch"],
        );
        need(&mut n, "", "configmaps", "istio-system", "", &["create"]); // CreateIfNotExists of a SHARED_MESH_CONFIG map
    }
    n
}

/// One granted rule, flattened: (group, resource, namespace, resourceNames, verbs).
type Grant = (String, String, String, Vec<String>, Vec<String>);

/// Rules granted to the hook's service account.
fn granted(files: &[&str]) -> Vec<Grant> {
    let docs: Vec<Value> = files.iter().flat_map(|f| docs(f)).collect();
    let bound: BTreeSet<(String, String)> = docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
        .filter(|d| {
            d["subjects"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "istio-federation-hook")
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
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
    {
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
            "{key:?} is not bound to the hook's service account"
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

/// `files` must cover the needs; the rules of `strict` (a subset) must each be needed.
fn check_rbac(files: &[&str], strict: &[&str], cacerts: bool) {
    let need = needed(cacerts);
    let grants = granted(files);
    let strict_grants = granted(strict);
    // Every need is covered by a grant in its namespace (cluster grants cover every namespace).
    for ((g, r, ns, name), verbs) in &need {
        for verb in verbs {
            let ok = grants.iter().any(|(gg, rr, gns, names, vv)| {
                gg == g
                    && rr == r
                    && (gns.is_empty() || gns == ns)
                    && vv.contains(verb)
                    && (names.is_empty() || (!name.is_empty() && names.contains(name)))
            });
            assert!(ok, "not granted: {verb} {g}/{r} in {ns:?} name {name:?}");
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
                "granted but never needed: {verb} {g}/{r} in {ns:?} {names:?}"
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
            assert!(!names.is_empty(), "unrestricted Secret writes in {ns}");
        }
    }
}

#[test]
fn rbac_covers_exactly_what_the_hooks_need() {
    check_rbac(&["rbac.yaml"], &["rbac.yaml"], false);
    // The cacerts overlay adds only what cacerts mode needs (the base's mesh-config rights stay).
    check_rbac(
        &["rbac.yaml", "rbac-cacerts-mode.yaml"],
        &["rbac-cacerts-mode.yaml"],
        true,
    );
}

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
        ("JSONPatch", "ConfigMap"),
        ("JSONPatch", "Secret"),
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
