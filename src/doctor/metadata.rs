//! The public and private steps: the discovery hook's own requests for this one federation
//! (signed with `--key` as `--uuid`), judged by the hook's own validation, with what an
//! operator should change when one is refused.

use super::check::{human, Check, EXPIRY_WARNING};
use super::gateways::gateway_key;
use super::options::{Options, UNCHECKED_TRUST_DOMAIN};
use crate::discovery::network::fetch;
use crate::discovery::network::report::{Attempt, FetchReport};
use crate::hook::settings::Settings;
use crate::hook::timefmt;
use crate::protocol::failure::{Failure, Reason};
use crate::protocol::federation::Federation;
use crate::protocol::metadata::{Own, PrivateMetadata, PublicMetadata};
use crate::protocol::secret::KEYPAIR_SECRET;
use std::time::Duration;

/// public and private: the discovery hook's own requests for this one federation, signed
/// with `--key` as `--uuid` when given.
pub(super) fn hook_fetch(
    opts: &Options,
    settings: &Settings,
    fed: &Federation,
    now: i64,
) -> FetchReport {
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

/// The hint for a failed request of either kind, by its reason and what the peer said.
pub(super) fn request_hint(f: &Failure, noun: &str, timeout: Duration) -> String {
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

pub(super) fn public_check(
    opts: &Options,
    fed: &Federation,
    report: &FetchReport,
    now: i64,
) -> Check {
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
    // The pin, judged as the hook judges it (docs/how-it-works.md, "Remote discovery").
    if let Some(f) = crate::protocol::claims::pin_problem(fed, p) {
        return Check::fail(
            "public",
            format!("{}: {}", f.reason, f.message),
            "the endpoint answers as another cluster: if the peer was reinstalled or restored, re-pin the IstioFederation; otherwise find out who answers there before trusting it",
        );
    }
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

pub(super) fn private_check(opts: &Options, settings: &Settings, report: &FetchReport) -> Check {
    if opts.key.is_none() {
        return Check::skip(
            "private",
            "not requested: pass --key and --uuid to make the signed request",
        );
    }
    let attempt: &Attempt<PrivateMetadata> = match (&report.private, &report.private_skipped) {
        (Some(a), _) => a,
        (None, Some(f)) if f.reason == Reason::AwaitingPublic => {
            return Check::skip(
                "private",
                "public metadata failed or names another clusterUUID than --pinned-uuid, so no token is sent",
            )
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
    if opts.trust_domain.is_none() {
        return unscoped_private(p);
    }
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

/// The private check without `--trust-domain`: the signed request and everything but the
/// services' scope are checked; the services all read as outside the placeholder trust domain
/// and are counted, not judged, and the check says what needed the trust domain.
fn unscoped_private(p: &PrivateMetadata) -> Check {
    let outside = format!("outside trust domain {UNCHECKED_TRUST_DOMAIN}");
    let (unscoped, dropped): (Vec<_>, Vec<_>) = p
        .dropped
        .iter()
        .partition(|d| d.message.ends_with(&outside));
    let gws: Vec<String> = p.ingress_gateways.iter().map(gateway_key).collect();
    let mut detail = format!(
        "signed request accepted; {} ingress gateway(s){}{}, {} service(s), not checked against a trust domain",
        gws.len(),
        if gws.is_empty() { "" } else { ": " },
        gws.join(", "),
        p.service_count() + unscoped.len()
    );
    if !dropped.is_empty() {
        let listed: Vec<&str> = dropped.iter().take(5).map(|d| d.message.as_str()).collect();
        detail.push_str(&format!(
            "; dropped {}: {}",
            dropped.len(),
            listed.join("; ")
        ));
    }
    Check::warn(
        "private",
        detail,
        "which services the hook would import needs the peer's trust domain: pass --trust-domain (its spec.trustDomain); the token, the peer's answer and its gateways needed none",
    )
}

/// `Reason: message`, naming the URL when the message does not.
pub(super) fn failure_detail(url: &str, f: &Failure) -> String {
    if f.message.contains(url) {
        format!("{}: {}", f.reason, f.message)
    } else {
        format!("{}: {} ({url})", f.reason, f.message)
    }
}
