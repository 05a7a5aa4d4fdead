//! The real platform (README, "Tested with"): the manifests in `deploy/`, both hooks and
//! `serve` against kube-apiserver + etcd, shell-operator and istiod, each built from its Go
//! module at the version pinned in tests/platform/versions.env (tests/platform/build.sh; `make
//! test` runs it first and passes `PLATFORM_BIN_DIR`). Everything runs on loopback. Every
//! assertion reads the API server or istiod, never the hooks' own output files. A component
//! that is not built fails the test with the command that builds it.

#[path = "support/mod.rs"]
mod support;

#[path = "platform/bins.rs"]
mod bins;
#[path = "platform/kube.rs"]
mod kube;
#[path = "platform/manifests.rs"]
mod manifests;
#[path = "platform/procs.rs"]
mod procs;
#[path = "platform/rbac.rs"]
mod rbac;

use bins::Bins;
use kube::Kube;
use std::path::Path;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Scenario 8, the manifests we ship: `deploy/` (the base, and the example overlay as a dry
/// run) applied to a real API server with Istio's CRDs, then every informer request and every
/// kind of write the hooks make, as the ServiceAccount `deploy/` creates with exactly the RBAC
/// it grants. A permission taken away fails here with the API server's message.
#[test]
fn shipped_manifests_apply_and_grant_what_the_hooks_do() {
    let bins = Bins::locate();
    let tmp = tempfile::tempdir().expect("tempdir");
    let k = Kube::start(&bins, "manifests", tmp.path());
    manifests::install_crds(&k, &bins);
    manifests::istio_install(&k, "istio-system", "cluster-a.local", None);

    let base = manifests::render(&repo().join("deploy"));
    manifests::apply_rendered(&k, &base);
    let overlay = manifests::render(&repo().join("deploy/overlays/example"));
    // A dry run does not create the overlay's namespace, so the objects in it need it to exist.
    k.ok(&["create", "namespace", "mesh-federation"], None);
    k.ok(
        &["apply", "--server-side", "--dry-run=server", "-f", "-"],
        Some(&overlay),
    );

    let env = manifests::hook_env(&k, "istio-federation");
    let sa = k.kubeconfig_for(
        "hook.kubeconfig",
        &k.token("istio-federation", "istio-federation-hook"),
    );
    let mut refused = rbac::informer_refusals(&k, &sa, &env);
    refused.extend(rbac::write_refusals(&k, &sa, &env));
    assert!(
        refused.is_empty(),
        "the API server refuses the hooks' ServiceAccount:\n{}",
        refused.join("\n")
    );
}

/// `NAME=value` pairs of tests/platform/versions.env.
fn pinned() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(repo().join("tests/platform/versions.env")).expect("versions.env");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pin(name: &str) -> String {
    pinned()
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("versions.env pins no {name}"))
}

/// The "Tested with" line of docs/compatibility.md, as the pinned versions produce it.
fn tested_with() -> String {
    format!(
        "Tested with: kube-apiserver {} (`k8s.io/kubernetes`), etcd {}, shell-operator {}, istiod \
         `istio.io/istio` {}, built with {}.",
        pin("KUBERNETES_VERSION"),
        pin("ETCD_VERSION"),
        pin("SHELL_OPERATOR_VERSION"),
        pin("ISTIO_VERSION"),
        pin("GO_VERSION"),
    )
}

#[test]
fn docs_and_dockerfile_name_the_versions_the_suite_runs() {
    let compat = std::fs::read_to_string(repo().join("docs/compatibility.md"))
        .expect("docs/compatibility.md");
    let line = tested_with();
    assert!(
        compat.lines().any(|l| l == line),
        "docs/compatibility.md must carry the line the pinned versions produce:\n{line}"
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let from = format!(
        "FROM ghcr.io/flant/shell-operator:{}",
        pin("SHELL_OPERATOR_VERSION")
    );
    assert!(
        dockerfile.lines().any(|l| l.trim() == from),
        "the Dockerfile's base image must be the shell-operator the suite tests: {from}"
    );
}
