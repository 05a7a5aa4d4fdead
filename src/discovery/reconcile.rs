//! The pure core of a discovery run: observed snapshots (+ what the network phase fetched)
//! → the operations and metrics that make the cluster match (docs/ARCHITECTURE.md, "Discovery").
//!
//! No I/O and no clock: `now` is passed in. The same input gives byte-identical output.

use crate::discovery::authz;
use crate::discovery::budget;
use crate::discovery::diff::{self, DeletePolicy, Operation, Scope};
use crate::discovery::intake::admission::{self, UuidOwners};
use crate::discovery::intake::effective;
use crate::discovery::intake::pin;
use crate::discovery::mass_deletion::{self, Guard};
use crate::discovery::network::report::FetchReport;
use crate::discovery::observed::{own_root_fingerprints, Observed};
use crate::discovery::services::istio_objects;
use crate::discovery::services::service_entries::{self, Record};
use crate::discovery::services::{self, import_policy};
use crate::discovery::state::{FedState, Rules};
use crate::discovery::status::conditions;
use crate::discovery::status::metrics::{self, federation_metrics};
use crate::discovery::status::patch::{status_patch, ConditionType};
use crate::discovery::trust::retention;
use crate::discovery::trust::trust_bundle::{self, TrustBundleError, TrustEntry};
use crate::hook::settings::Settings;
use crate::protocol::federation::Federation;
use crate::protocol::metadata::Own;
use serde_json::Value;
use std::borrow::Cow;
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

/// Where operations go as soon as they are decided. Errors come only from writing them.
pub(crate) type Sink<'s> = dyn FnMut(Operation) -> Result<(), String> + 's;

/// Runs the whole reconcile, handing each operation to `sink` as soon as it is decided (a large
/// first run emits tens of thousands of objects: they are written, not held). Returns the
/// metric operations. Errors come only from the sink.
pub fn reconcile_into(
    settings: &Settings,
    observed: &Observed,
    fetched: &BTreeMap<String, FetchReport>,
    now: i64,
    sink: &mut Sink,
) -> Result<Vec<Value>, String> {
    if !settings.enabled {
        remove_everything_we_own(settings, observed, sink)?;
        return Ok(vec![metrics::expire()]);
    }
    let Some(feds) = observed.federations.as_deref() else {
        log::warn!(target: "reconcile", "this run carries no snapshot of IstioFederations; nothing is reconciled");
        return Ok(Vec::new());
    };
    let own_fps = own_root_fingerprints(settings, observed);
    let own = Own {
        cluster_uuid: &settings.cluster_uuid,
        root_fingerprints: &own_fps,
        now,
    };
    // 1. Which documents are admitted, and which metadata each federation works from. A peer
    //    publishing another UUID than the pinned one is refused (and reported below).
    let mismatches: BTreeMap<&str, (String, String)> = feds
        .iter()
        .filter_map(|f| Some((f.name.as_str(), pin::mismatch(f, fetched.get(&f.name))?)))
        .collect();
    // The entries we own in the trust object, read once: retention keeps only roots installed
    // for the peer's trust domain, and the shares keep the installed ones first.
    let installed = installed_entries(settings, observed);
    let Decided {
        admitted,
        uuid_owners,
        mut states,
    } = decide_states(settings, feds, fetched, &own, installed.as_deref());
    let fetched = admitted.as_ref();
    let rules = rules(settings, &own, &uuid_owners);
    // 2. The boundary of what each peer may reach, before any trust it bounds: policies
    //    created or updated first, a root added only once its domain's policy is observed,
    //    policies deleted last (docs/security.md, "Exported means reachable").
    let mut boundary = authz::plan(settings, observed, &states);
    authz::hold_trust_without_policy(settings, observed, &boundary, &mut states);
    for op in std::mem::take(&mut boundary.writes) {
        sink(op)?;
    }
    // 3. ServiceEntries and DestinationRules: hosts with their longest trust domain, within
    //    budget; deletes only where allowed, and never most federations' at once.
    let (mut records, warnings) = budget::merge_within_budget(settings, &mut states, &rules);
    import_policy::set_export_to(&mut records, &states, &settings.federation_namespace);
    for w in warnings {
        log::warn!(target: "service_entries", "{w}");
    }
    let held_back: Vec<String> = states
        .iter()
        .filter(|st| st.holds_back_deletes())
        .map(|st| st.fed.name.clone())
        .collect();
    let policy = DeletePolicy::new(
        &observed.broken_federations,
        held_back.iter().map(String::as_str),
    );
    let guard = assess_mass_deletion(settings, observed, feds, &records, &policy, now);
    // 4. The trust bundle: desired entries plus the ones kept, unless frozen; within budget.
    let installed = installed.unwrap_or_default();
    let trust_problem =
        write_trust_bundle(settings, observed, &installed, &mut states, &guard, sink)?;
    for op in std::mem::take(&mut boundary.deletes) {
        sink(op)?;
    }
    // 5. The records, written as decided.
    write_records(settings, observed, &records, &policy, &guard, sink)?;
    // 6. Status and metrics, per federation in name order. The data-plane probe's result only
    //    ever sets its condition and gauge (docs/operating.md, "Data-plane probe").
    let managed = ConditionType::managed_with(
        settings.dataplane_probe,
        boundary.mode != authz::Mode::Unmanaged,
    );
    let mut out_metrics = vec![metrics::expire()];
    out_metrics.extend(guard.report());
    let hidden = hidden_service_entries(settings, observed);
    for st in &states {
        let report = fetched.get(&st.fed.name);
        let mut conditions = conditions::for_federation(st, report, trust_problem.as_ref(), now);
        let dataplane = settings
            .dataplane_probe
            .then(|| conditions::dataplane_condition(st, report))
            .flatten();
        if let Some(c) = &dataplane {
            conditions.push(c.clone());
        }
        conditions.extend(authz::condition(settings, &boundary, st));
        conditions.extend(conditions::warnings(st, hidden.as_deref()));
        if let Some(op) = status_patch(st, report, &conditions, &managed, now) {
            if budget::fits(&op, None) {
                sink(op)?;
            } else {
                // Unreachable after `hold_large_status`, unless the object's own foreign
                // conditions are that large: then the write would fail on every run.
                log::error!(target: "reconcile", "IstioFederation {}: status patch exceeds the object budget; not written", st.fed.name);
            }
        }
        if let Some(op) = pin::repin_done(st.fed, report, now) {
            sink(op)?;
        }
        federation_metrics(st, report, &mut out_metrics);
        if let Some((pinned, actual)) = mismatches.get(st.fed.name.as_str()) {
            out_metrics.push(pin::mismatch_metric(&st.fed.name, pinned, actual));
        }
        authz::metric(&boundary, st, &mut out_metrics);
        if let Some(c) = &dataplane {
            metrics::dataplane_metric(st, c, &mut out_metrics);
        }
    }
    Ok(out_metrics)
}

/// What step 1 decides, for the reconcile and for the probe planning alike.
struct Decided<'f, 'r> {
    /// The fetch reports with refused documents turned into failures.
    admitted: Cow<'r, BTreeMap<String, FetchReport>>,
    uuid_owners: UuidOwners,
    states: Vec<FedState<'f>>,
}

/// Step 1 of a run: which fresh documents are admitted (per-peer limits, one owner per cluster
/// UUID), which metadata each federation works from (fresh, else last known good), which
/// retired roots it still retains, and which federations are held because their status would
/// exceed the object budget. One function, so the probe targets the metadata the condition
/// later names.
fn decide_states<'f, 'r>(
    settings: &Settings,
    feds: &'f [Federation],
    fetched: &'r BTreeMap<String, FetchReport>,
    own: &Own,
    installed: Option<&[TrustEntry]>,
) -> Decided<'f, 'r> {
    let (admitted, uuid_owners) = admission::admit(feds, fetched, &settings.limits);
    let rules = rules(settings, own, &uuid_owners);
    let mut states = effective::states(feds, admitted.as_ref(), &rules);
    let retention = retention::Context {
        own,
        installed,
        retention: settings.root_retention,
    };
    retention::apply(&mut states, admitted.as_ref(), &retention);
    budget::hold_over_fleet_share(&mut states, &rules);
    budget::hold_large_status(&mut states, admitted.as_ref(), &rules);
    Decided {
        admitted,
        uuid_owners,
        states,
    }
}

/// The entries we own in the trust object; `None` without its snapshot or when it cannot be
/// read (then nothing is known to be installed, and nothing is concluded from that).
fn installed_entries(settings: &Settings, observed: &Observed) -> Option<Vec<TrustEntry>> {
    let object = observed.trust_object?.first();
    trust_bundle::installed_entries(settings, object)
}

/// What every federation's metadata is judged by this run.
fn rules<'a>(settings: &'a Settings, own: &'a Own<'a>, uuid_owners: &'a UuidOwners) -> Rules<'a> {
    Rules {
        own,
        own_domain: &settings.cluster_domain,
        limits: settings.limits,
        uuid_owners,
    }
}

/// The data-plane probes of this run, as `(federation, url)`: every federation the network
/// phase worked on whose effective metadata names a health-check service that is already
/// imported — its ServiceEntry is in this run's snapshot. A host first seen this run is probed
/// on a later run: before its ServiceEntry exists the request could only fail, or leave the
/// mesh by another route. The states are decided exactly as [`reconcile_into`] decides them,
/// so the target probed is the one its condition names. Pure: the run shell does the requests
/// (docs/operating.md, "Data-plane probe").
pub(crate) fn probe_jobs(
    settings: &Settings,
    observed: &Observed,
    fetched: &BTreeMap<String, FetchReport>,
    now: i64,
) -> Vec<(String, String)> {
    let Some(feds) = observed.federations.as_deref() else {
        return Vec::new();
    };
    if !settings.enabled || !settings.dataplane_probe || fetched.is_empty() {
        return Vec::new();
    }
    let own_fps = own_root_fingerprints(settings, observed);
    let own = Own {
        cluster_uuid: &settings.cluster_uuid,
        root_fingerprints: &own_fps,
        now,
    };
    let installed = installed_entries(settings, observed);
    decide_states(settings, feds, fetched, &own, installed.as_deref())
        .states
        .iter()
        .filter(|st| fetched.contains_key(&st.fed.name))
        .filter_map(|st| {
            let host = conditions::probe_target(st).ok()?;
            let imported = observed.service_entries.as_ref()?;
            if !imported.has_service_entry_for(host) {
                log::info!(target: "probe", "IstioFederation {}: {host} has no ServiceEntry yet; probing it once it is imported", st.fed.name);
                return None;
            }
            Some((
                st.fed.name.clone(),
                crate::discovery::network::probe::url(host),
            ))
        })
        .collect()
}

/// Federation disabled: remove every trust entry, ServiceEntry and DestinationRule we own, and
/// nothing else. A trust object we cannot edit safely is left as it is (and said so).
fn remove_everything_we_own(
    settings: &Settings,
    observed: &Observed,
    sink: &mut Sink,
) -> Result<(), String> {
    if let Some(t) = observed.trust_object.map(|t| t.first()) {
        match trust_bundle::plan(settings, t, &[]) {
            Ok(Some(op)) => sink(op)?,
            Ok(None) => {}
            Err(e) => {
                log::warn!(target: "reconcile", "federation disabled, but our trust entries cannot be removed: {e}")
            }
        }
    }
    for op in authz::deletes_when_disabled(settings, observed) {
        sink(op)?;
    }
    let namespace = settings.federation_namespace.as_str();
    for (snapshot, kind) in [
        (observed.service_entries.as_ref(), "ServiceEntry"),
        (observed.destination_rules.as_ref(), "DestinationRule"),
    ] {
        let scope = Scope { kind, namespace };
        for op in diff::deletes(snapshot, &BTreeSet::new(), &|_| false, &scope) {
            sink(op)?;
        }
    }
    Ok(())
}

/// Writes the trust bundle's one operation, if any, and returns why it cannot be edited, if
/// so. Without a snapshot of the trust object we cannot know what is there; while a
/// federation's spec cannot be read we cannot know which entries are still wanted: both leave
/// the trust entries unchanged.
fn write_trust_bundle(
    settings: &Settings,
    observed: &Observed,
    installed: &[TrustEntry],
    states: &mut [FedState],
    guard: &Guard,
    sink: &mut Sink,
) -> Result<Option<TrustBundleError>, String> {
    let Some(trust_object) = observed.trust_object.map(|t| t.first()) else {
        log::warn!(target: "reconcile", "this run carries no snapshot of the trust-bundle object; trust entries unchanged");
        return Ok(None);
    };
    let broken = &observed.broken_federations;
    if !broken.is_empty() {
        log::warn!(target: "reconcile", "trust entries unchanged while IstioFederation(s) {} cannot be read", broken.join(", "));
        return Ok(None);
    }
    let held = guard.held_domains();
    match budget::plan_trust_bundle(settings, trust_object, installed, states, &held) {
        Ok(Some(op)) => sink(op)?,
        Ok(None) => {}
        Err(e) => {
            log::error!(target: "reconcile", "{e}");
            return Ok(Some(e));
        }
    }
    if let Some(op) = guard.trust_record(settings, trust_object) {
        sink(op)?;
    }
    Ok(None)
}

/// Whether the mesh config the hook reads hides the ServiceEntries it writes (Istio 1.31's
/// `serviceEntryVisibility`; docs/compatibility.md, "Ambient mode"): the condition's message.
fn hidden_service_entries(settings: &Settings, observed: &Observed) -> Option<String> {
    if settings.trust_bundle_mode != crate::hook::settings::TrustBundleMode::MeshConfig {
        return None;
    }
    let mesh = observed
        .trust_object
        .and_then(|t| t.first())?
        .pointer("/data/mesh")?
        .as_str()?;
    let object = format!(
        "ConfigMap {}/{}",
        settings.istio_namespace, settings.mesh_config_name
    );
    services::visibility::hidden(mesh, &settings.federation_namespace, &object)
}

/// Whether this run would remove most federations at once (docs/security.md, "Platform failures"): the objects
/// it would delete and the trust domains no federation claims any more.
fn assess_mass_deletion(
    settings: &Settings,
    observed: &Observed,
    feds: &[Federation],
    records: &[Record],
    policy: &DeletePolicy,
    now: i64,
) -> Guard {
    let wanted: BTreeSet<String> = records.iter().map(|r| r.name.clone()).collect();
    let keep = |o: &istio_objects::Observed| policy.keeps(o);
    let ns = settings.federation_namespace.as_str();
    let mut doomed = Vec::new();
    for (snapshot, kind) in [
        (&observed.service_entries, "ServiceEntry"),
        (&observed.destination_rules, "DestinationRule"),
    ] {
        let scope = Scope {
            kind,
            namespace: ns,
        };
        doomed.extend(mass_deletion::doomed(
            snapshot.as_ref(),
            &wanted,
            &keep,
            &scope,
        ));
    }
    let inputs = mass_deletion::Inputs {
        feds,
        broken: &observed.broken_federations,
        trust_object: observed.trust_object.and_then(|t| t.first()),
        doomed,
    };
    Guard::assess(settings, inputs, now)
}

/// One record at a time: its DestinationRule, then its ServiceEntry (so mTLS is in place
/// first), each written only if it differs; nothing of it is kept once written. Then the
/// deletes `policy` allows: ServiceEntry before DestinationRule, so no traffic loses mTLS
/// first.
fn write_records(
    settings: &Settings,
    observed: &Observed,
    records: &[Record],
    policy: &DeletePolicy,
    guard: &Guard,
    sink: &mut Sink,
) -> Result<(), String> {
    let api = settings.networking_api_version.as_str();
    let ns = settings.federation_namespace.as_str();
    let mut wanted = BTreeSet::new();
    for r in records {
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
    let keep = |o: &istio_objects::Observed| policy.keeps(o) || guard.keeps(o);
    for (snapshot, kind) in [
        (&observed.service_entries, "ServiceEntry"),
        (&observed.destination_rules, "DestinationRule"),
    ] {
        let scope = Scope {
            kind,
            namespace: ns,
        };
        let deletes = diff::deletes(snapshot.as_ref(), &wanted, &keep, &scope);
        for op in guard.take_marks().into_iter().chain(deletes) {
            sink(op)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::network::report::ProbeResult;
    use crate::discovery::services::istio_objects::Snapshot;
    use crate::protocol::certs;
    use crate::protocol::federation::Federation;
    use crate::protocol::labels::{
        FEDERATIONS_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, TRUST_ENTRIES_ANNOTATION,
    };
    use serde_json::json;

    fn settings() -> Settings {
        Settings::load(None, &|k| {
            let v = match k {
                "ISTIO_FEDERATION_ENABLED" => "true",
                "CLUSTER_DOMAIN" => "my.cluster",
                "CLUSTER_UUID" => "own-uuid",
                _ => return None,
            };
            Some(v.to_string())
        })
        .unwrap()
    }

    fn federation(name: &str, trust_domain: &str, cache: Value) -> Federation {
        Federation::parse(&json!({
            "metadata": {"name": name},
            "spec": {"trustDomain": trust_domain, "metadataEndpoint": format!("https://{trust_domain}/metadata")},
            "status": {"metadataCache": cache},
        }))
        .unwrap()
    }

    fn service_entry(name: &str, federations: &str) -> Value {
        json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": "d8-istio",
                "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
                "annotations": {FEDERATIONS_ANNOTATION: federations}},
            "spec": {"hosts": ["x"]}})
    }

    fn deleted(outcome: &Outcome) -> Vec<String> {
        outcome
            .operations
            .iter()
            .filter_map(|op| match op {
                Operation::Delete { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn deletes_are_held_back_for_a_federation_with_dropped_items() {
        // a's cached private metadata has an item we drop (a hostname outside its domain);
        // b's has nothing wrong. Neither has public metadata, so neither wants a record.
        let with_drop = json!({"private": {"ingressGateways": [{"address": "1.1.1.1", "port": 15443}],
            "publicServices": [{"hostname": "web.evil.example", "ports": [{"name": "http", "port": 80}]}]}});
        let clean = json!({"private": {"ingressGateways": [], "publicServices": []}});
        let entries = [service_entry("old-a", "a"), service_entry("old-b", "b")];
        let observed = Observed {
            federations: Some(vec![
                federation("a", "a.local", with_drop),
                federation("b", "b.local", clean),
            ]),
            service_entries: Some(Snapshot::from_values(&entries)),
            ..Default::default()
        };
        let outcome = reconcile(&settings(), &observed, &BTreeMap::new(), 1_800_000_000);
        assert_eq!(deleted(&outcome), ["old-b"]);
    }

    #[test]
    fn an_unreadable_federation_without_a_name_freezes_every_delete() {
        let entries = [service_entry("old-a", "a"), service_entry("old-b", "b")];
        let mut observed = Observed {
            federations: Some(vec![]),
            broken_federations: vec![String::new()],
            service_entries: Some(Snapshot::from_values(&entries)),
            ..Default::default()
        };
        let now = 1_800_000_000;
        let outcome = reconcile(&settings(), &observed, &BTreeMap::new(), now);
        assert!(deleted(&outcome).is_empty(), "{:?}", outcome.operations);
        // A named one holds back only its own objects.
        observed.broken_federations = vec!["a".to_string()];
        let outcome = reconcile(&settings(), &observed, &BTreeMap::new(), now);
        assert_eq!(deleted(&outcome), ["old-b"]);
    }

    /// The mesh-config ConfigMap with one root we installed for `b.local`.
    fn mesh_config_owning_a_root() -> Value {
        let pem = certs::to_pem("CERTIFICATE", b"not really DER; fingerprinted all the same");
        let fp = certs::pem_blocks(&pem)
            .map(|b| certs::fingerprint(&b[0].der))
            .unwrap();
        let mesh = serde_saphyr::to_string(
            &json!({"caCertificates": [{"pem": pem, "trustDomains": ["b.local"]}]}),
        )
        .unwrap();
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio", "namespace": "d8-istio", "resourceVersion": "1",
                "annotations": {TRUST_ENTRIES_ANNOTATION: json!({"b.local": [fp]}).to_string()}},
            "data": {"mesh": mesh}})
    }

    fn trust_writes(outcome: &Outcome) -> usize {
        outcome
            .operations
            .iter()
            .filter(|op| matches!(op, Operation::JsonPatch { kind, .. } if kind == "ConfigMap"))
            .count()
    }

    #[test]
    fn trust_entries_of_a_federation_with_an_unusable_cache_are_kept() {
        let cm = [mesh_config_owning_a_root()];
        let unusable = json!({"public": {"clusterUUID": "peer-b"}});
        let observed = Observed {
            federations: Some(vec![federation("b", "b.local", unusable)]),
            trust_object: Some(&cm),
            ..Default::default()
        };
        let outcome = reconcile(&settings(), &observed, &BTreeMap::new(), 1_800_000_000);
        assert_eq!(trust_writes(&outcome), 0, "{:?}", outcome.operations);
        // Without any cached public metadata the root is no longer wanted: it is removed.
        let observed = Observed {
            federations: Some(vec![federation("b", "b.local", json!({}))]),
            trust_object: Some(&cm),
            ..Default::default()
        };
        let outcome = reconcile(&settings(), &observed, &BTreeMap::new(), 1_800_000_000);
        assert_eq!(trust_writes(&outcome), 1, "{:?}", outcome.operations);
    }

    #[test]
    fn trust_entries_stay_while_a_federation_cannot_be_read() {
        let cm = [mesh_config_owning_a_root()];
        let observed = Observed {
            federations: Some(vec![federation("b", "b.local", json!({}))]),
            broken_federations: vec!["c".to_string()],
            trust_object: Some(&cm),
            ..Default::default()
        };
        let outcome = reconcile(&settings(), &observed, &BTreeMap::new(), 1_800_000_000);
        assert_eq!(trust_writes(&outcome), 0, "{:?}", outcome.operations);
    }

    #[test]
    fn disabled_removes_only_what_we_own() {
        let mut foreign = service_entry("theirs", "a");
        foreign["metadata"]["labels"] = json!({});
        let entries = [service_entry("ours", "a"), foreign];
        let cm = [mesh_config_owning_a_root()];
        let observed = Observed {
            service_entries: Some(Snapshot::from_values(&entries)),
            trust_object: Some(&cm),
            ..Default::default()
        };
        let mut disabled = settings();
        disabled.enabled = false;
        let outcome = reconcile(&disabled, &observed, &BTreeMap::new(), 1_800_000_000);
        assert_eq!(deleted(&outcome), ["ours"]);
        assert_eq!(trust_writes(&outcome), 1);
        assert_eq!(outcome.metrics, [metrics::expire()]);
    }

    /// A federation with public metadata from this run's fetch and a cached private document
    /// publishing `hosts` behind one gateway.
    fn probed(hosts: &[&str]) -> (Observed<'static>, BTreeMap<String, FetchReport>) {
        use crate::discovery::network::report::Attempt;
        use crate::protocol::metadata::PublicMetadata;
        let services: Vec<Value> = hosts
            .iter()
            .map(|h| json!({"hostname": h, "ports": [{"name": "http", "port": 80}]}))
            .collect();
        let cache = json!({"private": {"ingressGateways": [{"address": "1.1.1.1", "port": 15443}],
            "publicServices": services}});
        let observed = Observed {
            federations: Some(vec![federation("b", "b.local", cache)]),
            ..Default::default()
        };
        let public = PublicMetadata {
            cluster_uuid: "uuid-b".into(),
            authn_key_pub: String::new(),
            root_ca: String::new(),
            roots: vec![],
            rejected: vec![],
        };
        let report = FetchReport {
            public: Some(Attempt {
                url: "https://b.local/metadata/public/public.json".into(),
                result: Ok(public),
                seconds: 0.0,
            }),
            ..Default::default()
        };
        (observed, BTreeMap::from([("b".to_string(), report)]))
    }

    fn with_probe() -> Settings {
        let mut s = settings();
        s.dataplane_probe = true;
        s
    }

    fn dataplane(outcome: &Outcome) -> Option<Value> {
        outcome.operations.iter().find_map(|op| match op {
            Operation::StatusMergePatch { patch, .. } => patch["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "DataplaneConnectionReady")
                .cloned(),
            _ => None,
        })
    }

    fn gauge(outcome: &Outcome) -> Vec<Value> {
        outcome
            .metrics
            .iter()
            .filter(|m| m["name"] == metrics::Metric::DataplaneHealth.name())
            .cloned()
            .collect()
    }

    /// Everything but the status patch.
    fn objects(outcome: &Outcome) -> String {
        let ops: Vec<&Operation> = outcome
            .operations
            .iter()
            .filter(|op| !matches!(op, Operation::StatusMergePatch { .. }))
            .collect();
        format!("{ops:?}")
    }

    #[test]
    fn the_probe_sets_only_its_condition_and_gauge() {
        let hc = "alliance-healthcheck-uuid-b.d8-istio.svc.b.local";
        let (mut observed, mut fetched) = probed(&["web.prod.svc.b.local", hc]);
        let now = 1_800_000_000;
        // Not imported yet (no ServiceEntry for the host in the snapshot): not probed.
        assert!(probe_jobs(&with_probe(), &observed, &fetched, now).is_empty());
        let se = |host: &str, managed: bool| {
            let labels = if managed {
                json!({crate::protocol::labels::MANAGED_BY_LABEL: crate::protocol::labels::MANAGED_BY_VALUE})
            } else {
                json!({})
            };
            json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
                "metadata": {"name": format!("se-{host}"), "namespace": "d8-istio", "labels": labels},
                "spec": {"hosts": [host], "location": "MESH_INTERNAL", "ports": [], "resolution": "STATIC", "endpoints": []}})
        };
        observed.service_entries = Some(
            crate::discovery::services::istio_objects::Snapshot::from_values(&[
                se("web.prod.svc.b.local", true),
                se(hc, false),
            ]),
        );
        assert!(probe_jobs(&with_probe(), &observed, &fetched, now).is_empty());
        observed.service_entries =
            Some(crate::discovery::services::istio_objects::Snapshot::from_values(&[se(hc, true)]));
        assert_eq!(
            probe_jobs(&with_probe(), &observed, &fetched, now),
            [("b".to_string(), format!("http://{hc}:80/healthz"))]
        );
        // Probe off: no job, no condition, no gauge.
        assert!(probe_jobs(&settings(), &observed, &fetched, now).is_empty());
        // The rest is decided from the reports; the stand-in ServiceEntry would be deleted.
        observed.service_entries = None;
        assert!(probe_jobs(&settings(), &observed, &fetched, now).is_empty());
        let off = reconcile(&settings(), &observed, &fetched, now);
        assert_eq!((dataplane(&off), gauge(&off).len()), (None, 0));

        fetched.get_mut("b").unwrap().probe = Some(ProbeResult::Healthy);
        let healthy = reconcile(&with_probe(), &observed, &fetched, now);
        let c = dataplane(&healthy).unwrap();
        assert_eq!(
            (&c["status"], &c["reason"]),
            (&json!("True"), &json!("Succeeded"))
        );
        assert_eq!(
            c["message"],
            format!("GET http://{hc}:80/healthz through the mesh answered 200")
        );
        let g = gauge(&healthy);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0]["value"], 1.0);
        assert_eq!(
            g[0]["labels"],
            json!({"alliance_kind": "IstioFederation", "name": "b", "remote_cluster_uuid": "uuid-b"})
        );

        let failure = "unexpected status code: 503";
        fetched.get_mut("b").unwrap().probe = Some(ProbeResult::Failed(failure.into()));
        let failed = reconcile(&with_probe(), &observed, &fetched, now);
        let c = dataplane(&failed).unwrap();
        assert_eq!(
            (&c["status"], &c["reason"]),
            (&json!("False"), &json!("ProbeFailed"))
        );
        assert_eq!(
            c["message"],
            format!("GET http://{hc}:80/healthz: {failure}")
        );
        assert_eq!(gauge(&failed)[0]["value"], 0.0);
        // Visibility only: whatever the probe found, the objects written are the same (and
        // nothing is deleted).
        assert_eq!(objects(&failed), objects(&healthy));
        assert_eq!(objects(&failed), objects(&off));
        assert!(deleted(&failed).is_empty());

        // Offline (no report): the condition is left as it is.
        let offline = reconcile(&with_probe(), &observed, &BTreeMap::new(), now);
        assert_eq!((dataplane(&offline), gauge(&offline).len()), (None, 0));
    }

    #[test]
    fn without_a_target_the_condition_says_why_in_deckhouses_words() {
        let now = 1_800_000_000;
        let case = |hosts: &[&str]| {
            let (observed, fetched) = probed(hosts);
            assert!(probe_jobs(&with_probe(), &observed, &fetched, now).is_empty());
            let out = reconcile(&with_probe(), &observed, &fetched, now);
            assert_eq!(gauge(&out)[0]["value"], 0.0);
            let c = dataplane(&out).unwrap();
            assert_eq!(c["status"], "False");
            (
                c["reason"].as_str().unwrap().to_string(),
                c["message"].as_str().unwrap().to_string(),
            )
        };
        assert_eq!(
            case(&["web.prod.svc.b.local"]),
            (
                "ConfigurationError".into(),
                "alliance-healthcheck service not found in remote public services".into()
            )
        );
        assert_eq!(
            case(&[]),
            (
                "ConfigurationError".into(),
                "no public services in private metadata".into()
            )
        );
        // No public metadata at all: Deckhouse's MetadataUnavailable, UUID unknown.
        let (observed, mut fetched) = probed(&["alliance-healthcheck-u.d8-istio.svc.b.local"]);
        fetched.get_mut("b").unwrap().public = None;
        let out = reconcile(&with_probe(), &observed, &fetched, now);
        let c = dataplane(&out).unwrap();
        assert_eq!(
            (&c["reason"], &c["message"]),
            (
                &json!("MetadataUnavailable"),
                &json!("public metadata not available yet")
            )
        );
        assert_eq!(gauge(&out)[0]["labels"]["remote_cluster_uuid"], "unknown");
    }
}
