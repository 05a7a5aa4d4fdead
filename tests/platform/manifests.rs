//! What a user installs before and with the hook, applied to a real API server: Istio's CRDs
//! (from the istio.io/istio module istiod is built from), the PrometheusRule CRD (generated from
//! prometheus-operator's API types), Istio's namespace with its mesh config, and `deploy/`
//! rendered by `kubectl kustomize`, first as a server-side dry run, then for real.

use crate::bins::Bins;
use crate::kube::Kube;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Installs the CRDs the manifests and the hooks need and waits until the API server serves them.
pub fn install_crds(k: &Kube, bins: &Bins) {
    for f in [bins.istio_crds(), bins.prometheus_rule_crd()] {
        let text = std::fs::read_to_string(&f).expect("CRD file");
        k.apply(&text);
    }
    k.ok(
        &["wait", "--for=condition=Established", "crd", "--all", "--timeout=120s"],
        None,
    );
}

/// `kubectl kustomize <dir>`.
pub fn render(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl kustomize (scripts/test-deps.sh names it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rendered manifests, as the API server's dry run, then for real; the API server's
/// message is the failure when it refuses any object. Our CRD is applied first (the
/// IstioFederation kind is not served before it is Established).
pub fn apply_rendered(k: &Kube, rendered: &str) {
    k.ok(
        &["apply", "--server-side", "--field-manager=kubectl", "--dry-run=server", "-f", "-"],
        Some(rendered),
    );
    k.ok(
        &["apply", "--server-side", "--field-manager=kubectl", "-f", "-"],
        Some(rendered),
    );
    k.ok(
        &["wait", "--for=condition=Established", "crd/istiofederations.deckhouse.io", "--timeout=60s"],
        None,
    );
}

/// What Istio's installation leaves in its namespace before the hook comes: the namespace and
/// the mesh config with this cluster's trust domain (istiod reads it from the API server).
pub fn istio_install(k: &Kube, istio_ns: &str, trust_domain: &str) {
    k.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {istio_ns}}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: {istio_ns}}}\ndata:\n  mesh: |-\n    \
         # installed by the platform suite as Istio's installer would\n    trustDomain: {trust_domain}\n    \
         defaultConfig:\n      proxyMetadata:\n        PROXY_CONFIG_XDS_AGENT: \"true\"\n        ISTIO_META_DNS_CAPTURE: \"true\"\n"
    ));
}

/// The hook Deployment's container environment, as the API server stores it.
pub fn hook_env(k: &Kube, fed_ns: &str) -> Vec<(String, String)> {
    let dep = k
        .get("deployment", fed_ns, "istio-federation-hook")
        .expect("the hook Deployment deploy/ creates");
    let containers = dep["spec"]["template"]["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let c = containers
        .iter()
        .find(|c| c["name"] == "shell-operator")
        .expect("container shell-operator");
    c["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or("").to_string(),
                e["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub fn setting<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("the hook Deployment sets no {key}"))
}

/// Waits (bounded) until `f` holds for what the API server returns.
pub fn eventually_object(
    k: &Kube,
    what: &str,
    limit: Duration,
    get: impl Fn(&Kube) -> Option<Value>,
) -> Value {
    crate::procs::wait_for(what, limit, || get(k), || k.log_tail())
}
