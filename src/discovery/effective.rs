//! Which metadata a federation works from this run: the fresh response when the fetch
//! succeeded, else the last-known-good copy in `status.metadataCache` — validated by the same
//! rules as a fresh response, since an older run or product wrote it.

use super::report::{Attempt, FetchReport};
use super::retention::Retention;
use crate::protocol::certs;
use crate::protocol::failure::{Failure, Reason};
use crate::protocol::federation::Federation;
use crate::protocol::json;
use crate::protocol::metadata::{self, Own, PrivateMetadata, PublicMetadata};
use serde_json::Value;
use std::collections::BTreeMap;

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
    /// Root rotation: retired roots still trusted, distrusted ones (filled by
    /// [`super::retention::apply`]).
    pub retention: Retention,
}

impl FedState<'_> {
    /// Whether deletes of this federation's ServiceEntries are held back this run: its cached
    /// metadata is unusable, or its fresh private metadata had items we had to drop. A service
    /// that is now invalid may well be one we imported before, and a bad peer must not cost us
    /// it; new and changed objects are still written (docs/ARCHITECTURE.md, "Discovery").
    pub fn holds_back_deletes(&self) -> bool {
        self.public_problem.is_some()
            || self.private_problem.is_some()
            || self.private.as_ref().is_some_and(|p| !p.dropped.is_empty())
    }

    /// Whether the trust entries installed for this federation stay as they are: its cached
    /// public metadata cannot be read, and odd input never removes trust.
    pub fn keeps_trust_entries(&self) -> bool {
        self.public_problem.is_some()
    }
}

/// The state of every federation this run works on, in the order of `feds` (name order). A
/// federation whose trust domain is our own is skipped: importing our own services or trusting
/// our own root through a peer would loop traffic back to us.
pub fn states<'f>(
    feds: &'f [Federation],
    fetched: &BTreeMap<String, FetchReport>,
    own: &Own,
    own_domain: &str,
) -> Vec<FedState<'f>> {
    let mut states = Vec::with_capacity(feds.len());
    for fed in feds {
        if fed.trust_domain == own_domain {
            log::warn!(target: "reconcile", "IstioFederation {}: spec.trustDomain {} is this cluster's own trust domain; skipped", fed.name, fed.trust_domain);
            continue;
        }
        let report = fetched.get(&fed.name);
        let (public, public_problem) = effective_public(fed, report, own);
        let (private, private_problem, private_cache) = effective_private(fed, report, own_domain);
        states.push(FedState {
            fed,
            public,
            public_problem,
            private,
            private_problem,
            private_cache,
            retention: Retention::default(),
        });
    }
    states
}

/// The public metadata this run works from: the fresh document when the fetch succeeded, else
/// the cached one — whose problem, when it is unusable, is reported (and keeps what was
/// installed from it).
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

/// The private metadata this run works from. A fresh document with dropped items carries over
/// what the last good one provided (see [`PrivateMetadata::carry_over`]); services in our own
/// domain are dropped from either.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn federation(cache: Value) -> Federation {
        Federation::parse(&json!({
            "metadata": {"name": "b"},
            "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://b.local/metadata"},
            "status": {"metadataCache": cache},
        }))
        .unwrap()
    }

    fn fresh(doc: Value) -> FetchReport {
        FetchReport {
            private: Some(Attempt {
                url: "https://b.local/private".into(),
                result: metadata::validate_private(&doc, "b.local"),
                seconds: 0.0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_fresh_document_with_drops_carries_over_the_last_good_one() {
        let fed = federation(json!({"private": {
            "ingressGateways": [{"address": "1.1.1.1", "port": 15443}],
            "publicServices": [{"hostname": "a.b.local", "ports": [{"name": "http", "port": 80}]}]}}));
        // The only gateway is invalid, and so is a's port: both come from the last good document.
        let report = fresh(json!({
            "ingressGateways": [{"address": "not an address", "port": 15443}],
            "publicServices": [{"hostname": "a.b.local", "ports": [{"name": "http", "port": "80"}]},
                               {"hostname": "c.b.local", "ports": [{"name": "http", "port": 81}]}]}));
        let (p, problem, cache) = effective_private(&fed, Some(&report), "my.cluster");
        let p = p.unwrap();
        assert!(problem.is_none());
        assert_eq!(p.carried_over, 2);
        assert_eq!(p.ingress_gateways[0].address, "1.1.1.1");
        let hosts: Vec<&str> = p
            .public_services
            .iter()
            .map(|s| s.hostname.as_str())
            .collect();
        assert_eq!(hosts, ["c.b.local", "a.b.local"]);
        // What is cached next is what this run works from, carried-over items included.
        assert_eq!(cache.unwrap()["ingressGateways"][0]["address"], "1.1.1.1");

        // A clean fresh document replaces the last good one as a whole.
        let report = fresh(json!({"ingressGateways": [], "publicServices": []}));
        let (p, _, _) = effective_private(&fed, Some(&report), "my.cluster");
        let p = p.unwrap();
        assert_eq!((p.carried_over, p.ingress_gateways.len()), (0, 0));
    }

    #[test]
    fn an_unusable_cache_is_a_problem_not_an_absence() {
        let fed = federation(
            json!({"public": {"clusterUUID": "peer"}, "private": {"publicServices": []}}),
        );
        let own = Own {
            cluster_uuid: "own",
            root_fingerprints: &[],
            now: 0,
        };
        let state = &states(
            std::slice::from_ref(&fed),
            &BTreeMap::new(),
            &own,
            "my.cluster",
        )[0];
        assert!(state.public.is_none() && state.private.is_none());
        let public = state.public_problem.as_ref().unwrap();
        assert_eq!(public.reason, Reason::InvalidPublicMetadata);
        assert!(public
            .message
            .starts_with("Cached public metadata is unusable: "));
        let private = state.private_problem.as_ref().unwrap();
        assert_eq!(private.reason, Reason::InvalidPrivateMetadata);
        assert!(state.keeps_trust_entries() && state.holds_back_deletes());
        // Our own trust domain is never a peer.
        let own_domain = federation(json!({}));
        assert!(states(
            std::slice::from_ref(&own_domain),
            &BTreeMap::new(),
            &own,
            "b.local"
        )
        .is_empty());
    }
}
