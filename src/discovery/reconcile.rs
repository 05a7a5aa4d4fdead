//! The pure core of a discovery run: observed snapshots (+ what the network phase fetched)
//! → the operations and metrics that make the cluster match (SPEC §4.2 steps 2–8).
//!
//! No I/O and no clock: `now` is passed in. The same input gives byte-identical output.

use super::conditions::{exchange_conditions, services_condition, trust_condition};
use super::diff::{self, Operation};
use super::effective::{effective_private, effective_public, FedState};
use super::istio_objects;
use super::metrics::{self, federation_metrics};
use super::observed::{own_root_fingerprints, Observed};
use super::report::FetchReport;
use super::service_entries::{self, Source};
use super::status::status_patch;
use super::trust_bundle::{self, TrustEntry};
use crate::hook::settings::Settings;
use crate::protocol::federation::Federation;
use crate::protocol::labels;
use crate::protocol::metadata::Own;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Everything a run emits.
#[derive(Debug, Default)]
pub struct Outcome {
    pub operations: Vec<Operation>,
    pub metrics: Vec<Value>,
}

/// Runs the whole reconcile, collecting the operations.
pub fn reconcile(
    settings: &Settings,
    observed: &Observed,
    fetched: &BTreeMap<String, FetchReport>,
    now: i64,
) -> Outcome {
    let mut operations = Vec::new();
    let metrics = reconcile_into(settings, observed, fetched, now, &mut |op| {
        operations.push(op);
        Ok(())
    })
    .unwrap_or_default();
    Outcome {
        operations,
        metrics,
    }
}

/// Runs the whole reconcile, handing each operation to `sink` as soon as it is decided (a large
/// first run emits tens of thousands of objects: they are written, not held). Returns the
/// metric operations. Errors come only from the sink.
pub fn reconcile_into(
    settings: &Settings,
    observed: &Observed,
    fetched: &BTreeMap<String, FetchReport>,
    now: i64,
    sink: &mut dyn FnMut(Operation) -> Result<(), String>,
) -> Result<Vec<Value>, String> {
    let mut out_metrics = vec![metrics::expire()];
    let api = settings.networking_api_version.as_str();
    let ns = settings.federation_namespace.as_str();
    let trust_object = observed.trust_object.map(|t| t.first());

    if !settings.enabled {
        // Cleanup: remove everything we own and nothing else.
        if let Some(t) = trust_object {
            match trust_bundle::plan(settings, t, &[]) {
                Ok(Some(op)) => sink(op)?,
                Ok(None) => {}
                Err(e) => {
                    log::warn!(target: "reconcile", "federation disabled, but our trust entries cannot be removed: {e}")
                }
            }
        }
        for snapshot in [
            observed.service_entries.as_ref(),
            observed.destination_rules.as_ref(),
        ] {
            for op in diff::deletes(snapshot, &BTreeSet::new(), &|_| false) {
                sink(op)?;
            }
        }
        return Ok(out_metrics);
    }
    if observed.federations.is_none() {
        log::warn!(target: "reconcile", "this run carries no snapshot of IstioFederations; nothing is reconciled");
        return Ok(Vec::new());
    }

    let own_fps = own_root_fingerprints(settings, observed);
    let own = Own {
        cluster_uuid: &settings.cluster_uuid,
        root_fingerprints: &own_fps,
        now,
    };
    let feds: &[Federation] = observed.federations.as_deref().unwrap_or(&[]);
    let broken = &observed.broken_federations;

    let mut states: Vec<FedState> = Vec::with_capacity(feds.len());
    for fed in feds {
        if fed.trust_domain == settings.cluster_domain {
            log::warn!(target: "reconcile", "IstioFederation {}: spec.trustDomain {} is this cluster's own trust domain; skipped", fed.name, fed.trust_domain);
            continue;
        }
        let report = fetched.get(&fed.name);
        let (public, public_problem) = effective_public(fed, report, &own);
        let (private, private_problem, private_cache) =
            effective_private(fed, report, &settings.cluster_domain);
        states.push(FedState {
            fed,
            public,
            public_problem,
            private,
            private_problem,
            private_cache,
        });
    }

    // Trust entries: every accepted root of every federation with public metadata.
    let mut desired_trust: Vec<TrustEntry> = Vec::new();
    let mut seen_trust = BTreeSet::new();
    for st in &states {
        for root in st.public.iter().flat_map(|p| &p.roots) {
            if seen_trust.insert((st.fed.trust_domain.clone(), root.fingerprint.clone())) {
                desired_trust.push(TrustEntry {
                    trust_domain: st.fed.trust_domain.clone(),
                    pem: root.pem.clone(),
                    fingerprint: root.fingerprint.clone(),
                });
            }
        }
    }
    let mut trust_problem: Option<trust_bundle::TrustBundleError> = None;
    match trust_object {
        None => {
            log::warn!(target: "reconcile", "this run carries no snapshot of the trust-bundle object; trust entries unchanged")
        }
        Some(_) if !broken.is_empty() => {
            log::warn!(target: "reconcile", "trust entries unchanged while IstioFederation(s) {} cannot be read", broken.join(", "));
        }
        Some(t) => match trust_bundle::plan(settings, t, &{
            // A federation whose cached public metadata cannot be read keeps the trust
            // entries it had: odd input never removes trust.
            let keep: BTreeSet<String> = states
                .iter()
                .filter(|st| st.public_problem.is_some())
                .map(|st| st.fed.trust_domain.clone())
                .collect();
            let mut all = desired_trust.clone();
            for e in trust_bundle::owned_entries(settings, t, &keep) {
                if !all
                    .iter()
                    .any(|d| d.trust_domain == e.trust_domain && d.fingerprint == e.fingerprint)
                {
                    all.push(e);
                }
            }
            all
        }) {
            Ok(Some(op)) => sink(op)?,
            Ok(None) => {}
            Err(e) => {
                log::error!(target: "reconcile", "{e}");
                trust_problem = Some(e);
            }
        },
    }

    // ServiceEntries from every federation with public and private metadata and a gateway.
    let sources: Vec<Source> = states
        .iter()
        .filter(|st| st.public.is_some())
        .filter_map(|st| {
            let p = st.private.as_ref()?;
            (!p.ingress_gateways.is_empty()).then_some(Source {
                federation: &st.fed.name,
                gateways: &p.ingress_gateways,
                services: &p.public_services,
            })
        })
        .collect();
    let (records, warnings) = service_entries::merge(&sources);
    for w in warnings {
        log::warn!(target: "service_entries", "{w}");
    }
    // Objects of federations that cannot be read this run (spec unreadable, or cached metadata
    // unusable) are kept as they are: odd input never deletes a ServiceEntry. New and changed
    // objects are still written; only deletes are held back.
    let mut broken_set: BTreeSet<&str> = broken.iter().map(String::as_str).collect();
    // An unreadable federation without a name could be any of them: hold back every delete.
    let freeze_all = broken_set.contains("");
    // Likewise when the peer's private metadata had items we had to drop: a service that is
    // now invalid may well be one we imported before, and a bad peer must not cost us it.
    broken_set.extend(
        states
            .iter()
            .filter(|st| {
                st.public_problem.is_some()
                    || st.private_problem.is_some()
                    || st.private.as_ref().is_some_and(|p| !p.dropped.is_empty())
            })
            .map(|st| st.fed.name.as_str()),
    );
    let keep = |o: &istio_objects::Observed| {
        freeze_all
            || (!broken_set.is_empty()
                && o.annotations
                    .get(labels::FEDERATIONS_ANNOTATION)
                    .is_some_and(|a| a.split(',').any(|f| broken_set.contains(f))))
    };

    // One record at a time: its DestinationRule, then its ServiceEntry (so mTLS is in place
    // first), each written only if it differs. Nothing of it is kept once written.
    let mut wanted = BTreeSet::new();
    for r in &records {
        for (desired, snapshot) in [
            (
                service_entries::destination_rule(r, ns, api),
                &observed.destination_rules,
            ),
            (
                service_entries::service_entry(r, ns, api),
                &observed.service_entries,
            ),
        ] {
            let current = snapshot.as_ref().and_then(|s| s.get(&r.name));
            if let Some(op) = diff::diff_one(desired, current.as_ref()) {
                sink(op)?;
            }
        }
        wanted.insert(r.name.clone());
    }
    // Deletes: ServiceEntry before its DestinationRule, so no traffic loses mTLS first.
    for op in diff::deletes(observed.service_entries.as_ref(), &wanted, &keep) {
        sink(op)?;
    }
    for op in diff::deletes(observed.destination_rules.as_ref(), &wanted, &keep) {
        sink(op)?;
    }

    // Status and metrics, per federation in name order.
    for st in &states {
        let report = fetched.get(&st.fed.name);
        let mut conditions = Vec::with_capacity(4);
        if let Some(r) = report {
            conditions.extend(exchange_conditions(r));
        }
        conditions.push(trust_condition(st, trust_problem.as_ref(), now));
        conditions.push(services_condition(st));
        if let Some(op) = status_patch(st, report, &conditions, now) {
            sink(op)?;
        }
        federation_metrics(st, report, &mut out_metrics);
    }
    Ok(out_metrics)
}
