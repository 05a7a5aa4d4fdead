//! The conditions a run sets on each IstioFederation, decided from its effective metadata and
//! the fetch report. Messages say what to fix and carry no run-to-run detail, so a repeated
//! failure rewrites nothing (README, "Conditions").

use super::effective::FedState;
use super::report::FetchReport;
use super::retention;
use super::status::{Condition, ConditionStatus, ConditionType};
use super::trust_bundle::TrustBundleError;
use crate::hook::timefmt;
use crate::protocol::failure::Reason;
use crate::protocol::federation::SpecProblem;
use crate::protocol::metadata::PrivateMetadata;
use crate::protocol::names;
use ConditionStatus::{False, True, Unknown};
use ConditionType::{
    PrivateMetadataExchangeReady as PRIVATE, PublicMetadataExchangeReady as PUBLIC,
    ServicesImported as SERVICES, TrustBundleReady as TRUST,
};

/// A root that expires within this many seconds is called out in the condition message.
const EXPIRY_WARNING: i64 = 30 * 24 * 3600;
/// At most this many dropped items are listed in a condition message.
const MAX_LISTED: usize = 5;

/// The conditions this run sets on one federation: the exchange conditions only for what was
/// fetched this run (offline runs keep the last ones), then the trust bundle and the import,
/// which follow from the effective metadata every run.
pub fn for_federation(
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

/// The conditions of a spec that is read but not acted on (README, "Conditions",
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
pub fn exchange_conditions(r: &FetchReport) -> Vec<Condition> {
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

/// `TrustBundleReady`: what is trusted for the peer's trust domain, then what rotation retains
/// or distrusts (README, "Rotating roots and keys").
pub fn trust_condition(
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

pub fn services_condition(st: &FedState) -> Condition {
    if let Err(e) = &st.fed.import {
        return Condition::new(
            SERVICES,
            False,
            Reason::InvalidImportPolicy,
            format!("{e}. ServiceEntries created earlier are kept unchanged until it is fixed."),
        );
    }
    if let Some(f) = &st.services_hold {
        let kept = match &st.private {
            Some(p) if !p.ingress_gateways.is_empty() => {
                let n = p.service_count();
                format!(
                    "the last good metadata's {n} service{} stay imported",
                    if n == 1 { "" } else { "s" }
                )
            }
            _ => "ServiceEntries created earlier are kept".to_string(),
        };
        return Condition::new(
            SERVICES,
            False,
            f.reason,
            format!("{}; {kept}.", f.message.trim_end_matches('.')),
        );
    }
    if let (None, Some(f)) = (&st.public, &st.public_problem) {
        return Condition::new(
            SERVICES,
            False,
            f.reason,
            "Cached public metadata is unusable; ServiceEntries created earlier are kept.",
        );
    }
    if st.public.is_none() {
        return Condition::new(
            SERVICES,
            False,
            Reason::AwaitingPublic,
            "Services are imported once public metadata is available.",
        );
    }
    let Some(private) = &st.private else {
        return match &st.private_problem {
            Some(f) => Condition::new(
                SERVICES,
                False,
                f.reason,
                format!(
                    "{}. ServiceEntries created earlier are kept.",
                    f.message.trim_end_matches('.')
                ),
            ),
            None => Condition::new(
                SERVICES,
                False,
                Reason::AwaitingPrivate,
                "Private metadata has not been fetched yet; no services are imported.",
            ),
        };
    };
    if private.ingress_gateways.is_empty() {
        if private.dropped.is_empty() {
            return Condition::new(
                SERVICES,
                False,
                Reason::NoIngressGateways,
                "The peer publishes no ingress gateways, so its services cannot be reached; none are imported.",
            );
        }
        // Every gateway was refused: say which and why, item by item.
        log_dropped(st);
        return Condition::new(
            SERVICES,
            False,
            Reason::NoIngressGateways,
            format!(
                "The peer publishes no usable ingress gateways, so its services cannot be reached; none are imported. {}.",
                capitalize(&dropped_list(private))
            ),
        );
    }
    let n = private.service_count();
    let mut imported = format!("Imported {n} service{}", if n == 1 { "" } else { "s" });
    if st.left_out_by_policy > 0 {
        imported.push_str(&format!(
            "; {} excluded by spec.import",
            st.left_out_by_policy
        ));
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
    log_dropped(st);
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
