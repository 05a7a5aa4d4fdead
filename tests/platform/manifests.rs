//! What a user installs before and with the hook, applied to a real API server: Istio's CRDs
//! (from the istio.io/istio module istiod is built from), the PrometheusRule CRD (generated from
//! prometheus-operator's API types), Istio's namespace with its mesh config, and `deploy/`
//! rendered by `kubectl kustomize`, first as a server-side dry run, then for real.

use crate::bins::Bins;
use crate::kube::Kube;
use std::path::Path;
use std::process::Command;

/// Installs the CRDs the manifests and the hooks need and waits until the API server serves them.
pub fn install_crds(k: &Kube, bins: &Bins) {
    for f in [bins.istio_crds(), bins.prometheus_rule_crd()] {
        let text = std::fs::read_to_string(&f).expect("CRD file");
        k.apply(&text);
    }
    k.ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=120s",
        ],
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
/// message is the failure when it refuses any object. The Namespaces and our CRD go first (a
/// dry run creates nothing, so the objects in a new namespace could not be checked before it
/// exists), then everything.
pub fn apply_rendered(k: &Kube, rendered: &str) {
    let docs: Vec<&str> = rendered.split("\n---\n").collect();
    let first: Vec<&str> = docs
        .iter()
        .copied()
        .filter(|d| {
            d.contains("\nkind: Namespace\n") || d.contains("\nkind: CustomResourceDefinition\n")
        })
        .collect();
    for set in [first.join("\n---\n"), rendered.to_string()] {
        k.ok(
            &[
                "apply",
                "--server-side",
                "--field-manager=kubectl",
                "--dry-run=server",
                "-f",
                "-",
            ],
            Some(&set),
        );
        k.ok(
            &[
                "apply",
                "--server-side",
                "--field-manager=kubectl",
                "-f",
                "-",
            ],
            Some(&set),
        );
        k.ok(
            &[
                "wait",
                "--for=condition=Established",
                "crd/istiofederations.deckhouse.io",
                "--timeout=60s",
            ],
            None,
        );
    }
}

/// What Istio's installation leaves in its namespace before the hook comes: the namespace and
/// the mesh config with this cluster's trust domain (istiod reads it from the API server).
pub fn istio_install(
    k: &Kube,
    istio_ns: &str,
    trust_domain: &str,
    alias: Option<&str>,
    foreign_root: Option<&str>,
) {
    // In cacerts mode the installer also names the peers' trust domains (how-it-works.md).
    let aliases = alias
        .map(|a| format!("    trustDomainAliases: [{a}]\n"))
        .unwrap_or_default();
    // A root someone else trusts, for a trust domain that is no peer of ours: never ours to touch.
    let foreign = foreign_root
        .map(|pem| {
            format!(
                "    caCertificates:\n    - pem: |\n        {}\n      trustDomains: [foreign.example.org]\n",
                pem.trim().replace('\n', "\n        ")
            )
        })
        .unwrap_or_default();
    k.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {istio_ns}}}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: {istio_ns}}}\ndata:\n  mesh: |-\n    \
         # installed by the platform suite as Istio's installer would\n    trustDomain: {trust_domain}\n{aliases}{foreign}    \
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
