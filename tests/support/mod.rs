//! Shared helpers for the network tests and the fetch bench: key material ([`pki`]), an HTTPS
//! test server ([`server`]) and a simulated peer cluster ([`Peer`]) that serves Deckhouse's
//! `public.json` and `federation.json` and checks tokens like Deckhouse's exporter.
//!
//! Not every helper is used by every test binary.
#![allow(dead_code)]

pub mod mount;
pub mod nginx;
pub mod odd_roots;
pub mod pki;
pub mod proxy;
pub mod server;

use istio_federation_hook::hook::settings::Settings;
use istio_federation_hook::protocol::federation::Federation;
use pki::{Ca, SigningKeys};
use serde_json::{json, Value};
use server::{JwtCheck, Route, TlsServer};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The own cluster of every test.
pub const OWN_UUID: &str = "deadbeef-mycluster";
pub const OWN_DOMAIN: &str = "my.cluster";
pub const PUBLIC_PATH: &str = "/metadata/public/public.json";
pub const PRIVATE_PATH: &str = "/metadata/private/federation.json";

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Settings as a hook run would load them, with extra environment variables.
pub fn settings(extra_env: &[(&str, &str)]) -> Settings {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("ISTIO_FEDERATION_ENABLED".into(), "true".into());
    env.insert("CLUSTER_DOMAIN".into(), OWN_DOMAIN.into());
    env.insert("CLUSTER_UUID".into(), OWN_UUID.into());
    for (k, v) in extra_env {
        env.insert((*k).into(), (*v).into());
    }
    Settings::load(None, &|name: &str| env.get(name).cloned()).expect("test settings load")
}

/// An IstioFederation parsed by the product's own parser. `metadata` goes to `spec.metadata`,
/// `cached_public` to `status.metadataCache.public`.
pub fn federation(
    name: &str,
    trust_domain: &str,
    endpoint: &str,
    metadata: Option<Value>,
    cached_public: Option<Value>,
) -> Federation {
    let mut obj = json!({
        "apiVersion": "deckhouse.io/v1alpha1",
        "kind": "IstioFederation",
        "metadata": {"name": name},
        "spec": {"trustDomain": trust_domain, "metadataEndpoint": endpoint},
    });
    if let Some(m) = metadata {
        obj["spec"]["metadata"] = m;
    }
    if let Some(p) = cached_public {
        obj["status"] = json!({"metadataCache": {"public": p}});
    }
    Federation::parse(&obj).expect("test federation parses")
}

/// `{"clusterUUID", "authnKeyPub", "rootCA"}` as Deckhouse's exporter renders it.
pub fn public_json(uuid: &str, authn_key_pub: &str, root_ca: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "clusterUUID": uuid,
        "authnKeyPub": authn_key_pub,
        "rootCA": root_ca,
    }))
    .expect("json")
}

/// One gateway, one service `web.prod.svc.<trust_domain>` with port http/8080.
pub fn simple_private_json(trust_domain: &str, gateway: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "ingressGateways": [{"address": gateway, "port": 15443}],
        "publicServices": [
            {"hostname": format!("web.prod.svc.{trust_domain}"), "ports": [{"name": "http", "port": 8080}]}
        ]
    }))
    .expect("json")
}

/// A peer cluster: its metadata server, identity and documents. The private endpoint knows our
/// public key under [`OWN_UUID`] (as if it had fetched our public metadata) and demands a valid
/// token, like Deckhouse's exporter.
pub struct Peer {
    pub server: TlsServer,
    pub uuid: String,
    pub trust_domain: String,
    pub keys: SigningKeys,
    pub root_pem: String,
    pub public_body: String,
    pub private_body: String,
}

impl Peer {
    pub fn start(ca: &Ca, uuid: &str, trust_domain: &str, own_keys: &SigningKeys) -> Peer {
        Peer::start_on(
            TlsServer::start(&ca.server_identity()),
            uuid,
            trust_domain,
            own_keys,
        )
    }

    pub fn start_on(
        server: TlsServer,
        uuid: &str,
        trust_domain: &str,
        own_keys: &SigningKeys,
    ) -> Peer {
        let keys = SigningKeys::generate();
        let root_pem = pki::valid_root_pem(&format!("root of {trust_domain}"));
        let public_body = public_json(uuid, &keys.public_pem, &root_pem);
        let private_body = simple_private_json(trust_domain, "198.51.100.7");
        let peer = Peer {
            server,
            uuid: uuid.to_string(),
            trust_domain: trust_domain.to_string(),
            keys,
            root_pem,
            public_body,
            private_body,
        };
        peer.serve_public(Route::ok(peer.public_body.clone()));
        peer.serve_private(Route::ok(peer.private_body.clone()), own_keys);
        peer
    }

    pub fn jwt_check(&self, own_keys: &SigningKeys) -> JwtCheck {
        JwtCheck {
            own_uuid: self.uuid.clone(),
            peers: BTreeMap::from([(OWN_UUID.to_string(), own_keys.public_raw)]),
        }
    }

    pub fn serve_public(&self, route: Route) {
        self.server.route(PUBLIC_PATH, route);
    }

    /// Serves `route` on the private path behind the exporter's token check.
    pub fn serve_private(&self, route: Route, own_keys: &SigningKeys) {
        let check = self.jwt_check(own_keys);
        self.server.route(PRIVATE_PATH, route.with_jwt(check));
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    pub fn public_url(&self) -> String {
        self.server.url(PUBLIC_PATH)
    }

    pub fn private_url(&self) -> String {
        self.server.url(PRIVATE_PATH)
    }

    /// A federation pointing at this peer, trusting `ca` for its endpoint.
    pub fn federation(&self, name: &str, ca: &Ca) -> Federation {
        federation(
            name,
            &self.trust_domain,
            &self.endpoint(),
            Some(json!({"clusterCA": ca.cert_pem})),
            None,
        )
    }
}

/// Bounded wait used by tests that must not hang forever.
pub fn generous(d: Duration) -> Duration {
    d + Duration::from_secs(1)
}
