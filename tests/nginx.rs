//! The fetch phase against a real web server: nginx (Debian `nginx-light`) serving Deckhouse's
//! metadata files over TLS with a certificate from a test CA, on a free loopback port, with
//! its own configuration under a temporary directory (tests/support/nginx.rs). This checks
//! what the in-process test server cannot: that a production HTTP stack (its framing, headers,
//! TLS) and our client agree.
//!
//! nginx is required: CI installs `nginx-light`; locally run `apt-get install -y nginx-light`.

mod support;

use istio_federation_hook::discovery::network::fetch::fetch_all;
use istio_federation_hook::protocol::metadata::{Gateway, Own};
use support::nginx::{deckhouse_layout, start_nginx};
use support::pki::{self, Ca, SigningKeys};
use support::{public_json, settings, simple_private_json, unix_now, OWN_UUID};

#[test]
fn fetches_and_validates_metadata_served_by_nginx() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca = Ca::new("nginx test CA");
    let identity = ca.server_identity();

    let peer_keys = SigningKeys::generate();
    let root = pki::valid_root_pem("nginx peer root");
    let public = public_json("peer-nginx", &peer_keys.public_pem, &root);
    let private = simple_private_json("nginx.local", "203.0.113.10");
    deckhouse_layout(
        dir,
        &identity.cert_pem,
        &identity.key_pem,
        &public,
        &private,
    );

    let nginx = start_nginx(dir);
    let endpoint = nginx.endpoint();
    let fed = support::federation(
        "nginx",
        "nginx.local",
        &endpoint,
        Some(serde_json::json!({"clusterCA": ca.cert_pem})),
        None,
    );
    let own_keys = SigningKeys::generate();
    let now = unix_now();
    let own = Own {
        cluster_uuid: OWN_UUID,
        root_fingerprints: &[],
        now,
    };
    let out = fetch_all(
        &settings(&[]),
        &[fed],
        Some(&own_keys.private_pem),
        &own,
        now,
    );

    let r = &out["nginx"];
    let p = match &r.public.as_ref().expect("public attempted").result {
        Ok(p) => p,
        Err(f) => panic!(
            "public: {} {}\nnginx: {}",
            f.reason,
            f.message,
            nginx.error_log()
        ),
    };
    assert_eq!(p.cluster_uuid, "peer-nginx");
    assert_eq!(p.authn_key_pub, peer_keys.public_pem);
    assert_eq!(p.roots.len(), 1);
    assert_eq!(p.roots[0].pem, root);
    let m = match &r.private.as_ref().expect("private attempted").result {
        Ok(m) => m,
        Err(f) => panic!(
            "private: {} {}\nnginx: {}",
            f.reason,
            f.message,
            nginx.error_log()
        ),
    };
    assert_eq!(
        m.ingress_gateways,
        vec![Gateway {
            address: "203.0.113.10".into(),
            port: 15443
        }]
    );
    assert_eq!(m.public_services.len(), 1);
    assert_eq!(m.public_services[0].hostname, "web.prod.svc.nginx.local");
    assert_eq!(m.public_services[0].ports[0].port, 8080);

    // nginx's own record of the two requests.
    let log = nginx.access_log();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let ua = format!("istio-federation-hook/{}", env!("CARGO_PKG_VERSION"));
    assert!(
        lines[0].starts_with("/metadata/public/public.json auth=\"-\""),
        "{log}"
    );
    assert!(
        lines[1].starts_with("/metadata/private/federation.json auth=\"Bearer ey"),
        "{log}"
    );
    for line in &lines {
        assert!(line.contains(&format!("ua=\"{ua}\"")), "{log}");
        assert!(line.ends_with("status=200"), "{log}");
    }
}
