//! Names peers send us, checked as the systems downstream read them: host names as Istio takes
//! them in a ServiceEntry, trust domains as Istio and SPIFFE compare them, gateway addresses as
//! Envoy would dial them, and endpoint URLs as they may be shown (docs/security.md).

use crate::hook::k8s::is_dns1123_subdomain;
/// The settings check `CLUSTER_DOMAIN` with it too, so it lives with the naming rules in
/// `hook::k8s`, which `hook` can use without `protocol`.
pub(crate) use crate::hook::k8s::is_trust_domain;
use crate::protocol::text;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A lower-case fully qualified host name Istio accepts as a ServiceEntry host: at least two
/// DNS-1123 labels, at most 253 characters, last label not all digits (so not an IPv4 literal).
pub(crate) fn is_service_hostname(s: &str) -> bool {
    if !is_dns1123_subdomain(s) || !s.contains('.') {
        return false;
    }
    let last = s.rsplit('.').next().unwrap_or("");
    !last.bytes().all(|c| c.is_ascii_digit())
}

use crate::protocol::labels::ACCEPT_CLUSTER_LOCAL_ANNOTATION;

/// Istio's alias for "the local trust domain" in authorization policies: a peer's root trusted
/// for it could mint identities our policies read as local ones.
pub(crate) const LOCAL_TRUST_DOMAIN_ALIAS: &str = "cluster.local";

/// Why `spec.trustDomain` cannot name a peer, or `None` when it can: it must be lower-case
/// DNS-1123 labels joined by dots (at most 253 characters) and not [`LOCAL_TRUST_DOMAIN_ALIAS`]
/// (docs/reference/conditions.md, `InvalidSpec`). The message names the field and the value.
pub fn peer_trust_domain_problem(s: &str) -> Option<String> {
    let shown = shorten(s);
    if s.eq_ignore_ascii_case(LOCAL_TRUST_DOMAIN_ALIAS) {
        return Some(format!(
            "spec.trustDomain {shown:?} is Istio's alias for the local trust domain and cannot name a peer without annotation {ACCEPT_CLUSTER_LOCAL_ANNOTATION}: \"true\""
        ));
    }
    if !is_dns1123_subdomain(s) {
        return Some(format!(
            "spec.trustDomain {shown:?} is not lower-case DNS labels (a-z, 0-9, '-') joined by dots"
        ));
    }
    None
}

/// Whether trust installed earlier for `trust_domain` must go whatever else happens: it is
/// Istio's local alias or our own domain (compared case-insensitively, as SPIFFE does).
pub(crate) fn trust_domain_is_local(trust_domain: &str, own_domain: &str) -> bool {
    trust_domain.eq_ignore_ascii_case(LOCAL_TRUST_DOMAIN_ALIAS)
        || trust_domain.eq_ignore_ascii_case(own_domain)
}

/// An IPv4 or IPv6 literal in the one form every parser reads alike: what
/// `std::net::IpAddr::from_str` accepts (dotted-quad IPv4 without leading zeros, IPv6 without
/// zone or brackets).
pub(crate) fn is_ip_literal(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// Why a gateway address is refused (docs/security.md). The `Display` text completes
/// "address "…" ".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GatewayRefusal {
    /// Neither an IP literal nor a DNS name.
    NotAnAddress,
    /// A number Go's or Envoy's resolver (inet_aton) would read as an IPv4 address although it
    /// is not a dotted quad: `127.1`, `0177.0.0.1`, `0x7f.1`.
    AmbiguousIpv4,
    /// `0.0.0.0/8` or `::`.
    Unspecified,
    /// `127.0.0.0/8` or `::1`.
    Loopback,
    /// `169.254.0.0/16` (cloud metadata lives here) or `fe80::/10`.
    LinkLocal,
    /// `224.0.0.0/4` or `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `::ffff:a.b.c.d` or `::a.b.c.d`: an IPv4 address in IPv6 clothing, which stacks map to
    /// IPv4 (and so past the IPv4 checks).
    Ipv4InIpv6,
    /// `localhost` or a name under it.
    Localhost,
    /// A single DNS label: resolved through the pod's search path, so inside our cluster.
    SingleLabel,
}

impl fmt::Display for GatewayRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GatewayRefusal::NotAnAddress => "is neither an IP address nor a DNS name",
            GatewayRefusal::AmbiguousIpv4 => {
                "is a number resolvers read as an IPv4 address; write it as a dotted quad"
            }
            GatewayRefusal::Unspecified => "is an unspecified address",
            GatewayRefusal::Loopback => "is a loopback address",
            GatewayRefusal::LinkLocal => "is a link-local address",
            GatewayRefusal::Multicast => "is a multicast address",
            GatewayRefusal::Broadcast => "is the broadcast address",
            GatewayRefusal::Ipv4InIpv6 => "is an IPv4-mapped IPv6 address",
            GatewayRefusal::Localhost => "is localhost",
            GatewayRefusal::SingleLabel => {
                "is a single-label name, which resolves inside this cluster"
            }
        })
    }
}

/// A plausible remote gateway: an IP literal that is not unspecified, loopback, link-local,
/// multicast, broadcast or IPv4-in-IPv6, or a DNS name of at least two labels that is neither
/// `localhost` nor a number some resolver reads as an IPv4 address. Private ranges are allowed:
/// gateways on private networks are normal. `s` is expected trimmed and lower-cased.
pub(crate) fn check_gateway_address(s: &str) -> Result<(), GatewayRefusal> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => check_ipv4(v4),
            IpAddr::V6(v6) => check_ipv6(v6),
        };
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    if name == "localhost" || name.ends_with(".localhost") {
        return Err(GatewayRefusal::Localhost);
    }
    if looks_like_inet_aton(name) {
        return Err(GatewayRefusal::AmbiguousIpv4);
    }
    if !is_dns1123_subdomain(s) {
        return Err(GatewayRefusal::NotAnAddress);
    }
    if !s.contains('.') {
        return Err(GatewayRefusal::SingleLabel);
    }
    Ok(())
}

/// [`check_gateway_address`] as a yes/no.
pub fn is_gateway_address(s: &str) -> bool {
    check_gateway_address(s).is_ok()
}

fn check_ipv4(ip: Ipv4Addr) -> Result<(), GatewayRefusal> {
    let first = ip.octets()[0];
    if first == 0 {
        Err(GatewayRefusal::Unspecified)
    } else if ip.is_loopback() {
        Err(GatewayRefusal::Loopback)
    } else if ip.is_link_local() {
        Err(GatewayRefusal::LinkLocal)
    } else if ip.is_multicast() {
        Err(GatewayRefusal::Multicast)
    } else if ip.is_broadcast() {
        Err(GatewayRefusal::Broadcast)
    } else {
        Ok(())
    }
}

fn check_ipv6(ip: Ipv6Addr) -> Result<(), GatewayRefusal> {
    let seg = ip.segments();
    if ip.is_unspecified() {
        Err(GatewayRefusal::Unspecified)
    } else if ip.is_loopback() {
        Err(GatewayRefusal::Loopback)
    } else if seg[0] & 0xffc0 == 0xfe80 {
        Err(GatewayRefusal::LinkLocal)
    } else if ip.is_multicast() {
        Err(GatewayRefusal::Multicast)
    } else if ip.to_ipv4().is_some() {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (the deprecated "compatible" form).
        Err(GatewayRefusal::Ipv4InIpv6)
    } else {
        Ok(())
    }
}

/// One to four dot-separated parts, each decimal, octal (`0…`) or hex (`0x…`): what
/// inet_aton — and so getaddrinfo, and resolvers built like it — reads as an IPv4 address.
fn looks_like_inet_aton(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() <= 4
        && parts.iter().all(|p| {
            let hex = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X"));
            match hex {
                Some(h) => h.bytes().all(|c| c.is_ascii_hexdigit()),
                None => !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()),
            }
        })
}

/// Whether an `https://` URL carries user information (`user:password@` before the host).
/// Any `@` before the first `/`, `?` or `#` counts (a `\` does not end the authority here,
/// though WHATWG parsers read it as `/`), so no parser can find credentials we did not see.
pub(crate) fn has_userinfo(url: &str) -> bool {
    authority(url).contains('@')
}

/// `url` with any user information replaced by `***`, for logs, metrics, conditions and
/// messages: a URL's credentials are never printed (docs/security.md).
pub(crate) fn redact_url(url: &str) -> String {
    let auth = authority(url);
    match auth.rfind('@') {
        None => url.to_string(),
        Some(at) => {
            let start = url.len() - url_after_scheme(url).len();
            format!("{}***{}", &url[..start], &url[start + at..])
        }
    }
}

fn url_after_scheme(url: &str) -> &str {
    match url.find("://") {
        Some(i) => &url[i + 3..],
        None => url,
    }
}

fn authority(url: &str) -> &str {
    let rest = url_after_scheme(url);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// At most 80 characters of `s` in messages, so hostile input cannot bloat them.
fn shorten(s: &str) -> String {
    text::shorten(s, text::Limit::bytes(80, 77, "..."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use GatewayRefusal::*;

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
    }

    #[test]
    fn gateway_addresses_class_by_class() {
        let table: &[(&str, Result<(), GatewayRefusal>)] = &[
            // Accepted: public and private addresses, names of two labels or more.
            ("1.1.1.1", Ok(())),
            ("10.0.0.1", Ok(())),
            ("172.16.5.4", Ok(())),
            ("192.168.1.1", Ok(())),
            ("100.64.0.1", Ok(())),
            ("2001:db8::1", Ok(())),
            ("fd00::1", Ok(())),
            ("64:ff9b::1.2.3.4", Ok(())),
            ("gw.example.com", Ok(())),
            ("gw-1.b.example", Ok(())),
            ("1.2.3.example", Ok(())),
            ("0x.example", Ok(())),
            // Unspecified.
            ("0.0.0.0", Err(Unspecified)),
            ("0.1.2.3", Err(Unspecified)),
            ("::", Err(Unspecified)),
            ("0:0:0:0:0:0:0:0", Err(Unspecified)),
            // Loopback.
            ("127.0.0.1", Err(Loopback)),
            ("127.255.255.254", Err(Loopback)),
            ("::1", Err(Loopback)),
            ("0:0:0:0:0:0:0:1", Err(Loopback)),
            // Link-local, cloud metadata among them.
            ("169.254.169.254", Err(LinkLocal)),
            ("fe80::1", Err(LinkLocal)),
            ("febf::1", Err(LinkLocal)),
            // Multicast.
            ("224.0.0.1", Err(Multicast)),
            ("239.255.255.250", Err(Multicast)),
            ("ff02::1", Err(Multicast)),
            // Broadcast.
            ("255.255.255.255", Err(Broadcast)),
            // IPv4 in IPv6: mapped in both notations, and the compatible form.
            ("::ffff:127.0.0.1", Err(Ipv4InIpv6)),
            ("::ffff:7f00:1", Err(Ipv4InIpv6)),
            ("::ffff:1.1.1.1", Err(Ipv4InIpv6)),
            ("::127.0.0.1", Err(Ipv4InIpv6)),
            // localhost, with a trailing dot, and names under it.
            ("localhost", Err(Localhost)),
            ("localhost.", Err(Localhost)),
            ("gw.localhost", Err(Localhost)),
            // Numbers inet_aton reads as IPv4 addresses, though Rust's parser does not.
            ("127.1", Err(AmbiguousIpv4)),
            ("0177.0.0.1", Err(AmbiguousIpv4)),
            ("127.0.0.01", Err(AmbiguousIpv4)),
            ("0x7f.1", Err(AmbiguousIpv4)),
            ("1.0x7f", Err(AmbiguousIpv4)),
            ("2130706433", Err(AmbiguousIpv4)),
            ("0x7f000001", Err(AmbiguousIpv4)),
            ("1.2.3.4.", Err(AmbiguousIpv4)),
            // Single labels resolve through the search path, inside our cluster.
            ("gateway", Err(SingleLabel)),
            ("kubernetes", Err(SingleLabel)),
            // Not an address at all: zones, brackets, ports, spaces, empty labels.
            ("fe80::1%eth0", Err(NotAnAddress)),
            ("[::1]", Err(NotAnAddress)),
            ("1.1.1.1:443", Err(NotAnAddress)),
            ("bad address", Err(NotAnAddress)),
            ("gw..example", Err(NotAnAddress)),
            ("gw_1.example", Err(NotAnAddress)),
            ("", Err(NotAnAddress)),
            ("1.2.3", Err(AmbiguousIpv4)),
        ];
        for (address, want) in table {
            assert_eq!(check_gateway_address(address), *want, "{address}");
            assert_eq!(is_gateway_address(address), want.is_ok(), "{address}");
        }
    }

    #[test]
    fn peer_trust_domains() {
        for ok in [
            "b.local",
            "b",
            "cluster-b.example",
            "a1.b2",
            "cluster.local.example",
        ] {
            assert_eq!(peer_trust_domain_problem(ok), None, "{ok}");
        }
        let table = [
            ("cluster.local", "alias for the local trust domain"),
            ("CLUSTER.LOCAL", "alias for the local trust domain"),
            ("MY.CLUSTER", "not lower-case DNS labels"),
            ("b_c.local", "not lower-case DNS labels"),
            ("b local", "not lower-case DNS labels"),
            ("b..local", "not lower-case DNS labels"),
            ("-b.local", "not lower-case DNS labels"),
            ("b.local.", "not lower-case DNS labels"),
            (".b.local", "not lower-case DNS labels"),
        ];
        for (td, why) in table {
            let m = peer_trust_domain_problem(td).unwrap_or_default();
            assert!(
                m.starts_with("spec.trustDomain ") && m.contains(why),
                "{td}: {m}"
            );
        }
        let long = format!("{}.local", vec!["a".repeat(63); 4].join("."));
        assert!(peer_trust_domain_problem(&long).is_some());
        assert!(trust_domain_is_local("Cluster.Local", "my.cluster"));
        assert!(trust_domain_is_local("MY.CLUSTER", "my.cluster"));
        assert!(!trust_domain_is_local("b.local", "my.cluster"));
    }

    #[test]
    fn userinfo_is_found_and_never_shown() {
        let table = [
            ("https://h/metadata/", false, "https://h/metadata/"),
            ("https://h:8443/m?x=a@b", false, "https://h:8443/m?x=a@b"),
            ("https://h/m/a@b", false, "https://h/m/a@b"),
            (
                "https://user:secret@h/metadata/",
                true,
                "https://***@h/metadata/",
            ),
            ("https://user@h", true, "https://***@h"),
            ("https://@h/", true, "https://***@h/"),
            ("https://u:p@q@h/", true, "https://***@h/"),
            ("https://h\\@evil/", true, "https://***@evil/"),
            ("http://u:p@h/", true, "http://***@h/"),
        ];
        for (url, has, shown) in table {
            assert_eq!(has_userinfo(url), has, "{url}");
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("secret"));
        }
    }
}
