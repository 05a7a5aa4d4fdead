//! The steps before any TLS — url, dns, tcp — which a run never takes on its own: the endpoint
//! as the IstioFederation parser reads it, name resolution, and a TCP connect, each with a
//! hint that tells the likely causes apart.

use super::check::{human, Check, Stop};
use super::options::{federation, Options};
use crate::protocol::federation::Federation;
use reqwest::Url;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(super) const ENDPOINT_HINT: &str = "--endpoint is the peer's spec.metadataEndpoint: an https:// URL such as https://istio-metadata.peer.example/metadata/";

/// url: the endpoint as the IstioFederation parser reads it, and the host and port of its
/// public URL, which the next steps connect to.
pub(super) fn url_step(
    opts: &Options,
    checks: &mut Vec<Check>,
) -> Result<(Federation, String, u16), Stop> {
    let unusable = |detail: String| {
        Stop::failed(
            Check::fail("url", detail, ENDPOINT_HINT),
            "the endpoint is not usable",
        )
    };
    let fed = federation(opts).map_err(unusable)?;
    let public_url = fed.public_url();
    let parsed = Url::parse(&public_url);
    let Some((host, port)) = parsed
        .as_ref()
        .ok()
        .and_then(|u| Some((u.host_str()?.to_string(), u.port_or_known_default()?)))
    else {
        let why = parsed
            .err()
            .map_or("it names no host".to_string(), |e| e.to_string());
        return Err(unusable(format!(
            "--endpoint {:?} is not a URL: {why}",
            opts.endpoint
        )));
    };
    checks.push(Check::ok(
        "url",
        format!("public {public_url}, private {}", fed.private_url()),
    ));
    Ok((fed, host, port))
}

/// dns: the host's addresses (an IP address stands for itself).
pub(super) fn dns_step(
    host: &str,
    port: u16,
    timeout: Duration,
    checks: &mut Vec<Check>,
) -> Result<Vec<SocketAddr>, Stop> {
    let addrs = resolve(host, port, timeout).map_err(|e| {
        Stop::failed(
            Check::fail(
                "dns",
                format!("{host}: {e}"),
                "the host name does not resolve from here: check its spelling in --endpoint and the peer's DNS record (in a pod, also its DNS config)",
            ),
            "dns failed",
        )
    })?;
    let listed: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    checks.push(Check::ok(
        "dns",
        if host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
            format!("{host} is an IP address: nothing to resolve")
        } else {
            format!("{host} resolves to {}", listed.join(", "))
        },
    ));
    Ok(addrs)
}

/// tcp: the first address that accepts a connection. The hint tells a silent drop (timed out:
/// a firewall) from a refusal (nothing listens on the port).
pub(super) fn tcp_step(
    addrs: &[SocketAddr],
    port: u16,
    timeout: Duration,
    checks: &mut Vec<Check>,
) -> Result<SocketAddr, Stop> {
    match connect_any(addrs, timeout) {
        Ok((a, took)) => {
            checks.push(Check::ok(
                "tcp",
                format!("connected to {a} in {} ms", took.as_millis()),
            ));
            Ok(a)
        }
        Err((detail, timed_out)) => Err(Stop::failed(
            Check::fail(
                "tcp",
                detail,
                if timed_out {
                    format!("nothing answered within {}: a firewall or security group drops the traffic, or the address is not reachable from this network", human(timeout))
                } else {
                    format!("nothing accepts connections on port {port}: check the peer's metadata Service / Ingress / LoadBalancer and the port in --endpoint")
                },
            ),
            "tcp failed",
        )),
    }
}

/// Test-only resolver for `doctor` (docs/reference/settings.md): `NAME=IP,…`. When set, the
/// names it lists resolve to those addresses and no other name resolves, so tests never ask
/// the system resolver about their made-up names.
pub(crate) const RESOLVE_ENV: &str = "ISTIO_FEDERATION_HOOK_TEST_RESOLVE";

/// The test resolver's answer for `name`, when [`RESOLVE_ENV`] is set.
fn test_resolve(name: &str, port: u16) -> Option<Result<Vec<SocketAddr>, String>> {
    let table = crate::hook::io::env(RESOLVE_ENV).filter(|t| !t.trim().is_empty())?;
    let addrs: Vec<SocketAddr> = table
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .filter_map(|(_, ip)| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    Some(if addrs.is_empty() {
        Err(format!("does not resolve (not in {RESOLVE_ENV})"))
    } else {
        Ok(addrs)
    })
}

/// Resolves `host:port` within `timeout` (the system resolver cannot be interrupted, so it
/// runs on its own thread and is abandoned if late).
pub(super) fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_matches(['[', ']']);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if let Some(answer) = test_resolve(bare, port) {
        return answer;
    }
    let (tx, rx) = mpsc::channel();
    let name = bare.to_string();
    std::thread::Builder::new()
        .name("doctor-dns".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Vec::from_iter));
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(a)) if !a.is_empty() => Ok(a),
        Ok(Ok(_)) => Err("resolves to no address".into()),
        Ok(Err(e)) => Err(format!("does not resolve: {e}")),
        Err(_) => Err(format!(
            "no answer from the resolver within {}",
            human(timeout)
        )),
    }
}

/// Connects to the first address that accepts within the time left; `Err((detail, timed_out))`.
pub(super) fn connect_any(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<(SocketAddr, Duration), (String, bool)> {
    let started = Instant::now();
    let mut errors = Vec::new();
    let mut timed_out = false;
    for a in addrs {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        let t0 = Instant::now();
        match TcpStream::connect_timeout(a, left) {
            Ok(_) => return Ok((*a, t0.elapsed())),
            Err(e) => {
                timed_out |= e.kind() == std::io::ErrorKind::TimedOut;
                errors.push(format!("{a}: {e}"));
            }
        }
    }
    if errors.is_empty() {
        errors.push(format!("no connection within {}", human(timeout)));
    }
    Err((format!("cannot connect: {}", errors.join("; ")), timed_out))
}
