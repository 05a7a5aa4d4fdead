//! The export hook (docs/how-it-works.md, "Export: publishing our own metadata"): renders this
//! cluster's own metadata — what peers fetch — into Secret
//! `<FEDERATION_NAMESPACE>/istio-federation-metadata`, which `serve` mounts and answers from.
//! Formats are Deckhouse's metadata-exporter's, so a Deckhouse cluster can federate with us.
//!
//! Like discovery, a pure function of the snapshots: `main` generates a key pair when none
//! exists (randomness is I/O) and passes it in.

pub(crate) mod identity;
pub(crate) mod rotation;
pub mod run;
pub(crate) mod visibility;

use crate::hook::binding::BindingInput;
use crate::hook::k8s;
use crate::hook::operations::Operation;
use crate::hook::settings::{Settings, TrustBundleMode, CACERTS_SECRET, LOCAL_ROOT_CONFIGMAP};
use crate::protocol::certs;
use crate::protocol::claims;
use crate::protocol::federation::Federation;
use crate::protocol::labels::{
    self, ACKNOWLEDGE_CLUSTER_UUID_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    PUBLIC_SERVICE_LABEL,
};
use crate::protocol::metadata::Gateway;
use crate::protocol::names;
use crate::protocol::secret::{
    FEDERATION_JSON, KEYPAIR_SECRET, METADATA_SECRET, PUBLIC_JSON, REMOTE_PUBLIC_JSON,
    RETIRED_LOCAL_ROOTS_JSON, VISIBILITY_JSON,
};
use crate::protocol::text;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Deckhouse's name for the ConfigMap that overrides the advertised gateways.
pub(crate) const ADVERTISE_CONFIGMAP: &str = "metadata-exporter-ingressgateway-advertise";
pub(crate) const ADVERTISE_KEY: &str = "ingressgateways-array.json";

/// Binding names of the export hook.
pub mod bindings {
    pub(crate) const PUBLIC_SERVICES: &str = "public_services";
    pub(crate) const INGRESS_GATEWAYS: &str = "ingress_gateways";
    pub(crate) const ADVERTISE: &str = "advertise";
    pub(crate) const LOCAL_ROOT: &str = "local_root_ca";
    pub(crate) const KEYPAIR: &str = "authn_keypair";
    pub(crate) const FEDERATIONS: &str = "federations";
    pub const METADATA: &str = "metadata_secret";
    /// cacerts mode only: the plug-in CA Secret, for the peer roots discovery appended to it.
    pub(crate) const TRUST_BUNDLE: &str = "trust_bundle";
    /// Runs export every minute too: a retired root leaves `rootCA` when its retention ends
    /// even if nothing else changes (docs/rotation.md).
    pub(crate) const SCHEDULE: &str = "export_schedule";
    pub(crate) const GROUP: &str = "istio_federation_export";
    pub(crate) const QUEUE: &str = "istio-federation-export";
}

/// The export hook's shell-operator config.
pub(crate) fn config(s: &Settings) -> Value {
    use bindings::*;
    let in_ns = |ns: &str| json!({"nameSelector": {"matchNames": [ns]}});
    let named = |name: &str, kind: &str, ns: &str, names: &str, filter: &str| {
        json!({"name": name, "apiVersion": "v1", "kind": kind, "namespace": in_ns(ns),
            "nameSelector": {"matchNames": [names]}, "jqFilter": filter, "group": GROUP, "queue": QUEUE})
    };
    let mut kubernetes = json!([
            {"name": PUBLIC_SERVICES, "apiVersion": "v1", "kind": "Service",
             "labelSelector": {"matchLabels": {PUBLIC_SERVICE_LABEL: ""}},
             "jqFilter": "{labels: .metadata.labels, exportTo: .metadata.annotations[\"federation.istio.deckhouse.io/export-to\"], ports: .spec.ports}", "group": GROUP, "queue": QUEUE},
            {"name": INGRESS_GATEWAYS, "apiVersion": "v1", "kind": "Service", "namespace": in_ns(&s.istio_namespace),
             "labelSelector": {"matchLabels": {"app": "ingressgateway"}},
             "jqFilter": "{ports: .spec.ports, ingress: .status.loadBalancer.ingress}", "group": GROUP, "queue": QUEUE},
            named(ADVERTISE, "ConfigMap", &s.istio_namespace, ADVERTISE_CONFIGMAP, ".data"),
            named(LOCAL_ROOT, "ConfigMap", &s.istio_namespace, LOCAL_ROOT_CONFIGMAP, ".data"),
            named(KEYPAIR, "Secret", &s.federation_namespace, KEYPAIR_SECRET, ".data"),
            {"name": FEDERATIONS, "apiVersion": "deckhouse.io/v1alpha1", "kind": "IstioFederation",
             "jqFilter": "{trustDomain: .spec.trustDomain, public: .status.metadataCache.public}", "group": GROUP, "queue": QUEUE},
            // The acknowledgement of a changed own clusterUUID runs export at once.
            named(METADATA, "Secret", &s.federation_namespace, METADATA_SECRET,
                &format!("{{data: .data, acknowledge: .metadata.annotations[\"{ACKNOWLEDGE_CLUSTER_UUID_ANNOTATION}\"]}}")),
    ]);
    if s.trust_bundle_mode == TrustBundleMode::Cacerts {
        // Which roots in istio-ca-root-cert are peers' (the annotation only; not the CA key).
        let filter = "{annotations: .metadata.annotations}";
        let cacerts = named(
            TRUST_BUNDLE,
            "Secret",
            &s.istio_namespace,
            CACERTS_SECRET,
            filter,
        );
        if let Some(list) = kubernetes.as_array_mut() {
            list.push(cacerts);
        }
    }
    json!({
        "configVersion": "v1",
        "kubernetes": kubernetes,
        "schedule": [
            {"name": SCHEDULE, "crontab": s.hook_schedule, "group": GROUP, "queue": QUEUE}
        ],
        "settings": {"executionMinInterval": "3s", "executionBurst": 3},
    })
}

/// A freshly generated key pair (PEM), passed in by `main` when the cluster has none.
pub struct NewKeyPair {
    pub private_pem: String,
    pub public_pem: String,
}

/// What one export run emits.
#[derive(Debug, Default)]
pub struct Outcome {
    pub operations: Vec<Operation>,
    /// Metric operations: the group's expire, then the gauges ([`identity`]).
    pub metrics: Vec<Value>,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn unb64(v: Option<&Value>) -> Option<String> {
    text::unb64(v?.as_str()?).ok()
}

/// Whether the key-pair Secret exists; `main` generates a key only then.
pub(crate) fn needs_key_pair(input: &BindingInput) -> bool {
    input
        .snapshot(bindings::KEYPAIR)
        .is_some_and(|s| s.is_empty())
}

/// The public half of the key the cluster keeps (`pub.pem`), or of the one we are creating.
fn public_key(input: &BindingInput, new_key: Option<&NewKeyPair>) -> Option<String> {
    match input.snapshot(bindings::KEYPAIR).and_then(|s| s.first()) {
        Some(secret) => unb64(secret.get("data").and_then(|d| d.get("pub.pem"))),
        None => new_key.map(|k| k.public_pem.clone()),
    }
}

/// Gateways from the advertise ConfigMap: `Ok(None)` when there is no such ConfigMap.
fn advertised_gateways(input: &BindingInput) -> Result<Option<Vec<Gateway>>, String> {
    let Some(cm) = input.snapshot(bindings::ADVERTISE).and_then(|s| s.first()) else {
        return Ok(None);
    };
    let what = format!("ConfigMap {ADVERTISE_CONFIGMAP}");
    let raw = cm
        .get("data")
        .and_then(|d| d.get(ADVERTISE_KEY))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what} has no key {ADVERTISE_KEY}"))?;
    let list: Value = serde_json::from_str(raw)
        .map_err(|e| format!("{what} {ADVERTISE_KEY} is not JSON: {e}"))?;
    let items = list.as_array().ok_or_else(|| {
        format!("{what} {ADVERTISE_KEY} must be a JSON array of {{address, port}}")
    })?;
    let mut out = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let address = item
            .get("address")
            .and_then(Value::as_str)
            .map(|a| a.trim().to_ascii_lowercase());
        let port = item
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0);
        match (address, port) {
            (Some(a), Some(p)) => match names::check_gateway_address(&a) {
                Ok(()) => {
                    out.insert(Gateway { address: a, port: p });
                }
                // Peers drop such an address (docs/security.md): publishing it would only
                // hide that the list is wrong, so the list is refused like any invalid item.
                Err(refusal) => {
                    return Err(format!(
                        "{what} {ADVERTISE_KEY} item {}: address {a:?} {refusal}; peers would refuse it",
                        i + 1
                    ))
                }
            },
            _ => return Err(format!("{what} {ADVERTISE_KEY} item {}: needs an IP or DNS name address and a port 1-65535", i + 1)),
        }
    }
    Ok(Some(out.into_iter().collect()))
}

/// Gateways from LoadBalancer ingress-gateway Services: first ingress IP (else hostname) with
/// the Service port named `tls`. Services lacking either are skipped with a warning.
fn load_balancer_gateways(input: &BindingInput) -> Vec<Gateway> {
    let mut out = BTreeSet::new();
    for svc in input.snapshot(bindings::INGRESS_GATEWAYS).unwrap_or(&[]) {
        let name = format!(
            "{}/{}",
            k8s::namespace(svc).unwrap_or(""),
            k8s::name(svc).unwrap_or("")
        );
        let tls = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .and_then(|ports| {
                ports
                    .iter()
                    .find(|p| p.get("name").and_then(Value::as_str) == Some("tls"))
            })
            .and_then(|p| p.get("port")?.as_u64())
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = tls else {
            log::warn!(target: "export", "ingress gateway Service {name} has no port named tls; not advertised");
            continue;
        };
        let ingress = svc.pointer("/status/loadBalancer/ingress/0");
        let address = ingress
            .and_then(|i| {
                i.get("ip")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            })
            .or_else(|| {
                ingress
                    .and_then(|i| i.get("hostname").and_then(Value::as_str))
                    .filter(|s| !s.is_empty())
            });
        match address.map(|a| a.to_ascii_lowercase()) {
            Some(a) => match names::check_gateway_address(&a) {
                Ok(()) => {
                    out.insert(Gateway { address: a, port });
                }
                Err(names::GatewayRefusal::NotAnAddress) => {
                    log::warn!(target: "export", "ingress gateway Service {name}: load balancer address {a:?} is not an IP or DNS name")
                }
                Err(refusal) => {
                    log::warn!(target: "export", "ingress gateway Service {name}: load balancer address {a:?} {refusal}; not advertised, peers would refuse it")
                }
            },
            None => {
                log::warn!(target: "export", "ingress gateway Service {name} has no load balancer address yet; not advertised")
            }
        }
    }
    out.into_iter().collect()
}

/// Exported services: every Service labelled `federation.istio.deckhouse.io/public-service: ""`.
fn public_services(input: &BindingInput, cluster_domain: &str) -> Vec<Value> {
    // One reading of the labelled Services for what we advertise and what discovery lets
    // peers reach (protocol::exports): the two must never disagree.
    let services = input.snapshot(bindings::PUBLIC_SERVICES).unwrap_or(&[]);
    crate::protocol::exports::exported(services, cluster_domain)
        .into_iter()
        .map(|e| {
            let ports: Vec<Value> = e
                .ports
                .iter()
                .map(|(name, port)| json!({"name": name, "port": port}))
                .collect();
            json!({"hostname": e.host, "ports": ports})
        })
        .collect()
}

/// Peers allowed to read our private metadata: the cached, valid public metadata of every
/// IstioFederation (clusterUUID → {clusterUUID, authnKeyPub, rootCA}).
/// A UUID cached by several federations is mapped only for the one it belongs to
/// ([`claims::uuid_owners`], the rule discovery admits public metadata by): a peer that
/// published another's UUID cannot lock the real cluster out.
fn remote_public_metadata(input: &BindingInput, settings: &Settings) -> Map<String, Value> {
    let mut out: BTreeMap<String, Value> = BTreeMap::new();
    let feds: Vec<Federation> = input
        .snapshot(bindings::FEDERATIONS)
        .unwrap_or(&[])
        .iter()
        .filter_map(|obj| Federation::parse(obj).ok())
        .collect();
    let claims: Vec<claims::UuidClaim> = feds
        .iter()
        .map(|fed| claims::UuidClaim {
            federation: &fed.name,
            cached: claims::cached_uuid(fed),
            fresh: None,
        })
        .collect();
    let owners = claims::uuid_owners(&claims);
    for fed in &feds {
        if let Some(owner) =
            claims::cached_uuid(fed).and_then(|u| claims::held_by_other(&owners, &fed.name, u))
        {
            log::warn!(target: "export", "IstioFederation {}: cached clusterUUID belongs to IstioFederation {owner}; peer not authorized", fed.name);
            continue;
        }
        if fed
            .trust_domain
            .eq_ignore_ascii_case(&settings.cluster_domain)
        {
            continue;
        }
        let Some(p) = &fed.cached_public else {
            continue;
        };
        let field = |k: &str| p.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        let (Some(uuid), Some(key), Some(root)) =
            (field("clusterUUID"), field("authnKeyPub"), field("rootCA"))
        else {
            continue;
        };
        if uuid == settings.cluster_uuid
            || claims::cached_uuid(fed).is_none()
            || certs::parse_ed25519_public_pem(key).is_err()
        {
            log::warn!(target: "export", "IstioFederation {}: cached public metadata is not usable for authentication; peer not authorized", fed.name);
            continue;
        }
        out.insert(
            uuid.to_string(),
            json!({"clusterUUID": uuid, "authnKeyPub": key, "rootCA": root}),
        );
    }
    out.into_iter().collect()
}

fn pretty(v: &Value) -> String {
    // Deckhouse's exporter writes json.MarshalIndent(…, "", "  "); so do we.
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// One export run at `now` (unix seconds, `hook::io::now`, the clock discovery runs by): what
/// peers should see, written only when it differs from the Secret.
pub fn reconcile(
    settings: &Settings,
    input: &BindingInput,
    new_key: Option<&NewKeyPair>,
    now: i64,
) -> Outcome {
    let mut out = Outcome {
        metrics: vec![crate::hook::metrics::expire(identity::GROUP)],
        ..Outcome::default()
    };
    let ns = &settings.federation_namespace;
    let Some(secret_snapshot) = input.snapshot(bindings::METADATA) else {
        log::warn!(target: "export", "this run carries no snapshot of Secret {METADATA_SECRET}; nothing is exported");
        return out;
    };
    let observed = secret_snapshot.first();
    if !settings.enabled {
        out.operations.extend(remove_private_content(ns, observed));
        return out;
    }
    if let Some(k) = new_key {
        log::info!(target: "export", "Secret {ns}/{KEYPAIR_SECRET} does not exist; creating a new Ed25519 key pair");
        out.operations.push(key_pair_secret(ns, k));
    }
    let old = published_files(observed);
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let (uuid, held) =
        identity::uuid_to_publish(settings, old.get(PUBLIC_JSON).map(String::as_str), observed);
    out.metrics.extend(held);
    if let Some((public, retired)) = public_json(settings, &uuid, input, new_key, &old, now) {
        files.insert(PUBLIC_JSON.into(), public);
        if let Some(retired) = retired {
            files.insert(RETIRED_LOCAL_ROOTS_JSON.into(), retired);
        }
    }
    // The SPIFFE bundle's sequence and refresh hint (docs/rotation.md).
    rotation::spiffe_files(&old, &mut files, settings.root_retention, ns);
    let federation = federation_json(settings, input, &old);
    let remote = remote_public_metadata(input, settings);
    // Per-peer visibility (docs/sharing.md): always, bound to this federation.json.
    files.insert(
        VISIBILITY_JSON.into(),
        visibility::render(input, settings, &federation, &remote),
    );
    files.insert(FEDERATION_JSON.into(), federation);
    files.insert(REMOTE_PUBLIC_JSON.into(), pretty(&Value::Object(remote)));
    let total: usize = files.values().map(String::len).sum();
    if total * 4 / 3 > 1024 * 1024 {
        log::error!(target: "export", "metadata is {total} bytes: over the 1 MiB limit of a Secret; the API server will refuse it");
    }
    if files != old {
        out.operations.push(metadata_secret(ns, &files));
    }
    out
}

/// The files of the metadata Secret as published, decoded (undecodable ones are left out, so
/// they are rewritten).
fn published_files(observed: Option<&Value>) -> BTreeMap<String, String> {
    observed
        .and_then(|s| s.get("data"))
        .and_then(Value::as_object)
        .map(|d| {
            d.iter()
                .filter_map(|(k, v)| Some((k.clone(), unb64(Some(v))?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Federation disabled: remove the private content only (tested against the value it was
/// decided from), so peers keep seeing our public metadata and stop seeing our services. The
/// visibility file stays, bound to no federation.json, so a federation.json that comes back
/// before its own visibility file is withheld by `serve` (docs/sharing.md).
fn remove_private_content(ns: &str, observed: Option<&Value>) -> Option<Operation> {
    let raw = observed?.pointer("/data/federation.json")?;
    let unbound = b64(&crate::protocol::visibility::render_without_federation());
    Some(Operation::JsonPatch {
        api_version: "v1".into(),
        kind: "Secret".into(),
        namespace: ns.to_string(),
        name: METADATA_SECRET.into(),
        patch: vec![
            json!({"op": "test", "path": "/data/federation.json", "value": raw}),
            json!({"op": "remove", "path": "/data/federation.json"}),
            json!({"op": "add", "path": format!("/data/{VISIBILITY_JSON}"), "value": unbound}),
        ],
    })
}

/// The key-pair Secret for a freshly generated key; CreateIfNotExists, so a key another run
/// created in the meantime is never replaced.
fn key_pair_secret(ns: &str, k: &NewKeyPair) -> Operation {
    Operation::CreateIfNotExists(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": KEYPAIR_SECRET, "namespace": ns, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
        "data": {"priv.pem": b64(&k.private_pem), "pub.pem": b64(&k.public_pem)},
    }))
}

/// public.json and the retired roots it publishes (`retired-local-roots.json`, when there are
/// any): needs a usable public key and the local root. Without either the last published ones
/// are kept (peers keep trusting what they trusted), and the gap is logged.
fn public_json(
    settings: &Settings,
    uuid: &str,
    input: &BindingInput,
    new_key: Option<&NewKeyPair>,
    old: &BTreeMap<String, String>,
    now: i64,
) -> Option<(String, Option<String>)> {
    let ns = &settings.federation_namespace;
    // In cacerts mode istiod publishes root-cert.pem whole, with the peer roots discovery
    // appended: those are the peers', never published as ours.
    let peers = input
        .snapshot(bindings::TRUST_BUNDLE)
        .and_then(|s| s.first())
        .map(labels::managed_trust_fingerprints)
        .unwrap_or_default();
    let root = input
        .snapshot(bindings::LOCAL_ROOT)
        .and_then(|s| s.first())
        .and_then(|cm| cm.pointer("/data/root-cert.pem"))
        .and_then(Value::as_str)
        .map(|text| certs::without_certificates(text, &peers))
        .filter(|s| !s.trim().is_empty());
    let root = root.as_deref();
    let key = public_key(input, new_key).filter(|k| certs::parse_ed25519_public_pem(k).is_ok());
    if let (Some(key), Some(root)) = (&key, root) {
        // Plus our roots that left the ConfigMap within ROOT_RETENTION (docs/rotation.md).
        let published = rotation::publish(
            root,
            rotation::root_ca_of(old.get(PUBLIC_JSON)).as_deref(),
            old.get(RETIRED_LOCAL_ROOTS_JSON).map(String::as_str),
            settings.root_retention,
            now,
            ns,
        );
        let public = json!({"clusterUUID": uuid, "authnKeyPub": key, "rootCA": published.root_ca});
        return Some((pretty(&public), published.retired_file()));
    }
    let missing = if key.is_none() {
        format!("the public key (Secret {ns}/{KEYPAIR_SECRET} pub.pem)")
    } else {
        String::new()
    };
    let missing = match root {
        None if missing.is_empty() => format!(
            "the local root (ConfigMap {}/{LOCAL_ROOT_CONFIGMAP} root-cert.pem)",
            settings.istio_namespace
        ),
        None => format!("{missing} and the local root"),
        Some(_) => missing,
    };
    log::warn!(target: "export", "public metadata not rendered: {missing} is missing; keeping the last published public.json");
    let public = old.get(PUBLIC_JSON).cloned()?;
    Some((public, old.get(RETIRED_LOCAL_ROOTS_JSON).cloned()))
}

/// federation.json: our gateways and exported services.
fn federation_json(
    settings: &Settings,
    input: &BindingInput,
    old: &BTreeMap<String, String>,
) -> String {
    let gateways = gateways(input, old);
    let services = public_services(input, &settings.cluster_domain);
    pretty(&json!({"ingressGateways": gateways, "publicServices": services}))
}

/// The gateways to advertise: the advertise ConfigMap when there is one, else the load
/// balancers. A broken ConfigMap, or no address known yet, keeps the last published gateways:
/// peers keep reaching us while an operator fixes it.
fn gateways(input: &BindingInput, old: &BTreeMap<String, String>) -> Value {
    let fresh = match advertised_gateways(input) {
        Ok(Some(g)) => Some(g),
        Ok(None) => Some(load_balancer_gateways(input)).filter(|g| !g.is_empty()),
        Err(e) => {
            log::error!(target: "export", "{e}; keeping the last published gateways");
            None
        }
    };
    if let Some(g) = fresh {
        return json!(g);
    }
    old.get(FEDERATION_JSON)
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .and_then(|p| p.get("ingressGateways").cloned())
        .unwrap_or_else(|| {
            log::warn!(target: "export", "no ingress gateway address is known yet; peers cannot reach our services");
            json!([])
        })
}

/// The metadata Secret with every file, written as a whole.
fn metadata_secret(ns: &str, files: &BTreeMap<String, String>) -> Operation {
    let data: Map<String, Value> = files
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(b64(v))))
        .collect();
    Operation::CreateOrUpdate(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": METADATA_SECRET, "namespace": ns, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
        "data": data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::labels::TRUST_ENTRIES_ANNOTATION as TRUST_ENTRIES;

    fn input(snapshots: &[(&str, Vec<Value>)]) -> BindingInput<'static> {
        BindingInput {
            snapshots: snapshots
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            ..Default::default()
        }
    }

    fn published(gateways: Value) -> BTreeMap<String, String> {
        let doc = json!({"ingressGateways": gateways, "publicServices": []});
        BTreeMap::from([(FEDERATION_JSON.to_string(), pretty(&doc))])
    }

    #[test]
    fn a_broken_advertise_list_keeps_the_last_published_gateways() {
        let last = json!([{"address": "9.9.9.9", "port": 15443}]);
        let broken =
            json!({"data": {ADVERTISE_KEY: "[{\"address\": \"not an address\", \"port\": 1}]"}});
        let lb = json!({"metadata": {"name": "gw", "namespace": "d8-istio"},
            "spec": {"ports": [{"name": "tls", "port": 15443}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
        let with_broken = input(&[
            (bindings::ADVERTISE, vec![broken]),
            (bindings::INGRESS_GATEWAYS, vec![lb.clone()]),
        ]);
        assert_eq!(gateways(&with_broken, &published(last.clone())), last);
        // No advertise ConfigMap: the load balancer's address, whatever was published.
        let lb_only = input(&[(bindings::INGRESS_GATEWAYS, vec![lb])]);
        assert_eq!(
            gateways(&lb_only, &published(last.clone())),
            json!([{"address": "1.2.3.4", "port": 15443}])
        );
        // Nothing known and nothing published: an empty list, not an error.
        assert_eq!(gateways(&input(&[]), &BTreeMap::new()), json!([]));
    }

    #[test]
    fn implausible_own_gateways_are_not_advertised() {
        // The advertise list is refused as a whole (the last published list stays), the load
        // balancer's loopback address is skipped: peers would drop either.
        let last = json!([{"address": "9.9.9.9", "port": 15443}]);
        let list = json!({"data": {ADVERTISE_KEY: "[{\"address\": \"10.0.0.1\", \"port\": 15443}, {\"address\": \"127.0.0.1\", \"port\": 15443}]"}});
        let advertise = input(&[(bindings::ADVERTISE, vec![list])]);
        assert_eq!(
            advertised_gateways(&advertise).unwrap_err(),
            "ConfigMap metadata-exporter-ingressgateway-advertise ingressgateways-array.json item 2: address \"127.0.0.1\" is a loopback address; peers would refuse it"
        );
        assert_eq!(gateways(&advertise, &published(last.clone())), last);
        let lb = |address: &str| {
            json!({"metadata": {"name": "gw", "namespace": "d8-istio"},
            "spec": {"ports": [{"name": "tls", "port": 15443}]},
            "status": {"loadBalancer": {"ingress": [{"hostname": address}]}}})
        };
        for refused in ["localhost", "169.254.169.254", "gateway"] {
            let only = input(&[(bindings::INGRESS_GATEWAYS, vec![lb(refused)])]);
            assert!(load_balancer_gateways(&only).is_empty(), "{refused}");
        }
        let fine = input(&[(bindings::INGRESS_GATEWAYS, vec![lb("gw.example.com")])]);
        assert_eq!(load_balancer_gateways(&fine).len(), 1);
    }

    #[test]
    fn cacerts_mode_never_publishes_the_peer_roots_istiod_copied_into_the_local_root() {
        // Found on the real platform (tests/platform.rs): in cacerts mode discovery appends
        // peer roots to root-cert.pem, istiod publishes all of it as istio-ca-root-cert, and
        // export republished the peer's root as ours, every run undoing the last.
        let own = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/certs/local-root.pem"
        ));
        let peer = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/certs/peer-b-root.pem"
        ));
        let peer_fp = certs::certificate_fingerprints(peer).remove(0);
        let env = BTreeMap::from([("TRUST_BUNDLE_MODE", "cacerts")]);
        let settings = Settings::load(None, &|k| env.get(k).map(|v| v.to_string())).unwrap();
        let (private_pem, public_pem) = certs::generate_ed25519_pem().unwrap();
        let key = NewKeyPair {
            private_pem,
            public_pem,
        };
        let root = json!({"data": {"root-cert.pem": format!("{own}{peer}")}});
        let annotation = json!({"peer-b.local": [peer_fp]}).to_string();
        let cacerts = json!({"metadata": {"annotations": {TRUST_ENTRIES: annotation}}});
        let with = input(&[
            (bindings::KEYPAIR, vec![]),
            (bindings::LOCAL_ROOT, vec![root]),
            (bindings::TRUST_BUNDLE, vec![cacerts]),
        ]);
        let (public, _) =
            public_json(&settings, "uuid", &with, Some(&key), &BTreeMap::new(), 0).unwrap();
        let public: Value = serde_json::from_str(&public).unwrap();
        assert_eq!(public["rootCA"], own, "{public}");
        // The binding exists in cacerts mode only, and carries no key material.
        let names = |s: &Settings| -> Vec<String> {
            config(s)["kubernetes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert!(names(&settings).contains(&bindings::TRUST_BUNDLE.to_string()));
        let default = Settings::load(None, &|_| None).unwrap();
        assert!(!names(&default).contains(&bindings::TRUST_BUNDLE.to_string()));
    }

    #[test]
    fn public_json_without_the_local_root_keeps_the_last_published() {
        let settings = Settings::load(None, &|_| None).unwrap();
        let (private_pem, public_pem) = certs::generate_ed25519_pem().unwrap();
        let key = NewKeyPair {
            private_pem,
            public_pem,
        };
        let old = BTreeMap::from([(PUBLIC_JSON.to_string(), "last\n".to_string())]);
        let no_root = input(&[(bindings::KEYPAIR, vec![])]);
        assert_eq!(
            public_json(
                &settings,
                "deadbeef-mycluster",
                &no_root,
                Some(&key),
                &old,
                0
            ),
            Some(("last\n".to_string(), None))
        );
        let root = json!({"data": {"root-cert.pem": "ROOT"}});
        let with_root = input(&[
            (bindings::KEYPAIR, vec![]),
            (bindings::LOCAL_ROOT, vec![root]),
        ]);
        let (fresh, _) = public_json(
            &settings,
            "deadbeef-mycluster",
            &with_root,
            Some(&key),
            &old,
            0,
        )
        .unwrap();
        assert!(fresh.contains("\"rootCA\": \"ROOT\""), "{fresh}");
    }

    #[test]
    fn disabled_removes_only_the_private_content() {
        let secret = json!({"data": {PUBLIC_JSON: "cHVi", FEDERATION_JSON: "cHJpdg=="}});
        let op = remove_private_content("d8-istio", Some(&secret)).unwrap();
        let Operation::JsonPatch { patch, .. } = op else {
            panic!("a JSON patch");
        };
        assert_eq!(patch[0]["value"], "cHJpdg==");
        assert_eq!(
            patch[1],
            json!({"op": "remove", "path": "/data/federation.json"})
        );
        assert!(remove_private_content("d8-istio", Some(&json!({"data": {}}))).is_none());
    }
}
