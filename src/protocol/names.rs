//! Names peers send us, checked as the systems downstream read them: host names as Istio takes
//! them in a ServiceEntry, trust domains as the IstioFederation CRD declares them, gateway
//! addresses as endpoint addresses.

use crate::hook::k8s::is_dns1123_subdomain;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
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
    }
}
