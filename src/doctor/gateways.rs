//! The gateways step: on `--probe-gateways`, a TCP connect to each ingress gateway the peer's
//! private metadata advertises (at most [`MAX_GATEWAYS`]). Tests point it at loopback
//! listeners with [`GATEWAY_MAP_ENV`].

use super::check::{human, Check};
use super::connect::{connect_any, resolve};
use super::options::Options;
use crate::discovery::network::report::FetchReport;
use crate::hook::io;
use crate::protocol::metadata::Gateway;
use crate::protocol::names;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Test-only override of the gateways `--probe-gateways` connects to (docs/operating.md):
/// `ADVERTISED:PORT=LOOPBACK:PORT,…`. Unlisted gateways are then not probed at all, and every
/// target must be a loopback address.
pub(crate) const GATEWAY_MAP_ENV: &str = "ISTIO_FEDERATION_HOOK_TEST_GATEWAY_MAP";

/// At most this many gateways are probed.
pub(super) const MAX_GATEWAYS: usize = 64;
/// gateways: probed only on request, and only those of private metadata that validated.
pub(super) fn gateways_step(opts: &Options, report: &FetchReport) -> Check {
    let private_ok = report.private.as_ref().and_then(|a| a.result.as_ref().ok());
    match (opts.probe_gateways, private_ok) {
        (false, _) => Check::skip(
            "gateways",
            "not probed: pass --probe-gateways to connect to each advertised gateway",
        ),
        (true, None) => Check::skip("gateways", "no private metadata, so no gateways to probe"),
        (true, Some(p)) => gateways_check(&p.ingress_gateways, opts.timeout),
    }
}

/// `1.2.3.4:15443`, `[2001:db8::1]:15443`, `gw.example:15443`.
pub(super) fn gateway_key(g: &Gateway) -> String {
    if g.address.contains(':') {
        format!("[{}]:{}", g.address, g.port)
    } else {
        format!("{}:{}", g.address, g.port)
    }
}

/// The test-only gateway map: advertised `ADDR:PORT` → loopback target.
pub(super) fn gateway_map() -> Result<Option<BTreeMap<String, SocketAddr>>, String> {
    let Some(text) = io::env(GATEWAY_MAP_ENV).filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    let mut map = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (from, to) = pair
            .split_once('=')
            .ok_or_else(|| format!("{GATEWAY_MAP_ENV}: {pair:?} is not ADDR:PORT=ADDR:PORT"))?;
        let to: SocketAddr = to
            .trim()
            .parse()
            .map_err(|_| format!("{GATEWAY_MAP_ENV}: {to:?} is not IP:PORT"))?;
        if !to.ip().is_loopback() {
            return Err(format!(
                "{GATEWAY_MAP_ENV}: {to} is not a loopback address (the override is for tests)"
            ));
        }
        map.insert(from.trim().to_string(), to);
    }
    Ok(Some(map))
}

pub(super) fn gateways_check(gateways: &[Gateway], timeout: Duration) -> Check {
    if gateways.is_empty() {
        return Check::warn(
            "gateways",
            "the peer advertises no ingress gateway",
            "none of the peer's services can be reached: its cross-cluster gateway must be published",
        );
    }
    let map = match gateway_map() {
        Ok(m) => m,
        Err(e) => return Check::fail("gateways", e, format!("fix or unset {GATEWAY_MAP_ENV}")),
    };
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<(usize, Result<String, String>)>();
    let mut lines: Vec<Option<Result<String, String>>> = vec![None; gateways.len()];
    let mut pending = 0;
    for (i, g) in gateways.iter().enumerate() {
        let key = gateway_key(g);
        if i >= MAX_GATEWAYS {
            lines[i] = Some(Ok(format!(
                "{key} not probed (more than {MAX_GATEWAYS} gateways)"
            )));
            continue;
        }
        let target = match &map {
            Some(m) => match m.get(&key) {
                Some(t) => Some(*t),
                None => {
                    lines[i] = Some(Ok(format!("{key} not probed (not in {GATEWAY_MAP_ENV})")));
                    continue;
                }
            },
            None => None,
        };
        let (tx, address, port) = (tx.clone(), g.address.clone(), g.port);
        let spawned = std::thread::Builder::new()
            .name("doctor-gateway".into())
            .spawn(move || {
                let result = probe_one(&key, target, &address, port, timeout);
                let _ = tx.send((i, result));
            });
        match spawned {
            Ok(_) => pending += 1,
            Err(e) => lines[i] = Some(Err(format!("{} not probed: {e}", gateway_key(g)))),
        }
    }
    drop(tx);
    let hard_stop = timeout + Duration::from_millis(200);
    while pending > 0 {
        let left = hard_stop.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok((i, r)) => {
                lines[i] = Some(r);
                pending -= 1;
            }
            Err(_) => break,
        }
    }
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (g, line) in gateways.iter().zip(lines) {
        match line {
            Some(Ok(l)) => ok.push(l),
            Some(Err(l)) => failed.push(l),
            None => failed.push(format!(
                "{}: no connection within {}",
                gateway_key(g),
                human(timeout)
            )),
        }
    }
    let detail = ok
        .iter()
        .chain(&failed)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if failed.is_empty() {
        return Check::ok("gateways", detail);
    }
    Check::fail(
        "gateways",
        detail,
        "traffic to the peer's services enters through these gateways: check the peer's ingress gateway Service (LoadBalancer address and port) and the firewalls in between; doctor connects from where it runs, which may not be the mesh's network",
    )
}

/// One gateway: a DNS name is resolved first and what it resolves to is held to the rules an
/// advertised IP address is (no loopback, link-local, …: [`names::check_gateway_address`]);
/// refused addresses are never dialled, and the line says what the name resolved to.
pub(super) fn probe_one(
    key: &str,
    target: Option<SocketAddr>,
    address: &str,
    port: u16,
    timeout: Duration,
) -> Result<String, String> {
    let started = Instant::now();
    let mut resolved = String::new();
    let mut addrs = Vec::new();
    if !names::is_ip_literal(address) {
        let all = resolve(address, port, timeout).map_err(|e| format!("{key}: {e}"))?;
        let mut shown = Vec::new();
        for a in all {
            match names::check_gateway_address(&a.ip().to_string()) {
                Ok(()) => {
                    shown.push(a.ip().to_string());
                    addrs.push(a);
                }
                Err(why) => shown.push(format!("{} (refused: {why})", a.ip())),
            }
        }
        resolved = format!(" resolves to {}", shown.join(", "));
        if addrs.is_empty() {
            return Err(format!(
                "{key}{resolved}: not connecting, a gateway address must be a remote one"
            ));
        }
    } else if target.is_none() {
        addrs = resolve(address, port, timeout).map_err(|e| format!("{key}: {e}"))?;
    }
    if let Some(t) = target {
        addrs = vec![t];
    }
    let left = timeout.saturating_sub(started.elapsed());
    let via = target.map(|t| format!(" via {t}")).unwrap_or_default();
    match connect_any(&addrs, left) {
        Ok((_, took)) => Ok(format!(
            "{key}{resolved}{via} connected in {} ms",
            took.as_millis()
        )),
        Err((detail, _)) => Err(format!("{key}{resolved}{via}: {detail}")),
    }
}
