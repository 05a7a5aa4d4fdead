//! Rotation end to end (docs/rotation.md), through the binary with the
//! cluster simulation of the two-cluster test: cluster A rotates its Istio root while B
//! federates with it, with the clock of every discovery and export run pinned and moved past
//! the retention (`ISTIO_FEDERATION_HOOK_NOW`). At every round a workload certificate of A
//! under the old root and one under the new root are checked against the trust bundle B
//! emitted (its mesh config's `caCertificates` for A's trust domain) with `openssl verify`, a
//! real X.509 verifier, not our parser. And the signing key: A's key-pair Secret is deleted,
//! A generates a new one, and nothing A imported is lost while B learns it.

mod cluster;
mod common;
mod support;

use cluster::{all, Cluster};
use serde_json::{json, Value};
use std::process::Command;
use support::pki::Ca;

const HOUR: i64 = 3600;
const T0: i64 = 1_798_761_600; // 2027-01-01T00:00:00Z

fn rfc3339(t: i64) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp(t).expect("time");
    dt.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn pin(c: &mut Cluster, now: i64, retention: &str) {
    c.env_overrides = vec![
        ("ISTIO_FEDERATION_HOOK_NOW".into(), rfc3339(now)),
        ("ROOT_RETENTION".into(), retention.into()),
    ];
}

/// The PEMs B's mesh config trusts for `domain` (every `caCertificates` entry naming it).
fn trust_bundle_for(c: &Cluster, domain: &str) -> String {
    let cm = c
        .store
        .get("ConfigMap", "d8-istio", "istio")
        .expect("mesh config");
    let mesh: Value =
        serde_saphyr::from_str(cm["data"]["mesh"].as_str().unwrap_or("")).unwrap_or(Value::Null);
    mesh["caCertificates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["trustDomains"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d == domain))
        })
        .filter_map(|e| e["pem"].as_str())
        .collect::<Vec<_>>()
        .join("")
}

/// `openssl verify -partial_chain -CAfile <bundle> <leaf>`: whether the leaf chains to a root
/// of the bundle. An empty bundle trusts nothing.
fn verifies(bundle: &str, leaf: &str) -> bool {
    if bundle.trim().is_empty() {
        return false;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert) = (dir.path().join("bundle.pem"), dir.path().join("leaf.pem"));
    std::fs::write(&ca, bundle).expect("bundle");
    std::fs::write(&cert, leaf).expect("leaf");
    let out = Command::new("openssl")
        .args(["verify", "-partial_chain", "-CAfile"])
        .arg(&ca)
        .arg(&cert)
        .output()
        .expect("openssl");
    out.status.success()
}

fn service_entries(c: &Cluster) -> Vec<Value> {
    c.store.all("ServiceEntry").into_iter().cloned().collect()
}

fn touches(ops: &[Value], kinds: &[&str]) -> Vec<Value> {
    ops.iter()
        .filter(|o| {
            let kind = o["object"]["kind"]
                .as_str()
                .or(o["kind"].as_str())
                .unwrap_or("");
            kinds.contains(&kind)
        })
        .cloned()
        .collect()
}

/// What A's metadata Secret holds under `key`, decoded.
fn secret_key(c: &Cluster, key: &str) -> Option<String> {
    use base64::Engine;
    let s = c
        .store
        .get("Secret", "d8-istio", "istio-federation-metadata")?;
    let raw = s["data"][key].as_str()?;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(raw).ok()?).ok()
}

/// A's SPIFFE bundle, fetched from its `serve` over TLS (curl, against A's endpoint CA).
fn spiffe_bundle(c: &Cluster) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &c.endpoint_ca.cert_pem).expect("ca");
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&ca)
        .arg(format!(
            "https://127.0.0.1:{}/metadata/public/spiffe-bundle-endpoint",
            c.port
        ))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn round(a: &mut Cluster, b: &mut Cluster) -> (Vec<Value>, Vec<Value>) {
    let mut a_ops = a.export();
    let mut b_ops = b.export();
    a_ops.extend(a.discover());
    b_ops.extend(b.discover());
    // B's export learns what discovery cached (it binds the IstioFederations).
    b_ops.extend(b.export());
    (a_ops, b_ops)
}

struct Setup {
    a: Cluster,
    b: Cluster,
    old_root: Ca,
    new_root: Ca,
    old_leaf: String,
    new_leaf: String,
}

fn setup(retention: &str) -> Setup {
    let mut a = Cluster::new("cluster-a", "cluster-a.local", "198.51.100.1", "web");
    let mut b = Cluster::new("cluster-b", "cluster-b.local", "198.51.100.2", "api");
    let old_root = Ca::new("cluster-a Istio root 1");
    let new_root = Ca::new("cluster-a Istio root 2");
    a.root_pem = old_root.cert_pem.clone();
    a.set_local_root(&old_root.cert_pem);
    let spiffe = "spiffe://cluster-a.local/ns/prod/sa/web";
    let old_leaf = old_root.workload_cert_pem(spiffe);
    let new_leaf = new_root.workload_cert_pem(spiffe);
    a.federate_with(&b);
    b.federate_with(&a);
    a.start_serve();
    b.start_serve();
    pin(&mut a, T0, retention);
    pin(&mut b, T0, retention);
    for _ in 0..3 {
        round(&mut a, &mut b);
    }
    assert!(b.imports(&a, "web.prod.svc.cluster-a.local"), "B imports A");
    assert!(b.trusts(&a), "B trusts A's root");
    Setup {
        a,
        b,
        old_root,
        new_root,
        old_leaf,
        new_leaf,
    }
}

#[test]
fn a_rotating_root_stays_trusted_by_the_peer_until_retention_ends() {
    let Setup {
        mut a,
        mut b,
        old_root,
        new_root,
        old_leaf,
        new_leaf,
    } = setup("48h");
    let both = format!("{}{}", old_root.cert_pem, new_root.cert_pem);
    let entries = service_entries(&b);
    assert!(!entries.is_empty());
    assert_eq!(spiffe_bundle(&a)["spiffe_sequence"], 1);
    // (hours after T0, A's istio-ca-root-cert, old leaf trusted by B, new leaf trusted by B,
    //  roots in A's rootCA). A drops the old root at +2h: A publishes it until +50h, B sees
    // it gone in the fresh document of its first run after that (+51h) and retains it for
    // its own 48h (docs/rotation.md: both sides retain), until +99h.
    let rounds: [(i64, &str, bool, bool, usize); 8] = [
        (1, &both, true, true, 2),
        (2, &new_root.cert_pem, true, true, 2),
        (26, &new_root.cert_pem, true, true, 2),
        (49, &new_root.cert_pem, true, true, 2),
        (51, &new_root.cert_pem, true, true, 1),
        (98, &new_root.cert_pem, true, true, 1),
        (99, &new_root.cert_pem, false, true, 1),
        (120, &new_root.cert_pem, false, true, 1),
    ];
    let mut last_sequence = 1;
    for (hours, local, old_ok, new_ok, published) in rounds {
        let now = T0 + hours * HOUR;
        pin(&mut a, now, "48h");
        pin(&mut b, now, "48h");
        a.set_local_root(local);
        let (_, b_ops) = round(&mut a, &mut b);
        let bundle = trust_bundle_for(&b, "cluster-a.local");
        assert_eq!(
            verifies(&bundle, &old_leaf),
            old_ok,
            "+{hours}h: old-root workload"
        );
        assert_eq!(
            verifies(&bundle, &new_leaf),
            new_ok,
            "+{hours}h: new-root workload"
        );
        // The published rootCA and the SPIFFE bundle carry every published root.
        let public: Value =
            serde_json::from_str(&secret_key(&a, "public.json").expect("public.json")).unwrap();
        let root_ca = public["rootCA"].as_str().unwrap();
        assert_eq!(
            root_ca.matches("BEGIN CERTIFICATE").count(),
            published,
            "+{hours}h"
        );
        assert!(
            root_ca.starts_with(local),
            "+{hours}h: the ConfigMap's roots come first"
        );
        let spiffe = spiffe_bundle(&a);
        assert_eq!(
            spiffe["keys"].as_array().unwrap().len(),
            published,
            "+{hours}h"
        );
        assert_eq!(spiffe["spiffe_refresh_hint"], 43_200);
        let sequence = spiffe["spiffe_sequence"].as_u64().unwrap();
        assert!(sequence >= last_sequence, "+{hours}h: sequence went down");
        last_sequence = sequence;
        assert_eq!(
            secret_key(&a, "retired-local-roots.json").is_some(),
            (2..50).contains(&hours),
            "+{hours}h"
        );
        // B's ServiceEntries never churn.
        assert_eq!(
            touches(&b_ops, &["ServiceEntry", "DestinationRule"]),
            Vec::<Value>::new(),
            "+{hours}h"
        );
        assert_eq!(service_entries(&b), entries, "+{hours}h");
        // Each rerun with nothing changed emits nothing on either side.
        let (a_again, b_again) = round(&mut a, &mut b);
        assert!(
            a_again.is_empty() && b_again.is_empty(),
            "+{hours}h rerun: {a_again:?} {b_again:?}"
        );
    }
    // Added (2), old root gone from rootCA (3): the sequence followed every change of keys.
    assert_eq!(last_sequence, 3);
}

#[test]
fn zero_retention_drops_the_old_root_at_once() {
    let Setup {
        mut a,
        mut b,
        old_root,
        new_root,
        old_leaf,
        new_leaf,
    } = setup("0s");
    a.set_local_root(&format!("{}{}", old_root.cert_pem, new_root.cert_pem));
    round(&mut a, &mut b);
    let bundle = trust_bundle_for(&b, "cluster-a.local");
    assert!(verifies(&bundle, &old_leaf) && verifies(&bundle, &new_leaf));
    // The old root leaves A's ConfigMap: in the same round A stops publishing it and B stops
    // trusting it; the SPIFFE hint for 0s is 60 s.
    a.set_local_root(&new_root.cert_pem);
    let (_, b_ops) = round(&mut a, &mut b);
    let bundle = trust_bundle_for(&b, "cluster-a.local");
    assert!(!verifies(&bundle, &old_leaf), "old root still trusted");
    assert!(verifies(&bundle, &new_leaf));
    assert!(secret_key(&a, "retired-local-roots.json").is_none());
    assert_eq!(spiffe_bundle(&a)["spiffe_refresh_hint"], 60);
    assert!(touches(&b_ops, &["ServiceEntry", "DestinationRule"]).is_empty());
}

#[test]
fn the_distrust_annotation_drops_a_retained_root_at_once() {
    let Setup {
        mut a,
        mut b,
        old_root,
        new_root,
        old_leaf,
        new_leaf,
    } = setup("48h");
    a.set_local_root(&format!("{}{}", old_root.cert_pem, new_root.cert_pem));
    round(&mut a, &mut b);
    a.set_local_root(&new_root.cert_pem);
    pin(&mut a, T0 + HOUR, "48h");
    pin(&mut b, T0 + HOUR, "48h");
    round(&mut a, &mut b);
    let bundle = trust_bundle_for(&b, "cluster-a.local");
    assert!(
        verifies(&bundle, &old_leaf),
        "retained while A publishes it"
    );
    // B's operator distrusts the old root: gone from B's trust bundle in B's next run, though
    // A still publishes it.
    let fp = {
        ring::digest::digest(&ring::digest::SHA256, &old_root.cert_der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let fed = b
        .store
        .objects
        .values_mut()
        .flatten()
        .find(|o| o["kind"] == "IstioFederation")
        .expect("federation");
    fed["metadata"]["annotations"] = json!({"federation.istio.deckhouse.io/distrust-roots": fp});
    let ops = b.discover();
    let bundle = trust_bundle_for(&b, "cluster-a.local");
    assert!(
        !verifies(&bundle, &old_leaf),
        "distrusted root still trusted"
    );
    assert!(verifies(&bundle, &new_leaf));
    assert!(touches(&ops, &["ServiceEntry", "DestinationRule"]).is_empty());
    let public = secret_key(&a, "public.json").unwrap();
    assert_eq!(
        public.matches("BEGIN CERTIFICATE").count(),
        2,
        "A still publishes both"
    );
}

#[test]
fn a_new_signing_key_is_learnt_and_nothing_imported_is_lost_meanwhile() {
    let Setup { mut a, mut b, .. } = setup("48h");
    let old_key = secret_key(&a, "public.json").unwrap();
    let host = "api.prod.svc.cluster-b.local";
    assert!(a.imports(&b, host));
    let ready = |c: &Cluster| {
        let fed = c.store.all("IstioFederation")[0];
        fed["status"]["conditions"]
            .as_array()
            .is_some_and(|l| l.iter().all(|c| c["status"] == "True"))
    };
    assert!(ready(&a));
    // The operator deletes A's key-pair Secret.
    for list in a.store.objects.values_mut() {
        list.retain(|o| {
            !(o["kind"] == "Secret" && o["metadata"]["name"] == "d8-remote-authn-keypair")
        });
    }
    // One export run: a new pair, published in public.json.
    let ops = a.export();
    assert!(
        ops.iter().any(|o| o["operation"] == "CreateIfNotExists"),
        "{ops:?}"
    );
    let new_public = secret_key(&a, "public.json").unwrap();
    assert_ne!(new_public, old_key);
    let new_key: Value = serde_json::from_str(&new_public).unwrap();
    let new_key = new_key["authnKeyPub"].as_str().unwrap().to_string();
    // A's first discovery run: B does not know the new key yet, A's private request is refused;
    // last-known-good keeps everything A imported.
    a.discover();
    assert!(!ready(&a), "B accepted a key it cannot know yet");
    assert!(
        a.imports(&b, host),
        "lost an import while B learns the new key"
    );
    // B's discovery caches A's new public metadata; B's next export run puts the key into
    // remote-public-metadata.json (one export run).
    b.discover();
    b.export();
    let remote: Value =
        serde_json::from_str(&secret_key(&b, "remote-public-metadata.json").unwrap()).unwrap();
    assert_eq!(remote["uuid-cluster-a"]["authnKeyPub"], new_key.as_str());
    // A's second discovery run: accepted again, every condition green.
    a.export();
    a.discover();
    assert!(a.imports(&b, host));
    assert!(
        ready(&a),
        "{:#}",
        a.store.all("IstioFederation")[0]["status"]
    );
    // And at rest.
    let (x, y) = round(&mut a, &mut b);
    assert!(x.is_empty() && y.is_empty(), "{x:?} {y:?}");
    assert!(all(&b.store).any(|o| o["kind"] == "ServiceEntry"));
}
