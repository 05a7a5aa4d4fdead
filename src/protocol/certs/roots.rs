//! The check every peer root bundle passes: each block a CERTIFICATE, not our own root, parsed
//! as istiod's Go parser would, within the root rules, a CA, valid now. This is the entry point
//! the discovery, export and `serve` paths call; the parts it composes live beside it.

use super::go_view::go_view;
use super::pem::{pem_blocks, scan_pem, to_pem, PemBlock};
use super::rejection::CertRejection;
use super::rules::root_rules;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The largest root certificate accepted, in bytes of DER: 16 KiB. Real roots are 1–3 KB (an
/// RSA-8192 key with long name constraints stays under 5 KB); a larger one is padded (a long
/// SAN list, say), and every byte of it is a byte of the shared trust bundle
/// (docs/security.md). At the limit, one federation's 8 published and 8 retained roots still
/// take under half of the 900 KiB budget.
pub const MAX_ROOT_DER_BYTES: usize = 16 * 1024;

/// Lower-case hex SHA-256 of the DER (ring::digest::SHA256).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// An accepted root certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootCert {
    /// Canonical single CERTIFICATE block (via [`to_pem`]), so that equal certificates render
    /// byte-identically whatever formatting the peer used.
    pub pem: String,
    /// [`fingerprint`] of the DER.
    pub fingerprint: String,
    /// RFC 4514-ish subject as x509-parser displays it, for operators.
    pub subject: String,
    /// End of validity, unix seconds.
    pub not_after: i64,
}

/// Result of checking a PEM bundle that should contain one or more root CA certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootCheck {
    /// Accepted certificates, in bundle order, each once.
    pub accepted: Vec<RootCert>,
    /// Refused blocks: (1-based block index in the bundle, reason).
    pub rejected: Vec<(usize, CertRejection)>,
}

/// Checks every block of `pem_bundle`: each must be a CERTIFICATE that x509-parser parses, whose
/// fingerprint is not in `own_fingerprints` (our own root must never be imported as a peer's),
/// that Go's `crypto/x509.ParseCertificate` would parse — istiod parses every trust anchor with
/// it and drops the whole trust source over one it refuses (docs/security.md) — that passes the
/// root rules (version 3, serial, names, key, critical extensions; see `root_rules`), that is a CA
/// as Go sees it (basicConstraints CA:TRUE — what istiod's verifyTrustAnchor requires), and
/// valid at `now` (not_before <= now <= not_after). Duplicate certificates within the bundle
/// are accepted once (later copies are dropped silently, not rejected).
///
/// Checks run in the order label, size ([`MAX_ROOT_DER_BYTES`]), parse, own root, Go's parser,
/// root rules, CA, not-yet-valid, expired; a block gets the first reason that applies. Err(message) only when the text holds
/// no PEM block at all or [`pem_blocks`] fails.
pub fn check_roots(
    pem_bundle: &str,
    now: i64,
    own_fingerprints: &[String],
) -> Result<RootCheck, String> {
    let blocks = pem_blocks(pem_bundle)?;
    if blocks.is_empty() {
        return Err("no PEM block found (not PEM text)".to_string());
    }
    let mut check = RootCheck::default();
    for (i, block) in blocks.iter().enumerate() {
        match check_root(block, now, own_fingerprints) {
            Ok(root) => {
                if !check
                    .accepted
                    .iter()
                    .any(|r| r.fingerprint == root.fingerprint)
                {
                    check.accepted.push(root);
                }
            }
            Err(why) => check.rejected.push((i + 1, why)),
        }
    }
    Ok(check)
}

pub(super) fn check_root(
    block: &PemBlock,
    now: i64,
    own_fingerprints: &[String],
) -> Result<RootCert, CertRejection> {
    if block.label != "CERTIFICATE" {
        return Err(CertRejection::NotCertificate {
            label: block.label.clone(),
        });
    }
    if block.der.len() > MAX_ROOT_DER_BYTES {
        return Err(CertRejection::TooLarge {
            bytes: block.der.len(),
        });
    }
    let cert = parse_certificate(&block.der).map_err(CertRejection::Unparsable)?;
    let fp = fingerprint(&block.der);
    if own_fingerprints
        .iter()
        .any(|own| own.eq_ignore_ascii_case(&fp))
    {
        return Err(CertRejection::OwnRoot);
    }
    let go = go_view(&block.der)?;
    root_rules(&go, &cert)?;
    if !matches!(go.basic_constraints, Some((true, _))) {
        return Err(CertRejection::NotCa);
    }
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if now < not_before {
        return Err(CertRejection::NotYetValid { not_before });
    }
    if now > not_after {
        return Err(CertRejection::Expired { not_after });
    }
    Ok(RootCert {
        pem: to_pem("CERTIFICATE", &block.der),
        fingerprint: fp,
        subject: cert.subject().to_string(),
        not_after,
    })
}

/// Parses a whole DER certificate; trailing bytes are an error, as in Go's x509.ParseCertificate.
pub(super) fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after certificate".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// `pem_text` without the CERTIFICATE blocks whose fingerprint is in `drop` (each removed with
/// its line), the rest byte for byte. Lenient like [`certificate_fingerprints`].
pub fn without_certificates(pem_text: &str, drop: &std::collections::BTreeSet<String>) -> String {
    let mut out = String::with_capacity(pem_text.len());
    let mut pos = 0;
    for b in scan_pem(pem_text, false).unwrap_or_default() {
        if b.label == "CERTIFICATE" && drop.contains(&fingerprint(&b.der)) {
            out.push_str(&pem_text[pos..b.start]);
            pos = b.end;
        }
    }
    out.push_str(&pem_text[pos..]);
    out
}

/// Fingerprints of every CERTIFICATE block in a PEM text, skipping what does not parse (used for
/// our own root bundle, so it is lenient: malformed blocks and non-X.509 bodies are skipped
/// rather than failing the whole text). Order follows the text; duplicates are kept.
pub fn certificate_fingerprints(pem_text: &str) -> Vec<String> {
    scan_pem(pem_text, false)
        .unwrap_or_default()
        .iter()
        .filter(|b| b.label == "CERTIFICATE" && parse_certificate(&b.der).is_ok())
        .map(|b| fingerprint(&b.der))
        .collect()
}
