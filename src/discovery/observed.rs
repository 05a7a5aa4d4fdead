//! What a discovery run observes: the snapshots of its bindings, read once. `None` means no
//! context of the run carried that binding, so its state is unknown (and nothing is deleted
//! on its account).

use crate::discovery::config;
use crate::discovery::services::istio_objects;
use crate::discovery::trust::trust_bundle;
use crate::hook::binding::BindingInput;
use crate::hook::k8s;
use crate::hook::settings::{Settings, TrustBundleMode};
use crate::protocol::certs;
use crate::protocol::federation::Federation;
use crate::protocol::labels;
use crate::protocol::secret::KEYPAIR_PRIVATE;
use crate::protocol::text;
use serde_json::Value;

/// Snapshots of one run. `None` = no context of the run carried that binding: state unknown.
#[derive(Debug, Default)]
pub struct Observed<'a> {
    /// Parsed federations in name order (`None`: no snapshot this run).
    pub federations: Option<Vec<Federation>>,
    /// Names of federations whose spec cannot be read (logged once, when parsed).
    pub broken_federations: Vec<String>,
    pub keypair: Option<&'a [Value]>,
    pub trust_object: Option<&'a [Value]>,
    pub local_root: Option<&'a [Value]>,
    pub service_entries: Option<istio_objects::Snapshot<'a>>,
    pub destination_rules: Option<istio_objects::Snapshot<'a>>,
    /// Our AuthorizationPolicies in the root namespace (`None`: the boundary is not managed
    /// this run, see [`super::authz`]).
    pub authorization_policies: Option<&'a [Value]>,
    /// The exported (labelled) Services, read as the export hook reads them.
    pub public_services: Option<&'a [Value]>,
    /// The Gateway `FEDERATION_GATEWAY` names (when set).
    pub federation_gateway: Option<&'a [Value]>,
}

/// The bindings whose (possibly huge) snapshots are parsed one object at a time, straight into
/// their own types, instead of into one generic JSON tree held for the whole run.
pub const RAW_BINDINGS: [&str; 3] = [
    config::FEDERATIONS,
    config::SERVICE_ENTRIES,
    config::DESTINATION_RULES,
];

/// Parses the federations snapshot: each object on its own (only what the hook reads is kept),
/// sorted by name; unreadable ones are logged and reported by name ("" when they have none).
fn parse_federations(b: &BindingInput) -> (Option<Vec<Federation>>, Vec<String>) {
    let mut feds = Vec::new();
    let mut broken = Vec::new();
    let mut take = |parsed: Result<Federation, (String, String)>| match parsed {
        Ok(f) => feds.push(f),
        Err((name, e)) => {
            log::error!(target: "reconcile", "{e}; its ServiceEntries and trust entries are kept unchanged until it is fixed");
            broken.push(name);
        }
    };
    let present = if let Some(raw) = b.raw_snapshot(config::FEDERATIONS) {
        for r in raw {
            take(Federation::parse_json(r.get()));
        }
        true
    } else if let Some(vals) = b.snapshot(config::FEDERATIONS) {
        for v in vals {
            take(Federation::parse(v).map_err(|e| (k8s::name(v).unwrap_or("").to_string(), e)));
        }
        true
    } else {
        false
    };
    feds.sort_by(|a, b| a.name.cmp(&b.name));
    crate::protocol::federation::limit_cluster_local(&mut feds);
    (present.then_some(feds), broken)
}

/// Our Istio objects from a snapshot, raw (see [`RAW_BINDINGS`]) or already parsed.
fn managed_objects<'a>(b: &BindingInput<'a>, binding: &str) -> Option<istio_objects::Snapshot<'a>> {
    if let Some(raw) = b.raw_snapshot(binding) {
        return Some(istio_objects::Snapshot::from_raw(raw));
    }
    b.snapshot(binding)
        .map(istio_objects::Snapshot::from_values)
}

impl<'a> Observed<'a> {
    pub fn from_binding(b: &'a BindingInput) -> Observed<'a> {
        let (federations, broken_federations) = parse_federations(b);
        Observed {
            federations,
            broken_federations,
            keypair: b.snapshot(config::KEYPAIR),
            trust_object: b.snapshot(config::TRUST_BUNDLE),
            local_root: b.snapshot(config::LOCAL_ROOT),
            service_entries: managed_objects(b, config::SERVICE_ENTRIES),
            destination_rules: managed_objects(b, config::DESTINATION_RULES),
            authorization_policies: b.snapshot(config::AUTHORIZATION_POLICIES),
            public_services: b.snapshot(config::PUBLIC_SERVICES),
            federation_gateway: b.snapshot(config::FEDERATION_GATEWAY),
        }
    }

    /// The Ed25519 private key PEM from the key-pair Secret (`priv.pem`), if present.
    pub(crate) fn private_key_pem(&self) -> Option<String> {
        let secret = self.keypair?.first()?;
        let b64 = secret.get("data")?.get(KEYPAIR_PRIVATE)?.as_str()?;
        text::unb64(b64).ok()
    }
}

/// Own root-certificate fingerprints: the local root (istio-ca-root-cert) and, in cacerts
/// mode, the local roots in `root-cert.pem`. In cacerts mode istiod publishes all of
/// `root-cert.pem` as istio-ca-root-cert, the peer roots this hook appended included: those
/// (listed in the trust object's ownership annotation) are the peers', not ours.
pub(crate) fn own_root_fingerprints(settings: &Settings, observed: &Observed) -> Vec<String> {
    let trust_object = observed.trust_object.and_then(|t| t.first());
    let peers = match (settings.trust_bundle_mode, trust_object) {
        (TrustBundleMode::Cacerts, Some(obj)) => labels::managed_trust_fingerprints(obj),
        _ => Default::default(),
    };
    let mut fps: Vec<String> = observed
        .local_root
        .and_then(|l| l.first())
        .and_then(|cm| cm.pointer("/data/root-cert.pem"))
        .and_then(Value::as_str)
        .map(certs::certificate_fingerprints)
        .unwrap_or_default()
        .into_iter()
        .filter(|fp| !peers.contains(fp))
        .collect();
    fps.extend(trust_bundle::local_fingerprints(settings, trust_object));
    fps.sort();
    fps.dedup();
    fps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::labels::TRUST_ENTRIES_ANNOTATION;
    use serde_json::json;

    const OWN: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/certs/local-root.pem"
    ));
    const PEER: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/certs/peer-b-root.pem"
    ));

    #[test]
    fn cacerts_mode_does_not_take_the_peer_roots_istiod_republishes_for_ours() {
        // Found on the real platform (tests/platform.rs): istiod publishes the whole
        // root-cert.pem of cacerts, our appended peer roots included, as istio-ca-root-cert;
        // counted as our own, every fresh document of the peer was refused as "our own root".
        let own_fp = certs::certificate_fingerprints(OWN).remove(0);
        let peer_fp = certs::certificate_fingerprints(PEER).remove(0);
        let local = [json!({"data": {"root-cert.pem": format!("{OWN}{PEER}")}})];
        let annotation = json!({"peer-b.local": [peer_fp.clone()]}).to_string();
        let cacerts = [json!({
            "metadata": {"annotations": {TRUST_ENTRIES_ANNOTATION: annotation}},
            "data": {"root-cert.pem": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{OWN}{PEER}"))},
        })];
        let observed = Observed {
            local_root: Some(&local),
            trust_object: Some(&cacerts),
            ..Default::default()
        };
        let env = std::collections::BTreeMap::from([("TRUST_BUNDLE_MODE", "cacerts")]);
        let cacerts_mode = Settings::load(None, &|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(
            own_root_fingerprints(&cacerts_mode, &observed),
            vec![own_fp.clone()]
        );
        // In mesh-config mode the ConfigMap is istiod's own roots only: all of it is ours.
        let mesh_config = Settings::load(None, &|_| None).unwrap();
        let mut both = vec![own_fp, peer_fp];
        both.sort();
        assert_eq!(own_root_fingerprints(&mesh_config, &observed), both);
    }
}
