//! Which peer sees which exported service (docs/sharing.md).
//!
//! A labelled Service annotated `federation.istio.deckhouse.io/export-to: "<trust domain>[, …]"`
//! is published only to the peers whose IstioFederation has one of those `spec.trustDomain`s;
//! without the annotation it is published to every peer, as Deckhouse does. Export still writes
//! every service into `federation.json` and adds `federation-visibility.json` (format in
//! [`crate::protocol::visibility`]) naming, per restricted service, the cluster UUIDs allowed to
//! see it; `serve` answers each peer from both. The file is written even while no Service is
//! restricted (an empty `restrictedServices`): its absence would mean "nothing restricted" to
//! `serve`, and a directory updated file by file could then show a newly restricted service
//! with the new `federation.json` before the file restricting it arrived.
//!
//! Peers are named by cluster UUID (the JWT `sub` `serve` authenticates), mapped to trust
//! domains through the IstioFederations' cached public metadata — the same entries
//! `remote-public-metadata.json` authorizes. A UUID that several federations claim must have
//! every one of their trust domains allowed (fail closed).

use super::bindings;
use crate::hook::binding::BindingInput;
use crate::hook::k8s;
use crate::hook::settings::Settings;
use crate::protocol::exports::parse_export_to;
use crate::protocol::federation::Federation;
use crate::protocol::labels::{EXPORT_TO_ANNOTATION, PUBLIC_SERVICE_LABEL};
use crate::protocol::visibility;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Restricted hostname → trust domains allowed to see it, from the `public_services` snapshot
/// (the Services [`super::public_services`] exports, with the same hostnames). Also the
/// Services (`namespace/name`) naming each trust domain, for the log line about unknown ones.
type Restrictions = BTreeMap<String, BTreeSet<String>>;

fn restrictions(
    input: &BindingInput,
    cluster_domain: &str,
) -> (Restrictions, BTreeMap<String, BTreeSet<String>>) {
    let mut out: Restrictions = BTreeMap::new();
    let mut named_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for svc in input.snapshot(bindings::PUBLIC_SERVICES).unwrap_or(&[]) {
        if k8s::label(svc, PUBLIC_SERVICE_LABEL) != Some("") {
            continue;
        }
        let (Some(name), Some(ns)) = (k8s::name(svc), k8s::namespace(svc)) else {
            continue;
        };
        let Some(value) = k8s::annotation(svc, EXPORT_TO_ANNOTATION) else {
            continue;
        };
        let allowed = parse_export_to(value);
        if allowed.is_empty() {
            log::warn!(target: "export", "Service {ns}/{name}: annotation {EXPORT_TO_ANNOTATION} names no trust domain; the service is published to no peer");
        }
        for td in &allowed {
            named_by
                .entry(td.clone())
                .or_default()
                .insert(format!("{ns}/{name}"));
        }
        let hostname = format!("{name}.{ns}.svc.{cluster_domain}");
        // The same hostname twice (a duplicated snapshot entry): only what both allow.
        match out.get_mut(&hostname) {
            Some(prev) => prev.retain(|td| allowed.contains(td)),
            None => {
                out.insert(hostname, allowed);
            }
        }
    }
    (out, named_by)
}

/// Authorized peer UUID → the trust domains of the federations behind it. Only the entries of
/// `remote` (what `remote-public-metadata.json` lists) count, matched by UUID and key.
fn peer_trust_domains(
    input: &BindingInput,
    settings: &Settings,
    remote: &Map<String, Value>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for obj in input.snapshot(bindings::FEDERATIONS).unwrap_or(&[]) {
        let Ok(fed) = Federation::parse(obj) else {
            continue;
        };
        let Some(p) = &fed.cached_public else {
            continue;
        };
        let field = |k: &str| p.get(k).and_then(Value::as_str);
        let (Some(uuid), Some(key)) = (field("clusterUUID"), field("authnKeyPub")) else {
            continue;
        };
        let published_key = remote
            .get(uuid)
            .and_then(|e| e.get("authnKeyPub"))
            .and_then(Value::as_str);
        if published_key == Some(key) && fed.trust_domain != settings.cluster_domain {
            out.entry(uuid.to_string())
                .or_default()
                .insert(fed.trust_domain.to_ascii_lowercase());
        }
    }
    out
}

/// The visibility file to write beside `federation_json` (restricting nothing when no Service
/// is restricted).
pub(super) fn render(
    input: &BindingInput,
    settings: &Settings,
    federation_json: &str,
    remote: &Map<String, Value>,
) -> String {
    let (rules, named_by) = restrictions(input, &settings.cluster_domain);
    if rules.is_empty() {
        return visibility::render(federation_json, &BTreeMap::new());
    }
    let known: BTreeSet<String> = input
        .snapshot(bindings::FEDERATIONS)
        .unwrap_or(&[])
        .iter()
        .filter_map(|obj| Federation::parse(obj).ok())
        .map(|f| f.trust_domain.to_ascii_lowercase())
        .collect();
    for (td, services) in named_by.iter().filter(|(td, _)| !known.contains(*td)) {
        let services: Vec<&str> = services.iter().map(String::as_str).collect();
        log::warn!(target: "export", "Service(s) {}: annotation {EXPORT_TO_ANNOTATION} names trust domain {td:?}, which no IstioFederation has; it matches no peer", services.join(", "));
    }
    let peers = peer_trust_domains(input, settings, remote);
    let allowed_uuids: BTreeMap<String, BTreeSet<String>> = rules
        .iter()
        .map(|(host, allowed)| {
            let uuids = peers
                .iter()
                .filter(|(_, tds)| tds.iter().all(|td| allowed.contains(td)))
                .map(|(uuid, _)| uuid.clone())
                .collect();
            (host.clone(), uuids)
        })
        .collect();
    visibility::render(federation_json, &allowed_uuids)
}
