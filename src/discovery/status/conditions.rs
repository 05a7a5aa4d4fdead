//! The conditions a run sets on each IstioFederation, decided from its effective metadata and
//! the fetch report. Messages say what to fix and carry no run-to-run detail, so a repeated
//! failure rewrites nothing (docs/reference/conditions.md).

use crate::discovery::network::probe;
use crate::discovery::network::report::{FetchReport, ProbeResult};
use crate::discovery::state::{FedState, TrustExcess};
use crate::discovery::status::patch::{Condition, ConditionStatus, ConditionType};
use crate::discovery::trust::retention;
use crate::discovery::trust::trust_bundle::TrustBundleError;
use crate::hook::timefmt;
use crate::protocol::failure::{Failure, Reason};
use crate::protocol::federation::SpecProblem;
use crate::protocol::labels::ACCEPT_CLUSTER_LOCAL_ANNOTATION;
use crate::protocol::metadata::PrivateMetadata;
use crate::protocol::names;
use ConditionStatus::{False, True, Unknown};
use ConditionType::{
    DataplaneConnectionReady as DATAPLANE, PrivateMetadataExchangeReady as PRIVATE,
    PublicMetadataExchangeReady as PUBLIC, ServicesImported as SERVICES, TrustBundleReady as TRUST,
};

/// A root that expires within this many seconds is called out in the condition message.
const EXPIRY_WARNING: i64 = 30 * 24 * 3600;
/// At most this many dropped items are listed in a condition message.
const MAX_LISTED: usize = 5;

/// The conditions this run sets on one federation: the exchange conditions only for what was
/// fetched this run (offline runs keep the last ones), then the trust bundle and the import,
/// which follow from the effective metadata every run.
pub(crate) fn for_federation(
    st: &FedState,
    report: Option<&FetchReport>,
    trust_problem: Option<&TrustBundleError>,
    now: i64,
) -> Vec<Condition> {
    let mut conditions = Vec::with_capacity(4);
    match &st.fed.spec_problem {
        Some(problem) => conditions.extend(spec_conditions(st, problem)),
        None => {
            if let Some(r) = report {
                conditions.extend(exchange_conditions(r));
            }
        }
    }
    if st.refuses_trust_domain() {
        return conditions;
    }
    conditions.push(trust_condition(st, trust_problem, now));
    conditions.push(services_condition(st));
    conditions
}

/// The warnings of a federation, each present only while it applies: a peer on `cluster.local`
/// accepted by annotation, and ServiceEntries the mesh config hides (`hidden`, the message
/// of [`crate::discovery::services::visibility::hidden`]).
pub(crate) fn warnings(st: &FedState, hidden: Option<&str>) -> Vec<Condition> {
    let mut out = Vec::new();
    if st.fed.is_accepted_cluster_local() {
        out.push(Condition::new(
            ConditionType::TrustDomainWarning,
            ConditionStatus::True,
            Reason::ClusterLocalTrustDomain,
            format!("spec.trustDomain is cluster.local, accepted by annotation {ACCEPT_CLUSTER_LOCAL_ANNOTATION}: cluster.local is Istio's alias for the local trust domain, so an AuthorizationPolicy naming it (or copied from a cluster on the default domain) also admits this peer's workloads; no AuthorizationPolicy bounds what they reach; and its hosts *.cluster.local shadow the same names of any other cluster on the default domain. At most one IstioFederation may name cluster.local."),
        ));
    }
    if let Some(m) = hidden {
        out.push(Condition::new(
            ConditionType::ServiceEntriesHidden,
            ConditionStatus::True,
            Reason::HiddenByServiceEntryVisibility,
            m,
        ));
    }
    out
}

/// The conditions of a spec that is read but not acted on (docs/reference/conditions.md,
/// `InvalidSpec`): no request is made, whether or not this run is offline. A refused trust
/// domain also sets the trust and import conditions: nothing is trusted or imported for it.
fn spec_conditions(st: &FedState, problem: &SpecProblem) -> Vec<Condition> {
    let why = problem.message();
    let mut out = vec![
        Condition::new(
            PUBLIC,
            False,
            Reason::InvalidSpec,
            format!("{why}; no request is made."),
        ),
        Condition::new(
            PRIVATE,
            False,
            Reason::InvalidSpec,
            format!("{why}; no request is made."),
        ),
    ];
    if let SpecProblem::TrustDomain(_) = problem {
        let earlier = if st
            .fed
            .trust_domain
            .eq_ignore_ascii_case(names::LOCAL_TRUST_DOMAIN_ALIAS)
        {
            "Root certificates installed for it earlier are removed."
        } else {
            "Root certificates installed earlier are kept until it is fixed."
        };
        out.push(Condition::new(
            TRUST,
            False,
            Reason::InvalidSpec,
            format!("{why}; no root certificate is trusted for it. {earlier}"),
        ));
        out.push(Condition::new(
            SERVICES,
            False,
            Reason::InvalidSpec,
            format!("{why}; no services are imported. ServiceEntries created earlier are kept."),
        ));
    }
    out
}

/// The exchange conditions of what the network phase did: the public request, then the
/// private one, or why it was not made.
pub(crate) fn exchange_conditions(r: &FetchReport) -> Vec<Condition> {
    let mut out = Vec::with_capacity(2);
    if let Some(a) = &r.public {
        out.push(match &a.result {
            Ok(_) => Condition::new(
                PUBLIC,
                True,
                Reason::Succeeded,
                "Public metadata exchange succeeded.",
            ),
            Err(f) => Condition::new(PUBLIC, False, f.reason, f.message.clone()),
        });
    }
    match (&r.private, &r.private_skipped) {
        (Some(a), _) => out.push(match &a.result {
            Ok(_) => Condition::new(
                PRIVATE,
                True,
                Reason::Succeeded,
                "Private metadata exchange succeeded.",
            ),
            Err(f) => Condition::new(PRIVATE, False, f.reason, f.message.clone()),
        }),
        (None, Some(f)) => {
            // Waiting for the public exchange says nothing yet about the private one.
            let st = match f.reason {
                Reason::AwaitingPublic => Unknown,
                _ => False,
            };
            out.push(Condition::new(PRIVATE, st, f.reason, f.message.clone()));
        }
        (None, None) => {}
    }
    out
}

/// The host the data-plane probe targets for this federation, or the condition saying why
/// there is none — Deckhouse's checks in Deckhouse's order and words: public metadata with a
/// cluster UUID, then private metadata, then a health-check service in it (docs/operating.md,
/// "Data-plane probe"). The private metadata is the effective one (fresh, else the validated cache)
/// after `spec.import`: a host that is not imported has no ServiceEntry to travel by.
pub(crate) fn probe_target<'s>(st: &'s FedState) -> Result<&'s str, Condition> {
    let configuration =
        |msg: String| Condition::new(DATAPLANE, False, Reason::ConfigurationError, msg);
    if st.public.as_ref().is_none_or(|p| p.cluster_uuid.is_empty()) {
        return Err(Condition::new(
            DATAPLANE,
            False,
            Reason::MetadataUnavailable,
            "public metadata not available yet",
        ));
    }
    let Some(private) = &st.private else {
        return Err(configuration("private metadata not available yet".into()));
    };
    if private.public_services.is_empty() && st.left_out_by_policy == 0 {
        return Err(configuration(
            "no public services in private metadata".into(),
        ));
    }
    match probe::target(private) {
        Some(host) => Ok(host),
        None if st.left_out_by_policy > 0 => Err(configuration(format!(
            "alliance-healthcheck service not found in remote public services ({} host(s) excluded by spec.import)",
            st.left_out_by_policy
        ))),
        None => Err(configuration(
            "alliance-healthcheck service not found in remote public services".into(),
        )),
    }
}

/// `DataplaneConnectionReady` with the probe on, for a federation the network phase worked on
/// this run; `None` leaves the condition as it is (offline runs, `plan`, a spec that is not
/// acted on). The message names the URL and never a timing.
pub(crate) fn dataplane_condition(
    st: &FedState,
    report: Option<&FetchReport>,
) -> Option<Condition> {
    let report = report?;
    let host = match probe_target(st) {
        Ok(host) => host,
        Err(c) => return Some(c),
    };
    let url = probe::url(host);
    Some(match report.probe.as_ref()? {
        ProbeResult::Healthy => Condition::new(
            DATAPLANE,
            True,
            Reason::Succeeded,
            format!("GET {url} through the mesh answered 200"),
        ),
        ProbeResult::Failed(why) => Condition::new(
            DATAPLANE,
            False,
            Reason::ProbeFailed,
            format!("GET {url}: {why}"),
        ),
    })
}

/// `TrustBundleReady`: what is trusted for the peer's trust domain, then what rotation retains
/// or distrusts (docs/rotation.md).
pub(crate) fn trust_condition(
    st: &FedState,
    trust_problem: Option<&TrustBundleError>,
    now: i64,
) -> Condition {
    let mut c = trust_condition_of_published(st, trust_problem, now);
    c.message
        .push_str(&retention::condition_text(&st.retention));
    c
}

fn trust_condition_of_published(
    st: &FedState,
    trust_problem: Option<&TrustBundleError>,
    now: i64,
) -> Condition {
    let td = &st.fed.trust_domain;
    if let Some(problem) = trust_problem.filter(|p| !p.still_installed(td).is_empty()) {
        // Whatever else is true of the peer's roots, these are still trusted: say so first.
        return Condition::new(
            TRUST,
            False,
            Reason::TrustBundleUnavailable,
            format!("{problem}."),
        );
    }
    if let Some(f) = &st.trust_hold {
        return Condition::new(
            TRUST,
            False,
            f.reason,
            format!(
                "{}. Root certificates installed earlier are kept.",
                f.message.trim_end_matches('.')
            ),
        );
    }
    let Some(public) = &st.public else {
        return match &st.public_problem {
            Some(f) => Condition::new(
                TRUST,
                False,
                f.reason,
                format!("{}. Root certificates installed earlier are kept.", f.message.trim_end_matches('.')),
            ),
            None => Condition::new(
                TRUST,
                False,
                Reason::AwaitingPublic,
                "Public metadata has not been fetched yet; the peer's root certificate is not trusted.",
            ),
        };
    };
    if public.roots.is_empty() {
        let why = match public.rejected_summary() {
            s if s.is_empty() => "every one it publishes is distrusted".to_string(),
            s => s,
        };
        return Condition::new(
            TRUST,
            False,
            Reason::CertificateRejected,
            format!("No root certificate of the peer is trusted: {why}."),
        );
    }
    if let Some(problem) = trust_problem {
        return Condition::new(
            TRUST,
            False,
            Reason::TrustBundleUnavailable,
            format!("{problem}."),
        );
    }
    if let Some(x) = &st.trust_excess {
        return Condition::new(TRUST, False, Reason::ObjectTooLarge, excess_text(td, x));
    }
    let n = public.roots.len();
    let mut msg = format!(
        "Trusting {n} root certificate{} for trust domain {td}.",
        if n == 1 { "" } else { "s" }
    );
    if !public.rejected.is_empty() {
        msg.push_str(&format!(" Ignored: {}.", public.rejected_summary()));
    }
    for r in &public.roots {
        if r.not_after - now < EXPIRY_WARNING {
            msg.push_str(&format!(
                " Root {} expires on {}.",
                r.subject,
                timefmt::date(r.not_after)
            ));
        }
    }
    Condition::new(TRUST, True, Reason::Succeeded, msg)
}

/// The most fingerprints an excess message names.
const EXCESS_NAMED: usize = 8;

/// What `TrustBundleReady` says of a federation over its share of the trust bundle.
fn excess_text(td: &str, x: &TrustExcess) -> String {
    let named: Vec<&str> = x
        .left_out
        .iter()
        .take(EXCESS_NAMED)
        .map(|fp| fp.get(..16).unwrap_or(fp))
        .collect();
    let more = x.left_out.len().saturating_sub(EXCESS_NAMED);
    let share = if x.share >= 10 * 1024 {
        format!("{} KiB", x.share / 1024)
    } else {
        format!("{} bytes", x.share)
    };
    format!(
        "Trusting {} of its {} root certificates for trust domain {td}: the other {} exceed its share of the trust bundle in {} ({share} of the 900 KiB budget, shared by {} federations with roots) and are not trusted, newest last: {}{}.",
        x.trusted,
        x.trusted + x.left_out.len(),
        x.left_out.len(),
        x.object,
        x.federations,
        named.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    )
}

/// `ServicesImported`: the first thing that stands in the way of importing — the policy, a
/// held object, missing metadata, no usable gateway — or what was imported and dropped
/// (docs/reference/conditions.md).
pub(crate) fn services_condition(st: &FedState) -> Condition {
    if let Err(e) = &st.fed.import {
        return Condition::new(
            SERVICES,
            False,
            Reason::InvalidImportPolicy,
            format!("{e}. ServiceEntries created earlier are kept unchanged until it is fixed."),
        );
    }
    if let Some(f) = &st.services_hold {
        return services_held(f, st.private.as_ref());
    }
    let private = match usable_private(st) {
        Ok(p) => p,
        Err(waiting) => return waiting,
    };
    log_dropped(st);
    if private.ingress_gateways.is_empty() {
        return no_gateways(private);
    }
    imported(private, st.left_out_by_policy)
}

/// A ServiceEntry or the status patch would exceed the object budget: the hold's own message,
/// then what stays imported — the last good metadata's services when it has gateways to reach
/// them, otherwise whatever was created earlier.
fn services_held(hold: &Failure, private: Option<&PrivateMetadata>) -> Condition {
    let kept = match private {
        Some(p) if !p.ingress_gateways.is_empty() => {
            let n = p.service_count();
            format!(
                "the last good metadata's {n} service{} stay imported",
                if n == 1 { "" } else { "s" }
            )
        }
        _ => "ServiceEntries created earlier are kept".to_string(),
    };
    Condition::new(
        SERVICES,
        False,
        hold.reason,
        format!("{}; {kept}.", hold.message.trim_end_matches('.')),
    )
}

/// The private metadata to import from, or the condition that says why there is none yet:
/// public metadata comes first (unusable, or not fetched), then private (unusable, or not
/// fetched). Nothing created earlier is removed while waiting.
fn usable_private<'s>(st: &'s FedState) -> Result<&'s PrivateMetadata, Condition> {
    if let (None, Some(f)) = (&st.public, &st.public_problem) {
        return Err(Condition::new(
            SERVICES,
            False,
            f.reason,
            "Cached public metadata is unusable; ServiceEntries created earlier are kept.",
        ));
    }
    if st.public.is_none() {
        return Err(Condition::new(
            SERVICES,
            False,
            Reason::AwaitingPublic,
            "Services are imported once public metadata is available.",
        ));
    }
    match (&st.private, &st.private_problem) {
        (Some(private), _) => Ok(private),
        (None, Some(f)) => Err(Condition::new(
            SERVICES,
            False,
            f.reason,
            format!(
                "{}. ServiceEntries created earlier are kept.",
                f.message.trim_end_matches('.')
            ),
        )),
        (None, None) => Err(Condition::new(
            SERVICES,
            False,
            Reason::AwaitingPrivate,
            "Private metadata has not been fetched yet; no services are imported.",
        )),
    }
}

/// No gateway to reach the services by, so none is imported. When the peer did publish
/// gateways and every one was refused, the message says which and why, item by item.
fn no_gateways(private: &PrivateMetadata) -> Condition {
    if private.dropped.is_empty() {
        return Condition::new(
            SERVICES,
            False,
            Reason::NoIngressGateways,
            "The peer publishes no ingress gateways, so its services cannot be reached; none are imported.",
        );
    }
    Condition::new(
        SERVICES,
        False,
        Reason::NoIngressGateways,
        format!(
            "The peer publishes no usable ingress gateways, so its services cannot be reached; none are imported. {}.",
            capitalize(&dropped_list(private))
        ),
    )
}

/// What was imported (and left out by `spec.import`), then what was dropped and kept from the
/// last good metadata. A drop turns the reason to the worst kind dropped — a host outside the
/// peer's scope before merely invalid items — and the status to `False` only when nothing at
/// all is imported.
fn imported(private: &PrivateMetadata, left_out_by_policy: usize) -> Condition {
    let n = private.service_count();
    let mut imported = format!("Imported {n} service{}", if n == 1 { "" } else { "s" });
    if left_out_by_policy > 0 {
        imported.push_str(&format!("; {left_out_by_policy} excluded by spec.import"));
    }
    if private.dropped.is_empty() {
        return Condition::new(SERVICES, True, Reason::Succeeded, format!("{imported}."));
    }
    let reason = if private
        .dropped
        .iter()
        .any(|d| d.reason == Reason::HostnameOutOfScope)
    {
        Reason::HostnameOutOfScope
    } else {
        Reason::InvalidPrivateMetadata
    };
    let mut msg = format!("{imported}; {}.", dropped_list(private));
    if private.carried_over > 0 {
        msg.push_str(&format!(
            " Kept {} gateway(s)/service(s) of the last good metadata that this response does not validly provide.",
            private.carried_over
        ));
    }
    Condition::new(SERVICES, if n > 0 { True } else { False }, reason, msg)
}

/// "dropped 2 items: …; …" (at most [`MAX_LISTED`] of them, then "and N more").
fn dropped_list(private: &PrivateMetadata) -> String {
    let listed: Vec<&str> = private
        .dropped
        .iter()
        .take(MAX_LISTED)
        .map(|d| d.message.as_str())
        .collect();
    let mut msg = format!(
        "dropped {} item{}: {}",
        private.dropped.len(),
        if private.dropped.len() == 1 { "" } else { "s" },
        listed.join("; ")
    );
    if private.dropped.len() > MAX_LISTED {
        msg.push_str(&format!(
            "; and {} more",
            private.dropped.len() - MAX_LISTED
        ));
    }
    msg
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn log_dropped(st: &FedState) {
    for d in st.private.iter().flat_map(|p| &p.dropped) {
        log::warn!(target: "reconcile", "IstioFederation {}: dropped from private metadata: {}", st.fed.name, d.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::metadata::{Dropped, Gateway, PublicService};

    fn private(services: &[&str], dropped: &[(Reason, &str)]) -> PrivateMetadata {
        PrivateMetadata {
            ingress_gateways: vec![Gateway {
                address: "192.0.2.1".into(),
                port: 15443,
            }],
            public_services: services
                .iter()
                .map(|h| PublicService {
                    hostname: h.to_string(),
                    ports: Vec::new(),
                })
                .collect(),
            dropped: dropped
                .iter()
                .map(|(reason, message)| Dropped {
                    reason: *reason,
                    message: message.to_string(),
                })
                .collect(),
            carried_over: 0,
        }
    }

    #[test]
    fn imported_lists_at_most_five_drops_and_names_the_worst_reason() {
        let bad = (Reason::InvalidPrivateMetadata, "bad");
        let out_of_scope = (
            Reason::HostnameOutOfScope,
            "a.other.example is out of scope",
        );
        let mut p = private(
            &["a.peer", "b.peer", "a.peer"],
            &[bad, bad, bad, bad, bad, out_of_scope, bad],
        );
        p.carried_over = 2;
        let c = imported(&p, 1);
        assert_eq!(c.status, True);
        assert_eq!(c.reason, Reason::HostnameOutOfScope);
        assert_eq!(
            c.message,
            "Imported 2 services; 1 excluded by spec.import; dropped 7 items: bad; bad; bad; bad; bad; and 2 more. \
             Kept 2 gateway(s)/service(s) of the last good metadata that this response does not validly provide."
        );
    }

    #[test]
    fn imported_with_drops_and_no_service_is_false() {
        let c = imported(
            &private(
                &[],
                &[(Reason::InvalidPrivateMetadata, "service x: no ports")],
            ),
            0,
        );
        assert_eq!(c.status, False);
        assert_eq!(c.reason, Reason::InvalidPrivateMetadata);
        assert_eq!(
            c.message,
            "Imported 0 services; dropped 1 item: service x: no ports."
        );
    }

    #[test]
    fn imported_without_drops_succeeds() {
        let c = imported(&private(&["a.peer"], &[]), 0);
        assert_eq!((c.status, c.reason), (True, Reason::Succeeded));
        assert_eq!(c.message, "Imported 1 service.");
    }

    #[test]
    fn no_gateways_names_every_refused_gateway() {
        let mut p = private(
            &["a.peer"],
            &[(Reason::InvalidPrivateMetadata, "gateway 0: port 0")],
        );
        p.ingress_gateways.clear();
        let c = no_gateways(&p);
        assert_eq!((c.status, c.reason), (False, Reason::NoIngressGateways));
        assert_eq!(
            c.message,
            "The peer publishes no usable ingress gateways, so its services cannot be reached; \
             none are imported. Dropped 1 item: gateway 0: port 0."
        );
        p.dropped.clear();
        assert!(no_gateways(&p)
            .message
            .starts_with("The peer publishes no ingress gateways,"));
    }

    #[test]
    fn a_hold_keeps_the_last_good_services_only_when_they_have_a_gateway() {
        let hold = Failure::new(Reason::ObjectTooLarge, "ServiceEntry x is too large.");
        let mut p = private(&["a.peer"], &[]);
        let c = services_held(&hold, Some(&p));
        assert_eq!((c.status, c.reason), (False, Reason::ObjectTooLarge));
        assert_eq!(
            c.message,
            "ServiceEntry x is too large; the last good metadata's 1 service stay imported."
        );
        p.ingress_gateways.clear();
        assert_eq!(
            services_held(&hold, Some(&p)).message,
            "ServiceEntry x is too large; ServiceEntries created earlier are kept."
        );
        assert_eq!(
            services_held(&hold, None).message,
            services_held(&hold, Some(&p)).message
        );
    }
}
