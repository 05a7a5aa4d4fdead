//! The pure core of a discovery run: observed snapshots (+ what the network phase fetched)
//! → the operations and metrics that make the cluster match (SPEC §4.2 steps 2–8).
//!
//! No I/O and no clock: `now` is passed in. The same input gives byte-identical output.

use crate::binding::BindingInput;
use crate::certs;
use crate::config;
use crate::federation::{self, Federation};
use crate::istio_objects;
use crate::json;
use crate::k8s;
use crate::metadata::{self, Failure, Own, PrivateMetadata, PublicMetadata};
use crate::metrics;
use crate::patch::{self, Operation};
use crate::service_entries::{self, Source};
use crate::settings::Settings;
use crate::status::{self, Condition};
use crate::timefmt;
use crate::trust_bundle::{self, TrustEntry};
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A root that expires within this many seconds is called out in the condition message.
const EXPIRY_WARNING: i64 = 30 * 24 * 3600;
/// A successful fetch rewrites unchanged metadata only when the stored timestamp is older.
const TIMESTAMP_REFRESH: i64 = 10 * 60;
/// At most this many dropped items are listed in a condition message.
const MAX_LISTED: usize = 5;

/// Snapshots of one run. `None` = no context of the run carried that binding: state unknown.
#[derive(Debug, Default)]
pub struct Observed<'a> {
    /// Parsed federations in name order (`None`: no snapshot this run).
    pub federations: Option<Vec<Federation>>,
    /// Names of federations whose spec cannot be read (logged once, when parsed).
    pub broken_federations: Vec<String>,
    pub keypair: Option<&'a [Value]>,
    pub trust_object: Option<&'a [Value]>,
    pub local_root: Option<&'a [Value]>,
    pub service_entries: Option<istio_objects::Snapshot<'a>>,
    pub destination_rules: Option<istio_objects::Snapshot<'a>>,
}

/// The bindings whose (possibly huge) snapshots are parsed one object at a time, straight into
/// their own types, instead of into one generic JSON tree held for the whole run.
pub const RAW_BINDINGS: [&str; 3] = [
    config::FEDERATIONS,
    config::SERVICE_ENTRIES,
    config::DESTINATION_RULES,
];

/// Parses the federations snapshot: each object on its own (only what the hook reads is kept),
/// sorted by name; unreadable ones are logged and reported by name ("" when they have none).
fn parse_federations(b: &BindingInput) -> (Option<Vec<Federation>>, Vec<String>) {
    let mut feds = Vec::new();
    let mut broken = Vec::new();
    let mut take = |parsed: Result<Federation, (String, String)>| match parsed {
        Ok(f) => feds.push(f),
        Err((name, e)) => {
            log::error!(target: "reconcile", "{e}; its ServiceEntries and trust entries are kept unchanged until it is fixed");
            broken.push(name);
        }
    };
    let present = if let Some(raw) = b.raw_snapshot(config::FEDERATIONS) {
        for r in raw {
            take(Federation::parse_json(r.get()));
        }
        true
    } else if let Some(vals) = b.snapshot(config::FEDERATIONS) {
        for v in vals {
            take(Federation::parse(v).map_err(|e| (k8s::name(v).unwrap_or("").to_string(), e)));
        }
        true
    } else {
        false
    };
    feds.sort_by(|a, b| a.name.cmp(&b.name));
    (present.then_some(feds), broken)
}

/// Our Istio objects from a snapshot, raw (see [`RAW_BINDINGS`]) or already parsed.
fn managed_objects<'a>(b: &BindingInput<'a>, binding: &str) -> Option<istio_objects::Snapshot<'a>> {
    if let Some(raw) = b.raw_snapshot(binding) {
        return Some(istio_objects::Snapshot::from_raw(raw));
    }
    b.snapshot(binding)
        .map(istio_objects::Snapshot::from_values)
}

impl<'a> Observed<'a> {
    pub fn from_binding(b: &'a BindingInput) -> Observed<'a> {
        let (federations, broken_federations) = parse_federations(b);
        Observed {
            federations,
            broken_federations,
            keypair: b.snapshot(config::KEYPAIR),
            trust_object: b.snapshot(config::TRUST_BUNDLE),
            local_root: b.snapshot(config::LOCAL_ROOT),
            service_entries: managed_objects(b, config::SERVICE_ENTRIES),
            destination_rules: managed_objects(b, config::DESTINATION_RULES),
        }
    }

    /// The Ed25519 private key PEM from the key-pair Secret (`priv.pem`), if present.
    pub fn private_key_pem(&self) -> Option<String> {
        let secret = self.keypair?.first()?;
        let b64 = secret.pointer("/data/priv.pem")?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        String::from_utf8(bytes).ok()
    }
}

/// One request of the network phase.
#[derive(Debug, Clone)]
pub struct Attempt<T> {
    pub url: String,
    pub result: Result<T, Failure>,
    pub seconds: f64,
}

/// What the network phase learned about one federation in this run.
#[derive(Debug, Clone, Default)]
pub struct FetchReport {
    pub public: Option<Attempt<PublicMetadata>>,
    pub private: Option<Attempt<PrivateMetadata>>,
    /// Set when the private request was not made (no key pair, public failed, …).
    pub private_skipped: Option<Failure>,
}

/// Everything a run emits.
#[derive(Debug, Default)]
pub struct Outcome {
    pub operations: Vec<Operation>,
    pub metrics: Vec<Value>,
}

/// Own root-certificate fingerprints: the local root (istio-ca-root-cert) and, in cacerts
/// mode, the local roots in `root-cert.pem`.
pub fn own_root_fingerprints(settings: &Settings, observed: &Observed) -> Vec<String> {
    let mut fps: Vec<String> = observed
        .local_root
        .and_then(|l| l.first())
        .and_then(|cm| cm.pointer("/data/root-cert.pem"))
        .and_then(Value::as_str)
        .map(certs::certificate_fingerprints)
        .unwrap_or_default();
    fps.extend(trust_bundle::local_fingerprints(
        settings,
        observed.trust_object.and_then(|t| t.first()),
    ));
    fps.sort();
    fps.dedup();
    fps
}

/// Per-federation state derived this run.
struct FedState<'f> {
    fed: &'f Federation,
    public: Option<PublicMetadata>,
    public_problem: Option<Failure>,
    private: Option<PrivateMetadata>,
    private_problem: Option<Failure>,
    /// `status.metadataCache.private` to write: the fresh document as validated, with what it
    /// carried over from the last good one; `None` without a successful fetch.
    private_cache: Option<Value>,
}

fn effective_public(
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
                    metadata::CERTIFICATE_REJECTED,
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
fn cached_private(fed: &Federation) -> Option<Result<PrivateMetadata, Failure>> {
    let raw = fed.cached_private.as_ref()?;
    Some(
        serde_json::from_str::<json::Node>(raw.get())
            .map_err(|e| Failure::new(metadata::INVALID_PRIVATE, format!("not JSON: {e}")))
            .and_then(|v| metadata::validate_private(&v, &fed.trust_domain)),
    )
}

/// The private metadata this run works from, a problem with it, and the cache to write.
type EffectivePrivate = (Option<PrivateMetadata>, Option<Failure>, Option<Value>);

fn effective_private(
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
            for op in patch::deletes(snapshot, &BTreeSet::new(), &|_| false) {
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
    let mut trust_problem: Option<String> = None;
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
                    .get(k8s::FEDERATIONS_ANNOTATION)
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
            if let Some(op) = patch::diff_one(desired, current.as_ref()) {
                sink(op)?;
            }
        }
        wanted.insert(r.name.clone());
    }
    // Deletes: ServiceEntry before its DestinationRule, so no traffic loses mTLS first.
    for op in patch::deletes(observed.service_entries.as_ref(), &wanted, &keep) {
        sink(op)?;
    }
    for op in patch::deletes(observed.destination_rules.as_ref(), &wanted, &keep) {
        sink(op)?;
    }

    // Status and metrics, per federation in name order.
    for st in &states {
        let report = fetched.get(&st.fed.name);
        let mut conditions = Vec::with_capacity(4);
        if let Some(r) = report {
            conditions.extend(exchange_conditions(r));
        }
        conditions.push(trust_condition(st, trust_problem.as_deref(), now));
        conditions.push(services_condition(st));
        if let Some(op) = status_patch(st, report, &conditions, now) {
            sink(op)?;
        }
        federation_metrics(st, report, &mut out_metrics);
    }
    Ok(out_metrics)
}

fn exchange_conditions(r: &FetchReport) -> Vec<Condition> {
    let mut out = Vec::with_capacity(2);
    if let Some(a) = &r.public {
        out.push(match &a.result {
            Ok(_) => Condition::new(
                status::PUBLIC,
                "True",
                "Succeeded",
                "Public metadata exchange succeeded.",
            ),
            Err(f) => Condition::new(status::PUBLIC, "False", f.reason, f.message.clone()),
        });
    }
    match (&r.private, &r.private_skipped) {
        (Some(a), _) => out.push(match &a.result {
            Ok(_) => Condition::new(
                status::PRIVATE,
                "True",
                "Succeeded",
                "Private metadata exchange succeeded.",
            ),
            Err(f) => Condition::new(status::PRIVATE, "False", f.reason, f.message.clone()),
        }),
        (None, Some(f)) => {
            let st = if f.reason == "AwaitingPublic" {
                "Unknown"
            } else {
                "False"
            };
            out.push(Condition::new(
                status::PRIVATE,
                st,
                f.reason,
                f.message.clone(),
            ));
        }
        (None, None) => {}
    }
    out
}

fn trust_condition(st: &FedState, trust_problem: Option<&str>, now: i64) -> Condition {
    let td = &st.fed.trust_domain;
    let Some(public) = &st.public else {
        return match &st.public_problem {
            Some(f) => Condition::new(
                status::TRUST,
                "False",
                f.reason,
                format!("{}. Root certificates installed earlier are kept.", f.message.trim_end_matches('.')),
            ),
            None => Condition::new(
                status::TRUST,
                "False",
                "AwaitingPublic",
                "Public metadata has not been fetched yet; the peer's root certificate is not trusted.",
            ),
        };
    };
    if public.roots.is_empty() {
        return Condition::new(
            status::TRUST,
            "False",
            metadata::CERTIFICATE_REJECTED,
            format!(
                "No root certificate of the peer is trusted: {}.",
                public.rejected_summary()
            ),
        );
    }
    if let Some(problem) = trust_problem {
        return Condition::new(
            status::TRUST,
            "False",
            "TrustBundleUnavailable",
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
    Condition::new(status::TRUST, "True", "Succeeded", msg)
}

fn services_condition(st: &FedState) -> Condition {
    if let (None, Some(f)) = (&st.public, &st.public_problem) {
        return Condition::new(
            status::SERVICES,
            "False",
            f.reason,
            "Cached public metadata is unusable; ServiceEntries created earlier are kept.",
        );
    }
    if st.public.is_none() {
        return Condition::new(
            status::SERVICES,
            "False",
            "AwaitingPublic",
            "Services are imported once public metadata is available.",
        );
    }
    let Some(private) = &st.private else {
        return match &st.private_problem {
            Some(f) => Condition::new(
                status::SERVICES,
                "False",
                f.reason,
                format!(
                    "{}. ServiceEntries created earlier are kept.",
                    f.message.trim_end_matches('.')
                ),
            ),
            None => Condition::new(
                status::SERVICES,
                "False",
                "AwaitingPrivate",
                "Private metadata has not been fetched yet; no services are imported.",
            ),
        };
    };
    if private.ingress_gateways.is_empty() {
        return Condition::new(
            status::SERVICES,
            "False",
            "NoIngressGateways",
            "The peer publishes no ingress gateways, so its services cannot be reached; none are imported.",
        );
    }
    let n = private.service_count();
    let imported = format!("Imported {n} service{}", if n == 1 { "" } else { "s" });
    if private.dropped.is_empty() {
        return Condition::new(
            status::SERVICES,
            "True",
            "Succeeded",
            format!("{imported}."),
        );
    }
    let reason = if private
        .dropped
        .iter()
        .any(|d| d.reason == metadata::HOSTNAME_OUT_OF_SCOPE)
    {
        metadata::HOSTNAME_OUT_OF_SCOPE
    } else {
        metadata::INVALID_PRIVATE
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
    Condition::new(
        status::SERVICES,
        if n > 0 { "True" } else { "False" },
        reason,
        msg,
    )
}

/// The status merge patch, or `None` when nothing would change.
fn status_patch(
    st: &FedState,
    report: Option<&FetchReport>,
    conditions: &[Condition],
    now: i64,
) -> Option<Operation> {
    let fed = st.fed;
    let mut status = Map::new();
    let mut cache = Map::new();
    let stale = |ts: &Option<String>| {
        ts.as_deref()
            .and_then(timefmt::parse_rfc3339)
            .is_none_or(|t| now - t >= TIMESTAMP_REFRESH)
    };
    if let Some(Attempt { result: Ok(p), .. }) = report.and_then(|r| r.public.as_ref()) {
        let v = p.to_cache();
        if fed.cached_public.as_ref() != Some(&v) || stale(&fed.public_fetched_at) {
            cache.insert("public".into(), v);
            cache.insert(
                "publicLastFetchTimestamp".into(),
                timefmt::rfc3339(now).into(),
            );
        }
    }
    if let Some(v) = st.private_cache.clone() {
        let cached = fed
            .cached_private
            .as_ref()
            .and_then(|r| serde_json::from_str::<Value>(r.get()).ok());
        if cached.as_ref() != Some(&v) || stale(&fed.private_fetched_at) {
            cache.insert("private".into(), v);
            cache.insert(
                "privateLastFetchTimestamp".into(),
                timefmt::rfc3339(now).into(),
            );
        }
    }
    if !cache.is_empty() {
        status.insert("metadataCache".into(), Value::Object(cache));
    }
    let merged = status::merge(&fed.conditions, conditions, now);
    if merged != fed.conditions {
        status.insert("conditions".into(), Value::Array(merged));
    }
    if status.is_empty() {
        return None;
    }
    Some(Operation::StatusMergePatch {
        api_version: federation::API_VERSION.into(),
        kind: federation::KIND.into(),
        name: fed.name.clone(),
        patch: json!({"status": status}),
    })
}

fn federation_metrics(st: &FedState, report: Option<&FetchReport>, out: &mut Vec<Value>) {
    let name = st.fed.name.as_str();
    if let Some(r) = report {
        let attempts = [
            r.public
                .as_ref()
                .map(|a| (&a.url, a.result.is_err(), a.seconds)),
            r.private
                .as_ref()
                .map(|a| (&a.url, a.result.is_err(), a.seconds)),
        ];
        for (url, failed, seconds) in attempts.into_iter().flatten() {
            let labels = [("federation_name", name), ("endpoint", url.as_str())];
            out.push(metrics::set(
                metrics::FETCH_ERRORS,
                if failed { 1.0 } else { 0.0 },
                &labels,
            ));
            out.push(metrics::set(metrics::FETCH_DURATION, seconds, &labels));
        }
    }
    if let Some(p) = &st.public {
        if let Some(min) = p.roots.iter().map(|r| r.not_after).min() {
            out.push(metrics::set(
                metrics::ROOT_CA_EXPIRY,
                min as f64,
                &[
                    ("federation_name", name),
                    ("trust_domain", &st.fed.trust_domain),
                ],
            ));
        }
    }
    let imported = match (&st.public, &st.private) {
        (Some(_), Some(p)) if !p.ingress_gateways.is_empty() => p.service_count(),
        _ => 0,
    };
    out.push(metrics::set(
        metrics::IMPORTED_SERVICES,
        imported as f64,
        &[("federation_name", name)],
    ));
}
