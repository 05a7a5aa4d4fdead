//! What `plan` says about the boundary's policies (docs/operating.md, "plan"): which peer a
//! policy bounds and what it lets that peer reach, or why it goes.

use super::policy;
use crate::discovery::observed::Observed;
use crate::hook::k8s;
use crate::hook::settings::Settings;
use serde_json::Value;

pub(crate) fn is_policy(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some(policy::KIND)
}

fn current<'o>(observed: &'o Observed, name: &str) -> Option<&'o Value> {
    observed
        .authorization_policies?
        .iter()
        .find(|o| k8s::name(o) == Some(name))
}

/// `(action, reason)` of a CreateOrUpdate of a policy.
pub(crate) fn write(
    _settings: &Settings,
    observed: &Observed,
    v: &Value,
) -> (&'static str, String) {
    let td = k8s::annotation(v, policy::TRUST_DOMAIN_ANNOTATION).unwrap_or("");
    let snis = v
        .pointer("/spec/rules/0/when/0/notValues")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let reach = if snis == 0 {
        format!("nothing is exported to trust domain {td}: its workloads reach no service of ours")
    } else {
        format!(
            "workloads of trust domain {td} may reach only the {snis} service port{} exported to it; every other service refuses them",
            if snis == 1 { "" } else { "s" }
        )
    };
    match current(observed, k8s::name(v).unwrap_or("")) {
        None => ("create", reach),
        Some(_) => ("update", format!("what is exported changed: {reach}")),
    }
}

/// The reason of a policy's delete.
pub(crate) fn delete(settings: &Settings, observed: &Observed, name: &str) -> String {
    let td = current(observed, name)
        .and_then(|o| k8s::annotation(o, policy::TRUST_DOMAIN_ANNOTATION))
        .unwrap_or("?");
    if !settings.authorization_policies {
        return "AUTHORIZATION_POLICIES is false: the policies the hook wrote are removed".into();
    }
    if !settings.enabled {
        return format!(
            "federation is disabled and no root of trust domain {td} is trusted any more"
        );
    }
    format!("no IstioFederation names trust domain {td} and none of its roots is trusted any more")
}

/// The reason of the federation Gateway's patch: the hosts it will carry.
pub(crate) fn gateway(patch: &[Value]) -> String {
    let hosts: Vec<&str> = patch
        .iter()
        .rev()
        .find_map(|op| op.get("value").and_then(Value::as_array))
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if hosts == [super::gateway::NOTHING_EXPORTED] {
        return "no service is exported to any peer: its AUTO_PASSTHROUGH hosts become a placeholder that matches none".into();
    }
    format!(
        "its AUTO_PASSTHROUGH hosts become the {} host{} exported to at least one peer: {}",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        hosts.join(", ")
    )
}
