//! Labels and annotations the hook writes and reads on Kubernetes objects. Deckhouse's names
//! where Deckhouse has one, so a cluster can move between the two without relabelling.

/// Label on every object this hook creates; deletes are only ever emitted for objects carrying it.
pub(crate) const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub(crate) const MANAGED_BY_VALUE: &str = "istio-federation-hook";
/// Deckhouse's label naming the (first) federation behind an imported service.
pub(crate) const FEDERATION_LABEL: &str = "federation.istio.deckhouse.io/federation";
/// All federations that contributed to an imported service, comma-separated.
pub(crate) const FEDERATIONS_ANNOTATION: &str = "federation.istio.deckhouse.io/federations";
/// Trust entries the hook owns inside the trust-bundle object: JSON `{trustDomain: [sha256, …]}`.
pub(crate) const TRUST_ENTRIES_ANNOTATION: &str =
    "federation.istio.deckhouse.io/managed-trust-entries";

/// Every fingerprint the trust-entries annotation of `obj` (the trust-bundle object) lists:
/// the peer roots the hook itself put there. In cacerts mode istiod publishes `root-cert.pem`,
/// peer roots included, as its `istio-ca-root-cert`: both hooks take these out of what they
/// count as our own roots. An unreadable annotation lists nothing.
pub(crate) fn managed_trust_fingerprints(
    obj: &serde_json::Value,
) -> std::collections::BTreeSet<String> {
    crate::hook::k8s::annotation(obj, TRUST_ENTRIES_ANNOTATION)
        .and_then(|raw| {
            serde_json::from_str::<std::collections::BTreeMap<String, Vec<String>>>(raw).ok()
        })
        .map(|m| m.into_values().flatten().collect())
        .unwrap_or_default()
}

/// Services carrying this label (value "") are exported to peers (Deckhouse's label).
pub(crate) const PUBLIC_SERVICE_LABEL: &str = "federation.istio.deckhouse.io/public-service";
/// On an exported Service: the trust domains (comma-separated) of the only peers it is
/// published to (docs/sharing.md). Absent: every peer.
pub(crate) const EXPORT_TO_ANNOTATION: &str = "federation.istio.deckhouse.io/export-to";

/// Annotation on an IstioFederation: comma-separated SHA-256 fingerprints (hex, as in
/// [`TRUST_ENTRIES_ANNOTATION`]) of roots never to trust, published or retained (docs/rotation.md).
pub(crate) const DISTRUST_ROOTS_ANNOTATION: &str = "federation.istio.deckhouse.io/distrust-roots";

/// On a managed ServiceEntry or DestinationRule whose delete is held by the mass-deletion
/// guard: when the run that first held it saw the state (RFC 3339). The delete is carried out
/// on the first run at least `MASS_DELETION_GRACE` later (docs/security.md, "Platform failures").
pub(crate) const DELETION_HELD_ANNOTATION: &str =
    "federation.istio.deckhouse.io/deletion-held-since";
/// On the trust-bundle object: JSON `{trustDomain: RFC 3339}`, the trust entries whose removal
/// the mass-deletion guard holds, and since when.
pub(crate) const TRUST_REMOVAL_HELD_ANNOTATION: &str =
    "federation.istio.deckhouse.io/trust-removal-held-since";

/// Annotation on an IstioFederation: the peer clusterUUID the operator re-pins the federation
/// to (docs/how-it-works.md, "Remote discovery"). Honoured once, when the fresh public metadata carries
/// exactly that UUID; then recorded in [`CLUSTER_UUID_REPINNED_ANNOTATION`] and removed.
pub(crate) const REPIN_CLUSTER_UUID_ANNOTATION: &str =
    "federation.istio.deckhouse.io/repin-cluster-uuid";
/// Annotation on an IstioFederation: the last re-pin, `<old> -> <new> at <RFC 3339>`.
pub(crate) const CLUSTER_UUID_REPINNED_ANNOTATION: &str =
    "federation.istio.deckhouse.io/cluster-uuid-repinned";

/// Annotation on an IstioFederation (value `"true"`): accept `spec.trustDomain: cluster.local`
/// for this peer (docs/security.md, "Platform failures"). At most one federation may use it.
pub(crate) const ACCEPT_CLUSTER_LOCAL_ANNOTATION: &str =
    "federation.istio.deckhouse.io/accept-cluster-local-trust-domain";

/// Annotation on the metadata Secret: the new own clusterUUID the operator acknowledges; until
/// it names `CLUSTER_UUID`, export keeps publishing the clusterUUID it published before
/// (docs/security.md, "Platform failures").
pub(crate) const ACKNOWLEDGE_CLUSTER_UUID_ANNOTATION: &str =
    "federation.istio.deckhouse.io/acknowledge-cluster-uuid-change";

/// A Kubernetes label value is at most 63 characters of `[-_.A-Za-z0-9]`, beginning and ending
/// with a letter or digit (or empty).
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    s.is_empty()
        || (b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

/// `name` as a label value (docs/security.md): unchanged when it is one already
/// (every name up to 63 characters, as Deckhouse writes it); otherwise the first 52 usable
/// characters, `-`, and the first 10 hex digits of the SHA-256 of the whole name — stable
/// across runs and distinct for distinct names. The full names stay in the
/// `federation.istio.deckhouse.io/federations` annotation.
pub(crate) fn label_value(name: &str) -> String {
    if is_label_value(name) {
        return name.to_string();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let hash: String = digest.as_ref()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let prefix: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(52)
        .collect();
    let prefix = prefix.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_valid_stable_and_distinct() {
        assert_eq!(label_value("b"), "b");
        let exactly = "a".repeat(63);
        assert_eq!(label_value(&exactly), exactly);
        let long = format!("{}.example", "x".repeat(70));
        let v = label_value(&long);
        assert!(is_label_value(&v) && v.len() == 63, "{v}");
        assert!(v.starts_with(&"x".repeat(52)));
        assert_eq!(label_value(&long), v);
        let other = format!("{}.examplf", "x".repeat(70));
        assert_ne!(label_value(&other), v);
        // A cut that would end on a dot or dash is trimmed.
        let dotted = format!("{}.{}", "y".repeat(51), "z".repeat(30));
        let v = label_value(&dotted);
        assert!(
            is_label_value(&v) && v.starts_with(&format!("{}-", "y".repeat(51))),
            "{v}"
        );
        for bad in ["-a", "a-", "a b", "ä"] {
            assert!(!is_label_value(bad));
            assert!(is_label_value(&label_value(bad)), "{bad}");
        }
    }
}
