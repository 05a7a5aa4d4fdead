//! The AuthorizationPolicy that bounds one peer trust domain (docs/security.md, "Exported
//! means reachable"): a mesh-wide `DENY` in Istio's root namespace for every principal of the
//! peer (`<td>/*`) unless the connection's SNI is one of the services and ports exported to it.
//!
//! Why the SNI and not `to.operation.ports` + hosts: a peer's sidecar sends
//! `outbound_.<port>_._.<host>` with the *Service* port published in `federation.json`, the
//! AUTO_PASSTHROUGH gateway routes by exactly that SNI, and our sidecar sees it unchanged
//! (`connection.sni`, HTTP and TCP under mutual TLS). A rule on ports would see the
//! container port (`targetPort`) instead, and `hosts` exists only for HTTP.
//!
//! Why only `principals`: every Istio version we support (1.24–1.31) accepts it;
//! `source.trustDomains` is pruned by the CRD of 1.29 and older and ignored by 1.30's istiod,
//! so it could only ever repeat what the principal already says.
//!
//! Pure: exports × trust domains → objects.

use crate::protocol::exports::Exported;
use crate::protocol::labels::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use serde_json::{json, Value};
use std::collections::BTreeSet;

pub(crate) const API_VERSION: &str = "security.istio.io/v1";
pub(crate) const KIND: &str = "AuthorizationPolicy";
/// On each policy: the peer trust domain it bounds (a label value is too short for a trust
/// domain).
pub(crate) const TRUST_DOMAIN_ANNOTATION: &str = "federation.istio.deckhouse.io/peer-trust-domain";
const NAME_PREFIX: &str = "istio-federation-peer-";

/// The SNI a peer's sidecar sends for `host:port` (Istio's `outbound_.<port>_._.<host>`).
pub(crate) fn sni(host: &str, port: u16) -> String {
    format!("outbound_.{port}_._.{host}")
}

/// The policy's name: the prefix and the trust domain (a DNS subdomain, so a valid object
/// name), or, past 253 characters, its first part and a hash of the whole.
pub(crate) fn name(trust_domain: &str) -> String {
    let full = format!("{NAME_PREFIX}{trust_domain}");
    if full.len() <= 253 {
        return full;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, trust_domain.as_bytes());
    let hash: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let head: String = full.chars().take(253 - 17).collect();
    format!("{}-{hash}", head.trim_end_matches(['.', '-']))
}

/// What one peer trust domain may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Boundary {
    pub trust_domain: String,
    /// The SNIs of every (service, port) exported to it, sorted.
    pub snis: BTreeSet<String>,
    /// How many of our services it may reach (exported to it, with at least one port).
    pub services: usize,
}

/// The boundary of `trust_domain` (lower case) under `exports`.
pub(crate) fn boundary(trust_domain: &str, exports: &[Exported]) -> Boundary {
    let mut snis = BTreeSet::new();
    let mut services = 0;
    for e in exports.iter().filter(|e| e.is_exported_to(trust_domain)) {
        if !e.ports.is_empty() {
            services += 1;
        }
        snis.extend(e.ports.iter().map(|(_, port)| sni(&e.host, *port)));
    }
    Boundary {
        trust_domain: trust_domain.to_string(),
        snis,
        services,
    }
}

/// The policy's `spec`: a plain DENY of the peer's principals when nothing is exported to it,
/// else a DENY unless the SNI is one it may use.
pub(crate) fn spec(b: &Boundary) -> Value {
    let from = json!([{"source": {"principals": [format!("{}/*", b.trust_domain)]}}]);
    let rule = if b.snis.is_empty() {
        json!({"from": from})
    } else {
        json!({"from": from, "when": [{"key": "connection.sni", "notValues": b.snis}]})
    };
    json!({"action": "DENY", "rules": [rule]})
}

/// The whole object, in `namespace` (Istio's root namespace: mesh-wide, no selector).
pub(crate) fn object(b: &Boundary, namespace: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name(&b.trust_domain),
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "annotations": {TRUST_DOMAIN_ANNOTATION: b.trust_domain},
        },
        "spec": spec(b),
    })
}

/// Whether an observed `spec` still bounds `trust_domain`: a `DENY` whose every rule applies to
/// exactly the peer's principals. Trust for the peer waits for such a policy; which SNIs it
/// lets through may lag one run behind an export change, like any update.
pub(crate) fn bounds(spec: &Value, trust_domain: &str) -> bool {
    let principal = format!("{trust_domain}/*");
    let rules = spec.get("rules").and_then(Value::as_array);
    spec.get("action").and_then(Value::as_str) == Some("DENY")
        && spec.get("selector").is_none()
        && spec.get("targetRef").is_none()
        && spec.get("targetRefs").is_none()
        && rules.is_some_and(|r| !r.is_empty())
        && rules.into_iter().flatten().all(|rule| {
            rule.get("to").is_none()
                && rule
                    .pointer("/from/0/source")
                    .is_some_and(|s| *s == json!({"principals": [principal]}))
                && rule.get("from").and_then(Value::as_array).map(Vec::len) == Some(1)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(host: &str, ports: &[u16], to: Option<&[&str]>) -> Exported {
        Exported {
            host: host.into(),
            ports: ports.iter().map(|p| (String::new(), *p)).collect(),
            export_to: to.map(|t| t.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn the_boundary_lists_exactly_the_exported_ports() {
        let exports = [
            exp("web.prod.svc.my.cluster", &[80, 443], None),
            exp("db.prod.svc.my.cluster", &[5432], Some(&["c.local"])),
            exp("empty.prod.svc.my.cluster", &[], None),
        ];
        let b = boundary("b.local", &exports);
        assert_eq!(
            b.snis.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "outbound_.443_._.web.prod.svc.my.cluster",
                "outbound_.80_._.web.prod.svc.my.cluster"
            ]
        );
        assert_eq!(b.services, 1);
        assert_eq!(boundary("c.local", &exports).services, 2);
        assert!(bounds(&spec(&b), "b.local"));
        assert!(!bounds(&spec(&b), "c.local"));
    }

    #[test]
    fn nothing_exported_is_a_plain_deny() {
        let b = boundary("d.local", &[exp("x.y.svc.my.cluster", &[1], Some(&[]))]);
        assert_eq!(
            spec(&b),
            json!({"action": "DENY", "rules": [{"from": [{"source": {"principals": ["d.local/*"]}}]}]})
        );
        assert!(bounds(&spec(&b), "d.local"));
    }

    #[test]
    fn edited_policies_do_not_count_as_a_boundary() {
        let b = boundary("b.local", &[]);
        let mut s = spec(&b);
        s["action"] = json!("ALLOW");
        assert!(!bounds(&s, "b.local"));
        let mut s = spec(&b);
        s["selector"] = json!({"matchLabels": {"app": "x"}});
        assert!(!bounds(&s, "b.local"));
        let mut s = spec(&b);
        s["rules"][0]["from"][0]["source"]["principals"] = json!(["b.local/ns/x/sa/y"]);
        assert!(!bounds(&s, "b.local"));
        assert!(!bounds(&json!({"action": "DENY", "rules": []}), "b.local"));
    }

    #[test]
    fn names_are_object_names() {
        assert_eq!(name("b.local"), "istio-federation-peer-b.local");
        let long = format!("{}.test", "a".repeat(60)).repeat(4);
        let n = name(&long);
        assert!(
            n.len() <= 253 && crate::hook::k8s::is_object_name(&n),
            "{n}"
        );
        assert_ne!(n, name(&format!("x{long}")));
    }
}
