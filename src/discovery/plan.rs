//! `istio-federation-hook plan`: what an offline discovery run would do, and why, without
//! doing it (docs/operating.md).
//!
//! The operations are not re-derived: the binding context and the settings are read by the
//! same functions a run uses, the real [`crate::discovery::reconcile`] runs with cached metadata only
//! (as `ISTIO_FEDERATION_HOOK_OFFLINE=true` does) and a collecting sink, so the list is exactly
//! the one the run would write, in its order. Each operation is then explained from the
//! observed object and the desired one. Nothing is written to `KUBERNETES_PATCH_PATH` or
//! `METRICS_PATH`, and no peer is contacted.

use crate::discovery::authz;
use crate::discovery::diff::{Manifest, Operation};
use crate::discovery::observed::Observed;
use crate::discovery::reconcile;
use crate::discovery::services::import_policy;
use crate::discovery::services::istio_objects::{self, Desired, OrderedMap, Spec};
use crate::hook::io;
use crate::hook::k8s;
use crate::hook::settings::Settings;
use crate::protocol::labels::{self, FEDERATIONS_ANNOTATION, TRUST_ENTRIES_ANNOTATION};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

pub(crate) const USAGE: &str = "usage: istio-federation-hook plan [--output text|json]

Reads the binding context ($BINDING_CONTEXT_PATH or stdin) and the settings ($VALUES_PATH and
the environment) exactly as a discovery run does, reconciles from the cached metadata only
(never contacting a peer), and prints the operations that run would emit, each with a reason,
and the conditions each IstioFederation would get. Writes nothing to $KUBERNETES_PATCH_PATH or
$METRICS_PATH. Exit 0 when the plan was printed, 1 when the run itself would fail, 2 on
usage errors.";

/// One planned operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Planned {
    /// `create`, `update`, `delete` or `patch`.
    pub action: &'static str,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub reason: String,
}

/// The conditions one federation would have after the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct FederationPlan {
    pub name: String,
    pub conditions: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Plan {
    pub operations: Vec<Planned>,
    pub federations: Vec<FederationPlan>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

/// The `plan` subcommand: exit code 0, 1 (the run would fail) or 2 (usage).
pub fn cli(args: &[&str]) -> u8 {
    let output = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("plan: {e}\n{USAGE}");
            return 2;
        }
    };
    let plan = match plan_from_environment() {
        Ok(p) => p,
        Err(e) => {
            log::error!(target: "plan", "{}", e.replace('\n', " "));
            return 1;
        }
    };
    let text = match output {
        Output::Json => serde_json::to_string_pretty(&plan).unwrap_or_default() + "\n",
        Output::Text => render_text(&plan),
    };
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return 1;
    }
    0
}

/// `Ok(None)` for `--help`.
fn parse_args(args: &[&str]) -> Result<Option<Output>, String> {
    let mut output = Output::Text;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = match *a {
            "--help" | "-h" => return Ok(None),
            "--output" | "-o" => *it.next().ok_or("--output needs a value: text or json")?,
            other => match other.strip_prefix("--output=") {
                Some(v) => v,
                None => return Err(format!("unknown argument {other:?}")),
            },
        };
        output = match value {
            "text" => Output::Text,
            "json" => Output::Json,
            v => return Err(format!("--output: expected text or json, got {v:?}")),
        };
    }
    Ok(Some(output))
}

/// Reads the settings and the binding context as [`crate::discovery::run::run`] does and plans the
/// offline run.
pub(crate) fn plan_from_environment() -> Result<Plan, String> {
    let (settings, bytes) = crate::discovery::run::settings_and_context()?;
    let input = crate::discovery::run::read_snapshots(&bytes)?;
    let now = io::now()?;
    let observed = Observed::from_binding(&input);
    Ok(plan(&settings, &observed, now))
}

/// The plan of an offline run on `observed`.
pub(crate) fn plan(settings: &Settings, observed: &Observed, now: i64) -> Plan {
    // Offline: no fetch report, every federation works from its cached metadata.
    let outcome = reconcile::reconcile(settings, observed, &BTreeMap::new(), now);
    let ops = &outcome.operations;
    let ctx = Context::new(settings, observed, ops);
    let operations = ops.iter().map(|op| ctx.explain(op)).collect();
    let federations = observed
        .federations
        .iter()
        .flatten()
        .map(|f| FederationPlan {
            name: f.name.clone(),
            conditions: ctx
                .status_patches
                .get(f.name.as_str())
                .and_then(|p| p.pointer("/status/conditions"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| f.conditions.clone()),
        })
        .collect();
    Plan {
        operations,
        federations,
    }
}

/// What explaining needs besides the operation itself.
struct Context<'a> {
    settings: &'a Settings,
    observed: &'a Observed<'a>,
    /// Hosts of (kind, host) that the run leaves in place or writes, by object name.
    remaining_hosts: BTreeMap<(String, String), String>,
    status_patches: BTreeMap<&'a str, &'a Value>,
}

fn spec_host(spec: &Spec) -> Option<&str> {
    match spec {
        Spec::ServiceEntry(s) => s.hosts.first().map(String::as_str),
        Spec::DestinationRule(d) => Some(d.host.as_str()),
    }
}

fn snapshot<'o>(observed: &'o Observed, kind: &str) -> Option<&'o istio_objects::Snapshot<'o>> {
    match kind {
        "ServiceEntry" => observed.service_entries.as_ref(),
        "DestinationRule" => observed.destination_rules.as_ref(),
        _ => None,
    }
}

impl<'a> Context<'a> {
    fn new(settings: &'a Settings, observed: &'a Observed<'a>, ops: &'a [Operation]) -> Self {
        let deleted: BTreeSet<(&str, &str)> = ops
            .iter()
            .filter_map(|op| match op {
                Operation::Delete { kind, name, .. } => Some((kind.as_str(), name.as_str())),
                _ => None,
            })
            .collect();
        let mut remaining_hosts = BTreeMap::new();
        for kind in ["ServiceEntry", "DestinationRule"] {
            let none = BTreeSet::new();
            for o in snapshot(observed, kind)
                .into_iter()
                .flat_map(|s| s.objects_except(&none))
            {
                // Objects without our label are not ours to name as a replacement (the real
                // binding never carries them; a hand-made snapshot may).
                if deleted.contains(&(kind, o.name.as_str())) || !o.is_managed() {
                    continue;
                }
                if let Some(host) = o.spec.as_ref().and_then(spec_host) {
                    remaining_hosts.insert((kind.to_string(), host.to_string()), o.name.clone());
                }
            }
        }
        let mut status_patches = BTreeMap::new();
        for op in ops {
            match op {
                Operation::CreateOrUpdate(Manifest::Istio(d)) => {
                    if let Some(host) = spec_host(&d.spec) {
                        remaining_hosts.insert(
                            (d.kind.to_string(), host.to_string()),
                            d.metadata.name.clone(),
                        );
                    }
                }
                Operation::StatusMergePatch { name, patch, .. } => {
                    status_patches.insert(name.as_str(), patch);
                }
                _ => {}
            }
        }
        Context {
            settings,
            observed,
            remaining_hosts,
            status_patches,
        }
    }

    fn explain(&self, op: &Operation) -> Planned {
        match op {
            Operation::CreateOrUpdate(Manifest::Json(v)) if authz::plan_text::is_policy(v) => {
                let (action, reason) = authz::plan_text::write(self.settings, self.observed, v);
                Planned {
                    action,
                    kind: authz::policy::KIND.into(),
                    namespace: k8s::namespace(v).unwrap_or("").into(),
                    name: k8s::name(v).unwrap_or("").into(),
                    reason,
                }
            }
            Operation::Delete {
                kind,
                namespace,
                name,
                ..
            } if kind == authz::policy::KIND => Planned {
                action: "delete",
                kind: kind.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                reason: authz::plan_text::delete(self.settings, self.observed, name),
            },
            Operation::JsonPatch {
                kind,
                namespace,
                name,
                patch,
                ..
            } if kind == "Gateway" => Planned {
                action: "patch",
                kind: kind.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                reason: authz::plan_text::gateway(patch),
            },
            Operation::CreateOrUpdate(Manifest::Istio(d)) => self.write(d),
            Operation::CreateOrUpdate(Manifest::Json(v))
            | Operation::CreateIfNotExists(Manifest::Json(v)) => Planned {
                action: if matches!(op, Operation::CreateIfNotExists(_)) {
                    "create"
                } else {
                    "update"
                },
                kind: v.get("kind").and_then(Value::as_str).unwrap_or("").into(),
                namespace: k8s::namespace(v).unwrap_or("").into(),
                name: k8s::name(v).unwrap_or("").into(),
                reason: created_trust_object(v),
            },
            Operation::CreateIfNotExists(Manifest::Istio(d)) => Planned {
                action: "create",
                ..self.write(d)
            },
            Operation::Delete {
                kind,
                namespace,
                name,
                ..
            } => Planned {
                action: "delete",
                kind: kind.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                reason: self.delete_reason(kind, name),
            },
            Operation::JsonPatch {
                kind,
                namespace,
                name,
                patch,
                ..
            } => Planned {
                action: "patch",
                kind: kind.clone(),
                namespace: namespace.clone(),
                name: name.clone(),
                reason: guard_patch_reason(patch)
                    .unwrap_or_else(|| self.trust_patch_reason(kind, namespace, name, patch)),
            },
            Operation::StatusMergePatch {
                kind, name, patch, ..
            } => Planned {
                action: "patch",
                kind: kind.clone(),
                namespace: String::new(),
                name: name.clone(),
                reason: self.status_reason(name, patch),
            },
        }
    }

    /// A CreateOrUpdate of one of our Istio objects: `create` when the snapshot does not hold
    /// it, else `update` with what differs.
    fn write(&self, d: &Desired) -> Planned {
        let name = d.metadata.name.clone();
        let current = snapshot(self.observed, d.kind).and_then(|s| s.get(&name));
        let (action, reason) = match &current {
            None => ("create", create_reason(d)),
            Some(o) => ("update", update_reason(d, o)),
        };
        Planned {
            action,
            kind: d.kind.to_string(),
            namespace: d.metadata.namespace.clone(),
            name,
            reason,
        }
    }

    fn delete_reason(&self, kind: &str, name: &str) -> String {
        if !self.settings.enabled {
            return "federation is disabled (istio.federation.enabled / ISTIO_FEDERATION_ENABLED is false): every object the hook created is removed".into();
        }
        let current = snapshot(self.observed, kind).and_then(|s| s.get(name));
        let host = current
            .as_ref()
            .and_then(|o| o.spec.as_ref().and_then(spec_host));
        let from = current
            .as_ref()
            .and_then(|o| o.annotations.get(FEDERATIONS_ANNOTATION))
            .filter(|f| !f.is_empty())
            .map(|f| format!(" (it came from {})", federations_phrase(f)))
            .unwrap_or_default();
        let remaining =
            host.and_then(|h| self.remaining_hosts.get(&(kind.to_string(), h.to_string())));
        if let Some(policy) = host.and_then(|h| self.left_out_by_policy(h, current.as_ref())) {
            let h = host.unwrap_or_default();
            return match remaining {
                Some(other) => format!(
                    "{h} is {policy}; the other federations serve it through {kind} {other}"
                ),
                None => format!("{h} is {policy}"),
            };
        }
        match host {
            Some(h) => match remaining {
                Some(other) => format!(
                    "{h} is now served by {kind} {other}: its set of gateways changed, and the name follows the gateways"
                ),
                None => format!("no federation exports {h} any more{from}"),
            },
            None => format!(
                "no federation exports what {kind} {name} describes any more{from}"
            ),
        }
    }

    /// "excluded by spec.import.excludeHosts of federation b" when the import policy of a
    /// federation the object came from leaves `host` out (docs/sharing.md).
    fn left_out_by_policy(
        &self,
        host: &str,
        o: Option<&istio_objects::Observed>,
    ) -> Option<String> {
        let from = o?.annotations.get(FEDERATIONS_ANNOTATION)?;
        let feds = self.observed.federations.as_deref()?;
        from.split(',').find_map(|name| {
            let spec = feds.iter().find(|f| f.name == name)?.import.as_ref().ok()?;
            let field = import_policy::verdict(spec, host).field()?;
            let how = if field.ends_with("excludeHosts") {
                "excluded by"
            } else {
                "not listed in"
            };
            Some(format!("{how} {field} of federation {name}"))
        })
    }

    fn status_reason(&self, name: &str, patch: &Value) -> String {
        let prior = self
            .observed
            .federations
            .iter()
            .flatten()
            .find(|f| f.name == name)
            .map(|f| f.conditions.as_slice())
            .unwrap_or(&[]);
        let mut parts = Vec::new();
        if let Some(cache) = patch
            .pointer("/status/metadataCache")
            .and_then(Value::as_object)
        {
            let which: Vec<&str> = ["public", "private"]
                .into_iter()
                .filter(|k| cache.contains_key(*k))
                .collect();
            if !which.is_empty() {
                parts.push(format!("refresh cached {} metadata", which.join(" and ")));
            }
        }
        if let Some(new) = patch
            .pointer("/status/conditions")
            .and_then(Value::as_array)
        {
            let text =
                |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let find = |list: &[Value], t: &str| {
                list.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some(t))
                    .cloned()
            };
            let mut changes = Vec::new();
            for c in new {
                let t = text(c, "type");
                match find(prior, &t) {
                    None => changes.push(format!(
                        "{t} set to {} ({})",
                        text(c, "status"),
                        text(c, "reason")
                    )),
                    Some(old) if old != *c => {
                        let (os, ns) = (text(&old, "status"), text(c, "status"));
                        let (or, nr) = (text(&old, "reason"), text(c, "reason"));
                        if os != ns || or != nr {
                            changes.push(format!("{t} {os} ({or}) → {ns} ({nr})"));
                        } else if text(&old, "message") != text(c, "message") {
                            changes.push(format!("{t} message changed"));
                        } else {
                            changes.push(format!("{t} rewritten in the hook's form"));
                        }
                    }
                    Some(_) => {}
                }
            }
            for c in prior {
                let t = text(c, "type");
                if conditions_managed(&t, self.settings.dataplane_probe) && find(new, &t).is_none()
                {
                    changes.push(format!("{t} removed"));
                }
            }
            if changes.is_empty() {
                changes.push("conditions reordered".into());
            }
            parts.push(format!("conditions: {}", changes.join("; ")));
        }
        if parts.is_empty() {
            return "status brought up to date".into();
        }
        format!("status: {}", parts.join("; "))
    }

    fn trust_patch_reason(&self, kind: &str, ns: &str, name: &str, patch: &[Value]) -> String {
        let what = format!("trust bundle ({kind} {ns}/{name})");
        let before = self
            .observed
            .trust_object
            .and_then(|t| t.first())
            .map(owned_of_object)
            .unwrap_or_default();
        let after = owned_after(patch).unwrap_or_else(|| before.clone());
        let mut parts = Vec::new();
        for (td, fps) in &after {
            let added: Vec<String> = fps
                .iter()
                .filter(|fp| !before.get(td).is_some_and(|b| b.contains(*fp)))
                .map(|fp| short_fp(fp))
                .collect();
            if !added.is_empty() {
                parts.push(format!(
                    "trust {} for {td} ({})",
                    roots(added.len()),
                    added.join(", ")
                ));
            }
        }
        for (td, fps) in &before {
            let removed: Vec<String> = fps
                .iter()
                .filter(|fp| !after.get(td).is_some_and(|a| a.contains(*fp)))
                .map(|fp| short_fp(fp))
                .collect();
            if !removed.is_empty() {
                parts.push(format!(
                    "stop trusting {} for {td} ({}): no federation publishes {} any more",
                    roots(removed.len()),
                    removed.join(", "),
                    if removed.len() == 1 { "it" } else { "them" }
                ));
            }
        }
        if parts.is_empty() {
            let edits_data = patch.iter().any(|o| {
                o.get("path")
                    .and_then(Value::as_str)
                    .is_some_and(|p| p.starts_with("/data"))
            });
            parts.push(if edits_data {
                "put back the peers' roots the hook owns, which the object no longer holds as written".into()
            } else {
                "record which entries the hook owns".into()
            });
        }
        format!("{what}: {}", parts.join("; "))
    }
}

/// The patches of the platform guards (docs/security.md, "Platform failures"): the mark of a
/// delete the mass-deletion guard holds, the trust domains it holds on the trust-bundle
/// object, and a re-pin carried out on an IstioFederation.
fn guard_patch_reason(patch: &[Value]) -> Option<String> {
    let key = |p: &Value| {
        let path = p.get("path").and_then(Value::as_str)?;
        path.strip_prefix("/metadata/annotations/")
            .map(|k| k.replace("~1", "/").replace("~0", "~"))
    };
    let value = |p: &Value| {
        p.get("value")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let last = patch.last()?;
    let op = last.get("op").and_then(Value::as_str)?;
    match (key(last)?.as_str(), op) {
        (labels::DELETION_HELD_ANNOTATION, _) => Some(format!(
            "delete held by the mass-deletion guard since {}: the run would remove most federations at once; it goes when the same state is seen MASS_DELETION_GRACE later",
            value(last)
        )),
        (labels::TRUST_REMOVAL_HELD_ANNOTATION, "remove") => {
            Some("the mass-deletion guard holds no trust entries any more".into())
        }
        (labels::TRUST_REMOVAL_HELD_ANNOTATION, _) => Some(format!(
            "trust entries whose removal the mass-deletion guard holds, and since when: {}",
            value(last)
        )),
        (labels::CLUSTER_UUID_REPINNED_ANNOTATION, _) => Some(format!(
            "re-pinned as annotation {} asked ({}); the annotation is cleared",
            labels::REPIN_CLUSTER_UUID_ANNOTATION,
            value(last)
        )),
        (labels::REPIN_CLUSTER_UUID_ANNOTATION, "remove") => Some(format!(
            "annotation {} is honoured (the peer publishes that clusterUUID, pinned already) and cleared",
            labels::REPIN_CLUSTER_UUID_ANNOTATION
        )),
        _ => None,
    }
}

fn conditions_managed(t: &str, dataplane_probe: bool) -> bool {
    use crate::discovery::status::patch::ConditionType;
    ConditionType::from_wire(t, ConditionType::managed(dataplane_probe)).is_some()
}

/// `federation b` / `federations a, b`.
fn federations_phrase(annotation: &str) -> String {
    let list: Vec<&str> = annotation.split(',').filter(|s| !s.is_empty()).collect();
    match list.as_slice() {
        [one] => format!("federation {one}"),
        many => format!("federations {}", many.join(", ")),
    }
}

fn roots(n: usize) -> String {
    if n == 1 {
        "1 root".into()
    } else {
        format!("{n} roots")
    }
}

/// `sha256:0123456789ab…`: enough to tell roots apart in a table.
fn short_fp(fp: &str) -> String {
    format!("sha256:{}…", fp.get(..12).unwrap_or(fp))
}

type Owned = BTreeMap<String, BTreeSet<String>>;

fn parse_owned(text: &str) -> Owned {
    serde_json::from_str(text).unwrap_or_default()
}

fn owned_of_object(obj: &Value) -> Owned {
    k8s::annotation(obj, TRUST_ENTRIES_ANNOTATION)
        .map(parse_owned)
        .unwrap_or_default()
}

/// The ownership annotation as the patch leaves it; `None` when the patch does not touch it.
fn owned_after(patch: &[Value]) -> Option<Owned> {
    let path = format!(
        "/metadata/annotations/{}",
        k8s::pointer_token(TRUST_ENTRIES_ANNOTATION)
    );
    let mut out = None;
    for o in patch {
        let op = o.get("op").and_then(Value::as_str).unwrap_or("");
        let p = o.get("path").and_then(Value::as_str).unwrap_or("");
        match (op, p) {
            ("add" | "replace", p) if p == path => {
                out = Some(
                    o.get("value")
                        .and_then(Value::as_str)
                        .map(parse_owned)
                        .unwrap_or_default(),
                );
            }
            ("add" | "replace", "/metadata/annotations") => {
                out = Some(
                    o.pointer("/value")
                        .and_then(|v| v.get(TRUST_ENTRIES_ANNOTATION))
                        .and_then(Value::as_str)
                        .map(parse_owned)
                        .unwrap_or_default(),
                );
            }
            ("remove", p) if p == path => out = Some(Owned::new()),
            _ => {}
        }
    }
    out
}

fn created_trust_object(v: &Value) -> String {
    let owned = owned_of_object(v);
    let list: Vec<String> = owned
        .iter()
        .map(|(td, fps)| format!("{} for {td}", roots(fps.len())))
        .collect();
    format!(
        "the trust bundle {} {}/{} does not exist yet; it is created holding {}",
        v.get("kind").and_then(Value::as_str).unwrap_or("object"),
        k8s::namespace(v).unwrap_or(""),
        k8s::name(v).unwrap_or(""),
        if list.is_empty() {
            "no roots".to_string()
        } else {
            list.join(", ")
        }
    )
}

fn ports_of(spec: &Spec) -> String {
    match spec {
        Spec::ServiceEntry(s) => s
            .ports
            .iter()
            .map(|p| format!("{}/{}", p.name, p.number))
            .collect::<Vec<_>>()
            .join(", "),
        Spec::DestinationRule(_) => String::new(),
    }
}

fn gateways_of(spec: &Spec) -> String {
    match spec {
        Spec::ServiceEntry(s) => s
            .endpoints
            .iter()
            .map(|e| {
                let port = e.ports.0.first().map(|(_, p)| *p).unwrap_or(0);
                if e.address.contains(':') {
                    format!("[{}]:{port}", e.address)
                } else {
                    format!("{}:{port}", e.address)
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        Spec::DestinationRule(_) => String::new(),
    }
}

fn create_reason(d: &Desired) -> String {
    let host = spec_host(&d.spec).unwrap_or("");
    let from = d
        .metadata
        .annotations
        .get(FEDERATIONS_ANNOTATION)
        .map(|f| federations_phrase(f))
        .unwrap_or_else(|| "a federation".into());
    let verb = if from.starts_with("federations ") {
        "export"
    } else {
        "exports"
    };
    match &d.spec {
        Spec::ServiceEntry(_) => {
            format!(
                "{from} {verb} {host} (ports {}; through gateway(s) {})",
                ports_of(&d.spec),
                gateways_of(&d.spec)
            )
        }
        Spec::DestinationRule(dr) => format!(
            "{from} {verb} {host}: traffic to it must use Istio mutual TLS ({}){}",
            dr.traffic_policy.tls.mode,
            if dr.traffic_policy.outlier_detection.is_some() {
                "; outlier detection ejects a dead gateway, since several serve it"
            } else {
                ""
            }
        ),
    }
}

fn map_diff(what: &str, ours: &OrderedMap<String>, theirs: &OrderedMap<String>) -> Vec<String> {
    ours.0
        .iter()
        .filter_map(|(k, v)| match theirs.get(k) {
            Some(t) if t == v => None,
            Some(t) => Some(format!("{what} {k} {t:?} → {v:?}")),
            None => Some(format!("{what} {k} missing")),
        })
        .collect()
}

/// `exportTo unset → [".", "prod"] (spec.import.exportTo)`, when it changes.
fn export_to_change(have: &Option<Vec<String>>, want: &Option<Vec<String>>) -> Option<String> {
    let show = |e: &Option<Vec<String>>| match e {
        None => "unset".to_string(),
        Some(list) => format!("{list:?}"),
    };
    (have != want).then(|| {
        format!(
            "exportTo {} → {} (spec.import.exportTo)",
            show(have),
            show(want)
        )
    })
}

fn update_reason(d: &Desired, o: &istio_objects::Observed) -> String {
    let mut parts = Vec::new();
    match (&d.spec, &o.spec) {
        (_, None) => parts.push(
            "its spec is not the one the hook writes (a field was added or changed by hand)"
                .to_string(),
        ),
        (Spec::ServiceEntry(want), Some(Spec::ServiceEntry(have))) => {
            if want.hosts != have.hosts {
                parts.push(format!("hosts {:?} → {:?}", have.hosts, want.hosts));
            }
            if want.ports != have.ports {
                parts.push(format!(
                    "ports {} → {}",
                    ports_of(o.spec.as_ref().unwrap_or(&d.spec)),
                    ports_of(&d.spec)
                ));
            }
            if want.endpoints != have.endpoints {
                parts.push(format!(
                    "endpoints {} → {}",
                    gateways_of(o.spec.as_ref().unwrap_or(&d.spec)),
                    gateways_of(&d.spec)
                ));
            }
            if want.location != have.location {
                parts.push(format!("location {} → {}", have.location, want.location));
            }
            if want.resolution != have.resolution {
                parts.push(format!(
                    "resolution {} → {}",
                    have.resolution, want.resolution
                ));
            }
            parts.extend(export_to_change(&have.export_to, &want.export_to));
        }
        (Spec::DestinationRule(want), Some(Spec::DestinationRule(have))) => {
            if want.host != have.host {
                parts.push(format!("host {} → {}", have.host, want.host));
            }
            if want.traffic_policy.tls != have.traffic_policy.tls {
                parts.push(format!(
                    "tls mode {} → {}",
                    have.traffic_policy.tls.mode, want.traffic_policy.tls.mode
                ));
            }
            match (
                &have.traffic_policy.outlier_detection,
                &want.traffic_policy.outlier_detection,
            ) {
                (None, Some(_)) => parts.push(
                    "outlier detection added: the host is now served by several gateways".into(),
                ),
                (Some(_), None) => parts.push(
                    "outlier detection removed: the host is now served by one gateway".into(),
                ),
                (a, b) if a != b => parts.push("outlier detection values changed".into()),
                _ => {}
            }
            parts.extend(export_to_change(&have.export_to, &want.export_to));
        }
        _ => parts.push("its spec is of another kind".to_string()),
    }
    parts.extend(map_diff("label", &d.metadata.labels, &o.labels));
    parts.extend(map_diff(
        "annotation",
        &d.metadata.annotations,
        &o.annotations,
    ));
    if parts.is_empty() {
        parts.push("brought in line with what the federations export".into());
    }
    parts.join("; ")
}

/// The plan as an operator reads it in a terminal: one table of operations, one of conditions.
pub(crate) fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.operations.is_empty() {
        out.push_str("No operations: the cluster already matches what the federations publish.\n");
    } else {
        let rows: Vec<[String; 5]> = plan
            .operations
            .iter()
            .map(|o| {
                [
                    o.action.to_string(),
                    o.kind.clone(),
                    if o.namespace.is_empty() {
                        "-".into()
                    } else {
                        o.namespace.clone()
                    },
                    o.name.clone(),
                    o.reason.clone(),
                ]
            })
            .collect();
        table(
            &mut out,
            ["ACTION", "KIND", "NAMESPACE", "NAME", "REASON"],
            &rows,
        );
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &plan.operations {
            *counts.entry(o.action).or_default() += 1;
        }
        let summary: Vec<String> = ["create", "update", "delete", "patch"]
            .iter()
            .filter_map(|a| counts.get(a).map(|n| format!("{n} {a}")))
            .collect();
        let _ = writeln!(
            out,
            "\n{} operation{}: {}.",
            plan.operations.len(),
            if plan.operations.len() == 1 { "" } else { "s" },
            summary.join(", ")
        );
    }
    if !plan.federations.is_empty() {
        out.push('\n');
        let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let mut rows = Vec::new();
        for f in &plan.federations {
            if f.conditions.is_empty() {
                rows.push([
                    f.name.clone(),
                    "-".into(),
                    "".into(),
                    "".into(),
                    "no conditions (not reconciled: see the run's log)".into(),
                ]);
            }
            for c in &f.conditions {
                rows.push([
                    f.name.clone(),
                    text(c, "type"),
                    text(c, "status"),
                    text(c, "reason"),
                    text(c, "message"),
                ]);
            }
        }
        table(
            &mut out,
            ["FEDERATION", "CONDITION", "STATUS", "REASON", "MESSAGE"],
            &rows,
        );
    }
    out
}

/// Left-aligned columns; the last one is not padded.
fn table<const N: usize>(out: &mut String, head: [&str; N], rows: &[[String; N]]) {
    let mut width = [0usize; N];
    for (i, h) in head.iter().enumerate() {
        width[i] = h.chars().count();
    }
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}
