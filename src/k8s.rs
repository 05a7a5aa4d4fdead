//! The few Kubernetes naming rules and object accessors the product needs. Objects stay
//! `serde_json::Value`: the hook reads a handful of fields from each and must tolerate every
//! other field a real API server adds (checklist item 20).

use serde_json::Value;

/// Label on every object this hook creates; deletes are only ever emitted for objects carrying it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "istio-federation-hook";
/// Deckhouse's label naming the (first) federation behind an imported service.
pub const FEDERATION_LABEL: &str = "federation.istio.deckhouse.io/federation";
/// All federations that contributed to an imported service, comma-separated.
pub const FEDERATIONS_ANNOTATION: &str = "federation.istio.deckhouse.io/federations";
/// Trust entries the hook owns inside the trust-bundle object: JSON `{trustDomain: [sha256, …]}`.
pub const TRUST_ENTRIES_ANNOTATION: &str = "federation.istio.deckhouse.io/managed-trust-entries";

/// DNS-1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, at most 63.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A Kubernetes object name: what apimachinery's `IsDNS1123Subdomain` accepts — at most 253
/// characters of dot-separated lower-case alphanumeric/'-' segments. Unlike a host name, a
/// segment may be longer than 63 characters.
pub fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|seg| {
            let b = seg.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// A lower-case fully qualified host name Istio accepts as a ServiceEntry host: at least two
/// DNS-1123 labels, at most 253 characters, last label not all digits (so not an IPv4 literal).
pub fn is_service_hostname(s: &str) -> bool {
    if !is_dns1123_subdomain(s) || !s.contains('.') {
        return false;
    }
    let last = s.rsplit('.').next().unwrap_or("");
    !last.bytes().all(|c| c.is_ascii_digit())
}

/// The IstioFederation CRD pattern for `spec.trustDomain`: `^[0-9a-zA-Z._-]+$`.
pub fn is_trust_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// An IPv4 or IPv6 literal (what Go's `net.ParseIP` accepts, minus zone suffixes).
pub fn is_ip_literal(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// A gateway address: an IP literal or a DNS-1123 host name (upper case is folded by callers).
pub fn is_gateway_address(s: &str) -> bool {
    is_ip_literal(s)
        || (is_dns1123_subdomain(s)
            && !s
                .rsplit('.')
                .next()
                .unwrap_or("")
                .bytes()
                .all(|c| c.is_ascii_digit()))
}

// Plain `get` chains, not `Value::pointer`: these run for every object of a large snapshot
// and `pointer` re-parses (and allocates for) its path on every call.

/// `metadata.<field>` of an object.
pub fn meta<'a>(obj: &'a Value, field: &str) -> Option<&'a Value> {
    obj.get("metadata")?.get(field)
}

pub fn name(obj: &Value) -> Option<&str> {
    meta(obj, "name")?.as_str()
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta(obj, "namespace")?.as_str()
}

pub fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta(obj, "labels")?.get(key)?.as_str()
}

pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta(obj, "annotations")?.get(key)?.as_str()
}

/// True when the object carries our managed-by label: the only objects we ever delete.
pub fn is_managed(obj: &Value) -> bool {
    label(obj, MANAGED_BY_LABEL) == Some(MANAGED_BY_VALUE)
}

/// Escapes one JSON-pointer reference token (RFC 6901).
pub fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_label("web-1"));
        assert!(!is_dns1123_label("Web"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(is_service_hostname("web.prod.svc.b.local"));
        assert!(!is_service_hostname("web"));
        assert!(!is_service_hostname("1.2.3.4"));
        assert!(!is_service_hostname("Web.prod.svc.b.local"));
        assert!(is_trust_domain("cluster_b.local"));
        assert!(!is_trust_domain("cluster b"));
        assert!(!is_trust_domain("b/c"));
        assert!(is_ip_literal("2001:db8::1"));
        assert!(is_gateway_address("gw.example.com"));
        assert!(is_gateway_address("10.0.0.1"));
        assert!(!is_gateway_address("10.0.0"));
        assert!(!is_gateway_address("gw_1.example"));
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
    }
}
