//! Shared resources between federations, through the binary (README, "Security"): no peer can
//! cost another federation its trust, its retention or its imports.
//!
//! - the trust bundle: a size limit for one root, a share of the bundle per federation; the one
//!   over its share loses its newest excess roots, named in its condition, and a federation
//!   within its share — or new, with one ordinary root — never loses trust to it;
//! - retention: its state is written even when the metadata caches must be held, so
//!   `ROOT_RETENTION` ends on time; only roots we installed (discovery) or published (export)
//!   are ever retained;
//! - ownership: an entry someone else wrote is never removed, even when it starts with our root;
//! - the fleet: a total cap on imported services, shared fairly between federations.
//!
//! The cluster states are built here from the PEM texts, the mesh-config text in the format the
//! hook writes and the ownership annotation; sizes are measured on the JSON the API server
//! would store, independently of the hook's own estimates.

mod cluster;
mod common;
mod support;

// The real API server, for the fullest trust bundle (the harness of tests/platform.rs).
#[path = "platform/bins.rs"]
#[allow(dead_code)]
mod bins;
#[path = "platform/kube.rs"]
mod kube;
#[path = "platform/procs.rs"]
mod procs;

use base64::Engine;
use common::{cert, ndjson, run_hook, Store};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::pki::{self, Ca, SigningKeys};
use support::server::Route;
use support::Peer;

const BUDGET: usize = 900 * 1024;
const ANNOTATION: &str = "federation.istio.deckhouse.io/managed-trust-entries";
const DAY: i64 = 24 * 3600;
const T0: i64 = 1_798_761_600; // 2027-01-01T00:00:00Z, common::NOW

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn fp(pem: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, &der(pem));
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(t: i64) -> String {
    let dt = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
    dt.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn base_env() -> Vec<(String, String)> {
    vec![
        ("ISTIO_FEDERATION_ENABLED".into(), "true".into()),
        ("CLUSTER_DOMAIN".into(), "my.cluster".into()),
        ("CLUSTER_UUID".into(), "deadbeef-mycluster".into()),
        ("ISTIO_FEDERATION_HOOK_OFFLINE".into(), "true".into()),
    ]
}

/// An IstioFederation with cached public metadata publishing `roots` (and no private one).
fn federation(name: &str, td: &str, roots: &[&str]) -> Value {
    json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": name},
        "spec": {"trustDomain": td, "metadataEndpoint": format!("https://istio-metadata.{td}/metadata/")},
        "status": {"metadataCache": {
            "public": {"clusterUUID": format!("uuid-{name}"), "authnKeyPub": cert("peer-b-authn-pub"), "rootCA": roots.concat()},
            "publicLastFetchTimestamp": common::NOW}}})
}

/// One `caCertificates` entry exactly as the hook writes it.
fn entry(td: &str, pem: &str) -> String {
    let mut out = "- pem: |\n".to_string();
    for line in pem.lines() {
        out.push_str(&format!("    {line}\n"));
    }
    out.push_str(&format!("  trustDomains:\n  - {td}\n"));
    out
}

/// The mesh-config ConfigMap holding `ours` (entries the annotation says we wrote, in this
/// order), `foreign` entries text after them, and `head` before `caCertificates`.
fn mesh_config(head: &str, ours: &[(&str, &str)], foreign: &str) -> Value {
    let mut mesh = format!("{head}caCertificates:\n");
    let mut owned: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (td, pem) in ours {
        mesh.push_str(&entry(td, pem));
        owned.entry(td.to_string()).or_default().push(fp(pem));
    }
    mesh.push_str(foreign);
    for fps in owned.values_mut() {
        fps.sort();
        fps.dedup();
    }
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "d8-istio", "resourceVersion": "1"},
        "data": {"mesh": mesh}});
    if !ours.is_empty() {
        cm["metadata"]["annotations"] = json!({ANNOTATION: serde_json::to_string(&owned).unwrap()});
    }
    cm
}

/// `cm` with a comment line in front of its mesh text making the object `free` bytes smaller
/// than the budget, as the API server stores it (compact JSON).
fn padded_to(mut cm: Value, free: usize) -> Value {
    let size = serde_json::to_string(&cm).unwrap().len();
    assert!(
        size + free + 3 <= BUDGET,
        "the cluster state is already {size} bytes"
    );
    let pad = BUDGET - free - size - 3; // "# " and "\n" (an escaped \n is 2 bytes)
    let mesh = cm["data"]["mesh"].as_str().unwrap().to_string();
    cm["data"]["mesh"] = json!(format!("#{}\n{mesh}", "p".repeat(pad)));
    assert_eq!(serde_json::to_string(&cm).unwrap().len(), BUDGET - free);
    cm
}

fn store(feds: Vec<Value>, mesh: Value) -> Store {
    let keys = (
        cert("deckhouse-fixture-priv"),
        cert("deckhouse-fixture-pub"),
    );
    Store::offline(feds, mesh, (&keys.0, &keys.1))
}

/// Runs the hook on the store's snapshots and applies what it emits; returns the operations.
fn run(s: &mut Store, env: &[(String, String)]) -> Vec<Value> {
    let r = run_hook(
        &s.binding_context("refresh_remote_metadata").to_string(),
        env,
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let ops = ndjson(&r.patches);
    let problems = common::check_operations(&ops);
    assert!(problems.is_empty(), "invalid operations: {problems:?}");
    s.apply(&ops);
    ops
}

fn mesh_of(s: &Store) -> Value {
    let text = s.get("ConfigMap", "d8-istio", "istio").unwrap()["data"]["mesh"]
        .as_str()
        .unwrap()
        .to_string();
    serde_saphyr::from_str(&text).unwrap()
}

/// The first certificate of every `caCertificates` entry for `td`, in order.
/// Federation `b` with `peer` (b.local, uuid-b) behind its endpoint, its public metadata cached
/// publishing `installed` and those roots installed for b.local, and our key pair `own`.
fn online_store(peer: &Peer, ca: &Ca, own: &SigningKeys, installed: &[&str]) -> Store {
    let mut fed = federation("b", "b.local", installed);
    fed["spec"]["metadataEndpoint"] = json!(format!("{}/", peer.endpoint()));
    fed["spec"]["metadata"] = json!({"clusterCA": ca.cert_pem});
    fed["status"]["metadataCache"]["public"]["clusterUUID"] = json!("uuid-b");
    fed["status"]["metadataCache"]["public"]["authnKeyPub"] = json!(peer.keys.public_pem);
    let entries: Vec<(&str, &str)> = installed.iter().map(|p| ("b.local", *p)).collect();
    let mut s = store(vec![fed], mesh_config("", &entries, ""));
    s.objects.get_mut("authn_keypair").unwrap()[0]["data"] =
        json!({"priv.pem": b64(&own.private_pem), "pub.pem": b64(&own.public_pem)});
    s
}

/// The environment of an online run at `t` (fetching from the peer, clock at `t`).
fn at(t: i64) -> Vec<(String, String)> {
    let mut e = base_env();
    e.retain(|(k, _)| k != "ISTIO_FEDERATION_HOOK_OFFLINE");
    e.push(("FETCH_TIMEOUT".into(), "5s".into()));
    e.push(("ISTIO_FEDERATION_HOOK_NOW".into(), rfc3339(t)));
    e
}

/// How many ServiceEntries the store holds for hosts ending in `suffix`.
fn hosts_ending(s: &Store, suffix: &str) -> usize {
    s.all("ServiceEntry")
        .iter()
        .filter(|o| {
            o["spec"]["hosts"][0]
                .as_str()
                .is_some_and(|h| h.ends_with(suffix))
        })
        .count()
}

fn trusted(s: &Store, td: &str) -> Vec<String> {
    mesh_of(s)["caCertificates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["trustDomains"]
                .as_array()
                .is_some_and(|d| d.len() == 1 && d[0] == td)
        })
        .filter_map(|e| e["pem"].as_str().map(str::to_string))
        .collect()
}

fn config_map_size(s: &Store) -> usize {
    serde_json::to_string(s.get("ConfigMap", "d8-istio", "istio").unwrap())
        .unwrap()
        .len()
}

/// The condition `kind` of federation `name` after the store took the run's patches.
fn condition(s: &Store, name: &str, kind: &str) -> (String, String, String) {
    let fed = s
        .all("IstioFederation")
        .into_iter()
        .find(|f| f["metadata"]["name"] == name)
        .unwrap()
        .clone();
    let c = fed["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .cloned()
        .unwrap_or(Value::Null);
    let text = |k: &str| c[k].as_str().unwrap_or("").to_string();
    (text("status"), text("reason"), text("message"))
}

fn succeeded(s: &Store, name: &str) -> bool {
    let (status, reason, _) = condition(s, name, "TrustBundleReady");
    status == "True" && reason == "Succeeded"
}

/// Finding 1, first half: a peer's roots of 160 KB each (a long SAN list) filled the bundle, and
/// a new federation with one ordinary root got `ObjectTooLarge` and no trust at all. Such a root
/// is refused on its own now, naming the limit.
#[test]
fn a_huge_root_is_refused_and_a_new_federation_is_trusted() {
    let huge: Vec<String> = (0..5)
        .map(|i| pki::large_root(&format!("huge{i}"), 118 * 1024))
        .collect();
    assert!(huge.iter().all(|p| p.len() > 155 * 1024));
    let huge_refs: Vec<&str> = huge.iter().map(String::as_str).collect();
    let installed: Vec<(&str, &str)> = huge_refs.iter().map(|p| ("hostile.local", *p)).collect();
    // The huge roots installed (by an earlier version), the object 400 bytes under the budget.
    let cm = padded_to(
        mesh_config("trustDomain: my.cluster\n", &installed, ""),
        400,
    );
    let c_root = cert("peer-c-root");
    let mut s = store(
        vec![
            federation("a-hostile", "hostile.local", &huge_refs),
            federation("c", "c.local", &[&c_root]),
        ],
        cm,
    );
    run(&mut s, &base_env());
    assert_eq!(trusted(&s, "c.local"), std::slice::from_ref(&c_root));
    assert!(
        succeeded(&s, "c"),
        "{:?}",
        condition(&s, "c", "TrustBundleReady")
    );
    assert!(trusted(&s, "hostile.local").is_empty());
    let (status, reason, message) = condition(&s, "a-hostile", "TrustBundleReady");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "CertificateRejected")
    );
    assert!(
        message.contains("more than the 16384 bytes a root may have"),
        "{message}"
    );
    assert!(config_map_size(&s) <= BUDGET);
}

/// Twelve hostile peers (h00…h11.local) whose eight 6 KiB roots each are installed and fill the
/// bundle but for 400 bytes; b rotates (publishes its new root next to the installed old one),
/// c is new with one ordinary root. Returns the store, the large roots and the hostile domains.
fn filled_bundle() -> (Store, Vec<String>, Vec<String>) {
    let big: Vec<String> = (0..8)
        .map(|i| pki::large_root(&format!("big{i}"), 6 * 1024))
        .collect();
    let big_refs: Vec<&str> = big.iter().map(String::as_str).collect();
    let b_old = cert("peer-b-root");
    let b_new = cert("peer-b-root-2");
    let c_root = cert("peer-c-root");
    let hostile: Vec<String> = (0..12).map(|i| format!("h{i:02}.local")).collect();
    let mut installed: Vec<(&str, &str)> = vec![("b.local", b_old.as_str())];
    for td in &hostile {
        installed.extend(big_refs.iter().map(|p| (td.as_str(), *p)));
    }
    let cm = padded_to(
        mesh_config("trustDomain: my.cluster\n", &installed, ""),
        400,
    );
    let mut feds = vec![
        federation("b", "b.local", &[&b_old, &b_new]),
        federation("c", "c.local", &[&c_root]),
    ];
    for (i, td) in hostile.iter().enumerate() {
        feds.push(federation(&format!("h{i:02}"), td, &big_refs));
    }
    (store(feds, cm), big, hostile)
}

/// Finding 1, second half: twelve peers whose roots (each within the size limit) fill the
/// bundle. An innocent peer rotating its root and a new federation with one ordinary root both
/// get their roots; each peer over its share loses its newest roots, the same number for each,
/// named in its condition; the bundle stays within the budget.
#[test]
fn a_federation_within_its_share_never_loses_trust_to_anothers_excess() {
    let (mut s, big, hostile) = filled_bundle();
    let (b_old, b_new, c_root) = (
        cert("peer-b-root"),
        cert("peer-b-root-2"),
        cert("peer-c-root"),
    );
    run(&mut s, &base_env());
    assert_eq!(trusted(&s, "b.local"), [b_old.clone(), b_new.clone()]);
    assert_eq!(trusted(&s, "c.local"), std::slice::from_ref(&c_root));
    assert!(succeeded(&s, "b") && succeeded(&s, "c"));
    let size = config_map_size(&s);
    assert!(size <= BUDGET, "{size}");
    let kept = trusted(&s, "h00.local").len();
    assert!((1..8).contains(&kept), "h00 keeps {kept} roots");
    for (i, td) in hostile.iter().enumerate() {
        // The oldest roots stay, the newest excess leaves.
        assert_eq!(trusted(&s, td), big[..kept], "{td}");
        let (status, reason, message) = condition(&s, &format!("h{i:02}"), "TrustBundleReady");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "ObjectTooLarge")
        );
        assert!(message.contains("share of the trust bundle"), "{message}");
        for left_out in &big[kept..] {
            assert!(message.contains(&fp(left_out)[..16]), "{message}");
        }
    }
    // The next run changes nothing.
    let again = run(&mut s, &base_env());
    assert!(again.is_empty(), "{again:?}");
}

/// Finding 1 on the real API server: the fullest bundle the shares make (the scene above) is
/// written with the hook's own JSON patch — a `test` of the old 900 KiB text and the `replace`,
/// one request of about 1.8 MB — and kube-apiserver and etcd take it; the ConfigMap reads back
/// with exactly the text the hook wrote, within the budget.
#[test]
fn the_fullest_trust_bundle_is_written_through_the_real_api_server() {
    let (mut s, _, _) = filled_bundle();
    let mut before = s.get("ConfigMap", "d8-istio", "istio").unwrap().clone();
    let ops = run(&mut s, &base_env());
    let patch = ops
        .iter()
        .find(|o| o["operation"] == "JSONPatch" && o["kind"] == "ConfigMap")
        .expect("the trust bundle's patch");
    let bins = bins::Bins::locate();
    let tmp = tempfile::tempdir().unwrap();
    let k = kube::Kube::start(&bins, "bundle", tmp.path());
    k.ok(&["create", "namespace", "d8-istio"], None);
    before["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    k.ok(&["create", "-f", "-"], Some(&before.to_string()));
    let file = tmp.path().join("patch.json");
    std::fs::write(&file, patch["jsonPatch"].to_string()).unwrap();
    k.ok(
        &[
            "patch",
            "configmap",
            "istio",
            "-n",
            "d8-istio",
            "--type=json",
            "--patch-file",
            file.to_str().unwrap(),
        ],
        None,
    );
    let stored = k
        .get("configmap", "d8-istio", "istio")
        .expect("the ConfigMap");
    let want = s.get("ConfigMap", "d8-istio", "istio").unwrap();
    assert_eq!(stored["data"]["mesh"], want["data"]["mesh"]);
    assert_eq!(
        stored["metadata"]["annotations"][ANNOTATION],
        want["metadata"]["annotations"][ANNOTATION]
    );
    let size = serde_json::to_string(&json!({"data": stored["data"]}))
        .unwrap()
        .len();
    assert!(size <= BUDGET, "{size}");
}

/// Finding 7: an administrator's entry "our root + another root" for the peer's trust domain is
/// not ours: it is neither removed as a duplicate nor taken away with our entry when the root is
/// distrusted.
#[test]
fn an_entry_someone_else_wrote_is_never_removed_even_when_it_starts_with_our_root() {
    let b_root = cert("peer-b-root");
    let other = cert("peer-c-root");
    let admins = format!(
        "- pem: |\n{}  trustDomains:\n  - b.local\n",
        format!("{b_root}{other}")
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    for (name, ours_first) in [("ours first", true), ("theirs first", false)] {
        let cm = if ours_first {
            mesh_config("", &[("b.local", &b_root)], &admins)
        } else {
            let mut cm = mesh_config("", &[("b.local", &b_root)], "");
            let mesh = cm["data"]["mesh"].as_str().unwrap().replacen(
                "caCertificates:\n",
                &format!("caCertificates:\n{admins}"),
                1,
            );
            cm["data"]["mesh"] = json!(mesh);
            cm
        };
        let mut s = store(vec![federation("b", "b.local", &[&b_root])], cm);
        let admin_pem = format!("{b_root}{other}");
        let ops = run(&mut s, &base_env());
        assert!(
            !ops.iter().any(|o| o["kind"] == "ConfigMap"),
            "{name}: {ops:?}"
        );
        // The root is distrusted: our entry goes at once, the administrator's stays.
        s.objects.get_mut("federations").unwrap()[0]["metadata"]["annotations"] =
            json!({"federation.istio.deckhouse.io/distrust-roots": fp(&b_root)});
        run(&mut s, &base_env());
        assert_eq!(trusted(&s, "b.local"), [admin_pem], "{name}");
    }
}

/// Finding 6 (discovery): a `status.retiredRoots` entry for a root we never installed for the
/// peer's trust domain is not trusted, however recent its `retiredAt`.
#[test]
fn a_retired_root_we_never_installed_is_not_retained() {
    let b_root = cert("peer-b-root");
    let foreign = pki::valid_root_pem("never published by b");
    let mut fed = federation("b", "b.local", &[&b_root]);
    fed["status"]["retiredRoots"] = json!([{"fingerprint": fp(&foreign), "pem": foreign,
        "retiredAt": rfc3339(T0 - 3600), "until": rfc3339(T0 + DAY)}]);
    let mut s = store(vec![fed], mesh_config("", &[("b.local", &b_root)], ""));
    run(&mut s, &base_env());
    assert_eq!(trusted(&s, "b.local"), std::slice::from_ref(&b_root));
    let fed = s.all("IstioFederation")[0].clone();
    assert_eq!(fed["status"]["retiredRoots"], json!([]), "{fed}");
    // A root we did install for b.local is retained as before.
    let mut fed = federation("b", "b.local", &[&b_root]);
    let old = cert("peer-b-root-2");
    fed["status"]["retiredRoots"] = json!([{"fingerprint": fp(&old), "pem": old,
        "retiredAt": rfc3339(T0 - 3600), "until": rfc3339(T0 - 3600 + 2 * DAY)}]);
    let mut s = store(
        vec![fed],
        mesh_config("", &[("b.local", &b_root), ("b.local", &old)], ""),
    );
    let ops = run(&mut s, &base_env());
    assert!(!ops.iter().any(|o| o["kind"] == "ConfigMap"), "{ops:?}");
    assert_eq!(trusted(&s, "b.local"), [b_root, old]);
}

/// Finding 6 (export): a `retired-local-roots.json` entry for a root we never published in
/// `rootCA` is not published.
#[test]
fn export_publishes_only_retired_roots_it_published() {
    use cluster::Cluster;
    let mut a = Cluster::new("a", "cluster-a.local", "203.0.113.10", "web");
    a.env_overrides = vec![("ISTIO_FEDERATION_HOOK_NOW".into(), rfc3339(T0))];
    a.export();
    let secret = |c: &Cluster| {
        c.store
            .get("Secret", "d8-istio", "istio-federation-metadata")
            .unwrap()
            .clone()
    };
    let public = |c: &Cluster| -> Value {
        let s = secret(c);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s["data"]["public.json"].as_str().unwrap())
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    };
    let before = public(&a)["rootCA"].as_str().unwrap().to_string();
    let foreign = pki::valid_root_pem("never ours");
    let retired = json!([{"fingerprint": fp(&foreign), "pem": foreign,
        "retiredAt": rfc3339(T0 - 3600), "until": rfc3339(T0 + DAY)}]);
    for objs in a.store.objects.values_mut() {
        for o in objs.iter_mut() {
            if o["kind"] == "Secret" && o["metadata"]["name"] == "istio-federation-metadata" {
                o["data"]["retired-local-roots.json"] = json!(b64(&retired.to_string()));
            }
        }
    }
    a.remount();
    a.export();
    let after = public(&a)["rootCA"].as_str().unwrap().to_string();
    assert!(
        !after.contains(foreign.trim()),
        "published a root it never published"
    );
    assert_eq!(after, before);
}

/// Finding 2: the status patch counts `status.retiredRoots`. A peer moves from five large roots
/// to one small root and a long list of services at once: the private cache is held (it would
/// take the status over the budget), the retention state is written, and the retired roots
/// leave the bundle when `ROOT_RETENTION` ends — not renewed on every run.
#[test]
fn retention_ends_on_time_when_the_status_would_be_too_large() {
    let ca = Ca::new("fair-shares metadata CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "uuid-b", "b.local", &own);
    let olds: Vec<String> = (0..5)
        .map(|i| pki::large_root(&format!("old{i}"), 12 * 1024))
        .collect();
    let old_refs: Vec<&str> = olds.iter().map(String::as_str).collect();
    // 200 services with long names and many ports, whose cache is about 840 KiB: within the
    // budget alone, over it with the five retired roots (about 80 KiB).
    let services: Vec<Value> = (0..200)
        .map(|i| {
            let x = "x".repeat(62);
            let host = format!("s{i:04}.{x}.{x}.{x}.prod.svc.b.local");
            // With `protocol`, as the cache stores them: the document's size is the cache's.
            let ports: Vec<Value> = (0..84)
                .map(|p| json!({"name": format!("http-{p}"), "port": 8080 + p, "protocol": "HTTP"}))
                .collect();
            json!({"hostname": host, "ports": ports})
        })
        .collect();
    let private = json!({"ingressGateways": [{"address": "198.51.100.7", "port": 15443}], "publicServices": services});
    let private_len = private.to_string().len();
    assert!(
        (830 * 1024..850 * 1024).contains(&private_len),
        "{private_len}"
    );
    peer.serve_private(Route::ok(private.to_string()), &own);
    let mut s = online_store(&peer, &ca, &own, &old_refs);
    // The peer now publishes one small root: the five old ones are retained for 48 h.
    run(&mut s, &at(T0));
    let mut want = vec![peer.root_pem.clone()];
    want.extend(olds.iter().cloned());
    let mut got = trusted(&s, "b.local");
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let fed = s.all("IstioFederation")[0].clone();
    assert_eq!(
        fed["status"]["retiredRoots"].as_array().map(Vec::len),
        Some(5),
        "the retention state was not written"
    );
    let (status, reason, _) = condition(&s, "b", "ServicesImported");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ObjectTooLarge")
    );
    // A day later they are still trusted; three days later they are not.
    run(&mut s, &at(T0 + DAY));
    assert_eq!(trusted(&s, "b.local").len(), 6);
    run(&mut s, &at(T0 + 3 * DAY));
    assert_eq!(trusted(&s, "b.local"), std::slice::from_ref(&peer.root_pem));
    let (_, _, message) = condition(&s, "b", "TrustBundleReady");
    assert!(!message.contains("Retaining"), "{message}");
}

/// Finding 2, while trust is held: the cached public document does not advance then (here the
/// peer's AuthorizationPolicy is refused, so its new root waits: `AwaitingAuthorizationPolicy`),
/// and every run used to find the old root "newly gone" against it again once its retention had
/// ended, retiring it anew for another `ROOT_RETENTION`. Its retention ends on time: the ended
/// entry stays recorded in `status.retiredRoots` (never trusted, not renewed), and when the hold
/// lifts the old root leaves the bundle at once.
#[test]
fn a_retired_root_is_not_retired_anew_while_trust_is_held() {
    let ca = Ca::new("fair-shares metadata CA");
    let own = SigningKeys::generate();
    let peer = Peer::start(&ca, "uuid-b", "b.local", &own);
    let old = cert("peer-b-root");
    peer.serve_private(
        Route::ok(
            json!({"ingressGateways": [{"address": "198.51.100.7", "port": 15443}], "publicServices": []})
                .to_string(),
        ),
        &own,
    );
    let mut s = online_store(&peer, &ca, &own, &[&old]);
    // We export nothing; the API server refuses the policy the hook writes for b.local, so
    // none is ever observed.
    s.objects.insert("public_services".into(), Vec::new());
    let refuse_policies = |s: &mut Store| {
        s.objects
            .insert("authorization_policies".into(), Vec::new());
    };
    let retired = |s: &Store| -> Vec<(String, String, String)> {
        s.all("IstioFederation")[0]["status"]["retiredRoots"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let f = |k: &str| e[k].as_str().unwrap_or("").to_string();
                (f("fingerprint"), f("retiredAt"), f("until"))
            })
            .collect()
    };
    refuse_policies(&mut s);
    // The peer publishes only its new root: the old one is retired, the new one waits.
    run(&mut s, &at(T0));
    refuse_policies(&mut s);
    assert_eq!(trusted(&s, "b.local"), std::slice::from_ref(&old));
    let (_, reason, _) = condition(&s, "b", "TrustBundleReady");
    assert_eq!(reason, "AwaitingAuthorizationPolicy");
    let record = vec![(fp(&old), rfc3339(T0), rfc3339(T0 + 2 * DAY))];
    assert_eq!(retired(&s), record);
    // Three and four days later, still held: the retention ended at T0 + 48 h and stays so.
    for day in [3, 4] {
        run(&mut s, &at(T0 + day * DAY));
        refuse_policies(&mut s);
        assert_eq!(retired(&s), record, "day {day}: retired anew");
        let (_, _, message) = condition(&s, "b", "TrustBundleReady");
        assert!(!message.contains("Retaining"), "day {day}: {message}");
    }
    // The policy is let in: the new root is added and the old one, whose retention ended two
    // days ago, leaves; then the record goes too (the cached document no longer lists it).
    run(&mut s, &at(T0 + 4 * DAY + 60));
    run(&mut s, &at(T0 + 4 * DAY + 120));
    assert_eq!(trusted(&s, "b.local"), std::slice::from_ref(&peer.root_pem));
    run(&mut s, &at(T0 + 4 * DAY + 180));
    assert_eq!(retired(&s), Vec::new());
}

/// Finding 10: a fleet-wide cap on imported services, shared fairly: a federation within its
/// share imports everything, the ones over it are held (nothing of theirs deleted, nothing new)
/// with `LimitExceeded` naming the share, and the run's operations stay within the cap.
#[test]
fn the_fleet_cap_is_shared_fairly() {
    let service = |td: &str, i: usize| json!({"hostname": format!("s{i}.prod.svc.{td}"), "ports": [{"name": "http", "port": 80}]});
    let with_services = |name: &str, td: &str, n: usize| {
        let mut f = federation(name, td, &[&cert("peer-b-root")]);
        f["status"]["metadataCache"]["private"] = json!({
            "ingressGateways": [{"address": "198.51.100.7", "port": 15443}],
            "publicServices": (0..n).map(|i| service(td, i)).collect::<Vec<_>>()});
        f["status"]["metadataCache"]["privateLastFetchTimestamp"] = json!(common::NOW);
        f
    };
    let mut s = store(
        vec![
            with_services("a", "a.local", 10),
            with_services("b", "b.local", 200),
            with_services("c", "c.local", 200),
        ],
        mesh_config("", &[], ""),
    );
    let mut env = base_env();
    env.push(("MAX_SERVICES_TOTAL".into(), "100".into()));
    let ops = run(&mut s, &env);
    let hosts = |suffix: &str| hosts_ending(&s, suffix);
    assert_eq!(hosts(".a.local"), 10);
    assert_eq!((hosts(".b.local"), hosts(".c.local")), (0, 0));
    assert!(ops.len() <= 2 * 100 + 3, "{} operations", ops.len());
    let (status, reason, _) = condition(&s, "a", "ServicesImported");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Succeeded"));
    for name in ["b", "c"] {
        let (status, reason, message) = condition(&s, name, "ServicesImported");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "LimitExceeded"),
            "{name}"
        );
        assert!(
            message.contains("MAX_SERVICES_TOTAL=100") && message.contains("share of 45"),
            "{message}"
        );
    }
}

/// Finding 10, bytes: the fleet cap counts a service once per 4 KiB its ServiceEntry and
/// DestinationRule take, so a peer cannot spend the fleet's room with a few huge services
/// (here ten with 128 ports, the most a service keeps, behind 64 gateways: about 200 KB of
/// objects each, where an ordinary service takes about 1.5 KB). Counted by objects alone, both federations fit a cap of 200;
/// counted by size, the large one is held and the ordinary one imports everything, and the run
/// writes at most the cap × 4 KiB of ServiceEntries and DestinationRules.
#[test]
fn the_fleet_cap_counts_large_services_by_their_bytes() {
    let gateways: Vec<Value> = (0..64)
        .map(|i| json!({"address": format!("198.51.100.{}", i + 1), "port": 15443}))
        .collect();
    let large = |i: usize| {
        let ports: Vec<Value> = (0..128)
            .map(|p| json!({"name": format!("https-{p}"), "port": 20000 + p, "protocol": "HTTPS"}))
            .collect();
        json!({"hostname": format!("big{i}.prod.svc.large.local"), "ports": ports})
    };
    let small = |i: usize| json!({"hostname": format!("s{i}.prod.svc.small.local"), "ports": [{"name": "http", "port": 80, "protocol": "HTTP"}]});
    let with = |name: &str, td: &str, gws: Vec<Value>, services: Vec<Value>| {
        let mut f = federation(name, td, &[&cert("peer-b-root")]);
        f["status"]["metadataCache"]["private"] =
            json!({"ingressGateways": gws, "publicServices": services});
        f["status"]["metadataCache"]["privateLastFetchTimestamp"] = json!(common::NOW);
        f
    };
    let mut s = store(
        vec![
            with(
                "large",
                "large.local",
                gateways,
                (0..10).map(large).collect(),
            ),
            with(
                "small",
                "small.local",
                vec![json!({"address": "198.51.100.200", "port": 15443})],
                (0..100).map(small).collect(),
            ),
        ],
        mesh_config("", &[], ""),
    );
    let mut env = base_env();
    env.push(("MAX_SERVICES_TOTAL".into(), "200".into()));
    let ops = run(&mut s, &env);
    let hosts = |suffix: &str| hosts_ending(&s, suffix);
    assert_eq!((hosts(".small.local"), hosts(".large.local")), (100, 0));
    let written: usize = ops
        .iter()
        .filter(|o| {
            matches!(
                o["object"]["kind"].as_str(),
                Some("ServiceEntry" | "DestinationRule")
            )
        })
        .map(|o| o["object"].to_string().len())
        .sum();
    assert!(
        written <= 200 * 4096,
        "{written} bytes of ServiceEntries and DestinationRules"
    );
    let (status, reason, _) = condition(&s, "small", "ServicesImported");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Succeeded"));
    let (status, reason, message) = condition(&s, "large", "ServicesImported");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "LimitExceeded")
    );
    assert!(
        message.contains("Its 10 services, counted as ")
            && message.contains("MAX_SERVICES_TOTAL=200")
            && message.contains("share of 100"),
        "{message}"
    );
}

/// A ServiceEntry endpoint carries at most 128 ports (Istio's CRD): a peer's service with more
/// keeps its first 128 and says so, and two federations merging one host past it keep the 128
/// lowest. Every object written passes the CRD schema (`run` checks), so no refused patch
/// stops the run for the other federations.
#[test]
fn a_service_keeps_at_most_the_ports_a_service_entry_can_carry() {
    let ports = |from: u16, n: u16| -> Vec<Value> {
        (from..from + n)
            .map(|p| json!({"name": format!("tcp-{p}"), "port": p, "protocol": "TCP"}))
            .collect()
    };
    let with = |name: &str, td: &str, services: Vec<Value>| {
        let mut f = federation(name, td, &[&cert("peer-b-root")]);
        f["status"]["metadataCache"]["private"] = json!({
            "ingressGateways": [{"address": "198.51.100.7", "port": 15443}],
            "publicServices": services});
        f["status"]["metadataCache"]["privateLastFetchTimestamp"] = json!(common::NOW);
        f
    };
    let mut s = store(
        vec![
            with(
                "wide",
                "wide.local",
                vec![json!({"hostname": "many.prod.svc.wide.local", "ports": ports(10000, 200)})],
            ),
            with(
                "shared-1",
                "shared.local",
                vec![
                    json!({"hostname": "merged.prod.svc.shared.local", "ports": ports(20000, 100)}),
                ],
            ),
            with(
                "shared-2",
                "shared.local",
                vec![
                    json!({"hostname": "merged.prod.svc.shared.local", "ports": ports(20100, 100)}),
                ],
            ),
        ],
        mesh_config("", &[], ""),
    );
    let r = run_hook(
        &s.binding_context("refresh_remote_metadata").to_string(),
        &base_env(),
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("72 port(s) on merged.prod.svc.shared.local above the 128 lowest dropped"),
        "{}",
        r.stderr
    );
    run(&mut s, &base_env());
    let ports_of = |host: &str| -> Vec<u64> {
        s.all("ServiceEntry")
            .iter()
            .filter(|o| o["spec"]["hosts"][0] == host)
            .flat_map(|o| o["spec"]["ports"].as_array().cloned().unwrap_or_default())
            .map(|p| p["number"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        ports_of("many.prod.svc.wide.local"),
        (10000..10128).collect::<Vec<u64>>()
    );
    assert_eq!(
        ports_of("merged.prod.svc.shared.local"),
        (20000..20128).collect::<Vec<u64>>()
    );
    let (_, _, message) = condition(&s, "wide", "ServicesImported");
    assert!(
        message.contains("72 port(s) after the first 128 dropped: a ServiceEntry endpoint carries at most 128 ports"),
        "{message}"
    );
}
