//! The Secrets and ConfigMaps both sides of a federation agree on: the metadata Secret export
//! writes and `serve` mounts (its file names are the URL paths peers fetch), the key-pair Secret
//! (Deckhouse's name, so both products share it), and the scope a request token must grant.

/// The Secret export renders and `serve` mounts.
pub const METADATA_SECRET: &str = "istio-federation-metadata";
/// Public metadata (`/metadata/public/public.json`).
pub const PUBLIC_JSON: &str = "public.json";
/// Private metadata (`/metadata/private/federation.json`).
pub const FEDERATION_JSON: &str = "federation.json";
/// Peer UUID → their public metadata, which `serve` authenticates request tokens against.
pub const REMOTE_PUBLIC_JSON: &str = "remote-public-metadata.json";

/// The key-pair Secret (Deckhouse's name).
pub const KEYPAIR_SECRET: &str = "d8-remote-authn-keypair";
/// The key-pair Secret's keys: PKCS#8 private key and SPKI public key, PEM.
pub const KEYPAIR_PRIVATE: &str = "priv.pem";
pub const KEYPAIR_PUBLIC: &str = "pub.pem";

/// The scope a token must grant to read `federation.json`.
pub const SCOPE_PRIVATE_FEDERATION: &str = "private-federation";

/// Which peers may see which restricted services (`protocol::visibility`); written only when a
/// Service is restricted with [`EXPORT_TO_ANNOTATION`](crate::protocol::labels::EXPORT_TO_ANNOTATION).
pub const VISIBILITY_JSON: &str = "federation-visibility.json";
