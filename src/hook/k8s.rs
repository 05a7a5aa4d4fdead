//! The few Kubernetes naming rules and object accessors the product needs. Objects stay
//! `serde_json::Value`: the hook reads a handful of fields from each and must tolerate every
//! other field a real API server adds (docs/how-it-works.md, "The hook contract").

use serde_json::Value;

/// DNS-1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, at most 63.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// The loose pattern `^[0-9a-zA-Z._-]+$` older IstioFederation CRDs declared for
/// `spec.trustDomain`; still what `CLUSTER_DOMAIN` is checked against (docs/reference/settings.md).
pub(crate) fn is_trust_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// A Kubernetes object name: what apimachinery's `IsDNS1123Subdomain` accepts — at most 253
/// characters of dot-separated lower-case alphanumeric/'-' segments. Unlike a host name, a
/// segment may be longer than 63 characters.
pub(crate) fn is_object_name(s: &str) -> bool {
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

// Plain `get` chains, not `Value::pointer`: these run for every object of a large snapshot
// and `pointer` re-parses (and allocates for) its path on every call.

/// `metadata.<field>` of an object.
pub(crate) fn meta<'a>(obj: &'a Value, field: &str) -> Option<&'a Value> {
    obj.get("metadata")?.get(field)
}

pub(crate) fn name(obj: &Value) -> Option<&str> {
    meta(obj, "name")?.as_str()
}

pub(crate) fn namespace(obj: &Value) -> Option<&str> {
    meta(obj, "namespace")?.as_str()
}

pub(crate) fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta(obj, "labels")?.get(key)?.as_str()
}

pub(crate) fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    meta(obj, "annotations")?.get(key)?.as_str()
}

/// Escapes one JSON-pointer reference token (RFC 6901).
pub(crate) fn pointer_token(s: &str) -> String {
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
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
    }
}
