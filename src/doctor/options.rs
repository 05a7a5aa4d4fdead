//! The command line, and what it means to the discovery hook: the IstioFederation the hook
//! would read for these flags and the fetch settings bounded by `--timeout`.

use crate::discovery::network::fetch;
use crate::hook::io;
use crate::hook::settings::{self, Settings};
use crate::protocol::federation::Federation;
use crate::protocol::metadata;
use crate::protocol::names;
use std::time::Duration;

/// Upper bound of `--timeout` (a step longer than this is a mistake).
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Output {
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
    /// `--pinned-uuid`: the peer UUID the federation is pinned to.
    pub pinned_uuid: Option<String>,
    pub probe_gateways: bool,
    pub timeout: Duration,
    pub(super) output: Output,
}

pub(super) fn read_file(flag: &str, path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{flag} {path}: {e}"))
}

/// A UUID argument, shaped as the hook accepts a cluster UUID.
fn sane_uuid(flag: &str, u: &str) -> Result<String, String> {
    if metadata::is_sane_uuid(u) {
        Ok(u.to_string())
    } else {
        Err(format!(
            "{flag} {u:?}: expected at most 128 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// `Ok(None)` for `--help`.
pub(crate) fn parse_args(args: &[&str]) -> Result<Option<Options>, String> {
    let mut endpoint = None;
    let mut ca = None;
    let mut insecure = false;
    let mut trust_domain = None;
    let mut key = None;
    let mut uuid = None;
    let mut pinned_uuid = None;
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
            "--uuid" => uuid = Some(sane_uuid("--uuid", value()?)?),
            "--pinned-uuid" => pinned_uuid = Some(sane_uuid("--pinned-uuid", value()?)?),
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
        (Some(_), None) => {
            return Err("--key needs --uuid (our cluster UUID, the token's subject)".into())
        }
        (None, Some(_)) => {
            return Err("--uuid needs --key (the priv.pem that signs the request)".into())
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
        pinned_uuid,
        probe_gateways,
        timeout,
        output,
    }))
}

/// The trust domain the federation carries without `--trust-domain`: a name no peer uses, so
/// every service reads as outside it, and the private check tells those apart (see
/// [`super::metadata::private_check`]).
pub(super) const UNCHECKED_TRUST_DOMAIN: &str = "trust-domain-not-given.invalid";

/// The IstioFederation the hook would read for these options.
pub(super) fn federation(opts: &Options) -> Result<Federation, String> {
    let mut md = serde_json::Map::new();
    if let Some(ca) = &opts.ca {
        md.insert("clusterCA".into(), ca.clone().into());
    }
    if opts.insecure {
        md.insert("enableInsecureConnection".into(), true.into());
    }
    let mut obj = serde_json::json!({
        "apiVersion": crate::protocol::federation::API_VERSION,
        "kind": crate::protocol::federation::KIND,
        "metadata": {"name": "doctor"},
        "spec": {
            "trustDomain": opts.trust_domain.as_deref().unwrap_or(UNCHECKED_TRUST_DOMAIN),
            "metadataEndpoint": opts.endpoint,
            "metadata": md,
        },
    });
    // The pin, as the hook reads it from the cached public metadata.
    if let Some(u) = &opts.pinned_uuid {
        obj["status"] = serde_json::json!({"metadataCache": {"public": {"clusterUUID": u}}});
    }
    Federation::parse(&obj).map_err(|e| {
        e.replace(
            "IstioFederation doctor: spec.metadataEndpoint",
            "--endpoint",
        )
    })
}

/// The settings of the fetch: the hook's, with each request bounded by `--timeout`.
pub(super) fn fetch_settings(timeout: Duration) -> Result<Settings, String> {
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
