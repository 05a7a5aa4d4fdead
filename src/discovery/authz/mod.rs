//! Exported means reachable (docs/security.md): a workload of a federated peer reaches only
//! the services exported to that peer, on the ports exported, enforced by our own sidecars
//! through one mesh-wide AuthorizationPolicy per peer trust domain ([`policy`]).
//!
//! Why discovery writes the policies: it alone knows which peer roots are trusted after a run
//! — including roots kept by retention or held by a guard — and a policy must exist for as
//! long as any trust in the peer's root does. It reads the exported Services the same way the
//! export hook does ([`crate::protocol::exports`]).
//!
//! Why policy always precedes trust, in every interleaving: shell-operator applies a run's
//! operations in order but does not stop at a failed one, so ordering alone is not enough.
//! Hence two rules, each decided from the snapshots of the run:
//! - a root is *added* for a trust domain only when that domain's policy is already in the
//!   AuthorizationPolicy snapshot (else the federation's trust is held at what is installed,
//!   `AwaitingAuthorizationPolicy`, and the policy is created; its watch event runs discovery
//!   again, which then adds the root);
//! - a policy is *deleted* only when the trust snapshot holds no root of ours for its domain
//!   (so it goes one run after the trust, never before).
//!
//! Creates and updates are still written before the trust-bundle operation and deletes after
//! it. The export hook never touches the policies, so its queue cannot interleave with them.
//!
//! A run whose context carries no AuthorizationPolicy snapshot (a binding context from before
//! this binding existed) leaves the boundary alone: nothing written, nothing held.

pub(crate) mod gateway;
pub(crate) mod plan_text;
pub(crate) mod policy;

use crate::discovery::budget::{json_len, MAX_OBJECT_BYTES};
use crate::discovery::diff::{Manifest, Operation};
use crate::discovery::observed::Observed;
use crate::discovery::state::FedState;
use crate::discovery::status::metrics::{self, Metric};
use crate::discovery::status::patch::{Condition, ConditionStatus, ConditionType};
use crate::discovery::trust::trust_bundle;
use crate::hook::k8s;
use crate::hook::settings::Settings;
use crate::protocol::exports;
use crate::protocol::failure::{Failure, Reason};
use crate::protocol::labels::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::protocol::names;
use policy::Boundary;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// What the boundary does this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No AuthorizationPolicy snapshot: not managed this run.
    Unmanaged,
    /// `AUTHORIZATION_POLICIES=false`: our policies are removed, none written.
    Disabled,
    /// Enforced.
    On,
}

/// The boundary's decisions for one run.
#[derive(Debug)]
pub(crate) struct Plan {
    pub mode: Mode,
    /// Creates and updates, written before the trust-bundle operation.
    pub writes: Vec<Operation>,
    /// Deletes, written after it.
    pub deletes: Vec<Operation>,
    /// The desired boundary of every peer trust domain, when the Services are known.
    pub boundaries: BTreeMap<String, Boundary>,
    /// Trust domains whose policy is in the snapshot and still bounds them.
    pub in_place: BTreeSet<String>,
}

/// Our policies in the snapshot: in the root namespace, with our label (whatever else a
/// snapshot delivers is left alone).
fn ours<'v>(settings: &Settings, snapshot: &'v [Value]) -> impl Iterator<Item = &'v Value> {
    let ns = settings.authz_root_namespace.clone();
    snapshot.iter().filter(move |o| {
        k8s::namespace(o) == Some(ns.as_str())
            && k8s::label(o, MANAGED_BY_LABEL) == Some(MANAGED_BY_VALUE)
            && o.get("kind")
                .and_then(Value::as_str)
                .is_none_or(|k| k == policy::KIND)
    })
}

/// Peer trust domains with installed roots of ours, from the trust snapshot (`None`: unknown).
fn trusted_now(observed: &Observed) -> Option<BTreeSet<String>> {
    let obj = observed.trust_object?.first();
    Some(
        obj.map(trust_bundle::owned_trust_domains)
            .unwrap_or_default(),
    )
}

/// A trust domain a policy may name: a peer's, never ours or Istio's local alias (a DENY for
/// those would cut our own traffic).
fn is_peer_domain(settings: &Settings, td: &str) -> bool {
    names::is_trust_domain(td) && !names::trust_domain_is_local(td, &settings.cluster_domain)
}

/// Decides the boundary's operations and which trust domains are bounded already.
pub(crate) fn plan(settings: &Settings, observed: &Observed, states: &[FedState]) -> Plan {
    let mut plan = Plan {
        mode: Mode::Unmanaged,
        writes: Vec::new(),
        deletes: Vec::new(),
        boundaries: BTreeMap::new(),
        in_place: BTreeSet::new(),
    };
    let Some(snapshot) = observed.authorization_policies else {
        return plan;
    };
    if !settings.authorization_policies {
        plan.mode = Mode::Disabled;
        plan.deletes = ours(settings, snapshot).filter_map(delete).collect();
        return plan;
    }
    plan.mode = Mode::On;
    let trusted = trusted_now(observed);
    let mut wanted: BTreeSet<String> = states
        .iter()
        .filter(|st| !st.refuses_trust_domain())
        .map(|st| st.fed.trust_domain.to_ascii_lowercase())
        .collect();
    wanted.extend(trusted.iter().flatten().cloned());
    wanted.retain(|td| is_peer_domain(settings, td));
    let by_name: BTreeMap<&str, &Value> = ours(settings, snapshot)
        .filter_map(|o| Some((k8s::name(o)?, o)))
        .collect();
    for td in &wanted {
        let current = by_name.get(policy::name(td).as_str());
        if current.is_some_and(|o| o.get("spec").is_some_and(|s| policy::bounds(s, td))) {
            plan.in_place.insert(td.clone());
        }
    }
    if let Some(services) = observed.public_services {
        let exports = exports::exported(services, &settings.cluster_domain);
        for td in &wanted {
            let b = policy::boundary(td, &exports);
            let desired = within_budget(policy::object(&b, &settings.authz_root_namespace), td);
            let current = by_name.get(policy::name(td).as_str()).copied();
            if let Some(op) = write(desired, current) {
                plan.writes.push(op);
            }
            plan.boundaries.insert(td.clone(), b);
        }
        // The Gateway follows the policies: a host it gains is already bounded.
        if let Some(gw) = observed.federation_gateway {
            let hosts = gateway::desired_hosts(&exports, &wanted);
            plan.writes.extend(gateway::patch(settings, gw, &hosts));
        }
    } else {
        log::warn!(target: "authz", "this run carries no snapshot of exported Services; AuthorizationPolicies unchanged");
    }
    // A policy goes only once no root of ours for its domain is installed (unknown: none go).
    if let Some(trusted) = &trusted {
        let wanted_names: BTreeSet<String> = wanted.iter().map(|td| policy::name(td)).collect();
        plan.deletes = by_name
            .iter()
            .filter(|(name, _)| !wanted_names.contains(**name))
            .filter(|(_, o)| {
                k8s::annotation(o, policy::TRUST_DOMAIN_ANNOTATION)
                    .is_none_or(|td| !trusted.contains(td))
            })
            .filter_map(|(_, o)| delete(o))
            .collect();
    }
    plan
}

/// A policy over the object budget (tens of thousands of exported ports) would be refused by
/// the API server on every run: it is written as a plain DENY instead (fail closed).
fn within_budget(desired: Value, td: &str) -> Value {
    if json_len(&desired) <= MAX_OBJECT_BYTES {
        return desired;
    }
    log::error!(target: "authz", "the AuthorizationPolicy for trust domain {td} would exceed the object budget; denying the peer everything instead");
    let mut plain = desired;
    if let Some(rule) = plain
        .pointer_mut("/spec/rules/0")
        .and_then(Value::as_object_mut)
    {
        rule.remove("when");
    }
    plain
}

/// The write (if any) that makes the live policy `desired`: same spec, our label and
/// annotation present; other writers' labels and annotations are kept.
fn write(mut desired: Value, current: Option<&Value>) -> Option<Operation> {
    if let Some(cur) = current {
        let same_spec = cur.get("spec") == desired.get("spec");
        let ours_present = ["labels", "annotations"].iter().all(|field| {
            desired["metadata"][field]
                .as_object()
                .into_iter()
                .flatten()
                .all(|(k, v)| k8s::meta(cur, field).and_then(|m| m.get(k)) == Some(v))
        });
        if same_spec && ours_present {
            return None;
        }
        for field in ["labels", "annotations"] {
            for (k, v) in k8s::meta(cur, field)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let mine = &mut desired["metadata"][field];
                if mine.get(k).is_none() && !k.starts_with("kubectl.kubernetes.io/") {
                    mine[k] = v.clone();
                }
            }
        }
    }
    Some(Operation::CreateOrUpdate(Manifest::Json(desired)))
}

fn delete(o: &Value) -> Option<Operation> {
    Some(Operation::Delete {
        api_version: policy::API_VERSION.to_string(),
        kind: policy::KIND.to_string(),
        namespace: k8s::namespace(o)?.to_string(),
        name: k8s::name(o)?.to_string(),
    })
}

/// Holds the trust of every federation that would gain a root while its trust domain's policy
/// is not in place: its installed roots stay, nothing is added until a later run sees the
/// policy (`AwaitingAuthorizationPolicy`).
pub(crate) fn hold_trust_without_policy(
    settings: &Settings,
    observed: &Observed,
    plan: &Plan,
    states: &mut [FedState],
) {
    if plan.mode != Mode::On {
        return;
    }
    let installed = observed
        .trust_object
        .and_then(|t| t.first())
        .map(trust_bundle::owned_fingerprints)
        .unwrap_or_default();
    let desired = trust_bundle::desired_entries(states);
    for st in states.iter_mut() {
        let td = st.fed.trust_domain.to_ascii_lowercase();
        if plan.in_place.contains(&td) || !is_peer_domain(settings, &td) {
            continue;
        }
        let adds = desired.iter().any(|e| {
            e.trust_domain.eq_ignore_ascii_case(&td)
                && !installed
                    .get(&td)
                    .is_some_and(|fps| fps.contains(&e.fingerprint))
        });
        if adds && st.trust_hold.is_none() {
            log::info!(target: "authz", "IstioFederation {}: AuthorizationPolicy {}/{} not in place yet; its roots are added once it is", st.fed.name, settings.authz_root_namespace, policy::name(&td));
            st.hold_trust(Failure::new(
                Reason::AwaitingAuthorizationPolicy,
                format!(
                    "AuthorizationPolicy {}/{}, which bounds what the peer's workloads may reach, is not in place yet; its root certificates are added once it is",
                    settings.authz_root_namespace,
                    policy::name(&td)
                ),
            ));
        }
    }
}

/// Federation disabled: once the trust snapshot holds no root of ours for a policy's domain,
/// the policy goes too (the same rule as [`plan`]; the trust goes first, in this run's
/// trust-bundle operation, and the policies in a later run).
pub(crate) fn deletes_when_disabled(settings: &Settings, observed: &Observed) -> Vec<Operation> {
    let (Some(snapshot), Some(trusted)) = (observed.authorization_policies, trusted_now(observed))
    else {
        return Vec::new();
    };
    ours(settings, snapshot)
        .filter(|o| {
            k8s::annotation(o, policy::TRUST_DOMAIN_ANNOTATION)
                .is_none_or(|td| !trusted.contains(td))
        })
        .filter_map(delete)
        .collect()
}

/// `ExportBoundaryReady` of one federation, while the boundary is managed (README,
/// "Conditions"); `None` for a federation whose trust domain cannot name a peer (nothing of it
/// is trusted, `InvalidSpec` says why).
pub(crate) fn condition(settings: &Settings, plan: &Plan, st: &FedState) -> Option<Condition> {
    use ConditionStatus::{False, True};
    let td = st.fed.trust_domain.to_ascii_lowercase();
    if plan.mode == Mode::Unmanaged || st.refuses_trust_domain() || !is_peer_domain(settings, &td) {
        return None;
    }
    let kind = ConditionType::ExportBoundaryReady;
    let object = format!(
        "AuthorizationPolicy {}/{}",
        settings.authz_root_namespace,
        policy::name(&td)
    );
    if plan.mode == Mode::Disabled {
        return Some(Condition::new(kind, False, Reason::EnforcementDisabled, format!(
            "AUTHORIZATION_POLICIES is false: workloads of trust domain {td} reach every service of ours whose own AuthorizationPolicies admit them.")));
    }
    if !plan.in_place.contains(&td) {
        return Some(Condition::new(
            kind,
            False,
            Reason::AwaitingAuthorizationPolicy,
            format!(
                "{object} is not in place yet; the peer's root certificates are added once it is."
            ),
        ));
    }
    let reach = match plan.boundaries.get(&td) {
        Some(b) => format!(
            "only the {} service{} exported to them ({} port{})",
            b.services,
            if b.services == 1 { "" } else { "s" },
            b.snis.len(),
            if b.snis.len() == 1 { "" } else { "s" }
        ),
        None => "only the services exported to them".to_string(),
    };
    Some(Condition::new(kind, True, Reason::Succeeded, format!(
        "Workloads of trust domain {td} reach {reach}; every other service refuses them: {object}.")))
}

/// `d8_istio_federation_reachable_services{federation_name,trust_domain}`: how many of our
/// services the peer's workloads may reach, while the boundary is enforced.
pub(crate) fn metric(plan: &Plan, st: &FedState, out: &mut Vec<Value>) {
    let td = st.fed.trust_domain.to_ascii_lowercase();
    if let (Mode::On, Some(b)) = (plan.mode, plan.boundaries.get(&td)) {
        out.push(metrics::set(
            Metric::ReachableServices,
            b.services as f64,
            &[st.fed.name.as_str(), td.as_str()],
        ));
    }
}
