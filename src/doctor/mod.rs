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

pub(crate) mod tls;

use crate::discovery::network::fetch;
use crate::discovery::network::report::{Attempt, FetchReport};
use crate::hook::io;
use crate::hook::settings::{self, Settings};
use crate::hook::timefmt;
use crate::protocol::failure::{Failure, Reason};
use crate::protocol::federation::Federation;
use crate::protocol::metadata::{self, Gateway, Own, PrivateMetadata, PublicMetadata};
use crate::protocol::names;
use crate::protocol::secret::KEYPAIR_SECRET;
use reqwest::Url;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) const USAGE: &str = "usage: istio-federation-hook doctor --endpoint URL [--ca FILE] [--insecure]
         [--trust-domain TD] [--key PRIV_PEM --uuid OWN_UUID] [--probe-gateways]
         [--timeout DURATION] [--output text|json]

Checks one peer's metadata endpoint the way the discovery hook fetches it, step by step:
url, dns, tcp, tls, public, private, gateways. Each check is ok, warn, fail or skip, with a
hint for what to fix.

  --endpoint URL       the peer's metadataEndpoint (spec.metadataEndpoint), https://…/metadata/
  --ca FILE            PEM CA certificate(s) for the endpoint, added to the system trust store
                       as spec.metadata.clusterCA is
  --insecure           do not verify the endpoint's certificate (spec.metadata.enableInsecureConnection;
                       ignored with --ca, as in the hook)
  --trust-domain TD    the peer's trust domain (spec.trustDomain): private metadata is validated
                       against it; needed with --key
  --key PRIV_PEM       our request-signing key (priv.pem of Secret d8-istio/d8-remote-authn-keypair)
  --uuid OWN_UUID      our cluster UUID (the token's subject); --key and --uuid go together
  --probe-gateways     TCP-connect to every ingress gateway the peer advertises
  --timeout DURATION   bound of each step, like FETCH_TIMEOUT (default 10s)
  --output text|json   default text

Exit 0 when no check failed, 1 when one did, 2 on usage errors. Tests only:
ISTIO_FEDERATION_HOOK_TEST_GATEWAY_MAP=\"ADDR:PORT=127.0.0.1:PORT,…\" makes --probe-gateways connect to
the given loopback listener instead of an advertised gateway (and to no unlisted one).";

/// Test-only override of the gateways `--probe-gateways` connects to (docs/operating.md):
/// `ADVERTISED:PORT=LOOPBACK:PORT,…`. Unlisted gateways are then not probed at all, and every
/// target must be a loopback address.
pub(crate) const GATEWAY_MAP_ENV: &str = "ISTIO_FEDERATION_HOOK_TEST_GATEWAY_MAP";

/// A root or certificate expiring within this many seconds is a warning.
const EXPIRY_WARNING: i64 = 30 * 24 * 3600;
/// At most this many gateways are probed.
const MAX_GATEWAYS: usize = 64;
/// Upper bound of `--timeout` (a step longer than this is a mistake).
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            hint: None,
        }
    }

    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Ok, detail)
    }

    fn skip(name: &'static str, detail: impl Into<String>) -> Check {
        Check::new(name, Status::Skip, detail)
    }

    fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check::new(name, Status::Fail, detail).hint(hint)
    }

    fn warn(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check::new(name, Status::Warn, detail).hint(hint)
    }

    fn hint(mut self, hint: impl Into<String>) -> Check {
        self.hint = Some(hint.into());
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub endpoint: String,
    pub ok: bool,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

/// Parsed command line.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub endpoint: String,
    /// PEM text of `--ca`.
    pub ca: Option<String>,
    pub insecure: bool,
    pub trust_domain: Option<String>,
    /// PEM text of `--key`.
    pub key: Option<String>,
    pub uuid: Option<String>,
    pub probe_gateways: bool,
    pub timeout: Duration,
    output: Output,
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

fn read_file(flag: &str, path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{flag} {path}: {e}"))
}

/// `Ok(None)` for `--help`.
pub(crate) fn parse_args(args: &[&str]) -> Result<Option<Options>, String> {
    let mut endpoint = None;
    let mut ca = None;
    let mut insecure = false;
    let mut trust_domain = None;
    let mut key = None;
    let mut uuid = None;
    let mut probe_gateways = false;
    let mut timeout = Duration::from_secs(10);
    let mut output = Output::Text;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (*arg, None),
        };
        let mut value = || -> Result<&str, String> {
            match inline {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .copied()
                    .ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag {
            "--help" | "-h" => return Ok(None),
            "--endpoint" => endpoint = Some(value()?.to_string()),
            "--ca" => {
                let path = value()?;
                let pem = read_file("--ca", path)?;
                fetch::ca_certificates(&pem)
                    .map_err(|e| format!("--ca {path}: not a PEM CA certificate: {e}"))?;
                ca = Some(pem);
            }
            "--insecure" => insecure = true,
            "--trust-domain" => {
                let td = value()?;
                if !names::is_trust_domain(td) {
                    return Err(format!(
                        "--trust-domain {td:?} is not a trust domain (^[0-9a-zA-Z._-]+$)"
                    ));
                }
                trust_domain = Some(td.to_string());
            }
            "--key" => key = Some(read_file("--key", value()?)?),
            "--uuid" => {
                let u = value()?;
                if !metadata::is_sane_uuid(u) {
                    return Err(format!(
                        "--uuid {u:?}: expected at most 128 letters, digits, '-', '_' or '.'"
                    ));
                }
                uuid = Some(u.to_string());
            }
            "--probe-gateways" => probe_gateways = true,
            "--timeout" => {
                let v = value()?;
                timeout = settings::parse_duration(v)
                    .filter(|d| !d.is_zero() && *d <= MAX_TIMEOUT)
                    .ok_or_else(|| {
                        format!("--timeout: expected a duration between 1ms and 10m like 10s or 500ms, got {v:?}")
                    })?;
            }
            "--output" | "-o" => {
                output = match value()? {
                    "text" => Output::Text,
                    "json" => Output::Json,
                    v => return Err(format!("--output: expected text or json, got {v:?}")),
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let endpoint = endpoint.ok_or("--endpoint URL is required")?;
    match (&key, &uuid) {
        (Some(_), None) => return Err("--key needs --uuid (our cluster UUID, the token's subject)".into()),
        (None, Some(_)) => return Err("--uuid needs --key (the priv.pem that signs the request)".into()),
        (Some(_), Some(_)) if trust_domain.is_none() => {
            return Err("--key needs --trust-domain (private metadata is validated against the peer's trust domain)".into())
        }
        _ => {}
    }
    Ok(Some(Options {
        endpoint,
        ca,
        insecure,
        trust_domain,
        key,
        uuid,
        probe_gateways,
        timeout,
        output,
    }))
}

/// The IstioFederation the hook would read for these options.
fn federation(opts: &Options) -> Result<Federation, String> {
    let mut md = serde_json::Map::new();
    if let Some(ca) = &opts.ca {
        md.insert("clusterCA".into(), ca.clone().into());
    }
    if opts.insecure {
        md.insert("enableInsecureConnection".into(), true.into());
    }
    let obj = serde_json::json!({
        "apiVersion": crate::protocol::federation::API_VERSION,
        "kind": crate::protocol::federation::KIND,
        "metadata": {"name": "doctor"},
        "spec": {
            "trustDomain": opts.trust_domain.as_deref().unwrap_or("peer.invalid"),
            "metadataEndpoint": opts.endpoint,
            "metadata": md,
        },
    });
    Federation::parse(&obj).map_err(|e| {
        e.replace(
            "IstioFederation doctor: spec.metadataEndpoint",
            "--endpoint",
        )
    })
}

/// The settings of the fetch: the hook's, with each request bounded by `--timeout`.
fn fetch_settings(timeout: Duration) -> Result<Settings, String> {
    let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
    // Both requests fit in the deadline with room to spare, so each ends on its own timeout.
    let deadline = (timeout * 2 + Duration::from_millis(500)).min(Duration::from_secs(3600));
    let (t, d) = (ms(timeout), ms(deadline));
    Settings::load(None, &|name: &str| match name {
        "ISTIO_FEDERATION_ENABLED" => Some("true".into()),
        "FETCH_TIMEOUT" => Some(t.clone()),
        "FETCH_DEADLINE" => Some(d.clone()),
        "FETCH_CONCURRENCY" => Some("1".into()),
        "FETCH_MAX_BYTES" | "FEDERATION_NAMESPACE" => io::env(name),
        _ => None,
    })
    .map_err(|e| e.to_string())
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

/// Why the walk ended early: a step failed (every later step is then skipped, since each
/// needs the one before it), or the invocation itself is unusable.
enum Stop {
    Failed { check: Check, why: &'static str },
    Invocation(String),
}

impl Stop {
    fn failed(check: Check, why: &'static str) -> Stop {
        Stop::Failed { check, why }
    }
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
    checks.push(public_check(opts, &report, now));
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

const ENDPOINT_HINT: &str = "--endpoint is the peer's spec.metadataEndpoint: an https:// URL such as https://istio-metadata.peer.example/metadata/";

/// url: the endpoint as the IstioFederation parser reads it, and the host and port of its
/// public URL, which the next steps connect to.
fn url_step(opts: &Options, checks: &mut Vec<Check>) -> Result<(Federation, String, u16), Stop> {
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
fn dns_step(
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
fn tcp_step(
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

/// The first half of tls: a handshake of our own to see what the port presents. Its check is
/// pushed only when no handshake completes; otherwise [`tls_check`] gives the verdict once
/// the hook's client has tried.
fn handshake_step(addr: SocketAddr, host: &str, timeout: Duration) -> Result<tls::Presented, Stop> {
    let sni = host.trim_matches(['[', ']']).to_string();
    tls::inspect(addr, &sni, timeout).map_err(|e| {
        let (detail, hint) = match e {
            tls::HandshakeError::TimedOut => (
                format!("no TLS handshake with {addr} within {}", human(timeout)),
                "the port accepts connections but does not complete a TLS handshake: is it an HTTPS port, or is a proxy or load balancer holding the connection?".to_string(),
            ),
            tls::HandshakeError::Failed(m) => (
                format!("TLS handshake with {addr} failed: {m}"),
                "the port does not speak TLS as expected: check that --endpoint names the HTTPS port of the peer's metadata endpoint".to_string(),
            ),
        };
        Stop::failed(Check::fail("tls", detail, hint), "tls failed")
    })
}

/// public and private: the discovery hook's own requests for this one federation, signed
/// with `--key` as `--uuid` when given.
fn hook_fetch(opts: &Options, settings: &Settings, fed: &Federation, now: i64) -> FetchReport {
    let own_uuid = opts.uuid.clone().unwrap_or_default();
    let own = Own {
        cluster_uuid: &own_uuid,
        root_fingerprints: &[],
        now,
    };
    fetch::fetch_all_with(
        settings,
        std::slice::from_ref(fed),
        opts.key.as_deref(),
        &own,
        now,
        true,
    )
    .remove(&fed.name)
    .unwrap_or_default()
}

/// gateways: probed only on request, and only those of private metadata that validated.
fn gateways_step(opts: &Options, report: &FetchReport) -> Check {
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

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Resolves `host:port` within `timeout` (the system resolver cannot be interrupted, so it
/// runs on its own thread and is abandoned if late).
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_matches(['[', ']']);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
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
fn connect_any(
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

fn tls_check(
    opts: &Options,
    host: &str,
    presented: &tls::Presented,
    refused: Option<&Failure>,
    now: i64,
) -> Check {
    let leaf = presented.leaf.as_ref();
    let summary = match leaf {
        Some(l) => format!(
            "{}, {} certificate(s) presented; leaf {} ({}), issued by {}, valid until {}",
            presented.protocol,
            presented.chain_len,
            if l.subject.is_empty() {
                "(no subject)"
            } else {
                &l.subject
            },
            l.names(),
            l.issuer,
            timefmt::date(l.not_after)
        ),
        None => format!(
            "{}, {} certificate(s) presented; the leaf cannot be parsed",
            presented.protocol, presented.chain_len
        ),
    };
    if let Some(f) = refused {
        let hint = match leaf {
            Some(l) if l.not_after < now => format!(
                "the peer's endpoint certificate expired on {}: the peer must renew it",
                timefmt::date(l.not_after)
            ),
            Some(l) if l.not_before > now => format!(
                "the peer's endpoint certificate is not valid before {}: check the clocks of both sides",
                timefmt::date(l.not_before)
            ),
            Some(l) if !l.covers(host) => format!(
                "the certificate names {}, not {host}: use a host in --endpoint that the certificate covers, or have the peer add {host} to it",
                l.names()
            ),
            _ if opts.ca.is_some() => format!(
                "the certificate is issued by {}, which neither --ca nor the system trust store knows: pass the CA that issued the peer's endpoint certificate (as spec.metadata.clusterCA)",
                leaf.map_or("an unknown CA", |l| l.issuer.as_str())
            ),
            _ => format!(
                "the certificate is issued by {}, which the system trust store does not know: pass that CA with --ca FILE (spec.metadata.clusterCA of the IstioFederation)",
                leaf.map_or("an unknown CA", |l| l.issuer.as_str())
            ),
        };
        return Check::fail("tls", format!("{}; {summary}", f.message), hint);
    }
    if opts.insecure && opts.ca.is_none() {
        return Check::warn(
            "tls",
            format!("not verified (--insecure); {summary}"),
            "without verification anyone on the path can impersonate the peer: prefer --ca (spec.metadata.clusterCA) to enableInsecureConnection",
        );
    }
    if let Some(l) = leaf.filter(|l| l.not_after - now < EXPIRY_WARNING) {
        return Check::warn(
            "tls",
            format!("verified; {summary}"),
            format!(
                "the peer's endpoint certificate expires on {}: the peer must renew it before then",
                timefmt::date(l.not_after)
            ),
        );
    }
    Check::ok("tls", format!("verified; {summary}"))
}

/// The hint for a failed request of either kind, by its reason and what the peer said.
fn request_hint(f: &Failure, noun: &str, timeout: Duration) -> String {
    let status = f
        .message
        .strip_prefix("HTTP status ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse::<u16>().ok());
    match (f.reason, status) {
        (Reason::NonOkResponse, Some(404)) => format!(
            "the endpoint serves no {noun} there: check the path of --endpoint (Deckhouse's ends in /metadata/)"
        ),
        (Reason::NonOkResponse, Some(s)) if s >= 500 => format!(
            "the peer's metadata server fails (HTTP {s}): check the peer's metadata exporter (or `serve`) and its logs"
        ),
        (Reason::NonOkResponse, Some(s)) => format!(
            "the peer refused the request (HTTP {s}): check whether a proxy or an authentication layer sits in front of its metadata endpoint"
        ),
        (Reason::InvalidJson, _) => (
            "the endpoint answered, but not with JSON: is --endpoint the peer's metadata endpoint and not a web page, login portal or default backend?"
        ).into(),
        (Reason::ResponseTooLarge, _) => "the answer exceeds FETCH_MAX_BYTES: check --endpoint, or raise FETCH_MAX_BYTES if the peer really publishes that much".into(),
        (Reason::FetchFailed, _) if f.message.contains("redirect") => "follow the redirect yourself: set spec.metadataEndpoint (and --endpoint) to the final location".into(),
        (Reason::FetchFailed, _) if f.message.contains("within FETCH_TIMEOUT") || f.message.contains("deadline") => format!(
            "the peer accepted the request but sent no complete answer within {}: it is overloaded or something in between holds the request",
            human(timeout)
        ),
        (Reason::FetchFailed, _) => "the request failed on the way: check proxies (HTTPS_PROXY / NO_PROXY) and the peer's metadata endpoint".into(),
        (Reason::InvalidPublicMetadata, _) if f.message.contains("own UUID") => "--endpoint points at this cluster itself: use the peer's endpoint".into(),
        (Reason::InvalidPublicMetadata, _) => "the peer publishes invalid public metadata: its export side (Deckhouse's exporter or `export`) must be fixed".into(),
        (Reason::CertificateRejected, _) => "none of the peer's Istio roots can be trusted: the peer must publish a valid CA root (rootCA)".into(),
        (Reason::InvalidPrivateMetadata, _) => "the peer publishes invalid private metadata: its export side must be fixed".into(),
        _ => format!("the {noun} request failed: {}", f.reason),
    }
}

fn public_check(opts: &Options, report: &FetchReport, now: i64) -> Check {
    let Some(attempt) = &report.public else {
        return Check::skip("public", "not requested");
    };
    let p: &PublicMetadata = match &attempt.result {
        Ok(p) => p,
        Err(f) => {
            return Check::fail(
                "public",
                failure_detail(&attempt.url, f),
                request_hint(f, "public metadata", opts.timeout),
            )
        }
    };
    let roots: Vec<String> = p
        .roots
        .iter()
        .map(|r| format!("{} (until {})", r.subject, timefmt::date(r.not_after)))
        .collect();
    let detail = format!(
        "clusterUUID {}, authnKeyPub Ed25519, {} trusted root(s): {}{}",
        p.cluster_uuid,
        p.roots.len(),
        roots.join("; "),
        if p.rejected.is_empty() {
            String::new()
        } else {
            format!("; ignored: {}", p.rejected_summary())
        }
    );
    let expiring: Vec<String> = p
        .roots
        .iter()
        .filter(|r| r.not_after - now < EXPIRY_WARNING)
        .map(|r| format!("{} expires on {}", r.subject, timefmt::date(r.not_after)))
        .collect();
    if !expiring.is_empty() {
        return Check::warn(
            "public",
            detail,
            format!(
                "{}: the peer must rotate its Istio root, publishing old and new roots side by side until workloads have new certificates",
                expiring.join("; ")
            ),
        );
    }
    if !p.rejected.is_empty() {
        return Check::warn(
            "public",
            detail,
            "some of the peer's roots are ignored: the peer should stop publishing them",
        );
    }
    Check::ok("public", detail)
}

fn private_check(opts: &Options, settings: &Settings, report: &FetchReport) -> Check {
    if opts.key.is_none() {
        return Check::skip(
            "private",
            "not requested: pass --key, --uuid and --trust-domain to make the signed request",
        );
    }
    let attempt: &Attempt<PrivateMetadata> = match (&report.private, &report.private_skipped) {
        (Some(a), _) => a,
        (None, Some(f)) if f.reason == Reason::AwaitingPublic => {
            return Check::skip("private", "public metadata failed, so the token has no audience")
        }
        (None, Some(f)) => {
            return Check::fail(
                "private",
                format!("{}: {}", f.reason, f.message),
                format!(
                    "--key must be the Ed25519 priv.pem of Secret {}/{KEYPAIR_SECRET} (PKCS#8 PEM), the key whose public half our public metadata publishes",
                    settings.federation_namespace
                ),
            )
        }
        (None, None) => return Check::skip("private", "not requested"),
    };
    let td = opts.trust_domain.as_deref().unwrap_or("");
    let uuid = opts.uuid.as_deref().unwrap_or("");
    let p = match &attempt.result {
        Ok(p) => p,
        Err(f) => {
            let detail = failure_detail(&attempt.url, f);
            let said = f.message.as_str();
            let hint = if f.reason == Reason::NonOkResponse && said.starts_with("HTTP status 401") {
                if said.contains("unknown source cluster") {
                    format!("the peer has not fetched our public metadata yet: check it has an IstioFederation for us (our clusterUUID {uuid}) and can reach our metadata endpoint")
                } else if said.contains("cannot verify") {
                    format!("the peer knows another public key for {uuid}: --key is not the key our public metadata publishes, or the peer's copy of our public metadata is stale")
                } else if said.contains("wrong destination cluster") {
                    "the peer's clusterUUID is not the one its public metadata publishes: public and private metadata come from different clusters behind this endpoint".into()
                } else if said.contains("expired") {
                    "the token expired on arrival: check the clocks of both sides (tokens live 60 seconds)".into()
                } else {
                    "the peer refused our token: check that it federates with us (an IstioFederation for our trust domain) and trusts our current key".into()
                }
            } else if f.reason == Reason::InvalidPrivateMetadata {
                format!("the peer's private metadata fails validation against trust domain {td}: check --trust-domain, else its export side must be fixed")
            } else {
                request_hint(f, "private metadata", opts.timeout)
            };
            return Check::fail("private", detail, hint);
        }
    };
    let gws: Vec<String> = p.ingress_gateways.iter().map(gateway_key).collect();
    let detail = format!(
        "{} ingress gateway(s){}{}, {} service(s) in {td}",
        gws.len(),
        if gws.is_empty() { "" } else { ": " },
        gws.join(", "),
        p.service_count()
    );
    if p.ingress_gateways.is_empty() {
        return Check::warn(
            "private",
            detail,
            "the peer advertises no ingress gateway, so none of its services can be reached: its cross-cluster gateway must be published",
        );
    }
    if !p.dropped.is_empty() {
        let listed: Vec<&str> = p
            .dropped
            .iter()
            .take(5)
            .map(|d| d.message.as_str())
            .collect();
        return Check::warn(
            "private",
            format!("{detail}; dropped {}: {}", p.dropped.len(), listed.join("; ")),
            format!("the peer exports items the hook does not import (outside trust domain {td} or invalid): they are skipped, the rest is imported"),
        );
    }
    Check::ok("private", detail)
}

/// `Reason: message`, naming the URL when the message does not.
fn failure_detail(url: &str, f: &Failure) -> String {
    if f.message.contains(url) {
        format!("{}: {}", f.reason, f.message)
    } else {
        format!("{}: {} ({url})", f.reason, f.message)
    }
}

/// `1.2.3.4:15443`, `[2001:db8::1]:15443`, `gw.example:15443`.
fn gateway_key(g: &Gateway) -> String {
    if g.address.contains(':') {
        format!("[{}]:{}", g.address, g.port)
    } else {
        format!("{}:{}", g.address, g.port)
    }
}

/// The test-only gateway map: advertised `ADDR:PORT` → loopback target.
fn gateway_map() -> Result<Option<BTreeMap<String, SocketAddr>>, String> {
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

fn gateways_check(gateways: &[Gateway], timeout: Duration) -> Check {
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

fn probe_one(
    key: &str,
    target: Option<SocketAddr>,
    address: &str,
    port: u16,
    timeout: Duration,
) -> Result<String, String> {
    let started = Instant::now();
    let addrs = match target {
        Some(t) => vec![t],
        None => resolve(address, port, timeout).map_err(|e| format!("{key}: {e}"))?,
    };
    let left = timeout.saturating_sub(started.elapsed());
    let via = target.map(|t| format!(" via {t}")).unwrap_or_default();
    match connect_any(&addrs, left) {
        Ok((_, took)) => Ok(format!("{key}{via} connected in {} ms", took.as_millis())),
        Err((detail, _)) => Err(format!("{key}{via}: {detail}")),
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
    use super::*;

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
