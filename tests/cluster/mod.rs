//! A simulated cluster for end-to-end runs (the two-cluster test and `make demo`): an
//! in-memory object store standing in for the API server, its own Istio root, trust domain and
//! UUID, a `serve` process over TLS answering from the metadata Secret mounted the way kubelet
//! mounts Secrets, and the export and discovery hooks run through the real binary with their
//! patches applied to the store.
#![allow(dead_code)]

use crate::common::{bin, check_operations, ndjson, run_hook_with, snapshot_items, Store};
use crate::support::pki::{self, Ca};
use serde_json::{json, Value};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub name: &'static str,
    pub uuid: String,
    pub domain: String,
    pub gateway_ip: String,
    pub root_pem: String,
    pub store: Store,
    pub metadata_dir: tempfile::TempDir,
    pub serve: Option<Child>,
    pub port: u16,
    pub endpoint_ca: Ca,
    pub generation: u32,
    /// Set after the defaults of [`Cluster::env`] (later wins): e.g. a pinned
    /// `ISTIO_FEDERATION_HOOK_NOW` or `ROOT_RETENTION` for the rotation test.
    pub env_overrides: Vec<(String, String)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut c) = self.serve.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn all(store: &Store) -> impl Iterator<Item = &Value> {
    store.objects.values().flatten()
}

fn labelled<'a>(o: &'a Value, k: &str) -> Option<&'a str> {
    o["metadata"]["labels"][k].as_str()
}

fn snapshot(store: &Store, pred: impl Fn(&Value) -> bool) -> Value {
    snapshot_items(all(store).filter(|o| pred(o)).collect())
}

fn is(o: &Value, kind: &str, ns: &str, name: &str) -> bool {
    o["kind"] == kind
        && o["metadata"]["namespace"].as_str().unwrap_or("") == ns
        && o["metadata"]["name"] == name
}

pub fn discovery_context(store: &Store) -> Value {
    json!([{"binding": "refresh_remote_metadata", "type": "Group", "groupName": "istio_federation", "snapshots": {
        "federations": snapshot(store, |o| o["kind"] == "IstioFederation"),
        "authn_keypair": snapshot(store, |o| is(o, "Secret", "d8-istio", "d8-remote-authn-keypair")),
        "trust_bundle": snapshot(store, |o| is(o, "ConfigMap", "d8-istio", "istio")),
        "local_root_ca": snapshot(store, |o| is(o, "ConfigMap", "d8-istio", "istio-ca-root-cert")),
        "service_entries": snapshot(store, |o| o["kind"] == "ServiceEntry" && labelled(o, "app.kubernetes.io/managed-by") == Some("istio-federation-hook")),
        "destination_rules": snapshot(store, |o| o["kind"] == "DestinationRule" && labelled(o, "app.kubernetes.io/managed-by") == Some("istio-federation-hook")),
    }}])
}

pub fn export_context(store: &Store) -> Value {
    json!([{"binding": "public_services", "type": "Group", "groupName": "istio_federation_export", "snapshots": {
        "public_services": snapshot(store, |o| o["kind"] == "Service" && labelled(o, "federation.istio.deckhouse.io/public-service").is_some()),
        "ingress_gateways": snapshot(store, |o| o["kind"] == "Service" && o["metadata"]["namespace"] == "d8-istio" && labelled(o, "app") == Some("ingressgateway")),
        "advertise": snapshot(store, |o| is(o, "ConfigMap", "d8-istio", "metadata-exporter-ingressgateway-advertise")),
        "local_root_ca": snapshot(store, |o| is(o, "ConfigMap", "d8-istio", "istio-ca-root-cert")),
        "authn_keypair": snapshot(store, |o| is(o, "Secret", "d8-istio", "d8-remote-authn-keypair")),
        "federations": snapshot(store, |o| o["kind"] == "IstioFederation"),
        "metadata_secret": snapshot(store, |o| is(o, "Secret", "d8-istio", "istio-federation-metadata")),
    }}])
}

impl Cluster {
    pub fn new(name: &'static str, domain: &str, gateway_ip: &str, exported: &str) -> Cluster {
        let root_pem = pki::valid_root_pem(&format!("{name} Istio root"));
        let mut store = Store::default();
        store.objects.insert(
            "seed".into(),
            vec![
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio-ca-root-cert", "namespace": "d8-istio"},
                       "data": {"root-cert.pem": root_pem}}),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "d8-istio"},
                       "data": {"mesh": format!("trustDomain: {domain}\ndefaultConfig:\n  proxyMetadata:\n    PROXY_CONFIG_XDS_AGENT: \"true\"\n")}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ingressgateway", "namespace": "d8-istio", "labels": {"app": "ingressgateway"}},
                       "spec": {"type": "LoadBalancer", "ports": [{"name": "tls", "port": 15443}]},
                       "status": {"loadBalancer": {"ingress": [{"ip": gateway_ip}]}}}),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": exported, "namespace": "prod",
                       "labels": {"federation.istio.deckhouse.io/public-service": ""}},
                       "spec": {"ports": [{"name": "http", "port": 8080}, {"name": "grpc-api", "port": 9090}]}}),
            ],
        );
        let endpoint_ca = Ca::new(&format!("{name} metadata endpoint CA"));
        Cluster {
            name,
            uuid: format!("uuid-{name}"),
            domain: domain.to_string(),
            gateway_ip: gateway_ip.to_string(),
            root_pem,
            store,
            metadata_dir: tempfile::tempdir().expect("tempdir"),
            serve: None,
            port: free_port(),
            endpoint_ca,
            generation: 0,
            env_overrides: Vec::new(),
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("ISTIO_FEDERATION_ENABLED", "true"),
            ("CLUSTER_DOMAIN", self.domain.as_str()),
            ("CLUSTER_UUID", self.uuid.as_str()),
            ("FETCH_DEADLINE", "10s"),
            // The real clock: these clusters talk to each other for real.
            ("ISTIO_FEDERATION_HOOK_NOW", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(self.env_overrides.iter().cloned())
        .collect()
    }

    /// Replaces `root-cert.pem` of ConfigMap istio-ca-root-cert, as istiod does when its CA
    /// root changes.
    pub fn set_local_root(&mut self, pem: &str) {
        let cm = self
            .store
            .objects
            .values_mut()
            .flatten()
            .find(|o| is(o, "ConfigMap", "d8-istio", "istio-ca-root-cert"))
            .expect("istio-ca-root-cert");
        cm["data"]["root-cert.pem"] = Value::String(pem.to_string());
    }

    pub fn federate_with(&mut self, other: &Cluster) {
        let fed = json!({"apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation", "metadata": {"name": other.name},
            "spec": {"trustDomain": other.domain, "metadataEndpoint": format!("https://127.0.0.1:{}/metadata/", other.port),
                     "metadata": {"clusterCA": other.endpoint_ca.cert_pem}}});
        self.store
            .objects
            .entry("seed".into())
            .or_default()
            .push(fed);
    }

    pub fn start_serve(&mut self) {
        let id = self.endpoint_ca.server_identity();
        let cert = self
            .metadata_dir
            .path()
            .parent()
            .expect("tmp")
            .join(format!("{}-{}-cert.pem", self.name, self.port));
        let key = self
            .metadata_dir
            .path()
            .parent()
            .expect("tmp")
            .join(format!("{}-{}-key.pem", self.name, self.port));
        std::fs::write(&cert, &id.cert_pem).expect("cert");
        std::fs::write(&key, &id.key_pem).expect("key");
        let child = Command::new(bin())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--metadata-dir",
            ])
            .arg(self.metadata_dir.path())
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .env_clear()
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start serve");
        self.serve = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "serve did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Mounts Secret istio-federation-metadata like kubelet: a new timestamped directory,
    /// `..data` swapped to it atomically, one symlink per key.
    pub fn remount(&mut self) {
        let Some(secret) = all(&self.store)
            .find(|o| is(o, "Secret", "d8-istio", "istio-federation-metadata"))
            .cloned()
        else {
            return;
        };
        self.generation += 1;
        let data = secret["data"].as_object().cloned().unwrap_or_default();
        crate::support::mount::mount(self.metadata_dir.path(), &data, self.generation.into());
    }

    /// Runs the hook, applies its patches to the store and returns them.
    pub fn run(&mut self, args: &[&str], ctx: Value) -> Vec<Value> {
        let r = run_hook_with(args, &ctx.to_string(), &self.env(), None);
        assert_eq!(r.code, 0, "{} {:?} failed: {}", self.name, args, r.stderr);
        let ops = ndjson(&r.patches);
        let problems = check_operations(&ops);
        assert!(problems.is_empty(), "{problems:?}");
        self.store.apply(&ops);
        ops
    }

    pub fn export(&mut self) -> Vec<Value> {
        let ctx = export_context(&self.store);
        let n = self.run(&["export"], ctx);
        self.remount();
        n
    }

    pub fn discover(&mut self) -> Vec<Value> {
        let ctx = discovery_context(&self.store);
        self.run(&[], ctx)
    }

    pub fn imports(&self, other: &Cluster, host: &str) -> bool {
        all(&self.store).any(|o| {
            o["kind"] == "ServiceEntry"
                && o["spec"]["hosts"] == json!([host])
                && o["spec"]["endpoints"] == json!([{"address": other.gateway_ip, "ports": {"http": 15443, "grpc-api": 15443},
                                                     "labels": {"security.istio.io/tlsMode": "istio"}}])
        })
    }

    pub fn trusts(&self, other: &Cluster) -> bool {
        let Some(cm) = all(&self.store).find(|o| is(o, "ConfigMap", "d8-istio", "istio")) else {
            return false;
        };
        let mesh: Value = serde_saphyr::from_str(cm["data"]["mesh"].as_str().unwrap_or(""))
            .unwrap_or(Value::Null);
        mesh["caCertificates"].as_array().is_some_and(|l| {
            l.iter().any(|e| {
                e["pem"] == other.root_pem.as_str() && e["trustDomains"] == json!([other.domain])
            })
        })
    }
}
