//! Our own published clusterUUID never changes by accident (docs/security.md, "Platform
//! failures"). Peers pin the `clusterUUID` of our `public.json` on first use; a reinstall with a
//! fresh `CLUSTER_UUID` would freeze every pinned peer out. So while the published UUID
//! differs from the setting, export keeps publishing the old one — with our current key and
//! roots — logs an error and sets a gauge, until the metadata Secret carries annotation
//! [`ACKNOWLEDGE_CLUSTER_UUID_ANNOTATION`] naming the new UUID. The acknowledged write replaces
//! the Secret as a whole, which drops the annotation with it.

use crate::hook::k8s;
use crate::hook::metrics;
use crate::hook::settings::Settings;
use crate::protocol::labels::ACKNOWLEDGE_CLUSTER_UUID_ANNOTATION;
use crate::protocol::metadata;
use crate::protocol::secret::METADATA_SECRET;
use serde_json::Value;

/// The export hook's metric group, expired every run.
pub const GROUP: &str = "federation_export";
/// 1 while the published clusterUUID is held against a changed `CLUSTER_UUID`.
pub(crate) const MISMATCH: &str = "d8_istio_federation_published_cluster_uuid_mismatch";

/// The clusterUUID `public.json` carries this run, and the gauge while the published one is
/// held. `published` is the last published `public.json`, `secret` the metadata Secret.
pub(crate) fn uuid_to_publish(
    settings: &Settings,
    published: Option<&str>,
    secret: Option<&Value>,
) -> (String, Option<Value>) {
    let configured = settings.cluster_uuid.clone();
    let old = published
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|v| {
            v.get("clusterUUID")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|u| metadata::is_sane_uuid(u) && *u != configured);
    let Some(old) = old else {
        return (configured, None);
    };
    let ns = &settings.federation_namespace;
    let ack = secret.and_then(|s| k8s::annotation(s, ACKNOWLEDGE_CLUSTER_UUID_ANNOTATION));
    if ack.map(str::trim) == Some(configured.as_str()) {
        log::warn!(target: "export", "publishing clusterUUID {configured} instead of {old}, as annotation {ACKNOWLEDGE_CLUSTER_UUID_ANNOTATION} on Secret {ns}/{METADATA_SECRET} acknowledges: peers that pinned {old} refuse our metadata until they re-pin");
        return (configured, None);
    }
    log::error!(target: "export", "CLUSTER_UUID is {configured}, but we publish clusterUUID {old}, which peers have pinned: still publishing {old}. If this cluster really has a new identity, tell the peers' operators to re-pin and acknowledge with annotation {ACKNOWLEDGE_CLUSTER_UUID_ANNOTATION}={configured} on Secret {ns}/{METADATA_SECRET}; otherwise restore CLUSTER_UUID={old}");
    let gauge = metrics::set(
        GROUP,
        MISMATCH,
        1.0,
        &[("published_uuid", &old), ("configured_uuid", &configured)],
    );
    (old, Some(gauge))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_is_documented_with_its_labels() {
        let labels = ["published_uuid", "configured_uuid"]
            .iter()
            .map(|l| l.to_string())
            .collect();
        let exported = [(MISMATCH.to_string(), labels)].into_iter().collect();
        crate::docs_tests::assert_metrics_documented("Export hook", &exported);
    }
}
