//! Which of our Services are exported, on which ports, and to which peers (README, "Choosing
//! what to share"): one reading for the export hook, which advertises them in
//! `federation.json`, and for discovery, which lets each peer reach exactly these
//! (`discovery::authz`). Two readings of the same Services could disagree, and then a peer
//! would be offered a service its requests are refused on, or reach one it was never offered.
//!
//! A Service is exported when it carries `federation.istio.deckhouse.io/public-service: ""`
//! (Deckhouse's selector `key=` matches only the empty value); its host is
//! `<name>.<namespace>.svc.<cluster domain>` and its ports are `spec.ports[].port` — the
//! Service ports, which is what a peer's sidecar puts in the SNI it sends.
//! `federation.istio.deckhouse.io/export-to: "<trust domain>[, …]"` restricts it to the peers
//! with those trust domains.

use super::labels::{EXPORT_TO_ANNOTATION, PUBLIC_SERVICE_LABEL};
use crate::hook::k8s;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The trust domains an `export-to` value names: comma separated, spaces allowed, compared
/// case-insensitively.
pub(crate) fn parse_export_to(value: &str) -> BTreeSet<String> {
    value
        .split(',')
        .map(|td| td.trim().to_ascii_lowercase())
        .filter(|td| !td.is_empty())
        .collect()
}

/// One exported Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exported {
    /// `<name>.<namespace>.svc.<cluster domain>`, exactly as `federation.json` publishes it.
    pub host: String,
    /// `spec.ports[]` as `(name, port)`, in the Service's order (`""` for an unnamed port).
    pub ports: Vec<(String, u16)>,
    /// `None`: every peer. `Some(tds)`: only peers with one of these trust domains (empty:
    /// none).
    pub export_to: Option<BTreeSet<String>>,
}

impl Exported {
    /// Whether a peer with trust domain `td` (lower case) may see and reach this service.
    pub(crate) fn is_exported_to(&self, td: &str) -> bool {
        self.export_to
            .as_ref()
            .is_none_or(|allowed| allowed.contains(td))
    }
}

/// The exported Services of a `Service` snapshot, by host. A host seen twice (a duplicated
/// snapshot entry) keeps the later ports and only what both `export-to`s allow.
pub(crate) fn exported(services: &[Value], cluster_domain: &str) -> Vec<Exported> {
    let mut by_host: BTreeMap<String, Exported> = BTreeMap::new();
    for svc in services {
        if k8s::label(svc, PUBLIC_SERVICE_LABEL) != Some("") {
            continue;
        }
        let (Some(name), Some(ns)) = (k8s::name(svc), k8s::namespace(svc)) else {
            continue;
        };
        let ports = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|p| {
                        let port = u16::try_from(p.get("port")?.as_u64()?).ok()?;
                        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                        Some((name.to_string(), port))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let host = format!("{name}.{ns}.svc.{cluster_domain}");
        let export_to = k8s::annotation(svc, EXPORT_TO_ANNOTATION).map(parse_export_to);
        let export_to = match by_host.remove(&host).and_then(|prev| prev.export_to) {
            Some(prev) => Some(match export_to {
                Some(now) => prev.intersection(&now).cloned().collect(),
                None => prev,
            }),
            None => export_to,
        };
        by_host.insert(
            host.clone(),
            Exported {
                host,
                ports,
                export_to,
            },
        );
    }
    by_host.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn export_to_values() {
        assert_eq!(parse_export_to("b.local"), set(&["b.local"]));
        assert_eq!(
            parse_export_to(" b.local,C.Local ,, b.local "),
            set(&["b.local", "c.local"])
        );
        assert!(parse_export_to("").is_empty());
        assert!(parse_export_to(" , ").is_empty());
    }

    fn svc(name: &str, label: &str, export_to: Option<&str>, ports: Value) -> Value {
        let mut s = json!({"metadata": {"name": name, "namespace": "prod",
            "labels": {PUBLIC_SERVICE_LABEL: label}}, "spec": {"ports": ports}});
        if let Some(e) = export_to {
            s["metadata"]["annotations"] = json!({EXPORT_TO_ANNOTATION: e});
        }
        s
    }

    #[test]
    fn only_labelled_services_with_their_service_ports() {
        let services = [
            svc(
                "web",
                "",
                None,
                json!([{"name": "http", "port": 80, "targetPort": 8080}, {"port": 9090}]),
            ),
            svc(
                "db",
                "",
                Some("B.local, c.local"),
                json!([{"name": "tcp", "port": 5432}]),
            ),
            svc("off", "true", None, json!([{"port": 80}])),
            svc("huge", "", None, json!([{"port": 70000}])),
        ];
        let out = exported(&services, "my.cluster");
        assert_eq!(
            out,
            [
                Exported {
                    host: "db.prod.svc.my.cluster".into(),
                    ports: vec![("tcp".into(), 5432)],
                    export_to: Some(set(&["b.local", "c.local"])),
                },
                Exported {
                    host: "huge.prod.svc.my.cluster".into(),
                    ports: vec![],
                    export_to: None,
                },
                Exported {
                    host: "web.prod.svc.my.cluster".into(),
                    ports: vec![("http".into(), 80), ("".into(), 9090)],
                    export_to: None,
                },
            ]
        );
        assert!(out[0].is_exported_to("b.local") && !out[0].is_exported_to("d.local"));
        assert!(out[2].is_exported_to("d.local"));
    }

    #[test]
    fn a_duplicated_host_keeps_only_what_both_allow() {
        let services = [
            svc("db", "", Some("b.local,c.local"), json!([{"port": 1}])),
            svc("db", "", Some("c.local"), json!([{"port": 2}])),
        ];
        let out = exported(&services, "my.cluster");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].export_to, Some(set(&["c.local"])));
        assert_eq!(out[0].ports, [("".to_string(), 2)]);
    }
}
