//! The vocabulary of what went wrong with a peer: every condition reason the hook writes, and
//! [`Failure`], a reason with its operator-facing message (docs/reference/conditions.md).
//!
//! The reasons are one closed set so that a decision about a reason is a `match`, never a
//! comparison of strings, and so that the texts — Deckhouse's names where Deckhouse has one,
//! which dashboards and alerts match on — are written down once, in [`Reason::as_str`].
//! It lives in the protocol layer because validating a peer's documents produces reasons too;
//! discovery adds the ones only it decides (`Succeeded`, `AwaitingPrivate`, …).

use serde::{Serialize, Serializer};
use std::fmt;

enum_with_all! {
/// A condition reason, as written to `status.conditions[].reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The exchange, the trust bundle or the import worked.
    Succeeded,
    /// Transport failure, timeout or deadline (Deckhouse's reason).
    FetchFailed,
    /// TLS handshake or verification failed, or the configured CA is unusable.
    TlsError,
    /// HTTP status other than 200 (Deckhouse's reason).
    NonOkResponse,
    /// The body is not JSON (Deckhouse's reason).
    InvalidJson,
    /// The body exceeds `FETCH_MAX_BYTES`.
    ResponseTooLarge,
    /// Waiting for a successful public exchange (Deckhouse's reason).
    AwaitingPublic,
    /// Public metadata is there, private metadata not yet.
    AwaitingPrivate,
    /// The key-pair Secret has no `priv.pem`: the private request cannot be signed.
    KeyPairMissing,
    /// `priv.pem` is not a usable Ed25519 key (Deckhouse's reason).
    TokenGenerationFailed,
    /// The public document is unusable as a whole.
    InvalidPublicMetadata,
    /// The private document, or an item of it, is invalid.
    InvalidPrivateMetadata,
    /// No root certificate of the peer can be trusted.
    CertificateRejected,
    /// A service lies outside the peer's trust domain, or inside ours.
    HostnameOutOfScope,
    /// The peer publishes no ingress gateways.
    NoIngressGateways,
    /// The trust-bundle object cannot be edited safely.
    TrustBundleUnavailable,
    /// The IstioFederation's spec can be read but not acted on as it stands: an unusable
    /// `spec.trustDomain`, or credentials in `spec.metadataEndpoint`.
    InvalidSpec,
    /// The peer's document carries more roots, services or gateways than `MAX_*_PER_PEER`
    /// allow; refused as a whole, the last-known-good metadata is kept.
    LimitExceeded,
    /// What the peer sends would make an object or status patch the hook writes larger than
    /// the 900 KiB budget; the federation is held at its last-known-good, the others proceed.
    ObjectTooLarge,
    /// The peer publishes a `clusterUUID` another IstioFederation already holds.
    DuplicateClusterUuid,
    /// `spec.import` of the IstioFederation cannot be read.
    InvalidImportPolicy,
    /// The data-plane probe's request failed or answered other than 200 (Deckhouse's reason,
    /// condition `DataplaneConnectionReady`).
    ProbeFailed,
    /// The peer's private metadata names no health-check service to probe (Deckhouse's reason).
    ConfigurationError,
    /// No public metadata of the peer yet, so there is nothing to probe (Deckhouse's reason).
    MetadataUnavailable,
    /// The fresh public metadata names another `clusterUUID` than the one pinned in the
    /// cached public metadata (Deckhouse's reason); nothing of it is used until re-pinned.
    ClusterUuidMismatch,
    /// The peer's trust domain is `cluster.local`, accepted by annotation: a warning.
    ClusterLocalTrustDomain,
    /// The mesh config's `serviceEntryVisibility` hides the federation namespace's
    /// ServiceEntries from other namespaces.
    HiddenByServiceEntryVisibility,
    /// The AuthorizationPolicy bounding the peer is not in place yet: its roots are not added
    /// until it is (docs/security.md, "Exported means reachable").
    AwaitingAuthorizationPolicy,
    /// `AUTHORIZATION_POLICIES=false`: the peer's workloads are not bounded by the hook.
    EnforcementDisabled,
}
}

impl Reason {
    /// The text on the wire. Changing one breaks every alert that matches on it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Succeeded => "Succeeded",
            Reason::FetchFailed => "FetchFailed",
            Reason::TlsError => "TLSError",
            Reason::NonOkResponse => "NonOKResponse",
            Reason::InvalidJson => "InvalidJSON",
            Reason::ResponseTooLarge => "ResponseTooLarge",
            Reason::AwaitingPublic => "AwaitingPublic",
            Reason::AwaitingPrivate => "AwaitingPrivate",
            Reason::KeyPairMissing => "KeyPairMissing",
            Reason::TokenGenerationFailed => "TokenGenerationFailed",
            Reason::InvalidPublicMetadata => "InvalidPublicMetadata",
            Reason::InvalidPrivateMetadata => "InvalidPrivateMetadata",
            Reason::CertificateRejected => "CertificateRejected",
            Reason::HostnameOutOfScope => "HostnameOutOfScope",
            Reason::NoIngressGateways => "NoIngressGateways",
            Reason::TrustBundleUnavailable => "TrustBundleUnavailable",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::LimitExceeded => "LimitExceeded",
            Reason::ObjectTooLarge => "ObjectTooLarge",
            Reason::DuplicateClusterUuid => "DuplicateClusterUUID",
            Reason::InvalidImportPolicy => "InvalidImportPolicy",
            Reason::ProbeFailed => "ProbeFailed",
            Reason::ConfigurationError => "ConfigurationError",
            Reason::MetadataUnavailable => "MetadataUnavailable",
            Reason::ClusterUuidMismatch => "ClusterUUIDMismatch",
            Reason::ClusterLocalTrustDomain => "ClusterLocalTrustDomain",
            Reason::HiddenByServiceEntryVisibility => "HiddenByServiceEntryVisibility",
            Reason::AwaitingAuthorizationPolicy => "AwaitingAuthorizationPolicy",
            Reason::EnforcementDisabled => "EnforcementDisabled",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A failed fetch or validation: a condition reason and an operator-facing message. The
/// message never carries run-to-run detail, so a repeated failure does not churn status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Failure {
        Failure {
            reason,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_texts_are_deckhouses() {
        let all = [
            (Reason::Succeeded, "Succeeded"),
            (Reason::FetchFailed, "FetchFailed"),
            (Reason::TlsError, "TLSError"),
            (Reason::NonOkResponse, "NonOKResponse"),
            (Reason::InvalidJson, "InvalidJSON"),
            (Reason::ResponseTooLarge, "ResponseTooLarge"),
            (Reason::AwaitingPublic, "AwaitingPublic"),
            (Reason::AwaitingPrivate, "AwaitingPrivate"),
            (Reason::KeyPairMissing, "KeyPairMissing"),
            (Reason::TokenGenerationFailed, "TokenGenerationFailed"),
            (Reason::InvalidPublicMetadata, "InvalidPublicMetadata"),
            (Reason::InvalidPrivateMetadata, "InvalidPrivateMetadata"),
            (Reason::CertificateRejected, "CertificateRejected"),
            (Reason::HostnameOutOfScope, "HostnameOutOfScope"),
            (Reason::NoIngressGateways, "NoIngressGateways"),
            (Reason::TrustBundleUnavailable, "TrustBundleUnavailable"),
            (Reason::InvalidSpec, "InvalidSpec"),
            (Reason::LimitExceeded, "LimitExceeded"),
            (Reason::ObjectTooLarge, "ObjectTooLarge"),
            (Reason::DuplicateClusterUuid, "DuplicateClusterUUID"),
            (Reason::InvalidImportPolicy, "InvalidImportPolicy"),
            (Reason::ProbeFailed, "ProbeFailed"),
            (Reason::ConfigurationError, "ConfigurationError"),
            (Reason::MetadataUnavailable, "MetadataUnavailable"),
            (Reason::ClusterUuidMismatch, "ClusterUUIDMismatch"),
            (Reason::ClusterLocalTrustDomain, "ClusterLocalTrustDomain"),
            (
                Reason::HiddenByServiceEntryVisibility,
                "HiddenByServiceEntryVisibility",
            ),
            (
                Reason::AwaitingAuthorizationPolicy,
                "AwaitingAuthorizationPolicy",
            ),
            (Reason::EnforcementDisabled, "EnforcementDisabled"),
        ];
        for (reason, text) in all {
            assert_eq!(reason.to_string(), text);
            assert_eq!(serde_json::to_value(reason).unwrap(), text);
        }
    }
}
