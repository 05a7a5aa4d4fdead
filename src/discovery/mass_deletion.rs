//! One bad snapshot never deletes everything (docs/security.md, "Platform failures").
//!
//! shell-operator releases before v1.17.7 / v1.20.2 could hand a hook an empty snapshot for a
//! binding while the hook still ran (a lost informer). Trusted, it deletes every ServiceEntry
//! and trust entry the hook owns in one run. A federation counts as *removed* when its
//! IstioFederation is missing from the snapshot while objects or trust entries it owns would
//! be deleted this run. When that is all federations, or more than half of them, those deletes
//! are held, and carried out only on a run that sees the same state at least
//! `MASS_DELETION_GRACE` later, on the reconcile's clock.
//!
//! The bindings deliver complete snapshots in one group, so a deleted IstioFederation and a
//! lost one look alike: time is the only signal. The hook is stateless, so when each hold
//! began is kept in the cluster, on the objects concerned: [`DELETION_HELD_ANNOTATION`] on each
//! held ServiceEntry and DestinationRule, [`TRUST_REMOVAL_HELD_ANNOTATION`] (trust domain →
//! time) on the trust-bundle object. An object wanted again is rewritten without the mark, so a
//! later loss starts its own grace.

use crate::discovery::diff::{self, Operation, Scope};
use crate::discovery::services::istio_objects::{Observed, Snapshot};
use crate::discovery::status::metrics;
use crate::hook::k8s;
use crate::hook::settings::Settings;
use crate::hook::timefmt;
use crate::protocol::federation::Federation;
use crate::protocol::labels::{
    DELETION_HELD_ANNOTATION, FEDERATIONS_ANNOTATION, TRUST_ENTRIES_ANNOTATION,
    TRUST_REMOVAL_HELD_ANNOTATION,
};
use crate::protocol::names;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// What this run decided about mass deletion. Inactive (holds nothing) unless the run would
/// remove all federations or more than half of them, and `MASS_DELETION_GRACE` is not zero.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    active: bool,
    now: i64,
    grace: i64,
    /// Federations missing from the snapshot whose objects this run would delete.
    removed: BTreeSet<String>,
    /// Owned trust domains no federation in the snapshot claims → when their hold began.
    domains: BTreeMap<String, Option<i64>>,
    /// How many federations count as removed (names and trust domains, whichever is more).
    count: usize,
    /// Federations in the snapshot, readable or not.
    present: usize,
    /// Marks to write on objects held for the first time, and how many objects stay held.
    marks: RefCell<Vec<Operation>>,
    held_objects: RefCell<usize>,
    first_held: RefCell<Option<i64>>,
}

/// The federation names an object's annotation lists.
fn federations_of(o: &Observed) -> impl Iterator<Item = &str> {
    o.annotations
        .get(FEDERATIONS_ANNOTATION)
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|f| !f.is_empty())
}

/// The trust domains we own entries for in the trust-bundle object (its annotation).
fn owned_domains(trust_object: Option<&Value>) -> BTreeSet<String> {
    let owned = trust_object
        .and_then(|o| k8s::annotation(o, TRUST_ENTRIES_ANNOTATION))
        .and_then(|a| serde_json::from_str::<BTreeMap<String, Value>>(a).ok())
        .unwrap_or_default();
    owned.into_keys().collect()
}

/// The holds recorded on the trust-bundle object: trust domain → since.
fn recorded_domains(trust_object: Option<&Value>) -> BTreeMap<String, i64> {
    trust_object
        .and_then(|o| k8s::annotation(o, TRUST_REMOVAL_HELD_ANNOTATION))
        .and_then(|a| serde_json::from_str::<BTreeMap<String, String>>(a).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(td, t)| Some((td, timefmt::parse_rfc3339(&t)?)))
        .collect()
}

/// What the guard needs to know about this run.
pub(crate) struct Inputs<'a> {
    pub feds: &'a [Federation],
    pub broken: &'a [String],
    pub trust_object: Option<&'a Value>,
    /// ServiceEntries and DestinationRules that this run would delete (unwanted, managed, in
    /// scope, not kept for another reason).
    pub doomed: Vec<Observed>,
}

impl Guard {
    /// Decides whether this run is a mass deletion.
    pub(crate) fn assess(settings: &Settings, inputs: Inputs, now: i64) -> Guard {
        let present: BTreeSet<&str> = inputs
            .feds
            .iter()
            .map(|f| f.name.as_str())
            .chain(inputs.broken.iter().map(String::as_str))
            .collect();
        let removed: BTreeSet<String> = inputs
            .doomed
            .iter()
            .flat_map(federations_of)
            .filter(|f| !present.contains(f))
            .map(str::to_string)
            .collect();
        let claimed: BTreeSet<&str> = inputs
            .feds
            .iter()
            .map(|f| f.trust_domain.as_str())
            .collect();
        // While a federation cannot be read, trust entries are left as they are anyway.
        let domains: BTreeSet<String> = if inputs.broken.is_empty() {
            owned_domains(inputs.trust_object)
                .into_iter()
                .filter(|td| !claimed.contains(td.as_str()))
                .filter(|td| !names::trust_domain_is_local(td, &settings.cluster_domain))
                .collect()
        } else {
            BTreeSet::new()
        };
        let count = removed.len().max(domains.len());
        let total = present.len() + count;
        let grace = i64::try_from(settings.mass_deletion_grace.as_secs()).unwrap_or(i64::MAX);
        let active = grace > 0 && count > 0 && 2 * count > total;
        let recorded = recorded_domains(inputs.trust_object);
        Guard {
            active,
            now,
            grace,
            domains: domains
                .into_iter()
                .map(|td| {
                    let since = recorded.get(&td).copied();
                    (td, since)
                })
                .collect(),
            removed,
            count,
            present: present.len(),
            ..Guard::default()
        }
    }

    fn due(&self, since: i64) -> bool {
        self.now.saturating_sub(since) >= self.grace
    }

    fn note_held(&self, since: i64) {
        *self.held_objects.borrow_mut() += 1;
        let mut first = self.first_held.borrow_mut();
        *first = Some(first.map_or(since, |f| f.min(since)));
    }

    /// Whether `o`, which this run would delete, is kept instead: it belongs to a removed
    /// federation of a mass deletion whose grace has not passed. A first hold is marked on the
    /// object (see [`Guard::take_marks`]).
    pub(crate) fn keeps(&self, o: &Observed) -> bool {
        if !self.active || !federations_of(o).any(|f| self.removed.contains(f)) {
            return false;
        }
        let since = o
            .annotations
            .get(DELETION_HELD_ANNOTATION)
            .and_then(|t| timefmt::parse_rfc3339(t));
        match since {
            Some(t) if t <= self.now && self.due(t) => false,
            Some(t) if t <= self.now => {
                self.note_held(t);
                true
            }
            _ => {
                self.marks.borrow_mut().push(mark(o, self.now));
                self.note_held(self.now);
                true
            }
        }
    }

    /// The marks of objects held for the first time this run.
    pub(crate) fn take_marks(&self) -> Vec<Operation> {
        std::mem::take(&mut *self.marks.borrow_mut())
    }

    /// Trust domains whose owned entries stay this run although no federation claims them.
    pub(crate) fn held_domains(&self) -> BTreeSet<String> {
        if !self.active {
            return BTreeSet::new();
        }
        self.domains
            .iter()
            .filter(|(_, since)| since.is_none_or(|t| t > self.now || !self.due(t)))
            .map(|(td, _)| td.clone())
            .collect()
    }

    /// The write that records the trust domains held on the trust-bundle object (or removes
    /// the record when nothing is held any more); `None` when the record is right.
    pub(crate) fn trust_record(
        &self,
        settings: &Settings,
        trust_object: Option<&Value>,
    ) -> Option<Operation> {
        let obj = trust_object?;
        let held = self.held_domains();
        let recorded = k8s::annotation(obj, TRUST_REMOVAL_HELD_ANNOTATION);
        let path = format!(
            "/metadata/annotations/{}",
            k8s::pointer_token(TRUST_REMOVAL_HELD_ANNOTATION)
        );
        let patch = if held.is_empty() {
            // `test` first: shell-operator's schema wants a value in the first operation.
            let recorded = recorded?;
            vec![
                json!({"op": "test", "path": path, "value": recorded}),
                json!({"op": "remove", "path": path}),
            ]
        } else {
            let record: BTreeMap<&str, String> = held
                .iter()
                .map(|td| {
                    let since = self
                        .domains
                        .get(td)
                        .copied()
                        .flatten()
                        .filter(|t| *t <= self.now);
                    (td.as_str(), timefmt::rfc3339(since.unwrap_or(self.now)))
                })
                .collect();
            let text = serde_json::to_string(&record).unwrap_or_default();
            if recorded == Some(text.as_str()) {
                return None;
            }
            for since in record.values().filter_map(|t| timefmt::parse_rfc3339(t)) {
                self.note_first(since);
            }
            vec![json!({"op": "add", "path": path, "value": text})]
        };
        let (kind, name) = trust_object_identity(settings);
        Some(Operation::JsonPatch {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: settings.istio_namespace.clone(),
            name,
            patch,
        })
    }

    fn note_first(&self, since: i64) {
        let mut first = self.first_held.borrow_mut();
        *first = Some(first.map_or(since, |f| f.min(since)));
    }

    /// Logs what is held (an error: something deleted most federations, or an informer lost
    /// them) and returns the gauge, while anything is held.
    pub(crate) fn report(&self) -> Option<Value> {
        let domains = self.held_domains();
        for td in &domains {
            if let Some(Some(t)) = self.domains.get(td) {
                self.note_first(*t);
            }
        }
        let held = *self.held_objects.borrow() + domains.len();
        if !self.active {
            return None;
        }
        let names: Vec<&str> = self.removed.iter().map(String::as_str).collect();
        let what = if names.is_empty() {
            format!(
                "trust entries for {}",
                domains.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        } else {
            format!("IstioFederation(s) {}", names.join(", "))
        };
        if held == 0 {
            log::warn!(target: "reconcile", "the IstioFederation snapshot still lacks {} of {} federations ({what}) after MASS_DELETION_GRACE: carrying out their deletes", self.count, self.count + self.present);
            return None;
        }
        let since = self.first_held.borrow().unwrap_or(self.now);
        log::error!(target: "reconcile", "this run would remove the imports and trust of {} of {} federations ({what}), as a lost IstioFederation snapshot would: their deletes are held since {}, and carried out by the first run from {} on that still sees this state (MASS_DELETION_GRACE={}s). Setting istio.federation.enabled=false removes everything at once", self.count, self.count + self.present, timefmt::rfc3339(since), timefmt::rfc3339(since.saturating_add(self.grace)), self.grace);
        Some(metrics::set(
            metrics::Metric::MassDeletionHeld,
            self.count as f64,
            &[],
        ))
    }
}

/// The trust-bundle object's kind and name, by mode.
fn trust_object_identity(settings: &Settings) -> (&'static str, String) {
    match settings.trust_bundle_mode {
        crate::hook::settings::TrustBundleMode::MeshConfig => {
            ("ConfigMap", settings.mesh_config_name.clone())
        }
        crate::hook::settings::TrustBundleMode::Cacerts => {
            ("Secret", crate::hook::settings::CACERTS_SECRET.to_string())
        }
    }
}

/// The JSON patch that records on `o` when its hold began.
fn mark(o: &Observed, now: i64) -> Operation {
    let path = format!(
        "/metadata/annotations/{}",
        k8s::pointer_token(DELETION_HELD_ANNOTATION)
    );
    Operation::JsonPatch {
        api_version: o.api_version.clone(),
        kind: o.kind.clone(),
        namespace: o.namespace.clone(),
        name: o.name.clone(),
        patch: vec![json!({"op": "add", "path": path, "value": timefmt::rfc3339(now)})],
    }
}

/// The objects of `snapshot` this run would delete: not wanted, managed, in scope, and not
/// kept by `keep`: [`diff::deletes`]' own selection, without its operations.
pub(crate) fn doomed(
    snapshot: Option<&Snapshot>,
    wanted: &BTreeSet<String>,
    keep: &dyn Fn(&Observed) -> bool,
    scope: &Scope,
) -> Vec<Observed> {
    diff::unwanted_managed(snapshot, wanted, keep)
        .filter(|o| scope.contains(o))
        .collect()
}
