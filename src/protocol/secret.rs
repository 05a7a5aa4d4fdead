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
pub(crate) const REMOTE_PUBLIC_JSON: &str = "remote-public-metadata.json";

/// The key-pair Secret (Deckhouse's name).
pub(crate) const KEYPAIR_SECRET: &str = "d8-remote-authn-keypair";
/// The key-pair Secret's keys: PKCS#8 private key and SPKI public key, PEM.
pub(crate) const KEYPAIR_PRIVATE: &str = "priv.pem";
pub const KEYPAIR_PUBLIC: &str = "pub.pem";

/// The scope a token must grant to read `federation.json`.
pub(crate) const SCOPE_PRIVATE_FEDERATION: &str = "private-federation";

/// Which peers may see which restricted services (`protocol::visibility`); written only when a
/// Service is restricted with [`EXPORT_TO_ANNOTATION`](crate::protocol::labels::EXPORT_TO_ANNOTATION).
pub(crate) const VISIBILITY_JSON: &str = "federation-visibility.json";

/// Our own roots that left `istio-ca-root-cert` and are still published in `public.json`
/// (docs/rotation.md): `[{fingerprint, pem, retiredAt, until}]`, written by
/// export only while there is one, read back by the next export run.
pub(crate) const RETIRED_LOCAL_ROOTS_JSON: &str = "retired-local-roots.json";
/// The SPIFFE bundle's `spiffe_sequence` (decimal), which export increases whenever the set
/// of published roots changes and `serve` answers with; absent means 1.
pub(crate) const SPIFFE_SEQUENCE: &str = "spiffe-sequence";
/// The SPIFFE bundle's `spiffe_refresh_hint` in seconds (decimal), which export derives from
/// `ROOT_RETENTION`; absent means [`DEFAULT_SPIFFE_REFRESH_HINT`].
pub(crate) const SPIFFE_REFRESH_HINT: &str = "spiffe-refresh-hint";

/// The refresh hint of the default `ROOT_RETENTION` (48 h): a quarter of it, 12 h.
pub(crate) const DEFAULT_SPIFFE_REFRESH_HINT: u64 = 12 * 3600;
/// The refresh hint when `ROOT_RETENTION` is `0s`: nothing is retained, so no quarter of it
/// can be promised; consumers re-read every minute, as often as the hooks run.
pub(crate) const ZERO_RETENTION_REFRESH_HINT: u64 = 60;
/// The longest hint we send: Deckhouse's constant, 28 days.
pub(crate) const MAX_SPIFFE_REFRESH_HINT: u64 = 28 * 24 * 3600;

/// `spiffe_refresh_hint` for a `ROOT_RETENTION`: a quarter of it (at least 1 s, at most 28
/// days), so a SPIFFE consumer sees a new root long before an old one goes; 60 s for `0s`.
pub(crate) fn spiffe_refresh_hint(root_retention: std::time::Duration) -> u64 {
    match root_retention.as_secs() {
        0 => ZERO_RETENTION_REFRESH_HINT,
        s => (s / 4).clamp(1, MAX_SPIFFE_REFRESH_HINT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refresh_hint_is_a_quarter_of_the_retention() {
        assert_eq!(
            spiffe_refresh_hint(crate::hook::settings::DEFAULT_ROOT_RETENTION),
            DEFAULT_SPIFFE_REFRESH_HINT
        );
        assert_eq!(spiffe_refresh_hint(Duration::ZERO), 60);
        assert_eq!(spiffe_refresh_hint(Duration::from_secs(3)), 1);
        assert_eq!(spiffe_refresh_hint(Duration::from_secs(400)), 100);
        assert_eq!(
            spiffe_refresh_hint(Duration::from_secs(1000 * 24 * 3600)),
            MAX_SPIFFE_REFRESH_HINT
        );
    }
}
