//! Which metadata a federation works from this run: the fresh response when the fetch
//! succeeded, else the last-known-good copy in `status.metadataCache` — validated by the same
//! rules as a fresh response, since an older run or product wrote it.

use crate::discovery::intake::admission;
use crate::discovery::network::report::{Attempt, FetchReport};
use crate::discovery::services::import_policy;
use crate::discovery::state::{FedState, Rules};
use crate::hook::settings::PeerLimits;
use crate::protocol::certs;
use crate::protocol::failure::{Failure, Reason};
use crate::protocol::federation::{Federation, SpecProblem};
use crate::protocol::metadata::{self, PrivateMetadata, PublicMetadata};
use serde_json::Value;
use std::collections::BTreeMap;

/// Here rather than in [`crate::discovery::state`]: holding re-derives the private metadata
/// from the cache, which is this module's decision.
impl FedState<'_> {
    /// Holds the federation's imports at the last-known-good: its cached private metadata
    /// instead of the fresh one (when it was working from a fresh one), else nothing — its
    /// objects are then kept as they are. The fresh document is not cached.
    pub(crate) fn hold_services(&mut self, why: Failure, rules: &Rules) {
        if self.private_cache.take().is_some() {
            let (private, problem, _) = effective_private(self.fed, None, rules);
            self.private = private;
            self.private_problem = problem;
        } else {
            self.private = None;
        }
        self.services_hold = Some(why);
    }
}

/// The state of every federation this run works on, in the order of `feds` (name order). A
/// federation whose trust domain is our own is skipped: importing our own services or trusting
/// our own root through a peer would loop traffic back to us. The private metadata keeps only
/// the hosts `spec.import` admits (the cache written back keeps the peer's whole document).
pub(crate) fn states<'f>(
    feds: &'f [Federation],
    fetched: &BTreeMap<String, FetchReport>,
    rules: &Rules,
) -> Vec<FedState<'f>> {
    let mut states = Vec::with_capacity(feds.len());
    for fed in feds {
        if fed.trust_domain.eq_ignore_ascii_case(rules.own_domain) {
            log::warn!(target: "reconcile", "IstioFederation {}: spec.trustDomain {} is this cluster's own trust domain; skipped", fed.name, fed.trust_domain);
            continue;
        }
        if let Some(SpecProblem::TrustDomain(why)) = &fed.spec_problem {
            // Neither cache is read: the trust domain decides what the peer may name.
            log::warn!(target: "reconcile", "IstioFederation {}: {why}; nothing is imported or trusted for it", fed.name);
            states.push(FedState::without_metadata(fed));
            continue;
        }
        let report = fetched.get(&fed.name);
        let (public, public_problem) = effective_public(fed, report, rules);
        let (mut private, private_problem, private_cache) = effective_private(fed, report, rules);
        let left_out_by_policy = match (&fed.import, private.as_mut()) {
            (Ok(spec), Some(p)) => import_policy::apply(spec, p),
            (Err(e), _) => {
                log::error!(target: "reconcile", "IstioFederation {}: {e}; its ServiceEntries are kept unchanged until it is fixed", fed.name);
                0
            }
            (Ok(_), None) => 0,
        };
        states.push(FedState {
            public,
            public_problem,
            private,
            private_problem,
            private_cache,
            left_out_by_policy,
            ..FedState::without_metadata(fed)
        });
    }
    states
}

/// The public metadata this run works from: the fresh document when the fetch succeeded, else
/// the cached one — whose problem, when it is unusable, is reported (and keeps what was
/// installed from it). A cache over the limits, or with a UUID another federation holds, is
/// unusable too ([`admission::public_problem`]).
pub(crate) fn effective_public(
    fed: &Federation,
    report: Option<&FetchReport>,
    rules: &Rules,
) -> (Option<PublicMetadata>, Option<Failure>) {
    let own = rules.own;
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
            } else if let Some(f) =
                admission::public_problem(&fed.name, &p, &rules.limits, rules.uuid_owners)
            {
                Err(f)
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

/// The cached private metadata of a federation, validated as a fresh response would be, and
/// within the same limits.
pub(crate) fn cached_private(
    fed: &Federation,
    limits: &PeerLimits,
) -> Option<Result<PrivateMetadata, Failure>> {
    let raw = fed.cached_private.as_ref()?;
    Some(
        serde_json::from_str::<Value>(raw.get())
            .map_err(|e| Failure::new(Reason::InvalidPrivateMetadata, format!("not JSON: {e}")))
            .and_then(|v| metadata::validate_private(&v, &fed.trust_domain))
            .and_then(|p| match admission::private_problem(&p, limits) {
                Some(f) => Err(f),
                None => Ok(p),
            }),
    )
}

/// The private metadata this run works from, a problem with it, and the cache to write.
type EffectivePrivate = (Option<PrivateMetadata>, Option<Failure>, Option<Value>);

/// The private metadata this run works from. A fresh document with dropped items carries over
/// what the last good one provided (see [`PrivateMetadata::carry_over`]); services in our own
/// domain are dropped from either. Nothing is carried over that would take the document past
/// the limits (the next run would find its own cache unusable).
pub(crate) fn effective_private(
    fed: &Federation,
    report: Option<&FetchReport>,
    rules: &Rules,
) -> EffectivePrivate {
    let own_domain = rules.own_domain;
    if let Some(Attempt { result: Ok(p), .. }) = report.and_then(|r| r.private.as_ref()) {
        let mut p = p.clone();
        if !p.dropped.is_empty() {
            if let Some(Ok(last_good)) = cached_private(fed, &rules.limits) {
                let mut carried = p.clone();
                carried.carry_over(&last_good);
                if admission::private_problem(&carried, &rules.limits).is_none() {
                    p = carried;
                }
            }
        }
        let cache = p.to_cache();
        metadata::drop_own_domain(&mut p, own_domain);
        return (Some(p), None, Some(cache));
    }
    match cached_private(fed, &rules.limits) {
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
    use crate::discovery::intake::admission::UuidOwners;
    use crate::protocol::metadata::Own;
    use serde_json::json;

    fn federation(cache: Value) -> Federation {
        Federation::parse(&json!({
            "metadata": {"name": "b"},
            "spec": {"trustDomain": "b.local", "metadataEndpoint": "https://b.local/metadata"},
            "status": {"metadataCache": cache},
        }))
        .unwrap()
    }

    const OWN: Own<'static> = Own {
        cluster_uuid: "own",
        root_fingerprints: &[],
        now: 0,
    };

    fn with_rules<T>(own_domain: &str, limits: PeerLimits, f: impl FnOnce(&Rules) -> T) -> T {
        let owners = UuidOwners::new();
        f(&Rules {
            own: &OWN,
            own_domain,
            limits,
            uuid_owners: &owners,
        })
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
        let (p, problem, cache) = with_rules("my.cluster", PeerLimits::default(), |r| {
            effective_private(&fed, Some(&report), r)
        });
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
        let (p, _, _) = with_rules("my.cluster", PeerLimits::default(), |r| {
            effective_private(&fed, Some(&report), r)
        });
        let p = p.unwrap();
        assert_eq!((p.carried_over, p.ingress_gateways.len()), (0, 0));
    }

    #[test]
    fn limits_apply_to_caches_and_to_what_is_carried_over() {
        let fed = federation(json!({"private": {
            "ingressGateways": [{"address": "1.1.1.1", "port": 15443}],
            "publicServices": [{"hostname": "a.b.local", "ports": [{"name": "http", "port": 80}]},
                               {"hostname": "b.b.local", "ports": [{"name": "http", "port": 80}]}]}}));
        let one_service = PeerLimits {
            services: 1,
            ..PeerLimits::default()
        };
        // The cache has two services: over the limit, unusable as a whole.
        let (p, problem, _) = with_rules("my.cluster", one_service, |r| {
            effective_private(&fed, None, r)
        });
        assert!(p.is_none());
        let problem = problem.unwrap();
        assert_eq!(problem.reason, Reason::LimitExceeded);
        assert!(
            problem
                .message
                .contains("publicServices carries 2 services, more than MAX_SERVICES_PER_PEER=1"),
            "{}",
            problem.message
        );
        // A fresh document with a drop carries nothing over that would pass the limit.
        let report = fresh(json!({
            "ingressGateways": [{"address": "1.1.1.1", "port": 15443}],
            "publicServices": [{"hostname": "c.b.local", "ports": [{"name": "http", "port": 81}]},
                               {"hostname": "x.other.local", "ports": [{"name": "http", "port": 81}]}]}));
        let two = PeerLimits {
            services: 2,
            ..PeerLimits::default()
        };
        let (p, _, cache) = with_rules("my.cluster", two, |r| {
            effective_private(&fed, Some(&report), r)
        });
        let p = p.unwrap();
        assert_eq!((p.carried_over, p.public_services.len()), (0, 1));
        assert_eq!(
            cache.unwrap()["publicServices"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn an_unusable_cache_is_a_problem_not_an_absence() {
        let fed = federation(
            json!({"public": {"clusterUUID": "peer"}, "private": {"publicServices": []}}),
        );
        let states_of = |fed: &Federation, own_domain: &str| {
            with_rules(own_domain, PeerLimits::default(), |r| {
                states(std::slice::from_ref(fed), &BTreeMap::new(), r).len()
            })
        };
        let owners = UuidOwners::new();
        let rules = Rules {
            own: &OWN,
            own_domain: "my.cluster",
            limits: PeerLimits::default(),
            uuid_owners: &owners,
        };
        let all = states(std::slice::from_ref(&fed), &BTreeMap::new(), &rules);
        let state = &all[0];
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
        assert_eq!(states_of(&own_domain, "b.local"), 0);
        assert_eq!(states_of(&own_domain, "my.cluster"), 1);
    }
}
