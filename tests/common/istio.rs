//! Istio's checks on ServiceEntries that a JSON-Schema validator cannot express: the CRD's CEL
//! rules and the istiod webhook (`ValidateServiceEntry`). Written from Istio's rules,
//! independently of the product's code.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

const PROTOCOLS: [&str; 12] = [
    "TCP",
    "UDP",
    "GRPC",
    "GRPC-WEB",
    "HTTP",
    "HTTP_PROXY",
    "HTTP2",
    "HTTPS",
    "TLS",
    "MONGO",
    "REDIS",
    "MYSQL",
];

fn dns_label(s: &str, allow_upper: bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| {
            c.is_ascii_digit()
                || *c == b'-'
                || c.is_ascii_lowercase()
                || (allow_upper && c.is_ascii_uppercase())
        })
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

fn fqdn(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|l| dns_label(l, false))
        && !(s.contains('.')
            && s.rsplit('.')
                .next()
                .unwrap_or("")
                .bytes()
                .all(|c| c.is_ascii_digit()))
}

fn object_name(s: &str) -> bool {
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

/// Every rule for each ServiceEntry on its own, then the rules across all of them.
pub fn check_service_entries(ses: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut protocol_by_host_port: BTreeMap<(String, u64), String> = BTreeMap::new();
    for se in ses {
        let name = se["metadata"]["name"].as_str().unwrap_or("");
        let mut p = |m: String| problems.push(format!("ServiceEntry {name}: {m}"));
        // 1
        if !se["apiVersion"]
            .as_str()
            .unwrap_or("")
            .starts_with("networking.istio.io/")
        {
            p("apiVersion".into());
        }
        if !object_name(name) {
            p("metadata.name is not a DNS-1123 subdomain".into());
        }
        if se["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .is_empty()
        {
            p("metadata.namespace unset".into());
        }
        let spec = &se["spec"];
        let known = [
            "hosts",
            "location",
            "ports",
            "resolution",
            "endpoints",
            "addresses",
            "exportTo",
            "subjectAltNames",
            "workloadSelector",
        ];
        for k in spec
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if !known.contains(&k.as_str()) {
                p(format!("unknown spec field {k}"));
            }
        }
        // 2
        let hosts = spec["hosts"].as_array().cloned().unwrap_or_default();
        if hosts.len() != 1 {
            p(format!("{} hosts, expected exactly one", hosts.len()));
        }
        for h in &hosts {
            let h = h.as_str().unwrap_or("");
            if h == "*" || !fqdn(h) || is_ip(h) || !h.contains('.') {
                p(format!("host {h:?} is not a lower-case FQDN"));
            }
        }
        // 4
        if spec["location"] != "MESH_INTERNAL" {
            p("location is not MESH_INTERNAL".into());
        }
        // 5, 10, 11
        let endpoints = spec["endpoints"].as_array().cloned().unwrap_or_default();
        if endpoints.is_empty() || endpoints.len() > 4096 {
            p(format!("{} endpoints", endpoints.len()));
        }
        if spec.get("workloadSelector").is_some() {
            p("workloadSelector with endpoints".into());
        }
        let all_ip = endpoints
            .iter()
            .all(|e| is_ip(e["address"].as_str().unwrap_or("")));
        let expected = if all_ip { "STATIC" } else { "DNS" };
        if spec["resolution"] != expected {
            p(format!(
                "resolution {} but expected {expected}",
                spec["resolution"]
            ));
        }
        // 7, 8, 9
        let ports = spec["ports"].as_array().cloned().unwrap_or_default();
        if ports.is_empty() || ports.len() > 256 {
            p(format!("{} ports", ports.len()));
        }
        let mut names = BTreeSet::new();
        let mut numbers = BTreeSet::new();
        for port in &ports {
            let n = port["name"].as_str().unwrap_or("");
            let num = port["number"].as_u64().unwrap_or(0);
            if !dns_label(n, false) || n.len() > 62 {
                p(format!(
                    "port name {n:?} is not a lower-case DNS-1123 label of at most 62 characters"
                ));
            }
            if !(1..=65535).contains(&num) {
                p(format!("port number {num}"));
            }
            if !names.insert(n.to_string()) {
                p(format!("duplicate port name {n}"));
            }
            if !numbers.insert(num) {
                p(format!("duplicate port number {num}"));
            }
            let proto = port["protocol"].as_str().unwrap_or("");
            if !PROTOCOLS.contains(&proto.to_ascii_uppercase().as_str()) {
                p(format!("protocol {proto:?} unsupported"));
            }
            if let Some(t) = port.get("targetPort") {
                if !(1..=65535).contains(&t.as_u64().unwrap_or(0)) {
                    p("targetPort out of range".into());
                }
            }
            for h in &hosts {
                let prev = protocol_by_host_port.insert(
                    (h.as_str().unwrap_or("").to_string(), num),
                    proto.to_string(),
                );
                if prev.as_deref().is_some_and(|x| x != proto) {
                    p(format!(
                        "host {h} port {num} has conflicting protocols across ServiceEntries"
                    ));
                }
            }
        }
        // 11, 12, 13, 14
        for e in &endpoints {
            let addr = e["address"].as_str().unwrap_or("");
            if addr.is_empty() || addr.len() > 256 || addr.starts_with("unix://") {
                p(format!("endpoint address {addr:?}"));
            }
            if spec["resolution"] == "STATIC" && !is_ip(addr) {
                p(format!("STATIC endpoint {addr} is not an IP"));
            }
            if !is_ip(addr) && !fqdn(addr) {
                p(format!("endpoint {addr} is neither IP nor FQDN"));
            }
            let eports = e["ports"].as_object().cloned().unwrap_or_default();
            if eports.len() > 128 {
                p("more than 128 endpoint ports".into());
            }
            for (k, v) in &eports {
                if !names.contains(k) {
                    p(format!(
                        "endpoint port {k} is not defined by the service entry"
                    ));
                }
                if k.len() >= 63 || !dns_label(k, true) {
                    p(format!("endpoint port key {k} fails the CRD key rule"));
                }
                if !(1..=65535).contains(&v.as_u64().unwrap_or(0)) {
                    p(format!("endpoint port value {v}"));
                }
            }
            for n in &names {
                if !eports.contains_key(n) {
                    p(format!("endpoint {addr} does not map service port {n}"));
                }
            }
            if e["labels"]["security.istio.io/tlsMode"] != "istio" {
                p(format!(
                    "endpoint {addr} lacks security.istio.io/tlsMode: istio"
                ));
            }
            if e.get("serviceAccount").is_some() {
                p("endpoint serviceAccount set".into());
            }
        }
        // 15, 17, 19
        if spec.get("addresses").is_some() {
            p("addresses set".into());
        }
        if let Some(e) = spec.get("exportTo") {
            let ns = se["metadata"]["namespace"].as_str().unwrap_or("");
            for m in check_export_to(e, ns, true) {
                p(m);
            }
        }
        if se.get("status").is_some() {
            p("status set".into());
        }
    }
    problems
}

pub fn check_destination_rule(dr: &Value) -> Vec<String> {
    let name = dr["metadata"]["name"].as_str().unwrap_or("");
    let mut out = Vec::new();
    if !object_name(name) {
        out.push(format!("DestinationRule {name}: name"));
    }
    if !fqdn(dr["spec"]["host"].as_str().unwrap_or("")) {
        out.push(format!("DestinationRule {name}: host"));
    }
    if dr["spec"]["trafficPolicy"]["tls"]["mode"] != "ISTIO_MUTUAL" {
        out.push(format!("DestinationRule {name}: tls mode"));
    }
    if let Some(e) = dr["spec"].get("exportTo") {
        let ns = dr["metadata"]["namespace"].as_str().unwrap_or("");
        out.extend(
            check_export_to(e, ns, false)
                .into_iter()
                .map(|p| format!("DestinationRule {name}: {p}")),
        );
    }
    if let Some(od) = dr["spec"]["trafficPolicy"].get("outlierDetection") {
        out.extend(
            check_outlier_detection(od)
                .into_iter()
                .map(|p| format!("DestinationRule {name}: outlierDetection: {p}")),
        );
    }
    out
}

/// Istio's webhook rules for `trafficPolicy.outlierDetection` (pilot's
/// `validateOutlierDetection`): error counts are unsigned, `interval` and `baseEjectionTime`
/// are durations of at least 1 ms, the percentages lie in 0..=100, and only known fields.
fn check_outlier_detection(od: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(map) = od.as_object() else {
        return vec!["not an object".into()];
    };
    for (k, v) in map {
        match k.as_str() {
            "consecutiveGatewayErrors"
            | "consecutive5xxErrors"
            | "consecutiveLocalOriginFailures" => {
                if v.as_u64().is_none_or(|n| n > u64::from(u32::MAX)) {
                    out.push(format!("{k} must be a uint32"));
                }
            }
            "interval" | "baseEjectionTime" => {
                if duration_ms(v).is_none_or(|ms| ms < 1) {
                    out.push(format!("{k} must be a duration of at least 1ms"));
                }
            }
            "maxEjectionPercent" | "minHealthPercent" => {
                if v.as_u64().is_none_or(|n| n > 100) {
                    out.push(format!("{k} must be in 0..=100"));
                }
            }
            "splitExternalLocalOriginErrors" => {
                if !v.is_boolean() {
                    out.push(format!("{k} must be a boolean"));
                }
            }
            other => out.push(format!("unknown field {other}")),
        }
    }
    out
}

/// A protobuf JSON duration (`"5s"`, `"0.5s"`, `"1.000340012s"`) in whole milliseconds.
fn duration_ms(v: &Value) -> Option<u64> {
    let secs: f64 = v.as_str()?.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some((secs * 1000.0) as u64)
}

/// Istio's webhook rules for `exportTo` (pilot's `validateExportTo` and
/// `visibility.Instance.Validate`): each entry is `.`, `*` or a DNS-1123 label (`~` on
/// ServiceEntries only); no entry twice, where `.` and the object's own namespace count as one;
/// `*` and `~` only on their own.
pub fn check_export_to(v: &Value, namespace: &str, service_entry: bool) -> Vec<String> {
    let Some(entries) = v.as_array() else {
        return vec!["exportTo is not a list".into()];
    };
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for e in entries {
        let Some(e) = e.as_str() else {
            out.push(format!("exportTo entry {e} is not a string"));
            continue;
        };
        let key = if e == "." { namespace } else { e };
        if !seen.insert(key.to_string()) {
            out.push(format!("duplicate entries in exportTo for entry {e}"));
            continue;
        }
        let valid = e == "." || e == "*" || (service_entry && e == "~") || dns_label(e, false);
        if !valid {
            out.push(format!(
                "exportTo entry {e:?} is not ., *, or a DNS-1123 label"
            ));
        }
    }
    if entries.len() > 1 && seen.contains("*") {
        out.push("cannot have both public (*) and non-public exportTo values".into());
    }
    if entries.len() > 1 && seen.contains("~") {
        out.push("cannot export service entry to no one (~) and someone".into());
    }
    out
}

/// The `openAPIV3Schema` of AuthorizationPolicy `version` in a copied CRD file.
fn authorization_policy_schema(file: &str, version: &str) -> Value {
    let text = std::fs::read_to_string(super::root().join(file)).expect("schema file");
    let crd: Value = serde_saphyr::from_str(&text).expect("schema YAML");
    crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["name"] == version)
        .expect("version")["schema"]["openAPIV3Schema"]
        .clone()
}

/// Fields of `obj` the structural `schema` does not declare: the API server prunes them, so an
/// object relying on one would silently lose it.
fn undeclared(schema: &Value, obj: &Value, path: &str, out: &mut Vec<String>) {
    match obj {
        Value::Object(m) => {
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return;
            }
            for (k, v) in m {
                match schema.get("properties").and_then(|p| p.get(k)) {
                    Some(s) => undeclared(s, v, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    undeclared(s, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The API server's checks on an AuthorizationPolicy, for the oldest (1.24) and newest (1.31)
/// CRD we support: JSON schema, no pruned field, and the CEL rules of the CRD
/// (`x-kubernetes-validations`), written out from the CRD text.
pub fn check_authorization_policy(obj: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, release) in [
        (
            "testdata/schemas/istio-authorizationpolicy-crd-1.24.yaml",
            "1.24",
        ),
        (
            "testdata/schemas/istio-authorizationpolicy-crd.yaml",
            "1.31",
        ),
    ] {
        let version = obj["apiVersion"]
            .as_str()
            .and_then(|a| a.strip_prefix("security.istio.io/"))
            .unwrap_or("");
        let schema = authorization_policy_schema(file, version);
        let v = jsonschema::validator_for(&schema).expect("CRD schema");
        for e in v.iter_errors(obj) {
            problems.push(format!(
                "{release} CRD schema: {e} at {}",
                e.instance_path()
            ));
        }
        let mut pruned = Vec::new();
        undeclared(&schema, &json_without_metadata(obj), "", &mut pruned);
        for p in pruned {
            problems.push(format!("{release} CRD prunes {p}"));
        }
    }
    let spec = &obj["spec"];
    // CEL: only one of targetRefs or selector can be set.
    let set = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|k| spec.get(**k).is_some())
        .count();
    if set > 1 {
        problems.push("CEL: only one of targetRefs or selector can be set".into());
    }
    // CEL: Cannot set serviceAccounts with namespaces or principals.
    for rule in spec["rules"].as_array().into_iter().flatten() {
        for from in rule["from"].as_array().into_iter().flatten() {
            let s = &from["source"];
            let sa = s.get("serviceAccounts").is_some() || s.get("notServiceAccounts").is_some();
            let other = ["principals", "notPrincipals", "namespaces", "notNamespaces"]
                .iter()
                .any(|k| s.get(*k).is_some());
            if sa && other {
                problems
                    .push("CEL: Cannot set serviceAccounts with namespaces or principals".into());
            }
        }
    }
    // CEL on selector.matchLabels: no wildcard, no empty key.
    for (k, v) in spec["selector"]["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if k.contains('*') || k.is_empty() || v.as_str().is_some_and(|v| v.contains('*')) {
            problems.push("CEL: wildcard or empty key in selector.matchLabels".into());
        }
    }
    problems
}

/// `apiVersion`, `kind` and `metadata` are the API server's (TypeMeta, ObjectMeta), not the
/// CRD schema's.
fn json_without_metadata(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in ["apiVersion", "kind", "metadata"] {
            m.remove(k);
        }
    }
    o
}
