//! The trust bundle (SPEC §4.4): peers' root certificates bound to their trust domains.
//!
//! Ownership is recorded on the object itself, in the annotation
//! `federation.istio.deckhouse.io/managed-trust-entries` = `{"<trust domain>": ["<sha256>", …]}`.
//! An entry is ours only when its (trust domain, certificate fingerprint) pair is listed
//! there, so entries an administrator wrote — even for the same trust domain — are never
//! touched. Every write is a JSONPatch that first `test`s the value it was computed from: a
//! concurrent writer makes the patch fail, and the next run recomputes from fresh state.

use super::diff::{Manifest, Operation};
use super::effective::FedState;
use crate::hook::k8s;
use crate::hook::settings::{Settings, TrustBundleMode, CACERTS_SECRET};
use crate::protocol::certs;
use crate::protocol::labels::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, TRUST_ENTRIES_ANNOTATION};
use base64::Engine;
use serde_json::{json, Map, Value};
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

fn owns(owned: &Owned, td: &str, fp: &str) -> bool {
    owned.get(td).is_some_and(|s| s.contains(fp))
}

fn owned_json(owned: &Owned) -> String {
    serde_json::to_string(owned).unwrap_or_else(|_| "{}".to_string())
}

/// Fingerprint of the first certificate of a PEM text (what istiod looks at).
fn first_cert_fingerprint(pem: &str) -> Option<String> {
    certs::pem_blocks(pem)
        .ok()?
        .into_iter()
        .find(|b| b.label == "CERTIFICATE")
        .map(|b| certs::fingerprint(&b.der))
}

/// Fingerprints of certificates in the trust object that are not ours: in `cacerts` mode these
/// are the local roots, which a peer must never present as its own.
pub fn local_fingerprints(settings: &Settings, observed: Option<&Value>) -> Vec<String> {
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
/// `TrustBundleReady` condition carries the text (README, "Conditions").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustBundleError {
    /// The mesh-config ConfigMap's `data.mesh` cannot be read or rendered.
    #[error("{0}")]
    MeshConfig(String),
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
        TrustBundleMode::MeshConfig => {
            plan_mesh_config(settings, observed, desired).map_err(TrustBundleError::MeshConfig)
        }
        TrustBundleMode::Cacerts => plan_cacerts(settings, observed, desired),
    }
}

fn mesh_entry(e: &TrustEntry) -> Value {
    json!({"pem": e.pem, "trustDomains": [e.trust_domain]})
}

fn render_yaml(v: &Value) -> Result<String, String> {
    serde_saphyr::to_string(v).map_err(|e| format!("cannot render mesh config YAML: {e}"))
}

/// The `mesh` text of the mesh-config ConfigMap (absent: `None`), its parsed mapping and its
/// `caCertificates` list.
type ParsedMesh<'a> = (Option<&'a str>, Map<String, Value>, Vec<Value>);

/// Parses the mesh config; `Err` when it cannot be edited safely.
fn parse_mesh<'a>(settings: &Settings, obj: &'a Value) -> Result<ParsedMesh<'a>, String> {
    let what = format!(
        "ConfigMap {}/{}",
        settings.istio_namespace, settings.mesh_config_name
    );
    let old_mesh = match obj.pointer("/data/mesh") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(format!("{what}: data.mesh is not a string")),
    };
    let mesh: Map<String, Value> = match old_mesh.map(str::trim) {
        None | Some("") => Map::new(),
        Some(text) => match serde_saphyr::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) => Map::new(),
            Ok(_) => {
                return Err(format!(
                    "{what}: data.mesh is not a YAML mapping; not editing it"
                ))
            }
            Err(e) => {
                return Err(format!(
                    "{what}: data.mesh is not valid YAML ({}); not editing it",
                    first_line(&e.to_string())
                ));
            }
        },
    };
    let list = match mesh.get("caCertificates") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err(format!(
                "{what}: caCertificates in data.mesh is not a list; not editing it"
            ))
        }
    };
    Ok((old_mesh, mesh, list))
}

/// The entries we own for `trust_domains`, as they stand in the trust object. A federation
/// whose metadata cannot be read this run keeps its entries: adding them to the desired set
/// makes [`plan`] leave them in place instead of removing them.
pub fn owned_entries(
    settings: &Settings,
    observed: Option<&Value>,
    trust_domains: &BTreeSet<String>,
) -> Vec<TrustEntry> {
    let Some(obj) = observed else {
        return Vec::new();
    };
    if trust_domains.is_empty() {
        return Vec::new();
    }
    let owned = read_owned(obj);
    let mut out = Vec::new();
    match settings.trust_bundle_mode {
        TrustBundleMode::MeshConfig => {
            let Ok((_, _, list)) = parse_mesh(settings, obj) else {
                return out;
            };
            for entry in &list {
                if let (Some((td, fp)), Some(pem)) = (
                    single_domain_entry(entry),
                    entry.get("pem").and_then(Value::as_str),
                ) {
                    if trust_domains.contains(&td) && owns(&owned, &td, &fp) {
                        out.push(TrustEntry {
                            trust_domain: td,
                            pem: pem.to_string(),
                            fingerprint: fp,
                        });
                    }
                }
            }
        }
        TrustBundleMode::Cacerts => {
            let Ok(text) = cacerts_root(obj) else {
                return out;
            };
            let Ok(blocks) = certs::pem_blocks(&text) else {
                return out;
            };
            for b in blocks.iter().filter(|b| b.label == "CERTIFICATE") {
                let fp = certs::fingerprint(&b.der);
                for td in trust_domains {
                    if owns(&owned, td, &fp) {
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
    out
}

/// The trust entries this run wants: every accepted root of every federation with public
/// metadata, then the retired roots it retains (README, "Rotating roots and keys"), once per
/// (trust domain, fingerprint) — federations may share a trust domain and
/// a root, and istiod must not see the same entry twice.
pub fn desired_entries(states: &[FedState]) -> Vec<TrustEntry> {
    let mut desired = Vec::new();
    let mut seen = BTreeSet::new();
    for st in states {
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
pub fn target_entries(
    settings: &Settings,
    observed: Option<&Value>,
    states: &[FedState],
    desired: Vec<TrustEntry>,
) -> Vec<TrustEntry> {
    let keep: BTreeSet<String> = states
        .iter()
        .filter(|st| st.keeps_trust_entries())
        .map(|st| st.fed.trust_domain.clone())
        .collect();
    let mut all = desired;
    for e in owned_entries(settings, observed, &keep) {
        if !all
            .iter()
            .any(|d| d.trust_domain == e.trust_domain && d.fingerprint == e.fingerprint)
        {
            all.push(e);
        }
    }
    all
}

fn plan_mesh_config(
    settings: &Settings,
    observed: Option<&Value>,
    desired: &[TrustEntry],
) -> Result<Option<Operation>, String> {
    let ns = &settings.istio_namespace;
    let name = &settings.mesh_config_name;
    let Some(obj) = observed else {
        if desired.is_empty() {
            return Ok(None);
        }
        let entries: Vec<Value> = desired.iter().map(mesh_entry).collect();
        let mesh = render_yaml(&json!({"caCertificates": entries}))?;
        return Ok(Some(Operation::CreateIfNotExists(Manifest::Json(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
                "annotations": {TRUST_ENTRIES_ANNOTATION: owned_json(&owned_of(desired))},
            },
            "data": {"mesh": mesh},
        })))));
    };
    let (old_mesh, mut mesh, old_list) = parse_mesh(settings, obj)?;
    let owned = read_owned(obj);
    let want: BTreeSet<(&str, &str)> = desired
        .iter()
        .map(|e| (e.trust_domain.as_str(), e.fingerprint.as_str()))
        .collect();
    let mut present: BTreeSet<(String, String)> = BTreeSet::new();
    let mut foreign_present: BTreeSet<(String, String)> = BTreeSet::new();
    let mut new_list = Vec::with_capacity(old_list.len() + desired.len());
    for entry in &old_list {
        if let Some((td, fp)) = single_domain_entry(entry) {
            let wanted = want.contains(&(td.as_str(), fp.as_str()));
            if owns(&owned, &td, &fp) {
                if wanted && present.insert((td, fp)) {
                    new_list.push(entry.clone()); // ours and still wanted: kept in place
                }
                continue; // ours and no longer wanted, or a duplicate of a kept one: dropped
            }
            if wanted {
                // Someone else already trusts exactly this root for this domain: it stays
                // theirs (we never remove it), and we add no duplicate.
                present.insert((td.clone(), fp.clone()));
                foreign_present.insert((td, fp));
            }
        }
        new_list.push(entry.clone()); // foreign: untouched
    }
    for e in desired {
        if present.insert((e.trust_domain.clone(), e.fingerprint.clone())) {
            new_list.push(mesh_entry(e));
        }
    }
    let want_owned: Owned = owned_of(desired)
        .into_iter()
        .map(|(td, fps)| {
            let fps: BTreeSet<String> = fps
                .into_iter()
                .filter(|fp| !foreign_present.contains(&(td.clone(), fp.clone())))
                .collect();
            (td, fps)
        })
        .filter(|(_, fps)| !fps.is_empty())
        .collect();
    let annotation_present = k8s::annotation(obj, TRUST_ENTRIES_ANNOTATION).is_some();
    let owned_same = owned == want_owned && (annotation_present || want_owned.is_empty());
    if new_list == old_list && owned_same {
        return Ok(None);
    }
    let mut ops = Vec::new();
    if new_list != old_list {
        if new_list.is_empty() {
            mesh.shift_remove("caCertificates");
        } else {
            mesh.insert("caCertificates".into(), Value::Array(new_list));
        }
        let new_mesh = if mesh.is_empty() {
            String::new()
        } else {
            render_yaml(&Value::Object(mesh))?
        };
        match old_mesh {
            Some(old) => {
                ops.push(json!({"op": "test", "path": "/data/mesh", "value": old}));
                ops.push(json!({"op": "replace", "path": "/data/mesh", "value": new_mesh}));
            }
            None => {
                if let Some(rv) = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                {
                    ops.push(
                        json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}),
                    );
                }
                if obj.get("data").is_some_and(Value::is_object) {
                    ops.push(json!({"op": "add", "path": "/data/mesh", "value": new_mesh}));
                } else {
                    ops.push(json!({"op": "add", "path": "/data", "value": {"mesh": new_mesh}}));
                }
            }
        }
    }
    annotation_ops(obj, &owned, &want_owned, &mut ops);
    Ok(Some(Operation::JsonPatch {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: ns.clone(),
        name: name.clone(),
        patch: ops,
    }))
}

/// `(trust domain, fingerprint)` of a `caCertificates` entry that has exactly the shape we write:
/// a `pem` and a single trust domain, nothing else.
fn single_domain_entry(entry: &Value) -> Option<(String, String)> {
    let o = entry.as_object()?;
    if o.len() != 2 {
        return None;
    }
    let pem = o.get("pem")?.as_str()?;
    let tds = o.get("trustDomains")?.as_array()?;
    let [td] = tds.as_slice() else { return None };
    Some((td.as_str()?.to_string(), first_cert_fingerprint(pem)?))
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
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|e| format!("data root-cert.pem is not base64 ({e})"))?;
    String::from_utf8(bytes).map_err(|_| "data root-cert.pem is not UTF-8 PEM text".to_string())
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

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
