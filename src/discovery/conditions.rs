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
    if let Some(r) = report {
        conditions.extend(exchange_conditions(r));
    }
    conditions.push(trust_condition(st, trust_problem, now));
    conditions.push(services_condition(st));
    conditions
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
        return Condition::new(
            SERVICES,
            False,
            Reason::NoIngressGateways,
            "The peer publishes no ingress gateways, so its services cannot be reached; none are imported.",
        );
    }
    let n = private.service_count();
    let imported = format!("Imported {n} service{}", if n == 1 { "" } else { "s" });
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
    let listed: Vec<&str> = private
        .dropped
        .iter()
        .take(MAX_LISTED)
        .map(|d| d.message.as_str())
        .collect();
    let mut msg = format!(
        "{imported}; dropped {} item{}: {}",
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
    msg.push('.');
    if private.carried_over > 0 {
        msg.push_str(&format!(
            " Kept {} gateway(s)/service(s) of the last good metadata that this response does not validly provide.",
            private.carried_over
        ));
    }
    for d in &private.dropped {
        log::warn!(target: "reconcile", "IstioFederation {}: dropped from private metadata: {}", st.fed.name, d.message);
    }
    Condition::new(SERVICES, if n > 0 { True } else { False }, reason, msg)
}
