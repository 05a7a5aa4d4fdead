//! `istio-federation-hook doctor`: walks one peer's chain — url, dns, tcp, tls, public,
//! private, gateways — and says for each step what is wrong and what to fix (docs/operating.md).
//!
//! The metadata requests are the discovery hook's own: the endpoint is read by the
//! IstioFederation parser, the HTTPS client, its CA handling (`--ca` as `clusterCA`,
//! `--insecure` as `enableInsecureConnection`), the signed token and every validation rule
//! are those of [`crate::discovery::network::fetch`] and [`crate::protocol::metadata`]. What doctor
//! adds is only what a run never needs: name resolution and a TCP connect on their own, a look
//! at the presented certificate ([`tls`]) to explain a refused one, the start of a refused
//! answer's body, and optionally a TCP connect to each advertised gateway. Every step is
//! bounded by `--timeout`.
//!
//! One module per group of steps, in the walk's order: [`connect`] (url, dns, tcp),
//! [`handshake`] (tls, looking with [`tls`]), [`metadata`] (public, private) and [`gateways`];
//! each returns a [`check::Check`] and needs no other step. [`options`] reads the command line
//! as the hook would read an IstioFederation; [`walk`] below runs them in order.

mod check;
mod connect;
mod gateways;
mod handshake;
mod metadata;
mod options;
pub(crate) mod tls;

use crate::hook::io;
use crate::hook::settings::Settings;
use crate::protocol::failure::Reason;
use check::{Check, Status, Stop};
use connect::{dns_step, tcp_step, url_step};
use gateways::gateways_step;
use handshake::{handshake_step, tls_check};
use metadata::{hook_fetch, private_check, public_check};
use options::{fetch_settings, parse_args, Options, Output};
use serde::Serialize;

pub(crate) const USAGE: &str = "usage: istio-federation-hook doctor --endpoint URL [--ca FILE] [--insecure]
         [--trust-domain TD] [--key PRIV_PEM --uuid OWN_UUID] [--pinned-uuid PEER_UUID]
         [--probe-gateways] [--timeout DURATION] [--output text|json]

Checks one peer's metadata endpoint the way the discovery hook fetches it, step by step:
url, dns, tcp, tls, public, private, gateways. Each check is ok, warn, fail or skip, with a
hint for what to fix.

  --endpoint URL       the peer's metadataEndpoint (spec.metadataEndpoint), https://…/metadata/
  --ca FILE            PEM CA certificate(s) for the endpoint, added to the system trust store
                       as spec.metadata.clusterCA is
  --insecure           do not verify the endpoint's certificate (spec.metadata.enableInsecureConnection;
                       ignored with --ca, as in the hook)
  --trust-domain TD    the peer's trust domain (spec.trustDomain): private metadata's services are
                       checked against it (without it, the signed request still runs)
  --key PRIV_PEM       our request-signing key (priv.pem of Secret d8-istio/d8-remote-authn-keypair)
  --uuid OWN_UUID      our cluster UUID (the token's subject); --key and --uuid go together
  --pinned-uuid UUID   the peer's clusterUUID as the IstioFederation pins it
                       (status.metadataCache.public.clusterUUID): public fails on another UUID,
                       and no token is sent to it, as in the hook
  --probe-gateways     TCP-connect to every ingress gateway the peer advertises
  --timeout DURATION   bound of each step, like FETCH_TIMEOUT (default 10s)
  --output text|json   default text

Exit 0 when no check failed, 1 when one did, 2 on usage errors. Tests only:
ISTIO_FEDERATION_HOOK_TEST_GATEWAY_MAP=\"ADDR:PORT=127.0.0.1:PORT,…\" makes --probe-gateways connect to
the given loopback listener instead of an advertised gateway (and to no unlisted one).";

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub endpoint: String,
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// The `doctor` subcommand: exit code 0 (nothing failed), 1 (a check failed), 2 (usage).
pub fn cli(args: &[&str]) -> u8 {
    let opts = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            let synopsis: Vec<&str> = USAGE.lines().take(3).collect();
            eprintln!(
                "doctor: {e}\n{}\n(doctor --help for details)",
                synopsis.join("\n")
            );
            return 2;
        }
    };
    // The fetch code logs what a run would log; doctor reports it in its checks instead.
    if io::env("RUST_LOG").is_none() && io::env("LOG_LEVEL").is_none() {
        log::set_max_level(log::LevelFilter::Off);
    }
    let report = match diagnose(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("doctor: {e}");
            return 2;
        }
    };
    let text = match opts.output {
        Output::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
        Output::Text => render_text(&report),
    };
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    if report.ok {
        0
    } else {
        1
    }
}

/// Runs every check. `Err` only for a problem of the invocation (a setting doctor shares with
/// the hook is malformed).
pub(crate) fn diagnose(opts: &Options) -> Result<Report, String> {
    let settings = fetch_settings(opts.timeout)?;
    let mut checks = Vec::with_capacity(7);
    match walk(opts, &settings, &mut checks) {
        Ok(()) => {}
        Err(Stop::Failed { check, why }) => {
            checks.push(check);
            skip_rest(&mut checks, why);
        }
        Err(Stop::Invocation(e)) => return Err(e),
    }
    Ok(Report {
        endpoint: opts.endpoint.clone(),
        ok: checks.iter().all(|c| c.status != Status::Fail),
        checks,
    })
}

/// The steps in the order each depends on the last — url, dns, tcp, tls, then the hook's own
/// requests (public, private) and the gateways they name — each pushing its check.
fn walk(opts: &Options, settings: &Settings, checks: &mut Vec<Check>) -> Result<(), Stop> {
    let (fed, host, port) = url_step(opts, checks)?;
    let addrs = dns_step(&host, port, opts.timeout, checks)?;
    let addr = tcp_step(&addrs, port, opts.timeout, checks)?;
    // tls: look at what is presented first; the verdict is the hook client's, below.
    let presented = handshake_step(addr, &host, opts.timeout)?;

    let now = io::wall_clock().map_err(Stop::Invocation)?;
    let report = hook_fetch(opts, settings, &fed, now);
    let public_tls_failure = report
        .public
        .as_ref()
        .and_then(|a| a.result.as_ref().err())
        .filter(|f| f.reason == Reason::TlsError);
    let tls = tls_check(opts, &host, &presented, public_tls_failure, now);
    if public_tls_failure.is_some() {
        return Err(Stop::failed(tls, "tls failed"));
    }
    checks.push(tls);
    checks.push(public_check(opts, &fed, &report, now));
    checks.push(private_check(opts, settings, &report));
    checks.push(gateways_step(opts, &report));
    Ok(())
}

/// Every check not yet made, skipped for `why`: the report always names all seven.
fn skip_rest(checks: &mut Vec<Check>, why: &str) {
    for name in ["url", "dns", "tcp", "tls", "public", "private", "gateways"] {
        if !checks.iter().any(|c| c.name == name) {
            checks.push(Check::skip(name, why));
        }
    }
}

/// One line per check with a mark, hints indented below, and a verdict.
pub(crate) fn render_text(r: &Report) -> String {
    let mut out = format!("doctor {}\n", r.endpoint);
    for c in &r.checks {
        let mark = match c.status {
            Status::Ok => "[ ok ]",
            Status::Warn => "[WARN]",
            Status::Fail => "[FAIL]",
            Status::Skip => "[skip]",
        };
        out.push_str(&format!("{mark} {:<10}{}\n", c.name, c.detail));
        if let Some(h) = &c.hint {
            out.push_str(&format!("{:17}hint: {h}\n", ""));
        }
    }
    let count = |s: Status| r.checks.iter().filter(|c| c.status == s).count();
    let (failed, warned) = (count(Status::Fail), count(Status::Warn));
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    out.push_str(&match (failed, warned) {
        (0, 0) => "Nothing failed.\n".to_string(),
        (0, w) => format!("Nothing failed; {}.\n", plural(w, "warning")),
        (f, 0) => format!("{} failed.\n", plural(f, "check")),
        (f, w) => format!("{} failed; {}.\n", plural(f, "check"), plural(w, "warning")),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::gateways::gateway_key;
    use super::metadata::request_hint;
    use super::*;
    use crate::discovery::network::report::FetchReport;
    use crate::protocol::failure::Failure;
    use crate::protocol::metadata::Gateway;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn args(a: &[&str]) -> Result<Option<Options>, String> {
        parse_args(a)
    }

    #[test]
    fn usage_rules() {
        assert!(args(&[]).unwrap_err().contains("--endpoint"));
        assert!(args(&["--endpoint", "https://h/", "--timeout", "0s"]).is_err());
        assert!(args(&["--endpoint", "https://h/", "--timeout", "11m"]).is_err());
        assert!(args(&["--endpoint", "https://h/", "--output", "yaml"]).is_err());
        assert!(args(&["--endpoint", "https://h/", "--uuid", "u"]).is_err());
        assert!(args(&["--endpoint", "https://h/", "--bogus"]).is_err());
        assert!(args(&["--endpoint"]).is_err());
        assert!(args(&["--help"]).unwrap().is_none());
        let o = args(&["--endpoint=https://h/", "--timeout=250ms", "-o", "json"])
            .unwrap()
            .unwrap();
        assert_eq!(o.timeout, Duration::from_millis(250));
        assert_eq!(o.output, Output::Json);
    }

    #[test]
    fn bad_endpoints_fail_the_url_check_and_skip_the_rest() {
        for ep in ["http://h/metadata/", "https://", "ftp://x"] {
            let o = args(&["--endpoint", ep]).unwrap().unwrap();
            let r = diagnose(&o).unwrap();
            assert!(!r.ok);
            assert_eq!(r.checks[0].name, "url");
            assert_eq!(r.checks[0].status, Status::Fail, "{ep}");
            assert!(r.checks[0].hint.is_some());
            assert_eq!(r.checks.len(), 7);
            assert!(r.checks[1..].iter().all(|c| c.status == Status::Skip));
        }
    }

    #[test]
    fn a_stop_skips_every_later_step_in_order() {
        let mut checks = vec![Check::ok("url", "u"), Check::ok("dns", "d")];
        skip_rest(&mut checks, "tcp failed");
        let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            ["url", "dns", "tcp", "tls", "public", "private", "gateways"]
        );
        assert_eq!(checks[1].status, Status::Ok);
        assert!(checks[2..]
            .iter()
            .all(|c| c.status == Status::Skip && c.detail == "tcp failed"));
    }

    #[test]
    fn url_and_dns_steps_take_an_ip_host_as_it_is() {
        let o = args(&["--endpoint", "https://127.0.0.1:8443/metadata/"])
            .unwrap()
            .unwrap();
        let mut checks = Vec::new();
        let Ok((_, host, port)) = url_step(&o, &mut checks) else {
            panic!("url step failed: {checks:?}");
        };
        assert_eq!((host.as_str(), port), ("127.0.0.1", 8443));
        let Ok(addrs) = dns_step(&host, port, o.timeout, &mut checks) else {
            panic!("dns step failed");
        };
        assert_eq!(addrs, ["127.0.0.1:8443".parse::<SocketAddr>().unwrap()]);
        assert_eq!(checks.len(), 2);
        assert_eq!(
            checks[1].detail,
            "127.0.0.1 is an IP address: nothing to resolve"
        );
    }

    #[test]
    fn gateways_are_probed_only_on_request_and_with_private_metadata() {
        let mut o = args(&["--endpoint", "https://h/"]).unwrap().unwrap();
        let none = FetchReport::default();
        let c = gateways_step(&o, &none);
        assert_eq!(c.status, Status::Skip);
        assert!(c.detail.contains("--probe-gateways"));
        o.probe_gateways = true;
        let c = gateways_step(&o, &none);
        assert_eq!(
            (c.status, c.detail.as_str()),
            (Status::Skip, "no private metadata, so no gateways to probe")
        );
    }

    #[test]
    fn request_hints_follow_the_status() {
        let f = |m: &str| Failure::new(Reason::NonOkResponse, m);
        let t = Duration::from_secs(1);
        assert!(request_hint(
            &f("HTTP status 500 when fetching public metadata"),
            "public metadata",
            t
        )
        .contains("HTTP 500"));
        assert!(request_hint(
            &f("HTTP status 404 when fetching public metadata"),
            "public metadata",
            t
        )
        .contains("path"));
        assert_eq!(
            gateway_key(&Gateway {
                address: "2001:db8::1".into(),
                port: 15443
            }),
            "[2001:db8::1]:15443"
        );
    }
}
