//! The hooks' permissions as the API server decides them: every request shell-operator's
//! informers make for the bindings of both hooks' `--config` (list and watch, with the
//! binding's namespace, name and label selectors) and every kind of write the hooks' operations
//! become (as server-side dry runs, which RBAC authorizes like real writes), made with a token
//! of the ServiceAccount `deploy/` creates. A refusal fails with the API server's own message.

use crate::kube::{kubectl_with, Kube};
use crate::manifests::setting;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The hook's `--config` output (`args` = [] or ["export"]) under the Deployment's settings.
pub fn hook_config(args: &[&str], env: &[(String, String)]) -> Value {
    let out = Command::new(crate::bins::hook())
        .args(args)
        .arg("--config")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run the hook");
    assert!(
        out.status.success(),
        "{args:?} --config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--config JSON")
}

/// The API path of a binding's resource (namespaced when the binding names a namespace).
fn path_of(binding: &Value) -> String {
    let api = binding["apiVersion"].as_str().unwrap_or("v1");
    let ns = binding["namespace"]["nameSelector"]["matchNames"][0]
        .as_str()
        .map(|n| format!("/namespaces/{n}"))
        .unwrap_or_default();
    let resource = match binding["kind"].as_str().unwrap_or("") {
        "IstioFederation" => "istiofederations",
        "Secret" => "secrets",
        "ConfigMap" => "configmaps",
        "Service" => "services",
        "ServiceEntry" => "serviceentries",
        "DestinationRule" => "destinationrules",
        "AuthorizationPolicy" => "authorizationpolicies",
        other => panic!("a binding of kind {other}: add it here"),
    };
    let prefix = if api.contains('/') {
        format!("/apis/{api}")
    } else {
        format!("/api/{api}")
    };
    format!("{prefix}{ns}/{resource}")
}

/// The query shell-operator's informer sends: label and field (single name) selectors.
fn query_of(binding: &Value) -> String {
    let mut q = Vec::new();
    if let Some(labels) = binding["labelSelector"]["matchLabels"].as_object() {
        let sel: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        q.push(format!("labelSelector={}", sel.join(",")));
    }
    if let Some(name) = binding["nameSelector"]["matchNames"][0].as_str() {
        q.push(format!("fieldSelector=metadata.name={name}"));
    }
    q.join("&")
}

fn raw(kubeconfig: &Path, path: &str) -> Result<(), String> {
    let out = kubectl_with(kubeconfig, &["get", "--raw", path], None);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Every informer request of both hooks, as the ServiceAccount: the refusals, with the API
/// server's messages.
pub fn informer_refusals(k: &Kube, sa: &Path, env: &[(String, String)]) -> Vec<String> {
    let _ = k;
    let mut refused = Vec::new();
    for args in [&[][..], &["export"][..]] {
        let cfg = hook_config(args, env);
        for b in cfg["kubernetes"].as_array().cloned().unwrap_or_default() {
            let (path, q) = (path_of(&b), query_of(&b));
            let sep = if q.is_empty() { "" } else { "&" };
            for req in [
                format!("{path}?{q}"),
                format!("{path}?{q}{sep}watch=1&timeoutSeconds=1"),
            ] {
                if let Err(e) = raw(sa, &req) {
                    refused.push(format!("binding {} ({req}): {e}", b["name"]));
                }
            }
        }
    }
    refused
}

/// The token in a kubeconfig written by [`Kube::kubeconfig_for`].
fn sa_token(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("a token in the kubeconfig")
        .to_string()
}

fn as_sa(sa: &Path, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let out = kubectl_with(sa, args, stdin);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    // A dry run that passes authorization may still find nothing to patch: only a refusal counts.
    if out.status.success() || !err.contains("Forbidden") && !err.contains("forbidden") {
        Ok(())
    } else {
        Err(format!("kubectl {}: {err}", args.join(" ")))
    }
}

/// One write check: kubectl arguments and the manifest on stdin, if any.
type Check = (String, Option<String>);

/// Every kind of write the hooks' operations become, as server-side dry runs by the
/// ServiceAccount: CreateOrUpdate (POST, then GET + PUT), CreateIfNotExists (POST), Delete
/// (DELETE) on each kind the hooks own, and the PATCHes of status, the metadata Secret and the
/// trust bundle exactly as shell-operator sends them (no GET first). Objects a write needs to
/// exist are created first by the harness, and removed after.
pub fn write_refusals(k: &Kube, sa: &Path, env: &[(String, String)]) -> Vec<String> {
    let fed_ns = setting(env, "FEDERATION_NAMESPACE");
    let istio_ns = setting(env, "ISTIO_NAMESPACE");
    let api = setting(env, "ISTIO_NETWORKING_API_VERSION");
    let root_ns = env
        .iter()
        .find(|(k, _)| k == "ISTIO_ROOT_NAMESPACE")
        .map(|(_, v)| v.as_str())
        .unwrap_or(istio_ns);
    let managed = "labels: {app.kubernetes.io/managed-by: istio-federation-hook}";
    // (resource for kubectl, namespace, manifest) of every kind the hooks own.
    let owned = [
        (
            format!("serviceentries.{}", api.split('/').next().unwrap_or("")),
            fed_ns,
            format!(
                "apiVersion: {api}\nkind: ServiceEntry\nmetadata: {{name: NAME, namespace: {fed_ns}, {managed}}}\n\
                 spec: {{hosts: [rbac-probe.example.org], location: MESH_INTERNAL, resolution: STATIC, \
                 ports: [{{number: 80, name: http, protocol: HTTP}}], endpoints: [{{address: 127.0.0.1}}]}}\n"
            ),
        ),
        (
            format!("destinationrules.{}", api.split('/').next().unwrap_or("")),
            fed_ns,
            format!(
                "apiVersion: {api}\nkind: DestinationRule\nmetadata: {{name: NAME, namespace: {fed_ns}, {managed}}}\n\
                 spec: {{host: rbac-probe.example.org, trafficPolicy: {{tls: {{mode: ISTIO_MUTUAL}}}}}}\n"
            ),
        ),
        (
            "authorizationpolicies.security.istio.io".to_string(),
            root_ns,
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: NAME, namespace: {root_ns}, {managed}}}\n\
                 spec: {{action: ALLOW, rules: [{{from: [{{source: {{principals: [rbac-probe.example.org/ns/x/sa/y]}}}}]}}]}}\n"
            ),
        ),
    ];
    let secret = |name: &str| {
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {fed_ns}}}\ndata: {{}}\n")
    };
    let fed = "apiVersion: deckhouse.io/v1alpha1\nkind: IstioFederation\nmetadata: {name: rbac-probe}\n\
               spec: {trustDomain: rbac-probe.example.org, metadataEndpoint: 'https://127.0.0.1:1/metadata/'}\n";
    let existing: Vec<String> = owned
        .iter()
        .map(|(_, _, m)| m.replace("NAME", "rbac-probe"))
        .collect();
    k.apply(&format!(
        "{}---\n{}---\n{fed}",
        existing.join("---\n"),
        secret("istio-federation-metadata")
    ));
    let dry = "--dry-run=server";
    let mut checks: Vec<Check> = Vec::new();
    for ((resource, ns, manifest), current) in owned.iter().zip(&existing) {
        checks.push((
            format!("create {dry} -f -"),
            Some(manifest.replace("NAME", "rbac-probe-new")),
        ));
        checks.push((format!("get {resource} rbac-probe -n {ns}"), None));
        checks.push((format!("replace {dry} -f -"), Some(current.clone())));
        checks.push((format!("delete {resource} rbac-probe -n {ns} {dry}"), None));
    }
    checks.push((
        format!("create {dry} -f -"),
        Some(secret("d8-remote-authn-keypair")),
    ));
    checks.push((
        format!("get secret istio-federation-metadata -n {fed_ns}"),
        None,
    ));
    checks.push((
        format!("replace {dry} -f -"),
        Some(secret("istio-federation-metadata")),
    ));
    let mut patches = vec![
        format!("/api/v1/namespaces/{fed_ns}/secrets/istio-federation-metadata"),
        "/apis/deckhouse.io/v1alpha1/istiofederations/rbac-probe/status".to_string(),
    ];
    if setting(env, "TRUST_BUNDLE_MODE") == "cacerts" {
        patches.push(format!("/api/v1/namespaces/{istio_ns}/secrets/cacerts"));
    } else {
        let mesh = setting(env, "MESH_CONFIG_NAME");
        patches.push(format!("/api/v1/namespaces/{istio_ns}/configmaps/{mesh}"));
        let cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: rbac-probe, namespace: {istio_ns}}}\n");
        checks.push((format!("create {dry} -f -"), Some(cm)));
    }
    let token = sa_token(sa);
    let mut refused: Vec<String> = patches
        .iter()
        .filter_map(|p| {
            let path = format!("{p}?dryRun=All");
            let (code, body) =
                k.request(&token, "PATCH", &path, "application/merge-patch+json", "{}");
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or(body);
            (code == 403).then(|| format!("PATCH {p}: Forbidden: {message}"))
        })
        .collect();
    refused.extend(checks.iter().filter_map(|(args, stdin)| {
        let a: Vec<&str> = args.split(' ').collect();
        as_sa(sa, &a, stdin.as_deref()).err()
    }));
    k.ok(&["delete", "istiofederation", "rbac-probe"], None);
    for (resource, ns, _) in &owned {
        k.ok(&["delete", resource, "rbac-probe", "-n", ns], None);
    }
    k.ok(
        &[
            "delete",
            "secret",
            "istio-federation-metadata",
            "-n",
            fed_ns,
        ],
        None,
    );
    refused
}
