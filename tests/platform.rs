//! The real platform (README, "Tested with"): the manifests in `deploy/`, both hooks and
//! `serve` against kube-apiserver + etcd, shell-operator and istiod, each built from its Go
//! module at the version pinned in tests/platform/versions.env (tests/platform/build.sh; `make
//! test` runs it first and passes `PLATFORM_BIN_DIR`). Everything runs on loopback. Every
//! assertion reads the API server or istiod, never the hooks' own output files. A component
//! that is not built fails the test with the command that builds it.

#[path = "support/mod.rs"]
mod support;

mod bins;
mod http;
mod kube;
mod manifests;
mod procs;
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
    manifests::istio_install(&k, "istio-system", "cluster-a.local");

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
