//! `make demo`: two demo clusters federating on 127.0.0.1, running nothing but the release
//! binary. Each cluster is an in-memory object store standing in for its API server (the
//! product never talks to one), with its own Istio root, trust domain and UUID, and its own
//! `istio-federation-hook serve` over TLS. Every round runs the export hook and the discovery
//! hook on both sides exactly as shell-operator would, applies their patches, and prints what
//! each side created, until both clusters import each other's services and trust each other's
//! root.

#[path = "../tests/cluster/mod.rs"]
mod cluster;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use base64::Engine as _;
use cluster::Cluster;
use serde_json::Value;

fn describe(op: &Value) -> String {
    let obj = &op["object"];
    let (kind, ns, name) = if obj.is_object() {
        (
            &obj["kind"],
            &obj["metadata"]["namespace"],
            &obj["metadata"]["name"],
        )
    } else {
        (&op["kind"], &op["namespace"], &op["name"])
    };
    let target = match ns.as_str() {
        Some(ns) => format!(
            "{} {ns}/{}",
            kind.as_str().unwrap_or(""),
            name.as_str().unwrap_or("")
        ),
        None => format!(
            "{} {}",
            kind.as_str().unwrap_or(""),
            name.as_str().unwrap_or("")
        ),
    };
    let detail = match (op["operation"].as_str(), kind.as_str()) {
        (Some("CreateOrUpdate"), Some("ServiceEntry")) => {
            let spec = &obj["spec"];
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!("{}/{}/{}", p["name"], p["number"], p["protocol"]).replace('"', "")
                })
                .collect();
            let eps: Vec<String> = spec["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["address"].as_str().unwrap_or("").to_string())
                .collect();
            format!(
                "  host {} ports [{}] -> gateways [{}]:15443 ({})",
                spec["hosts"][0].as_str().unwrap_or(""),
                ports.join(", "),
                eps.join(", "),
                spec["resolution"].as_str().unwrap_or("")
            )
        }
        (Some("JSONPatch"), Some("ConfigMap")) => {
            "  caCertificates updated (test-guarded JSONPatch)".to_string()
        }
        (Some("MergePatch"), _) => {
            let conds: Vec<String> = op["mergePatch"]["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    format!(
                        "{}={}({})",
                        c["type"].as_str().unwrap_or("").trim_end_matches("Ready"),
                        c["status"].as_str().unwrap_or(""),
                        c["reason"].as_str().unwrap_or("")
                    )
                })
                .collect();
            let cached = op["mergePatch"]["status"]["metadataCache"]
                .as_object()
                .map(|m| {
                    m.keys()
                        .filter(|k| !k.ends_with("Timestamp"))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("+")
                })
                .unwrap_or_default();
            format!(
                "  {}{}",
                if cached.is_empty() {
                    String::new()
                } else {
                    format!("cached {cached}; ")
                },
                conds.join(" ")
            )
        }
        _ => String::new(),
    };
    format!(
        "    {} {target}{detail}",
        op["operation"].as_str().unwrap_or("")
    )
}

fn show(who: &str, phase: &str, ops: &[Value]) {
    println!(
        "  {who} {phase}: {} patch{}",
        ops.len(),
        if ops.len() == 1 { "" } else { "es" }
    );
    for op in ops {
        println!("{}", describe(op));
    }
}

fn main() {
    let bin = common::bin();
    if !std::path::Path::new(&bin).exists() {
        eprintln!("{bin} not found: run `make build` (or `make demo`) first");
        std::process::exit(1);
    }
    let mut a = Cluster::new("cluster-a", "cluster-a.local", "198.51.100.1", "web");
    let mut b = Cluster::new("cluster-b", "cluster-b.local", "198.51.100.2", "api");
    a.federate_with(&b);
    b.federate_with(&a);
    a.start_serve();
    b.start_serve();
    println!("cluster-a: trust domain cluster-a.local, exports web.prod, metadata at https://127.0.0.1:{}/metadata/", a.port);
    println!("cluster-b: trust domain cluster-b.local, exports api.prod, metadata at https://127.0.0.1:{}/metadata/", b.port);
    println!("each has an IstioFederation pointing at the other; no key pairs yet.\n");

    for round in 1..=4 {
        println!("== round {round}");
        let ops = a.export();
        show("cluster-a", "export", &ops);
        let ops = b.export();
        show("cluster-b", "export", &ops);
        let ops = a.discover();
        show("cluster-a", "discovery", &ops);
        let ops = b.discover();
        show("cluster-b", "discovery", &ops);
        let done = a.imports(&b, "api.prod.svc.cluster-b.local")
            && b.imports(&a, "web.prod.svc.cluster-a.local")
            && a.trusts(&b)
            && b.trusts(&a);
        if done {
            println!("\n== federated after {round} round(s)");
            for (c, other, host) in [
                (&a, &b, "api.prod.svc.cluster-b.local"),
                (&b, &a, "web.prod.svc.cluster-a.local"),
            ] {
                let se = c
                    .store
                    .all("ServiceEntry")
                    .into_iter()
                    .find(|s| s["spec"]["hosts"][0] == host)
                    .cloned()
                    .unwrap_or_default();
                println!(
                    "{} imports {host} and trusts {}'s root for {}:",
                    c.name, other.name, other.domain
                );
                println!("{}", serde_json::to_string_pretty(&se).unwrap_or_default());
            }
            doctor(&bin, &a, &b);
            return;
        }
    }
    eprintln!("the demo clusters did not converge");
    std::process::exit(1);
}

/// Ends the demo the way an operator checks a federation: `doctor` walks cluster-a's chain to
/// cluster-b's metadata endpoint (url, dns, tcp, tls, public, private with cluster-a's own key).
fn doctor(bin: &str, a: &Cluster, b: &Cluster) {
    let dir = a
        .metadata_dir
        .path()
        .parent()
        .unwrap_or(a.metadata_dir.path());
    let ca = dir.join(format!("demo-doctor-{}-ca.pem", b.name));
    let key = dir.join(format!("demo-doctor-{}-priv.pem", a.name));
    let priv_pem = a
        .store
        .all("Secret")
        .into_iter()
        .find(|s| s["metadata"]["name"] == "d8-remote-authn-keypair")
        .and_then(|s| s["data"]["priv.pem"].as_str())
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_default();
    if std::fs::write(&ca, &b.endpoint_ca.cert_pem).is_err()
        || std::fs::write(&key, priv_pem).is_err()
    {
        eprintln!("cannot write the doctor's inputs");
        std::process::exit(1);
    }
    let endpoint = format!("https://127.0.0.1:{}/metadata/", b.port);
    println!("\n== {} checks its federation with {}: istio-federation-hook doctor --endpoint {endpoint} ...", a.name, b.name);
    let status = std::process::Command::new(bin)
        .args(["doctor", "--endpoint", &endpoint, "--ca"])
        .arg(&ca)
        .args(["--trust-domain", &b.domain, "--key"])
        .arg(&key)
        .args(["--uuid", &a.uuid])
        .env("LOG_LEVEL", "error")
        .status();
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(&ca);
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("doctor found a problem with the demo federation");
        std::process::exit(1);
    }
}
