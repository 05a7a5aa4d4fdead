//! PEM handling, checks of peer root certificates and Ed25519 key (de)serialisation.
//!
//! Everything here works on text received from other clusters, so no function panics on its
//! input: every failure is a value (`Err`, or a [`CertRejection`]) with a short
//! operator-facing text.

use crate::protocol::text;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::agreement;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use std::collections::BTreeSet;
use x509_parser::oid_registry::OID_SIG_ED25519;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::time::ASN1Time;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Base64 decoder for PEM bodies. As lenient as Go's `encoding/pem` (padding optional,
/// non-zero trailing bits accepted), because peers' PEM comes from Go and OpenSSL alike.
const PEM_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Longest PEM label quoted back in an error or [`CertRejection`] text, so that a hostile
/// bundle cannot blow up logs or status fields.
const MAX_LABEL_IN_MESSAGE: usize = 64;

/// The largest root certificate accepted, in bytes of DER: 16 KiB. Real roots are 1–3 KB (an
/// RSA-8192 key with long name constraints stays under 5 KB); a larger one is padded (a long
/// SAN list, say), and every byte of it is a byte of the shared trust bundle (README,
/// "Security"). At the limit, one federation's 8 published and 8 retained roots still take
/// under half of the 900 KiB budget.
pub const MAX_ROOT_DER_BYTES: usize = 16 * 1024;

/// One PEM block found in a text. `start..end` is the byte span in the input covering the
/// `-----BEGIN …-----` line through the end of the `-----END …-----` line INCLUDING the line
/// terminator that follows it (if any), so removing that span removes the block cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label between `BEGIN ` and the closing dashes, e.g. `CERTIFICATE`.
    pub label: String,
    /// The decoded body.
    pub der: Vec<u8>,
    /// Byte offset of the start of the BEGIN line (including any leading whitespace on it).
    pub start: usize,
    /// Byte offset just past the END line and its line terminator.
    pub end: usize,
}

/// Splits a text into PEM blocks. Text outside blocks is ignored (comments, blank lines).
/// Tolerates CRLF, leading/trailing whitespace on lines, base64 bodies with arbitrary line length.
/// Errors: BEGIN without matching END, mismatched labels, invalid base64 — with a message that
/// says which block (1-based index) and what is wrong.
pub fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, String> {
    scan_pem(text, true)
}

/// A BEGIN line seen and not yet closed.
struct OpenBlock {
    index: usize,
    line: usize,
    label: String,
    start: usize,
    body: String,
}

/// Shared scanner. In strict mode the first malformed block is an error; in lenient mode
/// malformed blocks are skipped (like Go's `pem.Decode` does), which suits our own bundles.
fn scan_pem(text: &str, strict: bool) -> Result<Vec<PemBlock>, String> {
    let mut blocks = Vec::new();
    let mut open: Option<OpenBlock> = None;
    let mut count = 0usize;
    let mut pos = 0usize;

    for (line_no, raw_line) in text.split_inclusive('\n').enumerate() {
        let line_start = pos;
        pos += raw_line.len();
        let content = raw_line.trim();

        if let Some(label) = armor_label(content, "-----BEGIN ") {
            if let Some(unclosed) = open.take() {
                if strict {
                    return Err(unclosed_message(&unclosed));
                }
            }
            count += 1;
            open = Some(OpenBlock {
                index: count,
                line: line_no + 1,
                label: label.to_string(),
                start: line_start,
                body: String::new(),
            });
            continue;
        }

        if let Some(end_label) = armor_label(content, "-----END ") {
            let Some(block) = open.take() else {
                // A stray END outside any block is ignored like any other outside text.
                continue;
            };
            if end_label != block.label {
                if strict {
                    return Err(format!(
                        "PEM block {} (line {}): BEGIN {} is closed by END {}",
                        block.index,
                        block.line,
                        shorten(&block.label),
                        shorten(end_label)
                    ));
                }
                continue;
            }
            match PEM_BASE64.decode(block.body.as_bytes()) {
                Ok(der) => blocks.push(PemBlock {
                    label: block.label,
                    der,
                    start: block.start,
                    end: pos,
                }),
                Err(e) => {
                    if strict {
                        return Err(format!(
                            "PEM block {} (line {}, {}): invalid base64: {}",
                            block.index,
                            block.line,
                            shorten(&block.label),
                            e
                        ));
                    }
                }
            }
            continue;
        }

        // Body line (text outside blocks is ignored). Go's encoding/pem drops all spaces and
        // tabs inside the body; so do we.
        if let Some(block) = open.as_mut() {
            block
                .body
                .extend(content.chars().filter(|c| !c.is_whitespace()));
        }
    }

    if let Some(unclosed) = open {
        if strict {
            return Err(unclosed_message(&unclosed));
        }
    }
    Ok(blocks)
}

/// Returns the label of an armor line such as `-----BEGIN X-----` for `prefix` `-----BEGIN `.
fn armor_label<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix("-----")
}

fn unclosed_message(block: &OpenBlock) -> String {
    format!(
        "PEM block {} (line {}): BEGIN {} has no matching END",
        block.index,
        block.line,
        shorten(&block.label)
    )
}

/// Renders DER as a canonical PEM block: `-----BEGIN {label}-----\n`, base64 (standard alphabet,
/// padded) wrapped at 64 columns, `-----END {label}-----\n`.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for (i, c) in body.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            out.push('\n');
        }
        out.push(c);
    }
    if !body.is_empty() {
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

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

/// Why a certificate was refused. `Display` gives a short, stable, operator-facing text with no
/// timestamps of "now" in it (the same input gives the same text in every run, so status
/// fields do not churn). Dates are YYYY-MM-DD UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertRejection {
    /// The PEM block's label is not `CERTIFICATE`.
    NotCertificate {
        /// The label found.
        label: String,
    },
    /// x509-parser refused the DER (or there were bytes after the certificate).
    Unparsable(String),
    /// The DER is larger than [`MAX_ROOT_DER_BYTES`].
    TooLarge {
        /// Its length in bytes.
        bytes: usize,
    },
    /// No BasicConstraints extension with CA:TRUE.
    NotCa,
    /// `now` is after the certificate's notAfter.
    Expired {
        /// notAfter, unix seconds.
        not_after: i64,
    },
    /// `now` is before the certificate's notBefore.
    NotYetValid {
        /// notBefore, unix seconds.
        not_before: i64,
    },
    /// The certificate is one of our own roots.
    OwnRoot,
    /// Not X.509 version 3. Go refuses versions above 3 and reads no extensions (so no CA)
    /// below it. `version` is the number as written in texts (the field plus one).
    Version {
        /// The version, 1-based.
        version: i64,
    },
    /// The serial number: Go refuses a negative or non-minimal one; zero and more than 20
    /// bytes are ours (RFC 5280). The text completes "serial number …".
    Serial(&'static str),
    /// The same extension twice; Go refuses the certificate.
    DuplicateExtension {
        /// Dotted OID.
        oid: String,
    },
    /// A public key Go cannot parse, or one outside what roots may use: RSA 2048–8192 bits with
    /// an odd exponent 3..2^31-1, ECDSA on P-256/P-384 with the point on the curve, Ed25519.
    PublicKey(String),
    /// A critical extension Go's parser does not handle: every chain through it fails to verify.
    CriticalExtension {
        /// Dotted OID.
        oid: String,
    },
    /// Something else Go's X.509 parser refuses (an encoding it does not read, a malformed
    /// extension), or that the root checks refuse as unusable (an empty name, a negative path
    /// length). `field` names the certificate field or extension.
    Malformed {
        /// Field or extension name, e.g. `subjectAltName`.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

impl std::fmt::Display for CertRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertRejection::NotCertificate { label } => {
                write!(f, "not a certificate (PEM label {})", shorten(label))
            }
            CertRejection::Unparsable(e) => write!(f, "cannot be parsed as X.509: {e}"),
            CertRejection::TooLarge { bytes } => write!(
                f,
                "{bytes} bytes of DER, more than the {MAX_ROOT_DER_BYTES} bytes a root may have"
            ),
            CertRejection::NotCa => {
                f.write_str("not a CA certificate (BasicConstraints CA:TRUE missing)")
            }
            CertRejection::Expired { not_after } => write!(f, "expired on {}", ymd(*not_after)),
            CertRejection::NotYetValid { not_before } => {
                write!(f, "not valid before {}", ymd(*not_before))
            }
            CertRejection::OwnRoot => f.write_str("is our own root certificate"),
            CertRejection::Version { version } => {
                write!(f, "X.509 version {version}: a root must be version 3")
            }
            CertRejection::Serial(detail) => write!(f, "serial number {detail}"),
            CertRejection::DuplicateExtension { oid } => {
                write!(f, "extension {oid} appears more than once")
            }
            CertRejection::PublicKey(detail) => write!(f, "public key: {detail}"),
            CertRejection::CriticalExtension { oid } => write!(
                f,
                "critical extension {oid} is not one Go's X.509 verifier handles"
            ),
            CertRejection::Malformed { field, detail } => write!(f, "{field}: {detail}"),
        }
    }
}

impl std::error::Error for CertRejection {}

/// Caps an input-controlled string (a PEM label) quoted in a message.
fn shorten(s: &str) -> String {
    text::shorten(s, text::Limit::chars(MAX_LABEL_IN_MESSAGE, "…"))
}

/// Formats unix seconds as YYYY-MM-DD (UTC); out-of-range values fall back to `@<seconds>`.
fn ymd(unix: i64) -> String {
    match ASN1Time::from_timestamp(unix) {
        Ok(t) => {
            let dt = t.to_datetime();
            format!(
                "{:04}-{:02}-{:02}",
                dt.year(),
                u8::from(dt.month()),
                dt.day()
            )
        }
        Err(_) => format!("@{unix}"),
    }
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
/// it and drops the whole trust source over one it refuses (README "Security") — that passes the
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

fn check_root(
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
fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing data after certificate".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

// ---------- Roots as istiod's Go parser reads them ----------
//
// istiod parses every trust anchor with Go's crypto/x509.ParseCertificate and refuses the whole
// trust source when one of them does not parse — every federation, not only the peer that sent
// it (README "Security"). `go_view` reads a certificate as Go 1.23 does: the same DER rules
// (low tag numbers, minimal definite lengths, minimal INTEGERs, OID arcs below 2^31, DER
// BOOLEANs, BIT STRINGs with zero padding), the same fields in the same order and the same
// extension parsers, and refuses what Go refuses. Where Go's rule is a large piece of its
// standard library (URL syntax, RFC 2821 mailboxes, UTCTime with offsets or without seconds)
// it refuses more: only the plain forms named below pass. `tests/go_oracle.rs` compares it
// with Go itself over the corpus in testdata/go-oracle/ (README "Security").

const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_NUMERIC_STRING: u8 = 0x12;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_T61_STRING: u8 = 0x14;
const TAG_IA5_STRING: u8 = 0x16;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_BMP_STRING: u8 = 0x1e;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
/// Context-specific tags: `[n]` primitive is `0x80 | n`, constructed `0xa0 | n`.
const fn ctx(n: u8) -> u8 {
    0x80 | n
}
const fn ctx_constructed(n: u8) -> u8 {
    0xa0 | n
}

const OID_RSA: &[u32] = &[1, 2, 840, 113549, 1, 1, 1];
const OID_EC: &[u32] = &[1, 2, 840, 10045, 2, 1];
const OID_ED25519: &[u32] = &[1, 3, 101, 112];
const OID_P224: &[u32] = &[1, 3, 132, 0, 33];
const OID_P256: &[u32] = &[1, 2, 840, 10045, 3, 1, 7];
const OID_P384: &[u32] = &[1, 3, 132, 0, 34];
const OID_P521: &[u32] = &[1, 3, 132, 0, 35];
const OID_SECP256K1: &[u32] = &[1, 3, 132, 0, 10];
const OID_AUTHORITY_INFO_ACCESS: &[u32] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];

/// At most this many content octets in a serial number (RFC 5280, 4.1.2.2).
const MAX_SERIAL_BYTES: usize = 20;
/// RSA modulus sizes a root may have: 2048 is today's floor; 8192 is ring's ceiling.
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;
/// The largest public exponent Go's crypto/rsa verifies with.
const MAX_RSA_EXPONENT: u64 = (1 << 31) - 1;

/// The elliptic curves Go's parser knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Curve {
    P224,
    P256,
    P384,
    P521,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P224 => "P-224",
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// Bytes of one coordinate.
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P224 => 28,
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// A public key as Go's parser left it.
#[derive(Debug)]
enum GoKey<'a> {
    /// Go's RSA checks passed (NULL parameters, positive modulus, exponent that fits 64 bits).
    Rsa,
    /// A named curve Go knows and an uncompressed point of the right length; whether the point
    /// is on the curve is left to [`root_rules`] (ring).
    Ec {
        curve: Curve,
        point: &'a [u8],
    },
    Ed25519,
    /// An algorithm the root rules refuse whatever Go makes of it (DSA, X25519, unknown).
    Other(Vec<u32>),
}

/// What Go's `x509.ParseCertificate` reads from a certificate, as far as the root checks need it.
#[derive(Debug)]
struct GoView<'a> {
    /// 1 to 3, as Go numbers versions.
    version: i64,
    /// Content octets of the serial INTEGER (minimal, not negative).
    serial: &'a [u8],
    issuer_attributes: usize,
    subject_attributes: usize,
    key: GoKey<'a>,
    /// Go's `IsCA` and `MaxPathLen` (`None` when absent); `None` without basicConstraints.
    basic_constraints: Option<(bool, Option<i64>)>,
    /// Critical extensions Go records as unhandled (verification through them fails).
    unhandled_critical: Vec<Vec<u32>>,
}

fn malformed(field: &'static str, detail: impl Into<String>) -> CertRejection {
    CertRejection::Malformed {
        field,
        detail: detail.into(),
    }
}

/// One DER element: tag, content octets, and the whole encoding.
struct Element<'a> {
    tag: u8,
    body: &'a [u8],
    whole: &'a [u8],
}

/// A reader over DER with the rules of Go's `cryptobyte`: low-tag-number identifiers only,
/// definite lengths in the fewest octets (at most four). Every read returns `None` on input
/// that does not follow them, and then leaves the reader where it was.
#[derive(Clone, Copy)]
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn is_empty(self) -> bool {
        self.0.is_empty()
    }

    fn peek(self) -> Option<u8> {
        self.0.first().copied()
    }

    fn any(&mut self) -> Option<Element<'a>> {
        let input = self.0;
        let (&tag, rest) = input.split_first()?;
        let (&len_byte, rest) = rest.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (len, header) = if len_byte & 0x80 == 0 {
            (usize::from(len_byte), 2)
        } else {
            let n = usize::from(len_byte & 0x7f);
            let octets = rest.get(..n).filter(|o| (1..=4).contains(&o.len()))?;
            if octets[0] == 0 {
                return None;
            }
            let len = octets
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return None;
            }
            (len, 2 + n)
        };
        let total = header.checked_add(len)?;
        let whole = input.get(..total)?;
        self.0 = &input[total..];
        Some(Element {
            tag,
            body: &whole[header..],
            whole,
        })
    }

    fn element(&mut self, tag: u8) -> Option<Element<'a>> {
        let mut next = *self;
        let e = next.any()?;
        if e.tag != tag {
            return None;
        }
        *self = next;
        Some(e)
    }

    fn read(&mut self, tag: u8) -> Option<&'a [u8]> {
        self.element(tag).map(|e| e.body)
    }

    /// `Some(None)` when the next element does not carry `tag`; `None` when it does but is
    /// malformed.
    fn optional(&mut self, tag: u8) -> Option<Option<&'a [u8]>> {
        if self.peek() == Some(tag) {
            self.read(tag).map(Some)
        } else {
            Some(None)
        }
    }

    /// An INTEGER that fits 64 bits (Go reads versions, exponents and path lengths into `int`).
    fn small_int(&mut self) -> Option<i64> {
        let mut next = *self;
        let body = next.read(TAG_INTEGER)?;
        if !minimal_integer(body) || body.len() > 8 {
            return None;
        }
        let first = if body[0] & 0x80 != 0 { -1i64 } else { 0 };
        let value = body.iter().fold(first, |acc, &b| (acc << 8) | i64::from(b));
        *self = next;
        Some(value)
    }

    /// An OBJECT IDENTIFIER as Go's `ReadASN1ObjectIdentifier` reads it.
    fn oid(&mut self) -> Option<Vec<u32>> {
        let mut next = *self;
        let oid = go_oid(next.read(TAG_OID)?)?;
        *self = next;
        Some(oid)
    }
}

/// Go's `checkASN1Integer`: at least one octet, no redundant leading 0x00 or 0xff.
fn minimal_integer(body: &[u8]) -> bool {
    match body {
        [] => false,
        [0, second, ..] => second & 0x80 != 0,
        [0xff, second, ..] => second & 0x80 == 0,
        _ => true,
    }
}

/// Go's OID reading: base-128 arcs in the fewest octets, each below 2^31; the first octet group
/// holds the first two arcs.
fn go_oid(body: &[u8]) -> Option<Vec<u32>> {
    fn arc(bytes: &mut &[u8]) -> Option<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let (&b, rest) = bytes.split_first()?;
            if value >= 1 << (31 - 7) || (i == 0 && b == 0x80) {
                return None;
            }
            *bytes = rest;
            value = (value << 7) | u32::from(b & 0x7f);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut bytes = body;
    let first = arc(&mut bytes)?;
    let mut oid = if first < 80 {
        vec![first / 40, first % 40]
    } else {
        vec![2, first - 80]
    };
    while !bytes.is_empty() {
        oid.push(arc(&mut bytes)?);
    }
    Some(oid)
}

/// Go's `newOIDFromDER` (certificate policies): base-128 arcs in the fewest octets, any size.
fn go_policy_oid(body: &[u8]) -> bool {
    let Some(last) = body.last() else {
        return false;
    };
    if last & 0x80 != 0 {
        return false;
    }
    let mut start = true;
    for &b in body {
        if start && b == 0x80 {
            return false;
        }
        start = b & 0x80 == 0;
    }
    true
}

/// A dotted OID for a message, capped like other input-controlled text.
fn oid_text(oid: &[u32]) -> String {
    let text = oid.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
    shorten(&text)
}

/// Go's `ReadASN1Boolean`: one octet, 0x00 or 0xff.
fn go_bool(body: &[u8]) -> Option<bool> {
    match body {
        [0x00] => Some(false),
        [0xff] => Some(true),
        _ => None,
    }
}

/// Go's `ReadASN1BitString`: a padding count of at most 7, whose bits are zero. Returns the
/// padding and the bytes.
fn go_bit_string(body: &[u8]) -> Option<(u8, &[u8])> {
    let (&padding, bytes) = body.split_first()?;
    let ok = match bytes.last() {
        _ if padding > 7 => false,
        None => padding == 0,
        Some(last) => last & ((1u8 << padding) - 1) == 0,
    };
    ok.then_some((padding, bytes))
}

fn is_ascii(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| b.is_ascii())
}

/// Go's PrintableString set, with the `*` and `&` it tolerates.
fn go_printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?*&".contains(&b)
}

/// An attribute value of a Name: the string types Go reads, each with Go's content rule.
fn go_string(tag: u8, body: &[u8]) -> Result<(), String> {
    let ok = match tag {
        TAG_T61_STRING => true,
        TAG_PRINTABLE_STRING => body.iter().all(|&b| go_printable(b)),
        TAG_UTF8_STRING => std::str::from_utf8(body).is_ok(),
        TAG_BMP_STRING => body.len().is_multiple_of(2),
        TAG_IA5_STRING => is_ascii(body),
        TAG_NUMERIC_STRING => body.iter().all(|&b| b.is_ascii_digit() || b == b' '),
        other => return Err(format!("string type with tag {other} is not one Go reads")),
    };
    if ok {
        Ok(())
    } else {
        let kind = match tag {
            TAG_PRINTABLE_STRING => "PrintableString with characters outside its set",
            TAG_UTF8_STRING => "UTF8String that is not UTF-8",
            TAG_BMP_STRING => "BMPString of odd length",
            TAG_IA5_STRING => "IA5String that is not ASCII",
            _ => "NumericString with characters other than digits and spaces",
        };
        Err(kind.to_string())
    }
}

/// Counts the attributes of a Name (`whole` is its complete SEQUENCE), checking each as Go does.
fn go_name(whole: &[u8], field: &'static str) -> Result<usize, CertRejection> {
    let body = Der(whole)
        .read(TAG_SEQUENCE)
        .ok_or_else(|| malformed(field, "not a DER SEQUENCE"))?;
    let mut rdns = Der(body);
    let mut count = 0;
    while !rdns.is_empty() {
        let set = rdns
            .read(TAG_SET)
            .ok_or_else(|| malformed(field, "malformed relative distinguished name"))?;
        let mut set = Der(set);
        while !set.is_empty() {
            let mut attribute = set
                .read(TAG_SEQUENCE)
                .map(Der)
                .ok_or_else(|| malformed(field, "malformed attribute"))?;
            let oid = attribute
                .oid()
                .ok_or_else(|| malformed(field, "malformed attribute type"))?;
            let value = attribute
                .any()
                .ok_or_else(|| malformed(field, "malformed attribute value"))?;
            go_string(value.tag, value.body)
                .map_err(|why| malformed(field, format!("attribute {}: {why}", oid_text(&oid))))?;
            count += 1;
        }
    }
    Ok(count)
}

/// A validity time in the forms RFC 5280 prescribes — UTCTime `YYMMDDHHMMSSZ`, GeneralizedTime
/// `YYYYMMDDHHMMSSZ` — with a real date and time. Go also reads a UTCTime without seconds and
/// with an offset; those are refused here.
fn go_time(validity: &mut Der<'_>, field: &'static str) -> Result<(), CertRejection> {
    let (body, year_digits) = match validity.peek() {
        Some(TAG_UTC_TIME) => (validity.read(TAG_UTC_TIME), 2),
        Some(TAG_GENERALIZED_TIME) => (validity.read(TAG_GENERALIZED_TIME), 4),
        _ => return Err(malformed(field, "neither UTCTime nor GeneralizedTime")),
    };
    let form = if year_digits == 2 {
        "UTCTime YYMMDDHHMMSSZ"
    } else {
        "GeneralizedTime YYYYMMDDHHMMSSZ"
    };
    let bad = || malformed(field, format!("not a {form} with a valid date and time"));
    let body = body.ok_or_else(bad)?;
    let digits = body
        .strip_suffix(b"Z")
        .filter(|d| d.len() == year_digits + 10 && d.iter().all(u8::is_ascii_digit))
        .ok_or_else(bad)?;
    let number = |range: std::ops::Range<usize>| {
        digits[range]
            .iter()
            .fold(0i32, |acc, &d| acc * 10 + i32::from(d - b'0'))
    };
    let year = match year_digits {
        2 if number(0..2) >= 50 => 1900 + number(0..2),
        2 => 2000 + number(0..2),
        _ => number(0..4),
    };
    let rest = |i: usize| number(year_digits + 2 * i..year_digits + 2 * i + 2);
    let month = u8::try_from(rest(0))
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(bad)?;
    let day = u8::try_from(rest(1)).map_err(|_| bad())?;
    time::Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    if rest(2) > 23 || rest(3) > 59 || rest(4) > 59 {
        return Err(bad());
    }
    Ok(())
}

/// An AlgorithmIdentifier as Go's `parseAI` reads it: an OID, then optionally one element.
/// Returns the OID and the parameters element.
fn go_algorithm(body: &[u8]) -> Option<(Vec<u32>, Option<Element<'_>>)> {
    let mut d = Der(body);
    let oid = d.oid()?;
    if d.is_empty() {
        return Some((oid, None));
    }
    Some((oid, Some(d.any()?)))
}

/// The SubjectPublicKeyInfo (content octets), with Go's checks per algorithm. Go right-aligns
/// a key BIT STRING with padding; a key here must be whole bytes.
fn go_public_key(spki: &[u8]) -> Result<GoKey<'_>, CertRejection> {
    let key_error = |detail: &str| CertRejection::PublicKey(detail.to_string());
    let mut d = Der(spki);
    let (oid, params) = d
        .read(TAG_SEQUENCE)
        .and_then(go_algorithm)
        .ok_or_else(|| malformed("subjectPublicKeyInfo", "malformed algorithm identifier"))?;
    let (padding, key) = d
        .read(TAG_BIT_STRING)
        .and_then(go_bit_string)
        .ok_or_else(|| malformed("subjectPublicKeyInfo", "malformed subjectPublicKey"))?;
    let whole_bytes = padding == 0;
    match oid.as_slice() {
        OID_RSA => {
            if params.map(|p| p.whole) != Some(&[0x05, 0x00][..]) {
                return Err(key_error("RSA key without NULL parameters"));
            }
            if !whole_bytes {
                return Err(key_error("RSA key is not whole bytes"));
            }
            let mut rsa = Der(key)
                .read(TAG_SEQUENCE)
                .map(Der)
                .ok_or_else(|| key_error("RSA key is not a DER SEQUENCE"))?;
            let modulus = rsa
                .read(TAG_INTEGER)
                .filter(|n| minimal_integer(n))
                .ok_or_else(|| key_error("RSA modulus is not a minimal DER INTEGER"))?;
            let exponent = rsa.small_int().ok_or_else(|| {
                key_error("RSA public exponent is not a minimal DER INTEGER of at most 64 bits")
            })?;
            if modulus[0] & 0x80 != 0 || modulus.iter().all(|&b| b == 0) {
                return Err(key_error("RSA modulus is not a positive number"));
            }
            if exponent <= 0 {
                return Err(key_error("RSA public exponent is not a positive number"));
            }
            Ok(GoKey::Rsa)
        }
        OID_EC => {
            let named = params
                .filter(|p| p.tag == TAG_OID)
                .and_then(|p| go_oid(p.body))
                .ok_or_else(|| key_error("EC parameters are not a named curve"))?;
            let curve = match named.as_slice() {
                OID_P224 => Curve::P224,
                OID_P256 => Curve::P256,
                OID_P384 => Curve::P384,
                OID_P521 => Curve::P521,
                OID_SECP256K1 => return Err(key_error("unsupported elliptic curve secp256k1")),
                other => {
                    return Err(CertRejection::PublicKey(format!(
                        "unsupported elliptic curve {}",
                        oid_text(other)
                    )))
                }
            };
            if !whole_bytes
                || key.len() != 1 + 2 * curve.coordinate_len()
                || key.first() != Some(&0x04)
            {
                return Err(CertRejection::PublicKey(format!(
                    "not an uncompressed point on {}",
                    curve.name()
                )));
            }
            Ok(GoKey::Ec { curve, point: key })
        }
        OID_ED25519 => {
            if params.is_some() {
                return Err(key_error("Ed25519 key with algorithm parameters"));
            }
            if !whole_bytes || key.len() != 32 {
                return Err(CertRejection::PublicKey(format!(
                    "Ed25519 key of {} bytes, not 32",
                    key.len()
                )));
            }
            Ok(GoKey::Ed25519)
        }
        _ => Ok(GoKey::Other(oid)),
    }
}

/// subjectAltName as Go's `parseSANExtension`; returns how many names Go keeps (zero makes a
/// critical SAN unhandled). URIs must be `scheme://host[/path]` in a plain form Go's URL parser
/// surely reads (see [`plain_uri`]).
fn go_subject_alt_name(value: &[u8]) -> Result<usize, CertRejection> {
    const FIELD: &str = "subjectAltName";
    let mut names = Der(value)
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed(FIELD, "not a DER SEQUENCE"))?;
    let mut count = 0;
    while !names.is_empty() {
        let name = names
            .any()
            .ok_or_else(|| malformed(FIELD, "malformed GeneralName"))?;
        // Go compares `tag ^ 0x80` with the GeneralName numbers: primitive [1], [2], [6], [7].
        let kind = match name.tag ^ 0x80 {
            1 => "rfc822Name",
            2 => "dNSName",
            6 => "uniformResourceIdentifier",
            7 => {
                if name.body.len() != 4 && name.body.len() != 16 {
                    return Err(malformed(
                        FIELD,
                        format!("IP address of {} bytes (4 or 16 expected)", name.body.len()),
                    ));
                }
                count += 1;
                continue;
            }
            _ => continue,
        };
        if !is_ascii(name.body) {
            return Err(malformed(FIELD, format!("{kind} is not ASCII")));
        }
        if kind == "uniformResourceIdentifier" && !plain_uri(name.body) {
            return Err(malformed(
                FIELD,
                format!(
                    "URI {:?} is not of the form scheme://host/path",
                    shorten(&String::from_utf8_lossy(name.body))
                ),
            ));
        }
        count += 1;
    }
    Ok(count)
}

/// `scheme://host[/path]` with an RFC 3986 scheme, a host of dot-separated letter-digit-hyphen
/// labels and a path of unreserved characters and slashes: what Go's `url.Parse` and its host
/// check read without question. (SPIFFE IDs have this form.)
fn plain_uri(uri: &[u8]) -> bool {
    let Ok(uri) = std::str::from_utf8(uri) else {
        return false;
    };
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let scheme_ok = scheme.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_alphabetic() || (i > 0 && (b.is_ascii_digit() || b"+-.".contains(&b)))
    }) && !scheme.is_empty();
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
    scheme_ok && host_ok && path_ok
}

/// Go's `domainToReverseLabels` succeeds: no empty label (so no trailing dot), printable ASCII.
fn go_domain(domain: &[u8]) -> bool {
    domain.is_empty()
        || domain
            .split(|&b| b == b'.')
            .all(|label| !label.is_empty() && label.iter().all(|b| (33..=126).contains(b)))
}

/// Go's `isValidIPMask`: ones, then zeros.
fn go_ip_mask(mask: &[u8]) -> bool {
    let mut seen_zero = false;
    mask.iter().all(|&b| {
        if seen_zero {
            return b == 0;
        }
        match b {
            0xff => true,
            0x00 | 0x80 | 0xc0 | 0xe0 | 0xf0 | 0xf8 | 0xfc | 0xfe => {
                seen_zero = true;
                true
            }
            _ => false,
        }
    })
}

/// nameConstraints as Go's `parseNameConstraintsExtension`; returns whether Go leaves it
/// unhandled. A mailbox constraint (`user@host`) is refused here (Go's RFC 2821 parser is not
/// reproduced); a URI constraint must be a domain that cannot read as an IP address.
fn go_name_constraints(value: &[u8]) -> Result<bool, CertRejection> {
    const FIELD: &str = "nameConstraints";
    let bad = || malformed(FIELD, "malformed");
    let mut outer = Der(value);
    let mut top = outer.read(TAG_SEQUENCE).map(Der).ok_or_else(bad)?;
    if !outer.is_empty() {
        return Err(bad());
    }
    let permitted = top.optional(ctx_constructed(0)).ok_or_else(bad)?;
    let excluded = top.optional(ctx_constructed(1)).ok_or_else(bad)?;
    if !top.is_empty() {
        return Err(bad());
    }
    if permitted.unwrap_or_default().is_empty() && excluded.unwrap_or_default().is_empty() {
        return Err(malformed(FIELD, "neither permitted nor excluded subtrees"));
    }
    let mut unhandled = false;
    for subtrees in [permitted, excluded].into_iter().flatten() {
        let mut subtrees = Der(subtrees);
        while !subtrees.is_empty() {
            let base = subtrees
                .read(TAG_SEQUENCE)
                .and_then(|s| Der(s).any())
                .ok_or_else(bad)?;
            let text = base.body;
            let domain_part = |t: &'_ [u8]| t.strip_prefix(b".").map_or(t, |d| d).to_vec();
            match base.tag {
                t if t == ctx(2) || t == ctx(1) || t == ctx(6) => {
                    let kind = match t {
                        0x82 => "dNSName",
                        0x81 => "rfc822Name",
                        _ => "URI",
                    };
                    if !is_ascii(text) {
                        return Err(malformed(FIELD, format!("{kind} constraint is not ASCII")));
                    }
                    if t == ctx(1) && text.contains(&b'@') {
                        return Err(malformed(
                            FIELD,
                            "rfc822Name constraint naming a mailbox is not accepted",
                        ));
                    }
                    if t == ctx(6)
                        && !(text
                            .iter()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(b))
                            && text.iter().any(u8::is_ascii_alphabetic))
                    {
                        return Err(malformed(
                            FIELD,
                            "URI constraint is not a domain of letters, digits and hyphens",
                        ));
                    }
                    if !go_domain(&domain_part(text)) {
                        return Err(malformed(
                            FIELD,
                            format!(
                                "{kind} constraint {:?} is not a domain",
                                shorten(&String::from_utf8_lossy(text))
                            ),
                        ));
                    }
                }
                t if t == ctx(7) => {
                    let mask = match text.len() {
                        8 => &text[4..],
                        32 => &text[16..],
                        n => {
                            return Err(malformed(
                                FIELD,
                                format!("IP constraint of {n} bytes (8 or 32 expected)"),
                            ))
                        }
                    };
                    if !go_ip_mask(mask) {
                        return Err(malformed(FIELD, "IP constraint mask is not a prefix"));
                    }
                }
                _ => unhandled = true,
            }
        }
    }
    Ok(unhandled)
}

/// The extensions Go's `processExtensions` parses, each with its checks. Returns whether Go
/// leaves the extension unhandled.
fn go_extension(
    oid: &[u32],
    critical: bool,
    value: &[u8],
    view: &mut GoView<'_>,
) -> Result<bool, CertRejection> {
    match oid {
        [2, 5, 29, 15] => go_key_usage(value)?,
        [2, 5, 29, 19] => view.basic_constraints = Some(go_basic_constraints(value)?),
        [2, 5, 29, 17] => return Ok(go_subject_alt_name(value)? == 0),
        [2, 5, 29, 30] => return go_name_constraints(value),
        [2, 5, 29, 31] => go_crl_distribution_points(value)?,
        [2, 5, 29, 35] => go_authority_key_identifier(critical, value)?,
        [2, 5, 29, 37] => go_ext_key_usage(value)?,
        [2, 5, 29, 14] => go_subject_key_identifier(critical, value)?,
        [2, 5, 29, 32] => go_certificate_policies(value)?,
        [2, 5, 29, _] => return Ok(true),
        OID_AUTHORITY_INFO_ACCESS => go_authority_info_access(critical, value)?,
        _ => return Ok(true),
    }
    Ok(false)
}

/// Go refuses some extensions outright when they are marked critical (RFC 5280 says they
/// must not be), before it reads their value.
fn go_not_critical(field: &'static str, critical: bool) -> Result<(), CertRejection> {
    if critical {
        Err(malformed(field, "marked critical"))
    } else {
        Ok(())
    }
}

/// An extension value that must be one DER SEQUENCE, opened for reading its elements.
fn go_sequence<'a>(field: &'static str, value: &'a [u8]) -> Result<Der<'a>, CertRejection> {
    Der(value)
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed(field, "not a DER SEQUENCE"))
}

/// keyUsage: only that it is a BIT STRING Go accepts; the bits themselves are not checked here.
fn go_key_usage(value: &[u8]) -> Result<(), CertRejection> {
    Der(value)
        .read(TAG_BIT_STRING)
        .and_then(go_bit_string)
        .ok_or_else(|| malformed("keyUsage", "malformed BIT STRING"))?;
    Ok(())
}

/// basicConstraints as Go's `IsCA` and `MaxPathLen`: both optional, cA a DER BOOLEAN and
/// pathLenConstraint a minimal INTEGER that fits 64 bits, or Go refuses the certificate.
fn go_basic_constraints(value: &[u8]) -> Result<(bool, Option<i64>), CertRejection> {
    const FIELD: &str = "basicConstraints";
    let mut bc = go_sequence(FIELD, value)?;
    let ca = match bc.peek() {
        Some(TAG_BOOLEAN) => bc
            .read(TAG_BOOLEAN)
            .and_then(go_bool)
            .ok_or_else(|| malformed(FIELD, "cA is not a DER BOOLEAN"))?,
        _ => false,
    };
    let path_len = match bc.peek() {
        Some(TAG_INTEGER) => Some(bc.small_int().ok_or_else(|| {
            malformed(FIELD, "pathLenConstraint is not a minimal 64-bit INTEGER")
        })?),
        _ => None,
    };
    Ok((ca, path_len))
}

/// cRLDistributionPoints: Go reads each point's fullName and, within it, the leading URIs;
/// a point without a distributionPoint name is skipped, as Go skips it.
fn go_crl_distribution_points(value: &[u8]) -> Result<(), CertRejection> {
    const FIELD: &str = "cRLDistributionPoints";
    let bad = || malformed(FIELD, "malformed distribution point");
    let mut points = go_sequence(FIELD, value)?;
    while !points.is_empty() {
        let mut point = points.read(TAG_SEQUENCE).map(Der).ok_or_else(bad)?;
        let Some(name) = point.optional(ctx_constructed(0)).ok_or_else(bad)? else {
            continue;
        };
        let mut full = Der(name)
            .read(ctx_constructed(0))
            .map(Der)
            .ok_or_else(bad)?;
        while full.peek() == Some(ctx(6)) {
            full.read(ctx(6)).ok_or_else(bad)?;
        }
    }
    Ok(())
}

/// authorityKeyIdentifier: never critical; Go reads only the optional keyIdentifier.
fn go_authority_key_identifier(critical: bool, value: &[u8]) -> Result<(), CertRejection> {
    const FIELD: &str = "authorityKeyIdentifier";
    go_not_critical(FIELD, critical)?;
    let mut akid = go_sequence(FIELD, value)?;
    if akid.peek() == Some(ctx(0)) {
        akid.read(ctx(0))
            .ok_or_else(|| malformed(FIELD, "malformed keyIdentifier"))?;
    }
    Ok(())
}

/// extKeyUsage: a SEQUENCE of OIDs, each of which must parse.
fn go_ext_key_usage(value: &[u8]) -> Result<(), CertRejection> {
    const FIELD: &str = "extKeyUsage";
    let mut usages = go_sequence(FIELD, value)?;
    while !usages.is_empty() {
        usages
            .oid()
            .ok_or_else(|| malformed(FIELD, "malformed key purpose OID"))?;
    }
    Ok(())
}

/// subjectKeyIdentifier: never critical, and an OCTET STRING.
fn go_subject_key_identifier(critical: bool, value: &[u8]) -> Result<(), CertRejection> {
    const FIELD: &str = "subjectKeyIdentifier";
    go_not_critical(FIELD, critical)?;
    Der(value)
        .read(TAG_OCTET_STRING)
        .ok_or_else(|| malformed(FIELD, "not a DER OCTET STRING"))?;
    Ok(())
}

/// certificatePolicies: every policy's identifier must be an OID Go's `asn1` accepts.
fn go_certificate_policies(value: &[u8]) -> Result<(), CertRejection> {
    const FIELD: &str = "certificatePolicies";
    let mut policies = go_sequence(FIELD, value)?;
    while !policies.is_empty() {
        let ok = policies
            .read(TAG_SEQUENCE)
            .and_then(|p| Der(p).read(TAG_OID))
            .is_some_and(go_policy_oid);
        if !ok {
            return Err(malformed(FIELD, "malformed policy"));
        }
    }
    Ok(())
}

/// authorityInfoAccess: never critical; each access description an OID and, when it is a
/// URI, the URI.
fn go_authority_info_access(critical: bool, value: &[u8]) -> Result<(), CertRejection> {
    const FIELD: &str = "authorityInfoAccess";
    go_not_critical(FIELD, critical)?;
    let bad = || malformed(FIELD, "malformed access description");
    let mut descriptions = go_sequence(FIELD, value)?;
    while !descriptions.is_empty() {
        let mut d = descriptions.read(TAG_SEQUENCE).map(Der).ok_or_else(bad)?;
        d.oid().ok_or_else(bad)?;
        if d.peek() == Some(ctx(6)) {
            d.read(ctx(6)).ok_or_else(bad)?;
        }
    }
    Ok(())
}

/// The extensions block (content octets of `[3]`), as Go reads it: each extension once, then
/// each through [`go_extension`].
fn go_extensions<'a>(body: &'a [u8], view: &mut GoView<'a>) -> Result<(), CertRejection> {
    const FIELD: &str = "extensions";
    let mut list = Der(body)
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed(FIELD, "not a DER SEQUENCE"))?;
    let mut seen = BTreeSet::new();
    let mut extensions = Vec::new();
    while !list.is_empty() {
        let mut e = list
            .read(TAG_SEQUENCE)
            .map(Der)
            .ok_or_else(|| malformed(FIELD, "malformed extension"))?;
        let oid = e
            .oid()
            .ok_or_else(|| malformed(FIELD, "malformed extension OID"))?;
        let critical = match e.peek() {
            Some(TAG_BOOLEAN) => e.read(TAG_BOOLEAN).and_then(go_bool).ok_or_else(|| {
                malformed(
                    FIELD,
                    format!(
                        "extension {}: critical is not a DER BOOLEAN",
                        oid_text(&oid)
                    ),
                )
            })?,
            _ => false,
        };
        let value = e.read(TAG_OCTET_STRING).ok_or_else(|| {
            malformed(
                FIELD,
                format!("extension {}: malformed value", oid_text(&oid)),
            )
        })?;
        if !seen.insert(oid.clone()) {
            return Err(CertRejection::DuplicateExtension {
                oid: oid_text(&oid),
            });
        }
        extensions.push((oid, critical, value));
    }
    for (oid, critical, value) in extensions {
        if go_extension(&oid, critical, value, view)? && critical {
            view.unhandled_critical.push(oid);
        }
    }
    Ok(())
}

/// Reads a certificate as Go's `x509.ParseCertificate` does (see the section comment), field by
/// field in Go's order, so the first problem named is the one Go stops at.
fn go_view(der: &[u8]) -> Result<GoView<'_>, CertRejection> {
    let (mut outer, mut tbs) = go_envelope(der)?;
    let version = go_version(&mut tbs)?;
    let serial = go_serial(&mut tbs)?;
    go_signature_algorithm(&mut tbs, &mut outer)?;
    let issuer_attributes = go_name_field(&mut tbs, "issuer")?;
    let mut validity = tbs
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed("validity", "not a DER SEQUENCE"))?;
    go_time(&mut validity, "notBefore")?;
    go_time(&mut validity, "notAfter")?;
    let subject_attributes = go_name_field(&mut tbs, "subject")?;
    let spki = tbs
        .read(TAG_SEQUENCE)
        .ok_or_else(|| malformed("subjectPublicKeyInfo", "not a DER SEQUENCE"))?;
    let key = go_public_key(spki)?;

    let mut view = GoView {
        version,
        serial,
        issuer_attributes,
        subject_attributes,
        key,
        basic_constraints: None,
        unhandled_critical: Vec::new(),
    };
    go_versioned_fields(&mut tbs, &mut view)?;
    go_signature(outer)?;
    Ok(view)
}

/// The certificate SEQUENCE with nothing after it, opened; then its tbsCertificate, opened.
/// Returns the rest of the certificate (signature algorithm and value) and the tbsCertificate.
fn go_envelope(der: &[u8]) -> Result<(Der<'_>, Der<'_>), CertRejection> {
    let mut input = Der(der);
    let mut outer = input
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed("certificate", "not a DER SEQUENCE"))?;
    if !input.is_empty() {
        return Err(malformed("certificate", "trailing data"));
    }
    let tbs = outer
        .read(TAG_SEQUENCE)
        .map(Der)
        .ok_or_else(|| malformed("tbsCertificate", "not a DER SEQUENCE"))?;
    Ok((outer, tbs))
}

/// The version, numbered as Go numbers it (1 to 3): absent means v1; the encoded value must be
/// a non-negative INTEGER, and Go refuses anything after v3.
fn go_version(tbs: &mut Der<'_>) -> Result<i64, CertRejection> {
    let version = match tbs
        .optional(ctx_constructed(0))
        .ok_or_else(|| malformed("version", "malformed"))?
    {
        None => 0,
        Some(body) => {
            let mut v = Der(body);
            match v.small_int() {
                Some(n) if v.is_empty() && n >= 0 => n,
                _ => return Err(malformed("version", "not a non-negative DER INTEGER")),
            }
        }
    };
    if version > 2 {
        return Err(CertRejection::Version {
            version: version.saturating_add(1),
        });
    }
    Ok(version + 1)
}

/// The serial number's content octets: Go requires a minimally encoded, non-negative INTEGER.
fn go_serial<'a>(tbs: &mut Der<'a>) -> Result<&'a [u8], CertRejection> {
    let serial = tbs
        .read(TAG_INTEGER)
        .ok_or(CertRejection::Serial("is not a DER INTEGER"))?;
    if !minimal_integer(serial) {
        return Err(CertRejection::Serial("is not minimally encoded"));
    }
    if serial[0] & 0x80 != 0 {
        return Err(CertRejection::Serial("is negative"));
    }
    Ok(serial)
}

/// The signature algorithm, named twice — inside tbsCertificate and after it: Go requires the
/// two encodings to be identical, and the identifier to parse.
fn go_signature_algorithm(tbs: &mut Der<'_>, outer: &mut Der<'_>) -> Result<(), CertRejection> {
    let inner_algorithm = tbs
        .read(TAG_SEQUENCE)
        .ok_or_else(|| malformed("signature", "malformed algorithm identifier"))?;
    let outer_algorithm = outer
        .read(TAG_SEQUENCE)
        .ok_or_else(|| malformed("signatureAlgorithm", "malformed algorithm identifier"))?;
    if inner_algorithm != outer_algorithm {
        return Err(malformed(
            "signatureAlgorithm",
            "differs from the signature algorithm in tbsCertificate",
        ));
    }
    go_algorithm(inner_algorithm)
        .ok_or_else(|| malformed("signatureAlgorithm", "malformed algorithm identifier"))?;
    Ok(())
}

/// The issuer or subject Name, read whole so [`go_name`] sees its encoding: its count of
/// attributes.
fn go_name_field(tbs: &mut Der<'_>, field: &'static str) -> Result<usize, CertRejection> {
    let name = tbs
        .element(TAG_SEQUENCE)
        .ok_or_else(|| malformed(field, "not a DER SEQUENCE"))?;
    go_name(name.whole, field)
}

/// What only later versions carry: the unique IDs from v2, the extensions from v3. Go reads
/// no further in tbsCertificate; anything after the extensions is refused here.
fn go_versioned_fields<'a>(tbs: &mut Der<'a>, view: &mut GoView<'a>) -> Result<(), CertRejection> {
    if view.version > 1 {
        for (tag, field) in [(ctx(1), "issuerUniqueID"), (ctx(2), "subjectUniqueID")] {
            tbs.optional(tag)
                .ok_or_else(|| malformed(field, "malformed"))?;
        }
        if view.version == 3 {
            if let Some(body) = tbs
                .optional(ctx_constructed(3))
                .ok_or_else(|| malformed("extensions", "malformed"))?
            {
                go_extensions(body, view)?;
            }
            // Go skips what follows; stricter DER readers (BoringSSL in Envoy) refuse it.
            if !tbs.is_empty() {
                return Err(malformed("tbsCertificate", "data after the extensions"));
            }
        }
    }
    Ok(())
}

/// The signature value, a BIT STRING Go accepts, and nothing after it.
fn go_signature(mut outer: Der<'_>) -> Result<(), CertRejection> {
    outer
        .read(TAG_BIT_STRING)
        .and_then(go_bit_string)
        .ok_or_else(|| malformed("signature", "malformed BIT STRING"))?;
    // Go skips what follows; stricter DER readers (BoringSSL in Envoy) refuse it.
    if !outer.is_empty() {
        return Err(malformed("certificate", "data after the signature"));
    }
    Ok(())
}

/// Points checked so far in this process, and whether each is on its curve. Discovery checks
/// every federation's cached roots on every run, often the same ones; an ECDH computation costs
/// tens of microseconds on P-256 and several times that on P-384.
type PointCache = std::sync::Mutex<std::collections::HashMap<(Curve, Vec<u8>), bool>>;
/// At most this many points are remembered (a few hundred kilobytes).
const MAX_CACHED_POINTS: usize = 4096;

/// Whether ring accepts `point` as a peer's public key on `curve` — its ECDH validation decodes
/// the uncompressed point and checks that it lies on the curve.
fn ec_point_on_curve(curve: Curve, point: &[u8]) -> Result<bool, CertRejection> {
    static CHECKED: std::sync::OnceLock<PointCache> = std::sync::OnceLock::new();
    let cache = CHECKED.get_or_init(Default::default);
    let key = (curve, point.to_vec());
    if let Some(&known) = cache.lock().ok().as_ref().and_then(|c| c.get(&key)) {
        return Ok(known);
    }
    let algorithm = match curve {
        Curve::P256 => &agreement::ECDH_P256,
        Curve::P384 => &agreement::ECDH_P384,
        // ring has no P-521; RustCrypto's p521 decodes the SEC1 point and checks the curve
        // equation (and that it is not the identity), as Go's crypto/ecdh does.
        Curve::P521 => return Ok(p521::PublicKey::from_sec1_bytes(point).is_ok()),
        Curve::P224 => {
            return Err(CertRejection::PublicKey(format!(
                "curve {} (P-256, P-384 and P-521 are accepted)",
                curve.name()
            )))
        }
    };
    let ours = agreement::EphemeralPrivateKey::generate(algorithm, &SystemRandom::new()).map_err(
        |_| CertRejection::PublicKey("cannot be checked: the system random source failed".into()),
    )?;
    let peer = agreement::UnparsedPublicKey::new(algorithm, point);
    let on_curve = agreement::agree_ephemeral(ours, &peer, |_| ()).is_ok();
    if let Ok(mut c) = cache.lock() {
        if c.len() < MAX_CACHED_POINTS {
            c.insert(key, on_curve);
        }
    }
    Ok(on_curve)
}

/// The rules for a root beyond "Go parses it": version 3; a serial number of 1 to 20 octets that
/// is not zero; non-empty issuer and subject; an RSA key of 2048 to 8192 bits with an odd
/// modulus and an odd exponent from 3 to 2^31-1 (x509-parser's key parsing), an ECDSA key on
/// P-256 or P-384 whose point ring accepts, or Ed25519; no critical extension Go leaves
/// unhandled; no negative path length. (Whether it is a CA is checked by the caller.)
fn root_rules(go: &GoView<'_>, cert: &X509Certificate<'_>) -> Result<(), CertRejection> {
    if go.version != 3 {
        return Err(CertRejection::Version {
            version: go.version,
        });
    }
    if go.serial.iter().all(|&b| b == 0) {
        return Err(CertRejection::Serial("is zero"));
    }
    if go.serial.len() > MAX_SERIAL_BYTES {
        return Err(CertRejection::Serial("is longer than 20 bytes"));
    }
    if go.issuer_attributes == 0 {
        return Err(malformed("issuer", "empty name"));
    }
    if go.subject_attributes == 0 {
        return Err(malformed("subject", "empty name"));
    }
    match &go.key {
        GoKey::Rsa => {
            let rsa = match cert.public_key().parsed() {
                Ok(PublicKey::RSA(rsa)) => rsa,
                _ => return Err(CertRejection::PublicKey("unreadable RSA key".into())),
            };
            let modulus = rsa
                .modulus
                .iter()
                .position(|&b| b != 0)
                .map_or(&[][..], |i| &rsa.modulus[i..]);
            let bits = modulus.first().map_or(0, |&top| {
                8 * modulus.len() - usize::try_from(top.leading_zeros()).unwrap_or(0)
            });
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(CertRejection::PublicKey(format!(
                    "RSA modulus of {bits} bits ({MIN_RSA_BITS} to {MAX_RSA_BITS} accepted)"
                )));
            }
            if modulus.last().is_some_and(|b| b & 1 == 0) {
                return Err(CertRejection::PublicKey("RSA modulus is even".into()));
            }
            let exponent = rsa.try_exponent().unwrap_or(0);
            if exponent.is_multiple_of(2) || !(3..=MAX_RSA_EXPONENT).contains(&exponent) {
                return Err(CertRejection::PublicKey(
                    "RSA public exponent is not an odd number from 3 to 2^31-1".into(),
                ));
            }
        }
        GoKey::Ec { curve, point } => {
            if !ec_point_on_curve(*curve, point)? {
                return Err(CertRejection::PublicKey(format!(
                    "point is not on curve {}",
                    curve.name()
                )));
            }
        }
        GoKey::Ed25519 => {}
        GoKey::Other(oid) => {
            return Err(CertRejection::PublicKey(format!(
                "algorithm {} (RSA, ECDSA and Ed25519 are accepted)",
                oid_text(oid)
            )))
        }
    }
    if let Some(oid) = go.unhandled_critical.first() {
        return Err(CertRejection::CriticalExtension { oid: oid_text(oid) });
    }
    if let Some((_, Some(path_len))) = go.basic_constraints {
        if path_len < 0 {
            return Err(malformed("basicConstraints", "negative pathLenConstraint"));
        }
    }
    Ok(())
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

/// The DER of the single PEM block of a key text (label ignored). More than one block is refused
/// so that a key field can never silently mean two different keys.
fn single_block_der(pem: &str) -> Result<Vec<u8>, String> {
    let mut blocks = pem_blocks(pem)?;
    match blocks.len() {
        0 => Err("no PEM block".to_string()),
        1 => Ok(blocks.remove(0).der),
        n => Err(format!("expected one PEM block, found {n}")),
    }
}

/// Parses an Ed25519 public key from a PEM SPKI block. The PEM label is IGNORED (Deckhouse writes
/// "ED25519 PUBLIC KEY", others "PUBLIC KEY"). Checks the SPKI algorithm OID is Ed25519
/// (1.3.101.112), without parameters as RFC 8410 demands, and the key is 32 bytes. Returns the
/// raw 32-byte key. The text must hold exactly one PEM block.
pub fn parse_ed25519_public_pem(pem: &str) -> Result<[u8; 32], String> {
    let der = single_block_der(pem)?;
    let spki = match SubjectPublicKeyInfo::from_der(&der) {
        Ok(([], spki)) => spki,
        Ok(_) => return Err("trailing data after public key".to_string()),
        Err(e) => return Err(format!("not a SubjectPublicKeyInfo: {e}")),
    };
    if spki.algorithm.algorithm != OID_SIG_ED25519 {
        return Err(format!(
            "not an Ed25519 key: algorithm OID {}",
            spki.algorithm.algorithm.to_id_string()
        ));
    }
    if spki.algorithm.parameters.is_some() {
        return Err("Ed25519 key encoded with illegal algorithm parameters".to_string());
    }
    let bits = &spki.subject_public_key;
    if bits.unused_bits != 0 {
        return Err("Ed25519 public key bit string is not whole bytes".to_string());
    }
    <[u8; 32]>::try_from(bits.data.as_ref())
        .map_err(|_| format!("Ed25519 public key is {} bytes, not 32", bits.data.len()))
}

/// Parses an Ed25519 private key from a PEM PKCS#8 block, label ignored ("ED25519 PRIVATE KEY"
/// or "PRIVATE KEY"). Accepts PKCS#8 v1 (what OpenSSL and Go's x509.MarshalPKCS8PrivateKey
/// produce; the public key is then derived, not checked) and v2 (public key checked against
/// the private key). The text must hold exactly one PEM block.
pub fn parse_ed25519_private_pem(pem: &str) -> Result<Ed25519KeyPair, String> {
    let der = single_block_der(pem)?;
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
        .map_err(|e| format!("not an Ed25519 PKCS#8 private key: {e}"))
}

/// PKCS#8 v1 encoding of an Ed25519 private key (RFC 8410 §7): this fixed prefix followed by
/// the 32-byte seed. Exactly what OpenSSL and Go's `x509.MarshalPKCS8PrivateKey` write.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Generates a new Ed25519 key pair and returns (private PKCS#8 PEM, public SPKI PEM) with labels
/// "PRIVATE KEY" / "PUBLIC KEY" (standard labels; Deckhouse parsers ignore labels). The private
/// key is PKCS#8 v1 — the seed from the system RNG in RFC 8410's fixed encoding — because every
/// reader (Go, OpenSSL, ring) accepts v1, while v2 (ring's own output) is not universally read.
/// Errs only if the system RNG fails.
pub fn generate_ed25519_pem() -> Result<(String, String), String> {
    let rng = SystemRandom::new();
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&rng, &mut seed)
        .map_err(|_| "cannot generate Ed25519 key: system random source failed".to_string())?;
    let mut pkcs8 = Vec::with_capacity(ED25519_PKCS8_V1_PREFIX.len() + 32);
    pkcs8.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
    pkcs8.extend_from_slice(&seed);
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
        .map_err(|e| format!("generated Ed25519 key rejected: {e}"))?;
    let mut spki = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
    spki.extend_from_slice(&ED25519_SPKI_PREFIX);
    spki.extend_from_slice(pair.public_key().as_ref());
    Ok((to_pem("PRIVATE KEY", &pkcs8), to_pem("PUBLIC KEY", &spki)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p521_points_are_checked_on_the_curve() {
        // An uncompressed SEC1 point of the right length that is not on P-521.
        let mut off = vec![0x04];
        off.extend(std::iter::repeat_n(0x01, 2 * 66));
        assert_eq!(ec_point_on_curve(Curve::P521, &off).ok(), Some(false));
        // The generator is.
        let g = "0400c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650";
        let g: Vec<u8> = (0..g.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&g[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(ec_point_on_curve(Curve::P521, &g).ok(), Some(true));
    }
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa,
        KeyPair, PublicKeyData,
    };
    use ring::signature::{UnparsedPublicKey, ED25519};

    /// 2025-06-01T00:00:00Z.
    const NOW: i64 = 1_748_736_000;
    #[test]
    fn go_version_numbers_from_one_and_refuses_above_three() {
        assert_eq!(go_version(&mut Der(&[0x02, 0x01, 0x01])), Ok(1));
        assert_eq!(go_version(&mut Der(&[0xa0, 0x03, 0x02, 0x01, 0x02])), Ok(3));
        assert_eq!(
            go_version(&mut Der(&[0xa0, 0x03, 0x02, 0x01, 0x03])),
            Err(CertRejection::Version { version: 4 })
        );
        assert_eq!(
            go_version(&mut Der(&[0xa0, 0x03, 0x02, 0x01, 0xff])),
            Err(malformed("version", "not a non-negative DER INTEGER"))
        );
    }

    #[test]
    fn go_serial_refuses_negative_and_padded() {
        assert_eq!(go_serial(&mut Der(&[0x02, 0x01, 0x7f])), Ok(&[0x7f][..]));
        assert_eq!(
            go_serial(&mut Der(&[0x02, 0x01, 0x80])),
            Err(CertRejection::Serial("is negative"))
        );
        assert_eq!(
            go_serial(&mut Der(&[0x02, 0x02, 0x00, 0x01])),
            Err(CertRejection::Serial("is not minimally encoded"))
        );
    }

    #[test]
    fn go_basic_constraints_reads_ca_and_path_length() {
        assert_eq!(go_basic_constraints(&[0x30, 0x00]), Ok((false, None)));
        assert_eq!(
            go_basic_constraints(&[0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x00]),
            Ok((true, Some(0)))
        );
        assert_eq!(
            go_basic_constraints(&[0x30, 0x03, 0x01, 0x01, 0x01]),
            Err(malformed("basicConstraints", "cA is not a DER BOOLEAN"))
        );
    }

    #[test]
    fn go_refuses_critical_key_identifiers_before_reading_them() {
        let garbage = [0x04];
        assert_eq!(
            go_subject_key_identifier(true, &garbage),
            Err(malformed("subjectKeyIdentifier", "marked critical"))
        );
        assert_eq!(
            go_subject_key_identifier(false, &garbage),
            Err(malformed("subjectKeyIdentifier", "not a DER OCTET STRING"))
        );
        assert_eq!(
            go_authority_info_access(true, &garbage),
            Err(malformed("authorityInfoAccess", "marked critical"))
        );
        assert_eq!(go_authority_key_identifier(false, &[0x30, 0x00]), Ok(()));
    }

    /// 2024-01-02T00:00:00Z.
    const JAN_2_2024: i64 = 1_704_153_600;
    /// 2030-01-01T00:00:00Z.
    const JAN_1_2030: i64 = 1_893_456_000;
    /// 2040-01-01T00:00:00Z.
    const JAN_1_2040: i64 = 2_208_988_800;
    /// 2020-01-01T00:00:00Z.
    const JAN_1_2020: i64 = 1_577_836_800;

    /// Deckhouse test fixture key pair.
    const FIXTURE_PRIV_B64: &str =
        "MC4CAQAwBQYDK2VwBCIEIMgNk3rr2AmIIlkKTAM9fG6+hMKvwF+pMAT3ID3M0OFK";
    const FIXTURE_PUB_B64: &str = "MCowBQYDK2VwAyEAKWjdKDeIIT4xESCMhbol662vNMpq4DxFct8GvJ500Xs=";

    struct TestCert {
        der: Vec<u8>,
        /// Canonical PEM built here, independently of `to_pem`.
        pem: String,
    }

    fn make_cert(
        cn: &str,
        is_ca: IsCa,
        not_before: (i32, u8, u8),
        not_after: (i32, u8, u8),
    ) -> TestCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = is_ca;
        params.not_before = date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        let pem = independent_pem("CERTIFICATE", &der);
        TestCert { der, pem }
    }

    fn ca(cn: &str) -> TestCert {
        make_cert(
            cn,
            IsCa::Ca(BasicConstraints::Unconstrained),
            (2020, 1, 1),
            (2040, 1, 1),
        )
    }

    /// PEM written without the module's code: 64-column lines, LF endings.
    fn independent_pem(label: &str, der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn sha256_hex(der: &[u8]) -> String {
        ring::digest::digest(&ring::digest::SHA256, der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn fixture_private_der() -> Vec<u8> {
        STANDARD.decode(FIXTURE_PRIV_B64).unwrap()
    }

    fn fixture_public_raw() -> [u8; 32] {
        let spki = STANDARD.decode(FIXTURE_PUB_B64).unwrap();
        assert_eq!(spki.len(), 44);
        spki[12..].try_into().unwrap()
    }

    fn wrap(label: &str, b64: &str) -> String {
        format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
    }

    // ---------- fingerprint / to_pem ----------

    #[test]
    fn fingerprint_known_vector() {
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn to_pem_is_canonical() {
        let der: Vec<u8> = (0u8..=255).collect();
        assert_eq!(
            to_pem("CERTIFICATE", &der),
            independent_pem("CERTIFICATE", &der)
        );
        // 48 bytes encode to exactly 64 columns: no empty line before END.
        let der48 = [7u8; 48];
        let pem = to_pem("X", &der48);
        assert_eq!(pem.lines().count(), 3);
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
        assert_eq!(to_pem("X", &[]), "-----BEGIN X-----\n-----END X-----\n");
    }

    // ---------- pem_blocks ----------

    #[test]
    fn pem_blocks_spans_remove_cleanly() {
        let a = ca("Span A");
        let b = ca("Span B");
        let b_crlf = b.pem.replace('\n', "\r\n");
        let head = "# comment line\n\n";
        let mid = "between blocks\r\n";
        let tail = "  trailing text without newline";
        let text = format!("{head}{}{mid}{b_crlf}{tail}", a.pem);

        let blocks = pem_blocks(&text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "CERTIFICATE");
        assert_eq!(blocks[0].der, a.der);
        assert_eq!(blocks[1].der, b.der);
        assert_eq!(blocks[0].start, head.len());
        assert_eq!(blocks[0].end, head.len() + a.pem.len());
        assert_eq!(&text[blocks[0].start..blocks[0].end], a.pem);
        assert_eq!(&text[blocks[1].start..blocks[1].end], b_crlf);

        let mut without_first = text.clone();
        without_first.replace_range(blocks[0].start..blocks[0].end, "");
        assert_eq!(without_first, format!("{head}{mid}{b_crlf}{tail}"));

        let mut without_second = text.clone();
        without_second.replace_range(blocks[1].start..blocks[1].end, "");
        assert_eq!(without_second, format!("{head}{}{mid}{tail}", a.pem));
    }

    #[test]
    fn pem_blocks_last_block_without_newline() {
        let a = ca("No newline");
        let text = format!("x\n{}", a.pem.trim_end());
        let blocks = pem_blocks(&text).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].start, 2);
        assert_eq!(blocks[0].end, text.len());
        assert_eq!(blocks[0].der, a.der);
    }

    #[test]
    fn pem_blocks_tolerates_whitespace_crlf_and_long_lines() {
        let a = ca("Whitespace");
        let b64 = STANDARD.encode(&a.der);
        // One long body line, indented armor, trailing spaces, CRLF.
        let text = format!(
            "   -----BEGIN CERTIFICATE-----  \r\n\t{b64}   \r\n  -----END CERTIFICATE-----\t\r\n"
        );
        let blocks = pem_blocks(&text).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].der, a.der);
        assert_eq!((blocks[0].start, blocks[0].end), (0, text.len()));

        // Odd line lengths (17 columns).
        let odd: Vec<String> = b64
            .as_bytes()
            .chunks(17)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let text = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----",
            odd.join("\n")
        );
        assert_eq!(pem_blocks(&text).unwrap()[0].der, a.der);
    }

    #[test]
    fn pem_blocks_no_blocks_is_empty() {
        assert!(pem_blocks("").unwrap().is_empty());
        assert!(pem_blocks("just some text\nno pem here\n")
            .unwrap()
            .is_empty());
        // A stray END outside any block is ignored text.
        assert!(pem_blocks("-----END CERTIFICATE-----\n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn pem_blocks_errors_name_the_block() {
        let a = ca("Err");
        let unterminated = format!("{}-----BEGIN CERTIFICATE-----\nMIIB\n", a.pem);
        let e = pem_blocks(&unterminated).unwrap_err();
        assert!(e.contains("block 2"), "{e}");
        assert!(e.contains("no matching END"), "{e}");

        let nested = format!("-----BEGIN CERTIFICATE-----\nMIIB\n{}", a.pem);
        let e = pem_blocks(&nested).unwrap_err();
        assert!(
            e.contains("block 1") && e.contains("no matching END"),
            "{e}"
        );

        let mismatched = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = pem_blocks(mismatched).unwrap_err();
        assert!(e.contains("block 1"), "{e}");
        assert!(e.contains("END PRIVATE KEY"), "{e}");

        let bad_b64 = format!("{}{}", a.pem, wrap("CERTIFICATE", "not*base64!"));
        let e = pem_blocks(&bad_b64).unwrap_err();
        assert!(e.contains("block 2") && e.contains("invalid base64"), "{e}");
    }

    // ---------- check_roots ----------

    #[test]
    fn accepts_a_ca_with_canonical_fields() {
        let a = ca("Root A");
        let check = check_roots(&a.pem, NOW, &[]).unwrap();
        assert!(check.rejected.is_empty(), "{:?}", check.rejected);
        assert_eq!(
            check.accepted,
            vec![RootCert {
                pem: a.pem.clone(),
                fingerprint: sha256_hex(&a.der),
                subject: "CN=Root A".to_string(),
                not_after: JAN_1_2040,
            }]
        );
    }

    #[test]
    fn two_cas_accepted_in_order_with_canonical_pem() {
        let a = ca("Root A");
        let b = ca("Root B");
        // Peer formatting: CRLF, blank lines, comments.
        let bundle = format!(
            "# bundle\r\n{}\r\n\r\n{}",
            a.pem.replace('\n', "\r\n"),
            b.pem
        );
        let check = check_roots(&bundle, NOW, &[]).unwrap();
        assert!(check.rejected.is_empty());
        assert_eq!(check.accepted.len(), 2);
        assert_eq!(check.accepted[0].pem, a.pem);
        assert_eq!(check.accepted[1].pem, b.pem);
        assert_eq!(check.accepted[0].fingerprint, sha256_hex(&a.der));
        assert_eq!(check.accepted[1].fingerprint, sha256_hex(&b.der));
        assert_eq!(check.accepted[1].subject, "CN=Root B");
    }

    #[test]
    fn duplicates_are_accepted_once() {
        let a = ca("Dup");
        let b = ca("Other");
        let bundle = format!("{}{}{}", a.pem, b.pem, a.pem.replace('\n', "\r\n"));
        let check = check_roots(&bundle, NOW, &[]).unwrap();
        assert!(check.rejected.is_empty());
        let fps: Vec<&str> = check
            .accepted
            .iter()
            .map(|r| r.fingerprint.as_str())
            .collect();
        assert_eq!(fps, vec![sha256_hex(&a.der), sha256_hex(&b.der)]);
    }

    #[test]
    fn leaf_is_not_ca() {
        let no_ext = make_cert("Leaf", IsCa::NoCa, (2020, 1, 1), (2040, 1, 1));
        let explicit = make_cert("Leaf2", IsCa::ExplicitNoCa, (2020, 1, 1), (2040, 1, 1));
        let bundle = format!("{}{}", no_ext.pem, explicit.pem);
        let check = check_roots(&bundle, NOW, &[]).unwrap();
        assert!(check.accepted.is_empty());
        assert_eq!(
            check.rejected,
            vec![(1, CertRejection::NotCa), (2, CertRejection::NotCa)]
        );
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let ca_bc = IsCa::Ca(BasicConstraints::Unconstrained);
        let expired = make_cert("Old", ca_bc, (2020, 1, 1), (2024, 1, 2));
        let future = make_cert("Future", ca_bc, (2030, 1, 1), (2040, 1, 1));
        let good = ca("Good");
        let bundle = format!("{}{}{}", expired.pem, good.pem, future.pem);
        let check = check_roots(&bundle, NOW, &[]).unwrap();
        assert_eq!(check.accepted.len(), 1);
        assert_eq!(check.accepted[0].fingerprint, sha256_hex(&good.der));
        assert_eq!(
            check.rejected,
            vec![
                (
                    1,
                    CertRejection::Expired {
                        not_after: JAN_2_2024
                    }
                ),
                (
                    3,
                    CertRejection::NotYetValid {
                        not_before: JAN_1_2030
                    }
                ),
            ]
        );
        assert_eq!(check.rejected[0].1.to_string(), "expired on 2024-01-02");
        assert_eq!(
            check.rejected[1].1.to_string(),
            "not valid before 2030-01-01"
        );
    }

    #[test]
    fn validity_bounds_are_inclusive() {
        let a = ca("Bounds");
        assert_eq!(
            check_roots(&a.pem, JAN_1_2020, &[]).unwrap().accepted.len(),
            1
        );
        assert_eq!(
            check_roots(&a.pem, JAN_1_2040, &[]).unwrap().accepted.len(),
            1
        );
        assert_eq!(
            check_roots(&a.pem, JAN_1_2040 + 1, &[]).unwrap().rejected,
            vec![(
                1,
                CertRejection::Expired {
                    not_after: JAN_1_2040
                }
            )]
        );
        assert_eq!(
            check_roots(&a.pem, JAN_1_2020 - 1, &[]).unwrap().rejected,
            vec![(
                1,
                CertRejection::NotYetValid {
                    not_before: JAN_1_2020
                }
            )]
        );
    }

    #[test]
    fn own_root_is_rejected() {
        let own = ca("Own");
        let peer = ca("Peer");
        let bundle = format!("{}{}", peer.pem, own.pem);
        let own_fp = sha256_hex(&own.der);
        let check = check_roots(&bundle, NOW, std::slice::from_ref(&own_fp)).unwrap();
        assert_eq!(check.accepted.len(), 1);
        assert_eq!(check.accepted[0].fingerprint, sha256_hex(&peer.der));
        assert_eq!(check.rejected, vec![(2, CertRejection::OwnRoot)]);
        // Upper-case fingerprints from elsewhere match too.
        let check = check_roots(&bundle, NOW, &[own_fp.to_uppercase()]).unwrap();
        assert_eq!(check.rejected, vec![(2, CertRejection::OwnRoot)]);
    }

    #[test]
    fn non_certificates_and_garbage_der() {
        let a = ca("Fine");
        let key = wrap("PRIVATE KEY", FIXTURE_PRIV_B64);
        let garbage = wrap("CERTIFICATE", &STANDARD.encode(b"hello world"));
        let mut trailing_der = a.der.clone();
        trailing_der.push(0);
        let trailing = independent_pem("CERTIFICATE", &trailing_der);
        let bundle = format!("{key}{garbage}{trailing}{}", a.pem);
        let check = check_roots(&bundle, NOW, &[]).unwrap();
        assert_eq!(check.accepted.len(), 1);
        assert_eq!(check.rejected.len(), 3);
        assert_eq!(
            check.rejected[0],
            (
                1,
                CertRejection::NotCertificate {
                    label: "PRIVATE KEY".to_string()
                }
            )
        );
        assert_eq!(
            check.rejected[0].1.to_string(),
            "not a certificate (PEM label PRIVATE KEY)"
        );
        assert_eq!(check.rejected[1].0, 2);
        assert!(matches!(check.rejected[1].1, CertRejection::Unparsable(_)));
        assert!(check.rejected[1]
            .1
            .to_string()
            .starts_with("cannot be parsed as X.509: "));
        assert_eq!(
            check.rejected[2],
            (
                3,
                CertRejection::Unparsable("trailing data after certificate".to_string())
            )
        );
    }

    #[test]
    fn garbage_text_is_an_error() {
        assert!(check_roots("", NOW, &[]).is_err());
        assert!(check_roots("hello, I am not PEM", NOW, &[]).is_err());
        assert!(check_roots("-----BEGIN CERTIFICATE-----\nMIIB\n", NOW, &[])
            .unwrap_err()
            .contains("block 1"));
        assert!(check_roots(&wrap("CERTIFICATE", "%%%%"), NOW, &[]).is_err());
    }

    #[test]
    fn display_texts_are_stable_and_hold_no_current_time() {
        let cases = [
            (
                CertRejection::NotCertificate {
                    label: "PRIVATE KEY".into(),
                },
                "not a certificate (PEM label PRIVATE KEY)",
            ),
            (
                CertRejection::Unparsable("boom".into()),
                "cannot be parsed as X.509: boom",
            ),
            (
                CertRejection::NotCa,
                "not a CA certificate (BasicConstraints CA:TRUE missing)",
            ),
            (
                CertRejection::Expired {
                    not_after: JAN_2_2024,
                },
                "expired on 2024-01-02",
            ),
            (
                CertRejection::Expired {
                    not_after: JAN_2_2024 + 86_399,
                },
                "expired on 2024-01-02",
            ),
            (
                CertRejection::NotYetValid {
                    not_before: JAN_1_2030,
                },
                "not valid before 2030-01-01",
            ),
            (CertRejection::OwnRoot, "is our own root certificate"),
            (
                CertRejection::Version { version: 4 },
                "X.509 version 4: a root must be version 3",
            ),
            (
                CertRejection::Serial("is negative"),
                "serial number is negative",
            ),
            (
                CertRejection::DuplicateExtension {
                    oid: "2.5.29.14".into(),
                },
                "extension 2.5.29.14 appears more than once",
            ),
            (
                CertRejection::PublicKey("point is not on curve P-256".into()),
                "public key: point is not on curve P-256",
            ),
            (
                CertRejection::CriticalExtension {
                    oid: "1.2.3".into(),
                },
                "critical extension 1.2.3 is not one Go's X.509 verifier handles",
            ),
            (
                malformed("subjectAltName", "IP address of 5 bytes (4 or 16 expected)"),
                "subjectAltName: IP address of 5 bytes (4 or 16 expected)",
            ),
        ];
        for (rejection, text) in cases {
            assert_eq!(rejection.to_string(), text);
        }
        // The same certificate checked at different times gives the same text.
        let expired = make_cert(
            "Old",
            IsCa::Ca(BasicConstraints::Unconstrained),
            (2020, 1, 1),
            (2024, 1, 2),
        );
        let t1 = check_roots(&expired.pem, NOW, &[]).unwrap().rejected[0]
            .1
            .to_string();
        let t2 = check_roots(&expired.pem, NOW + 10 * 365 * 86_400, &[])
            .unwrap()
            .rejected[0]
            .1
            .to_string();
        assert_eq!(t1, t2);
        // Long hostile labels are cut in the text.
        let long = "A".repeat(1000);
        let text = CertRejection::NotCertificate { label: long }.to_string();
        assert!(text.len() < 120, "{text}");
    }

    // ---------- Go's parser rules ----------

    #[test]
    fn der_reader_follows_go_cryptobyte() {
        let read = |bytes: &[u8]| {
            let mut d = Der(bytes);
            d.any().map(|e| (e.tag, e.body.to_vec(), d.0.len()))
        };
        assert_eq!(read(&[0x04, 0x01, 0xaa, 0xff]), Some((0x04, vec![0xaa], 1)));
        let long: Vec<u8> = [&[0x04, 0x81, 0x80][..], &[7u8; 128]].concat();
        assert_eq!(read(&long).map(|(_, b, _)| b.len()), Some(128));
        // Long form for a short length, a leading zero length octet, five length octets,
        // indefinite length, a high tag number, truncation.
        assert_eq!(read(&[0x04, 0x81, 0x01, 0xaa]), None);
        let padded: Vec<u8> = [&[0x04, 0x82, 0x00, 0x80][..], &[7u8; 128]].concat();
        assert_eq!(read(&padded), None);
        assert_eq!(read(&[0x04, 0x85, 0, 0, 0, 0, 1, 0xaa]), None);
        assert_eq!(read(&[0x30, 0x80, 0x00, 0x00]), None);
        assert_eq!(read(&[0x1f, 0x20, 0x01, 0x00]), None);
        assert_eq!(read(&[0x04, 0x02, 0xaa]), None);
        assert_eq!(read(&[0x04]), None);
        // A failed read leaves the reader where it was.
        let mut d = Der(&[0x02, 0x02, 0x00, 0x01]);
        assert_eq!(d.small_int(), None);
        assert_eq!(d.0.len(), 4);
        assert_eq!(d.read(TAG_BOOLEAN), None);
        assert_eq!(d.0.len(), 4);
        assert_eq!(Der(&[0x02, 0x01, 0xff]).small_int(), Some(-1));
        assert_eq!(Der(&[0x02, 0x02, 0x00, 0x80]).small_int(), Some(128));
        assert_eq!(
            Der(&[0x02, 0x09, 1, 0, 0, 0, 0, 0, 0, 0, 1]).small_int(),
            None
        );
    }

    #[test]
    fn integers_must_be_minimal() {
        assert!(!minimal_integer(&[]));
        assert!(minimal_integer(&[0x00]));
        assert!(minimal_integer(&[0xff]));
        assert!(minimal_integer(&[0x00, 0x80]));
        assert!(!minimal_integer(&[0x00, 0x7f]));
        assert!(minimal_integer(&[0xff, 0x7f]));
        assert!(!minimal_integer(&[0xff, 0x80]));
    }

    #[test]
    fn oids_as_go_reads_them() {
        assert_eq!(go_oid(&[0x55, 0x1d, 0x0e]), Some(vec![2, 5, 29, 14]));
        assert_eq!(go_oid(&[0x88, 0x37]), Some(vec![2, 999]));
        assert_eq!(go_oid(&[0x27]), Some(vec![0, 39]));
        // 2^31 - 1 is the largest arc; 2^31 and five-octet arcs above it are refused.
        assert_eq!(
            go_oid(&[0x2a, 0x87, 0xff, 0xff, 0xff, 0x7f]),
            Some(vec![1, 2, (1 << 31) - 1])
        );
        assert_eq!(go_oid(&[0x2a, 0x88, 0x80, 0x80, 0x80, 0x00]), None);
        assert_eq!(go_oid(&[0x2a, 0x80, 0x01]), None);
        assert_eq!(go_oid(&[0x2a, 0x81]), None);
        assert_eq!(go_oid(&[]), None);
        assert!(go_policy_oid(&[0x55, 0x1d, 0x20, 0x00]));
        assert!(go_policy_oid(&[
            0x2a, 0x90, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00
        ]));
        assert!(!go_policy_oid(&[0x2a, 0x80, 0x01]));
        assert!(!go_policy_oid(&[0x2a, 0x81]));
        assert_eq!(oid_text(&[2, 5, 29, 14]), "2.5.29.14");
        assert!(oid_text(&[1; 100]).chars().count() <= MAX_LABEL_IN_MESSAGE + 1);
    }

    #[test]
    fn bit_strings_booleans_and_strings() {
        assert_eq!(go_bit_string(&[0x00]), Some((0, &[][..])));
        assert_eq!(go_bit_string(&[0x01, 0x06]), Some((1, &[0x06][..])));
        assert_eq!(go_bit_string(&[0x01, 0x07]), None);
        assert_eq!(go_bit_string(&[0x08, 0x00]), None);
        assert_eq!(go_bit_string(&[0x01]), None);
        assert_eq!(go_bit_string(&[]), None);
        assert_eq!(go_bool(&[0xff]), Some(true));
        assert_eq!(go_bool(&[0x00]), Some(false));
        assert_eq!(go_bool(&[0x01]), None);
        assert_eq!(go_bool(&[0xff, 0xff]), None);
        assert!(go_string(TAG_PRINTABLE_STRING, b"Root CA *.b & c").is_ok());
        assert!(go_string(TAG_PRINTABLE_STRING, b"a@b").is_err());
        assert!(go_string(TAG_UTF8_STRING, "\u{e4}".as_bytes()).is_ok());
        assert!(go_string(TAG_UTF8_STRING, b"\xff").is_err());
        assert!(go_string(TAG_IA5_STRING, b"\x80").is_err());
        assert!(go_string(TAG_BMP_STRING, b"\x00a").is_ok());
        assert!(go_string(TAG_BMP_STRING, b"\x00a\x00").is_err());
        assert!(go_string(TAG_NUMERIC_STRING, b"12 3").is_ok());
        assert!(go_string(TAG_NUMERIC_STRING, b"12a").is_err());
        assert!(go_string(TAG_T61_STRING, b"\xff").is_ok());
        assert!(go_string(0x1a, b"visible").is_err());
    }

    #[test]
    fn times_in_rfc_5280_form_only() {
        let time = |tag: u8, text: &str| {
            let der = [&[tag, text.len() as u8][..], text.as_bytes()].concat();
            go_time(&mut Der(&der), "notBefore").is_ok()
        };
        assert!(time(TAG_UTC_TIME, "200101000000Z"));
        assert!(time(TAG_UTC_TIME, "491231235959Z"));
        assert!(time(TAG_UTC_TIME, "240229000000Z"));
        assert!(!time(TAG_UTC_TIME, "230229000000Z"));
        assert!(!time(TAG_UTC_TIME, "200230000000Z"));
        assert!(!time(TAG_UTC_TIME, "201301000000Z"));
        assert!(!time(TAG_UTC_TIME, "200101240000Z"));
        assert!(!time(TAG_UTC_TIME, "200101006000Z"));
        assert!(!time(TAG_UTC_TIME, "200101000060Z"));
        assert!(!time(TAG_UTC_TIME, "200101000000"));
        assert!(!time(TAG_UTC_TIME, "2001010000Z"));
        assert!(!time(TAG_UTC_TIME, "200101000000+0100"));
        assert!(time(TAG_GENERALIZED_TIME, "20550101000000Z"));
        assert!(!time(TAG_GENERALIZED_TIME, "20550101000000.5Z"));
        assert!(!time(TAG_GENERALIZED_TIME, "20550101000000"));
        assert!(!time(TAG_PRINTABLE_STRING, "200101000000Z"));
    }

    #[test]
    fn names_in_sans_and_constraints() {
        assert!(plain_uri(
            b"spiffe://cluster.local/ns/istio-system/sa/istiod"
        ));
        assert!(plain_uri(b"https://b.test"));
        assert!(!plain_uri(b"spiffe://b test/x"));
        assert!(!plain_uri(b"https://b.test:443/"));
        assert!(!plain_uri(b"https://b.test/?q=1"));
        assert!(!plain_uri(b"https:///path"));
        assert!(!plain_uri(b"urn:uuid:1234"));
        assert!(!plain_uri(b"1http://b.test"));
        assert!(!plain_uri(b"https://b..test"));
        assert!(go_domain(b""));
        assert!(go_domain(b"b.test"));
        assert!(!go_domain(b"b.test."));
        assert!(!go_domain(b"b..test"));
        assert!(!go_domain(b"b test"));
        assert!(go_ip_mask(&[255, 255, 0, 0]));
        assert!(go_ip_mask(&[255, 254, 0, 0]));
        assert!(!go_ip_mask(&[255, 0, 255, 0]));
        assert!(!go_ip_mask(&[255, 0x7f, 0, 0]));
    }

    #[test]
    fn an_odd_root_is_dropped_on_its_own() {
        // rcgen's roots follow every rule (version 3, positive 20-byte serial, P-256 key).
        let good = ca("Good");
        let mut negative = good.der.clone();
        // The serial INTEGER follows the version field `[0] { INTEGER 2 }`; make it negative.
        let version = negative
            .windows(5)
            .position(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02])
            .unwrap();
        let serial = version + 5;
        assert_eq!(negative[serial], 0x02, "serial INTEGER expected");
        negative[serial + 2] = 0x81;
        let other = ca("Other");
        let bundle = format!(
            "{}{}{}",
            good.pem,
            independent_pem("CERTIFICATE", &negative),
            other.pem
        );
        let check = check_roots(&bundle, NOW, &[]).unwrap();
        let fps: Vec<&str> = check
            .accepted
            .iter()
            .map(|r| r.fingerprint.as_str())
            .collect();
        assert_eq!(fps, vec![sha256_hex(&good.der), sha256_hex(&other.der)]);
        assert_eq!(
            check.rejected,
            vec![(2, CertRejection::Serial("is negative"))]
        );
    }

    // ---------- certificate_fingerprints ----------

    #[test]
    fn certificate_fingerprints_is_lenient() {
        let a = ca("Own A");
        let b = ca("Own B");
        let text = format!(
            "{}{}{}{}{}-----BEGIN CERTIFICATE-----\nMIIB\n",
            a.pem,
            wrap("CERTIFICATE", "!!!!"),
            wrap("PRIVATE KEY", FIXTURE_PRIV_B64),
            wrap("CERTIFICATE", &STANDARD.encode(b"not x509")),
            b.pem
        );
        assert_eq!(
            certificate_fingerprints(&text),
            vec![sha256_hex(&a.der), sha256_hex(&b.der)]
        );
        assert!(certificate_fingerprints("").is_empty());
        assert!(certificate_fingerprints("garbage").is_empty());
    }

    // ---------- Ed25519 ----------

    #[test]
    fn fixture_public_key_in_both_labels() {
        for label in ["ED25519 PUBLIC KEY", "PUBLIC KEY"] {
            let key = parse_ed25519_public_pem(&wrap(label, FIXTURE_PUB_B64)).unwrap();
            assert_eq!(key, fixture_public_raw(), "{label}");
        }
    }

    #[test]
    fn fixture_private_key_in_both_labels_matches_public() {
        for label in ["ED25519 PRIVATE KEY", "PRIVATE KEY"] {
            let pair = parse_ed25519_private_pem(&wrap(label, FIXTURE_PRIV_B64)).unwrap();
            assert_eq!(pair.public_key().as_ref(), fixture_public_raw(), "{label}");
            let sig = pair.sign(b"message");
            UnparsedPublicKey::new(&ED25519, fixture_public_raw())
                .verify(b"message", sig.as_ref())
                .unwrap();
        }
        // Independently: ring reads the same v1 document to the same key.
        let direct = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&fixture_private_der()).unwrap();
        assert_eq!(direct.public_key().as_ref(), fixture_public_raw());
    }

    #[test]
    fn private_key_pkcs8_v2_accepted() {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let expected = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let pem = independent_pem("PRIVATE KEY", doc.as_ref());
        let pair = parse_ed25519_private_pem(&pem).unwrap();
        assert_eq!(pair.public_key().as_ref(), expected.public_key().as_ref());
    }

    #[test]
    fn public_key_errors() {
        assert_eq!(parse_ed25519_public_pem("").unwrap_err(), "no PEM block");
        assert_eq!(
            parse_ed25519_public_pem("nothing").unwrap_err(),
            "no PEM block"
        );

        let ec = KeyPair::generate().unwrap();
        let ec_pem = independent_pem("PUBLIC KEY", &ec.subject_public_key_info());
        let e = parse_ed25519_public_pem(&ec_pem).unwrap_err();
        assert_eq!(e, "not an Ed25519 key: algorithm OID 1.2.840.10045.2.1");

        let mut short = vec![
            0x30, 0x29, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x20, 0x00,
        ];
        short.extend_from_slice(&[1u8; 31]);
        let e = parse_ed25519_public_pem(&independent_pem("PUBLIC KEY", &short)).unwrap_err();
        assert!(e.contains("31 bytes"), "{e}");

        let mut with_params = vec![
            0x30, 0x2c, 0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00, 0x03, 0x21, 0x00,
        ];
        with_params.extend_from_slice(&fixture_public_raw());
        let e = parse_ed25519_public_pem(&independent_pem("PUBLIC KEY", &with_params)).unwrap_err();
        assert!(e.contains("parameters"), "{e}");

        let mut trailing = STANDARD.decode(FIXTURE_PUB_B64).unwrap();
        trailing.push(0);
        assert!(parse_ed25519_public_pem(&independent_pem("PUBLIC KEY", &trailing)).is_err());

        let garbage = independent_pem("PUBLIC KEY", b"garbage");
        assert!(parse_ed25519_public_pem(&garbage).is_err());

        let two = format!(
            "{}{}",
            wrap("PUBLIC KEY", FIXTURE_PUB_B64),
            wrap("PUBLIC KEY", FIXTURE_PUB_B64)
        );
        assert!(parse_ed25519_public_pem(&two)
            .unwrap_err()
            .contains("one PEM block"));
    }

    #[test]
    fn private_key_errors() {
        assert_eq!(parse_ed25519_private_pem("").unwrap_err(), "no PEM block");
        let e = parse_ed25519_private_pem(&wrap("PRIVATE KEY", FIXTURE_PUB_B64)).unwrap_err();
        assert!(e.starts_with("not an Ed25519 PKCS#8 private key"), "{e}");
        let ec = KeyPair::generate().unwrap();
        let ec_pem = independent_pem("PRIVATE KEY", ec.serialized_der());
        assert!(parse_ed25519_private_pem(&ec_pem).is_err());
        assert!(parse_ed25519_private_pem("-----BEGIN PRIVATE KEY-----\nabc").is_err());
    }

    #[test]
    fn generated_keys_round_trip() {
        let (private_pem, public_pem) = generate_ed25519_pem().unwrap();
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(private_pem.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(public_pem.ends_with("-----END PUBLIC KEY-----\n"));

        // The SPKI is the RFC 8410 encoding: fixed prefix + 32 key bytes.
        let spki_b64: String = public_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let spki = STANDARD.decode(spki_b64).unwrap();
        assert_eq!(spki.len(), 44);
        assert_eq!(
            spki[..12],
            [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]
        );

        let pair = parse_ed25519_private_pem(&private_pem).unwrap();
        let public = parse_ed25519_public_pem(&public_pem).unwrap();
        assert_eq!(pair.public_key().as_ref(), public);
        assert_eq!(spki[12..], public);
        let sig = pair.sign(b"hello");
        UnparsedPublicKey::new(&ED25519, public)
            .verify(b"hello", sig.as_ref())
            .unwrap();

        // PKCS#8 v1 (RFC 8410 §7), the form Go and OpenSSL write; OpenSSL must read it back.
        let pkcs8_b64: String = private_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let pkcs8 = STANDARD.decode(pkcs8_b64).unwrap();
        assert_eq!(pkcs8.len(), 48);
        assert_eq!(
            pkcs8[..16],
            [
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20
            ]
        );

        let (other, _) = generate_ed25519_pem().unwrap();
        assert_ne!(other, private_pem);
    }
}
