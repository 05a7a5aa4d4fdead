//! Whether a peer's document is admitted as a whole: within the per-peer limits
//! (`MAX_ROOTS_PER_PEER`, `MAX_SERVICES_PER_PEER`, `MAX_GATEWAYS_PER_PEER`) and, for public
//! metadata, carrying a cluster UUID no other federation holds (docs/security.md).
//!
//! A fresh document that is refused here is treated like any failed fetch — the exchange
//! condition says why and the last-known-good metadata is used — and a cached one like any
//! unusable cache: what was installed from it is kept and nothing of it is deleted.

use crate::discovery::network::report::{Attempt, FetchReport};
use crate::hook::settings::PeerLimits;
use crate::protocol::claims::{self, UuidClaim};
use crate::protocol::failure::{Failure, Reason};
use crate::protocol::federation::Federation;
use crate::protocol::metadata::{PrivateMetadata, PublicMetadata};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// UUID → the federation it belongs to ([`claims::uuid_owners`]).
pub(crate) type UuidOwners = BTreeMap<String, String>;

/// Who holds which cluster UUID this run: every readable federation's cached UUID and the
/// UUID of its fresh public metadata (as admitted by the limits).
pub(crate) fn uuid_owners(
    feds: &[Federation],
    fetched: &BTreeMap<String, FetchReport>,
) -> UuidOwners {
    let claims: Vec<UuidClaim> = feds
        .iter()
        .map(|fed| UuidClaim {
            federation: &fed.name,
            cached: claims::cached_uuid(fed),
            fresh: fresh_public(fetched.get(&fed.name)).map(|p| p.cluster_uuid.as_str()),
        })
        .collect();
    claims::uuid_owners(&claims)
        .into_iter()
        .map(|(u, f)| (u.to_string(), f.to_string()))
        .collect()
}

fn fresh_public(report: Option<&FetchReport>) -> Option<&PublicMetadata> {
    match report?.public.as_ref()? {
        Attempt { result: Ok(p), .. } => Some(p),
        _ => None,
    }
}

/// Why a public document is refused as a whole: too many certificates in `rootCA`.
pub(crate) fn public_over_limits(p: &PublicMetadata, limits: &PeerLimits) -> Option<Failure> {
    let roots = p.roots.len() + p.rejected.len();
    (roots > limits.roots).then(|| {
        Failure::new(
            Reason::LimitExceeded,
            format!("rootCA carries {roots} certificates, more than MAX_ROOTS_PER_PEER={}; the document is refused as a whole", limits.roots),
        )
    })
}

/// Why a public document is refused as a whole: over the limits, or a cluster UUID that
/// belongs to another federation.
pub(crate) fn public_problem(
    fed: &str,
    p: &PublicMetadata,
    limits: &PeerLimits,
    owners: &UuidOwners,
) -> Option<Failure> {
    public_over_limits(p, limits).or_else(|| uuid_problem(fed, p, owners))
}

fn uuid_problem(fed: &str, p: &PublicMetadata, owners: &UuidOwners) -> Option<Failure> {
    let owner = owners.get(&p.cluster_uuid).filter(|o| *o != fed)?;
    Some(Failure::new(
        Reason::DuplicateClusterUuid,
        format!(
            "clusterUUID {} belongs to IstioFederation {owner}; the document is refused",
            p.cluster_uuid
        ),
    ))
}

/// Why a private document is refused as a whole: more gateways or services than allowed.
pub(crate) fn private_problem(p: &PrivateMetadata, limits: &PeerLimits) -> Option<Failure> {
    let (gateways, services) = (p.ingress_gateways.len(), p.public_services.len());
    if gateways > limits.gateways {
        return Some(Failure::new(
            Reason::LimitExceeded,
            format!("ingressGateways carries {gateways} gateways, more than MAX_GATEWAYS_PER_PEER={}; the document is refused as a whole", limits.gateways),
        ));
    }
    (services > limits.services).then(|| {
        Failure::new(
            Reason::LimitExceeded,
            format!("publicServices carries {services} services, more than MAX_SERVICES_PER_PEER={}; the document is refused as a whole", limits.services),
        )
    })
}

/// The reports with every fresh document that is refused turned into a failed attempt, and
/// who holds which UUID. The limits are applied first, so a document refused for its size
/// claims no UUID. A refused public document takes the private one with it (it was fetched
/// with a token addressed to that document's UUID). Borrowed unchanged in the usual case of
/// nothing refused.
pub(crate) fn admit<'r>(
    feds: &[Federation],
    fetched: &'r BTreeMap<String, FetchReport>,
    limits: &PeerLimits,
) -> (Cow<'r, BTreeMap<String, FetchReport>>, UuidOwners) {
    let mut reports = Cow::Borrowed(fetched);
    let by_name: BTreeMap<&str, &Federation> = feds.iter().map(|f| (f.name.as_str(), f)).collect();
    refuse(&mut reports, |name, r| {
        let public = fresh_public(Some(r)).and_then(|p| {
            by_name
                .get(name)
                .and_then(|fed| claims::pin_problem(fed, p))
                .or_else(|| public_over_limits(p, limits))
        });
        let private = match &r.private {
            Some(Attempt { result: Ok(p), .. }) if public.is_none() => private_problem(p, limits),
            _ => None,
        };
        (public, private)
    });
    let owners = uuid_owners(feds, &reports);
    refuse(&mut reports, |name, r| {
        (
            fresh_public(Some(r)).and_then(|p| uuid_problem(name, p, &owners)),
            None,
        )
    });
    (reports, owners)
}

/// Turns the documents `decide` refuses (public, private) into failed attempts.
fn refuse(
    reports: &mut Cow<'_, BTreeMap<String, FetchReport>>,
    decide: impl Fn(&str, &FetchReport) -> (Option<Failure>, Option<Failure>),
) {
    let refused: Vec<(String, Option<Failure>, Option<Failure>)> = reports
        .iter()
        .filter_map(|(name, r)| match decide(name, r) {
            (None, None) => None,
            (public, private) => Some((name.clone(), public, private)),
        })
        .collect();
    if refused.is_empty() {
        return;
    }
    let out = reports.to_mut();
    for (name, public, private) in refused {
        let Some(r) = out.get_mut(&name) else {
            continue;
        };
        if let (Some(f), Some(a)) = (public, r.public.as_mut()) {
            log::warn!(target: "reconcile", "IstioFederation {name}: public metadata refused: {}", f.message);
            a.result = Err(f);
            if r.private.take().is_some() || r.private_skipped.is_none() {
                r.private_skipped = Some(Failure::new(
                    Reason::AwaitingPublic,
                    "Public metadata exchange has not succeeded yet.",
                ));
            }
        }
        if let (Some(f), Some(a)) = (private, r.private.as_mut()) {
            log::warn!(target: "reconcile", "IstioFederation {name}: private metadata refused: {}", f.message);
            a.result = Err(f);
        }
    }
}
