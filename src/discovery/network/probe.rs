//! The data-plane probe (setting `DATAPLANE_PROBE`): does traffic actually reach each peer
//! through the mesh? Deckhouse's alliance-healthcheck asks the same question, and a Deckhouse
//! peer federated with us expects us to ask it the same way (docs/operating.md).
//!
//! Each run with the probe on sends one `GET http://<target>:80/healthz` per federation whose
//! private metadata names a health-check service. The hook's pod has an Istio sidecar, so the
//! request travels sidecar → our ServiceEntry for the target → the peer's ingress gateway →
//! the peer's health-check workload: a 200 proves DNS capture, the ServiceEntry, mutual TLS
//! with the peer's root and the peer's gateway all work. Requests carry Deckhouse's
//! `User-Agent: alliance-healthcheck/1.0` and `X-alliance-healthcheck-from: <our cluster UUID>`
//! so a Deckhouse peer logs them as a remote cluster's probe.
//!
//! The probe is visibility only: its result sets the `DataplaneConnectionReady` condition and
//! the `d8_istio_alliance_dataplane_health_check` gauge, and never removes anything. Probes run
//! concurrently, each bounded by Deckhouse's 5 s request timeout and all by what is left of
//! `FETCH_DEADLINE`. `HTTP_PROXY`/`NO_PROXY` are honoured as by the metadata fetches (the
//! tests stand a loopback proxy in for the sidecar).

use crate::protocol::metadata::PrivateMetadata;
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Deckhouse's probe User-Agent; a Deckhouse peer recognises probes by it.
pub(crate) const USER_AGENT: &str = "alliance-healthcheck/1.0";
/// The header naming the probing cluster.
pub(crate) const FROM_HEADER: &str = "X-alliance-healthcheck-from";
/// Deckhouse's per-request timeout.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this much of a healthz body is read (Deckhouse reads 4 KiB).
const BODY_LIMIT: u64 = 4096;

/// The peer's health-check host in its private metadata: Deckhouse's newest naming
/// (`alliance-healthcheck-<uuid>.d8-istio.svc.<domain>`), else the older
/// `alliance-healthcheck.d8-istio.svc.<domain>`. The first match in document order wins, as
/// in Deckhouse.
pub(crate) fn target(private: &PrivateMetadata) -> Option<&str> {
    let hosts = || private.public_services.iter().map(|s| s.hostname.as_str());
    hosts()
        .find(|h| h.starts_with("alliance-healthcheck-") && h.contains(".d8-istio.svc."))
        .or_else(|| hosts().find(|h| h.starts_with("alliance-healthcheck.d8-istio.svc.")))
}

/// The URL probed for a target host.
pub(crate) fn url(target: &str) -> String {
    format!("http://{target}:80/healthz")
}

pub use crate::discovery::network::report::ProbeResult;

/// Probes every `(federation, url)` concurrently and returns each federation's result. Returns
/// within `min(REQUEST_TIMEOUT, deadline)` plus thread start-up; a probe still running then is
/// reported as timed out.
pub fn probe_all(
    jobs: &[(String, String)],
    own_uuid: &str,
    deadline: Instant,
) -> BTreeMap<String, ProbeResult> {
    let mut out = BTreeMap::new();
    let left = deadline.saturating_duration_since(Instant::now());
    let timeout = left.min(REQUEST_TIMEOUT);
    if timeout.is_zero() {
        for (name, _) in jobs {
            out.insert(name.clone(), timed_out());
        }
        return out;
    }
    // reqwest is built with `rustls-no-provider`: a client needs the process-wide provider even
    // for plain HTTP. Installing twice is harmless (the fetch phase may have done it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = match reqwest::blocking::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            let why = format!("cannot set up the HTTP client: {e}");
            for (name, _) in jobs {
                out.insert(name.clone(), ProbeResult::Failed(why.clone()));
            }
            return out;
        }
    };
    let (tx, rx) = mpsc::channel();
    for (name, url) in jobs {
        let (tx, client, name, url, own) = (
            tx.clone(),
            client.clone(),
            name.clone(),
            url.clone(),
            own_uuid.to_string(),
        );
        let spawned = std::thread::Builder::new()
            .name("probe".into())
            .spawn(move || {
                let r = probe_one(&client, &url, &own);
                let _ = tx.send((name, r));
            });
        if let Err(e) = spawned {
            log::warn!(target: "probe", "cannot start a probe thread: {e}");
        }
    }
    drop(tx);
    let stop = Instant::now() + timeout + Duration::from_millis(250);
    while out.len() < jobs.len() {
        let wait = stop.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok((name, r)) => {
                out.insert(name, r);
            }
            Err(_) => break,
        }
    }
    for (name, _) in jobs {
        out.entry(name.clone()).or_insert_with(timed_out);
    }
    out
}

fn timed_out() -> ProbeResult {
    ProbeResult::Failed(format!(
        "request failed: no answer within {} s (or FETCH_DEADLINE)",
        REQUEST_TIMEOUT.as_secs()
    ))
}

/// The innermost cause of a failed request: hyper's and the OS's texts ("connection closed
/// before message completed", "Connection reset by peer"), which name no address or timing.
fn cause(e: &reqwest::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

fn probe_one(client: &reqwest::blocking::Client, url: &str, own_uuid: &str) -> ProbeResult {
    use std::io::Read as _;
    let resp = match client.get(url).header(FROM_HEADER, own_uuid).send() {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return timed_out(),
        Err(e) if e.is_connect() => {
            return ProbeResult::Failed("request failed: cannot connect".to_string())
        }
        Err(e) => return ProbeResult::Failed(format!("request failed: {}", cause(&e))),
    };
    let status = resp.status();
    // Drain (a bounded part of) the body so the connection ends cleanly.
    let mut sink = Vec::new();
    let _ = resp.take(BODY_LIMIT).read_to_end(&mut sink);
    if status == reqwest::StatusCode::OK {
        ProbeResult::Healthy
    } else {
        ProbeResult::Failed(format!("unexpected status code: {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::metadata::PublicService;

    fn private(hosts: &[&str]) -> PrivateMetadata {
        PrivateMetadata {
            public_services: hosts
                .iter()
                .map(|h| PublicService {
                    hostname: h.to_string(),
                    ports: vec![],
                })
                .collect(),
            ingress_gateways: vec![],
            dropped: vec![],
            carried_over: 0,
        }
    }

    #[test]
    fn target_prefers_the_newest_naming_in_document_order() {
        assert_eq!(target(&private(&["web.prod.svc.b.local"])), None);
        assert_eq!(
            target(&private(&[
                "alliance-healthcheck.d8-istio.svc.b.local",
                "alliance-healthcheck-uuid-b.d8-istio.svc.b.local",
                "alliance-healthcheck-other.d8-istio.svc.b.local",
            ])),
            Some("alliance-healthcheck-uuid-b.d8-istio.svc.b.local")
        );
        assert_eq!(
            target(&private(&["alliance-healthcheck.d8-istio.svc.b.local"])),
            Some("alliance-healthcheck.d8-istio.svc.b.local")
        );
        // Another namespace is not Deckhouse's health check.
        assert_eq!(
            target(&private(&["alliance-healthcheck-x.default.svc.b.local"])),
            None
        );
        assert_eq!(
            url("alliance-healthcheck-u.d8-istio.svc.b.local"),
            "http://alliance-healthcheck-u.d8-istio.svc.b.local:80/healthz"
        );
    }
}
