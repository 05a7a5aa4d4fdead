//! The trust bundle (docs/how-it-works.md, "Trust bundle modes"): peers' root certificates bound to
//! their trust domains.
//!
//! Ownership is recorded on the object itself, in the annotation
//! `federation.istio.deckhouse.io/managed-trust-entries` = `{"<trust domain>": ["<sha256>", …]}`.
//! An entry is ours only when its (trust domain, certificate fingerprint) pair is listed
//! there, so entries an administrator wrote — even for the same trust domain — are never
//! touched. Every write is a JSONPatch that first `test`s the value it was computed from: a
//! concurrent writer makes the patch fail, and the next run recomputes from fresh state.

use crate::discovery::diff::{Manifest, Operation};
use crate::discovery::shares;
use crate::discovery::state::FedState;
use crate::discovery::trust::mesh_yaml::{self, MeshDoc, NewEntry};
use crate::hook::k8s;
use crate::hook::settings::{Settings, TrustBundleMode, CACERTS_SECRET};
use crate::protocol::certs;
use crate::protocol::labels::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, TRUST_ENTRIES_ANNOTATION};
use crate::protocol::names;
use crate::protocol::text::{self, Unb64Error};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One remote root certificate to trust for one trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustEntry {
    pub trust_domain: String,
    /// One canonical `CERTIFICATE` PEM block (istiod reads only the first block of a `pem`).
    pub pem: String,
    pub fingerprint: String,
}

type Owned = BTreeMap<String, BTreeSet<String>>;

fn owned_of(entries: &[TrustEntry]) -> Owned {
    let mut m = Owned::new();
    for e in entries {
        m.entry(e.trust_domain.clone())
            .or_default()
            .insert(e.fingerprint.clone());
    }
    m
}

/// Reads the ownership annotation. A malformed one is treated as "nothing owned": we then
/// remove nothing, and adopt entries that are exactly what we want (no duplicates).
fn read_owned(obj: &Value) -> Owned {
    let Some(raw) = k8s::annotation(obj, TRUST_ENTRIES_ANNOTATION) else {
        return Owned::new();
    };
    match serde_json::from_str::<Owned>(raw) {
        Ok(m) => m,
        Err(e) => {
            log::warn!(target: "trust_bundle", "annotation {TRUST_ENTRIES_ANNOTATION} is not valid ({e}); treating no trust entries as ours");
            Owned::new()
        }
    }
}

/// The trust domains with roots of ours in the trust object (its ownership annotation).
pub(crate) fn owned_trust_domains(obj: &Value) -> BTreeSet<String> {
    read_owned(obj).into_keys().collect()
}

/// Our installed roots' fingerprints, by trust domain.
pub(crate) fn owned_fingerprints(obj: &Value) -> BTreeMap<String, BTreeSet<String>> {
    read_owned(obj)
}

fn owns(owned: &Owned, td: &str, fp: &str) -> bool {
    owned.get(td).is_some_and(|s| s.contains(fp))
}

fn owned_json(owned: &Owned) -> String {
    serde_json::to_string(owned).unwrap_or_else(|_| "{}".to_string())
}

/// Fingerprint of the certificate of a PEM text that holds exactly one block, a certificate:
/// the only `pem` we ever write. An entry with more (an administrator's bundle "peer root +
/// another root") is someone else's, even when its first certificate is one of ours.
fn only_cert_fingerprint(pem: &str) -> Option<String> {
    match certs::pem_blocks(pem).ok()?.as_slice() {
        [b] if b.label == "CERTIFICATE" => Some(certs::fingerprint(&b.der)),
        _ => None,
    }
}

/// An upper bound of the bytes one entry adds to the trust object, as the API server stores
/// it: in `mesh-config` mode the PEM lines indented in the YAML text (each newline escaped in
/// JSON), the `pem`/`trustDomains` keys and the trust domain; in `cacerts` mode the PEM in
/// base64; in both its fingerprint in the ownership annotation (JSON inside a JSON string).
pub(crate) fn entry_cost(mode: TrustBundleMode, pem: &str, trust_domain: &str) -> usize {
    let lines = pem.lines().count() + 1;
    let text = match mode {
        TrustBundleMode::MeshConfig => pem.len() + 6 * lines + 2 * trust_domain.len() + 48,
        TrustBundleMode::Cacerts => pem.len().div_ceil(3) * 4 + 4,
    };
    text + 2 * trust_domain.len() + 80
}

/// Fingerprints of certificates in the trust object that are not ours: in `cacerts` mode these
/// are the local roots, which a peer must never present as its own.
pub(crate) fn local_fingerprints(settings: &Settings, observed: Option<&Value>) -> Vec<String> {
    let (Some(obj), TrustBundleMode::Cacerts) = (observed, settings.trust_bundle_mode) else {
        return Vec::new();
    };
    let Ok(text) = cacerts_root(obj) else {
        return Vec::new();
    };
    let owned: BTreeSet<String> = read_owned(obj).into_values().flatten().collect();
    certs::certificate_fingerprints(&text)
        .into_iter()
        .filter(|fp| !owned.contains(fp))
        .collect()
}

/// Why the trust object cannot be edited safely this run. Nothing is written then; the
/// `TrustBundleReady` condition carries the text (docs/reference/conditions.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustBundleError {
    /// The mesh-config ConfigMap's `data.mesh` cannot be read or rendered.
    #[error("{0}")]
    MeshConfig(String),
    /// The edit is refused, and with it the removal of entries we own that should go: they
    /// stay installed. `installed` holds their `(trust domain, fingerprint)`.
    #[error("{message}")]
    Stuck {
        message: String,
        installed: Vec<(String, String)>,
    },
    /// cacerts mode, and the plug-in CA Secret does not exist: we never create it.
    #[error("Secret {namespace}/{CACERTS_SECRET} not found: cacerts mode appends peer roots to the plug-in CA's root-cert.pem and never creates that Secret (use TRUST_BUNDLE_MODE=mesh-config, or install a plug-in CA)")]
    CacertsMissing { namespace: String },
    /// The plug-in CA Secret's `root-cert.pem` is not readable PEM.
    #[error("Secret {namespace}/{CACERTS_SECRET} {problem}; not editing it")]
    CacertsUnreadable { namespace: String, problem: String },
}

/// Computes the single operation (if any) that makes the trust object hold exactly `desired`
/// among the entries we own. `observed` is the trust object, `None` when it does not exist.
/// `Err` explains why the object cannot be edited safely; then nothing is written.
pub fn plan(
    settings: &Settings,
    observed: Option<&Value>,
    desired: &[TrustEntry],
) -> Result<Option<Operation>, TrustBundleError> {
    match settings.trust_bundle_mode {
        TrustBundleMode::MeshConfig => plan_mesh_config(settings, observed, desired),
        TrustBundleMode::Cacerts => plan_cacerts(settings, observed, desired),
    }
}

/// `ConfigMap <ns>/<name>` of the mesh config, as messages name it.
fn mesh_config_object(settings: &Settings) -> String {
    format!(
        "ConfigMap {}/{}",
        settings.istio_namespace, settings.mesh_config_name
    )
}

/// The `mesh` text of the mesh-config ConfigMap (`None` when the key is absent).
fn mesh_text(obj: &Value) -> Result<Option<&str>, String> {
    match obj.pointer("/data/mesh") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err("data.mesh is not a string".into()),
    }
}

/// Parses the mesh config and locates its `caCertificates` node; `Err` when it cannot be
/// edited safely (docs/how-it-works.md, "Trust bundle modes": only that node's bytes ever change).
fn parse_mesh<'a>(
    settings: &Settings,
    obj: &'a Value,
) -> Result<(Option<&'a str>, MeshDoc<'a>), String> {
    let what = mesh_config_object(settings);
    let text = mesh_text(obj).map_err(|e| format!("{what}: {e}"))?;
    let doc =
        MeshDoc::parse(text.unwrap_or("")).map_err(|e| format!("{what}: {e}; not editing it"))?;
    Ok((text, doc))
}

/// `(trust domain, fingerprint)` of each existing `caCertificates` entry that has exactly the
/// shape we write (`pem` and a single trust domain, nothing else); `None` for any other entry.
fn entry_keys(doc: &MeshDoc) -> Vec<Option<(String, String)>> {
    doc.entries()
        .into_iter()
        .map(|e| {
            let (td, pem) = e?;
            Some((td, only_cert_fingerprint(&pem)?))
        })
        .collect()
}

/// The entries we own for `trust_domains`, as they stand in the trust object. A federation
/// whose metadata cannot be read this run keeps its entries: adding them to the desired set
/// makes [`plan`] leave them in place instead of removing them.
pub(crate) fn owned_entries(
    settings: &Settings,
    observed: Option<&Value>,
    trust_domains: &BTreeSet<String>,
) -> Vec<TrustEntry> {
    if trust_domains.is_empty() {
        return Vec::new();
    }
    let mut all = installed_entries(settings, observed).unwrap_or_default();
    all.retain(|e| trust_domains.contains(&e.trust_domain));
    all
}

/// Every entry we own in the trust object, in the object's order (the first one installed
/// first); `None` when the object cannot be read. Nothing when it does not exist.
pub(crate) fn installed_entries(
    settings: &Settings,
    observed: Option<&Value>,
) -> Option<Vec<TrustEntry>> {
    let Some(obj) = observed else {
        return Some(Vec::new());
    };
    let owned = read_owned(obj);
    let mut out = Vec::new();
    match settings.trust_bundle_mode {
        TrustBundleMode::MeshConfig => {
            let (_, doc) = parse_mesh(settings, obj).ok()?;
            for (td, pem) in doc.entries().into_iter().flatten() {
                let Some(fp) = only_cert_fingerprint(&pem) else {
                    continue;
                };
                if owns(&owned, &td, &fp) {
                    out.push(TrustEntry {
                        trust_domain: td,
                        pem,
                        fingerprint: fp,
                    });
                }
            }
        }
        TrustBundleMode::Cacerts => {
            let text = cacerts_root(obj).ok()?;
            let blocks = certs::pem_blocks(&text).ok()?;
            for b in blocks.iter().filter(|b| b.label == "CERTIFICATE") {
                let fp = certs::fingerprint(&b.der);
                for (td, fps) in &owned {
                    if fps.contains(&fp) {
                        out.push(TrustEntry {
                            trust_domain: td.clone(),
                            pem: certs::to_pem("CERTIFICATE", &b.der),
                            fingerprint: fp.clone(),
                        });
                    }
                }
            }
        }
    }
    Some(out)
}

/// One entry a federation wants, with what it costs the trust object and whether it is
/// installed already.
pub(crate) struct Wanted {
    pub entry: TrustEntry,
    pub item: shares::Item,
}

/// What each federation wants in the trust bundle, as `(index in states, entries)`: its
/// accepted published roots, then the retired roots it retains (docs/rotation.md), once per
/// (trust domain, fingerprint) — federations may share a trust domain and a root, and istiod
/// must not see the same entry twice — and none that is distrusted or already among `kept`.
/// In priority order: those installed first, in the object's order (oldest first), then the
/// new ones in the order the peer lists them; the end of the list is what an over-share
/// federation loses first. A federation held at its installed entries
/// ([`FedState::trust_hold`]) wants nothing new.
pub(crate) fn wanted(
    settings: &Settings,
    states: &[FedState],
    installed: &[TrustEntry],
    kept: &[TrustEntry],
) -> Vec<(usize, Vec<Wanted>)> {
    let position: BTreeMap<(&str, &str), usize> = installed
        .iter()
        .enumerate()
        .map(|(i, e)| ((e.trust_domain.as_str(), e.fingerprint.as_str()), i))
        .collect();
    let distrusted = crate::discovery::trust::retention::distrusted_anywhere(states);
    let mut seen: BTreeSet<(&str, &str)> = kept
        .iter()
        .map(|e| (e.trust_domain.as_str(), e.fingerprint.as_str()))
        .collect();
    let mut out = Vec::new();
    for (i, st) in states.iter().enumerate() {
        if st.trust_hold.is_some() {
            continue;
        }
        let td = st.fed.trust_domain.as_str();
        let retained = st.retention.retained.iter().map(|r| &r.root);
        let mut items: Vec<(Option<usize>, Wanted)> = Vec::new();
        for root in st.public.iter().flat_map(|p| &p.roots).chain(retained) {
            let fp = root.fingerprint.as_str();
            if distrusted.contains(fp) || !seen.insert((td, fp)) {
                continue;
            }
            let at = position.get(&(td, fp)).copied();
            let item = shares::Item {
                cost: entry_cost(settings.trust_bundle_mode, &root.pem, td),
                in_place: at.is_some(),
            };
            let entry = TrustEntry {
                trust_domain: td.to_string(),
                pem: root.pem.clone(),
                fingerprint: root.fingerprint.clone(),
            };
            items.push((at, Wanted { entry, item }));
        }
        // Stable: the new ones keep the peer's order, after every installed one.
        items.sort_by_key(|(at, _)| at.unwrap_or(usize::MAX));
        if !items.is_empty() {
            out.push((i, items.into_iter().map(|(_, w)| w).collect()));
        }
    }
    out
}

/// The trust entries this run wants: every accepted root of every federation with public
/// metadata, then the retired roots it retains (docs/rotation.md), once per
/// (trust domain, fingerprint) — federations may share a trust domain and a root, and istiod
/// must not see the same entry twice. A federation held at its installed entries
/// ([`FedState::trust_hold`]) wants nothing new.
pub(crate) fn desired_entries(states: &[FedState]) -> Vec<TrustEntry> {
    let mut desired = Vec::new();
    let mut seen = BTreeSet::new();
    for st in states.iter().filter(|st| st.trust_hold.is_none()) {
        let retained = st.retention.retained.iter().map(|r| &r.root);
        for root in st.public.iter().flat_map(|p| &p.roots).chain(retained) {
            if seen.insert((st.fed.trust_domain.as_str(), root.fingerprint.as_str())) {
                desired.push(TrustEntry {
                    trust_domain: st.fed.trust_domain.clone(),
                    pem: root.pem.clone(),
                    fingerprint: root.fingerprint.clone(),
                });
            }
        }
    }
    desired
}

/// The entries to hand to [`plan`]: `desired`, plus the entries we own for every federation
/// that keeps its trust entries this run ([`FedState::keeps_trust_entries`]). [`plan`] removes
/// every owned entry it is not given, so keeping means giving it back.
///
/// `held` names trust domains whose entries stay although no federation claims them: the
/// mass-deletion guard holds their removal ([`crate::discovery::mass_deletion`]).
pub(crate) fn target_entries(
    settings: &Settings,
    observed: Option<&Value>,
    states: &[FedState],
    desired: Vec<TrustEntry>,
    held: &BTreeSet<String>,
) -> Vec<TrustEntry> {
    let mut keep: BTreeSet<String> = states
        .iter()
        .filter(|st| st.keeps_trust_entries())
        .map(|st| st.fed.trust_domain.clone())
        .chain(held.iter().cloned())
        .collect();
    // A federation whose spec.trustDomain is refused may have had entries under the domain it
    // named before: every owned entry no other federation claims stays until it is fixed.
    if states.iter().any(FedState::refuses_trust_domain) {
        let claimed: BTreeSet<&str> = states
            .iter()
            .filter(|st| !st.refuses_trust_domain())
            .map(|st| st.fed.trust_domain.as_str())
            .collect();
        let owned = observed.map(read_owned).unwrap_or_default();
        keep.extend(
            owned
                .into_keys()
                .filter(|td| !claimed.contains(td.as_str())),
        );
    }
    // Never kept: trust for Istio's local alias or our own domain lets a peer's root mint
    // identities our policies read as local ones (docs/security.md).
    keep.retain(|td| !names::trust_domain_is_local(td, &settings.cluster_domain));
    let mut all = desired;
    for e in owned_entries(settings, observed, &keep) {
        if !all
            .iter()
            .any(|d| d.trust_domain == e.trust_domain && d.fingerprint == e.fingerprint)
        {
            all.push(e);
        }
    }
    // A distrusted root leaves every entry we own at once, whichever federation brought it
    // and whether published, retained or kept (docs/rotation.md).
    let distrusted = crate::discovery::trust::retention::distrusted_anywhere(states);
    all.retain(|e| !distrusted.contains(&e.fingerprint));
    all
}

/// What happens to the `caCertificates` entries: which existing ones stay, which desired ones
/// are added, and which `(trust domain, fingerprint)` pairs we own afterwards.
#[derive(Debug, PartialEq, Eq)]
struct EntryPlan<'d> {
    /// One decision per existing entry, in order.
    keep: Vec<bool>,
    add: Vec<&'d TrustEntry>,
    owned: Owned,
}

impl EntryPlan<'_> {
    fn changes_entries(&self) -> bool {
        !self.add.is_empty() || self.keep.contains(&false)
    }
}

/// Decides the entries. Ours (listed in the annotation) stay while wanted, once; every other
/// entry stays untouched. A wanted root someone else already trusts for that domain stays
/// theirs: we add no duplicate and do not claim it.
fn plan_entries<'d>(
    existing: &[Option<(String, String)>],
    owned: &Owned,
    desired: &'d [TrustEntry],
) -> EntryPlan<'d> {
    let want: BTreeSet<(&str, &str)> = desired
        .iter()
        .map(|e| (e.trust_domain.as_str(), e.fingerprint.as_str()))
        .collect();
    let mut present: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut foreign: BTreeSet<(&str, &str)> = BTreeSet::new();
    let keep = existing
        .iter()
        .map(|e| {
            let Some((td, fp)) = e else {
                return true; // not of our shape: foreign
            };
            let key = (td.as_str(), fp.as_str());
            let wanted = want.contains(&key);
            if owns(owned, td, fp) {
                return wanted && present.insert(key); // ours: kept once while wanted
            }
            if wanted {
                present.insert(key);
                foreign.insert(key);
            }
            true
        })
        .collect();
    let mut add = Vec::new();
    for e in desired {
        if present.insert((e.trust_domain.as_str(), e.fingerprint.as_str())) {
            add.push(e);
        }
    }
    let owned = owned_of(desired)
        .into_iter()
        .map(|(td, fps)| {
            let fps: BTreeSet<String> = fps
                .into_iter()
                .filter(|fp| !foreign.contains(&(td.as_str(), fp.as_str())))
                .collect();
            (td, fps)
        })
        .filter(|(_, fps)| !fps.is_empty())
        .collect();
    EntryPlan { keep, add, owned }
}

/// Whether the ownership annotation must be written: it differs from what we will own, or it
/// is missing while we own something.
fn annotation_changes(obj: &Value, owned: &Owned, want: &Owned) -> bool {
    let present = k8s::annotation(obj, TRUST_ENTRIES_ANNOTATION).is_some();
    owned != want || (!present && !want.is_empty())
}

/// The ops that replace the `mesh` text: `test` of the old text first (a concurrent writer
/// makes the patch fail), or, when the key is absent, `test` of the resourceVersion and `add`.
fn mesh_data_ops(obj: &Value, old: Option<&str>, new: String) -> Vec<Value> {
    if let Some(old) = old {
        return vec![
            json!({"op": "test", "path": "/data/mesh", "value": old}),
            json!({"op": "replace", "path": "/data/mesh", "value": new}),
        ];
    }
    let mut ops = Vec::new();
    if let Some(rv) = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        ops.push(json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
    }
    if obj.get("data").is_some_and(Value::is_object) {
        ops.push(json!({"op": "add", "path": "/data/mesh", "value": new}));
    } else {
        ops.push(json!({"op": "add", "path": "/data", "value": {"mesh": new}}));
    }
    ops
}

fn new_entries<'e>(add: &[&'e TrustEntry]) -> Vec<NewEntry<'e>> {
    add.iter()
        .map(|e| NewEntry {
            pem: &e.pem,
            trust_domain: &e.trust_domain,
        })
        .collect()
}

/// The mesh-config ConfigMap we create when it does not exist: only our entries.
fn create_mesh_config(settings: &Settings, desired: &[TrustEntry]) -> Option<Operation> {
    if desired.is_empty() {
        return None;
    }
    let refs: Vec<&TrustEntry> = desired.iter().collect();
    Some(Operation::CreateIfNotExists(Manifest::Json(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": settings.mesh_config_name,
            "namespace": settings.istio_namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "annotations": {TRUST_ENTRIES_ANNOTATION: owned_json(&owned_of(desired))},
        },
        "data": {"mesh": mesh_yaml::render_new(&new_entries(&refs))},
    }))))
}

/// mesh-config mode: only the `caCertificates` node of the `mesh` text changes (see
/// [`mesh_yaml`]); the patch `test`s the old text and updates the ownership annotation.
fn plan_mesh_config(
    settings: &Settings,
    observed: Option<&Value>,
    desired: &[TrustEntry],
) -> Result<Option<Operation>, TrustBundleError> {
    let Some(obj) = observed else {
        return Ok(create_mesh_config(settings, desired));
    };
    let (old, doc) = parse_mesh(settings, obj).map_err(TrustBundleError::MeshConfig)?;
    let owned = read_owned(obj);
    let keys = entry_keys(&doc);
    let plan = plan_entries(&keys, &owned, desired);
    if !plan.changes_entries() && !annotation_changes(obj, &owned, &plan.owned) {
        return Ok(None);
    }
    let mut ops = Vec::new();
    if plan.changes_entries() {
        let new = doc
            .rewrite(&plan.keep, &new_entries(&plan.add))
            .map_err(|e| refused_edit(settings, &e.to_string(), &keys, &plan.keep))?;
        ops = mesh_data_ops(obj, old, new);
    }
    annotation_ops(obj, &owned, &plan.owned, &mut ops);
    Ok(Some(Operation::JsonPatch {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: settings.istio_namespace.clone(),
        name: settings.mesh_config_name.clone(),
        patch: ops,
    }))
}

/// Why an edit of the mesh text is refused. When it would have removed entries we own, those
/// stay installed, and the error names them: a condition must never read as if their roots
/// were no longer trusted.
fn refused_edit(
    settings: &Settings,
    why: &str,
    keys: &[Option<(String, String)>],
    keep: &[bool],
) -> TrustBundleError {
    let message = format!("{}: {why}; not editing it", mesh_config_object(settings));
    let installed: Vec<(String, String)> = keys
        .iter()
        .zip(keep)
        .filter(|(_, &k)| !k)
        .filter_map(|(e, _)| e.clone())
        .collect();
    if installed.is_empty() {
        return TrustBundleError::MeshConfig(message);
    }
    let names: Vec<String> = installed
        .iter()
        .map(|(td, fp)| format!("{td} root sha256:{}", &fp[..fp.len().min(16)]))
        .collect();
    TrustBundleError::Stuck {
        message: format!(
            "{message}, so trust entries that should go cannot be removed and are still installed: {}",
            names.join(", ")
        ),
        installed,
    }
}

impl TrustBundleError {
    /// Fingerprints of the entries for `trust_domain` that should have gone but stay installed.
    pub(crate) fn still_installed(&self, trust_domain: &str) -> Vec<&str> {
        match self {
            TrustBundleError::Stuck { installed, .. } => installed
                .iter()
                .filter(|(td, _)| td == trust_domain)
                .map(|(_, fp)| fp.as_str())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Adds the ops that set (or remove) the ownership annotation. Never the first op of a patch
/// that edits data, so the shell-operator schema's first-item rule is satisfied by the `test`.
fn annotation_ops(obj: &Value, owned: &Owned, want: &Owned, ops: &mut Vec<Value>) {
    let present = k8s::annotation(obj, TRUST_ENTRIES_ANNOTATION).is_some();
    if present && owned == want && !want.is_empty() {
        return;
    }
    let path = format!(
        "/metadata/annotations/{}",
        k8s::pointer_token(TRUST_ENTRIES_ANNOTATION)
    );
    if want.is_empty() {
        if present {
            if ops.is_empty() {
                // A lone remove must carry `value` for the schema's first-item rule; test first.
                let current = k8s::annotation(obj, TRUST_ENTRIES_ANNOTATION).unwrap_or_default();
                ops.push(json!({"op": "test", "path": path, "value": current}));
            }
            ops.push(json!({"op": "remove", "path": path}));
        }
        return;
    }
    if obj
        .pointer("/metadata/annotations")
        .is_some_and(Value::is_object)
    {
        ops.push(json!({"op": "add", "path": path, "value": owned_json(want)}));
    } else {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {TRUST_ENTRIES_ANNOTATION: owned_json(want)}}));
    }
}

fn cacerts_root(obj: &Value) -> Result<String, String> {
    let raw = obj
        .pointer("/data/root-cert.pem")
        .and_then(Value::as_str)
        .ok_or_else(|| "has no data root-cert.pem".to_string())?;
    text::unb64(raw).map_err(|e| match e {
        Unb64Error::Base64(e) => format!("data root-cert.pem is not base64 ({e})"),
        Unb64Error::NotUtf8 => "data root-cert.pem is not UTF-8 PEM text".to_string(),
    })
}

fn plan_cacerts(
    settings: &Settings,
    observed: Option<&Value>,
    desired: &[TrustEntry],
) -> Result<Option<Operation>, TrustBundleError> {
    let ns = &settings.istio_namespace;
    let Some(obj) = observed else {
        if desired.is_empty() {
            return Ok(None);
        }
        return Err(TrustBundleError::CacertsMissing {
            namespace: ns.clone(),
        });
    };
    let unreadable = |problem: String| TrustBundleError::CacertsUnreadable {
        namespace: ns.clone(),
        problem,
    };
    let text = cacerts_root(obj).map_err(unreadable)?;
    let blocks = certs::pem_blocks(&text).map_err(|e| unreadable(format!("root-cert.pem: {e}")))?;
    let owned = read_owned(obj);
    let owned_fps: BTreeSet<&String> = owned.values().flatten().collect();
    let want_fps: BTreeSet<&str> = desired.iter().map(|e| e.fingerprint.as_str()).collect();

    let mut new_text = String::with_capacity(text.len() + desired.len() * 1200);
    let mut cursor = 0;
    let mut present: BTreeSet<String> = BTreeSet::new();
    let mut local: BTreeSet<String> = BTreeSet::new();
    for b in &blocks {
        if b.label != "CERTIFICATE" {
            continue;
        }
        let fp = certs::fingerprint(&b.der);
        let ours = owned_fps.contains(&fp);
        if !ours {
            local.insert(fp.clone());
        }
        if ours && (!want_fps.contains(fp.as_str()) || present.contains(&fp)) {
            new_text.push_str(&text[cursor..b.start]);
            cursor = b.end; // drop a root we added that is no longer wanted
            continue;
        }
        present.insert(fp);
    }
    new_text.push_str(&text[cursor..]);
    for e in desired {
        if present.insert(e.fingerprint.clone()) {
            if !new_text.is_empty() && !new_text.ends_with('\n') {
                new_text.push('\n');
            }
            new_text.push_str(&e.pem);
        }
    }
    // A wanted root that is already among the local ones stays theirs, not ours.
    let want_owned: Owned = owned_of(desired)
        .into_iter()
        .map(|(td, fps)| {
            (
                td,
                fps.into_iter()
                    .filter(|fp| !local.contains(fp))
                    .collect::<BTreeSet<_>>(),
            )
        })
        .filter(|(_, fps)| !fps.is_empty())
        .collect();
    let annotation_present = k8s::annotation(obj, TRUST_ENTRIES_ANNOTATION).is_some();
    let owned_same = owned == want_owned && (annotation_present || want_owned.is_empty());
    if new_text == text && owned_same {
        return Ok(None);
    }
    let mut ops = Vec::new();
    if new_text != text {
        let old_b64 = obj
            .pointer("/data/root-cert.pem")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let new_b64 = base64::engine::general_purpose::STANDARD.encode(new_text.as_bytes());
        ops.push(json!({"op": "test", "path": "/data/root-cert.pem", "value": old_b64}));
        ops.push(json!({"op": "replace", "path": "/data/root-cert.pem", "value": new_b64}));
    }
    annotation_ops(obj, &owned, &want_owned, &mut ops);
    Ok(Some(Operation::JsonPatch {
        api_version: "v1".into(),
        kind: "Secret".into(),
        namespace: ns.clone(),
        name: CACERTS_SECRET.into(),
        patch: ops,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B_ROOT: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/certs/peer-b-root.pem"
    ));

    fn key(td: &str, fp: &str) -> Option<(String, String)> {
        Some((td.into(), fp.into()))
    }

    fn want(td: &str, fp: &str) -> TrustEntry {
        TrustEntry {
            trust_domain: td.into(),
            pem: String::new(),
            fingerprint: fp.into(),
        }
    }

    fn owned(pairs: &[(&str, &str)]) -> Owned {
        let mut m = Owned::new();
        for (td, fp) in pairs {
            m.entry(td.to_string()).or_default().insert(fp.to_string());
        }
        m
    }

    fn settings() -> Settings {
        Settings::load(None, &|_| None).expect("default settings")
    }

    fn b_entry() -> TrustEntry {
        TrustEntry {
            trust_domain: "b.local".into(),
            pem: B_ROOT.into(),
            fingerprint: only_cert_fingerprint(B_ROOT).expect("fixture certificate"),
        }
    }

    fn configmap(mesh: &str, annotation: Option<&str>) -> Value {
        let mut cm = json!({"metadata": {"name": "istio", "namespace": "d8-istio", "resourceVersion": "7"},
            "data": {"mesh": mesh}});
        if let Some(a) = annotation {
            cm["metadata"]["annotations"] = json!({TRUST_ENTRIES_ANNOTATION: a});
        }
        cm
    }

    const C_ROOT: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/certs/peer-c-root.pem"
    ));

    #[test]
    fn only_an_entry_of_exactly_one_certificate_has_our_shape() {
        assert_eq!(only_cert_fingerprint(B_ROOT), Some(b_entry().fingerprint));
        // An administrator's bundle starting with our root is someone else's.
        assert_eq!(only_cert_fingerprint(&format!("{B_ROOT}{C_ROOT}")), None);
        assert_eq!(only_cert_fingerprint("not PEM"), None);
    }

    /// The object a plan makes of `cm`, as compact JSON.
    fn planned_len(s: &Settings, cm: &Value, desired: &[TrustEntry]) -> (Value, usize) {
        let Some(Operation::JsonPatch { patch, .. }) =
            plan_mesh_config(s, Some(cm), desired).unwrap()
        else {
            panic!("expected a JSONPatch");
        };
        let mut out = cm.clone();
        let p: Vec<Value> = patch;
        for op in &p {
            match op["path"].as_str() {
                Some("/data/mesh") if op["op"] != "test" => {
                    out["data"]["mesh"] = op["value"].clone()
                }
                Some("/metadata/annotations") => {
                    out["metadata"]["annotations"] = op["value"].clone()
                }
                Some(path) if path.starts_with("/metadata/annotations/") => {
                    out["metadata"]["annotations"][TRUST_ENTRIES_ANNOTATION] = op["value"].clone()
                }
                _ => {}
            }
        }
        let len = serde_json::to_string(&out).unwrap().len();
        (out, len)
    }

    #[test]
    fn entry_cost_bounds_what_one_more_entry_adds_to_the_object() {
        let s = settings();
        let c = TrustEntry {
            trust_domain: "c.local".into(),
            pem: C_ROOT.into(),
            fingerprint: only_cert_fingerprint(C_ROOT).unwrap(),
        };
        let (with_b, b_len) = planned_len(&s, &configmap("a: 1\n", None), &[b_entry()]);
        let (_, both_len) = planned_len(&s, &with_b, &[b_entry(), c.clone()]);
        let added = both_len - b_len;
        let cost = entry_cost(TrustBundleMode::MeshConfig, C_ROOT, "c.local");
        assert!(
            added <= cost && cost < added + 256,
            "cost {cost}, added {added}"
        );
        // cacerts: the PEM in base64, and its fingerprint in the annotation.
        let cacerts = entry_cost(TrustBundleMode::Cacerts, C_ROOT, "c.local");
        assert!(cacerts >= C_ROOT.len() * 4 / 3 + 64, "{cacerts}");
    }

    #[test]
    fn ours_stay_once_while_wanted_and_everything_else_stays() {
        let existing = [
            key("b", "1"),
            None,
            key("c", "2"),
            key("b", "1"),
            key("b", "9"),
        ];
        let desired = [want("b", "1"), want("d", "3")];
        let plan = plan_entries(&existing, &owned(&[("b", "1"), ("b", "9")]), &desired);
        assert_eq!(plan.keep, [true, true, true, false, false]);
        assert_eq!(plan.add, [&desired[1]]);
        assert_eq!(plan.owned, owned(&[("b", "1"), ("d", "3")]));
        assert!(plan.changes_entries());
    }

    #[test]
    fn a_root_someone_else_trusts_is_neither_added_nor_claimed() {
        let desired = [want("c", "2")];
        let plan = plan_entries(&[key("c", "2")], &Owned::new(), &desired);
        assert_eq!(plan.keep, [true]);
        assert!(plan.add.is_empty() && plan.owned.is_empty() && !plan.changes_entries());
        // The same root for another trust domain is a different entry: added.
        let desired = [want("d", "2")];
        let plan = plan_entries(&[key("c", "2")], &Owned::new(), &desired);
        assert_eq!(plan.add, [&desired[0]]);
    }

    #[test]
    fn the_annotation_changes_when_ownership_does_or_is_missing() {
        let ours = owned(&[("b", "1")]);
        let with = configmap("", Some("{}"));
        let without = configmap("", None);
        assert!(annotation_changes(&without, &ours, &ours));
        assert!(!annotation_changes(&with, &ours, &ours));
        assert!(annotation_changes(&with, &ours, &Owned::new()));
        assert!(!annotation_changes(&without, &Owned::new(), &Owned::new()));
    }

    #[test]
    fn mesh_data_ops_test_what_they_replace() {
        let cm = configmap("a: 1\n", None);
        assert_eq!(
            mesh_data_ops(&cm, Some("a: 1\n"), "b".into()),
            [
                json!({"op": "test", "path": "/data/mesh", "value": "a: 1\n"}),
                json!({"op": "replace", "path": "/data/mesh", "value": "b"})
            ]
        );
        let no_mesh = json!({"metadata": {"resourceVersion": "7"}, "data": {"x": "y"}});
        assert_eq!(
            mesh_data_ops(&no_mesh, None, "b".into()),
            [
                json!({"op": "test", "path": "/metadata/resourceVersion", "value": "7"}),
                json!({"op": "add", "path": "/data/mesh", "value": "b"})
            ]
        );
        let no_data = json!({"metadata": {}});
        assert_eq!(
            mesh_data_ops(&no_data, None, "b".into()),
            [json!({"op": "add", "path": "/data", "value": {"mesh": "b"}})]
        );
    }

    #[test]
    fn plan_mesh_config_appends_keeps_comments_and_settles() {
        let s = settings();
        let text = "# by the installer\nconcurrency: 010\nlimit: .inf\n";
        let cm = configmap(text, None);
        let Some(Operation::JsonPatch { patch, .. }) =
            plan_mesh_config(&s, Some(&cm), &[b_entry()]).unwrap()
        else {
            panic!("expected a JSONPatch");
        };
        let new = patch[1]["value"].as_str().unwrap();
        assert!(new.starts_with(text) && new[text.len()..].starts_with("caCertificates:\n"));
        assert_eq!(patch[2]["op"], "add");
        let fp = b_entry().fingerprint;
        let annotation = format!("{{\"b.local\":[\"{fp}\"]}}");
        let settled = configmap(new, Some(&annotation));
        assert_eq!(plan_mesh_config(&s, Some(&settled), &[b_entry()]), Ok(None));
        let keep = BTreeSet::from(["b.local".to_string()]);
        assert_eq!(owned_entries(&s, Some(&settled), &keep), [b_entry()]);
    }

    #[test]
    fn plan_mesh_config_creates_a_missing_map_and_refuses_ambiguity() {
        let s = settings();
        let Some(Operation::CreateIfNotExists(Manifest::Json(obj))) =
            plan_mesh_config(&s, None, &[b_entry()]).unwrap()
        else {
            panic!("expected a create");
        };
        assert!(obj["data"]["mesh"]
            .as_str()
            .is_some_and(|m| m.starts_with("caCertificates:\n- pem: |\n    -----BEGIN")));
        assert_eq!(plan_mesh_config(&s, None, &[]), Ok(None));
        let cm = configmap("caCertificates: []\ncaCertificates: []\n", None);
        assert_eq!(
            plan_mesh_config(&s, Some(&cm), &[b_entry()]),
            Err(TrustBundleError::MeshConfig("ConfigMap d8-istio/istio: data.mesh has caCertificates more than once (lines 1, 2); not editing it".into()))
        );
        let cm = json!({"data": {"mesh": 42}});
        assert_eq!(
            plan_mesh_config(&s, Some(&cm), &[b_entry()]),
            Err(TrustBundleError::MeshConfig(
                "ConfigMap d8-istio/istio: data.mesh is not a string".into()
            ))
        );
    }
}
