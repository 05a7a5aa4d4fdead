//! Per-peer visibility end to end (docs/sharing.md): Services annotated
//! `federation.istio.deckhouse.io/export-to`, the export hook run through the real binary, its
//! Secret mounted the way kubelet mounts it, and the real `serve` over TLS answering each peer
//! with its own view.
//!
//! - three clusters through export + serve + discovery: A exports one service to B only and
//!   one to C only; C signs its requests with Deckhouse's fixture key, and a token signed with
//!   ring in Deckhouse's claim order sees C's view;
//! - one cluster and five peers: every peer × every service, byte-for-byte `federation.json`
//!   for the peer nothing is hidden from, and failing closed when the visibility file is
//!   broken or does not match `federation.json`.

mod cluster;
mod common;
mod support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use cluster::Cluster;
use istio_federation_hook::protocol::{certs, jwt};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const EXPORT_TO: &str = "federation.istio.deckhouse.io/export-to";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(common::root().join("testdata/certs").join(name)).unwrap()
}

/// Body of the first PEM block, decoded here without the product's PEM code.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD.decode(body).unwrap()
}

/// A token as Deckhouse signs it: `{"alg":"EdDSA"}`, the claims in Go's (alphabetical) map
/// order, Ed25519 with ring directly.
fn deckhouse_token(key: &Ed25519KeyPair, sub: &str, aud: &str) -> String {
    let t = now();
    let payload = format!(
        r#"{{"aud":"{aud}","exp":{},"iss":"d8-istio","nbf":{t},"scope":"private-federation","sub":"{sub}"}}"#,
        t + 60
    );
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA"}"#),
        URL_SAFE_NO_PAD.encode(payload.as_bytes())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn add_service(c: &mut Cluster, name: &str, export_to: Option<&str>) {
    let mut metadata = json!({"name": name, "namespace": "prod",
        "labels": {"federation.istio.deckhouse.io/public-service": ""}});
    if let Some(v) = export_to {
        metadata["annotations"] = json!({ EXPORT_TO: v });
    }
    c.store
        .objects
        .entry("seed".into())
        .or_default()
        .push(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": metadata,
            "spec": {"ports": [{"name": "http", "port": 8080}, {"name": "grpc-api", "port": 9090}]},
        }));
}

/// `GET /metadata/private/federation.json` from `server` with `token`: status and body.
fn fetch_private(server: &Cluster, token: &str) -> (u16, Vec<u8>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(server.endpoint_ca.cert_pem.as_bytes()).unwrap(),
        ])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "https://127.0.0.1:{}/metadata/private/federation.json",
            server.port
        ))
        .bearer_auth(token)
        .send()
        .expect("request");
    (r.status().as_u16(), r.bytes().expect("body").to_vec())
}

fn hostnames(body: &[u8]) -> BTreeSet<String> {
    let doc: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(body));
    });
    doc["publicServices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["hostname"].as_str().unwrap().to_string())
        .collect()
}

/// A key of the cluster's metadata Secret, decoded.
fn secret_file(c: &Cluster, key: &str) -> Option<Vec<u8>> {
    let s = c
        .store
        .get("Secret", "d8-istio", "istio-federation-metadata")?;
    Some(STANDARD.decode(s["data"][key].as_str()?).unwrap())
}

fn set_secret_file(c: &mut Cluster, key: &str, content: Option<&[u8]>) {
    for objs in c.store.objects.values_mut() {
        for o in objs.iter_mut() {
            if o["kind"] == "Secret" && o["metadata"]["name"] == "istio-federation-metadata" {
                let data = o["data"].as_object_mut().unwrap();
                match content {
                    Some(bytes) => {
                        data.insert(key.into(), Value::String(STANDARD.encode(bytes)));
                    }
                    None => {
                        data.remove(key);
                    }
                }
            }
        }
    }
    c.remount();
}

/// Every ServiceEntry host the cluster imported.
fn imported(c: &Cluster) -> BTreeSet<String> {
    c.store
        .all("ServiceEntry")
        .iter()
        .flat_map(|se| se["spec"]["hosts"].as_array().cloned().unwrap_or_default())
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn three_clusters_a_exports_one_service_to_b_only_and_one_to_c_only() {
    let mut a = Cluster::new("cluster-a", "cluster-a.local", "198.51.100.1", "web");
    add_service(&mut a, "only-b", Some("cluster-b.local"));
    add_service(&mut a, "only-c", Some(" CLUSTER-C.local "));
    let mut b = Cluster::new("cluster-b", "cluster-b.local", "198.51.100.2", "api");
    let mut c = Cluster::new("cluster-c", "cluster-c.local", "198.51.100.3", "pay");
    // C holds Deckhouse's fixture key pair (Deckhouse's PEM labels), as a Deckhouse cluster
    // would: the key its requests to A are signed with.
    c.store
        .objects
        .entry("seed".into())
        .or_default()
        .push(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "d8-remote-authn-keypair", "namespace": "d8-istio"},
            "data": {"priv.pem": STANDARD.encode(fixture("deckhouse-fixture-priv.pem")),
                     "pub.pem": STANDARD.encode(fixture("deckhouse-fixture-pub.pem"))},
        }));
    a.federate_with(&b);
    a.federate_with(&c);
    b.federate_with(&a);
    c.federate_with(&a);
    a.start_serve();
    b.start_serve();
    c.start_serve();

    let host = |name: &str| format!("{name}.prod.svc.cluster-a.local");
    let mut converged = None;
    for round in 1..=6 {
        for x in [&mut a, &mut b, &mut c] {
            x.export();
        }
        for x in [&mut a, &mut b, &mut c] {
            x.discover();
        }
        let done = b.imports(&a, &host("web"))
            && b.imports(&a, &host("only-b"))
            && c.imports(&a, &host("web"))
            && c.imports(&a, &host("only-c"))
            && a.imports(&b, "api.prod.svc.cluster-b.local")
            && a.imports(&c, "pay.prod.svc.cluster-c.local");
        if done {
            converged = Some(round);
            break;
        }
    }
    assert!(
        converged.is_some_and(|r| r <= 3),
        "did not converge in 3 rounds: B {:?}, C {:?}, A {:#?}",
        imported(&b),
        imported(&c),
        a.store.all("ServiceEntry")
    );
    // Each peer imported exactly what A exports to it, nothing of the other's.
    assert_eq!(
        imported(&b),
        set(&[&host("web"), &host("only-b")]),
        "B's imports"
    );
    assert_eq!(
        imported(&c),
        set(&[&host("web"), &host("only-c")]),
        "C's imports"
    );

    // A's Secret: federation.json is the complete document, the visibility file names UUIDs.
    let federation = secret_file(&a, "federation.json").expect("federation.json");
    assert_eq!(
        hostnames(&federation),
        set(&[&host("only-b"), &host("only-c"), &host("web")])
    );
    let vis: Value =
        serde_json::from_slice(&secret_file(&a, "federation-visibility.json").expect("visibility"))
            .unwrap();
    assert_eq!(
        vis["restrictedServices"],
        json!({host("only-b"): [b.uuid], host("only-c"): [c.uuid]})
    );

    // A token signed as Deckhouse signs it, with C's (Deckhouse's fixture) key: C's view, with
    // A's gateways.
    let fixture_key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem_der(&fixture(
        "deckhouse-fixture-priv.pem",
    )))
    .unwrap();
    assert_eq!(
        &pem_der(&fixture("deckhouse-fixture-pub.pem"))[12..],
        fixture_key.public_key().as_ref()
    );
    let (status, body) = fetch_private(&a, &deckhouse_token(&fixture_key, &c.uuid, &a.uuid));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(hostnames(&body), set(&[&host("only-c"), &host("web")]));
    let view: Value = serde_json::from_slice(&body).unwrap();
    let full: Value = serde_json::from_slice(&federation).unwrap();
    assert_eq!(view["ingressGateways"], full["ingressGateways"]);
    assert_eq!(
        view["ingressGateways"],
        json!([{"address": "198.51.100.1", "port": 15443}])
    );
    // The same key presenting itself as B is refused: the view is tied to the signature.
    let (status, _) = fetch_private(&a, &deckhouse_token(&fixture_key, &b.uuid, &a.uuid));
    assert_eq!(status, 401);

    // Steady state: another full round changes nothing anywhere.
    let mut rest = Vec::new();
    for x in [&mut a, &mut b, &mut c] {
        rest.extend(x.export());
    }
    for x in [&mut a, &mut b, &mut c] {
        rest.extend(x.discover());
    }
    assert!(rest.is_empty(), "not at rest: {rest:?}");
}

/// A peer of the single-cluster test: its UUID, trust domain and signing key.
struct Peer {
    uuid: String,
    domain: String,
    key: Ed25519KeyPair,
}

fn peer(name: &str) -> (Peer, Value) {
    let (priv_pem, pub_pem) = certs::generate_ed25519_pem().unwrap();
    let p = Peer {
        uuid: format!("uuid-{name}"),
        domain: format!("{name}.local"),
        key: certs::parse_ed25519_private_pem(&priv_pem).unwrap(),
    };
    let fed = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation",
        "metadata": {"name": name},
        "spec": {"trustDomain": p.domain, "metadataEndpoint": format!("https://{name}.example/metadata/")},
        "status": {"metadataCache": {"public": {"clusterUUID": p.uuid, "authnKeyPub": pub_pem,
            "rootCA": support::pki::valid_root_pem(&format!("{name} root"))}}}});
    (p, fed)
}

#[test]
fn every_peer_sees_exactly_the_services_exported_to_it_and_broken_files_fail_closed() {
    let mut a = Cluster::new("cluster-a", "cluster-a.local", "198.51.100.1", "open");
    let names = ["p1", "p2", "p3", "p4", "pall"];
    let mut peers = Vec::new();
    for n in names {
        let (p, fed) = peer(n);
        a.store.objects.entry("seed".into()).or_default().push(fed);
        peers.push(p);
    }
    // Service → its export-to value (None: every peer).
    let services: [(&str, Option<&str>); 6] = [
        ("open", None),
        ("to-p1", Some("p1.local, pall.local")),
        ("to-p1-p2", Some("P1.local,p2.local ,pall.local")),
        ("to-p3", Some("pall.local,p3.local")),
        ("to-nobody", Some("unknown.example")),
        ("to-empty", Some("")),
    ];
    for (name, export_to) in services.iter().skip(1) {
        add_service(&mut a, name, *export_to);
    }
    a.start_serve();
    assert!(!a.export().is_empty());
    let federation = secret_file(&a, "federation.json").expect("federation.json");
    let host = |name: &str| format!("{name}.prod.svc.cluster-a.local");
    let own_uuid = a.uuid.clone();
    let token = |p: &Peer| {
        jwt::sign(
            &p.key,
            &jwt::Claims::private_federation(&p.uuid, &own_uuid, now()),
        )
    };

    // Every peer × every service, the expectation computed here from the annotation text.
    let allowed = |p: &Peer, export_to: Option<&str>| {
        export_to.is_none_or(|v| {
            v.split(',')
                .any(|td| td.trim().eq_ignore_ascii_case(&p.domain))
        })
    };
    let check_views = |a: &Cluster| {
        for p in &peers {
            let (status, body) = fetch_private(a, &token(p));
            assert_eq!(
                status,
                200,
                "{}: {}",
                p.uuid,
                String::from_utf8_lossy(&body)
            );
            let seen = hostnames(&body);
            for (name, export_to) in &services {
                assert_eq!(
                    seen.contains(&host(name)),
                    allowed(p, *export_to),
                    "peer {} × service {name}: saw {seen:?}",
                    p.uuid
                );
            }
            let full: Value = serde_json::from_slice(&federation).unwrap();
            let view: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(view["ingressGateways"], full["ingressGateways"]);
            if p.uuid == "uuid-pall" {
                // Nothing restricted is hidden from pall but the two services nobody gets.
                assert_eq!(seen.len(), 4);
            }
        }
    };
    check_views(&a);

    // Lift the two services nobody may see: pall now has nothing hidden and gets
    // federation.json byte for byte.
    a.store.objects.get_mut("seed").unwrap().retain(|o| {
        !(o["kind"] == "Service"
            && matches!(
                o["metadata"]["name"].as_str(),
                Some("to-nobody" | "to-empty")
            ))
    });
    assert!(!a.export().is_empty());
    let federation = secret_file(&a, "federation.json").unwrap();
    let pall = peers.iter().find(|p| p.uuid == "uuid-pall").unwrap();
    let (status, body) = fetch_private(&a, &token(pall));
    assert_eq!(status, 200);
    assert_eq!(body, federation, "pall must get federation.json as it is");
    let p4 = peers.iter().find(|p| p.uuid == "uuid-p4").unwrap();
    assert_eq!(
        hostnames(&fetch_private(&a, &token(p4)).1),
        set(&[&host("open")])
    );

    // Fail closed: a broken visibility file, or one written for another federation.json,
    // withholds private metadata from every peer (503), never the complete document.
    let visibility = secret_file(&a, "federation-visibility.json").unwrap();
    let broken: [(&str, Vec<u8>); 3] = [
        ("federation-visibility.json", b"{not json".to_vec()),
        (
            "federation-visibility.json",
            br#"{"restrictedServices": {}}"#.to_vec(),
        ),
        ("federation.json", [federation.as_slice(), b" "].concat()),
    ];
    for (key, content) in &broken {
        set_secret_file(&mut a, key, Some(content));
        for p in &peers {
            let (status, body) = fetch_private(&a, &token(p));
            assert_eq!(
                status,
                503,
                "{key} broken, peer {}: {}",
                p.uuid,
                String::from_utf8_lossy(&body)
            );
            assert!(!String::from_utf8_lossy(&body).contains("to-p"));
        }
        // Picked up again after the next atomic swap.
        set_secret_file(&mut a, "federation.json", Some(&federation));
        set_secret_file(&mut a, "federation-visibility.json", Some(&visibility));
        assert_eq!(
            hostnames(&fetch_private(&a, &token(p4)).1),
            set(&[&host("open")])
        );
    }

    // Every restriction lifted: the file restricts nothing, every peer gets the complete
    // document.
    a.store
        .objects
        .get_mut("seed")
        .unwrap()
        .iter_mut()
        .filter(|o| o["kind"] == "Service")
        .for_each(|o| {
            if let Some(m) = o["metadata"].as_object_mut() {
                m.remove("annotations");
            }
        });
    assert!(!a.export().is_empty());
    let lifted: Value =
        serde_json::from_slice(&secret_file(&a, "federation-visibility.json").unwrap()).unwrap();
    assert_eq!(lifted["restrictedServices"], json!({}));
    let federation = secret_file(&a, "federation.json").unwrap();
    for p in &peers {
        let (status, body) = fetch_private(&a, &token(p));
        assert_eq!((status, &body), (200, &federation), "{}", p.uuid);
    }
}

type Files = std::collections::BTreeMap<String, Vec<u8>>;
/// Per peer (p1, p2), the services a version shows it; `None`: no private metadata.
type Views = [Option<BTreeSet<String>>; 2];

/// Every key of the cluster's metadata Secret, decoded.
fn secret_files(c: &Cluster) -> Files {
    let s = c
        .store
        .get("Secret", "d8-istio", "istio-federation-metadata")
        .expect("metadata Secret");
    s["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), STANDARD.decode(v.as_str().unwrap()).unwrap()))
        .collect()
}

/// One step of a writer that is not kubelet: one file written (whole, by rename) or deleted.
fn write_step(dir: &std::path::Path, key: &str, content: Option<&[u8]>) {
    match content {
        Some(bytes) => {
            let tmp = dir.join(format!(".{key}.tmp"));
            std::fs::write(&tmp, bytes).unwrap();
            std::fs::rename(&tmp, dir.join(key)).unwrap();
        }
        None => {
            let _ = std::fs::remove_file(dir.join(key));
        }
    }
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

/// docs/sharing.md: no order in which a writer other than kubelet writes and deletes the
/// Secret's files between two versions export wrote shows a peer a service hidden from it.
/// Versions: nothing restricted → a new service exported to p1 only → the restriction lifted →
/// federation disabled → enabled again with two services for p1 only. Every transition, every
/// order of its file writes and deletes, and every order of "clear the directory, then write
/// the new files"; after each step both peers ask `serve` (on a plain directory) and must get
/// the old version's view, the new one's, or nothing (401 while the directory has no peer keys,
/// 404 without `federation.json`, 503 withheld).
#[test]
fn no_file_by_file_update_shows_a_restricted_service() {
    let mut a = Cluster::new("cluster-a", "cluster-a.local", "198.51.100.1", "open");
    let mut peers = Vec::new();
    for n in ["p1", "p2"] {
        let (p, fed) = peer(n);
        a.store.objects.entry("seed".into()).or_default().push(fed);
        peers.push(p);
    }
    let host = |name: &str| format!("{name}.prod.svc.cluster-a.local");
    // Each version's files and, per peer, the services it may see (None: no private metadata).
    let mut versions: Vec<(&str, Files, Views)> = Vec::new();
    let open = || set(&[&host("open")]);
    a.export();
    versions.push((
        "nothing restricted",
        secret_files(&a),
        [Some(open()), Some(open())],
    ));
    add_service(&mut a, "secret", Some("p1.local"));
    a.export();
    let p1_secret = set(&[&host("open"), &host("secret")]);
    versions.push((
        "secret for p1 only",
        secret_files(&a),
        [Some(p1_secret.clone()), Some(open())],
    ));
    for o in a.store.objects.get_mut("seed").unwrap().iter_mut() {
        if o["metadata"]["name"] == "secret" {
            o["metadata"].as_object_mut().unwrap().remove("annotations");
        }
    }
    a.export();
    versions.push((
        "restriction lifted",
        secret_files(&a),
        [Some(p1_secret.clone()), Some(p1_secret.clone())],
    ));
    a.env_overrides
        .push(("ISTIO_FEDERATION_ENABLED".into(), "false".into()));
    a.export();
    versions.push(("federation disabled", secret_files(&a), [None, None]));
    a.env_overrides.clear();
    for o in a.store.objects.get_mut("seed").unwrap().iter_mut() {
        if o["metadata"]["name"] == "secret" {
            o["metadata"]["annotations"] = json!({ EXPORT_TO: "p1.local" });
        }
    }
    add_service(&mut a, "secret2", Some("p1.local"));
    a.export();
    versions.push((
        "enabled again, two services for p1 only",
        secret_files(&a),
        [
            Some(set(&[&host("open"), &host("secret"), &host("secret2")])),
            Some(open()),
        ],
    ));
    assert!(
        versions
            .iter()
            .all(|(_, f, _)| f.contains_key("federation-visibility.json")),
        "export writes the visibility file in every version"
    );

    // serve over a plain directory the test writes file by file.
    let mut obs = Cluster::new("observer", "observer.local", "198.51.100.2", "none");
    let dir = obs.metadata_dir.path().to_path_buf();
    for (k, v) in &versions[0].1 {
        write_step(&dir, k, Some(v));
    }
    obs.start_serve();
    let own_uuid = a.uuid.clone();
    let token = |p: &Peer| {
        jwt::sign(
            &p.key,
            &jwt::Claims::private_federation(&p.uuid, &own_uuid, now()),
        )
    };
    let mut checked = 0;
    let mut check = |what: &str, old: &Views, new: &Views| {
        for (i, p) in peers.iter().enumerate() {
            let (status, body) = fetch_private(&obs, &token(p));
            checked += 1;
            if matches!(status, 401 | 404 | 503) {
                continue;
            }
            assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&body));
            let seen = hostnames(&body);
            assert!(
                old[i].as_ref() == Some(&seen) || new[i].as_ref() == Some(&seen),
                "{what}: peer {} saw {seen:?}; the old version shows it {:?}, the new one {:?}",
                p.uuid,
                old[i],
                new[i]
            );
        }
    };
    check(versions[0].0, &versions[0].2, &versions[0].2);
    for pair in versions.windows(2) {
        let ((from, old, old_views), (to, new, new_views)) = (&pair[0], &pair[1]);
        let changes: Vec<(String, Option<Vec<u8>>)> = new
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .chain(
                old.keys()
                    .filter(|k| !new.contains_key(*k))
                    .map(|k| (k.clone(), None)),
            )
            .collect();
        let writes: Vec<(String, Option<Vec<u8>>)> = new
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        let clear: Vec<(String, Option<Vec<u8>>)> = old.keys().map(|k| (k.clone(), None)).collect();
        let orders = permutations(&changes).into_iter().chain(
            permutations(&writes)
                .into_iter()
                .map(|w| [clear.clone(), w].concat()),
        );
        for order in orders {
            // Back to the old version, whole.
            for k in old.keys().chain(new.keys()) {
                write_step(&dir, k, old.get(k).map(Vec::as_slice));
            }
            check(from, old_views, old_views);
            let mut done = Vec::new();
            for (k, v) in &order {
                write_step(&dir, k, v.as_deref());
                done.push(format!(
                    "{} {k}",
                    if v.is_some() { "write" } else { "delete" }
                ));
                check(
                    &format!("{from} -> {to}, after {}", done.join(", ")),
                    old_views,
                    new_views,
                );
            }
            check(&format!("{to}, complete"), new_views, new_views);
        }
    }
    assert!(checked > 100, "only {checked} requests checked");
}
