//! Which metadata a federation works from this run: the fresh response when the fetch
//! succeeded, else the last-known-good copy in `status.metadataCache` — validated by the same
//! rules as a fresh response, since an older run or product wrote it.

use super::report::{Attempt, FetchReport};
use crate::protocol::certs;
use crate::protocol::failure::{Failure, Reason};
use crate::protocol::federation::Federation;
use crate::protocol::json;
use crate::protocol::metadata::{self, Own, PrivateMetadata, PublicMetadata};
use serde_json::Value;

/// Per-federation state derived this run.
pub struct FedState<'f> {
    pub fed: &'f Federation,
    pub public: Option<PublicMetadata>,
    pub public_problem: Option<Failure>,
    pub private: Option<PrivateMetadata>,
    pub private_problem: Option<Failure>,
    /// `status.metadataCache.private` to write: the fresh document as validated, with what it
    /// carried over from the last good one; `None` without a successful fetch.
    pub private_cache: Option<Value>,
}

pub fn effective_public(
    fed: &Federation,
    report: Option<&FetchReport>,
    own: &Own,
) -> (Option<PublicMetadata>, Option<Failure>) {
    if let Some(Attempt { result: Ok(p), .. }) = report.and_then(|r| r.public.as_ref()) {
        return (Some(p.clone()), None);
    }
    match &fed.cached_public {
        None => (None, None),
        Some(v) => match metadata::validate_public(v, own).and_then(|p| {
            // A cached root that is not even a certificate is a corrupted cache, not a peer's
            // expired or mis-issued root: treat the whole cache as unusable (and keep what we
            // installed from it) rather than as "no acceptable root" (which removes trust).
            let corrupt = p.roots.is_empty()
                && p.rejected.iter().any(|(_, r)| {
                    matches!(
                        r,
                        certs::CertRejection::Unparsable(_)
                            | certs::CertRejection::NotCertificate { .. }
                    )
                });
            if corrupt {
                Err(Failure::new(
                    Reason::CertificateRejected,
                    format!("rootCA: {}", p.rejected_summary()),
                ))
            } else {
                Ok(p)
            }
        }) {
            Ok(p) => (Some(p), None),
            Err(f) => {
                log::warn!(target: "reconcile", "IstioFederation {}: cached public metadata is unusable: {}", fed.name, f.message);
                (
                    None,
                    Some(Failure::new(
                        f.reason,
                        format!("Cached public metadata is unusable: {}", f.message),
                    )),
                )
            }
        },
    }
}

/// The cached private metadata of a federation, validated as a fresh response would be.
pub fn cached_private(fed: &Federation) -> Option<Result<PrivateMetadata, Failure>> {
    let raw = fed.cached_private.as_ref()?;
    Some(
        serde_json::from_str::<json::Node>(raw.get())
            .map_err(|e| Failure::new(Reason::InvalidPrivateMetadata, format!("not JSON: {e}")))
            .and_then(|v| metadata::validate_private(&v, &fed.trust_domain)),
    )
}

/// The private metadata this run works from, a problem with it, and the cache to write.
type EffectivePrivate = (Option<PrivateMetadata>, Option<Failure>, Option<Value>);

pub fn effective_private(
    fed: &Federation,
    report: Option<&FetchReport>,
    own_domain: &str,
) -> EffectivePrivate {
    if let Some(Attempt { result: Ok(p), .. }) = report.and_then(|r| r.private.as_ref()) {
        let mut p = p.clone();
        if !p.dropped.is_empty() {
            if let Some(Ok(last_good)) = cached_private(fed) {
                p.carry_over(&last_good);
            }
        }
        let cache = p.to_cache();
        metadata::drop_own_domain(&mut p, own_domain);
        return (Some(p), None, Some(cache));
    }
    match cached_private(fed) {
        None => (None, None, None),
        Some(Ok(mut p)) => {
            metadata::drop_own_domain(&mut p, own_domain);
            (Some(p), None, None)
        }
        Some(Err(f)) => {
            log::warn!(target: "reconcile", "IstioFederation {}: cached private metadata is unusable: {}", fed.name, f.message);
            (
                None,
                Some(Failure::new(
                    f.reason,
                    format!("Cached private metadata is unusable: {}", f.message),
                )),
                None,
            )
        }
    }
}
