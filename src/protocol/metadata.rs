//! Deckhouse's public and private federation metadata and their validation
//! (docs/ARCHITECTURE.md, "Discovery"). A peer is untrusted input: the same checks apply to a
//! fresh response and to what an earlier run (or an older product) cached in
//! `status.metadataCache`. Invalid items are dropped one by one with a reason; only a document
//! that is unusable as a whole is rejected.

use crate::hook::k8s;
use crate::protocol::certs::{self, CertRejection, RootCert};
use crate::protocol::failure::{Failure, Reason};
use crate::protocol::json::Json;
use crate::protocol::names;
use crate::protocol::text;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// What the own cluster knows, to tell a peer from itself.
#[derive(Debug, Clone)]
pub struct Own<'a> {
    pub cluster_uuid: &'a str,
    pub root_fingerprints: &'a [String],
    pub now: i64,
}

/// Validated public metadata. `roots` may be empty when every certificate was refused: the
/// document still identifies the peer, but nothing of it may reach the trust bundle.
#[derive(Debug, Clone)]
pub struct PublicMetadata {
    pub cluster_uuid: String,
    pub authn_key_pub: String,
    pub root_ca: String,
    pub roots: Vec<RootCert>,
    pub rejected: Vec<(usize, CertRejection)>,
}

impl PublicMetadata {
    /// The Deckhouse cache layout `{clusterUUID, authnKeyPub, rootCA}` (values as received).
    pub(crate) fn to_cache(&self) -> Value {
        json!({"clusterUUID": self.cluster_uuid, "authnKeyPub": self.authn_key_pub, "rootCA": self.root_ca})
    }

    /// "certificate 2: not a CA certificate; …" for condition messages.
    /// At most five are listed (a peer may send up to `MAX_ROOTS_PER_PEER`), then how many more.
    pub(crate) fn rejected_summary(&self) -> String {
        const LISTED: usize = 5;
        let mut s = self
            .rejected
            .iter()
            .take(LISTED)
            .map(|(i, r)| format!("certificate {i}: {r}"))
            .collect::<Vec<_>>()
            .join("; ");
        if self.rejected.len() > LISTED {
            s.push_str(&format!("; and {} more", self.rejected.len() - LISTED));
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Gateway {
    pub address: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub protocol: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicService {
    pub hostname: String,
    pub ports: Vec<ServicePort>,
}

/// An item dropped from otherwise usable private metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub reason: Reason,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct PrivateMetadata {
    pub ingress_gateways: Vec<Gateway>,
    pub public_services: Vec<PublicService>,
    pub dropped: Vec<Dropped>,
    /// Gateways and services kept from the last-known-good document (see [`Self::carry_over`]).
    pub carried_over: usize,
}

impl PrivateMetadata {
    /// Item-level last-known-good. When this (fresh) document had items dropped, the gateways
    /// and services of the last good document that it does not validly provide are kept: the
    /// dropped item may well be one of them, and a peer that sends one bad item — and then goes
    /// away, leaving only the cache — must not cost a ServiceEntry the last good metadata
    /// supported. A document without drops replaces the last good one as a whole.
    pub(crate) fn carry_over(&mut self, last_good: &PrivateMetadata) {
        if self.dropped.is_empty() {
            return;
        }
        for g in &last_good.ingress_gateways {
            if !self.ingress_gateways.contains(g) {
                self.ingress_gateways.push(g.clone());
                self.carried_over += 1;
            }
        }
        for s in &last_good.public_services {
            if !self
                .public_services
                .iter()
                .any(|f| f.hostname == s.hostname)
            {
                self.public_services.push(s.clone());
                self.carried_over += 1;
            }
        }
    }

    /// The Deckhouse cache layout; ports carry the derived `protocol` as Deckhouse stores it.
    pub(crate) fn to_cache(&self) -> Value {
        json!({"ingressGateways": self.ingress_gateways, "publicServices": self.public_services})
    }

    /// Distinct imported host names.
    pub(crate) fn service_count(&self) -> usize {
        self.public_services
            .iter()
            .map(|s| s.hostname.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// Port protocol from the port name (Deckhouse `updatePortProtocols`): the part
/// before the first `-` is searched for the keywords in a fixed order, so names that contain
/// two keywords of equal length (`grpchttp`) always get the same answer.
pub fn protocol_for(name: &str) -> &'static str {
    const TABLE: [(&str, &str); 6] = [
        ("grpc-web", "HTTP2"),
        ("https", "TLS"),
        ("http2", "HTTP2"),
        ("grpc", "HTTP2"),
        ("http", "HTTP"),
        ("tls", "TLS"),
    ];
    let base = name.split('-').next().unwrap_or("");
    TABLE
        .iter()
        .find(|(kw, _)| base.contains(kw))
        .map(|(_, p)| *p)
        .unwrap_or("TCP")
}

/// The most ports one service keeps: every endpoint of its ServiceEntry maps each port to the
/// gateway port, and Istio's ServiceEntry CRD allows at most 128 entries in an endpoint's
/// `ports` (testdata/schemas/istio-serviceentry-crd.yaml, `maxProperties: 128`). One service
/// over it would make the API server refuse the object, and with it the rest of the run's
/// patches (docs/security.md, "Limits and shares").
pub const MAX_PORTS_PER_SERVICE: usize = 128;

/// A ServiceEntry port name must be a DNS-1123 label short enough for the CRD's endpoint-port
/// key rule (< 63 characters).
fn is_port_name(name: &str) -> bool {
    k8s::is_dns1123_label(name) && name.len() <= 62
}

/// A cluster UUID we accept from a peer: non-empty, at most 128 characters of letters, digits,
/// '-', '_' or '.' (it ends up in JWT audiences, metric labels and Secret keys).
pub(crate) fn is_sane_uuid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// Validates public metadata. Errors are `InvalidPublicMetadata`; refused root
/// certificates are reported in [`PublicMetadata::rejected`], not as an error.
pub fn validate_public(v: &Value, own: &Own) -> Result<PublicMetadata, Failure> {
    if !v.is_object() {
        return Err(Failure::new(
            Reason::InvalidPublicMetadata,
            "public metadata is not a JSON object",
        ));
    }
    let (Some(uuid), Some(key), Some(root_ca)) = (
        str_field(v, "clusterUUID"),
        str_field(v, "authnKeyPub"),
        str_field(v, "rootCA"),
    ) else {
        return Err(Failure::new(
            Reason::InvalidPublicMetadata,
            "clusterUUID, authnKeyPub, and rootCA must be non-empty",
        ));
    };
    if !is_sane_uuid(uuid) {
        return Err(Failure::new(
            Reason::InvalidPublicMetadata,
            "clusterUUID must be at most 128 characters of letters, digits, '-', '_' or '.'",
        ));
    }
    if uuid == own.cluster_uuid {
        return Err(Failure::new(
            Reason::InvalidPublicMetadata,
            format!("clusterUUID {uuid} is this cluster's own UUID: metadataEndpoint points at this cluster"),
        ));
    }
    certs::parse_ed25519_public_pem(key).map_err(|e| {
        Failure::new(
            Reason::InvalidPublicMetadata,
            format!("authnKeyPub is not an Ed25519 public key: {e}"),
        )
    })?;
    let check = certs::check_roots(root_ca, own.now, own.root_fingerprints)
        .map_err(|e| Failure::new(Reason::CertificateRejected, format!("rootCA: {e}")))?;
    Ok(PublicMetadata {
        cluster_uuid: uuid.to_string(),
        authn_key_pub: key.to_string(),
        root_ca: root_ca.to_string(),
        roots: check.accepted,
        rejected: check.rejected,
    })
}

fn port_number<J: Json>(v: Option<&J>) -> Option<u16> {
    let n = v?.as_u64()?;
    u16::try_from(n).ok().filter(|p| *p >= 1)
}

/// Validates private metadata against the federation's trust domain (docs/ARCHITECTURE.md,
/// "Discovery"): a fresh response and a cached copy alike. Only a document without both lists
/// is refused; every invalid gateway, service or port is dropped on its own with a reason, so
/// one bad item does not cost the peer its other services.
pub fn validate_private<J: Json>(v: &J, trust_domain: &str) -> Result<PrivateMetadata, Failure> {
    let (Some(gws), Some(svcs)) = (
        v.get("ingressGateways").and_then(J::as_array),
        v.get("publicServices").and_then(J::as_array),
    ) else {
        return Err(Failure::new(
            Reason::InvalidPrivateMetadata,
            "ingressGateways and publicServices must be set",
        ));
    };
    let mut dropped = Vec::new();
    let ingress_gateways = valid_gateways(gws, &mut dropped);
    let suffix = format!(".{trust_domain}");
    let public_services = svcs
        .iter()
        .enumerate()
        .filter_map(|(i, svc)| valid_service(svc, i, trust_domain, &suffix, &mut dropped))
        .collect();
    Ok(PrivateMetadata {
        ingress_gateways,
        public_services,
        dropped,
        carried_over: 0,
    })
}

fn drop_invalid(message: String) -> Dropped {
    Dropped {
        reason: Reason::InvalidPrivateMetadata,
        message,
    }
}

/// The gateways traffic may be sent to: a plausible remote gateway address (lower-cased; see
/// [`names::check_gateway_address`] — never loopback, link-local, localhost, …) and a port,
/// each once, in the peer's order. A refused address is dropped on its own, named with its class.
fn valid_gateways<J: Json>(gws: &[J], dropped: &mut Vec<Dropped>) -> Vec<Gateway> {
    let mut seen = BTreeSet::new();
    let mut gateways = Vec::new();
    for (i, gw) in gws.iter().enumerate() {
        let addr = gw
            .get("address")
            .and_then(J::as_str)
            .map(|a| a.trim().to_ascii_lowercase());
        match (addr, port_number(gw.get("port"))) {
            (Some(a), Some(p)) => match names::check_gateway_address(&a) {
                Ok(()) => {
                    let g = Gateway {
                        address: a,
                        port: p,
                    };
                    if seen.insert(g.clone()) {
                        gateways.push(g);
                    }
                }
                Err(refusal) => dropped.push(drop_invalid(format!(
                    "ingress gateway {}: address {:?} {refusal}",
                    i + 1,
                    truncate(&a)
                ))),
            },
            (_, _) => dropped.push(drop_invalid(format!(
                "ingress gateway {}: needs a string address and a port 1-65535",
                i + 1
            ))),
        }
    }
    gateways
}

/// One service (`i` counts from 0; `suffix` is `.<trust domain>`), or `None` when it is dropped as a whole; every drop, of
/// the service or of its ports, goes to `dropped` in the order found. Its host must be a
/// lower-case DNS name inside the peer's trust domain: a peer may only name its own services,
/// never redirect traffic meant for someone else's.
fn valid_service<J: Json>(
    svc: &J,
    i: usize,
    trust_domain: &str,
    suffix: &str,
    dropped: &mut Vec<Dropped>,
) -> Option<PublicService> {
    let Some(hostname) = svc.get("hostname").and_then(J::as_str) else {
        dropped.push(drop_invalid(format!("service {}: hostname missing", i + 1)));
        return None;
    };
    let shown = truncate(hostname);
    if !names::is_service_hostname(hostname) {
        dropped.push(drop_invalid(format!(
            "service {shown}: not a lower-case DNS name"
        )));
        return None;
    }
    if !hostname.ends_with(suffix) {
        dropped.push(Dropped {
            reason: Reason::HostnameOutOfScope,
            message: format!("service {shown}: hostname is outside trust domain {trust_domain}"),
        });
        return None;
    }
    let Some(raw_ports) = svc.get("ports").and_then(J::as_array) else {
        dropped.push(drop_invalid(format!(
            "service {shown}: ports must be an array"
        )));
        return None;
    };
    let ports = valid_ports(raw_ports, &shown, dropped);
    if ports.is_empty() {
        dropped.push(drop_invalid(format!("service {shown}: no valid ports")));
        return None;
    }
    Some(PublicService {
        hostname: hostname.to_string(),
        ports,
    })
}

/// The ports of one service. A repeated port number keeps its first definition, silently (as
/// Deckhouse does); a name that is not a valid port name, or already taken, becomes the
/// generated `<protocol>-<number>`, and a port is dropped only when even that is taken. The
/// first [`MAX_PORTS_PER_SERVICE`] valid ports are kept, the rest dropped with one message.
fn valid_ports<J: Json>(
    raw_ports: &[J],
    shown: &str,
    dropped: &mut Vec<Dropped>,
) -> Vec<ServicePort> {
    let mut ports: Vec<ServicePort> = Vec::new();
    let mut beyond = 0usize;
    for p in raw_ports {
        if ports.len() == MAX_PORTS_PER_SERVICE {
            if port_number(p.get("port")).is_some_and(|n| !ports.iter().any(|q| q.port == n)) {
                beyond += 1;
            }
            continue;
        }
        let Some(number) = port_number(p.get("port")) else {
            let raw = p
                .get("port")
                .map(J::render)
                .unwrap_or_else(|| "missing".into());
            dropped.push(drop_invalid(format!(
                "service {shown}: port {} is not a number 1-65535",
                truncate(&raw)
            )));
            continue;
        };
        if ports.iter().any(|q| q.port == number) {
            continue;
        }
        let raw_name = p.get("name").and_then(J::as_str).unwrap_or("");
        let protocol = protocol_for(raw_name);
        let generated = format!("{}-{number}", protocol.to_ascii_lowercase());
        let mut name = if is_port_name(raw_name) {
            raw_name.to_string()
        } else {
            generated.clone()
        };
        if ports.iter().any(|q| q.name == name) {
            name = generated;
        }
        if ports.iter().any(|q| q.name == name) {
            dropped.push(drop_invalid(format!(
                "service {shown}: port {number}: name {name:?} is already used"
            )));
            continue;
        }
        ports.push(ServicePort {
            name,
            port: number,
            protocol,
        });
    }
    if beyond > 0 {
        dropped.push(drop_invalid(format!(
            "service {shown}: {beyond} port(s) after the first {MAX_PORTS_PER_SERVICE} dropped: a ServiceEntry endpoint carries at most {MAX_PORTS_PER_SERVICE} ports"
        )));
    }
    ports
}

/// Drops services whose host lies in our own cluster domain. `validate_private` already keeps
/// a peer inside its declared trust domain, but a peer whose trust domain is a DNS suffix of
/// ours (ours `prod.example.com`, its `example.com`) would otherwise pass with names of our own
/// services and redirect our traffic to its gateway.
pub(crate) fn drop_own_domain(p: &mut PrivateMetadata, own_domain: &str) {
    let suffix = format!(".{own_domain}");
    let (own, theirs): (Vec<PublicService>, Vec<PublicService>) =
        std::mem::take(&mut p.public_services)
            .into_iter()
            .partition(|s| s.hostname.ends_with(&suffix));
    p.public_services = theirs;
    for s in own {
        p.dropped.push(Dropped {
            reason: Reason::HostnameOutOfScope,
            message: format!(
                "service {}: hostname is in this cluster's own domain {own_domain}",
                truncate(&s.hostname)
            ),
        });
    }
}

/// Keeps hostile input from bloating messages.
pub(crate) fn truncate(s: &str) -> String {
    text::shorten(s, text::Limit::bytes(80, 77, "..."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carry_over_keeps_what_a_document_with_drops_lacks() {
        let doc = |v: Value| validate_private(&v, "b.local").unwrap();
        let last_good = doc(
            json!({"ingressGateways": [{"address": "1.1.1.1", "port": 15443}],
            "publicServices": [{"hostname": "a.b.local", "ports": [{"name": "http", "port": 80}]},
                               {"hostname": "c.b.local", "ports": [{"name": "http", "port": 81}]}]}),
        );
        // Drops: a's port and the only gateway are invalid; c is fresh and valid.
        let mut fresh = doc(
            json!({"ingressGateways": [{"address": "not an address", "port": 15443}],
            "publicServices": [{"hostname": "a.b.local", "ports": [{"name": "http", "port": "80"}]},
                               {"hostname": "c.b.local", "ports": [{"name": "grpc", "port": 82}]}]}),
        );
        fresh.carry_over(&last_good);
        assert_eq!(fresh.carried_over, 2);
        assert_eq!(fresh.ingress_gateways, last_good.ingress_gateways);
        let hosts: Vec<(&str, u16)> = fresh
            .public_services
            .iter()
            .map(|s| (s.hostname.as_str(), s.ports[0].port))
            .collect();
        assert_eq!(hosts, [("c.b.local", 82), ("a.b.local", 80)]);
        // Without drops the fresh document stands alone.
        let mut clean = doc(json!({"ingressGateways": [], "publicServices": []}));
        clean.carry_over(&last_good);
        assert_eq!((clean.carried_over, clean.public_services.len()), (0, 0));
    }

    #[test]
    fn implausible_gateways_are_dropped_one_by_one_and_named() {
        // The list, each refused on its own; the private and public ones stay.
        let refused = [
            ("0.0.0.0", "is an unspecified address"),
            ("::", "is an unspecified address"),
            ("127.0.0.1", "is a loopback address"),
            ("::1", "is a loopback address"),
            ("::ffff:127.0.0.1", "is an IPv4-mapped IPv6 address"),
            ("169.254.169.254", "is a link-local address"),
            ("fe80::1", "is a link-local address"),
            ("224.0.0.1", "is a multicast address"),
            ("ff02::1", "is a multicast address"),
            ("255.255.255.255", "is the broadcast address"),
            ("LocalHost.", "is localhost"),
            (
                "gateway",
                "is a single-label name, which resolves inside this cluster",
            ),
            (
                "127.1",
                "is a number resolvers read as an IPv4 address; write it as a dotted quad",
            ),
        ];
        let mut gws: Vec<Value> = refused
            .iter()
            .map(|(a, _)| json!({"address": a, "port": 15443}))
            .collect();
        gws.push(json!({"address": "10.1.2.3", "port": 15443}));
        gws.push(json!({"address": "1.1.1.1", "port": 15443}));
        let p = validate_private(
            &json!({"ingressGateways": gws, "publicServices": []}),
            "b.local",
        )
        .unwrap();
        let kept: Vec<&str> = p
            .ingress_gateways
            .iter()
            .map(|g| g.address.as_str())
            .collect();
        assert_eq!(kept, ["10.1.2.3", "1.1.1.1"]);
        assert_eq!(p.dropped.len(), refused.len());
        for (i, ((address, why), d)) in refused.iter().zip(&p.dropped).enumerate() {
            let shown = address.trim().to_ascii_lowercase();
            assert_eq!(d.reason, Reason::InvalidPrivateMetadata);
            assert_eq!(
                d.message,
                format!("ingress gateway {}: address {shown:?} {why}", i + 1)
            );
        }
    }

    #[test]
    fn protocol_table_matches_deckhouse_cases() {
        // The cases Deckhouse's own tests check.
        let cases = [
            ("http", "HTTP"),
            ("http-web", "HTTP"),
            ("https", "TLS"),
            ("https-api", "TLS"),
            ("tls-xxx", "TLS"),
            ("grpc", "HTTP2"),
            ("grpc-web", "HTTP2"),
            ("http2", "HTTP2"),
            ("ppp", "TCP"),
            ("", "TCP"),
            ("web-http", "TCP"),
            ("HTTP", "TCP"),
            ("xhttpx", "HTTP"),
            ("mytls", "TLS"),
        ];
        for (name, proto) in cases {
            assert_eq!(protocol_for(name), proto, "{name}");
        }
        // fixed tie order: https before http2, grpc before http
        assert_eq!(protocol_for("https2"), "TLS");
        assert_eq!(protocol_for("grpchttp"), "HTTP2");
    }

    #[test]
    fn a_parent_domain_peer_cannot_claim_our_services() {
        let v = json!({"ingressGateways": [{"address": "1.1.1.1", "port": 15443}], "publicServices": [
            {"hostname": "api.prod.svc.prod.example.com", "ports": [{"name": "http", "port": 80}]},
            {"hostname": "web.svc.example.com", "ports": [{"name": "http", "port": 80}]}
        ]});
        let mut p = validate_private(&v, "example.com").unwrap();
        assert_eq!(p.public_services.len(), 2);
        drop_own_domain(&mut p, "prod.example.com");
        assert_eq!(p.public_services.len(), 1);
        assert_eq!(p.public_services[0].hostname, "web.svc.example.com");
        assert_eq!(p.dropped[0].reason, Reason::HostnameOutOfScope);
        assert_eq!(p.dropped[0].message, "service api.prod.svc.prod.example.com: hostname is in this cluster's own domain prod.example.com");
    }

    #[test]
    fn private_requires_both_arrays() {
        for v in [
            json!({"wrong": "format"}),
            json!({"ingressGateways": [{"address": "a", "port": 1}], "publicServices": null}),
            json!([]),
        ] {
            assert_eq!(
                validate_private(&v, "b.local").unwrap_err().reason,
                Reason::InvalidPrivateMetadata
            );
        }
        let ok = validate_private(
            &json!({"ingressGateways": [], "publicServices": []}),
            "b.local",
        )
        .unwrap();
        assert!(
            ok.ingress_gateways.is_empty()
                && ok.public_services.is_empty()
                && ok.dropped.is_empty()
        );
    }

    #[test]
    fn ports_first_definition_wins_and_names_fall_back_to_generated() {
        let raw = [
            json!({"name": "http", "port": 80}),
            json!({"name": "grpc", "port": 80}),
            json!({"name": "http", "port": 81}),
            json!({"name": "http-81", "port": 82}),
            json!({"name": "Not_A_Name", "port": 83}),
        ];
        let mut dropped = Vec::new();
        let ports = valid_ports(&raw, "s.b.local", &mut dropped);
        let got: Vec<(&str, u16)> = ports.iter().map(|p| (p.name.as_str(), p.port)).collect();
        // 80 twice: the first stays. 81 reuses "http" and gets the generated name, which 82
        // then asks for: 82 gets its own generated one.
        assert_eq!(
            got,
            [
                ("http", 80),
                ("http-81", 81),
                ("http-82", 82),
                ("tcp-83", 83)
            ]
        );
        assert!(dropped.is_empty(), "{dropped:?}");
    }

    #[test]
    fn a_service_without_valid_ports_reports_them_first() {
        let svc = json!({"hostname": "s.b.local", "ports": [{"port": 0}, {"port": "x"}]});
        let mut dropped = Vec::new();
        assert!(valid_service(&svc, 0, "b.local", ".b.local", &mut dropped).is_none());
        let messages: Vec<&str> = dropped.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "service s.b.local: port 0 is not a number 1-65535",
                "service s.b.local: port \"x\" is not a number 1-65535",
                "service s.b.local: no valid ports"
            ]
        );
        let outside = json!({"hostname": "s.c.local", "ports": [{"port": 80}]});
        let mut dropped = Vec::new();
        assert!(valid_service(&outside, 0, "b.local", ".b.local", &mut dropped).is_none());
        assert_eq!(dropped[0].reason, Reason::HostnameOutOfScope);
    }

    #[test]
    fn hostile_private_items_are_dropped_one_by_one() {
        let v = json!({
            "ingressGateways": [
                {"address": "1.1.1.1", "port": 15443},
                {"address": "1.1.1.1", "port": 15443},
                {"address": "GW.B.example", "port": 443},
                {"address": "bad address", "port": 1},
                {"address": "2.2.2.2", "port": 70000}
            ],
            "publicServices": [
                {"hostname": "web.prod.svc.b.local", "ports": [
                    {"name": "http", "port": 8080, "protocol": "TCP"},
                    {"port": 9090},
                    {"name": "Bad_Name", "port": 9091},
                    {"name": "http", "port": 9092},
                    {"name": "dup", "port": 8080},
                    {"name": "x", "port": 70000}
                ]},
                {"hostname": "evil.prod.svc.my.cluster", "ports": [{"name": "http", "port": 80}]},
                {"hostname": "sneaky.b.local.evil.com", "ports": [{"name": "http", "port": 80}]},
                {"hostname": "UPPER.b.local", "ports": [{"name": "http", "port": 80}]},
                {"hostname": "empty.b.local", "ports": []}
            ]
        });
        let p = validate_private(&v, "b.local").unwrap();
        assert_eq!(
            p.ingress_gateways,
            vec![
                Gateway {
                    address: "1.1.1.1".into(),
                    port: 15443
                },
                Gateway {
                    address: "gw.b.example".into(),
                    port: 443
                }
            ]
        );
        assert_eq!(p.public_services.len(), 1);
        let ports: Vec<(&str, u16, &str)> = p.public_services[0]
            .ports
            .iter()
            .map(|q| (q.name.as_str(), q.port, q.protocol))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("http", 8080, "HTTP"),
                ("tcp-9090", 9090, "TCP"),
                ("tcp-9091", 9091, "TCP"),
                ("http-9092", 9092, "HTTP")
            ]
        );
        let reasons: Vec<Reason> = p.dropped.iter().map(|d| d.reason).collect();
        assert_eq!(
            reasons,
            vec![
                Reason::InvalidPrivateMetadata,
                Reason::InvalidPrivateMetadata,
                Reason::InvalidPrivateMetadata,
                Reason::HostnameOutOfScope,
                Reason::HostnameOutOfScope,
                Reason::InvalidPrivateMetadata,
                Reason::InvalidPrivateMetadata
            ]
        );
        assert_eq!(
            p.dropped[3].message,
            "service evil.prod.svc.my.cluster: hostname is outside trust domain b.local"
        );
        assert_eq!(
            p.dropped[2].message,
            "service web.prod.svc.b.local: port 70000 is not a number 1-65535"
        );
    }
}
