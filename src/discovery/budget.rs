//! The object budget: no object and no status patch the hook writes may exceed
//! [`MAX_OBJECT_BYTES`] serialized, well under what the API server and etcd accept
//! (docs/security.md, "Limits and shares"). When a run would exceed it, the federations responsible
//! are held at their last-known-good — the largest contributor first, ties by name, so the choice
//! never depends on map order — and every other federation proceeds.

use crate::discovery::diff::{Manifest, Operation};
use crate::discovery::network::report::{Attempt, FetchReport};
use crate::discovery::services::service_entries::{self, Record};
use crate::discovery::shares::{self, Item};
use crate::discovery::state::{FedState, Rules, TrustExcess};
use crate::discovery::trust::trust_bundle::{self, TrustBundleError, TrustEntry};
use crate::hook::settings::{Settings, TrustBundleMode};
use crate::protocol::failure::{Failure, Reason};
use crate::protocol::metadata::{Gateway, PrivateMetadata, PublicService, MAX_PORTS_PER_SERVICE};
use serde::Serialize;
use serde_json::{json, Value};
use std::cmp::Reverse;

/// 900 KiB: etcd refuses values over 1.5 MiB, and the API server's request limit must also
/// fit the `test` value a JSON patch of the trust object carries.
pub const MAX_OBJECT_BYTES: usize = 900 * 1024;

/// A room for the conditions and timestamps of a status patch beyond its metadata cache.
const STATUS_SLACK: usize = 16 * 1024;

struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `v` serialized as compact JSON, without building the text.
pub(crate) fn json_len<T: Serialize + ?Sized>(v: &T) -> usize {
    let mut c = Counter(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        // Our own types always serialize; were one ever not to, it must not be written.
        Err(_) => usize::MAX,
    }
}

/// What an operation makes the API server store or accept, serialized: the object of a
/// create, the patch of a status write, the object a JSON patch makes of `base` (the observed
/// object it was computed from). A delete stores nothing.
pub(crate) fn stored_size(op: &Operation, base: Option<&Value>) -> usize {
    match op {
        Operation::CreateOrUpdate(m) | Operation::CreateIfNotExists(m) => match m {
            Manifest::Json(v) => json_len(v),
            Manifest::Istio(d) => json_len(d),
        },
        Operation::StatusMergePatch { patch, .. } => json_len(patch),
        Operation::JsonPatch { patch, .. } => {
            let mut obj = base.cloned().unwrap_or_else(|| json!({}));
            if apply_json_patch(&mut obj, patch) {
                json_len(&obj)
            } else {
                usize::MAX
            }
        }
        Operation::Delete { .. } => 0,
    }
}

/// Whether an operation stays within the budget.
pub(crate) fn fits(op: &Operation, base: Option<&Value>) -> bool {
    stored_size(op, base) <= MAX_OBJECT_BYTES
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// Applies the JSON patch operations the hook writes (`test`, `add`, `replace`, `remove` on
/// object members) to `obj`; `false` for anything else.
fn apply_json_patch(obj: &mut Value, ops: &[Value]) -> bool {
    for op in ops {
        let (Some(kind), Some(path)) = (
            op.get("op").and_then(Value::as_str),
            op.get("path").and_then(Value::as_str),
        ) else {
            return false;
        };
        if kind == "test" {
            continue;
        }
        let tokens: Vec<String> = path.split('/').skip(1).map(unescape).collect();
        let Some((last, parents)) = tokens.split_last() else {
            return false;
        };
        let mut at = &mut *obj;
        for t in parents {
            match at.get_mut(t.as_str()) {
                Some(next) => at = next,
                None => return false,
            }
        }
        let Some(map) = at.as_object_mut() else {
            return false;
        };
        match (kind, op.get("value")) {
            ("add" | "replace", Some(v)) => {
                map.insert(last.clone(), v.clone());
            }
            ("remove", _) => {
                map.shift_remove(last.as_str());
            }
            _ => return false,
        }
    }
    true
}

/// The largest of `candidates` by `size`, ties by the first name.
fn largest<'a>(candidates: impl Iterator<Item = (usize, &'a str, usize)>) -> Option<usize> {
    candidates
        .max_by_key(|(size, name, _)| (*size, Reverse(*name)))
        .map(|(_, _, i)| i)
}

fn too_large(what: &str) -> Failure {
    Failure::new(
        Reason::ObjectTooLarge,
        format!("{what} would exceed the 900 KiB object budget"),
    )
}

/// What the status patch of `st` would carry: its metadata caches, `status.retiredRoots`, and
/// room for its conditions (at most the size of the ones it has, plus [`STATUS_SLACK`]).
fn status_estimate(st: &FedState, report: Option<&FetchReport>) -> usize {
    let public = match report.and_then(|r| r.public.as_ref()) {
        Some(Attempt { result: Ok(p), .. }) if st.trust_hold.is_none() => {
            Some(json_len(&p.to_cache()))
        }
        _ => None,
    };
    let private = st.private_cache.as_ref().map_or(0, json_len);
    let retired = st.retention.status(public.is_some()).map_or(0, json_len);
    let public = public.unwrap_or(0);
    public + private + retired + json_len(&st.fed.conditions) + STATUS_SLACK
}

/// What one imported service counts for against `MAX_SERVICES_TOTAL`: once, and once more per
/// [`SERVICE_UNIT_BYTES`] its ServiceEntry and DestinationRule take beyond the first. An
/// ordinary service (a few ports, a few gateways: about 1.5 KB) counts once; one with 128
/// ports behind 64 gateways (about 200 KB: every endpoint repeats every port) counts about 50
/// times, so the cap bounds the bytes a run writes, not only the objects.
pub(crate) const SERVICE_UNIT_BYTES: usize = 4096;

/// An upper estimate of the bytes the ServiceEntry and DestinationRule of `service` take
/// (compact JSON), imported from `federation` through `gateways`: the fixed fields with the
/// longest names they can have, each port in `spec.ports`, and each gateway's endpoint with
/// every port again. Checked against the real objects in the tests below.
pub(crate) fn service_bytes(
    service: &PublicService,
    gateways: &[Gateway],
    federation: &str,
) -> usize {
    // A service keeps at most MAX_PORTS_PER_SERVICE ports (intake), merged ones too.
    let kept = &service.ports[..service.ports.len().min(MAX_PORTS_PER_SERVICE)];
    let names: usize = kept.iter().map(|p| p.name.len()).sum();
    let n = kept.len();
    let address = gateways.iter().map(|g| g.address.len()).max().unwrap_or(0);
    let fixed = 1400 + 4 * service.hostname.len() + 6 * federation.len();
    let ports = 48 * n + names;
    let endpoints = gateways.len() * (80 + address + 14 * n + names);
    fixed + ports + endpoints
}

/// How many times `private`'s services count against `MAX_SERVICES_TOTAL`.
fn service_units(private: &PrivateMetadata, federation: &str) -> usize {
    private
        .public_services
        .iter()
        .map(|s| {
            service_bytes(s, &private.ingress_gateways, federation).div_ceil(SERVICE_UNIT_BYTES)
        })
        .sum()
}

/// Holds every federation whose services exceed its share of `MAX_SERVICES_TOTAL`, the services
/// one run imports from all federations together (docs/security.md, "Limits and shares"), a
/// large service counting once per [`SERVICE_UNIT_BYTES`]: the share is max-min fair
/// ([`shares::level`]), so a federation within it imports everything whatever the others
/// publish. One over it works from its last-known-good private metadata if that fits the
/// share, else imports nothing new and keeps what it has (`LimitExceeded`, naming the share).
pub(crate) fn hold_over_fleet_share(states: &mut [FedState], rules: &Rules) {
    let total = rules.limits.services_total;
    let units_of = |st: &FedState| {
        st.private
            .as_ref()
            .map_or(0, |p| service_units(p, &st.fed.name))
    };
    let demands: Vec<usize> = states.iter().map(units_of).collect();
    let share = shares::level(&demands, total);
    let sharing = demands.iter().filter(|&&n| n > 0).count();
    for (st, &units) in states.iter_mut().zip(&demands) {
        if units <= share {
            continue;
        }
        let n = st.private.as_ref().map_or(0, |p| p.public_services.len());
        let counted = if units == n {
            String::new()
        } else {
            format!(
                ", counted as {units} (a service whose ServiceEntry and DestinationRule take more than {SERVICE_UNIT_BYTES} bytes counts once per {SERVICE_UNIT_BYTES}),"
            )
        };
        log::error!(target: "reconcile", "IstioFederation {}: its {n} services{counted} exceed its share of {share} of MAX_SERVICES_TOTAL={total}; held at the last good metadata", st.fed.name);
        st.hold_services(
            Failure::new(
                Reason::LimitExceeded,
                format!("Its {n} services{counted} exceed its share of {share} of the services a run imports from all {sharing} federations (MAX_SERVICES_TOTAL={total})"),
            ),
            rules,
        );
        if st.private.is_some() && units_of(st) > share {
            st.private = None;
        }
    }
}

/// Holds, before anything is written, every federation whose status patch would exceed the
/// budget with its fresh metadata cached: first its private metadata (the large one), then
/// its public metadata.
pub(crate) fn hold_large_status(
    states: &mut [FedState],
    fetched: &std::collections::BTreeMap<String, FetchReport>,
    rules: &Rules,
) {
    for st in states.iter_mut() {
        let report = fetched.get(&st.fed.name);
        if status_estimate(st, report) <= MAX_OBJECT_BYTES {
            continue;
        }
        if st.private_cache.is_some() {
            log::error!(target: "reconcile", "IstioFederation {}: caching its private metadata would exceed the object budget; held at the last good metadata", st.fed.name);
            st.hold_services(
                too_large("Caching the private metadata in this IstioFederation's status"),
                rules,
            );
        }
        if status_estimate(st, report) > MAX_OBJECT_BYTES {
            log::error!(target: "reconcile", "IstioFederation {}: caching its public metadata would exceed the object budget; held at the last good metadata", st.fed.name);
            st.hold_trust(too_large(
                "Caching the public metadata in this IstioFederation's status",
            ));
        }
    }
}

/// Room for the skeleton of a mesh-config ConfigMap we create (metadata, label, annotation).
const NEW_OBJECT_BYTES: usize = 1024;

/// The trust object as messages name it.
fn trust_object_name(settings: &Settings) -> String {
    match settings.trust_bundle_mode {
        TrustBundleMode::MeshConfig => format!(
            "ConfigMap {}/{}",
            settings.istio_namespace, settings.mesh_config_name
        ),
        TrustBundleMode::Cacerts => format!(
            "Secret {}/{}",
            settings.istio_namespace,
            crate::hook::settings::CACERTS_SECRET
        ),
    }
}

/// The trust bundle's operation within the budget, decided in one pass (README, "Security"):
/// the entries kept as installed (federations whose metadata cannot be read, or held, and the
/// trust domains in `held`) stay;
/// what the budget leaves beside them and beside everything that is not ours is shared between
/// the federations that want roots ([`shares::allocate`]); a federation over its share loses
/// its newest roots and says so ([`FedState::trust_excess`]). The mesh edit is planned once
/// more only if the size estimates were short. `None` when the object is over the budget
/// without any of our new entries, or there is nothing to change.
pub(crate) fn plan_trust_bundle(
    settings: &Settings,
    trust_object: Option<&Value>,
    installed: &[TrustEntry],
    states: &mut [FedState],
    held: &std::collections::BTreeSet<String>,
) -> Result<Option<Operation>, TrustBundleError> {
    let kept = trust_bundle::target_entries(settings, trust_object, states, Vec::new(), held);
    let base = match trust_bundle::plan(settings, trust_object, &kept)? {
        Some(op) => stored_size(&op, trust_object),
        None => trust_object.map_or(NEW_OBJECT_BYTES, json_len),
    };
    if base > MAX_OBJECT_BYTES {
        log::error!(target: "reconcile", "the trust bundle exceeds the object budget without any new entry of ours; not written");
        return Ok(None);
    }
    let wants = trust_bundle::wanted(settings, states, installed, &kept);
    let demands: Vec<Vec<Item>> = wants
        .iter()
        .map(|(_, w)| w.iter().map(|x| x.item).collect())
        .collect();
    let mut capacity = MAX_OBJECT_BYTES - base;
    for _ in 0..3 {
        let alloc = shares::allocate(&demands, capacity);
        let mut target: Vec<TrustEntry> = Vec::new();
        for ((_, w), &n) in wants.iter().zip(&alloc.granted) {
            target.extend(w[..n].iter().map(|x| x.entry.clone()));
        }
        target.extend(kept.iter().cloned());
        let op = trust_bundle::plan(settings, trust_object, &target)?;
        let size = op.as_ref().map_or(0, |op| stored_size(op, trust_object));
        if size <= MAX_OBJECT_BYTES {
            record_excess(settings, states, &wants, &alloc);
            return Ok(op);
        }
        // Only if an estimate was short: the room shrinks by what it was short of.
        capacity = capacity.saturating_sub(size - MAX_OBJECT_BYTES);
    }
    log::error!(target: "reconcile", "the trust bundle would exceed the object budget; not written");
    Ok(None)
}

/// Marks every federation that did not get all it wants, naming the roots left out.
fn record_excess(
    settings: &Settings,
    states: &mut [FedState],
    wants: &[(usize, Vec<trust_bundle::Wanted>)],
    alloc: &shares::Allocation,
) {
    let object = trust_object_name(settings);
    for ((i, w), &n) in wants.iter().zip(&alloc.granted) {
        if n == w.len() {
            continue;
        }
        let left_out: Vec<String> = w[n..].iter().map(|x| x.entry.fingerprint.clone()).collect();
        log::error!(target: "reconcile", "IstioFederation {}: {} of its root certificates exceed its share of the trust bundle ({} bytes); left out", states[*i].fed.name, left_out.len(), alloc.share);
        states[*i].trust_excess = Some(TrustExcess {
            object: object.clone(),
            share: alloc.share,
            federations: wants.len(),
            trusted: n,
            left_out,
        });
    }
}

/// An upper bound of a record's ServiceEntry size, cheap enough for every record: the exact
/// size is computed only when this bound exceeds the budget.
fn size_bound(r: &Record) -> usize {
    let ports: usize = r.ports.iter().map(|p| p.name.len() + 64).sum();
    let per_endpoint: usize = r.ports.iter().map(|p| p.name.len() + 16).sum::<usize>() + 96;
    let endpoints: usize = r
        .endpoints
        .iter()
        .map(|e| e.address.len() + per_endpoint)
        .sum();
    let federations: usize = r.federations.iter().map(|f| f.len() + 1).sum();
    1024 + 4 * (r.hostname.len() + r.name.len()) + ports + endpoints + 2 * federations
}

/// Whether a record's ServiceEntry or DestinationRule would exceed the budget.
pub(crate) fn record_too_large(r: &Record, namespace: &str, api_version: &str) -> bool {
    size_bound(r) > MAX_OBJECT_BYTES
        && (json_len(&service_entries::service_entry(r, namespace, api_version)) > MAX_OBJECT_BYTES
            || json_len(&service_entries::destination_rule(
                r,
                namespace,
                api_version,
            )) > MAX_OBJECT_BYTES)
}

/// The records of this run within the budget, every host with the federation(s) it belongs to
/// ([`service_entries::drop_hosts_of_other_federations`]): while one would exceed it, the federation
/// contributing the most to it (its ports of that host times its gateways; ties: first by
/// name) is held at its last-known-good, and the merge is redone.
pub(crate) fn merge_within_budget(
    settings: &Settings,
    states: &mut [FedState],
    rules: &Rules,
) -> (Vec<Record>, Vec<service_entries::Warning>) {
    let ns = settings.federation_namespace.as_str();
    let api = settings.networking_api_version.as_str();
    loop {
        // Also after a hold: the last-known-good metadata it falls back to is judged alike.
        service_entries::drop_hosts_of_other_federations(states);
        let (records, warnings) = service_entries::merge(&service_entries::sources(states));
        let Some(big) = records.iter().find(|r| record_too_large(r, ns, api)) else {
            return (records, warnings);
        };
        let candidate = largest(states.iter().enumerate().filter_map(|(i, st)| {
            if !big.federations.contains(&st.fed.name) {
                return None;
            }
            let p = st.private.as_ref()?;
            let ports: usize = p
                .public_services
                .iter()
                .filter(|s| s.hostname == big.hostname)
                .map(|s| s.ports.len())
                .sum();
            Some((ports * p.ingress_gateways.len(), st.fed.name.as_str(), i))
        }));
        let Some(i) = candidate else {
            // Unreachable: a record always has a contributing federation with private metadata.
            return (Vec::new(), warnings);
        };
        let what = format!("ServiceEntry {} for host {}", big.name, big.hostname);
        log::error!(target: "reconcile", "IstioFederation {}: {what} would exceed the object budget; held at the last good metadata", states[i].fed.name);
        states[i].hold_services(too_large(&what), rules);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::metadata::ServicePort;

    /// The estimate against the objects the hook really writes, over ports, gateways and name
    /// lengths: never below them, and not far above (within 1.5× plus 1 KiB).
    #[test]
    fn service_bytes_bounds_the_real_objects() {
        let ns = "a-federation-namespace-of-the-longest-length-kubernetes-allows-x";
        for ports in [1usize, 3, 20, 128] {
            for gateways in [1usize, 4, 64] {
                for (host, fed) in [
                    ("web.prod.svc.b.local".to_string(), "b".to_string()),
                    (
                        format!("{}.prod.svc.{}.local", "s".repeat(60), "d".repeat(60)),
                        "f".repeat(63),
                    ),
                ] {
                    let service = PublicService {
                        hostname: host.clone(),
                        ports: (0..ports)
                            .map(|i| ServicePort {
                                name: format!("https-port-number-{i}"),
                                port: 60000 + i as u16,
                                protocol: "HTTPS",
                            })
                            .collect(),
                    };
                    let gws: Vec<Gateway> = (0..gateways)
                        .map(|i| Gateway {
                            address: format!("gateway-{i}.loadbalancer.example.com"),
                            port: 15443,
                        })
                        .collect();
                    let services = [service];
                    let (records, _) = service_entries::merge(&[service_entries::Source {
                        federation: &fed,
                        gateways: &gws,
                        services: &services,
                    }]);
                    let real: usize = records
                        .iter()
                        .map(|r| {
                            json_len(&service_entries::service_entry(
                                r,
                                ns,
                                "networking.istio.io/v1",
                            )) + json_len(&service_entries::destination_rule(
                                r,
                                ns,
                                "networking.istio.io/v1",
                            ))
                        })
                        .sum();
                    let est = service_bytes(&services[0], &gws, &fed);
                    assert!(
                        real <= est && est <= real * 3 / 2 + 1024,
                        "{ports} ports, {gateways} gateways, host {}: real {real}, estimate {est}",
                        host.len()
                    );
                }
            }
        }
    }

    #[test]
    fn json_patches_are_measured_on_the_object_they_make() {
        let base = json!({"metadata": {"name": "istio", "annotations": {"a/b": "x"}}, "data": {"mesh": "old"}});
        let op = Operation::JsonPatch {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "d8-istio".into(),
            name: "istio".into(),
            patch: vec![
                json!({"op": "test", "path": "/data/mesh", "value": "old"}),
                json!({"op": "replace", "path": "/data/mesh", "value": "x".repeat(1000)}),
                json!({"op": "remove", "path": "/metadata/annotations/a~1b"}),
            ],
        };
        let expected = json!({"metadata": {"name": "istio", "annotations": {}}, "data": {"mesh": "x".repeat(1000)}});
        assert_eq!(stored_size(&op, Some(&base)), json_len(&expected));
        assert!(fits(&op, Some(&base)));
        let huge = Operation::StatusMergePatch {
            api_version: "v1".into(),
            kind: "IstioFederation".into(),
            name: "b".into(),
            patch: json!({"status": {"x": "y".repeat(MAX_OBJECT_BYTES)}}),
        };
        assert!(!fits(&huge, None));
        // A patch the hook never writes is never taken to fit.
        let odd = Operation::JsonPatch {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "d8-istio".into(),
            name: "istio".into(),
            patch: vec![json!({"op": "move", "from": "/a", "path": "/b"})],
        };
        assert!(!fits(&odd, Some(&base)));
    }

    #[test]
    fn the_largest_is_chosen_and_ties_go_to_the_first_name() {
        let c = [(5, "b", 0), (7, "c", 1), (7, "a", 2)];
        assert_eq!(largest(c.into_iter()), Some(2));
        assert_eq!(largest([(1, "z", 0), (1, "y", 1)].into_iter()), Some(1));
        assert_eq!(largest(std::iter::empty()), None);
    }
}
