//! Envoy's RBAC filters (envoy.extensions.filters.{network,http}.rbac.v3, as protojson from the
//! xDS client) evaluated with Envoy's documented semantics, for a mutual-TLS connection of a
//! given peer principal and SNI: a policy matches when any of its permissions and any of its
//! principals match; DENY rules deny when a policy matches, ALLOW rules deny when none does; no
//! `rules` enforces nothing; `shadow_rules` never decide. A matcher this evaluator does not know
//! fails the test (it would otherwise guess a verdict).

use serde_json::Value;

/// What Envoy knows of an inbound mutual-TLS connection that RBAC can match on here.
#[derive(Debug, Clone)]
pub struct Conn {
    /// The peer certificate's URI SAN (`authenticated.principal_name`).
    pub principal: Option<String>,
    /// The TLS SNI (`requested_server_name`).
    pub sni: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// The verdict of every RBAC filter of an inbound chain, in order: the first denial wins.
pub fn chain_verdict(chain: &Value, conn: &Conn) -> Verdict {
    let filters = chain["rbac"].as_array().cloned().unwrap_or_default();
    for f in filters {
        if filter_verdict(&f["config"], conn) == Verdict::Deny {
            return Verdict::Deny;
        }
    }
    Verdict::Allow
}

/// One RBAC filter's verdict.
pub fn filter_verdict(config: &Value, conn: &Conn) -> Verdict {
    let Some(rules) = config.get("rules") else {
        return Verdict::Allow;
    };
    let matched = rules["policies"]
        .as_object()
        .is_some_and(|m| m.values().any(|p| policy_matches(p, conn)));
    // protojson omits the zero value: no `action` is ALLOW.
    match rules["action"].as_str().unwrap_or("ALLOW") {
        "ALLOW" if matched => Verdict::Allow,
        "ALLOW" => Verdict::Deny,
        "DENY" if matched => Verdict::Deny,
        "DENY" | "LOG" => Verdict::Allow,
        other => panic!("unknown RBAC action {other}: {config}"),
    }
}

fn policy_matches(p: &Value, conn: &Conn) -> bool {
    let any =
        |k: &str, f: &dyn Fn(&Value) -> bool| p[k].as_array().is_some_and(|l| l.iter().any(f));
    assert!(
        p.get("condition").is_none(),
        "RBAC policy with a CEL condition: {p}"
    );
    any("permissions", &|x| permission(x, conn)) && any("principals", &|x| principal(x, conn))
}

fn list(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().cloned().unwrap_or_default()
}

fn permission(p: &Value, conn: &Conn) -> bool {
    if p["any"] == true {
        return true;
    }
    if let Some(r) = p.get("andRules") {
        return list(r, "rules").iter().all(|x| permission(x, conn));
    }
    if let Some(r) = p.get("orRules") {
        return list(r, "rules").iter().any(|x| permission(x, conn));
    }
    if let Some(r) = p.get("notRule") {
        return !permission(r, conn);
    }
    if let Some(m) = p.get("requestedServerName") {
        // Envoy matches a connection without SNI as the empty string.
        return string_matches(m, conn.sni.as_deref().unwrap_or(""));
    }
    panic!("RBAC permission this evaluator does not know: {p}")
}

fn principal(p: &Value, conn: &Conn) -> bool {
    if p["any"] == true {
        return true;
    }
    if let Some(r) = p.get("andIds") {
        return list(r, "ids").iter().all(|x| principal(x, conn));
    }
    if let Some(r) = p.get("orIds") {
        return list(r, "ids").iter().any(|x| principal(x, conn));
    }
    if let Some(r) = p.get("notId") {
        return !principal(r, conn);
    }
    if let Some(a) = p.get("authenticated") {
        // No principal_name matches any authenticated peer; none matches a plaintext one.
        return match (a.get("principalName"), conn.principal.as_deref()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(m), Some(name)) => string_matches(m, name),
        };
    }
    panic!("RBAC principal this evaluator does not know: {p}")
}

/// envoy.type.matcher.v3.StringMatcher.
fn string_matches(m: &Value, s: &str) -> bool {
    let fold = m["ignoreCase"] == true;
    let norm = |x: &str| {
        if fold {
            x.to_lowercase()
        } else {
            x.to_string()
        }
    };
    let s = norm(s);
    let arg = |k: &str| m[k].as_str().map(norm);
    if let Some(x) = arg("exact") {
        return s == x;
    }
    if let Some(x) = arg("prefix") {
        return s.starts_with(&x);
    }
    if let Some(x) = arg("suffix") {
        return s.ends_with(&x);
    }
    if let Some(x) = arg("contains") {
        return s.contains(&x);
    }
    panic!("string matcher this evaluator does not know: {m}")
}
