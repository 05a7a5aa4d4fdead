//! The tls step: first a handshake of our own ([`super::tls`]) to see what the port presents,
//! then, once the hook's client has tried, the verdict — why a certificate was refused, or
//! how soon the presented chain expires.

use super::check::{human, Check, Stop, EXPIRY_WARNING};
use super::options::Options;
use super::tls;
use crate::hook::timefmt;
use crate::protocol::failure::Failure;
use std::net::SocketAddr;
use std::time::Duration;

/// The first half of tls: a handshake of our own to see what the port presents. Its check is
/// pushed only when no handshake completes; otherwise [`tls_check`] gives the verdict once
/// the hook's client has tried.
pub(super) fn handshake_step(
    addr: SocketAddr,
    host: &str,
    timeout: Duration,
) -> Result<tls::Presented, Stop> {
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

pub(super) fn tls_check(
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
