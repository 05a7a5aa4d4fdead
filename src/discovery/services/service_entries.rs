//! ServiceEntries and DestinationRules for imported services (docs/ARCHITECTURE.md, "Discovery").
//!
//! Deckhouse's newest merge ("per (hostname, port)"): ports are merged across
//! federations first-wins by federation name, each (hostname, port) collects the gateways of
//! every federation exporting it, and ports that end up with the same gateway set share one
//! ServiceEntry named `<hostname with dashes>-<FNV-1a-32 of the endpoint set, alphabet-encoded>`.
//! Keeping Deckhouse's names means a cluster can move between Deckhouse and this product
//! without a traffic blip.

use crate::discovery::services::istio_objects::{
    Desired, DrOutlierDetection, DrPolicy, DrSpec, DrTls, Meta, OrderedMap, SeEndpoint, SePort,
    SeSpec, Spec,
};
use crate::discovery::state::FedState;
use crate::protocol::failure::Reason;
use crate::protocol::labels::{
    label_value, FEDERATIONS_ANNOTATION, FEDERATION_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
};
use crate::protocol::metadata::{
    truncate, Dropped, Gateway, PublicService, ServicePort, MAX_PORTS_PER_SERVICE,
};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// One federation's contribution: its gateways and validated services.
pub(crate) struct Source<'a> {
    pub federation: &'a str,
    pub gateways: &'a [Gateway],
    pub services: &'a [PublicService],
}

/// The federations whose services are imported this run, in name order (the order [`merge`]
/// lets the first definition of a port win by): those with public metadata (so their root is
/// trusted and mTLS towards them can work), private metadata and at least one gateway to send
/// the traffic to. A federation whose `spec.import` cannot be read contributes nothing new
/// (what it imported earlier is kept: [`FedState::holds_back_deletes`]).
pub(crate) fn sources<'a>(states: &'a [FedState]) -> Vec<Source<'a>> {
    states
        .iter()
        .filter(|st| st.public.is_some() && st.fed.import.is_ok())
        .filter_map(|st| {
            let p = st.private.as_ref()?;
            (!p.ingress_gateways.is_empty()).then_some(Source {
                federation: &st.fed.name,
                gateways: &p.ingress_gateways,
                services: &p.public_services,
            })
        })
        .collect()
}

/// Trust domain (lower case) → the federations that declare it, sorted by name.
type Owners = BTreeMap<String, Vec<String>>;

/// The federations whose trust domain is the longest suffix of `host`, with that domain.
fn owner_of<'o>(host: &str, owners: &'o Owners) -> Option<(&'o str, &'o [String])> {
    let mut rest = host;
    while let Some(dot) = rest.find('.') {
        rest = &rest[dot + 1..];
        if let Some((td, feds)) = owners.get_key_value(rest) {
            return Some((td.as_str(), feds.as_slice()));
        }
    }
    None
}

/// A host belongs to the federation(s) whose trust domain is its longest matching suffix
/// (docs/security.md): a peer with trust domain `example.test` cannot publish
/// `pay.prod.example.test` while a federation with trust domain `prod.example.test` exists,
/// or its gateway would receive traffic meant for that cluster. Such a claim is dropped as
/// `HostnameOutOfScope`, naming the owner; federations sharing one trust domain still merge.
/// Runs before [`sources`], on every federation's effective private metadata.
pub(crate) fn drop_hosts_of_other_federations(states: &mut [FedState]) {
    let mut owners = Owners::new();
    for st in states.iter() {
        owners
            .entry(st.fed.trust_domain.to_ascii_lowercase())
            .or_default()
            .push(st.fed.name.clone());
    }
    for feds in owners.values_mut() {
        feds.sort();
    }
    for st in states.iter_mut() {
        let Some(p) = st.private.as_mut() else {
            continue;
        };
        let own = st.fed.trust_domain.to_ascii_lowercase();
        let mut dropped = Vec::new();
        p.public_services
            .retain(|s| match owner_of(&s.hostname, &owners) {
                Some((td, feds)) if td != own => {
                    dropped.push(Dropped {
                        reason: Reason::HostnameOutOfScope,
                        message: format!(
                        "service {}: hostname belongs to IstioFederation {} (trust domain {td})",
                        truncate(&s.hostname),
                        feds.join(", ")
                    ),
                    });
                    false
                }
                _ => true,
            });
        p.dropped.extend(dropped);
    }
}

/// One ServiceEntry (+ DestinationRule) to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub name: String,
    pub hostname: String,
    pub resolution: &'static str,
    pub ports: Vec<ServicePort>,
    pub endpoints: Vec<Gateway>,
    /// Contributing federations, sorted by name; the first names the object in its label.
    pub federations: Vec<String>,
    /// `exportTo` of the ServiceEntry and DestinationRule (set after the merge from the
    /// federations' `spec.import.exportTo`: [`crate::discovery::services::import_policy::set_export_to`]).
    pub export_to: Option<Vec<String>>,
}

/// Kubernetes object names are at most 253 characters. Deckhouse does not truncate; names
/// that fit are identical to Deckhouse's, longer ones keep a readable prefix and a hash of
/// the host name and endpoint set so they stay unique.
const MAX_NAME: usize = 253;

/// FNV-1a, 32 bit (a non-cryptographic name hash, as Deckhouse uses).
fn fnv1a32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Deckhouse's `enc(decimal(hash))`: each byte of the decimal string mapped into a
/// vowel-free alphabet (so names never spell words).
fn encode(hash: u32) -> String {
    const ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % 27] as char)
        .collect()
}

fn endpoint_key(endpoints: &[Gateway]) -> String {
    endpoints
        .iter()
        .map(|e| format!("{}:{}", e.address, e.port))
        .collect::<Vec<_>>()
        .join(",")
}

/// The object name for a record, as Deckhouse names it (a long one bounded, see [`MAX_NAME`]).
/// Not unique: `web.x.b.test` and `web.x-b.test` behind the same gateways get the same name;
/// [`merge`] settles such collisions with [`host_name`].
pub(crate) fn record_name(hostname: &str, endpoints: &[Gateway]) -> String {
    let key = endpoint_key(endpoints);
    let name = format!(
        "{}-{}",
        hostname.replace('.', "-"),
        encode(fnv1a32(key.as_bytes()))
    );
    if name.len() <= MAX_NAME {
        return name;
    }
    hashed_name(hostname, &format!("{hostname}|{key}"))
}

/// The name for a record whose Deckhouse name another host already has: the host with dashes
/// and a hash of the host *and* the endpoint set (`salt` > 0 only if even that is taken).
pub(crate) fn host_name(hostname: &str, endpoints: &[Gateway], salt: u32) -> String {
    let mut seed = format!("{hostname}|{}", endpoint_key(endpoints));
    if salt > 0 {
        seed.push_str(&format!("|{salt}"));
    }
    hashed_name(hostname, &seed)
}

/// `<host with dashes, cut to fit>-<hash of seed>`, at most [`MAX_NAME`] characters.
fn hashed_name(hostname: &str, seed: &str) -> String {
    let suffix = encode(fnv1a32(seed.as_bytes()));
    let mut prefix: String = hostname
        .replace('.', "-")
        .chars()
        .take(MAX_NAME - suffix.len() - 1)
        .collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    format!("{prefix}-{suffix}")
}

/// Gives every record a name no other record has (docs/security.md). Deckhouse's name stays
/// with the first record (records come in hostname order) that has it; every later record with
/// the same name gets [`host_name`], salted until it is free of every Deckhouse name and every
/// name given before. A pure function of the record set, so a rerun gives the same names.
fn unique_names(records: &mut [Record], warnings: &mut Vec<Warning>) {
    let mut first_with: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        first_with.entry(r.name.clone()).or_insert(i);
    }
    let mut taken: BTreeSet<String> = first_with.keys().cloned().collect();
    for i in 0..records.len() {
        let owner = first_with.get(&records[i].name).copied().unwrap_or(i);
        if owner == i {
            continue;
        }
        let r = &records[i];
        let mut salt = 0;
        let mut name = host_name(&r.hostname, &r.endpoints, salt);
        while taken.contains(&name) {
            salt += 1;
            name = host_name(&r.hostname, &r.endpoints, salt);
        }
        warnings.push(format!(
            "hosts {} and {} would share the ServiceEntry name {}; {} is named {name}",
            records[owner].hostname, r.hostname, r.name, r.hostname
        ));
        taken.insert(name.clone());
        records[i].name = name;
    }
}

/// A log line worth surfacing (port collisions across federations).
pub(crate) type Warning = String;

/// One (hostname, port) across federations. Everything borrows from the sources until the
/// records are built: a large federation set has tens of thousands of slots, and cloning
/// strings per slot dominated. Sorted, deduplicated vectors rather than sets: a slot nearly
/// always has one gateway set and one federation, and a set's node allocation per slot
/// dominated peak memory.
struct PortSlot<'a> {
    def: &'a ServicePort,
    endpoints: Vec<&'a Gateway>,
    federations: Vec<&'a str>,
}

fn insert_sorted<T: Ord>(v: &mut Vec<T>, item: T) {
    if let Err(at) = v.binary_search(&item) {
        v.insert(at, item);
    }
}

/// (hostname, port number) → slot; a BTreeMap keeps the output independent of input order.
type Slots<'a> = BTreeMap<(&'a str, u16), PortSlot<'a>>;

/// Merges every federation's services into records, as Deckhouse does. `sources`
/// must be in federation-name order: that order decides which port definition wins.
pub(crate) fn merge(sources: &[Source]) -> (Vec<Record>, Vec<Warning>) {
    let mut warnings = Vec::new();
    let slots = port_slots(sources, &mut warnings);
    let mut records: Vec<Record> = group_by_endpoints(slots)
        .into_iter()
        .map(|(hostname, endpoints, (ports, federations))| {
            record(hostname, endpoints, ports, federations, &mut warnings)
        })
        .collect();
    // Records sorted by hostname, then by first port number.
    records.sort_by(|a, b| {
        a.hostname.cmp(&b.hostname).then_with(|| {
            a.ports
                .first()
                .map(|p| p.port)
                .cmp(&b.ports.first().map(|p| p.port))
        })
    });
    unique_names(&mut records, &mut warnings);
    (records, warnings)
}

/// Step 1–2: every (hostname, port) with the gateways of every federation exporting it. The
/// first federation (by name) to declare a port defines its name and protocol, as Deckhouse
/// does; a later, different declaration is a warning, never a second port.
fn port_slots<'a>(sources: &[Source<'a>], warnings: &mut Vec<Warning>) -> Slots<'a> {
    let mut slots = Slots::new();
    for src in sources {
        let mut seen_here: BTreeSet<(&str, u16)> = BTreeSet::new();
        for svc in src.services {
            for port in &svc.ports {
                let key = (svc.hostname.as_str(), port.port);
                if !seen_here.insert(key) {
                    continue; // same (hostname, port) twice in one federation: first wins, silently
                }
                match slots.entry(key) {
                    Entry::Vacant(vacant) => {
                        let mut endpoints: Vec<&Gateway> = src.gateways.iter().collect();
                        endpoints.sort();
                        endpoints.dedup();
                        vacant.insert(PortSlot {
                            def: port,
                            endpoints,
                            federations: vec![src.federation],
                        });
                    }
                    Entry::Occupied(mut occupied) => {
                        let slot = occupied.get_mut();
                        if slot.def.name != port.name || slot.def.protocol != port.protocol {
                            warnings.push(format!(
                                "port collision on {} port {}: federation {} declares {}/{}, keeping {}/{} declared first",
                                svc.hostname, port.port, src.federation, port.name, port.protocol, slot.def.name, slot.def.protocol
                            ));
                        }
                        for g in src.gateways {
                            insert_sorted(&mut slot.endpoints, g);
                        }
                        insert_sorted(&mut slot.federations, src.federation);
                    }
                }
            }
        }
    }
    slots
}

/// A hostname's ports that share one gateway set, and the federations contributing them.
type Group<'a> = (Vec<&'a ServicePort>, Vec<&'a str>);

/// Step 3: ports of a hostname grouped by their endpoint set, in (hostname, endpoint set)
/// order: each group becomes one ServiceEntry. Gateway's derived Ord is (address, port),
/// exactly the order Deckhouse sorts endpoints in. The slots come sorted by hostname, so each
/// hostname's groups are collected on their own and appended in turn.
fn group_by_endpoints(slots: Slots<'_>) -> Vec<(&str, Vec<&Gateway>, Group<'_>)> {
    let mut groups = Vec::new();
    let mut of_host: BTreeMap<Vec<&Gateway>, Group> = BTreeMap::new();
    let mut host: Option<&str> = None;
    for ((hostname, _), slot) in slots {
        if slot.endpoints.is_empty() {
            continue;
        }
        if host != Some(hostname) {
            if let Some(done) = host {
                groups.extend(
                    std::mem::take(&mut of_host)
                        .into_iter()
                        .map(|(e, g)| (done, e, g)),
                );
            }
            host = Some(hostname);
        }
        let entry = of_host.entry(slot.endpoints).or_default();
        entry.0.push(slot.def);
        entry.1.extend(slot.federations);
    }
    if let Some(done) = host {
        groups.extend(of_host.into_iter().map(|(e, g)| (done, e, g)));
    }
    groups
}

/// Istio's ServiceEntry CRD allows at most this many endpoints
/// (testdata/schemas/istio-serviceentry-crd.yaml, `maxItems: 4096`): 64 federations at the
/// default gateway limit, merged into one host, reach it.
const MAX_ENDPOINTS: usize = 4096;

/// Step 4: one group as a record, named as Deckhouse names it; STATIC resolution only when
/// every gateway is an IP address.
fn record(
    hostname: &str,
    endpoints: Vec<&Gateway>,
    ports: Vec<&ServicePort>,
    mut federations: Vec<&str>,
    warnings: &mut Vec<Warning>,
) -> Record {
    federations.sort_unstable();
    federations.dedup();
    if endpoints.len() > MAX_ENDPOINTS {
        warnings.push(format!(
            "{} gateway(s) of {hostname} after the first {MAX_ENDPOINTS} dropped: a ServiceEntry has at most {MAX_ENDPOINTS} endpoints",
            endpoints.len() - MAX_ENDPOINTS
        ));
    }
    let endpoints: Vec<Gateway> = endpoints.into_iter().take(MAX_ENDPOINTS).cloned().collect();
    let ports = unique_port_names(hostname, ports, warnings);
    let resolution = if endpoints
        .iter()
        .all(|e| crate::protocol::names::is_ip_literal(&e.address))
    {
        "STATIC"
    } else {
        "DNS"
    };
    Record {
        name: record_name(hostname, &endpoints),
        hostname: hostname.to_string(),
        resolution,
        ports,
        endpoints,
        federations: federations.into_iter().map(str::to_string).collect(),
        export_to: None,
    }
}

/// Ports merged from different federations may share a name, and a ServiceEntry's port names
/// must be unique: a later duplicate gets the generated `<protocol>-<number>` name, and is
/// dropped (with a warning) when even that is taken. Sorted by port number.
fn unique_port_names(
    hostname: &str,
    ports: Vec<&ServicePort>,
    warnings: &mut Vec<Warning>,
) -> Vec<ServicePort> {
    let mut kept: Vec<ServicePort> = Vec::with_capacity(ports.len());
    for p in ports {
        let mut p = p.clone();
        if kept.iter().any(|q| q.name == p.name) {
            let generated = format!("{}-{}", p.protocol.to_ascii_lowercase(), p.port);
            warnings.push(format!(
                "port name {} on {} used twice; port {} renamed to {generated}",
                p.name, hostname, p.port
            ));
            p.name = generated;
        }
        if kept.iter().any(|q| q.name == p.name) {
            warnings.push(format!(
                "port {} on {} dropped: no unique name available",
                p.port, hostname
            ));
            continue;
        }
        kept.push(p);
    }
    kept.sort_by_key(|p| p.port);
    // Each federation's services keep at most this many ports; merged ones can exceed it
    // together, and the CRD refuses an endpoint with more (docs/security.md).
    if kept.len() > MAX_PORTS_PER_SERVICE {
        warnings.push(format!(
            "{} port(s) on {hostname} above the {MAX_PORTS_PER_SERVICE} lowest dropped: the federations exporting it publish more ports together than a ServiceEntry endpoint carries",
            kept.len() - MAX_PORTS_PER_SERVICE
        ));
        kept.truncate(MAX_PORTS_PER_SERVICE);
    }
    kept
}

fn metadata(record: &Record, namespace: &str) -> Meta {
    let mut labels = vec![(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())];
    if let Some(first) = record.federations.first() {
        labels.push((FEDERATION_LABEL.to_string(), label_value(first)));
    }
    Meta {
        name: record.name.clone(),
        namespace: namespace.to_string(),
        labels: OrderedMap(labels),
        annotations: OrderedMap(vec![(
            FEDERATIONS_ANNOTATION.to_string(),
            record.federations.join(","),
        )]),
    }
}

/// The ServiceEntry for a record, valid for Istio's CRD rules and webhook (tests/common/istio.rs).
pub(crate) fn service_entry(record: &Record, namespace: &str, api_version: &str) -> Desired {
    let endpoints = record
        .endpoints
        .iter()
        .map(|e| SeEndpoint {
            address: e.address.clone(),
            ports: OrderedMap(
                record
                    .ports
                    .iter()
                    .map(|p| (p.name.clone(), u32::from(e.port)))
                    .collect(),
            ),
            labels: OrderedMap(vec![(
                "security.istio.io/tlsMode".to_string(),
                "istio".to_string(),
            )]),
        })
        .collect();
    let ports = record
        .ports
        .iter()
        .map(|p| SePort {
            name: p.name.clone(),
            number: u32::from(p.port),
            protocol: p.protocol.to_string(),
        })
        .collect();
    Desired {
        api_version: api_version.to_string(),
        kind: "ServiceEntry",
        metadata: metadata(record, namespace),
        spec: Spec::ServiceEntry(SeSpec {
            hosts: vec![record.hostname.clone()],
            location: "MESH_INTERNAL".to_string(),
            ports,
            resolution: record.resolution.to_string(),
            endpoints,
            export_to: record.export_to.clone(),
        }),
    }
}

/// Failover between the gateways of a host served through more than one (docs/how-it-works.md,
/// "Remote discovery"). The endpoints are whole clusters' ingress gateways, so the detector reacts
/// to what a dead or unreachable gateway produces — connect failures, timeouts and 502/503/504,
/// which Envoy counts as gateway errors also on opaque TCP — and never to an application's own 5xx
/// answers (`consecutive5xxErrors: 0`), which would eject a healthy cluster. Three in a row eject a
/// gateway at the next 5 s sweep for 30 s (doubling on each repeat); up to 100 % may be ejected,
/// since with two clusters one is half the set and Envoy's panic threshold still spreads load over
/// all when too few remain.
fn gateway_failover(record: &Record) -> Option<DrOutlierDetection> {
    (record.endpoints.len() > 1).then(|| DrOutlierDetection {
        consecutive_gateway_errors: 3,
        consecutive_5xx_errors: 0,
        interval: "5s".to_string(),
        base_ejection_time: "30s".to_string(),
        max_ejection_percent: 100,
    })
}

/// The DestinationRule forcing Istio mutual TLS towards the imported host, with failover
/// between gateways when there are several.
pub(crate) fn destination_rule(record: &Record, namespace: &str, api_version: &str) -> Desired {
    Desired {
        api_version: api_version.to_string(),
        kind: "DestinationRule",
        metadata: metadata(record, namespace),
        spec: Spec::DestinationRule(DrSpec {
            host: record.hostname.clone(),
            traffic_policy: DrPolicy {
                tls: DrTls {
                    mode: "ISTIO_MUTUAL".to_string(),
                },
                outlier_detection: gateway_failover(record),
            },
            export_to: record.export_to.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(a: &str, p: u16) -> Gateway {
        Gateway {
            address: a.into(),
            port: p,
        }
    }

    fn svc(host: &str, ports: &[(&str, u16)]) -> PublicService {
        PublicService {
            hostname: host.into(),
            ports: ports
                .iter()
                .map(|(n, p)| ServicePort {
                    name: n.to_string(),
                    port: *p,
                    protocol: crate::protocol::metadata::protocol_for(n),
                })
                .collect(),
        }
    }

    fn record(endpoints: Vec<Gateway>) -> Record {
        Record {
            name: "web-prod-svc-b-local-x".into(),
            hostname: "web.prod.svc.b.local".into(),
            resolution: "STATIC",
            ports: vec![],
            endpoints,
            federations: vec!["b".into()],
            export_to: None,
        }
    }

    #[test]
    fn failover_only_for_hosts_behind_several_gateways() {
        let policy = |r: &Record| match destination_rule(r, "d8-istio", "v1").spec {
            Spec::DestinationRule(dr) => dr.traffic_policy,
            Spec::ServiceEntry(_) => unreachable!("a DestinationRule"),
        };
        let single = policy(&record(vec![gw("1.1.1.1", 15443)]));
        assert_eq!(single.tls.mode, "ISTIO_MUTUAL");
        assert_eq!(single.outlier_detection, None);
        let two = policy(&record(vec![gw("1.1.1.1", 15443), gw("2.2.2.2", 15443)]));
        assert_eq!(two.tls.mode, "ISTIO_MUTUAL");
        let od = two
            .outlier_detection
            .expect("outlier detection with two gateways");
        assert_eq!(
            (od.consecutive_gateway_errors, od.consecutive_5xx_errors),
            (3, 0)
        );
        assert_eq!(
            (od.interval.as_str(), od.base_ejection_time.as_str()),
            ("5s", "30s")
        );
        assert_eq!(od.max_ejection_percent, 100);
    }

    #[test]
    fn fnv_reference_vectors() {
        // Published FNV-1a 32-bit test vectors.
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn names_match_the_conformance_cases() {
        // Names Deckhouse's own tests expect for these inputs.
        assert_eq!(
            record_name(
                "my-svc.my-ns.svc.cluster.local",
                &[gw("1.1.1.1", 15443), gw("2.2.2.2", 15443)]
            ),
            "my-svc-my-ns-svc-cluster-local-9c8cbb5bc"
        );
        assert_eq!(
            record_name("svc.ns.svc.cluster.local", &[gw("10.0.0.1", 15443)]),
            "svc-ns-svc-cluster-local-64465b95f6"
        );
        assert_eq!(
            record_name("svc.ns.svc.cluster.local", &[gw("10.0.0.2", 15443)]),
            "svc-ns-svc-cluster-local-85bb6b6b89"
        );
        assert_eq!(
            record_name("dup-svc.ns.svc.cluster.local", &[gw("3.3.3.3", 15443)]),
            "dup-svc-ns-svc-cluster-local-6475d67dcb"
        );
    }

    #[test]
    fn long_names_are_bounded_and_distinct() {
        let host = format!(
            "{}.b.local",
            ["a".repeat(63), "b".repeat(63), "c".repeat(63)].join(".")
        );
        let a = record_name(&host, &[gw("1.1.1.1", 15443)]);
        let b = record_name(&host, &[gw("1.1.1.2", 15443)]);
        assert!(a.len() <= 253 && b.len() <= 253 && a != b);
        assert!(crate::hook::k8s::is_object_name(&a) && crate::hook::k8s::is_object_name(&b));
    }

    #[test]
    fn merge_case_47_and_48() {
        let gx = [gw("10.0.0.1", 15443)];
        let gy = [gw("10.0.0.2", 15443)];
        let sx = [svc("svc.ns.svc.cluster.local", &[("http", 8080)])];
        let sy = [svc("svc.ns.svc.cluster.local", &[("grpc", 9090)])];
        let (r, w) = merge(&[
            Source {
                federation: "x",
                gateways: &gx,
                services: &sx,
            },
            Source {
                federation: "y",
                gateways: &gy,
                services: &sy,
            },
        ]);
        assert!(w.is_empty());
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].ports[0].port, r[0].endpoints.clone()),
            (8080, gx.to_vec())
        );
        assert_eq!(
            (r[1].ports[0].port, r[1].endpoints.clone()),
            (9090, gy.to_vec())
        );

        let sy = [svc("svc.ns.svc.cluster.local", &[("web", 8080)])];
        let (r, w) = merge(&[
            Source {
                federation: "x",
                gateways: &gx,
                services: &sx,
            },
            Source {
                federation: "y",
                gateways: &gy,
                services: &sy,
            },
        ]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].ports[0].name, "http");
        assert_eq!(r[0].endpoints, vec![gx[0].clone(), gy[0].clone()]);
        assert_eq!(r[0].federations, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(w.len(), 1);
    }

    fn source<'a>(
        federation: &'a str,
        gateways: &'a [Gateway],
        services: &'a [PublicService],
    ) -> Source<'a> {
        Source {
            federation,
            gateways,
            services,
        }
    }

    #[test]
    fn the_first_federation_to_declare_a_port_defines_it() {
        let (ga, gb) = ([gw("10.0.0.1", 15443)], [gw("10.0.0.2", 15443)]);
        let sa = [svc("s.b.local", &[("http", 80), ("http", 80)])];
        let sb = [svc("s.b.local", &[("grpc", 80), ("tls", 443)])];
        let mut warnings = Vec::new();
        let slots = port_slots(
            &[source("a", &ga, &sa), source("b", &gb, &sb)],
            &mut warnings,
        );
        let port80 = &slots[&("s.b.local", 80)];
        assert_eq!(
            (port80.def.name.as_str(), port80.def.protocol),
            ("http", "HTTP")
        );
        assert_eq!(port80.endpoints, [&ga[0], &gb[0]]);
        assert_eq!(port80.federations, ["a", "b"]);
        assert_eq!(slots[&("s.b.local", 443)].federations, ["b"]);
        // One warning for b's grpc on 80; a's own duplicate is silent.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("federation b declares grpc/HTTP2, keeping http/HTTP"));
    }

    #[test]
    fn ports_with_the_same_gateways_share_a_record_and_names_stay_unique() {
        let (ga, gb) = ([gw("10.0.0.1", 15443)], [gw("gw.b.example", 15443)]);
        let sa = [svc("s.b.local", &[("web", 80)])];
        let sb = [svc("s.b.local", &[("web", 81), ("web", 80)])];
        let (records, warnings) = merge(&[source("a", &ga, &sa), source("b", &gb, &sb)]);
        // Port 80 has both gateways, port 81 only b's: two records, DNS for the named gateway.
        assert_eq!(records.len(), 2);
        assert_eq!(
            records[0].ports.iter().map(|p| p.port).collect::<Vec<_>>(),
            [80]
        );
        assert_eq!(records[0].resolution, "DNS");
        assert_eq!(records[1].ports[0].port, 81);
        assert!(warnings.is_empty(), "{warnings:?}");

        let two = [
            ServicePort {
                name: "web".into(),
                port: 81,
                protocol: "TCP",
            },
            ServicePort {
                name: "web".into(),
                port: 80,
                protocol: "TCP",
            },
            ServicePort {
                name: "tcp-80".into(),
                port: 80,
                protocol: "TCP",
            },
        ];
        let mut warnings = Vec::new();
        let kept = unique_port_names("s.b.local", two.iter().collect(), &mut warnings);
        let names: Vec<(&str, u16)> = kept.iter().map(|p| (p.name.as_str(), p.port)).collect();
        assert_eq!(names, [("tcp-80", 80), ("web", 81)]);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
    }

    #[test]
    fn hosts_that_fold_to_one_name_get_distinct_names() {
        // '-' sorts before '.', so web.x-b.test is first and keeps Deckhouse's name.
        let g = [gw("10.0.0.1", 15443)];
        let s = [
            svc("web.x.b.test", &[("http", 80)]),
            svc("web.x-b.test", &[("http", 80)]),
            svc("web-x.b.test", &[("http", 80)]),
            svc("other.b.test", &[("http", 80)]),
        ];
        let (r, w) = merge(&[source("f", &g, &s)]);
        let named: Vec<(&str, &str)> = r
            .iter()
            .map(|r| (r.hostname.as_str(), r.name.as_str()))
            .collect();
        let deckhouse = record_name("web.x-b.test", &g);
        assert_eq!(deckhouse, record_name("web.x.b.test", &g));
        assert_eq!(deckhouse, record_name("web-x.b.test", &g));
        assert_eq!(
            named,
            [
                ("other.b.test", record_name("other.b.test", &g).as_str()),
                ("web-x.b.test", deckhouse.as_str()),
                ("web.x-b.test", host_name("web.x-b.test", &g, 0).as_str()),
                ("web.x.b.test", host_name("web.x.b.test", &g, 0).as_str()),
            ]
        );
        let names: BTreeSet<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names.len(), r.len());
        assert!(r.iter().all(|r| crate::hook::k8s::is_object_name(&r.name)));
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("hosts web-x.b.test and web.x-b.test would share"));
        // Input order does not matter: the same set gives the same names.
        let reversed: Vec<PublicService> = s.iter().rev().cloned().collect();
        let (again, _) = merge(&[source("f", &g, &reversed)]);
        assert_eq!(again, r);
    }

    #[test]
    fn a_fallback_name_that_is_taken_is_salted() {
        let g = [gw("10.0.0.1", 15443)];
        let mut records: Vec<Record> = ["a.b.test", "a-b.test"]
            .iter()
            .map(|h| Record {
                name: record_name(h, &g),
                hostname: h.to_string(),
                resolution: "STATIC",
                ports: vec![],
                endpoints: g.to_vec(),
                federations: vec!["f".into()],
                export_to: None,
            })
            .collect();
        records.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        // A third record already holds the fallback name of the second.
        let fallback = host_name("a.b.test", &g, 0);
        records.push(Record {
            name: fallback.clone(),
            hostname: "z.b.test".into(),
            ..records[0].clone()
        });
        let mut warnings = Vec::new();
        unique_names(&mut records, &mut warnings);
        assert_eq!(records[1].name, host_name("a.b.test", &g, 1));
        assert_eq!(records[2].name, fallback);
    }

    #[test]
    fn endpoints_sort_bytewise() {
        let g = [gw("10.0.0.2", 15443), gw("10.0.0.10", 15443)];
        let s = [svc("a.b.local", &[("http", 80)])];
        let (r, _) = merge(&[Source {
            federation: "f",
            gateways: &g,
            services: &s,
        }]);
        assert_eq!(r[0].endpoints[0].address, "10.0.0.10");
    }
}
