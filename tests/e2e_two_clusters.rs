//! Two clusters, A and B, federating on 127.0.0.1 with nothing but this binary: each has its
//! own in-memory object store standing in for the API server, its own Istio root, trust domain
//! and UUID, and its own `serve` process over TLS answering from the metadata Secret, mounted
//! the way kubelet mounts Secrets (`..data` symlink swapped atomically). Export and discovery
//! run on both sides, their patches are applied to the stores, until both converge: each side
//! imports the other's services (ServiceEntries pointing at the other's gateway on 15443) and
//! trusts the other's root for the other's trust domain.

mod cluster;
mod common;
mod support;

use cluster::Cluster;

#[test]
fn two_clusters_running_only_this_binary_federate_both_ways() {
    let mut a = Cluster::new("cluster-a", "cluster-a.local", "198.51.100.1", "web");
    let mut b = Cluster::new("cluster-b", "cluster-b.local", "198.51.100.2", "api");
    a.federate_with(&b);
    b.federate_with(&a);
    a.start_serve();
    b.start_serve();

    let mut converged_at = None;
    for round in 1..=6 {
        a.export();
        b.export();
        a.discover();
        b.discover();
        let done = a.imports(&b, "api.prod.svc.cluster-b.local")
            && b.imports(&a, "web.prod.svc.cluster-a.local")
            && a.trusts(&b)
            && b.trusts(&a);
        if done {
            converged_at = Some(round);
            break;
        }
    }
    let round = converged_at.unwrap_or_else(|| {
        panic!(
            "did not converge:\nA: {:#?}\nB: {:#?}",
            a.store.all("IstioFederation"),
            b.store.all("IstioFederation")
        )
    });
    assert!(round <= 3, "took {round} rounds");

    // Each side generated its own key pair and published it; conditions are all green.
    for c in [&a, &b] {
        assert!(c
            .store
            .get("Secret", "d8-istio", "d8-remote-authn-keypair")
            .is_some());
        let fed = c.store.all("IstioFederation")[0];
        for cond in fed["status"]["conditions"].as_array().expect("conditions") {
            assert_eq!(cond["status"], "True", "{}: {cond}", c.name);
        }
    }
    // Steady state: another full round changes nothing on either side.
    let rest = [a.export(), b.export(), a.discover(), b.discover()].concat();
    assert!(rest.is_empty(), "not at rest after convergence: {rest:?}");
}
