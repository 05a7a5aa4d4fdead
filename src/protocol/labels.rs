//! Labels and annotations the hook writes and reads on Kubernetes objects. Deckhouse's names
//! where Deckhouse has one, so a cluster can move between the two without relabelling.

/// Label on every object this hook creates; deletes are only ever emitted for objects carrying it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "istio-federation-hook";
/// Deckhouse's label naming the (first) federation behind an imported service.
pub const FEDERATION_LABEL: &str = "federation.istio.deckhouse.io/federation";
/// All federations that contributed to an imported service, comma-separated.
pub const FEDERATIONS_ANNOTATION: &str = "federation.istio.deckhouse.io/federations";
/// Trust entries the hook owns inside the trust-bundle object: JSON `{trustDomain: [sha256, …]}`.
pub const TRUST_ENTRIES_ANNOTATION: &str = "federation.istio.deckhouse.io/managed-trust-entries";
/// Services carrying this label (value "") are exported to peers (Deckhouse's label).
pub const PUBLIC_SERVICE_LABEL: &str = "federation.istio.deckhouse.io/public-service";
/// On an exported Service: the trust domains (comma-separated) of the only peers it is
/// published to (README, "Choosing what to share"). Absent: every peer.
pub const EXPORT_TO_ANNOTATION: &str = "federation.istio.deckhouse.io/export-to";
/// Annotation on an IstioFederation: comma-separated SHA-256 fingerprints (hex, as in
/// [`TRUST_ENTRIES_ANNOTATION`]) of roots never to trust, published or retained (README,
/// "Rotating roots and keys").
pub const DISTRUST_ROOTS_ANNOTATION: &str = "federation.istio.deckhouse.io/distrust-roots";
