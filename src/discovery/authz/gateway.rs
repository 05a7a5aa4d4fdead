//! The optional federation Gateway (`FEDERATION_GATEWAY`, docs/security.md, "Exported means
//! reachable"): the `hosts` of its AUTO_PASSTHROUGH servers are kept equal to the hosts
//! exported to at least one federated peer, so an unexported service has no route through it
//! at all (istiod builds the gateway's SNI routes only for services its hosts match). The
//! policies stay the boundary: they tell peers apart, the gateway cannot.
//!
//! Off by default: the Gateway often belongs to the platform. Only `hosts` of AUTO_PASSTHROUGH
//! servers is ever changed, by a JSON patch that tests the value it replaces.

use crate::discovery::diff::Operation;
use crate::hook::k8s;
use crate::hook::settings::Settings;
use crate::protocol::exports::Exported;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Istio refuses a server without hosts; this one (RFC 2606 `.invalid`) matches no service.
pub(crate) const NOTHING_EXPORTED: &str = "no-exported-service.invalid";

/// The hosts the Gateway should carry: every exported host with a port that at least one of
/// `peers` may reach, sorted; the placeholder when there is none.
pub(crate) fn desired_hosts(exports: &[Exported], peers: &BTreeSet<String>) -> Vec<String> {
    let hosts: BTreeSet<&str> = exports
        .iter()
        .filter(|e| !e.ports.is_empty() && peers.iter().any(|td| e.is_exported_to(td)))
        .map(|e| e.host.as_str())
        .collect();
    if hosts.is_empty() {
        return vec![NOTHING_EXPORTED.to_string()];
    }
    hosts.into_iter().map(str::to_string).collect()
}

/// The patch (if any) that sets `hosts` of every AUTO_PASSTHROUGH server of the observed
/// Gateway to `hosts`. A missing Gateway, or one without such a server, is logged and left.
pub(crate) fn patch(
    settings: &Settings,
    snapshot: &[Value],
    hosts: &[String],
) -> Option<Operation> {
    let (ns, name) = settings.federation_gateway.as_ref()?;
    let Some(gw) = snapshot
        .iter()
        .find(|g| k8s::namespace(g) == Some(ns.as_str()) && k8s::name(g) == Some(name.as_str()))
    else {
        log::warn!(target: "authz", "FEDERATION_GATEWAY names Gateway {ns}/{name}, which does not exist; its hosts are not managed");
        return None;
    };
    let servers = gw.pointer("/spec/servers").and_then(Value::as_array);
    let mut ops = Vec::new();
    let mut passthrough = 0;
    for (i, server) in servers.into_iter().flatten().enumerate() {
        if server.pointer("/tls/mode").and_then(Value::as_str) != Some("AUTO_PASSTHROUGH") {
            continue;
        }
        passthrough += 1;
        let path = format!("/spec/servers/{i}/hosts");
        match server.get("hosts") {
            Some(current) if *current == json!(hosts) => {}
            Some(current) => {
                ops.push(json!({"op": "test", "path": path, "value": current}));
                ops.push(json!({"op": "replace", "path": path, "value": hosts}));
            }
            None => ops.push(json!({"op": "add", "path": path, "value": hosts})),
        }
    }
    if passthrough == 0 {
        log::warn!(target: "authz", "Gateway {ns}/{name} (FEDERATION_GATEWAY) has no AUTO_PASSTHROUGH server; its hosts are not managed");
    }
    (!ops.is_empty()).then(|| Operation::JsonPatch {
        api_version: settings.networking_api_version.clone(),
        kind: "Gateway".to_string(),
        namespace: ns.clone(),
        name: name.clone(),
        patch: ops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(host: &str, ports: usize, to: Option<&[&str]>) -> Exported {
        Exported {
            host: host.into(),
            ports: (0..ports).map(|p| (String::new(), 80 + p as u16)).collect(),
            export_to: to.map(|t| t.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn hosts_exported_to_some_peer_and_nothing_else() {
        let peers: BTreeSet<String> = ["b.local".to_string()].into();
        let exports = [
            exp("web.p.svc.a", 1, None),
            exp("db.p.svc.a", 1, Some(&["c.local"])),
            exp("pay.p.svc.a", 1, Some(&["b.local"])),
            exp("noports.p.svc.a", 0, None),
        ];
        assert_eq!(
            desired_hosts(&exports, &peers),
            ["pay.p.svc.a", "web.p.svc.a"]
        );
        assert_eq!(desired_hosts(&exports[1..2], &peers), [NOTHING_EXPORTED]);
        assert_eq!(
            desired_hosts(&exports, &BTreeSet::new()),
            [NOTHING_EXPORTED]
        );
    }

    fn setting(v: &str) -> Result<Option<(String, String)>, String> {
        Settings::load(None, &|k| {
            (k == "FEDERATION_GATEWAY").then(|| v.to_string())
        })
        .map(|s| s.federation_gateway)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_setting_names_one_gateway_or_none() {
        let named = Some(("istio-system".to_string(), "federation-ingress".to_string()));
        assert_eq!(setting(" istio-system/federation-ingress "), Ok(named));
        assert_eq!(setting("none"), Ok(None));
        assert_eq!(setting(""), Ok(None));
        for bad in ["federation-ingress", "Istio/x", "a/b/c", "a/", "/b"] {
            assert_eq!(
                setting(bad),
                Err(format!("FEDERATION_GATEWAY: expected <namespace>/<name> of a Gateway, or none, got {bad:?}")),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_auto_passthrough_hosts_change_and_the_old_value_is_tested() {
        let settings = Settings::load(None, &|k| {
            (k == "FEDERATION_GATEWAY").then(|| "gw/fed".to_string())
        })
        .unwrap();
        let gw = json!({"metadata": {"namespace": "gw", "name": "fed"}, "spec": {"servers": [
            {"hosts": ["*"], "port": {"number": 80}},
            {"hosts": ["*.a"], "tls": {"mode": "AUTO_PASSTHROUGH"}}]}});
        let hosts = vec!["web.p.svc.a".to_string()];
        let Some(Operation::JsonPatch {
            patch: ops, kind, ..
        }) = patch(&settings, std::slice::from_ref(&gw), &hosts)
        else {
            panic!("no patch");
        };
        assert_eq!(kind, "Gateway");
        assert_eq!(
            ops,
            [
                json!({"op": "test", "path": "/spec/servers/1/hosts", "value": ["*.a"]}),
                json!({"op": "replace", "path": "/spec/servers/1/hosts", "value": ["web.p.svc.a"]}),
            ]
        );
        let mut done = gw;
        done["spec"]["servers"][1]["hosts"] = json!(hosts);
        assert!(patch(&settings, &[done], &hosts).is_none());
        assert!(patch(&settings, &[], &hosts).is_none());
    }
}
