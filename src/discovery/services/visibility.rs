//! Whether the mesh config hides the ServiceEntries the hook writes (docs/compatibility.md,
//! "Ambient mode"). Istio 1.31's `meshConfig.serviceEntryVisibility` resolves a visibility per
//! ServiceEntry from the labels of its namespace: the first policy whose `matchingRules` all
//! match, else `defaultVisibility`. `NAMESPACE` keeps a ServiceEntry to its own namespace and
//! `NONE` hides it from everyone: ambient workloads (ztunnel, waypoints) always honour it,
//! sidecars and gateways only with `applyToSidecars: true`.
//!
//! The hook sees the namespace's name, not its other labels: it judges by the label
//! `kubernetes.io/metadata.name` every namespace carries and treats any other label as absent,
//! and says so in the condition.

use serde_json::Value;

/// The condition's message when the mesh config text `mesh` hides ServiceEntries in
/// `namespace`; `None` when it does not (or sets no visibility at all).
pub(crate) fn hidden(mesh: &str, namespace: &str, mesh_object: &str) -> Option<String> {
    let doc: Value = serde_saphyr::from_str(mesh).ok()?;
    let sev = doc.get("serviceEntryVisibility")?;
    let labels = [("kubernetes.io/metadata.name", namespace)];
    let policies = sev.get("policies").and_then(Value::as_array);
    let chosen = policies
        .into_iter()
        .flatten()
        .find(|p| policy_matches(p, &labels))
        .map(|p| p.get("visibility"))
        .unwrap_or_else(|| sev.get("defaultVisibility"));
    let visibility = chosen.and_then(Value::as_str).unwrap_or("PUBLIC");
    let what = match visibility {
        "NAMESPACE" => "visible only inside that namespace",
        "NONE" => "visible to no workload",
        _ => return None,
    };
    let sidecars = sev.get("applyToSidecars").and_then(Value::as_bool) == Some(true);
    let who = if sidecars {
        "neither sidecar nor ambient workloads of other namespaces see the imported services"
    } else {
        "ambient workloads (ztunnel, waypoints) do not see the imported services; sidecars still do, as applyToSidecars is not set"
    };
    Some(format!(
        "meshConfig.serviceEntryVisibility in {mesh_object} resolves to {visibility} for namespace {namespace}, where the hook writes the ServiceEntries: they are {what}, so {who}. Judged by the namespace's label kubernetes.io/metadata.name only. Give that namespace visibility PUBLIC with a policy matching it."
    ))
}

/// Whether every rule of `policy` matches `labels` (AND; no rules match everything). A rule
/// Istio cannot read never matches, as in istiod.
fn policy_matches(policy: &Value, labels: &[(&str, &str)]) -> bool {
    let rules = policy.get("matchingRules").and_then(Value::as_array);
    rules.into_iter().flatten().all(|r| {
        r.get("namespaceSelector")
            .is_some_and(|sel| selector_matches(sel, labels))
    })
}

/// A Kubernetes label selector against `labels` (matchLabels and matchExpressions).
fn selector_matches(sel: &Value, labels: &[(&str, &str)]) -> bool {
    let get = |k: &str| labels.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let match_labels = sel.get("matchLabels").and_then(Value::as_object);
    let labels_ok = match_labels
        .into_iter()
        .flatten()
        .all(|(k, v)| v.as_str().is_some_and(|v| get(k) == Some(v)));
    let exprs = sel.get("matchExpressions").and_then(Value::as_array);
    let exprs_ok = exprs.into_iter().flatten().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let have = get(key);
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => have.is_some_and(|h| values.contains(&h)),
            Some("NotIn") => have.is_none_or(|h| !values.contains(&h)),
            Some("Exists") => have.is_some(),
            Some("DoesNotExist") => have.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const CM: &str = "ConfigMap d8-istio/istio";

    #[test]
    fn resolves_like_istiod() {
        let hidden = |mesh: &str| hidden(mesh, "d8-istio", CM);
        assert_eq!(hidden("trustDomain: a\n"), None);
        assert_eq!(hidden("serviceEntryVisibility: {}\n"), None);
        let m = hidden("serviceEntryVisibility:\n  defaultVisibility: NAMESPACE\n").unwrap();
        assert!(m.contains("NAMESPACE") && m.contains("ambient"), "{m}");
        let m =
            hidden("serviceEntryVisibility:\n  defaultVisibility: NONE\n  applyToSidecars: true\n")
                .unwrap();
        assert!(m.contains("neither sidecar"), "{m}");
        // A policy naming our namespace makes it public again; one naming another does not.
        let ours = "serviceEntryVisibility:\n  defaultVisibility: NAMESPACE\n  policies:\n  - visibility: PUBLIC\n    matchingRules:\n    - namespaceSelector:\n        matchLabels:\n          kubernetes.io/metadata.name: d8-istio\n";
        assert_eq!(hidden(ours), None);
        assert!(hidden(&ours.replace("d8-istio\n", "istio-system\n")).is_some());
        let expr = "serviceEntryVisibility:\n  defaultVisibility: NONE\n  policies:\n  - visibility: PUBLIC\n    matchingRules:\n    - namespaceSelector:\n        matchExpressions:\n        - {key: kubernetes.io/metadata.name, operator: In, values: [d8-istio, x]}\n";
        assert_eq!(hidden(expr), None);
        // An unknown matcher never matches; a label we cannot see counts as absent.
        let unknown = "serviceEntryVisibility:\n  defaultVisibility: NAMESPACE\n  policies:\n  - visibility: PUBLIC\n    matchingRules:\n    - hostnameSuffix: x\n";
        assert!(hidden(unknown).is_some());
        let other_label = "serviceEntryVisibility:\n  defaultVisibility: NAMESPACE\n  policies:\n  - visibility: PUBLIC\n    matchingRules:\n    - namespaceSelector:\n        matchLabels: {trusted: \"true\"}\n";
        assert!(hidden(other_label).is_some());
        // The first matching policy wins; no rules match everything.
        let first =
            "serviceEntryVisibility:\n  policies:\n  - visibility: NONE\n  - visibility: PUBLIC\n";
        assert!(hidden(first).is_some());
        assert_eq!(hidden("not: [yaml"), None);
    }
}
